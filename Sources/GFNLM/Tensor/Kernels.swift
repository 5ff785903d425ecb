/// Element-wise and row kernels over contiguous float memory, written with SIMD16 (compiled for x86-64-v3).
public enum Kernels {
    public typealias V16 = SIMD16<Float>

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V16 {
        UnsafeRawPointer(p).loadUnaligned(as: V16.self)
    }

    @inline(__always)
    static func store(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
    }

    /// e^x for 16 lanes, relative error ≈ 2e-7 on [−87.3, 88]; inputs below −87.3 give 0 (−∞ gives 0), inputs above 88
    /// saturate at e^88. NaN propagates.
    @inline(__always)
    public static func exp16(_ x: V16) -> V16 {
        let log2e: Float = 1.4426950408889634
        let magic: Float = 12582912.0  // 1.5·2^23: adding it rounds to an integer in the low mantissa bits
        var xc = x.replacing(with: 88.0, where: x .> 88.0)
        let tiny = xc .< -87.3365447505531
        xc = xc.replacing(with: -87.3365447505531, where: tiny)
        let t = xc * log2e + magic
        let n = t - magic                       // round(x·log2 e)
        // f = x·log2e − n, computed as x − n·ln2 (two-part ln2 for accuracy) then scaled back.
        let r = xc - n * 0.693145751953125 - n * 1.428606765330187e-06  // r in [−ln2/2, ln2/2]
        // e^r by a degree-7 Taylor polynomial (error < 2e-8 on the interval)
        var p: V16 = V16(repeating: 1.0 / 5040.0)
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        // 2^n from the exponent bits: the integer n sits in the low bits of t's bit pattern.
        let ti = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((ti &+ 127) &<< 23, to: V16.self)
        let result = p * scale
        return result.replacing(with: 0, where: tiny)
    }

    /// Scalar e^x through the same polynomial (consistent with exp16).
    @inline(__always)
    public static func exp1(_ x: Float) -> Float { exp16(V16(repeating: x))[0] }

    // MARK: LayerNorm

