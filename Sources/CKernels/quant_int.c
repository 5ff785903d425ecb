// The integer product of block-quantized weights (ckernels.h: gfk_q_gemm_int): activations quantized per row to
// Q8 blocks (gfk_q_quantize_activations), then per block the exact int32 dot product of the 32 pairs, converted and
// scaled by both blocks' scales. This is llama.cpp's Q8_0 / Q4_0 arithmetic on AVX2 (vpsignb moves a sign from one
// operand to the other so that vpmaddubsw, unsigned × signed, can multiply two signed values; no pair of products
// can saturate its int16 because |q| <= 127; 4- and 6-bit values multiply as stored, unsigned, and the offset times
// the activations' sum is subtracted). Every output is computed from its own row and column only, in a
// fixed order, so a row's result does not depend on the number of rows, the column split or the path: the
// product is row-invariant, and the portable version gives the same bits.
#include "quant_internal.h"
#include <math.h>

/* ---- portable kernel -------------------------------------------------------------------------------------- */

// The integer product's arithmetic, which the AVX2 kernel reproduces exactly. Per (row, column): eight lanes a[l];
// per block b in order, lane l takes the exact int32 sum s_l of the four products of elements 4l..4l+3 (what
// vpmaddubsw + vpmaddwd leave in lane l) as a[l] = fma((float)s_l, dx[b]·d[b], a[l]) (|s_l| <= 4·127² is exact in
// fp32); then y = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), the vector kernels' horizontal sum. Nothing
// depends on other rows, so this product is row-invariant too.
static void gemm_int_scalar(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                            const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        for (int64_t m = 0; m < M; m++) {
            const int8_t *xr = qx + m * xb;
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t b = 0; b < nb; b++) {
                float scale = dx[m * nb + b] * half_to_float(scales[n * nb + b]);
                for (int l = 0; l < 8; l++) {
                    int32_t s = 0;
                    for (int i = 4 * l; i < 4 * l + 4; i++)
                        s += (int32_t)xr[b * QK + i] * q_value(format, w, b * QK + i);
                    a[l] = fmaf((float)s, scale, a[l]);
                }
            }
            y[m * ldy + n] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        }
    }
}

/* ---- AVX2 kernels ----------------------------------------------------------------------------------------- */

// The eight int32 lanes of one block's dot product, lane l = Σ of the products of elements 4l..4l+3: |w| · (x with
// w's sign) by vpmaddubsw into sixteen int16 pair sums, then pairs of those by vpmaddwd.
AVX2 INLINE __m256i block_dot(__m256i x, __m256i w) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

enum { INT_FEW_ROWS = 4 };  // up to here, few_rows_int

