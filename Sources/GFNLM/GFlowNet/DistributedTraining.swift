/// Data-parallel GFlowNet training (see `GradientExchange`).
///
/// Every rank plans the step with the same trainer RNG (same prompts, behaviours and micro-batch seeds, as the
/// ranks are replicas) and rolls out its own slice of each micro-batch: with per-rank batch b, rank r samples the
/// rows r·b ..< (r+1)·b of a micro-batch of K·b rows, each row seeded by its global index. So K ranks × batch b draw
/// exactly the trajectories of one process with batch K·b, and the averaged gradient is that process's gradient up
/// to float rounding: losses pooled over a micro-batch (SubTB's sub-trajectory weight, DB's active rows) are
/// re-weighted by `GradientExchange.scales(terms:)`; TB's rows are b on every rank. REINFORCE's batch-mean baseline
/// stays per rank (a mean over b rows, not K·b). Replay buffers are per rank: a replayed micro-batch draws from the
/// rank's own buffer with an RNG derived from the micro-batch seed and the rank, so the shared RNG stays in step.
extension GFlowNetTrainer {
    /// Makes this trainer one of `exchange.worldSize` data-parallel replicas (nil: a single process again). Set it
    /// before the first step; the first step then compares every rank's configuration (`distributedFields`).
    public func setDistributed(_ exchange: GradientExchange?) {
        self.exchange = exchange
    }

    /// The rank and world size of a distributed trainer (nil in a single process).
    public var distributed: GradientExchange? { exchange }

    /// At the first distributed step (and after a checkpoint load): every rank's configuration is compared.
    func verifyDistributed() throws(GFNError) {
        guard let ex = exchange, !ex.verified else { return }
        try ex.verify(distributedFields())
    }

    /// First global row index of this rank's slice of a micro-batch.
    var rowOffset: Int { (exchange?.rank ?? 0) * config.batchSize }

    /// Replayed items for a micro-batch: from the shared RNG in a single process (as before), from an RNG derived
    /// from the micro-batch seed and the rank when distributed (the buffers differ between ranks, and what a sample
    /// draws from the RNG depends on the buffer).
    func sampleReplay(_ key: String, microSeed: UInt64) -> [ReplayItem]? {
        guard let ex = exchange else { return buffer.sample(key, count: config.batchSize, rng: &rng) }
        var r = RNG(seed: mixSeed(microSeed, 0xB0F, UInt64(ex.rank)))
        return buffer.sample(key, count: config.batchSize, rng: &r)
    }

    /// LoRA dropout seed of a pass: the shared draw mixed with the rank (ranks' rows must not share masks).
    func rankSeed(_ s: UInt64) -> UInt64 {
        guard let ex = exchange, ex.worldSize > 1 else { return s }
        return mixSeed(s, 0xD0, UInt64(ex.rank))
    }

    /// Per micro-batch gradient scales for this rank's share of a pooled loss (1 in a single process and for
    /// objectives normalised by the row count, which is b on every rank).
    func termScales(_ terms: [Double]) throws(GFNError) -> [Double] {
        guard let ex = exchange, ex.worldSize > 1 else { return terms.map { _ in 1 } }
        switch config.objective {
        case .subTB, .db: return try ex.scales(terms: terms)
        case .tb, .reinforce, .ppo: return terms.map { _ in 1 }
        }
    }

    /// What every rank must share, compared at the first distributed step. Not compared: thread counts and
    /// pack_weights (they change results only at rounding level, and the averaged step is the same on every rank),
    /// the replay buffers (per rank by design). A Swift caller that loads a checkpoint calls
    /// `distributed?.resetVerification()` to compare again (the C API does).
    public func distributedFields() -> [GradientExchange.Field] {
        typealias F = GradientExchange.Field
        let c = config
        var f: [F] = [F("trainer", "gflownet")]
        f += GradientExchange.modelFields(model.weights)
        f += GradientExchange.adapterFields(adapter)
        f += GradientExchange.optimizerFields(optimizer)
        f += [F("objective", "\(c.objective)"), F("batch_size", "\(c.batchSize)"),
              F("grad_accumulation", "\(c.gradAccumulation) average \(c.averageAccumulation)"),
              F("log Z learning rate and init", "\(c.logZLearningRate) \(c.logZInit)"),
              F("reward temperature", "\(c.rewardTemperature)"),
              F("behaviour", "on-policy \(c.onPolicyProbability) replay \(c.replayProbability) tempered \(c.temperatureLow)…\(c.temperatureHigh)"),
              F("replay buffer settings", "capacity \(c.bufferCapacity) tolerance \(c.bufferTolerance) prioritized \(c.bufferPrioritized)"),
              F("lora_dropout", "\(c.loraDropout)"),
              F("exchange_replay", "\(exchange?.exchangeReplay ?? false)"),
              F("rows per pass", "\(c.rowsPerPass) traced from \(c.tracedSamplingRows)"),
              F("rollout settings", "\(engine.settings)"),
              F("prompts", "\(prompts.count) prompts, digest \(String(Digest.hash(prompts.map { "\($0.x)|\(String(describing: $0.y))|\(String(describing: $0.rewardContext))|\($0.weight)" }.joined(separator: ";")), radix: 16))"),
              F("reward", "\(type(of: reward)) terminal-only \(reward.terminalOnly)"),
              F("log Z", "\(logZ.value.array)"),
              F("trainer step", "\(step)"),
              F("trainer RNG (seed and position)", "\(rng.state)")]
        return f
    }

