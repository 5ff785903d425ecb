import CKernels
import Synchronization

/// How a model's large matrices are stored in memory.
public enum WeightType: Int32, Sendable, CustomStringConvertible {
    /// fp32, borrowed from the file where possible.
    case f32 = 0
    /// bf16 (round-to-nearest-even at load), packed for the bf16 kernels; half the memory of fp32.
    case bf16 = 1
    /// int8, 32 values per block with an fp32 scale (`QuantMatrix`, `.q8`); frozen (LoRA / GFlowNet training only).
    case int8 = 2
    /// 4-bit, 32 values per block with an fp32 scale (`QuantMatrix`, `.q4`); the token embedding / tied head stays
    /// int8. Frozen as int8.
    case q4 = 3

    public var description: String {
        switch self {
        case .f32: return "fp32"
        case .bf16: return "bf16"
        case .int8: return "int8"
        case .q4: return "q4"
        }
    }

    /// Whether the matrices are block-quantized (int8 or 4-bit).
    public var isQuantized: Bool { self == .int8 || self == .q4 }
}

/// A logical fp32 matrix W [K, N] stored in bf16, in the packed "pair panel" layout of `ckernels.h`:
/// panels of 16 columns (the last zero-padded), each holding the rows in (k, k+1) pairs, so that the kernels
/// stream every panel sequentially and widen bf16 to fp32 with one shift or mask. Immutable after packing.
public final class BF16Matrix: @unchecked Sendable {
    /// K: rows of W (input features).
    public let rows: Int
    /// N: columns of W (output features).
    public let cols: Int
    let base: UnsafeMutablePointer<UInt16>
    /// uint16 elements stored (including padding).
    public let storedCount: Int

