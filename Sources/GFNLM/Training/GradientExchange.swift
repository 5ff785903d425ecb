/// Data-parallel training over K workers (processes or hosts) through an all-reduce that the host brings (MPI, or
/// anything else): every worker computes the gradient of its own share of the batch, the host replaces one
/// contiguous float buffer by its element-wise **mean** over the workers, and every worker then takes the same
/// clipped AdamW step. The library links no communication library; it only calls `reduce`.
///
/// Why a mean of float32: the trainers' gradients are float32, so the buffer is half the bytes of doubles, and a mean
/// (rather than a sum) keeps the gradient of "K workers × batch b" on the scale of one process with batch K·b (each
/// worker's loss is already a mean over its own trajectories or tokens; see `scales(terms:)` and the SFT hook for
/// losses whose normaliser differs between workers). Statistics that need double precision travel as two floats
/// (hi + lo). Replicas stay bit-identical because every worker applies the same averaged bytes — the host must
/// hand every rank the same result (MPI's Allreduce does for the reduction algorithms in use; a per-step replica
/// digest in the buffer detects it if not).
public final class GradientExchange: @unchecked Sendable {
    /// The host's all-reduce: replace the buffer in place by the element-wise mean over all workers (the same bytes
    /// on every worker). It must return within a bounded time or throw; every worker calls it with the same length
    /// in the same order.
    public typealias Reduce = (UnsafeMutableBufferPointer<Float>) throws(GFNError) -> Void

    public let rank: Int
    public let worldSize: Int
    /// GFlowNet: every step, each rank's best fresh trajectory (highest log R) travels in the gradient buffer to every
    /// other rank, which adds it to its replay buffer like its own samples. Off: replay buffers stay per rank.
    public var exchangeReplay = false
    let reduce: Reduce
    /// Whether the first exchange confirmed that every worker runs the same configuration.
    public private(set) var verified = false
    /// Bytes handed to `reduce` so far (all calls), and calls made: for benchmarks.
    public private(set) var bytesExchanged = 0
    public private(set) var calls = 0
    /// Seconds spent inside `reduce` (wall clock).
    public private(set) var secondsInReduce = 0.0
    private var scratch: [Float] = []

    /// The largest world size for which the digest's integer sums stay exact in float32.
    public static let maxWorldSize = 16384

    public init(rank: Int, worldSize: Int, reduce: @escaping Reduce) throws(GFNError) {
        guard worldSize >= 1 && worldSize <= GradientExchange.maxWorldSize else {
            throw .invalidArgument("world_size must lie in 1…\(GradientExchange.maxWorldSize) (got \(worldSize))")
        }
        guard rank >= 0 && rank < worldSize else { throw .invalidArgument("rank \(rank) outside 0..<\(worldSize)") }
        self.rank = rank
        self.worldSize = worldSize
        self.reduce = reduce
    }

