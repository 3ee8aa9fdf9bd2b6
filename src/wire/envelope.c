/*
 * envelope.c - FlatBuffers envelope decoder and a builder that lays bytes out exactly as the
 * Go FlatBuffers Builder does (the reference receiver's replies are built with it).
 *
 * Format (FlatBuffers, little-endian, no file identifier, no size prefix):
 *   buf[0..4)          u32 offset of the root table from 0
 *   table T:           i32 soffset; vtable at T - soffset
 *   vtable V:          u16 vtable bytes, u16 table inline bytes, u16 field offsets from T
 *                      (0 = absent), one per slot
 *   vector field at F: u32 offset from F to the vector; vector: u32 count, then bytes
 *   union value at F:  u32 offset from F to the member table
 * Envelope slots: 0 txid [ubyte], 1 topic [ubyte], 2 message_type ubyte, 3 message (union),
 * 4 message_id [ubyte]. Stream slots: 0 created_at u32, 1 sender_id [ubyte], 2 payload
 * [ubyte], 3 device_type [ubyte], 4 device_id [ubyte], 5 delivered_at_epoch_ms u64.
 *
 * Validity rules checked by the decoder (each failure names the rule):
 *   R1 the buffer holds at least the root offset; R2 every table, vtable and vector lies
 *   wholly inside the buffer; R3 the vtable is at least 4 bytes, even-sized, and its field
 *   offsets point inside the table's inline bytes; R4 a Stream message is required when
 *   message_type is 4.
 *
 * The builder writes from the end of its scratch space towards the front, aligning with
 * Prep() like the Go builder, appends a trailing 0 to byte strings (CreateByteString), and
 * de-duplicates identical vtables. Replies are therefore byte-identical to the reference's.
 */
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "wire/envelope.h"

/* ---- decoding ---------------------------------------------------------------------- */

struct fb_table {
    const unsigned char *buf;
    size_t len;
    size_t pos; /* table start */
    size_t vt;  /* vtable start */
    uint16_t vtlen;
    uint16_t tlen;
};

static int fb_table_at(const unsigned char *buf, size_t len, size_t pos, struct fb_table *t,
                       char *err, size_t errlen)
{
    if (pos > len || len - pos < 4) {
        fv_seterr(err, errlen, "R2: table at %zu outside buffer of %zu bytes", pos, len);
        return FV_EPROTO;
    }
    int32_t so = (int32_t)fv_get_u32(buf + pos);
    int64_t vt = (int64_t)pos - (int64_t)so;
    if (vt < 0 || (uint64_t)vt > len || len - (size_t)vt < 4) {
        fv_seterr(err, errlen, "R2: vtable of table at %zu outside buffer", pos);
        return FV_EPROTO;
    }
    uint16_t vtlen = fv_get_u16(buf + vt);
    uint16_t tlen = fv_get_u16(buf + vt + 2);
    if (vtlen < 4 || (vtlen & 1) || len - (size_t)vt < vtlen) {
        fv_seterr(err, errlen, "R3: bad vtable size %u at %lld", vtlen, (long long)vt);
        return FV_EPROTO;
    }
    if (tlen < 4 || len - pos < tlen) {
        fv_seterr(err, errlen, "R2: table at %zu of %u bytes outside buffer", pos, tlen);
        return FV_EPROTO;
    }
    t->buf = buf;
    t->len = len;
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vtlen = vtlen;
    t->tlen = tlen;
    return FV_OK;
}

/* Returns the offset of slot's field within the table, 0 if absent, -1 if malformed. */
static int fb_field(const struct fb_table *t, int slot, size_t size, char *err, size_t errlen)
{
    size_t vo = 4 + 2 * (size_t)slot;
    if (vo + 2 > t->vtlen) return 0;
    uint16_t fo = fv_get_u16(t->buf + t->vt + vo);
    if (fo == 0) return 0;
    if (fo < 4 || (size_t)fo + size > t->tlen) {
        fv_seterr(err, errlen, "R3: field %d at offset %u overruns table of %u bytes", slot, fo,
                  t->tlen);
        return -1;
    }
    return fo;
}

