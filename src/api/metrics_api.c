/*
 * metrics_api.c - GET /metrics: the server's counters, gauges and histograms in the Prometheus
 * text format (api.h), written by hand (the format is line-oriented: "# TYPE name kind", then
 * "name{labels} value"). Reads only counters and statistics, never personal data.
 *
 * Threads: the API thread (counters are atomics or copied under their owners' locks).
 */
#include <stdarg.h>
#include <stdio.h>

#include "api/api.h"
#include "api/exports.h"
#include "openadr/ven.h"
#include "privacy/guard.h"
#include "store/store.h"
#include "util/buf.h"

static void prom(struct fv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom(struct fv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fv_buf_vappendf(b, fmt, ap); /* out of memory: the scrape is cut short */
    va_end(ap);
}

/* A Prometheus histogram from per-bucket counts: counts[0..nb] (the last is over the last
 * bound), bounds in ms, the sum in seconds. */
static void prom_histogram(struct fv_buf *b, const char *name, const char *help,
                           const double *bounds_ms, int nb, const uint64_t *counts, double sum_s)
{
    prom(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < nb; i++) {
        cum += counts[i];
        prom(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds_ms[i] / 1000.0,
             (unsigned long long)cum);
    }
    cum += counts[nb];
    prom(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    prom(b, "%s_sum %.6f\n", name, sum_s);
    prom(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

void fv_api_metrics(const struct fv_api_view *v, struct fv_http_response *r)
{
    const struct fv_metrics *m = v->metrics;
    struct fv_buf *b = &r->body;
    struct fv_wal_stats ws = {0};
    if (v->wal) fv_wal_stats(v->wal, &ws); /* a gateway has none: the stream is its log */
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
#define COUNTER(name, help, val)                                                                   \
    prom(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",                  \
         (unsigned long long)(val))
#define GAUGE(name, help, val)                                                                     \
    prom(b, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %llu\n",                    \
         (unsigned long long)(val))
    GAUGE("fleetvault_connections", "Device connections open now.", m->connections_open);
    COUNTER("fleetvault_connections_total", "Device connections accepted.", m->connections_total);
    COUNTER("fleetvault_connections_refused_total",
            "Device connections refused: the device had the most connections open already.",
            m->connections_refused);
    COUNTER("fleetvault_idle_closed_total",
            "Device connections closed after device_idle_timeout without a message or pong.",
            m->idle_closed);
    COUNTER("fleetvault_connections_moved_total",
            "Gateway: device connections closed because the device connected on another gateway.",
            m->connections_moved);
    COUNTER("fleetvault_accept_full_turns_total",
            "Ingest loop turns that accepted accepts_per_turn device connections while more "
            "waited: a burst of connections admitted over several turns.",
            m->accept_full_turns);
    COUNTER("fleetvault_accept_paced_total",
            "Times the devices' listener waited for accept_rate before accepting a waiting "
            "connection.",
            m->accept_paced);
    COUNTER("fleetvault_accept_pauses_total",
            "Times the devices' listener paused: out of file descriptors or memory, or accept "
            "failing otherwise.",
            m->accept_pauses);
    COUNTER("fleetvault_ingest_pauses_total",
            "Times ingest stopped reading from devices: the store's head was over its budget.",
            m->ingest_pauses);
    COUNTER("fleetvault_tls_rejected_total", "Client certificates that failed verification.",
            m->tls_rejected);
    COUNTER("fleetvault_identity_rejected_total",
            "Verified certificates without a valid device identity.", m->identity_rejected);
    COUNTER("fleetvault_messages_total", "WebSocket messages received from devices.",
            m->messages_total);
    COUNTER("fleetvault_received_bytes_total", "Bytes of device messages received.",
            m->bytes_received);
    prom(b, "# HELP fleetvault_records_total Records stored durably, by record type.\n"
            "# TYPE fleetvault_records_total counter\n");
    for (int i = 0; i < FV_TOPIC_SLOTS; i++)
        prom(b, "fleetvault_records_total{topic=\"%s\"} %llu\n", fv_metrics_topic_names[i],
             (unsigned long long)m->records_stored[i]);
    COUNTER("fleetvault_datums_total", "Signal values stored.", m->datums_stored);
    COUNTER("fleetvault_datums_minimised_total",
            "Signal values not stored: no purpose of their class had consent.",
            m->datums_minimised);
    COUNTER("fleetvault_acks_total", "Acks sent (each after fsync).", m->acks_sent);
    COUNTER("fleetvault_error_replies_total", "Error replies sent.", m->errors_sent);
    COUNTER("fleetvault_reply_frames_total",
            "WebSocket messages sent to devices (acks, errors, "
            "commands, pings).",
            m->reply_frames);
    COUNTER("fleetvault_reply_writes_total",
            "Writes that sent them: replies queued together "
            "leave in one.",
            m->reply_writes);
    prom(b, "# HELP fleetvault_rejected_total Messages refused, by reason.\n"
            "# TYPE fleetvault_rejected_total counter\n");
    for (int i = 0; i < FV_REJ_COUNT; i++)
        prom(b, "fleetvault_rejected_total{reason=\"%s\"} %llu\n", fv_reject_names[i],
             (unsigned long long)m->rejected[i]);
    COUNTER("fleetvault_rate_limited_total", "Records refused by the rate limiter.",
            m->rejected[FV_REJ_RATE]);
    COUNTER("fleetvault_duplicates_total", "Resent records acked again but not stored twice.",
            m->duplicates);
    COUNTER("fleetvault_unknown_message_type_total",
            "Envelopes with an unknown union type (acked, not stored).", m->unknown_message_type);
    GAUGE("fleetvault_devices", "Devices known.", fv_fleet_count(v->fleet));
    if (v->ven) fv_ven_metrics(v->ven, b); /* fleetvault_openadr_*: each VTN (N9) */
    GAUGE("fleetvault_erased_records", "Stored records whose data key was destroyed.",
          m->shredded_records);
    COUNTER("fleetvault_cluster_key_waits_total",
            "Stream records a storage node left unacked for now: their key was in no KV entry.",
            m->key_waits);
    COUNTER("fleetvault_cluster_records_resubjected_total",
            "Stream records a storage node sealed again under the owner period of their time "
            "(their gateway had not yet learnt of an owner change).",
            m->resubjected);
    COUNTER("fleetvault_cluster_records_moved_total",
            "Of those, records whose new subject is in another shard: published to that shard "
            "for its owner.",
            m->moved);
    GAUGE("fleetvault_wal_bytes", "Bytes in the write-ahead log.", ws.bytes_on_disk);
    GAUGE("fleetvault_wal_files", "Files in the write-ahead log.", ws.files);
    COUNTER("fleetvault_wal_fsyncs_total", "WAL fsyncs (group commits).", ws.fsyncs);
    if (v->store) {
        struct fv_store_stats ss;
        fv_store_stats(v->store, &ss);
        COUNTER("fleetvault_store_compaction_failures_total",
                "Store blocks a compaction could not read (kept as they were; see GET "
                "/api/v1/store compaction_errors).",
                ss.compaction_failures);
    }
    COUNTER("fleetvault_wal_torn_bytes_cut_total", "Bytes of torn tail cut at start-up.",
            ws.torn_bytes_cut);
    prom_histogram(b, "fleetvault_wal_fsync_seconds", "WAL fsync latency.", fv_latency_bounds_ms,
                   FV_LATENCY_BOUNDS, ws.fsync_hist, ws.fsync_seconds_sum);
    {
        uint64_t acks[FV_LATENCY_BOUNDS + 1];
        for (int i = 0; i <= FV_LATENCY_BOUNDS; i++)
            acks[i] = m->ack_latency.n[i];
        prom_histogram(b, "fleetvault_ack_seconds",
                       "Server-side ack latency: from a record's first bytes read to its ack "
                       "handed to the socket, once the record is durable.",
                       fv_latency_bounds_ms, FV_LATENCY_BOUNDS, acks,
                       (double)m->ack_latency.sum_ns / 1e9);
    }
    COUNTER("fleetvault_http_requests_total", "API requests.", m->http_requests);
    if (v->guard) {
        COUNTER("fleetvault_privacy_denied_total", "Reads of personal data refused.",
                v->guard->denied);
        COUNTER("fleetvault_privacy_allowed_total", "Reads of personal data allowed (audited).",
                v->guard->allowed);
        COUNTER(
            "fleetvault_privacy_alerts_total",
            "Unusual volume: principals past 80 percent of a daily quota, refused bulk exports.",
            v->guard->alerts + fv_exports_alerts(v->exports));
    }
    COUNTER("fleetvault_http_unauthorized_total",
            "API requests refused for a missing or wrong "
            "token.",
            m->http_unauthorized);
    COUNTER("fleetvault_http_auth_throttled_total",
            "API requests refused (429) from an address with too many failed authentications.",
            m->http_auth_throttled);
    COUNTER("fleetvault_downlink_sent_total", "Messages to devices handed to their connection.",
            m->downlink_sent);
    COUNTER("fleetvault_downlink_dropped_total",
            "Messages to devices dropped: the device was not connected (the sender resends).",
            m->downlink_dropped);
    COUNTER("fleetvault_downlink_not_here_total",
            "Gateway: commands from the cluster for a device not connected here.",
            m->downlink_not_here);
    COUNTER("fleetvault_cluster_downlink_published_total",
            "Cluster: commands (storage node) or device replies and connects (gateway) "
            "published on NATS.",
            m->cluster_dl_published);
    COUNTER("fleetvault_cluster_downlink_failed_total",
            "Cluster: downlink publishes NATS refused (the message is dropped; the sender "
            "resends).",
            m->cluster_dl_failed);
    COUNTER("fleetvault_cluster_downlink_received_total",
            "Cluster: commands (gateway) or device replies and connects (storage node) "
            "received over NATS.",
            m->cluster_dl_received);
    COUNTER("fleetvault_cluster_downlink_malformed_total",
            "Cluster: downlink envelopes received over NATS that did not open (not sealed by "
            "this cluster's master key for their subject, altered, or replayed) or did not "
            "decode (ignored).",
            m->cluster_dl_malformed);
    COUNTER("fleetvault_cluster_subjects_applied_total",
            "Cluster: owner period and consent entries of the KV bucket applied to this "
            "node's catalog.",
            m->subj.applied);
    COUNTER("fleetvault_cluster_subjects_published_total",
            "Cluster: owner period and consent entries this node wrote to the KV bucket.",
            m->subj.published);
    COUNTER("fleetvault_cluster_subjects_conflicts_total",
            "Cluster: owner periods that differed from the bucket's (the bucket's kept) and "
            "compare-and-set races lost.",
            m->subj.conflicts);
    COUNTER("fleetvault_cluster_subjects_malformed_total",
            "Cluster: owner period and consent values refused (malformed; logged with the "
            "entry).",
            m->subj.malformed);
    COUNTER("fleetvault_cluster_principals_applied_total",
            "Cluster: principals of the KV bucket applied to this node's catalog (audited).",
            m->princ.applied);
    COUNTER("fleetvault_cluster_principals_published_total",
            "Cluster: principal values this node wrote to the KV bucket.", m->princ.published);
    COUNTER("fleetvault_cluster_principals_conflicts_total",
            "Cluster: one name created on two nodes at once (the earlier kept) and "
            "compare-and-set races lost.",
            m->princ.conflicts);
    COUNTER("fleetvault_cluster_principals_malformed_total",
            "Cluster: principal values refused (malformed; logged with the entry).",
            m->princ.malformed);
    COUNTER("fleetvault_cluster_zones_applied_total",
            "Cluster: privacy zones of the KV bucket set or removed in this node's catalog.",
            m->zones.applied);
    COUNTER("fleetvault_cluster_zones_published_total",
            "Cluster: privacy zone values this node wrote to the KV bucket.", m->zones.published);
    COUNTER("fleetvault_cluster_zones_conflicts_total",
            "Cluster: privacy zone compare-and-set races lost.", m->zones.conflicts);
    COUNTER("fleetvault_cluster_zones_malformed_total",
            "Cluster: privacy zone values refused (malformed; logged with the entry).",
            m->zones.malformed);
    COUNTER("fleetvault_cluster_quotas_applied_total",
            "Cluster: other nodes' daily quota counts that changed this node's sum.",
            m->quota_applied);
    COUNTER("fleetvault_cluster_quotas_published_total",
            "Cluster: this node's daily quota counts written to the KV bucket.",
            m->quota_published);
    COUNTER("fleetvault_cluster_quotas_publish_failed_total",
            "Cluster: quota count writes that failed (kept, published when NATS answers).",
            m->quota_failed);
    COUNTER("fleetvault_cluster_quotas_malformed_total",
            "Cluster: quota count values refused (malformed; logged with the entry).",
            m->quota_malformed);
    GAUGE("fleetvault_cluster_quotas_stale",
          "Cluster: 1 while the quota counts cannot be followed or published (this node "
          "decides on its own counts and the other nodes' last seen).",
          m->quota_stale);
    GAUGE("fleetvault_cluster_quotas_pending",
          "Cluster: counter names whose counts wait to be published (the batch, or NATS).",
          m->quota_pending);
    GAUGE("fleetvault_cluster_quotas_followed_seq",
          "Cluster: the quota bucket's stream sequence this node has read up to.",
          m->quota_position);
    prom(b, "# HELP fleetvault_clip_signals_total Clips stored, by whether the store's signals "
            "around the trigger were added (none: no sample in the window; failed: stored as "
            "uploaded).\n# TYPE fleetvault_clip_signals_total counter\n");
    static const char *const outcomes[3] = {"added", "none", "failed"};
    for (int i = 0; i < 3; i++)
        prom(b, "fleetvault_clip_signals_total{outcome=\"%s\"} %llu\n", outcomes[i],
             (unsigned long long)m->clip_signals[i]);
    COUNTER("fleetvault_cluster_published_total",
            "Gateway: records published to the stream (each acked once its PubAck came).",
            m->cluster_published);
    COUNTER("fleetvault_cluster_pubacks_total",
            "Gateway: PubAcks received from the stream, duplicates included.", m->cluster_pubacks);
    COUNTER("fleetvault_cluster_pubacks_duplicate_total",
            "Gateway: PubAcks saying the stream had the record already (a device's resend).",
            m->cluster_pubacks_duplicate);
    COUNTER("fleetvault_cluster_publish_retries_total",
            "Gateway: publishes sent again after no PubAck or no server (a leader election).",
            m->cluster_publish_retries);
    COUNTER("fleetvault_cluster_publish_refused_total",
            "Gateway: records refused with the storage error: too many awaited PubAcks.",
            m->cluster_publish_refused);
    GAUGE("fleetvault_cluster_publish_outstanding",
          "Gateway: records published whose ack waits for the stream now.",
          m->cluster_publish_outstanding);
    GAUGE("fleetvault_cluster_shards_owned",
          "Shard leases this storage node holds now (0 on other roles).", m->cluster_shards_owned);
    COUNTER("fleetvault_cluster_takeovers_total",
            "Shard leases this storage node acquired (each a shard it did not hold before).",
            m->cluster_takeovers);
    COUNTER("fleetvault_cluster_queries_forwarded_total",
            "Reads this api node sent to the shards' owners (0 on other roles).",
            m->cluster_q_forwarded);
    COUNTER("fleetvault_cluster_queries_unanswered_total",
            "Reads this api node answered 503/504 because a shard's owner did not answer.",
            m->cluster_q_unanswered);
    GAUGE("fleetvault_cluster_queries_waiting",
          "Reads this api node sent to the shards' owners whose answers it waits for now.",
          m->cluster_q_waiting);
    COUNTER("fleetvault_cluster_queries_answered_total",
            "Reads of its shards this storage node answered for an api node.",
            m->cluster_q_answered);
    GAUGE("fleetvault_mqtt_connected", "Connected to the MQTT broker now (1), or not (0).",
          m->mqtt_connected);
    GAUGE("fleetvault_mqtt_subjects", "Subjects whose live values are published over MQTT now.",
          m->mqtt_subjects);
    COUNTER("fleetvault_mqtt_published_total",
            "MQTT messages handed to the broker: values, discovery, cleared topics.",
            m->mqtt_published);
    COUNTER("fleetvault_mqtt_errors_total",
            "MQTT publishes that failed and connections to the broker lost or refused.",
            m->mqtt_errors);
#undef COUNTER
#undef GAUGE
}
