// Block-quantized weight matrices (int8 "Q8" and 4-bit "Q4", 32 values per block with an fp32 scale): packing,
// unpacking and the two matrix products (see ckernels.h for the layout). The AVX2 kernels are chosen at run time;
// the portable C versions serve CPUs without AVX2/FMA and as a check of the vector ones.
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QK GFK_QBLOCK

int64_t gfk_q_blocks(int64_t K) { return (K + QK - 1) / QK; }

int64_t gfk_q_row_bytes(int format, int64_t K) {
    int64_t kp = gfk_q_blocks(K) * QK;
    return format == GFK_Q4 ? kp / 2 : kp;
}

/* ---- quantization of one block ---------------------------------------------------------------------------- */

// Q8: d = max|v| / 127, q = round(v / d) in [-127, 127] (never -128: the AVX2 sign trick needs |q| <= 127).
static float quantize_q8(const float *v, int8_t *q) {
    float amax = 0;
    for (int i = 0; i < QK; i++) { float a = fabsf(v[i]); if (a > amax) amax = a; }
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK; i++) {
        float r = nearbyintf(v[i] * id);
        if (r > 127) r = 127;
        if (r < -127) r = -127;
        q[i] = (int8_t)r;
    }
    return d;
}

// Q4 (as llama.cpp's Q4_0): d = m / -8 where m is the value of largest magnitude (so m maps to -8 exactly),
// q = round(v / d) + 8 clamped to 0..15; value = (q − 8)·d. Byte j holds element j (low nibble) and j + 16 (high).
static float quantize_q4(const float *v, uint8_t *q) {
    float amax = 0, m = 0;
    for (int i = 0; i < QK; i++) { float a = fabsf(v[i]); if (a > amax) { amax = a; m = v[i]; } }
    float d = m / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK / 2; j++) {
        int a = (int)(v[j] * id + 8.5f), b = (int)(v[j + QK / 2] * id + 8.5f);
        a = a < 0 ? 0 : (a > 15 ? 15 : a);
        b = b < 0 ? 0 : (b > 15 ? 15 : b);
        q[j] = (uint8_t)(a | (b << 4));
    }
    return d;
}

static void quantize_row(int format, const float *v, int64_t K, uint8_t *qrow, float *drow) {
    int64_t nb = gfk_q_blocks(K);
    float blk[QK];
    for (int64_t b = 0; b < nb; b++) {
        int64_t k0 = b * QK, n = K - k0 < QK ? K - k0 : QK;
        memcpy(blk, v + k0, (size_t)n * sizeof(float));
        for (int64_t i = n; i < QK; i++) blk[i] = 0;
        if (format == GFK_Q4) drow[b] = quantize_q4(blk, qrow + b * (QK / 2));
        else drow[b] = quantize_q8(blk, (int8_t *)qrow + b * QK);
    }
}

void gfk_q_pack(int format, const float *src, int64_t ld, int transposed, int64_t K, int64_t N, uint8_t *qs,
                float *scales, int64_t n0, int64_t n1) {
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
                if (format == GFK_Q4) scales[n * nb + b] = quantize_q4(col, qs + n * rb + b * (QK / 2));
                else scales[n * nb + b] = quantize_q8(col, (int8_t *)qs + n * rb + b * QK);
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

static inline int q_value(int format, const uint8_t *qrow, int64_t k) {
    if (format == GFK_Q4) {
        int64_t b = k / QK, i = k % QK;
        uint8_t byte = qrow[b * (QK / 2) + (i % (QK / 2))];
        return (i < QK / 2 ? (byte & 15) : (byte >> 4)) - 8;
    }
    return ((const int8_t *)qrow)[k];
}

void gfk_q_unpack_rows(int format, const uint8_t *qs, const float *scales, int64_t K, int64_t n0, int64_t n1,
                       float *dst, int64_t ld) {
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *q = qs + n * rb;
        const float *d = scales + n * nb;
        float *o = dst + (n - n0) * ld;
        for (int64_t k = 0; k < K; k++) o[k] = (float)q_value(format, q, k) * d[k / QK];
    }
}

void gfk_q_quantize_activations(const float *x, int64_t ldx, int64_t M, int64_t K, int8_t *qx, float *dx) {
    int64_t rb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t m = 0; m < M; m++) quantize_row(GFK_Q8, x + m * ldx, K, (uint8_t *)qx + m * rb, dx + m * nb);
}

