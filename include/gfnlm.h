/*
 * gfnlm — GFlowNet fine-tuning and amortized posterior sampling for GPT-2 / GPT-J ONNX exports.
 *
 * This header is the public contract of libgfnlm.so and its reference documentation.
 *
 * Conventions (apply to every function unless its comment says otherwise)
 * -----------------------------------------------------------------------
 * - Errors: functions that can fail return a gfn_status (GFN_OK = 0, negative = error kind). Results come back
 *   through out-parameters, which are left untouched on failure unless documented. After a failure,
 *   gfn_last_error() returns a message for the last failure on the calling thread. Nothing in the library aborts
 *   the host process: bad handles, bad sizes and bad files are reported as errors.
 * - Handles are opaque pointers created by *_load / *_new and released by the matching *_free. *_free(NULL) is a
 *   no-op. Passing a handle that was already freed, or a pointer that is not a handle of the expected kind,
 *   returns GFN_ERR_INVALID_ARGUMENT (the library keeps a table of live handles) — but do not rely on that for
 *   pointers that were never handles.
 * - Parameter structs begin with a `size` field (set it to sizeof the struct; the *_default_params() functions do)
 *   so that they can grow without breaking the ABI. A struct whose size is smaller than the first version of that
 *   struct, or larger than the library knows, is refused with GFN_ERR_INVALID_ARGUMENT.
 * - Token ids are int32_t. Text is UTF-8, NUL-terminated. Arrays are pointer + length.
 * - Threads: a gfn_model and a gfn_tokenizer are immutable after loading and may be used by any number of
 *   threads at once. Every other handle may be used by one thread at a time (it may move between threads).
 * - Only symbols that begin with gfn_ are exported.
 */
#ifndef GFNLM_H
#define GFNLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------------------ */
/* Versions                                                                                                      */

#define GFN_VERSION_MAJOR 0
#define GFN_VERSION_MINOR 1
#define GFN_VERSION_PATCH 0
#define GFN_VERSION_STRING "0.1.0"
/* Incremented whenever a struct or signature of this header changes incompatibly. */
#define GFN_ABI_VERSION 1

/* The library's version string, e.g. "0.1.0". Static storage; never fails. */
const char *gfn_version(void);

