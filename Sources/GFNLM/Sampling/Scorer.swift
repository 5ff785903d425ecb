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
        let nStop = params.stopTokens.count
        let chooser = choosers(1)[0]
        var results = [ScoreResult?](repeating: nil, count: pairs.count)

        // Group pairs by context.
        var groups: [[Int32]: [Int]] = [:]
        var order: [[Int32]] = []
        for (i, p) in pairs.enumerated() {
            if groups[p.context] == nil { order.append(p.context) }
            groups[p.context, default: []].append(i)
        }
        var first = [Float](repeating: 0, count: V)
        var rowLogits = [Float](repeating: 0, count: V)

        /// Reads one distribution: returns (log p(token) or nil, stop log-probs).
        func read(_ logits: UnsafePointer<Float>, token: Int32?) -> (Float?, [Float], Float) {
            let lse = bias.withOptionalBuffer { chooser.policyLogits(logits, bias: $0) }
            let stops = params.stopTokens.map { chooser.work[Int($0)] - lse }
            let any = stops.isEmpty ? -Float.infinity : Kernels.logSumExp(stops, n: stops.count)
            return (token.map { chooser.work[Int($0)] - lse }, stops, any)
        }

        for ctx in order {
            guard let members = groups[ctx] else { continue }
            let prefix = try first.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
                try prefill(ctx, adapter: adapter, logits: b.baseAddress!)
            }
            let rows = members.filter { !pairs[$0].continuation.isEmpty }
            let T = rows.map { pairs[$0].continuation.count }.max() ?? 0
            var hidden: UnsafeMutablePointer<Float>? = nil
            if T > 0 {
                var toks = [Int32](repeating: 0, count: rows.count * T)   // right padding with id 0
                for (ri, m) in rows.enumerated() {
                    for (t, tok) in pairs[m].continuation.enumerated() { toks[ri * T + t] = tok }
                }
                let caches = try rows.map { _ throws(GFNError) in try transformer.makeCache(capacity: T, prefix: prefix) }
                hidden = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: rows.count, T: T, caches: caches, adapter: adapter,
                                            workspace: workspace)
                }
            }
            for m in members {
                let cont = pairs[m].continuation
                var tokenLP: [Float] = []
                var stopLP: [Float] = []
                var anyLP: [Float] = []
                var total = 0.0
                // distribution before c_0: the context's last logits
                let (lp0, s0, a0) = first.withUnsafeBufferPointer { read($0.baseAddress!, token: cont.first) }
                stopLP += s0; anyLP.append(a0)
                if let lp0 { tokenLP.append(lp0); total += Double(lp0) }
                if !cont.isEmpty, let hidden, let ri = rows.firstIndex(of: m) {
                    // every position of the row in one head product
                    let n = cont.count
                    if rowLogits.count < n * V { rowLogits = [Float](repeating: 0, count: n * V) }
                    try rowLogits.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
                        try transformer.logits(hidden: hidden + ri * T * E, count: n, adapter: adapter, into: b.baseAddress!)
                    }
                    for t in 0..<n {
                        let next: Int32? = t + 1 < n ? cont[t + 1] : nil
                        let (lp, s, a) = rowLogits.withUnsafeBufferPointer { read($0.baseAddress! + t * V, token: next) }
                        stopLP += s; anyLP.append(a)
                        if let lp { tokenLP.append(lp); total += Double(lp) }
                    }
                }
                _ = nStop
                results[m] = ScoreResult(total: total, tokenLogProbs: tokenLP, stopLogProbs: stopLP, stopLogProbAny: anyLP)
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
