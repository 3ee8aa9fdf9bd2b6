/* test_ds_clips.c - data/ds_clips.h: the dataset source over the clip store. The query
 * grammar and its errors (S3); a build over real stored clips keeps only de-identified (S1),
 * consented (S2, both purposes), current-owner clips that match the query; each sample is
 * KEY.mcap (the decrypted clip), KEY.json and KEY.SIGNAL.npy read from the MCAP (S6); vehicle
 * is the model_training pseudonym, subject the identifier computable from the keystore
 * pseudonym (S4); a withdrawal between listing and loading leaves the clip out; the
 * manifest records the consent state. A labeled clip's labels, tags and the labeler's
 * pseudonymous id are in its KEY.json and its tags, an unlabeled one's labels are [] (S7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../support/testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "crypto/keys.h"
#include "data/clip_labels.h"
#include "data/clip_signals.h"
#include "data/clip_store.h"
#include "data/dataset.h"
#include "data/ds_clips.h"
#include "os/fsio.h"
#include "privacy/subjects.h"
#include "sim/clipupload.h"
#include "util/err.h"
#include "util/hex.h"
#include "wire/signals.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    setenv("FV_MASTER_KEY", "8d1f00112233445566778899aabbccddeeff00112233445566778899aabbcc0f", 1);
    return fv_test_mkdtemp(dir, sizeof dir, "fv-dsclips");
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_query(void **state)
{
    (void)state;
    struct fv_ds_query q;
    char why[256];
    assert_int_equal(fv_ds_query_parse("", &q, why, sizeof why), FV_OK);
    assert_int_equal(q.campaign[0], '\0');
    assert_true(q.from_ms == INT64_MIN && q.to_ms == INT64_MAX);
    assert_int_equal(
        fv_ds_query_parse(" campaign=hard-brake  from=10 to=20 tag=a tag=b ", &q, why, sizeof why),
        FV_OK);
    assert_string_equal(q.campaign, "hard-brake");
    assert_true(q.from_ms == 10 && q.to_ms == 20);
    assert_int_equal(q.ntags, 2);
    assert_string_equal(q.tags[1], "b");
    assert_int_equal(fv_ds_query_parse("vin=X", &q, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "unknown key 'vin' at column 1"));
    assert_int_equal(fv_ds_query_parse("from=1 from=2", &q, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "twice (column 8)"));
    assert_int_equal(fv_ds_query_parse("to=12x", &q, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "bad value for 'to' at column 1"));
    assert_int_equal(fv_ds_query_parse("campaign=a/b", &q, why, sizeof why), FV_EINVAL);
    assert_int_equal(fv_ds_query_parse("campaign", &q, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "expected KEY=VALUE"));
    assert_int_equal(fv_ds_query_parse("from=5 to=4", &q, why, sizeof why), FV_EINVAL);
    assert_non_null(strstr(why, "from is after to"));
}

/* The fake pseudonym function: "mt-" and the device reversed (purpose checked). */
static int fake_pseudo(void *arg, const char *purpose, const char *device, char out[80])
{
    (void)arg;
    if (strcmp(purpose, "model_training") != 0) return FV_EINVAL;
    size_t n = strlen(device);
    int k = snprintf(out, 80, "mt-");
    for (size_t i = 0; i < n && k < 79; i++)
        out[k++] = device[n - 1 - i];
    out[k] = '\0';
    return FV_OK;
}

static int place_never(void *arg, const char *device, const struct fv_clip_place *p)
{
    (void)arg;
    (void)device;
    (void)p;
    return 0;
}

static const int64_t T0 = 1760000000000;

