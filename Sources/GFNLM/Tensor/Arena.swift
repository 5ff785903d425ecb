/// A bump allocator for float scratch buffers: one 64-byte aligned block, carved into pieces, reset as a whole.
/// Grows (by replacing its block) only when `reserve` asks for more; pointers handed out before a `reserve` that
/// grows are invalid afterwards. Not thread-safe.
public final class Arena: @unchecked Sendable {
    private var block: FloatStorage
    private var used = 0

    public init(capacity: Int = 0) throws(GFNError) {
        block = try FloatStorage(count: capacity)
    }

    public var capacity: Int { block.count }

    /// Makes sure `count` floats fit from an empty arena (resets it).
    public func reserve(_ count: Int) throws(GFNError) {
        used = 0
        if count > block.count { block = try FloatStorage(count: count) }
    }

    public func reset() { used = 0 }

    /// A piece of `count` floats (64-byte aligned), not zeroed.
    public func take(_ count: Int) throws(GFNError) -> UnsafeMutablePointer<Float> {
        let rounded = (count + 15) & ~15
        guard used + rounded <= block.count else {
            throw .internalError("arena overflow: \(used) + \(rounded) > \(block.count)")
        }
        let p = block.base + used
        used += rounded
        return p
    }

    /// Floats needed by `take` calls of these sizes.
    public static func footprint(_ counts: [Int]) -> Int { counts.reduce(0) { $0 + (($1 + 15) & ~15) } }
}