// y[0..R, 0..C] for R ≤ 4 rows of quantized activations (qx, xb bytes apart; scales dx, nb apart) and C ≤ 4
// columns (weight rows wr, rb bytes apart; fp16 scales sc, converted 8 blocks at a time): per block, each element's
// int32 lanes, converted and multiply-added with the scale dx·dw into its eight fp32 lanes. With `prefetch` (few rows, weights from DRAM) the
// next tile's C weight rows (one contiguous stretch, like this tile's) are prefetched in address order, spread over
// the blocks: the hardware prefetchers follow C interleaved streams poorly (one row ran at about half the speed).
AVX2 INLINE void tile_int(int format, int R, int C, int prefetch, const int8_t *qx, int64_t xb, const float *dx,
                          int64_t nb, const uint8_t *wr, int64_t rb, const uint16_t *sc, float *y, int64_t ldy) {
    __m256 acc[4][4];
    _Alignas(32) float sc8[4][8];  // the fp32 scales of blocks b − b % 8 … + 7 of each column
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    const char *pf = (const char *)(wr + C * rb), *pf_end = (const char *)(wr + 2 * C * rb);
    const int64_t pf_per = prefetch ? (2 * C * rb / 64 + nb - 1) / nb : 0;
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t i = 0; i < pf_per && pf < pf_end; i++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
        if ((b & 7) == 0)  // then broadcast from memory, a load and no arithmetic, as fp32 scales were
            for (int c = 0; c < C; c++) _mm256_store_ps(sc8[c], load_scales8(sc + c * nb + b, nb - b));
        __m256i xv[4], x8[4];
        __m256 dxv[4];
        for (int r = 0; r < R; r++) {
            xv[r] = _mm256_loadu_si256((const __m256i *)(qx + r * xb + b * QK));
            dxv[r] = _mm256_broadcast_ss(dx + r * nb + b);
            // 4- and 6-bit: the stored values q (0..15, 0..63) multiply x as they are (vpmaddubsw takes them as the
            // unsigned operand, no sign moves; pair sums ≤ 2·63·127 fit int16) and offset·Σx of each lane's four
            // elements is subtracted: Σ(q − offset)·x, the same integers.
            if (format != GFK_Q8)
                x8[r] = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv[r]),
                                                            _mm256_set1_epi16(1)), q_offset_shift(format));
        }
        for (int c = 0; c < C; c++) {
            const __m256 dw = _mm256_broadcast_ss(&sc8[c][b & 7]);
            if (format != GFK_Q8) {
                const __m256i q = load_unsigned(format, wr + c * rb, b);
                for (int r = 0; r < R; r++) {
                    const __m256i d = _mm256_sub_epi32(
                        _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv[r]), _mm256_set1_epi16(1)), x8[r]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(dxv[r], dw), acc[r][c]);
                }
            } else {
                const __m256i w = load_block(format, wr + c * rb, b);
                for (int r = 0; r < R; r++) {
                    const __m256 f = _mm256_cvtepi32_ps(block_dot(xv[r], w));
                    acc[r][c] = _mm256_fmadd_ps(f, _mm256_mul_ps(dxv[r], dw), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) y[r * ldy + c] = hsum(acc[r][c]);
}

// Columns in tiles of C (4 for one row, 3 for two, 2 for more), each tile against the rows in groups of up to 4.
AVX2 INLINE void few_rows_int(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K,
                              const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    const int C = M == 1 ? 4 : M == 2 ? 3 : 2;
    for (int64_t n = n0; n < n1;) {
        const int c = n1 - n < C ? 1 : C;  // the last n1 − n < C columns one at a time
        for (int64_t m = 0; m < M; m += 4) {
            const int R = (int)(M - m < 4 ? M - m : 4);
            const int8_t *xm = qx + m * xb;
            const float *dm = dx + m * nb;
            float *ym = y + m * ldy + n;
            const uint8_t *wr = qs + n * rb;
            const uint16_t *sc = scales + n * nb;
#define FEW(R_, C_) tile_int(format, R_, C_, 1, xm, xb, dm, nb, wr, rb, sc, ym, ldy)
            GFK_FEW_TILE_SHAPES(R, c, FEW);
#undef FEW
        }
        n += c;
    }
}

AVX2 INLINE void gemm_int_avx2_fmt(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K,
                                   const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                                   int64_t ldy) {
    if (M <= INT_FEW_ROWS) {
        few_rows_int(format, qx, dx, M, K, qs, scales, n0, n1, y, ldy);
        return;
    }
    // Many rows: columns in groups of 16 whose weight rows stay in cache while every group of 4 rows passes over
    // them in tiles of 4 rows × 2 columns.
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t g = n0; g < n1; g += 16) {
        const int64_t g1 = g + 16 < n1 ? g + 16 : n1;
        for (int64_t m = 0; m < M; m += 4) {
            const int R = (int)(M - m < 4 ? M - m : 4);
            const int8_t *xm = qx + m * xb;
            const float *dm = dx + m * nb;
            for (int64_t n = g; n < g1; n += 2) {
                const int C = g1 - n < 2 ? 1 : 2;
                const uint8_t *wr = qs + n * rb;
                const uint16_t *sc = scales + n * nb;
                float *ym = y + m * ldy + n;
#define MANY(R_, C_) tile_int(format, R_, C_, 0, xm, xb, dm, nb, wr, rb, sc, ym, ldy)
                if (C == 2) {
                    switch (R) { case 1: MANY(1, 2); break; case 2: MANY(2, 2); break; case 3: MANY(3, 2); break; default: MANY(4, 2); }
                } else {
                    switch (R) { case 1: MANY(1, 1); break; case 2: MANY(2, 1); break; case 3: MANY(3, 1); break; default: MANY(4, 1); }
                }
#undef MANY
            }
        }
    }
}

AVX2 static void gemm_int_avx2_q8(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q8, qx, dx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_int_avx2_q4(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q4, qx, dx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_int_avx2_q6(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q6, qx, dx, M, K, qs, sc, n0, n1, y, ldy);
}

void gfk_q_gemm_int(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                    const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        if (format == GFK_Q4) gemm_int_avx2_q4(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
        else if (format == GFK_Q6) gemm_int_avx2_q6(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
        else gemm_int_avx2_q8(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gemm_int_scalar(format, qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    }
}
