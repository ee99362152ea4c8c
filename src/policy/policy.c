/*
 * policy: loading the YAML policy (libyaml event API, one recursive-descent
 * pass, first error wins) and the pure decision over it.
 *
 * The parser never builds a YAML tree: it pulls events and copies only what
 * the policy keeps, so memory is bounded by the POLICY_MAX_* limits and not by
 * the shape of the input.  Anchors, aliases and tags are refused outright.
 */
#include "policy-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

struct policy_entry {
    char key[POLICY_MAX_NAME_LEN + 1];
    char name[POLICY_MAX_NAME_LEN + 1]; /* empty when absent */
    struct policy_endpoint *endpoints;
    size_t n_endpoints, cap_endpoints;
};

struct policy {
    struct policy_entry *entries;
    size_t n_entries, cap_entries;
    size_t n_endpoints; /* over all entries, for POLICY_MAX_ENDPOINTS */
};

/* ---- errors ---- */

struct parser {
    yaml_parser_t yaml;
    yaml_event_t ev; /* the current event, valid while have_ev */
    bool have_ev;
    const char *buf; /* the input, to place reader errors */
    size_t len;
    struct policy_error *err;
    struct policy *p;
};

static void error_vset(struct policy_error *err, unsigned line, unsigned column, const char *fmt,
                       va_list ap) __attribute__((format(printf, 4, 0)));

