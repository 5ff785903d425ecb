/// A linear map y = x·W + b with W [in, out] (the layout of GPT-2's Conv1D and of every MatMul constant in the
/// ONNX exports), stored fp32 or bf16 (`WeightMatrix`). `name` is the Hugging Face module path (e.g.
/// "transformer.h.0.attn.c_attn"), which LoRA targets and PEFT adapter keys use.
public struct Linear: Sendable {
    public let name: String
    public let matrix: WeightMatrix
    public let bias: Tensor?

    /// An fp32 linear map with W [in, out].
    public init(name: String, weight: Tensor, bias: Tensor?) throws(GFNError) {
        guard weight.rank == 2 else { throw .format("\(name): weight must be 2-D, got \(weight.shape)") }
        try self.init(name: name, matrix: WeightMatrix(weight), bias: bias)
    }

    public init(name: String, matrix: WeightMatrix, bias: Tensor?) throws(GFNError) {
        if let b = bias, b.shape != [matrix.cols] {
            throw .format("\(name): bias shape \(b.shape) does not match weight [\(matrix.rows), \(matrix.cols)]")
        }
        self.name = name
        self.matrix = matrix
        self.bias = bias
    }

    /// The fp32 weight [in, out]; `.unsupported` for a bf16 weight (which has no fp32 copy).
    public var weight: Tensor {
        get throws(GFNError) { try matrix.fp32Tensor("\(name).weight") }
    }

    public var inFeatures: Int { matrix.rows }
    public var outFeatures: Int { matrix.cols }

    /// y[m, out] = x[m, in] · W + b (`packed`, `rowInvariant`: see `WeightMatrix.multiply`).
    public func apply(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                      threads: Int, packed: Bool = false, rowInvariant: Bool = false) {
        matrix.multiply(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, packed: packed,
                        rowInvariant: rowInvariant)
        if let bias { Kernels.addBias(y, bias.pointer, rows: m, n: outFeatures, ld: ldy) }
    }

    /// The same map with W in bf16.
    public func toBF16(threads: Int = 1) throws(GFNError) -> Linear {
        try Linear(name: name, matrix: try matrix.toBF16(threads: threads), bias: bias)
    }

    /// The same map with W block-quantized.
    public func quantized(_ format: QuantMatrix.Format, threads: Int = 1) throws(GFNError) -> Linear {
        try Linear(name: name, matrix: try matrix.quantized(format, threads: threads), bias: bias)
    }
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
    /// The compute budget of every transformer that runs on these weights (see `ComputeGate`).
    public let computeGate = ComputeGate()
    /// The token embedding as a weight matrix W [E, V] = wteᵀ (column v is token v's embedding); it is also the
    /// tied head (logits = h · W). fp32 (holding wte [V, E]) or bf16.
    public let embedding: WeightMatrix
    /// Token embedding [V, E] in fp32; `.unsupported` when it is stored in bf16.
    public var wte: Tensor {
        get throws(GFNError) { try embedding.fp32Tensor("transformer.wte.weight") }
    }
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

    public convenience init(config: ModelConfig, wte: Tensor, wpe: Tensor?, blocks: [BlockWeights],
                            lnF: LayerNormWeights, head: HeadWeights, keepAlive: [AnyObject] = [],
                            onnxSource: ONNXWeightSource? = nil) throws(GFNError) {
        guard wte.rank == 2 else { throw .format("token embedding: expected a 2-D tensor, found \(wte.shape)") }
        try self.init(config: config, embedding: WeightMatrix(transposedOf: wte), wpe: wpe, blocks: blocks, lnF: lnF,
                      head: head, keepAlive: keepAlive, onnxSource: onnxSource)
    }

    public init(config: ModelConfig, embedding: WeightMatrix, wpe: Tensor?, blocks: [BlockWeights],
                lnF: LayerNormWeights, head: HeadWeights, keepAlive: [AnyObject] = [],
                onnxSource: ONNXWeightSource? = nil) throws(GFNError) {
        self.config = config; self.embedding = embedding; self.wpe = wpe; self.blocks = blocks; self.lnF = lnF
        self.head = head; self.keepAlive = keepAlive; self.onnxSource = onnxSource
        try validate()
    }

    /// How the large matrices (linears, embedding / head) are stored: that of the linear maps (under 4-bit
    /// weights the embedding stays int8).
    public var weightType: WeightType { blocks.first?.fcIn.matrix.type ?? embedding.type }

    /// Bytes of the matrices (linears and embedding; not LayerNorm parameters, biases or positions).
    public var matrixBytes: Int { linears.reduce(embedding.bytes) { $0 + $1.matrix.bytes } }

