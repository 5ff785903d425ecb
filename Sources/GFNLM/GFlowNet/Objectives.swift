/// How a trajectory that reaches max_len without the termination action is treated (the reference's two terminal
/// layouts; docs/method.md).
public enum TerminalLayout: Int32, Sendable, Equatable, Codable {
    /// Layout A (the default; rng, infilling, subjectivity, arithmetic): reaching max_len is certain termination,
    /// log q(⊤ | s_max) := 0, matching a sampler that simply stops.
    case forcedStop = 0
    /// Layout B (next_sentence): the policy's real log q(⊤ | s_max) is used.
    case nextSentence = 1
}

/// The per-position quantities of one trajectory that the objectives need. States s_0 … s_n, where n is the number
/// of non-termination actions; all values are in natural-log units and already tempered (log R / T_R).
public struct TrajectoryTerms: Sendable, Equatable {
    /// Number of non-termination actions.
    public var n: Int
    /// True when the trajectory reached max_len without sampling ⊤.
    public var truncated: Bool
    /// log q(a_{t+1} | s_t), t = 0 ..< n.
    public var logPF: [Double]
    /// log q(⊤ | s_t), t = 0 ... n (for a truncated trajectory entry n is the policy's real value; layout A
    /// replaces it by 0).
    public var logPT: [Double]
    /// log R(s_t ⊤) / T_R, t = 0 ... n.
    public var logR: [Double]

    public init(n: Int, truncated: Bool, logPF: [Double], logPT: [Double], logR: [Double]) {
        self.n = n; self.truncated = truncated; self.logPF = logPF; self.logPT = logPT; self.logR = logR
    }

    /// Builds the terms from the reference's layout-A arrays (width max_len + 1): `tokens` are
    /// the generated actions (⊤ = `termination`), and entries after the trajectory's end are ignored.
    public init(layoutA lpf: [Double], lpt: [Double], lr: [Double], tokens: [Int32], termination: Int32, maxLen: Int) {
        let n = tokens.firstIndex(of: termination) ?? min(tokens.count, maxLen)
        self.n = min(n, maxLen)
        self.truncated = self.n == maxLen && !(tokens.prefix(maxLen).contains(termination))
        self.logPF = Array(lpf.prefix(self.n))
        self.logPT = Array(lpt.prefix(self.n + 1))
        self.logR = Array(lr.prefix(self.n + 1))
    }

    func validate() throws(GFNError) {
        guard n >= 0, logPF.count == n, logPT.count == n + 1, logR.count == n + 1 else {
            throw .internalError("trajectory terms of inconsistent lengths (n = \(n), \(logPF.count), \(logPT.count), \(logR.count))")
        }
    }
}

/// The training objective.
public enum Objective: Sendable, Equatable {
    /// Modified sub-trajectory balance with implicit flows log F(s) = log R(s⊤) − log q(⊤|s) (paper Eq. 3): the
    /// λ-weighted mean of squared residuals over every sub-trajectory 0 ≤ i < j ≤ n, pooled over the
    /// micro-batch. `strictMask` reproduces main.py's `cumsum > 1` mask (pairs ending at the terminal state counted
    /// twice plus one zero term, a quirk of the reference kept for compatibility; a row that stops at the first step
    /// adds its one zero term to the denominator too).
    case subTB(lambda: Double, strictMask: Bool)
    /// Trajectory balance with a learned log Z: (log Z + Σ log q(a) + log q(⊤|s_n) − log R(s_n⊤))², mean over rows.
    case tb
    /// Modified detailed balance: per transition (log F(s_t) + log q(a|s_t) − log F(s_{t+1}))², mean over a
    /// row's transitions, then over the rows that have one (the reference's modified_db without its shape bug; a
    /// row that stops at once has no transition and is left out, where the reference would divide 0 by 0). Every
    /// row weighs the same whatever its length — unlike SubTB's mean pooled over all sub-trajectories.
    case db
    /// A reward-maximising baseline (not a GFlowNet): REINFORCE with the batch-mean baseline on the return
    /// r = log R(s_n⊤)/T_R, surrogate loss −mean_b[(r_b − r̄)·log q(τ_b)]. It seeks the reward's modes instead of
    /// matching R, which is the point of comparison in the paper's §2.
    case reinforce
    /// The paper's reward-maximising baseline: PPO with a KL penalty to the frozen base model (`PPOConfig`). Its
    /// loss needs the behaviour's log q and the base model's, so the trainer evaluates it (`PPOLoss`), not
    /// `evaluate`.
    case ppo

    public static let subTB = Objective.subTB(lambda: 1, strictMask: false)
}

/// Loss value and its gradients with respect to the inputs of the objective.
public struct ObjectiveResult: Sendable {
    public var loss: Double
    /// dL/d logPF per trajectory (same shapes as the inputs).
    public var dLogPF: [[Double]]
    /// dL/d logPT per trajectory.
    public var dLogPT: [[Double]]
    /// dL/d logR per trajectory (constants in training; reported for checks).
    public var dLogR: [[Double]]
    /// dL/d log Z per trajectory (TB only; zero otherwise).
    public var dLogZ: [Double]
    /// Number of terms the loss averages (sub-trajectories for SubTB, rows for TB / DB).
    public var terms: Double
}

