/*
 * mcap_read.c - the MCAP reader: open through the footer and summary, list, and read messages
 * through the chunk indexes (mcap.h; the format and the rules M1-M12 are in mcap_format.h; the
 * linear scan is in mcap_scan.c, the sources and the bounded cursor in mcap_cur.c).
 *
 * Open reads three pieces of the file: its first 17 bytes and Header, its last 37 bytes
 * (footer and magic), and, when summary_start is not 0, everything from summary_start to the
 * footer (the summary and summary offsets, at most FV_MCAP_MAX_SUMMARY bytes). A read then
 * reads each chunk it needs once, as one piece (offset and length from its chunk index), and
 * nothing else. Every offset and length from the file is checked against the file's size or
 * its section before it is used; sums are done so they cannot wrap (a + b <= limit is written
 * b <= limit - a after a <= limit).
 *
 * Threads: one thread per reader (mcap.h).
 */
#include <stdlib.h>
#include <string.h>

#include "data/mcap.h"
#include "data/mcap_format.h"
#include "data/mcap_int.h"
#include "util/err.h"

static struct fv_mcap_cur cur_at(struct fv_mcap_reader *r, const unsigned char *p, size_t len,
                                 uint64_t base)
{
    return (struct fv_mcap_cur){p, len, 0, base, UINT64_MAX, 0, r->err, r->errlen};
}

/* ---- schemas and channels -------------------------------------------------------------- */

static char *dupmem(const unsigned char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL) return NULL;
    if (len) memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static int get_str(struct fv_mcap_cur *c, struct fv_mcap_str *s, const char *what)
{
    uint32_t n;
    const unsigned char *p = fv_mcap_get_bytes32(c, &n, what);
    if (p == NULL) return FV_ECORRUPT;
    s->p = dupmem(p, n);
    s->len = n;
    return s->p ? FV_OK : FV_ENOMEM;
}

static int slots(uint32_t **slot)
{
    if (*slot == NULL) *slot = calloc(65536, sizeof **slot);
    return *slot ? FV_OK : FV_ENOMEM;
}

static void schema_free(struct fv_mcap_rschema *s)
{
    if (s == NULL) return;
    free((char *)s->s.name.p);
    free((char *)s->s.encoding.p);
    free(s->raw);
    free(s);
}

static void channel_free(struct fv_mcap_rchannel *c)
{
    if (c == NULL) return;
    free((char *)c->c.topic.p);
    free((char *)c->c.message_encoding.p);
    for (size_t i = 0; c->kv && i < 2 * c->c.nmeta; i++)
        free((char *)c->kv[i].p);
    free(c->kv);
    free(c->raw);
    free(c);
}

/* A second record for a known id must be the same bytes (M7); returns 1 when it is a repeat,
 * 0 when the id is new, or FV_ECORRUPT. */
static int repeat(struct fv_mcap_cur *body, const unsigned char *raw, size_t rawlen,
                  const char *kind, unsigned id)
{
    if (rawlen == body->len && memcmp(raw, body->p, rawlen) == 0) return 1;
    return fv_mcap_corrupt(body, 0, "%s %u defined twice, differently", kind, id);
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return FV_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * size);
    if (p == NULL) return FV_ENOMEM;
    *arr = p;
    *cap = nc;
    return FV_OK;
}

int fv_mcap_def_schema(struct fv_mcap_reader *r, struct fv_mcap_cur *body)
{
    struct fv_mcap_cur c = *body;
    uint16_t id = fv_mcap_get_u16(&c, "schema id");
    if (c.bad) return FV_ECORRUPT;
    if (id == 0) return fv_mcap_corrupt(&c, 0, "schema id 0");
    int rc = slots(&r->schema_slot);
    if (rc) return rc;
    if (r->schema_slot[id]) {
        const struct fv_mcap_rschema *o = r->schemas[r->schema_slot[id] - 1];
        rc = repeat(&c, o->raw, o->rawlen, "schema", id);
        return rc == 1 ? FV_OK : rc;
    }
    struct fv_mcap_rschema *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->s.id = id;
    if ((rc = get_str(&c, &s->s.name, "schema name")) ||
        (rc = get_str(&c, &s->s.encoding, "schema encoding")))
        goto fail;
    s->s.data = fv_mcap_get_bytes32(&c, &s->s.len, "schema data");
    if (c.bad) {
        rc = FV_ECORRUPT;
        goto fail;
    }
    /* The data points into raw, the reader's own copy of the record. */
    size_t data_at = s->s.data ? (size_t)(s->s.data - body->p) : 0;
    s->rawlen = body->len;
    s->raw = malloc(body->len ? body->len : 1);
    if (s->raw == NULL ||
        (rc = grow((void **)&r->schemas, &r->capschemas, r->nschemas, sizeof *r->schemas))) {
        rc = FV_ENOMEM;
        goto fail;
    }
    memcpy(s->raw, body->p, body->len);
    s->s.data = s->raw + data_at;
    r->schemas[r->nschemas++] = s;
    r->schema_slot[id] = (uint32_t)r->nschemas;
    return FV_OK;
fail:
    schema_free(s);
    return rc;
}

