import Dispatch

/// Fork-join parallelism over index ranges (libdispatch). Work items must be independent.
public enum Parallel {
    /// Number of online CPUs.
    public static var cpuCount: Int { Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Calls `body(worker, range)` for contiguous chunks covering 0..<count, on up to `threads` threads;
    /// `worker` is in 0..<threads and distinct for chunks that run at the same time.
    /// Runs inline when there is one thread or one item.
    public static func chunks(_ count: Int, threads: Int, _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
        if count <= 0 { return }
        let t = Swift.max(1, Swift.min(threads, count))
        if t == 1 { body(0, 0..<count); return }
        // concurrentPerform returns only after every iteration ran, so the non-escaping body outlives them all.
        withoutActuallyEscaping(body) { escapable in
            let box = UncheckedSendable(escapable)
            DispatchQueue.concurrentPerform(iterations: t) { w in
                let lo = count * w / t, hi = count * (w + 1) / t
                if lo < hi { box.value(w, lo..<hi) }
            }
        }
    }
}

/// Wraps a value that is only shared in fork-join regions where the caller guarantees no data race.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
