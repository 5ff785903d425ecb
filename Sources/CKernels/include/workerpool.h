#ifndef GFNLM_WORKERPOOL_H
#define GFNLM_WORKERPOOL_H
#ifdef __cplusplus
extern "C" {
#endif

/* A fork-join pool of worker threads that spin briefly between jobs.
 *
 * Why not libdispatch alone: a dispatch_apply over 2 threads costs ~25 µs on this project's reference VM, almost
 * all of it the futex wake-up of a parked worker. One decoded token runs ~60 such regions (one per matrix product,
 * attention, ...), each only tens of µs long, so at two threads the wake-ups ate most of the second core. Here a
 * worker that just ran a chunk keeps polling for the next job for `spin_us` before it parks, so the regions of one
 * forward pass reach it in well under a µs; a parked worker is woken as before.
 *
 * One job at a time: gfk_pool_run returns 0 without running anything when another job is in flight (another
 * caller thread, or a nested call from inside a chunk), and the caller then uses its other means (libdispatch).
 * Chunks are claimed dynamically, so a slow-to-wake worker never holds the job up: the caller runs its chunks. */

typedef struct gfk_pool gfk_pool;

/// `fn(ctx, chunk, participant)`: run chunk `chunk` (0..n-1) as participant `participant` (0 = the caller,
/// 1..participants-1 = workers). Two chunks that run at the same time have different participants.
typedef void (*gfk_pool_fn)(void *ctx, int chunk, int participant);

/// CPUs this process may run on (its affinity mask, e.g. under taskset or a container's cpuset), else the online
/// CPUs; at least 1.
int gfk_cpus_available(void);

/// Starts `workers` threads (≥ 1). Returns NULL if a thread cannot be started (nothing is leaked).
gfk_pool *gfk_pool_create(int workers, int spin_us);
/// Stops and joins the workers. The pool must be idle.
void gfk_pool_destroy(gfk_pool *pool);
/// Worker threads of the pool.
int gfk_pool_workers(const gfk_pool *pool);

/// Runs chunks 0..n-1 on the caller and up to participants-1 workers and returns 1 once all have finished;
/// returns 0 (nothing ran) if the pool is busy or participants-1 exceeds its workers.
int gfk_pool_run(gfk_pool *pool, int n, int participants, gfk_pool_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