static int fb_vector(const struct fb_table *t, int slot, struct fv_bytes *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    int fo = fb_field(t, slot, 4, err, errlen);
    if (fo < 0) return FV_EPROTO;
    if (fo == 0) return FV_OK;
    size_t at = t->pos + (size_t)fo;
    uint64_t vpos = (uint64_t)at + fv_get_u32(t->buf + at);
    if (vpos > t->len || t->len - vpos < 4) {
        fv_seterr(err, errlen, "R2: vector of field %d outside buffer", slot);
        return FV_EPROTO;
    }
    uint32_t n = fv_get_u32(t->buf + vpos);
    if (n > t->len - vpos - 4) {
        fv_seterr(err, errlen, "R2: vector of field %d claims %u bytes, buffer has %zu", slot, n,
                  (size_t)(t->len - vpos - 4));
        return FV_EPROTO;
    }
    out->p = t->buf + vpos + 4;
    out->len = n;
    out->present = 1;
    return FV_OK;
}

int fv_envelope_decode(const unsigned char *buf, size_t len, struct fv_envelope *env, char *err,
                       size_t errlen)
{
    memset(env, 0, sizeof *env);
    if (buf == NULL || len < 4) {
        fv_seterr(err, errlen, "R1: message of %zu bytes is too short for an envelope", len);
        return FV_EPROTO;
    }
    struct fb_table e;
    if (fb_table_at(buf, len, fv_get_u32(buf), &e, err, errlen)) return FV_EPROTO;
    if (fb_vector(&e, 0, &env->txid, err, errlen) || fb_vector(&e, 1, &env->topic, err, errlen) ||
        fb_vector(&e, 4, &env->message_id, err, errlen))
        return FV_EPROTO;
    int fo = fb_field(&e, 2, 1, err, errlen);
    if (fo < 0) return FV_EPROTO;
    env->message_type = fo ? buf[e.pos + (size_t)fo] : 0;
    fo = fb_field(&e, 3, 4, err, errlen);
    if (fo < 0) return FV_EPROTO;
    if (fo == 0) {
        if (env->message_type == FV_MSG_STREAM) {
            fv_seterr(err, errlen, "R4: Stream message missing");
            return FV_EPROTO;
        }
        return FV_OK;
    }
    env->has_message = 1;
    if (env->message_type != FV_MSG_STREAM) return FV_OK;
    size_t at = e.pos + (size_t)fo;
    uint64_t mpos = (uint64_t)at + fv_get_u32(buf + at);
    if (mpos > len) {
        fv_seterr(err, errlen, "R2: Stream table outside buffer");
        return FV_EPROTO;
    }
    struct fb_table s;
    if (fb_table_at(buf, len, (size_t)mpos, &s, err, errlen)) return FV_EPROTO;
    fo = fb_field(&s, 0, 4, err, errlen);
    if (fo < 0) return FV_EPROTO;
    env->created_at = fo ? fv_get_u32(buf + s.pos + (size_t)fo) : 0;
    fo = fb_field(&s, 5, 8, err, errlen);
    if (fo < 0) return FV_EPROTO;
    env->delivered_at_epoch_ms = fo ? fv_get_u64(buf + s.pos + (size_t)fo) : 0;
    if (fb_vector(&s, 1, &env->sender_id, err, errlen) ||
        fb_vector(&s, 2, &env->payload, err, errlen) ||
        fb_vector(&s, 3, &env->device_type, err, errlen) ||
        fb_vector(&s, 4, &env->device_id, err, errlen))
        return FV_EPROTO;
    return FV_OK;
}

/* ---- building (mirror of the Go builder) ------------------------------------------- */

#define FB_MAX_SLOTS   8
#define FB_MAX_VTABLES 4

struct fb_builder {
    unsigned char *bytes; /* scratch; data lives in bytes[head..cap) */
    size_t cap;
    size_t head;
    size_t minalign;
    uint32_t vtable[FB_MAX_SLOTS];
    int nslots;
    uint32_t object_end;
    uint32_t vtables[FB_MAX_VTABLES];
    int nvtables;
    int oom;
};

