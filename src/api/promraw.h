/*
 * promraw.h - the raw series a shard's owner sends an api node for a Prometheus query across
 * a cluster (docs/cluster.md "Prometheus through an api node"; the format: docs/formats.md,
 * "Raw series of a Prometheus query"): for each selector of the expression, in the order
 * fv_prom_selectors lists them, the series the owner read for the principal (its decision,
 * obligations and consent applied) with their samples; and the subjects its decision counted
 * (the devices of its shards, for the api node's decision on the whole: Q10).
 *
 * Encoding (little-endian): "FVPR", u32 version (1), u64 subjects, u32 selectors; per
 * selector u32 series; per series three labels (__name__, signal, device: u8 length, bytes),
 * u32 samples, the times (i64 ms, ascending) then the values (IEEE 754 binary64 bits).
 *
 * Pure and reentrant: any thread.
 */
#ifndef FV_API_PROMRAW_H
#define FV_API_PROMRAW_H

#include <stddef.h>
#include <stdint.h>

#include "api/promeval.h"
#include "util/buf.h"

#define FV_PROMRAW_VERSION 1

/* The series of every selector, several shards' answers decoded into one. */
struct fv_promraw {
    uint64_t subjects; /* summed over the answers decoded */
    size_t nsel;
    struct fv_promraw_sel {
        struct fv_pe_raw *s;
        size_t n, cap;
    } * sel;
};

/* The header: FV_OK or FV_ENOMEM. */
int fv_promraw_begin(struct fv_buf *out, uint64_t subjects, uint32_t nsel);
/* One selector's series (after the header, in order). FV_OK or FV_ENOMEM. */
int fv_promraw_add_sel(struct fv_buf *out, const struct fv_pe_raw *s, size_t n);
/* Appends the series of an encoding to r (r zeroed before the first; every answer must have
 * as many selectors as the first). FV_OK, FV_EINVAL (malformed: truncated, a label too long or
 * holding a NUL, times going back, trailing bytes, another selector count; r's series are
 * then as before), FV_ENOMEM. */
int fv_promraw_decode(const void *data, size_t len, struct fv_promraw *r);
/* A copy of selector i's series (the evaluator's fetch output: promeval.h); NULL and 0 for
 * none. FV_OK or FV_ENOMEM. */
int fv_promraw_copy(const struct fv_promraw *r, size_t i, struct fv_pe_raw **out, size_t *n);
void fv_promraw_free(struct fv_promraw *r);

#endif
