/// Hyper-parameters of GFlowNet fine-tuning. Defaults follow the reference's main.py where it has one.
public struct GFlowNetConfig: Sendable, Equatable {
    public var objective: Objective = .subTB
    /// Trajectories per micro-batch (one prompt each).
    public var batchSize: Int = 8
    /// Micro-batches per optimiser step.
    public var gradAccumulation: Int = 1
    /// false: gradients of the micro-batches are summed (main.py, rng, subj); true: averaged (next_sentence).
    public var averageAccumulation: Bool = false
    public var learningRate: Double = 1e-4
    public var schedule: LRSchedule = .linearWarmup(warmupSteps: 20)
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var weightDecay: Double = 0.01
    public var maxGradNorm: Double?
    /// TB's learned log Z (one per training prompt): its learning rate and initial value.
    public var logZLearningRate: Double = 1.0
    public var logZInit: Double = 0
    /// SubTB / DB with min_len ≥ 1: the root's flow is the learned log Z (above) instead of the reference's
    /// R(s_0⊤)/q(⊤|s_0), a never-sampled stop probability that must fall to R(s_0⊤)/Z (LengthRestriction).
    public var learnedRootFlow: Bool = false
    /// Reward temperature T_R(step), linear (log R is divided by it).
    public var rewardTemperature = LinearRamp(start: 1, end: 1, horizon: 1)
    /// Behaviour per micro-batch: probabilities of on-policy (τ = 1) and replay; the rest is tempered with
    /// τ ~ U[temperatureLow, temperatureHigh]. Replay without a stored item for the prompt falls back to tempered.
    public var onPolicyProbability: Double = 0.25
    public var replayProbability: Double = 0.25
    public var temperatureLow: Double = 0.5
    public var temperatureHigh: Double = 2.0
    /// Behaviour-temperature annealing: with a horizon H > 0 the tempered range moves linearly from
    /// [temperatureLow, temperatureHigh] at step 0 to [temperatureLowEnd, temperatureHighEnd] at step H (then
    /// stays); H = 0: no annealing.
    public var temperatureHorizon: Int = 0
    public var temperatureLowEnd: Double = 1
    public var temperatureHighEnd: Double = 1
    /// Replay buffer (used when replayProbability > 0).
    public var bufferCapacity: Int = 50
    public var bufferTolerance: Double = 0.25
    public var bufferPrioritized: Bool = true
    /// LoRA dropout in the traced pass that gives the policy log-probabilities; off by default (docs/method.md): a
    /// deterministic policy. When the sampling pass is traced (`tracedSamplingRows`), sampling runs with dropout
    /// too, as the reference's train-mode sampling; otherwise only the teacher-forced pass uses it.
    public var loraDropout: Bool = false
    /// Rows per pass from which the sampling pass itself is traced and back-propagated (no second forward, as in
    /// the reference; every decoding step's backward runs in lockstep). Below it, sampling runs untraced and one
    /// teacher-forced pass over all positions gives the log-probabilities. Traced is faster at every size
    /// measured (GPT-2 small, 2 threads, per step: 4 rows × 20 tokens 1.19 vs 1.42 s, 8 × 20 1.47 vs 2.45 s,
    /// 8 × 5 0.44 vs 0.77 s, 64 × 5 1.6–2.2 vs 2.5 s), hence the default 0 (always); Int.max = never.
    public var tracedSamplingRows: Int = 0
    /// Micro-batches of the same prompt are rolled out and back-propagated together, up to this many rows per
    /// pass (larger matrix products; each micro-batch keeps its own loss). 1 = one micro-batch at a time.
    public var rowsPerPass: Int = 64
    /// Pack the model's fp32 weights once more for OpenBLAS's kernel (`ModelWeights.packForRowBatches`) and run the
    /// trainer's passes on them: every product of the sampling forward has the rows of one decoding step, where
    /// cblas_sgemm would repack each weight per call (GPT-2 small rng step ~7 % faster). Costs about the fp32
    /// weights' size in memory (once per model, shared by its trainers, kept until the model is released); no
    /// effect on bf16 weights. The model's other users (contexts, rewards) keep cblas_sgemm and their results.
    public var packWeights: Bool = true
    public var seed: UInt64 = 0
    /// PPO's settings (objective `.ppo`).
    public var ppo = PPOConfig()

    public init() {}

