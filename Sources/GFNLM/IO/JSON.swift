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
