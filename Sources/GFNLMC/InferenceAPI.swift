import CGFNLM
import GFNLM

/// A LoRA adapter handle, bound to the model it was made for.
final class AdapterHandle {
    let adapter: LoRAAdapter
    let model: Model
    init(_ adapter: LoRAAdapter, model: Model) {
        self.adapter = adapter
        self.model = model
    }
}

final class ContextHandle {
    let context: InferenceContext
    init(_ context: InferenceContext) { self.context = context }
}

/// Results of sampling or beam search, with C arrays the sample_info pointers borrow.
final class SamplesHandle {
    struct Row {
        let promptIndex: Int32
        let tokens: UnsafeMutableBufferPointer<Int32>
        let tokenLogProbs: UnsafeMutableBufferPointer<Float>
        let steps: Int32
        let nStop: Int32
        let stopLogProbs: UnsafeMutableBufferPointer<Float>
        let logProb: Double
        let score: Double
        let finish: Int32
    }
    let rows: [Row]

    init(samples: [Sample], nStop: Int) {
        rows = samples.map { s in
            Row(promptIndex: Int32(s.promptIndex), tokens: SamplesHandle.copy(s.tokens),
                tokenLogProbs: SamplesHandle.copy(s.tokenLogProbs), steps: Int32(s.steps), nStop: Int32(nStop),
                stopLogProbs: SamplesHandle.copy(s.stopLogProbs), logProb: s.logProb, score: s.logProb,
                finish: s.finishReason.rawValue)
        }
    }

    init(hypotheses: [BeamHypothesis], tokenLogProbs: [[Float]]) {
        rows = zip(hypotheses, tokenLogProbs).map { h, lps in
            Row(promptIndex: 0, tokens: SamplesHandle.copy(h.tokens), tokenLogProbs: SamplesHandle.copy(lps),
                steps: Int32(h.tokens.count), nStop: 0, stopLogProbs: SamplesHandle.copy([Float]()),
                logProb: h.logProb, score: h.score, finish: h.finished ? 0 : 1)
        }
    }

    deinit {
        for r in rows {
            r.tokens.deallocate(); r.tokenLogProbs.deallocate(); r.stopLogProbs.deallocate()
        }
    }

    static func copy<T>(_ a: [T]) -> UnsafeMutableBufferPointer<T> {
        let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
        _ = b.initialize(from: a)
        return UnsafeMutableBufferPointer(rebasing: b[0..<a.count])
    }
}

// MARK: - conversions

func readIds(_ p: UnsafePointer<Int32>?, _ n: Int32, _ what: String) throws(GFNError) -> [Int32] {
    guard n >= 0 else { throw .invalidArgument("\(what) length is negative (\(n))") }
    if n == 0 { return [] }
    return Array(UnsafeBufferPointer(start: try requirePointer(p, what), count: Int(n)))
}

/// The Swift form of a caller's gfn_logit_adjustment (NULL: none), its size checked.
func adjustment(_ p: UnsafePointer<gfn_logit_adjustment>?) throws(GFNError) -> LogitAdjustment {
    guard let p else { return LogitAdjustment() }
    try checkStructSize(p.pointee.size, min: MemoryLayout<gfn_logit_adjustment>.size,
                        current: MemoryLayout<gfn_logit_adjustment>.size, "gfn_logit_adjustment")
    let a = p.pointee
    var out = LogitAdjustment()
    if a.n_allowed_tokens < 0 { throw .invalidArgument("n_allowed_tokens is negative") }
    if a.n_allowed_tokens > 0 { out.allowed = try readIds(a.allowed_tokens, a.n_allowed_tokens, "allowed_tokens") }
    out.disallowedPenalty = a.disallowed_penalty
    let n = Int(a.n_bias)
    guard n >= 0 else { throw .invalidArgument("n_bias is negative") }
    if n > 0 {
        let ids = try requirePointer(a.bias_tokens, "bias_tokens")
        let vals = try requirePointer(a.bias_values, "bias_values")
        for i in 0..<n { out.bias[ids[i], default: 0] += vals[i] }
    }
    return out
}

