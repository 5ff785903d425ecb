// A strict RFC 8259 JSON parser and writer working on UTF-8 bytes (no Foundation).
//
// Parsing: integers that fit are kept exact as Int64, other numbers become Double; object key order is kept and
// lookup is O(1); invalid UTF-8, bad escapes, lone surrogates, control characters in strings, duplicate keys,
// trailing data and nesting deeper than `maxDepth` are refused with `.format` errors naming the byte offset, line
// and column. Nothing here traps on bad input.
//
// Writing: compact (no spaces, key order kept, non-ASCII written as UTF-8 — like serde_json), or pretty the way
// Python's `json.dumps(value, indent=2, sort_keys=True)` writes (PEFT's adapter_config.json). Doubles are written in
// their shortest round-tripping form with Python's `repr` layout ("0.0001", "1e-05", "100.0", "1e+16").

/// A parsed JSON value.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// An integer literal (no fraction, no exponent) that fits in Int64.
    case int(Int64)
    /// Any other number. Parsed values are always finite.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// A JSON object: keys in document order, O(1) lookup by key, no duplicate keys.
///
/// Keys are compared as UTF-8 byte sequences (as JSON, Python and Rust do), not by Swift's canonical-equivalence
/// `String ==`: "é" and "e\u{301}" are different keys. The index is a seeded open-addressing table over those bytes.
public struct JSONObject: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    public private(set) var values: [JSONValue] = []
    private var hashes: [UInt64] = []
    /// Open-addressing table of indexes into `keys` (-1 = empty); its size is a power of two, at most half full.
    private var slots: [Int32] = []

    public init() {}

    public init(minimumCapacity: Int) {
        keys.reserveCapacity(minimumCapacity)
        values.reserveCapacity(minimumCapacity)
        hashes.reserveCapacity(minimumCapacity)
    }

    /// Pairs in order; a repeated key replaces the earlier value in place.
    public init(_ pairs: [(String, JSONValue)]) {
        self.init(minimumCapacity: pairs.count)
        for (k, v) in pairs { self[k] = v }
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements)
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// The value for `key`; setting `nil` removes the key, setting a new key appends it.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let i = indexOf(key) else { return nil }
            return values[i]
        }
        set {
            if let i = indexOf(key) {
                if let newValue {
                    values[i] = newValue
                } else {
                    keys.remove(at: i)
                    values.remove(at: i)
                    hashes.remove(at: i)
                    rebuildSlots(capacity: slots.count)
                }
            } else if let newValue {
                let h = JSONObject.hash(key)
                append(key, newValue, hash: h)
            }
        }
    }

    public func contains(_ key: String) -> Bool { indexOf(key) != nil }

    /// The position of `key` in `keys`.
    public func indexOf(_ key: String) -> Int? {
        var k = key
        return k.withUTF8 { find(JSONObject.hash($0), $0) }
    }

    /// Appends `key` (given as its UTF-8 bytes) if absent; returns false, changing nothing, when it is present.
    mutating func appendIfAbsent(utf8 bytes: UnsafeBufferPointer<UInt8>, _ value: JSONValue) -> Bool {
        let h = JSONObject.hash(bytes)
        if find(h, bytes) != nil { return false }
        append(String(decoding: bytes, as: UTF8.self), value, hash: h)
        return true
    }

    private mutating func append(_ key: String, _ value: JSONValue, hash h: UInt64) {
        if (keys.count + 1) * 2 > slots.count { rebuildSlots(capacity: Swift.max(16, slots.count * 2)) }
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] >= 0 { s = (s + 1) & mask }
        slots[s] = Int32(truncatingIfNeeded: keys.count)
        keys.append(key)
        values.append(value)
        hashes.append(h)
    }

    private mutating func rebuildSlots(capacity: Int) {
        var cap = 16
        while cap < capacity || cap < keys.count * 2 { cap *= 2 }
        slots = [Int32](repeating: -1, count: cap)
        let mask = cap - 1
        for (i, h) in hashes.enumerated() {
            var s = Int(truncatingIfNeeded: h) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(truncatingIfNeeded: i)
        }
    }

    private func find(_ h: UInt64, _ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let k = Int(slots[s])
            if k < 0 { return nil }
            if hashes[k] == h && keys[k].utf8.elementsEqual(bytes) { return k }
            s = (s + 1) & mask
        }
    }

    static func hash(_ key: String) -> UInt64 {
        var k = key
        return k.withUTF8 { hash($0) }
    }

    /// A seeded hash of UTF-8 bytes (8 bytes per round of a SplitMix64 finalizer). The per-process random seed makes
    /// crafted collisions (and so quadratic parsing) impractical.
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h = jsonHashSeed ^ UInt64(truncatingIfNeeded: p.count)
        guard let base = p.baseAddress else { return mix(h) }
        let raw = UnsafeRawPointer(base)
        let n = p.count
        var i = 0
        while i + 8 <= n {
            h = mix(h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                w |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = mix(h ^ w ^ 0xA076_1D64_78BD_642F)
        }
        return mix(h)
    }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public struct Iterator: IteratorProtocol {
        let object: JSONObject
        var i = 0
        public mutating func next() -> (key: String, value: JSONValue)? {
            guard i < object.keys.count else { return nil }
            defer { i += 1 }
            return (object.keys[i], object.values[i])
        }
    }

    public func makeIterator() -> Iterator { Iterator(object: self) }

    /// Equality ignores key order (as JSON semantics do).
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        JSONValue.object(a) == JSONValue.object(b)
    }
}

