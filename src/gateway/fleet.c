/* fleet.c - see fleet.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/fleet.h"
#include "util/clock.h"
#include "util/err.h"

void fv_fleet_init(struct fv_fleet *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
}

/* The lock is logically const-free: readers of a const fleet take it too. */
void fv_fleet_lock(const struct fv_fleet *f)
{
    pthread_mutex_lock((pthread_mutex_t *)&f->mu);
}

void fv_fleet_unlock(const struct fv_fleet *f)
{
    pthread_mutex_unlock((pthread_mutex_t *)&f->mu);
}

struct fv_device *fv_fleet_find(const struct fv_fleet *f, const char *id)
{
    fv_fleet_lock(f);
    struct fv_device *d = fv_map_get(&f->devices, id, strlen(id));
    fv_fleet_unlock(f);
    return d;
}

struct fv_device *fv_fleet_device(struct fv_fleet *f, const char *id, const char *client_type)
{
    struct fv_device *d = fv_fleet_find(f, id);
    if (d) return d;
    if (strlen(id) >= sizeof d->id) return NULL;
    d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    strcpy(d->id, id);
    snprintf(d->client_type, sizeof d->client_type, "%s", client_type ? client_type : "");
    fv_fleet_lock(f);
    int rc = fv_map_put(&f->devices, id, strlen(id), d);
    fv_fleet_unlock(f);
    if (rc != FV_OK) {
        free(d);
        return NULL;
    }
    return d;
}

size_t fv_fleet_count(const struct fv_fleet *f)
{
    fv_fleet_lock(f);
    size_t n = f->devices.n;
    fv_fleet_unlock(f);
    return n;
}

int fv_fleet_list(const struct fv_fleet *f, struct fv_device ***out, size_t *n)
{
    fv_fleet_lock(f);
    struct fv_device **arr = malloc((f->devices.n + 1) * sizeof *arr);
    size_t k = 0;
    for (size_t i = 0; arr && i < f->devices.cap; i++)
        if (f->devices.slots[i].hash && f->devices.slots[i].val) arr[k++] = f->devices.slots[i].val;
    fv_fleet_unlock(f);
    *out = arr;
    *n = k;
    return arr ? FV_OK : FV_ENOMEM;
}

struct fv_bucket *fv_device_bucket(struct fv_device *d, int rule, int nrules)
{
    if (rule < 0 || rule >= nrules || nrules > FV_RATE_MAX_RULES) return NULL;
    if ((uint32_t)nrules > d->nbuckets) {
        struct fv_bucket *b = realloc(d->buckets, (size_t)nrules * sizeof *b);
        if (b == NULL) return NULL;
        memset(b + d->nbuckets, 0, (nrules - d->nbuckets) * sizeof *b); /* full (last_ns 0) */
        d->buckets = b;
        d->nbuckets = (uint32_t)nrules;
    }
    return &d->buckets[rule];
}

/* ---- txid window -------------------------------------------------------------------- */

/* The set slot holding h, or the empty slot where it would go. */
static uint32_t set_slot(const struct fv_txwindow *w, uint64_t h)
{
    uint32_t mask = w->set_cap - 1;
    uint32_t i = (uint32_t)h & mask;
    while (w->set[i] && w->ring[w->set[i] - 1] != h)
        i = (i + 1) & mask;
    return i;
}

static int set_has(const struct fv_txwindow *w, uint64_t h)
{
    return w->set_cap && w->set[set_slot(w, h)] != 0;
}

/* Removes h (backward-shift deletion: no tombstones); its ring entry is still in place. */
static void set_remove(struct fv_txwindow *w, uint64_t h)
{
    uint32_t mask = w->set_cap - 1, i = set_slot(w, h);
    if (w->set[i] == 0) return;
    for (uint32_t j = (i + 1) & mask; w->set[j]; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)w->ring[w->set[j] - 1] & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            w->set[i] = w->set[j];
            i = j;
        }
    }
    w->set[i] = 0;
}

int fv_device_has_txid(const struct fv_device *d, const void *txid, size_t len)
{
    return set_has(&d->recent, fv_hash64(txid, len));
}

/* Grows ring and set together, doubling, up to the window; the ring is laid out from 0. */
static int window_grow(struct fv_txwindow *w)
{
    uint32_t ncap = w->ring_cap ? w->ring_cap * 2 : 8;
    uint64_t *ring = malloc(ncap * sizeof *ring);
    uint16_t *set = calloc(ncap * 2, sizeof *set);
    if (ring == NULL || set == NULL) {
        free(ring);
        free(set);
        return FV_ENOMEM;
    }
    for (uint32_t k = 0; k < w->ring_n; k++)
        ring[k] = w->ring[(w->ring_head + k) % w->ring_cap];
    free(w->ring);
    free(w->set);
    w->ring = ring;
    w->set = set;
    w->ring_cap = ncap;
    w->set_cap = ncap * 2;
    w->ring_head = 0;
    for (uint32_t k = 0; k < w->ring_n; k++)
        w->set[set_slot(w, ring[k])] = (uint16_t)(k + 1);
    return FV_OK;
}

int fv_device_add_txid(struct fv_device *d, const void *txid, size_t len)
{
    struct fv_txwindow *w = &d->recent;
    uint64_t h = fv_hash64(txid, len);
    if (set_has(w, h)) return FV_OK;
    if (w->ring_n == w->ring_cap) {
        if (w->ring_cap < FV_DEDUP_WINDOW) {
            if (window_grow(w)) return FV_ENOMEM;
        } else {
            set_remove(w, w->ring[w->ring_head]);
            w->ring_head = (w->ring_head + 1) % w->ring_cap;
            w->ring_n--;
        }
    }
    uint32_t at = (w->ring_head + w->ring_n) % w->ring_cap;
    w->ring[at] = h;
    w->ring_n++;
    w->set[set_slot(w, h)] = (uint16_t)(at + 1);
    return FV_OK;
}

