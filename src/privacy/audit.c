/*
 * audit.c - see audit.h. The format this file owns (also docs/audit.md):
 *
 * DATA/audit/ holds audit-NNNNNNNNNNNNNNNN.jsonl files and LOCK (flock'd by the writer).
 * Each line is one entry: a UTF-8 JSON object written compact (no spaces), keys in this
 * order, absent optional keys left out:
 *   every entry   seq, ts, prev, kind, ..., hash
 *   genesis       prev_file, last_checkpoint
 *   checkpoint    chain_hash, count, key_id, sig
 *   other kinds   action, principal, role, purpose, ticket, subjects, signals, from_ms,
 *                 to_ms, rows, bytes, result, reason, extra
 *
 * Validity rules (fv_audit_verify checks them all, reporting the first one broken):
 *  A1  File names are "audit-" + 16 lowercase hex digits + ".jsonl"; the number is the seq
 *      of the file's first entry. Files are read in name order; other names are ignored.
 *  A2  A line is at most FV_AUDIT_MAX_LINE bytes, ends in '\n', is a JSON object with no
 *      duplicate keys, and its last 75 bytes (before '\n') are ',"hash":"' + 64 lowercase
 *      hex digits + '"}'.
 *  A3  hash = lowercase hex SHA-256 of the line's bytes before those last 75 bytes.
 *  A4  seq is an integer >= 1, one more than the previous entry's, across files.
 *  A5  prev is the previous entry's hash; 64 zeros for seq 1.
 *  A6  ts (ms since the epoch) never decreases.
 *  A7  The first entry of every file, and only it, is a "genesis": seq = the file's number,
 *      prev_file = the previous file's name ("" for the first file), last_checkpoint = the
 *      seq of the last checkpoint before it (0 if none).
 *  A8  A "checkpoint" has chain_hash = prev (the hash of everything before it), count = the
 *      entries between the previous checkpoint and it, key_id = the first 16 hex digits of
 *      SHA-256 of the signer's raw 32-byte Ed25519 public key, and sig = the hex Ed25519
 *      signature of FV_AUDIT_SIGN_CONTEXT + decimal seq + "\n" + chain_hash (no final
 *      newline), which verifies with the public key the witness keeps.
 *  A9  Only the newest file may end in a torn line (no '\n': a crash mid-write). Open cuts
 *      it; verify reports it as a warning.
 *  A10 The log may start at seq > 1 (older files removed) only if some admin entry with
 *      action "audit.retention" has extra.through >= the first seq - 1.
 *  A11 Every checkpoint line in the witness file is in the log at its seq with the same hash,
 *      unless its seq precedes the log's first entry (A10). One past the log's end means
 *      the log was truncated.
 *  A13 Group commit (opts.group_commit, the server): an entry is written with one write
 *      and made durable by the syncer thread, many entries per fdatasync; the caller holds
 *      back what the entry gates until fv_audit_durable_seq reaches its seq. Checkpoints,
 *      a new file's genesis and the previous file's end are still synced on the spot (A12).
 *  A12 Write order: an entry is written with one write and fdatasync'd; a checkpoint is
 *      durable in the log before it is appended to the witness (so the witness never holds
 *      more than the log); a new file's genesis is synced, and the directory too, before
 *      any other entry goes into it; the retention entry and a checkpoint are durable
 *      before any file is unlinked.
 *
 * Threading: a struct fv_audit belongs to one thread. Everything else here is reentrant.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "os/fsio.h"
#include "crypto/certs.h"
#include "privacy/audit.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define SUFFIX_LEN       75 /* ,"hash":" + 64 hex + "} */
#define NAME_LEN         28 /* audit- + 16 hex + .jsonl */
#define DEF_EVERY        1000u
#define DEF_INTERVAL_MS  60000u
#define DEF_FILE_BYTES   (64u << 20)
#define KEY_FILE_MAX     (64u << 10)
#define WITNESS_FILE_MAX (256u << 20)

static const char ZERO_HASH[] = "0000000000000000000000000000000000000000000000000000000000000000";

struct fv_audit {
    char dir[PATH_MAX];
    int lock_fd;
    int fd; /* the newest file, appended to */
    char name[NAME_LEN + 1];
    uint64_t size;  /* of the newest file */
    uint64_t lines; /* in the newest file */
    uint64_t seq;   /* of the last entry */
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t ts;
    uint64_t last_cp_seq;
    uint64_t pending_since; /* clock when the first entry after the last checkpoint came */
    EVP_PKEY *key;
    char key_id[17];
    int wfd; /* witness, or -1 */
    char witness[PATH_MAX];
    uint64_t every, interval_ms, file_bytes, retention_ms;
    uint64_t (*clock_ms)(void *arg);
    void *clock_arg;
    int failed;
    char errbuf[1024];
    /* Group commit (opts.group_commit, A13): the syncer thread makes written lines durable. */
    int group;
    pthread_t syncer;
    int syncer_running;
    pthread_mutex_t mu; /* guards fd (as the syncer reads it), written, durable, stop */
    pthread_cond_t cv;
    uint64_t written, durable; /* seqs: the last entry written, and the last durable */
    int stop, sync_failed;
    char sync_err[256];
    void (*notify)(void *arg);
    void *notify_arg;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void to_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int from_hex(const char *s, size_t nbytes, unsigned char *out)
{
    if (!is_lower_hex(s, 2 * nbytes)) return -1;
    for (size_t i = 0; i < nbytes; i++) {
        int hi = isdigit((unsigned char)s[2 * i]) ? s[2 * i] - '0' : s[2 * i] - 'a' + 10;
        int lo =
            isdigit((unsigned char)s[2 * i + 1]) ? s[2 * i + 1] - '0' : s[2 * i + 1] - 'a' + 10;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void sha256_hex(const void *p, size_t n, char out[FV_AUDIT_HASH_HEX + 1])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256(p, n, h);
    to_hex(h, sizeof h, out);
}

static int valid_kind(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > FV_AUDIT_KIND_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '.' ||
              k[i] == '_' || k[i] == '-'))
            return 0;
    return 1;
}

static int valid_name(const char *name)
{
    return strlen(name) == NAME_LEN && strncmp(name, "audit-", 6) == 0 &&
           is_lower_hex(name + 6, 16) && strcmp(name + 22, ".jsonl") == 0;
}

static uint64_t name_seq(const char *name)
{
    return strtoull(name + 6, NULL, 16);
}

static void make_name(char out[NAME_LEN + 1], uint64_t seq)
{
    snprintf(out, NAME_LEN + 1, "audit-%016" PRIx64 ".jsonl", seq);
}

/* ---- keys ------------------------------------------------------------------------------- */

static int key_id_of(EVP_PKEY *k, char out[17])
{
    unsigned char raw[32], h[SHA256_DIGEST_LENGTH];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(k, raw, &n) != 1 || n != sizeof raw) return FV_EINVAL;
    SHA256(raw, n, h);
    to_hex(h, 8, out);
    return FV_OK;
}

