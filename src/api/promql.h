/*
 * promql.h - a parser for the PromQL subset fleetvault serves (docs/prometheus.md).
 *
 * Grammar (whitespace anywhere between tokens):
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := '-' unary | primary
 *   primary := NUMBER | '(' expr ')' | selector | func '(' selector '[' DURATION ']' ')'
 *            | agg [grouping] '(' expr ')' [grouping]
 *   selector:= NAME ['{' matchers '}'] | '{' matchers '}'
 *   matcher := LABEL ('=' | '!=' | '=~' | '!~') STRING      (LABEL: signal, device, __name__)
 *   grouping:= ('by' | 'without') '(' [LABEL (',' LABEL)*] ')'
 *   func    := rate | increase | avg_over_time | min_over_time | max_over_time
 *            | last_over_time | count_over_time
 *   agg     := sum | avg | min | max | count
 * Strings are "..." or '...' with backslash escapes; DURATION is a number and a unit (ms, s,
 * m, h, d, w, y), several may follow each other (1h30m). Regular expressions are POSIX
 * extended (regcomp), anchored at both ends as Prometheus anchors them. A metric NAME is a
 * signal name: `Soc` is `{__name__="Soc"}`, and __name__ and signal match the same label.
 *
 * Pure and reentrant: any thread. A parse error gives the byte offset and a message.
 */
#ifndef FV_API_PROMQL_H
#define FV_API_PROMQL_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

enum fv_pq_kind { FV_PQ_NUM, FV_PQ_SEL, FV_PQ_FUNC, FV_PQ_AGG, FV_PQ_BIN, FV_PQ_NEG };
enum fv_pq_label { FV_PQ_L_SIGNAL, FV_PQ_L_DEVICE };
enum fv_pq_mop { FV_PQ_EQ, FV_PQ_NE, FV_PQ_RE, FV_PQ_NRE };
enum fv_pq_func {
    FV_PQ_RATE,
    FV_PQ_INCREASE,
    FV_PQ_AVG_OT,
    FV_PQ_MIN_OT,
    FV_PQ_MAX_OT,
    FV_PQ_LAST_OT,
    FV_PQ_COUNT_OT
};
enum fv_pq_agg { FV_PQ_SUM, FV_PQ_AVG, FV_PQ_MIN, FV_PQ_MAX, FV_PQ_COUNT };

#define FV_PQ_MAX_MATCHERS 8
#define FV_PQ_VALUE_MAX    128

struct fv_pq_matcher {
    enum fv_pq_label label;
    enum fv_pq_mop op;
    char value[FV_PQ_VALUE_MAX];
    regex_t re; /* compiled for =~ and !~ */
};

struct fv_pq_node {
    enum fv_pq_kind kind;
    double num; /* FV_PQ_NUM */
    /* FV_PQ_SEL */
    size_t nmatch;
    struct fv_pq_matcher match[FV_PQ_MAX_MATCHERS];
    int64_t range_ms; /* 0: an instant selector */
    /* FV_PQ_FUNC (arg: a range selector), FV_PQ_AGG (arg), FV_PQ_NEG (arg) */
    enum fv_pq_func func;
    enum fv_pq_agg agg;
    int without;   /* FV_PQ_AGG: 0 by, 1 without */
    unsigned keep; /* FV_PQ_AGG: the grouping's labels, bits 1 << FV_PQ_L_* */
    struct fv_pq_node *arg;
    /* FV_PQ_BIN */
    char op; /* + - * / */
    struct fv_pq_node *lhs, *rhs;
    /* analysis */
    int scalar; /* the node's value is a scalar (no vector below it) */
};

/* Parses text (NUL-terminated). FV_OK and *out (free with fv_pq_free), or FV_EINVAL with
 * *errpos (byte offset) and err; FV_ENOMEM. Nesting deeper than 64 is an error. */
int fv_pq_parse(const char *text, struct fv_pq_node **out, size_t *errpos, char *err,
                size_t errlen);
void fv_pq_free(struct fv_pq_node *n);

/* Does a selector's matcher set accept this signal name and device id? A NULL one is not
 * checked (its matchers are left out). */
int fv_pq_matches(const struct fv_pq_node *sel, const char *signal, const char *device);
/* Does the selector name exactly one signal (=), and which; or one device? */
const char *fv_pq_eq_value(const struct fv_pq_node *sel, enum fv_pq_label l);

/* A Prometheus duration ("5m", "1h30m", "250ms") in ms; FV_EINVAL if not one. */
int fv_pq_duration(const char *s, size_t len, int64_t *ms);

#endif
