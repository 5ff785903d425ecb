/// Settings of one sampling call.
public struct SamplingParams: Sendable, Equatable {
    /// At most this many new tokens per sample (a sampled stop token counts).
    public var maxNewTokens: Int = 32
    /// Stop tokens cannot be sampled before this many new tokens (sampling only; log-probs are unaffected).
    public var minNewTokens: Int = 0
    /// Divides the policy logits for sampling only; 0 means greedy.
    public var temperature: Float = 1
    /// Keep only the k most probable tokens (0 = off).
    public var topK: Int = 0
    /// Keep the smallest set of most probable tokens whose mass reaches p (1 = off).
    public var topP: Float = 1
    /// Sampling one of these ends a sample.
    public var stopTokens: [Int32] = []
    /// Whether a sampled stop token is kept at the end of `tokens`.
    public var includeStopToken: Bool = true
    /// Soft / hard vocabulary masks and biases; part of the policy (they change the reported log-probabilities).
    public var adjustment = LogitAdjustment()
    /// Same seed ⇒ same tokens, whatever the thread count.
    public var seed: UInt64 = 0

    public init() {}

    func validate(vocab: Int, positionsLeft: Int) throws(GFNError) {
        guard maxNewTokens > 0 else { throw .invalidArgument("max_new_tokens must be positive (got \(maxNewTokens))") }
        guard minNewTokens >= 0 && minNewTokens <= maxNewTokens else {
            throw .invalidArgument("min_new_tokens (\(minNewTokens)) must lie in 0…max_new_tokens (\(maxNewTokens))")
        }
        guard temperature >= 0 && temperature.isFinite else { throw .invalidArgument("temperature must be ≥ 0 and finite (got \(temperature))") }
        guard topK >= 0 else { throw .invalidArgument("top_k must be ≥ 0 (got \(topK))") }
        guard topP > 0 && topP <= 1 else { throw .invalidArgument("top_p must lie in (0, 1] (got \(topP))") }
        for s in stopTokens where s < 0 || Int(s) >= vocab {
            throw .outOfRange("stop token \(s) is outside the vocabulary (0..<\(vocab))")
        }
        _ = positionsLeft
    }
}

/// Why a sample ended.
public enum FinishReason: Int32, Sendable {
    case stopToken = 0
    case maxTokens = 1
}

/// One generated continuation with the policy's own log-probabilities.
public struct Sample: Sendable, Equatable {
    public var promptIndex: Int
    public var tokens: [Int32]
    /// log q(token_t | prefix) for every returned token, under the untempered policy with its soft penalties.
    public var tokenLogProbs: [Float]
    /// log q(stop_j | prefix before step t) for every step t (also the one that sampled a stop token): [steps][nStop].
    public var stopLogProbs: [Float]
    /// Number of sampling steps (= tokens.count, or tokens.count + 1 when a stop token was dropped).
    public var steps: Int
    public var finishReason: FinishReason

    /// Σ log q over the steps (including a dropped stop token).
    public var logProb: Double

    public init(promptIndex: Int, tokens: [Int32], tokenLogProbs: [Float], stopLogProbs: [Float], steps: Int,
                finishReason: FinishReason, logProb: Double) {
        self.promptIndex = promptIndex; self.tokens = tokens; self.tokenLogProbs = tokenLogProbs
        self.stopLogProbs = stopLogProbs; self.steps = steps; self.finishReason = finishReason; self.logProb = logProb
    }
}

/// Per-caller inference state: scratch memory and caches reused across calls. Not thread-safe; make one per thread.
/// The model is shared.
public final class InferenceContext: @unchecked Sendable {
    public let model: Model
    let workspace: ForwardWorkspace
    private var choosers: [TokenChooser] = []

    public init(model: Model) throws(GFNError) {
        self.model = model
        self.workspace = try ForwardWorkspace()
    }

    var transformer: Transformer { model.transformer }

    func choosers(_ n: Int) -> [TokenChooser] {
        let V = model.config.vocabSize
        while choosers.count < n { choosers.append(TokenChooser(vocab: V)) }
        return Array(choosers.prefix(n))
    }

