/// The output head restricted to chosen positions: log-softmax over the vocabulary at a few hidden rows (a
/// 50257-wide vocabulary makes logits for every position expensive), and the backward pass from gradients of
/// those log-probabilities to the hidden states (and, in full-parameter mode, to the head / tied embedding).
/// Owned by one caller; results are valid until the next `forward`.
public final class TokenLogProbs: @unchecked Sendable {
    public let transformer: Transformer
    let arena: Arena
    public private(set) var rows: [Int] = []
    private var hiddenCount = 0
    private var hs: UnsafeMutablePointer<Float>?
    private var lp: UnsafeMutablePointer<Float>?
    private var dhs: UnsafeMutablePointer<Float>?
    private var consumed = false
    /// The head's LoRA branch of the last forward: factors, its input x = drop(h) [S, E] (h itself without
    /// dropout), u = x·Aᵀ [S, r], the dropout mask [S, E] (nil: none), and scratch g [S, r], t [S, E] for backward.
    private var headLoRA: (f: LoRAFactors, x: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                           mask: UnsafeMutablePointer<Float>?, g: UnsafeMutablePointer<Float>,
                           t: UnsafeMutablePointer<Float>)?
    /// The generator for LoRA dropout masks on the head's branch input (training mode, as `ForwardTrace`): when
    /// set and the adapter's dropout is positive, forwards drop and advance it; nil = no dropout.
    public var dropoutRNG: RNG?

    public init(transformer: Transformer) throws(GFNError) {
        self.transformer = transformer
        arena = try Arena(capacity: 0)
    }

    /// Computes log p(· | row) = log_softmax(logits + logitBias) for every index in `rows` (indices into
    /// `hidden`, a [hiddenCount, n_embd] block, e.g. a traced forward's output). `logitBias` ([V], optional) is
    /// added before the softmax: −∞ for disallowed tokens, penalties; it has no gradient. With an `adapter` that
    /// updates `lm_head`, the logits include its branch (and `backward` its gradients). Returns [rows.count, V].
    @discardableResult
    public func forward(hidden: UnsafePointer<Float>, hiddenCount: Int, rows: [Int],
                        logitBias: UnsafePointer<Float>? = nil,
                        adapter: LoRAAdapter? = nil) throws(GFNError) -> UnsafeMutablePointer<Float> {
        let c = transformer.config
        let E = c.nEmbd, V = c.vocabSize, S = rows.count
        for r in rows where r < 0 || r >= hiddenCount {
            throw .outOfRange("hidden row \(r) is outside 0..<\(hiddenCount)")
        }
        let f = adapter?.headFactors
        if let f { try transformer.checkHeadFactors(f) }
        let r = f?.rank ?? 0
        let p = (f != nil && dropoutRNG != nil) ? (adapter?.dropout ?? 0) : 0
        let dropE = p > 0 ? S * E : 0
        let branchE = f != nil ? S * E : 0
        try arena.reserve(Arena.footprint([S * E, S * V, S * E, S * r, S * r, branchE, dropE, dropE]))
        let hs = try arena.take(S * E), lp = try arena.take(S * V), dhs = try arena.take(S * E)
        for (i, r) in rows.enumerated() { (hs + i * E).update(from: hidden + r * E, count: E) }
        headLoRA = nil
        if S > 0 { try transformer.logits(hidden: hs, count: S, adapter: nil, into: lp) }
        if let f, S > 0 {
            let u = try arena.take(S * r), g = try arena.take(S * r), t = try arena.take(S * E)
            var x = UnsafePointer(hs)
            var mask: UnsafeMutablePointer<Float>? = nil
            if p > 0 {
                // inverted dropout on the branch input, as PEFT's lora_dropout (kept values scaled by 1/(1−p))
                let m = try arena.take(S * E), xd = try arena.take(S * E)
                var rng = dropoutRNG ?? RNG(seed: 0)
                ForwardTrace.dropout(x: hs, ldx: E, m: S, n: E, p: p, rng: &rng, mask: m, out: xd)
                dropoutRNG = rng
                mask = m; x = UnsafePointer(xd)
            }
            transformer.addHeadUpdate(f, x: x, count: S, u: u, out: lp)
            headLoRA = (f, x, u, mask, g, t)
        }
        let t = S * V >= 1 << 16 ? transformer.threads : 1
        Parallel.chunks(S, threads: t) { _, range in
            for i in range {
                let row = lp + i * V
                if let logitBias { Kernels.add(row, logitBias, count: V) }
                let lse = Kernels.logSumExpRow(row, n: V)
                Kernels.addScalar(row, -lse, count: V)
            }
        }
        self.rows = rows
        self.hiddenCount = hiddenCount
        self.hs = hs; self.lp = lp; self.dhs = dhs
        consumed = false
        return lp
    }

