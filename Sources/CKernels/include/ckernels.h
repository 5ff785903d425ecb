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

#ifdef __cplusplus
}
#endif
#endif
