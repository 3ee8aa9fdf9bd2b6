/*
 * mcap_write.c - the MCAP writer (mcap.h; the layout is in mcap_format.h).
 *
 * What it writes:
 *
 *   magic Header
 *   Schema and Channel records, each when it is added (so always before the chunk that holds
 *     the first message referring to it)
 *   per chunk: Chunk (records: Message ...; zstd or none) then one Message Index per channel
 *     in the chunk, in channel id order
 *   Data End (CRC-32 of every byte before it)
 *   summary: Schema group, Channel group, Chunk Index group, Statistics
 *   summary offsets: one Summary Offset per non-empty group
 *   Footer (summary CRC over summary, summary offsets and the footer's first 17 bytes) magic
 *
 * With no_summary the file ends "Data End, Footer(0, 0, 0), magic". A chunk is closed when
 * its uncompressed records reach chunk_size (a message larger than that gets a chunk of its
 * own). Memory: the open chunk, its message index entries, and the summary records (about
 * 100 bytes per chunk, per schema and per channel). Bytes go to the fd in writes of about
 * 1 MiB (through os/fsio.h), or into the caller's buffer.
 *
 * Threads: one thread per writer (mcap.h).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "data/mcap.h"
#include "data/mcap_format.h"
#include "data/mcap_int.h"
#include "os/fsio.h"
#include "util/err.h"

#define FLUSH_AT (1u << 20)

struct wchan {
    int defined;
    uint64_t count;    /* messages in the file */
    struct fv_buf idx; /* this chunk's message index entries: (u64 time, u64 offset)... */
};

struct fv_mcap_writer {
    int fd;             /* -1 for memory */
    char *path;         /* for errors */
    struct fv_buf *mem; /* memory output, or NULL */
    struct fv_buf out;  /* fd output not yet written */
    uint64_t off;       /* bytes of the file so far */
    uint32_t crc;       /* CRC-32 of every byte so far (the data section until Data End) */
    int failed;         /* an earlier call failed: the file is unusable */

    size_t chunk_size;
    int compression, level, no_summary;

    struct fv_buf sum_schemas, sum_channels, sum_chunks; /* summary records */
    uint32_t nschemas, nchannels;
    struct wchan *chans; /* by id, nchannels + 1 entries */

    struct fv_buf chunk; /* the open chunk's uncompressed records */
    uint64_t chunk_start, chunk_end;
    int chunk_msgs;
    struct fv_buf zbuf;
    ZSTD_CCtx *cctx;

    uint64_t messages, start, end;
    uint32_t chunks;
};

uint32_t fv_mcap_crc32(uint32_t crc, const void *p, size_t len)
{
    const unsigned char *b = p;
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, b, n);
        b += n;
        len -= n;
    }
    return crc;
}

/* ---- record building (into a fv_buf) ------------------------------------------------- */

int fv_mcap_put_u8(struct fv_buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    return fv_buf_append(b, &c, 1);
}
int fv_mcap_put_u16(struct fv_buf *b, uint16_t v)
{
    unsigned char p[2];
    fv_put_u16(p, v);
    return fv_buf_append(b, p, 2);
}
int fv_mcap_put_u32(struct fv_buf *b, uint32_t v)
{
    unsigned char p[4];
    fv_put_u32(p, v);
    return fv_buf_append(b, p, 4);
}
int fv_mcap_put_u64(struct fv_buf *b, uint64_t v)
{
    unsigned char p[8];
    fv_put_u64(p, v);
    return fv_buf_append(b, p, 8);
}
int fv_mcap_put_bytes32(struct fv_buf *b, const void *p, size_t len)
{
    if (len > UINT32_MAX) return FV_ELIMIT;
    int rc = fv_mcap_put_u32(b, (uint32_t)len);
    return rc ? rc : fv_buf_append(b, p, len);
}
int fv_mcap_put_str(struct fv_buf *b, const char *s)
{
    return fv_mcap_put_bytes32(b, s, strlen(s));
}
/* Starts a record: opcode and a length patched by rec_end. *at gets the record's offset. */
int fv_mcap_rec_begin(struct fv_buf *b, unsigned op, size_t *at)
{
    *at = b->len;
    int rc = fv_mcap_put_u8(b, op);
    return rc ? rc : fv_mcap_put_u64(b, 0);
}
void fv_mcap_rec_end(struct fv_buf *b, size_t at)
{
    fv_put_u64(b->data + at + 1, (uint64_t)(b->len - at - FV_MCAP_REC_HDR));
}

