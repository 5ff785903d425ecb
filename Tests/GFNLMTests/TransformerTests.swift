import XCTest
@testable import GFNLM

final class TransformerTests: XCTestCase {
    /// Logits [rows·T, V] for a forward chunk through the optimised model.
    func run(_ tf: Transformer, _ tokens: [Int32], rows: Int, T: Int, caches: [KVCache], padding: [Int]? = nil,
             adapter: LoRAAdapter? = nil, ws: ForwardWorkspace) throws -> [[Float]] {
        let V = tf.config.vocabSize
        let hidden = try tokens.withUnsafeBufferPointer { tb in
            try tf.forward(tokens: tb, rows: rows, T: T, caches: caches, padding: padding, adapter: adapter, workspace: ws)
        }
        var out = [Float](repeating: 0, count: rows * T * V)
        try out.withUnsafeMutableBufferPointer { try tf.logits(hidden: hidden, count: rows * T, adapter: adapter, into: $0.baseAddress!) }
        return (0..<(rows * T)).map { Array(out[$0 * V..<($0 + 1) * V]) }
    }

    func maxDiff(_ a: [Float], _ b: [Double]) -> Double {
        zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = RNG(seed: seed)
        return (0..<n).map { _ in Int32(rng.below(vocab)) }
    }

    func testFullForwardMatchesNaiveReference() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 1, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let toks = randomTokens(9, vocab: w.config.vocabSize, seed: 2)
            let ours = try run(tf, toks, rows: 1, T: 9, caches: [tf.makeCache(capacity: 9)], ws: ForwardWorkspace())
            let ref = NaiveGPT(w: w).logits(toks)
            for t in 0..<9 {
                XCTAssertLessThan(maxDiff(ours[t], ref[t]), 1e-4, "\(arch) position \(t)")
            }
        }
    }

    func testCachedDecodingEqualsFullForward() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 3, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let ws = try ForwardWorkspace()
            let toks = randomTokens(12, vocab: w.config.vocabSize, seed: 4)
            let full = try run(tf, toks, rows: 1, T: 12, caches: [tf.makeCache(capacity: 12)], ws: ws)
            let cache = try tf.makeCache(capacity: 12)
            var got = try run(tf, Array(toks[0..<5]), rows: 1, T: 5, caches: [cache], ws: ws)
            for t in 5..<12 { got += try run(tf, [toks[t]], rows: 1, T: 1, caches: [cache], ws: ws) }
            for t in 0..<12 { XCTAssertLessThan(maxDiff(got[t], full[t]), 2e-5, "\(arch) step \(t)") }
        }
    }

    func testSharedPrefixAndBatchedRowsEqualSeparateRuns() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 5, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let ws = try ForwardWorkspace()
            let prompt = randomTokens(6, vocab: w.config.vocabSize, seed: 6)
            let contA = randomTokens(4, vocab: w.config.vocabSize, seed: 7)
            let contB = randomTokens(4, vocab: w.config.vocabSize, seed: 8)
            let fullA = try run(tf, prompt + contA, rows: 1, T: 10, caches: [tf.makeCache(capacity: 10)], ws: ws)
            let fullB = try run(tf, prompt + contB, rows: 1, T: 10, caches: [tf.makeCache(capacity: 10)], ws: ws)
            let pre = try tf.makeCache(capacity: 6)
            _ = try run(tf, prompt, rows: 1, T: 6, caches: [pre], ws: ws)
            let ca = try tf.makeCache(capacity: 4, prefix: pre), cb = try tf.makeCache(capacity: 4, prefix: pre)
            // two tokens at once, then one by one
            var got = try run(tf, Array(contA[0..<2]) + Array(contB[0..<2]), rows: 2, T: 2, caches: [ca, cb], ws: ws)
            for t in 2..<4 { got += try run(tf, [contA[t], contB[t]], rows: 2, T: 1, caches: [ca, cb], ws: ws) }
            // got order: [A0, A1, B0, B1, A2, B2, A3, B3]
            let order: [(Int, Int)] = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]
            for (i, (row, t)) in order.enumerated() {
                let ref = row == 0 ? fullA[6 + t] : fullB[6 + t]
                XCTAssertLessThan(maxDiff(got[i], ref), 2e-5, "\(arch) row \(row) token \(t)")
            }
        }
    }

    func testLeftPaddingEqualsUnpaddedRow() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 9, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let ws = try ForwardWorkspace()
            let long = randomTokens(8, vocab: w.config.vocabSize, seed: 10)
            let short = randomTokens(5, vocab: w.config.vocabSize, seed: 11)
            let ref = try run(tf, short, rows: 1, T: 5, caches: [tf.makeCache(capacity: 8)], ws: ws)
            let refLong = try run(tf, long, rows: 1, T: 8, caches: [tf.makeCache(capacity: 8)], ws: ws)
            let caches = [try tf.makeCache(capacity: 9), try tf.makeCache(capacity: 9)]
            let batch = long + [0, 0, 0] + short
            let got = try run(tf, batch, rows: 2, T: 8, caches: caches, padding: [0, 3], ws: ws)
            for t in 0..<8 { XCTAssertLessThan(maxDiff(got[t], refLong[t]), 2e-5) }
            for t in 0..<5 { XCTAssertLessThan(maxDiff(got[8 + 3 + t], ref[t]), 2e-5, "\(arch) padded row token \(t)") }
            // a cached step after the padded prefill continues at the right position
            let next: [Int32] = [3, 4]
            let step = try run(tf, next, rows: 2, T: 1, caches: caches, ws: ws)
            let refStep = try run(tf, short + [4], rows: 1, T: 6, caches: [tf.makeCache(capacity: 6)], ws: ws)
            XCTAssertLessThan(maxDiff(step[1], refStep[5]), 2e-5)
        }
    }

    func testLoRABranchMatchesNaiveReference() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 12, std: 0.2)
            var rng = RNG(seed: 13)
            var factors: [String: LoRAFactors] = [:]
            for lin in w.linears {
                let r = 3
                let a = try Tensor(shape: [r, lin.inFeatures], values: (0..<(r * lin.inFeatures)).map { _ in Float(rng.normal()) * 0.1 })
                let b = try Tensor(shape: [lin.outFeatures, r], values: (0..<(r * lin.outFeatures)).map { _ in Float(rng.normal()) * 0.1 })
                factors[lin.name] = try LoRAFactors(a: a, b: b, scale: 0.7)
            }
            let adapter = LoRAAdapter(factors: factors)
            let tf = Transformer(weights: w, threads: 2)
            let toks = randomTokens(6, vocab: w.config.vocabSize, seed: 14)
            let ours = try run(tf, toks, rows: 1, T: 6, caches: [tf.makeCache(capacity: 6)], adapter: adapter, ws: ForwardWorkspace())
            let ref = NaiveGPT(w: w).logits(toks, lora: adapter)
            let base = NaiveGPT(w: w).logits(toks)
            for t in 0..<6 {
                XCTAssertLessThan(maxDiff(ours[t], ref[t]), 1e-4, "\(arch) position \(t)")
                XCTAssertGreaterThan(maxDiff(ours[t], base[t]), 1e-3, "adapter must change the logits")
            }
        }
    }

    func testErrorsInsteadOfTraps() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2, positions: 8), seed: 1)
        let tf = Transformer(weights: w, threads: 1)
        let ws = try ForwardWorkspace()
        XCTAssertThrowsError(try run(tf, [1000], rows: 1, T: 1, caches: [tf.makeCache(capacity: 4)], ws: ws)) {
            XCTAssertEqual(($0 as? GFNError)?.status, .outOfRange)
        }
        XCTAssertThrowsError(try run(tf, [-1], rows: 1, T: 1, caches: [tf.makeCache(capacity: 4)], ws: ws))
        XCTAssertThrowsError(try run(tf, [1, 2], rows: 1, T: 2, caches: [tf.makeCache(capacity: 1)], ws: ws))
        XCTAssertThrowsError(try run(tf, Array(repeating: 1, count: 9), rows: 1, T: 9, caches: [tf.makeCache(capacity: 9)], ws: ws)) {
            XCTAssertEqual(($0 as? GFNError)?.status, .outOfRange)
        }
        XCTAssertThrowsError(try run(tf, [1, 2], rows: 2, T: 1, caches: [tf.makeCache(capacity: 1)], ws: ws))
    }
}
