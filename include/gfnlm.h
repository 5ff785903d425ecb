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
 *   threads at once. Every other handle may be used by one thread at a time (it may move between threads), except
 *   gfn_batcher, which any number of threads may use at once.
 * - Compute budget: each model computes on at most its n_threads threads (gfn_model_params), however many host
 *   threads call in. Passes through the model (a prompt, a decoding step, a backward pass) take turns in arrival
 *   order, each using all n_threads; so concurrent callers share the budget instead of multiplying threads. To
 *   merge concurrent requests into shared decoding batches, use a gfn_batcher. gfnlm runs OpenBLAS
 *   single-threaded (openblas_set_num_threads(1), process-wide, at the first model load) and parallelises
 *   products itself.
 * - Lifetimes: every object made from a model (context, adapter, reward, trainer, batcher) holds a reference to
 *   it, so gfn_model_free may come before or after freeing them: the model's memory is released when the model
 *   handle and the last object made from it are freed. Once gfn_model_free has been called, the handle itself is
 *   dead (calls that take it return GFN_ERR_INVALID_ARGUMENT) and so is the tokenizer it lent (gfn_model_tokenizer).
 *   The same holds for an adapter: the trainers and batcher requests that use it keep it alive.
 * - Only symbols that begin with gfn_ are exported; each is declared below with GFN_API.
 * - Warnings (e.g. a CPU kernel disabled at start-up) go through the log callback (gfn_log_set).
 * - Performance notes and measurements live in docs/performance-notes.md, not here; the ABI history and how to
 *   move between versions in docs/migration.md.
 */
#ifndef GFNLM_H
#define GFNLM_H

#include <stddef.h>
#include <stdint.h>

/* Pointer nullability (clang): every pointer this header declares says whether it may be NULL. Compilers without
   the qualifiers (gcc) see nothing. */
#if defined(__has_feature)
#  if __has_feature(nullability)
#    define GFN_HAS_NULLABILITY 1
#  endif
#endif
#ifndef GFN_HAS_NULLABILITY
#  define _Nullable
#  define _Nonnull
#endif

/* GFN_API marks the library's exports (default visibility; on Windows dllexport while building gfnlm, dllimport
   otherwise). GFN_DEPRECATED(message) marks a declaration that will be removed at the next ABI version; using it
   warns at compile time with the message. */
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

/* ------------------------------------------------------------------------------------------------------------ */
/* Versions                                                                                                      */

#define GFN_VERSION_MAJOR 0
#define GFN_VERSION_MINOR 2
#define GFN_VERSION_PATCH 0
#define GFN_VERSION_STRING "0.2.0"
/* Incremented whenever a struct or signature of this header changes incompatibly (the soname is
   libgfnlm.so.<GFN_ABI_VERSION>). 2: see docs/migration.md. */
#define GFN_ABI_VERSION 2

/* The library's version string, e.g. "0.2.0". Static storage; never fails. */
GFN_API const char *_Nonnull gfn_version(void);

