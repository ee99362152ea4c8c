/*
 * Fuzz the TLS ClientHello parser.  The input is the client's byte stream.
 *
 * abort() on any broken invariant:
 *  - the status is in range and has a name; a second parse agrees;
 *  - NEED_MORE only below TLS_HELLO_MAX_BYTES (with that many bytes there is
 *    always an answer);
 *  - NOT_TLS is decided by the first three bytes alone;
 *  - OK: record_bytes within the input and the limit, the SNI NUL-terminated
 *    with only allowed bytes (empty exactly when absent), ALPN counts
 *    consistent and kept names NUL-free strings of 1..TLS_HELLO_MAX_ALPN_LEN;
 *    the records alone give the same hello, and strict prefixes of them are
 *    NEED_MORE (a few lengths, not all, to stay fast);
 *  - any prefix gives NEED_MORE, TOO_LARGE or the full input's status: an
 *    answer never changes when more bytes arrive;
 *  - a decided input gives the same answer with bytes appended.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlshello.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_tlshello: invariant failed: %s (line %d)\n", #x, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool sni_byte_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

static void check_same(const struct tls_hello *a, const struct tls_hello *b)
{
    CHECK(a->has_sni == b->has_sni);
    CHECK(strcmp(a->sni, b->sni) == 0);
    CHECK(a->has_alpn == b->has_alpn);
    CHECK(a->n_alpn == b->n_alpn);
    CHECK(a->n_alpn_kept == b->n_alpn_kept);
    for (size_t i = 0; i < a->n_alpn_kept; i++)
        CHECK(strcmp(a->alpn[i], b->alpn[i]) == 0);
    CHECK(a->legacy_version == b->legacy_version);
    CHECK(a->offers_tls13 == b->offers_tls13);
    CHECK(a->record_bytes == b->record_bytes);
}

static void check_hello(const struct tls_hello *h, size_t size)
{
    CHECK(h->record_bytes <= size);
    CHECK(h->record_bytes <= TLS_HELLO_MAX_BYTES);
    CHECK(h->record_bytes >= 5 + 4 + 2 + 32 + 1 + 2 + 2 + 1 + 1);

    size_t sni_len = strnlen(h->sni, sizeof(h->sni));
    CHECK(sni_len < sizeof(h->sni));
    CHECK(h->has_sni == (sni_len > 0));
    for (size_t i = 0; i < sni_len; i++)
        CHECK(sni_byte_ok(h->sni[i]));

    size_t max_kept = h->n_alpn < TLS_HELLO_MAX_ALPN ? h->n_alpn : TLS_HELLO_MAX_ALPN;
    CHECK(h->n_alpn_kept <= max_kept);
    CHECK(h->has_alpn == (h->n_alpn > 0));
    for (size_t i = 0; i < h->n_alpn_kept; i++) {
        size_t n = strnlen(h->alpn[i], sizeof(h->alpn[i]));
        CHECK(n >= 1 && n <= TLS_HELLO_MAX_ALPN_LEN);
    }
}

/* A prefix of a stream may not be answered differently than the stream,
 * except that it may still wait, or already know it is too large. */
static void check_prefix(const uint8_t *data, size_t n, enum tls_hello_status full)
{
    struct tls_hello h;
    enum tls_hello_status s = tls_hello_parse(data, n, &h);
    if (full == TLS_HELLO_OK || full == TLS_HELLO_NEED_MORE)
        CHECK(s == TLS_HELLO_NEED_MORE);
    else
        CHECK(s == TLS_HELLO_NEED_MORE || s == TLS_HELLO_TOO_LARGE || s == full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_hello h, again;
    enum tls_hello_status s = tls_hello_parse(data, size, &h);
    CHECK((int)s >= 0 && (int)s < TLS_HELLO_STATUS_MAX);
    CHECK(tls_hello_status_name(s) != NULL);
    CHECK(tls_hello_parse(data, size, &again) == s);
    if (s == TLS_HELLO_OK)
        check_same(&h, &again);

    if (s == TLS_HELLO_NEED_MORE)
        CHECK(size < TLS_HELLO_MAX_BYTES);
    if (s == TLS_HELLO_NOT_TLS) {
        CHECK(size >= 1);
        CHECK(data[0] != 22 || (size >= 2 && data[1] != 3) || (size >= 3 && data[2] > 4));
        CHECK(tls_hello_parse(data, size < 3 ? size : 3, NULL) == TLS_HELLO_NOT_TLS);
    }

    /* prefixes: the edges and a handful derived from the input */
    size_t end = s == TLS_HELLO_OK ? h.record_bytes : size;
    if (end > 0) {
        size_t cuts[] = {0, 1, 2, 5, 9, end / 2, end - 1, end - 5, 0, 0};
        if (size >= 2) {
            cuts[8] = ((size_t)data[size - 1] << 8 | data[size - 2]) % end;
            cuts[9] = (size_t)data[size / 2] * 7 % end;
        }
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
            if (cuts[i] < end)
                check_prefix(data, cuts[i], s);
    }

    if (s == TLS_HELLO_OK) {
        check_hello(&h, size);
        /* the records alone, and nothing but them, make the hello */
        CHECK(tls_hello_parse(data, h.record_bytes, &again) == TLS_HELLO_OK);
        check_same(&h, &again);
    }

    /* more bytes change nothing once the answer is known */
    if (s != TLS_HELLO_NEED_MORE) {
        uint8_t *more = malloc(size + 64);
        CHECK(more != NULL);
        memcpy(more, data, size);
        memset(more + size, size ? data[0] : 0x16, 64);
        CHECK(tls_hello_parse(more, size + 64, &again) == s);
        if (s == TLS_HELLO_OK)
            check_same(&h, &again);
        free(more);
    }
    return 0;
}
