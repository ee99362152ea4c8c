/*
 * Finding and validating HTTP/1.x heads.
 *
 * The scanner is ours, not http-parser's: Debian builds http-parser with
 * HTTP_PARSER_STRICT=0, which accepts bare LF, obs-fold, spaces in field names
 * and any byte in a URL, each a request-smuggling shape when the upstream
 * reads the bytes differently.  So a head is first delimited and checked here
 * byte by byte, then cut into lines and checked field by field, and only a
 * complete head is handed to http-parser as a second opinion
 * (head_cross_check_*): both must accept it and agree on what it says.
 */
#include <errno.h>
#include <http_parser.h>
#include <string.h>

#include "inspect-int.h"

bool http_tchar(uint8_t c)
{
    /* RFC 9110 5.6.2 */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static bool span_eq_ci(const uint8_t *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != lower((uint8_t)s[i]))
            return false;
    return true;
}

static bool field_is(const struct raw_field *f, const char *name)
{
    return span_eq_ci(f->name, f->name_len, name);
}

enum scan_result head_scan(struct head_scan *s, const struct head_limits *lim, bool request,
                           const uint8_t *head, size_t avail, const char **ret_reason)
{
    for (size_t i = s->len; i < avail; i++) {
        uint8_t c = head[i];

        /* Checked before the byte is taken so that nothing over a limit is
         * ever held. */
        if (i + 1 > lim->max_head_bytes) {
            *ret_reason = "header section too large";
            return SCAN_ERROR;
        }
        if (s->lines == 0 && i + 1 - s->start_line > lim->max_start_line) {
            *ret_reason = request ? "request line too long" : "status line too long";
            return SCAN_ERROR;
        }

        if (s->cr) {
            if (c != '\n') {
                *ret_reason = "CR not followed by LF in the header section";
                return SCAN_ERROR;
            }
            s->cr = false;
            if (i + 1 - s->line_start == 2) {
                if (s->lines > 0) {
                    s->len = i + 1;
                    return SCAN_DONE;
                }
                /* An empty line before the start line: RFC 9112 2.2 lets us
                 * ignore it (http-parser does too). */
                s->start_line = i + 1;
            } else {
                s->lines++;
                if (s->lines - 1 > lim->max_headers) {
                    *ret_reason = "too many header fields";
                    return SCAN_ERROR;
                }
            }
            s->line_start = i + 1;
        } else if (c == '\r') {
            s->cr = true;
        } else if (c == '\n') {
            *ret_reason = "bare LF line ending (lines must end in CRLF)";
            return SCAN_ERROR;
        } else if (i == s->line_start && s->lines > 0 && is_ows(c)) {
            *ret_reason = "obs-fold: header line starts with whitespace";
            return SCAN_ERROR;
        }
    }
    s->len = avail;
    return SCAN_MORE;
}

/* field-value characters (RFC 9110 5.5): VCHAR, obs-text, SP, HTAB. */
static bool value_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int head_split(const uint8_t *head, const struct head_scan *s, struct raw_field *fields,
               size_t max_fields, struct head_lines *ret, const char **ret_reason)
{
    /* The scanner guarantees: lines end in CRLF, no other CR or LF, the head
     * ends with an empty line, at least one non-empty line. */
    size_t pos = s->start_line;
    size_t end = s->len - 2; /* the final CRLF */
    const uint8_t *eol = memchr(head + pos, '\r', end - pos);

    ret->start = head + pos;
    ret->start_len = (size_t)(eol - (head + pos));
    ret->fields = fields;
    ret->n_fields = 0;
    pos += ret->start_len + 2;

    while (pos < end) {
        const uint8_t *line = head + pos;
        const uint8_t *cr = memchr(line, '\r', end - pos);
        size_t n = (size_t)(cr - line);
        size_t i = 0;

        while (i < n && http_tchar(line[i]))
            i++;
        if (i == 0 || i == n || line[i] != ':') {
            *ret_reason = "invalid header field name";
            return -EINVAL;
        }
        if (ret->n_fields == max_fields) {
            *ret_reason = "too many header fields";
            return -EINVAL;
        }
        struct raw_field *f = &fields[ret->n_fields++];
        f->name = line;
        f->name_len = i;
        size_t v = i + 1, ve = n;
        while (v < n && is_ows(line[v]))
            v++;
        while (ve > v && is_ows(line[ve - 1]))
            ve--;
        for (size_t k = v; k < ve; k++)
            if (!value_char(line[k])) {
                *ret_reason = "control character in a header value";
                return -EINVAL;
            }
        f->value = line + v;
        f->value_len = ve - v;
        pos += n + 2;
    }
    return 0;
}

