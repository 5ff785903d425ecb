/// Serves many concurrent requests on one model with continuous batching: every request's samples join one
/// decoding batch at a token boundary, leave it when they finish, and share every pass through the base weights;
/// requests under different LoRA adapters share the same batch (each row group adds its own low-rank delta).
///
/// One scheduler thread owns the model's passes. Each turn it admits queued requests in arrival order while they
/// fit in `maxBatch` rows, prefills their prompts (at most `maxPrefillTokens` prompt tokens per turn, so a burst
/// of long prompts cannot stall the decoding rows for long), runs at most one scoring request, and then takes one
/// decoding step for every active sample. A request's result depends only on (model, adapter, prompt, parameters,
/// seed) — with a batch-invariant model (`Transformer.rowInvariantDecoding`) it equals what
/// `InferenceContext.sample` / `score` return for the same arguments, whatever else shares the batch.
///
/// Thread-safe: submit, cancel and wait from any thread. A full queue refuses a submission with `.busy` (or the
/// submitter waits for room, when it asks to). `shutdown` drains or cancels; every request finishes exactly once.
/// The scheduler thread holds the batcher until `shutdown`: call it before dropping the last reference (the C and
/// Python wrappers do when freed or closed).
public final class Batcher: @unchecked Sendable {
    public struct Config: Sendable {
        /// Samples (rows) decoded together at most.
        public var maxBatch = 32
        /// Requests waiting for admission at most; beyond it submissions get `.busy`.
        public var maxQueue = 256
        /// Prompt tokens prefilled per scheduler turn at most (a longer prompt is still prefilled, alone).
        public var maxPrefillTokens = 512
        public init() {}
    }

    /// Counters since the batcher started.
    public struct Statistics: Sendable {
        public var queued = 0
        public var activeRequests = 0
        public var activeRows = 0
        public var submitted = 0
        public var completed = 0
        public var failed = 0
        public var cancelled = 0
        public var rejected = 0
        public var tokens = 0
        public var decodeSteps = 0
    }

    public let model: Model
    public let config: Config

    private enum State { case running, draining, cancelling, stopped }

    private let monitor = Monitor()
    // Guarded by `monitor`:
    private var queue: [BatchRequest] = []
    private var queueHead = 0
    private var state = State.running
    private var stats = Statistics()
    private var wakeups = 0
    private var thread: pthread_t?

    // Scheduler thread only:
    private var active: [ActiveRequest] = []
    private let context: InferenceContext
    private let stepLogits: FloatStorage

    public init(model: Model, config: Config = Config()) throws(GFNError) {
        guard config.maxBatch > 0 else { throw .invalidArgument("max_batch must be positive (got \(config.maxBatch))") }
        guard config.maxQueue > 0 else { throw .invalidArgument("max_queue must be positive (got \(config.maxQueue))") }
        guard config.maxPrefillTokens > 0 else {
            throw .invalidArgument("max_prefill_tokens must be positive (got \(config.maxPrefillTokens))")
        }
        self.model = model
        self.config = config
        self.context = try InferenceContext(model: model)
        self.stepLogits = try FloatStorage(count: config.maxBatch * model.config.vocabSize)
        try startScheduler()
    }

    deinit { shutdown(drain: false) }  // reached only after shutdown (see above); harmless then

    // MARK: - Submission

    /// Queues a request. Its inputs are checked here (a bad prompt or parameter fails the submission, not the
    /// request). A full queue throws `.busy`, or with `block` waits for room. After `shutdown`: `.state`.
    public func submit(_ work: BatchWork, block: Bool = false, onToken: ((Int, Int32, Float) -> Bool)? = nil,
                       onDone: ((BatchRequest) -> Void)? = nil) throws(GFNError) -> BatchRequest {
        try validate(work)
        let request = BatchRequest(work: work, onToken: onToken, onDone: onDone)
        request.cancelHook = { [weak self] in self?.wake() }
        try monitor.withLock { () throws(GFNError) in
            while true {
                guard state == .running else { throw .state("the batcher is shut down") }
                if queue.count - queueHead < config.maxQueue { break }
                guard block else {
                    stats.rejected += 1
                    throw GFNError(.busy, "the batcher's queue is full (\(config.maxQueue) requests waiting)")
                }
                monitor.wait()
            }
            queue.append(request)
            stats.submitted += 1
            monitor.broadcast()
        }
        return request
    }

