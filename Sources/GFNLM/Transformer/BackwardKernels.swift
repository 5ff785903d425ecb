// MARK: - Backward kernels

extension Kernels {
    /// out = a ⊙ b (count elements).
    static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                         count n: Int) {
        var j = 0
        let n16 = n & ~15
        while j < n16 { store(load(a + j) * load(b + j), out + j); j += 16 }
        while j < n { out[j] = a[j] * b[j]; j += 1 }
    }

    /// y += a ⊙ b (count elements).
    static func addProduct(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           count n: Int) {
        var j = 0
        let n16 = n & ~15
        while j < n16 { store(load(y + j) + load(a + j) * load(b + j), y + j); j += 16 }
        while j < n { y[j] += a[j] * b[j]; j += 1 }
    }

    /// One row of LayerNorm backward (see `Transformer.layerNormBackward`).
    @inline(__always)
    static func layerNormBackwardRow(x: UnsafePointer<Float>, dout: UnsafePointer<Float>, mean: Float, rstd: Float,
                                     gamma: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, n: Int,
                                     dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?) {
        let n16 = n & ~15
        let mv = V16(repeating: mean), rv = V16(repeating: rstd)
        var a1 = V16(), a2 = V16()
        var j = 0
        while j < n16 {
            let nrm = (load(x + j) - mv) * rv
            let dn = load(dout + j) * load(gamma + j)
            a1 += dn
            a2 += dn * nrm
            j += 16
        }
        var s1 = a1.sum(), s2 = a2.sum()
        while j < n {
            let nrm = (x[j] - mean) * rstd
            let dn = dout[j] * gamma[j]
            s1 += dn; s2 += dn * nrm
            j += 1
        }
        let m1 = s1 / Float(n), m2 = s2 / Float(n)
        let m1v = V16(repeating: m1), m2v = V16(repeating: m2)
        j = 0
        while j < n16 {
            let nrm = (load(x + j) - mv) * rv
            let d = load(dout + j)
            let dn = d * load(gamma + j)
            store(load(dx + j) + rv * (dn - m1v - nrm * m2v), dx + j)
            if let dGamma { store(load(dGamma + j) + d * nrm, dGamma + j) }
            if let dBeta { store(load(dBeta + j) + d, dBeta + j) }
            j += 16
        }
        while j < n {
            let nrm = (x[j] - mean) * rstd
            let d = dout[j]
            dx[j] += rstd * (d * gamma[j] - m1 - nrm * m2)
            dGamma?[j] += d * nrm
            dBeta?[j] += d
            j += 1
        }
    }

    /// Softmax backward of one row, in place: dp ← scale · p ⊙ (dp − Σ p·dp).
    @inline(__always)
    static func softmaxBackwardRow(p: UnsafePointer<Float>, dp: UnsafeMutablePointer<Float>, n: Int, scale: Float) {
        let d = dot(p, dp, n: n)
        let dv = V16(repeating: d), sv = V16(repeating: scale)
        let n16 = n & ~15
        var j = 0
        while j < n16 { store(sv * load(p + j) * (load(dp + j) - dv), dp + j); j += 16 }
        while j < n { dp[j] = scale * p[j] * (dp[j] - d); j += 1 }
    }

    /// grad ← grad · gelu_new′(x), in place.
    public static func geluNewBackward(_ x: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.7978845608028654
        let k: Float = 0.044715
        let n16 = count & ~15
        var j = 0
        while j < n16 {
            let v = load(x + j)
            let v2 = v * v
            let u = c * (v + k * v2 * v)
            let e = exp16(2 * u)
            let th = 1 - 2 / (e + 1)
            let one = V16(repeating: 1), half = V16(repeating: 0.5)
            let du: V16 = (one + (3 * k) * v2) * c
            let sech2: V16 = one - th * th
            let d: V16 = half * (one + th) + half * v * sech2 * du
            store(load(grad + j) * d, grad + j)
            j += 16
        }
        while j < count {
            let v = x[j]
            let th = tanhf(c * (v + k * v * v * v))
            grad[j] *= 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * k * v * v)
            j += 1
        }
    }

    /// grad ← grad · gelu′(x) for the exact GELU: Φ(x) + x·φ(x).
    public static func geluErfBackward(_ x: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>, count: Int) {
        for j in 0..<count {
            let v = x[j]
            let cdf = 0.5 * (1 + erff(v * 0.7071067811865476))
            let pdf = expf(-0.5 * v * v) * 0.3989422804014327
            grad[j] *= cdf + v * pdf
        }
    }
}
