/*
 * payload.c - protobuf payload decoding and normalisation on top of protobuf-c
 * (schema: telemetry.proto in this directory, compiled at build time by protoc-c).
 *
 * Rules applied on decode, in order (docs/protocol.md, "Quirks"):
 *   Q1 string values of location signals in the form "(LAT N|S, LON E|W)" become locations;
 *   Q2 other string values that are entirely a finite number (scientific notation allowed)
 *      become doubles;
 *   Q3 `invalid = true` means "no value" (FV_VK_INVALID);
 *   Q4 unknown signal numbers and oneof members are kept, never rejected.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry.pb-c.h"
#include "util/arena.h"
#include "util/err.h"
#include "wire/payload.h"
#include "wire/pbtime.h"

/* Messages are unpacked into an arena over a stack buffer (util/arena.h) and dropped with it:
 * no malloc/free per field (protobuf-c's unpack and free_unpacked were ~5% of the ingest
 * loop, most of it in malloc; issue 13). What outlives the call is copied out. */
#define PB_STACK 16384

static void *pb_alloc(void *arena, size_t n)
{
    return fv_arena_alloc(arena, n);
}

static void pb_free(void *arena, void *p)
{
    (void)arena;
    (void)p; /* freed all at once by fv_arena_release */
}

/* Signals whose value is a location (Location, OriginLocation, DestinationLocation). */
static int is_location_signal(uint32_t f)
{
    return f == 21 || f == 111 || f == 112;
}

int fv_parse_location_string(const char *s, double *lat, double *lon)
{
    char ns, ew;
    double a, b;
    int used = 0;
    if (sscanf(s, " ( %lf %c , %lf %c ) %n", &a, &ns, &b, &ew, &used) != 4 || s[used] != '\0')
        return -1;
    ns = (char)toupper((unsigned char)ns);
    ew = (char)toupper((unsigned char)ew);
    if ((ns != 'N' && ns != 'S') || (ew != 'E' && ew != 'W') || !isfinite(a) || !isfinite(b))
        return -1;
    *lat = ns == 'S' ? -a : a;
    *lon = ew == 'W' ? -b : b;
    return 0;
}

static int parse_number_string(const char *s, double *out)
{
    if (*s == '\0' || isspace((unsigned char)*s)) return -1;
    char *end;
    double d = strtod(s, &end);
    if (*end != '\0' || !isfinite(d)) return -1;
    /* strtod also takes hex floats and "inf"/"nan" words; accept decimal forms only. */
    for (const char *c = s; *c; c++)
        if (!(isdigit((unsigned char)*c) || *c == '.' || *c == '-' || *c == '+' || *c == 'e' ||
              *c == 'E'))
            return -1;
    *out = d;
    return 0;
}

static uint32_t bools_to_bits(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    uint32_t bits = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_BOOL && f->id >= 1 && f->id <= 32 &&
            *(const protobuf_c_boolean *)((const char *)m + f->offset))
            bits |= 1u << (f->id - 1);
    }
    return bits;
}

