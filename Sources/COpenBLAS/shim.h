#ifndef GFNLM_COPENBLAS_SHIM_H
#define GFNLM_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
