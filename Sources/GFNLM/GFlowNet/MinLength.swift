/// What min_length = m means, once for every objective: the target is R restricted to |Z| ≥ m, and the trainer
/// enforces it whatever the reward says about shorter sequences.
///
/// The sampler never stops before m actions, so before s_m it draws from the policy renormalised without ⊤:
/// log q̃(a|s_t) = log q(a|s_t) − log(1 − q(⊤|s_t)) for t < m. The probability of a sequence under the sampler is
/// Π_{t<m} q̃ · Π_{t≥m} q · q(⊤|s_n) (q(⊤|s_max) := 1 under a forced stop).
///
/// - TB and REINFORCE score a trajectory by that probability. Without the renormalisation the never-sampled ⊤ is
///   a free sink: moving mass onto it lowers log q(τ) of every trajectory at once, which TB (and REINFORCE for
///   below-average returns) rewards; measured on the random-integer task, q(⊤|X) went from 0.04 to 0.998 in 50 TB
///   steps.
/// - SubTB and DB use implicit flows log F(s_t) = log R(s_t⊤) − log q(⊤|s_t). A state s_t with 0 < t < m cannot
///   end a sequence of the target (R(s_t⊤) = 0 there), so it has no flow of that form; keeping the reward's own
///   value for it makes F(s_t) count mass the sampler never realises, and the sampler (which goes to the child
///   s_t a with probability ∝ F(s_t a)) over-visits children with a large R(s_t a ⊤): on a depth-4 toy with m = 2
///   the trained sampler was 0.28 (total variation) away from the target. So those states are no flow endpoints:
///   the trajectory is contracted to the states s_0, s_m, …, s_n, and the step s_0 → s_m has probability
///   q(a_1|s_0) · Π_{0<t<m} q̃(a_{t+1}|s_t). The root keeps its implicit flow F(s_0) = R(s_0⊤)/q(⊤|s_0): at the
///   fixed point q(⊤|s_0) = R(s_0⊤)/(R(s_0⊤) + Z_m) (Z_m = Σ_{|Z|≥m} R(Z)), a value the sampler never uses, and
///   q̃(·|s_0) ∝ the children's restricted flows — so the sampler's terminal distribution is exactly R/Z_m on
///   |Z| ≥ m, for any finite R(s_0⊤). For m ≤ 1 nothing is contracted: this is the reference's loss unchanged.
/// - Every objective ignores trajectories with fewer than m actions (only replayed demonstrations can be that
///   short; `seedBuffer` refuses them).
///
/// With `learnedRoot` (SubTB / DB, m ≥ 1) the root's flow is not R(s_0⊤)/q(⊤|s_0) but a learned log Z per prompt
/// (TB's parameter): s_0 is no terminal state of the target either, so the contraction starts there — the step
/// s_0 → s_m has the sampler's probability Π_{t<m} q̃(a_{t+1}|s_t), and log F(s_0) = log Z, at the fixed point
/// log Z_m. q(⊤|s_0) is then not trained at all.
struct LengthRestriction {
    let minLength: Int
    /// true for SubTB and DB (contraction), false for TB, REINFORCE and PPO (renormalisation only).
    let contracts: Bool
    /// SubTB / DB with m ≥ 1 and a learned root flow.
    let learnedRoot: Bool

    init(objective: Objective, minLength: Int, learnedRoot: Bool = false) {
        self.minLength = minLength
        switch objective {
        case .subTB, .db: contracts = true
        case .tb, .reinforce, .ppo: contracts = false
        }
        self.learnedRoot = learnedRoot && contracts && minLength >= 1
    }

    /// Whether a trajectory of n actions belongs to the target's support.
    func admits(_ n: Int) -> Bool { n >= minLength }

    /// The sampler's log-probability of each action: q̃ before min_len, q after.
    static func samplerLogPF(_ logPF: [Double], _ logPT: [Double], minLength: Int) -> [Double] {
        logPF.enumerated().map { t, v in t < minLength ? v - logOneMinusExp(logPT[t]) : v }
    }

    /// The terms the objective sees for an admitted trajectory (already tempered rewards); `logZ` is the root's
    /// learned flow (used with `learnedRoot`: log F(s_0) = logR[0] − logPT[0] = log Z).
    func restrict(_ t: TrajectoryTerms, logZ: Double = 0) -> TrajectoryTerms {
        let m = minLength
        guard m > 0 else { return t }
        if learnedRoot {
            var first = 0.0
            for k in 0..<m { first += t.logPF[k] - Self.logOneMinusExp(t.logPT[k]) }
            return TrajectoryTerms(n: t.n - m + 1, truncated: t.truncated,
                                   logPF: [first] + t.logPF[m...], logPT: [0] + t.logPT[m...],
                                   logR: [logZ] + t.logR[m...])
        }
        if !contracts {
            var r = t
            r.logPF = Self.samplerLogPF(t.logPF, t.logPT, minLength: m)
            return r
        }
        guard m > 1 else { return t }
        // s_0 → s_m in one step: q at the root (its ⊤ is the anchoring flow term), q̃ in between
        var first = t.logPF[0]
        for k in 1..<m { first += t.logPF[k] - Self.logOneMinusExp(t.logPT[k]) }
        return TrajectoryTerms(n: t.n - m + 1, truncated: t.truncated,
                               logPF: [first] + t.logPF[m...], logPT: [t.logPT[0]] + t.logPT[m...],
                               logR: [t.logR[0]] + t.logR[m...])
    }

    /// Maps dL/d(restricted terms) back to dL/d log q(a_t|s_t) and dL/d log q(⊤|s_t) of the original trajectory.
    func pullBack(dLogPF dr: [Double], dLogPT dp: [Double], of t: TrajectoryTerms) -> (dLogPF: [Double], dLogPT: [Double]) {
        let m = minLength
        var dPF = [Double](repeating: 0, count: t.n), dPT = [Double](repeating: 0, count: t.n + 1)
        // d/dℓ[−log(1 − e^ℓ)] = e^ℓ / (1 − e^ℓ): the renormaliser's share on log q(⊤|s_k)
        func renormaliser(_ k: Int) -> Double { let q = exp(t.logPT[k]); return q / max(1 - q, 1e-12) }
        if learnedRoot {
            for k in 0..<m {
                dPF[k] = dr[0]
                dPT[k] = dr[0] * renormaliser(k)
            }
            for k in m..<t.n { dPF[k] = dr[k - m + 1] }
            for k in m...t.n { dPT[k] = dp[k - m + 1] }
            return (dPF, dPT)
        }
        if m == 0 || (contracts && m == 1) { return (dr, dp) }
        if !contracts {
            for k in 0..<t.n {
                dPF[k] = dr[k]
                if k < m { dPT[k] += dr[k] * renormaliser(k) }
            }
            for k in 0...t.n { dPT[k] += dp[k] }
            return (dPF, dPT)
        }
        dPF[0] = dr[0]
        dPT[0] = dp[0]
        for k in 1..<m {
            dPF[k] = dr[0]
            dPT[k] = dr[0] * renormaliser(k)
        }
        for k in m..<t.n { dPF[k] = dr[k - m + 1] }
        for k in m...t.n { dPT[k] = dp[k - m + 1] }
        return (dPF, dPT)
    }

    static func logOneMinusExp(_ l: Double) -> Double { log(max(-expm1(l), 1e-12)) }
}
