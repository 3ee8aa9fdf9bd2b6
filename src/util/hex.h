/* hex.h - bytes as lower-case hexadecimal text. Pure; any thread. */
#ifndef FV_UTIL_HEX_H
#define FV_UTIL_HEX_H

#include <stddef.h>

/* Writes the 2n hex digits of p[0..n) and a NUL to out (2n + 1 bytes). */
void fv_hex(const void *p, size_t n, char *out);

#endif