/* ---- output ---------------------------------------------------------------------------- */

static int flush_out(struct fv_mcap_writer *w, char *err, size_t errlen)
{
    if (w->fd < 0 || w->out.len == 0) return FV_OK;
    int rc = fv_os_write_all(w->fd, w->out.data, w->out.len, w->path, err, errlen);
    w->out.len = 0;
    return rc;
}

static int emit(struct fv_mcap_writer *w, const void *p, size_t len, char *err, size_t errlen)
{
    w->crc = fv_mcap_crc32(w->crc, p, len);
    w->off += len;
    if (w->mem) return fv_buf_append(w->mem, p, len);
    if (w->out.len + len > FLUSH_AT) {
        int rc = flush_out(w, err, errlen);
        if (rc) return rc;
        if (len >= FLUSH_AT) return fv_os_write_all(w->fd, p, len, w->path, err, errlen);
    }
    return fv_buf_append(&w->out, p, len);
}

/* Marks the writer failed and names the error (out of memory gets its message here). */
static int fail(struct fv_mcap_writer *w, int rc, char *err, size_t errlen)
{
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
    if (rc != FV_ELIMIT && rc != FV_EINVAL) w->failed = 1;
    return rc;
}

static int usable(const struct fv_mcap_writer *w, char *err, size_t errlen)
{
    if (!w->failed) return FV_OK;
    fv_seterr(err, errlen, "mcap: the writer failed earlier; the file is incomplete");
    return FV_ESTATE;
}

/* ---- open ------------------------------------------------------------------------------ */

static int writer_new(int fd, const char *path, struct fv_buf *mem,
                      const struct fv_mcap_write_opts *opts, struct fv_mcap_writer **out, char *err,
                      size_t errlen)
{
    static const struct fv_mcap_write_opts defaults = {0};
    if (opts == NULL) opts = &defaults;
    *out = NULL;
    if (opts->compression != FV_MCAP_ZSTD && opts->compression != FV_MCAP_NONE) {
        fv_seterr(err, errlen, "mcap: unknown compression %d", opts->compression);
        return FV_EINVAL;
    }
    if (opts->chunk_size > FV_MCAP_MAX_CHUNK) {
        fv_seterr(err, errlen, "mcap: chunk size %zu over the limit of %u", opts->chunk_size,
                  FV_MCAP_MAX_CHUNK);
        return FV_ELIMIT;
    }
    struct fv_mcap_writer *w = calloc(1, sizeof *w);
    if (w == NULL) return fail(&(struct fv_mcap_writer){0}, FV_ENOMEM, err, errlen);
    w->fd = fd;
    w->mem = mem;
    w->chunk_size = opts->chunk_size ? opts->chunk_size : FV_MCAP_DEFAULT_CHUNK;
    w->compression = opts->compression;
    w->level = opts->zstd_level ? opts->zstd_level : 3;
    w->no_summary = opts->no_summary;
    w->path = strdup(path ? path : "(memory)");
    w->chans = calloc(1, sizeof *w->chans);
    if (w->compression == FV_MCAP_ZSTD) w->cctx = ZSTD_createCCtx();
    struct fv_buf hdr = {0};
    size_t at;
    int rc = FV_ENOMEM;
    if (w->path == NULL || w->chans == NULL || (w->compression == FV_MCAP_ZSTD && !w->cctx))
        goto fail;
    if ((rc = fv_buf_append(&hdr, FV_MCAP_MAGIC, FV_MCAP_MAGIC_LEN)) ||
        (rc = fv_mcap_rec_begin(&hdr, FV_MCAP_OP_HEADER, &at)) ||
        (rc = fv_mcap_put_str(&hdr, opts->profile ? opts->profile : "")) ||
        (rc = fv_mcap_put_str(&hdr, opts->library ? opts->library : "fleetvault")))
        goto fail;
    fv_mcap_rec_end(&hdr, at);
    if ((rc = emit(w, hdr.data, hdr.len, err, errlen))) goto fail;
    fv_buf_free(&hdr);
    *out = w;
    return FV_OK;
fail:
    fv_buf_free(&hdr);
    fail(w, rc, err, errlen);
    fv_mcap_writer_free(w);
    return rc;
}

