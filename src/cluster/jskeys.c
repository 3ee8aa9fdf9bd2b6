/* jskeys.c - the shared keys in a NATS JetStream KV bucket (jskeys.h).
 *
 * The bucket is read and written with JetStream's own calls rather than kvStore_Get and
 * kvStore_Create: a read must tell "never made" (no message on the entry's subject) from
 * "erased" (the last message is a purge or delete marker), which kvStore_Get reports alike,
 * and a create must fail on a marker too (J1), which kvStore_Create does not (it writes over
 * a deleted entry). So a read is js_GetLastMsg on $KV.BUCKET.KEY with its KV-Operation header
 * looked at, and a create is a publish expecting no message on that subject. The bucket
 * itself and the purge are nats.c's kvStore calls; the bucket is followed (J3) by reading its
 * stream in sequence (kvfollow.h), not with a kvWatcher, whose consumer nats-server 2.9 may
 * place on a dead server.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "cluster/jskeys.h"
#include "cluster/kvfollow.h"
#include "cluster/natsconn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

struct fv_jskeys {
    const struct fv_cluster_cfg *cfg;
    struct fv_kek kek;
    struct fv_natsconn conn;
    kvStore *kv;
    char stream[40];            /* KV_BUCKET */
    char subj_prefix[48];       /* $KV.BUCKET. */
    struct fv_kvfollow *follow; /* the watcher thread's (J3) */
    pthread_t thread;
    int thread_started;
    int stop;                       /* atomic */
    struct fv_keystore *watch_keys; /* the watcher thread's */
    void (*changed)(void *arg);
    void *changed_arg;
    struct fv_jskeys_stats stats;  /* atomic fields */
    uint64_t j6_logged_ns;         /* atomic: the last J6 log line (one per 5 s at most) */
    void (*before_create)(void *); /* tests: fv__jskeys_before_create */
    unsigned delay_ms; /* tests: FV_FAULT_KV_DELAY_MS, a slow bucket (docs/operations.md) */
    void *before_create_arg;
};

/* ---- value encoding ------------------------------------------------------------------------ */

static size_t head(const struct fv_kek *kek, char kind, unsigned char out[FV_JSKEYS_HEAD])
{
    memcpy(out, FV_JSKEYS_MAGIC, 4);
    out[4] = FV_JSKEYS_VERSION;
    out[5] = (unsigned char)kind;
    memcpy(out + 6, kek->id, 16);
    return FV_JSKEYS_HEAD;
}

/* The associated data: the value's head and the entry's key, so that a value moved to
 * another entry, or with its head changed, does not open. */
static int aad_of(const unsigned char h[FV_JSKEYS_HEAD], const char *key, unsigned char *aad,
                  size_t cap, size_t *n)
{
    size_t kl = strlen(key);
    if (FV_JSKEYS_HEAD + kl > cap) return FV_EINVAL;
    memcpy(aad, h, FV_JSKEYS_HEAD);
    memcpy(aad + FV_JSKEYS_HEAD, key, kl);
    *n = FV_JSKEYS_HEAD + kl;
    return FV_OK;
}

int fv_jskeys_wrap(const struct fv_kek *kek, const char *key, char kind, const void *pt, size_t n,
                   struct fv_buf *out)
{
    unsigned char h[FV_JSKEYS_HEAD], aad[FV_JSKEYS_HEAD + 128];
    size_t an;
    head(kek, kind, h);
    int rc = aad_of(h, key, aad, sizeof aad, &an);
    if (rc == FV_OK) rc = fv_buf_append(out, h, sizeof h);
    if (rc == FV_OK) rc = fv_seal(kek->key, aad, an, pt, n, out);
    return rc;
}

