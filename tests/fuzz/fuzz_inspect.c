/*
 * Fuzz the HTTP inspector with a client stream and an upstream stream.
 *
 * Input: [req_len hi][req_len lo][flags][seed] then req_len bytes of client
 * stream and the rest as the upstream stream.  flags: bits 0-1 max_pipeline
 * (default, 1, 2, 4), bit 2 small limits, bits 3-7 salt of the allow/deny hash.
 *
 * A simulated caller keeps one buffer per direction and forwards what the
 * inspector clears.  abort() on any broken invariant:
 *  - every call returns 0 (the driver keeps the contract);
 *  - forward <= len, held <= len - forward, held <= max_head_bytes;
 *  - the bytes cleared in a direction are exactly a prefix of what was fed,
 *    so cleared <= consumed and nothing is duplicated or reordered;
 *  - a terminal outcome is sticky and clears nothing more (DENY, UPGRADED...);
 *  - UPGRADED reports overflow == len - forward;
 *  - the request side alone gives the same decisions, cleared bytes and
 *    outcome whether its stream comes whole or in random pieces;
 *  - what decide() sees is consistent (NUL-terminated strings of the given
 *    lengths, path/query inside the target);
 *  - the 403/400 formatters produce a head without stray CR/LF and a
 *    Content-Length equal to the body.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_inspect: invariant failed: %s (line %d)\n", #x, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct run {
    struct http_inspector *in;
    uint8_t salt;
    size_t max_head;
    const uint8_t *req, *resp;
    size_t req_len, resp_len;
    size_t req_fed, resp_fed; /* offered to the inspector */
    uint8_t *cbuf, *sbuf;     /* pending: stream[cleared, fed) */
    size_t clen, slen;
    size_t up_cleared, down_cleared; /* cleared so far = offset into the stream */
    enum http_outcome req_out, resp_out;
    const char *req_reason;
    bool raw;
    uint64_t decisions; /* hash of what decide() saw and said */
    unsigned n_decided;
    uint32_t rng;
};

