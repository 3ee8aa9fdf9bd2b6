/* fuzz_block.c - libFuzzer target: the store's block decoder (src/store/block.h).
 *
 * The input is a block plaintext (as it is after decryption and decompression). It is decoded
 * whole (fields NULL, events) and with a subset of fields (events skipped); either must
 * return FV_OK or FV_ECORRUPT without reading outside the input. When the whole decode works,
 * the subset decode must give the same columns, and the decoded frames (those that carry a
 * value: the encoder drops empty frames) and events are encoded again and decoded again: the
 * result must equal the first decode (fv_value_equal, times, events byte for byte). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/block.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/payload.h"

#include "fuzzcheck.h"

static int cols_equal(const struct fv_block_col *a, const struct fv_block_col *b,
                      const uint32_t *rowmap)
{
    if (a->field != b->field || a->n != b->n) return 0;
    for (size_t r = 0; r < a->n; r++) {
        uint32_t ra = rowmap ? rowmap[a->row[r]] : a->row[r];
        if (ra != b->row[r] || !fv_value_equal(&a->v[r], &b->v[r])) return 0;
    }
    return 1;
}

/* Encodes the decoded block b again and checks that decoding gives b back. */
static void reencode(const struct fv_block *b)
{
    /* Datums laid out frame by frame. */
    size_t nd = 0;
    for (size_t c = 0; c < b->ncols; c++)
        nd += b->cols[c].n;
    uint32_t *cnt = calloc(b->nrec ? b->nrec : 1, sizeof *cnt);
    uint32_t *rowmap = calloc(b->nrec ? b->nrec : 1, sizeof *rowmap);
    struct fv_datum *d = calloc(nd ? nd : 1, sizeof *d);
    struct fv_block_frame *fr = calloc(b->nrec ? b->nrec : 1, sizeof *fr);
    struct fv_buf enc = {0};
    struct fv_block b2;
    memset(&b2, 0, sizeof b2);
    if (cnt == NULL || rowmap == NULL || d == NULL || fr == NULL) goto out;
    for (size_t c = 0; c < b->ncols; c++)
        for (size_t r = 0; r < b->cols[c].n; r++)
            cnt[b->cols[c].row[r]]++;
    size_t nfr = 0, off = 0;
    for (size_t r = 0; r < b->nrec; r++) {
        rowmap[r] = UINT32_MAX;
        if (cnt[r] == 0) continue; /* the encoder skips frames without a datum */
        rowmap[r] = (uint32_t)nfr;
        fr[nfr++] = (struct fv_block_frame){b->t[r], 0, d + off, b->group[r]};
        off += cnt[r];
    }
    /* Columns are in ascending field order, so each frame's datums are too. */
    for (size_t c = 0; c < b->ncols; c++)
        for (size_t r = 0; r < b->cols[c].n; r++) {
            struct fv_block_frame *f = &fr[rowmap[b->cols[c].row[r]]];
            struct fv_datum *dd = (struct fv_datum *)&f->d[f->n++];
            dd->field = b->cols[c].field;
            dd->value = b->cols[c].v[r]; /* shallow */
        }
    struct fv_block_in in = {.nframes = nfr, .frames = fr, .nev = b->nev, .ev = b->ev};
    struct fv_block_meta m;
    int rc = fv_block_encode(&in, &enc, &m);
    if (rc == FV_ENOMEM) goto out;
    check(rc == FV_OK);
    check(m.nrec == nfr && m.nev == b->nev && m.ndatums == nd);
    if (nfr + b->nev == 0) {
        check(enc.len == 0);
        goto out;
    }
    char err[256];
    rc = fv_block_decode(enc.data, enc.len, NULL, 0, 1, &b2, err, sizeof err);
    if (rc == FV_ENOMEM) goto out;
    check(rc == FV_OK);
    check(b2.nrec == nfr && b2.ncols == b->ncols && b2.nev == b->nev);
    for (size_t r = 0; r < nfr; r++)
        check(b2.t[r] == fr[r].t);
    for (size_t c = 0; c < b->ncols; c++)
        check(cols_equal(&b->cols[c], &b2.cols[c], rowmap));
    for (size_t e = 0; e < b->nev; e++) {
        const struct fv_block_event *x = &b->ev[e], *y = &b2.ev[e];
        check(x->t == y->t && x->topic_len == y->topic_len && x->len == y->len);
        check(x->topic_len == 0 || memcmp(x->topic, y->topic, x->topic_len) == 0);
        check(x->len == 0 || memcmp(x->payload, y->payload, x->len) == 0);
    }
out:
    fv_block_free(&b2);
    fv_buf_free(&enc);
    free(cnt);
    free(rowmap);
    free(d);
    free(fr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct fv_block all, sub;
    int rc = fv_block_decode(data, size, NULL, 0, 1, &all, err, sizeof err);
    check(rc == FV_OK || rc == FV_ECORRUPT || rc == FV_ENOMEM);
    /* A subset: every other decoded field, or fixed guesses when the block did not decode. */
    uint32_t fields[8] = {1, 2, 3, 27, 5000};
    size_t nf = 5;
    if (rc == FV_OK) {
        nf = 0;
        for (size_t c = 0; c < all.ncols && nf < 7; c += 2)
            fields[nf++] = all.cols[c].field;
        fields[nf++] = 0xfffffffeu; /* absent */
    }
    int rc2 = fv_block_decode(data, size, fields, nf, 0, &sub, err, sizeof err);
    check(rc2 == FV_OK || rc2 == FV_ECORRUPT || rc2 == FV_ENOMEM);
    if (rc == FV_OK && rc2 == FV_OK) {
        check(sub.nrec == all.nrec && sub.nev == 0);
        size_t q = 0;
        for (size_t c = 0; c < all.ncols; c += 2)
            if (q < sub.ncols && sub.cols[q].field == all.cols[c].field) {
                check(cols_equal(&all.cols[c], &sub.cols[q], NULL));
                q++;
            }
        check(q == sub.ncols);
    }
    if (rc == FV_OK) check(rc2 == FV_OK || rc2 == FV_ENOMEM); /* skipping never fails more */
    if (rc == FV_OK) reencode(&all);
    fv_block_free(&sub);
    fv_block_free(&all);
    return 0;
}