static int convert_value(uint32_t field, const Fvpb__Value *pv, struct fv_value *v)
{
    memset(v, 0, sizeof *v);
    if (pv == NULL || pv->value_case == FVPB__VALUE__VALUE__NOT_SET) {
        /* Q4: a member this schema lacks arrives as an unknown field. */
        v->kind = (pv && pv->base.n_unknown_fields) ? FV_VK_OTHER : FV_VK_NONE;
        if (pv && pv->base.n_unknown_fields)
            v->member = (uint8_t)(pv->base.unknown_fields[0].tag & 0xff);
        return FV_OK;
    }
    v->member = (uint8_t)pv->value_case;
    switch (pv->value_case) {
    case FVPB__VALUE__VALUE_STRING_VALUE: {
        const char *s = pv->string_value ? pv->string_value : "";
        double a, b;
        if (is_location_signal(field) && fv_parse_location_string(s, &a, &b) == 0) { /* Q1 */
            v->kind = FV_VK_LOCATION;
            v->u.loc.lat = a;
            v->u.loc.lon = b;
        } else if (parse_number_string(s, &a) == 0) { /* Q2 */
            v->kind = FV_VK_DOUBLE;
            v->u.d = a;
        } else {
            v->kind = FV_VK_STRING;
            v->u.s = strdup(s);
            if (v->u.s == NULL) return FV_ENOMEM;
        }
        return FV_OK;
    }
    case FVPB__VALUE__VALUE_INT_VALUE:
        v->kind = FV_VK_INT;
        v->u.i = pv->int_value;
        return FV_OK;
    case FVPB__VALUE__VALUE_LONG_VALUE:
        v->kind = FV_VK_INT;
        v->u.i = pv->long_value;
        return FV_OK;
    case FVPB__VALUE__VALUE_FLOAT_VALUE:
        v->kind = FV_VK_DOUBLE;
        v->u.d = pv->float_value;
        return FV_OK;
    case FVPB__VALUE__VALUE_DOUBLE_VALUE:
        v->kind = FV_VK_DOUBLE;
        v->u.d = pv->double_value;
        return FV_OK;
    case FVPB__VALUE__VALUE_BOOLEAN_VALUE:
        v->kind = FV_VK_BOOL;
        v->u.i = pv->boolean_value ? 1 : 0;
        return FV_OK;
    case FVPB__VALUE__VALUE_LOCATION_VALUE:
        v->kind = FV_VK_LOCATION;
        if (pv->location_value) {
            v->u.loc.lat = pv->location_value->latitude;
            v->u.loc.lon = pv->location_value->longitude;
        }
        return FV_OK;
    case FVPB__VALUE__VALUE_INVALID: /* Q3 */
        v->kind = pv->invalid ? FV_VK_INVALID : FV_VK_NONE;
        return FV_OK;
    case FVPB__VALUE__VALUE_DOOR_VALUE:
        v->kind = FV_VK_DOORS;
        v->u.bits = pv->door_value ? bools_to_bits(&pv->door_value->base) : 0;
        return FV_OK;
    case FVPB__VALUE__VALUE_TIRE_LOCATION_VALUE:
        v->kind = FV_VK_TIRES;
        v->u.bits = pv->tire_location_value ? bools_to_bits(&pv->tire_location_value->base) : 0;
        return FV_OK;
    case FVPB__VALUE__VALUE_TIME_VALUE:
        v->kind = FV_VK_TIME;
        if (pv->time_value) {
            v->u.time.h = pv->time_value->hour;
            v->u.time.m = pv->time_value->minute;
            v->u.time.s = pv->time_value->second;
        }
        return FV_OK;
    default: {
        /* Every other member is an enum, declared int32 in telemetry.proto. */
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
            &fvpb__value__descriptor, (unsigned)pv->value_case);
        v->kind = FV_VK_ENUM;
        if (fd && fd->type == PROTOBUF_C_TYPE_INT32)
            v->u.i = *(const int32_t *)((const char *)pv + fd->offset);
        return FV_OK;
    }
    }
}

/* Converts an unpacked Payload into the value model (out owns its memory). */
static int vrecord_from_pb(const Fvpb__Payload *pl, struct fv_vrecord *out)
{
    memset(out, 0, sizeof *out);
    out->created_at_ms = fv_pbtime_ms(pl->created_at);
    out->is_resend = pl->is_resend ? 1 : 0;
    out->vin = strdup(pl->vin ? pl->vin : "");
    if (out->vin == NULL) goto oom;
    if (pl->n_data) {
        out->data = calloc(pl->n_data, sizeof *out->data);
        if (out->data == NULL) goto oom;
    }
    for (size_t i = 0; i < pl->n_data; i++) {
        const Fvpb__Datum *d = pl->data[i];
        out->data[i].field = (uint32_t)d->key;
        out->n = i + 1;
        if (convert_value((uint32_t)d->key, d->value, &out->data[i].value)) goto oom;
    }
    return FV_OK;
oom:
    fv_vrecord_free(out);
    return FV_ENOMEM;
}

int fv_payload_decode_v(const unsigned char *p, size_t len, struct fv_vrecord *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    _Alignas(16) unsigned char stack[PB_STACK];
    struct fv_arena arena;
    fv_arena_init(&arena, stack, sizeof stack);
    ProtobufCAllocator pa = {pb_alloc, pb_free, &arena};
    Fvpb__Payload *pl = fvpb__payload__unpack(&pa, len, p);
    int rc;
    if (pl == NULL) {
        fv_seterr(err, errlen, "V payload of %zu bytes is not a valid protobuf Payload", len);
        rc = FV_EPROTO;
    } else {
        rc = vrecord_from_pb(pl, out);
    }
    fv_arena_release(&arena);
    return rc;
}