static uint32_t next_rand(struct run *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 17;
    r->rng ^= r->rng << 5;
    return r->rng;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void check_string(const char *s, size_t len)
{
    CHECK(s != NULL);
    CHECK(strlen(s) == len);
}

static enum http_verdict decide(void *ctx, const struct http_request_head *h)
{
    struct run *r = ctx;
    check_string(h->method, strlen(h->method));
    check_string(h->target, h->target_len);
    check_string(h->path, h->path_len);
    if (h->query) {
        check_string(h->query, h->query_len);
        CHECK(h->query_len < h->target_len);
    }
    if (h->host)
        check_string(h->host, h->host_len);
    else
        CHECK(h->version_minor == 0);
    CHECK(h->version_minor <= 1);
    CHECK(h->body == HTTP_BODY_NONE || h->body == HTTP_BODY_LENGTH || h->body == HTTP_BODY_CHUNKED);
    CHECK(!(h->upgrade && h->body != HTTP_BODY_NONE));
    for (size_t i = 0; i < h->n_headers; i++) {
        check_string(h->headers[i].name, h->headers[i].name_len);
        check_string(h->headers[i].value, h->headers[i].value_len);
    }
    CHECK(h->index == r->n_decided);
    r->n_decided++;

    uint64_t hash = fnv(0xcbf29ce484222325ULL ^ r->salt, h->method, strlen(h->method));
    hash = fnv(hash, h->target, h->target_len);
    bool deny = (hash & 3) == 0;
    r->decisions = fnv(r->decisions, &hash, sizeof(hash));
    r->decisions = fnv(r->decisions, &deny, sizeof(deny));
    return deny ? HTTP_VERDICT_DENY : HTTP_VERDICT_ALLOW;
}

static void run_init(struct run *r, const uint8_t *data, size_t size, uint32_t seed)
{
    memset(r, 0, sizeof(*r));
    size_t req_len = ((size_t)data[0] << 8) | data[1];
    uint8_t flags = data[2];
    static const size_t pipelines[] = {0, 1, 2, 4};
    bool small = flags & 4;
    struct http_inspector_config cfg = {
        .max_pipeline = pipelines[flags & 3],
        .max_head_bytes = small ? 256 : 0,
        .max_start_line = small ? 128 : 0,
        .max_headers = small ? 8 : 0,
        .decide = decide,
        .ctx = r,
    };
    r->salt = flags >> 3;
    r->max_head = small ? 256 : HTTP_DEFAULT_MAX_HEAD_BYTES;
    data += 4;
    size -= 4;
    if (req_len > size)
        req_len = size;
    r->req = data;
    r->req_len = req_len;
    r->resp = data + req_len;
    r->resp_len = size - req_len;
    r->cbuf = malloc(r->req_len + 1);
    r->sbuf = malloc(r->resp_len + 1);
    r->rng = seed | 1;
    CHECK(r->cbuf && r->sbuf);
    CHECK(http_inspector_new(&cfg, &r->in) == 0);
}

static void run_free(struct run *r)
{
    http_inspector_free(r->in);
    free(r->cbuf);
    free(r->sbuf);
}

/* Apply a step to one direction: checks, then forward (compare with the
 * stream) and drop. */
static void apply(struct run *r, const struct http_step *st, uint8_t *buf, size_t *len,
                  const uint8_t *stream, size_t *cleared)
{
    CHECK(st->forward <= *len);
    CHECK(st->held <= *len - st->forward);
    CHECK(st->held <= r->max_head);
    CHECK(memcmp(buf, stream + *cleared, st->forward) == 0);
    *cleared += st->forward;
    memmove(buf, buf + st->forward, *len - st->forward);
    *len -= st->forward;
}

static bool req_terminal(const struct run *r)
{
    return r->req_out != HTTP_OUTCOME_NEED_MORE;
}

static bool resp_terminal(const struct run *r)
{
    return r->resp_out != HTTP_OUTCOME_NEED_MORE;
}

static void call_request(struct run *r)
{
    struct http_step st, again;
    if (req_terminal(r) || r->raw)
        return;
    CHECK(http_inspect_request_bytes(r->in, r->cbuf, r->clen, &st) == 0);
    apply(r, &st, r->cbuf, &r->clen, r->req, &r->up_cleared);
    CHECK(st.outcome == HTTP_OUTCOME_NEED_MORE || st.outcome == HTTP_OUTCOME_DENY ||
          st.outcome == HTTP_OUTCOME_BAD_REQUEST);
    CHECK((st.reason != NULL) == (st.outcome == HTTP_OUTCOME_BAD_REQUEST));
    if (st.outcome == HTTP_OUTCOME_NEED_MORE)
        return;
    r->req_out = st.outcome;
    r->req_reason = st.reason;
    CHECK(http_inspect_request_bytes(r->in, r->cbuf, r->clen, &again) == 0);
    CHECK(again.outcome == st.outcome && again.forward == 0);
}

static void call_response(struct run *r)
{
    struct http_step st, again;
    if (resp_terminal(r) || r->raw)
        return;
    CHECK(http_inspect_response_bytes(r->in, r->sbuf, r->slen, &st) == 0);
    apply(r, &st, r->sbuf, &r->slen, r->resp, &r->down_cleared);
    if (st.outcome == HTTP_OUTCOME_NEED_MORE) {
        if (st.wake_request)
            call_request(r);
        return;
    }
    CHECK(!st.wake_request);
    r->resp_out = st.outcome;
    if (st.outcome == HTTP_OUTCOME_UPGRADED) {
        CHECK(st.overflow == r->slen);
        CHECK(st.reason == NULL);
        /* everything from here on is raw in both directions */
        r->raw = true;
        r->down_cleared += r->slen;
        r->up_cleared += r->clen;
        r->slen = r->clen = 0;
    } else {
        CHECK(st.outcome == HTTP_OUTCOME_UNSOLICITED_UPGRADE ||
              st.outcome == HTTP_OUTCOME_BAD_RESPONSE);
        CHECK(st.reason != NULL);
    }
    CHECK(http_inspect_response_bytes(r->in, r->sbuf, r->slen, &again) == 0);
    CHECK(again.outcome == st.outcome && again.forward == 0);
    /* the request side is finished too */
    CHECK(http_inspect_request_bytes(r->in, r->cbuf, r->clen, &again) == 0);
    CHECK(again.forward == 0);
    if (!req_terminal(r))
        CHECK(again.outcome == st.outcome);
}

static void feed_client(struct run *r, size_t n)
{
    if (r->raw) {
        r->up_cleared += n;
    } else {
        memcpy(r->cbuf + r->clen, r->req + r->req_fed, n);
        r->clen += n;
    }
    r->req_fed += n;
    call_request(r);
}

static void feed_server(struct run *r, size_t n)
{
    if (r->raw) {
        r->down_cleared += n;
    } else {
        memcpy(r->sbuf + r->slen, r->resp + r->resp_fed, n);
        r->slen += n;
    }
    r->resp_fed += n;
    call_response(r);
}

static size_t piece(struct run *r, size_t left)
{
    uint32_t x = next_rand(r);
    size_t n = (x & 3) == 0 ? left : 1 + (x >> 8) % 48;
    return n < left ? n : left;
}

static void fuzz_formatters(const uint8_t *data, size_t size)
{
    char s[3][64], buf[2048];
    for (int i = 0; i < 3; i++) {
        size_t n = size > 63 ? 63 : size;
        memcpy(s[i], data, n);
        s[i][n] = '\0';
        data += n;
        size -= n;
    }
    int n = http_format_403(s[0], s[1], s[2], buf, sizeof(buf));
    CHECK(n > 0 && (size_t)n == strlen(buf));
    const char *end = strstr(buf, "\r\n\r\n");
    CHECK(end != NULL);
    int lines = 0;
    for (const char *p = buf; p < end; p++) {
        CHECK(*p != '\r' || p[1] == '\n');
        CHECK(*p != '\n' || p[-1] == '\r');
        lines += *p == '\n';
    }
    CHECK(lines == 4); /* status line + Content-Type, Content-Length, X-Portcullis-Policy */
    const char *cl = strstr(buf, "Content-Length: ");
    CHECK(cl && strtoul(cl + 16, NULL, 10) == strlen(end + 4));
    CHECK(http_format_403(s[0], s[1], s[2], buf, (size_t)n) < 0);
    n = http_format_400(s[2], buf, sizeof(buf));
    CHECK(n > 0 && (size_t)n == strlen(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t seed = data[3] * 0x9e3779b9u + 1;

    /* 1. the request stream alone, whole then in pieces: same result */
    struct run a, b;
    run_init(&a, data, size, seed);
    feed_client(&a, a.req_len);
    run_init(&b, data, size, seed);
    while (b.req_fed < b.req_len)
        feed_client(&b, piece(&b, b.req_len - b.req_fed));
    CHECK(a.up_cleared == b.up_cleared);
    CHECK(a.req_out == b.req_out);
    CHECK(a.req_reason == b.req_reason);
    CHECK(a.decisions == b.decisions && a.n_decided == b.n_decided);
    CHECK(a.clen == b.clen);
    run_free(&a);

    /* 2. then the upstream stream in pieces, interleaved with more client
     *    bytes when the first run stopped early */
    while (b.resp_fed < b.resp_len && !resp_terminal(&b))
        feed_server(&b, piece(&b, b.resp_len - b.resp_fed));
    CHECK(b.up_cleared <= b.req_fed && b.down_cleared <= b.resp_fed);
    if (!resp_terminal(&b) && !b.raw) {
        struct http_step st;
        if (next_rand(&b) & 1) {
            CHECK(http_inspect_response_eof(b.in, &st) == 0);
            CHECK(st.outcome == HTTP_OUTCOME_CLOSED || st.outcome == HTTP_OUTCOME_BAD_RESPONSE);
            CHECK(st.forward == 0);
        }
        CHECK(http_inspect_request_eof(b.in, &st) == 0);
        CHECK(st.forward == 0);
    }
    run_free(&b);

    fuzz_formatters(data + 4, size - 4);
    return 0;
}
