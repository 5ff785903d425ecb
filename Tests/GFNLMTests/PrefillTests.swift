import XCTest
@testable import GFNLM

/// Batched prefill: prompts of different lengths (and adapters) in one pass give every prompt exactly the cache and
/// logits of prefilling it alone, and those agree with a plain full forward.
final class PrefillTests: XCTestCase {
    func model(_ arch: Architecture, threads: Int) throws -> Model {
        // Wide enough (n_inner 256, vocab 300) that the products take the many-row kernels' block paths and tails.
        let w = try ModelWeights.random(config: .tiny(arch, vocab: 300, embd: 64, layers: 2, heads: 4), seed: 5,
                                        std: 0.3)
        return Model(transformer: Transformer(weights: w, threads: threads, rowInvariantDecoding: true),
                     tokenizer: nil)
    }

    func adapter(_ m: Model, seed: UInt64) throws -> LoRAAdapter {
        let targets = ["c_attn", "c_fc", "c_proj", "q_proj", "v_proj", "fc_in", "fc_out", "lm_head"]
        let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, targets: targets), seed: seed)
        var rng = RNG(seed: seed &+ 7)
        for name in a.moduleNames {
            guard let f = a.factors(for: name) else { continue }
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 }
        }
        if let f = a.headFactors { for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 } }
        return a
    }

    func contents(_ cache: KVCache) -> [Float] {
        var out: [Float] = []
        for l in 0..<cache.nLayer {
            for h in 0..<cache.nHead {
                out += Array(UnsafeBufferPointer(start: cache.kPointer(layer: l, head: h), count: cache.length * cache.headDim))
                out += Array(UnsafeBufferPointer(start: cache.vPointer(layer: l, head: h), count: cache.length * cache.headDim))
            }
        }
        return out
    }

    func testBatchedPrefillEqualsPrefillingEachPromptAlone() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let m1 = try model(arch, threads: 1)
            let m3 = Model(transformer: Transformer(weights: m1.weights, threads: 3, rowInvariantDecoding: true),
                           tokenizer: nil)
            let a = try adapter(m1, seed: 11), b = try adapter(m1, seed: 12)
            var rng = RNG(seed: 9)
            let lengths = [1, 5, 17, 40, 3, 23, 1, 16]
            let adapters: [LoRAAdapter?] = [nil, a, b, a, nil, b, a, nil]
            let items = zip(lengths, adapters).map { n, ad in
                PrefillItem(prompt: (0..<n).map { _ in Int32(rng.below(300)) }, adapter: ad)
            }
            let V = m1.config.vocabSize
            let alone = try InferenceContext(model: m1)
            var aloneLogits: [[Float]] = [], aloneCaches: [[Float]] = []
            for item in items {
                var logits = [Float](repeating: 0, count: V)
                let cache = try logits.withUnsafeMutableBufferPointer { p in
                    try alone.prefill(item.prompt, adapter: item.adapter, logits: p.baseAddress!)
                }
                aloneLogits.append(logits)
                aloneCaches.append(contents(cache))
                XCTAssertEqual(cache.length, item.prompt.count)
            }
            for m in [m1, m3] {
                let ctx = try InferenceContext(model: m)
                var logits = [Float](repeating: 0, count: items.count * V)
                let caches = try logits.withUnsafeMutableBufferPointer { p in
                    try ctx.prefill(items, logits: p.baseAddress!)
                }
                for i in items.indices {
                    XCTAssertEqual(Array(logits[i * V..<(i + 1) * V]), aloneLogits[i],
                                   "\(arch) threads \(m.transformer.threads) prompt \(i): logits")
                    XCTAssertEqual(contents(caches[i]), aloneCaches[i],
                                   "\(arch) threads \(m.transformer.threads) prompt \(i): cache")
                }
            }
            // Against an independent path: the plain forward over the whole prompt (fastest products), to rounding.
            let plain = Model(transformer: Transformer(weights: m1.weights, threads: 1, rowInvariantDecoding: false),
                              tokenizer: nil)
            for (i, item) in items.enumerated() {
                let ref = try plain.logits(ids: item.prompt, batch: 1, seqLen: item.prompt.count,
                                           adapter: item.adapter)
                let last = Array(ref[(item.prompt.count - 1) * V..<item.prompt.count * V])
                for v in 0..<V { XCTAssertEqual(aloneLogits[i][v], last[v], accuracy: 1e-3 * max(1, abs(last[v]))) }
            }
        }
    }
}
