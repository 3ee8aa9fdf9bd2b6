/* kvfollow.c - following a NATS KV bucket's changes without a consumer (kvfollow.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/kvfollow.h"
#include "util/clock.h"
#include "util/err.h"

#define HINT_RETRY_MS 20 /* after a wake-up that found nothing yet: ask again this soon */
#define HINT_RETRIES  5  /* ... this many times (the write not yet stored on the replica) */

struct fv_kvfollow {
    natsConnection *nc;
    jsCtx *js;
    char stream[72]; /* KV_BUCKET */
    char filter[80]; /* $KV.BUCKET.> */
    size_t plen;     /* strlen("$KV.BUCKET.") */
    natsSubscription *hint;
    kvStore *kv;          /* F4: NULL, or the bucket for the first read of its state */
    kvWatcher *bulk;      /* F4's watcher while it reads */
    int bulk_done;        /* F4 over (ended, failed, or never) */
    kvEntry *entry;       /* the last entry F4 returned (freed by the next call) */
    natsMsg *msg;         /* the last message returned (freed by the next call) */
    uint64_t last;        /* its stream sequence */
    int retries;          /* HINT_RETRIES after a wake-up, counted down by empty gets */
    uint64_t gets, hints; /* atomic */
};

int fv_kvfollow_open(natsConnection *nc, jsCtx *js, kvStore *kv, const char *bucket,
                     struct fv_kvfollow **out, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_kvfollow *f = calloc(1, sizeof *f);
    if (f == NULL) return FV_ENOMEM;
    f->nc = nc;
    f->js = js;
    f->kv = kv;
    f->bulk_done = kv == NULL;
    snprintf(f->stream, sizeof f->stream, "KV_%s", bucket);
    snprintf(f->filter, sizeof f->filter, "$KV.%s.>", bucket);
    f->plen = strlen(f->filter) - 1;
    natsStatus st = natsConnection_SubscribeSync(&f->hint, nc, f->filter);
    if (st != NATS_OK) {
        fv_seterr(err, errlen, "cluster: following KV bucket %s: %s", bucket,
                  natsStatus_GetText(st));
        free(f);
        return FV_EIO;
    }
    *out = f;
    return FV_OK;
}

static enum fv_kvop op_of(natsMsg *m)
{
    const char *op = NULL;
    if (natsMsgHeader_Get(m, "KV-Operation", &op) != NATS_OK || op == NULL) return FV_KV_PUT;
    if (strcmp(op, "DEL") == 0) return FV_KV_DEL;
    if (strcmp(op, "PURGE") == 0) return FV_KV_PURGE;
    return FV_KV_PUT;
}

static void release(struct fv_kvfollow *f)
{
    natsMsg_Destroy(f->msg);
    f->msg = NULL;
    kvEntry_Destroy(f->entry);
    f->entry = NULL;
}

static void bulk_end(struct fv_kvfollow *f)
{
    kvWatcher_Destroy(f->bulk);
    f->bulk = NULL;
    f->bulk_done = 1;
}

/* F4: the next entry of the bucket's state from a watcher; FV_ENOENT once it is over (the
 * end of the state, or any failure: direct gets go on from the last entry it gave). */
static int bulk_next(struct fv_kvfollow *f, struct fv_kventry *e)
{
    release(f);
    if (f->bulk == NULL) {
        kvWatchOptions wo;
        kvWatchOptions_Init(&wo);
        wo.Timeout = FV_KVFOLLOW_REQUEST_MS;
        if (kvStore_WatchAll(&f->bulk, f->kv, &wo) != NATS_OK) {
            f->bulk = NULL;
            bulk_end(f);
            return FV_ENOENT;
        }
    }
    kvEntry *ke = NULL;
    if (kvWatcher_Next(&ke, f->bulk, FV_KVFOLLOW_REQUEST_MS) != NATS_OK || ke == NULL ||
        kvEntry_Revision(ke) <= f->last || kvEntry_Key(ke) == NULL) {
        kvEntry_Destroy(ke);
        bulk_end(f);
        return FV_ENOENT;
    }
    f->entry = ke;
    f->last = kvEntry_Revision(ke);
    kvOperation op = kvEntry_Operation(ke);
    e->key = kvEntry_Key(ke);
    e->op = op == kvOp_Delete ? FV_KV_DEL : op == kvOp_Purge ? FV_KV_PURGE : FV_KV_PUT;
    e->len = (size_t)kvEntry_ValueLen(ke);
    e->value = e->len ? (const unsigned char *)kvEntry_Value(ke) : NULL;
    e->revision = f->last;
    return FV_OK;
}

