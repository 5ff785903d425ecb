#if canImport(Glibc)
import Glibc
#endif

// MARK: - Parameters and gradients

/// One trainable tensor and its gradient (same shape). `value` shares storage with the model or adapter it came
/// from, so an optimiser that updates it in place updates the model.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let value: Tensor
    public let grad: Tensor

    public init(name: String, value: Tensor) throws(GFNError) {
        self.name = name
        self.value = value
        self.grad = try Tensor(zeros: value.shape)
    }

    public var count: Int { value.count }
}

/// The gradient buffers a backward pass accumulates into, for either a LoRA adapter (A and B of every adapted
/// module; frozen weights get none) or every weight of a model (full-parameter training).
///
/// Backward passes always **add** into these buffers, so several micro-batches accumulate by summation; call
/// `zero()` after an optimiser step (or divide by the count at the step for a mean: `AdamW.step(gradientScale:)`).
///
/// Names: LoRA parameters are `<module>.lora_A.weight` / `<module>.lora_B.weight` (PEFT's names without the
/// `base_model.model.` prefix). Full-parameter names are Hugging Face's (`transformer.wte.weight`,
/// `transformer.h.0.attn.c_attn.weight`, `transformer.h.0.ln_1.weight`, `transformer.ln_f.bias`, `lm_head.weight`),
/// but every linear weight keeps gfnlm's [in, out] layout (GPT-J's torch `Linear` stores [out, in]).
public final class Gradients: @unchecked Sendable {
    public let parameters: [Parameter]
    /// The adapter whose factors these are (LoRA mode).
    public let adapter: LoRAAdapter?
    /// The weights these are (full-parameter mode).
    public let model: ModelWeights?

    var loraA: [String: Tensor] = [:]
    var loraB: [String: Tensor] = [:]
    var linearW: [String: Tensor] = [:]
    var linearBias: [String: Tensor] = [:]
    var lnGamma: [String: Tensor] = [:]
    var lnBeta: [String: Tensor] = [:]
    var wte: Tensor?
    var wpe: Tensor?
    private var byName: [String: Parameter] = [:]

    /// Gradients for the LoRA factors of `adapter` (A before B, modules in model order).
    public init(adapter: LoRAAdapter) throws(GFNError) {
        var ps: [Parameter] = []
        for name in adapter.moduleNames {
            guard let f = adapter.factors(for: name) else { continue }
            let pa = try Parameter(name: name + ".lora_A.weight", value: f.a)
            let pb = try Parameter(name: name + ".lora_B.weight", value: f.b)
            loraA[name] = pa.grad
            loraB[name] = pb.grad
            ps += [pa, pb]
        }
        parameters = ps
        self.adapter = adapter
        self.model = nil
        for p in ps { byName[p.name] = p }
    }

    /// Gradients for every weight of `model` (use a trainable copy: `ModelWeights.trainableCopy()`).
    public init(model w: ModelWeights) throws(GFNError) {
        var ps: [Parameter] = []
        func add(_ name: String, _ t: Tensor) throws(GFNError) -> Tensor {
            let p = try Parameter(name: name, value: t)
            ps.append(p)
            return p.grad
        }
        wte = try add("transformer.wte.weight", w.wte)
        if let wpe = w.wpe { self.wpe = try add("transformer.wpe.weight", wpe) }
        for (l, block) in w.blocks.enumerated() {
            let p = "transformer.h.\(l)."
            lnGamma[p + "ln_1"] = try add(p + "ln_1.weight", block.ln1.gamma)
            lnBeta[p + "ln_1"] = try add(p + "ln_1.bias", block.ln1.beta)
            var lins = block.qkv.linears + [block.attnOut]
            if let ln2 = block.ln2 {
                for lin in lins {
                    linearW[lin.name] = try add(lin.name + ".weight", lin.weight)
                    if let b = lin.bias { linearBias[lin.name] = try add(lin.name + ".bias", b) }
                }
                lins = []
                lnGamma[p + "ln_2"] = try add(p + "ln_2.weight", ln2.gamma)
                lnBeta[p + "ln_2"] = try add(p + "ln_2.bias", ln2.beta)
            }
            for lin in lins + [block.fcIn, block.fcOut] {
                linearW[lin.name] = try add(lin.name + ".weight", lin.weight)
                if let b = lin.bias { linearBias[lin.name] = try add(lin.name + ".bias", b) }
            }
        }
        lnGamma["transformer.ln_f"] = try add("transformer.ln_f.weight", w.lnF.gamma)
        lnBeta["transformer.ln_f"] = try add("transformer.ln_f.bias", w.lnF.beta)
        if case .linear(let h) = w.head {
            linearW[h.name] = try add(h.name + ".weight", h.weight)
            if let b = h.bias { linearBias[h.name] = try add(h.name + ".bias", b) }
        }
        parameters = ps
        adapter = nil
        model = w
        for p in ps { byName[p.name] = p }
    }

    public subscript(name: String) -> Parameter? { byName[name] }

    /// Sets every gradient to zero.
    public func zero() {
        for p in parameters { p.grad.pointer.update(repeating: 0, count: p.count) }
    }

    /// Total number of trainable values.
    public var count: Int { parameters.reduce(0) { $0 + $1.count } }

    /// √(Σ g²) over all gradients, in double precision (NaN or ∞ when any gradient is not finite).
    public func norm() -> Double {
        var s = 0.0
        for p in parameters { s += Gradients.sumOfSquares(p.grad.pointer, p.count) }
        return s.squareRoot()
    }