int fv_mcap_def_channel(struct fv_mcap_reader *r, struct fv_mcap_cur *body)
{
    struct fv_mcap_cur c = *body;
    uint16_t id = fv_mcap_get_u16(&c, "channel id");
    uint16_t sid = fv_mcap_get_u16(&c, "channel schema id");
    if (c.bad) return FV_ECORRUPT;
    int rc = slots(&r->channel_slot);
    if (rc) return rc;
    if (r->channel_slot[id]) {
        const struct fv_mcap_rchannel *o = r->channels[r->channel_slot[id] - 1];
        rc = repeat(&c, o->raw, o->rawlen, "channel", id);
        return rc == 1 ? FV_OK : rc;
    }
    if (sid != 0 && (r->schema_slot == NULL || r->schema_slot[sid] == 0))
        return fv_mcap_corrupt(&c, 2, "channel %u names schema %u, not defined before it", id, sid);
    struct fv_mcap_rchannel *ch = calloc(1, sizeof *ch);
    if (ch == NULL) return FV_ENOMEM;
    ch->c.id = id;
    ch->c.schema_id = sid;
    if ((rc = get_str(&c, &ch->c.topic, "channel topic")) ||
        (rc = get_str(&c, &ch->c.message_encoding, "channel message encoding")))
        goto fail;
    uint32_t mlen;
    size_t map_at = c.pos + 4;
    const unsigned char *map = fv_mcap_get_bytes32(&c, &mlen, "channel metadata");
    if (map == NULL) {
        rc = FV_ECORRUPT;
        goto fail;
    }
    /* Two passes over the map: count the pairs, then copy them. */
    for (int pass = 0; pass < 2; pass++) {
        struct fv_mcap_cur m = c;
        m.p = map;
        m.len = mlen;
        m.pos = 0;
        m.base = c.base + map_at;
        size_t n = 0;
        while (m.pos < m.len) {
            uint32_t kl, vl;
            const unsigned char *k = fv_mcap_get_bytes32(&m, &kl, "metadata key");
            const unsigned char *v = fv_mcap_get_bytes32(&m, &vl, "metadata value");
            if (m.bad) {
                rc = FV_ECORRUPT;
                goto fail;
            }
            if (pass == 1) {
                struct fv_mcap_str *ks = &ch->kv[n], *vs = &ch->kv[ch->c.nmeta + n];
                if ((ks->p = dupmem(k, kl)) == NULL || (vs->p = dupmem(v, vl)) == NULL) {
                    rc = FV_ENOMEM;
                    goto fail;
                }
                ks->len = kl;
                vs->len = vl;
            }
            n++;
        }
        if (pass == 0) {
            ch->kv = calloc(2 * n + 1, sizeof *ch->kv);
            if (ch->kv == NULL) {
                rc = FV_ENOMEM;
                goto fail;
            }
            ch->c.nmeta = n;
        }
    }
    ch->c.keys = ch->kv;
    ch->c.vals = ch->kv + ch->c.nmeta;
    ch->rawlen = body->len;
    ch->raw = malloc(body->len ? body->len : 1);
    if (ch->raw == NULL ||
        grow((void **)&r->channels, &r->capchannels, r->nchannels, sizeof *r->channels)) {
        rc = FV_ENOMEM;
        goto fail;
    }
    memcpy(ch->raw, body->p, body->len);
    r->channels[r->nchannels++] = ch;
    r->channel_slot[id] = (uint32_t)r->nchannels;
    return FV_OK;
fail:
    channel_free(ch);
    return rc;
}

static int cmp_schema(const void *a, const void *b)
{
    const struct fv_mcap_rschema *x = *(struct fv_mcap_rschema *const *)a,
                                 *y = *(struct fv_mcap_rschema *const *)b;
    return (x->s.id > y->s.id) - (x->s.id < y->s.id);
}

