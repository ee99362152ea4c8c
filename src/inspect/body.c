/*
 * Message body framing: Content-Length, chunked (RFC 9112 7.1) and
 * close-delimited.  Our own, strict about CRLF in the chunk framing and the
 * trailer section, so the framing we forward is the framing we checked.
 */
#include <string.h>

#include "inspect-int.h"

enum chunk_state {
    CH_SIZE_START = 0, /* first hex digit of a chunk size */
    CH_SIZE,           /* more hex digits */
    CH_SIZE_WS,        /* BWS after the size: only ';' may follow */
    CH_EXT,            /* chunk extensions, up to CR */
    CH_SIZE_LF,        /* LF after the chunk-size line */
    CH_DATA,           /* chunk data */
    CH_DATA_CR,        /* CR after chunk data */
    CH_DATA_LF,        /* LF after chunk data */
    CH_TRAILER_START,  /* first byte of a trailer line, or CR of the last line */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF, /* LF of the final empty line */
};

void body_init(struct body_framer *b, enum http_body kind, uint64_t length,
               const struct head_limits *lim)
{
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    b->remaining = length;
    b->state = CH_SIZE_START;
    b->max_trailer_bytes = lim->max_head_bytes;
    b->max_trailers = lim->max_headers;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t feed_chunked(struct body_framer *b, const uint8_t *p, size_t len, bool *ret_done,
                           const char **ret_reason)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        int h;

        if (b->state == CH_DATA) {
            uint64_t take = len - i < b->remaining ? len - i : b->remaining;
            i += (size_t)take;
            b->remaining -= take;
            if (b->remaining == 0)
                b->state = CH_DATA_CR;
            continue;
        }

        if (b->state <= CH_SIZE_LF && ++b->line_len > CHUNK_LINE_MAX) {
            *ret_reason = "chunk-size line too long";
            return i;
        }
        if (b->state >= CH_TRAILER_START && ++b->trailer_bytes > b->max_trailer_bytes) {
            *ret_reason = "trailer section too large";
            return i;
        }

        switch (b->state) {
        case CH_SIZE_START:
        case CH_SIZE:
            h = hexval(c);
            if (h >= 0) {
                if (++b->digits > 16 || b->remaining > (UINT64_MAX >> 4)) {
                    *ret_reason = "chunk size too large";
                    return i;
                }
                b->remaining = (b->remaining << 4) | (uint64_t)h;
                b->state = CH_SIZE;
            } else if (b->state == CH_SIZE_START) {
                *ret_reason = "invalid chunk size";
                return i;
            } else if (c == '\r') {
                b->state = CH_SIZE_LF;
            } else if (c == ';') {
                b->state = CH_EXT;
            } else if (c == ' ' || c == '\t') {
                b->state = CH_SIZE_WS;
            } else {
                *ret_reason = "invalid chunk size";
                return i;
            }
            break;
        case CH_SIZE_WS:
            if (c == ';') {
                b->state = CH_EXT;
            } else if (c != ' ' && c != '\t') {
                *ret_reason = "whitespace after a chunk size";
                return i;
            }
            break;
        case CH_EXT:
            if (c == '\r') {
                b->state = CH_SIZE_LF;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                *ret_reason = c == '\n' ? "bare LF in chunk framing"
                                        : "control character in a chunk extension";
                return i;
            }
            break;
        case CH_SIZE_LF:
            if (c != '\n') {
                *ret_reason = "CR not followed by LF in chunk framing";
                return i;
            }
            b->line_len = 0;
            b->digits = 0;
            b->state = b->remaining ? CH_DATA : CH_TRAILER_START;
            break;
        case CH_DATA_CR:
            if (c != '\r') {
                *ret_reason = "chunk data not followed by CRLF";
                return i;
            }
            b->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                *ret_reason = "chunk data not followed by CRLF";
                return i;
            }
            b->state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                b->state = CH_END_LF;
            } else if (c == ' ' || c == '\t') {
                *ret_reason = "obs-fold in the trailer section";
                return i;
            } else if (http_tchar(c)) {
                if (++b->trailers > b->max_trailers) {
                    *ret_reason = "too many trailer fields";
                    return i;
                }
                b->state = CH_TRAILER_NAME;
            } else {
                *ret_reason =
                    c == '\n' ? "bare LF in the trailer section" : "invalid trailer field name";
                return i;
            }
            break;
        case CH_TRAILER_NAME:
            if (c == ':') {
                b->state = CH_TRAILER_VALUE;
            } else if (!http_tchar(c)) {
                *ret_reason = "invalid trailer field name";
                return i;
            }
            break;
        case CH_TRAILER_VALUE:
            if (c == '\r') {
                b->state = CH_TRAILER_LF;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                *ret_reason = c == '\n' ? "bare LF in the trailer section"
                                        : "control character in a trailer value";
                return i;
            }
            break;
        case CH_TRAILER_LF:
            if (c != '\n') {
                *ret_reason = "CR not followed by LF in the trailer section";
                return i;
            }
            b->state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (c != '\n') {
                *ret_reason = "CR not followed by LF in the trailer section";
                return i;
            }
            *ret_done = true;
            return i + 1;
        }
        i++;
    }
    return i;
}

size_t body_feed(struct body_framer *b, const uint8_t *p, size_t len, bool *ret_done,
                 const char **ret_reason)
{
    uint64_t take;
    *ret_done = false;
    *ret_reason = NULL;
    switch (b->kind) {
    case HTTP_BODY_LENGTH:
        take = len < b->remaining ? len : b->remaining;
        b->remaining -= take;
        *ret_done = b->remaining == 0;
        return (size_t)take;
    case HTTP_BODY_CHUNKED:
        return feed_chunked(b, p, len, ret_done, ret_reason);
    case HTTP_BODY_EOF:
        return len;
    case HTTP_BODY_NONE:
    case HTTP_BODY_MAX:
        break;
    }
    *ret_done = true;
    return 0;
}