static uint32_t fb_offset(const struct fb_builder *b)
{
    return (uint32_t)(b->cap - b->head);
}

static void fb_grow(struct fb_builder *b, size_t need)
{
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap - (b->cap - b->head) < need)
        ncap *= 2;
    unsigned char *n = calloc(1, ncap);
    if (n == NULL) {
        b->oom = 1;
        return;
    }
    size_t used = b->cap - b->head;
    if (used) memcpy(n + ncap - used, b->bytes + b->head, used);
    free(b->bytes);
    b->bytes = n;
    b->head = ncap - used;
    b->cap = ncap;
}

static void fb_prep(struct fb_builder *b, size_t size, size_t additional)
{
    if (size > b->minalign) b->minalign = size;
    size_t align = (~(fb_offset(b) + additional) + 1) & (size - 1);
    if (b->head < align + size + additional + 1) fb_grow(b, align + size + additional + 1);
    if (b->oom) return;
    b->head -= align; /* scratch is zeroed, so padding is zeros */
}

static void fb_place(struct fb_builder *b, const void *p, size_t n)
{
    if (b->oom) return;
    b->head -= n;
    memcpy(b->bytes + b->head, p, n);
}

static void fb_place_u32(struct fb_builder *b, uint32_t v)
{
    unsigned char t[4];
    fv_put_u32(t, v);
    fb_place(b, t, 4);
}

static uint32_t fb_create_bytes(struct fb_builder *b, const void *s, size_t n)
{
    unsigned char zero = 0;
    fb_prep(b, 4, n + 1);
    fb_place(b, &zero, 1);
    fb_place(b, s, n);
    fb_place_u32(b, (uint32_t)n);
    return fb_offset(b);
}

static void fb_start(struct fb_builder *b, int nslots)
{
    memset(b->vtable, 0, sizeof b->vtable);
    b->nslots = nslots;
    b->object_end = fb_offset(b);
}

static void fb_add_uoffset(struct fb_builder *b, int slot, uint32_t off)
{
    fb_prep(b, 4, 0);
    fb_place_u32(b, fb_offset(b) - off + 4);
    b->vtable[slot] = fb_offset(b);
}

static void fb_add_u8(struct fb_builder *b, int slot, uint8_t v)
{
    if (v == 0) return;
    fb_prep(b, 1, 0);
    fb_place(b, &v, 1);
    b->vtable[slot] = fb_offset(b);
}

static void fb_add_u32(struct fb_builder *b, int slot, uint32_t v)
{
    if (v == 0) return;
    fb_prep(b, 4, 0);
    fb_place_u32(b, v);
    b->vtable[slot] = fb_offset(b);
}

static void fb_add_u64(struct fb_builder *b, int slot, uint64_t v)
{
    if (v == 0) return;
    unsigned char t[8];
    fv_put_u64(t, v);
    fb_prep(b, 8, 0);
    fb_place(b, t, 8);
    b->vtable[slot] = fb_offset(b);
}

static void fb_place_u16(struct fb_builder *b, uint16_t v)
{
    unsigned char t[2];
    fv_put_u16(t, v);
    fb_prep(b, 2, 0);
    fb_place(b, t, 2);
}

static uint32_t fb_end(struct fb_builder *b)
{
    fb_prep(b, 4, 0);
    fb_place_u32(b, 0);
    uint32_t obj = fb_offset(b);
    int n = b->nslots;
    while (n > 0 && b->vtable[n - 1] == 0)
        n--;
    uint16_t vt[2 + FB_MAX_SLOTS];
    vt[0] = (uint16_t)((n + 2) * 2);
    vt[1] = (uint16_t)(obj - b->object_end);
    for (int i = 0; i < n; i++)
        vt[2 + i] = b->vtable[i] ? (uint16_t)(obj - b->vtable[i]) : 0;
    if (b->oom) return 0;
    /* Reuse an identical vtable written earlier, as the Go builder does. */
    for (int k = b->nvtables - 1; k >= 0; k--) {
        const unsigned char *old = b->bytes + b->cap - b->vtables[k];
        if (fv_get_u16(old) != vt[0]) continue;
        /* Like Go's vtableEqual: compares the field entries, not the table size. */
        int same = 1;
        for (int i = 2; i < n + 2 && same; i++)
            same = fv_get_u16(old + 2 * i) == vt[i];
        if (same) {
            fv_put_u32(b->bytes + b->cap - obj, (uint32_t)(b->vtables[k] - obj));
            return obj;
        }
    }
    for (int i = n - 1; i >= 0; i--)
        fb_place_u16(b, vt[2 + i]);
    fb_place_u16(b, vt[1]);
    fb_place_u16(b, vt[0]);
    if (b->oom) return 0;
    fv_put_u32(b->bytes + b->cap - obj, (uint32_t)(fb_offset(b) - obj));
    if (b->nvtables < FB_MAX_VTABLES) b->vtables[b->nvtables++] = fb_offset(b);
    return obj;
}

