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
    /// Soft (e.g. −99) or hard vocabulary restriction of the policy; part of q (added to the logits before the softmax, so restricted tokens are renormalised out). ⊤ is always allowed.
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

/// Samples trajectories (KV caches, one batched decode step per action; untraced, or traced for training through
/// `PolicyPass.sample`).
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
        try generate(prompt: prompt, rows: plans, adapter: adapter, record: nil)
    }

    /// The policy's log-probabilities at the states a row was sampled in (untempered, with the adjustment, read
    /// from the very distributions the actions were drawn from): `logPF[t]` = log q(a_{t+1}|s_t) for t < n and
    /// `logPT[t]` = log q(⊤|s_t) for t ≤ n — for a row truncated at max_len, entry n is the policy's real value
    /// (one more forward of the last state) under the next-sentence layout, and 0 under a forced stop.
    public struct SampledLogProbs: Sendable, Equatable {
        public var logPF: [Double] = []
        public var logPT: [Double] = []
    }

    /// `generate` for sampled rows, with each row's log-probabilities (`SampledLogProbs`) at no extra cost except
    /// the last state of truncated rows in the next-sentence layout. Teacher-forced rows are not allowed.
    public func generateWithLogProbs(prompt: [Int32], rows plans: [RowPlan],
                                     adapter: LoRAAdapter?) throws(GFNError) -> [(Trajectory, SampledLogProbs)] {
        guard plans.allSatisfy({ $0.actions == nil }) else {
            throw .invalidArgument("log-probabilities are recorded for sampled rows only")
        }
        let recorder = LogProbRecorder(rows: plans.count)
        let rows = try generate(prompt: prompt, rows: plans, adapter: adapter, record: nil, logProbs: recorder)
        return Array(zip(rows, recorder.rows))
    }

    /// Collects `SampledLogProbs` per row while `generate` runs.
    final class LogProbRecorder {
        var rows: [SampledLogProbs]
        init(rows n: Int) { rows = Array(repeating: SampledLogProbs(), count: n) }
    }

    /// `generate`, optionally traced: with `record`, the prompt and every decoding group run as traced forwards
    /// whose heads (with the policy's adjustment) are the distributions sampled from, kept in `record` with the
    /// state each one belongs to (`PolicyPass.sample`). In layout B the truncated rows' last actions are fed too,
    /// for log q(⊤|s_max).
    func generate(prompt: [Int32], rows plans: [RowPlan], adapter: LoRAAdapter?,
                  record: TracedGroups?, logProbs recorder: LogProbRecorder? = nil) throws(GFNError) -> [Trajectory] {
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
        let prefix: KVCache
        if let record {
            // traced prompt; its head gives log-probabilities with the adjustment already applied
            let (cache, lp) = try record.addPrompt(prompt, adapter: adapter, workspace: context.workspace,
                                                   logitBias: biasPointer.map { UnsafePointer($0) })
            prefix = cache
            first.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: lp, count: V) }
        } else {
            prefix = try first.withUnsafeMutableBufferPointer { (b) throws(GFNError) in
                try context.prefill(prompt, adapter: adapter, logits: b.baseAddress!)
            }
        }
        // recorded logits already include the adjustment
        let chooserBias = record == nil ? bias : nil
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
        // log q(chosen | s) and log q(⊤ | s) of this step, per row (written by the choosers when recording)
        var stepLogQ = [Double](repeating: 0, count: recorder == nil ? 0 : 2 * count)
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
                                  stepLogQ.withUnsafeMutableBufferPointer { sq in
                                    let box = UncheckedSendable((lb.baseAddress!, fb.baseAddress!, rb, cb, fl, sq))
                                    chooserBias.withOptionalBuffer { biasPtr in
                                        Parallel.chunks(act.count, threads: act.count >= 8 ? workers : 1) { w, range in
                                            let (lp, fp, rngB, out, fail, logQ) = box.value
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
                                                if !logQ.isEmpty {
                                                    logQ[2 * b] = Double(chooser.work[Int(t)] - lse)
                                                    logQ[2 * b + 1] = Double(chooser.work[Int(term)] - lse)
                                                }
                                            }
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
                if let recorder {
                    for b in sampled {
                        if chosen[b] != term { recorder.rows[b].logPF.append(stepLogQ[2 * b]) }
                        recorder.rows[b].logPT.append(stepLogQ[2 * b + 1])
                    }
                }
            }
            var truncatedNow: [Int] = []
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
                    truncatedNow.append(b)
                } else {
                    next.append(b)
                }
            }
            active = next
            // the next-sentence layout needs log q(⊤|s_max) of truncated rows: one more forward of their last state
            let needLast = (record != nil || recorder != nil) && settings.layout != .forcedStop
            let feed = needLast ? next + truncatedNow : next
            if feed.isEmpty { break }
            // Feed the new state tokens; rows with tool output (more than one new token) run in their own groups.
            var groups: [Int: [Int]] = [:]
            for b in feed { groups[rows[b].state.count - fed[b], default: []].append(b) }
            var rowIndex = 0
            var newRow = logitRow
            for (T, members) in groups.sorted(by: { $0.key < $1.key }) {
                var toks: [Int32] = []
                for b in members { toks += rows[b].state[fed[b]..<(fed[b] + T)] }
                let g = try record?.add()
                let trace = g.flatMap { record?[$0].trace }
                let h = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try transformer.forward(tokens: tb, rows: members.count, T: T, caches: members.map { caches[$0] },
                                            adapter: adapter, workspace: context.workspace, trace: trace)
                }
                if let record, let g {
                    let lp = try record[g].head.forward(hidden: h, hiddenCount: members.count * T,
                                                        rows: members.indices.map { $0 * T + T - 1 },
                                                        logitBias: biasPointer.map { UnsafePointer($0) }, adapter: adapter)
                    let base = rowIndex
                    newLogits.withUnsafeMutableBufferPointer { $0.baseAddress!.advanced(by: base * V).update(from: lp, count: members.count * V) }
                    for (i, b) in members.enumerated() { record.located[b].append((g, i)) }
                } else if T == 1 {
                    let base = rowIndex
                    try newLogits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                        try transformer.logits(hidden: h, count: members.count, adapter: adapter, into: lb.baseAddress! + base * V)
                    }
                }
                for (i, b) in members.enumerated() {
                    if T > 1 && record == nil {
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
        if let recorder {
            for b in 0..<count where rows[b].truncated {
                var v = 0.0   // forced stop: log q(⊤|s_max) := 0
                if settings.layout != .forcedStop {
                    let chooser = pool[0]
                    let lse = logits.withUnsafeBufferPointer { lb in
                        chooserBias.withOptionalBuffer { chooser.policyLogits(lb.baseAddress! + logitRow[b] * V, bias: $0) }
                    }
                    v = Double(chooser.work[Int(term)] - lse)
                }
                recorder.rows[b].logPT.append(v)
            }
        }
        return rows
    }
}