static int cmp_channel(const void *a, const void *b)
{
    const struct fv_mcap_rchannel *x = *(struct fv_mcap_rchannel *const *)a,
                                  *y = *(struct fv_mcap_rchannel *const *)b;
    return (x->c.id > y->c.id) - (x->c.id < y->c.id);
}

int fv_mcap_sort_defs(struct fv_mcap_reader *r)
{
    if (r->nschemas) qsort(r->schemas, r->nschemas, sizeof *r->schemas, cmp_schema);
    if (r->nchannels) qsort(r->channels, r->nchannels, sizeof *r->channels, cmp_channel);
    for (size_t i = 0; i < r->nschemas; i++)
        r->schema_slot[r->schemas[i]->s.id] = (uint32_t)(i + 1);
    for (size_t i = 0; i < r->nchannels; i++)
        r->channel_slot[r->channels[i]->c.id] = (uint32_t)(i + 1);
    return FV_OK;
}

void fv_mcap_free_defs(struct fv_mcap_reader *r)
{
    for (size_t i = 0; i < r->nschemas; i++)
        schema_free(r->schemas[i]);
    for (size_t i = 0; i < r->nchannels; i++)
        channel_free(r->channels[i]);
    r->nschemas = r->nchannels = 0;
    if (r->schema_slot) memset(r->schema_slot, 0, 65536 * sizeof *r->schema_slot);
    if (r->channel_slot) memset(r->channel_slot, 0, 65536 * sizeof *r->channel_slot);
}

/* ---- summary --------------------------------------------------------------------------- */

/* A Map<u16, u64> (u32 byte length, 10-byte entries) into two new arrays of *n entries (the
 * caller frees them, also on error); *at gets the map's position in c. */
static int get_map16(struct fv_mcap_cur *c, const char *what, size_t *at, size_t *n, uint16_t **ids,
                     uint64_t **vals)
{
    *at = c->pos;
    uint32_t mlen;
    const unsigned char *map = fv_mcap_get_bytes32(c, &mlen, what);
    if (c->bad) return FV_ECORRUPT;
    if (mlen % 10 != 0)
        return fv_mcap_corrupt(c, *at, "%s of %u bytes (not whole entries)", what, mlen);
    *n = mlen / 10;
    *ids = malloc((*n + 1) * sizeof **ids);
    *vals = malloc((*n + 1) * sizeof **vals);
    if (*ids == NULL || *vals == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < *n; i++) {
        (*ids)[i] = fv_get_u16(map + 10 * i);
        (*vals)[i] = fv_get_u64(map + 10 * i + 2);
    }
    return FV_OK;
}

static int parse_chunk_index(struct fv_mcap_reader *r, struct fv_mcap_cur *c)
{
    int rc = grow((void **)&r->chunks, &r->capchunks, r->nchunks, sizeof *r->chunks);
    if (rc) return rc;
    struct fv_mcap_chunk_index *ci = &r->chunks[r->nchunks++]; /* freed with the reader */
    memset(ci, 0, sizeof *ci);
    ci->start = fv_mcap_get_u64(c, "chunk index start");
    ci->end = fv_mcap_get_u64(c, "chunk index end");
    ci->offset = fv_mcap_get_u64(c, "chunk index offset");
    ci->length = fv_mcap_get_u64(c, "chunk index length");
    size_t map_at;
    uint16_t *ids = NULL;
    uint64_t *offs = NULL;
    rc = get_map16(c, "chunk index message index map", &map_at, &ci->nindex, &ids, &offs);
    ci->index_channels = ids;
    ci->index_offsets = offs;
    if (rc) return rc;
    ci->msg_index_length = fv_mcap_get_u64(c, "chunk index message index length");
    uint32_t clen;
    const unsigned char *comp = fv_mcap_get_bytes32(c, &clen, "chunk index compression");
    ci->compressed_size = fv_mcap_get_u64(c, "chunk index compressed size");
    ci->uncompressed_size = fv_mcap_get_u64(c, "chunk index uncompressed size");
    if (c->bad) return FV_ECORRUPT;
    if ((ci->compression.p = dupmem(comp, clen)) == NULL) return FV_ENOMEM;
    ci->compression.len = clen;
    /* M8: the chunk record lies in the data section, its message indexes after it. */
    if (ci->offset < r->header_end || ci->offset > r->data_end || ci->length < FV_MCAP_REC_HDR ||
        ci->length > r->data_end - ci->offset)
        return fv_mcap_corrupt(c, 16, "chunk at %llu of %llu bytes is outside the data section",
                               (unsigned long long)ci->offset, (unsigned long long)ci->length);
    uint64_t chunk_end = ci->offset + ci->length;
    if (ci->msg_index_length > r->data_end - chunk_end)
        return fv_mcap_corrupt(c, map_at + 4 + 10 * ci->nindex,
                               "message indexes of %llu bytes run past the data section",
                               (unsigned long long)ci->msg_index_length);
    for (size_t i = 0; i < ci->nindex; i++)
        if (offs[i] < chunk_end || offs[i] >= r->data_end)
            return fv_mcap_corrupt(c, map_at + 4 + 10 * i,
                                   "message index of channel %u at %llu is outside the data "
                                   "section after its chunk",
                                   ids[i], (unsigned long long)offs[i]);
    return FV_OK;
}

