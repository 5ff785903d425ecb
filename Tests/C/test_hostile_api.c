/* Extreme arguments at every entry point of the C API: nothing may abort the host process. Each probe
 * runs in its own child process (forked before the parent touches the library) with a 4 GiB address-space limit
 * and a time limit, so a trap, a crash, a hang or an unbounded allocation in the library fails the probe instead
 * of the whole test. A probe passes when every call returns a status (GFN_OK or an error) and, where it says so,
 * the expected one.
 *
 * Run from the repository root (the fixtures are read from Tests/Fixtures). */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *MODEL = "Tests/Fixtures/gpt2-tiny/legacy17";  /* vocab 512, 64 positions */
static int child_failures = 0;

#define EXPECT(call, want)                                                                                  \
    do {                                                                                                    \
        gfn_status st_ = (call);                                                                            \
        if (st_ != (want)) {                                                                                \
            fprintf(stderr, "    %s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, #call,      \
                    gfn_status_name(st_), gfn_status_name(want), gfn_last_error());                          \
            child_failures++;                                                                               \
        }                                                                                                   \
    } while (0)
/* Any status is fine (the point is that the call returns). */
#define RETURNS(call) do { (void)(call); } while (0)
/* A refused trainer must not exist. */
#define CHECK_NULL(g)                                                                                       \
    do {                                                                                                    \
        if (g) {                                                                                            \
            fprintf(stderr, "    %s:%d: a trainer despite the error\n", __FILE__, __LINE__);                 \
            child_failures++;                                                                               \
            gfn_gflownet_free(g);                                                                           \
        }                                                                                                   \
    } while (0)

typedef struct {
    gfn_model *model;
    gfn_context *ctx;
    gfn_adapter *adapter;
} env;

static env setup(void) {
    env e = {0};
    if (gfn_model_load(MODEL, NULL, &e.model) != GFN_OK || gfn_context_new(e.model, &e.ctx) != GFN_OK) {
        fprintf(stderr, "setup: %s\n", gfn_last_error());
        exit(3);
    }
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 2;
    if (gfn_adapter_new(e.model, &lp, &e.adapter) != GFN_OK) exit(3);
    return e;
}

static int32_t prompt[4] = {1, 2, 3, 4};

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
        sp.adjust.disallowed_penalty = bad_f[i];
        int32_t allowed[] = {5, 6};
        sp.adjust.allowed_tokens = allowed;
        sp.adjust.n_allowed_tokens = 2;
        RETURNS(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out));
        gfn_samples_free(out);
        out = NULL;
        int32_t bt[] = {7};
        float bv[] = {bad_f[i]};
        sp = gfn_sampling_default_params();
        sp.adjust.bias_tokens = bt;
        sp.adjust.bias_values = bv;
        sp.adjust.n_bias = 1;
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
        sp.adjust.allowed_tokens = &badids[i];
        sp.adjust.n_allowed_tokens = 1;
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
        sp = gfn_sampling_default_params();
        float v = 1;
        sp.adjust.bias_tokens = &badids[i];
        sp.adjust.bias_values = &v;
        sp.adjust.n_bias = 1;
        EXPECT(gfn_context_sample(e->ctx, pp, &len, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
        const int32_t *bp[] = {&badids[i]};
        int32_t one = 1;
        sp = gfn_sampling_default_params();
        EXPECT(gfn_context_sample(e->ctx, bp, &one, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE);
    }
    /* everything masked */
    sp = gfn_sampling_default_params();
    int32_t none = 3;
    sp.adjust.allowed_tokens = &none;
    sp.adjust.n_allowed_tokens = 1;
    float minus_inf = -INFINITY;
    sp.adjust.bias_tokens = &none;
    sp.adjust.bias_values = &minus_inf;
    sp.adjust.n_bias = 1;
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

static int32_t reward_ok(void *ud, int32_t p, const int32_t *const *s, const int32_t *l, int32_t n, double *o) {
    (void)ud; (void)p; (void)s;
    for (int32_t i = 0; i < n; i++) o[i] = -(double)l[i];
    return 0;
}

static gfn_gflownet *trainer(env *e, gfn_gflownet_params *gp, gfn_status *st) {
    gfn_reward *r = NULL;
    gfn_reward_new_callback(reward_ok, NULL, 0, &r);
    gfn_prompt pr = {.size = sizeof(gfn_prompt), .x = prompt, .n_x = 4};
    gfn_gflownet *g = NULL;
    *st = gfn_gflownet_new(e->model, e->adapter, r, &pr, 1, gp, &g);
    gfn_reward_free(r);
    return g;
}

enum { F_TERM, F_MAXLEN, F_MINLEN, F_BATCH, F_ACC, F_CAP, F_TOL, F_PON, F_PREP, F_TLOW, F_THIGH, F_RTS, F_RTE, F_RTH,
       F_LZLR, F_LZI, F_LAMBDA, F_OBJ, F_LAYOUT, F_CALC };

static void set_field(gfn_gflownet_params *p, int f, double v) {
    switch (f) {
    case F_TERM: p->termination = (int32_t)v; break;
    case F_MAXLEN: p->max_length = (int32_t)v; break;
    case F_MINLEN: p->min_length = (int32_t)v; break;
    case F_BATCH: p->batch_size = (int32_t)v; break;
    case F_ACC: p->grad_accumulation = (int32_t)v; break;
    case F_CAP: p->buffer_capacity = (int32_t)v; break;
    case F_TOL: p->buffer_tolerance = v; break;
    case F_PON: p->p_on_policy = v; break;
    case F_PREP: p->p_replay = v; break;
    case F_TLOW: p->temp_low = v; break;
    case F_THIGH: p->temp_high = v; break;
    case F_RTS: p->reward_temp_start = v; break;
    case F_RTE: p->reward_temp_end = v; break;
    case F_RTH: p->reward_temp_horizon = (int32_t)v; break;
    case F_LZLR: p->logz_lr = v; break;
    case F_LZI: p->logz_init = v; break;
    case F_LAMBDA: p->subtb_lambda = v; break;
    case F_OBJ: p->objective = (int32_t)v; break;
    case F_LAYOUT: p->layout = (int32_t)v; break;
    case F_CALC: p->calculator = (int32_t)v; break;
    }
}

static void p_gflownet_params(env *e) {
    gfn_status st;
    static const struct { const char *what; int field; double value; gfn_status want; } cases[] = {
        {"termination -1", F_TERM, -1, GFN_ERR_OUT_OF_RANGE},
        {"termination 512", F_TERM, 512, GFN_ERR_OUT_OF_RANGE},
        {"max_length 0", F_MAXLEN, 0, GFN_ERR_INVALID_ARGUMENT},
        {"max_length -1", F_MAXLEN, -1, GFN_ERR_INVALID_ARGUMENT},
        {"min_length -1", F_MINLEN, -1, GFN_ERR_INVALID_ARGUMENT},
        {"min_length 17", F_MINLEN, 17, GFN_ERR_INVALID_ARGUMENT},
        {"batch_size 0", F_BATCH, 0, GFN_ERR_INVALID_ARGUMENT},
        {"batch_size -3", F_BATCH, -3, GFN_ERR_INVALID_ARGUMENT},
        {"grad_accumulation 0", F_ACC, 0, GFN_ERR_INVALID_ARGUMENT},
        {"buffer_capacity 0", F_CAP, 0, GFN_ERR_INVALID_ARGUMENT},
        {"buffer_capacity -1", F_CAP, -1, GFN_ERR_INVALID_ARGUMENT},
        {"buffer_tolerance NaN", F_TOL, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"buffer_tolerance -1", F_TOL, -1, GFN_ERR_INVALID_ARGUMENT},
        {"p_on_policy NaN", F_PON, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"p_on_policy 2", F_PON, 2, GFN_ERR_INVALID_ARGUMENT},
        {"p_replay -0.5", F_PREP, -0.5, GFN_ERR_INVALID_ARGUMENT},
        {"temp_low 0", F_TLOW, 0, GFN_ERR_INVALID_ARGUMENT},
        {"temp_low NaN", F_TLOW, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"temp_high inf", F_THIGH, INFINITY, GFN_ERR_INVALID_ARGUMENT},
        {"reward_temp_start 0", F_RTS, 0, GFN_ERR_INVALID_ARGUMENT},
        {"reward_temp_start NaN", F_RTS, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"reward_temp_end -1", F_RTE, -1, GFN_ERR_INVALID_ARGUMENT},
        {"reward_temp_end inf", F_RTE, INFINITY, GFN_ERR_INVALID_ARGUMENT},
        {"reward_temp_horizon -1", F_RTH, -1, GFN_ERR_INVALID_ARGUMENT},
        {"logz_lr NaN", F_LZLR, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"logz_init NaN", F_LZI, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"logz_init inf", F_LZI, INFINITY, GFN_ERR_INVALID_ARGUMENT},
        {"subtb_lambda NaN", F_LAMBDA, NAN, GFN_ERR_INVALID_ARGUMENT},
        {"subtb_lambda -1", F_LAMBDA, -1, GFN_ERR_INVALID_ARGUMENT},
        {"subtb_lambda inf", F_LAMBDA, INFINITY, GFN_ERR_INVALID_ARGUMENT},
        {"objective 99", F_OBJ, 99, GFN_ERR_INVALID_ARGUMENT},
        {"layout 7", F_LAYOUT, 7, GFN_ERR_INVALID_ARGUMENT},
        {"calculator 5", F_CALC, 5, GFN_ERR_INVALID_ARGUMENT},
        {"calculator without a tokenizer", F_CALC, 1, GFN_ERR_INVALID_ARGUMENT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gfn_gflownet_params gp = gfn_gflownet_default_params();
        gp.termination = 511;
        set_field(&gp, cases[i].field, cases[i].value);
        gfn_gflownet *g = trainer(e, &gp, &st);
        if (st != cases[i].want) {
            fprintf(stderr, "    gflownet %s: %s, expected %s (%s)\n", cases[i].what, gfn_status_name(st),
                    gfn_status_name(cases[i].want), gfn_last_error());
            child_failures++;
        }
        if (g) {   /* accepted: one step must return */
            RETURNS(gfn_gflownet_step(g, NULL));
            gfn_gflownet_free(g);
        }
    }
}

static void p_gflownet_sizes(env *e) {
    gfn_status st;
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    /* struct versions: ABI 2 changed the layout (train became a pointer), so the sizes of ABI 1's versions (ending
       before pack_weights, before temp_low_end) are refused like anything shorter or longer than the current struct */
    EXPECT(gp.pack_weights, 1);
    gp.termination = 511;
    gp.size = (uint32_t)offsetof(gfn_gflownet_params, pack_weights);
    gfn_gflownet *g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    CHECK_NULL(g);
    gp.size = (uint32_t)offsetof(gfn_gflownet_params, temp_low_end);
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    CHECK_NULL(g);
    gp.size = (uint32_t)offsetof(gfn_gflownet_params, pack_weights) - 4;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.size = (uint32_t)sizeof gp + 8;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.pack_weights = 0;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_OK);
    if (g) { EXPECT(gfn_gflownet_step(g, NULL), GFN_OK); gfn_gflownet_free(g); }
    /* hostile values of the annealing and root-flow fields */
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.root_flow = 99;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    CHECK_NULL(g);
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.temp_horizon = -1;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.temp_horizon = 10;
    gp.temp_low_end = NAN;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.temp_low_end = 2;
    gp.temp_high_end = 1;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.root_flow = 2;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.root_flow = 1;
    gp.min_length = 1;
    gp.temp_horizon = 3;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_OK);
    if (g) { EXPECT(gfn_gflownet_train(g, 4, NULL), GFN_OK); gfn_gflownet_free(g); }
    /* the third version ends before ppo_clip (PPO's defaults); PPO is on-policy only, needs a batch of two, and
       its parameters are checked */
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    EXPECT(gp.ppo_epochs, 4);
    gp.size = (uint32_t)offsetof(gfn_gflownet_params, ppo_clip);
    gp.ppo_epochs = -7;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_OK);
    if (g) { EXPECT(gfn_gflownet_step(g, NULL), GFN_OK); gfn_gflownet_free(g); }
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.objective = GFN_OBJECTIVE_PPO;
    g = trainer(e, &gp, &st);                      /* the defaults mix tempered and replayed batches */
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.p_on_policy = 1;
    gp.p_replay = 0;
    gp.batch_size = 1;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.batch_size = 4;
    gp.ppo_clip = NAN;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.ppo_clip = 0.2;
    gp.ppo_epochs = 0;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.ppo_epochs = 2;
    gp.kl_target = -1;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    gp.kl_target = 0;                              /* β fixed */
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_OK);
    if (g) { EXPECT(gfn_gflownet_train(g, 2, NULL), GFN_OK); gfn_gflownet_free(g); }
    /* plain rollout sampling: hostile parameters */
    gfn_rollout_params rp = gfn_rollout_default_params();
    gfn_samples *so = NULL;
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, 1, 0, &so), GFN_ERR_OUT_OF_RANGE);  /* termination −1 */
    rp.termination = 511;
    EXPECT(gfn_rollout_sample(NULL, NULL, &rp, prompt, 4, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_rollout_sample(e->model, NULL, NULL, prompt, 4, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, 1, 0, NULL), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 0, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 0x7fffffff, 1, 0, &so), GFN_ERR_OUT_OF_MEMORY);
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, NAN, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 0, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    rp.calculator = 7;
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    rp.calculator = 0;
    rp.min_length = 20;
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    rp.min_length = 0;
    rp.size = 3;
    EXPECT(gfn_rollout_sample(e->model, NULL, &rp, prompt, 4, 2, 1, 0, &so), GFN_ERR_INVALID_ARGUMENT);
    rp.size = sizeof rp;
    EXPECT(gfn_rollout_sample(e->model, e->adapter, &rp, prompt, 4, 3, 1, 0, &so), GFN_OK);
    int32_t ns = 0;
    if (so) { gfn_samples_count(so, &ns); gfn_samples_free(so); }
    EXPECT(ns, 3);
    gfn_reward *rt = NULL;
    EXPECT(gfn_reward_new_callback_temperature(NULL, NULL, 0, &rt), GFN_ERR_INVALID_ARGUMENT);
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.batch_size = 0x7fffffff;
    g = trainer(e, &gp, &st);
    if (g) { EXPECT(gfn_gflownet_step(g, NULL), GFN_ERR_OUT_OF_MEMORY); gfn_gflownet_free(g); }
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.max_length = 0x7fffffff;
    g = trainer(e, &gp, &st);
    if (g) { RETURNS(gfn_gflownet_step(g, NULL)); gfn_gflownet_free(g); }
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.grad_accumulation = 0x7fffffff;
    gp.batch_size = 1;
    gp.max_length = 1;
    g = trainer(e, &gp, &st);
    if (g) { gfn_gflownet_free(g); }   /* a step would take 2^31 micro-batches: not run */
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.buffer_capacity = 0x7fffffff;
    gp.p_replay = 1;
    gp.p_on_policy = 0;
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_OK);
    if (!g) return;
    EXPECT(gfn_gflownet_step(g, NULL), GFN_OK);
    gfn_samples *out = NULL;
    EXPECT(gfn_gflownet_sample(g, prompt, 4, -1, 1, 0, &out), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_gflownet_sample(g, prompt, 4, 0x7fffffff, 1, 0, &out), GFN_ERR_OUT_OF_MEMORY);
    EXPECT(gfn_gflownet_sample(g, prompt, 4, 2, NAN, 0, &out), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_gflownet_sample(g, prompt, 4, 2, -1, 0, &out), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_gflownet_sample(g, prompt, 4, 2, INFINITY, 0, &out), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_gflownet_sample(g, prompt, 0, 2, 1, 0, &out), GFN_ERR_INVALID_ARGUMENT);
    int32_t big[70];
    for (int i = 0; i < 70; i++) big[i] = 1;
    EXPECT(gfn_gflownet_sample(g, big, 70, 2, 1, 0, &out), GFN_ERR_OUT_OF_RANGE);
    int32_t badtok[] = {600};
    EXPECT(gfn_gflownet_sample(g, badtok, 1, 2, 1, 0, &out), GFN_ERR_OUT_OF_RANGE);
    int32_t v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    gfn_exact_result ex = {.size = sizeof ex};
    EXPECT(gfn_gflownet_exact(g, 0, v, 10, &ex), GFN_ERR_OUT_OF_RANGE);  /* 10^16 sequences: beyond the 100,000 limit */
    EXPECT(gfn_gflownet_exact(g, 0, badtok, 1, &ex), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_gflownet_exact(g, 5, v, 2, &ex), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_gflownet_exact(g, 0, v, -1, &ex), GFN_ERR_INVALID_ARGUMENT);
    const int32_t *acts[] = {badtok};
    int32_t one = 1, many = 0x7fff;
    EXPECT(gfn_gflownet_seed_buffer(g, 0, acts, &one, 1), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_gflownet_seed_buffer(g, -1, acts, &one, 1), GFN_ERR_OUT_OF_RANGE);
    int32_t *longa = calloc(0x7fff, sizeof(int32_t));
    for (int i = 0; i < 0x7fff; i++) longa[i] = 1;
    const int32_t *la[] = {longa};
    EXPECT(gfn_gflownet_seed_buffer(g, 0, la, &many, 1), GFN_ERR_OUT_OF_RANGE);   /* refused: longer than max_length */
    free(longa);
    EXPECT(gfn_gflownet_train(g, -1, NULL), GFN_ERR_INVALID_ARGUMENT);
    double lr[8];
    EXPECT(gfn_reward_evaluate(NULL, prompt, 4, NULL, 0, prompt, 1, lr), GFN_ERR_INVALID_ARGUMENT);
    gfn_gflownet_free(g);
}

