/* test_subjects.c - the subject registry (privacy/subjects.h): owner periods and subject
 * names across changes of owner (S1, S2), which subject a time belongs to at the period
 * boundaries, owner ids sealed and no device id at rest (S3, rule K2), consent intervals
 * (S5: give, withdraw, give again, boundaries, clipping, none at all), contract purposes
 * (S6), time order (S4), forgetting, persistence across reopening, bad input refused, and
 * rows that break S1 reported as corruption. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "privacy/policy.h"
#include "privacy/subjects.h"
#include "util/err.h"

#define DEV   "5YJ3E1EA7KF317000"
#define OWN1  "owner-7f3a9c-alice@example.com"
#define OWN2  "owner-51d0e2-bob@example.com"
#define OWN3  "owner-c0ffee-carol@example.com"
#define T_MAX INT64_MAX
#define T_MIN INT64_MIN

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-subjects-XXXXXX");
    setenv("FV_MASTER_KEY", "8d1f00112233445566778899aabbccddeeff00112233445566778899aabbcc0f", 1);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static struct fv_keystore *open_ks(const char *name, int init)
{
    char p[128], err[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct fv_kek kek;
    struct fv_keystore *ks = NULL;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
    if (init) assert_int_equal(fv_subjects_init(ks, err, sizeof err), FV_OK);
    return ks;
}

struct plist {
    struct fv_subject_period v[8];
    size_t n;
};

static int collect(void *arg, const struct fv_subject_period *p)
{
    struct plist *l = arg;
    if (l->n == 8) return -99;
    l->v[l->n++] = *p;
    return 0;
}

static void periods(struct fv_keystore *ks, const char *device, struct plist *l)
{
    char err[512] = "";
    memset(l, 0, sizeof *l);
    int rc = fv_subject_periods(ks, device, collect, l, err, sizeof err);
    if (rc) fprintf(stderr, "periods: %s\n", err);
    assert_int_equal(rc, FV_OK);
}

static void check_current(struct fv_keystore *ks, const char *device, const char *name, int epoch)
{
    char got[FV_SUBJECT_NAME_MAX + 1];
    int e = -1;
    assert_int_equal(fv_subject_current(ks, device, got, &e), FV_OK);
    assert_string_equal(got, name);
    assert_int_equal(e, epoch);
}

static void check_for_time(struct fv_keystore *ks, int64_t t, const char *name)
{
    char got[FV_SUBJECT_NAME_MAX + 1];
    assert_int_equal(fv_subject_for_time(ks, DEV, t, got, NULL), FV_OK);
    assert_string_equal(got, name);
}

static void test_names(void **state)
{
    (void)state;
    char n[FV_SUBJECT_NAME_MAX + 1], d[FV_SUBJECT_NAME_MAX + 1];
    int e;
    assert_int_equal(fv_subject_name(DEV, 1, n), FV_OK);
    assert_string_equal(n, DEV);
    assert_int_equal(fv_subject_name(DEV, 12, n), FV_OK);
    assert_string_equal(n, DEV "#12");
    assert_int_equal(fv_subject_parse(DEV "#12", d, &e), FV_OK);
    assert_string_equal(d, DEV);
    assert_int_equal(e, 12);
    assert_int_equal(fv_subject_parse(DEV, d, &e), FV_OK);
    assert_int_equal(e, 1);
    assert_int_equal(fv_subject_name("a.b", 1, n), FV_EINVAL);
    assert_int_equal(fv_subject_name(DEV, 0, n), FV_EINVAL);
    /* One spelling per epoch: no "#1", no leading zeros, no signs, nothing after. */
    const char *bad[] = {DEV "#1",  DEV "#0",  DEV "#02", DEV "#", "#2",  DEV "#2#3",
                         DEV "#-2", DEV "#+2", DEV "#2x", "",      "a b", DEV "#9999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(fv_subject_parse(bad[i], d, &e), FV_EINVAL);
    /* A 64-character id is a valid subject, but "#2" does not fit beside it. */
    char longid[65];
    memset(longid, 'A', 64);
    longid[64] = '\0';
    assert_int_equal(fv_subject_name(longid, 1, n), FV_OK);
    assert_int_equal(fv_subject_name(longid, 2, n), FV_ELIMIT);
}

