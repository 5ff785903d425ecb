import CGFNLM
import GFNLM
import Synchronization

// MARK: - Handle table

/// The only global mutable state of the library: the live handles. A handle is the address of a Swift object
/// that the table keeps alive until its *_free. Looking a handle up validates it (kind and liveness), so a stale
/// or foreign handle is an error, not a crash.
final class HandleTable: Sendable {
    /// Handle objects are used from many threads by design; each documents its own thread-safety.
    struct Entry: @unchecked Sendable {
        let object: AnyObject
    }
    private let live = Locked<[UInt: Entry]>([:])

    func register(_ object: AnyObject) -> OpaquePointer {
        let p = Unmanaged.passUnretained(object).toOpaque()
        let entry = Entry(object: object)
        live.withLock { $0[UInt(bitPattern: p)] = entry }
        return OpaquePointer(p)
    }

    func lookup<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type, _ what: String) throws(GFNError) -> T {
        guard let handle else { throw .invalidArgument("\(what) is NULL") }
        let key = UInt(bitPattern: UnsafeRawPointer(handle))
        let object = live.withLock { $0[key] }?.object
        guard let object else { throw .invalidArgument("\(what) is not a live gfnlm handle (already freed?)") }
        guard let typed = object as? T else { throw .invalidArgument("\(what) is a handle of another kind") }
        return typed
    }

    /// Removes a handle; returns the object if it was live and of the given type.
    @discardableResult
    func remove<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type) -> T? {
        guard let handle else { return nil }
        let key = UInt(bitPattern: UnsafeRawPointer(handle))
        let entry: Entry? = live.withLock { table -> Entry? in
            guard let e = table[key], e.object is T else { return nil }
            table[key] = nil
            return e
        }
        return entry?.object as? T
    }

    var count: Int { live.withLock { $0.count } }
}

let handles = HandleTable()

// MARK: - Thread-local last error

enum LastError {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        let copy = strdup(message)
        pthread_setspecific(key, copy)
        free(old)
    }

    static func get() -> UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return emptyCString
    }

    static let empty: StaticString = ""
    static var emptyCString: UnsafePointer<CChar> {
        UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}

/// Runs an exported function's body: a thrown GFNError becomes its status code and the thread's last error.
@inline(__always)
func capi(_ body: () throws(GFNError) -> Void) -> Int32 {
    do {
        try body()
        return GFNStatus.ok.rawValue
    } catch {
        LastError.set(error.message)
        return error.status.rawValue
    }
}

// MARK: - Argument helpers

/// Checks a caller-set struct size against the sizes this library knows (the first version's size up to the
/// current one).
func checkStructSize(_ size: UInt32, min: Int, current: Int, _ what: String) throws(GFNError) {
    let s = Int(size)
    guard s >= min && s <= current else {
        throw .invalidArgument("\(what).size is \(s); this library accepts \(min)…\(current) (set it to sizeof(\(what)))")
    }
}

func requirePointer<T>(_ p: UnsafePointer<T>?, _ what: String) throws(GFNError) -> UnsafePointer<T> {
    guard let p else { throw .invalidArgument("\(what) is NULL") }
    return p
}

func requirePointer<T>(_ p: UnsafeMutablePointer<T>?, _ what: String) throws(GFNError) -> UnsafeMutablePointer<T> {
    guard let p else { throw .invalidArgument("\(what) is NULL") }
    return p
}

/// The memory this process may use: physical memory, or a lower address-space limit (RLIMIT_AS).
var processMemoryLimit: Int {
    let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
    var limit = pages > 0 && pageSize > 0 ? pages.multipliedReportingOverflow(by: pageSize).partialValue : Int.max
    var rl = rlimit()
    if getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &rl) == 0 && rl.rlim_cur < rlim_t(Int.max) {
        limit = min(limit, Int(rl.rlim_cur))
    }
    return limit
}

