import Foundation
import XCTest
@testable import GFNLM

/// The batching scheduler: every request's result equals the sequential call with the same arguments (batch
/// invariance), whatever shares its batch, the adapters mixed in it, and the thread counts; queue limits,
/// cancellation and shutdown.
final class BatcherTests: XCTestCase {
    func model(_ arch: Architecture, threads: Int, weights: ModelWeights? = nil) throws -> Model {
        let w = try weights ?? ModelWeights.random(config: .tiny(arch, vocab: 97, embd: 48, layers: 2, heads: 4),
                                                   seed: 3, std: 0.4)
        return Model(transformer: Transformer(weights: w, threads: threads, rowInvariantDecoding: true),
                     tokenizer: nil)
    }

    func adapter(_ m: Model, seed: UInt64, head: Bool) throws -> LoRAAdapter {
        var targets = ["c_attn", "c_fc", "c_proj", "q_proj", "v_proj", "fc_in"]
        if head { targets.append("lm_head") }
        return try randomizedAdapter(m, seed: seed, targets: targets)
    }

    // MARK: kernels

    /// A row's product is bitwise the same whatever the number of rows around it (fp32 both layouts, bf16; the
    /// quantized formats: QuantTests).
    func testRowInvariantProductsDoNotDependOnTheRowCount() throws {
        var rng = RNG(seed: 1)
        let K = 70, N = 203, M = 37
        let x = (0..<M * K).map { _ in Float(rng.normal()) }
        let wv = (0..<K * N).map { _ in Float(rng.normal()) }
        let w = try Tensor(shape: [K, N], values: wv)
        let wtv = (0..<K * N).map { _ in Float(rng.normal()) }
        let wt = try Tensor(shape: [N, K], values: wtv)
        let matrices = [WeightMatrix(w), WeightMatrix(transposedOf: wt), try WeightMatrix(w).toBF16()]
        for (mi, matrix) in matrices.enumerated() {
            for threads in [1, 3] {
                var all = [Float](repeating: 0, count: M * N)
                x.withUnsafeBufferPointer { xb in
                    all.withUnsafeMutableBufferPointer { yb in
                        matrix.multiply(x: xb.baseAddress!, ldx: K, m: M, y: yb.baseAddress!, ldy: N,
                                        threads: threads, rowInvariant: true)
                    }
                }
                for m in [1, 2, 3, 5, 16, 17] {
                    for start in [0, M - m] {
                        var part = [Float](repeating: 0, count: m * N)
                        x.withUnsafeBufferPointer { xb in
                            part.withUnsafeMutableBufferPointer { yb in
                                matrix.multiply(x: xb.baseAddress! + start * K, ldx: K, m: m, y: yb.baseAddress!,
                                                ldy: N, threads: 1, rowInvariant: true)
                            }
                        }
                        XCTAssertEqual(part, Array(all[start * N..<(start + m) * N]),
                                       "matrix \(mi), threads \(threads), rows \(start)..<\(start + m)")
                    }
                }
                // and it is the product (against double precision)
                for r in [0, M - 1] {
                    for n in [0, 101, N - 1] {
                        var ref = 0.0
                        for k in 0..<K { ref += Double(x[r * K + k]) * Double(mi == 1 ? wtv[n * K + k] : wv[k * N + n]) }
                        let tol = mi == 2 ? 0.05 * max(1, abs(ref)) : 1e-4 * max(1, abs(ref))
                        XCTAssertEqual(Double(all[r * N + n]), ref, accuracy: tol)
                    }
                }
            }
        }
    }

    // MARK: batch invariance of whole requests

