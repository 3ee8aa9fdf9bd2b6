/*
 * guard_quota.c - the daily quotas of the access guard (guard.h rule G5): per principal and,
 * where the policy sets one, per role (all its principals together, so a new principal
 * brings no fresh quota); counted as served, checked before, kept in DATA/quota.db
 * (privacy/quota_store.h) so a restart resets nothing. The keys of struct fv_quota are the
 * principal's name and "role:" plus the role's name (principal names hold no ':').
 *
 * Counting is in memory; the counters reach DATA/quota.db in batches: all of them in one
 * transaction at most SAVE_EVERY_MS after a count (on the next count or loop turn,
 * fv_guard__quota_tick) and when the guard closes. A count that leaves the principal or
 * its role within the last fifth of a daily limit (near) is written, with the whole batch,
 * before the answer goes out. So a crash (a clean stop saves everything) errs towards
 * granting, by at most one batch: the counts of the last second before it, and never one
 * that reached the last fifth of a limit - a restart cannot hand that out again.
 *
 * In a cluster (g->share set by the server layer, cluster/jsquotas.h) what is checked is the
 * sum: this node's counts plus the other nodes' latest published counts of the same key and
 * day (usage()). Every count hands this node's new counts to share.publish: in the batch
 * (published within a second), or at once, before the answer, when the sum is within the
 * last fifth of a limit - the same rule as the disk's. So N nodes may together overshoot a
 * limit by at most one batch each, and never once the sum is near it.
 *
 * Threading: the guard's (the server's API thread).
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/keys.h"
#include "privacy/guard_int.h"
#include "privacy/quota_store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define SAVE_EVERY_MS 1000 /* the counters reach the disk at least this often */

static void role_key(const struct fv_guard_ctx *ctx, char out[48])
{
    snprintf(out, 48, "role:%s", ctx->role);
}

/* key's counts today as this guard must judge them: its own plus the other nodes' (G5). */
static void usage(const struct fv_guard *g, const char *key, uint64_t now, struct fv_quota_usage *u)
{
    fv_quota_get(g->quota, key, now, u);
    if (g->share.others) {
        struct fv_quota_usage o = {.day = u->day};
        g->share.others(g->share.arg, key, u->day, &o);
        fv_quota_usage_add(u, &o);
    }
}

int fv_guard__quota_check(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          uint64_t subjects, uint64_t rows, uint64_t bytes, char *reason,
                          size_t reasonlen)
{
    if (g->quota == NULL) return FV_OK;
    uint64_t now = fv_now_ms();
    char rk[48];
    role_key(ctx, rk);
    struct fv_quota_usage p, r;
    usage(g, ctx->principal, now, &p);
    usage(g, rk, now, &r);
    if (fv_quota_check_usage(ctx->principal, &p, &ctx->d.quota, subjects, rows, bytes, reason,
                             reasonlen) != FV_OK ||
        fv_quota_check_usage(rk, &r, &ctx->d.role_quota, subjects, rows, bytes, reason,
                             reasonlen) != FV_OK)
        return FV_ELIMIT;
    return FV_OK;
}

/* This node's counts of key, to the cluster (now: before the answer). */
static void publish(struct fv_guard *g, const char *key, uint64_t now_ms, int now)
{
    if (g->share.publish == NULL) return;
    struct fv_quota_usage own;
    fv_quota_get(g->quota, key, now_ms, &own);
    g->share.publish(g->share.arg, key, &own, now);
}

void fv_guard_quota_raise(struct fv_guard *g, const char *name, const struct fv_quota_usage *u)
{
    if (g->quota == NULL) return;
    struct fv_quota_usage have;
    fv_quota_get(g->quota, name, fv_now_ms(), &have);
    if (u->day != have.day) return; /* another day's counts are worth nothing today */
    if (u->subjects <= have.subjects && u->rows <= have.rows && u->bytes <= have.bytes &&
        u->bulk <= have.bulk)
        return;
    if (u->subjects > have.subjects) have.subjects = u->subjects;
    if (u->rows > have.rows) have.rows = u->rows;
    if (u->bytes > have.bytes) have.bytes = u->bytes;
    if (u->bulk > have.bulk) have.bulk = u->bulk;
    if (fv_quota_set(g->quota, name, &have) != FV_OK) {
        fv_error("quota: out of memory restoring the counters of %s", name);
        return;
    }
    g->quota_dirty = 1;
}

