/// The traced forward passes of one policy evaluation, in the order they ran: group 0 is the prompt (run once,
/// batch 1, its keys/values shared by every row), the others extend the rows' caches. Each group keeps its
/// activations (`trace`) and its output head restricted to the positions whose distributions are needed (`head`).
/// `located[b][t]` says which group and head row hold the distribution at state s_t of row b.
final class TracedGroups {
    struct Group {
        let trace: ForwardTrace
        let head: TokenLogProbs
    }
    let transformer: Transformer
    private var pool: [Group] = []
    /// Groups used by the current pass (a prefix of the pool; memory is kept for the next pass).
    private(set) var count = 0
    var located: [[(group: Int, index: Int)]] = []
    private var dropoutSeed: UInt64?

    init(transformer: Transformer) { self.transformer = transformer }

    /// Starts a pass over `rows` rows: no groups yet; LoRA dropout in every group when `dropoutSeed` is set.
    func begin(rows: Int, dropoutSeed: UInt64?) {
        count = 0
        located = Array(repeating: [], count: rows)
        self.dropoutSeed = dropoutSeed
    }

    /// The next group (its trace and head seeded for dropout); returns its index.
    func add() throws(GFNError) -> Int {
        if count == pool.count {
            pool.append(Group(trace: try ForwardTrace(), head: try TokenLogProbs(transformer: transformer)))
        }
        let g = pool[count]
        g.trace.dropoutRNG = dropoutSeed.map { RNG(seed: mixSeed($0, 0x7ACE, UInt64(count))) }
        g.head.dropoutRNG = dropoutSeed.map { RNG(seed: mixSeed($0, 0x4EAD, UInt64(count))) }
        count += 1
        return count - 1
    }

    subscript(_ i: Int) -> Group { pool[i] }

    /// Runs the prompt (batch 1) as the next group, its head at the last position, and records it as s_0 of every
    /// row. Returns the prompt's cache (the rows' prefix) and its log-probabilities [V].
    func addPrompt(_ prompt: [Int32], adapter: LoRAAdapter?, workspace: ForwardWorkspace,
                   logitBias: UnsafePointer<Float>?) throws(GFNError) -> (cache: KVCache, logProbs: UnsafeMutablePointer<Float>) {
        let g = try add()
        let cache = try transformer.makeCache(capacity: prompt.count)
        let hp = try prompt.withUnsafeBufferPointer { (tb) throws(GFNError) in
            try transformer.forward(tokens: tb, rows: 1, T: prompt.count, caches: [cache], adapter: adapter,
                                    workspace: workspace, trace: pool[g].trace)
        }
        let lp = try pool[g].head.forward(hidden: hp, hiddenCount: prompt.count, rows: [prompt.count - 1],
                                          logitBias: logitBias, adapter: adapter)
        for b in located.indices { located[b] = [(g, 0)] }
        return (cache, lp)
    }
}

/// The traced pass that yields log q(a_t | s_t) and log q(⊤ | s_t) with gradients (untempered, with the policy's
/// adjustment, whatever the behaviour that sampled the trajectory: that is what keeps off-policy terms correct),
/// in one of two ways:
/// - `sample`: the sampling pass itself is traced (as in the reference, whose sampling graph is back-propagated):
///   the distributions the actions were drawn from are the ones the loss uses, and no second forward runs. Each
///   decoding step's forward and head are kept until `backward`.
/// - `forward`: one teacher-forced pass over given trajectories (the prompt once, then all rows together).
/// Either way the backward pass returns gradients through the prompt's keys/values too (they depend on LoRA).
public final class PolicyPass: @unchecked Sendable {
    let engine: RolloutEngine
    let groups: TracedGroups
    let kv = KVGradients()
    let backwardWS: BackwardWorkspace
    let workspace: ForwardWorkspace
    /// The stacked rows of every group's head in the backward pass.
    let headScratch: Arena
    /// Set to apply LoRA dropout in the traced passes (training mode); nil = deterministic (the default; see docs/method.md on dropout).
    public var dropoutSeed: UInt64?

    private var state: (rows: [Trajectory], needed: [Int])?

    public init(engine: RolloutEngine) throws(GFNError) {
        self.engine = engine
        groups = TracedGroups(transformer: engine.transformer)
        backwardWS = try BackwardWorkspace()
        workspace = try ForwardWorkspace()
        headScratch = try Arena(capacity: 0)
    }

    /// Distributions needed per row: s_0 … s_m (layout A has no log q(⊤|s_max) for a truncated row).
    func needed(_ rows: [Trajectory]) -> [Int] {
        rows.map { r in (r.truncated && engine.settings.layout == .forcedStop) ? r.n - 1 : r.n }
    }

    /// Samples one trajectory per row plan (as `RolloutEngine.generate`) with every forward traced, and returns
    /// them with their log q(a_t|s_t) and log q(⊤|s_t) (shapes as `forward`). With `dropoutSeed` set, sampling
    /// itself runs with LoRA dropout (the reference's train-mode sampling).
    public func sample(prompt: [Int32], rows plans: [RolloutEngine.RowPlan], adapter: LoRAAdapter?)
        throws(GFNError) -> (trajectories: [Trajectory], logPF: [[Double]], logPT: [[Double]]) {
        state = nil
        groups.begin(rows: plans.count, dropoutSeed: dropoutSeed)
        let rows = try engine.generate(prompt: prompt, rows: plans, adapter: adapter, record: groups)
        let (lpf, lpt) = try readLogProbs(rows)
        return (rows, lpf, lpt)
    }

