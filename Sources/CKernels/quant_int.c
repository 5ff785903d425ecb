// The integer product of block-quantized weights for few rows (ckernels.h: gfk_q_gemm_int): activations quantized
// per row to Q8 blocks (gfk_q_quantize_activations), then per block the exact int32 dot product of the 32 pairs,
// converted and scaled by both blocks' scales. The multiplications are llama.cpp's Q8_0 / Q4_0 ones on AVX2
// (vpsignb moves a sign from one operand to the other so that vpmaddubsw, unsigned × signed, can multiply two signed
// values; no pair of products can saturate its int16 because |q| <= 127; 4- and 6-bit values multiply as stored,
// unsigned, and the offset times the activations' block sum is subtracted).
//
// The arithmetic is the panel kernel's (quant_int_panel.c), bit for bit: per output one fp32 accumulator, and per
// block a = fma((float)S_b, fl(dx[b]·d[b]), a) with S_b the exact block sum. The two kernels differ only in how the
// weights travel: this one streams the stored rows (few rows, weights from DRAM: decoding), the panel kernel
// repacks them (many rows). A batch-invariant decoding step can therefore take either, by its number of rows, and a
// row's result still depends on nothing but the row (tested bit for bit across both and AVX2 / portable).
#include "quant_internal.h"
#include <math.h>

/* ---- portable kernel -------------------------------------------------------------------------------------- */

// The arithmetic of both integer kernels, which their AVX2 versions reproduce exactly. Per (row, column): a = +0,
// and for each block b in order a = fma((float)S_b, dx[b]·d[b], a) with S_b the exact int32 dot product of the
// block's 32 pairs (|S_b| ≤ 32·127² is exact in fp32) and dx[b]·d[b] rounded to fp32 first.
void gfk_q_gemm_int_portable(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                             const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        for (int64_t m = 0; m < M; m++) {
            const int8_t *xr = qx + m * xb;
            float a = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < QK; i++) s += (int32_t)xr[b * QK + i] * q_value(format, w, b * QK + i);
                a = fmaf((float)s, dx[m * nb + b] * half_to_float(scales[n * nb + b]), a);
            }
            y[m * ldy + n] = a;
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

// The sums of the eight lanes of a, b, c and d (exact int32), in lanes 0..3.
AVX2 INLINE __m128i sum_lanes4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

// The fp32 scales of blocks b0..b0+7 of the C ≤ 4 columns at sc (nb apart), transposed: t[j] = block b0 + j of
// columns 0..3 (missing columns and blocks 0).
AVX2 INLINE void scales_transposed(const uint16_t *sc, int64_t nb, int64_t b0, int C, float t[8][4]) {
    __m256 v[4];
    for (int c = 0; c < 4; c++) v[c] = c < C ? load_scales8(sc + c * nb + b0, nb - b0) : _mm256_setzero_ps();
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);  // 0 1 of blocks 0 1 | 4 5
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),   // blocks 0 | 4, 1 | 5
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};  // blocks 2 | 6, 3 | 7
    for (int j = 0; j < 4; j++) {
        _mm_store_ps(t[j], _mm256_castps256_ps128(u[j]));
        _mm_store_ps(t[j + 4], _mm256_extractf128_ps(u[j], 1));
    }
}

enum { INT_FEW_ROWS = 4 };  // up to here, few_rows_int

