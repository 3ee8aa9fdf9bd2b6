/*
 * jsdownlink.h - the downlink seam (wire/downlink.h) across a cluster, over core NATS
 * (docs/cluster.md, "Downlink"; the envelope: docs/formats.md, "Downlink on NATS").
 *
 * Two subjects per cluster, named after its stream: fvdl.STREAM.cmd (commands, storage node
 * -> every gateway) and fvdl.STREAM.up (devices' replies of the listened topics and their
 * connects, every gateway -> every storage node). Core NATS, not the stream: delivery is at
 * most once, as D1 asks, and nothing is replayed after a restart (a capability resends on its
 * own timer, D1).
 *
 *  N1 A storage node's send() (fv_jsdownlink_port) encodes the message and publishes it on
 *     the command subject; it returns at once (nats.c buffers and writes on its own thread;
 *     while NATS is unreachable nats.c keeps it in its reconnect buffer). Any thread.
 *  N2 Every gateway subscribes to the command subject (fv_jsdownlink_serve) and hands each
 *     command to its in-process downlink (gateway/downlink.h) as a remote one: the gateway
 *     holding the device's newest connection delivers it, the others count it as not
 *     connected here. nats.c's subscription thread calls that send (which copies and wakes
 *     the loop).
 *  N3 A gateway's ingest listener (fv_jsdownlink_uplink) publishes every listened uplink
 *     message and every connect on the up subject (the ingest loop; the publish copies).
 *  N4 A storage node subscribes to the up subject (fv_jsdownlink_listen) and calls the
 *     capabilities' listener from nats.c's subscription thread, one message at a time (the
 *     VPP's and campaigns' listeners only append to an inbox under their own mutex).
 *  N5 Every envelope is sealed under the master key for its subject (jsenvelope.h E1-E2): a
 *     message that does not open (another key, another subject, altered, replayed after
 *     FV_JSENV_WINDOW_MS) is counted malformed and dropped, and logged at most once a minute.
 *
 * Threads: open, serve, listen and close on the starting/stopping thread; the port from any
 * thread; the uplink listener on the ingest loop; fv_jsdownlink_counts from any thread.
 */
#ifndef FV_CLUSTER_JSDOWNLINK_H
#define FV_CLUSTER_JSDOWNLINK_H

#include <stddef.h>
#include <stdint.h>

#include "config/cluster_config.h"
#include "crypto/keys.h"
#include "wire/downlink.h"

#define FV_JSDL_VERSION   1
#define FV_JSDL_CMD       1 /* a command for a device (storage node -> gateways) */
#define FV_JSDL_MESSAGE   2 /* a device's uplink message of a listened topic */
#define FV_JSDL_CONNECT   3 /* a device connected */
#define FV_JSDL_FIELD_MAX 127

struct fv_jsdownlink;

/* Connects to NATS (its own connection, named name); kek (copied) seals and opens (N5).
 * FV_OK, FV_ENOMEM or FV_EIO (err). */
int fv_jsdownlink_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek, const char *name,
                       struct fv_jsdownlink **out, char *err, size_t errlen);
/* N1: the storage node's downlink. */
struct fv_downlink fv_jsdownlink_port(struct fv_jsdownlink *dl);
/* N2: a gateway's subscription; local is its in-process downlink's remote port. */
int fv_jsdownlink_serve(struct fv_jsdownlink *dl, struct fv_downlink local, char *err,
                        size_t errlen);
/* N3: a gateway's ingest listener for the given topics (NULL-padded, copied). */
const struct fv_downlink_listener *
fv_jsdownlink_uplink(struct fv_jsdownlink *dl, const char *const topics[FV_DOWNLINK_MAX_TOPICS]);
/* N4: a storage node's subscription; l must outlive fv_jsdownlink_close. */
int fv_jsdownlink_listen(struct fv_jsdownlink *dl, const struct fv_downlink_listener *l, char *err,
                         size_t errlen);
/* Unsubscribes (waiting for a callback in progress), closes the connection. NULL: nothing. */
void fv_jsdownlink_close(struct fv_jsdownlink *dl);

struct fv_jsdl_counts {
    uint64_t published; /* commands (storage) or uplinks (gateway) handed to NATS */
    uint64_t failed;    /* publishes nats.c refused (too long, connection closed): dropped */
    uint64_t received;  /* commands (gateway) or uplinks (storage) received */
    uint64_t malformed; /* received envelopes that did not decode: ignored */
};
void fv_jsdownlink_counts(struct fv_jsdownlink *dl, struct fv_jsdl_counts *out);

/* The envelope inside the seal (docs/formats.md): version, kind, then device id, topic and message
 * id each as one length byte (at most FV_JSDL_FIELD_MAX) and its bytes, then the payload. Pure. */
struct fv_jsdl_msg {
    int kind;
    const char *device, *topic, *msg_id; /* NUL-terminated; "" when absent */
    const void *payload;
    size_t len;
};
/* Into buf (cap bytes); the encoded length, or -1 when a field is too long or cap too small. */
long fv_jsdl_encode(const struct fv_jsdl_msg *m, unsigned char *buf, size_t cap);
/* From data; the strings are copied into the three fields given (each FV_JSDL_FIELD_MAX + 1
 * bytes), payload points into data. FV_OK or FV_EPROTO (another version, truncated). */
int fv_jsdl_decode(const unsigned char *data, size_t n, struct fv_jsdl_msg *m, char *device,
                   char *topic, char *msg_id);

#endif
