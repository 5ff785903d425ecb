import Foundation
import XCTest
@testable import GFNLM

/// The reference loss's golden values (computed independently with its own array code).
final class ObjectiveTests: XCTestCase {
    let EOS: Int32 = 0

    func layoutA(_ tokens: [Int32], lpf: [Double], lpt: [Double], lr: [Double], maxLen: Int) -> TrajectoryTerms {
        TrajectoryTerms(layoutA: lpf, lpt: lpt, lr: lr, tokens: tokens, termination: EOS, maxLen: maxLen)
    }

    var h1: TrajectoryTerms {
        layoutA([1, 2, 0, 0], lpf: [-0.7, -1.2, -0.5, 0], lpt: [-3, -1, -0.5, 0], lr: [-1, -2, 0.5, 0.5], maxLen: 3)
    }

    func testA2HandVectorH1() throws {
        XCTAssertEqual(try Objective.subTB(lambda: 1, strictMask: false).evaluate([h1], layout: .forcedStop).loss, 5.446667, accuracy: 1e-5)
        XCTAssertEqual(try Objective.subTB(lambda: 0.5, strictMask: false).evaluate([h1], layout: .forcedStop).loss, 6.374000, accuracy: 1e-5)
        XCTAssertEqual(try Objective.subTB(lambda: 1, strictMask: true).evaluate([h1], layout: .forcedStop).loss, 4.565000, accuracy: 1e-5)
    }

    /// main.py's strict mask keeps the pair (n, n+1) of every row that stopped before max_len, a zero residual that
    /// counts in the pooled denominator — also for a row that stops at the first step (n = 0). Batch {(b)⊤, ⊤},
    /// max_len 3, with the reference's layout-A arrays; the golden values come from the reference's cumsum
    /// formulation computed independently (numpy): strict 4.805 (the (b)⊤ row alone: 6.406667), λ = 0.5 4.118571,
    /// default mask 9.61 (the ⊤ row adds nothing there).
    func testStrictMaskCountsARowThatStopsAtOnce() throws {
        let b = layoutA([2, 0, 0, 0], lpf: [-1.1, -0.3, 0, 0], lpt: [-2.5, -0.3, 0, 0], lr: [0.5, -1.5, -1.5, 0], maxLen: 3)
        let stop = layoutA([0, 0, 0, 0], lpf: [-1.2, 0, 0, 0], lpt: [-1.2, 0, 0, 0], lr: [-0.7, -0.7, 0, 0], maxLen: 3)
        XCTAssertEqual(stop.n, 0)
        let strict = Objective.subTB(lambda: 1, strictMask: true)
        XCTAssertEqual(try strict.evaluate([b, stop], layout: .forcedStop).loss, 4.805, accuracy: 1e-9)
        XCTAssertEqual(try strict.evaluate([b], layout: .forcedStop).loss, 6.406667, accuracy: 1e-6)
        XCTAssertEqual(try Objective.subTB(lambda: 0.5, strictMask: true).evaluate([b, stop], layout: .forcedStop).loss,
                       4.118571, accuracy: 1e-6)
        XCTAssertEqual(try Objective.subTB.evaluate([b, stop], layout: .forcedStop).loss, 9.61, accuracy: 1e-9)
        let r = try strict.evaluate([b, stop], layout: .forcedStop)
        XCTAssertEqual(r.terms, 4)
        // the zero term has no gradient, the (b)⊤ row's terms are divided by 4
        XCTAssertEqual(r.dLogPT[1], [0])
        XCTAssertEqual(r.dLogPF[0][0], 2 * 2 * 3.1 / 4, accuracy: 1e-9)
        // a batch of rows that all stop at once: zero loss over a positive count (not 0/0)
        let only = try strict.evaluate([stop, stop], layout: .forcedStop)
        XCTAssertEqual(only.loss, 0)
        XCTAssertEqual(only.terms, 2)
    }

