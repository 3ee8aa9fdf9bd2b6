/* fuzz_oadr.c - libFuzzer target: the VEN's OpenADR 2.0b message parser (openadr/oadr.h):
 * well-formedness, the DOCTYPE refusal, schema validation and reading the message into its
 * structs; what parses is freed (leaks and overreads are the sanitizers' to find). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "openadr/oadr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fv_oadr_schema *schema;
    char err[256];
    if (schema == NULL && fv_oadr_schema_open(FV_OADR_SCHEMA_DIR, &schema, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_oadr: %s\n", err);
        abort();
    }
    struct fv_oadr_msg m;
    int code;
    fv_oadr_parse(schema, (const char *)data, size, &m, &code, err, sizeof err);
    fv_oadr_msg_free(&m);
    return 0;
}
