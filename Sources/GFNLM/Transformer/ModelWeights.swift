/// A linear map y = x·W + b with W stored [in, out] (the layout of GPT-2's Conv1D and of every MatMul constant
/// in the ONNX exports). `name` is the Hugging Face module path (e.g. "transformer.h.0.attn.c_attn"), which LoRA
/// targets and PEFT adapter keys use.
public struct Linear: Sendable {
    public let name: String
    public let weight: Tensor
    public let bias: Tensor?

    public init(name: String, weight: Tensor, bias: Tensor?) throws(GFNError) {
        guard weight.rank == 2 else { throw .format("\(name): weight must be 2-D, got \(weight.shape)") }
        if let b = bias, b.shape != [weight.shape[1]] {
            throw .format("\(name): bias shape \(b.shape) does not match weight \(weight.shape)")
        }
        self.name = name
        self.weight = weight
        self.bias = bias
    }

    public var inFeatures: Int { weight.shape[0] }
    public var outFeatures: Int { weight.shape[1] }
}

public struct LayerNormWeights: Sendable {
    public let gamma: Tensor
    public let beta: Tensor
    public init(gamma: Tensor, beta: Tensor) {
        self.gamma = gamma
        self.beta = beta
    }
}

/// The attention input projection: GPT-2's fused c_attn ([E, 3E], output q | k | v) or GPT-J's q_proj, k_proj,
/// v_proj ([E, E] each, no bias).
public enum QKVProjection: Sendable {
    case fused(Linear)
    case separate(q: Linear, k: Linear, v: Linear)

    public var linears: [Linear] {
        switch self {
        case .fused(let l): return [l]
        case .separate(let q, let k, let v): return [q, k, v]
        }
    }
}

public struct BlockWeights: Sendable {
    public let ln1: LayerNormWeights
    /// nil for GPT-J's parallel block (attention and MLP both read ln_1's output).
    public let ln2: LayerNormWeights?
    public let qkv: QKVProjection
    /// attn.c_proj (GPT-2, with bias) or attn.out_proj (GPT-J, no bias).
    public let attnOut: Linear
    /// mlp.c_fc (GPT-2) or mlp.fc_in (GPT-J): [E, n_inner].
    public let fcIn: Linear
    /// mlp.c_proj (GPT-2) or mlp.fc_out (GPT-J): [n_inner, E].
    public let fcOut: Linear

    public init(ln1: LayerNormWeights, ln2: LayerNormWeights?, qkv: QKVProjection, attnOut: Linear,
                fcIn: Linear, fcOut: Linear) {
        self.ln1 = ln1; self.ln2 = ln2; self.qkv = qkv; self.attnOut = attnOut; self.fcIn = fcIn; self.fcOut = fcOut
    }

    public var linears: [Linear] { qkv.linears + [attnOut, fcIn, fcOut] }
}

/// The output head: the transposed token embedding (tied, GPT-2) or its own linear map [E, V] (GPT-J, with bias).
public enum HeadWeights: Sendable {
    case tied
    case linear(Linear)
}

/// All weights of a model, immutable after loading and shared by every thread. Weights that several roles share
/// in the file (deduplicated initializers) may share storage here too: never write into a loaded model's tensors;
/// make a deep copy (`deepCopy()`) for full-parameter training.
public final class ModelWeights: @unchecked Sendable {
    public let config: ModelConfig
    /// Token embedding [V, E].
    public let wte: Tensor
    /// Learned positions [n_positions, E] (GPT-2), nil for GPT-J.
    public let wpe: Tensor?
    public let blocks: [BlockWeights]
    public let lnF: LayerNormWeights
    public let head: HeadWeights
    /// Objects that own borrowed memory (parsed ONNX file, mmapped data files); kept alive with the weights.
    public let keepAlive: [AnyObject]
    /// Where each weight lives in the ONNX file the weights were loaded from (nil for weights made otherwise,
    /// e.g. copies); `ONNXExporter` writes changed weights back through it.
    public let onnxSource: ONNXWeightSource?

    public init(config: ModelConfig, wte: Tensor, wpe: Tensor?, blocks: [BlockWeights], lnF: LayerNormWeights,
                head: HeadWeights, keepAlive: [AnyObject] = [], onnxSource: ONNXWeightSource? = nil) throws(GFNError) {
        self.config = config; self.wte = wte; self.wpe = wpe; self.blocks = blocks; self.lnF = lnF
        self.head = head; self.keepAlive = keepAlive; self.onnxSource = onnxSource
        try validate()
    }

    /// Every linear map, in layer order (then the head when untied).
    public var linears: [Linear] {
        var out = blocks.flatMap { $0.linears }
        if case .linear(let h) = head { out.append(h) }
        return out
    }

    /// Checks every shape against the configuration.
    public func validate() throws(GFNError) {
        let c = config
        try c.validate()
        let E = c.nEmbd, V = c.vocabSize, I = c.nInner
        func need(_ t: Tensor, _ shape: [Int], _ what: String) throws(GFNError) {
            if t.shape != shape { throw .format("\(what): expected shape \(shape), found \(t.shape)") }
        }
        func needLinear(_ l: Linear, _ i: Int, _ o: Int, bias: Bool?) throws(GFNError) {
            try need(l.weight, [i, o], "\(l.name).weight")
            if let bias {
                if bias && l.bias == nil { throw .format("\(l.name): bias missing") }
                if !bias && l.bias != nil { throw .format("\(l.name): unexpected bias") }
            }
        }
        try need(wte, [V, E], "token embedding")
        switch c.arch {
        case .gpt2:
            guard let wpe else { throw .format("GPT-2 model without position embedding") }
            try need(wpe, [c.nPositions, E], "position embedding")
        case .gptj:
            if wpe != nil { throw .format("GPT-J model with a learned position embedding") }
        }
        guard blocks.count == c.nLayer else { throw .format("found \(blocks.count) blocks, n_layer = \(c.nLayer)") }
        for (i, b) in blocks.enumerated() {
            try need(b.ln1.gamma, [E], "layer \(i) ln_1.weight")
            try need(b.ln1.beta, [E], "layer \(i) ln_1.bias")
            switch (c.arch, b.ln2) {
            case (.gpt2, .some(let ln2)):
                try need(ln2.gamma, [E], "layer \(i) ln_2.weight")
                try need(ln2.beta, [E], "layer \(i) ln_2.bias")
            case (.gptj, .none): break
            case (.gpt2, .none): throw .format("layer \(i): GPT-2 block without ln_2")
            case (.gptj, .some): throw .format("layer \(i): GPT-J block with a second LayerNorm")
            }
            switch b.qkv {
            case .fused(let l): try needLinear(l, E, 3 * E, bias: nil)
            case .separate(let q, let k, let v):
                try needLinear(q, E, E, bias: nil); try needLinear(k, E, E, bias: nil); try needLinear(v, E, E, bias: nil)
            }
            try needLinear(b.attnOut, E, E, bias: nil)
            try needLinear(b.fcIn, E, I, bias: nil)
            try needLinear(b.fcOut, I, E, bias: nil)
        }
        try need(lnF.gamma, [E], "ln_f.weight")
        try need(lnF.beta, [E], "ln_f.bias")
        switch head {
        case .tied: if !c.tiedHead { throw .format("head marked tied but config says untied") }
        case .linear(let h):
            try needLinear(h, E, V, bias: c.headBias ? true : false)
        }
    }
}