/* ---- kernel choice ---------------------------------------------------------------------------------------- */

static int simd_state = -1; // -1: not decided yet

static int cpu_has_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

int gfk_q_kernel_is_avx2(void) {
    if (simd_state < 0) {
        const char *e = getenv("GFNLM_NO_AVX2_QUANT");
        simd_state = cpu_has_avx2() && !(e && e[0] == '1');
    }
    return simd_state;
}

int gfk_q_set_avx2(int enable) {
    simd_state = enable && cpu_has_avx2();
    return simd_state;
}

/* ---- portable kernels ------------------------------------------------------------------------------------- */

static void gemm_int_scalar(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                            const float *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        for (int64_t m = 0; m < M; m++) {
            const int8_t *xr = qx + m * xb;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < QK; i++) s += (int32_t)xr[b * QK + i] * q_value(format, w, b * QK + i);
                acc += (float)s * (dx[m * nb + b] * scales[n * nb + b]);
            }
            y[m * ldy + n] = acc;
        }
    }
}

// The row-invariant product's arithmetic, which every implementation of gfk_q_gemm_dequant reproduces exactly: per
// block of 32, t = fma(x[k], q[k], t) for k in order from t = +0 (the weight's integer value, exact in fp32), then
// acc = fma(t, d, acc) from acc = +0. fmaf is one instruction on the x86-64-v3 baseline and rounds once, like the
// vector FMA, so the portable and the AVX2 results are equal bit for bit.
static void gemm_dequant_scalar(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                const float *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        for (int64_t m = 0; m < M; m++) {
            const float *xr = x + m * ldx;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                float t = 0;
                int64_t k1 = (b + 1) * QK < K ? (b + 1) * QK : K;
                for (int64_t k = b * QK; k < k1; k++) t = fmaf(xr[k], (float)q_value(format, w, k), t);
                acc = fmaf(t, scales[n * nb + b], acc);
            }
            y[m * ldy + n] = acc;
        }
    }
}

