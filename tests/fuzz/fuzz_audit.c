/* fuzz_audit.c - libFuzzer target: the audit log's line parser (fv_audit_parse_line: hash
 * suffix, JSON, per-kind fields) and the query filter. An input that starts with '{' is a
 * line as it is; any other input is a line body (after its first byte) that gets its correct
 * ,"hash":"..."} suffix appended, so mutations reach the JSON and field checks instead of
 * stopping at the hash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "privacy/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > FV_AUDIT_MAX_LINE) return 0;
    const char *line = (const char *)data;
    size_t len = size;
    char *img = NULL;
    if (data[0] != '{') {
        len = size - 1 + 75;
        img = malloc(len);
        if (img == NULL) return 0;
        memcpy(img, data + 1, size - 1);
        unsigned char h[SHA256_DIGEST_LENGTH];
        SHA256(data + 1, size - 1, h);
        memcpy(img + size - 1, ",\"hash\":\"", 9);
        for (int i = 0; i < 32; i++) {
            static const char hex[] = "0123456789abcdef";
            img[size - 1 + 9 + 2 * i] = hex[h[i] >> 4];
            img[size - 1 + 9 + 2 * i + 1] = hex[h[i] & 15];
        }
        memcpy(img + len - 2, "\"}", 2);
        line = img;
    }
    /* the parser must not read past len: give it an exact-size copy for ASan to guard */
    char *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(img);
        return 0;
    }
    memcpy(exact, line, len);
    struct fv_audit_entry e;
    char err[256];
    if (fv_audit_parse_line(exact, len, &e, err, sizeof err) == 0) {
        /* what verification relies on after a successful parse */
        if (e.seq == 0 || strlen(e.hash) != 64 || strlen(e.prev) != 64 || e.kind[0] == '\0')
            abort();
    }
    struct fv_audit_filter f = {.principal = "alice",
                                .subject = "ps-1",
                                .kind = "access",
                                .action = "query",
                                .ticket = "T-1",
                                .result = "allow",
                                .from_ms = 1,
                                .to_ms = 1760000000000};
    fv_audit_filter_match(&f, exact, len);
    struct fv_audit_filter all = {0};
    fv_audit_filter_match(&all, exact, len);
    free(exact);
    free(img);
    return 0;
}
