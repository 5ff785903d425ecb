import Foundation
import XCTest
@testable import GFNLM

/// Speed of the bf16 products against fp32 BLAS on GPT-2-small shapes. Runs only with GFNLM_BENCH=1
/// (`GFNLM_BENCH=1 OPENBLAS_NUM_THREADS=2 swift test --filter BF16BenchTests`; GFNLM_THREADS sets gfnlm's threads).
/// Prints GFLOP/s and weight bytes streamed per second; asserts nothing about time.
final class BF16BenchTests: XCTestCase {
    func testBF16ProductSpeed() throws {
        guard ProcessInfo.processInfo.environment["GFNLM_BENCH"] == "1" else { throw XCTSkip("set GFNLM_BENCH=1") }
        let threads = Int(ProcessInfo.processInfo.environment["GFNLM_THREADS"] ?? "") ?? 2
        print("bf16 kernel: \(BF16Matrix.usesAVX512BF16 ? "AVX512-BF16" : "AVX2/FMA"), threads \(threads), "
              + "OpenBLAS threads \(BLAS.threads())")
        var rng = RNG(seed: 1)
        for (K, N) in [(768, 2304), (768, 3072), (3072, 768), (768, 50257)] {
            let w = try Tensor(zeros: [K, N])
            for i in 0..<w.count { w.pointer[i] = Float(rng.uniformFloat() - 0.5) * 0.04 }
            let f32 = WeightMatrix(w)
            let b16 = try f32.toBF16(threads: threads)
            for M in [1, 8, 32, 48, 64, 128, 512] {
                let x = try Tensor(zeros: [M, K]), y = try Tensor(zeros: [M, N])
                for i in 0..<x.count { x.pointer[i] = Float(rng.uniformFloat() - 0.5) }
                func time(_ m: WeightMatrix) -> Double {
                    m.multiply(x: x.pointer, ldx: K, m: M, y: y.pointer, ldy: N, threads: threads)
                    var best = Double.infinity
                    let reps = max(3, min(50, 20_000_000_000 / (M * K * N * 2 + 1) ))
                    for _ in 0..<3 {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        for _ in 0..<reps { m.multiply(x: x.pointer, ldx: K, m: M, y: y.pointer, ldy: N, threads: threads) }
                        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(reps))
                    }
                    return best
                }
                let a = time(f32), b = time(b16)
                let flops = 2.0 * Double(M * K * N)
                print(String(format: "K %5d N %5d M %4d: fp32 %7.3f ms %6.1f GFLOP/s %5.1f GB/s | bf16 %7.3f ms %6.1f GFLOP/s %5.1f GB/s | bf16/fp32 speed %.2f",
                             K, N, M, a * 1e3, flops / a / 1e9, Double(K * N * 4) / a / 1e9,
                             b * 1e3, flops / b / 1e9, Double(K * N * 2) / b / 1e9, a / b))
            }
        }
    }
}