static int parse_stats(struct fv_mcap_reader *r, struct fv_mcap_cur *c)
{
    if (r->has_stats) return fv_mcap_corrupt(c, 0, "a second Statistics record");
    struct fv_mcap_stats *s = &r->stats;
    s->message_count = fv_mcap_get_u64(c, "statistics message count");
    s->schema_count = fv_mcap_get_u16(c, "statistics schema count");
    s->channel_count = fv_mcap_get_u32(c, "statistics channel count");
    s->attachment_count = fv_mcap_get_u32(c, "statistics attachment count");
    s->metadata_count = fv_mcap_get_u32(c, "statistics metadata count");
    s->chunk_count = fv_mcap_get_u32(c, "statistics chunk count");
    s->start = fv_mcap_get_u64(c, "statistics start");
    s->end = fv_mcap_get_u64(c, "statistics end");
    size_t at;
    int rc = get_map16(c, "statistics channel counts", &at, &s->ncounts, &r->stats_ids,
                       &r->stats_counts);
    if (rc) return rc;
    s->count_channels = r->stats_ids;
    s->counts = r->stats_counts;
    r->has_stats = 1;
    return FV_OK;
}

/* Parses the summary section and the summary offset section, read into sum (file bytes
 * summary_start ... footer_off). */
static int parse_summary(struct fv_mcap_reader *r, const unsigned char *sum, size_t len)
{
    uint64_t sum_len =
        (r->summary_offset_start ? r->summary_offset_start : r->footer_off) - r->summary_start;
    struct fv_mcap_cur c = cur_at(r, sum, (size_t)sum_len, r->summary_start);
    int rc;
    while (c.pos < c.len) {
        unsigned op;
        struct fv_mcap_cur body;
        size_t at;
        if ((rc = fv_mcap_next_record(&c, &op, &body, &at))) return rc;
        switch (op) {
        case FV_MCAP_OP_SCHEMA:
            rc = fv_mcap_def_schema(r, &body);
            break;
        case FV_MCAP_OP_CHANNEL:
            /* Channels may come before their schemas' group: checked below. */
            rc = slots(&r->schema_slot);
            if (rc == FV_OK) rc = slots(&r->channel_slot);
            if (rc == FV_OK) {
                uint16_t sid = body.len >= 4 ? fv_get_u16(body.p + 2) : 0;
                uint32_t keep = r->schema_slot[sid];
                if (sid) r->schema_slot[sid] = keep ? keep : UINT32_MAX;
                rc = fv_mcap_def_channel(r, &body);
                if (sid) r->schema_slot[sid] = keep;
            }
            break;
        case FV_MCAP_OP_CHUNK_INDEX:
            rc = parse_chunk_index(r, &body);
            break;
        case FV_MCAP_OP_STATISTICS:
            rc = parse_stats(r, &body);
            break;
        case FV_MCAP_OP_ATTACH_INDEX:
        case FV_MCAP_OP_META_INDEX:
            break;
        default:
            if (op >= FV_MCAP_OP_PRIVATE) break;
            return fv_mcap_corrupt(&c, at, "record 0x%02x is not allowed in the summary", op);
        }
        if (rc) return rc;
    }
    /* M7 for the summary: every channel's schema is in it. */
    for (size_t i = 0; i < r->nchannels; i++) {
        uint16_t sid = r->channels[i]->c.schema_id;
        if (sid && r->schema_slot[sid] == 0)
            return fv_mcap_corrupt(&c, 0, "channel %u names schema %u, not in the summary",
                                   r->channels[i]->c.id, sid);
    }
    if (r->summary_offset_start == 0) return FV_OK;
    struct fv_mcap_cur o = cur_at(r, sum + sum_len, len - (size_t)sum_len, r->summary_offset_start);
    while (o.pos < o.len) {
        unsigned op;
        struct fv_mcap_cur body;
        size_t at;
        if ((rc = fv_mcap_next_record(&o, &op, &body, &at))) return rc;
        if (op != FV_MCAP_OP_SUMMARY_OFF)
            return fv_mcap_corrupt(&o, at, "record 0x%02x in the summary offset section", op);
        fv_mcap_get_u8(&body, "summary offset opcode");
        uint64_t gs = fv_mcap_get_u64(&body, "summary offset group start");
        uint64_t gl = fv_mcap_get_u64(&body, "summary offset group length");
        if (body.bad) return FV_ECORRUPT;
        if (gs < r->summary_start || gs > r->summary_start + sum_len ||
            gl > r->summary_start + sum_len - gs)
            return fv_mcap_corrupt(&body, 1, "summary offset group outside the summary");
    }
    return FV_OK;
}

