import Foundation
import XCTest
@testable import GFNLM

/// PEFT interoperability. The expected logits were computed with Hugging Face PEFT 0.21.2 (transformers 4.57.6,
/// torch 2.15) on the hf/ fixture weights, after setting every LoRA tensor (sorted by parameter name, index ti)
/// to 0.1·sin(0.37·k + ti) over its flat index k: lm_input_ids row 0, logits at tokens 0, 17, 255, 511 and the
/// sum over the vocabulary at each of the 8 positions.
final class LoRAPEFTTests: XCTestCase {
    struct Case {
        let model: String
        let targets: [String]
        let rs: Bool
        let picks: [[Float]]
        let sums: [Double]
    }

    static let cases: [Case] = [
        Case(model: "gpt2-tiny", targets: ["c_attn", "c_proj"], rs: false,
             picks: [[0.0644687, -0.038278, -0.6789414, -0.2579212], [-0.1217069, -0.2292195, -0.0981824, 0.3433112],
                     [-0.548193, 0.2119002, 0.9051023, -0.2157013], [-0.6749429, -0.7696133, -0.6072397, -0.4346274],
                     [-0.0972116, 0.4938804, -0.257915, -1.0747695], [0.0252582, 0.5823579, -0.1005088, 0.4365161],
                     [-0.131248, 0.4982792, 0.4844825, 0.5116317], [0.1772003, -0.0469114, -0.8423954, -0.0467548]],
             sums: [-13.55019, 2.43942, 2.83155, 8.66411, -21.24587, -10.05333, 10.19601, -17.43944]),
        Case(model: "gptj-tiny", targets: ["q_proj", "v_proj", "fc_out"], rs: true,
             picks: [[-0.2276116, 0.2062048, -0.3972931, 0.1853797], [-0.4807943, 0.3044902, -0.2355002, 0.3916406],
                     [1.0119971, 0.0558484, -0.2355571, 0.6030456], [1.023023, 0.3450645, -0.4365672, 0.3488631],
                     [0.6523264, 0.195619, -0.7024306, 0.2169253], [-0.5917137, 0.3700323, 0.0267718, 0.5789485],
                     [1.1236593, 0.0580992, -0.5659935, 0.561522], [1.0165504, 0.210419, 0.0888622, 0.2714622]],
             sums: [11.98158, 21.71127, 5.77658, 7.16063, 11.74478, 14.07435, 13.09068, 9.20176]),
    ]

