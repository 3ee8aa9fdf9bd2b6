/* fuzz_payload.c - libFuzzer target: protobuf payload decoding and normalisation for every
 * topic (site samples included, wire/site.h), plus re-encoding what decodes (round trip must
 * not crash). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/buf.h"
#include "wire/payload.h"
#include "wire/site.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *topics[] = {"V", "alerts", "errors", "connectivity", "other"};
    char err[256];
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        struct fv_buf out = {0};
        fv_payload_normalise(topics[i], strlen(topics[i]), data, size, "VIN", &out, NULL, err,
                             sizeof err);
        fv_buf_free(&out);
    }
    struct fv_vrecord v;
    struct fv_buf site = {0};
    if (fv_site_normalise(data, size, "SITE", &site, &v, err, sizeof err) == 0) fv_vrecord_free(&v);
    fv_buf_free(&site);
    if (fv_payload_decode_v(data, size, &v, err, sizeof err) == 0) {
        struct fv_buf out = {0};
        fv_payload_encode_v(&v, &out); /* may refuse kinds it does not produce */
        fv_buf_free(&out);
        fv_vrecord_free(&v);
    }
    return 0;
}
