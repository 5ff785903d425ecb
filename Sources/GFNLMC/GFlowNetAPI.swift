import CGFNLM
import GFNLM

final class RewardHandle {
    let reward: RewardFunction
    /// Model the reward reads (nil for rule and callback rewards).
    let model: Model?
    init(_ reward: RewardFunction, model: Model?) {
        self.reward = reward
        self.model = model
    }
}

/// The C callback with its user data, called on the training thread.
final class CallbackBox: @unchecked Sendable {
    let fn: gfn_reward_fn
    let userData: UnsafeMutableRawPointer?
    init(fn: gfn_reward_fn, userData: UnsafeMutableRawPointer?) {
        self.fn = fn
        self.userData = userData
    }
}

/// A host function of either signature: (prompt index, T_R, states, lengths, count, out) → status.
typealias HostReward = (Int32, Double, UnsafePointer<UnsafePointer<Int32>?>, UnsafePointer<Int32>, Int32,
                        UnsafeMutablePointer<Double>) -> Int32

@c @implementation
public func gfn_reward_new_callback(_ fn: gfn_reward_fn?, _ userData: UnsafeMutableRawPointer?, _ terminalOnly: Int32,
                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        guard let fn else { throw .invalidArgument("fn is NULL") }
        let o = try requirePointer(out, "out")
        let box = CallbackBox(fn: fn, userData: userData)
        o.pointee = handles.register(RewardHandle(hostReward(terminalOnly: terminalOnly != 0) { i, _, s, l, n, v in
            box.fn(box.userData, i, s, l, n, v)
        }, model: nil))
    }
}

/// The C callback told the reward temperature, with its user data.
final class TemperatureCallbackBox: @unchecked Sendable {
    let fn: gfn_reward_temperature_fn
    let userData: UnsafeMutableRawPointer?
    init(fn: gfn_reward_temperature_fn, userData: UnsafeMutableRawPointer?) {
        self.fn = fn
        self.userData = userData
    }
}

@c @implementation
public func gfn_reward_new_callback_temperature(_ fn: gfn_reward_temperature_fn?, _ userData: UnsafeMutableRawPointer?,
                                            _ terminalOnly: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        guard let fn else { throw .invalidArgument("fn is NULL") }
        let o = try requirePointer(out, "out")
        let box = TemperatureCallbackBox(fn: fn, userData: userData)
        o.pointee = handles.register(RewardHandle(hostReward(terminalOnly: terminalOnly != 0) { i, t, s, l, n, v in
            box.fn(box.userData, i, t, s, l, n, v)
        }, model: nil))
    }
}

/// A CallbackReward that hands every state of a micro-batch to `call` as contiguous C arrays.
func hostReward(terminalOnly: Bool, _ call: @escaping HostReward) -> CallbackReward {
    CallbackReward(terminalOnly: terminalOnly, temperature: { (prompt: PromptSpec, states: [[Int32]], tR: Double) throws(GFNError) -> [Double] in
        let index = Int32(clamping: prompt.index)
        var values = [Double](repeating: .nan, count: states.count)
        var lengths = states.map { Int32($0.count) }
        // contiguous copies the callee may read
        var storage = states.map { s -> UnsafeMutablePointer<Int32> in
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, s.count))
            p.initialize(from: s, count: s.count)
            return p
        }
        defer { for p in storage { p.deallocate() } }
        let rc: Int32 = storage.withUnsafeMutableBufferPointer { sb in
            lengths.withUnsafeMutableBufferPointer { lb in
                values.withUnsafeMutableBufferPointer { vb in
                    sb.baseAddress!.withMemoryRebound(to: UnsafePointer<Int32>?.self, capacity: states.count) { pp in
                        call(index, tR, pp, lb.baseAddress!, Int32(states.count), vb.baseAddress!)
                    }
                }
            }
        }
        _ = storage.count
        guard rc == 0 else { throw GFNError(.callback, "the reward callback returned \(rc)") }
        return values
    })
}