/* The library's GFN_ABI_VERSION. Compare it with the header's macro to detect a mismatched library. */
int32_t gfn_abi_version(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Status codes                                                                                                  */

typedef int32_t gfn_status;

enum {
    GFN_OK = 0,
    /* A NULL or dead handle, a NULL pointer where one is required, a wrong struct size, a negative count,
       an inconsistent combination of parameters. */
    GFN_ERR_INVALID_ARGUMENT = -1,
    /* A file or directory could not be opened, read or written (the message names it). */
    GFN_ERR_IO = -2,
    /* A file is truncated, corrupt, or not of the expected format (the message says what was found). */
    GFN_ERR_FORMAT = -3,
    /* A well-formed input that gfnlm does not support: an architecture other than GPT-2 / GPT-J, a fused
       onnxruntime operator, an unknown data type. */
    GFN_ERR_UNSUPPORTED = -4,
    /* A token id, a length or an index outside its valid range (vocabulary, n_positions, capacity). */
    GFN_ERR_OUT_OF_RANGE = -5,
    /* An allocation failed, or a declared size exceeds a sane bound. */
    GFN_ERR_OUT_OF_MEMORY = -6,
    /* NaN or infinity where a finite number is required (rewards, losses, gradients). */
    GFN_ERR_NUMERICAL = -7,
    /* A host callback reported an error. */
    GFN_ERR_CALLBACK = -8,
    /* An object is used in a state that does not allow the call (e.g. an adapter made for another model). */
    GFN_ERR_STATE = -9,
    /* A bug in gfnlm; please report it with the message. */
    GFN_ERR_INTERNAL = -10,
    /* A callback asked to stop. */
    GFN_ERR_CANCELLED = -11,
    /* An output buffer is too small; the needed size was written to the size out-parameter. */
    GFN_ERR_BUFFER_TOO_SMALL = -12
};

/* The message of the last failure on the calling thread ("" if none). The pointer stays valid until the next
   failing call on this thread. The message is not cleared by successful calls. */
const char *gfn_last_error(void);

/* A constant name for a status code, e.g. "GFN_ERR_IO". Never NULL. */
const char *gfn_status_name(gfn_status status);

/* ------------------------------------------------------------------------------------------------------------ */
/* Tokenizer: GPT-2 byte-level BPE (also used by GPT-J)                                                          */

typedef struct gfn_tokenizer gfn_tokenizer;

/* Loads a tokenizer. `path` is a directory holding tokenizer.json, or vocab.json + merges.txt; or the path of a
   tokenizer.json; or the path of a vocab.json with merges.txt beside it.
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL path/out), GFN_ERR_IO (missing files), GFN_ERR_FORMAT (malformed files).
   Ownership: *out belongs to the caller; release it with gfn_tokenizer_free. Thread-safe. */
gfn_status gfn_tokenizer_load(const char *path, gfn_tokenizer **out);

/* Releases a tokenizer. NULL is a no-op. A tokenizer borrowed from a model (gfn_model_tokenizer) must not be freed. */
void gfn_tokenizer_free(gfn_tokenizer *tokenizer);

/* Encodes UTF-8 text. With allow_special != 0 the literal text "<|endoftext|>" becomes its special id (50256),
   as Hugging Face does; with 0 it is encoded as plain text.
   Writes up to `capacity` ids to `ids` and the number of ids to *n_ids. If capacity is too small, nothing is
   written to `ids`, *n_ids receives the needed count, and GFN_ERR_BUFFER_TOO_SMALL is returned (ids may be NULL
   when capacity is 0, to query the size). Invalid UTF-8 in `text` → GFN_ERR_INVALID_ARGUMENT. */
gfn_status gfn_tokenizer_encode(const gfn_tokenizer *tokenizer, const char *text, int32_t allow_special,
                                int32_t *ids, int32_t capacity, int32_t *n_ids);

/* Decodes ids to UTF-8 text (byte sequences that are not valid UTF-8 become U+FFFD, as Hugging Face does).
   Writes a NUL-terminated string of at most capacity−1 bytes to `text` and its length (without the NUL) to
   *n_bytes. If capacity is too small, *n_bytes receives the needed length (without the NUL) and
   GFN_ERR_BUFFER_TOO_SMALL is returned. An id outside the vocabulary → GFN_ERR_OUT_OF_RANGE. */
gfn_status gfn_tokenizer_decode(const gfn_tokenizer *tokenizer, const int32_t *ids, int32_t n_ids,
                                char *text, size_t capacity, size_t *n_bytes);

/* Number of ids the tokenizer defines (50257 for GPT-2). */
gfn_status gfn_tokenizer_vocab_size(const gfn_tokenizer *tokenizer, int32_t *out);

/* The end-of-text id (50256 for GPT-2), or −1 if the tokenizer has none. */
gfn_status gfn_tokenizer_eos(const gfn_tokenizer *tokenizer, int32_t *out);

/* ------------------------------------------------------------------------------------------------------------ */
/* Model                                                                                                         */

typedef struct gfn_model gfn_model;

typedef struct gfn_model_params {
    uint32_t size;              /* sizeof(gfn_model_params) */
    int32_t n_threads;          /* threads for attention and element-wise work; 0 = all online CPUs */
    const char *tokenizer_path; /* NULL: look for tokenizer files beside the model (no error if absent);
                                   otherwise load from this path (errors are reported) */
} gfn_model_params;

/* Defaults: n_threads 0, tokenizer_path NULL. */
gfn_model_params gfn_model_default_params(void);

/* Loads a GPT-2 or GPT-J model from an ONNX export. `path` is the .onnx file or a directory holding one
   (model.onnx preferred). External data files (one data file with offsets, or one file per tensor) are read
   relative to the model's directory and memory-mapped. The architecture and every hyper-parameter are recovered
   from the graph; a config.json beside the model is used only for what the graph lacks.
   params may be NULL (defaults).
   Errors: GFN_ERR_IO (missing or unreadable file), GFN_ERR_FORMAT (truncated / corrupt file, bad external data,
   inconsistent shapes), GFN_ERR_UNSUPPORTED (a valid ONNX model that is not a plain GPT-2 / GPT-J, e.g. one with a
   fused com.microsoft::Attention node).
   Ownership: *out belongs to the caller; release it with gfn_model_free after every object made from it.
   Thread safety: the model is immutable and may be used from any number of threads at once. */
gfn_status gfn_model_load(const char *path, const gfn_model_params *params, gfn_model **out);

/* Releases a model. NULL is a no-op. */
void gfn_model_free(gfn_model *model);

typedef struct gfn_model_config {
    uint32_t size;          /* set by the caller: sizeof(gfn_model_config) */
    char arch[16];          /* "gpt2" or "gptj" */
    char activation[16];    /* "gelu_new" or "gelu" */
    int32_t n_layer;
    int32_t n_head;
    int32_t head_dim;
    int32_t n_embd;
    int32_t n_inner;
    int32_t vocab_size;     /* rows of the token embedding (GPT-J: 50400; may exceed the tokenizer's size) */
    int32_t n_positions;
    int32_t rotary_dim;     /* 0 for GPT-2 */
    float layer_norm_eps;
    float rotary_base;      /* 0 for GPT-2 */
    int32_t tied_head;      /* 1 when the head is the transposed token embedding */
    int32_t head_bias;      /* 1 when the head has a bias */
} gfn_model_config;

/* Fills *out (whose size field the caller sets) with the model's hyper-parameters. */
gfn_status gfn_model_config_get(const gfn_model *model, gfn_model_config *out);

/* The tokenizer loaded with the model, borrowed (valid while the model lives; do not free), or NULL in *out
   when none was found. */
gfn_status gfn_model_tokenizer(const gfn_model *model, const gfn_tokenizer **out);

/* Logits of a batch: `ids` is [batch, seq_len] row-major. `attention_mask` (may be NULL = all ones) is
   [batch, seq_len] with 0 only as left padding (a row is 0…0 1…1; positions count from its first 1, as Hugging
   Face generate() does). Writes batch·seq_len·vocab_size floats to `logits` ([batch, seq_len, vocab]);
   `capacity` is the number of floats `logits` can hold.
   Padding positions hold meaningless values (do not use them).
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL pointers, batch or seq_len ≤ 0, a mask that is not left padding),
   GFN_ERR_OUT_OF_RANGE (an id outside the vocabulary, seq_len beyond n_positions),
   GFN_ERR_BUFFER_TOO_SMALL (capacity too small). Thread-safe. */
gfn_status gfn_model_logits(const gfn_model *model, const int32_t *ids, int32_t batch, int32_t seq_len,
                            const int32_t *attention_mask, float *logits, size_t capacity);

/* ------------------------------------------------------------------------------------------------------------ */
/* Adapters (LoRA). Created and trained by the training API; NULL everywhere means "the base model".             */

typedef struct gfn_adapter gfn_adapter;

/* ------------------------------------------------------------------------------------------------------------ */
/* Inference context: sampling, scoring, beam search                                                             */

/* Per-caller state (scratch memory, KV caches) for inference on one model. Use one context per thread; any number
   of contexts may share one model. The context keeps the model alive (freeing the model first is allowed). */
typedef struct gfn_context gfn_context;

/* Errors: GFN_ERR_INVALID_ARGUMENT (dead model handle, NULL out). Ownership: the caller frees with
   gfn_context_free. */
gfn_status gfn_context_new(const gfn_model *model, gfn_context **out);
void gfn_context_free(gfn_context *ctx);

/* Vocabulary constraints and biases that define the policy: they change the reported log-probabilities as well as
   what is sampled. Ids outside allowed_tokens (when n_allowed_tokens > 0) get disallowed_penalty added to their
   logits: −INFINITY is a hard mask, a finite value such as −99 the reference's soft mask. Stop tokens are always
   allowed. bias_values[i] is added to the logit of bias_tokens[i]. */
typedef struct gfn_logit_adjustment {
    const int32_t *allowed_tokens;
    int32_t n_allowed_tokens;   /* 0 = every id allowed */
    float disallowed_penalty;   /* ≤ 0; default −INFINITY */
    const int32_t *bias_tokens;
    const float *bias_values;
    int32_t n_bias;
} gfn_logit_adjustment;

typedef struct gfn_sampling_params {
    uint32_t size;                 /* sizeof(gfn_sampling_params) */
    int32_t max_new_tokens;        /* > 0; default 32 (reduced if the positions run out) */
    int32_t min_new_tokens;        /* stop tokens cannot be sampled before this many tokens; default 0 */
    float temperature;             /* sampling only (log-probs stay untempered); 0 = greedy; default 1 */
    int32_t top_k;                 /* 0 = off */
    float top_p;                   /* 1 = off */
    uint64_t seed;                 /* same seed ⇒ same tokens, whatever the thread count */
    const int32_t *stop_tokens;    /* sampling one ends the sample */
    int32_t n_stop_tokens;
    int32_t include_stop_token;    /* 1: a sampled stop token is the last returned token (default 1) */
    gfn_logit_adjustment adjust;
    const gfn_adapter *adapter;    /* NULL = the base model */
} gfn_sampling_params;

/* Defaults as documented on each field. */
gfn_sampling_params gfn_sampling_default_params(void);

/* A set of generated sequences (samples or beam hypotheses). Owned by the caller; free with gfn_samples_free. */
typedef struct gfn_samples gfn_samples;

/* Samples n_per_prompt continuations of each of n_prompts prompts (prompts[i] has prompt_lengths[i] ≥ 1 ids).
   Each prompt runs through the model once; its samples share that cache, and all samples decode together.
   For every sample the policy's own log-probabilities are reported (see gfn_sample_info).
   Sample k of prompt i is at index i·n_per_prompt + k.
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL pointers, n_prompts or n_per_prompt ≤ 0, bad parameters),
   GFN_ERR_OUT_OF_RANGE (ids outside the vocabulary, a prompt longer than n_positions),
   GFN_ERR_NUMERICAL (no token can be produced: everything masked). */
gfn_status gfn_context_sample(gfn_context *ctx, const int32_t *const *prompts, const int32_t *prompt_lengths,
                              int32_t n_prompts, int32_t n_per_prompt, const gfn_sampling_params *params,
                              gfn_samples **out);

typedef struct gfn_sample_info {
    uint32_t size;               /* set by the caller: sizeof(gfn_sample_info) */
    int32_t prompt_index;
    int32_t n_tokens;
    const int32_t *tokens;       /* borrowed from the gfn_samples */
    const float *token_logprobs; /* [n_tokens]: log q(token | prefix), untempered, with the logit adjustment */
    int32_t n_steps;             /* sampling steps (n_tokens, or n_tokens + 1 when a stop token was not kept) */
    int32_t n_stop_tokens;
    const float *stop_logprobs;  /* [n_steps][n_stop_tokens]: log q(stop_j | prefix before each step) */
    double logprob;              /* Σ log q over the steps */
    double score;                /* beam search: the ranking score; sampling: equal to logprob */
    int32_t finish_reason;       /* 0: stop token, 1: max tokens */
} gfn_sample_info;

gfn_status gfn_samples_count(const gfn_samples *samples, int32_t *out);

/* Describes sample `index` (0 ≤ index < count). Pointers stay valid until gfn_samples_free. */
gfn_status gfn_samples_get(const gfn_samples *samples, int32_t index, gfn_sample_info *out);

void gfn_samples_free(gfn_samples *samples);

typedef struct gfn_score_params {
    uint32_t size;                 /* sizeof(gfn_score_params) */
    const int32_t *stop_tokens;    /* stop probabilities after every prefix are reported for these */
    int32_t n_stop_tokens;
    gfn_logit_adjustment adjust;   /* applied to the continuation's distributions */
    const gfn_adapter *adapter;    /* NULL = the base model */
} gfn_score_params;

gfn_score_params gfn_score_default_params(void);

/* Scores n_pairs continuations given contexts (contexts[i] has ≥ 1 ids; continuations[i] may be empty).
   totals[i] = log p(continuation_i | context_i). If token_logprobs is not NULL it receives, concatenated over the
   pairs, log p(c_t | context, c_<t) (Σ continuation_lengths floats). If stop_logprobs is not NULL it receives,
   concatenated over the pairs, for every prefix length 0…len the log-probability of stopping there,
   log Σ_j p(stop_j | context, c_<i) (Σ (continuation_lengths + 1) floats; −INFINITY without stop tokens).
   Pairs that share a context run it once. */
gfn_status gfn_context_score(gfn_context *ctx, const int32_t *const *contexts, const int32_t *context_lengths,
                             const int32_t *const *continuations, const int32_t *continuation_lengths,
                             int32_t n_pairs, const gfn_score_params *params, double *totals,
                             float *token_logprobs, float *stop_logprobs);

typedef struct gfn_beam_params {
    uint32_t size;                 /* sizeof(gfn_beam_params) */
    int32_t num_beams;             /* default 4 */
    int32_t num_return;            /* 1…num_beams; default 1 */
    int32_t num_groups;            /* > 1: diverse beam search (num_beams must be a multiple); default 1 */
    float diversity_penalty;       /* Hamming diversity between groups; default 0 */
    float length_penalty;          /* score = Σ log p / length^length_penalty; default 1; 0 = plain sum */
    int32_t max_new_tokens;        /* default 32 */
    int32_t min_new_tokens;        /* default 0 */
    const int32_t *stop_tokens;
    int32_t n_stop_tokens;
    int32_t include_stop_token;    /* default 1 */
    gfn_logit_adjustment adjust;
    const gfn_adapter *adapter;    /* NULL = the base model */
} gfn_beam_params;

gfn_beam_params gfn_beam_default_params(void);

/* (Diverse) beam search from one prompt; the hypotheses come back best first in *out (score in
   gfn_sample_info.score, log-probability without penalties in .logprob, finish_reason 0 when the hypothesis
   ended with a stop token). */
gfn_status gfn_context_beam_search(gfn_context *ctx, const int32_t *prompt, int32_t prompt_length,
                                   const gfn_beam_params *params, gfn_samples **out);

#ifdef __cplusplus
}
#endif

#endif /* GFNLM_H */
