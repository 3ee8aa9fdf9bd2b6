/* cluster_config.c - the config file's "cluster" object and the role (cluster_config.h). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config/cluster_config.h"
#include "config/config.h"
#include "util/err.h"

static const char *const role_names[] = {"all", "gateway", "storage", "api"};

int fv_role_parse(const char *s, enum fv_role *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum fv_role)i;
            return FV_OK;
        }
    return FV_EINVAL;
}

const char *fv_role_name(enum fv_role r)
{
    return (unsigned)r < 4 ? role_names[r] : "?";
}

/* A name of 1 to cap-1 characters of [A-Za-z0-9_-] (dots too when dots: subject tokens,
 * never empty, never at either end). */
static int name_ok(const char *s, size_t cap, int dots)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || (dots && ch == '.')))
            return 0;
    }
    return 1;
}

static int add_url(struct fv_cluster_cfg *c, json_t *v)
{
    if (c->nurls == FV_CLUSTER_MAX_URLS || fv_config_copy_str(v, c->urls[c->nurls], 256) != FV_OK)
        return FV_EINVAL;
    const char *u = c->urls[c->nurls];
    if (strncmp(u, "nats://", 7) != 0 && strncmp(u, "tls://", 6) != 0) return FV_EINVAL;
    c->nurls++;
    return FV_OK;
}

static int parse_urls(struct fv_cluster_cfg *c, json_t *v)
{
    if (json_is_string(v)) return add_url(c, v);
    if (!json_is_array(v) || json_array_size(v) == 0) return FV_EINVAL;
    size_t i;
    json_t *u;
    json_array_foreach(v, i, u)
    {
        if (add_url(c, u) != FV_OK) return FV_EINVAL;
    }
    return FV_OK;
}

static int parse_int(json_t *v, long lo, long hi, long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return FV_EINVAL;
    *out = (long)json_integer_value(v);
    return FV_OK;
}

/* owned_shards: checked against shards after the whole object is read. */
static int parse_owned(struct fv_cluster_cfg *c, json_t *v, int *given)
{
    if (!json_is_array(v) || json_array_size(v) == 0) return FV_EINVAL;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        long n;
        if (parse_int(s, 0, FV_CLUSTER_MAX_SHARDS - 1, &n) != FV_OK) return FV_EINVAL;
        c->owned[n] = 1;
    }
    *given = 1;
    return FV_OK;
}