func adapterFor(_ p: OpaquePointer?, model: Model) throws(GFNError) -> LoRAAdapter? {
    guard let p else { return nil }
    let h = try handles.lookup(p, as: AdapterHandle.self, "adapter")
    guard h.model === model else { throw .state("the adapter was made for another model") }
    return h.adapter
}

@c @implementation
public func gfn_logit_default_adjustment() -> gfn_logit_adjustment {
    gfn_logit_adjustment(size: UInt32(MemoryLayout<gfn_logit_adjustment>.size), allowed_tokens: nil,
                         n_allowed_tokens: 0, disallowed_penalty: -.infinity, bias_tokens: nil, bias_values: nil,
                         n_bias: 0)
}
// MARK: - context

@c @implementation
public func gfn_context_new(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        o.pointee = handles.register(ContextHandle(try InferenceContext(model: m.model)))
    }
}

@c @implementation
public func gfn_context_free(_ ctx: OpaquePointer?) {
    handles.remove(ctx, as: ContextHandle.self)
}

// MARK: - sampling

@c @implementation
public func gfn_sampling_default_params() -> gfn_sampling_params {
    let d = SamplingParams()
    return gfn_sampling_params(size: UInt32(MemoryLayout<gfn_sampling_params>.size), max_new_tokens: Int32(d.maxNewTokens),
                               min_new_tokens: 0, temperature: 1, top_k: 0, top_p: 1, seed: 0, stop_tokens: nil,
                               n_stop_tokens: 0, include_stop_token: 1, adjust: nil, adapter: nil)
}

/// The Swift form of a caller's gfn_sampling_params (NULL: the defaults), its size checked.
func readSamplingParams(_ params: UnsafePointer<gfn_sampling_params>?) throws(GFNError) -> gfn_sampling_params {
    guard let params else { return gfn_sampling_default_params() }
    try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_sampling_params>.size,
                        current: MemoryLayout<gfn_sampling_params>.size, "gfn_sampling_params")
    return params.pointee
}

func samplingParams(_ c: gfn_sampling_params) throws(GFNError) -> SamplingParams {
    var s = SamplingParams()
    s.maxNewTokens = Int(c.max_new_tokens)
    s.minNewTokens = Int(c.min_new_tokens)
    s.temperature = c.temperature
    s.topK = Int(c.top_k)
    s.topP = c.top_p
    s.seed = c.seed
    s.stopTokens = try readIds(c.stop_tokens, c.n_stop_tokens, "stop_tokens")
    s.includeStopToken = c.include_stop_token != 0
    s.adjustment = try adjustment(c.adjust)
    return s
}

@c @implementation
public func gfn_context_sample(_ ctx: OpaquePointer?, _ prompts: UnsafePointer<UnsafePointer<Int32>?>?,
                             _ promptLengths: UnsafePointer<Int32>?, _ nPrompts: Int32, _ nPerPrompt: Int32,
                             _ params: UnsafePointer<gfn_sampling_params>?,
                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(ctx, as: ContextHandle.self, "ctx")
        let o = try requirePointer(out, "out")
        guard nPrompts > 0 else { throw .invalidArgument("n_prompts must be positive (got \(nPrompts))") }
        guard nPerPrompt > 0 else { throw .invalidArgument("n_per_prompt must be positive (got \(nPerPrompt))") }
        let c = try readSamplingParams(params)
        let pp = try requirePointer(prompts, "prompts")
        let lens = try requirePointer(promptLengths, "prompt_lengths")
        var list: [[Int32]] = []
        for i in 0..<Int(nPrompts) { list.append(try readIds(pp[i], lens[i], "prompts[\(i)]")) }
        let s = try samplingParams(c)
        let adapter = try adapterFor(c.adapter, model: h.context.model)
        try checkMemory(rows: Int(nPrompts) * Int(nPerPrompt), bytesPerRow: rowBytes(h.context.model.config, tokens: s.maxNewTokens),
                        "sampling \(nPrompts) prompts × \(nPerPrompt)")
        let samples = try h.context.sample(prompts: list, n: Int(nPerPrompt), params: s, adapter: adapter)
        o.pointee = handles.register(SamplesHandle(samples: samples, nStop: s.stopTokens.count))
    }
}

