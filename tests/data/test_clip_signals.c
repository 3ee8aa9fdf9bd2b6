/* test_clip_signals.c - the store's signals added to a clip (data/clip_signals.h G1-G5): the
 * rewritten file holds the original's schemas, channels and messages unchanged, then one
 * channel per signal (topic, jsonschema schema, metadata) with one JSON message per sample at
 * the sample's time; location signals and values without a value are never added; the file
 * passes the reader's full scan; an original with a metadata record, or a damaged one, gives
 * no file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/clip_signals.h"
#include "data/clip_upload.h"
#include "data/mcap.h"
#include "../support/testutil.h"
#include "util/err.h"
#include "wire/signals.h"

/* The original clip: an /imu channel with a schema, 4 messages at 1.000 .. 1.003 s. */
static void write_original(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct fv_mcap_writer *w;
    char err[256];
    uint16_t sid, cid;
    const char *k[] = {"sensor"}, *v[] = {"imu"};
    assert_int_equal(fv_mcap_writer_open_fd(fd, path, NULL, &w, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_add_schema(w, "imu", "jsonschema", "{}", 2, &sid, err, sizeof err),
                     FV_OK);
    assert_int_equal(fv_mcap_add_channel(w, sid, "/imu", "json", k, v, 1, &cid, err, sizeof err),
                     FV_OK);
    for (uint32_t i = 0; i < 4; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "{\"ax\":%u}", i);
        uint64_t t = 1000000000ull + i * 1000000ull;
        assert_int_equal(fv_mcap_add_message(w, cid, i, t, t, msg, (size_t)n, err, sizeof err),
                         FV_OK);
    }
    assert_int_equal(fv_mcap_writer_close(w, err, sizeof err), FV_OK);
    close(fd);
}

static uint32_t sig(const char *name)
{
    long n = fv_signal_lookup(name);
    assert_true(n >= 0);
    return (uint32_t)n;
}

struct seen {
    struct fv_mcap_reader *r;
    int imu, soc, gear, locked, name, pct;
    char soc_json[64], soc_last[64], name_json[64];
    uint64_t soc_t[4];
};

static int on_msg(void *arg, const struct fv_mcap_msg *m)
{
    struct seen *s = arg;
    const struct fv_mcap_channel *ch = fv_mcap_channel_by_id(s->r, m->channel_id);
    assert_non_null(ch);
    const char *topic = ch->topic.p;
    if (strcmp(topic, "/imu") == 0) {
        char want[32];
        snprintf(want, sizeof want, "{\"ax\":%d}", s->imu);
        assert_int_equal(m->len, strlen(want));
        assert_memory_equal(m->data, want, m->len);
        assert_true(m->log_time == 1000000000ull + (uint64_t)s->imu * 1000000ull);
        s->imu++;
    } else if (strcmp(topic, FV_CLIP_SIGNALS_TOPIC "Soc") == 0) {
        assert_int_equal(m->sequence, (uint32_t)s->soc);
        assert_true(m->log_time == m->publish_time);
        s->soc_t[s->soc] = m->log_time;
        if (s->soc == 0) snprintf(s->soc_json, sizeof s->soc_json, "%.*s", (int)m->len, m->data);
        if (s->soc == 2) snprintf(s->soc_last, sizeof s->soc_last, "%.*s", (int)m->len, m->data);
        s->soc++;
    } else if (strcmp(topic, FV_CLIP_SIGNALS_TOPIC "Gear") == 0) {
        assert_int_equal(m->len, strlen("{\"Gear\":3}"));
        assert_memory_equal(m->data, "{\"Gear\":3}", m->len);
        s->gear++;
    } else if (strcmp(topic, FV_CLIP_SIGNALS_TOPIC "Locked") == 0) {
        assert_memory_equal(m->data, "{\"Locked\":true}", m->len);
        s->locked++;
    } else if (strcmp(topic, FV_CLIP_SIGNALS_TOPIC "SoftwareUpdateInstallationPercentComplete") ==
               0) {
        assert_memory_equal(m->data, "{\"SoftwareUpdateInstallationPercentComplete\":42}", m->len);
        s->pct++;
    } else if (strcmp(topic, FV_CLIP_SIGNALS_TOPIC "VehicleName") == 0) {
        snprintf(s->name_json, sizeof s->name_json, "%.*s", (int)m->len, m->data);
        s->name++;
    } else {
        fail_msg("unexpected channel %s", topic);
    }
    return 0;
}

