/// Settings of a scoring call.
public struct ScoreParams: Sendable, Equatable {
    /// Tokens whose probability of ending the continuation is reported after every prefix.
    public var stopTokens: [Int32] = []
    /// Policy adjustment (soft / hard masks, biases) applied to the continuation's distributions.
    public var adjustment = LogitAdjustment()

    public init(stopTokens: [Int32] = [], adjustment: LogitAdjustment = LogitAdjustment()) {
        self.stopTokens = stopTokens
        self.adjustment = adjustment
    }
}

/// log-probabilities of a continuation given a context.
public struct ScoreResult: Sendable, Equatable {
    /// Σ_t log p(c_t | context, c_<t).
    public var total: Double
    /// log p(c_t | context, c_<t) for every continuation token.
    public var tokenLogProbs: [Float]
    /// For every prefix length i = 0…n: log p(stop_j | context, c_<i), laid out [n + 1][nStop].
    public var stopLogProbs: [Float]
    /// For every prefix length i = 0…n: log Σ_j p(stop_j | context, c_<i) (−∞ without stop tokens).
    public var stopLogProbAny: [Float]
}

extension InferenceContext {
    /// Scores continuations given contexts in one pass per distinct context: the context runs once, every
    /// continuation that shares it decodes in one batch, and the stop probabilities of every prefix come from the
    /// same pass.
    public func score(_ pairs: [(context: [Int32], continuation: [Int32])], params: ScoreParams = ScoreParams(),
                      adapter: LoRAAdapter? = nil) throws(GFNError) -> [ScoreResult] {
        let c = model.config
        let V = c.vocabSize, E = c.nEmbd
        guard !pairs.isEmpty else { return [] }
        for (i, p) in pairs.enumerated() {
            try checkPrompt(p.context, index: i)
            guard p.context.count + p.continuation.count <= c.nPositions else {
                throw .outOfRange("pair \(i): \(p.context.count) + \(p.continuation.count) tokens exceed the model's \(c.nPositions) positions")
            }
            for t in p.continuation where t < 0 || Int(t) >= V {
                throw .outOfRange("continuation \(i) contains token id \(t), outside the vocabulary (0..<\(V))")
            }
        }
        for s in params.stopTokens where s < 0 || Int(s) >= V {
            throw .outOfRange("stop token \(s) is outside the vocabulary (0..<\(V))")
        }
        let bias = try params.adjustment.dense(vocab: V, alwaysAllowed: params.stopTokens)
        let chooser = choosers(1)[0]

        // Distinct contexts, in order of first appearance.
        var ctxIndex: [[Int32]: Int] = [:]
        var contexts: [[Int32]] = []
        for p in pairs where ctxIndex[p.context] == nil {
            ctxIndex[p.context] = contexts.count
            contexts.append(p.context)
        }
        /// Reads one distribution: returns (log p(token) or nil, stop log-probs).
        func read(_ logits: UnsafePointer<Float>, token: Int32?) -> (Float?, [Float], Float) {
            let lse = bias.withOptionalBuffer { chooser.policyLogits(logits, bias: $0) }
            let stops = params.stopTokens.map { chooser.work[Int($0)] - lse }
            let any = stops.isEmpty ? -Float.infinity : Kernels.logSumExp(stops, n: stops.count)
            return (token.map { chooser.work[Int($0)] - lse }, stops, any)
        }
        // Contexts are taken `chunkRows` at a time (bounding the caches and logits held at once). For each chunk:
        // 1. every context once, contexts of equal length in one forward: its cache (the prefix of its
        //    continuations) and its last logits (the distribution before c_0);
        // 2. every non-empty continuation of those contexts, each on its context's cache, batched (right padding
        //    with id 0) `chunkRows` rows at a time, the head over up to `headRows` positions per product.
        let chunkRows = 64, headRows = 256
        var members = [[Int]](repeating: [], count: contexts.count)
        for (m, p) in pairs.enumerated() { if let ci = ctxIndex[p.context] { members[ci].append(m) } }
        var results = [ScoreResult?](repeating: nil, count: pairs.count)
        var first = [Float](repeating: 0, count: min(contexts.count, chunkRows) * V)
        var headLogits = [Float]()
        var c0 = 0
        while c0 < contexts.count {
            let chunk = c0..<min(contexts.count, c0 + chunkRows)
            c0 = chunk.upperBound
            var caches: [Int: KVCache] = [:]
            var byLength: [Int: [Int]] = [:]
            for i in chunk { byLength[contexts[i].count, default: []].append(i) }
            for (L, part) in byLength.sorted(by: { $0.key < $1.key }) {
                let cs = try part.map { _ throws(GFNError) in try transformer.makeCache(capacity: L) }
                let toks = part.flatMap { contexts[$0] }
                let hidden = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: part.count, T: L, caches: cs, adapter: adapter,
                                            workspace: workspace)
                }
                for (r, i) in part.enumerated() {
                    caches[i] = cs[r]
                    try first.withUnsafeMutableBufferPointer { (fb) throws(GFNError) in
                        try transformer.logits(hidden: hidden + (r * L + L - 1) * E, count: 1, adapter: adapter,
                                               into: fb.baseAddress! + (i - chunk.lowerBound) * V)
                    }
                }
            }
            /// Fills in pair m's result; `logits` holds the distributions after each of its tokens ([n, V]).
            func finish(_ m: Int, logits: UnsafePointer<Float>?) {
                let cont = pairs[m].continuation
                let ci = (ctxIndex[pairs[m].context] ?? chunk.lowerBound) - chunk.lowerBound
                var tokenLP: [Float] = [], stopLP: [Float] = [], anyLP: [Float] = []
                var total = 0.0
                let (lp0, s0, a0) = first.withUnsafeBufferPointer { read($0.baseAddress! + ci * V, token: cont.first) }
                stopLP += s0; anyLP.append(a0)
                if let lp0 { tokenLP.append(lp0); total += Double(lp0) }
                if let logits {
                    let n = cont.count
                    for t in 0..<n {
                        let next: Int32? = t + 1 < n ? cont[t + 1] : nil
                        let (lp, s, a) = read(logits + t * V, token: next)
                        stopLP += s; anyLP.append(a)
                        if let lp { tokenLP.append(lp); total += Double(lp) }
                    }
                }
                results[m] = ScoreResult(total: total, tokenLogProbs: tokenLP, stopLogProbs: stopLP, stopLogProbAny: anyLP)
            }
            let inChunk = chunk.flatMap { members[$0] }
            for m in inChunk where pairs[m].continuation.isEmpty { finish(m, logits: nil) }
            let rows = inChunk.filter { !pairs[$0].continuation.isEmpty }
            var lo = 0
            while lo < rows.count {
                let part = Array(rows[lo..<min(rows.count, lo + chunkRows)])
                lo += part.count
                let T = part.map { pairs[$0].continuation.count }.max() ?? 1
                var toks = [Int32](repeating: 0, count: part.count * T)
                for (r, m) in part.enumerated() {
                    for (t, tok) in pairs[m].continuation.enumerated() { toks[r * T + t] = tok }
                }
                let cs = try part.map { m throws(GFNError) in
                    guard let prefix = caches[ctxIndex[pairs[m].context] ?? -1] else {
                        throw GFNError.internalError("scoring: pair \(m) has no context cache")
                    }
                    return try transformer.makeCache(capacity: T, prefix: prefix)
                }
                let hidden = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: part.count, T: T, caches: cs, adapter: adapter,
                                            workspace: workspace)
                }
                let perHead = max(1, headRows / T)
                if headLogits.count < perHead * T * V { headLogits = [Float](repeating: 0, count: perHead * T * V) }
                var r0 = 0
                while r0 < part.count {
                    let r1 = min(part.count, r0 + perHead)
                    try headLogits.withUnsafeMutableBufferPointer { (hb) throws(GFNError) in
                        guard let h = hb.baseAddress else { return }
                        try transformer.logits(hidden: hidden + r0 * T * E, count: (r1 - r0) * T, adapter: adapter, into: h)
                        for r in r0..<r1 { finish(part[r], logits: h + (r - r0) * T * V) }
                    }
                    r0 = r1
                }
            }
        }
        return results.compactMap { $0 }
    }
}

extension Kernels {
    /// log Σ exp over a Swift array.
    static func logSumExp(_ a: [Float], n: Int) -> Float {
        a.withUnsafeBufferPointer { logSumExp($0.baseAddress!, n: n) }
    }
}
