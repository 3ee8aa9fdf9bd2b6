/*
 * exports_int.h - what the two halves of bulk exports (exports.h) share: exports.c (the
 * table, requests, approvals, the download with its canaries) and exports_rows.c (the rows
 * of given vehicles for an export's spec, as a principal may see them: a single node's
 * download and a cluster's shard owner, server/clusterapi.h Q12). Not for other modules.
 */
#ifndef FV_API_EXPORTS_INT_H
#define FV_API_EXPORTS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "privacy/guard.h"
#include "util/buf.h"

#define FV_EXPORTS__FIELDS_MAX 64
#define FV_EXPORTS__PIECE      (1u << 20) /* a download's producer stops a piece past this */

/* The rows of a download in progress: what is asked, for whom, and what was served. */
struct fv_exports__rows {
    const struct fv_api_view *v;
    struct fv_guard_ctx ctx; /* the decision's obligations, purpose, ticket */
    const char *id;          /* the export's (for the log) */
    const uint32_t *fields;
    size_t nfields;
    int64_t from, to;
    uint64_t rows;
    struct fv_guard_meter meter;   /* G5: the download stops at the daily quota */
    struct fv_guard_served served; /* G12: the subjects whose rows were sent */
};

/* G5: before a row, may it be served (0: the meter is hit)? */
int fv_exports__row_room(struct fv_exports__rows *r);
/* G5: after a row ending b at its length now, begun at mark: 1 counted, 0 it passed the
 * bytes left and was cut off again. */
int fv_exports__row_done(struct fv_exports__rows *r, struct fv_buf *b, size_t mark);
/* Appends the rows of device (an id) to b as the single node's download does: its current
 * owner period's key (none, or erased: nothing), consent (G4), zones (G7), withheld places
 * (G8), its id as shown (G10), values obliged (fv_put_value); counts them on the meter and
 * the subject served. FV_OK or an error. */
int fv_exports__put_device(struct fv_exports__rows *r, const char *device, struct fv_buf *b);
/* "A,B" (signal names or numbers) into f (at most FV_EXPORTS__FIELDS_MAX). FV_OK, FV_EINVAL. */
int fv_exports__parse_fields(const char *s, uint32_t *f, size_t *n);

#endif
