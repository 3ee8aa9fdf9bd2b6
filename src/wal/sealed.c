/* sealed.c - see sealed.h. */
#include <stdio.h>

#include "util/err.h"
#include "wal/sealed.h"
#include "wal/wal_format.h"

int fv_wal_open_payload(struct fv_keystore *ks, const struct fv_wal_record *r, struct fv_buf *out,
                        char *name, size_t namelen)
{
    if (!(r->flags & FV_WAL_F_SEALED)) {
        snprintf(name, namelen, "%.*s", (int)r->device_id_len, r->device_id);
        return fv_buf_append(out, r->payload, r->payload_len);
    }
    char pseudo[256];
    snprintf(pseudo, sizeof pseudo, "%.*s", (int)r->device_id_len, r->device_id);
    const unsigned char *dek;
    const char *subject;
    int rc = fv_keystore_subject(ks, pseudo, &dek, &subject);
    if (rc) return rc;
    snprintf(name, namelen, "%s", subject);
    struct fv_buf aad = {0};
    rc = fv_wal_record_aad(r, &aad);
    if (rc == FV_OK) rc = fv_open(dek, aad.data, aad.len, r->payload, r->payload_len, out);
    fv_buf_free(&aad);
    return rc;
}
