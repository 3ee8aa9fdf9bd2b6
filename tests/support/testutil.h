/* testutil.h - helpers shared by the unit tests: reading the protocol vectors (tests/vectors,
 * located through FV_VECTORS, which tests/CMakeLists.txt sets), temporary directories. */
#ifndef FV_TESTUTIL_H
#define FV_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads NAME in the directory the environment variable env names (default_dir when unset)
 * into a malloc'd buffer with a NUL after its *len bytes; aborts the test run if missing. */
static inline unsigned char *fv_test_read_file(const char *env, const char *default_dir,
                                               const char *name, size_t *len)
{
    const char *dir = getenv(env);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : default_dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (set %s)\n", path, env);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    buf[n > 0 ? n : 0] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Reads tests/vectors/NAME (located through FV_VECTORS). */
static inline unsigned char *fv_test_read_vector(const char *name, size_t *len)
{
    return fv_test_read_file("FV_VECTORS", "tests/vectors", name, len);
}

/* xorshift64*: the tests' pseudo-random numbers, reproducible from the printed seed. */
static inline uint64_t fv_test_xorshift(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

/* A fresh directory /tmp/PREFIX-XXXXXX in buf (>= 32 bytes); 0 or -1. */
static inline int fv_test_mkdtemp(char *buf, size_t n, const char *prefix)
{
    snprintf(buf, n, "/tmp/%s-XXXXXX", prefix);
    return mkdtemp(buf) ? 0 : -1;
}

/* Removes a test directory and everything in it; 0 on success. */
static inline int fv_test_rmtree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

#endif