static void test_add_signals(void **state)
{
    (void)state;
    char dir[64], in[128], out[128], err[384] = "";
    assert_int_equal(fv_test_mkdtemp(dir, sizeof dir, "fv-clipsig"), 0);
    snprintf(in, sizeof in, "%s/in.mcap", dir);
    snprintf(out, sizeof out, "%s/out.mcap", dir);
    write_original(in);

    struct fv_clip_signals *s;
    assert_int_equal(fv_clip_signals_new(&s), FV_OK);
    /* Soc at 1.5 s, 0.5 s (out of order: written in time order), 2.5 s */
    struct fv_value d = {.kind = FV_VK_DOUBLE, .u.d = 50.25};
    assert_int_equal(fv_clip_signals_add(s, sig("Soc"), 1500, &d), 1);
    d.u.d = 49.5;
    assert_int_equal(fv_clip_signals_add(s, sig("Soc"), 500, &d), 1);
    d.u.d = 50.01; /* printed "50.01", not %.17g's 50.009999999999998 */
    assert_int_equal(fv_clip_signals_add(s, sig("Soc"), 2500, &d), 1);
    struct fv_value e = {.kind = FV_VK_ENUM, .u.i = 3}, b = {.kind = FV_VK_BOOL, .u.i = 1};
    assert_int_equal(fv_clip_signals_add(s, sig("Gear"), 1000, &e), 1);
    assert_int_equal(fv_clip_signals_add(s, sig("Locked"), 1000, &b), 1);
    char name[] = "Red \"car\"";
    struct fv_value str = {.kind = FV_VK_STRING, .u.s = name};
    assert_int_equal(fv_clip_signals_add(s, sig("VehicleName"), 1200, &str), 1);
    /* G3: location signals and location values are never added */
    struct fv_value loc = {.kind = FV_VK_LOCATION, .u.loc = {48.1, 11.5}};
    assert_int_equal(fv_clip_signals_add(s, sig("Location"), 1000, &loc), 0);
    assert_int_equal(fv_clip_signals_add(s, sig("Soc"), 1100, &loc), 0);
    d.u.d = 90;
    assert_int_equal(fv_clip_signals_add(s, sig("GpsHeading"), 1000, &d), 0);
    assert_int_equal(fv_clip_signals_add(s, sig("DestinationName"), 1000, &str), 0);
    /* G2: no value, no sample */
    struct fv_value inv = {.kind = FV_VK_INVALID}, none = {.kind = FV_VK_NONE};
    assert_int_equal(fv_clip_signals_add(s, sig("Odometer"), 1000, &inv), 0);
    assert_int_equal(fv_clip_signals_add(s, sig("Odometer"), 1000, &none), 0);
    struct fv_value nan = {.kind = FV_VK_DOUBLE, .u.d = NAN};
    assert_int_equal(fv_clip_signals_add(s, sig("Odometer"), 1000, &nan), 0);
    /* the longest name in the table (41 characters), whole in topic, schema and message */
    struct fv_value pct = {.kind = FV_VK_INT, .u.i = 42};
    assert_int_equal(
        fv_clip_signals_add(s, sig("SoftwareUpdateInstallationPercentComplete"), 1300, &pct), 1);
    assert_int_equal(fv_clip_signals_count(s), 5);
    assert_int_equal(fv_clip_signals_samples(s), 7);
    assert_int_equal(fv_clip_signals_dropped(s), 0);

    assert_int_equal(fv_clip_signals_write(s, in, out, err, sizeof err), FV_OK);
    assert_int_equal(fv_clip_check_mcap(out, err, sizeof err), FV_OK);
    int fd = open(out, O_RDONLY);
    assert_true(fd >= 0);
    struct fv_mcap_file f = {.fd = fd, .path = out};
    struct fv_mcap_source src;
    struct fv_mcap_reader *r;
    assert_int_equal(fv_mcap_source_file(&src, &f, err, sizeof err), FV_OK);
    assert_int_equal(fv_mcap_reader_open(&src, &r, err, sizeof err), FV_OK);
    assert_true(fv_mcap_indexed(r)); /* G4: chunks, indexes, summary */
    assert_int_equal(fv_mcap_scan(r, NULL, NULL, NULL, err, sizeof err), FV_OK);
    /* G1: the original's channel first, then the signals in field order */
    assert_int_equal(fv_mcap_channel_count(r), 6);
    assert_string_equal(fv_mcap_channel_at(r, 0)->topic.p, "/imu");
    assert_string_equal(fv_mcap_channel_at(r, 0)->vals[0].p, "imu");
    uint32_t prev = 0;
    for (size_t i = 1; i < 6; i++) {
        const struct fv_mcap_channel *ch = fv_mcap_channel_at(r, i);
        assert_string_equal(ch->message_encoding.p, "json");
        assert_int_equal(strncmp(ch->topic.p, FV_CLIP_SIGNALS_TOPIC, strlen(FV_CLIP_SIGNALS_TOPIC)),
                         0);
        const char *signal = ch->topic.p + strlen(FV_CLIP_SIGNALS_TOPIC);
        assert_int_equal(ch->nmeta, 3);
        int found = 0;
        for (size_t j = 0; j < ch->nmeta; j++) {
            if (strcmp(ch->keys[j].p, "signal") == 0) found += strcmp(ch->vals[j].p, signal) == 0;
            if (strcmp(ch->keys[j].p, "source") == 0)
                found += strcmp(ch->vals[j].p, "fleetvault-store") == 0;
            if (strcmp(ch->keys[j].p, "field") == 0) {
                uint32_t fno = (uint32_t)strtoul(ch->vals[j].p, NULL, 10);
                assert_int_equal(fno, sig(signal));
                assert_true(fno > prev);
                prev = fno;
                found++;
            }
        }
        assert_int_equal(found, 3);
        const struct fv_mcap_schema *sc = NULL;
        for (size_t j = 0; j < fv_mcap_schema_count(r); j++)
            if (fv_mcap_schema_at(r, j)->id == ch->schema_id) sc = fv_mcap_schema_at(r, j);
        assert_non_null(sc);
        assert_string_equal(sc->encoding.p, "jsonschema");
        char want[96];
        snprintf(want, sizeof want, "fleetvault.signals.%s", signal);
        assert_string_equal(sc->name.p, want);
        if (strcmp(signal, "Soc") == 0)
            assert_non_null(strstr((const char *)sc->data, "{\"Soc\":{\"type\":\"number\"}}"));
        if (strcmp(signal, "Locked") == 0)
            assert_non_null(strstr((const char *)sc->data, "\"type\":\"boolean\""));
    }
    struct seen seen = {.r = r};
    assert_int_equal(fv_mcap_read(r, NULL, on_msg, &seen, err, sizeof err), FV_OK);
    assert_int_equal(seen.imu, 4); /* the original's messages, unchanged */
    assert_int_equal(seen.soc, 3);
    assert_int_equal(seen.gear, 1);
    assert_int_equal(seen.locked, 1);
    assert_int_equal(seen.name, 1);
    assert_int_equal(seen.pct, 1);
    assert_true(seen.soc_t[0] == 500000000ull && seen.soc_t[1] == 1500000000ull &&
                seen.soc_t[2] == 2500000000ull); /* G2: time order, ms in ns */
    assert_string_equal(seen.soc_json, "{\"Soc\":49.5}");
    assert_string_equal(seen.soc_last, "{\"Soc\":50.01}");
    assert_string_equal(seen.name_json, "{\"VehicleName\":\"Red \\\"car\\\"\"}");
    const struct fv_mcap_stats *st = fv_mcap_statistics(r);
    assert_non_null(st);
    assert_true(st->message_count == 11);
    fv_mcap_reader_free(r);
    close(fd);

    /* a damaged original: an error, no file */
    unlink(out);
    FILE *bad = fopen(in, "r+b");
    assert_non_null(bad);
    fseek(bad, -3, SEEK_END);
    fputc('x', bad);
    fclose(bad);
    assert_int_not_equal(fv_clip_signals_write(s, in, out, err, sizeof err), FV_OK);
    assert_non_null(strstr(err, "byte"));
    assert_int_not_equal(access(out, F_OK), 0);
    fv_clip_signals_free(s);
    fv_test_rmtree(dir);
}

