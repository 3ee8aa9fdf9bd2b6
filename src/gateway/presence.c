/* presence.c - where a device is connected across gateways (presence.h: P1-P6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/presence.h"
#include "gateway/session.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/map.h"

/* ---- codec: version, kind, three names (a length byte and the bytes), the stamp (8 bytes,
 * little-endian), the number of levels, each a topic (length byte, bytes) and its tokens in
 * thousandths (8 bytes, two's complement, little-endian). */

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int put_name(unsigned char *buf, size_t cap, size_t *at, const char *s, size_t max)
{
    size_t l = strlen(s);
    if (l > max || *at + 1 + l > cap) return -1;
    buf[(*at)++] = (unsigned char)l;
    memcpy(buf + *at, s, l);
    *at += l;
    return 0;
}

static int get_name(const unsigned char *d, size_t n, size_t *at, char *out, size_t max)
{
    if (*at >= n) return -1;
    size_t l = d[(*at)++];
    if (l > max || l > n - *at || memchr(d + *at, 0, l)) return -1;
    memcpy(out, d + *at, l);
    out[l] = '\0';
    *at += l;
    return 0;
}

long fv_pres_encode(const struct fv_pres_msg *m, unsigned char *buf, size_t cap)
{
    size_t at = 0;
    if (cap < 2 || m->nlevels < 0 || m->nlevels > FV_RATE_MAX_RULES) return -1;
    buf[at++] = FV_PRES_VERSION;
    buf[at++] = (unsigned char)m->kind;
    if (put_name(buf, cap, &at, m->gateway, FV_PRES_NAME_MAX) ||
        put_name(buf, cap, &at, m->device, FV_PRES_NAME_MAX) ||
        put_name(buf, cap, &at, m->extra, FV_PRES_NAME_MAX) || at + 9 > cap)
        return -1;
    put_u64(buf + at, m->stamp);
    at += 8;
    buf[at++] = (unsigned char)m->nlevels;
    for (int i = 0; i < m->nlevels; i++) {
        if (put_name(buf, cap, &at, m->levels[i].topic, sizeof m->levels[i].topic - 1) ||
            at + 8 > cap)
            return -1;
        put_u64(buf + at, (uint64_t)(int64_t)(m->levels[i].tokens * 1000.0));
        at += 8;
    }
    return (long)at;
}

int fv_pres_decode(const unsigned char *d, size_t n, struct fv_pres_msg *m)
{
    memset(m, 0, sizeof *m);
    size_t at = 2;
    if (n < 2 || d[0] != FV_PRES_VERSION || d[1] < FV_PRES_CLAIM || d[1] > FV_PRES_COUNTS)
        return FV_EPROTO;
    m->kind = d[1];
    if (get_name(d, n, &at, m->gateway, FV_PRES_NAME_MAX) ||
        get_name(d, n, &at, m->device, FV_PRES_NAME_MAX) ||
        get_name(d, n, &at, m->extra, FV_PRES_NAME_MAX) || n - at < 9)
        return FV_EPROTO;
    m->stamp = get_u64(d + at);
    at += 8;
    m->nlevels = d[at++];
    if (m->nlevels > FV_RATE_MAX_RULES) return FV_EPROTO;
    for (int i = 0; i < m->nlevels; i++) {
        if (get_name(d, n, &at, m->levels[i].topic, sizeof m->levels[i].topic - 1) || n - at < 8)
            return FV_EPROTO;
        m->levels[i].tokens = (double)(int64_t)get_u64(d + at) / 1000.0;
        at += 8;
    }
    return at == n ? FV_OK : FV_EPROTO;
}

/* ---- the nodes' side ------------------------------------------------------------------- */

struct gw_seen { /* a storage node's view of one gateway (P4) */
    char name[FV_PRES_NAME_MAX + 1];
    uint64_t boot, heard_ns;
    int dead;
};

struct fv_presence {
    struct fv_presence_deps d;
    char name[FV_PRES_NAME_MAX + 1];
    uint64_t boot_ms, ticked_ns, alive_ns, synced_ns;
    int synced, resync;
    struct gw_seen *gws;   /* storage node; index + 1 is fv_device.claim_gw */
    struct fv_map counted; /* gateway (P7): device pointer -> struct counted, until sent */
    size_t ngws, capgws;
    struct fv_presence_counts c;
};

