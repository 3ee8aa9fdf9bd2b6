/*
 * colbytes.c - where a compacted block's bytes go, column by column, on the simulator's data
 * (bench/store/run.sh's model: 20 signals at 1 Hz, the location in its own class).
 *   build/store_colbytes [VEHICLES [SECONDS [JITTER_MS [ZLEVEL]]]]   (defaults 300 500 0 9)
 * Per signal: its codec column's bytes and that column zstd-compressed alone, summed over the
 * vehicles; then the times columns and whole blocks (plaintext, zstd) as the store writes them.
 * A tool for measuring codecs, not a benchmark of speed. Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <zstd.h>

#include "sim/simulate.h"
#include "sim/vehicle.h"
#include "store/block.h"
#include "store/codec.h"
#include "store/part.h"
#include "util/err.h"

#define MAXF 256

struct acc {
    uint64_t raw, z, n, alt[5];
};

/* Experimental layouts of an integer column m[0..n-1] (zstd-compressed afterwards). */
static void put_varint(struct fv_buf *b, uint64_t x)
{
    fv_put_uvarint(b, x);
}
static void alt_layout(struct fv_buf *b, const int64_t *m, size_t n, int which)
{
    fv_buf_reset(b);
    int64_t prev = 0, pd = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t dl = m[i] - prev;
        if (which == 0)
            put_varint(b, fv_zigzag((uint64_t)dl));
        else if (which == 1)
            put_varint(b, fv_zigzag((uint64_t)(dl - pd)));
        pd = dl;
        prev = m[i];
    }
    if (which >= 2) { /* byte planes of zz(delta) (2) or zz(dod) (3), width = max bytes */
        uint64_t *z = malloc(n * sizeof *z), orv = 0;
        prev = 0, pd = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t dl = m[i] - prev;
            z[i] = fv_zigzag((uint64_t)(which == 2 ? dl : dl - pd));
            pd = dl;
            prev = m[i];
            if (i > 1) orv |= z[i];
        }
        unsigned w = 1;
        while (w < 8 && (orv >> (8 * w)) != 0)
            w++;
        put_varint(b, z[0]);
        if (n > 1) put_varint(b, z[1]);
        for (unsigned j = 0; j < w; j++)
            for (size_t i = 2; i < n; i++) {
                unsigned char c = (unsigned char)(z[i] >> (8 * j));
                fv_buf_append(b, &c, 1);
            }
        free(z);
    }
}