    static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let len = min(4096, n - i)
            total += Double(Kernels.dot(x + i, x + i, n: len))
            i += len
        }
        return total
    }
}

extension ModelWeights {
    /// An independent, writable copy of every tensor (for full-parameter training: loaded weights may share or
    /// borrow storage and must never be written).
    /// Refused (`.unsupported`) for bf16 weights: full-parameter training needs fp32 weights.
    public func trainableCopy() throws(GFNError) -> ModelWeights {
        guard weightType == .f32 else {
            throw .unsupported("full-parameter training needs fp32 weights; this model's matrices are stored in \(weightType) "
                               + "(load it with weights=fp32)")
        }
        func lin(_ l: Linear) throws(GFNError) -> Linear {
            try Linear(name: l.name, weight: l.weight.copy(), bias: l.bias?.copy())
        }
        func ln(_ l: LayerNormWeights) throws(GFNError) -> LayerNormWeights {
            LayerNormWeights(gamma: try l.gamma.copy(), beta: try l.beta.copy())
        }
        var bs: [BlockWeights] = []
        for b in blocks {
            let qkv: QKVProjection
            switch b.qkv {
            case .fused(let l): qkv = .fused(try lin(l))
            case .separate(let q, let k, let v): qkv = .separate(q: try lin(q), k: try lin(k), v: try lin(v))
            }
            bs.append(BlockWeights(ln1: try ln(b.ln1), ln2: try b.ln2.map { l throws(GFNError) in try ln(l) }, qkv: qkv,
                                   attnOut: try lin(b.attnOut), fcIn: try lin(b.fcIn), fcOut: try lin(b.fcOut)))
        }
        let h: HeadWeights
        switch head {
        case .tied: h = .tied
        case .linear(let l): h = .linear(try lin(l))
        }
        return try ModelWeights(config: config, wte: try wte.copy(), wpe: try wpe?.copy(), blocks: bs,
                                lnF: try ln(lnF), head: h)
    }
}

// MARK: - KV gradients

/// Gradients with respect to the keys and values stored in KV caches that a traced forward attended to but did
/// not itself write: a shared prompt's cache, or earlier slots of the row's own cache. A backward pass adds
/// them here (summed over every row that saw them); the backward pass of the trace that wrote those slots then
/// injects them at each layer. Run child traces' backward passes before their prefix's. Layout per cache as the
/// cache itself: [layer][head][slot][head_dim]. Call `reset()` before reusing it for a new step.
public final class KVGradients: @unchecked Sendable {
    final class Entry {
        let cache: KVCache
        let k: FloatStorage
        let v: FloatStorage
        init(cache: KVCache) throws(GFNError) {
            self.cache = cache
            k = try FloatStorage(count: cache.k.count)
            v = try FloatStorage(count: cache.v.count)
        }
    }
    private var entries: [ObjectIdentifier: Entry] = [:]

    public init() {}

    /// Drops every accumulated gradient.
    public func reset() { entries.removeAll() }

    func entry(for cache: KVCache) throws(GFNError) -> Entry {
        if let e = entries[ObjectIdentifier(cache)] { return e }
        let e = try Entry(cache: cache)
        entries[ObjectIdentifier(cache)] = e
        return e
    }

    func existing(_ cache: KVCache) -> Entry? { entries[ObjectIdentifier(cache)] }

    /// True when gradients for `cache` have been accumulated.
    public func has(_ cache: KVCache) -> Bool { existing(cache) != nil }
}

// MARK: - Backward workspace

/// Scratch memory for backward passes (and the LM head), owned by one caller; grows to the largest batch.
public final class BackwardWorkspace: @unchecked Sendable {
    let arena: Arena
    public init() throws(GFNError) { arena = try Arena(capacity: 0) }
}

// MARK: - Backward

extension Transformer {
    /// Back-propagates `dHidden` (dL/d of the final hidden states the traced forward returned, [rows·T, n_embd];
    /// nil for zero)
    /// through the network, **adding** into `gradients` (LoRA factors of the trace's adapter, or every weight when
    /// `gradients` was made for this transformer's weights). Frozen weights get no gradient; activation gradients
    /// always flow. Left-padded slots get exactly zero gradient (their entries of `dHidden` are ignored).
    ///
    /// Keys and values the rows attended to in prefix caches (and in their own caches' slots written by earlier
    /// forward calls) receive gradients in `kvGradients`, summed over rows; gradients already in `kvGradients`
    /// for the slots this trace wrote are injected. So for a prompt computed once by its own traced forward and
    /// rows extending it: run the rows' backward first, then the prompt's, with the same `kvGradients`. Without
    /// `kvGradients`, prefix keys/values are treated as constants.
    ///
    /// The caches must not have been modified (other than appended to) since the traced forward.
    public func backward(trace: ForwardTrace, dHidden: UnsafePointer<Float>?, gradients: Gradients,
                         kvGradients: KVGradients? = nil, workspace: BackwardWorkspace) throws(GFNError) {
        try backward(traces: [trace], dHidden: [dHidden], gradients: gradients, kvGradients: kvGradients,
                     workspace: workspace)
    }

    /// `backward(trace:…)` for several traced forwards at once, given in the order they ran (later ones may
    /// extend the caches of earlier ones, e.g. a prompt, then one trace per decoding step): the result is that of
    /// running their backward passes one by one in reverse order with one `kvGradients`, but the layers go in
    /// lockstep, so every product with a frozen weight matrix takes the rows of all traces at once (one packing of
    /// the weights per layer instead of one per trace). `dHidden[i]` belongs to `traces[i]` (nil for zero).
    public func backward(traces: [ForwardTrace], dHidden: [UnsafePointer<Float>?], gradients: Gradients,
                         kvGradients: KVGradients? = nil, workspace: BackwardWorkspace) throws(GFNError) {
        try gate.run { () throws(GFNError) in
            try backwardHoldingGate(traces: traces, dHidden: dHidden, gradients: gradients,
                                    kvGradients: kvGradients, workspace: workspace)
        }
    }

