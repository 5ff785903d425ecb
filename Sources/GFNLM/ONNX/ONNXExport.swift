#if canImport(Glibc)
import Glibc
#endif
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

/// A changed role at one node input, checked against the graph: the operand's shape there.
struct PlannedSlot {
    let role: String
    let slot: WeightSlot
    let shape: [Int]
}

/// A changed role at one node input with the operand values it must see there (operand layout).
struct SlotRequest {
    let role: String
    let slot: WeightSlot
    let shape: [Int]
    let values: [Float]
}

/// Edits a freshly parsed copy of the source graph.
final class GraphEditor {
    let file: ONNXFile
    let graph: ONNXGraph
    let reader: TensorDataReader
    let consts: ConstResolver
    private var usedNames = Set<String>()
    private let hasSubgraphs: Bool
    private let graphOutputs: Set<String>
    /// Initializers in the proto (source ones plus those added).
    private(set) var initializerCount: Int
    private(set) var added: [String] = []
    private(set) var overwritten = 0
    private(set) var rewired = 0

    static let chainOps: Set<String> = ["Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose"]

    init(file: ONNXFile, graph: ONNXGraph, reader: TensorDataReader) {
        self.file = file
        self.graph = graph
        self.reader = reader
        self.consts = ConstResolver(graph: graph, reader: reader)
        initializerCount = graph.initializerCount
        hasSubgraphs = graph.nodes.contains { n in n.attributes.contains { $0.hasGraph } }
        graphOutputs = Set(graph.outputs.map { $0.name })
        usedNames.formUnion(graph.initializers.keys)
        usedNames.formUnion(graph.valueInfo.keys)
        for n in graph.nodes {
            usedNames.formUnion(n.inputs)
            usedNames.formUnion(n.outputs)
        }
        for v in graph.inputs { usedNames.insert(v.name) }
    }

    private var path: String { graph.path }

    // MARK: requests

    /// Checks that the slot still reads the role as recorded and fits its shape.
    func plan(_ role: String, _ ws: WeightSlot, shape tshape: [Int]) throws(GFNError) -> PlannedSlot {
        let s = ws.slot
        guard s.node >= 0, s.node < graph.nodes.count, graph.nodes[s.node].opType == ws.opType,
              graph.nodes[s.node].input(s.input) == ws.inputName else {
            throw .state("\(path) changed since the model was loaded (node \(s.node) no longer reads \(role) through "
                         + "'\(ws.inputName)'); load it again before exporting")
        }
        guard let cv = try consts.value(ws.inputName), cv.isFloat else {
            throw .state("\(path): '\(ws.inputName)' (\(role)) is no longer a constant; load the model again")
        }
        let shape = cv.shape
        guard cv.count == tshape.reduce(1, *) else {
            throw .invalidArgument("\(role) has shape \(tshape) but the graph reads \(shape)")
        }
        if ws.transposed && (shape.count != 2 || tshape != [shape[1], shape[0]]) {
            throw .internalError("\(path): \(role) is \(tshape) but its transposed operand is \(shape)")
        }
        guard ws.scale != 0 && ws.scale.isFinite else {
            throw .unsupported("\(path): \(role) is read with a scale of \(ws.scale) (Gemm alpha/beta), which cannot be "
                               + "inverted")
        }
        return PlannedSlot(role: role, slot: ws, shape: shape)
    }

    /// The operand values a changed role needs at its slot: gfnlm = scale · operand(ᵀ), inverted.
    func request(_ p: PlannedSlot, _ t: Tensor) -> SlotRequest {
        let ws = p.slot, shape = p.shape
        var values = [Float](repeating: 0, count: t.count)
        let src = t.pointer
        values.withUnsafeMutableBufferPointer { v in
            if ws.transposed && shape.count == 2 {
                let a = shape[0], b = shape[1]  // operand [a, b] = (gfnlm [b, a])ᵀ
                for i in 0..<a { for j in 0..<b { v[i * b + j] = src[j * a + i] } }
            } else if let d = v.baseAddress {
                d.update(from: src, count: v.count)
            }
            if ws.scale != 1 { for k in 0..<v.count { v[k] /= ws.scale } }
        }
        return SlotRequest(role: p.role, slot: ws, shape: shape, values: values)
    }

