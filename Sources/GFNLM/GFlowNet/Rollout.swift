/// How trajectories are generated: the termination action, length limits, the policy's vocabulary adjustment and
/// an optional tool.
public struct RolloutSettings: Sendable, Equatable {
    /// The termination action ⊤ (e.g. <|endoftext|> 50256, or "." 13 for sentences).
    public var termination: Int32
    /// ⊤ cannot be sampled before this many actions (sampling only; log-probabilities are unaffected).
    public var minLength: Int = 0
    /// At most this many actions (tool output does not count).
    public var maxLength: Int
    public var layout: TerminalLayout = .forcedStop
    /// Soft (e.g. −99) or hard vocabulary restriction of the policy; part of q (N4). ⊤ is always allowed.
    public var adjustment = LogitAdjustment()
    /// Calculator appended after trigger tokens (needs the model's tokenizer).
    public var tool: Calculator?

    public init(termination: Int32, maxLength: Int, minLength: Int = 0, layout: TerminalLayout = .forcedStop,
                adjustment: LogitAdjustment = LogitAdjustment(), tool: Calculator? = nil) {
        self.termination = termination; self.maxLength = maxLength; self.minLength = minLength
        self.layout = layout; self.adjustment = adjustment; self.tool = tool
    }

    func validate(vocab: Int) throws(GFNError) {
        guard termination >= 0 && Int(termination) < vocab else {
            throw .outOfRange("termination token \(termination) is outside the vocabulary (0..<\(vocab))")
        }
        guard maxLength > 0 else { throw .invalidArgument("max_len must be positive (got \(maxLength))") }
        guard minLength >= 0 && minLength <= maxLength else {
            throw .invalidArgument("min_len (\(minLength)) must lie in 0…max_len (\(maxLength))")
        }
    }
}

/// Samples trajectories (no gradients, KV caches, one batched decode step per action) and computes their
/// policy log-probabilities with gradients (one teacher-forced traced pass over X ⊕ states).
public final class RolloutEngine: @unchecked Sendable {
    public let model: Model
    public let settings: RolloutSettings
    let context: InferenceContext
    let bias: [Float]?
    /// The same adjustment as a stable pointer (for the training heads).
    let biasPointer: UnsafeMutablePointer<Float>?
    let toolBudget: Int

