import CKernels

/// One input of one node: where a constant enters the computation (recorded for the merged-weights export).
struct InputSlot: Hashable, Sendable {
    let node: Int
    let input: Int
}

/// A MatMul/Gemm with a constant 2-D weight operand: y = x·W (+ b), W effective [in, out].
struct LinearSite {
    let node: Int
    /// The activation input.
    let input: String
    /// W as [in, out] (transposed lazily when the file stores it [out, in], e.g. Gemm transB=1).
    let weight: ConstValue
    let alpha: Float
    /// The node input holding the weight operand as stored (input 1 of the MatMul/Gemm).
    var weightSlot: InputSlot { InputSlot(node: node, input: 1) }
    /// Whether that operand is [out, in] (Gemm/FusedMatMul transB = 1).
    let transB: Bool
    var bias: ConstValue?
    /// The node input holding the bias (Gemm input C, the Add's constant operand, FastGelu/BiasGelu input 1,
    /// SkipLayerNormalization input 4).
    var biasSlot: InputSlot?
    var beta: Float
    /// The value after the bias when the bias is a separate Add; else the MatMul/Gemm output.
    var output: String
    var inFeatures: Int { weight.shape[0] }
    var outFeatures: Int { weight.shape[1] }
}

/// A LayerNorm: a LayerNormalization node, com.microsoft::SkipLayerNormalization, or the opset < 17
/// ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add decomposition.
struct NormSite {
    let nodes: [Int]
    let output: String
    let gamma: ConstValue
    let beta: ConstValue?
    let eps: Float
    let kind: String
    /// The node inputs holding gamma and beta (for the merged-weights export).
    let gammaSlot: InputSlot
    let betaSlot: InputSlot?
}

/// What the recognizer found, before weights are materialized.
struct RecognizedBlock {
    let softmax: Int
    let ln1: NormSite
    let ln2: NormSite?
    let q: LinearSite, k: LinearSite, v: LinearSite
    let out: LinearSite
    let fcIn: LinearSite, fcOut: LinearSite
    var fused: Bool { q.node == k.node && k.node == v.node }
    var parallel: Bool { ln2 == nil }
}

/// Recognizes GPT-2 / GPT-J from the graph structure, never from initializer names (exporters name them differently).
final class GraphRecognizer {
    let graph: ONNXGraph
    let consts: ConstResolver
    private(set) var linears: [Int: LinearSite] = [:]
    private(set) var norms: [NormSite] = []
    /// Node index → index into `norms`.
    private var normOfNode: [Int: Int] = [:]
    var path: String { graph.path }

    init(graph: ONNXGraph, consts: ConstResolver) {
        self.graph = graph
        self.consts = consts
    }

    // MARK: refusals

    static let fusedAttentionOps: Set<String> = [
        "Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "PackedMultiHeadAttention",
        "DecoderAttention", "DecoderMaskedMultiHeadAttention", "DecoderMaskedSelfAttention", "LongformerAttention",
        "SparseAttention", "PagedAttention", "RotaryEmbedding", "EmbedLayerNormalization", "RelativePositionBias",
        "GatedRelativePositionBias", "QAttention", "QOrderedAttention",
    ]
    static let quantizedOps: Set<String> = [
        "MatMulNBits", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
        "MatMulBnb4", "MatMulFpQ4", "GatherBlockQuantized", "DequantizeLinear", "QuantizeLinear",
        "DynamicQuantizeLinear", "QOrderedMatMul", "QOrderedLayerNormalization",
    ]

    func refuseUnsupportedOps() throws(GFNError) {
        for n in graph.nodes {
            if Self.fusedAttentionOps.contains(n.opType) {
                let what = n.opType == "EmbedLayerNormalization" ? "fused embedding + LayerNorm"
                    : n.opType == "RotaryEmbedding" ? "fused rotary embedding" : "fused attention"
                throw .unsupported("\(path) contains \(n.domain.isEmpty ? "" : n.domain + "::")\(n.opType) (\(what)), "
                                   + "which gfnlm does not read: export without onnxruntime's attention fusion "
                                   + "(e.g. optimize_model(..., optimization_options with enable_attention=False, "
                                   + "enable_embed_layer_norm=False), or opt_level ≤ 1), or use the unoptimized export")
            }
            if Self.quantizedOps.contains(n.opType) {
                throw .unsupported("\(path) contains \(n.domain.isEmpty ? "" : n.domain + "::")\(n.opType): quantized "
                                   + "models are not supported; export fp32, fp16 or bf16 weights")
            }
            if n.opType == "SimplifiedLayerNormalization" || n.opType == "SkipSimplifiedLayerNormalization"
                || n.opType == "RMSNormalization" {
                throw .unsupported("\(path) contains \(n.opType) (RMSNorm): not a GPT-2/GPT-J graph")
            }
        }
    }

    /// Ops outside ai.onnx that gfnlm does not understand (for messages).
    var foreignOps: [String] {
        let known: Set<String> = ["SkipLayerNormalization", "FastGelu", "BiasGelu", "Gelu", "LayerNormalization",
                                  "FusedMatMul"]
        var seen = Set<String>()
        var out: [String] = []
        for n in graph.nodes where !n.domain.isEmpty && !known.contains(n.opType) {
            let s = "\(n.domain)::\(n.opType)"
            if seen.insert(s).inserted { out.append(s) }
        }
        return out
    }

