/* Crash safety of checkpoints. A child process trains and checkpoints after every step, resuming
 * from the checkpoint left by the previous child; the parent kills it with SIGKILL at a random moment (many kills
 * land inside a checkpoint write: the .tmp sibling is still there), then checks that
 *   - the checkpoint directory, when one was ever completed, loads into a fresh trainer,
 *   - it holds the last step the child reported as saved (or the one after: saved, killed before reporting),
 *     and never goes back,
 *   - training resumes from it exactly: the next step's loss equals, bit for bit, the loss of an uninterrupted
 *     reference run at the same step.
 * Two kinds of run alternate, each with its own directory: a GFlowNet trainer (LoRA, replay buffer, callback
 * reward) and full-parameter SFT (the largest checkpoint: weights and both Adam moments). At the end a clean save
 * must remove the temporaries the killed writers left.
 *
 *   test_crash [ITERATIONS [SEED]]     default 5 iterations (`make test`); `make crash-test` runs 100
 *
 * The child is this program re-executed (fork + exec, so the parent's library state never crosses a fork).
 * Run from the repository root (the fixture model is read from Tests/Fixtures). */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static const char *MODEL = "Tests/Fixtures/gpt2-tiny/legacy17";
enum { MODE_GFN = 0, MODE_SFT = 1, MAX_STEPS = 100000 };


/* ---------------------------------------------------------------- the training runs (child and parent alike) */

static int32_t reward(void *ud, int32_t prompt, const int32_t *const *states, const int32_t *lens, int32_t n,
                      double *out) {
    (void)ud; (void)prompt;
    for (int32_t i = 0; i < n; i++) {
        double r = -0.25 * lens[i];
        for (int32_t k = 0; k < lens[i]; k++) r += (states[i][k] % 5 == 0) ? 0.7 : 0.0;
        out[i] = r;
    }
    return 0;
}

typedef struct {
    int mode;
    gfn_adapter *adapter;
    gfn_reward *reward;
    gfn_gflownet *gfn;
    gfn_sft *sft;
} run;

static gfn_status run_new(gfn_model *model, int mode, run *r) {
    memset(r, 0, sizeof *r);
    r->mode = mode;
    gfn_status st;
    if (mode == MODE_GFN) {
        gfn_lora_params lp = gfn_lora_default_params();
        lp.r = 4;
        lp.seed = 5;
        if ((st = gfn_adapter_new(model, &lp, &r->adapter)) != GFN_OK) return st;
        if ((st = gfn_reward_new_callback(reward, NULL, 0, &r->reward)) != GFN_OK) return st;
        static int32_t x[] = {5, 6, 7};
        gfn_prompt p = {.size = sizeof(gfn_prompt), .x = x, .n_x = 3};
        gfn_gflownet_params gp = gfn_gflownet_default_params();
        gfn_train_params train = gfn_train_default_params();   /* read by gfn_gflownet_new */
        train.warmup_steps = 20;                                /* as with gp.train = NULL */
        gp.train = &train;
        gp.termination = 511;
        gp.max_length = 4;
        gp.batch_size = 4;
        gp.p_replay = 0.4;
        gp.p_on_policy = 0.4;
        train.lr = 1e-3;
        gp.seed = 9;
        return gfn_gflownet_new(model, r->adapter, r->reward, &p, 1, &gp, &r->gfn);
    }
    gfn_train_params tp = gfn_train_default_params();
    tp.lr = 1e-4;
    return gfn_sft_new(model, NULL, &tp, &r->sft);
}

static void run_free(run *r) {
    gfn_gflownet_free(r->gfn);
    gfn_reward_free(r->reward);
    gfn_adapter_free(r->adapter);
    gfn_sft_free(r->sft);
}

/* One step. *done receives the number of steps done after it, *loss its loss. */
static gfn_status run_step(run *r, int32_t *done, double *loss) {
    gfn_status st;
    if (r->mode == MODE_GFN) {
        gfn_step_stats s = {.size = sizeof s};
        st = gfn_gflownet_step(r->gfn, &s);
        *done = s.step + 1;
        *loss = s.loss;
    } else {
        int32_t c[] = {1, 2, 3, 4}, t[] = {9, 8, 7, 6, 5};
        const int32_t *cs[] = {c}, *ts[] = {t};
        int32_t cl = 4, tl = 5;
        gfn_sft_stats s = {.size = sizeof s};
        st = gfn_sft_step(r->sft, cs, &cl, ts, &tl, 1, &s);
        if (st == GFN_OK && !s.applied) return GFN_ERR_NUMERICAL;
        *done = s.step;
        *loss = s.loss;
    }
    return st;
}

