import Foundation
import XCTest
@testable import GFNLM

/// Checkpoints from another run, truncated or corrupt checkpoint files, and the atomic directory writer under
/// crashes: every refusal leaves the live trainer exactly as it was (docs/reliability.md).
final class HostileCheckpointTests: XCTestCase {
    let model: Model = {
        let w = try! ModelWeights.random(config: .tiny(.gpt2, vocab: 16, embd: 8, layers: 1, heads: 2, positions: 16), seed: 3, std: 0.3)
        return Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
    }()

    func tmpDir(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "gfnlm-hostile-ckpt-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: d)
        return d
    }

    func adapter(seed: UInt64, rank: Int = 2) throws -> LoRAAdapter {
        try LoRAAdapter(model: model.weights, config: LoRAConfig(r: rank, alpha: 4, targets: ["c_attn"]), seed: seed)
    }

    func gflownet(prompts: Int = 1, seed: UInt64 = 1) throws -> GFlowNetTrainer {
        var c = GFlowNetConfig()
        c.batchSize = 2
        c.replayProbability = 0.5
        c.schedule = .constant
        c.learningRate = 1e-2
        c.seed = seed
        let ps = (0..<prompts).map { PromptSpec(x: [4, 5 + Int32($0)]) }
        return try GFlowNetTrainer(model: model, adapter: try adapter(seed: seed), reward: RandomIntegerReward(numberTokens: [1, 2, 3], termination: 0),
                                   prompts: ps, rollout: RolloutSettings(termination: 0, maxLength: 4), config: c)
    }

    func sft(lora: Bool, seed: UInt64 = 1) throws -> SFTTrainer {
        try SFTTrainer(transformer: model.transformer, adapter: lora ? try adapter(seed: seed) : nil, hyper: .init(lr: 1e-2))
    }

    /// Everything a load could change: parameter values, both moments, the step.
    func state(_ o: AdamW) -> [[Float]] {
        o.parameters.map { $0.value.array } + o.moments.map { Array($0.m) } + o.moments.map { Array($0.v) } + [[Float(o.stepCount)]]
    }

