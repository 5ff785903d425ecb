// Block-quantized weight matrices (int8 "Q8", 4-bit "Q4" and 6-bit "Q6", 32 values per block with an fp16 scale):
// packing, unpacking, the kernel choice and the product on fp32 activations (see ckernels.h for the layout; the
// integer products are in quant_int.c and quant_int_panel.c). The AVX2 kernels are chosen at run time; the portable C versions serve CPUs without
// AVX2/FMA and as a check of the vector ones.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant_internal.h"

int64_t gfk_q_blocks(int64_t K) { return (K + QK - 1) / QK; }

int64_t gfk_q_row_bytes(int format, int64_t K) {
    return gfk_q_blocks(K) * q_block_bytes(format);
}

/* ---- quantization of one block ---------------------------------------------------------------------------- */

// Q8 values of a block for the scale d: q = round(v / d) in [-127, 127] (never -128: the AVX2 sign trick needs
// |q| <= 127).
static void q8_values(const float *v, float d, int8_t *q) {
    const float id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK; i++) {
        float r = nearbyintf(v[i] * id);
        if (r > 127) r = 127;
        if (r < -127) r = -127;
        q[i] = (int8_t)r;
    }
}

// The Q8 scale of a block: max|v| / 127.
static float q8_scale(const float *v) {
    float amax = 0;
    for (int i = 0; i < QK; i++) { float a = fabsf(v[i]); if (a > amax) amax = a; }
    return amax / 127.0f;
}

// Activations (fp32 scales): the Q8 block and its scale.
static float quantize_q8(const float *v, int8_t *q) {
    const float d = q8_scale(v);
    q8_values(v, d, q);
    return d;
}

// The stored (fp16) form of the scale d, and in *dr the value it stands for, against which the block is quantized.
static uint16_t stored_scale(float d, float *dr) {
    const uint16_t h = float_to_half(d);
    *dr = half_to_float(h);
    return h;
}

// The value of largest magnitude in a block (the first one, if two have it).
static float largest_value(const float *v) {
    float amax = 0, m = 0;
    for (int i = 0; i < QK; i++) { float a = fabsf(v[i]); if (a > amax) { amax = a; m = v[i]; } }
    return m;
}

// One block of a weight row in `format`, its values at q and its fp16 scale returned.
//  Q8: d = max|v| / 127.
//  Q4 (llama.cpp's Q4_0): d = m / −8 with m the value of largest magnitude (so m maps to −8 exactly), q = round(v / d)
//      + 8 clamped to 0..15, value (q − 8)·d; byte j holds element j (low nibble) and j + 16 (high).
//  Q6: the same with 32 and 0..63; the low nibbles as Q4's, then 8 bytes of the high two bits (ckernels.h).
static uint16_t quantize_weights(int format, const float *v, uint8_t *q) {
    float dr;
    if (format == GFK_Q8) {
        const uint16_t h = stored_scale(q8_scale(v), &dr);
        q8_values(v, dr, (int8_t *)q);
        return h;
    }
    const int offset = q_offset(format), top = 2 * offset - 1;
    const uint16_t h = stored_scale(largest_value(v) / -(float)offset, &dr);
    const float id = dr != 0 ? 1.0f / dr : 0.0f;
    int u[QK];
    for (int i = 0; i < QK; i++) {
        const int t = (int)(v[i] * id + ((float)offset + 0.5f));
        u[i] = t < 0 ? 0 : (t > top ? top : t);
    }
    for (int j = 0; j < QK / 2; j++) q[j] = (uint8_t)((u[j] & 15) | (u[j + QK / 2] & 15) << 4);
    if (format == GFK_Q6)
        for (int j = 0; j < 8; j++)
            q[QK / 2 + j] = (uint8_t)(u[j] >> 4 | (u[j + 8] >> 4) << 2 | (u[j + 16] >> 4) << 4 | (u[j + 24] >> 4) << 6);
    return h;
}

