/*
 * http_path: request targets made comparable to policy globs (policy.h says
 * what is done and why).  Pure: no allocation, no I/O; every output is
 * bounded by the caller's buffer and anything that does not fit is an error,
 * never a truncation.
 */
#include <string.h>

#include "policy-int.h"

const char *policy_http_error_name(enum policy_http_error e)
{
    switch (e) {
    case POLICY_HTTP_E_NOT_ORIGIN_FORM:
        return "not_origin_form";
    case POLICY_HTTP_E_TOO_LONG:
        return "target_too_long";
    case POLICY_HTTP_E_BAD_CHAR:
        return "bad_character";
    case POLICY_HTTP_E_BAD_PERCENT:
        return "bad_percent_encoding";
    case POLICY_HTTP_E_NUL:
        return "encoded_nul";
    case POLICY_HTTP_E_CONTROL:
        return "encoded_control";
    case POLICY_HTTP_E_ENCODED_SLASH:
        return "encoded_slash";
    case POLICY_HTTP_E_AMBIGUOUS_DOTS:
        return "ambiguous_dot_segment";
    case POLICY_HTTP_E_TOO_MANY_PARAMS:
        return "too_many_query_params";
    case POLICY_HTTP_E_DOT_SEGMENT:
        return "dot_segment";
    case POLICY_HTTP_E_EMPTY_SEGMENT:
        return "empty_segment";
    default:
        return NULL;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Bytes that never appear raw in a request target we accept. */
static bool raw_char_bad(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '#';
}

/* Decode the "%XX" at s[i] (s[i] == '%', i < len) into *ret. */
static enum policy_http_error percent_decode(const char *s, size_t len, size_t i,
                                             unsigned char *ret)
{
    if (len - i < 3)
        return POLICY_HTTP_E_BAD_PERCENT;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0)
        return POLICY_HTTP_E_BAD_PERCENT;
    *ret = (unsigned char)(hi << 4 | lo);
    return *ret == 0 ? POLICY_HTTP_E_NUL : POLICY_HTTP_OK;
}

/*
 * One segment raw[0..len) (no raw '/'), decoded and appended to out at *o.
 * The only '%' written are those of "%2F" and "%25".
 */
static enum policy_http_error segment_decode(const char *raw, size_t len, unsigned flags, char *out,
                                             size_t outlen, size_t *o)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)raw[i];
        const char *esc = NULL;

        if (c == '%') {
            enum policy_http_error e = percent_decode(raw, len, i, &c);
            if (e != POLICY_HTTP_OK)
                return e;
            i += 2;
            if (c < 0x20 || c == 0x7f)
                return POLICY_HTTP_E_CONTROL;
            if (c == '/') {
                if (!(flags & HTTP_PATH_F_ENCODED_SLASH))
                    return POLICY_HTTP_E_ENCODED_SLASH;
                esc = "%2F";
            } else if (c == '%') {
                esc = "%25";
            }
        } else if (raw_char_bad(c)) {
            return POLICY_HTTP_E_BAD_CHAR;
        }
        size_t n = esc ? 3 : 1;
        if (outlen - *o <= n) /* keep room for the NUL */
            return POLICY_HTTP_E_TOO_LONG;
        if (esc)
            memcpy(out + *o, esc, 3);
        else
            out[*o] = (char)c;
        *o += n;
    }
    return POLICY_HTTP_OK;
}

static bool is_dot(const char *s, size_t len)
{
    return len == 1 && s[0] == '.';
}

static bool is_dotdot(const char *s, size_t len)
{
    return len == 2 && s[0] == '.' && s[1] == '.';
}

/*
 * The path of policy.h, built in place: each segment is decoded after a '/'
 * in out, then looked at.  Empty segments are kept while dot segments are
 * removed (so a ".." that would remove one is seen), and merged at the end.
 */