int fv_presence_new(const struct fv_presence_deps *d, struct fv_presence **out)
{
    struct fv_presence *p = calloc(1, sizeof *p);
    if (p == NULL) return FV_ENOMEM;
    p->d = *d;
    snprintf(p->name, sizeof p->name, "%s", d->name ? d->name : "");
    p->d.name = p->name;
    p->boot_ms = fv_now_ms();
    *out = p;
    return FV_OK;
}

struct counted {
    const struct fv_device *d;
    uint64_t duplicates, rate_limited;
};

static void publish(struct fv_presence *p, struct fv_pres_msg *m);

/* P7: one COUNTS per device counted since the last (send 0: dropped), then none pending. */
static void send_counts(struct fv_presence *p, int send)
{
    for (size_t i = 0; i < p->counted.cap; i++) {
        struct counted *c = p->counted.slots[i].hash ? p->counted.slots[i].val : NULL;
        if (c == NULL) continue;
        struct fv_pres_msg m = {.kind = FV_PRES_COUNTS, .nlevels = 2};
        snprintf(m.device, sizeof m.device, "%s", c->d->id);
        snprintf(m.levels[0].topic, sizeof m.levels[0].topic, FV_PRES_DUPLICATES);
        m.levels[0].tokens = (double)c->duplicates;
        snprintf(m.levels[1].topic, sizeof m.levels[1].topic, FV_PRES_RATE_LIMITED);
        m.levels[1].tokens = (double)c->rate_limited;
        if (send) publish(p, &m);
        free(c);
    }
    fv_map_free(&p->counted);
    memset(&p->counted, 0, sizeof p->counted);
}

void fv_presence_free(struct fv_presence *p)
{
    if (p == NULL) return;
    send_counts(p, 0);
    free(p->gws);
    free(p);
}

void fv_presence_counts(const struct fv_presence *p, struct fv_presence_counts *out)
{
    memset(out, 0, sizeof *out);
    if (p) *out = p->c;
}

static void publish(struct fv_presence *p, struct fv_pres_msg *m)
{
    snprintf(m->gateway, sizeof m->gateway, "%s", p->name);
    p->d.publish(p->d.publish_arg, m);
}

static void claim(struct fv_presence *p, const struct fv_device *d)
{
    struct fv_pres_msg m = {.kind = FV_PRES_CLAIM, .stamp = d->claim_ms};
    snprintf(m.device, sizeof m.device, "%s", d->id);
    snprintf(m.extra, sizeof m.extra, "%s", d->client_type);
    publish(p, &m);
}

void fv_presence_connected(struct fv_presence *p, struct fv_device *d)
{
    uint64_t now = fv_now_ms();
    d->claim_ms = now > d->claim_ms ? now : d->claim_ms + 1; /* P1 */
    if (!d->claim_here) /* P3: what it takes from here on (still counting if it metered) */
        for (uint32_t i = 0; i < d->nbuckets; i++)
            d->buckets[i].taken = 0;
    d->claim_here = 1;
    claim(p, d);
}

void fv_presence_counted(struct fv_presence *p, struct fv_device *d, int duplicate)
{
    struct counted *c = fv_map_get_u64(&p->counted, (uint64_t)(uintptr_t)d);
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL) return; /* out of memory: this one is not counted elsewhere */
        c->d = d;
        if (fv_map_put_u64(&p->counted, (uint64_t)(uintptr_t)d, c) != FV_OK) {
            free(c);
            return;
        }
    }
    if (duplicate)
        c->duplicates++;
    else
        c->rate_limited++;
}

void fv_presence_closed(struct fv_presence *p, struct fv_device *d)
{
    if (d->sessions > 0 || !d->claim_here) return;
    struct fv_pres_msg m = {.kind = FV_PRES_GONE, .stamp = d->claim_ms};
    snprintf(m.device, sizeof m.device, "%s", d->id);
    publish(p, &m); /* P4; the device stays metered here until a newer claim */
}

/* P2: is the claim (stamp, gateway) newer than this gateway's own claim of d? */
static int newer(const struct fv_presence *p, const struct fv_device *d,
                 const struct fv_pres_msg *m)
{
    if (m->stamp != d->claim_ms) return m->stamp > d->claim_ms;
    return strcmp(m->gateway, p->name) > 0;
}

