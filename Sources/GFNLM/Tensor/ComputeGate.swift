#if canImport(Glibc)
import Glibc
#endif

/// One model's compute budget: the model's `n_threads` bound every thread that computes for it, however many host
/// threads call in. A pass of the transformer (forward, head, backward) runs inside `run`, which admits one caller
/// at a time in arrival order (a ticket lock) and lets it use all of the model's threads; OpenBLAS runs
/// single-threaded under gfnlm's own fork-join (`BLAS.gemm(threads:)`). Concurrent callers therefore interleave
/// pass by pass (a token of one request, then a token of the next) instead of multiplying threads: 16 callers on
/// 2 cores get about the throughput of the same requests run one after another, and none starves. Requests that
/// should share passes go through `Batcher`, which merges them into one decode batch.
///
/// Re-entrant on the owning thread (a head product inside a forward the thread already holds). The pool threads of
/// a parallel region never enter the gate: they only run kernels.
public final class ComputeGate: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var turnChanged = pthread_cond_t()
    private var nextTicket: UInt64 = 0
    private var serving: UInt64 = 0
    private var owner: pthread_t?
    private var depth = 0

    public init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&turnChanged, nil)
    }

    deinit {
        pthread_cond_destroy(&turnChanged)
        pthread_mutex_destroy(&mutex)
    }

    /// Runs `body` holding the gate (waiting for the caller's turn first).
    @inline(__always)
    public func run<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        enter()
        defer { leave() }
        return try body()
    }

    private func enter() {
        let me = pthread_self()
        pthread_mutex_lock(&mutex)
        if let owner, pthread_equal(owner, me) != 0 {
            depth += 1
            pthread_mutex_unlock(&mutex)
            return
        }
        let ticket = nextTicket
        nextTicket &+= 1
        while serving != ticket || owner != nil { pthread_cond_wait(&turnChanged, &mutex) }
        owner = me
        depth = 1
        pthread_mutex_unlock(&mutex)
    }

    private func leave() {
        pthread_mutex_lock(&mutex)
        depth -= 1
        if depth == 0 {
            owner = nil
            serving &+= 1
            pthread_cond_broadcast(&turnChanged)
        }
        pthread_mutex_unlock(&mutex)
    }
}
