/* Compile-time checks of the public header's struct layouts (the Python bindings mirror them). */
#include "../../include/gfnlm.h"
#include <stddef.h>

_Static_assert(sizeof(gfn_model_params) == 48 && offsetof(gfn_model_params, weight_cache) == 28 &&
                   offsetof(gfn_model_params, quantize_activations) == 40,
               "gfn_model_params layout changed: update bindings/python");
_Static_assert(sizeof(gfn_model_config) == 84, "gfn_model_config layout changed: update bindings/python");
_Static_assert(offsetof(gfn_model_params, tokenizer_path) == 8 && offsetof(gfn_model_params, weight_type) == 16,
               "gfn_model_params: weight_type must follow the first version's 16 bytes");
_Static_assert(sizeof(gfn_distributed_params) == 40 && offsetof(gfn_distributed_params, allreduce) == 16 &&
               offsetof(gfn_distributed_params, exchange_replay) == 32,
               "gfn_distributed_params layout changed: update bindings/python");
_Static_assert(sizeof(gfn_prompt) == 64 && offsetof(gfn_prompt, x) == 8,
               "gfn_prompt layout changed: update bindings/python");
_Static_assert(sizeof(((gfn_gflownet_params *)0)->train) == sizeof(void *),
               "gfn_gflownet_params.train is a pointer (ABI 2): update bindings/python if that changes");
