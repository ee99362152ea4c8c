/*
 * tlshello: a TLS ClientHello parser over a peeked prefix (see tlshello.h).
 *
 * The handshake message is read through a cursor that walks the records as
 * it goes, so a message fragmented over many records needs no reassembly
 * buffer.  Parsing is strictly sequential and every decision uses only bytes
 * already read: on a prefix of some input the parser either stops at the
 * first missing byte (NEED_MORE, or TOO_LARGE when that byte lies beyond
 * TLS_HELLO_MAX_BYTES) or makes the decision it would make on the whole
 * input.  So a prefix of a good ClientHello is always NEED_MORE, and an answer
 * other than NEED_MORE never changes when more bytes arrive.
 */
#include <string.h>

#include "tlshello.h"

#define REC_HEADER 5
#define REC_MAX_BODY 16384 /* 2^14: RFC 8446 5.1, plaintext records */
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define HS_HEADER 4

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43
#define SNI_HOST_NAME 0

#define TRY(x)                                                                                     \
    do {                                                                                           \
        enum tls_hello_status s_ = (x);                                                            \
        if (s_ != TLS_HELLO_OK)                                                                    \
            return s_;                                                                             \
    } while (0)

struct cursor {
    const uint8_t *buf;
    size_t len;
    size_t pos;      /* next byte of buf: inside a record body, or a record header */
    size_t rec_left; /* body bytes of the current record not read yet */
    size_t n_rec;    /* records started */
    size_t off;      /* handshake message bytes read */
    size_t hs_total; /* HS_HEADER + message length; 0 until the header is read */
};

/* Byte buf[at] is needed but not there: wait for it, unless the caller could
 * never give it to us.  check_budget() already stops any record, or the
 * header of a record still to come, from reaching past the limit, so the
 * TOO_LARGE here is a guard: a caller that has peeked TLS_HELLO_MAX_BYTES
 * must never be told to wait. */
static enum tls_hello_status need(size_t at)
{
    return at >= TLS_HELLO_MAX_BYTES ? TLS_HELLO_TOO_LARGE : TLS_HELLO_NEED_MORE;
}

/* The current record must end within TLS_HELLO_MAX_BYTES.  Once the message
 * length is known, it must also not run past the message (nothing else may
 * share the ClientHello's records), and what is left of the message must
 * still fit in one more record. */
static enum tls_hello_status check_budget(const struct cursor *c)
{
    size_t rec_end = c->pos + c->rec_left;
    if (rec_end > TLS_HELLO_MAX_BYTES)
        return TLS_HELLO_TOO_LARGE;
    if (c->hs_total == 0)
        return TLS_HELLO_OK;
    size_t rest = c->hs_total - c->off;
    if (c->rec_left > rest)
        return TLS_HELLO_MALFORMED;
    rest -= c->rec_left;
    /* at least one more record header for what is left */
    if (rest > 0 && rest + REC_HEADER > TLS_HELLO_MAX_BYTES - rec_end)
        return TLS_HELLO_TOO_LARGE;
    return TLS_HELLO_OK;
}

/* Read the header of the next record at c->pos.  The first record decides
 * NOT_TLS from its first three bytes, each as soon as it is there; later
 * records that are not handshake records are MALFORMED. */
static enum tls_hello_status next_record(struct cursor *c)
{
    const uint8_t *b = c->buf + c->pos;
    size_t avail = c->len - c->pos;
    enum tls_hello_status bad = c->n_rec == 0 ? TLS_HELLO_NOT_TLS : TLS_HELLO_MALFORMED;

    if (avail < 1)
        return need(c->pos);
    if (b[0] != CT_HANDSHAKE)
        return bad;
    if (avail < 2)
        return need(c->pos + 1);
    if (b[1] != 3)
        return bad;
    if (avail < 3)
        return need(c->pos + 2);
    if (b[2] > 4)
        return bad;
    if (avail < REC_HEADER)
        return need(c->pos + REC_HEADER - 1);
    size_t body = (size_t)b[3] << 8 | b[4];
    if (body == 0 || body > REC_MAX_BODY)
        return TLS_HELLO_MALFORMED;
    c->pos += REC_HEADER;
    c->rec_left = body;
    c->n_rec++;
    return check_budget(c);
}

