/*
 * static_ui.h - the web console's files (/ui/, docs/console.md), served from a directory
 * (config "ui_dir"; default: "ui" beside the executable). They hold no data: no token is
 * needed; every data call the pages make goes to the JSON API with the bearer token.
 *
 * U1: only regular files under the directory are served: a path with an empty, "." or ".."
 *     component, a backslash, a character outside [A-Za-z0-9._-/], or a symbolic link
 *     anywhere on the way (opened component by component with O_NOFOLLOW) is refused (404,
 *     as for a missing file: nothing tells what exists outside).
 * U2: each answer carries the console's headers (http.c): Content-Security-Policy
 *     (default-src 'self'), X-Content-Type-Options: nosniff, Cache-Control: no-cache
 *     (revalidate: a rebuilt console is seen at once), and the content type of the file's
 *     extension (unknown: application/octet-stream).
 * U3: "/ui" is redirected (301) to "/ui/"; "/ui/" is index.html.
 *
 * Threads: the API thread (it reads the file whole into the response; the console's files
 * are small, at most FV_UI_FILE_MAX bytes each).
 */
#ifndef FV_API_STATIC_UI_H
#define FV_API_STATIC_UI_H

#include "api/api.h"

#define FV_UI_FILE_MAX (8u << 20)

/* Answers GET PATH (PATH begins "/ui") from the directory root into out. */
void fv_api_static_ui(const char *root, const char *method, const char *path,
                      struct fv_http_response *out);

/* The default console directory: DIR/ui where DIR holds the running executable
 * (/proc/self/exe). FV_OK, or FV_EIO when the executable's path cannot be read. */
int fv_ui_default_dir(char *out, size_t cap);

#endif
