#ifndef GFNLM_CONNX_H
#define GFNLM_CONNX_H
/*
 * Pure-C view of an ONNX ModelProto parsed with ONNX's protobuf classes (generated for protobuf-lite and compiled
 * into this target: Sources/CONNX/onnx). No model knowledge lives here: the shim parses the file, hands out plain
 * structs, and (for the merged-weights export) edits tensor data / node inputs and serializes the model back to a file.
 *
 * Lifetime: every pointer handed out (strings, dims, raw_data, typed data) points into the parsed proto, or for
 * the raw_data of large initializers into a private mapping of the file (zero-copy parsing: the data is never
 * copied into the message), and stays valid until connx_free(), except tensor data released with
 * connx_tensor_release_data(). raw_data pointers carry no alignment guarantee.
 * Strings are NUL-terminated; `s` attributes and raw_data may contain NUL bytes, so they also carry a length.
 * Index arguments are checked: an out-of-range index returns CONNX_ERANGE (or NULL for string getters).
 * No C++ exception escapes any function. Not thread-safe for one model while connx_tensor_release_data() runs;
 * the getters may be called from several threads at once.
 * All symbols have hidden visibility: they are linked into libgfnlm.so but not exported from it.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CONNX_API __attribute__((visibility("hidden")))
#else
#define CONNX_API
#endif

typedef struct connx_model connx_model;

/* Status codes returned by connx_* functions. */
enum {
    CONNX_OK = 0,
    CONNX_EIO = 1,        /* the file cannot be opened or read (missing, a directory, permission) */
    CONNX_EFORMAT = 2,    /* empty, truncated or not an ONNX protobuf */
    CONNX_ETOOLARGE = 3,  /* 2 GiB or more: protobuf cannot parse it; export with external data */
    CONNX_ERANGE = 4,     /* an index out of range, or a NULL argument */
    CONNX_EINTERNAL = 5   /* an unexpected C++ exception (e.g. out of memory) */
};

/* Parses the file at `path`. On success *out receives a model to free with connx_free(). On failure *out is
 * NULL and a message naming the file and the problem is written to err (NUL-terminated, truncated to errlen). */
CONNX_API int connx_open(const char *path, connx_model **out, char *err, size_t errlen);
/* connx_free(NULL) is a no-op. */
CONNX_API void connx_free(connx_model *m);

typedef struct {
    int64_t ir_version;
    const char *producer_name;
    const char *producer_version;
    const char *domain;
    int64_t model_version;
    int32_t opset_count;
    int32_t function_count;       /* ModelProto.functions (model-local functions) */
    int32_t metadata_count;
    int32_t has_graph;
    /* graph counts (0 when has_graph is 0) */
    const char *graph_name;
    int32_t node_count;
    int32_t initializer_count;
    int32_t sparse_initializer_count;
    int32_t input_count;
    int32_t output_count;
    int32_t value_info_count;
} connx_model_info;

CONNX_API int connx_model_get_info(const connx_model *m, connx_model_info *info);
/* Opset import i: domain ("" = ai.onnx) and version. */
CONNX_API int connx_opset(const connx_model *m, int32_t i, const char **domain, int64_t *version);

/* Graph inputs, outputs and value_info entries. */
enum { CONNX_GRAPH_INPUT = 0, CONNX_GRAPH_OUTPUT = 1, CONNX_GRAPH_VALUE_INFO = 2 };

typedef struct {
    const char *name;
    int32_t is_tensor;   /* 1 when the type is a tensor type */
    int32_t elem_type;   /* TensorProto.DataType, 0 when unknown */
    int32_t has_shape;
    int32_t rank;        /* number of dims (0 when has_shape is 0) */
} connx_value;

CONNX_API int connx_value_get(const connx_model *m, int32_t kind, int32_t i, connx_value *out);
/* Dim d of value i: *value = dim_value, or -1 when symbolic/unknown; *param = dim_param ("" when none). */
CONNX_API int connx_value_dim(const connx_model *m, int32_t kind, int32_t i, int32_t d, int64_t *value,
                              const char **param);

typedef struct {
    const char *op_type;
    const char *domain;   /* "" = ai.onnx */
    const char *name;
    int32_t input_count;
    int32_t output_count;
    int32_t attribute_count;
} connx_node;

CONNX_API int connx_node_get(const connx_model *m, int32_t i, connx_node *out);
/* Input/output j of node i ("" for an omitted optional input); NULL when out of range. */
CONNX_API const char *connx_node_input(const connx_model *m, int32_t i, int32_t j);
CONNX_API const char *connx_node_output(const connx_model *m, int32_t i, int32_t j);