    /// The issue's figures for batch {(b)⊤, ⊤} under the strict mask: 5.3999 (the reference) against 7.1999 (gfnlm
    /// before the fix, which left the ⊤ row's zero term out of the denominator). Only the (b)⊤ row's one-step
    /// residual D = log F(s_0) + log q(b|s_0) − log F(s_1) enters: its kept pairs are (0,1), (0,2) (= D, the step to
    /// the state after ⊤ adds nothing) and (1,2) (= 0), the ⊤ row's one pair (0,1) is 0, so the reference gives
    /// 2D²/4 and the old count 2D²/3 — a ratio of exactly 3/4, as the issue's two figures have. They pin D² ≈ 10.8
    /// (10.7998 … 10.8, from their 4-digit truncation) but not the individual log-probabilities (one equation, five
    /// unknowns); here log R(s_0⊤) is chosen so that D = √10.8, which gives 5.4 / 7.2 exactly (the reference's
    /// cumsum formulation in numpy on these arrays: 5.4, the (b)⊤ row alone 7.2, the default mask 10.8).
    func testStrictMaskIssueExampleBatchBStopAndStop() throws {
        let lr0 = 10.8.squareRoot() - 2.6
        let b = layoutA([2, 0, 0, 0], lpf: [-1.1, -0.3, 0, 0], lpt: [-2.5, -0.3, 0, 0], lr: [lr0, -1.5, -1.5, 0], maxLen: 3)
        let stop = layoutA([0, 0, 0, 0], lpf: [-1.2, 0, 0, 0], lpt: [-1.2, 0, 0, 0], lr: [-0.7, -0.7, 0, 0], maxLen: 3)
        let strict = Objective.subTB(lambda: 1, strictMask: true)
        let both = try strict.evaluate([b, stop], layout: .forcedStop)
        XCTAssertEqual(both.loss, 5.4, accuracy: 1e-12)
        XCTAssertEqual(both.terms, 4)
        // the old behaviour (the ⊤ row not counted) is the (b)⊤ row on its own
        XCTAssertEqual(try strict.evaluate([b], layout: .forcedStop).loss, 7.2, accuracy: 1e-12)
        XCTAssertEqual(try Objective.subTB.evaluate([b, stop], layout: .forcedStop).loss, 10.8, accuracy: 1e-12)
        // central differences of the loss against its gradient in log R(s_0⊤): 2·(2·D)/4 = D
        let h = 1e-6
        func loss(_ x: Double) throws -> Double {
            let bb = layoutA([2, 0, 0, 0], lpf: [-1.1, -0.3, 0, 0], lpt: [-2.5, -0.3, 0, 0], lr: [x, -1.5, -1.5, 0], maxLen: 3)
            return try strict.evaluate([bb, stop], layout: .forcedStop).loss
        }
        let fd = (try loss(lr0 + h) - loss(lr0 - h)) / (2 * h)
        XCTAssertEqual(both.dLogR[0][0], fd, accuracy: 1e-6)
        XCTAssertEqual(both.dLogR[0][0], 10.8.squareRoot(), accuracy: 1e-9)
    }

    /// DB's normalisation: each row's squared transition residuals are averaged over its own transitions, then the
    /// rows are averaged (rows without a transition are left out; the reference's modified_db would divide 0 by 0
    /// there). Golden values from the reference's masked formula in numpy (its mask padded to max_len columns):
    /// batch {H1, (c)⊤} 4.3825 (rows 7.765 and 1; the mean pooled over the 3 transitions would be 5.51), the
    /// truncated H2 6.29.
    func testDBNormalisationGolden() throws {
        let c = layoutA([1, 0, 0, 0], lpf: [-1.5, -0.5, 0, 0], lpt: [-2, -0.5, 0, 0], lr: [0, -1, -1, 0], maxLen: 3)
        XCTAssertEqual(try Objective.db.evaluate([h1, c], layout: .forcedStop).loss, 4.3825, accuracy: 1e-9)
        XCTAssertEqual(try Objective.db.evaluate([h1], layout: .forcedStop).loss, 7.765, accuracy: 1e-9)
        let pooled = (2.3 * 2.3 + 3.2 * 3.2 + 1) / 3
        XCTAssertNotEqual(try Objective.db.evaluate([h1, c], layout: .forcedStop).loss, pooled, accuracy: 1e-3)
        let h2 = layoutA([1, 2, 0], lpf: [-0.7, -1.2, 0], lpt: [-3, -1, 0], lr: [-1, -2, 0.5], maxLen: 2)
        XCTAssertEqual(try Objective.db.evaluate([h2], layout: .forcedStop).loss, 6.29, accuracy: 1e-9)
        // a row that stops at once has no transition and does not count
        let stop = layoutA([0, 0, 0, 0], lpf: [-1.2, 0, 0, 0], lpt: [-1.2, 0, 0, 0], lr: [-0.7, -0.7, 0, 0], maxLen: 3)
        XCTAssertEqual(try Objective.db.evaluate([h1, c, stop], layout: .forcedStop).loss, 4.3825, accuracy: 1e-9)
        XCTAssertEqual(try Objective.db.evaluate([h1, c], layout: .forcedStop).terms, 2)
    }

