/* Internal to CKernels (not in include/): what the quantized products' files (quant.c: packing and the
   fp32-activation product; quant_int.c and quant_int_panel.c: the integer products) share. */
#ifndef GFK_QUANT_INTERNAL_H
#define GFK_QUANT_INTERNAL_H

#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define QK GFK_QBLOCK
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* fp16 (IEEE binary16) to fp32: exact, so the same value as F16C's vcvtph2ps for every input. */
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 1023;
    union { uint32_t u; float f; } v;
    if (exp == 31) v.u = sign | 0x7f800000 | man << 13;           // inf, NaN
    else if (exp != 0) v.u = sign | (exp + 112) << 23 | man << 13; // normal: rebias 15 → 127
    else {                                                         // zero, subnormal: man · 2⁻²⁴
        v.f = (float)man * 0x1p-24f;
        v.u |= sign;
    }
    return v.f;
}

/* fp32 to fp16, rounded to nearest (ties to even) like vcvtps2ph; finite inputs beyond the fp16 range become the
   largest finite fp16 of their sign (a scale must stay finite). Packing only. */
static inline uint16_t float_to_half(float f) {
    union { float f; uint32_t u; } v = {f};
    const uint16_t sign = (uint16_t)((v.u >> 16) & 0x8000);
    const uint32_t a = v.u & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;           // NaN
    if (a >= 0x477ff000) return sign | 0x7bff;          // ≥ 65520 rounds to inf: the largest finite instead
    if (a >= 0x38800000) {                              // normal fp16 (≥ 2⁻¹⁴)
        uint32_t r = a - 0x38000000;                    // rebias 127 → 15 (exponent field − 112)
        r += 0xfff + ((r >> 13) & 1);                   // round to nearest even at bit 13
        return sign | (uint16_t)(r >> 13);
    }
    // Subnormal fp16 or zero: |f|·2²⁴ units of 2⁻²⁴ (exact, < 1024), rounded to nearest even; 1024 is the
    // encoding of the smallest normal, which is then the right answer.
    v.u = a;
    return sign | (uint16_t)nearbyintf(v.f * 0x1p24f);
}

/* Bytes of one stored block. */
static inline int q_block_bytes(int format) { return format == GFK_Q4 ? QK / 2 : format == GFK_Q6 ? 3 * QK / 4 : QK; }

/* Element k of a stored weight row as a signed integer (q4: the nibble minus 8; q6: the 6-bit value minus 32). */
static inline int q_value(int format, const uint8_t *qrow, int64_t k) {
    const int64_t b = k / QK, i = k % QK;
    if (format == GFK_Q8) return ((const int8_t *)qrow)[k];
    const uint8_t *blk = qrow + b * q_block_bytes(format);
    const uint8_t byte = blk[i % (QK / 2)];
    const int lo = i < QK / 2 ? (byte & 15) : (byte >> 4);
    if (format == GFK_Q4) return lo - 8;
    const int hi = (blk[QK / 2 + i % 8] >> (2 * (i / 8))) & 3;
    return (lo | hi << 4) - 32;
}

/* The 32 stored nibbles q (0..15) of a block of 4-bit (or the low halves of 6-bit) values at p, in element order,
   one per byte. */
AVX2 INLINE __m256i load_nibbles_at(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));  // one mask for both
}

/* The 32 nibbles of block b of a 4-bit weight row. */
AVX2 INLINE __m256i load_nibbles(const uint8_t *row, int64_t b) { return load_nibbles_at(row + b * (QK / 2)); }

/* The 32 stored 6-bit values q (0..63) of block b of a 6-bit weight row, in element order, one per byte: the low
   nibbles, or'ed with the high two bits (element i's at bit 2·(i / 8) of byte 16 + i % 8, brought to bits 4..5). */
