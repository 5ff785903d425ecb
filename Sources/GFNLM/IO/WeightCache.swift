import CKernels

/// Whether a model load uses a converted weight cache (`WeightCache`).
public enum WeightCacheMode: Int32, Sendable {
    /// Always load from the ONNX file (the default).
    case off = 0
    /// Load from a valid cache; otherwise load from the ONNX file and write the cache.
    case readWrite = 1
    /// Load from a valid cache; otherwise load from the ONNX file, writing nothing.
    case readOnly = 2
}

/// Severity of a diagnostic handed to a `LogFunction` (the C API's gfn_log_level values).
public enum LogLevel: Int32, Sendable { case debug = 0, info = 1, warn = 2, error = 3 }
public typealias LogFunction = @Sendable (LogLevel, String) -> Void

public struct WeightCacheOptions: Sendable {
    public var mode: WeightCacheMode
    /// Where cache files go; nil: beside the .onnx file.
    public var directory: String?
    /// Receives what the cache did and why (used, written, not used because stale or damaged, not writable).
    public var log: LogFunction?

    public init(mode: WeightCacheMode = .off, directory: String? = nil, log: LogFunction? = nil) {
        self.mode = mode; self.directory = directory; self.log = log
    }
}

/// A converted copy of a model's weights in the format they are used in (fp32, bf16, int8, 4-bit), so that loading
/// a big model costs reading that many bytes instead of parsing the ONNX file and converting or quantizing every
/// matrix (a GPT-J-6B-shaped fp16 export: minutes). Layout: `WeightCacheFormat`, docs/formats.md.
///
/// A cache is used only when everything checks: magic, version, header and metadata checksums, the weight format, the
/// identity of every source file (`SourceIdentity`: size, mtime, inode and a sampled digest of the .onnx, its
/// external data and a config.json that filled in the configuration), the configuration, every payload's bounds and
/// its CRC-32C, and the shapes of the assembled model. Anything else is a stale or damaged cache: the model is
/// loaded from the ONNX file (and, in `.readWrite` mode, the cache rewritten), and the log says why. Caches are
/// written to a temporary file in the same directory, synced and renamed over the old one, so a crash or a
/// concurrent writer never leaves a partial file under the cache's name; a loader that opened the old file keeps
/// reading it intact. A directory that cannot be written means no cache (a warning), never a failed load.
///
/// Reading copies each payload into the usual weight storage with pread in 4 MiB chunks (payloads spread over the
/// model's threads), checksumming each chunk while it is still in the CPU's cache, instead of mapping the file: the
/// checksums must read every byte anyway, so a mapping would save nothing but the copy (≈ memory bandwidth, a
/// fraction of a second per GB), whereas it would need BF16Matrix / QuantMatrix / FloatStorage to borrow file
/// memory, leave the model exposed to a file changed under it, and count the file pages in the process's RSS. With
/// pread, resident memory is the weights alone and the file's pages stay in the kernel's page cache for the next load.
public enum WeightCache {
    /// What happened in `load`.
    public struct Outcome: Sendable {
        /// The cache file's path (nil when the mode is `.off`).
        public let path: String?
        /// Whether the weights came from the cache.
        public let used: Bool
        /// Why the cache was not used (nil when used or off).
        public let rejection: String?
        /// Whether a new cache file was written.
        public let written: Bool
    }

    /// Loads weights as `ONNXModelLoader.load` does, through the cache chosen by `options`.
    public static func load(path: String, weightType: WeightType, threads: Int,
                            options: WeightCacheOptions) throws(GFNError) -> (weights: ModelWeights, outcome: Outcome) {
        let log = options.log ?? { _, _ in }
        guard options.mode != .off else {
            return (try ONNXModelLoader.load(path: path, weightType: weightType, threads: threads),
                    Outcome(path: nil, used: false, rejection: nil, written: false))
        }
        let modelPath = try ONNXModelLoader.resolveModelPath(path)
        let cachePath = try file(modelPath: modelPath, weightType: weightType, directory: options.directory)
        var rejection: String
        do {
            let t0 = ONNXModelLoader.now()
            let w = try read(cachePath: cachePath, modelPath: modelPath, weightType: weightType, threads: threads)
            log(.info, "loaded \(weightType) weights of \(modelPath) from the weight cache \(cachePath) in "
                + "\(formatSeconds(ONNXModelLoader.now() - t0)) s")
            return (w, Outcome(path: cachePath, used: true, rejection: nil, written: false))
        } catch let r {
            rejection = r.reason
            log(r.stale ? .info : .warn, "weight cache \(cachePath) not used: \(r.reason); loading \(modelPath)")
        }
        let startNs = realtimeNs()
        let report = try ONNXModelLoader.loadWithReport(path: modelPath, weightType: weightType, threads: threads)
        guard options.mode == .readWrite else {
            return (report.weights, Outcome(path: cachePath, used: false, rejection: rejection, written: false))
        }
        do throws(GFNError) {
            let t0 = ONNXModelLoader.now()
            let ids = try identities(report.sourceFiles, modelPath: modelPath)
            if let changed = ids.first(where: { $0.mtimeNs >= startNs }) {
                throw GFNError.io("\(changed.path) was modified while the model was loading")
            }
            let bytes = try write(report.weights, identities: ids, to: cachePath)
            log(.info, "wrote the weight cache \(cachePath) (\(bytes) bytes) in \(formatSeconds(ONNXModelLoader.now() - t0)) s")
            return (report.weights, Outcome(path: cachePath, used: false, rejection: rejection, written: true))
        } catch {
            log(.warn, "no weight cache written for \(modelPath): \(error.message)")
            return (report.weights, Outcome(path: cachePath, used: false, rejection: rejection, written: false))
        }
    }

