/* jsrotate.c - a cluster's master key rotation over the KV buckets (jsrotate.h R1-R6).
 *
 * The buckets are listed as the lease reader does (jslease.c fv_lease_read: the bucket
 * stream's subjects from its leader, no watcher) and each entry's last message is read with
 * js_GetLastMsg, which shows delete and purge markers (KV-Operation header) and gives the
 * revision (the message's stream sequence) that kvStore_Update then expects (R2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>
#include <openssl/crypto.h>

#include "cluster/jskeys.h"
#include "cluster/jsrotate.h"
#include "cluster/natsconn.h"
#include "util/err.h"

#define WAIT_MS  5000 /* each JetStream request */
#define NBUCKETS 4    /* keys, subjects, principals, quotas */

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
};

/* What an entry's last message holds. */
enum state { S_MARKER, S_NEW, S_OLD, S_NONE };

struct bucket {
    const char *name; /* the KV bucket */
    kvStore *kv;
    char stream[48], prefix[48]; /* KV_NAME, $KV.NAME. */
    char (*keys)[96];            /* the round's listing */
    unsigned char *old;          /* per key: found under the old key by the round's check */
    size_t n;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The round's listing of b: every subject of its stream (R1, R4). */
static int list(struct rot *r, struct bucket *b)
{
    char filter[64];
    snprintf(filter, sizeof filter, "%s>", b->prefix);
    size_t plen = strlen(b->prefix);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = WAIT_MS;
    jo.Stream.Info.SubjectsFilter = filter;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, r->conn.js, b->stream, &jo, &jerr);
    if (s != NATS_OK) {
        fv_seterr(r->err, r->errlen, "KV bucket %s: listing its entries: %s (JetStream error %d)",
                  b->name, natsStatus_GetText(s), (int)jerr);
        return FV_EIO;
    }
    const jsStreamStateSubjects *subj = si->State.Subjects;
    free(b->keys);
    free(b->old);
    b->keys = NULL;
    b->old = NULL;
    b->n = 0;
    int count = subj ? subj->Count : 0;
    if (count > 0 && ((b->keys = calloc((size_t)count, sizeof *b->keys)) == NULL ||
                      (b->old = calloc((size_t)count, 1)) == NULL)) {
        jsStreamInfo_Destroy(si);
        return FV_ENOMEM;
    }
    for (int i = 0; i < count; i++) {
        const char *name = subj->List[i].Subject;
        if (name == NULL || strncmp(name, b->prefix, plen) != 0 ||
            strlen(name + plen) >= sizeof b->keys[0])
            continue;
        snprintf(b->keys[b->n++], sizeof b->keys[0], "%s", name + plen);
    }
    jsStreamInfo_Destroy(si);
    return FV_OK;
}

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
    const unsigned char *v = (const unsigned char *)natsMsg_GetData(*m);
    size_t n = (size_t)natsMsg_GetDataLength(*m);
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
    natsMsg_Destroy(*m);
    *m = NULL;
    return FV_ESTATE;
}

static void progress(struct rot *r, const char *what, const struct bucket *b, size_t i,
                     double *last)
{
    double t = now_s();
    if (r->progress == NULL || (i % 1000 != 0 && t - *last < 1.0)) return;
    *last = t;
    fprintf(r->progress, "fleetvault cluster keys-rotate: round %d, %s %s: %zu of %zu entries\n",
            r->round, what, b->name, i, b->n);
    fflush(r->progress);
}

/* R1: every entry of b looked at; *old_left: how many are under the old key. */
static int check(struct rot *r, struct bucket *b, uint64_t *old_left)
{
    double last = now_s();
    for (size_t i = 0; i < b->n; i++) {
        progress(r, "checking", b, i, &last);
        enum state s;
        natsMsg *m = NULL;
        int rc = look(r, b, b->keys[i], &s, &m);
        natsMsg_Destroy(m);
        if (rc) return rc;
        if (r->round == 1) {
            r->st->entries++;
            if (s == S_NEW) r->st->already++;
            if (s == S_MARKER) r->st->markers++;
            if (s == S_OLD) r->st->old_found++;
        }
        b->old[i] = s == S_OLD;
        if (s == S_OLD) (*old_left)++;
    }
    return FV_OK;
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
            r->st->rewrapped++;
            return FV_OK;
        }
        if (st != NATS_ERR) {
            fv_seterr(r->err, r->errlen, "KV bucket %s: writing entry %s: %s", b->name, key,
                      natsStatus_GetText(st));
            return FV_EIO;
        }
        r->st->races++; /* another write won (a new value, a purge): judged again */
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
    int rc =
        fv_natsconn_connect(&r.conn, cfg, "fleetvault-keys-rotate", NULL, WAIT_MS, 1, err, errlen);
    const char *names[NBUCKETS] = {cfg->keys_bucket, cfg->subjects_bucket, cfg->principals_bucket,
                                   cfg->quotas_bucket};
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
            if (have[i] && (rc = list(&r, &bk[i])) == FV_OK) rc = check(&r, &bk[i], &old_left);
        out->rounds = r.round;
        if (rc || old_left == 0 || dry_run) break;
        for (int i = 0; rc == FV_OK && i < NBUCKETS; i++) {
            double last = now_s();
            for (size_t k = 0; rc == FV_OK && have[i] && k < bk[i].n; k++) {
                progress(&r, "re-wrapping", &bk[i], k, &last);
                if (bk[i].old[k]) rc = rewrap_one(&r, &bk[i], bk[i].keys[k]);
            }
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
        free(bk[i].keys);
        free(bk[i].old);
    }
    fv_natsconn_close(&r.conn);
    return rc;
}
