import XCTest
@testable import GFNLM

/// Where the fixtures are: $GFNLM_FIXTURES, else Tests/Fixtures of this package.
enum ONNXFixtures {
    static var root: String {
        if let p = getenv("GFNLM_FIXTURES") { return String(cString: p) }
        var dir = "\(#filePath)"
        for _ in 0..<2 { dir = FileIO.dirname(of: dir) }  // Tests/GFNLMTests/x.swift → Tests
        return FileIO.join(dir, "Fixtures")
    }

    static func path(_ rel: String) -> String { FileIO.join(root, rel) }

    /// Variant folders (with a variant.json) of a model folder, sorted.
    static func variants(_ model: String) -> [String] {
        let dir = path(model)
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            if FileIO.exists(FileIO.join(FileIO.join(dir, name), "variant.json")) { out.append(name) }
        }
        return out.sorted()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

final class ONNXLoaderTests: XCTestCase {
    private func requireFixtures(_ model: String) throws {
        if !FileIO.exists(ONNXFixtures.path("\(model)/hf/config.json")) {
            throw XCTSkip("fixtures for \(model) not found under \(ONNXFixtures.root)")
        }
    }

    /// Checks the recovered configuration against the HF config.json.
    private func checkConfig(_ c: ModelConfig, _ hf: JSONValue, _ label: String) {
        let E = hf["n_embd"]?.int ?? -1
        XCTAssertEqual(c.nLayer, hf["n_layer"]?.int, "\(label) n_layer")
        XCTAssertEqual(c.nHead, hf["n_head"]?.int, "\(label) n_head")
        XCTAssertEqual(c.nEmbd, E, "\(label) n_embd")
        XCTAssertEqual(c.headDim, E / max(1, hf["n_head"]?.int ?? 1), "\(label) head_dim")
        XCTAssertEqual(c.nInner, hf["n_inner"]?.int ?? 4 * E, "\(label) n_inner")
        XCTAssertEqual(c.vocabSize, hf["vocab_size"]?.int, "\(label) vocab")
        XCTAssertEqual(c.nPositions, hf["n_positions"]?.int, "\(label) n_positions")
        XCTAssertEqual(c.layerNormEps, Float(hf["layer_norm_epsilon"]?.double ?? -1), "\(label) eps")
        XCTAssertEqual(c.activation.rawValue, hf["activation_function"]?.string, "\(label) activation")
        switch hf["model_type"]?.string {
        case "gpt2":
            XCTAssertEqual(c.arch, .gpt2, label)
            XCTAssertEqual(c.rotaryDim, 0, label)
            XCTAssertTrue(c.tiedHead, "\(label) tied")
            XCTAssertFalse(c.headBias, label)
        case "gptj":
            XCTAssertEqual(c.arch, .gptj, label)
            XCTAssertEqual(c.rotaryDim, hf["rotary_dim"]?.int, "\(label) rotary_dim")
            XCTAssertEqual(c.rotaryBase, 10000, "\(label) rotary base")
            XCTAssertFalse(c.tiedHead, "\(label) tied")
            XCTAssertTrue(c.headBias, "\(label) head bias")
        default:
            XCTFail("\(label): unknown model_type")
        }
    }

    /// Our tensor for every HF state-dict name (GPT-J nn.Linear weights transposed back to HF's [out, in]).
    static func hfTensors(_ w: ModelWeights) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        out["transformer.wte.weight"] = try w.wte
        if let p = w.wpe { out["transformer.wpe.weight"] = p }
        out["transformer.ln_f.weight"] = w.lnF.gamma
        out["transformer.ln_f.bias"] = w.lnF.beta
        let gptj = w.config.arch == .gptj
        func add(_ l: Linear) throws {
            out[l.name + ".weight"] = gptj ? try l.weight.transposed2D() : try l.weight
            if let b = l.bias { out[l.name + ".bias"] = b }
        }
        for (i, b) in w.blocks.enumerated() {
            out["transformer.h.\(i).ln_1.weight"] = b.ln1.gamma
            out["transformer.h.\(i).ln_1.bias"] = b.ln1.beta
            if let l2 = b.ln2 {
                out["transformer.h.\(i).ln_2.weight"] = l2.gamma
                out["transformer.h.\(i).ln_2.bias"] = l2.beta
            }
            for l in b.linears { try add(l) }
        }
        if case .linear(let h) = w.head { try add(h) }
        return out
    }

