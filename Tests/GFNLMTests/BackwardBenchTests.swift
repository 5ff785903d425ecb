import Foundation
import XCTest
@testable import GFNLM

/// Speed of one LoRA training step on a GPT-2-small-shaped random model. Runs only with GFNLM_BENCH=1
/// (release build: `GFNLM_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter BackwardBenchTests`).
/// GFNLM_THREADS sets gfnlm's threads (OpenBLAS: OPENBLAS_NUM_THREADS).
final class BackwardBenchTests: XCTestCase {
    static func peakRSSMiB() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? .nan
            return kb / 1024
        }
        return .nan
    }

    /// GPT-2 weights filled with uniform noise of std 0.02 (ModelWeights.random's Box–Muller takes ~15 s here).
    static func fastRandomWeights(_ c: ModelConfig) throws -> ModelWeights {
        var rng = RNG(seed: 1)
        func t(_ shape: [Int], _ std: Float = 0.02, mean: Float = 0) throws -> Tensor {
            let x = try Tensor(zeros: shape)
            let a = std * Float(3).squareRoot()
            for i in 0..<x.count { x.pointer[i] = mean + a * (2 * rng.uniformFloat() - 1) }
            return x
        }
        let E = c.nEmbd, I = c.nInner
        func ln() throws -> LayerNormWeights { LayerNormWeights(gamma: try t([E], 0.1, mean: 1), beta: try t([E], 0.1)) }
        func lin(_ n: String, _ i: Int, _ o: Int) throws -> Linear { try Linear(name: n, weight: try t([i, o]), bias: try t([o], 0.1)) }
        let blocks = try (0..<c.nLayer).map { l -> BlockWeights in
            let p = "transformer.h.\(l)."
            return BlockWeights(ln1: try ln(), ln2: try ln(), qkv: .fused(try lin(p + "attn.c_attn", E, 3 * E)),
                                attnOut: try lin(p + "attn.c_proj", E, E), fcIn: try lin(p + "mlp.c_fc", E, I),
                                fcOut: try lin(p + "mlp.c_proj", I, E))
        }
        return try ModelWeights(config: c, wte: try t([c.vocabSize, E]), wpe: try t([c.nPositions, E]), blocks: blocks,
                                lnF: try ln(), head: .tied)
    }

    func testLoRAStepGPT2Small() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["GFNLM_BENCH"] == "1" else { throw XCTSkip("set GFNLM_BENCH=1 to run the benchmark") }
        let threads = Int(env["GFNLM_THREADS"] ?? "") ?? Parallel.cpuCount
        let rank = Int(env["GFNLM_BENCH_R"] ?? "") ?? 512
        let targets = (env["GFNLM_BENCH_TARGETS"] ?? "c_attn").split(separator: ",").map(String.init)
        let cfg = ModelConfig(arch: .gpt2, nLayer: 12, nHead: 12, headDim: 64, nEmbd: 768, nInner: 3072,
                              vocabSize: 50257, nPositions: 1024, layerNormEps: 1e-5, rotaryDim: 0, rotaryBase: 10000,
                              activation: .geluNew, tiedHead: true, headBias: false)
        let t0 = Date()
        let w = try Self.fastRandomWeights(cfg)
        print(String(format: "bench: random GPT-2 small weights in %.1f s", Date().timeIntervalSince(t0)))
        let tf = Transformer(weights: w, threads: threads)
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: rank, alpha: Float(rank), targets: targets), seed: 2)
        let trainer = try SFTTrainer(transformer: tf, adapter: ad, hyper: .init(lr: 1e-4))
        var rng = RNG(seed: 3)
        // 8 sequences × 32 input tokens; loss on every next token (1 context token + 32 targets).
        let batch = (0..<8).map { _ in
            SFTExample(context: [Int32(rng.below(50257))], target: (0..<32).map { _ in Int32(rng.below(50257)) })
        }
        _ = try trainer.step(batch)  // warm-up (allocations)
        var times: [Double] = [], cpu: [Double] = []
        let reps = Int(env["GFNLM_BENCH_STEPS"] ?? "") ?? 4
        func cpuSeconds() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        for _ in 0..<reps {
            let s = Date(), c0 = cpuSeconds()
            let st = try trainer.step(batch)
            times.append(Date().timeIntervalSince(s))
            cpu.append(cpuSeconds() - c0)
            XCTAssertTrue(st.applied)
        }
        // phase breakdown of one more step
        let trace = trainer.trace, head = trainer.head
        let (T, tokens, padding, tg) = try trainer.layout(batch)
        let caches = try (0..<8).map { _ in try tf.makeCache(capacity: T) }
        var s = Date()
        let hidden = try tokens.withUnsafeBufferPointer {
            try tf.forward(tokens: $0, rows: 8, T: T, caches: caches, padding: padding, adapter: ad,
                           workspace: trainer.workspace, trace: trace)
        }
        let tForward = Date().timeIntervalSince(s); s = Date()
        try head.forward(hidden: hidden, hiddenCount: 8 * T, rows: tg.map { $0.0 })
        var dH = [Float](repeating: 0, count: 8 * T * 768)
        try dH.withUnsafeMutableBufferPointer { b in
            try head.backward(entries: tg.enumerated().map { ($0.offset, $0.element.1, -1) }, dHidden: b.baseAddress!,
                              gradients: nil)
        }
        let tHead = Date().timeIntervalSince(s); s = Date()
        try dH.withUnsafeMutableBufferPointer { b in
            try tf.backward(trace: trace, dHidden: b.baseAddress!, gradients: trainer.gradients,
                            workspace: trainer.backwardWorkspace)
        }
        let tBackward = Date().timeIntervalSince(s); s = Date()
        trainer.optimizer.step(gradientScale: 1e-3)
        trainer.optimizer.zeroGrad()
        let tOpt = Date().timeIntervalSince(s)
        let best = times.min() ?? .nan, mean = times.reduce(0, +) / Double(times.count)
        print(String(format: "bench: step CPU time best %.3f s, mean %.3f s (load average %@)", cpu.min() ?? .nan,
                     cpu.reduce(0, +) / Double(max(1, cpu.count)),
                     (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8).split(separator: " ").first.map(String.init) ?? "?") ?? "?"))
        print(String(format: "bench: LoRA r=%d on %@, 8×32 tokens, threads %d (OpenBLAS %d): step best %.3f s, mean %.3f s; "
                     + "phases: forward %.3f, head fwd+bwd %.3f, backward %.3f, AdamW %.3f; peak RSS %.0f MiB; "
                     + "%d trainable parameters",
                     rank, targets.joined(separator: ","), threads, BLAS.threads(), best, mean, tForward, tHead,
                     tBackward, tOpt, Self.peakRSSMiB(), ad.parameterCount))
    }

    /// GFLOP/s of the matrix products of one LoRA step (N = 256 tokens, GPT-2 small, r = 512 on c_attn).
    func testGemmShapes() throws {
        guard ProcessInfo.processInfo.environment["GFNLM_BENCH"] == "1" else { throw XCTSkip("GFNLM_BENCH=1") }
        let shapes: [(String, Int, Int, Int, Bool, Bool)] = [
            ("F c_attn", 256, 2304, 768, false, false), ("F attn.c_proj", 256, 768, 768, false, false),
            ("F c_fc", 256, 3072, 768, false, false), ("F mlp.c_proj", 256, 768, 3072, false, false),
            ("F lora xA^T", 256, 512, 768, false, true), ("F lora tB^T", 256, 2304, 512, false, true),
            ("F head", 256, 50257, 768, false, true),
            ("B mlp.c_proj dx", 256, 3072, 768, false, true), ("B c_fc dx", 256, 768, 3072, false, true),
            ("B attn.c_proj dx", 256, 768, 768, false, true), ("B c_attn dx", 256, 768, 2304, false, true),
            ("B g=dyB", 256, 512, 2304, false, false), ("B dB", 2304, 512, 256, true, false),
            ("B dA", 512, 768, 256, true, false), ("B dx+=gA", 256, 768, 512, false, false),
            ("B head dz·wte", 256, 768, 50257, false, false),
        ]
        for (name, m, n, k, ta, tb) in shapes {
            let a = try Tensor(zeros: [m * k]), b = try Tensor(zeros: [k * n]), c = try Tensor(zeros: [m * n])
            for i in 0..<a.count { a.pointer[i] = Float(i % 7) * 0.01 }
            for i in 0..<b.count { b.pointer[i] = Float(i % 5) * 0.01 }
            let lda = ta ? m : k, ldb = tb ? k : n
            BLAS.gemm(m: m, n: n, k: k, a: a.pointer, lda: lda, transA: ta, b: b.pointer, ldb: ldb, transB: tb, c: c.pointer, ldc: n)
            let reps = max(1, Int(2e9 / Double(2 * m * n * k)))
            let s = Date()
            for _ in 0..<reps {
                BLAS.gemm(m: m, n: n, k: k, a: a.pointer, lda: lda, transA: ta, b: b.pointer, ldb: ldb, transB: tb, c: c.pointer, ldc: n)
            }
            let dt = Date().timeIntervalSince(s) / Double(reps)
            print(String(format: "gemm %-18@ %5d×%5d×%5d %@%@: %6.1f GFLOP/s (%.2f ms)", name, m, n, k, ta ? "T" : "N", tb ? "T" : "N",
                         2 * Double(m * n * k) / dt / 1e9, dt * 1e3))
        }
    }
}
