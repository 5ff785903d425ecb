// The JSON parser: strict RFC 8259 over UTF-8 bytes, no Foundation (see JSON.swift for the value type and the
// rules it enforces). Integers that fit stay exact as Int64, other numbers become Double; every refusal is a
// `.format` error naming the byte offset, line and column, and nothing here traps on bad input.

// MARK: - Parsing

extension JSONValue {
    /// The default nesting limit (arrays and objects).
    public static let defaultMaxDepth = 512

    /// Parses one JSON text (an optional UTF-8 byte-order mark is ignored).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(GFNError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buf) throws(GFNError) -> JSONValue in
            try parse(buffer: buf, maxDepth: maxDepth)
        }
    }

    /// Parses one JSON text held in a String.
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(GFNError) -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }

    /// Parses bytes in memory (e.g. part of a memory-mapped file).
    public static func parse(_ raw: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(GFNError) -> JSONValue {
        try parse(buffer: UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                              count: raw.count), maxDepth: maxDepth)
    }

    /// Reads and parses a JSON file. I/O failures are `.io`; bad contents are `.format` with the path in the message.
    public static func parse(contentsOf path: String, maxDepth: Int = defaultMaxDepth,
                             limit: Int = 1 << 31) throws(GFNError) -> JSONValue {
        let bytes = try FileIO.read(path, limit: limit)
        do {
            return try parse(bytes, maxDepth: maxDepth)
        } catch {
            throw GFNError(error.status, "\(path): \(error.message)")
        }
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws(GFNError) -> JSONValue {
        var p = JSONParser(buffer, maxDepth: maxDepth)
        return try p.parseDocument()
    }
}

/// Recursive-descent parser over a byte buffer. Recursion depth is bounded by `maxDepth`.
struct JSONParser {
    let b: UnsafeBufferPointer<UInt8>
    let n: Int
    var i = 0
    var depth = 0
    let maxDepth: Int
    var scratch: [UInt8] = []

    init(_ b: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.b = b
        self.n = b.count
        self.maxDepth = max(1, maxDepth)
    }

    // MARK: errors

    func error(_ what: String, at offset: Int) -> GFNError {
        let off = min(max(offset, 0), n)
        var line = 1
        var lineStart = 0
        var k = 0
        while k < off {
            if b[k] == 0x0A { line += 1; lineStart = k + 1 }
            k += 1
        }
        return GFNError(.format, "invalid JSON: \(what) at byte \(off) (line \(line), column \(off - lineStart + 1))")
    }

    func describeByte(at k: Int) -> String {
        guard k < n else { return "end of input" }
        let c = b[k]
        if c >= 0x20 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        let hex = String(c, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count < 2 ? "0" + hex : hex)
    }

    // MARK: structure

