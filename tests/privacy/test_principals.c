/* test_principals.c - principals in the catalog: tokens made, shown once, found again;
 * wrong, malformed and revoked tokens refused; names and roles checked; listing; only the
 * SHA-256 of a token is at rest (the catalog file's bytes hold neither the token's hex nor
 * its bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "privacy/policy.h"
#include "privacy/principals.h"
#include "util/err.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fv-principals-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static sqlite3 *open_db(const char *name)
{
    char p[128], err[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(fv_principals_init(db, err, sizeof err), FV_OK);
    return db;
}

static struct fv_policy *policy(void)
{
    struct fv_policy *p;
    char err[256];
    assert_int_equal(fv_policy_load(NULL, &p, err, sizeof err), FV_OK);
    return p;
}

static void test_create_authenticate(void **state)
{
    (void)state;
    sqlite3 *db = open_db("a.db");
    struct fv_policy *pol = policy();
    char tok[FV_TOKEN_HEX_LEN + 1], tok2[FV_TOKEN_HEX_LEN + 1], err[512];
    assert_int_equal(
        fv_principal_create(db, pol, "alice", "support", "root.cli", tok, err, sizeof err), FV_OK);
    assert_int_equal(strlen(tok), FV_TOKEN_HEX_LEN);
    assert_int_equal(strspn(tok, "0123456789abcdef"), FV_TOKEN_HEX_LEN);
    assert_int_equal(
        fv_principal_create(db, pol, "trainer-1", "ml-pipeline", NULL, tok2, err, sizeof err),
        FV_OK);
    assert_string_not_equal(tok, tok2);
    struct fv_principal p;
    /* A1: roles that read wait for a second principal's approval */
    assert_int_equal(fv_principal_authenticate(db, tok, &p), FV_EAGAIN);
    assert_string_equal(p.name, "alice");
    char tok3[FV_TOKEN_HEX_LEN + 1];
    assert_int_equal(
        fv_principal_create(db, pol, "olga", "privacy-officer", "root.cli", tok3, err, sizeof err),
        FV_OK); /* the first approver: active at once */
    assert_int_equal(fv_principal_authenticate(db, tok3, &p), FV_OK);
    assert_int_equal(
        fv_principal_approve(db, pol, "alice", "olga", "privacy-officer", err, sizeof err), FV_OK);
    assert_int_equal(
        fv_principal_approve(db, pol, "trainer-1", "olga", "privacy-officer", err, sizeof err),
        FV_OK);
    assert_int_equal(fv_principal_authenticate(db, tok, &p), FV_OK);
    assert_string_equal(p.approved_by, "olga");
    assert_string_equal(p.name, "alice");
    assert_string_equal(p.role, "support");
    assert_string_equal(p.created_by, "root.cli");
    assert_true(p.created_ms > 1600000000000);
    assert_int_equal(p.revoked_ms, 0);
    assert_int_equal(fv_principal_authenticate(db, tok2, &p), FV_OK);
    assert_string_equal(p.name, "trainer-1");
    assert_string_equal(p.created_by, "");
    /* upper case is the same token */
    char up[FV_TOKEN_HEX_LEN + 1];
    for (int i = 0; i <= FV_TOKEN_HEX_LEN; i++)
        up[i] = (char)(tok[i] >= 'a' && tok[i] <= 'f' ? tok[i] - 32 : tok[i]);
    assert_int_equal(fv_principal_authenticate(db, up, &p), FV_OK);
    /* every single changed digit is a wrong token */
    char bad[FV_TOKEN_HEX_LEN + 1];
    for (int i = 0; i < FV_TOKEN_HEX_LEN; i++) {
        memcpy(bad, tok, sizeof bad);
        bad[i] = bad[i] == '0' ? '1' : '0';
        assert_int_equal(fv_principal_authenticate(db, bad, &p), FV_ENOENT);
        assert_string_equal(p.name, "");
    }
    /* not tokens at all */
    memcpy(bad, tok, sizeof bad);
    bad[10] = 'g';
    assert_int_equal(fv_principal_authenticate(db, bad, &p), FV_EINVAL);
    bad[10] = '\0';
    assert_int_equal(fv_principal_authenticate(db, bad, &p), FV_EINVAL);
    char longer[FV_TOKEN_HEX_LEN + 2];
    snprintf(longer, sizeof longer, "%s0", tok);
    assert_int_equal(fv_principal_authenticate(db, longer, &p), FV_EINVAL);
    assert_int_equal(fv_principal_authenticate(db, "", &p), FV_EINVAL);
    assert_int_equal(fv_principal_authenticate(db, NULL, &p), FV_EINVAL);
    assert_int_equal(fv_principal_get(db, "alice", &p), FV_OK);
    assert_string_equal(p.role, "support");
    assert_int_equal(fv_principal_get(db, "nobody", &p), FV_ENOENT);
    fv_policy_free(pol);
    sqlite3_close(db);
}

