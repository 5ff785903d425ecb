// fp32 matrix products with few rows (decoding: one row per sequence in the batch). OpenBLAS's sgemm packs the
// weight matrix on every call -- for M = 8 that is ~3x the weight bytes of traffic, and the head (V x E) is the
// largest matrix of the model. These kernels stream each weight once per call from its stored layout and keep the
// M rows of activations in L1. AVX2 + FMA (the package's x86-64-v3 baseline).
#include "ckernels.h"
#include <immintrin.h>

// y[m, n] = sum_k x[m, k] * w[k, n] for m < M, n0 <= n < n1; w row-major [K, ldw].
// Blocking: w is walked in blocks of NN_KC consecutive rows, w[k0:k0+kc, n0:n1] (for whole rows the block is one
// contiguous stretch of memory, otherwise kc short sequential runs). Inside a block the columns are cut into strips
// of 24 (then 8, then a masked tail) and each strip is multiplied by every group of 4 rows of x with a register tile
// of 4 x 24 accumulators (12 ymm): per k, 3 loads of w and 4 broadcasts of x feed 12 FMAs. y is read and written once
// per block (never read for the first block, which starts from zero), and the strip of w (kc x 96 B) stays in L1 for
// the second and later row groups. Before each strip a few cache lines of the NEXT block are prefetched, in address
// order (row by row), spread evenly over the strips, so DRAM streams one block ahead of the arithmetic. Walking a
// narrow strip down all K rows instead (one new 4 KB page per k) was 2.5x slower; accumulating into y in memory for
// every few rows of w (the previous kernel) was bound by the y loads and stores. kc = 6 measured best of 4..16
// (6 rows x 9 KB = 54 KB for a 2304-wide row: in L2, the strips in L1). Column panels of 240..960 with y kept in L1
// (kc 8..32) were faster from L2 but slower from DRAM: the full-row order streams best.
enum { NN_KC = 6 };