    func notGPT(_ what: String) -> GFNError {
        var m = "not a GPT-2/GPT-J graph: \(what) (in \(path))"
        let f = foreignOps
        if !f.isEmpty { m += "; the graph has operators gfnlm does not know: \(f.prefix(8).joined(separator: ", "))" }
        if graph.functionCount > 0 {
            m += "; the model has \(graph.functionCount) model-local functions, which gfnlm does not expand "
                + "(inline them first, e.g. onnx.inliner.inline_local_functions)"
        }
        if graph.sparseInitializerCount > 0 {
            m += "; the model has \(graph.sparseInitializerCount) sparse initializers, which gfnlm does not read"
        }
        return .unsupported(m)
    }

    // MARK: sites

    private func isMatMulLike(_ n: ONNXNode) -> Bool {
        (n.domain.isEmpty && (n.opType == "MatMul" || n.opType == "Gemm"))
            || (n.domain == "com.microsoft" && n.opType == "FusedMatMul")
    }

    private func consumersIgnoringShape(_ v: String) -> [Int] {
        graph.consumers(v).filter { let o = graph.nodes[$0].opType; return o != "Shape" && o != "Size" }
    }

    /// Finds every linear site (MatMul / Gemm against a constant weight, with its bias if any).
    func findLinears() throws(GFNError) {
        for n in graph.nodes where isMatMulLike(n) {
            guard let a = n.input(0), let b = n.input(1), let out = n.outputs.first, !out.isEmpty else { continue }
            if n.opType != "MatMul" {
                if n.int("transA", default: 0) != 0 { continue }
            }
            guard !consts.isConst(a), let w = try consts.value(b), w.isFloat, w.rank == 2 else { continue }
            let transB = n.opType != "MatMul" && n.int("transB", default: 0) != 0
            let weight = transB ? consts.transposed2D(w) : w
            let alpha = n.opType == "MatMul" ? 1 : n.float("alpha", default: 1)
            var site = LinearSite(node: n.index, input: a, weight: weight, alpha: alpha, transB: transB, bias: nil,
                                  biasSlot: nil, beta: 1, output: out)
            if n.opType == "Gemm", let c = n.input(2) {
                if let cv = try consts.value(c), cv.isFloat {
                    site.bias = cv
                    site.biasSlot = InputSlot(node: n.index, input: 2)
                    site.beta = n.float("beta", default: 1)
                }
            }
            if site.bias == nil {
                let cons = consumersIgnoringShape(out)
                if cons.count == 1 {
                    let c = graph.nodes[cons[0]]
                    let nOut = weight.shape[1]
                    func asBias(_ name: String?) throws(GFNError) -> ConstValue? {
                        guard let name, let bv = try consts.value(name), bv.isFloat, bv.count == nOut,
                              bv.shape.last == nOut || (nOut == 1 && bv.count == 1) else { return nil }
                        return bv
                    }
                    if c.domain.isEmpty && c.opType == "Add", c.inputs.count == 2 {
                        let otherIndex = c.inputs[0] == out ? 1 : 0
                        if let bv = try asBias(c.input(otherIndex)), let o = c.outputs.first {
                            site.bias = bv
                            site.biasSlot = InputSlot(node: c.index, input: otherIndex)
                            site.output = o
                        }
                    } else if c.domain == "com.microsoft" && (c.opType == "FastGelu" || c.opType == "BiasGelu"),
                              c.input(0) == out {
                        site.bias = try asBias(c.input(1))
                        if site.bias != nil { site.biasSlot = InputSlot(node: c.index, input: 1) }
                    } else if c.domain == "com.microsoft" && c.opType == "SkipLayerNormalization",
                              c.input(0) == out || c.input(1) == out {
                        site.bias = try asBias(c.input(4))
                        if site.bias != nil { site.biasSlot = InputSlot(node: c.index, input: 4) }
                    }
                }
            }
            linears[n.index] = site
        }
    }

    /// The producer of a value, looking through Cast nodes.
    private func producerSkippingCast(_ v: String) -> ONNXNode? {
        var cur = v
        for _ in 0..<8 {
            guard let p = graph.producerNode(cur) else { return nil }
            if p.opType == "Cast", let i = p.input(0) { cur = i; continue }
            return p
        }
        return nil
    }

    private func singleConsumer(_ v: String) -> ONNXNode? {
        let c = consumersIgnoringShape(v)
        return c.count == 1 ? graph.nodes[c[0]] : nil
    }

    /// For `node` with two inputs, the constant operand and the other input.
    private func constOperand(_ n: ONNXNode) throws(GFNError) -> (ConstValue, String)? {
        guard let (c, other, _) = try constOperandSlot(n) else { return nil }
        return (c, other)
    }