    func validate() throws(GFNError) {
        guard batchSize > 0 else { throw .invalidArgument("batch_size must be positive") }
        guard rowsPerPass > 0 else { throw .invalidArgument("rows_per_pass must be positive") }
        guard tracedSamplingRows >= 0 else { throw .invalidArgument("traced_sampling_rows must be ≥ 0") }
        guard gradAccumulation > 0 else { throw .invalidArgument("grad_accumulation must be positive") }
        guard learningRate >= 0 && learningRate.isFinite, logZLearningRate >= 0 && logZLearningRate.isFinite else {
            throw .invalidArgument("learning rates must be ≥ 0")
        }
        guard onPolicyProbability >= 0, replayProbability >= 0, onPolicyProbability + replayProbability <= 1 + 1e-12 else {
            throw .invalidArgument("behaviour probabilities must be ≥ 0 and sum to at most 1")
        }
        guard temperatureLow > 0, temperatureHigh >= temperatureLow, temperatureHigh.isFinite else {
            throw .invalidArgument("behaviour temperatures need 0 < low ≤ high")
        }
        guard temperatureHorizon >= 0 else { throw .invalidArgument("the behaviour-temperature horizon must be ≥ 0") }
        if objective == .reinforce || objective == .ppo {
            // REINFORCE's and PPO's gradients are an expectation under the sampler itself: tempered or replayed batches would
            // bias it silently (no importance weights), so they are refused
            let temperedIsOnPolicy = temperatureLow == 1 && temperatureHigh == 1
                && (temperatureHorizon == 0 || (temperatureLowEnd == 1 && temperatureHighEnd == 1))
            guard replayProbability == 0, onPolicyProbability >= 1 - 1e-12 || temperedIsOnPolicy else {
                throw .invalidArgument("\(objective == .ppo ? "PPO" : "REINFORCE") trains on its own samples only: "
                                       + "set p_on_policy = 1 and p_replay = 0 (tempered or replayed batches would bias its gradient)")
            }
        }
        if objective == .ppo {
            try ppo.validate()
            guard batchSize >= 2 else { throw .invalidArgument("PPO's leave-one-out baseline needs batch_size ≥ 2") }
        }
        if temperatureHorizon > 0 {
            guard temperatureLowEnd > 0, temperatureHighEnd >= temperatureLowEnd, temperatureHighEnd.isFinite else {
                throw .invalidArgument("final behaviour temperatures need 0 < low ≤ high")
            }
        }
        guard rewardTemperature.start > 0, rewardTemperature.end > 0, rewardTemperature.horizon >= 0 else {
            throw .invalidArgument("reward temperatures must be positive")
        }
        try schedule.validate()
    }
}

/// What happened in one optimiser step.
public struct GFlowNetStepStats: Sendable, Equatable {
    public var step = 0
    public var loss = 0.0
    /// Untempered terminal log R of the step's trajectories.
    public var meanLogR = 0.0
    public var maxLogR = -Double.infinity
    /// log q of the complete trajectories (actions and termination; 0 for a forced stop).
    public var meanLogQ = 0.0
    public var meanLength = 0.0
    /// Distinct action sequences / trajectories.
    public var fractionUnique = 0.0
    /// Var(log R/T_R − log q): zero for a perfect sampler.
    public var varLogRMinusLogQ = 0.0
    public var rewardTemperature = 1.0
    public var learningRate = 0.0
    public var gradNorm = 0.0
    public var logZ = 0.0
    public var onPolicyBatches = 0
    public var temperedBatches = 0
    public var replayBatches = 0
    public var trajectories = 0
    /// PPO: mean KL(q‖p_base) estimate of the step's trajectories at sampling time, the KL coefficient β after
    /// the step, and the share of tokens whose ratio was clipped (mean over updates); 0 for other objectives.
    public var kl = 0.0
    public var klCoefficient = 0.0
    public var clipFraction = 0.0
    /// False when the optimiser skipped the update (non-finite gradients); `message` says why.
    public var applied = true
    public var message = ""
}

extension GFlowNetStepStats {
    /// Fills the per-trajectory summaries from one step's trajectories (log R, log q, lengths, distinct action
    /// sequences, log R/T_R − log q) and returns the mean of the last, the estimate of log Z it implies.
    mutating func summarize(logRs: [Double], logQs: [Double], lengths: [Double], distinct: Int,
                            diffs: [Double]) -> Double {
        let n = Double(max(1, logRs.count))
        meanLogR = logRs.reduce(0, +) / n
        maxLogR = logRs.max() ?? -.infinity
        meanLogQ = logQs.reduce(0, +) / n
        meanLength = lengths.reduce(0, +) / n
        fractionUnique = Double(distinct) / n
        let md = diffs.reduce(0, +) / n
        varLogRMinusLogQ = diffs.reduce(0) { $0 + ($1 - md) * ($1 - md) } / n
        trajectories = logRs.count
        return md
    }
}

