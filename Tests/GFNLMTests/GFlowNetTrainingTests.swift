import Foundation
import XCTest
@testable import GFNLM

/// Distribution matching measured exactly: a tiny model, 6 allowed tokens + ⊤, max_len 3, an arbitrary reward
/// table; after training KL(target ‖ q) over all 259 sequences must be ≤ 0.01.
final class GFlowNetTrainingTests: XCTestCase {
    static let term: Int32 = 0
    static let allowed: [Int32] = [1, 2, 3, 4, 5, 6]

    /// The reward table: log R of every sequence of ≤ 3 allowed tokens (`shortBoost` added below min_len).
    static func table(minLength: Int = 0, shortBoost: Double = 0) -> [[Int32]: Double] {
        var table: [[Int32]: Double] = [:]
        var rng = RNG(seed: 77)
        var frontier: [[Int32]] = [[]]
        table[[]] = 1.5 * rng.normal()
        for _ in 0..<3 {
            frontier = frontier.flatMap { s in Self.allowed.map { s + [$0] } }
            for z in frontier { table[z] = 1.5 * rng.normal() }
        }
        for (z, v) in table where z.count < minLength { table[z] = v + shortBoost }
        return table
    }

    func setup(objective: Objective, steps: Int, seed: UInt64 = 1, minLength: Int = 0, shortBoost: Double = 0,
               learnedRoot: Bool = false) throws -> (GFlowNetTrainer, RolloutEngine, CallbackReward, PromptSpec) {
        let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
        let w = try ModelWeights.random(config: cfg, seed: 3, std: 0.3)
        let model = Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
        let table = Self.table(minLength: minLength, shortBoost: shortBoost)
        let reward = CallbackReward { _, states throws(GFNError) in states.map { table[$0] ?? -50 } }
        let rank = Int(ProcessInfo.processInfo.environment["GFNLM_GFN_R"] ?? "") ?? 8
        let adapter = try LoRAAdapter(model: w, config: LoRAConfig(r: rank, alpha: Float(2 * rank), targets: ["c_attn", "c_proj", "c_fc"]), seed: seed)
        var settings = RolloutSettings(termination: Self.term, maxLength: 3, minLength: minLength)
        settings.adjustment = LogitAdjustment(allowed: Self.allowed, disallowedPenalty: -.infinity)
        var c = GFlowNetConfig()
        c.objective = objective
        c.batchSize = 32
        c.gradAccumulation = 1
        c.averageAccumulation = true
        c.learningRate = Double(ProcessInfo.processInfo.environment["GFNLM_GFN_LR"] ?? "") ?? 1e-2
        c.logZLearningRate = 0.1
        c.schedule = .cosine(warmupSteps: 10, totalSteps: steps)
        c.onPolicyProbability = 0.5
        c.replayProbability = 0
        c.temperatureLow = 1
        c.temperatureHigh = 2
        c.seed = seed
        c.learnedRootFlow = learnedRoot
        let prompt = PromptSpec(x: [7, 8])
        let trainer = try GFlowNetTrainer(model: model, adapter: adapter, reward: reward, prompts: [prompt],
                                          rollout: settings, config: c)
        return (trainer, trainer.engine, reward, prompt)
    }

    func train(_ objective: Objective, steps: Int, minLength: Int = 0, shortBoost: Double = 0,
               learnedRoot: Bool = false) throws -> (before: Double, after: Double, tv: Double) {
        let (trainer, engine, reward, prompt) = try setup(objective: objective, steps: steps, minLength: minLength,
                                                          shortBoost: shortBoost, learnedRoot: learnedRoot)
        let before = try engine.exactDistribution(prompt: prompt, vocabulary: Self.allowed, adapter: trainer.adapter, reward: reward)
        XCTAssertEqual(before.sequences.count, [259, 258, 252][minLength])
        XCTAssertEqual(before.massQ, 1, accuracy: 1e-4)
        for _ in 0..<steps { try trainer.trainStep() }
        let after = try engine.exactDistribution(prompt: prompt, vocabulary: Self.allowed, adapter: trainer.adapter, reward: reward)
        return (before.klTargetToQ, after.klTargetToQ, after.totalVariation)
    }

    func testSubTBMatchesTheTargetExactly() throws {
        let r = try train(.subTB, steps: Int(ProcessInfo.processInfo.environment["GFNLM_GFN_STEPS"] ?? "") ?? 2500)
        print("SubTB: KL(target‖q) \(r.before) → \(r.after), TV \(r.tv)")
        XCTAssertLessThanOrEqual(r.after, 0.01)
        XCTAssertLessThan(r.after, r.before / 10)
    }

