/* settle.c - settlement rows, CSV, JSON and totals (settle.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "energy/settle.h"
#include "util/err.h"

#define KWH_LIMIT 1e6

/* Half away from zero; the caller has bounded |x|. */
static int64_t round_i64(double x)
{
    return (int64_t)llround(x);
}

int fv_vpp_settle_row(struct fv_vpp_settle_row *row, const char *site, const char *event,
                      const struct fv_vpp_program *p, const struct fv_vpp_baseline_result *r)
{
    memset(row, 0, sizeof *row);
    row->site = site;
    row->event = event;
    row->method = r->method;
    row->has_baseline = r->status != FV_VPP_BL_NONE;
    if (!(fabs(r->metered_kwh) < KWH_LIMIT) || !(fabs(r->baseline_kwh) < KWH_LIMIT) ||
        !(p->rate >= 0 && p->rate <= 10000))
        return FV_ELIMIT;
    row->metered_wh = round_i64(r->metered_kwh * 1000.0);
    row->rate_e4 = round_i64(p->rate * 1e4);
    snprintf(row->currency, sizeof row->currency, "%s", p->currency);
    snprintf(row->note, sizeof row->note, "%s", r->reason);
    if (row->has_baseline) {
        row->ndays = r->ndays;
        memcpy(row->days, r->days, (size_t)r->ndays * sizeof r->days[0]);
        row->baseline_wh = round_i64(r->baseline_kwh * 1000.0);
        int64_t diff = r->method == FV_VPP_GROUP_A ? row->baseline_wh - row->metered_wh
                                                   : row->metered_wh - row->baseline_wh;
        row->incremental_wh = diff > 0 ? diff : 0;
    }
    /* incremental_wh < 2e9 and rate_e4 <= 1e8: the product stays below 2^63. */
    row->payment_cents = (row->incremental_wh * row->rate_e4 + 50000) / 100000;
    return FV_OK;
}

void fv_vpp_settle_sum(const struct fv_vpp_settle_row *rows, size_t n,
                       struct fv_vpp_settle_total *t)
{
    memset(t, 0, sizeof *t);
    t->rows = n;
    for (size_t i = 0; i < n; i++) {
        t->baseline_wh += rows[i].baseline_wh;
        t->metered_wh += rows[i].metered_wh;
        t->incremental_wh += rows[i].incremental_wh;
        t->payment_cents += rows[i].payment_cents;
    }
}

/* Writes the decimal digits of v, at least min digits (zero-padded), backwards ending at
 * end; returns the first. Hand-rolled: printf dominated a million-row CSV. */
static char *digits(char *end, uint64_t v, int min)
{
    int k = 0;
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
        k++;
    } while (v || k < min);
    return end;
}

/* v / 10^dec with dec decimals ("-0.005" for -5 at 3). */
static int put_fixed(struct fv_buf *out, int64_t v, int dec)
{
    char s[48], *end = s + sizeof s;
    uint64_t div = dec == 2 ? 100 : dec == 3 ? 1000 : 10000;
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = digits(end, a % div, dec);
    *--p = '.';
    p = digits(p, a / div, 1);
    if (v < 0) *--p = '-';
    return fv_buf_append(out, p, (size_t)(end - p));
}

static int put_rate(struct fv_buf *out, int64_t rate_e4)
{
    return rate_e4 % 100 == 0 ? put_fixed(out, rate_e4 / 100, 2) : put_fixed(out, rate_e4, 4);
}

static int put_str(struct fv_buf *out, const char *s)
{
    return fv_buf_append(out, s, strlen(s));
}

static int put_date(struct fv_buf *out, int32_t d)
{
    char s[16], *end = s + sizeof s;
    uint32_t u = d > 0 ? (uint32_t)d : 0;
    char *p = digits(end, u % 100, 2);
    *--p = '-';
    p = digits(p, u / 100 % 100, 2);
    *--p = '-';
    p = digits(p, u / 10000, 4);
    return fv_buf_append(out, p, (size_t)(end - p));
}

static int put_csv_field(struct fv_buf *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) return put_str(out, s);
    int rc = fv_buf_append(out, "\"", 1);
    for (const char *c = s; rc == FV_OK && *c; c++)
        rc = *c == '"' ? fv_buf_append(out, "\"\"", 2) : fv_buf_append(out, c, 1);
    return rc == FV_OK ? fv_buf_append(out, "\"", 1) : rc;
}

