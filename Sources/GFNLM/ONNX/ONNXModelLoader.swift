import CONNX

/// Loads a GPT-2 or GPT-J ONNX export (legacy/dynamo torch exporter, optimum, fp16/bf16, external data,
/// onnxruntime-optimized without attention fusion) into `ModelWeights`, recognizing the model from the graph
/// structure. fp32 weights are borrowed from the parsed file or the mmapped data file, not copied.
public enum ONNXModelLoader {
    /// `path` is an .onnx file, or a directory holding one (model.onnx preferred).
    ///
    /// Errors: `.io` for a missing or unreadable file (also a missing external-data file); `.format` for an empty,
    /// truncated or corrupt file and bad external data; `.unsupported` for a valid ONNX model that is not
    /// GPT-2/GPT-J or uses fused/quantized operators.
    ///
    /// `weightType` `.bf16` converts the linear maps and the token embedding (= tied head) to bf16 at load
    /// (round to nearest even, from fp32, fp16 or bf16 files), tensor by tensor: each source tensor's fp32 values
    /// exist only while it is converted, and its pages in an mmapped data file are dropped afterwards
    /// (MADV_DONTNEED), so resident memory stays near the bf16 size. LayerNorm parameters, biases and positions stay
    /// fp32 (copied: no file is kept mapped). `.int8` / `.q4` do the same with block-quantized matrices
    /// (`QuantMatrix`; under `.q4` the embedding / tied head is int8). `threads` parallelizes the packing.
    public static func load(path: String, weightType: WeightType = .f32, threads: Int = 1) throws(GFNError) -> ModelWeights {
        try loadWithReport(path: path, weightType: weightType, threads: threads).weights
    }

    /// What was loaded and how (for logs and tests).
    public struct Report: Sendable {
        public let weights: ModelWeights
        /// The .onnx file that was read.
        public let modelPath: String
        public let producer: String
        public let irVersion: Int64
        public let opset: Int64
        /// Whether the head was recognized as tied because it is the same tensor (true) or by comparing values.
        public let headSharedTensor: Bool
        /// Bytes of fp32 weight data that point into the parsed file or an mmapped data file (not copied).
        public let borrowedBytes: Int
        /// Bytes of weight data allocated by the loader (conversions, transposes).
        public let ownedBytes: Int
        /// Bytes of unused tensor data freed after loading (e.g. a duplicated tied head).
        public let releasedBytes: Int
        /// Keys read from config.json beside the model (only when the graph lacked something).
        public let configKeysUsed: [String]
        /// Wall-clock seconds per phase: parse, graph, validate, recognize, build, release.
        public let phases: [(name: String, seconds: Double)]
        /// Every file the weights were read from: the .onnx, its external-data files, and config.json when it filled
        /// in the configuration (what a weight cache must check for staleness).
        public let sourceFiles: [String]
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    public static func loadWithReport(path: String, weightType: WeightType = .f32,
                                      threads: Int = 1) throws(GFNError) -> Report {
        var phases: [(name: String, seconds: Double)] = []
        var t = now()
        func phase(_ name: String) {
            let t1 = now()
            phases.append((name, t1 - t))
            t = t1
        }
        let modelPath = try resolveModelPath(path)
        let file = try ONNXFile(path: modelPath)
        phase("parse")
        let graph = try ONNXGraph(file: file)
        phase("graph")
        guard let opset = graph.opsetVersion("") else {
            throw .format("\(modelPath) has no opset_import for the default ONNX domain (truncated or not an ONNX model)")
        }
        let reader = TensorDataReader(graph: graph)
        // Hostile or broken tensors are refused before any work: dims, sizes, external locations and ranges.
        for ref in tensorRefs(graph) {
            let h = try reader.header(ref)
            if ONNXDataType.size(h.dataType) != nil { _ = try reader.payload(h) }
        }
        phase("validate")
        let consts = ConstResolver(graph: graph, reader: reader)
        let rec = GraphRecognizer(graph: graph, consts: consts)

        var configKeys: [String] = []
        var configCache: [String: Double]?? = nil
        let config = { () throws(GFNError) -> [String: Double]? in
            if let c = configCache { return c }
            let c = try ConfigJSON.read(directory: file.directory)
            configCache = .some(c)
            return c
        }
        let trackingConfig = { () throws(GFNError) -> [String: Double]? in
            let c = try config()
            if c != nil { configKeys.append("config.json") }
            return c
        }
        let r = try rec.recognize(configFallback: trackingConfig)
        phase("recognize")
        let built = try build(r, graph: graph, modelPath: modelPath, reader: reader, weightType: weightType,
                              threads: max(1, threads))
        phase("build")

        // Free tensor data the model does not use (e.g. the legacy exporter's transposed copy of a tied head).
        let released = releaseUnused(graph: graph, reader: reader, used: built.usedRanges)
        phase("release")
        var sourceFiles = [modelPath] + reader.mappedFiles.map(\.path).sorted()
        if !configKeys.isEmpty { sourceFiles.append(FileIO.join(file.directory, "config.json")) }
        return Report(weights: built.weights, modelPath: modelPath, producer: graph.producer, irVersion: graph.irVersion,
                      opset: opset, headSharedTensor: built.headShared, borrowedBytes: built.borrowed,
                      ownedBytes: built.owned, releasedBytes: released, configKeysUsed: configKeys,
                      phases: phases, sourceFiles: sourceFiles)
    }