    /// For `node` with two inputs, the constant operand, the other input and the constant's input index.
    private func constOperandSlot(_ n: ONNXNode) throws(GFNError) -> (ConstValue, String, Int)? {
        guard n.inputs.count == 2, let a = n.input(0), let b = n.input(1) else { return nil }
        if let c = try consts.value(b), !consts.isConst(a) { return (c, a, 1) }
        if let c = try consts.value(a), !consts.isConst(b) { return (c, b, 0) }
        return nil
    }

    /// Finds every LayerNorm site (a fused LayerNormalization node, or its decomposed ReduceMean / Sub / Pow form).
    func findNorms() throws(GFNError) {
        for n in graph.nodes {
            if n.opType == "LayerNormalization" && (n.domain.isEmpty || n.domain == "com.microsoft") {
                guard let g = n.input(1), let gamma = try consts.value(g), let out = n.outputs.first else {
                    throw notGPT("\(n.label) has no constant gamma")
                }
                let beta = try n.input(2).flatMap { (b) throws(GFNError) in try consts.value(b) }
                let axis = n.int("axis", default: -1)
                if axis != -1, let x = n.input(0), let r = graph.valueInfo[x]?.dims?.count, axis != Int64(r - 1) {
                    throw notGPT("\(n.label) normalizes over axis \(axis), not the last one")
                }
                addNorm(NormSite(nodes: [n.index], output: out, gamma: gamma, beta: beta,
                                 eps: n.float("epsilon", default: 1e-5), kind: "LayerNormalization",
                                 gammaSlot: InputSlot(node: n.index, input: 1),
                                 betaSlot: beta == nil ? nil : InputSlot(node: n.index, input: 2)))
            } else if n.opType == "SkipLayerNormalization" && n.domain == "com.microsoft" {
                guard let g = n.input(2), let gamma = try consts.value(g), let out = n.outputs.first else {
                    throw notGPT("\(n.label) has no constant gamma")
                }
                let beta = try n.input(3).flatMap { (b) throws(GFNError) in try consts.value(b) }
                addNorm(NormSite(nodes: [n.index], output: out, gamma: gamma, beta: beta,
                                 eps: n.float("epsilon", default: 1e-12), kind: "SkipLayerNormalization",
                                 gammaSlot: InputSlot(node: n.index, input: 2),
                                 betaSlot: beta == nil ? nil : InputSlot(node: n.index, input: 3)))
            } else if n.domain.isEmpty && n.opType == "Div" {
                if let site = try decomposedNorm(at: n) { addNorm(site) }
            }
        }
    }

    private func addNorm(_ s: NormSite) {
        let i = norms.count
        norms.append(s)
        for n in s.nodes { normOfNode[n] = i }
    }

    /// Div(Sub(x, ReduceMean(x)), Sqrt(Add(ReduceMean(Pow(d, 2)), eps))) → Mul(gamma) → Add(beta).
    private func decomposedNorm(at div: ONNXNode) throws(GFNError) -> NormSite? {
        guard let num = div.input(0), let den = div.input(1),
              let sub = producerSkippingCast(num), sub.opType == "Sub", let x = sub.input(0), let m = sub.input(1),
              let mean = producerSkippingCast(m), mean.opType == "ReduceMean", mean.input(0) == x,
              let sqrt = producerSkippingCast(den), sqrt.opType == "Sqrt", let sIn = sqrt.input(0),
              let addEps = producerSkippingCast(sIn), addEps.opType == "Add",
              let (epsC, varName) = try constOperand(addEps), let eps = try epsC.scalar(),
              let varNode = producerSkippingCast(varName), varNode.opType == "ReduceMean"
        else { return nil }
        var nodes = [mean.index, sub.index, sqrt.index, addEps.index, varNode.index, div.index]
        if let p = varNode.input(0).flatMap({ producerSkippingCast($0) }), p.opType == "Pow" || p.opType == "Mul" {
            nodes.append(p.index)
        }
        var cur = div.outputs.first ?? ""
        var mul = singleConsumer(cur)
        while let c = mul, c.opType == "Cast", let o = c.outputs.first { nodes.append(c.index); cur = o; mul = singleConsumer(o) }
        guard let mulNode = mul, mulNode.opType == "Mul", let (gamma, _, gammaIndex) = try constOperandSlot(mulNode),
              let mulOut = mulNode.outputs.first
        else { throw notGPT("LayerNorm decomposition at \(div.label) without a constant gamma (Mul)") }
        nodes.append(mulNode.index)
        var output = mulOut
        var beta: ConstValue? = nil
        var betaSlot: InputSlot? = nil
        if let addNode = singleConsumer(mulOut), addNode.opType == "Add", let (b, _, bi) = try constOperandSlot(addNode),
           let o = addNode.outputs.first {
            beta = b
            betaSlot = InputSlot(node: addNode.index, input: bi)
            output = o
            nodes.append(addNode.index)
        }
        return NormSite(nodes: nodes, output: output, gamma: gamma, beta: beta, eps: Float(eps),
                        kind: "LayerNorm decomposition", gammaSlot: InputSlot(node: mulNode.index, input: gammaIndex),
                        betaSlot: betaSlot)
    }

    // MARK: graph search