/* Stores a simulated clip of device (the upload id from n), de-identification status deid. */
static void put_clip(struct fv_keystore *ks, const char *cdir, const char *device, int n,
                     const char *campaign, const char *trigger, const char *deid)
{
    struct fv_buf b = {0};
    struct fv_sim_clip c = {
        .seed = (uint64_t)n, .trigger_ms = T0 + n, .frames = 2, .frame_bytes = 512};
    assert_int_equal(fv_sim_clip_build(&c, &b), FV_OK);
    char in[128], err[256] = "";
    snprintf(in, sizeof in, "%s/in-%d.mcap", dir, n);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b.data, 1, b.len, f), b.len);
    fclose(f);
    /* the store's signals added as the clip endpoint does (clip_signals.h): Soc 0.5 s after
     * the trigger, then 0.5 s before it (rows in time order in Soc.npy) */
    struct fv_clip_signals *sig;
    assert_int_equal(fv_clip_signals_new(&sig), FV_OK);
    struct fv_value soc = {.kind = FV_VK_DOUBLE, .u.d = 81.5};
    assert_int_equal(fv_clip_signals_add(sig, 8, T0 + n + 500, &soc), 1);
    soc.u.d = 80.25;
    assert_int_equal(fv_clip_signals_add(sig, 8, T0 + n - 500, &soc), 1);
    /* and a VehicleSpeed sample before the simulator's /can rows of the same field (its
     * channel comes first in the file: VehicleSpeed.npy must still be in time order) */
    struct fv_value speed = {.kind = FV_VK_DOUBLE, .u.d = 42};
    assert_int_equal(
        fv_clip_signals_add(sig, (uint32_t)fv_signal_lookup("VehicleSpeed"), T0 + n - 1500, &speed),
        1);
    char with[160];
    snprintf(with, sizeof with, "%s/in-%d.sig.mcap", dir, n);
    assert_int_equal(fv_clip_signals_write(sig, in, with, err, sizeof err), FV_OK);
    snprintf(in, sizeof in, "%s", with);
    fv_clip_signals_free(sig);
    fv_buf_free(&b);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(fv_os_read_file(in, 1 << 24, &data, &len, err, sizeof err), FV_OK);
    assert_int_equal(fv_buf_append(&b, data, len), FV_OK);
    free(data);
    struct fv_clip_meta m = {.trigger_ms = T0 + n, .size = b.len};
    snprintf(m.upload_id, sizeof m.upload_id, "%032d", n);
    snprintf(m.device, sizeof m.device, "%s", device);
    snprintf(m.clip_id, sizeof m.clip_id, "clip-%d", n);
    snprintf(m.campaign, sizeof m.campaign, "%s", campaign);
    snprintf(m.trigger, sizeof m.trigger, "%s", trigger);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL);
    fv_hex(md, 32, m.sha256);
    struct fv_clip_place place = {.have = 1, .lat = 48.1, .lon = 11.5};
    assert_int_equal(fv_clip_store_put(ks, cdir, device, &m, in, &place, T0 + 100, err, sizeof err),
                     FV_OK);
    if (strcmp(deid, "pending") != 0)
        assert_int_equal(fv_clip_store_set_deid(ks, m.upload_id, deid, 0, "ok", T0 + 200), FV_OK);
    fv_buf_free(&b);
}

static void consent(struct fv_keystore *ks, const char *subject, const char *purpose, int granted,
                    int64_t at)
{
    char err[256] = "";
    struct fv_purposes pp = {0};
    assert_int_equal(
        fv_consent_set(ks, &pp, subject, purpose, granted, at, "owner", err, sizeof err), FV_OK);
}

struct keys {
    size_t n;
    char key[8][64], vehicle[8][80], subject[8][80], tags[8][256];
};

static int collect(void *ctx, struct fv_ds_item *it)
{
    struct keys *k = ctx;
    assert_true(k->n < 8);
    snprintf(k->key[k->n], 64, "%s", it->key);
    snprintf(k->vehicle[k->n], 80, "%s", it->vehicle);
    snprintf(k->subject[k->n], 80, "%s", it->subject);
    snprintf(k->tags[k->n], 256, "%s", it->tags);
    k->n++;
    json_decref(it->lineage);
    it->lineage = NULL;
    return 0;
}

