/* urlquery.h - reading parameters from a URL query string. Pure; any thread. */
#ifndef FV_UTIL_URLQUERY_H
#define FV_UTIL_URLQUERY_H

#include <stddef.h>

/* Copies the %-decoded value of name from a query string ("a=1&b=2") into out (always
 * terminated, cut to outlen - 1 bytes); "name" alone gives "". 1 if present, else 0. */
int fv_query_param(const char *qs, const char *name, char *out, size_t outlen);

#endif
