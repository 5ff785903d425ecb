/// The sampler's exact distribution over a small space, next to the target R/ΣR.
public struct ExactDistribution: Sendable {
    /// Every action sequence of the space (⊤ not included), in breadth-first order.
    public var sequences: [[Int32]]
    /// log q(Z): Π q(a_t | s_t) · q(⊤ | s_n) (q(⊤|s_max) := 1 under a forced stop), over the policy's full
    /// vocabulary — mass outside the enumerated space (other tokens) is missing from Σ q.
    public var logQ: [Double]
    /// log R(Z) / T_R (untempered / T_R), as the reward defines it for the terminal state.
    public var logR: [Double]

    /// Σ q over the enumerated space (1 when the policy cannot leave it).
    public var massQ: Double { logQ.reduce(0) { $0 + exp($1) } }

    /// The normalised target R/ΣR.
    public var target: [Double] {
        let m = logR.max() ?? 0
        let w = logR.map { exp($0 - m) }
        let z = w.reduce(0, +)
        return w.map { $0 / z }
    }

    /// log Σ R (the true log partition function over the space).
    public var logZ: Double {
        let m = logR.max() ?? 0
        return m + log(logR.reduce(0) { $0 + exp($1 - m) })
    }

    /// KL(target ‖ q).
    public var klTargetToQ: Double {
        zip(target, logQ).reduce(0) { acc, pq in pq.0 > 0 ? acc + pq.0 * (log(pq.0) - pq.1) : acc }
    }

    /// KL(q ‖ target) over the enumerated space (q renormalised there).
    public var klQToTarget: Double {
        let t = target
        let zq = massQ
        return zip(logQ, t).reduce(0) { acc, qt in
            let q = exp(qt.0) / zq
            return q > 0 ? acc + q * (log(q) - log(qt.1)) : acc
        }
    }

    /// Total variation ½ Σ |target − q|.
    public var totalVariation: Double { 0.5 * zip(target, logQ).reduce(0) { $0 + abs($1.0 - exp($1.1)) } }
}

extension RolloutEngine {
    /// Enumerates every action sequence of up to max_len actions over `vocabulary` (≤ `limit` sequences) and
    /// computes the policy's exact probability of each (adapter on) and the reward of each.
    public func exactDistribution(prompt: PromptSpec, vocabulary: [Int32], adapter: LoRAAdapter?,
                                  reward: RewardFunction, rewardTemperature: Double = 1,
                                  limit: Int = 100_000) throws(GFNError) -> ExactDistribution {
        let L = settings.maxLength
        let term = settings.termination
        guard !vocabulary.isEmpty, !vocabulary.contains(term) else {
            throw .invalidArgument("the vocabulary must be non-empty and must not contain the termination token")
        }
        guard settings.tool == nil else { throw .unsupported("exact enumeration does not support tools") }
        var total = 1, level = 1
        for _ in 0..<L {
            level *= vocabulary.count
            total += level
            guard total <= limit else { throw .outOfRange("the space has more than \(limit) sequences") }
        }
        let tf = transformer
        let c = model.config
        let V = c.vocabSize, E = c.nEmbd
        // Policy distributions at every state of length < L (and = L for the next-sentence layout).
        var logq: [[Int32]: [Float]] = [:]
        let chooser = context.choosers(1)[0]
        func normalised(_ logits: UnsafePointer<Float>) -> [Float] {
            let lse = bias.withOptionalBuffer { chooser.policyLogits(logits, bias: $0) }
            return (0..<V).map { chooser.work[$0] - lse }
        }
        var first = [Float](repeating: 0, count: V)
        let prefix = try first.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
            try context.prefill(prompt.x, adapter: adapter, logits: b.baseAddress!)
        }
        logq[[]] = first.withUnsafeBufferPointer { normalised($0.baseAddress!) }
        var frontier: [[Int32]] = [[]]
        var all: [[Int32]] = [[]]
        let lastLevel = settings.layout == .nextSentence ? L : L - 1
        for len in 1...L {
            frontier = frontier.flatMap { s in vocabulary.map { s + [$0] } }
            all += frontier
            if len > lastLevel { break }
            // run the level in chunks
            let chunk = 256
            var i = 0
            while i < frontier.count {
                let part = Array(frontier[i..<min(frontier.count, i + chunk)])
                let toks = part.flatMap { $0 }
                let caches = try part.map { _ throws(GFNError) in try tf.makeCache(capacity: len, prefix: prefix) }
                let h = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try tf.forward(tokens: tb, rows: part.count, T: len, caches: caches, adapter: adapter,
                                   workspace: context.workspace)
                }
                var logits = [Float](repeating: 0, count: V)
                for (j, s) in part.enumerated() {
                    try logits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                        try tf.logits(hidden: h + (j * len + len - 1) * E, count: 1, adapter: adapter, into: lb.baseAddress!)
                    }
                    logq[s] = logits.withUnsafeBufferPointer { normalised($0.baseAddress!) }
                }
                i += chunk
            }
        }
        // The sampler never stops before min_len: those sequences have probability 0, and before min_len it draws
        // from the policy renormalised without ⊤.
        let minLength = settings.minLength
        all = all.filter { $0.count >= minLength }
        var out = ExactDistribution(sequences: all, logQ: [], logR: [])
        for z in all {
            var lq = 0.0
            for t in 0..<z.count {
                guard let d = logq[Array(z[0..<t])] else { throw .internalError("missing state in enumeration") }
                lq += Double(d[Int(z[t])])
                if t < minLength { lq -= LengthRestriction.logOneMinusExp(Double(d[Int(term)])) }
            }
            if z.count < L || settings.layout == .nextSentence {
                guard let d = logq[z] else { throw .internalError("missing state in enumeration") }
                lq += Double(d[Int(term)])
            }
            out.logQ.append(lq)
        }
        // rewards of the complete sequences, in batches
        var rewards: [Double] = []
        let batch = 512
        var i = 0
        while i < all.count {
            let part = all[i..<min(all.count, i + batch)].map { Trajectory(actions: $0, truncated: $0.count == L) }
            let r = try reward.logRewards(prompt: prompt, trajectories: part, rewardTemperature: rewardTemperature)
            for (t, row) in zip(part, r) {
                guard row.count == t.n + 1, row[t.n].isFinite else { throw GFNError(.numerical, "non-finite reward in enumeration") }
                rewards.append(row[t.n] / rewardTemperature)
            }
            i += batch
        }
        out.logR = rewards
        return out
    }
}

