/// One sampled (or replayed) trajectory after a prompt X: the actions and the state they built.
public struct Trajectory: Sendable, Equatable {
    /// The non-termination actions z_1 … z_n.
    public var actions: [Int32]
    /// What follows X in the final state: the actions with any tool output interleaved.
    public var state: [Int32]
    /// stateLength[t] = number of state tokens of s_t (after t actions and their tool output), t = 0 … n.
    public var stateLength: [Int]
    /// True when max_len was reached without the termination action.
    public var truncated: Bool

    public init(actions: [Int32], state: [Int32], stateLength: [Int], truncated: Bool) {
        self.actions = actions; self.state = state; self.stateLength = stateLength; self.truncated = truncated
    }

    /// A trajectory without tool output.
    public init(actions: [Int32], truncated: Bool) {
        self.init(actions: actions, state: actions, stateLength: Array(0...actions.count), truncated: truncated)
    }

    public var n: Int { actions.count }

    /// The state tokens of s_t.
    public func state(at t: Int) -> ArraySlice<Int32> { state[0..<stateLength[t]] }
}

/// One task instance: the policy's conditioning X, an optional observation Y scored by the reward, and the
/// context the reward model reads instead of X when it differs.
public struct PromptSpec: Sendable, Equatable {
    public var x: [Int32]
    public var y: [Int32]?
    public var rewardContext: [Int32]?
    /// Relative sampling weight among the training prompts.
    public var weight: Double
    /// Position among the trainer's prompts (set by the trainer; host rewards receive it).
    public var index: Int = 0

    public init(x: [Int32], y: [Int32]? = nil, rewardContext: [Int32]? = nil, weight: Double = 1) {
        self.x = x; self.y = y; self.rewardContext = rewardContext; self.weight = weight
    }

    /// The replay buffer key: ids of X, "|", ids of Y (the reference keys its buffers by prompt and observation).
    public var key: String {
        x.map(String.init).joined(separator: " ") + "|" + (y.map { $0.map(String.init).joined(separator: " ") } ?? "None")
    }
}

/// A reward: untempered log R(s_t ⊤) for every state t = 0 … n of every trajectory of a micro-batch that shares
/// one prompt. Values must be finite (a NaN or ±∞ is an error that skips the step).
public protocol RewardFunction: AnyObject {
    func logRewards(prompt: PromptSpec, trajectories: [Trajectory]) throws(GFNError) -> [[Double]]
    /// The same, told the reward temperature T_R the trainer will divide these values by (still untempered:
    /// a reward that wants a penalty after tempering, like the subjectivity task's −50, multiplies it by T_R).
    func logRewards(prompt: PromptSpec, trajectories: [Trajectory], rewardTemperature: Double) throws(GFNError) -> [[Double]]
    /// True when the reward only scores complete trajectories (entries t < n are not meaningful): usable with
    /// trajectory balance only.
    var terminalOnly: Bool { get }
}

extension RewardFunction {
    public var terminalOnly: Bool { false }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory],
                           rewardTemperature: Double) throws(GFNError) -> [[Double]] {
        try logRewards(prompt: prompt, trajectories: trajectories)
    }
}

// MARK: - (a) templated LM likelihood

/// log p_LM(Z Y | [demos] C) with the adapter off, for every prefix of Z (C = the prompt's reward context, or X):
/// Σ log p of the state tokens (with the vocabulary penalty at Z positions), plus log p(Y | C, z_≤t) for every t.
/// A few-shot demo prefix runs once; C runs once per call; Y is scored after every prefix from the prefix cache
/// (one batched pass for all prefixes of all rows), never by re-running the sequence. A state with fewer than
/// `minLength` tokens gets `minLengthPenalty` instead (the reference's penalty for too-short states).
public final class LMLikelihoodReward: RewardFunction, @unchecked Sendable {
    public let model: Model
    public let demos: [Int32]
    public let zAdjustment: LogitAdjustment
    public let minLength: Int
    public let minLengthPenalty: Double
    let context: InferenceContext
    let demoCache: KVCache?
    let zBias: [Float]?

