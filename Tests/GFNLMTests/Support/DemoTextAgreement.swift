import XCTest
@testable import GFNLM

/// The shipped demo model and a sentence of real text, for measuring how far a weight format moves its logits.
struct DemoTextAgreement {
    let reference: Model
    let ids: [Int32]
    let referenceLogits: [Float]
    let modelDirectory: String

    /// Skips when models/demo-gpt2 (or its tokenizer) is not in the checkout.
    init() throws {
        var root = FileIO.dirname(of: #filePath)
        root = FileIO.dirname(of: FileIO.dirname(of: FileIO.dirname(of: root)))
        let dir = FileIO.join(FileIO.join(root, "models"), "demo-gpt2")
        guard FileIO.exists(FileIO.join(dir, "model.onnx")) else { throw XCTSkip("models/demo-gpt2 not present") }
        reference = try Model.load(path: dir, threads: 2)
        guard let tok = reference.tokenizer else { throw XCTSkip("demo model without tokenizer") }
        ids = tok.encode("The quick brown fox jumps over the lazy dog. In 1912 the ship sailed from Southampton to "
                         + "New York, carrying more than two thousand passengers and crew; numbers such as 42, 17 and "
                         + "3.14 appear as well.")
        referenceLogits = try reference.logits(ids: ids, batch: 1, seqLen: ids.count)
        modelDirectory = dir
    }

    /// Max |Δlogit| against the fp32 model, the largest |logit| of the fp32 model, and the means over next-token
    /// predictions of log p (fp32, other) and of |Δ log p|.
    func compare(_ w: ModelWeights) throws -> (worst: Float, maxAbs: Float, meanLogP: Double, meanLogPOther: Double,
                                               drift: Double) {
        let a = referenceLogits, V = reference.config.vocabSize
        let b = try Model(transformer: Transformer(weights: w, threads: 2), tokenizer: nil)
            .logits(ids: ids, batch: 1, seqLen: ids.count)
        var worst: Float = 0, maxAbs: Float = 0, llA = 0.0, llB = 0.0, drift = 0.0
        for t in 0..<(ids.count - 1) {
            var la = [Double](), lb = [Double]()
            for v in 0..<V {
                worst = max(worst, abs(a[t * V + v] - b[t * V + v])); maxAbs = max(maxAbs, abs(a[t * V + v]))
                la.append(Double(a[t * V + v])); lb.append(Double(b[t * V + v]))
            }
            let next = Int(ids[t + 1])
            let pa = BackwardTests.logSoftmax(la)[next], pb = BackwardTests.logSoftmax(lb)[next]
            llA += pa; llB += pb; drift += abs(pa - pb)
        }
        let n = Double(ids.count - 1)
        return (worst, maxAbs, llA / n, llB / n, drift / n)
    }
}
