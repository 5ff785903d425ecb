/* Hostile inputs through the public C API (docs/reliability.md): every row of the matrix is refused before any work
 * with its documented status, and gfn_last_error() names the problem. Files are made at run time in a private
 * temporary folder: hand-made ONNX protobufs (a tiny writer below), edited copies of the test fixtures, and
 * adapter / checkpoint / tokenizer files written by the library and then damaged.
 *
 * Run from the repository root (the Makefile does): the fixtures are read from Tests/Fixtures. */
#define _GNU_SOURCE
#include "gfnlm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmp[256];


/* One row of the matrix: `st` must be `want` and the message must contain every fragment (NULL-terminated). */
static void expect_error(const char *row, gfn_status st, gfn_status want, ...) {
    checks++;
    const char *msg = gfn_last_error();
    int ok = st == want;
    va_list ap;
    va_start(ap, want);
    const char *missing = NULL;
    for (const char *frag = va_arg(ap, const char *); frag; frag = va_arg(ap, const char *))
        if (!strstr(msg, frag) && !missing) missing = frag;
    va_end(ap);
    if (!ok || missing) {
        fprintf(stderr, "FAIL %-44s got %s, want %s%s%s — %s\n", row, gfn_status_name(st), gfn_status_name(want),
                missing ? "; message lacks: " : "", missing ? missing : "", msg);
        failures++;
    } else {
        printf("  ok  %-44s %-26s %.110s\n", row, gfn_status_name(st), msg);
    }
}
#define ROW(name, call, want, ...) expect_error(name, (call), want, __VA_ARGS__, (const char *)NULL)

/* ---------------------------------------------------------------- files */

static char *path_in(const char *name) {
    static char buf[8][512];
    static int k = 0;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmp, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n && fwrite(data, 1, n, f) != n) { perror(path); exit(2); }
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) { perror(path); exit(2); }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); exit(2); }
}

static void copy_file(const char *src, const char *dst) {
    size_t n;
    unsigned char *b = read_file(src, &n);
    write_file(dst, b, n);
    free(b);
}

/* Replaces every occurrence of `from` by `to` (same length) in a file. */
static int patch_file(const char *path, const char *from, const char *to) {
    size_t n, m = strlen(from), hits = 0;
    if (strlen(to) != m) { fprintf(stderr, "patch_file: lengths differ\n"); exit(2); }
    unsigned char *b = read_file(path, &n);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(b + i, from, m) == 0) { memcpy(b + i, to, m); hits++; }
    write_file(path, b, n);
    free(b);
    return (int)hits;
}

/* ---------------------------------------------------------------- a tiny protobuf writer for ONNX */

typedef struct { unsigned char *b; size_t n, cap; } pb;