static void p_rewards(env *e) {
    gfn_reward *r = NULL;
    int32_t bad[] = {600};
    EXPECT(gfn_reward_new_random_integer(bad, 0, 1, &r), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_reward_new_random_integer(bad, -1, 1, &r), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_reward_new_lm_likelihood(e->model, bad, 1, NULL, 0, &r), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_new_lm_likelihood(e->model, prompt, 4, NULL, -1, &r), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_reward_new_next_sentence(e->model, 600, NULL, 0, &r), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_new_next_sentence(e->model, -1, NULL, 0, &r), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_new_lm_likelihood(e->model, prompt, 4, NULL, 0, &r), GFN_OK);
    double out[80];
    int32_t acts[70];
    for (int i = 0; i < 70; i++) acts[i] = 1;
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, 4, acts, 70, out), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, 4, bad, 1, out), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, -1, acts, 1, out), GFN_ERR_INVALID_ARGUMENT);
    gfn_reward_free(r);
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

/* ---------------------------------------------------------------- runner */

typedef struct { const char *name; void (*fn)(env *); } probe;

static const probe probes[] = {
    {"sampling counts", p_sample_counts}, {"sampling parameters", p_sample_params}, {"scoring", p_score},
    {"beam search", p_beam}, {"logits sizes", p_logits}, {"LoRA parameters", p_adapter_params},
    {"optimiser parameters", p_train_params}, {"SFT batches", p_sft_batches},
    {"GFlowNet parameters", p_gflownet_params}, {"GFlowNet sizes", p_gflownet_sizes}, {"rewards", p_rewards},
    {"tokenizer buffers", p_tokenizer}, {"handles", p_handles}, {"NULL handles and out-pointers", p_null_handles},
};

int main(int argc, char **argv) {
    int failures = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        if (only && !strstr(probes[i].name, only)) continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            struct rlimit as = {(rlim_t)4 << 30, (rlim_t)4 << 30};
            if (!getenv("GFNLM_NO_RLIMIT")) setrlimit(RLIMIT_AS, &as);  /* ASan needs its shadow: it sets this */
            alarm(120);
            env e = setup();
            probes[i].fn(&e);
            _exit(child_failures ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) {
            printf("FAIL %-22s killed by signal %d (%s)\n", probes[i].name, WTERMSIG(status), strsignal(WTERMSIG(status)));
            failures++;
        } else if (WEXITSTATUS(status) != 0) {
            printf("FAIL %-22s unexpected statuses (above)\n", probes[i].name);
            failures++;
        } else {
            printf("  ok %s\n", probes[i].name);
        }
    }
    printf("test_hostile_api: %d probe groups failed\n", failures);
    return failures ? 1 : 0;
}
