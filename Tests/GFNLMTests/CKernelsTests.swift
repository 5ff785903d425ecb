import XCTest
import CKernels
@testable import GFNLM

/// The small C kernels against naive Swift references.
final class CKernelsTests: XCTestCase {
    func testEqualTransposedMatchesNaiveCompare() {
        var rng = SystemRandomNumberGenerator()
        for (rows, cols) in [(1, 1), (3, 5), (16, 16), (7, 33), (64, 100), (128, 1001)] {
            let a = (0..<(rows * cols)).map { _ in UInt32.random(in: 0...UInt32.max, using: &rng) }
            var b = [UInt32](repeating: 0, count: rows * cols)
            for i in 0..<rows { for j in 0..<cols { b[j * rows + i] = a[i * cols + j] } }
            XCTAssertEqual(gfk_equal_transposed_u32(a, b, rows, cols), 1, "\(rows)x\(cols) transpose")
            // Any single flipped bit anywhere is found (all positions for small shapes, a sample for large).
            let positions = rows * cols <= 600 ? Array(0..<(rows * cols)) : (0..<200).map { _ in Int.random(in: 0..<(rows * cols)) } + [rows * cols - 1]
            for p in positions {
                var c = b
                c[p] ^= 1 << UInt32(p % 32)
                XCTAssertEqual(gfk_equal_transposed_u32(a, c, rows, cols), 0, "\(rows)x\(cols) flipped at \(p)")
            }
            // Not transposed (same layout) is not equal unless square-symmetric by chance.
            if rows > 1 && cols > 1 { XCTAssertEqual(gfk_equal_transposed_u32(a, a, rows, cols), 0) }
        }
    }

    /// The few-row products (decoding) against a double-precision reference, on odd shapes, column sub-ranges,
    /// leading dimensions wider than the matrices, and through `BLAS.gemmFewRows` with several threads.
    func testFewRowsProductsMatchAReference() {
        var g = SystemRandomNumberGenerator()
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &g) } }
        // Besides odd shapes: every M from 1 to 16 (tiles of 4 rows and the 1-3 left over), K around the nn
        // kernel's block of 6 rows of w and the nt kernel's 8 columns, N around its strips of 24 / 8 columns and the
        // nt kernel's groups of 3 rows of w.
        let shapes = [(1, 1, 1), (2, 3, 5), (3, 7, 17), (5, 8, 16), (6, 9, 33), (7, 13, 40), (8, 64, 100),
                      (13, 31, 257), (16, 100, 1030), (8, 6, 24), (8, 12, 48), (4, 5, 23), (8, 769, 75)]
            + (1...16).map { ($0, 19, 61) }
        for (M, K, N) in shapes {
            let ldx = K + 3, ldw = N + 5, ldwt = K + 2, ldy = N + 7
            let x = rand(M * ldx), w = rand(K * ldw), wt = rand(N * ldwt)
            for transB in [false, true] {
                var ref = [Double](repeating: 0, count: M * N)
                for m in 0..<M { for n in 0..<N {
                    var s = 0.0
                    for k in 0..<K { s += Double(x[m * ldx + k]) * Double(transB ? wt[n * ldwt + k] : w[k * ldw + n]) }
                    ref[m * N + n] = s
                } }
                // Whole range and a sub-range of columns (the rest must stay untouched).
                for (n0, n1) in [(0, N), (N / 3, N - N / 4)] where n1 > n0 {
                    var y = [Float](repeating: .nan, count: M * ldy)
                    if transB { gfk_sgemm_small_nt(M, K, x, ldx, wt, ldwt, &y, ldy, n0, n1) }
                    else { gfk_sgemm_small_nn(M, K, x, ldx, w, ldw, &y, ldy, n0, n1) }
                    for m in 0..<M { for n in 0..<ldy {
                        let v = y[m * ldy + n]
                        if n >= n0 && n < n1 {
                            XCTAssertEqual(Double(v), ref[m * N + n], accuracy: 1e-5 * Double(K) + 1e-6,
                                           "M\(M) K\(K) N\(N) transB \(transB) [\(m), \(n)]")
                        } else {
                            XCTAssertTrue(v.isNaN, "M\(M) K\(K) N\(N) transB \(transB): column \(n) written")
                        }
                    } }
                }
                // Through the BLAS entry point, 3 threads (M = 1 is left to sgemv: not taken).
                var y = [Float](repeating: 0, count: M * ldy)
                let taken = x.withUnsafeBufferPointer { xp in (transB ? wt : w).withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        BLAS.gemmFewRows(m: M, n: N, k: K, a: xp.baseAddress!, lda: ldx, b: wp.baseAddress!,
                                         ldb: transB ? ldwt : ldw, transB: transB, c: yp.baseAddress!, ldc: ldy, threads: 3)
                    } } }
                XCTAssertEqual(taken, M >= 2 && M <= BLAS.fewRowsLimit)
                if taken {
                    for m in 0..<M { for n in 0..<N {
                        XCTAssertEqual(Double(y[m * ldy + n]), ref[m * N + n], accuracy: 1e-5 * Double(K) + 1e-6)
                    } }
                }
            }
        }
    }
}