// y[0..R, 0..C] for R ≤ 4 rows of quantized activations (qx, xb bytes apart; scales dx and, for 4- and 6-bit
// weights, block sums xsum, nb apart) and C ≤ 4 columns (weight rows wr, rb bytes apart; fp16 scales sc): per
// block, each (row, column)'s integer lanes, summed across the 4 columns at once into the block sums S_b, then one
// conversion and one FMA per row for all C columns (one fp32 lane per column). With `prefetch` (few rows, weights
// from DRAM) the next tile's C weight rows (one contiguous stretch, like this tile's) are prefetched in address
// order, spread over the blocks: the hardware prefetchers follow C interleaved streams poorly (one row ran at about
// half the speed).
AVX2 INLINE void tile_int(int format, int R, int C, int prefetch, const int8_t *qx, int64_t xb, const float *dx,
                          const int32_t *xsum, int64_t nb, const uint8_t *wr, int64_t rb, const uint16_t *sc,
                          float *y, int64_t ldy) {
    __m128 acc[4];
    _Alignas(16) float dw[8][4];  // the fp32 scales of blocks b − b % 8 … + 7, [block][column]
    for (int r = 0; r < R; r++) acc[r] = _mm_setzero_ps();
    const char *pf = (const char *)(wr + C * rb), *pf_end = (const char *)(wr + 2 * C * rb);
    const int64_t pf_per = prefetch ? (2 * C * rb / 64 + nb - 1) / nb : 0;
    const int32_t offset = format == GFK_Q8 ? 0 : q_offset(format);
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t i = 0; i < pf_per && pf < pf_end; i++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
        if ((b & 7) == 0) scales_transposed(sc, nb, b, C, dw);
        if (format != GFK_Q8 && b + 1 < nb) {
            // Two blocks at once (b even, so b + 1 is in the same 8 scales): lane 0 works on block b, lane 1 on
            // block b + 1. One load and two masks unpack both blocks' 4-bit halves; each half's vpmaddubsw
            // pair sums (≤ 2·63·127) add exactly in int16 before the one vpmaddwd; the 4 columns' lanes reduce to
            // block b's sums in lane 0 and block b + 1's in lane 1. Then the same two FMAs, in block order.
            for (int64_t i = 0; i < pf_per && pf < pf_end; i++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
            __m256i xlo[4], xhi[4], s[4][4];
            for (int r = 0; r < R; r++) {
                const int8_t *x = qx + r * xb + b * QK;
                xlo[r] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(x + QK)), _mm_loadu_si128((const __m128i *)x));
                xhi[r] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(x + QK + QK / 2)),
                                          _mm_loadu_si128((const __m128i *)(x + QK / 2)));
                for (int c = C; c < 4; c++) s[r][c] = _mm256_setzero_si256();
            }
            for (int c = 0; c < C; c++) {
                __m256i lo, hi;
                load_unsigned_pair(format, wr + c * rb, b, &lo, &hi);
                for (int r = 0; r < R; r++) {
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo[r]), _mm256_maddubs_epi16(hi, xhi[r]));
                    s[r][c] = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
                }
            }
            const __m128 dw0 = _mm_load_ps(dw[b & 7]), dw1 = _mm_load_ps(dw[(b + 1) & 7]);
            for (int r = 0; r < R; r++) {
                const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[r][0], s[r][1]),
                                                    _mm256_hadd_epi32(s[r][2], s[r][3]));
                const __m256i off = _mm256_set_m128i(_mm_set1_epi32(offset * xsum[r * nb + b + 1]),
                                                     _mm_set1_epi32(offset * xsum[r * nb + b]));
                const __m256 S = _mm256_cvtepi32_ps(_mm256_sub_epi32(h, off));
                acc[r] = _mm_fmadd_ps(_mm256_castps256_ps128(S), _mm_mul_ps(_mm_set1_ps(dx[r * nb + b]), dw0), acc[r]);
                acc[r] = _mm_fmadd_ps(_mm256_extractf128_ps(S, 1), _mm_mul_ps(_mm_set1_ps(dx[r * nb + b + 1]), dw1),
                                      acc[r]);
            }
            b++;
            continue;
        }
        __m256i xv[4], s[4][4];
        for (int r = 0; r < R; r++) {
            xv[r] = _mm256_loadu_si256((const __m256i *)(qx + r * xb + b * QK));
            for (int c = C; c < 4; c++) s[r][c] = _mm256_setzero_si256();
        }
        for (int c = 0; c < C; c++) {
            if (format == GFK_Q8) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(wr + c * rb + b * QK));
                for (int r = 0; r < R; r++) s[r][c] = block_dot(xv[r], w);
            } else {  // stored values unsigned: vpmaddubsw takes them as they are (pair sums ≤ 2·63·127)
                const __m256i q = load_unsigned(format, wr + c * rb, b);
                for (int r = 0; r < R; r++)
                    s[r][c] = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv[r]), _mm256_set1_epi16(1));
            }
        }
        const __m128 dwb = _mm_load_ps(dw[b & 7]);
        for (int r = 0; r < R; r++) {
            __m128i S = sum_lanes4(s[r][0], s[r][1], s[r][2], s[r][3]);
            if (format != GFK_Q8)  // Σ (q − offset)·x = Σ q·x − offset·Σ x
                S = _mm_sub_epi32(S, _mm_set1_epi32(offset * xsum[r * nb + b]));
            acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(S), _mm_mul_ps(_mm_set1_ps(dx[r * nb + b]), dwb), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        _Alignas(16) float t[4];
        _mm_store_ps(t, acc[r]);
        for (int c = 0; c < C; c++) y[r * ldy + c] = t[c];
    }
}