static void test_periods_across_owner_changes(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("p.db", 1);
    char err[512];
    struct plist l;
    /* No row yet: one implicit period named by the device id. */
    check_current(ks, DEV, DEV, 1);
    periods(ks, DEV, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].name, DEV);
    assert_int_equal(l.v[0].epoch, 1);
    assert_int_equal(l.v[0].since_ms, T_MIN);
    assert_int_equal(l.v[0].until_ms, T_MAX);
    assert_true(l.v[0].current);
    assert_string_equal(l.v[0].owner, "");
    assert_int_equal(l.v[0].erased, 0);

    /* The first owner of the implicit period; recorded once only. */
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN2, err, sizeof err), FV_EEXIST);
    assert_non_null(strstr(err, "change of owner"));
    check_current(ks, DEV, DEV, 1);

    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    check_current(ks, DEV, DEV "#2", 2);
    /* Not before the current period's start. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN3, 999, err, sizeof err), FV_EINVAL);
    assert_non_null(strstr(err, "precede"));
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN3, 2000, err, sizeof err), FV_OK);
    check_current(ks, DEV, DEV "#3", 3);

    periods(ks, DEV, &l);
    assert_int_equal(l.n, 3);
    const char *names[] = {DEV, DEV "#2", DEV "#3"}, *owners[] = {OWN1, OWN2, OWN3};
    int64_t since[] = {T_MIN, 1000, 2000}, until[] = {1000, 2000, T_MAX};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(l.v[i].name, names[i]);
        assert_int_equal(l.v[i].epoch, (int)i + 1);
        assert_string_equal(l.v[i].owner, owners[i]);
        assert_int_equal(l.v[i].since_ms, since[i]);
        assert_int_equal(l.v[i].until_ms, until[i]);
        assert_int_equal(l.v[i].current, i == 2);
        assert_int_equal(l.v[i].erased, 0);
        char ps[FV_PSEUDONYM_LEN + 1];
        assert_int_equal(fv_keystore_pseudonym(ks, names[i], ps), FV_OK);
        assert_string_equal(l.v[i].pseudonym, ps);
    }
    /* S2: every period has its own data key. */
    const unsigned char *k1, *k2, *k3;
    char ps[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_dek(ks, DEV, 0, &k1, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, DEV "#2", 0, &k2, ps), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, DEV "#3", 0, &k3, ps), FV_OK);
    assert_memory_not_equal(k1, k2, FV_KEY_LEN);
    assert_memory_not_equal(k2, k3, FV_KEY_LEN);
    /* An owner can be set only on an open period that has none: #3 has one. */
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_EEXIST);

    /* A device never registered: a change of owner records the implicit epoch 1. */
    assert_int_equal(fv_subject_change_owner(ks, "OTHER-1", OWN1, 5000, err, sizeof err), FV_OK);
    periods(ks, "OTHER-1", &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].owner, "");
    assert_int_equal(l.v[0].until_ms, 5000);
    assert_string_equal(l.v[1].name, "OTHER-1#2");
    assert_string_equal(l.v[1].owner, OWN1);
    /* A change at the same instant as the last one leaves an empty period: allowed. */
    assert_int_equal(fv_subject_change_owner(ks, "OTHER-1", OWN2, 5000, err, sizeof err), FV_OK);
    check_current(ks, "OTHER-1", "OTHER-1#3", 3);

    /* Bad input. */
    assert_int_equal(fv_subject_change_owner(ks, "bad.id", OWN1, 1, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_subject_change_owner(ks, DEV, "", 3000, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_subject_change_owner(ks, DEV, "a\nb", 3000, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN1, T_MAX, err, sizeof err), FV_EINVAL);
    char big[FV_SUBJECT_OWNER_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(fv_subject_change_owner(ks, DEV, big, 3000, err, sizeof err), FV_EINVAL);
    big[FV_SUBJECT_OWNER_MAX] = '\0';
    assert_int_equal(fv_subject_change_owner(ks, DEV, big, 3000, err, sizeof err), FV_OK);
    periods(ks, DEV, &l);
    assert_string_equal(l.v[3].owner, big);
    char cur[FV_SUBJECT_NAME_MAX + 1];
    assert_int_equal(fv_subject_current(ks, "", cur, NULL), FV_EINVAL);
    /* No room for "#2" beside a 63-character id: refused before anything is written. */
    char longid[64];
    memset(longid, 'B', 63);
    longid[63] = '\0';
    assert_int_equal(fv_subject_change_owner(ks, longid, OWN1, 1, err, sizeof err), FV_ELIMIT);
    check_current(ks, longid, longid, 1);
    fv_keystore_close(ks);
}

static void test_subject_for_time(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("t.db", 1);
    char err[512];
    check_for_time(ks, 0, DEV);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN3, 2000, err, sizeof err), FV_OK);
    check_for_time(ks, T_MIN, DEV);
    check_for_time(ks, -5, DEV);
    check_for_time(ks, 999, DEV);
    check_for_time(ks, 1000, DEV "#2"); /* periods are [since, until) */
    check_for_time(ks, 1999, DEV "#2");
    check_for_time(ks, 2000, DEV "#3");
    check_for_time(ks, T_MAX, DEV "#3");
    int e = 0;
    char got[FV_SUBJECT_NAME_MAX + 1];
    assert_int_equal(fv_subject_for_time(ks, DEV, 1500, got, &e), FV_OK);
    assert_int_equal(e, 2);
    /* An empty period [3000, 3000) holds no time. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN1, 3000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 3000, err, sizeof err), FV_OK);
    check_for_time(ks, 2999, DEV "#3");
    check_for_time(ks, 3000, DEV "#5");
    fv_keystore_close(ks);
}

static unsigned char *slurp(const char *name, size_t *len)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    *len = 0;
    FILE *f = fopen(p, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Neither the catalog nor its SQLite WAL holds any of needles. */
static void assert_absent(const char *db, const void *const *needles, const size_t *lens, size_t k)
{
    const char *suffix[] = {"", "-wal"};
    for (size_t s = 0; s < 2; s++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", db, suffix[s]);
        size_t len;
        unsigned char *b = slurp(name, &len);
        if (b == NULL) continue;
        for (size_t i = 0; i < k; i++)
            if (memmem(b, len, needles[i], lens[i]) != NULL) {
                fprintf(stderr, "%s holds needle %zu\n", name, i);
                fail();
            }
        free(b);
    }
}

static void test_sealed_at_rest(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("s.db", 1);
    char err[512];
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 1500, "owner", err, sizeof err),
                     FV_OK);
    /* The sealed owner of #2, to look for after it is forgotten. */
    sqlite3 *db = (sqlite3 *)fv_keystore_db(ks);
    sqlite3_stmt *st;
    char ps[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_pseudonym(ks, DEV "#2", ps), FV_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT owner FROM subject_periods WHERE subject = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, ps, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    size_t sealed_len = (size_t)sqlite3_column_bytes(st, 0);
    assert_true(sealed_len > FV_SEAL_OVERHEAD);
    unsigned char *sealed = malloc(sealed_len);
    assert_non_null(sealed);
    memcpy(sealed, sqlite3_column_blob(st, 0), sealed_len);
    sqlite3_finalize(st);
    fv_keystore_close(ks);

    /* K2: no device id, no owner id, whole or in part, anywhere in the file. */
    const void *needles[] = {DEV, "KF317000", OWN1, OWN2, "alice", "bob@"};
    size_t lens[6];
    for (size_t i = 0; i < 6; i++)
        lens[i] = strlen(needles[i]);
    assert_absent("s.db", needles, lens, 6);
    /* ... while the sealed owner is there, until it is forgotten. */
    size_t len;
    unsigned char *b = slurp("s.db", &len);
    assert_non_null(memmem(b, len, sealed, sealed_len));
    free(b);

    ks = open_ks("s.db", 1);
    assert_int_equal(fv_subjects_forget(ks, DEV "#2", err, sizeof err), FV_OK);
    /* Gone at once, while the catalog is still open (as in a running server): the cells
     * are zeroed and the SQLite WAL checkpointed. */
    const void *gone[] = {sealed};
    assert_absent("s.db", gone, &sealed_len, 1);
    fv_keystore_close(ks);
    assert_absent("s.db", gone, &sealed_len, 1);
    free(sealed);
}

