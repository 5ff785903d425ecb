// fp32 products on weights packed once, through OpenBLAS's own micro-kernel.
//
// cblas_sgemm packs the weight matrix on every call. For the 17..~300-row products of batched sampling and
// GFlowNet training that packing is a quarter of the time of a block weight's product and a third of the tied
// head's (its transposed copy routine is slow): measured alone at 64 rows, 1 thread, 66-70 -> 72-78 GFLOP/s for the
// block weights and 51 -> 77 for the head (benchmarks/README.md). Here the weights are packed once, into exactly the
// layout OpenBLAS's packing routine produces, and OpenBLAS's kernel is called on them; only the activations (a few
// hundred KB) are packed per call.
//
// Debian's OpenBLAS is built with DYNAMIC_ARCH and exports every core's kernel and copy routines
// (sgemm_kernel_ZEN, sgemm_itcopy_ZEN, ...). They are looked up at run time in the library that provides
// cblas_sgemm (dladdr + dlopen(RTLD_NOLOAD)), for the core OpenBLAS selected (openblas_get_corename). The panel
// width is read from what the copy routine writes, and the whole path is checked against a double-precision
// product with ragged shapes before it is enabled; anything missing or different leaves it disabled and callers
// use cblas_sgemm. GFNLM_NO_PACKED_SGEMM=1 disables it.
#define _GNU_SOURCE
#include "ckernels.h"
#include <ctype.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef long blaslong;
typedef int (*copy_fn)(blaslong m, blaslong n, float *a, blaslong lda, float *b);
typedef int (*kernel_fn)(blaslong m, blaslong n, blaslong k, float alpha, float *a, float *b, float *c,
                         blaslong ldc);

// Defined by cblas.h (COpenBLAS); declared here so that this file does not need the header.
void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

static struct {
    int enabled;
    blaslong unroll;
    copy_fn itcopy;  // A not transposed (col-major [M, K]): our W [K, N] row-major
    copy_fn incopy;  // A transposed: our Wᵀ [N, K] row-major (the tied head)
    copy_fn oncopy;  // B not transposed: the activations x [m, K] row-major = col-major [K, m]
    kernel_fn kernel;
    char core[32];
} g;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *lookup(void *lib, const char *name, const char *core) {
    char sym[96];
    snprintf(sym, sizeof sym, "%s_%s", name, core);
    return dlsym(lib, sym);
}

static int self_check(void);

static void init(void) {
    g.enabled = 0;
    const char *off = getenv("GFNLM_NO_PACKED_SGEMM");
    if (off && *off && strcmp(off, "0") != 0) return;
    Dl_info info;
    if (!dladdr((void *)&cblas_sgemm, &info) || !info.dli_fname) return;
    void *lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!lib) return;
    char *(*corename)(void) = (char *(*)(void))dlsym(lib, "openblas_get_corename");
    const char *name = corename ? corename() : NULL;
    if (!name || strlen(name) >= sizeof g.core) { dlclose(lib); return; }
    for (size_t i = 0; name[i]; i++) g.core[i] = (char)toupper((unsigned char)name[i]);
    g.itcopy = (copy_fn)lookup(lib, "sgemm_itcopy", g.core);
    g.incopy = (copy_fn)lookup(lib, "sgemm_incopy", g.core);
    g.oncopy = (copy_fn)lookup(lib, "sgemm_oncopy", g.core);
    g.kernel = (kernel_fn)lookup(lib, "sgemm_kernel", g.core);
    // RTLD_NOLOAD took a reference to a library that stays loaded (we link it); drop it again.
    dlclose(lib);
    if (!g.itcopy || !g.incopy || !g.oncopy || !g.kernel) return;
    // Panel width: pack a 2 x 64 block (K = 2 rows of k, 64 columns) and find where k = 1 starts.
    float src[2 * 64], dst[2 * 64];
    for (int k = 0; k < 2; k++)
        for (int n = 0; n < 64; n++) src[n + k * 64] = (float)(n + 1000 * k);
    g.itcopy(2, 64, src, 64, dst);
    blaslong u = 0;
    while (u < 64 && dst[u] < 1000) u++;
    if (u < 2 || u > 32 || (u & (u - 1)) != 0 || GFK_PACKED_MC % u != 0) return;
    for (blaslong i = 0; i < u; i++)
        if (dst[i] != (float)i || dst[u + i] != (float)(1000 + i)) return;
    g.unroll = u;
    g.enabled = self_check();
}

int gfk_packed_available(void) {
    pthread_once(&once, init);
    return g.enabled;
}

const char *gfk_packed_core(void) {
    pthread_once(&once, init);
    return g.core;
}

size_t gfk_packed_count(int64_t K, int64_t N) { return (size_t)K * (size_t)N + GFK_PACKED_PAD; }