void fv_vrecord_free(struct fv_vrecord *r)
{
    for (size_t i = 0; i < r->n; i++)
        fv_value_clear(&r->data[i].value);
    free(r->data);
    free(r->vin);
    memset(r, 0, sizeof *r);
}

/* ---- encoding (simulator) ------------------------------------------------------------ */

static int pack_into(const ProtobufCMessage *m, struct fv_buf *out)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    int rc = fv_buf_reserve(out, n);
    if (rc) return rc;
    out->len += protobuf_c_message_pack(m, out->data + out->len);
    return FV_OK;
}

int fv_payload_encode_v(const struct fv_vrecord *r, struct fv_buf *out)
{
    int rc = FV_ENOMEM;
    Fvpb__Payload pl = FVPB__PAYLOAD__INIT;
    Fvpb__Timestamp ts = FVPB__TIMESTAMP__INIT;
    fv_pbtime_set(&ts, r->created_at_ms);
    pl.created_at = &ts;
    pl.vin = r->vin ? r->vin : (char *)"";
    pl.is_resend = r->is_resend;
    Fvpb__Datum *datums = calloc(r->n ? r->n : 1, sizeof *datums);
    Fvpb__Datum **ptrs = calloc(r->n ? r->n : 1, sizeof *ptrs);
    Fvpb__Value *vals = calloc(r->n ? r->n : 1, sizeof *vals);
    Fvpb__LocationValue *locs = calloc(r->n ? r->n : 1, sizeof *locs);
    if (!datums || !ptrs || !vals || !locs) goto done;
    for (size_t i = 0; i < r->n; i++) {
        const struct fv_value *v = &r->data[i].value;
        fvpb__datum__init(&datums[i]);
        fvpb__value__init(&vals[i]);
        datums[i].key = (int32_t)r->data[i].field;
        datums[i].value = &vals[i];
        ptrs[i] = &datums[i];
        Fvpb__Value *pv = &vals[i];
        switch (v->kind) {
        case FV_VK_STRING:
            pv->value_case = FVPB__VALUE__VALUE_STRING_VALUE;
            pv->string_value = v->u.s;
            break;
        case FV_VK_INT:
            pv->value_case = FVPB__VALUE__VALUE_INT_VALUE;
            pv->int_value = (int32_t)v->u.i;
            break;
        case FV_VK_DOUBLE:
            pv->value_case = FVPB__VALUE__VALUE_DOUBLE_VALUE;
            pv->double_value = v->u.d;
            break;
        case FV_VK_BOOL:
            pv->value_case = FVPB__VALUE__VALUE_BOOLEAN_VALUE;
            pv->boolean_value = v->u.i != 0;
            break;
        case FV_VK_LOCATION:
            fvpb__location_value__init(&locs[i]);
            locs[i].latitude = v->u.loc.lat;
            locs[i].longitude = v->u.loc.lon;
            pv->value_case = FVPB__VALUE__VALUE_LOCATION_VALUE;
            pv->location_value = &locs[i];
            break;
        case FV_VK_ENUM: {
            const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field(&fvpb__value__descriptor, v->member);
            if (fd == NULL || fd->type != PROTOBUF_C_TYPE_INT32) {
                rc = FV_EINVAL;
                goto done;
            }
            pv->value_case = (Fvpb__Value__ValueCase)v->member;
            *(int32_t *)((char *)pv + fd->offset) = (int32_t)v->u.i;
            break;
        }
        case FV_VK_INVALID:
            pv->value_case = FVPB__VALUE__VALUE_INVALID;
            pv->invalid = 1;
            break;
        default:
            rc = FV_EINVAL; /* doors, time and tires are not produced by the simulator */
            goto done;
        }
    }
    pl.n_data = r->n;
    pl.data = ptrs;
    rc = pack_into(&pl.base, out);
done:
    free(datums);
    free(ptrs);
    free(vals);
    free(locs);
    return rc;
}

/* ---- normalisation (server) --------------------------------------------------------- */

static int topic_is(const char *topic, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(topic, name, len) == 0;
}

