/* Data-parallel GFlowNet training over MPI: libgfnlm links no MPI; this program brings the all-reduce.

   Every rank builds the same trainer (same model, adapter seed, parameters), hands it its rank, the world size and
   an all-reduce callback (gfn_gflownet_set_distributed), and steps: each rank samples its own share of every
   micro-batch, the library passes one float buffer (gradients, log Z gradients, statistics, a replica digest) to
   the callback, which replaces it with the mean over ranks — MPI_Iallreduce(SUM) polled against a deadline, then a
   division by the world size. A rank that dies makes mpirun stop the job; a rank that hangs makes the others' wait
   run past the deadline, print a message and MPI_Abort. Only rank 0 writes the checkpoint (gfn_gflownet_save is a
   no-op on other ranks).

   The task is a small enumerable one, so the result is checkable exactly: sequences of at most 2 actions over the
   tokens {1, 2, 3} (termination token 0) after the prompt [5, 6, 7], with a fixed table of log rewards; at the end
   every rank prints the exact KL(target ‖ q) of its sampler and a hash of its adapter bytes (equal on all ranks).

   Build (after `make lib`):
     mpicc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude examples/c/train_mpi.c -Lbuild -lgfnlm -Wl,-rpath,build \
         -o build/examples/train_mpi
   Run:  mpirun -np 2 build/examples/train_mpi [model_dir] [steps] [batch_per_rank] [out_dir]
         (defaults: Tests/Fixtures/gpt2-tiny/legacy17 20 8 build/examples/train_mpi.out; as root add
         --allow-run-as-root; GFNLM_EXCHANGE_TIMEOUT=seconds bounds each exchange, default 60)
   Last line per rank (machine-readable): rank=… world=… steps=… kl=… log_z=… adapter_fnv=… */
#define _POSIX_C_SOURCE 200809L
#include "gfnlm.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int rank_ = 0;

static int fail(const char *what, gfn_status st) {
    fprintf(stderr, "rank %d: %s failed: %s (%s)\n", rank_, what, gfn_last_error(), gfn_status_name(st));
    return 1;
}