bool list_next(const uint8_t **pp, const uint8_t *end, struct span *ret)
{
    const uint8_t *p = *pp;
    for (;;) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end) {
            *pp = p;
            return false;
        }
        const uint8_t *b = p;
        while (p < end && *p != ',')
            p++;
        const uint8_t *e = p;
        while (e > b && is_ows(e[-1]))
            e--;
        *pp = p;
        ret->p = b;
        ret->len = (size_t)(e - b);
        return true;
    }
}

bool list_has_token(const uint8_t *v, size_t len, const char *token)
{
    const uint8_t *p = v;
    struct span t;
    while (list_next(&p, v + len, &t))
        if (span_eq_ci(t.p, t.len, token))
            return true;
    return false;
}

/* 1*DIGIT, at most 18 digits so it fits any uint64_t arithmetic we do. */
static int parse_content_length(const uint8_t *p, size_t len, uint64_t *ret)
{
    uint64_t v = 0;
    if (len == 0 || len > 18)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *ret = v;
    return 0;
}

static int parse_version(const uint8_t *p, size_t len, unsigned *ret_minor)
{
    if (len != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return -EINVAL;
    *ret_minor = (unsigned)(p[7] - '0');
    return 0;
}

/* uri-host [":" port] characters (RFC 3986 reg-name, IP-literal, port). */
static bool host_char(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("-._~!$&'()*+,;=%:[]", c) != NULL;
}

static int check_target(struct req_info *ri, const char **ret_reason)
{
    const uint8_t *t = ri->target.p;
    size_t n = ri->target.len;

    for (size_t i = 0; i < n; i++) {
        if (t[i] <= 0x20 || t[i] >= 0x7f) {
            *ret_reason = "invalid character in the request target";
            return -EINVAL;
        }
        if (t[i] == '#') {
            *ret_reason = "fragment in the request target";
            return -EINVAL;
        }
    }

    if (n == 1 && t[0] == '*') {
        if (!span_eq_ci(ri->method.p, ri->method.len, "OPTIONS")) {
            *ret_reason = "asterisk-form target with a method other than OPTIONS";
            return -EINVAL;
        }
        ri->path = ri->target;
        return 0;
    }

    size_t path_at;
    if (t[0] == '/') {
        path_at = 0;
    } else {
        /* absolute-form: only http and https, and the upstream must route it
         * by the Host we decide on, so the authority has to be that Host. */
        size_t skip;
        if (n > 7 && span_eq_ci(t, 7, "http://"))
            skip = 7;
        else if (n > 8 && span_eq_ci(t, 8, "https://"))
            skip = 8;
        else {
            *ret_reason = "invalid request target";
            return -EINVAL;
        }
        size_t a = skip;
        while (a < n && t[a] != '/' && t[a] != '?')
            a++;
        const uint8_t *auth = t + skip;
        size_t auth_len = a - skip;
        if (auth_len == 0 || memchr(auth, '@', auth_len)) {
            *ret_reason = "invalid authority in the request target";
            return -EINVAL;
        }
        if (!ri->has_host || ri->host.len != auth_len) {
            *ret_reason = "absolute-form target does not match Host";
            return -EINVAL;
        }
        for (size_t i = 0; i < auth_len; i++)
            if (lower(auth[i]) != lower(ri->host.p[i])) {
                *ret_reason = "absolute-form target does not match Host";
                return -EINVAL;
            }
        ri->absolute_form = true;
        path_at = a;
    }

    const uint8_t *q = memchr(t + path_at, '?', n - path_at);
    ri->path.p = t + path_at;
    ri->path.len = (size_t)((q ? q : t + n) - (t + path_at));
    if (q) {
        ri->has_query = true;
        ri->query.p = q + 1;
        ri->query.len = (size_t)(t + n - (q + 1));
    }
    return 0;
}

int head_check_request(const struct head_lines *hl, struct req_info *ri, const char **ret_reason)
{
    const uint8_t *l = hl->start;
    size_t n = hl->start_len;
    memset(ri, 0, sizeof(*ri));

    /* request-line = method SP request-target SP HTTP-version, single spaces */
    const uint8_t *sp1 = memchr(l, ' ', n);
    if (sp1 && sp1 - l == 3 && memcmp(l, "PRI", 3) == 0) {
        *ret_reason = "HTTP/2 connection preface not allowed on an inspected endpoint";
        return -EINVAL;
    }
    const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(l + n - (sp1 + 1))) : NULL;
    if (!sp1) {
        *ret_reason = "malformed request line";
        return -EINVAL;
    }
    if (!sp2) {
        *ret_reason = "HTTP/0.9 request (no version)";
        return -EINVAL;
    }
    ri->method.p = l;
    ri->method.len = (size_t)(sp1 - l);
    ri->target.p = sp1 + 1;
    ri->target.len = (size_t)(sp2 - (sp1 + 1));
    if (ri->method.len == 0 || ri->target.len == 0) {
        *ret_reason = "malformed request line";
        return -EINVAL;
    }
    for (size_t i = 0; i < ri->method.len; i++)
        if (!http_tchar(l[i])) {
            *ret_reason = "invalid character in the method";
            return -EINVAL;
        }
    if (parse_version(sp2 + 1, (size_t)(l + n - (sp2 + 1)), &ri->minor) < 0) {
        *ret_reason = "unsupported HTTP version (only HTTP/1.0 and HTTP/1.1)";
        return -EINVAL;
    }
    if (span_eq_ci(ri->method.p, ri->method.len, "CONNECT")) {
        *ret_reason = "CONNECT not allowed on an inspected endpoint";
        return -EINVAL;
    }

    size_t n_host = 0, n_cl = 0, n_te = 0;
    const struct raw_field *te = NULL;
    bool conn_upgrade = false;
    for (size_t i = 0; i < hl->n_fields; i++) {
        const struct raw_field *f = &hl->fields[i];
        if (field_is(f, "Host")) {
            n_host++;
            ri->host.p = f->value;
            ri->host.len = f->value_len;
        } else if (field_is(f, "Content-Length")) {
            n_cl++;
            if (parse_content_length(f->value, f->value_len, &ri->content_length) < 0) {
                *ret_reason = "invalid Content-Length";
                return -EINVAL;
            }
        } else if (field_is(f, "Transfer-Encoding")) {
            n_te++;
            te = f;
        } else if (field_is(f, "Connection")) {
            conn_upgrade |= list_has_token(f->value, f->value_len, "upgrade");
        } else if (field_is(f, "Upgrade")) {
            const uint8_t *p = f->value;
            struct span t;
            while (list_next(&p, f->value + f->value_len, &t)) {
                const uint8_t *slash = memchr(t.p, '/', t.len);
                size_t name_len = slash ? (size_t)(slash - t.p) : t.len;
                if (span_eq_ci(t.p, name_len, "h2c")) {
                    *ret_reason = "h2c upgrade not allowed on an inspected endpoint";
                    return -EINVAL;
                }
                ri->has_upgrade_field = true;
            }
        } else if (field_is(f, "HTTP2-Settings")) {
            *ret_reason = "h2c upgrade not allowed on an inspected endpoint";
            return -EINVAL;
        }
    }

    if (n_host > 1) {
        *ret_reason = "more than one Host header";
        return -EINVAL;
    }
    ri->has_host = n_host == 1;
    if (!ri->has_host && ri->minor == 1) {
        *ret_reason = "missing Host header";
        return -EINVAL;
    }
    for (size_t i = 0; i < ri->host.len; i++)
        if (!host_char(ri->host.p[i])) {
            *ret_reason = "invalid Host header";
            return -EINVAL;
        }
    if (n_cl > 1) {
        *ret_reason = "more than one Content-Length header";
        return -EINVAL;
    }
    if (n_te > 0) {
        if (n_cl > 0) {
            *ret_reason = "both Content-Length and Transfer-Encoding";
            return -EINVAL;
        }
        if (ri->minor == 0) {
            *ret_reason = "Transfer-Encoding in an HTTP/1.0 request";
            return -EINVAL;
        }
        if (n_te > 1 || !span_eq_ci(te->value, te->value_len, "chunked")) {
            *ret_reason = "Transfer-Encoding other than chunked";
            return -EINVAL;
        }
        ri->body = HTTP_BODY_CHUNKED;
    } else if (n_cl == 1) {
        ri->has_content_length = true;
        ri->body = ri->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    }

    /* RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored. */
    ri->upgrade = ri->has_upgrade_field && conn_upgrade && ri->minor == 1;
    if (ri->upgrade && ri->body != HTTP_BODY_NONE) {
        /* Where would the body end and the new protocol begin?  Refuse to
         * guess (http-parser itself stops at the head of such a request). */
        *ret_reason = "upgrade request with a body";
        return -EINVAL;
    }

    return check_target(ri, ret_reason);
}