// Block b of a row of K values into blk, zero-padded past K.
static void padded_block(const float *v, int64_t K, int64_t b, float blk[QK]) {
    const int64_t k0 = b * QK, n = K - k0 < QK ? K - k0 : QK;
    memcpy(blk, v + k0, (size_t)n * sizeof(float));
    for (int64_t i = n; i < QK; i++) blk[i] = 0;
}

// One weight row (K values) in `format`, fp16 scales.
static void quantize_row(int format, const float *v, int64_t K, uint8_t *qrow, uint16_t *drow) {
    const int64_t nb = gfk_q_blocks(K), bytes = q_block_bytes(format);
    float blk[QK];
    for (int64_t b = 0; b < nb; b++) {
        padded_block(v, K, b, blk);
        drow[b] = quantize_weights(format, blk, qrow + b * bytes);
    }
}

// One activation row to Q8 blocks with fp32 scales.
static void quantize_activation_row(const float *v, int64_t K, int8_t *qrow, float *drow) {
    float blk[QK];
    for (int64_t b = 0; b < gfk_q_blocks(K); b++) {
        padded_block(v, K, b, blk);
        drow[b] = quantize_q8(blk, qrow + b * QK);
    }
}

void gfk_q_pack(int format, const float *src, int64_t ld, int transposed, int64_t K, int64_t N, uint8_t *qs,
                uint16_t *scales, int64_t n0, int64_t n1) {
    (void)N;  // the columns n0..<n1 are what is packed; N documents the source's shape
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    if (transposed) {
        for (int64_t n = n0; n < n1; n++) quantize_row(format, src + n * ld, K, qs + n * rb, scales + n * nb);
        return;
    }
    // W row-major [K, N]: gather 16 columns at a time (one pass over the rows reads 64 contiguous bytes of each).
    float *tmp = malloc((size_t)(16 * K) * sizeof(float));
    if (!tmp) {
        for (int64_t n = n0; n < n1; n++) {
            float col[QK];
            for (int64_t b = 0; b < nb; b++) {
                int64_t k0 = b * QK;
                for (int i = 0; i < QK; i++) col[i] = k0 + i < K ? src[(k0 + i) * ld + n] : 0;
                scales[n * nb + b] = quantize_weights(format, col, qs + n * rb + b * q_block_bytes(format));
            }
        }
        return;
    }
    for (int64_t c0 = n0; c0 < n1; c0 += 16) {
        int64_t w = n1 - c0 < 16 ? n1 - c0 : 16;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < w; j++) tmp[j * K + k] = src[k * ld + c0 + j];
        for (int64_t j = 0; j < w; j++) quantize_row(format, tmp + j * K, K, qs + (c0 + j) * rb, scales + (c0 + j) * nb);
    }
    free(tmp);
}

// The whole blocks of a weight row widened with AVX2: the same (float)q · d per element as the portable loop.
AVX2 static void unpack_blocks_avx2(int format, const uint8_t *q, const uint16_t *d, int64_t blocks, float *o) {
    for (int64_t b = 0; b < blocks; b++) {
        const __m256i v = load_block(format, q, b);  // 32 signed values
        const __m256 db = _mm256_set1_ps(scale_at(d, b));
        const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int i = 0; i < 4; i++)
            _mm256_storeu_ps(o + b * QK + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i])), db));
    }
}

void gfk_q_unpack_rows(int format, const uint8_t *qs, const uint16_t *scales, int64_t K, int64_t n0, int64_t n1,
                       float *dst, int64_t ld) {
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    const int64_t whole = gfk_q_kernel_is_avx2() ? K / QK : 0;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *q = qs + n * rb;
        const uint16_t *d = scales + n * nb;
        float *o = dst + (n - n0) * ld;
        if (whole > 0) unpack_blocks_avx2(format, q, d, whole, o);
        for (int64_t k = whole * QK; k < K; k++) o[k] = (float)q_value(format, q, k) * half_to_float(d[k / QK]);
    }
}

