/* Concurrency stress test: N threads sample and score on one shared gfn_model (each with its own
 * gfn_context, some through one shared read-only adapter) while two more threads train their own adapters — one
 * with SFT, one with the GFlowNet trainer and a C reward callback. Every result must equal, bit for bit, the result
 * of the same call made alone on one thread beforehand (same seeds).
 *
 *   test_stress [ROUNDS [THREADS]]     defaults 2 rounds, 4 sampling threads (`make test`); `make stress` runs more
 *
 * Run from the repository root (the fixtures are read from Tests/Fixtures). Also built with ThreadSanitizer by
 * `make sanitize` (mk/reliability.mk). */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 512, K = 5, MAXNEW = 8, NPER = 3, SFT_STEPS = 6, GFN_STEPS = 5, PAIRS = 4, PT = 6 };

static gfn_model *model;
static gfn_adapter *shared;   /* read-only for everyone after set-up */
static int failures = 0;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, const char *what, int a, int b) {
    pthread_mutex_lock(&fail_lock);
    fprintf(stderr, "FAIL ");
    fprintf(stderr, fmt, what, a, b);
    fprintf(stderr, " (last error on this thread: %s)\n", gfn_last_error());
    failures++;
    pthread_mutex_unlock(&fail_lock);
}

/* ---------------------------------------------------------------- sampling and scoring workers */

typedef struct {
    int32_t tokens[NPER * 2][MAXNEW + 1];
    int32_t n_tokens[NPER * 2];
    float logprobs[NPER * 2][MAXNEW + 1];
    double totals[PAIRS];
    float token_lp[PAIRS * PT];
    float stop_lp[PAIRS * (PT + 1)];
} sample_result;

typedef struct {
    int id;
    sample_result ref[K];   /* single-threaded results */
    sample_result got[K];
} worker;

static void sample_once(gfn_context *ctx, int worker_id, int k, sample_result *out) {
    memset(out, 0, sizeof *out);
    int32_t p0[] = {1 + worker_id, 2 + k, 3}, p1[] = {9, 8 + worker_id};
    const int32_t *prompts[] = {p0, p1};
    int32_t lens[] = {3, 2};
    int32_t stops[] = {13, 511};
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = MAXNEW;
    sp.seed = (uint64_t)(1000 * worker_id + k);
    sp.top_p = 0.9f;
    sp.temperature = 0.8f + 0.1f * (float)(k % 3);
    sp.stop_tokens = stops;
    sp.n_stop_tokens = 2;
    sp.adapter = (k % 2) ? shared : NULL;
    gfn_samples *s = NULL;
    if (gfn_context_sample(ctx, prompts, lens, 2, NPER, &sp, &s) != GFN_OK) {
        fail("%s: worker %d sample %d failed", "sample", worker_id, k);
        return;
    }
    for (int i = 0; i < NPER * 2; i++) {
        gfn_sample_info info = {.size = sizeof info};
        gfn_samples_get(s, i, &info);
        out->n_tokens[i] = info.n_tokens;
        memcpy(out->tokens[i], info.tokens, sizeof(int32_t) * (size_t)info.n_tokens);
        memcpy(out->logprobs[i], info.token_logprobs, sizeof(float) * (size_t)info.n_tokens);
    }
    gfn_samples_free(s);
    int32_t ctxs[PAIRS][3], conts[PAIRS][PT];
    const int32_t *cp[PAIRS], *np[PAIRS];
    int32_t cl[PAIRS], nl[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        for (int j = 0; j < 3; j++) ctxs[i][j] = (i * 7 + j + worker_id) % V;
        for (int j = 0; j < PT; j++) conts[i][j] = (i * 31 + j * 5 + k) % V;
        cp[i] = ctxs[i];
        np[i] = conts[i];
        cl[i] = 3;
        nl[i] = PT;
    }
    gfn_score_params sc = gfn_score_default_params();
    sc.stop_tokens = stops;
    sc.n_stop_tokens = 2;
    sc.adapter = (k % 2) ? NULL : shared;
    if (gfn_context_score(ctx, cp, cl, np, nl, PAIRS, &sc, out->totals, out->token_lp, out->stop_lp) != GFN_OK)
        fail("%s: worker %d score %d failed", "score", worker_id, k);
}

