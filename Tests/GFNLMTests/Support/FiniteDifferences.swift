@testable import GFNLM

/// The central difference (L(θ + h) − L(θ − h)) / 2h of `loss` in coordinate `i` of `p`; the value is restored.
func centralDifference(_ p: Parameter, _ i: Int, h: Float, _ loss: () throws -> Double) rethrows -> Double {
    let old = p.value.pointer[i]
    p.value.pointer[i] = old + h
    let lp = try loss()
    p.value.pointer[i] = old - h
    let lm = try loss()
    p.value.pointer[i] = old
    return (lp - lm) / Double(2 * h)
}