// quantize_q8 for one whole block with AVX2: the same operations in lanes (max|v| is exact in any order; d, 1/d and
// v·(1/d) are the same single roundings; vroundps in nearest mode is nearbyintf), so the same bits.
AVX2 static float quantize_q8_avx2(const float *v, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 x[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        x[i] = _mm256_loadu_ps(v + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, x[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h), d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    __m256i r[4];
    for (int i = 0; i < 4; i++) {
        __m256 t = _mm256_round_ps(_mm256_mul_ps(x[i], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r[i] = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(t, hi), lo));
    }
    // packs work per 128-bit lane: 0-3 8-11 | 4-7 12-15 → bytes in the order 0,4,1,5,2,6,3,7 of dwords; restore.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
}

void gfk_q_quantize_activations(const float *x, int64_t ldx, int64_t M, int64_t K, int8_t *qx, float *dx) {
    int64_t rb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    if (!gfk_q_kernel_is_avx2() || K < QK) {
        for (int64_t m = 0; m < M; m++) quantize_activation_row(x + m * ldx, K, qx + m * rb, dx + m * nb);
        return;
    }
    const int64_t whole = K / QK;
    for (int64_t m = 0; m < M; m++) {
        const float *v = x + m * ldx;
        int8_t *q = qx + m * rb;
        float *d = dx + m * nb;
        for (int64_t b = 0; b < whole; b++) d[b] = quantize_q8_avx2(v + b * QK, q + b * QK);
        if (whole < nb) {  // the short last block, zero-padded
            float blk[QK] = {0};
            memcpy(blk, v + whole * QK, (size_t)(K - whole * QK) * sizeof(float));
            d[whole] = quantize_q8(blk, q + whole * QK);
        }
    }
}

/* ---- kernel choice ---------------------------------------------------------------------------------------- */

static int simd_state = -1; // -1: not decided yet

int gfk_cpu_has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

int gfk_q_kernel_is_avx2(void) {
    if (simd_state < 0) {
        const char *e = getenv("GFNLM_NO_AVX2_QUANT");
        simd_state = gfk_cpu_has_avx2() && !(e && e[0] == '1');
    }
    return simd_state;
}

int gfk_q_set_avx2(int enable) {
    simd_state = enable && gfk_cpu_has_avx2();
    return simd_state;
}

/* ---- portable kernels ------------------------------------------------------------------------------------- */

// The row-invariant product's arithmetic, which every implementation of gfk_q_gemm_dequant reproduces exactly. Per
// (row, column): eight lanes a[l], and for k = 0, 1, …, K−1 in order a[k mod 8] = fma(x[k], w[k], a[k mod 8]) with
// w[k] = q[k]·d of k's block rounded to fp32 (the weight as the dequantized matrix holds it), from a = +0; then
// y = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)). fmaf is one instruction on the x86-64-v3 baseline and
// rounds once, like the vector FMA, and the final sum is the vector kernels' horizontal sum, so the portable and
// the AVX2 results are equal bit for bit.
static void gemm_dequant_scalar(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        for (int64_t m = 0; m < M; m++) {
            const float *xr = x + m * ldx;
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t k = 0; k < K; k++)
                a[k % 8] = fmaf(xr[k], (float)q_value(format, w, k) * half_to_float(scales[n * nb + k / QK]), a[k % 8]);
            y[m * ldy + n] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        }
    }
}

