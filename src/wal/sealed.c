/* sealed.c - see sealed.h. */
#include <stdio.h>

#include "util/err.h"
#include "wal/sealed.h"
#include "wal/wal_format.h"

int fv_wal_open_payload(struct fv_keystore *ks, const struct fv_wal_record *r,
                        struct fv_buf *out)
{
    if (!(r->flags & FV_WAL_F_SEALED))
        return fv_buf_append(out, r->payload, r->payload_len);
    char subject[256];
    snprintf(subject, sizeof subject, "%.*s", (int)r->device_id_len, r->device_id);
    const unsigned char *dek;
    int rc = fv_keystore_dek(ks, subject, 0, &dek);
    if (rc)
        return rc;
    struct fv_buf aad = {0};
    rc = fv_wal_record_aad(r, &aad);
    if (rc == FV_OK)
        rc = fv_open(dek, aad.data, aad.len, r->payload, r->payload_len, out);
    fv_buf_free(&aad);
    return rc;
}
