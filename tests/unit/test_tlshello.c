/*
 * Unit tests for src/tlshello.
 *
 * Good ClientHellos come from OpenSSL itself: a client SSL object on memory
 * BIOs is started, and the bytes it writes are what a real client would put
 * on the wire.  They are also re-recorded (the handshake message cut into
 * records of 1, 7 and 100 bytes) and passed as every prefix, the way a caller
 * peeking at a socket sees them arrive.  Error shapes are built by hand with
 * a small builder (struct bld), on top of a hand-built hello that is first
 * shown to parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tlshello.h"

#define BUF 70000

/* Compare statuses by name, so a failure says "need_more" != "ok". */
#define assert_status(got, want)                                                                   \
    assert_string_equal(tls_hello_status_name(got), tls_hello_status_name(want))

/* ---- OpenSSL as the client ---------------------------------------------- */

struct client {
    int max_version; /* 0: OpenSSL's default (TLS 1.3) */
    const char *sni;
    const char *const *alpn;
    size_t n_alpn;
    bool padding; /* SSL_OP_TLSEXT_PADDING */
};

static size_t alpn_wire(const char *const *names, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(names[i]);
        assert_true(k >= 1 && k <= 255 && len + 1 + k <= cap);
        out[len++] = (uint8_t)k;
        memcpy(out + len, names[i], k);
        len += k;
    }
    return len;
}

/* The bytes an OpenSSL client writes first: its ClientHello records. */
static size_t openssl_hello(const struct client *cl, uint8_t *out, size_t cap)
{
    static uint8_t wire[BUF];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (cl->max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, cl->max_version), 1);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    assert_non_null(rbio);
    assert_non_null(wbio);
    SSL_set_bio(ssl, rbio, wbio);
    if (cl->sni)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, cl->sni), 1);
    if (cl->n_alpn) {
        size_t n = alpn_wire(cl->alpn, cl->n_alpn, wire, sizeof(wire));
        assert_int_equal(SSL_set_alpn_protos(ssl, wire, (unsigned)n), 0); /* 0 is success */
    }
    if (cl->padding)
        SSL_set_options(ssl, SSL_OP_TLSEXT_PADDING);
    SSL_set_connect_state(ssl);
    int r = SSL_do_handshake(ssl);
    assert_int_equal(r, -1);
    assert_int_equal(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ);
    size_t n = BIO_ctrl_pending(wbio);
    assert_true(n > 0 && n <= cap);
    assert_int_equal(BIO_read(wbio, out, (int)n), (int)n);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n;
}

/* ---- records ------------------------------------------------------------ */

/* The handshake message carried by the handshake records at the start of
 * rec (records must be handshake records). */
static size_t unrecord(const uint8_t *rec, size_t len, uint8_t *msg)
{
    size_t pos = 0, mlen = 0;
    while (mlen < 4 || mlen < 4 + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3])) {
        assert_true(pos + 5 <= len);
        assert_int_equal(rec[pos], 22);
        size_t body = (size_t)rec[pos + 3] << 8 | rec[pos + 4];
        assert_true(pos + 5 + body <= len);
        memcpy(msg + mlen, rec + pos + 5, body);
        mlen += body;
        pos += 5 + body;
    }
    return mlen;
}

/* msg cut into handshake records of at most chunk bytes, version 0x0301. */
static size_t rerecord(const uint8_t *msg, size_t mlen, size_t chunk, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < mlen; i += chunk) {
        size_t k = mlen - i < chunk ? mlen - i : chunk;
        assert_true(n + 5 + k <= cap);
        out[n++] = 22;
        out[n++] = 3;
        out[n++] = 1;
        out[n++] = (uint8_t)(k >> 8);
        out[n++] = (uint8_t)k;
        memcpy(out + n, msg + i, k);
        n += k;
    }
    return n;
}

static void assert_same_hello(const struct tls_hello *a, const struct tls_hello *b)
{
    assert_int_equal(a->has_sni, b->has_sni);
    assert_string_equal(a->sni, b->sni);
    assert_int_equal(a->has_alpn, b->has_alpn);
    assert_int_equal(a->n_alpn, b->n_alpn);
    assert_int_equal(a->n_alpn_kept, b->n_alpn_kept);
    for (size_t i = 0; i < a->n_alpn_kept; i++)
        assert_string_equal(a->alpn[i], b->alpn[i]);
    assert_int_equal(a->legacy_version, b->legacy_version);
    assert_int_equal(a->offers_tls13, b->offers_tls13);
}

/* Every strict prefix is NEED_MORE, the whole is OK and equal to *want. */
static void assert_prefixes(const uint8_t *buf, size_t len, const struct tls_hello *want)
{
    struct tls_hello h;
    for (size_t i = 0; i < len; i++) {
        enum tls_hello_status s = tls_hello_parse(buf, i, &h);
        if (s != TLS_HELLO_NEED_MORE)
            fprintf(stderr, "prefix %zu of %zu: %s\n", i, len, tls_hello_status_name(s));
        assert_status(s, TLS_HELLO_NEED_MORE);
    }
    assert_status(tls_hello_parse(buf, len, &h), TLS_HELLO_OK);
    assert_same_hello(&h, want);
    assert_int_equal(h.record_bytes, len);
}

/* The shortest prefix of buf[0, len) that is not NEED_MORE (all shorter
 * ones are); len + 1 if there is none. */
static size_t first_decided(const uint8_t *buf, size_t len)
{
    struct tls_hello h;
    for (size_t i = 0; i <= len; i++)
        if (tls_hello_parse(buf, i, &h) != TLS_HELLO_NEED_MORE)
            return i;
    return len + 1;
}

/* ---- hand-built hellos -------------------------------------------------- */

struct bld {
    uint8_t b[BUF];
    size_t n;
    size_t open[8];
    size_t width[8];
    int depth;
};

