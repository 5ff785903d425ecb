import COpenBLAS

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