static int put_json_str(struct fv_buf *out, const char *s)
{
    int rc = fv_buf_append(out, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; rc == FV_OK && *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            rc = fv_buf_append(out, esc, 2);
        } else if (*c < 0x20) {
            int n = snprintf(esc, sizeof esc, "\\u%04x", *c);
            rc = fv_buf_append(out, esc, (size_t)n);
        } else {
            rc = fv_buf_append(out, c, 1);
        }
    }
    return rc == FV_OK ? fv_buf_append(out, "\"", 1) : rc;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != FV_OK) return rc_;                                                              \
    } while (0)

int fv_vpp_settle_csv(struct fv_buf *out, const struct fv_vpp_settle_row *rows, size_t n,
                      int header)
{
    if (header)
        TRY(put_str(out, "site,event,method,baseline_days,baseline_kwh,metered_kwh,"
                         "incremental_kwh,rate,payment\n"));
    for (size_t i = 0; i < n; i++) {
        const struct fv_vpp_settle_row *r = &rows[i];
        TRY(put_csv_field(out, r->site));
        TRY(put_str(out, ","));
        TRY(put_csv_field(out, r->event));
        TRY(put_str(out, ","));
        TRY(put_str(out, fv_vpp_method_name(r->method)));
        TRY(put_str(out, ","));
        for (int d = 0; d < r->ndays; d++) {
            if (d) TRY(put_str(out, ";"));
            TRY(put_date(out, r->days[d]));
        }
        TRY(put_str(out, ","));
        if (r->has_baseline) TRY(put_fixed(out, r->baseline_wh, 3));
        TRY(put_str(out, ","));
        TRY(put_fixed(out, r->metered_wh, 3));
        TRY(put_str(out, ","));
        TRY(put_fixed(out, r->incremental_wh, 3));
        TRY(put_str(out, ","));
        TRY(put_rate(out, r->rate_e4));
        TRY(put_str(out, ","));
        TRY(put_fixed(out, r->payment_cents, 2));
        TRY(put_str(out, "\n"));
    }
    return FV_OK;
}

int fv_vpp_settle_json(struct fv_buf *out, const struct fv_vpp_settle_row *rows, size_t n)
{
    TRY(put_str(out, "{\"rows\":["));
    for (size_t i = 0; i < n; i++) {
        const struct fv_vpp_settle_row *r = &rows[i];
        TRY(put_str(out, i ? ",{\"site\":" : "{\"site\":"));
        TRY(put_json_str(out, r->site));
        TRY(put_str(out, ",\"event\":"));
        TRY(put_json_str(out, r->event));
        TRY(put_str(out, ",\"method\":\""));
        TRY(put_str(out, fv_vpp_method_name(r->method)));
        TRY(put_str(out, "\",\"baseline_days\":["));
        for (int d = 0; d < r->ndays; d++) {
            TRY(put_str(out, d ? ",\"" : "\""));
            TRY(put_date(out, r->days[d]));
            TRY(put_str(out, "\""));
        }
        TRY(put_str(out, "],\"baseline_kwh\":"));
        TRY(r->has_baseline ? put_fixed(out, r->baseline_wh, 3) : put_str(out, "null"));
        TRY(put_str(out, ",\"metered_kwh\":"));
        TRY(put_fixed(out, r->metered_wh, 3));
        TRY(put_str(out, ",\"incremental_kwh\":"));
        TRY(put_fixed(out, r->incremental_wh, 3));
        TRY(put_str(out, ",\"rate\":"));
        TRY(put_rate(out, r->rate_e4));
        TRY(put_str(out, ",\"currency\":"));
        TRY(put_json_str(out, r->currency));
        TRY(put_str(out, ",\"payment\":"));
        TRY(put_fixed(out, r->payment_cents, 2));
        TRY(put_str(out, ",\"note\":"));
        TRY(put_json_str(out, r->note));
        TRY(put_str(out, "}"));
    }
    struct fv_vpp_settle_total t;
    fv_vpp_settle_sum(rows, n, &t);
    char s[32];
    int len = snprintf(s, sizeof s, "%zu", t.rows);
    TRY(put_str(out, "],\"total\":{\"rows\":"));
    TRY(fv_buf_append(out, s, (size_t)len));
    TRY(put_str(out, ",\"baseline_kwh\":"));
    TRY(put_fixed(out, t.baseline_wh, 3));
    TRY(put_str(out, ",\"metered_kwh\":"));
    TRY(put_fixed(out, t.metered_wh, 3));
    TRY(put_str(out, ",\"incremental_kwh\":"));
    TRY(put_fixed(out, t.incremental_wh, 3));
    TRY(put_str(out, ",\"payment\":"));
    TRY(put_fixed(out, t.payment_cents, 2));
    return put_str(out, "}}");
}
