/* What the Swift exports take from the public header itself instead of repeating it: the version string (static
   storage) and the status codes' names (spelled once, as the enumerators of gfn_status_code, and stringified here
   by the preprocessor). Not installed; not part of the ABI. */
#ifndef GFNLM_INTERNAL_H
#define GFNLM_INTERNAL_H

#include "../../../include/gfnlm.h"

static inline const char *_Nonnull gfnlm_internal_version_string(void) { return GFN_VERSION_STRING; }

#define GFNLM_INTERNAL_STATUS_NAME(code) case code: return #code;

static inline const char *_Nonnull gfnlm_internal_status_name(gfn_status status) {
    switch (status) {
    GFNLM_INTERNAL_STATUS_NAME(GFN_OK)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_INVALID_ARGUMENT)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_IO)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_FORMAT)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_UNSUPPORTED)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_OUT_OF_RANGE)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_OUT_OF_MEMORY)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_NUMERICAL)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_CALLBACK)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_STATE)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_INTERNAL)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_CANCELLED)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_BUFFER_TOO_SMALL)
    GFNLM_INTERNAL_STATUS_NAME(GFN_ERR_BUSY)
    default: return "GFN_ERR_UNKNOWN";
    }
}

#undef GFNLM_INTERNAL_STATUS_NAME

#endif
