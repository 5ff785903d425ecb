/* Train an amortized sampler from C with a reward written in C, then save the LoRA adapter (PEFT layout).

   The task: continue "the movie is" with a review sentence (up to MAX_LEN tokens, ended by <|endoftext|>), but
   prefer sentences with exactly one comma. The reward is the language model's own likelihood tilted by a bonus:

       log R(Z) = log p_LM(Z ⊤ | X) + BONUS · [Z contains exactly one comma token]

   computed here in C with the library's scoring (gfn_context_score on the base model, adapter off). The GFlowNet
   trainer (modified sub-trajectory balance, LoRA) makes the model sample Z ∝ R(Z): the language model's
   distribution with the one-comma sentences up-weighted by e^BONUS, every other probability ratio unchanged.

   That makes the result checkable. A trajectory that reaches MAX_LEN tokens ends there (layout forced_stop,
   log q(⊤ | s_max) := 0), so the reward leaves out p(⊤) at MAX_LEN tokens; then the untrained sampler is exactly
   the BONUS = 0 target, and if a fraction `a` of its samples has one comma, the target fraction is
       e^BONUS·a / (e^BONUS·a + 1 − a).
   The program measures `a` before training, trains, and measures the fraction again.

   Build (from the repository root, after `make lib`):
     gcc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude examples/c/train_sampler.c -Lbuild -lgfnlm \
         -Wl,-rpath,build -o build/examples/train_sampler
   Usage: train_sampler [model_dir] [steps] [adapter_out_dir]     (defaults: models/demo-gpt2 300 build/one-comma-adapter)
   The last line is machine-readable: before_one_comma=… after_one_comma=… target_one_comma=… … */
#include "gfnlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LEN 16
#ifndef BONUS
#define BONUS 2.0
#endif
#define PROMPT "the movie is"
#define MAX_STATES 4096

static int fail(const char *what, gfn_status st) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, gfn_last_error(), gfn_status_name(st));
    return 1;
}

