/* jsrotate.c - a cluster's master key rotation over the KV buckets (jsrotate.h R1-R6).
 *
 * A round reads each bucket whole in stream order (kvfollow.h: its state pushed by a watcher,
 * then direct gets; delete and purge markers included, each entry with its revision, the
 * stream sequence that a compare-and-set expects), keeping the last message of each key.
 * The values under the old key are then re-wrapped and published asynchronously, each
 * expecting the revision it was read at (the header kvStore_Update sends), in batches of
 * WRITE_BATCH whose acks are awaited together; a write refused (another write won, R2) or
 * unanswered is done again one at a time, its entry read again with js_GetLastMsg.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "cluster/jskeys.h"
#include "cluster/jsrotate.h"
#include "cluster/kvfollow.h"
#include "cluster/natsconn.h"
#include "util/err.h"
#include "util/map.h"

#define WAIT_MS     5000 /* each JetStream request */
#define NBUCKETS    5    /* keys, subjects, principals, quotas, zones */
#define WRITE_BATCH 256  /* asynchronous writes whose acks are awaited together */
#define KEY_MAX     96

struct rot {
    const struct fv_cluster_cfg *cfg;
    const struct fv_kek *old, *new;
    struct fv_natsconn conn;
    FILE *progress;
    const struct fv_jsrotate_opts *opts;
    struct fv_jsrotate_stats *st;
    int round;
    char *err;
    size_t errlen;
    pthread_mutex_t mu; /* the writes' outcomes, from nats.c's thread */
    char (*again)[160]; /* subjects of writes refused or unanswered: done again (R2) */
    size_t nagain, again_cap;
    int again_oom;
};

/* What an entry's last message holds. */
enum state { S_MARKER, S_NEW, S_OLD, S_NONE };

/* An entry as the round read it: the last message of its key. */
struct ent {
    char key[KEY_MAX];
    uint64_t rev;
    enum state state;
    unsigned char *val; /* S_OLD: the wrapped value (nothing in clear) */
    size_t len;
};

struct bucket {
    const char *name; /* the KV bucket */
    kvStore *kv;
    char stream[48], prefix[48]; /* KV_NAME, $KV.NAME. */
    struct ent *e;               /* the round's entries, in the order first read */
    size_t n, cap;
    struct fv_map at; /* key -> index + 1 in e */
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void ents_free(struct bucket *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->e[i].val);
    free(b->e);
    b->e = NULL;
    b->n = b->cap = 0;
    fv_map_free(&b->at);
}

/* The entry of key in b, made when new (its value dropped when kept). FV_OK or FV_ENOMEM. */
static int ent_of(struct bucket *b, const char *key, struct ent **out)
{
    size_t klen = strlen(key);
    uintptr_t i = (uintptr_t)fv_map_get(&b->at, key, klen);
    if (i == 0) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? 2 * b->cap : 256;
            struct ent *e = realloc(b->e, cap * sizeof *e);
            if (e == NULL) return FV_ENOMEM;
            b->e = e;
            b->cap = cap;
        }
        memset(&b->e[b->n], 0, sizeof b->e[0]);
        memcpy(b->e[b->n].key, key, klen + 1);
        if (fv_map_put(&b->at, b->e[b->n].key, klen, (void *)(uintptr_t)(b->n + 1)) != FV_OK)
            return FV_ENOMEM;
        i = ++b->n;
    }
    *out = &b->e[i - 1];
    free((*out)->val);
    (*out)->val = NULL;
    (*out)->len = 0;
    return FV_OK;
}

static int judge(struct rot *r, struct bucket *b, const char *key, const unsigned char *v, size_t n,
                 enum state *state);

/* key's last message: *state, and for a value *m (the caller destroys it). FV_OK, FV_EIO,
 * FV_ESTATE (R1: neither key, not our format, or under the old key and not opening). */