    private func backwardHoldingGate(traces: [ForwardTrace], dHidden: [UnsafePointer<Float>?],
                                     gradients: Gradients, kvGradients: KVGradients?,
                                     workspace: BackwardWorkspace) throws(GFNError) {
        guard !traces.isEmpty else { return }
        guard dHidden.count == traces.count else {
            throw .invalidArgument("\(dHidden.count) hidden-state gradients for \(traces.count) traces")
        }
        let c = config
        let full = gradients.model != nil
        if let m = gradients.model, m !== weights {
            throw .state("full-parameter gradients belong to other weights than this transformer's")
        }
        var plans: [ForwardPlan] = []
        var finals: [(pre: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>)] = []
        for (i, trace) in traces.enumerated() {
            guard let plan = trace.plan, let preFinal = trace.preFinal, let lnFMean = trace.lnFMean,
                  let lnFRstd = trace.lnFRstd else {
                throw .state("backward on a trace without a forward pass")
            }
            guard plan.config == c, trace.layers.count == c.nLayer else {
                throw .state("the trace was recorded with a different model")
            }
            if let a = gradients.adapter, a !== trace.adapter {
                throw .state("LoRA gradients belong to another adapter than the one the traced forward used")
            }
            for j in 0..<i where traces[j] === trace { throw .invalidArgument("traces \(j) and \(i) are the same trace") }
            plans.append(plan)
            finals.append((preFinal, lnFMean, lnFRstd))
        }
        let E = c.nEmbd, I = c.nInner
        let counts = plans.map { $0.rows * $0.T }
        var offsets: [Int] = []
        var N = 0
        for n in counts { offsets.append(N); N += n }
        let maxRank = traces.map { t in t.adapter?.factors.values.map { $0.rank }.max() ?? 0 }.max() ?? 0
        let scratchKeys = plans.map { $0.T * $0.maxKeys }.max() ?? 0
        let workers = max(1, threads)
        let dropout = traces.contains { $0.dropoutP > 0 }
        let ws = workspace.arena
        let stacked = traces.count > 1
        try ws.reserve(Arena.footprint([N * E, N * E, N * 3 * E, N * E, N * I, N * max(maxRank, 1),
                                        workers * scratchKeys, dropout ? N * max(E, I) : 0, N * max(E, I),
                                        stacked ? N * max(maxRank, 1) : 0, stacked ? N * max(E, I) : 0]))
        let dx = try ws.take(N * E)
        let dln = try ws.take(N * E)
        let dqkv = try ws.take(N * 3 * E)
        let datt = try ws.take(N * E)
        let dfc = try ws.take(N * I)
        let g = try ws.take(N * max(maxRank, 1))
        let dP = try ws.take(workers * scratchKeys)
        let xdrop = try ws.take(dropout ? N * max(E, I) : 0)
        let dxdrop = try ws.take(N * max(E, I))
        let uStack = try ws.take(stacked ? N * max(maxRank, 1) : 0)
        let xStack = try ws.take(stacked ? N * max(E, I) : 0)

        // Per trace: its rows of the stacked buffers, valid (non-padded) positions, LoRA context.
        let W = max(E, I), R = max(maxRank, 1)
        let ctxs = traces.indices.map { i in
            LinearBackwardContext(N: counts[i], adapter: traces[i].adapter, gradients: gradients, full: full,
                                  g: g + offsets[i] * R, xdrop: traces[i].dropoutP > 0 ? xdrop + offsets[i] * W : nil,
                                  dxdrop: dxdrop + offsets[i] * W)
        }
        for (i, trace) in traces.enumerated() {
            let o = offsets[i] * E, n = counts[i]
            // dHidden → copy with padded rows zeroed (nil: the trace's outputs carry no loss of their own, e.g. a
            // shared prompt whose only gradient comes through its keys and values).
            if let d = dHidden[i] { (dln + o).update(from: d, count: n * E) } else { (dln + o).update(repeating: 0, count: n * E) }
            for (k, p) in trace.positions.enumerated() where p < 0 { (dln + o + k * E).update(repeating: 0, count: E) }
            // ln_f
            (dx + o).update(repeating: 0, count: n * E)
            layerNormBackward(x: finals[i].pre, dout: dln + o, mean: finals[i].mean, rstd: finals[i].rstd,
                              weights: weights.lnF, dx: dx + o, rows: n,
                              dGamma: gradients.lnGamma["transformer.ln_f"], dBeta: gradients.lnBeta["transformer.ln_f"])
        }

        // KV gradient buffers for every cache a trace read but did not write (all created before parallel work
        // and before the slots' injections are looked up).
        var segmentDest: [[[KVGradients.Entry?]]] = []
        var ownDest: [[KVGradients.Entry?]] = []
        for trace in traces {
            var sd: [[KVGradients.Entry?]] = []
            var od: [KVGradients.Entry?] = []
            for r in 0..<trace.rows {
                var d: [KVGradients.Entry?] = []
                let segs = trace.segments[r]
                for (si, s) in segs.enumerated() where si < segs.count - 1 {
                    d.append(s.count > 0 ? try kvGradients?.entry(for: s.cache) : nil)
                }
                sd.append(d)
                od.append(trace.start[r] > 0 ? try kvGradients?.entry(for: trace.caches[r]) : nil)
            }
            segmentDest.append(sd)
            ownDest.append(od)
        }
        let inject: [[KVGradients.Entry?]] = traces.map { t in t.caches.map { kvGradients?.existing($0) } }
        let order = Array(traces.indices.reversed())

        for l in stride(from: c.nLayer - 1, through: 0, by: -1) {
            let block = weights.blocks[l]
            let p = "transformer.h.\(l)."
            var bufs: [LayerBuffers] = []
            for trace in traces {
                let b = trace.layers[l]
                guard b.xIn != nil, b.ln1Mean != nil, b.ln1Rstd != nil else { throw .internalError("trace layer \(l) incomplete") }
                if c.arch == .gpt2 && (b.ln2 == nil || b.xMid == nil || b.ln2Mean == nil || b.ln2Rstd == nil) {
                    throw .internalError("trace layer \(l) incomplete")
                }
                bufs.append(b)
            }
            let st = StackedRows(offsets: offsets, counts: counts, buffers: bufs, ctxs: ctxs, g: g, u: uStack, x: xStack,
                                 t: dxdrop)
            // The gradient w.r.t. layer 0's input only feeds the embeddings: skip it unless they are trained.
            let needLn1Grad = l > 0 || gradients.wte != nil || gradients.wpe != nil
            // MLP
            try frozenInputGradient(block.fcOut, dy: dx, ldy: E, dx: dfc, lddx: I, rows: N, accumulate: false)
            try stackedParameterGradients(block.fcOut, x: bufs.map { $0.act }, ldx: I, dy: dx, ldy: E, dx: dfc, lddx: I,
                                          rows: st)
            for i in traces.indices {
                activationBackward(pre: bufs[i].fc, grad: dfc + offsets[i] * I, count: counts[i] * I)
            }
            let needMLPInput = c.arch == .gpt2 || needLn1Grad
            if needMLPInput {
                try frozenInputGradient(block.fcIn, dy: dfc, ldy: I, dx: dln, lddx: E, rows: N, accumulate: false)
            }
            let mlpIn = bufs.map { b in c.arch == .gpt2 ? (b.ln2 ?? b.ln1) : b.ln1 }
            try stackedParameterGradients(block.fcIn, x: mlpIn, ldx: E, dy: dfc, ldy: I, dx: dln, lddx: E,
                                          needDx: needMLPInput, rows: st)
            if c.arch == .gpt2, let ln2w = block.ln2 {
                for i in traces.indices {
                    guard let xMid = bufs[i].xMid, let m2 = bufs[i].ln2Mean, let r2 = bufs[i].ln2Rstd else { continue }
                    layerNormBackward(x: xMid, dout: dln + offsets[i] * E, mean: m2, rstd: r2, weights: ln2w,
                                      dx: dx + offsets[i] * E, rows: counts[i],
                                      dGamma: gradients.lnGamma[p + "ln_2"], dBeta: gradients.lnBeta[p + "ln_2"])
                }
            }
            // attention output projection
            try frozenInputGradient(block.attnOut, dy: dx, ldy: E, dx: datt, lddx: E, rows: N, accumulate: false)
            try stackedParameterGradients(block.attnOut, x: bufs.map { $0.att }, ldx: E, dy: dx, ldy: E, dx: datt,
                                          lddx: E, rows: st)
            // attention, latest trace first: its key/value gradients for earlier slots are complete before the
            // trace that wrote those slots injects them
            for i in order {
                let trace = traces[i]
                let T = plans[i].T
                attentionBackward(layer: l, trace: trace, buffers: bufs[i], datt: datt + offsets[i] * E,
                                  dqkv: dqkv + offsets[i] * 3 * E, dP: dP, segmentDest: segmentDest[i],
                                  ownDest: ownDest[i])
                // gradients that later traces (rows extending these caches) left for the slots written here
                for r in 0..<trace.rows {
                    guard let e = inject[i][r] else { continue }
                    let cache = trace.caches[r]
                    let D = c.headDim
                    for h in 0..<c.nHead {
                        let off = ((l * cache.nHead + h) * cache.capacity) * D
                        for t in 0..<T {
                            let slot = trace.start[r] + t
                            let row = dqkv + (offsets[i] + r * T + t) * 3 * E + h * D
                            Kernels.add(row + E, e.k.base + off + slot * D, count: D)
                            Kernels.add(row + 2 * E, e.v.base + off + slot * D, count: D)
                        }
                    }
                }
                if c.arch == .gptj {
                    rotaryBackward(dqkv + offsets[i] * 3 * E, positions: trace.positions, count: counts[i])
                }
            }
            // qkv projection → d ln_1 (GPT-J: added to the MLP's contribution)
            let acc = c.arch == .gptj
            switch block.qkv {
            case .fused(let lin):
                if needLn1Grad {
                    try frozenInputGradient(lin, dy: dqkv, ldy: 3 * E, dx: dln, lddx: E, rows: N, accumulate: acc)
                }
                try stackedParameterGradients(lin, x: bufs.map { $0.ln1 }, ldx: E, dy: dqkv, ldy: 3 * E, dx: dln,
                                              lddx: E, needDx: needLn1Grad, rows: st)
            case .separate(let q, let k, let v):
                for (j, lin) in [q, k, v].enumerated() {
                    if needLn1Grad {
                        try frozenInputGradient(lin, dy: dqkv + j * E, ldy: 3 * E, dx: dln, lddx: E, rows: N,
                                                accumulate: acc || j > 0)
                    }
                    try stackedParameterGradients(lin, x: bufs.map { $0.ln1 }, ldx: E, dy: dqkv + j * E, ldy: 3 * E,
                                                  dx: dln, lddx: E, needDx: needLn1Grad, rows: st)
                }
            }
            if needLn1Grad || gradients.lnGamma[p + "ln_1"] != nil {
                for i in traces.indices {
                    guard let xIn = bufs[i].xIn, let m1 = bufs[i].ln1Mean, let r1 = bufs[i].ln1Rstd else { continue }
                    layerNormBackward(x: xIn, dout: dln + offsets[i] * E, mean: m1, rstd: r1, weights: block.ln1,
                                      dx: dx + offsets[i] * E, rows: counts[i],
                                      dGamma: gradients.lnGamma[p + "ln_1"], dBeta: gradients.lnBeta[p + "ln_1"])
                }
            }
        }

        // embeddings
        for (i, trace) in traces.enumerated() {
            let tokens = trace.tokens, positions = trace.positions
            let d = dx + offsets[i] * E
            if let dwte = gradients.wte {
                for k in 0..<counts[i] where positions[k] >= 0 {
                    Kernels.add(dwte.pointer + Int(tokens[k]) * E, d + k * E, count: E)
                }
            }
            if let dwpe = gradients.wpe {
                for k in 0..<counts[i] where positions[k] >= 0 {
                    Kernels.add(dwpe.pointer + Int(positions[k]) * E, d + k * E, count: E)
                }
            }
        }
    }