int fv_cluster_cfg_parse(struct fv_cluster_cfg *c, json_t *o, const char *path, char *err,
                         size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->stream, sizeof c->stream, "FLEETVAULT");
    snprintf(c->subject_prefix, sizeof c->subject_prefix, "fv.rec");
    snprintf(c->keys_bucket, sizeof c->keys_bucket, "fv-keys");
    snprintf(c->subjects_bucket, sizeof c->subjects_bucket, "fv-subjects");
    snprintf(c->principals_bucket, sizeof c->principals_bucket, "fv-principals");
    snprintf(c->quotas_bucket, sizeof c->quotas_bucket, "fv-quotas");
    snprintf(c->zones_bucket, sizeof c->zones_bucket, "fv-zones");
    c->replicas = 3;
    c->shards = 16;
    snprintf(c->lease_bucket, sizeof c->lease_bucket, "fv-leases");
    c->lease_renew_ms = 2000;
    c->lease_ttl_ms = 10000;
    c->stream_max_age_days = 7;
    c->query_timeout_ms = 3000;
    if (!json_is_object(o)) {
        fv_seterr(err, errlen, "%s: cluster: expected an object", path);
        return FV_EINVAL;
    }
    const char *key;
    json_t *val;
    int owned_given = 0, ttl_given = 0;
    json_object_foreach(o, key, val)
    {
        int rc = FV_EINVAL;
        const char *want = "";
        long n = 0;
        if (strcmp(key, "nats") == 0) {
            want = "1 to 8 URLs \"nats://HOST:PORT\" or \"tls://HOST:PORT\"";
            rc = parse_urls(c, val);
        } else if (strcmp(key, "credentials") == 0) {
            want = "a file name";
            rc = fv_config_copy_str(val, c->credentials, sizeof c->credentials);
        } else if (strcmp(key, "tls") == 0) {
            want = "{\"ca\": FILE[, \"cert\": FILE, \"key\": FILE]}";
            rc = fv_config_tls(val, c->ca, c->cert, c->key, sizeof c->ca);
        } else if (strcmp(key, "stream") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->stream, sizeof c->stream);
            if (rc == FV_OK && !name_ok(c->stream, sizeof c->stream, 0)) rc = FV_EINVAL;
        } else if (strcmp(key, "subject_prefix") == 0) {
            want = "1 to 64 of A-Z a-z 0-9 _ - and dots between tokens";
            rc = fv_config_copy_str(val, c->subject_prefix, sizeof c->subject_prefix);
            if (rc == FV_OK && !name_ok(c->subject_prefix, sizeof c->subject_prefix, 1))
                rc = FV_EINVAL;
        } else if (strcmp(key, "replicas") == 0) {
            want = "an integer from 1 to 5";
            rc = parse_int(val, 1, 5, &n);
            c->replicas = (int)n;
        } else if (strcmp(key, "shards") == 0) {
            want = "an integer from 1 to 1024";
            rc = parse_int(val, 1, FV_CLUSTER_MAX_SHARDS, &n);
            c->shards = (uint32_t)n;
        } else if (strcmp(key, "owned_shards") == 0) {
            want = "a list of shard numbers (0 to shards-1)";
            rc = parse_owned(c, val, &owned_given);
        } else if (strcmp(key, "node") == 0 || strcmp(key, "lease_bucket") == 0) {
            want = "1 to 64 of A-Z a-z 0-9 _ -";
            char *dst = key[0] == 'n' ? c->node : c->lease_bucket;
            rc = fv_config_copy_str(val, dst, sizeof c->node);
            if (rc == FV_OK && !name_ok(dst, sizeof c->node, 0)) rc = FV_EINVAL;
        } else if (strcmp(key, "lease_renew_ms") == 0) {
            want = "an integer from 100 to 60000 (milliseconds)";
            rc = parse_int(val, 100, 60000, &n);
            c->lease_renew_ms = (int)n;
        } else if (strcmp(key, "lease_ttl_ms") == 0) {
            want = "an integer from 300 to 600000 (milliseconds)";
            rc = parse_int(val, 300, 600000, &n);
            c->lease_ttl_ms = (int)n;
            ttl_given = 1;
        } else if (strcmp(key, "query_timeout_ms") == 0) {
            want = "an integer from 100 to 60000 (milliseconds)";
            rc = parse_int(val, 100, 60000, &n);
            c->query_timeout_ms = (int)n;
        } else if (strcmp(key, "stream_max_age_days") == 0) {
            want = "an integer from 1 to 3650";
            rc = parse_int(val, 1, 3650, &n);
            c->stream_max_age_days = (int)n;
        } else if (strcmp(key, "keys_bucket") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->keys_bucket, sizeof c->keys_bucket);
            if (rc == FV_OK && !name_ok(c->keys_bucket, sizeof c->keys_bucket, 0)) rc = FV_EINVAL;
        } else if (strcmp(key, "subjects_bucket") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->subjects_bucket, sizeof c->subjects_bucket);
            if (rc == FV_OK && !name_ok(c->subjects_bucket, sizeof c->subjects_bucket, 0))
                rc = FV_EINVAL;
        } else if (strcmp(key, "principals_bucket") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->principals_bucket, sizeof c->principals_bucket);
            if (rc == FV_OK && !name_ok(c->principals_bucket, sizeof c->principals_bucket, 0))
                rc = FV_EINVAL;
        } else if (strcmp(key, "zones_bucket") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->zones_bucket, sizeof c->zones_bucket);
            if (rc == FV_OK && !name_ok(c->zones_bucket, sizeof c->zones_bucket, 0)) rc = FV_EINVAL;
        } else if (strcmp(key, "quotas_bucket") == 0) {
            want = "1 to 32 of A-Z a-z 0-9 _ -";
            rc = fv_config_copy_str(val, c->quotas_bucket, sizeof c->quotas_bucket);
            if (rc == FV_OK && !name_ok(c->quotas_bucket, sizeof c->quotas_bucket, 0))
                rc = FV_EINVAL;
        } else if (strcmp(key, "catalog") == 0) {
            fv_seterr(err, errlen,
                      "%s: cluster.catalog: no longer used: each node keeps its own "
                      "DATA/catalog.db and shares keys through the KV bucket cluster.keys_bucket "
                      "(docs/cluster.md, \"Keys\"); remove it",
                      path);
            return FV_EINVAL;
        } else {
            fv_seterr(err, errlen, "%s: cluster: unknown key \"%s\"", path, key);
            return FV_EINVAL;
        }
        if (rc != FV_OK) {
            fv_seterr(err, errlen, "%s: cluster.%s: expected %s", path, key, want);
            return FV_EINVAL;
        }
    }
    if (c->nurls == 0) {
        fv_seterr(err, errlen, "%s: cluster.nats: required (a list of \"nats://HOST:PORT\")", path);
        return FV_EINVAL;
    }
    for (uint32_t i = 0; i < FV_CLUSTER_MAX_SHARDS; i++) {
        if (owned_given && c->owned[i] && i >= c->shards) {
            fv_seterr(err, errlen, "%s: cluster.owned_shards: shard %u, but there are %u (0 to %u)",
                      path, i, c->shards, c->shards - 1);
            return FV_EINVAL;
        }
        if (!owned_given && i < c->shards) c->owned[i] = 1;
    }
    if (!ttl_given && c->lease_ttl_ms < 5 * c->lease_renew_ms)
        c->lease_ttl_ms = 5 * c->lease_renew_ms; /* the default: 5 renewals */
    if (c->lease_ttl_ms < 3 * c->lease_renew_ms) {
        fv_seterr(err, errlen,
                  "%s: cluster.lease_ttl_ms: %d, but it must be at least 3 times "
                  "cluster.lease_renew_ms (%d)",
                  path, c->lease_ttl_ms, c->lease_renew_ms);
        return FV_EINVAL;
    }
    c->owned_given = owned_given;
    c->enabled = 1;
    return FV_OK;
}

void fv_cluster_node_default(const char *data_dir, char *out, size_t cap)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "node");
    host[40] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            *p = '-';
    char real[PATH_MAX];
    const char *d = realpath(data_dir, real) ? real : data_dir;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
        h = (h ^ *p) * 16777619u;
    snprintf(out, cap, "%s-%08x", host, h);
}

int fv_cluster_cfg_check(const struct fv_cluster_cfg *c, enum fv_role role, char *err,
                         size_t errlen)
{
    if (role != FV_ROLE_ALL && !c->enabled) {
        fv_seterr(err, errlen,
                  "role %s needs a \"cluster\" object in the config (NATS URLs, stream; "
                  "docs/cluster.md)",
                  fv_role_name(role));
        return FV_EINVAL;
    }
    if (role == FV_ROLE_ALL && c->enabled) {
        fv_seterr(err, errlen,
                  "the config has a \"cluster\" object: run each node with --role gateway, "
                  "storage or api (role all is the single node, without one)");
        return FV_EINVAL;
    }
    return FV_OK;
}
