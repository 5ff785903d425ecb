#include "ckernels.h"
#include "bf16_internal.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gfk_cpu_has_avx512bf16(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int gfk_equal_transposed_u32(const uint32_t *a, const uint32_t *b, size_t rows, size_t cols) {
    enum { BJ = 16 };  // 16 columns of a = one 64-byte line per row i; 16 rows of b streamed side by side
    size_t j0 = 0;
    for (; j0 + BJ <= cols; j0 += BJ) {
        const uint32_t *bb = b + j0 * rows;
        uint32_t diff = 0;
        for (size_t i = 0; i < rows; i++) {
            const uint32_t *ar = a + i * cols + j0;
            for (int k = 0; k < BJ; k++) diff |= ar[k] ^ bb[(size_t)k * rows + i];
        }
        if (diff) return 0;
    }
    for (; j0 < cols; j0++)
        for (size_t i = 0; i < rows; i++)
            if (a[i * cols + j0] != b[j0 * rows + i]) return 0;
    return 1;
}

/* ---- bf16 helpers ------------------------------------------------------------------------------------------- */

/* fp32 → bf16, round to nearest even; NaN stays a (quiet) NaN. Same rule as ConstResolver.roundToBF16. */
static inline uint16_t f2bf(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40u);
    uint32_t r = 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)((b + r) >> 16);
}

static inline float bf2f(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static inline int64_t even_up(int64_t K) { return (K + 1) & ~(int64_t)1; }
static inline int64_t panels(int64_t N) { return (N + 15) / 16; }

size_t gfk_bf16_packed_count(int64_t K, int64_t N) {
    if (K <= 0 || N <= 0) return 0;
    return (size_t)panels(N) * (size_t)even_up(K) * 16;
}

void gfk_bf16_pack(const float *src, int64_t ld, int transposed, int64_t K, int64_t N,
                   uint16_t *dst, int64_t p0, int64_t p1) {
    const int64_t K2 = even_up(K);
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *pp = dst + p * K2 * 16;
        if (transposed) {
            /* src is [N, K]: read each column's K values contiguously. */
            for (int j = 0; j < 16; j++) {
                const int64_t n = p * 16 + j;
                for (int64_t k = 0; k < K2; k++) {
                    const float v = (n < N && k < K) ? src[n * ld + k] : 0.0f;
                    pp[(k >> 1) * 32 + j * 2 + (k & 1)] = f2bf(v);
                }
            }
        } else {
            for (int64_t k = 0; k < K2; k++) {
                for (int j = 0; j < 16; j++) {
                    const int64_t n = p * 16 + j;
                    const float v = (n < N && k < K) ? src[k * ld + n] : 0.0f;
                    pp[(k >> 1) * 32 + j * 2 + (k & 1)] = f2bf(v);
                }
            }
        }
    }
}

void gfk_bf16_unpack_panels(const uint16_t *w, int64_t K, int64_t N, int64_t p0, int64_t p1,
                            float *dst, int64_t ld) {
    (void)N;
    const int64_t K2 = even_up(K);
    const __m256i mask = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int64_t p = p0; p < p1; p++) {
        const __m256i *pw = (const __m256i *)(w + p * K2 * 16);
        float *d = dst + (p - p0) * 16;
        for (int64_t q = 0; q < K2 / 2; q++) {
            const __m256i v0 = _mm256_loadu_si256(pw + 2 * q), v1 = _mm256_loadu_si256(pw + 2 * q + 1);
            float *row = d + (2 * q) * ld;
            _mm256_storeu_ps(row, _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)));
            _mm256_storeu_ps(row + 8, _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)));
            if (2 * q + 1 < K) {
                _mm256_storeu_ps(row + ld, _mm256_castsi256_ps(_mm256_and_si256(v0, mask)));
                _mm256_storeu_ps(row + ld + 8, _mm256_castsi256_ps(_mm256_and_si256(v1, mask)));
            }
        }
    }
}

void gfk_bf16_column(const uint16_t *w, int64_t K, int64_t N, int64_t n, float *dst) {
    (void)N;
    const int64_t K2 = even_up(K);
    const uint16_t *pp = w + (n / 16) * K2 * 16 + (n % 16) * 2;
    for (int64_t k = 0; k < K; k++) dst[k] = bf2f(pp[(k >> 1) * 32 + (k & 1)]);
}