    struct LinearBackwardContext {
        let N: Int
        let adapter: LoRAAdapter?
        let gradients: Gradients
        let full: Bool
        let g: UnsafeMutablePointer<Float>
        let xdrop: UnsafeMutablePointer<Float>?
        let dxdrop: UnsafeMutablePointer<Float>
    }

    /// Scratch and row layout of a lockstep backward over several traces (trace i's rows start at offsets[i]).
    struct StackedRows {
        let offsets: [Int]
        let counts: [Int]
        let buffers: [LayerBuffers]
        let ctxs: [LinearBackwardContext]
        let g: UnsafeMutablePointer<Float>
        let u: UnsafeMutablePointer<Float>
        let x: UnsafeMutablePointer<Float>
        let t: UnsafeMutablePointer<Float>
        var total: Int { (offsets.last ?? 0) + (counts.last ?? 0) }
    }

    /// `parameterGradients` of every trace, for `dy` and `dx` holding all traces' rows (leading dimensions ldy and
    /// lddx) and `x[i]` trace i's input. With one adapter shared by the traces, its products take all rows at once
    /// (the LoRA inputs and outputs are gathered first); otherwise one trace at a time.
    func stackedParameterGradients(_ lin: Linear, x: [UnsafeMutablePointer<Float>], ldx: Int, dy: UnsafePointer<Float>,
                                   ldy: Int, dx: UnsafeMutablePointer<Float>, lddx: Int, needDx: Bool = true,
                                   rows st: StackedRows) throws(GFNError) {
        let n = x.count
        let adapter = st.ctxs.first?.adapter
        guard n > 1, let f = adapter?.factors(for: lin.name), st.ctxs.allSatisfy({ $0.adapter === adapter && !$0.full }) else {
            for i in 0..<n {
                try parameterGradients(lin, x: x[i], ldx: ldx, dy: dy + st.offsets[i] * ldy, ldy: ldy,
                                       dx: dx + st.offsets[i] * lddx, lddx: lddx, needDx: needDx, buffers: st.buffers[i],
                                       ctx: st.ctxs[i])
            }
            return
        }
        let N = st.total, r = f.rank, s = f.scale, nIn = lin.inFeatures, nOut = lin.outFeatures
        for i in 0..<n {
            guard let u = st.buffers[i].loraOutputs[lin.name] else {
                throw .internalError("trace lacks the LoRA output of \(lin.name)")
            }
            (st.u + st.offsets[i] * r).update(from: u, count: st.counts[i] * r)
            let mask = st.buffers[i].loraMasks[lin.name]
            for k in 0..<st.counts[i] {
                let src = x[i] + k * ldx, dst = st.x + (st.offsets[i] + k) * nIn
                if let mask { Kernels.multiply(src, mask + k * nIn, into: dst, count: nIn) } else { dst.update(from: src, count: nIn) }
            }
        }
        // g[N, r] = dy · B ;  dB[out, r] += s · dyᵀ · u ;  dA[r, in] += s · gᵀ · drop(x)
        BLAS.gemm(m: N, n: r, k: nOut, a: dy, lda: ldy, b: f.b.pointer, ldb: r, c: st.g, ldc: r, threads: threads)
        let gradients = st.ctxs[0].gradients
        if let dA = gradients.loraA[lin.name], let dB = gradients.loraB[lin.name] {
            BLAS.gemm(m: nOut, n: r, k: N, a: dy, lda: ldy, transA: true, b: st.u, ldb: r, c: dB.pointer, ldc: r,
                      alpha: s, beta: 1, threads: threads)
            BLAS.gemm(m: r, n: nIn, k: N, a: st.g, lda: r, transA: true, b: st.x, ldb: nIn, c: dA.pointer, ldc: nIn,
                      alpha: s, beta: 1, threads: threads)
        }
        // dx += s · g · A (· mask)
        if !needDx { return }
        BLAS.gemm(m: N, n: nIn, k: r, a: st.g, lda: r, b: f.a.pointer, ldb: nIn, c: st.t, ldc: nIn, alpha: s, threads: threads)
        for i in 0..<n {
            let mask = st.buffers[i].loraMasks[lin.name]
            for k in 0..<st.counts[i] {
                let row = st.offsets[i] + k
                if let mask {
                    Kernels.addProduct(dx + row * lddx, st.t + row * nIn, mask + k * nIn, count: nIn)
                } else {
                    Kernels.add(dx + row * lddx, st.t + row * nIn, count: nIn)
                }
            }
        }
    }