    /// out[i,:] = (x[i,:] − mean) · rstd · gamma + beta for `rows` rows of width `n`; optionally saves mean and
    /// rstd per row (for the backward pass).
    public static func layerNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, eps: Float,
                                 mean: UnsafeMutablePointer<Float>? = nil, rstd: UnsafeMutablePointer<Float>? = nil) {
        let n16 = n & ~15
        for i in 0..<rows {
            let xi = x + i * n, oi = out + i * n
            var acc = V16()
            var j = 0
            while j < n16 { acc += load(xi + j); j += 16 }
            var s = acc.sum()
            while j < n { s += xi[j]; j += 1 }
            let mu = s / Float(n)
            let muv = V16(repeating: mu)
            var acc2 = V16()
            j = 0
            while j < n16 { let d = load(xi + j) - muv; acc2 += d * d; j += 16 }
            var s2 = acc2.sum()
            while j < n { let d = xi[j] - mu; s2 += d * d; j += 1 }
            let r = 1 / (s2 / Float(n) + eps).squareRoot()
            let rv = V16(repeating: r)
            j = 0
            while j < n16 {
                store((load(xi + j) - muv) * rv * load(gamma + j) + load(beta + j), oi + j)
                j += 16
            }
            while j < n { oi[j] = (xi[j] - mu) * r * gamma[j] + beta[j]; j += 1 }
            mean?[i] = mu
            rstd?[i] = r
        }
    }

    // MARK: element-wise

    /// y[i,:] += b for `rows` rows of width n.
    public static func addBias(_ y: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, n: Int, ld: Int? = nil) {
        let ld = ld ?? n
        let n16 = n & ~15
        for i in 0..<rows {
            let yi = y + i * ld
            var j = 0
            while j < n16 { store(load(yi + j) + load(b + j), yi + j); j += 16 }
            while j < n { yi[j] += b[j]; j += 1 }
        }
    }

    /// y += x (count elements).
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        let n16 = count & ~15
        var j = 0
        while j < n16 { store(load(y + j) + load(x + j), y + j); j += 16 }
        while j < count { y[j] += x[j]; j += 1 }
    }

    /// y += a·x (count elements).
    public static func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, count: Int) {
        let n16 = count & ~15
        let av = V16(repeating: a)
        var j = 0
        while j < n16 { store(load(y + j) + av * load(x + j), y + j); j += 16 }
        while j < count { y[j] += a * x[j]; j += 1 }
    }

    /// y *= a (count elements).
    public static func scale(_ y: UnsafeMutablePointer<Float>, _ a: Float, count: Int) {
        let n16 = count & ~15
        let av = V16(repeating: a)
        var j = 0
        while j < n16 { store(load(y + j) * av, y + j); j += 16 }
        while j < count { y[j] *= a; j += 1 }
    }

    /// tanh-approximation GELU ("gelu_new"): out = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). In place allowed.
    public static func geluNew(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.7978845608028654
        let n16 = count & ~15
        var j = 0
        while j < n16 {
            let v = load(x + j)
            let u = c * (v + 0.044715 * v * v * v)
            // tanh(u) = 1 − 2/(e^{2u} + 1)
            let e = exp16(2 * u)
            let th = 1 - 2 / (e + 1)
            store(0.5 * v * (1 + th), out + j)
            j += 16
        }
        while j < count {
            let v = x[j]
            out[j] = 0.5 * v * (1 + tanhf(c * (v + 0.044715 * v * v * v)))
            j += 1
        }
    }

    /// Exact GELU: 0.5·x·(1 + erf(x/√2)). In place allowed.
    public static func geluErf(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        for j in 0..<count {
            let v = x[j]
            out[j] = 0.5 * v * (1 + erff(v * 0.7071067811865476))
        }
    }

    // MARK: softmax

    /// In-place softmax of one row of n values; returns the row's log-sum-exp.
    @discardableResult
    public static func softmaxInPlace(_ p: UnsafeMutablePointer<Float>, n: Int) -> Float {
        let m = max(p, n: n)
        if m == -.infinity {
            p.update(repeating: 0, count: n)
            return -.infinity
        }
        let mv = V16(repeating: m)
        let n16 = n & ~15
        var acc = V16()
        var j = 0
        while j < n16 { let e = exp16(load(p + j) - mv); store(e, p + j); acc += e; j += 16 }
        var s = acc.sum()
        while j < n { let e = exp1(p[j] - m); p[j] = e; s += e; j += 1 }
        scale(p, 1 / s, count: n)
        return m + logf(s)
    }

    /// log Σ exp(x) of one row.
    public static func logSumExp(_ p: UnsafePointer<Float>, n: Int) -> Float {
        let m = max(p, n: n)
        if m == -.infinity || m == .infinity || m.isNaN { return m }
        let mv = V16(repeating: m)
        let n16 = n & ~15
        var acc = V16()
        var j = 0
        while j < n16 { acc += exp16(load(p + j) - mv); j += 16 }
        var s = acc.sum()
        while j < n { s += exp1(p[j] - m); j += 1 }
        return m + logf(s)
    }

    /// The largest value (−∞ for n = 0; NaN if any value is NaN).
    public static func max(_ p: UnsafePointer<Float>, n: Int) -> Float {
        let n16 = n & ~15
        var acc = V16(repeating: -.infinity)
        var nanLanes = SIMDMask<SIMD16<Int32>>(repeating: false)
        var j = 0
        while j < n16 {
            let v = load(p + j)
            nanLanes .|= (v .!= v)
            acc = acc.replacing(with: v, where: v .> acc)
            j += 16
        }
        var m = acc.max()
        var nan = any(nanLanes)
        while j < n { let v = p[j]; if v.isNaN { nan = true }; if v > m { m = v }; j += 1 }
        return nan ? .nan : m
    }

    /// Σ x.
    public static func sum(_ p: UnsafePointer<Float>, n: Int) -> Float {
        let n16 = n & ~15
        var acc = V16()
        var j = 0
        while j < n16 { acc += load(p + j); j += 16 }
        var s = acc.sum()
        while j < n { s += p[j]; j += 1 }
        return s
    }

    /// Σ a·b.
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, n: Int) -> Float {
        let n16 = n & ~15
        var acc = V16()
        var j = 0
        while j < n16 { acc += load(a + j) * load(b + j); j += 16 }
        var s = acc.sum()
        while j < n { s += a[j] * b[j]; j += 1 }
        return s
    }
}