    /// The log-probabilities [rows.count, V] of the last forward (nil after a backward, which reuses the memory).
    public var logProbs: UnsafePointer<Float>? { consumed ? nil : lp.map { UnsafePointer($0) } }

    /// log p(token) at the i-th chosen row of the last forward.
    public func logProb(_ i: Int, _ token: Int32) throws(GFNError) -> Float {
        let V = transformer.config.vocabSize
        guard let lp, !consumed else { throw .state("log-probabilities are gone (no forward, or after backward)") }
        guard i >= 0 && i < rows.count, token >= 0 && Int(token) < V else {
            throw .outOfRange("log-prob index (\(i), \(token)) outside (\(rows.count), \(V))")
        }
        return lp[i * V + Int(token)]
    }

    /// Backward from sparse gradients dL/d log p(token | rows[index]) to `dHidden` ([hiddenCount, n_embd],
    /// overwritten: zero at rows not chosen). With full-parameter `gradients`, the head's (or the tied
    /// embedding's) gradient is added too. Consumes the forward's log-probabilities.
    public func backward(entries: [(index: Int, token: Int32, grad: Float)], dHidden: UnsafeMutablePointer<Float>,
                         gradients: Gradients?) throws(GFNError) {
        let dz = try logitGradients(entries: entries)
        try headBackward(dLogits: dz, dHidden: dHidden, gradients: gradients)
    }

    /// `backward(entries:…)` of several heads on the same transformer at once: their logit gradients go through
    /// the output matrix in one product (one packing of the vocabulary-sized matrix instead of one per head).
    /// `scratch` holds the stacked rows.
    static func backward(heads: [TokenLogProbs], entries: [[(index: Int, token: Int32, grad: Float)]],
                         dHidden: [UnsafeMutablePointer<Float>], gradients: Gradients?,
                         scratch: Arena) throws(GFNError) {
        guard heads.count == entries.count, heads.count == dHidden.count else {
            throw .invalidArgument("\(heads.count) heads, \(entries.count) gradient lists, \(dHidden.count) outputs")
        }
        guard let tf = heads.first?.transformer else { return }
        guard heads.allSatisfy({ $0.transformer === tf }) else { throw .invalidArgument("heads of different transformers") }
        let E = tf.config.nEmbd, V = tf.config.vocabSize
        var dz: [UnsafeMutablePointer<Float>] = []
        for (h, e) in zip(heads, entries) {
            try h.checkGradients(gradients)
            dz.append(try h.logitGradients(entries: e))
        }
        let counts = heads.map { $0.rows.count }
        let S = counts.reduce(0, +)
        var full = gradients?.wte != nil
        if case .linear(let lin) = tf.weights.head, gradients?.linearW[lin.name] != nil { full = true }
        try scratch.reserve(Arena.footprint([S * V, S * E, full ? S * E : 0]))
        let dzAll = try scratch.take(S * V), dhAll = try scratch.take(S * E), hsAll = try scratch.take(full ? S * E : 0)
        var at = 0
        for (i, h) in heads.enumerated() where counts[i] > 0 {
            (dzAll + at * V).update(from: dz[i], count: counts[i] * V)
            if full, let hs = h.hs { (hsAll + at * E).update(from: hs, count: counts[i] * E) }
            at += counts[i]
        }
        try tf.headInputGradient(dLogits: dzAll, hidden: UnsafePointer(hsAll), rows: S, dHidden: dhAll, gradients: gradients)
        at = 0
        for (i, h) in heads.enumerated() {
            if counts[i] > 0, let dhs = h.dhs { dhs.update(from: dhAll + at * E, count: counts[i] * E) }
            try h.finishBackward(dLogits: dz[i], dHidden: dHidden[i], gradients: gradients)
            at += counts[i]
        }
    }

