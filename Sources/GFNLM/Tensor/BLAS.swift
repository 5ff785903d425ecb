import COpenBLAS
import CKernels

/// Row-major matrix products through OpenBLAS. Every matrix product in gfnlm goes through here.
public enum BLAS {
    /// C[m,n] = alpha · op(A) · op(B) + beta · C, row-major with leading dimensions.
    /// op(A) is A [m,k] (transA false) or Aᵀ with A stored [k,m]; op(B) is B [k,n] or Bᵀ with B stored [n,k].
    /// Single rows (m == 1) go through sgemv, which is 5–10× faster than sgemm with M = 1 in OpenBLAS 0.3.21.
    ///
    /// OpenBLAS runs single-threaded (see `useOwnThreads`); with `threads` > 1 a large product is cut into column
    /// blocks (or row blocks when it is narrow) that run on gfnlm's own threads. Cutting changes no element's
    /// arithmetic: each element is the same dot product whichever block computes it.
    public static func gemm(m: Int, n: Int, k: Int,
                            a: UnsafePointer<Float>, lda: Int, transA: Bool = false,
                            b: UnsafePointer<Float>, ldb: Int, transB: Bool = false,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            alpha: Float = 1, beta: Float = 0, threads: Int = 1) {
        if m == 0 || n == 0 { return }
        let t = threads > 1 && k > 0 && m * n * k >= Self.parallelWork ? threads : 1
        if t > 1 {
            if n >= 64 * t {
                // Column blocks of a multiple of 16 (whole vector registers in OpenBLAS's kernels).
                let blocks = (n + 15) / 16
                let ua = UncheckedSendable(a), ub = UncheckedSendable(b), uc = UncheckedSendable(c)
                Parallel.chunks(blocks, threads: t) { _, range in
                    let c0 = range.lowerBound * 16, c1 = min(n, range.upperBound * 16)
                    if c1 <= c0 { return }
                    serialGemm(m: m, n: c1 - c0, k: k, a: ua.value, lda: lda, transA: transA,
                               b: transB ? ub.value + c0 * ldb : ub.value + c0, ldb: ldb, transB: transB,
                               c: uc.value + c0, ldc: ldc, alpha: alpha, beta: beta)
                }
                return
            }
            if m >= 8 * t {
                let ua = UncheckedSendable(a), ub = UncheckedSendable(b), uc = UncheckedSendable(c)
                Parallel.chunks(m, threads: t) { _, range in
                    let r0 = range.lowerBound
                    serialGemm(m: range.count, n: n, k: k, a: transA ? ua.value + r0 : ua.value + r0 * lda, lda: lda,
                               transA: transA, b: ub.value, ldb: ldb, transB: transB,
                               c: uc.value + r0 * ldc, ldc: ldc, alpha: alpha, beta: beta)
                }
                return
            }
        }
        serialGemm(m: m, n: n, k: k, a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB,
                   c: c, ldc: ldc, alpha: alpha, beta: beta)
    }

    /// Multiply-adds from which a product is worth splitting across threads.
    static let parallelWork = 1 << 19

    /// gfnlm parallelises its products itself: OpenBLAS's own pool (process-wide, busy-waiting between calls) would
    /// multiply threads when several host threads call in at once, and cannot be bounded per model. Set once, at the
    /// first transformer. A host that uses this OpenBLAS itself sees it single-threaded too (documented in the
    /// header).
    private static let singleThreadedOpenBLAS: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    /// Makes OpenBLAS single-threaded (idempotent).
    public static func useOwnThreads() { _ = singleThreadedOpenBLAS }

    @inline(__always)
    static func serialGemm(m: Int, n: Int, k: Int,
                           a: UnsafePointer<Float>, lda: Int, transA: Bool,
                           b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                           c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
        if k == 0 {
            if beta == 0 {
                for i in 0..<m { (c + i * ldc).initialize(repeating: 0, count: n) }
            } else if beta != 1 {
                for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
            }
            return
        }
        if m == 1 && !transA {
            // c[1,n] = a[1,k] · op(B): y = op(B)ᵀ · x.
            if transB {
                // B stored [n,k]: y = B · x
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), alpha, b, Int32(ldb),
                            a, 1, beta, c, 1)
            } else {
                // B stored [k,n]: y = Bᵀ · x
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(n), alpha, b, Int32(ldb),
                            a, 1, beta, c, 1)
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Rows up to which `gemmFewRows` uses gfnlm's own kernels (decoding batches).
    public static let fewRowsLimit = 16

