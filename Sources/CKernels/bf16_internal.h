/* Internal to CKernels (not in include/): the bf16 product's kernels as plain functions, so that the start-up
   self-check (bf16check.c) and the standalone kernel test (Tests/Kernels) can run them side by side. */
#ifndef GFK_BF16_INTERNAL_H
#define GFK_BF16_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* y[M, panels p0..<p1] = x[M, K] · W, W packed as gfk_bf16_pack packs it (see ckernels.h). */
typedef void (*gfk_bf16_kernel_fn)(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                                   int64_t p0, int64_t p1, float *y, int64_t ldy);

/* The AVX512-BF16 kernel (vdpbf16ps; executes only where the CPU has AVX512-F/VL/BF16). */
void gfk_bf16_kernel_avx512(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                            int64_t p0, int64_t p1, float *y, int64_t ldy);
/* The AVX2/FMA kernel (the fallback and the self-check's reference), row-invariant accumulation. */
void gfk_bf16_kernel_avx2(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                          int64_t p0, int64_t p1, float *y, int64_t ldy);
/* Plain C with the AVX512-BF16 kernel's arithmetic: activations rounded to bf16 (nearest even), products and sums
   in fp32. Stands in for that kernel in the self-check's tests on CPUs without it. */
void gfk_bf16_kernel_emulated(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                              int64_t p0, int64_t p1, float *y, int64_t ldy);

/* Compares `candidate` with the AVX2 kernel on a few small products (odd K, K beyond one 256-pair chunk, N not a
   multiple of 16, 1 to 9 rows). They may differ by the candidate's bf16 rounding of the activations: at most
   2^-8 · Σ_k |x_k·w_k| per output (plus fp32 summation slack). Returns 1 when every output is within that bound;
   otherwise 0, with the first offending output described in message. */
int gfk_bf16_selfcheck(gfk_bf16_kernel_fn candidate, char *message, size_t capacity);

/* The self-check's test data: deterministic values in ±[0.05, 1] from a 64-bit LCG state (no zeros or denormals,
   whose handling is not what is checked). */
float gfk_bf16_test_value(uint64_t *state);

#endif
