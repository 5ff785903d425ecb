import Foundation
import XCTest
@testable import GFNLM

/// Gradient checks: the fp32 backward pass against central finite differences of the fp64 NaiveGPT.
final class BackwardTests: XCTestCase {
    /// A cross-entropy term: the logits at `pos` of sequence `seq` should predict `token`.
    struct Target { let seq: Int; let pos: Int; let token: Int32 }

    static func logSoftmax(_ z: [Double]) -> [Double] {
        let m = z.max() ?? 0
        let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
        return z.map { $0 - lse }
    }

    /// Σ −log p(target) over the targets, in fp64 with NaiveGPT (one unpadded sequence at a time).
    static func naiveLoss(_ w: ModelWeights, _ adapter: LoRAAdapter?, _ seqs: [[Int32]], _ targets: [Target]) -> Double {
        let naive = NaiveGPT(w: w)
        var total = 0.0
        for (s, seq) in seqs.enumerated() {
            let ts = targets.filter { $0.seq == s }
            if ts.isEmpty { continue }
            let logits = naive.logits(seq, lora: adapter)
            for t in ts { total -= logSoftmax(logits[t.pos])[Int(t.token)] }
        }
        return total
    }

    struct Report { var worstTensorError = 0.0; var worstName = ""; var checked = 0 }

    /// Compares every gradient tensor against central differences of `loss` (perturbing the parameter in place):
    /// up to `perTensor` random entries each plus one random directional derivative over the whole tensor.
    /// The error of a tensor is ‖g − fd‖ / ‖fd‖ over the checked entries (and |Δ| / |fd| for the direction).
    func check(_ grads: Gradients, perTensor: Int = 6, h: Float = 2e-3, tolerance: Double = 1e-3,
               file: StaticString = #filePath, line: UInt = #line, loss: () -> Double) -> Report {
        var rng = RNG(seed: 99)
        var rep = Report()
        for p in grads.parameters {
            let v = p.value.pointer, g = p.grad.pointer
            var idx: [Int] = Array(0..<p.count)
            if p.count > perTensor {
                idx = (0..<perTensor).map { _ in rng.below(p.count) }
            }
            var num = 0.0, den = 0.0
            for i in idx {
                let orig = v[i]
                let step = max(h, abs(orig) * h)
                v[i] = orig + step; let up = Double(v[i]) - Double(orig); let lp = loss()
                v[i] = orig - step; let dn = Double(v[i]) - Double(orig); let lm = loss()
                v[i] = orig
                let fd = (lp - lm) / (up - dn)
                num += (Double(g[i]) - fd) * (Double(g[i]) - fd)
                den += fd * fd
                rep.checked += 1
            }
            // relative error, with a floor on the denominator for tensors whose true gradient is ~0 (e.g. GPT-2's
            // key bias: adding a constant to every score of a query leaves the softmax unchanged)
            var err = num.squareRoot() / max(den.squareRoot(), 1e-3)
            // directional derivative along a random unit direction
            let dir = (0..<p.count).map { _ in Float(rng.normal()) }
            let nrm = Float(dir.reduce(0) { $0 + Double($1 * $1) }.squareRoot())
            let orig = Array(p.value.buffer)
            let eps: Float = h
            for i in 0..<p.count { v[i] = orig[i] + eps * dir[i] / nrm }
            let actualUp = (0..<p.count).map { Double(v[$0]) - Double(orig[$0]) }
            let lp = loss()
            for i in 0..<p.count { v[i] = orig[i] - eps * dir[i] / nrm }
            let actualDn = (0..<p.count).map { Double(v[$0]) - Double(orig[$0]) }
            let lm = loss()
            for i in 0..<p.count { v[i] = orig[i] }
            // Linearised: lp − lm ≈ g·(up − dn)
            var predicted = 0.0
            for i in 0..<p.count { predicted += Double(g[i]) * (actualUp[i] - actualDn[i]) }
            let dErr = abs(predicted - (lp - lm)) / max(abs(lp - lm), 2 * Double(eps) * 1e-3)
            err = max(err, dErr)
            XCTAssertLessThanOrEqual(err, tolerance, "\(p.name): relative error \(err)", file: file, line: line)
            if err > rep.worstTensorError { rep.worstTensorError = err; rep.worstName = p.name }
        }
        return rep
    }

