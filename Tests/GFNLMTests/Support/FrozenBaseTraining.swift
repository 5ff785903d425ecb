import XCTest
@testable import GFNLM

/// Training on a frozen base held in narrower weights (bf16, int8, 4-bit): LoRA SFT brings its loss down, full
/// fine-tuning is refused, and GFlowNet (SubTB) steps with sampling and scoring move the policy toward its target
/// (exact enumeration of a 3-token vocabulary).
func checkTrainingOnFrozenBase(_ w: ModelWeights, label: String, file: StaticString = #filePath,
                               line: UInt = #line) throws {
    let tf = Transformer(weights: w, threads: 2)
    let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_proj", "c_fc"]), seed: 1)
    let sft = try SFTTrainer(transformer: tf, adapter: ad, hyper: AdamWHyperparameters(lr: 1e-2))
    let batch = [SFTExample(context: [1, 2], target: [3, 4, 5]), SFTExample(context: [6], target: [7, 8])]
    let first = try sft.step(batch).loss
    var last = first
    for _ in 0..<30 { last = try sft.step(batch).loss }
    XCTAssertTrue(last.isFinite, label, file: file, line: line)
    XCTAssertLessThan(last, first * 0.7, label, file: file, line: line)
    XCTAssertThrowsError(try SFTTrainer(transformer: tf, adapter: nil), label, file: file, line: line) {
        XCTAssertEqual(($0 as? GFNError)?.status, .unsupported)
    }
    let model = Model(transformer: tf, tokenizer: nil)
    let reward = CallbackReward { _, states throws(GFNError) in states.map { Double($0.count) } }
    let adapter = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_attn", "c_proj", "c_fc"]), seed: 2)
    var settings = RolloutSettings(termination: 0, maxLength: 3, minLength: 0)
    settings.adjustment = LogitAdjustment(allowed: [1, 2, 3], disallowedPenalty: -.infinity)
    var c = GFlowNetConfig()
    c.batchSize = 8
    c.seed = 4
    let trainer = try GFlowNetTrainer(model: model, adapter: adapter, reward: reward, prompts: [PromptSpec(x: [7, 8])],
                                      rollout: settings, config: c)
    let prompt = PromptSpec(x: [7, 8])
    let before = try trainer.engine.exactDistribution(prompt: prompt, vocabulary: [1, 2, 3], adapter: trainer.adapter, reward: reward)
    XCTAssertEqual(before.massQ, 1, accuracy: 1e-4, label, file: file, line: line)
    for _ in 0..<40 { try trainer.trainStep() }
    let after = try trainer.engine.exactDistribution(prompt: prompt, vocabulary: [1, 2, 3], adapter: trainer.adapter, reward: reward)
    XCTAssertTrue(after.klTargetToQ.isFinite, label, file: file, line: line)
    XCTAssertLessThan(after.klTargetToQ, before.klTargetToQ, label, file: file, line: line)
}
