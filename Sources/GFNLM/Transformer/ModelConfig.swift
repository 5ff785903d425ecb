/// The two supported architectures.
public enum Architecture: String, Sendable, Equatable, Codable {
    /// GPT-2: learned positions, sequential blocks (ln_1 → attn → ln_2 → mlp), fused c_attn, tied head.
    case gpt2
    /// GPT-J: partial interleaved rotary positions, parallel residual (one ln per block), separate q/k/v,
    /// untied head with bias.
    case gptj
}

/// The MLP activation found between fc_in and fc_out.
public enum Activation: String, Sendable, Equatable, Codable {
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), Hugging Face "gelu_new" (GPT-2 and GPT-J).
    case geluNew = "gelu_new"
    /// 0.5·x·(1 + erf(x/√2)), exact GELU.
    case gelu = "gelu"
}

/// Hyper-parameters recovered from the ONNX graph (and, for what the graph lacks, a config.json beside it).
public struct ModelConfig: Sendable, Equatable, Codable {
    public var arch: Architecture
    public var nLayer: Int
    public var nHead: Int
    public var headDim: Int
    public var nEmbd: Int
    /// Width of the MLP hidden layer (4·n_embd for the usual models).
    public var nInner: Int
    /// Rows of the token embedding (GPT-J pads to 50400; the tokenizer may define fewer ids).
    public var vocabSize: Int
    public var nPositions: Int
    public var layerNormEps: Float
    /// GPT-J only: how many dimensions of each head are rotated (0 for GPT-2).
    public var rotaryDim: Int
    /// GPT-J only: rotary base (10000 in every known model).
    public var rotaryBase: Float
    public var activation: Activation
    /// True when the output head reuses the token embedding (GPT-2).
    public var tiedHead: Bool
    /// True when the output head has a bias (GPT-J).
    public var headBias: Bool

    public init(arch: Architecture, nLayer: Int, nHead: Int, headDim: Int, nEmbd: Int, nInner: Int,
                vocabSize: Int, nPositions: Int, layerNormEps: Float, rotaryDim: Int, rotaryBase: Float,
                activation: Activation, tiedHead: Bool, headBias: Bool) {
        self.arch = arch; self.nLayer = nLayer; self.nHead = nHead; self.headDim = headDim; self.nEmbd = nEmbd
        self.nInner = nInner; self.vocabSize = vocabSize; self.nPositions = nPositions
        self.layerNormEps = layerNormEps; self.rotaryDim = rotaryDim; self.rotaryBase = rotaryBase
        self.activation = activation; self.tiedHead = tiedHead; self.headBias = headBias
    }

    /// Checks the internal consistency of the numbers (not the weights).
    public func validate() throws(GFNError) {
        func need(_ ok: Bool, _ what: String) throws(GFNError) {
            if !ok { throw .format("inconsistent model configuration: \(what)") }
        }
        try need(nLayer > 0, "n_layer = \(nLayer)")
        try need(nHead > 0 && headDim > 0, "n_head = \(nHead), head_dim = \(headDim)")
        try need(nHead * headDim == nEmbd, "n_head·head_dim = \(nHead * headDim) ≠ n_embd = \(nEmbd)")
        try need(nInner > 0, "n_inner = \(nInner)")
        try need(vocabSize > 0, "vocab_size = \(vocabSize)")
        try need(nPositions > 0, "n_positions = \(nPositions)")
        try need(layerNormEps > 0 && layerNormEps.isFinite, "layer_norm_epsilon = \(layerNormEps)")
        if arch == .gptj {
            try need(rotaryDim > 0 && rotaryDim <= headDim && rotaryDim % 2 == 0,
                     "rotary_dim = \(rotaryDim) with head_dim = \(headDim)")
            try need(rotaryBase > 1 && rotaryBase.isFinite, "rotary base = \(rotaryBase)")
        }
    }
}
