#ifndef GFNLM_CKERNELS_H
#define GFNLM_CKERNELS_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX-512F, AVX-512VL and AVX512-BF16 (vdpbf16ps), else 0.
int gfk_cpu_has_avx512bf16(void);

/* ---- bf16 weight matrices ------------------------------------------------------------------------------------
 * A logical fp32 matrix W [K, N] (y = x·W) is stored as bf16 in "pair panels":
 *   - columns are grouped in panels of 16 (the last panel is zero-padded), P = ceil(N / 16) panels;
 *   - rows are grouped in pairs (k, k+1); K2 = K rounded up to even (a zero row pads odd K);
 *   - panel p holds K2/2 pair-rows of 16 dwords; dword j of pair-row q is (W[2q, 16p+j], W[2q+1, 16p+j]),
 *     the even row in the low 16 bits. So element W[k, n] is at
 *       p·(K2·16) + (k/2)·32 + (n%16)·2 + (k%2)          (in uint16 units), p = n/16.
 * Panels are streamed sequentially by the kernels. The AVX2 fallback widens a dword's halves with one shift
 * (even row) or one mask (odd row); vdpbf16ps consumes the same (k, k+1) pairs natively.
 * Rounding: fp32 → bf16 round-to-nearest-even; NaN stays NaN (quiet). */

/// uint16 elements of a packed K×N matrix.
size_t gfk_bf16_packed_count(int64_t K, int64_t N);

/// Packs fp32 W into the layout above. `src` is row-major [K, N] with leading dimension ld (transposed = 0),
/// or row-major [N, K] holding Wᵀ (transposed = 1, e.g. a token embedding used as the tied head).
/// Packs only panels p0..<p1 (so callers may split the work across threads).
void gfk_bf16_pack(const float *src, int64_t ld, int transposed, int64_t K, int64_t N,
                   uint16_t *dst, int64_t p0, int64_t p1);

/// Converts panels p0..<p1 back to fp32, row-major [K, 16·(p1−p0)] with leading dimension ld (≥ 16·(p1−p0));
/// padded columns come out as 0.
void gfk_bf16_unpack_panels(const uint16_t *w, int64_t K, int64_t N, int64_t p0, int64_t p1,
                            float *dst, int64_t ld);

/// Column n of W (= row n of Wᵀ, e.g. a token embedding row) as fp32, K values.
void gfk_bf16_column(const uint16_t *w, int64_t K, int64_t N, int64_t n, float *dst);

/// y[M, cols of panels p0..<p1] = x[M, K] · W (columns ≥ N are not written), fp32 accumulation.
/// x row-major with leading dimension ldx, y with ldy. Streams each panel once per call and reuses it for all M
/// rows (row groups of 4). Chooses the AVX512-BF16 kernel when the CPU has it and it is not disabled
/// (gfk_bf16_set_avx512 / env GFNLM_NO_AVX512BF16=1), else the AVX2+FMA kernel.
void gfk_bf16_gemm(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                   int64_t p0, int64_t p1, float *y, int64_t ldy);

/// Which kernel gfk_bf16_gemm uses: 1 = AVX512-BF16 (vdpbf16ps), 0 = AVX2/FMA fallback.
int gfk_bf16_kernel_is_avx512(void);
/// Forces the fallback (enable = 0) or re-enables AVX512-BF16 when the CPU has it (enable = 1). Returns the
/// kernel now in use (as gfk_bf16_kernel_is_avx512). Not thread-safe with concurrent gemm calls.
int gfk_bf16_set_avx512(int enable);

#ifdef __cplusplus
}
#endif
#endif
