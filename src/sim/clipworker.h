/*
 * clipworker.h - the simulator's clip worker (issue 12, item 8; sim/campaign.h VC4): a
 * campaign hit's clip hook queues the clip here, and a worker thread builds it (clipupload.h
 * fv_sim_clip_build: the trigger time, the campaign's pre/post window and sensor channels)
 * and uploads it over the real clip endpoint with the vehicle's certificate - once the
 * window after the trigger (post_s) has been recorded, as a vehicle would - so the
 * simulator's event loop never waits for a build or an upload. Successes and failures are
 * counted for the run's statistics; the first `interrupt` uploads of the run are cut halfway
 * through their second chunk and resumed (clipupload.h), counted as resumed when stored.
 *
 * Threads: fv_sim_clipworker_hook (the fv_sim_clip_upload_fn) runs on the simulator's loop
 * and only copies the request into the queue under the worker's mutex; the worker thread does
 * the rest; start and stop belong to the thread that runs the simulator. libcurl's global
 * init is done by start (call it before other threads use libcurl).
 */
#ifndef FV_SIM_CLIPWORKER_H
#define FV_SIM_CLIPWORKER_H

#include <stddef.h>
#include <stdint.h>

#include "sim/campaign.h"

#define FV_SIM_CLIP_QUEUE_MAX 256 /* clips queued at once; past it a hit's clip fails */

struct fv_sim_clipworker;

/* Starts the worker for the clip endpoint url (https://HOST:PORT) with the devices'
 * certificates under certs_dir (both copied); its first `interrupt` uploads are interrupted
 * and resumed. FV_OK, FV_ENOMEM, FV_EIO (err says why). */
int fv_sim_clipworker_start(const char *url, const char *certs_dir, uint64_t interrupt,
                            struct fv_sim_clipworker **out, char *err, size_t errlen);
/* The clip hook: arg is the worker. Queues req (copied); FV_ELIMIT when the queue is full. */
int fv_sim_clipworker_hook(void *arg, const struct fv_sim_clip_req *req, char *err, size_t errlen);
/* The worker's counts: stored (201), failed, and stored after an interruption. */
struct fv_sim_clip_counts {
    uint64_t uploaded, failed, resumed;
};

/* Lets the worker finish the queued clips for at most wait_s seconds (the rest fail), stops
 * it, adds its counts to *c and frees it. NULL is a no-op. */
void fv_sim_clipworker_stop(struct fv_sim_clipworker *w, double wait_s,
                            struct fv_sim_clip_counts *c);

#endif
