/*
 * admintoken.h - the admin API token: kept beside the master key (KEYFILE.admin.token), never
 * in DATA (a stolen copy of DATA must not be a live admin token); made at the first start
 * (32 random bytes in hex, mode 0600); moved there from DATA/admin.token if an older version
 * left it. Moved out of server.c unchanged.
 *
 * Threads: start-up only.
 */
#ifndef FV_SERVER_ADMINTOKEN_H
#define FV_SERVER_ADMINTOKEN_H

#include <stddef.h>

#include "config/config.h"

/* Reads (or makes) the token into token (cap bytes, 16..79 characters). */
int fv_admin_token_load(const struct fv_config *cfg, char *token, size_t cap, char *err,
                        size_t errlen);
/* Is path inside dir (after resolving both)? A path that does not resolve counts as not. */
int fv_path_inside(const char *path, const char *dir);

#endif