static void put(struct bld *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    assert_true(b->n + n <= sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void u8(struct bld *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}

static void u16(struct bld *b, unsigned v)
{
    u8(b, v >> 8);
    u8(b, v);
}

/* A vector whose length (width bytes) is filled in by close_vec(). */
static void open_vec(struct bld *b, size_t width)
{
    assert_true(b->depth < 8);
    b->open[b->depth] = b->n;
    b->width[b->depth++] = width;
    for (size_t i = 0; i < width; i++)
        u8(b, 0);
}

static void close_vec(struct bld *b)
{
    assert_true(b->depth > 0);
    b->depth--;
    size_t at = b->open[b->depth], w = b->width[b->depth];
    size_t len = b->n - at - w;
    for (size_t i = 0; i < w; i++)
        b->b[at + i] = (uint8_t)(len >> (8 * (w - 1 - i)));
}

static void ext_begin(struct bld *b, unsigned type)
{
    u16(b, type);
    open_vec(b, 2);
}

static void ext_sni(struct bld *b, const char *name, size_t n)
{
    ext_begin(b, 0);
    open_vec(b, 2);
    u8(b, 0);
    u16(b, (unsigned)n);
    put(b, name, n);
    close_vec(b);
    close_vec(b);
}

static void ext_alpn(struct bld *b, const char *const *names, size_t n)
{
    ext_begin(b, 16);
    open_vec(b, 2);
    for (size_t i = 0; i < n; i++) {
        u8(b, (unsigned)strlen(names[i]));
        put(b, names[i], strlen(names[i]));
    }
    close_vec(b);
    close_vec(b);
}

static void ext_versions(struct bld *b, const unsigned *v, size_t n)
{
    ext_begin(b, 43);
    open_vec(b, 1);
    for (size_t i = 0; i < n; i++)
        u16(b, v[i]);
    close_vec(b);
    close_vec(b);
}

static void ext_opaque(struct bld *b, unsigned type, size_t n)
{
    ext_begin(b, type);
    for (size_t i = 0; i < n; i++)
        u8(b, 0);
    close_vec(b);
}

/* A ClientHello body up to and including the compression methods. */
static void body_start(struct bld *b, unsigned version, size_t sid, size_t cs_bytes, size_t cm)
{
    u16(b, version);
    for (int i = 0; i < 32; i++)
        u8(b, i);
    u8(b, (unsigned)sid);
    for (size_t i = 0; i < sid; i++)
        u8(b, 0xee);
    u16(b, (unsigned)cs_bytes);
    for (size_t i = 0; i < cs_bytes; i++)
        u8(b, i % 2 ? 0x01 : 0x13);
    u8(b, (unsigned)cm);
    for (size_t i = 0; i < cm; i++)
        u8(b, 0);
}

/* Handshake message of the given type around body. */
static size_t wrap_msg(unsigned type, const struct bld *body, uint8_t *out)
{
    out[0] = (uint8_t)type;
    out[1] = (uint8_t)(body->n >> 16);
    out[2] = (uint8_t)(body->n >> 8);
    out[3] = (uint8_t)body->n;
    memcpy(out + 4, body->b, body->n);
    return 4 + body->n;
}

static struct bld E, Y;
static uint8_t M[BUF], R[BUF], R2[BUF];

/* Records (one, or chunked when the message is bigger than 2^14) of a
 * standard hello whose extensions block holds E. */
static size_t hello_with(const struct bld *exts)
{
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 4, 1);
    open_vec(&Y, 2);
    put(&Y, exts->b, exts->n);
    close_vec(&Y);
    size_t m = wrap_msg(1, &Y, M);
    return rerecord(M, m, 16384, R, sizeof(R));
}

/* Records of a hello whose body after the compression methods is tail. */
static size_t hello_tail(const void *tail, size_t n)
{
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 4, 1);
    put(&Y, tail, n);
    size_t m = wrap_msg(1, &Y, M);
    return rerecord(M, m, 16384, R, sizeof(R));
}

static enum tls_hello_status parse_exts(const struct bld *exts, struct tls_hello *h)
{
    size_t n = hello_with(exts);
    return tls_hello_parse(R, n, h);
}

static int reset(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    return 0;
}

static const char *const H2_H11[] = {"h2", "http/1.1"};

/* ---- real hellos -------------------------------------------------------- */

static void test_openssl_tls13_sni_alpn(void **state)
{
    (void)state;
    struct client cl = {.sni = "api.github.com", .alpn = H2_H11, .n_alpn = 2};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_true(h.has_sni);
    assert_string_equal(h.sni, "api.github.com");
    assert_true(h.has_alpn);
    assert_int_equal(h.n_alpn, 2);
    assert_int_equal(h.n_alpn_kept, 2);
    assert_string_equal(h.alpn[0], "h2");
    assert_string_equal(h.alpn[1], "http/1.1");
    assert_int_equal(h.legacy_version, 0x0303);
    assert_true(h.offers_tls13);
    assert_int_equal(h.record_bytes, n);
    assert_prefixes(R, n, &h);
}

static void test_openssl_tls12_only(void **state)
{
    (void)state;
    struct client cl = {.max_version = TLS1_2_VERSION, .sni = "example.org"};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_true(h.has_sni);
    assert_string_equal(h.sni, "example.org");
    assert_false(h.has_alpn);
    assert_int_equal(h.n_alpn, 0);
    assert_int_equal(h.legacy_version, 0x0303);
    assert_false(h.offers_tls13);
    assert_int_equal(h.record_bytes, n);
    assert_prefixes(R, n, &h);
}

static void test_openssl_no_sni_no_alpn(void **state)
{
    (void)state;
    struct client cl = {0};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    memset(&h, 0x5a, sizeof(h));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_false(h.has_sni);
    assert_string_equal(h.sni, "");
    assert_false(h.has_alpn);
    assert_int_equal(h.n_alpn, 0);
    assert_int_equal(h.n_alpn_kept, 0);
    assert_true(h.offers_tls13);
    assert_int_equal(h.record_bytes, n);
}

