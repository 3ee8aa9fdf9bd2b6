/*
 * promql.c - the PromQL subset's parser (promql.h): recursive descent over the text, no
 * separate lexer. Any thread.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promql.h"
#include "util/err.h"

#define MAX_DEPTH 64

struct ps {
    const char *s;
    size_t p;
    int depth;
    size_t errpos;
    char *err;
    size_t errlen;
    int failed; /* FV_EINVAL or FV_ENOMEM once an error is set */
};

static const char *const func_names[] = {"rate",           "increase",      "avg_over_time",
                                         "min_over_time",  "max_over_time", "last_over_time",
                                         "count_over_time"};
static const char *const agg_names[] = {"sum", "avg", "min", "max", "count"};

static void fail(struct ps *ps, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct ps *ps, size_t at, const char *fmt, ...)
{
    if (ps->failed) return;
    ps->failed = FV_EINVAL;
    ps->errpos = at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err, ps->errlen, fmt, ap);
    va_end(ap);
}

static void skip_ws(struct ps *ps)
{
    while (isspace((unsigned char)ps->s[ps->p]))
        ps->p++;
}

static int peek(struct ps *ps, char c)
{
    skip_ws(ps);
    return ps->s[ps->p] == c;
}

static int expect(struct ps *ps, char c)
{
    skip_ws(ps);
    if (ps->s[ps->p] != c) {
        if (ps->s[ps->p] == '\0')
            fail(ps, ps->p, "unexpected end of input, expected \"%c\"", c);
        else
            fail(ps, ps->p, "unexpected character \"%c\", expected \"%c\"", ps->s[ps->p], c);
        return 0;
    }
    ps->p++;
    return 1;
}

static int ident_start(int c)
{
    return isalpha(c) || c == '_' || c == ':';
}
static int ident_char(int c)
{
    return isalnum(c) || c == '_' || c == ':';
}

/* Reads an identifier into buf; 0 if there is none at p. */
static int ident(struct ps *ps, char *buf, size_t len)
{
    skip_ws(ps);
    size_t start = ps->p;
    if (!ident_start((unsigned char)ps->s[ps->p])) return 0;
    while (ident_char((unsigned char)ps->s[ps->p]))
        ps->p++;
    size_t n = ps->p - start;
    if (n >= len) {
        fail(ps, start, "identifier too long (at most %zu characters)", len - 1);
        return 0;
    }
    memcpy(buf, ps->s + start, n);
    buf[n] = '\0';
    return 1;
}

static struct fv_pq_node *node_new(struct ps *ps, enum fv_pq_kind k)
{
    struct fv_pq_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        if (!ps->failed) {
            ps->failed = FV_ENOMEM;
            ps->errpos = ps->p;
            snprintf(ps->err, ps->errlen, "out of memory");
        }
        return NULL;
    }
    n->kind = k;
    return n;
}

void fv_pq_free(struct fv_pq_node *n)
{
    if (n == NULL) return;
    if (n->kind == FV_PQ_SEL)
        for (size_t i = 0; i < n->nmatch; i++)
            if (n->match[i].op == FV_PQ_RE || n->match[i].op == FV_PQ_NRE) regfree(&n->match[i].re);
    fv_pq_free(n->arg);
    fv_pq_free(n->lhs);
    fv_pq_free(n->rhs);
    free(n);
}

int fv_pq_duration(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t total = 0;
    if (len == 0) return FV_EINVAL;
    while (i < len) {
        if (!isdigit((unsigned char)s[i])) return FV_EINVAL;
        int64_t v = 0;
        while (i < len && isdigit((unsigned char)s[i])) {
            if (v > 1000000000000LL) return FV_EINVAL;
            v = v * 10 + (s[i] - '0');
            i++;
        }
        int64_t unit;
        if (i + 1 < len && s[i] == 'm' && s[i + 1] == 's') {
            unit = 1;
            i += 2;
        } else if (i < len) {
            switch (s[i]) {
            case 's':
                unit = 1000;
                break;
            case 'm':
                unit = 60000;
                break;
            case 'h':
                unit = 3600000;
                break;
            case 'd':
                unit = 86400000;
                break;
            case 'w':
                unit = 7 * 86400000LL;
                break;
            case 'y':
                unit = 365 * 86400000LL;
                break;
            default:
                return FV_EINVAL;
            }
            i++;
        } else {
            return FV_EINVAL;
        }
        if (v > (INT64_MAX / 4 - total) / unit) return FV_EINVAL;
        total += v * unit;
    }
    if (total <= 0) return FV_EINVAL;
    *ms = total;
    return FV_OK;
}

