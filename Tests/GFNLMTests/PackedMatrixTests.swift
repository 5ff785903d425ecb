import XCTest
import CKernels
@testable import GFNLM

/// Products on weights packed once for OpenBLAS's kernel (packedgemm.c, `PackedMatrix`) against a double-precision
/// reference, and models using them against the same models without.
final class PackedMatrixTests: XCTestCase {
    override func setUpWithError() throws {
        // Debian's OpenBLAS (DYNAMIC_ARCH) exports the kernels this needs for every x86-64 core; another build may
        // not, and then the library falls back to cblas_sgemm (covered by every other test). On the cores of the
        // machines this project runs on, the path must be there (and pass its own start-up check).
        let expected = ["ZEN", "HASWELL", "SKYLAKEX", "COOPERLAKE", "SAPPHIRERAPIDS"].contains(PackedMatrix.coreName)
        if expected && getenv("GFNLM_NO_PACKED_SGEMM") == nil {
            XCTAssertTrue(PackedMatrix.isAvailable, "packed sgemm disabled on OpenBLAS core \(PackedMatrix.coreName)")
        }
        try XCTSkipUnless(PackedMatrix.isAvailable, "packed sgemm unavailable (OpenBLAS core '\(PackedMatrix.coreName)')")
    }

    /// Ragged shapes around the K blocks (384) and column blocks (128) and the kernel's panels, both weight
    /// orientations, wide leading dimensions, 1 and 3 threads; columns past N stay untouched.
    func testPackedProductsMatchAReference() throws {
        var g = SystemRandomNumberGenerator()
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &g) } }
        let KC = Int(GFK_PACKED_KC), MC = Int(GFK_PACKED_MC)
        let shapes = [(2, 7, 9), (17, 5, 3), (19, KC + 29, MC + 45), (64, 2 * KC, 3 * MC), (33, 2 * KC + 1, 257),
                      (300, 100, 130), (65, KC - 1, 1)]
        for (M, K, N) in shapes {
            let ldx = K + 3, ldy = N + 7
            let x = rand(M * ldx), w = rand(K * N)
            var wt = [Float](repeating: 0, count: N * K)
            for k in 0..<K { for n in 0..<N { wt[n * K + k] = w[k * N + n] } }
            var ref = [Double](repeating: 0, count: M * N)
            for m in 0..<M { for n in 0..<N {
                var s = 0.0
                for k in 0..<K { s += Double(x[m * ldx + k]) * Double(w[k * N + n]) }
                ref[m * N + n] = s
            } }
            for transposed in [false, true] {
                let p = try (transposed ? wt : w).withUnsafeBufferPointer { b in
                    try PackedMatrix(b.baseAddress!, ld: transposed ? K : N, transposed: transposed, rows: K, cols: N,
                                     threads: 2)
                }
                XCTAssertEqual(p.bytes, (K * N + Int(GFK_PACKED_PAD)) * 4)
                for threads in [1, 3] {
                    var y = [Float](repeating: .nan, count: M * ldy)
                    let done = x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        p.multiply(x: xp.baseAddress!, ldx: ldx, m: M, y: yp.baseAddress!, ldy: ldy, threads: threads)
                    } }
                    XCTAssertTrue(done)
                    for m in 0..<M { for n in 0..<ldy {
                        let v = y[m * ldy + n]
                        if n < N {
                            XCTAssertEqual(Double(v), ref[m * N + n], accuracy: 1e-5 * Double(K) + 1e-6,
                                           "M\(M) K\(K) N\(N) transposed \(transposed) threads \(threads) [\(m), \(n)]")
                        } else {
                            XCTAssertTrue(v.isNaN, "M\(M) K\(K) N\(N): column \(n) written")
                        }
                    } }
                }
            }
        }
    }

    /// `WeightMatrix` packs once (copies of the struct share the copy), only fp32, and its products of at least
    /// `PackedMatrix.minRows` rows then use it when asked, with the same results up to rounding.
    func testWeightMatrixPacksOnceAndMultipliesAlike() throws {
        var g = SystemRandomNumberGenerator()
        let K = 100, N = 300
        let w = try Tensor(shape: [K, N], values: (0..<(K * N)).map { _ in Float.random(in: -1...1, using: &g) })
        let plain = WeightMatrix(w), packed = WeightMatrix(w)
        let copy = packed
        XCTAssertNil(packed.packed)
        XCTAssertEqual(try copy.packForRowBatches(), (K * N + Int(GFK_PACKED_PAD)) * 4)
        XCTAssertNotNil(packed.packed, "struct copies share the packed copy")
        XCTAssertEqual(try packed.packForRowBatches(), 0, "packed once")
        XCTAssertEqual(try plain.toBF16().packForRowBatches(), 0, "bf16 matrices are not packed")
        for M in [3, 7, 8, 16, 17, 40] {
            let x = (0..<(M * K)).map { _ in Float.random(in: -1...1, using: &g) }
            var a = [Float](repeating: 0, count: M * N), b = a
            x.withUnsafeBufferPointer { xp in
                a.withUnsafeMutableBufferPointer { plain.multiply(x: xp.baseAddress!, ldx: K, m: M, y: $0.baseAddress!, ldy: N, threads: 2, packed: true) }
                b.withUnsafeMutableBufferPointer { packed.multiply(x: xp.baseAddress!, ldx: K, m: M, y: $0.baseAddress!, ldy: N, threads: 2, packed: true) }
                var c = a  // the packed matrix without asking for its copy: the unpacked result, bit for bit
                c.withUnsafeMutableBufferPointer { packed.multiply(x: xp.baseAddress!, ldx: K, m: M, y: $0.baseAddress!, ldy: N, threads: 2) }
                XCTAssertEqual(a, c, "M \(M): not asked to use the packed copy")
                // asked: from minRows rows on, exactly the packed product; below, the unpacked one
                var d = a
                XCTAssertTrue(d.withUnsafeMutableBufferPointer {
                    packed.packed!.multiply(x: xp.baseAddress!, ldx: K, m: M, y: $0.baseAddress!, ldy: N, threads: 1)
                })
                XCTAssertEqual(b, M >= PackedMatrix.minRows ? d : a, "M \(M): routing")
            }
            for i in 0..<(M * N) { XCTAssertEqual(a[i], b[i], accuracy: 1e-4, "M \(M) element \(i)") }
        }
    }

    /// A transformer on packed weights computes the same logits as without (prefill of 20 rows × 3 tokens and one
    /// 20-row decoding step), GPT-2 and GPT-J; one that does not ask for them is unchanged bit for bit.
    func testPackedModelsMatchUnpacked() throws {
        for model in ["gpt2-tiny", "gptj-tiny"] {
            let dir = FileIO.join(FileIO.join(TestFiles.fixtures, model), "legacy17")
            let plain = try ONNXModelLoader.load(path: dir), packed = try ONNXModelLoader.load(path: dir)
            XCTAssertFalse(packed.hasPackedMatrices)
            let added = try packed.packForRowBatches(threads: 2)
            let untiedEmbedding: Int
            if case .tied = packed.head { untiedEmbedding = 0 } else { untiedEmbedding = packed.embedding.bytes }
            let matrices = packed.linears.count + (untiedEmbedding == 0 ? 1 : 0)
            XCTAssertEqual(added, packed.matrixBytes - untiedEmbedding + matrices * Int(GFK_PACKED_PAD) * 4,
                           "\(model): every matrix of a product packed")
            XCTAssertTrue(packed.hasPackedMatrices)
            let V = plain.config.vocabSize, rows = 20
            let ids: [Int32] = (0..<(rows * 3)).map { Int32(($0 * 37 + 11) % V) }
            let a = try BF16Tests.logits(plain, ids, rows: rows)
            let b = try BF16Tests.logits(packed, ids, rows: rows, packed: true)
            XCTAssertEqual(a, try BF16Tests.logits(packed, ids, rows: rows), "\(model): a transformer not asking for "
                           + "the packed copies computes what it computed before they were made")
            var worst: Float = 0, scale: Float = 0
            for i in a.indices { worst = max(worst, abs(a[i] - b[i])); scale = max(scale, abs(a[i])) }
            XCTAssertLessThanOrEqual(worst, 1e-4 * max(1, scale), "\(model)")
        }
    }
}