/* ---- AVX2 kernels ----------------------------------------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// The 32 signed values of block b of a weight row, as int8.
AVX2 INLINE __m256i load_block(int format, const uint8_t *row, int64_t b) {
    if (format == GFK_Q4) {
        __m128i p = _mm_loadu_si128((const __m128i *)(row + b * (QK / 2)));
        __m128i lo = _mm_and_si128(p, _mm_set1_epi8(15));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(15));
        __m256i v = _mm256_set_m128i(hi, lo);
        return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
    }
    return _mm256_loadu_si256((const __m256i *)(row + b * QK));
}

AVX2 INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[m0..m0+R, n0..n0+C] from quantized activations: per block, the exact int32 dot product of the 32 pairs
// (|w| · (x·sign w) with vpmaddubsw, pairs summed to int32 with vpmaddwd), converted and scaled by dx·dw.
AVX2 INLINE void tile_int(int format, int R, int C, const int8_t *qx, int64_t xb, const float *dx, int64_t nb,
                          const uint8_t *qs, int64_t rb, const float *scales, int64_t m0, int64_t n, float *y,
                          int64_t ldy) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i w[2], aw[2];
        float dw[2];
        for (int c = 0; c < C; c++) {
            w[c] = load_block(format, qs + (n + c) * rb, b);
            aw[c] = _mm256_sign_epi8(w[c], w[c]);
            dw[c] = scales[(n + c) * nb + b];
        }
        for (int r = 0; r < R; r++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(qx + (m0 + r) * xb + b * QK));
            float d = dx[(m0 + r) * nb + b];
            for (int c = 0; c < C; c++) {
                __m256i p = _mm256_maddubs_epi16(aw[c], _mm256_sign_epi8(xv, w[c]));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                acc[r][c] = _mm256_fmadd_ps(f, _mm256_set1_ps(d * dw[c]), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) y[(m0 + r) * ldy + n + c] = hsum(acc[r][c]);
}

AVX2 INLINE void gemm_int_avx2_fmt(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K,
                                   const uint8_t *qs, const float *scales, int64_t n0, int64_t n1, float *y,
                                   int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    // Columns in groups of 16 so that their weight rows stay in cache while every row tile passes over them.
    for (int64_t g = n0; g < n1; g += 16) {
        int64_t g1 = g + 16 < n1 ? g + 16 : n1;
        int64_t m = 0;
        for (; m + 4 <= M; m += 4) {
            int64_t n = g;
            for (; n + 2 <= g1; n += 2) tile_int(format, 4, 2, qx, xb, dx, nb, qs, rb, scales, m, n, y, ldy);
            for (; n < g1; n++) tile_int(format, 4, 1, qx, xb, dx, nb, qs, rb, scales, m, n, y, ldy);
        }
        for (; m < M; m++) {
            int64_t n = g;
            for (; n + 2 <= g1; n += 2) tile_int(format, 1, 2, qx, xb, dx, nb, qs, rb, scales, m, n, y, ldy);
            for (; n < g1; n++) tile_int(format, 1, 1, qx, xb, dx, nb, qs, rb, scales, m, n, y, ldy);
        }
    }
}

AVX2 static void gemm_int_avx2_q8(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const float *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q8, qx, dx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_int_avx2_q4(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                  const float *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_int_avx2_fmt(GFK_Q4, qx, dx, M, K, qs, sc, n0, n1, y, ldy);
}

// ---- the row-invariant product on fp32 activations (gfk_q_gemm_dequant) ----
// A panel of up to RP_COLS columns of W and RP_KCB blocks of k (128 k) is widened ONCE into fp32 scratch laid out
// [k][column] (the integer values q, exact in fp32; the scales beside them, [block][column]), then every row of x
// runs through it with register tiles of 4 rows × 24 columns (12 accumulators): per k, 3 loads of the panel and 4
// broadcasts of x feed 12 FMAs, as in the fp32 row-streaming kernels (smallgemm.c). At the end of each block of 32
// the tile's partial sums t are folded into y: y = fma(t, d, y), y starting from +0 — exactly the scalar
// definition above, so a row's result depends neither on M, nor on the panel or thread split, nor on the choice
// between this kernel and the portable one. The scratch (24 KB) lives on the stack and stays in L1 while the rows
// pass; with one row the widening is not shared, which costs about what the in-register widening of the earlier
// kernel did. The next chunk's weight lines are prefetched while the current one is widened.
enum { RP_COLS = 48, RP_KCB = 4, RP_KC = RP_KCB * QK };

// Panel columns j0..j0+8 (storage rows c..c+cw, cw ≤ 8; the others zero), blocks b0..b1 → panel rows (b − b0)·32 +
// i, panel columns j0..j0+8 (ld P), and their scales into dp[(b − b0)·P + j]. An 8 × 16 byte transpose per half
// block with unpacks (three rounds: bytes, pairs, quadruples), then each k's 8 values sign-extended and converted.
AVX2 INLINE void widen8(int format, const uint8_t *qs, int64_t rb, const float *scales, int64_t nb, int64_t c,
                        int cw, int64_t b0, int64_t b1, float *panel, float *dp, int P, int j0) {
    for (int64_t b = b0; b < b1; b++) {
        __m256i col[8];
        for (int i = 0; i < 8; i++)
            col[i] = i < cw ? load_block(format, qs + (c + i) * rb, b) : _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m128i a[8];
            for (int i = 0; i < 8; i++)
                a[i] = h ? _mm256_extracti128_si256(col[i], 1) : _mm256_castsi256_si128(col[i]);
            __m128i p[8], q[8], r[8];
            for (int i = 0; i < 4; i++) {
                p[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);      // k 0..7: (a_2i, a_2i+1) pairs
                p[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);  // k 8..15
            }
            for (int g = 0; g < 2; g++)      // columns 0..3 (g = 0) and 4..7 (g = 1)
                for (int s = 0; s < 2; s++) {  // k 0..7 (s = 0), 8..15 (s = 1)
                    __m128i lo = p[4 * g + s], hi = p[4 * g + 2 + s];
                    q[4 * g + 2 * s] = _mm_unpacklo_epi16(lo, hi);      // k 8s + 0..3, 4 columns each
                    q[4 * g + 2 * s + 1] = _mm_unpackhi_epi16(lo, hi);  // k 8s + 4..7
                }
            for (int u = 0; u < 4; u++) {    // k 4u..4u+3
                r[2 * u] = _mm_unpacklo_epi32(q[u], q[4 + u]);      // k 4u, 4u + 1: 8 columns each
                r[2 * u + 1] = _mm_unpackhi_epi32(q[u], q[4 + u]);  // k 4u + 2, 4u + 3
            }
            float *o = panel + ((b - b0) * QK + 16 * h) * P + j0;
            for (int i = 0; i < 8; i++) {
                _mm256_store_ps(o + (2 * i) * P, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(r[i])));
                _mm256_store_ps(o + (2 * i + 1) * P,
                                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(r[i], 8))));
            }
        }
        for (int i = 0; i < 8; i++) dp[(b - b0) * P + j0 + i] = i < cw ? scales[(c + i) * nb + b] : 0.0f;
    }
}

// Rows 0..R of x (x points at the chunk's first k) against panel columns of NV vectors (y at the first of them),
// the chunk's blocks 0..nblk; the last block may be short (kc_last values). `first`: the chunk holds block 0 of
// the row, so y starts from +0. The last vector's stores are masked when `masked`.
AVX2 INLINE void rp_tile(int R, int NV, int masked, __m256i mask, const float *x, int64_t ldx, int nblk,
                         int kc_last, const float *panel, const float *dp, int P, float *y, int64_t ldy, int first) {
    for (int blk = 0; blk < nblk; blk++) {
        __m256 t[4][3];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < NV; j++) t[r][j] = _mm256_setzero_ps();
        const int kc = blk == nblk - 1 ? kc_last : QK;
        const float *wp = panel + blk * QK * P, *xb = x + blk * QK;
        for (int k = 0; k < kc; k++) {
            __m256 v[3];
            for (int j = 0; j < NV; j++) v[j] = _mm256_load_ps(wp + k * P + 8 * j);
            for (int r = 0; r < R; r++) {
                __m256 bx = _mm256_broadcast_ss(xb + r * ldx + k);
                for (int j = 0; j < NV; j++) t[r][j] = _mm256_fmadd_ps(bx, v[j], t[r][j]);
            }
        }
        __m256 dv[3];
        for (int j = 0; j < NV; j++) dv[j] = _mm256_load_ps(dp + blk * P + 8 * j);
        const int zero = first && blk == 0;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < NV; j++) {
                float *yp = y + r * ldy + 8 * j;
                const int mj = masked && j == NV - 1;
                __m256 acc = zero ? _mm256_setzero_ps() : mj ? _mm256_maskload_ps(yp, mask) : _mm256_loadu_ps(yp);
                acc = _mm256_fmadd_ps(t[r][j], dv[j], acc);
                if (mj) _mm256_maskstore_ps(yp, mask, acc); else _mm256_storeu_ps(yp, acc);
            }
    }
}

AVX2 INLINE void rp_rows(int NV, int masked, __m256i mask, int64_t M, const float *x, int64_t ldx, int nblk,
                         int kc_last, const float *panel, const float *dp, int P, float *y, int64_t ldy, int first) {
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
        rp_tile(4, NV, masked, mask, x + m * ldx, ldx, nblk, kc_last, panel, dp, P, y + m * ldy, ldy, first);
    x += m * ldx, y += m * ldy;
    switch (M - m) {
    case 3: rp_tile(3, NV, masked, mask, x, ldx, nblk, kc_last, panel, dp, P, y, ldy, first); break;
    case 2: rp_tile(2, NV, masked, mask, x, ldx, nblk, kc_last, panel, dp, P, y, ldy, first); break;
    case 1: rp_tile(1, NV, masked, mask, x, ldx, nblk, kc_last, panel, dp, P, y, ldy, first); break;
    default: break;
    }
}

// ---- few rows: the panel kept as int8 ----
// With one to RP_FEW_ROWS rows the fp32 widening above is not shared and costs more than the products. The panel is
// then transposed but kept as int8 (one 8 × 32 byte transpose per block and 8 columns: three rounds of unpacks,
// eight 32-byte stores), and each k's 8 values are sign-extended and converted while the rows pass (vpmovsxbd,
// vcvtdq2ps). The arithmetic per element is the same as above (same t chain, same fold).
enum { RP_FEW_ROWS = 4 };

// Byte offset of (block blk of the chunk, group g of 8 columns, k' < 32) in the int8 panel of G groups: per block and
// group 256 bytes, the unpacks' order: 32-byte row i holds k' = 2i, 2i + 1 (low lane) and 16 + 2i, 17 + 2i (high).
INLINE int p8_offset(int blk, int G, int g, int k) {
    return ((blk * G + g) * 8 + ((k & 15) >> 1)) * 32 + (k >> 4) * 16 + (k & 1) * 8;
}

AVX2 INLINE void widen8_i8(int format, const uint8_t *qs, int64_t rb, const float *scales, int64_t nb, int64_t c,
                           int cw, int64_t b0, int64_t b1, int8_t *p8, float *dp, int P, int G, int g) {
    for (int64_t b = b0; b < b1; b++) {
        __m256i a[8], p[8], q[8];
        for (int i = 0; i < 8; i++)
            a[i] = i < cw ? load_block(format, qs + (c + i) * rb, b) : _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            p[2 * i] = _mm256_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
            p[2 * i + 1] = _mm256_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
        }
        for (int gg = 0; gg < 2; gg++)
            for (int s = 0; s < 2; s++) {
                __m256i lo = p[4 * gg + s], hi = p[4 * gg + 2 + s];
                q[4 * gg + 2 * s] = _mm256_unpacklo_epi16(lo, hi);
                q[4 * gg + 2 * s + 1] = _mm256_unpackhi_epi16(lo, hi);
            }
        int8_t *o = p8 + ((b - b0) * G + g) * 256;
        for (int u = 0; u < 4; u++) {
            _mm256_store_si256((__m256i *)(o + (2 * u) * 32), _mm256_unpacklo_epi32(q[u], q[4 + u]));
            _mm256_store_si256((__m256i *)(o + (2 * u + 1) * 32), _mm256_unpackhi_epi32(q[u], q[4 + u]));
        }
        for (int i = 0; i < 8; i++) dp[(b - b0) * P + 8 * g + i] = i < cw ? scales[(c + i) * nb + b] : 0.0f;
    }
}

// As rp_tile, on the int8 panel: NV vectors starting at column group g0.
AVX2 INLINE void fr_tile(int R, int NV, int masked, __m256i mask, const float *x, int64_t ldx, int nblk,
                         int kc_last, const int8_t *p8, int G, int g0, const float *dp, int P, float *y, int64_t ldy,
                         int first) {
    for (int blk = 0; blk < nblk; blk++) {
        __m256 t[4][6];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < NV; j++) t[r][j] = _mm256_setzero_ps();
        const int kc = blk == nblk - 1 ? kc_last : QK;
        const float *xb = x + blk * QK;
#define FR_STEP(K_, OFF)                                                                                          \
    do {                                                                                                          \
        __m256 v[6];                                                                                              \
        for (int j = 0; j < NV; j++)                                                                              \
            v[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(pb + (OFF) + 256 * j)))); \
        for (int r = 0; r < R; r++) {                                                                             \
            __m256 bx = _mm256_broadcast_ss(xb + r * ldx + (K_));                                                 \
            for (int j = 0; j < NV; j++) t[r][j] = _mm256_fmadd_ps(bx, v[j], t[r][j]);                            \
        }                                                                                                         \
    } while (0)
        const int8_t *pb = p8 + (blk * G + g0) * 256;
        if (kc == QK) {  // k = 16h + 2i + o in order, constant offsets (the loops unroll)
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 8; i++)
                    for (int o = 0; o < 2; o++) FR_STEP(16 * h + 2 * i + o, i * 32 + h * 16 + o * 8);
        } else {
            for (int k = 0; k < kc; k++) FR_STEP(k, p8_offset(0, 0, 0, k));
        }
#undef FR_STEP
        const int zero = first && blk == 0;
        for (int j = 0; j < NV; j++) {
            __m256 dv = _mm256_load_ps(dp + blk * P + 8 * (g0 + j));
            const int mj = masked && j == NV - 1;
            for (int r = 0; r < R; r++) {
                float *yp = y + r * ldy + 8 * j;
                __m256 acc = zero ? _mm256_setzero_ps() : mj ? _mm256_maskload_ps(yp, mask) : _mm256_loadu_ps(yp);
                acc = _mm256_fmadd_ps(t[r][j], dv, acc);
                if (mj) _mm256_maskstore_ps(yp, mask, acc); else _mm256_storeu_ps(yp, acc);
            }
        }
    }
}

// Rows 0..R (R ≤ RP_FEW_ROWS) against the panel's w columns: strips of 48 (one or two rows), 24, then 8.
AVX2 INLINE void fr_rows(int R, int w, __m256i mask, const float *x, int64_t ldx, int nblk, int kc_last,
                         const int8_t *p8, int G, const float *dp, int P, float *y, int64_t ldy, int first) {
    const __m256i none = _mm256_setzero_si256();
    const int tail = w % 8;
    int j = 0;
    if (R <= 2)
        for (; j + 48 <= w; j += 48) {
            if (R == 1) fr_tile(1, 6, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first);
            else fr_tile(2, 6, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first);
        }
    for (; j + 24 <= w; j += 24) {
        switch (R) {
        case 1: fr_tile(1, 3, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        case 2: fr_tile(2, 3, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        case 3: fr_tile(3, 3, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        default: fr_tile(4, 3, 0, none, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        }
    }
    for (; j < w; j += 8) {
        const int mk = j + 8 > w;
        const __m256i m = mk ? mask : none;
        (void)tail;
        switch (R) {
        case 1: fr_tile(1, 1, mk, m, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        case 2: fr_tile(2, 1, mk, m, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        case 3: fr_tile(3, 1, mk, m, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        default: fr_tile(4, 1, mk, m, x, ldx, nblk, kc_last, p8, G, j / 8, dp, P, y + j, ldy, first); break;
        }
    }
}

// Prefetch cursor over the next panel's weights and scales: the storage rows of a panel's columns are adjacent, so
// they are two contiguous stretches, prefetched in address order (one stream for DRAM) and spread evenly over the
// current panel's work. Reading the current panel block by block touches 48 rows side by side, which the hardware
// prefetchers follow poorly (measured 1.5× slower for one row without this).
typedef struct { const char *p, *end, *p2, *end2; int64_t per; } rp_cursor;

static inline void rp_prefetch(rp_cursor *c) {
    for (int64_t i = 0; i < c->per; i++) {
        if (c->p < c->end) { _mm_prefetch(c->p, _MM_HINT_T1); c->p += 64; }
        else if (c->p2 < c->end2) { _mm_prefetch(c->p2, _MM_HINT_T1); c->p2 += 64; }
        else return;
    }
}

// One chunk of the product: columns c0..c0+w of W (a panel, P = w rounded up to 8), blocks b0..b1.
typedef struct { int64_t c0, b0, b1; int w, P; } rp_chunk;

static inline int rp_first(rp_chunk *c, int64_t n0, int64_t n1, int64_t nb) {
    if (n1 <= n0) return 0;
    c->c0 = n0, c->b0 = 0, c->b1 = RP_KCB < nb ? RP_KCB : nb;
    c->w = (int)(n1 - n0 < RP_COLS ? n1 - n0 : RP_COLS), c->P = (c->w + 7) & ~7;
    return 1;
}

// The chunk after c (blocks first, then the next panel); 0 past the last one.
static inline int rp_next(rp_chunk *c, int64_t n1, int64_t nb) {
    if (c->b1 < nb) {
        c->b0 = c->b1, c->b1 = c->b1 + RP_KCB < nb ? c->b1 + RP_KCB : nb;
        return 1;
    }
    return rp_first(c, c->c0 + RP_COLS, n1, nb);
}

// Chunks are widened one ahead (double buffer): chunk i + 1 is widened into one buffer while nothing reads it, then
// chunk i is computed from the other. Widening a chunk just before reading it (one buffer) was 1.4× slower for one
// row: the reads of the fresh panel ran ahead of its stores and the weight loads did not overlap the arithmetic.
AVX2 INLINE void gemm_dequant_avx2_fmt(int format, const float *x, int64_t ldx, int64_t M, int64_t K,
                                       const uint8_t *qs, const float *scales, int64_t n0, int64_t n1, float *y,
                                       int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K);
    const int few = M <= RP_FEW_ROWS;
    // fp32 panels for many rows, int8 panels for few (both double-buffered); scales beside them.
    float panel[2][few ? 8 : RP_KC * RP_COLS] __attribute__((aligned(64)));
    int8_t p8[2][few ? RP_KC * RP_COLS : 64] __attribute__((aligned(64)));
    float dp[2][RP_KCB * RP_COLS] __attribute__((aligned(64)));
    rp_chunk cur, nxt;
    if (!rp_first(&cur, n0, n1, nb)) return;
    rp_cursor pf = {0, 0, 0, 0, 0};
    int buf = 0, have = 1;
#define RP_WIDEN(CH, B)                                                                                           \
    for (int g = 0; g < (CH).P / 8; g++, rp_prefetch(&pf)) {                                                       \
        const int cw = (CH).w - 8 * g < 8 ? (CH).w - 8 * g : 8;                                                   \
        if (few) widen8_i8(format, qs, rb, scales, nb, (CH).c0 + 8 * g, cw, (CH).b0, (CH).b1, p8[B], dp[B],      \
                           (CH).P, (CH).P / 8, g);                                                                \
        else widen8(format, qs, rb, scales, nb, (CH).c0 + 8 * g, cw, (CH).b0, (CH).b1, panel[B], dp[B], (CH).P,   \
                    8 * g);                                                                                       \
    }
    RP_WIDEN(cur, 0)
    while (have) {
        nxt = cur;
        have = rp_next(&nxt, n1, nb);
        if (have && nxt.b0 == 0 && nxt.c0 + RP_COLS < n1) {  // a new panel: prefetch the one after it meanwhile
            const int64_t c1 = nxt.c0 + RP_COLS, c2 = c1 + RP_COLS < n1 ? c1 + RP_COLS : n1;
            pf.p = (const char *)(qs + c1 * rb), pf.end = (const char *)(qs + c2 * rb);
            pf.p2 = (const char *)(scales + c1 * nb), pf.end2 = (const char *)(scales + c2 * nb);
            const int64_t lines = (pf.end - pf.p + pf.end2 - pf.p2 + 63) / 64;
            const int64_t steps = ((nb + RP_KCB - 1) / RP_KCB) * (nxt.P / 8);
            pf.per = (lines + steps - 1) / steps;
        }
        if (have) RP_WIDEN(nxt, buf ^ 1)
        const int w = cur.w, P = cur.P, tail = w % 8;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256i none = _mm256_setzero_si256();
        const int nblk = (int)(cur.b1 - cur.b0);
        const int kc_last = (int)(K - (cur.b1 - 1) * QK < QK ? K - (cur.b1 - 1) * QK : QK);
        const float *xk = x + cur.b0 * QK, *d = dp[buf];
        float *yc = y + cur.c0;
        const int first = cur.b0 == 0;
        if (few) {
            fr_rows((int)M, w, mask, xk, ldx, nblk, kc_last, p8[buf], P / 8, d, P, yc, ldy, first);
        } else {
            const float *pn = panel[buf];
            int j = 0;
            for (; j + 24 <= w; j += 24)
                rp_rows(3, 0, none, M, xk, ldx, nblk, kc_last, pn + j, d + j, P, yc + j, ldy, first);
            for (; j + 8 <= w; j += 8)
                rp_rows(1, 0, none, M, xk, ldx, nblk, kc_last, pn + j, d + j, P, yc + j, ldy, first);
            if (tail) rp_rows(1, 1, mask, M, xk, ldx, nblk, kc_last, pn + j, d + j, P, yc + j, ldy, first);
        }
        cur = nxt, buf ^= 1;
    }
#undef RP_WIDEN
}

AVX2 static void gemm_dequant_avx2_q8(const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                      const float *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_dequant_avx2_fmt(GFK_Q8, x, ldx, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_dequant_avx2_q4(const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                                      const float *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_dequant_avx2_fmt(GFK_Q4, x, ldx, M, K, qs, sc, n0, n1, y, ldy);
}

void gfk_q_gemm_int(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                    const float *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        if (format == GFK_Q4) gemm_int_avx2_q4(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
        else gemm_int_avx2_q8(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gemm_int_scalar(format, qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    }
}

void gfk_q_gemm_dequant(int format, const float *x, int64_t ldx, int64_t M, int64_t K, const uint8_t *qs,
                        const float *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        if (format == GFK_Q4) gemm_dequant_avx2_q4(x, ldx, M, K, qs, scales, n0, n1, y, ldy);
        else gemm_dequant_avx2_q8(x, ldx, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gemm_dequant_scalar(format, x, ldx, M, K, qs, scales, n0, n1, y, ldy);
    }
}