    /// Compares every HF tensor with ours: exact for fp32, within fp16/bf16 rounding otherwise.
    private func checkWeights(_ w: ModelWeights, _ hf: Safetensors, dtype: String, _ label: String) throws {
        let ours = try Self.hfTensors(w)
        XCTAssertEqual(Set(ours.keys), Set(hf.names), "\(label): tensor names")
        let rel: Float = dtype == "bfloat16" ? 1.0 / 256 : dtype == "float16" ? 1.0 / 2048 : 0
        for name in hf.names {
            guard let t = ours[name] else { continue }
            XCTAssertEqual(t.shape, try hf.shape(name), "\(label) \(name) shape")
            guard t.shape == (try hf.shape(name)) else { continue }
            let ref = try hf.floats(name)
            let mine = t.array
            var worst: Float = 0, at = -1
            for i in 0..<ref.count {
                let d = abs(mine[i] - ref[i])
                let allowed = rel == 0 ? 0 : rel * abs(ref[i]) + 1e-7
                if d > allowed && d - allowed > worst { worst = d - allowed; at = i }
            }
            XCTAssertEqual(at, -1, "\(label) \(name): element \(at) = \(at >= 0 ? mine[at] : 0) vs \(at >= 0 ? ref[at] : 0)")
        }
    }

    private func runVariants(_ model: String) throws {
        try requireFixtures(model)
        let hfConfig = try JSONValue.parse(contentsOf: ONNXFixtures.path("\(model)/hf/config.json"))
        let hfWeights = try Safetensors.load(path: ONNXFixtures.path("\(model)/hf/weights.safetensors"))
        let variants = ONNXFixtures.variants(model)
        XCTAssertFalse(variants.isEmpty)
        for v in variants {
            let dir = ONNXFixtures.path("\(model)/\(v)")
            let meta = try JSONValue.parse(contentsOf: FileIO.join(dir, "variant.json"))
            let label = "\(model)/\(v)"
            let t0 = ONNXFixtures.now()
            if meta["expect"]?.string == "error" {
                do {
                    _ = try ONNXModelLoader.load(path: dir)
                    XCTFail("\(label): loaded, but an error was expected")
                } catch {
                    let want = meta["error_contains"]?.string ?? ""
                    XCTAssertTrue(want.isEmpty || error.message.contains(want), "\(label): '\(error.message)' lacks '\(want)'")
                    XCTAssertEqual(error.status, .unsupported, "\(label): \(error.message)")
                    print("[onnx] \(label): refused as expected: \(error.message)")
                }
                continue
            }
            do {
                let r = try ONNXModelLoader.loadWithReport(path: dir)
                let dt = ONNXFixtures.now() - t0
                print(String(format: "[onnx] %@: loaded in %.1f ms (%@, opset %lld; borrowed %d B, converted %d B, freed %d B)",
                             label, dt * 1000, r.producer, r.opset, r.borrowedBytes, r.ownedBytes, r.releasedBytes))
                checkConfig(r.weights.config, hfConfig, label)
                let dtype = meta["dtype"]?.string ?? "float32"
                try checkWeights(r.weights, hfWeights, dtype: dtype, label)
                XCTAssertTrue(r.weights.keepAlive.contains { $0 === r.weights.keepAlive.first }, label)
                if dtype == "float32" {
                    // fp32 weights are borrowed from the file mapping (inline raw_data is parsed zero-copy) or the
                    // external data mapping; only tensors whose bytes sit at a misaligned offset are copied, and
                    // their source pages released.
                    XCTAssertGreaterThan(r.borrowedBytes, 0, label)
                    if v.hasPrefix("external") { XCTAssertEqual(r.ownedBytes, 0, "\(label): aligned external data was copied") }
                }
                if model == "gpt2-tiny" {
                    let V = hfConfig["vocab_size"]?.int ?? 0, E = hfConfig["n_embd"]?.int ?? 0
                    if v == "dynamo" { XCTAssertTrue(r.headSharedTensor, "\(label): head should be wte itself") }
                    if v.hasPrefix("legacy") && dtype == "float32" {
                        XCTAssertFalse(r.headSharedTensor, label)
                        XCTAssertGreaterThanOrEqual(r.releasedBytes, V * E * 4,
                                                    "\(label): the duplicated head should be freed")
                    }
                }
            } catch let e as GFNError {
                XCTFail("\(label): \(e.message)")
            }
        }
    }

    func testGPT2Variants() throws { try runVariants("gpt2-tiny") }