int fv_mcap_writer_open_fd(int fd, const char *path, const struct fv_mcap_write_opts *opts,
                           struct fv_mcap_writer **out, char *err, size_t errlen)
{
    if (fd < 0) {
        *out = NULL;
        fv_seterr(err, errlen, "mcap: no file descriptor");
        return FV_EINVAL;
    }
    return writer_new(fd, path, NULL, opts, out, err, errlen);
}

int fv_mcap_writer_open_mem(struct fv_buf *buf, const struct fv_mcap_write_opts *opts,
                            struct fv_mcap_writer **out, char *err, size_t errlen)
{
    return writer_new(-1, NULL, buf, opts, out, err, errlen);
}

uint64_t fv_mcap_writer_offset(const struct fv_mcap_writer *w)
{
    return w->off;
}

void fv_mcap_writer_free(struct fv_mcap_writer *w)
{
    if (w == NULL) return;
    for (uint32_t i = 0; w->chans && i <= w->nchannels; i++)
        fv_buf_free(&w->chans[i].idx);
    free(w->chans);
    fv_buf_free(&w->out);
    fv_buf_free(&w->sum_schemas);
    fv_buf_free(&w->sum_channels);
    fv_buf_free(&w->sum_chunks);
    fv_buf_free(&w->chunk);
    fv_buf_free(&w->zbuf);
    ZSTD_freeCCtx(w->cctx);
    free(w->path);
    free(w);
}

/* ---- schemas, channels ----------------------------------------------------------------- */

/* Writes the record in rec (from byte at) to the data section and keeps a copy for the
 * summary in sum. */
static int emit_and_keep(struct fv_mcap_writer *w, struct fv_buf *sum, const struct fv_buf *rec,
                         char *err, size_t errlen)
{
    int rc = fv_buf_append(sum, rec->data, rec->len);
    return rc ? rc : emit(w, rec->data, rec->len, err, errlen);
}

int fv_mcap_add_schema(struct fv_mcap_writer *w, const char *name, const char *encoding,
                       const void *data, size_t len, uint16_t *id, char *err, size_t errlen)
{
    int rc = usable(w, err, errlen);
    if (rc) return rc;
    if (w->nschemas >= FV_MCAP_MAX_IDS) {
        fv_seterr(err, errlen, "mcap: more than %u schemas", FV_MCAP_MAX_IDS);
        return FV_ELIMIT;
    }
    if (len > FV_MCAP_MAX_RECORD || strlen(name) > FV_MCAP_MAX_RECORD ||
        strlen(encoding) > FV_MCAP_MAX_RECORD) {
        fv_seterr(err, errlen, "mcap: schema over the limit of %u bytes", FV_MCAP_MAX_RECORD);
        return FV_ELIMIT;
    }
    if (encoding[0] == '\0' && len != 0) {
        fv_seterr(err, errlen, "mcap: a schema without encoding has no data");
        return FV_EINVAL;
    }
    uint16_t sid = (uint16_t)(w->nschemas + 1);
    struct fv_buf rec = {0};
    size_t at;
    if ((rc = fv_mcap_rec_begin(&rec, FV_MCAP_OP_SCHEMA, &at)) ||
        (rc = fv_mcap_put_u16(&rec, sid)) || (rc = fv_mcap_put_str(&rec, name)) ||
        (rc = fv_mcap_put_str(&rec, encoding)) || (rc = fv_mcap_put_bytes32(&rec, data, len)))
        goto out;
    fv_mcap_rec_end(&rec, at);
    if ((rc = emit_and_keep(w, &w->sum_schemas, &rec, err, errlen))) goto out;
    w->nschemas++;
    *id = sid;
out:
    fv_buf_free(&rec);
    return rc ? fail(w, rc, err, errlen) : FV_OK;
}

