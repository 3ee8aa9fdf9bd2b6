/*
 * simnet.c - the simulator's network set-up (simulate_int.h): the server URL parsed
 * (fv_sim_parse_url, simulate.h), its address resolved and the TLS client context made
 * (fv_sim__setup_network), every device's certificate minted before the run
 * (fv_sim__mint_all). Moved out of simulate.c, which keeps the run loop.
 *
 * Threading: fv_sim_run's thread only, before the run starts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto/certs.h"
#include "sim/simulate_int.h"
#include "sim/wsclient.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

static const char DEVICE_HEADERS[] = "X-Network-Interface: wifi\r\n"
                                     "User-Agent: Hermes/1.16.2 (vehicle_device)\r\n"
                                     "Version: 2025.20\r\n";

int fv_sim_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                     char *hostport, size_t hostportlen, char *path, size_t pathlen, char *err,
                     size_t errlen)
{
    if (strncmp(url, "wss://", 6) != 0) {
        fv_seterr(err, errlen, "server URL '%s' must start with wss://", url);
        return FV_EINVAL;
    }
    const char *h = url + 6;
    const char *slash = strchr(h, '/');
    size_t auth_len = slash ? (size_t)(slash - h) : strlen(h);
    const char *hs = h, *he, *ps = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', auth_len);
        if (rb == NULL) {
            fv_seterr(err, errlen, "server URL '%s': unclosed '[' in the host", url);
            return FV_EINVAL;
        }
        hs = h + 1;
        he = rb;
        if (rb + 1 < h + auth_len) {
            if (rb[1] != ':') {
                fv_seterr(err, errlen, "server URL '%s': expected ':' after ']'", url);
                return FV_EINVAL;
            }
            ps = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', auth_len);
        he = colon ? colon : h + auth_len;
        ps = colon ? colon + 1 : NULL;
    }
    size_t hl = (size_t)(he - hs);
    size_t pl = ps ? (size_t)(h + auth_len - ps) : 0;
    if (hl == 0 || hl >= hostlen) {
        fv_seterr(err, errlen, "server URL '%s' has no valid host", url);
        return FV_EINVAL;
    }
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (ps == NULL) {
        snprintf(port, portlen, "443");
    } else {
        unsigned long pn = 0;
        if (pl == 0 || pl > 5) {
            fv_seterr(err, errlen, "server URL '%s' has an invalid port", url);
            return FV_EINVAL;
        }
        for (size_t i = 0; i < pl; i++) {
            if (ps[i] < '0' || ps[i] > '9') {
                fv_seterr(err, errlen, "server URL '%s' has an invalid port", url);
                return FV_EINVAL;
            }
            pn = pn * 10 + (unsigned long)(ps[i] - '0');
        }
        if (pn == 0 || pn > 65535) {
            fv_seterr(err, errlen, "server URL '%s': port must be 1..65535", url);
            return FV_EINVAL;
        }
        snprintf(port, portlen, "%lu", pn);
    }
    int v6 = *h == '[';
    if ((size_t)snprintf(hostport, hostportlen, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                         port) >= hostportlen ||
        (size_t)snprintf(path, pathlen, "%s", slash ? slash : "/") >= pathlen) {
        fv_seterr(err, errlen, "server URL '%s' is too long", url);
        return FV_EINVAL;
    }
    return FV_OK;
}

/* Resolves the server, loads the CA and makes the TLS context. */
int fv_sim__setup_network(struct run *r, char *err, size_t errlen)
{
    const struct fv_sim_opts *o = r->o;
    int rc =
        fv_sim_parse_url(o->server, r->host, sizeof r->host, r->port, sizeof r->port, r->hostport,
                         sizeof r->hostport, r->path, sizeof r->path, err, errlen);
    if (rc) return rc;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(r->host, r->port, &hints, &ai);
    if (g != 0 || ai == NULL) {
        fv_seterr(err, errlen, "cannot resolve server host '%s': %s", r->host,
                  g ? gai_strerror(g) : "no address");
        return FV_EINVAL;
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, r->host, ipbuf) == 1 || inet_pton(AF_INET6, r->host, ipbuf) == 1;
    r->target.addr = (const struct sockaddr *)&r->addr;
    r->target.addrlen = r->addrlen;
    r->target.host_header = r->hostport;
    r->target.sni = is_ip ? NULL : r->host;
    r->target.path = r->path;
    r->target.headers = DEVICE_HEADERS;

    char ca_file[4096];
    if ((size_t)snprintf(ca_file, sizeof ca_file, "%s/ca.crt", o->certs_dir) >= sizeof ca_file) {
        fv_seterr(err, errlen, "certificate directory path too long");
        return FV_EINVAL;
    }
    char e2[512];
    if ((rc = fv_ca_load(o->certs_dir, &r->ca, e2, sizeof e2))) {
        fv_seterr(err, errlen,
                  "cannot load the CA from %s (make it with 'fleetvault certs init "
                  "%s'): %s",
                  o->certs_dir, o->certs_dir, e2);
        return rc;
    }
    return fv_sim_ws_ctx_new(ca_file, r->host, &r->ctx, err, errlen);
}

/* Mints every device's certificate (start_connect would otherwise, on the loop). */
int fv_sim__mint_all(struct run *r, char *err, size_t errlen)
{
    uint64_t t0 = fv_mono_ns();
    uint32_t i = 0;
    for (; i < r->n; i++) {
        struct veh *v = &r->v[i];
        int type = v->site ? FV_CT_ENERGY_DEVICE : FV_CT_VEHICLE_DEVICE;
        char e[256];
        int rc = fv_ca_mint(r->ca, v->vin, type, &v->cert, &v->key, e, sizeof e);
        if (rc) {
            fv_seterr(err, errlen, "minting a certificate for %s: %s", v->vin, e);
            return rc;
        }
        if (r->o->stop && *r->o->stop) { /* start_connect mints the rest, if it runs */
            i++;
            break;
        }
    }
    fv_info("simulate: %u device certificates minted in %.2f s", i,
            (double)(fv_mono_ns() - t0) / 1e9);
    return FV_OK;
}
