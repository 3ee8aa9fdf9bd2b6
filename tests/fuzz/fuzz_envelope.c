/* fuzz_envelope.c - libFuzzer target: the envelope decoder and, for what decodes, the
 * payload normaliser and V decoder - everything a device's bytes reach before storage. */
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "wire/envelope.h"
#include "wire/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fv_envelope env;
    char err[256];
    if (fv_envelope_decode(data, size, &env, err, sizeof err) != 0) return 0;
    if (env.message_type != FV_MSG_STREAM || !env.payload.present) return 0;
    struct fv_buf out = {0};
    if (fv_payload_normalise((const char *)env.topic.p, env.topic.len, env.payload.p,
                             env.payload.len, "5YJ3E1EA7KF000001", &out, NULL, err,
                             sizeof err) == 0) {
        struct fv_vrecord v;
        if (fv_payload_decode_v(out.data, out.len, &v, err, sizeof err) == 0) fv_vrecord_free(&v);
    }
    fv_buf_free(&out);
    return 0;
}
