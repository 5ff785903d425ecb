// Fork-join cost: the library's worker pool (Sources/CKernels/workerpool.c) against libdispatch's dispatch_apply,
// which gfnlm used before 0.6.0, on the same regions: 2 chunks of equal synthetic work (a dependent chain of FMAs),
// with and without a short serial step between regions (like the layer norms between a forward pass's products).
// Prints µs per region and the speedup over running both chunks on one thread. `make bench-forkjoin` builds and
// runs it (libdispatch from the Swift toolchain).
#define _GNU_SOURCE
#include "workerpool.h"

#include <dispatch/dispatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile double sink;
static void work(long n) {
    double s = 0;
    for (long k = 0; k < n; k++) s = s * 0.999999 + (double)k;
    sink += s;
}

static long chunk_work;
static void pool_chunk(void *ctx, int chunk, int participant) { (void)ctx; (void)chunk; (void)participant; work(chunk_work); }
static void dispatch_chunk(void *ctx, size_t i) { (void)ctx; (void)i; work(chunk_work); }

static double best_of(int rounds, int regions, int mode, long gap, gfk_pool *pool) {
    double best = 1e9;
    for (int r = 0; r < rounds; r++) {
        const double t = now_s();
        for (int i = 0; i < regions; i++) {
            if (gap) work(gap);
            if (mode == 0) { work(chunk_work); work(chunk_work); }
            else if (mode == 1) dispatch_apply_f(2, dispatch_get_global_queue(0, 0), NULL, dispatch_chunk);
            else gfk_pool_run(pool, 2, 2, pool_chunk, NULL);
        }
        const double dt = (now_s() - t) / regions;
        if (dt < best) best = dt;
    }
    return best;
}

int main(void) {
    if (gfk_cpus_available() < 2) { puts("fork-join benchmark: needs 2 CPUs"); return 0; }
    gfk_pool *pool = gfk_pool_create(1, 100);
    if (!pool) { puts("cannot start the pool"); return 1; }
    printf("%-10s %-10s %12s %24s %24s\n", "chunk µs", "gap µs", "serial µs", "libdispatch µs (speedup)",
           "pool µs (speedup)");
    for (long n = 2000; n <= 200000; n *= 10) {
        chunk_work = n;
        const int regions = (int)(2e7 / n) + 10;
        const double chunk = best_of(5, regions, 0, 0, pool) / 2;
        for (long gap = 0; gap <= 10000; gap += 10000) {
            const double gap_s = gap ? chunk * gap / n : 0;  // the gap's work, in chunk units
            const double s = best_of(5, regions, 0, gap, pool), d = best_of(5, regions, 1, gap, pool),
                         p = best_of(5, regions, 2, gap, pool);
            printf("%-10.1f %-10.1f %12.1f %15.1f (%.2fx) %15.1f (%.2fx)\n", chunk * 1e6, gap_s * 1e6, s * 1e6,
                   d * 1e6, s / d, p * 1e6, s / p);
        }
    }
    gfk_pool_destroy(pool);
    return 0;
}