    /// The frozen part of a linear layer's input gradient: dx (= or +=) dy·Wᵀ over `rows` rows.
    func frozenInputGradient(_ lin: Linear, dy: UnsafePointer<Float>, ldy: Int, dx: UnsafeMutablePointer<Float>,
                             lddx: Int, rows: Int, accumulate: Bool) throws(GFNError) {
        try lin.matrix.multiplyTransposed(dy: dy, lddy: ldy, m: rows, dx: dx, lddx: lddx, accumulate: accumulate,
                                          threads: threads)
    }

    /// Backward of y = x·W + b (+ scale·(drop(x)·Aᵀ)·Bᵀ): dx (= or +=) dy·Wᵀ + LoRA branch; weight gradients only
    /// for trainable tensors.
    func linearBackward(_ lin: Linear, x: UnsafePointer<Float>, ldx: Int, dy: UnsafePointer<Float>, ldy: Int,
                        dx: UnsafeMutablePointer<Float>, lddx: Int, accumulate: Bool, needDx: Bool = true,
                        buffers: LayerBuffers, ctx: LinearBackwardContext) throws(GFNError) {
        if needDx {
            try frozenInputGradient(lin, dy: dy, ldy: ldy, dx: dx, lddx: lddx, rows: ctx.N, accumulate: accumulate)
        }
        try parameterGradients(lin, x: x, ldx: ldx, dy: dy, ldy: ldy, dx: dx, lddx: lddx, needDx: needDx,
                               buffers: buffers, ctx: ctx)
    }

