/*
 * cmd_cluster.c - `fleetvault cluster ...`: operating a cluster on NATS JetStream
 * (docs/cluster.md, "Status").
 *
 *   fleetvault cluster status --config FILE [--json]
 *   fleetvault cluster keys-rotate --config FILE --key-file OLD --new-key-file NEW [--dry-run]
 *
 * Connects to the NATS servers of the config's "cluster" object and prints the record stream,
 * the storage nodes, each shard's lease owner and durable consumers (cluster/jsstatus.h),
 * read-only. Exit status: 0 healthy, 1 degraded (a shard without a live lease, a stream
 * replica offline or lagging), 2 no status
 * (bad usage or config, NATS not reachable, no stream: the reason on standard error).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/commands.h"
#include "cluster/jsrotate.h"
#include "cluster/jsstatus.h"
#include "crypto/keys.h"
#include "config/config.h"
#include "util/err.h"

#define STATUS_WAIT_MS 5000 /* each JetStream request */

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault cluster status --config FILE [--json]\n"
               "  the stream, the storage nodes and each shard's lease owner and consumers\n"
               "  (lag) from the config's \"cluster\" NATS servers; read-only. Exit: 0\n"
               "  healthy, 1 degraded (a shard without a live lease, a replica offline or\n"
               "  lagging), 2 no status (NATS not\n"
               "  reachable, no stream, bad config).\n"
               "       fleetvault cluster keys-rotate --config FILE --key-file OLD "
               "--new-key-file NEW [--dry-run]\n"
               "  re-wraps every value of the keys, subjects, principals, quotas and zones\n"
               "  buckets\n"
               "  from master key OLD\n"
               "  to NEW (compare-and-set; markers and values under NEW left alone). Run it\n"
               "  once every node runs with --key-file NEW --previous-key-file OLD; safe to\n"
               "  run again. --dry-run: checks only. Exit: 0 done, 1 refused or failed (the\n"
               "  reason on standard error), 2 bad usage or config (docs/cluster.md, \"Master\n"
               "  key rotation\").\n");
}

static json_int_t jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* "12s ago" for a time in ms since the epoch, "never" for 0. */
static void ago(json_int_t ms, char *out, size_t cap)
{
    if (ms <= 0) {
        snprintf(out, cap, "never");
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long d = ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 - ms) / 1000;
    snprintf(out, cap, "%llds ago", d < 0 ? 0 : d);
}

static void print_cluster(const json_t *cl)
{
    if (!json_is_object(cl)) {
        printf("  cluster: none (a single NATS server)\n");
        return;
    }
    printf("  cluster %s, leader %s\n", jstr(cl, "name"), jstr(cl, "leader"));
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(cl, "replicas"), i, r)
    {
        printf("    replica %-20s %s, lag %lld\n", jstr(r, "name"),
               json_is_true(json_object_get(r, "offline"))   ? "OFFLINE"
               : json_is_true(json_object_get(r, "current")) ? "current"
                                                             : "NOT CURRENT",
               (long long)jint(r, "lag"));
    }
}

static void print_consumer_row(json_int_t shard, const json_t *c)
{
    char last[32];
    ago(jint(c, "last_active_ms"), last, sizeof last);
    printf("%5lld  %-14s %10lld %10lld %8lld %8lld %6lld %5lld  %s\n", (long long)shard,
           jstr(c, "name"), (long long)jint(c, "delivered_seq"),
           (long long)jint(c, "ack_floor_seq"), (long long)jint(c, "pending"),
           (long long)jint(c, "ack_pending"), (long long)jint(c, "redelivered"),
           (long long)jint(c, "waiting"), last);
}

