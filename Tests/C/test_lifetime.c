/* The model-lifetime rule (include/gfnlm.h, "Lifetimes"): every object made from a model holds it, so the model
   handle may be freed first. Afterwards the objects keep working with the same results, and the handle itself is
   dead: calls that take it fail with GFN_ERR_INVALID_ARGUMENT instead of touching freed memory. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gfnlm.h"

#include "check.h"

#define FIXTURE "Tests/Fixtures/gpt2-tiny/legacy17"
enum { V = 512, T = 4, N_SAMPLES = 3 };

/* Tokens of one seeded sampling call (n_samples × max 6). */
static void sample(gfn_context *ctx, const gfn_adapter *a, int32_t out[N_SAMPLES][8], int32_t n[N_SAMPLES]) {
    int32_t prompt[2] = {5, 6}, len = 2;
    const int32_t *prompts[1] = {prompt};
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 6;
    sp.seed = 11;
    sp.adapter = a;
    gfn_samples *s = NULL;
    CHECK(gfn_context_sample(ctx, prompts, &len, 1, N_SAMPLES, &sp, &s) == GFN_OK, "sample");
    for (int i = 0; i < N_SAMPLES; i++) {
        gfn_sample_info info = {.size = sizeof info};
        n[i] = 0;
        if (s && gfn_samples_get(s, i, &info) == GFN_OK) {
            n[i] = info.n_tokens;
            memcpy(out[i], info.tokens, sizeof(int32_t) * (size_t)(info.n_tokens < 8 ? info.n_tokens : 8));
        }
    }
    gfn_samples_free(s);
}

int main(void) {
    gfn_model *m = NULL;
    if (gfn_model_load(FIXTURE, NULL, &m) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    gfn_context *ctx = NULL;
    gfn_adapter *a = NULL;
    gfn_reward *r = NULL;
    gfn_gflownet *g = NULL;
    gfn_batcher *b = NULL;
    gfn_lora_params lp = gfn_lora_default_params();
    lp.seed = 3;
    CHECK(gfn_context_new(m, &ctx) == GFN_OK, "context");
    CHECK(gfn_adapter_new(m, &lp, &a) == GFN_OK, "adapter");
    int32_t numbers[3] = {10, 11, 12};
    CHECK(gfn_reward_new_random_integer(numbers, 3, 0, &r) == GFN_OK, "reward");
    int32_t x[2] = {7, 8};
    gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 2};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gp.termination = 0, gp.max_length = 3, gp.batch_size = 2;
    CHECK(gfn_gflownet_new(m, a, r, &p, 1, &gp, &g) == GFN_OK, "trainer");
    CHECK(gfn_batcher_new(m, NULL, &b) == GFN_OK, "batcher");

    int32_t before[N_SAMPLES][8], n_before[N_SAMPLES];
    sample(ctx, a, before, n_before);
    int32_t ids[T] = {1, 2, 3, 4};
    float *logits = malloc(sizeof(float) * T * V);

    /* the model handle goes first */
    gfn_model_free(m);

    int32_t after[N_SAMPLES][8], n_after[N_SAMPLES];
    sample(ctx, a, after, n_after);
    for (int i = 0; i < N_SAMPLES; i++) {
        CHECK(n_after[i] == n_before[i] && memcmp(after[i], before[i], sizeof(int32_t) * (size_t)n_before[i]) == 0,
              "sample %d is the same after gfn_model_free", i);
    }
    gfn_step_stats ss = {.size = sizeof ss};
    CHECK(gfn_gflownet_step(g, &ss) == GFN_OK && isfinite(ss.loss), "the trainer steps after gfn_model_free");
    gfn_request *req = NULL;
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 3;
    CHECK(gfn_batcher_submit_sample(b, x, 2, 2, &sp, NULL, &req) == GFN_OK, "the batcher takes a request");
    int32_t finished = 0;
    CHECK(gfn_request_wait(req, 60000, &finished) == GFN_OK && finished == 1, "the request finishes");
    gfn_samples *rs = NULL;
    CHECK(gfn_request_samples(req, &rs) == GFN_OK, "the request's samples");
    gfn_samples_free(rs);
    gfn_request_free(req);

    /* the dead handle is refused, not dereferenced */
    CHECK(gfn_model_logits(m, NULL, ids, 1, T, NULL, logits, (size_t)T * V) == GFN_ERR_INVALID_ARGUMENT &&
              strstr(gfn_last_error(), "not a live") != NULL,
          "logits on a freed model");
    gfn_context *ctx2 = NULL;
    CHECK(gfn_context_new(m, &ctx2) == GFN_ERR_INVALID_ARGUMENT && ctx2 == NULL, "a context from a freed model");
    gfn_adapter *a2 = NULL;
    CHECK(gfn_adapter_new(m, &lp, &a2) == GFN_ERR_INVALID_ARGUMENT && a2 == NULL, "an adapter from a freed model");
    gfn_model_free(m);   /* a second free of the dead handle is a no-op */

    /* the adapter next (the trainer holds it), then the rest in any order */
    gfn_adapter_free(a);
    CHECK(gfn_gflownet_step(g, &ss) == GFN_OK, "the trainer steps after gfn_adapter_free");
    gfn_batcher_free(b);
    gfn_context_free(ctx);
    gfn_gflownet_free(g);
    gfn_reward_free(r);
    free(logits);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", (int)failures);
        return 1;
    }
    printf("test_lifetime: all passed (%d checks)\n", (int)checks);
    return 0;
}
