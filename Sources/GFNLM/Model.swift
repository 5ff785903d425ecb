/// A loaded model: the transformer (weights shared read-only by every thread) and, when found, its tokenizer.
public final class Model: @unchecked Sendable {
    public let transformer: Transformer
    public let tokenizer: Tokenizer?
    public let path: String

    public var config: ModelConfig { transformer.config }
    public var weights: ModelWeights { transformer.weights }

    public init(transformer: Transformer, tokenizer: Tokenizer?, path: String = "") {
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.path = path
    }

    /// Loads an ONNX export (a .onnx file or a directory holding one). The tokenizer comes from `tokenizerPath`
    /// when given (errors reported), else from tokenizer files beside the model when present. `weightType` `.bf16`
    /// stores the large matrices in bf16 (see `ONNXModelLoader.load`).
    /// `batchInvariant` (default): decoding uses row-invariant products (`Transformer.rowInvariantDecoding`), so a
    /// sample does not depend on what shares its batch. `weightCache`: whether the weights are read from (and
    /// written to) a converted weight cache beside the model (`WeightCache`); off by default.
    /// `quantizedActivations` (int8 / 4-bit weights only; default true): the products quantize their activations
    /// and multiply integers (`QuantMatrix.integerProducts`); false keeps them fp32.
    public static func load(path: String, tokenizerPath: String? = nil, threads: Int = 0,
                            weightType: WeightType = .f32, batchInvariant: Bool = true,
                            weightCache: WeightCacheOptions = WeightCacheOptions(),
                            quantizedActivations: Bool = true) throws(GFNError) -> Model {
        let n = threads > 0 ? threads : Parallel.cpuCount
        var weights = try WeightCache.load(path: path, weightType: weightType, threads: n, options: weightCache).weights
        if !quantizedActivations { weights = try weights.withIntegerProducts(false) }
        let transformer = Transformer(weights: weights, threads: n, rowInvariantDecoding: batchInvariant)
        var tokenizer: Tokenizer?
        if let tokenizerPath {
            tokenizer = try Tokenizer.load(path: tokenizerPath)
        } else {
            let dir = FileIO.isDirectory(path) ? path : FileIO.dirname(of: path)
            let candidates = ["tokenizer.json", "vocab.json"]
            if candidates.contains(where: { FileIO.exists(FileIO.join(dir, $0)) }) {
                tokenizer = try Tokenizer.load(path: dir)
            }
        }
        if let tokenizer, tokenizer.vocabSize > weights.config.vocabSize {
            throw .format("the tokenizer defines \(tokenizer.vocabSize) ids but the model's vocabulary has \(weights.config.vocabSize) rows")
        }
        return Model(transformer: transformer, tokenizer: tokenizer, path: path)
    }

    /// Logits [batch, seqLen, V] (flattened) of a batch of equal-length rows. `mask` (optional, [batch, seqLen]) may
    /// only mark left padding (0…0 1…1 per row); positions count from a row's first unmasked token.
    public func logits(ids: [Int32], batch: Int, seqLen: Int, mask: [Int32]? = nil,
                       adapter: LoRAAdapter? = nil) throws(GFNError) -> [Float] {
        try checkShape(ids: ids, batch: batch, seqLen: seqLen)
        let count = batch * seqLen * config.vocabSize
        var failure: GFNError?
        let out = [Float](unsafeUninitializedCapacity: count) { buf, initialized in
            do throws(GFNError) {
                if let base = buf.baseAddress {
                    try logits(ids: ids, batch: batch, seqLen: seqLen, mask: mask, adapter: adapter, into: base)
                }
            } catch {
                failure = error
                buf.baseAddress?.initialize(repeating: 0, count: count)
            }
            initialized = count
        }
        if let failure { throw failure }
        return out
    }

    /// As `logits(ids:batch:seqLen:mask:adapter:)`, written straight into `out` (batch·seqLen·V floats, not read):
    /// no intermediate array, so the caller's buffer is filled by the (multi-threaded) head product itself.
    public func logits(ids: [Int32], batch: Int, seqLen: Int, mask: [Int32]? = nil, adapter: LoRAAdapter? = nil,
                       into out: UnsafeMutablePointer<Float>) throws(GFNError) {
        try checkShape(ids: ids, batch: batch, seqLen: seqLen)
        var padding = [Int](repeating: 0, count: batch)
        if let mask {
            guard mask.count == ids.count else { throw .invalidArgument("mask has \(mask.count) entries, ids \(ids.count)") }
            for r in 0..<batch {
                let row = mask[r * seqLen..<(r + 1) * seqLen]
                let pad = row.prefix { $0 == 0 }.count
                guard row.dropFirst(pad).allSatisfy({ $0 == 1 }) else {
                    throw .invalidArgument("attention_mask row \(r) is not left padding (0…0 1…1)")
                }
                guard pad < seqLen else { throw .invalidArgument("attention_mask row \(r) masks every position") }
                padding[r] = pad
            }
        }
        let tf = transformer
        let caches = try (0..<batch).map { _ throws(GFNError) in try tf.makeCache(capacity: seqLen) }
        let ws = try ForwardWorkspace()
        // Padded slots hold arbitrary ids; replace them so they never fail the vocabulary check.
        var clean = ids
        for r in 0..<batch where padding[r] > 0 { for t in 0..<padding[r] { clean[r * seqLen + t] = 0 } }
        let hidden = try clean.withUnsafeBufferPointer { (tb) throws(GFNError) in
            try tf.forward(tokens: tb, rows: batch, T: seqLen, caches: caches,
                           padding: mask == nil ? nil : padding, adapter: adapter, workspace: ws)
        }
        try tf.logits(hidden: hidden, count: batch * seqLen, adapter: adapter, into: out)
    }

    private func checkShape(ids: [Int32], batch: Int, seqLen: Int) throws(GFNError) {
        guard batch > 0, seqLen > 0 else { throw .invalidArgument("batch (\(batch)) and seq_len (\(seqLen)) must be positive") }
        guard ids.count == batch * seqLen else { throw .invalidArgument("\(ids.count) ids for batch·seq_len = \(batch * seqLen)") }
    }
}