static void print_human(const json_t *st)
{
    const json_t *s = json_object_get(st, "stream");
    printf("health: %s\n\nstream %s (", jstr(st, "health"), jstr(s, "name"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(s, "subjects"), i, v)
        printf("%s%s", i ? ", " : "", json_string_value(v));
    printf("), replicas %lld\n  %lld messages, %lld bytes, sequence %lld to %lld\n",
           (long long)jint(s, "replicas"), (long long)jint(s, "messages"),
           (long long)jint(s, "bytes"), (long long)jint(s, "first_seq"),
           (long long)jint(s, "last_seq"));
    print_cluster(json_object_get(s, "cluster"));
    printf("\nstorage nodes (lease bucket %s%s):\n", jstr(st, "lease_bucket"),
           json_is_true(json_object_get(st, "lease_bucket_exists")) ? "" : ", not made yet");
    json_array_foreach(json_object_get(st, "nodes"), i, v)
    {
        char seen[32];
        ago(jint(v, "last_seen_ms"), seen, sizeof seen);
        printf("  %-40s %4lld shards, last seen %s\n", jstr(v, "name"),
               (long long)jint(v, "shards"), seen);
    }
    printf("\nshards: %lld, unowned %lld\n", (long long)jint(st, "shards_total"),
           (long long)jint(st, "shards_unowned"));
    printf("%5s  %-14s %10s %10s %8s %8s %6s %5s  %s\n", "shard", "consumer", "delivered",
           "ack floor", "lag", "ack pend", "redel", "wait", "last active");
    json_array_foreach(json_object_get(st, "shards"), i, v)
    {
        const json_t *cons = json_object_get(v, "consumers");
        if (json_is_true(json_object_get(v, "owned")))
            printf("%5lld  lease: %s\n", (long long)jint(v, "shard"), jstr(v, "owner"));
        else
            printf("%5lld  UNOWNED (no live lease)\n", (long long)jint(v, "shard"));
        size_t k;
        json_t *c;
        json_array_foreach(cons, k, c) print_consumer_row(jint(v, "shard"), c);
    }
    json_array_foreach(json_object_get(st, "other_consumers"), i, v)
        printf("other consumer %s (not on a shard's subject): lag %lld\n", jstr(v, "name"),
               (long long)jint(v, "pending"));
}

static int cluster_status(int argc, char **argv)
{
    const char *config = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "fleetvault cluster status: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "fleetvault cluster status: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    static struct fv_config cfg; /* large: not on the stack */
    char err[1024] = "";
    fv_config_defaults(&cfg);
    if (fv_config_load(&cfg, config, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault cluster status: %s\n", err);
        return 2;
    }
    if (!cfg.cluster.enabled) {
        fprintf(stderr,
                "fleetvault cluster status: %s has no \"cluster\" object (a single node; see "
                "docs/cluster.md)\n",
                config);
        return 2;
    }
    json_t *st = NULL;
    enum fv_health h = fv_cluster_status(&cfg.cluster, STATUS_WAIT_MS, &st, err, sizeof err);
    if (h == FV_HEALTH_DOWN) {
        fprintf(stderr, "fleetvault cluster status: %s\n", err);
        return 2;
    }
    if (as_json) {
        json_dumpf(st, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        print_human(st);
    }
    json_decref(st);
    return h == FV_HEALTH_OK ? 0 : 1;
}

static int cluster_keys_rotate(int argc, char **argv)
{
    const char *config = NULL, *oldf = NULL, *newf = NULL;
    int dry_run = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            oldf = argv[++i];
        } else if (strcmp(argv[i], "--new-key-file") == 0 && i + 1 < argc) {
            newf = argv[++i];
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "fleetvault cluster keys-rotate: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || oldf == NULL || newf == NULL) {
        fprintf(stderr, "fleetvault cluster keys-rotate: --config, --key-file and "
                        "--new-key-file are required\n");
        usage(stderr);
        return 2;
    }
    static struct fv_config cfg; /* large: not on the stack */
    char err[1024] = "";
    fv_config_defaults(&cfg);
    if (fv_config_load(&cfg, config, err, sizeof err) != FV_OK) {
        fprintf(stderr, "fleetvault cluster keys-rotate: %s\n", err);
        return 2;
    }
    if (!cfg.cluster.enabled) {
        fprintf(stderr,
                "fleetvault cluster keys-rotate: %s has no \"cluster\" object (a single node "
                "rotates with 'fleetvault keys rotate')\n",
                config);
        return 2;
    }
    struct fv_kek oldk, newk;
    memset(&newk, 0, sizeof newk);
    int rc = fv_kek_load(oldf, &oldk, err, sizeof err);
    if (rc == FV_OK) rc = fv_kek_load(newf, &newk, err, sizeof err);
    struct fv_jsrotate_stats st;
    if (rc == FV_OK)
        rc = fv_jsrotate_run(&cfg.cluster, &oldk, &newk,
                             &(struct fv_jsrotate_opts){.dry_run = dry_run, .progress = stderr},
                             &st, err, sizeof err);
    if (rc == FV_OK && dry_run)
        printf("dry run: %llu entries in KV buckets %s, %s, %s, %s and %s: %llu under the old "
               "master key "
               "%s (to re-wrap), %llu under the new %s, %llu erased (markers); nothing "
               "changed\n",
               (unsigned long long)st.entries, cfg.cluster.keys_bucket, cfg.cluster.subjects_bucket,
               cfg.cluster.principals_bucket, cfg.cluster.quotas_bucket, cfg.cluster.zones_bucket,
               (unsigned long long)st.old_found, oldk.id, (unsigned long long)st.already, newk.id,
               (unsigned long long)st.markers);
    else if (rc == FV_OK)
        printf("%llu entries in KV buckets %s, %s, %s, %s and %s: %llu re-wrapped from master "
               "key %s to "
               "%s, %llu already under it, %llu erased (markers, left as they are); %llu "
               "writes lost to other nodes and done again; %d round%s. Every value is "
               "wrapped by %s now\n",
               (unsigned long long)st.entries, cfg.cluster.keys_bucket, cfg.cluster.subjects_bucket,
               cfg.cluster.principals_bucket, cfg.cluster.quotas_bucket, cfg.cluster.zones_bucket,
               (unsigned long long)st.rewrapped, oldk.id, newk.id, (unsigned long long)st.already,
               (unsigned long long)st.markers, (unsigned long long)st.races, st.rounds,
               st.rounds == 1 ? "" : "s", newk.id);
    else
        fprintf(stderr, "fleetvault cluster keys-rotate: %s\n", err);
    fv_kek_wipe(&oldk);
    fv_kek_wipe(&newk);
    return rc == FV_OK ? 0 : 1;
}

int fv_cmd_cluster(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "status") == 0) return cluster_status(argc - 1, argv + 1);
    if (strcmp(argv[1], "keys-rotate") == 0) return cluster_keys_rotate(argc - 1, argv + 1);
    fprintf(stderr, "fleetvault cluster: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