    /// The rest of a linear layer's backward after `frozenInputGradient`: weight gradients of trainable tensors,
    /// LoRA factor gradients, and the LoRA branch's share of dx (added, when `needDx`).
    func parameterGradients(_ lin: Linear, x: UnsafePointer<Float>, ldx: Int, dy: UnsafePointer<Float>, ldy: Int,
                            dx: UnsafeMutablePointer<Float>, lddx: Int, needDx: Bool = true,
                            buffers: LayerBuffers, ctx: LinearBackwardContext) throws(GFNError) {
        let N = ctx.N, nIn = lin.inFeatures, nOut = lin.outFeatures
        if ctx.full {
            if let dW = ctx.gradients.linearW[lin.name] {
                BLAS.gemm(m: nIn, n: nOut, k: N, a: x, lda: ldx, transA: true, b: dy, ldb: ldy,
                          c: dW.pointer, ldc: nOut, beta: 1, threads: threads)
            }
            if let dB = ctx.gradients.linearBias[lin.name] {
                for i in 0..<N { Kernels.add(dB.pointer, dy + i * ldy, count: nOut) }
            }
        }
        guard let f = ctx.adapter?.factors(for: lin.name) else { return }
        guard let u = buffers.loraOutputs[lin.name] else { throw .internalError("trace lacks the LoRA output of \(lin.name)") }
        let r = f.rank, s = f.scale
        // g[N, r] = dy · B
        BLAS.gemm(m: N, n: r, k: nOut, a: dy, lda: ldy, b: f.b.pointer, ldb: r, c: ctx.g, ldc: r, threads: threads)
        var xa = x, lda = ldx
        let mask = buffers.loraMasks[lin.name]
        if let mask, let xd = ctx.xdrop {
            for i in 0..<N { Kernels.multiply(x + i * ldx, mask + i * nIn, into: xd + i * nIn, count: nIn) }
            xa = UnsafePointer(xd); lda = nIn
        }
        if let dA = ctx.gradients.loraA[lin.name], let dB = ctx.gradients.loraB[lin.name] {
            // dB[out, r] += s · dyᵀ · u ;  dA[r, in] += s · gᵀ · drop(x)
            BLAS.gemm(m: nOut, n: r, k: N, a: dy, lda: ldy, transA: true, b: u, ldb: r, c: dB.pointer, ldc: r,
                      alpha: s, beta: 1, threads: threads)
            BLAS.gemm(m: r, n: nIn, k: N, a: ctx.g, lda: r, transA: true, b: xa, ldb: lda, c: dA.pointer, ldc: nIn,
                      alpha: s, beta: 1, threads: threads)
        }
        // dx += s · g · A (· mask)
        if !needDx { return }
        if let mask {
            let t = ctx.dxdrop
            BLAS.gemm(m: N, n: nIn, k: r, a: ctx.g, lda: r, b: f.a.pointer, ldb: nIn, c: t, ldc: nIn, alpha: s, threads: threads)
            for i in 0..<N { Kernels.addProduct(dx + i * lddx, t + i * nIn, mask + i * nIn, count: nIn) }
        } else {
            BLAS.gemm(m: N, n: nIn, k: r, a: ctx.g, lda: r, b: f.a.pointer, ldb: nIn, c: dx, ldc: lddx, alpha: s, beta: 1, threads: threads)
        }
    }