/* P3: the levels of d's buckets now, to the claimant. */
static void hand_over(struct fv_presence *p, struct fv_device *d, const struct fv_pres_msg *cl)
{
    struct fv_pres_msg m = {.kind = FV_PRES_BUCKETS, .stamp = cl->stamp};
    snprintf(m.device, sizeof m.device, "%s", d->id);
    snprintf(m.extra, sizeof m.extra, "%s", cl->gateway);
    uint64_t now = fv_mono_ns();
    for (uint32_t i = 0; p->d.rates && i < d->nbuckets && (int)i < p->d.rates->n; i++) {
        struct fv_bucket *b = &d->buckets[i];
        if (b->last_ns == 0) continue; /* never used: full, as a new bucket is */
        fv_bucket_peek(b, &p->d.rates->rules[i], now);
        struct fv_pres_level *l = &m.levels[m.nlevels++];
        snprintf(l->topic, sizeof l->topic, "%s", p->d.rates->rules[i].topic);
        l->tokens = b->tokens;
    }
    publish(p, &m);
    p->c.handed++;
}

static void gateway_claim(struct fv_presence *p, const struct fv_pres_msg *m)
{
    struct fv_device *d = fv_fleet_find(p->d.fleet, m->device);
    if (d == NULL) return; /* never here: nothing to close, nothing metered */
    if (!newer(p, d, m)) {
        if (d->sessions > 0 && d->claim_here) claim(p, d); /* P2: ours is newer: say so */
        return;
    }
    d->claim_ms = m->stamp;
    if (d->sessions > 0) {
        fv_debug("a device connected on gateway %s: its connection here is closed", m->gateway);
        p->c.moved += (uint64_t)fv_ingest_close_device(p->d.ing, d);
    }
    if (d->claim_here) {
        d->claim_here = 0;
        if (p->d.rates) hand_over(p, d, m);
    }
}

static void gateway_buckets(struct fv_presence *p, const struct fv_pres_msg *m)
{
    struct fv_device *d = fv_fleet_find(p->d.fleet, m->device);
    /* For a claim of ours while we meter (a second connection here raised the stamp since) */
    if (d == NULL || !d->claim_here || m->stamp > d->claim_ms || p->d.rates == NULL) return;
    uint64_t now = fv_mono_ns();
    for (int i = 0; i < m->nlevels; i++) {
        const struct fv_pres_level *l = &m->levels[i];
        int rule = fv_rate_rule_for(p->d.rates, l->topic, strlen(l->topic));
        if (rule < 0 || strcmp(p->d.rates->rules[rule].topic, l->topic) != 0) continue;
        struct fv_bucket *b = fv_device_bucket(d, rule, p->d.rates->n);
        if (b == NULL) continue; /* out of memory: this bucket stays as it is */
        const struct fv_rate_rule *r = &p->d.rates->rules[rule];
        if (b->last_ns == 0) {
            b->tokens = r->burst;
            b->last_ns = now ? now : 1;
        } else {
            fv_bucket_peek(b, r, now);
        }
        double want = l->tokens - (double)b->taken;
        if (want < b->tokens) b->tokens = want;
    }
    p->c.taken++;
}

/* ---- storage node ---------------------------------------------------------------------- */

