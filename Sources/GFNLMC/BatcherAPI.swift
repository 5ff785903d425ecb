import CGFNLM
import GFNLM

final class BatcherHandle {
    let batcher: Batcher
    let modelHandle: ModelHandle
    init(_ batcher: Batcher, model: ModelHandle) {
        self.batcher = batcher
        self.modelHandle = model
    }
}

/// A request handle and the host's callbacks. Callbacks run under a recursive lock that gfn_request_free also
/// takes, so none runs after free returns (a callback may itself free the request: the lock is recursive).
final class RequestHandle: @unchecked Sendable {
    private(set) var request: BatchRequest?
    private let options: gfn_request_options
    private var callbackLock = pthread_mutex_t()
    private var detached = false
    /// Stop tokens of a sampling request (for gfn_samples' stop log-prob layout).
    let nStop: Int
    /// Policy requests: actions before this step were drawn with ⊤ banned, so their log q is the renormalised
    /// q̃(a) = q(a) / (1 − q(⊤)) — the distribution they were sampled from, as gfn_gflownet_sample reports it.
    let bannedStopSteps: Int

    init(options: gfn_request_options, nStop: Int, bannedStopSteps: Int = 0) {
        self.options = options
        self.nStop = nStop
        self.bannedStopSteps = bannedStopSteps
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(&callbackLock, &attr)
        pthread_mutexattr_destroy(&attr)
    }

    deinit { pthread_mutex_destroy(&callbackLock) }

    func attach(_ r: BatchRequest) { request = r }

    /// Calls `body` unless the request was freed.
    private func withCallbacks<R>(_ fallback: R, _ body: () -> R) -> R {
        pthread_mutex_lock(&callbackLock)
        defer { pthread_mutex_unlock(&callbackLock) }
        return detached ? fallback : body()
    }

    func detach() {
        pthread_mutex_lock(&callbackLock)
        detached = true
        pthread_mutex_unlock(&callbackLock)
    }

    var tokenCallback: ((Int, Int32, Float) -> Bool)? {
        guard let fn = options.on_token else { return nil }
        let ud = options.user_data
        return { [self] index, token, logprob in
            withCallbacks(true) { fn(ud, Int32(index), token, logprob) == 0 }
        }
    }

    /// `pointer` is this handle as the host knows it.
    func doneCallback(pointer: OpaquePointer) -> ((BatchRequest) -> Void)? {
        guard let fn = options.on_done else { return nil }
        let ud = options.user_data
        return { [self] _ in withCallbacks(()) { fn(ud, pointer) } }
    }
}

@c @implementation
public func gfn_batcher_default_params() -> gfn_batcher_params {
    let d = Batcher.Config()
    return gfn_batcher_params(size: UInt32(MemoryLayout<gfn_batcher_params>.size), max_batch: Int32(d.maxBatch),
                              max_queue: Int32(d.maxQueue), max_prefill_tokens: Int32(d.maxPrefillTokens))
}

@c @implementation
public func gfn_batcher_new(_ model: OpaquePointer?, _ params: UnsafePointer<gfn_batcher_params>?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        var p = gfn_batcher_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_batcher_params>.size,
                                current: MemoryLayout<gfn_batcher_params>.size, "gfn_batcher_params")
            p = params.pointee
        }
        var config = Batcher.Config()
        config.maxBatch = Int(p.max_batch)
        config.maxQueue = Int(p.max_queue)
        config.maxPrefillTokens = Int(p.max_prefill_tokens)
        let batcher = try Batcher(model: m.model, config: config)
        o.pointee = handles.register(BatcherHandle(batcher, model: m))
    }
}

@c @implementation
public func gfn_batcher_shutdown(_ batcher: OpaquePointer?, _ drain: Int32) -> Int32 {
    capi { () throws(GFNError) in
        try handles.lookup(batcher, as: BatcherHandle.self, "batcher").batcher.shutdown(drain: drain != 0)
    }
}

@c @implementation
public func gfn_batcher_free(_ batcher: OpaquePointer?) {
    handles.remove(batcher, as: BatcherHandle.self)?.batcher.shutdown(drain: false)
}

@c @implementation
public func gfn_request_default_options() -> gfn_request_options {
    gfn_request_options(size: UInt32(MemoryLayout<gfn_request_options>.size), block: 0, on_token: nil, on_done: nil,
                        user_data: nil)
}