/* ---- AVX2 + FMA kernel (the fallback; compiled for x86-64-v3 like the rest of this file) ---------------------- */

/* Rows r < mb of y[:, panel] = x · W_panel for one 16-column panel. `split` keeps separate accumulators for even
   and odd k (two FMA chains per output vector) — worth it for 1–2 rows, where latency and not throughput bounds
   the loop; 3–4 rows have enough independent chains and need the registers. mb and split are compile-time
   constants at every call site (the function is always inlined), so the row loops unroll. */
static inline __attribute__((always_inline))
void avx2_panel(const float *x, int64_t ldx, const int mb, const int split, int64_t K, const uint16_t *pw,
                float *y, int64_t ldy, int ncols) {
    const __m256i mask = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256 a[4][2], b[4][2];
    for (int r = 0; r < mb; r++) {
        a[r][0] = _mm256_setzero_ps(); a[r][1] = _mm256_setzero_ps();
        b[r][0] = _mm256_setzero_ps(); b[r][1] = _mm256_setzero_ps();
    }
    const __m256i *wp = (const __m256i *)pw;
    const int64_t Q = K / 2;
    for (int64_t q = 0; q < Q; q++) {
        const __m256i v0 = _mm256_loadu_si256(wp + 2 * q), v1 = _mm256_loadu_si256(wp + 2 * q + 1);
        const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
        const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
        const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(v0, mask));
        const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(v1, mask));
        for (int r = 0; r < mb; r++) {
            const __m256 xe = _mm256_broadcast_ss(x + r * ldx + 2 * q);
            const __m256 xo = _mm256_broadcast_ss(x + r * ldx + 2 * q + 1);
            a[r][0] = _mm256_fmadd_ps(xe, e0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(xe, e1, a[r][1]);
            if (split) {
                b[r][0] = _mm256_fmadd_ps(xo, o0, b[r][0]);
                b[r][1] = _mm256_fmadd_ps(xo, o1, b[r][1]);
            } else {
                a[r][0] = _mm256_fmadd_ps(xo, o0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(xo, o1, a[r][1]);
            }
        }
    }
    if (K & 1) {  /* last (unpaired) row k = K−1: only the even halves are real */
        const __m256i v0 = _mm256_loadu_si256(wp + 2 * Q), v1 = _mm256_loadu_si256(wp + 2 * Q + 1);
        const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
        const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
        for (int r = 0; r < mb; r++) {
            const __m256 xe = _mm256_broadcast_ss(x + r * ldx + (K - 1));
            a[r][0] = _mm256_fmadd_ps(xe, e0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(xe, e1, a[r][1]);
        }
    }
    for (int r = 0; r < mb; r++) {
        __m256 s0 = a[r][0], s1 = a[r][1];
        if (split) { s0 = _mm256_add_ps(s0, b[r][0]); s1 = _mm256_add_ps(s1, b[r][1]); }
        float *yr = y + r * ldy;
        if (ncols == 16) {
            _mm256_storeu_ps(yr, s0);
            _mm256_storeu_ps(yr + 8, s1);
        } else {
            float t[16];
            _mm256_storeu_ps(t, s0);
            _mm256_storeu_ps(t + 8, s1);
            memcpy(yr, t, (size_t)ncols * sizeof(float));
        }
    }
}

// `row_invariant`: the last one or two rows use the same single accumulator chain as groups of 3-4 rows instead of
// split (even / odd k) chains, so a row's result does not depend on how many rows the call has.
static void gemm_avx2(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                      int64_t p0, int64_t p1, float *y, int64_t ldy, int row_invariant) {
    const int64_t stride = even_up(K) * 16;
    const int split = row_invariant ? 0 : 1;
    for (int64_t p = p0; p < p1; p++) {
        const uint16_t *pw = w + p * stride;
        const int64_t n0 = p * 16;
        const int ncols = (int)(N - n0 < 16 ? N - n0 : 16);
        int64_t r = 0;
        for (; r + 4 <= M; r += 4) avx2_panel(x + r * ldx, ldx, 4, 0, K, pw, y + r * ldy + n0, ldy, ncols);
        switch (M - r) {
        case 3: avx2_panel(x + r * ldx, ldx, 3, 0, K, pw, y + r * ldy + n0, ldy, ncols); break;
        case 2:
            if (split) avx2_panel(x + r * ldx, ldx, 2, 1, K, pw, y + r * ldy + n0, ldy, ncols);
            else avx2_panel(x + r * ldx, ldx, 2, 0, K, pw, y + r * ldy + n0, ldy, ncols);
            break;
        case 1:
            if (split) avx2_panel(x + r * ldx, ldx, 1, 1, K, pw, y + r * ldy + n0, ldy, ncols);
            else avx2_panel(x + r * ldx, ldx, 1, 0, K, pw, y + r * ldy + n0, ldy, ncols);
            break;
        default: break;
        }
    }
}

/* ---- AVX512-BF16 kernel --------------------------------------------------------------------------------------
 * For CPUs with AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids). The development machine (Zen 3) lacks the
 * instructions, so the dispatcher below runs it only after it agrees with the AVX2 kernel on small products
 * (bf16check.c), and `make kernel-test-static` builds a test to run on such a CPU. It also rounds the activations x
 * to bf16 (vdpbf16ps takes bf16 on both sides), so its results differ from the fallback by about bf16's precision
 * on x.
 * Per group of up to 4 rows and chunk of up to 256 k-pairs: x's (k, k+1) pairs are rounded to bf16 dwords once,
 * then every panel accumulates into y (y holds the partial sums between chunks). */
#define BF16_QCHUNK 256

__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void gemm_avx512bf16(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                            int64_t p0, int64_t p1, float *y, int64_t ldy) {
    const int64_t K2 = even_up(K), Q = K2 / 2;
    uint32_t xb[4][BF16_QCHUNK];
    for (int64_t r0 = 0; r0 < M; r0 += 4) {
        const int mb = (int)(M - r0 < 4 ? M - r0 : 4);
        for (int64_t q0 = 0; q0 < Q; q0 += BF16_QCHUNK) {
            const int qn = (int)(Q - q0 < BF16_QCHUNK ? Q - q0 : BF16_QCHUNK);
            for (int r = 0; r < mb; r++) {
                const float *xr = x + (r0 + r) * ldx;
                for (int i = 0; i < qn; i++) {
                    const int64_t k = 2 * (q0 + i);
                    const uint32_t lo = f2bf(xr[k]);
                    const uint32_t hi = k + 1 < K ? f2bf(xr[k + 1]) : 0;
                    xb[r][i] = lo | (hi << 16);
                }
            }
            for (int64_t p = p0; p < p1; p++) {
                const int64_t n0 = p * 16;
                const int ncols = (int)(N - n0 < 16 ? N - n0 : 16);
                const __mmask16 m = ncols == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << ncols) - 1);
                const uint16_t *pw = w + p * K2 * 16 + q0 * 32;
                __m512 acc[4];
                for (int r = 0; r < mb; r++) {
                    acc[r] = q0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (r0 + r) * ldy + n0);
                }
                for (int i = 0; i < qn; i++) {
                    const __m512i wv = _mm512_loadu_si512((const void *)(pw + i * 32));
                    for (int r = 0; r < mb; r++) {
                        const __m512i xv = _mm512_set1_epi32((int)xb[r][i]);
                        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)xv, (__m512bh)wv);
                    }
                }
                for (int r = 0; r < mb; r++) _mm512_mask_storeu_ps(y + (r0 + r) * ldy + n0, m, acc[r]);
            }
        }
    }
}