static void *sampler_thread(void *arg) {
    worker *w = arg;
    gfn_context *ctx = NULL;
    if (gfn_context_new(model, &ctx) != GFN_OK) { fail("%s %d %d", "context", w->id, 0); return NULL; }
    for (int k = 0; k < K; k++) sample_once(ctx, w->id, k, &w->got[k]);
    gfn_context_free(ctx);
    return NULL;
}

/* ---------------------------------------------------------------- SFT on its own adapter */

typedef struct {
    double losses[SFT_STEPS];
    float logits[4 * V];
} train_result;

static void logits_of(const gfn_adapter *a, float *out) {
    int32_t ids[4] = {5, 6, 7, 8};
    if (gfn_model_logits(model, a, ids, 1, 4, NULL, out, 4 * V) != GFN_OK) fail("%s %d %d", "logits", 0, 0);
}

static void run_sft(train_result *r) {
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.seed = 77;
    lp.targets = "c_attn,c_fc";
    gfn_adapter *a = NULL;
    gfn_sft *s = NULL;
    gfn_train_params tp = gfn_train_default_params();
    tp.lr = 1e-2;
    if (gfn_adapter_new(model, &lp, &a) != GFN_OK || gfn_sft_new(model, a, &tp, &s) != GFN_OK) {
        fail("%s %d %d", "sft setup", 0, 0);
        return;
    }
    for (int step = 0; step < SFT_STEPS; step++) {
        int32_t c0[] = {1, 2, 3 + step}, t0[] = {4, 5, 6}, c1[] = {10 + step, 11}, t1[] = {12, 13, 14, 15};
        const int32_t *cs[] = {c0, c1}, *ts[] = {t0, t1};
        int32_t cl[] = {3, 2}, tl[] = {3, 4};
        gfn_sft_stats st = {.size = sizeof st};
        if (gfn_sft_step(s, cs, cl, ts, tl, 2, &st) != GFN_OK) fail("%s step %d %d", "sft", step, 0);
        r->losses[step] = st.loss;
    }
    logits_of(a, r->logits);
    gfn_sft_free(s);
    gfn_adapter_free(a);
}

/* ---------------------------------------------------------------- GFlowNet with a C reward */

static int32_t reward(void *ud, int32_t prompt, const int32_t *const *states, const int32_t *lens, int32_t n,
                      double *out) {
    (void)prompt;
    int *calls = ud;
    (*calls)++;
    for (int32_t i = 0; i < n; i++) {
        double r = -0.25 * lens[i];
        for (int32_t k = 0; k < lens[i]; k++) r += (states[i][k] & 1) ? 0.5 : 0.0;
        out[i] = r;
    }
    return 0;
}

typedef struct {
    double losses[GFN_STEPS];
    double log_r[GFN_STEPS];
    float logits[4 * V];
    int calls;
} gfn_result;

static void run_gflownet(gfn_result *r) {
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.seed = 5;
    gfn_adapter *a = NULL;
    gfn_reward *rw = NULL;
    gfn_gflownet *g = NULL;
    r->calls = 0;
    int32_t x[] = {20, 21, 22};
    gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 3};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gfn_train_params train = gfn_train_default_params();   /* read by gfn_gflownet_new */
    train.warmup_steps = 20;                                /* as with gp.train = NULL */
    gp.train = &train;
    gp.termination = 511;
    gp.max_length = 5;
    gp.batch_size = 4;
    gp.p_replay = 0.3;
    train.lr = 1e-2;
    gp.seed = 99;
    if (gfn_adapter_new(model, &lp, &a) != GFN_OK || gfn_reward_new_callback(reward, &r->calls, 0, &rw) != GFN_OK ||
        gfn_gflownet_new(model, a, rw, &p, 1, &gp, &g) != GFN_OK) {
        fail("%s %d %d", "gflownet setup", 0, 0);
        return;
    }
    for (int step = 0; step < GFN_STEPS; step++) {
        gfn_step_stats st = {.size = sizeof st};
        if (gfn_gflownet_step(g, &st) != GFN_OK) fail("%s step %d %d", "gflownet", step, 0);
        r->losses[step] = st.loss;
        r->log_r[step] = st.mean_log_r;
    }
    logits_of(a, r->logits);
    gfn_gflownet_free(g);
    gfn_reward_free(rw);
    gfn_adapter_free(a);
}

