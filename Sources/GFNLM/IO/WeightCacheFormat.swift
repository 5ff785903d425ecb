import CKernels

/// The on-disk layout of a weight cache (docs/formats.md, "Weight cache"), all integers little-endian:
///
///     0   magic "GFNLMWC\0"                      8 bytes
///     8   format version (2: fp16 block scales)  u32
///     12  0                                      u32
///     16  metadata length L                      u64
///     24  CRC-32C of the metadata                u32
///     28  CRC-32C of bytes 0..<28                u32
///     32  metadata: UTF-8 JSON, L bytes (weight format, model configuration, source identity, tensor table)
///     …   payloads, each at a multiple of 4096 (zero bytes between), the file ending with the last one
enum WeightCacheFormat {
    static let magic: [UInt8] = Array("GFNLMWC".utf8) + [0]
    static let version: UInt32 = 2
    static let headerBytes = 32
    static let alignment = 4096
    /// Refused above this (a damaged length field must not make us allocate gigabytes).
    static let maxMetadataBytes = 64 << 20

    static func align(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    static func crc(_ p: UnsafeRawPointer, _ n: Int, _ start: UInt32 = 0) -> UInt32 { gfk_crc32c(start, p, n) }

    static func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { gfk_crc32c(0, $0.baseAddress, $0.count) }
    }

    /// The 32-byte fixed header for metadata `meta`.
    static func header(meta: [UInt8]) -> [UInt8] {
        var h = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { h.append(contentsOf: $0) } }
        put(version); put(UInt32(0)); put(UInt64(meta.count)); put(crc(meta))
        put(crc(h))
        return h
    }

    /// The metadata length and CRC from a fixed header, or why it is not one.
    static func parseHeader(_ h: [UInt8]) -> Result<(length: Int, crc: UInt32), CacheRejection> {
        guard h.count == headerBytes else { return .failure(.damaged("shorter than its 32-byte header")) }
        guard Array(h[0..<8]) == magic else { return .failure(.damaged("bad magic (not a gfnlm weight cache)")) }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v = T.zero
            withUnsafeMutableBytes(of: &v) { dst in
                h.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<at + MemoryLayout<T>.size])) }
            }
            return T(littleEndian: v)
        }
        let v = get(8, UInt32.self)
        // An older layout (version 1 had fp32 block scales) is stale: rewritten, not reported as damage.
        guard v >= 1, v <= version else {
            return .failure(.damaged("format version \(v), this library reads version \(version)"))
        }
        guard v == version else {
            return .failure(.stale("an older cache format (version \(v); this library reads version \(version))"))
        }
        guard get(28, UInt32.self) == crc(Array(h[0..<28])) else { return .failure(.damaged("header checksum mismatch")) }
        let length = get(16, UInt64.self)
        guard length <= UInt64(maxMetadataBytes) else { return .failure(.damaged("metadata length \(length) out of range")) }
        return .success((Int(length), get(24, UInt32.self)))
    }
}

/// Why a cache file was not used. `stale`: it describes another version of the source (or another weight format or
/// an older layout); otherwise it is damaged. Either way the model is loaded from the ONNX file instead.
struct CacheRejection: Error, Sendable {
    let reason: String
    let stale: Bool
    static func damaged(_ r: String) -> CacheRejection { CacheRejection(reason: r, stale: false) }
    static func stale(_ r: String) -> CacheRejection { CacheRejection(reason: r, stale: true) }
}

/// What identifies one source file (the .onnx, an external-data file, a config.json that filled in the
/// configuration) without reading it whole: size, modification time in ns and inode, plus the CRC-32C of up to 17
/// windows of 64 KiB spread evenly over the file (the whole file when it is under 1 MiB) — about 1 MiB of reads
/// whatever its size, so checking a 12 GB source costs milliseconds with a warm cache and a few dozen seeks without.
/// Replacing or rewriting a file changes the inode or the mtime; the sampled digest also catches an edit that
/// restored the mtime while keeping size and inode, unless it touched only bytes between the windows.
struct SourceIdentity: Equatable, Sendable {
    /// Relative to the model file's directory (absolute when outside it).
    let path: String
    let size: Int
    let mtimeNs: Int64
    let inode: UInt64
    let sampleCRC: UInt32

    static let window = 64 << 10
    static let windows = 17