/// Per-process seed of `JSONObject.hash`.
let jsonHashSeed: UInt64 = UInt64.random(in: UInt64.min...UInt64.max)

extension JSONValue: Equatable {
    /// Structural equality (iterative, so deep values cost no thread stack); `.int(n)` equals `.double(d)` when
    /// they are the same number; object key order does not matter.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        var work: [(JSONValue, JSONValue)] = [(a, b)]
        while let (x, y) = work.popLast() {
            switch (x, y) {
            case (.null, .null): continue
            case let (.bool(p), .bool(q)): if p != q { return false }
            case let (.int(p), .int(q)): if p != q { return false }
            case let (.double(p), .double(q)): if p != q { return false }
            case let (.int(p), .double(q)), let (.double(q), .int(p)):
                guard let d = Double(exactly: p), d == q else { return false }
            case let (.string(p), .string(q)): if p != q { return false }
            case let (.array(p), .array(q)):
                guard p.count == q.count else { return false }
                for k in 0..<p.count { work.append((p[k], q[k])) }
            case let (.object(p), .object(q)):
                guard p.count == q.count else { return false }
                for (i, key) in p.keys.enumerated() {
                    guard let j = q.indexOf(key) else { return false }
                    work.append((p.values[i], q.values[j]))
                }
            default: return false
            }
        }
        return true
    }
}

// MARK: - Accessors

extension JSONValue {
    public var isNull: Bool { if case .null = self { return true }; return false }

    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }

    /// The value as Int when it is an integer literal, or a double with an exact integer value, that fits.
    public var int: Int? {
        switch self {
        case .int(let v): return Int(exactly: v)
        case .double(let d): return Int(exactly: d)
        default: return nil
        }
    }

    /// The value as Int64 when it is an integer literal, or a double with an exact integer value, that fits.
    public var int64: Int64? {
        switch self {
        case .int(let v): return v
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    /// Any number as Double (integers converted, possibly rounded beyond 2^53).
    public var double: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }

    /// Member of an object (nil for a missing key or a non-object).
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Element of an array (nil when out of range or not an array).
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    /// A Float as the double whose shortest form is the Float's shortest form (0.05 as Float is written "0.05",
    /// not "0.05000000074505806" as `.double(Double(f))` would be).
    public static func float(_ f: Float) -> JSONValue {
        guard f.isFinite else { return .double(Double(f)) }
        return .double(Double(f.description) ?? Double(f))
    }

    /// A short name of the kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
}

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