static void test_openssl_tls12_alpn_no_sni(void **state)
{
    (void)state;
    struct client cl = {.max_version = TLS1_2_VERSION, .alpn = H2_H11, .n_alpn = 2};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_false(h.has_sni);
    assert_true(h.has_alpn);
    assert_int_equal(h.n_alpn, 2);
    assert_string_equal(h.alpn[1], "http/1.1");
    assert_false(h.offers_tls13);
}

/* An IP literal is not a valid SNI (RFC 6066), but its bytes are allowed:
 * it passes through as sent, and policy decides what to make of it. */
static void test_openssl_ip_literal_sni(void **state)
{
    (void)state;
    struct client cl = {.sni = "192.0.2.10"};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_true(h.has_sni);
    assert_string_equal(h.sni, "192.0.2.10");

    /* ':' is not an allowed byte */
    cl.sni = "2001:db8::1";
    n = openssl_hello(&cl, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
}

static void test_openssl_padding(void **state)
{
    (void)state;
    /* OpenSSL pads handshake messages of 256..511 bytes to 512 (the F5
     * workaround); this one is 330 bytes without. */
    struct client cl = {.sni = "pad.example", .alpn = H2_H11, .n_alpn = 2, .padding = true};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    assert_int_equal(n, 5 + 512);
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "pad.example");
    assert_prefixes(R, n, &h);
}

static void test_openssl_ten_alpn(void **state)
{
    (void)state;
    static const char *const names[] = {"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"};
    struct client cl = {.sni = "x.test", .alpn = names, .n_alpn = 10};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_true(h.has_alpn);
    assert_int_equal(h.n_alpn, 10);
    assert_int_equal(h.n_alpn_kept, 8);
    for (int i = 0; i < 8; i++)
        assert_string_equal(h.alpn[i], names[i]);
}

static void test_openssl_long_alpn_name(void **state)
{
    (void)state;
    static const char *const names[] = {"h2",
                                        "0123456789012345678901234567890123456789",
                                        "0123456789012345678901234567890", /* 31 */
                                        "01234567890123456789012345678901" /* 32 */,
                                        "012345678901234567890123456789012" /* 33 */,
                                        "http/1.1"};
    struct client cl = {.sni = "x.test", .alpn = names, .n_alpn = 6};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_int_equal(h.n_alpn, 6);
    assert_int_equal(h.n_alpn_kept, 4);
    assert_string_equal(h.alpn[0], "h2");
    assert_string_equal(h.alpn[1], names[2]);
    assert_string_equal(h.alpn[2], names[3]);
    assert_string_equal(h.alpn[3], "http/1.1");
}

static char big_names[300][24];
static const char *big_ptrs[300];

/* 300 ALPN names: a ~6.6 KB hello, one record. */
static size_t big_hello(size_t count)
{
    for (size_t i = 0; i < count; i++) {
        snprintf(big_names[i], sizeof(big_names[i]), "proto-%03u-abcdefghijklm",
                 (unsigned)(i % 1000));
        big_ptrs[i] = big_names[i];
    }
    struct client cl = {.sni = "big.example.com", .alpn = big_ptrs, .n_alpn = count};
    return openssl_hello(&cl, R, sizeof(R));
}

static void test_openssl_big_hello(void **state)
{
    (void)state;
    size_t n = big_hello(300);
    assert_true(n > 6000);
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "big.example.com");
    assert_int_equal(h.n_alpn, 300);
    assert_int_equal(h.n_alpn_kept, 8);
    assert_string_equal(h.alpn[7], big_names[7]);
    assert_int_equal(h.record_bytes, n);
    assert_prefixes(R, n, &h);
}

/* An OpenSSL hello with ALPN names worth 20 KB: OpenSSL sends it as two
 * records; more than TLS_HELLO_MAX_BYTES are needed, and the handshake
 * header alone says so. */
static void test_openssl_oversize(void **state)
{
    (void)state;
    static char names[800][26];
    static const char *ptrs[800];
    for (size_t i = 0; i < 800; i++) {
        snprintf(names[i], sizeof(names[i]), "oversize-%03u-abcdefghijkl", (unsigned)(i % 1000));
        ptrs[i] = names[i];
    }
    struct client cl = {.sni = "big.example.com", .alpn = ptrs, .n_alpn = 800};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    assert_true(n > TLS_HELLO_MAX_BYTES);
    assert_int_equal(R[3] << 8 | R[4], 16384); /* a full first record */
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_TOO_LARGE);
    assert_status(tls_hello_parse(R, TLS_HELLO_MAX_BYTES, &h), TLS_HELLO_TOO_LARGE);
    /* the first record cannot fit with its header: known from its header */
    assert_status(tls_hello_parse(R, 5, &h), TLS_HELLO_TOO_LARGE);
    assert_status(tls_hello_parse(R, 4, &h), TLS_HELLO_NEED_MORE);
}

/* The handshake message re-cut into 1-, 7- and 100-byte records (and 5000,
 * bigger than the message): same result, and every prefix of the records
 * (records split across segments anywhere) is NEED_MORE. */
static void test_fragmented(void **state)
{
    (void)state;
    struct client cl = {.sni = "frag.example.net", .alpn = H2_H11, .n_alpn = 2};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello want, h;
    assert_status(tls_hello_parse(R, n, &want), TLS_HELLO_OK);
    size_t m = unrecord(R, n, M);
    assert_int_equal(m + 5, n);

    static const size_t chunks[] = {1, 7, 100, 5000};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        size_t k = rerecord(M, m, chunks[i], R2, sizeof(R2));
        assert_int_equal(k, m + 5 * ((m + chunks[i] - 1) / chunks[i]));
        assert_true(k <= TLS_HELLO_MAX_BYTES);
        assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_OK);
        assert_same_hello(&h, &want);
        assert_int_equal(h.record_bytes, k);
        assert_prefixes(R2, k, &want);
    }
}