@c @implementation
public func gfn_reward_new_lm_likelihood(_ model: OpaquePointer?, _ demos: UnsafePointer<Int32>?, _ nDemos: Int32,
                                     _ zAdjust: UnsafePointer<gfn_logit_adjustment>?, _ minLength: Int32,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        guard minLength >= 0 else { throw .invalidArgument("min_length must be ≥ 0") }
        let adj = try adjustment(zAdjust)
        let r = try LMLikelihoodReward(model: m.model, demos: try readIds(demos, nDemos, "demos"), zAdjustment: adj,
                                       minLength: Int(minLength))
        o.pointee = handles.register(RewardHandle(r, model: m.model))
    }
}

@c @implementation
public func gfn_reward_new_next_sentence(_ model: OpaquePointer?, _ termination: Int32,
                                     _ adjust: UnsafePointer<gfn_logit_adjustment>?, _ minLength: Int32,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let o = try requirePointer(out, "out")
        guard minLength >= 0 else { throw .invalidArgument("min_length must be ≥ 0") }
        let adj = try adjustment(adjust)
        let r = try NextSentenceReward(model: m.model, termination: termination, adjustment: adj, minLength: Int(minLength))
        o.pointee = handles.register(RewardHandle(r, model: m.model))
    }
}

@c @implementation
public func gfn_reward_new_random_integer(_ tokens: UnsafePointer<Int32>?, _ n: Int32, _ termination: Int32,
                                      _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let o = try requirePointer(out, "out")
        let ids = try readIds(tokens, n, "number_tokens")
        guard !ids.isEmpty else { throw .invalidArgument("number_tokens is empty") }
        o.pointee = handles.register(RewardHandle(RandomIntegerReward(numberTokens: Set(ids), termination: termination), model: nil))
    }
}

@c @implementation
public func gfn_reward_evaluate(_ reward: OpaquePointer?, _ x: UnsafePointer<Int32>?, _ nX: Int32,
                              _ y: UnsafePointer<Int32>?, _ nY: Int32, _ actions: UnsafePointer<Int32>?,
                              _ nActions: Int32, _ logRewards: UnsafeMutablePointer<Double>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(reward, as: RewardHandle.self, "reward")
        let out = try requirePointer(logRewards, "log_rewards")
        let ys = try readIds(y, nY, "y")
        let spec = PromptSpec(x: try readIds(x, nX, "x"), y: ys.isEmpty ? nil : ys)
        let t = Trajectory(actions: try readIds(actions, nActions, "actions"), truncated: false)
        let rows = try h.reward.logRewards(prompt: spec, trajectories: [t])
        guard let row = rows.first, row.count == t.n + 1 else { throw GFNError(.callback, "the reward returned the wrong number of values") }
        for (i, v) in row.enumerated() { out[i] = v }
    }
}

@c @implementation
public func gfn_reward_free(_ reward: OpaquePointer?) {
    handles.remove(reward, as: RewardHandle.self)
}

// MARK: - trainer

final class GFlowNetHandle {
    let trainer: GFlowNetTrainer
    let adapterHandle: AdapterHandle
    let rewardHandle: RewardHandle
    var progress: (gfn_progress_fn, UnsafeMutableRawPointer?)?
    init(_ trainer: GFlowNetTrainer, adapter: AdapterHandle, reward: RewardHandle) {
        self.trainer = trainer; self.adapterHandle = adapter; self.rewardHandle = reward
    }
}

/// gfn_gflownet_params.train NULL: the SFT defaults with a 20-step warm-up (the GFlowNet runs' usual start).
func gflownetDefaultTrainParams() -> gfn_train_params {
    var t = gfn_train_default_params()
    t.warmup_steps = 20
    return t
}

@c @implementation
public func gfn_gflownet_default_params() -> gfn_gflownet_params {
    let d = GFlowNetConfig()
    return gfn_gflownet_params(
        size: UInt32(MemoryLayout<gfn_gflownet_params>.size), objective: 0, subtb_lambda: 1, strict_mask: 0, layout: 0,
        termination: -1, min_length: 0, max_length: 16, adjust: nil, calculator: 0,
        batch_size: Int32(d.batchSize), grad_accumulation: Int32(d.gradAccumulation), average_accumulation: 0,
        train: nil,
        logz_lr: d.logZLearningRate, logz_init: d.logZInit, reward_temp_start: 1, reward_temp_end: 1,
        reward_temp_horizon: 1, p_on_policy: d.onPolicyProbability, p_replay: d.replayProbability,
        temp_low: d.temperatureLow, temp_high: d.temperatureHigh, buffer_capacity: Int32(d.bufferCapacity),
        buffer_tolerance: d.bufferTolerance, buffer_prioritized: 1, lora_dropout: 0, seed: 0,
        pack_weights: d.packWeights ? 1 : 0, temp_low_end: d.temperatureLowEnd, temp_high_end: d.temperatureHighEnd,
        temp_horizon: Int32(d.temperatureHorizon), root_flow: d.learnedRootFlow ? 1 : 0,
        ppo_clip: d.ppo.clipRange, ppo_epochs: Int32(d.ppo.epochs), kl_coef: d.ppo.klCoefficient,
        kl_target: d.ppo.klTarget ?? 0, kl_horizon: d.ppo.klHorizon)
}

