/* test_dataset.c - data/dataset.h: a build from a source of samples (versions v1, v2 ...,
 * immutable and read-only; shards per split, closed by size and count; exact duplicates
 * removed; balance by tag; no vehicle in two splits and splits stable as data grows; the
 * manifest's shard hashes and sample lineage; withdrawal marks; a failing source leaves no
 * version and no temporary directory; bad options refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "data/dataset.h"
#include "util/err.h"

static char root[64];
static const unsigned char KEY[] = "0123456789abcdef0123456789abcdef";

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/fv-test-ds-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", root, root);
    return system(cmd) == 0 ? 0 : -1;
}

/* The fake source: vehicles veh-0..nveh-1, each with per vehicle clips; clip i of vehicle v
 * is "c<v>-<i>" with tag "rain" when i is even else "night"; dup_every > 0 repeats the
 * content of every dup_every-th clip under another key; fail_at > 0 makes that load fail. */
struct fake {
    int nveh, per, dup_every, fail_at, loads;
    const char *skip_vehicle;
};

static int fake_list(void *arg, int (*emit)(void *, struct fv_ds_item *), void *ctx, char *err,
                     size_t errlen)
{
    (void)err;
    (void)errlen;
    struct fake *f = arg;
    int n = 0;
    for (int v = 0; v < f->nveh; v++)
        for (int i = 0; i < f->per; i++) {
            struct fv_ds_item it;
            memset(&it, 0, sizeof it);
            snprintf(it.key, sizeof it.key, "c%d-%d", v, i);
            snprintf(it.vehicle, sizeof it.vehicle, "veh-%d", v);
            if (f->skip_vehicle && strcmp(it.vehicle, f->skip_vehicle) == 0) continue;
            snprintf(it.subject, sizeof it.subject, "subj-%d", v);
            n++;
            int content = (f->dup_every && n % f->dup_every == 0) ? n - 1 : n;
            snprintf(it.content_sha256, sizeof it.content_sha256, "%064d", content);
            snprintf(it.tags, sizeof it.tags, "%s,city", i % 2 ? "night" : "rain");
            it.lineage = json_pack("{s:s, s:s}", "clip", it.key, "campaign", "camp-1");
            if (emit(ctx, &it)) return FV_ENOMEM;
        }
    return FV_OK;
}

static int fake_load(void *arg, const struct fv_ds_item *it, struct fv_ds_files *out, char *err,
                     size_t errlen)
{
    struct fake *f = arg;
    if (f->fail_at && ++f->loads == f->fail_at) {
        fv_seterr(err, errlen, "clip %s: read failed", it->key);
        return FV_EIO;
    }
    snprintf(out->ext[0], FV_DS_EXT_MAX, "mcap");
    fv_buf_appendf(&out->data[0], "MCAP of %s %s", it->key, it->content_sha256);
    snprintf(out->ext[1], FV_DS_EXT_MAX, "json");
    fv_buf_appendf(&out->data[1], "{\"key\": \"%s\"}", it->key);
    double speed[4] = {1, 2, 3, 4};
    snprintf(out->ext[2], FV_DS_EXT_MAX, "speed.npy");
    assert_int_equal(fv_npy_append(&out->data[2], "<f8", speed, 4, 0), FV_OK);
    out->n = 3;
    return FV_OK;
}

static struct fv_ds_opts opts(const char *name)
{
    struct fv_ds_opts o = {.root = root,
                           .name = name,
                           .query = "campaign=camp-1",
                           .split_spec = "train=0.8,val=0.1,test=0.1",
                           .split_key = KEY,
                           .split_key_len = 32,
                           .now_ms = 1700000000000};
    return o;
}

static json_t *manifest(const char *dir)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    json_error_t je;
    json_t *m = json_load_file(p, 0, &je);
    if (m == NULL) fail_msg("%s: %s", p, je.text);
    return m;
}