    public init(model: Model, demos: [Int32] = [], zAdjustment: LogitAdjustment = LogitAdjustment(),
                minLength: Int = 0, minLengthPenalty: Double = -99) throws(GFNError) {
        self.model = model
        self.demos = demos
        self.zAdjustment = zAdjustment
        self.minLength = minLength
        self.minLengthPenalty = minLengthPenalty
        let ctx = try InferenceContext(model: model)
        context = ctx
        zBias = try zAdjustment.dense(vocab: model.config.vocabSize)
        if demos.isEmpty {
            demoCache = nil
        } else {
            try ctx.checkPrompt(demos, index: 0)
            let tf = model.transformer
            let cache = try tf.makeCache(capacity: demos.count)
            _ = try demos.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try tf.forward(tokens: tb, rows: 1, T: demos.count, caches: [cache], workspace: ctx.workspace)
            }
            demoCache = cache
        }
    }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory]) throws(GFNError) -> [[Double]] {
        let tf = model.transformer
        let c = model.config
        let V = c.vocabSize, E = c.nEmbd
        let ctx = prompt.rewardContext ?? prompt.x
        let y = prompt.y ?? []
        guard !ctx.isEmpty || demoCache != nil else { throw .invalidArgument("the reward context is empty") }
        let ws = context.workspace
        let chooser = context.choosers(1)[0]
        // context C after the demos
        var lastLogits = [Float](repeating: 0, count: V)    // distribution after C
        let cCache = try tf.makeCache(capacity: max(ctx.count, 1), prefix: demoCache)
        if !ctx.isEmpty {
            let h = try ctx.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try tf.forward(tokens: tb, rows: 1, T: ctx.count, caches: [cCache], workspace: ws)
            }
            try lastLogits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                try tf.logits(hidden: h + (ctx.count - 1) * E, count: 1, adapter: nil, into: lb.baseAddress!)
            }
        } else {
            throw .invalidArgument("an empty reward context after demos is not supported")
        }
        let maxState = trajectories.map { $0.state.count }.max() ?? 0
        for t in trajectories {
            guard ctx.count + t.state.count + y.count + demos.count <= c.nPositions else {
                throw .outOfRange("demos + context + Z + Y (\(demos.count + ctx.count + t.state.count + y.count) tokens) exceed the model's \(c.nPositions) positions")
            }
        }
        // Pass over the states: Z token log-probs (penalised) and the rows' caches for the Y children.
        let B = trajectories.count
        var rowCaches: [KVCache] = []
        var zCum: [[Double]] = []          // zCum[b][k] = Σ_{m<k} log p(state_m)
        var hiddenRows: UnsafeMutablePointer<Float>? = nil
        var hiddenCopy: [Float] = []
        if maxState > 0 {
            rowCaches = try (0..<B).map { _ throws(GFNError) in try tf.makeCache(capacity: maxState, prefix: cCache) }
            var toks = [Int32](repeating: 0, count: B * maxState)
            for (b, t) in trajectories.enumerated() { for (k, v) in t.state.enumerated() { toks[b * maxState + k] = v } }
            hiddenRows = try toks.withUnsafeBufferPointer { (tb) throws(GFNError) in
                try tf.forward(tokens: tb, rows: B, T: maxState, caches: rowCaches, workspace: ws)
            }
            if let h = hiddenRows { hiddenCopy = Array(UnsafeBufferPointer(start: h, count: B * maxState * E)) }
        } else {
            rowCaches = try (0..<B).map { _ throws(GFNError) in try tf.makeCache(capacity: 1, prefix: cCache) }
        }
        func logProb(_ logits: UnsafePointer<Float>, _ tok: Int32, penalised: Bool) -> Double {
            let lse = zBias.withOptionalBuffer { chooser.policyLogits(logits, bias: penalised ? $0 : nil) }
            return Double(chooser.work[Int(tok)] - lse)
        }
        // Logits of every state position of every row, one head product per row: rowLogits[b][k] is the
        // distribution after state token k.
        var rowLogits: [[Float]] = []
        for (b, t) in trajectories.enumerated() {
            var l = [Float](repeating: 0, count: max(1, t.state.count) * V)
            if t.state.count > 0 {
                try hiddenCopy.withUnsafeBufferPointer { (hb) throws(GFNError) in
                    try l.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                        try tf.logits(hidden: hb.baseAddress! + b * maxState * E, count: t.state.count, adapter: nil,
                                      into: lb.baseAddress!)
                    }
                }
            }
            rowLogits.append(l)
        }
        for (b, t) in trajectories.enumerated() {
            var cum = [Double](repeating: 0, count: t.state.count + 1)
            for k in 0..<t.state.count {
                let lp: Double
                if k == 0 {
                    lp = lastLogits.withUnsafeBufferPointer { logProb($0.baseAddress!, t.state[0], penalised: true) }
                } else {
                    lp = rowLogits[b].withUnsafeBufferPointer { logProb($0.baseAddress! + (k - 1) * V, t.state[k], penalised: true) }
                }
                cum[k + 1] = cum[k] + lp
            }
            zCum.append(cum)
        }
        // Y after every prefix: log p(Y_0 | s_t) from the prefix's last logits; the rest from children that see
        // exactly the prefix's slots.
        var yLog: [[Double]] = trajectories.map { [Double](repeating: 0, count: $0.n + 1) }
        if !y.isEmpty {
            var children: [KVCache] = []
            var owner: [(b: Int, t: Int)] = []
            for (b, t) in trajectories.enumerated() {
                for s in 0...t.n {
                    let len = t.stateLength[s]
                    // first Y token
                    let lp0: Double
                    if len == 0 {
                        lp0 = lastLogits.withUnsafeBufferPointer { logProb($0.baseAddress!, y[0], penalised: false) }
                    } else {
                        lp0 = rowLogits[b].withUnsafeBufferPointer { logProb($0.baseAddress! + (len - 1) * V, y[0], penalised: false) }
                    }
                    yLog[b][s] = lp0
                    if y.count > 1 {
                        children.append(try KVCache(config: c, capacity: y.count - 1, prefix: rowCaches[b], visiblePrefix: len))
                        owner.append((b, s))
                    }
                }
            }
            if !children.isEmpty {
                let T = y.count - 1
                let feed = Array(repeating: Array(y[0..<T]), count: children.count).flatMap { $0 }
                let h = try feed.withUnsafeBufferPointer { (tb) throws(GFNError) in
                    try tf.forward(tokens: tb, rows: children.count, T: T, caches: children, workspace: ws)
                }
                var logits = [Float](repeating: 0, count: T * V)
                for (i, o) in owner.enumerated() {
                    try logits.withUnsafeMutableBufferPointer { (lb) throws(GFNError) in
                        try tf.logits(hidden: h + i * T * E, count: T, adapter: nil, into: lb.baseAddress!)
                    }
                    var s = 0.0
                    logits.withUnsafeBufferPointer { lb in
                        for j in 0..<T { s += logProb(lb.baseAddress! + j * V, y[j + 1], penalised: false) }
                    }
                    yLog[o.b][o.t] += s
                }
            }
        }
        var out: [[Double]] = []
        for (b, t) in trajectories.enumerated() {
            var row: [Double] = []
            for s in 0...t.n {
                let len = t.stateLength[s]
                if len < minLength {
                    row.append(minLengthPenalty)
                } else {
                    row.append(zCum[b][len] + yLog[b][s])
                }
            }
            out.append(row)
        }
        return out
    }
}