    /// Statistics of a step, merged over ranks, and the other ranks' best trajectories (`exchangeReplay`).
    struct MergedStats {
        var lossSum = 0.0, logRSum = 0.0, logQSum = 0.0, lengthSum = 0.0, diffSum = 0.0, diffSquares = 0.0, count = 0.0
        var received: [(String, ReplayItem)] = []
    }

    /// Floats per rank of the replay exchange: present, prompt, n, truncated, log R (4), actions, log R per state (4 each).
    var replaySlot: Int { 8 + engine.settings.maxLength + 4 * (engine.settings.maxLength + 1) }

    /// This rank's best fresh trajectory of the step in its slot (rank-indexed: the others' slots stay 0).
    func replayPayload(_ staged: [(String, ReplayItem)], rank: Int, worldSize: Int) -> [Float] {
        let w = replaySlot
        var out = [Float](repeating: 0, count: w * worldSize)
        guard let best = staged.max(by: { $0.1 < $1.1 }), let p = prompts.firstIndex(where: { $0.key == best.0 }),
              best.1.actions.count <= engine.settings.maxLength, best.1.logRewards.count == best.1.actions.count + 1
        else { return out }
        let o = rank * w
        out[o] = 1
        out[o + 1] = Float(p)
        out[o + 2] = Float(best.1.actions.count)
        out[o + 3] = best.1.truncated ? 1 : 0
        for (j, v) in Digest.exactBits(best.1.logR).enumerated() { out[o + 4 + j] = v }
        for (j, a) in best.1.actions.enumerated() { out[o + 8 + j] = Float(a) }
        let r0 = o + 8 + engine.settings.maxLength
        for (t, v) in best.1.logRewards.enumerated() {
            for (j, c) in Digest.exactBits(v).enumerated() { out[r0 + 4 * t + j] = c }
        }
        return out
    }

    /// The other ranks' items from the averaged payload (ids < 2^23 and 16-bit chunks come back exactly).
    func receivedItems(_ mean: [Float], rank: Int, worldSize k: Int) -> [(String, ReplayItem)] {
        let w = replaySlot
        var out: [(String, ReplayItem)] = []
        for r in 0..<k where r != rank {
            let o = r * w
            guard Digest.slotValue(mean[o], worldSize: k) == 1 else { continue }
            let p = Digest.slotValue(mean[o + 1], worldSize: k), n = Digest.slotValue(mean[o + 2], worldSize: k)
            guard p >= 0 && p < prompts.count, n >= 0 && n <= engine.settings.maxLength else { continue }
            let actions = (0..<n).map { Int32(Digest.slotValue(mean[o + 8 + $0], worldSize: k)) }
            let r0 = o + 8 + engine.settings.maxLength
            let logRewards = (0...n).map { Digest.fromExactBits(mean[(r0 + 4 * $0)..<(r0 + 4 * $0 + 4)], worldSize: k) }
            let logR = Digest.fromExactBits(mean[(o + 4)..<(o + 8)], worldSize: k)
            out.append((prompts[p].key, ReplayItem(logR: logR, text: decodeText(actions), actions: actions,
                                                   logRewards: logRewards, truncated: Digest.slotValue(mean[o + 3], worldSize: k) == 1)))
        }
        return out
    }

    /// The exchange of a step: the averaged gradients (adapter and log Z) replace the local ones, and the step's
    /// statistics become the means over all ranks' trajectories. nil in a single process.
    func exchangeGradients(lossSum: Double, logRs: [Double], logQs: [Double], diffs: [Double],
                           lengths: [Double], staged: [(String, ReplayItem)]) throws(GFNError) -> MergedStats? {
        guard let ex = exchange else { return nil }
        var s = [lossSum, logRs.reduce(0, +), logQs.reduce(0, +), lengths.reduce(0, +), diffs.reduce(0, +),
                 diffs.reduce(0) { $0 + $1 * $1 }, Double(logRs.count)]
        let digest = GradientExchange.replicaDigest(optimizer.parameters + [logZ],
                                                    extra: [UInt64(step), rng.state.0, rng.state.1, rng.state.2, rng.state.3])
        let replay = ex.exchangeReplay && ex.worldSize > 1 && config.replayProbability > 0
        var payload = replay ? replayPayload(staged, rank: ex.rank, worldSize: ex.worldSize) : []
        try ex.averageGradients(optimizer.parameters, stats: &s, replica: digest, payload: &payload)
        let K = Double(ex.worldSize)
        return MergedStats(lossSum: s[0], logRSum: s[1] * K, logQSum: s[2] * K, lengthSum: s[3] * K,
                           diffSum: s[4] * K, diffSquares: s[5] * K, count: (s[6] * K).rounded(),
                           received: replay ? receivedItems(payload, rank: ex.rank, worldSize: ex.worldSize) : [])
    }

    /// Writes merged statistics into a step's stats (max log R and the fraction of unique trajectories stay this
    /// rank's own).
    func apply(_ m: MergedStats, to stats: inout GFlowNetStepStats) {
        let k = Double(config.gradAccumulation)
        let n = max(1, m.count)
        stats.loss = m.lossSum / k
        stats.meanLogR = m.logRSum / n
        stats.meanLogQ = m.logQSum / n
        stats.meanLength = m.lengthSum / n
        let md = m.diffSum / n
        stats.varLogRMinusLogQ = max(0, m.diffSquares / n - md * md)
        if config.objective != .tb { stats.logZ = md }
        stats.trajectories = Int(m.count)
    }
}
