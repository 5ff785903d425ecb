/* The many-row integer product on CPUs with VNNI (vpdpbusd: 4 byte products summed into each int32 lane in one
   instruction, where AVX2 needs vpmaddubsw, vpmaddwd, vpaddd and a sign fix-up), and its choice at run time.
   Two encodings of the same 256-bit kernel (quant_int_vnni_body.h): AVX-VNNI (VEX; Alder Lake and later, Zen 5) and
   AVX512-VNNI with AVX512VL (EVEX; Cascade Lake, Ice Lake, Sapphire Rapids, Zen 4). A third instance replaces the
   instruction with an exact AVX2 emulation: it runs here, on CPUs without VNNI, so that the tests exercise the
   kernel's data flow (panels, offsets, tails) on every machine.

   The VNNI kernels produce the AVX2 panel kernel's results bit for bit (the block sums are exact integers either
   way). Before one is used it must show that on small products of every format, ragged shapes included, at its first
   use (gfk_q_vnni_kernel); a kernel that fails keeps the AVX2 one in service and leaves a message for the library's
   log. GFNLM_NO_VNNI=1 keeps AVX2 without trying. */
#include "quant_panel.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the three instances ---------------------------------------------------------------------------------- */

// vpdpbusd in AVX2: the unsigned bytes of u and the signed bytes of s widened to int16 by parity (even bytes: low
// halves of the int16 lanes; odd: high halves), each vpmaddwd summing two of a lane's four products. Exact:
// |255·(−128)| and two such products fit int16 and int32.
AVX2 INLINE __m256i dpbusd_emulated(__m256i acc, __m256i u, __m256i s) {
    const __m256i u_even = _mm256_and_si256(u, _mm256_set1_epi16(0x00ff)), u_odd = _mm256_srli_epi16(u, 8);
    const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd)));
}

#define VNNI_TARGET AVX2
#define VNNI_DPBUSD(a, u, s) dpbusd_emulated(a, u, s)
#define VNNI_NAME(x) vnni_##x##_emulated
#include "quant_int_vnni_body.h"
#undef VNNI_TARGET
#undef VNNI_DPBUSD
#undef VNNI_NAME

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
#define VNNI_DPBUSD(a, u, s) _mm256_dpbusd_avx_epi32(a, u, s)
#define VNNI_NAME(x) vnni_##x##_vex
#include "quant_int_vnni_body.h"
#undef VNNI_TARGET
#undef VNNI_DPBUSD
#undef VNNI_NAME

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
#define VNNI_DPBUSD(a, u, s) _mm256_dpbusd_epi32(a, u, s)
#define VNNI_NAME(x) vnni_##x##_evex
#include "quant_int_vnni_body.h"
#undef VNNI_TARGET
#undef VNNI_DPBUSD
#undef VNNI_NAME