    /// The adapter with the deterministic values described above.
    static func adapter(_ c: Case, _ w: ModelWeights) throws -> LoRAAdapter {
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: c.targets, useRSLoRA: c.rs), seed: 0)
        var params: [(String, Tensor)] = []
        for m in ad.moduleNames {
            guard let f = ad.factors(for: m) else { continue }
            params += [(m + ".lora_A.weight", f.a), (m + ".lora_B.weight", f.b)]
        }
        params.sort { $0.0 < $1.0 }
        for (ti, (_, t)) in params.enumerated() {
            for k in 0..<t.count { t.pointer[k] = Float(0.1 * sin(0.37 * Double(k) + Double(ti))) }
        }
        return ad
    }

    static func logits(_ w: ModelWeights, _ ad: LoRAAdapter?, _ ids: [Int32]) throws -> [[Float]] {
        let tf = Transformer(weights: w, threads: 1)
        let T = ids.count, V = w.config.vocabSize
        let ws = try ForwardWorkspace()  // the hidden states live in the workspace: keep it alive
        let h = try ids.withUnsafeBufferPointer {
            try tf.forward(tokens: $0, rows: 1, T: T, caches: [tf.makeCache(capacity: T)], adapter: ad, workspace: ws)
        }
        var out = [Float](repeating: 0, count: T * V)
        try out.withUnsafeMutableBufferPointer { try tf.logits(hidden: h, count: T, adapter: ad, into: $0.baseAddress!) }
        withExtendedLifetime(ws) {}
        return (0..<T).map { Array(out[$0 * V..<($0 + 1) * V]) }
    }

    func tmpDir(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "gfnlm-lora-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: d)
        return d
    }

    func testRoundTripReproducesPEFTLogitsAndLayout() throws {
        for c in Self.cases {
            let w = try HFFixture.weights(c.model)
            let ad = try Self.adapter(c, w)
            let ref = try Safetensors.load(path: HFFixture.dir(c.model) + "/reference.safetensors")
            let ids = Array(try ref.int64s("lm_input_ids").prefix(8).map { Int32($0) })
            let dir = tmpDir(c.model)
            try ad.save(peftDirectory: dir, model: w)
            if let export = ProcessInfo.processInfo.environment["GFNLM_PEFT_EXPORT"] {
                try ad.save(peftDirectory: export + "/gfnlm_" + c.model, model: w)  // for a manual check with PEFT
            }
            // layout: PEFT's keys, shapes, metadata and config fields
            let st = try Safetensors.load(path: dir + "/adapter_model.safetensors")
            XCTAssertEqual(st.metadata, ["format": "pt"])
            var expectedKeys: [String] = []
            for l in 0..<2 {
                for m in c.targets {
                    let full: [String]
                    switch m {
                    case "c_attn": full = ["attn.c_attn"]
                    case "c_proj": full = ["attn.c_proj", "mlp.c_proj"]
                    case "fc_out": full = ["mlp.fc_out"]
                    default: full = ["attn." + m]
                    }
                    for f in full {
                        expectedKeys += ["base_model.model.transformer.h.\(l).\(f).lora_A.weight",
                                         "base_model.model.transformer.h.\(l).\(f).lora_B.weight"]
                    }
                }
            }
            XCTAssertEqual(Set(st.names), Set(expectedKeys))
            for k in st.names {
                XCTAssertEqual(try st.dtype(k), .f32)
                let shape = try st.shape(k)
                let module = k.replacingOccurrences(of: "base_model.model.", with: "")
                    .replacingOccurrences(of: ".lora_A.weight", with: "").replacingOccurrences(of: ".lora_B.weight", with: "")
                let lin = try XCTUnwrap(w.linears.first { $0.name == module })
                XCTAssertEqual(shape, k.hasSuffix("lora_A.weight") ? [4, lin.inFeatures] : [lin.outFeatures, 4], k)
            }
            let text = try String(contentsOfFile: dir + "/adapter_config.json", encoding: .utf8)
            XCTAssertFalse(text.hasSuffix("\n"))
            XCTAssertTrue(text.hasPrefix("{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,"), text)
            let cfg = try JSONValue.parse(text)
            XCTAssertEqual(cfg["peft_type"], "LORA")
            XCTAssertEqual(cfg["r"], 4)
            XCTAssertEqual(cfg["lora_alpha"], 8)
            XCTAssertEqual(cfg["lora_dropout"], 0)
            XCTAssertEqual(cfg["fan_in_fan_out"]?.bool, c.model == "gpt2-tiny")
            XCTAssertEqual(cfg["use_rslora"]?.bool, c.rs)
            XCTAssertEqual(cfg["bias"], "none")
            XCTAssertEqual(cfg["task_type"], "CAUSAL_LM")
            XCTAssertEqual(cfg["inference_mode"], true)
            XCTAssertEqual(cfg["modules_to_save"], .null)
            XCTAssertEqual(cfg["target_modules"]?.array?.compactMap { $0.string }, c.targets.sorted())
            // load, then PEFT's logits within 1e-4
            let loaded = try LoRAAdapter.load(peftDirectory: dir, model: w)
            XCTAssertEqual(loaded.moduleNames, ad.moduleNames)
            let got = try Self.logits(w, loaded, ids)
            var worst: Float = 0
            for t in 0..<8 {
                for (j, tok) in [0, 17, 255, 511].enumerated() { worst = max(worst, abs(got[t][tok] - c.picks[t][j])) }
                XCTAssertEqual(got[t].reduce(0.0) { $0 + Double($1) }, c.sums[t], accuracy: 2e-3)
            }
            print("PEFT logits \(c.model): max |Δ| \(worst) at the sampled entries")
            XCTAssertLessThan(worst, 1e-4, c.model)
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Loads a directory written by PEFT itself (set GFNLM_PEFT_DIR to a folder holding gpt2-tiny/ and gptj-tiny/
    /// saved by `save_pretrained` with the adapters described above).
    func testLoadsPEFTWrittenDirectory() throws {
        guard let root = ProcessInfo.processInfo.environment["GFNLM_PEFT_DIR"] else {
            throw XCTSkip("set GFNLM_PEFT_DIR to check directories written by PEFT")
        }
        for c in Self.cases {
            let w = try HFFixture.weights(c.model)
            let ad = try LoRAAdapter.load(peftDirectory: root + "/peft_" + c.model, model: w)
            let ref = try Safetensors.load(path: HFFixture.dir(c.model) + "/reference.safetensors")
            let ids = Array(try ref.int64s("lm_input_ids").prefix(8).map { Int32($0) })
            let got = try Self.logits(w, ad, ids)
            for t in 0..<8 { for (j, tok) in [0, 17, 255, 511].enumerated() { XCTAssertEqual(got[t][tok], c.picks[t][j], accuracy: 1e-4) } }
            print("PEFT-written \(c.model) loaded: \(ad.moduleNames.count) modules, scale \(ad.factors.values.first?.scale ?? 0)")
        }
    }

    func testLoadRefusesMismatches() throws {
        let w = try HFFixture.weights("gpt2-tiny")
        let c = Self.cases[0]
        let ad = try Self.adapter(c, w)
        let dir = tmpDir("bad")
        try ad.save(peftDirectory: dir, model: w)
        // another model (n_embd 32): shapes do not fit
        let small = try ModelWeights.random(config: .tiny(.gpt2), seed: 1)
        XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir, model: small)) { e in
            let m = (e as? GFNError)?.message ?? ""
            XCTAssertTrue(m.contains("lora_A.weight") && m.contains("shape"), m)
        }
        // GPT-J model: modules do not exist
        let j = try HFFixture.weights("gptj-tiny")
        XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir, model: j)) { e in
            XCTAssertTrue(((e as? GFNError)?.message ?? "").contains("does not have"))
        }
        // config problems
        let cfgPath = dir + "/adapter_config.json"
        let good = try String(contentsOfFile: cfgPath, encoding: .utf8)
        for (from, to, what) in [("\"r\": 4", "\"r\": 8", "shape"), ("\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\"", "LORA"),
                                 ("\"bias\": \"none\"", "\"bias\": \"all\"", "bias"), ("\"use_dora\": false", "\"use_dora\": true", "DoRA")] {
            try good.replacingOccurrences(of: from, with: to).write(toFile: cfgPath, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir, model: w)) { e in
                XCTAssertTrue(((e as? GFNError)?.message ?? "").contains(what), "\(what): \(e)")
            }
        }
        try "{not json".write(toFile: cfgPath, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir, model: w))
        XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir + "/missing", model: w))
        // saving replaces a directory atomically and leaves no temporary behind
        try ad.save(peftDirectory: dir, model: w)
        XCTAssertNoThrow(try LoRAAdapter.load(peftDirectory: dir, model: w))
        let parent = (dir as NSString).deletingLastPathComponent
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: parent)
            .filter { $0.hasPrefix((dir as NSString).lastPathComponent + ".") }
        XCTAssertEqual(leftovers, [])
        XCTAssertThrowsError(try ad.save(peftDirectory: dir, model: small))
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Merging the delta into the weights gives the adapter's logits without an adapter.
    func testMergedWeightsEqualAdapter() throws {
        for c in Self.cases {
            let w = try HFFixture.weights(c.model)
            let ad = try Self.adapter(c, w)
            let ids: [Int32] = [3, 14, 15, 92, 65, 35]
            let a = try Self.logits(w, ad, ids), m = try Self.logits(try ad.mergedWeights(w), nil, ids)
            let d = zip(a.joined(), m.joined()).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(d, 1e-4, c.model)
        }
    }
}