/* A quoted string into buf. */
static int string_lit(struct ps *ps, char *buf, size_t len)
{
    skip_ws(ps);
    char q = ps->s[ps->p];
    if (q != '"' && q != '\'') {
        fail(ps, ps->p, "expected a quoted string");
        return 0;
    }
    size_t start = ps->p++, n = 0;
    for (;;) {
        char c = ps->s[ps->p];
        if (c == '\0') {
            fail(ps, start, "unterminated quoted string");
            return 0;
        }
        ps->p++;
        if (c == q) break;
        if (c == '\\') {
            c = ps->s[ps->p];
            if (c == '\0') continue;
            ps->p++;
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        if (n + 1 >= len) {
            fail(ps, start, "string too long (at most %zu bytes)", len - 1);
            return 0;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    return 1;
}

/* What regcomp may take from a request: glibc's compile time and memory grow with nested
 * and counted repetitions ("a++++", "(a{99}){99}"), so neither is accepted (RE2, which
 * Prometheus uses, refuses nested repetition too). NULL if fine, else why not. */
static const char *regex_unsafe(const char *re)
{
    int prev_quant = 0;
    for (const char *p = re; *p; p++) {
        if (*p == '\\') {
            if (p[1] >= '1' && p[1] <= '9') return "back-references are not supported";
            if (p[1]) p++;
            prev_quant = 0;
        } else if (*p == '[') { /* a bracket expression: no operators inside */
            const char *q = p + 1;
            if (*q == '^') q++;
            if (*q == ']') q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *end = strchr(q + 2, q[1]);
                    if (end == NULL || end[1] != ']') return "an unterminated bracket expression";
                    q = end + 2;
                    continue;
                }
                q++;
            }
            if (*q == '\0') return "an unterminated bracket expression";
            p = q;
            prev_quant = 0;
        } else if (*p == '{') {
            return "counted repetitions ({n,m}) are not supported";
        } else if (*p == '*' || *p == '+' || *p == '?') {
            if (prev_quant) return "nested repetition operators are not supported";
            prev_quant = 1;
        } else {
            prev_quant = 0;
        }
    }
    return NULL;
}

static int add_matcher(struct ps *ps, struct fv_pq_node *sel, enum fv_pq_label l, enum fv_pq_mop op,
                       const char *value, size_t at)
{
    if (sel->nmatch == FV_PQ_MAX_MATCHERS) {
        fail(ps, at, "too many label matchers (at most %d)", FV_PQ_MAX_MATCHERS);
        return 0;
    }
    struct fv_pq_matcher *m = &sel->match[sel->nmatch];
    m->label = l;
    m->op = op;
    snprintf(m->value, sizeof m->value, "%s", value);
    if (op == FV_PQ_RE || op == FV_PQ_NRE) {
        const char *unsafe = regex_unsafe(value);
        if (unsafe) {
            fail(ps, at, "bad regular expression \"%.60s\": %s", value, unsafe);
            return 0;
        }
        char anchored[FV_PQ_VALUE_MAX + 8];
        snprintf(anchored, sizeof anchored, "^(%s)$", value);
        int rc = regcomp(&m->re, anchored, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char why[128];
            regerror(rc, &m->re, why, sizeof why);
            fail(ps, at, "bad regular expression \"%.60s\": %s", value, why);
            return 0;
        }
    }
    sel->nmatch++;
    return 1;
}

static int matchers(struct ps *ps, struct fv_pq_node *sel)
{
    if (!expect(ps, '{')) return 0;
    while (!peek(ps, '}')) {
        char name[64], value[FV_PQ_VALUE_MAX];
        size_t at = (skip_ws(ps), ps->p);
        if (!ident(ps, name, sizeof name)) {
            fail(ps, ps->p, "expected a label name");
            return 0;
        }
        enum fv_pq_label l;
        if (strcmp(name, "signal") == 0 || strcmp(name, "__name__") == 0)
            l = FV_PQ_L_SIGNAL;
        else if (strcmp(name, "device") == 0)
            l = FV_PQ_L_DEVICE;
        else {
            fail(ps, at, "unknown label \"%s\": use signal, device or __name__", name);
            return 0;
        }
        skip_ws(ps);
        enum fv_pq_mop op;
        const char *o = ps->s + ps->p;
        if (o[0] == '=' && o[1] == '~')
            op = FV_PQ_RE, ps->p += 2;
        else if (o[0] == '!' && o[1] == '~')
            op = FV_PQ_NRE, ps->p += 2;
        else if (o[0] == '!' && o[1] == '=')
            op = FV_PQ_NE, ps->p += 2;
        else if (o[0] == '=')
            op = FV_PQ_EQ, ps->p += 1;
        else {
            fail(ps, ps->p, "expected =, !=, =~ or !~ after label \"%s\"", name);
            return 0;
        }
        size_t vat = (skip_ws(ps), ps->p);
        if (!string_lit(ps, value, sizeof value)) return 0;
        if (!add_matcher(ps, sel, l, op, value, vat)) return 0;
        if (peek(ps, ',')) {
            ps->p++;
            continue;
        }
        if (!peek(ps, '}')) {
            fail(ps, ps->p, "expected \",\" or \"}\" in label matchers");
            return 0;
        }
    }
    ps->p++;
    return 1;
}

static struct fv_pq_node *selector(struct ps *ps, const char *name, size_t at)
{
    struct fv_pq_node *n = node_new(ps, FV_PQ_SEL);
    if (n == NULL) return NULL;
    if (name && !add_matcher(ps, n, FV_PQ_L_SIGNAL, FV_PQ_EQ, name, at)) goto bad;
    if (peek(ps, '{') && !matchers(ps, n)) goto bad;
    if (n->nmatch == 0) {
        fail(ps, at, "a selector needs at least one label matcher");
        goto bad;
    }
    if (peek(ps, '[')) {
        size_t rat = ps->p++;
        skip_ws(ps);
        size_t st = ps->p;
        while (isalnum((unsigned char)ps->s[ps->p]))
            ps->p++;
        if (fv_pq_duration(ps->s + st, ps->p - st, &n->range_ms) != FV_OK) {
            fail(ps, st, "bad duration in range \"%.*s\"", (int)(ps->p - st > 20 ? 20 : ps->p - st),
                 ps->s + st);
            goto bad;
        }
        if (!expect(ps, ']')) goto bad;
        (void)rat;
    }
    return n;
bad:
    fv_pq_free(n);
    return NULL;
}

static struct fv_pq_node *expr(struct ps *ps);

static int grouping(struct ps *ps, struct fv_pq_node *n)
{
    if (!expect(ps, '(')) return 0;
    while (!peek(ps, ')')) {
        char name[64];
        size_t at = (skip_ws(ps), ps->p);
        if (!ident(ps, name, sizeof name)) {
            fail(ps, ps->p, "expected a label name in the grouping");
            return 0;
        }
        if (strcmp(name, "signal") == 0 || strcmp(name, "__name__") == 0)
            n->keep |= 1u << FV_PQ_L_SIGNAL;
        else if (strcmp(name, "device") == 0)
            n->keep |= 1u << FV_PQ_L_DEVICE;
        else {
            fail(ps, at, "unknown label \"%s\": use signal, device or __name__", name);
            return 0;
        }
        if (peek(ps, ',')) {
            ps->p++;
            continue;
        }
        if (!peek(ps, ')')) {
            fail(ps, ps->p, "expected \",\" or \")\" in the grouping");
            return 0;
        }
    }
    ps->p++;
    return 1;
}

/* Reads "by (...)" or "without (...)" if present. */
static int maybe_grouping(struct ps *ps, struct fv_pq_node *n, int *seen)
{
    size_t save = ps->p;
    char w[16];
    if (!ident(ps, w, sizeof w)) {
        ps->p = save;
        return !ps->failed;
    }
    if (strcmp(w, "by") != 0 && strcmp(w, "without") != 0) {
        ps->p = save;
        return 1;
    }
    if (*seen) {
        fail(ps, save, "a second grouping clause");
        return 0;
    }
    *seen = 1;
    n->without = strcmp(w, "without") == 0;
    return grouping(ps, n);
}

static struct fv_pq_node *primary(struct ps *ps)
{
    skip_ws(ps);
    size_t at = ps->p;
    char c = ps->s[ps->p];
    if (c == '(') {
        ps->p++;
        struct fv_pq_node *n = expr(ps);
        if (n && !expect(ps, ')')) {
            fv_pq_free(n);
            return NULL;
        }
        return n;
    }
    if (isdigit((unsigned char)c) || c == '.') {
        char *end;
        errno = 0;
        double v = strtod(ps->s + ps->p, &end);
        if (end == ps->s + ps->p || errno == ERANGE) {
            fail(ps, at, "bad number");
            return NULL;
        }
        ps->p = (size_t)(end - ps->s);
        struct fv_pq_node *n = node_new(ps, FV_PQ_NUM);
        if (n) {
            n->num = v;
            n->scalar = 1;
        }
        return n;
    }
    if (c == '{') return selector(ps, NULL, at);
    char name[FV_PQ_VALUE_MAX];
    if (!ident(ps, name, sizeof name)) {
        if (c == '\0')
            fail(ps, at, "unexpected end of input");
        else
            fail(ps, at, "unexpected character \"%c\"", c);
        return NULL;
    }
    for (int f = 0; f < (int)(sizeof func_names / sizeof *func_names); f++) {
        if (strcmp(name, func_names[f]) != 0 || !peek(ps, '(')) continue;
        ps->p++;
        struct fv_pq_node *n = node_new(ps, FV_PQ_FUNC);
        if (n == NULL) return NULL;
        n->func = (enum fv_pq_func)f;
        size_t aat = (skip_ws(ps), ps->p);
        n->arg = primary(ps);
        if (n->arg && (n->arg->kind != FV_PQ_SEL || n->arg->range_ms == 0))
            fail(ps, aat, "%s() expects a range vector (a selector with [duration])", name);
        if (ps->failed || !expect(ps, ')')) {
            fv_pq_free(n);
            return NULL;
        }
        return n;
    }
    for (int a = 0; a < (int)(sizeof agg_names / sizeof *agg_names); a++) {
        if (strcmp(name, agg_names[a]) != 0) continue;
        size_t save = ps->p;
        skip_ws(ps);
        if (!peek(ps, '(') && !ident_start((unsigned char)ps->s[ps->p])) {
            ps->p = save;
            break;
        }
        struct fv_pq_node *n = node_new(ps, FV_PQ_AGG);
        if (n == NULL) return NULL;
        n->agg = (enum fv_pq_agg)a;
        int seen = 0;
        if (!maybe_grouping(ps, n, &seen) || !expect(ps, '(')) {
            fv_pq_free(n);
            return NULL;
        }
        size_t aat = (skip_ws(ps), ps->p);
        n->arg = expr(ps);
        if (n->arg && n->arg->scalar) fail(ps, aat, "%s() expects an instant vector", name);
        if (n->arg && n->arg->kind == FV_PQ_SEL && n->arg->range_ms)
            fail(ps, aat, "%s() expects an instant vector, not a range vector", name);
        if (ps->failed || !expect(ps, ')') || !maybe_grouping(ps, n, &seen)) {
            fv_pq_free(n);
            return NULL;
        }
        return n;
    }
    if (peek(ps, '(')) {
        fail(ps, at, "unknown or unsupported function \"%s\" (docs/prometheus.md)", name);
        return NULL;
    }
    return selector(ps, name, at);
}

static struct fv_pq_node *unary(struct ps *ps)
{
    if (++ps->depth > MAX_DEPTH) {
        fail(ps, ps->p, "expression nested too deeply");
        return NULL;
    }
    struct fv_pq_node *n;
    if (peek(ps, '-') || peek(ps, '+')) {
        int neg = ps->s[ps->p++] == '-';
        struct fv_pq_node *a = unary(ps);
        if (a == NULL || !neg) {
            ps->depth--;
            return a;
        }
        n = node_new(ps, FV_PQ_NEG);
        if (n == NULL) {
            fv_pq_free(a);
            return NULL;
        }
        n->arg = a;
        n->scalar = a->scalar;
    } else {
        n = primary(ps);
    }
    ps->depth--;
    return n;
}

static struct fv_pq_node *binary(struct ps *ps, struct fv_pq_node *l, char op, size_t at,
                                 struct fv_pq_node *r)
{
    if (l->kind == FV_PQ_SEL && l->range_ms) fail(ps, at, "a range vector in an arithmetic");
    if (r->kind == FV_PQ_SEL && r->range_ms) fail(ps, at, "a range vector in an arithmetic");
    if (!l->scalar && !r->scalar)
        fail(ps, at,
             "arithmetic between two vectors is not supported; one side must be a "
             "number");
    struct fv_pq_node *n = ps->failed ? NULL : node_new(ps, FV_PQ_BIN);
    if (n == NULL) {
        fv_pq_free(l);
        fv_pq_free(r);
        return NULL;
    }
    n->op = op;
    n->lhs = l;
    n->rhs = r;
    n->scalar = l->scalar && r->scalar;
    return n;
}

static struct fv_pq_node *term(struct ps *ps)
{
    struct fv_pq_node *l = unary(ps);
    while (l && (peek(ps, '*') || peek(ps, '/'))) {
        size_t at = ps->p;
        char op = ps->s[ps->p++];
        struct fv_pq_node *r = unary(ps);
        if (r == NULL) {
            fv_pq_free(l);
            return NULL;
        }
        l = binary(ps, l, op, at, r);
    }
    return l;
}

static struct fv_pq_node *expr(struct ps *ps)
{
    if (++ps->depth > MAX_DEPTH) {
        fail(ps, ps->p, "expression nested too deeply");
        return NULL;
    }
    struct fv_pq_node *l = term(ps);
    while (l && (peek(ps, '+') || peek(ps, '-'))) {
        size_t at = ps->p;
        char op = ps->s[ps->p++];
        struct fv_pq_node *r = term(ps);
        if (r == NULL) {
            fv_pq_free(l);
            return NULL;
        }
        l = binary(ps, l, op, at, r);
    }
    ps->depth--;
    return l;
}

int fv_pq_parse(const char *text, struct fv_pq_node **out, size_t *errpos, char *err, size_t errlen)
{
    struct ps ps = {.s = text, .err = err, .errlen = errlen};
    *out = NULL;
    if (errlen) err[0] = '\0';
    struct fv_pq_node *n = expr(&ps);
    if (n && !ps.failed) {
        skip_ws(&ps);
        if (ps.s[ps.p] != '\0')
            fail(&ps, ps.p, "unexpected \"%c\" after the expression", ps.s[ps.p]);
    }
    if (n && n->kind == FV_PQ_SEL && n->range_ms && !ps.failed)
        fail(&ps, 0,
             "a range vector is not a query result here; apply a function such as "
             "rate() or avg_over_time()");
    if (ps.failed || n == NULL) {
        fv_pq_free(n);
        if (!ps.failed) {
            ps.failed = FV_EINVAL;
            snprintf(err, errlen, "parse error");
        }
        *errpos = ps.errpos;
        return ps.failed;
    }
    *out = n;
    return FV_OK;
}

static int match_one(const struct fv_pq_matcher *m, const char *v)
{
    switch (m->op) {
    case FV_PQ_EQ:
        return strcmp(m->value, v) == 0;
    case FV_PQ_NE:
        return strcmp(m->value, v) != 0;
    case FV_PQ_RE:
        return regexec(&m->re, v, 0, NULL, 0) == 0;
    case FV_PQ_NRE:
        return regexec(&m->re, v, 0, NULL, 0) != 0;
    }
    return 0;
}

int fv_pq_matches(const struct fv_pq_node *sel, const char *signal, const char *device)
{
    for (size_t i = 0; i < sel->nmatch; i++) {
        const char *v = sel->match[i].label == FV_PQ_L_SIGNAL ? signal : device;
        if (v && !match_one(&sel->match[i], v)) return 0;
    }
    return 1;
}

const char *fv_pq_eq_value(const struct fv_pq_node *sel, enum fv_pq_label l)
{
    for (size_t i = 0; i < sel->nmatch; i++)
        if (sel->match[i].label == l && sel->match[i].op == FV_PQ_EQ) return sel->match[i].value;
    return NULL;
}
