/*
 * crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * on-disk record. Chosen over CRC-32 for its better error detection on short blocks and its
 * hardware support. Pure function, thread-safe.
 */
#ifndef FV_UTIL_CRC32C_H
#define FV_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of data; returns the new CRC. */
uint32_t fv_crc32c(uint32_t crc, const void *data, size_t len);

#endif