    /// REINFORCE with the batch-mean baseline: −mean_b[(r_b − r̄)·log q(τ_b)], r = log R(s_n⊤)/T_R, log q(τ) = Σ log
    /// q(a) + log q(⊤|s_n). Batch {H1, (c)⊤}: r = (0.5, −1), log q = (−2.4, −2.0) ⇒ loss 0.15, dL/d log q(τ) =
    /// (−0.375, 0.375) on every action and the stop (numpy).
    func testReinforceGolden() throws {
        let c = layoutA([1, 0, 0, 0], lpf: [-1.5, -0.5, 0, 0], lpt: [-2, -0.5, 0, 0], lr: [0, -1, -1, 0], maxLen: 3)
        let r = try Objective.reinforce.evaluate([h1, c], layout: .forcedStop)
        XCTAssertEqual(r.loss, 0.15, accuracy: 1e-12)
        XCTAssertEqual(r.dLogPF[0], [-0.375, -0.375])
        XCTAssertEqual(r.dLogPT[0], [0, 0, -0.375])
        XCTAssertEqual(r.dLogPF[1], [0.375])
        XCTAssertEqual(r.dLogPT[1], [0, 0.375])
        // a truncated row under the forced stop has no stop term
        let h2 = layoutA([1, 2, 0], lpf: [-0.7, -1.2, 0], lpt: [-3, -1, 0], lr: [-1, -2, 0.5], maxLen: 2)
        let t = try Objective.reinforce.evaluate([h2, c], layout: .forcedStop)
        // r = (0.5, −1), log q = (−1.9, −2.0): −((0.75·−1.9) + (−0.75·−2.0))/2 = −0.0375
        XCTAssertEqual(t.loss, -0.0375, accuracy: 1e-12)
        XCTAssertEqual(t.dLogPT[0], [0, 0, 0])
    }

    func testA3TruncatedTrajectory() throws {
        let h2 = layoutA([1, 2, 0], lpf: [-0.7, -1.2, 0], lpt: [-3, -1, 0], lr: [-1, -2, 0.5], maxLen: 2)
        XCTAssertTrue(h2.truncated)
        XCTAssertEqual(try Objective.subTB.evaluate([h2], layout: .forcedStop).loss, 4.246667, accuracy: 1e-5)
    }

    func testA4PooledNormalisation() throws {
        let c = layoutA([1, 0, 0, 0], lpf: [-1.5, -0.5, 0, 0], lpt: [-2, -0.5, 0, 0], lr: [0, -1, -1, 0], maxLen: 3)
        XCTAssertEqual(try Objective.subTB.evaluate([h1, c], layout: .forcedStop).loss, 4.335000, accuracy: 1e-5)
    }