/* Read n handshake bytes into dst (NULL: skip them), crossing records. */
static enum tls_hello_status read_raw(struct cursor *c, uint8_t *dst, size_t n)
{
    while (n > 0) {
        if (c->rec_left == 0)
            TRY(next_record(c));
        if (c->pos >= c->len)
            return need(c->pos);
        size_t k = n;
        if (k > c->rec_left)
            k = c->rec_left;
        if (k > c->len - c->pos)
            k = c->len - c->pos;
        if (dst) {
            memcpy(dst, c->buf + c->pos, k);
            dst += k;
        }
        c->pos += k;
        c->rec_left -= k;
        c->off += k;
        n -= k;
    }
    return TLS_HELLO_OK;
}

/* Read n bytes of a structure that ends at handshake offset end: running past
 * end means the lengths do not add up, whatever bytes follow. */
static enum tls_hello_status take(struct cursor *c, size_t end, uint8_t *dst, size_t n)
{
    if (n > end - c->off)
        return TLS_HELLO_MALFORMED;
    return read_raw(c, dst, n);
}

static enum tls_hello_status take_u8(struct cursor *c, size_t end, size_t *ret)
{
    uint8_t b;
    TRY(take(c, end, &b, 1));
    *ret = b;
    return TLS_HELLO_OK;
}

static enum tls_hello_status take_u16(struct cursor *c, size_t end, size_t *ret)
{
    uint8_t b[2];
    TRY(take(c, end, b, 2));
    *ret = (size_t)b[0] << 8 | b[1];
    return TLS_HELLO_OK;
}

