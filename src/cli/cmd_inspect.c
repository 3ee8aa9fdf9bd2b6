/* cmd_inspect.c - `fleetvault inspect DIR`: totals per device read from what is on disk
 * (the WAL), for operators and tests. Refuses to run while a server holds DIR's lock, so
 * what it prints is a consistent picture. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api.h"
#include "cli/commands.h"
#include "cluster/jsconsume.h"
#include "util/err.h"
#include "util/map.h"
#include "crypto/keys.h"
#include "store/block.h"
#include "store/store.h"
#include "wal/sealed.h"
#include "wal/wal.h"
#include "wal/wal_format.h"
#include "wire/payload.h"

struct dev_totals {
    char client_type[32];
    uint64_t records, datums, resends, generated, first_ms, last_ms;
    json_t *topics;
};

struct inspect {
    struct fv_map devices; /* id -> dev_totals */
    struct fv_map seen;    /* device \0 txid -> (void*)1, for duplicate detection */
    uint64_t records, datums, duplicates, undecodable, erased, sealed_unread;
    int print_txids;
    struct fv_keystore *keys; /* NULL without a master key: payloads stay sealed */
};

static int on_record(void *arg, const struct fv_wal_record *r, const char *file, uint64_t off)
{
    (void)file;
    (void)off;
    struct inspect *in = arg;
    if (fv_jsconsume_is_cursor(r)) return FV_OK; /* a storage node's stream position */
    /* Devices are named by pseudonym in the WAL; with the master key, by their id. */
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)r->device_id_len, r->device_id);
    struct fv_buf plain = {0};
    int prc = FV_ENOENT;
    if (in->keys || !(r->flags & FV_WAL_F_SEALED))
        prc = fv_wal_open_payload(in->keys, r, &plain, name, sizeof name);
    if (prc == FV_ECORRUPT) {
        fv_buf_free(&plain);
        return prc; /* altered: stop and name the place */
    }
    struct dev_totals *d = fv_map_get(&in->devices, name, strlen(name));
    if (d == NULL) {
        d = calloc(1, sizeof *d);
        if (d == NULL || (d->topics = json_object()) == NULL ||
            fv_map_put(&in->devices, name, strlen(name), d) != FV_OK) {
            if (d) json_decref(d->topics);
            free(d);
            fv_buf_free(&plain);
            return FV_ENOMEM;
        }
        snprintf(d->client_type, sizeof d->client_type, "%.*s", (int)r->client_type_len,
                 r->client_type);
    }
    char topic[256];
    snprintf(topic, sizeof topic, "%.*s", (int)r->topic_len, r->topic);
    json_t *n = json_object_get(d->topics, topic);
    json_object_set_new(d->topics, topic, json_integer(n ? json_integer_value(n) + 1 : 1));
    if (r->flags & FV_WAL_F_GENERATED) {
        d->generated++;
        fv_buf_free(&plain);
        return FV_OK;
    }
    d->records++;
    in->records++;
    if (r->flags & FV_WAL_F_RESEND) d->resends++;
    if (prc == FV_ESTATE)
        in->erased++;
    else if (prc != FV_OK)
        in->sealed_unread++;
    uint64_t t = r->received_ms;
    if (prc == FV_OK && r->topic_len == 1 && r->topic[0] == 'V') {
        struct fv_vrecord v;
        if (fv_payload_decode_v(plain.data, plain.len, &v, NULL, 0) == FV_OK) {
            d->datums += v.n;
            in->datums += v.n;
            if (v.created_at_ms) t = v.created_at_ms;
            fv_vrecord_free(&v);
        } else {
            in->undecodable++;
        }
    }
    fv_buf_free(&plain);
    if (d->first_ms == 0 || t < d->first_ms) d->first_ms = t;
    if (t > d->last_ms) d->last_ms = t;
    if (r->txid_len) {
        size_t nlen = strlen(name), klen = nlen + 1 + r->txid_len;
        char *key = malloc(klen);
        if (key == NULL) return FV_ENOMEM;
        memcpy(key, name, nlen + 1);
        memcpy(key + nlen + 1, r->txid, r->txid_len);
        if (fv_map_get(&in->seen, key, klen))
            in->duplicates++;
        else if (fv_map_put(&in->seen, key, klen, (void *)1) != FV_OK) {
            free(key);
            return FV_ENOMEM;
        }
        free(key);
    }
    if (in->print_txids) printf("%s %.*s\n", name, (int)r->txid_len, (const char *)r->txid);
    return FV_OK;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault inspect DIR [--txids] [--verify] [--key-file FILE]\n\n"
               "Prints JSON totals per device (records, datums, first/last time, record types)\n"
               "read from the write-ahead log of the data directory DIR of a stopped server,\n"
               "and the store's part files (levels, blocks, bytes, bytes per datum, per class).\n"
               "--txids prints one line 'DEVICE TXID' per record in the WAL instead. --verify\n"
               "reads every block and checks it (checksum; with the key also decryption and\n"
               "decoding), exiting 1 on any error. Payloads are read with the master key\n"
               "(--key-file, or FV_MASTER_KEY); without it, datums are not counted.\n");
}

