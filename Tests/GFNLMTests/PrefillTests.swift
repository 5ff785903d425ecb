import XCTest
@testable import GFNLM

/// Batched prefill: prompts of different lengths (and adapters) in one pass give every prompt exactly the cache and
/// logits of prefilling it alone, and those agree with a plain full forward.
final class PrefillTests: XCTestCase {
    func model(_ arch: Architecture, threads: Int, weights type: WeightType = .f32) throws -> Model {
        // Wide enough (n_inner 256, vocab 300) that the products take the many-row kernels' block paths and tails.
        let base = try ModelWeights.random(config: .tiny(arch, vocab: 300, embd: 64, layers: 2, heads: 4), seed: 5,
                                           std: 0.3)
        let w = type == .f32 ? base : try base.quantized(type)
        return Model(transformer: Transformer(weights: w, threads: threads, rowInvariantDecoding: true),
                     tokenizer: nil)
    }

    func adapter(_ m: Model, seed: UInt64) throws -> LoRAAdapter {
        try randomizedAdapter(m, seed: seed, targets: ["c_attn", "c_fc", "c_proj", "q_proj", "v_proj", "fc_in",
                                                       "fc_out", "lm_head"])
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

    /// fp32, int8 and 4-bit weights: the quantized products of the batch (106 rows) take the many-row panel path,
    /// those of the prompts alone (1–40 rows) also the few-row path, and must agree bit for bit.
    func testBatchedPrefillEqualsPrefillingEachPromptAlone() throws {
        for (arch, type) in [(Architecture.gpt2, WeightType.f32), (.gptj, .f32), (.gpt2, .int8), (.gptj, .q4),
                             (.gpt2, .q4)] {
            let m1 = try model(arch, threads: 1, weights: type)
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
                                   "\(arch) \(type) threads \(m.transformer.threads) prompt \(i): logits")
                    XCTAssertEqual(contents(caches[i]), aloneCaches[i],
                                   "\(arch) \(type) threads \(m.transformer.threads) prompt \(i): cache")
                }
            }
            // Against an independent path: the plain forward over the whole prompt (fastest products), to rounding
            // (fp32 only: the quantized plain forward rounds the activations of 5–63-row products).
            if type != .f32 { continue }
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
