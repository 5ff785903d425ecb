// The safetensors format (huggingface/safetensors):
//   u64 little-endian N | N bytes of UTF-8 JSON header (padded with spaces) | data section
// header: {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the data section. The reader validates everything the reference reader does (sizes,
// contiguity, exact coverage of the data section, no overflow) before any tensor byte is touched. Values are
// little-endian; gfnlm runs on little-endian hosts only (x86-64, aarch64).

/// A safetensors element type. Cases are declared in the reference implementation's order (increasing alignment),
/// which is the order the writer sorts by.
public enum SafetensorsDType: String, Sendable, CaseIterable, Comparable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .c64, .f64, .i64, .u64: return 8
        }
    }

    /// Position in the reference implementation's enum (the writer's sort key).
    var rank: Int { SafetensorsDType.allCases.firstIndex(of: self) ?? 0 }

    public static func < (a: SafetensorsDType, b: SafetensorsDType) -> Bool { a.rank < b.rank }

    /// Types `floats(_:)` converts from (and the writer converts `[Float]` to).
    public var isFloatingPoint: Bool { self == .f16 || self == .bf16 || self == .f32 || self == .f64 }

    /// Types `int64s(_:)` converts from.
    public var isInteger: Bool {
        switch self {
        case .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: return true
        default: return false
        }
    }

    /// Sub-byte types the format defines but gfnlm does not read.
    static let subByteNames: Set<String> = ["F4", "F6_E2M3", "F6_E3M2"]
}

/// One tensor's header entry.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let dataOffsets: Range<Int>

    public var elementCount: Int { dataOffsets.count / dtype.size }
    public var byteCount: Int { dataOffsets.count }
}

/// A tensor to write.
public struct SafetensorsTensor: Sendable {
    public enum Payload: Sendable {
        /// Raw little-endian bytes in `dtype`.
        case bytes([UInt8])
        /// Values converted to `dtype` (F32, F16, BF16 or F64) when written.
        case floats([Float])
    }

    public var name: String
    public var dtype: SafetensorsDType
    public var shape: [Int]
    public var payload: Payload

    public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.payload = .bytes(bytes)
    }

    public init(name: String, shape: [Int], floats: [Float], dtype: SafetensorsDType = .f32) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.payload = .floats(floats)
    }

    /// Byte length the payload will have in the file.
    var byteCount: Int {
        switch payload {
        case .bytes(let b): return b.count
        case .floats(let f): return f.count * dtype.size
        }
    }
}

/// A read-only safetensors file (memory-mapped) or buffer. Immutable and safe to share between threads.
public final class Safetensors: Sendable {
    /// The file path, or "<memory>".
    public let source: String
    /// `__metadata__` (empty when absent).
    public let metadata: [String: String]
    /// Tensor entries in data-section order.
    public let tensors: [SafetensorsTensorInfo]
    private let byName: [String: Int]
    private let storage: SafetensorsStorage
    /// Offset of the data section from the start of the storage.
    private let dataStart: Int

    /// Upper bound on the JSON header, as in the reference reader.
    public static let maxHeaderSize = 100_000_000

    /// Opens and memory-maps a file; tensor bytes are not copied until asked for.
    public static func load(path: String) throws(GFNError) -> Safetensors {
        let mapped = try MappedFile(path: path)
        return try Safetensors(storage: SafetensorsStorage(mapped: mapped), source: path)
    }

    /// Parses an in-memory safetensors image (the bytes are copied once into storage owned by this object).
    public convenience init(bytes: [UInt8]) throws(GFNError) {
        try self.init(storage: SafetensorsStorage(copying: bytes), source: "<memory>")
    }