    func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = RNG(seed: seed)
        return (0..<n).map { _ in Int32(rng.below(vocab)) }
    }

    /// An adapter on every module with random non-zero A and B (a "trained" adapter: B = 0 would zero dA).
    func randomAdapter(_ w: ModelWeights, r: Int = 2, rs: Bool = false, targets: [String]? = nil) throws -> LoRAAdapter {
        let names = targets ?? (w.config.arch == .gpt2 ? ["c_attn", "c_proj", "c_fc"]
                                                       : ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"])
        let cfg = LoRAConfig(r: r, alpha: 3, targets: names, useRSLoRA: rs)
        let ad = try LoRAAdapter(model: w, config: cfg, seed: 7)
        var rng = RNG(seed: 8)
        for f in ad.moduleNames.compactMap({ ad.factors(for: $0) }) {
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.2 }
            for i in 0..<f.a.count { f.a.pointer[i] *= 2 }
        }
        return ad
    }

    /// Our loss and gradients for rows (each row: optional padding) in one traced forward, CE at `targets`
    /// given in (row, position-in-row) terms.
    func ourGradients(_ tf: Transformer, rowsTokens: [[Int32]], padding: [Int]? = nil, caches: [KVCache],
                      adapter: LoRAAdapter?, grads: Gradients, targets: [(row: Int, t: Int, token: Int32)],
                      kv: KVGradients? = nil) throws -> (trace: ForwardTrace, loss: Double) {
        let rows = rowsTokens.count, T = rowsTokens[0].count
        let flat = rowsTokens.flatMap { $0 }
        let trace = try ForwardTrace()
        let ws = try ForwardWorkspace()
        let hidden = try flat.withUnsafeBufferPointer {
            try tf.forward(tokens: $0, rows: rows, T: T, caches: caches, padding: padding, adapter: adapter,
                           workspace: ws, trace: trace)
        }
        let head = try TokenLogProbs(transformer: tf)
        let sel = targets.map { $0.row * T + $0.t }
        try head.forward(hidden: hidden, hiddenCount: rows * T, rows: sel, adapter: adapter)
        var loss = 0.0
        for (i, tg) in targets.enumerated() { loss -= Double(try head.logProb(i, tg.token)) }
        var dH = [Float](repeating: 0, count: rows * T * tf.config.nEmbd)
        try dH.withUnsafeMutableBufferPointer { b in
            try head.backward(entries: targets.enumerated().map { ($0.offset, $0.element.token, -1) },
                              dHidden: b.baseAddress!, gradients: grads)
            try tf.backward(trace: trace, dHidden: b.baseAddress!, gradients: grads, kvGradients: kv,
                            workspace: BackwardWorkspace())
        }
        return (trace, loss)
    }

    func testLoRAGradientsSingleSequence() throws {
        for arch in [Architecture.gpt2, .gptj] {
            for rs in [false, true] {
                let w = try ModelWeights.random(config: .tiny(arch), seed: 21, std: 0.2)
                let tf = Transformer(weights: w, threads: 2)
                let ad = try randomAdapter(w, rs: rs)
                let seq = randomTokens(7, vocab: w.config.vocabSize, seed: 22)
                let grads = try Gradients(adapter: ad)
                let targets = [(0, 2, Int32(5)), (0, 4, Int32(17)), (0, 6, Int32(40))]
                let (_, loss) = try ourGradients(tf, rowsTokens: [seq], caches: [tf.makeCache(capacity: 7)], adapter: ad,
                                                 grads: grads, targets: targets.map { ($0.0, $0.1, $0.2) })
                let nt = targets.map { Target(seq: 0, pos: $0.1, token: $0.2) }
                XCTAssertEqual(loss, Self.naiveLoss(w, ad, [seq], nt), accuracy: 1e-4)
                let rep = check(grads) { Self.naiveLoss(w, ad, [seq], nt) }
                print("LoRA grad check \(arch) rsLoRA=\(rs): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
            }
        }
    }

    /// LoRA on `lm_head` (tied on GPT-2, untied on GPT-J) next to a block module: the logits of the sampling path
    /// and the training head against the fp64 model, and every factor's gradient against finite differences.
    func testLoRAOnTheHeadGradients() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 23, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let ad = try randomAdapter(w, targets: [arch == .gpt2 ? "c_attn" : "v_proj", "lm_head"])
            XCTAssertEqual(ad.moduleNames.last, "lm_head")
            let f = try XCTUnwrap(ad.headFactors)
            XCTAssertEqual(f.a.shape, [2, w.config.nEmbd]); XCTAssertEqual(f.b.shape, [w.config.vocabSize, 2])
            let seq = randomTokens(6, vocab: w.config.vocabSize, seed: 24)
            // sampling path: Transformer.logits with the adapter
            let ws = try ForwardWorkspace()
            let V = w.config.vocabSize
            let hidden = try seq.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 1, T: 6, caches: [tf.makeCache(capacity: 6)], adapter: ad, workspace: ws)
            }
            var z = [Float](repeating: 0, count: 6 * V)
            try z.withUnsafeMutableBufferPointer { try tf.logits(hidden: hidden, count: 6, adapter: ad, into: $0.baseAddress!) }
            let want = NaiveGPT(w: w).logits(seq, lora: ad)
            var worst = 0.0
            for t in 0..<6 { for v in 0..<V { worst = max(worst, abs(Double(z[t * V + v]) - want[t][v])) } }
            XCTAssertLessThan(worst, 1e-4)
            // without the adapter the head is the base head
            let base = NaiveGPT(w: w).logits(seq, lora: nil)
            XCTAssertGreaterThan(abs(want[5][3] - base[5][3]) + abs(want[5][4] - base[5][4]), 1e-3, "the head update changes the logits")
            let grads = try Gradients(adapter: ad)
            XCTAssertNotNil(grads["lm_head.lora_B.weight"])
            let targets = [(0, 1, Int32(5)), (0, 3, Int32(17)), (0, 5, Int32(40))]
            let (_, loss) = try ourGradients(tf, rowsTokens: [seq], caches: [tf.makeCache(capacity: 6)], adapter: ad,
                                             grads: grads, targets: targets.map { ($0.0, $0.1, $0.2) })
            let nt = targets.map { Target(seq: 0, pos: $0.1, token: $0.2) }
            XCTAssertEqual(loss, Self.naiveLoss(w, ad, [seq], nt), accuracy: 1e-4)
            let rep = check(grads) { Self.naiveLoss(w, ad, [seq], nt) }
            print("LoRA on lm_head grad check \(arch): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
        }
    }

    func testFullParameterGradientsSingleSequence() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let base = try ModelWeights.random(config: .tiny(arch, layers: 1), seed: 31, std: 0.2)
            let w = try base.trainableCopy()
            let tf = Transformer(weights: w, threads: 2)
            let seq = randomTokens(6, vocab: w.config.vocabSize, seed: 32)
            let grads = try Gradients(model: w)
            let targets = [(0, 1, Int32(3)), (0, 3, Int32(60)), (0, 5, Int32(11))]
            _ = try ourGradients(tf, rowsTokens: [seq], caches: [tf.makeCache(capacity: 6)], adapter: nil,
                                 grads: grads, targets: targets.map { ($0.0, $0.1, $0.2) })
            let nt = targets.map { Target(seq: 0, pos: $0.1, token: $0.2) }
            let rep = check(grads, perTensor: 4) { Self.naiveLoss(w, nil, [seq], nt) }
            print("full grad check \(arch): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
        }
    }

    /// A prompt computed once by its own traced forward, two rows extending it (one traced forward, batched),
    /// loss on both the rows and the prompt; then a second chunk appended to the rows' own caches.
    func testLoRAGradientsWithSharedPrefixAndChunks() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let w = try ModelWeights.random(config: .tiny(arch), seed: 41, std: 0.2)
            let tf = Transformer(weights: w, threads: 2)
            let ad = try randomAdapter(w)
            let V = w.config.vocabSize
            let prompt = randomTokens(5, vocab: V, seed: 42)
            let a1 = randomTokens(3, vocab: V, seed: 43), b1 = randomTokens(3, vocab: V, seed: 44)
            let a2 = randomTokens(2, vocab: V, seed: 45), b2 = randomTokens(2, vocab: V, seed: 46)
            let grads = try Gradients(adapter: ad)
            let kv = KVGradients()
            let pre = try tf.makeCache(capacity: 5)
            // forwards in order: prompt, chunk 1 (rows), chunk 2 (rows); backwards in reverse
            let ws = try ForwardWorkspace()
            let tp = try ForwardTrace(), t1 = try ForwardTrace(), t2 = try ForwardTrace()
            let hp = try prompt.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 1, T: 5, caches: [pre], adapter: ad, workspace: ws, trace: tp)
            }
            _ = hp
            let ca = try tf.makeCache(capacity: 5, prefix: pre), cb = try tf.makeCache(capacity: 5, prefix: pre)
            let h1 = try (a1 + b1).withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 2, T: 3, caches: [ca, cb], adapter: ad, workspace: ws, trace: t1)
            }
            _ = h1
            let h2 = try (a2 + b2).withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: 2, T: 2, caches: [ca, cb], adapter: ad, workspace: ws, trace: t2)
            }
            _ = h2
            let E = w.config.nEmbd
            let bw = try BackwardWorkspace()
            var loss = 0.0
            func back(_ tr: ForwardTrace, _ hidden: UnsafePointer<Float>, _ targets: [(Int, Int32)]) throws {
                let head = try TokenLogProbs(transformer: tf)
                try head.forward(hidden: hidden, hiddenCount: tr.rows * tr.T, rows: targets.map { $0.0 })
                for (i, t) in targets.enumerated() { loss -= Double(try head.logProb(i, t.1)) }
                var dH = [Float](repeating: 0, count: tr.rows * tr.T * E)
                try dH.withUnsafeMutableBufferPointer { b in
                    try head.backward(entries: targets.enumerated().map { ($0.offset, $0.element.1, -1) },
                                      dHidden: b.baseAddress!, gradients: nil)
                    try tf.backward(trace: tr, dHidden: b.baseAddress!, gradients: grads, kvGradients: kv, workspace: bw)
                }
            }
            // chunk 2: row 0 position 1 → token 9; row 1 position 0 → token 30
            try back(t2, t2.hiddenStates!, [(0 * 2 + 1, 9), (1 * 2 + 0, 30)])
            // chunk 1: row 0 pos 0, row 1 pos 2
            try back(t1, t1.hiddenStates!, [(0, 12), (1 * 3 + 2, 50)])
            // prompt: pos 3
            try back(tp, tp.hiddenStates!, [(3, 77)])
            let seqA = prompt + a1 + a2, seqB = prompt + b1 + b2
            let nt = [Target(seq: 0, pos: 5 + 3 + 1, token: 9), Target(seq: 1, pos: 5 + 3 + 0, token: 30),
                      Target(seq: 0, pos: 5 + 0, token: 12), Target(seq: 1, pos: 5 + 2, token: 50),
                      Target(seq: 0, pos: 3, token: 77)]
            XCTAssertEqual(loss, Self.naiveLoss(w, ad, [seqA, seqB], nt), accuracy: 1e-4)
            let rep = check(grads) { Self.naiveLoss(w, ad, [seqA, seqB], nt) }
            print("LoRA grad check with prefix + chunks \(arch): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
        }
    }

    func testGradientsWithLeftPadding() throws {
        for arch in [Architecture.gpt2, .gptj] {
            let base = try ModelWeights.random(config: .tiny(arch, layers: 1), seed: 51, std: 0.2)
            let w = try base.trainableCopy()
            let tf = Transformer(weights: w, threads: 2)
            let ad = try randomAdapter(w)
            let V = w.config.vocabSize
            let long = randomTokens(7, vocab: V, seed: 52), short = randomTokens(4, vocab: V, seed: 53)
            for mode in ["lora", "full"] {
                let grads = mode == "lora" ? try Gradients(adapter: ad) : try Gradients(model: w)
                let adapter: LoRAAdapter? = mode == "lora" ? ad : nil
                let caches = [try tf.makeCache(capacity: 7), try tf.makeCache(capacity: 7)]
                // LoRA: the padded slot 1 of row 1 also gets a "loss": it must not influence the body's gradients
                // (in full mode it would legitimately move the head, so it is left out there)
                var targets: [(row: Int, t: Int, token: Int32)] = [(0, 2, 8), (0, 6, 19), (1, 3, 25), (1, 6, 61)]
                if mode == "lora" { targets.append((1, 1, 33)) }
                _ = try ourGradients(tf, rowsTokens: [long, [0, 0, 0] + short], padding: [0, 3], caches: caches,
                                     adapter: adapter, grads: grads, targets: targets)
                let nt = [Target(seq: 0, pos: 2, token: 8), Target(seq: 0, pos: 6, token: 19),
                          Target(seq: 1, pos: 0, token: 25), Target(seq: 1, pos: 3, token: 61)]
                let rep = check(grads, perTensor: 4) { Self.naiveLoss(w, adapter, [long, short], nt) }
                print("\(mode) grad check with left padding \(arch): worst tensor error \(rep.worstTensorError) (\(rep.worstName)), \(rep.checked) entries")
            }
        }
    }

    /// The GFlowNet layout: a prompt computed once (its outputs carry no loss: dHidden nil), many rows extending it
    /// in one batched forward; the prompt's LoRA gradients come only through its keys and values.
    func testPromptWithoutLossGetsGradientsThroughKeysAndValues() throws {
        let w = try ModelWeights.random(config: .tiny(.gptj), seed: 61, std: 0.2)
        let tf = Transformer(weights: w, threads: 2)
        let ad = try randomAdapter(w, targets: ["k_proj", "v_proj", "fc_in"])
        let V = w.config.vocabSize
        let prompt = randomTokens(4, vocab: V, seed: 62)
        let conts = (0..<3).map { randomTokens(3, vocab: V, seed: 63 + UInt64($0)) }
        let grads = try Gradients(adapter: ad)
        let kv = KVGradients()
        let ws = try ForwardWorkspace()
        let pre = try tf.makeCache(capacity: 4)
        let tp = try ForwardTrace()
        _ = try prompt.withUnsafeBufferPointer { try tf.forward(tokens: $0, rows: 1, T: 4, caches: [pre], adapter: ad, workspace: ws, trace: tp) }
        let caches = try (0..<3).map { _ in try tf.makeCache(capacity: 3, prefix: pre) }
        let targets: [(row: Int, t: Int, token: Int32)] = [(0, 0, 5), (1, 2, 44), (2, 1, 70), (2, 2, 3)]
        _ = try ourGradients(tf, rowsTokens: conts, caches: caches, adapter: ad, grads: grads, targets: targets, kv: kv)
        XCTAssertTrue(kv.has(pre))
        try tf.backward(trace: tp, dHidden: nil, gradients: grads, kvGradients: kv, workspace: BackwardWorkspace())
        let nt = targets.map { Target(seq: $0.row, pos: 4 + $0.t, token: $0.token) }
        let seqs = conts.map { prompt + $0 }
        let rep = check(grads) { Self.naiveLoss(w, ad, seqs, nt) }
        print("LoRA grad check, prompt without loss (nil dHidden), 3 rows: worst tensor error \(rep.worstTensorError) (\(rep.worstName))")
    }
}
