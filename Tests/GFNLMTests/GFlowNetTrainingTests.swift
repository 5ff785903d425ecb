import Foundation
import XCTest
@testable import GFNLM

/// Distribution matching measured exactly: a tiny model, 6 allowed tokens + ⊤, max_len 3, an arbitrary reward
/// table; after training KL(target ‖ q) over all 259 sequences must be ≤ 0.01.
final class GFlowNetTrainingTests: XCTestCase {
    static let term: Int32 = 0
    static let allowed: [Int32] = [1, 2, 3, 4, 5, 6]

    func setup(objective: Objective, steps: Int, seed: UInt64 = 1, minLength: Int = 0) throws -> (GFlowNetTrainer, RolloutEngine, CallbackReward, PromptSpec) {
        let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
        let w = try ModelWeights.random(config: cfg, seed: 3, std: 0.3)
        let model = Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
        var table: [[Int32]: Double] = [:]
        var rng = RNG(seed: 77)
        var frontier: [[Int32]] = [[]]
        table[[]] = 1.5 * rng.normal()
        for _ in 0..<3 {
            frontier = frontier.flatMap { s in Self.allowed.map { s + [$0] } }
            for z in frontier { table[z] = 1.5 * rng.normal() }
        }
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
        let prompt = PromptSpec(x: [7, 8])
        let trainer = try GFlowNetTrainer(model: model, adapter: adapter, reward: reward, prompts: [prompt],
                                          rollout: settings, config: c)
        return (trainer, trainer.engine, reward, prompt)
    }

    func train(_ objective: Objective, steps: Int, minLength: Int = 0) throws -> (before: Double, after: Double, tv: Double) {
        let (trainer, engine, reward, prompt) = try setup(objective: objective, steps: steps, minLength: minLength)
        let before = try engine.exactDistribution(prompt: prompt, vocabulary: Self.allowed, adapter: trainer.adapter, reward: reward)
        XCTAssertEqual(before.sequences.count, minLength == 0 ? 259 : 258)
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
}
