/* cmd_mcap.c - `fleetvault mcap info|cat|verify|write`: MCAP files (src/data/mcap.h) from the
 * command line, for users and for the interoperability test (tests/js/interop.mjs).
 *
 *   info FILE [--scan]     JSON: header, schemas, channels, statistics, chunk indexes
 *   cat FILE [--channel ID|--topic T]... [--start NS] [--end NS] [--scan]
 *                          one JSON line per message (indexed read unless --scan)
 *   verify FILE            the linear scan: every record and CRC checked (rules M1-M12)
 *   write OUT [--compression zstd|none] [--chunk-size BYTES] [--no-summary] [--profile P]
 *                          an MCAP file from JSON lines on standard input, each one of
 *                          {"schema":{"name","encoding","data_hex"}}   (ids 1, 2, ... in order)
 *                          {"channel":{"topic","message_encoding","schema_id","metadata":{}}}
 *                          {"message":{"channel","sequence","log_time","publish_time","data_hex"}}
 *   signals IN OUT         IN with the signals of JSON lines on standard input added as channels
 *                          the way the clip endpoint adds the store's (data/clip_signals.h),
 *                          each {"signal": NAME or number, "t_ms": MS, "value": V}
 *
 * Times and 64-bit counts are printed as JSON strings of decimal nanoseconds (they do not fit
 * a double); write accepts strings or integers. Runs on the main thread only. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "data/clip_signals.h"
#include "data/mcap.h"
#include "os/fsio.h"
#include "util/buf.h"
#include "util/err.h"
#include "wire/signals.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault mcap info FILE [--scan]\n"
               "       fleetvault mcap cat FILE [--channel ID|--topic T]... [--start NS] "
               "[--end NS] [--scan]\n"
               "       fleetvault mcap verify FILE\n"
               "       fleetvault mcap write OUT [--compression zstd|none] [--chunk-size BYTES] "
               "[--no-summary] [--profile P] < messages.jsonl\n"
               "       fleetvault mcap signals IN OUT < samples.jsonl\n");
}

static json_t *u64s(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return json_string(s);
}

static json_t *strn(struct fv_mcap_str s)
{
    return json_stringn_nocheck(s.p, s.len);
}

static char *hex(const unsigned char *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (s == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = d[p[i] >> 4];
        s[2 * i + 1] = d[p[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

static int unhex(const char *s, struct fv_buf *out)
{
    size_t n = strlen(s);
    if (n % 2) return FV_EINVAL;
    out->len = 0;
    if (fv_buf_reserve(out, n / 2 + 1)) return FV_ENOMEM;
    for (size_t i = 0; i < n; i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[i + (size_t)k];
            int x = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (x < 0) return FV_EINVAL;
            v = v * 16 + x;
        }
        out->data[out->len++] = (unsigned char)v;
    }
    return FV_OK;
}

/* An open file and its reader. */
struct opened {
    struct fv_mcap_file f;
    struct fv_mcap_source src;
    struct fv_mcap_reader *r;
};

