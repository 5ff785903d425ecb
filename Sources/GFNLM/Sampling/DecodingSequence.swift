/// What one sampling request asks of each of its sequences: the settings, the dense logit adjustment, the length
/// limit and the adapter. Shared by the request's sequences.
final class SamplingPolicy: @unchecked Sendable {
    let params: SamplingParams
    /// The adjustment as a dense vector [V] (nil when there is none).
    let bias: [Float]?
    /// New tokens at most (the request's max_new_tokens, reduced when the positions run out).
    let maxNew: Int
    let adapter: LoRAAdapter?

    /// Checks `params` against the model and the longest prompt of the call.
    init(params: SamplingParams, config c: ModelConfig, longestPrompt: Int, adapter: LoRAAdapter?) throws(GFNError) {
        try params.validate(vocab: c.vocabSize, positionsLeft: c.nPositions)
        let maxNew = min(params.maxNewTokens, c.nPositions - longestPrompt + 1)
        guard maxNew > 0 else {
            throw .outOfRange("a prompt of \(longestPrompt) tokens leaves no room in \(c.nPositions) positions")
        }
        self.params = params
        self.bias = try params.adjustment.dense(vocab: c.vocabSize, alwaysAllowed: params.stopTokens)
        self.maxNew = maxNew
        self.adapter = adapter
    }
}

/// One sequence being sampled: its random stream, its KV cache, what it produced so far, and where its next
/// distribution is. `InferenceContext.sample` and `Batcher` both decode through this type and `advance`, so a
/// request gives the same tokens by either route.
final class DecodingSequence: @unchecked Sendable {
    let policy: SamplingPolicy
    var sample: Sample
    var rng: RNG
    let cache: KVCache
    /// The logits [V] this sequence draws its next token from (valid until the next pass that writes them).
    var logits: UnsafePointer<Float>
    /// The token to feed in the next pass (when not finished).
    var nextToken: Int32 = 0
    var finished = false
    /// Set by a step that could not produce a token.
    private(set) var failed = false
    /// Whether the last step appended a token to `sample.tokens` (a dropped stop token appends none).
    private(set) var appendedToken = false

    /// Sample `index` of prompt `promptIndex` of a call with `seed` (the stream of `InferenceContext.sample`).
    init(policy: SamplingPolicy, promptIndex: Int, index: Int, cache: KVCache, logits: UnsafePointer<Float>) {
        self.policy = policy
        self.sample = Sample(promptIndex: promptIndex, tokens: [], tokenLogProbs: [], stopLogProbs: [], steps: 0,
                             finishReason: .maxTokens, logProb: 0)
        self.rng = RNG(seed: mixSeed(policy.params.seed, UInt64(promptIndex), UInt64(index)))
        self.cache = cache
        self.logits = logits
    }

    /// Draws the next token from `logits` with `chooser` and records it (token, log-probabilities, finish).
    fileprivate func step(chooser: TokenChooser) {
        let params = policy.params
        appendedToken = false
        let banned = sample.steps < params.minNewTokens ? params.stopTokens : []
        let lse = policy.bias.withOptionalBuffer { chooser.policyLogits(logits, bias: $0) }
        for s in params.stopTokens { sample.stopLogProbs.append(chooser.work[Int(s)] - lse) }
        guard lse.isFinite,
              let tok = chooser.draw(temperature: params.temperature, topK: params.topK, topP: params.topP,
                                     banned: banned, rng: &rng) else {
            failed = true
            finished = true
            return
        }
        let lp = chooser.work[Int(tok)] - lse
        sample.steps += 1
        sample.logProb += Double(lp)
        if params.stopTokens.contains(tok) {
            sample.finishReason = .stopToken
            if params.includeStopToken {
                sample.tokens.append(tok)
                sample.tokenLogProbs.append(lp)
                appendedToken = true
            }
            finished = true
        } else {
            sample.tokens.append(tok)
            sample.tokenLogProbs.append(lp)
            appendedToken = true
            nextToken = tok
            finished = sample.steps >= policy.maxNew
        }
    }

    /// Takes one decoding step for every sequence (in parallel; each sequence's draw depends only on its own
    /// logits and random stream). Throws `.numerical` for the first sequence that could not produce a token.
    static func advance(_ seqs: [DecodingSequence], choosers: [TokenChooser], vocab V: Int) throws(GFNError) {
        advanceEach(seqs, choosers: choosers, vocab: V)
        if let i = seqs.firstIndex(where: { $0.failed }) {
            throw GFNError(.numerical, "sample \(i): no token can be produced at step \(seqs[i].sample.steps) "
                           + "(every token is masked, or the logits are not finite)")
        }
    }

    /// `advance` without the error: a sequence that cannot produce a token is marked `failed` (and finished).
    static func advanceEach(_ seqs: [DecodingSequence], choosers: [TokenChooser], vocab V: Int) {
        let workers = choosers.count
        Parallel.chunks(seqs.count, threads: seqs.count * V >= 1 << 16 ? workers : 1) { w, range in
            for i in range { seqs[i].step(chooser: choosers[w]) }
        }
    }
}