func readPrompts(_ p: UnsafePointer<gfn_prompt>?, _ n: Int32) throws(GFNError) -> [PromptSpec] {
    guard n > 0 else { throw .invalidArgument("n_prompts must be positive (got \(n))") }
    let ps = try requirePointer(p, "prompts")
    // The caller's elements are prompts[0].size bytes apart (a struct that grew keeps older callers' stride).
    let stride = Int(ps.pointee.size)
    try checkStructSize(ps.pointee.size, min: MemoryLayout<gfn_prompt>.size, current: MemoryLayout<gfn_prompt>.size,
                        "gfn_prompt")
    var out: [PromptSpec] = []
    for i in 0..<Int(n) {
        let e = UnsafeRawPointer(ps).advanced(by: i * stride).assumingMemoryBound(to: gfn_prompt.self).pointee
        guard e.size == ps.pointee.size else {
            throw .invalidArgument("prompts[\(i)].size is \(e.size); every element must have prompts[0]'s size (\(stride))")
        }
        let y = try readIds(e.y, e.n_y, "prompts[\(i)].y")
        let rc = try readIds(e.reward_context, e.n_reward_context, "prompts[\(i)].reward_context")
        guard e.weight >= 0 && e.weight.isFinite else { throw .invalidArgument("prompts[\(i)].weight must be ≥ 0") }
        var spec = PromptSpec(x: try readIds(e.x, e.n_x, "prompts[\(i)].x"), y: y.isEmpty ? nil : y,
                              rewardContext: rc.isEmpty ? nil : rc, weight: e.weight == 0 ? 1 : e.weight)
        spec.index = i
        out.append(spec)
    }
    return out
}

