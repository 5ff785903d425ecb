/// One supervised example: maximise log p(target | context). The context is conditioning only (masked out of
/// the loss); it must hold at least one token.
public struct SFTExample: Sendable, Equatable {
    public var context: [Int32]
    public var target: [Int32]
    public init(context: [Int32], target: [Int32]) { self.context = context; self.target = target }
}

/// What one SFT step (or evaluation) measured.
public struct SFTStats: Sendable {
    /// Mean negative log-likelihood per target token (nats), over the batch (all micro-batches of a step).
    public let loss: Double
    /// exp(loss).
    public let perplexity: Double
    /// Target tokens counted.
    public let tokens: Int
    /// Global gradient norm before clipping (of the token-mean loss); NaN for evaluations.
    public let gradNorm: Double
    /// False when the optimiser skipped the step (non-finite loss or gradient).
    public let applied: Bool
    /// Optimiser steps applied so far.
    public let step: Int
    /// Learning rate used (first group).
    public let learningRate: Double
    public let message: String?
}

/// Supervised fine-tuning: minimise the mean NLL of the target tokens given their contexts, with a LoRA adapter
/// (only A and B train; the base weights are shared and untouched) or with every weight (`adapter == nil`: the
/// trainer makes its own trainable copy of the weights, exposed as `transformer`).
///
/// Batches may mix lengths: each row is context ⊕ target, left-padded to the longest row, in one traced forward.
/// Gradient accumulation: `accumulate` several micro-batches, then `apply`; the loss is the mean over all target
/// tokens of the accumulated micro-batches (the gradients of each micro-batch's NLL sum are added, then scaled by
/// 1/total tokens). `step` is `accumulate` + `apply` for one batch.
public final class SFTTrainer: @unchecked Sendable {
    public let transformer: Transformer
    public let adapter: LoRAAdapter?
    public let gradients: Gradients
    public let optimizer: AdamW
    /// Set to enable LoRA dropout in the training forward (the adapter's probability); nil = deterministic.
    public var dropoutRNG: RNG?
    /// Restricted cross-entropy (nil: the full vocabulary): every target token's loss is
    /// −log softmax over these candidate tokens only, −log p(t) + log Σ_c p(c) — e.g. the two label tokens of a
    /// classifier ("objective" / "subjective"), where the full-vocabulary NLL would also train the mass on every
    /// other token. Each target token must be one of them.
    public var labelCandidates: [Int32]? {
        didSet { if labelCandidates?.isEmpty == true { labelCandidates = nil } }
    }

    let workspace: ForwardWorkspace
    let trace: ForwardTrace
    let backwardWorkspace: BackwardWorkspace
    let head: TokenLogProbs
    var pendingLoss = 0.0
    var pendingTokens = 0
    /// Data-parallel replicas (`setDistributed`); nil in a single process.
    var exchange: GradientExchange?
    private var dHidden: [Float] = []
    /// KV caches reused across steps of the same shape (fresh 20 MB allocations per step cost page faults).
    private var cachePool: [KVCache] = []

    func caches(rows: Int, T: Int) throws(GFNError) -> [KVCache] {
        if cachePool.count != rows || cachePool.first?.capacity != T {
            cachePool = try (0..<rows).map { _ throws(GFNError) in try transformer.makeCache(capacity: T) }
        }
        for c in cachePool { c.reset() }
        return cachePool
    }

    public init(transformer base: Transformer, adapter: LoRAAdapter?, hyper: AdamWHyperparameters = .init(),
                schedule: LRSchedule = .constant, maxGradNorm: Double? = nil) throws(GFNError) {
        if let adapter {
            transformer = base
            gradients = try Gradients(adapter: adapter)
            try adapter.validate(against: base.weights)
        } else {
            transformer = Transformer(weights: try base.weights.trainableCopy(), threads: base.threads)
            gradients = try Gradients(model: transformer.weights)
        }
        self.adapter = adapter
        optimizer = try AdamW(parameters: gradients.parameters, hyper: hyper, schedule: schedule,
                              maxGradNorm: maxGradNorm, threads: base.threads)
        workspace = try ForwardWorkspace()
        trace = try ForwardTrace()
        backwardWorkspace = try BackwardWorkspace()
        head = try TokenLogProbs(transformer: transformer)
    }

    /// Rows, T, the left-padded flat inputs, paddings and (row·T + t, token) targets.
    func layout(_ batch: [SFTExample]) throws(GFNError) -> (T: Int, tokens: [Int32], padding: [Int], targets: [(Int, Int32)]) {
        guard !batch.isEmpty else { throw .invalidArgument("empty SFT batch") }
        var T = 0
        for (i, ex) in batch.enumerated() {
            guard !ex.context.isEmpty else { throw .invalidArgument("SFT example \(i): the context is empty (it needs at least one token)") }
            guard !ex.target.isEmpty else { throw .invalidArgument("SFT example \(i): the target is empty") }
            let n = ex.context.count + ex.target.count - 1
            guard n <= transformer.config.nPositions else {
                throw .outOfRange("SFT example \(i): \(n + 1) tokens exceed the model's \(transformer.config.nPositions) positions")
            }
            T = max(T, n)
        }
        var tokens: [Int32] = []
        tokens.reserveCapacity(batch.count * T)
        var padding: [Int] = []
        var targets: [(Int, Int32)] = []
        for (r, ex) in batch.enumerated() {
            let seq = ex.context + ex.target
            let n = seq.count - 1
            let pad = T - n
            padding.append(pad)
            tokens += [Int32](repeating: 0, count: pad) + seq[0..<n]
            // input index i (0-based in seq) predicts seq[i + 1]; targets start at seq index context.count
            for j in ex.context.count..<seq.count {
                targets.append((r * T + pad + j - 1, seq[j]))
            }
        }
        return (T, tokens, padding, targets)
    }