    /// A copy with every linear map and the token embedding in bf16 (LayerNorm parameters, biases and positions
    /// stay fp32 and shared). Not tied to the source file: fp32 data is not kept.
    public func toBF16(threads: Int = 1) throws(GFNError) -> ModelWeights {
        try converted { (m: WeightMatrix, _: Bool) throws(GFNError) in try m.toBF16(threads: threads) }
    }

    /// A copy with every linear map and the token embedding block-quantized (`type` `.int8` or `.q4`; under
    /// `.q4` the embedding and the head are 6-bit, as the loader does). LayerNorm parameters, biases and positions stay
    /// fp32 and shared. `integerProducts`: see `QuantMatrix.integerProducts`.
    public func quantized(_ type: WeightType, threads: Int = 1, integerProducts: Bool = true) throws(GFNError) -> ModelWeights {
        guard type.isQuantized else { throw .invalidArgument("quantized(\(type)): not a quantized weight type") }
        return try converted { (m: WeightMatrix, isEmbedding: Bool) throws(GFNError) in
            try m.quantized(type == .int8 ? .q8 : isEmbedding ? .q6 : .q4, threads: threads,
                            integerProducts: integerProducts)
        }
    }

    /// These weights (storage shared) with quantized products that do or do not quantize their activations
    /// (`QuantMatrix.integerProducts`); fp32 / bf16 weights are unaffected.
    public func withIntegerProducts(_ on: Bool) throws(GFNError) -> ModelWeights {
        try converted { (m: WeightMatrix, _: Bool) throws(GFNError) in m.withIntegerProducts(on) }
    }

    /// A copy with every matrix passed through `convert(matrix, isEmbeddingOrHead)`.
    private func converted(_ convert: (WeightMatrix, Bool) throws(GFNError) -> WeightMatrix) throws(GFNError) -> ModelWeights {
        func lin(_ l: Linear, head: Bool = false) throws(GFNError) -> Linear {
            try Linear(name: l.name, matrix: try convert(l.matrix, head), bias: l.bias)
        }
        func blk(_ b: BlockWeights) throws(GFNError) -> BlockWeights {
            let qkv: QKVProjection
            switch b.qkv {
            case .fused(let l): qkv = .fused(try lin(l))
            case .separate(let q, let k, let v): qkv = .separate(q: try lin(q), k: try lin(k), v: try lin(v))
            }
            return BlockWeights(ln1: b.ln1, ln2: b.ln2, qkv: qkv, attnOut: try lin(b.attnOut), fcIn: try lin(b.fcIn),
                                fcOut: try lin(b.fcOut))
        }
        var bs: [BlockWeights] = []
        for b in blocks { bs.append(try blk(b)) }
        let h: HeadWeights
        switch head {
        case .tied: h = .tied
        case .linear(let l): h = .linear(try lin(l, head: true))
        }
        return try ModelWeights(config: config, embedding: try convert(embedding, true), wpe: wpe,
                                blocks: bs, lnF: lnF, head: h, keepAlive: keepAlive)
    }

    /// Packs every fp32 matrix that takes part in products (linear maps, the tied head) once more, in the layout of
    /// OpenBLAS's sgemm kernel, so that products of at least `PackedMatrix.minRows` rows by transformers that use
    /// them (`Transformer.usesPackedWeights`: GFlowNet training) skip the per-call packing: about as many bytes
    /// again as `matrixBytes`, kept until the weights are released. Idempotent; does
    /// nothing for bf16 matrices or when OpenBLAS's kernel is not available. Returns the bytes added. The weights
    /// must never be written afterwards (loaded weights never are; `trainableCopy()` makes unpacked ones).
    @discardableResult
    public func packForRowBatches(threads: Int = 1) throws(GFNError) -> Int {
        var added = 0
        if case .tied = head { added += try embedding.packForRowBatches(threads: threads) }
        for l in linears { added += try l.matrix.packForRowBatches(threads: threads) }
        return added
    }

    /// Whether `packForRowBatches` made packed copies (fp32 weights, OpenBLAS's kernel available).
    public var hasPackedMatrices: Bool { linears.contains { $0.matrix.packed != nil } }

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
            if l.inFeatures != i || l.outFeatures != o {
                throw .format("\(l.name).weight: expected shape \([i, o]), found \([l.inFeatures, l.outFeatures])")
            }
            if let bias {
                if bias && l.bias == nil { throw .format("\(l.name): bias missing") }
                if !bias && l.bias != nil { throw .format("\(l.name): unexpected bias") }
            }
        }
        if embedding.rows != E || embedding.cols != V {
            throw .format("token embedding: expected shape \([V, E]), found \([embedding.cols, embedding.rows])")
        }
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