    // MARK: chains

    /// One op between a stored tensor and the slot that reads it.
    struct Step {
        enum Kind { case view, cast(Int32), transpose([Int]) }
        let kind: Kind
        let inShape: [Int]
    }

    /// The stored tensor behind a value through Identity/Cast/Reshape/Squeeze/Unsqueeze/Flatten/Transpose, or nil
    /// when the value is computed some other way.
    func traceBack(_ name: String) throws(GFNError) -> (TensorRef, String)? {
        var cur = name
        for _ in 0..<64 {
            if let i = graph.initializers[cur] { return (.initializer(i), cur) }
            guard let p = graph.producerNode(cur), p.domain.isEmpty, p.outputs.first == cur else { return nil }
            if p.opType == "Constant" {
                guard let k = p.attributeIndex("value"), p.attributes[k].hasTensor else { return nil }
                return (TensorRef(node: Int32(p.index), index: Int32(k)), cur)
            }
            guard Self.chainOps.contains(p.opType), let x = p.input(0), try consts.value(x) != nil else { return nil }
            cur = x
        }
        return nil
    }

    private func step(_ n: ONNXNode, inShape: [Int]) -> Step {
        switch n.opType {
        case "Cast": return Step(kind: .cast(Int32(truncatingIfNeeded: n.int("to", default: Int64(ONNXDataType.float)))),
                                 inShape: inShape)
        case "Transpose":
            let r = inShape.count
            var perm = n.attribute("perm")?.ints.map { Int(truncatingIfNeeded: $0) } ?? Array((0..<r).reversed())
            perm = perm.map { $0 < 0 ? $0 + r : $0 }
            return Step(kind: .transpose(perm), inShape: inShape)
        default: return Step(kind: .view, inShape: inShape)
        }
    }

    /// Where a value is read: every (node, input) that names it.
    private func edges(of value: String) -> [InputSlot] {
        var out: [InputSlot] = []
        for c in graph.consumers(value) {
            for (j, x) in graph.nodes[c].inputs.enumerated() where x == value { out.append(InputSlot(node: c, input: j)) }
        }
        return out
    }

    /// A final reader of a stored tensor, reached through chain ops.
    struct Terminal {
        let slot: InputSlot
        let steps: [Step]
        /// The element type the slot sees (after the chain's casts).
        let dataType: Int32
        /// Only the shape is read (Shape/Size): any values will do.
        let shapeOnly: Bool
        /// Not a node input (a graph output): must keep the stored values.
        let pinned: Bool
    }

    private func terminals(_ e: InputSlot, shape: [Int], dataType: Int32, steps: [Step], depth: Int)
        throws(GFNError) -> [Terminal]
    {
        let n = graph.nodes[e.node]
        if n.domain.isEmpty, e.input == 0, Self.chainOps.contains(n.opType), n.outputs.count == 1, depth < 64,
           let o = n.outputs.first, !o.isEmpty, let ov = try consts.value(o) {
            let st = step(n, inShape: shape)
            var dt = dataType
            if case .cast(let to) = st.kind { dt = to }
            var out: [Terminal] = []
            if graphOutputs.contains(o) {
                out.append(Terminal(slot: e, steps: steps, dataType: dataType, shapeOnly: false, pinned: true))
            }
            for e2 in edges(of: o) {
                out += try terminals(e2, shape: ov.shape, dataType: dt, steps: steps + [st], depth: depth + 1)
            }
            return out
        }
        let shapeOnly = n.domain.isEmpty && (n.opType == "Shape" || n.opType == "Size") && e.input == 0
        return [Terminal(slot: e, steps: steps, dataType: dataType, shapeOnly: shapeOnly, pinned: false)]
    }