int fv_mcap_add_channel(struct fv_mcap_writer *w, uint16_t schema_id, const char *topic,
                        const char *message_encoding, const char *const *keys,
                        const char *const *vals, size_t nmeta, uint16_t *id, char *err,
                        size_t errlen)
{
    int rc = usable(w, err, errlen);
    if (rc) return rc;
    if (w->nchannels >= FV_MCAP_MAX_IDS) {
        fv_seterr(err, errlen, "mcap: more than %u channels", FV_MCAP_MAX_IDS);
        return FV_ELIMIT;
    }
    if (schema_id > w->nschemas) {
        fv_seterr(err, errlen, "mcap: channel %s: no schema %u", topic, (unsigned)schema_id);
        return FV_EINVAL;
    }
    size_t total = strlen(topic) + strlen(message_encoding);
    for (size_t i = 0; i < nmeta; i++)
        total += 8 + strlen(keys[i]) + strlen(vals[i]);
    if (total > FV_MCAP_MAX_RECORD) {
        fv_seterr(err, errlen, "mcap: channel over the limit of %u bytes", FV_MCAP_MAX_RECORD);
        return FV_ELIMIT;
    }
    struct wchan *nc = realloc(w->chans, (w->nchannels + 2) * sizeof *nc);
    if (nc == NULL) return fail(w, FV_ENOMEM, err, errlen);
    w->chans = nc;
    memset(&nc[w->nchannels + 1], 0, sizeof *nc);
    uint16_t cid = (uint16_t)(w->nchannels + 1);
    struct fv_buf rec = {0};
    size_t at, map_at;
    if ((rc = fv_mcap_rec_begin(&rec, FV_MCAP_OP_CHANNEL, &at)) ||
        (rc = fv_mcap_put_u16(&rec, cid)) || (rc = fv_mcap_put_u16(&rec, schema_id)) ||
        (rc = fv_mcap_put_str(&rec, topic)) || (rc = fv_mcap_put_str(&rec, message_encoding)))
        goto out;
    map_at = rec.len;
    if ((rc = fv_mcap_put_u32(&rec, 0))) goto out;
    for (size_t i = 0; i < nmeta; i++)
        if ((rc = fv_mcap_put_str(&rec, keys[i])) || (rc = fv_mcap_put_str(&rec, vals[i])))
            goto out;
    fv_put_u32(rec.data + map_at, (uint32_t)(rec.len - map_at - 4));
    fv_mcap_rec_end(&rec, at);
    if ((rc = emit_and_keep(w, &w->sum_channels, &rec, err, errlen))) goto out;
    w->nchannels++;
    w->chans[cid].defined = 1;
    *id = cid;
out:
    fv_buf_free(&rec);
    return rc ? fail(w, rc, err, errlen) : FV_OK;
}

/* ---- chunks ---------------------------------------------------------------------------- */

