/* Standalone test of the block-quantized kernels' C layer (`make quant-kernel-test`), below what the Swift tests
   reach:
   - the fp16 scale conversions: half_to_float for all 65536 inputs and float_to_half for every fp32 near an fp16
     rounding boundary plus random ones, against the CPU's F16C instructions (skipped without F16C), and the
     clamping of out-of-range scales;
   - for Q8, Q4 and Q6, K from 1 to 416 (tails of every length mod 32 and mod 8), 13 columns, 1–9 and 67 rows: the
     packing's error bound per weight, the three products (per-column integer, panel integer, fp32 activations)
     against double precision on the rounded operands, AVX2 against portable bit for bit, the two integer kernels
     against each other bit for bit, and each row alone against the same row in the batch (row invariance).
   When changing a kernel, also build it with -fsanitize=address (same sources): no kernel may read past a row or a
   buffer. Exit status 0 = passed, 1 = a failure. */
#include "quant_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int vnni_runs[3];   // products checked per VNNI instance (emulated, AVX-VNNI, AVX512-VNNI)

#define CHECK(cond, ...)                                                                                          \
    do {                                                                                                          \
        if (!(cond)) {                                                                                            \
            if (failures < 30) { printf("FAIL: "); printf(__VA_ARGS__); printf("\n"); }                          \
            failures++;                                                                                           \
        }                                                                                                         \
    } while (0)

static uint32_t rng_state = 12345;
static uint32_t next_u32(void) {  // xorshift32: the same sequence everywhere
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
static float uniform(void) { return (float)(next_u32() >> 8) / 16777216.0f - 0.5f; }

static float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

__attribute__((target("f16c"))) static void check_conversions(void) {
    if (!__builtin_cpu_supports("f16c")) {
        printf("fp16 conversions: no F16C on this CPU, compared against nothing (skipped)\n");
        return;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = half_to_float((uint16_t)h), b = _cvtsh_ss((uint16_t)h);
        CHECK(!memcmp(&a, &b, 4) || (isnan(a) && isnan(b)), "half_to_float(%04x) = %a, F16C %a", h, a, b);
    }
    // Every fp16 value's fp32 neighbourhood: just below, at and just above each half-way point between fp16 values
    // (ties to even), for normal and subnormal fp16, both signs; then random fp32 bit patterns.
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const float lo = half_to_float((uint16_t)h), hi = half_to_float((uint16_t)(h + 1));
        const float mid = lo + (hi - lo) / 2;  // exact: fp16 values are far from fp32's precision limit
        uint32_t m;
        memcpy(&m, &mid, 4);
        for (int d = -2; d <= 2; d++)
            for (int s = 0; s < 2; s++) {
                const float f = bits_to_float((m + (uint32_t)d) ^ (s ? 0x80000000u : 0));
                CHECK(float_to_half(f) == _cvtss_sh(f, 0), "float_to_half(%a) = %04x, F16C %04x", f, float_to_half(f),
                      _cvtss_sh(f, 0));
            }
    }
    for (int i = 0; i < 1000000; i++) {
        const float f = bits_to_float(next_u32());
        if (isnan(f) || fabsf(f) >= 65520.0f) continue;
        CHECK(float_to_half(f) == _cvtss_sh(f, 0), "float_to_half(%a) = %04x, F16C %04x", f, float_to_half(f),
              _cvtss_sh(f, 0));
    }
    // Scales must stay finite: beyond fp16's range the largest finite value of the sign.
    CHECK(float_to_half(1e9f) == 0x7bff && float_to_half(-INFINITY) == 0xfbff && float_to_half(65519.0f) == 0x7bff,
          "out-of-range scales clamp to ±65504");
}

/* Σ_k x[k]·ŵ[k, n] in double, ŵ the stored weight (value × its fp16 scale). */
static double reference(int f, const uint8_t *qs, const uint16_t *sc, int64_t K, int64_t n, const float *x,
                        double *magnitude) {
    const int64_t rb = gfk_q_row_bytes(f, K), nb = gfk_q_blocks(K);
    double s = 0, m = 0;
    for (int64_t k = 0; k < K; k++) {
        const double t = (double)x[k] * q_value(f, qs + n * rb, k) * half_to_float(sc[n * nb + k / QK]);
        s += t;
        m += fabs(t);
    }
    *magnitude = m;
    return s;
}

enum { N = 13, MAX_M = 67 };

