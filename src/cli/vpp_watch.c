/* vpp_watch.c - the live view of a VPP event (vpp_watch.h). */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/vpp_watch.h"
#include "util/clock.h"
#include "util/err.h"

/* W3: the statuses, worst first; an unknown one ranks last. */
static const char *const STATUS[] = {"offline",   "refused", "short",     "opted_out",
                                     "commanded", "idle",    "delivering"};
#define NSTATUS       ((int)(sizeof STATUS / sizeof STATUS[0]))
#define MAX_FAILURES  30 /* the server unreachable this many refreshes in a row: give up */
#define SITE_COL_MAX  32
#define BAR_WIDTH     20
#define FALLBACK_ROWS 24
#define FALLBACK_COLS 80

static int rank(const char *status)
{
    for (int i = 0; status && i < NSTATUS; i++)
        if (strcmp(status, STATUS[i]) == 0) return i;
    return NSTATUS;
}

/* Lines of a frame, each cut to the width (W4), ended for the terminal. */
struct emit {
    struct fv_buf *out;
    int cols, ansi, rc;
};

static void emit(struct emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct emit *e, const char *fmt, ...)
{
    if (e->rc != FV_OK) return;
    size_t at = e->out->len;
    va_list ap;
    va_start(ap, fmt);
    e->rc = fv_buf_vappendf(e->out, fmt, ap);
    va_end(ap);
    if (e->rc == FV_OK && e->cols > 0 && e->out->len - at > (size_t)e->cols)
        e->out->len = at + (size_t)e->cols; /* cut to the terminal's width */
    if (e->rc == FV_OK && e->ansi) e->rc = fv_buf_append(e->out, "\033[K", 3);
    if (e->rc == FV_OK) e->rc = fv_buf_append(e->out, "\n", 1);
}

static double num(const json_t *o, const char *key)
{
    const json_t *x = json_object_get(o, key);
    return json_is_number(x) ? json_number_value(x) : NAN;
}

