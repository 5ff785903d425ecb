/* Internal to CKernels: the weight panels that the many-row integer kernels (quant_int_panel.c with AVX2,
   quant_int_vnni.c with vpdpbusd) multiply, and their packing. */
#ifndef GFK_QUANT_PANEL_H
#define GFK_QUANT_PANEL_H

#include "quant_internal.h"

enum {
    PANEL_COLS = 8,          // columns per panel: one int32 lane each
    PANEL_BLOCKS = 64,       // blocks of k per panel: 8 × 2048 bytes = 16 KB, with 2 KB of scales
    PANEL_ROWS = 4,          // rows per register tile
    ROW_BLOCK = 128,         // rows per pass over a panel: their activations (≤ 256 KB a chunk of k) stay in L2
};

// Blocks b0..<b1 of columns n..n + c − 1 (c ≤ 8; the missing columns are zeros) into the panel, prefetching the
// same blocks of the nnext columns after them. Per block 8 registers, register j holding bytes 4j..4j+3 of the
// block of every column (column l in lane l): int8 values for Q8, the unsigned stored values for Q4 (0..15) and Q6
// (0..63); scales as fp32, [block][column]. A transpose of 8 × 8 dwords per block.
AVX2 INLINE void pack_panel(int format, const uint8_t *qs, const uint16_t *scales, int64_t rb, int64_t nb, int64_t n,
                            int c, int nnext, int64_t b0, int64_t b1, __m256i *pw, float *pd) {
    const int64_t block_bytes = q_block_bytes(format);
    for (int64_t b = b0; b < b1; b++) {
        __m256i r[8];
        // With few rows the weights come from DRAM in 8 interleaved streams, which the hardware prefetchers follow
        // poorly: fetch the same block of the next panel's nnext columns now (one row from DRAM: 12.5 against 8.6
        // GFLOP/s without; four rows 36 against 28).
        for (int l = 0; l < nnext; l++) _mm_prefetch((const char *)(qs + (n + 8 + l) * rb + b * block_bytes), _MM_HINT_T0);
        for (int l = 0; l < 8; l++) {
            if (l >= c) { r[l] = _mm256_setzero_si256(); continue; }
            const uint8_t *row = qs + (n + l) * rb;
            r[l] = format == GFK_Q8 ? _mm256_loadu_si256((const __m256i *)(row + b * QK)) : load_unsigned(format, row, b);
        }
        // r[l] = dwords j0..j7 of column l  →  out[j] = dword j of columns 0..7.
        __m256 t[8], u[8];
        for (int l = 0; l < 8; l += 2) {
            t[l] = _mm256_unpacklo_ps(_mm256_castsi256_ps(r[l]), _mm256_castsi256_ps(r[l + 1]));     // j0 j1 | j4 j5
            t[l + 1] = _mm256_unpackhi_ps(_mm256_castsi256_ps(r[l]), _mm256_castsi256_ps(r[l + 1])); // j2 j3 | j6 j7
        }
        for (int h = 0; h < 8; h += 4) {  // columns h..h+3
            u[h + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[h]), _mm256_castps_pd(t[h + 2])));
            u[h + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[h]), _mm256_castps_pd(t[h + 2])));
            u[h + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[h + 1]), _mm256_castps_pd(t[h + 3])));
            u[h + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[h + 1]), _mm256_castps_pd(t[h + 3])));
        }
        // u[h + i] holds dword j = i (low half) and j = i + 4 (high half) of columns h..h+3.
        __m256i *out = pw + (b - b0) * 8;
        for (int i = 0; i < 4; i++) {
            out[i] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
            out[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
        }
        for (int l = 0; l < 8; l++) pd[(b - b0) * 8 + l] = l < c ? scale_at(scales, (n + l) * nb + b) : 0.0f;
    }
}

// The fp32 accumulators of R rows × 8 columns at the start of blocks b0..: +0 for the first chunk of k, else the
// values parked in y (only the c valid columns are read).
AVX2 INLINE void panel_acc_start(__m256 *acc, int R, int64_t b0, int c, const float *y, int64_t ldy) {
    for (int r = 0; r < R; r++) {
        if (b0 == 0) acc[r] = _mm256_setzero_ps();
        else if (c == 8) acc[r] = _mm256_loadu_ps(y + r * ldy);
        else { float t[8] = {0}; memcpy(t, y + r * ldy, (size_t)c * 4); acc[r] = _mm256_loadu_ps(t); }
    }
}

// One block's step of every kernel, in its one rounding order: acc += (float)S · fl(dx[row, b] · d[b, column]), S
// the exact int32 block sums s[r], dw the block's 8 column scales.
AVX2 INLINE void panel_acc_block(__m256 *acc, const __m256i *s, int R, const float *dx, int64_t nb, int64_t b,
                                 __m256 dw) {
    for (int r = 0; r < R; r++)
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(_mm256_broadcast_ss(dx + r * nb + b), dw),
                                 acc[r]);
}

// Parks the accumulators in y (only the c valid columns are written).
AVX2 INLINE void panel_acc_park(const __m256 *acc, int R, int c, float *y, int64_t ldy) {
    for (int r = 0; r < R; r++) {
        if (c == 8) _mm256_storeu_ps(y + r * ldy, acc[r]);
        else { float t[8]; _mm256_storeu_ps(t, acc[r]); memcpy(y + r * ldy, t, (size_t)c * 4); }
    }
}

#endif
