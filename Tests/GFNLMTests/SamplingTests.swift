import Foundation
import XCTest
@testable import GFNLM

final class SamplingTests: XCTestCase {
    func tinyModel(_ arch: Architecture = .gpt2, vocab: Int = 37, threads: Int = 2, seed: UInt64 = 1) throws -> Model {
        let w = try ModelWeights.random(config: .tiny(arch, vocab: vocab, embd: 32), seed: seed, std: 0.5)
        return Model(transformer: Transformer(weights: w, threads: threads), tokenizer: nil)
    }

    /// log-softmax of the model's next-token logits after `prefix`, in Double.
    func nextLogProbs(_ m: Model, _ prefix: [Int32], bias: [Float]? = nil) throws -> [Double] {
        let V = m.config.vocabSize
        let all = try m.logits(ids: prefix, batch: 1, seqLen: prefix.count)
        var last = Array(all[(prefix.count - 1) * V..<prefix.count * V]).map(Double.init)
        if let bias { for i in 0..<V { last[i] += Double(bias[i]) } }
        let mx = last.max()!
        let lse = mx + log(last.map { exp($0 - mx) }.reduce(0, +))
        return last.map { $0 - lse }
    }

    /// Upper critical value of χ² with `df` degrees of freedom at tail probability ≈ 1e-3 (Wilson–Hilferty).
    func chi2Critical(df: Int) -> Double {
        let z = 3.09
        let k = Double(df)
        return k * pow(1 - 2 / (9 * k) + z * (2 / (9 * k)).squareRoot(), 3)
    }

    func testFirstTokenDistributionMatchesSoftmax() throws {
        let m = try tinyModel()
        let ctx = try InferenceContext(model: m)
        let prompt: [Int32] = [3, 14, 15, 9]
        var p = SamplingParams()
        p.maxNewTokens = 1
        p.seed = 42
        let n = 10_000
        let samples = try ctx.sample(prompts: [prompt], n: n, params: p)
        var counts = [Int](repeating: 0, count: m.config.vocabSize)
        for s in samples { counts[Int(s.tokens[0])] += 1 }
        let lp = try nextLogProbs(m, prompt)
        // χ² over bins with expected count ≥ 5, the rest pooled.
        var chi2 = 0.0, df = -1
        var poolObs = 0.0, poolExp = 0.0
        for v in 0..<counts.count {
            let e = exp(lp[v]) * Double(n)
            if e >= 5 {
                chi2 += pow(Double(counts[v]) - e, 2) / e
                df += 1
            } else {
                poolObs += Double(counts[v]); poolExp += e
            }
        }
        if poolExp > 0 { chi2 += pow(poolObs - poolExp, 2) / max(poolExp, 1e-9); df += 1 }
        XCTAssertGreaterThan(df, 10)
        XCTAssertLessThan(chi2, chi2Critical(df: df), "χ² = \(chi2) with \(df) degrees of freedom")
        // Reported log-probabilities are the policy's own.
        for s in samples.prefix(50) {
            XCTAssertEqual(Double(s.tokenLogProbs[0]), lp[Int(s.tokens[0])], accuracy: 1e-4)
        }
    }