static int fb_finish(struct fb_builder *b, uint32_t root, struct fv_buf *out)
{
    fb_prep(b, b->minalign, 4);
    fb_prep(b, 4, 0);
    fb_place_u32(b, fb_offset(b) - root + 4);
    int rc = b->oom ? FV_ENOMEM : fv_buf_append(out, b->bytes + b->head, b->cap - b->head);
    free(b->bytes);
    return rc;
}

/* FlatbuffersEnvelopeToBytes: txid, topic and message_id are always written (maybe empty). */
static int fb_envelope(struct fb_builder *b, const void *txid, size_t txid_len, const void *topic,
                       size_t topic_len, uint32_t msg, const void *mid, size_t mid_len,
                       uint8_t type, struct fv_buf *out)
{
    uint32_t t = fb_create_bytes(b, txid, txid_len);
    uint32_t tp = fb_create_bytes(b, topic, topic_len);
    uint32_t m = fb_create_bytes(b, mid, mid_len);
    fb_start(b, 5);
    fb_add_uoffset(b, 0, t);
    fb_add_uoffset(b, 1, tp);
    fb_add_u8(b, 2, type);
    fb_add_uoffset(b, 3, msg);
    fb_add_uoffset(b, 4, m);
    return fb_finish(b, fb_end(b), out);
}

int fv_envelope_build_ack(struct fv_buf *out, const void *txid, size_t txid_len, const void *topic,
                          size_t topic_len)
{
    struct fb_builder b = {0};
    uint32_t msg = fb_create_bytes(&b, "", 0);
    return fb_envelope(&b, txid, txid_len, topic, topic_len, msg, "", 0, FV_MSG_STREAM_ACK, out);
}

int fv_envelope_build_stream(struct fv_buf *out, const struct fv_stream_msg *m)
{
    struct fb_builder b = {0};
    uint32_t sid = fb_create_bytes(&b, m->sender_id ? m->sender_id : "", m->sender_id_len);
    uint32_t pl = fb_create_bytes(&b, m->payload ? m->payload : "", m->payload_len);
    uint32_t dt = fb_create_bytes(&b, m->device_type ? m->device_type : "", m->device_type_len);
    uint32_t di = fb_create_bytes(&b, m->device_id ? m->device_id : "", m->device_id_len);
    fb_start(&b, 6);
    fb_add_uoffset(&b, 1, sid);
    fb_add_u32(&b, 0, m->created_at);
    fb_add_uoffset(&b, 2, pl);
    fb_add_uoffset(&b, 3, dt);
    fb_add_uoffset(&b, 4, di);
    fb_add_u64(&b, 5, m->delivered_at_epoch_ms);
    uint32_t msg = fb_end(&b);
    return fb_envelope(&b, m->txid ? m->txid : "", m->txid_len, m->topic ? m->topic : "",
                       m->topic_len, msg, m->message_id ? m->message_id : "", m->message_id_len,
                       FV_MSG_STREAM, out);
}

int fv_envelope_build_error(struct fv_buf *out, const void *txid, size_t txid_len, const char *text)
{
    struct fv_stream_msg m = {0};
    m.txid = txid;
    m.txid_len = txid_len;
    m.payload = text;
    m.payload_len = strlen(text);
    return fv_envelope_build_stream(out, &m);
}
