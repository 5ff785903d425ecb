// Fork-join worker pool that spins briefly between jobs (see include/workerpool.h for why).
#define _GNU_SOURCE
#include "workerpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The job in flight is one 64-bit word, so that a worker claims a chunk of exactly the job it saw:
 *   generation (24 bits) | participants (12) | chunk count (14) | next unclaimed chunk (14).
 * A worker that lags behind can only claim through a compare-and-swap on the word of its own generation, which
 * fails once that job is over; the job's function and context are read only after a successful claim, while the
 * job cannot end (the claimed chunk is not done), so they are the job's own. */
enum { GEN_BITS = 24, PARTS_BITS = 12, COUNT_BITS = 14, NEXT_BITS = 14 };
#define FIELD(v, shift, bits) ((uint32_t)(((v) >> (shift)) & ((1u << (bits)) - 1)))
#define NEXT_SHIFT 0
#define COUNT_SHIFT NEXT_BITS
#define PARTS_SHIFT (NEXT_BITS + COUNT_BITS)
#define GEN_SHIFT (NEXT_BITS + COUNT_BITS + PARTS_BITS)

static inline uint32_t word_gen(uint64_t v) { return FIELD(v, GEN_SHIFT, GEN_BITS); }
static inline uint32_t word_parts(uint64_t v) { return FIELD(v, PARTS_SHIFT, PARTS_BITS); }
static inline uint32_t word_count(uint64_t v) { return FIELD(v, COUNT_SHIFT, COUNT_BITS); }
static inline uint32_t word_next(uint64_t v) { return FIELD(v, NEXT_SHIFT, NEXT_BITS); }
static inline uint64_t make_word(uint32_t gen, uint32_t parts, uint32_t count) {
    return ((uint64_t)(gen & ((1u << GEN_BITS) - 1)) << GEN_SHIFT) | ((uint64_t)parts << PARTS_SHIFT) |
           ((uint64_t)count << COUNT_SHIFT);
}

typedef struct {
    gfk_pool *pool;
    int id;  // participant number, 1..workers
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int sleeping;
} worker_t;

struct gfk_pool {
    int workers;
    int64_t spin_ns;
    worker_t *w;
    atomic_int busy;
    atomic_int stop;
    _Atomic uint64_t word;
    _Atomic(gfk_pool_fn) fn;
    _Atomic(void *) ctx;
    atomic_int done;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    sched_yield();
#endif
}

static inline int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/// Claims and runs chunks of generation `gen` until none is left; returns whether it ran any.
static int run_chunks(gfk_pool *p, uint32_t gen, int participant) {
    int ran = 0;
    uint64_t v = atomic_load_explicit(&p->word, memory_order_acquire);
    while (word_gen(v) == gen && word_next(v) < word_count(v)) {
        if (!atomic_compare_exchange_weak_explicit(&p->word, &v, v + 1, memory_order_acq_rel, memory_order_acquire))
            continue;  // v was reloaded
        gfk_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        fn(ctx, (int)word_next(v), participant);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        ran = 1;
        v = atomic_load_explicit(&p->word, memory_order_acquire);
    }
    return ran;
}

static void *worker_main(void *arg) {
    worker_t *self = arg;
    gfk_pool *p = self->pool;
    uint32_t seen = word_gen(atomic_load(&p->word));
    int64_t spin_until = 0;  // poll until then before parking (set after each job this worker joined)
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->word, memory_order_acquire);
        for (unsigned i = 1; word_gen(v) == seen && !atomic_load_explicit(&p->stop, memory_order_relaxed); i++) {
            if ((i & 63) == 0 && now_ns() < spin_until) {
                sched_yield();  // a thread that shares this CPU (more threads than CPUs) gets it back at once
            } else if ((i & 63) == 0) {
                pthread_mutex_lock(&self->mu);
                atomic_store(&self->sleeping, 1);  // seq_cst: pairs with gfk_pool_run's store of the word
                while (word_gen(atomic_load(&p->word)) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&self->cv, &self->mu);
                atomic_store(&self->sleeping, 0);
                pthread_mutex_unlock(&self->mu);
            } else {
                cpu_relax();
            }
            v = atomic_load_explicit(&p->word, memory_order_acquire);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = word_gen(v);
        if ((uint32_t)self->id < word_parts(v) && run_chunks(p, seen, self->id))
            spin_until = now_ns() + p->spin_ns;
    }
}

