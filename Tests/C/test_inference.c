/* C ABI tests of sampling, scoring, beam search, adapters, SFT and the GFlowNet trainer (tiny fixture model). */
#include "gfnlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"


static void test_sampling(gfn_model *m) {
    gfn_context *ctx = NULL;
    CHECK(gfn_context_new(m, &ctx) == GFN_OK, "context");
    int32_t prompt[3] = {1, 2, 3}, n = 3;
    const int32_t *prompts[1] = {prompt};
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 6;
    sp.seed = 5;
    gfn_samples *s = NULL;
    CHECK(gfn_context_sample(ctx, prompts, &n, 1, 4, &sp, &s) == GFN_OK, "sample");
    int32_t count = 0;
    CHECK(gfn_samples_count(s, &count) == GFN_OK && count == 4, "count %d", count);
    gfn_sample_info info = {.size = sizeof info};
    CHECK(gfn_samples_get(s, 0, &info) == GFN_OK && info.n_tokens == 6, "6 tokens");
    double sum = 0;
    for (int i = 0; i < info.n_tokens; i++) sum += info.token_logprobs[i];
    CHECK(fabs(sum - info.logprob) < 1e-3, "logprob sum");
    /* scoring the sample gives the same log-probability */
    const int32_t *conts[1] = {info.tokens};
    int32_t nc = info.n_tokens;
    double total = 0;
    gfn_score_params scp = gfn_score_default_params();
    CHECK(gfn_context_score(ctx, prompts, &n, conts, &nc, 1, &scp, &total, NULL, NULL) == GFN_OK, "score");
    CHECK(fabs(total - info.logprob) < 1e-3, "score %f vs %f", total, info.logprob);
    CHECK(gfn_samples_get(s, 4, &info) == GFN_ERR_OUT_OF_RANGE, "index out of range");
    gfn_sample_info small = {.size = 4};
    CHECK(gfn_samples_get(s, 0, &small) == GFN_ERR_INVALID_ARGUMENT, "small struct");
    gfn_samples_free(s);
    gfn_samples_free(NULL);
    /* errors */
    CHECK(gfn_context_sample(NULL, prompts, &n, 1, 1, &sp, &s) == GFN_ERR_INVALID_ARGUMENT, "NULL ctx");
    CHECK(gfn_context_sample(ctx, prompts, &n, 1, 0, &sp, &s) == GFN_ERR_INVALID_ARGUMENT, "n = 0");
    int32_t bad[1] = {99999}, nb = 1;
    const int32_t *badp[1] = {bad};
    CHECK(gfn_context_sample(ctx, badp, &nb, 1, 1, &sp, &s) == GFN_ERR_OUT_OF_RANGE, "oov prompt");
    int32_t longp[100];
    for (int i = 0; i < 100; i++) longp[i] = 1;
    int32_t nl = 100;
    const int32_t *lp[1] = {longp};
    CHECK(gfn_context_sample(ctx, lp, &nl, 1, 1, &sp, &s) == GFN_ERR_OUT_OF_RANGE, "prompt beyond n_positions");
    gfn_sampling_params wrong = sp;
    wrong.size = 8;
    CHECK(gfn_context_sample(ctx, prompts, &n, 1, 1, &wrong, &s) == GFN_ERR_INVALID_ARGUMENT, "wrong size");
    wrong = sp;
    wrong.top_p = 0;
    CHECK(gfn_context_sample(ctx, prompts, &n, 1, 1, &wrong, &s) == GFN_ERR_INVALID_ARGUMENT, "top_p 0");
    gfn_beam_params bp = gfn_beam_default_params();
    bp.num_beams = 3;
    bp.num_groups = 2;
    CHECK(gfn_context_beam_search(ctx, prompt, n, &bp, &s) == GFN_ERR_INVALID_ARGUMENT, "beams vs groups");
    bp.num_groups = 1;
    bp.max_new_tokens = 3;
    CHECK(gfn_context_beam_search(ctx, prompt, n, &bp, &s) == GFN_OK, "beam");
    gfn_samples_free(s);
    gfn_context_free(ctx);
}

static int32_t length_reward(void *ud, int32_t prompt_index, const int32_t *const *states, const int32_t *lengths,
                             int32_t n, double *out) {
    int *mode = (int *)ud;
    (void)prompt_index;
    (void)states;
    if (*mode == 1) return 7;
    for (int i = 0; i < n; i++) out[i] = *mode == 2 ? NAN : -(double)lengths[i] + (lengths[i] > 0 && states[i][0] == 5 ? 2 : 0);
    return 0;
}

static int32_t stop_after_two(void *ud, const gfn_step_stats *s) {
    (void)ud;
    return s->step < 1;
}

