extension ModelWeights {
    /// A model with random weights (normal(0, std) matrices and embeddings, small random biases and LayerNorm
    /// parameters around 1/0), for tests and benchmarks. Deterministic for a seed.
    public static func random(config: ModelConfig, seed: UInt64 = 0, std: Float = 0.02) throws(GFNError) -> ModelWeights {
        try config.validate()
        var rng = RNG(seed: seed)
        func tensor(_ shape: [Int], _ s: Float, mean: Float = 0) throws(GFNError) -> Tensor {
            let t = try Tensor(zeros: shape)
            let p = t.pointer
            for i in 0..<t.count { p[i] = mean + s * Float(rng.normal()) }
            return t
        }
        let E = config.nEmbd, I = config.nInner, V = config.vocabSize
        func ln() throws(GFNError) -> LayerNormWeights {
            LayerNormWeights(gamma: try tensor([E], 0.1, mean: 1), beta: try tensor([E], 0.1))
        }
        func linear(_ name: String, _ i: Int, _ o: Int, bias: Bool) throws(GFNError) -> Linear {
            try Linear(name: name, weight: try tensor([i, o], std), bias: bias ? try tensor([o], 0.1) : nil)
        }
        var blocks: [BlockWeights] = []
        for l in 0..<config.nLayer {
            let p = "transformer.h.\(l)."
            switch config.arch {
            case .gpt2:
                blocks.append(BlockWeights(
                    ln1: try ln(), ln2: try ln(),
                    qkv: .fused(try linear(p + "attn.c_attn", E, 3 * E, bias: true)),
                    attnOut: try linear(p + "attn.c_proj", E, E, bias: true),
                    fcIn: try linear(p + "mlp.c_fc", E, I, bias: true),
                    fcOut: try linear(p + "mlp.c_proj", I, E, bias: true)))
            case .gptj:
                blocks.append(BlockWeights(
                    ln1: try ln(), ln2: nil,
                    qkv: .separate(q: try linear(p + "attn.q_proj", E, E, bias: false),
                                   k: try linear(p + "attn.k_proj", E, E, bias: false),
                                   v: try linear(p + "attn.v_proj", E, E, bias: false)),
                    attnOut: try linear(p + "attn.out_proj", E, E, bias: false),
                    fcIn: try linear(p + "mlp.fc_in", E, I, bias: true),
                    fcOut: try linear(p + "mlp.fc_out", I, E, bias: true)))
            }
        }
        let wte = try tensor([V, E], std)
        let wpe = config.arch == .gpt2 ? try tensor([config.nPositions, E], std) : nil
        let head: HeadWeights = config.tiedHead
            ? .tied : .linear(try linear("lm_head", E, V, bias: config.headBias))
        return try ModelWeights(config: config, wte: wte, wpe: wpe, blocks: blocks, lnF: try ln(), head: head)
    }
}

extension ModelConfig {
    /// A tiny configuration for tests.
    public static func tiny(_ arch: Architecture, vocab: Int = 97, embd: Int = 32, layers: Int = 2, heads: Int = 4,
                            positions: Int = 64) -> ModelConfig {
        ModelConfig(arch: arch, nLayer: layers, nHead: heads, headDim: embd / heads, nEmbd: embd, nInner: 4 * embd,
                    vocabSize: vocab, nPositions: positions, layerNormEps: 1e-5,
                    rotaryDim: arch == .gptj ? max(2, (embd / heads) / 2) : 0, rotaryBase: 10000,
                    activation: .geluNew, tiedHead: arch == .gpt2, headBias: arch == .gptj)
    }
}
