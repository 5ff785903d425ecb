import Foundation
import XCTest
@testable import GFNLM

/// `PolicyPass.sample` traces the sampling pass and uses it as the training pass (as the reference does): its
/// trajectories, log-probabilities and gradients must be those of untraced sampling followed by the
/// teacher-forced pass, and with dropout its gradients must be the derivatives of what it returned.
final class TracedSamplingTests: XCTestCase {
    func tinyModel(_ arch: Architecture, vocab: Int = 40, seed: UInt64 = 2) throws -> Model {
        let w = try ModelWeights.random(config: .tiny(arch, vocab: vocab, embd: 32), seed: seed, std: 0.4)
        return Model(transformer: Transformer(weights: w, threads: 1), tokenizer: nil)
    }

    func adapter(_ m: Model, seed: UInt64, dropout: Float = 0) throws -> LoRAAdapter {
        let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 4, alpha: 8, dropout: dropout,
                                                                     targets: ["c_attn", "c_fc", "q_proj", "v_proj", "fc_in", "lm_head"]),
                                seed: seed)
        var rng = RNG(seed: seed &+ 100)
        for name in a.moduleNames {
            guard let f = a.factors(for: name) else { continue }
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.2 }
        }
        return a
    }

    /// Sampled rows at several behaviour temperatures and replayed rows (one empty, one reaching max_len).
    func plans(maxLength: Int) -> [RolloutEngine.RowPlan] {
        var p = (0..<7).map { i in RolloutEngine.RowPlan(temperature: [0.7, 1, 1.8][i % 3], seed: 40 + UInt64(i)) }
        p.append(RolloutEngine.RowPlan(temperature: 1, seed: 1, actions: [5, 6, 7]))
        p.append(RolloutEngine.RowPlan(temperature: 1, seed: 2, actions: []))
        p.append(RolloutEngine.RowPlan(temperature: 1, seed: 3, actions: Array(repeating: 9, count: maxLength)))
        return p
    }

    func randomUpstream(_ lpf: [[Double]], _ lpt: [[Double]], seed: UInt64) -> ([[Double]], [[Double]]) {
        var rng = RNG(seed: seed)
        return (lpf.map { $0.map { _ in rng.normal() } }, lpt.map { $0.map { _ in rng.normal() } })
    }

    func assertSameGradients(_ a: Gradients, _ b: Gradients, file: StaticString = #filePath, line: UInt = #line) {
        for (p, q) in zip(a.parameters, b.parameters) {
            let x = p.grad.array, y = q.grad.array
            let scale = max(1e-3, x.map { abs($0) }.max() ?? 0)
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst / scale, 2e-4, "\(p.name)", file: file, line: line)
        }
    }

    func testTracedSamplingEqualsUntracedSamplingAndTheTeacherForcedPass() throws {
        for arch in [Architecture.gpt2, .gptj] {
            for layout in [TerminalLayout.forcedStop, .nextSentence] {
                let m = try tinyModel(arch)
                let a = try adapter(m, seed: 5)
                var settings = RolloutSettings(termination: 0, maxLength: 5, minLength: 1, layout: layout)
                settings.adjustment = LogitAdjustment(allowed: Array(1...14), disallowedPenalty: -99)
                let engine = try RolloutEngine(model: m, settings: settings)
                let traced = try PolicyPass(engine: engine), forced = try PolicyPass(engine: engine)
                let prompt: [Int32] = [20, 21, 22, 23]
                let plans = plans(maxLength: 5)
                let (trajs, lpf, lpt) = try traced.sample(prompt: prompt, rows: plans, adapter: a)
                let untraced = try engine.generate(prompt: prompt, rows: plans, adapter: a)
                XCTAssertEqual(trajs, untraced, "\(arch) \(layout): tracing does not change what is sampled")
                XCTAssertTrue(trajs.contains { $0.truncated } && trajs.contains { !$0.truncated && $0.n > 0 })
                let (lpf2, lpt2) = try forced.forward(prompt: prompt, trajectories: trajs, adapter: a)
                for b in trajs.indices {
                    XCTAssertEqual(lpf[b].count, lpf2[b].count)
                    XCTAssertEqual(lpt[b].count, lpt2[b].count)
                    for (x, y) in zip(lpf[b], lpf2[b]) { XCTAssertEqual(x, y, accuracy: 1e-4, "\(arch) \(layout) row \(b)") }
                    for (x, y) in zip(lpt[b], lpt2[b]) { XCTAssertEqual(x, y, accuracy: 1e-4, "\(arch) \(layout) row \(b)") }
                }
                if layout == .nextSentence, let b = trajs.firstIndex(where: { $0.truncated }) {
                    XCTAssertLessThan(lpt[b][trajs[b].n], 0, "layout B reads the real log q(⊤|s_max)")
                }
                let (dF, dT) = randomUpstream(lpf, lpt, seed: 7)
                let g1 = try Gradients(adapter: a), g2 = try Gradients(adapter: a)
                try traced.backward(dLogPF: dF, dLogPT: dT, gradients: g1)
                try forced.backward(dLogPF: dF, dLogPT: dT, gradients: g2)
                XCTAssertTrue(g1.parameters.contains { $0.grad.array.contains { $0 != 0 } })
                assertSameGradients(g1, g2)
            }
        }
    }

    /// Tool output makes decoding groups of several tokens; the traced pass must follow them.
    func testTracedSamplingWithToolOutput() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
        let tok = try Tokenizer.load(path: fixtures.appendingPathComponent("tokenizer").path)
        let cfg = ModelConfig.tiny(.gpt2, vocab: 50257, embd: 16, layers: 1, heads: 2, positions: 96)
        let m = Model(transformer: Transformer(weights: try ModelWeights.random(config: cfg, seed: 1), threads: 1), tokenizer: tok)
        let a = try LoRAAdapter(model: m.weights, config: LoRAConfig(r: 2, alpha: 4, targets: ["c_attn"]), seed: 3)
        for f in a.factors.values { for i in 0..<f.b.count { f.b.pointer[i] = 0.1 * Float(i % 7) - 0.3 } }
        let engine = try RolloutEngine(model: m, settings: RolloutSettings(termination: 50256, maxLength: 12, tool: Calculator()))
        let x = tok.encode("Question: 6 - 0 - 4 - 8 = ? Answer:")
        var plans = [RolloutEngine.RowPlan(temperature: 1, seed: 0, actions: tok.encode("6 - 0 =, 6 - 4 =")),
                     RolloutEngine.RowPlan(temperature: 1, seed: 0, actions: tok.encode(" 9 - 4 = 5"))]
        plans.append(RolloutEngine.RowPlan(temperature: 1, seed: 9))
        let traced = try PolicyPass(engine: engine), forced = try PolicyPass(engine: engine)
        let (trajs, lpf, lpt) = try traced.sample(prompt: x, rows: plans, adapter: a)
        XCTAssertGreaterThan(trajs[0].state.count, trajs[0].actions.count, "the calculator inserted tokens")
        let (lpf2, lpt2) = try forced.forward(prompt: x, trajectories: trajs, adapter: a)
        for (x, y) in zip(lpf.joined(), lpf2.joined()) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        for (x, y) in zip(lpt.joined(), lpt2.joined()) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        let (dF, dT) = randomUpstream(lpf, lpt, seed: 8)
        let g1 = try Gradients(adapter: a), g2 = try Gradients(adapter: a)
        try traced.backward(dLogPF: dF, dLogPT: dT, gradients: g1)
        try forced.backward(dLogPF: dF, dLogPT: dT, gradients: g2)
        assertSameGradients(g1, g2)
    }

    /// With LoRA dropout the traced sampling pass differs from any later pass, so its gradient is checked
    /// against central differences of its own output (replayed rows: the same actions at every probe; the
    /// dropout masks are fixed by the seed).
    func testTracedSamplingGradientWithDropoutMatchesFiniteDifferences() throws {
        let m = try tinyModel(.gpt2, vocab: 24)
        let a = try adapter(m, seed: 6, dropout: 0.3)
        let engine = try RolloutEngine(model: m, settings: RolloutSettings(termination: 0, maxLength: 4))
        let pass = try PolicyPass(engine: engine)
        pass.dropoutSeed = 77
        let prompt: [Int32] = [3, 4, 5]
        let plans = [[1, 2, 3], [7], [], [9, 9, 9, 9], [4, 11]].enumerated().map { i, acts in
            RolloutEngine.RowPlan(temperature: 1, seed: UInt64(i), actions: acts.map(Int32.init))
        }
        let (_, lpf0, lpt0) = try pass.sample(prompt: prompt, rows: plans, adapter: a)
        let (wF, wT) = randomUpstream(lpf0, lpt0, seed: 9)
        func loss() throws -> Double {
            let (_, lpf, lpt) = try pass.sample(prompt: prompt, rows: plans, adapter: a)
            var s = 0.0
            for b in lpf.indices {
                for (x, w) in zip(lpf[b], wF[b]) { s += x * w }
                for (x, w) in zip(lpt[b], wT[b]) { s += x * w }
            }
            return s
        }
        let grads = try Gradients(adapter: a)
        _ = try loss()
        try pass.backward(dLogPF: wF, dLogPT: wT, gradients: grads)
        // dropout changes the value (the masks are really applied)
        pass.dropoutSeed = nil
        let (_, lpfNoDrop, _) = try pass.sample(prompt: prompt, rows: plans, adapter: a)
        XCTAssertNotEqual(lpfNoDrop, lpf0)
        pass.dropoutSeed = 77
        var checked = 0
        for p in grads.parameters {
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 4)) {
                let fd = try centralDifference(p, i, h: 2e-3, loss)
                XCTAssertEqual(Double(p.grad.pointer[i]), fd, accuracy: 2e-2 * max(1, abs(fd)), "\(p.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 20)
    }

    /// A whole optimiser step (several micro-batches of one prompt, on-policy, tempered and replayed rows, SubTB)
    /// gives the same trajectories, loss and updated adapter whether the sampling pass is traced or the
    /// log-probabilities come from a teacher-forced pass.
    func testTrainerStepTracedEqualsTeacherForced() throws {
        for arch in [Architecture.gpt2, .gptj] {
            func run(tracedRows: Int) throws -> ([GFlowNetStepStats], [Float]) {
                let m = try tinyModel(arch)
                let a = try adapter(m, seed: 5)
                var settings = RolloutSettings(termination: 0, maxLength: 5, minLength: 1)
                settings.adjustment = LogitAdjustment(allowed: Array(1...14), disallowedPenalty: -99)
                let reward = RandomIntegerReward(numberTokens: Set([3, 4, 5, 6]), termination: 0)
                var cfg = GFlowNetConfig()
                cfg.batchSize = 6
                cfg.gradAccumulation = 3
                cfg.learningRate = 1e-2
                cfg.tracedSamplingRows = tracedRows
                cfg.seed = 3
                let tr = try GFlowNetTrainer(model: m, adapter: a, reward: reward, prompts: [PromptSpec(x: [20, 21, 22])],
                                             rollout: settings, config: cfg)
                let params = { a.moduleNames.flatMap { n in (a.factors(for: n)?.a.array ?? []) + (a.factors(for: n)?.b.array ?? []) } }
                let before = params()
                let stats = try (0..<4).map { _ throws(GFNError) in try tr.trainStep() }
                XCTAssertNotEqual(params(), before, "training changed the adapter")
                return (stats, params())
            }
            let (s1, p1) = try run(tracedRows: 0)
            let (s2, p2) = try run(tracedRows: .max)
            for (x, y) in zip(s1, s2) {
                XCTAssertEqual(x.trajectories, y.trajectories)
                XCTAssertEqual(x.meanLength, y.meanLength, "\(arch): the same trajectories")
                XCTAssertEqual(x.meanLogR, y.meanLogR)
                XCTAssertEqual(x.loss, y.loss, accuracy: 1e-4 * max(1, abs(x.loss)), "\(arch)")
            }
            XCTAssertTrue(s1.contains { $0.replayBatches > 0 } && s1.contains { $0.temperedBatches > 0 })
            let worst = zip(p1, p2).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-4, "\(arch): the same updates")
        }
    }

    /// A tiny model for comparing gradients: trainable weights (full-parameter) or a LoRA adapter with dropout.
    func gradientSetup(_ arch: Architecture, lora: Bool) throws -> (ModelWeights, Transformer, LoRAAdapter?) {
        let base = try ModelWeights.random(config: .tiny(arch, vocab: 40, embd: 32), seed: 4, std: 0.4)
        let w = lora ? base : try base.trainableCopy()
        let tf = Transformer(weights: w, threads: 1)
        return (w, tf, lora ? try adapter(Model(transformer: tf, tokenizer: nil), seed: 8, dropout: 0.2) : nil)
    }

    /// `backward(traces:)` (all traces through the layers in lockstep) = one `backward(trace:)` per trace in
    /// reverse order with one KVGradients: full-parameter gradients (every weight, embeddings included) and LoRA
    /// with dropout, for a prompt and two continuations of 1 and 2 tokens on separate rows.
    func testLockstepBackwardEqualsOneTraceAtATime() throws {
        for arch in [Architecture.gpt2, .gptj] {
            for lora in [false, true] {
                let (w, tf, a) = try gradientSetup(arch, lora: lora)
                func run(lockstep: Bool) throws -> [[Float]] {
                    let grads = lora ? try Gradients(adapter: a!) : try Gradients(model: w)
                    let ws = try ForwardWorkspace()
                    let traces = try (0..<3).map { _ throws(GFNError) in try ForwardTrace() }
                    for (i, t) in traces.enumerated() { t.dropoutRNG = RNG(seed: 50 + UInt64(i)) }
                    let prompt = try tf.makeCache(capacity: 4)
                    _ = try [Int32(5), 6, 7, 8].withUnsafeBufferPointer { (tb) throws(GFNError) in
                        try tf.forward(tokens: tb, rows: 1, T: 4, caches: [prompt], adapter: a, workspace: ws, trace: traces[0])
                    }
                    let rows = try (0..<3).map { _ throws(GFNError) in try tf.makeCache(capacity: 3, prefix: prompt) }
                    _ = try [Int32(9), 10, 11].withUnsafeBufferPointer { (tb) throws(GFNError) in
                        try tf.forward(tokens: tb, rows: 3, T: 1, caches: rows, adapter: a, workspace: ws, trace: traces[1])
                    }
                    _ = try [Int32(12), 13, 14, 15].withUnsafeBufferPointer { (tb) throws(GFNError) in
                        try tf.forward(tokens: tb, rows: 2, T: 2, caches: [rows[0], rows[2]], adapter: a, workspace: ws,
                                       trace: traces[2])
                    }
                    var rng = RNG(seed: 99)
                    let d = traces.map { t in (0..<(t.rows * t.T * 32)).map { _ in Float(rng.normal()) } }
                    let kv = KVGradients(), bws = try BackwardWorkspace()
                    try d[0].withUnsafeBufferPointer { d0 in
                        try d[1].withUnsafeBufferPointer { d1 in
                            try d[2].withUnsafeBufferPointer { d2 in
                                let ds = [d0.baseAddress, d1.baseAddress, d2.baseAddress]
                                if lockstep {
                                    try tf.backward(traces: traces, dHidden: ds, gradients: grads, kvGradients: kv, workspace: bws)
                                } else {
                                    for i in [2, 1, 0] {
                                        try tf.backward(trace: traces[i], dHidden: ds[i], gradients: grads, kvGradients: kv,
                                                        workspace: bws)
                                    }
                                }
                            }
                        }
                    }
                    return grads.parameters.map { $0.grad.array }
                }
                let one = try run(lockstep: false), all = try run(lockstep: true)
                XCTAssertEqual(one.count, all.count)
                var nonzero = 0
                for (x, y) in zip(one, all) {
                    let scale = max(1e-3, x.map { abs($0) }.max() ?? 0)
                    let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThan(worst / scale, 1e-5, "\(arch) lora=\(lora)")
                    if x.contains(where: { $0 != 0 }) { nonzero += 1 }
                }
                XCTAssertGreaterThan(nonzero, one.count / 2, "\(arch) lora=\(lora): gradients reach most tensors")
            }
        }
    }

    /// Several heads back-propagated in one product = one at a time: hidden-state gradients, the head's (tied
    /// embedding's) full-parameter gradient, and the head's LoRA branch with dropout.
    func testStackedHeadBackwardEqualsOneHeadAtATime() throws {
        for arch in [Architecture.gpt2, .gptj] {
            for lora in [false, true] {
                let (w, tf, a) = try gradientSetup(arch, lora: lora)
                var rng = RNG(seed: 5)
                let hidden = (0..<(7 * 32)).map { _ in Float(rng.normal()) }
                let picks: [[Int]] = [[0, 3], [], [1, 2, 6], [5]]
                let entries = picks.map { rows in rows.indices.flatMap { i in
                    [(index: i, token: Int32(i + 1), grad: Float(0.5)), (index: i, token: Int32(7), grad: Float(-0.25))] } }
                func run(stacked: Bool) throws -> ([Float], [[Float]]) {
                    let grads = lora ? try Gradients(adapter: a!) : try Gradients(model: w)
                    let heads = try picks.map { _ throws(GFNError) in try TokenLogProbs(transformer: tf) }
                    for (i, h) in heads.enumerated() {
                        h.dropoutRNG = RNG(seed: 30 + UInt64(i))
                        try hidden.withUnsafeBufferPointer { (hb) throws(GFNError) in
                            _ = try h.forward(hidden: hb.baseAddress!, hiddenCount: 7, rows: picks[i], adapter: a)
                        }
                    }
                    var out = [Float](repeating: .nan, count: picks.count * 7 * 32)
                    try out.withUnsafeMutableBufferPointer { (ob) throws(GFNError) in
                        let parts = picks.indices.map { ob.baseAddress! + $0 * 7 * 32 }
                        if stacked {
                            try TokenLogProbs.backward(heads: heads, entries: entries, dHidden: parts, gradients: grads,
                                                       scratch: Arena())
                        } else {
                            for i in heads.indices { try heads[i].backward(entries: entries[i], dHidden: parts[i], gradients: grads) }
                        }
                    }
                    return (out, grads.parameters.map { $0.grad.array })
                }
                let (h1, g1) = try run(stacked: false), (h2, g2) = try run(stacked: true)
                XCTAssertFalse(h1.contains { $0.isNaN })
                for (x, y) in zip(h1, h2) { XCTAssertEqual(x, y, accuracy: 1e-5, "\(arch) lora=\(lora)") }
                var nonzero = 0
                for (x, y) in zip(g1, g2) {
                    for (u, v) in zip(x, y) { XCTAssertEqual(u, v, accuracy: 1e-5, "\(arch) lora=\(lora)") }
                    if x.contains(where: { $0 != 0 }) { nonzero += 1 }
                }
                XCTAssertGreaterThan(nonzero, 0)
            }
        }
    }
}
