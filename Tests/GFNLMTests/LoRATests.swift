import Foundation
import XCTest
@testable import GFNLM

final class LoRATests: XCTestCase {
    /// The worst relative error of `grads` against float central differences (step 1e-2) of `loss` at `entries`
    /// random entries of every parameter (perturbed in place and restored).
    static func worstFiniteDifferenceError(_ grads: Gradients, entries: Int, loss: () throws -> Double) rethrows -> Double {
        var worst = 0.0
        var pick = RNG(seed: 21)
        for p in grads.parameters {
            for _ in 0..<entries {
                let i = pick.below(p.count)
                let orig = p.value.pointer[i]
                let h: Float = 1e-2
                p.value.pointer[i] = orig + h; let up = Double(p.value.pointer[i] - orig); let lp = try loss()
                p.value.pointer[i] = orig - h; let dn = Double(p.value.pointer[i] - orig); let lm = try loss()
                p.value.pointer[i] = orig
                let fd = (lp - lm) / (up - dn)
                worst = max(worst, abs(Double(p.grad.pointer[i]) - fd) / max(abs(fd), 1e-2))
            }
        }
        return worst
    }

    func testTargetMatchingFollowsPEFT() throws {
        let g = try ModelWeights.random(config: .tiny(.gpt2), seed: 1)
        func names(_ t: [String], _ w: ModelWeights) throws -> [String] {
            try LoRAAdapter(model: w, config: LoRAConfig(r: 2, targets: t), seed: 0).moduleNames
        }
        XCTAssertEqual(try names(["c_attn"], g), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"])
        XCTAssertEqual(try names(["c_proj"], g), ["transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj",
                                                   "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_proj"])
        XCTAssertEqual(try names(["attn.c_proj"], g), ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"])
        XCTAssertEqual(try names(["mlp.c_proj", "c_fc"], g), ["transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj",
                                                              "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"])
        XCTAssertEqual(try names(["transformer.h.1.attn.c_attn"], g), ["transformer.h.1.attn.c_attn"])
        XCTAssertEqual(try names(LoRAConfig.defaultTargets(for: .gpt2), g).count, 2)
        // "proj" is not a suffix after a dot: PEFT would not match it either
        XCTAssertThrowsError(try names(["proj"], g)) { e in
            let msg = (e as? GFNError)?.message ?? ""
            XCTAssertTrue(msg.contains("attn.c_attn") && msg.contains("mlp.c_fc"), msg)
        }
        let j = try ModelWeights.random(config: .tiny(.gptj, layers: 1), seed: 1)
        XCTAssertEqual(try names(["q_proj", "v_proj"], j), ["transformer.h.0.attn.q_proj", "transformer.h.0.attn.v_proj"])
        XCTAssertEqual(try names(["k_proj", "out_proj", "fc_in", "fc_out"], j),
                       ["transformer.h.0.attn.k_proj", "transformer.h.0.attn.out_proj", "transformer.h.0.mlp.fc_in",
                        "transformer.h.0.mlp.fc_out"])
        XCTAssertThrowsError(try names(["c_attn"], j))
        // the output head: last in model order, on tied (GPT-2) and untied (GPT-J) heads
        XCTAssertEqual(try names(["c_attn", "lm_head"], g), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn", "lm_head"])
        XCTAssertEqual(try names(["lm_head"], j), ["lm_head"])
        XCTAssertThrowsError(try LoRAAdapter(model: j, config: LoRAConfig(r: 0, targets: ["q_proj"]), seed: 0))
        XCTAssertThrowsError(try LoRAAdapter(model: j, config: LoRAConfig(r: 2, dropout: 1, targets: ["q_proj"]), seed: 0))
        XCTAssertThrowsError(try LoRAAdapter(model: j, config: LoRAConfig(r: 2, targets: []), seed: 0))
    }

    func testInitialisationAndScale() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2, embd: 64, heads: 4), seed: 1)
        let cfg = LoRAConfig(r: 16, alpha: 32, targets: ["c_attn", "c_proj"])
        let ad = try LoRAAdapter(model: w, config: cfg, seed: 42)
        XCTAssertEqual(cfg.scale, 2)
        XCTAssertEqual(LoRAConfig(r: 16, alpha: 32, targets: ["c_attn"], useRSLoRA: true).scale, 8)
        for name in ad.moduleNames {
            let f = try XCTUnwrap(ad.factors(for: name))
            XCTAssertEqual(f.scale, 2)
            XCTAssertEqual(f.a.shape, [16, f.inFeatures])
            let bound = 1 / Float(f.inFeatures).squareRoot()
            let a = f.a.array
            XCTAssertTrue(a.allSatisfy { abs($0) <= bound })
            XCTAssertTrue(f.b.array.allSatisfy { $0 == 0 })
            // U(−b, b): mean 0, variance b²/3
            let mean = a.reduce(0, +) / Float(a.count)
            let variance = a.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(a.count)
            XCTAssertEqual(mean, 0, accuracy: 3 * bound / Float(a.count).squareRoot())
            XCTAssertEqual(variance, bound * bound / 3, accuracy: 0.15 * bound * bound / 3)
        }
        // deterministic per seed, different across seeds
        let again = try LoRAAdapter(model: w, config: cfg, seed: 42), other = try LoRAAdapter(model: w, config: cfg, seed: 43)
        let n = "transformer.h.1.mlp.c_proj"
        XCTAssertEqual(again.factors(for: n)?.a.array, ad.factors(for: n)?.a.array)
        XCTAssertNotEqual(other.factors(for: n)?.a.array, ad.factors(for: n)?.a.array)
        XCTAssertEqual(ad.parameterCount, 2 * (16 * 64 + 192 * 16) + 2 * (16 * 64 + 64 * 16) + 2 * (16 * 256 + 64 * 16))
        // B = 0: the adapted model is the base model
        let tf = Transformer(weights: w, threads: 1)
        let toks: [Int32] = [3, 1, 4, 1, 5]
        let ws = try ForwardWorkspace()
        func hidden(_ a: LoRAAdapter?) throws -> [Float] {
            let h = try toks.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 1, T: 5, caches: [tf.makeCache(capacity: 5)], adapter: a, workspace: ws)
            }
            return Array(UnsafeBufferPointer(start: h, count: 5 * 64))
        }
        XCTAssertEqual(try hidden(ad), try hidden(nil))
    }

    /// Dropout: off without a dropout generator (inference and deterministic training), on with one; masks are
    /// inverted-dropout (kept values scaled by 1/(1−p)) and the gradients follow the same masks.
    func testDropoutMasksAndGradients() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 2, std: 0.2)
        let tf = Transformer(weights: w, threads: 1)
        let cfg = LoRAConfig(r: 4, alpha: 8, dropout: 0.3, targets: ["c_attn", "c_fc"])
        let ad = try LoRAAdapter(model: w, config: cfg, seed: 3)
        var rng = RNG(seed: 4)
        for f in ad.moduleNames.compactMap({ ad.factors(for: $0) }) { for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 } }
        let toks: [Int32] = [5, 9, 2, 7, 7, 1]
        let ws = try ForwardWorkspace()
        let E = w.config.nEmbd
        func loss(seed: UInt64?, grads: Gradients? = nil) throws -> Double {
            let tr = try ForwardTrace()
            tr.dropoutRNG = seed.map { RNG(seed: $0) }
            let h = try toks.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 1, T: 6, caches: [tf.makeCache(capacity: 6)], adapter: ad, workspace: ws, trace: tr)
            }
            let head = try TokenLogProbs(transformer: tf)
            try head.forward(hidden: h, hiddenCount: 6, rows: [2, 5])
            let l = -Double(try head.logProb(0, 11)) - Double(try head.logProb(1, 12))
            if let grads {
                var dH = [Float](repeating: 0, count: 6 * E)
                try dH.withUnsafeMutableBufferPointer { b in
                    try head.backward(entries: [(0, 11, -1), (1, 12, -1)], dHidden: b.baseAddress!, gradients: nil)
                    try tf.backward(trace: tr, dHidden: b.baseAddress!, gradients: grads, workspace: BackwardWorkspace())
                }
            }
            return l
        }
        let noDrop = try loss(seed: nil)
        XCTAssertEqual(noDrop, BackwardTests.naiveLoss(w, ad, [toks], [.init(seq: 0, pos: 2, token: 11), .init(seq: 0, pos: 5, token: 12)]), accuracy: 1e-4)
        let d1 = try loss(seed: 10), d1again = try loss(seed: 10), d2 = try loss(seed: 11)
        XCTAssertEqual(d1, d1again)
        XCTAssertNotEqual(d1, noDrop)
        XCTAssertNotEqual(d1, d2)
        // mask statistics
        let tr = try ForwardTrace()
        tr.dropoutRNG = RNG(seed: 12)
        let long = (0..<40).map { Int32($0 % 97) }
        _ = try long.withUnsafeBufferPointer {
            try tf.forward(tokens: $0, rows: 1, T: 40, caches: [tf.makeCache(capacity: 40)], adapter: ad, workspace: ws, trace: tr)
        }
        let mask = try XCTUnwrap(tr.layers[0].loraMasks["transformer.h.0.attn.c_attn"])
        let vals = Array(UnsafeBufferPointer(start: mask, count: 40 * E))
        let dropped = Double(vals.filter { $0 == 0 }.count) / Double(vals.count)
        XCTAssertEqual(dropped, 0.3, accuracy: 0.05)
        XCTAssertTrue(vals.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        XCTAssertNotEqual(tr.dropoutRNG, RNG(seed: 12), "the generator advances")
        // gradients with a fixed mask vs float central differences of the same masked forward
        let grads = try Gradients(adapter: ad)
        _ = try loss(seed: 20, grads: grads)
        let worst = try Self.worstFiniteDifferenceError(grads, entries: 4) { try loss(seed: 20) }
        print("LoRA dropout gradient vs fp32 central differences (same masks): worst relative error \(worst)")
        XCTAssertLessThan(worst, 1e-2)
    }

    /// LoRA on lm_head: adding it leaves the blocks' initial factors as they were (the head is drawn last), the
    /// adapted model starts as the base model (B = 0), merging is refused (it would untie the head).
    func testHeadAdapterInitialisationAndMerge() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 5)
        let plain = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, targets: ["c_attn"]), seed: 9)
        let withHead = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, targets: ["c_attn", "lm_head"]), seed: 9)
        for n in plain.moduleNames { XCTAssertEqual(plain.factors(for: n)?.a.array, withHead.factors(for: n)?.a.array) }
        let f = try XCTUnwrap(withHead.headFactors)
        XCTAssertEqual(f.a.shape, [4, w.config.nEmbd])
        XCTAssertEqual(f.b.shape, [w.config.vocabSize, 4])
        XCTAssertTrue(f.b.array.allSatisfy { $0 == 0 })
        XCTAssertNil(plain.headFactors)
        let tf = Transformer(weights: w, threads: 1)
        let toks: [Int32] = [3, 1, 4]
        let V = w.config.vocabSize
        func logits(_ a: LoRAAdapter?) throws -> [Float] {
            let ws = try ForwardWorkspace()
            let h = try toks.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 1, T: 3, caches: [tf.makeCache(capacity: 3)], adapter: a, workspace: ws)
            }
            var z = [Float](repeating: 0, count: 3 * V)
            try z.withUnsafeMutableBufferPointer { try tf.logits(hidden: h, count: 3, adapter: a, into: $0.baseAddress!) }
            return z
        }
        XCTAssertEqual(try logits(withHead), try logits(nil))
        XCTAssertThrowsError(try withHead.mergedWeights(w)) { e in
            XCTAssertEqual((e as? GFNError)?.status, .unsupported)
        }
        // untied head (GPT-J): merged like any linear map
        let j = try ModelWeights.random(config: .tiny(.gptj), seed: 5)
        let jad = try LoRAAdapter(model: j, config: LoRAConfig(r: 4, targets: ["lm_head"]), seed: 9)
        var rj = RNG(seed: 1)
        for i in 0..<(jad.headFactors?.b.count ?? 0) { jad.headFactors?.b.pointer[i] = Float(rj.normal()) * 0.2 }
        let merged = try jad.mergedWeights(j)
        let a = NaiveGPT(w: j).logits(toks, lora: jad), m = NaiveGPT(w: merged).logits(toks, lora: nil)
        XCTAssertLessThan(zip(a.joined(), m.joined()).map { abs($0 - $1) }.max() ?? 1, 1e-4)
        XCTAssertGreaterThan(zip(a.joined(), NaiveGPT(w: j).logits(toks, lora: nil).joined()).map { abs($0 - $1) }.max() ?? 0, 1e-3)
        // a head factor of the wrong size is refused by validation and by the forward
        let bad = LoRAAdapter(factors: ["lm_head": try LoRAFactors(a: Tensor(zeros: [2, w.config.nEmbd]),
                                                                  b: Tensor(zeros: [V - 1, 2]), scale: 1)])
        XCTAssertThrowsError(try bad.validate(against: w))
        XCTAssertThrowsError(try logits(bad))
    }

    /// Dropout on the head's LoRA input (PEFT's lora_dropout applies to every adapted module): masks drawn from the
    /// head's generator, gradients of the masked branch against float central differences of the same forward.
    func testHeadDropoutGradients() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 6, std: 0.2)
        let tf = Transformer(weights: w, threads: 1)
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 4, alpha: 8, dropout: 0.3, targets: ["lm_head"]), seed: 3)
        var rng = RNG(seed: 4)
        let f = try XCTUnwrap(ad.headFactors)
        for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.3 }
        let toks: [Int32] = [5, 9, 2, 7, 7, 1]
        let ws = try ForwardWorkspace()
        let E = w.config.nEmbd
        let h = try toks.withUnsafeBufferPointer {
            try tf.forward(tokens: $0, rows: 1, T: 6, caches: [tf.makeCache(capacity: 6)], adapter: ad, workspace: ws)
        }
        let hidden = Array(UnsafeBufferPointer(start: h, count: 6 * E))
        func loss(seed: UInt64?, grads: Gradients? = nil) throws -> Double {
            let head = try TokenLogProbs(transformer: tf)
            head.dropoutRNG = seed.map { RNG(seed: $0) }
            _ = try hidden.withUnsafeBufferPointer { try head.forward(hidden: $0.baseAddress!, hiddenCount: 6, rows: [2, 5], adapter: ad) }
            let l = -Double(try head.logProb(0, 11)) - Double(try head.logProb(1, 12))
            if let grads {
                var dH = [Float](repeating: 0, count: 6 * E)
                try dH.withUnsafeMutableBufferPointer { b in
                    try head.backward(entries: [(0, 11, -1), (1, 12, -1)], dHidden: b.baseAddress!, gradients: grads)
                }
            }
            return l
        }
        let noDrop = try loss(seed: nil), d1 = try loss(seed: 10), d1again = try loss(seed: 10), d2 = try loss(seed: 11)
        XCTAssertEqual(d1, d1again)
        XCTAssertNotEqual(d1, noDrop)
        XCTAssertNotEqual(d1, d2)
        let grads = try Gradients(adapter: ad)
        _ = try loss(seed: 20, grads: grads)
        let worst = try Self.worstFiniteDifferenceError(grads, entries: 6) { try loss(seed: 20) }
        print("lm_head LoRA dropout gradient vs fp32 central differences (same masks): worst relative error \(worst)")
        XCTAssertLessThan(worst, 1e-2)
    }
}