void gfk_q_gemm_int_panel_vnni_emulated(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                        int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                        float *y, int64_t ldy) {
    vnni_gemm_emulated(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
}
void gfk_q_gemm_int_panel_avx_vnni(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                   int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                   float *y, int64_t ldy) {
    vnni_gemm_vex(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
}
void gfk_q_gemm_int_panel_avx512_vnni(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                      int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                      float *y, int64_t ldy) {
    vnni_gemm_evex(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
}

/* ---- what the CPU and the OS offer ------------------------------------------------------------------------ */

// XCR0, the register states the OS saves on a context switch; 0 where the OS does not expose it.
static uint64_t os_saved_states(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   // OSXSAVE
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

int gfk_cpu_has_avx_vnni(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7 || (os_saved_states() & 0x6) != 0x6) return 0;   // SSE and AVX state
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 4) & 1;
}

int gfk_cpu_has_avx512_vnni(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7 || (os_saved_states() & 0xe6) != 0xe6) return 0;   // + opmask and ZMM state
    __cpuid_count(7, 0, a, b, c, d);
    const int f = (b >> 16) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    return f && vl && vnni;
}

/* ---- the start-up self-check ------------------------------------------------------------------------------ */

static uint32_t check_rng(uint32_t *state) {   // xorshift32: the same data on every machine
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

// One product of `format` with the candidate and the AVX2 kernel, compared bit for bit. 0 = same; -1 = no memory.
static int compare_once(gfk_q_panel_fn candidate, int format, int64_t M, int64_t K, int64_t N, uint32_t *state,
                        char *why, size_t capacity) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    float *w = malloc((size_t)(K * N) * sizeof(float)), *x = malloc((size_t)(M * K) * sizeof(float));
    uint8_t *qs = malloc((size_t)(rb * N));
    uint16_t *sc = malloc((size_t)(nb * N) * sizeof(uint16_t));
    int8_t *qx = malloc((size_t)(M * xb));
    float *dx = malloc((size_t)(M * nb) * sizeof(float));
    int32_t *xsum = malloc((size_t)(M * nb) * sizeof(int32_t));
    float *want = malloc((size_t)(M * N) * sizeof(float)), *got = malloc((size_t)(M * N) * sizeof(float));
    int result = -1;
    if (w && x && qs && sc && qx && dx && xsum && want && got) {
        // Uniform values with every 7th one large, so that blocks reach the extreme codes (±127, 0 and 15, 63).
        for (int64_t i = 0; i < K * N; i++)
            w[i] = ((float)(check_rng(state) >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 16.0f : 1.0f);
        for (int64_t i = 0; i < M * K; i++)
            x[i] = ((float)(check_rng(state) >> 8) / 16777216.0f - 0.5f) * (i % 7 == 3 ? 16.0f : 1.0f);
        gfk_q_pack(format, w, N, 0, K, N, qs, sc, 0, N);
        gfk_q_quantize_activations(x, K, M, K, qx, dx);
        gfk_q_activation_sums(qx, M, K, xsum);
        gfk_q_gemm_int_panel_avx2(format, qx, dx, xsum, M, K, qs, sc, 0, N, want, N);
        candidate(format, qx, dx, xsum, M, K, qs, sc, 0, N, got, N);
        result = 0;
        for (int64_t i = 0; i < M * N && result == 0; i++) {
            if (memcmp(want + i, got + i, sizeof(float)) != 0) {
                snprintf(why, capacity, "%s product %ld × %ld × %ld, output [%ld, %ld]: %.9g instead of %.9g",
                         format == GFK_Q8 ? "int8" : format == GFK_Q4 ? "4-bit" : "6-bit", (long)M, (long)K, (long)N,
                         (long)(i / N), (long)(i % N), got[i], want[i]);
                result = 1;
            }
        }
    }
    free(w); free(x); free(qs); free(sc); free(qx); free(dx); free(xsum); free(want); free(got);
    return result;
}

int gfk_q_vnni_selfcheck(gfk_q_panel_fn candidate, char *why, size_t capacity) {
    // Rows: one, a partial register tile, several tiles; K: one block, a short last block, more blocks than one
    // panel holds (the accumulators parked in y between chunks of k); columns: one, a partial panel, several.
    static const int64_t shapes[][3] = {{1, 32, 8}, {3, 77, 13}, {6, 2113, 19}, {9, 130, 1}};
    uint32_t state = 0x9e3779b9u;
    for (int format = GFK_Q8; format <= GFK_Q6; format++) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int r = compare_once(candidate, format, shapes[i][0], shapes[i][1], shapes[i][2], &state, why, capacity);
            if (r < 0) { snprintf(why, capacity, "no memory for the self-check"); return 0; }
            if (r > 0) return 0;
        }
    }
    return 1;
}

/* ---- dispatch --------------------------------------------------------------------------------------------- */