static void test_names_and_roles(void **state)
{
    (void)state;
    sqlite3 *db = open_db("b.db");
    struct fv_policy *pol = policy();
    char tok[FV_TOKEN_HEX_LEN + 1], err[512];
    char n64[65], n65[66];
    memset(n64, 'a', 64);
    n64[64] = '\0';
    memset(n65, 'a', 65);
    n65[65] = '\0';
    const char *bad_names[] = {"", "Alice", "a b", "a/b", "ali\xc3\xa9", "a;drop", n65, NULL};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        strcpy(tok, "x");
        assert_int_equal(
            fv_principal_create(db, pol, bad_names[i], "support", NULL, tok, err, sizeof err),
            FV_EINVAL);
        assert_string_equal(tok, "");
        assert_int_equal(fv_principal_name_valid(bad_names[i]), 0);
    }
    assert_int_equal(fv_principal_create(db, pol, n64, "analyst", NULL, tok, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_principal_create(db, pol, "a.b_c-9", "admin", NULL, tok, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_principal_create(db, pol, "eve", "superuser", NULL, tok, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "unknown role (roles: admin, support, analyst, ml-pipeline, "
                                "privacy-officer, energy-operator, energy-billing, "
                                "data-engineer, labeler)"));
    assert_int_equal(fv_principal_create(db, pol, "eve", NULL, NULL, tok, err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(fv_principal_create(db, pol, "eve", "support", "Root!", tok, err, sizeof err),
                     FV_EINVAL);
    assert_non_null(strstr(err, "created_by"));
    assert_int_equal(fv_principal_create(db, pol, "a.b_c-9", "support", NULL, tok, err, sizeof err),
                     FV_EEXIST);
    assert_non_null(strstr(err, "already exists"));
    assert_string_equal(tok, "");
    fv_policy_free(pol);
    sqlite3_close(db);
}

struct listing {
    int n;
    char names[8][FV_PRINCIPAL_NAME_MAX + 1];
    int revoked[8];
};

static int collect(void *arg, const struct fv_principal *p)
{
    struct listing *l = arg;
    if (l->n == 8) return 99;
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", p->name);
    l->revoked[l->n] = p->revoked_ms != 0;
    l->n++;
    return 0;
}

static int stop(void *arg, const struct fv_principal *p)
{
    (void)arg;
    (void)p;
    return 42;
}

/* Issue 8: "admin" is what the audit log calls the admin token; a principal of that name (or
 * one that reads like it) would pass for it. */
static void test_reserved_names(void **state)
{
    (void)state;
    sqlite3 *db = open_db("r.db");
    struct fv_policy *pol = policy();
    char tok[FV_TOKEN_HEX_LEN + 1], err[512];
    const char *reserved[] = {"admin",      "adm1n",       "ad-min",  "_admin_",
                              "4dmin",      "admin.",      "admln",   "administrator",
                              "fleetvault", "fleet-vault", "unknown", "unkn0wn"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        strcpy(tok, "x");
        if (fv_principal_create(db, pol, reserved[i], "support", NULL, tok, err, sizeof err) !=
            FV_EINVAL)
            fail_msg("principal '%s' was created", reserved[i]);
        assert_non_null(strstr(err, "reserved"));
        assert_string_equal(tok, "");
        assert_int_equal(fv_principal_name_reserved(reserved[i]), 1);
        assert_int_equal(fv_principal_name_valid(reserved[i]), 1); /* valid, only reserved */
    }
    const char *fine[] = {"admins", "admin2", "sysadmin", "alice-admin", "known", "vault", "ops"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        if (fv_principal_create(db, pol, fine[i], "support", NULL, tok, err, sizeof err) != FV_OK)
            fail_msg("principal '%s' refused: %s", fine[i], err);
        assert_int_equal(fv_principal_name_reserved(fine[i]), 0);
    }
    fv_policy_free(pol);
    sqlite3_close(db);
}

/* Issue 9 item 6 (A1): the admin cannot mint readers alone. */
static void test_approval(void **state)
{
    (void)state;
    sqlite3 *db = open_db("e.db");
    struct fv_policy *pol = policy();
    char t1[FV_TOKEN_HEX_LEN + 1], t2[FV_TOKEN_HEX_LEN + 1], t3[FV_TOKEN_HEX_LEN + 1], err[512];
    struct fv_principal p;
    /* an admin-only role reads nothing personal: active at once */
    assert_int_equal(
        fv_principal_create(db, pol, "ops-admin", "admin", "admin", t1, err, sizeof err), FV_OK);
    assert_int_equal(fv_principal_authenticate(db, t1, &p), FV_OK);
    /* the first approver is active; a second one waits like any reader */
    assert_int_equal(
        fv_principal_create(db, pol, "po1", "privacy-officer", "admin", t2, err, sizeof err),
        FV_OK);
    assert_int_equal(fv_principal_authenticate(db, t2, &p), FV_OK);
    assert_int_equal(
        fv_principal_create(db, pol, "po2", "privacy-officer", "admin", t3, err, sizeof err),
        FV_OK);
    assert_int_equal(fv_principal_authenticate(db, t3, &p), FV_EAGAIN);
    assert_int_equal(fv_principal_create(db, pol, "sam", "support", "po1", t3, err, sizeof err),
                     FV_OK);
    /* never the creator, never itself, never a role that does not approve */
    assert_int_equal(
        fv_principal_approve(db, pol, "sam", "po1", "privacy-officer", err, sizeof err), FV_EINVAL);
    assert_int_equal(
        fv_principal_approve(db, pol, "po2", "po2", "privacy-officer", err, sizeof err), FV_EINVAL);
    assert_int_equal(fv_principal_approve(db, pol, "sam", "ops-admin", "admin", err, sizeof err),
                     FV_EINVAL);
    assert_int_equal(
        fv_principal_approve(db, pol, "po2", "po1", "privacy-officer", err, sizeof err), FV_OK);
    assert_int_equal(
        fv_principal_approve(db, pol, "sam", "po2", "privacy-officer", err, sizeof err), FV_OK);
    assert_int_equal(fv_principal_authenticate(db, t3, &p), FV_OK);
    /* approved once; a revoked principal is never approved */
    assert_int_equal(
        fv_principal_approve(db, pol, "sam", "po2", "privacy-officer", err, sizeof err), FV_ESTATE);
    assert_int_equal(
        fv_principal_approve(db, pol, "nobody", "po2", "privacy-officer", err, sizeof err),
        FV_ENOENT);
    fv_policy_free(pol);
    sqlite3_close(db);
}

static void test_revoke_and_list(void **state)
{
    (void)state;
    sqlite3 *db = open_db("c.db");
    struct fv_policy *pol = policy();
    char tb[FV_TOKEN_HEX_LEN + 1], tc[FV_TOKEN_HEX_LEN + 1], ta[FV_TOKEN_HEX_LEN + 1], err[512];
    assert_int_equal(fv_principal_create(db, pol, "bob", "analyst", NULL, tb, err, sizeof err),
                     FV_OK);
    assert_int_equal(
        fv_principal_create(db, pol, "carol", "privacy-officer", "bob", tc, err, sizeof err),
        FV_OK);
    assert_int_equal(fv_principal_create(db, pol, "amy", "support", NULL, ta, err, sizeof err),
                     FV_OK);
    assert_int_equal(
        fv_principal_approve(db, pol, "bob", "carol", "privacy-officer", err, sizeof err), FV_OK);
    assert_int_equal(
        fv_principal_approve(db, pol, "amy", "carol", "privacy-officer", err, sizeof err), FV_OK);
    assert_int_equal(fv_principal_revoke(db, "bob", err, sizeof err), FV_OK);
    struct fv_principal p;
    /* a revoked token is refused, naming whom for the log */
    assert_int_equal(fv_principal_authenticate(db, tb, &p), FV_ESTATE);
    assert_string_equal(p.name, "bob");
    assert_true(p.revoked_ms >= p.created_ms);
    assert_int_equal(fv_principal_authenticate(db, tc, &p), FV_OK);
    assert_int_equal(fv_principal_revoke(db, "bob", err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "already revoked"));
    assert_int_equal(fv_principal_revoke(db, "zed", err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "no principal zed"));
    assert_int_equal(fv_principal_revoke(db, "Bob", err, sizeof err), FV_EINVAL);
    /* a revoked name is never reused */
    assert_int_equal(fv_principal_create(db, pol, "bob", "analyst", NULL, tb, err, sizeof err),
                     FV_EEXIST);
    struct listing l = {0};
    assert_int_equal(fv_principal_list(db, collect, &l, err, sizeof err), FV_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], "amy");
    assert_string_equal(l.names[1], "bob");
    assert_string_equal(l.names[2], "carol");
    assert_int_equal(l.revoked[0], 0);
    assert_int_equal(l.revoked[1], 1);
    assert_int_equal(fv_principal_list(db, stop, NULL, err, sizeof err), 42);
    /* a role later removed from the policy still authenticates; the policy then denies */
    assert_int_equal(sqlite3_exec(db, "UPDATE principals SET role = 'retired' WHERE name = 'amy'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(fv_principal_authenticate(db, ta, &p), FV_OK);
    struct fv_access_request req = {
        .role = p.role, .purpose = "service", .ticket = "T", .classes = 1, .subjects = 1};
    struct fv_decision d;
    fv_policy_decide(pol, &req, &d);
    assert_false(d.allow);
    assert_string_equal(d.reason, "unknown role \"retired\"");
    /* a stored role too long for the struct is corruption, not a truncated role */
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE principals SET role = "
                                  "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' WHERE name = 'amy'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(fv_principal_authenticate(db, ta, &p), FV_ECORRUPT);
    assert_string_equal(p.name, "");
    fv_policy_free(pol);
    sqlite3_close(db);
}

/* Appends the bytes of path to *buf (if it exists). */
static void slurp(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return;
    unsigned char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        unsigned char *nb = realloc(*buf, *len + n);
        assert_non_null(nb);
        memcpy(nb + *len, chunk, n);
        *buf = nb;
        *len += n;
    }
    fclose(f);
}

static void test_only_hashes_at_rest(void **state)
{
    (void)state;
    sqlite3 *db = open_db("rest.db");
    struct fv_policy *pol = policy();
    char tok[FV_TOKEN_HEX_LEN + 1], err[512];
    assert_int_equal(fv_principal_create(db, pol, "dana", "support", NULL, tok, err, sizeof err),
                     FV_OK);
    sqlite3_close(db);
    unsigned char raw[FV_TOKEN_BYTES], h[SHA256_DIGEST_LENGTH];
    for (int i = 0; i < FV_TOKEN_BYTES; i++) {
        unsigned v;
        assert_int_equal(sscanf(tok + 2 * i, "%2x", &v), 1);
        raw[i] = (unsigned char)v;
    }
    SHA256(raw, sizeof raw, h);
    char p[160];
    unsigned char *bytes = NULL;
    size_t len = 0;
    const char *suffix[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/rest.db%s", dir, suffix[i]);
        slurp(p, &bytes, &len);
    }
    assert_true(len > 0);
    assert_null(memmem(bytes, len, tok, FV_TOKEN_HEX_LEN));
    assert_null(memmem(bytes, len, tok, 16)); /* not even a prefix */
    assert_null(memmem(bytes, len, raw, sizeof raw));
    assert_null(memmem(bytes, len, raw, 8));
    assert_non_null(memmem(bytes, len, h, sizeof h)); /* the hash is what is stored */
    assert_non_null(memmem(bytes, len, "dana", 4));
    free(bytes);
    /* and the token still works after reopening */
    db = open_db("rest.db");
    struct fv_principal pr;
    assert_int_equal(fv_principal_authenticate(db, tok, &pr), FV_EAGAIN); /* A1: pending */
    assert_string_equal(pr.name, "dana");
    sqlite3_close(db);
    fv_policy_free(pol);
}

/* Whole rows (the cluster sync's): a row written over another of its name takes its role and
 * token hash (the other token refused), its revocation and approval; the change is queued for
 * the audit log in the same transaction. */
static int count_event(void *arg, const struct fv_principal_event *e)
{
    int *n = arg;
    assert_string_equal(e->name, "twin");
    assert_non_null(strstr(e->detail, "from node st-a"));
    (*n)++;
    return FV_OK;
}

static void test_rows(void **state)
{
    (void)state;
    sqlite3 *db = open_db("rows.db");
    struct fv_policy *pol = policy();
    char tok[FV_TOKEN_HEX_LEN + 1], err[512];
    assert_int_equal(fv_principal_create(db, pol, "twin", "support", NULL, tok, err, sizeof err),
                     FV_OK);
    struct fv_principal_row r, got;
    assert_int_equal(fv_principal_row_get(db, "twin", &r), FV_OK);
    unsigned char h[32];
    assert_int_equal(fv_principal_token_hash(tok, NULL, h), FV_OK);
    assert_memory_equal(r.token_hash, h, 32);
    assert_int_equal(fv_principal_row_get(db, "nobody", &got), FV_ENOENT);
    /* replaced by another principal of the name (jsprincipals.h M1) */
    struct fv_principal_row w = r;
    snprintf(w.p.role, sizeof w.p.role, "ops");
    memset(w.token_hash, 0x5a, sizeof w.token_hash);
    w.p.approved_ms = 1234;
    snprintf(w.p.approved_by, sizeof w.p.approved_by, "po");
    assert_int_equal(fv_principal_row_put(db, &w, "principal.replace", "cluster: from node st-a",
                                          err, sizeof err),
                     FV_OK);
    struct fv_principal p;
    assert_int_equal(fv_principal_authenticate(db, tok, &p), FV_ENOENT); /* the loser's token */
    assert_int_equal(fv_principal_row_get(db, "twin", &got), FV_OK);
    assert_string_equal(got.p.role, "ops");
    assert_int_equal(got.p.approved_ms, 1234);
    assert_memory_equal(got.token_hash, w.token_hash, 32);
    w.p.revoked_ms = 2000;
    assert_int_equal(fv_principal_row_put(db, &w, "principal.revoke", "cluster: from node st-a",
                                          err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_principal_get(db, "twin", &p), FV_OK);
    assert_int_equal(p.revoked_ms, 2000);
    /* a new name is inserted; a bad one refused */
    struct fv_principal_row n = w;
    snprintf(n.p.name, sizeof n.p.name, "newcomer");
    memset(n.token_hash, 0x6b, sizeof n.token_hash);
    assert_int_equal(fv_principal_row_put(db, &n, NULL, NULL, err, sizeof err), FV_OK);
    assert_int_equal(fv_principal_row_get(db, "newcomer", &got), FV_OK);
    snprintf(n.p.name, sizeof n.p.name, "Bad Name");
    assert_int_equal(fv_principal_row_put(db, &n, NULL, NULL, err, sizeof err), FV_EINVAL);
    /* a token hash another name holds: refused, nothing changed */
    snprintf(n.p.name, sizeof n.p.name, "thief");
    memset(n.token_hash, 0x5a, sizeof n.token_hash);
    assert_int_equal(fv_principal_row_put(db, &n, "principal.create", "x", err, sizeof err),
                     FV_EIO);
    assert_int_equal(fv_principal_row_get(db, "thief", &got), FV_ENOENT);
    int events = 0;
    assert_int_equal(fv_principal_events_drain(db, count_event, &events), FV_OK);
    assert_int_equal(events, 2);
    sqlite3_close(db);
    fv_policy_free(pol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_authenticate),
        cmocka_unit_test(test_names_and_roles),
        cmocka_unit_test(test_reserved_names),
        cmocka_unit_test(test_revoke_and_list),
        cmocka_unit_test(test_only_hashes_at_rest),
        cmocka_unit_test(test_approval),
        cmocka_unit_test(test_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
