/*
 * clip_deid.h - the de-identification stage (issue 12, item 4): a configured external
 * command (clips.deid_command, e.g. one that blurs faces and plates) runs on every new clip,
 * in a sandboxed child, on a worker thread of its own; its exit status and a summary of its
 * output are recorded in the clip's row (data/clip_store.h), status passed / failed /
 * timeout. A clip that has not passed never reaches a labeler or a dataset
 * (fv_clip_store_passed, rule C2).
 *
 * The command: argv from the config; "{in}" and "{out}" in an argument become the clip's
 * path and the path where a de-identified clip may be written. The clip is also its stdin;
 * stdout and stderr are captured (the first 480 bytes are the summary). Exit 0 passes; if
 * it wrote a non-empty {out}, that file (which must be MCAP: magic and footer) replaces the
 * stored clip, sealed again. Anything else fails; past clips.deid_timeout_s the child's
 * process group is killed (SIGKILL) and the clip's status is "timeout".
 *
 * Sandbox (D1-D5):
 *  D1 a private temporary directory (0700, under DATA/clips/tmp, removed after the run, and
 *     at start when a crash left one) is the child's working directory and HOME and holds
 *     the only copy of the clip in clear;
 *  D2 no network: the child enters new user and network namespaces (unshare); where the
 *     kernel refuses (unprivileged user namespaces disabled, a container without
 *     CAP_SYS_ADMIN) the run goes ahead with the host network, and the summary says
 *     "(no network namespace)" so the operator sees it;
 *  D3 rlimits: CPU seconds (the timeout), address space (clips.deid_mem_mb), file size
 *     (twice clips.max_clip_mb), 64 descriptors, no core dumps; no new privileges; killed if
 *     the server dies (PR_SET_DEATHSIG);
 *  D4 an environment of its own: PATH=/usr/bin:/bin, HOME, FV_CLIP_IN, FV_CLIP_OUT only;
 *  D5 descriptors other than 0, 1, 2 are closed; the child is its own process group;
 *  D6 every run is in the audit log (kind "clips", principal "clips-deid", purpose "clips",
 *     the subject by pseudonym): action "clips.deid" is queued before the clip is decrypted
 *     and "clips.deid.result" (result allow for passed, error otherwise) after; the API
 *     thread, the audit log's owner, writes them (fv_clip_deid_audit_drain). The worker
 *     waits while FV_DEID_AUDIT_QUEUE records are queued, so nothing is read unaudited for
 *     long.
 *
 * Threads: start and stop from the server's thread; fv_clip_deid_wake and
 * fv_clip_deid_audit_drain from any (a short-held mutex). The worker uses a keystore of its
 * own.
 */
#ifndef FV_DATA_CLIP_DEID_H
#define FV_DATA_CLIP_DEID_H

#include <stddef.h>

#include "data/clip_upload.h"

struct fv_kek;
struct fv_clip_deid;

/* The outcome of one run. */
struct fv_deid_result {
    char status[16]; /* "passed", "failed", "timeout" */
    int exit_code;   /* the exit status, 128 + signal, or -1 (not started) */
    char summary[512];
    int replaced; /* {out} was written */
};

/* D6: one audit record of the worker. */
#define FV_DEID_AUDIT_QUEUE 256
struct fv_deid_audit {
    char action[24];  /* "clips.deid", "clips.deid.result" */
    char clip[33];    /* the stored clip's id */
    char subject[33]; /* its subject's keystore pseudonym */
    char result[8];   /* "allow", "error" */
    char reason[96];  /* "passed", "failed (exit 3)", "timeout", ... */
};
/* Calls fn for each queued record, oldest first; a record fn fails (non-zero) stays queued
 * with those after it. Returns how many were written. w NULL: 0. */
size_t fv_clip_deid_audit_drain(struct fv_clip_deid *w,
                                int (*fn)(void *arg, const struct fv_deid_audit *r), void *arg);

/* Runs the command on the clip in in_path within workdir (which must exist, 0700); {out} is
 * workdir/out.mcap. Blocks until the child ends or is killed. FV_OK (r filled) or an error
 * before the child ran (r->status "failed", the summary says why). */
int fv_clip_deid_run(const struct fv_clips_config *c, const char *workdir, const char *in_path,
                     struct fv_deid_result *r);

/* Opens a keystore on DATA/catalog.db and starts the worker (nothing runs without a
 * deid_command: clips stay "pending"). */
int fv_clip_deid_start(struct fv_clip_deid **out, const struct fv_clips_config *c,
                       const char *data_dir, const struct fv_kek *kek, char *err, size_t errlen);
/* Any thread: look for pending clips now. arg: the struct fv_clip_deid. */
void fv_clip_deid_wake(void *arg);
/* Stops the worker (a running command is killed; its clip stays pending and runs again at
 * the next start). Its queued audit records can still be drained. NULL is a no-op. */
void fv_clip_deid_stop(struct fv_clip_deid *w);
/* Frees a stopped worker. NULL is a no-op. */
void fv_clip_deid_free(struct fv_clip_deid *w);

#endif
