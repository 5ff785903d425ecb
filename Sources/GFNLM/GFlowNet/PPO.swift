/// PPO, the reward-maximising baseline the paper compares with (a KL penalty to the base model, as in trl):
///
/// - Each step samples `gradAccumulation` micro-batches of `batchSize` trajectories from the current policy
///   (on-policy only) and keeps their log q at sampling time (the behaviour policy, "old") and the frozen base
///   model's log p of the same tokens ("ref").
/// - Return of trajectory b: r_b = log R(s_n⊤)/T_R − β·KL_b with KL_b = Σ_tokens (log q_old − log p_ref), the
///   sequence-level estimate of KL(q‖p_base) trl uses; the advantage is leave-one-out within the micro-batch
///   (one prompt): A_b = r_b − mean_{c≠b} r_c (no value head: the prompts are few and the returns per sequence).
/// - Then `epochs` optimiser updates over that one sampled batch, each a full pass over its micro-batches with the
///   clipped surrogate per token, L = mean_tokens max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)), ρ = q_new/q_old (trl's
///   token-mean over the micro-batch; the tokens are the actions and the stop, the sampler's q̃ before min_len).
/// - β follows trl's AdaptiveKLController after every step (`AdaptiveKLController`).
public struct PPOConfig: Sendable, Equatable {
    /// ε of the clipped surrogate (trl's cliprange).
    public var clipRange: Double = 0.2
    /// Optimiser updates per sampled batch (trl's ppo_epochs); the learning-rate schedule counts every update.
    public var epochs: Int = 4
    /// Initial β of the KL penalty to the base model (trl's init_kl_coef).
    public var klCoefficient: Double = 0.2
    /// Target KL of the adaptive controller (trl's target); nil: β stays fixed.
    public var klTarget: Double? = 6
    /// Horizon of the adaptive controller (trl's horizon).
    public var klHorizon: Double = 10000

    public init() {}

    func validate() throws(GFNError) {
        guard clipRange > 0 && clipRange.isFinite else { throw .invalidArgument("PPO's clip range must be positive (got \(clipRange))") }
        guard epochs >= 1 else { throw .invalidArgument("PPO needs at least one epoch per batch (got \(epochs))") }
        guard klCoefficient >= 0 && klCoefficient.isFinite else {
            throw .invalidArgument("the KL coefficient must be ≥ 0 (got \(klCoefficient))")
        }
        if let t = klTarget { guard t > 0 && t.isFinite else { throw .invalidArgument("the KL target must be positive (got \(t))") } }
        guard klHorizon > 0 && klHorizon.isFinite else { throw .invalidArgument("the KL horizon must be positive (got \(klHorizon))") }
    }
}

/// trl's AdaptiveKLController (Ziegler et al. 2019): β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon) after a step
/// over n trajectories whose mean KL to the base model was KL; without a target β is fixed.
public struct AdaptiveKLController: Sendable, Equatable {
    public var value: Double
    public let target: Double?
    public let horizon: Double

    public init(value: Double, target: Double?, horizon: Double) {
        self.value = value; self.target = target; self.horizon = horizon
    }

    public mutating func update(currentKL: Double, steps n: Int) {
        guard let target, currentKL.isFinite else { return }
        let error = min(max(currentKL / target - 1, -0.2), 0.2)
        value *= 1 + error * Double(n) / horizon
    }
}

/// The clipped surrogate of one micro-batch. Token log-probabilities per trajectory: `new` (the variables),
/// `old` (the behaviour's at sampling time), one advantage per trajectory.
public struct PPOLoss: Sendable {
    public var clipRange: Double

    public init(clipRange: Double) { self.clipRange = clipRange }

    public struct Result: Sendable {
        public var loss: Double
        /// dL/d new[b][k].
        public var gradient: [[Double]]
        /// Share of tokens whose ratio was clipped (zero gradient).
        public var clipFraction: Double
        public var tokens: Int
    }

    /// Leave-one-out advantages: A_b = r_b − mean_{c≠b} r_c (needs two trajectories or more).
    public static func leaveOneOut(_ returns: [Double]) throws(GFNError) -> [Double] {
        let n = returns.count
        guard n >= 2 else { throw .invalidArgument("PPO's leave-one-out baseline needs batch_size ≥ 2 (got \(n))") }
        let total = returns.reduce(0, +)
        return returns.map { r in r - (total - r) / Double(n - 1) }
    }

