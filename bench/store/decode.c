/*
 * decode.c - the store's read path on one core: datums per second to open (checksum,
 * AES-256-GCM, zstd) and decode blocks, and to decode one signal out of them.
 *
 * Data: VEHICLES simulated vehicles (the simulator's model, 20 signals, 1 Hz) for SECONDS
 * seconds, encoded as the store encodes them after compaction (one block per vehicle and
 * class, zstd level 19 as a merge writes them), written into a part file in a temp directory.
 *   build/store_decode_bench [VEHICLES [SECONDS [ZLEVEL]]]   (defaults 200 x 500, 19)
 * Prints one JSON line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "sim/vehicle.h"
#include "store/block.h"
#include "store/part.h"
#include "util/clock.h"
#include "util/err.h"

static double now_s(void)
{
    return (double)fv_mono_ns() / 1e9;
}

int main(int argc, char **argv)
{
    unsigned nveh = argc > 1 ? (unsigned)atoi(argv[1]) : 200;
    unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 500;
    int zlevel = argc > 3 ? atoi(argv[3]) : 19;
    if (nveh == 0 || secs == 0 || secs > 8192 || zlevel < 1 || zlevel > 22) {
        fprintf(stderr, "usage: store_decode_bench [VEHICLES [SECONDS <= 8192 [ZLEVEL 1..22]]]\n");
        return 2;
    }
    char dir[] = "/tmp/fv-decode-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    unsigned char dek[32];
    RAND_bytes(dek, sizeof dek);
    struct fv_part_writer *w;
    char err[512];
    if (fv_part_writer_open(dir, 1, 1, 1, &w, err, sizeof err) != FV_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int cls = fv_part_writer_class(w, "default");
    size_t k = fv_sim_signal_count() < 20 ? fv_sim_signal_count() : 20;
    struct fv_datum *d = calloc((size_t)secs * k, sizeof *d);
    struct fv_block_frame *fr = calloc(secs, sizeof *fr);
    struct fv_buf raw = {0};
    uint64_t datums = 0, raw_bytes = 0;
    double enc_s = 0;
    for (unsigned v = 0; v < nveh; v++) {
        struct fv_sim_vehicle *veh;
        if (fv_sim_vehicle_new(1, v, &veh) != FV_OK) return 1;
        for (unsigned s = 0; s < secs; s++) {
            fv_sim_vehicle_step(veh, 1.0);
            size_t n = fv_sim_vehicle_sample(veh, k, d + (size_t)s * k);
            fr[s] = (struct fv_block_frame){1795000000000LL + (int64_t)s * 1000, (uint32_t)n,
                                            d + (size_t)s * k, 0};
            datums += n;
        }
        fv_sim_vehicle_free(veh);
        struct fv_block_in in = {.nframes = secs, .frames = fr};
        struct fv_block_meta m;
        fv_buf_reset(&raw);
        double t0 = now_s();
        if (fv_block_encode(&in, &raw, &m) != FV_OK) return 1;
        struct fv_part_entry e = {.cls = (uint8_t)cls,
                                  .nrec = m.nrec,
                                  .ndatums = m.ndatums,
                                  .min_t = m.min_t,
                                  .max_t = m.max_t,
                                  .nfirst = m.nrec};
        memset(e.subject, 0, sizeof e.subject);
        e.subject[0] = (unsigned char)(v >> 8);
        e.subject[1] = (unsigned char)v;
        if (fv_part_writer_add(w, &e, dek, raw.data, raw.len, zlevel, err, sizeof err) != FV_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        enc_s += now_s() - t0;
        raw_bytes += raw.len;
    }
    char path[1024];
    if (fv_part_writer_commit(w, 0, path, sizeof path, err, sizeof err) != FV_OK) return 1;
    fv_part_writer_free(w);
    struct fv_part *p;
    if (fv_part_open(path, &p, err, sizeof err) != FV_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    /* Full decode: every block, every signal. Repeated until 1 s has passed. */
    double t0 = now_s(), t;
    uint64_t decoded = 0, rounds = 0;
    do {
        for (size_t i = 0; i < p->n; i++) {
            struct fv_block b;
            if (fv_part_open_block(p, i, dek, &raw, err, sizeof err) != FV_OK ||
                fv_block_decode(raw.data, raw.len, NULL, 0, 0, &b, err, sizeof err) != FV_OK) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            for (size_t c = 0; c < b.ncols; c++)
                decoded += b.cols[c].n;
            fv_block_free(&b);
        }
        rounds++;
        t = now_s() - t0;
    } while (t < 1.0);
    double full = (double)decoded / t;
    /* Decode only, from plaintext already opened (the block cache's case). */
    struct fv_buf *plain = calloc(p->n, sizeof *plain);
    for (size_t i = 0; i < p->n; i++)
        fv_part_open_block(p, i, dek, &plain[i], err, sizeof err);
    t0 = now_s();
    decoded = 0;
    do {
        for (size_t i = 0; i < p->n; i++) {
            struct fv_block b;
            fv_block_decode(plain[i].data, plain[i].len, NULL, 0, 0, &b, err, sizeof err);
            for (size_t c = 0; c < b.ncols; c++)
                decoded += b.cols[c].n;
            fv_block_free(&b);
        }
        t = now_s() - t0;
    } while (t < 1.0);
    double plain_rate = (double)decoded / t;
    /* One signal (Soc) out of each block. */
    uint32_t soc = 8;
    t0 = now_s();
    decoded = 0;
    do {
        for (size_t i = 0; i < p->n; i++) {
            struct fv_block b;
            fv_block_decode(plain[i].data, plain[i].len, &soc, 1, 0, &b, err, sizeof err);
            decoded += b.nrec;
            fv_block_free(&b);
        }
        t = now_s() - t0;
    } while (t < 1.0);
    double one = (double)decoded / t;
    printf("{\"vehicles\":%u,\"seconds\":%u,\"datums\":%llu,\"part_bytes\":%llu,"
           "\"bytes_per_datum\":%.3f,\"plain_bytes_per_datum\":%.3f,\"encode_datums_per_s\":%.0f,"
           "\"open_and_decode_datums_per_s\":%.0f,\"decode_datums_per_s\":%.0f,"
           "\"one_signal_rows_per_s\":%.0f}\n",
           nveh, secs, (unsigned long long)datums, (unsigned long long)p->size,
           (double)p->size / (double)datums, (double)raw_bytes / (double)datums,
           (double)datums / enc_s, full, plain_rate, one);
    for (size_t i = 0; i < p->n; i++)
        fv_buf_free(&plain[i]);
    free(plain);
    unlink(path);
    rmdir(dir);
    fv_part_unref(p);
    fv_buf_free(&raw);
    free(d);
    free(fr);
    return 0;
}