/* ---- open ------------------------------------------------------------------------------ */

static int open_file(struct fv_mcap_reader *r)
{
    uint64_t size = r->src.size;
    unsigned char head[FV_MCAP_MAGIC_LEN + FV_MCAP_REC_HDR], tail[FV_MCAP_TRAILER_LEN];
    struct fv_mcap_cur none = cur_at(r, NULL, 0, 0);
    /* M1, M2: the smallest file is magic, an empty Header (8 bytes), footer, magic. */
    if (size < sizeof head + 8 + FV_MCAP_TRAILER_LEN) {
        if (size >= FV_MCAP_MAGIC_LEN) {
            int rc = fv_mcap_src_read(r, 0, head, FV_MCAP_MAGIC_LEN);
            if (rc) return rc;
            if (memcmp(head, FV_MCAP_MAGIC, FV_MCAP_MAGIC_LEN) != 0)
                return fv_mcap_corrupt(&none, 0, "not an MCAP file (no magic)");
        }
        return fv_mcap_corrupt(&none, size, "file of %llu bytes is too short for MCAP",
                               (unsigned long long)size);
    }
    int rc = fv_mcap_src_read(r, 0, head, sizeof head);
    if (rc) return rc;
    if (memcmp(head, FV_MCAP_MAGIC, FV_MCAP_MAGIC_LEN) != 0)
        return fv_mcap_corrupt(&none, 0, "not an MCAP file (no magic)");
    if (head[FV_MCAP_MAGIC_LEN] != FV_MCAP_OP_HEADER)
        return fv_mcap_corrupt(&none, FV_MCAP_MAGIC_LEN, "the first record is not a Header");
    uint64_t hlen = fv_get_u64(head + FV_MCAP_MAGIC_LEN + 1);
    if (hlen > size - sizeof head - FV_MCAP_TRAILER_LEN || hlen > FV_MCAP_MAX_RECORD)
        return fv_mcap_corrupt(&none, FV_MCAP_MAGIC_LEN, "Header of %llu bytes runs past the file",
                               (unsigned long long)hlen);
    r->header_end = sizeof head + hlen;
    r->footer_off = size - FV_MCAP_TRAILER_LEN;
    r->header = malloc(hlen ? hlen : 1);
    if (r->header == NULL) return FV_ENOMEM;
    if ((rc = fv_mcap_src_read(r, sizeof head, r->header, (size_t)hlen))) return rc;
    struct fv_mcap_cur h = cur_at(r, r->header, (size_t)hlen, sizeof head);
    if ((rc = get_str(&h, &r->profile, "header profile")) ||
        (rc = get_str(&h, &r->library, "header library")))
        return rc;
    if ((rc = fv_mcap_src_read(r, r->footer_off, tail, sizeof tail))) return rc;
    struct fv_mcap_cur t = cur_at(r, tail, sizeof tail, r->footer_off);
    if (memcmp(tail + FV_MCAP_REC_HDR + FV_MCAP_FOOTER_LEN, FV_MCAP_MAGIC, FV_MCAP_MAGIC_LEN) != 0)
        return fv_mcap_corrupt(&t, FV_MCAP_REC_HDR + FV_MCAP_FOOTER_LEN,
                               "no closing magic (a file cut short?)");
    if (tail[0] != FV_MCAP_OP_FOOTER || fv_get_u64(tail + 1) != FV_MCAP_FOOTER_LEN)
        return fv_mcap_corrupt(&t, 0, "no Footer record before the closing magic");
    r->summary_start = fv_get_u64(tail + 9);
    r->summary_offset_start = fv_get_u64(tail + 17);
    uint32_t scrc = fv_get_u32(tail + 25);
    r->data_end = r->summary_start ? r->summary_start : r->footer_off;
    /* M5 */
    if (r->summary_start == 0) {
        if (r->summary_offset_start != 0)
            return fv_mcap_corrupt(&t, 17, "summary offsets without a summary");
        /* No summary: its CRC is 0, or that of the footer's fields before it. */
        if (scrc != 0 && scrc != fv_mcap_crc32(0, tail, 25))
            return fv_mcap_corrupt(&t, 25, "summary CRC of a file without a summary");
        return FV_OK;
    }
    if (r->summary_start < r->header_end || r->summary_start > r->footer_off)
        return fv_mcap_corrupt(&t, 9, "summary start %llu outside the file's body",
                               (unsigned long long)r->summary_start);
    if (r->summary_offset_start != 0 &&
        (r->summary_offset_start < r->summary_start || r->summary_offset_start > r->footer_off))
        return fv_mcap_corrupt(&t, 17, "summary offset start %llu outside the summary",
                               (unsigned long long)r->summary_offset_start);
    uint64_t slen = r->footer_off - r->summary_start;
    if (slen > FV_MCAP_MAX_SUMMARY) {
        fv_seterr(r->err, r->errlen, "mcap: summary of %llu bytes over the limit of %u",
                  (unsigned long long)slen, FV_MCAP_MAX_SUMMARY);
        return FV_ELIMIT;
    }
    unsigned char *sum = malloc((size_t)slen + 25);
    if (sum == NULL) return FV_ENOMEM;
    if ((rc = fv_mcap_src_read(r, r->summary_start, sum, (size_t)slen))) goto out;
    memcpy(sum + slen, tail, 25);
    if (scrc != 0 && fv_mcap_crc32(0, sum, (size_t)slen + 25) != scrc) {
        rc = fv_mcap_corrupt(&t, 25, "summary CRC mismatch (summary from byte %llu damaged)",
                             (unsigned long long)r->summary_start);
        goto out;
    }
    if ((rc = parse_summary(r, sum, (size_t)slen)) == FV_OK) rc = fv_mcap_sort_defs(r);
out:
    free(sum);
    return rc;
}