    /// Calls the host's reduce on `buffer` and keeps the counters.
    func allReduce(_ buffer: inout [Float]) throws(GFNError) {
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        try buffer.withUnsafeMutableBufferPointer { (b) throws(GFNError) in try reduce(b) }
        clock_gettime(CLOCK_MONOTONIC, &t1)
        secondsInReduce += Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) * 1e-9
        bytesExchanged += buffer.count * MemoryLayout<Float>.size
        calls += 1
    }

    // MARK: - configuration digest (first exchange)

    /// One compared item of a worker's configuration: its name and this worker's value, as text.
    public struct Field: Sendable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    /// Slots of the digest buffer: fixed, so that workers with different libraries still call `reduce` with the
    /// same length (and learn that they differ instead of corrupting each other's buffers).
    static let digestSlots = 64
    /// A 64-bit hash per slot, as 16 nibbles; each nibble x travels as (x, x²): all workers agree on a slot iff
    /// K·Σx² = (Σx)² for every nibble (variance zero), which every worker computes from the same averaged bytes —
    /// so all of them reach the same verdict, and none waits in a next exchange that the others skip.
    static let floatsPerSlot = 32

    /// Compares `fields` across workers (and that the ranks are distinct) at the first exchange; afterwards a no-op.
    /// Throws GFN_ERR_STATE naming every field that differs, with this worker's value.
    public func verify(_ fields: [Field]) throws(GFNError) {
        guard !verified else { return }
        guard worldSize > 1 else { verified = true; return }
        var all = [Field("digest format", "gfnlm-distributed-1 (\(fields.count) fields)"), Field("world_size", "\(worldSize)")]
        all += fields
        guard all.count <= GradientExchange.digestSlots else {
            throw .internalError("\(all.count) digest fields exceed the \(GradientExchange.digestSlots) slots")
        }
        let n = GradientExchange.floatsPerSlot
        var buf = [Float](repeating: 0, count: GradientExchange.digestSlots * n)
        for (i, f) in all.enumerated() {
            let h = Digest.hash(f.value)
            for j in 0..<16 {
                let x = Float((h >> (4 * UInt64(j))) & 0xF)
                buf[i * n + 2 * j] = x
                buf[i * n + 2 * j + 1] = x * x
            }
        }
        try allReduce(&buf)
        let K = Double(worldSize)
        var differ: [String] = []
        for (i, f) in all.enumerated() {
            var same = true
            for j in 0..<16 {
                let s1 = (Double(buf[i * n + 2 * j]) * K).rounded(), s2 = (Double(buf[i * n + 2 * j + 1]) * K).rounded()
                if s2 * K != s1 * s1 { same = false }
            }
            if !same { differ.append("\(f.name) (this rank: \(f.value))") }
        }
        guard differ.isEmpty else {
            throw .state("the \(worldSize) ranks differ in " + differ.joined(separator: "; ")
                         + ": every rank must run the same model, adapter shape, training parameters and state")
        }
        // distinct ranks: one-hot of length K, every entry 1 after summing (the length is agreed: world_size matched)
        var onehot = [Float](repeating: 0, count: worldSize)
        onehot[rank] = 1
        try allReduce(&onehot)
        let claimed = onehot.map { Int((Double($0) * K).rounded()) }
        if let r = claimed.firstIndex(where: { $0 != 1 }) {
            throw .state("rank \(r) is claimed by \(claimed[r]) processes (this one is rank \(rank)): ranks must be 0..<\(worldSize), each once")
        }
        verified = true
    }

    /// Forgets the verification (after loading a checkpoint: the next exchange compares again).
    public func resetVerification() { verified = false }

    // MARK: - per-micro-batch loss normalisers

    /// Losses normalised by a count that varies with the sampled trajectories (SubTB's pooled sub-trajectory
    /// weight, DB's rows with a transition): the merged batch divides the sum over all workers by the sum of their
    /// counts, so worker k's gradient must be scaled by T_k / mean(T) before the mean over workers. One small
    /// exchange per pass (the counts of its micro-batches); all workers run the same passes, as they share the plan.
    func scales(terms: [Double]) throws(GFNError) -> [Double] {
        guard worldSize > 1 else { return terms.map { _ in 1 } }
        var buf = [Float](repeating: 0, count: 2 * terms.count)
        for (i, t) in terms.enumerated() { Digest.split(t, into: &buf, at: 2 * i) }
        try allReduce(&buf)
        return terms.enumerated().map { i, t in
            let mean = Digest.join(buf, at: 2 * i)
            return mean > 0 ? t / mean : 0
        }
    }

    // MARK: - gradients

    /// Replaces the gradients of `parameters` by their mean over workers, `stats` (doubles) by their means, and
    /// checks `replica` (a digest of the state every worker must share: step, RNG, a sample of the parameters)
    /// against the other workers'. `payload` (any floats, e.g. rank-indexed slots) is replaced by its mean too.
    /// One call of `reduce` with the gradients, 2 floats per statistic, 32 floats of replica digest and the payload.
    func averageGradients(_ parameters: [Parameter], stats: inout [Double], replica: UInt64,
                          payload: inout [Float]) throws(GFNError) {
        let total = parameters.reduce(0) { $0 + $1.count }
        let length = total + 2 * stats.count + 32 + payload.count
        if scratch.count != length { scratch = [Float](repeating: 0, count: length) }
        var o = 0
        scratch.withUnsafeMutableBufferPointer { b in
            for p in parameters {
                (b.baseAddress! + o).update(from: p.grad.pointer, count: p.count)
                o += p.count
            }
        }
        for (i, s) in stats.enumerated() { Digest.split(s, into: &scratch, at: total + 2 * i) }
        let r0 = total + 2 * stats.count
        for (i, x) in payload.enumerated() { scratch[r0 + 32 + i] = x }
        for j in 0..<16 {
            let x = Float((replica >> (4 * UInt64(j))) & 0xF)
            scratch[r0 + 2 * j] = x
            scratch[r0 + 2 * j + 1] = x * x
        }
        try allReduce(&scratch)
        let K = Double(worldSize)
        for j in 0..<16 {
            let s1 = (Double(scratch[r0 + 2 * j]) * K).rounded(), s2 = (Double(scratch[r0 + 2 * j + 1]) * K).rounded()
            guard s2 * K == s1 * s1 else {
                throw .state("the replicas diverged before this step (their step, RNG or parameters differ): the "
                             + "all-reduce must give every rank the same bytes, and every rank must load the same checkpoint")
            }
        }
        o = 0
        scratch.withUnsafeBufferPointer { b in
            for p in parameters {
                p.grad.pointer.update(from: b.baseAddress! + o, count: p.count)
                o += p.count
            }
        }
        for i in stats.indices { stats[i] = Digest.join(scratch, at: total + 2 * i) }
        for i in payload.indices { payload[i] = scratch[r0 + 32 + i] }
    }
}

/// Hashes and float packing for the exchange.
enum Digest {
    /// FNV-1a, 64 bit.
    static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Hash of float values (bit patterns), every `stride`-th element.
    static func hash(_ p: UnsafePointer<Float>, count: Int, stride: Int = 1, into h: inout UInt64) {
        var i = 0
        p.withMemoryRebound(to: UInt32.self, capacity: count) { w in
            while i < count {
                h = (h ^ UInt64(w[i])) &* 0x100_0000_01b3
                h ^= h >> 29
                i += stride
            }
        }
    }