void gfk_bf16_kernel_avx512(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                            int64_t p0, int64_t p1, float *y, int64_t ldy) {
    gemm_avx512bf16(x, ldx, M, K, N, w, p0, p1, y, ldy);
}

void gfk_bf16_kernel_avx2(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                          int64_t p0, int64_t p1, float *y, int64_t ldy) {
    gemm_avx2(x, ldx, M, K, N, w, p0, p1, y, ldy, 1);
}

/* ---- dispatch ------------------------------------------------------------------------------------------------
 * The AVX512-BF16 kernel is used only where the CPU has it, it is not disabled (GFNLM_NO_AVX512BF16=1), and the
 * start-up self-check passed. A failed check leaves its message for the library's log (taken once). */

static int kernel_state = -1;  /* -1 unknown, 0 fallback, 1 the checked AVX512-BF16 kernel (avx512_kernel) */
static gfk_bf16_kernel_fn avx512_kernel = gfk_bf16_kernel_avx512;
static int test_mode = -1;     /* gfk_bf16_test_selfcheck; -1: GFNLM_TEST_BF16_SELFCHECK decides */
static char selfcheck_message[512];
static int message_pending;
static pthread_mutex_t detect_lock = PTHREAD_MUTEX_INITIALIZER;

/* The test hook's failing kernel: the emulation with one output off by 0.5. */
static void broken_kernel(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                          int64_t p0, int64_t p1, float *y, int64_t ldy) {
    gfk_bf16_kernel_emulated(x, ldx, M, K, N, w, p0, p1, y, ldy);
    if (M > 0 && p0 < p1) y[p0 * 16] += 0.5f;
}