    /// An .onnx file, or the model.onnx (else the single *.onnx) of a directory.
    static func resolveModelPath(_ path: String) throws(GFNError) -> String {
        guard !path.isEmpty else { throw .invalidArgument("empty model path") }
        var st = stat()
        guard stat(path, &st) == 0 else { throw .io("cannot open \(path): \(FileIO.errnoString())") }
        if (st.st_mode & S_IFMT) != S_IFDIR { return path }
        let preferred = FileIO.join(path, "model.onnx")
        if FileIO.exists(preferred) { return preferred }
        guard let dir = opendir(path) else { throw .io("cannot list \(path): \(FileIO.errnoString())") }
        defer { closedir(dir) }
        var found: [String] = []
        while let e = readdir(dir) {
            let name = FileIO.entryName(e)
            if name.hasSuffix(".onnx") { found.append(name) }
        }
        found.sort()
        if found.count == 1 { return FileIO.join(path, found[0]) }
        if found.isEmpty { throw .io("no .onnx file in the directory \(path)") }
        throw .invalidArgument("the directory \(path) holds several .onnx files (\(found.joined(separator: ", "))) "
                               + "and no model.onnx: pass the file itself")
    }

    private struct Built {
        let weights: ModelWeights
        let headShared: Bool
        let borrowed: Int
        let owned: Int
        let usedRanges: [(UnsafeRawPointer, Int)]
    }

