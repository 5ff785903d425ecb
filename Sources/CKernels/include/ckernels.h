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
/// nn for many rows (batched prefill) on a block of w the caller packed contiguously; every element's arithmetic is
/// that of gfk_sgemm_small_nn, so the two give identical rows.
void gfk_sgemm_rows_nn(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                       size_t ldy, size_t n0, size_t n1);
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

/// As gfk_bf16_gemm; with row_invariant != 0 every row is computed with the same accumulation order whatever M is
/// (the AVX2 kernel otherwise splits the chains of a last group of one or two rows for speed).
void gfk_bf16_gemm_rows(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                        int64_t p0, int64_t p1, float *y, int64_t ldy, int row_invariant);

/// Which kernel gfk_bf16_gemm uses: 1 = AVX512-BF16 (vdpbf16ps), 0 = AVX2/FMA fallback.
int gfk_bf16_kernel_is_avx512(void);
/// Forces the fallback (enable = 0) or re-enables AVX512-BF16 when the CPU has it (enable = 1). Returns the
/// kernel now in use (as gfk_bf16_kernel_is_avx512). Not thread-safe with concurrent gemm calls.
int gfk_bf16_set_avx512(int enable);
/// Test hook for the start-up self-check of the AVX512-BF16 kernel (also the environment variable
/// GFNLM_TEST_BF16_SELFCHECK=pass|mismatch, read at the first detection): 0 = the real CPU and kernel; 1 = pretend the
/// CPU has AVX512-BF16 with a plain-C emulation of its kernel as the candidate (the check passes and products then
/// run the emulation); 2 = as 1 with one output deliberately wrong (the check fails: fallback and a message).
/// Re-runs the detection and returns the kernel now in use (as gfk_bf16_kernel_is_avx512).
int gfk_bf16_test_selfcheck(int mode);
/// After a failed self-check: copies its message to buf and returns 1, once; otherwise returns 0. Runs the
/// detection first if it has not run.
int gfk_bf16_selfcheck_take_message(char *buf, size_t capacity);

/* ---- fp32 products on weights packed once (packedgemm.c) -------------------------------------------------------
 * W [K, N] (y = x·W) is packed once into the layout of OpenBLAS's own sgemm packing, for the core OpenBLAS selected:
 * K is cut into blocks of GFK_PACKED_KC rows; block b (rows k0 = b·KC ..< k0 + kc) starts at float k0·N and holds
 * the N columns in panels of the kernel's unroll width, each panel kc × width, column-fastest. Products then call
 * OpenBLAS's micro-kernel directly: only the activations are packed per call. */
#define GFK_PACKED_KC 384
#define GFK_PACKED_MC 128
/* Floats of slack after packed weights and packed activations: OpenBLAS's own buffers are generous, so a kernel
   reading a vector past the last panel would go unnoticed there; here it stays inside the allocation. */
#define GFK_PACKED_PAD 64

/// 1 when OpenBLAS's kernel and copy routines for the running core were found, their panel layout understood and
/// a ragged test product matched a double-precision one; 0 otherwise (or with GFNLM_NO_PACKED_SGEMM=1). Callers
/// must not use the other gfk_packed_* functions when this is 0.
int gfk_packed_available(void);
/// OpenBLAS's core name in upper case ("ZEN", "HASWELL", "SKYLAKEX", ...), "" when unknown.
const char *gfk_packed_core(void);
/// Floats of a packed K×N matrix (K·N + GFK_PACKED_PAD).
size_t gfk_packed_count(int64_t K, int64_t N);
/// Packs K-blocks b0..<b1 of W: `src` is W row-major [K, N] with leading dimension ld (transposed = 0) or Wᵀ
/// row-major [N, K] (transposed = 1, the tied head). dst: gfk_packed_count floats, 64-byte aligned.
void gfk_packed_pack(const float *src, int64_t ld, int transposed, int64_t K, int64_t N, float *dst, int64_t b0,
                     int64_t b1);
