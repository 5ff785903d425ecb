import Foundation
import XCTest
@testable import GFNLM

final class SFTTests: XCTestCase {
    func dataset(vocab: Int) -> [SFTExample] {
        var rng = RNG(seed: 77)
        func toks(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.below(vocab)) } }
        return [SFTExample(context: toks(3), target: toks(4)), SFTExample(context: toks(1), target: toks(6)),
                SFTExample(context: toks(5), target: toks(2)), SFTExample(context: toks(2), target: toks(5)),
                SFTExample(context: toks(4), target: toks(3)), SFTExample(context: toks(6), target: toks(1))]
    }

    func testLossMatchesNaiveReferenceWithMaskedContextAndPadding() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 3, std: 0.2)
        let tf = Transformer(weights: w, threads: 2)
        let data = dataset(vocab: w.config.vocabSize)
        let trainer = try SFTTrainer(transformer: tf, adapter: nil)
        let ev = try trainer.evaluate(data)
        var nll = 0.0, count = 0
        for ex in data {
            let seq = ex.context + ex.target
            let logits = NaiveGPT(w: w).logits(seq)
            for j in ex.context.count..<seq.count {
                nll -= BackwardTests.logSoftmax(logits[j - 1])[Int(seq[j])]
                count += 1
            }
        }
        XCTAssertEqual(ev.tokens, count)
        XCTAssertEqual(ev.loss, nll / Double(count), accuracy: 1e-5)
        XCTAssertEqual(ev.perplexity, exp(nll / Double(count)), accuracy: 1e-3)
        XCTAssertThrowsError(try trainer.evaluate([SFTExample(context: [], target: [1])]))
        XCTAssertThrowsError(try trainer.evaluate([SFTExample(context: [1], target: [])]))
        XCTAssertThrowsError(try trainer.evaluate([SFTExample(context: [1], target: [1000])]))
        XCTAssertThrowsError(try trainer.evaluate([]))
    }

    /// The padded batch's gradient equals the sum of per-example gradients, and accumulating micro-batches then
    /// stepping equals one step on the whole batch (token-mean loss in both).
    func testPaddingInvarianceAndAccumulation() throws {
        let w = try ModelWeights.random(config: .tiny(.gptj), seed: 4, std: 0.2)
        let tf = Transformer(weights: w, threads: 2)
        let data = dataset(vocab: w.config.vocabSize)
        let cfg = LoRAConfig(r: 4, alpha: 8, targets: ["q_proj", "v_proj", "fc_in"])
        func adapter() throws -> LoRAAdapter {
            let a = try LoRAAdapter(model: w, config: cfg, seed: 1)
            var rng = RNG(seed: 2)
            for f in a.moduleNames.compactMap({ a.factors(for: $0) }) { for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.1 } }
            return a
        }
        let a1 = try adapter(), a2 = try adapter()
        let t1 = try SFTTrainer(transformer: tf, adapter: a1, hyper: .init(lr: 1e-2))
        let t2 = try SFTTrainer(transformer: tf, adapter: a2, hyper: .init(lr: 1e-2))
        try t1.accumulate(data)
        for ex in data { try t2.accumulate([ex]) }
        for (p, q) in zip(t1.gradients.parameters, t2.gradients.parameters) {
            let d = zip(p.grad.array, q.grad.array).map { abs($0 - $1) }.max() ?? 0
            let s = q.grad.array.map { abs($0) }.max() ?? 0
            XCTAssertLessThan(d, 1e-4 * max(s, 1), p.name)
        }
        let s1 = try t1.apply(), s2 = try t2.apply()
        XCTAssertEqual(s1.loss, s2.loss, accuracy: 1e-5)
        XCTAssertEqual(s1.tokens, s2.tokens)
        for (p, q) in zip(t1.gradients.parameters, t2.gradients.parameters) {
            let d = zip(p.value.array, q.value.array).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(d, 1e-5, p.name)
        }
    }

    /// The two-way label cross-entropy (`labelCandidates`): the loss is −log p(t) + log(p(a) + p(b)) from the
    /// full-vocabulary log-probabilities (the naive model), and its gradient matches central differences of the
    /// loss in LoRA B entries (float32 forward: step 1e-2, tolerance 2 % of the largest).
    func testLabelCandidatesGiveTheTwoWayCrossEntropy() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 3, std: 0.2)
        let tf = Transformer(weights: w, threads: 2)
        let (a, b): (Int32, Int32) = (5, 9)
        let data = [SFTExample(context: [3, 4, 7], target: [a]), SFTExample(context: [1, 2], target: [b]),
                    SFTExample(context: [8], target: [a])]
        let adapter = try LoRAAdapter(model: w, config: LoRAConfig(r: 2, alpha: 4, targets: ["c_attn"]), seed: 1)
        var rng = RNG(seed: 5)
        for f in adapter.moduleNames.compactMap({ adapter.factors(for: $0) }) {
            for i in 0..<f.b.count { f.b.pointer[i] = Float(rng.normal()) * 0.1 }
        }
        let trainer = try SFTTrainer(transformer: tf, adapter: adapter, hyper: .init(lr: 0))
        trainer.labelCandidates = [a, b]
        var expected = 0.0
        let merged = try adapter.mergedWeights(w)
        for ex in data {
            let lp = BackwardTests.logSoftmax(NaiveGPT(w: merged).logits(ex.context).last!)
            let t = Int(ex.target[0])
            expected += -lp[t] + log(exp(lp[Int(a)]) + exp(lp[Int(b)]))
        }
        expected /= Double(data.count)
        XCTAssertEqual(try trainer.evaluate(data).loss, expected, accuracy: 1e-5)
        // gradient against central differences of the evaluated loss
        try trainer.accumulate(data)
        let scale = 1 / Double(data.count)
        let name = adapter.moduleNames.sorted()[0]
        let f = try XCTUnwrap(adapter.factors(for: name))
        let gB = try XCTUnwrap(trainer.gradients.parameters.first { $0.name == name + ".lora_B.weight" }).grad.array
        let largest = gB.map { abs(Double($0) * scale) }.max() ?? 0
        XCTAssertGreaterThan(largest, 0)
        for i in stride(from: 0, to: f.b.count, by: max(1, f.b.count / 6)) {
            let h: Float = 1e-2
            let v = f.b.pointer[i]
            f.b.pointer[i] = v + h
            let up = try trainer.evaluate(data).loss
            f.b.pointer[i] = v - h
            let down = try trainer.evaluate(data).loss
            f.b.pointer[i] = v
            XCTAssertEqual(Double(gB[i]) * scale, (up - down) / Double(2 * h), accuracy: 0.02 * largest, "B[\(i)]")
        }
        _ = try trainer.apply()
        // a target outside the candidates is refused; no candidates: the full-vocabulary NLL again
        XCTAssertThrowsError(try trainer.evaluate([SFTExample(context: [1], target: [2])]))
        trainer.labelCandidates = []
        XCTAssertNil(trainer.labelCandidates)
        XCTAssertNoThrow(try trainer.evaluate([SFTExample(context: [1], target: [2])]))
    }

    /// Memorisation bound: after 150 steps on six examples, mean target NLL < 0.05 nats (perplexity < 1.06), with
    /// LoRA (r = 8 on every GPT-2 module) and with full-parameter training (measured: 0.003 and 0.0008).
    func testMemorisesSmallDataset() throws {
        // n_embd 64: with a 32-wide frozen tied head some random target tokens cannot become the most likely
        // (LoRA plateaued at 0.37 nats there, full-parameter training reached 0.005).
        let w = try ModelWeights.random(config: .tiny(.gpt2, embd: 64), seed: 5, std: 0.2)
        let tf = Transformer(weights: w, threads: 2)
        let data = dataset(vocab: w.config.vocabSize)
        let before = Array(try w.wte.buffer)
        for mode in ["lora", "full"] {
            let ad = mode == "lora"
                ? try LoRAAdapter(model: w, config: LoRAConfig(r: 8, alpha: 16, targets: ["c_attn", "c_proj", "c_fc"]), seed: 9)
                : nil
            let steps = 150
            let lr = mode == "lora" ? 2e-2 : 5e-3
            let trainer = try SFTTrainer(transformer: tf, adapter: ad, hyper: .init(lr: lr),
                                         schedule: .linearWarmup(warmupSteps: 5))
            let start = try trainer.evaluate(data)
            var last: SFTStats?
            for _ in 0..<steps { last = try trainer.step(data) }
            let end = try trainer.evaluate(data)
            print("SFT \(mode): loss \(start.loss) → \(end.loss) (train-mode last \(last?.loss ?? .nan)), perplexity \(end.perplexity)")
            XCTAssertLessThan(end.loss, 0.05, mode)
            XCTAssertEqual(last?.step, steps)
        }
        XCTAssertEqual(Array(try w.wte.buffer), before, "the base weights are never written")
    }

    /// A NaN in the loss (here from a NaN adapter weight) skips the step: parameters, moments and the step count
    /// are unchanged and the stats say why.
    func testNaNLossSkipsStep() throws {
        let w = try ModelWeights.random(config: .tiny(.gpt2), seed: 6, std: 0.2)
        let tf = Transformer(weights: w, threads: 1)
        let ad = try LoRAAdapter(model: w, config: LoRAConfig(r: 2, targets: ["c_attn"]), seed: 1)
        let t = try SFTTrainer(transformer: tf, adapter: ad, hyper: .init(lr: 1e-2))
        let data = dataset(vocab: w.config.vocabSize)
        XCTAssertTrue(try t.step(data).applied)
        let f = try XCTUnwrap(ad.factors(for: "transformer.h.1.attn.c_attn"))
        f.b.pointer[3] = .nan
        let before = t.optimizer.parameters.map { $0.value.array }
        let moments = t.optimizer.moments.map { Array($0.m) }
        let st = try t.step(data)
        XCTAssertFalse(st.applied)
        XCTAssertTrue(st.loss.isNaN)
        XCTAssertNotNil(st.message)
        XCTAssertEqual(st.step, 1)
        let after = t.optimizer.parameters.map { $0.value.array }
        for (a, b) in zip(after, before) { XCTAssertTrue(zip(a, b).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }) }
        XCTAssertEqual(t.optimizer.moments.map { Array($0.m) }, moments)
        XCTAssertTrue(t.optimizer.parameters.allSatisfy { $0.grad.array.allSatisfy { $0 == 0 } }, "gradients are cleared for the next step")
    }
}
