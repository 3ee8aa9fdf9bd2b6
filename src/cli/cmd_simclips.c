/*
 * cmd_simclips.c - `fleetvault simulate --clips N ...`: N simulated vehicles' synthetic
 * clips uploaded over the real clip endpoint (sim/clipupload.h), for tests and demos.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "sim/clipupload.h"
#include "util/clock.h"
#include "util/err.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: fleetvault simulate --clips N --clip-server https://HOST:PORT --certs DIR\n"
            "                           --campaign ID [options]\n\n"
            "Uploads N synthetic clips (camera frames, IMU at 100 Hz, CAN-like signals, MCAP)\n"
            "over the clip endpoint, each with a vehicle's certificate from DIR/devices.\n\n"
            "  --vehicles V        spread the clips over V vehicles (default 1)\n"
            "  --id-prefix P       VIN prefix (default 5YJSIM), padded with the index to 17\n"
            "  --trigger NAME      the trigger's name (default hard_brake)\n"
            "  --frames F          camera frames per clip (default 5)\n"
            "  --frame-kb K        bytes per frame, KiB (default 96)\n"
            "  --chunk-kb K        upload chunk size, KiB (default 256)\n"
            "  --interrupt         cut each upload halfway through its second chunk, then\n"
            "                      resume from the offset the server reports\n"
            "  --seed N            (default 1)\n"
            "Prints one line per clip: VIN CLIP_ID STATUS UPLOAD_ID [resumed at OFFSET].\n"
            "Exit status 0 when every clip was stored.\n");
}

static void vin_of(const char *prefix, int i, char *out, size_t n)
{
    size_t pl = strlen(prefix);
    int width = pl < 17 ? (int)(17 - pl) : 1;
    snprintf(out, n, "%s%0*d", prefix, width, i);
}

int fv_cmd_simulate_clips(int argc, char **argv)
{
    const char *server = NULL, *certs = NULL, *campaign = NULL, *prefix = "5YJSIM";
    const char *trigger = "hard_brake";
    long nclips = -1, vehicles = 1, frames = 5, frame_kb = 96, chunk_kb = 256, seed = 1;
    int interrupt = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        }
        if (strcmp(a, "--interrupt") == 0) {
            interrupt = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetvault simulate: %s needs a value (see --clips --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long *num = NULL;
        if (strcmp(a, "--clips") == 0)
            num = &nclips;
        else if (strcmp(a, "--vehicles") == 0)
            num = &vehicles;
        else if (strcmp(a, "--frames") == 0)
            num = &frames;
        else if (strcmp(a, "--frame-kb") == 0)
            num = &frame_kb;
        else if (strcmp(a, "--chunk-kb") == 0)
            num = &chunk_kb;
        else if (strcmp(a, "--seed") == 0)
            num = &seed;
        else if (strcmp(a, "--clip-server") == 0)
            server = v;
        else if (strcmp(a, "--certs") == 0)
            certs = v;
        else if (strcmp(a, "--campaign") == 0)
            campaign = v;
        else if (strcmp(a, "--id-prefix") == 0)
            prefix = v;
        else if (strcmp(a, "--trigger") == 0)
            trigger = v;
        else {
            fprintf(stderr,
                    "fleetvault simulate: unknown option '%s' with --clips (see --clips "
                    "--help)\n",
                    a);
            return 2;
        }
        if (num) {
            char *end = NULL;
            *num = strtol(v, &end, 10);
            if (*end || *num < 0 || *num > 1000000) {
                fprintf(stderr, "fleetvault simulate: %s: expected a number from 0 to 1000000\n",
                        a);
                return 2;
            }
        }
    }
    if (nclips < 0 || !server || !certs || !campaign || vehicles < 1 || frames < 1 ||
        frame_kb < 1 || chunk_kb < 1) {
        fprintf(stderr, "fleetvault simulate: --clips needs N, --clip-server, --certs and "
                        "--campaign (and positive sizes)\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fleetvault simulate: libcurl cannot start\n");
        return 1;
    }
    int failed = 0;
    int64_t now = (int64_t)fv_now_ms();
    for (long k = 0; k < nclips; k++) {
        char vin[64], clip_id[64], err[512];
        vin_of(prefix, (int)(k % vehicles), vin, sizeof vin);
        snprintf(clip_id, sizeof clip_id, "clip-%lld-%ld", (long long)now, k);
        struct fv_sim_clip c = {.seed = (uint64_t)(seed + k),
                                .trigger_ms = now, /* the window ends a second after it */
                                .frames = (size_t)frames,
                                .frame_bytes = (size_t)frame_kb * 1024};
        struct fv_buf clip = {0};
        if (fv_sim_clip_build(&c, &clip) != FV_OK) {
            fprintf(stderr, "fleetvault simulate: out of memory\n");
            fv_buf_free(&clip);
            failed = 1;
            break;
        }
        struct fv_sim_upload u = {.url = server,
                                  .certs_dir = certs,
                                  .device = vin,
                                  .clip_id = clip_id,
                                  .campaign = campaign,
                                  .trigger = trigger,
                                  .trigger_ms = c.trigger_ms,
                                  .chunk_bytes = (size_t)chunk_kb * 1024,
                                  .interrupt = interrupt};
        struct fv_sim_upload_result r;
        int rc = fv_sim_clip_upload(&u, clip.data, clip.len, &r, err, sizeof err);
        fv_buf_free(&clip);
        if (rc == FV_OK && r.resumed)
            printf("%s %s %d %s resumed at %llu\n", vin, clip_id, r.status, r.upload_id,
                   (unsigned long long)r.resumed_at);
        else if (rc == FV_OK)
            printf("%s %s %d %s\n", vin, clip_id, r.status, r.upload_id);
        else {
            printf("%s %s %d failed: %s\n", vin, clip_id, r.status, err);
            failed = 1;
        }
        fflush(stdout);
    }
    curl_global_cleanup();
    return failed ? 1 : 0;
}