/* The signing key: an unencrypted Ed25519 private key in PEM that only its owner can read. */
static int load_private_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, KEY_FILE_MAX, &text, &len, err, errlen);
    if (rc) return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077)) {
        fv_seterr(err, errlen,
                  "%s: audit signing key is readable by others (mode %03o); chmod 600 it", path,
                  (unsigned)(st.st_mode & 0777));
        rc = FV_EINVAL;
        goto out;
    }
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (bio == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, fv_pem_no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (k == NULL || !EVP_PKEY_is_a(k, "ED25519")) {
        fv_seterr(err, errlen,
                  "%s: not an unencrypted Ed25519 private key in PEM (make one with "
                  "'fleetvault audit keygen PRIV PUB')",
                  path);
        EVP_PKEY_free(k);
        rc = FV_EINVAL;
        goto out;
    }
    *out = k;
out:
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

int fv_audit_keygen(const char *priv_path, const char *pub_path, char *err, size_t errlen)
{
    const char *paths[2] = {priv_path, pub_path};
    for (int i = 0; i < 2; i++)
        if (access(paths[i], F_OK) == 0) {
            fv_seterr(err, errlen, "%s already exists; an audit key is never overwritten",
                      paths[i]);
            return FV_EEXIST;
        }
    int rc = FV_EIO;
    BIO *priv = NULL, *pub = NULL;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        fv_seterr(err, errlen, "Ed25519 key generation failed");
        goto out;
    }
    priv = BIO_new(BIO_s_secmem());
    pub = BIO_new(BIO_s_mem());
    if (priv == NULL || pub == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    if (PEM_write_bio_PrivateKey(priv, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, k) != 1) {
        fv_seterr(err, errlen, "cannot encode the Ed25519 key in PEM");
        goto out;
    }
    char *p;
    long n = BIO_get_mem_data(priv, &p);
    rc = fv_os_write_file_atomic(priv_path, p, (size_t)n, 0600, err, errlen);
    if (rc == FV_OK) {
        n = BIO_get_mem_data(pub, &p);
        rc = fv_os_write_file_atomic(pub_path, p, (size_t)n, 0644, err, errlen);
    }
    if (rc) {
        /* Neither existed before: leave no half pair, nor a file whose directory entry
         * failed to sync (it would be refused as "already exists" at the next start). */
        fv_os_unlink(priv_path, NULL, 0);
        fv_os_unlink(pub_path, NULL, 0);
    }
out:
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(k);
    return rc;
}

static void sign_msg(uint64_t seq, const char *chain_hash, char *msg, size_t n)
{
    snprintf(msg, n, "%s%" PRIu64 "\n%s", FV_AUDIT_SIGN_CONTEXT, seq, chain_hash);
}

static int sign_checkpoint(EVP_PKEY *k, uint64_t seq, const char *chain_hash,
                           char out[FV_AUDIT_SIG_HEX + 1])
{
    char msg[160];
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    sign_msg(seq, chain_hash, msg, sizeof msg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return FV_ENOMEM;
    int ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, strlen(msg)) == 1 &&
             siglen == sizeof sig;
    EVP_MD_CTX_free(ctx);
    if (!ok) return FV_EIO;
    to_hex(sig, sizeof sig, out);
    return FV_OK;
}

/* 1 if valid, 0 if not, negative on error. */
static int verify_checkpoint(EVP_PKEY *k, const struct fv_audit_entry *e)
{
    char msg[160];
    unsigned char sig[64];
    if (from_hex(e->sig, sizeof sig, sig)) return 0;
    sign_msg(e->seq, e->chain_hash, msg, sizeof msg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return FV_ENOMEM;
    int ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(ctx, sig, sizeof sig, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- formatting a line ------------------------------------------------------------------ */

/* Appends "key":value pairs to a buffer; the first error sticks and later calls do nothing. */
struct lw {
    struct fv_buf *b;
    int rc;
    int n; /* members written */
    char *err;
    size_t errlen;
};

static void lw_raw(struct lw *w, const char *s, size_t n)
{
    if (w->rc == FV_OK && fv_buf_append(w->b, s, n)) w->rc = FV_ENOMEM;
}

static void lw_key(struct lw *w, const char *key)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%s\"%s\":", w->n++ ? "," : "{", key);
    lw_raw(w, tmp, (size_t)n);
}

/* A JSON string escaped by jansson; refuses text that is not UTF-8. */
static void lw_jstr(struct lw *w, const char *field, const char *val)
{
    if (w->rc) return;
    json_t *s = json_string(val);
    if (s == NULL) {
        fv_seterr(w->err, w->errlen, "%s is not valid UTF-8", field);
        w->rc = FV_EINVAL;
        return;
    }
    char *d = json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(s);
    if (d == NULL) {
        w->rc = FV_ENOMEM;
        return;
    }
    lw_raw(w, d, strlen(d));
    free(d);
}

static void lw_str(struct lw *w, const char *key, const char *val)
{
    if (val == NULL) return;
    lw_key(w, key);
    lw_jstr(w, key, val);
}

static void lw_u64(struct lw *w, const char *key, uint64_t v)
{
    char tmp[32];
    if (v > INT64_MAX) {
        if (w->rc == FV_OK) {
            fv_seterr(w->err, w->errlen, "%s %" PRIu64 " is out of range", key, v);
            w->rc = FV_EINVAL;
        }
        return;
    }
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    lw_key(w, key);
    lw_raw(w, tmp, (size_t)n);
}

static void lw_i64(struct lw *w, const char *key, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    lw_key(w, key);
    lw_raw(w, tmp, (size_t)n);
}

static void lw_strs(struct lw *w, const char *key, const char *const *v, size_t n)
{
    if (n == 0) return;
    if (v == NULL) {
        if (w->rc == FV_OK) {
            fv_seterr(w->err, w->errlen, "%s: %zu elements but no array", key, n);
            w->rc = FV_EINVAL;
        }
        return;
    }
    lw_key(w, key);
    lw_raw(w, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL) {
            if (w->rc == FV_OK) {
                fv_seterr(w->err, w->errlen, "%s[%zu] is NULL", key, i);
                w->rc = FV_EINVAL;
            }
            return;
        }
        if (i) lw_raw(w, ",", 1);
        lw_jstr(w, key, v[i]);
    }
    lw_raw(w, "]", 1);
}

/* Keys whose values are (by their name) secrets; they never go into the audit log. */
static int secret_name(const char *k)
{
    char lc[64];
    size_t n = strlen(k);
    if (n >= sizeof lc) n = sizeof lc - 1; /* long names: judged by their first 63 bytes */
    for (size_t i = 0; i < n; i++)
        lc[i] = (char)tolower((unsigned char)k[i]);
    lc[n] = '\0';
    static const char *const exact[] = {"key", "authorization", "cookie", "credentials"};
    static const char *const ends[] = {"token", "password", "passwd", "secret",    "passphrase",
                                       "_key",  "-key",     ".key",   "privatekey"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (strcmp(lc, exact[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) {
        size_t m = strlen(ends[i]);
        if (n >= m && strcmp(lc + n - m, ends[i]) == 0) return 1;
    }
    /* camelCase: "apiKey", "signingKey" */
    size_t kn = strlen(k);
    return kn > 3 && strcmp(k + kn - 3, "Key") == 0;
}

static const char *find_secret(json_t *j)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            if (secret_name(k)) return k;
            const char *s = find_secret(v);
            if (s) return s;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            const char *s = find_secret(v);
            if (s) return s;
        }
    }
    return NULL;
}

static void lw_extra(struct lw *w, const char *extra)
{
    if (extra == NULL || w->rc) return;
    json_error_t je;
    json_t *j = json_loads(extra, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL || !json_is_object(j)) {
        fv_seterr(w->err, w->errlen, "extra is not a JSON object%s%s", j ? "" : ": ",
                  j ? "" : je.text);
        json_decref(j);
        w->rc = FV_EINVAL;
        return;
    }
    const char *s = find_secret(j);
    if (s) {
        fv_seterr(w->err, w->errlen,
                  "extra has a field named \"%.60s\": secrets never go into the audit log", s);
        json_decref(j);
        w->rc = FV_EINVAL;
        return;
    }
    char *d = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (d == NULL) {
        w->rc = FV_ENOMEM;
        return;
    }
    lw_key(w, "extra");
    lw_raw(w, d, strlen(d));
    free(d);
}

static void lw_head(struct lw *w, uint64_t seq, uint64_t ts, const char *prev, const char *kind)
{
    lw_u64(w, "seq", seq);
    lw_u64(w, "ts", ts);
    lw_key(w, "prev");
    lw_raw(w, "\"", 1);
    lw_raw(w, prev, FV_AUDIT_HASH_HEX);
    lw_raw(w, "\"", 1);
    lw_str(w, "kind", kind);
}

/* Appends ,"hash":"..."}\n to a finished body and returns the hash in hash_out. */
static int lw_finish(struct lw *w, char hash_out[FV_AUDIT_HASH_HEX + 1])
{
    if (w->rc) return w->rc;
    if (w->b->len + SUFFIX_LEN > FV_AUDIT_MAX_LINE) {
        fv_seterr(w->err, w->errlen,
                  "entry of %zu bytes is longer than %u; split its subjects over several entries",
                  w->b->len + SUFFIX_LEN, FV_AUDIT_MAX_LINE);
        return w->rc = FV_ELIMIT;
    }
    sha256_hex(w->b->data, w->b->len, hash_out);
    lw_raw(w, ",\"hash\":\"", 9);
    lw_raw(w, hash_out, FV_AUDIT_HASH_HEX);
    lw_raw(w, "\"}\n", 3);
    return w->rc;
}

/* ---- parsing a line --------------------------------------------------------------------- */

static int get_uint(json_t *o, const char *key, uint64_t min, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hex(json_t *o, const char *key, size_t n, char *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) != n || !is_lower_hex(json_string_value(v), n))
        return -1;
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

static int all_strings(json_t *a)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a)) return 0;
    json_array_foreach(a, i, v) if (!json_is_string(v)) return 0;
    return 1;
}

/* The optional fields of an event entry have the types fv_audit_append writes. */
static const char *event_field_error(json_t *o)
{
    static const char *const strs[] = {"action", "principal", "role",  "purpose",
                                       "ticket", "result",    "reason"};
    static const char *const ints[] = {"from_ms", "to_ms", "rows", "bytes"};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        json_t *v = json_object_get(o, strs[i]);
        if (v && !json_is_string(v)) return strs[i];
    }
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        json_t *v = json_object_get(o, ints[i]);
        if (v && !json_is_integer(v)) return ints[i];
    }
    json_t *v = json_object_get(o, "subjects");
    if (v && !all_strings(v)) return "subjects";
    v = json_object_get(o, "signals");
    if (v && !all_strings(v)) return "signals";
    v = json_object_get(o, "extra");
    if (v && !json_is_object(v)) return "extra";
    return NULL;
}

