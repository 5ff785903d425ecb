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
    /// Waiter with ticket t sleeps on turns[t % slots]: a hand-over wakes the next ticket's slot only, not every
    /// waiter (a broadcast to 16 sleeping callers per pass cost a fifth of the throughput on 2 cores).
    private let turns: UnsafeMutablePointer<pthread_cond_t>
    private static let slots = 64
    private var nextTicket: UInt64 = 0
    private var serving: UInt64 = 0
    private var owner: pthread_t?
    private var depth = 0

    public init() {
        pthread_mutex_init(&mutex, nil)
        turns = .allocate(capacity: Self.slots)
        for i in 0..<Self.slots { pthread_cond_init(turns + i, nil) }
    }

    deinit {
        for i in 0..<Self.slots { pthread_cond_destroy(turns + i) }
        turns.deallocate()
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
        let slot = turns + Int(ticket % UInt64(Self.slots))
        while serving != ticket || owner != nil { pthread_cond_wait(slot, &mutex) }
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
            // Waiters whose tickets share the slot (more than `slots` waiting) re-check and sleep again.
            pthread_cond_broadcast(turns + Int(serving % UInt64(Self.slots)))
        }
        pthread_mutex_unlock(&mutex)
    }
}
