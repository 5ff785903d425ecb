/// Error kinds. The raw values are the C ABI's `gfn_status` codes (include/gfnlm.h); keep them in sync.
public enum GFNStatus: Int32, Sendable, CaseIterable {
    case ok = 0
    /// A null handle, a wrong struct size, a negative count, an inconsistent combination of parameters.
    case invalidArgument = -1
    /// A file or directory could not be opened, read or written.
    case io = -2
    /// A file is truncated, corrupt or not of the expected format.
    case format = -3
    /// A well-formed input that gfnlm does not support (an unknown architecture, a fused operator, a dtype).
    case unsupported = -4
    /// A token id, length or index outside its valid range (vocabulary, n_positions, buffer bounds).
    case outOfRange = -5
    /// An allocation failed or a declared size exceeds a sane bound.
    case outOfMemory = -6
    /// NaN or infinity where a finite number is required (rewards, losses, gradients).
    case numerical = -7
    /// A host callback reported an error.
    case callback = -8
    /// An object is used in a state that does not allow the call (e.g. an adapter made for another model).
    case state = -9
    /// A bug in gfnlm: please report it with the message.
    case internalError = -10
    /// A callback asked to stop.
    case cancelled = -11
    /// A caller-provided output buffer is too small; the needed size was written to the size out-parameter.
    case bufferTooSmall = -12
    /// A bounded queue is full; try again later (or submit with blocking).
    case busy = -13
}

/// The one error type thrown inside gfnlm. The C boundary turns it into a status code plus `gfn_last_error()`.
public struct GFNError: Error, CustomStringConvertible, Sendable {
    public let status: GFNStatus
    public let message: String

    public init(_ status: GFNStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }

    public static func invalidArgument(_ m: String) -> GFNError { GFNError(.invalidArgument, m) }
    public static func io(_ m: String) -> GFNError { GFNError(.io, m) }
    public static func format(_ m: String) -> GFNError { GFNError(.format, m) }
    public static func unsupported(_ m: String) -> GFNError { GFNError(.unsupported, m) }
    public static func outOfRange(_ m: String) -> GFNError { GFNError(.outOfRange, m) }
    public static func numerical(_ m: String) -> GFNError { GFNError(.numerical, m) }
    public static func state(_ m: String) -> GFNError { GFNError(.state, m) }
    public static func internalError(_ m: String) -> GFNError { GFNError(.internalError, m) }
    public static func cancelled(_ m: String) -> GFNError { GFNError(.cancelled, m) }
}