/* ---- latest state ------------------------------------------------------------------- */

/* The index slot of field: where it is, or the empty slot where it would go. */
static uint32_t sigidx_slot(const struct fv_device *d, uint32_t field)
{
    uint32_t mask = d->capsigidx - 1;
    uint32_t i = (uint32_t)((field * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (d->sigidx[i] && d->signals[d->sigidx[i] - 1].field != field)
        i = (i + 1) & mask;
    return i;
}

/* Makes the index hold ncap slots (a power of two), rebuilt from signals. */
static int sigidx_resize(struct fv_device *d, uint32_t ncap)
{
    uint32_t *t = calloc(ncap, sizeof *t);
    if (t == NULL) return FV_ENOMEM;
    free(d->sigidx);
    d->sigidx = t;
    d->capsigidx = ncap;
    for (uint32_t k = 0; k < d->nsignals; k++)
        d->sigidx[sigidx_slot(d, d->signals[k].field)] = k + 1;
    return FV_OK;
}

/* The state of field; create: add it if missing, room made for `more` signals beyond it when
 * the array must grow for the first time (the rest of the record: the first record sizes it
 * exactly), else growing by half. */
static struct fv_signal_state *signal_slot(struct fv_device *d, uint32_t field, int create,
                                           uint32_t more)
{
    if (d->capsigidx) {
        uint32_t at = d->sigidx[sigidx_slot(d, field)];
        if (at) return &d->signals[at - 1];
    }
    if (!create) return NULL;
    if (d->nsignals == UINT32_MAX / 4) return NULL;
    if (d->nsignals == d->capsignals) {
        uint64_t ncap = d->capsignals ? d->capsignals + d->capsignals / 2 + 1 : 1ull + more;
        if (ncap > UINT32_MAX / 4) ncap = UINT32_MAX / 4;
        struct fv_signal_state *n = realloc(d->signals, ncap * sizeof *n);
        if (n == NULL) return NULL;
        d->signals = n;
        d->capsignals = (uint32_t)ncap;
    }
    if ((uint64_t)(d->nsignals + 1) * 4 > (uint64_t)d->capsigidx * 3) { /* load <= 3/4 */
        uint32_t ncap = d->capsigidx ? d->capsigidx * 2 : 8;
        while ((uint64_t)(d->nsignals + 1) * 4 > (uint64_t)ncap * 3)
            ncap *= 2;
        if (sigidx_resize(d, ncap) != FV_OK) return NULL;
    }
    struct fv_signal_state *s = &d->signals[d->nsignals++];
    memset(s, 0, sizeof *s);
    s->field = field;
    d->sigidx[sigidx_slot(d, field)] = d->nsignals;
    return s;
}

const struct fv_signal_state *fv_device_signal(const struct fv_device *d, uint32_t field)
{
    return signal_slot((struct fv_device *)d, field, 0, 0);
}

int fv_device_apply(struct fv_device *d, uint64_t record_ms, uint64_t received_ms,
                    const struct fv_vrecord *v)
{
    d->records++;
    if (d->first_ms == 0 || record_ms < d->first_ms) d->first_ms = record_ms;
    if (record_ms > d->last_ms) d->last_ms = record_ms;
    if (received_ms > d->last_received_ms) d->last_received_ms = received_ms;
    if (v == NULL) return FV_OK;
    d->datums += v->n;
    uint64_t server_ms = received_ms ? received_ms : fv_now_ms();
    if (record_ms > server_ms + FV_FLEET_FUTURE_MS) return FV_OK; /* stored, never "latest" */
    for (size_t i = 0; i < v->n; i++) {
        struct fv_signal_state *s = signal_slot(d, v->data[i].field, 1, (uint32_t)(v->n - i - 1));
        if (s == NULL) return FV_ENOMEM;
        if (s->time_ms > record_ms)
            continue; /* an older record arriving late does not roll state back */
        struct fv_value copy;
        if (fv_value_copy(&copy, &v->data[i].value)) return FV_ENOMEM;
        fv_value_clear(&s->value);
        s->value = copy;
        s->time_ms = record_ms;
    }
    return FV_OK;
}

void fv_fleet_free(struct fv_fleet *f)
{
    for (size_t i = 0; i < f->devices.cap; i++) {
        struct fv_device *d = f->devices.slots[i].val;
        if (f->devices.slots[i].hash == 0 || d == NULL) continue;
        for (uint32_t k = 0; k < d->nsignals; k++)
            fv_value_clear(&d->signals[k].value);
        free(d->signals);
        free(d->sigidx);
        free(d->buckets);
        free(d->recent.set);
        free(d->recent.ring);
        free(d);
    }
    fv_map_free(&f->devices);
    pthread_mutex_destroy(&f->mu);
}

void fv_device_wipe(struct fv_device *d)
{
    for (uint32_t i = 0; i < d->nsignals; i++)
        fv_value_clear(&d->signals[i].value);
    d->nsignals = 0;
    free(d->sigidx);
    d->sigidx = NULL;
    d->capsigidx = 0;
    d->records = d->datums = d->duplicates = d->rate_limited = 0;
    d->first_ms = d->last_ms = 0;
}
