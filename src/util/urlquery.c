/* urlquery.c - see urlquery.h. */
#include <string.h>

#include "util/urlquery.h"

static int hexd(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int fv_query_param(const char *qs, const char *name, char *out, size_t outlen)
{
    if (qs == NULL || outlen == 0) return 0;
    size_t nl = strlen(name);
    for (const char *p = qs; *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < len && o + 1 < outlen; i++) {
                char c = p[i]; /* '+' stays '+': RFC 3339 offsets use it */
                if (c == '%' && i + 2 < len && hexd(p[i + 1]) >= 0 && hexd(p[i + 2]) >= 0) {
                    c = (char)(hexd(p[i + 1]) << 4 | hexd(p[i + 2]));
                    i += 2;
                }
                out[o++] = c;
            }
            out[o] = '\0';
            return 1;
        }
        if (len == nl && strncmp(p, name, nl) == 0) {
            out[0] = '\0';
            return 1;
        }
        p += len + (amp != NULL);
    }
    return 0;
}

size_t fv_form_decode(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && hexd(s[i + 1]) >= 0 && hexd(s[i + 2]) >= 0) {
            c = (char)(hexd(s[i + 1]) << 4 | hexd(s[i + 2]));
            i += 2;
        }
        s[o++] = c;
    }
    if (o < len) s[o] = '\0';
    return o;
}
