/*
 * downlink.h - the downlink seam: how a capability (energy dispatch, data campaigns) sends a
 * message to a device and hears back from it without knowing the gateway (the other seam
 * beside wal/reclog.h). On one node the gateway implements it in process
 * (gateway/downlink.h); in a cluster a storage node's send() publishes on a NATS subject
 * every gateway hears, and the gateways publish replies and connects back
 * (cluster/jsdownlink.h, docs/cluster.md "Downlink").
 *
 * Rules:
 *  D1 send() may be called from any thread; it copies what it is given and returns at once.
 *     The message goes to the device's newest connection as a Stream envelope (txid = msg_id,
 *     topic, payload), if the device is connected when the gateway gets to it; otherwise it
 *     is dropped and counted. Delivery is at most once per call: a capability that needs a
 *     message to arrive tracks the device's reply and sends again (on_connect, a timer).
 *  D2 the gateway calls on_message for every uplink message of a topic the listener names,
 *     after the message was accepted (checked and logged like any record), and on_connect
 *     when a device's connection is established. Both run on the ingest loop (on a cluster's
 *     storage node: nats.c's subscription thread), so a listener must be callable from any
 *     one thread at a time: copy and queue under its own lock, never block.
 */
#ifndef FV_WIRE_DOWNLINK_H
#define FV_WIRE_DOWNLINK_H

#include <stddef.h>

struct fv_downlink {
    int (*send)(void *impl, const char *device_id, const char *topic, const char *msg_id,
                const void *payload, size_t len);
    void *impl;
};

#define FV_DOWNLINK_MAX_TOPICS 8

struct fv_downlink_listener {
    const char *topics[FV_DOWNLINK_MAX_TOPICS]; /* uplink topics it wants (NULL-padded) */
    void (*on_message)(void *arg, const char *device_id, const char *topic,
                       const unsigned char *payload, size_t len);
    void (*on_connect)(void *arg, const char *device_id);
    void *arg;
};

#endif