    func testA5Gradients() throws {
        let r = try Objective.subTB.evaluate([h1], layout: .forcedStop)
        // our arrays cover t < n (PF) and t ≤ n (PT, R); the reference's extra slots have zero gradient
        let pf = [0.9333, -2.7333], pt = [-0.9333, 3.6667, -2.7333], lr = [0.9333, -3.6667, 2.7333]
        for (a, b) in zip(r.dLogPF[0], pf) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        for (a, b) in zip(r.dLogPT[0], pt) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        for (a, b) in zip(r.dLogR[0], lr) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        // the analytic gradient equals central differences, for every objective and both layouts
        var rng = RNG(seed: 5)
        func rnd() -> Double { rng.normal() }
        let batch = [TrajectoryTerms(n: 3, truncated: false, logPF: [rnd(), rnd(), rnd()], logPT: [rnd(), rnd(), rnd(), rnd()], logR: [rnd(), rnd(), rnd(), rnd()]),
                     TrajectoryTerms(n: 2, truncated: true, logPF: [rnd(), rnd()], logPT: [rnd(), rnd(), rnd()], logR: [rnd(), rnd(), rnd()]),
                     TrajectoryTerms(n: 0, truncated: false, logPF: [], logPT: [rnd()], logR: [rnd()])]
        let logZ = [0.3, -0.2, 0.1]
        for obj in [Objective.subTB(lambda: 0.9, strictMask: false), .subTB(lambda: 1, strictMask: true), .tb, .db, .reinforce] {
            for layout in [TerminalLayout.forcedStop, .nextSentence] {
                let res = try obj.evaluate(batch, layout: layout, logZ: logZ)
                let h = 1e-6
                for b in 0..<batch.count {
                    for k in 0..<batch[b].logPF.count {
                        var p = batch, m = batch
                        p[b].logPF[k] += h; m[b].logPF[k] -= h
                        let fd = (try obj.evaluate(p, layout: layout, logZ: logZ).loss - obj.evaluate(m, layout: layout, logZ: logZ).loss) / (2 * h)
                        XCTAssertEqual(res.dLogPF[b][k], fd, accuracy: 1e-5, "\(obj) \(layout) PF[\(b)][\(k)]")
                    }
                    for k in 0..<batch[b].logPT.count {
                        var p = batch, m = batch
                        p[b].logPT[k] += h; m[b].logPT[k] -= h
                        let fd = (try obj.evaluate(p, layout: layout, logZ: logZ).loss - obj.evaluate(m, layout: layout, logZ: logZ).loss) / (2 * h)
                        XCTAssertEqual(res.dLogPT[b][k], fd, accuracy: 1e-5, "\(obj) \(layout) PT[\(b)][\(k)]")
                    }
                    var p = logZ, m = logZ
                    p[b] += h; m[b] -= h
                    let fd = (try obj.evaluate(batch, layout: layout, logZ: p).loss - obj.evaluate(batch, layout: layout, logZ: m).loss) / (2 * h)
                    XCTAssertEqual(res.dLogZ[b], fd, accuracy: 1e-5)
                }
            }
        }
    }

    func testA6Invariances() throws {
        var shifted = h1
        shifted.logR = shifted.logR.map { $0 + 7.3 }
        XCTAssertEqual(try Objective.subTB.evaluate([shifted], layout: .forcedStop).loss, 5.446667, accuracy: 1e-5)
        let masked = layoutA([1, 2, 0, 0], lpf: [-0.7, -1.2, 123, -55], lpt: [-3, -1, -0.5, 9], lr: [-1, -2, 0.5, -1000], maxLen: 3)
        XCTAssertEqual(try Objective.subTB.evaluate([masked], layout: .forcedStop).loss, 5.446667, accuracy: 1e-5)
    }

    // MARK: toy problem of the reference's golden-value script (sequences over {a, b} of length ≤ 4, arbitrary rewards)

    /// The toy reward table of that script is drawn from numpy's generator, which Swift cannot reproduce; the
    /// The exact-policy and formulation-equivalence checks below use the same construction with our own random table (the identities are exact).
    func toy(seed: UInt64) -> (all: [[Int32]], logR: [[Int32]: Double]) {
        var rng = RNG(seed: seed)
        var all: [[Int32]] = [[]]
        var frontier: [[Int32]] = [[]]
        for _ in 0..<4 {
            frontier = frontier.flatMap { [$0 + [1], $0 + [2]] }
            all += frontier
        }
        var table: [[Int32]: Double] = [:]
        for z in all { table[z] = 2 * rng.normal() }
        return (all, table)
    }

