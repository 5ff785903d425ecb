import CKernels

/// A logical fp32 matrix W [K, N] (y = x·W) stored block-quantized: int8 (`.q8`, 8.5 bits per weight with the
/// scales), 4-bit (`.q4`, 4.5 bits) or 6-bit (`.q6`, 6.5 bits: the 4-bit format's embedding and head), 32 values of
/// a column per block with one fp16 scale (the layout of `ckernels.h`, quant.c; llama.cpp's Q8_0 / Q4_0 sizes).
/// Columns of W are stored contiguously, so the tied head (W = wteᵀ) keeps one token's embedding per storage row.
/// Immutable after quantizing; the weights it stands for are frozen.
public final class QuantMatrix: @unchecked Sendable {
    public enum Format: Sendable {
        case q8, q4, q6
        var code: Int32 {
            switch self {
            case .q8: return Int32(GFK_Q8)
            case .q4: return Int32(GFK_Q4)
            case .q6: return Int32(GFK_Q6)
            }
        }
    }

    /// K: rows of W (input features).
    public let rows: Int
    /// N: columns of W (output features).
    public let cols: Int
    public let format: Format
    /// The quantized values and scales; shared by the copies `withIntegerProducts` makes.
    private let storage: Storage
    var qs: UnsafeMutablePointer<UInt8> { storage.qs }
    /// fp16 scales, one per block of a column (IEEE binary16 bits).
    var scales: UnsafeMutablePointer<UInt16> { storage.scales }
    let rowBytes: Int
    let blocks: Int
    /// Whether products quantize their activations per row (Q8 blocks of 32) and use integer dot products, as
    /// llama.cpp does (the default; every forward product, see `multiply`). False keeps fp32 activations everywhere
    /// (the only error is then the weights' rounding: exact gradient checks, accuracy comparisons).
    public let integerProducts: Bool

    /// Owns the two aligned allocations.
    private final class Storage {
        let qs: UnsafeMutablePointer<UInt8>
        let scales: UnsafeMutablePointer<UInt16>

        init(valueBytes: Int, scaleCount: Int) throws(GFNError) {
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, valueBytes) == 0, let raw else {
                throw GFNError(.outOfMemory, "cannot allocate \(valueBytes) bytes for a quantized matrix")
            }
            var rawScales: UnsafeMutableRawPointer?
            guard posix_memalign(&rawScales, 64, scaleCount * 2) == 0, let rawScales else {
                free(raw)
                throw GFNError(.outOfMemory, "cannot allocate the scales of a quantized matrix")
            }
            qs = raw.bindMemory(to: UInt8.self, capacity: valueBytes)
            scales = rawScales.bindMemory(to: UInt16.self, capacity: scaleCount)
        }