/// Estimates from samples of q: importance-weighted log Z and effective sample size.
public enum SampleEstimates {
    /// log Ẑ_K = logsumexp(log w) − log K with log w = log R − log q (a lower bound on log Z in expectation).
    public static func logZ(logR: [Double], logQ: [Double]) -> Double {
        let w = zip(logR, logQ).map { $0 - $1 }
        guard let m = w.max(), m.isFinite else { return -.infinity }
        return m + log(w.reduce(0) { $0 + exp($1 - m) }) - log(Double(w.count))
    }

    /// ESS = (Σ w)² / Σ w², computed in log space; divide by K for the normalised ESS.
    public static func effectiveSampleSize(logR: [Double], logQ: [Double]) -> Double {
        let w = zip(logR, logQ).map { $0 - $1 }
        guard let m = w.max(), m.isFinite else { return 0 }
        let s1 = w.reduce(0) { $0 + exp($1 - m) }
        let s2 = w.reduce(0) { $0 + exp(2 * ($1 - m)) }
        return s1 * s1 / s2
    }
}

/// Amortized inference helpers (sampling the trained policy, exact evaluation on small spaces).
public enum AnswerVote {
    /// The reference's extract_answer: the integer after the last "=", else the last whitespace-separated token
    /// (both with "." stripped), else nil (the reference returns −1, which is the true answer of some problems, so a parse failure could count as correct).
    public static func extractInteger(_ text: String) -> Int? {
        func parse(_ s: Substring) -> Int? {
            var t = s.drop { $0 == " " || $0 == "\n" || $0 == "\t" }
            while let l = t.last, l == " " || l == "\n" || l == "\t" { t = t.dropLast() }
            t = t.drop { $0 == "." }
            while t.last == "." { t = t.dropLast() }
            return Int(String(t))
        }
        if let i = text.lastIndex(of: "="), let v = parse(text[text.index(after: i)...]) { return v }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        if let last = words.last, let v = parse(last) { return v }
        return nil
    }

    /// Majority vote; ties go to the value seen first (Counter.most_common).
    public static func majority<T: Hashable>(_ votes: [T]) -> T? {
        var counts: [T: Int] = [:]
        var order: [T] = []
        for v in votes {
            if counts[v] == nil { order.append(v) }
            counts[v, default: 0] += 1
        }
        var best: T? = nil
        var bestCount = 0
        for v in order where (counts[v] ?? 0) > bestCount { best = v; bestCount = counts[v] ?? 0 }
        return best
    }
}
