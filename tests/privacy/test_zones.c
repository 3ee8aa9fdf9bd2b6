/* test_zones.c - privacy zones (privacy/zones.h): set, list, replace and remove (Z1);
 * sealed at rest, no coordinate in the catalog as text or as binary (Z3), and gone from
 * the file once forgotten; one subject cannot read another's zones, a row moved to another
 * subject or label fails closed (Z3, Z5); a new owner starts with none (Z4); erased and
 * forgotten subjects; persistence across reopening; bad input refused (Z1, Z2); the loaded
 * zones drive location.h's L2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../support/testutil.h"
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "privacy/location.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/err.h"

#define DEV  "5YJ3E1EA7KF317000"
#define DEV2 "5YJ3E1EA7KF317999"
/* A home and a workplace with digits that a search of the file could not meet by chance. */
#define HOME_LAT 48.1371537
#define HOME_LON 11.5761249
#define HOME_R   250.0
#define WORK_LAT -33.8688197
#define WORK_LON 151.2092955
#define WORK_R   1234.5

static char dir[64];

static int setup(void **state)
{
    (void)state;
    setenv("FV_MASTER_KEY", "8d1f00112233445566778899aabbccddeeff00112233445566778899aabbcc0f", 1);
    return fv_test_mkdtemp(dir, sizeof dir, "fv-zones");
}

static int teardown(void **state)
{
    (void)state;
    return fv_test_rmtree(dir);
}

static struct fv_keystore *open_ks(const char *name)
{
    char p[128], err[512] = "";
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct fv_kek kek;
    struct fv_keystore *ks = NULL;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
    assert_int_equal(fv_subjects_init(ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_zones_init(ks, err, sizeof err), FV_OK);
    return ks;
}

static void set_ok(struct fv_keystore *ks, const char *subject, const char *label, double lat,
                   double lon, double r)
{
    char err[512] = "";
    int rc = fv_zone_set(ks, subject, label, lat, lon, r, err, sizeof err);
    if (rc) fprintf(stderr, "fv_zone_set: %s\n", err);
    assert_int_equal(rc, FV_OK);
}

struct elist {
    struct fv_zone_entry v[FV_ZONES_MAX + 2];
    size_t n;
};

static int collect(void *arg, const struct fv_zone_entry *e)
{
    struct elist *l = arg;
    if (l->n == sizeof l->v / sizeof l->v[0]) return -99;
    l->v[l->n++] = *e;
    return 0;
}

static void list(struct fv_keystore *ks, const char *subject, struct elist *l)
{
    char err[512] = "";
    memset(l, 0, sizeof *l);
    int rc = fv_zones_list(ks, subject, collect, l, err, sizeof err);
    if (rc) fprintf(stderr, "fv_zones_list: %s\n", err);
    assert_int_equal(rc, FV_OK);
}

static size_t nzones(struct fv_keystore *ks, const char *subject)
{
    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 99;
    assert_int_equal(fv_zones_load(ks, subject, z, FV_ZONES_MAX, &n), FV_OK);
    return n;
}

static unsigned char *slurp(const char *name, size_t *len)
{
    char p[160];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    *len = 0;
    FILE *f = fopen(p, "rb");
    if (f == NULL) return NULL;
    unsigned char *b = NULL;
    size_t cap = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *nb = realloc(b, cap);
            assert_non_null(nb);
            b = nb;
        }
        size_t k = fread(b + *len, 1, cap - *len, f);
        if (k == 0) break;
        *len += k;
    }
    fclose(f);
    return b;
}

/* None of the needles in the catalog file nor in its SQLite WAL. */
static void assert_absent(const char *db, const void *const *needles, const size_t *lens, size_t n)
{
    char wal[96];
    snprintf(wal, sizeof wal, "%s-wal", db);
    const char *files[] = {db, wal};
    for (size_t f = 0; f < 2; f++) {
        size_t len;
        unsigned char *b = slurp(files[f], &len);
        for (size_t i = 0; b && i < n; i++) {
            if (memmem(b, len, needles[i], lens[i]) != NULL)
                fail_msg("%s holds needle %zu (%zu bytes)", files[f], i, lens[i]);
        }
        free(b);
    }
}

