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
                for (int64_t k = b * QK; k < k1; k++) t += xr[k] * (float)q_value(format, w, k);
                acc += t * scales[n * nb + b];
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

// y[m0..m0+R, n] with the weights widened to fp32 in registers: per block t = Σ x·q (four 8-lane chains merged in
// a fixed order), then acc[b % 2] += t · d. Each row's arithmetic is the same whatever R is (row invariance).
typedef struct { __m256 w0, w1, w2, w3; } wblock;

AVX2 INLINE wblock widen_block(int format, const uint8_t *wrow, int64_t b) {
    __m256i q = load_block(format, wrow, b);
    __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
    wblock w;
    w.w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
    w.w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
    w.w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
    w.w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
    return w;
}

// acc += (Σ x·q over the block) · d: two 8-lane chains merged, then one fma with the block's scale.
AVX2 INLINE __m256 block_dot(const float *xr, wblock w, __m256 dv, __m256 acc) {
    __m256 t = _mm256_mul_ps(_mm256_loadu_ps(xr), w.w0);
    __m256 u = _mm256_mul_ps(_mm256_loadu_ps(xr + 8), w.w1);
    t = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 16), w.w2, t);
    u = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 24), w.w3, u);
    return _mm256_fmadd_ps(_mm256_add_ps(t, u), dv, acc);
}

// y[m0..m0+R, n] with the weights widened to fp32 in registers; even blocks accumulate in a0, odd blocks in a1.
// The last, partial block reads x from `tail` (rows of 32 floats, zero-padded). Each row's arithmetic is the same
// whatever R is, so a row's result does not depend on the other rows (row invariance).
#define DQ_TILE(NAME, R)                                                                                          \
AVX2 INLINE void NAME(int format, const float *x, int64_t ldx, int64_t full, int64_t nb, const float *tail,      \
                      const uint8_t *wrow, const float *d, int64_t m0, float *yout, int64_t ldy) {                \
    __m256 a0[R], a1[R];                                                                                          \
    for (int r = 0; r < R; r++) { a0[r] = _mm256_setzero_ps(); a1[r] = _mm256_setzero_ps(); }                    \
    int64_t b = 0;                                                                                                \
    for (; b + 2 <= full; b += 2) {                                                                               \
        wblock w = widen_block(format, wrow, b), v = widen_block(format, wrow, b + 1);                            \
        __m256 dv = _mm256_set1_ps(d[b]), dw = _mm256_set1_ps(d[b + 1]);                                          \
        for (int r = 0; r < R; r++) {                                                                             \
            const float *xr = x + (m0 + r) * ldx + b * QK;                                                        \
            a0[r] = block_dot(xr, w, dv, a0[r]);                                                                  \
            a1[r] = block_dot(xr + QK, v, dw, a1[r]);                                                             \
        }                                                                                                         \
    }                                                                                                             \
    for (; b < nb; b++) {                                                                                         \
        wblock w = widen_block(format, wrow, b);                                                                  \
        __m256 dv = _mm256_set1_ps(d[b]);                                                                         \
        for (int r = 0; r < R; r++) {                                                                             \
            const float *xr = b < full ? x + (m0 + r) * ldx + b * QK : tail + (m0 + r) * QK;                      \
            if (b & 1) a1[r] = block_dot(xr, w, dv, a1[r]); else a0[r] = block_dot(xr, w, dv, a0[r]);            \
        }                                                                                                         \
    }                                                                                                             \
    for (int r = 0; r < R; r++) yout[(m0 + r) * ldy] = hsum(_mm256_add_ps(a0[r], a1[r]));                       \
}
DQ_TILE(tile_dequant1, 1)
DQ_TILE(tile_dequant4, 4)

AVX2 INLINE void gemm_dequant_avx2_fmt(int format, const float *x, int64_t ldx, int64_t M, int64_t K,
                                       const uint8_t *qs, const float *scales, int64_t n0, int64_t n1, float *y,
                                       int64_t ldy) {
    int64_t rb = gfk_q_row_bytes(format, K), nb = gfk_q_blocks(K), full = K / QK;
    float stackTail[16 * QK];
    float *tail = stackTail;
    if (full < nb) {
        if (M > 16 && !(tail = malloc((size_t)(M * QK) * sizeof(float)))) {
            gemm_dequant_scalar(format, x, ldx, M, K, qs, scales, n0, n1, y, ldy);
            return;
        }
        for (int64_t m = 0; m < M; m++) {
            int64_t k0 = full * QK;
            for (int64_t i = 0; i < QK; i++) tail[m * QK + i] = k0 + i < K ? x[m * ldx + k0 + i] : 0;
        }
    }
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = qs + n * rb;
        const float *d = scales + n * nb;
        int64_t m = 0;
        for (; m + 4 <= M; m += 4) tile_dequant4(format, x, ldx, full, nb, tail, w, d, m, y + n, ldy);
        for (; m < M; m++) tile_dequant1(format, x, ldx, full, nb, tail, w, d, m, y + n, ldy);
    }
    if (tail != stackTail) free(tail);
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