int fv_audit_parse_line(const char *line, size_t len, struct fv_audit_entry *e, char *err,
                        size_t errlen)
{
    memset(e, 0, sizeof *e);
    if (len > FV_AUDIT_MAX_LINE) {
        fv_seterr(err, errlen, "line of %zu bytes is longer than %u", len, FV_AUDIT_MAX_LINE);
        return FV_ECORRUPT;
    }
    if (memchr(line, '\n', len) != NULL) {
        fv_seterr(err, errlen, "newline inside the line");
        return FV_ECORRUPT;
    }
    const char *suf = len >= SUFFIX_LEN + 2 ? line + len - SUFFIX_LEN : NULL;
    if (suf == NULL || memcmp(suf, ",\"hash\":\"", 9) != 0 || suf[73] != '"' || suf[74] != '}' ||
        !is_lower_hex(suf + 9, FV_AUDIT_HASH_HEX)) {
        fv_seterr(err, errlen, "line does not end with ,\"hash\":\"<64 hex>\"} (cut or edited?)");
        return FV_ECORRUPT;
    }
    sha256_hex(line, len - SUFFIX_LEN, e->hash);
    if (memcmp(e->hash, suf + 9, FV_AUDIT_HASH_HEX) != 0) {
        fv_seterr(err, errlen, "hash mismatch (edited?)");
        return FV_ECORRUPT;
    }
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    int rc = FV_ECORRUPT;
    const char *bad = NULL;
    if (o == NULL) {
        fv_seterr(err, errlen, "not JSON: %s at column %d", je.text, je.column);
        return FV_ECORRUPT;
    }
    json_t *kind = json_object_get(o, "kind");
    json_t *hash = json_object_get(o, "hash");
    if (!json_is_object(o)) {
        fv_seterr(err, errlen, "not a JSON object");
        goto out;
    }
    if (get_uint(o, "seq", 1, &e->seq))
        bad = "seq";
    else if (get_uint(o, "ts", 0, &e->ts))
        bad = "ts";
    else if (get_hex(o, "prev", FV_AUDIT_HASH_HEX, e->prev))
        bad = "prev";
    else if (!json_is_string(kind) || !valid_kind(json_string_value(kind)))
        bad = "kind";
    else if (!json_is_string(hash) || strcmp(json_string_value(hash), e->hash) != 0)
        bad = "hash";
    if (bad) {
        fv_seterr(err, errlen, "missing or malformed \"%s\"", bad);
        goto out;
    }
    snprintf(e->kind, sizeof e->kind, "%s", json_string_value(kind));
    if (strcmp(e->kind, "genesis") == 0) {
        json_t *pf = json_object_get(o, "prev_file");
        if (!json_is_string(pf) ||
            (json_string_length(pf) != 0 && !valid_name(json_string_value(pf))))
            bad = "prev_file";
        else if (get_uint(o, "last_checkpoint", 0, &e->last_checkpoint) ||
                 e->last_checkpoint >= e->seq)
            bad = "last_checkpoint";
        else
            snprintf(e->prev_file, sizeof e->prev_file, "%s", json_string_value(pf));
    } else if (strcmp(e->kind, "checkpoint") == 0) {
        if (get_hex(o, "chain_hash", FV_AUDIT_HASH_HEX, e->chain_hash))
            bad = "chain_hash";
        else if (get_uint(o, "count", 0, &e->count) || e->count >= e->seq)
            bad = "count";
        else if (get_hex(o, "key_id", 16, e->key_id))
            bad = "key_id";
        else if (get_hex(o, "sig", FV_AUDIT_SIG_HEX, e->sig))
            bad = "sig";
    } else {
        bad = event_field_error(o);
        json_t *act = json_object_get(o, "action");
        if (bad == NULL && strcmp(e->kind, "admin") == 0 && json_is_string(act) &&
            strcmp(json_string_value(act), FV_AUDIT_RETENTION_ACT) == 0 &&
            (get_uint(json_object_get(o, "extra"), "through", 1, &e->retention_through) ||
             e->retention_through >= e->seq))
            bad = "extra.through";
    }
    if (bad) {
        fv_seterr(err, errlen, "%s entry: missing or malformed \"%s\"", e->kind, bad);
        goto out;
    }
    rc = FV_OK;
out:
    json_decref(o);
    return rc;
}

/* ---- reading files ---------------------------------------------------------------------- */

struct flist {
    char (*names)[NAME_LEN + 1];
    size_t n;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The log's files in order (A1). FV_ENOENT if dir does not exist. */
static int list_files(const char *dir, struct flist *out, char *err, size_t errlen)
{
    out->names = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        int e = errno;
        fv_seterr(err, errlen, "opendir %s: %s", dir, strerror(e));
        return e == ENOENT ? FV_ENOENT : FV_EIO;
    }
    size_t cap = 0;
    int rc = FV_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!valid_name(de->d_name)) continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            void *p = realloc(out->names, nc * sizeof *out->names);
            if (p == NULL) {
                rc = FV_ENOMEM;
                break;
            }
            out->names = p;
            cap = nc;
        }
        memcpy(out->names[out->n++], de->d_name, NAME_LEN + 1);
    }
    closedir(d);
    if (rc) {
        free(out->names);
        out->names = NULL;
        out->n = 0;
        return rc;
    }
    if (out->n) qsort(out->names, out->n, sizeof *out->names, cmp_name);
    return FV_OK;
}

/* Called per line without its '\n'; terminated is 0 only for a last line cut short; end is
 * the file offset just past the line. Non-zero stops the walk and is returned. */
typedef int (*line_fn)(void *arg, const char *line, size_t len, uint64_t lineno, int terminated,
                       uint64_t end);

static int each_line(const char *path, line_fn fn, void *arg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        int e = errno;
        fv_seterr(err, errlen, "open %s: %s", path, strerror(e));
        return e == ENOENT ? FV_ENOENT : FV_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    uint64_t lineno = 0, off = 0;
    int rc = FV_OK;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (ferror(f) || (errno != 0 && errno != EINVAL)) {
                rc = errno == ENOMEM ? FV_ENOMEM : FV_EIO;
                fv_seterr(err, errlen, "read %s: %s", path, strerror(errno));
            }
            break;
        }
        off += (uint64_t)n;
        int term = line[n - 1] == '\n';
        rc = fn(arg, line, (size_t)n - (size_t)term, ++lineno, term, off);
        if (rc) break;
    }
    free(line);
    fclose(f);
    return rc;
}

struct first_line {
    struct fv_audit_entry e;
    int ok;
};

static int take_first(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                      uint64_t end)
{
    (void)lineno;
    (void)end;
    struct first_line *fl = arg;
    char e[256];
    fl->ok = term && fv_audit_parse_line(line, len, &fl->e, e, sizeof e) == FV_OK;
    return 1;
}

/* The first entry of a file, if it parses. */
static int read_first(const char *dir, const char *name, struct fv_audit_entry *out)
{
    char path[PATH_MAX];
    struct first_line fl = {.ok = 0};
    char err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    each_line(path, take_first, &fl, err, sizeof err);
    if (!fl.ok) return -1;
    *out = fl.e;
    return 0;
}

/* ---- the writer ------------------------------------------------------------------------- */

static uint64_t clock_now(const struct fv_audit *a)
{
    return a->clock_ms ? a->clock_ms(a->clock_arg) : fv_now_ms();
}

static uint64_t next_ts(const struct fv_audit *a)
{
    uint64_t t = clock_now(a);
    return t > a->ts ? t : a->ts; /* A6: a clock stepping back is clamped */
}

static int fail(struct fv_audit *a, int rc)
{
    a->failed = 1;
    return rc;
}