    private func validate(_ work: BatchWork) throws(GFNError) {
        switch work {
        case .sample(let prompt, let n, let params, let adapter):
            guard n > 0 else { throw .invalidArgument("n (samples) must be positive (got \(n))") }
            guard n <= config.maxBatch else {
                throw .invalidArgument("n (\(n)) exceeds the batcher's max_batch (\(config.maxBatch))")
            }
            try context.checkPrompt(prompt, index: 0)
            _ = try SamplingPolicy(params: params, config: model.config, longestPrompt: prompt.count, adapter: adapter)
        case .score(let pairs, _, _):
            guard !pairs.isEmpty else { throw .invalidArgument("no (context, continuation) pairs to score") }
        }
    }

    /// Statistics now (queue depth, active rows, counters).
    public var statistics: Statistics {
        monitor.withLock {
            var s = stats
            s.queued = queue.count - queueHead
            return s
        }
    }

    /// Stops the scheduler and waits for it. `drain`: queued and running requests complete first; otherwise they
    /// finish with `.cancelled` at the next token boundary. Later submissions are refused. Idempotent.
    public func shutdown(drain: Bool) {
        let toJoin: pthread_t? = monitor.withLock {
            if state == .running || (state == .draining && !drain) { state = drain ? .draining : .cancelling }
            monitor.broadcast()
            let t = thread
            thread = nil
            return t
        }
        if let toJoin { pthread_join(toJoin, nil) }
    }

    private func wake() {
        monitor.withLock {
            wakeups += 1
            monitor.broadcast()
        }
    }

    // MARK: - Scheduler