@c @implementation
public func gfn_samples_count(_ samples: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(samples, as: SamplesHandle.self, "samples")
        try requirePointer(out, "out").pointee = Int32(h.rows.count)
    }
}

@c @implementation
public func gfn_samples_get(_ samples: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<gfn_sample_info>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(samples, as: SamplesHandle.self, "samples")
        let o = try requirePointer(out, "out")
        try checkStructSize(o.pointee.size, min: MemoryLayout<gfn_sample_info>.size,
                            current: MemoryLayout<gfn_sample_info>.size, "gfn_sample_info")
        guard index >= 0 && Int(index) < h.rows.count else {
            throw .outOfRange("sample index \(index) is outside 0..<\(h.rows.count)")
        }
        let r = h.rows[Int(index)]
        o.pointee = gfn_sample_info(size: UInt32(MemoryLayout<gfn_sample_info>.size), prompt_index: r.promptIndex,
                                    n_tokens: Int32(r.tokens.count), tokens: UnsafePointer(r.tokens.baseAddress),
                                    token_logprobs: UnsafePointer(r.tokenLogProbs.baseAddress), n_steps: r.steps,
                                    n_stop_tokens: r.nStop, stop_logprobs: UnsafePointer(r.stopLogProbs.baseAddress),
                                    logprob: r.logProb, score: r.score, finish_reason: r.finish)
    }
}

@c @implementation
public func gfn_samples_free(_ samples: OpaquePointer?) {
    handles.remove(samples, as: SamplesHandle.self)
}

// MARK: - scoring

@c @implementation
public func gfn_score_default_params() -> gfn_score_params {
    gfn_score_params(size: UInt32(MemoryLayout<gfn_score_params>.size), stop_tokens: nil, n_stop_tokens: 0,
                     adjust: nil, adapter: nil)
}

@c @implementation
public func gfn_context_score(_ ctx: OpaquePointer?, _ contexts: UnsafePointer<UnsafePointer<Int32>?>?,
                            _ contextLengths: UnsafePointer<Int32>?,
                            _ continuations: UnsafePointer<UnsafePointer<Int32>?>?,
                            _ continuationLengths: UnsafePointer<Int32>?, _ nPairs: Int32,
                            _ params: UnsafePointer<gfn_score_params>?, _ totals: UnsafeMutablePointer<Double>?,
                            _ tokenLogProbs: UnsafeMutablePointer<Float>?,
                            _ stopLogProbs: UnsafeMutablePointer<Float>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(ctx, as: ContextHandle.self, "ctx")
        guard nPairs > 0 else { throw .invalidArgument("n_pairs must be positive (got \(nPairs))") }
        let request = try ScoreRequest(contexts, contextLengths, continuations, continuationLengths, nPairs, params,
                                       model: h.context.model)
        let tot = try requirePointer(totals, "totals")
        let res = try h.context.score(request.pairs, params: request.params, adapter: request.adapter)
        writeScores(res, totals: tot, tokenLogProbs: tokenLogProbs, stopLogProbs: stopLogProbs)
    }
}

/// A scoring call's arguments read from C (pairs, parameters, adapter), checked.
struct ScoreRequest {
    let pairs: [(context: [Int32], continuation: [Int32])]
    let params: ScoreParams
    let adapter: LoRAAdapter?