static void error_vset(struct policy_error *err, unsigned line, unsigned column, const char *fmt,
                       va_list ap)
{
    err->line = line;
    err->column = column;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

static int error_at(struct parser *ps, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record an error at a libyaml mark (0-based) and return -EINVAL. */
static int error_at(struct parser *ps, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(ps->err, (unsigned)mark.line + 1, (unsigned)mark.column + 1, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static void error_noloc(struct policy_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void error_noloc(struct policy_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, 0, 0, fmt, ap);
    va_end(ap);
}

static void error_init(struct policy_error *err, const char *file)
{
    memset(err, 0, sizeof(*err));
    str_copy(err->file, file ? file : "<policy>", sizeof(err->file));
}

/* A user-supplied string made safe and short for a message. */
static const char *quote(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        if (o + 4 >= size && i + 1 < len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[o] = '\0';
    return buf;
}

/* "FILE:LINE:COL: message", or "FILE: message" without a position. Returns buf. */
const char *policy_error_format(const struct policy_error *err, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    if (err->line == 0)
        snprintf(buf, len, "%s: %s", err->file, err->message);
    else
        snprintf(buf, len, "%s:%u:%u: %s", err->file, err->line, err->column, err->message);
    return buf;
}

/* ---- events ---- */

static int parser_syntax_error(struct parser *ps)
{
    const yaml_parser_t *y = &ps->yaml;
    const char *problem = y->problem ? y->problem : "unknown error";

    if (y->error == YAML_MEMORY_ERROR) {
        error_noloc(ps->err, "out of memory");
        return -ENOMEM;
    }
    if (y->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark: place it ourselves. */
        unsigned line = 1, column = 1;
        size_t end = y->problem_offset < ps->len ? y->problem_offset : ps->len;
        for (size_t i = 0; i < end; i++) {
            if (ps->buf[i] == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        ps->err->line = line;
        ps->err->column = column;
        snprintf(ps->err->message, sizeof(ps->err->message), "invalid YAML: %s", problem);
        return -EINVAL;
    }
    if (y->context)
        return error_at(ps, y->problem_mark, "invalid YAML: %s (%s at line %u column %u)", problem,
                        y->context, (unsigned)y->context_mark.line + 1,
                        (unsigned)y->context_mark.column + 1);
    return error_at(ps, y->problem_mark, "invalid YAML: %s", problem);
}

/* Advance to the next event; refuse aliases, anchors and tags. */
static int parser_next(struct parser *ps)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;

    if (ps->have_ev) {
        yaml_event_delete(&ps->ev);
        ps->have_ev = false;
    }
    if (!yaml_parser_parse(&ps->yaml, &ps->ev))
        return parser_syntax_error(ps);
    ps->have_ev = true;

    switch (ps->ev.type) {
    case YAML_ALIAS_EVENT:
        return error_at(ps, ps->ev.start_mark, "YAML aliases are not supported");
    case YAML_SCALAR_EVENT:
        anchor = ps->ev.data.scalar.anchor;
        tag = ps->ev.data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ps->ev.data.sequence_start.anchor;
        tag = ps->ev.data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ps->ev.data.mapping_start.anchor;
        tag = ps->ev.data.mapping_start.tag;
        break;
    default:
        break;
    }
    if (anchor)
        return error_at(ps, ps->ev.start_mark, "YAML anchors are not supported");
    if (tag)
        return error_at(ps, ps->ev.start_mark, "YAML tags are not supported");
    return 0;
}

static yaml_event_type_t ev_type(const struct parser *ps)
{
    return ps->ev.type;
}

static const char *ev_str(const struct parser *ps)
{
    return (const char *)ps->ev.data.scalar.value;
}

static size_t ev_len(const struct parser *ps)
{
    return ps->ev.data.scalar.length;
}

static bool ev_plain(const struct parser *ps)
{
    return ps->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A "\0" escape would make the C string shorter than the YAML one. */
static bool ev_has_nul(const struct parser *ps)
{
    return memchr(ev_str(ps), '\0', ev_len(ps)) != NULL;
}

static bool ev_is_null(const struct parser *ps)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (ev_type(ps) != YAML_SCALAR_EVENT || !ev_plain(ps))
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
        if (strcmp(ev_str(ps), nulls[i]) == 0)
            return true;
    return false;
}

static const char *type_name(const struct parser *ps)
{
    switch (ev_type(ps)) {
    case YAML_SCALAR_EVENT:
        return ev_is_null(ps) ? "nothing" : "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    default:
        return "something else";
    }
}

/* Next event must be a non-null scalar (the value of key `what`). */
static int parser_expect_scalar(struct parser *ps, const char *what, const char *expected)
{
    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_SCALAR_EVENT || ev_is_null(ps))
        return error_at(ps, ps->ev.start_mark, "`%s` must be %s, not %s", what, expected,
                        type_name(ps));
    if (ev_has_nul(ps))
        return error_at(ps, ps->ev.start_mark, "`%s` contains a NUL character", what);
    return 0;
}

/* Current event is a mapping key: it must be a string. */
static int parser_check_key(struct parser *ps)
{
    if (ev_type(ps) != YAML_SCALAR_EVENT)
        return error_at(ps, ps->ev.start_mark, "expected a field name, not %s", type_name(ps));
    if (ev_has_nul(ps))
        return error_at(ps, ps->ev.start_mark, "field name contains a NUL character");
    return 0;
}

static int error_unknown_field(struct parser *ps)
{
    char q[64];
    return error_at(ps, ps->ev.start_mark, "unknown field `%s`",
                    quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
}

/* Known keys of one mapping: index in names[] or -1.  seen catches duplicates. */
static int key_lookup(const struct parser *ps, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ev_str(ps), names[i]) == 0)
            return (int)i;
    return -1;
}

static int error_duplicate(struct parser *ps)
{
    char q[64];
    return error_at(ps, ps->ev.start_mark, "duplicate key `%s`",
                    quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
}

/* ---- values ---- */

/* A port: a plain decimal scalar 1..65535 (a quoted "443" is a string). */
static int parser_port(struct parser *ps, const char *what, uint16_t *ret)
{
    char q[64];
    long v;
    const char *s = ev_str(ps);

    if (ev_type(ps) != YAML_SCALAR_EVENT || ev_is_null(ps))
        return error_at(ps, ps->ev.start_mark, "`%s` must be a port number, not %s", what,
                        type_name(ps));
    if (!ev_plain(ps))
        return error_at(ps, ps->ev.start_mark, "`%s` must be a number, not a quoted string", what);
    bool digits = ev_len(ps) > 0 && ev_len(ps) <= 10;
    for (size_t i = 0; digits && i < ev_len(ps); i++)
        digits = s[i] >= '0' && s[i] <= '9';
    if (!digits || parse_long(s, 1, 65535, &v) < 0)
        return error_at(ps, ps->ev.start_mark, "invalid port `%s`: must be from 1 to 65535",
                        quote(s, ev_len(ps), q, sizeof(q)));
    *ret = (uint16_t)v;
    return 0;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/*
 * Validate a policy host ("api.github.com", "*.github.com", "**.github.com")
 * into ep.  Returns NULL or the reason it is invalid.
 */
static const char *host_parse(const char *s, size_t len, struct policy_endpoint *ep)
{
    size_t off = 0;
    enum host_kind kind = HOST_EXACT;

    if (len > 0 && s[len - 1] == '.')
        len--; /* a fully qualified "example.com." is the same name */
    if (len == 0)
        return "`host` must not be empty";
    if (len > POLICY_MAX_HOST_LEN)
        return "`host` is longer than 253 characters";
    if (len >= 3 && memcmp(s, "**.", 3) == 0) {
        kind = HOST_ANY_LABELS;
        off = 2;
    } else if (len >= 2 && memcmp(s, "*.", 2) == 0) {
        kind = HOST_ONE_LABEL;
        off = 1;
    } else if (s[0] == '*' && (len == 1 || (len == 2 && s[1] == '*'))) {
        return "a wildcard `host` needs a domain: `*.example.com` or `**.example.com`";
    }

    /* Labels after the wildcard (or all of them): LDH plus '_', 1..63 each. */
    size_t start = kind == HOST_EXACT ? 0 : off + 1, label = 0;
    bool all_digits = true;
    if (start >= len)
        return "a wildcard `host` needs a domain: `*.example.com` or `**.example.com`";
    for (size_t i = start; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0)
                return "`host` has an empty label";
            if (label > 63)
                return "`host` has a label longer than 63 characters";
            if (s[i - label] == '-' || s[i - 1] == '-')
                return "`host` has a label that starts or ends with `-`";
            if (i < len) {
                label = 0;
                all_digits = true;
            }
            continue;
        }
        if (s[i] == '*')
            return "`*` is only allowed as a whole first label: `*.example.com` or "
                   "`**.example.com`";
        if (!host_char_ok(s[i]))
            return "`host` must be a DNS name (letters, digits, `-`, `_` and dots)";
        if (s[i] < '0' || s[i] > '9')
            all_digits = false;
        label++;
    }
    /* An all-digit last label makes it an address to a resolver ("10.1", "1.2.3.4"). */
    if (all_digits)
        return "`host` must be a name, not an address: list addresses in `allowed_ips`";

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        ep->host[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    ep->host[len] = '\0';
    ep->kind = kind;
    ep->suffix_off = off;
    return NULL;
}

/* ---- structure ---- */

enum endpoint_key {
    EK_HOST = 0,
    EK_PORT,
    EK_PORTS,
    EK_ALLOWED_IPS,
    EK_ENFORCEMENT,
    EK_PROTOCOL,
    EK_ACCESS,
    EK_RULES,
    EK_DENY_RULES,
    EK_ALLOW_ENCODED_SLASH,
    EK_TLS,
    EK_MAX,
};

static const char *const endpoint_keys[EK_MAX] = {
    [EK_HOST] = "host",
    [EK_PORT] = "port",
    [EK_PORTS] = "ports",
    [EK_ALLOWED_IPS] = "allowed_ips",
    [EK_ENFORCEMENT] = "enforcement",
    [EK_PROTOCOL] = "protocol",
    [EK_ACCESS] = "access",
    [EK_RULES] = "rules",
    [EK_DENY_RULES] = "deny_rules",
    [EK_ALLOW_ENCODED_SLASH] = "allow_encoded_slash",
    [EK_TLS] = "tls",
};

static int error_not_yet(struct parser *ps)
{
    return error_at(ps, ps->ev.start_mark, "`%s` is not supported yet", ev_str(ps));
}

static int parser_ports(struct parser *ps, struct policy_endpoint *ep)
{
    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_SEQUENCE_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "`ports` must be a list, not %s", type_name(ps));
    yaml_mark_t start = ps->ev.start_mark;
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_SEQUENCE_END_EVENT)
            break;
        if (ep->n_ports == POLICY_MAX_PORTS)
            return error_at(ps, ps->ev.start_mark, "too many `ports` (at most %d)",
                            POLICY_MAX_PORTS);
        if ((r = parser_port(ps, "ports", &ep->ports[ep->n_ports])) < 0)
            return r;
        ep->n_ports++;
    }
    if (ep->n_ports == 0)
        return error_at(ps, start, "`ports` must not be empty");
    return 0;
}

static int parser_allowed_ips(struct parser *ps, struct policy_endpoint *ep)
{
    struct net_prefix ips[POLICY_MAX_IPS];
    size_t n = 0;
    char q[64], b[64];

    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_SEQUENCE_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "`allowed_ips` must be a list, not %s",
                        type_name(ps));
    yaml_mark_t start = ps->ev.start_mark;
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_SEQUENCE_END_EVENT)
            break;
        if (ev_type(ps) != YAML_SCALAR_EVENT || ev_is_null(ps))
            return error_at(ps, ps->ev.start_mark,
                            "`allowed_ips` entries must be addresses or CIDR prefixes, not %s",
                            type_name(ps));
        if (n == POLICY_MAX_IPS)
            return error_at(ps, ps->ev.start_mark, "too many `allowed_ips` (at most %d)",
                            POLICY_MAX_IPS);
        quote(ev_str(ps), ev_len(ps), q, sizeof(q));
        if (ev_has_nul(ps) || net_prefix_parse(ev_str(ps), false, &ips[n]) < 0) {
            struct net_prefix fixed;
            if (!ev_has_nul(ps) && net_prefix_parse(ev_str(ps), true, &fixed) == 0)
                return error_at(ps, ps->ev.start_mark, "`%s` has host bits set: did you mean `%s`?",
                                q, net_prefix_format(&fixed, b, sizeof(b)));
            return error_at(ps, ps->ev.start_mark, "invalid address or CIDR prefix `%s`", q);
        }
        n++;
    }
    if (n == 0)
        return error_at(ps, start, "`allowed_ips` must not be empty");
    ep->ips = malloc(n * sizeof(*ep->ips));
    if (!ep->ips) {
        error_noloc(ps->err, "out of memory");
        return -ENOMEM;
    }
    memcpy(ep->ips, ips, n * sizeof(*ep->ips));
    ep->n_ips = n;
    return 0;
}