    /// dL/d logits (in place of the log-probabilities) from sparse gradients of log-probabilities.
    private func logitGradients(entries: [(index: Int, token: Int32, grad: Float)]) throws(GFNError) -> UnsafeMutablePointer<Float> {
        let V = transformer.config.vocabSize
        guard let lp, !consumed else { throw .state("TokenLogProbs.backward without a forward") }
        let S = rows.count
        var sums = [Float](repeating: 0, count: S)
        for e in entries {
            guard e.index >= 0 && e.index < S, e.token >= 0 && Int(e.token) < V else {
                throw .outOfRange("gradient entry (\(e.index), \(e.token)) outside (\(S), \(V))")
            }
            sums[e.index] += e.grad
        }
        // dz = g_onehot − p · Σg
        let t = S * V >= 1 << 16 ? transformer.threads : 1
        sums.withUnsafeBufferPointer { sb in
            guard let sp = sb.baseAddress else { return }
            Parallel.chunks(S, threads: t) { _, range in
                for i in range { Kernels.expScaled(lp + i * V, -sp[i], count: V) }
            }
        }
        for e in entries { lp[e.index * V + Int(e.token)] += e.grad }
        consumed = true
        return lp
    }

    /// Backward from dense gradients dL/d log p, [rows.count, V].
    public func backward(dLogProbs: UnsafePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
                         gradients: Gradients?) throws(GFNError) {
        let V = transformer.config.vocabSize
        guard let lp, !consumed else { throw .state("TokenLogProbs.backward without a forward") }
        let S = rows.count
        for i in 0..<S {
            let g = dLogProbs + i * V, row = lp + i * V
            let s = Kernels.sum(g, n: V)
            Kernels.expScaled(row, -s, count: V)
            Kernels.add(row, g, count: V)
        }
        consumed = true
        try headBackward(dLogits: lp, dHidden: dHidden, gradients: gradients)
    }

    private func headBackward(dLogits dz: UnsafeMutablePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
                              gradients: Gradients?) throws(GFNError) {
        guard let hs, let dhs else { throw .state("TokenLogProbs.backward without a forward") }
        try checkGradients(gradients)
        try transformer.headInputGradient(dLogits: dz, hidden: UnsafePointer(hs), rows: rows.count, dHidden: dhs,
                                          gradients: gradients)
        try finishBackward(dLogits: dz, dHidden: dHidden, gradients: gradients)
    }

    private func checkGradients(_ gradients: Gradients?) throws(GFNError) {
        if let m = gradients?.model, m !== transformer.weights {
            throw .state("full-parameter gradients belong to other weights than this head's transformer")
        }
    }

    /// After the frozen head's share is in `dhs`: the LoRA branch, then `dHidden` (zero at rows not chosen).
    private func finishBackward(dLogits dz: UnsafeMutablePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
                                gradients: Gradients?) throws(GFNError) {
        guard let dhs else { throw .state("TokenLogProbs.backward without a forward") }
        let E = transformer.config.nEmbd
        dHidden.update(repeating: 0, count: hiddenCount * E)
        if rows.isEmpty { return }
        if let branch = headLoRA {
            try loraBackward(branch, dz: dz, gradients: gradients)
        }
        for (i, r) in rows.enumerated() { Kernels.add(dHidden + r * E, dhs + i * E, count: E) }
    }

    /// The head's LoRA branch: g = dz·B [S, r]; dB += s·dzᵀ·u; dA += s·gᵀ·x; dh += s·(g·A)⊙mask.
    private func loraBackward(_ br: (f: LoRAFactors, x: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                                     mask: UnsafeMutablePointer<Float>?, g: UnsafeMutablePointer<Float>,
                                     t: UnsafeMutablePointer<Float>),
                              dz: UnsafeMutablePointer<Float>, gradients: Gradients?) throws(GFNError) {
        guard let dhs else { return }
        let c = transformer.config
        let E = c.nEmbd, V = c.vocabSize, S = rows.count
        let f = br.f, r = f.rank, s = f.scale, g = br.g, t = br.t
        let module = LoRAAdapter.headModule
        if let a = gradients?.adapter, a.headFactors?.a.pointer != f.a.pointer {
            throw .state("LoRA gradients belong to another adapter than the one of this head's forward")
        }
        BLAS.gemm(m: S, n: r, k: V, a: dz, lda: V, b: f.b.pointer, ldb: r, c: g, ldc: r, threads: transformer.threads)
        if let dA = gradients?.loraA[module], let dB = gradients?.loraB[module] {
            BLAS.gemm(m: V, n: r, k: S, a: dz, lda: V, transA: true, b: br.u, ldb: r, c: dB.pointer, ldc: r,
                      alpha: s, beta: 1, threads: transformer.threads)
            BLAS.gemm(m: r, n: E, k: S, a: g, lda: r, transA: true, b: br.x, ldb: E, c: dA.pointer, ldc: E,
                      alpha: s, beta: 1, threads: transformer.threads)
        }
        BLAS.gemm(m: S, n: E, k: r, a: g, lda: r, b: f.a.pointer, ldb: E, c: t, ldc: E, alpha: s, threads: transformer.threads)
        if let mask = br.mask { for i in 0..<(S * E) { t[i] *= mask[i] } }
        Kernels.add(dhs, t, count: S * E)
    }
}

