/// AdamW hyper-parameters, PyTorch's defaults except the learning rate (torch: 1e-3). Doubles, as PyTorch keeps
/// them as Python floats: derived scalars (1 − β, bias corrections, lr·wd) are formed in double and rounded to
/// float where they meet the fp32 tensors, as torch does.
public struct AdamWHyperparameters: Sendable, Equatable {
    public var lr: Double
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// Decoupled weight decay: p ← p·(1 − lr·wd) before the Adam update (torch.optim.AdamW default 0.01).
    public var weightDecay: Double

    public init(lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8,
                weightDecay: Double = 0.01) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    public func validate() throws(GFNError) {
        guard lr.isFinite && lr >= 0 else { throw .invalidArgument("learning rate must be finite and ≥ 0, got \(lr)") }
        guard beta1 >= 0 && beta1 < 1, beta2 >= 0 && beta2 < 1 else {
            throw .invalidArgument("betas must be in [0, 1), got (\(beta1), \(beta2))")
        }
        guard eps.isFinite && eps >= 0 else { throw .invalidArgument("eps must be finite and ≥ 0, got \(eps)") }
        guard weightDecay.isFinite && weightDecay >= 0 else {
            throw .invalidArgument("weight decay must be finite and ≥ 0, got \(weightDecay)")
        }
    }
}

/// Parameters that share hyper-parameters (PyTorch's param_groups). The GFlowNet's log Z is typically a group of
/// its own: one scalar parameter (shape [1]) with a larger learning rate and no weight decay.
public final class ParameterGroup: @unchecked Sendable {
    public let name: String
    public let parameters: [Parameter]
    public var hyper: AdamWHyperparameters
    /// This group's schedule; nil uses the optimiser's.
    public var schedule: LRSchedule?

    public init(name: String = "default", parameters: [Parameter], hyper: AdamWHyperparameters = .init(),
                schedule: LRSchedule? = nil) {
        self.name = name; self.parameters = parameters; self.hyper = hyper; self.schedule = schedule
    }
}

/// What an optimiser step did.
public struct OptimizerStepResult: Sendable {
    /// False when the step was skipped (a non-finite gradient or loss): parameters, moments and the step count
    /// are then unchanged.
    public let applied: Bool
    /// Optimiser steps applied so far (after this one).
    public let step: Int
    /// Global L2 norm of the (scaled) gradients before clipping; NaN/∞ when a gradient was not finite.
    public let gradNorm: Double
    /// The learning rate each group used (scheduled), in group order.
    public let learningRates: [Double]
    /// Why the step was skipped.
    public let message: String?
}

/// `torch.optim.AdamW` (single-tensor path, amsgrad off): for step t = 1, 2, …
///
///     p ← p·(1 − lr·wd)
///     m ← lerp(m, g, 1 − β1);   v ← v·β2 + (1 − β2)·g·g
///     p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
///
/// with lr = base lr · schedule multiplier(t − 1). Gradients are read from each `Parameter.grad`: they are the
/// **sum** of every backward pass since the last `zeroGrad()` (the reference's main.py accumulation); pass
/// `gradientScale: 1/k` to `step` for the mean over k micro-batches (Lightning's accumulation). Optional global
/// norm clipping (`torch.nn.utils.clip_grad_norm_`: g·min(1, max/(‖g‖ + 1e-6))) over all groups.
public final class AdamW: @unchecked Sendable {
    public let groups: [ParameterGroup]
    public var schedule: LRSchedule
    public var maxGradNorm: Double?
    /// Steps applied so far (the schedule position).
    public private(set) var stepCount: Int = 0
    /// Threads for the element-wise update.
    public var threads: Int
    /// Moments per group, per parameter.
    let m: [[FloatStorage]]
    let v: [[FloatStorage]]

