/* Hostile arguments at the inference, adapter, SFT, tokenizer and handle entry points (hostile_api.h says how the
 * probes run; test_hostile_gflownet.c has the GFlowNet trainers and rewards). Run from the repository root. */
#define _GNU_SOURCE
#include "hostile_api.h"

/* ---------------------------------------------------------------- probes
 * Probes never lie about the size of a buffer they pass (that is the caller's contract); they pass extreme counts,
 * sizes and values that the library must refuse or handle. */

static void p_sample_counts(env *e) {
    const int32_t *pp[] = {prompt};
    int32_t len = 4;
    gfn_samples *out = NULL;
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 1;
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 0x7fffffff, &sp, &out), GFN_ERR_OUT_OF_MEMORY);
    int32_t lens[2] = {4, 4};
    const int32_t *pp2[] = {prompt, prompt};
    EXPECT(gfn_context_sample(e->ctx, pp2, lens, 2, 0x40000000, &sp, &out), GFN_ERR_OUT_OF_MEMORY);
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, -5, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_context_sample(e->ctx, pp, &len, -1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
}

static void p_sample_params(env *e) {
    const int32_t *pp[] = {prompt};
    int32_t len = 4;
    gfn_samples *out = NULL;
    gfn_sampling_params sp = gfn_sampling_default_params();
    gfn_logit_adjustment adj;         /* sp.adjust points here where a test sets it */
    sp.max_new_tokens = 0x7fffffff;   /* reduced to the positions left */
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_OK);
    gfn_samples_free(out);
    out = NULL;
    sp = gfn_sampling_default_params();
    sp.min_new_tokens = 0x7fffffff;
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
    float bad_f[] = {NAN, INFINITY, -1.0f, -INFINITY};
    for (int i = 0; i < 4; i++) {
        sp = gfn_sampling_default_params();
        sp.temperature = bad_f[i];
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
        sp = gfn_sampling_default_params();
        sp.top_p = bad_f[i];
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
        sp = gfn_sampling_default_params();
        adj = gfn_logit_default_adjustment();
        sp.adjust = &adj;
        int32_t allowed[] = {5, 6};
        adj.disallowed_penalty = bad_f[i]; adj.allowed_tokens = allowed; adj.n_allowed_tokens = 2;
        RETURNS(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out));
        gfn_samples_free(out);
        out = NULL;
        int32_t bt[] = {7};
        float bv[] = {bad_f[i]};
        sp = gfn_sampling_default_params();
        adj = gfn_logit_default_adjustment();
        sp.adjust = &adj;
        adj.bias_tokens = bt; adj.bias_values = bv; adj.n_bias = 1;
        RETURNS(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out));
        gfn_samples_free(out);
        out = NULL;
    }
    sp = gfn_sampling_default_params();
    sp.top_k = 0x7fffffff;
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_OK);
    gfn_samples_free(out);
    out = NULL;
    sp.top_k = -1;
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT);
    /* ids outside the vocabulary in every id list */
    int32_t badids[] = {-1, 512, 0x7fffffff, (int32_t)0x80000000};
    for (int i = 0; i < 4; i++) {
        sp = gfn_sampling_default_params();
        sp.stop_tokens = &badids[i];
        sp.n_stop_tokens = 1;
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
        sp = gfn_sampling_default_params();
        adj = gfn_logit_default_adjustment();
        sp.adjust = &adj;
        adj.allowed_tokens = &badids[i]; adj.n_allowed_tokens = 1;
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
        sp = gfn_sampling_default_params();
        float v = 1;
        adj = gfn_logit_default_adjustment();
        sp.adjust = &adj;
        adj.bias_tokens = &badids[i]; adj.bias_values = &v; adj.n_bias = 1;
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
        const int32_t *bp[] = {&badids[i]};
        int32_t one = 1;
        sp = gfn_sampling_default_params();
        EXPECT(gfn_context_sample(e->ctx, bp, &one, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
    }
    /* everything masked */
    sp = gfn_sampling_default_params();
    adj = gfn_logit_default_adjustment();
    sp.adjust = &adj;
    int32_t none = 3;
    float minus_inf = -INFINITY;
    adj.allowed_tokens = &none; adj.n_allowed_tokens = 1;
    adj.bias_tokens = &none; adj.bias_values = &minus_inf; adj.n_bias = 1;
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_NUMERICAL);
}

