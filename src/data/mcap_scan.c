/*
 * mcap_scan.c - the MCAP reader's linear scan: every byte of the file read once, in order,
 * every rule of mcap_format.h checked (M1-M12), messages handed out on the way (mcap.h,
 * fv_mcap_scan). This is how a file without a summary is read, and how a file is verified.
 *
 * Memory: one record at a time (a chunk's records decompressed; records the reader does not
 * interpret are read in 1 MiB pieces for the CRC), the offsets of the current chunk's
 * messages (for its message indexes, M10), and two 8 KiB bitmaps of the schema and channel
 * ids seen so far in the data section (M7).
 *
 * Threads: one thread per reader (mcap.h).
 */
#include <stdlib.h>
#include <string.h>

#include "data/mcap.h"
#include "data/mcap_format.h"
#include "data/mcap_int.h"
#include "util/err.h"

#define PIECE (1u << 20)

struct msgpos {
    uint64_t off, t;
    uint16_t ch;
};

struct scan {
    struct fv_mcap_reader *r;
    const struct fv_mcap_filter *f;
    fv_mcap_msg_fn fn;
    void *ctx;
    uint64_t pos; /* next byte of the file to read */
    uint32_t crc; /* of every byte before pos */
    unsigned char *buf;
    size_t cap;
    uint8_t schema_seen[8192], channel_seen[8192];
    uint64_t *counts; /* messages per channel id, 65536 */
    uint64_t messages, start, end;
    uint32_t chunks, data_schemas, data_channels; /* distinct ids in the data section */
    /* The last chunk, while Message Index records follow it. */
    int after_chunk;
    const struct fv_mcap_chunk_index *ci;
    uint64_t chunk_off;
    struct msgpos *msgs;
    size_t nmsgs, capmsgs;
};

static int seen(const uint8_t *bits, uint16_t id)
{
    return bits[id >> 3] & (1u << (id & 7));
}
/* Marks id seen; returns 1 the first time. */
static int mark(uint8_t *bits, uint16_t id)
{
    int first = !seen(bits, id);
    bits[id >> 3] |= (uint8_t)(1u << (id & 7));
    return first;
}

static struct fv_mcap_cur cur(struct scan *s, const unsigned char *p, size_t len, uint64_t base)
{
    return (struct fv_mcap_cur){p, len, 0, base, UINT64_MAX, 0, s->r->err, s->r->errlen};
}

/* Reads len bytes at s->pos into s->buf, extending the CRC. */
static int take(struct scan *s, size_t len)
{
    if (len > s->cap) {
        unsigned char *p = realloc(s->buf, len);
        if (p == NULL) return FV_ENOMEM;
        s->buf = p;
        s->cap = len;
    }
    int rc = fv_mcap_src_read(s->r, s->pos, s->buf, len);
    if (rc) return rc;
    s->crc = fv_mcap_crc32(s->crc, s->buf, len);
    s->pos += len;
    return FV_OK;
}

/* Reads and CRCs len bytes without keeping them. */
static int skip(struct scan *s, uint64_t len)
{
    while (len > 0) {
        size_t n = len > PIECE ? PIECE : (size_t)len;
        int rc = take(s, n);
        if (rc) return rc;
        len -= n;
    }
    return FV_OK;
}

static int on_message(struct scan *s, struct fv_mcap_cur *c, size_t at, struct fv_mcap_cur *body,
                      int in_chunk, uint64_t cstart, uint64_t cend)
{
    struct fv_mcap_msg m;
    int rc = fv_mcap_parse_message(body, &m);
    if (rc) return rc;
    if (!seen(s->channel_seen, m.channel_id))
        return fv_mcap_corrupt(c, at, "message on channel %u, not defined before it", m.channel_id);
    if (in_chunk) {
        if (m.log_time < cstart || m.log_time > cend)
            return fv_mcap_corrupt(c, at, "message time outside its chunk's range");
        if (s->nmsgs == s->capmsgs) {
            size_t nc = s->capmsgs ? 2 * s->capmsgs : 256;
            struct msgpos *p = realloc(s->msgs, nc * sizeof *p);
            if (p == NULL) return FV_ENOMEM;
            s->msgs = p;
            s->capmsgs = nc;
        }
        s->msgs[s->nmsgs++] = (struct msgpos){at, m.log_time, m.channel_id};
    }
    if (s->messages == 0 || m.log_time < s->start) s->start = m.log_time;
    if (s->messages == 0 || m.log_time > s->end) s->end = m.log_time;
    s->messages++;
    s->counts[m.channel_id]++;
    if (s->fn && fv_mcap_filter_pass(s->f, m.channel_id, m.log_time)) return s->fn(s->ctx, &m);
    return FV_OK;
}