        deinit { free(qs); free(scales) }
    }

    /// Uninitialized storage (filled by `quantize`, or read from a weight cache by `WeightCache`).
    init(format: Format, rows: Int, cols: Int, integerProducts: Bool) throws(GFNError) {
        guard rows > 0, cols > 0 else { throw .invalidArgument("quantized matrix of shape [\(rows), \(cols)]") }
        self.rows = rows; self.cols = cols; self.format = format; self.integerProducts = integerProducts
        rowBytes = Int(gfk_q_row_bytes(format.code, Int64(rows)))
        blocks = Int(gfk_q_blocks(Int64(rows)))
        storage = try Storage(valueBytes: rowBytes * cols, scaleCount: blocks * cols)
    }

    private init(sharing m: QuantMatrix, integerProducts: Bool) {
        rows = m.rows; cols = m.cols; format = m.format; rowBytes = m.rowBytes; blocks = m.blocks
        storage = m.storage
        self.integerProducts = integerProducts
    }

    /// The same matrix (storage shared, nothing copied) with products that do or do not quantize their activations.
    public func withIntegerProducts(_ on: Bool) -> QuantMatrix {
        on == integerProducts ? self : QuantMatrix(sharing: self, integerProducts: on)
    }

    /// Bytes of storage (quantized values and scales).
    public var bytes: Int { rowBytes * cols + scaleBytes }

    /// Bytes of the scales alone.
    var scaleBytes: Int { blocks * cols * 2 }

    /// Quantizes fp32 values. `src` is W row-major [rows, cols] with leading dimension `ld` (`transposed` false),
    /// or Wᵀ row-major [cols, rows] (`transposed` true).
    public static func quantize(_ src: UnsafePointer<Float>, ld: Int, transposed: Bool, rows: Int, cols: Int,
                                format: Format, threads: Int = 1,
                                integerProducts: Bool = true) throws(GFNError) -> QuantMatrix {
        let m = try QuantMatrix(format: format, rows: rows, cols: cols, integerProducts: integerProducts)
        let t = rows * cols >= 1 << 18 ? threads : 1
        let q = UncheckedSendable(m.qs), s = UncheckedSendable(m.scales)
        Parallel.chunks((cols + 15) / 16, threads: t) { _, range in
            gfk_q_pack(format.code, src, Int64(ld), transposed ? 1 : 0, Int64(rows), Int64(cols), q.value, s.value,
                       Int64(range.lowerBound * 16), Int64(min(cols, range.upperBound * 16)))
        }
        return m
    }

    /// Column n of W (K values) as fp32 (the embedding of token n for the tied embedding).
    public func column(_ n: Int, into dst: UnsafeMutablePointer<Float>) {
        gfk_q_unpack_rows(format.code, qs, scales, Int64(rows), Int64(n), Int64(n + 1), dst, Int64(rows))
    }

    /// W[k, n] as fp32 (tests, slow).
    public func value(_ k: Int, _ n: Int) -> Float {
        var col = [Float](repeating: 0, count: rows)
        col.withUnsafeMutableBufferPointer { column(n, into: $0.baseAddress!) }
        return col[k]
    }

    /// Rows from which `multiply` without `integerProducts` (and without row invariance) widens the weights to fp32
    /// a chunk at a time and calls sgemm: once enough rows share the widening, sgemm beats the fp32-activation
    /// kernel (docs/quantization.md, "Kernels").
    public static let sgemmRowLimit = 64

    /// Rows from which `multiply` with `integerProducts` uses the panel kernel (`gfk_q_gemm_int_panel`: weights
    /// repacked into panels of 8 interleaved columns); below, the per-column integer kernel, which streams the stored
    /// rows (1 thread, 768 × 3072: 3 rows 61 vs 53 GFLOP/s for int8, 77 vs 44 for 4-bit; 2 rows 49 vs 54 and 59 vs
    /// 44). Both compute the same bits, so the choice never affects a result.
    public static let panelRowLimit = 3

    /// y[m, cols] = x[m, rows] · W (overwrites y). With `integerProducts` (the default) the activations are
    /// quantized to int8 per row (Q8 blocks of 32) and multiplied with integer dot products: the panel kernel from
    /// `panelRowLimit` rows, the per-column kernel below. The two share one arithmetic bit for bit, so every product
    /// is row-invariant whatever m is: decoding steps of any batch size and batched prefill give each row the bits
    /// it would get alone. Without `integerProducts`: fp32 activations, through the fp32-activation kernel
    /// (row-invariant), or through sgemm on widened weights for `sgemmRowLimit` rows or more without `rowInvariant`.
    /// `kernel` other than `.automatic` chooses one regardless (tests, benchmarks).
    public func multiply(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                         threads: Int, rowInvariant: Bool = false, kernel: Kernel = .automatic) {
        if m <= 0 { return }
        switch kernel == .automatic ? automaticKernel(m: m, rowInvariant: rowInvariant) : kernel {
        case .integer:
            if multiplyInteger(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, panel: false) { return }
        case .integerPanel:
            if multiplyInteger(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads, panel: true) { return }
        case .widened:
            if multiplyWidened(x: x, ldx: ldx, m: m, y: y, ldy: ldy, threads: threads) { return }
        case .dequantize, .automatic:
            break
        }
        // The fp32-activation kernel: chosen, or the fallback when the scratch memory of the others is missing.
        let N = cols, t = m * rows * N >= 1 << 17 ? max(1, threads) : 1
        let w = UncheckedSendable(UnsafePointer(qs)), d = UncheckedSendable(UnsafePointer(scales))
        let yy = UncheckedSendable(y), fmt = format.code, K = Int64(rows)
        Parallel.chunks((N + 15) / 16, threads: t) { _, range in
            gfk_q_gemm_dequant(fmt, x, Int64(ldx), Int64(m), K, w.value, d.value,
                               Int64(range.lowerBound * 16), Int64(min(N, range.upperBound * 16)), yy.value, Int64(ldy))
        }
    }

    /// `integer`: activations quantized per row, the stored weight rows streamed (few rows: decoding);
    /// `integerPanel`: the same arithmetic with the weights repacked into panels of 8 columns (many rows);
    /// `dequantize`: fp32 activations, the fp32-activation kernel; `widened`: weights widened to fp32 chunks in
    /// memory, then sgemm.
    public enum Kernel: Sendable { case automatic, integer, integerPanel, dequantize, widened }

    /// What `.automatic` runs for m rows.
    func automaticKernel(m: Int, rowInvariant: Bool) -> Kernel {
        if integerProducts { return m < Self.panelRowLimit ? .integer : .integerPanel }
        return !rowInvariant && m >= Self.sgemmRowLimit ? .widened : .dequantize
    }

    /// The integer kernels: x quantized to Q8 rows in pooled scratch (int8 rows, their scales, and for 4- and 6-bit
    /// weights their block sums), then the product. False (nothing done) without scratch memory.
    private func multiplyInteger(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                                 threads: Int, panel: Bool) -> Bool {
        let K = rows, N = cols
        let xb = Int(gfk_q_row_bytes(Int32(GFK_Q8), Int64(K)))
        let sums = format != .q8
        guard let scratch = try? scratchPool.take((m * xb + 3) / 4 + m * blocks * (sums ? 2 : 1)) else { return false }
        defer { scratchPool.give(scratch) }
        // int8 rows first (a multiple of 32 bytes each), then their scales, then the block sums.
        let qx = UnsafeMutableRawPointer(scratch.base).bindMemory(to: Int8.self, capacity: m * xb)
        let dx = scratch.base + (m * xb + 3) / 4
        let xsum = sums ? UnsafeMutableRawPointer(dx + m * blocks).bindMemory(to: Int32.self, capacity: m * blocks) : nil
        // Rows split over the threads when there are enough of them (prefill, training passes).
        let qxw = UncheckedSendable(qx), dxw = UncheckedSendable(dx), xsw = UncheckedSendable(xsum)
        let nb = blocks
        Parallel.chunks(m, threads: m * K >= 1 << 16 ? max(1, threads) : 1) { _, range in
            let r0 = range.lowerBound, rows = Int64(range.count)
            gfk_q_quantize_activations(x + r0 * ldx, Int64(ldx), rows, Int64(K), qxw.value + r0 * xb, dxw.value + r0 * nb)
            if let s = xsw.value { gfk_q_activation_sums(qxw.value + r0 * xb, rows, Int64(K), s + r0 * nb) }
        }
        let t = m * K * N >= 1 << 17 ? max(1, threads) : 1
        let w = UncheckedSendable(UnsafePointer(qs)), d = UncheckedSendable(UnsafePointer(scales))
        let yy = UncheckedSendable(y), fmt = format.code
        let qxs = UncheckedSendable(UnsafePointer(qx)), dxs = UncheckedSendable(UnsafePointer(dx))
        let xs = UncheckedSendable(xsum.map { UnsafePointer($0) })
        Parallel.chunks((N + 15) / 16, threads: t) { _, range in
            let n0 = Int64(range.lowerBound * 16), n1 = Int64(min(N, range.upperBound * 16))
            if panel {
                gfk_q_gemm_int_panel(fmt, qxs.value, dxs.value, xs.value, Int64(m), Int64(K), w.value, d.value, n0, n1,
                                     yy.value, Int64(ldy))
            } else {
                gfk_q_gemm_int(fmt, qxs.value, dxs.value, xs.value, Int64(m), Int64(K), w.value, d.value, n0, n1,
                               yy.value, Int64(ldy))
            }
        }
        return true
    }

    /// y = x·W through sgemm on fp32 chunks of W (pooled scratch). False (nothing done) without scratch memory.
    private func multiplyWidened(x: UnsafePointer<Float>, ldx: Int, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                                 threads: Int) -> Bool {
        let per = max(16, min(cols, (Self.chunkFloats / rows) / 16 * 16))
        guard let scratch = try? scratchPool.take(per * rows) else { return false }
        defer { scratchPool.give(scratch) }
        forEachWidenedChunk(columnsPerChunk: per, scratch: scratch.base, threads: threads) { n0, n1, chunk in
            // y[:, n0..<n1] = x[m, K] · chunk[n1 − n0, K]ᵀ
            BLAS.gemm(m: m, n: n1 - n0, k: rows, a: x, lda: ldx, b: chunk, ldb: rows, transB: true, c: y + n0,
                      ldc: ldy, threads: threads)
        }
        return true
    }

    /// Widens columns n0..<n1 of W to fp32 (row n − n0 of `scratch`, [n1 − n0, K]) for each chunk of
    /// `columnsPerChunk` columns in turn, and hands each chunk to `body(n0, n1, scratch)`.
    private func forEachWidenedChunk(columnsPerChunk per: Int, scratch: UnsafeMutablePointer<Float>, threads: Int,
                                     _ body: (Int, Int, UnsafePointer<Float>) -> Void) {
        let K = rows, N = cols
        let dst = UncheckedSendable(scratch), w = UncheckedSendable(UnsafePointer(qs))
        let d = UncheckedSendable(UnsafePointer(scales)), fmt = format.code
        var n0 = 0
        while n0 < N {
            let n1 = min(N, n0 + per), c0 = n0
            Parallel.chunks(n1 - n0, threads: (n1 - n0) * K >= 1 << 16 ? max(1, threads) : 1) { _, range in
                gfk_q_unpack_rows(fmt, w.value, d.value, Int64(K), Int64(c0 + range.lowerBound),
                                  Int64(c0 + range.upperBound), dst.value + range.lowerBound * K, Int64(K))
            }
            body(n0, n1, scratch)
            n0 = n1
        }
    }

    /// Floats of one fp32 chunk in `multiplyTransposed`.
    static let chunkFloats = 1 << 20

    /// dx[m, rows] (= or +=) dy[m, cols] · Wᵀ: the columns of W are widened to fp32 a chunk at a time into pooled
    /// scratch and multiplied with sgemm (the backward's dX through a frozen quantized weight).
    public func multiplyTransposed(dy: UnsafePointer<Float>, lddy: Int, m: Int, dx: UnsafeMutablePointer<Float>,
                                   lddx: Int, accumulate: Bool, threads: Int) throws(GFNError) {
        if m <= 0 { return }
        let K = rows, N = cols
        let per = max(1, min(N, Self.chunkFloats / K))
        let scratch = try scratchPool.take(per * K)
        defer { scratchPool.give(scratch) }
        forEachWidenedChunk(columnsPerChunk: per, scratch: scratch.base, threads: threads) { n0, n1, chunk in
            // dx[m, K] (+)= dy[m, n0..<n1] · chunk[n1 − n0, K]
            BLAS.gemm(m: m, n: K, k: n1 - n0, a: dy + n0, lda: lddy, b: chunk, ldb: K, c: dx, ldc: lddx,
                      beta: (n0 == 0 && !accumulate) ? 0 : 1, threads: threads)
        }
    }

    /// The whole matrix as fp32, row-major [rows, cols] (a new tensor).
    public func decoded() throws(GFNError) -> Tensor {
        let out = try Tensor(zeros: [rows, cols])
        let col = try FloatStorage(count: rows)
        for n in 0..<cols {
            column(n, into: col.base)
            for k in 0..<rows { out.pointer[k * cols + n] = col.base[k] }
        }
        return out
    }

    /// Whether the products run on the AVX2 kernels (rather than the portable C ones).
    public static var usesAVX2: Bool { gfk_q_kernel_is_avx2() != 0 }

    /// Forces the portable kernels (false) or allows AVX2 where the CPU has it (true); returns whether AVX2 is now
    /// used. Also settable with the environment variable GFNLM_NO_AVX2_QUANT=1. Not for use during products.
    @discardableResult
    public static func allowAVX2(_ allow: Bool) -> Bool { gfk_q_set_avx2(allow ? 1 : 0) != 0 }

    /// The instruction set of the many-row integer products (prefill, scoring, training passes): "AVX512-VNNI" or
    /// "AVX-VNNI" where the CPU has it and the kernel passed its start-up self-check, else "AVX2" (or "portable").
    public static var panelKernel: String { String(cString: gfk_q_panel_kernel_name()) }

    /// Forbids (false) or allows (true: detected and checked again) the VNNI kernels; returns whether one is now
    /// used. Also settable with the environment variable GFNLM_NO_VNNI=1. Not for use during products.
    @discardableResult
    public static func allowVNNI(_ allow: Bool) -> Bool { gfk_q_set_vnni(allow ? 1 : 0) != 0 }

    /// A VNNI kernel runs only after a start-up self-check against the AVX2 kernel (run here if it has not run
    /// yet). After a failed check: its message, returned once; otherwise nil.
    public static func takeKernelSelfCheckFailure() -> String? { takeKernelMessage(gfk_q_vnni_selfcheck_take_message) }
}