/* The store's parts: sizes and bytes per datum; with --verify every block is read and its
 * checksum checked, and with the master key also decrypted and decoded. */
static json_t *inspect_store(const char *dir, struct fv_keystore *keys, int verify, int *bad)
{
    struct fv_store_config cfg;
    fv_store_config_defaults(&cfg, dir);
    struct fv_store *st;
    char err[1024];
    if (fv_store_open(&cfg, 1, &st, err, sizeof err) != FV_OK) {
        *bad = 1;
        return json_pack("{s:s}", "error", err);
    }
    struct fv_part **parts = NULL;
    size_t n = 0;
    if (fv_store_parts(st, &parts, &n) != FV_OK) {
        fv_store_close(st);
        *bad = 1;
        return json_pack("{s:s}", "error", "out of memory");
    }
    json_t *arr = json_array(), *errors = json_array();
    uint64_t bytes = 0, datums = 0, records = 0, blocks = 0, verified = 0, erased = 0;
    struct fv_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        const struct fv_part *p = parts[i];
        bytes += p->size;
        datums += p->datums;
        records += p->records;
        blocks += p->n;
        json_t *cls = json_object();
        for (size_t k = 0; k < p->n && verify; k++) {
            const struct fv_part_entry *e = &p->e[k];
            int rc = FV_OK;
            if (keys) {
                char hex[33];
                const unsigned char *dek;
                const char *name;
                fv_subject_to_hex(e->subject, hex);
                rc = fv_keystore_subject(keys, hex, &dek, &name);
                if (rc == FV_ESTATE) {
                    erased++;
                    continue;
                }
                if (rc == FV_OK) rc = fv_part_open_block(p, k, dek, &raw, err, sizeof err);
                struct fv_block b;
                if (rc == FV_OK) {
                    char sub[256];
                    rc = fv_block_decode(raw.data, raw.len, NULL, 0, 1, &b, sub, sizeof sub);
                    if (rc)
                        snprintf(err, sizeof err, "%s: block malformed: %s", p->path, sub);
                    else
                        fv_block_free(&b);
                }
                if (rc == FV_ENOENT)
                    snprintf(err, sizeof err, "%s: no key for subject %s", p->path, hex);
            } else {
                rc = fv_part_read_block(p, k, &raw, err, sizeof err);
            }
            if (rc) {
                *bad = 1;
                json_array_append_new(errors, json_string(err));
            } else {
                verified++;
            }
        }
        for (uint32_t c = 0; c < p->nclasses; c++) {
            uint64_t cb = 0, cd = 0;
            for (size_t k = 0; k < p->n; k++)
                if (p->e[k].cls == c) {
                    cb += p->e[k].len;
                    cd += p->e[k].ndatums;
                }
            json_object_set_new(
                cls, p->classes[c],
                json_pack("{s:I,s:I}", "bytes", (json_int_t)cb, "datums", (json_int_t)cd));
        }
        const char *base = strrchr(p->path, '/');
        json_array_append_new(
            arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "file",
                           base ? base + 1 : p->path, "level", (json_int_t)p->level, "generations",
                           (json_int_t)(p->gen_hi - p->gen_lo + 1), "wal_file_watermark",
                           (json_int_t)p->wal_file_hi, "blocks", (json_int_t)p->n, "bytes",
                           (json_int_t)p->size, "datums", (json_int_t)p->datums, "bytes_per_datum",
                           p->datums ? (double)p->size / (double)p->datums : 0.0, "classes", cls));
    }
    fv_buf_free(&raw);
    json_t *out = json_pack("{s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "parts", (json_int_t)n, "blocks",
                            (json_int_t)blocks, "bytes", (json_int_t)bytes, "datums",
                            (json_int_t)datums, "records", (json_int_t)records, "bytes_per_datum",
                            datums ? (double)bytes / (double)datums : 0.0, "part_files", arr);
    if (verify && out) {
        json_object_set_new(out, "blocks_verified", json_integer((json_int_t)verified));
        json_object_set_new(out, "blocks_erased", json_integer((json_int_t)erased));
        json_object_set_new(out, "errors", errors);
    } else {
        json_decref(errors);
    }
    fv_store_parts_free(parts, n);
    fv_store_close(st);
    return out;
}