    /// LayerNorm backward: dx += rstd·(dn − mean(dn) − n·mean(dn·n)) with n the normalised input and dn = dout·γ;
    /// dγ += Σ dout·n, dβ += Σ dout when given.
    func layerNormBackward(x: UnsafePointer<Float>, dout: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                           rstd: UnsafePointer<Float>, weights w: LayerNormWeights, dx: UnsafeMutablePointer<Float>,
                           rows: Int, dGamma: Tensor?, dBeta: Tensor?) {
        let E = config.nEmbd
        let gamma = w.gamma.pointer
        let paramGrads = dGamma != nil || dBeta != nil
        let t = (!paramGrads && rows * E >= 1 << 15) ? threads : 1
        Parallel.chunks(rows, threads: t) { _, range in
            for i in range {
                Kernels.layerNormBackwardRow(x: x + i * E, dout: dout + i * E, mean: mean[i], rstd: rstd[i],
                                             gamma: gamma, dx: dx + i * E, n: E,
                                             dGamma: dGamma?.pointer, dBeta: dBeta?.pointer)
            }
        }
    }

    /// d(pre-activation) = d(activation) · act′(pre), in place in `grad`.
    func activationBackward(pre: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) {
        let act = config.activation
        let chunk = 1 << 14
        let t = count >= 1 << 16 ? threads : 1
        Parallel.chunks((count + chunk - 1) / chunk, threads: t) { _, range in
            let lo = range.lowerBound * chunk, hi = min(count, range.upperBound * chunk)
            switch act {
            case .geluNew: Kernels.geluNewBackward(pre + lo, grad + lo, count: hi - lo)
            case .gelu: Kernels.geluErfBackward(pre + lo, grad + lo, count: hi - lo)
            }
        }
    }

    /// Inverse rotation of the q and k gradients (the rotary map is orthogonal: its transpose rotates by −θ).
    func rotaryBackward(_ dqkv: UnsafeMutablePointer<Float>, positions: [Int32], count: Int) {
        let c = config
        let E = c.nEmbd, H = c.nHead, D = c.headDim, half = c.rotaryDim / 2
        rotaryCos.withUnsafeBufferPointer { cosB in
            rotarySin.withUnsafeBufferPointer { sinB in
                guard let cosT = cosB.baseAddress, let sinT = sinB.baseAddress else { return }
                for i in 0..<count {
                    let pos = Int(positions[i])
                    if pos < 0 { continue }
                    let cs = cosT + pos * half, sn = sinT + pos * half
                    for part in 0..<2 {
                        let base = dqkv + i * 3 * E + part * E
                        for h in 0..<H {
                            let v = base + h * D
                            for j in 0..<half {
                                let d1 = v[2 * j], d2 = v[2 * j + 1]
                                v[2 * j] = d1 * cs[j] + d2 * sn[j]
                                v[2 * j + 1] = d2 * cs[j] - d1 * sn[j]
                            }
                        }
                    }
                }
            }
        }
    }

