/*
 * http_rules: path and query globs, and the decision for one HTTP request on
 * an inspected endpoint (policy.h).  Pure: no allocation besides freeing what
 * the loader built, no I/O.
 *
 * Both glob levels use the classic wildcard walk that remembers only the last
 * star: a later star can absorb whatever an earlier one would have, so that
 * one backtracking point suffices and the cost is O(pattern * text), never
 * exponential, whatever a hostile policy or request holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy-int.h"

void http_rule_clear(struct http_rule *r)
{
    free(r->path);
    for (size_t i = 0; i < r->n_query; i++) {
        struct http_query_match *q = &r->query[i];
        for (size_t j = 0; j < q->n_globs; j++)
            free(q->globs[j]);
        free(q->globs);
        free(q->name);
    }
    free(r->query);
    memset(r, 0, sizeof(*r));
}

struct http_config *http_config_free(struct http_config *c)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n_rules; i++)
        http_rule_clear(&c->rules[i]);
    for (size_t i = 0; i < c->n_deny; i++)
        http_rule_clear(&c->deny[i]);
    free(c->rules);
    free(c->deny);
    free(c);
    return NULL;
}

bool policy_endpoint_inspect(const struct policy_endpoint *ep)
{
    return ep && ep->http;
}

enum policy_tls policy_endpoint_tls(const struct policy_endpoint *ep)
{
    return ep ? ep->tls : POLICY_TLS_AUTO;
}

bool policy_endpoint_allow_encoded_slash(const struct policy_endpoint *ep)
{
    return ep && ep->http && ep->http->allow_encoded_slash;
}

/* ---- globs ---- */