static int look(struct rot *r, struct bucket *b, const char *key, enum state *state, natsMsg **m)
{
    char subj[160];
    snprintf(subj, sizeof subj, "%s%s", b->prefix, key);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = WAIT_MS;
    jsErrCode jerr = 0;
    *m = NULL;
    natsStatus s = js_GetLastMsg(m, r->conn.js, b->stream, subj, &jo, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        *state = S_NONE; /* removed meanwhile (a stream purge): nothing to do */
        return FV_OK;
    }
    if (s != NATS_OK) {
        fv_seterr(r->err, r->errlen, "KV bucket %s: reading entry %s: %s (JetStream error %d)",
                  b->name, key, natsStatus_GetText(s), (int)jerr);
        return FV_EIO;
    }
    const char *op = NULL;
    if (natsMsgHeader_Get(*m, "KV-Operation", &op) == NATS_OK && op &&
        (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0)) {
        natsMsg_Destroy(*m);
        *m = NULL;
        *state = S_MARKER; /* R3 */
        return FV_OK;
    }
    int rc = judge(r, b, key, (const unsigned char *)natsMsg_GetData(*m),
                   (size_t)natsMsg_GetDataLength(*m), state);
    if (rc) {
        natsMsg_Destroy(*m);
        *m = NULL;
    }
    return rc;
}

/* A value of key: under the new key (*state S_NEW) or the old one, opening with it (S_OLD);
 * anything else refuses the round (R1): FV_ESTATE with err naming the entry. */
static int judge(struct rot *r, struct bucket *b, const char *key, const unsigned char *v, size_t n,
                 enum state *state)
{
    char id[17];
    if (fv_jskeys_value_kek(v, n, id) != FV_OK) {
        fv_seterr(r->err, r->errlen,
                  "KV bucket %s, entry %s: not a fleetvault value (%zu bytes); nothing was "
                  "changed by this round",
                  b->name, key, n);
        goto refuse;
    }
    if (strcmp(id, r->new->id) == 0) {
        *state = S_NEW;
        return FV_OK;
    }
    if (strcmp(id, r->old->id) != 0) {
        fv_seterr(r->err, r->errlen,
                  "KV bucket %s, entry %s: wrapped by master key %s, which is neither the old "
                  "key given (%s, --key-file) nor the new one (%s): wrong --key-file? nothing "
                  "was changed by this round",
                  b->name, key, id, r->old->id, r->new->id);
        goto refuse;
    }
    /* under the old key: it must open with it (R1) */
    struct fv_buf pt = {0};
    char e2[256];
    int rc = fv_jskeys_unwrap(r->old, key, n > 5 ? (char)v[5] : '?', v, n, &pt, e2, sizeof e2);
    if (pt.data) OPENSSL_cleanse(pt.data, pt.cap);
    fv_buf_free(&pt);
    if (rc) {
        fv_seterr(r->err, r->errlen, "KV bucket %s: %s; nothing was changed by this round", b->name,
                  e2);
        goto refuse;
    }
    *state = S_OLD;
    return FV_OK;
refuse:
    return FV_ESTATE;
}

static void progress(struct rot *r, const char *what, const struct bucket *b, size_t i, size_t of,
                     double *last)
{
    double t = now_s();
    if (r->progress == NULL || (i % 1000 != 0 && t - *last < 1.0)) return;
    *last = t;
    if (of)
        fprintf(r->progress, "fleetvault cluster keys-rotate: round %d, %s %s: %zu of %zu\n",
                r->round, what, b->name, i, of);
    else
        fprintf(r->progress, "fleetvault cluster keys-rotate: round %d, %s %s: %zu entries\n",
                r->round, what, b->name, i);
    fflush(r->progress);
}

/* R1: b read whole (the last message of every key) and each value judged; *old_left: how
 * many are under the old key. */