static void check_intervals(struct fv_keystore *ks, const struct fv_purposes *pp,
                            const char *subject, const char *purpose, int64_t from, int64_t to,
                            const int64_t *want, size_t nwant)
{
    struct fv_interval iv[8];
    size_t n = 99;
    assert_int_equal(fv_consent_intervals(ks, pp, subject, purpose, from, to, iv, 8, &n), FV_OK);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(iv[i].from, want[2 * i]);
        assert_int_equal(iv[i].to, want[2 * i + 1]);
    }
}

static int consent_at(struct fv_keystore *ks, const char *subject, const char *purpose, int64_t t)
{
    int g = -1;
    assert_int_equal(fv_consent_at(ks, NULL, subject, purpose, t, &g), FV_OK);
    return g;
}

static void test_consent_intervals(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("c.db", 1);
    char err[512];
    /* Nothing recorded: no consent (opt-in). */
    check_intervals(ks, NULL, DEV, "clips", T_MIN, T_MAX, NULL, 0);
    assert_int_equal(consent_at(ks, DEV, "clips", 0), 0);

    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 100, "owner", err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 0, 200, "alice", err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 300, NULL, err, sizeof err), FV_OK);
    /* give at g, withdraw at w -> [g, w-1]; the last grant holds on. */
    const int64_t all[] = {100, 199, 300, T_MAX};
    check_intervals(ks, NULL, DEV, "clips", T_MIN, T_MAX, all, 2);
    const int64_t clip1[] = {150, 199, 300, 350};
    check_intervals(ks, NULL, DEV, "clips", 150, 350, clip1, 2);
    check_intervals(ks, NULL, DEV, "clips", 200, 299, NULL, 0);
    check_intervals(ks, NULL, DEV, "clips", 0, 99, NULL, 0);
    const int64_t one[] = {199, 199};
    check_intervals(ks, NULL, DEV, "clips", 199, 199, one, 1);
    const int64_t edge[] = {100, 100};
    check_intervals(ks, NULL, DEV, "clips", 0, 100, edge, 1);
    const int64_t late[] = {300, 1000};
    check_intervals(ks, NULL, DEV, "clips", 250, 1000, late, 1);
    assert_int_equal(consent_at(ks, DEV, "clips", 99), 0);
    assert_int_equal(consent_at(ks, DEV, "clips", 100), 1);
    assert_int_equal(consent_at(ks, DEV, "clips", 199), 1);
    assert_int_equal(consent_at(ks, DEV, "clips", 200), 0);
    assert_int_equal(consent_at(ks, DEV, "clips", 299), 0);
    assert_int_equal(consent_at(ks, DEV, "clips", 300), 1);
    assert_int_equal(consent_at(ks, DEV, "clips", T_MAX), 1);
    /* Per purpose: other purposes are untouched. */
    check_intervals(ks, NULL, DEV, "model_training", T_MIN, T_MAX, NULL, 0);

    /* Too small an array: the count, the first ranges, FV_ELIMIT. */
    struct fv_interval iv[1];
    size_t n = 0;
    assert_int_equal(fv_consent_intervals(ks, NULL, DEV, "clips", T_MIN, T_MAX, iv, 1, &n),
                     FV_ELIMIT);
    assert_int_equal(n, 2);
    assert_int_equal(iv[0].from, 100);
    assert_int_equal(fv_consent_intervals(ks, NULL, DEV, "clips", 5, 4, iv, 1, &n), FV_EINVAL);

    /* Repeats are recorded, change nothing; give and withdraw at one instant: empty. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 400, "owner", err, sizeof err),
                     FV_OK);
    check_intervals(ks, NULL, DEV, "clips", T_MIN, T_MAX, all, 2);
    assert_int_equal(
        fv_consent_set(ks, NULL, DEV, "location_history", 1, 500, NULL, err, sizeof err), FV_OK);
    assert_int_equal(
        fv_consent_set(ks, NULL, DEV, "location_history", 0, 500, NULL, err, sizeof err), FV_OK);
    check_intervals(ks, NULL, DEV, "location_history", T_MIN, T_MAX, NULL, 0);
    assert_int_equal(consent_at(ks, DEV, "location_history", 500), 0);

    /* S4: never before the last recorded change of that purpose. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 399, "owner", err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "time order"));
    assert_int_equal(
        fv_consent_set(ks, NULL, DEV, "model_training", 1, 50, "owner", err, sizeof err), FV_OK);
    fv_keystore_close(ks);
}

struct hist {
    struct fv_consent_change v[16];
    size_t n;
};

static int collect_hist(void *arg, const struct fv_consent_change *c)
{
    struct hist *h = arg;
    if (h->n == 16) return -99;
    h->v[h->n++] = *c;
    return 0;
}

static void test_consent_history_and_servable(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("h.db", 1);
    char err[512];
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 100, "owner", err, sizeof err),
                     FV_OK);
    assert_int_equal(
        fv_consent_set(ks, NULL, DEV, "model_training", 1, 50, "alice", err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 0, 200, NULL, err, sizeof err), FV_OK);
    struct hist h = {0};
    assert_int_equal(fv_consent_history(ks, DEV, collect_hist, &h, err, sizeof err), FV_OK);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.v[0].purpose, "model_training");
    assert_int_equal(h.v[0].at_ms, 50);
    assert_string_equal(h.v[0].by, "alice");
    assert_int_equal(h.v[0].granted, 1);
    assert_string_equal(h.v[1].purpose, "clips");
    assert_string_equal(h.v[2].by, "");
    assert_int_equal(h.v[2].granted, 0);
    assert_true(h.v[1].seq < h.v[2].seq);

    /* Withdrawn now: nothing of what was collected under consent may still be served. */
    struct fv_interval iv[4];
    size_t n = 9;
    assert_int_equal(fv_consent_servable(ks, NULL, DEV, "clips", 1000, T_MIN, T_MAX, iv, 4, &n),
                     FV_OK);
    assert_int_equal(n, 0);
    /* Before the withdrawal, it could. */
    assert_int_equal(fv_consent_servable(ks, NULL, DEV, "clips", 150, 0, 1000, iv, 4, &n), FV_OK);
    assert_int_equal(n, 1);
    assert_int_equal(iv[0].from, 100);
    assert_int_equal(iv[0].to, 199);
    /* Granted again: only what was collected while consent held. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 300, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_servable(ks, NULL, DEV, "clips", 1000, 0, 1000, iv, 4, &n), FV_OK);
    assert_int_equal(n, 2);
    assert_int_equal(iv[1].from, 300);
    assert_int_equal(iv[1].to, 1000);
    fv_keystore_close(ks);
}

static void test_contract_purpose(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("k.db", 1);
    char err[512];
    /* Always one full interval, for any subject, nothing recorded. */
    const int64_t full[] = {T_MIN, T_MAX};
    check_intervals(ks, NULL, DEV, "service", T_MIN, T_MAX, full, 1);
    const int64_t part[] = {10, 20};
    check_intervals(ks, NULL, DEV "#7", "service", 10, 20, part, 1);
    assert_int_equal(consent_at(ks, DEV, "service", 0), 1);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "service", 0, 100, "owner", err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "contract"));
    assert_non_null(strstr(err, "6(1)(b)"));
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "service", 1, 100, "owner", err, sizeof err),
                     FV_OK);
    struct hist h = {0};
    assert_int_equal(fv_consent_history(ks, DEV, collect_hist, &h, err, sizeof err), FV_OK);
    assert_int_equal(h.n, 0);
    check_intervals(ks, NULL, DEV, "service", T_MIN, T_MAX, full, 1);

    /* Configurable: no contract purpose at all, then another one. */
    const char *const none[] = {NULL};
    struct fv_purposes pp = {.contract = none};
    check_intervals(ks, &pp, DEV, "service", T_MIN, T_MAX, NULL, 0);
    assert_int_equal(fv_consent_set(ks, &pp, DEV, "service", 1, 100, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, &pp, DEV, "service", 0, 200, NULL, err, sizeof err), FV_OK);
    const int64_t svc[] = {100, 199};
    check_intervals(ks, &pp, DEV, "service", T_MIN, T_MAX, svc, 1);
    const char *const names[] = {"service", "charging", NULL}, *const con[] = {"charging", NULL};
    struct fv_purposes pp2 = {.names = names, .contract = con};
    check_intervals(ks, &pp2, DEV, "charging", 0, 5, (const int64_t[]){0, 5}, 1);
    assert_int_equal(fv_consent_set(ks, &pp2, DEV, "charging", 0, 300, NULL, err, sizeof err),
                     FV_EINVAL);
    fv_keystore_close(ks);
}