int fv_mcap_reader_open(const struct fv_mcap_source *src, struct fv_mcap_reader **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    struct fv_mcap_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fv_seterr(err, errlen, "mcap: out of memory");
        return FV_ENOMEM;
    }
    r->src = *src;
    r->err = err;
    r->errlen = errlen;
    int rc = open_file(r);
    if (rc) {
        if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
        fv_mcap_reader_free(r);
        return rc;
    }
    *out = r;
    return FV_OK;
}

void fv_mcap_reader_free(struct fv_mcap_reader *r)
{
    if (r == NULL) return;
    fv_mcap_free_defs(r);
    free(r->schemas);
    free(r->channels);
    free(r->schema_slot);
    free(r->channel_slot);
    for (size_t i = 0; i < r->nchunks; i++) {
        free((void *)r->chunks[i].index_channels);
        free((void *)r->chunks[i].index_offsets);
        free((char *)r->chunks[i].compression.p);
    }
    free(r->chunks);
    free(r->stats_ids);
    free(r->stats_counts);
    free((char *)r->profile.p);
    free((char *)r->library.p);
    free(r->header);
    free(r->chunkbuf);
    free(r->rawbuf);
    ZSTD_freeDCtx(r->dctx);
    free(r);
}

/* ---- listing --------------------------------------------------------------------------- */

struct fv_mcap_str fv_mcap_profile(const struct fv_mcap_reader *r)
{
    return r->profile;
}
struct fv_mcap_str fv_mcap_library(const struct fv_mcap_reader *r)
{
    return r->library;
}
int fv_mcap_indexed(const struct fv_mcap_reader *r)
{
    return r->nchunks > 0;
}
size_t fv_mcap_schema_count(const struct fv_mcap_reader *r)
{
    return r->nschemas;
}
const struct fv_mcap_schema *fv_mcap_schema_at(const struct fv_mcap_reader *r, size_t i)
{
    return i < r->nschemas ? &r->schemas[i]->s : NULL;
}
size_t fv_mcap_channel_count(const struct fv_mcap_reader *r)
{
    return r->nchannels;
}
const struct fv_mcap_channel *fv_mcap_channel_at(const struct fv_mcap_reader *r, size_t i)
{
    return i < r->nchannels ? &r->channels[i]->c : NULL;
}
const struct fv_mcap_channel *fv_mcap_channel_by_id(const struct fv_mcap_reader *r, uint16_t id)
{
    if (r->channel_slot == NULL || r->channel_slot[id] == 0) return NULL;
    return &r->channels[r->channel_slot[id] - 1]->c;
}
size_t fv_mcap_chunk_count(const struct fv_mcap_reader *r)
{
    return r->nchunks;
}
const struct fv_mcap_chunk_index *fv_mcap_chunk_at(const struct fv_mcap_reader *r, size_t i)
{
    return i < r->nchunks ? &r->chunks[i] : NULL;
}
const struct fv_mcap_stats *fv_mcap_statistics(const struct fv_mcap_reader *r)
{
    return r->has_stats ? &r->stats : NULL;
}