/// Floats of packed activations x [M, K] (M·K + GFK_PACKED_PAD).
size_t gfk_packed_activation_count(int64_t M, int64_t K);
/// Packs x [M, K] (row-major, leading dimension ldx) for gfk_packed_gemm. dst 64-byte aligned.
void gfk_packed_pack_activations(const float *x, int64_t ldx, int64_t M, int64_t K, float *dst);
/// y[M, columns of blocks b0..<b1] = x · W, overwriting y (leading dimension ldy; other columns untouched). Column
/// block b is columns b·GFK_PACKED_MC ..< min(N, (b+1)·GFK_PACKED_MC); callers split blocks across threads.
void gfk_packed_gemm(int64_t M, int64_t K, int64_t N, const float *w, const float *xp, float *y, int64_t ldy,
                     int64_t b0, int64_t b1);

/* ---- block-quantized weight matrices (quant.c) ----------------------------------------------------------------
 * A logical fp32 matrix W [K, N] (y = x·W) is stored column by column: "row" n of the storage is column n of W
 * (= row n of Wᵀ, e.g. token n of a tied embedding), its K values cut into blocks of GFK_QBLOCK (the last block
 * zero-padded), each block with one scale d stored as IEEE fp16 (as llama.cpp's Q8_0 / Q4_0 do):
 *   GFK_Q8: 32 int8 q per block, value q·d, d = max|v| / 127 (q in [-127, 127]);
 *   GFK_Q4: 16 bytes per block, byte j = q[j] | q[j + 16] << 4, value (q − 8)·d, d = (value of largest
 *           magnitude) / −8 (llama.cpp's Q4_0 rounding);
 *   GFK_Q6: 24 bytes per block, q = 0..63, value (q − 32)·d, d = (value of largest magnitude) / −32: bytes 0..15
 *           the low nibbles as GFK_Q4's, bytes 16..23 the high two bits, byte j = h[j] | h[j + 8] << 2 |
 *           h[j + 16] << 4 | h[j + 24] << 6 (the 4-bit format's embedding and head).
 * d is rounded to fp16 first and the values quantized against the rounded d (clamped to the finite fp16 range).
 * qs holds N rows of gfk_q_row_bytes(format, K) bytes; scales holds N rows of gfk_q_blocks(K) fp16 values.
 * Products: gfk_q_gemm_dequant (fp32 activations and the dequantized weights q·d, each element one FMA chain over k
 * in eight lanes whatever M is: few rows stream the storage, many rows share a panel of it widened to fp32 once; the
 * row-invariant product) and gfk_q_gemm_int (activations quantized per row to Q8 blocks first, integer dot products
 * per block; row-invariant as well). */
#define GFK_QBLOCK 32
#define GFK_Q8 0
#define GFK_Q4 1
#define GFK_Q6 2

int64_t gfk_q_blocks(int64_t K);
int64_t gfk_q_row_bytes(int format, int64_t K);
/// Quantizes columns n0..<n1 of W: src is W row-major [K, N] with leading dimension ld (transposed = 0) or Wᵀ
/// row-major [N, K] (transposed = 1).
void gfk_q_pack(int format, const float *src, int64_t ld, int transposed, int64_t K, int64_t N, uint8_t *qs,
                uint16_t *scales, int64_t n0, int64_t n1);
/// Columns n0..<n1 of W as fp32 rows: dst[(n − n0)·ld + k] = W[k, n], k < K.
void gfk_q_unpack_rows(int format, const uint8_t *qs, const uint16_t *scales, int64_t K, int64_t n0, int64_t n1,
                       float *dst, int64_t ld);