    func testA1ExactPolicyHasZeroLoss() throws {
        let (all, R) = toy(seed: 11)
        let maxLen = 4
        var logF: [[Int32]: Double] = [:]
        for z in all.sorted(by: { $0.count > $1.count }) {
            if z.count == maxLen { logF[z] = R[z]! } else {
                let terms = [R[z]!, logF[z + [1]]!, logF[z + [2]]!]
                let m = terms.max()!
                logF[z] = m + log(terms.map { exp($0 - m) }.reduce(0, +))
            }
        }
        func lp(_ z: [Int32], _ a: Int32) -> Double {   // exact policy; a = 0 is ⊤
            a == 0 ? R[z]! - logF[z]! : logF[z + [a]]! - logF[z]!
        }
        let seqs: [[Int32]] = [[1, 2, 0], [2, 2, 1, 1], [1, 0], [2, 1, 1, 0], [0]]
        var batch: [TrajectoryTerms] = []
        for s in seqs {
            let z = Array(s.prefix { $0 != 0 })
            let n = z.count
            let truncated = n == maxLen
            batch.append(TrajectoryTerms(n: n, truncated: truncated,
                                         logPF: (0..<n).map { lp(Array(z[0..<$0]), z[$0]) },
                                         logPT: (0...n).map { k in k == maxLen ? 0 : lp(Array(z[0..<k]), 0) },
                                         logR: (0...n).map { R[Array(z[0..<$0])]! }))
        }
        for lam in [1.0, 0.5, 0.9] {
            for strict in [false, true] {
                XCTAssertLessThan(try Objective.subTB(lambda: lam, strictMask: strict).evaluate(batch, layout: .forcedStop).loss, 1e-12)
            }
        }
        XCTAssertLessThan(try Objective.db.evaluate(batch, layout: .forcedStop).loss, 1e-12)
        let logZ = logF[[]]!
        XCTAssertLessThan(try Objective.tb.evaluate(batch, layout: .forcedStop, logZ: Array(repeating: logZ, count: batch.count)).loss, 1e-12)
        // log F(root) = logsumexp of all rewards
        let vals = all.map { R[$0]! }
        let m = vals.max()!
        XCTAssertEqual(logZ, m + log(vals.map { exp($0 - m) }.reduce(0, +)), accuracy: 1e-12)
        // the exact policy's terminal distribution is R / ΣR (enumerated)
        var q: [[Int32]: Double] = [:]
        func walk(_ z: [Int32], _ acc: Double) {
            if z.count == maxLen { q[z] = acc; return }
            q[z] = acc + lp(z, 0)
            walk(z + [1], acc + lp(z, 1)); walk(z + [2], acc + lp(z, 2))
        }
        walk([], 0)
        for z in all { XCTAssertEqual(exp(q[z]!), exp(R[z]! - logZ), accuracy: 1e-12) }
    }

    func testA7VectorisedEqualsDoubleLoop() throws {
        // explicit double loop of Eq. 3 on random inputs, both layouts
        var rng = RNG(seed: 21)
        for layout in [TerminalLayout.forcedStop, .nextSentence] {
            var batch: [TrajectoryTerms] = []
            for b in 0..<5 {
                let n = b == 4 ? 6 : rng.below(6)
                let truncated = n == 6
                batch.append(TrajectoryTerms(n: n, truncated: truncated, logPF: (0..<n).map { _ in rng.normal() },
                                             logPT: (0...n).map { _ in rng.normal() }, logR: (0...n).map { _ in rng.normal() }))
            }
            var num = 0.0, den = 0.0
            for t in batch where t.n > 0 {
                func logF(_ k: Int) -> Double {
                    let pt = (k == t.n && t.truncated && layout == .forcedStop) ? 0 : t.logPT[k]
                    return t.logR[k] - pt
                }
                for i in 0..<t.n {
                    for j in (i + 1)...t.n {
                        let d = logF(i) - logF(j) + (i..<j).reduce(0.0) { $0 + t.logPF[$1] }
                        num += d * d; den += 1
                    }
                }
            }
            XCTAssertEqual(try Objective.subTB.evaluate(batch, layout: layout).loss, num / den, accuracy: 1e-9)
        }
    }

    func testA25AllEmptyBatchIsZeroNotNaN() throws {
        let empty = [TrajectoryTerms(n: 0, truncated: false, logPF: [], logPT: [-1], logR: [-99 / 0.5])]
        let r = try Objective.subTB.evaluate(empty + empty, layout: .forcedStop)
        XCTAssertEqual(r.loss, 0)
        XCTAssertEqual(try Objective.db.evaluate(empty, layout: .forcedStop).loss, 0)
        // −99/T_R penalties at T_R = 0.5 stay finite
        let pen = TrajectoryTerms(n: 2, truncated: false, logPF: [-3, -2], logPT: [-1, -2, -1], logR: [-198, -198, 5])
        XCTAssertTrue(try Objective.subTB.evaluate([pen], layout: .forcedStop).loss.isFinite)
        // a NaN reward is an error, never a silent NaN loss
        let nan = TrajectoryTerms(n: 1, truncated: false, logPF: [-1], logPT: [-1, -1], logR: [.nan, 0])
        XCTAssertThrowsError(try Objective.subTB.evaluate([nan], layout: .forcedStop)) {
            XCTAssertEqual(($0 as? GFNError)?.status, .numerical)
        }
    }
}
