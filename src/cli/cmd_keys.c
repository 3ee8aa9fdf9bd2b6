/* cmd_keys.c - `fleetvault keys`: the master key and per-device data keys.
 *   keys init FILE                                   make a master key (0600, never overwritten)
 *   keys rotate --data DIR --key-file OLD --new-key-file NEW   re-wrap data keys, data untouched
 *   keys shred --data DIR [--key-file F] [--ticket T] DEVICE   erase a device (every owner
 *                                                    period's key, tombstones written)
 * rotate and shred need the server stopped (they take DIR/LOCK). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/commands.h"
#include "crypto/keys.h"
#include "privacy/erasure.h"
#include "privacy/subjects.h"
#include "privacy/zones.h"
#include "util/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetvault keys init FILE\n"
               "       fleetvault keys rotate --data DIR --key-file OLD --new-key-file NEW\n"
               "       fleetvault keys shred --data DIR [--key-file FILE] [--ticket T] DEVICE\n\n"
               "init makes a master key (keep it outside the data directory); rotate re-wraps\n"
               "every data key under a new master key without rewriting data; shred erases a\n"
               "device as the API's erase does: the data key of every owner period destroyed,\n"
               "each with a tombstone beside the master key (or in FV_TOMBSTONE_DIR, which is\n"
               "required when the key comes from FV_MASTER_KEY) and in DATA, so a restored\n"
               "backup is erased again; all its stored records are unreadable at once.\n"
               "--key-file defaults to the FV_MASTER_KEY environment variable.\n");
}

/* Takes DIR/LOCK so the server cannot run meanwhile; returns the fd or -1. */
static int lock_data(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "fleetvault keys: %s: %s (is this a data directory?)\n", path,
                strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr,
                "fleetvault keys: %s: a server is running on this data directory; "
                "stop it first\n",
                dir);
        close(fd);
        return -1;
    }
    return fd;
}

int fv_cmd_keys(int argc, char **argv)
{
    char err[1024];
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "init") == 0) {
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        if (fv_kek_create(argv[2], err, sizeof err) != FV_OK) {
            fprintf(stderr, "fleetvault keys init: %s\n", err);
            return 1;
        }
        struct fv_kek k;
        if (fv_kek_load(argv[2], &k, err, sizeof err) == FV_OK)
            printf("created master key %s in %s (mode 0600); keep it outside the data "
                   "directory and back it up separately\n",
                   k.id, argv[2]);
        fv_kek_wipe(&k);
        return 0;
    }
    const char *data = NULL, *key = NULL, *newkey = NULL, *device = NULL, *ticket = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--new-key-file") == 0 && i + 1 < argc)
            newkey = argv[++i];
        else if (strcmp(argv[i], "--ticket") == 0 && i + 1 < argc)
            ticket = argv[++i];
        else if (argv[i][0] != '-' && device == NULL)
            device = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    int is_rotate = strcmp(argv[1], "rotate") == 0, is_shred = strcmp(argv[1], "shred") == 0;
    if ((!is_rotate && !is_shred) || data == NULL || (is_rotate && newkey == NULL) ||
        (is_shred && device == NULL)) {
        usage(stderr);
        return 2;
    }
    int lock = lock_data(data);
    if (lock < 0) return 1;
    struct fv_kek kek, nk;
    memset(&nk, 0, sizeof nk);
    struct fv_keystore *ks = NULL;
    char path[PATH_MAX];
    int rc = fv_kek_load(key, &kek, err, sizeof err);
    snprintf(path, sizeof path, "%s/catalog.db", data);
    if (rc == FV_OK) rc = fv_keystore_open(path, &kek, &ks, err, sizeof err);
    if (rc == FV_OK && is_rotate) {
        rc = fv_kek_load(newkey, &nk, err, sizeof err);
        if (rc == FV_OK) rc = fv_keystore_rewrap(ks, &nk, err, sizeof err);
        if (rc == FV_OK)
            printf("data keys re-wrapped from master key %s to %s; use %s from now on\n", kek.id,
                   nk.id, newkey);
    } else if (rc == FV_OK) {
        /* Art. 17 as the API erases: every owner period's key, each with its tombstone
         * outside DATA and in it (privacy/erasure.h); the next start purges the blocks. */
        struct fv_erasure er;
        char who[96];
        struct passwd *pw = getpwuid(getuid());
        snprintf(who, sizeof who, "os:%.80s", pw && pw->pw_name ? pw->pw_name : "unknown");
        rc = fv_subjects_init(ks, err, sizeof err);
        if (rc == FV_OK) rc = fv_zones_init(ks, err, sizeof err);
        if (rc == FV_OK) {
            rc = fv_erasure_open(&er, ks, key, data, err, sizeof err);
            if (rc == FV_OK) rc = fv_erasure_erase(&er, NULL, device, who, ticket, err, sizeof err);
            fv_erasure_close(&er);
        }
        if (rc == FV_OK)
            printf("destroyed the data keys of every owner period of %s and wrote their "
                   "tombstones: its stored records can no longer be read (its blocks are "
                   "purged at the next start)\n",
                   device);
    }
    if (rc) fprintf(stderr, "fleetvault keys %s: %s\n", argv[1], err);
    fv_keystore_close(ks);
    fv_kek_wipe(&kek);
    fv_kek_wipe(&nk);
    close(lock);
    return rc ? 1 : 0;
}