static void p_score(env *e) {
    const int32_t *cs[] = {prompt};
    int32_t cl = 4, nl = 0x7fffffff;
    double tot;
    gfn_score_params sc = gfn_score_default_params();
    int32_t bad[] = {600};
    const int32_t *ns[] = {bad};
    nl = 1;
    EXPECT(gfn_context_score(e->ctx, cs, &cl, ns, &nl, 1, &sc, &tot, NULL, NULL), GFN_ERR_OUT_OF_RANGE);
    int32_t longc[70];
    for (int i = 0; i < 70; i++) longc[i] = i;
    const int32_t *ls[] = {longc};
    int32_t ll = 70, zero = 0;
    const int32_t *es[] = {NULL};
    EXPECT(gfn_context_score(e->ctx, ls, &ll, es, &zero, 1, &sc, &tot, NULL, NULL), GFN_ERR_OUT_OF_RANGE);
    cl = 0;
    EXPECT(gfn_context_score(e->ctx, cs, &cl, es, &zero, 1, &sc, &tot, NULL, NULL), GFN_ERR_INVALID_ARGUMENT);
    cl = 4;
    EXPECT(gfn_context_score(e->ctx, cs, &cl, es, &zero, 0, &sc, &tot, NULL, NULL), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_context_score(e->ctx, cs, &cl, ls, &ll, 1, &sc, &tot, NULL, NULL), GFN_ERR_OUT_OF_RANGE);
}

static void p_beam(env *e) {
    gfn_samples *out = NULL;
    gfn_beam_params bp = gfn_beam_default_params();
    int vals[] = {0, -1, 0x7fffffff};
    for (int i = 0; i < 3; i++) {
        bp = gfn_beam_default_params();
        bp.num_beams = vals[i];
        RETURNS(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out));
        gfn_samples_free(out); out = NULL;
        bp = gfn_beam_default_params();
        bp.num_return = vals[i];
        EXPECT(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out), GFN_ERR_INVALID_ARGUMENT);
        bp = gfn_beam_default_params();
        bp.num_groups = vals[i];
        EXPECT(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out), GFN_ERR_INVALID_ARGUMENT);
        bp = gfn_beam_default_params();
        bp.max_new_tokens = vals[i];
        RETURNS(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out));
        gfn_samples_free(out); out = NULL;
        bp = gfn_beam_default_params();
        bp.min_new_tokens = vals[i];
        RETURNS(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out));
        gfn_samples_free(out); out = NULL;
    }
    float bad_f[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        bp = gfn_beam_default_params();
        bp.length_penalty = bad_f[i];
        RETURNS(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out));
        gfn_samples_free(out); out = NULL;
        bp = gfn_beam_default_params();
        bp.num_groups = 2;
        bp.diversity_penalty = bad_f[i];
        RETURNS(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out));
        gfn_samples_free(out); out = NULL;
    }
    bp = gfn_beam_default_params();
    bp.num_beams = 1 << 24;
    bp.num_return = 1;
    EXPECT(gfn_context_beam_search(e->ctx, prompt, 4, &bp, &out), GFN_ERR_OUT_OF_MEMORY);
}

static void p_logits(env *e) {
    static float buf[4 * 512];
    int32_t ids[4] = {1, 2, 3, 4};
    EXPECT(gfn_model_logits(e->model, NULL, ids, 0x7fffffff, 0x7fffffff, NULL, buf, 4 * 512), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_model_logits(e->model, e->adapter, ids, 0x7fffffff, 0x7fffffff, NULL, buf, 4), GFN_ERR_OUT_OF_RANGE);
}