    func assertRefused(_ body: @autoclosure () throws -> Void, _ status: GFNStatus, _ fragment: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            guard let g = e as? GFNError else { return XCTFail("not a GFNError: \(e)", file: file, line: line) }
            XCTAssertEqual(g.status, status, g.message, file: file, line: line)
            XCTAssertTrue(g.message.contains(fragment), "message '\(g.message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    let batch = [SFTExample(context: [1, 2], target: [3, 4])]

    /// An SFT checkpoint with the same adapter shape used to be committed into a GFlowNet trainer before the
    /// trainer noticed it was not its own (found by fuzz/corpus checkpoint seeds: the fuzz target's "a refused
    /// checkpoint changed the trainer" property).
    func testCheckpointOfAnotherKindOfRunChangesNothing() throws {
        let s = try sft(lora: true, seed: 7)
        _ = try s.step(batch)
        let sftDir = tmpDir("sft")
        try s.save(checkpoint: sftDir)
        let g = try gflownet()
        _ = try g.trainStep()
        let before = state(g.optimizer), step = g.step
        assertRefused(try g.load(checkpoint: sftDir), .state, "another run")
        XCTAssertEqual(state(g.optimizer), before)
        XCTAssertEqual(g.step, step)

        let gDir = tmpDir("gfn")
        try g.save(checkpoint: gDir)
        // a GFlowNet checkpoint into a LoRA SFT trainer, and into a GFlowNet trainer with other prompts
        let s2 = try sft(lora: true, seed: 9)
        let sBefore = state(s2.optimizer)
        assertRefused(try s2.load(checkpoint: gDir), .state, "another run")
        XCTAssertEqual(state(s2.optimizer), sBefore)
        let g2 = try gflownet(prompts: 2, seed: 5)
        let g2Before = state(g2.optimizer)
        assertRefused(try g2.load(checkpoint: gDir), .state, "prompts")
        XCTAssertEqual(state(g2.optimizer), g2Before)
        // full-parameter SFT vs LoRA SFT
        let full = try sft(lora: false)
        let fullBefore = state(full.optimizer)
        XCTAssertThrowsError(try full.load(checkpoint: sftDir))
        XCTAssertEqual(state(full.optimizer), fullBefore)
        for d in [sftDir, gDir] { try? FileManager.default.removeItem(atPath: d) }
    }

    /// A corrupt replay buffer in a GFlowNet checkpoint is refused before the adapter and optimizer change.
    func testCorruptReplayBufferChangesNothing() throws {
        let g = try gflownet()
        for _ in 0..<3 { _ = try g.trainStep() }
        let dir = tmpDir("replay")
        try g.save(checkpoint: dir)
        let path = dir + "/" + GFlowNetTrainer.bufferFile
        for bad in [Array("{\"format\": \"gfnlm-replay-buffer\"".utf8), Array("[]".utf8),
                    Array(#"{"format":"gfnlm-replay-buffer","capacity":1,"tolerance":0,"prioritized":true,"entries":{"k":[{"log_r":1,"text":"","actions":[1],"log_rewards":[0]}]}}"#.utf8)] {
            try Data(bad).write(to: URL(fileURLWithPath: path))
            let h = try gflownet(seed: 4)
            let before = state(h.optimizer)
            assertRefused(try h.load(checkpoint: dir), .format, dir)
            XCTAssertEqual(state(h.optimizer), before)
            XCTAssertEqual(h.step, 0)
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Every file of a checkpoint truncated at several points, or emptied, or removed: refused with a status
    /// (never a trap), the trainer unchanged. The checkpoint's own files are the GFlowNet trainer's six.
    func testTruncatedCheckpointFilesChangeNothing() throws {
        let g = try gflownet()
        for _ in 0..<3 { _ = try g.trainStep() }
        let dir = tmpDir("trunc")
        try g.save(checkpoint: dir)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(Set(names), Set([TrainingCheckpoint.stateFile, TrainingCheckpoint.parametersFile, TrainingCheckpoint.optimizerFile,
                                        LoRAAdapter.peftConfigFile, LoRAAdapter.peftWeightsFile, GFlowNetTrainer.bufferFile]))
        let h = try gflownet(seed: 6)
        let before = state(h.optimizer)
        for name in names {
            let path = dir + "/" + name
            let full = try Data(contentsOf: URL(fileURLWithPath: path))
            for cut in [0, 1, 7, 8, full.count / 2, full.count - 1] where cut < full.count {
                try full.prefix(cut).write(to: URL(fileURLWithPath: path))
                XCTAssertThrowsError(try h.load(checkpoint: dir), "\(name) cut at \(cut)") { e in
                    let s = (e as? GFNError)?.status
                    XCTAssertTrue([.format, .state, .io].contains(s), "\(name) cut at \(cut): \(e)")
                }
                XCTAssertEqual(state(h.optimizer), before, "\(name) cut at \(cut) changed the trainer")
            }
            try FileManager.default.removeItem(atPath: path)
            if name != GFlowNetTrainer.bufferFile {  // the replay buffer is optional
                XCTAssertThrowsError(try h.load(checkpoint: dir), "without \(name)")
                XCTAssertEqual(state(h.optimizer), before)
            }
            try full.write(to: URL(fileURLWithPath: path))
        }
        XCTAssertNoThrow(try h.load(checkpoint: dir))
        XCTAssertEqual(state(h.optimizer), state(g.optimizer))
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Hostile trainer_state.json values: a bad schedule, negative step, a non-positive max_grad_norm, RNG words
    /// that are not hex, huge step counts.
    func testHostileTrainerState() throws {
        let s = try sft(lora: true)
        _ = try s.step(batch)
        let dir = tmpDir("state")
        try s.save(checkpoint: dir)
        let path = dir + "/" + TrainingCheckpoint.stateFile
        let good = try JSONValue.parse(contentsOf: path)
        func with(_ edit: (inout JSONObject) -> Void) throws {
            guard case .object(var o) = good else { return XCTFail("state is not an object") }
            edit(&o)
            try Data(JSONValue.object(o).serializedBytes()).write(to: URL(fileURLWithPath: path))
        }
        let t = try sft(lora: true, seed: 3)
        let before = state(t.optimizer)
        let cases: [(String, (inout JSONObject) -> Void, GFNStatus)] = [
            ("step", { $0["step"] = -1 }, .format),
            ("step", { $0["step"] = "3" }, .format),
            ("schedule", { $0["schedule"] = ["kind": "cosine", "warmup_steps": 5, "total_steps": 2] }, .invalidArgument),
            ("schedule", { $0["schedule"] = ["kind": "exotic"] }, .format),
            ("max_grad_norm", { $0["max_grad_norm"] = -1 }, .format),
            ("rng", { $0["rng"] = ["dropout": ["0x1", "zz", "0x3", "0x4"]] }, .format),
            ("format", { $0["format"] = "something-else" }, .format),
            ("version", { $0["version"] = 99 }, .unsupported),
            ("groups", { $0["groups"] = [] }, .state),
            ("extra.step", { $0["extra"] = ["trainer": "sft", "mode": "lora", "step": -4] }, .format),
            ("extra", { $0["extra"] = ["trainer": "gflownet", "mode": "lora"] }, .state),
        ]
        for (what, edit, status) in cases {
            try with(edit)
            XCTAssertThrowsError(try t.load(checkpoint: dir), what) { e in
                XCTAssertEqual((e as? GFNError)?.status, status, "\(what): \(e)")
            }
            XCTAssertEqual(state(t.optimizer), before, "\(what) changed the trainer")
        }
        // a step count near Int.max used to make the next optimiser step trap on `stepCount += 1`
        try with { $0["step"] = .int(Int64.max) }
        assertRefused(try t.load(checkpoint: dir), .format, "exceeds")
        try with { $0["step"] = .int(Int64(TrainingCheckpoint.maxStep - 1)) }
        XCTAssertNoThrow(try t.load(checkpoint: dir), "a large step count is a valid (if odd) position")
        XCTAssertNoThrow(try t.step(batch))
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A GFlowNet checkpoint whose own fields (step, log Z) are missing or hostile is refused before anything
    /// changes (the step used to be checked only after the adapter and optimiser had been overwritten).
    func testHostileGFlowNetFieldsChangeNothing() throws {
        let g = try gflownet()
        _ = try g.trainStep()
        let dir = tmpDir("gfnfields")
        try g.save(checkpoint: dir)
        let path = dir + "/" + TrainingCheckpoint.stateFile
        let good = try JSONValue.parse(contentsOf: path)
        let h = try gflownet(seed: 8)
        let before = state(h.optimizer)
        let cases: [(String, JSONValue?, String)] = [
            ("step", nil, "no step"), ("step", "7", "extra.step"), ("step", .int(-3), "extra.step"),
            ("log_z", .array([]), "log_z"), ("log_z", .array(["x"]), "log_z"), ("log_z", .double(.infinity), "log_z"),
        ]
        for (key, value, fragment) in cases {
            guard case .object(var o) = good, case .object(var extra)? = o["extra"] else { return XCTFail("state layout") }
            extra[key] = value
            o["extra"] = .object(extra)
            try Data(JSONValue.object(o).serializedBytes()).write(to: URL(fileURLWithPath: path))
            assertRefused(try h.load(checkpoint: dir), .format, fragment)
            XCTAssertEqual(state(h.optimizer), before, "\(key) = \(value?.serialized() ?? "absent") changed the trainer")
            XCTAssertEqual(h.step, 0)
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The writer swaps an existing checkpoint for the new one in one step, leaves no temporaries behind, and
    /// removes the temporaries of writers that died (pid no longer running).
    func testAtomicDirectoryExchangesAndCleansUpAfterDeadWriters() throws {
        let dir = tmpDir("atomic")
        try AtomicDirectory.write(dir, files: [("a", [1]), ("b", [2])])
        try AtomicDirectory.write(dir, files: [("a", [3])])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["a"], "the new directory replaces the old one whole")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/a")), Data([3]))
        // a dead writer's temporaries (a pid that has exited) and a live one's (our parent's) beside the checkpoint
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        XCTAssertEqual(posix_spawn(&pid, "/bin/true", nil, nil, argv, nil), 0)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        free(argv[0])
        let parent = FileIO.dirname(of: dir), base = FileIO.basename(of: dir)
        let dead = ["\(base).tmp.\(pid).1", "\(base).old.\(pid).2", "\(base).tmp.\(pid)"]
        let live = "\(base).tmp.\(getppid()).1"
        for n in dead + [live] {
            try FileManager.default.createDirectory(atPath: parent + "/" + n, withIntermediateDirectories: true)
            try Data([9]).write(to: URL(fileURLWithPath: parent + "/" + n + "/optimizer.safetensors"))
        }
        try AtomicDirectory.write(dir, files: [("a", [4])])
        let siblings = try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix(base) }
        XCTAssertEqual(Set(siblings), Set([base, live]), "dead writers' temporaries are removed, a live writer's kept")
        XCTAssertTrue(AtomicDirectory.exchange(dir, parent + "/" + live), "renameat2(RENAME_EXCHANGE) works on this file system")
        for n in [base, live] { try? FileManager.default.removeItem(atPath: parent + "/" + n) }
    }
}
