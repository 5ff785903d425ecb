/* C ABI of data-parallel training without MPI: argument checks of gfn_*_set_distributed, a world of one with a
   counting callback (what the buffer holds), a failing callback (GFN_ERR_CALLBACK, nothing changes), a rank that
   claims to be 1 of 2 whose "peer" differs (GFN_ERR_STATE naming the difference), and rank ≠ 0 saves that write
   nothing. The multi-process behaviour is tested over mpirun in bindings/python/tests/test_distributed.py. */
#include "gfnlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"


typedef struct {
    int mode;        /* 0: identity (a world of one), 1: fail, 2: halve (a peer that contributes zeros) */
    int calls;
    int64_t last_count;
} world;

static int32_t allreduce(void *user_data, float *buffer, int64_t count) {
    world *w = user_data;
    w->calls++;
    w->last_count = count;
    if (w->mode == 1) return 7;
    if (w->mode == 2)
        for (int64_t i = 0; i < count; i++) buffer[i] *= 0.5f;
    return 0;
}

static int32_t reward(void *ud, int32_t prompt_index, const int32_t *const *states, const int32_t *lengths,
                      int32_t n, double *out) {
    (void)ud; (void)prompt_index; (void)states;
    for (int32_t i = 0; i < n; i++) out[i] = -0.5 * lengths[i] + (lengths[i] > 0 && states[i][0] == 1 ? 1.0 : 0.0);
    return 0;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int same_files(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

int main(void) {
    gfn_model *m = NULL;
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &m) != GFN_OK) {
        fprintf(stderr, "cannot load the fixture: %s\n", gfn_last_error());
        return 1;
    }
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 2;
    lp.targets = "c_attn";
    gfn_adapter *a = NULL;
    CHECK(gfn_adapter_new(m, &lp, &a) == GFN_OK, "adapter");
    int64_t n_params = 0;
    CHECK(gfn_adapter_parameter_count(a, &n_params) == GFN_OK, "count");
    gfn_reward *r = NULL;
    CHECK(gfn_reward_new_callback(reward, NULL, 0, &r) == GFN_OK, "reward");
    int32_t x[2] = {7, 8}, allowed[3] = {1, 2, 3};
    gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 2, .weight = 1};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gp.objective = GFN_OBJECTIVE_TB;
    gp.termination = 0;
    gp.max_length = 3;
    gp.batch_size = 4;
    gp.p_replay = 0;
    gfn_logit_adjustment adj = gfn_logit_default_adjustment();
    adj.allowed_tokens = allowed;
    adj.n_allowed_tokens = 3;
    gp.adjust = &adj;
    gfn_gflownet *g = NULL;
    CHECK(gfn_gflownet_new(m, a, r, &p, 1, &gp, &g) == GFN_OK, "trainer");

    /* arguments */
    gfn_distributed_params dp = gfn_distributed_default_params();
    CHECK(dp.size == sizeof dp && dp.rank == 0 && dp.world_size == 1 && dp.allreduce == NULL, "defaults");
    CHECK(gfn_gflownet_set_distributed(NULL, &dp) == GFN_ERR_INVALID_ARGUMENT, "NULL trainer");
    CHECK(gfn_gflownet_set_distributed(g, NULL) == GFN_OK, "NULL params: single process");
    CHECK(gfn_gflownet_set_distributed(g, &dp) == GFN_OK, "world of one without a callback");
    world w = {0, 0, 0};
    gfn_distributed_params bad = dp;
    bad.world_size = 2;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "world 2 without a callback");
    bad.allreduce = allreduce;
    bad.user_data = &w;
    bad.rank = 2;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "rank 2 of 2");
    bad.rank = -1;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "rank -1");
    bad.rank = 0;
    bad.world_size = 0;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "world 0");
    bad.world_size = 1 << 20;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "world 2^20");
    bad = dp;
    bad.size = 8;
    CHECK(gfn_gflownet_set_distributed(g, &bad) == GFN_ERR_INVALID_ARGUMENT, "size 8");
    CHECK(gfn_sft_set_distributed(NULL, &dp) == GFN_ERR_INVALID_ARGUMENT, "NULL sft");

    /* a world of one: one call per step, the gradients + 7 statistics (hi/lo) + 32 floats of replica digest +
       TB's log Z gradient (1 prompt) */
    dp.allreduce = allreduce;
    dp.user_data = &w;
    CHECK(gfn_gflownet_set_distributed(g, &dp) == GFN_OK, "world of one");
    gfn_step_stats st = {.size = sizeof st};
    CHECK(gfn_gflownet_step(g, &st) == GFN_OK, "step");
    CHECK(w.calls == 1 && w.last_count == n_params + 1 + 14 + 32, "calls %d count %lld (params %lld)", w.calls,
          (long long)w.last_count, (long long)n_params);

    char dir[256], before[300], after[300];
    snprintf(dir, sizeof dir, "/tmp/gfnlm-dist-ctest-%d", (int)getpid());
    snprintf(before, sizeof before, "%s/before", dir);
    snprintf(after, sizeof after, "%s/after", dir);
    CHECK(gfn_adapter_save(a, before) == GFN_OK, "save before");

    /* a failing exchange: GFN_ERR_CALLBACK, the adapter unchanged */
    w.mode = 1;
    CHECK(gfn_gflownet_step(g, &st) == GFN_ERR_CALLBACK, "failing exchange");
    CHECK(strstr(gfn_last_error(), "all-reduce callback returned 7") != NULL, "message: %s", gfn_last_error());

    /* rank 1 of 2 with a "peer" that differs in everything: the first exchange (the digest) refuses */
    w.mode = 2;
    dp.rank = 1;
    dp.world_size = 2;
    CHECK(gfn_gflownet_set_distributed(g, &dp) == GFN_OK, "rank 1 of 2");
    CHECK(gfn_gflownet_step(g, &st) == GFN_ERR_STATE, "mismatch");
    CHECK(strstr(gfn_last_error(), "batch_size (this rank: 4)") != NULL, "message: %s", gfn_last_error());
    CHECK(gfn_adapter_save(a, after) == GFN_OK, "save after");
    char fa[400], fb[400];
    snprintf(fa, sizeof fa, "%s/adapter_model.safetensors", before);
    snprintf(fb, sizeof fb, "%s/adapter_model.safetensors", after);
    CHECK(file_size(fa) > 0 && same_files(fa, fb), "adapter unchanged by failed steps");

    /* rank 1 writes no checkpoint (and says OK) */
    char ck[300];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    CHECK(gfn_gflownet_save(g, ck) == GFN_OK && file_size(ck) < 0, "rank 1 save is a no-op");
    dp.rank = 0;
    CHECK(gfn_gflownet_set_distributed(g, &dp) == GFN_OK && gfn_gflownet_save(g, ck) == GFN_OK && file_size(ck) > 0,
          "rank 0 saves");

    /* SFT: a world of one steps with one call; the buffer holds the gradients, 2 statistics and the digest */
    gfn_sft *sft = NULL;
    CHECK(gfn_sft_new(m, a, NULL, &sft) == GFN_OK, "sft");
    world ws = {0, 0, 0};
    gfn_distributed_params sp = gfn_distributed_default_params();
    sp.allreduce = allreduce;
    sp.user_data = &ws;
    CHECK(gfn_sft_set_distributed(sft, &sp) == GFN_OK, "sft world of one");
    int32_t c[2] = {1, 2}, t[3] = {3, 4, 5};
    const int32_t *cs[1] = {c}, *ts[1] = {t};
    int32_t cl[1] = {2}, tl[1] = {3};
    gfn_sft_stats ss = {.size = sizeof ss};
    CHECK(gfn_sft_step(sft, cs, cl, ts, tl, 1, &ss) == GFN_OK && ss.tokens == 3, "sft step");
    CHECK(ws.calls == 1 && ws.last_count == n_params + 4 + 32, "sft count %lld", (long long)ws.last_count);
    ws.mode = 1;
    CHECK(gfn_sft_step(sft, cs, cl, ts, tl, 1, &ss) == GFN_ERR_CALLBACK, "sft failing exchange");
    gfn_sft_free(sft);

    gfn_gflownet_free(g);
    gfn_reward_free(r);
    gfn_adapter_free(a);
    gfn_model_free(m);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_distributed: all passed\n");
    return 0;
}