    /// C[m,n] = A[m,k] · op(B) for 2 ≤ m ≤ `fewRowsLimit` (decoding: one row per sequence), with B stored [k,n]
    /// (transB false, a linear layer's weight) or [n,k] (transB true, the tied head). OpenBLAS's sgemm packs B on
    /// every call and may run such small products on one thread; these kernels stream B once, with the columns split
    /// over `threads` threads. Returns false (and does nothing) outside that range of m: use `gemm` then.
    @discardableResult
    public static func gemmFewRows(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                   b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                   c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) -> Bool {
        guard m >= 2 && m <= fewRowsLimit && n > 0 && k > 0 else { return false }
        gemmRowInvariant(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc,
                         threads: threads)
        return true
    }

    /// C[m,n] = A[m,k] · op(B) for any m ≥ 1 (B stored [k,n], or [n,k] with transB) through the row-streaming
    /// kernels, whose arithmetic for a row does not depend on the other rows or on m: every element is one FMA chain
    /// over k in a fixed order. Decoding batches use it so that a sequence's tokens do not depend on what shares its
    /// batch (`Transformer.rowInvariantDecoding`), and batched prefill so that a prompt's cache does not depend on
    /// the prompts prefilled with it.
    ///
    /// Up to `fewRowsLimit` rows B streams once from memory, its columns split over `threads`. More rows (prefill):
    /// with B stored [k,n], each thread copies a block of `rowsBlockWidth` columns into contiguous scratch and runs
    /// every row through it (`gfk_sgemm_rows_nn`, the same arithmetic); with B stored [n,k] its rows are already
    /// contiguous and all rows meet a block of 64 of them while it is in cache.
    public static func gemmRowInvariant(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                        b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                        c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        guard m > 0, n > 0 else { return }
        let t = m * n * k >= 1 << 18 ? max(1, threads) : 1
        if m > fewRowsLimit && !transB && k > 0 {
            let width = rowsBlockWidth
            Parallel.chunks((n + width - 1) / width, threads: t) { _, range in
                let panel = UnsafeMutablePointer<Float>.allocate(capacity: k * width)
                defer { panel.deallocate() }
                for blk in range {
                    let c0 = blk * width, cw = min(width, n - c0)
                    for kk in 0..<k { (panel + kk * cw).update(from: b + kk * ldb + c0, count: cw) }
                    gfk_sgemm_rows_nn(m, k, a, lda, panel, cw, c + c0, ldc, 0, cw)
                }
            }
            return
        }
        let block = 64
        let blocks = (n + block - 1) / block
        Parallel.chunks(blocks, threads: t) { _, range in
            // Few rows: the thread's whole column range in one call (B streams once). Many rows: 64 columns at a
            // time, so that the rows of B of one block stay in cache while every row of A passes.
            let step = m > fewRowsLimit ? 1 : range.count
            var blk = range.lowerBound
            while blk < range.upperBound {
                let n0 = blk * block, n1 = min(n, min(range.upperBound, blk + step) * block)
                var r0 = 0
                while r0 < m {
                    let rows = min(fewRowsLimit, m - r0)
                    if transB {
                        gfk_sgemm_small_nt(rows, k, a + r0 * lda, lda, b, ldb, c + r0 * ldc, ldc, n0, n1)
                    } else {
                        gfk_sgemm_small_nn(rows, k, a + r0 * lda, lda, b, ldb, c + r0 * ldc, ldc, n0, n1)
                    }
                    r0 += rows
                }
                blk += step
            }
        }
    }

    /// Columns per block of the many-row row-invariant product (measured best of 24..96, see smallgemm.c).
    static let rowsBlockWidth = 48

    /// y[m] = alpha · A[m,n] · x + beta · y (transA false) or alpha · Aᵀ · x + beta · y with y[n] (transA true).
    @inline(__always)
    public static func gemv(m: Int, n: Int, a: UnsafePointer<Float>, lda: Int, transA: Bool,
                            x: UnsafePointer<Float>, incx: Int = 1,
                            y: UnsafeMutablePointer<Float>, incy: Int = 1,
                            alpha: Float = 1, beta: Float = 0) {
        if m == 0 || n == 0 { return }
        cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
                    x, Int32(incx), beta, y, Int32(incy))
    }

    /// OpenBLAS's own thread count (process-wide). Returns the previous value.
    public static func threads() -> Int { Int(openblas_get_num_threads()) }
}