    /// Many threads submit mixed requests (random parameters, seeds, adapters incl. one on lm_head, sampling and
    /// scoring, a few cancelled): every completed request equals the sequential call on a one-thread model over the
    /// same weights; none is lost or answered twice. fp32, int8 and 4-bit weights.
    func testConcurrentMixedRequestsEqualTheSequentialResults() throws {
        for (arch, type) in [(Architecture.gpt2, WeightType.f32), (.gptj, .f32), (.gpt2, .int8), (.gptj, .q4)] {
            let base = try ModelWeights.random(config: .tiny(arch, vocab: 97, embd: 48, layers: 2, heads: 4), seed: 3, std: 0.4)
            let served = try model(arch, threads: 3, weights: type == .f32 ? base : try base.quantized(type))
            let reference = try model(arch, threads: 1, weights: served.weights)
            let adapters: [LoRAAdapter?] = [nil, try adapter(served, seed: 7, head: false),
                                            try adapter(served, seed: 9, head: true)]
            var config = Batcher.Config()
            config.maxBatch = 12
            config.maxPrefillTokens = 16
            let batcher = try Batcher(model: served, config: config)
            var rng = RNG(seed: 42)
            var works: [BatchWork] = []
            var earlier: [[Int32]] = []
            for i in 0..<40 {
                var prompt = (0..<(1 + rng.below(9))).map { _ in Int32(rng.below(97)) }
                // Some prompts repeat (requests admitted together with the same prompt and adapter share a prefill).
                if !earlier.isEmpty && rng.below(3) == 0 { prompt = earlier[rng.below(earlier.count)] }
                earlier.append(prompt)
                let adapter = adapters[rng.below(3)]
                if i % 5 == 4 {
                    let cont = (0..<rng.below(6)).map { _ in Int32(rng.below(97)) }
                    let sp = ScoreParams(stopTokens: [5])
                    works.append(.score(pairs: [(prompt, cont), (prompt, [])], params: sp, adapter: adapter))
                    continue
                }
                var p = SamplingParams()
                p.maxNewTokens = 1 + rng.below(12)
                p.minNewTokens = rng.below(2)
                p.temperature = [0, 0.7, 1, 1.5][rng.below(4)]
                p.topK = [0, 5][rng.below(2)]
                p.topP = [1, 0.9][rng.below(2)]
                p.seed = rng.next()
                p.stopTokens = [[], [3], [3, 8]][rng.below(3)]
                p.includeStopToken = rng.below(2) == 0
                if rng.below(3) == 0 { p.adjustment = LogitAdjustment(allowed: [1, 2, 3, 4, 8, 9, 10, 20], disallowedPenalty: -5) }
                works.append(.sample(prompt: prompt, n: 1 + rng.below(4), params: p, adapter: adapter))
            }
            let work = works
            let done = LockedCounter()
            let requests = LockedArray<(Int, BatchRequest)>()
            DispatchQueue.concurrentPerform(iterations: 4) { t in
                for i in stride(from: t, to: work.count, by: 4) {
                    do {
                        let r = try batcher.submit(work[i], block: true, onDone: { _ in done.increment() })
                        if i % 13 == 6 { r.cancel() }
                        requests.append((i, r))
                    } catch {
                        XCTFail("submit \(i): \(error)")
                    }
                }
            }
            let ctx = try InferenceContext(model: reference)
            var cancelled = 0
            for (i, r) in requests.values.sorted(by: { $0.0 < $1.0 }) {
                XCTAssertTrue(r.wait(timeoutNanoseconds: 60_000_000_000), "request \(i) never finished")
                guard let result = r.result else { continue }
                switch (works[i], result) {
                case (.sample(let prompt, let n, let params, let adapter), .success(.samples(let got))):
                    let want = try ctx.sample(prompts: [prompt], n: n, params: params, adapter: adapter)
                    XCTAssertEqual(got.count, want.count)
                    for (g, w) in zip(got, want) {
                        XCTAssertEqual(g.tokens, w.tokens, "\(arch) \(type) request \(i)")
                        XCTAssertEqual(g.steps, w.steps)
                        XCTAssertEqual(g.finishReason, w.finishReason)
                        XCTAssertEqual(g.tokenLogProbs.count, w.tokenLogProbs.count)
                        for (a, b) in zip(g.tokenLogProbs, w.tokenLogProbs) { XCTAssertEqual(a, b, accuracy: 1e-6) }
                        for (a, b) in zip(g.stopLogProbs, w.stopLogProbs) { XCTAssertEqual(a, b, accuracy: 1e-6) }
                        XCTAssertEqual(g.logProb, w.logProb, accuracy: 1e-5)
                    }
                case (.score(let pairs, let params, let adapter), .success(.scores(let got))):
                    let want = try ctx.score(pairs, params: params, adapter: adapter)
                    for (g, w) in zip(got, want) { XCTAssertEqual(g.total, w.total, accuracy: 1e-5) }
                case (_, .failure(let e)):
                    XCTAssertEqual(e.status, .cancelled, "request \(i) failed: \(e)")
                    XCTAssertEqual(i % 13, 6, "only the requests cancelled by the test may be cancelled")
                    cancelled += 1
                default:
                    XCTFail("request \(i): outcome of the wrong kind")
                }
            }
            batcher.shutdown(drain: true)
            XCTAssertEqual(done.value, works.count, "every request finishes exactly once")
            let s = batcher.statistics
            XCTAssertEqual(s.completed + s.cancelled, works.count)
            XCTAssertEqual(s.cancelled, cancelled)
        }
    }

