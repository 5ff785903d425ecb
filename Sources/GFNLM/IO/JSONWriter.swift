// The JSON writer (see JSON.swift for the value type): compact output like serde_json, or pretty output laid out as
// Python's `json.dumps(value, indent=2, sort_keys=True)` writes it; doubles in their shortest round-tripping form
// with Python's `repr` layout.

// MARK: - Writing

/// How `JSONValue.serialized` lays out its output.
public struct JSONWriteOptions: Sendable, Equatable {
    /// Spaces per level; nil writes everything on one line without spaces.
    public var indent: Int?
    /// Sort object keys by Unicode code point (Python's `sort_keys=True`); otherwise keep their order.
    public var sortKeys: Bool
    /// Escape every non-ASCII character as \uXXXX (Python's default `ensure_ascii=True`).
    public var asciiOnly: Bool

    public init(indent: Int? = nil, sortKeys: Bool = false, asciiOnly: Bool = false) {
        self.indent = indent
        self.sortKeys = sortKeys
        self.asciiOnly = asciiOnly
    }

    /// One line, no spaces, keys in order, UTF-8 kept (what serde_json / the safetensors writer emit).
    public static let compact = JSONWriteOptions()
    /// Exactly what Python's `json.dumps(value, indent=2, sort_keys=True)` writes (PEFT's adapter_config.json).
    public static let pythonPretty = JSONWriteOptions(indent: 2, sortKeys: true, asciiOnly: true)
}

extension JSONValue {
    /// The JSON text. Non-finite doubles (which JSON cannot represent) are written as `null`.
    public func serialized(_ options: JSONWriteOptions = .compact) -> String {
        String(decoding: serializedBytes(options), as: UTF8.self)
    }

    /// The JSON text as UTF-8 bytes.
    public func serializedBytes(_ options: JSONWriteOptions = .compact) -> [UInt8] {
        var w = JSONWriter(options: options)
        w.write(self, level: 0)
        return w.out
    }
}

struct JSONWriter {
    let options: JSONWriteOptions
    var out: [UInt8] = []

    init(options: JSONWriteOptions) {
        self.options = options
        out.reserveCapacity(256)
    }

    static func clip(_ s: String, _ limit: Int = 60) -> String {
        s.unicodeScalars.count <= limit ? s : String(String.UnicodeScalarView(s.unicodeScalars.prefix(limit))) + "…"
    }

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    mutating func newline(_ level: Int) {
        guard let indent = options.indent else { return }
        out.append(0x0A)
        let count = max(0, indent) * level
        for _ in 0..<count { out.append(0x20) }
    }

    /// An open array or object while writing.
    struct Frame {
        var items: [JSONValue] = []
        var object: JSONObject? = nil
        var order: [Int] = []
        var index = 0
        var count: Int { object == nil ? items.count : order.count }
    }