int fv_jskeys_unwrap(const struct fv_kek *kek, const char *key, char kind, const unsigned char *v,
                     size_t n, struct fv_buf *out, char *err, size_t errlen)
{
    if (n < FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD || memcmp(v, FV_JSKEYS_MAGIC, 4) != 0) {
        fv_seterr(err, errlen, "KV entry %s: not a fleetvault key value (%zu bytes)", key, n);
        return FV_ECORRUPT;
    }
    if (v[4] != FV_JSKEYS_VERSION) {
        fv_seterr(err, errlen, "KV entry %s: value format version %u; this build reads %u", key,
                  v[4], FV_JSKEYS_VERSION);
        return FV_ECORRUPT;
    }
    if (v[5] != (unsigned char)kind) {
        fv_seterr(err, errlen, "KV entry %s: a value of kind '%c' where '%c' belongs", key,
                  v[5] >= 0x20 && v[5] < 0x7f ? v[5] : '?', kind);
        return FV_ECORRUPT;
    }
    const unsigned char *kk = fv_kek_by_id(kek, (const char *)(v + 6)); /* J6 */
    if (kk == NULL) {
        char ids[64];
        snprintf(ids, sizeof ids, kek->prev_id[0] ? "%s (and the previous %s)" : "%s%s", kek->id,
                 kek->prev_id);
        fv_seterr(err, errlen,
                  "KV entry %s: wrapped by master key %.16s, but this node's is %s (every node "
                  "of a cluster must be given the same master key; during a rotation, the new "
                  "one with --key-file and the old with --previous-key-file)",
                  key, (const char *)(v + 6), ids);
        return FV_ECORRUPT;
    }
    unsigned char aad[FV_JSKEYS_HEAD + 128];
    size_t an;
    int rc = aad_of(v, key, aad, sizeof aad, &an);
    if (rc == FV_OK) rc = fv_open(kk, aad, an, v + FV_JSKEYS_HEAD, n - FV_JSKEYS_HEAD, out);
    if (rc) {
        fv_seterr(err, errlen,
                  "KV entry %s: the value does not open (altered, or moved from "
                  "another entry)",
                  key);
        return FV_ECORRUPT;
    }
    return FV_OK;
}

int fv_jskeys_value_kek(const unsigned char *v, size_t n, char id[17])
{
    id[0] = '\0';
    if (n < FV_JSKEYS_HEAD + FV_SEAL_OVERHEAD || memcmp(v, FV_JSKEYS_MAGIC, 4) != 0 ||
        v[4] != FV_JSKEYS_VERSION)
        return FV_ECORRUPT;
    memcpy(id, v + 6, 16);
    id[16] = '\0';
    return FV_OK;
}

int fv_jskeys_rewrap(const struct fv_kek *from, const struct fv_kek *to, const char *key,
                     const unsigned char *v, size_t n, struct fv_buf *out, char *err, size_t errlen)
{
    struct fv_buf pt = {0};
    int rc = n > 5 ? fv_jskeys_unwrap(from, key, (char)v[5], v, n, &pt, err, errlen)
                   : fv_jskeys_unwrap(from, key, '?', v, n, &pt, err, errlen);
    if (rc == FV_OK) rc = fv_jskeys_wrap(to, key, (char)v[5], pt.data, pt.len, out);
    if (pt.data) OPENSSL_cleanse(pt.data, pt.cap);
    fv_buf_free(&pt);
    return rc;
}

static void subject_key(const char *pseudo, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", FV_JSKEYS_SUBJ_PREFIX, pseudo);
}

int fv_jskeys_encode_subject(const struct fv_kek *kek, const char *pseudo,
                             const unsigned char dek[FV_KEY_LEN], const char *name,
                             struct fv_buf *out)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl > FV_NAME_MAX) return FV_EINVAL;
    unsigned char pt[FV_KEY_LEN + FV_NAME_MAX];
    memcpy(pt, dek, FV_KEY_LEN);
    memcpy(pt + FV_KEY_LEN, name, nl);
    char key[80];
    subject_key(pseudo, key, sizeof key);
    int rc = fv_jskeys_wrap(kek, key, FV_JSKEYS_KIND_SUBJ, pt, FV_KEY_LEN + nl, out);
    OPENSSL_cleanse(pt, sizeof pt);
    return rc;
}