    /// The identity of `path` as it is now; `name` is what the cache records.
    static func of(_ path: String, name: String) throws(GFNError) -> SourceIdentity {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open \(path): \(FileIO.errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("cannot stat \(path): \(FileIO.errnoString())") }
        let size = Int(st.st_size)
        var crc: UInt32 = 0
        let buf = UnsafeMutableRawPointer.allocate(byteCount: window, alignment: 64)
        defer { buf.deallocate() }
        func mix(_ offset: Int, _ n: Int) throws(GFNError) {
            var done = 0
            while done < n {
                let r = pread(fd, buf, min(window, n - done), off_t(offset + done))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw .io("cannot read \(path): \(r < 0 ? FileIO.errnoString() : "unexpected end")") }
                crc = gfk_crc32c(crc, buf, r)
                done += r
            }
        }
        if size <= window * 16 {
            try mix(0, size)
        } else {
            for i in 0..<windows { try mix((size - window) / (windows - 1) * i, window) }
        }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        return SourceIdentity(path: name, size: size, mtimeNs: mtime, inode: UInt64(st.st_ino), sampleCRC: crc)
    }

    var json: JSONValue {
        .object(["path": .string(path), "size": .int(Int64(size)), "mtime_ns": .int(mtimeNs),
                 "inode": .string(String(inode)), "sample_crc32c": .int(Int64(sampleCRC))])
    }

    init(path: String, size: Int, mtimeNs: Int64, inode: UInt64, sampleCRC: UInt32) {
        self.path = path; self.size = size; self.mtimeNs = mtimeNs; self.inode = inode; self.sampleCRC = sampleCRC
    }

    init?(json v: JSONValue) {
        guard case .string(let p)? = v["path"], case .int(let s)? = v["size"], case .int(let m)? = v["mtime_ns"],
              case .string(let i)? = v["inode"], let ino = UInt64(i), case .int(let c)? = v["sample_crc32c"],
              s >= 0, c >= 0, c <= Int64(UInt32.max) else { return nil }
        self.init(path: p, size: Int(s), mtimeNs: m, inode: ino, sampleCRC: UInt32(c))
    }
}

/// One payload of the cache: where it is and its CRC-32C.
struct CachePayload: Sendable {
    var offset: Int
    let length: Int
    let crc: UInt32

    var json: JSONValue { [.int(Int64(offset)), .int(Int64(length)), .int(Int64(crc))] }

    init(offset: Int, length: Int, crc: UInt32) { self.offset = offset; self.length = length; self.crc = crc }

    init?(json v: JSONValue) {
        guard case .array(let a) = v, a.count == 3, case .int(let o) = a[0], case .int(let l) = a[1],
              case .int(let c) = a[2], o >= 0, l >= 0, c >= 0, c <= Int64(UInt32.max) else { return nil }
        self.init(offset: Int(o), length: Int(l), crc: UInt32(c))
    }
}

/// A tensor of the cache: its role name (Hugging Face's, e.g. "transformer.h.0.mlp.c_fc.weight"), how it is stored
/// and its payloads (two for a block-quantized matrix: values, then scales).
struct CacheEntry: Sendable {
    enum Kind: String, Sendable {
        /// fp32 row-major with `shape`; a matrix W [K, N] stored as Wᵀ [N, K] when `transposed` (the embedding).
        case f32, bf16, q8, q4, q6

        /// The kind that stores a block-quantized matrix of `format`.
        init(_ format: QuantMatrix.Format) {
            switch format {
            case .q8: self = .q8
            case .q4: self = .q4
            case .q6: self = .q6
            }
        }

        /// The block-quantized format of this kind; nil for f32 / bf16.
        var quantFormat: QuantMatrix.Format? {
            switch self {
            case .q8: return .q8
            case .q4: return .q4
            case .q6: return .q6
            case .f32, .bf16: return nil
            }
        }
    }
    let name: String
    let kind: Kind
    /// fp32: the stored shape; bf16 / q8 / q4 / q6: W's logical [K, N].
    let shape: [Int]
    let transposed: Bool
    var payloads: [CachePayload]

    /// The payload lengths `kind` and `shape` imply (checked on reading, so that no length field is trusted).
    func expectedLengths() -> [Int]? {
        if kind == .f32 {
            guard shape.allSatisfy({ $0 > 0 }), shape.count <= 4 else { return nil }
            var n = 1
            for d in shape {
                let (p, overflow) = n.multipliedReportingOverflow(by: d)
                if overflow || p > Int.max / 8 { return nil }
                n = p
            }
            return [n * 4]
        }
        guard shape.count == 2, shape[0] > 0, shape[1] > 0, shape[0] < 1 << 24, shape[1] < 1 << 24 else { return nil }
        let K = shape[0], N = shape[1]
        switch kind {
        case .bf16: return [Int(gfk_bf16_packed_count(Int64(K), Int64(N))) * 2]
        case .q8, .q4, .q6:
            guard let f = kind.quantFormat?.code else { return nil }
            return [Int(gfk_q_row_bytes(f, Int64(K))) * N, Int(gfk_q_blocks(Int64(K))) * N * 2]
        case .f32: return nil
        }
    }

    var json: JSONValue {
        .object(["name": .string(name), "kind": .string(kind.rawValue),
                 "shape": .array(shape.map { .int(Int64($0)) }), "transposed": .bool(transposed),
                 "payloads": .array(payloads.map(\.json))])
    }

    init(name: String, kind: Kind, shape: [Int], transposed: Bool, payloads: [CachePayload]) {
        self.name = name; self.kind = kind; self.shape = shape; self.transposed = transposed; self.payloads = payloads
    }

