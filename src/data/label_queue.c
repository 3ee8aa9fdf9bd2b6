/*
 * label_queue.c - the labelers' leases (label_queue.h, rules L1-L4): a small array of
 * (labeler, clip, until); expired entries are reused. A handful of labelers at a time, so a
 * linear search is the right size. The API thread only.
 */
#include "data/label_queue.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct lease {
    char labeler[FV_LABEL_NAME_MAX + 1];
    char clip[FV_LABEL_NAME_MAX + 1];
    int64_t until; /* 0: free slot */
};

struct fv_label_queue {
    int64_t lease_ms;
    struct lease *l;
    size_t n, cap;
};

int fv_label_queue_new(int64_t lease_ms, struct fv_label_queue **out)
{
    *out = NULL;
    if (lease_ms <= 0) return FV_EINVAL;
    struct fv_label_queue *q = calloc(1, sizeof *q);
    if (q == NULL) return FV_ENOMEM;
    q->lease_ms = lease_ms;
    *out = q;
    return FV_OK;
}

void fv_label_queue_free(struct fv_label_queue *q)
{
    if (q == NULL) return;
    free(q->l);
    free(q);
}

int64_t fv_label_queue_lease_ms(const struct fv_label_queue *q)
{
    return q->lease_ms;
}

static int live(const struct lease *e, int64_t now)
{
    return e->until != 0 && now < e->until;
}

static struct lease *by_labeler(const struct fv_label_queue *q, const char *labeler, int64_t now)
{
    for (size_t i = 0; i < q->n; i++)
        if (live(&q->l[i], now) && strcmp(q->l[i].labeler, labeler) == 0) return &q->l[i];
    return NULL;
}

static struct lease *by_clip(const struct fv_label_queue *q, const char *clip, int64_t now)
{
    for (size_t i = 0; i < q->n; i++)
        if (live(&q->l[i], now) && strcmp(q->l[i].clip, clip) == 0) return &q->l[i];
    return NULL;
}

static void copy_name(char *dst, const char *src)
{
    size_t n = strlen(src);
    memcpy(dst, src, n + 1); /* checked <= FV_LABEL_NAME_MAX by the callers' inputs */
}

int fv_label_held(const struct fv_label_queue *q, const char *labeler, int64_t now, char *clip,
                  int64_t *until)
{
    const struct lease *e = by_labeler(q, labeler, now);
    if (e == NULL) return 0;
    if (clip) copy_name(clip, e->clip);
    if (until) *until = e->until;
    return 1;
}

int fv_label_holder(const struct fv_label_queue *q, const char *clip, int64_t now, char *holder)
{
    const struct lease *e = by_clip(q, clip, now);
    if (e == NULL) return 0;
    if (holder) copy_name(holder, e->labeler);
    return 1;
}

static int name_ok(const char *s)
{
    return s && s[0] && strlen(s) <= FV_LABEL_NAME_MAX;
}

int fv_label_claim(struct fv_label_queue *q, const char *labeler, const char *clip, int64_t now,
                   int64_t *until, char *held_clip)
{
    if (!name_ok(labeler) || !name_ok(clip)) return FV_EINVAL;
    const struct lease *mine = by_labeler(q, labeler, now);
    if (mine) { /* L1, L3 */
        if (held_clip) copy_name(held_clip, mine->clip);
        return FV_EEXIST;
    }
    if (by_clip(q, clip, now)) return FV_EAGAIN;
    struct lease *slot = NULL;
    for (size_t i = 0; i < q->n && slot == NULL; i++)
        if (!live(&q->l[i], now)) slot = &q->l[i]; /* L2: an expired lease's slot */
    if (slot == NULL) {
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 8;
            struct lease *l = realloc(q->l, cap * sizeof *l);
            if (l == NULL) return FV_ENOMEM;
            q->l = l;
            q->cap = cap;
        }
        slot = &q->l[q->n++];
    }
    copy_name(slot->labeler, labeler);
    copy_name(slot->clip, clip);
    slot->until = now + q->lease_ms;
    if (until) *until = slot->until;
    return FV_OK;
}

int fv_label_release(struct fv_label_queue *q, const char *labeler, const char *clip, int64_t now)
{
    struct lease *e = by_labeler(q, labeler, now);
    if (e == NULL || strcmp(e->clip, clip) != 0) return FV_ENOENT; /* L4 */
    e->until = 0;
    return FV_OK;
}

void fv_label_drop(struct fv_label_queue *q, const char *clip)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->l[i].clip, clip) == 0) q->l[i].until = 0;
}

size_t fv_label_count(const struct fv_label_queue *q, int64_t now)
{
    size_t c = 0;
    for (size_t i = 0; i < q->n; i++)
        c += live(&q->l[i], now) != 0;
    return c;
}