    /// A zero matrix (64-byte aligned).
    init(rows: Int, cols: Int) throws(GFNError) {
        guard rows > 0, cols > 0 else { throw .invalidArgument("bf16 matrix of shape [\(rows), \(cols)]") }
        self.rows = rows
        self.cols = cols
        storedCount = gfk_bf16_packed_count(Int64(rows), Int64(cols))
        let bytes = storedCount * 2
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw GFNError(.outOfMemory, "cannot allocate \(bytes) bytes for a bf16 matrix")
        }
        base = raw.bindMemory(to: UInt16.self, capacity: storedCount)
    }

    deinit { free(base) }

    var panelCount: Int { (cols + 15) / 16 }

    /// Bytes of bf16 storage.
    public var bytes: Int { storedCount * 2 }

    /// Rounds fp32 values to bf16 (nearest even) and packs them. `src` is W row-major [rows, cols] with leading
    /// dimension `ld` (`transposed` false), or Wᵀ row-major [cols, rows] (`transposed` true).
    public static func pack(_ src: UnsafePointer<Float>, ld: Int, transposed: Bool, rows: Int, cols: Int,
                            threads: Int = 1) throws(GFNError) -> BF16Matrix {
        let m = try BF16Matrix(rows: rows, cols: cols)
        let t = rows * cols >= 1 << 18 ? threads : 1
        let dst = UncheckedSendable(m.base)
        Parallel.chunks(m.panelCount, threads: t) { _, range in
            gfk_bf16_pack(src, Int64(ld), transposed ? 1 : 0, Int64(rows), Int64(cols), dst.value,
                          Int64(range.lowerBound), Int64(range.upperBound))
        }
        return m
    }

    /// W[k, n] as fp32 (tests, slow).
    public func value(_ k: Int, _ n: Int) -> Float {
        let K2 = (rows + 1) & ~1
        let bits = base[(n / 16) * K2 * 16 + (k / 2) * 32 + (n % 16) * 2 + (k % 2)]
        return Float(bitPattern: UInt32(bits) << 16)
    }

    /// Column n of W (K values) as fp32.
    public func column(_ n: Int, into dst: UnsafeMutablePointer<Float>) {
        gfk_bf16_column(base, Int64(rows), Int64(cols), Int64(n), dst)
    }

    /// The whole matrix as fp32, row-major [rows, cols] (a new tensor).
    public func decoded() throws(GFNError) -> Tensor {
        let out = try Tensor(zeros: [rows, cols])
        let P = panelCount, K = rows
        let scratch = try FloatStorage(count: K * 16)
        for p in 0..<P {
            gfk_bf16_unpack_panels(base, Int64(K), Int64(cols), Int64(p), Int64(p + 1), scratch.base, 16)
            let c0 = p * 16, n = min(16, cols - c0)
            for k in 0..<K { (out.pointer + k * cols + c0).update(from: scratch.base + k * 16, count: n) }
        }
        return out
    }

    /// Rows of x up to which `multiply` uses the direct bf16 kernel; larger products convert panels to fp32 and
    /// call sgemm.
    public static let directRowLimit = 48
    /// Floats of one converted chunk in the large-product path (per call, from `scratchPool`).
    static let chunkFloats = 1 << 20

    /// y[m, cols] = x[m, rows] · W (overwrites y). Up to `directRowLimit` rows (and when no scratch memory can be
    /// had) through the direct kernel, columns split across `threads`; larger products through sgemm on
    /// converted chunks.
    public func multiply(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                         threads: Int, rowInvariant: Bool = false) {
        if m <= 0 { return }
        let K = rows, N = cols, P = panelCount
        if m > Self.directRowLimit && !rowInvariant {
            let done = forEachChunk(threads: threads) { c0, cw, width, chunk in
                BLAS.gemm(m: m, n: cw, k: K, a: x, lda: ldx, b: chunk, ldb: width, c: y + c0, ldc: ldy,
                          threads: threads)
            }
            if done { return }
        }
        do {
            let t = m * K * N >= 1 << 17 ? max(1, threads) : 1
            let w = UncheckedSendable(UnsafePointer(base)), yy = UncheckedSendable(y)
            Parallel.chunks(P, threads: t) { _, range in
                gfk_bf16_gemm_rows(x, Int64(ldx), Int64(m), Int64(K), Int64(N), w.value,
                                   Int64(range.lowerBound), Int64(range.upperBound), yy.value, Int64(ldy),
                                   rowInvariant ? 1 : 0)
            }
        }
    }

    /// dx[m, rows] (= or +=) dy[m, cols] · Wᵀ.
    public func multiplyTransposed(dy: UnsafePointer<Float>, lddy: Int, m: Int, dx: UnsafeMutablePointer<Float>,
                                   lddx: Int, accumulate: Bool, threads: Int) throws(GFNError) {
        if m <= 0 { return }
        let K = rows
        var first = true
        let done = forEachChunk(threads: threads) { c0, cw, width, chunk in
            BLAS.gemm(m: m, n: K, k: cw, a: dy + c0, lda: lddy, b: chunk, ldb: width, transB: true,
                      c: dx, ldc: lddx, beta: (first && !accumulate) ? 0 : 1, threads: threads)
            first = false
        }
        if !done {
            throw GFNError(.outOfMemory, "cannot allocate scratch for a bf16 product of \(rows)×\(cols)")
        }
    }

    /// Converts W to fp32 a chunk of panels at a time into pooled scratch ([rows, width], row-major) and calls
    /// `body(firstColumn, validColumns, width, chunk)` for each. False (and nothing done) when no scratch memory
    /// could be allocated.
    private func forEachChunk(threads: Int, _ body: (Int, Int, Int, UnsafePointer<Float>) -> Void) -> Bool {
        let K = rows, N = cols, P = panelCount
        let perChunk = max(1, min(P, Self.chunkFloats / (K * 16)))
        let width = perChunk * 16
        guard let scratch = try? scratchPool.take(K * width) else { return false }
        defer { scratchPool.give(scratch) }
        let dst = UncheckedSendable(scratch.base), w = UncheckedSendable(UnsafePointer(base))
        var p = 0
        while p < P {
            let pe = min(P, p + perChunk)
            let t = K * (pe - p) * 16 >= 1 << 16 ? max(1, threads) : 1
            let p0 = p
            Parallel.chunks(pe - p, threads: t) { _, range in
                gfk_bf16_unpack_panels(w.value, Int64(K), Int64(N), Int64(p0 + range.lowerBound),
                                       Int64(p0 + range.upperBound), dst.value + range.lowerBound * 16, Int64(width))
            }
            let c0 = p * 16
            body(c0, min(N, pe * 16) - c0, width, scratch.base)
            p = pe
        }
        return true
    }

    /// Whether the bf16 products run on AVX512-BF16 (vdpbf16ps) rather than the AVX2/FMA fallback.
    public static var usesAVX512BF16: Bool { gfk_bf16_kernel_is_avx512() != 0 }

    /// Forces the AVX2/FMA fallback (false) or allows AVX512-BF16 where the CPU has it (true); returns whether
    /// AVX512-BF16 is now used. Also settable with the environment variable GFNLM_NO_AVX512BF16=1.
    @discardableResult
    public static func allowAVX512BF16(_ allow: Bool) -> Bool { gfk_bf16_set_avx512(allow ? 1 : 0) != 0 }

    /// The AVX512-BF16 kernel runs only after a start-up self-check against the AVX2 kernel (run here if it has not
    /// run yet). After a failed check: its message, returned once; otherwise nil.
    public static func takeKernelSelfCheckFailure() -> String? { takeKernelMessage(gfk_bf16_selfcheck_take_message) }
}