@c @implementation
public func gfn_gflownet_new(_ model: OpaquePointer?, _ adapter: OpaquePointer?, _ reward: OpaquePointer?,
                           _ prompts: UnsafePointer<gfn_prompt>?, _ nPrompts: Int32,
                           _ params: UnsafePointer<gfn_gflownet_params>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let a = try handles.lookup(adapter, as: AdapterHandle.self, "adapter")
        let r = try handles.lookup(reward, as: RewardHandle.self, "reward")
        let o = try requirePointer(out, "out")
        guard a.model === m.model else { throw .state("the adapter was made for another model") }
        var p = gfn_gflownet_default_params()
        if let params {
            try checkStructSize(params.pointee.size, min: MemoryLayout<gfn_gflownet_params>.size,
                                current: MemoryLayout<gfn_gflownet_params>.size, "gfn_gflownet_params")
            p = params.pointee
        }
        var train = gflownetDefaultTrainParams()
        if let t = p.train {
            try checkStructSize(t.pointee.size, min: MemoryLayout<gfn_train_params>.size,
                                current: MemoryLayout<gfn_train_params>.size, "gfn_train_params")
            train = t.pointee
        }
        var c = GFlowNetConfig()
        switch p.objective {
        case 0: c.objective = .subTB(lambda: p.subtb_lambda, strictMask: p.strict_mask != 0)
        case 1: c.objective = .tb
        case 2: c.objective = .db
        case 3: c.objective = .reinforce
        case 4: c.objective = .ppo
        default: throw .invalidArgument("unknown objective \(p.objective)")
        }
        let (h, sched, clip) = try readTrainParams(train)
        c.learningRate = h.lr; c.beta1 = h.beta1; c.beta2 = h.beta2; c.weightDecay = h.weightDecay
        c.schedule = sched; c.maxGradNorm = clip
        c.batchSize = Int(p.batch_size); c.gradAccumulation = Int(p.grad_accumulation)
        c.averageAccumulation = p.average_accumulation != 0
        c.logZLearningRate = p.logz_lr; c.logZInit = p.logz_init
        c.rewardTemperature = LinearRamp(start: p.reward_temp_start, end: p.reward_temp_end, horizon: Int(p.reward_temp_horizon))
        c.onPolicyProbability = p.p_on_policy; c.replayProbability = p.p_replay
        c.temperatureLow = p.temp_low; c.temperatureHigh = p.temp_high
        guard p.temp_horizon >= 0 else { throw .invalidArgument("temp_horizon must be ≥ 0 (got \(p.temp_horizon))") }
        c.temperatureHorizon = Int(p.temp_horizon)
        c.temperatureLowEnd = p.temp_low_end; c.temperatureHighEnd = p.temp_high_end
        switch p.root_flow {
        case 0: c.learnedRootFlow = false
        case 1: c.learnedRootFlow = true
        default: throw .invalidArgument("unknown root_flow \(p.root_flow)")
        }
        c.bufferCapacity = Int(p.buffer_capacity); c.bufferTolerance = p.buffer_tolerance
        c.bufferPrioritized = p.buffer_prioritized != 0
        c.loraDropout = p.lora_dropout != 0
        c.seed = p.seed
        c.packWeights = p.pack_weights != 0
        guard p.kl_target >= 0 else { throw .invalidArgument("kl_target must be ≥ 0 (got \(p.kl_target))") }
        c.ppo.clipRange = p.ppo_clip; c.ppo.epochs = Int(p.ppo_epochs); c.ppo.klCoefficient = p.kl_coef
        c.ppo.klTarget = p.kl_target == 0 ? nil : p.kl_target; c.ppo.klHorizon = p.kl_horizon
        let settings = try rolloutSettings(termination: p.termination, minLength: p.min_length, maxLength: p.max_length,
                                           layout: p.layout, adjust: p.adjust, calculator: p.calculator)
        let specs = try readPrompts(prompts, nPrompts)
        // values the core would only refuse (or silently misuse) at the first step
        guard p.reward_temp_start.isFinite, p.reward_temp_end.isFinite else {
            throw .invalidArgument("reward temperatures must be finite (got \(p.reward_temp_start), \(p.reward_temp_end))")
        }
        guard p.logz_init.isFinite else { throw .invalidArgument("logz_init must be finite (got \(p.logz_init))") }
        guard p.objective != 0 || (p.subtb_lambda > 0 && p.subtb_lambda.isFinite) else {
            throw .invalidArgument("subtb_lambda must be positive and finite (got \(p.subtb_lambda))")
        }
        try checkMemory(rows: Int(p.batch_size), bytesPerRow: rowBytes(m.model.config, tokens: Int(p.max_length)),
                        "a micro-batch of \(p.batch_size) trajectories")
        let t = try GFlowNetTrainer(model: m.model, adapter: a.adapter, reward: r.reward, prompts: specs,
                                    rollout: settings, config: c)
        o.pointee = handles.register(GFlowNetHandle(t, adapter: a, reward: r))
    }
}

@c @implementation
public func gfn_gflownet_set_progress(_ trainer: OpaquePointer?, _ fn: gfn_progress_fn?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        h.progress = fn.map { ($0, userData) }
    }
}

func cStats(_ s: GFlowNetStepStats) -> gfn_step_stats {
    gfn_step_stats(size: UInt32(MemoryLayout<gfn_step_stats>.size), step: Int32(clamping: s.step), applied: s.applied ? 1 : 0,
                   loss: s.loss, mean_log_r: s.meanLogR, max_log_r: s.maxLogR, mean_log_q: s.meanLogQ,
                   mean_length: s.meanLength, fraction_unique: s.fractionUnique,
                   var_log_r_minus_log_q: s.varLogRMinusLogQ, reward_temperature: s.rewardTemperature,
                   learning_rate: s.learningRate, grad_norm: s.gradNorm, log_z: s.logZ,
                   on_policy_batches: Int32(s.onPolicyBatches), tempered_batches: Int32(s.temperedBatches),
                   replay_batches: Int32(s.replayBatches), trajectories: Int32(s.trajectories))
}