static const char *text(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

/* "13:45:00" UTC, or "-" for a time out of range. */
static void clock_of(double ms, char *buf, size_t len)
{
    if (!(ms >= 0 && ms < 253402300800000.0)) {
        snprintf(buf, len, "-");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%H:%M:%S", &tm);
}

/* "1h02m", "42m10s", "9s". */
static void duration(int64_t ms, char *buf, size_t len)
{
    int64_t s = ms > 0 ? (ms + 999) / 1000 : 0;
    if (s >= 3600)
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(buf, len, "%llds", (long long)s);
}

/* kW with one decimal, or "-". */
static void kw(double v, char *buf, size_t len)
{
    if (isfinite(v))
        snprintf(buf, len, "%.1f", v);
    else
        snprintf(buf, len, "-");
}

/* " (97%)" of part in whole, or "" when whole is not positive. */
static void percent(double part, double whole, char *buf, size_t len)
{
    if (isfinite(part) && isfinite(whole) && whole > 0)
        snprintf(buf, len, " (%.0f%%)", 100 * part / whole);
    else
        buf[0] = '\0';
}

struct counts {
    size_t n[NSTATUS + 1];
    size_t total;
};

static void count(const json_t *sites, size_t from, const size_t *order, struct counts *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = from; i < json_array_size(sites); i++) {
        const json_t *s = json_array_get(sites, order ? order[i] : i);
        c->n[rank(json_string_value(json_object_get(s, "status")))]++;
        c->total++;
    }
}

/* "190 delivering, 5 short, 3 offline" (worst first; none: "none"). */
static void counts_text(const struct counts *c, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i <= NSTATUS && used < len; i++) {
        if (c->n[i] == 0) continue;
        const char *name = i == NSTATUS ? "other" : STATUS[i];
        int n = snprintf(buf + used, len - used, "%s%zu %s", used ? ", " : "", c->n[i],
                         strcmp(name, "opted_out") == 0 ? "opted out" : name);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (buf[0] == '\0') snprintf(buf, len, "none");
}

int fv_vpp_watch_over(const json_t *ev)
{
    const char *st = json_string_value(json_object_get(ev, "state"));
    return st && (strcmp(st, "completed") == 0 || strcmp(st, "cancelled") == 0);
}

/* "42m10s left", "starts in 3m00s", or the state of an event that is over. */
static void when(const json_t *ev, int64_t now, char *buf, size_t len)
{
    const char *st = text(ev, "state");
    char d[32];
    if (strcmp(st, "active") == 0) {
        duration((int64_t)num(ev, "end") - now, d, sizeof d);
        snprintf(buf, len, "%s left", d);
    } else if (strcmp(st, "scheduled") == 0) {
        duration((int64_t)num(ev, "start") - now, d, sizeof d);
        snprintf(buf, len, "starts in %s", d);
    } else {
        snprintf(buf, len, "over");
    }
}

/* The target as words: "6.0 kW" or "max". */
static void target_of(const json_t *ev, char *buf, size_t len)
{
    if (json_is_true(json_object_get(ev, "max"))) {
        snprintf(buf, len, "max");
        return;
    }
    kw(num(ev, "target_kw"), buf, len - 3);
    strcat(buf, " kW");
}

/* W1 */
static void header(struct emit *e, const json_t *ev, int64_t now, const struct counts *c)
{
    char a[16], b[16], w[48], t[40], dl[16], pct[16], pl[16], dv[16], fc[16], av[16], fpct[48];
    char sites[256];
    clock_of(num(ev, "start"), a, sizeof a);
    clock_of(num(ev, "end"), b, sizeof b);
    when(ev, now, w, sizeof w);
    emit(e, "Event %s | program %s | %s | %s-%s UTC | %s", text(ev, "id"), text(ev, "program"),
         text(ev, "state"), a, b, w);
    target_of(ev, t, sizeof t);
    kw(num(ev, "delivered_kw"), dl, sizeof dl);
    percent(num(ev, "delivered_kw"), num(ev, "target_kw"), pct, sizeof pct);
    kw(num(ev, "planned_kw"), pl, sizeof pl);
    kw(num(ev, "deliverable_kw"), dv, sizeof dv);
    emit(e, "Target %s | delivered now %s kW%s | planned %s kW of %s kW deliverable%s", t, dl, pct,
         pl, dv, json_is_false(json_object_get(ev, "feasible")) ? " (target not reachable)" : "");
    kw(num(ev, "forecast_kw"), fc, sizeof fc);
    kw(num(ev, "delivered_avg_kw"), av, sizeof av);
    percent(num(ev, "delivered_avg_kw"), num(ev, "forecast_kw"), fpct, sizeof fpct);
    if (fpct[0]) /* " (97%)" -> " (97% of the forecast)" */
        snprintf(fpct + strlen(fpct) - 1, sizeof fpct - strlen(fpct) + 1, " of the forecast)");
    emit(e, "Forecast %s kW | delivered on average %s kW%s", fc, av, fpct);
    counts_text(c, sites, sizeof sites);
    emit(e, "Sites %zu: %s", c->total, sites);
}

/* W2: at most lines lines (a title and the latest intervals); returns how many it wrote. */
static int intervals(struct emit *e, const json_t *ev, int lines)
{
    const json_t *tr = json_object_get(ev, "tracking");
    size_t n = json_array_size(tr);
    double start = num(ev, "start");
    if (n == 0 || lines < 2 || !isfinite(start)) return 0;
    int64_t last =
        ((int64_t)num(json_array_get(tr, n - 1), "t") - (int64_t)start) / FV_VPP_WATCH_INTERVAL_MS;
    int k = lines - 1 < FV_VPP_WATCH_INTERVALS ? lines - 1 : FV_VPP_WATCH_INTERVALS;
    if (last < 0) return 0;
    if (last + 1 < k) k = (int)last + 1;
    int64_t first = last - k + 1;
    double tsum[FV_VPP_WATCH_INTERVALS] = {0}, dsum[FV_VPP_WATCH_INTERVALS] = {0};
    int cnt[FV_VPP_WATCH_INTERVALS] = {0};
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(tr, i);
        int64_t b = ((int64_t)num(p, "t") - (int64_t)start) / FV_VPP_WATCH_INTERVAL_MS - first;
        if (b < 0 || b >= k) continue;
        tsum[b] += num(p, "target_kw");
        dsum[b] += num(p, "delivered_kw");
        cnt[b]++;
    }
    emit(e, "%-19s %10s %13s %5s", "Interval (UTC)", "target kW", "delivered kW", "%");
    for (int b = 0; b < k; b++) {
        char from[16], to[16], bar[BAR_WIDTH + 2];
        double t0 = start + (double)(first + b) * FV_VPP_WATCH_INTERVAL_MS;
        clock_of(t0, from, sizeof from);
        clock_of(t0 + FV_VPP_WATCH_INTERVAL_MS, to, sizeof to);
        if (cnt[b] == 0) {
            emit(e, "%s-%s %10s %13s %5s", from, to, "-", "-", "-");
            continue;
        }
        double tg = tsum[b] / cnt[b], dl = dsum[b] / cnt[b];
        double pct = tg > 0 ? 100 * dl / tg : NAN;
        int w = isfinite(pct) ? (int)lround(fmin(pct, 100) * BAR_WIDTH / 100) : 0;
        memset(bar, '#', (size_t)w);
        bar[w] = isfinite(pct) && pct > 100.5 ? '+' : '\0';
        bar[w + 1] = '\0';
        char ps[16] = "-";
        if (isfinite(pct)) snprintf(ps, sizeof ps, "%.0f", pct);
        emit(e, "%s-%s %10.1f %13.1f %5s %s%s", from, to, tg, dl, ps, bar,
             b == k - 1 && !fv_vpp_watch_over(ev) ? " (now)" : "");
    }
    return 1 + k;
}