static int check(struct rot *r, struct bucket *b, uint64_t *old_left)
{
    ents_free(b);
    struct fv_kvfollow *f = NULL;
    char e2[256] = "";
    int rc = fv_kvfollow_open(r->conn.nc, r->conn.js, b->kv, b->name, &f, e2, sizeof e2);
    double last = now_s();
    for (size_t read = 0; rc == FV_OK; read++) {
        progress(r, "reading", b, read, 0, &last);
        struct fv_kventry e;
        rc = fv_kvfollow_next(f, &e, 0, e2, sizeof e2);
        if (rc == FV_ENOENT) {
            rc = FV_OK;
            break;
        }
        if (rc != FV_OK || strlen(e.key) >= KEY_MAX) continue; /* (no key of ours is so long) */
        struct ent *x;
        rc = ent_of(b, e.key, &x);
        if (rc) break;
        x->rev = e.revision;
        x->state = S_MARKER; /* R3 */
        if (e.op == FV_KV_PUT) rc = judge(r, b, x->key, e.value, e.len, &x->state);
        if (rc == FV_OK && x->state == S_OLD) {
            if ((x->val = malloc(e.len ? e.len : 1)) == NULL)
                rc = FV_ENOMEM;
            else
                memcpy(x->val, e.value, e.len);
            x->len = e.len;
        }
    }
    fv_kvfollow_close(f);
    if (rc == FV_EIO)
        fv_seterr(r->err, r->errlen, "KV bucket %s: reading its entries: %s", b->name, e2);
    for (size_t i = 0; rc == FV_OK && i < b->n; i++) {
        enum state s = b->e[i].state;
        if (r->round == 1) {
            r->st->entries++;
            if (s == S_NEW) r->st->already++;
            if (s == S_MARKER) r->st->markers++;
            if (s == S_OLD) r->st->old_found++;
        }
        if (s == S_OLD) (*old_left)++;
    }
    return rc;
}

/* Adds subj to the writes done again (mu held). */
static void again_add(struct rot *r, const char *subj)
{
    if (r->nagain == r->again_cap) {
        size_t cap = r->again_cap ? 2 * r->again_cap : 64;
        char(*a)[160] = realloc(r->again, cap * sizeof *a);
        if (a == NULL) {
            r->again_oom = 1;
            return;
        }
        r->again = a;
        r->again_cap = cap;
    }
    snprintf(r->again[r->nagain++], sizeof r->again[0], "%s", subj);
}

/* nats.c's thread: an asynchronous write's outcome (jsPubAckHandler). */
static void write_done(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
    (void)js;
    struct rot *r = arg;
    pthread_mutex_lock(&r->mu);
    if (pa) {
        r->st->rewrapped++;
    } else {
        if (pae && pae->ErrCode == JSStreamWrongLastSequenceErr) r->st->races++;
        again_add(r, natsMsg_GetSubject(m));
    }
    pthread_mutex_unlock(&r->mu);
    natsMsg_Destroy(m);
}

static int rewrap_one(struct rot *r, struct bucket *b, const char *key);

/* The batch's acks awaited (up to WAIT_MS); writes refused or unanswered done again one at
 * a time (R2). */
static int settle(struct rot *r, struct bucket *b)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = WAIT_MS;
    if (js_PublishAsyncComplete(r->conn.js, &po) != NATS_OK) {
        natsMsgList pl = {0};
        if (js_PublishAsyncGetPendingList(&pl, r->conn.js) == NATS_OK) {
            pthread_mutex_lock(&r->mu);
            for (int i = 0; i < pl.Count; i++)
                again_add(r, natsMsg_GetSubject(pl.Msgs[i]));
            pthread_mutex_unlock(&r->mu);
            natsMsgList_Destroy(&pl);
        }
    }
    pthread_mutex_lock(&r->mu);
    int oom = r->again_oom;
    size_t n = r->nagain;
    char(*again)[160] = r->again;
    r->again = NULL;
    r->nagain = r->again_cap = 0;
    r->again_oom = 0;
    pthread_mutex_unlock(&r->mu);
    int rc = oom ? FV_ENOMEM : FV_OK;
    size_t plen = strlen(b->prefix);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        if (strncmp(again[i], b->prefix, plen) == 0) rc = rewrap_one(r, b, again[i] + plen);
    free(again);
    return rc;
}

/* R2: every value of b the round found under the old key re-wrapped, asynchronously in
 * batches, each write expecting the revision it was read at. */
