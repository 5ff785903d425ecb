import Foundation
import XCTest
@testable import GFNLM

/// PPO, the paper's reward-maximising baseline: the clipped surrogate against hand values and central
/// differences, the leave-one-out baseline, trl's adaptive KL controller, the refusal of off-policy batches, and a
/// short training run on a tiny model.
final class PPOTests: XCTestCase {
    /// Two trajectories (3 and 2 tokens), ε = 0.2, advantages (1.5, −0.5). Ratios e^{0.1} (inside the range),
    /// e^{−0.3} (below it, A > 0: the unclipped term is the larger, its gradient flows), e^{0.3} (above it, A > 0:
    /// clipped, no gradient), 1, e^{−0.5} (below, A < 0: clipped, no gradient). Loss (hand):
    /// (−1.5e^{0.1} − 1.5e^{−0.3} − 1.5·1.2 + 0.5 + 0.5·0.8)/5 = −0.7337967416.
    func testClippedSurrogateGoldenAndGradient() throws {
        let new: [[Double]] = [[-1.0, -0.5, -0.4], [-2.0, -1.5]]
        let old: [[Double]] = [[-1.1, -0.2, -0.7], [-2.0, -1.0]]
        let adv = [1.5, -0.5]
        let loss = PPOLoss(clipRange: 0.2)
        let r = try loss.evaluate(new: new, old: old, advantages: adv)
        XCTAssertEqual(r.loss, -0.7337967416272098, accuracy: 1e-12)
        XCTAssertEqual(r.tokens, 5)
        XCTAssertEqual(r.clipFraction, 0.4, accuracy: 1e-12)
        XCTAssertEqual(r.gradient[0][0], -0.3315512754226943, accuracy: 1e-12)
        XCTAssertEqual(r.gradient[0][1], -0.22224546620451538, accuracy: 1e-12)
        XCTAssertEqual(r.gradient[0][2], 0)
        XCTAssertEqual(r.gradient[1][0], 0.1, accuracy: 1e-12)
        XCTAssertEqual(r.gradient[1][1], 0)
        // central differences on every token (no point sits on a kink of the clip)
        let h = 1e-6
        for b in new.indices {
            for k in new[b].indices {
                var p = new, m = new
                p[b][k] += h; m[b][k] -= h
                let fd = (try loss.evaluate(new: p, old: old, advantages: adv).loss
                          - loss.evaluate(new: m, old: old, advantages: adv).loss) / (2 * h)
                XCTAssertEqual(r.gradient[b][k], fd, accuracy: 1e-7, "token \(b),\(k)")
            }
        }
        // at ratio 1 (the first update) the surrogate's gradient is REINFORCE's: −A/N per token
        let first = try loss.evaluate(new: old, old: old, advantages: adv)
        XCTAssertEqual(first.gradient[0], [-0.3, -0.3, -0.3].map { $0 }, "−1.5/5")
        XCTAssertEqual(first.gradient[1][0], 0.1, accuracy: 1e-15)
        XCTAssertEqual(first.clipFraction, 0)
    }

    func testLeaveOneOutBaseline() throws {
        XCTAssertEqual(try PPOLoss.leaveOneOut([0.5, -1, 2]), [0, -2.25, 2.25])
        XCTAssertThrowsError(try PPOLoss.leaveOneOut([1]))
    }

    /// trl's AdaptiveKLController: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon).
    func testAdaptiveKLController() {
        var c = AdaptiveKLController(value: 0.2, target: 6, horizon: 10000)
        c.update(currentKL: 12, steps: 8)   // error clipped to +0.2
        XCTAssertEqual(c.value, 0.2 * (1 + 0.2 * 8 / 10000), accuracy: 1e-15)
        c = AdaptiveKLController(value: 0.2, target: 6, horizon: 10000)
        c.update(currentKL: 3, steps: 8)    // error −0.5, clipped to −0.2
        XCTAssertEqual(c.value, 0.199968, accuracy: 1e-15)
        c = AdaptiveKLController(value: 0.2, target: 6, horizon: 10000)
        c.update(currentKL: 6.6, steps: 8)  // error 0.1 (inside the clip)
        XCTAssertEqual(c.value, 0.200016, accuracy: 1e-15)
        var fixed = AdaptiveKLController(value: 0.2, target: nil, horizon: 10000)
        fixed.update(currentKL: 100, steps: 8)
        XCTAssertEqual(fixed.value, 0.2)
    }

