/*
 * query_int.h - internal to the query endpoints (src/api/query.c, query_agg.c, fleetview.c);
 * not a public contract: callers use query.h.
 *
 * struct qctx is one streaming /api/v1/query answer: made by fv_api_query, filled chunk by
 * chunk by the response's `more` callback, freed by its `free_ctx`. With aggs set, rows are
 * buckets (query_agg.c): at most one bucket is open (q->open), and it is emitted when a row
 * of a later bucket arrives or the data ends.
 *
 * Threading: the API thread only (query.h).
 */
#ifndef FV_API_QUERY_INT_H
#define FV_API_QUERY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "api/query.h"
#include "privacy/guard.h"
#include "store/store.h"

#define MAX_FIELDS 256

/* Aggregates, as bits of qctx.aggs; fv_query__ag_names[k] names bit 1 << k. */
enum { AG_MIN = 1, AG_MAX = 2, AG_AVG = 4, AG_SUM = 8, AG_COUNT = 16, AG_FIRST = 32, AG_LAST = 64 };
extern const char *const fv_query__ag_names[7];

struct agg {
    uint64_t count, nnum;
    double sum, min, max;
    struct fv_value first, last; /* owned */
};

struct qctx {
    struct fv_guard *guard;
    struct fv_guard_ctx ctx; /* who reads, and the obligations */
    uint64_t bytes;
    struct fv_store_cursor *cur;
    int csv;
    unsigned aggs;
    int64_t step, from, to;
    uint32_t fields[MAX_FIELDS];
    size_t nfields; /* 0: all (raw JSON only) */
    uint64_t rows, limit;
    int started, truncated;
    char device[80];
    char pseudo[65]; /* the subject's keyed pseudonym: what logs name (never the VIN) */
    /* aggregation */
    struct agg ag[MAX_FIELDS];
    int64_t bucket;
    int open;
    uint64_t min_records;        /* P8: a value of fewer records is not served (0: any) */
    uint64_t suppressed;         /* values so withheld */
    struct fv_guard_meter meter; /* G5: what this chunk may still serve */
};

/* query.c */
/* Appends the formatted text, cut at 255 bytes. */
int fv_query__putf(struct fv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes r a JSON error answer {"error": msg} with status. */
void fv_query__json_error(struct fv_http_response *r, int status, const char *msg);
/* Appends the signal's name (its number when unnamed). */
int fv_query__put_label(struct fv_buf *b, uint32_t field);
/* The withheld intervals (G8) of a subject's track around [from, to], into ctx. Fails
 * closed: on an error every location is withheld. */
void fv_query__load_trim(const struct fv_api_view *v, struct fv_guard_ctx *ctx, const char *pseudo,
                         const unsigned char *dek, int64_t from, int64_t to);

/* Before a row: may it be served (the request's limit, G5 the daily quota)? 0: no, and the
 * answer is marked truncated - end it. */
int fv_query__row_room(struct qctx *q);
/* After a row appended to b from mark: counts it, or, when it passes the bytes the quota
 * leaves (G5), cuts it off again and returns 0. */
int fv_query__row_done(struct qctx *q, struct fv_buf *b, size_t mark);

/* query_agg.c */
/* P8 for an aggregate_only role: sets ctx->refuse when the request breaks the role's
 * aggregate limits, else aligns q's range to whole buckets and sets q->min_records. */
void fv_query__agg_limits(const struct fv_api_view *v, struct fv_guard_ctx *ctx, struct qctx *q);
/* agg=F[,F...] as AG_* bits; FV_EINVAL for an unknown or empty list. */
int fv_query__parse_aggs(const char *s, unsigned *out);
/* Exactly one aggregate asked for (rendered bare rather than as an object). */
int fv_query__single_agg(unsigned a);
/* Clears the open bucket. */
void fv_query__agg_reset(struct qctx *q);
/* Emits the open bucket, if any, as a row (or marks the answer truncated at the limit). */
int fv_query__emit_bucket(struct qctx *q, struct fv_buf *b);
/* Adds a chunk's rows to the buckets, emitting each bucket the chunk leaves behind. */
int fv_query__add_to_buckets(struct qctx *q, const struct fv_store_chunk *ch, struct fv_buf *b);

#endif