static int rewrap_all(struct rot *r, struct bucket *b)
{
    double last = now_s();
    int rc = FV_OK, inflight = 0;
    for (size_t k = 0; rc == FV_OK && k < b->n; k++) {
        progress(r, "re-wrapping", b, k, b->n, &last);
        struct ent *x = &b->e[k];
        if (x->state != S_OLD) continue;
        struct fv_buf v = {0};
        char e2[256], subj[160];
        rc = fv_jskeys_rewrap(r->old, r->new, x->key, x->val, x->len, &v, e2, sizeof e2);
        if (rc) fv_seterr(r->err, r->errlen, "KV bucket %s: %s", b->name, e2);
        if (rc == FV_OK && r->opts->before_write &&
            (rc = r->opts->before_write(r->opts->before_write_arg, b->name, x->key)) != FV_OK)
            fv_seterr(r->err, r->errlen, "KV bucket %s, entry %s: interrupted (%s)", b->name,
                      x->key, fv_strerror(rc));
        natsMsg *m = NULL;
        snprintf(subj, sizeof subj, "%s%s", b->prefix, x->key);
        if (rc == FV_OK &&
            natsMsg_Create(&m, subj, NULL, (const char *)v.data, (int)v.len) != NATS_OK)
            rc = FV_ENOMEM;
        fv_buf_free(&v); /* a value: wrapped, nothing in clear */
        if (rc == FV_OK) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.ExpectLastSubjectSeq = x->rev;
            natsStatus st = js_PublishMsgAsync(r->conn.js, &m, &po);
            if (st != NATS_OK) {
                fv_seterr(r->err, r->errlen, "KV bucket %s: writing entry %s: %s", b->name, x->key,
                          natsStatus_GetText(st));
                rc = FV_EIO;
            }
        }
        natsMsg_Destroy(m);
        if (rc == FV_OK && ++inflight == WRITE_BATCH) {
            inflight = 0;
            rc = settle(r, b);
        }
    }
    int rc2 = settle(r, b); /* also after a failure: what was written is counted */
    return rc ? rc : rc2;
}

/* R2: entry key re-wrapped if it is under the old key, with compare-and-set. */
static int rewrap_one(struct rot *r, struct bucket *b, const char *key)
{
    for (int t = 0; t < FV_JSROTATE_TRIES; t++) {
        enum state s;
        natsMsg *m = NULL;
        int rc = look(r, b, key, &s, &m);
        if (rc || s != S_OLD) {
            natsMsg_Destroy(m);
            return rc; /* R3: a marker, under the new key, gone: left alone */
        }
        struct fv_buf v = {0};
        char e2[256];
        rc = fv_jskeys_rewrap(r->old, r->new, key, (const unsigned char *)natsMsg_GetData(m),
                              (size_t)natsMsg_GetDataLength(m), &v, e2, sizeof e2);
        uint64_t rev = natsMsg_GetSequence(m), nrev = 0;
        natsMsg_Destroy(m);
        if (rc) {
            fv_buf_free(&v);
            fv_seterr(r->err, r->errlen, "KV bucket %s: %s", b->name, e2);
            return rc;
        }
        if (r->opts->before_write &&
            (rc = r->opts->before_write(r->opts->before_write_arg, b->name, key)) != FV_OK) {
            fv_buf_free(&v);
            fv_seterr(r->err, r->errlen, "KV bucket %s, entry %s: interrupted (%s)", b->name, key,
                      fv_strerror(rc));
            return rc;
        }
        natsStatus st = kvStore_Update(&nrev, b->kv, key, v.data, (int)v.len, rev);
        fv_buf_free(&v); /* a value: wrapped, nothing in clear */
        if (st == NATS_OK) {
            pthread_mutex_lock(&r->mu); /* (a late asynchronous ack may count too) */
            r->st->rewrapped++;
            pthread_mutex_unlock(&r->mu);
            return FV_OK;
        }
        if (st != NATS_ERR) {
            fv_seterr(r->err, r->errlen, "KV bucket %s: writing entry %s: %s", b->name, key,
                      natsStatus_GetText(st));
            return FV_EIO;
        }
        pthread_mutex_lock(&r->mu);
        r->st->races++; /* another write won (a new value, a purge): judged again */
        pthread_mutex_unlock(&r->mu);
    }
    fv_seterr(r->err, r->errlen,
              "KV bucket %s, entry %s: changed by other nodes at each of %d tries; run the "
              "rotation again",
              b->name, key, FV_JSROTATE_TRIES);
    return FV_EAGAIN;
}

