/* fuzzcheck.h - the fuzz targets' property check: a property that does not hold aborts with
 * where and what, which libFuzzer reports as a crash and keeps the input of. */
#ifndef FV_TESTS_FUZZCHECK_H
#define FV_TESTS_FUZZCHECK_H

#include <stdio.h>
#include <stdlib.h>

#define check(ok)                                                                                  \
    do {                                                                                           \
        if (!(ok)) {                                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #ok);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
