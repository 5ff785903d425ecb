/// What a batcher request asks for.
public enum BatchWork: @unchecked Sendable {
    /// `n` samples of one prompt, exactly as `InferenceContext.sample(prompts: [prompt], n:, params:, adapter:)`
    /// returns them.
    case sample(prompt: [Int32], n: Int, params: SamplingParams, adapter: LoRAAdapter?)
    /// Continuations scored given contexts, as `InferenceContext.score` returns them.
    case score(pairs: [(context: [Int32], continuation: [Int32])], params: ScoreParams, adapter: LoRAAdapter?)
}

/// What a finished request produced.
public enum BatchOutcome: Sendable {
    case samples([Sample])
    case scores([ScoreResult])
}

/// One request submitted to a `Batcher`: wait for it, poll it or cancel it from any thread. It finishes exactly
/// once — with its result, its error, or `.cancelled` — and `onDone` runs once then.
public final class BatchRequest: @unchecked Sendable {
    public let work: BatchWork
    /// Streaming: called on the batcher's thread for every token a sample gains, as (sample index, token,
    /// log-probability); returning false cancels the request. Must return quickly: the whole batch waits for it.
    let onToken: ((Int, Int32, Float) -> Bool)?
    /// Called once when the request finishes, on the thread that finished it (the batcher's, or the one that
    /// cancelled it or shut the batcher down), after the outcome is readable.
    let onDone: ((BatchRequest) -> Void)?
    /// Time of submission (monotonic nanoseconds).
    public let submittedAt: UInt64

    private let monitor = Monitor()
    private var outcome: Result<BatchOutcome, GFNError>?
    private var cancelRequested = false

    init(work: BatchWork, onToken: ((Int, Int32, Float) -> Bool)?, onDone: ((BatchRequest) -> Void)?) {
        self.work = work
        self.onToken = onToken
        self.onDone = onDone
        self.submittedAt = Monitor.now()
    }

    /// Rows the request occupies in the decoding batch (0 for scoring, which runs between decoding steps).
    var rows: Int {
        if case .sample(_, let n, _, _) = work { return n }
        return 0
    }

    /// The outcome once finished, nil while queued or running.
    public var result: Result<BatchOutcome, GFNError>? { monitor.withLock { outcome } }

    public var isFinished: Bool { result != nil }

    var isCancelRequested: Bool { monitor.withLock { cancelRequested } }

    /// Waits until the request finished or `timeoutNanoseconds` passed (nil: no limit). True when finished.
    public func wait(timeoutNanoseconds: UInt64? = nil) -> Bool {
        let deadline = timeoutNanoseconds.map { Monitor.now() &+ $0 }
        return monitor.withLock {
            while outcome == nil {
                if let deadline {
                    if !monitor.wait(until: deadline) && outcome == nil { return false }
                } else {
                    monitor.wait()
                }
            }
            return true
        }
    }

    /// Asks the batcher to stop the request; it finishes with `.cancelled` at the next token boundary (or at once
    /// while it waits in the queue). No effect once finished.
    public func cancel() {
        monitor.withLock { cancelRequested = true }
        cancelHook?()
    }

    /// Set by the batcher: wakes its scheduler so that a cancelled request does not wait for the next event.
    var cancelHook: (() -> Void)?

    /// Records the outcome if the request has none yet; true when this call finished it.
    @discardableResult
    func finish(_ r: Result<BatchOutcome, GFNError>) -> Bool {
        let first = monitor.withLock { () -> Bool in
            guard outcome == nil else { return false }
            outcome = r
            monitor.broadcast()
            return true
        }
        if first { onDone?(self) }
        return first
    }
}
