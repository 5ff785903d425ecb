/* The batching scheduler through the C API: THREADS threads submit mixed requests (random sampling parameters and
 * seeds, two adapters trained a little plus the base model, scoring, cancels, requests freed while running) to one
 * gfn_batcher. Every completed request must equal, bit for bit, the same call made alone through gfn_context_sample
 * / gfn_context_score; every request finishes exactly once (on_done counts); GFN_ERR_BUSY on a full queue; an
 * adapter freed while its requests wait; shutdown with and without draining.
 *
 *   test_batcher [REQUESTS [THREADS]]     defaults 60 requests, 6 threads
 *
 * Run from the repository root. Also built with ThreadSanitizer by `make sanitize-tsan`. */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

enum { V = 512, MAXNEW = 10, MAXN = 3, PT = 6 };

static gfn_model *model;
static gfn_adapter *adapters[3];   /* [0] = NULL: the base model */
static gfn_batcher *batcher;
static atomic_int done_calls, token_calls;


typedef struct {
    int kind;                  /* 0 sample, 1 score */
    int32_t prompt[8];
    int32_t n_prompt;
    int32_t cont[PT];
    int32_t n_cont;
    int32_t n;
    int adapter;
    gfn_sampling_params sp;
    int32_t stops[2];
    int cancel, free_early;
    gfn_request *request;
} job;

static uint64_t rng_state = 12345;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

static void on_done(void *user_data, gfn_request *request) {
    (void)user_data; (void)request;
    atomic_fetch_add(&done_calls, 1);
}

static int32_t on_token(void *user_data, int32_t index, int32_t token, float logprob) {
    (void)user_data; (void)index; (void)logprob;
    atomic_fetch_add(&token_calls, 1);
    return token < 0 || token >= V;   /* never true: tokens are in the vocabulary */
}

static void make_job(job *j, int i) {
    memset(j, 0, sizeof *j);
    j->kind = i % 5 == 4;
    j->n_prompt = 1 + (int32_t)rnd(8);
    for (int t = 0; t < j->n_prompt; t++) j->prompt[t] = (int32_t)rnd(V);
    j->adapter = (int)rnd(3);
    j->cancel = i % 9 == 7;
    j->free_early = i % 13 == 11;
    if (j->kind == 1) {
        j->n_cont = (int32_t)rnd(PT + 1);
        for (int t = 0; t < j->n_cont; t++) j->cont[t] = (int32_t)rnd(V);
        return;
    }
    j->n = 1 + (int32_t)rnd(MAXN);
    j->sp = gfn_sampling_default_params();
    j->sp.max_new_tokens = 1 + (int32_t)rnd(MAXNEW);
    j->sp.temperature = (float[]){0.f, 0.7f, 1.f, 1.4f}[rnd(4)];
    j->sp.top_k = rnd(2) ? 0 : 20;
    j->sp.top_p = rnd(2) ? 1.f : 0.9f;
    j->sp.seed = ((uint64_t)rnd(1u << 31) << 20) ^ rnd(1u << 20);
    j->stops[0] = 13; j->stops[1] = 200;
    j->sp.stop_tokens = j->stops;
    j->sp.n_stop_tokens = (int32_t)rnd(3);
    j->sp.include_stop_token = (int32_t)rnd(2);
    j->sp.adapter = adapters[j->adapter];
}

static gfn_status submit(job *j, int block) {
    gfn_request_options o = gfn_request_default_options();
    o.block = block;
    o.on_done = on_done;
    o.on_token = on_token;
    if (j->kind == 0) return gfn_batcher_submit_sample(batcher, j->prompt, j->n_prompt, j->n, &j->sp, &o, &j->request);
    const int32_t *ctxs[] = {j->prompt}, *conts[] = {j->cont};
    gfn_score_params sc = gfn_score_default_params();
    sc.adapter = adapters[j->adapter];
    return gfn_batcher_submit_score(batcher, ctxs, &j->n_prompt, conts, &j->n_cont, 1, &sc, &o, &j->request);
}

typedef struct { job *jobs; int first, count, stride; } slice;

static void *submitter(void *arg) {
    slice *s = arg;
    for (int i = s->first; i < s->count; i += s->stride) {
        job *j = &s->jobs[i];
        CHECK(submit(j, 1) == GFN_OK, "submit %d", i);
        if (j->cancel) gfn_request_cancel(j->request);
        if (j->free_early) { gfn_request_free(j->request); j->request = NULL; }
    }
    return NULL;
}

