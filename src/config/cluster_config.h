/*
 * cluster_config.h - the config file's "cluster" object and the server's role
 * (docs/cluster.md): gateways publish sealed records to a NATS JetStream stream, storage nodes
 * consume their shards of it (src/cluster/).
 *
 *   "cluster": {
 *     "nats": ["nats://10.0.0.1:4222", ...], required: 1 to 8 server URLs (or one string)
 *     "credentials": "/etc/fleetvault/nats.creds",  optional: a NATS credentials file
 *     "tls": {"ca": FILE[, "cert": FILE, "key": FILE]},  optional: cert and key together
 *     "stream": "FLEETVAULT",             the stream's name (A-Z a-z 0-9 _ -, 1 to 32)
 *     "subject_prefix": "fv.rec",         records go to PREFIX.SHARD (tokens of A-Z a-z 0-9 _ -)
 *     "replicas": 3,                      the stream's replicas (1 to 5)
 *     "shards": 16,                       subjects are mapped to shards by pseudonym (1 to 1024)
 *     "owned_shards": [0, 1, ...],        the shards a storage node may lease (default: all)
 *     "node": "st1",                      a storage node's name in the leases, a gateway's in
 *                                         presence (A-Z a-z 0-9 _ -, 1 to 64; default
 *                                         HOST-HASH of the data directory)
 *     "lease_bucket": "fv-leases",        the KV bucket of leases (A-Z a-z 0-9 _ -, 1 to 64)
 *     "lease_renew_ms": 2000,             a lease is renewed this often (100 to 60000)
 *     "lease_ttl_ms": 10000,              and expires this long after its last renewal (at
 *                                         least 3 renewals, at most 600000)
 *     "stream_max_age_days": 7,           the stream's max age when a node makes it (1 to 3650)
 *     "query_timeout_ms": 3000,           an api node waits this long for the shards' owners
 *                                         (100 to 60000; server/clusterapi.h Q5)
 *     "keys_bucket": "fv-keys",           the KV bucket of the shared keys (cluster/jskeys.h;
 *                                         A-Z a-z 0-9 _ -, 1 to 32)
 *     "subjects_bucket": "fv-subjects",   the KV bucket of owner periods and consents
 *                                         (cluster/jssubjects.h; as keys_bucket)
 *     "principals_bucket": "fv-principals" the KV bucket of the API's principals
 *                                         (cluster/jsprincipals.h; as keys_bucket)
 *     "quotas_bucket": "fv-quotas"        the KV bucket of the daily quota counts per node
 *                                         (cluster/jsquotas.h; as keys_bucket)
 *     "zones_bucket": "fv-zones"          the KV bucket of privacy zones
 *                                         (cluster/jszones.h; as keys_bucket)
 *   }
 * "catalog" (the first slice's shared catalog) is refused with a message saying why: each
 * node keeps its own DATA/catalog.db.
 * Roles: "all" (default) is the single node; "gateway", "storage" and "api" (the query API
 * for the whole cluster: server/clusterapi.h) need a "cluster" object,
 * and "all" with one is refused (this slice runs the roles as separate processes). An unknown
 * key or a bad value fails the load naming "cluster.KEY".
 *
 * Thread-safety: plain data, read-only once loaded.
 */
#ifndef FV_CONFIG_CLUSTER_CONFIG_H
#define FV_CONFIG_CLUSTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

enum fv_role { FV_ROLE_ALL = 0, FV_ROLE_GATEWAY, FV_ROLE_STORAGE, FV_ROLE_API };

#define FV_CLUSTER_MAX_URLS   8
#define FV_CLUSTER_MAX_SHARDS 1024

struct fv_cluster_cfg {
    int enabled; /* the object was given */
    char urls[FV_CLUSTER_MAX_URLS][256];
    size_t nurls;
    char credentials[1024];
    char ca[1024], cert[1024], key[1024]; /* TLS: ca set = TLS on */
    char stream[33];
    char subject_prefix[65];
    int replicas;
    uint32_t shards;
    /* owned[i] != 0: this storage node may lease shard i (jslease.h); owned_given: the
     * config restricted it (owned_shards), else every shard is allowed */
    uint8_t owned[FV_CLUSTER_MAX_SHARDS];
    int owned_given;
    char node[65];         /* "": the server fills in fv_cluster_node_default's */
    char lease_bucket[65]; /* the leases' KV bucket */
    int lease_renew_ms, lease_ttl_ms;
    int stream_max_age_days;
    int query_timeout_ms;     /* an api node's wait for the shards' owners (server/clusterapi.h) */
    char keys_bucket[33];     /* the KV bucket of the shared keys (cluster/jskeys.h) */
    char subjects_bucket[33]; /* the KV bucket of owner periods and consents (jssubjects.h) */
    char principals_bucket[33]; /* the KV bucket of principals (jsprincipals.h) */
    char quotas_bucket[33];     /* the KV bucket of quota counts (jsquotas.h) */
    char zones_bucket[33];      /* the KV bucket of privacy zones (jszones.h) */
};

/* "all", "gateway", "storage", "api" -> *out; FV_EINVAL otherwise. */
int fv_role_parse(const char *s, enum fv_role *out);
const char *fv_role_name(enum fv_role r);

/* Parses the "cluster" object o over c (defaults first). FV_OK, or FV_EINVAL with err naming
 * path and cluster.KEY. */
int fv_cluster_cfg_parse(struct fv_cluster_cfg *c, struct json_t *o, const char *path, char *err,
                         size_t errlen);

/* The default node name: the host name (characters other than A-Z a-z 0-9 _ - made '-', at most
 * 40) and '-' and 8 hex digits of a hash of the data directory's real path: stable across
 * restarts of the same node, different for two nodes on one host. */
void fv_cluster_node_default(const char *data_dir, char *out, size_t cap);

/* The role against the cluster object: FV_OK, or FV_EINVAL with err saying what is missing. */
int fv_cluster_cfg_check(const struct fv_cluster_cfg *c, enum fv_role role, char *err,
                         size_t errlen);

#endif