/* G4: an original with a metadata record is not written again (its record would be lost). */
static void test_metadata_refused(void **state)
{
    (void)state;
    char dir[64], in[128], out[128], err[384] = "";
    assert_int_equal(fv_test_mkdtemp(dir, sizeof dir, "fv-clipsig"), 0);
    snprintf(in, sizeof in, "%s/in.mcap", dir);
    snprintf(out, sizeof out, "%s/out.mcap", dir);
    static const unsigned char file[] = {0x89, 'M', 'C', 'A', 'P', '0', '\r', '\n',
                                         /* Header: profile "", library "t" */
                                         0x01, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 't',
                                         /* Metadata: name "m", map {"k": "v"} */
                                         0x0C, 19, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'm', 10, 0, 0,
                                         0, 1, 0, 0, 0, 'k', 1, 0, 0, 0, 'v',
                                         /* Data End: CRC 0 */
                                         0x0F, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         /* Footer: no summary */
                                         0x02, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x89, 'M', 'C', 'A', 'P',
                                         '0', '\r', '\n'};
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(file, 1, sizeof file, f), sizeof file);
    fclose(f);
    assert_int_equal(fv_clip_check_mcap(in, err, sizeof err), FV_OK);
    struct fv_clip_signals *s;
    assert_int_equal(fv_clip_signals_new(&s), FV_OK);
    struct fv_value d = {.kind = FV_VK_DOUBLE, .u.d = 1};
    assert_int_equal(fv_clip_signals_add(s, sig("Soc"), 1, &d), 1);
    assert_int_equal(fv_clip_signals_write(s, in, out, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "metadata"));
    assert_int_not_equal(access(out, F_OK), 0);
    fv_clip_signals_free(s);
    fv_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_add_signals),
                                       cmocka_unit_test(test_metadata_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
