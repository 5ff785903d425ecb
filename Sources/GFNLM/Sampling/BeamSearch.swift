/// Settings of (diverse) beam search.
public struct BeamSearchParams: Sendable, Equatable {
    public var numBeams: Int = 4
    /// How many hypotheses to return (≤ numBeams).
    public var numReturn: Int = 1
    /// Diverse beam search (Vijayakumar et al.): beams split into this many groups, decoded one group after the
    /// other at each step; 1 = plain beam search.
    public var numGroups: Int = 1
    /// Subtracted from a token's score in group g once for every earlier group that chose it at this step
    /// (Hugging Face's Hamming diversity).
    public var diversityPenalty: Float = 0
    /// Hypothesis score = Σ log p / length^lengthPenalty, length counting generated tokens including the stop
    /// token (0: plain sum, as the paper's baselines use).
    public var lengthPenalty: Float = 1
    public var maxNewTokens: Int = 32
    public var minNewTokens: Int = 0
    public var stopTokens: [Int32] = []
    /// Whether a finishing stop token is kept at the end of a hypothesis' tokens.
    public var includeStopToken: Bool = true
    public var adjustment = LogitAdjustment()

    public init() {}
}

/// One hypothesis of beam search.
public struct BeamHypothesis: Sendable, Equatable {
    public var tokens: [Int32]
    /// Σ log p of the generated tokens (including a stop token) under the adjusted model, without diversity penalty.
    public var logProb: Double
    /// The ranking score (length-normalised, diversity penalties included).
    public var score: Double
    /// True when the hypothesis ended with a stop token.
    public var finished: Bool
    public var group: Int
}

extension InferenceContext {
    /// Beam search (numGroups = 1) or diverse beam search over one prompt; hypotheses sorted by score.
    public func beamSearch(prompt: [Int32], params: BeamSearchParams, adapter: LoRAAdapter? = nil) throws(GFNError) -> [BeamHypothesis] {
        let c = model.config
        let V = c.vocabSize
        try checkPrompt(prompt, index: 0)
        let B = params.numBeams, G = params.numGroups
        guard B > 0 else { throw .invalidArgument("num_beams must be positive (got \(B))") }
        guard G > 0, B % G == 0 else { throw .invalidArgument("num_beams (\(B)) must be a multiple of num_groups (\(G))") }
        guard params.numReturn > 0 && params.numReturn <= B else {
            throw .invalidArgument("num_return (\(params.numReturn)) must lie in 1…num_beams (\(B))")
        }
        guard params.maxNewTokens > 0 else { throw .invalidArgument("max_new_tokens must be positive") }
        guard params.minNewTokens >= 0 && params.minNewTokens <= params.maxNewTokens else {
            throw .invalidArgument("min_new_tokens must lie in 0…max_new_tokens")
        }
        guard params.diversityPenalty.isFinite, params.lengthPenalty.isFinite else {
            throw .invalidArgument("diversity and length penalties must be finite")
        }
        for s in params.stopTokens where s < 0 || Int(s) >= V { throw .outOfRange("stop token \(s) is outside the vocabulary") }
        let maxNew = min(params.maxNewTokens, c.nPositions - prompt.count + 1)
        guard maxNew > 0 else { throw .outOfRange("the prompt leaves no room in \(c.nPositions) positions") }
        let bias = try params.adjustment.dense(vocab: V, alwaysAllowed: params.stopTokens)
        let perGroup = B / G
        let chooser = choosers(1)[0]

        var first = [Float](repeating: 0, count: V)
        let prefix = try first.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
            try prefill(prompt, adapter: adapter, logits: b.baseAddress!)
        }

        struct Beam {
            var tokens: [Int32]
            var logProb: Double
            var score: Double      // cumulative, diversity penalties included
            var cache: Int         // index into caches
            var logitRow: Int      // row of the last logits (−1 = the prompt's logits)
        }
        let caches = try (0..<(2 * B)).map { _ throws(GFNError) in try transformer.makeCache(capacity: maxNew, prefix: prefix) }
        var spare = Array(B..<(2 * B))
        var groups: [[Beam]] = (0..<G).map { g in [Beam(tokens: [], logProb: 0, score: 0, cache: g, logitRow: -1)] }
        var done: [[BeamHypothesis]] = Array(repeating: [], count: G)
        var groupDone = [Bool](repeating: false, count: G)
        var logits = [Float](repeating: 0, count: B * V)
        let norm: (Double, Int) -> Double = { sum, len in
            params.lengthPenalty == 0 ? sum : sum / pow(Double(max(len, 1)), Double(params.lengthPenalty))
        }