static int bind(struct rot *r, struct bucket *b, const char *name)
{
    memset(b, 0, sizeof *b);
    b->name = name;
    snprintf(b->stream, sizeof b->stream, "KV_%s", name);
    snprintf(b->prefix, sizeof b->prefix, "$KV.%s.", name);
    natsStatus s = js_KeyValue(&b->kv, r->conn.js, name);
    if (s == NATS_NOT_FOUND) return FV_ENOENT; /* never made: nothing to rotate */
    if (s != NATS_OK) {
        fv_seterr(r->err, r->errlen, "KV bucket %s: %s", name, natsStatus_GetText(s));
        return FV_EIO;
    }
    return FV_OK;
}

int fv_jsrotate_run(const struct fv_cluster_cfg *cfg, const struct fv_kek *old_kek,
                    const struct fv_kek *new_kek, const struct fv_jsrotate_opts *opts,
                    struct fv_jsrotate_stats *out, char *err, size_t errlen)
{
    static const struct fv_jsrotate_opts none;
    if (opts == NULL) opts = &none;
    int dry_run = opts->dry_run;
    FILE *progress_to = opts->progress;
    memset(out, 0, sizeof *out);
    if (strcmp(old_kek->id, new_kek->id) == 0) {
        fv_seterr(err, errlen, "the old and the new master key are the same key (%s)", old_kek->id);
        return FV_EINVAL;
    }
    struct rot r = {.cfg = cfg,
                    .old = old_kek,
                    .new = new_kek,
                    .progress = progress_to,
                    .opts = opts,
                    .st = out,
                    .err = err,
                    .errlen = errlen};
    struct bucket bk[NBUCKETS];
    memset(bk, 0, sizeof bk);
    pthread_mutex_init(&r.mu, NULL);
    struct fv_js_handlers h = {.ack = write_done, .arg = &r, .max_pending = 4 * WRITE_BATCH};
    int rc =
        fv_natsconn_connect(&r.conn, cfg, "fleetvault-keys-rotate", &h, WAIT_MS, 1, err, errlen);
    const char *names[NBUCKETS] = {cfg->keys_bucket, cfg->subjects_bucket, cfg->principals_bucket,
                                   cfg->quotas_bucket, cfg->zones_bucket};
    int have[NBUCKETS] = {0};
    for (int i = 0; rc == FV_OK && i < NBUCKETS; i++) {
        if (names[i][0] == '\0') continue; /* not configured: nothing to rotate */
        rc = bind(&r, &bk[i], names[i]);
        have[i] = rc == FV_OK;
        if (rc == FV_ENOENT) rc = FV_OK;
    }
    uint64_t old_left = 1;
    for (r.round = 1; rc == FV_OK && old_left && r.round <= FV_JSROTATE_ROUNDS; r.round++) {
        old_left = 0;
        /* R1: both buckets read whole before anything of the round is written */
        for (int i = 0; rc == FV_OK && i < NBUCKETS; i++)
            if (have[i]) rc = check(&r, &bk[i], &old_left);
        out->rounds = r.round;
        if (rc || old_left == 0 || dry_run) break;
        for (int i = 0; rc == FV_OK && i < NBUCKETS; i++) {
            if (have[i]) rc = rewrap_all(&r, &bk[i]);
            if (rc == FV_OK && have[i] && progress_to)
                fprintf(progress_to,
                        "fleetvault cluster keys-rotate: round %d, %s: %zu entries done\n", r.round,
                        bk[i].name, bk[i].n);
        }
    }
    if (rc == FV_OK && old_left && !dry_run) {
        fv_seterr(err, errlen,
                  "%llu values are still wrapped by the old master key %s after %d rounds: a "
                  "node still on it keeps writing them; restart every node with the new key "
                  "(--key-file) and the old (--previous-key-file), then run this again",
                  (unsigned long long)old_left, old_kek->id, FV_JSROTATE_ROUNDS);
        rc = FV_ESTATE;
    }
    for (int i = 0; i < NBUCKETS; i++) {
        kvStore_Destroy(bk[i].kv);
        ents_free(&bk[i]);
    }
    fv_natsconn_close(&r.conn); /* no ack handler runs after it */
    free(r.again);
    pthread_mutex_destroy(&r.mu);
    return rc;
}