/* One record of the data section or of a chunk (schema, channel, message, private). */
static int on_def_or_message(struct scan *s, struct fv_mcap_cur *c, unsigned op, size_t at,
                             struct fv_mcap_cur *body, int in_chunk, uint64_t cstart, uint64_t cend)
{
    int rc;
    switch (op) {
    case FV_MCAP_OP_SCHEMA:
        if ((rc = fv_mcap_def_schema(s->r, body))) return rc;
        s->data_schemas += (uint32_t)mark(s->schema_seen, fv_get_u16(body->p));
        return FV_OK;
    case FV_MCAP_OP_CHANNEL: {
        uint16_t sid = body->len >= 4 ? fv_get_u16(body->p + 2) : 0;
        if (sid && !seen(s->schema_seen, sid))
            return fv_mcap_corrupt(c, at, "channel names schema %u, not defined before it", sid);
        if ((rc = fv_mcap_def_channel(s->r, body))) return rc;
        s->data_channels += (uint32_t)mark(s->channel_seen, fv_get_u16(body->p));
        return FV_OK;
    }
    case FV_MCAP_OP_MESSAGE:
        return on_message(s, c, at, body, in_chunk, cstart, cend);
    default:
        if (op >= FV_MCAP_OP_PRIVATE) return FV_OK;
        return fv_mcap_corrupt(c, at, "record 0x%02x not allowed %s", op,
                               in_chunk ? "inside a chunk" : "in the data section");
    }
}

static const struct fv_mcap_chunk_index *find_chunk_index(const struct fv_mcap_reader *r,
                                                          uint64_t off)
{
    for (size_t i = 0; i < r->nchunks; i++)
        if (r->chunks[i].offset == off) return &r->chunks[i];
    return NULL;
}

static int on_chunk(struct scan *s, uint64_t len)
{
    struct fv_mcap_reader *r = s->r;
    uint64_t off = s->pos;
    struct fv_mcap_cur here = cur(s, NULL, 0, off);
    s->ci = NULL;
    if (r->nchunks > 0) {
        /* M12: with chunk indexes, every chunk has one (they are in file order when written
         * by fleetvault or the reference writers; any order is accepted). */
        const struct fv_mcap_chunk_index *ci =
            s->chunks < r->nchunks && r->chunks[s->chunks].offset == off ? &r->chunks[s->chunks]
                                                                         : find_chunk_index(r, off);
        if (ci == NULL) return fv_mcap_corrupt(&here, 0, "chunk without a chunk index");
        if (ci->length != FV_MCAP_REC_HDR + len)
            return fv_mcap_corrupt(&here, 0, "chunk length differs from its chunk index");
        s->ci = ci;
    }
    size_t raw_len;
    uint64_t start, end;
    int rc = fv_mcap_load_chunk(r, off, FV_MCAP_REC_HDR + len, s->ci, &raw_len, &start, &end);
    if (rc) return rc;
    s->crc = fv_mcap_crc32(s->crc, r->chunkbuf, (size_t)(FV_MCAP_REC_HDR + len));
    s->pos += FV_MCAP_REC_HDR + len;
    s->chunks++;
    s->nmsgs = 0;
    struct fv_mcap_cur c = cur(s, r->rawbuf, raw_len, 0);
    c.chunk = off;
    while (c.pos < c.len) {
        unsigned op;
        struct fv_mcap_cur body;
        size_t at;
        if ((rc = fv_mcap_next_record(&c, &op, &body, &at)) ||
            (rc = on_def_or_message(s, &c, op, at, &body, 1, start, end)))
            return rc;
    }
    if (s->nmsgs == 0 && (start != 0 || end != 0))
        return fv_mcap_corrupt(&here, 0, "chunk without messages has times");
    s->after_chunk = 1;
    s->chunk_off = off;
    return FV_OK;
}

static int cmp_msgpos(const void *k, const void *e)
{
    uint64_t a = *(const uint64_t *)k, b = ((const struct msgpos *)e)->off;
    return (a > b) - (a < b);
}