/* The big hello in 1-byte records needs ~40 KB: TOO_LARGE.  The parser
 * assumes what is left may come in one more record, so it finds out as the
 * records go, at the latest at the limit, and is NEED_MORE until then.  In
 * 100-byte records it fits. */
static void test_fragmented_too_large(void **state)
{
    (void)state;
    size_t n = big_hello(300);
    size_t m = unrecord(R, n, M);
    size_t k = rerecord(M, m, 1, R2, sizeof(R2));
    assert_true(k > TLS_HELLO_MAX_BYTES);
    struct tls_hello h;
    assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_TOO_LARGE);
    size_t at = first_decided(R2, k);
    assert_status(tls_hello_parse(R2, at, &h), TLS_HELLO_TOO_LARGE);
    /* Known at the header of the record carrying hello byte x + 1 (x bytes
     * read, in 6x record bytes) once that record, one more header and the
     * rest cannot fit: 6x + 6 + 5 + (m - x - 1) > MAX. */
    size_t x = (TLS_HELLO_MAX_BYTES - m - 10) / 5 + 1;
    assert_int_equal(at, 6 * x + 5);

    k = rerecord(M, m, 100, R2, sizeof(R2));
    assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_OK);
    assert_int_equal(h.n_alpn, 300);
    assert_int_equal(h.record_bytes, k);
}

/* What follows the hello's records (a compatibility CCS, early data,
 * anything) is not looked at. */
static void test_trailing_records_ignored(void **state)
{
    (void)state;
    struct client cl = {.sni = "api.github.com"};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    struct tls_hello want, h;
    assert_status(tls_hello_parse(R, n, &want), TLS_HELLO_OK);
    static const uint8_t after[] = {20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xde, 0xad, 0xff};
    memcpy(R + n, after, sizeof(after));
    for (size_t i = 0; i <= sizeof(after); i++) {
        assert_status(tls_hello_parse(R, n + i, &h), TLS_HELLO_OK);
        assert_int_equal(h.record_bytes, n);
        assert_same_hello(&h, &want);
    }
    /* and so is anything beyond TLS_HELLO_MAX_BYTES */
    memset(R + n, 0xff, BUF - n);
    assert_status(tls_hello_parse(R, BUF, &h), TLS_HELLO_OK);
    assert_int_equal(h.record_bytes, n);
}

/* ---- hand-built: the builder's baseline --------------------------------- */

static void test_hand_built_ok(void **state)
{
    (void)state;
    static const unsigned v[] = {0x0a0a, 0x0304, 0x0303};
    ext_opaque(&E, 0x0a0a, 0); /* GREASE */
    ext_sni(&E, "Sub_1.example-host.COM", 22);
    ext_opaque(&E, 10, 8); /* supported_groups, contents not looked at */
    ext_alpn(&E, H2_H11, 2);
    ext_versions(&E, v, 3);
    ext_opaque(&E, 21, 300); /* padding */
    ext_opaque(&E, 0x1a1a, 1);
    struct tls_hello h;
    size_t n = hello_with(&E);
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_true(h.has_sni);
    assert_string_equal(h.sni, "Sub_1.example-host.COM");
    assert_int_equal(h.n_alpn, 2);
    assert_string_equal(h.alpn[0], "h2");
    assert_true(h.offers_tls13);
    assert_int_equal(h.legacy_version, 0x0303);
    assert_int_equal(h.record_bytes, n);
    assert_prefixes(R, n, &h);
}

static void test_no_extensions(void **state)
{
    (void)state;
    struct tls_hello h;
    /* TLS 1.2 and older may omit the extensions block entirely */
    size_t n = hello_tail(NULL, 0);
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_false(h.has_sni);
    assert_false(h.has_alpn);
    assert_false(h.offers_tls13);
    /* or send an empty one */
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_false(h.has_sni);
    /* a lone byte where the block's length would be */
    static const uint8_t one[] = {0};
    n = hello_tail(one, 1);
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
}

static void test_legacy_version(void **state)
{
    (void)state;
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0301, 0, 2, 1);
    size_t m = wrap_msg(1, &Y, M);
    size_t n = rerecord(M, m, 16384, R, sizeof(R));
    R[2] = 0; /* record version 0x0300 is fine too */
    struct tls_hello h;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_int_equal(h.legacy_version, 0x0301);
    R[2] = 4;
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
}

static void test_supported_versions(void **state)
{
    (void)state;
    struct tls_hello h;
    static const unsigned v12[] = {0x0303, 0x0302};
    ext_versions(&E, v12, 2);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_false(h.offers_tls13);

    reset(NULL);
    static const unsigned v13[] = {0x0304};
    ext_versions(&E, v13, 1);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_true(h.offers_tls13);

    /* list length odd, empty, or not matching the extension */
    static const uint8_t odd[] = {0, 43, 0, 4, 3, 3, 4, 3};
    static const uint8_t empty[] = {0, 43, 0, 1, 0};
    static const uint8_t shortl[] = {0, 43, 0, 5, 2, 3, 4, 3, 3};
    static const uint8_t longl[] = {0, 43, 0, 3, 4, 3, 4};
    const struct {
        const uint8_t *b;
        size_t n;
    } bad[] = {{odd, sizeof(odd)},
               {empty, sizeof(empty)},
               {shortl, sizeof(shortl)},
               {longl, sizeof(longl)}};
    for (size_t i = 0; i < 4; i++) {
        reset(NULL);
        put(&E, bad[i].b, bad[i].n);
        assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    }
}

/* ---- hand-built: SNI ---------------------------------------------------- */