/// GFlowNet fine-tuning of a LoRA adapter (the paper's method). One instance per training run; not thread-safe.
public final class GFlowNetTrainer: @unchecked Sendable {
    public let model: Model
    public let adapter: LoRAAdapter
    public let reward: RewardFunction
    public let prompts: [PromptSpec]
    public let config: GFlowNetConfig
    public let engine: RolloutEngine
    public let buffer: ReplayBuffer
    public internal(set) var step = 0
    /// Called after every step; return false to stop (the caller's loop sees `.cancelled`).
    public var progress: ((GFlowNetStepStats) -> Bool)?

    let pass: PolicyPass
    let gradients: Gradients
    let logZ: Parameter
    let optimizer: AdamW
    var rng: RNG
    /// Data-parallel replicas (`setDistributed`); nil in a single process.
    var exchange: GradientExchange?
    /// PPO's KL coefficient β (trl's AdaptiveKLController).
    var klController: AdaptiveKLController

    public init(model: Model, adapter: LoRAAdapter, reward: RewardFunction, prompts: [PromptSpec],
                rollout: RolloutSettings, config: GFlowNetConfig = GFlowNetConfig()) throws(GFNError) {
        try config.validate()
        guard !prompts.isEmpty else { throw .invalidArgument("no training prompts") }
        for (i, p) in prompts.enumerated() {
            guard p.weight >= 0 && p.weight.isFinite else { throw .invalidArgument("prompt \(i) has weight \(p.weight)") }
        }
        guard prompts.contains(where: { $0.weight > 0 }) else { throw .invalidArgument("every prompt has weight 0") }
        if reward.terminalOnly, config.objective != .tb {
            throw .invalidArgument("a terminal-only reward works with trajectory balance only (objective tb)")
        }
        try adapter.validate(against: model.weights)
        self.model = model
        self.adapter = adapter
        self.reward = reward
        self.prompts = prompts.enumerated().map { i, p in var q = p; q.index = i; return q }
        self.config = config
        // The trainer's own passes (sampling for training, `sample`) may run on packed weights; the model's
        // transformer, shared with contexts and rewards, keeps cblas_sgemm and its results.
        // Packing is an optimisation: without memory for (all) the copies, the rest run unpacked.
        var policyModel = model
        if config.packWeights {
            do {
                try model.weights.packForRowBatches(threads: model.transformer.threads)
            } catch where error.status == .outOfMemory {}
            // Quantized weights have no packed copy; their trainer's passes likewise leave the batch-invariant
            // decoding products (whose dequantizing kernel is slow at the 64 rows of a training step) for the
            // fastest product per batch size (sgemm on widened chunks at 64 rows and more).
            if model.weights.hasPackedMatrices || model.weights.weightType.isQuantized {
                policyModel = Model(transformer: Transformer(weights: model.weights, threads: model.transformer.threads,
                                                             usesPackedWeights: model.weights.hasPackedMatrices),
                                    tokenizer: model.tokenizer, path: model.path)
            }
        }
        engine = try RolloutEngine(model: policyModel, settings: rollout)
        for (i, p) in prompts.enumerated() { try engine.context.checkPrompt(p.x, index: i) }
        buffer = try ReplayBuffer(capacity: config.bufferCapacity, tolerance: config.bufferTolerance,
                                  prioritized: config.bufferPrioritized)
        pass = try PolicyPass(engine: engine)
        gradients = try Gradients(adapter: adapter)
        logZ = try Parameter(name: "log_z", value: Tensor(shape: [prompts.count],
                                                           values: Array(repeating: Float(config.logZInit), count: prompts.count)))
        let loraGroup = ParameterGroup(name: "lora", parameters: gradients.parameters,
                                       hyper: AdamWHyperparameters(lr: config.learningRate, beta1: config.beta1,
                                                                   beta2: config.beta2, weightDecay: config.weightDecay))
        var groups = [loraGroup]
        if config.objective == .tb || LengthRestriction(objective: config.objective, minLength: rollout.minLength,
                                                         learnedRoot: config.learnedRootFlow).learnedRoot {
            groups.append(ParameterGroup(name: "log_z", parameters: [logZ],
                                         hyper: AdamWHyperparameters(lr: config.logZLearningRate, beta1: config.beta1,
                                                                     beta2: config.beta2, weightDecay: 0),
                                         schedule: .constant))
        }
        optimizer = try AdamW(groups: groups, schedule: config.schedule, maxGradNorm: config.maxGradNorm,
                              threads: model.transformer.threads)
        rng = RNG(seed: config.seed)
        klController = AdaptiveKLController(value: config.ppo.klCoefficient, target: config.ppo.klTarget,
                                            horizon: config.ppo.klHorizon)
    }