enum policy_http_error http_path_normalize(const char *raw, size_t len, unsigned flags, char *out,
                                           size_t outlen, size_t *ret_len)
{
    size_t o = 0;
    bool trailing = false;

    *ret_len = 0;
    if (outlen == 0)
        return POLICY_HTTP_E_TOO_LONG;
    out[0] = '\0';
    if (len == 0 || raw[0] != '/')
        return POLICY_HTTP_E_NOT_ORIGIN_FORM;

    for (size_t i = 1;;) {
        size_t end = i;
        while (end < len && raw[end] != '/')
            end++;
        bool last = end == len;
        size_t mark = o;

        if (outlen - o <= 1)
            return POLICY_HTTP_E_TOO_LONG;
        out[o++] = '/';
        enum policy_http_error e = segment_decode(raw + i, end - i, flags, out, outlen, &o);
        if (e != POLICY_HTTP_OK)
            return e;
        const char *seg = out + mark + 1;
        size_t seglen = o - mark - 1;
        trailing = false;

        if (is_dot(seg, seglen) || is_dotdot(seg, seglen)) {
            if (flags & HTTP_PATH_F_GLOB)
                return POLICY_HTTP_E_DOT_SEGMENT;
            bool up = seglen == 2;
            o = mark;
            if (up && o > 0) {
                /* The segment to remove is out[last '/' + 1 .. o). */
                if (out[o - 1] == '/')
                    return POLICY_HTTP_E_AMBIGUOUS_DOTS;
                while (o > 0 && out[o - 1] != '/')
                    o--;
                o--; /* its '/' */
            }
            trailing = last;
        } else if (seglen == 0 && !last && (flags & HTTP_PATH_F_GLOB)) {
            return POLICY_HTTP_E_EMPTY_SEGMENT;
        } else {
            const char *semi = memchr(seg, ';', seglen);
            if (semi && (is_dot(seg, (size_t)(semi - seg)) || is_dotdot(seg, (size_t)(semi - seg))))
                return POLICY_HTTP_E_AMBIGUOUS_DOTS;
        }
        if (last)
            break;
        i = end + 1;
    }
    if (trailing) {
        if (outlen - o <= 1)
            return POLICY_HTTP_E_TOO_LONG;
        out[o++] = '/';
    }

    /* Merge empty segments: "//" becomes "/", and "" becomes "/". */
    size_t w = 0;
    for (size_t r = 0; r < o; r++)
        if (out[r] != '/' || w == 0 || out[w - 1] != '/')
            out[w++] = out[r];
    if (w == 0)
        out[w++] = '/';
    out[w] = '\0';
    *ret_len = w;
    return POLICY_HTTP_OK;
}

/* Decode one query component (name or value) raw[0..len) into out at *o, NUL-terminated. */
static enum policy_http_error query_decode(const char *raw, size_t len, char *out, size_t outlen,
                                           size_t *o)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            enum policy_http_error e = percent_decode(raw, len, i, &c);
            if (e != POLICY_HTTP_OK)
                return e;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        } else if (raw_char_bad(c)) {
            return POLICY_HTTP_E_BAD_CHAR;
        }
        if (outlen - *o <= 1)
            return POLICY_HTTP_E_TOO_LONG;
        out[(*o)++] = (char)c;
    }
    if (outlen - *o < 1)
        return POLICY_HTTP_E_TOO_LONG;
    out[(*o)++] = '\0';
    return POLICY_HTTP_OK;
}

/* The query of policy.h into t->params and t->qbuf. */
static enum policy_http_error query_parse(const char *q, size_t len, struct policy_http_target *t)
{
    size_t o = 0;

    for (size_t i = 0; i <= len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        if (end > i) {
            if (t->n_params == POLICY_HTTP_MAX_QUERY_PARAMS)
                return POLICY_HTTP_E_TOO_MANY_PARAMS;
            const char *eq = memchr(q + i, '=', end - i);
            size_t name_end = eq ? (size_t)(eq - q) : end;
            struct policy_http_param *p = &t->params[t->n_params];
            enum policy_http_error e;

            p->name_off = (uint32_t)o;
            e = query_decode(q + i, name_end - i, t->qbuf, sizeof(t->qbuf), &o);
            if (e != POLICY_HTTP_OK)
                return e;
            p->name_len = (uint32_t)(o - 1 - p->name_off);
            p->value_off = (uint32_t)o;
            if (eq)
                e = query_decode(eq + 1, end - name_end - 1, t->qbuf, sizeof(t->qbuf), &o);
            else
                e = query_decode("", 0, t->qbuf, sizeof(t->qbuf), &o);
            if (e != POLICY_HTTP_OK)
                return e;
            p->value_len = (uint32_t)(o - 1 - p->value_off);
            t->n_params++;
        }
        i = end + 1;
    }
    return POLICY_HTTP_OK;
}

/* See policy.h. */
enum policy_http_error policy_http_target_parse(const char *target, size_t len,
                                                bool allow_encoded_slash,
                                                struct policy_http_target *ret)
{
    ret->path[0] = '\0';
    ret->path_len = 0;
    ret->n_params = 0;
    if (len > POLICY_HTTP_MAX_TARGET)
        return POLICY_HTTP_E_TOO_LONG;
    if (len == 0 || target[0] != '/')
        return POLICY_HTTP_E_NOT_ORIGIN_FORM;

    const char *qm = memchr(target, '?', len);
    size_t plen = qm ? (size_t)(qm - target) : len;
    enum policy_http_error e =
        http_path_normalize(target, plen, allow_encoded_slash ? HTTP_PATH_F_ENCODED_SLASH : 0,
                            ret->path, sizeof(ret->path), &ret->path_len);
    if (e != POLICY_HTTP_OK)
        return e;
    if (qm)
        e = query_parse(qm + 1, len - plen - 1, ret);
    return e;
}