static void test_missing_sni(void **state)
{
    (void)state;
    ext_alpn(&E, H2_H11, 2);
    ext_opaque(&E, 13, 4);
    struct tls_hello h;
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_false(h.has_sni);
    assert_string_equal(h.sni, "");
    assert_int_equal(h.n_alpn, 2);
}

static void test_duplicate_extension(void **state)
{
    (void)state;
    struct tls_hello h;
    ext_opaque(&E, 13, 4);
    ext_sni(&E, "a.example", 9);
    ext_opaque(&E, 13, 2);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);

    /* two server_name extensions, each valid */
    reset(NULL);
    ext_sni(&E, "a.example", 9);
    ext_sni(&E, "b.example", 9);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);

    /* type 0xffff twice, at the bitmap's far end */
    reset(NULL);
    ext_opaque(&E, 0xffff, 0);
    ext_opaque(&E, 0xfffe, 0);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    ext_opaque(&E, 0xffff, 1);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
}

static void test_two_host_names(void **state)
{
    (void)state;
    struct tls_hello h;
    ext_begin(&E, 0);
    open_vec(&E, 2);
    u8(&E, 0);
    u16(&E, 9);
    put(&E, "a.example", 9);
    u8(&E, 0);
    u16(&E, 9);
    put(&E, "b.example", 9);
    close_vec(&E);
    close_vec(&E);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);

    /* a host_name and an entry of another name type: the other is skipped */
    reset(NULL);
    ext_begin(&E, 0);
    open_vec(&E, 2);
    u8(&E, 7);
    u16(&E, 3);
    put(&E, "\x01\x02\x03", 3);
    u8(&E, 0);
    u16(&E, 9);
    put(&E, "a.example", 9);
    close_vec(&E);
    close_vec(&E);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "a.example");
}

static void test_invalid_sni(void **state)
{
    (void)state;
    struct tls_hello h;
    static const struct {
        const char *name;
        size_t len;
    } bad[] = {
        {"a b.example", 11},
        {"a\0b.example", 11},
        {"a/b.example", 11},
        {"a:443", 5},
        {"\xc3\xa9t\xc3\xa9.fr", 8},
        {"a\r\nb", 4},
        {"", 0},
        {"a*.example", 10},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reset(NULL);
        ext_sni(&E, bad[i].name, bad[i].len);
        assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    }

    /* 253 bytes is the longest allowed, 254 is not */
    char name[300];
    memset(name, 'a', sizeof(name));
    reset(NULL);
    ext_sni(&E, name, 253);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_int_equal(strlen(h.sni), 253);
    reset(NULL);
    ext_sni(&E, name, 254);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
}

static void test_sni_lengths(void **state)
{
    (void)state;
    struct tls_hello h;
    /* empty extension, empty list, list shorter/longer than the extension,
     * name running past the list */
    static const uint8_t e1[] = {0, 0, 0, 0};
    static const uint8_t e2[] = {0, 0, 0, 2, 0, 0};
    static const uint8_t e3[] = {0, 0, 0, 8, 0, 5, 0, 0, 2, 'a', 'b', 0};
    static const uint8_t e4[] = {0, 0, 0, 7, 0, 6, 0, 0, 2, 'a', 'b'};
    static const uint8_t e5[] = {0, 0, 0, 7, 0, 5, 0, 0, 3, 'a', 'b'};
    static const uint8_t ok[] = {0, 0, 0, 7, 0, 5, 0, 0, 2, 'a', 'b'};
    const struct {
        const uint8_t *b;
        size_t n;
    } bad[] = {{e1, 4}, {e2, 6}, {e3, 12}, {e4, 11}, {e5, 11}};
    for (size_t i = 0; i < 5; i++) {
        reset(NULL);
        put(&E, bad[i].b, bad[i].n);
        assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    }
    reset(NULL);
    put(&E, ok, sizeof(ok));
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "ab");
}

/* ---- hand-built: ALPN --------------------------------------------------- */

static void test_alpn_errors(void **state)
{
    (void)state;
    struct tls_hello h;
    static const uint8_t zero_name[] = {0, 16, 0, 6, 0, 4, 2, 'h', '2', 0};
    static const uint8_t empty_list[] = {0, 16, 0, 2, 0, 0};
    static const uint8_t no_list[] = {0, 16, 0, 0};
    static const uint8_t list_short[] = {0, 16, 0, 6, 0, 3, 2, 'h', '2', 1};
    static const uint8_t list_long[] = {0, 16, 0, 5, 0, 4, 2, 'h', '2'};
    static const uint8_t name_past[] = {0, 16, 0, 5, 0, 3, 3, 'h', '2'};
    const struct {
        const uint8_t *b;
        size_t n;
    } bad[] = {{zero_name, sizeof(zero_name)}, {empty_list, sizeof(empty_list)},
               {no_list, sizeof(no_list)},     {list_short, sizeof(list_short)},
               {list_long, sizeof(list_long)}, {name_past, sizeof(name_past)}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reset(NULL);
        put(&E, bad[i].b, bad[i].n);
        assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    }
}

static void test_alpn_kept(void **state)
{
    (void)state;
    struct tls_hello h;
    /* a name with a NUL would not survive as a C string: counted only */
    static const uint8_t nul[] = {0, 16, 0, 9, 0, 7, 2, 'h', '\0', 3, 'h', '2', 'c'};
    put(&E, nul, sizeof(nul));
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_true(h.has_alpn);
    assert_int_equal(h.n_alpn, 2);
    assert_int_equal(h.n_alpn_kept, 1);
    assert_string_equal(h.alpn[0], "h2c");

    /* 255 bytes, the longest name: counted */
    char name[256];
    memset(name, 'z', 255);
    name[255] = '\0';
    const char *const names[] = {name, "h2"};
    reset(NULL);
    ext_alpn(&E, names, 2);
    assert_status(parse_exts(&E, &h), TLS_HELLO_OK);
    assert_int_equal(h.n_alpn, 2);
    assert_int_equal(h.n_alpn_kept, 1);
    assert_string_equal(h.alpn[0], "h2");
}