    /// Breadth-first search upstream of `start` (never through Shape/Size) for the first node with `match`.
    func searchUp(from start: [String], stopAt stop: (Int) -> Bool = { _ in false }, _ match: (Int) -> Bool) -> Int? {
        var queue: [Int] = []
        var seen = Set<Int>()
        for v in start { if let p = graph.producerOf[v], seen.insert(p).inserted { queue.append(p) } }
        var head = 0
        while head < queue.count {
            let i = queue[head]; head += 1
            if match(i) { return i }
            let n = graph.nodes[i]
            if n.opType == "Shape" || n.opType == "Size" { continue }
            if stop(i) { continue }
            for x in n.inputs where !x.isEmpty {
                if let p = graph.producerOf[x], seen.insert(p).inserted { queue.append(p) }
            }
        }
        return nil
    }

    /// Breadth-first search downstream of `start` (never through Shape/Size).
    func searchDown(from start: [String], stopAt stop: (Int) -> Bool = { _ in false }, _ match: (Int) -> Bool) -> Int? {
        var queue: [Int] = []
        var seen = Set<Int>()
        for v in start { for c in graph.consumers(v) where seen.insert(c).inserted { queue.append(c) } }
        var head = 0
        while head < queue.count {
            let i = queue[head]; head += 1
            let n = graph.nodes[i]
            if n.opType == "Shape" || n.opType == "Size" { continue }
            if match(i) { return i }
            if stop(i) { continue }
            for o in n.outputs where !o.isEmpty {
                for c in graph.consumers(o) where seen.insert(c).inserted { queue.append(c) }
            }
        }
        return nil
    }

    private func isAttnMatMul(_ i: Int) -> Bool {
        let n = graph.nodes[i]
        guard isMatMulLike(n), linears[i] == nil, let a = n.input(0), let b = n.input(1) else { return false }
        return !consts.isConst(a) && !consts.isConst(b)
    }

    private func nearestLinearUp(_ v: String) -> LinearSite? {
        searchUp(from: [v]) { linears[$0] != nil }.flatMap { linears[$0] }
    }

    private func firstLinearDown(_ v: String) -> LinearSite? {
        searchDown(from: [v]) { linears[$0] != nil }.flatMap { linears[$0] }
    }

    private func normOf(_ i: Int?) -> NormSite? {
        guard let i, let k = normOfNode[i] else { return nil }
        return norms[k]
    }

    // MARK: recognition

    struct Result {
        var wte: ConstValue
        var wpe: ConstValue?
        /// The embedding Gathers (their input 0 holds the table).
        var wteNode: Int
        var wpeNodes: [Int]
        var blocks: [RecognizedBlock]
        var lnF: NormSite
        var head: LinearSite
        var tied: Bool
        var headDim: Int
        var nHead: Int
        var activation: Activation
        var rotary: (dim: Int, positions: Int, base: Float)?
        var eps: Float
    }

    func recognize(configFallback: () throws(GFNError) -> [String: Double]?) throws(GFNError) -> Result {
        try refuseUnsupportedOps()
        if graph.nodes.isEmpty { throw notGPT("the graph has no nodes") }
        try findLinears()
        try findNorms()

        // Embeddings.
        let (wte, wteNode) = try tokenEmbedding()
        let V = wte.shape[0], E = wte.shape[1]
        let (wpe, wpeNodes) = try positionEmbedding(E: E, wte: wte, wteNode: wteNode)

        // Attention blocks, one per Softmax.
        let softmaxes = graph.nodes.filter { $0.domain.isEmpty && $0.opType == "Softmax" }
        if softmaxes.isEmpty { throw notGPT("no Softmax (no attention) found") }
        var blocks: [RecognizedBlock] = []
        for sm in softmaxes { blocks.append(try block(at: sm, E: E)) }
        var used = Set<Int>()
        for (i, b) in blocks.enumerated() {
            let mine = Set([b.q.node, b.k.node, b.v.node, b.out.node, b.fcIn.node, b.fcOut.node])
            if !used.isDisjoint(with: mine) {
                throw notGPT("attention block \(i) shares a projection with an earlier block (unexpected structure)")
            }
            used.formUnion(mine)
        }
        let parallel = blocks[0].parallel
        let fused = blocks[0].fused
        for (i, b) in blocks.enumerated() where b.parallel != parallel || b.fused != fused {
            throw notGPT("block \(i) is \(b.parallel ? "parallel" : "sequential") with \(b.fused ? "fused" : "separate") "
                         + "q/k/v while block 0 is \(parallel ? "parallel" : "sequential") with \(fused ? "fused" : "separate")")
        }

        // Final norm and head.
        guard let last = blocks.last,
              let lnF = normOf(searchDown(from: [last.fcOut.output]) { normOfNode[$0] != nil }) else {
            throw notGPT("no final LayerNorm after the last block")
        }
        guard let head = firstLinearDown(lnF.output) else { throw notGPT("no output head (linear map after ln_f)") }
        if used.contains(head.node) { throw notGPT("the output head is also a block projection") }
        guard head.inFeatures == E && head.outFeatures == V else {
            throw notGPT("the output head has shape [\(head.inFeatures), \(head.outFeatures)], expected [\(E), \(V)]")
        }
        let tied = try isTied(head: head, wte: wte)

        // Leftover linear maps touching the embedding width mean an unknown structure.
        used.insert(head.node)
        for (i, l) in linears where !used.contains(i) && (l.inFeatures == E || l.outFeatures == E) {
            throw notGPT("a linear map [\(l.inFeatures), \(l.outFeatures)] at \(graph.nodes[i].label) belongs to no "
                         + "attention block or MLP")
        }

        // Hyper-parameters.
        var eps = blocks[0].ln1.eps
        for n in blocks.flatMap({ [$0.ln1] + ($0.ln2.map { [$0] } ?? []) }) + [lnF] where n.eps != eps {
            throw .unsupported("\(path): LayerNorms use different epsilons (\(eps) and \(n.eps)); gfnlm needs one")
        }
        if !(eps > 0 && eps.isFinite) { eps = 1e-5 }
        let activation = try self.activation(blocks[0])
        for b in blocks.dropFirst() where try self.activation(b) != activation {
            throw .unsupported("\(path): blocks use different MLP activations")
        }
        let (headDim, nHead) = try headShape(blocks[0], E: E, config: configFallback)
        var rotary: (Int, Int, Float)? = nil
        if wpe == nil { rotary = try rotaryTable(E: E, headDim: headDim, config: configFallback) }
        return Result(wte: wte, wpe: wpe, wteNode: wteNode, wpeNodes: wpeNodes, blocks: blocks, lnF: lnF, head: head, tied: tied, headDim: headDim,
                      nHead: nHead, activation: activation, rotary: rotary, eps: eps)
    }

