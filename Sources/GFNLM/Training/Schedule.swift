/// Learning-rate schedules as multipliers of a base learning rate, with `torch.optim.lr_scheduler.LambdaLR`'s
/// convention: the optimiser step with index s (0 for the first step) uses lr · λ(s). So a warm-up gives
/// **λ(0) = 0**: the first step moves nothing but the Adam moments (the reference's `min(s/20, 1)` and
/// Hugging Face's `get_linear_schedule_with_warmup` both do this).
public enum LRSchedule: Sendable, Equatable {
    /// λ = 1.
    case constant
    /// λ(s) = min(s / warmup, 1), constant afterwards (main.py, next_sentence: warm-up 20).
    case linearWarmup(warmupSteps: Int)
    /// λ(s) = s / warmup during warm-up, then max(0, (total − s) / (total − warmup)) (HF
    /// `get_linear_schedule_with_warmup`; the rng notebook: 10 / 2560).
    case warmupLinearDecay(warmupSteps: Int, totalSteps: Int)
    /// Warm-up as above, then minRatio + (1 − minRatio)·½(1 + cos(π·progress)) with progress = (s − warmup) /
    /// (total − warmup) clamped to [0, 1] (HF `get_cosine_schedule_with_warmup` for minRatio = 0).
    case cosine(warmupSteps: Int, totalSteps: Int, minRatio: Double = 0)

    /// The multiplier for the optimiser step with index `step` (0-based).
    public func multiplier(step s: Int) -> Double {
        let s = max(0, s)
        func warm(_ w: Int) -> Double? { s < w ? Double(s) / Double(max(1, w)) : nil }
        switch self {
        case .constant:
            return 1
        case .linearWarmup(let w):
            return warm(w) ?? 1
        case .warmupLinearDecay(let w, let total):
            if let v = warm(w) { return v }
            return max(0, Double(total - s) / Double(max(1, total - w)))
        case .cosine(let w, let total, let minRatio):
            if let v = warm(w) { return v }
            let progress = min(1, max(0, Double(s - w) / Double(max(1, total - w))))
            return minRatio + (1 - minRatio) * 0.5 * (1 + cos(Double.pi * progress))
        }
    }

    public func validate() throws(GFNError) {
        switch self {
        case .constant: break
        case .linearWarmup(let w):
            guard w >= 0 else { throw .invalidArgument("warm-up steps must be ≥ 0, got \(w)") }
        case .warmupLinearDecay(let w, let total):
            guard w >= 0, total >= w else { throw .invalidArgument("schedule needs 0 ≤ warm-up (\(w)) ≤ total (\(total))") }
        case .cosine(let w, let total, let m):
            guard w >= 0, total >= w else { throw .invalidArgument("schedule needs 0 ≤ warm-up (\(w)) ≤ total (\(total))") }
            guard m >= 0 && m <= 1 else { throw .invalidArgument("cosine minRatio must be in [0, 1], got \(m)") }
        }
    }
}

/// A linear ramp of any scalar (e.g. the GFlowNet reward temperature): v(s) = start + (end − start)·min(1, s/horizon).
public struct LinearRamp: Sendable, Equatable {
    public var start: Double
    public var end: Double
    public var horizon: Int
    public init(start: Double, end: Double, horizon: Int) { self.start = start; self.end = end; self.horizon = horizon }
    public func value(step s: Int) -> Double {
        horizon <= 0 ? end : start + (end - start) * min(1, Double(max(0, s)) / Double(horizon))
    }
}
