/* ratelimit.c - see ratelimit.h. */
#include <stdio.h>
#include <string.h>

#include "util/ratelimit.h"
#include "util/err.h"

void fv_rate_defaults(struct fv_rate_config *c)
{
    memset(c, 0, sizeof *c);
    fv_rate_set(c, "V", 50, 100);
    fv_rate_set(c, "alerts", 10, 50);
    fv_rate_set(c, "errors", 10, 50);
    fv_rate_set(c, "*", 20, 50);
}

int fv_rate_set(struct fv_rate_config *c, const char *topic, double per_second, double burst)
{
    if (!(per_second > 0) || !(burst >= 1) || strlen(topic) == 0 ||
        strlen(topic) >= sizeof c->rules[0].topic)
        return FV_EINVAL;
    int i = 0;
    while (i < c->n && strcmp(c->rules[i].topic, topic) != 0)
        i++;
    if (i == c->n) {
        if (c->n == FV_RATE_MAX_RULES) return FV_ELIMIT;
        c->n++;
    }
    snprintf(c->rules[i].topic, sizeof c->rules[i].topic, "%s", topic);
    c->rules[i].per_second = per_second;
    c->rules[i].burst = burst;
    return FV_OK;
}

int fv_rate_rule_for(const struct fv_rate_config *c, const char *topic, size_t topic_len)
{
    int star = -1;
    for (int i = 0; i < c->n; i++) {
        if (strlen(c->rules[i].topic) == topic_len &&
            memcmp(c->rules[i].topic, topic, topic_len) == 0)
            return i;
        if (strcmp(c->rules[i].topic, "*") == 0) star = i;
    }
    return star;
}

int fv_bucket_peek(struct fv_bucket *b, const struct fv_rate_rule *r, uint64_t now_ns)
{
    if (b->last_ns == 0) return 1;
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * r->per_second;
        if (b->tokens > r->burst) b->tokens = r->burst;
        b->last_ns = now_ns;
    }
    return b->tokens >= 1.0;
}

int fv_bucket_take(struct fv_bucket *b, const struct fv_rate_rule *r, uint64_t now_ns)
{
    if (b->last_ns == 0) {
        b->tokens = r->burst;
    } else if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * r->per_second;
        if (b->tokens > r->burst) b->tokens = r->burst;
    }
    b->last_ns = now_ns ? now_ns : 1;
    if (b->tokens < 1.0) return 0;
    b->tokens -= 1.0;
    b->taken++;
    return 1;
}
