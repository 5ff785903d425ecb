import Foundation
import XCTest
@testable import GFNLM

/// Speed of the quantized products against fp32 on GPT-2-small shapes. Runs only with GFNLM_BENCH=1
/// (`GFNLM_BENCH=1 swift test --filter QuantBenchTests`; GFNLM_THREADS sets the threads, default 1). Prints GFLOP/s
/// of the row-invariant products (fp32 row-streaming kernels, int8 and 4-bit panel kernel) and, for reference, of
/// the quantized integer and widen + sgemm kernels and fp32 sgemm; asserts nothing about time.
final class QuantBenchTests: XCTestCase {
    func testQuantizedProductSpeed() throws {
        guard ProcessInfo.processInfo.environment["GFNLM_BENCH"] == "1" else { throw XCTSkip("set GFNLM_BENCH=1") }
        let threads = Int(ProcessInfo.processInfo.environment["GFNLM_THREADS"] ?? "") ?? 1
        let rowsList = (ProcessInfo.processInfo.environment["GFNLM_BENCH_ROWS"] ?? "1,4,8,16,32,64,256")
            .split(separator: ",").compactMap { Int($0) }
        print("quant kernels: \(QuantMatrix.usesAVX2 ? "AVX2" : "portable"), threads \(threads)")
        var rng = RNG(seed: 1)
        for (K, N) in [(768, 3072), (3072, 768)] {
            let w = try Tensor(zeros: [K, N])
            for i in 0..<w.count { w.pointer[i] = Float(rng.uniformFloat() - 0.5) * 0.04 }
            let f32 = WeightMatrix(w)
            let q8 = try f32.quantized(.q8, threads: 2), q4 = try f32.quantized(.q4, threads: 2)
            guard case .quant(let m8) = q8.storage, case .quant(let m4) = q4.storage else { return XCTFail() }
            for M in rowsList {
                let x = try Tensor(zeros: [M, K]), y = try Tensor(zeros: [M, N])
                for i in 0..<x.count { x.pointer[i] = Float(rng.uniformFloat() - 0.5) }
                func time(_ body: () -> Void) -> Double {
                    body()
                    var best = Double.infinity
                    let reps = max(3, min(50, 4_000_000_000 / (M * K * N * 2 + 1)))
                    for _ in 0..<3 {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        for _ in 0..<reps { body() }
                        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(reps))
                    }
                    return 2.0 * Double(M * K * N) / best / 1e9
                }
                func inv(_ m: WeightMatrix) -> Double {
                    time { m.multiply(x: x.pointer, ldx: K, m: M, y: y.pointer, ldy: N, threads: threads, rowInvariant: true) }
                }
                func kern(_ q: QuantMatrix, _ k: QuantMatrix.Kernel) -> Double {
                    time { q.multiply(x: x.pointer, ldx: K, m: M, y: y.pointer, ldy: N, threads: threads, kernel: k) }
                }
                let f = inv(f32), a = inv(q8), b = inv(q4)
                let i8 = kern(m8, .integer), s8 = kern(m8, .widened)
                let sg = time { BLAS.gemm(m: M, n: N, k: K, a: x.pointer, lda: K, b: w.pointer, ldb: N, transB: false,
                                          c: y.pointer, ldc: N, threads: threads) }
                print(String(format: "K %4d N %4d M %4d row-invariant GFLOP/s: fp32 %6.1f int8 %6.1f (%.2fx) q4 %6.1f (%.2fx) | int8 integer %6.1f widen+sgemm %6.1f | fp32 sgemm %6.1f",
                             K, N, M, f, a, a / f, b, b / f, i8, s8, sg))
            }
        }
    }
}