static void check_format(int f, int64_t K) {
    const char *name = f == GFK_Q8 ? "q8" : f == GFK_Q4 ? "q4" : "q6";
    const int64_t rb = gfk_q_row_bytes(f, K), nb = gfk_q_blocks(K), xb = gfk_q_row_bytes(GFK_Q8, K);
    uint8_t *qs = malloc((size_t)(rb * N));
    uint16_t *sc = malloc((size_t)(nb * N) * sizeof(uint16_t));
    float *w = malloc((size_t)(K * N) * sizeof(float)), *wd = malloc((size_t)(K * N) * sizeof(float));
    float *wd2 = malloc((size_t)(K * N) * sizeof(float));
    for (int64_t i = 0; i < K * N; i++) w[i] = uniform() * (i % 11 == 0 ? 8.0f : 1.0f);
    gfk_q_set_avx2(1);
    gfk_q_pack(f, w, N, 0, K, N, qs, sc, 0, N);
    gfk_q_unpack_rows(f, qs, sc, K, 0, N, wd, K);
    gfk_q_set_avx2(0);
    gfk_q_unpack_rows(f, qs, sc, K, 0, N, wd2, K);
    CHECK(!memcmp(wd, wd2, (size_t)(K * N) * sizeof(float)), "%s K %ld: unpacking, AVX2 vs portable", name, (long)K);
    // Per weight: half a step for Q8; a whole step for Q4 / Q6, whose top value is clamped.
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            const float d = fabsf(half_to_float(sc[n * nb + k / QK]));
            const double e = fabs((double)wd[n * K + k] - w[k * N + n]);
            CHECK(e <= d * (f == GFK_Q8 ? 0.5 : 1.0) * 1.0001 + 1e-12, "%s K %ld [%ld, %ld]: error %g, scale %g", name,
                  (long)K, (long)k, (long)n, e, d);
        }
    static const int rows[] = {1, 2, 3, 4, 5, 7, 9, MAX_M};
    for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
        const int M = rows[ri];
        float *x = malloc((size_t)(M * K) * sizeof(float)), *xq = malloc((size_t)(M * K) * sizeof(float));
        int8_t *qx = malloc((size_t)(M * xb));
        float *dx = malloc((size_t)(M * nb) * sizeof(float));
        int32_t *xs = malloc((size_t)(M * nb) * sizeof(int32_t));
        float *y[6];
        for (int i = 0; i < 6; i++) y[i] = malloc((size_t)(M * N) * sizeof(float));
        for (int64_t i = 0; i < M * K; i++) x[i] = uniform();
        gfk_q_set_avx2(1);
        gfk_q_quantize_activations(x, K, M, K, qx, dx);
        gfk_q_activation_sums(qx, M, K, xs);
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) xq[m * K + k] = (float)qx[m * xb + k] * dx[m * nb + k / QK];
        for (int avx2 = 1; avx2 >= 0; avx2--) {
            gfk_q_set_avx2(avx2);
            float **o = y + (avx2 ? 0 : 3);
            gfk_q_gemm_int(f, qx, dx, xs, M, K, qs, sc, 0, N, o[0], N);
            gfk_q_gemm_int_panel(f, qx, dx, xs, M, K, qs, sc, 0, N, o[1], N);
            gfk_q_gemm_dequant(f, x, K, M, K, qs, sc, 0, N, o[2], N);
        }
        gfk_q_set_avx2(1);
        for (int i = 0; i < 3; i++)
            CHECK(!memcmp(y[i], y[i + 3], (size_t)(M * N) * sizeof(float)), "%s K %ld M %d kernel %d: AVX2 vs portable",
                  name, (long)K, M, i);
        // The VNNI panel kernels: the emulated instruction everywhere, the real ones where the CPU has them; each
        // must give the AVX2 panel kernel's bits, on the whole batch and on columns 3..N (a panel split mid-way).
        for (int v = 0; v < 3; v++) {
            if ((v == 1 && !gfk_cpu_has_avx_vnni()) || (v == 2 && !gfk_cpu_has_avx512_vnni())) continue;
            static const char *vname[] = {"emulated VNNI", "AVX-VNNI", "AVX512-VNNI"};
            void (*const kern[])(int, const int8_t *, const float *, const int32_t *, int64_t, int64_t,
                                 const uint8_t *, const uint16_t *, int64_t, int64_t, float *, int64_t) = {
                gfk_q_gemm_int_panel_vnni_emulated, gfk_q_gemm_int_panel_avx_vnni, gfk_q_gemm_int_panel_avx512_vnni};
            float *yv = y[3];   // the portable results are checked above; reuse the buffer
            kern[v](f, qx, dx, xs, M, K, qs, sc, 0, N, yv, N);
            CHECK(!memcmp(yv, y[1], (size_t)(M * N) * sizeof(float)), "%s K %ld M %d: %s vs AVX2 panel", name,
                  (long)K, M, vname[v]);
            for (int64_t i = 0; i < M * N; i++) yv[i] = NAN;
            kern[v](f, qx, dx, xs, M, K, qs, sc, 3, N, yv, N);
            int same = 1;
            for (int64_t m = 0; m < M; m++)
                same &= !memcmp(yv + m * N + 3, y[1] + m * N + 3, (size_t)(N - 3) * sizeof(float)) && isnan(yv[m * N]);
            CHECK(same, "%s K %ld M %d: %s on columns 3..%d", name, (long)K, M, vname[v], N);
            vnni_runs[v]++;
        }
        // The two integer kernels share one arithmetic: decoding may take either by its number of rows.
        CHECK(!memcmp(y[0], y[1], (size_t)(M * N) * sizeof(float)), "%s K %ld M %d: per-column vs panel kernel", name,
              (long)K, M);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double mq, mx;
                const double rq = reference(f, qs, sc, K, n, xq + m * K, &mq), rx = reference(f, qs, sc, K, n, x + m * K, &mx);
                const double e[3] = {fabs(y[0][m * N + n] - rq) / (mq + 1e-30), fabs(y[1][m * N + n] - rq) / (mq + 1e-30),
                                     fabs(y[2][m * N + n] - rx) / (mx + 1e-30)};
                for (int i = 0; i < 3; i++)
                    CHECK(e[i] <= 2e-6, "%s K %ld M %d [%ld, %ld] kernel %d: relative error %g", name, (long)K, M,
                          (long)m, (long)n, i, e[i]);
            }
        for (int64_t m = 0; m < M; m++) {  // each row alone, as in the batch
            float z[3][N];
            gfk_q_gemm_int(f, qx + m * xb, dx + m * nb, xs + m * nb, 1, K, qs, sc, 0, N, z[0], N);
            gfk_q_gemm_int_panel(f, qx + m * xb, dx + m * nb, xs + m * nb, 1, K, qs, sc, 0, N, z[1], N);
            gfk_q_gemm_dequant(f, x + m * K, K, 1, K, qs, sc, 0, N, z[2], N);
            for (int i = 0; i < 3; i++)
                CHECK(!memcmp(z[i], y[i] + m * N, sizeof z[i]), "%s K %ld M %d row %ld kernel %d: row invariance", name,
                      (long)K, M, (long)m, i);
        }
        free(x); free(xq); free(qx); free(dx); free(xs);
        for (int i = 0; i < 6; i++) free(y[i]);
    }
    free(qs); free(sc); free(w); free(wd); free(wd2);
}

