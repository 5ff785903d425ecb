/// The low-rank update of one linear map, in PEFT's layout: A [r, in], B [out, r], y += scale · (x·Aᵀ)·Bᵀ.
public struct LoRAFactors: @unchecked Sendable {
    public let a: Tensor
    public let b: Tensor
    public var scale: Float

    public init(a: Tensor, b: Tensor, scale: Float) throws(GFNError) {
        guard a.rank == 2, b.rank == 2, b.shape[1] == a.shape[0] else {
            throw .invalidArgument("LoRA factor shapes A \(a.shape), B \(b.shape) do not match")
        }
        self.a = a; self.b = b; self.scale = scale
    }

    public var rank: Int { a.shape[0] }
    public var inFeatures: Int { a.shape[1] }
    public var outFeatures: Int { b.shape[0] }
}

/// A set of LoRA updates keyed by Hugging Face module name ("transformer.h.0.attn.c_attn"). The base weights are
/// never modified: with an adapter the forward pass adds the low-rank branch (the policy), without one it is the
/// untouched base model (the reference / reward model). The same `ModelWeights` serve both.
public final class LoRAAdapter: @unchecked Sendable {
    public private(set) var factors: [String: LoRAFactors]
    /// Dropout probability on the LoRA branch input (training only).
    public var dropout: Float

    public init(factors: [String: LoRAFactors], dropout: Float = 0) {
        self.factors = factors
        self.dropout = dropout
    }

    public func factors(for name: String) -> LoRAFactors? { factors[name] }
}