/* The limits a device's V record must keep (payload.h, FV_PAYLOAD_MAX_*). */
static int v_within_limits(const Fvpb__Payload *pl, char *err, size_t errlen)
{
    if (pl->n_data > FV_PAYLOAD_MAX_DATUMS) {
        fv_seterr(err, errlen, "V record of %zu datums (at most %d)", pl->n_data,
                  FV_PAYLOAD_MAX_DATUMS);
        return FV_EPROTO;
    }
    for (size_t i = 0; i < pl->n_data; i++)
        if (pl->data[i]->key < 0 || pl->data[i]->key > FV_PAYLOAD_MAX_FIELD) {
            fv_seterr(err, errlen, "V record datum %zu: signal number %d outside 0..%d", i,
                      (int)pl->data[i]->key, FV_PAYLOAD_MAX_FIELD);
            return FV_EPROTO;
        }
    return FV_OK;
}

int fv_payload_normalise(const char *topic, size_t topic_len, const unsigned char *p, size_t len,
                         const char *vin, struct fv_buf *out, struct fv_vrecord *v, char *err,
                         size_t errlen)
{
    if (v) memset(v, 0, sizeof *v);
    const ProtobufCMessageDescriptor *d = NULL;
    if (topic_is(topic, topic_len, FV_TOPIC_V))
        d = &fvpb__payload__descriptor;
    else if (topic_is(topic, topic_len, FV_TOPIC_ALERTS))
        d = &fvpb__vehicle_alerts__descriptor;
    else if (topic_is(topic, topic_len, FV_TOPIC_ERRORS))
        d = &fvpb__vehicle_errors__descriptor;
    else if (topic_is(topic, topic_len, FV_TOPIC_CONNECTIVITY))
        d = &fvpb__vehicle_connectivity__descriptor;
    if (d == NULL) return fv_buf_append(out, p, len); /* unknown topic: kept raw */
    _Alignas(16) unsigned char stack[PB_STACK];
    struct fv_arena arena;
    fv_arena_init(&arena, stack, sizeof stack);
    ProtobufCAllocator pa = {pb_alloc, pb_free, &arena};
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &pa, len, p);
    if (m == NULL) {
        fv_arena_release(&arena);
        fv_seterr(err, errlen, "%.*s payload of %zu bytes is not valid protobuf", (int)topic_len,
                  topic, len);
        return FV_EPROTO;
    }
    if (d == &fvpb__payload__descriptor &&
        v_within_limits((const Fvpb__Payload *)m, err, errlen) != FV_OK) {
        fv_arena_release(&arena);
        return FV_EPROTO;
    }
    /* The vin field is number 3 in Payload, VehicleAlerts and VehicleErrors, 1 in
     * VehicleConnectivity; find it by name so the schema stays the single source. */
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, "vin");
    char **slot = (char **)((char *)m + fd->offset);
    char *old = *slot;
    int rc;
    if (old && strcmp(old, vin) == 0) {
        rc = fv_buf_append(out, p, len); /* the device named itself rightly: keep its bytes */
    } else {
        *slot = (char *)vin;
        rc = pack_into(m, out);
        *slot = old;
    }
    if (rc == FV_OK && v && d == &fvpb__payload__descriptor) {
        /* One unpack serves both: the stored bytes and the decoded record. */
        rc = vrecord_from_pb((const Fvpb__Payload *)m, v);
        if (rc == FV_OK) {
            free(v->vin);
            v->vin = strdup(vin);
            if (v->vin == NULL) {
                fv_vrecord_free(v);
                rc = FV_ENOMEM;
            }
        }
    }
    fv_arena_release(&arena);
    return rc;
}

int fv_payload_build_connectivity(const char *vin, const char *connection_id, int status,
                                  uint64_t at_ms, const char *network_interface, struct fv_buf *out)
{
    Fvpb__VehicleConnectivity c = FVPB__VEHICLE_CONNECTIVITY__INIT;
    Fvpb__Timestamp ts = FVPB__TIMESTAMP__INIT;
    fv_pbtime_set(&ts, at_ms);
    c.vin = (char *)vin;
    c.connection_id = (char *)(connection_id ? connection_id : "");
    c.status = status;
    c.created_at = &ts;
    c.network_interface = (char *)(network_interface ? network_interface : "");
    return pack_into(&c.base, out);
}