static int to_mant(const double *v, size_t n, int64_t *m)
{
    static const double p10[] = {1, 10, 100, 1000, 1e4, 1e5, 1e6, 1e7};
    for (int e = 0; e < 8; e++) {
        size_t i = 0;
        for (; i < n; i++) {
            double x = v[i] * p10[e];
            if (!(x > -9e15 && x < 9e15)) break;
            m[i] = (int64_t)llround(x);
            if ((double)m[i] / p10[e] != v[i]) break;
        }
        if (i == n) return e;
    }
    return -1;
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static size_t zsize(const void *p, size_t n, int level)
{
    if (n == 0) return 0;
    size_t bound = ZSTD_compressBound(n);
    void *z = malloc(bound);
    if (z == NULL) exit(1);
    size_t r = ZSTD_compress(z, bound, p, n, level);
    free(z);
    if (ZSTD_isError(r)) exit(1);
    return r;
}

static int keep_loc(void *arg, uint32_t f)
{
    return (f == *(uint32_t *)arg) == 1;
}
static int keep_rest(void *arg, uint32_t f)
{
    return f != *(uint32_t *)arg;
}

/* --part FILE...: where a part file's bytes go, from its index (no key needed). */
static int part_breakdown(int argc, char **argv)
{
    for (int a = 0; a < argc; a++) {
        struct fv_part *p;
        char err[512];
        if (fv_part_open(argv[a], &p, err, sizeof err) != FV_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        uint64_t cls[FV_PART_MAX_CLASSES] = {0}, ncls[FV_PART_MAX_CLASSES] = {0}, last = 0;
        for (size_t i = 0; i < p->n; i++) {
            cls[p->e[i].cls] += p->e[i].len;
            ncls[p->e[i].cls]++;
        }
        for (size_t i = 0; i < p->nlast; i++)
            last += p->last[i].len;
        uint64_t blocks = 0;
        printf("%s: version %u, %llu bytes, %llu datums (%.4f B/datum)\n", argv[a], p->version,
               (unsigned long long)p->size, (unsigned long long)p->datums,
               (double)p->size / (double)(p->datums ? p->datums : 1));
        for (uint32_t c = 0; c < p->nclasses; c++) {
            blocks += cls[c];
            printf("  class %-10s %6llu blocks %10llu bytes (%.1f per block, %d of it the seal)\n",
                   p->classes[c], (unsigned long long)ncls[c], (unsigned long long)cls[c],
                   (double)cls[c] / (double)(ncls[c] ? ncls[c] : 1),
                   p->version >= 6 ? 16 : 28); /* version 6: tag only, nonce derived */
        }
        if (p->version >= 7) /* kept in memory only (docs/storage.md) */
            printf("  last values  none stored (format 7)\n");
        else
            printf("  last values  %6zu records %9llu bytes (%.1f per record)\n", p->nlast,
                   (unsigned long long)last, (double)last / (double)(p->nlast ? p->nlast : 1));
        uint64_t rest = p->size - blocks - last;
        printf("  index, header, footer     %10llu bytes (%.1f per block)\n",
               (unsigned long long)rest, (double)rest / (double)(p->n ? p->n : 1));
        fv_part_unref(p);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--part") == 0) return part_breakdown(argc - 2, argv + 2);
    unsigned nveh = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
    unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 500;
    unsigned jit = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
    int level = argc > 4 ? atoi(argv[4]) : 9;
    if (nveh == 0 || secs == 0) return 2;
    size_t k = fv_sim_signal_count() < 20 ? fv_sim_signal_count() : 20;
    uint32_t locf = 0;
    struct fv_datum *d = calloc((size_t)secs * k, sizeof *d);
    struct fv_block_frame *fr = calloc(secs, sizeof *fr);
    double *col = calloc((size_t)secs * 2, sizeof *col);
    int64_t *icol = calloc((size_t)secs * 3, sizeof *icol);
    struct acc per[MAXF] = {{0}}, times = {0}, blk = {0};
    uint8_t kindof[MAXF] = {0};
    struct fv_buf b = {0}, cat_cur = {0}, cat_best = {0};
    uint64_t zcat_cur = 0, zcat_best = 0;
    double blk_ns = 0; /* CPU time compressing the blocks (the store's part of the work) */
    for (unsigned v = 0; v < nveh; v++) {
        struct fv_sim_vehicle *veh;
        if (fv_sim_vehicle_new(1, v, &veh) != FV_OK) return 1;
        for (unsigned s = 0; s < secs; s++) {
            fv_sim_vehicle_step(veh, 1.0);
            size_t n = fv_sim_vehicle_sample(veh, k, d + (size_t)s * k);
            int64_t t = 1795000000000LL + (int64_t)s * 1000 + fv_sim_jitter_ms(1, v, s, jit);
            fr[s] = (struct fv_block_frame){t, (uint32_t)n, d + (size_t)s * k, 1};
        }
        fv_sim_vehicle_free(veh);
        /* Frames must be time-ordered for the block encoder: jitter < 500 ms keeps them. */
        for (size_t i = 0; i < k; i++) {
            uint32_t f = d[i].field;
            uint8_t kind = d[i].value.kind;
            if (f >= MAXF) continue;
            kindof[f] = kind;
            if (kind == FV_VK_LOCATION) locf = f;
            fv_buf_reset(&b);
            for (unsigned s = 0; s < secs; s++) {
                const struct fv_value *x = &d[(size_t)s * k + i].value;
                if (kind == FV_VK_DOUBLE)
                    col[s] = x->u.d;
                else if (kind == FV_VK_LOCATION) {
                    col[s] = x->u.loc.lat;
                    col[secs + s] = x->u.loc.lon;
                } else
                    icol[s] = x->u.i;
            }
            if (kind == FV_VK_DOUBLE)
                fv_enc_f64(&b, col, secs);
            else if (kind == FV_VK_LOCATION) {
                fv_enc_f64(&b, col, secs);
                fv_enc_f64(&b, col + secs, secs);
            } else
                fv_enc_i64(&b, icol, secs);
            /* The experimental layouts of the same integers (mantissas), each zstd-compressed
             * alone, and per vehicle the best of each column concatenated as a block would. */
            fv_buf_append(&cat_cur, b.data, b.len);
            size_t zc = zsize(b.data, b.len, level);
            struct fv_buf best = {0}, a = {0}, all = {0};
            fv_buf_append(&best, b.data, b.len);
            int64_t *mm = calloc(2 * secs, sizeof *mm);
            size_t cnt = kind == FV_VK_LOCATION ? 2 : 1;
            int ok = kind != FV_VK_STRING;
            for (size_t c = 0; c < cnt && ok; c++) {
                if (kind == FV_VK_DOUBLE || kind == FV_VK_LOCATION)
                    ok = to_mant(col + c * secs, secs, mm + c * secs) >= 0;
                else
                    memcpy(mm, icol, secs * sizeof *mm);
            }
            for (int w = 0; w < 4 && ok; w++) {
                fv_buf_reset(&all);
                for (size_t c = 0; c < cnt; c++) {
                    alt_layout(&a, mm + c * secs, secs, w);
                    per[f].alt[w] += zsize(a.data, a.len, level);
                    fv_buf_append(&all, a.data, a.len);
                }
                size_t za = zsize(all.data, all.len, level);
                if (za + 4 < zc) {
                    zc = za;
                    fv_buf_reset(&best);
                    fv_buf_append(&best, all.data, all.len);
                }
            }
            fv_buf_append(&cat_best, best.data, best.len);
            fv_buf_free(&best);
            fv_buf_free(&a);
            fv_buf_free(&all);
            free(mm);
            per[f].raw += b.len;
            per[f].z += zsize(b.data, b.len, level);
            per[f].n += secs;
        }
        zcat_cur += zsize(cat_cur.data, cat_cur.len, level);
        zcat_best += zsize(cat_best.data, cat_best.len, level);
        fv_buf_reset(&cat_cur);
        fv_buf_reset(&cat_best);
        fv_buf_reset(&b);
        for (unsigned s = 0; s < secs; s++)
            icol[s] = fr[s].t;
        fv_enc_i64(&b, icol, secs);
        times.raw += b.len;
        times.z += zsize(b.data, b.len, level);
        times.n += secs;
        for (int c = 0; c < 2; c++) {
            struct fv_block_in in = {
                .nframes = secs, .frames = fr, .keep = c ? keep_loc : keep_rest, .keep_arg = &locf};
            struct fv_block_meta m;
            fv_buf_reset(&b);
            if (fv_block_encode(&in, &b, &m) != FV_OK) return 1;
            blk.raw += b.len;
            double t0 = cpu_ns();
            blk.z += zsize(b.data, b.len, level);
            blk_ns += cpu_ns() - t0;
            blk.n += m.ndatums;
        }
    }
    uint64_t datums = (uint64_t)nveh * secs * k;
    printf("%u vehicles x %u s, jitter %u ms, zstd %d; bytes per datum of all %llu datums\n", nveh,
           secs, jit, level, (unsigned long long)datums);
    printf("%-8s %-5s %12s %12s %10s %9s %9s %9s %9s\n", "field", "kind", "col bytes", "zstd alone",
           "z B/value", "vdelta", "vdod", "pldelta", "pldod");
    uint64_t salt[4] = {0};
    uint64_t sr = 0, sz = 0;
    for (unsigned f = 0; f < MAXF; f++) {
        if (per[f].n == 0) continue;
        sr += per[f].raw;
        sz += per[f].z;
        printf("%-8u %-5u %12llu %12llu %10.3f %9llu %9llu %9llu %9llu\n", f, kindof[f],
               (unsigned long long)per[f].raw, (unsigned long long)per[f].z,
               (double)per[f].z / (double)per[f].n, (unsigned long long)per[f].alt[0],
               (unsigned long long)per[f].alt[1], (unsigned long long)per[f].alt[2],
               (unsigned long long)per[f].alt[3]);
        for (int w = 0; w < 4; w++)
            salt[w] += per[f].alt[w];
    }
    printf("%-14s %12llu %12llu %10.3f\n", "values", (unsigned long long)sr, (unsigned long long)sz,
           (double)sz / (double)datums);
    printf("alt sums: %llu %llu %llu %llu\n", (unsigned long long)salt[0],
           (unsigned long long)salt[1], (unsigned long long)salt[2], (unsigned long long)salt[3]);
    printf("%-14s %12llu %12llu %10.3f\n", "times (1 col)", (unsigned long long)times.raw,
           (unsigned long long)times.z, (double)times.z / (double)datums);
    printf("%-14s %12llu %12llu %10.3f\n", "blocks", (unsigned long long)blk.raw,
           (unsigned long long)blk.z, (double)blk.z / (double)datums);
    printf("blocks' zstd CPU: %.1f ns/datum, %.0f ms per million datums\n", blk_ns / (double)blk.n,
           blk_ns / (double)blk.n * 1e6 / 1e6);
    printf("value columns of a vehicle concatenated, zstd: as written %llu, best layout each "
           "%llu\n",
           (unsigned long long)zcat_cur, (unsigned long long)zcat_best);
    free(d);
    free(fr);
    free(col);
    free(icol);
    fv_buf_free(&b);
    return 0;
}
