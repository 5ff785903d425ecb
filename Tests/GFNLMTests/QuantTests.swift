import Foundation
import XCTest
@testable import GFNLM
@testable import GFNLMC
import CGFNLM
import CKernels

/// Block-quantized (int8 / 4-bit / 6-bit) frozen weights: rounding and layout, both kernels against double precision on
/// ragged shapes (AVX2 and portable, 1 and 3 threads), row invariance, every fixture's logits within the documented
/// per-format bound of fp32, LoRA gradients on a quantized base against central differences of the same quantized
/// model, SFT / GFlowNet training on it, and the C ABI.
final class QuantTests: XCTestCase {
    static func randomArray(_ n: Int, _ rng: inout RNG, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in Float(rng.normal()) * scale }
    }

    /// The activations' int8 rounding as quant.c defines it (independent re-implementation): per row, blocks of 32,
    /// d = max|x| / 127, q = round-half-even(x · (1/d)) clamped to ±127. Returns the dequantized values q·d.
    static func quantizedActivations(_ x: [Float], rows: Int, K: Int) -> [Double] {
        var out = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            var b = 0
            while b < K {
                let e = min(K, b + 32)
                var amax: Float = 0
                for k in b..<e { amax = max(amax, abs(x[r * K + k])) }
                let d = amax / 127, id: Float = d > 0 ? 1 / d : 0
                for k in b..<e {
                    let q = min(127, max(-127, (x[r * K + k] * id).rounded(.toNearestOrEven)))
                    out[r * K + k] = Double(q) * Double(d)
                }
                b = e
            }
        }
        return out
    }

    // MARK: rounding and layout

    func testRoundingBoundsAndBothSourceLayouts() throws {
        var rng = RNG(seed: 3)
        for (K, N) in [(70, 37), (32, 5), (1, 3), (33, 16)] {
            let w = Self.randomArray(K * N, &rng)
            var wt = [Float](repeating: 0, count: K * N)
            for k in 0..<K { for n in 0..<N { wt[n * K + k] = w[k * N + n] } }
            for format in [QuantMatrix.Format.q8, .q4, .q6] {
                let a = try w.withUnsafeBufferPointer {
                    try QuantMatrix.quantize($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N, format: format, threads: 3)
                }
                let b = try wt.withUnsafeBufferPointer {
                    try QuantMatrix.quantize($0.baseAddress!, ld: K, transposed: true, rows: K, cols: N, format: format)
                }
                let da = try a.decoded(), db = try b.decoded()
                XCTAssertEqual(da.array, db.array, "both source layouts give the same matrix")
                var worstRatio: Float = 0
                for n in 0..<N {
                    var k0 = 0
                    while k0 < K {
                        let k1 = min(K, k0 + 32)
                        var amax: Float = 0
                        for k in k0..<k1 { amax = max(amax, abs(w[k * N + n])) }
                        // int8: round to nearest of amax/127 steps; 4-bit: steps of amax/8, 6-bit: of amax/32, the top
                        // one clamped; the scale rounded to fp16 first (relative 2⁻¹¹).
                        let step: Float = format == .q8 ? amax / 254 : format == .q4 ? amax / 8 : amax / 32
                        let bound = step * 1.001
                        for k in k0..<k1 {
                            let e = abs(da.pointer[k * N + n] - w[k * N + n])
                            XCTAssertLessThanOrEqual(e, bound, "\(format) K \(K) N \(N) [\(k), \(n)]")
                            if bound > 0 { worstRatio = max(worstRatio, e / bound) }
                        }
                        k0 = k1
                    }
                }
                if K > 1 {  // the errors use a good part of the bound
                    XCTAssertGreaterThan(worstRatio, 0.3, "rounding must be visible (else the test is vacuous)")
                }
                XCTAssertEqual(a.value(K - 1, N - 1), da.pointer[(K - 1) * N + N - 1])
                // storage: 32 values per block plus one fp16 scale (llama.cpp's Q8_0 / Q4_0 sizes)
                let blocks = (K + 31) / 32
                XCTAssertEqual(a.bytes, N * blocks * (format == .q8 ? 34 : format == .q4 ? 18 : 26))
            }
        }
    }

    // MARK: kernels against double precision

    /// Every M in 1…16 and 67, K and N with tails, both formats, every kernel (and the automatic choice), AVX2 and
    /// portable, 1 and 3 threads: the dequantizing and widening kernels against Σ x·ŵ and the integer kernel against
    /// Σ x̂·ŵ in double (ŵ, x̂ the rounded weights and activations), relative to Σ|terms|; y's columns past N
    /// untouched; dx = dy·ŵᵀ against double.
    func testKernelsAgainstDoublePrecisionOnRaggedShapes() throws {
        var rng = RNG(seed: 11)
        let hadAVX2 = QuantMatrix.usesAVX2
        defer { QuantMatrix.allowAVX2(hadAVX2) }
        for (K, N) in [(5, 3), (33, 17), (96, 40), (100, 33), (300, 53)] {
            let w = Self.randomArray(K * N, &rng)
            for format in [QuantMatrix.Format.q8, .q4, .q6] {
                let q = try w.withUnsafeBufferPointer {
                    try QuantMatrix.quantize($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N, format: format)
                }
                let wd = try q.decoded().array.map(Double.init)
                for M in Array(1...16) + [67] {
                    let x = Self.randomArray(M * K, &rng)
                    let xq = Self.quantizedActivations(x, rows: M, K: K)
                    var integerResults: [Int: [Float]] = [:]  // the per-column kernel's, by threads
                    for simd in [true, false] {
                        QuantMatrix.allowAVX2(simd)
                        for kernel in [QuantMatrix.Kernel.dequantize, .integer, .integerPanel, .widened, .automatic] {
                            for threads in [1, 3] {
                                let ldy = N + 3
                                var y = [Float](repeating: .nan, count: M * ldy)
                                x.withUnsafeBufferPointer { xb in
                                    y.withUnsafeMutableBufferPointer { yb in
                                        q.multiply(x: xb.baseAddress!, ldx: K, m: M, y: yb.baseAddress!, ldy: ldy,
                                                   threads: threads, kernel: kernel)
                                    }
                                }
                                var worst = 0.0
                                for r in 0..<M {
                                    for n in 0..<N {
                                        var ref = 0.0, mag = 0.0
                                        for k in 0..<K {
                                            let integer = kernel == .integer || kernel == .integerPanel || kernel == .automatic
                                            let xv = integer ? xq[r * K + k] : Double(x[r * K + k])
                                            ref += xv * wd[k * N + n]; mag += abs(xv * wd[k * N + n])
                                        }
                                        worst = max(worst, abs(Double(y[r * ldy + n]) - ref) / max(mag, 1e-30))
                                    }
                                    for n in N..<ldy { XCTAssertTrue(y[r * ldy + n].isNaN, "wrote past N") }
                                }
                                XCTAssertLessThanOrEqual(worst, 2e-6, "\(format) \(kernel) simd \(simd) threads \(threads) M \(M) K \(K) N \(N)")
                                // Both integer kernels (and the automatic choice between them) give the same bits,
                                // with AVX2 or portable code, on any number of threads.
                                if kernel == .integer, integerResults[threads] == nil { integerResults[threads] = y }
                                if kernel == .integerPanel || kernel == .automatic || (kernel == .integer && !simd) {
                                    XCTAssertTrue(y.map(\.bitPattern) == integerResults[threads]?.map(\.bitPattern),
                                                  "\(format) \(kernel) simd \(simd) M \(M) K \(K): the integer kernels' bits")
                                }
                            }
                        }
                    }
                    QuantMatrix.allowAVX2(hadAVX2)
                    // dx = dy · ŵᵀ, set then accumulate
                    if M == 1 || M == 16 || M == 67 {
                        let dy = Self.randomArray(M * N, &rng)
                        var dx = [Float](repeating: 0, count: M * K)
                        try dy.withUnsafeBufferPointer { db in
                            try dx.withUnsafeMutableBufferPointer { xb in
                                try q.multiplyTransposed(dy: db.baseAddress!, lddy: N, m: M, dx: xb.baseAddress!, lddx: K,
                                                         accumulate: false, threads: 3)
                                try q.multiplyTransposed(dy: db.baseAddress!, lddy: N, m: M, dx: xb.baseAddress!, lddx: K,
                                                         accumulate: true, threads: 1)
                            }
                        }
                        var worst = 0.0
                        for r in 0..<M {
                            for k in 0..<K {
                                var ref = 0.0, mag = 0.0
                                for n in 0..<N { ref += Double(dy[r * N + n]) * wd[k * N + n]; mag += abs(Double(dy[r * N + n]) * wd[k * N + n]) }
                                worst = max(worst, abs(Double(dx[r * K + k]) - 2 * ref) / max(2 * mag, 1e-30))
                            }
                        }
                        XCTAssertLessThanOrEqual(worst, 2e-6, "dx \(format) M \(M) K \(K) N \(N)")
                    }
                }
            }
        }
    }

    /// The many-row integer kernel keeps its accumulators in y between panels of 64 blocks of k: across such chunks
    /// (K = 2100: 64 blocks, then 2 with a short last one) and a column tail (N = 21: two panels of 8 and 5), its
    /// products match double precision on the quantized activations, AVX2 equals the portable kernel bit for bit,
    /// and each row equals its product alone.
    func testPanelKernelAcrossChunksOfK() throws {
        var rng = RNG(seed: 5)
        let K = 2100, N = 21, M = 7
        let w = Self.randomArray(K * N, &rng), x = Self.randomArray(M * K, &rng)
        let xq = Self.quantizedActivations(x, rows: M, K: K)
        let hadAVX2 = QuantMatrix.usesAVX2
        defer { QuantMatrix.allowAVX2(hadAVX2) }
        for format in [QuantMatrix.Format.q8, .q4, .q6] {
            let q = try w.withUnsafeBufferPointer {
                try QuantMatrix.quantize($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N, format: format)
            }
            let wd = try q.decoded().array.map(Double.init)
            func product(rows: Range<Int>, threads: Int) -> [Float] {
                var y = [Float](repeating: .nan, count: rows.count * N)
                x.withUnsafeBufferPointer { xb in
                    y.withUnsafeMutableBufferPointer { yb in
                        q.multiply(x: xb.baseAddress! + rows.lowerBound * K, ldx: K, m: rows.count, y: yb.baseAddress!,
                                   ldy: N, threads: threads, kernel: .integerPanel)
                    }
                }
                return y
            }
            let all = product(rows: 0..<M, threads: 1)
            for r in 0..<M {
                for n in 0..<N {
                    var ref = 0.0, mag = 0.0
                    for k in 0..<K { ref += xq[r * K + k] * wd[k * N + n]; mag += abs(xq[r * K + k] * wd[k * N + n]) }
                    XCTAssertLessThanOrEqual(abs(Double(all[r * N + n]) - ref) / mag, 2e-6, "\(format) row \(r) column \(n)")
                }
                XCTAssertEqual(product(rows: r..<(r + 1), threads: 3), Array(all[r * N..<(r + 1) * N]), "\(format) row \(r) alone")
            }
            QuantMatrix.allowAVX2(false)
            XCTAssertEqual(product(rows: 0..<M, threads: 3), all, "\(format): AVX2 and portable kernels agree bit for bit")
            QuantMatrix.allowAVX2(hadAVX2)
        }
    }

    /// A row's product with `rowInvariant` is bitwise the same whatever the rows around it (1 to 200 rows: the
    /// few-row tiles, the panel kernel's 4-row tiles and remainders) and the thread count, and the AVX2 kernel equals
    /// the portable one bit for bit (both are the same chain of operations); for the automatic choice of integer
    /// kernel (per-column below 3 rows, panels above: one arithmetic), each integer kernel forced, and the
    /// fp32-activation one (`integerProducts` false). K = 300 spans three chunks of 128 with a short last block,
    /// N = 203 four panels of 48 and a tail of 11.
    func testRowInvariantProductsDoNotDependOnTheRowCountOrThreads() throws {
        var rng = RNG(seed: 1)
        let K = 300, N = 203, M = 200
        let x = Self.randomArray(M * K, &rng)
        let w = try Tensor(shape: [K, N], values: Self.randomArray(K * N, &rng))
        let hadAVX2 = QuantMatrix.usesAVX2
        defer { QuantMatrix.allowAVX2(hadAVX2) }
        let cases: [(Bool, QuantMatrix.Kernel)] = [(true, .automatic), (true, .integer), (true, .integerPanel),
                                                   (false, .automatic)]
        for format in [QuantMatrix.Format.q8, .q4, .q6] { for (integer, kernel) in cases {
            let matrix = try QuantMatrix.quantize(w.pointer, ld: N, transposed: false, rows: K, cols: N, format: format,
                                                  integerProducts: integer)
            func product(start: Int, m: Int, threads: Int) -> [Float] {
                var y = [Float](repeating: .nan, count: m * N)
                x.withUnsafeBufferPointer { xb in
                    y.withUnsafeMutableBufferPointer { yb in
                        matrix.multiply(x: xb.baseAddress! + start * K, ldx: K, m: m, y: yb.baseAddress!, ldy: N,
                                        threads: threads, rowInvariant: true, kernel: kernel)
                    }
                }
                return y
            }
            let all = product(start: 0, m: M, threads: 1)
            QuantMatrix.allowAVX2(false)
            let portable = product(start: 0, m: M, threads: 3)
            QuantMatrix.allowAVX2(hadAVX2)
            XCTAssertEqual(all, portable, "\(format) integer \(integer) \(kernel): AVX2 and portable kernels agree bit for bit")
            XCTAssertFalse(all.contains { !$0.isFinite })
            for threads in [1, 3] {
                for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 37, 64, 101, M] {
                    for start in Set([0, 3, M - m]) where start + m <= M {
                        XCTAssertEqual(product(start: start, m: m, threads: threads),
                                       Array(all[start * N..<(start + m) * N]),
                                       "\(format) integer \(integer) \(kernel), threads \(threads), rows \(start)..<\(start + m)")
                    }
                }
            }
        } }
    }

    func testPortableKernelsCanBeForced() throws {
        let had = QuantMatrix.usesAVX2
        defer { QuantMatrix.allowAVX2(had) }
        // Widening the weights (the backward, `decoded`) and quantizing activations have AVX2 versions for whole
        // blocks: they give the portable code's bits (K = 100: three whole blocks and a short one).
        var rng = RNG(seed: 9)
        let K = 100, N = 7
        let w = Self.randomArray(K * N, &rng), x = Self.randomArray(3 * K, &rng)
        for format in [QuantMatrix.Format.q8, .q4, .q6] {
            let q = try w.withUnsafeBufferPointer {
                try QuantMatrix.quantize($0.baseAddress!, ld: N, transposed: false, rows: K, cols: N, format: format)
            }
            func run() throws -> ([Float], [Float]) {
                var y = [Float](repeating: 0, count: 3 * N)
                x.withUnsafeBufferPointer { xb in
                    y.withUnsafeMutableBufferPointer { yb in
                        q.multiply(x: xb.baseAddress!, ldx: K, m: 3, y: yb.baseAddress!, ldy: N, threads: 1,
                                   kernel: .integerPanel)
                    }
                }
                return (try q.decoded().array, y)
            }
            QuantMatrix.allowAVX2(true)
            let vector = try run()
            XCTAssertFalse(QuantMatrix.allowAVX2(false))
            XCTAssertFalse(QuantMatrix.usesAVX2)
            let portable = try run()
            XCTAssertEqual(vector.0, portable.0, "\(format): widened weights")
            XCTAssertEqual(vector.1, portable.1, "\(format): products (quantized activations)")
        }
        XCTAssertEqual(QuantMatrix.allowAVX2(true), had, "re-allowing restores the detected kernel")
    }

    // MARK: whole models

    /// Per-format bounds of |Δlogit| against fp32, as a fraction of max |logit| per product on the way
    /// ((2·n_layer + 1) products): int8 2^-7, 4-bit 2^-4; measured drift on the fixtures stays 2.5–4× below
    /// (docs/quantization.md).
    static func bound(_ type: WeightType, layers: Int, maxAbs: Float) -> Float {
        Float(2 * layers + 1) * (type == .int8 ? 0x1p-7 : 0x1p-4) * max(1, maxAbs)
    }

    /// Every loadable fixture export: int8 and 4-bit logits (full forward of a two-row batch, then a cached step)
    /// against fp32 within the per-format bound; with fp32 activations (`integerProducts` false) they equal the
    /// fp32 model holding the rounded weights to fp32 precision.
    func testEveryFixtureWithinThePerFormatBound() throws {
        var checked = 0
        for model in ["gpt2-tiny", "gptj-tiny", "gpt2-realvocab"] {
            let root = FileIO.join(TestFiles.fixtures, model)
            for variant in (try? FileManager.default.contentsOfDirectory(atPath: root))?.sorted() ?? [] {
                let dir = FileIO.join(root, variant)
                let metaPath = FileIO.join(dir, "variant.json")
                guard FileIO.exists(metaPath), try JSONValue.parse(contentsOf: metaPath)["expect"]?.string == "ok" else { continue }
                let f32 = try ONNXModelLoader.load(path: dir)
                let V = f32.config.vocabSize
                let ids: [Int32] = (0..<12).map { Int32(($0 * 37 + 11) % V) }
                let l32 = try BF16Tests.logits(f32, ids, rows: 2)
                for type in [WeightType.int8, .q4] {
                    let rep = try ONNXModelLoader.loadWithReport(path: dir, weightType: type, threads: 2)
                    let q = rep.weights
                    XCTAssertEqual(q.weightType, type)
                    XCTAssertEqual(rep.borrowedBytes, 0)
                    XCTAssertTrue(q.keepAlive.isEmpty)
                    // int8: 36 bytes per 32 weights; 4-bit: 20 for the linear maps (the embedding stays int8)
                    XCTAssertLessThan(q.matrixBytes, f32.matrixBytes * 30 / 100)
                    if type == .q4 { XCTAssertLessThan(q.matrixBytes, try f32.quantized(.int8).matrixBytes) }
                    let lq = try BF16Tests.logits(q, ids, rows: 2)
                    let d = BF16Tests.drift(l32, lq, V: V)
                    let b = Self.bound(type, layers: f32.config.nLayer, maxAbs: d.maxAbs)
                    print("\(type) \(model)/\(variant): max |Δlogit| \(d.maxLogit) (max |logit| \(d.maxAbs), bound \(b)), mean |Δ log p| \(d.meanLL)")
                    XCTAssertLessThanOrEqual(d.maxLogit, b, "\(type) \(model)/\(variant)")
                    XCTAssertGreaterThan(d.maxLogit, 1e-4, "rounding must change something")
                    // fp32 activations: the same as an fp32 model holding the rounded weights
                    let exact = try f32.quantized(type, threads: 2, integerProducts: false)
                    let le = try BF16Tests.logits(exact, ids, rows: 2)
                    let lr = try BF16Tests.logits(try Self.decodedFP32(exact), ids, rows: 2)
                    let same = BF16Tests.drift(le, lr, V: V)
                    XCTAssertLessThanOrEqual(same.maxLogit, 1e-4 * max(1, same.maxAbs), "\(type) \(model)/\(variant) vs rounded fp32")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 40)
    }

    /// An fp32 model whose matrices hold exactly the values of a quantized model.
    static func decodedFP32(_ w: ModelWeights) throws -> ModelWeights { try decodedFP32Weights(w) }

    // MARK: training on a quantized base

    /// LoRA factor gradients with a quantized base against central differences of the same quantized model (the
    /// fp64 reference model reading the rounded weights). With fp32 activations the backward is exact (1e-3 as for
    /// fp32); with the integer kernels in the forward (the default) the activations' int8 rounding is not
    /// differentiated, and the gradients stay within 8 % of the exact ones (measured 3–5 %). Central differences
    /// for int8 on both architectures and for 4-bit on GPT-2 (bounded time).
    func testLoRAGradientsOnQuantizedBaseAgainstCentralDifferences() throws {
        let bt = BackwardTests(name: "helpers", testClosure: { _ in })
        for arch in [Architecture.gpt2, .gptj] {
            for type in [WeightType.int8, .q4] {
                let w = try ModelWeights.random(config: .tiny(arch), seed: 21, std: 0.2)
                var exactGrads: [String: [Float]] = [:]
                for integer in [false, true] {
                    let q = try w.quantized(type, threads: 2, integerProducts: integer)
                    let tf = Transformer(weights: q, threads: 2)
                    let ad = try bt.randomAdapter(q)
                    let seqs = [bt.randomTokens(7, vocab: q.config.vocabSize, seed: 5)]
                    let targets = [2, 4, 5].map { t in (row: 0, t: t, token: seqs[0][t + 1]) }
                    let grads = try Gradients(adapter: ad)
                    let (_, loss) = try bt.ourGradients(tf, rowsTokens: seqs, caches: [tf.makeCache(capacity: 7)],
                                                        adapter: ad, grads: grads, targets: targets)
                    let nt = targets.map { BackwardTests.Target(seq: $0.row, pos: $0.t, token: $0.token) }
                    if !integer {
                        XCTAssertEqual(loss, BackwardTests.naiveLoss(q, ad, seqs, nt), accuracy: 1e-4)
                        if type == .int8 || arch == .gpt2 {
                            let rep = bt.check(grads, perTensor: 3) { BackwardTests.naiveLoss(q, ad, seqs, nt) }
                            print("LoRA grad check on \(type) \(arch): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
                        }
                        for p in grads.parameters { exactGrads[p.name] = p.grad.array }
                    } else {
                        var worst = 0.0
                        for p in grads.parameters {
                            let r = exactGrads[p.name]!, g = p.grad.array
                            let num = zip(g, r).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
                            let den = r.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()
                            worst = max(worst, num / max(den, 1e-6))
                        }
                        print("LoRA gradients on \(type) \(arch) with int8 activations vs exact: worst relative \(worst)")
                        XCTAssertLessThanOrEqual(worst, 0.08, "\(type) \(arch)")
                        XCTAssertGreaterThan(worst, 0, "the integer kernels must have been used")
                    }
                }
                // full-parameter training and merging are refused with a clear error
                let q = try w.quantized(type)
                XCTAssertThrowsError(try q.trainableCopy()) {
                    XCTAssertEqual(($0 as? GFNError)?.status, .unsupported)
                    XCTAssertTrue("\($0)".contains("\(type)"), "\($0)")
                }
                let ad = try bt.randomAdapter(q)
                XCTAssertThrowsError(try ad.mergedWeights(q)) { XCTAssertEqual(($0 as? GFNError)?.status, .unsupported) }
            }
        }
    }

    func testSFTAndGFlowNetTrainOnInt8AndQ4() throws {
        for type in [WeightType.int8, .q4] {
            let cfg = ModelConfig.tiny(.gpt2, vocab: 16, embd: 32, layers: 2, heads: 4, positions: 16)
            try checkTrainingOnFrozenBase(try ModelWeights.random(config: cfg, seed: 3, std: 0.3).quantized(type),
                                          label: "\(type)")
        }
    }

    // MARK: C ABI

    func testCABIInt8AndQ4() throws {
        let dir = FileIO.join(FileIO.join(TestFiles.fixtures, "gpt2-tiny"), "legacy17")
        var p = gfn_model_default_params()
        for type in [GFN_WEIGHTS_INT8, GFN_WEIGHTS_Q4] {
            p.weight_type = Int32(type.rawValue)
            let message = checkNarrowWeightsThroughCABI(dir: dir, params: p, label: "\(type)")
            XCTAssertTrue(message.contains(type == GFN_WEIGHTS_INT8 ? "int8" : "q4"), message)
        }
        p.weight_type = 4
        var h: OpaquePointer?
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, GFNStatus.invalidArgument.rawValue)
        XCTAssertTrue(String(cString: gfn_last_error()).contains("GFN_WEIGHTS_INT8"))
    }

    /// gfn_model_params.quantize_activations: 1 by default and for the previous struct size (whatever follows it),
    /// 0 gives the fp32-activation products (the C logits equal Swift's with `quantizedActivations: false`, and
    /// differ from the default's), other values are refused.
    func testCABIQuantizeActivationsOption() throws {
        let dir = FileIO.join(FileIO.join(TestFiles.fixtures, "gpt2-tiny"), "legacy17")
        var p = gfn_model_default_params()
        XCTAssertEqual(p.quantize_activations, 1)
        p.weight_type = Int32(GFN_WEIGHTS_INT8.rawValue)
        let ids: [Int32] = [3, 1, 4, 1, 5, 9, 2, 6]
        func cLogits(_ params: gfn_model_params) throws -> [Float] {
            var params = params, h: OpaquePointer?
            XCTAssertEqual(dir.withCString { gfn_model_load($0, &params, &h) }, 0, String(cString: gfn_last_error()))
            defer { gfn_model_free(h) }
            let model = try XCTUnwrap(h)
            var cfg = gfn_model_config()
            cfg.size = UInt32(MemoryLayout<gfn_model_config>.size)
            XCTAssertEqual(gfn_model_config_get(model, &cfg), 0)
            var out = [Float](repeating: 0, count: ids.count * Int(cfg.vocab_size))
            let capacity = out.count
            XCTAssertEqual(out.withUnsafeMutableBufferPointer {
                gfn_model_logits(model, nil, ids, 1, Int32(ids.count), nil, $0.baseAddress, capacity)
            }, 0)
            return out
        }
        func swiftLogits(quantizedActivations: Bool) throws -> [Float] {
            try Model.load(path: dir, threads: 2, weightType: .int8, quantizedActivations: quantizedActivations)
                .logits(ids: ids, batch: 1, seqLen: ids.count)
        }
        let integer = try cLogits(p)
        XCTAssertEqual(integer, try swiftLogits(quantizedActivations: true))
        var exact = p
        exact.quantize_activations = 0
        let fp32Activations = try cLogits(exact)
        XCTAssertEqual(fp32Activations, try swiftLogits(quantizedActivations: false))
        XCTAssertNotEqual(integer, fp32Activations, "the option must change the products")
        // the previous version of the struct (40 bytes on LP64) ends before quantize_activations
        var old = exact
        old.size = UInt32(modelParamsV4Size)
        XCTAssertEqual(try cLogits(old), integer)
        p.quantize_activations = 2
        var h: OpaquePointer?
        XCTAssertEqual(dir.withCString { gfn_model_load($0, &p, &h) }, GFNStatus.invalidArgument.rawValue)
        XCTAssertTrue(String(cString: gfn_last_error()).contains("quantize_activations"))
        XCTAssertNil(h)
    }
}

/// The demo model (fp16 file; 84 % of its parameters in the tied embedding) over real text: the logit error of
/// int8 and 4-bit against fp32, and of the same formats with the embedding / tied head kept in bf16 instead of int8
/// (the measurement behind keeping it int8: docs/quantization.md).
final class QuantDemoModelTests: XCTestCase {
    func testDemoModelAccuracyAndTheHeadsPrecision() throws {
        let demo = try DemoTextAgreement()
        let f32 = demo.reference, dir = demo.modelDirectory, ids = demo.ids
        func measure(_ w: ModelWeights) throws -> (worst: Float, maxAbs: Float, drift: Double) {
            let r = try demo.compare(w)
            return (r.worst, r.maxAbs, r.drift)
        }
        for type in [WeightType.int8, .q4] {
            let q = try Model.load(path: dir, threads: 2, weightType: type).weights
            let r = try measure(q)
            let bf16Head = try ModelWeights(config: q.config, embedding: try f32.weights.embedding.toBF16(), wpe: q.wpe,
                                            blocks: q.blocks, lnF: q.lnF, head: q.head)
            let rh = try measure(bf16Head)
            print("demo-gpt2 \(type) vs fp32 over \(ids.count) tokens: max |Δlogit| \(r.worst) (max |logit| \(r.maxAbs)), "
                  + "mean |Δ log p| \(r.drift); embedding/head in bf16 instead: max |Δlogit| \(rh.worst), mean |Δ log p| "
                  + "\(rh.drift); matrix bytes \(q.matrixBytes) vs fp32 \(f32.weights.matrixBytes), with a bf16 head "
                  + "\(bf16Head.matrixBytes)")
            XCTAssertLessThanOrEqual(r.worst, QuantTests.bound(type, layers: f32.config.nLayer, maxAbs: r.maxAbs))
            XCTAssertLessThanOrEqual(r.drift, type == .int8 ? 0.05 : 0.15)
        }
    }
}
