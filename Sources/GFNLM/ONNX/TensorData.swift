import CONNX

/// ONNX TensorProto.DataType codes and sizes.
enum ONNXDataType {
    static let float: Int32 = 1, uint8: Int32 = 2, int8: Int32 = 3, uint16: Int32 = 4, int16: Int32 = 5
    static let int32: Int32 = 6, int64: Int32 = 7, string: Int32 = 8, bool: Int32 = 9, float16: Int32 = 10
    static let double: Int32 = 11, uint32: Int32 = 12, uint64: Int32 = 13, bfloat16: Int32 = 16

    /// Bytes per element of the types gfnlm can read; nil for the others.
    static func size(_ t: Int32) -> Int? {
        switch t {
        case float, int32, uint32: return 4
        case uint8, int8, bool: return 1
        case uint16, int16, float16, bfloat16: return 2
        case int64, double, uint64: return 8
        default: return nil
        }
    }

    static func isFloat(_ t: Int32) -> Bool { t == float || t == float16 || t == bfloat16 || t == double }

    static func name(_ t: Int32) -> String {
        switch t {
        case 0: return "UNDEFINED"
        case float: return "FLOAT"
        case uint8: return "UINT8"
        case int8: return "INT8"
        case uint16: return "UINT16"
        case int16: return "INT16"
        case int32: return "INT32"
        case int64: return "INT64"
        case string: return "STRING"
        case bool: return "BOOL"
        case float16: return "FLOAT16"
        case double: return "DOUBLE"
        case uint32: return "UINT32"
        case uint64: return "UINT64"
        case 14: return "COMPLEX64"
        case 15: return "COMPLEX128"
        case bfloat16: return "BFLOAT16"
        case 17, 18, 19, 20: return "FLOAT8(\(t))"
        case 21: return "UINT4"
        case 22: return "INT4"
        default: return "type \(t)"
        }
    }
}

/// Limits on what a tensor may declare, checked before any data is touched.
enum TensorLimits {
    static let maxRank = 16
    static let maxDim = 1 << 40
    /// 64 TiB: far above any real model, far below an Int overflow.
    static let maxBytes = 1 << 46
    /// Integer tensors are read into arrays; they are shape vectors and masks, never weights.
    static let maxIntElements = 1 << 26
}

/// The checked header of a tensor in the proto.
struct TensorHeader {
    let ref: TensorRef
    let name: String
    let dataType: Int32
    let shape: [Int]
    let count: Int
}

/// Where a tensor's bytes are, already range- and size-checked.
enum TensorPayload {
    /// Packed little-endian elements of the tensor's data type (raw_data or external data).
    case bytes(UnsafeRawBufferPointer, owner: AnyObject)
    case floats(UnsafeBufferPointer<Float>)
    /// One element per int32 (INT32 and narrower ints, BOOL, FLOAT16/BFLOAT16 bit patterns).
    case int32s(UnsafeBufferPointer<Int32>)
    case int64s(UnsafeBufferPointer<Int64>)
    case doubles(UnsafeBufferPointer<Double>)
    case uint64s(UnsafeBufferPointer<UInt64>)
}

/// Reads tensor data out of a parsed ONNX file: inline raw_data (zero-copy for aligned fp32), typed fields, and
/// external data files (mmapped, zero-copy when 4-byte aligned). Converts fp16/bf16/double to fp32.
/// External locations are checked: relative, inside the model's folder (no `..`, no symlink leaving it),
/// a regular file, the declared size equal to the stored length, the range inside the file.
final class TensorDataReader {
    let graph: ONNXGraph
    private var maps: [String: MappedFile] = [:]
    private var modelDirReal: String?

    init(graph: ONNXGraph) {
        self.graph = graph
    }

    /// Every data file mapped so far (kept alive by the loaded model).
    var mappedFiles: [MappedFile] { Array(maps.values) }

    private var file: ONNXFile { graph.file }

    private func raw(_ ref: TensorRef) throws(GFNError) -> connx_tensor {
        var t = connx_tensor()
        guard connx_tensor_get(file.handle, ref.node, ref.index, &t) == CONNX_OK else {
            throw .internalError("\(file.path): no tensor at \(ref)")
        }
        return t
    }

    private func describe(_ ref: TensorRef, _ t: connx_tensor) -> String {
        let n = ONNXGraph.str(t.name)
        if ref.isInitializer { return "initializer '\(n)'" }
        let node = Int(ref.node) < graph.nodes.count ? graph.nodes[Int(ref.node)].label : "node \(ref.node)"
        return n.isEmpty ? "the tensor attribute of \(node)" : "tensor '\(n)' of \(node)"
    }