    /// Values in a terminal's layout → the stored tensor's layout (undoing the chain's transposes).
    private func invert(_ values: [Float], _ steps: [Step]) -> [Float] {
        var v = values
        for s in steps.reversed() {
            guard case .transpose(let perm) = s.kind else { continue }
            let inShape = s.inShape
            let r = inShape.count
            guard perm.count == r, Set(perm) == Set(0..<r), v.count == inShape.reduce(1, *) else { continue }
            var inStrides = [Int](repeating: 1, count: r)
            if r > 1 { for i in stride(from: r - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * inShape[i + 1] } }
            let outShape = perm.map { inShape[$0] }
            let src = perm.map { inStrides[$0] }
            var back = [Float](repeating: 0, count: v.count)
            var k = 0
            v.withUnsafeBufferPointer { vp in
                back.withUnsafeMutableBufferPointer { bp in
                    ConstResolver.forEachOffset(outShape, src) { off in bp[off] = vp[k]; k += 1 }
                }
            }
            v = back
        }
        return v
    }

    // MARK: applying

    /// Writes every planned slot, one stored tensor at a time; `tensor` computes a role's new gfnlm tensor.
    func apply(_ planned: [PlannedSlot], tensor: (String) throws(GFNError) -> Tensor) throws(GFNError) {
        var byRoot: [TensorRef: (value: String, slots: [PlannedSlot])] = [:]
        var direct: [PlannedSlot] = []
        for p in planned {
            if let (root, value) = try traceBack(p.slot.inputName) {
                byRoot[root, default: (value: value, slots: [])].slots.append(p)
            } else {
                direct.append(p)
            }
        }
        let roots = byRoot.keys.sorted { ($0.node, $0.index) < ($1.node, $1.index) }
        for root in roots {
            guard let entry = byRoot[root] else { continue }
            var computed: [String: Tensor] = [:]
            var requests: [SlotRequest] = []
            for p in entry.slots {
                let t: Tensor
                if let c = computed[p.role] { t = c } else { t = try tensor(p.role); computed[p.role] = t }
                requests.append(request(p, t))
            }
            computed.removeAll()
            for (r, dt) in try applyRoot(root, value: entry.value, requests: requests) { try rewireDirect(r, dt) }
        }
        for p in direct {
            try rewireDirect(request(p, try tensor(p.role)), runtimeType(p.slot.inputName))
        }
    }

    /// Gives one slot its own new initializer holding the operand values in `dataType`.
    private func rewireDirect(_ r: SlotRequest, _ dataType: Int32) throws(GFNError) {
        let name = try addInitializer(preferredName: r.role, dataType: dataType, shape: r.shape,
                                      bytes: try Self.encode(r.values, dataType, what: r.role, path: path))
        try setInput(r.slot.slot, name)
    }