/* ---- hand-built: lengths ------------------------------------------------ */

static void test_length_mismatch(void **state)
{
    (void)state;
    struct tls_hello h;
    size_t n;

    /* extensions block shorter than the rest of the body: trailing garbage */
    ext_opaque(&E, 13, 2);
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 4, 1);
    u16(&Y, 6);
    put(&Y, E.b, E.n);
    u8(&Y, 0x99); /* one byte after the block */
    n = rerecord(M, wrap_msg(1, &Y, M), 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);

    /* block longer than the body */
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 4, 1);
    u16(&Y, 7);
    put(&Y, E.b, E.n);
    n = rerecord(M, wrap_msg(1, &Y, M), 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);

    /* an extension running past the block */
    static const uint8_t past[] = {0, 13, 0, 3, 0, 0};
    reset(NULL);
    put(&E, past, sizeof(past));
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    /* a partial extension header at the end of the block */
    static const uint8_t partial[] = {0, 13, 0, 0, 0, 14, 0};
    reset(NULL);
    put(&E, partial, sizeof(partial));
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);

    /* handshake length shorter than the body, with the record to match */
    reset(NULL);
    ext_opaque(&E, 13, 2);
    n = hello_with(&E);
    size_t m = unrecord(R, n, M);
    M[3] -= 1;
    n = rerecord(M, m - 1, 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    /* handshake length too short, record carrying the full body */
    n = rerecord(M, m, 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    /* a record carrying a byte past a correct handshake message */
    M[3] += 1;
    M[m] = 0;
    n = rerecord(M, m + 1, 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    n = rerecord(M, m, 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    /* handshake length too long: the extensions block no longer reaches
     * the end of the message */
    M[3] += 10;
    n = rerecord(M, m, 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
}

static void test_body_fields(void **state)
{
    (void)state;
    struct tls_hello h;
    const struct {
        size_t sid, cs, cm;
        enum tls_hello_status want;
    } cases[] = {
        {0, 2, 1, TLS_HELLO_OK},         {32, 2, 1, TLS_HELLO_OK},
        {33, 2, 1, TLS_HELLO_MALFORMED}, {0, 0, 1, TLS_HELLO_MALFORMED},
        {0, 3, 1, TLS_HELLO_MALFORMED},  {0, 2, 0, TLS_HELLO_MALFORMED},
        {0, 200, 255, TLS_HELLO_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&Y, 0, sizeof(Y));
        body_start(&Y, 0x0303, cases[i].sid, cases[i].cs, cases[i].cm);
        size_t n = rerecord(M, wrap_msg(1, &Y, M), 16384, R, sizeof(R));
        assert_status(tls_hello_parse(R, n, &h), cases[i].want);
    }
    /* a body cut short anywhere is MALFORMED, not NEED_MORE: the handshake
     * length says where it ends */
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 4, 1);
    size_t full = Y.n;
    for (size_t cut = 0; cut < full; cut++) {
        Y.n = cut;
        size_t n = rerecord(M, wrap_msg(1, &Y, M), 16384, R, sizeof(R));
        assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    }
}

/* ---- records ------------------------------------------------------------ */

static void test_zero_length_record(void **state)
{
    (void)state;
    struct tls_hello h;
    static const uint8_t first[] = {22, 3, 1, 0, 0, 22, 3, 1, 0, 1, 1};
    assert_status(tls_hello_parse(first, sizeof(first), &h), TLS_HELLO_MALFORMED);
    assert_status(tls_hello_parse(first, 5, &h), TLS_HELLO_MALFORMED);
    assert_status(tls_hello_parse(first, 4, &h), TLS_HELLO_NEED_MORE);

    /* between two fragments of a real hello */
    struct client cl = {.sni = "z.example"};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    size_t m = unrecord(R, n, M);
    size_t k = rerecord(M, m, 50, R2, sizeof(R2));
    static const uint8_t zero[] = {22, 3, 1, 0, 0};
    memmove(R2 + 55 + 5, R2 + 55, k - 55);
    memcpy(R2 + 55, zero, 5);
    assert_status(tls_hello_parse(R2, k + 5, &h), TLS_HELLO_MALFORMED);
    assert_status(tls_hello_parse(R2, 59, &h), TLS_HELLO_NEED_MORE);
}

static void test_non_handshake_record(void **state)
{
    (void)state;
    struct tls_hello h;
    struct client cl = {.sni = "z.example"};
    size_t n = openssl_hello(&cl, R, sizeof(R));
    size_t m = unrecord(R, n, M);
    size_t k = rerecord(M, m, 50, R2, sizeof(R2));
    /* the second record as alert, change_cipher_spec, application data,
     * heartbeat: MALFORMED from its first byte on */
    static const uint8_t types[] = {21, 20, 23, 24, 0, 0xff};
    for (size_t i = 0; i < sizeof(types); i++) {
        R2[55] = types[i];
        assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_MALFORMED);
        assert_status(tls_hello_parse(R2, 56, &h), TLS_HELLO_MALFORMED);
        assert_status(tls_hello_parse(R2, 55, &h), TLS_HELLO_NEED_MORE);
    }
    /* a later record with a bad version */
    R2[55] = 22;
    R2[56] = 2;
    assert_status(tls_hello_parse(R2, 57, &h), TLS_HELLO_MALFORMED);
    R2[56] = 3;
    R2[57] = 5;
    assert_status(tls_hello_parse(R2, 58, &h), TLS_HELLO_MALFORMED);
    R2[57] = 1;
    assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_OK);
    /* a first record that is an alert is not TLS we can inspect */
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    assert_status(tls_hello_parse(alert, sizeof(alert), &h), TLS_HELLO_NOT_TLS);
    assert_status(tls_hello_parse(alert, 1, &h), TLS_HELLO_NOT_TLS);
}

static void test_record_lengths(void **state)
{
    (void)state;
    struct tls_hello h;
    /* a record body over 2^14 is a record_overflow */
    static const uint8_t over[] = {22, 3, 1, 0x40, 0x01, 1};
    assert_status(tls_hello_parse(over, sizeof(over), &h), TLS_HELLO_MALFORMED);
    /* exactly 2^14 is legal, but cannot fit with its header */
    static const uint8_t full[] = {22, 3, 1, 0x40, 0x00, 1};
    assert_status(tls_hello_parse(full, sizeof(full), &h), TLS_HELLO_TOO_LARGE);
    assert_status(tls_hello_parse(full, 5, &h), TLS_HELLO_TOO_LARGE);
}

static void test_server_hello(void **state)
{
    (void)state;
    struct tls_hello h;
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 2, 1);
    size_t n = rerecord(M, wrap_msg(2, &Y, M), 16384, R, sizeof(R));
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    assert_status(tls_hello_parse(R, 6, &h), TLS_HELLO_MALFORMED);
    assert_status(tls_hello_parse(R, 5, &h), TLS_HELLO_NEED_MORE);
    /* the other handshake types too (0: hello_request, 11: certificate...) */
    static const uint8_t types[] = {0, 4, 11, 16, 20, 0xff};
    for (size_t i = 0; i < sizeof(types); i++) {
        R[5] = types[i];
        assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_MALFORMED);
    }
}