/* ---- chunks ---------------------------------------------------------------------------- */

static int reserve(unsigned char **buf, size_t *cap, size_t n)
{
    if (n <= *cap && *buf) return FV_OK;
    unsigned char *p = realloc(*buf, n ? n : 1);
    if (p == NULL) return FV_ENOMEM;
    *buf = p;
    *cap = n;
    return FV_OK;
}

int fv_mcap_load_chunk(struct fv_mcap_reader *r, uint64_t off, uint64_t len,
                       const struct fv_mcap_chunk_index *ci, size_t *raw_len, uint64_t *start,
                       uint64_t *end)
{
    struct fv_mcap_cur none = cur_at(r, NULL, 0, off);
    if (len > 2ull * FV_MCAP_MAX_CHUNK) {
        fv_seterr(r->err, r->errlen, "mcap: byte %llu: chunk of %llu bytes over the limit",
                  (unsigned long long)off, (unsigned long long)len);
        return FV_ELIMIT;
    }
    int rc = reserve(&r->chunkbuf, &r->chunkcap, (size_t)len);
    if (rc) return rc;
    if ((rc = fv_mcap_src_read(r, off, r->chunkbuf, (size_t)len))) return rc;
    struct fv_mcap_cur file = cur_at(r, r->chunkbuf, (size_t)len, off), c;
    unsigned op;
    size_t at;
    if ((rc = fv_mcap_next_record(&file, &op, &c, &at))) return rc;
    if (op != FV_MCAP_OP_CHUNK)
        return fv_mcap_corrupt(&none, 0, "record 0x%02x where a Chunk should be", op);
    if (file.pos != file.len)
        return fv_mcap_corrupt(&none, 0, "Chunk record is not the chunk index's length");
    *start = fv_mcap_get_u64(&c, "chunk start");
    *end = fv_mcap_get_u64(&c, "chunk end");
    uint64_t usize = fv_mcap_get_u64(&c, "chunk uncompressed size");
    uint32_t crc = fv_mcap_get_u32(&c, "chunk CRC");
    uint32_t clen;
    const unsigned char *comp = fv_mcap_get_bytes32(&c, &clen, "chunk compression");
    uint64_t dlen = fv_mcap_get_u64(&c, "chunk records length");
    if (c.bad) return FV_ECORRUPT;
    size_t data_pos = c.pos;
    if (dlen > c.len - c.pos)
        return fv_mcap_corrupt(&c, data_pos - 8, "chunk records of %llu bytes run past the chunk",
                               (unsigned long long)dlen);
    int zstd = clen == 4 && memcmp(comp, "zstd", 4) == 0;
    if (!zstd && clen != 0)
        return fv_mcap_corrupt(&c, data_pos - 12 - clen, "chunk compression '%.*s' unsupported",
                               (int)(clen > 32 ? 32 : clen), (const char *)comp);
    if (*start > *end) return fv_mcap_corrupt(&c, 0, "chunk start time after its end time");
    if (ci && (ci->start != *start || ci->end != *end || ci->uncompressed_size != usize ||
               ci->compressed_size != dlen || ci->compression.len != clen ||
               (clen && memcmp(ci->compression.p, comp, clen) != 0)))
        return fv_mcap_corrupt(&none, 0, "Chunk record does not match its chunk index");
    if (usize > FV_MCAP_MAX_CHUNK) {
        fv_seterr(r->err, r->errlen,
                  "mcap: byte %llu: chunk of %llu bytes uncompressed over the "
                  "limit of %u",
                  (unsigned long long)off, (unsigned long long)usize, FV_MCAP_MAX_CHUNK);
        return FV_ELIMIT;
    }
    if ((rc = reserve(&r->rawbuf, &r->rawcap, (size_t)usize))) return rc;
    const unsigned char *data = c.p + data_pos;
    if (zstd) {
        if (r->dctx == NULL && (r->dctx = ZSTD_createDCtx()) == NULL) return FV_ENOMEM;
        size_t n = ZSTD_decompressDCtx(r->dctx, r->rawbuf, (size_t)usize, data, (size_t)dlen);
        if (ZSTD_isError(n) || n != usize)
            return fv_mcap_corrupt(&c, data_pos, "zstd records do not decompress to %llu bytes%s%s",
                                   (unsigned long long)usize, ZSTD_isError(n) ? ": " : "",
                                   ZSTD_isError(n) ? ZSTD_getErrorName(n) : "");
    } else {
        if (dlen != usize)
            return fv_mcap_corrupt(&c, 16, "uncompressed chunk of %llu bytes says %llu",
                                   (unsigned long long)dlen, (unsigned long long)usize);
        if (usize) memcpy(r->rawbuf, data, (size_t)usize);
    }
    if (crc != 0 && fv_mcap_crc32(0, r->rawbuf, (size_t)usize) != crc)
        return fv_mcap_corrupt(&c, 24, "chunk CRC mismatch");
    *raw_len = (size_t)usize;
    return FV_OK;
}