    /// Writes the requests that read `root`; returns the ones that must be rewired to their own tensor at the slot.
    private func applyRoot(_ root: TensorRef, value: String, requests: [SlotRequest]) throws(GFNError) -> [(SlotRequest, Int32)] {
        let h = try reader.header(root)
        guard ONNXDataType.isFloat(h.dataType) else {
            throw .unsupported("\(path): \(requests[0].role) is stored as \(ONNXDataType.name(h.dataType))")
        }
        let current = try canonicalBytes(h)
        var bySlot: [InputSlot: SlotRequest] = [:]
        for r in requests {
            if let other = bySlot[r.slot.slot], other.values != r.values {
                throw .unsupported("\(path): \(other.role) and \(r.role) are read through the same node input but now differ")
            }
            bySlot[r.slot.slot] = r
        }
        var pinned = hasSubgraphs || graphOutputs.contains(value)
        let es = edges(of: value)
        var edgeValues: [[UInt8]] = []
        var edgeRole: [String?] = []
        var reached = Set<InputSlot>()
        var direct: [(SlotRequest, Int32)] = []
        for e in es {
            let terms = try terminals(e, shape: h.shape, dataType: h.dataType, steps: [], depth: 0)
            var vals: [[UInt8]] = []
            var mine: [(Terminal, SlotRequest, [UInt8])] = []
            for t in terms where !t.shapeOnly {
                if t.pinned { pinned = true; vals.append(current); continue }
                if let r = bySlot[t.slot] {
                    reached.insert(t.slot)
                    let enc = try Self.encode(invert(r.values, t.steps), h.dataType, what: r.role, path: path)
                    vals.append(enc)
                    mine.append((t, r, enc))
                } else {
                    vals.append(current)
                }
            }
            if let first = vals.first, vals.allSatisfy({ $0 == first }) {
                edgeValues.append(first)
                edgeRole.append(mine.first?.1.role)
            } else if vals.isEmpty {
                edgeValues.append(current)
                edgeRole.append(nil)
            } else {
                // Readers behind this edge disagree: each changed one gets its own tensor at its slot.
                for (t, r, enc) in mine where enc != current { direct.append((r, t.dataType)) }
                edgeValues.append(current)
                edgeRole.append(nil)
            }
        }
        guard reached == Set(bySlot.keys) else {
            throw .internalError("\(path): the readers of '\(value)' were not all found from the stored tensor")
        }
        // The stored tensor keeps its values when something needs them; otherwise it takes the first edge's.
        let keep = pinned || edgeValues.contains(current) || edgeValues.isEmpty ? current : edgeValues[0]
        if keep != current {
            try setRaw(root, h.dataType, h.shape, keep)
            overwritten += 1
            try externalizeNow(root)
        }
        var made: [([UInt8], String)] = []
        for (k, e) in es.enumerated() where edgeValues[k] != keep {
            let name: String
            if let m = made.first(where: { $0.0 == edgeValues[k] }) {
                name = m.1
            } else {
                name = try addInitializer(preferredName: edgeRole[k] ?? value, dataType: h.dataType, shape: h.shape,
                                          bytes: edgeValues[k])
                made.append((edgeValues[k], name))
            }
            try setInput(e, name)
        }
        return direct
    }

    /// The element type a computed value has at run time (for a tensor that replaces it).
    func runtimeType(_ name: String, depth: Int = 0) -> Int32 {
        if let v = graph.valueInfo[name], v.elemType != 0 { return v.elemType }
        if let i = graph.initializers[name], let h = try? reader.header(.initializer(i)) { return h.dataType }
        guard depth < 64, let p = graph.producerNode(name) else { return ONNXDataType.float }
        switch p.opType {
        case "Constant":
            if let k = p.attributeIndex("value"), p.attributes[k].hasTensor,
               let h = try? reader.header(TensorRef(node: Int32(p.index), index: Int32(k))) { return h.dataType }
            return p.attribute("value_float") != nil || p.attribute("value_floats") != nil ? ONNXDataType.float : ONNXDataType.int64
        case "Cast":
            return Int32(truncatingIfNeeded: p.int("to", default: Int64(ONNXDataType.float)))
        case "Shape", "Size":
            return ONNXDataType.int64
        default:
            for x in p.inputs where !x.isEmpty {
                let t = runtimeType(x, depth: depth + 1)
                if ONNXDataType.isFloat(t) { return t }
            }
            return ONNXDataType.float
        }
    }

    // MARK: proto edits

    private func setRaw(_ ref: TensorRef, _ dataType: Int32, _ shape: [Int], _ bytes: UnsafeRawBufferPointer) throws(GFNError) {
        let dims = shape.map { Int64($0) }
        let rc = dims.withUnsafeBufferPointer { d in
            connx_tensor_set_raw(file.handle, ref.node, ref.index, dataType, d.baseAddress, Int32(d.count),
                                 bytes.baseAddress, bytes.count)
        }
        guard rc == CONNX_OK else { throw .internalError("\(path): cannot replace the data of tensor \(ref) (code \(rc))") }
    }

