/*
 * cmd_simulate.c - `fleetvault simulate`: argument parsing and signal handling around
 * fv_sim_run (sim/simulate.h).
 *
 * Output contract: progress lines on stderr once per second; exactly one JSON line on stdout
 * at the end (also after SIGINT/SIGTERM), starting with sent, acked, errors, datums,
 * ack_p50_ms, ack_p99_ms. Exit status: 0 when no record is left unacked (a refused record
 * counts as done), 1 otherwise or when the run could not start, 2 for bad usage.
 *
 * The only global is the stop flag written by the signal handler (a volatile sig_atomic_t).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "sim/simulate.h"
#include "sim/vehicle.h"
#include "util/err.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fleetvault simulate --server wss://HOST:PORT --certs DIR --vehicles N\n"
            "                           --seconds S --hz R [options]\n"
            "       fleetvault simulate --server wss://HOST:PORT --certs DIR --sites N [--days D]\n"
            "                           [--vehicles N] --seconds S --hz R [options]\n"
            "       fleetvault simulate --no-server --virtual-time START_MS --influx FILE\n"
            "                           --vehicles N --seconds S --hz R [options]\n\n"
            "Streams a simulated fleet to a server: each vehicle has its own TLS connection\n"
            "with a client certificate minted from DIR's CA (made by 'fleetvault certs init\n"
            "DIR'; DIR/ca.crt also verifies the server), sends one V record per tick and\n"
            "resends it until acked.\n\n"
            "options:\n"
            "  --signals K         datums per record (default 20, max %zu)\n"
            "  --drain SECONDS     wait this long for outstanding acks at the end (default 30)\n"
            "  --acked-log FILE    append 'VIN TXID CREATED_MS' per acked and 'VIN TXID E' per "
            "refused record\n"
            "  --slow-log FILE     append 'SECONDS_SINCE_START ACK_MS VIN' per ack slower than "
            "10 ms\n"
            "  --seed N            vehicle model seed (default 1)\n"
            "  --id-prefix P       VIN prefix (default 5YJSIM), padded with the index to 17\n"
            "  --connect-rate R    new connections per second (default 1000, 0 = unlimited)\n"
            "  --max-inflight N    unacked records per vehicle before it pauses (default 1000)\n"
            "  --resend-after S    resend a record unanswered this long (default 5)\n"
            "  --quiet             no progress lines\n"
            "  --virtual-time START_MS\n"
            "                      virtual time: record k of a vehicle is stamped START_MS +\n"
            "                      k*1000/R ms and the model steps 1/R s per record; records\n"
            "                      are made as fast as --max-inflight allows, the fleet in\n"
            "                      step, and S counts virtual seconds (S*R records each)\n"
            "  --jitter-ms J       add a pseudo-random offset in [-J, +J] ms to each record's\n"
            "                      time, fixed by (seed, vehicle, record)\n"
            "  --influx FILE       write every generated record as InfluxDB line protocol\n"
            "                      (ms timestamps, measurement 'telemetry', tag vin)\n"
            "  --no-server         with --virtual-time and --influx: only write FILE, with the\n"
            "                      same bytes a run against a server writes; --server and\n"
            "                      --certs are not needed\n"
            "energy sites (homes with a battery, solar and load; they obey VPP commands):\n"
            "  --sites N           N homes on energy_device connections, ids SITESIM + index\n"
            "  --days D            first back-fill D days of history per site (a sample every\n"
            "                      5 minutes, stamped in the past), then sample live at R Hz;\n"
            "                      S counts from the start, and lasts at least the back-fill\n"
            "  --site-prefix P     site id prefix (default SITESIM)\n"
            "  --opt-out-pct P     owners who refuse every event (default 5)\n"
            "  --offline-pct P     days with one 30-180 min outage per site (default 3)\n"
            "  --utc-offset H      the homes' local time is UTC + H hours (default -8)\n"
            "  --clip-server URL   upload each campaign hit's clip to https://HOST:PORT\n"
            "  --clip-interrupt N  cut the first N of those uploads halfway through their\n"
            "                      second chunk and resume them (counted in clips_resumed)\n"
            "  --clips N           upload N synthetic clips instead (see --clips 0 --help)\n\n"
            "Prints one JSON line: {\"sent\":..,\"acked\":..,\"errors\":..,\"datums\":..,"
            "\"ack_p50_ms\":..,\"ack_p99_ms\":..,...}\n"
            "Exit status: 0 all records acked or refused, 1 some unacked or failure, 2 usage.\n",
            fv_sim_signal_count());
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(d) || d < lo || d > hi) {
        fprintf(stderr, "fleetvault simulate: %s needs a number in %g..%g, got '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0') {
        fprintf(stderr, "fleetvault simulate: %s needs a whole number, got '%s'\n", opt, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "fleetvault simulate: %s needs a whole number in %llu..%llu, got '%s'\n",
                opt, (unsigned long long)lo, (unsigned long long)hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int fv_cmd_simulate(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) /* clip uploads are a mode of their own */
        if (strcmp(argv[i], "--clips") == 0) return fv_cmd_simulate_clips(argc, argv);
    struct fv_sim_opts o;
    fv_sim_opts_default(&o);
    int have_vehicles = 0, have_seconds = 0, have_hz = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--quiet") == 0) {
            o.progress = 0;
            continue;
        }
        if (strcmp(a, "--no-server") == 0) {
            o.no_server = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetvault simulate: %s\n",
                    strncmp(a, "--", 2) == 0 ? "option needs a value" : "unexpected argument");
            fprintf(stderr, "  (at '%s'; see 'fleetvault simulate --help')\n", a);
            return 2;
        }
        const char *val = argv[++i];
        uint64_t u;
        double d;
        int bad = 0;
        if (strcmp(a, "--server") == 0) {
            o.server = val;
        } else if (strcmp(a, "--certs") == 0) {
            o.certs_dir = val;
        } else if (strcmp(a, "--vehicles") == 0) {
            bad = parse_u64(a, val, 1, 1000000, &u);
            o.vehicles = (uint32_t)u;
            have_vehicles = 1;
        } else if (strcmp(a, "--seconds") == 0) {
            bad = parse_double(a, val, 0, 1e7, &o.seconds);
            have_seconds = 1;
        } else if (strcmp(a, "--hz") == 0) {
            bad = parse_double(a, val, 0.001, 1000, &o.hz);
            have_hz = 1;
        } else if (strcmp(a, "--signals") == 0) {
            bad = parse_u64(a, val, 1, fv_sim_signal_count(), &u);
            o.signals = (uint32_t)u;
        } else if (strcmp(a, "--drain") == 0) {
            bad = parse_double(a, val, 0, 1e7, &o.drain_s);
        } else if (strcmp(a, "--acked-log") == 0) {
            o.acked_log = val;
        } else if (strcmp(a, "--slow-log") == 0) {
            o.slow_log = val;
        } else if (strcmp(a, "--seed") == 0) {
            bad = parse_u64(a, val, 0, UINT64_MAX, &o.seed);
        } else if (strcmp(a, "--id-prefix") == 0) {
            o.id_prefix = val;
        } else if (strcmp(a, "--clip-server") == 0) {
            o.clip_server = val;
        } else if (strcmp(a, "--clip-interrupt") == 0) {
            bad = parse_u64(a, val, 0, 1000000, &o.clip_interrupt);
        } else if (strcmp(a, "--connect-rate") == 0) {
            bad = parse_double(a, val, 0, 1e7, &o.connect_rate);
        } else if (strcmp(a, "--max-inflight") == 0) {
            bad = parse_u64(a, val, 1, 1000000, &u);
            o.max_inflight = (uint32_t)u;
        } else if (strcmp(a, "--resend-after") == 0) {
            bad = parse_double(a, val, 0.01, 3600, &d);
            o.resend_after_s = d;
        } else if (strcmp(a, "--virtual-time") == 0) {
            /* Up to 2^53 ms (year 287,000): times stay exact in a double downstream. */
            bad = parse_u64(a, val, 0, 1ULL << 53, &o.virtual_start_ms);
            o.virtual_time = 1;
        } else if (strcmp(a, "--jitter-ms") == 0) {
            bad = parse_u64(a, val, 0, 3600000, &u);
            o.jitter_ms = (uint32_t)u;
        } else if (strcmp(a, "--sites") == 0) {
            bad = parse_u64(a, val, 1, 1000000, &u);
            o.sites = (uint32_t)u;
        } else if (strcmp(a, "--days") == 0) {
            bad = parse_double(a, val, 0, 3660, &o.site_days);
        } else if (strcmp(a, "--site-prefix") == 0) {
            o.site_prefix = val;
        } else if (strcmp(a, "--opt-out-pct") == 0) {
            bad = parse_double(a, val, 0, 100, &o.opt_out_pct);
        } else if (strcmp(a, "--offline-pct") == 0) {
            bad = parse_double(a, val, 0, 100, &o.offline_pct);
        } else if (strcmp(a, "--utc-offset") == 0) {
            bad = parse_double(a, val, -14, 14, &o.site_utc_offset_h);
        } else if (strcmp(a, "--influx") == 0) {
            o.influx_path = val;
        } else {
            fprintf(stderr, "fleetvault simulate: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    if (o.no_server && (!o.virtual_time || !o.influx_path)) {
        fprintf(stderr, "fleetvault simulate: --no-server needs --virtual-time and --influx\n");
        return 2;
    }
    if ((!o.no_server && (!o.server || !o.certs_dir)) || (!have_vehicles && o.sites == 0) ||
        !have_seconds || !have_hz) {
        fprintf(stderr, "fleetvault simulate: --server, --certs (unless --no-server), --vehicles "
                        "or --sites, --seconds and --hz are required\n\n");
        usage(stderr);
        return 2;
    }
    char vin[FV_SIM_VIN_LEN + 1];
    char err[1024];
    char host[256], port[16], hostport[300], path[512];
    if (!o.no_server &&
        fv_sim_parse_url(o.server, host, sizeof host, port, sizeof port, hostport, sizeof hostport,
                         path, sizeof path, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault simulate: %s\n", err);
        return 2;
    }
    if (o.sites > 0 && (o.no_server || o.virtual_time || o.influx_path)) {
        fprintf(stderr, "fleetvault simulate: --sites runs in wall-clock time against a server "
                        "(not with --no-server, --virtual-time or --influx)\n");
        return 2;
    }
    if ((o.vehicles > 0 && fv_sim_vin(o.id_prefix, o.vehicles - 1, vin, err, sizeof err)) ||
        (o.sites > 0 && fv_sim_vin(o.site_prefix, o.sites - 1, vin, err, sizeof err))) {
        fprintf(stderr, "fleetvault simulate: %s\n", err);
        return 2;
    }
    if (o.vehicles > 0 && o.sites > 0 && strcmp(o.id_prefix, o.site_prefix) == 0) {
        fprintf(stderr, "fleetvault simulate: --id-prefix and --site-prefix must differ\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: epoll_wait returns EINTR at once */
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    o.stop = &g_stop;

    struct fv_sim_stats st;
    int rc = fv_sim_run(&o, &st, err, sizeof err);
    if (rc != FV_OK) {
        fprintf(stderr, "fleetvault simulate: %s\n", err);
        if (st.sent == 0) return 1;
    }
    fv_sim_stats_print_json(&st, stdout);
    return rc == FV_OK && st.unacked == 0 ? 0 : 1;
}
