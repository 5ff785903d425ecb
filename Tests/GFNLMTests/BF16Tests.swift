import Foundation
import XCTest
@testable import GFNLM
@testable import GFNLMC
import CGFNLM

/// bf16 weight storage: the packed layout, the kernels against sgemm on the same (rounded) weights, whole models
/// against fp32 models holding the rounded weights (must agree to fp32 precision) and against the original fp32
/// weights (bf16 rounding drift, bounded), LoRA gradients, GFlowNet training, loader and C ABI options.
final class BF16Tests: XCTestCase {
    static func randomArray(_ n: Int, _ rng: inout RNG, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in Float(rng.normal()) * scale }
    }

    static func roundBF16(_ x: Float) -> Float { Float(bitPattern: ConstResolver.roundToBF16(x) << 16) }

    /// An fp32 model whose matrices hold exactly the bf16 values of `w` (the reference for a bf16 model).
    static func decodedFP32(_ w: ModelWeights) throws -> ModelWeights { try decodedFP32Weights(w) }

    // MARK: layout and kernels

    func testPackLayoutRoundingAndColumns() throws {
        var rng = RNG(seed: 1)
        for (K, N) in [(1, 1), (3, 17), (8, 16), (37, 45), (64, 33)] {
            let src = Self.randomArray(K * N, &rng)
            let m = try src.withUnsafeBufferPointer { try BF16Matrix.pack($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N) }
            // the same matrix given as its transpose
            var t = [Float](repeating: 0, count: K * N)
            for k in 0..<K { for n in 0..<N { t[n * K + k] = src[k * N + n] } }
            let mt = try t.withUnsafeBufferPointer { try BF16Matrix.pack($0.baseAddress!, ld: K, transposed: true, rows: K, cols: N, threads: 2) }
            var col = [Float](repeating: 0, count: K)
            for k in 0..<K {
                for n in 0..<N {
                    XCTAssertEqual(m.value(k, n), Self.roundBF16(src[k * N + n]), "K \(K) N \(N) [\(k), \(n)]")
                    XCTAssertEqual(mt.value(k, n), m.value(k, n))
                }
            }
            let dec = try m.decoded()
            for n in 0..<N {
                col.withUnsafeMutableBufferPointer { m.column(n, into: $0.baseAddress!) }
                for k in 0..<K {
                    XCTAssertEqual(col[k], m.value(k, n))
                    XCTAssertEqual(dec.pointer[k * N + n], m.value(k, n))
                }
            }
        }
        // round to nearest even at ties, NaN kept, ±0 and ∞ kept
        let ties: [Float] = [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), .infinity, -0.0, .nan]
        let m = try ties.withUnsafeBufferPointer { try BF16Matrix.pack($0.baseAddress!, ld: 5, transposed: false, rows: 1, cols: 5) }
        XCTAssertEqual(m.value(0, 0).bitPattern, 0x3F80_0000)
        XCTAssertEqual(m.value(0, 1).bitPattern, 0x3F82_0000)
        XCTAssertEqual(m.value(0, 2), .infinity)
        XCTAssertEqual(m.value(0, 3).bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertTrue(m.value(0, 4).isNaN)
    }

    /// y = x·W with bf16 W against sgemm on the same rounded weights, for decode-sized and prefill-sized M, odd
    /// K and N, 1 and 2 threads; and dx = dy·Wᵀ (set and accumulate).
    func testKernelsMatchSGEMMOnRoundedWeights() throws {
        print("bf16 kernel: \(BF16Matrix.usesAVX512BF16 ? "AVX512-BF16" : "AVX2/FMA fallback")")
        var rng = RNG(seed: 2)
        for (K, N) in [(37, 45), (64, 100), (130, 17), (1, 33), (201, 333)] {
            let w = Self.randomArray(K * N, &rng)
            let m = try w.withUnsafeBufferPointer { try BF16Matrix.pack($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N) }
            let wr = try m.decoded()
            for M in [1, 2, 3, 5, 8, 17, 32, 64, 130] {
                let x = Self.randomArray(M * K, &rng)
                var ref = [Float](repeating: 0, count: M * N)
                var scale = [Float](repeating: 0, count: M * N)  // Σ_k |x||w|: the error scale of each output
                x.withUnsafeBufferPointer { xb in
                    ref.withUnsafeMutableBufferPointer { rb in
                        BLAS.gemm(m: M, n: N, k: K, a: xb.baseAddress!, lda: K, b: wr.pointer, ldb: N, c: rb.baseAddress!, ldc: N)
                    }
                }
                for i in 0..<M { for n in 0..<N { for k in 0..<K { scale[i * N + n] += abs(x[i * K + k] * wr.pointer[k * N + n]) } } }
                for threads in [1, 2] {
                    // y with a leading dimension wider than N (the kernel must not write past N)
                    let ldy = N + 3
                    var y = [Float](repeating: .nan, count: M * ldy)
                    x.withUnsafeBufferPointer { xb in
                        y.withUnsafeMutableBufferPointer { yb in
                            m.multiply(x: xb.baseAddress!, ldx: K, m: M, y: yb.baseAddress!, ldy: ldy, threads: threads)
                        }
                    }
                    var worst: Float = 0
                    for i in 0..<M {
                        for n in 0..<N { worst = max(worst, abs(y[i * ldy + n] - ref[i * N + n]) / max(scale[i * N + n], 1e-30)) }
                        for n in N..<ldy { XCTAssertTrue(y[i * ldy + n].isNaN, "wrote past N") }
                    }
                    XCTAssertLessThanOrEqual(worst, 1e-5, "M \(M) K \(K) N \(N) threads \(threads)")
                }
                // dx = dy · Wᵀ (M × K), set then accumulate
                let dy = Self.randomArray(M * N, &rng)
                var refDx = [Float](repeating: 0, count: M * K)
                dy.withUnsafeBufferPointer { db in
                    refDx.withUnsafeMutableBufferPointer { rb in
                        BLAS.gemm(m: M, n: K, k: N, a: db.baseAddress!, lda: N, b: wr.pointer, ldb: N, transB: true,
                                  c: rb.baseAddress!, ldc: K)
                    }
                }
                var dx = [Float](repeating: 0, count: M * K)
                try dy.withUnsafeBufferPointer { db in
                    try dx.withUnsafeMutableBufferPointer { xb in
                        try m.multiplyTransposed(dy: db.baseAddress!, lddy: N, m: M, dx: xb.baseAddress!, lddx: K, accumulate: false, threads: 2)
                        try m.multiplyTransposed(dy: db.baseAddress!, lddy: N, m: M, dx: xb.baseAddress!, lddx: K, accumulate: true, threads: 2)
                    }
                }
                let errDx = zip(dx, refDx).map { abs($0 - 2 * $1) / (2 * Float(N).squareRoot() * 4 + abs($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(errDx, 1e-5, "dx: M \(M) K \(K) N \(N)")
            }
        }
    }

    func testFallbackCanBeForced() {
        let had = BF16Matrix.usesAVX512BF16
        XCTAssertFalse(BF16Matrix.allowAVX512BF16(false))
        XCTAssertFalse(BF16Matrix.usesAVX512BF16)
        let now = BF16Matrix.allowAVX512BF16(true)
        XCTAssertEqual(now, BF16Matrix.usesAVX512BF16)
        XCTAssertEqual(now, had, "re-allowing restores the detected kernel")
    }

    // MARK: whole models

    /// Logits of `w` for one batch of two rows (full forward, then a cached step); [rows·(T+1), V].
    static func logits(_ w: ModelWeights, _ ids: [Int32], rows: Int, threads: Int = 2,
                       packed: Bool = false) throws -> [Float] {
        let tf = Transformer(weights: w, threads: threads, usesPackedWeights: packed)
        let T = ids.count / rows, V = w.config.vocabSize
        let caches = try (0..<rows).map { _ in try tf.makeCache(capacity: T + 1) }
        let ws = try ForwardWorkspace()
        var out = [Float](repeating: 0, count: rows * (T + 1) * V)
        let h = try ids.withUnsafeBufferPointer { try tf.forward(tokens: $0, rows: rows, T: T, caches: caches, workspace: ws) }
        try out.withUnsafeMutableBufferPointer { try tf.logits(hidden: h, count: rows * T, adapter: nil, into: $0.baseAddress!) }
        let step = (0..<rows).map { Int32(($0 * 7 + 3) % V) }
        let h2 = try step.withUnsafeBufferPointer { try tf.forward(tokens: $0, rows: rows, T: 1, caches: caches, workspace: ws) }
        try out.withUnsafeMutableBufferPointer { try tf.logits(hidden: h2, count: rows, adapter: nil, into: $0.baseAddress! + rows * T * V) }
        return out
    }

    /// Max |Δ| and the mean |Δ log p| of the next-token log-likelihoods (token t+1 after position t, per row).
    static func drift(_ a: [Float], _ b: [Float], V: Int) -> (maxLogit: Float, meanLL: Double, maxAbs: Float) {
        let n = a.count / V
        var worst: Float = 0, maxAbs: Float = 0, ll = 0.0
        for i in 0..<n {
            var la = [Double](), lb = [Double]()
            for v in 0..<V {
                worst = max(worst, abs(a[i * V + v] - b[i * V + v])); maxAbs = max(maxAbs, abs(a[i * V + v]))
                la.append(Double(a[i * V + v])); lb.append(Double(b[i * V + v]))
            }
            let pa = BackwardTests.logSoftmax(la), pb = BackwardTests.logSoftmax(lb)
            let tok = (i * 13 + 5) % V
            ll += abs(pa[tok] - pb[tok])
        }
        return (worst, ll / Double(n), maxAbs)
    }

    func testBF16FixtureModelsAgainstFP32() throws {
        for (model, variant) in [("gpt2-tiny", "legacy17"), ("gptj-tiny", "legacy17"), ("gpt2-tiny", "fp16"),
                                 ("gptj-tiny", "bf16"), ("gpt2-tiny", "external-onefile"), ("gptj-tiny", "external-pertensor")] {
            let dir = FileIO.join(FileIO.join(TestFiles.fixtures, model), variant)
            let f32 = try ONNXModelLoader.load(path: dir)
            let rep = try ONNXModelLoader.loadWithReport(path: dir, weightType: .bf16, threads: 2)
            let b16 = rep.weights
            XCTAssertEqual(b16.weightType, .bf16)
            XCTAssertEqual(rep.borrowedBytes, 0, "bf16 weights borrow nothing from the file")
            XCTAssertTrue(b16.keepAlive.isEmpty, "a bf16 model keeps no file mapped")
            XCTAssertLessThan(b16.matrixBytes, f32.matrixBytes * 6 / 10)
            let V = f32.config.vocabSize
            let ids: [Int32] = (0..<12).map { Int32(($0 * 37 + 11) % V) }
            let l32 = try Self.logits(f32, ids, rows: 2)
            let l16 = try Self.logits(b16, ids, rows: 2)
            // 1) the bf16 model computes exactly the fp32 model with bf16-rounded weights (up to fp32 rounding)
            let lr = try Self.logits(try Self.decodedFP32(b16), ids, rows: 2)
            let same = Self.drift(l16, lr, V: V)
            XCTAssertLessThanOrEqual(same.maxLogit, 1e-4 * max(1, same.maxAbs), "\(model)/\(variant) vs rounded fp32")
            // 2) drift against the original weights. Each weight moves by ≤ 2^-9 relative (8-bit significand,
            // round to nearest); a product's relative error is then ≲ 2^-9 on average, and the logits go through
            // 2·n_layer + 1 such products plus LayerNorms: |Δlogit| ≤ (2·n_layer + 1)·2^-9·max|logit| is a loose
            // bound that real drift stays well under (errors of independent weights partly cancel).
            let d = Self.drift(l32, l16, V: V)
            let bound = Float(2 * f32.config.nLayer + 1) * 0x1p-9 * max(1, d.maxAbs)
            print("bf16 \(model)/\(variant): max |Δlogit| \(d.maxLogit) (max |logit| \(d.maxAbs), bound \(bound)), "
                  + "mean |Δ log p| \(d.meanLL); vs rounded-fp32 model \(same.maxLogit)")
            XCTAssertLessThanOrEqual(d.maxLogit, bound, "\(model)/\(variant)")
            XCTAssertLessThanOrEqual(d.meanLL, Double(bound), "\(model)/\(variant)")
            if variant != "bf16" {  // a bf16 file holds bf16 values already: nothing to round
                XCTAssertGreaterThan(d.maxLogit, 1e-4, "bf16 rounding must change something (else the test is vacuous)")
            }
        }
    }

    /// Against PyTorch's fp32 logits (the fixture references): within the fp32 tolerance plus the bf16 drift bound.
    func testBF16AgainstPyTorchReference() throws {
        for model in ["gpt2-tiny", "gptj-tiny"] {
            let dir = FileIO.join(FileIO.join(TestFiles.fixtures, model), "legacy17")
            let meta = try JSONValue.parse(contentsOf: FileIO.join(dir, "variant.json"))
            guard let refRel = meta["reference"]?.string else { XCTFail("no reference"); continue }
            let ref = try Safetensors.load(path: FileIO.join(dir, refRel))
            let m = try Model.load(path: dir, threads: 2, weightType: .bf16)
            let ids = try ref.int64s("input_ids").map { Int32($0) }
            let mask = try ref.int64s("attention_mask").map { Int32($0) }
            let expected = try ref.floats("logits")
            let got = try m.logits(ids: ids, batch: 2, seqLen: ids.count / 2, mask: mask)
            let V = m.config.vocabSize
            var worst: Float = 0, maxAbs: Float = 0
            for i in 0..<ids.count where mask[i] == 1 {
                for v in 0..<V { worst = max(worst, abs(got[i * V + v] - expected[i * V + v])); maxAbs = max(maxAbs, abs(expected[i * V + v])) }
            }
            let bound = Float(2 * m.config.nLayer + 1) * 0x1p-9 * max(1, maxAbs) + 1e-4
            print("bf16 \(model) vs PyTorch fp32: max |Δlogit| \(worst) (bound \(bound))")
            XCTAssertLessThanOrEqual(worst, bound)
        }
    }

    // MARK: training on bf16 weights

    func testLoRAGradientsOnBF16MatchRoundedFP32() throws {
        let bt = BackwardTests(name: "helpers", testClosure: { _ in })
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 31, std: 0.2)
            let b16 = try w.toBF16(threads: 2)
            let rounded = try Self.decodedFP32(b16)
            let seqs = [bt.randomTokens(9, vocab: w.config.vocabSize, seed: 5), bt.randomTokens(9, vocab: w.config.vocabSize, seed: 6)]
            let targets = (0..<2).flatMap { r in (0..<8).map { t in (row: r, t: t, token: seqs[r][t + 1]) } }
            var results: [[String: [Float]]] = []
            for weights in [b16, rounded] {
                let tf = Transformer(weights: weights, threads: 2)
                let ad = try bt.randomAdapter(weights)
                let grads = try Gradients(adapter: ad)
                _ = try bt.ourGradients(tf, rowsTokens: seqs, caches: [tf.makeCache(capacity: 9), tf.makeCache(capacity: 9)],
                                        adapter: ad, grads: grads, targets: targets)
                var g: [String: [Float]] = [:]
                for p in grads.parameters { g[p.name] = p.grad.array }
                results.append(g)
            }
            XCTAssertFalse(results[0].isEmpty)
            for (name, g) in results[0] {
                let r = results[1][name]!
                let num = zip(g, r).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
                let den = r.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
                XCTAssertGreaterThan(den, 0, name)
                XCTAssertLessThanOrEqual(num / den, 1e-4, "\(arch) \(name)")
            }
            // full-parameter training and merging are refused with a clear error
            XCTAssertThrowsError(try b16.trainableCopy()) { XCTAssertEqual(($0 as? GFNError)?.status, .unsupported) }
            let ad = try bt.randomAdapter(b16)
            XCTAssertThrowsError(try ad.mergedWeights(b16)) { XCTAssertEqual(($0 as? GFNError)?.status, .unsupported) }
        }
    }

    func testSFTAndGFlowNetTrainOnBF16() throws {
        let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
        try checkTrainingOnFrozenBase(try ModelWeights.random(config: cfg, seed: 3, std: 0.3).toBF16(), label: "bf16")
    }

    // MARK: C ABI

    func testCABIWeightTypeAndOldStructSize() throws {
        let dir = FileIO.join(FileIO.join(TestFiles.fixtures, "gpt2-tiny"), "legacy17")
        var p = gfn_model_default_params()
        XCTAssertEqual(p.weight_type, Int32(GFN_WEIGHTS_F32.rawValue))
        XCTAssertEqual(Int(p.size), MemoryLayout<gfn_model_params>.size)
        var h: OpaquePointer?
        // bf16: loads, computes, refuses export
        p.weight_type = Int32(GFN_WEIGHTS_BF16.rawValue)
        checkNarrowWeightsThroughCABI(dir: dir, params: p, label: "bf16")
        // unknown weight type
        p.weight_type = 7
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, GFNStatus.invalidArgument.rawValue)
        XCTAssertNil(h)
        XCTAssertTrue(String(cString: gfn_last_error()).contains("weight_type"))
        // the first version of the struct (16 bytes, no weight_type): the bytes after it are garbage and ignored
        var old = p
        old.weight_type = 12345
        old.size = 16
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &old, &h) }, 0)
        XCTAssertNotNil(h)
        gfn_model_free(h); h = nil
        old.size = 12
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &old, &h) }, GFNStatus.invalidArgument.rawValue)
    }

    // MARK: the demo model (fp16 file)

    /// Accuracy on models/demo-gpt2 over real text: prints max |Δlogit| and the log-likelihood drift.
    func testDemoModelAccuracy() throws {
        let demo = try DemoTextAgreement()
        let b16 = try Model.load(path: demo.modelDirectory, threads: 2, weightType: .bf16)
        let r = try demo.compare(b16.weights)
        print("demo-gpt2 bf16 vs fp32 over \(demo.ids.count) tokens: max |Δlogit| \(r.worst) (max |logit| \(r.maxAbs)), "
              + "mean log-likelihood fp32 \(r.meanLogP) bf16 \(r.meanLogPOther) (Δ \(r.meanLogPOther - r.meanLogP)), "
              + "mean |Δ log p| \(r.drift); matrix bytes fp32 \(demo.reference.weights.matrixBytes) bf16 "
              + "\(b16.weights.matrixBytes)")
        let bound = Float(2 * demo.reference.config.nLayer + 1) * 0x1p-9 * r.maxAbs
        XCTAssertLessThanOrEqual(r.worst, bound)
        XCTAssertLessThanOrEqual(abs(r.meanLogPOther - r.meanLogP), 0.05)
    }
}