    private func setRaw(_ ref: TensorRef, _ dataType: Int32, _ shape: [Int], _ bytes: [UInt8]) throws(GFNError) {
        try Self.withBytes(bytes) { (b) throws(GFNError) in try setRaw(ref, dataType, shape, b) }
    }

    private func uniqueName(_ preferred: String) -> String {
        let base = preferred.isEmpty ? "gfnlm_export" : preferred
        if !usedNames.contains(base) { return base }
        var k = 1
        while true {
            let n = k == 1 ? "\(base).merged" : "\(base).merged\(k)"
            if !usedNames.contains(n) { return n }
            k += 1
        }
    }

    private func addInitializer(preferredName: String, dataType: Int32, shape: [Int], bytes: [UInt8]) throws(GFNError) -> String {
        let name = uniqueName(preferredName)
        let dims = shape.map { Int64($0) }
        var index: Int32 = -1
        let rc = dims.withUnsafeBufferPointer { d in
            bytes.withUnsafeBytes { b in
                connx_add_initializer(file.handle, name, dataType, d.baseAddress, Int32(d.count), b.baseAddress, b.count, &index)
            }
        }
        guard rc == CONNX_OK, Int(index) == initializerCount else {
            throw .internalError("\(path): cannot add initializer \(name) (code \(rc))")
        }
        usedNames.insert(name)
        added.append(name)
        initializerCount += 1
        try externalizeNow(.initializer(Int(index)))
        return name
    }

    private func setInput(_ s: InputSlot, _ name: String) throws(GFNError) {
        guard connx_node_set_input(file.handle, Int32(s.node), Int32(s.input), name) == CONNX_OK else {
            throw .internalError("\(path): cannot rewire input \(s.input) of node \(s.node)")
        }
        rewired += 1
    }

    // MARK: bytes