// Columns in tiles of C (4 for one row, 3 for two, 2 for more), each tile against the rows in groups of up to 4.
AVX2 INLINE void few_rows_int(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                              int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                              int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    const int C = M == 1 ? 4 : M == 2 ? 3 : 2;
    for (int64_t n = n0; n < n1;) {
        const int c = n1 - n < C ? 1 : C;  // the last n1 − n < C columns one at a time
        for (int64_t m = 0; m < M; m += 4) {
            const int R = (int)(M - m < 4 ? M - m : 4);
            const int8_t *xm = qx + m * xb;
            const float *dm = dx + m * nb;
            const int32_t *sm = xsum ? xsum + m * nb : NULL;
            float *ym = y + m * ldy + n;
            const uint8_t *wr = qs + n * rb;
            const uint16_t *sc = scales + n * nb;
#define FEW(R_, C_) tile_int(format, R_, C_, 1, xm, xb, dm, sm, nb, wr, rb, sc, ym, ldy)
            GFK_FEW_TILE_SHAPES(R, c, FEW);
#undef FEW
        }
        n += c;
    }
}

AVX2 INLINE void gemm_int_avx2_fmt(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                   int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                   float *y, int64_t ldy) {
    if (M <= INT_FEW_ROWS) {
        few_rows_int(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
        return;
    }
    // Many rows (the panel kernel is the faster choice; this path serves explicit requests and tests): columns in
    // groups of 16 whose weight rows stay in cache while every group of 4 rows passes over them in tiles of 4 rows
    // × 4 columns.
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t g = n0; g < n1; g += 16) {
        const int64_t g1 = g + 16 < n1 ? g + 16 : n1;
        for (int64_t m = 0; m < M; m += 4) {
            const int R = (int)(M - m < 4 ? M - m : 4);
            const int8_t *xm = qx + m * xb;
            const float *dm = dx + m * nb;
            const int32_t *sm = xsum ? xsum + m * nb : NULL;
            for (int64_t n = g; n < g1; n += 4) {
                const int C = g1 - n < 4 ? (int)(g1 - n) : 4;
                const uint8_t *wr = qs + n * rb;
                const uint16_t *sc = scales + n * nb;
                float *ym = y + m * ldy + n;
#define MANY(R_, C_) tile_int(format, R_, C_, 0, xm, xb, dm, sm, nb, wr, rb, sc, ym, ldy)
#define MANY_C(R_)                                                                                                \
    switch (C) { case 1: MANY(R_, 1); break; case 2: MANY(R_, 2); break; case 3: MANY(R_, 3); break; default: MANY(R_, 4); }
                switch (R) { case 1: MANY_C(1); break; case 2: MANY_C(2); break; case 3: MANY_C(3); break; default: MANY_C(4); }
#undef MANY_C
#undef MANY
            }
        }
    }
}

AVX2 static void gemm_int_avx2_q8(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q8, qx, dx, NULL, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_int_avx2_q4(const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                                  const uint8_t *qs, const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q4, qx, dx, xsum, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_int_avx2_q6(const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                                  const uint8_t *qs, const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q6, qx, dx, xsum, M, K, qs, sc, n0, n1, y, ldy);
}

void gfk_q_gemm_int(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                    const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        if (format == GFK_Q4) gemm_int_avx2_q4(qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
        else if (format == GFK_Q6) gemm_int_avx2_q6(qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
        else gemm_int_avx2_q8(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gfk_q_gemm_int_portable(format, qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    }
}
