/* C ABI tests of the foundation surface, compiled with gcc against include/gfnlm.h and build/libgfnlm.so. */
#include "gfnlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"


static void test_versions(void) {
    CHECK(strcmp(gfn_version(), GFN_VERSION_STRING) == 0, "version %s", gfn_version());
    CHECK(gfn_abi_version() == GFN_ABI_VERSION, "abi %d", gfn_abi_version());
    CHECK(strcmp(gfn_status_name(GFN_ERR_IO), "GFN_ERR_IO") == 0, "status name");
    CHECK(strcmp(gfn_status_name(12345), "GFN_ERR_UNKNOWN") == 0, "unknown status name");
}

/* gfn_system_info: the text-out convention (length always reported, too-small buffers refused untouched beyond
   the reported length), and a line that names the version and each kernel choice. */
static void test_system_info(void) {
    size_t n = 0;
    CHECK(gfn_system_info(NULL, 0, &n) == GFN_ERR_BUFFER_TOO_SMALL && n > 40, "length query: %zu", n);
    CHECK(gfn_system_info(NULL, 0, NULL) == GFN_ERR_INVALID_ARGUMENT, "NULL n_bytes");
    char small[8];
    size_t m = 0;
    CHECK(gfn_system_info(small, sizeof small, &m) == GFN_ERR_BUFFER_TOO_SMALL && m == n, "small buffer: %zu", m);
    char *buf = malloc(n + 1);
    CHECK(buf && gfn_system_info(buf, n + 1, &m) == GFN_OK && m == n && strlen(buf) == n, "exact buffer");
    if (buf) {
        char want[64];
        snprintf(want, sizeof want, "gfnlm %s (ABI %d) | CPUs ", GFN_VERSION_STRING, GFN_ABI_VERSION);
        CHECK(strncmp(buf, want, strlen(want)) == 0, "starts with the version: %s", buf);
        CHECK(strstr(buf, "AVX2 = ") && strstr(buf, "AVX512-VNNI = ") && strstr(buf, "bf16 products: ") &&
              strstr(buf, "int8/4-bit products: ") && strstr(buf, "OpenBLAS "), "names the kernels: %s", buf);
        printf("system info: %s\n", buf);
    }
    free(buf);
}