    /// Forward + backward of one micro-batch; gradients are added (sum of NLL). Returns (NLL sum, target tokens).
    @discardableResult
    public func accumulate(_ batch: [SFTExample]) throws(GFNError) -> (nll: Double, tokens: Int) {
        let (T, tokens, padding, targets) = try layout(batch)
        let rows = batch.count
        let caches = try caches(rows: rows, T: T)
        trace.dropoutRNG = dropoutRNG
        let hidden = try tokens.withUnsafeBufferPointer { tb throws(GFNError) in
            try transformer.forward(tokens: tb, rows: rows, T: T, caches: caches, padding: padding, adapter: adapter,
                                    workspace: workspace, trace: trace)
        }
        head.dropoutRNG = trace.dropoutRNG
        try head.forward(hidden: hidden, hiddenCount: rows * T, rows: targets.map { $0.0 }, adapter: adapter)
        dropoutRNG = head.dropoutRNG
        let (nll, entries) = try targetLoss(targets)
        let E = transformer.config.nEmbd
        if dHidden.count < rows * T * E { dHidden = [Float](repeating: 0, count: rows * T * E) }
        let grads = gradients
        let tf = transformer, lp = head, tr = trace, bws = backwardWorkspace
        try dHidden.withUnsafeMutableBufferPointer { b throws(GFNError) in
            guard let p = b.baseAddress else { throw .internalError("empty gradient buffer") }
            try lp.backward(entries: entries, dHidden: p, gradients: grads)
            try tf.backward(trace: tr, dHidden: p, gradients: grads, workspace: bws)
        }
        pendingLoss += nll
        pendingTokens += targets.count
        return (nll, targets.count)
    }

    /// One optimiser step over everything accumulated since the last step (token-mean loss), then zeroes the
    /// gradients. A non-finite loss or gradient skips the update (see `SFTStats.applied`). Distributed, the
    /// token-mean is over every rank's tokens; a failing exchange throws, and the accumulated gradients are
    /// dropped with the parameters and optimiser unchanged.
    public func apply() throws(GFNError) -> SFTStats {
        var total = (nll: pendingLoss, tokens: Double(pendingTokens))
        do throws(GFNError) {
            total = try exchangeGradients(nll: total.nll, tokens: total.tokens)
        } catch {
            optimizer.zeroGrad()
            pendingLoss = 0
            pendingTokens = 0
            throw error
        }
        let n = max(total.tokens, 1)
        let loss = total.nll / n
        let r = optimizer.step(gradientScale: Float(1 / n), loss: loss)
        optimizer.zeroGrad()
        let tokens = Int(total.tokens.rounded())
        pendingLoss = 0
        pendingTokens = 0
        return SFTStats(loss: loss, perplexity: exp(loss), tokens: tokens, gradNorm: r.gradNorm, applied: r.applied,
                        step: r.step, learningRate: r.learningRates.first ?? 0, message: r.message)
    }

    /// The NLL sum of the head's targets and its gradient entries (dL/d log p per token): −1 on the target for the
    /// full vocabulary; with `labelCandidates`, softmax_C(c) − [c = t] on every candidate c.
    func targetLoss(_ targets: [(Int, Int32)]) throws(GFNError)
        -> (nll: Double, entries: [(index: Int, token: Int32, grad: Float)]) {
        var nll = 0.0
        var entries: [(index: Int, token: Int32, grad: Float)] = []
        guard let cands = labelCandidates else {
            for (i, t) in targets.enumerated() {
                nll -= Double(try head.logProb(i, t.1))
                entries.append((i, t.1, -1))
            }
            return (nll, entries)
        }
        for (i, t) in targets.enumerated() {
            guard cands.contains(t.1) else {
                throw .invalidArgument("target token \(t.1) is not one of the label candidates \(cands)")
            }
            var lps: [Double] = []
            for c in cands { lps.append(Double(try head.logProb(i, c))) }
            let m = lps.max() ?? 0
            let lse = m + log(lps.reduce(0) { $0 + exp($1 - m) })
            nll += lse - Double(try head.logProb(i, t.1))
            for (c, lp) in zip(cands, lps) {
                entries.append((i, c, Float(exp(lp - lse) - (c == t.1 ? 1 : 0))))
            }
        }
        return (nll, entries)
    }

    /// `accumulate(batch)` then `apply()`.
    public func step(_ batch: [SFTExample]) throws(GFNError) -> SFTStats {
        do throws(GFNError) {
            try accumulate(batch)
        } catch {
            optimizer.zeroGrad()   // a partial micro-batch must not leak into the next step
            pendingLoss = 0
            pendingTokens = 0
            throw error
        }
        return try apply()
    }

    /// Mean target NLL and perplexity without gradients (no dropout).
    public func evaluate(_ batch: [SFTExample]) throws(GFNError) -> SFTStats {
        let (T, tokens, padding, targets) = try layout(batch)
        let rows = batch.count
        let caches = try caches(rows: rows, T: T)
        let hidden = try tokens.withUnsafeBufferPointer { tb throws(GFNError) in
            try transformer.forward(tokens: tb, rows: rows, T: T, caches: caches, padding: padding, adapter: adapter,
                                    workspace: workspace)
        }
        head.dropoutRNG = nil
        try head.forward(hidden: hidden, hiddenCount: rows * T, rows: targets.map { $0.0 }, adapter: adapter)
        let nll = try targetLoss(targets).nll
        let loss = nll / Double(max(1, targets.count))
        return SFTStats(loss: loss, perplexity: exp(loss), tokens: targets.count, gradNorm: .nan, applied: false,
                        step: optimizer.stepCount, learningRate: optimizer.learningRate(group: 0), message: nil)
    }
}