/* ---- AVX2 kernels ----------------------------------------------------------------------------------------- */
// ---- the row-invariant product on fp32 activations (gfk_q_gemm_dequant) ----
// Every element is an FMA chain over k in eight lanes (the scalar definition above), computed two ways:
//  - few rows (≤ RP_FEW_ROWS): straight from the quantized storage, each weight row streaming once in address order
//    (the pattern DRAM serves best), 8 weights at a time widened in registers (vpmovsxbd, vcvtdq2ps, × d) and
//    multiplied into register tiles of up to 4 rows × 4 columns;
//  - many rows: a panel of RP_COLS columns × RP_KC values of k is widened ONCE into fp32 scratch on the stack (the
//    dequantized weights, in the storage's order), then every row of a block of RP_RB rows runs through it with
//    tiles of 4 rows × 3 columns (12 accumulators; per 8 k, 4 loads of x and 3 of the panel feed 12 FMAs). The
//    accumulators are parked in a small stack buffer between chunks of k, which is exact.
// Both give each element the same operations in the same order, so a row's result depends neither on M, nor on the
// split of columns over threads, nor on which path computed it. The last 8 values of k are read with a mask when K
// is not a multiple of 8 (x past K reads as 0, the weights there are stored as 0, fma(0, 0, a) = a).
enum { RP_FEW_ROWS = 8, RP_COLS = 24, RP_KC = 256, RP_RB = 32 };

AVX2 INLINE __m256i k_mask(int64_t n) {  // lanes below n (n in 1..8)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The 8 x values at k (a full 8, or `left` < 8 of them with the rest 0).
AVX2 INLINE __m256 load_x(const float *p, int64_t left) {
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k_mask(left));
}

// The four groups of 8 weights of block b of a weight row, widened and scaled by d: w[j] = q[8j..8j+8]·d.
AVX2 INLINE void widen_block(int format, const uint8_t *row, int64_t b, __m256 d, __m256 w[4]) {
    if (format != GFK_Q8) {
        const __m256i v = load_block(format, row, b);
        const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        w[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d);
        w[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d);
        w[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d);
        w[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d);
        return;
    }
    const uint8_t *q = row + b * QK;
    for (int j = 0; j < 4; j++)
        w[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * j)))), d);
}

