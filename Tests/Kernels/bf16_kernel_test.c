/* Standalone test of the bf16 product's kernels, built statically (`make kernel-test-static` →
   build/kernel-test-static) so the one file can be copied to any x86-64 Linux machine and run there with nothing
   installed. On a CPU with AVX512-BF16 it runs the AVX512-BF16 kernel — which the development machines cannot —
   against the plain-C emulation of its arithmetic (tight bound) and the AVX2 kernel (bf16 bound), over shapes that
   cover odd K, several 256-pair chunks, partial panels, panel sub-ranges and a leading dimension wider than N; and
   the library's start-up self-check on it. Without the instructions it checks the self-check's comparator (the
   emulation passes, a wrong result fails) and reports the AVX512-BF16 part as skipped. Exit status 0 = passed or
   skipped, 1 = a failure. */
#include "bf16_internal.h"
#include "ckernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

/* A plausible kernel bug: the last row of W (an odd K's unpaired row, or a chunk's tail) left out. */
static void broken(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w, int64_t p0,
                   int64_t p1, float *y, int64_t ldy) {
    float *w_bits = malloc(sizeof(float) * (size_t)(K * 16 * (p1 - p0)));
    gfk_bf16_unpack_panels(w, K, N, p0, p1, w_bits, 16 * (p1 - p0));
    for (int64_t r = 0; r < M; r++) {
        for (int64_t n = p0 * 16; n < p1 * 16 && n < N; n++) {
            float acc = 0;
            for (int64_t k = 0; k + 1 < K; k++) acc += x[r * ldx + k] * w_bits[k * 16 * (p1 - p0) + n - p0 * 16];
            y[r * ldy + n] = acc;
        }
    }
    free(w_bits);
}

static void comparator_checks(void) {
    char msg[512];
    if (!gfk_bf16_selfcheck(gfk_bf16_kernel_emulated, msg, sizeof msg)) {
        printf("FAIL the self-check refuses the emulated AVX512-BF16 arithmetic: %s\n", msg);
        failures++;
    } else {
        printf("ok   the self-check accepts the emulated AVX512-BF16 arithmetic\n");
    }
    if (gfk_bf16_selfcheck(broken, msg, sizeof msg)) {
        printf("FAIL the self-check accepts a kernel that leaves out the last row of W\n");
        failures++;
    } else {
        printf("ok   the self-check refuses a kernel that leaves out the last row of W (%.100s…)\n", msg);
    }
}

/* y (M × ldy, NaN-filled) from panels p0..<p1 of the candidate and the reference, within bound·Σ|x·w| per output;
   columns outside the panels and beyond N must stay untouched. */
