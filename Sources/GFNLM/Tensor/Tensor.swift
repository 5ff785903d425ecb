/// A contiguous block of `Float`s: either allocated here (64-byte aligned, zeroed) or borrowed from memory that
/// another object keeps alive (a parsed ONNX proto, an mmapped external-data file).
public final class FloatStorage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int
    /// Non-nil when the memory is borrowed; keeps the real owner alive.
    private let owner: AnyObject?

    /// Allocates `count` floats, 64-byte aligned, zeroed unless `zeroed` is false (for storage the caller
    /// overwrites whole).
    public init(count: Int, zeroed: Bool = true) throws(GFNError) {
        guard count >= 0 else { throw .invalidArgument("negative tensor size \(count)") }
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw GFNError(.outOfMemory, "cannot allocate \(bytes) bytes")
        }
        if zeroed { memset(raw, 0, bytes) }
        self.base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        self.owner = nil
    }

    /// Wraps memory owned by `owner` (which must keep it valid and unchanged while this object lives).
    public init(borrowing base: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.base = base
        self.count = count
        self.owner = owner
    }

    deinit {
        if owner == nil { free(base) }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }

    /// Whether the memory is borrowed from another object (a parsed file, a mapping).
    public var isBorrowed: Bool { owner != nil }
}

/// A dense row-major float32 tensor: a shape and a storage. Copying a `Tensor` shares the storage; use
/// `copy()` for an independent one. Weights loaded from a model are never written to.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: FloatStorage

    public init(shape: [Int], storage: FloatStorage) {
        precondition(shape.reduce(1, *) <= storage.count, "tensor shape exceeds its storage")
        self.shape = shape
        self.storage = storage
    }

    /// A new zero tensor.
    public init(zeros shape: [Int]) throws(GFNError) {
        for d in shape where d < 0 { throw .invalidArgument("negative dimension in \(shape)") }
        self.shape = shape
        self.storage = try FloatStorage(count: shape.reduce(1, *))
    }

    /// A new tensor holding `values`.
    public init(shape: [Int], values: [Float]) throws(GFNError) {
        guard shape.reduce(1, *) == values.count else {
            throw .invalidArgument("shape \(shape) does not hold \(values.count) values")
        }
        try self.init(zeros: shape)
        let p = storage.base
        values.withUnsafeBufferPointer { src in
            if let s = src.baseAddress { p.update(from: s, count: values.count) }
        }
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> { storage.base }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: storage.base, count: count) }

    /// The values as an array (tests and small tensors).
    public var array: [Float] { Array(buffer) }

    /// An independent copy with its own storage.
    public func copy() throws(GFNError) -> Tensor {
        let t = try Tensor(zeros: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    /// The transpose of a 2-D tensor, in new storage.
    public func transposed2D() throws(GFNError) -> Tensor {
        guard rank == 2 else { throw .internalError("transposed2D on rank-\(rank) tensor") }
        let r = shape[0], c = shape[1]
        let t = try Tensor(zeros: [c, r])
        let src = pointer, dst = t.pointer
        for i in 0..<r {
            for j in 0..<c { dst[j * r + i] = src[i * c + j] }
        }
        return t
    }
}
