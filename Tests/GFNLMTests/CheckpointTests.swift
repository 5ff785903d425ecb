import Foundation
import XCTest
@testable import GFNLM

final class CheckpointTests: XCTestCase {
    func tmpDir(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "gfnlm-ckpt-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: d)
        return d
    }

    func data(_ vocab: Int) -> [[SFTExample]] {
        var rng = RNG(seed: 5)
        func toks(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.below(vocab)) } }
        return (0..<3).map { _ in [SFTExample(context: toks(2), target: toks(3)), SFTExample(context: toks(4), target: toks(2))] }
    }

    func values(_ t: SFTTrainer) -> [[Float]] { t.optimizer.parameters.map { $0.value.array } }

    /// Train N steps, checkpoint, train M more (the uninterrupted run); a new process-like trainer (fresh objects,
    /// other initial values) loads the checkpoint and trains the same M steps: parameters are bit-identical.
    func testKillAndResumeIsBitIdentical() throws {
        for mode in ["lora", "full"] {
            let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 1, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let batches = data(w.config.vocabSize)
            let cfg = LoRAConfig(r: 4, alpha: 8, dropout: 0.1, targets: ["c_attn", "mlp.c_proj"])
            func trainer(seed: UInt64) throws -> SFTTrainer {
                let ad = mode == "lora" ? try LoRAAdapter(model: w, config: cfg, seed: seed) : nil
                let t = try SFTTrainer(transformer: tf, adapter: ad, hyper: .init(lr: 1e-2),
                                       schedule: .warmupLinearDecay(warmupSteps: 2, totalSteps: 20), maxGradNorm: 1)
                t.dropoutRNG = RNG(seed: seed + 100)
                return t
            }
            let dir = tmpDir(mode)
            let a = try trainer(seed: 1)
            for s in 0..<4 { _ = try a.step(batches[s % 3]) }
            try a.save(checkpoint: dir)
            for s in 4..<9 { _ = try a.step(batches[s % 3]) }
            let b = try trainer(seed: 2)  // different init and RNG: everything must come from the checkpoint
            XCTAssertNotEqual(values(b), values(a))
            try b.load(checkpoint: dir)
            XCTAssertEqual(b.optimizer.stepCount, 4)
            for s in 4..<9 { _ = try b.step(batches[s % 3]) }
            XCTAssertEqual(b.optimizer.stepCount, 9)
            XCTAssertEqual(values(b), values(a), "\(mode): resumed parameters must equal the uninterrupted run bit for bit")
            XCTAssertEqual(b.optimizer.moments.map { Array($0.m) }, a.optimizer.moments.map { Array($0.m) })
            XCTAssertEqual(b.dropoutRNG, a.dropoutRNG)
            if mode == "lora" {
                // the checkpoint's adapter is a plain PEFT directory too
                XCTAssertNoThrow(try LoRAAdapter.load(peftDirectory: dir, model: w))
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// A crash while writing leaves a temporary directory next to the checkpoint, never a half checkpoint: the
    /// previous checkpoint still loads, and the next save succeeds and replaces it.
    func testCrashDuringWriteLeavesPreviousCheckpoint() throws {
        let w = try ModelWeights.random(config: .tiny(.gptj), seed: 1, std: 0.2)
        let tf = Transformer(weights: w, threads: 1)
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 2, targets: ["q_proj", "v_proj"]), seed: 1)
        let t = try SFTTrainer(transformer: tf, adapter: ad, hyper: .init(lr: 1e-2))
        let batches = data(w.config.vocabSize)
        _ = try t.step(batches[0])
        let dir = tmpDir("crash")
        try t.save(checkpoint: dir)
        let saved = values(t)
        // simulate a writer killed half-way: a temporary sibling with a partial file
        let fake = dir + ".tmp.999999"
        try FileManager.default.createDirectory(atPath: fake, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: fake + "/optimizer.safetensors"))
        _ = try t.step(batches[1])
        let t2 = try SFTTrainer(transformer: tf, adapter: try LoRAAdapter(model: w, config: LoRAConfig(r: 2, targets: ["q_proj", "v_proj"]), seed: 9))
        try t2.load(checkpoint: dir)
        XCTAssertEqual(values(t2), saved)
        try t.save(checkpoint: dir)
        try t2.load(checkpoint: dir)
        XCTAssertEqual(values(t2), values(t))
        try? FileManager.default.removeItem(atPath: fake)
        // mismatches are refused without touching the live state
        let other = try SFTTrainer(transformer: tf, adapter: try LoRAAdapter(model: w, config: LoRAConfig(r: 3, targets: ["q_proj", "v_proj"]), seed: 9))
        let before = values(other)
        XCTAssertThrowsError(try other.load(checkpoint: dir))
        XCTAssertEqual(values(other), before)
        let full = try SFTTrainer(transformer: tf, adapter: nil)
        XCTAssertThrowsError(try full.load(checkpoint: dir))
        XCTAssertThrowsError(try t.load(checkpoint: dir + "-missing"))
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Extra parameter groups (a scalar log Z), caller RNGs, extra JSON and extra files round-trip.
    func testExtraGroupsAndFilesRoundTrip() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 1)
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 2, targets: ["c_attn"]), seed: 1)
        let grads = try Gradients(adapter: ad)
        let logZ = try Parameter(name: "log_z", value: Tensor(shape: [1], values: [0.5]))
        func optimizer() throws -> AdamW {
            try AdamW(groups: [ParameterGroup(name: "lora", parameters: grads.parameters, hyper: .init(lr: 1e-3)),
                               ParameterGroup(name: "log_z", parameters: [logZ], hyper: .init(lr: 0.1, weightDecay: 0),
                                              schedule: .constant)],
                      schedule: .linearWarmup(warmupSteps: 5))
        }
        let opt = try optimizer()
        logZ.grad.pointer[0] = 2
        for p in grads.parameters { p.grad.pointer[0] = 0.5 }
        opt.step(); opt.step()
        let dir = tmpDir("extra")
        var extra = JSONObject(); extra["reward_temperature"] = 0.875
        try TrainingCheckpoint.save(directory: dir, model: w, adapter: ad, optimizer: opt,
                                    rngs: ["sampler": RNG(seed: 42), "buffer": RNG(seed: 43)], extra: extra,
                                    files: [("replay_buffer.json", Array("[1,2,3]".utf8))])
        let savedZ = logZ.value.pointer[0]
        logZ.value.pointer[0] = 9
        let opt2 = try AdamW(groups: [ParameterGroup(name: "lora", parameters: grads.parameters),
                                      ParameterGroup(name: "log_z", parameters: [logZ])])
        let r = try TrainingCheckpoint.load(directory: dir, model: w, adapter: ad, optimizer: opt2,
                                            extraFiles: ["replay_buffer.json", "absent.bin"])
        XCTAssertEqual(logZ.value.pointer[0], savedZ)
        XCTAssertEqual(r.step, 2)
        XCTAssertEqual(r.rngs["sampler"], RNG(seed: 42))
        XCTAssertEqual(r.rngs["buffer"], RNG(seed: 43))
        XCTAssertEqual(r.extra["reward_temperature"], 0.875)
        XCTAssertEqual(r.files["replay_buffer.json"], Array("[1,2,3]".utf8))
        XCTAssertNil(r.files["absent.bin"])
        XCTAssertEqual(opt2.groups[1].hyper, AdamWHyperparameters(lr: 0.1, weightDecay: 0))
        XCTAssertEqual(opt2.groups[1].schedule, .constant)
        XCTAssertEqual(opt2.schedule, .linearWarmup(warmupSteps: 5))
        XCTAssertEqual(opt2.moments.map { Array($0.v) }, opt.moments.map { Array($0.v) })
        XCTAssertThrowsError(try TrainingCheckpoint.save(directory: dir, model: w, adapter: ad, optimizer: opt,
                                                         files: [("optimizer.safetensors", [])]))
        try? FileManager.default.removeItem(atPath: dir)
    }
}