    /// GPT-2 with the real 50257-token vocabulary; its head is Transpose(wte) → MatMul.
    func testGPT2RealVocab() throws {
        try requireFixtures("gpt2-realvocab")
        let hf = try JSONValue.parse(contentsOf: ONNXFixtures.path("gpt2-realvocab/hf/config.json"))
        let t0 = ONNXFixtures.now()
        let r = try ONNXModelLoader.loadWithReport(path: ONNXFixtures.path("gpt2-realvocab/legacy17"))
        print(String(format: "[onnx] gpt2-realvocab/legacy17: loaded in %.1f ms (", (ONNXFixtures.now() - t0) * 1000)
              + r.phases.map { String(format: "%@ %.1f ms", $0.name, $0.seconds * 1000) }.joined(separator: ", ") + ")")
        checkConfig(r.weights.config, hf, "gpt2-realvocab")
        XCTAssertTrue(r.headSharedTensor)
        // fp32: each tensor is borrowed from the file mapping, or copied once when its bytes are misaligned.
        XCTAssertGreaterThan(r.borrowedBytes, 0)
        XCTAssertLessThanOrEqual(r.ownedBytes, try r.weights.wte.count * 4 + (1 << 20))
        XCTAssertEqual(try r.weights.wte.shape, [50257, 32])
        XCTAssertEqual(r.weights.linears.map(\.name), (0..<2).flatMap { i in
            ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map { "transformer.h.\(i).\($0)" }
        })
    }

    /// The parsed file and the data mappings live exactly as long as the weights (no reference cycle).
    func testWeightsOwnTheFileAndNothingLeaks() throws {
        try requireFixtures("gptj-tiny")
        weak var file: ONNXFile?
        weak var mapping: MappedFile?
        do {
            let w = try ONNXModelLoader.load(path: ONNXFixtures.path("gptj-tiny/external-onefile"))
            file = w.keepAlive.compactMap { $0 as? ONNXFile }.first
            mapping = w.keepAlive.compactMap { $0 as? MappedFile }.first
            XCTAssertNotNil(file)
            XCTAssertNotNil(mapping, "fp32 external data should be borrowed from the mapping")
            XCTAssertEqual(try w.wte.shape, [512, 64])
        }
        XCTAssertNil(file, "the parsed ONNX file outlived the weights")
        XCTAssertNil(mapping, "the data mapping outlived the weights")
    }

    /// The Hugging Face module names that LoRA/PEFT keys use.
    func testLinearNames() throws {
        try requireFixtures("gptj-tiny")
        let w = try ONNXModelLoader.load(path: ONNXFixtures.path("gptj-tiny/legacy17"))
        XCTAssertEqual(w.linears.map(\.name), (0..<2).flatMap { i in
            ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.fc_in", "mlp.fc_out"]
                .map { "transformer.h.\(i).\($0)" }
        } + ["lm_head"])
        let g = try ONNXModelLoader.load(path: ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx"))
        XCTAssertEqual(g.linears.count, 8)
        if case .tied = g.head {} else { XCTFail("GPT-2 head should be tied") }
    }

    /// Loads large exports named in $GFNLM_BIG_ONNX (colon-separated paths; not in CI) and prints time and memory.
    /// With $GFNLM_BIG_WEIGHTS (an HF safetensors state dict) every tensor is compared too.
    func testLargeExportsFromEnvironment() throws {
        guard let list = getenv("GFNLM_BIG_ONNX").map({ String(cString: $0) }), !list.isEmpty else {
            throw XCTSkip("set GFNLM_BIG_ONNX to run")
        }
        for path in list.split(separator: ":").map(String.init) {
            let t0 = ONNXFixtures.now()
            let r = try ONNXModelLoader.loadWithReport(path: path)
            let dt = ONNXFixtures.now() - t0
            var ru = rusage()
            getrusage(RUSAGE_SELF.rawValue, &ru)
            let c = r.weights.config
            print(String(format: "[onnx] %@: %@ %d layers, E %d, V %d: loaded in %.2f s; borrowed %.1f MB, converted %.1f MB, "
                         + "freed %.1f MB; peak RSS so far %.0f MB", path, c.arch.rawValue, c.nLayer, c.nEmbd, c.vocabSize, dt,
                         Double(r.borrowedBytes) / 1e6, Double(r.ownedBytes) / 1e6, Double(r.releasedBytes) / 1e6,
                         Double(ru.ru_maxrss) / 1024))
            print("[onnx]   phases: " + r.phases.map { String(format: "%@ %.3f s", $0.name, $0.seconds) }.joined(separator: ", "))
            if let wp = getenv("GFNLM_BIG_WEIGHTS").map({ String(cString: $0) }) {
                try checkWeights(r.weights, try Safetensors.load(path: wp), dtype: "float32", path)
            }
        }
    }
    func testGPTJVariants() throws { try runVariants("gptj-tiny") }
}