static void test_bad_inputs(void) {
    gfn_model *m = NULL;
    gfn_status st = gfn_model_load("/nonexistent/model.onnx", NULL, &m);
    CHECK(st == GFN_ERR_IO, "missing file gave %d", st);
    CHECK(strstr(gfn_last_error(), "/nonexistent/model.onnx") != NULL, "message names the file: %s", gfn_last_error());
    CHECK(m == NULL, "out untouched on failure");
    CHECK(gfn_model_load(NULL, NULL, &m) == GFN_ERR_INVALID_ARGUMENT, "NULL path");
    CHECK(gfn_model_load("x", NULL, NULL) == GFN_ERR_INVALID_ARGUMENT, "NULL out");
    gfn_model_params p = gfn_model_default_params();
    p.size = 3;
    CHECK(gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", &p, &m) == GFN_ERR_INVALID_ARGUMENT, "bad struct size");
    /* a file that is not ONNX */
    CHECK(gfn_model_load("include/gfnlm.h", NULL, &m) == GFN_ERR_FORMAT, "header file as model: %d", gfn_model_load("include/gfnlm.h", NULL, &m));
    gfn_model_free(NULL);
    gfn_tokenizer_free(NULL);
    gfn_model_config cfg = {.size = sizeof cfg};
    CHECK(gfn_model_config_get(NULL, &cfg) == GFN_ERR_INVALID_ARGUMENT, "NULL model");
    int bogus = 0;
    CHECK(gfn_model_config_get((gfn_model *)&bogus, &cfg) == GFN_ERR_INVALID_ARGUMENT, "bogus handle");
}

static void test_tokenizer(void) {
    gfn_tokenizer *tok = NULL;
    gfn_status st = gfn_tokenizer_load("Tests/Fixtures/tokenizer", &tok);
    CHECK(st == GFN_OK, "load tokenizer: %d", st);
    if (st != GFN_OK) return;
    int32_t ids[16], n = 0;
    st = gfn_tokenizer_encode(tok, "Hello world", 1, ids, 16, &n);
    CHECK(st == GFN_OK && n == 2 && ids[0] == 15496 && ids[1] == 995, "Hello world → %d ids", n);
    st = gfn_tokenizer_encode(tok, "Hello<|endoftext|>World", 1, ids, 16, &n);
    CHECK(st == GFN_OK && n == 3 && ids[1] == 50256 && ids[2] == 10603, "special token");
    st = gfn_tokenizer_encode(tok, "Hello world", 1, ids, 1, &n);
    CHECK(st == GFN_ERR_BUFFER_TOO_SMALL && n == 2, "too small: st %d n %d", st, n);
    st = gfn_tokenizer_encode(tok, "Hello world", 1, NULL, 0, &n);
    CHECK(st == GFN_ERR_BUFFER_TOO_SMALL && n == 2, "size query");
    int32_t hw[2] = {15496, 995};
    char text[64];
    size_t nb = 0;
    st = gfn_tokenizer_decode(tok, hw, 2, text, sizeof text, &nb);
    CHECK(st == GFN_OK && nb == 11 && strcmp(text, "Hello world") == 0, "decode: %s", text);
    st = gfn_tokenizer_decode(tok, hw, 2, text, 5, &nb);
    CHECK(st == GFN_ERR_BUFFER_TOO_SMALL && nb == 11, "decode too small");
    int32_t bad[1] = {60000};
    st = gfn_tokenizer_decode(tok, bad, 1, text, sizeof text, &nb);
    CHECK(st == GFN_ERR_OUT_OF_RANGE, "decode out of range: %d", st);
    int32_t v = 0, eos = 0;
    CHECK(gfn_tokenizer_vocab_size(tok, &v) == GFN_OK && v == 50257, "vocab %d", v);
    CHECK(gfn_tokenizer_eos(tok, &eos) == GFN_OK && eos == 50256, "eos %d", eos);
    gfn_tokenizer_free(tok);
    CHECK(gfn_tokenizer_vocab_size(tok, &v) == GFN_ERR_INVALID_ARGUMENT, "freed handle refused");
}

static void test_model(const char *path, const char *arch) {
    gfn_model *m = NULL;
    gfn_status st = gfn_model_load(path, NULL, &m);
    CHECK(st == GFN_OK, "load %s: %d", path, st);
    if (st != GFN_OK) return;
    gfn_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    CHECK(gfn_model_config_get(m, &cfg) == GFN_OK, "config");
    CHECK(strcmp(cfg.arch, arch) == 0, "arch %s", cfg.arch);
    CHECK(cfg.n_layer == 2 && cfg.n_embd == 64 && cfg.n_head == 4 && cfg.head_dim == 16, "dims");
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    int32_t mask[6] = {0, 1, 1, 1, 1, 1};
    size_t cap = (size_t)2 * 3 * cfg.vocab_size;
    float *logits = malloc(cap * sizeof(float));
    st = gfn_model_logits(m, NULL, ids, 2, 3, NULL, logits, cap);
    CHECK(st == GFN_OK, "logits");
    int finite = 1;
    for (size_t i = 0; i < cap; i++) finite &= isfinite(logits[i]) != 0;
    CHECK(finite, "finite logits");
    CHECK(gfn_model_logits(m, NULL, ids, 2, 3, mask, logits, cap) == GFN_OK, "masked logits");
    int32_t badmask[6] = {1, 0, 1, 1, 1, 1};
    CHECK(gfn_model_logits(m, NULL, ids, 2, 3, badmask, logits, cap) == GFN_ERR_INVALID_ARGUMENT, "non-left mask");
    CHECK(gfn_model_logits(m, NULL, ids, 2, 3, NULL, logits, cap - 1) == GFN_ERR_BUFFER_TOO_SMALL, "capacity");
    int32_t oov[1] = {100000};
    CHECK(gfn_model_logits(m, NULL, oov, 1, 1, NULL, logits, cap) == GFN_ERR_OUT_OF_RANGE, "oov id");
    CHECK(gfn_model_logits(m, NULL, ids, 0, 3, NULL, logits, cap) == GFN_ERR_INVALID_ARGUMENT, "batch 0");
    const gfn_tokenizer *tok = (const gfn_tokenizer *)1;
    CHECK(gfn_model_tokenizer(m, &tok) == GFN_OK && tok == NULL, "no tokenizer beside the tiny model");
    free(logits);
    gfn_model_free(m);
    CHECK(gfn_model_config_get(m, &cfg) == GFN_ERR_INVALID_ARGUMENT, "freed model refused");
}

int main(void) {
    test_versions();
    test_system_info();
    test_bad_inputs();
    test_tokenizer();
    test_model("Tests/Fixtures/gpt2-tiny/legacy17", "gpt2");
    test_model("Tests/Fixtures/gptj-tiny/legacy17/model.onnx", "gptj");
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_foundation: all passed\n");
    return 0;
}