static void test_bad_purpose_and_subject(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("b.db", 1);
    char err[512];
    struct fv_interval iv[2];
    size_t n;
    int g;
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clip", 1, 100, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "unknown purpose \"clip\""));
    assert_non_null(strstr(err, "model_training"));
    assert_int_equal(fv_consent_set(ks, NULL, DEV, NULL, 1, 100, NULL, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "", 1, 100, NULL, err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_consent_intervals(ks, NULL, DEV, "marketing", 0, 1, iv, 2, &n), FV_EINVAL);
    assert_int_equal(fv_consent_at(ks, NULL, DEV, "marketing", 0, &g), FV_EINVAL);
    assert_int_equal(g, 0);
    /* Purposes from the access policy. */
    struct fv_policy *pol = NULL;
    assert_int_equal(fv_policy_load(NULL, &pol, err, sizeof err), FV_OK);
    struct fv_purposes pp = {.policy = pol};
    assert_int_equal(fv_consent_set(ks, &pp, DEV, "energy_programs", 1, 100, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_consent_set(ks, &pp, DEV, "marketing", 1, 100, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "energy_programs"));
    fv_policy_free(pol);
    /* Bad values. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 2, 100, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 100, "Bob Smith", err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, T_MIN, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_consent_set(ks, NULL, "a.b", "clips", 1, 100, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#1", "clips", 1, 100, NULL, err, sizeof err),
                     FV_EINVAL);
    /* A subject that does not exist (yet). */
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 100, NULL, err, sizeof err),
                     FV_ENOENT);
    /* Not before the subject's period began: consent cannot cover another owner's time. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 999, NULL, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "another owner"));
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 1000, NULL, err, sizeof err),
                     FV_OK);
    /* A past owner may still withdraw, after the period ended. */
    assert_int_equal(
        fv_consent_set(ks, NULL, DEV, "energy_programs", 0, 5000, "owner", err, sizeof err), FV_OK);
    /* Each subject's consent is its own. */
    assert_int_equal(consent_at(ks, DEV "#2", "clips", 1500), 1);
    assert_int_equal(consent_at(ks, DEV, "clips", 1500), 0);
    assert_int_equal(consent_at(ks, DEV "#2", "energy_programs", 1500), 0);
    fv_keystore_close(ks);
}

