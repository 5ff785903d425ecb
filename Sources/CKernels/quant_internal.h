/* Internal to CKernels (not in include/): what the quantized products' two files (quant.c: packing and the
   fp32-activation product; quant_int.c: the integer product) share. */
#ifndef GFK_QUANT_INTERNAL_H
#define GFK_QUANT_INTERNAL_H

#include "ckernels.h"
#include <immintrin.h>
#include <stdint.h>

#define QK GFK_QBLOCK
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Element k of a stored weight row as a signed integer (q4: the nibble minus 8). */
static inline int q_value(int format, const uint8_t *qrow, int64_t k) {
    if (format == GFK_Q4) {
        int64_t b = k / QK, i = k % QK;
        uint8_t byte = qrow[b * (QK / 2) + (i % (QK / 2))];
        return (i < QK / 2 ? (byte & 15) : (byte >> 4)) - 8;
    }
    return ((const int8_t *)qrow)[k];
}

/* The 32 stored nibbles q (0..15) of block b of a 4-bit weight row, in element order, one per byte. */
AVX2 INLINE __m256i load_nibbles(const uint8_t *row, int64_t b) {
    const __m128i p = _mm_loadu_si128((const __m128i *)(row + b * (QK / 2)));
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(15)), _mm_and_si128(p, _mm_set1_epi8(15)));
}

/* The 32 signed values of block b of a weight row, as int8. */
AVX2 INLINE __m256i load_block(int format, const uint8_t *row, int64_t b) {
    if (format == GFK_Q4) return _mm256_sub_epi8(load_nibbles(row, b), _mm256_set1_epi8(8));
    return _mm256_loadu_si256((const __m256i *)(row + b * QK));
}

/* ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): every kernel's final sum of its eight lanes. */
AVX2 INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Calls TILE(R_, C_) with compile-time constants for the few-row paths' register tiles: R ≤ 4 rows by c columns,
   c = 1 (the last columns) or the path's width for its row count (1 × 4, 2 × 3, else 2). Both few-row kernels
   (quant.c, quant_int.c) instantiate their tiles through it, so the shapes stay the same in both. */
#define GFK_FEW_TILE_SHAPES(R, c, TILE)                                                                          \
    do {                                                                                                        \
        if ((c) == 1) {                                                                                         \
            switch (R) { case 1: TILE(1, 1); break; case 2: TILE(2, 1); break; case 3: TILE(3, 1); break;        \
                         default: TILE(4, 1); }                                                                  \
        } else if ((R) == 1 && (c) == 4) TILE(1, 4);                                                            \
        else if ((R) == 2 && (c) == 3) TILE(2, 3);                                                              \
        else if ((R) == 1) TILE(1, 2);                                                                          \
        else if ((R) == 2) TILE(2, 2);                                                                          \
        else if ((R) == 3) TILE(3, 2);                                                                          \
        else TILE(4, 2);                                                                                        \
    } while (0)

#endif