typedef struct {
    const char *name;
    int32_t type;              /* AttributeProto.AttributeType: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 5 GRAPH,
                                  6 FLOATS, 7 INTS, 8 STRINGS, 9 TENSORS, 10 GRAPHS, ... */
    float f;
    int64_t i;
    const char *s;             /* bytes of `s` (may hold NULs) */
    size_t s_len;
    const float *floats;
    int64_t floats_count;
    const int64_t *ints;
    int64_t ints_count;
    int32_t strings_count;
    int32_t has_t;             /* a TensorProto in `t` (Constant's `value`): read it with connx_tensor_get */
    int32_t tensors_count;
    int32_t has_g;             /* a subgraph (If/Loop/Scan bodies); not exposed further */
    int32_t graphs_count;
} connx_attribute;

CONNX_API int connx_node_attribute(const connx_model *m, int32_t node, int32_t a, connx_attribute *out);

/* Tensors are addressed by (node, index): node == -1 means graph initializer `index`; otherwise the TensorProto in
 * attribute `index` (its `t` field) of node `node`. */
typedef struct {
    const char *name;
    int32_t data_type;         /* TensorProto.DataType: 1 FLOAT, 6 INT32, 7 INT64, 9 BOOL, 10 FLOAT16, 11 DOUBLE,
                                  16 BFLOAT16, ... */
    int32_t rank;
    const int64_t *dims;       /* rank entries (as stored: may be negative in a hostile file) */
    int32_t has_raw_data;
    const void *raw_data;      /* little-endian bytes; NULL when empty */
    size_t raw_size;
    const float *float_data;   int64_t float_count;
    const int32_t *int32_data; int64_t int32_count;   /* also INT8/16, UINT8/16, BOOL, FLOAT16/BFLOAT16 bits */
    const int64_t *int64_data; int64_t int64_count;
    const double *double_data; int64_t double_count;
    const uint64_t *uint64_data; int64_t uint64_count;
    int32_t string_count;
    int32_t data_location;     /* 0 DEFAULT, 1 EXTERNAL */
    int32_t external_count;    /* external_data key/value entries */
    int32_t has_segment;
} connx_tensor;

CONNX_API int connx_tensor_get(const connx_model *m, int32_t node, int32_t index, connx_tensor *out);
/* external_data entry k of that tensor. */
CONNX_API int connx_tensor_external(const connx_model *m, int32_t node, int32_t index, int32_t k,
                                    const char **key, const char **value);
/* Frees the tensor's raw_data and typed data (a duplicated or unused tensor), keeping its name, type and dims.
 * Every pointer into that data becomes invalid. */
CONNX_API int connx_tensor_release_data(connx_model *m, int32_t node, int32_t index);


/* ---- Editing and writing (used by the merged-weights export) ----
 * These change the parsed proto in memory. Pointers previously handed out for the edited tensor or node input
 * become invalid. None of them is thread-safe: one thread edits a model at a time, with no getter running. */

/* Replaces the data of a tensor (node == -1: initializer `index`; else the `t` of attribute `index` of node
 * `node`) by `size` bytes of little-endian raw_data, and sets its data type and dims. Clears the typed fields
 * (float_data, int32_data, ...), external_data entries and data_location (the data becomes inline). `data` may be
 * NULL only when size is 0. The name is kept. */
CONNX_API int connx_tensor_set_raw(connx_model *m, int32_t node, int32_t index, int32_t data_type,
                                   const int64_t *dims, int32_t rank, const void *data, size_t size);
/* Makes the tensor external: clears raw_data and the typed fields and sets external_data to
 * {location, offset, length} (decimal strings) with data_location = EXTERNAL. */
CONNX_API int connx_tensor_set_external(connx_model *m, int32_t node, int32_t index, const char *location,
                                        int64_t offset, int64_t length);
/* Appends a graph initializer with inline raw_data. *out_index (may be NULL) receives its index. The caller makes
 * sure the name is unique. */
CONNX_API int connx_add_initializer(connx_model *m, const char *name, int32_t data_type, const int64_t *dims,
                                    int32_t rank, const void *data, size_t size, int32_t *out_index);
/* Sets input j of node i to `name` (rewires one edge of the graph). */
CONNX_API int connx_node_set_input(connx_model *m, int32_t i, int32_t j, const char *name);
/* The size in bytes of the serialized model (what connx_save would write). */
CONNX_API int connx_serialized_size(const connx_model *m, uint64_t *out);
/* Serializes the model to a new file at `path` (first copying borrowed raw_data into the message: memory grows by
 * the size of the inline weights; not thread-safe with getters running) (created with O_EXCL, mode 0644; an existing file is an error),
 * then fsyncs and closes it. On failure the partly written file is removed and a message is written to err.
 * CONNX_ETOOLARGE when the serialized model is 2 GiB or more (protobuf's limit: move tensors to external data). */
CONNX_API int connx_save(const connx_model *m, const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