func runStep(_ h: GFlowNetHandle) throws(GFNError) -> GFlowNetStepStats {
    let s = try h.trainer.trainStep()
    if let (fn, ud) = h.progress {
        var c = cStats(s)
        if fn(ud, &c) == 0 { throw GFNError(.cancelled, "training stopped by the progress callback after step \(h.trainer.step)") }
    }
    return s
}

@c @implementation
public func gfn_gflownet_step(_ trainer: OpaquePointer?, _ out: UnsafeMutablePointer<gfn_step_stats>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        if let out {
            try checkStructSize(out.pointee.size, min: MemoryLayout<gfn_step_stats>.size,
                                current: MemoryLayout<gfn_step_stats>.size, "gfn_step_stats")
        }
        let s = try runStep(h)
        out?.pointee = cStats(s)
    }
}

@c @implementation
public func gfn_gflownet_train(_ trainer: OpaquePointer?, _ steps: Int32, _ last: UnsafeMutablePointer<gfn_step_stats>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        guard steps >= 0 else { throw .invalidArgument("steps must be ≥ 0") }
        if let last {
            try checkStructSize(last.pointee.size, min: MemoryLayout<gfn_step_stats>.size,
                                current: MemoryLayout<gfn_step_stats>.size, "gfn_step_stats")
        }
        for _ in 0..<Int(steps) {
            let s = try runStep(h)
            last?.pointee = cStats(s)
        }
    }
}

@c @implementation
public func gfn_gflownet_sample(_ trainer: OpaquePointer?, _ x: UnsafePointer<Int32>?, _ nX: Int32, _ count: Int32,
                              _ temperature: Float, _ seed: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        let o = try requirePointer(out, "out")
        try checkMemory(rows: Int(count), bytesPerRow: rowBytes(h.trainer.model.config, tokens: h.trainer.engine.settings.maxLength),
                        "sampling \(count) trajectories")
        let drawn = try h.trainer.sample(prompt: try readIds(x, nX, "x"), count: Int(count), temperature: temperature, seed: seed)
        o.pointee = handles.register(SamplesHandle(samples: drawn.map(cSample), nStop: 0))
    }
}

/// A policy sample as gfn_samples report it: the state after X, one log q per token (0 for tool output), n_steps
/// = the number of actions.
func cSample(_ s: PolicySample) -> Sample {
    Sample(promptIndex: 0, tokens: s.trajectory.state, tokenLogProbs: s.tokenLogProbs.map { Float($0) },
           stopLogProbs: [], steps: s.trajectory.n,
           finishReason: s.trajectory.truncated ? .maxTokens : .stopToken, logProb: s.logQ)
}

/// Rollout settings from the C fields shared by gfn_gflownet_params and gfn_rollout_params.
func rolloutSettings(termination: Int32, minLength: Int32, maxLength: Int32, layout: Int32,
                     adjust: UnsafePointer<gfn_logit_adjustment>?, calculator: Int32) throws(GFNError) -> RolloutSettings {
    guard let layout = TerminalLayout(rawValue: layout) else { throw .invalidArgument("unknown layout \(layout)") }
    var tool: Calculator?
    switch calculator {
    case 0: tool = nil
    case 1: tool = Calculator(mode: .referenceCompatible)
    case 2: tool = Calculator(mode: .fixed)
    default: throw .invalidArgument("unknown calculator mode \(calculator)")
    }
    return RolloutSettings(termination: termination, maxLength: Int(maxLength), minLength: Int(minLength),
                           layout: layout, adjustment: try adjustment(adjust), tool: tool)
}

@c @implementation
public func gfn_rollout_default_params() -> gfn_rollout_params {
    gfn_rollout_params(size: UInt32(MemoryLayout<gfn_rollout_params>.size), termination: -1, min_length: 0,
                       max_length: 16, layout: 0, adjust: nil, calculator: 0)
}

