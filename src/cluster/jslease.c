/* jslease.c - shard leases in a NATS KV bucket (jslease.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/jslease.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

struct lease {
    uint64_t rev;  /* our last write's revision (0: not held) */
    int was_taken; /* acquired in this run at least once */
};

struct fv_jslease {
    const struct fv_cluster_cfg *cfg;
    char node[65];
    char allowed_str[FV_CLUSTER_MAX_SHARDS * 5 + 2]; /* the node key's value */
    jsCtx *js;
    kvStore *kv;
    int64_t wait_ms;
    uint64_t node_rev; /* 0: the node key is not ours (yet) */
    int waiting_logged;
    uint64_t next_ns;
    uint64_t ttl_ns, margin_ns;
    struct lease l[FV_CLUSTER_MAX_SHARDS];
    _Atomic uint64_t until[FV_CLUSTER_MAX_SHARDS]; /* E2: held while now < until */
    _Atomic uint32_t held;
    _Atomic uint64_t takeovers;
};

static void key_of(uint32_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "shard.%u", shard);
}

/* The bucket as nats.c's js_CreateKeyValue makes it (the stream KV_BUCKET on $KV.BUCKET.>, one
 * value per key, max age = TTL), made here because nats.c 3.4 truncates the TTL to 32 bits
 * for the de-duplication window (a TTL of 2.5 s is refused as a negative window). */
