/*
 * payload.h - the protobuf payloads carried by envelopes (topics V, alerts, errors,
 * connectivity), decoded into fleetvault's own value model.
 *
 * Value model: every datum is (signal number, value); a value has a kind and remembers the
 * protobuf oneof member it arrived as. Real-device quirks are normalised on decode: a
 * Location sent as the string "(37.4 N, 122.1 W)" becomes a location, numeric strings
 * (scientific notation included) become doubles, `invalid` becomes FV_VK_INVALID (no value).
 * Unknown signal numbers and unknown oneof members are kept (kind FV_VK_OTHER).
 *
 * Ownership: decoded records own their memory (fv_vrecord_free). Thread-safe: no shared state.
 */
#ifndef FV_WIRE_PAYLOAD_H
#define FV_WIRE_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum fv_vkind {
    FV_VK_NONE = 0,
    FV_VK_STRING,
    FV_VK_INT,    /* int32 / int64 */
    FV_VK_DOUBLE, /* float / double, and numeric strings */
    FV_VK_BOOL,
    FV_VK_LOCATION,
    FV_VK_ENUM,    /* an enum member; u.i is its number, member says which enum */
    FV_VK_INVALID, /* the device has no value for this signal */
    FV_VK_DOORS,   /* u.bits: bit k set = Doors field k+1 true */
    FV_VK_TIME,
    FV_VK_TIRES, /* u.bits: bit k set = TireLocation field k+1 true */
    FV_VK_OTHER  /* a oneof member this build does not know */
};

struct fv_value {
    uint8_t kind;   /* enum fv_vkind */
    uint8_t member; /* protobuf oneof number it arrived as (0 if none) */
    union {
        int64_t i;
        double d;
        struct {
            double lat, lon;
        } loc;
        uint32_t bits;
        struct {
            int32_t h, m, s;
        } time;
        char *s; /* FV_VK_STRING: owned, NUL-terminated */
    } u;
};

struct fv_datum {
    uint32_t field;
    struct fv_value value;
};

/* A decoded `V` payload. */
struct fv_vrecord {
    uint64_t created_at_ms;
    int is_resend;
    char *vin; /* owned; may be empty */
    size_t n;
    struct fv_datum *data; /* owned */
};

/* Limits on a V record a device may send (docs/protocol.md, "Limits"): at most
 * FV_PAYLOAD_MAX_DATUMS datums, each signal number in 0..FV_PAYLOAD_MAX_FIELD. They keep one
 * record within what a store block holds (at most 65,536 columns: store/block.h) and bound
 * the work one record costs the event loop. fv_payload_normalise refuses a record beyond them
 * (the device gets the error reply; nothing is stored); fv_payload_decode_v does not (records
 * already in the WAL are replayed whatever their size). */
#define FV_PAYLOAD_MAX_DATUMS 4096
#define FV_PAYLOAD_MAX_FIELD  65535

/* Topic names (on-wire strings). */
#define FV_TOPIC_V            "V"
#define FV_TOPIC_ALERTS       "alerts"
#define FV_TOPIC_ERRORS       "errors"
#define FV_TOPIC_CONNECTIVITY "connectivity"

/* Decodes a V payload. FV_OK, or FV_EPROTO with a reason. out is always safe to free. */
int fv_payload_decode_v(const unsigned char *p, size_t len, struct fv_vrecord *out, char *err,
                        size_t errlen);
void fv_vrecord_free(struct fv_vrecord *r);

/* Encodes a V payload (the simulator's side). */
int fv_payload_encode_v(const struct fv_vrecord *r, struct fv_buf *out);

/*
 * Checks a payload of a known topic and appends it to out with its vin replaced by vin
 * (the server's rule: identity comes from the certificate). Unknown topics are copied
 * unchanged. FV_EPROTO when a known topic's payload does not parse, or when a V record is
 * beyond the limits above (FV_PAYLOAD_MAX_*). When v is not NULL and
 * the topic is V, *v receives the decoded record from the same parse (free it with
 * fv_vrecord_free; it is zeroed for other topics and on failure).
 */
int fv_payload_normalise(const char *topic, size_t topic_len, const unsigned char *p, size_t len,
                         const char *vin, struct fv_buf *out, struct fv_vrecord *v, char *err,
                         size_t errlen);

/* Builds a connectivity payload (status 1 connected, 2 disconnected). */
int fv_payload_build_connectivity(const char *vin, const char *connection_id, int status,
                                  uint64_t at_ms, const char *network_interface,
                                  struct fv_buf *out);

/* The fields of a connectivity payload that fv_payload_build_connectivity gives back byte for
 * byte: the store keeps such a payload as these fields (block.h, version 2). The strings are
 * offsets into the caller's buffer (each NUL-terminated there), valid as that buffer is. */
struct fv_conn_fields {
    size_t vin, conn_id, netif; /* offsets of the strings in strs */
    int32_t status;
    uint64_t at_ms; /* created_at in ms */
};
/* Splits p (a VehicleConnectivity payload) into *f, appending its strings to strs. FV_OK when
 * fv_payload_build_connectivity(f's fields) makes exactly p; FV_EINVAL when it would not (the
 * payload has unknown or absent fields, sub-millisecond times, a string with a NUL, or is
 * laid out otherwise: keep it as bytes), strs then unchanged; FV_ENOMEM. */
int fv_payload_split_connectivity(const unsigned char *p, size_t len, struct fv_buf *strs,
                                  struct fv_conn_fields *f);

/* Copies src into dst (deep copy of strings). FV_OK or FV_ENOMEM. */
int fv_value_copy(struct fv_value *dst, const struct fv_value *src);
void fv_value_clear(struct fv_value *v);
int fv_value_equal(const struct fv_value *a, const struct fv_value *b);

/* Parses "(37.4 N, 122.1 W)" into lat/lon; 0 on success, -1 if not that form. */
int fv_parse_location_string(const char *s, double *lat, double *lon);

/* Alert timestamps at or above this many seconds are really milliseconds (device quirk). */
#define FV_ALERT_MS_THRESHOLD 315576000000LL

#endif