static int put_cstr(struct fv_buf *b, const char *s, size_t *off)
{
    *off = b->len;
    return fv_buf_append(b, s ? s : "", (s ? strlen(s) : 0) + 1);
}

int fv_payload_split_connectivity(const unsigned char *p, size_t len, struct fv_buf *strs,
                                  struct fv_conn_fields *f)
{
    _Alignas(16) unsigned char stack[PB_STACK];
    struct fv_arena arena;
    fv_arena_init(&arena, stack, sizeof stack);
    ProtobufCAllocator pa = {pb_alloc, pb_free, &arena};
    Fvpb__VehicleConnectivity *c = (Fvpb__VehicleConnectivity *)protobuf_c_message_unpack(
        &fvpb__vehicle_connectivity__descriptor, &pa, len, p);
    size_t start = strs->len;
    int rc = FV_EINVAL;
    const Fvpb__Timestamp *ts = c ? c->created_at : NULL;
    /* created_at in whole ms from 0 to 2^62 (what fv_pbtime_set makes); the rest is checked
     * by building the payload again and comparing */
    if (ts == NULL || ts->seconds < 0 || ts->seconds > (INT64_C(1) << 52) || ts->nanos < 0 ||
        ts->nanos > 999999999 || ts->nanos % 1000000 != 0)
        goto out;
    f->status = c->status;
    f->at_ms = (uint64_t)ts->seconds * 1000u + (uint64_t)(ts->nanos / 1000000);
    rc = put_cstr(strs, c->vin, &f->vin);
    if (rc == FV_OK) rc = put_cstr(strs, c->connection_id, &f->conn_id);
    if (rc == FV_OK) rc = put_cstr(strs, c->network_interface, &f->netif);
    if (rc == FV_OK) {
        Fvpb__VehicleConnectivity b = FVPB__VEHICLE_CONNECTIVITY__INIT;
        Fvpb__Timestamp bt = FVPB__TIMESTAMP__INIT;
        fv_pbtime_set(&bt, f->at_ms);
        b.vin = (char *)(strs->data + f->vin);
        b.connection_id = (char *)(strs->data + f->conn_id);
        b.status = f->status;
        b.created_at = &bt;
        b.network_interface = (char *)(strs->data + f->netif);
        /* equal sizes first: get_packed_size walks the message without writing */
        if (protobuf_c_message_get_packed_size(&b.base) != len) {
            rc = FV_EINVAL;
        } else {
            unsigned char small[256];
            unsigned char *q = len <= sizeof small ? small : malloc(len);
            if (q == NULL) {
                rc = FV_ENOMEM;
            } else {
                protobuf_c_message_pack(&b.base, q);
                rc = memcmp(q, p, len) == 0 ? FV_OK : FV_EINVAL;
                if (q != small) free(q);
            }
        }
    }
out:
    if (rc) strs->len = start;
    fv_arena_release(&arena);
    return rc;
}

/* ---- values ------------------------------------------------------------------------ */

int fv_value_copy(struct fv_value *dst, const struct fv_value *src)
{
    *dst = *src;
    if (src->kind == FV_VK_STRING) {
        dst->u.s = strdup(src->u.s ? src->u.s : "");
        if (dst->u.s == NULL) {
            dst->kind = FV_VK_NONE;
            return FV_ENOMEM;
        }
    }
    return FV_OK;
}

void fv_value_clear(struct fv_value *v)
{
    if (v->kind == FV_VK_STRING) free(v->u.s);
    memset(v, 0, sizeof *v);
}

int fv_value_equal(const struct fv_value *a, const struct fv_value *b)
{
    if (a->kind != b->kind || a->member != b->member) return 0;
    switch (a->kind) {
    case FV_VK_STRING:
        return strcmp(a->u.s, b->u.s) == 0;
    case FV_VK_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof a->u.d) == 0;
    case FV_VK_LOCATION:
        return memcmp(&a->u.loc, &b->u.loc, sizeof a->u.loc) == 0;
    case FV_VK_TIME:
        return memcmp(&a->u.time, &b->u.time, sizeof a->u.time) == 0;
    case FV_VK_DOORS:
    case FV_VK_TIRES:
        return a->u.bits == b->u.bits;
    case FV_VK_NONE:
    case FV_VK_INVALID:
    case FV_VK_OTHER:
        return 1;
    default:
        return a->u.i == b->u.i;
    }
}