int head_check_response(const struct head_lines *hl, bool head_request, struct resp_info *ri,
                        const char **ret_reason)
{
    const uint8_t *l = hl->start;
    size_t n = hl->start_len;
    memset(ri, 0, sizeof(*ri));

    /* status-line = HTTP-version SP 3DIGIT [SP reason-phrase] (the SP before
     * an empty reason is often missing in practice) */
    if (n < 12 || parse_version(l, 8, &ri->minor) < 0 || l[8] != ' ') {
        *ret_reason = "not an HTTP/1.x response";
        return -EINVAL;
    }
    for (size_t i = 9; i < 12; i++)
        if (l[i] < '0' || l[i] > '9') {
            *ret_reason = "invalid status code";
            return -EINVAL;
        }
    ri->status = (unsigned)((l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0'));
    if (ri->status < 100 || ri->status > 599 || (n > 12 && l[12] != ' ')) {
        *ret_reason = "invalid status code";
        return -EINVAL;
    }
    for (size_t i = 12; i < n; i++)
        if (!value_char(l[i])) {
            *ret_reason = "control character in the reason phrase";
            return -EINVAL;
        }

    if (ri->status < 200 || ri->status == 204 || ri->status == 304 || head_request) {
        ri->body = HTTP_BODY_NONE;
        return 0;
    }

    size_t n_cl = 0, n_te = 0;
    bool chunked_last = false, chunked_early = false;
    for (size_t i = 0; i < hl->n_fields; i++) {
        const struct raw_field *f = &hl->fields[i];
        if (field_is(f, "Content-Length")) {
            n_cl++;
            if (parse_content_length(f->value, f->value_len, &ri->content_length) < 0) {
                *ret_reason = "invalid Content-Length in a response";
                return -EINVAL;
            }
        } else if (field_is(f, "Transfer-Encoding")) {
            const uint8_t *p = f->value;
            struct span t;
            n_te++;
            while (list_next(&p, f->value + f->value_len, &t)) {
                if (chunked_last)
                    chunked_early = true;
                chunked_last = span_eq_ci(t.p, t.len, "chunked");
            }
        }
    }
    if (n_cl > 1) {
        *ret_reason = "more than one Content-Length in a response";
        return -EINVAL;
    }
    if (n_te > 0) {
        if (n_cl > 0) {
            *ret_reason = "both Content-Length and Transfer-Encoding in a response";
            return -EINVAL;
        }
        if (ri->minor == 0 || chunked_early) {
            *ret_reason = "invalid Transfer-Encoding in a response";
            return -EINVAL;
        }
        /* RFC 9112 6.3: a final coding other than chunked means the body
         * runs until the connection closes. */
        ri->body = chunked_last ? HTTP_BODY_CHUNKED : HTTP_BODY_EOF;
    } else if (n_cl == 1) {
        ri->body = ri->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    } else {
        ri->body = HTTP_BODY_EOF;
    }
    return 0;
}

/* ---- the second opinion ------------------------------------------------ */

struct xcheck {
    size_t url_len;
    size_t fields;
    bool in_field;
    bool headers_done;
    unsigned flags;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    (void)at;
    ((struct xcheck *)p->data)->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct xcheck *x = p->data;
    (void)at;
    (void)len;
    if (!x->in_field)
        x->fields++;
    x->in_field = true;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    (void)at;
    (void)len;
    ((struct xcheck *)p->data)->in_field = false;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct xcheck *x = p->data;
    x->headers_done = true;
    x->flags = p->flags;
    return 1; /* no body: we frame bodies ourselves */
}

static const http_parser_settings xsettings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

static int run_parser(enum http_parser_type type, const uint8_t *head, size_t len,
                      const struct head_lines *hl, http_parser *p, struct xcheck *x,
                      const char **ret_reason)
{
    memset(x, 0, sizeof(*x));
    http_parser_init(p, type);
    p->data = x;
    size_t n = http_parser_execute(p, &xsettings, (const char *)head, len);
    if (HTTP_PARSER_ERRNO(p) != HPE_OK) {
        *ret_reason = http_errno_description(HTTP_PARSER_ERRNO(p));
        return -EINVAL;
    }
    if (n != len || !x->headers_done || x->fields != hl->n_fields || p->http_major != 1) {
        *ret_reason = "malformed head (parsers disagree)";
        return -EINVAL;
    }
    return 0;
}

int head_cross_check_request(const uint8_t *head, size_t len, const struct head_lines *hl,
                             const struct req_info *ri, const char **ret_reason)
{
    http_parser p;
    struct xcheck x;
    if (run_parser(HTTP_REQUEST, head, len, hl, &p, &x, ret_reason) < 0)
        return -EINVAL;
    const char *m = http_method_str((enum http_method)p.method);
    bool agree = x.url_len == ri->target.len && p.http_minor == ri->minor &&
                 strlen(m) == ri->method.len && memcmp(m, ri->method.p, ri->method.len) == 0 &&
                 !!(x.flags & F_CHUNKED) == (ri->body == HTTP_BODY_CHUNKED) &&
                 !!(x.flags & F_CONTENTLENGTH) == ri->has_content_length;
    if (!agree) {
        *ret_reason = "malformed request (parsers disagree)";
        return -EINVAL;
    }
    return 0;
}

int head_cross_check_response(const uint8_t *head, size_t len, const struct head_lines *hl,
                              const struct resp_info *ri, const char **ret_reason)
{
    http_parser p;
    struct xcheck x;
    if (run_parser(HTTP_RESPONSE, head, len, hl, &p, &x, ret_reason) < 0)
        return -EINVAL;
    if (p.status_code != ri->status || p.http_minor != ri->minor) {
        *ret_reason = "malformed response (parsers disagree)";
        return -EINVAL;
    }
    return 0;
}