int fv_jskeys_decode_subject(const struct fv_kek *kek, const char *pseudo, const unsigned char *v,
                             size_t n, unsigned char dek[FV_KEY_LEN], char name[FV_NAME_MAX + 1],
                             char *err, size_t errlen)
{
    char key[80];
    subject_key(pseudo, key, sizeof key);
    struct fv_buf pt = {0};
    int rc = fv_jskeys_unwrap(kek, key, FV_JSKEYS_KIND_SUBJ, v, n, &pt, err, errlen);
    if (rc == FV_OK && (pt.len <= FV_KEY_LEN || pt.len > FV_KEY_LEN + FV_NAME_MAX ||
                        memchr(pt.data + FV_KEY_LEN, 0, pt.len - FV_KEY_LEN))) {
        fv_seterr(err, errlen,
                  "KV entry %s: a subject value of %zu bytes (a key and a name "
                  "expected)",
                  key, pt.len);
        rc = FV_ECORRUPT;
    }
    if (rc == FV_OK) {
        memcpy(dek, pt.data, FV_KEY_LEN);
        memcpy(name, pt.data + FV_KEY_LEN, pt.len - FV_KEY_LEN);
        name[pt.len - FV_KEY_LEN] = '\0';
    }
    if (pt.data) OPENSSL_cleanse(pt.data, pt.cap);
    fv_buf_free(&pt);
    return rc;
}

/* ---- the bucket ---------------------------------------------------------------------------- */

static void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* The entry's last message: FV_OK (*out its value's message), FV_ENOENT (none), FV_ESTATE
 * (a delete or purge marker), FV_EIO. */
static int read_entry(struct fv_jskeys *k, const char *key, natsMsg **out)
{
    char subj[160];
    snprintf(subj, sizeof subj, "%s%s", k->subj_prefix, key);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = FV_JSKEYS_WAIT_MS;
    jsErrCode jerr = 0;
    natsMsg *m = NULL;
    natsStatus st = js_GetLastMsg(&m, k->conn.js, k->stream, subj, &jo, &jerr);
    *out = NULL;
    if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return FV_ENOENT;
    if (st != NATS_OK) {
        fv_warn("cluster: reading KV entry %s: %s (JetStream error %d)", key,
                natsStatus_GetText(st), (int)jerr);
        return FV_EIO;
    }
    const char *op = NULL;
    if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op &&
        (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0)) {
        natsMsg_Destroy(m);
        return FV_ESTATE;
    }
    *out = m;
    return FV_OK;
}

/* J1: publishes value as entry key if the entry has no message at all. FV_OK (ours is it),
 * FV_EEXIST (another node's, or a marker, was first), FV_EIO. */
static int create_entry(struct fv_jskeys *k, const char *key, const struct fv_buf *value)
{
    char subj[160];
    snprintf(subj, sizeof subj, "%s%s", k->subj_prefix, key);
    natsMsg *m = NULL;
    natsStatus st = natsMsg_Create(&m, subj, NULL, (const char *)value->data, (int)value->len);
    if (st != NATS_OK) return FV_ENOMEM;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectNoMessage = true;
    po.MaxWait = FV_JSKEYS_WAIT_MS;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    st = js_PublishMsg(&pa, k->conn.js, m, &po, &jerr);
    natsMsg_Destroy(m);
    jsPubAck_Destroy(pa);
    if (st == NATS_OK) return FV_OK;
    if (jerr == JSStreamWrongLastSequenceErr) return FV_EEXIST;
    fv_warn("cluster: making KV entry %s: %s (JetStream error %d)", key, natsStatus_GetText(st),
            (int)jerr);
    return FV_EIO;
}

