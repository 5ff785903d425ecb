import CKernels
import Dispatch

/// Fork-join parallelism over index ranges. Work items must be independent.
///
/// Regions run on the process's `WorkerPool` (threads that poll briefly between regions, so the many short regions
/// of one forward pass do not each pay a thread wake-up); when the pool is taken (another thread's region, or a
/// region nested inside one) they run on libdispatch's global queue, as before.
public enum Parallel {
    /// Number of CPUs this process may run on (its affinity mask: taskset, a container's cpuset), else online CPUs.
    public static var cpuCount: Int { Swift.max(1, Int(gfk_cpus_available())) }

    /// Calls `body(worker, range)` for contiguous chunks covering 0..<count, on up to `threads` threads;
    /// `worker` is in 0..<threads and distinct for chunks that run at the same time.
    /// Runs inline when there is one thread or one item.
    public static func chunks(_ count: Int, threads: Int, _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
        if count <= 0 { return }
        let t = Swift.max(1, Swift.min(threads, count))
        if t == 1 { body(0, 0..<count); return }
        // Both paths return only after every chunk ran, so the non-escaping body outlives them all.
        withoutActuallyEscaping(body) { escapable in
            if let pool = WorkerPool.shared, pool.run(count: count, chunks: t, escapable) { return }
            let box = UncheckedSendable(escapable)
            DispatchQueue.concurrentPerform(iterations: t) { w in
                let lo = count * w / t, hi = count * (w + 1) / t
                if lo < hi { box.value(w, lo..<hi) }
            }
        }
    }
}

/// The process's fork-join threads (CKernels' `gfk_pool`): one per CPU besides the caller, created on first use
/// and kept for the life of the process, like OpenBLAS's or libdispatch's own threads. A worker that took part in a
/// region polls for the next one for `spinMicroseconds` before it parks: long enough to bridge the serial steps
/// between a forward pass's matrix products, short enough not to hold a core when the library is idle.
final class WorkerPool: @unchecked Sendable {
    static let spinMicroseconds: Int32 = 100
    /// nil on a one-CPU machine, or if the threads cannot be started (regions then use libdispatch).
    static let shared: WorkerPool? = {
        let workers = Parallel.cpuCount - 1
        guard workers >= 1, let pool = gfk_pool_create(Int32(workers), spinMicroseconds) else { return nil }
        return WorkerPool(pool)
    }()

    private let pool: OpaquePointer

    private init(_ pool: OpaquePointer) { self.pool = pool }

    /// The job as the C callback sees it; only read, from every participant, while `run` waits.
    private struct Job {
        let count: Int
        let chunks: Int
        let body: (Int, Range<Int>) -> Void
    }

    /// Runs `chunks` contiguous chunks of 0..<count, chunk c as `body(participant, range)`; false (nothing ran) if
    /// the pool is busy or has fewer than chunks − 1 workers.
    func run(count: Int, chunks: Int, _ body: @escaping (Int, Range<Int>) -> Void) -> Bool {
        var job = Job(count: count, chunks: chunks, body: body)
        return withUnsafeMutablePointer(to: &job) { jobPointer in
            gfk_pool_run(pool, Int32(chunks), Int32(chunks), { context, chunk, participant in
                guard let job = context?.assumingMemoryBound(to: Job.self).pointee else { return }
                let lo = job.count * Int(chunk) / job.chunks, hi = job.count * (Int(chunk) + 1) / job.chunks
                if lo < hi { job.body(Int(participant), lo..<hi) }
            }, jobPointer) != 0
        }
    }
}

/// Wraps a value that is only shared in fork-join regions where the caller guarantees no data race.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