/* M10: each entry points at a message of this channel and time in the chunk just read. */
static int on_msg_index(struct scan *s, struct fv_mcap_cur *c, size_t at, struct fv_mcap_cur *b)
{
    if (!s->after_chunk) return fv_mcap_corrupt(c, at, "Message Index not after a chunk");
    uint16_t ch = fv_mcap_get_u16(b, "message index channel");
    uint32_t n;
    size_t arr_at = b->pos + 4;
    const unsigned char *e = fv_mcap_get_bytes32(b, &n, "message index entries");
    if (b->bad) return FV_ECORRUPT;
    if (n % 16 != 0)
        return fv_mcap_corrupt(b, arr_at - 4, "message index of %u bytes (not whole entries)", n);
    if (s->ci && s->ci->nindex > 0) {
        size_t i = 0;
        while (i < s->ci->nindex &&
               (s->ci->index_channels[i] != ch || s->ci->index_offsets[i] != c->base + at))
            i++;
        if (i == s->ci->nindex)
            return fv_mcap_corrupt(c, at, "Message Index of channel %u not in the chunk index", ch);
    }
    for (uint32_t i = 0; i < n / 16; i++) {
        uint64_t t = fv_get_u64(e + 16 * i), off = fv_get_u64(e + 16 * i + 8);
        const struct msgpos *m =
            s->nmsgs ? bsearch(&off, s->msgs, s->nmsgs, sizeof *s->msgs, cmp_msgpos) : NULL;
        if (m == NULL || m->ch != ch || m->t != t)
            return fv_mcap_corrupt(b, arr_at + 16 * i,
                                   "message index entry (time %llu, chunk byte %llu) names no "
                                   "message of channel %u at that time",
                                   (unsigned long long)t, (unsigned long long)off, ch);
    }
    return FV_OK;
}

/* M12: the statistics describe what the scan found. */
static int check_stats(struct scan *s)
{
    const struct fv_mcap_reader *r = s->r;
    if (!r->has_stats) return FV_OK;
    const struct fv_mcap_stats *st = &r->stats;
    struct fv_mcap_cur sum = cur(s, NULL, 0, r->summary_start);
    /* Schemas and channels: writers differ on counting those registered but never written,
     * so the counts must cover the ones in the data section. */
    if (st->message_count != s->messages || st->chunk_count != s->chunks ||
        st->schema_count < s->data_schemas || st->channel_count < s->data_channels ||
        st->start != (s->messages ? s->start : 0) || st->end != (s->messages ? s->end : 0))
        return fv_mcap_corrupt(&sum, 0,
                               "statistics (%llu messages, %u chunks, %u schemas, %u channels) "
                               "differ from the data (%llu, %u, %u, %u) or its times",
                               (unsigned long long)st->message_count, st->chunk_count,
                               st->schema_count, st->channel_count, (unsigned long long)s->messages,
                               s->chunks, s->data_schemas, s->data_channels);
    if (st->ncounts == 0) return FV_OK;
    uint64_t total = 0;
    for (size_t i = 0; i < st->ncounts; i++) {
        if (s->counts[st->count_channels[i]] != st->counts[i])
            return fv_mcap_corrupt(&sum, 0, "statistics count %llu for channel %u, the data %llu",
                                   (unsigned long long)st->counts[i], st->count_channels[i],
                                   (unsigned long long)s->counts[st->count_channels[i]]);
        total += st->counts[i];
    }
    if (total != s->messages)
        return fv_mcap_corrupt(&sum, 0, "statistics per channel leave out channels with messages");
    return FV_OK;
}