    mutating func parseDocument() throws(GFNError) -> JSONValue {
        if n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { i = 3 }
        skipWhitespace()
        guard i < n else { throw error("empty input, expected a value", at: i) }
        let v = try parseValue()
        skipWhitespace()
        if i < n { throw error("unexpected \(describeByte(at: i)) after the value", at: i) }
        return v
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while i < n {
            let c = b[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    /// Parses one value. Iterative (explicit stacks), so deep nesting costs heap, not thread stack.
    mutating func parseValue() throws(GFNError) -> JSONValue {
        // Open containers, innermost last. kinds: 0 = array, 1 = object.
        var kinds: [UInt8] = []
        var arrays: [[JSONValue]] = []
        var objects: [JSONObject] = []
        var keys: [PendingKey] = []
        outer: while true {
            skipWhitespace()
            guard i < n else { throw error("unexpected end of input, expected a value", at: i) }
            var value: JSONValue
            switch b[i] {
            case UInt8(ascii: "["):
                try enter()
                i += 1
                skipWhitespace()
                if i < n && b[i] == UInt8(ascii: "]") {
                    i += 1
                    depth -= 1
                    value = .array([])
                } else {
                    kinds.append(0)
                    arrays.append([])
                    continue outer
                }
            case UInt8(ascii: "{"):
                try enter()
                i += 1
                skipWhitespace()
                if i < n && b[i] == UInt8(ascii: "}") {
                    i += 1
                    depth -= 1
                    value = .object(JSONObject())
                } else {
                    kinds.append(1)
                    objects.append(JSONObject())
                    keys.append(try parseKey())
                    continue outer
                }
            case UInt8(ascii: "\""): value = .string(try parseString())
            case UInt8(ascii: "t"): try expectLiteral("true"); value = .bool(true)
            case UInt8(ascii: "f"): try expectLiteral("false"); value = .bool(false)
            case UInt8(ascii: "n"): try expectLiteral("null"); value = .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): value = try parseNumber()
            default: throw error("unexpected \(describeByte(at: i)), expected a value", at: i)
            }
            // Attach the finished value to the open containers, closing those that end here.
            while let kind = kinds.last {
                skipWhitespace()
                if kind == 0 {
                    arrays[arrays.count - 1].append(value)
                    guard i < n else { throw error("unexpected end of input in an array, expected ',' or ']'", at: i) }
                    let c = b[i]
                    i += 1
                    if c == UInt8(ascii: ",") { continue outer }
                    guard c == UInt8(ascii: "]") else {
                        throw error("unexpected \(describeByte(at: i - 1)) in an array, expected ',' or ']'", at: i - 1)
                    }
                    value = .array(arrays.removeLast())
                } else {
                    let key = keys.removeLast()
                    let added: Bool
                    switch key.bytes {
                    case .range(let r):
                        added = objects[objects.count - 1].appendIfAbsent(utf8: UnsafeBufferPointer(rebasing: b[r]), value)
                    case .owned(let bytes):
                        added = bytes.withUnsafeBufferPointer { objects[objects.count - 1].appendIfAbsent(utf8: $0, value) }
                    }
                    guard added else { throw error("duplicate key \"\(JSONWriter.clip(key.text(b)))\"", at: key.offset) }
                    guard i < n else { throw error("unexpected end of input in an object, expected ',' or '}'", at: i) }
                    let c = b[i]
                    i += 1
                    if c == UInt8(ascii: ",") {
                        skipWhitespace()
                        keys.append(try parseKey())
                        continue outer
                    }
                    guard c == UInt8(ascii: "}") else {
                        throw error("unexpected \(describeByte(at: i - 1)) in an object, expected ',' or '}'", at: i - 1)
                    }
                    value = .object(objects.removeLast())
                }
                kinds.removeLast()
                depth -= 1
            }
            return value
        }
    }

    /// An object key waiting for its value: its bytes in the input (no escapes) or a decoded copy.
    struct PendingKey {
        enum Bytes {
            case range(Range<Int>)
            case owned([UInt8])
        }
        let bytes: Bytes
        let offset: Int

        func text(_ b: UnsafeBufferPointer<UInt8>) -> String {
            switch bytes {
            case .range(let r): return String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self)
            case .owned(let o): return String(decoding: o, as: UTF8.self)
            }
        }
    }

    /// Parses `"key" :` at the current position (whitespace before it already skipped).
    mutating func parseKey() throws(GFNError) -> PendingKey {
        guard i < n, b[i] == UInt8(ascii: "\"") else {
            throw error("unexpected \(describeByte(at: i)) in an object, expected a string key", at: i)
        }
        let keyStart = i
        let key: PendingKey
        if let r = try parseStringBytes() {
            key = PendingKey(bytes: .range(r), offset: keyStart)
        } else {
            key = PendingKey(bytes: .owned(scratch), offset: keyStart)
        }
        skipWhitespace()
        guard i < n, b[i] == UInt8(ascii: ":") else {
            throw error("unexpected \(describeByte(at: i)) after an object key, expected ':'", at: i)
        }
        i += 1
        return key
    }

    mutating func expectLiteral(_ word: StaticString) throws(GFNError) {
        let len = word.utf8CodeUnitCount
        let start = i
        let ok: Bool = word.withUTF8Buffer { w in
            guard start + len <= n else { return false }
            for k in 0..<len where b[start + k] != w[k] { return false }
            return true
        }
        guard ok else { throw error("invalid literal, expected '\(word)'", at: start) }
        i += len
    }

    mutating func enter() throws(GFNError) {
        depth += 1
        if depth > maxDepth { throw error("nesting deeper than \(maxDepth) levels", at: i) }
    }

    // MARK: strings

    /// Parses a string starting at the opening quote. Validates UTF-8 and escapes.
    mutating func parseString() throws(GFNError) -> String {
        if let r = try parseStringBytes() {
            return String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self)
        }
        return String(decoding: scratch, as: UTF8.self)
    }

