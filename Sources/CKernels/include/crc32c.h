#ifndef GFNLM_CRC32C_H
#define GFNLM_CRC32C_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, the checksum of iSCSI, ext4 and SSE4.2's crc32
/// instruction) of `n` bytes, continuing from `crc` (0 for a fresh checksum; pass a previous result to extend
/// it). gfk_crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t gfk_crc32c(uint32_t crc, const void *data, size_t n);
/// The same with the portable table-driven code whatever the CPU (tests compare the two).
uint32_t gfk_crc32c_portable(uint32_t crc, const void *data, size_t n);
/// 1 when gfk_crc32c uses the SSE4.2 instruction, 0 for the portable code.
int gfk_crc32c_is_hardware(void);

#ifdef __cplusplus
}
#endif
#endif
