/*
 * gfnlm — GFlowNet fine-tuning and amortized posterior sampling for GPT-2 / GPT-J ONNX exports.
 *
 * The public contract of libgfnlm.so: each declaration's comment says what it does, who owns what, which threads
 * may call it and how it fails. docs/api.md has the rest (which function returns which error, the reasons behind
 * the conventions, parameter guides); docs/migration.md the ABI history; docs/performance-notes.md performance.
 *
 * Conventions (every function, unless its comment says otherwise)
 * - Errors: a function that can fail returns a gfn_status (GFN_OK = 0, negative = the kind of error), each one
 *   possibly GFN_ERR_INVALID_ARGUMENT (NULL / dead / foreign handle, NULL out-pointer, wrong struct size, negative
 *   count, non-finite or inconsistent parameter); gfn_last_error() has the thread's last message. On failure,
 *   out-parameters are untouched and the objects passed in are as before the call. Nothing aborts the host process.
 * - Handles are opaque pointers made by *_load / *_new and released by the matching *_free (NULL: a no-op). A freed
 *   handle, or a handle of another kind, is detected (GFN_ERR_INVALID_ARGUMENT).
 * - Parameter structs begin with `uint32_t size` (sizeof the struct; the *_default_params() functions set it) and
 *   grow only at their end; a size below a struct's first version or above what the library knows is refused.
 *   A struct points to the structs it uses (NULL: their defaults) instead of embedding them; a pointed-to
 *   struct is read, and its size checked, by the call that receives it, and must live until that call returns.
 * - Token ids are int32_t; text is UTF-8, NUL-terminated; arrays are pointer + length. Enumerated fields are
 *   int32_t holding a value of the named enum.
 * - Threads: a gfn_model and a gfn_tokenizer never change after loading and may be used by any number of threads
 *   at once; a gfn_batcher too; every other handle by one thread at a time (it may move between threads).
 * - Compute: a model computes on at most its n_threads threads (gfn_model_params), whatever the number of callers;
 *   passes through it take turns in arrival order (docs/api.md, "Compute budget").
 * - Lifetimes: every object made from a model (context, adapter, reward, trainer, batcher) holds a reference to it:
 *   gfn_model_free may come before or after freeing them. The freed model handle is dead from then on, and so is
 *   the tokenizer it lent (gfn_model_tokenizer). Trainers and batcher requests likewise keep their adapter alive.
 * - Only gfn_* symbols are exported, each declared with GFN_API. Warnings go to the log callback (gfn_log_set).
 */
#ifndef GFNLM_H
#define GFNLM_H

#include <stddef.h>
#include <stdint.h>

/* Pointer nullability (clang): every pointer says whether it may be NULL; other compilers see nothing. */
#if defined(__has_feature)
#  if __has_feature(nullability)
#    define GFN_HAS_NULLABILITY 1
#  endif
#endif
#ifndef GFN_HAS_NULLABILITY
#  define _Nullable
#  define _Nonnull
#endif

/* GFN_API marks the exports (default visibility; Windows: dllexport building gfnlm, else dllimport).
   GFN_DEPRECATED(message) marks what the next ABI version removes (using it warns with the message). */
#if defined(_WIN32)
#  if defined(GFNLM_BUILDING)
#    define GFN_API __declspec(dllexport)
#  else
#    define GFN_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define GFN_API __attribute__((visibility("default")))
#else
#  define GFN_API
#endif
#if defined(__GNUC__) || defined(__clang__)
#  define GFN_DEPRECATED(message) __attribute__((deprecated(message)))
#elif defined(_MSC_VER)
#  define GFN_DEPRECATED(message) __declspec(deprecated(message))
#else
#  define GFN_DEPRECATED(message)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions ---------------------------------------------------------------------------------------------------- */
#define GFN_VERSION_MAJOR 0
#define GFN_VERSION_MINOR 6
#define GFN_VERSION_PATCH 1
#define GFN_VERSION_STRING "0.6.1"
/* Incremented whenever a struct or signature of this header changes incompatibly (the soname is
   libgfnlm.so.<GFN_ABI_VERSION>). 2: see docs/migration.md. */
#define GFN_ABI_VERSION 2

/* The library's version string, e.g. "0.6.1". Static storage; never fails. */
GFN_API const char *_Nonnull gfn_version(void);
/* The library's GFN_ABI_VERSION. Compare it with the header's macro to detect a mismatched library. */
GFN_API int32_t gfn_abi_version(void);

/* ---- Status codes ------------------------------------------------------------------------------------------------ */
/* A gfn_status_code value, as int32_t (like every enumerated field) so that its width never depends on the compiler. */
typedef int32_t gfn_status;
typedef enum gfn_status_code {
    GFN_OK = 0,
    GFN_ERR_INVALID_ARGUMENT = -1,  /* NULL / dead handle or pointer, wrong struct size, negative count, bad values */
    GFN_ERR_IO = -2,                /* a file or directory could not be opened, read or written */
    GFN_ERR_FORMAT = -3,            /* a file is truncated, corrupt or not of the expected format */
    GFN_ERR_UNSUPPORTED = -4,       /* well-formed but unsupported: not GPT-2 / GPT-J, a fused operator, a data type */
    GFN_ERR_OUT_OF_RANGE = -5,      /* a token id, length or index outside its range (vocabulary, n_positions, …) */
    GFN_ERR_OUT_OF_MEMORY = -6,     /* an allocation failed, or a declared size exceeds a sane bound */
    GFN_ERR_NUMERICAL = -7,         /* NaN or infinity where a finite number is required */
    GFN_ERR_CALLBACK = -8,          /* a host callback reported an error */
    GFN_ERR_STATE = -9,             /* the object's state does not allow the call (e.g. an adapter of another model) */
    GFN_ERR_INTERNAL = -10,         /* a bug in gfnlm; please report it with the message */
    GFN_ERR_CANCELLED = -11,        /* a callback or a caller asked to stop */
    GFN_ERR_BUFFER_TOO_SMALL = -12, /* an output buffer is too small; the needed size went to the size out-parameter */
    GFN_ERR_BUSY = -13              /* a bounded queue (gfn_batcher) is full: retry later, or submit blocking */
} gfn_status_code;

/* Which function returns which: its comment, and docs/api.md ("Errors"). A non-finite gradient is no error. */
/* The message of the last failure on the calling thread ("" if none). The pointer stays valid until the next
   failing call on this thread. The message is not cleared by successful calls. */
GFN_API const char *_Nonnull gfn_last_error(void);
/* A constant name for a status code, e.g. "GFN_ERR_IO". Never NULL. */
GFN_API const char *_Nonnull gfn_status_name(gfn_status status);

/* ---- Logging ----------------------------------------------------------------------------------------------------- */
typedef enum gfn_log_level {
    GFN_LOG_DEBUG = 0, GFN_LOG_INFO = 1, GFN_LOG_WARN = 2, GFN_LOG_ERROR = 3
} gfn_log_level;
/* Receives the library's diagnostics: `level` is a gfn_log_level, `message` a NUL-terminated UTF-8 line without a
   trailing newline, valid only during the call. Called on whichever thread produced the message, possibly several
   at once; must not call into gfnlm. */
typedef void (*gfn_log_fn)(int32_t level, const char *_Nonnull message, void *_Nullable user_data);

/* Sets the process-wide log callback (fn NULL: the default, which writes GFN_LOG_WARN and above to stderr as
   "gfnlm: warning: …"; a function that ignores them silences the library). Errors are returned, not logged. Logged
   today: a CPU kernel disabled because its start-up self-check failed (GFN_LOG_WARN, once, at the first bf16 model
   load); the weight cache (GFN_LOG_INFO: used, written, stale; GFN_LOG_WARN: damaged, could not be written).
   Set it before loading models to see every message. Thread-safe; never fails. */