static int scan_data(struct scan *s)
{
    struct fv_mcap_reader *r = s->r;
    int rc = skip(s, r->header_end); /* magic and Header, checked by open (M1) */
    if (rc) return rc;
    r->scan_extras = 0;
    for (;;) {
        struct fv_mcap_cur here = cur(s, NULL, 0, s->pos);
        if (r->data_end - s->pos < FV_MCAP_REC_HDR)
            return fv_mcap_corrupt(&here, 0, "no Data End record before %s",
                                   r->summary_start ? "the summary" : "the footer");
        uint64_t at = s->pos;
        uint32_t crc_before = s->crc;
        if ((rc = take(s, FV_MCAP_REC_HDR))) return rc;
        unsigned op = s->buf[0];
        uint64_t len = fv_get_u64(s->buf + 1);
        if (op == 0) return fv_mcap_corrupt(&here, 0, "opcode 0");
        if (len > r->data_end - s->pos)
            return fv_mcap_corrupt(&here, 0,
                                   "record 0x%02x of %llu bytes runs past the data section", op,
                                   (unsigned long long)len);
        if (op == FV_MCAP_OP_MSG_INDEX || op == FV_MCAP_OP_DATA_END || op == FV_MCAP_OP_SCHEMA ||
            op == FV_MCAP_OP_CHANNEL || op == FV_MCAP_OP_MESSAGE) {
            if (len > FV_MCAP_MAX_RECORD + 64ull) {
                fv_seterr(r->err, r->errlen,
                          "mcap: byte %llu: record of %llu bytes over the "
                          "limit",
                          (unsigned long long)at, (unsigned long long)len);
                return FV_ELIMIT;
            }
            if (op == FV_MCAP_OP_DATA_END) {
                /* M11: the CRC of every byte before the record. */
                uint32_t want = crc_before;
                if ((rc = take(s, (size_t)len))) return rc;
                struct fv_mcap_cur b = cur(s, s->buf, (size_t)len, at + FV_MCAP_REC_HDR);
                uint32_t crc = fv_mcap_get_u32(&b, "data end CRC");
                if (b.bad) return FV_ECORRUPT;
                if (crc != 0 && crc != want)
                    return fv_mcap_corrupt(&b, 0, "data section CRC mismatch");
                if (s->pos != r->data_end)
                    return fv_mcap_corrupt(&b, len, "%llu bytes after Data End before %s",
                                           (unsigned long long)(r->data_end - s->pos),
                                           r->summary_start ? "the summary" : "the footer");
                return FV_OK;
            }
            if ((rc = take(s, (size_t)len))) return rc;
            struct fv_mcap_cur body = cur(s, s->buf, (size_t)len, at + FV_MCAP_REC_HDR);
            struct fv_mcap_cur rec = cur(s, NULL, 0, at);
            if (op == FV_MCAP_OP_MSG_INDEX) {
                rc = on_msg_index(s, &rec, 0, &body);
            } else {
                s->after_chunk = 0;
                rc = on_def_or_message(s, &rec, op, 0, &body, 0, 0, 0);
            }
            if (rc) return rc;
            continue;
        }
        s->after_chunk = 0;
        if (op == FV_MCAP_OP_CHUNK) {
            s->pos = at; /* read again whole by the chunk loader, which CRCs it */
            s->crc = crc_before;
            if ((rc = on_chunk(s, len))) return rc;
            continue;
        }
        if (op == FV_MCAP_OP_ATTACHMENT || op == FV_MCAP_OP_METADATA || op >= FV_MCAP_OP_PRIVATE) {
            if (op == FV_MCAP_OP_ATTACHMENT || op == FV_MCAP_OP_METADATA) r->scan_extras++;
            if ((rc = skip(s, len))) return rc;
            continue;
        }
        return fv_mcap_corrupt(&here, 0, "record 0x%02x not allowed in the data section", op);
    }
}

int fv_mcap_scan(struct fv_mcap_reader *r, const struct fv_mcap_filter *f, fv_mcap_msg_fn fn,
                 void *ctx, char *err, size_t errlen)
{
    r->err = err;
    r->errlen = errlen;
    struct scan *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fv_seterr(err, errlen, "mcap: out of memory");
        return FV_ENOMEM;
    }
    s->r = r;
    s->f = f;
    s->fn = fn;
    s->ctx = ctx;
    s->counts = calloc(65536, sizeof *s->counts);
    int rc = s->counts ? scan_data(s) : FV_ENOMEM;
    if (rc == FV_OK) rc = fv_mcap_sort_defs(r);
    if (rc == FV_OK && r->nchunks > 0 && s->chunks != r->nchunks) {
        struct fv_mcap_cur sum = cur(s, NULL, 0, r->summary_start);
        rc = fv_mcap_corrupt(&sum, 0, "%zu chunk indexes for %u chunks", r->nchunks, s->chunks);
    }
    if (rc == FV_OK) rc = check_stats(s);
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
    free(s->counts);
    free(s->msgs);
    free(s->buf);
    free(s);
    return rc;
}
