/*
 * report_md.c - renders a records-of-processing report (fv_report_build's JSON, report.h)
 * as Markdown for people: sections 1-9 of GDPR Art. 30 and the warnings.
 *
 * Reads only the JSON it is given; a key that is missing or of another type renders as
 * empty or "-", never fails. Out-of-memory is recorded (struct md) and reported at the end.
 *
 * Threading: any thread; no shared state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "privacy/report.h"
#include "util/err.h"

struct md {
    struct fv_buf *out;
    int oom;
};

static void put(struct md *m, const char *s, size_t n)
{
    if (!m->oom && fv_buf_append(m->out, s, n) != FV_OK) m->oom = 1;
}

#define PUTS(m, lit) put((m), (lit), sizeof(lit) - 1)

static void mdf(struct md *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mdf(struct md *m, const char *fmt, ...)
{
    if (m->oom) return;
    va_list ap;
    va_start(ap, fmt);
    if (fv_buf_vappendf(m->out, fmt, ap) != FV_OK) m->oom = 1;
    va_end(ap);
}

/* Text for a table cell: '|' escaped, line breaks as spaces. */
static void cell(struct md *m, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            PUTS(m, "\\|");
        else if (*p == '\n' || *p == '\r')
            PUTS(m, " ");
        else
            put(m, p, 1);
    }
}