    func testTopKTopPStopMinMaxAndMasks() throws {
        let m = try tinyModel()
        let ctx = try InferenceContext(model: m)
        let prompt: [Int32] = [1, 2, 3]
        let lp = try nextLogProbs(m, prompt)
        let order = lp.indices.sorted { lp[$0] > lp[$1] }
        // top-k: only the k most probable first tokens
        var p = SamplingParams()
        p.maxNewTokens = 1
        p.topK = 3
        let topK = Set(order.prefix(3).map { Int32($0) })
        for s in try ctx.sample(prompts: [prompt], n: 500, params: p) { XCTAssertTrue(topK.contains(s.tokens[0])) }
        // top-p: the smallest nucleus reaching p
        p.topK = 0
        p.topP = 0.5
        var mass = 0.0
        var nucleus = Set<Int32>()
        for v in order where mass < 0.5 { nucleus.insert(Int32(v)); mass += exp(lp[v]) }
        for s in try ctx.sample(prompts: [prompt], n: 500, params: p) { XCTAssertTrue(nucleus.contains(s.tokens[0])) }
        // stop tokens, min and max lengths
        p = SamplingParams()
        p.maxNewTokens = 6
        p.minNewTokens = 2
        p.stopTokens = [Int32(order[0]), Int32(order[1])]   // the two most likely first tokens stop
        p.seed = 7
        let samples = try ctx.sample(prompts: [prompt], n: 300, params: p)
        var stopped = 0
        for s in samples {
            XCTAssertLessThanOrEqual(s.tokens.count, 6)
            XCTAssertEqual(s.stopLogProbs.count, s.steps * 2)
            if s.finishReason == .stopToken {
                stopped += 1
                XCTAssertTrue(p.stopTokens.contains(s.tokens.last!))
                XCTAssertGreaterThanOrEqual(s.tokens.count, 3, "no stop before min_new_tokens")
                XCTAssertFalse(s.tokens.dropLast().contains { p.stopTokens.contains($0) })
            } else {
                XCTAssertEqual(s.tokens.count, 6)
                XCTAssertFalse(s.tokens.contains { p.stopTokens.contains($0) })
            }
        }
        XCTAssertGreaterThan(stopped, 0)
        // the stop log-probs are log q(stop | prefix), unaffected by the min-length ban
        let first = samples[0]
        XCTAssertEqual(Double(first.stopLogProbs[0]), lp[order[0]], accuracy: 1e-4)
        // hard mask: only allowed tokens; soft mask: reported log-probs include the penalty
        p = SamplingParams()
        p.maxNewTokens = 4
        p.adjustment = LogitAdjustment(allowed: [5, 6, 7], disallowedPenalty: -.infinity)
        for s in try ctx.sample(prompts: [prompt], n: 200, params: p) {
            XCTAssertTrue(s.tokens.allSatisfy { [5, 6, 7].contains($0) })
        }
        p.adjustment = LogitAdjustment(allowed: [5, 6, 7], disallowedPenalty: -99)
        let soft = try ctx.sample(prompts: [prompt], n: 50, params: p)
        let bias = try p.adjustment.dense(vocab: m.config.vocabSize)!
        let lpSoft = try nextLogProbs(m, prompt, bias: bias)
        for s in soft {
            XCTAssertTrue(s.tokens.allSatisfy { [5, 6, 7].contains($0) })
            XCTAssertEqual(Double(s.tokenLogProbs[0]), lpSoft[Int(s.tokens[0])], accuracy: 1e-4)
        }
        // tempered sampling keeps untempered log-probs
        p = SamplingParams()
        p.maxNewTokens = 1
        p.temperature = 2
        for s in try ctx.sample(prompts: [prompt], n: 20, params: p) {
            XCTAssertEqual(Double(s.tokenLogProbs[0]), lp[Int(s.tokens[0])], accuracy: 1e-4)
        }
        // greedy
        p.temperature = 0
        XCTAssertEqual(try ctx.sample(prompts: [prompt], n: 3, params: p).map { $0.tokens[0] },
                       Array(repeating: Int32(order[0]), count: 3))
    }