func readOptions(_ options: UnsafePointer<gfn_request_options>?) throws(GFNError) -> gfn_request_options {
    guard let options else { return gfn_request_default_options() }
    try checkStructSize(options.pointee.size, min: MemoryLayout<gfn_request_options>.size,
                        current: MemoryLayout<gfn_request_options>.size, "gfn_request_options")
    return options.pointee
}

/// Registers a request handle, submits `work` with its callbacks, and writes the handle to `out`.
func submit(_ b: BatcherHandle, _ work: BatchWork, nStop: Int, bannedStopSteps: Int = 0,
            options: UnsafePointer<gfn_request_options>?, out: UnsafeMutablePointer<OpaquePointer?>?) throws(GFNError) {
    let o = try requirePointer(out, "out")
    let opts = try readOptions(options)
    let handle = RequestHandle(options: opts, nStop: nStop, bannedStopSteps: bannedStopSteps)
    // Registered before submission: on_done may run before this function returns.
    let pointer = handles.register(handle)
    do throws(GFNError) {
        let request = try b.batcher.submit(work, block: opts.block != 0, onToken: handle.tokenCallback,
                                           onDone: handle.doneCallback(pointer: pointer))
        handle.attach(request)
    } catch {
        handles.remove(pointer, as: RequestHandle.self)
        throw error
    }
    o.pointee = pointer
}

@c @implementation
public func gfn_batcher_submit_sample(_ batcher: OpaquePointer?, _ prompt: UnsafePointer<Int32>?, _ nPrompt: Int32,
                                   _ nSamples: Int32, _ params: UnsafePointer<gfn_sampling_params>?,
                                   _ options: UnsafePointer<gfn_request_options>?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let b = try handles.lookup(batcher, as: BatcherHandle.self, "batcher")
        let c = try readSamplingParams(params)
        let s = try samplingParams(c)
        let adapter = try adapterFor(c.adapter, model: b.batcher.model)
        let ids = try readIds(prompt, nPrompt, "prompt")
        try checkMemory(rows: Int(max(nSamples, 0)), bytesPerRow: rowBytes(b.batcher.model.config, tokens: s.maxNewTokens),
                        "sampling \(nSamples) sequences")
        try submit(b, .sample(prompt: ids, n: Int(nSamples), params: s, adapter: adapter), nStop: s.stopTokens.count,
                   options: options, out: out)
    }
}

@c @implementation
public func gfn_batcher_submit_score(_ batcher: OpaquePointer?, _ contexts: UnsafePointer<UnsafePointer<Int32>?>?,
                                  _ contextLengths: UnsafePointer<Int32>?,
                                  _ continuations: UnsafePointer<UnsafePointer<Int32>?>?,
                                  _ continuationLengths: UnsafePointer<Int32>?, _ nPairs: Int32,
                                  _ params: UnsafePointer<gfn_score_params>?,
                                  _ options: UnsafePointer<gfn_request_options>?,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let b = try handles.lookup(batcher, as: BatcherHandle.self, "batcher")
        let r = try ScoreRequest(contexts, contextLengths, continuations, continuationLengths, nPairs, params,
                                 model: b.batcher.model)
        try submit(b, .score(pairs: r.pairs, params: r.params, adapter: r.adapter), nStop: 0, options: options, out: out)
    }
}

@c @implementation
public func gfn_batcher_submit_policy(_ batcher: OpaquePointer?, _ trainer: OpaquePointer?, _ x: UnsafePointer<Int32>?,
                                   _ nX: Int32, _ count: Int32, _ temperature: Float, _ seed: UInt64,
                                   _ options: UnsafePointer<gfn_request_options>?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let b = try handles.lookup(batcher, as: BatcherHandle.self, "batcher")
        let t = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        guard t.adapterHandle.model === b.batcher.model else {
            throw .state("the trainer belongs to another model than the batcher's")
        }
        let policy = t.trainer.engine.settings
        guard policy.tool == nil else {
            throw .unsupported("the batcher cannot run the calculator tool: sample this policy with gfn_gflownet_sample")
        }
        var s = SamplingParams()
        s.maxNewTokens = policy.maxLength
        s.minNewTokens = policy.minLength
        s.temperature = temperature
        s.seed = seed
        s.stopTokens = [policy.termination]
        s.includeStopToken = true
        s.adjustment = policy.adjustment
        let ids = try readIds(x, nX, "x")
        try checkMemory(rows: Int(max(count, 0)), bytesPerRow: rowBytes(b.batcher.model.config, tokens: policy.maxLength),
                        "sampling \(count) trajectories")
        try submit(b, .sample(prompt: ids, n: Int(count), params: s, adapter: t.adapterHandle.adapter), nStop: 1,
                   bannedStopSteps: policy.minLength, options: options, out: out)
    }
}