    public init(groups: [ParameterGroup], schedule: LRSchedule = .constant, maxGradNorm: Double? = nil,
                threads: Int = Parallel.cpuCount) throws(GFNError) {
        try schedule.validate()
        var seen = Set<ObjectIdentifier>()
        var names = Set<String>()
        var ms: [[FloatStorage]] = [], vs: [[FloatStorage]] = []
        for g in groups {
            try g.hyper.validate()
            try g.schedule?.validate()
            var gm: [FloatStorage] = [], gv: [FloatStorage] = []
            for p in g.parameters {
                guard seen.insert(ObjectIdentifier(p.value.storage)).inserted else {
                    throw .invalidArgument("parameter \(p.name) appears twice in the optimiser")
                }
                guard names.insert(p.name).inserted else { throw .invalidArgument("two parameters are named \(p.name)") }
                gm.append(try FloatStorage(count: p.count))
                gv.append(try FloatStorage(count: p.count))
            }
            ms.append(gm); vs.append(gv)
        }
        if let c = maxGradNorm, !(c > 0 && c.isFinite) { throw .invalidArgument("max gradient norm must be positive, got \(c)") }
        self.groups = groups
        self.schedule = schedule
        self.maxGradNorm = maxGradNorm
        self.threads = max(1, threads)
        m = ms; v = vs
    }

    /// One group holding `parameters`.
    public convenience init(parameters: [Parameter], hyper: AdamWHyperparameters = .init(),
                            schedule: LRSchedule = .constant, maxGradNorm: Double? = nil,
                            threads: Int = Parallel.cpuCount) throws(GFNError) {
        try self.init(groups: [ParameterGroup(parameters: parameters, hyper: hyper)], schedule: schedule,
                      maxGradNorm: maxGradNorm, threads: threads)
    }

    public var parameters: [Parameter] { groups.flatMap { $0.parameters } }

    /// Zeroes every gradient.
    public func zeroGrad() {
        for p in parameters { p.grad.pointer.update(repeating: 0, count: p.count) }
    }

    /// The learning rate group `g` will use at the next step.
    public func learningRate(group g: Int) -> Double {
        let grp = groups[g]
        return grp.hyper.lr * (grp.schedule ?? schedule).multiplier(step: stepCount)
    }

    /// Global L2 norm of all gradients (double accumulation).
    public func gradientNorm() -> Double {
        var s = 0.0
        for p in parameters { s += Gradients.sumOfSquares(p.grad.pointer, p.count) }
        return s.squareRoot()
    }

    /// Applies one update. Skips it (changing nothing, returning `applied == false`) when `loss` (if given) or any
    /// gradient is NaN or infinite. `gradientScale` multiplies the gradients first (1/k for mean accumulation).
    @discardableResult
    public func step(gradientScale: Float = 1, loss: Double? = nil) -> OptimizerStepResult {
        let lrs = groups.indices.map { learningRate(group: $0) }
        if let loss, !loss.isFinite {
            return OptimizerStepResult(applied: false, step: stepCount, gradNorm: .nan, learningRates: lrs,
                                       message: "loss is \(loss): step skipped, parameters and optimiser state unchanged")
        }
        let norm = gradientNorm() * Double(abs(gradientScale))
        if !norm.isFinite || !gradientScale.isFinite {
            return OptimizerStepResult(applied: false, step: stepCount, gradNorm: norm, learningRates: lrs,
                                       message: "gradient norm is \(norm): step skipped, parameters and optimiser state unchanged")
        }
        var gscale = gradientScale
        if let maxNorm = maxGradNorm {
            let coef = maxNorm / (norm + 1e-6)
            if coef < 1 { gscale = Float(Double(gradientScale) * coef) }
        }
        stepCount += 1
        let t = Double(stepCount)
        for (gi, grp) in groups.enumerated() {
            let h = grp.hyper
            let lr = lrs[gi]
            let bc1 = 1 - pow(h.beta1, t)
            let bc2 = 1 - pow(h.beta2, t)
            let k = AdamWKernel(decay: Float(1 - lr * h.weightDecay), w1: Float(1 - h.beta1), beta2: Float(h.beta2),
                                oneMinusBeta2: Float(1 - h.beta2), bc2Sqrt: Float(bc2.squareRoot()), eps: Float(h.eps),
                                negStep: Float(-(lr / bc1)), gscale: gscale)
            for (pi, p) in grp.parameters.enumerated() {
                let n = p.count
                let pv = p.value.pointer, pg = p.grad.pointer, pm = m[gi][pi].base, ps = v[gi][pi].base
                let chunk = 1 << 16
                let nChunks = (n + chunk - 1) / chunk
                Parallel.chunks(nChunks, threads: n >= 1 << 17 ? threads : 1) { _, range in
                    let lo = range.lowerBound * chunk, hi = min(n, range.upperBound * chunk)
                    k.apply(p: pv + lo, g: pg + lo, m: pm + lo, v: ps + lo, count: hi - lo)
                }
            }
        }
        return OptimizerStepResult(applied: true, step: stepCount, gradNorm: norm, learningRates: lrs, message: nil)
    }