    private init(storage: SafetensorsStorage, source: String) throws(GFNError) {
        self.storage = storage
        self.source = source
        let buf = storage.bytes
        func fail(_ m: String) -> GFNError { GFNError(.format, "\(source): not a valid safetensors file: \(m)") }

        guard buf.count >= 8 else { throw fail("\(buf.count) bytes, shorter than the 8-byte header length") }
        var n64: UInt64 = 0
        for k in 0..<8 { n64 |= UInt64(buf[k]) << (8 * UInt64(k)) }
        guard n64 <= UInt64(Safetensors.maxHeaderSize) else {
            throw fail("header length \(n64) exceeds the limit of \(Safetensors.maxHeaderSize) bytes")
        }
        let n = Int(n64)
        guard 8 + n <= buf.count else {
            throw fail("header length \(n) runs past the end of the file (\(buf.count) bytes)")
        }
        guard n >= 2 else { throw fail("header length \(n) is too small for a JSON object") }
        guard buf[8] == UInt8(ascii: "{") else { throw fail("the header does not start with '{'") }
        let header: JSONValue
        do {
            header = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: buf[8..<(8 + n)]), maxDepth: 8)
        } catch {
            throw fail("header: \(error.message)")
        }
        guard let obj = header.object else { throw fail("the header is not a JSON object") }
        let dataSize = buf.count - 8 - n
        dataStart = 8 + n

        var meta: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        infos.reserveCapacity(obj.count)
        for (key, value) in obj {
            if key == "__metadata__" {
                guard let m = value.object else { throw fail("__metadata__ is \(value.kindName), not an object") }
                for (mk, mv) in m {
                    guard let s = mv.string else {
                        throw fail("__metadata__[\"\(mk)\"] is \(mv.kindName), not a string")
                    }
                    meta[mk] = s
                }
                continue
            }
            infos.append(try Safetensors.parseInfo(key, value, fail))
        }

        // Contiguity: sorted by offsets, each tensor starts where the previous ended, the last ends at the file end.
        infos.sort {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound)
        }
        var position = 0
        for info in infos {
            let r = info.dataOffsets
            if r.lowerBound != position {
                if r.lowerBound < position {
                    throw fail("tensor \"\(info.name)\" (bytes \(r.lowerBound)..<\(r.upperBound)) overlaps the previous tensor")
                }
                throw fail("gap before tensor \"\(info.name)\": data from \(position) to \(r.lowerBound) belongs to no tensor")
            }
            position = r.upperBound
        }
        if position != dataSize {
            throw fail(position > dataSize
                ? "tensors need \(position) bytes of data but the file holds \(dataSize)"
                : "the data section holds \(dataSize) bytes but the tensors cover only \(position)")
        }
        var index: [String: Int] = [:]
        index.reserveCapacity(infos.count)
        for (i, info) in infos.enumerated() { index[info.name] = i }
        self.tensors = infos
        self.byName = index
        self.metadata = meta
    }

    private static func parseInfo(_ name: String, _ value: JSONValue,
                                  _ fail: (String) -> GFNError) throws(GFNError) -> SafetensorsTensorInfo {
        guard value.object != nil else { throw fail("entry \"\(name)\" is \(value.kindName), not an object") }
        guard let dtypeName = value["dtype"]?.string else { throw fail("tensor \"\(name)\" has no string \"dtype\"") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            if SafetensorsDType.subByteNames.contains(dtypeName) {
                throw GFNError(.unsupported, "tensor \"\(name)\" has the sub-byte dtype \(dtypeName), which gfnlm does not read")
            }
            throw fail("tensor \"\(name)\" has an unknown dtype \"\(JSONWriter.clip(dtypeName))\"")
        }
        guard let shapeArray = value["shape"]?.array else { throw fail("tensor \"\(name)\" has no \"shape\" array") }
        var shape: [Int] = []
        shape.reserveCapacity(shapeArray.count)
        var elements = 1
        for d in shapeArray {
            guard case .int(let v) = d, v >= 0, let dim = Int(exactly: v) else {
                throw fail("tensor \"\(name)\" has an invalid dimension \(d.serialized()) in its shape")
            }
            shape.append(dim)
            let (p, o) = elements.multipliedReportingOverflow(by: dim)
            guard !o else { throw fail("tensor \"\(name)\": the element count of shape \(shape) overflows") }
            elements = p
        }
        let (bytes, o) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !o else { throw fail("tensor \"\(name)\": its byte size overflows") }
        guard let offs = value["data_offsets"]?.array, offs.count == 2,
              case .int(let b64) = offs[0], case .int(let e64) = offs[1], b64 >= 0, e64 >= 0,
              let begin = Int(exactly: b64), let end = Int(exactly: e64)
        else { throw fail("tensor \"\(name)\" needs \"data_offsets\": [begin, end] with non-negative integers") }
        guard begin <= end else { throw fail("tensor \"\(name)\" has data_offsets [\(begin), \(end)] with begin > end") }
        guard end - begin == bytes else {
            throw fail("tensor \"\(name)\": \(dtype.rawValue) \(shape) needs \(bytes) bytes but data_offsets [\(begin), \(end)] give \(end - begin)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    // MARK: lookup

    /// Tensor names in data-section order.
    public var names: [String] { tensors.map(\.name) }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    public func info(_ name: String) -> SafetensorsTensorInfo? {
        guard let i = byName[name] else { return nil }
        return tensors[i]
    }

    private func require(_ name: String) throws(GFNError) -> SafetensorsTensorInfo {
        guard let i = byName[name] else { throw GFNError(.invalidArgument, "\(source): no tensor named \"\(name)\"") }
        return tensors[i]
    }

    public func dtype(_ name: String) throws(GFNError) -> SafetensorsDType { try require(name).dtype }

    public func shape(_ name: String) throws(GFNError) -> [Int] { try require(name).shape }

    /// The tensor's bytes inside the mapped file / owned buffer, without a copy. The pointer stays valid as long as
    /// this object lives; it is not necessarily aligned to the element size.
    public func unsafeRawBytes(_ name: String) throws(GFNError) -> UnsafeRawBufferPointer {
        let info = try require(name)
        return UnsafeRawBufferPointer(rebasing: storage.bytes[(dataStart + info.dataOffsets.lowerBound)..<(dataStart + info.dataOffsets.upperBound)])
    }

    /// Calls `body` with the tensor's bytes (no copy).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws(GFNError) -> R) throws(GFNError) -> R {
        let raw = try unsafeRawBytes(name)
        defer { withExtendedLifetime(self) {} }
        return try body(raw)
    }

    /// A copy of the tensor's bytes.
    public func rawBytes(_ name: String) throws(GFNError) -> [UInt8] {
        let raw = try unsafeRawBytes(name)
        return withExtendedLifetime(self) { [UInt8](raw) }
    }

    /// The tensor as Float, converted from F32, F16, BF16 or F64.
    public func floats(_ name: String) throws(GFNError) -> [Float] {
        let info = try require(name)
        guard info.dtype.isFloatingPoint else {
            throw GFNError(.unsupported, "\(source): tensor \"\(name)\" is \(info.dtype.rawValue), not F32/F16/BF16/F64")
        }
        let raw = try unsafeRawBytes(name)
        let count = info.elementCount
        return withExtendedLifetime(self) {
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                switch info.dtype {
                case .f32:
                    if count > 0, let dst = out.baseAddress, let src = raw.baseAddress {
                        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
                    }
                case .f16:
                    for k in 0..<count {
                        out[k] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self)))
                    }
                case .bf16:
                    for k in 0..<count {
                        out[k] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self)) << 16)
                    }
                case .f64:
                    for k in 0..<count { out[k] = Float(raw.loadUnaligned(fromByteOffset: 8 * k, as: Double.self)) }
                default:
                    break
                }
                initialized = count
            }
        }
    }

    /// The tensor as Int64, converted from any integer type or BOOL (U64 values above Int64.max are refused).
    public func int64s(_ name: String) throws(GFNError) -> [Int64] {
        let info = try require(name)
        guard info.dtype.isInteger else {
            throw GFNError(.unsupported, "\(source): tensor \"\(name)\" is \(info.dtype.rawValue), not an integer type")
        }
        let raw = try unsafeRawBytes(name)
        let count = info.elementCount
        var tooLarge = false
        let result: [Int64] = withExtendedLifetime(self) {
            [Int64](unsafeUninitializedCapacity: count) { out, initialized in
                for k in 0..<count {
                    let v: Int64
                    switch info.dtype {
                    case .bool, .u8: v = Int64(raw[k])
                    case .i8: v = Int64(Int8(bitPattern: raw[k]))
                    case .i16: v = Int64(raw.loadUnaligned(fromByteOffset: 2 * k, as: Int16.self))
                    case .u16: v = Int64(raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                    case .i32: v = Int64(raw.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self))
                    case .u32: v = Int64(raw.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))
                    case .i64: v = raw.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)
                    case .u64:
                        let u = raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self)
                        if u > UInt64(Int64.max) { tooLarge = true }
                        v = Int64(truncatingIfNeeded: u)
                    default: v = 0
                    }
                    out[k] = v
                }
                initialized = count
            }
        }
        if tooLarge { throw GFNError(.outOfRange, "\(source): tensor \"\(name)\" holds U64 values above Int64.max") }
        return result
    }

    // MARK: writing

    /// The file image for `tensors` in the reference writer's layout: tensors sorted by dtype (widest alignment
    /// first) then name, `__metadata__` first in the header (keys sorted), compact JSON padded with spaces to a
    /// multiple of 8 bytes.
    public static func serialize(tensors: [SafetensorsTensor], metadata: [String: String]? = nil) throws(GFNError) -> [UInt8] {
        var seen = Set<String>()
        for t in tensors {
            guard t.name != "__metadata__" else { throw GFNError(.invalidArgument, "a tensor cannot be named __metadata__") }
            guard seen.insert(t.name).inserted else { throw GFNError(.invalidArgument, "duplicate tensor name \"\(t.name)\"") }
            var elements = 1
            for d in t.shape {
                guard d >= 0 else { throw GFNError(.invalidArgument, "tensor \"\(t.name)\" has a negative dimension in \(t.shape)") }
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw GFNError(.invalidArgument, "tensor \"\(t.name)\": shape \(t.shape) overflows") }
                elements = p
            }
            switch t.payload {
            case .bytes(let b):
                let (need, o) = elements.multipliedReportingOverflow(by: t.dtype.size)
                guard !o, b.count == need else {
                    throw GFNError(.invalidArgument, "tensor \"\(t.name)\": \(t.dtype.rawValue) \(t.shape) needs \(o ? "too many" : String(need)) bytes, got \(b.count)")
                }
            case .floats(let f):
                guard t.dtype.isFloatingPoint else {
                    throw GFNError(.invalidArgument, "tensor \"\(t.name)\": floats can be written as F32, F16, BF16 or F64, not \(t.dtype.rawValue)")
                }
                guard f.count == elements else {
                    throw GFNError(.invalidArgument, "tensor \"\(t.name)\": shape \(t.shape) needs \(elements) values, got \(f.count)")
                }
            }
        }
        let order = tensors.indices.sorted { a, b in
            let ta = tensors[a], tb = tensors[b]
            if ta.dtype != tb.dtype { return ta.dtype > tb.dtype }
            return ta.name.utf8.lexicographicallyPrecedes(tb.name.utf8)
        }
        var header = JSONObject(minimumCapacity: tensors.count + 1)
        if let metadata {
            var m = JSONObject(minimumCapacity: metadata.count)
            for k in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                m[k] = .string(metadata[k] ?? "")
            }
            header["__metadata__"] = .object(m)
        }
        var offset = 0
        for i in order {
            let t = tensors[i]
            let n = t.byteCount
            header[t.name] = [
                "dtype": .string(t.dtype.rawValue),
                "shape": .array(t.shape.map { .int(Int64($0)) }),
                "data_offsets": [.int(Int64(offset)), .int(Int64(offset + n))],
            ]
            offset += n
        }
        var headerBytes = JSONValue.object(header).serializedBytes(.compact)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        let n = UInt64(headerBytes.count)
        for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(k)))) }
        out.append(contentsOf: headerBytes)
        for i in order {
            let t = tensors[i]
            switch t.payload {
            case .bytes(let b): out.append(contentsOf: b)
            case .floats(let f): appendFloats(f, as: t.dtype, to: &out)
            }
        }
        return out
    }

    /// Writes a safetensors file atomically (temporary file, fsync, rename).
    public static func write(path: String, tensors: [SafetensorsTensor], metadata: [String: String]? = nil) throws(GFNError) {
        let bytes = try serialize(tensors: tensors, metadata: metadata)
        try FileIO.writeAtomically(path, bytes)
    }

    static func appendFloats(_ f: [Float], as dtype: SafetensorsDType, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: f.count * dtype.size))
        out.withUnsafeMutableBytes { raw in
            let dst = UnsafeMutableRawBufferPointer(rebasing: raw[start...])
            switch dtype {
            case .f32:
                f.withUnsafeBytes { src in dst.copyMemory(from: src) }
            case .f16:
                for (k, v) in f.enumerated() { dst.storeBytes(of: Float16(v).bitPattern, toByteOffset: 2 * k, as: UInt16.self) }
            case .bf16:
                for (k, v) in f.enumerated() { dst.storeBytes(of: bf16Bits(v), toByteOffset: 2 * k, as: UInt16.self) }
            case .f64:
                for (k, v) in f.enumerated() { dst.storeBytes(of: Double(v), toByteOffset: 8 * k, as: Double.self) }
            default:
                break
            }
        }
    }

    /// Float → bfloat16 with round-to-nearest-even (as PyTorch converts); NaN becomes 0x7FC0.
    public static func bf16Bits(_ v: Float) -> UInt16 {
        let b = v.bitPattern
        if v.isNaN { return 0x7FC0 }
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }
}

/// The bytes behind a `Safetensors`: a memory map, or a private copy.
final class SafetensorsStorage: @unchecked Sendable {
    private let mapped: MappedFile?
    private let owned: UnsafeMutableRawBufferPointer?
    let bytes: UnsafeRawBufferPointer

    init(mapped: MappedFile) {
        self.mapped = mapped
        self.owned = nil
        self.bytes = mapped.bytes
    }

    init(copying source: [UInt8]) {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 16)
        source.withUnsafeBytes { src in
            if let s = src.baseAddress, let d = buf.baseAddress, src.count > 0 { d.copyMemory(from: s, byteCount: src.count) }
        }
        self.mapped = nil
        self.owned = buf
        self.bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buf)[0..<source.count])
    }

    deinit { owned?.deallocate() }
}
