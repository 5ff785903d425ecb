/* Compile-time checks of the public header's struct layouts (the Python bindings mirror them). */
#include "../../include/gfnlm.h"

_Static_assert(sizeof(gfn_model_params) == 16, "gfn_model_params layout changed: update bindings/python");
_Static_assert(sizeof(gfn_model_config) == 84, "gfn_model_config layout changed: update bindings/python");