    /// PPO's ratio is to its own sampler: tempered or replayed batches are refused, like REINFORCE's.
    func testPPORefusesOffPolicyBatches() throws {
        var c = GFlowNetConfig()
        c.objective = .ppo
        XCTAssertThrowsError(try c.validate())             // the defaults mix tempered and replayed batches
        c.onPolicyProbability = 1
        c.replayProbability = 0
        XCTAssertNoThrow(try c.validate())
        c.onPolicyProbability = 0.5
        XCTAssertThrowsError(try c.validate())             // the other half would be tempered
        c.temperatureLow = 1; c.temperatureHigh = 1
        XCTAssertNoThrow(try c.validate())                 // τ = 1 is on-policy
        c.temperatureHorizon = 10; c.temperatureHighEnd = 2
        XCTAssertThrowsError(try c.validate())             // annealed towards τ ≠ 1
        c = GFlowNetConfig(); c.objective = .ppo; c.onPolicyProbability = 1; c.replayProbability = 0
        c.batchSize = 1
        XCTAssertThrowsError(try c.validate())             // no leave-one-out baseline
        c.batchSize = 4; c.ppo.epochs = 0
        XCTAssertThrowsError(try c.validate())
        c.ppo.epochs = 2; c.ppo.clipRange = 0
        XCTAssertThrowsError(try c.validate())
        XCTAssertThrowsError(try Objective.ppo.evaluate([], layout: .forcedStop))
    }

    func trainer(steps: Int, epochs: Int = 4, klTarget: Double? = 6, minLength: Int = 0)
        throws -> (GFlowNetTrainer, CallbackReward, PromptSpec) {
        let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
        let w = try ModelWeights.random(config: cfg, seed: 3, std: 0.3)
        let model = Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
        let table = GFlowNetTrainingTests.table()
        let reward = CallbackReward { _, states throws(GFNError) in states.map { table[$0] ?? -50 } }
        let adapter = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_proj", "c_fc"]), seed: 1)
        var settings = RolloutSettings(termination: 0, maxLength: 3, minLength: minLength)
        settings.adjustment = LogitAdjustment(allowed: GFlowNetTrainingTests.allowed, disallowedPenalty: -.infinity)
        var c = GFlowNetConfig()
        c.objective = .ppo
        c.batchSize = 16
        c.learningRate = 1e-2
        c.schedule = .constant
        c.onPolicyProbability = 1
        c.replayProbability = 0
        c.ppo.epochs = epochs
        c.ppo.klCoefficient = 0.05
        c.ppo.klTarget = klTarget
        let prompt = PromptSpec(x: [7, 8])
        return (try GFlowNetTrainer(model: model, adapter: adapter, reward: reward, prompts: [prompt], rollout: settings,
                                    config: c), reward, prompt)
    }

    /// At step 0 the adapter is the base model (LoRA B = 0): the KL estimate is 0, β moves down by the
    /// controller's rule, and training raises the expected log R under the exact sampler distribution.
    func testPPOTrainsTowardsHighReward() throws {
        let (t, reward, prompt) = try trainer(steps: 40)
        let allowed = GFlowNetTrainingTests.allowed
        func expectedLogR() throws -> Double {
            let d = try t.engine.exactDistribution(prompt: prompt, vocabulary: allowed, adapter: t.adapter, reward: reward)
            return zip(d.logQ, d.logR).reduce(0) { $0 + exp($1.0) * $1.1 }
        }
        let before = try expectedLogR()
        let s0 = try t.trainStep()
        XCTAssertEqual(s0.kl, 0, accuracy: 1e-5)
        XCTAssertEqual(s0.klCoefficient, 0.05 * (1 - 0.2 * 16 / 10000), accuracy: 1e-12)
        XCTAssertEqual(s0.trajectories, 16)
        XCTAssertTrue(s0.applied)
        var last = s0
        for _ in 1..<40 { last = try t.trainStep() }
        let after = try expectedLogR()
        print("PPO: E_q[log R] \(before) → \(after), KL to base \(last.kl), β \(last.klCoefficient), clipped \(last.clipFraction)")
        XCTAssertGreaterThan(after, before + 1)
        XCTAssertGreaterThan(last.kl, 0)
        XCTAssertEqual(t.step, 40)
    }

    /// The β of the KL controller survives a checkpoint round trip.
    func testPPOCheckpointKeepsTheKLCoefficient() throws {
        let (t, _, _) = try trainer(steps: 3, epochs: 1)
        for _ in 0..<3 { try t.trainStep() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gfnlm-ppo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try t.save(checkpoint: dir)
        let (u, _, _) = try trainer(steps: 3, epochs: 1)
        try u.load(checkpoint: dir)
        XCTAssertEqual(u.klController.value, t.klController.value)
        XCTAssertNotEqual(u.klController.value, 0.05)
        let a = try t.trainStep(), b = try u.trainStep()
        XCTAssertEqual(a.loss, b.loss, accuracy: 1e-9)
        XCTAssertEqual(a.klCoefficient, b.klCoefficient)
    }
}