int fv_mcap_parse_message(struct fv_mcap_cur *body, struct fv_mcap_msg *m)
{
    m->channel_id = fv_mcap_get_u16(body, "message channel");
    m->sequence = fv_mcap_get_u32(body, "message sequence");
    m->log_time = fv_mcap_get_u64(body, "message log time");
    m->publish_time = fv_mcap_get_u64(body, "message publish time");
    if (body->bad) return FV_ECORRUPT;
    m->data = body->p + body->pos;
    m->len = body->len - body->pos;
    return FV_OK;
}

int fv_mcap_filter_pass(const struct fv_mcap_filter *f, uint16_t channel, uint64_t t)
{
    if (f == NULL) return 1;
    if (t < f->start || t > f->end) return 0;
    if (f->channels == NULL) return 1;
    for (size_t i = 0; i < f->nchannels; i++)
        if (f->channels[i] == channel) return 1;
    return 0;
}

/* Whether chunk ci may hold a message passing f. */
static int chunk_wanted(const struct fv_mcap_chunk_index *ci, const struct fv_mcap_filter *f)
{
    if (f == NULL) return 1;
    if (ci->end < f->start || ci->start > f->end) return 0;
    if (f->channels == NULL || ci->nindex == 0) return 1;
    for (size_t i = 0; i < ci->nindex; i++)
        if (fv_mcap_filter_pass(f, ci->index_channels[i], f->start)) return 1;
    return 0;
}

int fv_mcap_read(struct fv_mcap_reader *r, const struct fv_mcap_filter *f, fv_mcap_msg_fn fn,
                 void *ctx, char *err, size_t errlen)
{
    r->err = err;
    r->errlen = errlen;
    if (r->nchunks == 0) return fv_mcap_scan(r, f, fn, ctx, err, errlen);
    int rc = FV_OK;
    for (size_t i = 0; i < r->nchunks && rc == FV_OK; i++) {
        const struct fv_mcap_chunk_index *ci = &r->chunks[i];
        if (!chunk_wanted(ci, f)) continue;
        size_t raw_len;
        uint64_t start, end;
        if ((rc = fv_mcap_load_chunk(r, ci->offset, ci->length, ci, &raw_len, &start, &end))) break;
        struct fv_mcap_cur c = cur_at(r, r->rawbuf, raw_len, 0);
        c.chunk = ci->offset;
        while (c.pos < c.len && rc == FV_OK) {
            unsigned op;
            struct fv_mcap_cur body;
            size_t at;
            if ((rc = fv_mcap_next_record(&c, &op, &body, &at))) break;
            if (op == FV_MCAP_OP_SCHEMA || op == FV_MCAP_OP_CHANNEL || op >= FV_MCAP_OP_PRIVATE)
                continue; /* the summary has them all (checked by a scan) */
            if (op != FV_MCAP_OP_MESSAGE) {
                rc = fv_mcap_corrupt(&c, at, "record 0x%02x inside a chunk", op);
                break;
            }
            struct fv_mcap_msg m;
            if ((rc = fv_mcap_parse_message(&body, &m))) break;
            if (m.log_time < start || m.log_time > end) {
                rc = fv_mcap_corrupt(&c, at, "message time outside its chunk's range");
                break;
            }
            if (fv_mcap_channel_by_id(r, m.channel_id) == NULL) {
                rc = fv_mcap_corrupt(&c, at, "message on channel %u, not in the summary",
                                     m.channel_id);
                break;
            }
            if (fv_mcap_filter_pass(f, m.channel_id, m.log_time) && fn) rc = fn(ctx, &m);
        }
    }
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
    return rc;
}
