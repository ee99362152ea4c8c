/*
 * The error responses the caller writes instead of forwarding a request:
 * 403 for a policy denial and 400 for a malformed request.  Both close the
 * connection and carry a small JSON body.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "inspect.h"

/* A writer that only counts when buf is NULL, so the body can be measured
 * before the head (Content-Length) is written. */
struct out {
    char *buf;
    size_t size;
    size_t pos;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->buf && o->pos < o->size) {
        size_t room = o->size - o->pos;
        memcpy(o->buf + o->pos, s, n < room ? n : room);
    }
    o->pos += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

static void put_json_string(struct out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!s) {
        puts_(o, "null");
        return;
    }
    puts_(o, "\"");
    while (*s) {
        char esc[8];
        size_t n;
        switch (*s) {
        case '"':
            puts_(o, "\\\"");
            break;
        case '\\':
            puts_(o, "\\\\");
            break;
        case '\n':
            puts_(o, "\\n");
            break;
        case '\r':
            puts_(o, "\\r");
            break;
        case '\t':
            puts_(o, "\\t");
            break;
        default:
            if (*s < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", *s);
                puts_(o, esc);
            } else if ((n = utf8_len(s)) == 0) {
                puts_(o, "\\ufffd");
            } else {
                /* a NUL inside a sequence makes utf8_len() return 0 */
                put(o, (const char *)s, n);
                s += n;
                continue;
            }
        }
        s++;
    }
    puts_(o, "\"");
}

/* Only printable ASCII may reach a header value: no CR/LF injection. */
static void put_header_value(struct out *o, const char *s)
{
    if (!s) {
        puts_(o, "-");
        return;
    }
    for (; *s; s++) {
        char c = (*s >= 0x20 && *s <= 0x7e) ? *s : '?';
        put(o, &c, 1);
    }
}

static int finish(struct out *o)
{
    if (o->pos >= o->size || o->pos > 0x7fffffff)
        return -ENOSPC;
    o->buf[o->pos] = '\0';
    return (int)o->pos;
}

static void put_body_403(struct out *o, const char *policy, const char *rule, const char *detail)
{
    puts_(o, "{\"error\":\"policy_denied\",\"policy\":");
    put_json_string(o, policy);
    puts_(o, ",\"rule\":");
    put_json_string(o, rule);
    puts_(o, ",\"detail\":");
    put_json_string(o, detail);
    puts_(o, "}\n");
}

int http_format_403(const char *policy, const char *rule, const char *detail, char *buf, size_t len)
{
    struct out count = {0}, o = {buf, len, 0};
    char cl[32];
    if (!buf)
        return -EINVAL;
    put_body_403(&count, policy, rule, detail);
    snprintf(cl, sizeof(cl), "%zu", count.pos);

    puts_(&o, "HTTP/1.1 403 Forbidden\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: ");
    puts_(&o, cl);
    puts_(&o, "\r\nX-Portcullis-Policy: ");
    put_header_value(&o, policy);
    puts_(&o, "\r\nConnection: close\r\n\r\n");
    put_body_403(&o, policy, rule, detail);
    return finish(&o);
}

static void put_body_400(struct out *o, const char *reason)
{
    puts_(o, "{\"error\":\"bad_request\",\"detail\":");
    put_json_string(o, reason);
    puts_(o, "}\n");
}

int http_format_400(const char *reason, char *buf, size_t len)
{
    struct out count = {0}, o = {buf, len, 0};
    char cl[32];
    if (!buf)
        return -EINVAL;
    put_body_400(&count, reason);
    snprintf(cl, sizeof(cl), "%zu", count.pos);

    puts_(&o, "HTTP/1.1 400 Bad Request\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: ");
    puts_(&o, cl);
    puts_(&o, "\r\nConnection: close\r\n\r\n");
    put_body_400(&o, reason);
    return finish(&o);
}