static int src_pseudonym_key(void *arg, const unsigned char proposed[FV_KEY_LEN],
                             unsigned char out[FV_KEY_LEN], char *err, size_t errlen)
{
    struct fv_jskeys *k = arg;
    int rc = FV_EIO;
    for (int tries = 0; tries < 3; tries++) {
        natsMsg *m = NULL;
        rc = read_entry(k, FV_JSKEYS_PKEY_NAME, &m);
        if (rc == FV_OK) {
            struct fv_buf pt = {0};
            rc = fv_jskeys_unwrap(&k->kek, FV_JSKEYS_PKEY_NAME, FV_JSKEYS_KIND_PKEY,
                                  (const unsigned char *)natsMsg_GetData(m),
                                  (size_t)natsMsg_GetDataLength(m), &pt, err, errlen);
            natsMsg_Destroy(m);
            if (rc == FV_OK && pt.len != FV_KEY_LEN) {
                fv_seterr(err, errlen, "KV entry %s: %zu bytes, not a key", FV_JSKEYS_PKEY_NAME,
                          pt.len);
                rc = FV_ECORRUPT;
            }
            if (rc == FV_OK) memcpy(out, pt.data, FV_KEY_LEN);
            if (pt.data) OPENSSL_cleanse(pt.data, pt.cap);
            fv_buf_free(&pt);
            return rc;
        }
        if (rc != FV_ENOENT) break;
        struct fv_buf v = {0};
        rc = fv_jskeys_wrap(&k->kek, FV_JSKEYS_PKEY_NAME, FV_JSKEYS_KIND_PKEY, proposed, FV_KEY_LEN,
                            &v);
        if (rc == FV_OK) rc = create_entry(k, FV_JSKEYS_PKEY_NAME, &v);
        fv_buf_free(&v);
        if (rc == FV_OK) {
            memcpy(out, proposed, FV_KEY_LEN);
            fv_info("cluster: made the cluster's pseudonym key (KV %s, entry %s)",
                    k->cfg->keys_bucket, FV_JSKEYS_PKEY_NAME);
            return FV_OK;
        }
        if (rc != FV_EEXIST) break; /* another node made it first: read theirs */
    }
    fv_seterr(err, errlen, "cluster: the pseudonym key in KV bucket %s: %s", k->cfg->keys_bucket,
              rc == FV_ESTATE ? "deleted (an operator's mistake?)" : fv_strerror(rc));
    return rc == FV_ESTATE ? FV_ECORRUPT : rc;
}

