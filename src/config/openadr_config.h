/*
 * openadr_config.h - the config file's "openadr" object: fleetvault as an OpenADR 2.0b VEN
 * (docs/openadr.md; the VEN itself is openadr/ven.h).
 *
 *   "openadr": {
 *     "ven_name": "fleetvault-ven",
 *     "vtns": [{"name": "utility", "url": "https://HOST:PORT/OpenADR2/Simple/2.0b",
 *               "cert": "ven.crt", "key": "ven.key", "ca": "ca.crt"}],
 *     "push": {"listen": "127.0.0.1:PORT", "cert": "...", "key": "...", "ca": "...",
 *              "address": "https://HOST:PORT/OpenADR2/Simple/2.0b"},
 *     "market_contexts": {"http://elrp.example/a4": {"program": "elrp",
 *                          "simple_levels": {"1": 0.33, "2": 0.66, "3": 1.0}}},
 *     "schema_dir": "share/openadr-2.0b",
 *     "report_interval_s": 60
 *   }
 * ven_name, vtns (1 to FV_OADR_CFG_VTNS, url https://) and market_contexts are required; push,
 * schema_dir (default: the source tree's share/openadr-2.0b) and report_interval_s (1-3600,
 * default 60) are optional. Paths are read as given (relative to the working directory).
 * push: the VEN listens on push.listen (HTTPS; the VTN's client certificate is checked against
 * push.ca, a VTN without one is refused) and registers push.address (default
 * https://LISTEN/OpenADR2/Simple/2.0b) as its oadrTransportAddress, with httpPullModel false.
 * simple_levels: fractions of the fleet's capacity for SIMPLE levels 1-3, each in [0, 1]
 * (default 0.33, 0.66, 1.0); level 0 never dispatches. An unknown key or a bad value fails
 * the load naming "openadr.KEY". Whether the program exists is the VPP's to check (at start).
 *
 * Thread-safety: plain data, read-only once loaded.
 */
#ifndef FV_CONFIG_OPENADR_CONFIG_H
#define FV_CONFIG_OPENADR_CONFIG_H

#include <stddef.h>

#define FV_OADR_CFG_VTNS 4
#define FV_OADR_CFG_MCS  16

struct fv_oadr_cfg_vtn {
    char name[64];
    char url[1024];
    char cert[1024], key[1024], ca[1024];
};

struct fv_oadr_cfg_mc {
    char context[256]; /* the marketContext URI */
    char program[64];  /* the VPP program its events go to */
    double levels[4];  /* SIMPLE level -> fraction of capacity; [0] = 0 */
};

struct fv_oadr_cfg {
    int enabled; /* the object was present */
    char ven_name[128];
    struct fv_oadr_cfg_vtn vtns[FV_OADR_CFG_VTNS];
    size_t nvtns;
    int push; /* push listener configured */
    char push_host[256];
    int push_port;
    char push_cert[1024], push_key[1024], push_ca[1024];
    char push_address[1024]; /* the oadrTransportAddress we register (default from listen) */
    struct fv_oadr_cfg_mc mcs[FV_OADR_CFG_MCS];
    size_t nmcs;
    char schema_dir[1024];
    int report_interval_s;
};

struct json_t;
/* Reads the "openadr" object val into out (defaults first). FV_OK or FV_EINVAL with
 * "PATH: openadr.KEY: ..." in err. */
int fv_oadr_cfg_parse(struct fv_oadr_cfg *out, const struct json_t *val, const char *path,
                      char *err, size_t errlen);

#endif