static void sha_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(c, buf, n);
    unsigned char md[32];
    unsigned l;
    EVP_DigestFinal_ex(c, md, &l);
    EVP_MD_CTX_free(c);
    fclose(f);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void build_and_grow(void **state)
{
    (void)state;
    struct fake f = {.nveh = 40, .per = 5, .dup_every = 10};
    struct fv_ds_source src = {fake_list, fake_load, &f};
    struct fv_ds_opts o = opts("drives");
    o.shard_max_samples = 7;
    struct fv_ds_result r;
    char err[256];
    assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_OK);
    assert_int_equal(r.version, 1);
    assert_int_equal(r.candidates, 200);
    assert_int_equal(r.duplicates, 20);
    assert_int_equal(r.samples, 180);
    assert_int_equal(r.per_split[0] + r.per_split[1] + r.per_split[2], 180);

    json_t *m = manifest(r.dir);
    assert_string_equal(json_string_value(json_object_get(m, "format")), "fleetvault-dataset/1");
    assert_int_equal(json_integer_value(json_object_get(m, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(m, "query")), "campaign=camp-1");
    /* every shard: its hash is the file's, its count <= 7, its name NAME-SPLIT-NNNNNN.tar */
    json_t *shards = json_object_get(m, "shards"), *s;
    size_t i, total = 0;
    assert_int_equal(json_array_size(shards), r.shards);
    json_array_foreach(shards, i, s)
    {
        char path[1400], hex[65];
        const char *file = json_string_value(json_object_get(s, "file"));
        snprintf(path, sizeof path, "%s/%s", r.dir, file);
        sha_file(path, hex);
        assert_string_equal(hex, json_string_value(json_object_get(s, "sha256")));
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, json_integer_value(json_object_get(s, "bytes")));
        assert_int_equal(st.st_mode & 0222, 0); /* D1: read-only */
        size_t n = (size_t)json_integer_value(json_object_get(s, "samples"));
        assert_true(n >= 1 && n <= 7);
        total += n;
        char want[64];
        snprintf(want, sizeof want, "drives-%s-", json_string_value(json_object_get(s, "split")));
        assert_memory_equal(file, want, strlen(want));
    }
    assert_int_equal(total, 180);
    /* no vehicle in two splits; lineage kept */
    json_t *samples = json_object_get(m, "samples");
    char split_of[40] = {0};
    json_array_foreach(samples, i, s)
    {
        int v;
        assert_int_equal(sscanf(json_string_value(json_object_get(s, "vehicle")), "veh-%d", &v), 1);
        char c = json_string_value(json_object_get(s, "split"))[0];
        if (split_of[v] == 0) split_of[v] = c;
        assert_int_equal(split_of[v], c);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(s, "lineage"), "campaign")),
            "camp-1");
    }
    json_decref(m);

    /* the shards read as tar by Python: every sample's three files, names from the manifest */
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "python3 -c 'import tarfile,json,sys,os; d=sys.argv[1]; "
        "m=json.load(open(d+\"/manifest.json\")); n=0\n"
        "for s in m[\"shards\"]:\n"
        " names=tarfile.open(os.path.join(d,s[\"file\"])).getnames(); n+=len(names)\n"
        " keys=[x[\"key\"] for x in m[\"samples\"] if x[\"shard\"]==s[\"file\"]]\n"
        " assert names==[k+e for k in keys for e in (\".mcap\",\".json\",\".speed.npy\")], names\n"
        "assert n==3*len(m[\"samples\"])' %s",
        r.dir);
    assert_int_equal(system(cmd), 0);

    /* grow: 20 more vehicles; v2; every old vehicle keeps its split (W5) */
    f.nveh = 60;
    struct fv_ds_result r2;
    assert_int_equal(fv_ds_build(&o, &src, &r2, err, sizeof err), FV_OK);
    assert_int_equal(r2.version, 2);
    m = manifest(r2.dir);
    samples = json_object_get(m, "samples");
    json_array_foreach(samples, i, s)
    {
        int v;
        sscanf(json_string_value(json_object_get(s, "vehicle")), "veh-%d", &v);
        if (v < 40 && split_of[v])
            assert_int_equal(split_of[v], json_string_value(json_object_get(s, "split"))[0]);
    }
    json_decref(m);

    /* withdrawal of subj-3 marks v1 and v2, not a version without it */
    size_t marked;
    assert_int_equal(fv_ds_mark_withdrawn(root, "subj-3", 1700000001000, &marked, err, sizeof err),
                     FV_OK);
    assert_int_equal(marked, 2);
    char p[1200];
    snprintf(p, sizeof p, "%s/drives/v1.withdrawn", root);
    assert_int_equal(access(p, F_OK), 0);
    /* the rebuild without the subject is v3 and holds none of its samples */
    f.skip_vehicle = "veh-3";
    struct fv_ds_result r3;
    assert_int_equal(fv_ds_build(&o, &src, &r3, err, sizeof err), FV_OK);
    assert_int_equal(r3.version, 3);
    m = manifest(r3.dir);
    json_array_foreach(json_object_get(m, "samples"), i, s)
        assert_string_not_equal(json_string_value(json_object_get(s, "subject")), "subj-3");
    json_decref(m);
    assert_int_equal(fv_ds_mark_withdrawn(root, "subj-3", 1700000002000, &marked, err, sizeof err),
                     FV_OK);
    assert_int_equal(marked, 2); /* v1 and v2 again (already marked), not v3 */
    snprintf(p, sizeof p, "%s/drives/v3.withdrawn", root);
    assert_int_not_equal(access(p, F_OK), 0);

    /* D8: erasure of subj-3 (in v1 and v2, not v3): marks and deletes the shards of v1, v2 */
    json_t *m1 = manifest(r.dir);
    const char *shard0 = json_string_value(
        json_object_get(json_array_get(json_object_get(m1, "shards"), 0), "file"));
    char sp[1400];
    snprintf(sp, sizeof sp, "%s/%s", r.dir, shard0);
    assert_int_equal(access(sp, F_OK), 0);
    assert_int_equal(fv_ds_erase_subject(root, "subj-3", 1700000003000, &marked, err, sizeof err),
                     FV_OK);
    assert_int_equal(marked, 2);
    assert_int_not_equal(access(sp, F_OK), 0); /* the shards are gone */
    json_t *m1b = manifest(r.dir);             /* the manifest stays */
    assert_non_null(m1b);
    json_decref(m1b);
    snprintf(p, sizeof p, "%s/drives/v1.withdrawn", root);
    json_t *w = json_load_file(p, 0, NULL);
    assert_non_null(w);
    assert_int_equal(json_integer_value(json_object_get(w, "shards_deleted_ms")), 1700000003000);
    assert_true(json_is_true(
        json_object_get(json_array_get(json_object_get(w, "withdrawn"), 0), "erased")));
    json_decref(w);
    /* v3 (without the subject) keeps its shards; a replay is harmless */
    json_t *m3 = manifest(r3.dir);
    snprintf(sp, sizeof sp, "%s/%s", r3.dir,
             json_string_value(
                 json_object_get(json_array_get(json_object_get(m3, "shards"), 0), "file")));
    assert_int_equal(access(sp, F_OK), 0);
    json_decref(m3);
    assert_int_equal(fv_ds_erase_subject(root, "subj-3", 1700000004000, &marked, err, sizeof err),
                     FV_OK);
    assert_int_equal(marked, 2);
    json_decref(m1);
}

