/* What the hostile-API tests share (test_hostile_api.c: inference, adapters, SFT, handles; test_hostile_gflownet.c:
 * GFlowNet trainers and rewards). Extreme arguments at every entry point of the C API: nothing may abort the host
 * process. Each probe runs in its own child process (forked before the parent touches the library) with a 4 GiB
 * address-space limit and a time limit, so a trap, a crash, a hang or an unbounded allocation in the library fails
 * the probe instead of the whole test. A probe passes when every call returns a status (GFN_OK or an error) and, where it says so,
 * the expected one.
 *
 * Run from the repository root (the fixtures are read from Tests/Fixtures). */
#ifndef GFNLM_TEST_HOSTILE_API_H
#define GFNLM_TEST_HOSTILE_API_H

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

/* A host reward that accepts every state: log R = −length. */
static int32_t reward_ok(void *ud, int32_t p, const int32_t *const *s, const int32_t *l, int32_t n, double *o) {
    (void)ud; (void)p; (void)s;
    for (int32_t i = 0; i < n; i++) o[i] = -(double)l[i];
    return 0;
}


/* ---------------------------------------------------------------- runner */

typedef struct { const char *name; void (*fn)(env *); } probe;

/* Runs each probe (those whose name contains argv[1], if given) in a child process and reports; returns main's
   exit status. */
static int run_probes(const char *test, const probe *probes, size_t n, int argc, char **argv) {
    int failures = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < n; i++) {
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
    printf("%s: %d probe groups failed\n", test, failures);
    return failures ? 1 : 0;
}

#endif