    /// Parses a string starting at the opening quote and returns the range of its bytes in the input when it has no
    /// escapes, or nil when its decoded bytes were written to `scratch`.
    mutating func parseStringBytes() throws(GFNError) -> Range<Int>? {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < n {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return start..<(i - 1)
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character \(describeByte(at: i)) in a string (must be escaped)", at: i) }
            if c < 0x80 { i += 1 } else { i += try utf8SequenceLength(at: i) }
        }
        guard i < n else { throw error("unterminated string", at: start - 1) }
        // Slow path: copy what we have, then decode escapes.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<i]))
        while i < n {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return nil
            }
            if c == UInt8(ascii: "\\") {
                try parseEscape()
                continue
            }
            if c < 0x20 { throw error("control character \(describeByte(at: i)) in a string (must be escaped)", at: i) }
            if c < 0x80 {
                scratch.append(c)
                i += 1
            } else {
                let len = try utf8SequenceLength(at: i)
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[i..<(i + len)]))
                i += len
            }
        }
        throw error("unterminated string", at: start - 1)
    }

    mutating func parseEscape() throws(GFNError) {
        let at = i
        guard i + 1 < n else { throw error("unterminated escape sequence", at: at) }
        let e = b[i + 1]
        i += 2
        switch e {
        case UInt8(ascii: "\""): scratch.append(0x22)
        case UInt8(ascii: "\\"): scratch.append(0x5C)
        case UInt8(ascii: "/"): scratch.append(0x2F)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4(at: at)
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                // A high surrogate must be followed by \u and a low surrogate.
                guard i + 1 < n, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                    throw error("lone high surrogate \\u\(hexString(scalar)) (not followed by a low surrogate)", at: at)
                }
                i += 2
                let low = try hex4(at: i - 2)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw error("high surrogate \\u\(hexString(scalar)) followed by \\u\(hexString(low)), not a low surrogate", at: at)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw error("lone low surrogate \\u\(hexString(scalar))", at: at)
            }
            appendUTF8(scalar)
        default:
            throw error("invalid escape '\\\(describeByte(at: at + 1).trimmingQuotes)'", at: at)
        }
    }

    func hexString(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// Reads 4 hex digits at `i` (just after "\u"); `at` is the escape's offset for errors.
    mutating func hex4(at: Int) throws(GFNError) -> UInt32 {
        guard i + 4 <= n else { throw error("truncated \\u escape", at: at) }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit \(describeByte(at: i + k)) in a \\u escape", at: at)
            }
            v = v << 4 | d
        }
        i += 4
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        if s < 0x80 {
            scratch.append(UInt8(s))
        } else if s < 0x800 {
            scratch.append(UInt8(0xC0 | (s >> 6)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else if s < 0x10000 {
            scratch.append(UInt8(0xE0 | (s >> 12)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else {
            scratch.append(UInt8(0xF0 | (s >> 18)))
            scratch.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    /// Length of the well-formed UTF-8 sequence starting with a non-ASCII byte at `k` (Unicode Table 3-7).
    @inline(__always)
    func utf8SequenceLength(at k: Int) throws(GFNError) -> Int {
        let c = b[k]
        @inline(__always) func cont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            j < n && b[j] >= lo && b[j] <= hi
        }
        switch c {
        case 0xC2...0xDF:
            if cont(k + 1) { return 2 }
        case 0xE0:
            if cont(k + 1, 0xA0, 0xBF) && cont(k + 2) { return 3 }
        case 0xE1...0xEC, 0xEE...0xEF:
            if cont(k + 1) && cont(k + 2) { return 3 }
        case 0xED:
            if cont(k + 1, 0x80, 0x9F) && cont(k + 2) { return 3 }
        case 0xF0:
            if cont(k + 1, 0x90, 0xBF) && cont(k + 2) && cont(k + 3) { return 4 }
        case 0xF1...0xF3:
            if cont(k + 1) && cont(k + 2) && cont(k + 3) { return 4 }
        case 0xF4:
            if cont(k + 1, 0x80, 0x8F) && cont(k + 2) && cont(k + 3) { return 4 }
        default:
            break
        }
        throw error("invalid UTF-8 (\(describeByte(at: k)))", at: k)
    }

    // MARK: numbers

    mutating func parseNumber() throws(GFNError) -> JSONValue {
        let start = i
        var negative = false
        if b[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        guard i < n, b[i] >= 0x30 && b[i] <= 0x39 else { throw error("invalid number (no digits after '-')", at: start) }
        let intStart = i
        if b[i] == 0x30 {
            i += 1
            if i < n && b[i] >= 0x30 && b[i] <= 0x39 { throw error("invalid number (leading zero)", at: start) }
        } else {
            while i < n && b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
        }
        let intEnd = i
        var isInteger = true
        if i < n && b[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let fracStart = i
            while i < n && b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            if i == fracStart { throw error("invalid number (no digits after '.')", at: start) }
        }
        if i < n && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            if i < n && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
            let expStart = i
            while i < n && b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            if i == expStart { throw error("invalid number (no digits in the exponent)", at: start) }
        }
        if isInteger && intEnd - intStart <= 19 {
            // Accumulate negatively so that Int64.min fits.
            var v: Int64 = 0
            var overflow = false
            for k in intStart..<intEnd {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.subtractingReportingOverflow(Int64(b[k] - 0x30))
                if o1 || o2 { overflow = true; break }
                v = s
            }
            if !overflow {
                if negative { return .int(v) }
                if v != Int64.min { return .int(-v) }
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number", at: start) }
        guard d.isFinite else { throw error("number \(JSONWriter.clip(text)) is out of the range of a double", at: start) }
        return .double(d)
    }
}

extension String {
    fileprivate var trimmingQuotes: String {
        if count >= 2, first == "'", last == "'" { return String(dropFirst().dropLast()) }
        return self
    }
}
