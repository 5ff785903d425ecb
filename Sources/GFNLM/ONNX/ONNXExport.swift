import CONNX

/// Writes a model as an .onnx file that onnxruntime runs: the ORIGINAL export the model was loaded from, with the
/// weights that changed written back — the base weights with a LoRA adapter's delta merged
/// (W + scale·Aᵀ·Bᵀ in gfnlm's [in, out] layout), or every tensor of fully fine-tuned weights that differs from the
/// loaded ones.
///
/// The graph is not rebuilt. The source file is parsed again and every changed weight is written into the tensor
/// that holds it, in that tensor's own data type and layout (fp32 stays fp32, fp16/bf16 are rounded to nearest
/// even, a transposed copy gets the transposed values, Gemm alpha/beta are divided out). When a stored tensor
/// serves several roles (deduplicated initializers, a tied embedding/head) and the roles now need different values,
/// the changed role gets a new initializer and only its node input is rewired. Everything else stays as it was.
///
/// Output: inline raw_data when the file stays under protobuf's 2 GiB limit, else one external data file
/// `<file name>.data` beside the model (tensors of at least 1 KiB, 64-byte aligned offsets). Both files are written
/// under temporary names and renamed when complete: a failed export leaves no file behind and an existing file at
/// `path` untouched.
public enum ONNXExporter {
    /// Where tensor data goes.
    public enum DataLayout: Sendable, Equatable {
        /// Inline when the file stays under 2 GiB, else external.
        case automatic
        /// Everything inline (`.unsupported` past 2 GiB).
        case inline
        /// Tensors of at least 1 KiB in `<file name>.data` (Constant-node tensors stay inline).
        case external
    }

    /// What an export did.
    public struct Report: Sendable {
        /// The .onnx file written, and the external data file when there is one.
        public let path: String
        public let dataPath: String?
        /// Hugging Face names of the tensors that changed (sorted).
        public let changedTensors: [String]
        /// Stored tensors overwritten in place.
        public let tensorsOverwritten: Int
        /// Initializers added for roles that could not share their tensor any more.
        public let initializersAdded: [String]
        /// Node inputs redirected to an added initializer.
        public let inputsRewired: Int
        /// Bytes written (the .onnx plus the data file).
        public let bytes: Int
        /// Wall-clock seconds per phase: parse, plan, write tensors, layout, save, rename.
        public let phases: [(name: String, seconds: Double)]
    }

    /// Exports the base weights with `adapter`'s delta merged into every adapted linear map (`adapter == nil`:
    /// the base weights, i.e. a copy of the source graph with its data inline or in one data file).
    ///
    /// Errors: `.unsupported` when the model was not loaded from an ONNX file or a changed weight has no known
    /// place in the graph; `.state` when the adapter does not fit the model or the source file changed since
    /// loading; `.numerical` for non-finite merged weights or fp16 overflow; `.io` when writing fails.
    @discardableResult
    public static func export(model: Model, adapter: LoRAAdapter?, to path: String,
                              layout: DataLayout = .automatic) throws(GFNError) -> Report {
        try export(model: model, adapter: adapter, to: path, layout: layout, hooks: Hooks())
    }

    /// Exports full-parameter weights (e.g. `SFTTrainer(…, adapter: nil).transformer.weights`): every tensor of
    /// `weights` that differs bitwise from `model`'s is written back. `weights` must have `model`'s configuration.
    @discardableResult
    public static func export(model: Model, weights: ModelWeights, to path: String,
                              layout: DataLayout = .automatic) throws(GFNError) -> Report {
        try export(model: model, weights: weights, to: path, layout: layout, hooks: Hooks())
    }

    // MARK: - internals (fault injection for tests)

    enum Fault { case beforeRename, afterDataFile }

    /// Test hooks: a failure to inject, and the size above which `.automatic` chooses external data.
    struct Hooks {
        var fault: Fault? = nil
        var inlineLimit: Int = ONNXExporter.inlineLimit
    }

    /// Export rewrites the original file's tensors from fp32 weights; a model whose matrices were converted to
    /// bf16 at load has lost the file's precision, so it is refused.
    static func requireFP32(_ w: ModelWeights) throws(GFNError) {
        guard w.weightType == .f32 else {
            throw .unsupported("ONNX export needs a model loaded with fp32 weights; this one was loaded with \(w.weightType) "
                               + "weights (reload it with weights=fp32 to export merged weights)")
        }
    }

