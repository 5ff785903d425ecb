import CKernels

extension WeightCache {
    /// Reads and checks a cache file (see `WeightCache`); any failure is a `CacheRejection`.
    /// `threads` read the payloads when there are at least `bytesPerThread` bytes for each.
    static func read(cachePath: String, modelPath: String, weightType: WeightType, threads: Int = 1,
                     bytesPerThread: Int = 64 << 20) throws(CacheRejection) -> ModelWeights {
        let fd = open(cachePath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .stale("no cache file yet") }
            throw .damaged("cannot open it: \(FileIO.errnoString())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw .damaged("not a regular file") }
        let size = Int(st.st_size)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)

        func readBytes(_ offset: Int, _ n: Int, into dst: UnsafeMutableRawPointer) throws(CacheRejection) -> UInt32 {
            var done = 0
            var crc: UInt32 = 0
            while done < n {
                let r = pread(fd, dst + done, min(n - done, 4 << 20), off_t(offset + done))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw .damaged(r < 0 ? "read error: \(FileIO.errnoString())" : "truncated at \(offset + done)") }
                crc = gfk_crc32c(crc, dst + done, r)
                done += r
            }
            return crc
        }
        func readArray(_ offset: Int, _ n: Int) throws(CacheRejection) -> ([UInt8], UInt32) {
            let buf = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 16)
            defer { buf.deallocate() }
            let crc = try readBytes(offset, n, into: buf)
            return (Array(UnsafeRawBufferPointer(start: buf, count: n)), crc)
        }

        guard size >= WeightCacheFormat.headerBytes else { throw .damaged("truncated (\(size) bytes)") }
        let (h, _) = try readArray(0, WeightCacheFormat.headerBytes)
        let (metaLength, metaCRC) = try WeightCacheFormat.parseHeader(h).get()
        guard WeightCacheFormat.headerBytes + metaLength <= size else { throw .damaged("truncated in its metadata") }
        let (metaBytes, crc) = try readArray(WeightCacheFormat.headerBytes, metaLength)
        guard crc == metaCRC else { throw .damaged("metadata checksum mismatch") }
        let meta: JSONValue
        do { meta = try JSONValue.parse(metaBytes) } catch { throw .damaged("metadata: \(error.message)") }

        guard case .string(let w)? = meta["weights"] else { throw .damaged("metadata without a weight format") }
        guard w == weightType.description else { throw .stale("it holds \(w) weights, not \(weightType)") }

        // The sources: the model file first, then its external data and config.json.
        guard case .array(let srcs)? = meta["sources"], !srcs.isEmpty else { throw .damaged("metadata without sources") }
        let dir = FileIO.dirname(of: modelPath)
        for (i, s) in srcs.enumerated() {
            guard let recorded = SourceIdentity(json: s) else { throw .damaged("malformed source identity") }
            if i == 0 && recorded.path != FileIO.basename(of: modelPath) {
                throw .stale("it was made from \(recorded.path), not \(FileIO.basename(of: modelPath))")
            }
            let p = recorded.path.hasPrefix("/") ? recorded.path : FileIO.join(dir, recorded.path)
            let now: SourceIdentity
            do { now = try SourceIdentity.of(p, name: recorded.path) } catch {
                throw .stale("source \(recorded.path) cannot be read: \(error.message)")
            }
            guard now == recorded else {
                let what = now.size != recorded.size ? "size \(recorded.size) → \(now.size)"
                    : now.inode != recorded.inode ? "inode \(recorded.inode) → \(now.inode) (replaced)"
                    : now.mtimeNs != recorded.mtimeNs ? "modification time changed" : "sampled content digest changed"
                throw .stale("source \(recorded.path) changed since the cache was written: \(what)")
            }
        }

        guard let cfgJSON = meta["config"], let config = ModelConfig(cacheJSON: cfgJSON) else {
            throw .damaged("malformed model configuration")
        }
        do { try config.validate() } catch { throw .damaged(error.message) }

        // The tensor table: every payload aligned, inside the file, not overlapping another, of the length its
        // kind and shape imply; the file ends exactly where the last payload does.
        guard case .array(let list)? = meta["tensors"] else { throw .damaged("metadata without a tensor table") }
        var entries: [String: CacheEntry] = [:]
        var ranges: [(Int, Int)] = []
        let payloadStart = WeightCacheFormat.align(WeightCacheFormat.headerBytes + metaLength)
        for item in list {
            guard let e = CacheEntry(json: item) else { throw .damaged("malformed tensor entry") }
            guard let lengths = e.expectedLengths(), lengths == e.payloads.map(\.length) else {
                throw .damaged("\(e.name): payload lengths do not match its kind and shape")
            }
            guard entries.updateValue(e, forKey: e.name) == nil else { throw .damaged("\(e.name) listed twice") }
            for p in e.payloads {
                guard p.offset % WeightCacheFormat.alignment == 0, p.offset >= payloadStart,
                      p.offset <= size, p.length <= size - p.offset else {
                    throw .damaged("\(e.name): payload at \(p.offset) (+\(p.length)) beyond the end of the file "
                                   + "(\(size) bytes: truncated or damaged)")
                }
                ranges.append((p.offset, p.length))
            }
        }
        ranges.sort { $0.0 < $1.0 }
        for i in ranges.indices.dropFirst() where ranges[i - 1].0 + ranges[i - 1].1 > ranges[i].0 {
            throw .damaged("overlapping payloads")
        }
        let end = ranges.last.map { $0.0 + $0.1 } ?? payloadStart
        guard end == size else { throw .damaged("\(size) bytes where the tensor table ends at \(end) (truncated or extended)") }

        // The model is assembled first with uninitialized storage, each payload's destination noted; then every
        // payload is read into place, on `threads` threads, each chunk checksummed as it arrives.
        var used = Set<String>()
        var jobs: [(payload: CachePayload, name: String, dst: UnsafeMutableRawPointer)] = []
        func entry(_ name: String) throws(CacheRejection) -> CacheEntry {
            guard let e = entries[name] else { throw .damaged("\(name) missing") }
            used.insert(name)
            return e
        }
        func load(_ e: CacheEntry, _ i: Int, into dst: UnsafeMutableRawPointer) {
            jobs.append((e.payloads[i], e.name, dst))
        }
        func fp32(_ e: CacheEntry) throws(CacheRejection) -> Tensor {
            guard e.kind == .f32 else { throw .damaged("\(e.name) is \(e.kind.rawValue), expected fp32") }
            let s: FloatStorage
            do { s = try FloatStorage(count: e.shape.reduce(1, *), zeroed: false) } catch { throw .damaged(error.message) }
            load(e, 0, into: s.base)
            return Tensor(shape: e.shape, storage: s)
        }
        func tensor(_ name: String) throws(CacheRejection) -> Tensor {
            let e = try entry(name)
            guard !e.transposed else { throw .damaged("\(name) marked transposed") }
            return try fp32(e)
        }
        func optionalTensor(_ name: String) throws(CacheRejection) -> Tensor? {
            entries[name] == nil ? nil : try tensor(name)
        }
        func matrix(_ name: String) throws(CacheRejection) -> WeightMatrix {
            let e = try entry(name)
            do {
                switch e.kind {
                case .f32:
                    guard e.shape.count == 2 else { throw CacheRejection.damaged("\(name): not 2-D") }
                    let t = try fp32(e)
                    return e.transposed ? WeightMatrix(transposedOf: t) : WeightMatrix(t)
                case .bf16:
                    let m = try BF16Matrix(rows: e.shape[0], cols: e.shape[1])
                    load(e, 0, into: m.base)
                    return WeightMatrix(m)
                case .q8, .q4, .q6:
                    guard let format = e.kind.quantFormat else { throw CacheRejection.damaged("\(name): not quantized") }
                    let m = try QuantMatrix(format: format, rows: e.shape[0], cols: e.shape[1],
                                            integerProducts: true)
                    load(e, 0, into: m.qs)
                    load(e, 1, into: m.scales)
                    return WeightMatrix(m)
                }
            } catch let error as CacheRejection {
                throw error
            } catch let error as GFNError {
                throw .damaged("\(name): \(error.message)")
            } catch {
                throw .damaged("\(name): \(error)")
            }
        }
        func linear(_ name: String) throws(CacheRejection) -> Linear {
            let m = try matrix(name + ".weight")
            do { return try Linear(name: name, matrix: m, bias: try optionalTensor(name + ".bias")) } catch let e as CacheRejection {
                throw e
            } catch let e as GFNError { throw .damaged(e.message) } catch { throw .damaged("\(error)") }
        }
        func norm(_ name: String) throws(CacheRejection) -> LayerNormWeights {
            LayerNormWeights(gamma: try tensor(name + ".weight"), beta: try tensor(name + ".bias"))
        }

        let embedding = try matrix("transformer.wte.weight")
        let wpe = try optionalTensor("transformer.wpe.weight")
        var blocks: [BlockWeights] = []
        for i in 0..<config.nLayer {
            let p = "transformer.h.\(i)"
            switch config.arch {
            case .gpt2:
                blocks.append(BlockWeights(ln1: try norm("\(p).ln_1"), ln2: try norm("\(p).ln_2"),
                                           qkv: .fused(try linear("\(p).attn.c_attn")),
                                           attnOut: try linear("\(p).attn.c_proj"), fcIn: try linear("\(p).mlp.c_fc"),
                                           fcOut: try linear("\(p).mlp.c_proj")))
            case .gptj:
                blocks.append(BlockWeights(ln1: try norm("\(p).ln_1"), ln2: nil,
                                           qkv: .separate(q: try linear("\(p).attn.q_proj"),
                                                          k: try linear("\(p).attn.k_proj"),
                                                          v: try linear("\(p).attn.v_proj")),
                                           attnOut: try linear("\(p).attn.out_proj"), fcIn: try linear("\(p).mlp.fc_in"),
                                           fcOut: try linear("\(p).mlp.fc_out")))
            }
        }
        let lnF = try norm("transformer.ln_f")
        let head: HeadWeights = config.tiedHead ? .tied : .linear(try linear("lm_head"))
        if let extra = entries.keys.sorted().first(where: { !used.contains($0) }) {
            throw .damaged("unexpected tensor \(extra)")
        }
        try readPayloads(jobs, threads: threads, bytesPerThread: bytesPerThread, read: readBytes)
        var source: ONNXWeightSource?
        if let s = meta["onnx_source"] {
            guard let src = ONNXWeightSource(cacheJSON: s, path: modelPath) else { throw .damaged("malformed onnx_source") }
            source = src
        }
        do throws(GFNError) {
            // validate() checks every shape against the configuration.
            let weights = try ModelWeights(config: config, embedding: embedding, wpe: wpe, blocks: blocks, lnF: lnF,
                                           head: head, onnxSource: source)
            guard weights.weightType == weightType else {
                throw GFNError.format("its matrices are \(weights.weightType), the header says \(weightType)")
            }
            return weights
        } catch { throw .damaged("inconsistent with its configuration: \(error.message)") }
    }

    /// Reads every payload into its destination and checks its CRC-32C: contiguous groups of about equal bytes on
    /// `threads` threads. Destinations of 2 MiB or more are first advised to use transparent huge pages: filling
    /// fresh memory costs a page fault (and the kernel's zeroing) per page, and with 4 KiB pages those faults were
    /// most of a warm-cache load (GPT-J-6B shape, int8: 6.8 GB, 1.7 M faults).
    private static func readPayloads(_ jobs: [(payload: CachePayload, name: String, dst: UnsafeMutableRawPointer)],
                                     threads: Int, bytesPerThread: Int,
                                     read: @escaping (Int, Int, UnsafeMutableRawPointer) throws(CacheRejection) -> UInt32)
        throws(CacheRejection) {
        let total = jobs.reduce(0) { $0 + $1.payload.length }
        let t = max(1, min(threads, jobs.count, total / max(1, bytesPerThread) + 1))
        // Group boundaries by cumulative bytes.
        var bounds = [0]
        var acc = 0
        for (i, j) in jobs.enumerated() {
            acc += j.payload.length
            if bounds.count < t && acc >= total * bounds.count / t { bounds.append(i + 1) }
        }
        while bounds.count <= t { bounds.append(jobs.count) }
        bounds[t] = jobs.count
        let failures = Locked<[CacheRejection]>([])
        let readBox = UncheckedSendable(read), jobsBox = UncheckedSendable(jobs)
        Parallel.chunks(t, threads: t) { _, range in
            for g in range {
                for j in jobsBox.value[bounds[g]..<bounds[g + 1]] {
                    let huge = 2 << 20
                    let start = (Int(bitPattern: j.dst) + huge - 1) & ~(huge - 1)
                    let end = (Int(bitPattern: j.dst) + j.payload.length) & ~(huge - 1)
                    if end > start, let p = UnsafeMutableRawPointer(bitPattern: start) {
                        _ = madvise(p, end - start, MADV_HUGEPAGE)
                    }
                    do throws(CacheRejection) {
                        guard try readBox.value(j.payload.offset, j.payload.length, j.dst) == j.payload.crc else {
                            failures.withLock { $0.append(.damaged("\(j.name): payload checksum mismatch")) }
                            return
                        }
                    } catch {
                        failures.withLock { $0.append(error) }
                        return
                    }
                }
            }
        }
        if let f = failures.withLock({ $0.first }) { throw f }
    }
}
