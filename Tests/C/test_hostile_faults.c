/* Numerical faults through the C API: a host reward that returns NaN / ±Inf or fails, an
 * exploding loss, NaN gradients. The step is refused or skipped and reported, and nothing changes: the adapter,
 * the optimiser state, the replay buffer, the RNG and the step count are as before — shown by continuing the run
 * and comparing it bit for bit with a run that never saw the fault. Gradient clipping bounds a step.
 *
 * Run from the repository root (the fixtures are read from Tests/Fixtures). */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"


static gfn_model *model;
enum { V = 512, T = 6 };
static const int32_t probe_ids[T] = {3, 17, 99, 4, 250, 7};

/* The adapter's logits on a fixed input: equal logits ⇔ equal adapter (for these purposes). */
static void adapter_logits(const gfn_adapter *a, float *out) {
    gfn_status st = gfn_model_logits(model, a, probe_ids, 1, T, NULL, out, (size_t)T * V);
    CHECK(st == GFN_OK, "logits %d", st);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static char tmp[256];

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = len > 0 && fread(b, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
    fclose(f);
    return b;
}

/* Every file a GFlowNet checkpoint holds is byte-identical in two checkpoint directories: parameters (adapter and
   log Z), Adam moments and step count, schedule, RNG, replay buffer. */
static int same_checkpoints(const char *a, const char *b) {
    static const char *files[] = {"trainer_state.json", "parameters.safetensors", "optimizer.safetensors",
                                  "adapter_config.json", "adapter_model.safetensors", "replay_buffer.json"};
    int ok = 1;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        size_t na = 0, nb = 0;
        unsigned char *ba = slurp(pa, &na), *bb = slurp(pb, &nb);
        if (!ba && !bb && strcmp(files[i], "trainer_state.json") != 0) continue;   /* absent from both (SFT) */
        if (!ba || !bb || na != nb || memcmp(ba, bb, na) != 0) {
            fprintf(stderr, "    %s differs (%zu vs %zu bytes)\n", files[i], na, nb);
            ok = 0;
        }
        free(ba);
        free(bb);
    }
    return ok;
}

/* ---------------------------------------------------------------- GFlowNet with a faulty host reward */

typedef struct {
    int calls;        /* reward calls so far */
    int fault_at;     /* the call that misbehaves (-1: never) */
    int fault;        /* 0 NaN, 1 +Inf, 2 -Inf, 3 return an error code, 4 huge finite values (1e300) */
} reward_state;

static int32_t reward(void *ud, int32_t prompt, const int32_t *const *states, const int32_t *lens, int32_t n,
                      double *out) {
    (void)prompt;
    reward_state *s = ud;
    int call = s->calls++;
    for (int32_t i = 0; i < n; i++) {
        double r = -0.3 * lens[i];
        for (int32_t k = 0; k < lens[i]; k++) r += (states[i][k] % 3 == 0) ? 1.0 : 0.0;
        out[i] = r;
    }
    if (call == s->fault_at) {
        switch (s->fault) {
        case 0: out[n / 2] = NAN; break;
        case 1: out[0] = INFINITY; break;
        case 2: out[n - 1] = -INFINITY; break;
        case 3: return 42;
        case 4: for (int32_t i = 0; i < n; i += 2) out[i] = 1e300; break;  /* finite, but differences overflow */
        }
    }
    return 0;
}

typedef struct {
    gfn_adapter *adapter;
    gfn_reward *reward;
    gfn_gflownet *trainer;
    reward_state rs;
} run;

static void run_new(run *r, double max_grad_norm, double lr, int replay) {
    memset(r, 0, sizeof *r);
    r->rs.fault_at = -1;
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    lp.seed = 11;
    CHECK(gfn_adapter_new(model, &lp, &r->adapter) == GFN_OK, "adapter");
    CHECK(gfn_reward_new_callback(reward, &r->rs, 0, &r->reward) == GFN_OK, "reward");
    static int32_t x[] = {5, 6, 7};
    gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 3};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gfn_train_params train = gfn_train_default_params();   /* read by gfn_gflownet_new */
    gp.train = &train;
    gp.termination = 511;
    gp.max_length = 4;
    gp.batch_size = 4;
    gp.p_replay = replay ? 0.5 : 0;
    gp.p_on_policy = replay ? 0.25 : 1;
    train.lr = lr;
    train.warmup_steps = 0;
    train.max_grad_norm = max_grad_norm;
    gp.seed = 3;
    CHECK(gfn_gflownet_new(model, r->adapter, r->reward, &p, 1, &gp, &r->trainer) == GFN_OK, "trainer");
}