    /// Name, type and checked shape of a tensor (no data read).
    func header(_ ref: TensorRef) throws(GFNError) -> TensorHeader {
        let t = try raw(ref)
        let what = describe(ref, t)
        guard t.rank >= 0 && Int(t.rank) <= TensorLimits.maxRank else {
            throw .format("\(file.path): \(what) has rank \(t.rank) (at most \(TensorLimits.maxRank) allowed)")
        }
        var shape: [Int] = []
        var count = 1
        if t.rank > 0 {
            guard let dims = t.dims else { throw .internalError("\(file.path): \(what) has no dims pointer") }
            for d in 0..<Int(t.rank) {
                let v = dims[d]
                guard v >= 0 else { throw .format("\(file.path): \(what) has a negative dimension \(v)") }
                guard v <= Int64(TensorLimits.maxDim) else {
                    throw .format("\(file.path): \(what) has dimension \(v), over the sane bound \(TensorLimits.maxDim)")
                }
                shape.append(Int(v))
                let (p, o) = count.multipliedReportingOverflow(by: Int(v))
                guard !o && p <= TensorLimits.maxBytes else {
                    throw .format("\(file.path): \(what) declares \(shape)… elements: the size overflows a sane bound")
                }
                count = p
            }
        }
        if let es = ONNXDataType.size(t.data_type) {
            let (b, o) = count.multipliedReportingOverflow(by: es)
            guard !o && b <= TensorLimits.maxBytes else {
                throw .format("\(file.path): \(what) declares \(b) bytes, over the sane bound")
            }
        }
        return TensorHeader(ref: ref, name: ONNXGraph.str(t.name), dataType: t.data_type, shape: shape, count: count)
    }

    /// Locates the tensor's data and checks that it holds exactly the declared number of elements.
    func payload(_ h: TensorHeader) throws(GFNError) -> TensorPayload {
        let t = try raw(h.ref)
        let what = describe(h.ref, t)
        guard let es = ONNXDataType.size(h.dataType) else {
            throw .unsupported("\(file.path): \(what) has data type \(ONNXDataType.name(h.dataType)), which gfnlm cannot read")
        }
        let nbytes = h.count * es  // checked in header()
        if t.data_location == 1 {
            let (b, m) = try external(h, t, what: what, nbytes: nbytes)
            return .bytes(b, owner: m)
        }
        if t.has_raw_data != 0 || t.raw_size > 0 {
            guard t.raw_size == nbytes else {
                throw .format("\(file.path): \(what) declares shape \(h.shape) of \(ONNXDataType.name(h.dataType)) "
                              + "(\(nbytes) bytes) but holds \(t.raw_size) bytes of raw_data")
            }
            return .bytes(UnsafeRawBufferPointer(start: t.raw_data, count: nbytes), owner: file)
        }
        func check(_ n: Int64, _ field: String) throws(GFNError) {
            guard n == Int64(h.count) else {
                throw .format("\(file.path): \(what) declares shape \(h.shape) (\(h.count) elements) but its \(field) "
                              + "holds \(n) values")
            }
        }
        switch h.dataType {
        case ONNXDataType.float:
            try check(t.float_count, "float_data")
            return .floats(UnsafeBufferPointer(start: t.float_data, count: h.count))
        case ONNXDataType.int32, ONNXDataType.int16, ONNXDataType.int8, ONNXDataType.uint16, ONNXDataType.uint8,
             ONNXDataType.bool, ONNXDataType.float16, ONNXDataType.bfloat16:
            try check(t.int32_count, "int32_data")
            return .int32s(UnsafeBufferPointer(start: t.int32_data, count: h.count))
        case ONNXDataType.int64:
            try check(t.int64_count, "int64_data")
            return .int64s(UnsafeBufferPointer(start: t.int64_data, count: h.count))
        case ONNXDataType.double:
            try check(t.double_count, "double_data")
            return .doubles(UnsafeBufferPointer(start: t.double_data, count: h.count))
        case ONNXDataType.uint32, ONNXDataType.uint64:
            try check(t.uint64_count, "uint64_data")
            return .uint64s(UnsafeBufferPointer(start: t.uint64_data, count: h.count))
        default:
            throw .unsupported("\(file.path): \(what) has data type \(ONNXDataType.name(h.dataType))")
        }
    }

