// Seeds made with gfnlm itself (valid files of every kind, for the tiny models the targets use), written by
// `gfnlm_fuzz_replay --make-seeds DIR` (fuzz/make-seeds.sh). The ONNX seeds come from PyTorch exports instead
// (fuzz/tools/make_onnx_seeds.py).
@testable import GFNLM
#if canImport(Glibc)
import Glibc
#endif

enum FuzzSeeds {
    static func make(into out: String) {
        do {
            try makeAll(into: out)
        } catch {
            fputs("make-seeds failed: \(error)\n", stderr)
            exit(1)
        }
    }

    static func put(_ out: String, _ target: String, _ name: String, _ bytes: [UInt8]) throws(GFNError) {
        try FileIO.makeDirectories(out + "/" + target)
        try FileIO.writeAtomically(out + "/" + target + "/" + name, bytes)
    }

    static func files(_ dir: String, _ names: [String]) -> [UInt8] {
        FuzzSections.join(names.map { (try? FileIO.read(dir + "/" + $0)) ?? [] })
    }

    static func makeAll(into out: String) throws(GFNError) {
        let root = FuzzWorkspace.root
        let fixtures = root + "/Tests/Fixtures"

        // --- json: real files of every JSON kind gfnlm reads, and edge cases
        for (name, path) in [("variant.json", "/gpt2-tiny/legacy17/variant.json"), ("hf-config.json", "/gpt2-tiny/hf/config.json"),
                             ("not-a-gpt-variant.json", "/not-a-gpt/variant.json")] {
            if let b = try? FileIO.read(fixtures + path) { try put(out, "json", name, b) }
        }
        let edge = [
            "[1, -0, 0.1, 1e308, -1.7976931348623157e308, 5e-324, 123456789012345678901234567890, -9223372036854775808, 9223372036854775807]",
            #"{"a": "\ud83d\ude00 \u00e9 \"quote\" \\ \/ \b\f\n\r\t", "b": [true, false, null], "c": {"d": {}}, "e": []}"#,
            String(repeating: "[", count: 60) + String(repeating: "]", count: 60),
            #"{"dup": 1, "dup": 2}"#,
            "  \"just a string\"  ",
        ]
        for (i, s) in edge.enumerated() { try put(out, "json", "edge\(i).json", Array(s.utf8)) }

        // --- tokenizer files: a micro GPT-2 vocabulary (the 256 byte symbols + the first 300 merges)
        let tj = try JSONValue.parse(contentsOf: fixtures + "/tokenizer/tokenizer.json")
        guard let fullVocab = tj["model"]?["vocab"]?.object, let fullMerges = tj["model"]?["merges"]?.array else {
            throw GFNError.format("fixture tokenizer.json has no model.vocab / model.merges")
        }
        var byId = [String](repeating: "", count: 256)
        for (k, v) in fullVocab { if let id = v.int, id < 256 { byId[Int(id)] = k } }
        var vocab = JSONObject()
        for (i, t) in byId.enumerated() { vocab[t] = .int(Int64(i)) }
        var mergePairs: [(String, String)] = []
        for m in fullMerges.prefix(300) {
            guard let a = m.array, a.count == 2, let l = a[0].string, let r = a[1].string else { continue }
            mergePairs.append((l, r))
            if vocab[l + r] == nil { vocab[l + r] = .int(Int64(vocab.count)) }
        }
        let eos = Int64(vocab.count)
        vocab["<|endoftext|>"] = .int(eos)
        let vocabBytes = JSONValue.object(vocab).serializedBytes(.compact)
        let mergesBytes = Array(("#version: 0.2\n" + mergePairs.map { "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n").utf8)
        let sample = Array("Hello world, the tokenizer is here.<|endoftext|> ünïcode 😀 and\ttabs\n\nnewlines".utf8)
        try put(out, "tokenizer_files", "vocab-merges", FuzzSections.join([vocabBytes, mergesBytes, sample]))
        guard case .object(var tobj) = tj else { throw GFNError.format("tokenizer.json") }
        for (style, mergesValue) in [("pairs", JSONValue.array(mergePairs.map { .array([.string($0.0), .string($0.1)]) })),
                                     ("strings", JSONValue.array(mergePairs.map { .string("\($0.0) \($0.1)") }))] {
            guard case .object(var model) = tj["model"]! else { continue }
            model["vocab"] = .object(vocab)
            model["merges"] = mergesValue
            tobj["model"] = .object(model)
            var added = JSONObject()
            added["id"] = .int(eos); added["content"] = "<|endoftext|>"; added["single_word"] = false
            added["lstrip"] = false; added["rstrip"] = false; added["normalized"] = true; added["special"] = true
            tobj["added_tokens"] = .array([.object(added)])
            try put(out, "tokenizer_files", "tokenizer-\(style)",
                    FuzzSections.join([JSONValue.object(tobj).serializedBytes(.compact), sample]))
        }
        try put(out, "json", "micro-vocab.json", vocabBytes)

        // --- tokenize: the conformance strings
        if let conf = try? JSONValue.parse(contentsOf: fixtures + "/tokenizer/conformance.json") {
            var texts: [String] = []
            func walk(_ v: JSONValue) {
                switch v {
                case .string(let s): texts.append(s)
                case .array(let a): a.forEach(walk)
                case .object(let o): o.forEach { walk($0.1) }
                default: break
                }
            }
            walk(conf)
            var seen = Set<String>()
            for (i, t) in texts.enumerated() where !t.isEmpty && t.utf8.count < 2000 && seen.insert(t).inserted {
                try put(out, "tokenize", "conformance-\(i)", Array(t.utf8))
            }
        }
        try put(out, "tokenize", "invalid-utf8", [0xff, 0xfe, 0x41, 0xc3, 0x28, 0xe2, 0x82, 0x20, 0xf0, 0x9f, 0x98])

        // --- peft: adapters of the tiny models
        let work = FuzzWorkspace.fresh("seeds")
        var k = 0
        for (arch, targets, rs) in [(Architecture.gpt2, ["c_attn"], false), (.gpt2, ["c_attn", "c_proj", "c_fc"], true),
                                    (.gptj, ["q_proj", "v_proj"], false), (.gptj, ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"], false)] {
            let m = FuzzTargets.tinyModel(arch)
            let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 2, alpha: 4, dropout: 0.1, targets: targets, useRSLoRA: rs), seed: UInt64(k))
            for name in a.moduleNames { if let f = a.factors(for: name) { for i in 0..<f.b.count { f.b.pointer[i] = Float(i % 7) * 0.01 } } }
            let d = work + "/peft\(k)"
            try a.save(peftDirectory: d, model: m.weights)
            try put(out, "peft", "\(arch.rawValue)-\(k)", files(d, [LoRAAdapter.peftConfigFile, LoRAAdapter.peftWeightsFile]))
            try put(out, "safetensors", "adapter-\(k).safetensors", try FileIO.read(d + "/" + LoRAAdapter.peftWeightsFile))
            try put(out, "json", "adapter_config-\(k).json", try FileIO.read(d + "/" + LoRAAdapter.peftConfigFile))
            k += 1
        }

        // --- checkpoints: a GFlowNet trainer after a few steps (replay items), SFT with LoRA and full
        let g = try FuzzTargets.gflownetTrainer()
        for _ in 0..<4 { _ = try g.trainStep() }
        try g.seedBuffer(prompt: 0, demonstrations: [[1], [2, 3]])
        let gd = work + "/ckpt-gflownet"
        try g.save(checkpoint: gd)
        try put(out, "checkpoint", "gflownet", files(gd, FuzzTargets.checkpointFiles))
        try put(out, "replay", "replay_buffer.json", try FileIO.read(gd + "/" + GFlowNetTrainer.bufferFile))
        try put(out, "json", "trainer_state.json", try FileIO.read(gd + "/" + TrainingCheckpoint.stateFile))
        try put(out, "safetensors", "optimizer.safetensors", try FileIO.read(gd + "/" + TrainingCheckpoint.optimizerFile))
        for lora in [true, false] {
            let t = try FuzzTargets.sftTrainer(lora: lora)
            _ = try t.step([SFTExample(context: [1, 2], target: [3, 4, 5])])
            let d = work + "/ckpt-sft-\(lora ? "lora" : "full")"
            try t.save(checkpoint: d)
            try put(out, "checkpoint", "sft-\(lora ? "lora" : "full")", files(d, FuzzTargets.checkpointFiles))
            if !lora {
                try put(out, "safetensors", "parameters-full.safetensors", try FileIO.read(d + "/" + TrainingCheckpoint.parametersFile))
            }
        }

        // --- replay: hand-made buffers
        let rb = try ReplayBuffer(capacity: 3, tolerance: 0.5, prioritized: false)
        try rb.add("x", ReplayItem(logR: -1, text: "a b", actions: [1, 2], logRewards: [-3, -2, -1], truncated: false))
        try rb.add("x", ReplayItem(logR: 2, text: "c", actions: [7], logRewards: [0, 2], truncated: true))
        try rb.add("y|z", ReplayItem(logR: 0, text: "", actions: [], logRewards: [0], truncated: false))
        try put(out, "replay", "handmade.json", rb.serialized())

        // --- safetensors: every dtype, empty tensors, metadata
        var ts: [SafetensorsTensor] = []
        for (i, dt) in [SafetensorsDType.f32, .f16, .bf16, .f64, .i64, .i32, .u8, .bool, .i8, .u16].enumerated() {
            ts.append(SafetensorsTensor(name: "t\(i)_\(dt.rawValue)", dtype: dt, shape: [2, 3],
                                        bytes: (0..<(6 * dt.size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ i) }))
        }
        ts.append(SafetensorsTensor(name: "empty", shape: [0, 4], floats: []))
        ts.append(SafetensorsTensor(name: "scalar", shape: [], floats: [1.5]))
        try put(out, "safetensors", "dtypes.safetensors", try Safetensors.serialize(tensors: ts, metadata: ["format": "pt", "x": "y"]))
        _ = try? AtomicDirectory.removeTree(work)
    }
}