// Wakes a parked worker. The caller never blocks on a worker's mutex: a worker holds it only between deciding to
// park and parking, so a few tries get it; if they do not (or the process was forked while a worker held it), the
// worker misses this job, which the caller then runs alone, and is woken by the next one.
static void wake(worker_t *w) {
    if (!atomic_load(&w->sleeping)) return;  // seq_cst: pairs with the worker's store before it checks the word
    for (int tries = 0; tries < 64; tries++) {
        if (pthread_mutex_trylock(&w->mu) == 0) {
            pthread_cond_signal(&w->cv);
            pthread_mutex_unlock(&w->mu);
            return;
        }
        cpu_relax();
    }
}

int gfk_pool_workers(const gfk_pool *pool) { return pool->workers; }

int gfk_cpus_available(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void stop_workers(gfk_pool *p, int started) {
    atomic_store(&p->stop, 1);
    for (int i = 0; i < started; i++) {
        pthread_mutex_lock(&p->w[i].mu);
        pthread_cond_signal(&p->w[i].cv);
        pthread_mutex_unlock(&p->w[i].mu);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(p->w[i].thread, NULL);
        pthread_cond_destroy(&p->w[i].cv);
        pthread_mutex_destroy(&p->w[i].mu);
    }
}

gfk_pool *gfk_pool_create(int workers, int spin_us) {
    if (workers < 1 || workers + 1 >= (1 << PARTS_BITS)) return NULL;  // participants = workers + 1 must fit
    gfk_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->w = calloc((size_t)workers, sizeof *p->w);
    if (!p->w) { free(p); return NULL; }
    p->workers = workers;
    p->spin_ns = (int64_t)(spin_us > 0 ? spin_us : 0) * 1000;
    atomic_init(&p->word, make_word(0, 0, 0));
    for (int i = 0; i < workers; i++) {
        worker_t *w = &p->w[i];
        w->pool = p;
        w->id = i + 1;
        atomic_init(&w->sleeping, 0);
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_cond_destroy(&w->cv);
            pthread_mutex_destroy(&w->mu);
            stop_workers(p, i);
            free(p->w);
            free(p);
            return NULL;
        }
    }
    return p;
}

void gfk_pool_destroy(gfk_pool *pool) {
    if (!pool) return;
    stop_workers(pool, pool->workers);
    free(pool->w);
    free(pool);
}

int gfk_pool_run(gfk_pool *p, int n, int participants, gfk_pool_fn fn, void *ctx) {
    if (n <= 0) return 1;
    if (participants < 1 || participants - 1 > p->workers || n >= (1 << COUNT_BITS)) return 0;
    int idle = 0;
    if (!atomic_compare_exchange_strong_explicit(&p->busy, &idle, 1, memory_order_acquire, memory_order_relaxed))
        return 0;
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint32_t gen = word_gen(atomic_load_explicit(&p->word, memory_order_relaxed)) + 1;
    atomic_store(&p->word, make_word(gen, (uint32_t)participants, (uint32_t)n));  // seq_cst: publishes the job
    for (int i = 0; i < participants - 1; i++) wake(&p->w[i]);
    run_chunks(p, gen, 0);
    // Chunks claimed by workers may still run; they are short, so poll, yielding the CPU if one is descheduled.
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < n; i++) {
        if (i < 4096) cpu_relax(); else sched_yield();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
    return 1;
}