/* Writes one finished line to the newest file and syncs it; updates the chain state. */
static int write_line(struct fv_audit *a, const struct fv_buf *b, uint64_t seq, uint64_t ts,
                      const char *hash)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->dir, a->name);
    int rc = fv_os_write_all(a->fd, b->data, b->len, path, a->errbuf, sizeof a->errbuf);
    /* A full disk: cut the partial line and refuse this entry; the chain is unchanged and a
     * later entry may fit. Nothing of it was synced, so nothing is lost (unlike a failed
     * fsync); lines written before it are untouched. */
    if (rc && (errno == ENOSPC || errno == EDQUOT) &&
        fv_os_ftruncate(a->fd, (off_t)a->size, path, NULL, 0) == FV_OK)
        return rc;
    if (rc == FV_OK && !a->group) rc = fv_os_fdatasync(a->fd, path, a->errbuf, sizeof a->errbuf);
    if (rc) return fail(a, rc); /* a partial line is a torn tail: open cuts it */
    pthread_mutex_lock(&a->mu);
    a->written = seq;
    if (!a->group) a->durable = seq;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->seq == a->last_cp_seq) a->pending_since = clock_now(a);
    a->seq = seq;
    a->ts = ts;
    memcpy(a->hash, hash, FV_AUDIT_HASH_HEX + 1);
    a->size += b->len;
    a->lines++;
    return FV_OK;
}

/* A13: makes everything written to the newest file durable now (group commit only). */
static int sync_now(struct fv_audit *a)
{
    if (!a->group || a->fd < 0) return FV_OK;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->dir, a->name);
    int rc = fv_os_fdatasync(a->fd, path, a->errbuf, sizeof a->errbuf);
    if (rc) return fail(a, rc);
    pthread_mutex_lock(&a->mu);
    a->written = a->durable = a->seq; /* everything so far, a genesis or checkpoint too */
    pthread_mutex_unlock(&a->mu);
    if (a->notify) a->notify(a->notify_arg);
    return FV_OK;
}

static int witness_append(struct fv_audit *a, const struct fv_buf *b)
{
    if (a->wfd < 0) return FV_OK;
    int rc = fv_os_write_all(a->wfd, b->data, b->len, a->witness, a->errbuf, sizeof a->errbuf);
    if (rc == FV_OK) rc = fv_os_fsync(a->wfd, a->witness, a->errbuf, sizeof a->errbuf);
    /* Fail closed: without its witness the log no longer meets its guarantee. */
    return rc ? fail(a, rc) : FV_OK;
}

static int write_checkpoint(struct fv_audit *a)
{
    if (a->failed) return FV_EIO;
    struct fv_buf b = {0};
    struct lw w = {.b = &b, .err = a->errbuf, .errlen = sizeof a->errbuf};
    char hash[FV_AUDIT_HASH_HEX + 1], sig[FV_AUDIT_SIG_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    int rc = sign_checkpoint(a->key, seq, a->hash, sig);
    if (rc) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "signing checkpoint %" PRIu64 " failed", seq);
        goto out;
    }
    lw_head(&w, seq, ts, a->hash, "checkpoint");
    lw_key(&w, "chain_hash");
    lw_jstr(&w, "chain_hash", a->hash);
    lw_u64(&w, "count", seq - a->last_cp_seq - 1);
    lw_str(&w, "key_id", a->key_id);
    lw_str(&w, "sig", sig);
    rc = lw_finish(&w, hash);
    if (rc == FV_OK) rc = write_line(a, &b, seq, ts, hash);
    if (rc == FV_OK) rc = sync_now(a); /* A12: durable in the log before the witness has it */
    if (rc == FV_OK) rc = witness_append(a, &b);
    if (rc == FV_OK) a->last_cp_seq = seq;
out:
    fv_buf_free(&b);
    return rc;
}

/* Creates the file that starts at seq a->seq + 1 with its genesis entry (A7, A12) and makes
 * it the newest. */
static int start_file(struct fv_audit *a)
{
    char name[NAME_LEN + 1], path[PATH_MAX], hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    make_name(name, seq);
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    struct fv_buf b = {0};
    struct lw w = {.b = &b, .err = a->errbuf, .errlen = sizeof a->errbuf};
    lw_head(&w, seq, ts, seq == 1 ? ZERO_HASH : a->hash, "genesis");
    lw_str(&w, "prev_file", a->fd >= 0 ? a->name : "");
    lw_u64(&w, "last_checkpoint", a->last_cp_seq);
    int rc = lw_finish(&w, hash);
    if (rc) goto out;
    int fd;
    rc = fv_os_open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL, 0600, &fd, a->errbuf,
                    sizeof a->errbuf);
    if (rc == FV_OK) {
        rc = fv_os_write_all(fd, b.data, b.len, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fdatasync(fd, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fsync_dir(a->dir, a->errbuf, sizeof a->errbuf);
    }
    if (rc) {
        /* A full disk: the new file never held an entry; remove it and go on in the current
         * one (the next entry tries again). Anything else fails the log. */
        int full = errno == ENOSPC || errno == EDQUOT;
        if (fd >= 0) close(fd);
        if (full && a->fd >= 0 && (fd < 0 || fv_os_unlink(path, NULL, 0) == FV_OK)) goto out;
        rc = fail(a, FV_EIO);
        goto out;
    }
    if (a->fd >= 0 && (rc = sync_now(a)) != FV_OK) { /* A13: the old file ends durable */
        close(fd);
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    if (a->fd >= 0) close(a->fd);
    a->fd = fd;
    a->written = a->durable = seq; /* the genesis was synced above, the old file before it */
    pthread_mutex_unlock(&a->mu);
    memcpy(a->name, name, sizeof name);
    a->size = b.len;
    a->lines = 1;
    if (a->seq == a->last_cp_seq) a->pending_since = clock_now(a);
    a->seq = seq;
    a->ts = ts;
    memcpy(a->hash, hash, sizeof hash);
out:
    fv_buf_free(&b);
    return rc;
}

static int maybe_rotate(struct fv_audit *a)
{
    if (a->size < a->file_bytes || a->lines < 2) return FV_OK;
    return start_file(a);
}

static int checkpoint_due(struct fv_audit *a)
{
    uint64_t pending = a->seq - a->last_cp_seq;
    if (pending == 0) return 0;
    if (pending >= a->every) return 1;
    /* No entry stays uncovered by a signature for longer than the interval. */
    uint64_t now = clock_now(a);
    return now >= a->pending_since && now - a->pending_since >= a->interval_ms;
}

static int append_entry(struct fv_audit *a, const struct fv_audit_event *ev, int internal,
                        uint64_t *seq_out)
{
    if (!a->failed && a->group && fv_audit_failed(a)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "audit sync: %s", a->sync_err);
        a->failed = 1;
    }
    if (a->failed) {
        if (a->errbuf[0] == '\0')
            fv_seterr(a->errbuf, sizeof a->errbuf, "the audit log has failed");
        return FV_EIO;
    }
    a->errbuf[0] = '\0';
    if (ev == NULL || ev->kind == NULL || !valid_kind(ev->kind)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "kind must be 1-%d of [a-z0-9._-]",
                  FV_AUDIT_KIND_MAX);
        return FV_EINVAL;
    }
    if (strcmp(ev->kind, "genesis") == 0 || strcmp(ev->kind, "checkpoint") == 0 ||
        (!internal && ev->action && strcmp(ev->action, FV_AUDIT_RETENTION_ACT) == 0)) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "kind \"%s\" / action \"%s\" are reserved", ev->kind,
                  ev->action ? ev->action : "");
        return FV_EINVAL;
    }
    if (ev->result && strcmp(ev->result, "allow") != 0 && strcmp(ev->result, "deny") != 0 &&
        strcmp(ev->result, "error") != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "result must be allow, deny or error");
        return FV_EINVAL;
    }
    int rc = maybe_rotate(a);
    if (rc) return rc;
    struct fv_buf b = {0};
    struct lw w = {.b = &b, .err = a->errbuf, .errlen = sizeof a->errbuf};
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t seq = a->seq + 1, ts = next_ts(a);
    lw_head(&w, seq, ts, a->hash, ev->kind);
    lw_str(&w, "action", ev->action);
    lw_str(&w, "principal", ev->principal);
    lw_str(&w, "role", ev->role);
    lw_str(&w, "purpose", ev->purpose);
    lw_str(&w, "ticket", ev->ticket);
    lw_strs(&w, "subjects", ev->subjects, ev->nsubjects);
    lw_strs(&w, "signals", ev->signals, ev->nsignals);
    if (ev->has_range) {
        lw_i64(&w, "from_ms", ev->from_ms);
        lw_i64(&w, "to_ms", ev->to_ms);
    }
    if (strcmp(ev->kind, "access") == 0 || ev->rows || ev->bytes) {
        lw_u64(&w, "rows", ev->rows);
        lw_u64(&w, "bytes", ev->bytes);
    }
    lw_str(&w, "result", ev->result);
    lw_str(&w, "reason", ev->reason);
    lw_extra(&w, ev->extra_json);
    rc = lw_finish(&w, hash);
    if (rc == FV_OK) rc = write_line(a, &b, seq, ts, hash);
    fv_buf_free(&b);
    if (rc) return rc;
    if (seq_out) *seq_out = seq;
    return checkpoint_due(a) ? write_checkpoint(a) : FV_OK;
}