    private func startScheduler() throws(GFNError) {
        let box = Unmanaged.passRetained(SchedulerBox(self))
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<SchedulerBox>.fromOpaque(raw).takeRetainedValue()
            box.batcher?.runScheduler()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw .internalError("cannot start the batcher's thread (pthread_create: \(rc))")
        }
        monitor.withLock { thread = t }
    }

    /// One turn's admissions, taken under the lock.
    private struct Turn {
        var admitted: [BatchRequest] = []
        var scoring: BatchRequest?
        var dropped: [BatchRequest] = []
        var stop = false
        var cancelAll = false
    }

    private func nextTurn() -> Turn {
        monitor.withLock {
            var turn = Turn()
            while state == .running && queue.count == queueHead && active.isEmpty && wakeups == 0 {
                monitor.wait()
            }
            wakeups = 0
            if state == .cancelling {
                turn.cancelAll = true
                turn.dropped = Array(queue[queueHead...])
                queue.removeAll()
                queueHead = 0
                turn.stop = true
                return turn
            }
            var rows = active.reduce(0) { $0 + $1.liveRows }
            var prefill = 0
            while queueHead < queue.count {
                let r = queue[queueHead]
                if r.isCancelRequested {
                    turn.dropped.append(r)
                    queueHead += 1
                    continue
                }
                if case .score = r.work {
                    if turn.scoring != nil { break }
                    turn.scoring = r
                } else {
                    guard case .sample(let prompt, _, _, _) = r.work else { break }
                    if rows + r.rows > config.maxBatch { break }
                    if prefill > 0 && prefill + prompt.count > config.maxPrefillTokens { break }
                    rows += r.rows
                    prefill += prompt.count
                    turn.admitted.append(r)
                }
                queueHead += 1
            }
            if queueHead > 64 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            monitor.broadcast()  // room in the queue for blocked submitters
            turn.stop = state == .draining && queueHead == queue.count && active.isEmpty
                && turn.admitted.isEmpty && turn.scoring == nil
            return turn
        }
    }

    private func runScheduler() {
        while true {
            let turn = nextTurn()
            for r in turn.dropped { finish(r, .failure(.cancelled("the request was cancelled"))) }
            if turn.cancelAll {
                for a in active { finish(a.request, .failure(.cancelled("the batcher was shut down"))) }
                active.removeAll()
            }
            if turn.stop { break }
            for a in active where a.request.isCancelRequested {
                finish(a.request, .failure(.cancelled("the request was cancelled")))
            }
            active.removeAll { $0.request.isFinished }
            admit(turn.admitted)
            publishActivity()
            if let s = turn.scoring { runScoring(s) }
            if !active.isEmpty { decodeStep() }
            publishActivity()
        }
        monitor.withLock { state = .stopped }
    }

    private func publishActivity() {
        let requests = active.count, rows = active.reduce(0) { $0 + $1.liveRows }
        monitor.withLock {
            stats.activeRequests = requests
            stats.activeRows = rows
        }
    }

    private func finish(_ r: BatchRequest, _ outcome: Result<BatchOutcome, GFNError>) {
        guard r.finish(outcome) else { return }
        monitor.withLock {
            switch outcome {
            case .success: stats.completed += 1
            case .failure(let e) where e.status == .cancelled: stats.cancelled += 1
            case .failure: stats.failed += 1
            }
        }
    }

    /// Prefills the prompts of the sampling requests admitted in one turn together (one pass over the weights for
    /// all of them, adapters grouped) and puts their samples in the decoding batch. With batch invariance each
    /// prompt's cache is what prefilling it alone gives. Should the shared pass fail (memory), each request is
    /// retried alone so that one request's failure stays its own.
    private func admit(_ requests: [BatchRequest]) {
        let V = model.config.vocabSize
        var ready: [(request: BatchRequest, prompt: [Int32], n: Int, policy: SamplingPolicy, adapter: LoRAAdapter?)] = []
        for r in requests {
            guard case .sample(let prompt, let n, let params, let adapter) = r.work else { continue }
            do throws(GFNError) {
                let policy = try SamplingPolicy(params: params, config: model.config, longestPrompt: prompt.count,
                                                adapter: adapter)
                ready.append((r, prompt, n, policy, adapter))
            } catch {
                finish(r, .failure(error))
            }
        }
        guard !ready.isEmpty else { return }
        // Requests with the same prompt under the same adapter share one prefill (as the samples of one request do):
        // the cache is the same whichever request computed it.
        var unique: [PrefillItem] = []
        var slot: [Int] = []
        for item in ready {
            if let j = unique.firstIndex(where: { $0.adapter === item.adapter && $0.prompt == item.prompt }) {
                slot.append(j)
            } else {
                slot.append(unique.count)
                unique.append(PrefillItem(prompt: item.prompt, adapter: item.adapter))
            }
        }
        let shared: (logits: FloatStorage, caches: [KVCache])?
        do throws(GFNError) {
            let logits = try FloatStorage(count: unique.count * V)
            let caches = try context.prefill(unique, logits: logits.base)
            shared = (logits, caches)
        } catch {
            shared = nil
        }
        for (i, item) in ready.enumerated() {
            do throws(GFNError) {
                let logits: FloatStorage, prefix: KVCache
                if let shared {
                    logits = try FloatStorage(count: V)
                    logits.base.update(from: shared.logits.base + slot[i] * V, count: V)
                    prefix = shared.caches[slot[i]]
                } else {
                    logits = try FloatStorage(count: V)
                    prefix = try context.prefill(item.prompt, adapter: item.adapter, logits: logits.base)
                }
                var seqs: [DecodingSequence] = []
                for k in 0..<item.n {
                    seqs.append(DecodingSequence(policy: item.policy, promptIndex: 0, index: k,
                                                 cache: try model.transformer.makeCache(capacity: item.policy.maxNew,
                                                                                        prefix: prefix),
                                                 logits: logits.base))
                }
                active.append(ActiveRequest(request: item.request, sequences: seqs, prefillLogits: logits))
            } catch {
                finish(item.request, .failure(error))
            }
        }
    }

    private func runScoring(_ r: BatchRequest) {
        guard case .score(let pairs, let params, let adapter) = r.work else { return }
        do throws(GFNError) {
            finish(r, .success(.scores(try context.score(pairs, params: params, adapter: adapter))))
        } catch {
            finish(r, .failure(error))
        }
    }

    /// One decoding step: every live sample draws its next token (streamed to its request), finished requests
    /// complete, and the still-running samples take one pass together, grouped by adapter.
    private func decodeStep() {
        let V = model.config.vocabSize
        var live: [(request: ActiveRequest, index: Int, seq: DecodingSequence)] = []
        for a in active {
            for (k, seq) in a.sequences.enumerated() where !seq.finished { live.append((a, k, seq)) }
        }
        DecodingSequence.advanceEach(live.map(\.seq), choosers: context.choosers(model.transformer.threads), vocab: V)
        var produced = 0
        for (a, k, seq) in live where seq.appendedToken {
            produced += 1
            if let onToken = a.request.onToken, let tok = seq.sample.tokens.last, let lp = seq.sample.tokenLogProbs.last,
               !onToken(k, tok, lp) {
                a.request.cancel()
            }
        }
        for a in active {
            if let failure = a.failure {
                finish(a.request, .failure(failure))
            } else if a.request.isCancelRequested {
                finish(a.request, .failure(.cancelled("the request was cancelled")))
            } else if a.sequences.allSatisfy(\.finished) {
                finish(a.request, .success(.samples(a.sequences.map(\.sample))))
            }
        }
        active.removeAll { $0.request.isFinished }
        monitor.withLock {
            stats.tokens += produced
            stats.decodeSteps += 1
        }
        if active.isEmpty { return }
        // Rows grouped by adapter (requests under one adapter side by side), then one pass for all of them.
        let ordered = active.sorted { $0.adapterKey < $1.adapterKey }
        var rows: [DecodingSequence] = []
        var groups: [AdapterGroup] = []
        for a in ordered {
            let mine = a.sequences.filter { !$0.finished }
            if let adapter = a.request.adapter {
                if let last = groups.last, last.adapter === adapter, last.rows.upperBound == rows.count {
                    groups[groups.count - 1] = AdapterGroup(adapter: adapter, rows: last.rows.lowerBound..<rows.count + mine.count)
                } else {
                    groups.append(AdapterGroup(adapter: adapter, rows: rows.count..<rows.count + mine.count))
                }
            }
            rows.append(contentsOf: mine)
        }
        do throws(GFNError) {
            let tf = model.transformer
            let feed = rows.map(\.nextToken), caches = rows.map(\.cache)
            try tf.gate.run { () throws(GFNError) in
                let hidden = try feed.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try tf.forward(tokens: tb, rows: feed.count, T: 1, caches: caches, adapterGroups: groups,
                                   workspace: context.workspace)
                }
                try tf.logits(hidden: hidden, count: feed.count, adapter: nil, adapterGroups: groups, decoding: true,
                              into: stepLogits.base)
            }
            for (i, seq) in rows.enumerated() { seq.logits = UnsafePointer(stepLogits.base + i * V) }
        } catch {
            // A pass failed for everyone in it (e.g. out of memory): fail the requests, keep serving the queue.
            for a in active { finish(a.request, .failure(error)) }
            active.removeAll()
        }
    }
}