    /// Attention backward for one layer: from d(attention output) [N, E] to dqkv [N, 3E] (this chunk's q, k, v,
    /// post-rotary), plus key/value gradients for prefix caches and earlier own slots. Parallel over heads, so
    /// every destination (a head's slice of a cache gradient, a head's columns of dqkv) has one writer.
    func attentionBackward(layer l: Int, trace: ForwardTrace, buffers b: LayerBuffers,
                           datt: UnsafePointer<Float>, dqkv: UnsafeMutablePointer<Float>,
                           dP: UnsafeMutablePointer<Float>, segmentDest: [[KVGradients.Entry?]],
                           ownDest: [KVGradients.Entry?]) {
        let c = config
        let E = c.nEmbd, H = c.nHead, D = c.headDim
        let scale = 1 / Float(D).squareRoot()
        guard let plan = trace.plan else { return }
        let rows = plan.rows, T = plan.T
        let maxKeys = plan.maxKeys
        let qkv = b.qkv
        let t = threads
        Parallel.chunks(H, threads: t) { worker, range in
            let scratch = dP + worker * T * maxKeys
            for h in range {
                for r in 0..<rows {
                    let segs = trace.segments[r]
                    let K = plan.keys[r]
                    let P = b.probabilities(row: r, head: h, worker: 0)
                    let dO = datt + r * T * E + h * D
                    let q = qkv + r * T * 3 * E + h * D
                    let dq = dqkv + r * T * 3 * E + h * D
                    let dkChunk = dq + E, dvChunk = dq + 2 * E
                    // dP[T, K] = dO · Vᵀ
                    var col = 0
                    for s in segs {
                        if s.count > 0 {
                            BLAS.gemm(m: T, n: s.count, k: D, a: dO, lda: E, b: s.cache.vPointer(layer: l, head: h),
                                      ldb: D, transB: true, c: scratch + col, ldc: K)
                        }
                        col += s.count
                    }
                    // Parts of the key axis and where their dK/dV go.
                    var parts: [(col: Int, count: Int, dk: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?, ld: Int, beta: Float)] = []
                    col = 0
                    for (si, s) in segs.enumerated() {
                        if si < segs.count - 1 {
                            if s.count > 0, let e = segmentDest[r][si] {
                                let off = ((l * s.cache.nHead + h) * s.cache.capacity) * D
                                parts.append((col, s.count, e.k.base + off, e.v.base + off, D, 1))
                            }
                        } else {
                            let st = trace.start[r]
                            if st > 0, let e = ownDest[r] {
                                let off = ((l * s.cache.nHead + h) * s.cache.capacity) * D
                                parts.append((col, st, e.k.base + off, e.v.base + off, D, 1))
                            }
                            parts.append((col + st, T, dkChunk, dvChunk, 3 * E, 0))
                        }
                        col += s.count
                    }
                    // dV[part] (+)= Pᵀ · dO
                    for part in parts {
                        if let dv = part.dv {
                            BLAS.gemm(m: part.count, n: D, k: T, a: P + part.col, lda: K, transA: true, b: dO, ldb: E,
                                      c: dv, ldc: part.ld, beta: part.beta)
                        }
                    }
                    // dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale
                    for tt in 0..<T {
                        Kernels.softmaxBackwardRow(p: P + tt * K, dp: scratch + tt * K, n: K, scale: scale)
                    }
                    // dQ = dS · K
                    col = 0
                    var first = true
                    for s in segs {
                        if s.count > 0 {
                            BLAS.gemm(m: T, n: D, k: s.count, a: scratch + col, lda: K,
                                      b: s.cache.kPointer(layer: l, head: h), ldb: D, c: dq, ldc: 3 * E,
                                      beta: first ? 0 : 1)
                            first = false
                        }
                        col += s.count
                    }
                    // dK[part] (+)= dSᵀ · Q
                    for part in parts {
                        if let dk = part.dk {
                            BLAS.gemm(m: part.count, n: D, k: T, a: scratch + part.col, lda: K, transA: true, b: q,
                                      ldb: 3 * E, c: dk, ldc: part.ld, beta: part.beta)
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Backward kernels

extension Kernels {
    /// out = a ⊙ b (count elements).
    static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                         count n: Int) {
        var j = 0
        let n16 = n & ~15
        while j < n16 { store(load(a + j) * load(b + j), out + j); j += 16 }
        while j < n { out[j] = a[j] * b[j]; j += 1 }
    }

    /// y += a ⊙ b (count elements).
    static func addProduct(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           count n: Int) {
        var j = 0
        let n16 = n & ~15
        while j < n16 { store(load(y + j) + load(a + j) * load(b + j), y + j); j += 16 }
        while j < n { y[j] += a[j] * b[j]; j += 1 }
    }

    /// One row of LayerNorm backward (see `Transformer.layerNormBackward`).
    @inline(__always)
    static func layerNormBackwardRow(x: UnsafePointer<Float>, dout: UnsafePointer<Float>, mean: Float, rstd: Float,
                                     gamma: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, n: Int,
                                     dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?) {
        let n16 = n & ~15
        let mv = V16(repeating: mean), rv = V16(repeating: rstd)
        var a1 = V16(), a2 = V16()
        var j = 0
        while j < n16 {
            let nrm = (load(x + j) - mv) * rv
            let dn = load(dout + j) * load(gamma + j)
            a1 += dn
            a2 += dn * nrm
            j += 16
        }
        var s1 = a1.sum(), s2 = a2.sum()
        while j < n {
            let nrm = (x[j] - mean) * rstd
            let dn = dout[j] * gamma[j]
            s1 += dn; s2 += dn * nrm
            j += 1
        }
        let m1 = s1 / Float(n), m2 = s2 / Float(n)
        let m1v = V16(repeating: m1), m2v = V16(repeating: m2)
        j = 0
        while j < n16 {
            let nrm = (load(x + j) - mv) * rv
            let d = load(dout + j)
            let dn = d * load(gamma + j)
            store(load(dx + j) + rv * (dn - m1v - nrm * m2v), dx + j)
            if let dGamma { store(load(dGamma + j) + d * nrm, dGamma + j) }
            if let dBeta { store(load(dBeta + j) + d, dBeta + j) }
            j += 16
        }
        while j < n {
            let nrm = (x[j] - mean) * rstd
            let d = dout[j]
            dx[j] += rstd * (d * gamma[j] - m1 - nrm * m2)
            dGamma?[j] += d * nrm
            dBeta?[j] += d
            j += 1
        }
    }

    /// Softmax backward of one row, in place: dp ← scale · p ⊙ (dp − Σ p·dp).
    @inline(__always)
    static func softmaxBackwardRow(p: UnsafePointer<Float>, dp: UnsafeMutablePointer<Float>, n: Int, scale: Float) {
        let d = dot(p, dp, n: n)
        let dv = V16(repeating: d), sv = V16(repeating: scale)
        let n16 = n & ~15
        var j = 0
        while j < n16 { store(sv * load(p + j) * (load(dp + j) - dv), dp + j); j += 16 }
        while j < n { dp[j] = scale * p[j] * (dp[j] - d); j += 1 }
    }

    /// grad ← grad · gelu_new′(x), in place.
    public static func geluNewBackward(_ x: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.7978845608028654
        let k: Float = 0.044715
        let n16 = count & ~15
        var j = 0
        while j < n16 {
            let v = load(x + j)
            let v2 = v * v
            let u = c * (v + k * v2 * v)
            let e = exp16(2 * u)
            let th = 1 - 2 / (e + 1)
            let one = V16(repeating: 1), half = V16(repeating: 0.5)
            let du: V16 = (one + (3 * k) * v2) * c
            let sech2: V16 = one - th * th
            let d: V16 = half * (one + th) + half * v * sech2 * du
            store(load(grad + j) * d, grad + j)
            j += 16
        }
        while j < count {
            let v = x[j]
            let th = tanhf(c * (v + k * v * v * v))
            grad[j] *= 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * k * v * v)
            j += 1
        }
    }

    /// grad ← grad · gelu′(x) for the exact GELU: Φ(x) + x·φ(x).
    public static func geluErfBackward(_ x: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>, count: Int) {
        for j in 0..<count {
            let v = x[j]
            let cdf = 0.5 * (1 + erff(v * 0.7071067811865476))
            let pdf = expf(-0.5 * v * v) * 0.3989422804014327
            grad[j] *= cdf + v * pdf
        }
    }
}