    static func hash(_ t: Tensor, stride: Int = 1, into h: inout UInt64) {
        hash(t.pointer, count: t.count, stride: stride, into: &h)
    }

    /// A double as two floats whose sum is the double to ~2^-48 relative: means of hi and lo parts add up to the
    /// mean of the doubles (to that precision).
    static func split(_ x: Double, into buf: inout [Float], at i: Int) {
        let hi = Float(x)
        buf[i] = hi
        buf[i + 1] = hi.isFinite ? Float(x - Double(hi)) : 0
    }

    static func join(_ buf: [Float], at i: Int) -> Double { Double(buf[i]) + Double(buf[i + 1]) }

    /// A double's 64 bits as four 16-bit integers in floats: a slot that one rank fills and the others leave at 0
    /// comes back exactly from the mean (sum ≤ 65535 < 2^24, and mean·K rounds back to it for K ≤ 16384).
    static func exactBits(_ x: Double) -> [Float] {
        (0..<4).map { Float((x.bitPattern >> (16 * UInt64($0))) & 0xFFFF) }
    }

    /// The integer a rank-indexed slot carried (its mean times K, rounded).
    static func slotValue(_ mean: Float, worldSize k: Int) -> Int { Int((Double(mean) * Double(k)).rounded()) }

    static func fromExactBits(_ means: ArraySlice<Float>, worldSize k: Int) -> Double {
        var bits: UInt64 = 0
        for (j, m) in means.enumerated() { bits |= UInt64(slotValue(m, worldSize: k) & 0xFFFF) << (16 * UInt64(j)) }
        return Double(bitPattern: bits)
    }

    /// Text of a float array's digest.
    static func text(_ ts: [Tensor], stride: Int = 1) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in ts { hash(t, stride: stride, into: &h) }
        return String(h, radix: 16)
    }
}

extension GradientExchange {
    /// The model's part of the digest: its configuration and a sample of its weights (layer norms, biases, positions
    /// — small tensors that any fine-tuning changes), so that ranks which loaded different files are told apart.
    static func modelFields(_ w: ModelWeights) -> [Field] {
        let c = w.config
        var small: [Tensor] = [w.lnF.gamma, w.lnF.beta]
        if let p = w.wpe { small.append(p) }
        for b in w.blocks {
            small += [b.ln1.gamma, b.ln1.beta]
            if let l = b.ln2 { small += [l.gamma, l.beta] }
            for l in b.linears { if let bias = l.bias { small.append(bias) } }
        }
        return [Field("model configuration", "\(c.arch.rawValue) layers \(c.nLayer) heads \(c.nHead)×\(c.headDim) embd \(c.nEmbd) "
                      + "inner \(c.nInner) vocab \(c.vocabSize) positions \(c.nPositions) weights \(w.weightType)"),
                Field("model weights", "digest " + Digest.text(small, stride: 7))]
    }

    /// The adapter's shape (modules, ranks, scales) and values.
    static func adapterFields(_ a: LoRAAdapter) -> [Field] {
        let shape = a.moduleNames.compactMap { n in a.factors(for: n).map { "\(n):r\($0.rank):\($0.inFeatures)x\($0.outFeatures)×\($0.scale)" } }
        let values = a.moduleNames.compactMap { a.factors(for: $0) }.flatMap { [$0.a, $0.b] }
        return [Field("adapter shape", shape.joined(separator: ",") + " dropout \(a.dropout)"),
                Field("adapter values", "digest " + Digest.text(values))]
    }

    static func optimizerFields(_ o: AdamW) -> [Field] {
        var out = [Field("optimizer step", "\(o.stepCount)"), Field("schedule", "\(o.schedule)"),
                   Field("max_grad_norm", "\(o.maxGradNorm.map { "\($0)" } ?? "none")")]
        for g in o.groups {
            out.append(Field("optimizer group \(g.name)", "lr \(g.hyper.lr) betas \(g.hyper.beta1),\(g.hyper.beta2) eps \(g.hyper.eps) "
                             + "weight_decay \(g.hyper.weightDecay) schedule \(g.schedule.map { "\($0)" } ?? "shared") parameters \(g.parameters.count)"))
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (_, m, v) in o.moments {
            if let b = m.baseAddress { Digest.hash(b, count: m.count, stride: 13, into: &h) }
            if let b = v.baseAddress { Digest.hash(b, count: v.count, stride: 13, into: &h) }
        }
        out.append(Field("optimizer moments", "digest " + String(h, radix: 16)))
        return out
    }

    /// A cheap digest of state that every replica shares after every step: a strided sample of the trainable
    /// values and whatever else the caller mixes in.
    static func replicaDigest(_ parameters: [Parameter], extra: [UInt64]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in extra { h = (h ^ x) &* 0x100_0000_01b3; h ^= h >> 29 }
        for p in parameters {
            Digest.hash(p.value.pointer, count: p.count, stride: max(1, p.count / 64) | 1, into: &h)
        }
        return h
    }
}