static void test_set_list_remove(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("z.db");
    char err[512] = "";
    struct elist l;
    /* Nothing yet; no key is needed to know that. */
    list(ks, DEV, &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(nzones(ks, DEV), 0);

    set_ok(ks, DEV, "work", WORK_LAT, WORK_LON, WORK_R);
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    list(ks, DEV, &l);
    assert_int_equal(l.n, 2);
    /* Label order, values exact. */
    assert_string_equal(l.v[0].label, "home");
    assert_true(l.v[0].zone.lat == HOME_LAT && l.v[0].zone.lon == HOME_LON);
    assert_true(l.v[0].zone.radius_m == HOME_R);
    assert_true(l.v[0].created_ms > 0);
    assert_string_equal(l.v[1].label, "work");
    assert_true(l.v[1].zone.lat == WORK_LAT && l.v[1].zone.lon == WORK_LON);
    assert_true(l.v[1].zone.radius_m == WORK_R);

    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 0;
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_OK);
    assert_int_equal(n, 2);
    assert_true(z[0].lat == HOME_LAT && z[1].radius_m == WORK_R);

    /* Setting a label again replaces its zone. */
    set_ok(ks, DEV, "home", HOME_LAT + 0.01, HOME_LON, 500);
    list(ks, DEV, &l);
    assert_int_equal(l.n, 2);
    assert_true(l.v[0].zone.lat == HOME_LAT + 0.01 && l.v[0].zone.radius_m == 500);

    assert_int_equal(fv_zone_remove(ks, DEV, "work", err, sizeof err), FV_OK);
    assert_int_equal(nzones(ks, DEV), 1);
    assert_int_equal(fv_zone_remove(ks, DEV, "work", err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "no zone work"));
    assert_int_equal(fv_zone_remove(ks, DEV, "gym", err, sizeof err), FV_ENOENT);
    assert_int_equal(fv_zone_remove(ks, DEV, "home", err, sizeof err), FV_OK);
    assert_int_equal(nzones(ks, DEV), 0);

    /* A callback's non-zero result stops the walk and is returned. */
    set_ok(ks, DEV, "a", 1, 1, 100);
    set_ok(ks, DEV, "b", 2, 2, 100);
    struct elist full;
    memset(&full, 0, sizeof full);
    full.n = sizeof full.v / sizeof full.v[0]; /* collect answers -99 at once */
    assert_int_equal(fv_zones_list(ks, DEV, collect, &full, err, sizeof err), -99);
    fv_keystore_close(ks);
}

static void test_limits(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("z.db");
    char err[512] = "", label[16];
    for (int i = 0; i < FV_ZONES_MAX; i++) {
        snprintf(label, sizeof label, "z%02d", i);
        set_ok(ks, DEV, label, 10 + i, 20, 100);
    }
    assert_int_equal(fv_zone_set(ks, DEV, "one-more", 1, 2, 100, err, sizeof err), FV_ELIMIT);
    assert_non_null(strstr(err, "zones already"));
    /* Replacing one at the limit is fine. */
    set_ok(ks, DEV, "z00", 5, 5, 100);
    /* Another subject has its own allowance. */
    set_ok(ks, DEV2, "one-more", 1, 2, 100);

    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 0;
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_OK);
    assert_int_equal(n, FV_ZONES_MAX);
    assert_true(z[0].lat == 5);
    /* Too small a buffer: the first cap, the true count, FV_ELIMIT. */
    assert_int_equal(fv_zones_load(ks, DEV, z, 3, &n), FV_ELIMIT);
    assert_int_equal(n, FV_ZONES_MAX);
    assert_true(z[0].lat == 5 && z[1].lat == 11 && z[2].lat == 12);
    assert_int_equal(fv_zones_load(ks, DEV, NULL, 0, &n), FV_ELIMIT);
    assert_int_equal(n, FV_ZONES_MAX);
    fv_keystore_close(ks);
}