    func testLogProbsAgreeWithScoring() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let m = try tinyModel(arch)
            let ctx = try InferenceContext(model: m)
            var p = SamplingParams()
            p.maxNewTokens = 8
            p.stopTokens = [0]
            p.seed = 3
            let prompts: [[Int32]] = [[4, 5, 6], [7, 8]]
            let samples = try ctx.sample(prompts: prompts, n: 4, params: p)
            XCTAssertEqual(samples.count, 8)
            let pairs = samples.map { (context: prompts[$0.promptIndex], continuation: $0.tokens) }
            let scores = try ctx.score(pairs, params: ScoreParams(stopTokens: [0]))
            for (s, sc) in zip(samples, scores) {
                XCTAssertEqual(s.logProb, sc.total, accuracy: 1e-3)
                for (a, b) in zip(s.tokenLogProbs, sc.tokenLogProbs) { XCTAssertEqual(a, b, accuracy: 1e-4) }
                // stop probability before every step equals the scorer's stop probability of that prefix
                for t in 0..<s.steps { XCTAssertEqual(s.stopLogProbs[t], sc.stopLogProbs[t], accuracy: 1e-4) }
            }
        }
    }

    /// Scoring batches contexts of equal length and all continuations together (each on its own context's
    /// cache): every value equals the one-sequence-at-a-time log-softmax of the full sequence, for repeated and
    /// distinct contexts of mixed lengths, empty continuations, and more contexts and rows than one chunk (64).
    func testBatchedScoringEqualsOneSequenceAtATime() throws {
        let m = try tinyModel(.gptj)
        let ctx = try InferenceContext(model: m)
        var rng = RNG(seed: 5)
        var pairs: [(context: [Int32], continuation: [Int32])] = []
        let shared: [Int32] = [3, 9, 1]
        for i in 0..<150 {
            let context = i % 5 == 0 ? shared : (0..<(1 + rng.below(4))).map { _ in Int32(rng.below(37)) }
            let cont = (0..<rng.below(5)).map { _ in Int32(rng.below(37)) }
            pairs.append((context, cont))
        }
        let scores = try ctx.score(pairs, params: ScoreParams(stopTokens: [2, 7]))
        XCTAssertEqual(scores.count, pairs.count)
        var worst = 0.0
        for (p, s) in zip(pairs, scores) {
            XCTAssertEqual(s.tokenLogProbs.count, p.continuation.count)
            XCTAssertEqual(s.stopLogProbAny.count, p.continuation.count + 1)
            var total = 0.0
            for t in 0...p.continuation.count {
                let lp = try nextLogProbs(m, p.context + p.continuation.prefix(t))
                if t < p.continuation.count {
                    worst = max(worst, abs(lp[Int(p.continuation[t])] - Double(s.tokenLogProbs[t])))
                    total += lp[Int(p.continuation[t])]
                }
                worst = max(worst, abs(lp[2] - Double(s.stopLogProbs[2 * t])), abs(lp[7] - Double(s.stopLogProbs[2 * t + 1])))
            }
            XCTAssertEqual(total, s.total, accuracy: 1e-3)
        }
        XCTAssertLessThan(worst, 1e-4)
    }

    func testSameSeedSameTokensWhateverTheThreads() throws {
        let m1 = try tinyModel(threads: 1), m2 = try tinyModel(threads: 2)
        var p = SamplingParams()
        p.maxNewTokens = 10
        p.seed = 99
        p.stopTokens = [0]
        let prompts: [[Int32]] = [[1, 2], [3, 4, 5]]
        let a = try InferenceContext(model: m1).sample(prompts: prompts, n: 5, params: p)
        let b = try InferenceContext(model: m2).sample(prompts: prompts, n: 5, params: p)
        XCTAssertEqual(a.map(\.tokens), b.map(\.tokens))
        p.seed = 100
        let c = try InferenceContext(model: m2).sample(prompts: prompts, n: 5, params: p)
        XCTAssertNotEqual(a.map(\.tokens), c.map(\.tokens))
    }

    func testConcurrentThreadsEqualSequentialRuns() throws {
        let m = try tinyModel(.gptj)
        let prompts: [[Int32]] = [[1, 2, 3]]
        @Sendable func run(_ seed: UInt64) throws -> [[Int32]] {
            var p = SamplingParams()
            p.maxNewTokens = 12
            p.seed = seed
            return try InferenceContext(model: m).sample(prompts: prompts, n: 4, params: p).map(\.tokens)
        }
        let sequential = try (0..<4).map { try run(UInt64($0)) }
        let box = UncheckedSendable(UnsafeMutableBufferPointer<[[Int32]]>.allocate(capacity: 4))
        defer { box.value.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            box.value.baseAddress!.advanced(by: i).initialize(to: (try? run(UInt64(i))) ?? [])
        }
        XCTAssertEqual(Array(box.value), sequential)
    }

    func testBeamSearchFindsTheExactBestSequence() throws {
        let m = try tinyModel(vocab: 9)
        let ctx = try InferenceContext(model: m)
        let prompt: [Int32] = [1, 2]
        // enumerate all 2-token continuations
        var best: (Double, [Int32]) = (-.infinity, [])
        var pairs: [(context: [Int32], continuation: [Int32])] = []
        for a in 0..<9 { for b in 0..<9 { pairs.append((prompt, [Int32(a), Int32(b)])) } }
        for (pair, s) in zip(pairs, try ctx.score(pairs)) where s.total > best.0 { best = (s.total, pair.continuation) }
        var bp = BeamSearchParams()
        bp.numBeams = 9
        bp.maxNewTokens = 2
        bp.lengthPenalty = 0
        let hyps = try ctx.beamSearch(prompt: prompt, params: bp)
        XCTAssertEqual(hyps[0].tokens, best.1)
        XCTAssertEqual(hyps[0].logProb, best.0, accuracy: 1e-4)
        // one beam = greedy
        bp.numBeams = 1
        var g = SamplingParams()
        g.temperature = 0
        g.maxNewTokens = 2
        XCTAssertEqual(try ctx.beamSearch(prompt: prompt, params: bp)[0].tokens,
                       try ctx.sample(prompts: [prompt], n: 1, params: g)[0].tokens)
        // diverse beam search: a large penalty makes the groups start differently
        bp.numBeams = 4
        bp.numGroups = 4
        bp.numReturn = 4
        bp.diversityPenalty = 100
        let diverse = try ctx.beamSearch(prompt: prompt, params: bp)
        XCTAssertEqual(Set(diverse.map { $0.tokens[0] }).count, 4)
    }

    func testBadArgumentsAreErrors() throws {
        let m = try tinyModel()
        let ctx = try InferenceContext(model: m)
        var p = SamplingParams()
        XCTAssertThrowsError(try ctx.sample(prompts: [[1]], n: 0, params: p))
        XCTAssertThrowsError(try ctx.sample(prompts: [[]], n: 1, params: p))
        XCTAssertThrowsError(try ctx.sample(prompts: [[1000]], n: 1, params: p))
        XCTAssertThrowsError(try ctx.sample(prompts: [Array(repeating: 1, count: 65)], n: 1, params: p))
        p.topP = 0
        XCTAssertThrowsError(try ctx.sample(prompts: [[1]], n: 1, params: p))
        p = SamplingParams()
        p.adjustment = LogitAdjustment(allowed: [], disallowedPenalty: -.infinity)
        XCTAssertThrowsError(try ctx.sample(prompts: [[1]], n: 1, params: p)) {
            XCTAssertEqual(($0 as? GFNError)?.status, .numerical)
        }
    }
}
