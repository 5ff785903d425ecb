// The integer product for many rows (ckernels.h: gfk_q_gemm_int_panel): activations quantized per row to Q8 blocks,
// weights repacked on the fly into panels of 8 columns whose 4-byte groups are interleaved, as llama.cpp's repacked
// Q4_0 / Q8_0 "x8" layouts are. One broadcast of 4 activation bytes then multiplies 8 columns at once, and a block's
// 32 products of each column are summed in integers across the whole block before a single conversion and scaling:
// per 256 multiply-adds one convert and one FMA, and no horizontal sums (the per-column kernel, quant_int.c, needs
// three vphaddd per 4 columns to reach the same block sums).
// 4-bit weights gain most: their nibbles (0..15) multiply unsigned, so a row's pair sums stay in int16 for a whole
// block (8 steps × 2 × 15 × 127 < 2¹⁵), and one vpmaddubsw + one vpaddw do 32 multiply-adds. 6-bit values (0..63)
// multiply unsigned too, but their pair sums go on to int32 at every step, as int8's do.
//
// The arithmetic (gfk_q_gemm_int_portable defines it, and gfk_q_gemm_int, the few-row kernel, shares it bit for
// bit): per (row, column) one fp32 accumulator a = +0, and for each block b in order a = fma((float)S_b,
// dx[b]·d[b], a), where S_b is the exact int32 dot product of the block's 32 pairs (|S_b| ≤ 32·127² is exact in
// fp32) and dx[b]·d[b] is rounded to fp32 first. Every output depends on its own row and column only, so the product
// is row-invariant: a row's result depends neither on the number of rows, nor on the split of columns over threads,
// nor on which of the two kernels or AVX2 / portable code computed it.
#include "quant_panel.h"
#include <math.h>
#include <string.h>

/* ---- AVX2 kernel ------------------------------------------------------------------------------------------ */

// Rows m..m + R − 1 (R ≤ 4) against one packed panel of blocks b0..<b1: the fp32 accumulators of the 8 columns start
// at +0 (first chunk of k) or at y's parked values, and are parked in y again (only the c valid columns).
AVX2 INLINE void panel_rows(int format, int R, const int8_t *qx, int64_t xb, const float *dx, const int32_t *xsum,
                            int64_t nb, int64_t b0, int64_t b1, const __m256i *pw, const float *pd, int c, float *y,
                            int64_t ldy) {
    __m256 acc[PANEL_ROWS];
    panel_acc_start(acc, R, b0, c, y, ldy);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = b0; b < b1; b++) {
        const __m256i *w = pw + (b - b0) * 8;
        __m256i s[PANEL_ROWS];
        if (format == GFK_Q4) {
            // Pair sums of nibble × x stay within int16 for the whole block: 8 steps × 2 × 15 × 127 = 30480.
            for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                const __m256i wj = _mm256_load_si256(w + j);
                for (int r = 0; r < R; r++) {
                    const __m256i xv = _mm256_set1_epi32(*(const int32_t *)(qx + r * xb + b * QK + 4 * j));
                    s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(wj, xv));
                }
            }
            for (int r = 0; r < R; r++)  // Σ (q − 8)·x = Σ q·x − 8·Σ x
                s[r] = _mm256_sub_epi32(_mm256_madd_epi16(s[r], ones), _mm256_set1_epi32(8 * xsum[r * nb + b]));
        } else if (format == GFK_Q6) {
            // Unsigned 0..63 × x: pair sums reach 2·63·127, so each step goes on to int32 at once.
            for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                const __m256i wj = _mm256_load_si256(w + j);
                for (int r = 0; r < R; r++) {
                    const __m256i xv = _mm256_set1_epi32(*(const int32_t *)(qx + r * xb + b * QK + 4 * j));
                    s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(_mm256_maddubs_epi16(wj, xv), ones));
                }
            }
            for (int r = 0; r < R; r++)  // Σ (q − 32)·x = Σ q·x − 32·Σ x
                s[r] = _mm256_sub_epi32(s[r], _mm256_set1_epi32(32 * xsum[r * nb + b]));
        } else {
            // Signed × signed through vpmaddubsw: |w| times x carrying w's sign; pair sums can reach 2·127², so each
            // step goes on to int32 at once.
            for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++) {
                const __m256i wj = _mm256_load_si256(w + j), aw = _mm256_sign_epi8(wj, wj);
                for (int r = 0; r < R; r++) {
                    const __m256i xv = _mm256_set1_epi32(*(const int32_t *)(qx + r * xb + b * QK + 4 * j));
                    s[r] = _mm256_add_epi32(s[r],
                                            _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wj)), ones));
                }
            }
        }
        panel_acc_block(acc, s, R, dx, nb, b, _mm256_load_ps(pd + (b - b0) * 8));
    }
    panel_acc_park(acc, R, c, y, ldy);
}