static int compare(gfk_bf16_kernel_fn candidate, gfk_bf16_kernel_fn reference, double relative, int64_t M, int64_t K,
                   int64_t N, int64_t p0, int64_t p1, int64_t ldy, uint64_t seed, const char *what) {
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *wf = malloc(sizeof(float) * (size_t)(K * N));
    float *yc = malloc(sizeof(float) * (size_t)(M * ldy)), *yr = malloc(sizeof(float) * (size_t)(M * ldy));
    uint16_t *w = malloc(sizeof(uint16_t) * gfk_bf16_packed_count(K, N));
    float *wu = malloc(sizeof(float) * (size_t)(K * 16 * ((N + 15) / 16)));
    int ok = 1;
    for (int64_t i = 0; i < M * K; i++) x[i] = gfk_bf16_test_value(&seed);
    for (int64_t i = 0; i < K * N; i++) wf[i] = gfk_bf16_test_value(&seed);
    gfk_bf16_pack(wf, N, 0, K, N, w, 0, (N + 15) / 16);
    const int64_t P = (N + 15) / 16;
    gfk_bf16_unpack_panels(w, K, N, 0, P, wu, 16 * P);
    for (int64_t i = 0; i < M * ldy; i++) yc[i] = yr[i] = NAN;
    candidate(x, K, M, K, N, w, p0, p1, yc, ldy);
    reference(x, K, M, K, N, w, p0, p1, yr, ldy);
    for (int64_t r = 0; r < M && ok; r++) {
        for (int64_t n = 0; n < ldy && ok; n++) {
            const float c = yc[r * ldy + n], e = yr[r * ldy + n];
            const int inside = n < N && n >= p0 * 16 && n < p1 * 16;
            if (!inside) {
                if (!isnan(c)) {
                    printf("FAIL %s M=%lld K=%lld N=%lld panels %lld..<%lld: wrote column %lld outside them\n", what,
                           (long long)M, (long long)K, (long long)N, (long long)p0, (long long)p1, (long long)n);
                    ok = 0;
                }
                continue;
            }
            double magnitude = 0;
            for (int64_t k = 0; k < K; k++) magnitude += fabs((double)x[r * K + k] * wu[k * 16 * P + n]);
            const double bound = magnitude * relative + 1e-30;
            if (!(fabs((double)c - e) <= bound)) {
                printf("FAIL %s M=%lld K=%lld N=%lld panels %lld..<%lld: y[%lld,%lld] = %.9g, expected %.9g (bound %.3g)\n",
                       what, (long long)M, (long long)K, (long long)N, (long long)p0, (long long)p1, (long long)r,
                       (long long)n, c, e, bound);
                ok = 0;
            }
        }
    }
    free(x); free(wf); free(yc); free(yr); free(w); free(wu);
    if (!ok) failures++;
    return ok;
}

int main(void) {
    comparator_checks();
    if (!gfk_cpu_has_avx512bf16()) {
        printf("SKIP this CPU has no AVX512-BF16 (avx512f + avx512vl + avx512bf16): the AVX512-BF16 kernel was not run. "
               "Copy this binary to such a CPU (Zen 4, Cooper Lake, Sapphire Rapids or later) and run it there.\n");
        printf("kernel-test: %s\n", failures ? "FAILED" : "comparator ok, AVX512-BF16 part skipped");
        return failures ? 1 : 0;
    }
    char msg[512];
    if (gfk_bf16_selfcheck(gfk_bf16_kernel_avx512, msg, sizeof msg)) {
        printf("ok   the start-up self-check passes on this CPU's AVX512-BF16 kernel\n");
    } else {
        printf("FAIL the start-up self-check: %s\n", msg);
        failures++;
    }
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 8, 9};
    static const int64_t Ks[] = {1, 2, 3, 31, 32, 33, 511, 512, 513, 1030};
    static const int64_t Ns[] = {1, 15, 16, 17, 47, 64};
    int cases = 0;
    uint64_t seed = 12345;
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++) {
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++) {
            for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
                const int64_t M = Ms[a], K = Ks[b], N = Ns[c], P = (N + 15) / 16;
                seed += 7919;
                /* the same rounded activations: only the summation order differs */
                compare(gfk_bf16_kernel_avx512, gfk_bf16_kernel_emulated, (double)(K + 2) * 0x1p-23, M, K, N, 0, P,
                        N + 3, seed, "avx512 vs emulation");
                /* the AVX2 kernel keeps fp32 activations: bf16's precision on x */
                compare(gfk_bf16_kernel_avx512, gfk_bf16_kernel_avx2, 1.0 / 256 + (double)K * 0x1p-23, M, K, N, 0, P,
                        N, seed, "avx512 vs avx2");
                if (P > 1) compare(gfk_bf16_kernel_avx512, gfk_bf16_kernel_emulated, (double)(K + 2) * 0x1p-23, M, K,
                                   N, 1, P, N, seed, "avx512 vs emulation, panel sub-range");
                cases++;
            }
        }
    }
    printf("%s %d shapes compared against the emulation and the AVX2 kernel\n", failures ? "FAIL" : "ok  ", cases);
    printf("kernel-test: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