static void save_key(struct fv_guard *g, const char *key)
{
    struct fv_quota_usage u;
    fv_quota_get(g->quota, key, fv_now_ms(), &u);
    if (g->quota_db && fv_quota_store_save(g->quota_db, &g->quota_save, key, &u) != FV_OK)
        fv_warn("quota: the counters of %s could not be saved (%s); they hold until a restart", key,
                sqlite3_errmsg(g->quota_db));
}

/* The batch: every counter, in one transaction. */
static void save_all(struct fv_guard *g)
{
    g->quota_saved_ms = fv_now_ms();
    if (g->quota == NULL || g->quota_db == NULL) return;
    if (fv_quota_store_save_all(g->quota_db, &g->quota_save, g->quota) != FV_OK) {
        fv_warn("quota: the counters could not be saved (%s); retrying in a second",
                sqlite3_errmsg(g->quota_db));
        return;
    }
    g->quota_dirty = 0;
}

void fv_guard__quota_tick(struct fv_guard *g)
{
    if (g->quota_dirty && fv_now_ms() - g->quota_saved_ms >= SAVE_EVERY_MS) save_all(g);
}

/* Within the last fifth (rounded down) of a finite limit: at or above 80% of it. */
static int near(uint64_t used, uint64_t lim)
{
    return lim != FV_UNLIMITED && used >= lim - lim / 5;
}

static int near_any(const struct fv_quota_usage *u, const struct fv_quota_limits *l)
{
    return near(u->subjects, l->subjects_per_day) || near(u->rows, l->rows_per_day) ||
           near(u->bytes, l->bytes_per_day);
}

/* Unusual volume: crossing 80% of a daily limit raises an alert (log + metric). */
static int crossed_80(uint64_t before, uint64_t after, uint64_t lim)
{
    return lim != FV_UNLIMITED && lim && before * 5 < lim * 4 && after * 5 >= lim * 4;
}

void fv_guard__quota_count(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects,
                           uint64_t rows, uint64_t bytes, int save_now)
{
    if (g->quota == NULL || ctx->principal[0] == '\0') return;
    uint64_t now = fv_now_ms();
    struct fv_quota_usage before, after;
    char rk[48];
    role_key(ctx, rk);
    usage(g, ctx->principal, now, &before);
    if (fv_quota_add(g->quota, ctx->principal, now, subjects, rows, bytes) != FV_OK ||
        fv_quota_add(g->quota, rk, now, subjects, rows, bytes) != FV_OK)
        fv_error("quota: out of memory counting %s", ctx->principal);
    usage(g, ctx->principal, now, &after);
    struct fv_quota_usage role_after;
    usage(g, rk, now, &role_after);
    const struct fv_quota_limits *l = &ctx->d.quota;
    if (crossed_80(before.rows, after.rows, l->rows_per_day) ||
        crossed_80(before.bytes, after.bytes, l->bytes_per_day)) {
        g->alerts++;
        fv_warn("privacy alert: principal %s (role %s) has used 80%% of a daily quota "
                "(%llu rows, %llu bytes today)",
                ctx->principal, ctx->role, (unsigned long long)after.rows,
                (unsigned long long)after.bytes);
    }
    g->quota_dirty = 1;
    /* near a limit (the cluster's sum): saved and published before the answer, a crash must
     * not give this back, nor another node hand it out again */
    int is_near = near_any(&after, l) || near_any(&role_after, &ctx->d.role_quota);
    publish(g, ctx->principal, now, is_near);
    publish(g, rk, now, is_near);
    if (save_now || is_near || now - g->quota_saved_ms >= SAVE_EVERY_MS) save_all(g);
}

uint64_t fv_guard__bulk_today(const struct fv_guard *g, const struct fv_guard_ctx *ctx)
{
    struct fv_quota_usage u;
    if (g->quota == NULL) return 0;
    usage(g, ctx->principal, fv_now_ms(), &u);
    return u.bulk;
}