static void run_free(run *r) {
    gfn_gflownet_free(r->trainer);
    gfn_reward_free(r->reward);
    gfn_adapter_free(r->adapter);
}

static void test_reward_faults(void) {
    static const char *names[] = {"NaN log R", "+Inf log R", "-Inf log R", "callback error"};
    static const gfn_status want[] = {GFN_ERR_NUMERICAL, GFN_ERR_NUMERICAL, GFN_ERR_NUMERICAL, GFN_ERR_CALLBACK};
    /* the reference: 5 clean steps */
    run ref;
    run_new(&ref, 0, 1e-2, 1);
    gfn_step_stats rs[5];
    for (int i = 0; i < 5; i++) {
        rs[i].size = sizeof rs[i];
        CHECK(gfn_gflownet_step(ref.trainer, &rs[i]) == GFN_OK, "reference step %d", i);
    }
    static float ref_logits[T * V], logits[T * V], before[T * V];
    adapter_logits(ref.adapter, ref_logits);
    for (int f = 0; f < 4; f++) {
        run r;
        run_new(&r, 0, 1e-2, 1);
        gfn_step_stats s = {.size = sizeof s};
        for (int i = 0; i < 2; i++) CHECK(gfn_gflownet_step(r.trainer, &s) == GFN_OK, "%s: step %d", names[f], i);
        adapter_logits(r.adapter, before);
        /* the next reward call misbehaves: the step fails with its status and changes nothing */
        r.rs.fault_at = r.rs.calls;
        r.rs.fault = f;
        gfn_step_stats untouched = {.size = sizeof untouched, .step = -77};
        gfn_status st = gfn_gflownet_step(r.trainer, &untouched);
        CHECK(st == want[f], "%s: step returned %s", names[f], gfn_status_name(st));
        CHECK(untouched.step == -77, "%s: stats written on failure", names[f]);
        const char *msg = gfn_last_error();
        CHECK(strlen(msg) > 0, "%s: a message", names[f]);
        adapter_logits(r.adapter, logits);
        CHECK(same(logits, before, (size_t)T * V), "%s: the adapter changed", names[f]);
        /* the run continues exactly as if the faulty call had never happened: same RNG, buffer, optimiser, step */
        r.rs.fault_at = -1;
        for (int i = 2; i < 5; i++) {
            CHECK(gfn_gflownet_step(r.trainer, &s) == GFN_OK, "%s: step %d after the fault", names[f], i);
            CHECK(s.step == rs[i].step && s.loss == rs[i].loss && s.mean_log_r == rs[i].mean_log_r,
                  "%s: step %d differs from the clean run (step %d/%d, loss %.17g/%.17g)", names[f], i, s.step,
                  rs[i].step, s.loss, rs[i].loss);
        }
        adapter_logits(r.adapter, logits);
        CHECK(same(logits, ref_logits, (size_t)T * V), "%s: the resumed run differs from the clean run", names[f]);
        printf("  ok  %-16s → %s, nothing changed, the run continues bit-identically\n", names[f], gfn_status_name(st));
        run_free(&r);
    }
    run_free(&ref);
}

/* An exploding loss (log R = 1e300, finite) gives a non-finite gradient: the optimiser skips the step
   (applied = 0, reported), the adapter does not move; with clipping on, the step is skipped as well (a non-finite
   norm cannot be clipped). A large but finite gradient is clipped to max_grad_norm. */