static int current_test_mode(void) {
    if (test_mode >= 0) return test_mode;
    const char *e = getenv("GFNLM_TEST_BF16_SELFCHECK");
    if (e && strcmp(e, "pass") == 0) return 1;
    if (e && strcmp(e, "mismatch") == 0) return 2;
    return 0;
}

/* Called with detect_lock held. */
static int detect(void) {
    const char *e = getenv("GFNLM_NO_AVX512BF16");
    if (e && e[0] && strcmp(e, "0") != 0) return 0;
    const int mode = current_test_mode();
    gfk_bf16_kernel_fn candidate = gfk_bf16_kernel_avx512;
    if (mode == 1) candidate = gfk_bf16_kernel_emulated;
    else if (mode == 2) candidate = broken_kernel;
    else if (!gfk_cpu_has_avx512bf16()) return 0;
    char why[400];
    if (!gfk_bf16_selfcheck(candidate, why, sizeof why)) {
        snprintf(selfcheck_message, sizeof selfcheck_message, "%s; bf16 products use the AVX2 kernel instead%s", why,
                 mode ? " (test hook)" : "");
        message_pending = 1;
        return 0;
    }
    avx512_kernel = candidate;
    return 1;
}

int gfk_bf16_kernel_is_avx512(void) {
    int s = __atomic_load_n(&kernel_state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        pthread_mutex_lock(&detect_lock);
        s = kernel_state;
        if (s < 0) {
            s = detect();
            __atomic_store_n(&kernel_state, s, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&detect_lock);
    }
    return s;
}

int gfk_bf16_set_avx512(int enable) {
    pthread_mutex_lock(&detect_lock);
    const int s = enable ? detect() : 0;
    __atomic_store_n(&kernel_state, s, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&detect_lock);
    return s;
}

int gfk_bf16_test_selfcheck(int mode) {
    pthread_mutex_lock(&detect_lock);
    test_mode = mode;
    avx512_kernel = gfk_bf16_kernel_avx512;
    message_pending = 0;
    const int s = detect();
    __atomic_store_n(&kernel_state, s, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&detect_lock);
    return s;
}

int gfk_bf16_selfcheck_take_message(char *buf, size_t capacity) {
    gfk_bf16_kernel_is_avx512();   /* the check runs at the first use */
    pthread_mutex_lock(&detect_lock);
    const int pending = message_pending;
    if (pending && capacity > 0) snprintf(buf, capacity, "%s", selfcheck_message);
    message_pending = 0;
    pthread_mutex_unlock(&detect_lock);
    return pending;
}

void gfk_bf16_gemm(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                   int64_t p0, int64_t p1, float *y, int64_t ldy) {
    gfk_bf16_gemm_rows(x, ldx, M, K, N, w, p0, p1, y, ldy, 0);
}

void gfk_bf16_gemm_rows(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                        int64_t p0, int64_t p1, float *y, int64_t ldy, int row_invariant) {
    if (M <= 0 || N <= 0 || p0 >= p1) return;
    if (K <= 0) {
        for (int64_t r = 0; r < M; r++) {
            for (int64_t n = p0 * 16; n < p1 * 16 && n < N; n++) y[r * ldy + n] = 0;
        }
        return;
    }
    if (gfk_bf16_kernel_is_avx512()) {
        avx512_kernel(x, ldx, M, K, N, w, p0, p1, y, ldy);
    } else {
        gemm_avx2(x, ldx, M, K, N, w, p0, p1, y, ldy, row_invariant);
    }
}