static const struct fv_buf *file_of(const struct fv_ds_files *f, const char *ext)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->ext[i], ext) == 0) return &f->data[i];
    return NULL;
}

/* A keystore with subjects and the clip store in the test's directory; cdir: its clips. */
static struct fv_keystore *open_store(char cdir[128])
{
    char p[128], err[256] = "";
    snprintf(p, sizeof p, "%s/catalog.db", dir);
    snprintf(cdir, 128, "%s/clips", dir);
    struct fv_kek kek;
    struct fv_keystore *ks = NULL;
    assert_int_equal(fv_kek_load(NULL, &kek, err, sizeof err), FV_OK);
    assert_int_equal(fv_keystore_open(p, &kek, &ks, err, sizeof err), FV_OK);
    fv_kek_wipe(&kek);
    assert_int_equal(fv_subjects_init(ks, err, sizeof err), FV_OK);
    assert_int_equal(fv_clip_store_init(ks, err, sizeof err), FV_OK);
    return ks;
}

/* The source over the store at build time T0 + 10 s, every clip, the place withheld. */
static void make_source(struct fv_keystore *ks, const char *cdir, const struct fv_purposes *pp,
                        struct fv_ds_clips *c, struct fv_ds_source *src)
{
    char err[256] = "";
    *c = (struct fv_ds_clips){.ks = ks,
                              .clips_dir = cdir,
                              .purposes = pp,
                              .now_ms = T0 + 10000,
                              .pseudonym = fake_pseudo,
                              .place_ok = place_never};
    assert_int_equal(fv_ds_query_parse("", &c->query, err, sizeof err), FV_OK);
    assert_int_equal(fv_ds_clips_source(c, src), FV_OK);
}

/* The KEY.json of sample key (vehicle) loaded from src. */
static json_t *load_meta(const struct fv_ds_source *src, const char *key, const char *vehicle)
{
    struct fv_ds_item it = {0};
    snprintf(it.key, sizeof it.key, "%s", key);
    snprintf(it.vehicle, sizeof it.vehicle, "%s", vehicle);
    struct fv_ds_files files = {0};
    char err[256] = "";
    assert_int_equal(src->load(src->arg, &it, &files, err, sizeof err), FV_OK);
    const struct fv_buf *meta = file_of(&files, "json");
    assert_non_null(meta);
    json_t *j = json_loadb((const char *)meta->data, meta->len, 0, NULL);
    assert_non_null(j);
    fv_ds_files_free(&files);
    return j;
}

