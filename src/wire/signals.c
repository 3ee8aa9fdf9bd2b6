/* signals.c - lookups over the generated tables in signals_table.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/signals.h"
#include "wire/site.h"

const char *fv_signal_name(unsigned n)
{
    return n < fv_signal_count ? fv_signal_names[n] : fv_site_signal_name(n);
}

long fv_signal_lookup(const char *name)
{
    if (name == NULL || *name == '\0') return -1;
    if (name[0] >= '0' && name[0] <= '9') {
        char *end;
        unsigned long v = strtoul(name, &end, 10);
        return (*end == '\0' && v <= 0x7fffffffUL) ? (long)v : -1;
    }
    for (unsigned i = 0; i < fv_signal_count; i++)
        if (strcmp(fv_signal_names[i], name) == 0) return (long)i;
    for (unsigned n = FV_SIG_SITE_FIRST; n < FV_SIG_SITE_END; n++)
        if (strcmp(fv_site_signal_name(n), name) == 0) return (long)n;
    return -1;
}

const char *fv_signal_label(unsigned n, char *buf, size_t len)
{
    const char *name = fv_signal_name(n);
    if (name)
        snprintf(buf, len, "%s", name);
    else
        snprintf(buf, len, "%u", n);
    return buf;
}