    // MARK: state (checkpoints)

    /// First and second moments of every parameter, by parameter name (shared storage: writing them restores).
    public var moments: [(name: String, m: UnsafeMutableBufferPointer<Float>, v: UnsafeMutableBufferPointer<Float>)] {
        var out: [(String, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>)] = []
        for (gi, grp) in groups.enumerated() {
            for (pi, p) in grp.parameters.enumerated() { out.append((p.name, m[gi][pi].buffer, v[gi][pi].buffer)) }
        }
        return out
    }

    /// Restores the step count (schedule position) from a checkpoint.
    public func restore(stepCount: Int) throws(GFNError) {
        guard stepCount >= 0 else { throw .invalidArgument("negative optimiser step \(stepCount)") }
        self.stepCount = stepCount
    }
}

/// The element-wise AdamW update with PyTorch's operation order (see `AdamW`).
struct AdamWKernel {
    let decay: Float, w1: Float, beta2: Float, oneMinusBeta2: Float, bc2Sqrt: Float, eps: Float, negStep: Float
    /// Multiplies each gradient as it is read (and stores it back scaled, like an in-place `grad.mul_`).
    let gscale: Float

    func apply(p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
               v: UnsafeMutablePointer<Float>, count: Int) {
        typealias V16 = Kernels.V16
        let n16 = count & ~15
        let dv = V16(repeating: decay), b2 = V16(repeating: beta2), omb2 = V16(repeating: oneMinusBeta2)
        let bc = V16(repeating: bc2Sqrt), ev = V16(repeating: eps), sv = V16(repeating: negStep)
        let lerpLow = w1 < 0.5
        let wv = V16(repeating: w1), omw = V16(repeating: 1 - w1)
        let gs = V16(repeating: gscale)
        let scaled = gscale != 1
        var j = 0
        while j < n16 {
            var gj = Kernels.load(g + j)
            if scaled { gj = gj * gs; Kernels.store(gj, g + j) }
            let pj = Kernels.load(p + j) * dv
            let mOld = Kernels.load(m + j)
            // torch lerp: weight < 0.5 ? self + w·(end − self) : end − (end − self)·(1 − w)
            let mj = lerpLow ? mOld + wv * (gj - mOld) : gj - (gj - mOld) * omw
            let vj = Kernels.load(v + j) * b2 + omb2 * gj * gj
            let denom = vj.squareRoot() / bc + ev
            Kernels.store(pj + sv * (mj / denom), p + j)
            Kernels.store(mj, m + j)
            Kernels.store(vj, v + j)
            j += 16
        }
        while j < count {
            var gj = g[j]
            if scaled { gj = gj * gscale; g[j] = gj }
            let pj = p[j] * decay
            let mOld = m[j]
            let mj = lerpLow ? mOld + w1 * (gj - mOld) : gj - (gj - mOld) * (1 - w1)
            let vj = v[j] * beta2 + oneMinusBeta2 * gj * gj
            let denom = vj.squareRoot() / bc2Sqrt + eps
            p[j] = pj + negStep * (mj / denom)
            m[j] = mj
            v[j] = vj
            j += 1
        }
    }
}
