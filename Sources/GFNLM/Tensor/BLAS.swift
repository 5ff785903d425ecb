import COpenBLAS
import CKernels

/// Row-major matrix products through OpenBLAS. Every matrix product in gfnlm goes through here.
public enum BLAS {
    /// C[m,n] = alpha · op(A) · op(B) + beta · C, row-major with leading dimensions.
    /// op(A) is A [m,k] (transA false) or Aᵀ with A stored [k,m]; op(B) is B [k,n] or Bᵀ with B stored [n,k].
    /// Single rows (m == 1) go through sgemv, which is 5–10× faster than sgemm with M = 1 in OpenBLAS 0.3.21.
    @inline(__always)
    public static func gemm(m: Int, n: Int, k: Int,
                            a: UnsafePointer<Float>, lda: Int, transA: Bool = false,
                            b: UnsafePointer<Float>, ldb: Int, transB: Bool = false,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            alpha: Float = 1, beta: Float = 0) {
        if m == 0 || n == 0 { return }
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
        let block = 64
        let blocks = (n + block - 1) / block
        // Below ~1 M multiply-adds per thread the fork-join costs more than it saves.
        let t = m * n * k >= 1 << 20 ? threads : 1
        Parallel.chunks(blocks, threads: t) { _, range in
            let n0 = range.lowerBound * block, n1 = min(n, range.upperBound * block)
            if transB {
                gfk_sgemm_small_nt(m, k, a, lda, b, ldb, c, ldc, n0, n1)
            } else {
                gfk_sgemm_small_nn(m, k, a, lda, b, ldb, c, ldc, n0, n1)
            }
        }
        return true
    }

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