int fv_cmd_inspect(int argc, char **argv)
{
    int verify = 0, bad = 0;
    const char *dir = NULL, *key_file = NULL;
    struct inspect in = {0};
    struct fv_kek kek;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--verify") == 0) {
            verify = 1;
        } else if (strcmp(argv[i], "--txids") == 0) {
            in.print_txids = 1;
        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            key_file = argv[++i];
        } else if (argv[i][0] == '-' || dir) {
            usage(stderr);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (dir == NULL) {
        usage(stderr);
        return 2;
    }
    char path[PATH_MAX], err[1024];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int lock = open(path, O_RDONLY | O_CLOEXEC);
    if (lock >= 0 && flock(lock, LOCK_SH | LOCK_NB) != 0) {
        fprintf(stderr,
                "fleetvault inspect: %s: a server is running on this data directory; "
                "stop it first\n",
                dir);
        close(lock);
        return 1;
    }
    snprintf(path, sizeof path, "%s/wal", dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "fleetvault inspect: %s: no write-ahead log here (%s)\n", dir,
                strerror(errno));
        if (lock >= 0) close(lock);
        return 1;
    }
    if (key_file || getenv("FV_MASTER_KEY")) {
        snprintf(path, sizeof path, "%s/catalog.db", dir);
        if (fv_kek_load(key_file, &kek, err, sizeof err) != FV_OK ||
            fv_keystore_open(path, &kek, &in.keys, err, sizeof err) != FV_OK) {
            fprintf(stderr, "fleetvault inspect: %s\n", err);
            fv_kek_wipe(&kek);
            if (lock >= 0) close(lock);
            return 1;
        }
        fv_kek_wipe(&kek);
        snprintf(path, sizeof path, "%s/wal", dir);
    }
    struct fv_wal_opts o = {.read_only = 1};
    struct fv_wal *w = NULL;
    int rc = fv_wal_open(path, &o, on_record, &in, &w, err, sizeof err);
    if (rc != FV_OK) {
        fprintf(stderr, "fleetvault inspect: %s\n", err);
    } else if (!in.print_txids) {
        struct fv_wal_stats st;
        fv_wal_stats(w, &st);
        json_t *devs = json_object();
        for (size_t i = 0; i < in.devices.cap; i++) {
            struct dev_totals *d = in.devices.slots[i].val;
            if (!in.devices.slots[i].hash) continue;
            char id[80], first[40], last[40];
            snprintf(id, sizeof id, "%.*s", (int)in.devices.slots[i].klen, in.devices.slots[i].key);
            fv_format_time_ms(d->first_ms, first, sizeof first);
            fv_format_time_ms(d->last_ms, last, sizeof last);
            json_object_set_new(devs, id,
                                json_pack("{s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:O}",
                                          "client_type", d->client_type, "records",
                                          (json_int_t)d->records, "datums", (json_int_t)d->datums,
                                          "resends", (json_int_t)d->resends, "connectivity_events",
                                          (json_int_t)d->generated, "first_time", first,
                                          "last_time", last, "first_ms", (json_int_t)d->first_ms,
                                          "last_ms", (json_int_t)d->last_ms, "topics", d->topics));
        }
        json_t *out = json_pack(
            "{s:s,s:{s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b},s:o}", "data", dir, "wal",
            "files", (json_int_t)st.files, "bytes", (json_int_t)st.bytes_on_disk, "torn_bytes",
            (json_int_t)st.torn_bytes_cut, "totals", "devices", (json_int_t)in.devices.n, "records",
            (json_int_t)in.records, "datums", (json_int_t)in.datums, "duplicate_txids",
            (json_int_t)in.duplicates, "undecodable", (json_int_t)in.undecodable, "erased",
            (json_int_t)in.erased, "sealed_unread", (json_int_t)in.sealed_unread, "decrypted",
            in.keys != NULL, "devices", devs);
        if (out) json_object_set_new(out, "store", inspect_store(dir, in.keys, verify, &bad));
        char *s = out ? json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        if (s)
            printf("%s\n", s);
        else
            rc = FV_ENOMEM;
        free(s);
        json_decref(out);
    }
    fv_wal_close(w);
    for (size_t i = 0; i < in.devices.cap; i++) {
        struct dev_totals *d = in.devices.slots[i].val;
        if (in.devices.slots[i].hash && d) {
            json_decref(d->topics);
            free(d);
        }
    }
    fv_map_free(&in.devices);
    fv_map_free(&in.seen);
    fv_keystore_close(in.keys);
    if (lock >= 0) close(lock);
    return rc == FV_OK && !bad ? 0 : 1;
}