// The 8 weights 8j..8j+8 of a block, widened and scaled by d, from the block's int8 values in q8 (Q8) or in lo / hi
// (Q4 / Q6: already unpacked, lo = values 0..15 and hi = 16..31, offset removed).
AVX2 INLINE __m256 widen8_scaled(int format, const uint8_t *q8, __m128i lo, __m128i hi, int j, __m256 d) {
    __m128i q;
    if (format != GFK_Q8) {
        q = j < 2 ? lo : hi;
        if (j & 1) q = _mm_srli_si128(q, 8);
    } else {
        q = _mm_loadl_epi64((const __m128i *)(q8 + 8 * j));
    }
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

// Few rows: y[0..R, n..n+C] for rows x (ldx), weight rows wr (rb bytes apart), straight from storage. Per block and
// column the weights are widened 8 at a time (q4: the block's nibbles unpacked once) and multiplied into the R
// rows' accumulators; each accumulator still sees k in order.
AVX2 INLINE void few_tile(int format, int R, int C, const float *x, int64_t ldx, int64_t K, int64_t nb,
                          const uint8_t *wr, int64_t rb, const uint16_t *sc, float *y, int64_t ldy) {
    __m256 a[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) a[r][c] = _mm256_setzero_ps();
    const int64_t full = K / QK;
    // The tile's C weight rows are one contiguous stretch, and so are the next tile's: prefetch that one in address
    // order, spread over the blocks (the hardware prefetchers follow C interleaved streams poorly: one row from
    // DRAM ran at half the speed without this).
    const char *pf = (const char *)(wr + C * rb), *pf_end = (const char *)(wr + 2 * C * rb);
    const int64_t pf_per = (2 * C * rb / 64 + nb - 1) / nb;
    for (int64_t b = 0; b < nb; b++) {
        const int steps = b < full ? 4 : (int)((K - b * QK + 7) / 8);
        for (int64_t i = 0; i < pf_per && pf < pf_end; i++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
        for (int c = 0; c < C; c++) {
            const __m256 d = _mm256_set1_ps(scale_at(sc, c * nb + b));
            const uint8_t *q = wr + c * rb + b * QK;  // Q8 only
            __m128i lo = _mm_setzero_si128(), hi = lo;
            if (format != GFK_Q8) {
                const __m256i v = load_block(format, wr + c * rb, b);
                lo = _mm256_castsi256_si128(v);
                hi = _mm256_extracti128_si256(v, 1);
            }
            if (b < full) {
                for (int j = 0; j < 4; j++) {
                    __m256 w = widen8_scaled(format, q, lo, hi, j, d);
                    for (int r = 0; r < R; r++)
                        a[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + b * QK + 8 * j), w, a[r][c]);
                }
            } else {
                for (int j = 0; j < steps; j++) {
                    __m256 w = widen8_scaled(format, q, lo, hi, j, d);
                    const int64_t k = b * QK + 8 * j;
                    for (int r = 0; r < R; r++) a[r][c] = _mm256_fmadd_ps(load_x(x + r * ldx + k, K - k), w, a[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) y[r * ldy + c] = hsum(a[r][c]);
}

// Rows in groups of 4 (then the last 1–3) against each tile of columns in turn: the tile's weight rows stay in L1
// while the row groups pass over them.
AVX2 INLINE void few_rows(int format, int64_t M, const float *x, int64_t ldx, int64_t K, const uint8_t *qs,
                          const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    const int C = M == 1 ? 4 : M == 2 ? 3 : 2;
    for (int64_t n = n0; n < n1; n += C) {
        const int c = n1 - n < C ? 1 : C;  // the last n1 − n < C columns one at a time
        for (int64_t m = 0; m < M; m += 4) {
            const int R = (int)(M - m < 4 ? M - m : 4);
            const float *xm = x + m * ldx;
            float *ym = y + m * ldy + n;
            const uint8_t *wr = qs + n * rb;
            const uint16_t *sc = scales + n * nb;
#define FEW(R_, C_) few_tile(format, R_, C_, xm, ldx, K, nb, wr, rb, sc, ym, ldy)
            GFK_FEW_TILE_SHAPES(R, c, FEW);
#undef FEW
        }
        if (c == 1) n -= C - 1;  // advanced by one column only
    }
}

// Many rows: R rows × C panel columns over the chunk's k0..k1 (k1 − k0 ≤ RP_KC), accumulators parked in
// park[r·RP_COLS + c] (8 floats each) between chunks; `first`: start from 0; `last`: sum the lanes into y.
AVX2 INLINE void many_tile(int R, int C, const float *x, int64_t ldx, int64_t k0, int64_t k1, const float *panel,
                           float *park, float *y, int64_t ldy, int first, int last) {
    __m256 a[4][3];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            a[r][c] = first ? _mm256_setzero_ps() : _mm256_load_ps(park + (r * RP_COLS + c) * 8);
    const float *xk = x + k0;
    const int n8 = (int)((k1 - k0) / 8), left = (int)((k1 - k0) % 8);
    for (int s = 0; s < n8; s++) {
        __m256 w[3];
        for (int c = 0; c < C; c++) w[c] = _mm256_load_ps(panel + c * RP_KC + 8 * s);
        for (int r = 0; r < R; r++) {
            __m256 xv = _mm256_loadu_ps(xk + r * ldx + 8 * s);
            for (int c = 0; c < C; c++) a[r][c] = _mm256_fmadd_ps(xv, w[c], a[r][c]);
        }
    }
    if (left) {
        __m256 w[3];
        for (int c = 0; c < C; c++) w[c] = _mm256_load_ps(panel + c * RP_KC + 8 * n8);
        for (int r = 0; r < R; r++) {
            __m256 xv = _mm256_maskload_ps(xk + r * ldx + 8 * n8, k_mask(left));
            for (int c = 0; c < C; c++) a[r][c] = _mm256_fmadd_ps(xv, w[c], a[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            if (last) y[r * ldy + c] = hsum(a[r][c]);
            else _mm256_store_ps(park + (r * RP_COLS + c) * 8, a[r][c]);
        }
}

#define MANY_TILE_C(R, C, ...)                                                                                    \
    switch (C) {                                                                                                  \
    case 3: many_tile(R, 3, __VA_ARGS__); break;                                                                  \
    case 2: many_tile(R, 2, __VA_ARGS__); break;                                                                  \
    default: many_tile(R, 1, __VA_ARGS__); break;                                                                 \
    }

AVX2 INLINE void many_rows(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                           const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    float panel[RP_COLS * RP_KC] __attribute__((aligned(64)));
    float park[RP_RB * RP_COLS * 8] __attribute__((aligned(64)));
    for (int64_t m0 = 0; m0 < M; m0 += RP_RB) {
        const int64_t mr = M - m0 < RP_RB ? M - m0 : RP_RB;
        for (int64_t c0 = n0; c0 < n1; c0 += RP_COLS) {
            const int w = (int)(n1 - c0 < RP_COLS ? n1 - c0 : RP_COLS);
            for (int64_t k0 = 0; k0 < K; k0 += RP_KC) {
                const int64_t k1 = K - k0 < RP_KC ? K : k0 + RP_KC;
                for (int c = 0; c < w; c++) {  // widen the chunk: panel[c][k − k0] = W[k, c0 + c]
                    const uint8_t *wr = qs + (c0 + c) * rb;
                    for (int64_t b = k0 / QK; b * QK < k1; b++) {
                        __m256 v[4];
                        widen_block(format, wr, b, _mm256_set1_ps(scale_at(scales, (c0 + c) * nb + b)), v);
                        for (int j = 0; j < 4; j++) _mm256_store_ps(panel + c * RP_KC + (b * QK - k0) + 8 * j, v[j]);
                    }
                }
                const int first = k0 == 0, last = k1 == K;
                for (int64_t m = 0; m < mr; m += 4) {
                    const int R = (int)(mr - m < 4 ? mr - m : 4);
                    const float *xm = x + (m0 + m) * ldx;
                    float *pk = park + m * RP_COLS * 8, *ym = y + (m0 + m) * ldy + c0;
                    for (int c = 0; c < w; c += 3) {
                        const int C = w - c < 3 ? w - c : 3;
                        const float *pc = panel + c * RP_KC;
                        float *pp = pk + c * 8, *yc = ym + c;
                        switch (R) {
                        case 4: MANY_TILE_C(4, C, xm, ldx, k0, k1, pc, pp, yc, ldy, first, last) break;
                        case 3: MANY_TILE_C(3, C, xm, ldx, k0, k1, pc, pp, yc, ldy, first, last) break;
                        case 2: MANY_TILE_C(2, C, xm, ldx, k0, k1, pc, pp, yc, ldy, first, last) break;
                        default: MANY_TILE_C(1, C, xm, ldx, k0, k1, pc, pp, yc, ldy, first, last) break;
                        }
                    }
                }
            }
        }
    }
}

AVX2 INLINE void gemm_dequant_avx2_fmt(int format, const float *x, int64_t ldx, int64_t M, int64_t K,
                                       const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                                       int64_t ldy) {
    if (M > RP_FEW_ROWS) {
        many_rows(format, x, ldx, M, K, qs, scales, n0, n1, y, ldy);
        return;
    }
    few_rows(format, M, x, ldx, K, qs, scales, n0, n1, y, ldy);
}

AVX2 static void gemm_dequant_avx2_q8(const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                      const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_dequant_avx2_fmt(GFK_Q8, x, ldx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_dequant_avx2_q4(const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                      const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_dequant_avx2_fmt(GFK_Q4, x, ldx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_dequant_avx2_q6(const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                      const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_dequant_avx2_fmt(GFK_Q6, x, ldx, M, K, qs, sc, n0, n1, y, ldy);
}

void gfk_q_gemm_dequant(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                        const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        if (format == GFK_Q4) gemm_dequant_avx2_q4(x, ldx, M, K, qs, scales, n0, n1, y, ldy);
        else if (format == GFK_Q6) gemm_dequant_avx2_q6(x, ldx, M, K, qs, scales, n0, n1, y, ldy);
        else gemm_dequant_avx2_q8(x, ldx, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gemm_dequant_scalar(format, x, ldx, M, K, qs, scales, n0, n1, y, ldy);
    }
}
