/*
 * ratelimit.h - token buckets per device and record type (topic).
 *
 * A rule gives a topic (or "*" for any topic without its own rule) a sustained rate in
 * records per second and a burst. A bucket starts full; each record takes one token; tokens
 * refill continuously at the rate, up to the burst. A record finding no token is refused
 * with the protocol's error reply and counted; it is not stored, and the device resends it
 * later (reliable ack), so a limit slows a device down without losing acknowledged data.
 * Pure functions over caller-owned structs; not thread-safe by themselves.
 */
#ifndef FV_UTIL_RATELIMIT_H
#define FV_UTIL_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define FV_RATE_MAX_RULES 16

struct fv_rate_rule {
    char topic[32];
    double per_second; /* > 0 */
    double burst;      /* >= 1 */
};

struct fv_rate_config {
    struct fv_rate_rule rules[FV_RATE_MAX_RULES];
    int n;
};

struct fv_bucket {
    double tokens;    /* below 0: a debt carried over from another gateway (cluster) */
    uint64_t last_ns; /* 0 = never used (full) */
    uint32_t taken;   /* tokens taken since the owner last reset it (a cluster's hand-over) */
};

/* Defaults: V 50/s burst 100; alerts and errors 10/s burst 50; anything else 20/s burst 50. */
void fv_rate_defaults(struct fv_rate_config *c);

/* Sets (or replaces) the rule for topic; FV_EINVAL for a bad rate/burst, FV_ELIMIT if full. */
int fv_rate_set(struct fv_rate_config *c, const char *topic, double per_second, double burst);

/* Index of the rule for topic (its own, else "*"), or -1 when unlimited. */
int fv_rate_rule_for(const struct fv_rate_config *c, const char *topic, size_t topic_len);

/* Would a token be there now? (Refills; takes nothing.) */
int fv_bucket_peek(struct fv_bucket *b, const struct fv_rate_rule *r, uint64_t now_ns);
/* Takes one token (and counts it in taken); 1 if allowed, 0 if the record must be refused. */
int fv_bucket_take(struct fv_bucket *b, const struct fv_rate_rule *r, uint64_t now_ns);

#endif
