/* presences.c - a cluster node's presence (presences.h). */
#include <stdio.h>
#include <string.h>

#include "cluster/jspresence.h"
#include "gateway/presence.h"
#include "gateway/session.h"
#include "server/presences.h"
#include "util/err.h"
#include "util/log.h"

int fv_presences_open(struct fv_presences *ps, const struct fv_config *cfg,
                      const struct fv_kek *kek, struct fv_fleet *fleet, struct fv_ingest *ing,
                      int (*wanted)(void *, const char *), void *wanted_arg, void (*wake)(void *),
                      void *wake_arg, char *err, size_t errlen)
{
    memset(ps, 0, sizeof *ps);
    if (cfg->role == FV_ROLE_ALL) return FV_OK;
    int gw = cfg->role == FV_ROLE_GATEWAY;
    char name[65];
    snprintf(name, sizeof name, "%s", cfg->cluster.node);
    if (name[0] == '\0') fv_cluster_node_default(cfg->data_dir, name, sizeof name);
    int rc = fv_jspresence_open(&cfg->cluster, kek,
                                gw ? "fleetvault-gateway-presence" : "fleetvault-storage-presence",
                                wake, wake_arg, &ps->js, err, errlen);
    if (rc) return rc;
    ps->wake = wake;
    ps->wake_arg = wake_arg;
    struct fv_presence_deps d = {.gateway = gw,
                                 .name = name,
                                 .fleet = fleet,
                                 .ing = gw ? ing : NULL,
                                 .rates = gw && cfg->rate_limit_enabled ? &cfg->rates : NULL,
                                 .publish = fv_jspresence_publish,
                                 .publish_arg = ps->js,
                                 .wanted = gw ? NULL : wanted,
                                 .wanted_arg = wanted_arg};
    rc = fv_presence_new(&d, &ps->p);
    if (rc) {
        fv_presences_close(ps);
        return rc;
    }
    /* P4: a gateway's first ALIVE goes before any of its claims (NATS keeps a connection's
     * order), so a storage node sees its new boot time first. */
    fv_presence_tick(ps->p);
    if (gw) fv_ingest_set_presence(ing, ps->p);
    fv_info("presence: %s %s on fvdl.%s.presence", gw ? "gateway" : "storage node", name,
            cfg->cluster.stream);
    return FV_OK;
}

void fv_presences_turn(struct fv_presences *ps, uint64_t takeovers)
{
    if (ps->p == NULL) return;
    if (takeovers != ps->takeovers) fv_presence_resync(ps->p);
    ps->takeovers = takeovers;
    struct fv_pres_msg m;
    int i = 0;
    while (i < 4096 && fv_jspresence_next(ps->js, &m)) {
        fv_presence_take(ps->p, &m);
        i++;
    }
    if (i == 4096) ps->wake(ps->wake_arg); /* the rest on the next turn: devices go first */
    fv_presence_tick(ps->p);
}

void fv_presences_close(struct fv_presences *ps)
{
    if (ps->p) {
        struct fv_presence_counts c;
        struct fv_jspres_counts t;
        fv_presence_counts(ps->p, &c);
        fv_jspresence_counts(ps->js, &t);
        fv_info("presence: %llu connections closed for a newer one elsewhere, %llu rate buckets "
                "handed over, %llu taken, %llu gateways lost; %llu announcements published (%llu "
                "refused), %llu received (%llu malformed, %llu dropped)",
                (unsigned long long)c.moved, (unsigned long long)c.handed,
                (unsigned long long)c.taken, (unsigned long long)c.gateways_lost,
                (unsigned long long)t.published, (unsigned long long)t.failed,
                (unsigned long long)t.received, (unsigned long long)t.malformed,
                (unsigned long long)t.dropped);
    }
    fv_jspresence_close(ps->js);
    fv_presence_free(ps->p);
    memset(ps, 0, sizeof *ps);
}