// The dispatcher's self-check: the emulated kernel passes, a kernel off by one ulp in one output is refused with a
// message naming the product, and the test hook's modes lead to the expected kernel.
static void check_selfcheck(void) {
    char why[400] = "";
    CHECK(gfk_q_vnni_selfcheck(gfk_q_gemm_int_panel_vnni_emulated, why, sizeof why), "self-check refused the emulation: %s", why);
    CHECK(gfk_q_vnni_test(1) == 1 && strstr(gfk_q_panel_kernel_name(), "emulated"), "hook mode 1: %s", gfk_q_panel_kernel_name());
    CHECK(!gfk_q_vnni_selfcheck_take_message(why, sizeof why), "a message after a passed check");
    CHECK(gfk_q_vnni_test(2) == 0 && !strcmp(gfk_q_panel_kernel_name(), "AVX2"), "hook mode 2: %s", gfk_q_panel_kernel_name());
    CHECK(gfk_q_vnni_selfcheck_take_message(why, sizeof why) && strstr(why, "self-check") && strstr(why, "int8 product"),
          "message after a failed check: %s", why);
    CHECK(!gfk_q_vnni_selfcheck_take_message(why, sizeof why), "the message twice");
    gfk_q_vnni_test(0);
    printf("panel kernel on this CPU: %s\n", gfk_q_panel_kernel_name());
}

int main(void) {
    check_conversions();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
        printf("no AVX2/FMA/F16C: the AVX2-vs-portable comparisons compare the portable kernels with themselves\n");
    for (int64_t K = 1; K <= 416; K += 23)
        for (int f = GFK_Q8; f <= GFK_Q6; f++) check_format(f, K);
    for (int f = GFK_Q8; f <= GFK_Q6; f++) check_format(f, 2113);   // more blocks than one panel holds
    check_selfcheck();
    printf("VNNI panel kernels checked on %d products emulated, %d AVX-VNNI, %d AVX512-VNNI%s\n", vnni_runs[0],
           vnni_runs[1], vnni_runs[2],
           vnni_runs[1] + vnni_runs[2] ? "" : " (this CPU has neither: run this binary on one that has)");
    if (failures) {
        printf("quant kernel test: %d failures\n", failures);
        return 1;
    }
    printf("quant kernel test: passed\n");
    return 0;
}
