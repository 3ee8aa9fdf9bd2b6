/* fuzz_mcap.c - libFuzzer target: the MCAP reader (src/data/mcap.h): open (magic, header,
 * footer, summary, summary offsets), the listings, indexed reads (all messages; the first
 * channel in the first half of the time range) and the linear scan (rules M1-M12 of
 * src/data/mcap_format.h). Each must return FV_OK, FV_ECORRUPT, FV_ELIMIT or FV_ENOMEM, with
 * an error naming a byte offset inside the input, without reading outside it. The seed corpus
 * (tests/fuzz/corpus/fuzz_mcap, made by tests/fuzz/mcap_seeds.py) has files with their CRCs
 * set to 0 ("not available" in MCAP), so that mutations reach the record parsers.
 * Oracle: a file the scan accepts is read by the indexed reader without error, and the
 * indexed read gives no more messages than the scan (messages outside chunks have no index). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/mcap.h"
#include "util/err.h"

#include "fuzzcheck.h"

static void touch(const void *p, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ((const unsigned char *)p)[i];
    __asm__ volatile("" : : "r"(sum));
}

static void touch_str(struct fv_mcap_str s)
{
    touch(s.p, s.len + 1); /* with its NUL */
}

static int count(void *ctx, const struct fv_mcap_msg *m)
{
    touch(m->data, m->len);
    (*(uint64_t *)ctx)++;
    return 0;
}

/* An error must be one of the allowed codes and name an offset inside the input. */
static void check_rc(int rc, const char *err, size_t size)
{
    check(rc == FV_OK || rc == FV_ECORRUPT || rc == FV_ELIMIT || rc == FV_ENOMEM);
    if (rc == FV_ECORRUPT) {
        unsigned long long at;
        check(sscanf(err, "mcap: byte %llu:", &at) == 1);
        check(at <= size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    struct fv_mcap_source src;
    fv_mcap_source_mem(&src, data, size);
    struct fv_mcap_reader *r;
    int rc = fv_mcap_reader_open(&src, &r, err, sizeof err);
    check_rc(rc, err, size);
    if (rc) return 0;
    touch_str(fv_mcap_profile(r));
    touch_str(fv_mcap_library(r));
    for (size_t i = 0; i < fv_mcap_schema_count(r); i++) {
        const struct fv_mcap_schema *s = fv_mcap_schema_at(r, i);
        touch_str(s->name);
        touch_str(s->encoding);
        touch(s->data, s->len);
    }
    for (size_t i = 0; i < fv_mcap_channel_count(r); i++) {
        const struct fv_mcap_channel *c = fv_mcap_channel_at(r, i);
        check(fv_mcap_channel_by_id(r, c->id) == c);
        touch_str(c->topic);
        for (size_t k = 0; k < c->nmeta; k++) {
            touch_str(c->keys[k]);
            touch_str(c->vals[k]);
        }
    }
    for (size_t i = 0; i < fv_mcap_chunk_count(r); i++) {
        const struct fv_mcap_chunk_index *ci = fv_mcap_chunk_at(r, i);
        touch(ci->index_channels, ci->nindex * sizeof *ci->index_channels);
        touch(ci->index_offsets, ci->nindex * sizeof *ci->index_offsets);
        touch_str(ci->compression);
    }
    const struct fv_mcap_stats *st = fv_mcap_statistics(r);
    if (st) touch(st->counts, st->ncounts * sizeof *st->counts);

    uint64_t nread = 0, nscan = 0, nsome = 0;
    int rrc = fv_mcap_read(r, NULL, count, &nread, err, sizeof err);
    check_rc(rrc, err, size);
    if (fv_mcap_channel_count(r) > 0) {
        uint16_t ch = fv_mcap_channel_at(r, 0)->id;
        uint64_t lo = st ? st->start : 0, hi = st ? st->start + (st->end - st->start) / 2 : ~0ull;
        struct fv_mcap_filter f = {&ch, 1, lo, hi};
        int frc = fv_mcap_read(r, &f, count, &nsome, err, sizeof err);
        check_rc(frc, err, size);
    }
    int src_ = fv_mcap_scan(r, NULL, count, &nscan, err, sizeof err);
    check_rc(src_, err, size);
    if (src_ == FV_OK && fv_mcap_indexed(r)) {
        uint64_t again = 0;
        int arc = fv_mcap_read(r, NULL, count, &again, err, sizeof err);
        check(arc == FV_OK || arc == FV_ENOMEM);
        if (arc == FV_OK) check(again <= nscan);
    }
    fv_mcap_reader_free(r);
    return 0;
}
