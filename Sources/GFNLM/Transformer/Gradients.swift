/// Gradient storage for training: parameter gradients (full or LoRA), the trainable copy of a model, and the
/// gradients flowing into KV caches of earlier chunks.

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