static gfn_status run_save(run *r, const char *dir) {
    return r->mode == MODE_GFN ? gfn_gflownet_save(r->gfn, dir) : gfn_sft_save(r->sft, dir);
}

static gfn_status run_load(run *r, const char *dir) {
    return r->mode == MODE_GFN ? gfn_gflownet_load(r->gfn, dir) : gfn_sft_load(r->sft, dir);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---------------------------------------------------------------- the child: resume, then step + save forever */

static int child(const char *dir, int mode, int fd) {
    gfn_model *model;
    run r;
    if (gfn_model_load(MODEL, NULL, &model) != GFN_OK || run_new(model, mode, &r) != GFN_OK) {
        fprintf(stderr, "child: %s\n", gfn_last_error());
        return 3;
    }
    if (exists(dir) && run_load(&r, dir) != GFN_OK) {
        fprintf(stderr, "child: cannot resume from %s: %s\n", dir, gfn_last_error());
        return 4;
    }
    int32_t ready = -1;
    if (write(fd, &ready, sizeof ready) != sizeof ready) return 5;
    for (;;) {
        int32_t done;
        double loss;
        if (run_step(&r, &done, &loss) != GFN_OK || run_save(&r, dir) != GFN_OK) {
            fprintf(stderr, "child: step or save failed: %s\n", gfn_last_error());
            return 6;
        }
        if (write(fd, &done, sizeof done) != sizeof done) return 5;
    }
}

/* ---------------------------------------------------------------- the parent */

/* Losses of an uninterrupted run, grown on demand: ref->loss[k] is the loss of the step taken after k steps. */
typedef struct {
    run r;
    double *loss;
    int32_t n;
} reference;

static double ref_loss(reference *ref, int32_t k) {
    while (ref->n <= k) {
        int32_t done;
        double loss;
        if (run_step(&ref->r, &done, &loss) != GFN_OK || done != ref->n + 1) {
            fprintf(stderr, "reference run failed at step %d: %s\n", ref->n, gfn_last_error());
            exit(1);
        }
        ref->loss[ref->n++] = loss;
    }
    return ref->loss[k];
}

/* Names in `parent` that start with "<base>.tmp." or "<base>.old." (followed by "<pid>." when pid > 0). */
static int temporaries(const char *parent, const char *base, pid_t pid) {
    DIR *d = opendir(parent);
    if (!d) return -1;
    int n = 0;
    size_t bl = strlen(base);
    char tag[32];
    snprintf(tag, sizeof tag, "%d.", (int)pid);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, base, bl) == 0 &&
            (strncmp(e->d_name + bl, ".tmp.", 5) == 0 || strncmp(e->d_name + bl, ".old.", 5) == 0) &&
            (pid <= 0 || strncmp(e->d_name + bl + 5, tag, strlen(tag)) == 0))
            n++;
    closedir(d);
    return n;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--child") == 0) return child(argv[2], atoi(argv[3]), atoi(argv[4]));
    int iterations = argc > 1 ? atoi(argv[1]) : 5;
    unsigned seed = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : (unsigned)time(NULL);
    srand(seed);
    char tmp[256], dirs[2][300];
    snprintf(tmp, sizeof tmp, "%s/gfnlm-crash-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 2; }
    snprintf(dirs[MODE_GFN], sizeof dirs[0], "%s/ck-gflownet", tmp);
    snprintf(dirs[MODE_SFT], sizeof dirs[1], "%s/ck-sft", tmp);

    gfn_model *model;
    if (gfn_model_load(MODEL, NULL, &model) != GFN_OK) { fprintf(stderr, "%s\n", gfn_last_error()); return 1; }
    reference refs[2];
    for (int m = 0; m < 2; m++) {
        CHECK(run_new(model, m, &refs[m].r) == GFN_OK, "reference run %d", m);
        refs[m].loss = calloc(MAX_STEPS, sizeof(double));
        refs[m].n = 0;
    }
    int32_t last_saved[2] = {0, 0};   /* steps in each directory after the previous iteration */
    int mid_write = 0, before_first = 0;
    double t0 = now_ms();
    printf("test_crash: %d iterations, seed %u, checkpoints in %s\n", iterations, seed, tmp);
    for (int it = 0; it < iterations && failures == 0; it++) {
        int mode = it % 2;
        const char *dir = dirs[mode];
        int pfd[2];
        if (pipe(pfd) != 0) { perror("pipe"); return 2; }
        char fdarg[16], modearg[4];
        snprintf(fdarg, sizeof fdarg, "%d", pfd[1]);
        snprintf(modearg, sizeof modearg, "%d", mode);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            close(pfd[0]);
            execl("/proc/self/exe", argv[0], "--child", dir, modearg, fdarg, (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        int32_t v, reported = last_saved[mode];
        ssize_t got = read(pfd[0], &v, sizeof v);   /* the child has loaded the model and resumed */
        CHECK(got == sizeof v && v == -1, "iteration %d: the child did not start (read %zd)", it, got);
        if (got != sizeof v) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); close(pfd[0]); break; }
        /* a random moment within the next ~20 steps + checkpoints */
        usleep((useconds_t)(rand() % 120000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "iteration %d: the child ended otherwise (status %d)",
              it, status);
        while (read(pfd[0], &v, sizeof v) == sizeof v) reported = v;
        close(pfd[0]);
        const char *base = strrchr(dir, '/') + 1;
        if (temporaries(tmp, base, pid) > 0) mid_write++;   /* this child's own temporary */

        if (!exists(dir)) {
            CHECK(reported == 0, "iteration %d: the child reported step %d saved, but there is no checkpoint", it, reported);
            before_first++;
            continue;
        }
        /* the last complete checkpoint loads and resumes exactly */
        run r;
        CHECK(run_new(model, mode, &r) == GFN_OK, "fresh trainer");
        gfn_status st = run_load(&r, dir);
        CHECK(st == GFN_OK, "iteration %d (%s): the checkpoint does not load: %s", it, mode ? "sft" : "gflownet",
              gfn_status_name(st));
        if (st == GFN_OK) {
            int32_t done;
            double loss;
            st = run_step(&r, &done, &loss);
            int32_t k = done - 1;   /* steps in the checkpoint */
            CHECK(st == GFN_OK, "iteration %d: the resumed run cannot step", it);
            CHECK(k == reported || k == reported + 1,
                  "iteration %d: the checkpoint holds %d steps, the child last reported %d saved", it, k, reported);
            CHECK(k >= last_saved[mode], "iteration %d: the checkpoint went back from %d to %d steps", it,
                  last_saved[mode], k);
            if (k >= 0 && k < MAX_STEPS - 1) {
                double want = ref_loss(&refs[mode], k);
                CHECK(loss == want, "iteration %d: resumed at step %d with loss %.17g, the uninterrupted run had %.17g",
                      it, k, loss, want);
            }
            last_saved[mode] = k;
        }
        run_free(&r);
    }
    /* a clean save removes the temporaries of the killed writers */
    for (int m = 0; m < 2; m++) {
        if (!exists(dirs[m])) continue;
        run r;
        if (run_new(model, m, &r) == GFN_OK && run_load(&r, dirs[m]) == GFN_OK) {
            CHECK(run_save(&r, dirs[m]) == GFN_OK, "final save");
            CHECK(temporaries(tmp, strrchr(dirs[m], '/') + 1, 0) == 0, "%s: temporaries of killed writers remain", dirs[m]);
        } else {
            CHECK(0, "final load of %s", dirs[m]);
        }
        run_free(&r);
    }
    printf("test_crash: %d kills (%d inside a checkpoint write, %d before the first checkpoint), steps reached: "
           "gflownet %d, sft %d; %.1f s; %d failures\n", iterations, mid_write, before_first, last_saved[0],
           last_saved[1], (now_ms() - t0) / 1e3, failures);
    for (int m = 0; m < 2; m++) { run_free(&refs[m].r); free(refs[m].loss); }
    gfn_model_free(model);
    if (failures == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    } else {
        fprintf(stderr, "test_crash: kept %s for inspection (seed %u)\n", tmp, seed);
    }
    return failures ? 1 : 0;
}
