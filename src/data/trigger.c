/*
 * trigger.c - the trigger language (trigger.h): a recursive-descent parser that checks types
 * and names and emits postfix code for a small stack machine, and the evaluator.
 *
 * Code: each instruction pushes one value or pops its operands and pushes one result, so
 * the stack never holds more values than there are instructions. Values are "none" (no
 * value yet), numbers or strings; conditions are the numbers 1 and 0. Every instruction
 * runs at every step (T5), which is what keeps the `for` clocks and edge functions right.
 *
 * Threads: see trigger.h (no global state; a state is one thread's at a time).
 */
#include "data/trigger.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "wire/signals.h"

enum op {
    OP_NUM, /* push num */
    OP_STR, /* push strs[a] */
    OP_SIG, /* push slot a's value */
    OP_LT,  /* pop b, a; push a < b ... */
    OP_LE,
    OP_GT,
    OP_GE,
    OP_EQ,
    OP_NE,
    OP_AND, /* pop b, a; push truth(a) && truth(b) */
    OP_OR,
    OP_NOT,
    OP_CHANGED, /* push changed(slot a) */
    OP_RISES,   /* push rises_above(slot a, num) */
    OP_FALLS,   /* push falls_below(slot a, num) */
    OP_FOR,     /* pop c; clock a: push whether c held for num ms */
};

/* Static types, for the checks at compile time. */
enum ty { TY_NUM, TY_STR, TY_BOOL, TY_ANY };

struct instr {
    uint8_t op;
    int32_t a;
    double num;
};

struct fv_trigger {
    struct instr code[FV_TRIGGER_MAX_OPS];
    size_t ncode;
    char sig[FV_TRIGGER_MAX_SIGNALS][FV_TRIGGER_MAX_NAME + 1];
    size_t nsig;
    char (*strs)[FV_TRIGGER_MAX_NAME + 1];
    size_t nstrs;
    size_t nfor;
};

enum tk {
    TK_END,
    TK_NUM,
    TK_STR,
    TK_IDENT,
    TK_LP,
    TK_RP,
    TK_COMMA,
    TK_MINUS,
    TK_CMP,
    TK_AND,
    TK_OR,
    TK_NOT
};

struct tok {
    enum tk kind;
    size_t col; /* 1-based */
    double num;
    char unit[4]; /* letters right after a number ("s", "ms", "m"), "" if none */
    int unit_bad; /* letters that are no unit, or too many */
    enum op cmp;
    char text[FV_TRIGGER_MAX_NAME + 1];
};

struct parser {
    const char *s;
    size_t pos, depth;
    struct tok tk;
    struct fv_trigger *t;
    fv_trigger_known_fn known;
    void *arg;
    char *err;
    size_t errlen;
    int rc; /* FV_OK until the first error */
};