static void test_training(gfn_model *m) {
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.alpha = 8;
    lp.targets = "c_attn, c_fc";
    gfn_adapter *a = NULL;
    CHECK(gfn_adapter_new(m, &lp, &a) == GFN_OK, "adapter");
    int64_t pc = 0;
    CHECK(gfn_adapter_parameter_count(a, &pc) == GFN_OK && pc == 2 * (4 * (64 + 192) + 4 * (64 + 256)), "params %lld", (long long)pc);
    lp.targets = "q_proj";
    gfn_adapter *bad = NULL;
    CHECK(gfn_adapter_new(m, &lp, &bad) == GFN_ERR_INVALID_ARGUMENT, "no matching module");
    CHECK(strstr(gfn_last_error(), "c_attn") != NULL, "message lists modules: %s", gfn_last_error());
    CHECK(gfn_adapter_load(m, "/nonexistent-adapter", &bad) == GFN_ERR_IO, "missing adapter dir");

    /* SFT */
    gfn_train_params tp = gfn_train_default_params();
    tp.lr = 5e-2;
    gfn_sft *sft = NULL;
    CHECK(gfn_sft_new(m, a, &tp, &sft) == GFN_OK, "sft");
    int32_t c0[2] = {1, 2}, t0[3] = {3, 4, 5};
    const int32_t *cs[1] = {c0}, *ts[1] = {t0};
    int32_t cl[1] = {2}, tl[1] = {3};
    gfn_sft_stats st = {.size = sizeof st}, first = {.size = sizeof first};
    CHECK(gfn_sft_evaluate(sft, cs, cl, ts, tl, 1, &first) == GFN_OK, "evaluate");
    for (int i = 0; i < 20; i++) gfn_sft_step(sft, cs, cl, ts, tl, 1, &st);
    CHECK(gfn_sft_evaluate(sft, cs, cl, ts, tl, 1, &st) == GFN_OK && st.loss < first.loss / 2, "SFT learns: %f → %f", first.loss, st.loss);
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/gfnlm-ctest-%d", (int)getpid());
    CHECK(gfn_adapter_save(a, dir) == GFN_OK, "save adapter");
    gfn_adapter *back = NULL;
    CHECK(gfn_adapter_load(m, dir, &back) == GFN_OK, "load adapter");
    gfn_adapter_free(back);
    gfn_sft_free(sft);

    /* GFlowNet with a C reward */
    int mode = 0;
    gfn_reward *r = NULL;
    CHECK(gfn_reward_new_callback(length_reward, &mode, 0, &r) == GFN_OK, "callback reward");
    int32_t x[2] = {7, 8};
    gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 2, .weight = 1};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gp.termination = 0;
    gp.max_length = 3;
    gp.batch_size = 4;
    gp.grad_accumulation = 2;
    gfn_gflownet *g = NULL;
    CHECK(gfn_gflownet_new(m, a, r, &p, 1, &gp, &g) == GFN_OK, "trainer");
    gfn_step_stats ss = {.size = sizeof ss};
    CHECK(gfn_gflownet_step(g, &ss) == GFN_OK && ss.trajectories == 8 && isfinite(ss.loss), "step");
    mode = 2;
    CHECK(gfn_gflownet_step(g, &ss) == GFN_ERR_NUMERICAL, "NaN reward");
    mode = 1;
    CHECK(gfn_gflownet_step(g, &ss) == GFN_ERR_CALLBACK, "callback error");
    mode = 0;
    CHECK(gfn_gflownet_set_progress(g, stop_after_two, NULL) == GFN_OK, "progress");
    CHECK(gfn_gflownet_train(g, 10, &ss) == GFN_ERR_CANCELLED, "cancelled by progress");
    int32_t vocab[3] = {4, 5, 6};
    gfn_exact_result ex = {.size = sizeof ex};
    CHECK(gfn_gflownet_exact(g, 0, vocab, 3, &ex) == GFN_OK && ex.n_sequences == 40, "exact %d", ex.n_sequences);
    gfn_samples *s = NULL;
    CHECK(gfn_gflownet_sample(g, x, 2, 5, 1.0f, 3, &s) == GFN_OK, "amortized sample");
    gfn_samples_free(s);
    CHECK(gfn_gflownet_save(g, dir) == GFN_OK, "checkpoint");
    CHECK(gfn_gflownet_load(g, dir) == GFN_OK, "resume");
    gfn_gflownet_free(g);
    gfn_reward_free(r);
    gfn_adapter_free(a);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
    gfn_model *m = NULL;
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &m) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    test_sampling(m);
    test_training(m);
    gfn_model_free(m);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_inference: all passed\n");
    return 0;
}