    /// Requests queued while the scheduler is busy are admitted in one turn and prefilled in one pass: identical
    /// prompts under one adapter share a prefill, everything else (another prompt of the same length, the same
    /// prompt under another adapter) gets its own, and every result equals the sequential call.
    func testRequestsAdmittedTogetherShareOnlyIdenticalPrefills() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let served = try model(arch, threads: 2)
            let reference = try model(arch, threads: 1, weights: served.weights)
            let ad = try adapter(served, seed: 5, head: true)
            let a: [Int32] = [4, 8, 15, 16, 23], b: [Int32] = [42, 4, 8, 15, 16], c: [Int32] = [7]
            let works: [BatchWork] = [(a, nil), (b, nil), (a, nil), (a, ad), (c, nil), (b, ad), (a, ad), (c, ad)]
                .enumerated().map { i, pa in
                    var p = SamplingParams()
                    p.maxNewTokens = 6
                    p.seed = UInt64(i)
                    return .sample(prompt: pa.0, n: 1 + i % 2, params: p, adapter: pa.1)
                }
            var config = Batcher.Config()
            config.maxBatch = 32
            let batcher = try Batcher(model: served, config: config)
            // Holding the model's compute gate keeps the scheduler from running a pass: all requests queue up.
            let requests = try served.transformer.gate.run { () throws -> [BatchRequest] in
                try works.map { try batcher.submit($0) }
            }
            let ctx = try InferenceContext(model: reference)
            for (i, r) in requests.enumerated() {
                XCTAssertTrue(r.wait(timeoutNanoseconds: 60_000_000_000))
                guard case .sample(let prompt, let n, let params, let adapter) = works[i],
                      case .success(.samples(let got))? = r.result else { return XCTFail("request \(i) failed") }
                let want = try ctx.sample(prompts: [prompt], n: n, params: params, adapter: adapter)
                XCTAssertEqual(got.map(\.tokens), want.map(\.tokens), "\(arch) request \(i)")
                XCTAssertEqual(got.map(\.tokenLogProbs), want.map(\.tokenLogProbs), "\(arch) request \(i)")
            }
            batcher.shutdown(drain: true)
        }
    }

    // MARK: queue, cancellation, shutdown

    func testFullQueueIsBusyAndShutdownCancelsOrDrains() throws {
        let m = try model(.gpt2, threads: 1)
        var config = Batcher.Config()
        config.maxBatch = 1
        config.maxQueue = 2
        let batcher = try Batcher(model: m, config: config)
        var p = SamplingParams()
        p.maxNewTokens = 64
        // The first request occupies the only row; a streaming callback holds the scheduler until released.
        let gate = DispatchSemaphore(value: 0)
        let first = try batcher.submit(.sample(prompt: [1, 2], n: 1, params: p, adapter: nil),
                                       onToken: { _, _, _ in gate.wait(); return true })
        while batcher.statistics.activeRows == 0 { usleep(1000) }
        let queued = try (0..<2).map { _ in try batcher.submit(.sample(prompt: [3], n: 1, params: p, adapter: nil)) }
        XCTAssertThrowsError(try batcher.submit(.sample(prompt: [4], n: 1, params: p, adapter: nil))) { e in
            XCTAssertEqual((e as? GFNError)?.status, .busy)
        }
        XCTAssertEqual(batcher.statistics.rejected, 1)
        XCTAssertThrowsError(try batcher.submit(.sample(prompt: [4], n: 2, params: p, adapter: nil))) { e in
            XCTAssertEqual((e as? GFNError)?.status, .invalidArgument, "n above max_batch")
        }
        queued[0].cancel()
        for _ in 0..<200 { gate.signal() }
        XCTAssertTrue(first.wait(timeoutNanoseconds: 30_000_000_000))
        XCTAssertTrue(queued[1].wait(timeoutNanoseconds: 30_000_000_000))
        if case .failure(let e) = queued[0].result { XCTAssertEqual(e.status, .cancelled) } else { XCTFail("not cancelled") }
        if case .success = queued[1].result {} else { XCTFail("queued request should complete") }

        // Shutdown without draining: a long request is cancelled at a token boundary; later submissions refused.
        var long = SamplingParams()
        long.maxNewTokens = 64
        let running = try batcher.submit(.sample(prompt: [1], n: 1, params: long, adapter: nil),
                                         onToken: { _, _, _ in usleep(2000); return true })
        let waiting = try batcher.submit(.sample(prompt: [2], n: 1, params: long, adapter: nil))
        while batcher.statistics.activeRows == 0 { usleep(1000) }
        batcher.shutdown(drain: false)
        for r in [running, waiting] {
            XCTAssertTrue(r.isFinished)
            if case .failure(let e) = r.result { XCTAssertEqual(e.status, .cancelled) } else { XCTFail("not cancelled") }
        }
        XCTAssertThrowsError(try batcher.submit(.sample(prompt: [1], n: 1, params: p, adapter: nil))) { e in
            XCTAssertEqual((e as? GFNError)?.status, .state)
        }

        // Drain: everything queued completes.
        let drained = try Batcher(model: m, config: config)
        let all = try (0..<2).map { _ in try drained.submit(.sample(prompt: [5], n: 1, params: p, adapter: nil)) }
        drained.shutdown(drain: true)
        for r in all { if case .success = r.result {} else { XCTFail("drain must complete queued requests") } }
    }

    /// A streaming callback that returns false cancels its request; the tokens streamed are the sample's.
    func testStreamingDeliversEveryTokenInOrder() throws {
        let m = try model(.gptj, threads: 2)
        let batcher = try Batcher(model: m)
        defer { batcher.shutdown(drain: false) }
        var p = SamplingParams()
        p.maxNewTokens = 10
        p.seed = 11
        let streamed = LockedArray<(Int, Int32)>()
        let r = try batcher.submit(.sample(prompt: [4, 5, 6], n: 3, params: p, adapter: nil),
                                   onToken: { i, t, _ in streamed.append((i, t)); return true })
        XCTAssertTrue(r.wait(timeoutNanoseconds: 30_000_000_000))
        guard case .success(.samples(let samples)) = r.result else { return XCTFail("no samples") }
        for (i, s) in samples.enumerated() {
            XCTAssertEqual(streamed.values.filter { $0.0 == i }.map(\.1), s.tokens)
        }
        let stopped = try batcher.submit(.sample(prompt: [4], n: 1, params: p, adapter: nil),
                                         onToken: { _, _, _ in false })
        XCTAssertTrue(stopped.wait(timeoutNanoseconds: 30_000_000_000))
        if case .failure(let e) = stopped.result { XCTAssertEqual(e.status, .cancelled) } else { XCTFail("not cancelled") }
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

final class LockedArray<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ x: T) { lock.lock(); items.append(x); lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return items }
}