    /// Whether the learned log Z is trained (TB, or SubTB / DB with a learned root flow).
    var usesLogZ: Bool {
        config.objective == .tb || LengthRestriction(objective: config.objective, minLength: engine.settings.minLength,
                                                     learnedRoot: config.learnedRootFlow).learnedRoot
    }

    /// The current reward temperature.
    public var rewardTemperature: Double { config.rewardTemperature.value(step: step) }

    /// The learned log Z of every prompt (TB).
    public var logZValues: [Double] { logZ.value.array.map(Double.init) }

    func decodeText(_ actions: [Int32]) -> String {
        guard let tok = model.tokenizer, let s = try? tok.decode(actions) else {
            return actions.map(String.init).joined(separator: " ")
        }
        return String(s.drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }

    func choosePrompt() -> Int {
        let total = prompts.reduce(0) { $0 + $1.weight }
        let u = rng.uniform() * total
        var acc = 0.0
        for (i, p) in prompts.enumerated() {
            acc += p.weight
            if u < acc { return i }
        }
        return prompts.count - 1
    }

    /// Checks a reward matrix: one finite value per state.
    func checkRewards(_ r: [[Double]], _ trajs: [Trajectory]) throws(GFNError) {
        guard r.count == trajs.count else {
            throw GFNError(.callback, "the reward returned \(r.count) rows for \(trajs.count) trajectories")
        }
        for (row, t) in zip(r, trajs) {
            guard row.count == t.n + 1 else {
                throw GFNError(.callback, "the reward returned \(row.count) values for a trajectory with \(t.n + 1) states")
            }
            for (k, v) in row.enumerated() where !v.isFinite && (!reward.terminalOnly || k == t.n) {
                throw GFNError(.numerical, "the reward is \(v) for a state of \(t.n) actions: rewards must be finite")
            }
        }
    }

    /// One optimiser step: `gradAccumulation` micro-batches (behaviour chosen per micro-batch, rollouts, rewards,
    /// loss, backward), then AdamW. On an error (a NaN reward, a failing callback) nothing changes: adapter,
    /// optimiser, buffer, RNG and step are as before, and the error is thrown.
    @discardableResult
    public func trainStep() throws(GFNError) -> GFlowNetStepStats {
        if config.objective == .ppo { return try ppoStep() }
        let rngBefore = rng
        let tR = rewardTemperature
        var stats = GFlowNetStepStats()
        stats.step = step
        stats.rewardTemperature = tR
        stats.learningRate = optimizer.learningRate(group: 0)
        var staged: [(String, ReplayItem)] = []
        var lossSum = 0.0
        var logRs: [Double] = [], logQs: [Double] = [], diffs: [Double] = [], lengths: [Double] = []
        var seen = Set<[Int32]>()
        optimizer.zeroGrad()
        var merged: MergedStats?
        do throws(GFNError) {
            try verifyDistributed()
            let rowBase = rowOffset
            // 1. Plan the micro-batches (prompt, behaviour, replayed items, RNG seed) exactly as if they ran one
            //    after the other; the replay buffer is read as it was at the start of the step.
            struct Micro {
                let prompt: Int
                let plans: [RolloutEngine.RowPlan]
                let replayed: [ReplayItem]?
            }
            var micros: [Micro] = []
            for _ in 0..<config.gradAccumulation {
                let p = choosePrompt()
                let behaviour = Behaviour.choose(config: config, step: step, rng: &rng)
                let microSeed = rng.next()
                var replayed: [ReplayItem]? = nil
                if case .replay = behaviour { replayed = sampleReplay(prompts[p].key, microSeed: microSeed) }
                if let items = replayed {
                    stats.replayBatches += 1
                    micros.append(Micro(prompt: p, plans: items.enumerated().map { i, it in
                        RolloutEngine.RowPlan(temperature: 1, seed: mixSeed(microSeed, 0xA11, UInt64(rowBase + i)), actions: it.actions)
                    }, replayed: items))
                } else {
                    var tau = 1.0
                    switch behaviour {
                    case .onPolicy: stats.onPolicyBatches += 1
                    case .tempered(let t): stats.temperedBatches += 1; tau = t
                    case .replay(let fallback): stats.temperedBatches += 1; tau = fallback  // nothing stored yet
                    }
                    micros.append(Micro(prompt: p, plans: (0..<config.batchSize).map { i in
                        RolloutEngine.RowPlan(temperature: Float(tau), seed: mixSeed(microSeed, 0xA11, UInt64(rowBase + i)))
                    }, replayed: nil))
                }
            }
            // 2. Micro-batches of one prompt run together (one prompt pass, all rows batched in every matrix
            //    product), in chunks of at most `rowsPerPass` rows; each keeps its own loss, and one backward pass
            //    takes the sum of their gradients (backpropagation is linear in the upstream gradients).
            var order: [Int] = []
            var byPrompt: [Int: [Int]] = [:]
            for (i, m) in micros.enumerated() {
                if byPrompt[m.prompt] == nil { order.append(m.prompt) }
                byPrompt[m.prompt, default: []].append(i)
            }
            var chunks: [[Int]] = []
            for p in order {
                var cur: [Int] = []
                var rows = 0
                for i in byPrompt[p] ?? [] {
                    if !cur.isEmpty && rows + micros[i].plans.count > config.rowsPerPass {
                        chunks.append(cur); cur = []; rows = 0
                    }
                    cur.append(i); rows += micros[i].plans.count
                }
                if !cur.isEmpty { chunks.append(cur) }
            }
            let restriction = LengthRestriction(objective: config.objective, minLength: engine.settings.minLength,
                                                learnedRoot: config.learnedRootFlow)
            for chunk in chunks {
                let p = micros[chunk[0]].prompt
                let prompt = prompts[p]
                let key = prompt.key
                let plans = chunk.flatMap { micros[$0].plans }
                // Enough rows: the sampling pass is traced and its distributions are the policy's log-probabilities
                // (no second forward; with LoRA dropout when enabled, as the reference samples in train mode).
                // Few rows: untraced sampling, then one teacher-forced pass over all positions.
                pass.dropoutSeed = config.loraDropout ? rankSeed(rng.next()) : nil
                let trajs: [Trajectory], rawPF: [[Double]], lpt: [[Double]]
                if plans.count >= config.tracedSamplingRows {
                    (trajs, rawPF, lpt) = try pass.sample(prompt: prompt.x, rows: plans, adapter: adapter)
                } else {
                    trajs = try engine.generate(prompt: prompt.x, rows: plans, adapter: adapter)
                    (rawPF, lpt) = try pass.forward(prompt: prompt.x, trajectories: trajs, adapter: adapter)
                }
                // rewards: stored for replayed rows, computed in one call for the others
                var logR = [[Double]](repeating: [], count: trajs.count)
                var fresh: [Int] = []
                var offset = 0
                for i in chunk {
                    let m = micros[i]
                    if let items = m.replayed {
                        for (j, it) in items.enumerated() {
                            guard trajs[offset + j].n + 1 == it.logRewards.count else {
                                throw GFNError(.state, "a replayed trajectory changed length (\(trajs[offset + j].n) actions, \(it.logRewards.count - 1) stored)")
                            }
                            logR[offset + j] = it.logRewards
                        }
                    } else {
                        fresh += Array(offset..<(offset + m.plans.count))
                    }
                    offset += m.plans.count
                }
                if !fresh.isEmpty {
                    let sub = fresh.map { trajs[$0] }
                    let r = try reward.logRewards(prompt: prompt, trajectories: sub, rewardTemperature: tR)
                    try checkRewards(r, sub)
                    for (j, idx) in fresh.enumerated() { logR[idx] = r[j] }
                    if config.replayProbability > 0 {
                        for idx in fresh {
                            let t = trajs[idx]
                            staged.append((key, ReplayItem(logR: logR[idx][t.n], text: decodeText(t.actions), actions: t.actions,
                                                           logRewards: logR[idx], truncated: t.truncated)))
                        }
                    }
                }
                // the target is R restricted to |Z| ≥ min_len (LengthRestriction): rows shorter than that have no
                // terms, the others the objective's view of them
                var dPF = rawPF.map { $0.map { _ in 0.0 } }, dPT = lpt.map { $0.map { _ in 0.0 } }
                let z = Double(logZ.value.pointer[p])
                offset = 0
                var results: [(admitted: [Int], full: [TrajectoryTerms], res: ObjectiveResult)] = []
                for i in chunk {
                    let range = offset..<(offset + micros[i].plans.count)
                    offset = range.upperBound
                    let admitted = range.filter { restriction.admits(trajs[$0].n) }
                    let full = admitted.map { b in
                        TrajectoryTerms(n: trajs[b].n, truncated: trajs[b].truncated, logPF: rawPF[b], logPT: lpt[b],
                                        logR: logR[b].map { $0 / tR })
                    }
                    let terms = full.map { restriction.restrict($0, logZ: z) }
                    results.append((admitted, full, try config.objective.evaluate(terms, layout: engine.settings.layout,
                                                                                  logZ: Array(repeating: z, count: terms.count))))
                }
                // distributed: this rank's share of losses pooled over the whole micro-batch (1 otherwise)
                let scales = try termScales(results.map { $0.res.terms })
                for ((admitted, full, res), w) in zip(results, scales) {
                    for (j, b) in admitted.enumerated() {
                        let (pf, pt) = restriction.pullBack(dLogPF: res.dLogPF[j], dLogPT: res.dLogPT[j], of: full[j])
                        dPF[b] = w == 1 ? pf : pf.map { $0 * w }
                        dPT[b] = w == 1 ? pt : pt.map { $0 * w }
                    }
                    logZ.grad.pointer[p] += Float(res.dLogZ.reduce(0, +) * w)
                    if restriction.learnedRoot { logZ.grad.pointer[p] += Float(res.dLogR.reduce(0) { $0 + $1[0] } * w) }
                    lossSum += res.loss * w
                }
                try pass.backward(dLogPF: dPF, dLogPT: dPT, gradients: gradients)
                for (b, t) in trajs.enumerated() {
                    // the sampler's log q (q̃ before min_len)
                    let terminalPT = (t.truncated && engine.settings.layout == .forcedStop) ? 0 : lpt[b][t.n]
                    let lq = LengthRestriction.samplerLogPF(rawPF[b], lpt[b], minLength: engine.settings.minLength)
                        .reduce(0, +) + terminalPT
                    logRs.append(logR[b][t.n])
                    logQs.append(lq)
                    diffs.append(logR[b][t.n] / tR - lq)
                    lengths.append(Double(t.n))
                    seen.insert(t.actions)
                }
            }
            // distributed: the mean over ranks replaces the local gradients (before clipping and AdamW)
            merged = try exchangeGradients(lossSum: lossSum, logRs: logRs, logQs: logQs, diffs: diffs, lengths: lengths,
                                           staged: staged)
            if let m = merged { lossSum = m.lossSum }
        } catch {
            rng = rngBefore
            optimizer.zeroGrad()
            throw error
        }
        let k = Double(config.gradAccumulation)
        let result = optimizer.step(gradientScale: config.averageAccumulation ? Float(1 / k) : 1, loss: lossSum)
        stats.applied = result.applied
        stats.message = result.message ?? ""
        stats.gradNorm = result.gradNorm
        if result.applied {
            for (key, item) in staged + (merged?.received ?? []) { _ = try? buffer.add(key, item) }
            step += 1
        } else {
            rng = rngBefore
        }
        optimizer.zeroGrad()
        stats.loss = lossSum / k
        let md = stats.summarize(logRs: logRs, logQs: logQs, lengths: lengths, distinct: seen.count, diffs: diffs)
        stats.logZ = usesLogZ ? Double(logZ.value.array.reduce(0, +)) / Double(prompts.count) : md
        if let m = merged { apply(m, to: &stats) }
        if let progress, !progress(stats) {
            throw GFNError(.cancelled, "training stopped by the progress callback after step \(step)")
        }
        return stats
    }

    /// Samples from the trained policy (amortized inference): n trajectories after prompt X at temperature τ
    /// (1 = the trained sampler), with the rollout's limits, masks and tool, each with its log q (`PolicySample`).
    public func sample(prompt: [Int32], count: Int, temperature: Float = 1, seed: UInt64 = 0) throws(GFNError) -> [PolicySample] {
        try engine.samplePolicy(prompt: prompt, count: count, temperature: temperature, adapter: adapter, seed: seed)
    }

    /// Seeds the replay buffer with demonstrations (action sequences for prompt p): their rewards are computed
    /// by teacher forcing (with the tool) and they are added like sampled trajectories. A demonstration longer than
    /// max_len is refused (never cut: its reward would be another sequence's), and so is one shorter than min_len
    /// (outside the target); either refusal adds nothing.
    public func seedBuffer(prompt p: Int, demonstrations: [[Int32]]) throws(GFNError) {
        guard p >= 0 && p < prompts.count else { throw .outOfRange("prompt index \(p) outside 0..<\(prompts.count)") }
        guard !demonstrations.isEmpty else { return }
        let prompt = prompts[p]
        let (lo, hi) = (engine.settings.minLength, engine.settings.maxLength)
        for (i, d) in demonstrations.enumerated() {
            guard d.count <= hi else {
                throw .outOfRange("demonstration \(i) has \(d.count) actions; max_length is \(hi) (seeds are not cut)")
            }
            guard d.count >= lo else {
                throw .invalidArgument("demonstration \(i) has \(d.count) actions, fewer than min_length \(lo): outside the target")
            }
        }
        let valid = demonstrations
        let trajs = try engine.generate(prompt: prompt.x, count: valid.count, temperature: 1, adapter: adapter,
                                        seed: 0, actions: valid)
        let logR = try reward.logRewards(prompt: prompt, trajectories: trajs, rewardTemperature: rewardTemperature)
        try checkRewards(logR, trajs)
        for (t, r) in zip(trajs, logR) {
            try buffer.add(prompt.key, ReplayItem(logR: r[t.n], text: decodeText(t.actions), actions: t.actions,
                                                  logRewards: r, truncated: t.truncated))
        }
    }

    // MARK: checkpoints

    static let bufferFile = "replay_buffer.json"

    /// Writes a checkpoint directory atomically: adapter (PEFT layout), log Z, AdamW moments, step and schedules,
    /// RNG, and the replay buffer.
    public func save(checkpoint directory: String) throws(GFNError) {
        var extra = JSONObject()
        extra["trainer"] = "gflownet"
        extra["step"] = .int(Int64(step))
        extra["log_z"] = .array(logZ.value.array.map { .double(Double($0)) })
        extra["prompts"] = .int(Int64(prompts.count))
        if config.objective == .ppo { extra["kl_coef"] = .double(klController.value) }
        try TrainingCheckpoint.save(directory: directory, model: model.weights, adapter: adapter, optimizer: optimizer,
                                    rngs: ["trainer": rng], extra: extra,
                                    files: [(GFlowNetTrainer.bufferFile, buffer.serialized())])
    }

    /// Restores a checkpoint written by `save(checkpoint:)` into this trainer (same model, adapter shape,
    /// prompts and objective): training continues exactly as if it had not stopped.
    public func load(checkpoint directory: String) throws(GFNError) {
        let r = try TrainingCheckpoint.load(directory: directory, model: model.weights, adapter: adapter,
                                            optimizer: optimizer, extraFiles: [GFlowNetTrainer.bufferFile],
                                            expect: ["trainer": "gflownet", "prompts": .int(Int64(prompts.count))],
                                            checkExtra: { [prompts] (extra: JSONObject) throws(GFNError) in
                                                // validated before anything changes (the checkpoint's own bound on step)
                                                guard extra["step"]?.int != nil else {
                                                    throw .format("\(directory): the checkpoint has no step")
                                                }
                                                if let z = extra["log_z"], !(z.array.map { a in
                                                    a.count == prompts.count && a.allSatisfy { $0.double?.isFinite == true }
                                                } ?? false) {
                                                    throw .format("\(directory): log_z must hold \(prompts.count) finite numbers")
                                                }
                                            },
                                            checkFile: { name, b throws(GFNError) in
                                                _ = try ReplayBuffer.deserialize(b, source: FileIO.join(directory, name))
                                            })
        // checked by TrainingCheckpoint.load before it changed anything
        let s = Int(r.extra["step"]?.int ?? 0)
        if let zs = r.extra["log_z"]?.array?.compactMap({ $0.double }), zs.count == prompts.count {
            for (i, z) in zs.enumerated() { logZ.value.pointer[i] = Float(z) }
        }
        if let g = r.rngs["trainer"] { rng = g }
        if config.objective == .ppo, let beta = r.extra["kl_coef"]?.double, beta.isFinite, beta >= 0 { klController.value = beta }
        if let bytes = r.files[GFlowNetTrainer.bufferFile],
           let b = try? ReplayBuffer.deserialize(bytes, source: FileIO.join(directory, GFlowNetTrainer.bufferFile)) {
            buffer.replaceContents(with: b)   // checked by checkFile: cannot fail here
        }
        step = s
        optimizer.zeroGrad()
    }
}

/// A sample of the trained policy with its log-probabilities under the sampler at τ = 1: untempered, with the
/// policy's vocabulary adjustment, renormalised without ⊤ before min_len (the sampler never stops there), and the
/// layout's convention at max_len — so that at the optimum log R(Z)/T_R − logQ is the same for every Z (log Z).
public struct PolicySample: Sendable, Equatable {
    public var trajectory: Trajectory
    /// log q(a_{t+1} | s_t) of each action.
    public var actionLogProbs: [Double]
    /// log q(⊤ | s_n): the stop; 0 for a row truncated at max_len under a forced stop (layout A), the policy's
    /// real log q(⊤ | s_max) under the next-sentence layout.
    public var terminalLogProb: Double

