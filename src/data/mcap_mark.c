/* mcap_mark.c - a watermarked copy of an MCAP file (mcap_mark.h): copied through the reader
 * into the writer (fv_mcap_copy), one channel added. */
#include "data/mcap_mark.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "data/mcap.h"
#include "util/err.h"

int fv_mcap_mark(const void *in, size_t len, const char *const *keys, const char *const *vals,
                 size_t n, fv_mcap_keep_fn keep, void *keep_arg, struct fv_buf *out, char *err,
                 size_t errlen)
{
    struct fv_mcap_source src;
    struct fv_mcap_reader *r = NULL;
    struct fv_mcap_writer *w = NULL;
    uint64_t first = 0;
    json_t *j = json_object();
    char *text = NULL;
    int rc = j ? FV_OK : FV_ENOMEM;
    fv_mcap_source_mem(&src, in, len);
    if (rc == FV_OK) rc = fv_mcap_reader_open(&src, &r, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_writer_open_mem(out, NULL, &w, err, errlen);
    if (rc == FV_OK) rc = fv_mcap_copy(r, w, keep, keep_arg, &first, NULL, err, errlen);
    uint16_t mark = 0;
    if (rc == FV_OK)
        rc = fv_mcap_add_channel(w, 0, FV_MCAP_MARK_TOPIC, "json", (const char *const *)keys,
                                 (const char *const *)vals, n, &mark, err, errlen);
    for (size_t i = 0; rc == FV_OK && i < n; i++)
        if (json_object_set_new(j, keys[i], json_string(vals[i]))) rc = FV_ENOMEM;
    if (rc == FV_OK && (text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        rc = FV_ENOMEM;
    if (rc == FV_OK)
        rc = fv_mcap_add_message(w, mark, 0, first, first, text, strlen(text), err, errlen);
    if (rc == FV_OK) {
        rc = fv_mcap_writer_close(w, err, errlen);
        w = NULL;
    }
    fv_mcap_writer_free(w);
    fv_mcap_reader_free(r);
    free(text);
    json_decref(j);
    return rc;
}