static int src_subject(void *arg, const char *pseudo, int create, unsigned char dek[FV_KEY_LEN],
                       char name[FV_NAME_MAX + 1])
{
    struct fv_jskeys *k = arg;
    char key[80], err[256];
    subject_key(pseudo, key, sizeof key);
    if (k->delay_ms) usleep(k->delay_ms * 1000u); /* a slow bucket (tests only) */
    for (int tries = 0; tries < 2; tries++) {
        natsMsg *m = NULL;
        int rc = read_entry(k, key, &m);
        char id[17];
        if (rc == FV_OK &&
            fv_jskeys_value_kek((const unsigned char *)natsMsg_GetData(m),
                                (size_t)natsMsg_GetDataLength(m), id) == FV_OK &&
            fv_kek_by_id(&k->kek, id) == NULL) {
            /* J6: wrapped by a master key this node is not given (a rotation under way, this
             * node not restarted with the new key yet): unavailable here, never corrupt - a
             * storage node waits (jsconsume.h C9), a gateway asks again, then lets the device
             * go; nothing is lost. */
            natsMsg_Destroy(m);
            uint64_t now = fv_mono_ns(), last = __atomic_load_n(&k->j6_logged_ns, __ATOMIC_RELAXED);
            if ((last == 0 || now - last >= 5000000000ull) &&
                __atomic_compare_exchange_n(&k->j6_logged_ns, &last, now, 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                fv_error("cluster: KV entry %s: wrapped by master key %s, but this node's is %s: "
                         "restart it with the new master key (--key-file) and the old one "
                         "(--previous-key-file)",
                         key, id, k->kek.id);
            return FV_EIO;
        }
        if (rc == FV_OK) {
            rc = fv_jskeys_decode_subject(
                &k->kek, pseudo, (const unsigned char *)natsMsg_GetData(m),
                (size_t)natsMsg_GetDataLength(m), dek, name, err, sizeof err);
            natsMsg_Destroy(m);
            if (rc) fv_error("cluster: %s", err); /* names the pseudonym only */
            if (rc == FV_OK) count(&k->stats.fetched);
            if (rc == FV_OK && tries) count(&k->stats.lost_races);
            return rc;
        }
        if (rc != FV_ENOENT || !create) return rc;
        if (k->before_create) k->before_create(k->before_create_arg);
        struct fv_buf v = {0};
        rc = fv_jskeys_encode_subject(&k->kek, pseudo, dek, name, &v);
        if (rc == FV_OK) rc = create_entry(k, key, &v);
        fv_buf_free(&v);
        if (rc == FV_OK) count(&k->stats.created);
        if (rc != FV_EEXIST) return rc; /* FV_EEXIST: another node's won; read it */
    }
    return FV_EIO;
}

struct fv_keysource fv_jskeys_source(struct fv_jskeys *k)
{
    return (struct fv_keysource){
        .arg = k, .pseudonym_key = src_pseudonym_key, .subject = src_subject};
}

static int bind_bucket(struct fv_jskeys *k, char *err, size_t errlen)
{
    return fv_natsconn_bucket(&k->conn, k->cfg->keys_bucket,
                              "fleetvault: keys wrapped by the master key", k->cfg->replicas,
                              &k->kv, err, errlen);
}

int fv_jskeys_open(const struct fv_cluster_cfg *cfg, const struct fv_kek *kek,
                   struct fv_jskeys **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_jskeys *k = calloc(1, sizeof *k);
    if (k == NULL) return FV_ENOMEM;
    k->cfg = cfg;
    k->kek = *kek;
    const char *delay = getenv("FV_FAULT_KV_DELAY_MS");
    if (delay && *delay) {
        k->delay_ms = (unsigned)strtoul(delay, NULL, 10) % 60001u;
        fv_warn("cluster: FV_FAULT_KV_DELAY_MS: every subject key request waits %u ms first "
                "(a test setting)",
                k->delay_ms);
    }
    snprintf(k->stream, sizeof k->stream, "KV_%s", cfg->keys_bucket);
    snprintf(k->subj_prefix, sizeof k->subj_prefix, "$KV.%s.", cfg->keys_bucket);
    int rc = fv_natsconn_connect(&k->conn, cfg, "fleetvault-keys", NULL, FV_JSKEYS_WAIT_MS, 0, err,
                                 errlen);
    if (rc == FV_OK) rc = bind_bucket(k, err, errlen);
    for (int i = 0; rc == FV_EIO && k->conn.js && i < FV_NATS_START_TRIES; i++) {
        fv_warn("%s; trying again", err);
        usleep(500000);
        rc = bind_bucket(k, err, errlen);
    }
    if (rc) {
        fv_jskeys_close(k);
        return rc;
    }
    *out = k;
    return FV_OK;
}

int fv_jskeys_purge(struct fv_jskeys *k, const char *pseudo, char *err, size_t errlen)
{
    char key[80];
    subject_key(pseudo, key, sizeof key);
    kvPurgeOptions po;
    kvPurgeOptions_Init(&po);
    po.Timeout = FV_JSKEYS_WAIT_MS;
    natsStatus st = kvStore_Purge(k->kv, key, &po);
    if (st != NATS_OK) {
        fv_seterr(err, errlen,
                  "cluster: purging KV entry %s: %s (the erasure is done here; "
                  "erase again to purge it from the cluster)",
                  key, natsStatus_GetText(st));
        return FV_EIO;
    }
    fv_info("cluster: KV entry %s purged (every node drops the key)", key);
    return FV_OK;
}

static int is_pseudonym(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return 0;
    return n == FV_PSEUDONYM_LEN;
}

/* J3 on the watcher's thread: subject pseudo was erased in the cluster. */
static void erased(struct fv_jskeys *k, const char *pseudo)
{
    const unsigned char *dek;
    const char *name;
    count(&k->stats.erased_seen);
    if (fv_keystore_subject(k->watch_keys, pseudo, &dek, &name) == FV_ESTATE) return; /* known */
    char err[256];
    if (fv_keystore_destroy_pseudo(k->watch_keys, pseudo, err, sizeof err) != FV_OK)
        fv_error("cluster: subject %s erased in the cluster, but not in this catalog: %s", pseudo,
                 err);
    else
        fv_info("cluster: subject %s erased in the cluster: its key here destroyed", pseudo);
    fv_keystore_forget(k->watch_keys);
    k->changed(k->changed_arg);
}

/* J3, the watcher's thread: the bucket's messages in sequence, its current state first
 * (erased while this node was down), then each as it is stored. A request that fails is asked
 * again from the same place (kvfollow.h F2): nothing purged meanwhile is missed. */
static void *watch_main(void *arg)
{
    struct fv_jskeys *k = arg;
    size_t plen = strlen(FV_JSKEYS_SUBJ_PREFIX);
    int failing = 0;
    while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
        struct fv_kventry e;
        char err[256];
        int rc = fv_kvfollow_next(k->follow, &e, FV_JSKEYS_FOLLOW_MS, err, sizeof err);
        if (rc == FV_EIO) {
            if (!failing) fv_warn("%s; asking again", err);
            failing = 1;
            usleep(FV_JSKEYS_FOLLOW_MS * 1000u);
            continue;
        }
        if (failing) fv_info("cluster: following KV bucket %s again", k->cfg->keys_bucket);
        failing = 0;
        if (rc == FV_OK && e.op != FV_KV_PUT && strncmp(e.key, FV_JSKEYS_SUBJ_PREFIX, plen) == 0 &&
            is_pseudonym(e.key + plen))
            erased(k, e.key + plen);
    }
    return NULL;
}

int fv_jskeys_watch(struct fv_jskeys *k, const char *catalog_path, void (*changed)(void *arg),
                    void *arg, char *err, size_t errlen)
{
    int rc = fv_keystore_open(catalog_path, &k->kek, &k->watch_keys, err, errlen);
    if (rc == FV_OK)
        rc = fv_kvfollow_open(k->conn.nc, k->conn.js, k->kv, k->cfg->keys_bucket, &k->follow, err,
                              errlen);
    if (rc) return rc;
    k->changed = changed;
    k->changed_arg = arg;
    if (pthread_create(&k->thread, NULL, watch_main, k) != 0) {
        fv_seterr(err, errlen, "cluster: cannot start the KV watcher's thread");
        return FV_ENOMEM;
    }
    k->thread_started = 1;
    return FV_OK;
}

void fv_jskeys_stats(struct fv_jskeys *k, struct fv_jskeys_stats *out)
{
    out->fetched = __atomic_load_n(&k->stats.fetched, __ATOMIC_RELAXED);
    out->created = __atomic_load_n(&k->stats.created, __ATOMIC_RELAXED);
    out->lost_races = __atomic_load_n(&k->stats.lost_races, __ATOMIC_RELAXED);
    out->erased_seen = __atomic_load_n(&k->stats.erased_seen, __ATOMIC_RELAXED);
}

void fv__jskeys_before_create(struct fv_jskeys *k, void (*fn)(void *), void *arg)
{
    k->before_create = fn;
    k->before_create_arg = arg;
}

void fv_jskeys_unwatch(struct fv_jskeys *k)
{
    if (k == NULL) return;
    /* The thread sees stop within one wait of the follower (FV_JSKEYS_FOLLOW_MS, or a
     * request's timeout); the follower is closed once it is gone. */
    __atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
    if (k->thread_started) pthread_join(k->thread, NULL);
    k->thread_started = 0;
    fv_kvfollow_close(k->follow);
    k->follow = NULL;
    fv_keystore_close(k->watch_keys);
    k->watch_keys = NULL;
}

void fv_jskeys_close(struct fv_jskeys *k)
{
    if (k == NULL) return;
    fv_jskeys_unwatch(k);
    kvStore_Destroy(k->kv);
    fv_natsconn_close(&k->conn);
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}
