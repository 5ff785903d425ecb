/* Hostile arguments at the GFlowNet trainer and reward entry points (hostile_api.h says how the probes run;
 * test_hostile_api.c has the rest of the API). Run from the repository root. */
#define _GNU_SOURCE
#include "hostile_api.h"

/* ---------------------------------------------------------------- probes
 * Probes never lie about the size of a buffer they pass (that is the caller's contract); they pass extreme counts,
 * sizes and values that the library must refuse or handle. */

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
    /* PPO's fields belong to ABI 2's one version of the struct: a size that ends before ppo_clip is refused like
       ABI 1's sizes. PPO is on-policy only, needs a batch of two, and its parameters are checked */
    gp = gfn_gflownet_default_params();
    gp.termination = 511;
    EXPECT(gp.ppo_epochs, 4);
    gp.size = (uint32_t)offsetof(gfn_gflownet_params, ppo_clip);
    g = trainer(e, &gp, &st);
    EXPECT(st, GFN_ERR_INVALID_ARGUMENT);
    CHECK_NULL(g);
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
    gfn_logit_adjustment adj = gfn_logit_default_adjustment();
    adj.size = 2;
    EXPECT(gfn_reward_new_lm_likelihood(e->model, prompt, 4, &adj, 0, &r), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_reward_new_next_sentence(e->model, 13, &adj, 0, &r), GFN_ERR_INVALID_ARGUMENT);
    EXPECT(gfn_reward_new_lm_likelihood(e->model, prompt, 4, NULL, 0, &r), GFN_OK);
    double out[80];
    int32_t acts[70];
    for (int i = 0; i < 70; i++) acts[i] = 1;
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, 4, acts, 70, out), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, 4, bad, 1, out), GFN_ERR_OUT_OF_RANGE);
    EXPECT(gfn_reward_evaluate(r, prompt, 4, prompt, -1, acts, 1, out), GFN_ERR_INVALID_ARGUMENT);
    gfn_reward_free(r);
}

static const probe probes[] = {
    {"GFlowNet parameters", p_gflownet_params}, {"GFlowNet sizes", p_gflownet_sizes}, {"rewards", p_rewards},
};

int main(int argc, char **argv) {
    return run_probes("test_hostile_gflownet", probes, sizeof probes / sizeof probes[0], argc, argv);
}
