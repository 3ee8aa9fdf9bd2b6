/* admintoken.c - the admin API token beside the master key (admintoken.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "os/fsio.h"
#include "server/admintoken.h"
#include "util/err.h"
#include "util/log.h"

/* Is path inside dir (after resolving both)? A path that does not resolve counts as not. */
int fv_path_inside(const char *path, const char *dir)
{
    char rp[PATH_MAX], rd[PATH_MAX];
    if (realpath(path, rp) == NULL || realpath(dir, rd) == NULL) return 0;
    size_t n = strlen(rd);
    return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || rp[n] == '\0');
}

/* The admin token lives beside the master key, never in DATA (a stolen copy of DATA must not
 * be a live admin token): a DATA/admin.token left by an older version is moved there (or,
 * when one is there already, deleted), with a log line saying so. */
static int migrate_admin_token(const struct fv_config *cfg, const char *path, char *err,
                               size_t errlen)
{
    char old[PATH_MAX + 16];
    snprintf(old, sizeof old, "%s/admin.token", cfg->data_dir);
    if (access(old, F_OK) != 0) return FV_OK;
    if (access(path, F_OK) != 0) {
        char *text = NULL;
        size_t len = 0;
        int rc = fv_os_read_file(old, 4096, &text, &len, err, errlen);
        if (rc == FV_OK) rc = fv_os_write_file_atomic(path, text, len, 0600, err, errlen);
        if (text) OPENSSL_cleanse(text, len);
        free(text);
        if (rc) return rc;
        fv_info("moved the admin API token from %s to %s, beside the master key: a copy of the "
                "data directory no longer carries it (read it from there from now on)",
                old, path);
    } else {
        fv_warn("%s: deleted; the admin API token is %s, beside the master key", old, path);
    }
    if (unlink(old) != 0) {
        fv_seterr(err, errlen, "%s: cannot delete it: %s", old, strerror(errno));
        return FV_EIO;
    }
    return FV_OK;
}

int fv_admin_token_load(const struct fv_config *cfg, char *token, size_t cap, char *err,
                        size_t errlen)
{
    char path[PATH_MAX + 16];
    if (fv_config_admin_token_path(cfg, path, sizeof path)) {
        int mrc = migrate_admin_token(cfg, path, err, errlen);
        if (mrc) return mrc;
    } else {
        fv_warn("the admin API token is kept in the data directory (%s): give the master key "
                "as a file to keep it beside the key, outside DATA",
                path);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = fv_os_read_file(path, 4096, &text, &len, err, errlen);
    if (rc == FV_OK) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
            text[--len] = '\0';
        if (len < 16 || len >= cap) {
            fv_seterr(err, errlen, "%s: token must be 16..79 characters", path);
            free(text);
            return FV_EINVAL;
        }
        memcpy(token, text, len + 1);
        free(text);
        return FV_OK;
    }
    if (rc != FV_ENOENT) return rc;
    unsigned char rnd[32];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        fv_seterr(err, errlen, "no randomness for the admin token");
        return FV_EIO;
    }
    for (int i = 0; i < 32; i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    char line[80];
    snprintf(line, sizeof line, "%s\n", token);
    rc = fv_os_write_file_atomic(path, line, strlen(line), 0600, err, errlen);
    if (rc == FV_OK) fv_info("created the admin API token in %s (mode 0600)", path);
    return rc;
}