    public func evaluate(new: [[Double]], old: [[Double]], advantages: [Double]) throws(GFNError) -> Result {
        guard new.count == old.count, new.count == advantages.count,
              zip(new, old).allSatisfy({ $0.count == $1.count }) else {
            throw .internalError("PPO: inconsistent token counts")
        }
        let tokens = new.reduce(0) { $0 + $1.count }
        var r = Result(loss: 0, gradient: new.map { $0.map { _ in 0 } }, clipFraction: 0, tokens: tokens)
        guard tokens > 0 else { return r }
        let N = Double(tokens)
        var clipped = 0
        for b in new.indices {
            let a = advantages[b]
            for k in new[b].indices {
                let rho = exp(new[b][k] - old[b][k])
                let c = min(max(rho, 1 - clipRange), 1 + clipRange)
                let unclipped = -a * rho, bounded = -a * c
                // the larger (pessimistic) term; the gradient flows only through the unclipped one
                if unclipped >= bounded {
                    r.loss += unclipped / N
                    r.gradient[b][k] = -a * rho / N
                } else {
                    r.loss += bounded / N
                    clipped += 1
                }
            }
        }
        r.clipFraction = Double(clipped) / N
        guard r.loss.isFinite else { throw .numerical("the PPO loss is not finite (\(r.loss))") }
        return r
    }
}

extension TrajectoryTerms {
    /// The tokens PPO and the KL penalty see: the actions (already the sampler's q̃ before min_len) and the stop,
    /// unless the stop is forced (a row truncated at max_len in layout A).
    func ppoTokens(layout: TerminalLayout) -> [Double] {
        (truncated && layout == .forcedStop) ? logPF : logPF + [logPT[n]]
    }

    /// Maps dL/d ppoTokens back onto (dLogPF, dLogPT).
    func ppoPullBack(_ g: [Double], layout: TerminalLayout) -> (dLogPF: [Double], dLogPT: [Double]) {
        var pt = [Double](repeating: 0, count: n + 1)
        if !(truncated && layout == .forcedStop) { pt[n] = g[n] }
        return (Array(g.prefix(n)), pt)
    }
}