static void test_forget(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("f.db", 1);
    char err[512];
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 10, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 1000, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_subjects_forget(ks, DEV, err, sizeof err), FV_OK);
    assert_int_equal(fv_subjects_forget(ks, DEV, err, sizeof err), FV_OK); /* idempotent */
    struct plist l;
    periods(ks, DEV, &l);
    assert_int_equal(l.n, 2); /* the row stays: the history keeps its shape */
    assert_int_equal(l.v[0].erased, 1);
    assert_string_equal(l.v[0].owner, "");
    assert_true(l.v[0].forgotten_ms > 0);
    assert_int_equal(l.v[0].until_ms, 1000);
    assert_int_equal(l.v[1].erased, 0);
    assert_string_equal(l.v[1].owner, OWN2);
    struct hist h = {0};
    assert_int_equal(fv_consent_history(ks, DEV, collect_hist, &h, err, sizeof err), FV_OK);
    assert_int_equal(h.n, 0);
    assert_int_equal(consent_at(ks, DEV, "clips", 500), 0);
    assert_int_equal(consent_at(ks, DEV "#2", "clips", 1500), 1);
    /* A forgotten subject takes no new consent. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 2000, NULL, err, sizeof err),
                     FV_ESTATE);
    /* The key shredded too (the rest of erasure): the owner reads as erased. */
    assert_int_equal(fv_keystore_destroy(ks, DEV "#2", err, sizeof err), FV_OK);
    periods(ks, DEV, &l);
    assert_int_equal(l.v[1].erased, 1);
    assert_string_equal(l.v[1].owner, "");
    assert_int_equal(l.v[1].forgotten_ms, 0);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 0, 2000, NULL, err, sizeof err),
                     FV_ESTATE);
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_EEXIST);
    /* A new owner after erasure is a new subject, as always. */
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN3, 3000, err, sizeof err), FV_OK);
    check_current(ks, DEV, DEV "#3", 3);
    assert_int_equal(fv_subjects_forget(ks, "bad.id", err, sizeof err), FV_EINVAL);
    /* Erasing a never-registered device's implicit subject: key gone, period shows it. */
    assert_int_equal(fv_keystore_destroy(ks, "OTHER-2", err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_set_owner(ks, "OTHER-2", OWN1, err, sizeof err), FV_ESTATE);
    periods(ks, "OTHER-2", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].erased, 1);
    fv_keystore_close(ks);
}