static void test_exploding_loss(void) {
    for (int clip = 0; clip < 2; clip++) {
        run r;
        run_new(&r, clip ? 1.0 : 0, 1e-2, 0);  /* on-policy: every step calls the reward */
        gfn_step_stats s = {.size = sizeof s};
        CHECK(gfn_gflownet_step(r.trainer, &s) == GFN_OK, "step");
        static float before[T * V], after[T * V];
        adapter_logits(r.adapter, before);
        char d0[300];
        snprintf(d0, sizeof d0, "%s/explode-%d-before", tmp, clip);
        CHECK(gfn_gflownet_save(r.trainer, d0) == GFN_OK, "save before");
        r.rs.fault_at = r.rs.calls;
        r.rs.fault = 4;
        gfn_status st = gfn_gflownet_step(r.trainer, &s);
        if (st == GFN_OK) {
            CHECK(s.applied == 0, "clip %d: an exploding loss (%g, grad norm %g) was applied", clip, s.loss, s.grad_norm);
            CHECK(!isfinite(s.grad_norm) || !isfinite(s.loss), "clip %d: the skipped step reports a non-finite value", clip);
        } else {
            CHECK(st == GFN_ERR_NUMERICAL, "clip %d: %s", clip, gfn_status_name(st));
        }
        adapter_logits(r.adapter, after);
        CHECK(same(before, after, (size_t)T * V), "clip %d: the adapter moved", clip);
        /* the whole training state — adapter, log Z, Adam moments and step, RNG, replay buffer — is byte-identical
           to a checkpoint taken before the faulty step */
        char d1[300];
        snprintf(d1, sizeof d1, "%s/explode-%d-after", tmp, clip);
        CHECK(gfn_gflownet_save(r.trainer, d1) == GFN_OK, "save after");
        CHECK(same_checkpoints(d0, d1), "clip %d: the skipped step changed the training state", clip);
        printf("  ok  exploding loss (clip %s) → %s, applied %d, adapter, optimiser state, RNG and buffer unchanged\n",
               clip ? "1.0" : "off", gfn_status_name(st), st == GFN_OK ? s.applied : 0);
        run_free(&r);
    }
}

/* ---------------------------------------------------------------- SFT: NaN gradients, clipping */

static gfn_sft_stats sft_step(gfn_sft *s, int k, gfn_status *st) {
    int32_t c[3] = {1 + k % 7, 2, 3}, t[3] = {4, 5 + k % 11, 6};
    const int32_t *cs[] = {c}, *ts[] = {t};
    int32_t cl = 3, tl = 3;
    gfn_sft_stats out = {.size = sizeof out};
    *st = gfn_sft_step(s, cs, &cl, ts, &tl, 1, &out);
    return out;
}