static natsStatus make_bucket(struct fv_jslease *l)
{
    const struct fv_cluster_cfg *cfg = l->cfg;
    char name[80], subj[96];
    snprintf(name, sizeof name, "KV_%s", cfg->lease_bucket);
    snprintf(subj, sizeof subj, "$KV.%s.>", cfg->lease_bucket);
    const char *subjects[1] = {subj};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.MaxMsgsPerSubject = 1;
    sc.MaxAge = (int64_t)l->ttl_ns;
    sc.Duplicates = (int64_t)l->ttl_ns < 120000000000ll ? (int64_t)l->ttl_ns : 120000000000ll;
    sc.Storage = js_FileStorage;
    sc.Replicas = cfg->replicas;
    sc.Discard = js_DiscardNew;
    sc.AllowRollup = true;
    sc.DenyDelete = true;
    sc.AllowDirect = true;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddStream(&si, l->js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (st == NATS_OK) st = js_KeyValue(&l->kv, l->js, cfg->lease_bucket);
    if (st == NATS_OK)
        fv_info("cluster: made lease bucket %s (TTL %d ms, replicas %d)", cfg->lease_bucket,
                cfg->lease_ttl_ms, cfg->replicas);
    return st;
}

int fv_jslease_open(const struct fv_cluster_cfg *cfg, const char *node, natsConnection *nc,
                    struct fv_jslease **out, char *err, size_t errlen)
{
    struct fv_jslease *l = calloc(1, sizeof *l);
    if (l == NULL) return FV_ENOMEM;
    l->cfg = cfg;
    snprintf(l->node, sizeof l->node, "%s", node);
    l->ttl_ns = (uint64_t)cfg->lease_ttl_ms * 1000000;
    l->margin_ns = l->ttl_ns / 10;
    l->wait_ms = cfg->lease_renew_ms < 2000 ? cfg->lease_renew_ms : 2000;
    if (!cfg->owned_given) {
        snprintf(l->allowed_str, sizeof l->allowed_str, "*");
    } else {
        size_t n = 0;
        for (uint32_t i = 0; i < cfg->shards; i++)
            if (cfg->owned[i])
                n += (size_t)snprintf(l->allowed_str + n, sizeof l->allowed_str - n, "%s%u",
                                      n ? "," : "", i);
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = l->wait_ms;
    natsStatus st = natsConnection_JetStream(&l->js, nc, &jo);
    if (st == NATS_OK) st = js_KeyValue(&l->kv, l->js, cfg->lease_bucket);
    const char *why = "";
    if (st == NATS_NOT_FOUND) {
        st = make_bucket(l);
        why = nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "";
        if (st != NATS_OK && js_KeyValue(&l->kv, l->js, cfg->lease_bucket) == NATS_OK)
            st = NATS_OK; /* another node made it meanwhile */
    }
    if (st != NATS_OK) {
        fv_seterr(err, errlen, "cluster: lease bucket %s: %s%s%s", cfg->lease_bucket,
                  natsStatus_GetText(st), why[0] ? ": " : "", why);
        fv_jslease_close(l);
        return FV_EIO;
    }
    fv_info("cluster: node %s, leases in %s (renewed every %d ms, expiring after %d ms)", l->node,
            cfg->lease_bucket, cfg->lease_renew_ms, cfg->lease_ttl_ms);
    *out = l;
    return FV_OK;
}

int fv_jslease_holds(const struct fv_jslease *l, uint32_t shard, uint64_t now_ns)
{
    if (l == NULL || shard >= FV_CLUSTER_MAX_SHARDS) return 0;
    return now_ns < atomic_load(&l->until[shard]);
}

void fv_jslease_counts(const struct fv_jslease *l, uint32_t *held, uint64_t *takeovers)
{
    *held = l ? atomic_load(&l->held) : 0;
    *takeovers = l ? atomic_load(&l->takeovers) : 0;
}

static void set_held(struct fv_jslease *l, uint32_t shard, uint64_t rev, uint64_t until)
{
    int had = l->l[shard].rev != 0;
    l->l[shard].rev = rev;
    atomic_store(&l->until[shard], until);
    if (had && !rev) atomic_fetch_sub(&l->held, 1);
    if (!had && rev) atomic_fetch_add(&l->held, 1);
}

/* The lease of shard is gone (E2, E3) or given up (E4): stops holding at once. */
static void drop(struct fv_jslease *l, uint32_t shard, const char *why)
{
    if (l->l[shard].rev == 0) return;
    set_held(l, shard, 0, 0);
    fv_warn("cluster: shard %u: lease %s; no longer taking or answering for it", shard, why);
}

/* E1, E2: one compare-and-set write of shard's key (last 0: create). 1 when it was written. */
static int write_lease(struct fv_jslease *l, uint32_t shard, uint64_t last, const char *value)
{
    char key[32];
    key_of(shard, key, sizeof key);
    uint64_t t0 = fv_mono_ns(), rev = 0;
    natsStatus st = last ? kvStore_UpdateString(&rev, l->kv, key, value, last)
                         : kvStore_CreateString(&rev, l->kv, key, value);
    if (st != NATS_OK) return 0;
    if (value[0] == '\0') {
        set_held(l, shard, 0, 0);
    } else {
        set_held(l, shard, rev, t0 + l->ttl_ns - l->margin_ns);
    }
    return 1;
}

/* E3: a renewal failed; is the key still ours at our revision? */
static void renewal_failed(struct fv_jslease *l, uint32_t shard, uint64_t now)
{
    char key[32];
    key_of(shard, key, sizeof key);
    kvEntry *e = NULL;
    natsStatus st = kvStore_Get(&e, l->kv, key);
    if (st == NATS_NOT_FOUND) {
        drop(l, shard, "expired");
    } else if (st == NATS_OK && (kvEntry_Revision(e) != l->l[shard].rev ||
                                 strcmp(kvEntry_ValueString(e), l->node) != 0)) {
        drop(l, shard, "taken by another node");
    } else if (!fv_jslease_holds(l, shard, now)) {
        drop(l, shard, "not renewed before its deadline");
    }
    kvEntry_Destroy(e);
}

static void register_node(struct fv_jslease *l)
{
    char key[80];
    snprintf(key, sizeof key, "node.%s", l->node);
    uint64_t rev = 0;
    natsStatus st = l->node_rev
                        ? kvStore_UpdateString(&rev, l->kv, key, l->allowed_str, l->node_rev)
                        : kvStore_CreateString(&rev, l->kv, key, l->allowed_str);
    if (st == NATS_OK) {
        if (l->waiting_logged) fv_info("cluster: node key %s is ours now", key);
        l->node_rev = rev;
        l->waiting_logged = 0;
        return;
    }
    if (l->node_rev == 0 && !l->waiting_logged) { /* E5 */
        fv_warn("cluster: %s exists (this node's previous run, until it expires after %d ms, "
                "or another node with the name %s): waiting",
                key, l->cfg->lease_ttl_ms, l->node);
        l->waiting_logged = 1;
    }
    if (l->node_rev) { /* not renewed: it expired, or another process wrote it */
        kvEntry *e = NULL;
        if (kvStore_Get(&e, l->kv, key) != NATS_OK || kvEntry_Revision(e) != l->node_rev)
            l->node_rev = 0;
        kvEntry_Destroy(e);
    }
}

static struct fv_lease_node *find_node(struct fv_lease_view *v, const char *name)
{
    for (size_t i = 0; i < v->nnodes; i++)
        if (strcmp(v->node[i].name, name) == 0) return &v->node[i];
    return NULL;
}

/* Another live node below its share that may take shard (E4); deficit: decremented. */
static struct fv_lease_node *hungry_for(struct fv_lease_view *v, const char *self, uint32_t shard,
                                        uint32_t share, uint32_t *deficit)
{
    for (size_t i = 0; i < v->nnodes; i++) {
        struct fv_lease_node *n = &v->node[i];
        if (strcmp(n->name, self) != 0 && n->allowed[shard] && n->held + deficit[i] < share)
            return n;
    }
    return NULL;
}

/* E4 on a view of the bucket. */
static void balance(struct fv_jslease *l, struct fv_lease_view *v)
{
    const struct fv_cluster_cfg *cfg = l->cfg;
    size_t k = v->nnodes ? v->nnodes : 1;
    uint32_t share = (uint32_t)((cfg->shards + k - 1) / k);
    uint32_t held = atomic_load(&l->held);
    uint32_t *pledged = calloc(v->nnodes + 1, sizeof *pledged); /* released toward node i */
    if (pledged == NULL) return;
    for (uint32_t s = cfg->shards; s-- > 0 && held > share;) {
        if (l->l[s].rev == 0) continue;
        struct fv_lease_node *n = hungry_for(v, l->node, s, share, pledged);
        if (n == NULL) continue;
        uint64_t rev = l->l[s].rev;
        set_held(l, s, 0, 0); /* stop first (E4), then say so */
        if (write_lease(l, s, rev, ""))
            fv_info("cluster: shard %u: lease released (%u held, share %u of %u shards, %zu "
                    "nodes)",
                    s, held - 1, share, cfg->shards, k);
        pledged[n - v->node]++;
        held--;
    }
    uint32_t start = 0;
    for (const char *p = l->node; *p; p++)
        start = start * 31 + (unsigned char)*p;
    for (uint32_t j = 0; j < cfg->shards; j++) {
        uint32_t s = (start + j) % cfg->shards;
        if (!cfg->owned[s] || l->l[s].rev || (v->owner[s][0] && v->rev[s])) continue;
        if (held >= share && hungry_for(v, l->node, s, share, pledged)) continue;
        int taken = l->l[s].was_taken;
        if (!write_lease(l, s, v->rev[s], l->node)) continue; /* another node was faster */
        held++;
        l->l[s].was_taken = 1;
        atomic_fetch_add(&l->takeovers, 1);
        fv_info("cluster: shard %u: lease acquired%s (%u held, share %u of %u shards, %zu nodes)",
                s, taken ? " again" : "", held, share, cfg->shards, k);
    }
    free(pledged);
}

void fv_jslease_tick(struct fv_jslease *l, uint64_t now)
{
    if (l == NULL || now < l->next_ns) return;
    l->next_ns = now + (uint64_t)l->cfg->lease_renew_ms * 1000000;
    register_node(l);
    for (uint32_t s = 0; s < l->cfg->shards; s++) {
        if (l->l[s].rev == 0) continue;
        if (!fv_jslease_holds(l, s, now)) {
            drop(l, s, "not renewed before its deadline");
            continue;
        }
        if (!write_lease(l, s, l->l[s].rev, l->node)) renewal_failed(l, s, now);
    }
    if (l->node_rev == 0) return; /* E5: take nothing before the node key is ours */
    struct fv_lease_view v;
    char err[256];
    if (fv_lease_read(l->cfg, l->js, l->wait_ms, &v, err, sizeof err) != FV_OK) {
        fv_warn("%s (leases renewed, none taken or released this round)", err);
        return;
    }
    if (find_node(&v, l->node)) balance(l, &v);
    fv_lease_view_free(&v);
}

void fv_jslease_close(struct fv_jslease *l)
{
    if (l == NULL) return;
    for (uint32_t s = 0; l->kv && s < l->cfg->shards; s++)
        if (l->l[s].rev) {
            uint64_t rev = l->l[s].rev;
            set_held(l, s, 0, 0);
            write_lease(l, s, rev, "");
        }
    if (l->kv && l->node_rev) {
        char key[80];
        snprintf(key, sizeof key, "node.%s", l->node);
        kvStore_Delete(l->kv, key);
    }
    if (l->kv) kvStore_Destroy(l->kv);
    if (l->js) jsCtx_Destroy(l->js);
    free(l);
}

/* ---- reading the bucket ---------------------------------------------------------------- */

static void parse_allowed(const char *s, uint32_t shards, uint8_t *allowed)
{
    if (strcmp(s, "*") == 0) {
        memset(allowed, 1, shards);
        return;
    }
    while (*s) {
        char *end;
        unsigned long n = strtoul(s, &end, 10);
        if (end == s) break;
        if (n < shards) allowed[n] = 1;
        s = *end == ',' ? end + 1 : end;
    }
}

static int add_entry(struct fv_lease_view *v, uint32_t shards, kvEntry *e, size_t *cap)
{
    const char *key = kvEntry_Key(e), *val = kvEntry_ValueString(e);
    if (val == NULL) val = "";
    if (strncmp(key, "node.", 5) == 0) {
        if (v->nnodes == *cap) {
            size_t nc = *cap ? 2 * *cap : 8;
            struct fv_lease_node *p = realloc(v->node, nc * sizeof *p);
            if (p == NULL) return FV_ENOMEM;
            v->node = p;
            *cap = nc;
        }
        struct fv_lease_node *n = &v->node[v->nnodes++];
        memset(n, 0, sizeof *n);
        snprintf(n->name, sizeof n->name, "%s", key + 5);
        n->seen_ns = kvEntry_Created(e);
        parse_allowed(val, shards, n->allowed);
    } else if (strncmp(key, "shard.", 6) == 0) {
        char *end;
        unsigned long s = strtoul(key + 6, &end, 10);
        if (*end || s >= shards) return FV_OK; /* another shard count's: not ours */
        snprintf(v->owner[s], sizeof v->owner[s], "%s", val);
        v->rev[s] = kvEntry_Revision(e);
        v->shard_ns[s] = kvEntry_Created(e);
    }
    return FV_OK;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fv_lease_node *)a)->name, ((const struct fv_lease_node *)b)->name);
}