        for step in 0..<maxNew {
            var chosenThisStep: [Int32: Int] = [:]
            var newGroups: [[Beam]] = Array(repeating: [], count: G)
            var parentCopies: [(from: Int, to: Int)] = []
            for g in 0..<G where !groupDone[g] {
                // Candidates (score, logProb, beam index, token) from every running beam of this group.
                var cands: [(Double, Double, Int, Int32)] = []
                let keep = 2 * perGroup
                for (bi, beam) in groups[g].enumerated() {
                    let lse: Float = logits.withUnsafeBufferPointer { lb in
                        first.withUnsafeBufferPointer { fb in
                            let src = beam.logitRow < 0 ? fb.baseAddress! : lb.baseAddress! + beam.logitRow * V
                            return bias.withOptionalBuffer { chooser.policyLogits(src, bias: $0) }
                        }
                    }
                    guard lse.isFinite else { throw GFNError(.numerical, "beam search: the logits are not finite") }
                    if step < params.minNewTokens { for s in params.stopTokens { chooser.work[Int(s)] = -.infinity } }
                    // top `keep` tokens of this beam by penalised log-prob
                    var top: [(Float, Int32)] = []
                    for v in 0..<V {
                        var s = chooser.work[v] - lse
                        if s == -.infinity { continue }
                        if let n = chosenThisStep[Int32(v)] { s -= Float(n) * params.diversityPenalty }
                        if top.count < keep || s > top[top.count - 1].0 {
                            let pos = top.firstIndex { $0.0 < s } ?? top.count
                            top.insert((s, Int32(v)), at: pos)
                            if top.count > keep { top.removeLast() }
                        }
                    }
                    for (s, tok) in top {
                        let lp = Double(chooser.work[Int(tok)] - lse)
                        cands.append((beam.score + Double(s), beam.logProb + lp, bi, tok))
                    }
                }
                cands.sort { $0.0 > $1.0 }
                var next: [Beam] = []
                for (rank, cand) in cands.enumerated() {
                    let (score, lp, bi, tok) = cand
                    let parent = groups[g][bi]
                    if params.stopTokens.contains(tok) {
                        if rank < perGroup {
                            let toks = params.includeStopToken ? parent.tokens + [tok] : parent.tokens
                            done[g].append(BeamHypothesis(tokens: toks, logProb: lp, score: norm(score, step + 1),
                                                          finished: true, group: g))
                        }
                    } else {
                        next.append(Beam(tokens: parent.tokens + [tok], logProb: lp, score: score,
                                         cache: parent.cache, logitRow: parent.logitRow))
                        chosenThisStep[tok, default: 0] += 1
                    }
                    if next.count == perGroup { break }
                }
                // Done when enough hypotheses finished and no running beam can beat the worst of them.
                done[g].sort { $0.score > $1.score }
                if done[g].count >= perGroup {
                    let worst = done[g][perGroup - 1].score
                    let bestRunning = next.map { norm($0.score, step + 1) }.max() ?? -.infinity
                    if next.isEmpty || (params.lengthPenalty >= 0 && bestRunning <= worst) || step + 1 == maxNew {
                        groupDone[g] = true
                    }
                }
                if next.isEmpty { groupDone[g] = true }
                newGroups[g] = next
            }
            if groupDone.allSatisfy({ $0 }) || step + 1 == maxNew {
                for g in 0..<G where !newGroups[g].isEmpty && done[g].count < perGroup {
                    for beam in newGroups[g] {
                        done[g].append(BeamHypothesis(tokens: beam.tokens, logProb: beam.logProb,
                                                      score: norm(beam.score, beam.tokens.count), finished: false, group: g))
                    }
                }
                break
            }
            // Give every surviving beam its own cache: the first child of a parent may keep the parent's cache,
            // later children get a copy in a spare cache.
            var used = Set<Int>()
            var rowsCaches: [Int] = []
            var feed: [Int32] = []
            var assignments: [(g: Int, i: Int)] = []
            for g in 0..<G where !groupDone[g] {
                for i in newGroups[g].indices {
                    let parentCache = newGroups[g][i].cache
                    var target = parentCache
                    if used.contains(parentCache) {
                        guard let s = spare.popLast() else { throw GFNError(.internalError, "beam search ran out of caches") }
                        parentCopies.append((parentCache, s))
                        target = s
                    }
                    used.insert(target)
                    newGroups[g][i].cache = target
                    rowsCaches.append(target)
                    feed.append(newGroups[g][i].tokens[newGroups[g][i].tokens.count - 1])
                    assignments.append((g, i))
                }
            }
            for (from, to) in parentCopies { try caches[to].copyContents(of: caches[from]) }
            spare = (0..<(2 * B)).filter { !used.contains($0) }
            for g in 0..<G where groupDone[g] { newGroups[g] = [] }
            groups = newGroups
            if feed.isEmpty { break }
            let hidden = try feed.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try transformer.forward(tokens: tb, rows: feed.count, T: 1, caches: rowsCaches.map { caches[$0] },
                                        adapter: adapter, workspace: workspace)
            }
            try logits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                try transformer.logits(hidden: hidden, count: feed.count, adapter: adapter, into: lb.baseAddress!)
            }
            for (row, a) in assignments.enumerated() { groups[a.g][a.i].logitRow = row }
        }
        let all = done.flatMap { $0 }.sorted { $0.score > $1.score }
        return Array(all.prefix(params.numReturn))
    }
}