    /// `Array.withUnsafeBytes` with a typed-throwing body.
    static func withBytes(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(GFNError) -> Void) throws(GFNError) {
        var failure: GFNError? = nil
        a.withUnsafeBytes { b in
            do throws(GFNError) { try body(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// The tensor's elements as packed little-endian bytes of its data type, whatever field holds them.
    func canonicalBytes(_ h: TensorHeader) throws(GFNError) -> [UInt8] {
        guard let es = ONNXDataType.size(h.dataType) else {
            throw .unsupported("\(path): tensor '\(h.name)' has data type \(ONNXDataType.name(h.dataType))")
        }
        var out = [UInt8](repeating: 0, count: h.count * es)
        let payload = try reader.payload(h)
        out.withUnsafeMutableBytes { o in
            func put<T: FixedWidthInteger>(_ v: T, _ i: Int) { o.storeBytes(of: v.littleEndian, toByteOffset: i * es, as: T.self) }
            switch payload {
            case .bytes(let b, _): if let base = b.baseAddress, let d = o.baseAddress { memcpy(d, base, min(b.count, o.count)) }
            case .floats(let f): for i in 0..<h.count { put(f[i].bitPattern, i) }
            case .int32s(let v):
                for i in 0..<h.count {
                    switch es {
                    case 1: put(UInt8(truncatingIfNeeded: v[i]), i)
                    case 2: put(UInt16(truncatingIfNeeded: v[i]), i)
                    default: put(UInt32(bitPattern: v[i]), i)
                    }
                }
            case .int64s(let v): for i in 0..<h.count { put(UInt64(bitPattern: v[i]), i) }
            case .doubles(let v): for i in 0..<h.count { put(v[i].bitPattern, i) }
            case .uint64s(let v):
                for i in 0..<h.count { if es == 4 { put(UInt32(truncatingIfNeeded: v[i]), i) } else { put(v[i], i) } }
            }
        }
        return out
    }

    /// fp32 values → packed little-endian elements of a float type (round to nearest even).
    static func encode(_ v: [Float], _ dataType: Int32, what: String, path: String) throws(GFNError) -> [UInt8] {
        guard ONNXDataType.isFloat(dataType), let es = ONNXDataType.size(dataType) else {
            throw .unsupported("\(path): \(what) would be stored as \(ONNXDataType.name(dataType)), not a float type")
        }
        var out = [UInt8](repeating: 0, count: v.count * es)
        var overflow: Int? = nil
        out.withUnsafeMutableBytes { o in
            v.withUnsafeBufferPointer { x in
                switch dataType {
                case ONNXDataType.float:
                    // Little-endian host (x86-64, arm64): the bytes are the floats.
                    if let d = o.baseAddress, let sp = x.baseAddress { memcpy(d, sp, 4 * x.count) }
                case ONNXDataType.float16:
                    for i in 0..<x.count {
                        let hv = Float16(x[i])
                        if !hv.isFinite && x[i].isFinite && overflow == nil { overflow = i }
                        o.storeBytes(of: hv.bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    }
                case ONNXDataType.bfloat16:
                    for i in 0..<x.count {
                        let bits = UInt16(truncatingIfNeeded: ConstResolver.roundToBF16(x[i]))
                        if !Float(bitPattern: UInt32(bits) << 16).isFinite && x[i].isFinite && overflow == nil { overflow = i }
                        o.storeBytes(of: bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    }
                default:  // DOUBLE
                    for i in 0..<x.count { o.storeBytes(of: Double(x[i]).bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self) }
                }
            }
        }
        if let i = overflow {
            throw .numerical("\(what): value \(v[i]) at index \(i) overflows \(ONNXDataType.name(dataType)), the type the "
                             + "graph stores it in")
        }
        return out
    }

    // MARK: layout

    /// Every tensor of the proto: initializers (source and added), then Constant-node tensors.
    private func allRefs() -> [TensorRef] {
        var refs = (0..<initializerCount).map { TensorRef.initializer($0) }
        for n in graph.nodes where n.opType == "Constant" {
            if let k = n.attributeIndex("value"), n.attributes[k].hasTensor {
                refs.append(TensorRef(node: Int32(n.index), index: Int32(k)))
            }
        }
        return refs
    }

    private func rawTensor(_ ref: TensorRef) throws(GFNError) -> connx_tensor {
        var t = connx_tensor()
        guard connx_tensor_get(file.handle, ref.node, ref.index, &t) == CONNX_OK else {
            throw .internalError("\(path): no tensor at \(ref)")
        }
        return t
    }

    /// Whether the output needs an external data file: everything inline would reach `limit` (the source's
    /// tensors, plus `extraBytes` for tensors that may be added).
    func chooseExternal(_ layout: ONNXExporter.DataLayout, extraBytes: Int, limit: Int) throws(GFNError) -> Bool {
        switch layout {
        case .inline: return false
        case .external: return true
        case .automatic:
            var size: UInt64 = 0
            guard connx_serialized_size(file.handle, &size) == CONNX_OK else {
                throw .internalError("\(path): cannot measure the serialized model")
            }
            var total = Int(clamping: size) + extraBytes
            for ref in allRefs() {
                let t = try rawTensor(ref)
                guard t.data_location == 1 else { continue }
                let h = try reader.header(ref)
                total += h.count * (ONNXDataType.size(h.dataType) ?? 8) + 64
            }
            return total >= limit
        }
    }

    /// Brings every external tensor inline.
    func inlineEverything() throws(GFNError) {
        for ref in allRefs() {
            let t = try rawTensor(ref)
            guard t.data_location == 1 else { continue }
            try inline(ref)
        }
    }

    private func inline(_ ref: TensorRef) throws(GFNError) {
        let h = try reader.header(ref)
        switch try reader.payload(h) {
        case .bytes(let b, _): try setRaw(ref, h.dataType, h.shape, b)
        default: try setRaw(ref, h.dataType, h.shape, try canonicalBytes(h))
        }
    }

    // MARK: external data file

    private final class DataFile {
        let path: String
        let location: String
        var fd: Int32
        var offset = 0
        /// Initializers already written to it.
        var written = Set<Int>()
        init(path: String, location: String, fd: Int32) { self.path = path; self.location = location; self.fd = fd }
    }
    private var data: DataFile?

    /// Starts the external layout: tensors written from now on go to `tmpPath` (named `location` in the model).
    func openDataFile(_ tmpPath: String, location: String) throws(GFNError) {
        let fd = open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(tmpPath): \(FileIO.errnoString())") }
        data = DataFile(path: tmpPath, location: location, fd: fd)
    }

    /// Closes the data file after a failure (the caller removes it).
    func closeDataFile() {
        if let d = data, d.fd >= 0 { close(d.fd); d.fd = -1 }
    }

    /// In the external layout, moves an initializer of at least 1 KiB to the data file at once (64-byte aligned
    /// offset) and frees its bytes in the proto. Constant-node tensors and small ones stay inline.
    private func externalizeNow(_ ref: TensorRef) throws(GFNError) {
        guard let d = data, ref.isInitializer, !d.written.contains(Int(ref.index)) else { return }
        let h = try reader.header(ref)
        guard let es = ONNXDataType.size(h.dataType), h.count * es >= ONNXExporter.externalThreshold else { return }
        let n = h.count * es
        func writeAll(_ p: UnsafeRawPointer?, _ count: Int) throws(GFNError) {
            var done = 0
            while done < count {
                guard let p else { return }
                let w = Glibc.write(d.fd, p + done, count - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw .io("cannot write \(d.path): \(FileIO.errnoString())")
                }
                done += w
            }
            d.offset += count
        }
        let align = ONNXExporter.externalAlignment
        let pad = (align - d.offset % align) % align
        if pad > 0 {
            let zeros = [UInt8](repeating: 0, count: pad)
            try Self.withBytes(zeros) { (z) throws(GFNError) in try writeAll(z.baseAddress, pad) }
        }
        let start = d.offset
        switch try reader.payload(h) {
        case .bytes(let b, _):
            guard b.count == n else { throw .internalError("\(path): tensor '\(h.name)' has \(b.count) bytes, expected \(n)") }
            try writeAll(b.baseAddress, n)
        default:
            let c = try canonicalBytes(h)
            try Self.withBytes(c) { (b) throws(GFNError) in try writeAll(b.baseAddress, n) }
        }
        guard connx_tensor_set_external(file.handle, ref.node, ref.index, d.location, Int64(start), Int64(n)) == CONNX_OK else {
            throw .internalError("\(path): cannot make tensor '\(h.name)' external")
        }
        d.written.insert(Int(ref.index))
    }

    /// Writes every remaining initializer of at least 1 KiB to the data file, brings the other external tensors
    /// inline, then syncs and closes the data file.
    func finishDataFile() throws(GFNError) {
        guard let d = data else { throw .internalError("no data file open") }
        for ref in allRefs() {
            if ref.isInitializer && d.written.contains(Int(ref.index)) { continue }
            try externalizeNow(ref)
            if ref.isInitializer && d.written.contains(Int(ref.index)) { continue }
            if try rawTensor(ref).data_location == 1 { try inline(ref) }
        }
        guard fsync(d.fd) == 0 else { throw .io("cannot sync \(d.path): \(FileIO.errnoString())") }
        let rc = close(d.fd)
        d.fd = -1
        guard rc == 0 else { throw .io("cannot close \(d.path): \(FileIO.errnoString())") }
    }
}