/// A sampling request in the decoding batch.
private final class ActiveRequest {
    let request: BatchRequest
    let sequences: [DecodingSequence]
    /// The prompt's last logits: step 0 of every sample reads them.
    let prefillLogits: FloatStorage

    init(request: BatchRequest, sequences: [DecodingSequence], prefillLogits: FloatStorage) {
        self.request = request
        self.sequences = sequences
        self.prefillLogits = prefillLogits
    }

    var liveRows: Int { sequences.reduce(0) { $0 + ($1.finished ? 0 : 1) } }

    /// The first sample that could not produce a token fails the request.
    var failure: GFNError? {
        guard let i = sequences.firstIndex(where: { $0.failed }) else { return nil }
        return GFNError(.numerical, "sample \(i): no token can be produced at step \(sequences[i].sample.steps) "
                        + "(every token is masked, or the logits are not finite)")
    }

    /// Orders requests so that those under one adapter are adjacent (nil first).
    var adapterKey: UInt { request.adapter.map { UInt(bitPattern: ObjectIdentifier($0).hashValue) } ?? 0 }
}

extension BatchRequest {
    var adapter: LoRAAdapter? {
        switch work {
        case .sample(_, _, _, let a): return a
        case .score(_, _, let a): return a
        }
    }
}

/// Hands the batcher to its thread without a retain cycle through the thread's start argument.
private final class SchedulerBox {
    weak var batcher: Batcher?
    init(_ b: Batcher) { batcher = b }
}