/// A C dispatcher's pending self-check message (its `*_take_message(buf, capacity)` returns 1 and fills buf once
/// after a failed check), or nil.
func takeKernelMessage(_ take: (UnsafeMutablePointer<CChar>?, Int) -> Int32) -> String? {
    var buffer = [CChar](repeating: 0, count: 700)
    guard take(&buffer, buffer.count) != 0 else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Reusable fp32 scratch blocks for the large bf16 products (so steady-state calls do not allocate).
final class ScratchPool: Sendable {
    private let free = Locked<[FloatStorage]>([])
    static let keep = 8

    func take(_ count: Int) throws(GFNError) -> FloatStorage {
        let found: FloatStorage? = free.withLock { list in
            if let i = list.firstIndex(where: { $0.count >= count }) { return list.remove(at: i) }
            return nil
        }
        if let found { return found }
        return try FloatStorage(count: count)
    }

    func give(_ s: FloatStorage) {
        free.withLock { list in
            if list.count < Self.keep { list.append(s) }
        }
    }
}

let scratchPool = ScratchPool()

/// A weight matrix W [K, N] used as y = x·W: fp32 (a tensor holding W, or Wᵀ for the tied token embedding) or
/// bf16 (`BF16Matrix`). All products go through BLAS or the bf16 kernels.
public struct WeightMatrix: Sendable {
    public enum Storage: Sendable {
        /// fp32: the tensor is W [K, N], or Wᵀ [N, K] when `transposed`.
        case f32(Tensor, transposed: Bool)
        case bf16(BF16Matrix)
        case quant(QuantMatrix)
    }

    public let storage: Storage
    /// K
    public let rows: Int
    /// N
    public let cols: Int
    /// fp32 only: the packed copy, once `packForRowBatches` made one.
    private let packedSlot: PackedSlot?

    /// fp32 W [K, N].
    public init(_ w: Tensor) {
        precondition(w.rank == 2, "WeightMatrix needs a 2-D tensor")
        storage = .f32(w, transposed: false)
        rows = w.shape[0]; cols = w.shape[1]
        packedSlot = PackedSlot()
    }

    /// fp32 W given as Wᵀ [N, K].
    public init(transposedOf wt: Tensor) {
        precondition(wt.rank == 2, "WeightMatrix needs a 2-D tensor")
        storage = .f32(wt, transposed: true)
        rows = wt.shape[1]; cols = wt.shape[0]
        packedSlot = PackedSlot()
    }

    public init(_ m: BF16Matrix) {
        storage = .bf16(m)
        rows = m.rows; cols = m.cols
        packedSlot = nil
    }

    public init(_ m: QuantMatrix) {
        storage = .quant(m)
        rows = m.rows; cols = m.cols
        packedSlot = nil
    }

    /// The packed copy (for fp32 products of at least `PackedMatrix.minRows` rows that ask for it), if one was made.
    public var packed: PackedMatrix? { packedSlot?.matrix.withLock { $0 } }

    /// Makes the packed copy of an fp32 matrix (once; later calls and bf16 matrices do nothing) when OpenBLAS's
    /// kernel is available. Returns the bytes added. Only for matrices that are never written afterwards (a loaded
    /// model's weights, frozen under LoRA): the copy would not follow changes.
    @discardableResult
    public func packForRowBatches(threads: Int = 1) throws(GFNError) -> Int {
        guard let packedSlot, case .f32(let t, let tr) = storage, PackedMatrix.isAvailable else { return 0 }
        return try packedSlot.matrix.withLock { (slot: inout PackedMatrix?) throws(GFNError) -> Int in
            if slot != nil { return 0 }
            let p = try PackedMatrix(t.pointer, ld: t.shape[1], transposed: tr, rows: rows, cols: cols,
                                     threads: threads)
            slot = p
            return p.bytes
        }
    }

    public var type: WeightType {
        switch storage {
        case .f32: return .f32
        case .bf16: return .bf16
        case .quant(let q): return q.format == .q8 ? .int8 : .q4  // .q6 only serves 4-bit models' head
        }
    }

    /// Bytes of weight storage.
    public var bytes: Int {
        switch storage {
        case .f32(let t, _): return t.count * 4
        case .bf16(let m): return m.bytes
        case .quant(let m): return m.bytes
        }
    }

    /// A bf16 copy (round to nearest even) of an fp32 matrix; a bf16 matrix is returned as is.
    public func toBF16(threads: Int = 1) throws(GFNError) -> WeightMatrix {
        switch storage {
        case .bf16: return self
        case .quant: throw .unsupported("a quantized matrix cannot be converted to bf16")
        case .f32(let t, let tr):
            return WeightMatrix(try BF16Matrix.pack(t.pointer, ld: t.shape[1], transposed: tr, rows: rows, cols: cols,
                                                    threads: threads))
        }
    }

    /// This matrix with quantized products that do (`on`) or do not quantize their activations
    /// (`QuantMatrix.integerProducts`; storage shared). Other formats: itself.
    public func withIntegerProducts(_ on: Bool) -> WeightMatrix {
        guard case .quant(let q) = storage, q.integerProducts != on else { return self }
        return WeightMatrix(q.withIntegerProducts(on))
    }

    /// A block-quantized copy of an fp32 matrix; a matrix already in that format is returned as is.
    public func quantized(_ format: QuantMatrix.Format, threads: Int = 1,
                          integerProducts: Bool = true) throws(GFNError) -> WeightMatrix {
        switch storage {
        case .quant(let q) where q.format == format && q.integerProducts == integerProducts: return self
        case .f32(let t, let tr):
            return WeightMatrix(try QuantMatrix.quantize(t.pointer, ld: t.shape[1], transposed: tr, rows: rows,
                                                         cols: cols, format: format, threads: threads,
                                                         integerProducts: integerProducts))
        default: throw .unsupported("only fp32 matrices can be quantized (this one is \(type))")
        }
    }

    /// y[m, N] = x[m, K] · W (overwrites y). With `packed`, products of at least `PackedMatrix.minRows` rows use
    /// the packed copy when there is one (same mathematics, different rounding from cblas_sgemm and the few-row
    /// kernels).
    ///
    /// With `rowInvariant`, every row of y is computed by the same arithmetic whatever m is (the row-streaming
    /// kernels for fp32, the direct kernel for bf16): a sequence's result then does not depend on which other
    /// sequences share its decoding batch (see `Transformer.rowInvariantDecoding`). Quantized weights are
    /// row-invariant whatever m is (see `QuantMatrix.multiply`).
    public func multiply(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                         threads: Int, packed usePacked: Bool = false, rowInvariant: Bool = false) {
        switch storage {
        case .f32(let t, let tr):
            if rowInvariant {
                BLAS.gemmRowInvariant(m: m, n: cols, k: rows, a: x, lda: ldx, b: t.pointer, ldb: tr ? rows : cols,
                                      transB: tr, c: y, ldc: ldy, threads: threads)
                return
            }
            if usePacked, m >= PackedMatrix.minRows, let p = packed,
               p.multiply(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads) { return }
            if BLAS.gemmFewRows(m: m, n: cols, k: rows, a: x, lda: ldx, b: t.pointer, ldb: tr ? rows : cols, transB: tr,
                                c: y, ldc: ldy, threads: threads) { return }
            BLAS.gemm(m: m, n: cols, k: rows, a: x, lda: ldx, b: t.pointer, ldb: tr ? rows : cols, transB: tr,
                      c: y, ldc: ldy, threads: threads)
        case .bf16(let b):
            b.multiply(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, rowInvariant: rowInvariant)
        case .quant(let q):
            q.multiply(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, rowInvariant: rowInvariant)
        }
    }

    /// dx[m, K] (= or +=) dy[m, N] · Wᵀ.
    public func multiplyTransposed(dy: UnsafePointer<Float>, lddy: Int, m: Int, dx: UnsafeMutablePointer<Float>,
                                   lddx: Int, accumulate: Bool, threads: Int) throws(GFNError) {
        switch storage {
        case .f32(let t, let tr):
            BLAS.gemm(m: m, n: rows, k: cols, a: dy, lda: lddy, b: t.pointer, ldb: tr ? rows : cols, transB: !tr,
                      c: dx, ldc: lddx, beta: accumulate ? 1 : 0, threads: threads)
        case .bf16(let b):
            try b.multiplyTransposed(dy: dy, lddy: lddy, m: m, dx: dx, lddx: lddx, accumulate: accumulate,
                                     threads: threads)
        case .quant(let q):
            try q.multiplyTransposed(dy: dy, lddy: lddy, m: m, dx: dx, lddx: lddx, accumulate: accumulate,
                                     threads: threads)
        }
    }

    /// Column n of W (K values) into dst; for the token embedding (W = wteᵀ) this is the embedding of token n.
    public func column(_ n: Int, into dst: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let t, let tr):
            if tr {
                dst.update(from: t.pointer + n * rows, count: rows)
            } else {
                for k in 0..<rows { dst[k] = t.pointer[k * cols + n] }
            }
        case .bf16(let b):
            b.column(n, into: dst)
        case .quant(let q):
            q.column(n, into: dst)
        }
    }

    /// The fp32 tensor as stored (W, or Wᵀ for a transposed matrix). bf16 matrices have none: `.unsupported`.
    public func fp32Tensor(_ what: @autoclosure () -> String) throws(GFNError) -> Tensor {
        switch storage {
        case .f32(let t, _): return t
        case .bf16, .quant:
            throw .unsupported("\(what()) is stored in \(type) (model loaded with weights=\(type)); this operation "
                               + "needs fp32 weights: load the model with fp32 weights")
        }
    }
}
