import XCTest
@testable import GFNLM

/// Adapters written by Hugging Face PEFT itself (tools/make_peft_fixture.py): gfnlm loads them onto the ONNX
/// export of the same model and reproduces the PEFT model's logits; saving and reloading keeps them.
final class PEFTFixtureTests: XCTestCase {
    func testPEFTWrittenAdaptersReproducePEFTLogits() throws {
        for name in ["gpt2-tiny", "gptj-tiny"] {
            let dir = FileIO.join(TestFiles.fixtures, "peft/\(name)")
            let model = try Model.load(path: FileIO.join(TestFiles.fixtures, "\(name)/legacy17"), threads: 1)
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
        }
    }
}