extension Objective {
    /// The loss of a micro-batch and its gradients. `logZ[b]` is the learned log-partition value for
    /// trajectory b (TB only). A batch in which no trajectory has a transition has loss 0 (not 0/0: a replayed empty demonstration must not make the loss NaN).
    public func evaluate(_ batch: [TrajectoryTerms], layout: TerminalLayout,
                         logZ: [Double] = []) throws(GFNError) -> ObjectiveResult {
        for t in batch { try t.validate() }
        var r = ObjectiveResult(loss: 0,
                                dLogPF: batch.map { [Double](repeating: 0, count: $0.logPF.count) },
                                dLogPT: batch.map { [Double](repeating: 0, count: $0.logPT.count) },
                                dLogR: batch.map { [Double](repeating: 0, count: $0.logR.count) },
                                dLogZ: [Double](repeating: 0, count: batch.count), terms: 0)
        /// Whether log q(⊤|s_n) of trajectory b is a variable (false: forced to 0 in layout A).
        func terminalIsVariable(_ t: TrajectoryTerms) -> Bool { !(t.truncated && layout == .forcedStop) }
        func logPT(_ t: TrajectoryTerms, _ k: Int) -> Double {
            (k == t.n && !terminalIsVariable(t)) ? 0 : t.logPT[k]
        }
        func logF(_ t: TrajectoryTerms, _ k: Int) -> Double { t.logR[k] - logPT(t, k) }

        switch self {
        case .subTB(let lambda, let strict):
            guard lambda > 0 && lambda.isFinite else { throw .invalidArgument("SubTB λ must be positive (got \(lambda))") }
            // Pass 1: the pooled weight.
            var total = 0.0
            for t in batch {
                if t.n > 0 { for i in 0..<t.n { for j in (i + 1)...t.n { total += pow(lambda, Double(j - i - 1)) } } }
                // pairs (i, n+1), incl. (n, n+1) whose residual is 0 — also for a row that stops at once (n = 0):
                // main.py's mask keeps its one zero term in the denominator
                if strict && !t.truncated {
                    for i in 0...t.n { total += pow(lambda, Double(t.n - i)) }
                }
            }
            r.terms = total
            guard total > 0 else { return r }
            for (b, t) in batch.enumerated() where t.n > 0 {
                // prefix sums of log q(a): P[k] = Σ_{m<k} logPF[m]
                var P = [Double](repeating: 0, count: t.n + 1)
                for k in 0..<t.n { P[k + 1] = P[k] + t.logPF[k] }
                var gPF = [Double](repeating: 0, count: t.n + 1)   // difference array over k
                for i in 0..<t.n {
                    for j in (i + 1)...t.n {
                        let d = logF(t, i) + (P[j] - P[i]) - logF(t, j)
                        var w = pow(lambda, Double(j - i - 1))
                        if strict && !t.truncated && j == t.n { w += pow(lambda, Double(t.n - i)) }
                        r.loss += w * d * d
                        let g = 2 * w * d / total
                        gPF[i] += g
                        gPF[j] -= g
                        r.dLogR[b][i] += g
                        r.dLogR[b][j] -= g
                        r.dLogPT[b][i] -= g
                        if j < t.n || terminalIsVariable(t) { r.dLogPT[b][j] += g }
                    }
                }
                var acc = 0.0
                for k in 0..<t.n { acc += gPF[k]; r.dLogPF[b][k] = acc }
            }
            r.loss /= total

        case .tb:
            guard logZ.count == batch.count else {
                throw .internalError("TB needs one log Z per trajectory (\(logZ.count) for \(batch.count))")
            }
            let rows = Double(batch.count)
            guard rows > 0 else { return r }
            r.terms = rows
            for (b, t) in batch.enumerated() {
                let sumPF = t.logPF.reduce(0, +)
                let d = logZ[b] + sumPF + logPT(t, t.n) - t.logR[t.n]
                r.loss += d * d / rows
                let g = 2 * d / rows
                for k in 0..<t.n { r.dLogPF[b][k] = g }
                if terminalIsVariable(t) { r.dLogPT[b][t.n] = g }
                r.dLogR[b][t.n] = -g
                r.dLogZ[b] = g
            }

        case .db:
            let active = batch.filter { $0.n > 0 }.count
            guard active > 0 else { return r }
            r.terms = Double(active)
            for (b, t) in batch.enumerated() where t.n > 0 {
                let scale = 1 / (Double(t.n) * Double(active))
                for k in 0..<t.n {
                    let d = logF(t, k) + t.logPF[k] - logF(t, k + 1)
                    r.loss += d * d * scale
                    let g = 2 * d * scale
                    r.dLogPF[b][k] += g
                    r.dLogR[b][k] += g
                    r.dLogR[b][k + 1] -= g
                    r.dLogPT[b][k] -= g
                    if k + 1 < t.n || terminalIsVariable(t) { r.dLogPT[b][k + 1] += g }
                }
            }
        case .reinforce:
            let rows = Double(batch.count)
            guard rows > 0 else { return r }
            r.terms = rows
            let returns = batch.map { $0.logR[$0.n] }
            let mean = returns.reduce(0, +) / rows
            for (b, t) in batch.enumerated() {
                let adv = returns[b] - mean
                let logQ = t.logPF.reduce(0, +) + logPT(t, t.n)
                r.loss -= adv * logQ / rows
                let g = -adv / rows
                for k in 0..<t.n { r.dLogPF[b][k] = g }
                if terminalIsVariable(t) { r.dLogPT[b][t.n] = g }
            }
        case .ppo:
            throw .invalidArgument("PPO's loss needs the behaviour's and the base model's log q: PPOLoss evaluates it")
        }
        guard r.loss.isFinite else {
            throw .numerical("the \(self) loss is not finite (\(r.loss)): check the rewards and log-probabilities")
        }
        return r
    }
}