static void compare(job *j, int i, gfn_context *ctx) {
    if (!j->request) return;   /* freed while running: nothing to read */
    int32_t finished = 0;
    CHECK(gfn_request_wait(j->request, 60000, &finished) == GFN_OK && finished, "request %d never finished", i);
    if (j->kind == 1) {
        double got, want;
        float gt[PT], wt[PT], gs[PT + 1], ws[PT + 1];
        gfn_status st = gfn_request_scores(j->request, &got, gt, gs);
        if (j->cancel && st == GFN_ERR_CANCELLED) return;
        CHECK(st == GFN_OK, "scores %d: %d", i, st);
        const int32_t *ctxs[] = {j->prompt}, *conts[] = {j->cont};
        gfn_score_params sc = gfn_score_default_params();
        sc.adapter = adapters[j->adapter];
        CHECK(gfn_context_score(ctx, ctxs, &j->n_prompt, conts, &j->n_cont, 1, &sc, &want, wt, ws) == GFN_OK, "ref %d", i);
        CHECK(got == want && memcmp(gt, wt, sizeof(float) * (size_t)j->n_cont) == 0, "score %d differs", i);
        return;
    }
    gfn_samples *got = NULL, *want = NULL;
    gfn_status st = gfn_request_samples(j->request, &got);
    if (j->cancel && st == GFN_ERR_CANCELLED) return;
    CHECK(st == GFN_OK, "samples %d: %d", i, st);
    if (st != GFN_OK) return;
    const int32_t *prompts[] = {j->prompt};
    CHECK(gfn_context_sample(ctx, prompts, &j->n_prompt, 1, j->n, &j->sp, &want) == GFN_OK, "ref %d", i);
    for (int k = 0; k < j->n; k++) {
        gfn_sample_info a = {.size = sizeof a}, b = {.size = sizeof b};
        gfn_samples_get(got, k, &a);
        gfn_samples_get(want, k, &b);
        CHECK(a.n_tokens == b.n_tokens && a.finish_reason == b.finish_reason && a.n_steps == b.n_steps &&
              memcmp(a.tokens, b.tokens, sizeof(int32_t) * (size_t)a.n_tokens) == 0 &&
              memcmp(a.token_logprobs, b.token_logprobs, sizeof(float) * (size_t)a.n_tokens) == 0 &&
              a.logprob == b.logprob, "request %d sample %d differs from gfn_context_sample", i, k);
    }
    gfn_samples_free(got);
    gfn_samples_free(want);
}

static void train_adapter(gfn_adapter *a) {
    gfn_train_params tp = gfn_train_default_params();
    tp.lr = 0.05;
    gfn_sft *s = NULL;
    int32_t c[] = {5, 6, 7}, t[] = {8, 9};
    const int32_t *cs[] = {c}, *ts[] = {t};
    int32_t cl = 3, tl = 2;
    CHECK(gfn_sft_new(model, a, &tp, &s) == GFN_OK, "sft");
    for (int i = 0; i < 3; i++) gfn_sft_step(s, cs, &cl, ts, &tl, 1, NULL);
    gfn_sft_free(s);
}

static void queue_and_shutdown(void) {
    gfn_batcher_params bp = gfn_batcher_default_params();
    bp.max_batch = 1;
    bp.max_queue = 1;
    gfn_batcher *b = NULL;
    CHECK(gfn_batcher_new(model, &bp, &b) == GFN_OK, "small batcher");
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 64;
    int32_t p[] = {1, 2};
    gfn_request *r[4] = {0};
    CHECK(gfn_batcher_submit_sample(b, p, 2, 1, &sp, NULL, &r[0]) == GFN_OK, "first");
    gfn_batcher_stats s = {.size = sizeof s};
    for (int spin = 0; spin < 10000; spin++) {
        gfn_batcher_stats_get(b, &s);
        if (s.active_rows > 0) break;
        usleep(100);
    }
    CHECK(gfn_batcher_submit_sample(b, p, 2, 1, &sp, NULL, &r[1]) == GFN_OK, "queued");
    gfn_status st = gfn_batcher_submit_sample(b, p, 2, 1, &sp, NULL, &r[2]);
    /* the first request may have finished meanwhile; if the queue had room the submission is accepted */
    CHECK(st == GFN_ERR_BUSY || st == GFN_OK, "busy: %d", st);
    CHECK(gfn_batcher_submit_sample(b, p, 2, 2, &sp, NULL, &r[3]) == GFN_ERR_INVALID_ARGUMENT, "n > max_batch");
    CHECK(gfn_batcher_shutdown(b, 0) == GFN_OK, "shutdown");
    for (int i = 0; i < 3; i++) {
        if (!r[i]) continue;
        int32_t f = 0;
        gfn_request_wait(r[i], 0, &f);
        CHECK(f == 1, "request %d not finished after shutdown", i);
        gfn_request_free(r[i]);
    }
    CHECK(gfn_batcher_submit_sample(b, p, 2, 1, &sp, NULL, &r[3]) == GFN_ERR_STATE, "after shutdown");
    gfn_batcher_free(b);
    gfn_batcher_free(NULL);
    gfn_request_free(NULL);
}

