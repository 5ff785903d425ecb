import Foundation
import XCTest
@testable import GFNLM

/// Adapters written by Hugging Face PEFT itself (tools/make_peft_fixture.py): gfnlm loads them onto the ONNX
/// export of the same model and reproduces the PEFT model's logits; saving and reloading keeps them.
final class PEFTFixtureTests: XCTestCase {
    func testPEFTWrittenAdaptersReproducePEFTLogits() throws {
        // "-head": LoRA on lm_head too (tied on GPT-2), with PEFT's saved copy of the head weights
        for name in ["gpt2-tiny", "gptj-tiny", "gpt2-tiny-head", "gptj-tiny-head"] {
            let dir = FileIO.join(TestFiles.fixtures, "peft/\(name)")
            let modelName = name.hasSuffix("-head") ? String(name.dropLast("-head".count)) : name
            let model = try Model.load(path: FileIO.join(TestFiles.fixtures, "\(modelName)/legacy17"), threads: 1)
            let adapter = try LoRAAdapter.load(peftDirectory: FileIO.join(dir, "adapter"), model: model.weights)
            let ref = try Safetensors.load(path: FileIO.join(dir, "reference.safetensors"))
            let ids = try ref.int64s("input_ids").map { Int32($0) }
            let expected = try ref.floats("logits")
            let got = try model.logits(ids: ids, batch: 1, seqLen: ids.count, adapter: adapter)
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-4, "\(name): max |Δ| vs PEFT = \(worst)")
            let base = try model.logits(ids: ids, batch: 1, seqLen: ids.count)
            XCTAssertGreaterThan(zip(base, expected).map { abs($0 - $1) }.max() ?? 0, 0.1, "the adapter matters")
            // round trip through gfnlm's writer
            let out = FileIO.join("/tmp", "gfnlm-peft-\(name)-\(getpid())")
            try adapter.save(peftDirectory: out, model: model.weights)
            let again = try LoRAAdapter.load(peftDirectory: out, model: model.weights)
            XCTAssertEqual(try model.logits(ids: ids, batch: 1, seqLen: ids.count, adapter: again), got)
            XCTAssertEqual(adapter.headFactors != nil, name.hasSuffix("-head"))
        }
    }

    /// PEFT's saved copy of the head must be this model's head: an adapter whose lm_head.base_layer.weight differs
    /// (another model, a resized vocabulary) is refused, naming the tensor.
    func testSavedHeadCopyMustMatchTheModel() throws {
        let model = try Model.load(path: FileIO.join(TestFiles.fixtures, "gpt2-tiny/legacy17"), threads: 1)
        let src = FileIO.join(TestFiles.fixtures, "peft/gpt2-tiny-head/adapter")
        let st = try Safetensors.load(path: FileIO.join(src, LoRAAdapter.peftWeightsFile))
        var tensors: [SafetensorsTensor] = []
        for name in st.names {
            var v = try st.floats(name)
            if name.hasSuffix("lm_head.base_layer.weight") { v[7] += 0.5 }
            tensors.append(SafetensorsTensor(name: name, shape: try st.shape(name), floats: v))
        }
        let dir = FileIO.join("/tmp", "gfnlm-peft-badhead-\(getpid())")
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: FileIO.join(src, LoRAAdapter.peftConfigFile),
                                         toPath: FileIO.join(dir, LoRAAdapter.peftConfigFile))
        try Data(try Safetensors.serialize(tensors: tensors, metadata: ["format": "pt"]))
            .write(to: URL(fileURLWithPath: FileIO.join(dir, LoRAAdapter.peftWeightsFile)))
        XCTAssertThrowsError(try LoRAAdapter.load(peftDirectory: dir, model: model.weights)) { e in
            let m = (e as? GFNError)?.message ?? ""
            XCTAssertTrue(m.contains("lm_head.base_layer.weight") && m.contains("differs"), m)
        }
    }
}
