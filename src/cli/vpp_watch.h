/*
 * vpp_watch.h - `fleetvault vpp event status ID --watch`: a live view of one event, drawn
 * from GET /api/v1/vpp/events/ID (api/vpp_api.c) every refresh.
 *
 * On a terminal (standard output a TTY) the view is redrawn in place (ANSI: cursor home,
 * each line cleared to its end, the rest of the screen cleared), fitted to the terminal's
 * size:
 *   W1 a header: event, program, state, window (UTC), time left (or to the start), target
 *      kW against delivered kW now, planned and deliverable kW, the capacity forecast made
 *      at creation beside the average delivered so far, and the count of sites per status;
 *   W2 one line per 5-minute interval from the event's start (the latest that fit, at most
 *      FV_VPP_WATCH_INTERVALS): average target and delivered kW, the percentage, a bar;
 *   W3 the sites, worst first: offline, refused, short (largest shortfall first), opted out,
 *      commanded, idle, delivering; each with its setpoint, delivered kW and the reason of
 *      its shortfall; cut to the terminal's height, with a count of the rest by status;
 *   W4 lines are cut to the terminal's width; ASCII only.
 * Otherwise (a pipe, a file) each refresh prints one plain line: time, event, state, time
 * left, target, delivered, forecast, sites per status.
 * It ends by itself once the event is over (completed or cancelled: the last view stays),
 * or on Ctrl-C (SIGINT), cleanly: the cursor shown again, exit status 0.
 *
 * Threading: the CLI's one thread.
 */
#ifndef FV_CLI_VPP_WATCH_H
#define FV_CLI_VPP_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

#define FV_VPP_WATCH_INTERVALS   6
#define FV_VPP_WATCH_INTERVAL_MS 300000 /* the settlement's interval */

/* W1-W4: appends one frame of event ev (the API's JSON) as of now_ms for a terminal of rows
 * x cols; ansi: end each line with "clear to end of line". FV_OK or FV_ENOMEM. */
int fv_vpp_watch_frame(const json_t *ev, int64_t now_ms, int rows, int cols, int ansi,
                       struct fv_buf *out);
/* The one-line form of the same (with its "\n"). FV_OK or FV_ENOMEM. */
int fv_vpp_watch_line(const json_t *ev, int64_t now_ms, struct fv_buf *out);
/* Is the event over (completed or cancelled)? */
int fv_vpp_watch_over(const json_t *ev);

/* The loop: fetches endpoint with the query parameters pn/pv every interval_ms until the event
 * is over or SIGINT; token_file and api as for fv_cli_api. Returns the exit status. */
int fv_vpp_watch(const char *api, const char *endpoint, const char *const *pn,
                 const char *const *pv, size_t np, const char *token_file, int interval_ms);

#endif