/* 8-byte patterns of d: binary64 either way round, and binary32 either way round. */
static size_t binary_forms(double d, unsigned char out[4][8], size_t lens[4])
{
    uint64_t u;
    memcpy(&u, &d, 8);
    float f = (float)d;
    uint32_t w;
    memcpy(&w, &f, 4);
    for (int i = 0; i < 8; i++) {
        out[0][i] = (unsigned char)(u >> (8 * i));
        out[1][i] = (unsigned char)(u >> (8 * (7 - i)));
    }
    for (int i = 0; i < 4; i++) {
        out[2][i] = (unsigned char)(w >> (8 * i));
        out[3][i] = (unsigned char)(w >> (8 * (3 - i)));
    }
    lens[0] = lens[1] = 8;
    lens[2] = lens[3] = 4;
    return 4;
}

static void test_sealed_at_rest(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("s.db");
    char err[512] = "";
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    set_ok(ks, DEV, "work", WORK_LAT, WORK_LON, WORK_R);
    /* The sealed rows, to look for after they are forgotten. */
    sqlite3 *db = (sqlite3 *)fv_keystore_db(ks);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT zone FROM privacy_zones ORDER BY label", -1, &st, NULL),
        SQLITE_OK);
    unsigned char sealed[2][128];
    size_t sealed_len[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        sealed_len[i] = (size_t)sqlite3_column_bytes(st, 0);
        assert_int_equal(sealed_len[i], 25 + FV_SEAL_OVERHEAD);
        memcpy(sealed[i], sqlite3_column_blob(st, 0), sealed_len[i]);
    }
    sqlite3_finalize(st);

    /* While open (as in a running server: the SQLite WAL holds the newest pages) and after
     * closing: no coordinate as text, as binary64 or binary32, nor the device id. */
    const char *text[] = {"48.137", "48,137", "11.576", "11,576", "33.868", "151.209", DEV};
    const void *needles[7 + 3 * 4];
    size_t lens[7 + 3 * 4], nn = 0;
    for (size_t i = 0; i < 7; i++) {
        needles[nn] = text[i];
        lens[nn++] = strlen(text[i]);
    }
    unsigned char forms[3][4][8];
    size_t flens[3][4];
    double coords[3] = {HOME_LAT, HOME_LON, WORK_LAT};
    for (size_t c = 0; c < 3; c++) {
        size_t k = binary_forms(coords[c], forms[c], flens[c]);
        for (size_t j = 0; j < k; j++) {
            needles[nn] = forms[c][j];
            lens[nn++] = flens[c][j];
        }
    }
    assert_absent("s.db", needles, lens, nn);
    fv_keystore_close(ks);
    assert_absent("s.db", needles, lens, nn);
    /* ... while the sealed zones are there, until forgotten. */
    size_t len;
    unsigned char *b = slurp("s.db", &len);
    assert_non_null(b);
    assert_non_null(memmem(b, len, sealed[0], sealed_len[0]));
    free(b);

    ks = open_ks("s.db");
    assert_int_equal(fv_zones_forget(ks, DEV, err, sizeof err), FV_OK);
    /* Gone at once, the catalog still open: cells zeroed, SQLite WAL checkpointed. */
    const void *gone[] = {sealed[0], sealed[1]};
    assert_absent("s.db", gone, sealed_len, 2);
    fv_keystore_close(ks);
    assert_absent("s.db", gone, sealed_len, 2);
}