// MARK: - (b) next sentence

/// log p_LM(z_1..t ⊤ | X) for every prefix from one pass (paper Eq. 5): cumulative token log-probabilities plus the
/// probability of the termination token after the prefix, with the reward's own vocabulary penalty (the
/// reference: −50 on illegal tokens at generated positions); states with fewer than `minLength` tokens get
/// `minLengthPenalty`.
public final class NextSentenceReward: RewardFunction, @unchecked Sendable {
    public let model: Model
    public let termination: Int32
    public let adjustment: LogitAdjustment
    public let minLength: Int
    public let minLengthPenalty: Double
    let context: InferenceContext
    let bias: [Float]?

    public init(model: Model, termination: Int32, adjustment: LogitAdjustment = LogitAdjustment(),
                minLength: Int = 0, minLengthPenalty: Double = -99) throws(GFNError) {
        guard termination >= 0 && Int(termination) < model.config.vocabSize else {
            throw .outOfRange("termination token \(termination) is outside the vocabulary")
        }
        self.model = model
        self.termination = termination
        self.adjustment = adjustment
        self.minLength = minLength
        self.minLengthPenalty = minLengthPenalty
        context = try InferenceContext(model: model)
        bias = try adjustment.dense(vocab: model.config.vocabSize, alwaysAllowed: [termination])
    }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory]) throws(GFNError) -> [[Double]] {
        let ctx = prompt.rewardContext ?? prompt.x
        let pairs = trajectories.map { (context: ctx, continuation: $0.state) }
        let scores = try context.score(pairs, params: ScoreParams(stopTokens: [termination], adjustment: adjustment))
        var out: [[Double]] = []
        for (t, s) in zip(trajectories, scores) {
            var cum = [Double](repeating: 0, count: t.state.count + 1)
            for k in 0..<t.state.count { cum[k + 1] = cum[k] + Double(s.tokenLogProbs[k]) }
            var row: [Double] = []
            for st in 0...t.n {
                let len = t.stateLength[st]
                row.append(len < minLength ? minLengthPenalty : cum[len] + Double(s.stopLogProbs[len]))
            }
            out.append(row)
        }
        return out
    }
}