GFN_API void gfn_log_set(gfn_log_fn _Nullable fn, void *_Nullable user_data);
/* What the library runs on, as one line of NUL-terminated text (as llama.cpp's llama_print_system_info), e.g.
   "gfnlm 0.6.1 (ABI 2) | CPUs 2 | AVX2 = 1 | AVX512-BF16 = 0 | AVX-VNNI = 0 | AVX512-VNNI = 0 | bf16 products: AVX2
   | int8/4-bit products: AVX2 (many rows), AVX2 (few rows) | OpenBLAS ...": the CPU features the kernels dispatch
   on, the kernels in use now (after GFNLM_NO_* variables and the start-up self-checks, which this call runs if they
   have not run; a failed check also logs its warning), the default n_threads and the BLAS build. At most
   capacity−1 bytes; its length without the NUL in *n_bytes (the needed length, with GFN_ERR_BUFFER_TOO_SMALL, when
   capacity is too small; text may then be NULL). For logs and bug reports: the format may change. Thread-safe. */
GFN_API gfn_status gfn_system_info(char *_Nullable text, size_t capacity, size_t *_Nullable n_bytes);

/* ---- Tokenizer: GPT-2 byte-level BPE (also used by GPT-J) -------------------------------------------------------- */
typedef struct gfn_tokenizer gfn_tokenizer;
/* Loads a tokenizer from a directory holding tokenizer.json or vocab.json + merges.txt, a tokenizer.json, or a
   vocab.json with merges.txt beside it. Errors: GFN_ERR_IO (missing files), GFN_ERR_FORMAT (malformed files),
   GFN_ERR_UNSUPPORTED (another model type). *out is the caller's (gfn_tokenizer_free). Thread-safe. */
GFN_API gfn_status gfn_tokenizer_load(const char *_Nullable path, gfn_tokenizer *_Nullable *_Nullable out);
/* Releases a tokenizer. NULL is a no-op. A tokenizer borrowed from a model (gfn_model_tokenizer) must not be freed. */
GFN_API void gfn_tokenizer_free(gfn_tokenizer *_Nullable tokenizer);

/* Encodes UTF-8 text (allow_special != 0: "<|endoftext|>" becomes its id, as Hugging Face does) into up to
   `capacity` ids, their number in *n_ids. Too small a capacity: nothing written, *n_ids = the needed count,
   GFN_ERR_BUFFER_TOO_SMALL (ids may be NULL with capacity 0). Invalid UTF-8: GFN_ERR_INVALID_ARGUMENT. */
GFN_API gfn_status gfn_tokenizer_encode(const gfn_tokenizer *_Nullable tokenizer, const char *_Nullable text,
                                        int32_t allow_special, int32_t *_Nullable ids, int32_t capacity,
                                        int32_t *_Nullable n_ids);
/* Decodes ids to a NUL-terminated UTF-8 string (invalid byte sequences become U+FFFD, as in Hugging Face) of at
   most capacity−1 bytes, its length without the NUL in *n_bytes (the needed length, with GFN_ERR_BUFFER_TOO_SMALL,
   when capacity is too small). An id outside the vocabulary: GFN_ERR_OUT_OF_RANGE. */
GFN_API gfn_status gfn_tokenizer_decode(const gfn_tokenizer *_Nullable tokenizer, const int32_t *_Nullable ids,
                                        int32_t n_ids, char *_Nullable text, size_t capacity,
                                        size_t *_Nullable n_bytes);
/* Number of ids the tokenizer defines (50257 for GPT-2). */
GFN_API gfn_status gfn_tokenizer_vocab_size(const gfn_tokenizer *_Nullable tokenizer, int32_t *_Nullable out);
/* The end-of-text id (50256 for GPT-2), or −1 if the tokenizer has none. */
GFN_API gfn_status gfn_tokenizer_eos(const gfn_tokenizer *_Nullable tokenizer, int32_t *_Nullable out);

/* ---- Model ------------------------------------------------------------------------------------------------------- */
typedef struct gfn_model gfn_model;
/* gfn_model_params.weight_type: how the large matrices (linear maps, token embedding, head) are stored; everything
   else, and all arithmetic, stays fp32 (docs/api.md, "Models"). */
typedef enum gfn_weight_type {
    GFN_WEIGHTS_F32 = 0,  /* fp32 (the default), used in place from the memory-mapped file when 4-byte aligned */
    GFN_WEIGHTS_BF16 = 1, /* bf16, converted at load (half the memory; logits differ by bf16 rounding). Full-
                             parameter SFT and ONNX export need fp32 weights: GFN_ERR_UNSUPPORTED */
    GFN_WEIGHTS_INT8 = 2, /* int8 in blocks of 32 with an fp16 scale, quantized at load; a frozen base, as bf16 */
    GFN_WEIGHTS_Q4 = 3    /* 4-bit blocks for the linear maps (embedding / tied head 6-bit); docs/quantization.md */
} gfn_weight_type;
typedef struct gfn_model_params {
    uint32_t size;              /* sizeof(gfn_model_params); the first version's (without weight_type): fp32 */
    int32_t n_threads;          /* the model's compute budget (see "Compute" at the top); 0 = every CPU the process
                                   may run on (its affinity mask: taskset, a container's cpuset) */
    const char *_Nullable tokenizer_path; /* NULL: tokenizer files beside the model, if any; else this path */
    int32_t weight_type;        /* a gfn_weight_type (default GFN_WEIGHTS_F32); others: GFN_ERR_INVALID_ARGUMENT */
    int32_t batch_invariant;    /* 1 (default): a sample's results do not depend on what shares its batch or on the
                                   thread count; 0: the fastest product per batch size (docs/api.md, "Models"). A
                                   caller's smaller struct means 1 */
    int32_t reserved;           /* 0; tells this version's size apart from the previous one's (docs/api.md) */
    int32_t weight_cache;       /* a gfn_weight_cache_mode (default GFN_WEIGHT_CACHE_OFF; a smaller struct: off) */
    const char *_Nullable weight_cache_dir; /* NULL (default): cache files beside the .onnx; else in this folder */
    int32_t quantize_activations; /* GFN_WEIGHTS_INT8 / _Q4 only: 1 (default; a smaller struct: 1) the products
                                     quantize their activations to int8 per block of 32 and multiply integers, as
                                     llama.cpp does; 0 keeps them fp32 (only the weights are rounded; slower) */
} gfn_model_params;
/* gfn_model_params.weight_cache: a converted copy of the weights in their weight_type, read instead of the ONNX
   file (docs/formats.md, "Weight cache"). A cache that is stale (the source files changed) or damaged is never used:
   the model then loads from the ONNX file and the log callback says why. Cache problems are logged, not errors. */
typedef enum gfn_weight_cache_mode {
    GFN_WEIGHT_CACHE_OFF = 0,        /* load from the ONNX file */
    GFN_WEIGHT_CACHE_READ_WRITE = 1, /* load from a valid cache, else from the ONNX file and (re)write the cache */
    GFN_WEIGHT_CACHE_READ_ONLY = 2   /* load from a valid cache, else from the ONNX file; never write */
} gfn_weight_cache_mode;

/* Defaults: n_threads 0, tokenizer_path NULL, weight_type GFN_WEIGHTS_F32, batch_invariant 1, weight_cache
   GFN_WEIGHT_CACHE_OFF, weight_cache_dir NULL, quantize_activations 1. */
GFN_API gfn_model_params gfn_model_default_params(void);

/* Loads a GPT-2 or GPT-J model from an ONNX export (the .onnx file, or a directory holding one; external data from
   the model's directory, memory-mapped), recognised from its graph (docs/formats.md). params NULL: defaults.
   Errors: GFN_ERR_IO (missing or unreadable file), GFN_ERR_FORMAT (truncated / corrupt file, bad external data,
   inconsistent shapes), GFN_ERR_UNSUPPORTED (a valid ONNX model that is not a plain GPT-2 / GPT-J, e.g. a fused
   com.microsoft::Attention node), GFN_ERR_INVALID_ARGUMENT (e.g. an unknown weight_type or weight_cache, an empty
   weight_cache_dir), GFN_ERR_OUT_OF_MEMORY.
   *out is the caller's: gfn_model_free, before or after what is made from it. Immutable: any threads at once. */