static void test_subjects_apart(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("a.db");
    char err[512] = "", ps1[FV_PSEUDONYM_LEN + 1], ps2[FV_PSEUDONYM_LEN + 1];
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    set_ok(ks, DEV2, "work", WORK_LAT, WORK_LON, WORK_R);
    /* Each subject sees its own zones only. */
    struct elist l;
    list(ks, DEV2, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].label, "work");
    assert_true(l.v[0].zone.lat == WORK_LAT);

    /* Z4: a new owner is a new subject, with no zones; the previous owner keeps theirs. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, "owner-2", 1000, err, sizeof err), FV_OK);
    assert_int_equal(nzones(ks, DEV "#2"), 0);
    assert_int_equal(nzones(ks, DEV), 1);
    set_ok(ks, DEV "#2", "home", WORK_LAT, WORK_LON, 300);
    list(ks, DEV, &l);
    assert_int_equal(l.n, 1);
    assert_true(l.v[0].zone.lat == HOME_LAT);
    /* A subject that is no owner period of its device has none to set. */
    assert_int_equal(fv_zone_set(ks, DEV "#3", "home", 1, 1, 100, err, sizeof err), FV_ENOENT);
    assert_int_equal(fv_zone_set(ks, DEV2 "#2", "home", 1, 1, 100, err, sizeof err), FV_ENOENT);

    /* A row moved to another subject does not open under that subject's key: the load
     * fails (Z5), it does not serve the other subject's home as if it were its own, nor
     * silently skip it. */
    sqlite3 *db = (sqlite3 *)fv_keystore_db(ks);
    assert_int_equal(fv_keystore_pseudonym(ks, DEV, ps1), FV_OK);
    assert_int_equal(fv_keystore_pseudonym(ks, DEV2, ps2), FV_OK);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO privacy_zones(subject, label, zone, created_ms) SELECT '%s', label,"
             " zone, created_ms FROM privacy_zones WHERE subject = '%s'",
             ps2, ps1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 99;
    assert_int_equal(fv_zones_load(ks, DEV2, z, FV_ZONES_MAX, &n), FV_ECORRUPT);
    assert_int_equal(n, 0);
    assert_int_equal(fv_zones_list(ks, DEV2, collect, &l, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "does not open"));
    snprintf(sql, sizeof sql, "DELETE FROM privacy_zones WHERE subject = '%s' AND label = 'home'",
             ps2);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(nzones(ks, DEV2), 1);

    /* Relabelled ("home" -> "gym"): the label is bound too. */
    snprintf(sql, sizeof sql, "UPDATE privacy_zones SET label = 'gym' WHERE subject = '%s'", ps1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_ECORRUPT);
    /* Out-of-range rows and a zone of a subject that never had a key: corruption too. */
    snprintf(sql, sizeof sql, "UPDATE privacy_zones SET label = 'Bad Label' WHERE subject = '%s'",
             ps1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_ECORRUPT);
    snprintf(sql, sizeof sql,
             "UPDATE privacy_zones SET label = 'home', zone = x'00' WHERE subject = '%s'", ps1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_ECORRUPT);
    assert_int_equal(fv_keystore_pseudonym(ks, "NEVER-SEEN", ps1), FV_OK);
    snprintf(sql, sizeof sql,
             "INSERT INTO privacy_zones(subject, label, zone) SELECT '%s', label, zone"
             " FROM privacy_zones WHERE subject = '%s'",
             ps1, ps2);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(fv_zones_list(ks, "NEVER-SEEN", collect, &l, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "never existed"));
    fv_keystore_close(ks);
}

