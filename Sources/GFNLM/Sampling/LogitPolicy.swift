/// Changes applied to raw logits to define the policy distribution, for sampling, scoring and GFlowNet training
/// alike: an allowed vocabulary (other ids get `disallowedPenalty` added — a finite value such as −99 is the
/// reference's soft mask, −∞ a hard mask) and sparse additive biases.
public struct LogitAdjustment: Sendable, Equatable {
    /// Ids that may be produced; nil allows every id.
    public var allowed: [Int32]?
    /// Added to the logits of ids outside `allowed` (−∞: never produced; −99: the reference's soft mask).
    public var disallowedPenalty: Float
    /// Extra additive biases per id.
    public var bias: [Int32: Float]

    public init(allowed: [Int32]? = nil, disallowedPenalty: Float = -.infinity, bias: [Int32: Float] = [:]) {
        self.allowed = allowed
        self.disallowedPenalty = disallowedPenalty
        self.bias = bias
    }

    public var isIdentity: Bool { allowed == nil && bias.isEmpty }

    /// The dense additive vector [vocab], or nil when nothing is adjusted. `alwaysAllowed` (stop tokens) are
    /// exempt from the disallowed penalty.
    public func dense(vocab: Int, alwaysAllowed: [Int32] = []) throws(GFNError) -> [Float]? {
        if isIdentity { return nil }
        guard !disallowedPenalty.isNaN, disallowedPenalty <= 0 else {
            throw .invalidArgument("disallowed penalty must be ≤ 0 (−∞ for a hard mask), got \(disallowedPenalty)")
        }
        var v = [Float](repeating: 0, count: vocab)
        if let allowed {
            for i in 0..<vocab { v[i] = disallowedPenalty }
            for id in allowed + alwaysAllowed {
                guard id >= 0 && Int(id) < vocab else { throw .outOfRange("allowed token id \(id) is outside the vocabulary (0..<\(vocab))") }
                v[Int(id)] = 0
            }
        }
        for (id, b) in bias {
            guard id >= 0 && Int(id) < vocab else { throw .outOfRange("bias token id \(id) is outside the vocabulary (0..<\(vocab))") }
            guard !b.isNaN, b != .infinity else { throw .invalidArgument("bias for token \(id) is \(b)") }
            v[Int(id)] += b
        }
        return v
    }
}

/// One row's view of the policy at one step: log-probabilities under the adjusted, untempered distribution, and a
/// token drawn from the sampling distribution (temperature, min-length ban on stop tokens, top-k, top-p).
/// Owns scratch memory of two vocabulary-sized rows; one per worker thread.
final class TokenChooser {
    let vocab: Int
    let work: UnsafeMutablePointer<Float>
    let probs: UnsafeMutablePointer<Float>

    init(vocab: Int) {
        self.vocab = vocab
        work = .allocate(capacity: vocab)
        probs = .allocate(capacity: vocab)
    }

    deinit {
        work.deallocate()
        probs.deallocate()
    }

    /// Writes the policy logits (raw + bias) into `work` and returns their log-sum-exp.
    func policyLogits(_ logits: UnsafePointer<Float>, bias: UnsafePointer<Float>?) -> Float {
        work.update(from: logits, count: vocab)
        if let bias { Kernels.add(work, bias, count: vocab) }
        return Kernels.logSumExp(work, n: vocab)
    }

    /// Draws a token from softmax(work/temperature) restricted by top-k / top-p, with `banned` ids excluded.
    /// temperature 0 → argmax. Returns nil when no token has positive probability.
    func draw(temperature: Float, topK: Int, topP: Float, banned: [Int32], rng: inout RNG) -> Int32? {
        let V = vocab
        if temperature == 0 {
            var best: Int32? = nil
            var bestV = -Float.infinity
            for i in 0..<V where work[i] > bestV && !banned.contains(Int32(i)) {
                bestV = work[i]; best = Int32(i)
            }
            return best
        }
        probs.update(from: work, count: V)
        if temperature != 1 { Kernels.scale(probs, 1 / temperature, count: V) }
        for b in banned { probs[Int(b)] = -.infinity }
        if Kernels.softmaxInPlace(probs, n: V) == -.infinity { return nil }
        if topK > 0 && topK < V {
            let tau = TokenChooser.threshold(probs, n: V) { p, t in
                TokenChooser.count(p, n: V, atLeast: t) >= topK
            }
            TokenChooser.zeroBelow(probs, n: V, tau)
        }
        if topP < 1 {
            let target = topP * Kernels.sum(probs, n: V)
            let tau = TokenChooser.threshold(probs, n: V) { p, t in
                TokenChooser.mass(p, n: V, atLeast: t) >= target
            }
            TokenChooser.zeroBelow(probs, n: V, tau)
        }
        // Inverse-CDF draw: skip whole 16-lane chunks by their (SIMD) sums, then scan inside the chunk.
        let total = Double(Kernels.sum(probs, n: V))
        if !(total > 0) || !total.isFinite { return nil }
        let u = rng.uniform() * total
        var acc = 0.0
        var last: Int32? = nil
        var i = 0
        while i < V {
            let end = min(V, i + 16)
            let chunk: Double
            if end - i == 16 {
                chunk = Double(UnsafeRawPointer(probs + i).loadUnaligned(as: SIMD16<Float>.self).sum())
            } else {
                var c: Float = 0
                for k in i..<end { c += probs[k] }
                chunk = Double(c)
            }
            if chunk > 0 && acc + chunk > u {
                for k in i..<end where probs[k] > 0 {
                    acc += Double(probs[k])
                    last = Int32(k)
                    if u < acc { return Int32(k) }
                }
            } else {
                acc += chunk
                if chunk > 0 { for k in i..<end where probs[k] > 0 { last = Int32(k) } }
            }
            i = end
        }
        return last
    }

    /// The largest probability value τ (searched over float bit patterns, exact) with `keep(p, τ)` true; keep must
    /// be monotone (true for small τ). Returns 0 when only τ = 0 qualifies.
    static func threshold(_ p: UnsafePointer<Float>, n: Int, _ keep: (UnsafePointer<Float>, Float) -> Bool) -> Float {
        let pmax = Kernels.max(p, n: n)
        if !(pmax > 0) { return 0 }
        var lo: UInt32 = 0, hi: UInt32 = pmax.bitPattern   // keep(lo) true; find the largest such pattern ≤ hi
        if keep(p, pmax) { return pmax }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if keep(p, Float(bitPattern: mid)) { lo = mid } else { hi = mid }
        }
        return Float(bitPattern: lo)
    }

    static func count(_ p: UnsafePointer<Float>, n: Int, atLeast t: Float) -> Int {
        var c = 0
        for i in 0..<n where p[i] >= t && p[i] > 0 { c += 1 }
        return c
    }

    static func mass(_ p: UnsafePointer<Float>, n: Int, atLeast t: Float) -> Float {
        let n16 = n & ~15
        var acc = SIMD16<Float>()
        let tv = SIMD16<Float>(repeating: t)
        var j = 0
        while j < n16 {
            let v = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self)
            acc += v.replacing(with: 0, where: v .< tv)
            j += 16
        }
        var s = acc.sum()
        while j < n { if p[j] >= t { s += p[j] }; j += 1 }
        return s
    }

    static func zeroBelow(_ p: UnsafeMutablePointer<Float>, n: Int, _ t: Float) {
        for i in 0..<n where p[i] < t { p[i] = 0 }
    }
}
