#ifndef GFNLM_CKERNELS_H
#define GFNLM_CKERNELS_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX-512F, AVX-512VL and AVX512-BF16 (vdpbf16ps), else 0.
int gfk_cpu_has_avx512bf16(void);

#ifdef __cplusplus
}
#endif
#endif