extension Transformer {
    /// The output head's backward without its LoRA branch: dHidden = dLogits · W_head ([rows, V] → [rows, E]),
    /// plus the head's (or tied embedding's) full-parameter gradients, which need `hidden` (the head's input).
    func headInputGradient(dLogits dz: UnsafePointer<Float>, hidden hs: UnsafePointer<Float>, rows S: Int,
                           dHidden dhs: UnsafeMutablePointer<Float>, gradients: Gradients?) throws(GFNError) {
        let E = config.nEmbd, V = config.vocabSize
        if S == 0 { return }
        switch weights.head {
        case .tied:
            try weights.embedding.multiplyTransposed(dy: dz, lddy: V, m: S, dx: dhs, lddx: E, accumulate: false,
                                                     threads: threads)
            if let dwte = gradients?.wte {
                BLAS.gemm(m: V, n: E, k: S, a: dz, lda: V, transA: true, b: hs, ldb: E, c: dwte.pointer, ldc: E, beta: 1, threads: threads)
            }
        case .linear(let lin):
            try lin.matrix.multiplyTransposed(dy: dz, lddy: V, m: S, dx: dhs, lddx: E, accumulate: false,
                                              threads: threads)
            if let dW = gradients?.linearW[lin.name] {
                BLAS.gemm(m: E, n: V, k: S, a: hs, lda: E, transA: true, b: dz, ldb: V, c: dW.pointer, ldc: V, beta: 1, threads: threads)
            }
            if let dB = gradients?.linearBias[lin.name] {
                for i in 0..<S { Kernels.add(dB.pointer, dz + i * V, count: V) }
            }
        }
    }
}

extension Kernels {
    /// log Σ exp(x) of one row: NaN if any value is NaN, +∞ if any is +∞, −∞ if all are −∞. The maximum pass
    /// keeps NaN detection in a vector mask (no per-vector branch, unlike `Kernels.max`).
    static func logSumExpRow(_ p: UnsafePointer<Float>, n: Int) -> Float {
        let n16 = n & ~15
        var acc = V16(repeating: -.infinity)
        var nanMask = SIMDMask<SIMD16<Int32>>(repeating: false)
        var j = 0
        while j < n16 {
            let v = load(p + j)
            nanMask = nanMask .| (v .!= v)
            acc = acc.replacing(with: v, where: v .> acc)
            j += 16
        }
        var m = acc.max()
        var nan = any(nanMask)
        while j < n { let v = p[j]; if v.isNaN { nan = true } else if v > m { m = v }; j += 1 }
        if nan { return .nan }
        if m == -.infinity || m == .infinity { return m }
        let mv = V16(repeating: m)
        var sacc = V16()
        j = 0
        while j < n16 { sacc += exp16(load(p + j) - mv); j += 16 }
        var s = sacc.sum()
        while j < n { s += exp1(p[j] - m); j += 1 }
        return m + logf(s)
    }

    /// y += a (count elements).
    static func addScalar(_ y: UnsafeMutablePointer<Float>, _ a: Float, count: Int) {
        let n16 = count & ~15
        let av = V16(repeating: a)
        var j = 0
        while j < n16 { store(load(y + j) + av, y + j); j += 16 }
        while j < count { y[j] += a; j += 1 }
    }

    /// y ← a · e^y (count elements).
    static func expScaled(_ y: UnsafeMutablePointer<Float>, _ a: Float, count: Int) {
        let n16 = count & ~15
        let av = V16(repeating: a)
        var j = 0
        while j < n16 { store(av * exp16(load(y + j)), y + j); j += 16 }
        while j < count { y[j] = a * exp1(y[j]); j += 1 }
    }
}