static void p_adapter_params(env *e) {
    gfn_adapter *a = NULL;
    gfn_lora_params lp = gfn_lora_default_params();
    int ranks[] = {0, -1, 0x7fffffff, 1 << 16, (1 << 16) + 1};
    int want[] = {GFN_ERR_INVALID_ARGUMENT, GFN_ERR_INVALID_ARGUMENT, GFN_ERR_INVALID_ARGUMENT, GFN_OK, GFN_ERR_INVALID_ARGUMENT};
    for (int i = 0; i < 5; i++) {
        lp = gfn_lora_default_params();
        lp.r = ranks[i];
        EXPECT(gfn_adapter_new(e->model, &lp, &a), want[i]);
        gfn_adapter_free(a); a = NULL;
    }
    float bad_f[] = {NAN, INFINITY, -1.0f, 1.0f, 2.0f};
    for (int i = 0; i < 5; i++) {
        lp = gfn_lora_default_params();
        lp.dropout = bad_f[i];
        EXPECT(gfn_adapter_new(e->model, &lp, &a), GFN_ERR_INVALID_ARGUMENT);
        lp = gfn_lora_default_params();
        lp.alpha = bad_f[i];
        RETURNS(gfn_adapter_new(e->model, &lp, &a));
        gfn_adapter_free(a); a = NULL;
    }
    lp = gfn_lora_default_params();
    lp.targets = ",,, ,";
    EXPECT(gfn_adapter_new(e->model, &lp, &a), GFN_ERR_INVALID_ARGUMENT);
    lp.targets = "nothing";
    EXPECT(gfn_adapter_new(e->model, &lp, &a), GFN_ERR_INVALID_ARGUMENT);
    lp.targets = "\xff\xfe";
    EXPECT(gfn_adapter_new(e->model, &lp, &a), GFN_ERR_INVALID_ARGUMENT);
}

static void p_train_params(env *e) {
    gfn_sft *s = NULL;
    double bad[] = {NAN, INFINITY, -1.0};
    for (int i = 0; i < 3; i++) {
        gfn_train_params tp = gfn_train_default_params();
        tp.lr = bad[i];
        EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
        tp = gfn_train_default_params();
        tp.beta1 = bad[i];
        EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
        tp = gfn_train_default_params();
        tp.eps = bad[i];
        EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
        tp = gfn_train_default_params();
        tp.max_grad_norm = bad[i];
        EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
        tp = gfn_train_default_params();
        tp.weight_decay = bad[i];
        EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
    }
    gfn_train_params tp = gfn_train_default_params();
    tp.beta2 = 1.0;
    EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
    tp = gfn_train_default_params();
    tp.warmup_steps = 0x7fffffff;
    tp.total_steps = 0x7fffffff;
    EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_OK);
    int32_t c[] = {1}, t[] = {2};
    const int32_t *cs[] = {c}, *ts[] = {t};
    int32_t one = 1;
    gfn_sft_stats st = {.size = sizeof st};
    EXPECT(gfn_sft_step(s, cs, &one, ts, &one, 1, &st), GFN_OK);
    gfn_sft_free(s);
    s = NULL;
    tp = gfn_train_default_params();
    tp.warmup_steps = -1;
    EXPECT(gfn_sft_new(e->model, e->adapter, &tp, &s), GFN_ERR_INVALID_ARGUMENT);
}

static void p_sft_batches(env *e) {
    gfn_sft *s = NULL;
    EXPECT(gfn_sft_new(e->model, e->adapter, NULL, &s), GFN_OK);
    int32_t c[] = {1, 2}, t[] = {3, 600};
    const int32_t *cs[] = {c}, *ts[] = {t};
    int32_t two = 2, zero = 0, neg = -2;
    gfn_sft_stats st = {.size = sizeof st};
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, 1, &st), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_sft_step(s, cs, &zero, ts, &two, 1, &st), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_step(s, cs, &two, ts, &zero, 1, &st), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_step(s, cs, &neg, ts, &two, 1, &st), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, -1, &st), GFN_ERR_INVALID_ARGUMENT);
    int32_t longc[70];
    for (int i = 0; i < 70; i++) longc[i] = i;
    const int32_t *ls[] = {longc};
    int32_t seventy = 70;
    t[1] = 4;
    EXPECT(gfn_sft_step(s, ls, &seventy, ts, &two, 1, &st), GFN_ERR_OUT_OF_RANGE);
    st.size = 3;
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, 1, &st), GFN_ERR_INVALID_ARGUMENT);
    st.size = sizeof st;
    /* the two-way label cross-entropy: candidates in the vocabulary, distinct, not one; targets among them */
    int32_t cand[3] = {t[0], t[1], 511};
    EXPECT(gfn_sft_set_label_candidates(NULL, cand, 2), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_set_label_candidates(s, NULL, 2), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_set_label_candidates(s, cand, -1), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_sft_set_label_candidates(s, cand, 1), GFN_ERR_INVALID_ARGUMENT);
    int32_t bad[2] = {3, 512};
    EXPECT(gfn_sft_set_label_candidates(s, bad, 2), GFN_ERR_OUT_OF_RANGE);
    int32_t dup[2] = {3, 3};
    EXPECT(gfn_sft_set_label_candidates(s, dup, 2), GFN_ERR_INVALID_ARGUMENT);
    int32_t other[2] = {510, 511};
    EXPECT(gfn_sft_set_label_candidates(s, other, 2), GFN_OK);
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, 1, &st), GFN_ERR_INVALID_ARGUMENT);   /* targets not candidates */
    EXPECT(gfn_sft_set_label_candidates(s, cand, 3), GFN_OK);
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, 1, &st), GFN_OK);
    EXPECT(gfn_sft_set_label_candidates(s, NULL, 0), GFN_OK);
    EXPECT(gfn_sft_step(s, cs, &two, ts, &two, 1, &st), GFN_OK);
    gfn_sft_free(s);
}