/* ---- HTTP rules (protocol: rest) ---- */

static int error_oom(struct parser *ps)
{
    error_noloc(ps->err, "out of memory");
    return -ENOMEM;
}

/* The endpoint's HTTP part, created by the first L7 field. */
static int endpoint_http(struct parser *ps, struct policy_endpoint *ep)
{
    if (!ep->http && !(ep->http = calloc(1, sizeof(*ep->http))))
        return error_oom(ps);
    return 0;
}

/* A method character: RFC 9110 tchar without '*' (a lone "*" means any). */
static bool method_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'+-.^_`|~", c) != NULL);
}

/* `method: GET` or `method: "*"`, into out. */
static int parser_method(struct parser *ps, char *out)
{
    char q[64];
    int r = parser_expect_scalar(ps, "method", "an HTTP method or `*`");
    if (r < 0)
        return r;
    const char *s = ev_str(ps);
    size_t n = ev_len(ps);
    quote(s, n, q, sizeof(q));
    if (n == 1 && s[0] == '*') {
        memcpy(out, "*", 2);
        return 0;
    }
    if (n > POLICY_MAX_METHOD_LEN)
        return error_at(ps, ps->ev.start_mark, "invalid method `%s`: longer than %d characters", q,
                        POLICY_MAX_METHOD_LEN);
    bool lower = false, ok = n > 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = method_char_ok(s[i]);
        lower |= s[i] >= 'a' && s[i] <= 'z';
    }
    if (!ok)
        return error_at(ps, ps->ev.start_mark,
                        "invalid method `%s`: must be an HTTP method such as `GET`, or `*`", q);
    if (lower)
        return error_at(ps, ps->ev.start_mark,
                        "invalid method `%s`: methods are case-sensitive, write it in upper case",
                        q);
    memcpy(out, s, n + 1);
    return 0;
}

/* `path: GLOB`, checked and normalised into rule->path. */
static int parser_path_glob(struct parser *ps, struct http_rule *rule)
{
    char q[64];
    int r = parser_expect_scalar(ps, "path", "a path glob such as `/repos/**`");
    if (r < 0)
        return r;
    size_t n = ev_len(ps);
    char *out = malloc(n + 1);
    if (!out)
        return error_oom(ps);
    const char *why = http_glob_parse(ev_str(ps), n, out, n + 1);
    if (why) {
        free(out);
        return error_at(ps, ps->ev.start_mark, "invalid path `%s`: %s",
                        quote(ev_str(ps), n, q, sizeof(q)), why);
    }
    rule->path = out;
    return 0;
}

/* The current event is a scalar query glob; copies it into *ret. */
static int parser_query_glob(struct parser *ps, const char *name, char **ret)
{
    char q[64];
    if (ev_has_nul(ps))
        return error_at(ps, ps->ev.start_mark, "query glob for `%s` contains a NUL character",
                        quote(name, strlen(name), q, sizeof(q)));
    if (ev_len(ps) > POLICY_MAX_GLOB_LEN)
        return error_at(ps, ps->ev.start_mark, "query glob for `%s` is longer than %d characters",
                        quote(name, strlen(name), q, sizeof(q)), POLICY_MAX_GLOB_LEN);
    if (!(*ret = strdup(ev_str(ps))))
        return error_oom(ps);
    return 0;
}

/* In a mapping whose only key may be `key`, once: read the next key.
 * Returns 1 when it was `key` (its value comes next), 0 at the end of the
 * mapping, or an error (any other key, or `key` again). */
static int parser_next_only_key(struct parser *ps, const char *key, bool *seen)
{
    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) == YAML_MAPPING_END_EVENT)
        return 0;
    if ((r = parser_check_key(ps)) < 0)
        return r;
    if (strcmp(ev_str(ps), key) != 0)
        return error_unknown_field(ps);
    if (*seen)
        return error_duplicate(ps);
    *seen = true;
    return 1;
}

/* The value of one query parameter: a glob, or {any: [GLOB, ...]}. */
static int parser_query_value(struct parser *ps, struct http_query_match *m)
{
    char q[64];
    int r = parser_next(ps);
    if (r < 0)
        return r;
    quote(m->name, strlen(m->name), q, sizeof(q));
    if (ev_type(ps) == YAML_SCALAR_EVENT && !ev_is_null(ps)) {
        if (!(m->globs = calloc(1, sizeof(*m->globs))))
            return error_oom(ps);
        if ((r = parser_query_glob(ps, m->name, &m->globs[0])) < 0)
            return r;
        m->n_globs = 1;
        return 0;
    }
    if (ev_type(ps) != YAML_MAPPING_START_EVENT)
        return error_at(ps, ps->ev.start_mark,
                        "query parameter `%s` must be a glob or `{any: [...]}`, not %s", q,
                        type_name(ps));
    yaml_mark_t start = ps->ev.start_mark;
    bool seen = false;
    while ((r = parser_next_only_key(ps, "any", &seen)) > 0) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) != YAML_SEQUENCE_START_EVENT)
            return error_at(ps, ps->ev.start_mark, "`any` must be a list of globs, not %s",
                            type_name(ps));
        yaml_mark_t list = ps->ev.start_mark;
        if (!(m->globs = calloc(POLICY_MAX_QUERY_ANY, sizeof(*m->globs))))
            return error_oom(ps);
        for (;;) {
            if ((r = parser_next(ps)) < 0)
                return r;
            if (ev_type(ps) == YAML_SEQUENCE_END_EVENT)
                break;
            if (ev_type(ps) != YAML_SCALAR_EVENT || ev_is_null(ps))
                return error_at(ps, ps->ev.start_mark, "`any` entries must be globs, not %s",
                                type_name(ps));
            if (m->n_globs == POLICY_MAX_QUERY_ANY)
                return error_at(ps, ps->ev.start_mark, "too many globs in `any` (at most %d)",
                                POLICY_MAX_QUERY_ANY);
            if ((r = parser_query_glob(ps, m->name, &m->globs[m->n_globs])) < 0)
                return r;
            m->n_globs++;
        }
        if (m->n_globs == 0)
            return error_at(ps, list, "`any` must not be empty");
    }
    if (r < 0)
        return r;
    if (!seen)
        return error_at(ps, start, "query parameter `%s` needs `any: [...]`", q);
    return 0;
}