    /// Writes `root`. Iterative (explicit stack), so deep values cost heap, not thread stack.
    mutating func write(_ root: JSONValue, level: Int) {
        var frames: [Frame] = []
        var pending: JSONValue? = root
        while true {
            if let v = pending {
                pending = nil
                switch v {
                case .null: append("null")
                case .bool(let x): if x { append("true") } else { append("false") }
                case .int(let x): out.append(contentsOf: String(x).utf8)
                case .double(let d): out.append(contentsOf: JSONWriter.formatDouble(d).utf8)
                case .string(let s): writeString(s)
                case .array(let a):
                    if a.isEmpty {
                        append("[]")
                    } else {
                        out.append(UInt8(ascii: "["))
                        frames.append(Frame(items: a))
                    }
                case .object(let o):
                    if o.isEmpty {
                        append("{}")
                    } else {
                        out.append(UInt8(ascii: "{"))
                        var order = Array(0..<o.count)
                        if options.sortKeys {
                            let keys = o.keys
                            order.sort { keys[$0].utf8.lexicographicallyPrecedes(keys[$1].utf8) }
                        }
                        frames.append(Frame(object: o, order: order))
                    }
                }
            }
            guard let top = frames.last else { return }
            let depth = level + frames.count
            if top.index < top.count {
                if top.index > 0 { out.append(UInt8(ascii: ",")) }
                newline(depth)
                if let o = top.object {
                    let k = top.order[top.index]
                    writeString(o.keys[k])
                    out.append(UInt8(ascii: ":"))
                    if options.indent != nil { out.append(0x20) }
                    pending = o.values[k]
                } else {
                    pending = top.items[top.index]
                }
                frames[frames.count - 1].index += 1
            } else {
                frames.removeLast()
                newline(depth - 1)
                out.append(top.object == nil ? UInt8(ascii: "]") : UInt8(ascii: "}"))
            }
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func writeU(_ u: UInt32) {
        out.append(UInt8(ascii: "\\"))
        out.append(UInt8(ascii: "u"))
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(JSONWriter.hexDigits[Int((u >> UInt32(shift)) & 0xF)])
        }
    }

    mutating func writeString(_ s: String) {
        out.append(UInt8(ascii: "\""))
        if options.asciiOnly {
            for sc in s.unicodeScalars {
                let v = sc.value
                if v < 0x80 {
                    writeASCII(UInt8(v), escapeDEL: true)
                } else if v < 0x10000 {
                    writeU(v)
                } else {
                    let x = v - 0x10000
                    writeU(0xD800 + (x >> 10))
                    writeU(0xDC00 + (x & 0x3FF))
                }
            }
        } else {
            for c in s.utf8 {
                if c < 0x80 { writeASCII(c, escapeDEL: false) } else { out.append(c) }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    mutating func writeASCII(_ c: UInt8, escapeDEL: Bool) {
        switch c {
        case 0x22: append("\\\"")
        case 0x5C: append("\\\\")
        case 0x0A: append("\\n")
        case 0x0D: append("\\r")
        case 0x09: append("\\t")
        case 0x08: append("\\b")
        case 0x0C: append("\\f")
        case 0..<0x20: writeU(UInt32(c))
        case 0x7F where escapeDEL: writeU(0x7F)
        default: out.append(c)
        }
    }

    /// Shortest round-trip digits in Python's `repr(float)` layout: fixed notation when the decimal exponent is in
    /// [-4, 16), otherwise "d.ddde±XX"; integral values keep ".0". Non-finite values give "null".
    static func formatDouble(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        // Swift's description yields the shortest digits that round-trip; re-lay them out like Python.
        let desc = d.description
        var negative = false
        var digits: [UInt8] = []
        var pointPos: Int? = nil
        var exp10 = 0
        var expNegative = false
        var inExp = false
        var expDigits = 0
        for c in desc.utf8 {
            switch c {
            case UInt8(ascii: "-"):
                if inExp { expNegative = true } else { negative = true }
            case UInt8(ascii: "+"): break
            case UInt8(ascii: "."): pointPos = digits.count
            case UInt8(ascii: "e"), UInt8(ascii: "E"): inExp = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if inExp {
                    exp10 = exp10 * 10 + Int(c - 0x30)
                    expDigits += 1
                } else {
                    digits.append(c)
                }
            default: break
            }
        }
        if expNegative { exp10 = -exp10 }
        // value = 0.d1d2d3... × 10^decpt
        var decpt = (pointPos ?? digits.count) + exp10
        var lead = 0
        while lead < digits.count && digits[lead] == 0x30 { lead += 1 }
        if lead == digits.count { return negative ? "-0.0" : "0.0" }
        digits.removeFirst(lead)
        decpt -= lead
        while let last = digits.last, last == 0x30 { digits.removeLast() }
        var r: [UInt8] = negative ? [UInt8(ascii: "-")] : []
        let nd = digits.count
        if decpt <= -4 || decpt > 16 {
            r.append(digits[0])
            if nd > 1 {
                r.append(UInt8(ascii: "."))
                r.append(contentsOf: digits[1...])
            }
            let e = decpt - 1
            r.append(UInt8(ascii: "e"))
            r.append(e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
            let es = String(abs(e))
            if es.utf8.count < 2 { r.append(0x30) }
            r.append(contentsOf: es.utf8)
        } else if decpt <= 0 {
            r.append(contentsOf: "0.".utf8)
            for _ in 0..<(-decpt) { r.append(0x30) }
            r.append(contentsOf: digits)
        } else if decpt >= nd {
            r.append(contentsOf: digits)
            for _ in 0..<(decpt - nd) { r.append(0x30) }
            r.append(contentsOf: ".0".utf8)
        } else {
            r.append(contentsOf: digits[..<decpt])
            r.append(UInt8(ascii: "."))
            r.append(contentsOf: digits[decpt...])
        }
        return String(decoding: r, as: UTF8.self)
    }
}