static int open_mcap(const char *path, struct opened *o)
{
    char err[512];
    memset(o, 0, sizeof *o);
    o->f.path = path;
    o->f.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (o->f.fd < 0) {
        fprintf(stderr, "fleetvault mcap: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = fv_mcap_source_file(&o->src, &o->f, err, sizeof err);
    if (rc == FV_OK) rc = fv_mcap_reader_open(&o->src, &o->r, err, sizeof err);
    if (rc) {
        fprintf(stderr, "fleetvault mcap: %s: %s\n", path, err);
        close(o->f.fd);
        return 1;
    }
    return 0;
}

static void close_mcap(struct opened *o)
{
    fv_mcap_reader_free(o->r);
    close(o->f.fd);
}

static int scan_or_fail(struct opened *o, const struct fv_mcap_filter *f, fv_mcap_msg_fn fn,
                        void *ctx)
{
    char err[512];
    int rc = fv_mcap_scan(o->r, f, fn, ctx, err, sizeof err);
    if (rc) fprintf(stderr, "fleetvault mcap: %s: %s\n", o->f.path, err);
    return rc;
}

/* A Map<u16, u64> as a JSON object {"id": "value"} (NULL when out of memory). */
static json_t *map16(const uint16_t *ids, const uint64_t *vals, size_t n)
{
    json_t *o = json_object();
    for (size_t k = 0; o && k < n; k++) {
        char key[8];
        snprintf(key, sizeof key, "%u", (unsigned)ids[k]);
        json_object_set_new(o, key, u64s(vals[k]));
    }
    return o;
}

static json_t *info_json(const struct fv_mcap_reader *r)
{
    json_t *j = json_object(), *schemas = json_array(), *chans = json_array(),
           *chunks = json_array();
    if (!j || !schemas || !chans || !chunks) goto oom;
    json_object_set_new(j, "profile", strn(fv_mcap_profile(r)));
    json_object_set_new(j, "library", strn(fv_mcap_library(r)));
    json_object_set_new(j, "indexed", json_boolean(fv_mcap_indexed(r)));
    for (size_t i = 0; i < fv_mcap_schema_count(r); i++) {
        const struct fv_mcap_schema *s = fv_mcap_schema_at(r, i);
        char *h = hex(s->data, s->len);
        json_array_append_new(schemas, json_pack("{s:i, s:o, s:o, s:s}", "id", (int)s->id, "name",
                                                 strn(s->name), "encoding", strn(s->encoding),
                                                 "data_hex", h ? h : ""));
        free(h);
    }
    for (size_t i = 0; i < fv_mcap_channel_count(r); i++) {
        const struct fv_mcap_channel *c = fv_mcap_channel_at(r, i);
        json_t *meta = json_object();
        for (size_t k = 0; meta && k < c->nmeta; k++)
            json_object_setn_new_nocheck(meta, c->keys[k].p, c->keys[k].len, strn(c->vals[k]));
        json_array_append_new(chans, json_pack("{s:i, s:i, s:o, s:o, s:o*}", "id", (int)c->id,
                                               "schema_id", (int)c->schema_id, "topic",
                                               strn(c->topic), "message_encoding",
                                               strn(c->message_encoding), "metadata", meta));
    }
    for (size_t i = 0; i < fv_mcap_chunk_count(r); i++) {
        const struct fv_mcap_chunk_index *ci = fv_mcap_chunk_at(r, i);
        json_t *offs = map16(ci->index_channels, ci->index_offsets, ci->nindex);
        json_array_append_new(
            chunks,
            json_pack("{s:o, s:o, s:o, s:o, s:o*, s:o, s:o, s:o, s:o}", "message_start_time",
                      u64s(ci->start), "message_end_time", u64s(ci->end), "chunk_start_offset",
                      u64s(ci->offset), "chunk_length", u64s(ci->length), "message_index_offsets",
                      offs, "message_index_length", u64s(ci->msg_index_length), "compression",
                      strn(ci->compression), "compressed_size", u64s(ci->compressed_size),
                      "uncompressed_size", u64s(ci->uncompressed_size)));
    }
    json_object_set_new(j, "schemas", schemas);
    json_object_set_new(j, "channels", chans);
    json_object_set_new(j, "chunk_indexes", chunks);
    const struct fv_mcap_stats *st = fv_mcap_statistics(r);
    if (st) {
        json_t *counts = map16(st->count_channels, st->counts, st->ncounts);
        json_object_set_new(
            j, "statistics",
            json_pack("{s:o, s:i, s:I, s:I, s:I, s:I, s:o, s:o, s:o*}", "message_count",
                      u64s(st->message_count), "schema_count", (int)st->schema_count,
                      "channel_count", (json_int_t)st->channel_count, "attachment_count",
                      (json_int_t)st->attachment_count, "metadata_count",
                      (json_int_t)st->metadata_count, "chunk_count", (json_int_t)st->chunk_count,
                      "message_start_time", u64s(st->start), "message_end_time", u64s(st->end),
                      "channel_message_counts", counts));
    } else {
        json_object_set_new(j, "statistics", json_null());
    }
    return j;
oom:
    json_decref(j);
    json_decref(schemas);
    json_decref(chans);
    json_decref(chunks);
    return NULL;
}

static int cmd_info(int argc, char **argv)
{
    int scan = argc > 2 && strcmp(argv[2], "--scan") == 0;
    struct opened o;
    if (open_mcap(argv[1], &o)) return 1;
    /* Without a summary the channels are known only from the data section. */
    if ((scan || !fv_mcap_indexed(o.r)) && scan_or_fail(&o, NULL, NULL, NULL)) {
        close_mcap(&o);
        return 1;
    }
    json_t *j = info_json(o.r);
    int rc = j && json_dumpf(j, stdout, JSON_INDENT(2)) == 0 ? 0 : 1;
    printf("\n");
    json_decref(j);
    close_mcap(&o);
    return rc;
}

static int print_msg(void *ctx, const struct fv_mcap_msg *m)
{
    (void)ctx;
    char *h = hex(m->data, m->len);
    if (h == NULL) return FV_ENOMEM;
    printf("{\"channel\":%u,\"sequence\":%" PRIu32 ",\"log_time\":\"%" PRIu64
           "\",\"publish_time\":\"%" PRIu64 "\",\"data_hex\":\"%s\"}\n",
           (unsigned)m->channel_id, m->sequence, m->log_time, m->publish_time, h);
    free(h);
    return ferror(stdout) ? FV_EIO : 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return FV_EINVAL;
    *v = x;
    return FV_OK;
}

static int cmd_cat(int argc, char **argv)
{
    struct opened o;
    if (open_mcap(argv[1], &o)) return 1;
    uint16_t ids[256];
    struct fv_mcap_filter f = {NULL, 0, 0, UINT64_MAX};
    int scan = 0, rc = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        if (strcmp(a, "--scan") == 0) {
            scan = 1;
            continue;
        }
        if (v == NULL) goto bad;
        i++;
        if (strcmp(a, "--start") == 0 || strcmp(a, "--end") == 0) {
            if (parse_u64(v, &x)) goto bad;
            *(a[2] == 's' ? &f.start : &f.end) = x;
        } else if (strcmp(a, "--channel") == 0 && f.nchannels < 256) {
            if (parse_u64(v, &x) || x > 65535) goto bad;
            f.channels = ids;
            ids[f.nchannels++] = (uint16_t)x;
        } else if (strcmp(a, "--topic") == 0) {
            if (!fv_mcap_indexed(o.r) && scan_or_fail(&o, NULL, NULL, NULL)) {
                rc = 1;
                goto out;
            }
            for (size_t k = 0; k < fv_mcap_channel_count(o.r) && f.nchannels < 256; k++)
                if (strcmp(fv_mcap_channel_at(o.r, k)->topic.p, v) == 0)
                    ids[f.nchannels++] = fv_mcap_channel_at(o.r, k)->id;
            f.channels = ids;
        } else {
            goto bad;
        }
    }
    char err[512];
    int r = scan ? fv_mcap_scan(o.r, &f, print_msg, NULL, err, sizeof err)
                 : fv_mcap_read(o.r, &f, print_msg, NULL, err, sizeof err);
    if (r) fprintf(stderr, "fleetvault mcap: %s: %s\n", argv[1], err);
    rc = r ? 1 : 0;
    goto out;
bad:
    usage(stderr);
out:
    close_mcap(&o);
    return rc;
}

static int count_msg(void *ctx, const struct fv_mcap_msg *m)
{
    (void)m;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    (void)argc;
    struct opened o;
    if (open_mcap(argv[1], &o)) return 1;
    uint64_t n = 0;
    int rc = scan_or_fail(&o, NULL, count_msg, &n);
    if (rc == FV_OK)
        printf("%s: ok: %" PRIu64 " messages, %zu channels, %zu schemas, %s\n", argv[1], n,
               fv_mcap_channel_count(o.r), fv_mcap_schema_count(o.r),
               fv_mcap_indexed(o.r) ? "indexed" : "no chunk indexes");
    close_mcap(&o);
    return rc ? 1 : 0;
}

/* A u64 from a JSON integer or decimal string. */
static int json_u64(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return FV_OK;
    }
    return json_is_string(v) ? parse_u64(json_string_value(v), out) : FV_EINVAL;
}