    init(_ contexts: UnsafePointer<UnsafePointer<Int32>?>?, _ contextLengths: UnsafePointer<Int32>?,
         _ continuations: UnsafePointer<UnsafePointer<Int32>?>?, _ continuationLengths: UnsafePointer<Int32>?,
         _ nPairs: Int32, _ params: UnsafePointer<gfn_score_params>?, model: Model) throws(GFNError) {
        guard nPairs > 0 else { throw .invalidArgument("n_pairs must be positive (got \(nPairs))") }
        var c = gfn_score_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_score_params>.size,
                                current: MemoryLayout<gfn_score_params>.size, "gfn_score_params")
            c = params.pointee
        }
        let ctxs = try requirePointer(contexts, "contexts"), clens = try requirePointer(contextLengths, "context_lengths")
        let conts = try requirePointer(continuations, "continuations")
        let nlens = try requirePointer(continuationLengths, "continuation_lengths")
        var pairs: [(context: [Int32], continuation: [Int32])] = []
        for i in 0..<Int(nPairs) {
            pairs.append((try readIds(ctxs[i], clens[i], "contexts[\(i)]"), try readIds(conts[i], nlens[i], "continuations[\(i)]")))
        }
        self.pairs = pairs
        self.params = ScoreParams(stopTokens: try readIds(c.stop_tokens, c.n_stop_tokens, "stop_tokens"),
                                  adjustment: try adjustment(c.adjust))
        self.adapter = try adapterFor(c.adapter, model: model)
    }
}

/// Writes scoring results into the caller's arrays (see gfn_context_score).
func writeScores(_ res: [ScoreResult], totals: UnsafeMutablePointer<Double>, tokenLogProbs: UnsafeMutablePointer<Float>?,
                 stopLogProbs: UnsafeMutablePointer<Float>?) {
    var tOff = 0, sOff = 0
    for (i, r) in res.enumerated() {
        totals[i] = r.total
        if let tokenLogProbs { for v in r.tokenLogProbs { tokenLogProbs[tOff] = v; tOff += 1 } }
        if let stopLogProbs { for v in r.stopLogProbAny { stopLogProbs[sOff] = v; sOff += 1 } }
    }
}

// MARK: - beam search

@c @implementation
public func gfn_beam_default_params() -> gfn_beam_params {
    let d = BeamSearchParams()
    return gfn_beam_params(size: UInt32(MemoryLayout<gfn_beam_params>.size), num_beams: Int32(d.numBeams),
                           num_return: 1, num_groups: 1, diversity_penalty: 0, length_penalty: 1,
                           max_new_tokens: Int32(d.maxNewTokens), min_new_tokens: 0, stop_tokens: nil,
                           n_stop_tokens: 0, include_stop_token: 1, adjust: nil, adapter: nil)
}

@c @implementation
public func gfn_context_beam_search(_ ctx: OpaquePointer?, _ prompt: UnsafePointer<Int32>?, _ promptLength: Int32,
                                 _ params: UnsafePointer<gfn_beam_params>?,
                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(ctx, as: ContextHandle.self, "ctx")
        let o = try requirePointer(out, "out")
        var c = gfn_beam_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_beam_params>.size,
                                current: MemoryLayout<gfn_beam_params>.size, "gfn_beam_params")
            c = params.pointee
        }
        var b = BeamSearchParams()
        b.numBeams = Int(c.num_beams); b.numReturn = Int(c.num_return); b.numGroups = Int(c.num_groups)
        b.diversityPenalty = c.diversity_penalty; b.lengthPenalty = c.length_penalty
        b.maxNewTokens = Int(c.max_new_tokens); b.minNewTokens = Int(c.min_new_tokens)
        b.stopTokens = try readIds(c.stop_tokens, c.n_stop_tokens, "stop_tokens")
        b.includeStopToken = c.include_stop_token != 0
        b.adjustment = try adjustment(c.adjust)
        let adapter = try adapterFor(c.adapter, model: h.context.model)
        try checkMemory(rows: b.numBeams, bytesPerRow: rowBytes(h.context.model.config, tokens: b.maxNewTokens),
                        "beam search with \(b.numBeams) beams")
        let ids = try readIds(prompt, promptLength, "prompt")
        let hyps = try h.context.beamSearch(prompt: ids, params: b, adapter: adapter)
        // The search keeps only each hypothesis's sum; its per-token log-probabilities (which gfn_sample_info
        // promises) come from one scoring pass over the hypotheses under the same adjusted policy.
        let perToken = try h.context.score(hyps.map { (ids, $0.tokens) },
                                           params: ScoreParams(stopTokens: b.stopTokens, adjustment: b.adjustment),
                                           adapter: adapter).map(\.tokenLogProbs)
        o.pointee = handles.register(SamplesHandle(hypotheses: hyps, tokenLogProbs: perToken))
    }
}