static void test_reopen(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("r.db", 1);
    char err[512];
    assert_int_equal(fv_subject_set_owner(ks, DEV, OWN1, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 1100, NULL, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 0, 1200, NULL, err, sizeof err),
                     FV_OK);
    fv_keystore_close(ks);
    ks = open_ks("r.db", 1); /* init again: a no-op on existing tables */
    check_current(ks, DEV, DEV "#2", 2);
    struct plist l;
    periods(ks, DEV, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].owner, OWN1);
    assert_string_equal(l.v[1].owner, OWN2);
    assert_int_equal(l.v[1].since_ms, 1000);
    const int64_t want[] = {1100, 1199};
    check_intervals(ks, NULL, DEV "#2", "clips", T_MIN, T_MAX, want, 1);
    /* The order rule holds across reopening. */
    assert_int_equal(fv_consent_set(ks, NULL, DEV "#2", "clips", 1, 1150, NULL, err, sizeof err),
                     FV_EINVAL);
    fv_keystore_close(ks);
}

/* Runs sql on the catalog behind the registry's back. */
static void tamper(struct fv_keystore *ks, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec((sqlite3 *)fv_keystore_db(ks), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "tamper: %s\n", msg);
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
}

static void test_corrupt_rows(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("x.db", 1);
    char err[512], name[FV_SUBJECT_NAME_MAX + 1];
    assert_int_equal(fv_subject_set_owner(ks, "DEV-A", OWN1, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, "DEV-A", OWN2, 1000, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_set_owner(ks, "DEV-B", OWN3, err, sizeof err), FV_OK);
    assert_int_equal(fv_subject_change_owner(ks, "DEV-B", OWN1, 1000, err, sizeof err), FV_OK);
    struct plist l;
    /* Swapped sealed owners: the associated data no longer matches. */
    tamper(ks, "CREATE TEMP TABLE o AS SELECT device, epoch, owner FROM subject_periods;"
               "UPDATE subject_periods SET owner = (SELECT owner FROM o WHERE o.device ="
               " subject_periods.device AND o.epoch = 3 - subject_periods.epoch);");
    assert_int_equal(fv_subject_periods(ks, "DEV-A", collect, &l, err, sizeof err), FV_ECORRUPT);
    assert_non_null(strstr(err, "does not open"));
    /* A row that names another subject than its epoch's. */
    tamper(ks, "UPDATE subject_periods SET subject = upper(subject) WHERE epoch = 2");
    assert_int_equal(fv_subject_current(ks, "DEV-A", name, NULL), FV_ECORRUPT);
    tamper(ks, "UPDATE subject_periods SET subject = lower(subject) WHERE epoch = 2");
    assert_int_equal(fv_subject_current(ks, "DEV-A", name, NULL), FV_OK);
    assert_string_equal(name, "DEV-A#2");
    /* A gap between periods, a missing epoch, a closed last period. */
    tamper(ks, "UPDATE subject_periods SET since_ms = 1001 WHERE epoch = 2");
    assert_int_equal(fv_subject_current(ks, "DEV-A", name, NULL), FV_ECORRUPT);
    assert_int_equal(fv_subject_change_owner(ks, "DEV-A", OWN3, 5000, err, sizeof err),
                     FV_ECORRUPT);
    assert_non_null(strstr(err, "does not start"));
    tamper(ks, "UPDATE subject_periods SET since_ms = 1000 WHERE epoch = 2;"
               "UPDATE subject_periods SET until_ms = 9 WHERE epoch = 2");
    assert_int_equal(fv_subject_current(ks, "DEV-A", name, NULL), FV_ECORRUPT);
    tamper(ks, "DELETE FROM subject_periods WHERE epoch = 1");
    assert_int_equal(fv_subject_for_time(ks, "DEV-B", 0, name, NULL), FV_ECORRUPT);
    /* A consent row out of range. */
    assert_int_equal(fv_consent_set(ks, NULL, "DEV-C", "clips", 1, 1, NULL, err, sizeof err),
                     FV_OK);
    tamper(ks, "UPDATE consents SET granted = 7");
    int g = 1;
    assert_int_equal(fv_consent_at(ks, NULL, "DEV-C", "clips", 5, &g), FV_ECORRUPT);
    assert_int_equal(g, 0);
    struct hist h = {0};
    assert_int_equal(fv_consent_history(ks, "DEV-C", collect_hist, &h, err, sizeof err),
                     FV_ECORRUPT);
    fv_keystore_close(ks);
}

static void test_uninitialised(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("u.db", 0);
    char err[512] = "", name[FV_SUBJECT_NAME_MAX + 1];
    int g = 1;
    assert_int_equal(fv_subject_current(ks, DEV, name, NULL), FV_EIO);
    assert_int_equal(fv_subject_change_owner(ks, DEV, OWN1, 1, err, sizeof err), FV_EIO);
    assert_non_null(strstr(err, "subject_periods"));
    assert_int_equal(fv_consent_at(ks, NULL, DEV, "clips", 1, &g), FV_EIO);
    assert_int_equal(g, 0);
    assert_int_equal(fv_consent_set(ks, NULL, DEV, "clips", 1, 1, NULL, err, sizeof err), FV_EIO);
    fv_keystore_close(ks);
}

/* The periods' lookup is a statement the keystore prepares once (fv_keystore_stmt): another
 * keystore's owner change is seen at the next lookup, a failed lookup leaves the statement
 * usable, and a keystore closes cleanly with it cached. */
static void test_cached_lookup_sees_changes(void **state)
{
    (void)state;
    struct fv_keystore *ks = open_ks("c.db", 1), *other = open_ks("c.db", 0);
    char err[512], cur[FV_SUBJECT_NAME_MAX + 1];
    check_current(ks, DEV, DEV, 1);
    assert_int_equal(fv_subject_change_owner(other, DEV, "owner-a", 1000, err, sizeof err), FV_OK);
    check_current(ks, DEV, DEV "#2", 2);
    assert_int_equal(fv_subject_current(ks, "bad.id", cur, NULL), FV_EINVAL);
    for (int i = 0; i < 3; i++)
        check_current(ks, DEV, DEV "#2", 2);
    assert_int_equal(fv_subject_change_owner(other, DEV, "owner-b", 2000, err, sizeof err), FV_OK);
    check_current(ks, DEV, DEV "#3", 3);
    check_current(ks, "OTHER-1", "OTHER-1", 1);
    fv_keystore_close(other);
    fv_keystore_close(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_periods_across_owner_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_for_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_intervals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_history_and_servable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_purpose, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_purpose_and_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uninitialised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_lookup_sees_changes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