static inline __attribute__((always_inline)) void nn_tile(int rows, int nv, int masked, __m256i mask, size_t kc,
                                                          const float *x, size_t ldx, const float *w, size_t ldw,
                                                          float *y, size_t ldy, int first) {
    __m256 acc[4][3];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nv; j++) {
            if (first) acc[r][j] = _mm256_setzero_ps();
            else if (masked && j == nv - 1) acc[r][j] = _mm256_maskload_ps(y + r * ldy + 8 * j, mask);
            else acc[r][j] = _mm256_loadu_ps(y + r * ldy + 8 * j);
        }
    for (size_t k = 0; k < kc; k++) {
        const float *wk = w + k * ldw;
        __m256 v[3];
        for (int j = 0; j < nv; j++)
            v[j] = masked && j == nv - 1 ? _mm256_maskload_ps(wk + 8 * j, mask) : _mm256_loadu_ps(wk + 8 * j);
        for (int r = 0; r < rows; r++) {
            __m256 b = _mm256_broadcast_ss(x + r * ldx + k);
            for (int j = 0; j < nv; j++) acc[r][j] = _mm256_fmadd_ps(b, v[j], acc[r][j]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nv; j++) {
            if (masked && j == nv - 1) _mm256_maskstore_ps(y + r * ldy + 8 * j, mask, acc[r][j]);
            else _mm256_storeu_ps(y + r * ldy + 8 * j, acc[r][j]);
        }
}

// One strip (nv vectors of 8 columns, the last one masked if `masked`) of one block against all M rows of x, four
// rows at a time, then the last M % 4.
static inline __attribute__((always_inline)) void nn_strip(int nv, int masked, __m256i mask, size_t M, size_t kc,
                                                           const float *x, size_t ldx, const float *w, size_t ldw,
                                                           float *y, size_t ldy, int first) {
    size_t m = 0;
    for (; m + 4 <= M; m += 4) nn_tile(4, nv, masked, mask, kc, x + m * ldx, ldx, w, ldw, y + m * ldy, ldy, first);
    x += m * ldx, y += m * ldy;
    switch (M - m) {
    case 3: nn_tile(3, nv, masked, mask, kc, x, ldx, w, ldw, y, ldy, first); break;
    case 2: nn_tile(2, nv, masked, mask, kc, x, ldx, w, ldw, y, ldy, first); break;
    case 1: nn_tile(1, nv, masked, mask, kc, x, ldx, w, ldw, y, ldy, first); break;
    default: break;
    }
}

// Prefetch cursor over the next block: row `r` of `rows`, column offset `c` (a multiple of 16 floats, one line).
typedef struct { const float *w; size_t ldw, width, rows, r, c; } nn_prefetch;

static inline void nn_prefetch_lines(nn_prefetch *p, size_t lines) {
    for (; lines > 0 && p->r < p->rows; lines--) {
        _mm_prefetch((const char *)(p->w + p->r * p->ldw + p->c), _MM_HINT_T0);
        p->c += 16;
        if (p->c >= p->width) p->c = 0, p->r++;
    }
}

void gfk_sgemm_small_nn(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1) {
    if (n1 <= n0 || M == 0) return;
    if (K == 0) {
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n++) y[m * ldy + n] = 0.f;
        return;
    }
    const size_t width = n1 - n0, tail = width % 8;
    const __m256i none = _mm256_setzero_si256();
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const size_t lines_per_row = (width + 15) / 16, strips = (width + 23) / 24;
    for (size_t k0 = 0; k0 < K; k0 += NN_KC) {
        const size_t kc = K - k0 < NN_KC ? K - k0 : NN_KC, knext = K - k0 - kc;
        nn_prefetch p = {knext ? w + (k0 + kc) * ldw + n0 : w, ldw, width, knext < NN_KC ? knext : NN_KC, 0, 0};
        const size_t per_strip = (p.rows * lines_per_row + strips - 1) / strips;
        const float *xk = x + k0, *wk = w + k0 * ldw;
        const int first = k0 == 0;
        size_t n = n0;
        for (; n + 24 <= n1; n += 24) {
            nn_prefetch_lines(&p, per_strip);
            nn_strip(3, 0, none, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
        }
        nn_prefetch_lines(&p, SIZE_MAX);  // what is left (narrow ranges: fewer than `strips` full strips)
        for (; n + 8 <= n1; n += 8) nn_strip(1, 0, none, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
        if (tail) nn_strip(1, 1, mask, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
    }
}

// The same products for many rows (batched prefill) on a block of w packed contiguously by the caller ([K, ldw]
// with ldw = the block's width): w is walked KC rows at a time and every row of x meets each strip while it is in
// L1. The arithmetic of every element is exactly that of gfk_sgemm_small_nn (acc = fma(x[k], w[k], acc) for
// k = 0, 1, ..., K-1, the accumulator parked in y between blocks), so a row's result does not depend on M, on the
// block cut or on which function computed it. KC = 64 and 48-column blocks measured best (1 thread, K = 768,
// M = 160: 0.8-1.0x OpenBLAS's sgemm; KC = 6, the streaming choice above, is bound by the loads and stores of y).
enum { ROWS_KC = 64 };

void gfk_sgemm_rows_nn(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                       size_t ldy, size_t n0, size_t n1) {
    if (n1 <= n0 || M == 0) return;
    if (K == 0) {
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n++) y[m * ldy + n] = 0.f;
        return;
    }
    const size_t tail = (n1 - n0) % 8;
    const __m256i none = _mm256_setzero_si256();
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (size_t k0 = 0; k0 < K; k0 += ROWS_KC) {
        const size_t kc = K - k0 < ROWS_KC ? K - k0 : ROWS_KC;
        const float *xk = x + k0, *wk = w + k0 * ldw;
        const int first = k0 == 0;
        size_t n = n0;
        for (; n + 24 <= n1; n += 24) nn_strip(3, 0, none, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
        for (; n + 8 <= n1; n += 8) nn_strip(1, 0, none, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
        if (tail) nn_strip(1, 1, mask, M, kc, xk, ldx, wk + n, ldw, y + n, ldy, first);
    }
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[m, n] = sum_k x[m, k] * w[n, k] (w row-major [N, ldw]: the tied head, rows of the token embedding).
// Register tile of 4 rows of x by 3 rows of w (12 ymm accumulators): per 8 k, 3 loads of w and 4 of x feed 12 FMAs.
// Rows of w are consecutive in memory, so w streams sequentially; for M > 4 the next row groups of x find the 3 rows
// of w in L1. The last K % 8 columns go through masked loads (zeros past K), then each accumulator is summed.
// The first row group prefetches the rows NT_PF_ROWS ahead, in address order (row after row, not the three rows side
// by side: one stream for DRAM): the head is 150 MB of 4 KB pages and the hardware prefetcher stops at every page
// boundary. M = 8, one core: 3.6 GB/s before, ~6.9 with the rows prefetched side by side, ~7.8 in address order.
enum { NT_PF_ROWS = 6 };
static inline __attribute__((always_inline)) void nt_tile(int rows, int nw, size_t K, __m256i mask, const float *x,
                                                          size_t ldx, const float *w, size_t ldw, float *y,
                                                          size_t ldy, const float *pf) {
    __m256 a[4][3];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nw; j++) a[r][j] = _mm256_setzero_ps();
    size_t k = 0;
    size_t pr = 0, pc = 0;  // prefetch cursor: row pr of the rows at pf, column pc
    for (; k + 8 <= K; k += 8) {
        __m256 v[3];
        for (int j = 0; j < nw; j++) v[j] = _mm256_loadu_ps(w + j * ldw + k);
        if (pf && (k & 15) == 0)  // nw lines per 16 k: the nw rows ahead in address order, one after the other
            for (int j = 0; j < nw && pr < (size_t)nw; j++) {
                _mm_prefetch((const char *)(pf + pr * ldw + pc), _MM_HINT_T0);
                pc += 16;
                if (pc >= K) pc = 0, pr++;
            }
        for (int r = 0; r < rows; r++) {
            __m256 xv = _mm256_loadu_ps(x + r * ldx + k);
            for (int j = 0; j < nw; j++) a[r][j] = _mm256_fmadd_ps(xv, v[j], a[r][j]);
        }
    }
    if (k < K) {
        __m256 v[3];
        for (int j = 0; j < nw; j++) v[j] = _mm256_maskload_ps(w + j * ldw + k, mask);
        for (int r = 0; r < rows; r++) {
            __m256 xv = _mm256_maskload_ps(x + r * ldx + k, mask);
            for (int j = 0; j < nw; j++) a[r][j] = _mm256_fmadd_ps(xv, v[j], a[r][j]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nw; j++) y[r * ldy + j] = hsum(a[r][j]);
}

// Rows n..n+nw of w against all M rows of x, four at a time, then the last M % 4.
static inline __attribute__((always_inline)) void nt_rows(int nw, size_t M, size_t K, __m256i mask, const float *x,
                                                          size_t ldx, const float *w, size_t ldw, float *y,
                                                          size_t ldy, const float *pf) {
    size_t m = 0;
    for (; m + 4 <= M; m += 4, pf = 0) nt_tile(4, nw, K, mask, x + m * ldx, ldx, w, ldw, y + m * ldy, ldy, pf);
    x += m * ldx, y += m * ldy;
    switch (M - m) {
    case 3: nt_tile(3, nw, K, mask, x, ldx, w, ldw, y, ldy, pf); break;
    case 2: nt_tile(2, nw, K, mask, x, ldx, w, ldw, y, ldy, pf); break;
    case 1: nt_tile(1, nw, K, mask, x, ldx, w, ldw, y, ldy, pf); break;
    default: break;
    }
}

void gfk_sgemm_small_nt(size_t M, size_t K, const float *x, size_t ldx, const float *w, size_t ldw, float *y,
                        size_t ldy, size_t n0, size_t n1) {
    if (n1 <= n0 || M == 0) return;
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(K % 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    size_t n = n0;
    for (; n + 3 <= n1; n += 3)
        nt_rows(3, M, K, mask, x, ldx, w + n * ldw, ldw, y + n, ldy,
                n + 3 + NT_PF_ROWS <= n1 ? w + (n + NT_PF_ROWS) * ldw : 0);
    if (n1 - n == 2) nt_rows(2, M, K, mask, x, ldx, w + n * ldw, ldw, y + n, ldy, 0);
    else if (n1 - n == 1) nt_rows(1, M, K, mask, x, ldx, w + n * ldw, ldw, y + n, ldy, 0);
}
