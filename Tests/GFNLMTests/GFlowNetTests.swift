import Foundation
import XCTest
@testable import GFNLM

/// The reference implementation's behaviour (terminal-step identity, off-policy invariance, sampling constraints, the
/// zero loss at initialisation, reward isolation, the reward table, the calculator, answer extraction, the replay
/// buffer, schedules, the behaviour mix, reward scoring) on tiny models and the real GPT-2 tokenizer.
final class GFlowNetTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    func tinyModel(_ arch: Architecture = .gpt2, vocab: Int = 40, seed: UInt64 = 2) throws -> Model {
        let w = try ModelWeights.random(config: .tiny(arch, vocab: vocab, embd: 32), seed: seed, std: 0.4)
        return Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
    }

    func tokenizer() throws -> Tokenizer {
        try Tokenizer.load(path: Self.fixtures.appendingPathComponent("tokenizer").path)
    }

    func randomAdapter(_ m: Model, seed: UInt64) throws -> LoRAAdapter {
        let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_fc", "q_proj", "v_proj", "fc_in"]), seed: seed)
        var rng = RNG(seed: seed &+ 100)
        for name in a.moduleNames {   // a fixed order (dictionary order differs between processes)
            guard let f = a.factors(for: name) else { continue }
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.2 }
        }
        return a
    }

    // MARK: off-policy invariance: policy log-probabilities are the untempered policy's, whatever the behaviour

    func testPolicyPassEqualsScoringAndIgnoresBehaviourTemperature() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let m = try tinyModel(arch)
            let adapter = try randomAdapter(m, seed: 5)
            var settings = RolloutSettings(termination: 0, maxLength: 6, minLength: 2)
            settings.adjustment = LogitAdjustment(allowed: Array(1...12), disallowedPenalty: -99)
            let engine = try RolloutEngine(model: m, settings: settings)
            let pass = try PolicyPass(engine: engine)
            let ctx = try InferenceContext(model: m)
            let prompt: [Int32] = [20, 21, 22]
            for tau: Float in [0.5, 1, 2] {
                let trajs = try engine.generate(prompt: prompt, count: 6, temperature: tau, adapter: adapter, seed: 9)
                let (lpf, lpt) = try pass.forward(prompt: prompt, trajectories: trajs, adapter: adapter)
                let scores = try ctx.score(trajs.map { (prompt, $0.actions) },
                                           params: ScoreParams(stopTokens: [0], adjustment: settings.adjustment), adapter: adapter)
                for (b, t) in trajs.enumerated() {
                    XCTAssertGreaterThanOrEqual(t.n, 2, "no termination before min_len")
                    XCTAssertTrue(t.actions.allSatisfy { (1...12).contains($0) }, "the −99 soft mask is never sampled")
                    for k in 0..<t.n { XCTAssertEqual(lpf[b][k], Double(scores[b].tokenLogProbs[k]), accuracy: 2e-4) }
                    let upto = t.truncated ? t.n - 1 : t.n
                    for k in 0...upto { XCTAssertEqual(lpt[b][k], Double(scores[b].stopLogProbs[k]), accuracy: 2e-4) }
                    if t.truncated { XCTAssertEqual(lpt[b][t.n], 0, "layout A forces log q(⊤|s_max) = 0") }
                }
                try pass.backward(dLogPF: lpf.map { $0.map { _ in 0 } }, dLogPT: lpt.map { $0.map { _ in 0 } },
                                  gradients: Gradients(adapter: adapter))
            }
        }
    }

    /// The gradient of the SubTB loss through the whole network matches central differences (fp32 loss, so a
    /// loose tolerance on a few coordinates).
    func testLossGradientThroughTheModelMatchesFiniteDifferences() throws {
        let m = try tinyModel(.gpt2, vocab: 24)
        let adapter = try randomAdapter(m, seed: 6)
        let settings = RolloutSettings(termination: 0, maxLength: 4)
        let engine = try RolloutEngine(model: m, settings: settings)
        let pass = try PolicyPass(engine: engine)
        let prompt: [Int32] = [3, 4]
        let trajs = try engine.generate(prompt: prompt, count: 5, temperature: 1.5, adapter: adapter, seed: 3)
        var rng = RNG(seed: 4)
        let logR = trajs.map { t in (0...t.n).map { _ in rng.normal() } }
        func loss() throws -> Double {
            let (lpf, lpt) = try pass.forward(prompt: prompt, trajectories: trajs, adapter: adapter)
            let terms = trajs.enumerated().map { TrajectoryTerms(n: $1.n, truncated: $1.truncated, logPF: lpf[$0], logPT: lpt[$0], logR: logR[$0]) }
            let r = try Objective.subTB.evaluate(terms, layout: .forcedStop)
            try pass.backward(dLogPF: r.dLogPF, dLogPT: r.dLogPT, gradients: Gradients(adapter: adapter))
            return r.loss
        }
        let (lpf, lpt) = try pass.forward(prompt: prompt, trajectories: trajs, adapter: adapter)
        let terms = trajs.enumerated().map { TrajectoryTerms(n: $1.n, truncated: $1.truncated, logPF: lpf[$0], logPT: lpt[$0], logR: logR[$0]) }
        let res = try Objective.subTB.evaluate(terms, layout: .forcedStop)
        let grads = try Gradients(adapter: adapter)
        try pass.backward(dLogPF: res.dLogPF, dLogPT: res.dLogPT, gradients: grads)
        var checked = 0
        for p in grads.parameters.prefix(4) {
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 5)) {
                let fd = try centralDifference(p, i, h: 2e-3, loss)
                let g = Double(p.grad.pointer[i])
                XCTAssertEqual(g, fd, accuracy: 2e-2 * max(1, abs(fd)), "\(p.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 10)
    }

    /// The same on the real GPT-2 vocabulary (50,257: the head's threaded paths), 2 threads, a 14-token prompt
    /// and 12 rows batched in one pass, with every LoRA tensor probed: the regime of the random-integer task.
    func testLossGradientAtRealVocabularyWithThreadsMatchesFiniteDifferences() throws {
        let dir = Self.fixtures.appendingPathComponent("gpt2-realvocab/legacy17").path
        let m = try Model.load(path: dir, threads: 2)
        let adapter = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_proj", "c_fc"]), seed: 11)
        var rng = RNG(seed: 12)
        for name in adapter.moduleNames {
            guard let f = adapter.factors(for: name) else { continue }
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.05 }
        }
        let settings = RolloutSettings(termination: 50256, maxLength: 5, minLength: 1)
        let engine = try RolloutEngine(model: m, settings: settings)
        let pass = try PolicyPass(engine: engine)
        let prompt: [Int32] = [464, 1708, 318, 257, 4738, 18253, 7428, 42096, 1022, 657, 290, 1802, 25, 220]
        let trajs = try engine.generate(prompt: prompt, count: 12, temperature: 1.0, adapter: adapter, seed: 3)
        let logR = trajs.map { t in (0...t.n).map { k in k == 0 ? -8.0 : rng.normal() * 8 } }
        func evaluate() throws -> (Double, ObjectiveResult) {
            let (lpf, lpt) = try pass.forward(prompt: prompt, trajectories: trajs, adapter: adapter)
            let terms = trajs.enumerated().map { TrajectoryTerms(n: $1.n, truncated: $1.truncated, logPF: lpf[$0], logPT: lpt[$0], logR: logR[$0]) }
            let r = try Objective.subTB.evaluate(terms, layout: .forcedStop)
            return (r.loss, r)
        }
        func loss() throws -> Double {
            let (l, r) = try evaluate()
            try pass.backward(dLogPF: r.dLogPF, dLogPT: r.dLogPT, gradients: Gradients(adapter: adapter))
            return l
        }
        let (_, res) = try evaluate()
        let grads = try Gradients(adapter: adapter)
        try pass.backward(dLogPF: res.dLogPF, dLogPT: res.dLogPT, gradients: grads)
        var checked = 0, worst = 0.0
        for p in grads.parameters {
            // the largest-gradient coordinate of each tensor (a meaningful finite difference) and one more
            var imax = 0
            for i in 0..<p.count where abs(p.grad.pointer[i]) > abs(p.grad.pointer[imax]) { imax = i }
            for i in [imax, p.count / 3] {
                let fd = try centralDifference(p, i, h: 1e-2, loss)
                let g = Double(p.grad.pointer[i])
                worst = max(worst, abs(g - fd) / max(1, abs(fd)))
                XCTAssertEqual(g, fd, accuracy: 5e-2 * max(1, abs(fd)), "\(p.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 20)
        print("real-vocabulary SubTB gradient: \(checked) coordinates, worst relative error \(worst)")
    }

    // MARK: zero loss at initialisation; the reward is isolated from the adapter

    func testNextSentenceLossIsZeroAtInitialisation() throws {
        let m = try tinyModel(.gptj, vocab: 30)
        let adapter = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: ["q_proj", "v_proj"]), seed: 1)
        let illegal = LogitAdjustment(allowed: Array(0...20), disallowedPenalty: -50)
        let settings = RolloutSettings(termination: 13, maxLength: 6, minLength: 0, layout: .nextSentence, adjustment: illegal)
        let reward = try NextSentenceReward(model: m, termination: 13, adjustment: illegal, minLength: 0)
        var cfg = GFlowNetConfig()
        cfg.batchSize = 16
        cfg.replayProbability = 0
        let trainer = try GFlowNetTrainer(model: m, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [1, 2, 3])],
                                          rollout: settings, config: cfg)
        let trajs = try trainer.engine.generate(prompt: [1, 2, 3], count: 16, temperature: 1.5, adapter: adapter, seed: 2)
        let logR = try reward.logRewards(prompt: trainer.prompts[0], trajectories: trajs)
        let (lpf, lpt) = try trainer.pass.forward(prompt: [1, 2, 3], trajectories: trajs, adapter: adapter)
        let terms = trajs.enumerated().map { TrajectoryTerms(n: $1.n, truncated: $1.truncated, logPF: lpf[$0], logPT: lpt[$0], logR: logR[$0]) }
        let loss = try Objective.subTB.evaluate(terms, layout: .nextSentence).loss
        XCTAssertLessThan(loss, 1e-8, "q = p_LM at init ⇒ zero loss")
        XCTAssertTrue(trajs.contains { $0.n > 1 })
        // after training steps the reward (adapter off) still equals the untouched base model's scores
        for _ in 0..<3 { try trainer.trainStep() }
        XCTAssertTrue(adapter.factors.values.contains { f in f.b.array.contains { $0 != 0 } }, "training changed the adapter")
        XCTAssertEqual(try reward.logRewards(prompt: trainer.prompts[0], trajectories: trajs), logR)
        let (lpf2, _) = try trainer.pass.forward(prompt: [1, 2, 3], trajectories: trajs, adapter: adapter)
        XCTAssertNotEqual(lpf2, lpf, "the policy moved")
        let (base, _) = try trainer.pass.forward(prompt: [1, 2, 3], trajectories: trajs, adapter: nil)
        for (a, b) in zip(base.joined(), lpf.joined()) { XCTAssertEqual(a, b, accuracy: 1e-5, "adapter off = base model") }
    }

    // MARK: the random-integer reward table

    func testRandomIntegerRewardTable() throws {
        let tok = try tokenizer()
        let numbers = RandomIntegerReward.numberTokens(tokenizer: tok)
        XCTAssertEqual(numbers.count, 100)
        let eos: Int32 = 50256
        let r = RandomIntegerReward(numberTokens: numbers, termination: eos)
        func ids(_ s: String) -> Int32 { tok.encode(s, allowSpecial: false)[0] }
        XCTAssertEqual(r.logReward([]), -8)
        XCTAssertEqual(r.logReward([ids("49")]), 8)
        XCTAssertEqual(r.logReward([ids("49"), eos]), 8)
        XCTAssertEqual(r.logReward([ids("4"), ids("9")]), -8)
        XCTAssertEqual(r.logReward([ids("49"), ids("x"), ids("y")]), -32)
        XCTAssertEqual(r.logReward([ids("100")]), -8)
        XCTAssertEqual(r.logReward([ids(" 49")]), -8)
        let prompt = tok.encode("The following is a random integer drawn uniformly between 0 and 100: ")
        XCTAssertEqual(prompt, [464, 1708, 318, 257, 4738, 18253, 7428, 42096, 1022, 657, 290, 1802, 25, 220])
    }

    // MARK: calculator

    func testCalculator() throws {
        let c = Calculator()
        let cases: [(String, String?)] = [
            (" 6 - 0 =", " 6"), (" 6 - 0 = 6, 6 - 4 =", " 2"), (" 6 - 0 = 6, 6 - 4 = 2, 2 - 8 =", " -6"),
            (" 1 - 9 = -8, -8 + 8 =", " 0"), (" 5 - -3 =", " 8"), (" 5 -3 =", " 2"), (" 6 - 0 - 4 =", " -4"),
            (" 12 - 30 - 4 =", " -4"), (" =", nil), (" 05 + 3 =", nil),
        ]
        for (text, want) in cases {
            XCTAssertEqual(c.output(forText: "Question: 6 - 0 - 4 - 8 = ? Answer:" + text), want, text)
        }
        XCTAssertEqual(Calculator(mode: .fixed).output(forText: "Answer: 12 - 30 - 4 ="), " 26")
        // the tool in a rollout: output is context, not actions, and the reward sees it
        let tok = try tokenizer()
        let cfg = ModelConfig.tiny(.gpt2, vocab: 50257, embd: 16, layers: 1, heads: 2, positions: 64)
        let w = try ModelWeights.random(config: cfg, seed: 1)
        let m = Model(transformer: Transformer(weights: w, threads: 1), tokenizer: tok)
        let settings = RolloutSettings(termination: 50256, maxLength: 12, tool: Calculator())
        let engine = try RolloutEngine(model: m, settings: settings)
        let x = tok.encode("Question: 6 - 0 - 4 - 8 = ? Answer:")
        let seed = tok.encode("6 - 0 =, 6 - 4 =")
        let t = try engine.generate(prompt: x, count: 1, temperature: 1, adapter: nil, seed: 0, actions: [seed])[0]
        XCTAssertEqual(t.actions, seed)
        XCTAssertEqual(try tok.decode(Array(t.state)), "6 - 0 = 6, 6 - 4 = 2")
        XCTAssertEqual(t.stateLength.count, seed.count + 1)
        XCTAssertGreaterThan(t.state.count, seed.count)
    }

    // MARK: answer extraction and vote

    func testAnswerExtractionAndVotes() {
        XCTAssertEqual(AnswerVote.extractInteger("... 9 + 4 = 13, 13 - 8 = 5"), 5)
        XCTAssertEqual(AnswerVote.extractInteger("... = 5."), 5)
        XCTAssertNil(AnswerVote.extractInteger("abc"))
        XCTAssertEqual(AnswerVote.majority([3, 5, 3, 5]), 3)
        XCTAssertEqual(AnswerVote.majority(["subjective", "objective", "objective"]), "objective")
    }

    // MARK: replay buffer

    func testReplayBufferRules() throws {
        let b = try ReplayBuffer(capacity: 3, tolerance: 0.25)
        func item(_ r: Double, _ a: [Int32], _ text: String? = nil) -> ReplayItem {
            ReplayItem(logR: r, text: text ?? a.map(String.init).joined(separator: ","), actions: a,
                       logRewards: Array(repeating: r, count: a.count + 1), truncated: false)
        }
        XCTAssertTrue(try b.add("k", item(1, [1, 2, 3, 4, 5, 6, 7, 8])))
        XCTAssertFalse(try b.add("k", item(5, [9], "1,2,3,4,5,6,7,8")), "(a) identical text rejected")
        XCTAssertFalse(try b.add("k", item(0.5, [1, 2, 3, 4, 5, 6, 7, 9])), "(b) near-duplicate with lower reward rejected")
        XCTAssertTrue(try b.add("k", item(2, [1, 2, 3, 4, 5, 6, 7, 9])), "(b) near-duplicate with higher reward replaces")
        XCTAssertEqual(b.count("k"), 1)
        XCTAssertEqual(b.items("k")[0].logR, 2)
        XCTAssertTrue(try b.add("k", item(0, [20, 21])))
        XCTAssertTrue(try b.add("k", item(3, [30, 31])))
        XCTAssertFalse(try b.add("k", item(-1, [40, 41])), "(c) at capacity the newcomer with the lowest reward is evicted")
        XCTAssertTrue(try b.add("k", item(4, [50, 51])))
        XCTAssertEqual(Set(b.items("k").map(\.logR)), [2, 3, 4], "(c) the minimum is evicted")
        var rng = RNG(seed: 1)
        XCTAssertEqual(b.sample("k", count: 5, rng: &rng)?.count, 3, "(d) fewer items than asked: all of them")
        XCTAssertNil(b.sample("absent", count: 2, rng: &rng))
        // (e) prioritised frequencies ∝ exp(log R): χ² over 3 bins
        let n = 30_000
        var counts: [Double: Int] = [:]
        for _ in 0..<(n / 3) { for it in b.sample("k", count: 3, rng: &rng)! where b.count("k") >= 3 { counts[it.logR, default: 0] += 0 } }
        let draws = b.sample("k", count: 2, rng: &rng)!
        XCTAssertEqual(draws.count, 2)
        counts = [:]
        for _ in 0..<n { counts[b.sample("k", count: 2, rng: &rng)![0].logR, default: 0] += 1 }
        let z = exp(2.0) + exp(3.0) + exp(4.0)
        var chi2 = 0.0
        for r in [2.0, 3.0, 4.0] {
            let e = Double(n) * exp(r) / z
            chi2 += pow(Double(counts[r] ?? 0) - e, 2) / e
        }
        XCTAssertLessThan(chi2, 13.8, "χ² with 2 degrees of freedom at p = 0.001")
        // (f) uniform variant
        let u = try ReplayBuffer(capacity: 3, tolerance: 0.25, prioritized: false, returnAllWhenSmall: false)
        for it in b.items("k") { try u.add("k", it) }
        counts = [:]
        for _ in 0..<n { counts[u.sample("k", count: 1, rng: &rng)![0].logR, default: 0] += 1 }
        chi2 = [2.0, 3.0, 4.0].reduce(0) { $0 + pow(Double(counts[$1] ?? 0) - Double(n) / 3, 2) / (Double(n) / 3) }
        XCTAssertLessThan(chi2, 13.8)
        // save / load round trip
        let restored = try ReplayBuffer.deserialize(b.serialized())
        XCTAssertEqual(restored.items("k"), b.items("k"))
        XCTAssertThrowsError(try ReplayBuffer.deserialize(Array("{\"format\":\"x\"}".utf8)))
        XCTAssertThrowsError(try b.add("k", item(.nan, [60])))
    }

    // MARK: schedules, behaviour mix

    func testSchedules() {
        let arith = LinearRamp(start: 1.1, end: 0.5, horizon: 150)
        for (s, v) in [(0, 1.1), (75, 0.8), (150, 0.5), (1000, 0.5)] { XCTAssertEqual(arith.value(step: s), v, accuracy: 1e-12) }
        XCTAssertEqual(LinearRamp(start: 1.1, end: 0.85, horizon: 100).value(step: 50), 0.975, accuracy: 1e-12)
        XCTAssertEqual(LinearRamp(start: 1.0, end: 0.8, horizon: 750).value(step: 375), 0.9, accuracy: 1e-12)
        let lr = LRSchedule.linearWarmup(warmupSteps: 20)
        for (s, v) in [(0, 0.0), (10, 5e-5), (20, 1e-4), (500, 1e-4)] { XCTAssertEqual(1e-4 * lr.multiplier(step: s), v, accuracy: 1e-15) }
        let subj = LRSchedule.warmupLinearDecay(warmupSteps: 100, totalSteps: 1000)
        for (s, v) in [(50, 0.5), (100, 1.0), (550, 0.5), (1000, 0.0)] { XCTAssertEqual(subj.multiplier(step: s), v, accuracy: 1e-12) }
    }

    func testBehaviourMix() {
        let cfg = GFlowNetConfig()
        var rng = RNG(seed: 3)
        var on = 0, rep = 0, temp = 0
        var taus: [Double] = []
        let n = 10_000
        for _ in 0..<n {
            switch Behaviour.choose(config: cfg, rng: &rng) {
            case .onPolicy: on += 1
            case .replay: rep += 1
            case .tempered(let t): temp += 1; taus.append(t)
            }
        }
        XCTAssertEqual(Double(on) / Double(n), 0.25, accuracy: 0.02)
        XCTAssertEqual(Double(rep) / Double(n), 0.25, accuracy: 0.02)
        XCTAssertEqual(Double(temp) / Double(n), 0.5, accuracy: 0.02)
        // Kolmogorov–Smirnov against U[0.5, 2]
        taus.sort()
        var d = 0.0
        for (i, t) in taus.enumerated() {
            let f = (t - 0.5) / 1.5
            d = max(d, abs(Double(i + 1) / Double(taus.count) - f), abs(f - Double(i) / Double(taus.count)))
        }
        XCTAssertLessThan(d, 1.63 / Double(taus.count).squareRoot(), "KS at p = 0.01")
    }

    /// Behaviour-temperature annealing: the tempered τ stays inside the range of its step, which moves linearly
    /// from [2, 4] to [0.5, 1] over 100 steps; without a horizon it never moves.
    func testBehaviourTemperatureAnnealing() {
        var c = GFlowNetConfig()
        c.onPolicyProbability = 0
        c.replayProbability = 0
        c.temperatureLow = 2
        c.temperatureHigh = 4
        c.temperatureLowEnd = 0.5
        c.temperatureHighEnd = 1
        c.temperatureHorizon = 100
        var rng = RNG(seed: 4)
        for (step, lo, hi) in [(0, 2.0, 4.0), (50, 1.25, 2.5), (100, 0.5, 1.0), (500, 0.5, 1.0)] {
            let r = Behaviour.temperatureRange(config: c, step: step)
            XCTAssertEqual(r.low, lo, accuracy: 1e-12)
            XCTAssertEqual(r.high, hi, accuracy: 1e-12)
            var taus: [Double] = []
            for _ in 0..<2000 {
                guard case .tempered(let t) = Behaviour.choose(config: c, step: step, rng: &rng) else { return XCTFail() }
                taus.append(t)
            }
            XCTAssertGreaterThanOrEqual(taus.min()!, lo)
            XCTAssertLessThanOrEqual(taus.max()!, hi)
            XCTAssertEqual(taus.reduce(0, +) / 2000, (lo + hi) / 2, accuracy: 0.05 * (hi - lo))
        }
        c.temperatureHorizon = 0
        XCTAssertTrue(Behaviour.temperatureRange(config: c, step: 1000) == (2, 4))
        c.temperatureHorizon = -1
        XCTAssertThrowsError(try c.validate())
    }

    /// REINFORCE is on-policy: replayed or tempered batches are refused rather than taken silently.
    func testReinforceRefusesOffPolicyBatches() {
        var c = GFlowNetConfig()
        c.objective = .reinforce
        XCTAssertThrowsError(try c.validate())          // the defaults replay and temper
        c.onPolicyProbability = 1
        c.replayProbability = 0
        XCTAssertNoThrow(try c.validate())
        c.onPolicyProbability = 0.5
        XCTAssertThrowsError(try c.validate())
        c.temperatureLow = 1
        c.temperatureHigh = 1
        XCTAssertNoThrow(try c.validate(), "τ = 1 'tempered' batches are on-policy")
        c.temperatureHorizon = 10
        c.temperatureLowEnd = 0.5
        XCTAssertThrowsError(try c.validate())
        c.objective = .subTB
        XCTAssertNoThrow(try c.validate(), "GFlowNet objectives are off-policy")
    }

    // MARK: reward scoring layout

    func testLMLikelihoodRewardLayout() throws {
        let m = try tinyModel(.gpt2, vocab: 40)
        let ctx = try InferenceContext(model: m)
        let zMask = LogitAdjustment(allowed: Array(1...10), disallowedPenalty: -99)
        let x: [Int32] = [30, 31, 32], y: [Int32] = [33, 34, 35], demos: [Int32] = [36, 37]
        let reward = try LMLikelihoodReward(model: m, demos: demos, zAdjustment: zMask, minLength: 2)
        let t = Trajectory(actions: [3, 15, 4], truncated: false)   // 15 is penalised at Z positions
        let rows = try reward.logRewards(prompt: PromptSpec(x: x, y: y), trajectories: [t, Trajectory(actions: [], truncated: false)])
        // reference: Σ log p of Z tokens with the penalty + Σ log p of Y tokens without, given demos + X
        func expected(_ z: [Int32]) throws -> Double {
            let full = demos + x
            let zs = try ctx.score([(full, z)], params: ScoreParams(adjustment: zMask))[0].total
            let ys = try ctx.score([(full + z, y)])[0].total
            return zs + ys
        }
        XCTAssertEqual(rows[0][0], -99, "|Z| < min_len ⇒ −99 exactly")
        XCTAssertEqual(rows[0][1], -99)
        XCTAssertEqual(rows[0][2], try expected([3, 15]), accuracy: 1e-3)
        XCTAssertEqual(rows[0][3], try expected([3, 15, 4]), accuracy: 1e-3)
        let noMin = try LMLikelihoodReward(model: m, demos: demos, zAdjustment: zMask, minLength: 0)
        let r0 = try noMin.logRewards(prompt: PromptSpec(x: x, y: y), trajectories: [Trajectory(actions: [], truncated: false)])
        XCTAssertEqual(r0[0][0], try ctx.score([(demos + x, y)])[0].total, accuracy: 1e-3, "empty Z scores log p(Y|X)")
        XCTAssertEqual(rows[1], [-99])
    }

    // MARK: host callbacks, NaN, checkpoints

    func setupTrainer(reward: RewardFunction, seed: UInt64 = 1, replay: Double = 0.25) throws -> GFlowNetTrainer {
        let m = try tinyModel(.gpt2, vocab: 20)
        let adapter = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn"]), seed: seed)
        var cfg = GFlowNetConfig()
        cfg.batchSize = 4
        cfg.gradAccumulation = 2
        cfg.learningRate = 1e-2
        cfg.schedule = .constant
        cfg.replayProbability = replay
        cfg.seed = seed
        return try GFlowNetTrainer(model: m, adapter: adapter, reward: reward,
                                   prompts: [PromptSpec(x: [5, 6]), PromptSpec(x: [7, 8, 9], y: [3])],
                                   rollout: RolloutSettings(termination: 0, maxLength: 4), config: cfg)
    }

    func testNaNRewardSkipsTheStepAndChangesNothing() throws {
        var poison = false
        let reward = CallbackReward { _, states throws(GFNError) in
            states.map { poison ? .nan : -Double($0.count) }
        }
        let trainer = try setupTrainer(reward: reward)
        try trainer.trainStep()
        let before = trainer.adapter.factors.mapValues { ($0.a.array, $0.b.array) }
        let step = trainer.step
        let bufferBefore = trainer.buffer.serialized()
        poison = true
        XCTAssertThrowsError(try trainer.trainStep()) { XCTAssertEqual(($0 as? GFNError)?.status, .numerical) }
        XCTAssertEqual(trainer.step, step)
        XCTAssertEqual(trainer.buffer.serialized(), bufferBefore)
        for (k, v) in trainer.adapter.factors {
            XCTAssertEqual(v.a.array, before[k]!.0)
            XCTAssertEqual(v.b.array, before[k]!.1)
        }
        let failing = CallbackReward { _, _ throws(GFNError) in throw GFNError(.callback, "host says no") }
        let t2 = try setupTrainer(reward: failing)
        XCTAssertThrowsError(try t2.trainStep()) { XCTAssertEqual(($0 as? GFNError)?.status, .callback) }
        XCTAssertEqual(t2.step, 0)
        // the next step after a failure behaves as if the failure never happened
        poison = false
        try trainer.trainStep()
        XCTAssertEqual(trainer.step, step + 1)
    }

    func testCheckpointResumeIsExact() throws {
        let reward = CallbackReward { _, states throws(GFNError) in states.map { s in -Double(s.count) + Double(s.first ?? 0) / 10 } }
        let a = try setupTrainer(reward: reward, seed: 4)
        for _ in 0..<3 { try a.trainStep() }
        let dir = NSTemporaryDirectory() + "gfnlm-gfn-ckpt-\(getpid())"
        try a.save(checkpoint: dir)
        for _ in 0..<3 { try a.trainStep() }
        let b = try setupTrainer(reward: reward, seed: 4)
        try b.load(checkpoint: dir)
        XCTAssertEqual(b.step, 3)
        for _ in 0..<3 { try b.trainStep() }
        for (k, v) in a.adapter.factors {
            XCTAssertEqual(v.a.array, b.adapter.factors[k]!.a.array, "\(k) A")
            XCTAssertEqual(v.b.array, b.adapter.factors[k]!.b.array, "\(k) B")
        }
        XCTAssertEqual(a.buffer.serialized(), b.buffer.serialized())
        try? FileManager.default.removeItem(atPath: dir)
    }

    func testTerminalOnlyRewardNeedsTB() throws {
        let reward = CallbackReward(terminalOnly: true) { _, states throws(GFNError) in states.map { _ in 0 } }
        XCTAssertThrowsError(try setupTrainer(reward: reward))
    }

    func testAmortizedSamplingAndEstimates() throws {
        let reward = CallbackReward { _, states throws(GFNError) in states.map { -Double($0.count) } }
        let trainer = try setupTrainer(reward: reward, replay: 0)
        let samples = try trainer.sample(prompt: [5, 6], count: 50, seed: 1)
        XCTAssertEqual(samples.count, 50)
        XCTAssertTrue(samples.allSatisfy { $0.trajectory.n <= 4 })
        // IW log Z and ESS on a toy with known values
        XCTAssertEqual(SampleEstimates.logZ(logR: [0, 0], logQ: [log(0.5), log(0.5)]), log(2), accuracy: 1e-12)
        XCTAssertEqual(SampleEstimates.effectiveSampleSize(logR: [1, 1, 1], logQ: [0, 0, 0]), 3, accuracy: 1e-12)
    }

    /// The amortized sampler's log q (`GFlowNetTrainer.sample`) against an independent computation: full forwards
    /// of X ⊕ state with the adapter (no cache), log-softmax in double precision of logits + the soft mask, the
    /// min_len renormalisation by hand, and the layout's stop at max_len. Also against the exact enumeration's
    /// log q of the same sequences (a third code path).
    func testAmortizedSamplerReturnsThePolicysLogQ() throws {
        let m = try tinyModel(.gpt2, vocab: 20)
        let adapter = try randomAdapter(m, seed: 8)
        let V = m.config.vocabSize
        let allowed = Array(Int32(1)...Int32(12))
        let adjustment = LogitAdjustment(allowed: allowed, disallowedPenalty: -99)
        let reward = CallbackReward { _, states throws(GFNError) in states.map { -Double($0.count) } }
        for layout in [TerminalLayout.forcedStop, .nextSentence] {
            var cfg = GFlowNetConfig()
            cfg.batchSize = 4
            let settings = RolloutSettings(termination: 0, maxLength: 3, minLength: 2, layout: layout, adjustment: adjustment)
            let trainer = try GFlowNetTrainer(model: m, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [13, 14])],
                                              rollout: settings, config: cfg)
            let x: [Int32] = [13, 14]
            // log-softmax of the policy (logits + mask) after X ⊕ s, in double precision
            func policy(_ s: [Int32]) throws -> [Double] {
                let ids = x + s
                var logits = [Float](repeating: 0, count: ids.count * V)
                try logits.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
                    try m.logits(ids: ids, batch: 1, seqLen: ids.count, adapter: adapter, into: b.baseAddress!)
                }
                let row = (0..<V).map { v in
                    Double(logits[(ids.count - 1) * V + v]) + (allowed.contains(Int32(v)) || v == 0 ? 0 : -99)
                }
                let mx = row.max()!
                let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
                return row.map { $0 - lse }
            }
            var truncatedSeen = 0, stoppedSeen = 0
            for tau: Float in [1, 1.7] {
                let samples = try trainer.sample(prompt: x, count: 40, temperature: tau, seed: 3)
                for smp in samples {
                    let t = smp.trajectory
                    XCTAssertGreaterThanOrEqual(t.n, 2)
                    XCTAssertEqual(smp.tokenLogProbs.count, t.state.count)
                    var expected = 0.0
                    for k in 0..<t.n {
                        let lp = try policy(Array(t.actions[0..<k]))
                        var v = lp[Int(t.actions[k])]
                        if k < 2 { v -= log(1 - exp(lp[0])) }   // the sampler never stops before min_len
                        XCTAssertEqual(smp.actionLogProbs[k], v, accuracy: 2e-4, "\(layout) τ \(tau) action \(k)")
                        XCTAssertEqual(smp.tokenLogProbs[k], smp.actionLogProbs[k])
                        expected += v
                    }
                    if t.truncated {
                        truncatedSeen += 1
                        let stop = layout == .forcedStop ? 0 : try policy(t.actions)[0]
                        XCTAssertEqual(smp.terminalLogProb, stop, accuracy: 2e-4)
                        expected += stop
                    } else {
                        stoppedSeen += 1
                        let stop = try policy(t.actions)[0]
                        XCTAssertEqual(smp.terminalLogProb, stop, accuracy: 2e-4)
                        expected += stop
                    }
                    XCTAssertEqual(smp.logQ, expected, accuracy: 1e-3)
                }
            }
            XCTAssertGreaterThan(truncatedSeen, 0)
            XCTAssertGreaterThan(stoppedSeen, 0)
            // the exact enumeration's log q (the sampler's distribution over the allowed space) agrees
            let exact = try trainer.engine.exactDistribution(prompt: PromptSpec(x: x), vocabulary: allowed,
                                                             adapter: adapter, reward: reward)
            var index: [[Int32]: Double] = [:]
            for (z, lq) in zip(exact.sequences, exact.logQ) { index[z] = lq }
            for smp in try trainer.sample(prompt: x, count: 30, seed: 11) {
                guard let lq = index[smp.trajectory.actions] else { XCTFail("sampled outside the space"); continue }
                XCTAssertEqual(smp.logQ, lq, accuracy: 1e-3)
            }
        }
    }

    /// Reward temperature ≠ 1 through the replay buffer: items are stored untempered (the reward's own values, at
    /// T_R = 2), and a replayed batch is re-tempered with the current T_R: its loss equals SubTB on the stored
    /// rewards divided by T_R(step), recomputed here from an independent teacher-forced pass (lr 0: the policy
    /// stays put).
    func testRewardTemperatureRoundTripThroughTheReplayBuffer() throws {
        let m = try tinyModel(.gpt2, vocab: 20)
        let adapter = try randomAdapter(m, seed: 3)
        let reward = CallbackReward { _, states throws(GFNError) in
            states.map { s in -1.5 * Double(s.count) + Double(s.first ?? 0) / 4 }
        }
        let settings = RolloutSettings(termination: 0, maxLength: 4)
        func trainer(onPolicy: Double, replay: Double) throws -> GFlowNetTrainer {
            var cfg = GFlowNetConfig()
            cfg.batchSize = 4
            cfg.learningRate = 0
            cfg.schedule = .constant
            cfg.rewardTemperature = LinearRamp(start: 2, end: 0.5, horizon: 3)
            cfg.onPolicyProbability = onPolicy
            cfg.replayProbability = replay
            cfg.temperatureLow = 1
            cfg.temperatureHigh = 1
            return try GFlowNetTrainer(model: m, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [5, 6])],
                                       rollout: settings, config: cfg)
        }
        // fresh samples at T_R = 2 are stored with the reward's untempered values
        let a = try trainer(onPolicy: 0.5, replay: 0.5)
        XCTAssertEqual(a.rewardTemperature, 2)
        for _ in 0..<2 { try a.trainStep() }
        let key = PromptSpec(x: [5, 6]).key
        let stored = a.buffer.items(key)
        XCTAssertFalse(stored.isEmpty)
        for it in stored {
            let raw = try reward.logRewards(prompt: PromptSpec(x: [5, 6]), trajectories: [Trajectory(actions: it.actions, truncated: it.truncated)])[0]
            XCTAssertEqual(it.logRewards, raw)
            XCTAssertEqual(it.logR, raw[it.actions.count])
        }
        // replay only, one seeded item (returned whole while the buffer holds fewer items than a batch)
        let b = try trainer(onPolicy: 0, replay: 1)
        let demo: [Int32] = [3, 9, 4]
        try b.seedBuffer(prompt: 0, demonstrations: [demo])
        let item = b.buffer.items(key)[0]
        let traj = Trajectory(actions: demo, truncated: false)
        XCTAssertEqual(item.logRewards, try reward.logRewards(prompt: PromptSpec(x: [5, 6]), trajectories: [traj])[0])
        let pass = try PolicyPass(engine: b.engine)
        let (lpf, lpt) = try pass.forward(prompt: [5, 6], trajectories: [traj], adapter: adapter)
        var seen: Set<Double> = []
        for _ in 0..<4 {
            let tR = b.rewardTemperature
            seen.insert(tR)
            let stats = try b.trainStep()
            XCTAssertEqual(stats.replayBatches, 1)
            XCTAssertEqual(stats.rewardTemperature, tR)
            let expected = try Objective.subTB.evaluate([TrajectoryTerms(n: 3, truncated: false, logPF: lpf[0], logPT: lpt[0],
                                                                         logR: item.logRewards.map { $0 / tR })],
                                                        layout: .forcedStop).loss
            XCTAssertEqual(stats.loss, expected, accuracy: 1e-4 * max(1, expected), "T_R \(tR)")
            XCTAssertEqual(stats.meanLogR, item.logR, "statistics report the untempered log R")
            XCTAssertEqual(b.buffer.items(key), [item], "replayed items are not re-added or re-tempered")
        }
        XCTAssertEqual(seen, [2, 1.5, 1, 0.5])
    }
}