static int close_chunk(struct fv_mcap_writer *w, char *err, size_t errlen)
{
    if (w->chunk.len == 0) return FV_OK;
    const unsigned char *payload = w->chunk.data;
    size_t plen = w->chunk.len;
    const char *comp = "";
    int rc;
    if (w->compression == FV_MCAP_ZSTD) {
        size_t bound = ZSTD_compressBound(w->chunk.len);
        w->zbuf.len = 0;
        if ((rc = fv_buf_reserve(&w->zbuf, bound))) return rc;
        size_t n =
            ZSTD_compressCCtx(w->cctx, w->zbuf.data, bound, w->chunk.data, w->chunk.len, w->level);
        if (ZSTD_isError(n)) {
            fv_seterr(err, errlen, "mcap: zstd: %s", ZSTD_getErrorName(n));
            return FV_EIO;
        }
        payload = w->zbuf.data;
        plen = n;
        comp = "zstd";
    }
    /* The Chunk record's head; the records follow it. */
    struct fv_buf h = {0}, idx = {0};
    size_t at;
    uint64_t chunk_off = w->off;
    if ((rc = fv_mcap_put_u8(&h, FV_MCAP_OP_CHUNK)) ||
        (rc = fv_mcap_put_u64(&h, 8 + 8 + 8 + 4 + 4 + strlen(comp) + 8 + (uint64_t)plen)) ||
        (rc = fv_mcap_put_u64(&h, w->chunk_msgs ? w->chunk_start : 0)) ||
        (rc = fv_mcap_put_u64(&h, w->chunk_msgs ? w->chunk_end : 0)) ||
        (rc = fv_mcap_put_u64(&h, w->chunk.len)) ||
        (rc = fv_mcap_put_u32(&h, fv_mcap_crc32(0, w->chunk.data, w->chunk.len))) ||
        (rc = fv_mcap_put_str(&h, comp)) || (rc = fv_mcap_put_u64(&h, plen)) ||
        (rc = emit(w, h.data, h.len, err, errlen)) || (rc = emit(w, payload, plen, err, errlen)))
        goto out;
    uint64_t chunk_len = w->off - chunk_off;
    /* Message indexes, in channel id order; the chunk index's map of their offsets. */
    struct fv_buf *s = &w->sum_chunks;
    size_t map_at, cat;
    uint64_t idx_start = w->off;
    if ((rc = fv_mcap_rec_begin(s, FV_MCAP_OP_CHUNK_INDEX, &cat)) ||
        (rc = fv_mcap_put_u64(s, w->chunk_msgs ? w->chunk_start : 0)) ||
        (rc = fv_mcap_put_u64(s, w->chunk_msgs ? w->chunk_end : 0)) ||
        (rc = fv_mcap_put_u64(s, chunk_off)) || (rc = fv_mcap_put_u64(s, chunk_len)))
        goto out;
    map_at = s->len;
    if ((rc = fv_mcap_put_u32(s, 0))) goto out;
    for (uint32_t c = 1; c <= w->nchannels; c++) {
        struct wchan *ch = &w->chans[c];
        if (ch->idx.len == 0) continue;
        idx.len = 0;
        if ((rc = fv_mcap_put_u16(s, (uint16_t)c)) || (rc = fv_mcap_put_u64(s, w->off)) ||
            (rc = fv_mcap_rec_begin(&idx, FV_MCAP_OP_MSG_INDEX, &at)) ||
            (rc = fv_mcap_put_u16(&idx, (uint16_t)c)) ||
            (rc = fv_mcap_put_bytes32(&idx, ch->idx.data, ch->idx.len)))
            goto out;
        fv_mcap_rec_end(&idx, at);
        if ((rc = emit(w, idx.data, idx.len, err, errlen))) goto out;
        ch->idx.len = 0;
    }
    fv_put_u32(s->data + map_at, (uint32_t)(s->len - map_at - 4));
    if ((rc = fv_mcap_put_u64(s, w->off - idx_start)) || (rc = fv_mcap_put_str(s, comp)) ||
        (rc = fv_mcap_put_u64(s, plen)) || (rc = fv_mcap_put_u64(s, w->chunk.len)))
        goto out;
    fv_mcap_rec_end(s, cat);
    w->chunks++;
    w->chunk.len = 0;
    w->chunk_msgs = 0;
out:
    fv_buf_free(&h);
    fv_buf_free(&idx);
    return rc;
}