/* `query: {PARAM: GLOB | {any: [GLOB, ...]}}` into rule->query. */
static int parser_query(struct parser *ps, struct http_rule *rule)
{
    char q[64];
    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_MAPPING_START_EVENT)
        return error_at(ps, ps->ev.start_mark,
                        "`query` must be a mapping of parameter names to globs, not %s",
                        type_name(ps));
    if (!(rule->query = calloc(POLICY_MAX_QUERY_MATCH, sizeof(*rule->query))))
        return error_oom(ps);
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            return 0;
        if ((r = parser_check_key(ps)) < 0)
            return r;
        if (ev_len(ps) == 0)
            return error_at(ps, ps->ev.start_mark, "query parameter names must not be empty");
        if (ev_len(ps) > POLICY_MAX_NAME_LEN)
            return error_at(ps, ps->ev.start_mark,
                            "query parameter `%s` is longer than %d characters",
                            quote(ev_str(ps), ev_len(ps), q, sizeof(q)), POLICY_MAX_NAME_LEN);
        for (size_t i = 0; i < rule->n_query; i++)
            if (strcmp(rule->query[i].name, ev_str(ps)) == 0)
                return error_duplicate(ps);
        if (rule->n_query == POLICY_MAX_QUERY_MATCH)
            return error_at(ps, ps->ev.start_mark, "too many `query` parameters (at most %d)",
                            POLICY_MAX_QUERY_MATCH);
        struct http_query_match *m = &rule->query[rule->n_query++];
        if (!(m->name = strdup(ev_str(ps))))
            return error_oom(ps);
        if ((r = parser_query_value(ps, m)) < 0)
            return r;
    }
}

enum matcher_key {
    MK_METHOD = 0,
    MK_PATH,
    MK_QUERY,
    MK_MAX,
};

static const char *const matcher_keys[MK_MAX] = {
    [MK_METHOD] = "method",
    [MK_PATH] = "path",
    [MK_QUERY] = "query",
};

/* The current event is the MAPPING_START of {method, path, query}; fills rule. */
static int parser_matcher(struct parser *ps, struct http_rule *rule)
{
    bool seen[MK_MAX] = {false};
    yaml_mark_t start = ps->ev.start_mark;
    int r;

    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            break;
        if ((r = parser_check_key(ps)) < 0)
            return r;
        int k = key_lookup(ps, matcher_keys, MK_MAX);
        if (k < 0)
            return error_unknown_field(ps);
        if (seen[k])
            return error_duplicate(ps);
        seen[k] = true;
        if (k == MK_METHOD)
            r = parser_method(ps, rule->method);
        else if (k == MK_PATH)
            r = parser_path_glob(ps, rule);
        else
            r = parser_query(ps, rule);
        if (r < 0)
            return r;
    }
    if (!seen[MK_METHOD])
        return error_at(ps, start, "rule needs a `method` (`*` for any)");
    if (!seen[MK_PATH])
        return error_at(ps, start, "rule needs a `path` (`/**` for any)");
    return 0;
}

/* One entry of `rules:`: a mapping whose only key is `allow`. */
static int parser_allow_rule(struct parser *ps, struct http_rule *rule)
{
    yaml_mark_t start = ps->ev.start_mark;
    bool seen = false;
    int r;

    while ((r = parser_next_only_key(ps, "allow", &seen)) > 0) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) != YAML_MAPPING_START_EVENT)
            return error_at(ps, ps->ev.start_mark,
                            "`allow` must be a mapping with `method` and `path`, not %s",
                            type_name(ps));
        if ((r = parser_matcher(ps, rule)) < 0)
            return r;
    }
    if (r < 0)
        return r;
    if (!seen)
        return error_at(ps, start, "a rule needs `allow`");
    return 0;
}

/* `rules:` (deny false) or `deny_rules:` (deny true) into the endpoint's http. */
static int parser_rules(struct parser *ps, struct http_config *c, bool deny)
{
    const char *what = deny ? "deny_rules" : "rules";
    struct http_rule **rules = deny ? &c->deny : &c->rules;
    size_t *n = deny ? &c->n_deny : &c->n_rules;
    size_t cap = 0;

    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_SEQUENCE_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "`%s` must be a list, not %s", what, type_name(ps));
    yaml_mark_t start = ps->ev.start_mark;
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_SEQUENCE_END_EVENT)
            break;
        if (ev_type(ps) != YAML_MAPPING_START_EVENT)
            return error_at(ps, ps->ev.start_mark,
                            deny ? "a deny rule must be a mapping with `method` and `path`, not %s"
                                 : "a rule must be a mapping with `allow`, not %s",
                            type_name(ps));
        if (*n == POLICY_MAX_RULES)
            return error_at(ps, ps->ev.start_mark, "too many `%s` (at most %d)", what,
                            POLICY_MAX_RULES);
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct http_rule *nr = realloc(*rules, ncap * sizeof(*nr));
            if (!nr)
                return error_oom(ps);
            *rules = nr;
            cap = ncap;
        }
        /* Counted before it is filled, so that freeing the config frees it. */
        struct http_rule *rule = &(*rules)[(*n)++];
        memset(rule, 0, sizeof(*rule));
        if ((r = deny ? parser_matcher(ps, rule) : parser_allow_rule(ps, rule)) < 0)
            return r;
    }
    if (*n == 0 && !deny)
        return error_at(ps, start, "`rules` must not be empty");
    return 0;
}