static void test_erasure(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("e.db");
    char err[512] = "";
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    set_ok(ks, DEV, "work", WORK_LAT, WORK_LON, WORK_R);
    set_ok(ks, DEV2, "home", WORK_LAT, WORK_LON, WORK_R);
    assert_int_equal(fv_zones_forget(ks, DEV, err, sizeof err), FV_OK);
    assert_int_equal(nzones(ks, DEV), 0);
    assert_int_equal(nzones(ks, DEV2), 1);                              /* only that subject's */
    assert_int_equal(fv_zones_forget(ks, DEV, err, sizeof err), FV_OK); /* idempotent */
    assert_int_equal(fv_zones_forget(ks, "bad name!", err, sizeof err), FV_EINVAL);

    /* The key destroyed while zones remain: they no longer open; the load fails closed. */
    assert_int_equal(fv_keystore_destroy(ks, DEV2, err, sizeof err), FV_OK);
    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 99;
    assert_int_equal(fv_zones_load(ks, DEV2, z, FV_ZONES_MAX, &n), FV_ESTATE);
    assert_int_equal(n, 0);
    assert_int_equal(fv_zone_set(ks, DEV2, "work", 1, 1, 100, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "erased"));
    /* Forgetting them still works, by pseudonym too (an erasure list's replay knows no
     * name), and then there is nothing to open. */
    char ps[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_pseudonym(ks, DEV2, ps), FV_OK);
    assert_int_equal(fv_zones_forget_pseudo(ks, ps, err, sizeof err), FV_OK);
    assert_int_equal(nzones(ks, DEV2), 0);
    assert_int_equal(fv_zones_forget(ks, DEV2, err, sizeof err), FV_OK);
    assert_int_equal(fv_zones_forget_pseudo(ks, "ABC", err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_zones_forget_pseudo(ks, NULL, err, sizeof err), FV_EINVAL);
    memset(ps, 'G', FV_PSEUDONYM_LEN);
    assert_int_equal(fv_zones_forget_pseudo(ks, ps, err, sizeof err), FV_EINVAL);

    /* A subject forgotten by the registry takes no new zone. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, "owner-2", 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subjects_forget(ks, DEV, err, sizeof err), FV_OK);
    assert_int_equal(fv_zone_set(ks, DEV, "home", 1, 1, 100, err, sizeof err), FV_ESTATE);
    set_ok(ks, DEV "#2", "home", 1, 1, 100);
    fv_keystore_close(ks);
}

static void test_reopen(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("r.db");
    char err[512] = "";
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    set_ok(ks, DEV, "work", WORK_LAT, WORK_LON, WORK_R);
    assert_int_equal(fv_zone_remove(ks, DEV, "work", err, sizeof err), FV_OK);
    fv_keystore_close(ks);
    ks = open_ks("r.db");
    struct elist l;
    list(ks, DEV, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].label, "home");
    assert_true(l.v[0].zone.lat == HOME_LAT && l.v[0].zone.lon == HOME_LON &&
                l.v[0].zone.radius_m == HOME_R);
    fv_keystore_close(ks);

    /* Another master key does not open the catalog at all (keys.h). */
    setenv("FV_MASTER_KEY", "0000000000000000000000000000000000000000000000000000000000000001", 1);
    char p[128];
    snprintf(p, sizeof p, "%s/r.db", dir);
    struct fv_kek kek;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_not_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("b.db");
    char err[512] = "", longl[FV_ZONE_LABEL_MAX + 2];
    memset(longl, 'a', FV_ZONE_LABEL_MAX + 1);
    longl[FV_ZONE_LABEL_MAX + 1] = '\0';
    const char *bad_labels[] = {"",    "Home", "home office", "home.1", "h\xc3\xb6me",
                                "a/b", longl,  NULL};
    for (size_t i = 0; i < sizeof bad_labels / sizeof *bad_labels; i++) {
        assert_int_equal(fv_zone_set(ks, DEV, bad_labels[i], 1, 1, 100, err, sizeof err),
                         FV_EINVAL);
        assert_non_null(strstr(err, "label"));
        assert_int_equal(fv_zone_remove(ks, DEV, bad_labels[i], err, sizeof err), FV_EINVAL);
    }
    longl[FV_ZONE_LABEL_MAX] = '\0';
    assert_true(fv_zone_label_valid(longl));
    assert_true(fv_zone_label_valid("work_2-b"));
    set_ok(ks, DEV, longl, 1, 1, 100);

    const double nan = NAN, inf = INFINITY;
    const double bad_centre[][2] = {{91, 0},  {-90.001, 0}, {0, 180.5}, {0, -181},
                                    {nan, 0}, {0, nan},     {inf, 0},   {0, -inf}};
    for (size_t i = 0; i < sizeof bad_centre / sizeof *bad_centre; i++) {
        assert_int_equal(
            fv_zone_set(ks, DEV, "home", bad_centre[i][0], bad_centre[i][1], 100, err, sizeof err),
            FV_EINVAL);
        assert_non_null(strstr(err, "centre"));
    }
    const double bad_radius[] = {0, 49.9, -100, 50000.5, nan, inf};
    for (size_t i = 0; i < sizeof bad_radius / sizeof *bad_radius; i++) {
        assert_int_equal(fv_zone_set(ks, DEV, "home", 1, 1, bad_radius[i], err, sizeof err),
                         FV_EINVAL);
        assert_non_null(strstr(err, "radius"));
    }
    /* The bounds themselves, and the poles and the antimeridian, are fine. */
    set_ok(ks, DEV, "min", 90, 180, FV_ZONE_RADIUS_MIN_M);
    set_ok(ks, DEV, "max", -90, -180, FV_ZONE_RADIUS_MAX_M);

    const char *bad_subjects[] = {"", "a b", DEV "#1", DEV "#0", "#2", "x.y", NULL};
    struct fv_zone z[FV_ZONES_MAX];
    size_t n;
    struct elist l;
    for (size_t i = 0; i < sizeof bad_subjects / sizeof *bad_subjects; i++) {
        assert_int_equal(fv_zone_set(ks, bad_subjects[i], "home", 1, 1, 100, err, sizeof err),
                         FV_EINVAL);
        assert_int_equal(fv_zone_remove(ks, bad_subjects[i], "home", err, sizeof err), FV_EINVAL);
        assert_int_equal(fv_zones_load(ks, bad_subjects[i], z, FV_ZONES_MAX, &n), FV_EINVAL);
        assert_int_equal(fv_zones_list(ks, bad_subjects[i], collect, &l, err, sizeof err),
                         FV_EINVAL);
        assert_int_equal(fv_zones_forget(ks, bad_subjects[i], err, sizeof err), FV_EINVAL);
    }
    /* Nothing refused was stored. */
    list(ks, DEV, &l);
    assert_int_equal(l.n, 3);
    fv_keystore_close(ks);
}

static void test_uninitialised(void **state)
{
    (void)state;
    char p[128], err[512] = "";
    snprintf(p, sizeof p, "%s/u.db", dir);
    struct fv_kek kek;
    struct fv_keystore *ks = NULL;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
    assert_int_equal(fv_subjects_init(ks, err, sizeof err), FV_OK);
    struct fv_zone z[1];
    size_t n;
    assert_int_equal(fv_zones_load(ks, DEV, z, 1, &n), FV_EIO);
    assert_int_equal(fv_zone_set(ks, DEV, "home", 1, 1, 100, err, sizeof err), FV_EIO);
    assert_int_equal(fv_zone_remove(ks, DEV, "home", err, sizeof err), FV_EIO);
    assert_int_equal(fv_zones_forget(ks, DEV, err, sizeof err), FV_EIO);
    assert_int_equal(fv_zones_init(ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_zones_init(ks, err, sizeof err), FV_OK); /* idempotent */
    assert_int_equal(fv_zones_load(ks, DEV, z, 1, &n), FV_OK);
    fv_keystore_close(ks);
}

/* The loaded zones are what location.h's L2 takes: a point at home is dropped, one 1 km
 * away is kept. */
static void test_applied_to_a_track(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("t.db");
    set_ok(ks, DEV, "home", HOME_LAT, HOME_LON, HOME_R);
    struct fv_zone z[FV_ZONES_MAX];
    size_t n = 0;
    assert_int_equal(fv_zones_load(ks, DEV, z, FV_ZONES_MAX, &n), FV_OK);
    assert_int_equal(n, 1);
    double lat[3] = {HOME_LAT, HOME_LAT + 0.001, HOME_LAT + 0.01}; /* 0, ~111 m, ~1.1 km */
    double lon[3] = {HOME_LON, HOME_LON, HOME_LON};
    unsigned char keep[3] = {1, 1, 1};
    assert_int_equal(fv_loc_zones(3, lat, lon, z, n, keep), FV_OK);
    assert_int_equal(keep[0], 0);
    assert_int_equal(keep[1], 0);
    assert_int_equal(keep[2], 1);
    fv_keystore_close(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subjects_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erasure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uninitialised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_applied_to_a_track, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