static void test_source(void **state)
{
    (void)state;
    char err[256] = "", cdir[128];
    struct fv_keystore *ks = open_store(cdir);
    /* VINA: both purposes; VINB: clips only; VINC: both, its clip failed de-identification;
     * VIND: both, a clip pending. VINA has a second clip in another campaign. */
    const char *both[] = {"VINA", "VINC", "VIND"};
    for (size_t i = 0; i < 3; i++) {
        consent(ks, both[i], "clips", 1, T0 - 1000);
        consent(ks, both[i], "model_training", 1, T0 - 1000);
    }
    consent(ks, "VINB", "clips", 1, T0 - 1000);
    put_clip(ks, cdir, "VINA", 1, "brake", "hard_brake", "passed");
    put_clip(ks, cdir, "VINA", 2, "lanes", "lane_change", "passed");
    put_clip(ks, cdir, "VINB", 3, "brake", "hard_brake", "passed");
    put_clip(ks, cdir, "VINC", 4, "brake", "hard_brake", "failed");
    put_clip(ks, cdir, "VIND", 5, "brake", "hard_brake", "pending");

    struct fv_purposes pp = {0};
    struct fv_ds_clips c;
    struct fv_ds_source src;
    make_source(ks, cdir, &pp, &c, &src);
    struct keys k = {0};
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    /* S1, S2: only VINA's two clips */
    assert_int_equal(k.n, 2);
    assert_string_equal(k.key[0], "00000000000000000000000000000001");
    assert_string_equal(k.key[1], "00000000000000000000000000000002");
    assert_string_equal(k.vehicle[0], "mt-ANIV");
    assert_int_equal(c.listed, 5);
    assert_int_equal(c.left_deid, 2);
    assert_int_equal(c.left_consent, 1);
    /* S4: the subject is computable from the keystore pseudonym alone; no VIN in it */
    char pseudo[FV_PSEUDONYM_LEN + 1], sid[33];
    assert_int_equal(fv_keystore_pseudonym(ks, "VINA", pseudo), FV_OK);
    assert_int_equal(fv_ds_clips_subject(ks, pseudo, sid), FV_OK);
    assert_string_equal(k.subject[0], sid);
    assert_null(strstr(k.subject[0], "VIN"));
    assert_string_not_equal(sid, pseudo);

    /* S3: the query narrows */
    struct keys k2 = {0};
    assert_int_equal(fv_ds_query_parse("campaign=lanes", &c.query, err, sizeof err), FV_OK);
    assert_int_equal(src.list(src.arg, collect, &k2, err, sizeof err), FV_OK);
    assert_int_equal(k2.n, 1);
    assert_string_equal(k2.key[0], "00000000000000000000000000000002");
    assert_int_equal(c.left_query, 2); /* VINA brake, VINB brake */
    k2.n = 0;
    assert_int_equal(
        fv_ds_query_parse("tag=hard_brake to=1760000000001", &c.query, err, sizeof err), FV_OK);
    assert_int_equal(src.list(src.arg, collect, &k2, err, sizeof err), FV_OK);
    assert_int_equal(k2.n, 1);
    assert_string_equal(k2.key[0], "00000000000000000000000000000001");
    assert_int_equal(fv_ds_query_parse("", &c.query, err, sizeof err), FV_OK);

    /* S6: the files of a sample */
    struct fv_ds_item it = {0};
    snprintf(it.key, sizeof it.key, "%s", k.key[0]);
    snprintf(it.vehicle, sizeof it.vehicle, "%s", k.vehicle[0]);
    struct fv_ds_files files = {0};
    assert_int_equal(src.load(src.arg, &it, &files, err, sizeof err), FV_OK);
    const struct fv_buf *mcap = file_of(&files, "mcap"), *meta = file_of(&files, "json");
    assert_non_null(mcap);
    assert_non_null(meta);
    struct fv_buf stored = {0};
    assert_int_equal(fv_clip_store_read(ks, cdir, it.key, &stored, err, sizeof err), FV_OK);
    assert_int_equal(mcap->len, stored.len);
    assert_memory_equal(mcap->data, stored.data, stored.len);
    fv_buf_free(&stored);
    json_t *j = json_loadb((const char *)meta->data, meta->len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "vehicle")), "mt-ANIV");
    assert_string_equal(json_string_value(json_object_get(j, "campaign")), "brake");
    assert_string_equal(json_string_value(json_object_get(j, "time")), "2025-10-09T08:53:20.001Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "deid"), "status")),
                        "passed");
    assert_null(json_object_get(j, "place")); /* place_ok refused: withheld */
    assert_null(json_object_get(j, "signals_note"));
    json_decref(j);
    assert_null(memmem(meta->data, meta->len, "VINA", 4));
    /* the simulator's CAN channel at 20 Hz for 2 s: 40 rows [t, value], "<f8", and the
     * store's sample 1.5 s before the trigger first */
    const struct fv_buf *speed = file_of(&files, "VehicleSpeed.npy");
    assert_non_null(speed);
    assert_non_null(file_of(&files, "ax.npy"));
    assert_null(file_of(&files, "Gear.npy")); /* a string: not a signal */
    /* the store's signal channel (clip_signals.h): rows [s from the trigger, value] */
    const struct fv_buf *soc = file_of(&files, "Soc.npy");
    assert_non_null(soc);
    size_t sl = soc->data[8] | (size_t)soc->data[9] << 8;
    assert_non_null(memmem(soc->data, 10 + sl, "'shape': (2, 2)", 15));
    double rows[4];
    assert_int_equal(soc->len, 10 + sl + sizeof rows);
    memcpy(rows, soc->data + 10 + sl, sizeof rows);
    assert_true(rows[0] > -0.5001 && rows[0] < -0.4999 && rows[1] == 80.25);
    assert_true(rows[2] > 0.4999 && rows[2] < 0.5001 && rows[3] == 81.5);
    assert_true(speed->len > 10 && memcmp(speed->data, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hl = speed->data[8] | (size_t)speed->data[9] << 8;
    assert_int_equal((10 + hl) % 64, 0);
    assert_non_null(memmem(speed->data, 10 + hl, "'shape': (41, 2)", 16));
    assert_int_equal(speed->len, 10 + hl + 41 * 2 * 8);
    double row0[4];
    memcpy(row0, speed->data + 10 + hl, sizeof row0);
    assert_true(row0[0] > -1.5001 && row0[0] < -1.4999 && row0[1] == 42); /* the store's */
    assert_true(row0[2] > -1.0001 && row0[2] < -0.9999); /* 1 s before the trigger: /can */
    assert_true(row0[3] > 59.99 && row0[3] < 60.01);
    fv_ds_files_free(&files);

    /* a whole build: the manifest records the consent state; the failed clip is absent */
    char root[128];
    snprintf(root, sizeof root, "%s/datasets", dir);
    json_t *cs = json_object();
    c.consent = cs;
    static const unsigned char split_key[32] = {1, 2, 3};
    struct fv_ds_opts o = {.root = root,
                           .name = "brakes",
                           .query = "",
                           .split_spec = "train=0.5,val=0.5",
                           .split_key = split_key,
                           .split_key_len = sizeof split_key,
                           .now_ms = T0 + 10000,
                           .consent = cs};
    struct fv_ds_result res;
    assert_int_equal(fv_ds_build(&o, &src, &res, err, sizeof err), FV_OK);
    assert_int_equal(res.samples, 2);
    char mp[1200];
    snprintf(mp, sizeof mp, "%s/manifest.json", res.dir);
    json_t *man = json_load_file(mp, 0, NULL);
    assert_non_null(man);
    json_t *mc = json_object_get(man, "consent");
    assert_string_equal(json_string_value(json_object_get(mc, "purpose")), "model_training");
    assert_int_equal(json_integer_value(json_object_get(mc, "clips_listed")), 5);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(mc, "left_out"), "deid_not_passed")), 2);
    char *text = json_dumps(man, 0);
    assert_non_null(text);
    assert_null(strstr(text, "00000000000000000000000000000004")); /* failed deid */
    assert_null(strstr(text, "VIN"));
    assert_non_null(strstr(text, "\"upload\": \"00000000000000000000000000000001\""));
    free(text);
    json_decref(man);
    c.consent = NULL;
    json_decref(cs);

    /* S2 at load: a withdrawal after the listing leaves the clip out */
    consent(ks, "VINA", "model_training", 0, T0 + 5000);
    assert_int_equal(src.load(src.arg, &it, &files, err, sizeof err), FV_ESTATE);
    assert_non_null(strstr(err, "no longer a candidate"));
    fv_ds_files_free(&files);
    k.n = 0;
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    assert_int_equal(k.n, 0);
    /* S2: a subject whose key was destroyed (erasure) is never a candidate */
    consent(ks, "VINA", "model_training", 1, T0 + 10000);
    c.now_ms = T0 + 20000;
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    assert_int_equal(k.n, 2);
    k.n = 0;
    assert_int_equal(fv_keystore_destroy(ks, "VINA", err, sizeof err), FV_OK);
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    assert_int_equal(k.n, 0);
    /* ...and its subject identifier is still computable (dataset.h D7 after erasure) */
    char sid2[33];
    assert_int_equal(fv_ds_clips_subject(ks, pseudo, sid2), FV_OK);
    assert_string_equal(sid2, sid);
    fv_keystore_close(ks);
}