/* The current event is the MAPPING_START of an endpoint; fills ep. */
static int parser_endpoint(struct parser *ps, struct policy_endpoint *ep)
{
    bool seen[EK_MAX] = {false};
    yaml_mark_t start = ps->ev.start_mark, protocol_mark = start, l7_mark = start, tls_mark = start;
    const char *l7_key = NULL; /* the first field that needs protocol: rest */
    int r;

    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            break;
        if ((r = parser_check_key(ps)) < 0)
            return r;
        int k = key_lookup(ps, endpoint_keys, EK_MAX);
        if (k < 0)
            return error_unknown_field(ps);
        if (seen[k])
            return error_duplicate(ps);
        if ((k == EK_PORT && seen[EK_PORTS]) || (k == EK_PORTS && seen[EK_PORT]))
            return error_at(ps, ps->ev.start_mark, "use either `port` or `ports`, not both");
        if ((k == EK_ACCESS && seen[EK_RULES]) || (k == EK_RULES && seen[EK_ACCESS]))
            return error_at(ps, ps->ev.start_mark, "use either `access` or `rules`, not both");
        seen[k] = true;
        if (k == EK_PROTOCOL) {
            protocol_mark = ps->ev.start_mark;
        } else if (k >= EK_ACCESS && k <= EK_ALLOW_ENCODED_SLASH) {
            if (!l7_key) {
                l7_key = endpoint_keys[k];
                l7_mark = ps->ev.start_mark;
            }
            if ((r = endpoint_http(ps, ep)) < 0)
                return r;
        }

        switch ((enum endpoint_key)k) {
        case EK_HOST: {
            if ((r = parser_expect_scalar(ps, "host", "a host name")) < 0)
                return r;
            const char *why = host_parse(ev_str(ps), ev_len(ps), ep);
            if (why) {
                char q[64];
                return error_at(ps, ps->ev.start_mark, "invalid host `%s`: %s",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)), why);
            }
            break;
        }
        case EK_PORT:
            if ((r = parser_next(ps)) < 0 || (r = parser_port(ps, "port", &ep->ports[0])) < 0)
                return r;
            ep->n_ports = 1;
            break;
        case EK_PORTS:
            if ((r = parser_ports(ps, ep)) < 0)
                return r;
            break;
        case EK_ALLOWED_IPS:
            if ((r = parser_allowed_ips(ps, ep)) < 0)
                return r;
            break;
        case EK_ENFORCEMENT:
            if ((r = parser_expect_scalar(ps, "enforcement", "`enforce` or `audit`")) < 0)
                return r;
            if (strcmp(ev_str(ps), "audit") == 0) {
                ep->audit = true;
            } else if (strcmp(ev_str(ps), "enforce") != 0) {
                char q[64];
                return error_at(ps, ps->ev.start_mark,
                                "invalid enforcement `%s`: must be `enforce` or `audit`",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            break;
        case EK_PROTOCOL:
            if ((r = parser_expect_scalar(ps, "protocol", "`rest`")) < 0)
                return r;
            if (strcmp(ev_str(ps), "rest") != 0) {
                char q[64];
                return error_at(ps, ps->ev.start_mark,
                                "`protocol: %s` is not supported yet (only `rest` is)",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            if ((r = endpoint_http(ps, ep)) < 0)
                return r;
            break;
        case EK_ACCESS: {
            static const char *const levels[HTTP_ACCESS_MAX] = {
                [HTTP_ACCESS_READ_ONLY] = "read-only",
                [HTTP_ACCESS_READ_WRITE] = "read-write",
                [HTTP_ACCESS_FULL] = "full",
            };
            if ((r = parser_expect_scalar(ps, "access", "`read-only`, `read-write` or `full`")) < 0)
                return r;
            for (int a = HTTP_ACCESS_READ_ONLY; a < HTTP_ACCESS_MAX; a++)
                if (strcmp(ev_str(ps), levels[a]) == 0)
                    ep->http->access = (enum http_access)a;
            if (ep->http->access == HTTP_ACCESS_NONE) {
                char q[64];
                return error_at(ps, ps->ev.start_mark,
                                "invalid access `%s`: must be `read-only`, `read-write` or `full`",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            break;
        }
        case EK_RULES:
        case EK_DENY_RULES:
            if ((r = parser_rules(ps, ep->http, k == EK_DENY_RULES)) < 0)
                return r;
            break;
        case EK_ALLOW_ENCODED_SLASH:
            if ((r = parser_expect_scalar(ps, "allow_encoded_slash", "`true` or `false`")) < 0)
                return r;
            if (ev_plain(ps) && strcmp(ev_str(ps), "true") == 0) {
                ep->http->allow_encoded_slash = true;
            } else if (!ev_plain(ps) || strcmp(ev_str(ps), "false") != 0) {
                char q[64];
                return error_at(ps, ps->ev.start_mark,
                                "invalid allow_encoded_slash `%s`: must be `true` or `false`",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            break;
        case EK_TLS:
            tls_mark = ps->ev.start_mark;
            if ((r = parser_expect_scalar(ps, "tls", "`terminate` or `passthrough`")) < 0)
                return r;
            if (strcmp(ev_str(ps), "terminate") == 0) {
                ep->tls = POLICY_TLS_TERMINATE;
            } else if (strcmp(ev_str(ps), "passthrough") == 0 || strcmp(ev_str(ps), "skip") == 0) {
                ep->tls = POLICY_TLS_PASSTHROUGH;
            } else {
                char q[64];
                return error_at(
                    ps, ps->ev.start_mark,
                    "invalid tls `%s`: must be `terminate` or `passthrough` (alias `skip`)",
                    quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            break;
        case EK_MAX:
            break;
        }
    }
    if (ep->n_ports == 0)
        return error_at(ps, start, "endpoint needs a `port` or `ports`");
    if (ep->kind == HOST_NONE && ep->n_ips == 0)
        return error_at(ps, start, "endpoint needs a `host` or `allowed_ips` (or both)");
    if (l7_key && !seen[EK_PROTOCOL])
        return error_at(ps, l7_mark, "`%s` needs `protocol: rest`", l7_key);
    if (seen[EK_PROTOCOL] && !seen[EK_ACCESS] && !seen[EK_RULES])
        return error_at(ps, protocol_mark, "`protocol: rest` needs `access` or `rules`");
    /* Rules on encrypted bytes that are never decrypted would be a silent
     * no-op: refuse the combination instead. */
    if (seen[EK_PROTOCOL] && ep->tls == POLICY_TLS_PASSTHROUGH)
        return error_at(ps, tls_mark,
                        "`tls: passthrough` cannot be combined with `protocol: rest` "
                        "(HTTP rules need `tls: terminate` to see the requests)");
    return 0;
}

/* Frees what ep owns (not ep). */
static void endpoint_clear(struct policy_endpoint *ep)
{
    free(ep->ips);
    ep->ips = NULL;
    ep->http = http_config_free(ep->http);
}

static int entry_add_endpoint(struct policy_entry *e, const struct policy_endpoint *ep)
{
    if (e->n_endpoints == e->cap_endpoints) {
        size_t cap = e->cap_endpoints ? e->cap_endpoints * 2 : 4;
        struct policy_endpoint *n = realloc(e->endpoints, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        e->endpoints = n;
        e->cap_endpoints = cap;
    }
    e->endpoints[e->n_endpoints++] = *ep;
    return 0;
}

static int parser_endpoints(struct parser *ps, struct policy_entry *e)
{
    int r = parser_next(ps);
    if (r < 0)
        return r;
    if (ev_type(ps) != YAML_SEQUENCE_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "`endpoints` must be a list, not %s", type_name(ps));
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_SEQUENCE_END_EVENT)
            return 0;
        if (ev_type(ps) != YAML_MAPPING_START_EVENT)
            return error_at(ps, ps->ev.start_mark, "an endpoint must be a mapping, not %s",
                            type_name(ps));
        if (ps->p->n_endpoints == POLICY_MAX_ENDPOINTS)
            return error_at(ps, ps->ev.start_mark, "too many endpoints (at most %d per file)",
                            POLICY_MAX_ENDPOINTS);
        struct policy_endpoint ep;
        memset(&ep, 0, sizeof(ep));
        r = parser_endpoint(ps, &ep);
        if (r == 0 && entry_add_endpoint(e, &ep) < 0) {
            error_noloc(ps->err, "out of memory");
            r = -ENOMEM;
        }
        if (r < 0) {
            endpoint_clear(&ep);
            return r;
        }
        ps->p->n_endpoints++;
    }
}

enum policy_key {
    PK_NAME = 0,
    PK_ENDPOINTS,
    PK_MAX,
};

static const char *const policy_keys[PK_MAX] = {
    [PK_NAME] = "name",
    [PK_ENDPOINTS] = "endpoints",
};

static const char *const policy_later_keys[] = {"binaries"};

/* The current event is the key of a policy; the value follows. */
static int parser_policy(struct parser *ps, struct policy_entry *e)
{
    bool seen[PK_MAX] = {false};
    yaml_mark_t key_mark = ps->ev.start_mark;
    int r;

    if ((r = parser_next(ps)) < 0)
        return r;
    if (ev_type(ps) != YAML_MAPPING_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "policy `%s` must be a mapping, not %s", e->key,
                        type_name(ps));
    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            break;
        if ((r = parser_check_key(ps)) < 0)
            return r;
        if (key_lookup(ps, policy_later_keys, ARRAY_SIZE(policy_later_keys)) >= 0)
            return error_not_yet(ps);
        int k = key_lookup(ps, policy_keys, PK_MAX);
        if (k < 0)
            return error_unknown_field(ps);
        if (seen[k])
            return error_duplicate(ps);
        seen[k] = true;

        if (k == PK_NAME) {
            if ((r = parser_expect_scalar(ps, "name", "a string")) < 0)
                return r;
            if (ev_len(ps) > POLICY_MAX_NAME_LEN)
                return error_at(ps, ps->ev.start_mark, "`name` is longer than %d characters",
                                POLICY_MAX_NAME_LEN);
            for (size_t i = 0; i < ev_len(ps); i++) {
                unsigned char c = (unsigned char)ev_str(ps)[i];
                if (c < 0x20 || c == 0x7f)
                    return error_at(ps, ps->ev.start_mark,
                                    "`name` must not contain control characters");
            }
            memcpy(e->name, ev_str(ps), ev_len(ps) + 1);
        } else {
            if ((r = parser_endpoints(ps, e)) < 0)
                return r;
        }
    }
    if (!seen[PK_ENDPOINTS])
        return error_at(ps, key_mark, "policy `%s` has no `endpoints`", e->key);
    return 0;
}

static bool policy_key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static int parser_policies(struct parser *ps)
{
    struct policy *p = ps->p;
    char q[64];
    int r;

    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            return 0;
        if (ev_type(ps) != YAML_SCALAR_EVENT || ev_is_null(ps))
            return error_at(ps, ps->ev.start_mark, "expected a policy name, not %s", type_name(ps));
        const char *key = ev_str(ps);
        size_t len = ev_len(ps);
        bool ok = len > 0 && len <= POLICY_MAX_NAME_LEN;
        for (size_t i = 0; ok && i < len; i++)
            ok = policy_key_char_ok(key[i]);
        if (!ok)
            return error_at(ps, ps->ev.start_mark,
                            "invalid policy name `%s`: use at most %d letters, digits, `_`, "
                            "`-` and `.`",
                            quote(key, len, q, sizeof(q)), POLICY_MAX_NAME_LEN);
        for (size_t i = 0; i < p->n_entries; i++)
            if (strcmp(p->entries[i].key, key) == 0)
                return error_duplicate(ps);
        if (p->n_entries == POLICY_MAX_POLICIES)
            return error_at(ps, ps->ev.start_mark, "too many policies (at most %d)",
                            POLICY_MAX_POLICIES);
        if (p->n_entries == p->cap_entries) {
            size_t cap = p->cap_entries ? p->cap_entries * 2 : 8;
            struct policy_entry *n = realloc(p->entries, cap * sizeof(*n));
            if (!n) {
                error_noloc(ps->err, "out of memory");
                return -ENOMEM;
            }
            p->entries = n;
            p->cap_entries = cap;
        }
        /* Counted before parsing its body so that policy_free sees its endpoints. */
        struct policy_entry *e = &p->entries[p->n_entries++];
        memset(e, 0, sizeof(*e));
        memcpy(e->key, key, len + 1);
        if ((r = parser_policy(ps, e)) < 0)
            return r;
    }
}

enum top_key {
    TK_VERSION = 0,
    TK_NETWORK_POLICIES,
    TK_MAX,
};

static const char *const top_keys[TK_MAX] = {
    [TK_VERSION] = "version",
    [TK_NETWORK_POLICIES] = "network_policies",
};

static int parser_document(struct parser *ps)
{
    bool seen[TK_MAX] = {false};
    int r;

    if ((r = parser_next(ps)) < 0)
        return r;
    if (ev_type(ps) != YAML_STREAM_START_EVENT)
        return error_at(ps, ps->ev.start_mark, "invalid YAML stream");
    if ((r = parser_next(ps)) < 0)
        return r;
    if (ev_type(ps) == YAML_STREAM_END_EVENT) {
        yaml_mark_t origin = {0, 0, 0};
        return error_at(ps, origin, "missing `version` (the policy file is empty)");
    }
    /* DOCUMENT_START, then the root node. */
    if ((r = parser_next(ps)) < 0)
        return r;
    if (ev_type(ps) != YAML_MAPPING_START_EVENT)
        return error_at(ps, ps->ev.start_mark,
                        "the policy must be a mapping with `version` and `network_policies`, "
                        "not %s",
                        type_name(ps));
    yaml_mark_t start = ps->ev.start_mark;

    for (;;) {
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_type(ps) == YAML_MAPPING_END_EVENT)
            break;
        if ((r = parser_check_key(ps)) < 0)
            return r;
        int k = key_lookup(ps, top_keys, TK_MAX);
        if (k < 0)
            return error_unknown_field(ps);
        if (seen[k])
            return error_duplicate(ps);
        seen[k] = true;

        if (k == TK_VERSION) {
            if ((r = parser_expect_scalar(ps, "version", "1")) < 0)
                return r;
            if (!ev_plain(ps))
                return error_at(ps, ps->ev.start_mark,
                                "`version` must be the number 1, not a quoted string");
            if (strcmp(ev_str(ps), "1") != 0) {
                char q[64];
                return error_at(ps, ps->ev.start_mark,
                                "unsupported version `%s`: `version` must be 1",
                                quote(ev_str(ps), ev_len(ps), q, sizeof(q)));
            }
            continue;
        }
        if ((r = parser_next(ps)) < 0)
            return r;
        if (ev_is_null(ps))
            continue; /* "network_policies:" with nothing: deny everything */
        if (ev_type(ps) != YAML_MAPPING_START_EVENT)
            return error_at(ps, ps->ev.start_mark, "`network_policies` must be a mapping, not %s",
                            type_name(ps));
        if ((r = parser_policies(ps)) < 0)
            return r;
    }
    if (!seen[TK_VERSION])
        return error_at(ps, start, "missing `version: 1`");

    /* DOCUMENT_END, then nothing but the end of the stream. */
    if ((r = parser_next(ps)) < 0)
        return r;
    if ((r = parser_next(ps)) < 0)
        return r;
    if (ev_type(ps) != YAML_STREAM_END_EVENT)
        return error_at(ps, ps->ev.start_mark, "only one YAML document is allowed");
    return 0;
}

/* Frees p and everything it owns; accepts NULL. Returns NULL. */
struct policy *policy_free(struct policy *p)
{
    if (!p)
        return NULL;
    for (size_t i = 0; i < p->n_entries; i++) {
        struct policy_entry *e = &p->entries[i];
        for (size_t j = 0; j < e->n_endpoints; j++)
            endpoint_clear(&e->endpoints[j]);
        free(e->endpoints);
    }
    free(p->entries);
    free(p);
    return NULL;
}

/*
 * Parse buf (not NUL-terminated, at most POLICY_MAX_FILE_BYTES).  On success
 * *ret owns a new policy; on failure *ret is NULL, err says where and why, and
 * -EINVAL, -EFBIG or -ENOMEM is returned.
 */
int policy_load_buffer(const char *name, const char *buf, size_t len, struct policy **ret,
                       struct policy_error *err)
{
    struct policy_error dummy;
    struct parser ps;
    int r;

    if (!err)
        err = &dummy;
    error_init(err, name);
    *ret = NULL;
    if (len > POLICY_MAX_FILE_BYTES) {
        error_noloc(err, "policy is larger than %d bytes", POLICY_MAX_FILE_BYTES);
        return -EFBIG;
    }

    memset(&ps, 0, sizeof(ps));
    ps.buf = buf ? buf : "";
    ps.len = buf ? len : 0;
    ps.err = err;
    ps.p = calloc(1, sizeof(*ps.p));
    if (!ps.p || !yaml_parser_initialize(&ps.yaml)) {
        free(ps.p);
        error_noloc(err, "out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_encoding(&ps.yaml, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&ps.yaml, (const unsigned char *)ps.buf, ps.len);

    r = parser_document(&ps);

    if (ps.have_ev)
        yaml_event_delete(&ps.ev);
    yaml_parser_delete(&ps.yaml);
    if (r < 0) {
        policy_free(ps.p);
        return r;
    }
    /* Nothing moves any more: endpoints may now point at their policy's key. */
    for (size_t i = 0; i < ps.p->n_entries; i++) {
        struct policy_entry *e = &ps.p->entries[i];
        for (size_t j = 0; j < e->n_endpoints; j++)
            e->endpoints[j].policy_key = e->key;
    }
    *ret = ps.p;
    return 0;
}

static int error_errno(struct policy_error *err, int r)
{
    char eb[128];
    error_noloc(err, "cannot read policy file: %s", strerror_r(-r, eb, sizeof(eb)));
    return r;
}

/* Read and parse a regular file; I/O errors are -errno with err->line 0. */
int policy_load_file(const char *path, struct policy **ret, struct policy_error *err)
{
    struct policy_error dummy;
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, r;

    if (!err)
        err = &dummy;
    error_init(err, path);
    *ret = NULL;

    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return error_errno(err, -errno);
    if (fstat(fd, &st) < 0) {
        r = error_errno(err, -errno);
        goto fail_close;
    }
    if (S_ISDIR(st.st_mode)) {
        error_noloc(err, "is a directory, not a policy file");
        r = -EISDIR;
        goto fail_close;
    }
    if (!S_ISREG(st.st_mode)) {
        error_noloc(err, "not a regular file");
        r = -EINVAL;
        goto fail_close;
    }
    if (st.st_size > POLICY_MAX_FILE_BYTES)
        goto fail_too_big;

    /* Read one byte past the limit: the file may have grown since fstat. */
    buf = malloc(POLICY_MAX_FILE_BYTES + 1);
    if (!buf) {
        r = error_errno(err, -ENOMEM);
        goto fail_close;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, POLICY_MAX_FILE_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = error_errno(err, -errno);
            goto fail_free;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > POLICY_MAX_FILE_BYTES)
            goto fail_too_big;
    }
    close(fd);
    r = policy_load_buffer(path, buf, len, ret, err);
    free(buf);
    return r;

fail_too_big:
    error_noloc(err, "policy file is larger than %d bytes", POLICY_MAX_FILE_BYTES);
    r = -EFBIG;
fail_free:
    free(buf);
fail_close:
    close(fd);
    return r;
}

/* ---- decision ---- */

/* Static strings of DESIGN.md's event reasons; NULL for NONE. */
const char *policy_reason_name(enum policy_reason r)
{
    switch (r) {
    case POLICY_REASON_NO_MATCHING_POLICY:
        return "no_matching_policy";
    case POLICY_REASON_ALWAYS_BLOCKED_ADDRESS:
        return "always_blocked_address";
    case POLICY_REASON_PRIVATE_ADDRESS:
        return "private_address";
    case POLICY_REASON_L7_RULE:
        return "l7_rule";
    case POLICY_REASON_HOST_MISMATCH:
        return "host_mismatch";
    default:
        return NULL;
    }
}

/* Does hostname (len without any trailing dot) match a wildcard endpoint? */
static bool host_wildcard_match(const struct policy_endpoint *ep, const char *h, size_t hlen)
{
    const char *suffix = ep->host + ep->suffix_off; /* ".github.com" */
    size_t slen = strlen(suffix);
    if (hlen <= slen || strncasecmp(h + hlen - slen, suffix, slen) != 0)
        return false;
    size_t plen = hlen - slen; /* the labels the wildcard stands for */
    if (h[0] == '.' || h[plen - 1] == '.')
        return false;
    for (size_t i = 0; i < plen; i++) {
        if (h[i] != '.')
            continue;
        if (ep->kind == HOST_ONE_LABEL || h[i + 1] == '.')
            return false;
    }
    return true;
}

/*
 * Does the flow's name (or, without one, its address) match the endpoint's
 * host?  *ret_asked is the host the lookup was made for.
 */
static enum policy_lookup host_match(const struct policy_endpoint *ep,
                                     const struct policy_flow *flow, policy_lookup_fn lookup,
                                     void *ctx, const char **ret_asked, bool *ret_name_matched,
                                     bool *ret_wildcard)
{
    const char *h = flow->hostname;

    if (h) {
        size_t hlen = strlen(h);
        if (hlen > 0 && h[hlen - 1] == '.')
            hlen--;
        if (ep->kind == HOST_EXACT) {
            if (hlen != strlen(ep->host) || strncasecmp(h, ep->host, hlen) != 0)
                return POLICY_LOOKUP_NO;
        } else if (!host_wildcard_match(ep, h, hlen)) {
            return POLICY_LOOKUP_NO;
        }
        /* The name matched; the address must still be one of the name's. */
        *ret_asked = ep->kind == HOST_EXACT ? ep->host : h;
    } else {
        if (ep->kind != HOST_EXACT) {
            *ret_wildcard = true;
            return POLICY_LOOKUP_NO; /* a wildcard cannot be resolved */
        }
        *ret_asked = ep->host;
    }
    if (!lookup)
        return POLICY_LOOKUP_NO;
    enum policy_lookup r = lookup(ctx, *ret_asked, &flow->dst);
    if (h && r == POLICY_LOOKUP_NO)
        *ret_name_matched = true;
    return r == POLICY_LOOKUP_YES || r == POLICY_LOOKUP_PENDING ? r : POLICY_LOOKUP_NO;
}

static bool endpoint_has_port(const struct policy_endpoint *ep, uint16_t port)
{
    for (size_t i = 0; i < ep->n_ports; i++)
        if (ep->ports[i] == port)
            return true;
    return false;
}

static bool endpoint_has_ip(const struct policy_endpoint *ep, const struct net_addr *a)
{
    for (size_t i = 0; i < ep->n_ips; i++)
        if (net_prefix_contains(&ep->ips[i], a))
            return true;
    return false;
}

static void decision_set_endpoint(struct policy_decision *ret, const struct policy_entry *e,
                                  const struct policy_endpoint *ep)
{
    ret->policy_name = e->key;
    ret->endpoint_host = ep->kind != HOST_NONE ? ep->host : NULL;
    ret->endpoint = ep;
    ret->inspect = ep->http != NULL;
}

/*
 * The decision of policy.h.  Everything in *ret points into p, except
 * pending_host for a wildcard endpoint: the name to resolve is then the flow's
 * own hostname, so it points at flow->hostname.
 */
void policy_decide(const struct policy *p, const struct policy_env *env, bool audit_mode,
                   const struct policy_flow *flow, policy_lookup_fn lookup, void *lookup_ctx,
                   struct policy_decision *ret)
{
    const char *pending = NULL;
    const struct policy_entry *near = NULL, *audit = NULL;
    const struct policy_endpoint *near_ep = NULL, *audit_ep = NULL;
    bool name_matched = false, wildcard = false;

    memset(ret, 0, sizeof(*ret));
    enum policy_addr_class cls = policy_classify_addr(&flow->dst, env);
    if (cls == POLICY_ADDR_ALWAYS_BLOCKED) {
        /* Never softened by audit mode: these must not even be tried. */
        ret->verdict = POLICY_DENY;
        ret->reason = POLICY_REASON_ALWAYS_BLOCKED_ADDRESS;
        return;
    }

    /* Every endpoint is TCP for now: a UDP flow matches nothing. */
    for (size_t i = 0; p && flow->proto == POLICY_PROTO_TCP && i < p->n_entries; i++) {
        const struct policy_entry *e = &p->entries[i];
        for (size_t j = 0; j < e->n_endpoints; j++) {
            const struct policy_endpoint *ep = &e->endpoints[j];
            if (!endpoint_has_port(ep, flow->dst_port))
                continue;
            /* Checked first: a lookup whose answer cannot matter is not asked. */
            if (ep->n_ips && !endpoint_has_ip(ep, &flow->dst))
                continue;
            if (ep->kind != HOST_NONE) {
                const char *asked = NULL;
                enum policy_lookup r =
                    host_match(ep, flow, lookup, lookup_ctx, &asked, &name_matched, &wildcard);
                if (r == POLICY_LOOKUP_PENDING && !pending)
                    pending = asked;
                if (r != POLICY_LOOKUP_YES)
                    continue;
            }
            if (!ep->n_ips && cls == POLICY_ADDR_PRIVATE) {
                /* Private ranges need an explicit allowed_ips. */
                if (ep->audit && !audit) {
                    audit = e;
                    audit_ep = ep;
                } else if (!ep->audit && !near) {
                    near = e;
                    near_ep = ep;
                }
                continue;
            }
            ret->verdict = POLICY_ALLOW;
            ret->reason = POLICY_REASON_NONE;
            decision_set_endpoint(ret, e, ep);
            return;
        }
    }

    if (pending) {
        ret->verdict = POLICY_PENDING;
        ret->pending_host = pending;
        return;
    }
    if (audit) {
        ret->verdict = POLICY_AUDIT;
        ret->reason = POLICY_REASON_PRIVATE_ADDRESS;
        decision_set_endpoint(ret, audit, audit_ep);
        return;
    }
    ret->verdict = audit_mode ? POLICY_AUDIT : POLICY_DENY;
    ret->name_could_match = wildcard;
    if (near) {
        ret->reason = POLICY_REASON_PRIVATE_ADDRESS;
        decision_set_endpoint(ret, near, near_ep);
    } else if (name_matched) {
        ret->reason = POLICY_REASON_HOST_MISMATCH;
        ret->name_mismatch = true;
    } else {
        ret->reason = POLICY_REASON_NO_MATCHING_POLICY;
    }
}

/* fn once per distinct exact host, in file order; wildcards cannot be resolved. */
void policy_foreach_host(const struct policy *p, void (*fn)(void *ctx, const char *host), void *ctx)
{
    for (size_t i = 0; p && i < p->n_entries; i++) {
        const struct policy_entry *e = &p->entries[i];
        for (size_t j = 0; j < e->n_endpoints; j++) {
            const struct policy_endpoint *ep = &e->endpoints[j];
            if (ep->kind != HOST_EXACT)
                continue;
            /* Once per distinct host: callers resolve each. */
            bool dup = false;
            for (size_t k = 0; !dup && k <= i; k++) {
                const struct policy_entry *pe = &p->entries[k];
                size_t end = k == i ? j : pe->n_endpoints;
                for (size_t m = 0; !dup && m < end; m++)
                    dup = pe->endpoints[m].kind == HOST_EXACT &&
                          strcmp(pe->endpoints[m].host, ep->host) == 0;
            }
            if (!dup)
                fn(ctx, ep->host);
        }
    }
}

/* fn for every endpoint in file order. */
void policy_foreach_endpoint(const struct policy *p,
                             void (*fn)(void *ctx, const char *policy_name,
                                        const struct policy_endpoint *ep),
                             void *ctx)
{
    for (size_t i = 0; p && i < p->n_entries; i++)
        for (size_t j = 0; j < p->entries[i].n_endpoints; j++)
            fn(ctx, p->entries[i].key, &p->entries[i].endpoints[j]);
}
