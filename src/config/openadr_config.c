/* openadr_config.c - the config file's "openadr" object (openadr_config.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "config/openadr_config.h"
#include "util/err.h"

#ifndef FV_OADR_SCHEMA_DIR
#define FV_OADR_SCHEMA_DIR "share/openadr-2.0b"
#endif

/* Copies the string member key of obj into out; absent is fine unless required. */
static int str(const json_t *obj, const char *key, char *out, size_t cap, int required,
               const char *path, const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL && !required) return FV_OK;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) {
        fv_seterr(err, errlen, "%s: openadr.%s%s: expected a string of 1 to %zu bytes", path, where,
                  key, cap - 1);
        return FV_EINVAL;
    }
    snprintf(out, cap, "%s", json_string_value(v));
    return FV_OK;
}

/* Every key of obj is one of the NULL-terminated list. */
static int keys_known(const json_t *obj, const char *const *known, const char *path,
                      const char *where, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        int ok = 0;
        for (size_t i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            fv_seterr(err, errlen, "%s: openadr.%s%s: unknown key", path, where, k);
            return FV_EINVAL;
        }
    }
    return FV_OK;
}

static int tls_files(const json_t *o, char *cert, char *key, char *ca, const char *path,
                     const char *where, char *err, size_t errlen)
{
    int rc = str(o, "cert", cert, 1024, 1, path, where, err, errlen);
    if (rc == FV_OK) rc = str(o, "key", key, 1024, 1, path, where, err, errlen);
    if (rc == FV_OK) rc = str(o, "ca", ca, 1024, 1, path, where, err, errlen);
    return rc;
}

static int parse_vtns(struct fv_oadr_cfg *c, const json_t *vtns, const char *path, char *err,
                      size_t errlen)
{
    if (!json_is_array(vtns) || json_array_size(vtns) == 0 ||
        json_array_size(vtns) > FV_OADR_CFG_VTNS) {
        fv_seterr(err, errlen, "%s: openadr.vtns: expected a list of 1 to %d VTNs", path,
                  FV_OADR_CFG_VTNS);
        return FV_EINVAL;
    }
    static const char *const known[] = {"name", "url", "cert", "key", "ca", NULL};
    size_t i;
    json_t *o;
    json_array_foreach(vtns, i, o)
    {
        char where[32];
        snprintf(where, sizeof where, "vtns[%zu].", i);
        struct fv_oadr_cfg_vtn *v = &c->vtns[i];
        if (!json_is_object(o)) {
            fv_seterr(err, errlen, "%s: openadr.vtns[%zu]: expected an object", path, i);
            return FV_EINVAL;
        }
        int rc = keys_known(o, known, path, where, err, errlen);
        if (rc == FV_OK) rc = str(o, "name", v->name, sizeof v->name, 1, path, where, err, errlen);
        if (rc == FV_OK) rc = str(o, "url", v->url, sizeof v->url, 1, path, where, err, errlen);
        if (rc == FV_OK && strncmp(v->url, "https://", 8) != 0) {
            fv_seterr(err, errlen, "%s: openadr.vtns[%zu].url: expected https://...", path, i);
            rc = FV_EINVAL;
        }
        if (rc == FV_OK) rc = tls_files(o, v->cert, v->key, v->ca, path, where, err, errlen);
        if (rc) return rc;
        for (size_t k = 0; k < i; k++)
            if (strcmp(c->vtns[k].name, v->name) == 0) {
                fv_seterr(err, errlen, "%s: openadr.vtns[%zu].name: '%s' given twice", path, i,
                          v->name);
                return FV_EINVAL;
            }
        c->nvtns = i + 1;
    }
    return FV_OK;
}