int fv_audit_append(struct fv_audit *a, const struct fv_audit_event *ev, uint64_t *seq_out)
{
    return append_entry(a, ev, 0, seq_out);
}

uint64_t fv_audit_durable_seq(struct fv_audit *a)
{
    pthread_mutex_lock(&a->mu);
    uint64_t d = a->durable;
    pthread_mutex_unlock(&a->mu);
    return d;
}

int fv_audit_failed(struct fv_audit *a)
{
    pthread_mutex_lock(&a->mu);
    int f = a->sync_failed;
    pthread_mutex_unlock(&a->mu);
    return f || a->failed;
}

/* A13: the syncer thread. It syncs a duplicate of the newest file's descriptor, so the loop
 * may switch files (after syncing the old one itself) while a sync runs. */
static void *syncer_main(void *arg)
{
    struct fv_audit *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        if (a->sync_failed || a->written == a->durable) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        uint64_t target = a->written;
        int fd = dup(a->fd);
        pthread_mutex_unlock(&a->mu);
        char err[256] = "";
        int rc = fd < 0 ? FV_EIO : fv_os_fdatasync(fd, a->dir, err, sizeof err);
        if (fd >= 0) close(fd);
        pthread_mutex_lock(&a->mu);
        if (rc) {
            a->sync_failed = 1;
            snprintf(a->sync_err, sizeof a->sync_err, "%s", err[0] ? err : "dup failed");
        } else if (target > a->durable) {
            a->durable = target;
        }
        pthread_mutex_unlock(&a->mu);
        if (a->notify) a->notify(a->notify_arg);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int fv_audit_tick(struct fv_audit *a)
{
    if (fv_audit_failed(a)) {
        if (!a->failed && a->sync_err[0])
            fv_seterr(a->errbuf, sizeof a->errbuf, "audit sync: %s", a->sync_err);
        a->failed = 1;
        return FV_EIO;
    }
    return checkpoint_due(a) ? write_checkpoint(a) : FV_OK;
}

int fv_audit_checkpoint(struct fv_audit *a)
{
    if (a->failed) return FV_EIO;
    return a->seq > a->last_cp_seq ? write_checkpoint(a) : FV_OK;
}

const char *fv_audit_last_error(const struct fv_audit *a)
{
    return a->errbuf;
}

uint64_t fv_audit_last_seq(const struct fv_audit *a)
{
    return a->seq;
}

/* ---- opening: recovering the newest file ------------------------------------------------ */

struct recover {
    const char *name;
    uint64_t seq, ts, last_cp, lines;
    char hash[FV_AUDIT_HASH_HEX + 1];
    uint64_t good_end; /* offset past the last complete line */
    int torn;
    char *err;
    size_t errlen;
};

static int recover_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                        uint64_t end)
{
    struct recover *r = arg;
    struct fv_audit_entry e;
    char why[256];
    if (!term) { /* A9: a crash mid-write; cut below */
        r->torn = 1;
        return 0;
    }
    if (fv_audit_parse_line(line, len, &e, why, sizeof why)) {
        fv_seterr(r->err, r->errlen, "%s:%" PRIu64 ": %s; run 'fleetvault audit verify'", r->name,
                  lineno, why);
        return FV_ECORRUPT;
    }
    const char *bad = NULL;
    if (lineno == 1 && (strcmp(e.kind, "genesis") != 0 || e.seq != name_seq(r->name)))
        bad = "the first entry is not the genesis the file name announces";
    else if (lineno > 1 && strcmp(e.kind, "genesis") == 0)
        bad = "genesis entry inside the file";
    else if (lineno > 1 && e.seq != r->seq + 1)
        bad = "seq does not follow the previous entry's";
    else if (lineno > 1 && strcmp(e.prev, r->hash) != 0)
        bad = "prev does not match the previous entry's hash";
    else if (lineno > 1 && e.ts < r->ts)
        bad = "ts goes backwards";
    if (bad) {
        fv_seterr(r->err, r->errlen, "%s:%" PRIu64 ": %s; run 'fleetvault audit verify'", r->name,
                  lineno, bad);
        return FV_ECORRUPT;
    }
    if (lineno == 1) r->last_cp = e.last_checkpoint;
    if (strcmp(e.kind, "checkpoint") == 0) r->last_cp = e.seq;
    r->seq = e.seq;
    r->ts = e.ts;
    memcpy(r->hash, e.hash, sizeof r->hash);
    r->good_end = end;
    r->lines = lineno;
    return 0;
}

/* Finds the newest file with at least one entry, cuts its torn tail, and opens it. Newest
 * files left empty by a crash while they were created are removed. */
static int recover_newest(struct fv_audit *a, struct flist *fl)
{
    while (fl->n > 0) {
        const char *name = fl->names[fl->n - 1];
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", a->dir, name);
        struct recover r = {.name = name, .err = a->errbuf, .errlen = sizeof a->errbuf};
        int rc = each_line(path, recover_line, &r, a->errbuf, sizeof a->errbuf);
        if (rc) return rc;
        int fd;
        if (fv_os_open(path, O_RDWR | O_APPEND, 0, &fd, a->errbuf, sizeof a->errbuf) != FV_OK)
            return FV_EIO;
        struct stat st;
        if (fstat(fd, &st) != 0) {
            fv_seterr(a->errbuf, sizeof a->errbuf, "stat %s: %s", path, strerror(errno));
            close(fd);
            return FV_EIO;
        }
        if ((uint64_t)st.st_size != r.good_end) {
            rc = fv_os_ftruncate(fd, (off_t)r.good_end, path, a->errbuf, sizeof a->errbuf);
            if (rc) {
                close(fd);
                return rc;
            }
            rc = fv_os_fsync(fd, path, a->errbuf, sizeof a->errbuf);
            if (rc) {
                close(fd);
                return rc;
            }
        }
        if (r.lines == 0) { /* created, but its genesis never became durable */
            close(fd);
            rc = fv_os_unlink(path, a->errbuf, sizeof a->errbuf);
            if (rc) return FV_EIO;
            rc = fv_os_fsync_dir(a->dir, a->errbuf, sizeof a->errbuf);
            if (rc) return rc;
            fl->n--;
            continue;
        }
        a->fd = fd;
        memcpy(a->name, name, NAME_LEN + 1);
        a->size = r.good_end;
        a->lines = r.lines;
        a->seq = r.seq;
        a->ts = r.ts;
        a->last_cp_seq = r.last_cp;
        memcpy(a->hash, r.hash, sizeof a->hash);
        return FV_OK;
    }
    return FV_ENOENT;
}

static int open_witness(struct fv_audit *a, const char *path)
{
    if (snprintf(a->witness, sizeof a->witness, "%s", path) >= (int)sizeof a->witness) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "witness path too long");
        return FV_EINVAL;
    }
    if (fv_os_open(path, O_RDWR | O_APPEND | O_CREAT, 0600, &a->wfd, a->errbuf, sizeof a->errbuf) !=
        FV_OK)
        return FV_EIO;
    char rd[PATH_MAX], rw[PATH_MAX];
    if (realpath(a->dir, rd) != NULL && realpath(path, rw) != NULL) {
        size_t n = strlen(rd);
        if (strncmp(rw, rd, n) == 0 && rw[n] == '/') {
            fv_seterr(a->errbuf, sizeof a->errbuf,
                      "witness %s is inside the audit directory; keep it outside (another disk "
                      "or machine)",
                      path);
            return FV_EINVAL;
        }
    }
    /* A torn last witness line (crash mid-append) is closed so the next one starts clean;
     * the witness may be append-only, so it is never truncated. */
    struct stat st;
    char last = '\n';
    if (fstat(a->wfd, &st) != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "stat %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    if (st.st_size > 0 && pread(a->wfd, &last, 1, st.st_size - 1) != 1) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "read %s: %s", path, strerror(errno));
        return FV_EIO;
    }
    if (last != '\n') {
        int rc = fv_os_write_all(a->wfd, "\n", 1, path, a->errbuf, sizeof a->errbuf);
        if (rc == FV_OK) rc = fv_os_fsync(a->wfd, path, a->errbuf, sizeof a->errbuf);
        return rc;
    }
    return FV_OK;
}

static void free_audit(struct fv_audit *a)
{
    if (a->syncer_running) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->syncer, NULL);
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    if (a->fd >= 0) close(a->fd);
    if (a->wfd >= 0) close(a->wfd);
    if (a->lock_fd >= 0) close(a->lock_fd);
    EVP_PKEY_free(a->key);
    free(a);
}