/// A lower bound of the memory one row (sample, beam, trajectory) needs: its keys and values for `tokens`
/// positions in every layer, and one row of logits.
func rowBytes(_ c: ModelConfig, tokens: Int) -> Int {
    2 * c.nLayer * c.nEmbd * 4 * max(1, min(tokens, c.nPositions)) + 4 * c.vocabSize
}

/// Refuses a request whose memory (a lower-bound estimate) exceeds what the process can have. Swift cannot recover
/// from a failed allocation, so absurd counts (2^31 samples, 2^24 beams) must be turned away before any work.
func checkMemory(rows: Int, bytesPerRow: Int, _ what: String) throws(GFNError) {
    guard rows > 0 else { return }
    let (total, overflow) = rows.multipliedReportingOverflow(by: max(1, bytesPerRow))
    let limit = processMemoryLimit
    guard !overflow && total <= limit else {
        throw GFNError(.outOfMemory, "\(what): \(rows) rows need at least \(overflow ? "more than 2^63" : "\(total)") bytes; "
                       + "this process can use \(limit)")
    }
}

/// A C string argument as a Swift String (NULL → error; invalid UTF-8 → error).
func requireString(_ p: UnsafePointer<CChar>?, _ what: String) throws(GFNError) -> String {
    guard let p else { throw .invalidArgument("\(what) is NULL") }
    guard let s = String(validatingCString: p) else { throw .invalidArgument("\(what) is not valid UTF-8") }
    return s
}

/// Copies a Swift string into a fixed C char array (tuple), NUL-terminated and truncated.
func copyToCharArray<T>(_ s: String, _ array: inout T) {
    withUnsafeMutableBytes(of: &array) { raw in
        let bytes = Array(s.utf8.prefix(raw.count - 1))
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
}

// MARK: - Log callback

/// The process-wide log callback (gfn_log_set), next to the handle table as the library's other piece of global
/// state. nil: the default, which writes warnings and errors to stderr.
final class LogSink: Sendable {
    struct Target: @unchecked Sendable {
        let fn: gfn_log_fn?
        let userData: UnsafeMutableRawPointer?
    }
    private let target = Locked(Target(fn: nil, userData: nil))

    func set(_ fn: gfn_log_fn?, _ userData: UnsafeMutableRawPointer?) {
        target.withLock { $0 = Target(fn: fn, userData: userData) }
    }

    func emit(_ level: gfn_log_level, _ message: String) {
        let t = target.withLock { $0 }
        let raw = Int32(bitPattern: level.rawValue)
        if let fn = t.fn {
            message.withCString { fn(raw, $0, t.userData) }
        } else if raw >= Int32(bitPattern: GFN_LOG_WARN.rawValue) {
            let label = raw >= Int32(bitPattern: GFN_LOG_ERROR.rawValue) ? "error" : "warning"
            let line = Array("gfnlm: \(label): \(message)\n".utf8)
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }   // one write: whole lines
        }
    }
}

let logSink = LogSink()

/// Writes `string` as NUL-terminated UTF-8 into `text` (the C API's text-out convention): its length without the NUL
/// goes to *n_bytes in every case; GFN_ERR_BUFFER_TOO_SMALL when it needs more than capacity − 1 bytes.
func writeText(_ string: String, _ text: UnsafeMutablePointer<CChar>?, _ capacity: Int,
               _ nBytes: UnsafeMutablePointer<Int>?) throws(GFNError) {
    let n = try requirePointer(nBytes, "n_bytes")
    let utf8 = Array(string.utf8)
    n.pointee = utf8.count
    guard utf8.count < capacity else {
        throw GFNError(.bufferTooSmall, "the text is \(utf8.count) bytes plus NUL; capacity is \(capacity)")
    }
    let dst = try requirePointer(text, "text")
    utf8.withUnsafeBufferPointer { src in
        if let b = src.baseAddress { UnsafeMutableRawPointer(dst).copyMemory(from: b, byteCount: utf8.count) }
    }
    dst[utf8.count] = 0
}