static const char *sv(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* a, b, c of a JSON array of strings (or "-" when empty). */
static void join(struct md *m, const json_t *a)
{
    size_t i;
    json_t *v;
    if (json_array_size(a) == 0) PUTS(m, "-");
    json_array_foreach(a, i, v)
    {
        if (i) PUTS(m, ", ");
        cell(m, json_is_string(v) ? json_string_value(v) : "?");
    }
}

static void limit_md(struct md *m, const json_t *v)
{
    if (json_is_integer(v))
        mdf(m, "%lld", (long long)json_integer_value(v));
    else
        PUTS(m, "no limit");
}

/* subjects / rows / bytes per day */
static void quota_md(struct md *m, const json_t *q)
{
    limit_md(m, json_object_get(q, "subjects_per_day"));
    PUTS(m, " / ");
    limit_md(m, json_object_get(q, "rows_per_day"));
    PUTS(m, " / ");
    limit_md(m, json_object_get(q, "bytes_per_day"));
}

static void md_purposes(struct md *m, const json_t *ps)
{
    mdf(m, "\n## 2. Purposes of the processing\n\n"
           "| purpose | legal basis | roles that may read (data classes) | description |\n"
           "|---|---|---|---|\n");
    size_t i, j;
    json_t *p, *r;
    json_array_foreach(ps, i, p)
    {
        mdf(m, "| %s | %s | ", sv(p, "name"),
            json_is_true(json_object_get(p, "contract")) ? "contract, Art. 6(1)(b)"
                                                         : "consent, Art. 6(1)(a)");
        if (json_array_size(json_object_get(p, "roles")) == 0) PUTS(m, "none");
        json_array_foreach(json_object_get(p, "roles"), j, r)
        {
            if (j) PUTS(m, "; ");
            cell(m, sv(r, "role"));
            PUTS(m, " (");
            join(m, json_object_get(r, "classes"));
            PUTS(m, ")");
        }
        PUTS(m, " | ");
        cell(m, json_is_string(json_object_get(p, "description")) ? sv(p, "description") : "-");
        PUTS(m, " |\n");
    }
    mdf(m, "\nContract purposes are always granted and cannot be withdrawn short of erasure; "
           "the others rest on consent, given and withdrawn per subject and purpose "
           "(`fleetvault subject consent`), and roles that read them are limited to consenting "
           "subjects where the policy says consented_only.\n");
}

static void md_classes(struct md *m, const json_t *cs, const json_t *subjects, const json_t *counts)
{
    mdf(m, "\n## 3. Categories of personal data\n\n"
           "| data class | retention | stored | read for purposes | signals |\n"
           "|---|---|---|---|---|\n");
    size_t i;
    json_t *c;
    json_array_foreach(cs, i, c)
    {
        mdf(m, "| %s | %s | ", sv(c, "name"), sv(c, "retention"));
        const json_t *cons = json_object_get(c, "stored_while_consented_to");
        if (json_is_array(cons)) {
            PUTS(m, "while the owner consents to ");
            join(m, cons);
        } else {
            PUTS(m, "always");
        }
        PUTS(m, " | ");
        join(m, json_object_get(c, "purposes"));
        PUTS(m, " | ");
        const json_t *topics = json_object_get(c, "topics");
        if (json_is_array(topics)) {
            PUTS(m, "events (topics ");
            join(m, topics);
            PUTS(m, ")");
        } else {
            join(m, json_object_get(c, "signals"));
            if (json_is_true(json_object_get(c, "other_signals")))
                mdf(m, "; and every signal no other class lists, named or not");
        }
        PUTS(m, " |\n");
    }
    mdf(m, "\n## 4. Categories of data subjects\n\n");
    json_t *s;
    json_array_foreach(subjects, i, s)
    {
        mdf(m, "- **%s**: %s. Data: %s.\n", sv(s, "category"), sv(s, "description"), sv(s, "data"));
    }
    if (json_object_size(counts)) {
        mdf(m, "\nIn the catalog now:");
        const char *k;
        json_t *v;
        int first = 1;
        json_object_foreach((json_t *)counts, k, v)
        {
            mdf(m, "%s %s %lld", first ? "" : ";", k, (long long)json_integer_value(v));
            first = 0;
        }
        mdf(m, ".\n");
    }
}

static void md_recipients(struct md *m, const json_t *rec)
{
    mdf(m, "\n## 5. Recipients\n\n### Principals\n\n"
           "| name | role | created | created by | status |\n|---|---|---|---|---|\n");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rec, "built_in"), i, p)
    {
        mdf(m, "| %s | %s | (built in: ", sv(p, "name"), sv(p, "role"));
        cell(m, sv(p, "credential"));
        PUTS(m, ") | - | active |\n");
    }
    json_array_foreach(json_object_get(rec, "principals"), i, p)
    {
        mdf(m, "| %s | %s%s | %s | %s | ", sv(p, "name"), sv(p, "role"),
            json_is_true(json_object_get(p, "role_in_policy")) ? "" : " (not in the policy)",
            json_is_string(json_object_get(p, "created")) ? sv(p, "created") : "-",
            json_is_string(json_object_get(p, "created_by")) ? sv(p, "created_by") : "-");
        if (json_is_string(json_object_get(p, "revoked")))
            mdf(m, "**revoked** %s |\n", sv(p, "revoked"));
        else
            mdf(m, "active |\n");
    }
    mdf(m, "\n### Roles and their obligations\n\n"
           "| role | actions | purposes (data classes) | ticket | subjects per request | "
           "bulk approval above | obligations | quota per day (subjects / rows / bytes) | "
           "active principals |\n|---|---|---|---|---|---|---|---|---|\n");
    json_t *r;
    json_array_foreach(json_object_get(rec, "roles"), i, r)
    {
        mdf(m, "| %s | ", sv(r, "name"));
        join(m, json_object_get(r, "actions"));
        PUTS(m, " | ");
        const char *pn;
        json_t *cl;
        int first = 1;
        json_object_foreach(json_object_get(r, "purposes"), pn, cl)
        {
            mdf(m, "%s%s (", first ? "" : "; ", pn);
            join(m, cl);
            PUTS(m, ")");
            first = 0;
        }
        if (first) PUTS(m, "-");
        mdf(m, " | %s | ", json_is_true(json_object_get(r, "requires_ticket")) ? "required" : "no");
        limit_md(m, json_object_get(r, "max_subjects_per_request"));
        PUTS(m, " | ");
        const json_t *bulk = json_object_get(r, "bulk_subjects_threshold");
        if (json_is_integer(bulk))
            mdf(m, "%lld", (long long)json_integer_value(bulk));
        else
            PUTS(m, "never needed");
        PUTS(m, " | ");
        const char *ok;
        json_t *ov;
        first = 1;
        json_object_foreach(json_object_get(r, "obligations"), ok, ov)
        {
            if (!json_is_true(ov)) continue;
            mdf(m, "%s%s", first ? "" : ", ", ok);
            first = 0;
        }
        if (json_is_true(json_object_get(r, "approves_bulk"))) {
            mdf(m, "%sapproves bulk reads", first ? "" : ", ");
            first = 0;
        }
        if (first) PUTS(m, "none");
        PUTS(m, " | ");
        quota_md(m, json_object_get(r, "quota"));
        const json_t *rq = json_object_get(r, "role_quota");
        const char *rk;
        json_t *rv;
        int any = 0;
        json_object_foreach((json_t *)rq, rk, rv) any |= json_is_integer(rv);
        if (any) {
            PUTS(m, "; all its principals together: ");
            quota_md(m, rq);
        }
        PUTS(m, " | ");
        join(m, json_object_get(r, "principals"));
        PUTS(m, " |\n");
    }
    json_array_foreach(json_object_get(rec, "roles"), i, r)
    {
        if (json_is_string(json_object_get(r, "description")))
            mdf(m, "%s- **%s**: %s\n", i ? "" : "\n", sv(r, "name"), sv(r, "description"));
    }
    mdf(m, "\n### Third parties\n\n%s.\n", sv(rec, "third_parties"));
}