static int fail(struct parser *p, size_t col, const char *fmt, const char *what)
{
    if (p->rc == FV_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, fmt, what ? what : "");
        fv_seterr(p->err, p->errlen, "column %zu: %s", col, msg);
        p->rc = FV_EINVAL;
    }
    return p->rc;
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads the token at p->pos into p->tk. */
static int lex(struct parser *p)
{
    const char *s = p->s;
    while (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\n' || s[p->pos] == '\r')
        p->pos++;
    struct tok *t = &p->tk;
    memset(t, 0, sizeof *t);
    t->col = p->pos + 1;
    char c = s[p->pos];
    if (c == '\0') {
        t->kind = TK_END;
        return FV_OK;
    }
    if (is_digit(c) || (c == '.' && is_digit(s[p->pos + 1]))) {
        char *end;
        t->num = strtod(s + p->pos, &end);
        size_t len = (size_t)(end - (s + p->pos));
        /* strtod also reads hex, inf and exponents: accept only [0-9.]+([eE][+-]?[0-9]+)? */
        for (size_t i = 0; i < len; i++) {
            char d = s[p->pos + i];
            if (!is_digit(d) && d != '.' && d != 'e' && d != 'E' && d != '+' && d != '-')
                return fail(p, t->col, "malformed number", NULL);
        }
        if (!isfinite(t->num)) return fail(p, t->col, "number out of range", NULL);
        p->pos += len;
        size_t u = 0;
        while (is_alpha(s[p->pos]) || is_digit(s[p->pos])) {
            if (u < sizeof t->unit - 1)
                t->unit[u++] = s[p->pos];
            else
                t->unit_bad = 1;
            p->pos++;
        }
        t->kind = TK_NUM;
        return FV_OK;
    }
    if (c == '"' || c == '\'') {
        size_t i = p->pos + 1, n = 0;
        while (s[i] != '\0' && s[i] != c) {
            if (n >= FV_TRIGGER_MAX_NAME)
                return fail(p, t->col, "string longer than 63 bytes", NULL);
            t->text[n++] = s[i++];
        }
        if (s[i] != c) return fail(p, t->col, "unterminated string", NULL);
        p->pos = i + 1;
        t->kind = TK_STR;
        return FV_OK;
    }
    if (is_alpha(c)) {
        size_t n = 0;
        while (is_alpha(s[p->pos]) || is_digit(s[p->pos]) || s[p->pos] == '.') {
            if (n >= FV_TRIGGER_MAX_NAME) return fail(p, t->col, "name longer than 63 bytes", NULL);
            t->text[n++] = s[p->pos++];
        }
        t->kind = strcmp(t->text, "and") == 0   ? TK_AND
                  : strcmp(t->text, "or") == 0  ? TK_OR
                  : strcmp(t->text, "not") == 0 ? TK_NOT
                                                : TK_IDENT;
        return FV_OK;
    }
    char d = s[p->pos + 1];
    size_t adv = 1;
    switch (c) {
    case '(':
        t->kind = TK_LP;
        break;
    case ')':
        t->kind = TK_RP;
        break;
    case ',':
        t->kind = TK_COMMA;
        break;
    case '-':
        t->kind = TK_MINUS;
        break;
    case '<':
    case '>':
        t->kind = TK_CMP;
        t->cmp = c == '<' ? (d == '=' ? OP_LE : OP_LT) : (d == '=' ? OP_GE : OP_GT);
        adv = d == '=' ? 2 : 1;
        break;
    case '=':
    case '!':
        if (d == '=') {
            t->kind = TK_CMP;
            t->cmp = c == '=' ? OP_EQ : OP_NE;
            adv = 2;
        } else if (c == '!') {
            t->kind = TK_NOT;
        } else {
            return fail(p, t->col, "'=' is not an operator: use '=='", NULL);
        }
        break;
    case '&':
    case '|':
        if (d != c)
            return fail(p, t->col, c == '&' ? "use '&&' or 'and'" : "use '||' or 'or'", NULL);
        t->kind = c == '&' ? TK_AND : TK_OR;
        adv = 2;
        break;
    default: {
        char ch[8];
        snprintf(ch, sizeof ch,
                 (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? "%c" : "\\x%02x",
                 (unsigned char)c);
        return fail(p, t->col, "unexpected character '%s'", ch);
    }
    }
    p->pos += adv;
    return FV_OK;
}

static int emit(struct parser *p, size_t col, enum op op, int32_t a, double num)
{
    if (p->t->ncode >= FV_TRIGGER_MAX_OPS)
        return fail(p, col, "the trigger is too large (more than 256 operations)", NULL);
    p->t->code[p->t->ncode++] = (struct instr){.op = (uint8_t)op, .a = a, .num = num};
    return FV_OK;
}

static int slot_of(const struct fv_trigger *t, const char *name)
{
    for (size_t i = 0; i < t->nsig; i++)
        if (strcmp(t->sig[i], name) == 0) return (int)i;
    return -1;
}

/* The slot of the signal named by the current token (checked and added). */
static int signal_slot(struct parser *p, const struct tok *tk)
{
    if (p->known && !p->known(p->arg, tk->text)) {
        fail(p, tk->col, "unknown signal '%s'", tk->text);
        return -1;
    }
    int k = slot_of(p->t, tk->text);
    if (k >= 0) return k;
    if (p->t->nsig >= FV_TRIGGER_MAX_SIGNALS) {
        fail(p, tk->col, "too many signals (at most 32)", NULL);
        return -1;
    }
    snprintf(p->t->sig[p->t->nsig], sizeof p->t->sig[0], "%s", tk->text);
    return (int)p->t->nsig++;
}

static int expect(struct parser *p, enum tk kind, const char *what)
{
    if (p->tk.kind != kind) return fail(p, p->tk.col, "expected %s", what);
    return lex(p);
}

static int parse_or(struct parser *p, enum ty *ty);

/* A number literal, with an optional '-': into *v. */
static int number_arg(struct parser *p, double *v)
{
    int neg = p->tk.kind == TK_MINUS;
    if (neg && lex(p)) return p->rc;
    if (p->tk.kind != TK_NUM || p->tk.unit[0] || p->tk.unit_bad)
        return fail(p, p->tk.col, "expected a number", NULL);
    *v = neg ? -p->tk.num : p->tk.num;
    return lex(p);
}

/* changed(x), rises_above(x, v), falls_below(x, v); the name is in tk. */
static int parse_call(struct parser *p, const struct tok *name, enum ty *ty)
{
    enum op op = strcmp(name->text, "changed") == 0       ? OP_CHANGED
                 : strcmp(name->text, "rises_above") == 0 ? OP_RISES
                 : strcmp(name->text, "falls_below") == 0 ? OP_FALLS
                                                          : OP_NUM;
    if (op == OP_NUM)
        return fail(p, name->col, "unknown function '%s' (changed, rises_above, falls_below)",
                    name->text);
    if (lex(p)) return p->rc; /* past '(' */
    if (p->tk.kind != TK_IDENT) return fail(p, p->tk.col, "%s() takes a signal first", name->text);
    struct tok sig = p->tk;
    int slot = signal_slot(p, &sig);
    if (slot < 0 || lex(p)) return p->rc;
    double v = 0;
    if (op != OP_CHANGED) {
        if (p->tk.kind != TK_COMMA)
            return fail(p, p->tk.col, "expected ',' and a number after the signal", NULL);
        if (lex(p) || number_arg(p, &v)) return p->rc;
    }
    if (expect(p, TK_RP, "')'")) return p->rc;
    *ty = TY_BOOL;
    return emit(p, name->col, op, slot, v);
}

static int parse_primary(struct parser *p, enum ty *ty)
{
    struct tok tk = p->tk;
    switch (tk.kind) {
    case TK_NUM:
    case TK_MINUS: {
        if (tk.kind == TK_NUM && (tk.unit[0] || tk.unit_bad))
            return fail(p, tk.col,
                        "unexpected letters after a number (a duration goes after 'for')", NULL);
        double v = 0; /* set by number_arg when it succeeds (-O3 cannot tell) */
        if (number_arg(p, &v)) return p->rc;
        *ty = TY_NUM;
        return emit(p, tk.col, OP_NUM, 0, v);
    }
    case TK_STR: {
        struct fv_trigger *t = p->t;
        if (t->nstrs >= FV_TRIGGER_MAX_OPS) return fail(p, tk.col, "too many strings", NULL);
        if (t->strs == NULL) {
            t->strs = calloc(FV_TRIGGER_MAX_OPS, sizeof *t->strs);
            if (t->strs == NULL) return p->rc = FV_ENOMEM;
        }
        snprintf(t->strs[t->nstrs], sizeof t->strs[0], "%s", tk.text);
        *ty = TY_STR;
        if (emit(p, tk.col, OP_STR, (int32_t)t->nstrs++, 0)) return p->rc;
        return lex(p);
    }
    case TK_LP: {
        if (++p->depth > FV_TRIGGER_MAX_DEPTH)
            return fail(p, tk.col, "nested deeper than 32", NULL);
        if (lex(p) || parse_or(p, ty)) return p->rc;
        p->depth--;
        if (p->tk.kind != TK_RP) return fail(p, p->tk.col, "expected ')'", NULL);
        return lex(p);
    }
    case TK_IDENT:
        if (strcmp(tk.text, "true") == 0 || strcmp(tk.text, "false") == 0) {
            *ty = TY_BOOL;
            if (emit(p, tk.col, OP_NUM, 0, tk.text[0] == 't')) return p->rc;
            return lex(p);
        }
        if (lex(p)) return p->rc;
        if (p->tk.kind == TK_LP) return parse_call(p, &tk, ty);
        if (strcmp(tk.text, "for") == 0)
            return fail(p, tk.col, "'for' follows a condition, as in 'VehicleSpeed > 30 for 2s'",
                        NULL);
        int slot = signal_slot(p, &tk);
        if (slot < 0) return p->rc;
        *ty = TY_ANY;
        return emit(p, tk.col, OP_SIG, slot, 0);
    case TK_END:
        return fail(p, tk.col,
                    p->pos == 0 ? "empty trigger" : "expected a signal, a number, a string or '('",
                    NULL);
    default:
        return fail(p, tk.col, "expected a signal, a number, a string or '('", NULL);
    }
}

static int parse_cmp(struct parser *p, enum ty *ty)
{
    if (parse_primary(p, ty)) return p->rc;
    if (p->tk.kind != TK_CMP) return FV_OK;
    struct tok op = p->tk;
    enum ty rt;
    if (lex(p)) return p->rc;
    if (parse_primary(p, &rt)) return p->rc;
    int ordered = op.cmp == OP_LT || op.cmp == OP_LE || op.cmp == OP_GT || op.cmp == OP_GE;
    if (ordered && (*ty == TY_STR || rt == TY_STR))
        return fail(p, op.col, "'<', '<=', '>', '>=' compare numbers, not strings", NULL);
    if ((*ty == TY_STR && (rt == TY_NUM || rt == TY_BOOL)) ||
        (rt == TY_STR && (*ty == TY_NUM || *ty == TY_BOOL)))
        return fail(p, op.col, "compares a number with a string", NULL);
    if (p->tk.kind == TK_CMP)
        return fail(p, p->tk.col, "comparisons do not chain: join them with 'and'", NULL);
    *ty = TY_BOOL;
    return emit(p, op.col, op.cmp, 0, 0);
}

static int parse_unary(struct parser *p, enum ty *ty)
{
    if (p->tk.kind != TK_NOT) return parse_cmp(p, ty);
    size_t col = p->tk.col;
    if (++p->depth > FV_TRIGGER_MAX_DEPTH) return fail(p, col, "nested deeper than 32", NULL);
    if (lex(p) || parse_unary(p, ty)) return p->rc;
    p->depth--;
    if (*ty == TY_STR || *ty == TY_NUM) return fail(p, col, "'not' takes a condition", NULL);
    *ty = TY_BOOL;
    return emit(p, col, OP_NOT, 0, 0);
}

static int parse_for(struct parser *p, enum ty *ty)
{
    if (parse_unary(p, ty)) return p->rc;
    if (p->tk.kind != TK_IDENT || strcmp(p->tk.text, "for") != 0) return FV_OK;
    size_t col = p->tk.col;
    if (lex(p)) return p->rc;
    const struct tok *d = &p->tk;
    double mul = strcmp(d->unit, "ms") == 0  ? 1
                 : strcmp(d->unit, "s") == 0 ? 1000
                 : strcmp(d->unit, "m") == 0 ? 60000
                                             : 0;
    if (d->kind != TK_NUM || d->unit_bad || mul == 0)
        return fail(p, d->col, "expected a duration like 2s, 500ms or 1m after 'for'", NULL);
    double ms = d->num * mul;
    if (!(ms >= 0) || ms > FV_TRIGGER_MAX_FOR_MS)
        return fail(p, d->col, "duration longer than 1 hour", NULL);
    if (*ty == TY_STR || *ty == TY_NUM) return fail(p, col, "'for' follows a condition", NULL);
    if (emit(p, col, OP_FOR, (int32_t)p->t->nfor++, floor(ms))) return p->rc;
    *ty = TY_BOOL;
    if (lex(p)) return p->rc;
    if (p->tk.kind == TK_IDENT && strcmp(p->tk.text, "for") == 0)
        return fail(p, p->tk.col, "one 'for' per condition: use parentheses", NULL);
    return FV_OK;
}

static int parse_and(struct parser *p, enum ty *ty)
{
    if (parse_for(p, ty)) return p->rc;
    while (p->tk.kind == TK_AND || p->tk.kind == TK_OR) {
        if (p->tk.kind == TK_OR) return FV_OK;
        size_t col = p->tk.col;
        enum ty rt;
        if (lex(p) || parse_for(p, &rt)) return p->rc;
        if (*ty == TY_STR || rt == TY_STR || *ty == TY_NUM || rt == TY_NUM)
            return fail(p, col, "'and' joins conditions, not values", NULL);
        if (emit(p, col, OP_AND, 0, 0)) return p->rc;
        *ty = TY_BOOL;
    }
    return FV_OK;
}

static int parse_or(struct parser *p, enum ty *ty)
{
    if (parse_and(p, ty)) return p->rc;
    while (p->tk.kind == TK_OR) {
        size_t col = p->tk.col;
        enum ty rt;
        if (lex(p) || parse_and(p, &rt)) return p->rc;
        if (*ty == TY_STR || rt == TY_STR || *ty == TY_NUM || rt == TY_NUM)
            return fail(p, col, "'or' joins conditions, not values", NULL);
        if (emit(p, col, OP_OR, 0, 0)) return p->rc;
        *ty = TY_BOOL;
    }
    return FV_OK;
}

int fv_trigger_known_signal(void *arg, const char *name)
{
    (void)arg;
    if (strncmp(name, "alert.", 6) == 0) return name[6] != '\0' && strchr(name + 6, '.') == NULL;
    return !is_digit(name[0]) && strchr(name, '.') == NULL && fv_signal_lookup(name) >= 0;
}

int fv_trigger_compile(const char *text, fv_trigger_known_fn known, void *arg,
                       struct fv_trigger **out, char *err, size_t errlen)
{
    *out = NULL;
    if (text == NULL) text = "";
    size_t len = strnlen(text, FV_TRIGGER_MAX_LEN + 1);
    if (len > FV_TRIGGER_MAX_LEN) {
        fv_seterr(err, errlen, "column %d: the trigger is longer than %d bytes",
                  FV_TRIGGER_MAX_LEN + 1, FV_TRIGGER_MAX_LEN);
        return FV_EINVAL;
    }
    struct fv_trigger *t = calloc(1, sizeof *t);
    if (t == NULL) return FV_ENOMEM;
    struct parser p = {
        .s = text, .t = t, .known = known, .arg = arg, .err = err, .errlen = errlen, .rc = FV_OK};
    enum ty ty;
    if (lex(&p) == FV_OK && parse_or(&p, &ty) == FV_OK && p.tk.kind != TK_END)
        fail(&p, p.tk.col,
             p.tk.kind == TK_RP ? "unexpected ')' (no '(' to close)"
                                : "expected 'and', 'or' or the end of the trigger",
             NULL);
    if (p.rc == FV_OK && (ty == TY_STR || ty == TY_NUM))
        fail(&p, 1, "the trigger is a value, not a condition (compare it: x > 1)", NULL);
    if (p.rc != FV_OK) {
        if (p.rc == FV_ENOMEM) fv_seterr(err, errlen, "out of memory");
        fv_trigger_free(t);
        return p.rc;
    }
    *out = t;
    return FV_OK;
}

void fv_trigger_free(struct fv_trigger *t)
{
    if (t == NULL) return;
    free(t->strs);
    free(t);
}

size_t fv_trigger_nsignals(const struct fv_trigger *t)
{
    return t->nsig;
}

const char *fv_trigger_signal(const struct fv_trigger *t, size_t slot)
{
    return slot < t->nsig ? t->sig[slot] : NULL;
}

int fv_trigger_slot(const struct fv_trigger *t, const char *name)
{
    return slot_of(t, name);
}

/* ---- evaluation ----------------------------------------------------------------------- */

enum vt { V_NONE, V_NUM, V_STR };

struct val {
    uint8_t type;
    double num;
    char str[FV_TRIGGER_MAX_NAME + 1];
};

struct slot {
    struct val cur, prev; /* prev: the value at the previous step */
    int fresh;            /* set since the previous step */
};

struct sval {
    uint8_t type;
    double num;
    const char *str;
};

struct fv_trigger_state {
    const struct fv_trigger *t;
    struct slot *slots;
    int64_t *since; /* per `for`: when its condition became true, -1 while false */
    struct sval *stack;
    int level;
};

int fv_trigger_state_new(const struct fv_trigger *t, struct fv_trigger_state **out)
{
    struct fv_trigger_state *s = calloc(1, sizeof *s);
    if (s == NULL) return FV_ENOMEM;
    s->t = t;
    s->slots = calloc(t->nsig ? t->nsig : 1, sizeof *s->slots);
    s->since = calloc(t->nfor ? t->nfor : 1, sizeof *s->since);
    s->stack = calloc(t->ncode ? t->ncode : 1, sizeof *s->stack);
    if (s->slots == NULL || s->since == NULL || s->stack == NULL) {
        fv_trigger_state_free(s);
        return FV_ENOMEM;
    }
    for (size_t i = 0; i < t->nfor; i++)
        s->since[i] = -1;
    *out = s;
    return FV_OK;
}

void fv_trigger_state_free(struct fv_trigger_state *s)
{
    if (s == NULL) return;
    free(s->slots);
    free(s->since);
    free(s->stack);
    free(s);
}

static struct slot *begin_set(struct fv_trigger_state *s, int slot)
{
    if (s == NULL || slot < 0 || (size_t)slot >= s->t->nsig) return NULL;
    struct slot *x = &s->slots[slot];
    if (!x->fresh) x->prev = x->cur;
    x->fresh = 1;
    return x;
}

void fv_trigger_set_num(struct fv_trigger_state *s, int slot, double v)
{
    struct slot *x = begin_set(s, slot);
    if (x == NULL) return;
    x->cur.type = isnan(v) ? V_NONE : V_NUM;
    x->cur.num = v;
}

void fv_trigger_set_str(struct fv_trigger_state *s, int slot, const char *v)
{
    struct slot *x = begin_set(s, slot);
    if (x == NULL) return;
    x->cur.type = v ? V_STR : V_NONE;
    snprintf(x->cur.str, sizeof x->cur.str, "%s", v ? v : "");
}

void fv_trigger_set_none(struct fv_trigger_state *s, int slot)
{
    struct slot *x = begin_set(s, slot);
    if (x) x->cur.type = V_NONE;
}

void fv_trigger_set_value(struct fv_trigger_state *s, int slot, const struct fv_value *v)
{
    switch (v ? v->kind : FV_VK_NONE) {
    case FV_VK_INT:
    case FV_VK_ENUM:
        fv_trigger_set_num(s, slot, (double)v->u.i);
        break;
    case FV_VK_BOOL:
        fv_trigger_set_num(s, slot, v->u.i != 0);
        break;
    case FV_VK_DOUBLE:
        fv_trigger_set_num(s, slot, v->u.d);
        break;
    case FV_VK_STRING:
        fv_trigger_set_str(s, slot, v->u.s);
        break;
    default:
        fv_trigger_set_none(s, slot);
        break;
    }
}

static int truth(const struct sval *v)
{
    return v->type == V_NUM ? v->num != 0 : v->type == V_STR ? v->str[0] != '\0' : 0;
}

static int val_differs(const struct val *a, const struct val *b)
{
    if (a->type != b->type) return 1;
    return a->type == V_NUM ? a->num != b->num : a->type == V_STR ? strcmp(a->str, b->str) != 0 : 0;
}

static int compare(enum op op, const struct sval *a, const struct sval *b)
{
    if (a->type == V_NONE || b->type == V_NONE || a->type != b->type) return 0; /* T1 */
    int c = a->type == V_NUM ? (a->num < b->num)   ? -1
                               : (a->num > b->num) ? 1
                                                   : 0
                             : strcmp(a->str, b->str);
    switch (op) {
    case OP_LT:
        return c < 0;
    case OP_LE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    case OP_GE:
        return c >= 0;
    case OP_EQ:
        return c == 0;
    default:
        return c != 0;
    }
}

int fv_trigger_step(struct fv_trigger_state *s, int64_t t_ms, int *level)
{
    const struct fv_trigger *t = s->t;
    size_t sp = 0;
    for (size_t i = 0; i < t->ncode; i++) {
        const struct instr *in = &t->code[i];
        struct sval r = {V_NUM, 0, NULL};
        switch ((enum op)in->op) {
        case OP_NUM:
            r.num = in->num;
            break;
        case OP_STR:
            r.type = V_STR;
            r.str = t->strs[in->a];
            break;
        case OP_SIG: {
            const struct val *v = &s->slots[in->a].cur;
            r.type = v->type;
            r.num = v->num;
            r.str = v->str;
            break;
        }
        case OP_LT:
        case OP_LE:
        case OP_GT:
        case OP_GE:
        case OP_EQ:
        case OP_NE:
            sp -= 2;
            r.num = compare((enum op)in->op, &s->stack[sp], &s->stack[sp + 1]);
            break;
        case OP_AND:
        case OP_OR: {
            sp -= 2;
            int a = truth(&s->stack[sp]), b = truth(&s->stack[sp + 1]);
            r.num = in->op == OP_AND ? (a && b) : (a || b);
            break;
        }
        case OP_NOT:
            r.num = !truth(&s->stack[--sp]);
            break;
        case OP_CHANGED: {
            const struct slot *x = &s->slots[in->a];
            r.num = x->fresh && x->prev.type != V_NONE && x->cur.type != V_NONE &&
                    val_differs(&x->prev, &x->cur);
            break;
        }
        case OP_RISES:
        case OP_FALLS: {
            const struct slot *x = &s->slots[in->a];
            int both = x->fresh && x->prev.type == V_NUM && x->cur.type == V_NUM;
            r.num = in->op == OP_RISES ? both && x->prev.num <= in->num && x->cur.num > in->num
                                       : both && x->prev.num >= in->num && x->cur.num < in->num;
            break;
        }
        case OP_FOR: {
            int64_t *since = &s->since[in->a];
            if (!truth(&s->stack[--sp])) {
                *since = -1;
            } else {
                if (*since < 0) *since = t_ms;
                r.num = (double)(t_ms - *since) >= in->num;
            }
            break;
        }
        }
        s->stack[sp++] = r;
    }
    for (size_t i = 0; i < t->nsig; i++)
        s->slots[i].fresh = 0;
    int now = sp == 1 && truth(&s->stack[0]);
    int fired = now && !s->level;
    s->level = now;
    if (level) *level = now;
    return fired;
}