/* One input line into the writer; FV_EINVAL with err for a bad line. */
static int write_line(struct fv_mcap_writer *w, json_t *j, struct fv_buf *data, char *err,
                      size_t errlen)
{
    json_t *s = json_object_get(j, "schema"), *c = json_object_get(j, "channel"),
           *m = json_object_get(j, "message");
    uint16_t id;
    const char *hx;
    if (json_is_object(s)) {
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *enc = json_string_value(json_object_get(s, "encoding"));
        hx = json_string_value(json_object_get(s, "data_hex"));
        if (!name || !enc || unhex(hx ? hx : "", data)) goto bad;
        return fv_mcap_add_schema(w, name, enc, data->data, data->len, &id, err, errlen);
    }
    if (json_is_object(c)) {
        const char *topic = json_string_value(json_object_get(c, "topic"));
        const char *enc = json_string_value(json_object_get(c, "message_encoding"));
        json_t *meta = json_object_get(c, "metadata");
        uint64_t sid = 0;
        json_t *sj = json_object_get(c, "schema_id");
        if (!topic || !enc || (sj && json_u64(sj, &sid)) || sid > 65535) goto bad;
        size_t n = json_is_object(meta) ? json_object_size(meta) : 0, k = 0;
        const char **keys = calloc(n + 1, sizeof *keys), **vals = calloc(n + 1, sizeof *vals);
        const char *key;
        json_t *val;
        int rc = keys && vals ? FV_OK : FV_ENOMEM;
        if (rc == FV_OK && n) json_object_foreach(meta, key, val)
            {
                keys[k] = key;
                vals[k++] = json_is_string(val) ? json_string_value(val) : "";
            }
        if (rc == FV_OK)
            rc = fv_mcap_add_channel(w, (uint16_t)sid, topic, enc, keys, vals, n, &id, err, errlen);
        free(keys);
        free(vals);
        return rc;
    }
    if (json_is_object(m)) {
        uint64_t ch, seq = 0, t, pt;
        json_t *pj = json_object_get(m, "publish_time"), *qj = json_object_get(m, "sequence");
        hx = json_string_value(json_object_get(m, "data_hex"));
        if (json_u64(json_object_get(m, "channel"), &ch) || ch > 65535 ||
            (qj && json_u64(qj, &seq)) || seq > UINT32_MAX ||
            json_u64(json_object_get(m, "log_time"), &t) || unhex(hx ? hx : "", data))
            goto bad;
        if (pj == NULL)
            pt = t;
        else if (json_u64(pj, &pt))
            goto bad;
        return fv_mcap_add_message(w, (uint16_t)ch, (uint32_t)seq, t, pt, data->data, data->len,
                                   err, errlen);
    }
bad:
    fv_seterr(err, errlen, "not a schema, channel or message line (see 'fleetvault mcap --help')");
    return FV_EINVAL;
}

