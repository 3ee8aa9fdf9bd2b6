/* fuzz_wsframe.c - libFuzzer target: the WebSocket frame parser (wire/wsframe.h) over a
 * stream of frames, as the simulator's client reads the server's replies; every frame that
 * parses is unmasked and re-encoded, and the re-encoding must parse back to the same frame. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "wire/wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    char err[256];
    while (off < size) {
        struct fv_ws_frame f;
        if (fv_ws_frame_parse(data + off, size - off, 1u << 20, &f, err, sizeof err) != FV_OK)
            break;
        unsigned char *pl = malloc(f.len ? f.len : 1);
        if (pl == NULL) break;
        memcpy(pl, data + off + f.header_len, f.len);
        if (f.masked) fv_ws_mask(pl, f.len, f.mask, 0);
        struct fv_buf b = {0};
        if (fv_ws_frame_encode(&b, f.opcode, f.fin, pl, f.len, NULL) == FV_OK) {
            struct fv_ws_frame g;
            if (fv_ws_frame_parse(b.data, b.len, UINT64_MAX, &g, err, sizeof err) != FV_OK ||
                g.len != f.len || g.opcode != f.opcode || g.fin != f.fin || g.masked ||
                memcmp(b.data + g.header_len, pl, f.len) != 0)
                abort();
        }
        fv_buf_free(&b);
        free(pl);
        off += f.header_len + f.len;
    }
    return 0;
}