extension GFlowNetTrainer {
    /// One PPO step (`PPOConfig`): sampling, base-model scoring and rewards first — an error there changes
    /// nothing — then `epochs` optimiser updates over the batch, then the KL controller. One process only.
    func ppoStep() throws(GFNError) -> GFlowNetStepStats {
        guard exchange == nil else { throw .unsupported("PPO runs in one process (no distributed trainer)") }
        let rngBefore = rng
        let tR = rewardTemperature
        let layout = engine.settings.layout
        let m = engine.settings.minLength
        let restriction = LengthRestriction(objective: .ppo, minLength: m)
        var stats = GFlowNetStepStats()
        stats.step = step
        stats.rewardTemperature = tR
        stats.learningRate = optimizer.learningRate(group: 0)
        struct Micro {
            let prompt: Int
            let trajectories: [Trajectory]
            let old: [[Double]]
            let advantages: [Double]
        }
        var micros: [Micro] = []
        var logRs: [Double] = [], logQs: [Double] = [], diffs: [Double] = [], lengths: [Double] = [], kls: [Double] = []
        var seen = Set<[Int32]>()
        let beta = klController.value
        do throws(GFNError) {
            for _ in 0..<config.gradAccumulation {
                let p = choosePrompt()
                let microSeed = rng.next()
                let prompt = prompts[p]
                let plans = (0..<config.batchSize).map { i in
                    RolloutEngine.RowPlan(temperature: 1, seed: mixSeed(microSeed, 0xA11, UInt64(i)))
                }
                stats.onPolicyBatches += 1
                let sampled = try engine.generateWithLogProbs(prompt: prompt.x, rows: plans, adapter: adapter)
                let trajs = sampled.map { $0.0 }
                pass.dropoutSeed = nil
                let (refPF, refPT) = try pass.forward(prompt: prompt.x, trajectories: trajs, adapter: nil)
                let logR = try reward.logRewards(prompt: prompt, trajectories: trajs, rewardTemperature: tR)
                try checkRewards(logR, trajs)
                var old: [[Double]] = [], returns: [Double] = []
                for (b, t) in trajs.enumerated() {
                    let lp = sampled[b].1
                    let q = restriction.restrict(TrajectoryTerms(n: t.n, truncated: t.truncated, logPF: lp.logPF,
                                                                 logPT: lp.logPT, logR: logR[b]))
                        .ppoTokens(layout: layout)
                    let ref = restriction.restrict(TrajectoryTerms(n: t.n, truncated: t.truncated, logPF: refPF[b],
                                                                   logPT: refPT[b], logR: logR[b]))
                        .ppoTokens(layout: layout)
                    let kl = zip(q, ref).reduce(0) { $0 + $1.0 - $1.1 }
                    old.append(q)
                    returns.append(logR[b][t.n] / tR - beta * kl)
                    let lq = q.reduce(0, +)
                    kls.append(kl)
                    logRs.append(logR[b][t.n]); logQs.append(lq); diffs.append(logR[b][t.n] / tR - lq)
                    lengths.append(Double(t.n)); seen.insert(t.actions)
                }
                micros.append(Micro(prompt: p, trajectories: trajs, old: old,
                                    advantages: try PPOLoss.leaveOneOut(returns)))
            }
        } catch {
            rng = rngBefore
            throw error
        }
        // the updates: the behaviour's log q stays fixed, the policy's is recomputed after every update
        let surrogate = PPOLoss(clipRange: config.ppo.clipRange)
        let k = Double(config.gradAccumulation)
        var lossSum = 0.0, clipSum = 0.0, appliedAny = false
        for _ in 0..<config.ppo.epochs {
            optimizer.zeroGrad()
            var epochLoss = 0.0
            for mb in micros {
                pass.dropoutSeed = config.loraDropout ? rng.next() : nil
                let (pf, pt) = try pass.forward(prompt: prompts[mb.prompt].x, trajectories: mb.trajectories, adapter: adapter)
                let full = mb.trajectories.enumerated().map { b, t in
                    TrajectoryTerms(n: t.n, truncated: t.truncated, logPF: pf[b], logPT: pt[b],
                                    logR: [Double](repeating: 0, count: t.n + 1))
                }
                let restricted = full.map { restriction.restrict($0) }
                let res = try surrogate.evaluate(new: restricted.map { $0.ppoTokens(layout: layout) }, old: mb.old,
                                                 advantages: mb.advantages)
                var dPF: [[Double]] = [], dPT: [[Double]] = []
                for (b, t) in restricted.enumerated() {
                    let (gf, gt) = t.ppoPullBack(res.gradient[b], layout: layout)
                    let (f, p) = restriction.pullBack(dLogPF: gf, dLogPT: gt, of: full[b])
                    dPF.append(f); dPT.append(p)
                }
                try pass.backward(dLogPF: dPF, dLogPT: dPT, gradients: gradients)
                epochLoss += res.loss
                clipSum += res.clipFraction
            }
            let result = optimizer.step(gradientScale: config.averageAccumulation ? Float(1 / k) : 1, loss: epochLoss)
            lossSum += epochLoss
            stats.gradNorm = result.gradNorm
            if result.applied { appliedAny = true } else {
                stats.message = result.message ?? ""
                break
            }
        }
        optimizer.zeroGrad()
        stats.applied = appliedAny
        if appliedAny { step += 1 } else { rng = rngBefore }
        let n = Double(max(1, logRs.count))
        let meanKL = kls.reduce(0, +) / n
        if appliedAny { klController.update(currentKL: meanKL, steps: logRs.count) }
        let epochs = Double(config.ppo.epochs)
        stats.loss = lossSum / (k * epochs)
        stats.logZ = stats.summarize(logRs: logRs, logQs: logQs, lengths: lengths, distinct: seen.count, diffs: diffs)
        stats.kl = meanKL
        stats.klCoefficient = klController.value
        stats.clipFraction = clipSum / (k * epochs)
        if let progress, !progress(stats) {
            throw GFNError(.cancelled, "training stopped by the progress callback after step \(step)")
        }
        return stats
    }
}