static void p_tokenizer(env *e) {
    (void)e;
    gfn_tokenizer *t = NULL;
    EXPECT(gfn_tokenizer_load("Tests/Fixtures/tokenizer", &t), GFN_OK);
    int32_t ids[4], n;
    size_t nb;
    (void)0;
    EXPECT(gfn_tokenizer_encode(t, "", 1, NULL, 0, &n), GFN_OK);
    EXPECT(gfn_tokenizer_encode(t, "hello", 1, NULL, 0, &n), GFN_ERR_BUFFER_TOO_SMALL);
    EXPECT(gfn_tokenizer_encode(t, "hello", 1, NULL, 4, &n), GFN_ERR_INVALID_ARGUMENT);
    int32_t hello[] = {31373};
    EXPECT(gfn_tokenizer_decode(t, hello, 1, NULL, 0, &nb), GFN_ERR_BUFFER_TOO_SMALL);
    EXPECT(gfn_tokenizer_decode(t, hello, 1, NULL, 64, &nb), GFN_ERR_INVALID_ARGUMENT);
    (void)ids;
    gfn_tokenizer_free(t);
}

static void p_handles(env *e) {
    /* double frees, frees of foreign pointers and of handles of another kind are no-ops */
    gfn_context *c2 = NULL;
    gfn_context_new(e->model, &c2);
    gfn_context_free(c2);
    gfn_context_free(c2);
    int bogus[16] = {0};
    gfn_context_free((gfn_context *)bogus);
    gfn_model_free((gfn_model *)e->ctx);
    gfn_samples_free((gfn_samples *)e->adapter);
    gfn_adapter_free((gfn_adapter *)e->model);
    gfn_sft_free((gfn_sft *)e->ctx);
    gfn_gflownet_free((gfn_gflownet *)e->ctx);
    gfn_reward_free((gfn_reward *)e->ctx);
    gfn_tokenizer_free((gfn_tokenizer *)e->ctx);
    const gfn_tokenizer *borrowed = NULL;
    EXPECT(gfn_model_tokenizer(e->model, &borrowed), GFN_OK);
    gfn_model_config cfg = {.size = sizeof cfg};
    EXPECT(gfn_model_config_get(e->model, &cfg), GFN_OK);
    EXPECT(gfn_context_new(e->model, &c2), GFN_OK);
    /* the model freed first: the context keeps it alive */
    gfn_model_free(e->model);
    const int32_t *pp[] = {prompt};
    int32_t len = 4;
    gfn_samples *out = NULL;
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 2;
    EXPECT(gfn_context_sample(c2, pp, &len, 1, 1, &sp, &out), GFN_OK);
    gfn_sample_info info = {.size = sizeof info};
    EXPECT(gfn_samples_get(out, -1, &info), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_samples_get(out, 1, &info), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_samples_get(out, 0x7fffffff, &info), GFN_ERR_OUT_OF_RANGE);
    info.size = 0;
    EXPECT(gfn_samples_get(out, 0, &info), GFN_ERR_INVALID_ARGUMENT);
    gfn_samples_free(out);
    EXPECT(gfn_samples_get(out, 0, &info), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_model_config_get(e->model, &cfg), GFN_ERR_INVALID_ARGUMENT);
    gfn_context_free(c2);
    e->model = NULL;
}