static uint16_t gw_index(struct fv_presence *p, const char *name)
{
    for (size_t i = 0; i < p->ngws; i++)
        if (strcmp(p->gws[i].name, name) == 0) return (uint16_t)(i + 1);
    if (p->ngws == p->capgws) {
        size_t cap = p->capgws ? 2 * p->capgws : 8;
        if (cap > UINT16_MAX) return 0;
        struct gw_seen *g = realloc(p->gws, cap * sizeof *g);
        if (g == NULL) return 0;
        p->gws = g;
        p->capgws = cap;
    }
    struct gw_seen *g = &p->gws[p->ngws++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->heard_ns = fv_mono_ns();
    return (uint16_t)p->ngws;
}

/* P4: every device shown on gateway ix is disconnected. */
static void gateway_lost(struct fv_presence *p, uint16_t ix)
{
    struct fv_device **all;
    size_t n;
    if (fv_fleet_list(p->d.fleet, &all, &n) != FV_OK) return;
    fv_fleet_lock(p->d.fleet);
    for (size_t i = 0; i < n; i++)
        if (all[i]->claim_gw == ix) all[i]->sessions = 0;
    fv_fleet_unlock(p->d.fleet);
    free(all);
    p->c.gateways_lost++;
}

static void storage_take(struct fv_presence *p, const struct fv_pres_msg *m)
{
    if (m->gateway[0] == '\0') return;
    uint16_t ix = gw_index(p, m->gateway);
    if (ix == 0) return;
    struct gw_seen *g = &p->gws[ix - 1];
    g->heard_ns = fv_mono_ns();
    if (g->dead) p->resync = 1; /* heard again (a partition healed?): P5 */
    if (m->kind == FV_PRES_ALIVE) {
        if (g->boot && g->boot != m->stamp && !g->dead) gateway_lost(p, ix); /* restarted */
        g->boot = m->stamp;
        g->dead = 0;
        return;
    }
    if (m->kind != FV_PRES_CLAIM && m->kind != FV_PRES_GONE && m->kind != FV_PRES_COUNTS) return;
    g->dead = 0;
    struct fv_device *d = fv_fleet_find(p->d.fleet, m->device);
    if (m->kind == FV_PRES_COUNTS) { /* P7 */
        if (d == NULL) return;
        fv_fleet_lock(p->d.fleet);
        for (int i = 0; i < m->nlevels; i++) {
            uint64_t n = m->levels[i].tokens > 0 ? (uint64_t)m->levels[i].tokens : 0;
            if (strcmp(m->levels[i].topic, FV_PRES_DUPLICATES) == 0) d->duplicates += n;
            if (strcmp(m->levels[i].topic, FV_PRES_RATE_LIMITED) == 0) d->rate_limited += n;
        }
        fv_fleet_unlock(p->d.fleet);
        return;
    }
    if (d == NULL && m->kind == FV_PRES_CLAIM &&
        (p->d.wanted == NULL || p->d.wanted(p->d.wanted_arg, m->device)))
        d = fv_fleet_device(p->d.fleet, m->device, m->extra);
    if (d == NULL) return;
    fv_fleet_lock(p->d.fleet); /* F1 */
    if (m->kind == FV_PRES_CLAIM && m->stamp >= d->claim_ms) {
        d->claim_ms = m->stamp;
        d->claim_gw = ix;
        d->sessions = 1;
    } else if (m->kind == FV_PRES_GONE && d->claim_gw == ix && m->stamp >= d->claim_ms) {
        d->sessions = 0;
    }
    fv_fleet_unlock(p->d.fleet);
}

/* ---- both -------------------------------------------------------------------------------- */

static void sync_all(struct fv_presence *p)
{
    struct fv_device **all;
    size_t n;
    if (fv_fleet_list(p->d.fleet, &all, &n) != FV_OK) return;
    for (size_t i = 0; i < n; i++)
        if (all[i]->sessions > 0 && all[i]->claim_here) claim(p, all[i]);
    free(all);
}

void fv_presence_take(struct fv_presence *p, const struct fv_pres_msg *m)
{
    if (!p->d.gateway) {
        storage_take(p, m);
        return;
    }
    if (strcmp(m->gateway, p->name) == 0) return; /* our own, echoed */
    if (m->kind == FV_PRES_CLAIM)
        gateway_claim(p, m);
    else if (m->kind == FV_PRES_BUCKETS && strcmp(m->extra, p->name) == 0)
        gateway_buckets(p, m);
    else if (m->kind == FV_PRES_SYNC)
        sync_all(p);
}

void fv_presence_resync(struct fv_presence *p)
{
    p->resync = 1;
}

void fv_presence_tick(struct fv_presence *p)
{
    uint64_t now = fv_mono_ns();
    if (now - p->ticked_ns < 100000000ull) return; /* every 100 ms at most */
    p->ticked_ns = now;
    if (p->d.gateway) {
        if (p->alive_ns && now - p->alive_ns < FV_PRES_ALIVE_MS * 1000000ull) return;
        p->alive_ns = now;
        send_counts(p, 1); /* P7 */
        struct fv_pres_msg m = {.kind = FV_PRES_ALIVE, .stamp = p->boot_ms};
        publish(p, &m);
        return;
    }
    if (!p->synced || (p->resync && now - p->synced_ns >= FV_PRES_SYNC_GAP_MS * 1000000ull)) {
        p->synced = 1; /* P5 */
        p->resync = 0;
        p->synced_ns = now;
        struct fv_pres_msg m = {.kind = FV_PRES_SYNC};
        p->d.publish(p->d.publish_arg, &m);
    }
    for (size_t i = 0; i < p->ngws; i++)
        if (!p->gws[i].dead && now - p->gws[i].heard_ns > FV_PRES_DEAD_MS * 1000000ull) {
            p->gws[i].dead = 1;
            fv_warn("gateway %s not heard for %d s: its devices are shown disconnected",
                    p->gws[i].name, FV_PRES_DEAD_MS / 1000);
            gateway_lost(p, (uint16_t)(i + 1));
        }
}