@c @implementation
public func gfn_rollout_sample(_ model: OpaquePointer?, _ adapter: OpaquePointer?, _ params: UnsafePointer<gfn_rollout_params>?,
                             _ x: UnsafePointer<Int32>?, _ nX: Int32, _ count: Int32, _ temperature: Float, _ seed: UInt64,
                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi { () throws(GFNError) in
        let m = try handles.lookup(model, as: ModelHandle.self, "model")
        let a = try adapterFor(adapter, model: m.model)
        let p = try requirePointer(params, "params").pointee
        let o = try requirePointer(out, "out")
        try checkStructSize(p.size, min: MemoryLayout<gfn_rollout_params>.size,
                            current: MemoryLayout<gfn_rollout_params>.size, "gfn_rollout_params")
        let settings = try rolloutSettings(termination: p.termination, minLength: p.min_length, maxLength: p.max_length,
                                           layout: p.layout, adjust: p.adjust, calculator: p.calculator)
        guard count > 0 else { throw .invalidArgument("count must be positive (got \(count))") }
        try checkMemory(rows: Int(count), bytesPerRow: rowBytes(m.model.config, tokens: Int(p.max_length)),
                        "sampling \(count) trajectories")
        let engine = try RolloutEngine(model: m.model, settings: settings)
        let drawn = try engine.samplePolicy(prompt: try readIds(x, nX, "x"), count: Int(count), temperature: temperature,
                                            adapter: a, seed: seed)
        o.pointee = handles.register(SamplesHandle(samples: drawn.map(cSample), nStop: 0))
    }
}

@c @implementation
public func gfn_gflownet_seed_buffer(_ trainer: OpaquePointer?, _ promptIndex: Int32, _ actions: UnsafePointer<UnsafePointer<Int32>?>?,
                                  _ lengths: UnsafePointer<Int32>?, _ n: Int32) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        guard n >= 0 else { throw .invalidArgument("n must be ≥ 0") }
        if n == 0 { return }
        let ap = try requirePointer(actions, "actions"), lp = try requirePointer(lengths, "lengths")
        var demos: [[Int32]] = []
        for i in 0..<Int(n) { demos.append(try readIds(ap[i], lp[i], "actions[\(i)]")) }
        try h.trainer.seedBuffer(prompt: Int(promptIndex), demonstrations: demos)
    }
}

@c @implementation
public func gfn_gflownet_exact(_ trainer: OpaquePointer?, _ promptIndex: Int32, _ vocabulary: UnsafePointer<Int32>?,
                             _ nVocabulary: Int32, _ out: UnsafeMutablePointer<gfn_exact_result>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        let o = try requirePointer(out, "out")
        try checkStructSize(o.pointee.size, min: MemoryLayout<gfn_exact_result>.size,
                            current: MemoryLayout<gfn_exact_result>.size, "gfn_exact_result")
        let t = h.trainer
        guard promptIndex >= 0 && Int(promptIndex) < t.prompts.count else {
            throw .outOfRange("prompt index \(promptIndex) outside 0..<\(t.prompts.count)")
        }
        let d = try t.engine.exactDistribution(prompt: t.prompts[Int(promptIndex)], vocabulary: try readIds(vocabulary, nVocabulary, "vocabulary"),
                                               adapter: t.adapter, reward: t.reward, rewardTemperature: t.rewardTemperature)
        o.pointee = gfn_exact_result(size: UInt32(MemoryLayout<gfn_exact_result>.size), n_sequences: Int32(d.sequences.count),
                                     kl_target_q: d.klTargetToQ, kl_q_target: d.klQToTarget, total_variation: d.totalVariation,
                                     log_z: d.logZ, mass_q: d.massQ)
    }
}

@c @implementation
public func gfn_gflownet_save(_ trainer: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        let dir = try requireString(directory, "directory")
        guard writesCheckpoints(h.trainer.distributed) else { return }   // distributed: rank 0 writes
        try h.trainer.save(checkpoint: dir)
    }
}

@c @implementation
public func gfn_gflownet_load(_ trainer: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> Int32 {
    capi { () throws(GFNError) in
        let h = try handles.lookup(trainer, as: GFlowNetHandle.self, "trainer")
        try h.trainer.load(checkpoint: try requireString(directory, "directory"))
        h.trainer.distributed?.resetVerification()   // every rank must have loaded the same state
    }
}

@c @implementation
public func gfn_gflownet_free(_ trainer: OpaquePointer?) {
    handles.remove(trainer, as: GFlowNetHandle.self)
}