static int parse_mcs(struct fv_oadr_cfg *c, const json_t *mcs, const char *path, char *err,
                     size_t errlen)
{
    if (!json_is_object(mcs) || json_object_size(mcs) == 0 ||
        json_object_size(mcs) > FV_OADR_CFG_MCS) {
        fv_seterr(err, errlen,
                  "%s: openadr.market_contexts: expected an object of 1 to %d market contexts",
                  path, FV_OADR_CFG_MCS);
        return FV_EINVAL;
    }
    static const char *const known[] = {"program", "simple_levels", NULL};
    const char *ctx;
    json_t *o;
    json_object_foreach((json_t *)mcs, ctx, o)
    {
        struct fv_oadr_cfg_mc *m = &c->mcs[c->nmcs];
        char where[300];
        snprintf(where, sizeof where, "market_contexts.%.200s.", ctx);
        if (strlen(ctx) == 0 || strlen(ctx) >= sizeof m->context || !json_is_object(o)) {
            fv_seterr(err, errlen, "%s: openadr.%s: expected a URI and an object", path, where);
            return FV_EINVAL;
        }
        snprintf(m->context, sizeof m->context, "%s", ctx);
        int rc = keys_known(o, known, path, where, err, errlen);
        if (rc == FV_OK)
            rc = str(o, "program", m->program, sizeof m->program, 1, path, where, err, errlen);
        if (rc) return rc;
        m->levels[1] = 0.33, m->levels[2] = 0.66, m->levels[3] = 1.0;
        json_t *lv = json_object_get(o, "simple_levels");
        const char *lk;
        json_t *f;
        if (lv && !json_is_object(lv)) {
            fv_seterr(err, errlen, "%s: openadr.%ssimple_levels: expected an object", path, where);
            return FV_EINVAL;
        }
        json_object_foreach(lv, lk, f)
        {
            int level = (lk[0] >= '1' && lk[0] <= '3' && lk[1] == '\0') ? lk[0] - '0' : 0;
            double x = json_is_number(f) ? json_number_value(f) : -1;
            if (level == 0 || !(x >= 0 && x <= 1)) {
                fv_seterr(err, errlen,
                          "%s: openadr.%ssimple_levels.%s: expected levels \"1\"-\"3\", each a "
                          "fraction from 0 to 1",
                          path, where, lk);
                return FV_EINVAL;
            }
            m->levels[level] = x;
        }
        c->nmcs++;
    }
    return FV_OK;
}

int fv_oadr_cfg_parse(struct fv_oadr_cfg *c, const json_t *val, const char *path, char *err,
                      size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->schema_dir, sizeof c->schema_dir, "%s", FV_OADR_SCHEMA_DIR);
    c->report_interval_s = 60;
    if (!json_is_object(val)) {
        fv_seterr(err, errlen, "%s: openadr: expected an object", path);
        return FV_EINVAL;
    }
    static const char *const known[] = {
        "ven_name", "vtns", "push", "market_contexts", "schema_dir", "report_interval_s", NULL};
    int rc = keys_known(val, known, path, "", err, errlen);
    if (rc == FV_OK)
        rc = str(val, "ven_name", c->ven_name, sizeof c->ven_name, 1, path, "", err, errlen);
    if (rc == FV_OK) rc = parse_vtns(c, json_object_get(val, "vtns"), path, err, errlen);
    if (rc == FV_OK) rc = parse_mcs(c, json_object_get(val, "market_contexts"), path, err, errlen);
    if (rc == FV_OK)
        rc = str(val, "schema_dir", c->schema_dir, sizeof c->schema_dir, 0, path, "", err, errlen);
    json_t *ri = json_object_get(val, "report_interval_s");
    if (rc == FV_OK && ri) {
        if (!json_is_integer(ri) || json_integer_value(ri) < 1 || json_integer_value(ri) > 3600) {
            fv_seterr(err, errlen, "%s: openadr.report_interval_s: expected 1 to 3600", path);
            rc = FV_EINVAL;
        } else {
            c->report_interval_s = (int)json_integer_value(ri);
        }
    }
    json_t *push = json_object_get(val, "push");
    if (rc == FV_OK && push) {
        static const char *const pknown[] = {"listen", "cert", "key", "ca", "address", NULL};
        char listen[300] = "";
        rc =
            json_is_object(push) ? keys_known(push, pknown, path, "push.", err, errlen) : FV_EINVAL;
        if (rc == FV_OK)
            rc = str(push, "listen", listen, sizeof listen, 1, path, "push.", err, errlen);
        if (rc == FV_OK &&
            fv_parse_hostport(listen, c->push_host, sizeof c->push_host, &c->push_port) != FV_OK) {
            fv_seterr(err, errlen, "%s: openadr.push.listen: expected \"HOST:PORT\"", path);
            rc = FV_EINVAL;
        }
        if (rc == FV_OK)
            rc = tls_files(push, c->push_cert, c->push_key, c->push_ca, path, "push.", err, errlen);
        if (rc == FV_OK)
            rc = str(push, "address", c->push_address, sizeof c->push_address, 0, path, "push.",
                     err, errlen);
        if (rc == FV_OK && c->push_address[0] == '\0')
            snprintf(c->push_address, sizeof c->push_address, "https://%s:%d/OpenADR2/Simple/2.0b",
                     c->push_host, c->push_port);
        if (rc == FV_OK && strncmp(c->push_address, "https://", 8) != 0) {
            fv_seterr(err, errlen, "%s: openadr.push.address: expected https://...", path);
            rc = FV_EINVAL;
        }
        if (rc == FV_EINVAL && !json_is_object(push))
            fv_seterr(err, errlen, "%s: openadr.push: expected an object", path);
        c->push = rc == FV_OK;
    }
    c->enabled = rc == FV_OK;
    return rc;
}
