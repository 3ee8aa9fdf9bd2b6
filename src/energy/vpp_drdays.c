/* vpp_drdays.c - other demand-response days an operator declares (vpp.h fv_vpp_dr_day_add):
 * days of programs fleetvault does not run (the utility's own events, another aggregator's),
 * for one site or for every site, left out of every baseline (energy/baseline.h). Kept in
 * DATA/vpp.db (vpp_dr_days: site, '' for every site; date yyyymmdd) and in memory (the
 * service's dr array). Every function but the loader takes the service's mutex; the loader
 * runs at start-up, single-threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "energy/vpp_int.h"
#include "util/err.h"

/* Room for one more day. */
static int dr_grow(struct fv_vpp *v)
{
    if (v->ndr < v->drcap) return FV_OK;
    size_t cap = v->drcap ? 2 * v->drcap : 16;
    void *p = realloc(v->dr, cap * sizeof *v->dr);
    if (p == NULL) return FV_ENOMEM;
    v->dr = p;
    v->drcap = cap;
    return FV_OK;
}

int fv_vpp__dr_load(struct fv_vpp *v, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(v->db,
                     "CREATE TABLE IF NOT EXISTS vpp_dr_days(site TEXT NOT NULL, date INTEGER "
                     "NOT NULL, PRIMARY KEY(site, date));",
                     NULL, NULL, &msg) != SQLITE_OK) {
        fv_seterr(err, errlen, "vpp.db: %s", msg ? msg : sqlite3_errmsg(v->db));
        sqlite3_free(msg);
        return FV_EIO;
    }
    sqlite3_stmt *st = NULL;
    int rc = FV_OK;
    if (sqlite3_prepare_v2(v->db, "SELECT site, date FROM vpp_dr_days ORDER BY date, site", -1, &st,
                           NULL) != SQLITE_OK) {
        fv_seterr(err, errlen, "vpp.db: %s", sqlite3_errmsg(v->db));
        return FV_EIO;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((rc = dr_grow(v)) != FV_OK) break;
        struct vdrday *d = &v->dr[v->ndr++];
        snprintf(d->site, sizeof d->site, "%s", (const char *)sqlite3_column_text(st, 0));
        d->date = (int32_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc;
}

/* "YYYY-MM-DD" (a real calendar date) -> yyyymmdd; 0 if not one. */
static int32_t parse_date(const char *s)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return 0;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap)) return 0;
    return y * 10000 + m * 100 + d;
}

int fv_vpp_dr_day_add(struct fv_vpp *v, const char *site, const char *date, char *err,
                      size_t errlen)
{
    int32_t d = parse_date(date);
    if (d == 0) {
        fv_seterr(err, errlen, "date: expected a calendar date YYYY-MM-DD");
        return FV_EINVAL;
    }
    if (site == NULL) site = "";
    if (strlen(site) >= SITE_ID_MAX) {
        fv_seterr(err, errlen, "site: at most %d characters", SITE_ID_MAX - 1);
        return FV_EINVAL;
    }
    pthread_mutex_lock(&v->mu);
    int rc = FV_OK;
    for (size_t i = 0; i < v->ndr; i++)
        if (v->dr[i].date == d && strcmp(v->dr[i].site, site) == 0) goto out; /* known */
    if ((rc = dr_grow(v)) != FV_OK) {
        fv_seterr(err, errlen, "out of memory");
        goto out;
    }
    rc = fv_vpp__db_run(v->db, "INSERT OR IGNORE INTO vpp_dr_days(site, date) VALUES (?, ?)", "ti",
                        site, (int64_t)d);
    if (rc) {
        fv_seterr(err, errlen, "vpp.db cannot be written");
        goto out;
    }
    snprintf(v->dr[v->ndr].site, SITE_ID_MAX, "%s", site);
    v->dr[v->ndr++].date = d;
out:
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static json_t *date_json(int32_t d)
{
    char s[16];
    snprintf(s, sizeof s, "%04d-%02d-%02d", (int)(d / 10000), (int)(d / 100 % 100), (int)(d % 100));
    return json_string(s);
}

json_t *fv_vpp__dr_json(const struct fv_vpp *v, const char *site)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < v->ndr; i++) {
        const struct vdrday *d = &v->dr[i];
        if (site && strcmp(d->site, site) != 0) continue;
        json_array_append_new(arr, json_pack("{s:o,s:o}", "date", date_json(d->date), "site",
                                             d->site[0] ? json_string(d->site) : json_null()));
    }
    return arr;
}

json_t *fv_vpp_dr_days_json(struct fv_vpp *v)
{
    pthread_mutex_lock(&v->mu);
    json_t *arr = fv_vpp__dr_json(v, NULL);
    pthread_mutex_unlock(&v->mu);
    return arr ? json_pack("{s:o}", "dr_days", arr) : NULL;
}

int fv_vpp__dr_forget(struct fv_vpp *v, const char *site)
{
    size_t w = 0;
    for (size_t i = 0; i < v->ndr; i++)
        if (strcmp(v->dr[i].site, site) != 0) v->dr[w++] = v->dr[i];
    v->ndr = w;
    return fv_vpp__db_run(v->db, "DELETE FROM vpp_dr_days WHERE site = ?", "t", site);
}
