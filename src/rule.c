/*
 * rule: path patterns with named captures, and templates filled from them
 * (see rule.h for the syntax).
 *
 * A pattern compiles to a short list of tokens, literal runs and
 * captures, plus a flag for a final "*". Matching is one pass with no
 * backtracking, because compilation only accepts patterns with one reading
 * of any path: at most one capture per path segment, and never a capture
 * and "*" in the same segment. A capture then takes its whole segment
 * except the literal text that follows it in that segment (a suffix such
 * as ".json"), which must end the segment.
 *
 * Patterns and templates are visible ASCII: a path arrives as received,
 * never decoded, so there is nothing else for them to match. There is no
 * escape for a literal '{', '}' or '*'.
 *
 * Ownership: a compiled pattern owns a copy of its source, which its
 * literal tokens point into. Immutable once compiled: any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule.h"

/* Longest capture name: names are written in the configuration. */
#define RULE_NAME_MAX 32

enum rule_tok_kind {
    RULE_TOK_LIT,
    RULE_TOK_CAP,
};

struct rule_tok {
    enum rule_tok_kind kind;
    const char *p; /* LIT: the bytes, in the pattern's copy */
    size_t len;    /* LIT: their length */
    unsigned cap;  /* CAP: index into names and struct rule_vars */
};

struct rule_pattern {
    char *src;
    struct rule_tok *toks;
    size_t ntoks;
    bool star; /* a final "*" matches any rest */
    unsigned ncaps;
    char names[RULE_CAPTURES_MAX][RULE_NAME_MAX + 1];
};

