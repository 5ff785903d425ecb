/// Data-parallel supervised fine-tuning (see `GradientExchange`): each rank accumulates the NLL-sum gradients of its
/// own examples; the exchange averages those sums and the token counts, and the step scales by 1 / mean(tokens) —
/// mean(Σ ∇NLL) / mean(tokens) = Σ ∇NLL / Σ tokens, the token-mean loss of the merged batch, however the tokens are
/// spread over the ranks.
extension SFTTrainer {
    /// Makes this trainer one of `exchange.worldSize` data-parallel replicas (nil: a single process again). Set it
    /// before the first step; the first step then compares every rank's configuration.
    public func setDistributed(_ exchange: GradientExchange?) {
        self.exchange = exchange
    }

    /// The rank and world size of a distributed trainer (nil in a single process).
    public var distributed: GradientExchange? { exchange }

    /// What every rank must share, compared at the first distributed step.
    public func distributedFields() -> [GradientExchange.Field] {
        var f = [GradientExchange.Field("trainer", adapter == nil ? "sft (every weight)" : "sft (LoRA)")]
        f += GradientExchange.modelFields(transformer.weights)
        if let adapter {
            f += GradientExchange.adapterFields(adapter)
        } else {
            f.append(.init("trainable weights", "digest " + Digest.text(gradients.parameters.map(\.value), stride: 61)))
        }
        f += GradientExchange.optimizerFields(optimizer)
        f.append(.init("lora dropout", dropoutRNG == nil ? "off" : "on"))
        return f
    }

    /// The exchange of a step: (NLL sum, tokens) → their means over ranks, the gradients → the mean of the ranks'
    /// NLL-sum gradients. Unchanged in a single process.
    func exchangeGradients(nll: Double, tokens: Double) throws(GFNError) -> (nll: Double, tokens: Double) {
        guard let ex = exchange else { return (nll, tokens) }
        if !ex.verified { try ex.verify(distributedFields()) }
        var s = [nll, tokens]
        let digest = GradientExchange.replicaDigest(optimizer.parameters, extra: [UInt64(optimizer.stepCount)])
        var none: [Float] = []
        try ex.averageGradients(optimizer.parameters, stats: &s, replica: digest, payload: &none)
        return (s[0], s[1])
    }
}