/* A site in W3's order: worst status first, then the largest shortfall, then by name. */
struct ranked {
    size_t i; /* its index in the answer's "sites" */
    int rank;
    double gap; /* kW short of its setpoint */
    const char *name;
};

static int by_worst(const void *pa, const void *pb)
{
    const struct ranked *a = pa, *b = pb;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    if (a->gap != b->gap) return a->gap > b->gap ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* order[] := the sites' indices, worst first. */
static int rank_sites(const json_t *sites, size_t *order)
{
    size_t n = json_array_size(sites);
    struct ranked *r = malloc((n ? n : 1) * sizeof *r);
    if (r == NULL) return FV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(sites, i);
        double sp = num(s, "setpoint_kw"), d = num(s, "battery_kw");
        r[i] = (struct ranked){i, rank(json_string_value(json_object_get(s, "status"))),
                               isfinite(sp) ? sp - (isfinite(d) ? d : 0) : 0, text(s, "site")};
    }
    qsort(r, n, sizeof *r, by_worst);
    for (size_t i = 0; i < n; i++)
        order[i] = r[i].i;
    free(r);
    return FV_OK;
}

/* W3: the sites in lines lines (a title, the worst sites, a count of the rest). */
static void site_table(struct emit *e, const json_t *sites, const size_t *order, int lines)
{
    size_t n = json_array_size(sites);
    if (lines < 2 || n == 0) return;
    size_t fit = (size_t)(lines - 1);
    if (fit < n) fit = fit > 1 ? fit - 1 : 0; /* keep a line for the count of the rest */
    int w = 4;
    for (size_t i = 0; i < fit && i < n; i++) {
        int l = (int)strlen(text(json_array_get(sites, order[i]), "site"));
        w = l > w ? l : w;
    }
    w = w > SITE_COL_MAX ? SITE_COL_MAX : w;
    emit(e, "%-*s %-10s %11s %12s  %s", w, "SITE", "STATUS", "SETPOINT kW", "DELIVERED kW",
         "REASON");
    for (size_t i = 0; i < fit && i < n; i++) {
        const json_t *s = json_array_get(sites, order[i]);
        char sp[16], dl[16];
        kw(num(s, "setpoint_kw"), sp, sizeof sp);
        kw(num(s, "battery_kw"), dl, sizeof dl);
        const char *st = text(s, "status"), *why = json_string_value(json_object_get(s, "reason"));
        emit(e, "%-*.*s %-10s %11s %12s  %s", w, w, text(s, "site"),
             strcmp(st, "opted_out") == 0 ? "opted out" : st, sp, dl, why ? why : "");
    }
    if (fit < n) {
        struct counts rest;
        char txt[256];
        count(sites, fit, order, &rest);
        counts_text(&rest, txt, sizeof txt);
        emit(e, "... and %zu more sites: %s", n - fit, txt);
    }
}

int fv_vpp_watch_frame(const json_t *ev, int64_t now_ms, int rows, int cols, int ansi,
                       struct fv_buf *out)
{
    struct emit e = {out, cols, ansi, FV_OK};
    const json_t *sites = json_object_get(ev, "sites");
    size_t n = json_array_size(sites);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (order == NULL || rank_sites(sites, order) != FV_OK) {
        free(order);
        return FV_ENOMEM;
    }
    struct counts c;
    count(sites, 0, NULL, &c);
    int left = rows - 1; /* the last row stays empty: a newline there would scroll */
    header(&e, ev, now_ms, &c);
    left -= 4;
    size_t ntr = json_array_size(json_object_get(ev, "tracking"));
    int ilines = ntr ? 1 + FV_VPP_WATCH_INTERVALS : 0;
    if (left - ilines - 1 < 4) ilines = left - 6 > 1 ? left - 6 : 0; /* sites come first */
    if (ilines > 1 && left > 1) {
        emit(&e, "%s", "");
        left -= 1 + intervals(&e, ev, ilines);
    }
    if (left > 2 && n) { /* a blank line, the table, the last line */
        emit(&e, "%s", "");
        site_table(&e, sites, order, left - 2);
    }
    char at[16];
    clock_of((double)now_ms, at, sizeof at);
    emit(&e, "%s UTC | %s", at, fv_vpp_watch_over(ev) ? "the event is over" : "Ctrl-C quits");
    free(order);
    return e.rc;
}

