// CRC-32C for the weight cache's payload checksums (docs/formats.md, "Weight cache").
//
// With SSE4.2 the crc32 instruction handles 8 bytes per step; one dependency chain runs at about 8 bytes per 3
// cycles (the instruction's latency), so three independent chains over thirds of each 24 KiB block are combined at
// the end with a shift by multiplication in GF(2) — about 3× one chain, near memory speed. Without SSE4.2 a
// slice-by-8 table does 8 bytes per step in plain C.
#include "crc32c.h"

#include <string.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static int table_ready;

static void make_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (POLY & (0u - (c & 1)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = table[0][i];
        for (int t = 1; t < 8; t++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[t][i] = c;
        }
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t gfk_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    // Racing first calls both build the same table: the writes are identical values.
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) make_table();
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c;
        c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff]
          ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8; n -= 8;
    }
    while (n--) c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
// Multiplication of a and b, polynomials over GF(2) in the reflected bit order, modulo the CRC polynomial.
static uint32_t gf2_multiply(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        product ^= (0u - (b >> 31)) & a;
        a = (a >> 1) ^ (POLY & (0u - (a & 1)));
        b <<= 1;
    }
    return product;
}

// x^(8·bytes) mod P (reflected): multiplying a CRC register by it appends `bytes` zero bytes, which is how a
// chain's CRC is moved past the chains after it. By square-and-multiply from x^8.
static uint32_t shift_constant(size_t bytes) {
    uint32_t result = 0x80000000u;          // x^0
    uint32_t power = 0x00800000u;           // x^8
    size_t e = bytes;
    while (e) {
        if (e & 1) result = gf2_multiply(result, power);
        power = gf2_multiply(power, power);
        e >>= 1;
    }
    return result;
}

#define CHAIN 8192                          // bytes per chain in a block (three chains per block)
static uint32_t chain_shift;                // x^(8·CHAIN) mod P
static int chain_shift_ready;

__attribute__((target("sse4.2")))
static uint32_t hw_crc(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    if (n >= 3 * CHAIN) {
        if (!__atomic_load_n(&chain_shift_ready, __ATOMIC_ACQUIRE)) {
            chain_shift = shift_constant(CHAIN);
            __atomic_store_n(&chain_shift_ready, 1, __ATOMIC_RELEASE);
        }
        const uint32_t k = chain_shift;
        while (n >= 3 * CHAIN) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *p1 = p + CHAIN, *p2 = p + 2 * CHAIN;
            for (size_t i = 0; i < CHAIN; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8); memcpy(&w1, p1 + i, 8); memcpy(&w2, p2 + i, 8);
                c = _mm_crc32_u64(c, w0);
                c1 = _mm_crc32_u64(c1, w1);
                c2 = _mm_crc32_u64(c2, w2);
            }
            // crc(A·B) = shift(crc(A), |B|) ^ crc(B) for the raw (un-inverted) register values.
            c = gf2_multiply((uint32_t)c, k) ^ c1;
            c = gf2_multiply((uint32_t)c, k) ^ c2;
            p += 3 * CHAIN; n -= 3 * CHAIN;
        }
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8; n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

int gfk_crc32c_is_hardware(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    return 0;
#endif
}

uint32_t gfk_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return hw_crc(crc, data, n);
#endif
    return gfk_crc32c_portable(crc, data, n);
}