    /// The cache file for a model file and weight format: `<model file>.gfnlm-<format>.cache` beside it, or in
    /// `directory` `<model file>.<CRC-32C of its real path, hex>.gfnlm-<format>.cache` (models of the same name in
    /// different folders then do not overwrite each other's caches).
    public static func file(modelPath: String, weightType: WeightType, directory: String?) throws(GFNError) -> String {
        let name = FileIO.basename(of: modelPath)
        guard let directory else { return modelPath + ".gfnlm-\(weightType).cache" }
        guard !directory.isEmpty else { throw .invalidArgument("empty weight cache directory") }
        let real = TensorDataReader.realPath(modelPath) ?? modelPath
        let h = String(WeightCacheFormat.crc(Array(real.utf8)), radix: 16)
        return FileIO.join(directory, "\(name).\(String(repeating: "0", count: 8 - h.count) + h).gfnlm-\(weightType).cache")
    }

    static func realtimeNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func formatSeconds(_ s: Double) -> String {
        let ms = Int((s * 1000).rounded())
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - String(ms % 1000).count))\(ms % 1000)"
    }

    /// Identities of the source files, named relative to the model file's directory.
    static func identities(_ files: [String], modelPath: String) throws(GFNError) -> [SourceIdentity] {
        let dir = TensorDataReader.realPath(FileIO.dirname(of: modelPath)) ?? FileIO.dirname(of: modelPath)
        let prefix = dir.hasSuffix("/") ? dir : dir + "/"
        var out: [SourceIdentity] = []
        for (i, f) in files.enumerated() {
            let real = TensorDataReader.realPath(f) ?? f
            let name = i == 0 ? FileIO.basename(of: modelPath)
                              : (real.hasPrefix(prefix) ? String(real.dropFirst(prefix.count)) : real)
            out.append(try SourceIdentity.of(f, name: name))
        }
        return out
    }

    // MARK: - Writing

    /// The tensors of a model as cache entries (payload offsets still 0) and their memory.
    static func entries(of w: ModelWeights) throws(GFNError) -> [(CacheEntry, [UnsafeRawPointer])] {
        var out: [(CacheEntry, [UnsafeRawPointer])] = []
        func tensor(_ name: String, _ t: Tensor) {
            out.append((CacheEntry(name: name, kind: .f32, shape: t.shape, transposed: false,
                                   payloads: [CachePayload(offset: 0, length: t.count * 4, crc: 0)]),
                        [UnsafeRawPointer(t.pointer)]))
        }
        func matrix(_ name: String, _ m: WeightMatrix) {
            switch m.storage {
            case .f32(let t, let tr):
                out.append((CacheEntry(name: name, kind: .f32, shape: t.shape, transposed: tr,
                                       payloads: [CachePayload(offset: 0, length: t.count * 4, crc: 0)]),
                            [UnsafeRawPointer(t.pointer)]))
            case .bf16(let b):
                out.append((CacheEntry(name: name, kind: .bf16, shape: [b.rows, b.cols], transposed: false,
                                       payloads: [CachePayload(offset: 0, length: b.bytes, crc: 0)]),
                            [UnsafeRawPointer(b.base)]))
            case .quant(let q):
                let sb = q.scaleBytes
                out.append((CacheEntry(name: name, kind: CacheEntry.Kind(q.format), shape: [q.rows, q.cols],
                                       transposed: false,
                                       payloads: [CachePayload(offset: 0, length: q.bytes - sb, crc: 0),
                                                  CachePayload(offset: 0, length: sb, crc: 0)]),
                            [UnsafeRawPointer(q.qs), UnsafeRawPointer(q.scales)]))
            }
        }
        func linear(_ l: Linear) {
            matrix(l.name + ".weight", l.matrix)
            if let b = l.bias { tensor(l.name + ".bias", b) }
        }
        matrix("transformer.wte.weight", w.embedding)
        if let wpe = w.wpe { tensor("transformer.wpe.weight", wpe) }
        for (i, b) in w.blocks.enumerated() {
            tensor("transformer.h.\(i).ln_1.weight", b.ln1.gamma); tensor("transformer.h.\(i).ln_1.bias", b.ln1.beta)
            if let ln2 = b.ln2 {
                tensor("transformer.h.\(i).ln_2.weight", ln2.gamma); tensor("transformer.h.\(i).ln_2.bias", ln2.beta)
            }
            for l in b.linears { linear(l) }
        }
        tensor("transformer.ln_f.weight", w.lnF.gamma); tensor("transformer.ln_f.bias", w.lnF.beta)
        if case .linear(let h) = w.head { linear(h) }
        return out
    }

    /// Writes the cache of `w` atomically; returns its size in bytes.
    static func write(_ w: ModelWeights, identities: [SourceIdentity], to path: String) throws(GFNError) -> Int {
        var items = try entries(of: w)
        // Checksums first (from memory, ~10 GB/s): the metadata holding them precedes the payloads in the file.
        for i in items.indices {
            for j in items[i].0.payloads.indices {
                let p = items[i].0.payloads[j]
                items[i].0.payloads[j] = CachePayload(offset: 0, length: p.length,
                                                      crc: WeightCacheFormat.crc(items[i].1[j], p.length))
            }
        }
        // Offsets depend on where the payloads start, which depends on the metadata's length: iterate to a fixpoint.
        var start = WeightCacheFormat.align(WeightCacheFormat.headerBytes + 1)
        var meta: [UInt8] = []
        var end = 0
        while true {
            var off = start
            for i in items.indices {
                for j in items[i].0.payloads.indices {
                    items[i].0.payloads[j].offset = off
                    off = WeightCacheFormat.align(off + items[i].0.payloads[j].length)
                }
            }
            end = items.last.map { ($0.0.payloads.last?.offset ?? 0) + ($0.0.payloads.last?.length ?? 0) } ?? start
            var m: JSONObject = ["weights": .string(w.weightType.description), "config": w.config.cacheJSON,
                                 "sources": .array(identities.map(\.json)),
                                 "tensors": .array(items.map { $0.0.json })]
            if let s = w.onnxSource, w.weightType == .f32 { m["onnx_source"] = s.cacheJSON }
            meta = JSONValue.object(m).serializedBytes()
            let need = WeightCacheFormat.align(WeightCacheFormat.headerBytes + meta.count)
            if need <= start { break }
            start = need
        }

        let dir = FileIO.dirname(of: path)
        // A writer that died (crash, OOM kill) leaves its temporary file: remove those of processes gone.
        AtomicDirectory.removeStaleTemporaries(of: path)
        var rng = SystemRandomNumberGenerator()
        let tmp = path + ".tmp.\(getpid()).\(String(rng.next() as UInt64, radix: 16))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(tmp): \(FileIO.errnoString())") }
        var ok = false
        defer { if !ok { close(fd); unlink(tmp) } }
        var pos = 0
        /// Writes n bytes at p; an errno value on failure, 0 on success.
        func put(_ p: UnsafeRawPointer, _ n: Int) -> Int32 {
            var done = 0
            while done < n {
                let r = Glibc.write(fd, p + done, min(n - done, 1 << 26))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { return r < 0 ? errno : EIO }
                done += r
            }
            pos += n
            return 0
        }
        func check(_ e: Int32) throws(GFNError) {
            if e != 0 { throw .io("cannot write \(tmp): \(String(cString: strerror(e)))") }
        }
        let zeros = [UInt8](repeating: 0, count: WeightCacheFormat.alignment)
        func pad(to target: Int) throws(GFNError) {
            while pos < target {
                let n = min(target - pos, zeros.count)
                try check(zeros.withUnsafeBytes { put($0.baseAddress!, n) })
            }
        }
        let header = WeightCacheFormat.header(meta: meta)
        try check(header.withUnsafeBytes { put($0.baseAddress!, $0.count) })
        try check(meta.withUnsafeBytes { put($0.baseAddress!, $0.count) })
        for (e, ptrs) in items {
            for (p, src) in zip(e.payloads, ptrs) {
                try pad(to: p.offset)
                try check(put(src, p.length))
            }
        }
        guard pos == end else { throw .internalError("weight cache layout: wrote \(pos) bytes, expected \(end)") }
        guard fsync(fd) == 0 else { throw .io("cannot sync \(tmp): \(FileIO.errnoString())") }
        close(fd)
        ok = true
        guard rename(tmp, path) == 0 else {
            let e = FileIO.errnoString()
            unlink(tmp)
            throw .io("cannot rename \(tmp) to \(path): \(e)")
        }
        // Make the rename itself durable.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        return end
    }
}