    private static func build(_ r: GraphRecognizer.Result, graph: ONNXGraph, modelPath: String,
                              reader: TensorDataReader, weightType: WeightType, threads: Int) throws(GFNError) -> Built {
        var storages: [FloatStorage] = []
        // bf16 and the quantized formats convert the matrices at load and keep no source file.
        let bf16 = weightType != .f32
        var bf16Bytes = 0
        // Where each weight is read in the graph (for the merged-weights export).
        var slots: [String: [WeightSlot]] = [:]
        func record(_ name: String, _ s: InputSlot?, transposed: Bool = false, scale: Float = 1) {
            guard let s, s.node >= 0, s.node < graph.nodes.count, let input = graph.nodes[s.node].input(s.input) else { return }
            slots[name, default: []].append(WeightSlot(slot: s, opType: graph.nodes[s.node].opType, inputName: input,
                                                       transposed: transposed, scale: scale))
        }
        func tensor(_ c: ConstValue, _ shape: [Int]) throws(GFNError) -> Tensor {
            guard c.count == shape.reduce(1, *) else {
                throw .format("\(modelPath): a tensor of shape \(c.shape) cannot serve as \(shape)")
            }
            var s = try c.floats()
            guard s.count >= c.count else { throw .internalError("\(modelPath): tensor storage shorter than its shape") }
            if bf16 && s.isBorrowed {
                // bf16 models keep no source file: the few fp32 tensors are copied.
                let own = try FloatStorage(count: c.count)
                own.base.update(from: s.base, count: c.count)
                s = own
            }
            storages.append(s)
            return Tensor(shape: shape, storage: s)
        }
        /// A [K, N] matrix (stored as such, or as its transpose [N, K] when `transposed`) in bf16: its fp32 values
        /// are computed without memoizing, packed, and the source pages released.
        func packed(_ c: ConstValue, rows K: Int, cols N: Int, transposed: Bool, scale: Float,
                    embedding: Bool = false) throws(GFNError) -> WeightMatrix {
            guard c.count == K * N else {
                throw .format("\(modelPath): a tensor of shape \(c.shape) cannot serve as [\(K), \(N)]")
            }
            let m = try ConstValue.withoutCaching { () throws(GFNError) -> WeightMatrix in
                var s = try c.floats()
                guard s.count >= c.count else { throw .internalError("\(modelPath): tensor storage shorter than its shape") }
                if scale != 1 {
                    let t = try FloatStorage(count: c.count)
                    for i in 0..<c.count { t.base[i] = s.base[i] * scale }
                    s = t
                }
                switch weightType {
                case .int8, .q4:
                    // Under 4-bit weights the token embedding and the head are 6-bit, as llama.cpp keeps its output
                    // matrix at higher precision (Q6_K): it sets every logit (docs/quantization.md).
                    let f: QuantMatrix.Format = weightType == .int8 ? .q8 : embedding ? .q6 : .q4
                    return WeightMatrix(try QuantMatrix.quantize(s.base, ld: transposed ? K : N, transposed: transposed,
                                                                 rows: K, cols: N, format: f, threads: threads))
                default:
                    return WeightMatrix(try BF16Matrix.pack(s.base, ld: transposed ? K : N, transposed: transposed,
                                                            rows: K, cols: N, threads: threads))
                }
            }
            if let root = c.root { reader.releasePages(root) }
            bf16Bytes += m.bytes
            return m
        }
        func scaled(_ t: Tensor, _ k: Float) throws(GFNError) -> Tensor {
            if k == 1 { return t }
            let c = try t.copy()
            for i in 0..<c.count { c.pointer[i] *= k }
            storages.append(c.storage)
            return c
        }
        func linear(_ site: LinearSite, _ name: String, head: Bool = false) throws(GFNError) -> Linear {
            let w: WeightMatrix
            if bf16 {
                guard site.weight.rank == 2 else { throw .format("\(modelPath): \(name).weight is not 2-D (\(site.weight.shape))") }
                w = try packed(site.weight, rows: site.inFeatures, cols: site.outFeatures, transposed: false,
                               scale: site.alpha, embedding: head)
            } else {
                w = WeightMatrix(try scaled(try tensor(site.weight, site.weight.shape), site.alpha))
            }
            record(name + ".weight", site.weightSlot, transposed: site.transB, scale: site.alpha)
            var b: Tensor? = nil
            if let bc = site.bias {
                b = try scaled(try tensor(bc, [site.outFeatures]), site.beta)
                record(name + ".bias", site.biasSlot, scale: site.beta)
            }
            return try Linear(name: name, matrix: w, bias: b)
        }
        let E = r.wte.shape[1], V = r.wte.shape[0]
        func norm(_ n: NormSite, _ what: String) throws(GFNError) -> LayerNormWeights {
            let g = try tensor(n.gamma, [E])
            record(what + ".weight", n.gammaSlot)
            let b: Tensor
            if let bc = n.beta { b = try tensor(bc, [E]) } else { b = try Tensor(zeros: [E]); storages.append(b.storage) }
            record(what + ".bias", n.betaSlot)
            return LayerNormWeights(gamma: g, beta: b)
        }

        let first = r.blocks[0]
        let arch: Architecture
        switch (r.wpe != nil, first.parallel, first.fused, r.rotary != nil) {
        case (true, false, true, false): arch = .gpt2
        case (false, true, false, true): arch = .gptj
        default:
            throw .unsupported("\(modelPath): not a GPT-2/GPT-J graph: found \(r.wpe != nil ? "learned positions" : "no learned positions"), "
                               + "\(first.parallel ? "parallel" : "sequential") blocks, "
                               + "\(first.fused ? "fused" : "separate") q/k/v, \(r.rotary != nil ? "a rotary table" : "no rotary table") "
                               + "(GPT-2: learned positions + sequential + fused; GPT-J: rotary + parallel + separate)")
        }
        // The embedding and an untied head first: they are the largest tensors (GPT-J 6B: 0.77 GiB each as fp32),
        // and their transient fp32 copy then coexists with little else, instead of with every converted block
        // (the resident peak of a converting load is the converted weights so far plus one tensor's transient).
        let embedding = bf16 ? try packed(r.wte, rows: E, cols: V, transposed: true, scale: 1, embedding: true)
                             : WeightMatrix(transposedOf: try tensor(r.wte, [V, E]))
        let head: HeadWeights = r.tied ? .tied : .linear(try linear(r.head, "lm_head", head: true))
        var blocks: [BlockWeights] = []
        for (i, b) in r.blocks.enumerated() {
            let p = "transformer.h.\(i)"
            let qkv: QKVProjection
            let attnOut: Linear, fcIn: Linear, fcOut: Linear
            switch arch {
            case .gpt2:
                qkv = .fused(try linear(b.q, "\(p).attn.c_attn"))
                attnOut = try linear(b.out, "\(p).attn.c_proj")
                fcIn = try linear(b.fcIn, "\(p).mlp.c_fc")
                fcOut = try linear(b.fcOut, "\(p).mlp.c_proj")
            case .gptj:
                qkv = .separate(q: try linear(b.q, "\(p).attn.q_proj"), k: try linear(b.k, "\(p).attn.k_proj"),
                                v: try linear(b.v, "\(p).attn.v_proj"))
                attnOut = try linear(b.out, "\(p).attn.out_proj")
                fcIn = try linear(b.fcIn, "\(p).mlp.fc_in")
                fcOut = try linear(b.fcOut, "\(p).mlp.fc_out")
            }
            blocks.append(BlockWeights(ln1: try norm(b.ln1, "\(p).ln_1"), ln2: try b.ln2.map { (n) throws(GFNError) in try norm(n, "\(p).ln_2") },
                                       qkv: qkv, attnOut: attnOut, fcIn: fcIn, fcOut: fcOut))
        }
        record("transformer.wte.weight", InputSlot(node: r.wteNode, input: 0))
        let wpe = try r.wpe.map { (c) throws(GFNError) in try tensor(c, c.shape) }
        if wpe != nil { for n in r.wpeNodes { record("transformer.wpe.weight", InputSlot(node: n, input: 0)) } }
        let lnF = try norm(r.lnF, "transformer.ln_f")
        // A tied head is read as wteᵀ through its own operand (a folded copy, or a Transpose of the embedding).
        if r.tied { record("lm_head.weight", r.head.weightSlot, transposed: r.head.transB, scale: r.head.alpha) }
        let nInner = r.blocks[0].fcIn.outFeatures
        let config = ModelConfig(
            arch: arch, nLayer: r.blocks.count, nHead: r.nHead, headDim: r.headDim, nEmbd: E, nInner: nInner,
            vocabSize: V, nPositions: arch == .gpt2 ? (r.wpe?.shape[0] ?? 0) : (r.rotary?.positions ?? 0),
            layerNormEps: r.eps, rotaryDim: r.rotary?.dim ?? 0, rotaryBase: r.rotary?.base ?? 10000,
            activation: r.activation, tiedHead: r.tied, headBias: !r.tied && r.head.bias != nil)

        // Which storages borrow memory, and which do the weights use?
        var seen = Set<UnsafeMutablePointer<Float>>()
        var borrowed = 0, owned = 0
        var ranges: [(UnsafeRawPointer, Int)] = []
        let sources = sourceRanges(graph: graph, reader: reader)
        var usedMaps = Set<ObjectIdentifier>()
        for s in storages where seen.insert(s.base).inserted {
            let p = UnsafeRawPointer(s.base)
            if sources.contains(where: { p >= $0.0 && p < $0.0 + $0.1 }) { borrowed += s.count * 4 } else { owned += s.count * 4 }
            for m in reader.mappedFiles {
                if let b = m.base, p >= b && p < b + m.size { usedMaps.insert(ObjectIdentifier(m)) }
            }
            ranges.append((p, s.count * 4))
        }
        // Keep the parsed file and the data files that weights point into (converted-only files are unmapped).
        owned += bf16Bytes
        var keep: [AnyObject] = bf16 ? [] : [graph.file]
        keep.append(contentsOf: reader.mappedFiles.filter { usedMaps.contains(ObjectIdentifier($0)) } as [AnyObject])
        let source = ONNXWeightSource(path: modelPath, nodeCount: graph.nodes.count,
                                      initializerCount: graph.initializerCount, slots: slots)
        let weights = try ModelWeights(config: config, embedding: embedding, wpe: wpe, blocks: blocks, lnF: lnF,
                                       head: head, keepAlive: keep, onnxSource: source)
        let shared = r.tied && r.head.weight.root != nil && r.head.weight.root == r.wte.root
        return Built(weights: weights, headShared: shared, borrowed: borrowed, owned: owned, usedRanges: ranges)
    }