    /// log q(a_t|s_t) (t < n) and log q(⊤|s_t) (t ≤ n; entry n of a truncated trajectory is 0 in layout A) of
    /// given trajectories, by one teacher-forced pass.
    public func forward(prompt: [Int32], trajectories rows: [Trajectory],
                        adapter: LoRAAdapter?) throws(GFNError) -> (logPF: [[Double]], logPT: [[Double]]) {
        state = nil
        let tf = engine.transformer
        let bias = engine.biasPointer.map { UnsafePointer($0) }
        try engine.context.checkPrompt(prompt, index: 0)
        groups.begin(rows: rows.count, dropoutSeed: dropoutSeed)
        let promptCache = try groups.addPrompt(prompt, adapter: adapter, workspace: workspace, logitBias: bias).cache
        let needed = needed(rows)
        let T = rows.map { $0.state.count }.max() ?? 0
        var hiddenRows: [Int] = []
        if T > 0 {
            let g = try groups.add()
            for (b, r) in rows.enumerated() where needed[b] >= 1 {
                for t in 1...needed[b] {
                    groups.located[b].append((g, hiddenRows.count))
                    hiddenRows.append(b * T + r.stateLength[t] - 1)
                }
            }
            var toks = [Int32](repeating: 0, count: rows.count * T)
            for (b, r) in rows.enumerated() { for (k, v) in r.state.enumerated() { toks[b * T + k] = v } }
            let caches = try rows.map { _ throws(GFNError) in try tf.makeCache(capacity: T, prefix: promptCache) }
            let hr = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try tf.forward(tokens: tb, rows: rows.count, T: T, caches: caches, adapter: adapter,
                               workspace: workspace, trace: groups[g].trace)
            }
            try groups[g].head.forward(hidden: hr, hiddenCount: rows.count * T, rows: hiddenRows, logitBias: bias,
                                       adapter: adapter)
        }
        return try readLogProbs(rows)
    }

    /// Reads log q(a_t|s_t) and log q(⊤|s_t) from the groups' heads and remembers the pass for `backward`.
    private func readLogProbs(_ rows: [Trajectory]) throws(GFNError) -> (logPF: [[Double]], logPT: [[Double]]) {
        let term = engine.settings.termination
        let needed = needed(rows)
        var lpf: [[Double]] = [], lpt: [[Double]] = []
        for (b, r) in rows.enumerated() {
            guard groups.located[b].count > needed[b] else {
                throw .state("row \(b): \(groups.located[b].count) traced distributions for \(needed[b] + 1) states")
            }
            var f: [Double] = [], p: [Double] = []
            for t in 0...r.n {
                if t > needed[b] { p.append(0); continue }
                let (g, i) = groups.located[b][t]
                p.append(Double(try groups[g].head.logProb(i, term)))
                if t < r.n { f.append(Double(try groups[g].head.logProb(i, r.actions[t]))) }
            }
            lpf.append(f); lpt.append(p)
        }
        state = (rows, needed)
        return (lpf, lpt)
    }

    /// Back-propagates dL/d logPF and dL/d logPT (shapes as returned by `forward`/`sample`), adding into
    /// `gradients`. All groups go through the layers together (`Transformer.backward(traces:)`): products with
    /// frozen weights take every group's rows at once, and each layer's attention runs the latest group first,
    /// so the keys/values a group wrote have every later group's gradients before its own (the prompt's last).
    public func backward(dLogPF: [[Double]], dLogPT: [[Double]], gradients: Gradients) throws(GFNError) {
        guard let st = state else { throw .state("PolicyPass.backward without a forward") }
        state = nil
        guard dLogPF.count == st.rows.count, dLogPT.count == st.rows.count else {
            throw .invalidArgument("gradients for \(dLogPF.count)/\(dLogPT.count) rows, expected \(st.rows.count)")
        }
        let tf = engine.transformer
        let term = engine.settings.termination
        let E = tf.config.nEmbd
        kv.reset()
        var entries = [[(index: Int, token: Int32, grad: Float)]](repeating: [], count: groups.count)
        for (b, r) in st.rows.enumerated() {
            guard dLogPF[b].count == r.n, dLogPT[b].count == r.n + 1 else {
                throw .invalidArgument("row \(b): gradient shapes (\(dLogPF[b].count), \(dLogPT[b].count)) for \(r.n) actions")
            }
            for t in 0...min(r.n, st.needed[b]) {
                let (g, i) = groups.located[b][t]
                let gT = Float(dLogPT[b][t])
                let gF: Float = t < r.n ? Float(dLogPF[b][t]) : 0
                if gT != 0 { entries[g].append((i, term, gT)) }
                if gF != 0 { entries[g].append((i, r.actions[t], gF)) }
            }
        }
        // every head's gradient into its group's rows of one buffer, then all groups' backward in lockstep
        let sizes = (0..<groups.count).map { groups[$0].trace.rows * groups[$0].trace.T * E }
        var dH = [Float](repeating: 0, count: sizes.reduce(0, +))
        try dH.withUnsafeMutableBufferPointer { (db) throws(GFNError) in
            var at = db.baseAddress!
            var parts: [UnsafeMutablePointer<Float>] = []
            for g in 0..<groups.count {
                parts.append(at)
                at += sizes[g]
            }
            try TokenLogProbs.backward(heads: (0..<groups.count).map { groups[$0].head }, entries: entries,
                                       dHidden: parts, gradients: gradients, scratch: headScratch)
            try tf.backward(traces: (0..<groups.count).map { groups[$0].trace }, dHidden: parts.map { UnsafePointer($0) },
                            gradients: gradients, kvGradients: kv, workspace: backwardWS)
        }
    }
}
