import XCTest
import CKernels

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
}