    /// The tensor as fp32 (borrowed when it already is aligned fp32, converted otherwise).
    func floats(_ h: TensorHeader) throws(GFNError) -> FloatStorage {
        let p = try payload(h)
        let n = h.count
        switch (p, h.dataType) {
        case (.bytes(let b, let owner), ONNXDataType.float):
            if n == 0 { return try FloatStorage(count: 0) }
            if let base = b.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                return FloatStorage(borrowing: UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Float.self)),
                                    count: n, owner: owner)
            }
            let s = try FloatStorage(count: n)
            if let base = b.baseAddress { memcpy(s.base, base, n * 4) }
            return s
        case (.floats(let f), _):
            if n == 0 { return try FloatStorage(count: 0) }
            guard let base = f.baseAddress else { throw .internalError("float_data without storage") }
            return FloatStorage(borrowing: UnsafeMutablePointer(mutating: base), count: n, owner: file)
        case (.bytes(let b, _), ONNXDataType.float16):
            let s = try FloatStorage(count: n)
            Self.halfToFloat(b, s.base, n)
            return s
        case (.bytes(let b, _), ONNXDataType.bfloat16):
            let s = try FloatStorage(count: n)
            let d = s.base
            for i in 0..<n {
                let bits = UInt32(b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16
                d[i] = Float(bitPattern: bits)
            }
            return s
        case (.int32s(let v), ONNXDataType.float16):
            let s = try FloatStorage(count: n)
            for i in 0..<n { s.base[i] = Float(Float16(bitPattern: UInt16(truncatingIfNeeded: v[i]))) }
            return s
        case (.int32s(let v), ONNXDataType.bfloat16):
            let s = try FloatStorage(count: n)
            for i in 0..<n { s.base[i] = Float(bitPattern: UInt32(UInt16(truncatingIfNeeded: v[i])) << 16) }
            return s
        case (.bytes(let b, _), ONNXDataType.double):
            let s = try FloatStorage(count: n)
            for i in 0..<n { s.base[i] = Float(Double(bitPattern: b.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
            return s
        case (.doubles(let v), _):
            let s = try FloatStorage(count: n)
            for i in 0..<n { s.base[i] = Float(v[i]) }
            return s
        default:
            let ints = try self.ints(h)
            let s = try FloatStorage(count: n)
            for i in 0..<min(n, ints.count) { s.base[i] = Float(ints[i]) }
            return s
        }
    }

    /// The tensor as Int64 values (shape vectors, indices, masks). Floats are truncated toward zero.
    func ints(_ h: TensorHeader) throws(GFNError) -> [Int64] {
        let n = h.count
        guard n <= TensorLimits.maxIntElements else {
            throw .unsupported("\(file.path): integer tensor '\(h.name)' has \(n) elements, too many to be a shape")
        }
        if ONNXDataType.isFloat(h.dataType) {
            let f = try floats(h)
            return (0..<n).map { i in
                let x = f.base[i]
                return x.isFinite && abs(x) < 9.2e18 ? Int64(x) : 0
            }
        }
        let p = try payload(h)
        switch p {
        case .bytes(let b, _):
            return (0..<n).map { i -> Int64 in
                switch h.dataType {
                case ONNXDataType.int64: return Int64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                case ONNXDataType.uint64:
                    return Int64(truncatingIfNeeded: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                case ONNXDataType.int32: return Int64(Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case ONNXDataType.uint32: return Int64(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                case ONNXDataType.int16: return Int64(Int16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                case ONNXDataType.uint16: return Int64(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                case ONNXDataType.int8: return Int64(b.loadUnaligned(fromByteOffset: i, as: Int8.self))
                default: return Int64(b.loadUnaligned(fromByteOffset: i, as: UInt8.self))  // UINT8, BOOL
                }
            }
        case .int32s(let v): return v.map { Int64($0) }
        case .int64s(let v): return Array(v)
        case .uint64s(let v): return v.map { Int64(truncatingIfNeeded: $0) }
        case .floats(let v): return v.map { $0.isFinite && abs($0) < 9.2e18 ? Int64($0) : 0 }
        case .doubles(let v): return v.map { $0.isFinite && abs($0) < 9.2e18 ? Int64($0) : 0 }
        }
    }

    /// Drops the resident pages of a tensor's external data (whole pages inside its range) from this process:
    /// the bf16 loader calls it after converting the tensor. The mapping stays valid (pages are re-read from the
    /// file if touched again). No-op for data held by the proto.
    func releasePages(_ ref: TensorRef) {
        guard let h = try? header(ref), let p = try? payload(h), case .bytes(let b, let owner) = p,
              owner is MappedFile, let base = b.baseAddress, b.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        let start = (Int(bitPattern: base) + page - 1) / page * page
        let end = (Int(bitPattern: base) + b.count) / page * page
        if end > start, let p = UnsafeMutableRawPointer(bitPattern: start) {
            _ = madvise(p, end - start, MADV_DONTNEED)
        }
    }

    /// The start and byte length of the tensor's data in memory owned by the proto (raw_data or typed field),
    /// or nil for external/empty data. Used to release unused tensors after loading.
    func protoDataRange(_ ref: TensorRef) -> (UnsafeRawPointer, Int)? {
        guard let t = try? raw(ref), t.data_location != 1 else { return nil }
        if let p = t.raw_data, t.raw_size > 0 { return (p, t.raw_size) }
        if let p = t.float_data, t.float_count > 0 { return (UnsafeRawPointer(p), Int(t.float_count) * 4) }
        if let p = t.int32_data, t.int32_count > 0 { return (UnsafeRawPointer(p), Int(t.int32_count) * 4) }
        return nil
    }

    // MARK: fp16

    static func halfToFloat(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        guard let base = src.baseAddress else { return }
        if Int(bitPattern: base) % 2 == 0 {
            let h = base.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { dst[i] = Float(Float16(bitPattern: UInt16(littleEndian: h[i]))) }
        } else {
            for i in 0..<n {
                dst[i] = Float(Float16(bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
            }
        }
    }

    // MARK: external data

    private func external(_ h: TensorHeader, _ t: connx_tensor, what: String, nbytes: Int)
        throws(GFNError) -> (UnsafeRawBufferPointer, MappedFile)
    {
        var location: String? = nil
        var offsetText: String? = nil
        var lengthText: String? = nil
        for k in 0..<max(0, t.external_count) {
            var key: UnsafePointer<CChar>? = nil
            var value: UnsafePointer<CChar>? = nil
            guard connx_tensor_external(file.handle, h.ref.node, h.ref.index, k, &key, &value) == CONNX_OK else { continue }
            switch ONNXGraph.str(key) {
            case "location": location = ONNXGraph.str(value)
            case "offset": offsetText = ONNXGraph.str(value)
            case "length": lengthText = ONNXGraph.str(value)
            default: break  // checksum, basepath: ignored (locations are always relative to the model's folder)
            }
        }
        guard let location, !location.isEmpty else {
            throw .format("\(file.path): \(what) is marked as external data but has no location")
        }
        func number(_ s: String?, _ key: String) throws(GFNError) -> Int? {
            guard let s else { return nil }
            guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let v = Int(s) else {
                throw .format("\(file.path): \(what) has an invalid external-data \(key) '\(s)'")
            }
            return v
        }
        let offset = try number(offsetText, "offset") ?? 0
        let length = try number(lengthText, "length")
        let mapped = try mapExternal(location, what: what)
        let size = mapped.size
        guard offset <= size else {
            throw .format("\(file.path): \(what): external data offset \(offset) lies beyond the end of "
                          + "\(mapped.path) (\(size) bytes)")
        }
        let available = size - offset
        let len = length ?? available
        guard len <= available else {
            throw .format("\(file.path): \(what): external data range \(offset)+\(len) lies beyond the end of "
                          + "\(mapped.path) (\(size) bytes; truncated data file?)")
        }
        guard len == nbytes else {
            throw .format("\(file.path): \(what) declares shape \(h.shape) of \(ONNXDataType.name(h.dataType)) "
                          + "(\(nbytes) bytes) but its external data in \(location) has \(len) bytes")
        }
        let start = mapped.base.map { $0 + offset }
        return (UnsafeRawBufferPointer(start: nbytes == 0 ? nil : start, count: nbytes), mapped)
    }

    /// Checks an external-data location and maps the file (once per file).
    private func mapExternal(_ location: String, what: String) throws(GFNError) -> MappedFile {
        if location.hasPrefix("/") {
            throw .format("\(file.path): \(what) refers to external data at the absolute path '\(location)'; "
                          + "only paths relative to the model's folder are allowed")
        }
        let components = location.split(separator: "/", omittingEmptySubsequences: true)
        if components.contains("..") || location.utf8.contains(0) {
            throw .format("\(file.path): \(what) refers to external data '\(location)' outside the model's folder "
                          + "('..' is not allowed)")
        }
        let dirReal: String
        if let d = modelDirReal {
            dirReal = d
        } else {
            guard let d = Self.realPath(file.directory) else {
                throw .io("cannot resolve the folder of \(file.path): \(FileIO.errnoString())")
            }
            modelDirReal = d
            dirReal = d
        }
        let joined = FileIO.join(file.directory, location)
        guard let real = Self.realPath(joined) else {
            throw .io("\(file.path): \(what): cannot open external data file '\(location)' "
                      + "(looked for \(joined)): \(FileIO.errnoString())")
        }
        let prefix = dirReal.hasSuffix("/") ? dirReal : dirReal + "/"
        guard real.hasPrefix(prefix) else {
            throw .format("\(file.path): \(what) refers to external data '\(location)', which resolves to \(real), "
                          + "outside the model's folder \(dirReal) (symlinks out of the folder are not allowed)")
        }
        if let m = maps[real] { return m }
        var st = stat()
        guard stat(real, &st) == 0 else { throw .io("cannot stat external data file \(real): \(FileIO.errnoString())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .format("\(file.path): external data '\(location)' (\(real)) is not a regular file")
        }
        let m = try MappedFile(path: real)
        maps[real] = m
        return m
    }

    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}
