/*
 * audit_line.c - the audit log's bytes, for its writer (audit.c) and its readers
 * (audit_verify.c): a line formatted (keys in the order of the format atop audit.c, hash
 * suffix: A2, A3) and parsed back with every field checked; file names (A1) and a
 * directory's files read line by line; the Ed25519 keys, key ids and checkpoint signatures
 * (A8), and fleetvault audit keygen.
 *
 * Invariants: what fv_audit__*_line writes, fv_audit_parse_line accepts (a line is hashed
 * over exactly the bytes before its suffix); no secret enters a line (extra objects with
 * a key that names one are refused); bytes from disk never assert: a bad line is
 * FV_ECORRUPT with the reason.
 *
 * Threads: reentrant, no shared state; any thread may call anything here.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "privacy/audit_int.h"
#include "util/hex.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fmt.h"

#define SUFFIX_LEN 75 /* ,"hash":" + 64 hex + "} */

/* ---- small helpers ---------------------------------------------------------------------- */

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
    fv_hex(h, sizeof h, out);
}

int fv_audit__valid_kind(const char *k)
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
    return strlen(name) == FV_AUDIT__NAME_LEN && strncmp(name, "audit-", 6) == 0 &&
           is_lower_hex(name + 6, 16) && strcmp(name + 22, ".jsonl") == 0;
}

uint64_t fv_audit__name_seq(const char *name)
{
    return strtoull(name + 6, NULL, 16);
}

void fv_audit__make_name(char out[FV_AUDIT__NAME_LEN + 1], uint64_t seq)
{
    snprintf(out, FV_AUDIT__NAME_LEN + 1, "audit-%016" PRIx64 ".jsonl", seq);
}

/* ---- keys ------------------------------------------------------------------------------- */

int fv_audit__key_id(EVP_PKEY *k, char out[17])
{
    unsigned char raw[32], h[SHA256_DIGEST_LENGTH];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(k, raw, &n) != 1 || n != sizeof raw) return FV_EINVAL;
    SHA256(raw, n, h);
    fv_hex(h, 8, out);
    return FV_OK;
}

/* The signing key: an unencrypted Ed25519 private key in PEM that only its owner can read. */
int fv_audit__load_private_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, FV_AUDIT__KEY_FILE_MAX, &text, &len, err, errlen);
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

int fv_audit__sign_checkpoint(EVP_PKEY *k, uint64_t seq, const char *chain_hash,
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
    fv_hex(sig, sizeof sig, out);
    return FV_OK;
}

/* 1 if valid, 0 if not, negative on error. */
int fv_audit__verify_checkpoint(EVP_PKEY *k, const struct fv_audit_entry *e)
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
    lw_raw(w, w->n++ ? ",\"" : "{\"", 2);
    lw_raw(w, key, strlen(key));
    lw_raw(w, "\":", 2);
}

/* Printable ASCII but '"' and '\\': JSON text as it is (what jansson prints for it). */
static int plain(const char *s, size_t *len)
{
    size_t i = 0;
    for (; s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return 0;
    *len = i;
    return 1;
}

/* A JSON string escaped by jansson (plain text quoted as it is: the same bytes); refuses
 * text that is not UTF-8. */
static void lw_jstr(struct lw *w, const char *field, const char *val)
{
    if (w->rc) return;
    size_t len;
    if (plain(val, &len)) {
        lw_raw(w, "\"", 1);
        lw_raw(w, val, len);
        lw_raw(w, "\"", 1);
        return;
    }
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
    char tmp[FV_FMT_INT_MAX];
    if (v > INT64_MAX) {
        if (w->rc == FV_OK) {
            fv_seterr(w->err, w->errlen, "%s %" PRIu64 " is out of range", key, v);
            w->rc = FV_EINVAL;
        }
        return;
    }
    size_t n = fv_fmt_u64(tmp, v);
    lw_key(w, key);
    lw_raw(w, tmp, n);
}

static void lw_i64(struct lw *w, const char *key, int64_t v)
{
    char tmp[FV_FMT_INT_MAX];
    size_t n = fv_fmt_i64(tmp, v);
    lw_key(w, key);
    lw_raw(w, tmp, n);
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

int fv_audit__genesis_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *prev,
                           const char *prev_file, uint64_t last_checkpoint,
                           char hash[FV_AUDIT_HASH_HEX + 1], char *err, size_t errlen)
{
    struct lw w = {.b = b, .err = err, .errlen = errlen};
    lw_head(&w, seq, ts, prev, "genesis");
    lw_str(&w, "prev_file", prev_file);
    lw_u64(&w, "last_checkpoint", last_checkpoint);
    return lw_finish(&w, hash);
}

int fv_audit__checkpoint_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *chain_hash,
                              uint64_t count, const char *key_id, const char *sig,
                              char hash[FV_AUDIT_HASH_HEX + 1], char *err, size_t errlen)
{
    struct lw w = {.b = b, .err = err, .errlen = errlen};
    lw_head(&w, seq, ts, chain_hash, "checkpoint");
    lw_key(&w, "chain_hash");
    lw_jstr(&w, "chain_hash", chain_hash);
    lw_u64(&w, "count", count);
    lw_str(&w, "key_id", key_id);
    lw_str(&w, "sig", sig);
    return lw_finish(&w, hash);
}

int fv_audit__event_line(struct fv_buf *b, uint64_t seq, uint64_t ts, const char *prev,
                         const struct fv_audit_event *ev, char hash[FV_AUDIT_HASH_HEX + 1],
                         char *err, size_t errlen)
{
    struct lw w = {.b = b, .err = err, .errlen = errlen};
    lw_head(&w, seq, ts, prev, ev->kind);
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
    return lw_finish(&w, hash);
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
    else if (!json_is_string(kind) || !fv_audit__valid_kind(json_string_value(kind)))
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
        else if (bad == NULL && e->retention_through &&
                 json_object_get(json_object_get(o, "extra"), "kept_prev") &&
                 get_hex(json_object_get(o, "extra"), "kept_prev", FV_AUDIT_HASH_HEX,
                         e->retention_kept_prev))
            bad = "extra.kept_prev";
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

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The log's files in order (A1). */
int fv_audit__list_files(const char *dir, struct fv_audit__flist *out, char *err, size_t errlen)
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
        memcpy(out->names[out->n++], de->d_name, FV_AUDIT__NAME_LEN + 1);
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

int fv_audit__each_line(const char *path, fv_audit__line_fn fn, void *arg, char *err, size_t errlen)
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
        /* A17: a NUL byte ends what was written: zeros written ahead of the entries, or a
         * line torn there. A line with bytes before it is handed on as torn. */
        const char *nul = memchr(line, '\0', (size_t)n);
        if (nul != NULL) {
            if (nul > line)
                rc = fn(arg, line, (size_t)(nul - line), ++lineno, 0, off + (uint64_t)(nul - line));
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
int fv_audit__read_first(const char *dir, const char *name, struct fv_audit_entry *out)
{
    char path[PATH_MAX];
    struct first_line fl = {.ok = 0};
    char err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fv_audit__each_line(path, take_first, &fl, err, sizeof err);
    if (!fl.ok) return -1;
    *out = fl.e;
    return 0;
}