GFN_API gfn_status gfn_model_load(const char *_Nullable path, const gfn_model_params *_Nullable params,
                                  gfn_model *_Nullable *_Nullable out);
/* Releases the caller's handle; objects made from the model keep working, the handle and its tokenizer are dead. */
GFN_API void gfn_model_free(gfn_model *_Nullable model);

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
/* Fills *out (whose size field the caller sets) with the model's hyper-parameters. Thread-safe. */
GFN_API gfn_status gfn_model_config_get(const gfn_model *_Nullable model, gfn_model_config *_Nullable out);

/* The tokenizer loaded with the model, borrowed (valid until gfn_model_free; never free it), or NULL when none was
   found. Thread-safe. */
GFN_API gfn_status gfn_model_tokenizer(const gfn_model *_Nullable model,
                                       const gfn_tokenizer *_Nullable *_Nullable out);

/* Logits of a batch under `adapter` (NULL = the base model): `ids` is [batch, seq_len] row-major;
   `attention_mask` (NULL = all ones) is [batch, seq_len] with 0 only as left padding (positions count from a row's
   first 1, as Hugging Face generate() does). Writes batch·seq_len·vocab_size floats ([batch, seq_len, vocab]) to
   `logits`, which holds `capacity` floats; padding positions hold meaningless values.
   Errors: GFN_ERR_INVALID_ARGUMENT (also a mask that is not left padding), GFN_ERR_OUT_OF_RANGE (ids, seq_len beyond
   n_positions), GFN_ERR_BUFFER_TOO_SMALL, GFN_ERR_STATE (an adapter of another model). Thread-safe (not while the
   adapter trains). */
typedef struct gfn_adapter gfn_adapter;
GFN_API gfn_status gfn_model_logits(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                    const int32_t *_Nullable ids, int32_t batch, int32_t seq_len,
                                    const int32_t *_Nullable attention_mask, float *_Nullable logits,
                                    size_t capacity);

/* ---- Adapters (LoRA) with PEFT's semantics and file layout ------------------------------------------------------- */
/* NULL wherever an adapter is accepted means the base model: the same weights serve with the adapter on (policy)
   and off (reference / reward model). */

typedef struct gfn_lora_params {
    uint32_t size;          /* sizeof(gfn_lora_params) */
    int32_t r;              /* rank; default 8 */
    float alpha;            /* scale = alpha / r (alpha / sqrt(r) with use_rslora); default 8 */
    float dropout;          /* dropout on the LoRA input during training; default 0 */
    const char *_Nullable targets; /* comma-separated module names matched as PEFT does, e.g. "c_attn,c_proj,c_fc"
                               (GPT-2), "q_proj,v_proj" (GPT-J), "lm_head"; NULL = PEFT's defaults. The modules
                               of each architecture: docs/api.md, "LoRA targets" */
    int32_t use_rslora;     /* default 0 */
    uint64_t seed;          /* A is Kaiming-uniform from this seed, B = 0 (the adapter starts as the base model) */
} gfn_lora_params;
GFN_API gfn_lora_params gfn_lora_default_params(void);

/* A new adapter for `model` (the caller's: gfn_adapter_free). Errors: GFN_ERR_INVALID_ARGUMENT (bad rank, targets
   that match no module: the message lists the modules). Shared freely for inference; one thread while it trains. */
GFN_API gfn_status gfn_adapter_new(const gfn_model *_Nullable model, const gfn_lora_params *_Nullable params,
                                   gfn_adapter *_Nullable *_Nullable out);
/* Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors), as gfn_adapter_new for the rest.
   Errors: GFN_ERR_IO, GFN_ERR_FORMAT, GFN_ERR_UNSUPPORTED (not LoRA), GFN_ERR_STATE (keys or shapes do not fit). */
GFN_API gfn_status gfn_adapter_load(const gfn_model *_Nullable model, const char *_Nullable directory,
                                    gfn_adapter *_Nullable *_Nullable out);
/* Saves in PEFT's layout (PeftModel.from_pretrained loads it), to a temporary directory then renamed. Errors:
   GFN_ERR_IO. Not while the adapter is trained on another thread. */
GFN_API gfn_status gfn_adapter_save(const gfn_adapter *_Nullable adapter, const char *_Nullable directory);
/* Number of trainable values (Σ of A and B sizes). */
GFN_API gfn_status gfn_adapter_parameter_count(const gfn_adapter *_Nullable adapter, int64_t *_Nullable out);
GFN_API void gfn_adapter_free(gfn_adapter *_Nullable adapter);

/* ---- Inference context: sampling, scoring, beam search ----------------------------------------------------------- */
/* Per-caller inference state (scratch memory, KV caches) on one model, which it keeps alive: one context per
   thread, any number per model. *out is the caller's (gfn_context_free). */
typedef struct gfn_context gfn_context;
GFN_API gfn_status gfn_context_new(const gfn_model *_Nullable model, gfn_context *_Nullable *_Nullable out);
GFN_API void gfn_context_free(gfn_context *_Nullable ctx);

/* Vocabulary constraints and biases that define the policy (reported log-probabilities included): ids outside
   allowed_tokens (when n_allowed_tokens > 0) get disallowed_penalty added to their logits (−INFINITY: a hard mask;
   e.g. −99: the reference's soft mask); stop tokens are always allowed; bias_values[i] is added to the logit of
   bias_tokens[i]. Parameter structs point to one (`adjust`; NULL = none), read by the call that takes them. Ids
   outside the vocabulary: GFN_ERR_OUT_OF_RANGE. docs/api.md has an example. */
typedef struct gfn_logit_adjustment {
    uint32_t size;              /* sizeof(gfn_logit_adjustment) */
    const int32_t *_Nullable allowed_tokens;
    int32_t n_allowed_tokens;   /* 0 = every id allowed */
    float disallowed_penalty;   /* ≤ 0; default −INFINITY */
    const int32_t *_Nullable bias_tokens;
    const float *_Nullable bias_values;
    int32_t n_bias;
} gfn_logit_adjustment;