const char *http_glob_parse(const char *s, size_t len, char *out, size_t outlen)
{
    size_t olen;

    if (len == 0 || s[0] != '/')
        return "must start with `/`";
    if (len > POLICY_MAX_GLOB_LEN)
        return "is longer than 1024 characters";
    if (memchr(s, '?', len))
        return "must not contain `?` (match parameters with `query`)";
    switch (http_path_normalize(s, len, HTTP_PATH_F_ENCODED_SLASH | HTTP_PATH_F_GLOB, out, outlen,
                                &olen)) {
    case POLICY_HTTP_OK:
        break;
    case POLICY_HTTP_E_BAD_CHAR:
        return "must not contain spaces, control characters or `#` (percent-encode them)";
    case POLICY_HTTP_E_BAD_PERCENT:
        return "has a `%` that is not followed by two hex digits";
    case POLICY_HTTP_E_NUL:
    case POLICY_HTTP_E_CONTROL:
        return "must not contain encoded control characters";
    case POLICY_HTTP_E_DOT_SEGMENT:
    case POLICY_HTTP_E_AMBIGUOUS_DOTS:
        return "must not contain `.` or `..` segments";
    case POLICY_HTTP_E_EMPTY_SEGMENT:
        return "must not contain an empty segment (`//`)";
    default:
        return "is not a valid path";
    }
    /* "**" only as a whole segment: "a**" would read as two stars in one. */
    for (size_t i = 0; i + 1 < olen; i++) {
        if (out[i] != '*' || out[i + 1] != '*')
            continue;
        bool starts = out[i - 1] == '/'; /* out[0] is '/' */
        bool ends = i + 2 == olen || out[i + 2] == '/';
        if (!starts || !ends)
            return "has `**` that is not a whole segment (`/a/**/b`)";
        i++;
    }
    return NULL;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Does text[0..tlen) match pat[0..plen), where '*' is any run of bytes?
 * fold: ASCII letters match in either case. */
static bool wild_match(const char *pat, size_t plen, const char *text, size_t tlen, bool fold)
{
    size_t p = 0, t = 0, star_p = (size_t)-1, star_t = 0;

    while (t < tlen) {
        if (p < plen && pat[p] == '*') {
            star_p = ++p;
            star_t = t;
        } else if (p < plen &&
                   (pat[p] == text[t] || (fold && ascii_lower(pat[p]) == ascii_lower(text[t])))) {
            p++;
            t++;
        } else if (star_p != (size_t)-1) {
            p = star_p;
            t = ++star_t;
        } else {
            return false;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* A cursor over the non-empty segments of a path, optionally each cut at ';'. */
struct seg_iter {
    const char *s;
    size_t len, pos;
    bool cut_params;
};

/* The next non-empty segment, or false at the end. */
static bool seg_next(struct seg_iter *it, const char **ret, size_t *ret_len)
{
    while (it->pos < it->len) {
        size_t start = it->pos, end = start;
        while (end < it->len && it->s[end] != '/')
            end++;
        it->pos = end < it->len ? end + 1 : end;
        size_t n = end - start;
        if (it->cut_params) {
            const char *semi = memchr(it->s + start, ';', n);
            if (semi)
                n = (size_t)(semi - (it->s + start));
        }
        if (n > 0) {
            *ret = it->s + start;
            *ret_len = n;
            return true;
        }
    }
    return false;
}

static bool is_globstar(const char *seg, size_t n)
{
    return n == 2 && seg[0] == '*' && seg[1] == '*';
}

/*
 * Segment-level wildcard walk: "**" is any run of segments, others match one.
 * fold: ASCII letters in any case; cut: path segments end at their first ';'.
 */
static bool path_match(const char *glob, const char *path, size_t path_len, bool fold, bool cut)
{
    struct seg_iter g = {glob, strlen(glob), 0, false}, p = {path, path_len, 0, cut};
    struct seg_iter star_g = g, star_p = p;
    bool have_star = false;
    const char *gs, *ps;
    size_t gn, pn;

    for (;;) {
        struct seg_iter p_at = p;
        if (!seg_next(&p, &ps, &pn))
            break;
        bool have_g = seg_next(&g, &gs, &gn);
        if (have_g && is_globstar(gs, gn)) {
            /* Try it as zero segments first; remember where to widen it. */
            have_star = true;
            star_g = g;
            star_p = p = p_at;
            continue;
        }
        if (have_g && wild_match(gs, gn, ps, pn, fold))
            continue;
        if (!have_star)
            return false;
        /* Let the last "**" take one more segment, and go on after it. */
        seg_next(&star_p, &ps, &pn);
        g = star_g;
        p = star_p;
    }
    /* The path is used up: what is left of the glob must be "**" only. */
    while (seg_next(&g, &gs, &gn))
        if (!is_globstar(gs, gn))
            return false;
    return true;
}

/* ---- decisions ---- */

static const char *const access_names[HTTP_ACCESS_MAX] = {
    [HTTP_ACCESS_READ_ONLY] = "read-only",
    [HTTP_ACCESS_READ_WRITE] = "read-write",
    [HTTP_ACCESS_FULL] = "full",
};

static bool access_allows(enum http_access a, const char *method)
{
    static const char *const read[] = {"GET", "HEAD", "OPTIONS"};
    static const char *const write[] = {"POST", "PUT", "PATCH"};

    if (a == HTTP_ACCESS_FULL)
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(read); i++)
        if (strcmp(method, read[i]) == 0)
            return true;
    if (a != HTTP_ACCESS_READ_WRITE)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(write); i++)
        if (strcmp(method, write[i]) == 0)
            return true;
    return false;
}

static bool query_glob_match(const struct http_query_match *q, const char *v, size_t vlen,
                             bool fold)
{
    for (size_t i = 0; i < q->n_globs; i++)
        if (wild_match(q->globs[i], strlen(q->globs[i]), v, vlen, fold))
            return true;
    return false;
}

/*
 * Every named parameter present; for an allow every occurrence matches, for a
 * deny one does, and a deny compares names and values in any case.
 */
static bool query_match(const struct http_rule *r, const struct policy_http_target *t, bool deny)
{
    for (size_t i = 0; i < r->n_query; i++) {
        const struct http_query_match *q = &r->query[i];
        size_t nlen = strlen(q->name), seen = 0, matched = 0;
        for (size_t j = 0; j < t->n_params; j++) {
            const struct policy_http_param *pp = &t->params[j];
            const char *name = t->qbuf + pp->name_off;
            if (pp->name_len != nlen ||
                (deny ? strncasecmp(name, q->name, nlen) : memcmp(name, q->name, nlen)) != 0)
                continue;
            seen++;
            matched += query_glob_match(q, t->qbuf + pp->value_off, pp->value_len, deny);
        }
        if (seen == 0 || (deny ? matched == 0 : matched != seen))
            return false;
    }
    return true;
}

static bool rule_match(const struct http_rule *r, const char *method,
                       const struct policy_http_target *t, bool deny)
{
    if (strcmp(r->method, "*") != 0) {
        if (deny ? strcasecmp(r->method, method) != 0 : strcmp(r->method, method) != 0)
            return false;
    }
    if (deny ? !path_match(r->path, t->path, t->path_len, true, false) &&
                   !path_match(r->path, t->path, t->path_len, true, true)
             : !path_match(r->path, t->path, t->path_len, false, false))
        return false;
    return query_match(r, t, deny);
}

/* See policy.h. */
void policy_decide_http(const struct policy_endpoint *ep, bool audit_mode, const char *method,
                        const struct policy_http_target *t, struct policy_http_decision *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->verdict = POLICY_DENY;
    ret->reason = POLICY_REASON_L7_RULE;
    if (!ep || !ep->http || !method || !t) {
        /* A caller bug, not a policy outcome: never softened by audit. */
        snprintf(ret->rule, sizeof(ret->rule), "not_inspected");
        ret->policy_name = ep ? ep->policy_key : NULL;
        return;
    }
    const struct http_config *c = ep->http;
    bool allow = false;

    ret->policy_name = ep->policy_key;
    for (size_t i = 0; i < c->n_deny; i++) {
        if (rule_match(&c->deny[i], method, t, true)) {
            snprintf(ret->rule, sizeof(ret->rule), "deny_rules[%u]", (unsigned)i);
            goto out;
        }
    }
    if (c->access != HTTP_ACCESS_NONE) {
        snprintf(ret->rule, sizeof(ret->rule), "access:%s", access_names[c->access]);
        allow = access_allows(c->access, method);
        goto out;
    }
    snprintf(ret->rule, sizeof(ret->rule), "no_rule");
    for (size_t i = 0; i < c->n_rules; i++) {
        if (rule_match(&c->rules[i], method, t, false)) {
            snprintf(ret->rule, sizeof(ret->rule), "rules[%u]", (unsigned)i);
            allow = true;
            break;
        }
    }
out:
    if (allow) {
        ret->verdict = POLICY_ALLOW;
        ret->reason = POLICY_REASON_NONE;
    } else if (audit_mode || ep->audit) {
        ret->verdict = POLICY_AUDIT;
    }
}
