/// A value behind a POSIX mutex. Used instead of Synchronization's `Mutex` where threads meet in the library (the
/// handle table, shared caches and pools): its futex-based lock is invisible to ThreadSanitizer, which then reports
/// every access it protects as a race; a pthread mutex is understood, so the TSan build checks these paths for real.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
