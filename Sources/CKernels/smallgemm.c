// fp32 matrix products with few rows (decoding: one row per sequence in the batch). OpenBLAS's sgemm packs the
// weight matrix on every call -- for M = 8 that is ~3x the weight bytes of traffic, and the head (V x E) is the
// largest matrix of the model. These kernels stream each weight once per call from its stored layout and keep the
// M rows of activations in L1. AVX2 + FMA (the package's x86-64-v3 baseline).
#include "ckernels.h"
#include <immintrin.h>

// y[m, n] = sum_k x[m, k] * w[k, n] for m < M, n0 <= n < n1; w row-major [K, ldw].
// w is streamed row by row (sequential, prefetch- and TLB-friendly): four rows of w at a time, over a chunk of
// 1024 columns (16 KB of w, kept in L1 while every pair of x rows passes over it), accumulating into y (L1/L2).
enum { NN_KG = 4, NN_CHUNK = 1024 };

static inline void nn_pair(int two, const float *xa, const float *xb, const float *w, size_t ldw, float *ya,
                           float *yb, size_t cols, int first) {
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    __m256 a0 = _mm256_broadcast_ss(xa), a1 = _mm256_broadcast_ss(xa + 1);
    __m256 a2 = _mm256_broadcast_ss(xa + 2), a3 = _mm256_broadcast_ss(xa + 3);
    __m256 b0 = a0, b1 = a1, b2 = a2, b3 = a3;
    if (two) {
        b0 = _mm256_broadcast_ss(xb);
        b1 = _mm256_broadcast_ss(xb + 1);
        b2 = _mm256_broadcast_ss(xb + 2);
        b3 = _mm256_broadcast_ss(xb + 3);
    }
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + c), v1 = _mm256_loadu_ps(w1 + c);
        __m256 v2 = _mm256_loadu_ps(w2 + c), v3 = _mm256_loadu_ps(w3 + c);
        __m256 s = first ? _mm256_setzero_ps() : _mm256_loadu_ps(ya + c);
        s = _mm256_fmadd_ps(a0, v0, s);
        s = _mm256_fmadd_ps(a1, v1, s);
        s = _mm256_fmadd_ps(a2, v2, s);
        s = _mm256_fmadd_ps(a3, v3, s);
        _mm256_storeu_ps(ya + c, s);
        if (two) {
            __m256 t = first ? _mm256_setzero_ps() : _mm256_loadu_ps(yb + c);
            t = _mm256_fmadd_ps(b0, v0, t);
            t = _mm256_fmadd_ps(b1, v1, t);
            t = _mm256_fmadd_ps(b2, v2, t);
            t = _mm256_fmadd_ps(b3, v3, t);
            _mm256_storeu_ps(yb + c, t);
        }
    }
    for (; c < cols; c++) {
        float s = first ? 0.f : ya[c];
        s += xa[0] * w0[c] + xa[1] * w1[c] + xa[2] * w2[c] + xa[3] * w3[c];
        ya[c] = s;
        if (two) {
            float t = first ? 0.f : yb[c];
            t += xb[0] * w0[c] + xb[1] * w1[c] + xb[2] * w2[c] + xb[3] * w3[c];
            yb[c] = t;
        }
    }
}

void gfk_sgemm_small_nn(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1) {
    if (n1 <= n0 || M == 0) return;
    if (K == 0) {
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n++) y[m * ldy + n] = 0.f;
        return;
    }
    size_t K4 = K / NN_KG * NN_KG;
    for (size_t c0 = n0; c0 < n1; c0 += NN_CHUNK) {
        size_t cols = n1 - c0 < NN_CHUNK ? n1 - c0 : NN_CHUNK;
        for (size_t k = 0; k < K4; k += NN_KG) {
            const float *wk = w + k * ldw + c0;
            for (size_t m = 0; m < M; m += 2) {
                int two = m + 1 < M;
                nn_pair(two, x + m * ldx + k, x + (m + 1 < M ? m + 1 : m) * ldx + k, wk, ldw, y + m * ldy + c0,
                        y + (m + 1 < M ? m + 1 : m) * ldy + c0, cols, k == 0);
            }
        }
        for (size_t k = K4; k < K; k++) {  // the last K % 4 rows of w, one at a time
            const float *wk = w + k * ldw + c0;
            for (size_t m = 0; m < M; m++) {
                float xv = x[m * ldx + k];
                float *ym = y + m * ldy + c0;
                if (k == 0)
                    for (size_t c = 0; c < cols; c++) ym[c] = xv * wk[c];
                else
                    for (size_t c = 0; c < cols; c++) ym[c] += xv * wk[c];
            }
        }
    }
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[m, n] = sum_k x[m, k] * w[n, k] (w row-major [N, ldw]: the tied head, rows of the token embedding).
// Two rows of w against four rows of x per pass: 8 accumulators, each w row read from memory once and from L1
// for the next row groups.
void gfk_sgemm_small_nt(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1) {
    size_t K8 = K & ~(size_t)7;
    size_t n = n0;
    for (; n + 2 <= n1; n += 2) {
        const float *w0 = w + n * ldw, *w1 = w0 + ldw;
        for (size_t m = 0; m < M; m += 4) {
            size_t rows = M - m < 4 ? M - m : 4;
            __m256 a[4][2];
            for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (size_t k = 0; k < K8; k += 8) {
                __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
                for (size_t r = 0; r < 4; r++) {
                    if (r < rows) {
                        __m256 xv = _mm256_loadu_ps(x + (m + r) * ldx + k);
                        a[r][0] = _mm256_fmadd_ps(xv, v0, a[r][0]);
                        a[r][1] = _mm256_fmadd_ps(xv, v1, a[r][1]);
                    }
                }
            }
            for (size_t r = 0; r < rows; r++) {
                float s0 = hsum(a[r][0]), s1 = hsum(a[r][1]);
                const float *xr = x + (m + r) * ldx;
                for (size_t k = K8; k < K; k++) {
                    s0 += xr[k] * w0[k];
                    s1 += xr[k] * w1[k];
                }
                y[(m + r) * ldy + n] = s0;
                y[(m + r) * ldy + n + 1] = s1;
            }
        }
    }
    for (; n < n1; n++) {
        const float *w0 = w + n * ldw;
        for (size_t m = 0; m < M; m++) {
            const float *xr = x + m * ldx;
            __m256 a = _mm256_setzero_ps();
            for (size_t k = 0; k < K8; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k), _mm256_loadu_ps(w0 + k), a);
            float s = hsum(a);
            for (size_t k = K8; k < K; k++) s += xr[k] * w0[k];
            y[m * ldy + n] = s;
        }
    }
}