static int cmd_write(int argc, char **argv)
{
    const char *out = argv[1];
    struct fv_mcap_write_opts opts = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        if (strcmp(a, "--no-summary") == 0) {
            opts.no_summary = 1;
        } else if (strcmp(a, "--compression") == 0 && v) {
            if (strcmp(v, "zstd") == 0)
                opts.compression = FV_MCAP_ZSTD;
            else if (strcmp(v, "none") == 0)
                opts.compression = FV_MCAP_NONE;
            else
                goto bad;
            i++;
        } else if (strcmp(a, "--chunk-size") == 0 && v && parse_u64(v, &x) == 0 &&
                   x <= FV_MCAP_MAX_CHUNK) {
            opts.chunk_size = (size_t)x;
            i++;
        } else if (strcmp(a, "--profile") == 0 && v) {
            opts.profile = v;
            i++;
        } else {
            goto bad;
        }
    }
    char err[512];
    int fd;
    int rc = fv_os_open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd, err, sizeof err);
    struct fv_mcap_writer *w = NULL;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    struct fv_buf data = {0};
    if (rc == FV_OK) rc = fv_mcap_writer_open_fd(fd, out, &opts, &w, err, sizeof err);
    while (rc == FV_OK && getline(&line, &cap, stdin) >= 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0') continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (j == NULL) {
            fv_seterr(err, sizeof err, "%s", je.text);
            rc = FV_EINVAL;
        } else {
            rc = write_line(w, j, &data, err, sizeof err);
        }
        json_decref(j);
        if (rc) {
            char e2[600];
            snprintf(e2, sizeof e2, "stdin line %ld: %s", lineno, err);
            snprintf(err, sizeof err, "%s", e2);
        }
    }
    if (rc == FV_OK) {
        rc = fv_mcap_writer_close(w, err, sizeof err);
        w = NULL;
    }
    if (rc == FV_OK) rc = fv_os_fsync(fd, out, err, sizeof err);
    fv_mcap_writer_free(w);
    free(line);
    fv_buf_free(&data);
    if (fd >= 0) close(fd);
    if (rc) {
        fprintf(stderr, "fleetvault mcap write: %s (%s removed)\n", err, out);
        fv_os_unlink(out, NULL, 0); /* never leave half a file under the name asked for */
        return 1;
    }
    return 0;