    func checkPrompt(_ p: [Int32], index: Int) throws(GFNError) {
        let c = model.config
        guard !p.isEmpty else { throw .invalidArgument("prompt \(index) is empty (GPT-2 / GPT-J need at least one token)") }
        guard p.count <= c.nPositions else {
            throw .outOfRange("prompt \(index) has \(p.count) tokens; the model has \(c.nPositions) positions")
        }
        for t in p where t < 0 || Int(t) >= c.vocabSize {
            throw .outOfRange("prompt \(index) contains token id \(t), outside the vocabulary (0..<\(c.vocabSize))")
        }
    }

    /// Runs a prompt through the model into a new cache and returns its last-position logits [V].
    func prefill(_ prompt: [Int32], adapter: LoRAAdapter?, logits: UnsafeMutablePointer<Float>) throws(GFNError) -> KVCache {
        let caches = try prefill([PrefillItem(prompt: prompt, adapter: adapter)], logits: logits)
        guard let cache = caches.first else { throw .internalError("prefill returned no cache") }
        return cache
    }

    /// Samples `n` continuations of every prompt. Each prompt is run once; its cache is shared by its n samples,
    /// and all samples of all prompts decode together in one batch.
    public func sample(prompts: [[Int32]], n: Int, params: SamplingParams,
                       adapter: LoRAAdapter? = nil) throws(GFNError) -> [Sample] {
        let V = model.config.vocabSize
        guard !prompts.isEmpty else { throw .invalidArgument("no prompts") }
        guard n > 0 else { throw .invalidArgument("n (samples per prompt) must be positive (got \(n))") }
        for (i, p) in prompts.enumerated() { try checkPrompt(p, index: i) }
        let policy = try SamplingPolicy(params: params, config: model.config,
                                        longestPrompt: prompts.map(\.count).max() ?? 0, adapter: adapter)
        let rows = prompts.count * n

        // Prefill every prompt once; its last logits serve step 0 of all its samples.
        let prefillLogits = try FloatStorage(count: prompts.count * V)
        let stepLogits = try FloatStorage(count: rows * V)
        var seqs: [DecodingSequence] = []
        seqs.reserveCapacity(rows)
        let prefixes = try prefill(prompts.map { PrefillItem(prompt: $0, adapter: adapter) }, logits: prefillLogits.base)
        for (pi, prefix) in prefixes.enumerated() {
            for k in 0..<n {
                seqs.append(DecodingSequence(policy: policy, promptIndex: pi, index: k,
                                             cache: try transformer.makeCache(capacity: policy.maxNew, prefix: prefix),
                                             logits: prefillLogits.base + pi * V))
            }
        }
        let pool = choosers(transformer.threads)
        var active = seqs
        while true {
            try DecodingSequence.advance(active, choosers: pool, vocab: V)
            active.removeAll { $0.finished }
            if active.isEmpty { break }
            // Feed the new tokens of the active rows in one batched step.
            let feed = active.map(\.nextToken), caches = active.map(\.cache)
            try transformer.gate.run { () throws(GFNError) in
                let hidden = try feed.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: feed.count, T: 1, caches: caches, adapter: adapter,
                                            workspace: workspace)
                }
                try transformer.logits(hidden: hidden, count: feed.count, adapter: adapter, decoding: true,
                                       into: stepLogits.base)
            }
            for (i, seq) in active.enumerated() { seq.logits = UnsafePointer(stepLogits.base + i * V) }
        }
        return seqs.map(\.sample)
    }
}

/// Mixes a user seed with indices into an independent stream seed (SplitMix64 finaliser).
func mixSeed(_ seed: UInt64, _ a: UInt64, _ b: UInt64) -> UInt64 {
    var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (a &+ 1) &+ 0xD1B5_4A32_D192_ED03 &* (b &+ 1)
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

extension Optional where Wrapped == [Float] {
    /// Calls body with a pointer to the array's storage, or nil.
    func withOptionalBuffer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