int fv_lease_read(const struct fv_cluster_cfg *cfg, jsCtx *js, int64_t wait_ms,
                  struct fv_lease_view *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    v->owner = calloc(cfg->shards, sizeof *v->owner);
    v->rev = calloc(cfg->shards, sizeof *v->rev);
    v->shard_ns = calloc(cfg->shards, sizeof *v->shard_ns);
    if (v->owner == NULL || v->rev == NULL || v->shard_ns == NULL) {
        fv_lease_view_free(v);
        return FV_ENOMEM;
    }
    /* No watcher: a watcher is an ephemeral consumer, and nats-server 2.9 places one on a
     * random replica of the bucket's stream, a dead server's too (it stays in the stream's
     * peer set), where it never delivers. The stream's leader lists the keys (stream info
     * with a subject filter) and any replica answers a key's last value. */
    kvStore *kv = NULL;
    natsStatus st = js_KeyValue(&kv, js, cfg->lease_bucket);
    if (st == NATS_NOT_FOUND) return FV_OK;
    char stream[80], filter[96];
    snprintf(stream, sizeof stream, "KV_%s", cfg->lease_bucket);
    snprintf(filter, sizeof filter, "$KV.%s.>", cfg->lease_bucket);
    size_t plen = strlen(filter) - 1; /* "$KV.BUCKET." */
    jsStreamInfo *si = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = wait_ms;
    jo.Stream.Info.SubjectsFilter = filter;
    jsErrCode jerr = 0;
    if (st == NATS_OK) st = js_GetStreamInfo(&si, js, stream, &jo, &jerr);
    int rc = FV_OK;
    size_t cap = 0;
    const jsStreamStateSubjects *subj = st == NATS_OK ? si->State.Subjects : NULL;
    for (int i = 0; subj && i < subj->Count && rc == FV_OK; i++) {
        const char *name = subj->List[i].Subject;
        if (name == NULL || strncmp(name, filter, plen) != 0) continue;
        kvEntry *e = NULL;
        st = kvStore_Get(&e, kv, name + plen);
        if (st == NATS_NOT_FOUND) { /* deleted or purged (a marker is its last value) */
            st = NATS_OK;
            continue;
        }
        if (st != NATS_OK) break;
        rc = add_entry(v, cfg->shards, e, &cap);
        kvEntry_Destroy(e);
    }
    jsStreamInfo_Destroy(si);
    kvStore_Destroy(kv);
    if (rc == FV_OK && st != NATS_OK) {
        fv_seterr(err, errlen, "cluster: reading lease bucket %s: %s", cfg->lease_bucket,
                  natsStatus_GetText(st));
        rc = FV_EIO;
    }
    if (rc) {
        fv_lease_view_free(v);
        return rc;
    }
    v->bucket = 1;
    if (v->nnodes > 1) qsort(v->node, v->nnodes, sizeof *v->node, node_cmp); /* key order */
    for (uint32_t s = 0; s < cfg->shards; s++) {
        struct fv_lease_node *n = v->owner[s][0] ? find_node(v, v->owner[s]) : NULL;
        if (n) n->held++;
    }
    return FV_OK;
}

void fv_lease_view_free(struct fv_lease_view *v)
{
    free(v->node);
    free(v->owner);
    free(v->rev);
    free(v->shard_ns);
    memset(v, 0, sizeof *v);
}