    static func export(model: Model, adapter: LoRAAdapter?, to path: String, layout: DataLayout,
                       hooks: Hooks) throws(GFNError) -> Report {
        let base = model.weights
        try requireFP32(base)
        var changes: [String: Change] = [:]
        if let adapter {
            if adapter.headFactors != nil, case .tied = base.head {
                throw .unsupported(LoRAAdapter.tiedHeadMergeMessage)
            }
            var byName: [String: Linear] = [:]
            for l in base.linears { byName[l.name] = l }
            for name in adapter.moduleNames {
                guard let f = adapter.factors(for: name) else { continue }
                guard let lin = byName[name] else {
                    throw .state("adapter module \(name) is not a linear map of this model")
                }
                guard f.inFeatures == lin.inFeatures, f.outFeatures == lin.outFeatures, f.a.count == f.rank * f.inFeatures,
                      f.b.count == f.outFeatures * f.rank else {
                    throw .state("adapter module \(name) has A \(f.a.shape), B \(f.b.shape), which do not fit the "
                                 + "model's [\(lin.inFeatures), \(lin.outFeatures)] weight")
                }
                changes[name + ".weight"] = Change(shape: [lin.inFeatures, lin.outFeatures]) { () throws(GFNError) -> Tensor in
                    let w = try merge(lin, f)
                    try requireFinite(w, "\(name).weight with the LoRA delta merged")
                    return w
                }
            }
        }
        return try write(base: base, changes: changes, to: path, layout: layout, hooks: hooks)
    }

    static func export(model: Model, weights: ModelWeights, to path: String, layout: DataLayout,
                       hooks: Hooks) throws(GFNError) -> Report {
        let base = model.weights
        try requireFP32(base)
        try requireFP32(weights)
        guard weights.config == base.config else {
            throw .invalidArgument("the weights do not belong to this model (their configuration differs)")
        }
        let old = try namedTensors(base), new = try namedTensors(weights)
        guard Set(old.keys) == Set(new.keys) else {
            throw .invalidArgument("the weights do not belong to this model (different tensors: "
                                   + "\(Set(old.keys).symmetricDifference(new.keys).sorted().prefix(4)))")
        }
        var changes: [String: Change] = [:]
        for (name, t) in new {
            guard let o = old[name], o.shape == t.shape else {
                throw .invalidArgument("\(name): shape \(t.shape) differs from the model's \(old[name]?.shape ?? [])")
            }
            if o.storage === t.storage { continue }
            if memcmp(o.pointer, t.pointer, t.count * MemoryLayout<Float>.stride) != 0 {
                try requireFinite(t, name)
                changes[name] = Change(shape: t.shape) { () throws(GFNError) -> Tensor in t }
            }
        }
        return try write(base: base, changes: changes, to: path, layout: layout, hooks: hooks)
    }

    /// A changed tensor, computed when it is written (a merged weight exists only while its tensor is written).
    struct Change {
        let shape: [Int]
        let compute: () throws(GFNError) -> Tensor
    }

    /// W + scale · Aᵀ · Bᵀ, [in, out], in new storage.
    static func merge(_ lin: Linear, _ f: LoRAFactors) throws(GFNError) -> Tensor {
        let out = try lin.weight.copy()
        BLAS.gemm(m: lin.inFeatures, n: lin.outFeatures, k: f.rank, a: f.a.pointer, lda: f.inFeatures, transA: true,
                  b: f.b.pointer, ldb: f.rank, transB: true, c: out.pointer, ldc: lin.outFeatures,
                  alpha: f.scale, beta: 1)
        return out
    }

    static func requireFinite(_ t: Tensor, _ what: String) throws(GFNError) {
        let p = t.pointer
        for i in 0..<t.count where !p[i].isFinite {
            throw .numerical("\(what) holds a non-finite value (\(p[i]) at index \(i)): nothing was exported")
        }
    }

    /// Every tensor of the weights under its Hugging Face name (a tied head has no tensor of its own).
    static func namedTensors(_ w: ModelWeights) throws(GFNError) -> [String: Tensor] {
        var out: [String: Tensor] = [
            "transformer.wte.weight": try w.wte,
            "transformer.ln_f.weight": w.lnF.gamma, "transformer.ln_f.bias": w.lnF.beta,
        ]
        if let p = w.wpe { out["transformer.wpe.weight"] = p }
        for (i, b) in w.blocks.enumerated() {
            out["transformer.h.\(i).ln_1.weight"] = b.ln1.gamma
            out["transformer.h.\(i).ln_1.bias"] = b.ln1.beta
            if let l2 = b.ln2 {
                out["transformer.h.\(i).ln_2.weight"] = l2.gamma
                out["transformer.h.\(i).ln_2.bias"] = l2.beta
            }
        }
        for l in w.linears {
            out[l.name + ".weight"] = try l.weight
            if let b = l.bias { out[l.name + ".bias"] = b }
        }
        return out
    }

    // MARK: - writing

    /// protobuf's limit less a margin for field headers.
    static let inlineLimit = Int(Int32.max) - (32 << 20)
    /// Tensors at least this large go to the data file in the external layout (onnx's default threshold).
    static let externalThreshold = 1024
    static let externalAlignment = 64