/* ---- not TLS ------------------------------------------------------------ */

static void test_not_tls(void **state)
{
    (void)state;
    struct tls_hello h;
    /* SSLv2-compatible hello */
    static const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15};
    assert_status(tls_hello_parse(v2, sizeof(v2), &h), TLS_HELLO_NOT_TLS);
    assert_status(tls_hello_parse(v2, 1, &h), TLS_HELLO_NOT_TLS);

    static const char http[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_status(tls_hello_parse((const uint8_t *)http, sizeof(http) - 1, &h), TLS_HELLO_NOT_TLS);
    assert_status(tls_hello_parse((const uint8_t *)http, 1, &h), TLS_HELLO_NOT_TLS);

    static const uint8_t ssh[] = "SSH-2.0-OpenSSH_9.2\r\n";
    assert_status(tls_hello_parse(ssh, sizeof(ssh) - 1, &h), TLS_HELLO_NOT_TLS);

    /* 0x16 then something that is not major version 3 */
    static const uint8_t b2[] = {22, 0x16, 3, 1};
    assert_status(tls_hello_parse(b2, 1, &h), TLS_HELLO_NEED_MORE);
    assert_status(tls_hello_parse(b2, 2, &h), TLS_HELLO_NOT_TLS);
    static const uint8_t b3[] = {22, 3, 5, 0, 10};
    assert_status(tls_hello_parse(b3, 2, &h), TLS_HELLO_NEED_MORE);
    assert_status(tls_hello_parse(b3, 3, &h), TLS_HELLO_NOT_TLS);
    static const uint8_t b4[] = {22, 254, 255, 0, 10}; /* DTLS */
    assert_status(tls_hello_parse(b4, 5, &h), TLS_HELLO_NOT_TLS);

    /* garbage */
    static const uint8_t g[] = {0x00, 0xff, 0x16, 0x03, 0x01};
    assert_status(tls_hello_parse(g, sizeof(g), &h), TLS_HELLO_NOT_TLS);
    assert_status(tls_hello_parse(g + 1, 4, &h), TLS_HELLO_NOT_TLS);
}

static void test_empty_input(void **state)
{
    (void)state;
    struct tls_hello h;
    static const uint8_t b[] = {22};
    assert_status(tls_hello_parse(b, 0, &h), TLS_HELLO_NEED_MORE);
    assert_status(tls_hello_parse(NULL, 0, &h), TLS_HELLO_NEED_MORE);
    assert_status(tls_hello_parse(b, 1, NULL), TLS_HELLO_NEED_MORE);
}

/* ---- limits ------------------------------------------------------------- */

/* Records of exactly TLS_HELLO_MAX_BYTES are OK; one byte more is TOO_LARGE,
 * and so is any prefix that says so. */
static void test_max_bytes_boundary(void **state)
{
    (void)state;
    struct tls_hello h;
    ext_sni(&E, "edge.example", 12);
    size_t base = hello_with(&E); /* + a padding extension of p bytes: base + 4 + p */
    size_t p = TLS_HELLO_MAX_BYTES - base - 4;
    ext_opaque(&E, 21, p);
    size_t n = hello_with(&E);
    assert_int_equal(n, TLS_HELLO_MAX_BYTES);
    assert_int_equal(R[3] << 8 | R[4], TLS_HELLO_MAX_BYTES - 5);
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_OK);
    assert_int_equal(h.record_bytes, TLS_HELLO_MAX_BYTES);
    assert_string_equal(h.sni, "edge.example");
    assert_status(tls_hello_parse(R, n - 1, &h), TLS_HELLO_NEED_MORE);

    /* the same message in two records needs 5 more bytes */
    size_t m = unrecord(R, n, M);
    size_t k = rerecord(M, m, 9000, R2, sizeof(R2));
    assert_int_equal(k, TLS_HELLO_MAX_BYTES + 5);
    assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_TOO_LARGE);
    /* decided at the handshake header (its record plus one more header
     * cannot fit), well before the limit */
    assert_status(tls_hello_parse(R2, 9, &h), TLS_HELLO_TOO_LARGE);

    /* one byte more of padding */
    reset(NULL);
    ext_sni(&E, "edge.example", 12);
    ext_opaque(&E, 21, p + 1);
    n = hello_with(&E);
    assert_int_equal(n, TLS_HELLO_MAX_BYTES + 1);
    assert_status(tls_hello_parse(R, n, &h), TLS_HELLO_TOO_LARGE);
    assert_status(tls_hello_parse(R, TLS_HELLO_MAX_BYTES, &h), TLS_HELLO_TOO_LARGE);
    assert_status(tls_hello_parse(R, 5, &h), TLS_HELLO_TOO_LARGE);
}