void gfk_packed_pack(const float *src, int64_t ld, int transposed, int64_t K, int64_t N, float *dst, int64_t b0,
                     int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
        int64_t k0 = b * GFK_PACKED_KC, kc = K - k0 < GFK_PACKED_KC ? K - k0 : GFK_PACKED_KC;
        if (kc <= 0) break;
        float *out = dst + k0 * N;
        if (transposed) g.incopy(kc, N, (float *)src + k0, ld, out);  // Wᵀ [N, K]
        else g.itcopy(kc, N, (float *)src + k0 * ld, ld, out);         // W [K, N]
    }
}

size_t gfk_packed_activation_count(int64_t M, int64_t K) { return (size_t)M * (size_t)K + GFK_PACKED_PAD; }

void gfk_packed_pack_activations(const float *x, int64_t ldx, int64_t M, int64_t K, float *dst) {
    for (int64_t k0 = 0; k0 < K; k0 += GFK_PACKED_KC) {
        int64_t kc = K - k0 < GFK_PACKED_KC ? K - k0 : GFK_PACKED_KC;
        g.oncopy(kc, M, (float *)x + k0, ldx, dst + k0 * M);
    }
}

void gfk_packed_gemm(int64_t M, int64_t K, int64_t N, const float *w, const float *xp, float *y, int64_t ldy,
                     int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
        int64_t n0 = b * GFK_PACKED_MC, nc = N - n0 < GFK_PACKED_MC ? N - n0 : GFK_PACKED_MC;
        if (nc <= 0) break;
        for (int64_t r = 0; r < M; r++) memset(y + r * ldy + n0, 0, (size_t)nc * sizeof(float));
        for (int64_t k0 = 0; k0 < K; k0 += GFK_PACKED_KC) {
            int64_t kc = K - k0 < GFK_PACKED_KC ? K - k0 : GFK_PACKED_KC;
            // The kernel's C is column-major [N, M] with ldc = ldy, i.e. our row-major y [M, N].
            g.kernel(nc, M, kc, 1.0f, (float *)w + k0 * N + n0 * kc, (float *)xp + k0 * M, y + n0, ldy);
        }
    }
}

// Ragged shapes (K over one KC block, N with a partial MC block and a partial panel, M not a multiple of the
// kernel's column unroll), both weight orientations, against a double-precision product.
static int self_check(void) {
    const int64_t K = GFK_PACKED_KC + 29, N = GFK_PACKED_MC + 45, M = 19;
    float *w = malloc(sizeof(float) * K * N), *wt = malloc(sizeof(float) * K * N);
    float *x = malloc(sizeof(float) * M * (K + 3)), *y = malloc(sizeof(float) * M * (N + 5));
    float *p = aligned_alloc(64, sizeof(float) * ((gfk_packed_count(K, N) + 15) & ~(size_t)15));
    float *xp = aligned_alloc(64, sizeof(float) * ((gfk_packed_activation_count(M, K) + 15) & ~(size_t)15));
    int ok = w && wt && x && y && p && xp;
    uint32_t s = 12345;
    for (int64_t i = 0; ok && i < K * N; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (float)((int)(s >> 9) % 2001 - 1000) / 1000.0f;
    }
    for (int64_t k = 0; ok && k < K; k++)
        for (int64_t n = 0; n < N; n++) wt[n * K + k] = w[k * N + n];
    for (int64_t i = 0; ok && i < M * (K + 3); i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 9) % 2001 - 1000) / 1000.0f;
    }
    int64_t blocks = (K + GFK_PACKED_KC - 1) / GFK_PACKED_KC, nb = (N + GFK_PACKED_MC - 1) / GFK_PACKED_MC;
    for (int t = 0; ok && t < 2; t++) {
        if (t) gfk_packed_pack(wt, K, 1, K, N, p, 0, blocks);
        else gfk_packed_pack(w, N, 0, K, N, p, 0, blocks);
        gfk_packed_pack_activations(x, K + 3, M, K, xp);
        for (int64_t i = 0; i < M * (N + 5); i++) y[i] = NAN;
        gfk_packed_gemm(M, K, N, p, xp, y, N + 5, 0, nb);
        for (int64_t m = 0; ok && m < M; m++)
            for (int64_t n = 0; ok && n < N; n++) {
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                    double v = (double)x[m * (K + 3) + k] * w[k * N + n];
                    ref += v;
                    mag += fabs(v);
                }
                double got = y[m * (N + 5) + n];
                if (!(fabs(got - ref) <= 1e-5 * mag + 1e-6)) ok = 0;
            }
        for (int64_t m = 0; ok && m < M; m++)  // columns past N are not written
            for (int64_t n = N; n < N + 5; n++)
                if (!isnan(y[m * (N + 5) + n])) ok = 0;
    }
    free(w); free(wt); free(x); free(y); free(p); free(xp);
    return ok;
}