int fv_audit_open(const char *dir, const struct fv_audit_opts *opts, struct fv_audit **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    if (opts == NULL || opts->key_path == NULL) {
        fv_seterr(err, errlen, "the audit log needs a signing key (opts.key_path)");
        return FV_EINVAL;
    }
    struct fv_audit *a = calloc(1, sizeof *a);
    if (a == NULL) return FV_ENOMEM;
    a->fd = a->wfd = a->lock_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->every = opts->checkpoint_every ? opts->checkpoint_every : DEF_EVERY;
    a->interval_ms = opts->checkpoint_interval_ms ? opts->checkpoint_interval_ms : DEF_INTERVAL_MS;
    a->file_bytes = opts->file_bytes ? opts->file_bytes : DEF_FILE_BYTES;
    a->retention_ms = opts->retention_ms;
    a->clock_ms = opts->clock_ms;
    a->clock_arg = opts->clock_arg;
    struct flist fl = {0};
    char lock[PATH_MAX];
    int rc = FV_EINVAL;
    if (snprintf(a->dir, sizeof a->dir, "%s", dir) >= (int)sizeof a->dir ||
        snprintf(lock, sizeof lock, "%s/LOCK", dir) >= (int)sizeof lock) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "path too long: %s", dir);
        goto out;
    }
    rc = fv_os_mkdirs(dir, 0700, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = fv_os_open(lock, O_RDWR | O_CREAT, 0600, &a->lock_fd, a->errbuf, sizeof a->errbuf);
    if (rc) {
        rc = FV_EIO;
        goto out;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fv_seterr(a->errbuf, sizeof a->errbuf, "%s: the audit log is open in another process", dir);
        rc = FV_EAGAIN;
        goto out;
    }
    rc = load_private_key(opts->key_path, &a->key, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = key_id_of(a->key, a->key_id);
    if (rc) goto out;
    if (opts->witness_path) {
        rc = open_witness(a, opts->witness_path);
        if (rc) goto out;
    }
    rc = list_files(dir, &fl, a->errbuf, sizeof a->errbuf);
    if (rc) goto out;
    rc = recover_newest(a, &fl);
    if (rc == FV_ENOENT) {
        if (fl.n == 0) {
            rc = start_file(a);
        } else { /* unreachable: recover_newest only drops files it empties */
            fv_seterr(a->errbuf, sizeof a->errbuf, "%s: no usable audit file", dir);
            rc = FV_ECORRUPT;
        }
    }
    if (rc) goto out;
    rc = fv_audit_checkpoint(a);
    if (rc == FV_OK) {
        pthread_mutex_lock(&a->mu);
        a->written = a->durable = a->seq; /* everything found at open is durable (synced) */
        pthread_mutex_unlock(&a->mu);
    }
    if (rc == FV_OK && opts->group_commit) {
        a->notify = opts->notify;
        a->notify_arg = opts->notify_arg;
        a->group = 1;
        if (pthread_create(&a->syncer, NULL, syncer_main, a) != 0) {
            fv_seterr(a->errbuf, sizeof a->errbuf, "cannot start the audit syncer thread");
            rc = FV_ENOMEM;
        } else {
            a->syncer_running = 1;
        }
    }
out:
    free(fl.names);
    if (rc) {
        fv_seterr(err, errlen, "%s", a->errbuf[0] ? a->errbuf : fv_strerror(rc));
        free_audit(a);
        return rc;
    }
    *out = a;
    return FV_OK;
}

int fv_audit_close(struct fv_audit *a)
{
    if (a == NULL) return FV_OK;
    int rc = fv_audit_failed(a) ? FV_EIO : fv_audit_checkpoint(a);
    if (rc == FV_OK) rc = sync_now(a);
    free_audit(a);
    return rc;
}

/* ---- retention -------------------------------------------------------------------------- */

int fv_audit_apply_retention(struct fv_audit *a, uint64_t now_ms, uint64_t *deleted)
{
    if (deleted) *deleted = 0;
    if (a->failed) return FV_EIO;
    if (a->retention_ms == 0 || now_ms < a->retention_ms) return FV_OK;
    uint64_t cutoff = now_ms - a->retention_ms;
    struct flist fl;
    int rc = list_files(a->dir, &fl, a->errbuf, sizeof a->errbuf);
    if (rc) return rc;
    /* File i holds nothing newer than the genesis of file i+1 (A6), so it may go once that
     * genesis is older than the cutoff. The newest file always stays. */
    size_t k = 0;
    uint64_t through = 0;
    while (k + 1 < fl.n && strcmp(fl.names[k + 1], a->name) <= 0) {
        struct fv_audit_entry g;
        if (read_first(a->dir, fl.names[k + 1], &g) != 0 || g.ts >= cutoff) break;
        through = g.seq - 1;
        k++;
    }
    if (k == 0) goto out;
    json_t *files = json_array();
    for (size_t i = 0; files && i < k; i++)
        if (json_array_append_new(files, json_string(fl.names[i]))) {
            json_decref(files);
            files = NULL;
        }
    json_t *x = files ? json_pack("{s:o,s:I,s:I}", "files", files, "through", (json_int_t)through,
                                  "retention_ms", (json_int_t)a->retention_ms)
                      : NULL;
    char *xs = x ? json_dumps(x, JSON_COMPACT) : NULL;
    json_decref(x);
    if (xs == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    char reason[96];
    snprintf(reason, sizeof reason, "entries older than %" PRIu64 " ms", a->retention_ms);
    struct fv_audit_event ev = {.kind = "admin",
                                .action = FV_AUDIT_RETENTION_ACT,
                                .principal = "fleetvault",
                                .result = "allow",
                                .reason = reason,
                                .extra_json = xs};
    rc = append_entry(a, &ev, 1, NULL);
    free(xs);
    if (rc == FV_OK) rc = fv_audit_checkpoint(a); /* A12: the witness learns it first */
    for (size_t i = 0; rc == FV_OK && i < k; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", a->dir, fl.names[i]);
        int u = fv_os_unlink(path, a->errbuf, sizeof a->errbuf);
        if (u != FV_OK && u != FV_ENOENT) {
            rc = FV_EIO;
        } else if (deleted) {
            (*deleted)++;
        }
    }
    if (rc == FV_OK) rc = fv_os_fsync_dir(a->dir, a->errbuf, sizeof a->errbuf);
out:
    free(fl.names);
    return rc;
}

/* ---- verification ----------------------------------------------------------------------- */

struct wcp {
    uint64_t seq, ts;
    char hash[FV_AUDIT_HASH_HEX + 1];
};

#define MAX_PUBKEYS 16

/* The verifier's public keys (one file of concatenated PEM keys, e.g. after a rotation);
 * each checkpoint is checked with the key its key_id names. */
struct pubkeys {
    EVP_PKEY *k[MAX_PUBKEYS];
    char id[MAX_PUBKEYS][17];
    char ids[MAX_PUBKEYS * 18]; /* "id1,id2" for messages */
    size_t n;
};

static int load_pubkeys(const char *path, struct pubkeys *pk, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, KEY_FILE_MAX, &text, &len, err, errlen);
    if (rc) return rc;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (bio == NULL) {
        free(text);
        return FV_ENOMEM;
    }
    EVP_PKEY *k;
    while (rc == FV_OK && (k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL) {
        if (!EVP_PKEY_is_a(k, "ED25519") || pk->n == MAX_PUBKEYS) {
            fv_seterr(err, errlen, "%s: key %zu is not Ed25519, or more than %d keys", path,
                      pk->n + 1, MAX_PUBKEYS);
            EVP_PKEY_free(k);
            rc = FV_EINVAL;
            break;
        }
        pk->k[pk->n] = k;
        key_id_of(k, pk->id[pk->n]);
        size_t at = strlen(pk->ids);
        snprintf(pk->ids + at, sizeof pk->ids - at, "%s%s", pk->n ? "," : "", pk->id[pk->n]);
        pk->n++;
    }
    ERR_clear_error(); /* the read past the last key leaves "no start line" queued */
    BIO_free(bio);
    free(text);
    if (rc == FV_OK && pk->n == 0) {
        fv_seterr(err, errlen,
                  "%s: no Ed25519 public key in PEM (the PUB of 'fleetvault audit "
                  "keygen')",
                  path);
        rc = FV_EINVAL;
    }
    return rc;
}

static void free_pubkeys(struct pubkeys *pk)
{
    for (size_t i = 0; i < pk->n; i++)
        EVP_PKEY_free(pk->k[i]);
    pk->n = 0;
}

/* 1 if the checkpoint's signature verifies with the key its key_id names, 0 if not, -1 if
 * no key given has that id, or a negative error code. */
static int check_sig(const struct pubkeys *pk, const struct fv_audit_entry *e)
{
    for (size_t i = 0; i < pk->n; i++)
        if (strcmp(pk->id[i], e->key_id) == 0) return verify_checkpoint(pk->k[i], e);
    return -1;
}

struct verify {
    struct fv_audit_report *r;
    struct pubkeys pk;
    const char *dir;
    const char *name; /* the file being read */
    const char *prev_name;
    int newest;
    uint64_t lines_in_file;
    int have_prev;
    uint64_t seq, ts;
    char hash[FV_AUDIT_HASH_HEX + 1];
    int cp_known;
    uint64_t last_cp;
    uint64_t retention_through;
    char first_file[NAME_LEN + 1];
    struct wcp *w;
    size_t wn, wi;
    uint64_t witness_last; /* highest witnessed seq found in the log */
    int torn;
    char torn_at[96];
};

__attribute__((format(printf, 4, 5))) static int broken(struct verify *v, uint64_t lineno,
                                                        uint64_t seq, const char *fmt, ...)
{
    struct fv_audit_report *r = v->r;
    r->ok = 0;
    snprintf(r->bad_file, sizeof r->bad_file, "%s", v->name ? v->name : "");
    r->bad_line = lineno;
    r->bad_seq = seq;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (seq)
        snprintf(r->message, sizeof r->message, "%s:%" PRIu64 " (seq %" PRIu64 "): %s", r->bad_file,
                 lineno, seq, what);
    else
        snprintf(r->message, sizeof r->message, "%s:%" PRIu64 ": %s", r->bad_file, lineno, what);
    return FV_ECORRUPT;
}

static int verify_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                       uint64_t end)
{
    (void)end;
    struct verify *v = arg;
    struct fv_audit_entry e;
    char why[256];
    v->lines_in_file = lineno;
    if (!term) {
        if (!v->newest)
            return broken(v, lineno, 0, "last line is cut short in a file that is not the newest");
        v->torn = 1;
        snprintf(v->torn_at, sizeof v->torn_at, "%s:%" PRIu64, v->name, lineno);
        return 0;
    }
    if (fv_audit_parse_line(line, len, &e, why, sizeof why)) {
        /* Name the seq when the line still says it, to help find the entry. */
        uint64_t seq = 0;
        if (len > 7 && memcmp(line, "{\"seq\":", 7) == 0) seq = strtoull(line + 7, NULL, 10);
        return broken(v, lineno, seq, "%s", why);
    }
    uint64_t file_seq = name_seq(v->name);
    int genesis = strcmp(e.kind, "genesis") == 0;
    if (lineno == 1 && !genesis)
        return broken(v, lineno, e.seq, "the file does not start with a genesis entry");
    if (lineno == 1 && e.seq != file_seq)
        return broken(v, lineno, e.seq, "the file name says it starts at seq %" PRIu64, file_seq);
    if (lineno > 1 && genesis)
        return broken(v, lineno, e.seq, "genesis entry inside a file (lines moved between files?)");
    if (!v->have_prev) {
        v->r->first_seq = e.seq;
        snprintf(v->first_file, sizeof v->first_file, "%s", v->name);
        if (e.seq == 1 && (strcmp(e.prev, ZERO_HASH) != 0 || e.prev_file[0]))
            return broken(v, lineno, e.seq,
                          "the first entry must have prev 0...0 and no prev_file");
        v->cp_known = 1;
        v->last_cp = e.last_checkpoint;
    } else {
        if (e.seq > v->seq + 1 && genesis)
            return broken(v, lineno, e.seq,
                          "seq gap %" PRIu64 " -> %" PRIu64 ": file(s) missing between %s and "
                          "this one (its genesis names %s)",
                          v->seq, e.seq, v->prev_name, e.prev_file[0] ? e.prev_file : "none");
        if (e.seq > v->seq + 1)
            return broken(v, lineno, e.seq,
                          "seq gap %" PRIu64 " -> %" PRIu64 " (entry deleted or reordered?)",
                          v->seq, e.seq);
        if (e.seq <= v->seq)
            return broken(v, lineno, e.seq,
                          "seq %" PRIu64 " after %" PRIu64 " (entries reordered or duplicated?)",
                          e.seq, v->seq);
        if (strcmp(e.prev, v->hash) != 0)
            return broken(v, lineno, e.seq,
                          "prev does not match the hash of seq %" PRIu64
                          " (an entry before it edited, replaced or reordered?)",
                          v->seq);
        if (genesis && strcmp(e.prev_file, v->prev_name) != 0)
            return broken(v, lineno, e.seq,
                          "genesis names prev_file %s but the previous file is %s", e.prev_file,
                          v->prev_name);
        if (genesis && e.last_checkpoint != v->last_cp)
            return broken(v, lineno, e.seq,
                          "genesis says the last checkpoint is seq %" PRIu64 ", not %" PRIu64,
                          e.last_checkpoint, v->last_cp);
        if (e.ts < v->ts)
            return broken(v, lineno, e.seq, "ts goes backwards (%" PRIu64 " -> %" PRIu64 ")", v->ts,
                          e.ts);
    }
    if (strcmp(e.kind, "checkpoint") == 0) {
        if (strcmp(e.chain_hash, e.prev) != 0)
            return broken(v, lineno, e.seq, "checkpoint chain_hash differs from its prev");
        if (v->cp_known && e.count != e.seq - v->last_cp - 1)
            return broken(v, lineno, e.seq,
                          "checkpoint count %" PRIu64 " but %" PRIu64
                          " entries follow the previous checkpoint",
                          e.count, e.seq - v->last_cp - 1);
        if (v->pk.n) {
            int ok = check_sig(&v->pk, &e);
            if (ok == -1)
                return broken(v, lineno, e.seq,
                              "bad checkpoint signature: signed by key %s, not among the public "
                              "keys given (%s)",
                              e.key_id, v->pk.ids);
            if (ok < 0) return ok;
            if (!ok) return broken(v, lineno, e.seq, "bad checkpoint signature (forged?)");
            v->r->signatures_verified++;
        }
        v->r->checkpoints++;
        v->r->last_checkpoint_seq = e.seq;
        v->cp_known = 1;
        v->last_cp = e.seq;
    }
    if (e.retention_through > v->retention_through) v->retention_through = e.retention_through;
    /* A11: witnessed checkpoints before the log's start were removed by retention (A10). */
    while (v->wi < v->wn && v->w[v->wi].seq < e.seq)
        v->wi++;
    if (v->wi < v->wn && v->w[v->wi].seq == e.seq) {
        if (strcmp(v->w[v->wi].hash, e.hash) != 0)
            return broken(v, lineno, e.seq,
                          "differs from the witness's checkpoint for seq %" PRIu64
                          " (log rewritten after it was witnessed?)",
                          e.seq);
        v->r->witness_matched++;
        v->witness_last = e.seq;
        v->wi++;
    }
    v->have_prev = 1;
    v->seq = e.seq;
    v->ts = e.ts;
    memcpy(v->hash, e.hash, sizeof v->hash);
    v->r->entries++;
    v->r->last_seq = e.seq;
    return 0;
}

static int cmp_wcp(const void *a, const void *b)
{
    const struct wcp *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void add_warning(struct fv_audit_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warning(struct fv_audit_report *r, const char *fmt, ...)
{
    size_t n = strlen(r->warning);
    if (n + 2 >= sizeof r->warning) return;
    if (n) {
        r->warning[n++] = ';';
        r->warning[n++] = ' ';
        r->warning[n] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warning + n, sizeof r->warning - n, fmt, ap);
    va_end(ap);
}

/* Reads the witness file's checkpoints, sorted by seq. Two different checkpoints for one seq
 * mean the log was rewritten and witnessed again: broken. */
static int load_witness(struct verify *v, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, WITNESS_FILE_MAX, &text, &len, err, errlen);
    if (rc) return rc;
    size_t cap = 0;
    uint64_t lineno = 0, bad = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        lineno++;
        struct fv_audit_entry e;
        char why[256];
        if (n == 0) {
            /* blank: a torn line closed on open */
        } else if (fv_audit_parse_line(text + at, n, &e, why, sizeof why) != FV_OK ||
                   strcmp(e.kind, "checkpoint") != 0 || (v->pk.n && check_sig(&v->pk, &e) != 1)) {
            if (bad++ == 0)
                add_warning(v->r,
                            "witness line %" PRIu64 " ignored (not a checkpoint with a good "
                            "hash%s)",
                            lineno, v->pk.n ? " and signature" : "");
        } else {
            if (v->wn == cap) {
                size_t nc = cap ? cap * 2 : 64;
                void *p = realloc(v->w, nc * sizeof *v->w);
                if (p == NULL) {
                    rc = FV_ENOMEM;
                    break;
                }
                v->w = p;
                cap = nc;
            }
            struct wcp *c = &v->w[v->wn++];
            c->seq = e.seq;
            c->ts = e.ts;
            memcpy(c->hash, e.hash, sizeof c->hash);
        }
        at += n + (nl != NULL);
    }
    free(text);
    if (rc) return rc;
    if (bad > 1) add_warning(v->r, "%" PRIu64 " witness lines ignored in all", bad);
    v->r->witness_checkpoints = v->wn;
    if (v->wn) qsort(v->w, v->wn, sizeof *v->w, cmp_wcp);
    size_t k = 0;
    for (size_t i = 0; i < v->wn; i++) {
        if (k && v->w[k - 1].seq == v->w[i].seq) {
            if (strcmp(v->w[k - 1].hash, v->w[i].hash) != 0) {
                v->name = "(witness)";
                return broken(v, 0, v->w[i].seq,
                              "the witness holds two different checkpoints for seq %" PRIu64
                              " (log rewritten and witnessed again?)",
                              v->w[i].seq);
            }
            continue;
        }
        v->w[k++] = v->w[i];
    }
    v->wn = k;
    return FV_OK;
}

int fv_audit_verify(const char *dir, const char *pubkey_path, const char *witness_path,
                    struct fv_audit_report *report, char *err, size_t errlen)
{
    memset(report, 0, sizeof *report);
    if (err && errlen) err[0] = '\0';
    struct verify v = {.r = report, .dir = dir};
    struct flist fl = {0};
    int rc = FV_OK;
    report->ok = 1;
    if (pubkey_path) {
        rc = load_pubkeys(pubkey_path, &v.pk, err, errlen);
        if (rc) goto out;
    }
    if (witness_path) {
        rc = load_witness(&v, witness_path, err, errlen);
        if (rc) goto out;
    }
    rc = list_files(dir, &fl, err, errlen);
    if (rc == FV_OK && fl.n == 0) {
        fv_seterr(err, errlen, "no audit files in %s", dir);
        rc = FV_ENOENT;
    }
    if (rc) goto out;
    for (size_t i = 0; i < fl.n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fl.names[i]);
        v.prev_name = i ? fl.names[i - 1] : "";
        v.name = fl.names[i];
        v.newest = i + 1 == fl.n;
        v.lines_in_file = 0;
        report->files++;
        rc = each_line(path, verify_line, &v, err, errlen);
        if (rc) goto out;
        if (v.lines_in_file == 0) {
            if (!v.newest) {
                rc = broken(&v, 1, 0, "empty file");
                goto out;
            }
            add_warning(report, "%s is empty (crash while it was created; removed on next open)",
                        v.name);
        }
    }
    if (report->entries == 0) {
        v.name = fl.names[0];
        rc = broken(&v, 1, 0, "no entries");
        goto out;
    }
    if (report->first_seq > 1 && v.retention_through + 1 < report->first_seq) {
        v.name = v.first_file;
        rc = broken(&v, 1, report->first_seq,
                    "the log starts at seq %" PRIu64 " but no audit.retention entry records the "
                    "removal of seq 1..%" PRIu64 " (oldest files deleted?)",
                    report->first_seq, report->first_seq - 1);
        goto out;
    }
    if (v.wi < v.wn) {
        v.name = fl.names[fl.n - 1];
        rc = broken(&v, v.lines_in_file + 1, report->last_seq + 1,
                    "log truncated: the witness holds checkpoint seq %" PRIu64 " (ts %" PRIu64
                    ") but the log ends at seq %" PRIu64,
                    v.w[v.wn - 1].seq, v.w[v.wn - 1].ts, report->last_seq);
        goto out;
    }
    if (v.torn)
        add_warning(report, "torn last line at %s (a crash mid-write; cut on next open)",
                    v.torn_at);
    if (!pubkey_path) add_warning(report, "checkpoint signatures not checked (no public key)");
    if (witness_path) {
        report->unproven = report->last_seq - v.witness_last;
        if (report->unproven)
            add_warning(report,
                        "%" PRIu64 " entries after seq %" PRIu64 " (the last checkpoint the "
                        "witness holds) could be cut off undetected",
                        report->unproven, v.witness_last);
    } else {
        report->unproven = report->last_seq - report->last_checkpoint_seq;
        if (report->unproven)
            add_warning(report,
                        "no witness: %" PRIu64 " entries after the last checkpoint (seq %" PRIu64
                        ") are not covered by any signature, and a cut back to a checkpoint "
                        "cannot be detected",
                        report->unproven, report->last_checkpoint_seq);
        else
            add_warning(report, "no witness: a cut back to an earlier checkpoint cannot be "
                                "detected");
    }
    snprintf(report->message, sizeof report->message,
             "chain intact: %" PRIu64 " entries (seq %" PRIu64 "..%" PRIu64 ") in %" PRIu64
             " files, %" PRIu64 " checkpoints (%" PRIu64
             " signatures verified, last at seq %" PRIu64 ")%s",
             report->entries, report->first_seq, report->last_seq, report->files,
             report->checkpoints, report->signatures_verified, report->last_checkpoint_seq,
             report->first_seq > 1 ? "; older entries removed by retention" : "");
out:
    if (rc == FV_ECORRUPT && !report->ok) {
        fv_seterr(err, errlen, "%s", report->message);
    } else if (rc) {
        report->ok = 0;
        if (err && errlen && err[0] == '\0') fv_seterr(err, errlen, "%s", fv_strerror(rc));
        snprintf(report->message, sizeof report->message, "%s",
                 err && errlen ? err : fv_strerror(rc));
    }
    free(fl.names);
    free(v.w);
    free_pubkeys(&v.pk);
    return rc;
}