/* F1: one direct get of the first message after the last returned. */
static int get_next(struct fv_kvfollow *f, struct fv_kventry *e, char *err, size_t errlen)
{
    release(f);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = FV_KVFOLLOW_REQUEST_MS;
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.Sequence = f->last + 1;
    dg.NextBySubject = f->filter;
    __atomic_add_fetch(&f->gets, 1, __ATOMIC_RELAXED);
    natsMsg *m = NULL;
    natsStatus st = js_DirectGetMsg(&m, f->js, f->stream, &jo, &dg);
    if (st == NATS_NOT_FOUND) return FV_ENOENT;
    if (st != NATS_OK) {
        const char *why = nats_GetLastError(NULL);
        fv_seterr(err, errlen, "cluster: reading KV bucket %s after sequence %llu: %s",
                  f->stream + 3, (unsigned long long)f->last,
                  why && why[0] ? why : natsStatus_GetText(st));
        return FV_EIO;
    }
    const char *subj = natsMsg_GetSubject(m);
    uint64_t seq = natsMsg_GetSequence(m);
    if (subj == NULL || strncmp(subj, f->filter, f->plen) != 0 || subj[f->plen] == '\0' ||
        seq <= f->last) {
        fv_seterr(err, errlen,
                  "cluster: reading KV bucket %s after sequence %llu: an answer for %s at "
                  "sequence %llu",
                  f->stream + 3, (unsigned long long)f->last, subj ? subj : "(none)",
                  (unsigned long long)seq);
        natsMsg_Destroy(m);
        return FV_EIO;
    }
    f->msg = m;
    f->last = seq;
    e->key = subj + f->plen;
    e->op = op_of(m);
    e->len = (size_t)natsMsg_GetDataLength(m);
    e->value = e->len ? (const unsigned char *)natsMsg_GetData(m) : NULL;
    e->revision = seq;
    return FV_OK;
}

/* F3: waits up to ms for a wake-up; 1 when one came (every one queued is taken: one get
 * reads past all of them). */
static int wait_hint(struct fv_kvfollow *f, int64_t ms)
{
    natsMsg *m = NULL;
    if (ms < 1) ms = 1;
    if (natsSubscription_NextMsg(&m, f->hint, ms) != NATS_OK) return 0;
    natsMsg_Destroy(m);
    int queued = 0;
    while (natsSubscription_GetPending(f->hint, &queued, NULL) == NATS_OK && queued > 0) {
        m = NULL;
        if (natsSubscription_NextMsg(&m, f->hint, 1) != NATS_OK) break;
        natsMsg_Destroy(m);
    }
    __atomic_add_fetch(&f->hints, 1, __ATOMIC_RELAXED);
    return 1;
}

int fv_kvfollow_next(struct fv_kvfollow *f, struct fv_kventry *e, int64_t wait_ms, char *err,
                     size_t errlen)
{
    if (!f->bulk_done && bulk_next(f, e) == FV_OK) return FV_OK;
    uint64_t deadline = fv_mono_ns() + (uint64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000u;
    for (;;) {
        int rc = get_next(f, e, err, errlen);
        if (rc != FV_ENOENT) return rc;
        uint64_t now = fv_mono_ns();
        if (now >= deadline) return FV_ENOENT;
        int64_t left = (int64_t)((deadline - now) / 1000000u);
        if (f->retries > 0 && left > HINT_RETRY_MS) left = HINT_RETRY_MS;
        if (wait_hint(f, left))
            f->retries = HINT_RETRIES;
        else if (f->retries > 0)
            f->retries--;
        else
            return FV_ENOENT; /* waited it all */
    }
}

uint64_t fv_kvfollow_position(const struct fv_kvfollow *f)
{
    return f->last;
}

void fv_kvfollow_counts(const struct fv_kvfollow *f, uint64_t *gets, uint64_t *hints)
{
    *gets = __atomic_load_n(&f->gets, __ATOMIC_RELAXED);
    *hints = __atomic_load_n(&f->hints, __ATOMIC_RELAXED);
}

void fv_kvfollow_close(struct fv_kvfollow *f)
{
    if (f == NULL) return;
    release(f);
    kvWatcher_Destroy(f->bulk);
    natsSubscription_Unsubscribe(f->hint);
    natsSubscription_Destroy(f->hint);
    free(f);
}
