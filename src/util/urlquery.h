/* urlquery.h - reading parameters from a URL query string. Pure; any thread. */
#ifndef FV_UTIL_URLQUERY_H
#define FV_UTIL_URLQUERY_H

#include <stddef.h>

/* Copies the %-decoded value of name from a query string ("a=1&b=2") into out (always
 * terminated, cut to outlen - 1 bytes); "name" alone gives "". 1 if present, else 0. */
int fv_query_param(const char *qs, const char *name, char *out, size_t outlen);
/* Decodes a POST's application/x-www-form-urlencoded body in place the way the HTTP layer
 * hands over a URL's query string (libwebsockets: %XX is the byte, '+' a space; '&' and '='
 * stay separators), so that both read alike with fv_query_param. Returns the new length. */
size_t fv_form_decode(char *s, size_t len);

#endif