/* No allowed list (every id allowed), disallowed_penalty −INFINITY, no bias. */
GFN_API gfn_logit_adjustment gfn_logit_default_adjustment(void);
typedef struct gfn_sampling_params {
    uint32_t size;                 /* sizeof(gfn_sampling_params) */
    int32_t max_new_tokens;        /* > 0; default 32 (reduced if the positions run out) */
    int32_t min_new_tokens;        /* stop tokens cannot be sampled before this many tokens; default 0 */
    float temperature;             /* sampling only (log-probs stay untempered); 0 = greedy; default 1 */
    int32_t top_k;                 /* 0 = off */
    float top_p;                   /* 1 = off */
    uint64_t seed;                 /* same seed ⇒ same tokens, whatever the thread count */
    const int32_t *_Nullable stop_tokens;    /* sampling one ends the sample */
    int32_t n_stop_tokens;
    int32_t include_stop_token;    /* 1: a sampled stop token is the last returned token (default 1) */
    const gfn_logit_adjustment *_Nullable adjust; /* NULL (default): none */
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_sampling_params;
GFN_API gfn_sampling_params gfn_sampling_default_params(void); /* defaults as documented on each field */

/* A set of generated sequences (samples or beam hypotheses). Owned by the caller; free with gfn_samples_free. */
typedef struct gfn_samples gfn_samples;
/* Samples n_per_prompt continuations of each of n_prompts prompts (prompts[i] has prompt_lengths[i] ≥ 1 ids); each
   prompt runs once and its samples share that cache. Sample k of prompt i is at index i·n_per_prompt + k, with the
   policy's own log-probabilities (gfn_sample_info). *out belongs to the caller (gfn_samples_free).
   Errors: GFN_ERR_OUT_OF_RANGE (ids outside the vocabulary, a prompt beyond n_positions), GFN_ERR_OUT_OF_MEMORY
   (before any work), GFN_ERR_STATE (an adapter of another model), GFN_ERR_NUMERICAL (everything masked). */
GFN_API gfn_status gfn_context_sample(gfn_context *_Nullable ctx, const int32_t *_Nullable const *_Nullable prompts,
                                      const int32_t *_Nullable prompt_lengths, int32_t n_prompts,
                                      int32_t n_per_prompt, const gfn_sampling_params *_Nullable params,
                                      gfn_samples *_Nullable *_Nullable out);

typedef struct gfn_sample_info {
    uint32_t size;               /* set by the caller: sizeof(gfn_sample_info) */
    int32_t prompt_index;
    int32_t n_tokens;
    const int32_t *_Nullable tokens;       /* borrowed from the gfn_samples */
    const float *_Nullable token_logprobs; /* [n_tokens]: log q(token | prefix), untempered, adjusted */
    int32_t n_steps;             /* sampling steps (n_tokens, or n_tokens + 1 when a stop token was not kept) */
    int32_t n_stop_tokens;
    const float *_Nullable stop_logprobs;  /* [n_steps][n_stop_tokens]: log q(stop_j | prefix before each step) */
    double logprob;              /* Σ log q over the steps */
    double score;                /* beam search: the ranking score; sampling: equal to logprob */
    int32_t finish_reason;       /* 0: stop token, 1: max tokens */
} gfn_sample_info;
GFN_API gfn_status gfn_samples_count(const gfn_samples *_Nullable samples, int32_t *_Nullable out);
/* Describes sample `index` (0 ≤ index < count, else GFN_ERR_OUT_OF_RANGE); its pointers live until gfn_samples_free. */
GFN_API gfn_status gfn_samples_get(const gfn_samples *_Nullable samples, int32_t index,
                                   gfn_sample_info *_Nullable out);
GFN_API void gfn_samples_free(gfn_samples *_Nullable samples);

typedef struct gfn_score_params {
    uint32_t size;                 /* sizeof(gfn_score_params) */
    const int32_t *_Nullable stop_tokens;    /* stop probabilities after every prefix are reported for these */
    int32_t n_stop_tokens;
    const gfn_logit_adjustment *_Nullable adjust; /* applied to the continuation's distributions; NULL: none */
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_score_params;
GFN_API gfn_score_params gfn_score_default_params(void);

/* Scores n_pairs continuations given contexts (≥ 1 id; a continuation may be empty): totals[i] = log p(continuation_i
   | context_i); token_logprobs (may be NULL) gets log p(c_t | context, c_<t) (Σ continuation_lengths floats),
   stop_logprobs (may be NULL) log Σ_j p(stop_j | context, c_<t) for every prefix length 0…len (Σ (lengths + 1)
   floats; −INFINITY without stop tokens), both concatenated over the pairs. A shared context runs once. Errors:
   GFN_ERR_OUT_OF_RANGE (ids outside the vocabulary, beyond n_positions), GFN_ERR_STATE (another model's adapter). */
GFN_API gfn_status gfn_context_score(gfn_context *_Nullable ctx, const int32_t *_Nullable const *_Nullable contexts,
                                     const int32_t *_Nullable context_lengths,
                                     const int32_t *_Nullable const *_Nullable continuations,
                                     const int32_t *_Nullable continuation_lengths, int32_t n_pairs,
                                     const gfn_score_params *_Nullable params, double *_Nullable totals,
                                     float *_Nullable token_logprobs, float *_Nullable stop_logprobs);

typedef struct gfn_beam_params {
    uint32_t size;                 /* sizeof(gfn_beam_params) */
    int32_t num_beams;             /* default 4 */
    int32_t num_return;            /* 1…num_beams; default 1 */
    int32_t num_groups;            /* > 1: diverse beam search (num_beams must be a multiple); default 1 */
    float diversity_penalty;       /* Hamming diversity between groups; default 0 */
    float length_penalty;          /* score = Σ log p / length^length_penalty; default 1; 0 = plain sum */
    int32_t max_new_tokens;        /* default 32 */
    int32_t min_new_tokens;        /* default 0 */
    const int32_t *_Nullable stop_tokens;
    int32_t n_stop_tokens;
    int32_t include_stop_token;    /* default 1 */
    const gfn_logit_adjustment *_Nullable adjust; /* NULL (default): none */
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_beam_params;
GFN_API gfn_beam_params gfn_beam_default_params(void);

/* (Diverse) beam search from one prompt: hypotheses best first in *out (.score the ranking score, .logprob without
   penalties, finish_reason 0 when ended by a stop token). Errors as gfn_context_sample. */
GFN_API gfn_status gfn_context_beam_search(gfn_context *_Nullable ctx, const int32_t *_Nullable prompt,
                                           int32_t prompt_length, const gfn_beam_params *_Nullable params,
                                           gfn_samples *_Nullable *_Nullable out);

/* Writes the model as an ONNX file for onnxruntime, the adapter (NULL: none) merged into the weights in their file's
   dtype (the original export rewritten; above 2 GiB one external `<file>.data`; temporary names, then renamed).
   Errors: GFN_ERR_UNSUPPORTED (not from ONNX; bf16 or quantized weights), GFN_ERR_STATE (another model's adapter,
   the source changed since loading), GFN_ERR_NUMERICAL, GFN_ERR_IO. Thread-safe (not while the adapter trains). */
GFN_API gfn_status gfn_model_export_onnx(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                         const char *_Nullable path);

/* ---- Serving: a batching scheduler for many concurrent requests on one model ------------------------------------- */
/* Continuous batching: requests (sampling, scoring, a GFlowNet policy's samples) from any threads run on one
   scheduler thread, samples joining and leaving the batch at token boundaries, under any mix of adapters
   (docs/api.md, "The batcher"). With a batch-invariant model a result is exactly what gfn_context_sample /
   gfn_context_score return. Each request finishes once: its result, its error, or GFN_ERR_CANCELLED. Every
   gfn_batcher_* / gfn_request_* function may be called from any thread at once (not after gfn_request_free). */
typedef struct gfn_batcher gfn_batcher;
typedef struct gfn_request gfn_request;
typedef struct gfn_batcher_params {
    uint32_t size;                 /* sizeof(gfn_batcher_params) */
    int32_t max_batch;             /* samples decoded together at most (a request's n_samples must fit); default 32 */
    int32_t max_queue;             /* requests waiting for admission at most; default 256 */
    int32_t max_prefill_tokens;    /* prompt tokens prefilled per scheduler turn at most; default 512 */
} gfn_batcher_params;
GFN_API gfn_batcher_params gfn_batcher_default_params(void);

/* Starts a batcher on `model`, which it keeps alive (params NULL: defaults; *out the caller's: gfn_batcher_free).
   Errors: GFN_ERR_INVALID_ARGUMENT (non-positive limits), GFN_ERR_OUT_OF_MEMORY, GFN_ERR_INTERNAL (no thread). */
GFN_API gfn_status gfn_batcher_new(const gfn_model *_Nullable model, const gfn_batcher_params *_Nullable params,
                                   gfn_batcher *_Nullable *_Nullable out);

/* Stops accepting requests and waits for the scheduler to stop; queued and running requests complete first
   (drain != 0) or end with GFN_ERR_CANCELLED at the next token (drain 0). Idempotent; not from a callback. */
GFN_API gfn_status gfn_batcher_shutdown(gfn_batcher *_Nullable batcher, int32_t drain);
/* gfn_batcher_shutdown(batcher, 0), then releases the batcher. Requests stay valid handles (free them). */
GFN_API void gfn_batcher_free(gfn_batcher *_Nullable batcher);

/* Streaming: called on the scheduler thread with each token a sample gains and its log q; non-zero cancels the
   request. Must return quickly (the batch waits) and must not call gfn_batcher_shutdown / gfn_batcher_free. */
typedef int32_t (*_Nullable gfn_token_fn)(void *_Nullable user_data, int32_t sample_index, int32_t token,
                                          float logprob);
/* Called once when the request finishes (any outcome), on the thread that finished it (usually the scheduler's),
   after its result can be read with gfn_request_samples / gfn_request_scores. Same restrictions as gfn_token_fn. */
typedef void (*_Nullable gfn_done_fn)(void *_Nullable user_data, gfn_request *_Nullable request);
typedef struct gfn_request_options {
    uint32_t size;                 /* sizeof(gfn_request_options) */
    int32_t block;                 /* 0 (default): a full queue returns GFN_ERR_BUSY at once; 1: wait for room */
    gfn_token_fn on_token;         /* may be NULL */
    gfn_done_fn on_done;           /* may be NULL */
    void *_Nullable user_data;               /* passed to both callbacks */
} gfn_request_options;
GFN_API gfn_request_options gfn_request_default_options(void);

/* Submits n_samples samples of one prompt with `params` (as gfn_context_sample; params->adapter may be freed while
   the request runs; options NULL: defaults; *out the caller's: gfn_request_free). Inputs are checked here.
   Errors: GFN_ERR_INVALID_ARGUMENT (also n_samples > max_batch), GFN_ERR_OUT_OF_RANGE, GFN_ERR_STATE (an adapter of
   another model; the batcher is shut down), GFN_ERR_BUSY (the queue is full and options->block is 0). */
GFN_API gfn_status gfn_batcher_submit_sample(gfn_batcher *_Nullable batcher, const int32_t *_Nullable prompt,
                                             int32_t n_prompt, int32_t n_samples,
                                             const gfn_sampling_params *_Nullable params,
                                             const gfn_request_options *_Nullable options,
                                             gfn_request *_Nullable *_Nullable out);
/* Submits a scoring request (arguments as gfn_context_score). Errors as gfn_batcher_submit_sample. */
GFN_API gfn_status gfn_batcher_submit_score(gfn_batcher *_Nullable batcher,
                                            const int32_t *_Nullable const *_Nullable contexts,
                                            const int32_t *_Nullable context_lengths,
                                            const int32_t *_Nullable const *_Nullable continuations,
                                            const int32_t *_Nullable continuation_lengths, int32_t n_pairs,
                                            const gfn_score_params *_Nullable params,
                                            const gfn_request_options *_Nullable options,
                                            gfn_request *_Nullable *_Nullable out);

typedef struct gfn_gflownet gfn_gflownet;
/* Amortized inference through the batcher: `count` trajectories Z ~ q(·|X) from a GFlowNet trainer's policy (its
   adapter, ⊤ as the stop token, length limits, vocabulary adjustment) at `temperature` with `seed`; token_logprobs
   are log q per action (⊤ included when sampled), logprob their sum log q(Z | X), untempered. Do not train the
   trainer while the request runs. Errors as gfn_batcher_submit_sample; GFN_ERR_UNSUPPORTED with the calculator. */
GFN_API gfn_status gfn_batcher_submit_policy(gfn_batcher *_Nullable batcher, const gfn_gflownet *_Nullable trainer,
                                             const int32_t *_Nullable x, int32_t n_x, int32_t count,
                                             float temperature, uint64_t seed,
                                             const gfn_request_options *_Nullable options,
                                             gfn_request *_Nullable *_Nullable out);

/* Waits up to timeout_ms milliseconds (−1: no limit, 0: poll) for the request to finish; *finished (may be NULL)
   receives 1 when it has. Returns GFN_OK whether or not it finished. */
GFN_API gfn_status gfn_request_wait(gfn_request *_Nullable request, int32_t timeout_ms, int32_t *_Nullable finished);
/* Asks the request to stop: it ends with GFN_ERR_CANCELLED at the next token (at once while queued, not if done). */
GFN_API gfn_status gfn_request_cancel(gfn_request *_Nullable request);
/* The samples of a finished sampling or policy request (a new gfn_samples, the caller's). While it runs:
   GFN_ERR_STATE; a request that failed or was cancelled returns its error (GFN_ERR_CANCELLED, …) and message. */
GFN_API gfn_status gfn_request_samples(const gfn_request *_Nullable request, gfn_samples *_Nullable *_Nullable out);
/* The results of a finished scoring request, as gfn_context_score writes them. Errors as gfn_request_samples. */
GFN_API gfn_status gfn_request_scores(const gfn_request *_Nullable request, double *_Nullable totals,
                                      float *_Nullable token_logprobs, float *_Nullable stop_logprobs);

/* Releases a request; a request still running is cancelled, and its callbacks are not called after this returns
   (unless called from inside one of them). */
GFN_API void gfn_request_free(gfn_request *_Nullable request);

typedef struct gfn_batcher_stats {
    uint32_t size;                 /* set by the caller */
    int32_t queued;                /* requests waiting for admission */
    int32_t active_requests;       /* sampling requests in the decoding batch */
    int32_t active_rows;           /* samples in the decoding batch */
    int64_t submitted, completed, failed, cancelled, rejected;   /* requests since the start */
    int64_t tokens;                /* tokens generated */
    int64_t decode_steps;          /* decoding passes */
} gfn_batcher_stats;
GFN_API gfn_status gfn_batcher_stats_get(const gfn_batcher *_Nullable batcher, gfn_batcher_stats *_Nullable out);

/* ---- Supervised fine-tuning: maximise log p(target | context), the context masked out --------------------------- */
typedef struct gfn_sft gfn_sft;
typedef struct gfn_train_params {
    uint32_t size;            /* sizeof(gfn_train_params) */
    double lr;                /* default 1e-4 */
    double beta1, beta2;      /* default 0.9, 0.999 */
    double eps;               /* default 1e-8 */
    double weight_decay;      /* decoupled (AdamW, PyTorch semantics); default 0.01 */
    int32_t warmup_steps;     /* linear warm-up; the first step uses lr·0 when > 0 (LambdaLR); default 0 */
    int32_t total_steps;      /* > 0: linear decay to 0 at this step after the warm-up; 0: constant; default 0 */
    int32_t cosine;           /* 1: cosine decay instead of linear (needs total_steps); default 0 */
    double max_grad_norm;     /* > 0: clip the global gradient norm; default 0 (off) */
} gfn_train_params;
GFN_API gfn_train_params gfn_train_default_params(void);

typedef struct gfn_sft_stats {
    uint32_t size;            /* set by the caller */
    double loss;              /* mean negative log-likelihood per target token */
    double perplexity;
    int32_t tokens;
    int32_t step;             /* optimiser steps applied so far */
    double grad_norm;
    double learning_rate;
    int32_t applied;          /* 0 when the step was skipped (non-finite loss or gradient; parameters unchanged) */
} gfn_sft_stats;

/* A trainer for `adapter` (LoRA: only A and B train, the model's weights stay shared) or, with adapter NULL, for
   every weight of a private copy of the model (small models; GFN_ERR_UNSUPPORTED with bf16 or quantized weights).
   params NULL: defaults. GFN_ERR_STATE: an adapter of another model. One thread at a time; gfn_sft_free. */
GFN_API gfn_status gfn_sft_new(const gfn_model *_Nullable model, gfn_adapter *_Nullable adapter,
                               const gfn_train_params *_Nullable params, gfn_sft *_Nullable *_Nullable out);

/* One optimiser step on n (context, target) pairs of any lengths (contexts ≥ 1 token, targets ≥ 1 token); *out
   (may be NULL) gets the stats. Errors: GFN_ERR_OUT_OF_RANGE (ids, lengths); distributed: GFN_ERR_CALLBACK,
   GFN_ERR_STATE. A non-finite loss or gradient skips the step (applied = 0). */
GFN_API gfn_status gfn_sft_step(gfn_sft *_Nullable sft, const int32_t *_Nullable const *_Nullable contexts,
                                const int32_t *_Nullable context_lengths,
                                const int32_t *_Nullable const *_Nullable targets,
                                const int32_t *_Nullable target_lengths, int32_t n, gfn_sft_stats *_Nullable out);
/* The loss on a batch without training (arguments and errors as gfn_sft_step). */
GFN_API gfn_status gfn_sft_evaluate(gfn_sft *_Nullable sft, const int32_t *_Nullable const *_Nullable contexts,
                                    const int32_t *_Nullable context_lengths,
                                    const int32_t *_Nullable const *_Nullable targets,
                                    const int32_t *_Nullable target_lengths, int32_t n, gfn_sft_stats *_Nullable out);

/* Restricts the loss of gfn_sft_step / gfn_sft_evaluate to the n candidate ids (copied): −log p(t) + log Σ_c p(c),
   e.g. a classifier's two label tokens (the reference's two-way label cross-entropy); n = 0 (ids may be NULL):
   the full vocabulary again. Errors: GFN_ERR_OUT_OF_RANGE (an id outside the vocabulary), GFN_ERR_INVALID_ARGUMENT
   (duplicates, n = 1, n < 0; and later a target token that is not a candidate). Threads as gfn_sft_step. */
GFN_API gfn_status gfn_sft_set_label_candidates(gfn_sft *_Nullable sft, const int32_t *_Nullable ids, int32_t n);
/* For full-parameter training: a new model handle (the caller's) holding a copy of the current weights. */
GFN_API gfn_status gfn_sft_snapshot_model(const gfn_sft *_Nullable sft, gfn_model *_Nullable *_Nullable out);
/* Full-parameter training: writes the current weights as an ONNX file (as gfn_model_export_onnx, same errors). */
GFN_API gfn_status gfn_sft_export_onnx(const gfn_sft *_Nullable sft, const char *_Nullable path);

/* Training-state checkpoints (adapter or weights, optimizer moments, step, schedule) in a directory written
   atomically. Errors: GFN_ERR_IO; load also GFN_ERR_FORMAT, GFN_ERR_UNSUPPORTED (unknown version), GFN_ERR_STATE
   (a checkpoint of another run); a failed load changes nothing. */
GFN_API gfn_status gfn_sft_save(const gfn_sft *_Nullable sft, const char *_Nullable directory);
GFN_API gfn_status gfn_sft_load(gfn_sft *_Nullable sft, const char *_Nullable directory);
GFN_API void gfn_sft_free(gfn_sft *_Nullable sft);

/* ---- GFlowNet fine-tuning and amortized sampling (the paper's method) ------------------------------------------- */
/* A reward: log R(s_t ⊤) for every prefix state of a trajectory. */
typedef struct gfn_reward gfn_reward;
/* A host reward: writes one untempered log R per state (the token sequences after prompt `prompt_index`'s X: every
   prefix of a micro-batch's trajectories, or only complete ones when terminal_only) to log_rewards. Non-zero (or a
   non-finite log R) fails the step, which changes nothing (GFN_ERR_CALLBACK / GFN_ERR_NUMERICAL). Called on the
   thread that steps the trainer; must not call into it. */
typedef int32_t (*_Nullable gfn_reward_fn)(void *_Nullable user_data, int32_t prompt_index,
                                           const int32_t *_Nullable const *_Nullable states,
                                           const int32_t *_Nullable state_lengths, int32_t n_states,
                                           double *_Nullable log_rewards);
/* A reward calling `fn` with user_data (which must outlive it); the caller's (gfn_reward_free; trainers keep it). */
GFN_API gfn_status gfn_reward_new_callback(gfn_reward_fn fn, void *_Nullable user_data, int32_t terminal_only,
                                           gfn_reward *_Nullable *_Nullable out);
/* As gfn_reward_fn, also told the step's reward temperature T_R (1 in gfn_reward_evaluate); values stay untempered
   (a term wanted after tempering, e.g. the subjectivity task's −50, is returned multiplied by T_R). */
typedef int32_t (*_Nullable gfn_reward_temperature_fn)(void *_Nullable user_data, int32_t prompt_index,
                                                       double reward_temperature,
                                                       const int32_t *_Nullable const *_Nullable states,
                                                       const int32_t *_Nullable state_lengths, int32_t n_states,
                                                       double *_Nullable log_rewards);
/* As gfn_reward_new_callback, for a gfn_reward_temperature_fn. */
GFN_API gfn_status gfn_reward_new_callback_temperature(gfn_reward_temperature_fn fn, void *_Nullable user_data,
                                                       int32_t terminal_only, gfn_reward *_Nullable *_Nullable out);
/* log p_LM(Z Y | demos C), adapter off (C: the prompt's reward context or X; Y its observation); `z_adjust` (NULL:
   none) penalises Z positions only (e.g. −99); states shorter than min_length get −99. Demos run once, Y after
   every prefix from its cache. Errors: GFN_ERR_OUT_OF_RANGE (demo ids). */
GFN_API gfn_status gfn_reward_new_lm_likelihood(const gfn_model *_Nullable model, const int32_t *_Nullable demos,
                                                int32_t n_demos, const gfn_logit_adjustment *_Nullable z_adjust,
                                                int32_t min_length, gfn_reward *_Nullable *_Nullable out);
/* log p_LM(z_1..t ⊤ | X) for every prefix from one pass (the next-sentence reward); `adjust` (NULL: none) is its
   own vocabulary penalty (the reference: −50); states shorter than min_length get −99. Errors: GFN_ERR_OUT_OF_RANGE. */
GFN_API gfn_status gfn_reward_new_next_sentence(const gfn_model *_Nullable model, int32_t termination,
                                                const gfn_logit_adjustment *_Nullable adjust, int32_t min_length,
                                                gfn_reward *_Nullable *_Nullable out);
/* The random-integer task's rule reward (paper §2): first token one of number_tokens +8 else −8, every later
   non-⊤ token at position m −8m, the empty sequence −8. Errors: GFN_ERR_INVALID_ARGUMENT (no number tokens). */
GFN_API gfn_status gfn_reward_new_random_integer(const int32_t *_Nullable number_tokens, int32_t n_number_tokens,
                                                 int32_t termination, gfn_reward *_Nullable *_Nullable out);

/* Untempered log R of each prefix state of one action sequence (n_actions + 1 values) — for checks and metrics.
   Errors: GFN_ERR_OUT_OF_RANGE (ids, lengths), GFN_ERR_CALLBACK, GFN_ERR_NUMERICAL (a non-finite log R). */
GFN_API gfn_status gfn_reward_evaluate(gfn_reward *_Nullable reward, const int32_t *_Nullable x, int32_t n_x,
                                       const int32_t *_Nullable y, int32_t n_y, const int32_t *_Nullable actions,
                                       int32_t n_actions, double *_Nullable log_rewards);
GFN_API void gfn_reward_free(gfn_reward *_Nullable reward);

/* One training prompt: the policy's conditioning X, an optional observation Y (scored by the reward), an optional
   reward context (what the reward reads instead of X), and a sampling weight. */
typedef struct gfn_prompt {
    uint32_t size;                 /* sizeof(gfn_prompt), the same in every element (the array's stride) */
    const int32_t *_Nullable x;
    int32_t n_x;
    const int32_t *_Nullable y;              /* NULL / 0: none */
    int32_t n_y;
    const int32_t *_Nullable reward_context; /* NULL / 0: X */
    int32_t n_reward_context;
    double weight;                 /* relative; 0 is treated as 1 */
} gfn_prompt;
/* SubTB (the paper's modified sub-trajectory balance), TB (learned log Z per prompt), DB (modified detailed
   balance), REINFORCE and PPO (reward-maximising baselines, not GFlowNets; on-policy only; PPO as trl's, one
   process, batch_size ≥ 2). docs/api.md has more. */
typedef enum gfn_objective {
    GFN_OBJECTIVE_SUBTB = 0, GFN_OBJECTIVE_TB = 1, GFN_OBJECTIVE_DB = 2, GFN_OBJECTIVE_REINFORCE = 3,
    GFN_OBJECTIVE_PPO = 4
} gfn_objective;
/* What log q(⊤|s) counts at max_length: 0 (forced stop) or the policy's real value (next sentence). */
typedef enum gfn_layout { GFN_LAYOUT_FORCED_STOP = 0, GFN_LAYOUT_NEXT_SENTENCE = 1 } gfn_layout;
/* The arithmetic tool of the reference's arithmetic task (needs the model's tokenizer): off, as the reference
   behaves (including its known quirk, for comparisons), or fixed. */
typedef enum gfn_calculator {
    GFN_CALCULATOR_OFF = 0, GFN_CALCULATOR_REFERENCE = 1, GFN_CALCULATOR_FIXED = 2
} gfn_calculator;

typedef struct gfn_gflownet_params {
    uint32_t size;                 /* sizeof(gfn_gflownet_params) */
    int32_t objective;             /* a gfn_objective; default GFN_OBJECTIVE_SUBTB */
    double subtb_lambda;           /* default 1 */
    int32_t strict_mask;           /* main.py's `cumsum > 1` mask (reweights terminal pairs); default 0 */
    int32_t layout;                /* a gfn_layout; default GFN_LAYOUT_FORCED_STOP */
    int32_t termination;           /* the ⊤ token (e.g. 50256, or 13 "." for sentences); required */
    int32_t min_length;            /* ⊤ not sampled before this many actions, and the target is R restricted to
                                      |Z| ≥ min_length (docs/method.md, "min_length"); default 0 */
    int32_t max_length;            /* actions per trajectory; default 16 */
    const gfn_logit_adjustment *_Nullable adjust; /* the policy's vocabulary mask (⊤ always allowed); NULL: none */
    int32_t calculator;            /* a gfn_calculator; default GFN_CALCULATOR_OFF */
    int32_t batch_size;            /* trajectories per micro-batch (one prompt each); default 8 */
    int32_t grad_accumulation;     /* micro-batches per step; default 1 */
    int32_t average_accumulation;  /* 0: gradients summed over micro-batches (main.py); 1: averaged */
    const gfn_train_params *_Nullable train; /* the adapter's optimiser and schedule; NULL:
                                      gfn_train_default_params() with warmup_steps 20 */
    double logz_lr;                /* TB's learned log Z (one per prompt): learning rate, default 1 */
    double logz_init;              /* default 0 */
    double reward_temp_start;      /* T_R(step) = start + (end − start)·min(1, step/horizon); default 1 → 1 */
    double reward_temp_end;
    int32_t reward_temp_horizon;
    double p_on_policy;            /* behaviour per micro-batch: on-policy, replay, else tempered; default .25/.25 */
    double p_replay;
    double temp_low, temp_high;    /* tempered behaviour τ ~ U[low, high]; default 0.5, 2 */
    int32_t buffer_capacity;       /* per (X, Y); default 50 */
    double buffer_tolerance;       /* near-duplicate edit distance < tol·(len_a + len_b); default 0.25 */
    int32_t buffer_prioritized;    /* sample ∝ exp(log R) (1, default) or uniformly (0) */
    int32_t lora_dropout;          /* 1: the adapter's dropout in the traced training pass; default 0 */
    uint64_t seed;
    int32_t pack_weights;          /* 1 (default): the trainers' passes use a copy of the fp32 weights packed for
                                      OpenBLAS's kernel, kept with the model (docs/api.md); 0: off */
    double temp_low_end, temp_high_end; /* the tempered range at step temp_horizon (linear from [temp_low,
                                      temp_high]); default 1, 1 */
    int32_t temp_horizon;          /* 0 (default): no annealing */
    int32_t root_flow;             /* SubTB / DB with min_length ≥ 1, the root's flow: 0 (default, the reference)
                                      R(X⊤)/q(⊤|X); 1 a learned log Z per prompt (docs/api.md) */
    /* PPO (GFN_OBJECTIVE_PPO). Each learning-rate schedule step is one of the ppo_epochs updates. */
    double ppo_clip;               /* ε of the clipped surrogate; default 0.2 */
    int32_t ppo_epochs;            /* optimiser updates over each sampled batch; default 4 */
    double kl_coef;                /* initial β of the penalty β·KL(q‖p_base) in the return; default 0.2 */
    double kl_target;              /* the KL that trl's adaptive controller steers β to (docs/api.md); 0: β fixed; 6 */
    double kl_horizon;             /* default 10000 */
} gfn_gflownet_params;
GFN_API gfn_gflownet_params gfn_gflownet_default_params(void);

typedef struct gfn_step_stats {
    uint32_t size;                 /* set by the caller */
    int32_t step;                  /* index of this step */
    int32_t applied;               /* 0 when the optimiser skipped the update (non-finite gradient) */
    double loss;
    double mean_log_r, max_log_r;  /* untempered terminal log R of the step's trajectories */
    double mean_log_q;             /* log q of the complete trajectories */
    double mean_length;
    double fraction_unique;
    double var_log_r_minus_log_q;  /* Var(log R/T_R − log q): 0 for a perfect sampler */
    double reward_temperature;
    double learning_rate;
    double grad_norm;
    double log_z;                  /* TB: mean learned log Z; otherwise mean(log R/T_R − log q) */
    int32_t on_policy_batches, tempered_batches, replay_batches;
    int32_t trajectories;
} gfn_step_stats;
/* Called after every step on the training thread; return 0 to stop (gfn_gflownet_train then returns
   GFN_ERR_CANCELLED). Must not call into the same trainer. */
typedef int32_t (*_Nullable gfn_progress_fn)(void *_Nullable user_data, const gfn_step_stats *_Nullable stats);

/* A GFlowNet trainer for `adapter` on `model` with `reward` over n_prompts prompts; prompts and params (with what
   they point to) are copied. The trainer keeps the model, adapter and reward alive; use it from one thread at a
   time; gfn_gflownet_free. Errors: GFN_ERR_INVALID_ARGUMENT (bad parameters, REINFORCE off-policy),
   GFN_ERR_OUT_OF_RANGE (ids, lengths), GFN_ERR_STATE (an adapter of another model), GFN_ERR_OUT_OF_MEMORY. */
GFN_API gfn_status gfn_gflownet_new(const gfn_model *_Nullable model, gfn_adapter *_Nullable adapter,
                                    gfn_reward *_Nullable reward, const gfn_prompt *_Nullable prompts,
                                    int32_t n_prompts, const gfn_gflownet_params *_Nullable params,
                                    gfn_gflownet *_Nullable *_Nullable out);
/* Sets the progress callback (fn NULL: none); user_data must outlive its use. */
GFN_API gfn_status gfn_gflownet_set_progress(gfn_gflownet *_Nullable trainer, gfn_progress_fn fn,
                                             void *_Nullable user_data);
/* One optimiser step, its stats in *out (may be NULL). Errors: GFN_ERR_CALLBACK, GFN_ERR_NUMERICAL (the reward),
   distributed also GFN_ERR_STATE; then adapter, optimizer, replay buffer, RNG and step count are as before. */
GFN_API gfn_status gfn_gflownet_step(gfn_gflownet *_Nullable trainer, gfn_step_stats *_Nullable out);
/* `steps` steps, calling the progress callback after each; *last (may be NULL) gets the last step's stats.
   Errors as gfn_gflownet_step, and GFN_ERR_CANCELLED when the callback returned 0 (the steps done stay done). */
GFN_API gfn_status gfn_gflownet_train(gfn_gflownet *_Nullable trainer, int32_t steps, gfn_step_stats *_Nullable last);

/* Amortized inference: `count` trajectories Z ~ q(·|X) from the trained adapter at `temperature` (1 = the trained
   sampler), with the training limits, masks and calculator; *out is the caller's (gfn_samples_free). tokens: the
   state after X (tool output included, ⊤ not); n_steps: actions; finish_reason 0: ⊤ was drawn. token_logprobs and
   logprob are the sampler's log q at temperature 1 whatever `temperature`; logprob adds the stop's log q(⊤|s_n), so
   that log R(Z)/T_R − logprob is log Z for every Z at the optimum (docs/api.md, "GFlowNet training", has the
   details). Errors: GFN_ERR_OUT_OF_RANGE, GFN_ERR_OUT_OF_MEMORY (before any work), GFN_ERR_NUMERICAL (all masked). */
GFN_API gfn_status gfn_gflownet_sample(gfn_gflownet *_Nullable trainer, const int32_t *_Nullable x, int32_t n_x,
                                       int32_t count, float temperature, uint64_t seed,
                                       gfn_samples *_Nullable *_Nullable out);

/* Sampling with the rollout's rules (termination, length limits, layout, vocabulary adjustment, calculator, as in
   gfn_gflownet_params) but without a trainer, e.g. for a base model or an SFT adapter. */
typedef struct gfn_rollout_params {
    uint32_t size;                 /* sizeof(gfn_rollout_params) */
    int32_t termination;           /* the ⊤ token; required */
    int32_t min_length;            /* default 0 */
    int32_t max_length;            /* default 16 */
    int32_t layout;                /* a gfn_layout (what logprob counts at max_length); default forced stop */
    const gfn_logit_adjustment *_Nullable adjust; /* ⊤ always allowed; NULL (default): none */
    int32_t calculator;            /* a gfn_calculator; default GFN_CALCULATOR_OFF */
} gfn_rollout_params;
GFN_API gfn_rollout_params gfn_rollout_default_params(void);

/* `count` trajectories after X from `adapter` (NULL = the base model) at `temperature`, reported as
   gfn_gflownet_sample reports them, and the same samples for the same seed, model, adapter and params. Thread
   safety: the model and adapter may be shared with calls that only read them (not while the adapter trains). Errors:
   GFN_ERR_INVALID_ARGUMENT (params NULL or bad, count ≤ 0, a bad temperature, the calculator without a tokenizer),
   GFN_ERR_OUT_OF_RANGE (ids outside the vocabulary, prompt + max_length beyond n_positions), GFN_ERR_STATE
   (another model's adapter), GFN_ERR_OUT_OF_MEMORY (before any work), GFN_ERR_NUMERICAL (every action masked). */
GFN_API gfn_status gfn_rollout_sample(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                      const gfn_rollout_params *_Nullable params, const int32_t *_Nullable x,
                                      int32_t n_x, int32_t count, float temperature, uint64_t seed,
                                      gfn_samples *_Nullable *_Nullable out);

/* Adds demonstrations (action sequences) with their rewards to prompt `prompt_index`'s replay buffer; one longer
   than max_length (GFN_ERR_OUT_OF_RANGE) or shorter than min_length (GFN_ERR_INVALID_ARGUMENT) adds nothing. Errors
   also GFN_ERR_CALLBACK, GFN_ERR_NUMERICAL (the reward). */
GFN_API gfn_status gfn_gflownet_seed_buffer(gfn_gflownet *_Nullable trainer, int32_t prompt_index,
                                            const int32_t *_Nullable const *_Nullable actions,
                                            const int32_t *_Nullable lengths, int32_t n);

/* Exact evaluation over a small space: every sequence of up to max_length actions over `vocabulary`
   (≤ 100,000 sequences), the policy's exact probability of each against the target R^(1/T_R)/Σ. */
typedef struct gfn_exact_result {
    uint32_t size;                 /* set by the caller */
    int32_t n_sequences;
    double kl_target_q;            /* KL(target ‖ q) */
    double kl_q_target;            /* KL(q ‖ target), q renormalised on the space */
    double total_variation;
    double log_z;                  /* log Σ R over the space */
    double mass_q;                 /* Σ q over the space (1 unless the policy can leave it) */
} gfn_exact_result;
/* Errors: GFN_ERR_OUT_OF_RANGE (prompt index, more than 100,000 sequences), GFN_ERR_CALLBACK, GFN_ERR_NUMERICAL. */
GFN_API gfn_status gfn_gflownet_exact(gfn_gflownet *_Nullable trainer, int32_t prompt_index,
                                      const int32_t *_Nullable vocabulary, int32_t n_vocabulary,
                                      gfn_exact_result *_Nullable out);

/* Checkpoints (adapter in PEFT's layout, log Z, optimizer, step, schedules, RNG, replay buffer), written atomically;
   loading into a trainer made alike continues the run exactly. Errors as gfn_sft_save / gfn_sft_load. */
GFN_API gfn_status gfn_gflownet_save(const gfn_gflownet *_Nullable trainer, const char *_Nullable directory);
GFN_API gfn_status gfn_gflownet_load(gfn_gflownet *_Nullable trainer, const char *_Nullable directory);
GFN_API void gfn_gflownet_free(gfn_gflownet *_Nullable trainer);

/* ---- Data-parallel training across processes and hosts ----------------------------------------------------------- */
/* The host brings the all-reduce as a callback; K replicas train as one process with K times the batch. Ranks'
   configurations are checked at the first step (and after a load), replicas' agreement every step (GFN_ERR_STATE,
   nothing changed); only rank 0 writes checkpoints (elsewhere save returns GFN_OK). A failing callback fails the
   step (GFN_ERR_CALLBACK) and leaves the ranks out of step: stop. Design: docs/distributed.md. */
/* Replace buffer[0..count) in place with the element-wise mean over all ranks (the same bytes on every rank);
   return 0 on success, non-zero on failure (the step then fails with GFN_ERR_CALLBACK). Called on the thread that
   steps the trainer, the same number of times with the same counts on every rank; must not call into the trainer;
   must bound its own wait on the other ranks (docs/distributed.md, faults). */
typedef int32_t (*_Nullable gfn_allreduce_fn)(void *_Nullable user_data, float *_Nullable buffer, int64_t count);
typedef struct gfn_distributed_params {
    uint32_t size;                 /* sizeof(gfn_distributed_params) */
    int32_t rank;                  /* 0 ..< world_size */
    int32_t world_size;            /* 1 … 16384; default 1 */
    gfn_allreduce_fn allreduce;    /* required when world_size > 1; NULL with world_size 1 */
    void *_Nullable user_data;               /* passed to allreduce (e.g. an MPI communicator) */
    int32_t exchange_replay;       /* 1: each step every rank's best fresh trajectory joins all ranks' replay
                                      buffers ((12 + 5·max_length)·world_size more floats); 0 (default): per rank */
} gfn_distributed_params;
GFN_API gfn_distributed_params gfn_distributed_default_params(void); /* rank 0, world 1, no callback, no exchange */

/* Makes the trainer one of world_size replicas (params NULL, or world_size 1 without a callback: one process again;
   world_size 1 with a callback: a world of one on the distributed path). Call before the first step on every rank;
   callback and user_data must outlive their use. Not thread-safe with the trainer's other calls. */
GFN_API gfn_status gfn_gflownet_set_distributed(gfn_gflownet *_Nullable trainer,
                                                const gfn_distributed_params *_Nullable params);
GFN_API gfn_status gfn_sft_set_distributed(gfn_sft *_Nullable sft, const gfn_distributed_params *_Nullable params);

#ifdef __cplusplus
}
#endif

#endif /* GFNLM_H */
