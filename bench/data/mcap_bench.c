/* mcap_bench.c - MCAP write and read throughput of src/data/mcap.h on one core.
 *
 *   mcap_bench SECONDS ROUNDS
 *
 * The clip (the same bytes as bench/data/mcap_bench.mjs makes for the TypeScript library):
 * SECONDS of a vehicle's sensors - an IMU at 100 Hz (48-byte messages), CAN at 100 Hz (8
 * bytes), a front camera at 20 Hz (24,000-byte frames, partly compressible) - generated in
 * memory first (not timed). Timed: writing the clip into a memory buffer (zstd level 3, 768 KiB
 * chunks, indexes and summary), and reading every message back through the chunk indexes
 * (CRC-checked, decompressed). MB/s = message payload bytes / seconds; the best of ROUNDS.
 * Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/mcap.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

struct msg {
    uint16_t ch;
    uint32_t seq;
    uint64_t t;
    size_t off, len;
};

static uint32_t seed = 12345;
static uint32_t rnd(void)
{
    seed = seed * 1103515245u + 12345u;
    return seed >> 16;
}

static int sum_len(void *ctx, const struct fv_mcap_msg *m)
{
    *(uint64_t *)ctx += m->len;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned secs = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    const uint64_t T0 = 1700000000000000000ull;
    /* The clip: 10 ms ticks; IMU and CAN each tick, the camera every 5th. */
    size_t n = 0, cap = (size_t)secs * 100 * 3;
    struct msg *msgs = calloc(cap, sizeof *msgs);
    struct fv_buf payload = {0};
    if (msgs == NULL) return 1;
    for (unsigned i = 0; i < secs * 100; i++) {
        uint64_t t = T0 + (uint64_t)i * 10000000ull;
        size_t lens[3] = {48, 8, i % 5 == 0 ? 24000 : 0};
        for (uint16_t c = 0; c < 3; c++) {
            if (lens[c] == 0) continue;
            struct msg *m = &msgs[n++];
            *m = (struct msg){(uint16_t)(c + 1), i, t, payload.len, lens[c]};
            if (fv_buf_reserve(&payload, lens[c])) return 1;
            for (size_t b = 0; b < lens[c]; b++)
                payload.data[payload.len++] =
                    (unsigned char)(c == 2 && b % 97 < 60 ? (b >> 4) & 255 : rnd() & 255);
        }
    }
    double best_w = 1e9, best_r = 1e9;
    size_t file_len = 0;
    char err[256];
    for (int r = 0; r < rounds; r++) {
        struct fv_buf out = {0};
        struct fv_mcap_writer *w;
        uint16_t id;
        uint64_t t0 = fv_mono_ns();
        if (fv_mcap_writer_open_mem(&out, NULL, &w, err, sizeof err) ||
            fv_mcap_add_channel(w, 0, "/imu", "raw", NULL, NULL, 0, &id, err, sizeof err) ||
            fv_mcap_add_channel(w, 0, "/can", "raw", NULL, NULL, 0, &id, err, sizeof err) ||
            fv_mcap_add_channel(w, 0, "/cam/front", "raw", NULL, NULL, 0, &id, err, sizeof err))
            goto fail;
        for (size_t i = 0; i < n; i++)
            if (fv_mcap_add_message(w, msgs[i].ch, msgs[i].seq, msgs[i].t, msgs[i].t,
                                    payload.data + msgs[i].off, msgs[i].len, err, sizeof err))
                goto fail;
        if (fv_mcap_writer_close(w, err, sizeof err)) goto fail;
        double ws = (double)(fv_mono_ns() - t0) / 1e9;
        file_len = out.len;
        struct fv_mcap_source src;
        fv_mcap_source_mem(&src, out.data, out.len);
        struct fv_mcap_reader *rd;
        uint64_t got = 0;
        t0 = fv_mono_ns();
        if (fv_mcap_reader_open(&src, &rd, err, sizeof err) ||
            fv_mcap_read(rd, NULL, sum_len, &got, err, sizeof err))
            goto fail;
        double rs = (double)(fv_mono_ns() - t0) / 1e9;
        fv_mcap_reader_free(rd);
        fv_buf_free(&out);
        if (got != payload.len) {
            fprintf(stderr, "mcap_bench: read %llu bytes of %zu\n", (unsigned long long)got,
                    payload.len);
            return 1;
        }
        if (ws < best_w) best_w = ws;
        if (rs < best_r) best_r = rs;
    }
    printf("{\"impl\":\"fleetvault-c\",\"messages\":%zu,\"payload_bytes\":%zu,\"file_bytes\":%zu,"
           "\"write_s\":%.4f,\"read_s\":%.4f,\"write_mb_s\":%.1f,\"read_mb_s\":%.1f}\n",
           n, payload.len, file_len, best_w, best_r, (double)payload.len / 1e6 / best_w,
           (double)payload.len / 1e6 / best_r);
    free(msgs);
    fv_buf_free(&payload);
    return 0;
fail:
    fprintf(stderr, "mcap_bench: %s\n", err);
    return 1;
}