static void pb_put(pb *p, const void *d, size_t n) {
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 64;
        p->b = realloc(p->b, p->cap);
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void pb_varint(pb *p, uint64_t v) {
    unsigned char c;
    while (v >= 0x80) { c = (unsigned char)(v | 0x80); pb_put(p, &c, 1); v >>= 7; }
    c = (unsigned char)v;
    pb_put(p, &c, 1);
}
static void pb_int(pb *p, int field, int64_t v) { pb_varint(p, (uint64_t)field << 3); pb_varint(p, (uint64_t)v); }
static void pb_bytes(pb *p, int field, const void *d, size_t n) {
    pb_varint(p, (uint64_t)field << 3 | 2);
    pb_varint(p, n);
    pb_put(p, d, n);
}
static void pb_str(pb *p, int field, const char *s) { pb_bytes(p, field, s, strlen(s)); }
static void pb_msg(pb *p, int field, pb *m) { pb_bytes(p, field, m->b, m->n); free(m->b); *m = (pb){0}; }

/* TensorProto W of FLOAT with `dims`, raw_data of `nraw` floats, optional external entries (key, value pairs). */
static pb tensor(const int64_t *dims, int rank, int nraw, const char *const *ext, int next) {
    pb t = {0};
    for (int i = 0; i < rank; i++) pb_int(&t, 1, dims[i]);
    pb_int(&t, 2, 1);
    pb_str(&t, 8, "W");
    if (nraw >= 0) {
        float *v = calloc((size_t)nraw + 1, sizeof(float));
        for (int i = 0; i < nraw; i++) v[i] = 0.5f * (float)i;
        pb_bytes(&t, 9, v, (size_t)nraw * sizeof(float));
        free(v);
    }
    for (int i = 0; i < next; i++) {
        pb e = {0};
        pb_str(&e, 1, ext[2 * i]);
        pb_str(&e, 2, ext[2 * i + 1]);
        pb_msg(&t, 13, &e);
    }
    if (next) pb_int(&t, 14, 1);
    return t;
}

/* ModelProto: ir_version 8, opset 17, graph g = MatMul(X, W) with `w` as initializer (or `g` given). */
static void write_model(const char *path, pb *w, pb *graph_in) {
    pb g = {0};
    if (graph_in) {
        g = *graph_in;
        *graph_in = (pb){0};
    } else {
        pb node = {0};
        pb_str(&node, 1, "X");
        pb_str(&node, 1, "W");
        pb_str(&node, 2, "Y");
        pb_str(&node, 4, "MatMul");
        pb_msg(&g, 1, &node);
        pb_str(&g, 2, "g");
        pb_msg(&g, 5, w);
    }
    pb m = {0}, op = {0};
    pb_int(&m, 1, 8);
    pb_str(&m, 2, "test_hostile");
    pb_msg(&m, 7, &g);
    pb_str(&op, 1, "");
    pb_int(&op, 2, 17);
    pb_msg(&m, 8, &op);
    write_file(path, m.b, m.n);
    free(m.b);
}

/* ---------------------------------------------------------------- ONNX rows */

static void onnx_rows(void) {
    gfn_model *m = NULL;
    printf("== ONNX models (gfn_model_load)\n");
    ROW("missing file", gfn_model_load(path_in("absent.onnx"), NULL, &m), GFN_ERR_IO, "absent.onnx");
    make_dir(path_in("emptydir"));
    ROW("folder without a model", gfn_model_load(path_in("emptydir"), NULL, &m), GFN_ERR_IO, "no .onnx");
    make_dir(path_in("two"));
    write_file(path_in("two/a.onnx"), "x", 1);
    write_file(path_in("two/b.onnx"), "x", 1);
    ROW("folder with several models", gfn_model_load(path_in("two"), NULL, &m), GFN_ERR_INVALID_ARGUMENT, "several");
    write_file(path_in("empty.onnx"), "", 0);
    ROW("empty file", gfn_model_load(path_in("empty.onnx"), NULL, &m), GFN_ERR_FORMAT, "empty");
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 2654435761u >> 13);
    write_file(path_in("junk.onnx"), junk, sizeof junk);
    ROW("random bytes", gfn_model_load(path_in("junk.onnx"), NULL, &m), GFN_ERR_FORMAT, "junk.onnx");
    if (mkfifo(path_in("fifo.onnx"), 0600) == 0)
        ROW("a FIFO (no hang)", gfn_model_load(path_in("fifo.onnx"), NULL, &m), GFN_ERR_IO, "not a regular file");
    {
        size_t n;
        unsigned char *b = read_file("Tests/Fixtures/gpt2-tiny/legacy17/model.onnx", &n);
        write_file(path_in("truncated.onnx"), b, n / 2);
        free(b);
        ROW("truncated export", gfn_model_load(path_in("truncated.onnx"), NULL, &m), GFN_ERR_FORMAT, "truncated.onnx");
    }
    {   /* a sparse 2 GiB file: protobuf's hard limit, refused at once without reading it */
        int fd = open(path_in("big.onnx"), O_CREAT | O_WRONLY, 0600);
        if (fd >= 0 && ftruncate(fd, (off_t)1 << 31) == 0)
            ROW("2 GiB inline model", gfn_model_load(path_in("big.onnx"), NULL, &m), GFN_ERR_UNSUPPORTED, "2 GiB");
        if (fd >= 0) close(fd);
        unlink(path_in("big.onnx"));
    }
    ROW("valid ONNX that is not a GPT", gfn_model_load("Tests/Fixtures/not-a-gpt/model.onnx", NULL, &m),
        GFN_ERR_UNSUPPORTED, "not a GPT-2/GPT-J");
    ROW("fused com.microsoft::Attention", gfn_model_load("Tests/Fixtures/gpt2-tiny/ort-attention-fused", NULL, &m),
        GFN_ERR_UNSUPPORTED, "Attention");

    /* tensors whose declared size exceeds the data, negative and overflowing dims */
    int64_t d44[] = {4, 4}, dneg[] = {4, -3}, dbig[] = {(int64_t)1 << 40, (int64_t)1 << 40, (int64_t)1 << 40},
            dhuge[] = {(int64_t)1 << 41};
    pb t = tensor(d44, 2, 12, NULL, 0);
    write_model(path_in("dims.onnx"), &t, NULL);
    ROW("dims exceed inline data", gfn_model_load(path_in("dims.onnx"), NULL, &m), GFN_ERR_FORMAT, "'W'", "64 bytes", "48 bytes");
    t = tensor(dneg, 2, 12, NULL, 0);
    write_model(path_in("neg.onnx"), &t, NULL);
    ROW("negative dimension", gfn_model_load(path_in("neg.onnx"), NULL, &m), GFN_ERR_FORMAT, "negative");
    t = tensor(dbig, 3, 12, NULL, 0);
    write_model(path_in("overflow.onnx"), &t, NULL);
    ROW("overflowing dims", gfn_model_load(path_in("overflow.onnx"), NULL, &m), GFN_ERR_FORMAT, "'W'", "sane bound");
    t = tensor(dhuge, 1, 12, NULL, 0);
    write_model(path_in("hugedim.onnx"), &t, NULL);
    ROW("dimension over the sane bound", gfn_model_load(path_in("hugedim.onnx"), NULL, &m), GFN_ERR_FORMAT, "sane bound");

    /* external data: absolute, escaping, symlinked out, truncated, missing, bad numbers, a folder */
    int64_t d43[] = {4, 3};
    const char *abs_[] = {"location", "/etc/passwd", "offset", "0", "length", "48"};
    t = tensor(d43, 2, -1, abs_, 3);
    write_model(path_in("abs.onnx"), &t, NULL);
    ROW("external data at an absolute path", gfn_model_load(path_in("abs.onnx"), NULL, &m), GFN_ERR_FORMAT, "absolute", "/etc/passwd");
    const char *up[] = {"location", "../../etc/passwd", "offset", "0", "length", "48"};
    t = tensor(d43, 2, -1, up, 3);
    write_model(path_in("up.onnx"), &t, NULL);
    ROW("external data ../../etc/passwd", gfn_model_load(path_in("up.onnx"), NULL, &m), GFN_ERR_FORMAT, "outside", "../../etc/passwd");
    const char *sub[] = {"location", "sub/../../x.bin"};
    t = tensor(d43, 2, -1, sub, 1);
    write_model(path_in("subup.onnx"), &t, NULL);
    ROW("external data sub/../../x.bin", gfn_model_load(path_in("subup.onnx"), NULL, &m), GFN_ERR_FORMAT, "outside");
    const char *link[] = {"location", "link.bin"};
    if (symlink("/etc/passwd", path_in("link.bin")) == 0) {
        t = tensor(d43, 2, -1, link, 1);
        write_model(path_in("link.onnx"), &t, NULL);
        ROW("external data symlinked out", gfn_model_load(path_in("link.onnx"), NULL, &m), GFN_ERR_FORMAT, "symlink", "outside");
    }
    float w12[12] = {0};
    write_file(path_in("w.bin"), w12, sizeof w12);
    const char *beyond[] = {"location", "w.bin", "offset", "8", "length", "48"};
    t = tensor(d43, 2, -1, beyond, 3);
    write_model(path_in("beyond.onnx"), &t, NULL);
    ROW("external range beyond the file", gfn_model_load(path_in("beyond.onnx"), NULL, &m), GFN_ERR_FORMAT, "beyond the end");
    const char *huge_off[] = {"location", "w.bin", "offset", "99999999999999999999999"};
    t = tensor(d43, 2, -1, huge_off, 2);
    write_model(path_in("hugeoff.onnx"), &t, NULL);
    ROW("external offset that overflows", gfn_model_load(path_in("hugeoff.onnx"), NULL, &m), GFN_ERR_FORMAT, "offset");
    const char *missing[] = {"location", "nothere.bin"};
    t = tensor(d43, 2, -1, missing, 1);
    write_model(path_in("missing.onnx"), &t, NULL);
    ROW("external file missing", gfn_model_load(path_in("missing.onnx"), NULL, &m), GFN_ERR_IO, "nothere.bin");
    make_dir(path_in("adir"));
    const char *dir[] = {"location", "adir"};
    t = tensor(d43, 2, -1, dir, 1);
    write_model(path_in("dir.onnx"), &t, NULL);
    ROW("external data is a folder", gfn_model_load(path_in("dir.onnx"), NULL, &m), GFN_ERR_FORMAT, "not a regular file");

    /* a real external-data export whose data file is truncated, or a symlink out of its folder */
    make_dir(path_in("ext"));
    copy_file("Tests/Fixtures/gpt2-tiny/external-onefile/model.onnx", path_in("ext/model.onnx"));
    ROW("export without its data file", gfn_model_load(path_in("ext"), NULL, &m), GFN_ERR_IO, "model.onnx.data");
    {
        size_t n;
        unsigned char *b = read_file("Tests/Fixtures/gpt2-tiny/external-onefile/model.onnx.data", &n);
        write_file(path_in("ext/model.onnx.data"), b, n - 4096);
        ROW("export with a truncated data file", gfn_model_load(path_in("ext"), NULL, &m), GFN_ERR_FORMAT, "beyond the end");
        write_file(path_in("outside.data"), b, n);
        free(b);
        unlink(path_in("ext/model.onnx.data"));
        if (symlink(path_in("outside.data"), path_in("ext/model.onnx.data")) == 0)
            ROW("export whose data is symlinked out", gfn_model_load(path_in("ext"), NULL, &m), GFN_ERR_FORMAT, "symlink");
        unlink(path_in("ext/model.onnx.data"));
        /* same-length edits of every location in the graph */
        int k = patch_file(path_in("ext/model.onnx"), "model.onnx.data", "/tmp/model.data");
        CHECK(k > 10, "patched %d locations", k);
        ROW("export with absolute locations", gfn_model_load(path_in("ext"), NULL, &m), GFN_ERR_FORMAT, "absolute");
        patch_file(path_in("ext/model.onnx"), "/tmp/model.data", "../x/model.data");
        ROW("export with ../ locations", gfn_model_load(path_in("ext"), NULL, &m), GFN_ERR_FORMAT, "outside");
    }

    /* recursion bomb: graph → If node → then_branch graph → … 3000 levels */
    {
        pb inner = {0};
        pb_str(&inner, 2, "g");
        for (int i = 0; i < 3000; i++) {
            pb a = {0}, n = {0}, g = {0};
            pb_str(&a, 1, "then_branch");
            pb_msg(&a, 6, &inner);
            pb_int(&a, 20, 5);
            pb_str(&n, 1, "c");
            pb_str(&n, 2, "y");
            pb_str(&n, 4, "If");
            pb_msg(&n, 5, &a);
            pb_msg(&g, 1, &n);
            pb_str(&g, 2, "g");
            inner = g;
        }
        write_model(path_in("bomb.onnx"), NULL, &inner);
        ROW("recursion bomb (3000 nested graphs)", gfn_model_load(path_in("bomb.onnx"), NULL, &m), GFN_ERR_FORMAT, "bomb.onnx");
    }

    /* tokenizer given with the model: missing, and larger than the model's vocabulary */
    gfn_model_params p = gfn_model_default_params();
    p.tokenizer_path = path_in("no-tokenizer");
    ROW("model with a missing tokenizer", gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", &p, &m), GFN_ERR_IO, "no-tokenizer");
    p.tokenizer_path = "Tests/Fixtures/tokenizer";
    ROW("tokenizer larger than the vocabulary", gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", &p, &m), GFN_ERR_FORMAT, "50257");
    CHECK(m == NULL, "no handle after failures");
}

/* ---------------------------------------------------------------- tokenizer rows */

static void tokenizer_rows(void) {
    gfn_tokenizer *t = NULL;
    printf("== tokenizer files (gfn_tokenizer_load)\n");
    ROW("missing folder", gfn_tokenizer_load(path_in("notok"), &t), GFN_ERR_IO, "notok");
    make_dir(path_in("tok1"));
    write_file(path_in("tok1/vocab.json"), "{\"a\": 0}", 8);
    ROW("vocab.json without merges.txt", gfn_tokenizer_load(path_in("tok1"), &t), GFN_ERR_IO, "tok1");
    write_file(path_in("tok1/merges.txt"), "#version: 0.2\n", 14);
    write_file(path_in("tok1/vocab.json"), "{\"a\": 0,,}", 10);
    ROW("malformed vocab.json", gfn_tokenizer_load(path_in("tok1"), &t), GFN_ERR_FORMAT, "vocab.json");
    write_file(path_in("tok1/vocab.json"), "[1, 2]", 6);
    ROW("vocab.json not an object", gfn_tokenizer_load(path_in("tok1"), &t), GFN_ERR_FORMAT, "vocab.json");
    {   /* JSON bomb: 100000 nested arrays */
        size_t n = 200000;
        char *b = malloc(n);
        memset(b, '[', n / 2);
        memset(b + n / 2, ']', n / 2);
        write_file(path_in("tok1/vocab.json"), b, n);
        free(b);
        ROW("JSON bomb (100000 nested arrays)", gfn_tokenizer_load(path_in("tok1"), &t), GFN_ERR_FORMAT, "nesting");
    }
    write_file(path_in("tok1/vocab.json"), "{\"a\": 99999999999}", 18);
    ROW("token id beyond a sane bound", gfn_tokenizer_load(path_in("tok1"), &t), GFN_ERR_FORMAT, "vocab.json");
    make_dir(path_in("tok2"));
    const char *wp = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
    write_file(path_in("tok2/tokenizer.json"), wp, strlen(wp));
    ROW("tokenizer.json of another model type", gfn_tokenizer_load(path_in("tok2"), &t), GFN_ERR_UNSUPPORTED, "WordPiece");
    CHECK(t == NULL, "no handle after failures");

    if (gfn_tokenizer_load("Tests/Fixtures/tokenizer", &t) != GFN_OK) { CHECK(0, "real tokenizer"); return; }
    int32_t ids[8], n = 0;
    size_t nb = 0;
    char text[64];
    ROW("encode invalid UTF-8", gfn_tokenizer_encode(t, "a\xff\xfe", 1, ids, 8, &n), GFN_ERR_INVALID_ARGUMENT, "UTF-8");
    ROW("encode with negative capacity", gfn_tokenizer_encode(t, "a", 1, ids, -1, &n), GFN_ERR_INVALID_ARGUMENT, "capacity");
    int32_t bad[] = {1, 50257};
    ROW("decode an id outside the vocabulary", gfn_tokenizer_decode(t, bad, 2, text, sizeof text, &nb), GFN_ERR_OUT_OF_RANGE, "50257");
    int32_t neg[] = {-5};
    ROW("decode a negative id", gfn_tokenizer_decode(t, neg, 1, text, sizeof text, &nb), GFN_ERR_OUT_OF_RANGE, "-5");
    ROW("decode a negative count", gfn_tokenizer_decode(t, bad, -2, text, sizeof text, &nb), GFN_ERR_INVALID_ARGUMENT, "negative");
    int32_t hello[] = {15496, 995};
    ROW("decode into a small buffer", gfn_tokenizer_decode(t, hello, 2, text, 4, &nb), GFN_ERR_BUFFER_TOO_SMALL, "capacity");
    CHECK(nb == 11, "needed length %zu", nb);
    gfn_tokenizer_free(t);
}

/* ---------------------------------------------------------------- adapter rows */

/* A safetensors file from a header string and `ndata` zero bytes of data. */
static void write_safetensors(const char *path, const char *header, size_t ndata, uint64_t declared) {
    size_t h = strlen(header);
    uint64_t len = declared ? declared : h;
    unsigned char *b = calloc(8 + h + ndata + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
    memcpy(b + 8, header, h);
    write_file(path, b, 8 + h + ndata);
    free(b);
}

static void adapter_rows(gfn_model *model, gfn_model *other) {
    gfn_adapter *a = NULL;
    printf("== PEFT adapters (gfn_adapter_load) and safetensors\n");
    ROW("missing folder", gfn_adapter_load(model, path_in("noadapter"), &a), GFN_ERR_IO, "noadapter");
    /* a valid adapter saved by the library, then damaged */
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 4;
    gfn_adapter *good = NULL;
    if (gfn_adapter_new(model, &lp, &good) != GFN_OK || gfn_adapter_save(good, path_in("ad")) != GFN_OK) {
        CHECK(0, "make an adapter");
        return;
    }
    CHECK(gfn_adapter_load(model, path_in("ad"), &a) == GFN_OK, "the saved adapter loads");
    gfn_adapter_free(a);
    a = NULL;
    size_t ncfg;
    char cfgpath[600];
    snprintf(cfgpath, sizeof cfgpath, "%s", path_in("ad/adapter_config.json"));
    unsigned char *cfg = read_file(cfgpath, &ncfg);
    write_file(cfgpath, "{\"peft_type\": \"LORA\",", 21);
    ROW("truncated adapter_config.json", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "adapter_config.json");
    const char *ia3 = "{\"peft_type\": \"IA3\", \"r\": 4}";
    write_file(cfgpath, ia3, strlen(ia3));
    ROW("peft_type IA3", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_UNSUPPORTED, "IA3");
    const char *r0 = "{\"peft_type\": \"LORA\", \"r\": 0}";
    write_file(cfgpath, r0, strlen(r0));
    ROW("rank 0", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "r must be");
    const char *r8 = "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8}";
    write_file(cfgpath, r8, strlen(r8));
    ROW("config rank differs from the tensors", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_STATE, "shape");
    {   /* JSON bomb inside adapter_config.json */
        size_t n = 100000;
        char *b = malloc(n);
        memset(b, '[', n);
        write_file(cfgpath, b, n);
        free(b);
        ROW("JSON bomb in adapter_config.json", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "nesting");
    }
    write_file(cfgpath, cfg, ncfg);
    free(cfg);
    ROW("adapter of another model's shape", gfn_adapter_load(other, path_in("ad"), &a), GFN_ERR_STATE, "lora_A");

    char stpath[600];
    snprintf(stpath, sizeof stpath, "%s", path_in("ad/adapter_model.safetensors"));
    write_safetensors(stpath, "{}", 0, (uint64_t)1 << 40);
    ROW("safetensors header length 1 TiB", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "header length");
    write_safetensors(stpath, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8, 0);
    ROW("safetensors header not JSON", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "header");
    write_safetensors(stpath, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, 0);
    ROW("safetensors data past the end", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "8 bytes");
    write_safetensors(stpath, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 8]}}", 8, 0);
    ROW("safetensors shape that overflows", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "overflows");
    write_safetensors(stpath, "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, 0);
    ROW("safetensors negative dimension", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "invalid dimension");
    write_safetensors(stpath,
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, 0);
    ROW("safetensors overlapping tensors", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "overlaps");
    write_safetensors(stpath, "{\"a\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, 0);
    ROW("safetensors unknown dtype", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "dtype");
    write_safetensors(stpath,
                      "{\"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight\": {\"dtype\": \"F32\", \"shape\": [4, 64],"
                      " \"data_offsets\": [0, 1024]}}", 1024, 0);
    ROW("lora_A without its lora_B", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_FORMAT, "only one of");
    write_safetensors(stpath,
                      "{\"base_model.model.transformer.h.9.attn.c_attn.lora_A.weight\": {\"dtype\": \"F32\", \"shape\": [4, 64],"
                      " \"data_offsets\": [0, 1024]}}", 1024, 0);
    ROW("a module the model does not have", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_STATE, "h.9");
    write_safetensors(stpath,
                      "{\"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight\": {\"dtype\": \"F32\", \"shape\": [4, 63],"
                      " \"data_offsets\": [0, 1008]}}", 1008, 0);
    ROW("lora_A of the wrong shape", gfn_adapter_load(model, path_in("ad"), &a), GFN_ERR_STATE, "[4, 64]");
    CHECK(a == NULL, "no handle after failures");

    /* an adapter used with another model */
    int32_t ids[2] = {1, 2};
    float logits[2 * 512];
    ROW("adapter used with another model", gfn_model_logits(other, good, ids, 1, 2, NULL, logits, 2 * 512),
        GFN_ERR_STATE, "another model");
    gfn_sft *s = NULL;
    ROW("SFT with another model's adapter", gfn_sft_new(other, good, NULL, &s), GFN_ERR_STATE, "another model");
    gfn_adapter_free(good);
}

/* ---------------------------------------------------------------- checkpoint rows */

static int32_t reward_len(void *ud, int32_t prompt, const int32_t *const *states, const int32_t *lens, int32_t n,
                          double *out) {
    (void)ud; (void)prompt; (void)states;
    for (int32_t i = 0; i < n; i++) out[i] = -0.5 * lens[i];
    return 0;
}

static void checkpoint_rows(gfn_model *model) {
    printf("== training checkpoints (gfn_sft_load / gfn_gflownet_load)\n");
    gfn_lora_params lp = gfn_lora_default_params();
    lp.r = 2;
    gfn_adapter *a1 = NULL, *a2 = NULL;
    gfn_sft *sft = NULL;
    gfn_reward *rw = NULL;
    gfn_gflownet *g = NULL;
    CHECK(gfn_adapter_new(model, &lp, &a1) == GFN_OK && gfn_adapter_new(model, &lp, &a2) == GFN_OK, "adapters");
    CHECK(gfn_sft_new(model, a1, NULL, &sft) == GFN_OK, "sft");
    CHECK(gfn_reward_new_callback(reward_len, NULL, 0, &rw) == GFN_OK, "reward");
    int32_t x[] = {5, 6, 7};
    gfn_prompt pr = {.size = sizeof(gfn_prompt), .x = x, .n_x = 3};
    gfn_gflownet_params gp = gfn_gflownet_default_params();
    gp.termination = 511;
    gp.max_length = 3;
    gp.batch_size = 2;
    CHECK(gfn_gflownet_new(model, a2, rw, &pr, 1, &gp, &g) == GFN_OK, "gflownet");
    if (!sft || !g) return;
    int32_t c[] = {1, 2, 3}, tg[] = {4, 5};
    const int32_t *cs[] = {c}, *ts[] = {tg};
    int32_t cl[] = {3}, tl[] = {2};
    gfn_sft_stats ss = {.size = sizeof ss};
    CHECK(gfn_sft_step(sft, cs, cl, ts, tl, 1, &ss) == GFN_OK, "sft step");
    CHECK(gfn_gflownet_step(g, NULL) == GFN_OK, "gflownet step");
    CHECK(gfn_sft_save(sft, path_in("ck-sft")) == GFN_OK, "sft save");
    CHECK(gfn_gflownet_save(g, path_in("ck-gfn")) == GFN_OK, "gflownet save");

    ROW("missing checkpoint", gfn_sft_load(sft, path_in("ck-none")), GFN_ERR_IO, "ck-none");
    ROW("SFT checkpoint into a GFlowNet trainer", gfn_gflownet_load(g, path_in("ck-sft")), GFN_ERR_STATE, "another run");
    ROW("GFlowNet checkpoint into an SFT trainer", gfn_sft_load(sft, path_in("ck-gfn")), GFN_ERR_STATE, "another run");
    {   /* a trainer with two prompts */
        gfn_prompt two[2] = {{.size = sizeof(gfn_prompt), .x = x, .n_x = 3}, {.size = sizeof(gfn_prompt), .x = x, .n_x = 2}};
        gfn_gflownet *g2 = NULL;
        gfn_adapter *a3 = NULL;
        gfn_adapter_new(model, &lp, &a3);
        CHECK(gfn_gflownet_new(model, a3, rw, two, 2, &gp, &g2) == GFN_OK, "gflownet 2");
        ROW("checkpoint of a run with other prompts", gfn_gflownet_load(g2, path_in("ck-gfn")), GFN_ERR_STATE, "prompts");
        gfn_gflownet_free(g2);
        gfn_adapter_free(a3);
    }
    {   /* versioned structs: a prompt of a size this library does not know, prompts of different sizes, a
           nested gfn_train_params or gfn_logit_adjustment with a wrong size */
        gfn_gflownet *g3 = NULL;
        gfn_prompt bad = pr;
        bad.size = 12;
        ROW("gfn_prompt with a wrong size", gfn_gflownet_new(model, a2, rw, &bad, 1, &gp, &g3), GFN_ERR_INVALID_ARGUMENT,
            "gfn_prompt.size");
        gfn_prompt mixed[2] = {pr, pr};
        mixed[1].size = 0;
        ROW("prompts of different sizes", gfn_gflownet_new(model, a2, rw, mixed, 2, &gp, &g3), GFN_ERR_INVALID_ARGUMENT,
            "prompts[1].size");
        gfn_train_params tp = gfn_train_default_params();
        tp.size = 8;
        gfn_gflownet_params gbad = gp;
        gbad.train = &tp;
        ROW("gfn_train_params with a wrong size", gfn_gflownet_new(model, a2, rw, &pr, 1, &gbad, &g3),
            GFN_ERR_INVALID_ARGUMENT, "gfn_train_params.size is 8");
        gfn_logit_adjustment adj = gfn_logit_default_adjustment();
        adj.size = 0;
        gbad = gp;
        gbad.adjust = &adj;
        ROW("gfn_logit_adjustment with a wrong size", gfn_gflownet_new(model, a2, rw, &pr, 1, &gbad, &g3),
            GFN_ERR_INVALID_ARGUMENT, "gfn_logit_adjustment.size is 0");
        CHECK(g3 == NULL, "no trainer after failures");
    }
    {   /* an adapter of another rank */
        gfn_lora_params l4 = lp;
        l4.r = 4;
        gfn_adapter *a4 = NULL;
        gfn_sft *s4 = NULL;
        gfn_adapter_new(model, &l4, &a4);
        gfn_sft_new(model, a4, NULL, &s4);
        ROW("checkpoint of another adapter rank", gfn_sft_load(s4, path_in("ck-sft")), GFN_ERR_STATE, "shape");
        gfn_sft_free(s4);
        gfn_adapter_free(a4);
    }
    char p[600];
    size_t n;
    snprintf(p, sizeof p, "%s", path_in("ck-sft/optimizer.safetensors"));
    unsigned char *b = read_file(p, &n);
    write_file(p, b, n / 2);
    ROW("truncated optimizer.safetensors", gfn_sft_load(sft, path_in("ck-sft")), GFN_ERR_FORMAT, "optimizer.safetensors");
    write_file(p, b, n);
    free(b);
    snprintf(p, sizeof p, "%s", path_in("ck-sft/trainer_state.json"));
    b = read_file(p, &n);
    write_file(p, b, n - 3);
    ROW("truncated trainer_state.json", gfn_sft_load(sft, path_in("ck-sft")), GFN_ERR_FORMAT, "trainer_state.json");
    {
        size_t k = 50000;
        char *bomb = malloc(k);
        memset(bomb, '[', k);
        write_file(p, bomb, k);
        free(bomb);
        ROW("JSON bomb in trainer_state.json", gfn_sft_load(sft, path_in("ck-sft")), GFN_ERR_FORMAT, "nesting");
    }
    write_file(p, b, n);
    free(b);
    snprintf(p, sizeof p, "%s", path_in("ck-gfn/replay_buffer.json"));
    write_file(p, "{\"format\": \"gfnlm-replay-buffer\"}", 33);
    ROW("corrupt replay buffer", gfn_gflownet_load(g, path_in("ck-gfn")), GFN_ERR_FORMAT, "missing settings");
    CHECK(gfn_sft_load(sft, path_in("ck-sft")) == GFN_OK, "the repaired SFT checkpoint loads: %s", gfn_last_error());
    gfn_gflownet_free(g);
    gfn_reward_free(rw);
    gfn_sft_free(sft);
    gfn_adapter_free(a1);
    gfn_adapter_free(a2);
}

/* ---------------------------------------------------------------- sizes and ranges at the API */

static void range_rows(gfn_model *model) {
    printf("== sizes and ranges (inference)\n");
    int32_t ids[80];
    for (int i = 0; i < 80; i++) ids[i] = i;
    static float logits[80 * 512];
    ROW("seq_len beyond n_positions", gfn_model_logits(model, NULL, ids, 1, 80, NULL, logits, 80 * 512), GFN_ERR_OUT_OF_RANGE, "64");
    ids[1] = 512;
    ROW("id outside the vocabulary", gfn_model_logits(model, NULL, ids, 1, 2, NULL, logits, 2 * 512), GFN_ERR_OUT_OF_RANGE, "512");
    ids[1] = 1;
    ROW("negative batch", gfn_model_logits(model, NULL, ids, -1, 2, NULL, logits, 2 * 512), GFN_ERR_INVALID_ARGUMENT, "batch");
    ROW("capacity too small", gfn_model_logits(model, NULL, ids, 1, 2, NULL, logits, 100), GFN_ERR_BUFFER_TOO_SMALL, "capacity");
    /* 2^31 · 2^31 · 512 overflowed Int and trapped inside the library before the fix */
    ROW("batch·seq_len·vocab overflow", gfn_model_logits(model, NULL, ids, 0x7fffffff, 0x7fffffff, NULL, logits, 100),
        GFN_ERR_OUT_OF_RANGE, "overflow");
    ROW("... through the adapter entry point", gfn_model_logits(model, NULL, ids, 0x7fffffff, 0x7fffffff, NULL, logits, 100),
        GFN_ERR_OUT_OF_RANGE, "overflow");
    int32_t mask[2] = {1, 0};
    ROW("mask that is not left padding", gfn_model_logits(model, NULL, ids, 1, 2, mask, logits, 2 * 512), GFN_ERR_INVALID_ARGUMENT, "left padding");
    gfn_context *ctx = NULL;
    gfn_context_new(model, &ctx);
    gfn_samples *out = NULL;
    const int32_t *pp[] = {ids};
    int32_t plen = 70;
    gfn_sampling_params sp = gfn_sampling_default_params();
    ROW("prompt longer than n_positions", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out), GFN_ERR_OUT_OF_RANGE, "64");
    plen = -3;
    ROW("negative prompt length", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT, "negative");
    plen = 2;
    sp.size = 7;
    ROW("parameter struct of a wrong size", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT, "size");
    sp = gfn_sampling_default_params();
    int32_t allowed[1] = {0};
    gfn_logit_adjustment adj = gfn_logit_default_adjustment();
    adj.allowed_tokens = allowed;
    adj.n_allowed_tokens = -1;
    sp.adjust = &adj;
    ROW("negative allowed-token count", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out), GFN_ERR_INVALID_ARGUMENT, "n_allowed_tokens");
    adj.n_allowed_tokens = 1;
    adj.size = 4;
    ROW("gfn_logit_adjustment with a wrong size", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out),
        GFN_ERR_INVALID_ARGUMENT, "gfn_logit_adjustment.size is 4");
    adj.size = sizeof adj + 8;
    ROW("gfn_logit_adjustment larger than the library knows", gfn_context_sample(ctx, pp, &plen, 1, 1, &sp, &out),
        GFN_ERR_INVALID_ARGUMENT, "gfn_logit_adjustment.size");
    CHECK(out == NULL, "no samples after failures");
    gfn_context_free(ctx);
    int bogus = 0;
    ROW("a pointer that is not a handle", gfn_context_new((gfn_model *)&bogus, &ctx), GFN_ERR_INVALID_ARGUMENT, "not a live");
    gfn_tokenizer *t = NULL;
    gfn_tokenizer_load("Tests/Fixtures/tokenizer", &t);
    ROW("a handle of another kind", gfn_context_new((gfn_model *)t, &ctx), GFN_ERR_INVALID_ARGUMENT, "another kind");
    gfn_tokenizer_free(t);
    ROW("a freed handle", gfn_context_new((gfn_model *)t, &ctx), GFN_ERR_INVALID_ARGUMENT, "already freed");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/gfnlm-hostile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 2; }
    onnx_rows();
    tokenizer_rows();
    gfn_model *model = NULL, *other = NULL;
    if (gfn_model_load("Tests/Fixtures/gpt2-tiny/legacy17", NULL, &model) != GFN_OK ||
        gfn_model_load("Tests/Fixtures/gptj-tiny/legacy17", NULL, &other) != GFN_OK) {
        fprintf(stderr, "cannot load the fixtures: %s\n", gfn_last_error());
        return 1;
    }
    adapter_rows(model, other);
    checkpoint_rows(model);
    range_rows(model);
    gfn_model_free(other);
    gfn_model_free(model);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    printf("test_hostile: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