#define CHECK(call)                                  \
    do {                                             \
        gfn_status st_ = (call);                     \
        if (st_ != GFN_OK) return fail(#call, st_);  \
    } while (0)

/* e^x by its Taylor series (|x| small here), so that the example links without -lm. */
static double exp_series(double x) {
    double term = 1, sum = 1;
    for (int k = 1; k < 60; k++) {
        term *= x / k;
        sum += term;
    }
    return sum;
}

/* ---- the reward ---------------------------------------------------------------------------------------------- */

typedef struct {
    gfn_context *ctx;       /* a context of our own for scoring (the trainer's must not be re-entered) */
    const int32_t *prompt;
    int32_t n_prompt;
    int32_t eos;
    int32_t comma, space_comma; /* "," and " ," */
    int32_t calls;
} reward_state;

static int count_commas(const reward_state *rs, const int32_t *z, int32_t n) {
    int c = 0;
    for (int32_t i = 0; i < n; i++) c += (z[i] == rs->comma || z[i] == rs->space_comma);
    return c;
}

static int is_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na <= nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* gfn_reward_fn: log R(s ⊤) for every state s (the tokens after X). The trainer passes every prefix of every
   trajectory; one scoring pass over each longest state gives the log-probabilities of all its prefixes. */
static int32_t one_comma_reward(void *user_data, int32_t prompt_index, const int32_t *const *states,
                                const int32_t *state_lengths, int32_t n_states, double *log_rewards) {
    (void)prompt_index;
    reward_state *rs = user_data;
    if (n_states > MAX_STATES) return 1;
    static int32_t carrier[MAX_STATES];           /* the longest state that has state i as a prefix */
    static int32_t slot[MAX_STATES];              /* index of that carrier among the scored sequences */
    static const int32_t *conts[MAX_STATES];
    static int32_t cont_len[MAX_STATES];
    static const int32_t *ctxs[MAX_STATES];
    static int32_t ctx_len[MAX_STATES];
    static int32_t offset[MAX_STATES];
    int32_t n_scored = 0, total_tokens = 0;
    for (int32_t i = 0; i < n_states; i++) {
        int32_t best = i;
        for (int32_t j = 0; j < n_states; j++)
            if (state_lengths[j] > state_lengths[best] &&
                is_prefix(states[i], state_lengths[i], states[j], state_lengths[j]))
                best = j;
        carrier[i] = best;
    }
    for (int32_t i = 0; i < n_states; i++) {
        if (carrier[i] != i) continue;
        slot[i] = n_scored;
        conts[n_scored] = states[i];
        cont_len[n_scored] = state_lengths[i];
        ctxs[n_scored] = rs->prompt;
        ctx_len[n_scored] = rs->n_prompt;
        offset[n_scored] = total_tokens;
        total_tokens += state_lengths[i];
        n_scored++;
    }
    double *totals = malloc(sizeof(double) * (size_t)n_scored);
    float *tok_lp = malloc(sizeof(float) * (size_t)(total_tokens + 1));
    float *stop_lp = malloc(sizeof(float) * (size_t)(total_tokens + n_scored));
    if (!totals || !tok_lp || !stop_lp) { free(totals); free(tok_lp); free(stop_lp); return 1; }
    gfn_score_params sp = gfn_score_default_params();   /* adapter NULL: the base model */
    sp.stop_tokens = &rs->eos;
    sp.n_stop_tokens = 1;
    gfn_status st = gfn_context_score(rs->ctx, ctxs, ctx_len, conts, cont_len, n_scored, &sp, totals, tok_lp, stop_lp);
    if (st == GFN_OK) {
        for (int32_t i = 0; i < n_states; i++) {
            int32_t k = slot[carrier[i]], n = state_lengths[i];
            const float *lp = tok_lp + offset[k];
            const float *stop = stop_lp + offset[k] + k;   /* (len + 1) stop values per scored sequence */
            double r = 0;
            for (int32_t t = 0; t < n; t++) r += lp[t];
            if (n < MAX_LEN) r += stop[n];               /* at MAX_LEN the trajectory ends without ⊤ */
            if (count_commas(rs, states[i], n) == 1) r += BONUS;
            log_rewards[i] = r;
        }
    }
    free(totals);
    free(tok_lp);
    free(stop_lp);
    rs->calls++;
    return st == GFN_OK ? 0 : 1;
}

/* ---- progress ------------------------------------------------------------------------------------------------ */

typedef struct {
    int32_t every;
    clock_t start;
} progress_state;

static int32_t on_step(void *user_data, const gfn_step_stats *s) {
    progress_state *ps = user_data;
    if (s->step % ps->every == 0)
        printf("  step %4d: loss %8.4f  mean log R %7.2f  length %5.2f  unique %.2f  Var(log R − log q) %7.3f  "
               "lr %.1e  [%d on-policy, %d tempered, %d replay]\n",
               s->step, s->loss, s->mean_log_r, s->mean_length, s->fraction_unique, s->var_log_r_minus_log_q,
               s->learning_rate, s->on_policy_batches, s->tempered_batches, s->replay_batches);
    fflush(stdout);
    return 1; /* continue */
}

/* ---- sampling and measuring ---------------------------------------------------------------------------------- */

static int measure(gfn_gflownet *tr, const gfn_tokenizer *tok, const reward_state *rs, int32_t count, uint64_t seed,
                   int32_t show, double *fraction, double *mean_len) {
    gfn_samples *out = NULL;
    CHECK(gfn_gflownet_sample(tr, rs->prompt, rs->n_prompt, count, 1.0f, seed, &out));
    int32_t n = 0, ones = 0;
    long tokens = 0;
    gfn_samples_count(out, &n);
    char buf[2048];
    size_t nb = 0;
    for (int32_t i = 0; i < n; i++) {
        gfn_sample_info info = {.size = sizeof info};
        CHECK(gfn_samples_get(out, i, &info));
        int c = count_commas(rs, info.tokens, info.n_tokens);
        ones += c == 1;
        tokens += info.n_tokens;
        if (i < show) {
            if (gfn_tokenizer_decode(tok, info.tokens, info.n_tokens, buf, sizeof buf, &nb) != GFN_OK) buf[0] = 0;
            printf("    %s%s  [%d comma%s%s]\n", PROMPT, buf, c, c == 1 ? "" : "s",
                   info.finish_reason == 0 ? "" : ", max length");
        }
    }
    gfn_samples_free(out);
    *fraction = (double)ones / n;
    *mean_len = (double)tokens / n;
    return 0;
}

int main(int argc, char **argv) {
    const char *model_path = argc > 1 ? argv[1] : "models/demo-gpt2";
    int32_t steps = argc > 2 ? atoi(argv[2]) : 300;
    const char *out_dir = argc > 3 ? argv[3] : "build/one-comma-adapter";
    const int32_t n_eval = steps >= 100 ? 1000 : 64;
    clock_t t0 = clock();

    gfn_model *model = NULL;
    CHECK(gfn_model_load(model_path, NULL, &model));
    const gfn_tokenizer *tok = NULL;
    CHECK(gfn_model_tokenizer(model, &tok));
    if (!tok) {
        fprintf(stderr, "no tokenizer files beside %s\n", model_path);
        return 1;
    }
    int32_t prompt[64], n_prompt = 0, eos = -1, ids[8], n_ids = 0;
    CHECK(gfn_tokenizer_encode(tok, PROMPT, 0, prompt, 64, &n_prompt));
    CHECK(gfn_tokenizer_eos(tok, &eos));
    reward_state rs = {.prompt = prompt, .n_prompt = n_prompt, .eos = eos};
    CHECK(gfn_tokenizer_encode(tok, ",", 0, ids, 8, &n_ids));
    rs.comma = ids[0];
    CHECK(gfn_tokenizer_encode(tok, " ,", 0, ids, 8, &n_ids));
    rs.space_comma = ids[0];
    CHECK(gfn_context_new(model, &rs.ctx));

    /* LoRA adapter: B = 0 at first, so the policy starts as the base model. */
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 16;
    lp.alpha = 32;
    lp.targets = "c_attn,c_proj,c_fc";
    lp.seed = 7;
    gfn_adapter *adapter = NULL;
    CHECK(gfn_adapter_new(model, &lp, &adapter));
    int64_t n_params = 0;
    gfn_adapter_parameter_count(adapter, &n_params);

    gfn_reward *reward = NULL;
    CHECK(gfn_reward_new_callback(one_comma_reward, &rs, 0, &reward));

    gfn_gflownet_params gp = gfn_gflownet_default_params();

    gfn_train_params train = gfn_train_default_params();   /* read by gfn_gflownet_new */

    gp.train = &train;
    gp.objective = GFN_OBJECTIVE_SUBTB;
    gp.layout = GFN_LAYOUT_FORCED_STOP;
    gp.termination = eos;
    gp.min_length = 1;
    gp.max_length = MAX_LEN;
    gp.batch_size = 16;
    gp.grad_accumulation = 1;
    train.lr = 1e-3;
    train.warmup_steps = 10;
    gp.p_on_policy = 0.5;   /* the rest: replay 0.25, tempered (τ ~ U[0.5, 2]) 0.25 */
    gp.p_replay = 0.25;
    gp.seed = 11;
    gfn_prompt pr = {.size = sizeof(gfn_prompt), .x = prompt, .n_x = n_prompt, .weight = 1};
    gfn_gflownet *tr = NULL;
    CHECK(gfn_gflownet_new(model, adapter, reward, &pr, 1, &gp, &tr));
    progress_state ps = {.every = steps >= 20 ? steps / 10 : 1, .start = clock()};
    CHECK(gfn_gflownet_set_progress(tr, on_step, &ps));

    printf("gfnlm %s, model %s; reward: log p_LM(Z ⊤ | \"%s\") + %.1f·[exactly one comma]; LoRA %lld parameters\n",
           gfn_version(), model_path, PROMPT, BONUS, (long long)n_params);

    double before = 0, before_len = 0, after = 0, after_len = 0;
    printf("before training (%d samples; the first 4):\n", n_eval);
    if (measure(tr, tok, &rs, n_eval, 1, 4, &before, &before_len)) return 1;
    double e = exp_series(BONUS), target = e * before / (e * before + 1 - before);
    printf("  exactly one comma: %.1f%%  (mean length %.2f) → target after training %.1f%%\n", 100 * before,
           before_len, 100 * target);

    printf("training %d steps of %d trajectories:\n", steps, gp.batch_size * gp.grad_accumulation);
    gfn_step_stats last = {.size = sizeof last};
    CHECK(gfn_gflownet_train(tr, steps, &last));

    printf("after training (%d samples; the first 4):\n", n_eval);
    if (measure(tr, tok, &rs, n_eval, 2, 4, &after, &after_len)) return 1;
    printf("  exactly one comma: %.1f%%  (mean length %.2f); target %.1f%%\n", 100 * after, after_len, 100 * target);

    /* Save the adapter in PEFT's layout and check that it reloads to the same policy. */
    CHECK(gfn_adapter_save(adapter, out_dir));
    gfn_adapter *loaded = NULL;
    CHECK(gfn_adapter_load(model, out_dir, &loaded));
    int32_t seq[64];
    int32_t n_seq = 0;
    CHECK(gfn_tokenizer_encode(tok, PROMPT " good , but slow .", 0, seq, 64, &n_seq));
    gfn_model_config cfg = {.size = sizeof cfg};
    CHECK(gfn_model_config_get(model, &cfg));
    size_t cap = (size_t)n_seq * (size_t)cfg.vocab_size;
    float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b), *base = malloc(cap * sizeof *base);
    if (!a || !b || !base) return 1;
    CHECK(gfn_model_logits(model, adapter, seq, 1, n_seq, NULL, a, cap));
    CHECK(gfn_model_logits(model, loaded, seq, 1, n_seq, NULL, b, cap));
    CHECK(gfn_model_logits(model, NULL, seq, 1, n_seq, NULL, base, cap));
    double reload_diff = 0, adapter_vs_base = 0;
    for (size_t i = 0; i < cap; i++) {
        double d1 = (double)a[i] - b[i], d2 = (double)a[i] - base[i];
        if (d1 < 0) d1 = -d1;
        if (d2 < 0) d2 = -d2;
        if (d1 > reload_diff) reload_diff = d1;
        if (d2 > adapter_vs_base) adapter_vs_base = d2;
    }
    printf("adapter saved to %s and reloaded: max |Δ logit| %.2g (trained vs base model: %.3g)\n", out_dir, reload_diff,
           adapter_vs_base);
    free(a);
    free(b);
    free(base);
    double cpu = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("reward calls %d, CPU time %.0f s\n", rs.calls, cpu);
    printf("before_one_comma=%.4f after_one_comma=%.4f target_one_comma=%.4f before_len=%.2f after_len=%.2f "
           "final_loss=%.4f steps=%d reload_max_diff=%.3g adapter_vs_base=%.3g\n",
           before, after, target, before_len, after_len, last.loss, steps, reload_diff, adapter_vs_base);

    gfn_adapter_free(loaded);
    gfn_gflownet_free(tr);
    gfn_reward_free(reward);
    gfn_adapter_free(adapter);
    gfn_context_free(rs.ctx);
    gfn_model_free(model);
    return reload_diff < 1e-4 ? 0 : 1;
}
