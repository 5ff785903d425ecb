/* Sampling, scoring and beam search from C: generate continuations of a prompt with the shipped model.
   Build: gcc -Iinclude examples/c/generate.c -Lbuild -lgfnlm -Wl,-rpath,build -o generate
   Usage: generate [model_dir] [prompt] [tokenizer_dir] */
#include "gfnlm.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, gfn_status st) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, gfn_last_error(), gfn_status_name(st));
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/demo-gpt2";
    const char *text = argc > 2 ? argv[2] : "The movie was";
    gfn_model_params mp = gfn_model_default_params();
    if (argc > 3) mp.tokenizer_path = argv[3];
    gfn_model *model = NULL;
    gfn_status st = gfn_model_load(path, &mp, &model);
    if (st != GFN_OK) return fail("gfn_model_load", st);
    const gfn_tokenizer *tok = NULL;
    gfn_model_tokenizer(model, &tok);
    if (!tok) {
        fprintf(stderr, "no tokenizer files beside %s\n", path);
        gfn_model_free(model);
        return 1;
    }
    int32_t prompt[256], n_prompt = 0, eos = 0;
    if ((st = gfn_tokenizer_encode(tok, text, 1, prompt, 256, &n_prompt)) != GFN_OK) return fail("encode", st);
    gfn_tokenizer_eos(tok, &eos);

    gfn_context *ctx = NULL;
    if ((st = gfn_context_new(model, &ctx)) != GFN_OK) return fail("gfn_context_new", st);

    /* 3 samples with nucleus sampling */
    gfn_sampling_params sp = gfn_sampling_default_params();
    sp.max_new_tokens = 24;
    sp.top_p = 0.95f;
    sp.seed = 7;
    sp.stop_tokens = &eos;
    sp.n_stop_tokens = 1;
    const int32_t *prompts[1] = {prompt};
    gfn_samples *samples = NULL;
    if ((st = gfn_context_sample(ctx, prompts, &n_prompt, 1, 3, &sp, &samples)) != GFN_OK) return fail("sample", st);
    int32_t count = 0;
    gfn_samples_count(samples, &count);
    char buf[4096];
    size_t nb = 0;
    for (int32_t i = 0; i < count; i++) {
        gfn_sample_info info = {.size = sizeof info};
        gfn_samples_get(samples, i, &info);
        if (gfn_tokenizer_decode(tok, info.tokens, info.n_tokens, buf, sizeof buf, &nb) != GFN_OK) buf[0] = 0;
        printf("sample %d: %s%s  [log q = %.2f, %s]\n", i, text, buf, info.logprob,
               info.finish_reason == 0 ? "stop" : "length");
    }
    gfn_samples_free(samples);

    /* beam search, 4 beams */
    gfn_beam_params bp = gfn_beam_default_params();
    bp.num_beams = 4;
    bp.num_return = 2;
    bp.max_new_tokens = 12;
    bp.stop_tokens = &eos;
    bp.n_stop_tokens = 1;
    if ((st = gfn_context_beam_search(ctx, prompt, n_prompt, &bp, &samples)) != GFN_OK) return fail("beam", st);
    gfn_samples_count(samples, &count);
    for (int32_t i = 0; i < count; i++) {
        gfn_sample_info info = {.size = sizeof info};
        gfn_samples_get(samples, i, &info);
        if (gfn_tokenizer_decode(tok, info.tokens, info.n_tokens, buf, sizeof buf, &nb) != GFN_OK) buf[0] = 0;
        printf("beam %d: %s%s  [log p = %.2f]\n", i, text, buf, info.logprob);
    }
    gfn_samples_free(samples);

    /* score a continuation */
    int32_t cont[64], n_cont = 0;
    gfn_tokenizer_encode(tok, " great fun.", 1, cont, 64, &n_cont);
    const int32_t *conts[1] = {cont};
    double total = 0;
    gfn_score_params scp = gfn_score_default_params();
    if ((st = gfn_context_score(ctx, prompts, &n_prompt, conts, &n_cont, 1, &scp, &total, NULL, NULL)) != GFN_OK)
        return fail("score", st);
    printf("log p(\" great fun.\" | \"%s\") = %.3f\n", text, total);

    gfn_context_free(ctx);
    gfn_model_free(model);
    return 0;
}