@c @implementation
public func gfn_request_wait(_ request: OpaquePointer?, _ timeoutMs: Int32, _ finished: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(request, as: RequestHandle.self, "request")
        guard let r = h.request else { throw .internalError("request handle without a request") }
        let done = r.wait(timeoutNanoseconds: timeoutMs < 0 ? nil : UInt64(timeoutMs) * 1_000_000)
        finished?.pointee = done ? 1 : 0
    }
}

@c @implementation
public func gfn_request_cancel(_ request: OpaquePointer?) -> Int32 {
    capi { () throws(GFNError) in
        try handles.lookup(request, as: RequestHandle.self, "request").request?.cancel()
    }
}

/// The finished outcome of a request, or `.state` while it runs.
func finishedOutcome(_ request: OpaquePointer?) throws(GFNError) -> (RequestHandle, BatchOutcome) {
    let h = try handles.lookup(request, as: RequestHandle.self, "request")
    guard let result = h.request?.result else { throw .state("the request has not finished (wait for it first)") }
    switch result {
    case .success(let outcome): return (h, outcome)
    case .failure(let error): throw error
    }
}

@c @implementation
public func gfn_request_samples(_ request: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let o = try requirePointer(out, "out")
        let (h, outcome) = try finishedOutcome(request)
        guard case .samples(var samples) = outcome else { throw .state("this is a scoring request: use gfn_request_scores") }
        if h.bannedStopSteps > 0 {
            for i in samples.indices { samples[i].renormaliseWithoutStop(steps: h.bannedStopSteps) }
        }
        o.pointee = handles.register(SamplesHandle(samples: samples, nStop: h.nStop))
    }
}

@c @implementation
public func gfn_request_scores(_ request: OpaquePointer?, _ totals: UnsafeMutablePointer<Double>?,
                             _ tokenLogProbs: UnsafeMutablePointer<Float>?,
                             _ stopLogProbs: UnsafeMutablePointer<Float>?) -> Int32 {
    capi { () throws(GFNError) in
        let tot = try requirePointer(totals, "totals")
        let (_, outcome) = try finishedOutcome(request)
        guard case .scores(let scores) = outcome else { throw .state("this is a sampling request: use gfn_request_samples") }
        writeScores(scores, totals: tot, tokenLogProbs: tokenLogProbs, stopLogProbs: stopLogProbs)
    }
}

@c @implementation
public func gfn_request_free(_ request: OpaquePointer?) {
    guard let h = handles.remove(request, as: RequestHandle.self) else { return }
    h.detach()
    h.request?.cancel()
}

@c @implementation
public func gfn_batcher_stats_get(_ batcher: OpaquePointer?, _ out: UnsafeMutablePointer<gfn_batcher_stats>?) -> Int32 {
    capi { () throws(GFNError) in
        let b = try handles.lookup(batcher, as: BatcherHandle.self, "batcher")
        let o = try requirePointer(out, "out")
        try checkStructSize(o.pointee.size, min: MemoryLayout<gfn_batcher_stats>.size,
                            current: MemoryLayout<gfn_batcher_stats>.size, "gfn_batcher_stats")
        let s = b.batcher.statistics
        o.pointee = gfn_batcher_stats(size: UInt32(MemoryLayout<gfn_batcher_stats>.size), queued: Int32(s.queued),
                                      active_requests: Int32(s.activeRequests), active_rows: Int32(s.activeRows),
                                      submitted: Int64(s.submitted), completed: Int64(s.completed),
                                      failed: Int64(s.failed), cancelled: Int64(s.cancelled),
                                      rejected: Int64(s.rejected), tokens: Int64(s.tokens),
                                      decode_steps: Int64(s.decodeSteps))
    }
}

extension Sample {
    /// log q̃ for the first `steps` tokens: each log q(a) minus log(1 − q(⊤)), ⊤ being the single stop token whose
    /// log-probability `stopLogProbs` holds per step; `logProb` is their new sum.
    mutating func renormaliseWithoutStop(steps: Int) {
        for t in 0..<min(steps, tokenLogProbs.count, stopLogProbs.count) {
            tokenLogProbs[t] -= Float(log1p(-exp(Double(stopLogProbs[t]))))
        }
        logProb = tokenLogProbs.reduce(0) { $0 + Double($1) }
    }
}
