import XCTest
import CONNX
@testable import GFNLM

/// Merged-weights ONNX export: the original export is rewritten with the changed weights and read back.
///
/// Tolerances (max abs logits difference, reloaded base model vs the original model with the adapter):
/// fp32 sources 1e-4 (the merged weights are written bit for bit); fp16 sources 5e-3 and bf16 sources 3e-2,
/// because the merged weights are rounded to the tensor's own type (the graph stays fp16/bf16). For every source the
/// reloaded weights must equal the merged weights rounded to the stored type bit for bit, and the reloaded model's
/// logits must equal those of the in-memory model with those rounded weights exactly.
final class ONNXExportTests: XCTestCase {
    var tmp: TempDir!
    override func setUp() { tmp = TempDir() }
    override func tearDown() { tmp.remove() }

    static let gpt2Targets = ["c_attn", "c_proj", "c_fc"]
    static let gptjTargets = ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"]
    static let variants: [(String, String)] = [
        ("gpt2-tiny", "legacy17"), ("gpt2-tiny", "legacy14"), ("gpt2-tiny", "legacy17-past"), ("gpt2-tiny", "dynamo"),
        ("gpt2-tiny", "optimum"), ("gpt2-tiny", "optimum-past"), ("gpt2-tiny", "fp16"), ("gpt2-tiny", "fp16-converter"),
        ("gpt2-tiny", "bf16"), ("gpt2-tiny", "external-onefile"), ("gpt2-tiny", "external-pertensor"),
        ("gpt2-tiny", "ort-optimized"),
        ("gptj-tiny", "legacy17"), ("gptj-tiny", "legacy14"), ("gptj-tiny", "legacy17-past"), ("gptj-tiny", "dynamo"),
        ("gptj-tiny", "optimum"), ("gptj-tiny", "optimum-past"), ("gptj-tiny", "fp16"), ("gptj-tiny", "fp16-converter"), ("gptj-tiny", "bf16"),
        ("gptj-tiny", "external-onefile"), ("gptj-tiny", "external-pertensor"),
    ]

    enum Stored { case fp32, fp16, bf16 }

    static func stored(_ variant: String) -> Stored {
        variant.hasPrefix("fp16") ? .fp16 : variant == "bf16" ? .bf16 : .fp32
    }

    static func round(_ x: Float, _ s: Stored) -> Float {
        switch s {
        case .fp32: return x
        case .fp16: return Float(Float16(x))
        case .bf16: return Float(bitPattern: ConstResolver.roundToBF16(x) << 16)
        }
    }

    static func tolerance(_ s: Stored) -> Float {
        switch s {
        case .fp32: return 1e-4
        case .fp16: return 5e-3
        case .bf16: return 3e-2
        }
    }

    private func requireFixtures() throws {
        if !FileIO.exists(ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx")) {
            throw XCTSkip("fixtures not found under \(ONNXFixtures.root)")
        }
    }