bad:
    usage(stderr);
    return 2;
}

/* One {"signal", "t_ms", "value"} line into s: 1 added, 0 left out, FV_EINVAL (why set). */
static int signal_line(struct fv_clip_signals *s, json_t *j, char *why, size_t n)
{
    json_t *sg = json_object_get(j, "signal"), *t = json_object_get(j, "t_ms");
    json_t *v = json_object_get(j, "value");
    long field = json_is_string(sg)    ? fv_signal_lookup(json_string_value(sg))
                 : json_is_integer(sg) ? (long)json_integer_value(sg)
                                       : -1;
    if (field < 0 || field > 65535 || !json_is_integer(t)) {
        snprintf(why, n, "expected {\"signal\": NAME or number, \"t_ms\": MS, \"value\": V}");
        return FV_EINVAL;
    }
    struct fv_value x = {0};
    if (json_is_real(v)) {
        x.kind = FV_VK_DOUBLE;
        x.u.d = json_real_value(v);
    } else if (json_is_integer(v)) {
        x.kind = FV_VK_INT;
        x.u.i = json_integer_value(v);
    } else if (json_is_boolean(v)) {
        x.kind = FV_VK_BOOL;
        x.u.i = json_is_true(v);
    } else if (json_is_string(v)) {
        x.kind = FV_VK_STRING;
        x.u.s = (char *)json_string_value(v);
    } else {
        snprintf(why, n, "value: expected a number, a boolean or a string");
        return FV_EINVAL;
    }
    int rc = fv_clip_signals_add(s, (uint32_t)field, json_integer_value(t), &x);
    if (rc < 0) snprintf(why, n, "out of memory");
    return rc;
}

static int cmd_signals(int argc, char **argv)
{
    if (argc != 3) {
        usage(stderr);
        return 2;
    }
    struct fv_clip_signals *s = NULL;
    char *line = NULL, err[512] = "";
    size_t cap = 0, left = 0;
    long lineno = 0;
    int rc = fv_clip_signals_new(&s);
    while (rc == FV_OK && getline(&line, &cap, stdin) >= 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0') continue;
        json_t *j = json_loads(line, 0, NULL);
        char why[160] = "not a JSON object";
        int a = json_is_object(j) ? signal_line(s, j, why, sizeof why) : FV_EINVAL;
        json_decref(j);
        if (a < 0) {
            fprintf(stderr, "fleetvault mcap signals: stdin line %ld: %s; nothing written\n",
                    lineno, why);
            rc = a;
        }
        left += a == 0;
    }
    free(line);
    if (rc == FV_OK) {
        rc = fv_clip_signals_write(s, argv[1], argv[2], err, sizeof err);
        if (rc)
            fprintf(stderr, "fleetvault mcap signals: %s\n", err);
        else
            printf("%s: %zu signals, %zu samples added (%zu left out: location or no value)\n",
                   argv[2], fv_clip_signals_count(s), fv_clip_signals_samples(s), left);
    }
    fv_clip_signals_free(s);
    return rc == FV_OK ? 0 : rc == FV_EINVAL ? 2 : 1;
}

int fv_cmd_mcap(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "cat") == 0) return cmd_cat(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0) return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "write") == 0) return cmd_write(argc - 1, argv + 1);
    if (strcmp(argv[1], "signals") == 0) return cmd_signals(argc - 1, argv + 1);
    usage(stderr);
    return 2;
}