int fv_mcap_add_message(struct fv_mcap_writer *w, uint16_t channel_id, uint32_t sequence,
                        uint64_t log_time, uint64_t publish_time, const void *data, size_t len,
                        char *err, size_t errlen)
{
    int rc = usable(w, err, errlen);
    if (rc) return rc;
    if (channel_id == 0 || channel_id > w->nchannels) {
        fv_seterr(err, errlen, "mcap: no channel %u", (unsigned)channel_id);
        return FV_EINVAL;
    }
    /* Its record must fit in a chunk the reader accepts. */
    if (len > FV_MCAP_MAX_MESSAGE) {
        fv_seterr(err, errlen, "mcap: message of %zu bytes over the limit of %u", len,
                  FV_MCAP_MAX_MESSAGE);
        return FV_ELIMIT;
    }
    if (w->chunk.len > 0 &&
        w->chunk.len + FV_MCAP_REC_HDR + FV_MCAP_MSG_FIXED + len > FV_MCAP_MAX_CHUNK) {
        if ((rc = close_chunk(w, err, errlen))) return fail(w, rc, err, errlen);
    }
    struct wchan *ch = &w->chans[channel_id];
    uint64_t at = w->chunk.len;
    unsigned char e[16];
    fv_put_u64(e, log_time);
    fv_put_u64(e + 8, at);
    size_t rat;
    if ((rc = fv_buf_reserve(&w->chunk, FV_MCAP_REC_HDR + FV_MCAP_MSG_FIXED + len)) ||
        (rc = fv_buf_append(&ch->idx, e, sizeof e)) ||
        (rc = fv_mcap_rec_begin(&w->chunk, FV_MCAP_OP_MESSAGE, &rat)) ||
        (rc = fv_mcap_put_u16(&w->chunk, channel_id)) ||
        (rc = fv_mcap_put_u32(&w->chunk, sequence)) ||
        (rc = fv_mcap_put_u64(&w->chunk, log_time)) ||
        (rc = fv_mcap_put_u64(&w->chunk, publish_time)) ||
        (rc = fv_buf_append(&w->chunk, data, len)))
        return fail(w, rc, err, errlen);
    fv_mcap_rec_end(&w->chunk, rat);
    if (!w->chunk_msgs || log_time < w->chunk_start) w->chunk_start = log_time;
    if (!w->chunk_msgs || log_time > w->chunk_end) w->chunk_end = log_time;
    w->chunk_msgs = 1;
    if (w->messages == 0 || log_time < w->start) w->start = log_time;
    if (w->messages == 0 || log_time > w->end) w->end = log_time;
    w->messages++;
    ch->count++;
    if (w->chunk.len >= w->chunk_size && (rc = close_chunk(w, err, errlen)))
        return fail(w, rc, err, errlen);
    return FV_OK;
}

/* ---- close ----------------------------------------------------------------------------- */

/* Appends a group of summary records to sum and its Summary Offset to offs. */
static int add_group(struct fv_buf *sum, struct fv_buf *offs, uint64_t summary_start, unsigned op,
                     const struct fv_buf *group)
{
    if (group->len == 0) return FV_OK;
    size_t at;
    int rc;
    if ((rc = fv_mcap_rec_begin(offs, FV_MCAP_OP_SUMMARY_OFF, &at)) ||
        (rc = fv_mcap_put_u8(offs, op)) || (rc = fv_mcap_put_u64(offs, summary_start + sum->len)) ||
        (rc = fv_mcap_put_u64(offs, group->len)) ||
        (rc = fv_buf_append(sum, group->data, group->len)))
        return rc;
    fv_mcap_rec_end(offs, at);
    return FV_OK;
}