static void test_sft_faults(void) {
    /* A learning rate of 1e30 blows the weights up after one step; the next loss is not finite: the step is skipped
       (applied 0), reported, and the weights stay where they were. */
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    gfn_adapter *a = NULL;
    gfn_sft *s = NULL;
    gfn_train_params tp = gfn_train_default_params();
    tp.lr = 1e30;
    CHECK(gfn_adapter_new(model, &lp, &a) == GFN_OK && gfn_sft_new(model, a, &tp, &s) == GFN_OK, "sft");
    if (!s) return;
    gfn_status st;
    gfn_sft_stats r0 = sft_step(s, 0, &st);
    CHECK(st == GFN_OK && r0.applied == 1, "first step");
    int skipped = 0, applied = 0;
    static float before[T * V], after[T * V];
    for (int k = 1; k < 6; k++) {
        adapter_logits(a, before);
        char d0[300], d1[300];
        snprintf(d0, sizeof d0, "%s/sft-%d-before", tmp, k);
        snprintf(d1, sizeof d1, "%s/sft-%d-after", tmp, k);
        CHECK(gfn_sft_save(s, d0) == GFN_OK, "save before step %d", k);
        gfn_sft_stats r = sft_step(s, k, &st);
        CHECK(st == GFN_OK || st == GFN_ERR_NUMERICAL, "step %d: %s", k, gfn_status_name(st));
        adapter_logits(a, after);
        if (st != GFN_OK || r.applied == 0) {
            skipped++;
            CHECK(same(before, after, (size_t)T * V), "step %d was skipped but the adapter moved", k);
            CHECK(gfn_sft_save(s, d1) == GFN_OK, "save after step %d", k);
            CHECK(same_checkpoints(d0, d1), "step %d was skipped but the optimiser state changed", k);
            if (st == GFN_OK) CHECK(r.step == r0.step + applied, "step %d: skipped steps do not count (%d)", k, r.step);
        } else {
            applied++;
        }
    }
    CHECK(skipped > 0, "a non-finite loss was never reported (applied %d)", applied);
    printf("  ok  SFT with exploding weights: %d steps skipped and reported, adapter and optimiser state unchanged by each\n", skipped);
    gfn_sft_free(s);
    gfn_adapter_free(a);

    /* gradient clipping: the same step with max_grad_norm 1e-3 moves the adapter less, and reports the raw norm */
    float dist[2];
    for (int clip = 0; clip < 2; clip++) {
        gfn_adapter *b = NULL;
        gfn_sft *t = NULL;
        gfn_train_params q = gfn_train_default_params();
        q.lr = 1e-1;
        q.weight_decay = 0;
        q.max_grad_norm = clip ? 1e-3 : 0;
        gfn_adapter_new(model, &lp, &b);
        gfn_sft_new(model, b, &q, &t);
        sft_step(t, 0, &st);          /* B moves off zero */
        adapter_logits(b, before);
        gfn_sft_stats r = sft_step(t, 1, &st);
        adapter_logits(b, after);
        double d = 0;
        for (int i = 0; i < T * V; i++) d += fabs((double)after[i] - before[i]);
        dist[clip] = (float)d;
        CHECK(st == GFN_OK && r.applied == 1 && r.grad_norm > 1e-3, "clip %d: step (norm %g)", clip, r.grad_norm);
        gfn_sft_free(t);
        gfn_adapter_free(b);
    }
    CHECK(dist[1] < dist[0], "clipping did not shrink the step (%g vs %g)", dist[1], dist[0]);
    printf("  ok  gradient clipping: the clipped step moved the logits by %.3g (unclipped %.3g)\n", dist[1], dist[0]);

    /* non-finite hyper-parameters are refused up front */
    tp = gfn_train_default_params();
    tp.lr = NAN;
    gfn_sft *bad = NULL;
    CHECK(gfn_sft_new(model, NULL, &tp, &bad) == GFN_ERR_INVALID_ARGUMENT, "NaN learning rate");
    tp = gfn_train_default_params();
    tp.max_grad_norm = INFINITY;
    CHECK(gfn_sft_new(model, NULL, &tp, &bad) == GFN_ERR_INVALID_ARGUMENT, "infinite clipping norm");
}

/* A reward evaluated directly: NaN from the host is reported by gfn_reward_evaluate as well. */
static void test_reward_evaluate(void) {
    reward_state rs = {.fault_at = 0, .fault = 0};
    gfn_reward *r = NULL;
    CHECK(gfn_reward_new_callback(reward, &rs, 0, &r) == GFN_OK, "reward");
    int32_t x[] = {1}, acts[] = {2, 3};
    double out[3] = {7, 7, 7};
    gfn_status st = gfn_reward_evaluate(r, x, 1, NULL, 0, acts, 2, out);
    CHECK(st == GFN_ERR_NUMERICAL || st == GFN_OK, "evaluate: %s", gfn_status_name(st));
    if (st == GFN_OK) CHECK(isnan(out[0]) || isnan(out[1]) || isnan(out[2]), "the NaN is passed through visibly");
    rs.fault_at = rs.calls;
    rs.fault = 3;
    st = gfn_reward_evaluate(r, x, 1, NULL, 0, acts, 2, out);
    CHECK(st == GFN_ERR_CALLBACK, "failing callback: %s", gfn_status_name(st));
    CHECK(strstr(gfn_last_error(), "42") != NULL, "the callback's code is named: %s", gfn_last_error());
    printf("  ok  gfn_reward_evaluate with a NaN / failing callback\n");
    gfn_reward_free(r);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/gfnlm-faults-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 2; }
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &model) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    test_reward_faults();
    test_exploding_loss();
    test_sft_faults();
    test_reward_evaluate();
    gfn_model_free(model);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    printf("test_hostile_faults: %d failures\n", failures);
    return failures ? 1 : 0;
}