    static func write(base: ModelWeights, changes requested: [String: Change], to path: String, layout: DataLayout,
                      hooks: Hooks) throws(GFNError) -> Report {
        let fault = hooks.fault
        var phases: [(name: String, seconds: Double)] = []
        var t = ONNXModelLoader.now()
        func phase(_ name: String) {
            let t1 = ONNXModelLoader.now()
            phases.append((name, t1 - t))
            t = t1
        }
        guard let src = base.onnxSource else {
            throw .unsupported("this model was not loaded from an ONNX file, so there is no graph to write its "
                               + "weights into (export needs the original .onnx export)")
        }
        guard !path.isEmpty else { throw .invalidArgument("empty export path") }
        if FileIO.isDirectory(path) {
            throw .invalidArgument("\(path) is a directory: give the path of the .onnx file to write")
        }
        var changes = requested
        if base.config.tiedHead, let wte = changes["transformer.wte.weight"] {
            // The head reads wteᵀ through its own operand (a folded copy, or a Transpose of the embedding).
            changes["lm_head.weight"] = Change(shape: wte.shape.reversed()) { () throws(GFNError) -> Tensor in
                try wte.compute().transposed2D()
            }
        }

        let file = try ONNXFile(path: src.path)
        let graph = try ONNXGraph(file: file)
        guard graph.nodes.count == src.nodeCount, graph.initializerCount == src.initializerCount else {
            throw .state("\(src.path) changed since the model was loaded (\(graph.nodes.count) nodes and "
                         + "\(graph.initializerCount) initializers, were \(src.nodeCount) and \(src.initializerCount)); "
                         + "load it again before exporting")
        }
        let reader = TensorDataReader(graph: graph)
        let editor = GraphEditor(file: file, graph: graph, reader: reader)
        phase("parse")
        var planned: [PlannedSlot] = []
        var changedBytes = 0
        for name in changes.keys.sorted() {
            guard let c = changes[name] else { continue }
            guard let slots = src.slots[name], !slots.isEmpty else {
                throw .unsupported("\(src.path): gfnlm does not know which graph input holds \(name), so the changed "
                                   + "tensor cannot be exported")
            }
            for ws in slots { planned.append(try editor.plan(name, ws, shape: c.shape)) }
            changedBytes += c.shape.reduce(1, *) * MemoryLayout<Float>.stride
        }

        let stamp = "\(getpid()).\(Int(ONNXModelLoader.now() * 1e9) % 1_000_000_000_000)"
        let tmpModel = "\(path).tmp.\(stamp)"
        let dataName = FileIO.basename(of: path) + ".data"
        let dataPath = FileIO.join(FileIO.dirname(of: path), dataName)
        let tmpData = "\(dataPath).tmp.\(stamp)"
        var created: [String] = []
        func cleanup() { for p in created { unlink(p) } }
        do throws(GFNError) {
            // Data layout: decided before editing (changed tensors may add up to their size), so that in the
            // external layout every written tensor goes straight to the data file.
            let external = try editor.chooseExternal(layout, extraBytes: changedBytes, limit: hooks.inlineLimit)
            if external {
                created.append(tmpData)
                try editor.openDataFile(tmpData, location: dataName)
            }
            phase("plan")
            try editor.apply(planned) { (role) throws(GFNError) -> Tensor in
                guard let c = changes[role] else { throw .internalError("no change for \(role)") }
                let t = try c.compute()
                guard t.shape == c.shape else { throw .internalError("\(role) is \(t.shape), expected \(c.shape)") }
                return t
            }
            phase("write tensors")
            if external { try editor.finishDataFile() } else { try editor.inlineEverything() }
            phase("layout")
            if fault == .afterDataFile { throw .io("injected failure after the data file") }
            created.append(tmpModel)
            var err = [CChar](repeating: 0, count: 1024)
            let rc = err.withUnsafeMutableBufferPointer { buf in connx_save(file.handle, tmpModel, buf.baseAddress, buf.count) }
            if rc != CONNX_OK {
                let message = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                switch Int(rc) {
                case Int(CONNX_ETOOLARGE): throw .unsupported("\(path): \(message)")
                case Int(CONNX_EIO): throw .io(message)
                default: throw .internalError(message.isEmpty ? "cannot write \(tmpModel)" : message)
                }
            }
            phase("save")
            if fault == .beforeRename { throw .io("injected failure before renaming") }
            var bytes = 0
            var st = stat()
            if external {
                guard rename(tmpData, dataPath) == 0 else {
                    throw .io("cannot rename \(tmpData) to \(dataPath): \(FileIO.errnoString())")
                }
                created.removeAll { $0 == tmpData }
                if stat(dataPath, &st) == 0 { bytes += Int(st.st_size) }
            }
            guard rename(tmpModel, path) == 0 else {
                throw .io("cannot rename \(tmpModel) to \(path): \(FileIO.errnoString())")
            }
            created.removeAll()
            if stat(path, &st) == 0 { bytes += Int(st.st_size) }
            let dir = open(FileIO.dirname(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dir >= 0 { _ = fsync(dir); close(dir) }
            phase("rename")
            return Report(path: path, dataPath: external ? dataPath : nil, changedTensors: requested.keys.sorted(),
                          tensorsOverwritten: editor.overwritten, initializersAdded: editor.added,
                          inputsRewired: editor.rewired, bytes: bytes, phases: phases)
        } catch {
            editor.closeDataFile()
            cleanup()
            throw error
        }
    }
}