int fv_report_markdown(const json_t *report, struct fv_buf *out)
{
    const json_t *sys = json_object_get(report, "system");
    if (!json_is_object(report) || !json_is_object(sys)) return FV_EINVAL;
    struct md m = {.out = out};
    const json_t *cf = json_object_get(sys, "config_file");
    mdf(&m, "# Records of processing activities (GDPR Art. 30)\n\n%s\n\n", sv(report, "record"));
    mdf(&m,
        "## 1. Controller and system\n\n| | |\n|---|---|\n"
        "| controller | (to be filled in by the controller: name, contact, representative, "
        "data protection officer) |\n"
        "| system | %s %s |\n| generated | %s |\n| configuration | %s |\n"
        "| access policy | %s |\n| data directory | %s |\n",
        sv(sys, "name"), sv(sys, "version"), sv(sys, "generated"),
        json_is_string(cf) ? json_string_value(cf) : "defaults (no file)", sv(sys, "policy"),
        sv(sys, "data_dir"));
    md_purposes(&m, json_object_get(report, "purposes"));
    md_classes(&m, json_object_get(report, "data_classes"),
               json_object_get(report, "data_subjects"), json_object_get(report, "subject_counts"));
    md_recipients(&m, json_object_get(report, "recipients"));
    const json_t *tr = json_object_get(report, "transfers");
    mdf(&m, "\n## 6. Transfers to third countries\n\n%s.\n", sv(tr, "detail"));
    const json_t *ret = json_object_get(report, "retention");
    mdf(&m, "\n## 7. Time limits for erasure\n\n");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(ret, "data_classes"), k, v)
    {
        mdf(&m, "- data class **%s**: %s\n", k, json_string_value(v) ? json_string_value(v) : "");
    }
    json_object_foreach((json_t *)ret, k, v)
    {
        if (!json_is_string(v)) continue;
        PUTS(&m, "- ");
        for (const char *p = k; *p; p++)
            put(&m, *p == '_' ? " " : p, 1);
        mdf(&m, ": %s\n", json_string_value(v));
    }
    mdf(&m, "\n## 8. Security measures (Art. 32)\n\n");
    size_t i;
    json_array_foreach(json_object_get(report, "security_measures"), i, v)
    {
        mdf(&m, "- **%s**: %s.\n", sv(v, "measure"), sv(v, "detail"));
    }
    const json_t *au = json_object_get(report, "audit_log");
    const json_t *wit = json_object_get(au, "witness");
    mdf(&m,
        "\n## 9. Audit log\n\n- where: `%s`\n- what: %s\n- signing key: `%s` (public half `%s`)\n"
        "- witness: %s\n- retention: %s\n- verify: `%s`\n- query: `%s`\n",
        sv(au, "path"), sv(au, "format"), sv(au, "signing_key"), sv(au, "public_key"),
        json_is_string(wit) ? json_string_value(wit) : "none configured",
        json_is_string(json_object_get(au, "retention")) ? sv(au, "retention") : "none",
        sv(au, "verify"), sv(au, "query"));
    const json_t *w = json_object_get(report, "warnings");
    if (json_array_size(w)) {
        mdf(&m, "\n## Warnings\n\n");
        json_array_foreach(w, i, v)
        {
            mdf(&m, "- %s\n", json_string_value(v) ? json_string_value(v) : "");
        }
    }
    return m.oom ? FV_ENOMEM : FV_OK;
}
