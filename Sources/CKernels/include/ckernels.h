#ifndef GFNLM_CKERNELS_H
#define GFNLM_CKERNELS_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX-512F, AVX-512VL and AVX512-BF16 (vdpbf16ps), else 0.
int gfk_cpu_has_avx512bf16(void);

/// 1 when the 32-bit words a [rows, cols] (row-major) equal the transpose of b [cols, rows], i.e.
/// a[i*cols + j] == b[j*rows + i] for all i, j; else 0. Bitwise (so -0.0 != 0.0 and NaNs compare by bits).
/// Blocked: each 64-byte line of a and b is read once.
int gfk_equal_transposed_u32(const uint32_t *a, const uint32_t *b, size_t rows, size_t cols);

/// Matrix products with few rows (decoding), columns n0 <= n < n1 only (callers split columns across threads):
///   nn: y[m, n] = sum_k x[m, k] * w[k * ldw + n]   (w stored [K, N]: a linear layer's [in, out] weight)
///   nt: y[m, n] = sum_k x[m, k] * w[n * ldw + k]   (w stored [N, K]: the tied head, rows of the embedding)
/// for 0 <= m < M. y is overwritten (no accumulation). Each weight element is read once per call; meant for
/// M up to ~16 (larger M: use sgemm).
void gfk_sgemm_small_nn(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1);
void gfk_sgemm_small_nt(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1);

#ifdef __cplusplus
}
#endif
#endif