static void balanced(void **state)
{
    (void)state;
    /* per vehicle 3 clips: i = 0, 2 rain; i = 1 night: rain is twice night */
    struct fake f = {.nveh = 30, .per = 3};
    struct fv_ds_source src = {fake_list, fake_load, &f};
    struct fv_ds_opts o = opts("bal");
    o.split_spec = "all=1";
    o.balance = 1;
    struct fv_ds_result r;
    char err[256];
    assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_OK);
    assert_int_equal(r.samples, 60); /* 30 night + 30 of the 60 rain */
    assert_int_equal(r.balanced_out, 30);
    o.per_tag = 10;
    o.name = "bal10";
    assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_OK);
    assert_int_equal(r.samples, 20);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."));
    closedir(d);
    return n;
}

static void failures(void **state)
{
    (void)state;
    struct fake f = {.nveh = 10, .per = 2, .fail_at = 5};
    struct fv_ds_source src = {fake_list, fake_load, &f};
    struct fv_ds_opts o = opts("broken");
    struct fv_ds_result r;
    char err[256], p[1200];
    assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_EIO);
    assert_non_null(strstr(err, "read failed"));
    snprintf(p, sizeof p, "%s/broken", root);
    assert_int_equal(count_entries(p), 0); /* no version, no temporary directory */

    static const struct {
        const char *name, *split, *want;
    } bad[] = {
        {"Bad", "all=1", "character 1"},
        {"", "all=1", "1 to"},
        {"ok", "train=0.5", "sum"},
        {"ok", "train=0.5,val", "column"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = opts(bad[i].name);
        o.split_spec = bad[i].split;
        assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_EINVAL);
        if (strstr(err, bad[i].want) == NULL) fail_msg("%s: %s", bad[i].want, err);
    }
    o = opts("short-key");
    o.split_key_len = 8;
    assert_int_equal(fv_ds_build(&o, &src, &r, err, sizeof err), FV_EINVAL);
    /* nothing to build */
    struct fake none = {0};
    struct fv_ds_source empty = {fake_list, fake_load, &none};
    o = opts("empty");
    assert_int_equal(fv_ds_build(&o, &empty, &r, err, sizeof err), FV_ENOENT);
    assert_non_null(strstr(err, "no sample"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_and_grow),
        cmocka_unit_test(balanced),
        cmocka_unit_test(failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
