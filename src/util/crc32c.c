/* crc32c.c - table-driven CRC-32C, see crc32c.h. Check value: crc("123456789") = 0xE3069283. */
#include "util/crc32c.h"

static uint32_t crc_table_entry(uint32_t i)
{
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
        c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    return c;
}

#if defined(__x86_64__)
/* SSE 4.2 has the CRC-32C instruction: 8 bytes per step instead of one table lookup per
 * byte (the WAL and the store checksum everything they write and read). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
                                                          size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

static uint32_t crc_sw(uint32_t crc, const void *data, size_t len);

uint32_t fv_crc32c(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return crc_hw(crc, data, len);
#endif
    return crc_sw(crc, data, len);
}

static uint32_t crc_sw(uint32_t crc, const void *data, size_t len)
{
    /* Built on first use; the table is the same whichever thread builds it, and writes of
     * identical values are benign only with atomics, so build it under a once guard. */
    static uint32_t table[256];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        uint32_t t[256];
        for (uint32_t i = 0; i < 256; i++)
            t[i] = crc_table_entry(i);
        for (int i = 0; i < 256; i++)
            __atomic_store_n(&table[i], t[i], __ATOMIC_RELAXED);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    const unsigned char *p = data;
    crc = ~crc;
    while (len--)
        crc = __atomic_load_n(&table[(crc ^ *p++) & 0xff], __ATOMIC_RELAXED) ^ (crc >> 8);
    return ~crc;
}
