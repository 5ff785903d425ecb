#include "ckernels.h"

int gfk_cpu_has_avx512bf16(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int gfk_equal_transposed_u32(const uint32_t *a, const uint32_t *b, size_t rows, size_t cols) {
    enum { BJ = 16 };  // 16 columns of a = one 64-byte line per row i; 16 rows of b streamed side by side
    size_t j0 = 0;
    for (; j0 + BJ <= cols; j0 += BJ) {
        const uint32_t *bb = b + j0 * rows;
        uint32_t diff = 0;
        for (size_t i = 0; i < rows; i++) {
            const uint32_t *ar = a + i * cols + j0;
            for (int k = 0; k < BJ; k++) diff |= ar[k] ^ bb[(size_t)k * rows + i];
        }
        if (diff) return 0;
    }
    for (; j0 < cols; j0++)
        for (size_t i = 0; i < rows; i++)
            if (a[i * cols + j0] != b[j0 * rows + i]) return 0;
    return 1;
}