    public init(model: Model, settings: RolloutSettings) throws(GFNError) {
        try settings.validate(vocab: model.config.vocabSize)
        if settings.tool != nil && model.tokenizer == nil {
            throw .invalidArgument("the calculator tool needs the model's tokenizer")
        }
        self.model = model
        self.settings = settings
        context = try InferenceContext(model: model)
        let dense = try settings.adjustment.dense(vocab: model.config.vocabSize, alwaysAllowed: [settings.termination])
        bias = dense
        if let dense {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: dense.count)
            p.initialize(from: dense, count: dense.count)
            biasPointer = p
        } else {
            biasPointer = nil
        }
        toolBudget = settings.tool == nil ? 0 : 8 * settings.maxLength
    }

    deinit { biasPointer?.deallocate() }

    var transformer: Transformer { model.transformer }

    /// Appends tool output after a trigger action; returns the added tokens.
    func toolOutput(prompt: [Int32], state: [Int32]) -> [Int32] {
        guard let tool = settings.tool, let tok = model.tokenizer, let last = state.last, tool.triggers.contains(last)
        else { return [] }
        guard let text = try? tok.decode(prompt + state), let out = tool.output(forText: text) else { return [] }
        return tok.encode(out, allowSpecial: false)
    }

    /// Generates `count` trajectories after `prompt`: sampled from the policy at behaviour temperature
    /// `temperature` (sampling only), or teacher-forced along `actions` (replay; rows shorter than max_len end
    /// with ⊤). Rows use independent RNG streams from `seed`.
    public func generate(prompt: [Int32], count: Int, temperature: Float, adapter: LoRAAdapter?, seed: UInt64,
                         actions forced: [[Int32]]? = nil) throws(GFNError) -> [Trajectory] {
        guard count > 0 else { throw .invalidArgument("the number of trajectories must be positive") }
        if let forced, forced.count != count {
            throw .invalidArgument("\(forced.count) action sequences for \(count) rows")
        }
        let plans = (0..<count).map { i in
            RowPlan(temperature: temperature, seed: mixSeed(seed, 0xA11, UInt64(i)), actions: forced?[i])
        }
        return try generate(prompt: prompt, rows: plans, adapter: adapter)
    }

    /// How one row is generated: sampled at `temperature` from its own RNG stream, or teacher-forced along
    /// `actions` (replay; ⊤ after them unless they reach max_len).
    public struct RowPlan: Sendable, Equatable {
        public var temperature: Float
        public var seed: UInt64
        public var actions: [Int32]?
        public init(temperature: Float, seed: UInt64, actions: [Int32]? = nil) {
            self.temperature = temperature; self.seed = seed; self.actions = actions
        }
    }

    /// Generates one trajectory per row plan after `prompt`, all rows decoding together (the prompt runs once).
    public func generate(prompt: [Int32], rows plans: [RowPlan], adapter: LoRAAdapter?) throws(GFNError) -> [Trajectory] {
        let c = model.config
        let V = c.vocabSize
        let L = settings.maxLength, term = settings.termination
        let count = plans.count
        try context.checkPrompt(prompt, index: 0)
        guard count > 0 else { throw .invalidArgument("the number of trajectories must be positive") }
        for p in plans {
            if let a = p.actions {
                guard a.count <= L else { throw .outOfRange("a replayed sequence has \(a.count) actions; max_len is \(L)") }
                for t in a where t < 0 || Int(t) >= V || t == term {
                    throw .outOfRange("replayed action \(t) is outside the vocabulary or is the termination token")
                }
            } else {
                guard p.temperature > 0 && p.temperature.isFinite else {
                    throw .invalidArgument("behaviour temperature must be positive (got \(p.temperature))")
                }
            }
        }
        let capacity = L + toolBudget
        guard prompt.count + capacity <= c.nPositions || prompt.count + L <= c.nPositions else {
            throw .outOfRange("prompt (\(prompt.count)) + max_len (\(L)) exceed the model's \(c.nPositions) positions")
        }
        let cap = min(capacity, c.nPositions - prompt.count)
        var first = [Float](repeating: 0, count: V)
        let prefix = try first.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
            try context.prefill(prompt, adapter: adapter, logits: b.baseAddress!)
        }
        let caches = try (0..<count).map { _ throws(GFNError) in try transformer.makeCache(capacity: cap, prefix: prefix) }
        var rows: [Trajectory] = (0..<count).map { _ in Trajectory(actions: [], state: [], stateLength: [0], truncated: false) }
        var fed = [Int](repeating: 0, count: count)        // state tokens already in the cache
        var logits = [Float](repeating: 0, count: count * V)
        var newLogits = [Float](repeating: 0, count: count * V)
        var logitRow = [Int](repeating: -1, count: count)  // −1: the prompt's logits
        var rngs = plans.map { RNG(seed: $0.seed) }
        let temps = plans.map(\.temperature)
        var active = Array(0..<count)
        let workers = transformer.threads
        let pool = context.choosers(workers)
        let E = c.nEmbd
        var chosen = [Int32](repeating: 0, count: count)
        var failure = [Bool](repeating: false, count: count)
        for step in 0..<L {
            var next: [Int] = []
            var sampled: [Int] = []
            for b in active {
                if let a = plans[b].actions { chosen[b] = step < a.count ? a[step] : term } else { sampled.append(b) }
            }
            if !sampled.isEmpty {
                // Choose every sampled row's action in parallel (per-row RNG streams: thread-count independent).
                let act = sampled
                let banned: [Int32] = step < settings.minLength ? [term] : []
                let rowsLogits = logitRow
                logits.withUnsafeBufferPointer { lb in
                    first.withUnsafeBufferPointer { fb in
                        rngs.withUnsafeMutableBufferPointer { rb in
                            chosen.withUnsafeMutableBufferPointer { cb in
                                failure.withUnsafeMutableBufferPointer { fl in
                                    let box = UncheckedSendable((lb.baseAddress!, fb.baseAddress!, rb, cb, fl))
                                    bias.withOptionalBuffer { biasPtr in
                                        Parallel.chunks(act.count, threads: act.count >= 8 ? workers : 1) { w, range in
                                            let (lp, fp, rngB, out, fail) = box.value
                                            let chooser = pool[w]
                                            for i in range {
                                                let b = act[i]
                                                let src = rowsLogits[b] < 0 ? fp : lp + rowsLogits[b] * V
                                                let lse = chooser.policyLogits(src, bias: biasPtr)
                                                guard lse.isFinite, let t = chooser.draw(temperature: temps[b], topK: 0, topP: 1,
                                                                                         banned: banned, rng: &rngB[b]) else {
                                                    fail[b] = true
                                                    continue
                                                }
                                                out[b] = t
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                if let bad = sampled.first(where: { failure[$0] }) {
                    throw .numerical("no action can be sampled for row \(bad) at step \(step) (everything is masked or the logits are not finite)")
                }
            }
            for b in active {
                let tok = chosen[b]
                if tok == term { continue }                    // terminated: n = step
                rows[b].actions.append(tok)
                rows[b].state.append(tok)
                let extra = toolOutput(prompt: prompt, state: rows[b].state)
                if rows[b].state.count + extra.count <= cap { rows[b].state += extra }
                rows[b].stateLength.append(rows[b].state.count)
                if step + 1 == L {
                    rows[b].truncated = true
                } else {
                    next.append(b)
                }
            }
            active = next
            if active.isEmpty { break }
            // Feed the new state tokens; rows with tool output (more than one new token) run in their own groups.
            var groups: [Int: [Int]] = [:]
            for b in active { groups[rows[b].state.count - fed[b], default: []].append(b) }
            var rowIndex = 0
            var newRow = logitRow
            for (T, members) in groups.sorted(by: { $0.key < $1.key }) {
                var toks: [Int32] = []
                for b in members { toks += rows[b].state[fed[b]..<(fed[b] + T)] }
                let h = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: members.count, T: T, caches: members.map { caches[$0] },
                                            adapter: adapter, workspace: context.workspace)
                }
                if T == 1 {
                    let base = rowIndex
                    try newLogits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                        try transformer.logits(hidden: h, count: members.count, adapter: adapter, into: lb.baseAddress! + base * V)
                    }
                }
                for (i, b) in members.enumerated() {
                    if T > 1 {
                        let at = rowIndex
                        try newLogits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                            try transformer.logits(hidden: h + (i * T + T - 1) * E, count: 1, adapter: adapter,
                                                   into: lb.baseAddress! + at * V)
                        }
                    }
                    newRow[b] = rowIndex
                    rowIndex += 1
                    fed[b] += T
                }
            }
            swap(&logits, &newLogits)
            logitRow = newRow
        }
        return rows
    }
}

/// The teacher-forced, traced pass that yields log q(a_t | s_t) and log q(⊤ | s_t) with gradients (untempered,
/// with the policy's adjustment; N7). The prompt runs once (batch 1) and its keys/values are shared by every row;
/// the backward pass returns gradients through both (the prompt's keys/values depend on LoRA too).
public final class PolicyPass: @unchecked Sendable {
    let engine: RolloutEngine
    let promptTrace: ForwardTrace
    let rowsTrace: ForwardTrace
    let promptHead: TokenLogProbs
    let rowsHead: TokenLogProbs
    let kv = KVGradients()
    let backwardWS: BackwardWorkspace
    let workspace: ForwardWorkspace
    /// Set to apply LoRA dropout in the traced passes (training mode); nil = deterministic (the default, B16).
    public var dropoutSeed: UInt64?

    private var state: (prompt: [Int32], rows: [Trajectory], T: Int, index: [[Int]], needed: [Int])?

    public init(engine: RolloutEngine) throws(GFNError) {
        self.engine = engine
        promptTrace = try ForwardTrace()
        rowsTrace = try ForwardTrace()
        promptHead = try TokenLogProbs(transformer: engine.transformer)
        rowsHead = try TokenLogProbs(transformer: engine.transformer)
        backwardWS = try BackwardWorkspace()
        workspace = try ForwardWorkspace()
    }

    /// log q(a_t|s_t) (t < n) and log q(⊤|s_t) (t ≤ n; entry n of a truncated trajectory is 0 in layout A).
    public func forward(prompt: [Int32], trajectories rows: [Trajectory],
                        adapter: LoRAAdapter?) throws(GFNError) -> (logPF: [[Double]], logPT: [[Double]]) {
        let tf = engine.transformer
        let term = engine.settings.termination
        let layout = engine.settings.layout
        let E = tf.config.nEmbd
        if let s = dropoutSeed {
            promptTrace.dropoutRNG = RNG(seed: s)
            rowsTrace.dropoutRNG = RNG(seed: s &+ 1)
            promptHead.dropoutRNG = RNG(seed: s &+ 2)
            rowsHead.dropoutRNG = RNG(seed: s &+ 3)
        } else {
            promptTrace.dropoutRNG = nil
            rowsTrace.dropoutRNG = nil
            promptHead.dropoutRNG = nil
            rowsHead.dropoutRNG = nil
        }
        let promptCache = try tf.makeCache(capacity: prompt.count)
        let hp = try prompt.withUnsafeBufferPointer { (tb) throws(GFNError) in
            try tf.forward(tokens: tb, rows: 1, T: prompt.count, caches: [promptCache], adapter: adapter,
                           workspace: workspace, trace: promptTrace)
        }
        try promptHead.forward(hidden: hp, hiddenCount: prompt.count, rows: [prompt.count - 1],
                               logitBias: engine.biasPointer.map { UnsafePointer($0) }, adapter: adapter)
        // distributions needed per row: s_0 … s_m
        let needed = rows.map { r -> Int in (r.truncated && layout == .forcedStop) ? r.n - 1 : r.n }
        let T = rows.map { $0.state.count }.max() ?? 0
        var index: [[Int]] = []          // index[b][t] = row of rowsHead for s_t (t ≥ 1)
        var hiddenRows: [Int] = []
        for (b, r) in rows.enumerated() {
            var ix = [-1]
            if needed[b] >= 1 {
                for t in 1...needed[b] {
                    ix.append(hiddenRows.count)
                    hiddenRows.append(b * T + r.stateLength[t] - 1)
                }
            }
            index.append(ix)
        }
        if T > 0 {
            var toks = [Int32](repeating: 0, count: rows.count * T)
            for (b, r) in rows.enumerated() { for (k, v) in r.state.enumerated() { toks[b * T + k] = v } }
            let caches = try rows.map { _ throws(GFNError) in try tf.makeCache(capacity: T, prefix: promptCache) }
            let hr = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try tf.forward(tokens: tb, rows: rows.count, T: T, caches: caches, adapter: adapter,
                               workspace: workspace, trace: rowsTrace)
            }
            try rowsHead.forward(hidden: hr, hiddenCount: rows.count * T, rows: hiddenRows,
                                 logitBias: engine.biasPointer.map { UnsafePointer($0) }, adapter: adapter)
        }
        _ = E
        var lpf: [[Double]] = [], lpt: [[Double]] = []
        for (b, r) in rows.enumerated() {
            var f: [Double] = [], p: [Double] = []
            for t in 0...r.n {
                if t > needed[b] { p.append(0); continue }
                let (head, i) = t == 0 ? (promptHead, 0) : (rowsHead, index[b][t])
                p.append(Double(try head.logProb(i, term)))
                if t < r.n { f.append(Double(try head.logProb(i, r.actions[t]))) }
            }
            lpf.append(f); lpt.append(p)
        }
        state = (prompt, rows, T, index, needed)
        return (lpf, lpt)
    }

    /// Back-propagates dL/d logPF and dL/d logPT (shapes as returned by `forward`), adding into `gradients`.
    public func backward(dLogPF: [[Double]], dLogPT: [[Double]], gradients: Gradients) throws(GFNError) {
        guard let st = state else { throw .state("PolicyPass.backward without a forward") }
        state = nil
        let tf = engine.transformer
        let term = engine.settings.termination
        let E = tf.config.nEmbd
        kv.reset()
        var promptEntries: [(index: Int, token: Int32, grad: Float)] = []
        var rowEntries: [(index: Int, token: Int32, grad: Float)] = []
        for (b, r) in st.rows.enumerated() {
            for t in 0...min(r.n, st.needed[b]) {
                let gT = Float(dLogPT[b][t])
                let gF: Float = t < r.n ? Float(dLogPF[b][t]) : 0
                if t == 0 {
                    if gT != 0 { promptEntries.append((0, term, gT)) }
                    if gF != 0 { promptEntries.append((0, r.actions[0], gF)) }
                } else {
                    let i = st.index[b][t]
                    if gT != 0 { rowEntries.append((i, term, gT)) }
                    if gF != 0 { rowEntries.append((i, r.actions[t], gF)) }
                }
            }
        }
        if st.T > 0 {
            var dH = [Float](repeating: 0, count: st.rows.count * st.T * E)
            try dH.withUnsafeMutableBufferPointer { (db) throws(GFNError) in
                try rowsHead.backward(entries: rowEntries, dHidden: db.baseAddress!, gradients: gradients)
                try tf.backward(trace: rowsTrace, dHidden: db.baseAddress!, gradients: gradients, kvGradients: kv,
                                workspace: backwardWS)
            }
        }
        var dP = [Float](repeating: 0, count: st.prompt.count * E)
        try dP.withUnsafeMutableBufferPointer { (db) throws(GFNError) in
            try promptHead.backward(entries: promptEntries, dHidden: db.baseAddress!, gradients: gradients)
            try tf.backward(trace: promptTrace, dHidden: db.baseAddress!, gradients: gradients, kvGradients: kv,
                            workspace: backwardWS)
        }
    }
}