/* The library's GFN_ABI_VERSION. Compare it with the header's macro to detect a mismatched library. */
GFN_API int32_t gfn_abi_version(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Status codes                                                                                                  */

/* Functions that can fail return a gfn_status: one of the gfn_status_code values. Like every enumerated field of
   this header it is an int32_t, so its width never depends on how a compiler sizes enums (-fshort-enums). */
typedef int32_t gfn_status;

typedef enum gfn_status_code {
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
    GFN_ERR_BUFFER_TOO_SMALL = -12,
    /* A bounded queue is full (gfn_batcher): try again later, or submit with blocking. */
    GFN_ERR_BUSY = -13
} gfn_status_code;

/* Which functions can return which error (GFN_OK aside). Every function that returns a gfn_status can return
   GFN_ERR_INVALID_ARGUMENT (NULL / dead / foreign handle, NULL out-pointer, wrong struct size, negative count,
   non-finite or inconsistent parameter) and, in principle, GFN_ERR_INTERNAL. Beyond those two:

   GFN_ERR_IO                gfn_tokenizer_load, gfn_model_load (model, external data, tokenizer files),
                             gfn_adapter_load, gfn_adapter_save, gfn_model_export_onnx, gfn_sft_export_onnx,
                             gfn_sft_save, gfn_sft_load, gfn_gflownet_save, gfn_gflownet_load
   GFN_ERR_FORMAT            gfn_tokenizer_load, gfn_model_load (truncated / corrupt protobuf, declared sizes beyond
                             the data or a sane bound, negative or overflowing dims, external data that is absolute,
                             leaves the model's folder or is a symlink out of it, nesting too deep), gfn_adapter_load,
                             gfn_sft_load, gfn_gflownet_load (corrupt or truncated checkpoint files, JSON nested too
                             deep, hostile step counts)
   GFN_ERR_UNSUPPORTED       gfn_tokenizer_load (tokenizer.json of another model type), gfn_model_load (not a
                             GPT-2 / GPT-J graph, fused operators, unknown data types, inline model ≥ 2 GiB),
                             gfn_adapter_load (peft_type other than LORA), gfn_sft_load, gfn_gflownet_load (unknown
                             checkpoint version), gfn_model_export_onnx, gfn_sft_export_onnx (model not from ONNX),
                             gfn_gflownet_step, gfn_gflownet_train (a distributed PPO trainer)
   GFN_ERR_OUT_OF_RANGE      gfn_tokenizer_decode, gfn_model_logits (ids outside the
                             vocabulary, seq_len beyond n_positions, batch·seq_len·vocab overflowing), gfn_samples_get,
                             gfn_context_sample, gfn_context_score, gfn_context_beam_search, gfn_sft_step,
                             gfn_sft_evaluate, gfn_sft_set_label_candidates, gfn_reward_new_lm_likelihood, gfn_reward_new_next_sentence,
                             gfn_reward_new_random_integer, gfn_reward_evaluate, gfn_gflownet_new,
                             gfn_gflownet_sample, gfn_rollout_sample, gfn_gflownet_seed_buffer, gfn_gflownet_exact (prompt index out of
                             range, more than 100,000 sequences, a demonstration longer than max_length)
   GFN_ERR_OUT_OF_MEMORY     any function that allocates (an allocation failed); before any work:
                             gfn_context_sample, gfn_context_beam_search, gfn_gflownet_new, gfn_gflownet_sample,
                             gfn_rollout_sample
                             (requests whose memory exceeds the process's physical memory or RLIMIT_AS), the loaders
                             (a file larger than its reader's limit)
   GFN_ERR_NUMERICAL         gfn_context_sample, gfn_context_beam_search (every token masked), gfn_reward_evaluate,
                             gfn_gflownet_step, gfn_gflownet_train, gfn_gflownet_seed_buffer, gfn_gflownet_exact
                             (NaN / infinite log R, a loss that is not finite), gfn_gflownet_sample, gfn_rollout_sample (every action
                             masked), gfn_model_export_onnx, gfn_sft_export_onnx (non-finite
                             weights). A non-finite gradient is not an error: the step is skipped and reported
                             with applied = 0 in gfn_sft_stats / gfn_step_stats.
   GFN_ERR_CALLBACK          gfn_reward_evaluate, gfn_gflownet_step, gfn_gflownet_train, gfn_gflownet_seed_buffer,
                             gfn_gflownet_exact (the host reward returned non-zero, or the wrong number of values);
                             gfn_gflownet_step, gfn_gflownet_train, gfn_sft_step with a distributed trainer (the
                             all-reduce callback returned non-zero)
   GFN_ERR_STATE             gfn_adapter_load (keys or shapes that do not fit the model), gfn_model_logits,
                             gfn_context_sample, gfn_context_score, gfn_context_beam_search, gfn_sft_new,
                             gfn_gflownet_new, gfn_rollout_sample, gfn_model_export_onnx (an adapter of another model),
                             gfn_sft_load, gfn_gflownet_load (a checkpoint of another run: other trainer kind, mode,
                             prompts, adapter shape or parameter groups); gfn_gflownet_step, gfn_gflownet_train,
                             gfn_sft_step with a distributed trainer (the ranks' configurations differ, or the
                             replicas diverged); gfn_batcher_submit_* (the batcher is shut down, an adapter or
                             trainer of another model), gfn_request_samples, gfn_request_scores (the request has
                             not finished, or is of the other kind)
   GFN_ERR_CANCELLED         gfn_gflownet_train (the progress callback returned 0); gfn_request_samples,
                             gfn_request_scores (the request was cancelled, or the batcher shut down without draining)
   GFN_ERR_BUFFER_TOO_SMALL  gfn_tokenizer_encode, gfn_tokenizer_decode, gfn_model_logits
   GFN_ERR_BUSY              gfn_batcher_submit_* (the queue is full and the submission does not block)
   A finished request that failed returns its own error (any of the above) from gfn_request_samples /
   gfn_request_scores.

   On any error the out-parameters are untouched and the objects passed in are as before the call (a training
   step or checkpoint load that fails changes neither parameters nor optimiser state). */

/* The message of the last failure on the calling thread ("" if none). The pointer stays valid until the next
   failing call on this thread. The message is not cleared by successful calls. */
GFN_API const char *_Nonnull gfn_last_error(void);

/* A constant name for a status code, e.g. "GFN_ERR_IO". Never NULL. */
GFN_API const char *_Nonnull gfn_status_name(gfn_status status);

/* ------------------------------------------------------------------------------------------------------------ */
/* Logging                                                                                                       */

typedef enum gfn_log_level {
    GFN_LOG_DEBUG = 0, GFN_LOG_INFO = 1, GFN_LOG_WARN = 2, GFN_LOG_ERROR = 3
} gfn_log_level;

/* Receives the library's diagnostics: `level` is a gfn_log_level, `message` a NUL-terminated UTF-8 line without a
   trailing newline, valid only during the call. Called on whichever thread produced the message, possibly several
   at once; must not call into gfnlm. */
typedef void (*gfn_log_fn)(int32_t level, const char *_Nonnull message, void *_Nullable user_data);

/* Sets the process-wide log callback (fn NULL: back to the default, which writes messages of level GFN_LOG_WARN
   and above to stderr as "gfnlm: warning: …"; to silence the library, pass a function that ignores them).
   Errors are not logged: they are returned as statuses (gfn_last_error). What is logged: a CPU kernel disabled at
   start-up because its self-check failed (GFN_LOG_WARN, once per process, from the first model load with bf16
   weights). Set it before loading models to see every message. Thread-safe; never fails. */
GFN_API void gfn_log_set(gfn_log_fn _Nullable fn, void *_Nullable user_data);

/* ------------------------------------------------------------------------------------------------------------ */
/* Tokenizer: GPT-2 byte-level BPE (also used by GPT-J)                                                          */

typedef struct gfn_tokenizer gfn_tokenizer;

/* Loads a tokenizer. `path` is a directory holding tokenizer.json, or vocab.json + merges.txt; or the path of a
   tokenizer.json; or the path of a vocab.json with merges.txt beside it.
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL path/out), GFN_ERR_IO (missing files), GFN_ERR_FORMAT (malformed files).
   Ownership: *out belongs to the caller; release it with gfn_tokenizer_free. Thread-safe. */
GFN_API gfn_status gfn_tokenizer_load(const char *_Nullable path, gfn_tokenizer *_Nullable *_Nullable out);

/* Releases a tokenizer. NULL is a no-op. A tokenizer borrowed from a model (gfn_model_tokenizer) must not be freed. */
GFN_API void gfn_tokenizer_free(gfn_tokenizer *_Nullable tokenizer);

/* Encodes UTF-8 text. With allow_special != 0 the literal text "<|endoftext|>" becomes its special id (50256),
   as Hugging Face does; with 0 it is encoded as plain text.
   Writes up to `capacity` ids to `ids` and the number of ids to *n_ids. If capacity is too small, nothing is
   written to `ids`, *n_ids receives the needed count, and GFN_ERR_BUFFER_TOO_SMALL is returned (ids may be NULL
   when capacity is 0, to query the size). Invalid UTF-8 in `text` → GFN_ERR_INVALID_ARGUMENT. */
GFN_API gfn_status gfn_tokenizer_encode(const gfn_tokenizer *_Nullable tokenizer, const char *_Nullable text,
                                        int32_t allow_special, int32_t *_Nullable ids, int32_t capacity,
                                        int32_t *_Nullable n_ids);

/* Decodes ids to UTF-8 text (byte sequences that are not valid UTF-8 become U+FFFD, as Hugging Face does).
   Writes a NUL-terminated string of at most capacity−1 bytes to `text` and its length (without the NUL) to
   *n_bytes. If capacity is too small, *n_bytes receives the needed length (without the NUL) and
   GFN_ERR_BUFFER_TOO_SMALL is returned. An id outside the vocabulary → GFN_ERR_OUT_OF_RANGE. */
GFN_API gfn_status gfn_tokenizer_decode(const gfn_tokenizer *_Nullable tokenizer, const int32_t *_Nullable ids,
                                        int32_t n_ids, char *_Nullable text, size_t capacity,
                                        size_t *_Nullable n_bytes);

/* Number of ids the tokenizer defines (50257 for GPT-2). */
GFN_API gfn_status gfn_tokenizer_vocab_size(const gfn_tokenizer *_Nullable tokenizer, int32_t *_Nullable out);

/* The end-of-text id (50256 for GPT-2), or −1 if the tokenizer has none. */
GFN_API gfn_status gfn_tokenizer_eos(const gfn_tokenizer *_Nullable tokenizer, int32_t *_Nullable out);

/* ------------------------------------------------------------------------------------------------------------ */
/* Model                                                                                                         */

typedef struct gfn_model gfn_model;

/* gfn_model_params.weight_type: how the model's large matrices (attention / MLP linear maps, token embedding and
   head) are stored in memory. LayerNorm parameters, biases and positions stay fp32, and so do activations, KV caches,
   LoRA factors and all arithmetic (narrower weights are widened on use). */
typedef enum gfn_weight_type {
    GFN_WEIGHTS_F32 = 0,  /* fp32 (the default), used in place from the memory-mapped file when 4-byte aligned */
    GFN_WEIGHTS_BF16 = 1, /* bf16, converted at load from fp32 / fp16 / bf16 files (round to nearest even): half
                             the memory of fp32; logits differ from fp32 by bf16 rounding. Products use
                             AVX512-BF16 where the CPU has it and the start-up self-check passes (else AVX2/FMA;
                             GFNLM_NO_AVX512BF16=1 forces the latter). Full-parameter fine-tuning (gfn_sft_new
                             with a NULL adapter) and ONNX export need fp32 weights: GFN_ERR_UNSUPPORTED. */
    GFN_WEIGHTS_INT8 = 2, /* int8, quantized at load: 32 values of a column per block with an fp32 scale (8.5 bits
                             per weight). A frozen base, as bf16 (the same refusals): LoRA, SFT with an adapter,
                             GFlowNet training, sampling, scoring. Error bounds and speed: docs/quantization.md. */
    GFN_WEIGHTS_Q4 = 3    /* 4-bit (32 per block with an fp32 scale, 4.5 bits per weight) for the linear maps; the
                             token embedding / tied head stays int8. Otherwise as GFN_WEIGHTS_INT8. */
} gfn_weight_type;

typedef struct gfn_model_params {
    uint32_t size;              /* sizeof(gfn_model_params); the first version of this struct (16 bytes on LP64,
                                   without weight_type) is still accepted and means weight_type GFN_WEIGHTS_F32 */
    int32_t n_threads;          /* the model's compute budget: every thread that computes for this model, matrix
                                   products included, is one of these (see "Threads" at the top); 0 = all online
                                   CPUs */
    const char *_Nullable tokenizer_path; /* NULL: look for tokenizer files beside the model (no error if absent);
                                   otherwise load from this path (errors are reported) */
    int32_t weight_type;        /* a gfn_weight_type: GFN_WEIGHTS_F32 (default), _BF16, _INT8 or _Q4; other
                                   values: GFN_ERR_INVALID_ARGUMENT */
    int32_t batch_invariant;    /* 1 (default): decoding steps use matrix products whose arithmetic for one sequence
                                   does not depend on the other sequences of the batch, so a sample's tokens and
                                   log-probabilities depend only on (model, adapter, prompt, parameters, seed) —
                                   whatever shares its batch in a gfn_batcher or a gfn_context_sample call, and
                                   whatever the thread count. 0: the fastest product for each batch size (results
                                   then differ at rounding level between batch sizes). Added after weight_type; a
                                   caller's smaller struct means 1. */
    int32_t reserved;           /* 0. It makes this version of the struct larger than the previous one (whose size
                                   included the padding where batch_invariant now is), so the two are told apart. */
} gfn_model_params;

/* Defaults: n_threads 0, tokenizer_path NULL, weight_type GFN_WEIGHTS_F32, batch_invariant 1. */
GFN_API gfn_model_params gfn_model_default_params(void);

/* Loads a GPT-2 or GPT-J model from an ONNX export. `path` is the .onnx file or a directory holding one
   (model.onnx preferred). External data files (one data file with offsets, or one file per tensor) are read
   relative to the model's directory and memory-mapped. The architecture and every hyper-parameter are recovered
   from the graph; a config.json beside the model is used only for what the graph lacks.
   params may be NULL (defaults).
   Errors: GFN_ERR_IO (missing or unreadable file), GFN_ERR_FORMAT (truncated / corrupt file, bad external data,
   inconsistent shapes), GFN_ERR_UNSUPPORTED (a valid ONNX model that is not a plain GPT-2 / GPT-J, e.g. one with a
   fused com.microsoft::Attention node).
   GFN_ERR_INVALID_ARGUMENT (a bad params field, e.g. an unknown weight_type), GFN_ERR_OUT_OF_MEMORY.
   With weight_type GFN_WEIGHTS_BF16 (or _INT8, _Q4) the data files are converted tensor by tensor and not kept
   mapped: peak resident memory stays near the converted size of the weights.
   Ownership: *out belongs to the caller; release it with gfn_model_free (before or after the objects made from
   it: they keep the model alive, see "Lifetimes" at the top).
   Thread safety: the model is immutable and may be used from any number of threads at once. */
GFN_API gfn_status gfn_model_load(const char *_Nullable path, const gfn_model_params *_Nullable params,
                                  gfn_model *_Nullable *_Nullable out);

/* Releases the caller's model handle. NULL is a no-op. Objects made from the model keep working (they hold the
   model); the handle and its borrowed tokenizer are dead from here on. */
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

/* Fills *out (whose size field the caller sets) with the model's hyper-parameters. */
GFN_API gfn_status gfn_model_config_get(const gfn_model *_Nullable model, gfn_model_config *_Nullable out);

/* The tokenizer loaded with the model, borrowed (valid while the model lives; do not free), or NULL in *out
   when none was found. */
GFN_API gfn_status gfn_model_tokenizer(const gfn_model *_Nullable model,
                                       const gfn_tokenizer *_Nullable *_Nullable out);

/* Logits of a batch under `adapter` (NULL = the base model; gfn_adapter is declared below): `ids` is
   [batch, seq_len] row-major. `attention_mask` (may be NULL = all ones) is
   [batch, seq_len] with 0 only as left padding (a row is 0…0 1…1; positions count from its first 1, as Hugging
   Face generate() does). Writes batch·seq_len·vocab_size floats to `logits` ([batch, seq_len, vocab]);
   `capacity` is the number of floats `logits` can hold.
   Padding positions hold meaningless values (do not use them).
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL pointers, batch or seq_len ≤ 0, a mask that is not left padding),
   GFN_ERR_OUT_OF_RANGE (an id outside the vocabulary, seq_len beyond n_positions),
   GFN_ERR_BUFFER_TOO_SMALL (capacity too small), GFN_ERR_STATE (an adapter made for another model).
   Thread-safe (the adapter must not be trained meanwhile). */
typedef struct gfn_adapter gfn_adapter;
GFN_API gfn_status gfn_model_logits(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                    const int32_t *_Nullable ids, int32_t batch, int32_t seq_len,
                                    const int32_t *_Nullable attention_mask, float *_Nullable logits,
                                    size_t capacity);

/* ------------------------------------------------------------------------------------------------------------ */
/* Adapters (LoRA) with PEFT's semantics and file layout. NULL wherever an adapter is accepted means "the base    */
/* model": the same weights serve with the adapter on (policy) and off (reference / reward model).              */

typedef struct gfn_lora_params {
    uint32_t size;          /* sizeof(gfn_lora_params) */
    int32_t r;              /* rank; default 8 */
    float alpha;            /* scale = alpha / r (alpha / sqrt(r) with use_rslora); default 8 */
    float dropout;          /* dropout on the LoRA input during training; default 0 */
    const char *_Nullable targets; /* comma-separated Hugging Face module names, PEFT's matching rule (an entry matches a
                               module that equals it or ends with "." + entry): GPT-2 "c_attn", "c_proj" (attention and
                               MLP), "c_fc", "attn.c_proj", "mlp.c_proj"; GPT-J "q_proj", "k_proj", "v_proj",
                               "out_proj", "fc_in", "fc_out"; both "lm_head" (the output head, also when tied to the
                               token embedding: the update applies to the logits, never to the embedding lookup; on a
                               tied head it cannot be merged by gfn_model_export_onnx). NULL = PEFT's defaults (GPT-2 c_attn;
                               GPT-J q_proj,v_proj) */
    int32_t use_rslora;     /* default 0 */
    uint64_t seed;          /* A is Kaiming-uniform from this seed, B = 0 (the adapter starts as the base model) */
} gfn_lora_params;

GFN_API gfn_lora_params gfn_lora_default_params(void);

/* A new adapter for `model`. Errors: GFN_ERR_INVALID_ARGUMENT (bad rank, targets that match no module — the
   message lists the model's modules). The adapter may be used by one thread at a time while it is trained; for
   inference (read-only) it may be shared. Free with gfn_adapter_free. */
GFN_API gfn_status gfn_adapter_new(const gfn_model *_Nullable model, const gfn_lora_params *_Nullable params,
                                   gfn_adapter *_Nullable *_Nullable out);

/* Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors, as PEFT's save_pretrained
   writes it). Errors: GFN_ERR_IO, GFN_ERR_FORMAT, GFN_ERR_STATE (keys or shapes that do not fit the model). */
GFN_API gfn_status gfn_adapter_load(const gfn_model *_Nullable model, const char *_Nullable directory,
                                    gfn_adapter *_Nullable *_Nullable out);

/* Saves in PEFT's layout (Hugging Face PEFT loads it with PeftModel.from_pretrained). Written to a temporary
   directory and renamed. */
GFN_API gfn_status gfn_adapter_save(const gfn_adapter *_Nullable adapter, const char *_Nullable directory);

/* Number of trainable values (Σ of A and B sizes). */
GFN_API gfn_status gfn_adapter_parameter_count(const gfn_adapter *_Nullable adapter, int64_t *_Nullable out);

GFN_API void gfn_adapter_free(gfn_adapter *_Nullable adapter);

/* ------------------------------------------------------------------------------------------------------------ */
/* Inference context: sampling, scoring, beam search                                                             */

/* Per-caller state (scratch memory, KV caches) for inference on one model. Use one context per thread; any number
   of contexts may share one model. The context keeps the model alive (see "Lifetimes" at the top). */
typedef struct gfn_context gfn_context;

/* Errors: GFN_ERR_INVALID_ARGUMENT (dead model handle, NULL out). Ownership: the caller frees with
   gfn_context_free. */
GFN_API gfn_status gfn_context_new(const gfn_model *_Nullable model, gfn_context *_Nullable *_Nullable out);
GFN_API void gfn_context_free(gfn_context *_Nullable ctx);

/* Vocabulary constraints and biases that define the policy: they change the reported log-probabilities as well as
   what is sampled. Ids outside allowed_tokens (when n_allowed_tokens > 0) get disallowed_penalty added to their
   logits: −INFINITY is a hard mask, a finite value such as −99 the reference's soft mask. Stop tokens are always
   allowed. bias_values[i] is added to the logit of bias_tokens[i]. */
typedef struct gfn_logit_adjustment {
    const int32_t *_Nullable allowed_tokens;
    int32_t n_allowed_tokens;   /* 0 = every id allowed */
    float disallowed_penalty;   /* ≤ 0; default −INFINITY */
    const int32_t *_Nullable bias_tokens;
    const float *_Nullable bias_values;
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
    const int32_t *_Nullable stop_tokens;    /* sampling one ends the sample */
    int32_t n_stop_tokens;
    int32_t include_stop_token;    /* 1: a sampled stop token is the last returned token (default 1) */
    gfn_logit_adjustment adjust;
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_sampling_params;

/* Defaults as documented on each field. */
GFN_API gfn_sampling_params gfn_sampling_default_params(void);

/* A set of generated sequences (samples or beam hypotheses). Owned by the caller; free with gfn_samples_free. */
typedef struct gfn_samples gfn_samples;

/* Samples n_per_prompt continuations of each of n_prompts prompts (prompts[i] has prompt_lengths[i] ≥ 1 ids).
   Each prompt runs through the model once; its samples share that cache, and all samples decode together.
   For every sample the policy's own log-probabilities are reported (see gfn_sample_info).
   Sample k of prompt i is at index i·n_per_prompt + k.
   Errors: GFN_ERR_INVALID_ARGUMENT (NULL pointers, n_prompts or n_per_prompt ≤ 0, bad parameters),
   GFN_ERR_OUT_OF_RANGE (ids outside the vocabulary, a prompt longer than n_positions),
   GFN_ERR_NUMERICAL (no token can be produced: everything masked). */
GFN_API gfn_status gfn_context_sample(gfn_context *_Nullable ctx, const int32_t *_Nullable const *_Nullable prompts,
                                      const int32_t *_Nullable prompt_lengths, int32_t n_prompts,
                                      int32_t n_per_prompt, const gfn_sampling_params *_Nullable params,
                                      gfn_samples *_Nullable *_Nullable out);

typedef struct gfn_sample_info {
    uint32_t size;               /* set by the caller: sizeof(gfn_sample_info) */
    int32_t prompt_index;
    int32_t n_tokens;
    const int32_t *_Nullable tokens;       /* borrowed from the gfn_samples */
    const float *_Nullable token_logprobs; /* [n_tokens]: log q(token | prefix), untempered, with the logit
                                              adjustment */
    int32_t n_steps;             /* sampling steps (n_tokens, or n_tokens + 1 when a stop token was not kept) */
    int32_t n_stop_tokens;
    const float *_Nullable stop_logprobs;  /* [n_steps][n_stop_tokens]: log q(stop_j | prefix before each step) */
    double logprob;              /* Σ log q over the steps */
    double score;                /* beam search: the ranking score; sampling: equal to logprob */
    int32_t finish_reason;       /* 0: stop token, 1: max tokens */
} gfn_sample_info;

GFN_API gfn_status gfn_samples_count(const gfn_samples *_Nullable samples, int32_t *_Nullable out);

/* Describes sample `index` (0 ≤ index < count). Pointers stay valid until gfn_samples_free. */
GFN_API gfn_status gfn_samples_get(const gfn_samples *_Nullable samples, int32_t index,
                                   gfn_sample_info *_Nullable out);

GFN_API void gfn_samples_free(gfn_samples *_Nullable samples);

typedef struct gfn_score_params {
    uint32_t size;                 /* sizeof(gfn_score_params) */
    const int32_t *_Nullable stop_tokens;    /* stop probabilities after every prefix are reported for these */
    int32_t n_stop_tokens;
    gfn_logit_adjustment adjust;   /* applied to the continuation's distributions */
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_score_params;

GFN_API gfn_score_params gfn_score_default_params(void);

/* Scores n_pairs continuations given contexts (contexts[i] has ≥ 1 ids; continuations[i] may be empty).
   totals[i] = log p(continuation_i | context_i). If token_logprobs is not NULL it receives, concatenated over the
   pairs, log p(c_t | context, c_<t) (Σ continuation_lengths floats). If stop_logprobs is not NULL it receives,
   concatenated over the pairs, for every prefix length 0…len the log-probability of stopping there,
   log Σ_j p(stop_j | context, c_<i) (Σ (continuation_lengths + 1) floats; −INFINITY without stop tokens).
   Pairs that share a context run it once. */
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
    gfn_logit_adjustment adjust;
    const gfn_adapter *_Nullable adapter;    /* NULL = the base model */
} gfn_beam_params;

GFN_API gfn_beam_params gfn_beam_default_params(void);

/* (Diverse) beam search from one prompt; the hypotheses come back best first in *out (score in
   gfn_sample_info.score, log-probability without penalties in .logprob, finish_reason 0 when the hypothesis
   ended with a stop token). */
GFN_API gfn_status gfn_context_beam_search(gfn_context *_Nullable ctx, const int32_t *_Nullable prompt,
                                           int32_t prompt_length, const gfn_beam_params *_Nullable params,
                                           gfn_samples *_Nullable *_Nullable out);

/* Writes the model as an ONNX file that onnxruntime runs, with the adapter's low-rank delta merged into the base
   weights (adapter NULL: the weights as loaded). The original export is rewritten: every other node and tensor is
   kept, merged weights keep their file's dtype (fp16 / bf16 rounding applies), shared tensors are split when needed.
   Inline data below 2 GiB, else one external `<file>.data`. Written to temporary names and renamed (no partial
   file on failure). Errors: GFN_ERR_UNSUPPORTED (the model was not loaded from ONNX, or was loaded with
   GFN_WEIGHTS_BF16, _INT8 or _Q4), GFN_ERR_STATE (the adapter
   belongs to another model, or the source file changed since loading), GFN_ERR_NUMERICAL, GFN_ERR_IO. */
GFN_API gfn_status gfn_model_export_onnx(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                         const char *_Nullable path);

/* ------------------------------------------------------------------------------------------------------------ */
/* Serving: a batching scheduler for many concurrent requests on one model                                      */

/* A scheduler with continuous batching. Requests (sampling, scoring, or samples from a trained GFlowNet policy)
   may be submitted from any number of threads at once; one scheduler thread runs them on the model: each turn it
   admits queued requests in arrival order while their samples fit in max_batch rows, prefills their prompts (at
   most max_prefill_tokens prompt tokens per turn, so long prompts do not stall decoding for long), runs at most one
   scoring request, then takes one decoding step for every active sample. Samples join and leave the batch at token
   boundaries. Requests under different adapters share the batch: the base model's products are shared and each
   row group adds its own low-rank delta.
   With a batch-invariant model (gfn_model_params.batch_invariant, the default), a request's result is exactly what
   gfn_context_sample / gfn_context_score return for the same arguments (same tokens; log-probabilities equal),
   whatever else shares the batch. Every request finishes exactly once: with its result, its error, or
   GFN_ERR_CANCELLED (cancelled, or the batcher was shut down without draining).
   Thread safety: every gfn_batcher_* and gfn_request_* function may be called from any thread at once, except that
   a request must not be used after gfn_request_free. */
typedef struct gfn_batcher gfn_batcher;
typedef struct gfn_request gfn_request;

typedef struct gfn_batcher_params {
    uint32_t size;                 /* sizeof(gfn_batcher_params) */
    int32_t max_batch;             /* samples decoded together at most (a request's n_samples must fit); default 32 */
    int32_t max_queue;             /* requests waiting for admission at most; default 256 */
    int32_t max_prefill_tokens;    /* prompt tokens prefilled per scheduler turn at most; default 512 */
} gfn_batcher_params;

GFN_API gfn_batcher_params gfn_batcher_default_params(void);

/* Starts a batcher on `model` (params may be NULL: defaults). The batcher keeps the model alive.
   Errors: GFN_ERR_INVALID_ARGUMENT (non-positive limits), GFN_ERR_OUT_OF_MEMORY, GFN_ERR_INTERNAL (no thread). */
GFN_API gfn_status gfn_batcher_new(const gfn_model *_Nullable model, const gfn_batcher_params *_Nullable params,
                                   gfn_batcher *_Nullable *_Nullable out);

/* Stops accepting requests and waits for the scheduler to stop. drain != 0: queued and running requests complete
   first; drain == 0: they finish with GFN_ERR_CANCELLED at the next token boundary. Idempotent. Must not be
   called from a request's callback. */
GFN_API gfn_status gfn_batcher_shutdown(gfn_batcher *_Nullable batcher, int32_t drain);

/* gfn_batcher_shutdown(batcher, 0), then releases the batcher. Requests stay valid handles (free them). */
GFN_API void gfn_batcher_free(gfn_batcher *_Nullable batcher);

/* Streaming: called on the scheduler thread for every token a sample gains (sample_index in 0..n_samples−1, the
   token, its log q). Return 0 to go on, non-zero to cancel the request. Must return quickly (the whole batch waits)
   and must not call gfn_batcher_shutdown / gfn_batcher_free. */
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

/* Submits n_samples samples of one prompt with `params` (as gfn_context_sample with one prompt; params->adapter
   selects the adapter, NULL = base model; the adapter handle may be freed while the request runs). options may
   be NULL (defaults). The inputs are checked here: a bad prompt or parameter fails the submission.
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
   adapter, termination token ⊤ as the stop token, min_length / max_length, vocabulary adjustment), sampled at
   `temperature` with `seed`. Each sample's token_logprobs are log q per action (⊤ included when sampled) and its
   logprob their sum, log q(Z | X), under the untempered policy — for importance weights and estimates of log Σ R.
   The adapter is read while the request runs: do not train the trainer meanwhile. Errors as
   gfn_batcher_submit_sample, and GFN_ERR_UNSUPPORTED for a trainer with the calculator tool. */
GFN_API gfn_status gfn_batcher_submit_policy(gfn_batcher *_Nullable batcher, const gfn_gflownet *_Nullable trainer,
                                             const int32_t *_Nullable x, int32_t n_x, int32_t count,
                                             float temperature, uint64_t seed,
                                             const gfn_request_options *_Nullable options,
                                             gfn_request *_Nullable *_Nullable out);

/* Waits up to timeout_ms milliseconds (−1: no limit, 0: poll) for the request to finish; *finished (may be NULL)
   receives 1 when it has. Returns GFN_OK whether or not it finished. */
GFN_API gfn_status gfn_request_wait(gfn_request *_Nullable request, int32_t timeout_ms, int32_t *_Nullable finished);

/* Asks for the request to stop; it finishes with GFN_ERR_CANCELLED at the next token boundary (at once while
   queued). No effect on a finished request. */
GFN_API gfn_status gfn_request_cancel(gfn_request *_Nullable request);

/* The samples of a finished sampling or policy request (a new gfn_samples owned by the caller, as
   gfn_context_sample returns). While the request runs: GFN_ERR_STATE. A request that failed or was cancelled
   returns its error (GFN_ERR_CANCELLED, GFN_ERR_NUMERICAL, …) with its message. */
GFN_API gfn_status gfn_request_samples(const gfn_request *_Nullable request, gfn_samples *_Nullable *_Nullable out);

/* The results of a finished scoring request, written as gfn_context_score writes them. Errors as
   gfn_request_samples. */
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

/* ------------------------------------------------------------------------------------------------------------ */
/* Supervised fine-tuning: maximise log p(target | context), the context masked out.                            */

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

/* A trainer for `adapter` (LoRA: only A and B train, the model's weights stay untouched and shared) or, with
   adapter NULL, for every weight of a private trainable copy of the model (small models; GFN_ERR_UNSUPPORTED for a
   model loaded with GFN_WEIGHTS_BF16, _INT8 or _Q4). */
GFN_API gfn_status gfn_sft_new(const gfn_model *_Nullable model, gfn_adapter *_Nullable adapter,
                               const gfn_train_params *_Nullable params, gfn_sft *_Nullable *_Nullable out);

/* One optimiser step on n (context, target) pairs of any lengths (contexts ≥ 1 token, targets ≥ 1 token). */
GFN_API gfn_status gfn_sft_step(gfn_sft *_Nullable sft, const int32_t *_Nullable const *_Nullable contexts,
                                const int32_t *_Nullable context_lengths,
                                const int32_t *_Nullable const *_Nullable targets,
                                const int32_t *_Nullable target_lengths, int32_t n, gfn_sft_stats *_Nullable out);

/* The loss on a batch without training. */
GFN_API gfn_status gfn_sft_evaluate(gfn_sft *_Nullable sft, const int32_t *_Nullable const *_Nullable contexts,
                                    const int32_t *_Nullable context_lengths,
                                    const int32_t *_Nullable const *_Nullable targets,
                                    const int32_t *_Nullable target_lengths, int32_t n, gfn_sft_stats *_Nullable out);

/* Restricts the loss of gfn_sft_step / gfn_sft_evaluate to the n candidate ids (copied): every target token's
   loss becomes −log softmax over the candidates only, −log p(t) + log Σ_c p(c) — e.g. the two label tokens of a
   classifier (the reference's two-way label cross-entropy); the reported loss is that restricted NLL. n = 0 (ids
   may be NULL) restores the full vocabulary. Errors: GFN_ERR_OUT_OF_RANGE (an id outside the vocabulary),
   GFN_ERR_INVALID_ARGUMENT (duplicates, n = 1, n < 0); gfn_sft_step / gfn_sft_evaluate then return
   GFN_ERR_INVALID_ARGUMENT for a target token that is not a candidate. Same thread rules as gfn_sft_step. */
GFN_API gfn_status gfn_sft_set_label_candidates(gfn_sft *_Nullable sft, const int32_t *_Nullable ids, int32_t n);

/* For full-parameter training: a new model handle holding a snapshot (copy) of the current weights. */
GFN_API gfn_status gfn_sft_snapshot_model(const gfn_sft *_Nullable sft, gfn_model *_Nullable *_Nullable out);

/* Full-parameter training: writes the current weights as an ONNX file (see gfn_model_export_onnx). */
GFN_API gfn_status gfn_sft_export_onnx(const gfn_sft *_Nullable sft, const char *_Nullable path);

/* Training-state checkpoints (adapter or weights, optimizer moments, step, schedule): atomic directory. */
GFN_API gfn_status gfn_sft_save(const gfn_sft *_Nullable sft, const char *_Nullable directory);
GFN_API gfn_status gfn_sft_load(gfn_sft *_Nullable sft, const char *_Nullable directory);

GFN_API void gfn_sft_free(gfn_sft *_Nullable sft);

/* ------------------------------------------------------------------------------------------------------------ */
/* GFlowNet fine-tuning and amortized sampling (the paper's method).                                           */

/* A reward: log R(s_t ⊤) for every prefix state of a trajectory. */
typedef struct gfn_reward gfn_reward;

/* A host reward. Called with `n_states` token sequences (the states after the prompt X: every prefix of every
   trajectory of a micro-batch, or only complete trajectories when terminal_only) of the prompt `prompt_index`;
   writes one untempered log R per state to log_rewards. Return 0 on success; any other value (or a NaN /
   infinite log R) fails the training step, which then changes nothing and reports GFN_ERR_CALLBACK /
   GFN_ERR_NUMERICAL. Called on the thread that calls gfn_gflownet_step; must not call into the same trainer. */
typedef int32_t (*_Nullable gfn_reward_fn)(void *_Nullable user_data, int32_t prompt_index,
                                           const int32_t *_Nullable const *_Nullable states,
                                           const int32_t *_Nullable state_lengths, int32_t n_states,
                                           double *_Nullable log_rewards);

GFN_API gfn_status gfn_reward_new_callback(gfn_reward_fn fn, void *_Nullable user_data, int32_t terminal_only,
                                           gfn_reward *_Nullable *_Nullable out);

/* A host reward that is also told the reward temperature T_R the trainer will divide its values by (T_R of the
   current step; 1 for gfn_reward_evaluate). The values stay untempered: a reward that wants a term after tempering
   (the subjectivity task's −50 for a wrong label) returns it multiplied by T_R. Otherwise as gfn_reward_fn. */
typedef int32_t (*_Nullable gfn_reward_temperature_fn)(void *_Nullable user_data, int32_t prompt_index,
                                                       double reward_temperature,
                                                       const int32_t *_Nullable const *_Nullable states,
                                                       const int32_t *_Nullable state_lengths, int32_t n_states,
                                                       double *_Nullable log_rewards);

/* As gfn_reward_new_callback, for a gfn_reward_temperature_fn. Errors: GFN_ERR_INVALID_ARGUMENT (NULL fn or out). */
GFN_API gfn_status gfn_reward_new_callback_temperature(gfn_reward_temperature_fn fn, void *_Nullable user_data,
                                                       int32_t terminal_only, gfn_reward *_Nullable *_Nullable out);

/* log p_LM(Z Y | demos C) with the adapter off: C is the prompt's reward context (or X), Y its observation;
   `z_adjust` adds the vocabulary penalty at Z positions only (e.g. −99 soft mask); states with fewer than
   min_length tokens get −99. The demos run once; Y is scored after every prefix from the prefix's cache. */
GFN_API gfn_status gfn_reward_new_lm_likelihood(const gfn_model *_Nullable model, const int32_t *_Nullable demos,
                                                int32_t n_demos, const gfn_logit_adjustment *_Nullable z_adjust,
                                                int32_t min_length, gfn_reward *_Nullable *_Nullable out);

/* log p_LM(z_1..t ⊤ | X) for every prefix from one pass (the next-sentence reward); `adjust` is the reward's own
   vocabulary penalty (the reference: −50); states with fewer than min_length tokens get −99. */
GFN_API gfn_status gfn_reward_new_next_sentence(const gfn_model *_Nullable model, int32_t termination,
                                                const gfn_logit_adjustment *_Nullable adjust, int32_t min_length,
                                                gfn_reward *_Nullable *_Nullable out);

/* The random-integer task's rule reward (paper §2): first token one of number_tokens +8 else −8, every later
   non-⊤ token at position m −8m, the empty sequence −8. */
GFN_API gfn_status gfn_reward_new_random_integer(const int32_t *_Nullable number_tokens, int32_t n_number_tokens,
                                                 int32_t termination, gfn_reward *_Nullable *_Nullable out);

/* Untempered log R of each prefix state of one action sequence (n_actions + 1 values) — for checks and metrics. */
GFN_API gfn_status gfn_reward_evaluate(gfn_reward *_Nullable reward, const int32_t *_Nullable x, int32_t n_x,
                                       const int32_t *_Nullable y, int32_t n_y, const int32_t *_Nullable actions,
                                       int32_t n_actions, double *_Nullable log_rewards);

GFN_API void gfn_reward_free(gfn_reward *_Nullable reward);

/* One training prompt: the policy's conditioning X, an optional observation Y (scored by the reward), an optional
   reward context (what the reward reads instead of X), and a sampling weight. */
typedef struct gfn_prompt {
    uint32_t size;                 /* sizeof(gfn_prompt); the same in every element of an array of prompts, which
                                      the library steps through by this size (so the struct can grow) */
    const int32_t *_Nullable x;
    int32_t n_x;
    const int32_t *_Nullable y;              /* NULL / 0: none */
    int32_t n_y;
    const int32_t *_Nullable reward_context; /* NULL / 0: X */
    int32_t n_reward_context;
    double weight;                 /* relative; 0 is treated as 1 */
} gfn_prompt;

/* SubTB (the paper's modified sub-trajectory balance), TB (learned log Z per prompt), DB (modified detailed
   balance), REINFORCE (a reward-maximising baseline with a batch-mean baseline on log R; not a GFlowNet; on-policy
   only: gfn_gflownet_new refuses it with p_replay > 0 or tempered batches, GFN_ERR_INVALID_ARGUMENT), PPO (the
   paper's reward-maximising baseline, as trl: clipped surrogate over ppo_epochs updates per sampled batch, ratio to
   the log q at sampling time, leave-one-out baseline per micro-batch, KL penalty to the frozen base model with
   trl's adaptive coefficient; on-policy only like REINFORCE, batch_size ≥ 2, one process: gfn_gflownet_step
   returns GFN_ERR_UNSUPPORTED for a distributed PPO trainer). */
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
    int32_t min_length;            /* ⊤ not sampled before this many actions; default 0. The target is R
                                      restricted to |Z| ≥ min_length for every objective, whatever the reward
                                      gives shorter sequences (docs/algorithm.md, "min_length") */
    int32_t max_length;            /* actions per trajectory; default 16 */
    gfn_logit_adjustment adjust;   /* the policy's vocabulary penalty / mask (⊤ always allowed) */
    int32_t calculator;            /* a gfn_calculator; default GFN_CALCULATOR_OFF */
    int32_t batch_size;            /* trajectories per micro-batch (one prompt each); default 8 */
    int32_t grad_accumulation;     /* micro-batches per step; default 1 */
    int32_t average_accumulation;  /* 0: gradients summed over micro-batches (main.py); 1: averaged */
    const gfn_train_params *_Nullable train; /* optimiser and learning-rate schedule of the adapter, read (and
                                      size-checked) by gfn_gflownet_new; NULL: gfn_train_default_params() with
                                      warmup_steps 20. A pointer, not a member, so that each struct grows on its
                                      own. */
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
    int32_t lora_dropout;          /* apply the adapter's dropout while sampling for training (the traced
                                      pass whose log-probabilities train the policy, as the reference); default 0 */
    uint64_t seed;
    int32_t pack_weights;          /* 1 (default): pack the model's fp32 weight matrices once more, in OpenBLAS's
                                      sgemm kernel layout, when the trainer is made, for the trainers' own passes
                                      (training, gfn_gflownet_sample). The copy belongs to the model (made once,
                                      shared, freed with it); contexts and rewards keep their results bit for bit;
                                      results differ from 0 at rounding level. No copy with bf16 or quantized
                                      weights (with int8 / q4 the trainer's passes use the fastest quantized product
                                      per batch size instead). docs/performance-notes.md: gain and memory. 0: off. */
    double temp_low_end, temp_high_end; /* behaviour-temperature annealing: with temp_horizon > 0 the tempered
                                      range moves linearly from [temp_low, temp_high] at step 0 to [temp_low_end,
                                      temp_high_end] at step temp_horizon, then stays; default 1, 1 */
    int32_t temp_horizon;          /* 0 (default): no annealing */
    int32_t root_flow;             /* SubTB / DB with min_length ≥ 1: the flow of the root X. 0 (default, the
                                      reference): R(X⊤)/q(⊤|X), a never-sampled stop probability that has to fall to
                                      R(X⊤)/Z; 1: a learned log Z per prompt (logz_lr, logz_init, as TB's). Same
                                      target either way. */
    /* PPO (GFN_OBJECTIVE_PPO). Each learning-rate schedule step is one of the ppo_epochs updates. */
    double ppo_clip;               /* ε of the clipped surrogate; default 0.2 */
    int32_t ppo_epochs;            /* optimiser updates over each sampled batch; default 4 */
    double kl_coef;                /* initial β of the penalty β·KL(q‖p_base) in the return; default 0.2 */
    double kl_target;              /* β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon) after each step of n
                                      trajectories (trl's AdaptiveKLController); 0: β fixed; default 6 */
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

/* (gfn_gflownet is declared in the Serving section above.) */

/* A GFlowNet trainer for `adapter` on `model` with `reward` over n_prompts prompts (copied). The trainer keeps
   the model, adapter and reward alive; use it from one thread at a time. */
GFN_API gfn_status gfn_gflownet_new(const gfn_model *_Nullable model, gfn_adapter *_Nullable adapter,
                                    gfn_reward *_Nullable reward, const gfn_prompt *_Nullable prompts,
                                    int32_t n_prompts, const gfn_gflownet_params *_Nullable params,
                                    gfn_gflownet *_Nullable *_Nullable out);

GFN_API gfn_status gfn_gflownet_set_progress(gfn_gflownet *_Nullable trainer, gfn_progress_fn fn,
                                             void *_Nullable user_data);

/* One optimiser step. On any error (NaN reward, failing callback) nothing changes: adapter, optimizer, replay
   buffer, RNG and step count are as before. *out (may be NULL) receives the statistics. */
GFN_API gfn_status gfn_gflownet_step(gfn_gflownet *_Nullable trainer, gfn_step_stats *_Nullable out);

/* `steps` steps, calling the progress callback after each; *last (may be NULL) gets the last step's stats. */
GFN_API gfn_status gfn_gflownet_train(gfn_gflownet *_Nullable trainer, int32_t steps, gfn_step_stats *_Nullable last);

/* Amortized inference: `count` trajectories Z ~ q(·|X) from the trained adapter at temperature (1 = the trained
   sampler), with the training limits, masks and calculator. In the results, tokens are the state after X (tool
   output included), n_steps the number of actions, finish_reason 0 when ⊤ was sampled (⊤ is not among the tokens).
   token_logprobs (n_tokens values) and logprob are the sampler's log q at temperature 1, whatever `temperature`
   (the behaviour): untempered, with the vocabulary adjustment, renormalised without ⊤ before min_length (the
   sampler never stops there: log q(a|s) − log(1 − q(⊤|s))), read from the distributions the actions were drawn
   from. A calculator's output tokens are context, not actions: their token_logprobs are 0. logprob = Σ over the
   actions + log q(⊤|s_n) of the stop — 0 for a trajectory truncated at max_length under GFN_LAYOUT_FORCED_STOP,
   the policy's real log q(⊤|s_max) under GFN_LAYOUT_NEXT_SENTENCE (as in training), so logprob − Σ token_logprobs
   is the stop's share. At the optimum log R(Z)/T_R − logprob is the same (log Z) for every Z: importance
   weights, log-Z estimates and effective sample sizes use it as is. n_stop_tokens is 0. */
GFN_API gfn_status gfn_gflownet_sample(gfn_gflownet *_Nullable trainer, const int32_t *_Nullable x, int32_t n_x,
                                       int32_t count, float temperature, uint64_t seed,
                                       gfn_samples *_Nullable *_Nullable out);

/* Sampling with the rollout's rules but without a trainer (e.g. the calculator for a base model or an SFT adapter):
   termination, length limits, layout, the policy's vocabulary adjustment and the calculator, as in
   gfn_gflownet_params. */
typedef struct gfn_rollout_params {
    uint32_t size;                 /* sizeof(gfn_rollout_params) */
    int32_t termination;           /* the ⊤ token; required */
    int32_t min_length;            /* default 0 */
    int32_t max_length;            /* default 16 */
    int32_t layout;                /* a gfn_layout (what logprob counts at max_length); default forced stop */
    gfn_logit_adjustment adjust;   /* ⊤ always allowed */
    int32_t calculator;            /* a gfn_calculator; default GFN_CALCULATOR_OFF */
} gfn_rollout_params;

GFN_API gfn_rollout_params gfn_rollout_default_params(void);

/* `count` trajectories after X from `adapter` (NULL = the base model) at `temperature`, reported exactly as
   gfn_gflownet_sample reports them (tokens = the state after X with tool output, token_logprobs/logprob = the
   sampler's log q at temperature 1, 0 for tool output, n_steps = actions). The same seed, model, adapter and
   params give the same samples as gfn_gflownet_sample. Thread safety: the model and adapter may be shared with
   other calls that only read them (not with a trainer that is training the adapter). Errors:
   GFN_ERR_INVALID_ARGUMENT (NULL / wrong-size params, count ≤ 0, a temperature that is not positive and finite,
   max_length ≤ 0, min_length outside 0…max_length, unknown layout or calculator, the calculator without a
   tokenizer), GFN_ERR_OUT_OF_RANGE (termination or prompt ids outside the vocabulary, prompt + max_length beyond
   n_positions), GFN_ERR_STATE (an adapter of another model), GFN_ERR_OUT_OF_MEMORY (before any work, as
   gfn_gflownet_sample), GFN_ERR_NUMERICAL (every action masked). */
GFN_API gfn_status gfn_rollout_sample(const gfn_model *_Nullable model, const gfn_adapter *_Nullable adapter,
                                      const gfn_rollout_params *_Nullable params, const int32_t *_Nullable x,
                                      int32_t n_x, int32_t count, float temperature, uint64_t seed,
                                      gfn_samples *_Nullable *_Nullable out);

/* Adds demonstrations (action sequences) for prompt `prompt_index` to the replay buffer, with their rewards.
   A demonstration longer than max_length (GFN_ERR_OUT_OF_RANGE; never cut) or shorter than min_length
   (GFN_ERR_INVALID_ARGUMENT; outside the target) is refused, and then nothing is added. */
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

GFN_API gfn_status gfn_gflownet_exact(gfn_gflownet *_Nullable trainer, int32_t prompt_index,
                                      const int32_t *_Nullable vocabulary, int32_t n_vocabulary,
                                      gfn_exact_result *_Nullable out);

/* Checkpoints: adapter (PEFT layout), log Z, optimizer moments, step, schedules, RNG and replay buffer, written
   atomically; loading into a trainer made with the same model, adapter shape, prompts and objective continues the
   run exactly. */
GFN_API gfn_status gfn_gflownet_save(const gfn_gflownet *_Nullable trainer, const char *_Nullable directory);
GFN_API gfn_status gfn_gflownet_load(gfn_gflownet *_Nullable trainer, const char *_Nullable directory);

GFN_API void gfn_gflownet_free(gfn_gflownet *_Nullable trainer);

/* ------------------------------------------------------------------------------------------------------------ */
/* Data-parallel training across processes and hosts (docs/distributed.md has the whole design). The library links
   no MPI: the host brings an all-reduce (MPI_Allreduce, or any other engine) as a callback, and K replicas of a
   trainer train as one — K ranks × batch b draw the trajectories of one process with batch K·b, and the averaged
   gradient is that process's gradient up to float rounding. Each step hands the callback ONE contiguous float
   buffer (gradients, statistics, a digest of the replica's state) to replace in place with the element-wise MEAN
   over all ranks, the same bytes on every rank; every rank then takes the same step, and replicas that diverge are
   reported (GFN_ERR_STATE "the replicas diverged"). The first step (and the first after a checkpoint load) checks
   that the ranks' configurations agree: GFN_ERR_STATE on every rank, naming each differing item, and nothing
   changes. Checkpoints: only rank 0 writes (gfn_gflownet_save / gfn_sft_save elsewhere return GFN_OK and write
   nothing); a checkpoint resumes on any number of ranks. Faults: the callback must bound its own wait (the
   project's glue aborts the job on a dead or stuck rank); a callback returning non-zero fails the step with
   GFN_ERR_CALLBACK and leaves this rank unchanged, but the ranks are then out of step: stop rather than retry. */

/* Replace buffer[0..count) in place with the element-wise mean over all ranks (the same bytes on every rank);
   return 0 on success, non-zero on failure (the step then fails with GFN_ERR_CALLBACK). Called on the thread that
   steps the trainer, the same number of times with the same counts on every rank; must not call into the trainer;
   must return within a bounded time (see Faults above and docs/distributed.md). */
typedef int32_t (*_Nullable gfn_allreduce_fn)(void *_Nullable user_data, float *_Nullable buffer, int64_t count);

typedef struct gfn_distributed_params {
    uint32_t size;                 /* sizeof(gfn_distributed_params) */
    int32_t rank;                  /* 0 ..< world_size */
    int32_t world_size;            /* 1 … 16384; default 1 */
    gfn_allreduce_fn allreduce;    /* required when world_size > 1; NULL with world_size 1 */
    void *_Nullable user_data;               /* passed to allreduce (e.g. an MPI communicator) */
    int32_t exchange_replay;       /* GFlowNet with replay: 1 = every step each rank's best fresh trajectory (highest
                                      log R) rides in the gradient buffer to every other rank, which adds it to its
                                      replay buffer like its own samples ((12 + 5·max_length)·world_size more
                                      floats per step); 0 (default) = replay buffers stay per rank */
} gfn_distributed_params;

/* rank 0, world_size 1, no callback, exchange_replay 0. */
GFN_API gfn_distributed_params gfn_distributed_default_params(void);

/* Makes the trainer one of world_size data-parallel replicas; params NULL (or world_size 1 without a callback)
   returns it to a single process. Call before the first step on every rank. The callback and user_data must stay
   valid while the trainer uses them. With world_size 1 and a callback the trainer takes the distributed path alone
   (rank-sliced seeds, replay RNG per rank) — a world of one. Errors: GFN_ERR_INVALID_ARGUMENT (bad rank or
   world_size, world_size > 1 without a callback, wrong size). Not thread-safe with the trainer's other calls. */
GFN_API gfn_status gfn_gflownet_set_distributed(gfn_gflownet *_Nullable trainer,
                                                const gfn_distributed_params *_Nullable params);
GFN_API gfn_status gfn_sft_set_distributed(gfn_sft *_Nullable sft, const gfn_distributed_params *_Nullable params);

#ifdef __cplusplus
}
#endif

#endif /* GFNLM_H */
