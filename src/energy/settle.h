/*
 * settle.h - settlement rows (per site per event), their CSV and JSON, and totals.
 *
 * Rounding rule (so that a total equals the sum of its printed rows, bit for bit):
 *   1. baseline_kwh and metered_kwh are rounded to whole Wh (3 decimals of kWh), half away
 *      from zero: baseline_wh, metered_wh.
 *   2. incremental_wh comes from the rounded values, by the method's rule (baseline.h):
 *      group_a max(0, baseline_wh - metered_wh), a4_discharge max(0, metered_wh -
 *      baseline_wh); 0 when there is no baseline. A reviewer can redo it from the row.
 *   3. The rate is kept in 1/10,000 of the currency unit per kWh (rate_e4, rounded half away
 *      from zero); payment_cents = incremental_wh * rate_e4 / 100,000 rounded half up, in
 *      integers (cents of the currency: 1/100 of its unit).
 *   4. Totals are integer sums of the rows' Wh and cents: exact, whatever the order.
 * Printed: kWh with 3 decimals, money with 2, the rate with 2 decimals (4 when it has more),
 * baseline_days as ISO dates joined with ';' (newest first), empty when there is no
 * baseline (baseline_kwh empty too). Same rows -> same bytes.
 *
 * Thread-safety: pure; caller-owned rows and buffers; any thread. No I/O (writers append to
 * an fv_buf).
 */
#ifndef FV_ENERGY_SETTLE_H
#define FV_ENERGY_SETTLE_H

#include <stddef.h>
#include <stdint.h>

#include "energy/baseline.h"
#include "util/buf.h"

struct fv_vpp_settle_row {
    const char *site;  /* as the reader may see it (a pseudonym unless billing); borrowed */
    const char *event; /* event id; borrowed */
    enum fv_vpp_method method;
    int has_baseline;
    int ndays;
    int32_t days[FV_VPP_MAX_BASELINE_DAYS]; /* yyyymmdd, newest first */
    int64_t baseline_wh, metered_wh, incremental_wh;
    int64_t rate_e4; /* currency units / 10,000 per kWh */
    int64_t payment_cents;
    char currency[8];
    char note[160]; /* the baseline's reason (fewer days, none), or empty */
};

/* Fills a row from a baseline result under a program (rate, currency), applying the rounding
 * rule. site and event are borrowed (they must outlive the row). FV_OK, or FV_ELIMIT when a
 * value is out of range (|kWh| >= 1e6, or not a number). */
int fv_vpp_settle_row(struct fv_vpp_settle_row *row, const char *site, const char *event,
                      const struct fv_vpp_program *p, const struct fv_vpp_baseline_result *r);

struct fv_vpp_settle_total {
    size_t rows;
    int64_t baseline_wh, metered_wh, incremental_wh, payment_cents;
};

/* The sum of rows[0..n) (integers: exact). */
void fv_vpp_settle_sum(const struct fv_vpp_settle_row *rows, size_t n,
                       struct fv_vpp_settle_total *t);

/* Appends CSV: with header, the line
 * "site,event,method,baseline_days,baseline_kwh,metered_kwh,incremental_kwh,rate,payment",
 * then one line per row ("\n" endings; fields quoted per RFC 4180 when they hold a comma, a
 * quote or a line break). FV_OK, FV_ENOMEM (out may hold part). */
int fv_vpp_settle_csv(struct fv_buf *out, const struct fv_vpp_settle_row *rows, size_t n,
                      int header);

/* Appends JSON: {"rows": [{"site", "event", "method", "baseline_days": ["2026-08-17", ...],
 * "baseline_kwh" (null without a baseline), "metered_kwh", "incremental_kwh", "rate",
 * "currency", "payment", "note"}...], "total": {"rows", "baseline_kwh", "metered_kwh",
 * "incremental_kwh", "payment"}}, numbers printed as in the CSV. FV_OK, FV_ENOMEM. */
int fv_vpp_settle_json(struct fv_buf *out, const struct fv_vpp_settle_row *rows, size_t n);

#endif
