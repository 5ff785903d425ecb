/* gfn_log_set: the library's warnings reach the host's callback. The one warning today is the start-up self-check
   of the AVX512-BF16 kernel failing; GFNLM_TEST_BF16_SELFCHECK=mismatch (a test hook, read when the kernel is first
   chosen) makes it fail on any CPU. The warning must come once, at the first bf16 model load, with GFN_LOG_WARN, and
   the model must still compute (on the AVX2 kernel). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gfnlm.h"

#include "check.h"

#define FIXTURE "Tests/Fixtures/gpt2-tiny/legacy17"

typedef struct {
    int count;
    int32_t level;
    char message[1024];
} captured;

static void capture(int32_t level, const char *message, void *user_data) {
    captured *c = user_data;
    c->count++;
    c->level = level;
    snprintf(c->message, sizeof c->message, "%s", message);
}

static gfn_model *load_bf16(void) {
    gfn_model_params mp = gfn_model_default_params();
    mp.weight_type = GFN_WEIGHTS_BF16;
    gfn_model *m = NULL;
    CHECK(gfn_model_load(FIXTURE, &mp, &m) == GFN_OK, "bf16 model");
    return m;
}

int main(void) {
    setenv("GFNLM_TEST_BF16_SELFCHECK", "mismatch", 1);
    captured c = {0};
    gfn_log_set(capture, &c);
    gfn_model *m = load_bf16();
    CHECK(c.count == 1, "one message (got %d)", c.count);
    CHECK(c.level == GFN_LOG_WARN, "level %d", c.level);
    CHECK(strstr(c.message, "self-check") && strstr(c.message, "AVX2 kernel instead"), "message: %s", c.message);
    enum { T = 3 };
    int32_t ids[T] = {1, 2, 3};
    gfn_model_config cfg = {.size = sizeof cfg};
    CHECK(gfn_model_config_get(m, &cfg) == GFN_OK, "config");
    float *logits = malloc(sizeof(float) * T * (size_t)cfg.vocab_size);
    CHECK(gfn_model_logits(m, NULL, ids, 1, T, NULL, logits, (size_t)T * (size_t)cfg.vocab_size) == GFN_OK,
          "logits on the fallback");
    int finite = 1;
    for (int i = 0; i < T * cfg.vocab_size; i++) finite &= isfinite(logits[i]) != 0;
    CHECK(finite, "finite logits");
    gfn_model *m2 = load_bf16();
    CHECK(c.count == 1, "the warning comes once (got %d messages)", c.count);
    /* back to the default sink; NULL is accepted */
    gfn_log_set(NULL, NULL);
    gfn_model_free(m2);
    gfn_model_free(m);
    free(logits);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", (int)failures);
        return 1;
    }
    printf("test_log: all passed (%d checks)\n", (int)checks);
    return 0;
}