    func testTBMatchesTheTargetExactly() throws {
        let r = try train(.tb, steps: Int(ProcessInfo.processInfo.environment["GFNLM_GFN_STEPS"] ?? "") ?? 2500)
        print("TB: KL(target‖q) \(r.before) → \(r.after), TV \(r.tv)")
        XCTAssertLessThanOrEqual(r.after, 0.01)
    }

    /// With min_len 1 the sampler never stops at once; TB must score trajectories by the sampler's renormalised
    /// first step, or the never-sampled ⊤ soaks up the mass (it did: q(⊤|X) 0.998 on the random-integer task).
    func testTBWithMinimumLengthMatchesTheSamplersTarget() throws {
        let r = try train(.tb, steps: Int(ProcessInfo.processInfo.environment["GFNLM_GFN_STEPS"] ?? "") ?? 2500, minLength: 1)
        print("TB, min_len 1: KL(target‖q) \(r.before) → \(r.after), TV \(r.tv)")
        XCTAssertLessThanOrEqual(r.after, 0.01)
    }

    // MARK: min_length = m: the target is R restricted to |Z| ≥ m, for every objective

    /// The terminal distribution of the sampler at the fixed point of the previous SubTB / DB treatment, which
    /// kept the reward's own values for the states shorter than m as flow terms: flows F(s) = R(s⊤) + Σ_a F(sa)
    /// over the whole tree, the sampler renormalised without ⊤ before m. Returns its total variation from R
    /// restricted to |Z| ≥ m.
    static func previousFixedPointTV(table: [[Int32]: Double], minLength m: Int) -> Double {
        var F: [[Int32]: Double] = [:]
        for z in table.keys.sorted(by: { $0.count > $1.count }) {
            F[z] = exp(table[z]!) + (z.count == 3 ? 0 : allowed.reduce(0) { $0 + F[z + [$1]]! })
        }
        var q: [[Int32]: Double] = [:]
        func walk(_ z: [Int32], _ p: Double) {
            let children = z.count == 3 ? 0 : allowed.reduce(0) { $0 + F[z + [$1]]! }
            if z.count >= m { q[z] = p * exp(table[z]!) / F[z]! }
            guard z.count < 3 else { return }
            let norm = z.count < m ? children : F[z]!
            for a in allowed { walk(z + [a], p * F[z + [a]]! / norm) }
        }
        walk([], 1)
        let support = table.keys.filter { $0.count >= m }
        let zm = support.reduce(0) { $0 + exp(table[$1]!) }
        return 0.5 * support.reduce(0) { $0 + abs(q[$1]! - exp(table[$1]!) / zm) }
    }

    /// min_len 2 with a reward that favours the (never terminal) sequences of one token (+4 on their log R):
    /// every objective must reach the restricted target; the previous treatment of SubTB and DB has a fixed point
    /// visibly away from it (checked exactly above), so this test fails for them.
    func minimumLength(_ objective: Objective, _ name: String, learnedRoot: Bool = false) throws {
        let boost = 4.0
        let old = Self.previousFixedPointTV(table: Self.table(minLength: 2, shortBoost: boost), minLength: 2)
        XCTAssertGreaterThan(old, 0.1, "the previous fixed point is away from the target")
        let r = try train(objective, steps: Int(ProcessInfo.processInfo.environment["GFNLM_GFN_STEPS"] ?? "") ?? 2500,
                          minLength: 2, shortBoost: boost, learnedRoot: learnedRoot)
        print("\(name), min_len 2: KL(target‖q) \(r.before) → \(r.after), TV \(r.tv) (previous fixed point: TV \(old))")
        XCTAssertLessThanOrEqual(r.after, 0.01)
        XCTAssertLessThan(r.tv, 0.05)
        XCTAssertLessThan(r.tv, old / 3)
    }

    func testSubTBWithMinimumLengthTwoMatchesTheRestrictedTarget() throws { try minimumLength(.subTB, "SubTB") }
    func testTBWithMinimumLengthTwoMatchesTheRestrictedTarget() throws { try minimumLength(.tb, "TB") }
    func testDBWithMinimumLengthTwoMatchesTheRestrictedTarget() throws { try minimumLength(.db, "DB") }

    /// The learned root flow (log Z instead of R(s_0⊤)/q(⊤|s_0)) reaches the same restricted target.
    func testSubTBWithALearnedRootFlowMatchesTheRestrictedTarget() throws {
        try minimumLength(.subTB, "SubTB, learned root", learnedRoot: true)
    }
}