/* Every entry point with a NULL handle (and a NULL out-pointer where one is required): GFN_ERR_INVALID_ARGUMENT,
   never a crash; every *_free(NULL) is a no-op. */
static void p_null_handles(env *e) {
    const gfn_status BAD = GFN_ERR_INVALID_ARGUMENT;
    int32_t i32 = 0, ids[4] = {1, 2, 3, 4}, len = 4;
    int64_t i64 = 0;
    size_t nb = 0;
    char text[16];
    float f[4 * 512];
    double d[8];
    const int32_t *pp[] = {ids};
    const gfn_tokenizer *tok = NULL;
    gfn_tokenizer *tk = NULL;
    gfn_model *m = NULL;
    gfn_adapter *a = NULL;
    gfn_context *c = NULL;
    gfn_samples *s = NULL;
    gfn_sft *sf = NULL;
    gfn_reward *r = NULL;
    gfn_gflownet *g = NULL;
    gfn_model_config cfg = {.size = sizeof cfg};
    gfn_sample_info info = {.size = sizeof info};
    gfn_sampling_params sp = gfn_sampling_default_params();
    gfn_beam_params bp = gfn_beam_default_params();
    gfn_score_params scp = gfn_score_default_params();
    gfn_lora_params lp = gfn_lora_default_params();
    gfn_sft_stats ss = {.size = sizeof ss};
    gfn_step_stats st = {.size = sizeof st};
    gfn_exact_result ex = {.size = sizeof ex};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gfn_prompt pr = {.size = sizeof(gfn_prompt), .x = ids, .n_x = 4};
    EXPECT(gfn_tokenizer_load(NULL, &tk), BAD);
    EXPECT(gfn_tokenizer_load("Tests/Fixtures/tokenizer", NULL), BAD);
    EXPECT(gfn_tokenizer_encode(NULL, "a", 0, ids, 4, &i32), BAD);
    EXPECT(gfn_tokenizer_decode(NULL, ids, 1, text, sizeof text, &nb), BAD);
    EXPECT(gfn_tokenizer_vocab_size(NULL, &i32), BAD);
    EXPECT(gfn_tokenizer_eos(NULL, &i32), BAD);
    EXPECT(gfn_model_load(NULL, NULL, &m), BAD);
    EXPECT(gfn_model_load(MODEL, NULL, NULL), BAD);
    EXPECT(gfn_model_config_get(NULL, &cfg), BAD);
    EXPECT(gfn_model_config_get(e->model, NULL), BAD);
    EXPECT(gfn_model_tokenizer(NULL, &tok), BAD);
    EXPECT(gfn_model_logits(NULL, NULL, ids, 1, 4, NULL, f, 4 * 512), BAD);
    EXPECT(gfn_model_logits(e->model, NULL, NULL, 1, 4, NULL, f, 4 * 512), BAD);
    EXPECT(gfn_model_logits(e->model, NULL, ids, 1, 4, NULL, NULL, 4 * 512), BAD);
    EXPECT(gfn_adapter_new(NULL, &lp, &a), BAD);
    EXPECT(gfn_adapter_new(e->model, &lp, NULL), BAD);
    EXPECT(gfn_adapter_load(NULL, "x", &a), BAD);
    EXPECT(gfn_adapter_load(e->model, NULL, &a), BAD);
    EXPECT(gfn_adapter_save(NULL, "x"), BAD);
    EXPECT(gfn_adapter_save(e->adapter, NULL), BAD);
    EXPECT(gfn_adapter_parameter_count(NULL, &i64), BAD);
    EXPECT(gfn_model_logits(NULL, e->adapter, ids, 1, 4, NULL, f, 4 * 512), BAD);
    EXPECT(gfn_context_new(NULL, &c), BAD);
    EXPECT(gfn_context_new(e->model, NULL), BAD);
    EXPECT(gfn_context_sample(NULL, pp, &len, 1, 1, &sp, &s), BAD);
    EXPECT(gfn_context_sample(e->ctx, NULL, &len, 1, 1, &sp, &s), BAD);
    EXPECT(gfn_context_sample(e->ctx, pp, NULL, 1, 1, &sp, &s), BAD);
    EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, NULL), BAD);
    EXPECT(gfn_samples_count(NULL, &i32), BAD);
    EXPECT(gfn_samples_get(NULL, 0, &info), BAD);
    EXPECT(gfn_context_score(NULL, pp, &len, pp, &len, 1, &scp, d, f, f), BAD);
    EXPECT(gfn_context_score(e->ctx, NULL, &len, pp, &len, 1, &scp, d, f, f), BAD);
    EXPECT(gfn_context_beam_search(NULL, ids, 4, &bp, &s), BAD);
    EXPECT(gfn_context_beam_search(e->ctx, NULL, 4, &bp, &s), BAD);
    EXPECT(gfn_model_export_onnx(NULL, NULL, "x.onnx"), BAD);
    EXPECT(gfn_model_export_onnx(e->model, NULL, NULL), BAD);
    EXPECT(gfn_sft_new(NULL, NULL, NULL, &sf), BAD);
    EXPECT(gfn_sft_new(e->model, e->adapter, NULL, NULL), BAD);
    EXPECT(gfn_sft_step(NULL, pp, &len, pp, &len, 1, &ss), BAD);
    EXPECT(gfn_sft_evaluate(NULL, pp, &len, pp, &len, 1, &ss), BAD);
    EXPECT(gfn_sft_snapshot_model(NULL, &m), BAD);
    EXPECT(gfn_sft_export_onnx(NULL, "x.onnx"), BAD);
    EXPECT(gfn_sft_save(NULL, "x"), BAD);
    EXPECT(gfn_sft_load(NULL, "x"), BAD);
    EXPECT(gfn_reward_new_callback(NULL, NULL, 0, &r), BAD);
    EXPECT(gfn_reward_new_callback(reward_ok, NULL, 0, NULL), BAD);
    EXPECT(gfn_reward_new_lm_likelihood(NULL, ids, 4, NULL, 0, &r), BAD);
    EXPECT(gfn_reward_new_next_sentence(NULL, 13, NULL, 0, &r), BAD);
    EXPECT(gfn_reward_new_random_integer(NULL, 3, 0, &r), BAD);
    EXPECT(gfn_reward_evaluate(NULL, ids, 4, NULL, 0, ids, 1, d), BAD);
    EXPECT(gfn_gflownet_new(NULL, e->adapter, NULL, &pr, 1, &gp, &g), BAD);
    EXPECT(gfn_gflownet_new(e->model, NULL, NULL, &pr, 1, &gp, &g), BAD);
    EXPECT(gfn_gflownet_new(e->model, e->adapter, NULL, &pr, 1, &gp, &g), BAD);
    EXPECT(gfn_gflownet_set_progress(NULL, NULL, NULL), BAD);
    EXPECT(gfn_gflownet_step(NULL, &st), BAD);
    EXPECT(gfn_gflownet_train(NULL, 1, &st), BAD);
    EXPECT(gfn_gflownet_sample(NULL, ids, 4, 1, 1, 0, &s), BAD);
    EXPECT(gfn_gflownet_seed_buffer(NULL, 0, pp, &len, 1), BAD);
    EXPECT(gfn_gflownet_exact(NULL, 0, ids, 4, &ex), BAD);
    EXPECT(gfn_gflownet_save(NULL, "x"), BAD);
    EXPECT(gfn_gflownet_load(NULL, "x"), BAD);
    if (m || a || c || s || sf || r || g || tk) {
        fprintf(stderr, "    a handle was produced by a failing call\n");
        child_failures++;
    }
    gfn_tokenizer_free(NULL);
    gfn_model_free(NULL);
    gfn_adapter_free(NULL);
    gfn_context_free(NULL);
    gfn_samples_free(NULL);
    gfn_sft_free(NULL);
    gfn_reward_free(NULL);
    gfn_gflownet_free(NULL);
    (void)tok;
}

static const probe probes[] = {
    {"sampling counts", p_sample_counts}, {"sampling parameters", p_sample_params}, {"scoring", p_score},
    {"beam search", p_beam}, {"logits sizes", p_logits}, {"LoRA parameters", p_adapter_params},
    {"optimiser parameters", p_train_params}, {"SFT batches", p_sft_batches},
    {"tokenizer buffers", p_tokenizer}, {"handles", p_handles}, {"NULL handles and out-pointers", p_null_handles},
};

int main(int argc, char **argv) {
    return run_probes("test_hostile_api", probes, sizeof probes / sizeof probes[0], argc, argv);
}