int main(int argc, char **argv) {
    int n_requests = argc > 1 ? atoi(argv[1]) : 60, n_threads = argc > 2 ? atoi(argv[2]) : 6;
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &model) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.targets = "c_attn,c_fc,lm_head";
    for (int a = 1; a < 3; a++) {
        lp.seed = (uint64_t)a;
        CHECK(gfn_adapter_new(model, &lp, &adapters[a]) == GFN_OK, "adapter");
        train_adapter(adapters[a]);
    }
    gfn_batcher_params bp = gfn_batcher_default_params();
    bp.max_batch = 8;
    bp.max_queue = 8;
    bp.max_prefill_tokens = 12;
    CHECK(gfn_batcher_new(model, &bp, &batcher) == GFN_OK, "batcher");

    job *jobs = calloc((size_t)n_requests, sizeof *jobs);
    for (int i = 0; i < n_requests; i++) make_job(&jobs[i], i);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    slice *sl = calloc((size_t)n_threads, sizeof *sl);
    for (int t = 0; t < n_threads; t++) {
        sl[t] = (slice){jobs, t, n_requests, n_threads};
        pthread_create(&th[t], NULL, submitter, &sl[t]);
    }
    for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);

    gfn_context *ctx = NULL;
    CHECK(gfn_context_new(model, &ctx) == GFN_OK, "context");
    for (int i = 0; i < n_requests; i++) compare(&jobs[i], i, ctx);
    CHECK(gfn_batcher_shutdown(batcher, 1) == GFN_OK, "drain");
    /* exactly once per request, except for requests freed before they finished (no callback after free) */
    int freed = 0;
    for (int i = 0; i < n_requests; i++) freed += jobs[i].free_early;
    CHECK(atomic_load(&done_calls) <= n_requests && atomic_load(&done_calls) >= n_requests - freed,
          "on_done ran %d times for %d requests", atomic_load(&done_calls), n_requests);
    gfn_batcher_stats s = {.size = sizeof s};
    CHECK(gfn_batcher_stats_get(batcher, &s) == GFN_OK && s.submitted == n_requests &&
          s.completed + s.cancelled == n_requests && s.failed == 0, "stats %lld %lld %lld", (long long)s.submitted,
          (long long)s.completed, (long long)s.cancelled);

    /* an adapter handle freed while a request that uses it waits: the request keeps it alive */
    gfn_batcher *b2 = NULL;
    CHECK(gfn_batcher_new(model, NULL, &b2) == GFN_OK, "b2");
    gfn_lora_params lp2 = gfn_lora_default_params();
    gfn_adapter *temp = NULL;
    CHECK(gfn_adapter_new(model, &lp2, &temp) == GFN_OK, "temp adapter");
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.adapter = temp;
    sp.max_new_tokens = 5;
    int32_t p[] = {3, 4};
    gfn_request *r = NULL;
    CHECK(gfn_batcher_submit_sample(b2, p, 2, 2, &sp, NULL, &r) == GFN_OK, "submit with temp adapter");
    gfn_adapter_free(temp);
    int32_t f = 0;
    gfn_request_wait(r, -1, &f);
    gfn_samples *out = NULL;
    CHECK(f == 1 && gfn_request_samples(r, &out) == GFN_OK, "request after its adapter was freed");
    gfn_samples_free(out);
    gfn_request_free(r);
    gfn_batcher_free(b2);

    queue_and_shutdown();

    for (int i = 0; i < n_requests; i++) gfn_request_free(jobs[i].request);
    gfn_context_free(ctx);
    gfn_batcher_free(batcher);
    for (int a = 1; a < 3; a++) gfn_adapter_free(adapters[a]);
    gfn_model_free(model);
    free(jobs); free(th); free(sl);
    int nf = atomic_load(&failures);
    printf("test_batcher: %s (%d requests on %d threads, %d streamed tokens)\n", nf ? "FAILED" : "ok", n_requests,
           n_threads, atomic_load(&token_calls));
    return nf ? 1 : 0;
}