#define CHECK(call)                                  \
    do {                                             \
        gfn_status st_ = (call);                     \
        if (st_ != GFN_OK) return fail(#call, st_);  \
    } while (0)

/* ---- the all-reduce --------------------------------------------------------------------------------------------- */

typedef struct {
    MPI_Comm comm;
    int size;
    double timeout;      /* seconds per exchange */
    long calls;
    double bytes, seconds;
} exchange;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* gfn_allreduce_fn: buffer ← element-wise mean over the ranks. MPI counts are int: long buffers go in chunks. */
static int32_t allreduce_mean(void *user_data, float *buffer, int64_t count) {
    exchange *ex = user_data;
    double t0 = now(), deadline = t0 + ex->timeout;
    const int64_t chunk = 1 << 28;
    for (int64_t off = 0; off < count; off += chunk) {
        int n = (int)(count - off < chunk ? count - off : chunk);
        MPI_Request req;
        if (MPI_Iallreduce(MPI_IN_PLACE, buffer + off, n, MPI_FLOAT, MPI_SUM, ex->comm, &req) != MPI_SUCCESS) return 1;
        int done = 0;
        while (!done) {
            if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return 1;
            if (!done && now() > deadline) {
                fprintf(stderr, "gfnlm rank %d/%d: the gradient exchange did not complete within %g s (another rank "
                        "died, hangs or stopped calling it): aborting every rank\n", rank_, ex->size, ex->timeout);
                fflush(stderr);
                MPI_Abort(ex->comm, 2);
            }
            if (!done) {
                struct timespec pause = {0, 20000};
                nanosleep(&pause, NULL);
            }
        }
    }
    const float k = (float)ex->size;
    for (int64_t i = 0; i < count; i++) buffer[i] /= k;
    ex->calls++;
    ex->bytes += 4.0 * (double)count;
    ex->seconds += now() - t0;
    return 0;
}

/* ---- the task -------------------------------------------------------------------------------------------------- */

/* log R of a state: a fixed pseudo-random table indexed by the state's tokens (≤ 2 actions over {1, 2, 3}). */
static double log_reward(const int32_t *s, int32_t n) {
    static const double table[13] = {0.3, 1.2, -0.8, 0.5, 2.0, -1.1, 0.4, 0.9, -0.3, 1.5, -2.0, 0.1, 0.7};
    int idx = 0;
    if (n == 1) idx = s[0];
    if (n == 2) idx = 3 + 3 * (s[0] - 1) + s[1];
    if (n > 2 || idx < 0 || idx > 12) return -30.0;
    return table[idx];
}

static int32_t reward_fn(void *user_data, int32_t prompt_index, const int32_t *const *states,
                         const int32_t *lengths, int32_t n_states, double *log_rewards) {
    (void)user_data; (void)prompt_index;
    for (int32_t i = 0; i < n_states; i++) log_rewards[i] = log_reward(states[i], lengths[i]);
    return 0;
}

static unsigned long long fnv_file(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned long long h = 0xcbf29ce484222325ULL;
    if (!f) return 0;
    int c;
    while ((c = fgetc(f)) != EOF) h = (h ^ (unsigned long long)c) * 0x100000001b3ULL;
    fclose(f);
    return h;
}

static int run(int argc, char **argv, int size) {
    const char *model_dir = argc > 1 ? argv[1] : "Tests/Fixtures/gpt2-tiny/legacy17";
    int steps = argc > 2 ? atoi(argv[2]) : 20;
    int batch = argc > 3 ? atoi(argv[3]) : 8;
    const char *out = argc > 4 ? argv[4] : "build/examples/train_mpi.out";
    const char *env_timeout = getenv("GFNLM_EXCHANGE_TIMEOUT");
    exchange ex = {MPI_COMM_WORLD, size, env_timeout ? atof(env_timeout) : 60.0, 0, 0, 0};

    gfn_model_params mp = gfn_model_default_params();
    mp.n_threads = 1;
    gfn_model *model = NULL;
    CHECK(gfn_model_load(model_dir, &mp, &model));
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.alpha = 8;
    lp.targets = "c_attn,c_proj";
    lp.seed = 2;
    gfn_adapter *adapter = NULL;
    CHECK(gfn_adapter_new(model, &lp, &adapter));
    gfn_reward *reward = NULL;
    CHECK(gfn_reward_new_callback(reward_fn, NULL, 0, &reward));

    const int32_t x[3] = {5, 6, 7}, allowed[3] = {1, 2, 3};
    gfn_prompt prompt = {.size = sizeof(gfn_prompt), .x = x, .n_x = 3, .weight = 1.0};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gfn_train_params train = gfn_train_default_params();   /* read by gfn_gflownet_new */
    gp.train = &train;
    gp.objective = GFN_OBJECTIVE_TB;
    gp.termination = 0;
    gp.max_length = 2;
    gfn_logit_adjustment adjust = gfn_logit_default_adjustment();   /* read by gfn_gflownet_new */
    adjust.allowed_tokens = allowed;
    adjust.n_allowed_tokens = 3;
    adjust.disallowed_penalty = -INFINITY;
    gp.adjust = &adjust;
    gp.batch_size = batch;
    train.lr = 1e-2;
    train.warmup_steps = 0;
    gp.logz_lr = 0.1;
    gp.seed = 3;
    /* Replay buffers are per rank (each rank stores what it sampled); without replay, K ranks × batch b sample
       exactly the trajectories of one process with batch K·b, which the test compares against. */
    gp.p_replay = 0;
    gfn_gflownet *trainer = NULL;
    CHECK(gfn_gflownet_new(model, adapter, reward, &prompt, 1, &gp, &trainer));

    gfn_distributed_params dp = gfn_distributed_default_params();
    dp.rank = rank_;
    dp.world_size = size;
    dp.allreduce = allreduce_mean;
    dp.user_data = &ex;
    CHECK(gfn_gflownet_set_distributed(trainer, &dp));

    gfn_step_stats st = {.size = sizeof st};
    double t0 = now();
    CHECK(gfn_gflownet_train(trainer, steps, &st));
    double secs = now() - t0;

    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint", out);
    CHECK(gfn_gflownet_save(trainer, path));  /* rank 0 writes; other ranks: no-op */
    snprintf(path, sizeof path, "%s/adapter%d", out, rank_);
    CHECK(gfn_adapter_save(adapter, path));
    snprintf(path, sizeof path, "%s/adapter%d/adapter_model.safetensors", out, rank_);
    gfn_exact_result er = {.size = sizeof er};
    CHECK(gfn_gflownet_exact(trainer, 0, allowed, 3, &er));
    printf("rank=%d world=%d steps=%d trajectories_per_step=%d kl=%.9g log_z=%.9g loss=%.9g adapter_fnv=%016llx "
           "seconds=%.3f exchanges=%ld bytes_per_step=%.0f exchange_seconds=%.4f\n",
           rank_, size, steps, st.trajectories, er.kl_target_q, st.log_z, st.loss, fnv_file(path), secs, ex.calls,
           steps > 0 ? ex.bytes / steps : 0.0, ex.seconds);
    fflush(stdout);
    gfn_gflownet_free(trainer);
    gfn_reward_free(reward);
    gfn_adapter_free(adapter);
    gfn_model_free(model);
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int rc = run(argc, argv, size);
    if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);  /* the other ranks would wait in their next exchange */
    MPI_Finalize();
    return rc;
}