    /// One value per state token (`trajectory.state`): an action's log q, 0 for tool output (not an action).
    public var tokenLogProbs: [Double] {
        var out = [Double](repeating: 0, count: trajectory.state.count)
        for (t, v) in actionLogProbs.enumerated() { out[trajectory.stateLength[t]] = v }
        return out
    }

    /// log q(Z): the actions' log-probabilities and the stop's.
    public var logQ: Double { actionLogProbs.reduce(0, +) + terminalLogProb }
}

extension RolloutEngine {
    /// `count` trajectories after `prompt` from the policy (the adapter, or the base model when nil) at behaviour
    /// temperature τ, with this engine's limits, masks and tool, each with the sampler's log q (`PolicySample`).
    /// Same seed, same trajectories as `generate(prompt:count:temperature:adapter:seed:)`.
    public func samplePolicy(prompt: [Int32], count: Int, temperature: Float, adapter: LoRAAdapter?,
                             seed: UInt64) throws(GFNError) -> [PolicySample] {
        guard count > 0 else { throw .invalidArgument("the number of trajectories must be positive") }
        let plans = (0..<count).map { i in RowPlan(temperature: temperature, seed: mixSeed(seed, 0xA11, UInt64(i))) }
        let m = settings.minLength
        return try generateWithLogProbs(prompt: prompt, rows: plans, adapter: adapter).map { t, lp in
            PolicySample(trajectory: t, actionLogProbs: LengthRestriction.samplerLogPF(lp.logPF, lp.logPT, minLength: m),
                         terminalLogProb: lp.logPT[t.n])
        }
    }
}

/// The behaviour policy of one micro-batch: on-policy, tempered, or replayed from the buffer.
public enum Behaviour: Sendable, Equatable {
    case onPolicy
    case tempered(Double)
    /// Replay; the temperature is the tempered fallback used when the buffer has nothing for the prompt.
    case replay(fallback: Double)