/// x [M, K] (leading dimension ldx) to Q8 rows: qx [M, gfk_q_row_bytes(GFK_Q8, K)], dx [M, gfk_q_blocks(K)].
void gfk_q_quantize_activations(const float *x, int64_t ldx, int64_t M, int64_t K, int8_t *qx, float *dx);
/// The integer product for few rows: y[m, n] = Σ_b fl(dx[m,b]·d[n,b])·S_b, summed in order in one fp32 accumulator
/// per output (fma), S_b the exact int32 dot product of block b; 0 <= m < M, n0 <= n < n1; y overwritten. The
/// stored weight rows are streamed (decoding). Bit for bit the arithmetic of gfk_q_gemm_int_panel, so a row's result
/// depends neither on M, nor on how columns are split, nor on which of the two kernels or AVX2 / portable code
/// computed it. xsum from gfk_q_activation_sums is required for GFK_Q4 and GFK_Q6 and ignored for GFK_Q8. No
/// allocation.
void gfk_q_gemm_int(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                    const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy);
/// Per row and block the sum of the Q8 activations qx (xsum [M, gfk_q_blocks(K)]): what gfk_q_gemm_int_panel needs
/// for 4-bit and 6-bit weights.
void gfk_q_activation_sums(const int8_t *qx, int64_t M, int64_t K, int32_t *xsum);
/// The integer product for many rows: y[m, n] = Σ_b fl(dx[m,b]·d[n,b])·S_b, summed in order in one fp32 accumulator
/// per output (fma), S_b the exact int32 dot product of block b; y overwritten. Weights repacked on the fly into
/// panels of 8 interleaved columns (quant_int_panel.c). xsum as for gfk_q_gemm_int, whose arithmetic this is. No
/// allocation: the panel (18 KB) is on the stack.
void gfk_q_gemm_int_panel(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                          const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy);
/// y[m, n] = x[m, :] · W[:, n] with fp32 x, n0 <= n < n1; y overwritten. Row m's result does not depend on M, on
/// how columns are split, or on the AVX2 / portable choice (the same FMAs in the same order; see quant.c). No
/// allocation: the many-row panel (24 KB) and its accumulators (24 KB) are on the stack.
void gfk_q_gemm_dequant(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                        const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy);
/// 1 when the quantized products use the AVX2 kernels (the CPU has AVX2 and FMA and GFNLM_NO_AVX2_QUANT is not
/// 1), 0 for the portable ones. gfk_q_set_avx2(0) forces the portable kernels (tests); returns the kernel in use.
/// Not thread-safe with concurrent products.
int gfk_q_kernel_is_avx2(void);
int gfk_q_set_avx2(int enable);
/// The kernel of the many-row integer products: "AVX512-VNNI" or "AVX-VNNI" where the CPU has it and its start-up
/// self-check passed (quant_int_vnni.c), else "AVX2", or "portable" without AVX2. Runs the check at the first call.
const char *gfk_q_panel_kernel_name(void);
/// Allows (1: detects and checks again) or forbids (0) the VNNI kernels; returns 1 when one is now used. The
/// environment variable GFNLM_NO_VNNI=1 forbids them too. Not thread-safe with concurrent products.
int gfk_q_set_vnni(int enable);
/// Test hook: the candidate for the self-check is the CPU's (0), an exact AVX2 emulation of the VNNI kernel (1;
/// passes), or that emulation with one output changed by one ulp (2; must fail). Runs the check; returns 1 when a
/// VNNI kernel (or its emulation) is now used. GFNLM_TEST_VNNI_SELFCHECK=pass / mismatch sets 1 / 2 before the first
/// use.
int gfk_q_vnni_test(int mode);
/// After a failed self-check: its message (once), 1; otherwise 0. Runs the check if it has not run.
int gfk_q_vnni_selfcheck_take_message(char *buf, size_t capacity);
/// AVX2 with FMA and F16C (what the vector kernels need).
int gfk_cpu_has_avx2(void);
/// CPUID and the OS's saved register states (XCR0): VEX-encoded AVX-VNNI; AVX512-VNNI with AVX512F and AVX512VL.
int gfk_cpu_has_avx_vnni(void);
int gfk_cpu_has_avx512_vnni(void);

#ifdef __cplusplus
}
#endif
#endif