/* A handshake length near 2^24 is TOO_LARGE from the first 9 bytes, and a
 * stream of valid tiny records that never completes gives TOO_LARGE at the
 * limit, never NEED_MORE once that many bytes are there. */
static void test_too_large(void **state)
{
    (void)state;
    struct tls_hello h;
    static const uint8_t huge[] = {22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff};
    assert_status(tls_hello_parse(huge, 8, &h), TLS_HELLO_NEED_MORE);
    assert_status(tls_hello_parse(huge, 9, &h), TLS_HELLO_TOO_LARGE);

    /* a 10000-byte message in 2-byte records: 35000 bytes */
    memset(&Y, 0, sizeof(Y));
    body_start(&Y, 0x0303, 32, 2, 1);
    open_vec(&Y, 2);
    ext_opaque(&Y, 21, 10000 - 4 - Y.n - 4);
    close_vec(&Y);
    size_t m = wrap_msg(1, &Y, M);
    assert_int_equal(m, 10000);
    size_t k = rerecord(M, m, 2, R2, sizeof(R2));
    assert_int_equal(k, 35000);
    assert_status(tls_hello_parse(R2, k, &h), TLS_HELLO_TOO_LARGE);
    /* found out as the records go: 3.5 record bytes per 2 hello bytes */
    size_t at = first_decided(R2, k);
    assert_status(tls_hello_parse(R2, at, &h), TLS_HELLO_TOO_LARGE);
    assert_true(at > 8900 && at < 9000);
    for (size_t i = TLS_HELLO_MAX_BYTES; i <= k; i += 501)
        assert_status(tls_hello_parse(R2, i, &h), TLS_HELLO_TOO_LARGE);
}

/* *ret is left alone unless the status is OK. */
static void test_ret_untouched(void **state)
{
    (void)state;
    struct tls_hello h, before;
    memset(&h, 0xa5, sizeof(h));
    memcpy(&before, &h, sizeof(h));
    ext_sni(&E, "a b", 3);
    assert_status(parse_exts(&E, &h), TLS_HELLO_MALFORMED);
    assert_memory_equal(&h, &before, sizeof(h));
    reset(NULL);
    ext_sni(&E, "ok.example", 10);
    size_t n = hello_with(&E);
    assert_status(tls_hello_parse(R, n - 1, &h), TLS_HELLO_NEED_MORE);
    assert_memory_equal(&h, &before, sizeof(h));
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(tls_hello_status_name(TLS_HELLO_OK), "ok");
    assert_string_equal(tls_hello_status_name(TLS_HELLO_NEED_MORE), "need_more");
    assert_string_equal(tls_hello_status_name(TLS_HELLO_NOT_TLS), "not_tls");
    assert_string_equal(tls_hello_status_name(TLS_HELLO_MALFORMED), "malformed");
    assert_string_equal(tls_hello_status_name(TLS_HELLO_TOO_LARGE), "too_large");
    assert_null(tls_hello_status_name(TLS_HELLO_STATUS_MAX));
    assert_null(tls_hello_status_name((enum tls_hello_status) - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_openssl_tls13_sni_alpn, reset),
        cmocka_unit_test_setup(test_openssl_tls12_only, reset),
        cmocka_unit_test_setup(test_openssl_no_sni_no_alpn, reset),
        cmocka_unit_test_setup(test_openssl_tls12_alpn_no_sni, reset),
        cmocka_unit_test_setup(test_openssl_ip_literal_sni, reset),
        cmocka_unit_test_setup(test_openssl_padding, reset),
        cmocka_unit_test_setup(test_openssl_ten_alpn, reset),
        cmocka_unit_test_setup(test_openssl_long_alpn_name, reset),
        cmocka_unit_test_setup(test_openssl_big_hello, reset),
        cmocka_unit_test_setup(test_openssl_oversize, reset),
        cmocka_unit_test_setup(test_fragmented, reset),
        cmocka_unit_test_setup(test_fragmented_too_large, reset),
        cmocka_unit_test_setup(test_trailing_records_ignored, reset),
        cmocka_unit_test_setup(test_hand_built_ok, reset),
        cmocka_unit_test_setup(test_no_extensions, reset),
        cmocka_unit_test_setup(test_legacy_version, reset),
        cmocka_unit_test_setup(test_supported_versions, reset),
        cmocka_unit_test_setup(test_missing_sni, reset),
        cmocka_unit_test_setup(test_duplicate_extension, reset),
        cmocka_unit_test_setup(test_two_host_names, reset),
        cmocka_unit_test_setup(test_invalid_sni, reset),
        cmocka_unit_test_setup(test_sni_lengths, reset),
        cmocka_unit_test_setup(test_alpn_errors, reset),
        cmocka_unit_test_setup(test_alpn_kept, reset),
        cmocka_unit_test_setup(test_length_mismatch, reset),
        cmocka_unit_test_setup(test_body_fields, reset),
        cmocka_unit_test_setup(test_zero_length_record, reset),
        cmocka_unit_test_setup(test_non_handshake_record, reset),
        cmocka_unit_test_setup(test_record_lengths, reset),
        cmocka_unit_test_setup(test_server_hello, reset),
        cmocka_unit_test_setup(test_not_tls, reset),
        cmocka_unit_test_setup(test_empty_input, reset),
        cmocka_unit_test_setup(test_max_bytes_boundary, reset),
        cmocka_unit_test_setup(test_too_large, reset),
        cmocka_unit_test_setup(test_ret_untouched, reset),
        cmocka_unit_test_setup(test_status_names, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