AVX2 INLINE __m256i load_q6(const uint8_t *row, int64_t b) {
    const uint8_t *p = row + b * (3 * QK / 4);
    int64_t bits;
    memcpy(&bits, p + QK / 2, sizeof bits);
    const __m256i high = _mm256_set1_epi64x(bits);  // the 8 high bytes in every quarter
    const __m256i h = _mm256_and_si256(_mm256_srlv_epi64(high, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
    return _mm256_or_si256(load_nibbles_at(p), _mm256_slli_epi16(h, 4));
}

/* The unsigned stored values of blocks b and b + 1 (q4: 0..15, q6: 0..63; not for Q8), split by halves so that one
   32-byte load serves two 4-bit blocks: lo = elements 0..15 of block b | of block b + 1 (the two 128-bit lanes),
   hi = elements 16..31 of block b | of block b + 1. */
AVX2 INLINE void load_unsigned_pair(int format, const uint8_t *row, int64_t b, __m256i *lo, __m256i *hi) {
    const __m256i mask = _mm256_set1_epi8(15);
    __m256i nibbles;
    if (format == GFK_Q4) {
        nibbles = _mm256_loadu_si256((const __m256i *)(row + b * (QK / 2)));
    } else {
        const uint8_t *p = row + b * (3 * QK / 4);
        nibbles = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(p + 3 * QK / 4)), _mm_loadu_si128((const __m128i *)p));
    }
    *lo = _mm256_and_si256(nibbles, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(nibbles, 4), mask);
    if (format == GFK_Q6) {  // high bits of element i at bit 2·(i / 8) of byte 16 + i % 8 of its block
        const uint8_t *p = row + b * (3 * QK / 4);
        int64_t bits0, bits1;
        memcpy(&bits0, p + QK / 2, sizeof bits0);
        memcpy(&bits1, p + 3 * QK / 4 + QK / 2, sizeof bits1);
        const __m256i high = _mm256_set_epi64x(bits1, bits1, bits0, bits0), three = _mm256_set1_epi8(3);
        const __m256i hl = _mm256_and_si256(_mm256_srlv_epi64(high, _mm256_setr_epi64x(0, 2, 0, 2)), three);
        const __m256i hh = _mm256_and_si256(_mm256_srlv_epi64(high, _mm256_setr_epi64x(4, 6, 4, 6)), three);
        *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(hl, 4));
        *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(hh, 4));
    }
}

/* The unsigned stored values of block b (q4: 0..15, q6: 0..63; not for Q8). */
AVX2 INLINE __m256i load_unsigned(int format, const uint8_t *row, int64_t b) {
    return format == GFK_Q6 ? load_q6(row, b) : load_nibbles(row, b);
}

/* The offset that unsigned stored values carry: value = q − offset (Q4: 8, Q6: 32). */
static inline int q_offset(int format) { return format == GFK_Q6 ? 32 : 8; }

/* The 32 signed values of block b of a weight row, as int8. */
AVX2 INLINE __m256i load_block(int format, const uint8_t *row, int64_t b) {
    if (format == GFK_Q4) return _mm256_sub_epi8(load_nibbles(row, b), _mm256_set1_epi8(8));
    if (format == GFK_Q6) return _mm256_sub_epi8(load_q6(row, b), _mm256_set1_epi8(32));
    return _mm256_loadu_si256((const __m256i *)(row + b * QK));
}

/* Scale s of a row of fp16 scales as fp32 (F16C in the AVX2 kernels: the same value as half_to_float). */
AVX2 INLINE float scale_at(const uint16_t *s, int64_t i) { return _cvtsh_ss(s[i]); }

/* The fp16 scales s[0..8) as fp32, or the `left` < 8 there are followed by zeros (nothing read past them). */
AVX2 INLINE __m256 load_scales8(const uint16_t *s, int64_t left) {
    if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s));
    uint16_t t[8] = {0};
    memcpy(t, s, (size_t)left * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
}

/* The integer products' arithmetic in plain C (quant_int.c): what both AVX2 integer kernels reproduce bit for bit,
   and what they run on CPUs without AVX2. */
void gfk_q_gemm_int_portable(int format, const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                             const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy);

/* The many-row integer products (gfk_q_gemm_int_panel's signature and bits): the AVX2 kernel (quant_int_panel.c),
   and the VNNI ones (quant_int_vnni.c): AVX-VNNI, AVX512-VNNI, and an exact AVX2 emulation of vpdpbusd that the
   tests run on any machine. gfk_q_vnni_kernel: the checked VNNI kernel to use, or NULL for the AVX2 one. */
typedef void (*gfk_q_panel_fn)(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                               int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                               int64_t ldy);
void gfk_q_gemm_int_panel_avx2(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                               int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                               int64_t ldy);
void gfk_q_gemm_int_panel_vnni_emulated(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                        int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                        float *y, int64_t ldy);
void gfk_q_gemm_int_panel_avx_vnni(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                   int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                   float *y, int64_t ldy);
void gfk_q_gemm_int_panel_avx512_vnni(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                      int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                      float *y, int64_t ldy);
gfk_q_panel_fn gfk_q_vnni_kernel(void);
/* 1 when the candidate gives the AVX2 kernel's bits on small products of every format (ragged shapes included);
   otherwise 0 and the first difference in why. */
int gfk_q_vnni_selfcheck(gfk_q_panel_fn candidate, char *why, size_t capacity);

/* ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): the fp32-activation kernel's final sum of its eight lanes. */
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