/* ---- queries ---------------------------------------------------------------------------- */

static int str_is(json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static int match_obj(const struct fv_audit_filter *f, json_t *o)
{
    if (f->principal && !str_is(o, "principal", f->principal)) return 0;
    if (f->kind && !str_is(o, "kind", f->kind)) return 0;
    if (f->action && !str_is(o, "action", f->action)) return 0;
    if (f->ticket && !str_is(o, "ticket", f->ticket)) return 0;
    if (f->result && !str_is(o, "result", f->result)) return 0;
    if (f->from_ms || f->to_ms) {
        json_t *ts = json_object_get(o, "ts");
        if (!json_is_integer(ts)) return 0;
        json_int_t t = json_integer_value(ts);
        if (f->from_ms && t < f->from_ms) return 0;
        if (f->to_ms && t > f->to_ms) return 0;
    }
    if (f->subject) {
        json_t *s = json_object_get(o, "subjects"), *x;
        size_t i;
        int found = 0;
        if (!json_is_array(s)) return 0;
        json_array_foreach(s, i, x) if (json_is_string(x) &&
                                        strcmp(json_string_value(x), f->subject) == 0) found = 1;
        if (!found) return 0;
    }
    return 1;
}

int fv_audit_filter_match(const struct fv_audit_filter *f, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    int m = json_is_object(o) && match_obj(f, o);
    json_decref(o);
    return m;
}

struct query {
    const struct fv_audit_filter *f;
    fv_audit_line_fn fn;
    void *arg;
    const char *name;
    int newest;
    char *err;
    size_t errlen;
};

static int query_line(void *arg, const char *line, size_t len, uint64_t lineno, int term,
                      uint64_t end)
{
    (void)end;
    struct query *q = arg;
    if (!term && q->newest) return 0; /* a torn tail (A9) */
    json_t *o = json_loadb(line, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        fv_seterr(q->err, q->errlen,
                  "%s:%" PRIu64 ": not a JSON object; run 'fleetvault audit "
                  "verify'",
                  q->name, lineno);
        return FV_ECORRUPT;
    }
    int m = match_obj(q->f, o);
    json_decref(o);
    return m ? q->fn(q->arg, line, len) : 0;
}

int fv_audit_query(const char *dir, const struct fv_audit_filter *f, fv_audit_line_fn fn, void *arg,
                   char *err, size_t errlen)
{
    struct flist fl;
    int rc = list_files(dir, &fl, err, errlen);
    if (rc) return rc;
    struct query q = {.f = f, .fn = fn, .arg = arg, .err = err, .errlen = errlen};
    for (size_t i = 0; i < fl.n && rc == FV_OK; i++) {
        struct fv_audit_entry g;
        /* ts never decreases (A6): a file starting after to_ms, and every later one, holds
         * nothing in range; one whose successor starts before from_ms neither. */
        if (f->to_ms && read_first(dir, fl.names[i], &g) == 0 && (int64_t)g.ts > f->to_ms) break;
        if (f->from_ms && i + 1 < fl.n && read_first(dir, fl.names[i + 1], &g) == 0 &&
            (int64_t)g.ts < f->from_ms)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fl.names[i]);
        q.name = fl.names[i];
        q.newest = i + 1 == fl.n;
        rc = each_line(path, query_line, &q, err, errlen);
        if (rc == FV_ENOENT) rc = FV_OK; /* removed by retention meanwhile */
    }
    free(fl.names);
    return rc;
}
