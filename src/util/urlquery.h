/* urlquery.h - reading parameters from a URL query string. Pure; any thread. */
#ifndef FV_UTIL_URLQUERY_H
#define FV_UTIL_URLQUERY_H

#include <stddef.h>

/* Copies the %-decoded value of name from a query string ("a=1&b=2") into out (always
 * terminated, cut to outlen - 1 bytes); "name" alone gives "". 1 if present, else 0. */
int fv_query_param(const char *qs, const char *name, char *out, size_t outlen);
/* The same as an HTML form encodes it ('+' is a space, as Prometheus clients send it):
 * 1 if present, 0 if not, -1 if its value is longer than outlen - 1 (out holds the start). */
int fv_form_param(const char *qs, const char *name, char *out, size_t outlen);

#endif