static bool
rule_visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static bool
rule_name_char(unsigned char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/*
 * Reads the capture name of a '{' at s[at]: on success returns 0 with the
 * name in s[*name_at, *name_at + *name_len) and the '}' at s[*close_at].
 * Returns -1 with a message on an unclosed brace or a malformed name.
 */
static int
rule_read_name(const char *s, size_t at, size_t *name_at, size_t *name_len, size_t *close_at,
               char *err, size_t errlen)
{
    const char *close = strchr(s + at + 1, '}');
    const char *open = strchr(s + at + 1, '{');
    size_t n;

    if (close == NULL || (open != NULL && open < close)) {
        snprintf(err, errlen, "unclosed \"{\" at offset %zu", at);
        return -1;
    }
    n = (size_t)(close - (s + at + 1));
    for (size_t i = 0; i < n; i++) {
        if (!rule_name_char((unsigned char)s[at + 1 + i], i == 0))
            goto bad;
    }
    if (n == 0 || n > RULE_NAME_MAX)
        goto bad;
    *name_at = at + 1;
    *name_len = n;
    *close_at = (size_t)(close - s);
    return 0;

bad:
    snprintf(err, errlen,
             "invalid capture name \"%.*s\" (1 to %d letters, digits and \"_\", not starting "
             "with a digit)",
             (int)(n > 64 ? 64 : n), s + at + 1, RULE_NAME_MAX);
    return -1;
}

/* The index of the capture named s[0..len) in p, or -1. */
static int
rule_find(const struct rule_pattern *p, const char *s, size_t len)
{
    for (unsigned i = 0; i < p->ncaps; i++) {
        if (strlen(p->names[i]) == len && memcmp(p->names[i], s, len) == 0)
            return (int)i;
    }
    return -1;
}

static void
rule_add_lit(struct rule_pattern *p, const char *s, size_t len)
{
    if (len == 0)
        return;
    p->toks[p->ntoks].kind = RULE_TOK_LIT;
    p->toks[p->ntoks].p = s;
    p->toks[p->ntoks].len = len;
    p->ntoks++;
}

struct rule_pattern *
rule_compile(const char *pattern, char *err, size_t errlen)
{
    struct rule_pattern *p = NULL;
    size_t len, lit = 0, i = 0;
    bool seg_cap = false; /* the current path segment has a capture */

    if (pattern == NULL || pattern[0] != '/') {
        snprintf(err, errlen, "must start with \"/\"");
        return NULL;
    }
    len = strlen(pattern);
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto oom;
    p->src = strdup(pattern);
    /* Every token but the first starts at a '{' or ends at a '}'. */
    p->toks = calloc(len + 1, sizeof(*p->toks));
    if (p->src == NULL || p->toks == NULL)
        goto oom;

    while (i < len) {
        unsigned char c = (unsigned char)p->src[i];
        size_t name_at, name_len, close_at;

        if (c == '{') {
            if (rule_read_name(p->src, i, &name_at, &name_len, &close_at, err, errlen) < 0)
                goto fail;
            if (rule_find(p, p->src + name_at, name_len) >= 0) {
                snprintf(err, errlen, "duplicate capture name \"%.*s\"", (int)name_len,
                         p->src + name_at);
                goto fail;
            }
            if (p->ncaps == RULE_CAPTURES_MAX) {
                snprintf(err, errlen, "too many captures (at most %d)", RULE_CAPTURES_MAX);
                goto fail;
            }
            if (seg_cap) {
                snprintf(err, errlen, "two captures in one path segment at offset %zu", i);
                goto fail;
            }
            rule_add_lit(p, p->src + lit, i - lit);
            memcpy(p->names[p->ncaps], p->src + name_at, name_len);
            p->toks[p->ntoks].kind = RULE_TOK_CAP;
            p->toks[p->ntoks].cap = p->ncaps++;
            p->ntoks++;
            seg_cap = true;
            i = lit = close_at + 1;
            continue;
        }
        if (c == '}') {
            snprintf(err, errlen, "\"}\" without \"{\" at offset %zu", i);
            goto fail;
        }
        if (c == '*') {
            if (i + 1 != len) {
                snprintf(err, errlen, "\"*\" is only allowed at the end, found at offset %zu", i);
                goto fail;
            }
            if (seg_cap) {
                snprintf(err, errlen, "a capture and \"*\" in one path segment");
                goto fail;
            }
            rule_add_lit(p, p->src + lit, i - lit);
            lit = i + 1;
            p->star = true;
            break;
        }
        if (c == '?' || c == '#') {
            snprintf(err, errlen, "\"%c\" at offset %zu: a pattern matches the path only", c, i);
            goto fail;
        }
        if (!rule_visible(c)) {
            snprintf(err, errlen, "invalid byte 0x%02x at offset %zu (visible ASCII only)", c, i);
            goto fail;
        }
        if (c == '/')
            seg_cap = false;
        i++;
    }
    rule_add_lit(p, p->src + lit, len - lit);
    return p;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    rule_free(&p);
    return NULL;
}

void
rule_free(struct rule_pattern **pp)
{
    struct rule_pattern *p;

    if (pp == NULL || *pp == NULL)
        return;
    p = *pp;
    *pp = NULL;
    free(p->toks);
    free(p->src);
    free(p);
}

bool
rule_match(const struct rule_pattern *p, const char *path, size_t len, struct rule_vars *vars)
{
    struct rule_vars scratch;
    size_t pos = 0;

    if (vars == NULL)
        vars = &scratch;
    memset(vars, 0, sizeof(*vars));
    for (size_t t = 0; t < p->ntoks; t++) {
        const struct rule_tok *k = &p->toks[t];
        const char *slash;
        size_t seg_end, suffix = 0;

        if (k->kind == RULE_TOK_LIT) {
            if (len - pos < k->len || memcmp(path + pos, k->p, k->len) != 0)
                return false;
            pos += k->len;
            continue;
        }
        /* A capture: the rest of this segment, less the literal that
         * follows it up to the next '/' (compilation put no capture or
         * "*" in between). */
        slash = memchr(path + pos, '/', len - pos);
        seg_end = slash != NULL ? (size_t)(slash - path) : len;
        if (t + 1 < p->ntoks) {
            const struct rule_tok *next = &p->toks[t + 1];
            const char *ns = memchr(next->p, '/', next->len);
            suffix = ns != NULL ? (size_t)(ns - next->p) : next->len;
        }
        if (seg_end - pos <= suffix)
            return false; /* nothing left to capture: a segment is never empty */
        vars->p[k->cap] = path + pos;
        vars->n[k->cap] = seg_end - suffix - pos;
        pos = seg_end - suffix;
    }
    return p->star || pos == len;
}

/*
 * Walks a template: calls out for each literal run and each capture (a
 * capture index, or -1 for a literal). Returns 0, or -1 with a message on
 * a malformed brace or a name that p does not capture.
 */
typedef int (*rule_emit_fn)(void *arg, int cap, const char *s, size_t len);

static int
rule_walk_template(const struct rule_pattern *p, const char *tmpl, rule_emit_fn emit, void *arg,
                   char *err, size_t errlen)
{
    size_t i = 0, lit = 0, len = strlen(tmpl);

    while (i < len) {
        size_t name_at, name_len, close_at;
        int cap;

        if (tmpl[i] == '}') {
            snprintf(err, errlen, "\"}\" without \"{\" at offset %zu", i);
            return -1;
        }
        if (tmpl[i] != '{') {
            i++;
            continue;
        }
        if (rule_read_name(tmpl, i, &name_at, &name_len, &close_at, err, errlen) < 0)
            return -1;
        cap = rule_find(p, tmpl + name_at, name_len);
        if (cap < 0) {
            size_t off = 0;
            int n = snprintf(err, errlen, "unknown capture \"%.*s\" (the pattern has ",
                             (int)name_len, tmpl + name_at);
            if (n > 0)
                off = (size_t)n;
            for (unsigned c = 0; c < p->ncaps && off < errlen; c++) {
                n = snprintf(err + off, errlen - off, "%s%s", c ? ", " : "", p->names[c]);
                off += n > 0 ? (size_t)n : 0;
            }
            if (off < errlen)
                snprintf(err + off, errlen - off, "%s)", p->ncaps ? "" : "none");
            return -1;
        }
        if (emit(arg, -1, tmpl + lit, i - lit) < 0 || emit(arg, cap, NULL, 0) < 0)
            return -1;
        i = lit = close_at + 1;
    }
    return emit(arg, -1, tmpl + lit, len - lit);
}

static int
rule_emit_nothing(void *arg, int cap, const char *s, size_t len)
{
    return 0;
}

int
rule_check_template(const struct rule_pattern *p, const char *tmpl, char *err, size_t errlen)
{
    return rule_walk_template(p, tmpl, rule_emit_nothing, NULL, err, errlen);
}

struct rule_out {
    const struct rule_vars *vars;
    char *buf;
    size_t cap, len;
};

static int
rule_emit_copy(void *arg, int cap, const char *s, size_t len)
{
    struct rule_out *o = arg;

    if (cap >= 0) {
        s = o->vars->p[cap];
        len = o->vars->n[cap];
    }
    if (len >= o->cap - o->len) /* keep room for the NUL */
        return -1;
    if (len > 0)
        memcpy(o->buf + o->len, s, len);
    o->len += len;
    return 0;
}

ssize_t
rule_expand(const struct rule_pattern *p, const struct rule_vars *vars, const char *tmpl, char *buf,
            size_t cap)
{
    struct rule_out o = {.vars = vars, .buf = buf, .cap = cap};
    char err[1];

    if (cap == 0 || rule_walk_template(p, tmpl, rule_emit_copy, &o, err, sizeof(err)) < 0)
        return -1;
    buf[o.len] = '\0';
    return (ssize_t)o.len;
}