static train_result sft_ref, sft_got;
static gfn_result gfn_ref, gfn_got;
static void *sft_thread(void *arg) { (void)arg; run_sft(&sft_got); return NULL; }
static void *gfn_thread(void *arg) { (void)arg; run_gflownet(&gfn_got); return NULL; }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    if (nthreads < 1 || nthreads > 64 || rounds < 1) { fprintf(stderr, "usage: test_stress [ROUNDS [THREADS]]\n"); return 2; }
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &model) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    /* a shared adapter with non-zero B: a few SFT steps, then read-only */
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.targets = "c_attn,c_proj";
    gfn_sft *warm = NULL;
    if (gfn_adapter_new(model, &lp, &shared) != GFN_OK || gfn_sft_new(model, shared, NULL, &warm) != GFN_OK) return 1;
    for (int i = 0; i < 3; i++) {
        int32_t c[] = {1, 2}, t[] = {3, 4};
        const int32_t *cs[] = {c}, *ts[] = {t};
        int32_t l = 2;
        gfn_train_params tp = gfn_train_default_params();
        (void)tp;
        if (gfn_sft_step(warm, cs, &l, ts, &l, 1, NULL) != GFN_OK) return 1;
    }
    gfn_sft_free(warm);

    /* single-threaded references */
    worker *ws = calloc((size_t)nthreads, sizeof(worker));
    gfn_context *ctx = NULL;
    gfn_context_new(model, &ctx);
    for (int w = 0; w < nthreads; w++) {
        ws[w].id = w;
        for (int k = 0; k < K; k++) sample_once(ctx, w, k, &ws[w].ref[k]);
    }
    gfn_context_free(ctx);
    run_sft(&sft_ref);
    run_gflownet(&gfn_ref);

    for (int round = 0; round < rounds; round++) {
        pthread_t th[66];
        for (int w = 0; w < nthreads; w++) pthread_create(&th[w], NULL, sampler_thread, &ws[w]);
        pthread_create(&th[nthreads], NULL, sft_thread, NULL);
        pthread_create(&th[nthreads + 1], NULL, gfn_thread, NULL);
        for (int i = 0; i < nthreads + 2; i++) pthread_join(th[i], NULL);
        for (int w = 0; w < nthreads; w++)
            for (int k = 0; k < K; k++)
                if (memcmp(&ws[w].ref[k], &ws[w].got[k], sizeof(sample_result)) != 0)
                    fail("%s: worker %d call %d differs from the single-threaded run", "sample/score", w, k);
        if (memcmp(&sft_ref, &sft_got, sizeof sft_ref) != 0) fail("%s differs from the single-threaded run (round %d)%d", "SFT", round, 0);
        if (memcmp(gfn_ref.losses, gfn_got.losses, sizeof gfn_ref.losses) != 0 ||
            memcmp(gfn_ref.log_r, gfn_got.log_r, sizeof gfn_ref.log_r) != 0 ||
            memcmp(gfn_ref.logits, gfn_got.logits, sizeof gfn_ref.logits) != 0 || gfn_ref.calls != gfn_got.calls)
            fail("%s differs from the single-threaded run (round %d)%d", "GFlowNet", round, 0);
        memset(&sft_got, 0, sizeof sft_got);
        memset(&gfn_got, 0, sizeof gfn_got);
    }
    free(ws);
    gfn_adapter_free(shared);
    gfn_model_free(model);
    printf("test_stress: %d rounds × (%d sampling threads + SFT + GFlowNet): %s\n", rounds, nthreads,
           failures ? "FAILED" : "every result equals the single-threaded run");
    return failures ? 1 : 0;
}
