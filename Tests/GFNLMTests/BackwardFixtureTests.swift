import Foundation
import XCTest
@testable import GFNLM

/// Builds ModelWeights from a Hugging Face state dict (Tests/Fixtures/<model>/hf/weights.safetensors).
enum HFFixture {
    static func dir(_ model: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(model)/hf").path
    }

    static func config(_ model: String) throws -> ModelConfig {
        let j = try JSONValue.parse(contentsOf: dir(model) + "/config.json")
        let gptj = j["model_type"]?.string == "gptj"
        let E = j["n_embd"]?.int ?? 0, H = j["n_head"]?.int ?? 1
        return ModelConfig(arch: gptj ? .gptj : .gpt2, nLayer: j["n_layer"]?.int ?? 0, nHead: H, headDim: E / H,
                           nEmbd: E, nInner: j["n_inner"]?.int ?? 4 * E, vocabSize: j["vocab_size"]?.int ?? 0,
                           nPositions: j["n_positions"]?.int ?? 0,
                           layerNormEps: Float(j["layer_norm_epsilon"]?.double ?? 1e-5),
                           rotaryDim: gptj ? (j["rotary_dim"]?.int ?? 0) : 0, rotaryBase: 10000, activation: .geluNew,
                           tiedHead: !gptj, headBias: gptj)
    }

    /// HF tensor `name` in gfnlm's layout (GPT-J Linear weights [out, in] are transposed to [in, out]).
    static func tensor(_ st: Safetensors, _ name: String, transpose: Bool = false) throws -> Tensor {
        let t = try Tensor(shape: try st.shape(name), values: try st.floats(name))
        return transpose ? try t.transposed2D() : t
    }

    static func weights(_ model: String) throws -> ModelWeights {
        let c = try config(model)
        let st = try Safetensors.load(path: dir(model) + "/weights.safetensors")
        let gptj = c.arch == .gptj
        func lin(_ name: String, bias: Bool) throws -> Linear {
            try Linear(name: name, weight: try tensor(st, name + ".weight", transpose: gptj),
                       bias: bias ? try tensor(st, name + ".bias") : nil)
        }
        func ln(_ name: String) throws -> LayerNormWeights {
            LayerNormWeights(gamma: try tensor(st, name + ".weight"), beta: try tensor(st, name + ".bias"))
        }
        var blocks: [BlockWeights] = []
        for l in 0..<c.nLayer {
            let p = "transformer.h.\(l)."
            if gptj {
                blocks.append(BlockWeights(ln1: try ln(p + "ln_1"), ln2: nil,
                                           qkv: .separate(q: try lin(p + "attn.q_proj", bias: false),
                                                          k: try lin(p + "attn.k_proj", bias: false),
                                                          v: try lin(p + "attn.v_proj", bias: false)),
                                           attnOut: try lin(p + "attn.out_proj", bias: false),
                                           fcIn: try lin(p + "mlp.fc_in", bias: true), fcOut: try lin(p + "mlp.fc_out", bias: true)))
            } else {
                blocks.append(BlockWeights(ln1: try ln(p + "ln_1"), ln2: try ln(p + "ln_2"),
                                           qkv: .fused(try lin(p + "attn.c_attn", bias: true)),
                                           attnOut: try lin(p + "attn.c_proj", bias: true),
                                           fcIn: try lin(p + "mlp.c_fc", bias: true), fcOut: try lin(p + "mlp.c_proj", bias: true)))
            }
        }
        return try ModelWeights(config: c, wte: try tensor(st, "transformer.wte.weight"),
                                wpe: gptj ? nil : try tensor(st, "transformer.wpe.weight"), blocks: blocks,
                                lnF: try ln("transformer.ln_f"), head: gptj ? .linear(try lin("lm_head", bias: true)) : .tied)
    }
}

/// Full-parameter gradients of the HF LM loss against PyTorch's (`grad.*` in hf/reference.safetensors).
final class BackwardFixtureTests: XCTestCase {
    func testFullParameterGradientsMatchPyTorch() throws {
        for model in ["gpt2-tiny", "gptj-tiny"] {
            let w = try HFFixture.weights(model).trainableCopy()
            let ref = try Safetensors.load(path: HFFixture.dir(model) + "/reference.safetensors")
            let ids = try ref.int64s("lm_input_ids").map { Int32($0) }
            let shape = try ref.shape("lm_input_ids")
            let rows = shape[0], T = shape[1]
            let tf = Transformer(weights: w, threads: 2)
            let grads = try Gradients(model: w)
            let trace = try ForwardTrace()
            let caches = try (0..<rows).map { _ in try tf.makeCache(capacity: T) }
            let hidden = try ids.withUnsafeBufferPointer {
                try tf.forward(tokens: $0, rows: rows, T: T, caches: caches, workspace: ForwardWorkspace(), trace: trace)
            }
            // HF labels = input_ids: position t predicts token t+1, mean over rows·(T−1)
            var sel: [Int] = [], toks: [Int32] = []
            for r in 0..<rows { for t in 0..<(T - 1) { sel.append(r * T + t); toks.append(ids[r * T + t + 1]) } }
            let head = try TokenLogProbs(transformer: tf)
            try head.forward(hidden: hidden, hiddenCount: rows * T, rows: sel)
            var loss = 0.0
            for (i, tok) in toks.enumerated() { loss -= Double(try head.logProb(i, tok)) }
            loss /= Double(sel.count)
            XCTAssertEqual(loss, Double(try ref.floats("lm_loss")[0]), accuracy: 1e-5, model)
            var dH = [Float](repeating: 0, count: rows * T * w.config.nEmbd)
            let g = -1 / Float(sel.count)
            try dH.withUnsafeMutableBufferPointer { b in
                try head.backward(entries: toks.enumerated().map { ($0.offset, $0.element, g) }, dHidden: b.baseAddress!,
                                  gradients: grads)
                try tf.backward(trace: trace, dHidden: b.baseAddress!, gradients: grads, workspace: BackwardWorkspace())
            }
            var worst = 0.0, worstName = ""
            var seen = 0
            for p in grads.parameters {
                let key = "grad." + p.name
                guard ref.contains(key) else { XCTFail("\(model): reference has no \(key)"); continue }
                seen += 1
                // GPT-J Linear weights are [out, in] in torch
                let transpose = w.config.arch == .gptj && p.value.rank == 2 && p.name != "transformer.wte.weight"
                let r = try HFFixture.tensor(ref, key, transpose: transpose)
                XCTAssertEqual(r.shape, p.grad.shape, key)
                let a = p.grad.array, b = r.array
                let num = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
                let den = b.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let err = num / max(den, 1e-6)
                XCTAssertLessThanOrEqual(err, 1e-3, "\(model) \(p.name): relative error \(err)")
                if err > worst { worst = err; worstName = p.name }
            }
            XCTAssertEqual(seen, ref.names.filter { $0.hasPrefix("grad.") }.count, "every reference gradient is compared")
            print("PyTorch gradients \(model): \(seen) tensors, worst relative error \(worst) (\(worstName)); loss \(loss)")
        }
    }
}
