/* err.c - messages for the error table in err.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "util/err.h"

const char *fv_strerror(int code)
{
    switch (code) {
#define FV_ERR_CASE(name, val, msg)                                                                \
    case (val):                                                                                    \
        return (msg);
        FV_ERR_TABLE(FV_ERR_CASE)
#undef FV_ERR_CASE
    default:
        return "unknown error";
    }
}

void fv_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
