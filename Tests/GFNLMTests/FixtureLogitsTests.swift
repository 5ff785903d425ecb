import XCTest
@testable import GFNLM

/// Every fixture export against PyTorch: the full forward (left-padded batch) and one cached decoding step after
/// it, with the tolerances of variant.json (1e-4 fp32, 5e-3 fp16).
final class FixtureLogitsTests: XCTestCase {
    func variants() throws -> [(dir: String, meta: JSONValue)] {
        var out: [(String, JSONValue)] = []
        for model in ["gpt2-tiny", "gptj-tiny"] {
            let root = FileIO.join(TestFiles.fixtures, model)
            for v in ["legacy14", "legacy17", "legacy17-past", "optimum", "optimum-past", "dynamo", "fp16",
                      "fp16-converter", "bf16", "external-onefile", "external-pertensor", "ort-optimized"] {
                let dir = FileIO.join(root, v)
                let metaPath = FileIO.join(dir, "variant.json")
                guard FileIO.exists(metaPath) else { continue }
                let meta = try JSONValue.parse(contentsOf: metaPath)
                if meta["expect"]?.string == "ok" { out.append((dir, meta)) }
            }
        }
        return out
    }

    func testFullForwardAndCachedStepMatchPyTorch() throws {
        let all = try variants()
        XCTAssertGreaterThanOrEqual(all.count, 20)
        for (dir, meta) in all {
            guard let refRel = meta["reference"]?.string else { XCTFail("\(dir): no reference"); continue }
            let tol = Float(meta["tolerance"]?.double ?? 1e-4)
            let ref = try Safetensors.load(path: FileIO.join(dir, refRel))
            let model = try Model.load(path: dir, threads: 1)
            let tf = model.transformer
            let V = model.config.vocabSize
            let ids = try ref.int64s("input_ids").map { Int32($0) }
            let mask = try ref.int64s("attention_mask")
            let expected = try ref.floats("logits")
            let B = 2, T = ids.count / 2
            let padding = (0..<B).map { r in mask[(r * T)..<((r + 1) * T)].prefix { $0 == 0 }.count }
            let caches = try (0..<B).map { _ in try tf.makeCache(capacity: T + 1) }
            let ws = try ForwardWorkspace()
            var clean = ids
            for r in 0..<B { for t in 0..<padding[r] { clean[r * T + t] = 0 } }
            let hidden = try clean.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: B, T: T, caches: caches, padding: padding, workspace: ws)
            }
            var logits = [Float](repeating: 0, count: B * T * V)
            try logits.withUnsafeMutableBufferPointer { try tf.logits(hidden: hidden, count: B * T, adapter: nil, into: $0.baseAddress!) }
            var worst: Float = 0
            for r in 0..<B {
                for t in padding[r]..<T {
                    for v in 0..<V { worst = max(worst, abs(logits[(r * T + t) * V + v] - expected[(r * T + t) * V + v])) }
                }
            }
            XCTAssertLessThanOrEqual(worst, tol, "\(dir): full forward max |Δ| = \(worst)")
            // one cached step
            let step = try ref.int64s("step_input_ids").map { Int32($0) }
            let expectedStep = try ref.floats("step_logits")
            let h2 = try step.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: B, T: 1, caches: caches, workspace: ws)
            }
            var stepLogits = [Float](repeating: 0, count: B * V)
            try stepLogits.withUnsafeMutableBufferPointer { try tf.logits(hidden: h2, count: B, adapter: nil, into: $0.baseAddress!) }
            let worstStep = zip(stepLogits, expectedStep).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worstStep, tol, "\(dir): cached step max |Δ| = \(worstStep)")
        }
    }
}