    /// A LoRA adapter (r 4, alpha 8) with PEFT's A and random non-zero B.
    static func randomAdapter(_ w: ModelWeights, seed: UInt64 = 7, magnitude: Double = 0.2) throws -> LoRAAdapter {
        let targets = w.config.arch == .gpt2 ? gpt2Targets : gptjTargets
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, targets: targets), seed: seed)
        var rng = RNG(seed: seed &+ 1000)
        for name in ad.moduleNames {
            guard let f = ad.factors(for: name) else { continue }
            for k in 0..<f.b.count { f.b.pointer[k] = Float((2 * rng.uniform() - 1) * magnitude) }
        }
        return ad
    }

    static let ids: [Int32] = [5, 17, 300, 2, 44, 511, 9, 128, 77, 1, 250, 33, 400, 8, 64, 199]

    static func logits(_ m: Model, adapter: LoRAAdapter? = nil) throws -> [Float] {
        try m.logits(ids: ids, batch: 2, seqLen: 8, adapter: adapter)
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var d: Float = 0
        for i in 0..<a.count { d = max(d, abs(a[i] - b[i])) }
        return d
    }

    static func bits(_ t: Tensor) -> [UInt32] { t.array.map { $0.bitPattern } }

    /// A trainable copy of the weights with some tensors replaced.
    static func replaced(_ w: ModelWeights, _ values: [String: [Float]]) throws -> ModelWeights {
        let c = try w.trainableCopy()
        let named = try ONNXExporter.namedTensors(c)
        for (k, v) in values {
            guard let t = named[k] else { XCTFail("no tensor \(k)"); continue }
            XCTAssertEqual(t.count, v.count)
            for i in 0..<v.count { t.pointer[i] = v[i] }
        }
        return c
    }

    static func model(_ w: ModelWeights) -> Model { Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil) }

    // MARK: LoRA merge over every fixture

    func testLoRAMergedExportOfEveryFixture() throws {
        try requireFixtures()
        var lines: [String] = []
        for (m, v) in Self.variants {
            let src = ONNXFixtures.path("\(m)/\(v)/model.onnx")
            guard FileIO.exists(src) else { continue }
            let base = try Model.load(path: src, threads: 1)
            let ad = try Self.randomAdapter(base.weights)
            let out = tmp.file("\(m)-\(v).onnx")
            let report = try ONNXExporter.export(model: base, adapter: ad, to: out)
            XCTAssertNil(report.dataPath, "\(m)/\(v)")
            XCTAssertEqual(report.changedTensors, ad.moduleNames.map { $0 + ".weight" }.sorted(), "\(m)/\(v)")
            XCTAssertTrue(report.initializersAdded.isEmpty, "\(m)/\(v): \(report.initializersAdded)")
            XCTAssertEqual(report.inputsRewired, 0, "\(m)/\(v)")
            let reloaded = try Model.load(path: out, threads: 1)
            XCTAssertEqual(reloaded.config, base.config, "\(m)/\(v)")

            // Weights: the merged ones rounded to the stored type, every other tensor unchanged, bit for bit.
            let s = Self.stored(v)
            var expected: [String: [Float]] = [:]
            for name in ad.moduleNames {
                guard let f = ad.factors(for: name), let lin = base.weights.linears.first(where: { $0.name == name }) else { continue }
                expected[name + ".weight"] = try ONNXExporter.merge(lin, f).array.map { Self.round($0, s) }
            }
            let got = try ONNXExporter.namedTensors(reloaded.weights)
            for (k, t) in try ONNXExporter.namedTensors(base.weights) {
                guard let r = got[k] else { XCTFail("\(m)/\(v): \(k) missing after reload"); continue }
                let want = expected[k].map { $0.map { $0.bitPattern } } ?? Self.bits(t)
                XCTAssertEqual(Self.bits(r), want, "\(m)/\(v): \(k)")
            }

            // Logits: reloaded base vs original + adapter; and exactly the in-memory rounded merged model.
            let withAdapter = try Self.logits(base, adapter: ad)
            let plain = try Self.logits(base)
            let exported = try Self.logits(reloaded)
            let inMemory = try Self.logits(Self.model(try Self.replaced(base.weights, expected)))
            let d = Self.maxDiff(exported, withAdapter)
            XCTAssertLessThanOrEqual(d, Self.tolerance(s), "\(m)/\(v)")
            XCTAssertEqual(exported, inMemory, "\(m)/\(v)")
            XCTAssertGreaterThan(Self.maxDiff(plain, withAdapter), 0.05, "\(m)/\(v): the adapter should matter")
            lines.append("\(m)/\(v): max |exported − base+adapter| = \(d) (adapter effect \(Self.maxDiff(plain, withAdapter)))")
        }
        print(lines.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(lines.count, 9)
    }

    // MARK: no changes

    /// Without an adapter the export holds exactly the source's tensors (bytes of every initializer and Constant),
    /// now inline, and reloads to bit-identical weights.
    func testExportWithoutAdapterReproducesTheInputExactly() throws {
        try requireFixtures()
        for (m, v) in Self.variants {
            let src = ONNXFixtures.path("\(m)/\(v)/model.onnx")
            guard FileIO.exists(src) else { continue }
            let base = try Model.load(path: src, threads: 1)
            let out = tmp.file("\(m)-\(v)-plain.onnx")
            let report = try ONNXExporter.export(model: base, adapter: nil, to: out)
            XCTAssertEqual(report.changedTensors, [], "\(m)/\(v)")
            XCTAssertEqual(report.tensorsOverwritten, 0)
            // Full-parameter export of identical weights changes nothing either.
            let same = try ONNXExporter.export(model: base, weights: try base.weights.trainableCopy(), to: tmp.file("same.onnx"))
            XCTAssertEqual(same.changedTensors, [], "\(m)/\(v)")

            let reloaded = try Model.load(path: out, threads: 1)
            XCTAssertEqual(reloaded.config, base.config)
            let got = try ONNXExporter.namedTensors(reloaded.weights)
            for (k, t) in try ONNXExporter.namedTensors(base.weights) {
                XCTAssertEqual(got[k].map { Self.bits($0) }, Self.bits(t), "\(m)/\(v): \(k)")
            }
            let a = try Self.tensorBytes(src), b = try Self.tensorBytes(out)
            XCTAssertEqual(a.count, b.count, "\(m)/\(v)")
            for (k, bytes) in a { XCTAssertTrue(b[k] == bytes, "\(m)/\(v): tensor \(k) differs") }
            XCTAssertEqual(try Self.nodeInputs(src), try Self.nodeInputs(out), "\(m)/\(v): the graph changed")
        }
    }

    /// name (initializers) or "#node/attr" (Constant tensors) → (type, dims, bytes).
    static func tensorBytes(_ path: String) throws -> [String: [UInt8]] {
        let file = try ONNXFile(path: path)
        let graph = try ONNXGraph(file: file)
        let reader = TensorDataReader(graph: graph)
        let ed = GraphEditor(file: file, graph: graph, reader: reader)
        var out: [String: [UInt8]] = [:]
        for ref in ONNXModelLoader.tensorRefs(graph) {
            let h = try reader.header(ref)
            guard ONNXDataType.size(h.dataType) != nil else { continue }
            let key = ref.isInitializer ? h.name : "#\(ref.node)/\(ref.index)"
            var meta: [UInt8] = withUnsafeBytes(of: h.dataType) { Array($0) }
            for d in h.shape { meta += withUnsafeBytes(of: Int64(d)) { Array($0) } }
            out[key] = meta + (try ed.canonicalBytes(h))
        }
        return out
    }

    static func nodeInputs(_ path: String) throws -> [[String]] {
        try ONNXGraph(file: try ONNXFile(path: path)).nodes.map { [$0.opType] + $0.inputs + ["→"] + $0.outputs }
    }

    // MARK: full-parameter weights

    /// Every tensor changed (SFT without adapter): the legacy GPT-2 head is a separate transposed copy of wte, dynamo
    /// reads one tensor for both, GPT-J has its own head; fp16 rounds. Reloaded weights equal the new ones (rounded)
    /// bit for bit and the tied head is still recognised.
    func testFullParameterExport() throws {
        try requireFixtures()
        for (m, v) in [("gpt2-tiny", "legacy17"), ("gpt2-tiny", "dynamo"), ("gpt2-tiny", "optimum"),
                       ("gpt2-tiny", "ort-optimized"), ("gpt2-tiny", "legacy14"), ("gpt2-tiny", "fp16"),
                       ("gptj-tiny", "legacy17"), ("gptj-tiny", "dynamo"), ("gptj-tiny", "bf16")] {
            let base = try Model.load(path: ONNXFixtures.path("\(m)/\(v)/model.onnx"), threads: 1)
            let s = Self.stored(v)
            let w = try base.weights.trainableCopy()
            var rng = RNG(seed: 99)
            for (_, t) in try ONNXExporter.namedTensors(w) {
                for i in 0..<t.count { t.pointer[i] = Self.round(t.pointer[i] + Float(rng.uniform() * 0.02 - 0.01), s) }
            }
            let out = tmp.file("\(m)-\(v)-full.onnx")
            let report = try ONNXExporter.export(model: base, weights: w, to: out)
            XCTAssertEqual(report.changedTensors.count, try ONNXExporter.namedTensors(w).count, "\(m)/\(v)")
            let reloaded = try Model.load(path: out, threads: 1)
            XCTAssertEqual(reloaded.config, base.config, "\(m)/\(v): tied head must stay recognised")
            let got = try ONNXExporter.namedTensors(reloaded.weights)
            for (k, t) in try ONNXExporter.namedTensors(w) {
                XCTAssertEqual(got[k].map { Self.bits($0) }, Self.bits(t), "\(m)/\(v): \(k)")
            }
            XCTAssertEqual(try Self.logits(reloaded), try Self.logits(Self.model(w)), "\(m)/\(v)")
            if m == "gpt2-tiny" && v == "legacy17" {
                // wte and its transposed copy (the head) are both overwritten in place; nothing is added.
                XCTAssertTrue(report.initializersAdded.isEmpty)
                XCTAssertEqual(report.tensorsOverwritten, try ONNXExporter.namedTensors(w).count + 1)
            }
            if v == "dynamo" || v == "optimum", m == "gpt2-tiny" {
                // One tensor serves the embedding and the head: written once, no copy.
                XCTAssertTrue(report.initializersAdded.isEmpty, "\(v): \(report.initializersAdded)")
            }
        }
    }

    /// Changing only the embedding of a tied model also changes the head (it reads the embedding).
    func testTiedEmbeddingChangeMovesTheHead() throws {
        try requireFixtures()
        for v in ["legacy17", "dynamo"] {
            let base = try Model.load(path: ONNXFixtures.path("gpt2-tiny/\(v)/model.onnx"), threads: 1)
            let w = try base.weights.trainableCopy()
            let wteT = try w.wte
            for i in 0..<wteT.count { wteT.pointer[i] *= 1.5 }
            let out = tmp.file("tied-\(v).onnx")
            let report = try ONNXExporter.export(model: base, weights: w, to: out)
            XCTAssertEqual(report.changedTensors, ["transformer.wte.weight"])
            let reloaded = try Model.load(path: out, threads: 1)
            XCTAssertTrue(reloaded.config.tiedHead)
            XCTAssertEqual(try Self.logits(reloaded), try Self.logits(Self.model(w)), v)
        }
    }

    // MARK: deduplicated initializers

    /// Builds a copy of gpt2-tiny/legacy17 in which layer 1 reads layer 0's c_fc weight and ln_1 weight (two roles
    /// sharing one initializer, as the legacy exporter's deduplication produces).
    func makeDeduplicated() throws -> String {
        let file = try ONNXFile(path: ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx"))
        let graph = try ONNXGraph(file: file)
        var rewired = 0
        for n in graph.nodes {
            for (j, x) in n.inputs.enumerated() {
                let to: String? = x == "transformer.h.1.mlp.c_fc.weight" ? "transformer.h.0.mlp.c_fc.weight"
                    : x == "transformer.h.1.ln_1.weight" ? "transformer.h.0.ln_1.weight" : nil
                if let to {
                    XCTAssertEqual(connx_node_set_input(file.handle, Int32(n.index), Int32(j), to), Int32(CONNX_OK))
                    rewired += 1
                }
            }
        }
        XCTAssertEqual(rewired, 2)
        let out = tmp.file("dedup/model.onnx")
        try FileIO.makeDirectories(tmp.file("dedup"))
        XCTAssertEqual(connx_save(file.handle, out, nil, 0), Int32(CONNX_OK))
        return out
    }

    func testDeduplicatedInitializerGetsSplit() throws {
        try requireFixtures()
        let src = try makeDeduplicated()
        let base = try Model.load(path: src, threads: 1)
        XCTAssertEqual(Self.bits((try base.weights.blocks[0].fcIn.weight)), Self.bits((try base.weights.blocks[1].fcIn.weight)))
        // LoRA on c_fc of both layers: the shared tensor keeps layer 0's merged values, layer 1 gets its own.
        let ad = try LoRAAdapter(model: base.weights, config: LoRAConfig(r: 4, alpha: 8, targets: ["c_fc"]), seed: 3)
        var rng = RNG(seed: 5)
        for name in ad.moduleNames {
            guard let f = ad.factors(for: name) else { continue }
            for k in 0..<f.b.count { f.b.pointer[k] = Float(rng.uniform() * 0.4 - 0.2) }
        }
        let out = tmp.file("dedup-lora.onnx")
        let report = try ONNXExporter.export(model: base, adapter: ad, to: out)
        XCTAssertEqual(report.initializersAdded.count, 1, "\(report.initializersAdded)")
        XCTAssertEqual(report.inputsRewired, 1)
        XCTAssertEqual(report.tensorsOverwritten, 1)
        let reloaded = try Model.load(path: out, threads: 1)
        let d = Self.maxDiff(try Self.logits(reloaded), try Self.logits(base, adapter: ad))
        XCTAssertLessThanOrEqual(d, 1e-4)
        XCTAssertNotEqual(Self.bits((try reloaded.weights.blocks[0].fcIn.weight)), Self.bits((try reloaded.weights.blocks[1].fcIn.weight)))
        print("deduplicated c_fc + LoRA: max |exported − base+adapter| = \(d)")

        // Full-parameter: only layer 1's shared tensors change; layer 0 keeps the stored ones.
        let w = try base.weights.trainableCopy()
        for i in 0..<(try w.blocks[1].fcIn.weight).count { (try w.blocks[1].fcIn.weight).pointer[i] += 0.01 }
        for i in 0..<w.blocks[1].ln1.gamma.count { w.blocks[1].ln1.gamma.pointer[i] *= 0.9 }
        let out2 = tmp.file("dedup-full.onnx")
        let r2 = try ONNXExporter.export(model: base, weights: w, to: out2)
        XCTAssertEqual(r2.changedTensors, ["transformer.h.1.ln_1.weight", "transformer.h.1.mlp.c_fc.weight"])
        XCTAssertEqual(r2.tensorsOverwritten, 0)
        XCTAssertEqual(r2.initializersAdded.count, 2)
        let re2 = try Model.load(path: out2, threads: 1)
        XCTAssertEqual(try Self.logits(re2), try Self.logits(Self.model(w)))
        XCTAssertEqual(Self.bits((try re2.weights.blocks[0].fcIn.weight)), Self.bits((try base.weights.blocks[0].fcIn.weight)))

        // Both roles changed identically: still one shared tensor, written in place.
        let w3 = try base.weights.trainableCopy()
        for b in w3.blocks { for i in 0..<(try b.fcIn.weight).count { (try b.fcIn.weight).pointer[i] = (try base.weights.blocks[0].fcIn.weight).pointer[i] * 2 } }
        let r3 = try ONNXExporter.export(model: base, weights: w3, to: tmp.file("dedup-same.onnx"))
        XCTAssertEqual(r3.initializersAdded, [])
        XCTAssertEqual(r3.tensorsOverwritten, 1)
        let re3 = try Model.load(path: tmp.file("dedup-same.onnx"), threads: 1)
        XCTAssertEqual(try Self.logits(re3), try Self.logits(Self.model(w3)))
    }

    // MARK: synthetic graphs: Gemm transB/alpha/beta, LayerNorm decomposition

    func testSyntheticGemmTransBAlphaBetaAndDecomposedNorm() throws {
        let maker = ONNXSyntheticTests(name: "export") { _ in }
        for (transB, alpha, beta, norm) in [(true, Float(0.5), Float(2), ONNXSyntheticTests.Norm.decomposed),
                                            (false, Float(1), Float(1), ONNXSyntheticTests.Norm.layerNorm),
                                            (true, Float(1), Float(0.25), ONNXSyntheticTests.Norm.layerNorm)] {
            var o = ONNXSyntheticTests.Options()
            o.transB = transB; o.alpha = alpha; o.beta = beta; o.norm = norm
            let (bytes, _) = maker.build(o)
            try tmp.write("syn.onnx", bytes)
            let base = try Model.load(path: tmp.file("syn.onnx"), threads: 1)
            // Full-parameter change by powers of two (exact under the alpha/beta division).
            let w = try base.weights.trainableCopy()
            for (_, t) in try ONNXExporter.namedTensors(w) { for i in 0..<t.count { t.pointer[i] = t.pointer[i] * 2 + 0.125 } }
            let out = tmp.file("syn-out.onnx")
            try ONNXExporter.export(model: base, weights: w, to: out)
            let re = try Model.load(path: out, threads: 1)
            let got = try ONNXExporter.namedTensors(re.weights)
            for (k, t) in try ONNXExporter.namedTensors(w) {
                guard let g = got[k] else { XCTFail(k); continue }
                for i in 0..<t.count { XCTAssertEqual(g.pointer[i], t.pointer[i], accuracy: 1e-6, "\(k)[\(i)] transB \(transB)") }
            }
            // LoRA on the synthetic graph (c_attn/c_proj/c_fc with transposed Gemm operands).
            let ad = try Self.randomAdapter(base.weights)
            try ONNXExporter.export(model: base, adapter: ad, to: out)
            let re2 = try Model.load(path: out, threads: 1)
            let ids: [Int32] = [1, 5, 9, 3, 0, 15]
            let a = try re2.logits(ids: ids, batch: 1, seqLen: 6), b = try base.logits(ids: ids, batch: 1, seqLen: 6, adapter: ad)
            XCTAssertLessThanOrEqual(Self.maxDiff(a, b), 1e-4, "transB \(transB) alpha \(alpha) beta \(beta)")
        }
    }

    // MARK: external data layout

    func testExternalDataLayout() throws {
        try requireFixtures()
        for (m, v) in [("gpt2-tiny", "legacy17"), ("gptj-tiny", "external-onefile"), ("gptj-tiny", "external-pertensor"),
                       ("gpt2-tiny", "fp16")] {
            let base = try Model.load(path: ONNXFixtures.path("\(m)/\(v)/model.onnx"), threads: 1)
            let ad = try Self.randomAdapter(base.weights)
            let dir = tmp.file("ext-\(m)-\(v)")
            try FileIO.makeDirectories(dir)
            let out = FileIO.join(dir, "model.onnx")
            let report = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .external)
            XCTAssertEqual(report.dataPath, FileIO.join(dir, "model.onnx.data"))
            XCTAssertTrue(FileIO.exists(FileIO.join(dir, "model.onnx.data")))
            XCTAssertEqual(try Self.listDir(dir), ["model.onnx", "model.onnx.data"])
            // Every large initializer is external with a 64-byte aligned offset.
            let file = try ONNXFile(path: out)
            let graph = try ONNXGraph(file: file)
            var externals = 0
            for i in 0..<graph.initializerCount {
                var t = connx_tensor()
                XCTAssertEqual(connx_tensor_get(file.handle, -1, Int32(i), &t), Int32(CONNX_OK))
                guard t.data_location == 1 else { XCTAssertLessThan(t.raw_size, 1024); continue }
                externals += 1
                for k in 0..<t.external_count {
                    var key: UnsafePointer<CChar>? = nil, value: UnsafePointer<CChar>? = nil
                    _ = connx_tensor_external(file.handle, -1, Int32(i), k, &key, &value)
                    if String(cString: key!) == "offset" { XCTAssertEqual(Int(String(cString: value!))! % 64, 0) }
                    if String(cString: key!) == "location" { XCTAssertEqual(String(cString: value!), "model.onnx.data") }
                }
            }
            XCTAssertGreaterThan(externals, 10)
            let re = try Model.load(path: out, threads: 1)
            let s = Self.stored(v)
            XCTAssertLessThanOrEqual(Self.maxDiff(try Self.logits(re), try Self.logits(base, adapter: ad)), Self.tolerance(s), "\(m)/\(v)")
        }
    }

    /// Exporting over the source itself (external data, same file names): the old data file stays mapped by the
    /// loaded model until the new one replaces it.
    func testExportOverTheSourceItself() throws {
        try requireFixtures()
        for layout in [ONNXExporter.DataLayout.external, .inline] {
            let dir = tmp.file("self-\(layout)")
            try FileIO.makeDirectories(dir)
            for f in ["model.onnx", "model.onnx.data"] {
                try FileIO.writeAtomically(FileIO.join(dir, f), try FileIO.read(ONNXFixtures.path("gptj-tiny/external-onefile/\(f)")))
            }
            let path = FileIO.join(dir, "model.onnx")
            let base = try Model.load(path: path, threads: 1)
            let ad = try Self.randomAdapter(base.weights)
            let want = try Self.logits(base, adapter: ad)
            let before = try Self.logits(base)
            try ONNXExporter.export(model: base, adapter: ad, to: path, layout: layout)
            XCTAssertEqual(try Self.logits(base), before, "the loaded model is unaffected")
            let re = try Model.load(path: path, threads: 1)
            XCTAssertLessThanOrEqual(Self.maxDiff(try Self.logits(re), want), 1e-4, "\(layout)")
        }
    }

    /// The deduplicated case in the external layout: added initializers go to the data file too.
    func testDeduplicatedExternal() throws {
        try requireFixtures()
        let base = try Model.load(path: try makeDeduplicated(), threads: 1)
        let ad = try Self.randomAdapter(base.weights)
        let dir = tmp.file("dedup-ext")
        try FileIO.makeDirectories(dir)
        let out = FileIO.join(dir, "model.onnx")
        let r = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .external)
        XCTAssertEqual(r.initializersAdded.count, 1)
        XCTAssertLessThanOrEqual(Self.maxDiff(try Self.logits(try Model.load(path: out, threads: 1)),
                                              try Self.logits(base, adapter: ad)), 1e-4)
    }

    /// `.automatic` goes external past the inline limit (2 GiB less a margin; lowered here).
    func testAutomaticLayoutGoesExternalPastTheLimit() throws {
        try requireFixtures()
        let base = try Model.load(path: ONNXFixtures.path("gptj-tiny/external-onefile/model.onnx"), threads: 1)
        let ad = try Self.randomAdapter(base.weights)
        for (limit, external) in [(1 << 16, true), (ONNXExporter.inlineLimit, false)] {
            let dir = tmp.file("auto-\(limit)")
            try FileIO.makeDirectories(dir)
            let out = FileIO.join(dir, "m.onnx")
            let r = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .automatic,
                                            hooks: .init(inlineLimit: limit))
            XCTAssertEqual(r.dataPath != nil, external)
            XCTAssertEqual(try Self.listDir(dir), external ? ["m.onnx", "m.onnx.data"] : ["m.onnx"])
            XCTAssertLessThanOrEqual(Self.maxDiff(try Self.logits(try Model.load(path: out, threads: 1)),
                                                  try Self.logits(base, adapter: ad)), 1e-4)
        }
    }

    static func listDir(_ dir: String) throws -> [String] {
        guard let d = opendir(dir) else { throw GFNError.io("cannot list \(dir)") }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != "." && n != ".." { out.append(n) }
        }
        return out.sorted()
    }

    // MARK: failures leave nothing behind

    func testFailedExportLeavesNoFile() throws {
        try requireFixtures()
        let base = try Model.load(path: ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx"), threads: 1)
        let ad = try Self.randomAdapter(base.weights)
        let dir = tmp.file("fail")
        try FileIO.makeDirectories(dir)
        let out = FileIO.join(dir, "model.onnx")

        func expectFailure(_ status: GFNStatus, _ body: () throws -> Void, line: UInt = #line) {
            do {
                try body()
                XCTFail("export should have failed", line: line)
            } catch let e as GFNError {
                XCTAssertEqual(e.status, status, e.message, line: line)
            } catch {
                XCTFail("\(error)", line: line)
            }
        }
        // Injected failures after the temporary files were written (inline and external layouts).
        expectFailure(.io) { _ = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .inline, hooks: .init(fault: .beforeRename)) }
        XCTAssertEqual(try Self.listDir(dir), [])
        expectFailure(.io) { _ = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .external, hooks: .init(fault: .beforeRename)) }
        XCTAssertEqual(try Self.listDir(dir), [])
        expectFailure(.io) { _ = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .external, hooks: .init(fault: .afterDataFile)) }
        XCTAssertEqual(try Self.listDir(dir), [])

        // An existing file stays untouched by a failed export.
        try FileIO.writeAtomically(out, Array("keep me".utf8))
        expectFailure(.io) { _ = try ONNXExporter.export(model: base, adapter: ad, to: out, layout: .inline, hooks: .init(fault: .beforeRename)) }
        XCTAssertEqual(try FileIO.readText(out), "keep me")

        // An adapter made for another model.
        let gptj = try Model.load(path: ONNXFixtures.path("gptj-tiny/legacy17/model.onnx"), threads: 1)
        expectFailure(.state) { try ONNXExporter.export(model: base, adapter: try Self.randomAdapter(gptj.weights), to: out) }
        // A non-finite adapter.
        let bad = try ad.copy()
        if let f = bad.factors(for: bad.moduleNames[0]) { f.b.pointer[0] = .nan }
        expectFailure(.numerical) { try ONNXExporter.export(model: base, adapter: bad, to: out) }
        // A weight that overflows fp16 in an fp16 graph.
        let half = try Model.load(path: ONNXFixtures.path("gpt2-tiny/fp16/model.onnx"), threads: 1)
        let big = try half.weights.trainableCopy()
        (try big.blocks[0].fcIn.weight).pointer[0] = 1e6
        expectFailure(.numerical) { try ONNXExporter.export(model: half, weights: big, to: out) }
        // A directory as the target, a missing directory, a model not loaded from ONNX.
        expectFailure(.invalidArgument) { try ONNXExporter.export(model: base, adapter: ad, to: dir) }
        expectFailure(.io) { try ONNXExporter.export(model: base, adapter: ad, to: FileIO.join(dir, "missing/model.onnx")) }
        let random = Self.model(try ModelWeights.random(config: base.config, seed: 1))
        expectFailure(.unsupported) { try ONNXExporter.export(model: random, adapter: nil, to: out) }
        XCTAssertEqual(try Self.listDir(dir), ["model.onnx"])
        XCTAssertEqual(try FileIO.readText(out), "keep me")

        // The source changed since loading.
        let copyDir = tmp.file("changed")
        try FileIO.makeDirectories(copyDir)
        let copy = FileIO.join(copyDir, "model.onnx")
        try FileIO.writeAtomically(copy, try FileIO.read(ONNXFixtures.path("gpt2-tiny/legacy17/model.onnx")))
        let loaded = try Model.load(path: copy, threads: 1)
        try FileIO.writeAtomically(copy, try FileIO.read(ONNXFixtures.path("gpt2-tiny/dynamo/model.onnx")))
        expectFailure(.state) { try ONNXExporter.export(model: loaded, adapter: ad, to: FileIO.join(copyDir, "out.onnx")) }
        XCTAssertEqual(try Self.listDir(copyDir), ["model.onnx"])

        // Afterwards a good export still works and replaces the file.
        try ONNXExporter.export(model: base, adapter: ad, to: out)
        XCTAssertLessThanOrEqual(Self.maxDiff(try Self.logits(try Model.load(path: out, threads: 1)),
                                              try Self.logits(base, adapter: ad)), 1e-4)
        XCTAssertEqual(try Self.listDir(dir), ["model.onnx"])
    }

    // MARK: files for an onnxruntime check (GFNLM_EXPORT_DIR)

    /// Writes exported files and gfnlm's logits with the adapter (raw little-endian fp32, [2, 8, V] for
    /// `ids`) into $GFNLM_EXPORT_DIR for a check in onnxruntime; skipped when the variable is not set.
    func testWriteExportsForOnnxruntime() throws {
        guard let p = getenv("GFNLM_EXPORT_DIR") else { throw XCTSkip("set GFNLM_EXPORT_DIR to write files for onnxruntime") }
        try requireFixtures()
        let root = String(cString: p)
        var cases: [(String, String, ONNXExporter.DataLayout)] = Self.variants.map { ($0.0, $0.1, .automatic) }
        cases += [("gpt2-tiny", "legacy17", .external), ("gptj-tiny", "legacy17", .external)]
        for (m, v, layout) in cases {
            let base = try Model.load(path: ONNXFixtures.path("\(m)/\(v)/model.onnx"), threads: 1)
            let ad = try Self.randomAdapter(base.weights)
            let dir = FileIO.join(root, "\(m)__\(v)\(layout == .external ? "__external" : "")")
            try FileIO.makeDirectories(dir)
            try ONNXExporter.export(model: base, adapter: ad, to: FileIO.join(dir, "model.onnx"), layout: layout)
            try Self.writeFloats(FileIO.join(dir, "gfnlm_logits_adapter.f32"), try Self.logits(base, adapter: ad))
        }
        // Full-parameter weights (every tensor changed; the expected logits are the changed model's).
        for (m, v) in [("gpt2-tiny", "legacy17"), ("gpt2-tiny", "dynamo"), ("gptj-tiny", "legacy17")] {
            let base = try Model.load(path: ONNXFixtures.path("\(m)/\(v)/model.onnx"), threads: 1)
            let w = try base.weights.trainableCopy()
            var rng = RNG(seed: 99)
            for (_, t) in try ONNXExporter.namedTensors(w) { for i in 0..<t.count { t.pointer[i] += Float(rng.uniform() * 0.02 - 0.01) } }
            let dir = FileIO.join(root, "\(m)__\(v)__full")
            try FileIO.makeDirectories(dir)
            try ONNXExporter.export(model: base, weights: w, to: FileIO.join(dir, "model.onnx"))
            try Self.writeFloats(FileIO.join(dir, "gfnlm_logits_adapter.f32"), try Self.logits(Self.model(w)))
        }
        // The deduplicated-initializer case.
        let dedup = try Model.load(path: try makeDeduplicated(), threads: 1)
        let ad = try Self.randomAdapter(dedup.weights)
        let dir = FileIO.join(root, "gpt2-tiny__dedup")
        try FileIO.makeDirectories(dir)
        try ONNXExporter.export(model: dedup, adapter: ad, to: FileIO.join(dir, "model.onnx"))
        try Self.writeFloats(FileIO.join(dir, "gfnlm_logits_adapter.f32"), try Self.logits(dedup, adapter: ad))
    }

    /// Exports a large model given by $GFNLM_BIG_ONNX (e.g. GPT-2 small) with a LoRA adapter, inline and
    /// external, timing it; writes the files and logits under $GFNLM_EXPORT_DIR when set (else a temp dir).
    func testLargeExportFromEnvironment() throws {
        guard let p = getenv("GFNLM_BIG_ONNX") else { throw XCTSkip("set GFNLM_BIG_ONNX to export a large model") }
        let src = String(cString: p)
        let root = getenv("GFNLM_EXPORT_DIR").map { String(cString: $0) } ?? tmp.path
        var t0 = ONNXFixtures.now()
        let base = try Model.load(path: src)
        print("load \(src): \(ONNXFixtures.now() - t0) s")
        let ad = try Self.randomAdapter(base.weights, magnitude: 0.02)
        let ids: [Int32] = [15496, 995, 11, 428, 318, 257, 1332, 13].map { $0 % Int32(base.config.vocabSize) }
        let want = try base.logits(ids: ids, batch: 1, seqLen: ids.count, adapter: ad)
        for layout in [ONNXExporter.DataLayout.inline, .external] {
            let dir = FileIO.join(root, "big-\(layout)")
            try FileIO.makeDirectories(dir)
            t0 = ONNXFixtures.now()
            let r = try ONNXExporter.export(model: base, adapter: ad, to: FileIO.join(dir, "model.onnx"), layout: layout)
            print("export \(layout): \(ONNXFixtures.now() - t0) s, \(r.bytes) bytes, \(r.changedTensors.count) tensors changed; "
                  + r.phases.map { "\($0.name) \(($0.seconds * 1000).rounded() / 1000)" }.joined(separator: ", "))
            let re = try Model.load(path: FileIO.join(dir, "model.onnx"))
            let got = try re.logits(ids: ids, batch: 1, seqLen: ids.count)
            let d = Self.maxDiff(got, want)
            print("max |exported − base+adapter| = \(d)")
            XCTAssertLessThanOrEqual(d, 1e-4)
            try Self.writeFloats(FileIO.join(dir, "gfnlm_logits_adapter.f32"), want)
        }
    }

    static func writeFloats(_ path: String, _ v: [Float]) throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(v.count * 4)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } }
        try FileIO.writeAtomically(path, bytes)
    }
}
