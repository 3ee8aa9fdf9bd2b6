/* downlinks.c - the capabilities' downlink per role (downlinks.h). */
#include <stdio.h>
#include <string.h>

#include "cluster/jsdownlink.h"
#include "data/campaign.h"
#include "energy/vpp.h"
#include "gateway/downlink.h"
#include "gateway/metrics.h"
#include "gateway/session.h"
#include "server/downlinks.h"
#include "util/err.h"
#include "util/log.h"

/* The VPP's and the campaigns' listeners, in that order. */
static void caps(struct fv_downlinks *d, const struct fv_downlink_listener *ls[2])
{
    ls[0] = fv_vpp_listener(d->vpp);
    ls[1] = fv_campaign_listener(d->campaigns);
}

/* Hands each uplink topic to the capability that named it (D2: the ingest loop on one node,
 * nats.c's thread on a storage node). */
static void listen_message(void *arg, const char *device, const char *topic,
                           const unsigned char *payload, size_t len)
{
    const struct fv_downlink_listener *ls[2];
    caps(arg, ls);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < FV_DOWNLINK_MAX_TOPICS && ls[k]->topics[i]; i++)
            if (strcmp(ls[k]->topics[i], topic) == 0) {
                ls[k]->on_message(ls[k]->arg, device, topic, payload, len);
                return;
            }
}

/* Every connection to both. */
static void listen_connect(void *arg, const char *device)
{
    const struct fv_downlink_listener *ls[2];
    caps(arg, ls);
    for (int k = 0; k < 2; k++)
        if (ls[k]->on_connect) ls[k]->on_connect(ls[k]->arg, device);
}

int fv_downlinks_open(struct fv_downlinks *d, const struct fv_config *cfg, const struct fv_kek *kek,
                      struct fv_gw_downlink *local, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->local = local;
    /* An api node sends no commands and hears no replies: the VPP and campaigns run on the
     * storage nodes (docs/cluster.md, "Queries through an api node"). */
    if (cfg->role == FV_ROLE_ALL || cfg->role == FV_ROLE_API) return FV_OK;
    return fv_jsdownlink_open(&cfg->cluster, kek,
                              cfg->role == FV_ROLE_GATEWAY ? "fleetvault-gateway-downlink"
                                                           : "fleetvault-storage-downlink",
                              &d->js, err, errlen);
}

struct fv_downlink fv_downlinks_port(struct fv_downlinks *d)
{
    if (d->js && d->cfg->role == FV_ROLE_STORAGE) return fv_jsdownlink_port(d->js);
    return fv_gw_downlink_port(d->local);
}

int fv_downlinks_wire(struct fv_downlinks *d, struct fv_ingest *ing, struct fv_vpp *vpp,
                      struct fv_campaign *campaigns, char *err, size_t errlen)
{
    d->vpp = vpp;
    d->campaigns = campaigns;
    const struct fv_downlink_listener *ls[2];
    caps(d, ls);
    int n = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < FV_DOWNLINK_MAX_TOPICS && ls[k]->topics[i]; i++)
            if (n < FV_DOWNLINK_MAX_TOPICS) d->listen.topics[n++] = ls[k]->topics[i];
    d->listen.on_message = listen_message;
    d->listen.on_connect = listen_connect;
    d->listen.arg = d;
    if (d->js == NULL) {
        fv_ingest_set_listener(ing, &d->listen);
        return FV_OK;
    }
    if (d->cfg->role == FV_ROLE_GATEWAY) {
        fv_ingest_set_listener(ing, fv_jsdownlink_uplink(d->js, d->listen.topics));
        return fv_jsdownlink_serve(d->js, fv_gw_downlink_remote_port(d->local), err, errlen);
    }
    return fv_jsdownlink_listen(d->js, &d->listen, err, errlen); /* no devices here */
}

void fv_downlinks_metrics(struct fv_downlinks *d, struct fv_metrics *m)
{
    if (d->js == NULL) return;
    struct fv_jsdl_counts c;
    fv_jsdownlink_counts(d->js, &c);
    m->cluster_dl_published = c.published;
    m->cluster_dl_failed = c.failed;
    m->cluster_dl_received = c.received;
    m->cluster_dl_malformed = c.malformed;
}

void fv_downlinks_close(struct fv_downlinks *d, struct fv_metrics *m)
{
    if (d->js == NULL) return;
    fv_downlinks_metrics(d, m);
    if (d->cfg->role == FV_ROLE_GATEWAY)
        fv_info("downlink: %llu commands from the cluster, %llu delivered here, %llu for devices "
                "not connected here; %llu replies and connects published (%llu refused)",
                (unsigned long long)m->cluster_dl_received, (unsigned long long)m->downlink_sent,
                (unsigned long long)m->downlink_not_here,
                (unsigned long long)m->cluster_dl_published,
                (unsigned long long)m->cluster_dl_failed);
    else
        fv_info("downlink: %llu commands published (%llu refused), %llu replies and connects "
                "received",
                (unsigned long long)m->cluster_dl_published,
                (unsigned long long)m->cluster_dl_failed,
                (unsigned long long)m->cluster_dl_received);
    fv_jsdownlink_close(d->js);
    d->js = NULL;
}