    /// Memory that loaded tensors may borrow: the mmapped data files and the proto's tensor data.
    private static func sourceRanges(graph: ONNXGraph, reader: TensorDataReader) -> [(UnsafeRawPointer, Int)] {
        var out: [(UnsafeRawPointer, Int)] = []
        for m in reader.mappedFiles { if let b = m.base { out.append((b, m.size)) } }
        for ref in tensorRefs(graph) { if let r = reader.protoDataRange(ref) { out.append(r) } }
        return out
    }

    /// Every initializer and Constant-node tensor.
    static func tensorRefs(_ graph: ONNXGraph) -> [TensorRef] {
        var refs: [TensorRef] = (0..<graph.initializerCount).map { TensorRef.initializer($0) }
        for n in graph.nodes where n.opType == "Constant" {
            if let k = n.attributeIndex("value"), n.attributes[k].hasTensor {
                refs.append(TensorRef(node: Int32(n.index), index: Int32(k)))
            }
        }
        return refs
    }

    /// Releases proto-held data of initializers and Constant tensors that no weight points into.
    private static func releaseUnused(graph: ONNXGraph, reader: TensorDataReader,
                                      used: [(UnsafeRawPointer, Int)]) -> Int {
        let sorted = used.sorted { $0.0 < $1.0 }
        func isUsed(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
            // Any used range overlapping [p, p+n)?
            for (q, m) in sorted where q < p + n && p < q + m { return true }
            return false
        }
        var released = 0
        for ref in tensorRefs(graph) {
            guard let (p, n) = reader.protoDataRange(ref), n >= 1 << 16, !isUsed(p, n) else { continue }
            if connx_tensor_release_data(graph.file.handle, ref.node, ref.index) == CONNX_OK { released += n }
        }
        return released
    }
}