/* S7: the labels a labeler submitted are in the sample */
static void test_labels(void **state)
{
    (void)state;
    char err[256] = "", cdir[128];
    struct fv_keystore *ks = open_store(cdir);
    consent(ks, "VINA", "clips", 1, T0 - 1000);
    consent(ks, "VINA", "model_training", 1, T0 - 1000);
    put_clip(ks, cdir, "VINA", 1, "brake", "hard_brake", "passed");
    put_clip(ks, cdir, "VINA", 2, "brake", "hard_brake", "passed");
    const char *one = "00000000000000000000000000000001", *two = "00000000000000000000000000000002";
    char pseudo[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_pseudonym(ks, "VINA", pseudo), FV_OK);
    assert_int_equal(
        fv_clip_labels_put(ks, one, pseudo, "ann.smith",
                           "{\"labels\":{\"pedestrian\":true,\"count\":2,\"box\":[1,2]},"
                           "\"tags\":[\"night\",\"rain,heavy\",\"wet\"]}",
                           T0 + 3000, err, sizeof err),
        FV_OK);

    struct fv_purposes pp = {0};
    struct fv_ds_clips c;
    struct fv_ds_source src;
    make_source(ks, cdir, &pp, &c, &src);
    struct keys k = {0};
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    assert_int_equal(k.n, 2);
    /* the item's tags: the trigger first (balancing), then the label tags without a comma */
    assert_string_equal(k.tags[0], "hard_brake,night,wet");
    assert_string_equal(k.tags[1], "hard_brake");

    json_t *j = load_meta(&src, one, k.vehicle[0]);
    char *text = json_dumps(json_object_get(j, "labels"), JSON_COMPACT);
    assert_string_equal(text, "[{\"name\":\"box\",\"value\":[1,2]},{\"name\":\"count\","
                              "\"value\":2},{\"name\":\"pedestrian\",\"value\":true}]");
    free(text);
    text = json_dumps(json_object_get(j, "tags"), JSON_COMPACT);
    assert_string_equal(text, "[\"hard_brake\",\"night\",\"rain,heavy\",\"wet\"]");
    free(text);
    json_t *lab = json_object_get(j, "labeling");
    char want[33];
    assert_int_equal(fv_ds_clips_labeler(ks, "ann.smith", want), FV_OK);
    assert_string_equal(json_string_value(json_object_get(lab, "labeler")), want);
    assert_int_equal(json_integer_value(json_object_get(lab, "labeled_ms")), T0 + 3000);
    assert_string_equal(json_string_value(json_object_get(lab, "time")),
                        "2025-10-09T08:53:23.000Z");
    text = json_dumps(j, 0);
    assert_null(strstr(text, "ann")); /* no labeler's name */
    free(text);
    json_decref(j);

    /* an unlabeled clip: labels [], tags its trigger, labeling null */
    j = load_meta(&src, two, k.vehicle[1]);
    assert_int_equal(json_array_size(json_object_get(j, "labels")), 0);
    assert_true(json_is_array(json_object_get(j, "labels")));
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 1);
    assert_true(json_is_null(json_object_get(j, "labeling")));
    json_decref(j);

    /* the query's tag= matches label tags too */
    assert_int_equal(fv_ds_query_parse("tag=night", &c.query, err, sizeof err), FV_OK);
    k.n = 0;
    assert_int_equal(src.list(src.arg, collect, &k, err, sizeof err), FV_OK);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.key[0], one);
    assert_int_equal(c.left_query, 1);
    fv_keystore_close(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test_setup_teardown(test_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