AVX2 INLINE void gemm_panel_avx2_fmt(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                                     int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1,
                                     float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    __m256i pw[PANEL_BLOCKS * 8];
    _Alignas(32) float pd[PANEL_BLOCKS * 8];
    for (int64_t b0 = 0; b0 < nb; b0 += PANEL_BLOCKS) {
        const int64_t b1 = b0 + PANEL_BLOCKS < nb ? b0 + PANEL_BLOCKS : nb;
        for (int64_t r0 = 0; r0 < M; r0 += ROW_BLOCK) {  // each panel is packed once per block of rows
            const int64_t r1 = r0 + ROW_BLOCK < M ? r0 + ROW_BLOCK : M;
            for (int64_t n = n0; n < n1; n += PANEL_COLS) {
                const int c = n1 - n < PANEL_COLS ? (int)(n1 - n) : PANEL_COLS;
                const int64_t left = n1 - n - PANEL_COLS;  // columns of the next panel, prefetched while packing
                pack_panel(format, qs, scales, rb, nb, n, c, left <= 0 ? 0 : left < 8 ? (int)left : 8, b0, b1, pw, pd);
                for (int64_t m = r0; m < r1; m += PANEL_ROWS) {
                    const int R = r1 - m < PANEL_ROWS ? (int)(r1 - m) : PANEL_ROWS;
                    const int8_t *xm = qx + m * xb;
                    const float *dm = dx + m * nb;
                    const int32_t *sm = xsum ? xsum + m * nb : NULL;
                    float *ym = y + m * ldy + n;
#define ROWS(R_) panel_rows(format, R_, xm, xb, dm, sm, nb, b0, b1, pw, pd, c, ym, ldy)
                    switch (R) { case 1: ROWS(1); break; case 2: ROWS(2); break; case 3: ROWS(3); break; default: ROWS(4); }
#undef ROWS
                }
            }
        }
    }
}

AVX2 static void gemm_panel_avx2_q8(const int8_t *qx, const float *dx, int64_t M, int64_t K, const uint8_t *qs,
                                    const uint16_t *sc, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    gemm_panel_avx2_fmt(GFK_Q8, qx, dx, NULL, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_panel_avx2_q4(const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                                    const uint8_t *qs, const uint16_t *sc, int64_t n0, int64_t n1, float *y,
                                    int64_t ldy) {
    gemm_panel_avx2_fmt(GFK_Q4, qx, dx, xsum, M, K, qs, sc, n0, n1, y, ldy);
}
AVX2 static void gemm_panel_avx2_q6(const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                                    const uint8_t *qs, const uint16_t *sc, int64_t n0, int64_t n1, float *y,
                                    int64_t ldy) {
    gemm_panel_avx2_fmt(GFK_Q6, qx, dx, xsum, M, K, qs, sc, n0, n1, y, ldy);
}

void gfk_q_activation_sums(const int8_t *qx, int64_t M, int64_t K, int32_t *xsum) {
    const int64_t xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    for (int64_t m = 0; m < M; m++)
        for (int64_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < QK; i++) s += qx[m * xb + b * QK + i];
            xsum[m * nb + b] = s;
        }
}

void gfk_q_gemm_int_panel_avx2(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M,
                               int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y,
                               int64_t ldy) {
    if (format == GFK_Q4) gemm_panel_avx2_q4(qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
    else if (format == GFK_Q6) gemm_panel_avx2_q6(qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
    else gemm_panel_avx2_q8(qx, dx, M, K, qs, scales, n0, n1, y, ldy);
}

void gfk_q_gemm_int_panel(int format, const int8_t *qx, const float *dx, const int32_t *xsum, int64_t M, int64_t K,
                          const uint8_t *qs, const uint16_t *scales, int64_t n0, int64_t n1, float *y, int64_t ldy) {
    if (n1 <= n0 || M <= 0) return;
    if (gfk_q_kernel_is_avx2()) {
        const gfk_q_panel_fn vnni = gfk_q_vnni_kernel();   // quant_int_vnni.c: where the CPU has it and it checked out
        if (vnni) vnni(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
        else gfk_q_gemm_int_panel_avx2(format, qx, dx, xsum, M, K, qs, scales, n0, n1, y, ldy);
    } else {
        gfk_q_gemm_int_portable(format, qx, dx, M, K, qs, scales, n0, n1, y, ldy);
    }
}