    init?(json v: JSONValue) {
        guard case .string(let n)? = v["name"], case .string(let k)? = v["kind"], let kind = Kind(rawValue: k),
              case .array(let s)? = v["shape"], case .bool(let t)? = v["transposed"],
              case .array(let ps)? = v["payloads"] else { return nil }
        var shape: [Int] = []
        for d in s { guard case .int(let x) = d, x > 0, x < 1 << 40 else { return nil }; shape.append(Int(x)) }
        var payloads: [CachePayload] = []
        for p in ps { guard let q = CachePayload(json: p) else { return nil }; payloads.append(q) }
        self.init(name: n, kind: kind, shape: shape, transposed: t, payloads: payloads)
    }
}

extension ModelConfig {
    /// The configuration as cache metadata; floats as their bit patterns, so they come back exactly.
    var cacheJSON: JSONValue {
        .object(["arch": .string(arch.rawValue), "n_layer": .int(Int64(nLayer)), "n_head": .int(Int64(nHead)),
                 "head_dim": .int(Int64(headDim)), "n_embd": .int(Int64(nEmbd)), "n_inner": .int(Int64(nInner)),
                 "vocab_size": .int(Int64(vocabSize)), "n_positions": .int(Int64(nPositions)),
                 "layer_norm_eps_bits": .int(Int64(layerNormEps.bitPattern)), "rotary_dim": .int(Int64(rotaryDim)),
                 "rotary_base_bits": .int(Int64(rotaryBase.bitPattern)), "activation": .string(activation.rawValue),
                 "tied_head": .bool(tiedHead), "head_bias": .bool(headBias)])
    }

    init?(cacheJSON v: JSONValue) {
        func int(_ k: String) -> Int? { if case .int(let x)? = v[k], x >= 0, x < 1 << 31 { return Int(x) }; return nil }
        func bool(_ k: String) -> Bool? { if case .bool(let b)? = v[k] { return b }; return nil }
        guard case .string(let a)? = v["arch"], let arch = Architecture(rawValue: a),
              case .string(let act)? = v["activation"], let activation = Activation(rawValue: act),
              let nLayer = int("n_layer"), let nHead = int("n_head"), let headDim = int("head_dim"),
              let nEmbd = int("n_embd"), let nInner = int("n_inner"), let vocab = int("vocab_size"),
              let nPos = int("n_positions"), let epsBits = int("layer_norm_eps_bits"), let rot = int("rotary_dim"),
              case .int(let baseBits)? = v["rotary_base_bits"], baseBits >= 0, baseBits <= Int64(UInt32.max),
              let tied = bool("tied_head"), let hb = bool("head_bias") else { return nil }
        self.init(arch: arch, nLayer: nLayer, nHead: nHead, headDim: headDim, nEmbd: nEmbd, nInner: nInner,
                  vocabSize: vocab, nPositions: nPos, layerNormEps: Float(bitPattern: UInt32(epsBits)),
                  rotaryDim: rot, rotaryBase: Float(bitPattern: UInt32(baseBits)), activation: activation,
                  tiedHead: tied, headBias: hb)
    }
}

extension ONNXWeightSource {
    /// Where the weights sit in the ONNX graph (kept so that an fp32 model loaded from the cache can still be
    /// exported with merged adapters).
    var cacheJSON: JSONValue {
        var slotsJSON = JSONObject()
        for name in slots.keys.sorted() {
            slotsJSON[name] = .array(slots[name, default: []].map { s in
                [.int(Int64(s.slot.node)), .int(Int64(s.slot.input)), .string(s.opType), .string(s.inputName),
                 .bool(s.transposed), .int(Int64(s.scale.bitPattern))]
            })
        }
        return .object(["node_count": .int(Int64(nodeCount)), "initializer_count": .int(Int64(initializerCount)),
                        "slots": .object(slotsJSON)])
    }

    convenience init?(cacheJSON v: JSONValue, path: String) {
        guard case .int(let nc)? = v["node_count"], case .int(let ic)? = v["initializer_count"],
              case .object(let o)? = v["slots"] else { return nil }
        var slots: [String: [WeightSlot]] = [:]
        for (name, list) in o {
            guard case .array(let items) = list else { return nil }
            for it in items {
                guard case .array(let f) = it, f.count == 6, case .int(let node) = f[0], case .int(let input) = f[1],
                      case .string(let op) = f[2], case .string(let inName) = f[3], case .bool(let tr) = f[4],
                      case .int(let sc) = f[5], node >= 0, input >= 0, sc >= 0, sc <= Int64(UInt32.max) else { return nil }
                slots[name, default: []].append(WeightSlot(slot: InputSlot(node: Int(node), input: Int(input)), opType: op,
                                                           inputName: inName, transposed: tr,
                                                           scale: Float(bitPattern: UInt32(sc))))
            }
        }
        self.init(path: path, nodeCount: Int(nc), initializerCount: Int(ic), slots: slots)
    }
}