void fv_guard__count_bulk(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects)
{
    if (g->quota == NULL) return;
    if (fv_quota_add_bulk(g->quota, ctx->principal, fv_now_ms(), subjects) != FV_OK)
        fv_error("quota: out of memory counting %s", ctx->principal);
    save_key(g, ctx->principal);
    publish(g, ctx->principal, fv_now_ms(), 1);
}

static uint64_t left(uint64_t used, uint64_t lim)
{
    return lim == FV_UNLIMITED ? UINT64_MAX : used >= lim ? 0 : lim - used;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

void fv_guard_meter_start(const struct fv_guard *g, const struct fv_guard_ctx *ctx,
                          struct fv_guard_meter *m, size_t mark)
{
    m->rows_left = m->bytes_left = UINT64_MAX;
    m->rows = 0;
    m->mark = mark;
    if (g == NULL || g->quota == NULL) return;
    uint64_t now = fv_now_ms();
    struct fv_quota_usage p, r;
    char rk[48];
    role_key(ctx, rk);
    usage(g, ctx->principal, now, &p);
    usage(g, rk, now, &r);
    m->rows_left = min64(left(p.rows, ctx->d.quota.rows_per_day),
                         left(r.rows, ctx->d.role_quota.rows_per_day));
    m->bytes_left = min64(left(p.bytes, ctx->d.quota.bytes_per_day),
                          left(r.bytes, ctx->d.role_quota.bytes_per_day));
}

int fv_guard_meter_room(struct fv_guard_meter *m)
{
    if (m->hit) return 0;
    if (m->rows >= m->rows_left) m->hit = 1;
    return !m->hit;
}

int fv_guard_meter_row(struct fv_guard_meter *m, size_t len)
{
    if (len - m->mark > m->bytes_left) {
        m->hit = 2;
        return 0;
    }
    m->rows++;
    return 1;
}

void fv_guard_meter_end(struct fv_guard *g, struct fv_guard_ctx *ctx, struct fv_guard_meter *m,
                        size_t len)
{
    if (g == NULL) return;
    uint64_t bytes = len - m->mark;
    fv_guard__quota_count(g, ctx, 0, m->rows, bytes, 0);
    ctx->counted_rows += m->rows;
    ctx->counted_bytes += bytes;
    if (m->hit && !m->audited) { /* the stop, audited once, with the quota's own reason */
        char why[300];
        m->audited = 1;
        fv_guard_quota_more(g, ctx, m->hit == 1, m->hit == 2, 1, why, sizeof why);
    }
}

const char *fv_guard_meter_note(const struct fv_guard_meter *m)
{
    return m->hit == 1   ? "quota: the daily rows_per_day is reached; the answer stops here"
           : m->hit == 2 ? "quota: the daily bytes_per_day is reached; the answer stops here"
                         : "";
}

int fv_guard_quota_take(struct fv_guard *g, const struct fv_guard_ctx *ctx, uint64_t subjects,
                        char *reason, size_t reasonlen)
{
    char qr[240] = "";
    if (fv_guard__quota_check(g, ctx, subjects, 0, 0, qr, sizeof qr) != FV_OK) {
        snprintf(reason, reasonlen, "quota: %s", qr);
        return FV_ELIMIT;
    }
    if (subjects) fv_guard__quota_count(g, ctx, subjects, 0, 0, 1);
    return FV_OK;
}

int fv_guard__quota_open(struct fv_guard *g, const char *path, char *err, size_t errlen)
{
    int rc = fv_quota_new(&g->quota);
    if (rc == FV_OK) rc = fv_quota_store_open(path, &g->quota_db, err, errlen);
    if (rc == FV_OK) rc = fv_quota_store_load(g->quota_db, g->quota, fv_now_ms(), err, errlen);
    return rc;
}

void fv_guard__quota_close(struct fv_guard *g)
{
    if (g->quota && g->quota_db && g->quota_dirty) save_all(g);
    if (g->quota) fv_quota_free(g->quota);
    sqlite3_finalize(g->quota_save);
    g->quota_save = NULL;
    sqlite3_close(g->quota_db);
    g->quota = NULL;
    g->quota_db = NULL;
}
