// Stress test of the fork-join worker pool (Sources/CKernels/workerpool.c): every chunk of every job runs exactly
// once, two chunks never run at the same time as the same participant, participant numbers stay below the job's
// participants, a busy pool refuses a second caller instead of blocking, and a job sees the writes of the one before.
// Run plain and under ThreadSanitizer by `make workerpool-test`.
#include "workerpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHUNKS 64
#define MAX_PARTS 8

typedef struct {
    atomic_int runs[MAX_CHUNKS];
    atomic_int inside[MAX_PARTS];
    int parts;
    atomic_int errors;
    long payload[MAX_CHUNKS];  // plain writes, read back by the caller after the job
} job_t;

static void chunk_fn(void *ctx, int chunk, int participant) {
    job_t *j = ctx;
    if (participant < 0 || participant >= j->parts) { atomic_fetch_add(&j->errors, 1); return; }
    if (atomic_fetch_add(&j->inside[participant], 1) != 0) atomic_fetch_add(&j->errors, 1);
    atomic_fetch_add(&j->runs[chunk], 1);
    volatile long s = 0;
    for (int i = 0; i < (chunk % 5) * 200; i++) s += i;
    j->payload[chunk] = chunk * 7 + 1;
    atomic_fetch_sub(&j->inside[participant], 1);
}

static int check_job(gfk_pool *pool, unsigned *seed, int *refused) {
    job_t j;
    memset(&j, 0, sizeof j);
    int n = 1 + rand_r(seed) % MAX_CHUNKS;
    j.parts = 1 + rand_r(seed) % MAX_PARTS;
    if (!gfk_pool_run(pool, n, j.parts, chunk_fn, &j)) { (*refused)++; return 0; }
    int bad = atomic_load(&j.errors);
    for (int c = 0; c < n; c++) {
        if (atomic_load(&j.runs[c]) != 1) bad++;
        if (j.payload[c] != c * 7 + 1) bad++;
    }
    return bad;
}

typedef struct { gfk_pool *pool; unsigned seed; int bad, refused, jobs; } caller_t;

static void *caller_main(void *arg) {
    caller_t *c = arg;
    for (int i = 0; i < c->jobs; i++) c->bad += check_job(c->pool, &c->seed, &c->refused);
    return NULL;
}

static void empty_fn(void *ctx, int chunk, int participant) { (void)ctx; (void)chunk; (void)participant; }

int main(void) {
    int failures = 0;
    if (gfk_pool_create(0, 10) != NULL) { puts("FAIL: a pool without workers was created"); failures++; }
    gfk_pool *pool = gfk_pool_create(MAX_PARTS - 1, 50);
    if (!pool) { puts("FAIL: cannot create the pool"); return 1; }
    if (gfk_pool_run(pool, 4, MAX_PARTS + 1, empty_fn, NULL)) { puts("FAIL: ran with too many participants"); failures++; }

    // One caller: nothing is refused.
    caller_t one = {pool, 1, 0, 0, 20000};
    caller_main(&one);
    printf("one caller: %d jobs, %d bad, %d refused\n", one.jobs, one.bad, one.refused);
    if (one.bad || one.refused) failures++;

    // Four callers at once: some jobs are refused (the pool is busy), none is wrong, and none blocks.
    caller_t many[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        many[i] = (caller_t){pool, 100u + i, 0, 0, 5000};
        pthread_create(&th[i], NULL, caller_main, &many[i]);
    }
    int bad = 0, refused = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += many[i].bad;
        refused += many[i].refused;
    }
    printf("four callers: %d jobs, %d bad, %d refused\n", 4 * 5000, bad, refused);
    if (bad) failures++;

    gfk_pool_destroy(pool);

    puts(failures ? "workerpool test FAILED" : "workerpool test passed");
    return failures != 0;
}