// MARK: - (d) the random-integer task's rule reward

/// The random-integer task's reward (the paper's §2): empty → −8; first token +8 if it is one of `numberTokens`
/// (the single-token strings "0" … "99"), else −8; every later position m ≥ 2 contributes 0 if it is ⊤ and −8m
/// otherwise. Already in log space; the paper does not temper it.
public final class RandomIntegerReward: RewardFunction, @unchecked Sendable {
    public let numberTokens: Set<Int32>
    public let termination: Int32

    public init(numberTokens: Set<Int32>, termination: Int32) {
        self.numberTokens = numberTokens
        self.termination = termination
    }

    /// The GPT-2 ids of "0" … "99" (written without a leading space) in `tokenizer`.
    public static func numberTokens(tokenizer: Tokenizer, upTo max: Int = 99) -> Set<Int32> {
        var s = Set<Int32>()
        for v in 0...max {
            let ids = tokenizer.encode(String(v), allowSpecial: false)
            if ids.count == 1 { s.insert(ids[0]) }
        }
        return s
    }

    /// log R of a prefix g of generated tokens (⊤ included when it was just emitted).
    public func logReward(_ g: [Int32]) -> Double {
        if g.isEmpty { return -8 }
        var r = numberTokens.contains(g[0]) ? 8.0 : -8.0
        if g.count > 1 {
            for m in 2...g.count where g[m - 1] != termination { r -= 8 * Double(m) }
        }
        return r
    }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory]) throws(GFNError) -> [[Double]] {
        trajectories.map { t in (0...t.n).map { logReward(Array(t.actions[0..<$0])) } }
    }
}

// MARK: - (c) host callbacks

/// A reward computed by the host: the callback receives the prompt and a list of token sequences (states after X;
/// every prefix of every trajectory, or only complete ones when `terminalOnly`) and returns their log R.
public final class CallbackReward: RewardFunction, @unchecked Sendable {
    public typealias Function = (_ prompt: PromptSpec, _ states: [[Int32]]) throws(GFNError) -> [Double]
    /// A host function that is also told the current reward temperature.
    public typealias TemperatureFunction = (_ prompt: PromptSpec, _ states: [[Int32]],
                                            _ rewardTemperature: Double) throws(GFNError) -> [Double]
    public let terminalOnly: Bool
    let function: TemperatureFunction

    public init(terminalOnly: Bool = false, _ function: @escaping Function) {
        self.terminalOnly = terminalOnly
        self.function = { p, s, _ throws(GFNError) in try function(p, s) }
    }

    public init(terminalOnly: Bool = false, temperature function: @escaping TemperatureFunction) {
        self.terminalOnly = terminalOnly
        self.function = function
    }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory]) throws(GFNError) -> [[Double]] {
        try logRewards(prompt: prompt, trajectories: trajectories, rewardTemperature: 1)
    }

    public func logRewards(prompt: PromptSpec, trajectories: [Trajectory],
                           rewardTemperature: Double) throws(GFNError) -> [[Double]] {
        var states: [[Int32]] = []
        for t in trajectories {
            if terminalOnly { states.append(t.state) } else { for s in 0...t.n { states.append(Array(t.state(at: s))) } }
        }
        let values = try function(prompt, states, rewardTemperature)
        guard values.count == states.count else {
            throw GFNError(.callback, "the reward callback returned \(values.count) values for \(states.count) states")
        }
        var out: [[Double]] = []
        var i = 0
        for t in trajectories {
            if terminalOnly {
                var row = [Double](repeating: 0, count: t.n + 1)
                row[t.n] = values[i]; i += 1
                out.append(row)
            } else {
                out.append(Array(values[i..<(i + t.n + 1)])); i += t.n + 1
            }
        }
        return out
    }
}
