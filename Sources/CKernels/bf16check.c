/* The AVX512-BF16 kernel is chosen at run time on CPUs that have the instructions, which the machines this library
   is developed and tested on may lack. So before it is used it must agree with the AVX2 kernel on small products
   (gfk_bf16_selfcheck, run once by the dispatcher in ckernels.c); if it does not, the dispatcher keeps the AVX2
   kernel and leaves a message for the library's log. */
#include "bf16_internal.h"
#include "ckernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline float bf16_round(float f) {   /* fp32 → bf16 → fp32, nearest even (as f2bf in ckernels.c) */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;   /* NaN */
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static inline float packed_at(const uint16_t *w, int64_t K, int64_t k, int64_t n) {
    const int64_t K2 = (K + 1) & ~(int64_t)1;
    const uint32_t bits = (uint32_t)w[(n / 16) * K2 * 16 + (k / 2) * 32 + (n % 16) * 2 + (k % 2)] << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void gfk_bf16_kernel_emulated(const float *x, int64_t ldx, int64_t M, int64_t K, int64_t N, const uint16_t *w,
                              int64_t p0, int64_t p1, float *y, int64_t ldy) {
    for (int64_t r = 0; r < M; r++) {
        for (int64_t n = p0 * 16; n < p1 * 16 && n < N; n++) {
            float acc = 0;
            for (int64_t k = 0; k < K; k++) acc += bf16_round(x[r * ldx + k]) * packed_at(w, K, k, n);
            y[r * ldy + n] = acc;
        }
    }
}

float gfk_bf16_test_value(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    const float u = (float)((*state >> 40) & 0xffffff) / 16777216.0f;
    const float v = 0.05f + 0.95f * u;
    return (*state >> 39) & 1 ? -v : v;
}

int gfk_bf16_selfcheck(gfk_bf16_kernel_fn candidate, char *message, size_t capacity) {
    static const int64_t shapes[][3] = {{1, 7, 5}, {3, 33, 16}, {4, 64, 40}, {5, 515, 19}, {9, 130, 33}};
    uint64_t state = 0x9e3779b97f4a7c15ull;
    int ok = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && ok; s++) {
        const int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const int64_t P = (N + 15) / 16;
        float *x = malloc(sizeof(float) * (size_t)(M * K)), *wf = malloc(sizeof(float) * (size_t)(K * N));
        float *ya = malloc(sizeof(float) * (size_t)(M * N)), *yc = malloc(sizeof(float) * (size_t)(M * N));
        uint16_t *w = malloc(sizeof(uint16_t) * gfk_bf16_packed_count(K, N));
        if (!x || !wf || !ya || !yc || !w) {
            snprintf(message, capacity, "bf16 self-check: out of memory");
            ok = 0;
        } else {
            for (int64_t i = 0; i < M * K; i++) x[i] = gfk_bf16_test_value(&state);
            for (int64_t i = 0; i < K * N; i++) wf[i] = gfk_bf16_test_value(&state);
            gfk_bf16_pack(wf, N, 0, K, N, w, 0, P);
            for (int64_t i = 0; i < M * N; i++) ya[i] = yc[i] = NAN;
            gfk_bf16_kernel_avx2(x, K, M, K, N, w, 0, P, ya, N);
            candidate(x, K, M, K, N, w, 0, P, yc, N);
            for (int64_t r = 0; r < M && ok; r++) {
                for (int64_t n = 0; n < N && ok; n++) {
                    double magnitude = 0;
                    for (int64_t k = 0; k < K; k++) magnitude += fabs((double)x[r * K + k] * packed_at(w, K, k, n));
                    const double bound = magnitude * (1.0 / 256 + (double)K * 0x1p-23);
                    const double got = yc[r * N + n], want = ya[r * N + n];
                    if (!(fabs(got - want) <= bound)) {   /* also catches NaN: an output never written */
                        snprintf(message, capacity,
                                 "bf16 self-check: the AVX512-BF16 kernel gave %.9g where the AVX2 kernel gave %.9g "
                                 "(row %lld, column %lld of a %lldx%lldx%lld product; allowed difference %.3g)",
                                 got, want, (long long)r, (long long)n, (long long)M, (long long)K, (long long)N,
                                 bound);
                        ok = 0;
                    }
                }
            }
        }
        free(x); free(wf); free(ya); free(yc); free(w);
    }
    if (ok && capacity > 0) message[0] = 0;
    return ok;
}