int fv_vpp_watch_line(const json_t *ev, int64_t now_ms, struct fv_buf *out)
{
    struct emit e = {out, 0, 0, FV_OK};
    char at[32], w[48], t[40], dl[16], pct[16], fc[16], av[16], sites[256];
    time_t s = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    when(ev, now_ms, w, sizeof w);
    target_of(ev, t, sizeof t);
    kw(num(ev, "delivered_kw"), dl, sizeof dl);
    percent(num(ev, "delivered_kw"), num(ev, "target_kw"), pct, sizeof pct);
    kw(num(ev, "forecast_kw"), fc, sizeof fc);
    kw(num(ev, "delivered_avg_kw"), av, sizeof av);
    struct counts c;
    count(json_object_get(ev, "sites"), 0, NULL, &c);
    counts_text(&c, sites, sizeof sites);
    emit(&e,
         "%s %s %s %s | target %s | delivered %s kW%s | forecast %s kW, delivered on average %s "
         "kW | sites %zu: %s",
         at, text(ev, "id"), text(ev, "state"), w, t, dl, pct, fc, av, c.total, sites);
    return e.rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_int(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void term_size(int *rows, int *cols)
{
    struct winsize ws;
    *rows = FALLBACK_ROWS;
    *cols = FALLBACK_COLS;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *rows = ws.ws_row;
        *cols = ws.ws_col;
    }
}

int fv_vpp_watch(const char *api, const char *endpoint, const char *const *pn,
                 const char *const *pv, size_t np, const char *token_file, int interval_ms)
{
    int tty = isatty(STDOUT_FILENO), rc = 0, failures = 0;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_int; /* no SA_RESTART: a sleep ends at once */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    if (tty) fputs("\033[?25l\033[H\033[2J", stdout); /* cursor hidden, screen cleared */
    while (!interrupted) {
        struct fv_buf body = {0}, frame = {0};
        long status;
        char err[600];
        int frc = fv_cli_api_fetch("GET", api, endpoint, pn, pv, np, token_file, &body, &status,
                                   err, sizeof err);
        json_t *ev = frc == 0 ? json_loadb((const char *)body.data, body.len, 0, NULL) : NULL;
        if (frc == 0 && !json_is_object(ev)) {
            frc = 1;
            snprintf(err, sizeof err, "the server's answer is not a JSON object");
        }
        int64_t now = (int64_t)fv_now_ms();
        int over = 0;
        if (frc == 0) {
            failures = 0;
            int rows, cols;
            term_size(&rows, &cols);
            if (tty) fv_buf_append(&frame, "\033[H", 3);
            int r = tty ? fv_vpp_watch_frame(ev, now, rows, cols, 1, &frame)
                        : fv_vpp_watch_line(ev, now, &frame);
            if (r == FV_OK && tty) r = fv_buf_append(&frame, "\033[J", 3);
            if (r == FV_OK) fwrite(frame.data, 1, frame.len, stdout);
            over = fv_vpp_watch_over(ev);
        } else if ((status == 0 || status >= 500) && frc == 1 && ++failures < MAX_FAILURES) {
            /* the server away or failing: say so where the view is, and try again */
            if (tty)
                printf("\033[H%s (trying again)\033[K\n\033[J", err);
            else
                fprintf(stderr, "fleetvault vpp: %s (trying again)\n", err);
        } else {
            if (tty) fputs("\033[?25h", stdout);
            fprintf(stderr, "fleetvault vpp: %s\n", err);
            rc = frc;
        }
        fflush(stdout);
        json_decref(ev);
        fv_buf_free(&body);
        fv_buf_free(&frame);
        if (over || rc) break;
        for (int waited = 0; waited < interval_ms && !interrupted; waited += 100)
            usleep(100000);
    }
    if (tty) fputs("\033[?25h", stdout); /* the cursor back; the last view stays */
    fflush(stdout);
    sigaction(SIGINT, &old, NULL);
    return rc;
}