static bool sni_byte_ok(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

/* server_name (RFC 6066 3): a non-empty list of (name_type, opaque<1..2^16-1>).
 * Entries of other name types are skipped; a second host_name is MALFORMED. */
static enum tls_hello_status parse_sni(struct cursor *c, size_t end, struct tls_hello *h)
{
    size_t list;
    TRY(take_u16(c, end, &list));
    if (list == 0 || list != end - c->off)
        return TLS_HELLO_MALFORMED;
    while (c->off < end) {
        size_t type, n;
        TRY(take_u8(c, end, &type));
        TRY(take_u16(c, end, &n));
        if (type != SNI_HOST_NAME) {
            TRY(take(c, end, NULL, n));
            continue;
        }
        if (h->has_sni || n == 0 || n > TLS_HELLO_MAX_SNI)
            return TLS_HELLO_MALFORMED;
        TRY(take(c, end, (uint8_t *)h->sni, n));
        for (size_t i = 0; i < n; i++)
            if (!sni_byte_ok((uint8_t)h->sni[i]))
                return TLS_HELLO_MALFORMED;
        h->sni[n] = '\0';
        h->has_sni = true;
    }
    return TLS_HELLO_OK;
}

/* application_layer_protocol_negotiation (RFC 7301 3.1): a non-empty list of
 * opaque<1..2^8-1>.  Every name is counted; the first TLS_HELLO_MAX_ALPN that
 * fit in TLS_HELLO_MAX_ALPN_LEN bytes and hold no NUL (they are kept as C
 * strings) are kept. */
static enum tls_hello_status parse_alpn(struct cursor *c, size_t end, struct tls_hello *h)
{
    size_t list;
    TRY(take_u16(c, end, &list));
    if (list == 0 || list != end - c->off)
        return TLS_HELLO_MALFORMED;
    while (c->off < end) {
        uint8_t name[255];
        size_t n;
        TRY(take_u8(c, end, &n));
        if (n == 0)
            return TLS_HELLO_MALFORMED;
        TRY(take(c, end, name, n));
        h->n_alpn++;
        if (n > TLS_HELLO_MAX_ALPN_LEN || h->n_alpn_kept == TLS_HELLO_MAX_ALPN ||
            memchr(name, '\0', n))
            continue;
        memcpy(h->alpn[h->n_alpn_kept], name, n);
        h->alpn[h->n_alpn_kept][n] = '\0';
        h->n_alpn_kept++;
    }
    h->has_alpn = true;
    return TLS_HELLO_OK;
}

/* supported_versions, ClientHello form (RFC 8446 4.2.1): versions<2..254>. */
static enum tls_hello_status parse_versions(struct cursor *c, size_t end, struct tls_hello *h)
{
    size_t list;
    TRY(take_u8(c, end, &list));
    if (list < 2 || list % 2 != 0 || list != end - c->off)
        return TLS_HELLO_MALFORMED;
    while (c->off < end) {
        size_t v;
        TRY(take_u16(c, end, &v));
        if (v == 0x0304)
            h->offers_tls13 = true;
    }
    return TLS_HELLO_OK;
}

static enum tls_hello_status parse_extensions(struct cursor *c, size_t end, struct tls_hello *h)
{
    /* 8 KiB on the stack beats allocating, and beats an O(n^2) scan of up to
     * 4096 extensions through the record cursor. */
    uint64_t seen[65536 / 64];
    memset(seen, 0, sizeof(seen));

    while (c->off < end) {
        size_t type, n;
        TRY(take_u16(c, end, &type));
        TRY(take_u16(c, end, &n));
        if (n > end - c->off)
            return TLS_HELLO_MALFORMED;
        uint64_t bit = (uint64_t)1 << (type % 64);
        if (seen[type / 64] & bit)
            return TLS_HELLO_MALFORMED;
        seen[type / 64] |= bit;

        size_t ext_end = c->off + n;
        switch (type) {
        case EXT_SERVER_NAME:
            TRY(parse_sni(c, ext_end, h));
            break;
        case EXT_ALPN:
            TRY(parse_alpn(c, ext_end, h));
            break;
        case EXT_SUPPORTED_VERSIONS:
            TRY(parse_versions(c, ext_end, h));
            break;
        default:
            TRY(take(c, ext_end, NULL, n));
            break;
        }
        /* each parser above consumes exactly to ext_end or fails */
    }
    return TLS_HELLO_OK;
}

/* ClientHello body (RFC 8446 4.1.2; RFC 5246 7.4.1.2 for the optional
 * extensions block of TLS 1.2 and older). */
static enum tls_hello_status parse_body(struct cursor *c, struct tls_hello *h)
{
    size_t end = c->hs_total, n;

    TRY(take_u16(c, end, &n));
    h->legacy_version = (uint16_t)n;
    TRY(take(c, end, NULL, 32)); /* random */
    TRY(take_u8(c, end, &n));    /* legacy_session_id<0..32> */
    if (n > 32)
        return TLS_HELLO_MALFORMED;
    TRY(take(c, end, NULL, n));
    TRY(take_u16(c, end, &n)); /* cipher_suites<2..2^16-2> */
    if (n < 2 || n % 2 != 0)
        return TLS_HELLO_MALFORMED;
    TRY(take(c, end, NULL, n));
    TRY(take_u8(c, end, &n)); /* legacy_compression_methods<1..2^8-1> */
    if (n < 1)
        return TLS_HELLO_MALFORMED;
    TRY(take(c, end, NULL, n));
    if (c->off == end)
        return TLS_HELLO_OK; /* no extensions at all */
    TRY(take_u16(c, end, &n));
    if (n != end - c->off)
        return TLS_HELLO_MALFORMED; /* short block: trailing bytes in the body */
    return parse_extensions(c, end, h);
}

/*
 * Parse buf[0, len) as the records carrying a ClientHello.  *ret is written
 * only on TLS_HELLO_OK (ret may be NULL when only the status matters).
 */
enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *ret)
{
    struct cursor c = {.buf = buf, .len = len};
    struct tls_hello h;
    uint8_t hdr[HS_HEADER];

    if (!buf || len == 0)
        return TLS_HELLO_NEED_MORE;
    memset(&h, 0, sizeof(h));
    /* the first byte alone tells a ServerHello or a Finished apart */
    TRY(read_raw(&c, hdr, 1));
    if (hdr[0] != HS_CLIENT_HELLO)
        return TLS_HELLO_MALFORMED;
    TRY(read_raw(&c, hdr + 1, HS_HEADER - 1));
    c.hs_total = HS_HEADER + ((size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
    TRY(check_budget(&c));
    TRY(parse_body(&c, &h));
    /* check_budget() made every record end at or before the message's end */
    h.record_bytes = c.pos;
    if (ret)
        memcpy(ret, &h, sizeof(h));
    return TLS_HELLO_OK;
}

const char *tls_hello_status_name(enum tls_hello_status s)
{
    switch (s) {
    case TLS_HELLO_OK:
        return "ok";
    case TLS_HELLO_NEED_MORE:
        return "need_more";
    case TLS_HELLO_NOT_TLS:
        return "not_tls";
    case TLS_HELLO_MALFORMED:
        return "malformed";
    case TLS_HELLO_TOO_LARGE:
        return "too_large";
    case TLS_HELLO_STATUS_MAX:
        break;
    }
    return NULL;
}
