/*
 * lastmem.c - the fleet view's last values in memory (fv_part.lvc, docs/storage.md): heap per
 * vehicle they take, and the fleet view "now" (one signal of every vehicle) on a cold store
 * (just opened: nothing in memory) and a warm one, with parts of format 7 (values computed
 * from the blocks when missing) beside format 6 (values decoded from the parts' records).
 *
 * Data: VEHICLES simulated vehicles (the simulator's model, 20 signals, 1 Hz) for SECONDS
 * seconds, fed through fv_store_add_frame and flushed into PARTS parts (no merge), in a temp
 * directory. Heap: glibc's mallinfo2 (bytes in use, allocator overhead included), after the
 * store is reopened (cold) and after one fleet pass (warm), divided by VEHICLES. Then the
 * store is reopened again and drained (format 7: the worker computes every part's values in
 * the background, background_ms) before one more fleet pass.
 *   build/store_lastmem [VEHICLES [SECONDS [PARTS]]]   (defaults 1000 x 60, 1 part)
 * Prints one JSON line per format. Times are CPU-bound and single-threaded but noisy on a
 * shared machine: compare the two formats within one run.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/vehicle.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"

#define NSIG 20

static unsigned nveh;

static void pseudo_of(unsigned v, char out[33])
{
    snprintf(out, 33, "%08x%024x", v + 1, 0x5eed);
}
static void key_of(unsigned v, unsigned char key[32])
{
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(v * 131 + (unsigned)i * 7 + 1);
}
static int key_fn(void *arg, const char *pseudo, unsigned char key[32])
{
    (void)arg;
    char head[9];
    memcpy(head, pseudo, 8);
    head[8] = '\0';
    unsigned v = (unsigned)strtoul(head, NULL, 16) - 1; /* pseudo_of's first 8 digits */
    if (v >= nveh) return FV_ENOENT;
    key_of(v, key);
    return FV_OK;
}

static size_t heap(void)
{
    malloc_trim(0);
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* One fleet pass: signal f of every vehicle, the newest value; returns seconds. */
static double fleet(struct fv_store *s, uint32_t f, uint64_t *found)
{
    uint64_t t0 = fv_mono_ns();
    for (unsigned v = 0; v < nveh; v++) {
        char pseudo[33];
        unsigned char key[32];
        pseudo_of(v, pseudo);
        key_of(v, key);
        int got = 0;
        int64_t t;
        struct fv_value val;
        if (fv_store_last(s, pseudo, key, f, INT64_MIN, INT64_MAX, 0, &got, &t, &val) != FV_OK)
            exit(1);
        if (got) fv_value_clear(&val);
        *found += (uint64_t)got;
    }
    return (double)(fv_mono_ns() - t0) / 1e9;
}

static int run(uint32_t version, unsigned secs, unsigned parts)
{
    char dir[] = "/tmp/fv-lastmem-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    struct fv_store_config cfg;
    fv_store_config_defaults(&cfg, dir);
    cfg.flush_interval_ms = 3600000;
    cfg.flush_datums = 1;     /* each drain flushes */
    cfg.compact_fanin = 1000; /* no merge */
    cfg.part_version = version;
    struct fv_store *s;
    char err[512];
    if (fv_store_open(&cfg, 0, &s, err, sizeof err) != FV_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct fv_sim_vehicle **veh = calloc(nveh, sizeof *veh);
    struct fv_datum d[NSIG];
    uint32_t field = 0;
    int64_t t0 = (int64_t)fv_now_ms() - (int64_t)secs * 1000;
    for (unsigned v = 0; v < nveh; v++)
        if (fv_sim_vehicle_new(1, v, &veh[v]) != FV_OK) return 1;
    for (unsigned p = 0; p < parts; p++) {
        for (unsigned k = p * secs / parts; k < (p + 1) * secs / parts; k++)
            for (unsigned v = 0; v < nveh; v++) {
                char pseudo[33];
                unsigned char key[32];
                pseudo_of(v, pseudo);
                key_of(v, key);
                fv_sim_vehicle_step(veh[v], 1.0);
                size_t n = fv_sim_vehicle_sample(veh[v], NSIG, d);
                field = d[n - 1].field; /* the last one: a lookup reads every entry */
                struct fv_vrecord r = {.n = n, .data = d};
                if (fv_store_add_frame(s, pseudo, key, t0 + (int64_t)k * 1000, 0, &r) != FV_OK)
                    return 1;
            }
        if (fv_store_drain(s, NULL, key_fn, NULL) != FV_OK) return 1;
    }
    for (unsigned v = 0; v < nveh; v++)
        fv_sim_vehicle_free(veh[v]);
    free(veh);
    size_t written = heap();
    fv_store_close(s);
    if (fv_store_open(&cfg, 0, &s, err, sizeof err) != FV_OK) return 1;
    size_t cold = heap();
    uint64_t found = 0;
    double tc = fleet(s, field, &found);
    size_t warm = heap();
    double tw = fleet(s, field, &found);
    struct fv_store_stats st;
    fv_store_stats(s, &st);
    /* Reopened again, then left to compute in the background (format 7) before the pass. */
    fv_store_close(s);
    if (fv_store_open(&cfg, 0, &s, err, sizeof err) != FV_OK) return 1;
    uint64_t w0 = fv_mono_ns();
    if (fv_store_drain(s, NULL, key_fn, NULL) != FV_OK) return 1;
    double tbg = (double)(fv_mono_ns() - w0) / 1e9;
    double tb = fleet(s, field, &found);
    printf("{\"format\":%u,\"vehicles\":%u,\"seconds\":%u,\"parts\":%u,\"found\":%llu,"
           "\"heap_per_vehicle_written\":%.0f,\"heap_per_vehicle_cold\":%.0f,"
           "\"lastvals_heap_per_vehicle\":%.0f,\"fleet_cold_ms\":%.2f,\"fleet_warm_ms\":%.2f,"
           "\"background_ms\":%.2f,\"fleet_after_background_ms\":%.2f,"
           "\"last_indexed\":%llu,\"last_decoded\":%llu}\n",
           version, nveh, secs, parts, (unsigned long long)found, (double)written / nveh,
           (double)cold / nveh, ((double)warm - (double)cold) / nveh, tc * 1e3, tw * 1e3, tbg * 1e3,
           tb * 1e3, (unsigned long long)st.last_indexed, (unsigned long long)st.last_decoded);
    fv_store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    nveh = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
    unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 60;
    unsigned parts = argc > 3 ? (unsigned)atoi(argv[3]) : 1;
    if (nveh == 0 || nveh > 1000000 || parts == 0 || secs < parts) {
        fprintf(stderr, "usage: store_lastmem [VEHICLES [SECONDS [PARTS <= SECONDS]]]\n");
        return 2;
    }
    if (fv_sim_signal_count() < NSIG) return 1;
    return run(6, secs, parts) || run(7, secs, parts);
}