static int vnni_state = -1;            // -1 not decided, 0 AVX2, 1 vnni_kernel
static gfk_q_panel_fn vnni_kernel;
static const char *vnni_name = "";
static int vnni_mode = -1;             // gfk_q_vnni_test; -1: GFNLM_TEST_VNNI_SELFCHECK decides
static char message[640];
static int message_pending;
static pthread_mutex_t vnni_lock = PTHREAD_MUTEX_INITIALIZER;

// The test hook's failing kernel: the emulation with one output of every product off by one ulp.
static void broken_kernel(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                          const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    vnni_gemm_emulated(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
    if (M > 0 && n0 < n1) y[n0] = nextafterf(y[n0], INFINITY);   // row 0, the first column asked for
}

static int current_mode(void) {
    if (vnni_mode >= 0) return vnni_mode;
    const char *e = getenv("GFNLM_TEST_VNNI_SELFCHECK");
    if (e && strcmp(e, "pass") == 0) return 1;
    if (e && strcmp(e, "mismatch") == 0) return 2;
    return 0;
}

// Called with vnni_lock held.
static int detect(void) {
    vnni_kernel = NULL;
    vnni_name = "";
    const char *off = getenv("GFNLM_NO_VNNI");
    if ((off && off[0] && strcmp(off, "0") != 0) || !gfk_q_kernel_is_avx2()) return 0;
    const int mode = current_mode();
    gfk_q_panel_fn candidate;
    const char *name;
    if (mode == 1) { candidate = gfk_q_gemm_int_panel_vnni_emulated; name = "VNNI (emulated, test hook)"; }
    else if (mode == 2) { candidate = broken_kernel; name = "VNNI (broken, test hook)"; }
    else if (gfk_cpu_has_avx512_vnni()) { candidate = gfk_q_gemm_int_panel_avx512_vnni; name = "AVX512-VNNI"; }
    else if (gfk_cpu_has_avx_vnni()) { candidate = gfk_q_gemm_int_panel_avx_vnni; name = "AVX-VNNI"; }
    else return 0;
    char why[300];
    if (!gfk_q_vnni_selfcheck(candidate, why, sizeof why)) {
        snprintf(message, sizeof message,
                 "the %s integer kernel failed its self-check (%s); quantized products use the AVX2 kernel instead",
                 name, why);
        message_pending = 1;
        return 0;
    }
    vnni_kernel = candidate;
    vnni_name = name;
    return 1;
}

gfk_q_panel_fn gfk_q_vnni_kernel(void) {
    int s = __atomic_load_n(&vnni_state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        pthread_mutex_lock(&vnni_lock);
        s = vnni_state;
        if (s < 0) {
            s = detect();
            __atomic_store_n(&vnni_state, s, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&vnni_lock);
    }
    return s ? vnni_kernel : NULL;
}

const char *gfk_q_panel_kernel_name(void) {
    if (!gfk_q_kernel_is_avx2()) return "portable";
    return gfk_q_vnni_kernel() ? vnni_name : "AVX2";
}

int gfk_q_set_vnni(int enable) {
    pthread_mutex_lock(&vnni_lock);
    const int s = enable ? detect() : 0;
    if (!s) vnni_kernel = NULL;
    __atomic_store_n(&vnni_state, s, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vnni_lock);
    return s;
}

int gfk_q_vnni_test(int mode) {
    pthread_mutex_lock(&vnni_lock);
    vnni_mode = mode;
    message_pending = 0;
    const int s = detect();
    __atomic_store_n(&vnni_state, s, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vnni_lock);
    return s;
}

int gfk_q_vnni_selfcheck_take_message(char *buf, size_t capacity) {
    gfk_q_vnni_kernel();   // the check runs at the first use
    pthread_mutex_lock(&vnni_lock);
    const int pending = message_pending;
    if (pending && capacity > 0) snprintf(buf, capacity, "%s", message);
    message_pending = 0;
    pthread_mutex_unlock(&vnni_lock);
    return pending;
}
