/* The many-row integer product with vpdpbusd, for one instruction set. quant_int_vnni.c includes this file once per
   variant (so no include guard), having defined:
     VNNI_TARGET          the function attribute that enables the variant's instructions;
     VNNI_DPBUSD(a, u, s) a + (per int32 lane) the sum of the 4 products of u's unsigned bytes and s's signed bytes,
                          exactly (vpdpbusd; no saturation);
     VNNI_NAME(x)         x with the variant's suffix.
   It defines VNNI_NAME(gemm), with gfk_q_gemm_int_panel's signature and arithmetic. The panels are the AVX2
   kernel's (quant_panel.h); only the exact block sums S_b are formed differently, so the results are the AVX2 and
   portable kernels' bits:
   - 4- and 6-bit weights: the stored unsigned values q times the signed activations x in one instruction per
     4 bytes of 8 columns, then Σ (q − o)·x = Σ q·x − o·Σ x as in the AVX2 kernel;
   - int8 weights are signed like the activations, so the activations are offset by 128 into unsigned bytes (a xor
     of the sign bit): Σ (x + 128)·w = Σ x·w + 128·Σ w, and 128·Σ w per block and column is taken once per packed
     panel (|Σ (x + 128)·w| ≤ 32·255·127 fits int32). */

// Per block of the packed panel and per column, 128·Σ w (int8 weights only): one vpdpbusd of ones per 4 bytes.
VNNI_TARGET INLINE void VNNI_NAME(panel_sums)(const __m256i *pw, int64_t blocks, int32_t *wsum128) {
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < blocks; b++) {
        __m256i s = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) s = VNNI_DPBUSD(s, ones, _mm256_load_si256(pw + b * 8 + j));
        _mm256_store_si256((__m256i *)(wsum128 + b * 8), _mm256_slli_epi32(s, 7));
    }
}

// Rows m..m + R − 1 (R ≤ 4) against one packed panel of blocks b0..<b1: as panel_rows in quant_int_panel.c.
VNNI_TARGET INLINE void VNNI_NAME(rows)(int format, int R, const int8_t *qx, int64_t xb, const float *dx,
                                        const int32_t *xsum, int64_t nb, int64_t b0, int64_t b1, const __m256i *pw,
                                        const float *pd, const int32_t *wsum128, int c, float *y, int64_t ldy) {
    __m256 acc[PANEL_ROWS];
    panel_acc_start(acc, R, b0, c, y, ldy);
    const __m256i sign_bits = _mm256_set1_epi8((char)0x80);
    for (int64_t b = b0; b < b1; b++) {
        const __m256i *w = pw + (b - b0) * 8;
        __m256i s[PANEL_ROWS];
        for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
        if (format == GFK_Q8) {
            for (int j = 0; j < 8; j++) {
                const __m256i wj = _mm256_load_si256(w + j);
                for (int r = 0; r < R; r++) {
                    const __m256i xv = _mm256_set1_epi32(*(const int32_t *)(qx + r * xb + b * QK + 4 * j));
                    s[r] = VNNI_DPBUSD(s[r], _mm256_xor_si256(xv, sign_bits), wj);   // x + 128 as unsigned
                }
            }
            const __m256i offset = _mm256_load_si256((const __m256i *)(wsum128 + (b - b0) * 8));
            for (int r = 0; r < R; r++) s[r] = _mm256_sub_epi32(s[r], offset);
        } else {
            for (int j = 0; j < 8; j++) {
                const __m256i wj = _mm256_load_si256(w + j);
                for (int r = 0; r < R; r++) {
                    const __m256i xv = _mm256_set1_epi32(*(const int32_t *)(qx + r * xb + b * QK + 4 * j));
                    s[r] = VNNI_DPBUSD(s[r], wj, xv);
                }
            }
            const int o = q_offset(format);
            for (int r = 0; r < R; r++) s[r] = _mm256_sub_epi32(s[r], _mm256_set1_epi32(o * xsum[r * nb + b]));
        }
        panel_acc_block(acc, s, R, dx, nb, b, _mm256_load_ps(pd + (b - b0) * 8));
    }
    panel_acc_park(acc, R, c, y, ldy);
}

VNNI_TARGET static void VNNI_NAME(gemm)(int format, const int8_t *qx, const float *dx, const int32_t *xsum,
                                        int64_t M, int64_t K, const uint8_t *qs, const uint16_t *scales, int64_t n0,
                                        int64_t n1, float *y, int64_t ldy) {
    const int64_t rb = gfk_q_row_bytes(format, K), xb = gfk_q_row_bytes(GFK_Q8, K), nb = gfk_q_blocks(K);
    __m256i pw[PANEL_BLOCKS * 8];
    _Alignas(32) float pd[PANEL_BLOCKS * 8];
    _Alignas(32) int32_t wsum128[PANEL_BLOCKS * 8];
    for (int64_t b0 = 0; b0 < nb; b0 += PANEL_BLOCKS) {
        const int64_t b1 = b0 + PANEL_BLOCKS < nb ? b0 + PANEL_BLOCKS : nb;
        for (int64_t r0 = 0; r0 < M; r0 += ROW_BLOCK) {
            const int64_t r1 = r0 + ROW_BLOCK < M ? r0 + ROW_BLOCK : M;
            for (int64_t n = n0; n < n1; n += PANEL_COLS) {
                const int c = n1 - n < PANEL_COLS ? (int)(n1 - n) : PANEL_COLS;
                const int64_t left = n1 - n - PANEL_COLS;
                pack_panel(format, qs, scales, rb, nb, n, c, left <= 0 ? 0 : left < 8 ? (int)left : 8, b0, b1, pw, pd);
                if (format == GFK_Q8) VNNI_NAME(panel_sums)(pw, b1 - b0, wsum128);
                for (int64_t m = r0; m < r1; m += PANEL_ROWS) {
                    const int R = r1 - m < PANEL_ROWS ? (int)(r1 - m) : PANEL_ROWS;
                    const int8_t *xm = qx + m * xb;
                    const float *dm = dx + m * nb;
                    const int32_t *sm = xsum ? xsum + m * nb : NULL;
                    float *ym = y + m * ldy + n;
#define ROWS(R_) VNNI_NAME(rows)(format, R_, xm, xb, dm, sm, nb, b0, b1, pw, pd, wsum128, c, ym, ldy)
                    switch (R) { case 1: ROWS(1); break; case 2: ROWS(2); break; case 3: ROWS(3); break; default: ROWS(4); }
#undef ROWS
                }
            }
        }
    }
}