    /// The tempered range [low, high] at `step` (annealed when the config has a horizon).
    public static func temperatureRange(config c: GFlowNetConfig, step: Int) -> (low: Double, high: Double) {
        guard c.temperatureHorizon > 0 else { return (c.temperatureLow, c.temperatureHigh) }
        let f = min(1, Double(max(0, step)) / Double(c.temperatureHorizon))
        return (c.temperatureLow + (c.temperatureLowEnd - c.temperatureLow) * f,
                c.temperatureHigh + (c.temperatureHighEnd - c.temperatureHigh) * f)
    }

    /// Draws a behaviour: on-policy with probability p_on, replay with p_replay, else tempered with
    /// τ ~ U[low, high] (the range at `step`). A τ is drawn in every case, so the RNG stream does not depend on
    /// the buffer's content.
    public static func choose(config c: GFlowNetConfig, step: Int = 0, rng: inout RNG) -> Behaviour {
        let u = rng.uniform()
        let (lo, hi) = temperatureRange(config: c, step: step)
        let tau = lo + (hi - lo) * rng.uniform()
        if u < c.onPolicyProbability { return .onPolicy }
        if u < c.onPolicyProbability + c.replayProbability { return .replay(fallback: tau) }
        return .tempered(tau)
    }
}

extension ReplayBuffer {
    func replaceContents(with other: ReplayBuffer) {
        capacity = other.capacity
        tolerance = other.tolerance
        prioritized = other.prioritized
        returnAllWhenSmall = other.returnAllWhenSmall
        for k in keys { setItems(k, []) }
        for k in other.keys { setItems(k, other.items(k)) }
    }
}