static int write_tail(struct fv_mcap_writer *w, char *err, size_t errlen)
{
    int rc;
    if ((rc = close_chunk(w, err, errlen))) return rc;
    struct fv_buf t = {0}, stats = {0}, offs = {0};
    size_t at;
    /* Data End carries the CRC of every byte before it. */
    if ((rc = fv_mcap_rec_begin(&t, FV_MCAP_OP_DATA_END, &at)) ||
        (rc = fv_mcap_put_u32(&t, w->crc)))
        goto out;
    fv_mcap_rec_end(&t, at);
    if ((rc = emit(w, t.data, t.len, err, errlen))) goto out;
    t.len = 0;
    uint64_t summary_start = 0, offsets_start = 0;
    if (!w->no_summary) {
        summary_start = w->off;
        size_t map_at;
        if ((rc = fv_mcap_rec_begin(&stats, FV_MCAP_OP_STATISTICS, &at)) ||
            (rc = fv_mcap_put_u64(&stats, w->messages)) ||
            (rc = fv_mcap_put_u16(&stats, (uint16_t)w->nschemas)) ||
            (rc = fv_mcap_put_u32(&stats, w->nchannels)) || (rc = fv_mcap_put_u32(&stats, 0)) ||
            (rc = fv_mcap_put_u32(&stats, 0)) || (rc = fv_mcap_put_u32(&stats, w->chunks)) ||
            (rc = fv_mcap_put_u64(&stats, w->start)) || (rc = fv_mcap_put_u64(&stats, w->end)))
            goto out;
        map_at = stats.len;
        if ((rc = fv_mcap_put_u32(&stats, 0))) goto out;
        for (uint32_t c = 1; c <= w->nchannels; c++)
            if (w->chans[c].count && ((rc = fv_mcap_put_u16(&stats, (uint16_t)c)) ||
                                      (rc = fv_mcap_put_u64(&stats, w->chans[c].count))))
                goto out;
        fv_put_u32(stats.data + map_at, (uint32_t)(stats.len - map_at - 4));
        fv_mcap_rec_end(&stats, at);
        if ((rc = add_group(&t, &offs, summary_start, FV_MCAP_OP_SCHEMA, &w->sum_schemas)) ||
            (rc = add_group(&t, &offs, summary_start, FV_MCAP_OP_CHANNEL, &w->sum_channels)) ||
            (rc = add_group(&t, &offs, summary_start, FV_MCAP_OP_CHUNK_INDEX, &w->sum_chunks)) ||
            (rc = add_group(&t, &offs, summary_start, FV_MCAP_OP_STATISTICS, &stats)))
            goto out;
        offsets_start = summary_start + t.len;
        if ((rc = fv_buf_append(&t, offs.data, offs.len))) goto out;
    }
    /* The summary CRC covers the footer's opcode, length and first two fields. */
    if ((rc = fv_mcap_put_u8(&t, FV_MCAP_OP_FOOTER)) ||
        (rc = fv_mcap_put_u64(&t, FV_MCAP_FOOTER_LEN)) ||
        (rc = fv_mcap_put_u64(&t, summary_start)) || (rc = fv_mcap_put_u64(&t, offsets_start)))
        goto out;
    uint32_t scrc = summary_start ? fv_mcap_crc32(0, t.data, t.len) : 0;
    if ((rc = fv_mcap_put_u32(&t, scrc))) goto out;
    if ((rc = fv_buf_append(&t, FV_MCAP_MAGIC, FV_MCAP_MAGIC_LEN)) ||
        (rc = emit(w, t.data, t.len, err, errlen)))
        goto out;
    rc = flush_out(w, err, errlen);
out:
    fv_buf_free(&t);
    fv_buf_free(&stats);
    fv_buf_free(&offs);
    return rc;
}

int fv_mcap_writer_close(struct fv_mcap_writer *w, char *err, size_t errlen)
{
    int rc = usable(w, err, errlen);
    if (rc == FV_OK) rc = write_tail(w, err, errlen);
    if (rc == FV_ENOMEM) fv_seterr(err, errlen, "mcap: out of memory");
    fv_mcap_writer_free(w);
    return rc;
}