    /// The Gather of a constant float [V, E] table whose indices come from the int64 graph input.
    private func tokenEmbedding() throws(GFNError) -> (ConstValue, Int) {
        let intInputs = Set(graph.inputs.filter {
            graph.initializers[$0.name] == nil
                && [ONNXDataType.int64, ONNXDataType.int32].contains($0.elemType)
        }.map { $0.name })
        var candidates: [(ConstValue, Int, String)] = []
        for n in graph.nodes where n.domain.isEmpty && n.opType == "Gather" {
            guard let d = n.input(0), let idx = n.input(1), n.int("axis", default: 0) == 0,
                  let table = try consts.value(d), table.isFloat, table.rank == 2, !consts.isConst(idx) else { continue }
            // Trace the indices back to a graph input.
            var cur = idx
            var source: String? = nil
            for _ in 0..<16 {
                if intInputs.contains(cur) { source = cur; break }
                guard let p = graph.producerNode(cur),
                      ["Cast", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten"].contains(p.opType),
                      let i0 = p.input(0) else { break }
                cur = i0
            }
            if let s = source { candidates.append((table, n.index, s)) }
        }
        if candidates.isEmpty {
            throw notGPT("no token-embedding Gather (a Gather of a constant [vocab, n_embd] table indexed by the "
                         + "int64 input_ids) was found")
        }
        if candidates.count == 1 { return (candidates[0].0, candidates[0].1) }
        let byName = candidates.filter { $0.2 == "input_ids" }
        if byName.count == 1 { return (byName[0].0, byName[0].1) }
        let sorted = candidates.sorted { $0.0.shape[0] > $1.0.shape[0] }
        if sorted[0].0.shape[0] > sorted[1].0.shape[0] { return (sorted[0].0, sorted[0].1) }
        throw notGPT("\(candidates.count) candidate token-embedding Gathers (\(candidates.map { $0.0.shape }))")
    }

    /// GPT-2's wpe: another Gather of a constant float [P, E] table.
    private func positionEmbedding(E: Int, wte: ConstValue, wteNode: Int) throws(GFNError) -> (ConstValue?, [Int]) {
        var found: ConstValue? = nil
        var foundNodes: [Int] = []
        for n in graph.nodes where n.domain.isEmpty && n.opType == "Gather" && n.index != wteNode {
            guard let d = n.input(0), let idx = n.input(1), n.int("axis", default: 0) == 0,
                  let table = try consts.value(d), table.isFloat, table.rank == 2, table.shape[1] == E,
                  !consts.isConst(idx) else { continue }
            if let r = table.root, r == wte.root { continue }
            if let f = found {
                if f.root != nil && f.root == table.root { foundNodes.append(n.index); continue }
                throw notGPT("two position-embedding candidates: \(f.shape) and \(table.shape)")
            }
            found = table
            foundNodes.append(n.index)
        }
        return (found, foundNodes)
    }

    private func block(at sm: ONNXNode, E: Int) throws(GFNError) -> RecognizedBlock {
        guard let smIn = sm.input(0), let smOut = sm.outputs.first else { throw notGPT("\(sm.label) without input") }
        guard let scoreI = searchUp(from: [smIn], { isAttnMatMul($0) }) else {
            throw notGPT("no attention-score MatMul before \(sm.label)")
        }
        guard let pvI = searchDown(from: [smOut], { isAttnMatMul($0) }) else {
            throw notGPT("no probabilities×values MatMul after \(sm.label)")
        }
        let score = graph.nodes[scoreI], pv = graph.nodes[pvI]
        guard let sa = score.input(0), let sb = score.input(1), let pvb = pv.input(1), let pvOut = pv.outputs.first else {
            throw notGPT("malformed attention MatMuls near \(sm.label)")
        }
        guard let q = nearestLinearUp(sa), let k = nearestLinearUp(sb), let v = nearestLinearUp(pvb) else {
            throw notGPT("cannot find the q/k/v projections of the attention at \(sm.label)")
        }
        guard let out = firstLinearDown(pvOut) else { throw notGPT("no output projection after \(sm.label)") }
        let fused = q.node == k.node && k.node == v.node
        if !fused && (q.node == k.node || k.node == v.node || q.node == v.node) {
            throw notGPT("q, k and v of the attention at \(sm.label) share some but not all projections")
        }
        if fused {
            guard q.inFeatures == E && q.outFeatures == 3 * E else {
                throw notGPT("fused q/k/v projection has shape [\(q.inFeatures), \(q.outFeatures)], expected [\(E), \(3 * E)]")
            }
            try checkSplitOrder(q, from: (sa, sb, pvb), E: E, at: sm)
        } else {
            for (nm, l) in [("q", q), ("k", k), ("v", v)] where l.inFeatures != E || l.outFeatures != E {
                throw notGPT("\(nm) projection has shape [\(l.inFeatures), \(l.outFeatures)], expected [\(E), \(E)]")
            }
        }
        guard let ln1 = normOf(searchUp(from: [q.input]) { normOfNode[$0] != nil }) else {
            throw notGPT("no LayerNorm before the attention at \(sm.label)")
        }
        // Linear maps fed by ln_1 directly (without crossing another linear or norm).
        var fedByLn1 = Set<Int>()
        _ = searchDown(from: [ln1.output], stopAt: { linears[$0] != nil || normOfNode[$0] != nil }) { i in
            if linears[i] != nil { fedByLn1.insert(i) }
            return false
        }
        let extra = fedByLn1.subtracting([q.node, k.node, v.node])
        var ln2: NormSite? = nil
        let fcIn: LinearSite
        if extra.isEmpty {
            guard let n2 = normOf(searchDown(from: [out.output]) { normOfNode[$0] != nil }) else {
                throw notGPT("no second LayerNorm after the attention at \(sm.label)")
            }
            guard let f = firstLinearDown(n2.output) else { throw notGPT("no MLP after the attention at \(sm.label)") }
            ln2 = n2
            fcIn = f
        } else {
            guard extra.count == 1, let i = extra.first, let f = linears[i] else {
                throw notGPT("ln_1 of the attention at \(sm.label) feeds \(extra.count) linear maps besides q/k/v")
            }
            fcIn = f
        }
        guard let fcOut = firstLinearDown(fcIn.output) else { throw notGPT("no MLP down-projection after \(sm.label)") }
        return RecognizedBlock(softmax: sm.index, ln1: ln1, ln2: ln2, q: q, k: k, v: v, out: out, fcIn: fcIn, fcOut: fcOut)
    }

    /// For a fused [E, 3E] projection, confirms that q, k and v take columns [0,E), [E,2E), [2E,3E) (Split sizes or
    /// Slice ranges on the projection's output).
    private func checkSplitOrder(_ l: LinearSite, from paths: (String, String, String), E: Int, at sm: ONNXNode) throws(GFNError) {
        // Values equal to the projection output up to reshapes.
        var same = Set([l.output])
        var frontier = [l.output]
        while let v = frontier.popLast() {
            for c in graph.consumers(v) {
                let n = graph.nodes[c]
                if ["Reshape", "Identity", "Squeeze", "Unsqueeze", "Cast"].contains(n.opType), n.input(0) == v,
                   let o = n.outputs.first, same.insert(o).inserted { frontier.append(o) }
            }
        }
        // Walk upstream over values until a Split/Slice of the projection output is met.
        func range(_ start: String) throws(GFNError) -> (Int, Int)? {
            var queue = [start]
            var seen = Set([start])
            var head = 0
            while head < queue.count {
                let v = queue[head]; head += 1
                guard let pi = graph.producerOf[v] else { continue }
                let n = graph.nodes[pi]
                if linears[pi] != nil || n.opType == "Shape" || n.opType == "Size" { continue }
                if let x = n.input(0), same.contains(x) {
                    if n.opType == "Split", let j = n.outputs.firstIndex(of: v) {
                        var sizes: [Int64]? = n.attribute("split")?.ints
                        if sizes == nil, let sv = n.input(1) { sizes = try consts.value(sv)?.ints() }
                        let parts = max(n.outputs.count, 1)
                        let sz = sizes ?? [Int64](repeating: Int64(3 * E / parts), count: parts)
                        guard j < sz.count else { return nil }
                        let begin = sz[..<j].reduce(Int64(0), &+)
                        return (Int(truncatingIfNeeded: begin), Int(truncatingIfNeeded: begin &+ sz[j]))
                    }
                    if n.opType == "Slice", let st = n.input(1), let en = n.input(2),
                       let sv = try consts.value(st)?.ints(), let ev = try consts.value(en)?.ints(),
                       sv.count == 1, ev.count == 1 {
                        let b = sv[0] < 0 ? sv[0] &+ Int64(3 * E) : sv[0]
                        var e = ev[0] < 0 ? ev[0] &+ Int64(3 * E) : ev[0]
                        e = min(e, Int64(3 * E))
                        return (Int(truncatingIfNeeded: b), Int(truncatingIfNeeded: e))
                    }
                }
                for x in n.inputs where !x.isEmpty && seen.insert(x).inserted { queue.append(x) }
            }
            return nil
        }
        let expected = [(0, E), (E, 2 * E), (2 * E, 3 * E)]
        let names = ["q", "k", "v"]
        for (j, start) in [paths.0, paths.1, paths.2].enumerated() {
            guard let r = try range(start) else {
                throw notGPT("cannot confirm the q/k/v split of the fused projection at \(sm.label) "
                             + "(no Split or Slice of its output found)")
            }
            if r != expected[j] {
                throw notGPT("the fused projection at \(sm.label) gives \(names[j]) columns [\(r.0), \(r.1)), "
                             + "expected [\(expected[j].0), \(expected[j].1)) (q, k, v order)")
            }
        }
    }

    /// Tied when the head weight is the embedding's transpose: the same initializer, or bitwise equal.
    private func isTied(head: LinearSite, wte: ConstValue) throws(GFNError) -> Bool {
        if head.bias != nil || head.alpha != 1 { return false }
        let w = head.weight
        if let r = w.root, r == wte.root, w.rootTransposed != wte.rootTransposed { return true }
        let V = wte.shape[0], E = wte.shape[1]
        guard w.shape == [E, V] else { return false }
        let a = try w.floats(), b = try wte.floats()
        let wp = UnsafeRawPointer(a.base).assumingMemoryBound(to: UInt32.self)
        let ep = UnsafeRawPointer(b.base).assumingMemoryBound(to: UInt32.self)
        // Quick reject on the first row, then the whole matrix (blocked C kernel: ~memory speed).
        for j in 0..<min(V, 64) where wp[j] != ep[j * E] { return false }
        return gfk_equal_transposed_u32(wp, ep, E, V) != 0
    }

    private func activation(_ b: RecognizedBlock) throws(GFNError) -> Activation {
        var ops: [ONNXNode] = []
        _ = searchDown(from: [b.fcIn.output], stopAt: { linears[$0] != nil || normOfNode[$0] != nil }) { i in
            if linears[i] == nil { ops.append(graph.nodes[i]) }
            return false
        }
        // The region may also include FastGelu/BiasGelu consuming the raw MatMul output.
        _ = searchDown(from: [graph.nodes[b.fcIn.node].outputs.first ?? ""], stopAt: { linears[$0] != nil }) { i in
            let n = graph.nodes[i]
            if n.domain == "com.microsoft" && ["FastGelu", "BiasGelu", "Gelu"].contains(n.opType) { ops.append(n) }
            return false
        }
        let types = Set(ops.map { $0.opType })
        if ops.contains(where: { $0.opType == "FastGelu" }) { return .geluNew }
        if ops.contains(where: { $0.opType == "BiasGelu" || ($0.opType == "Gelu" && $0.domain == "com.microsoft") }) {
            return .gelu
        }
        if let g = ops.first(where: { $0.opType == "Gelu" && $0.domain.isEmpty }) {
            let approx = g.attribute("approximate")?.string ?? "none"
            if approx == "tanh" { return .geluNew }
            if approx == "none" { return .gelu }
            throw .unsupported("\(path): Gelu with approximate='\(approx)' between fc_in and fc_out")
        }
        if types.contains("Tanh") {
            var hasCoef = false
            for n in ops where n.opType == "Mul" || n.opType == "Add" {
                for x in n.inputs where !x.isEmpty {
                    if let c = try consts.value(x), c.count == 1, let s = try c.scalar(), abs(s - 0.044715) < 1e-4 {
                        hasCoef = true
                    }
                }
            }
            if hasCoef { return .geluNew }
        }
        if types.contains("Erf") { return .gelu }
        let list = ops.map { $0.domain.isEmpty ? $0.opType : "\($0.domain)::\($0.opType)" }
        throw .unsupported("\(path): unknown MLP activation between fc_in and fc_out (ops: "
                           + "\(Array(Set(list)).sorted().joined(separator: ", "))); gfnlm knows gelu_new (tanh) and exact gelu")
    }

    /// head_dim and n_head: the first 4-entry Reshape after q, else a past_key_values input, else value_info,
    /// else config.json.
    private func headShape(_ b: RecognizedBlock, E: Int, config: () throws(GFNError) -> [String: Double]?)
        throws(GFNError) -> (Int, Int)
    {
        func fromPair(_ nh: Int?, _ hd: Int?) -> (Int, Int)? {
            switch (nh, hd) {
            case let (n?, h?) where n > 0 && h > 0 && n * h == E: return (h, n)
            case let (_, h?) where h > 0 && E % h == 0: return (h, E / h)
            case let (n?, _) where n > 0 && E % n == 0: return (E / n, n)
            default: return nil
            }
        }
        var reshapeOut: String? = nil
        var result: (Int, Int)? = nil
        let stop: (Int) -> Bool = { self.linears[$0] != nil || self.graph.nodes[$0].opType == "Softmax" }
        _ = searchDown(from: [b.q.output], stopAt: stop) { i in
            let n = graph.nodes[i]
            guard n.opType == "Reshape", let t = n.input(1), let p = consts.partialInts(t), p.count == 4 else { return false }
            reshapeOut = n.outputs.first
            let nh = p[2].flatMap { $0 > 0 ? Int($0) : nil }, hd = p[3].flatMap { $0 > 0 ? Int($0) : nil }
            if nh != nil || hd != nil { result = fromPair(nh, hd) }
            return true
        }
        if let r = result { return r }
        for inp in graph.inputs where ONNXDataType.isFloat(inp.elemType) {
            if let d = inp.dims, d.count == 4, d[1] > 0, d[3] > 0, d[1] * d[3] == E { return (d[3], d[1]) }
        }
        if let o = reshapeOut, let d = graph.valueInfo[o]?.dims, d.count == 4, let r = fromPair(d[2] > 0 ? d[2] : nil, d[3] > 0 ? d[3] : nil) {
            return r
        }
        if let c = try config(), let nh = Self.count(c["n_head"] ?? c["num_attention_heads"]), let r = fromPair(nh, nil) {
            return r
        }
        throw .unsupported("\(path): cannot find the number of attention heads (no 4-D Reshape after q, no static "
                           + "past_key_values input, no value_info, no config.json beside the model)")
    }

    /// A positive whole number from config.json (nil for anything else, never a trap).
    static func count(_ d: Double?) -> Int? {
        guard let d, d.isFinite, d >= 1, d <= 1e9, d == d.rounded() else { return nil }
        return Int(d)
    }

    /// The base of θ_i = base^(-2i/R) from a [P, R] sin|cos table: the smallest frequency i = R/2 - 1, measured at
    /// the farthest row where its angle stays below π (for precision), snapped to a round value within 1 %
    /// (fp16 tables only give about 3 digits), else rounded to an integer.
    static func rotaryBase(_ x: UnsafePointer<Float>, P: Int, R: Int) -> Float {
        let half = R / 2
        guard half >= 2 else { return 10000 }
        let i = half - 1
        let theta1 = atan2(Double(x[R + i]), Double(x[R + half + i]))
        guard theta1 > 0 && theta1 < 1 else { return 10000 }
        var p = max(1, Int(min(Double(P - 1), 2.5 / theta1)))
        var theta = theta1
        while p > 1 {
            let a = atan2(Double(x[p * R + i]), Double(x[p * R + half + i]))
            if a > 0 { theta = a / Double(p); break }
            p /= 2
        }
        let base = exp(-log(theta) * Double(R) / Double(2 * i))
        for nice in [10000.0, 100000.0, 500000.0, 1000000.0, 5000000.0, 10000000.0, 1000.0, 50000.0] {
            if abs(base - nice) < 0.01 * nice { return Float(nice) }
        }
        return Float(base.rounded())
    }

    /// GPT-J's rotary table: a float constant [P, R] or [1, P, R] with row 0 = [0…0 | 1…1] and sin² + cos² = 1.
    private func rotaryTable(E: Int, headDim: Int, config: () throws(GFNError) -> [String: Double]?)
        throws(GFNError) -> (Int, Int, Float)
    {
        let refs = ONNXModelLoader.tensorRefs(graph)
        var found: [(Int, Int, Float)] = []
        for ref in refs {
            let h = try consts.reader.header(ref)
            guard ONNXDataType.isFloat(h.dataType) else { continue }
            let P: Int, R: Int
            if h.shape.count == 2 { P = h.shape[0]; R = h.shape[1] }
            else if h.shape.count == 3 && h.shape[0] == 1 { P = h.shape[1]; R = h.shape[2] }
            else { continue }
            guard P >= 2, R >= 2, R % 2 == 0, R <= headDim else { continue }
            let f = try consts.reader.floats(h)
            let x = f.base
            let half = R / 2
            var ok = true
            for j in 0..<half where abs(x[j]) > 1e-6 || abs(x[half + j] - 1) > 1e-3 { ok = false; break }
            if !ok { continue }
            for p in 0..<P {
                for j in 0..<half {
                    let s = x[p * R + j], c = x[p * R + half + j]
                    if abs(s * s + c * c - 1) > 4e-3 { ok = false; break }
                }
                if !ok { break }
            }
            if !ok { continue }
            found.append((R, P, Self.rotaryBase(x, P: P, R: R)))
        }
        if let first = found.first {
            for f in found.dropFirst() where f != first {
                throw .unsupported("\(path): two different rotary tables (\(first) and \(f))")
            }
            return first
        }
        if let c = try config(), let r = Self.count(c["rotary_dim"]),
           let p = Self.count(c["n_positions"] ?? c["max_position_embeddings"]) {
            return (r, p, Float(c["rope_theta"] ?? 10000))
        }
        throw notGPT("a graph without learned positions and without a rotary sin/cos table (GPT-J keeps one as a "
                     + "[n_positions, rotary_dim] constant)")
    }
}
