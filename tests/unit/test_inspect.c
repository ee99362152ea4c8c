/*
 * Unit tests for src/inspect.
 *
 * Most tests are scenarios: phases of client bytes, upstream bytes and EOFs,
 * played through a simulated caller that keeps one buffer per direction and
 * forwards exactly what the inspector clears (sim_* below).  Every scenario
 * is played whole, with each phase split at every offset, and one byte at a
 * time; every run must give the expected upstream stream, client stream,
 * decisions and outcomes.  The simulated caller writes "[403]"/"[400]" to the
 * client the way DESIGN.md wants it: once the responses to earlier requests
 * have been delivered (http_inspector_idle()).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect.h"

#define B(s) s, sizeof(s) - 1

/* ---- the simulated caller ----------------------------------------------- */

#define SIM_BUF 65536

struct sim {
    struct http_inspector *in;
    size_t max_head;
    uint8_t cbuf[SIM_BUF];
    size_t clen;
    uint8_t sbuf[SIM_BUF];
    size_t slen;
    char up[SIM_BUF];
    size_t up_len;
    char down[SIM_BUF];
    size_t down_len;
    char log[4096];
    bool raw, closed, req_done;
    int pending_error;
    enum http_outcome req_out, resp_out;
    const char *reason;
};

static struct sim S;

static void append(char *dst, size_t *dlen, const void *src, size_t n)
{
    assert_true(*dlen + n <= SIM_BUF);
    memcpy(dst + *dlen, src, n);
    *dlen += n;
}

static enum http_verdict decide_by_target(void *ctx, const struct http_request_head *h)
{
    struct sim *s = ctx;
    bool deny = strstr(h->target, "deny") != NULL;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, "%s %s %c;", h->method, h->target, deny ? 'D' : 'A');
    return deny ? HTTP_VERDICT_DENY : HTTP_VERDICT_ALLOW;
}

static void sim_init(size_t max_start_line, size_t max_head, size_t max_headers,
                     size_t max_pipeline)
{
    memset(&S, 0, sizeof(S));
    struct http_inspector_config cfg = {
        .max_start_line = max_start_line,
        .max_head_bytes = max_head,
        .max_headers = max_headers,
        .max_pipeline = max_pipeline,
        .decide = decide_by_target,
        .ctx = &S,
    };
    assert_int_equal(http_inspector_new(&cfg, &S.in), 0);
    S.max_head = max_head ? max_head : HTTP_DEFAULT_MAX_HEAD_BYTES;
}

static void sim_note(enum http_outcome *slot, const struct http_step *st)
{
    if (*slot == HTTP_OUTCOME_NEED_MORE)
        *slot = st->outcome;
    if (!S.reason && st->reason)
        S.reason = st->reason;
}

static void sim_error_if_idle(void)
{
    if (S.pending_error && !S.closed && http_inspector_idle(S.in)) {
        append(S.down, &S.down_len, S.pending_error == 403 ? "[403]" : "[400]", 5);
        S.closed = true;
    }
}

/* Common checks of the byte-accounting contract; forwards and drops. */
static void sim_apply(const struct http_step *st, uint8_t *buf, size_t *len, char *dst,
                      size_t *dlen)
{
    assert_true(st->forward <= *len);
    assert_true(st->held <= *len - st->forward);
    assert_true(st->held <= S.max_head);
    append(dst, dlen, buf, st->forward);
    memmove(buf, buf + st->forward, *len - st->forward);
    *len -= st->forward;
}

static void sim_run_request(void)
{
    struct http_step st, again;
    if (S.closed || S.raw || S.req_done)
        return;
    assert_int_equal(http_inspect_request_bytes(S.in, S.cbuf, S.clen, &st), 0);
    sim_apply(&st, S.cbuf, &S.clen, S.up, &S.up_len);
    if (st.outcome == HTTP_OUTCOME_NEED_MORE) {
        assert_null(st.reason);
        sim_error_if_idle();
        return;
    }
    /* terminal: idempotent, never clears again */
    assert_int_equal(http_inspect_request_bytes(S.in, S.cbuf, S.clen, &again), 0);
    assert_int_equal(again.outcome, st.outcome);
    assert_int_equal(again.forward, 0);
    sim_note(&S.req_out, &st);
    S.req_done = true;
    assert_true(st.outcome == HTTP_OUTCOME_DENY || st.outcome == HTTP_OUTCOME_BAD_REQUEST);
    S.pending_error = st.outcome == HTTP_OUTCOME_DENY ? 403 : 400;
    if (st.upstream_dirty) {
        append(S.down, &S.down_len, "[400]", 5);
        S.closed = true;
    }
    sim_error_if_idle();
}

static void sim_client(const uint8_t *p, size_t n)
{
    if (S.closed || S.req_done)
        return;
    if (S.raw) {
        append(S.up, &S.up_len, p, n);
        return;
    }
    assert_true(S.clen + n <= SIM_BUF);
    memcpy(S.cbuf + S.clen, p, n);
    S.clen += n;
    sim_run_request();
}

static void sim_server(const uint8_t *p, size_t n)
{
    struct http_step st, again;
    if (S.closed)
        return;
    if (S.raw) {
        append(S.down, &S.down_len, p, n);
        return;
    }
    assert_true(S.slen + n <= SIM_BUF);
    memcpy(S.sbuf + S.slen, p, n);
    S.slen += n;
    assert_int_equal(http_inspect_response_bytes(S.in, S.sbuf, S.slen, &st), 0);
    sim_apply(&st, S.sbuf, &S.slen, S.down, &S.down_len);
    switch (st.outcome) {
    case HTTP_OUTCOME_NEED_MORE:
        if (st.wake_request)
            sim_run_request();
        sim_error_if_idle();
        return;
    case HTTP_OUTCOME_UPGRADED:
        assert_int_equal(st.overflow, S.slen);
        append(S.down, &S.down_len, S.sbuf, S.slen);
        append(S.up, &S.up_len, S.cbuf, S.clen);
        S.slen = S.clen = 0;
        S.raw = true;
        break;
    default:
        S.closed = true;
        break;
    }
    assert_int_equal(http_inspect_response_bytes(S.in, S.sbuf, S.slen, &again), 0);
    assert_int_equal(again.outcome, st.outcome);
    assert_int_equal(again.forward, 0);
    sim_note(&S.resp_out, &st);
}

static void sim_server_eof(void)
{
    struct http_step st;
    if (S.closed || S.raw)
        return;
    assert_int_equal(http_inspect_response_eof(S.in, &st), 0);
    sim_note(&S.resp_out, &st);
    if (S.pending_error)
        append(S.down, &S.down_len, S.pending_error == 403 ? "[403]" : "[400]", 5);
    S.closed = true;
}

static void sim_client_eof(void)
{
    struct http_step st;
    if (S.closed || S.raw || S.req_done)
        return;
    assert_int_equal(http_inspect_request_eof(S.in, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_CLOSED);
    if (!S.reason && st.reason)
        S.reason = st.reason;
    S.req_done = true;
}

/* ---- scenarios ----------------------------------------------------------- */

struct phase {
    char dir; /* 'C' client bytes, 'S' upstream bytes, 'c'/'s' their EOF */
    const char *data;
    size_t len;
};

struct scenario {
    const char *name;
    struct phase ph[8];
    const char *up;
    size_t up_len;
    const char *down;
    size_t down_len;
    const char *log;
    enum http_outcome req_out, resp_out;
    const char *reason; /* substring of the first reason; NULL = none at all */
    size_t max_start_line, max_head_bytes, max_headers, max_pipeline;
};

/* Deliver phase bytes in pieces: split at `at` (if at != SIZE_MAX), or one
 * byte at a time. */
static void deliver(const struct phase *ph, size_t at, bool bytewise)
{
    const uint8_t *p = (const uint8_t *)ph->data;
    void (*fn)(const uint8_t *, size_t) = ph->dir == 'C' ? sim_client : sim_server;
    if (bytewise) {
        for (size_t i = 0; i < ph->len; i++)
            fn(p + i, 1);
    } else if (at != SIZE_MAX) {
        fn(p, at);
        fn(p + at, ph->len - at);
    } else {
        fn(p, ph->len);
    }
}

static void show(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "  %s (%zu): \"", what, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

static void play(const struct scenario *sc, int split_phase, size_t at, bool bytewise)
{
    sim_init(sc->max_start_line, sc->max_head_bytes, sc->max_headers, sc->max_pipeline);
    for (int i = 0; i < 8 && sc->ph[i].dir; i++) {
        const struct phase *ph = &sc->ph[i];
        if (ph->dir == 'c')
            sim_client_eof();
        else if (ph->dir == 's')
            sim_server_eof();
        else
            deliver(ph, i == split_phase ? at : SIZE_MAX, bytewise);
    }

    bool ok = S.up_len == sc->up_len && memcmp(S.up, sc->up, sc->up_len) == 0 &&
              S.down_len == sc->down_len && memcmp(S.down, sc->down, sc->down_len) == 0 &&
              strcmp(S.log, sc->log ? sc->log : "") == 0 && S.req_out == sc->req_out &&
              S.resp_out == sc->resp_out &&
              (sc->reason ? S.reason && strstr(S.reason, sc->reason) : !S.reason);
    if (!ok) {
        fprintf(stderr, "scenario %s, phase %d split at %zu%s:\n", sc->name, split_phase,
                at == SIZE_MAX ? 0 : at, bytewise ? " (byte by byte)" : "");
        show("upstream got", S.up, S.up_len);
        show("expected    ", sc->up, sc->up_len);
        show("client got  ", S.down, S.down_len);
        show("expected    ", sc->down, sc->down_len);
        fprintf(stderr, "  decisions \"%s\" expected \"%s\"\n", S.log, sc->log ? sc->log : "");
        fprintf(stderr, "  outcomes %s/%s expected %s/%s, reason \"%s\" expected \"%s\"\n",
                http_outcome_name(S.req_out), http_outcome_name(S.resp_out),
                http_outcome_name(sc->req_out), http_outcome_name(sc->resp_out),
                S.reason ? S.reason : "(null)", sc->reason ? sc->reason : "(null)");
    }
    S.in = http_inspector_free(S.in);
    assert_true(ok);
}

static unsigned long n_runs;

static void play_all(const struct scenario *sc)
{
    play(sc, -1, SIZE_MAX, false);
    play(sc, -1, SIZE_MAX, true);
    n_runs += 2;
    for (int i = 0; i < 8 && sc->ph[i].dir; i++)
        for (size_t at = 0; at <= sc->ph[i].len && (sc->ph[i].dir == 'C' || sc->ph[i].dir == 'S');
             at++) {
            play(sc, i, at, false);
            n_runs++;
        }
}

/* Requests and responses the scenarios are built from. */
#define GET_A "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define GET_B "GET /b?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
#define POST_DENY "POST /deny HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
#define GET_DENY "GET /deny HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define R200(body) "HTTP/1.1 200 OK\r\nContent-Length: " #body "\r\n\r\n"
#define OK_HI "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
#define OK_EMPTY "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#define WS_REQ(conn)                                                                               \
    "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: " conn           \
    "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
#define WS_101                                                                                     \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
/* WebSocket frames that look like HTTP and contain NULs and bare LFs. */
#define WS_FRAMES_C "\x81\x8e\x00\x00\x00\x00GET / HTTP/1.1\x82\x83\x01\x02\x03\n\r\x00"
#define WS_FRAMES_S "\x81\x11HTTP/1.1 200 OK\n\n\x82\x02\x00\n"

#define GET_A_LOG "GET /a A;"
#define GET_B_LOG "GET /b?x=1 A;"

static const struct scenario scenarios[] = {
    {
        .name = "single GET",
        .ph = {{'C', B(GET_A)}, {'S', B(OK_HI)}},
        .up = B(GET_A),
        .down = B(OK_HI),
        .log = GET_A_LOG,
    },
    {
        .name = "keep-alive GET then denied POST",
        .ph = {{'C', B(GET_A)}, {'S', B(OK_HI)}, {'C', B(POST_DENY)}},
        .up = B(GET_A),
        .down = B(OK_HI "[403]"),
        .log = GET_A_LOG "POST /deny D;",
        .req_out = HTTP_OUTCOME_DENY,
    },
    {
        .name = "pipelined allowed and denied in one buffer",
        .ph = {{'C', B(GET_A POST_DENY GET_B)}, {'S', B(OK_HI)}},
        .up = B(GET_A),
        .down = B(OK_HI "[403]"),
        .log = GET_A_LOG "POST /deny D;",
        .req_out = HTTP_OUTCOME_DENY,
    },
    {
        .name = "pipelined denied first",
        .ph = {{'C', B(GET_DENY GET_A)}},
        .up = B(""),
        .down = B("[403]"),
        .log = "GET /deny D;",
        .req_out = HTTP_OUTCOME_DENY,
    },
    {
        .name = "pipelined three allowed",
        .ph = {{'C', B(GET_A GET_B GET_A)}, {'S', B(OK_HI OK_EMPTY OK_HI)}},
        .up = B(GET_A GET_B GET_A),
        .down = B(OK_HI OK_EMPTY OK_HI),
        .log = GET_A_LOG GET_B_LOG GET_A_LOG,
    },
    {
        .name = "pipeline limit: the third request waits for a response",
        /* causal: the third response can only follow the third request */
        .ph = {{'C', B(GET_A GET_B GET_A)}, {'S', B(OK_HI OK_EMPTY)}, {'S', B(OK_HI)}},
        .up = B(GET_A GET_B GET_A),
        .down = B(OK_HI OK_EMPTY OK_HI),
        .log = GET_A_LOG GET_B_LOG GET_A_LOG,
        .max_pipeline = 2,
    },
    {
        .name = "POST with a Content-Length body",
        .ph = {{'C',
                B("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789" GET_A)},
               {'S', B("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n" OK_HI)}},
        .up = B("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789" GET_A),
        .down = B("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n" OK_HI),
        .log = "POST /up A;" GET_A_LOG,
    },
    {
        .name = "chunked body with extensions and trailers",
        .ph = {{'C', B("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;name=val\r\nhello\r\n6 ; q=\"a b\"\r\n wor\r\n\r\nA\r\n0123456789\r\n"
                       "0\r\nX-Trailer: t\r\nX-Other: u v\r\n\r\n" GET_DENY)}},
        .up = B("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5;name=val\r\nhello\r\n6 ; q=\"a b\"\r\n wor\r\n\r\nA\r\n0123456789\r\n"
                "0\r\nX-Trailer: t\r\nX-Other: u v\r\n\r\n"),
        .down = B(""),
        .log = "POST /c A;GET /deny D;",
        .req_out = HTTP_OUTCOME_DENY,
    },
    {
        .name = "every response body type",
        .ph = {{'C', B("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"
                       "GET /204 HTTP/1.1\r\nHost: h\r\n\r\n"
                       "GET /304 HTTP/1.1\r\nHost: h\r\n\r\n"
                       "POST /cont HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\nok"
                       "GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n"
                       "GET /eof HTTP/1.0\r\n\r\n")},
               {'S', B("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                       "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
                       "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
                       "HTTP/1.0 200 OK\r\n\r\nuntil the end HTTP/1.1 200 OK\r\n\n")},
               {'s', NULL, 0}},
        .up = B("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"
                "GET /204 HTTP/1.1\r\nHost: h\r\n\r\n"
                "GET /304 HTTP/1.1\r\nHost: h\r\n\r\n"
                "POST /cont HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                "Content-Length: 2\r\n\r\nok"
                "GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n"
                "GET /eof HTTP/1.0\r\n\r\n"),
        .down = B("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                  "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
                  "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
                  "HTTP/1.0 200 OK\r\n\r\nuntil the end HTTP/1.1 200 OK\r\n\n"),
        .log = "HEAD /h A;GET /204 A;GET /304 A;POST /cont A;GET /chunked A;GET /eof A;",
        .resp_out = HTTP_OUTCOME_CLOSED,
    },
    {
        .name = "response with a non-chunked final coding runs to EOF",
        .ph = {{'C', B(GET_A)},
               {'S', B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\r\n0\r\n\r\n")},
               {'s', NULL, 0}},
        .up = B(GET_A),
        .down = B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\r\n0\r\n\r\n"),
        .log = GET_A_LOG,
        .resp_out = HTTP_OUTCOME_CLOSED,
    },
    {
        .name = "101 without overflow, then raw frames both ways",
        .ph = {{'C', B(WS_REQ("Upgrade"))},
               {'S', B(WS_101)},
               {'C', B(WS_FRAMES_C)},
               {'S', B(WS_FRAMES_S)}},
        .up = B(WS_REQ("Upgrade") WS_FRAMES_C),
        .down = B(WS_101 WS_FRAMES_S),
        .log = "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UPGRADED,
    },
    {
        .name = "101 and the first frames in one read; client frames before the 101",
        .ph = {{'C', B(WS_REQ("keep-alive, Upgrade") WS_FRAMES_C)},
               {'S', B(WS_101 WS_FRAMES_S)},
               {'C', B(GET_DENY)},
               {'S', B(OK_HI)}},
        .up = B(WS_REQ("keep-alive, Upgrade") WS_FRAMES_C GET_DENY),
        .down = B(WS_101 WS_FRAMES_S OK_HI),
        .log = "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UPGRADED,
    },
    {
        .name = "101 after a pipelined response and a 100",
        .ph = {{'C', B(GET_A WS_REQ("upgrade"))},
               {'S', B(OK_HI "HTTP/1.1 100 Continue\r\n\r\n" WS_101 WS_FRAMES_S)}},
        .up = B(GET_A WS_REQ("upgrade")),
        .down = B(OK_HI "HTTP/1.1 100 Continue\r\n\r\n" WS_101 WS_FRAMES_S),
        .log = GET_A_LOG "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UPGRADED,
    },
    {
        .name = "upgrade refused: the next request is parsed as HTTP",
        .ph = {{'C', B(WS_REQ("Upgrade") GET_A)}, {'S', B(OK_EMPTY)}, {'S', B(OK_HI)}},
        .up = B(WS_REQ("Upgrade") GET_A),
        .down = B(OK_EMPTY OK_HI),
        .log = "GET /chat A;" GET_A_LOG,
    },
    {
        .name = "upgrade refused, then a denied request",
        .ph = {{'C', B(WS_REQ("Upgrade") GET_DENY)}, {'S', B(OK_HI)}},
        .up = B(WS_REQ("Upgrade")),
        .down = B(OK_HI "[403]"),
        .log = "GET /chat A;GET /deny D;",
        .req_out = HTTP_OUTCOME_DENY,
    },
    {
        .name = "unsolicited 101",
        .ph = {{'C', B(GET_A)}, {'S', B(WS_101 WS_FRAMES_S)}},
        .up = B(GET_A),
        .down = B(""),
        .log = GET_A_LOG,
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "unsolicited 101 after a complete response",
        .ph = {{'C', B(GET_A)}, {'S', B(OK_HI WS_101)}},
        .up = B(GET_A),
        .down = B(OK_HI),
        .log = GET_A_LOG,
        .resp_out = HTTP_OUTCOME_BAD_RESPONSE,
        .reason = "no request outstanding",
    },
    {
        .name = "unsolicited 101 after a complete response in the same read",
        .ph = {{'C', B(GET_A GET_B)}, {'S', B(OK_HI WS_101 WS_FRAMES_S)}},
        .up = B(GET_A GET_B),
        .down = B(OK_HI),
        .log = GET_A_LOG GET_B_LOG,
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "101 answering a pipelined request that did not ask",
        .ph = {{'C', B(GET_A WS_REQ("Upgrade"))}, {'S', B(WS_101)}},
        .up = B(GET_A WS_REQ("Upgrade")),
        .down = B(""),
        .log = GET_A_LOG "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "Upgrade without Connection: upgrade makes the 101 unsolicited",
        .ph = {{'C', B(WS_REQ("keep-alive"))}, {'S', B(WS_101)}},
        .up = B(WS_REQ("keep-alive")),
        .down = B(""),
        .log = "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "Connection: upgradex is not the upgrade token",
        .ph = {{'C', B(WS_REQ("upgradex, close"))}, {'S', B(WS_101)}},
        .up = B(WS_REQ("upgradex, close")),
        .down = B(""),
        .log = "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "Upgrade in HTTP/1.0 is ignored",
        .ph = {{'C', B("GET /chat HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")},
               {'S', B(WS_101)}},
        .up = B("GET /chat HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        .down = B(""),
        .log = "GET /chat A;",
        .resp_out = HTTP_OUTCOME_UNSOLICITED_UPGRADE,
        .reason = "did not ask",
    },
    {
        .name = "h2c upgrade",
        .ph = {{'C', B(GET_A "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                             "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")},
               {'S', B(OK_HI)}},
        .up = B(GET_A),
        .down = B(OK_HI "[400]"),
        .log = GET_A_LOG,
        .req_out = HTTP_OUTCOME_BAD_REQUEST,
        .reason = "h2c upgrade not allowed on an inspected endpoint",
    },
    {
        .name = "h2c among other Upgrade tokens",
        .ph = {{'C', B("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket, H2C\r\n\r\n")}},
        .up = B(""),
        .down = B("[400]"),
        .req_out = HTTP_OUTCOME_BAD_REQUEST,
        .reason = "h2c",
    },
    {
        .name = "HTTP/2 prior-knowledge preface",
        .ph = {{'C', B("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00")}},
        .up = B(""),
        .down = B("[400]"),
        .req_out = HTTP_OUTCOME_BAD_REQUEST,
        .reason = "HTTP/2 connection preface",
    },
    {
        .name = "client EOF inside a head",
        .ph = {{'C', B(GET_A "GET /b HTTP/1.1\r\nHo")}, {'c', NULL, 0}, {'S', B(OK_HI)}},
        .up = B(GET_A),
        .down = B(OK_HI),
        .log = GET_A_LOG,
        .reason = "inside a request head",
    },
    {
        .name = "upstream EOF inside a body",
        .ph = {{'C', B(GET_A)}, {'S', B(R200(10) "abc")}, {'s', NULL, 0}},
        .up = B(GET_A),
        .down = B(R200(10) "abc"),
        .log = GET_A_LOG,
        .resp_out = HTTP_OUTCOME_BAD_RESPONSE,
        .reason = "inside a response",
    },
    {
        .name = "absolute-form target naming the Host",
        .ph = {{'C', B("GET http://Example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n")},
               {'S', B(OK_HI)}},
        .up = B("GET http://Example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        .down = B(OK_HI),
        .log = "GET http://Example.com/p?q A;",
    },
    {
        .name = "status lines without a reason phrase, and obs-text in one",
        .ph = {{'C', B(GET_A GET_A GET_A)},
               {'S', B("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"
                       "HTTP/1.1 204 \r\n\r\n"
                       "HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n")}},
        .up = B(GET_A GET_A GET_A),
        .down = B("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"
                  "HTTP/1.1 204 \r\n\r\n"
                  "HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n"),
        .log = GET_A_LOG GET_A_LOG GET_A_LOG,
    },
    {
        .name = "leading empty line before a request",
        .ph = {{'C', B(GET_A "\r\n" GET_B)}, {'S', B(OK_HI OK_HI)}},
        .up = B(GET_A "\r\n" GET_B),
        .down = B(OK_HI OK_HI),
        .log = GET_A_LOG GET_B_LOG,
    },
};

static void test_scenarios(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        play_all(&scenarios[i]);
}

/* ---- malformed requests: each one after an allowed GET ------------------ */

struct bad {
    const char *req;
    size_t len;
    const char *reason;
};

static const struct bad bad_requests[] = {
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
     "both Content-Length and Transfer-Encoding"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
     "both Content-Length and Transfer-Encoding"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
     "more than one Content-Length"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
     "more than one Content-Length"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc"), "invalid Content-Length"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"), "invalid Content-Length"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
     "invalid Content-Length"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     "Transfer-Encoding other than chunked"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
     "Transfer-Encoding other than chunked"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"),
     "Transfer-Encoding other than chunked"},
    {B("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n"),
     "Transfer-Encoding other than chunked"},
    {B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), "HTTP/1.0"},
    {B("GET / HTTP/1.1\nHost: h\r\n\r\n"), "bare LF"},
    {B("GET / HTTP/1.1\r\nHost: h\n\r\n"), "bare LF"},
    {B("GET / HTTP/1.1\r\nHost: h\r\n\n"), "bare LF"},
    {B("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), "CR not followed by LF"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), "obs-fold"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), "obs-fold"},
    {B("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), "obs-fold"},
    {B("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), "invalid header field name"},
    {B("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), "invalid header field name"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nX-\x01: v\r\n\r\n"), "invalid header field name"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n"), "control character"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n"), "control character"},
    {B("GET /\r\n\r\n"), "HTTP/0.9"},
    {B("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), "unsupported HTTP version"},
    {B("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), "unsupported HTTP version"},
    {B("GET / http/1.1\r\nHost: h\r\n\r\n"), "unsupported HTTP version"},
    {B("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), "malformed request line"},
    {B("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), "unsupported HTTP version"},
    {B("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), "invalid character in the method"},
    {B("get / HTTP/1.1\r\nHost: h\r\n\r\n"), "method"},
    {B("FOO / HTTP/1.1\r\nHost: h\r\n\r\n"), "method"},
    {B("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), "invalid character in the request target"},
    {B("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), "invalid character in the request target"},
    {B("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), "fragment"},
    {B("GET a HTTP/1.1\r\nHost: h\r\n\r\n"), "invalid request target"},
    {B("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), "asterisk-form"},
    {B("GET http://other.com/ HTTP/1.1\r\nHost: h\r\n\r\n"), "does not match Host"},
    {B("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"), "invalid authority"},
    {B("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"), "CONNECT"},
    {B("GET / HTTP/1.1\r\n\r\n"), "missing Host"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n"), "more than one Host"},
    {B("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n"), "invalid Host"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
       "Content-Length: 2\r\n\r\nab"),
     "upgrade request with a body"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
     "upgrade request with a body"},
    {B("GET / HTTP/1.1\r\nHost: h\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"), "h2c"},
};

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        char req[1024];
        const struct bad *b = &bad_requests[i];
        assert_true(sizeof(GET_A) - 1 + b->len < sizeof(req));
        memcpy(req, GET_A, sizeof(GET_A) - 1);
        memcpy(req + sizeof(GET_A) - 1, b->req, b->len);
        struct scenario sc = {
            .name = b->req,
            .ph = {{'C', req, sizeof(GET_A) - 1 + b->len}, {'S', B(OK_HI)}},
            .up = B(GET_A),
            .down = B(OK_HI "[400]"),
            .log = GET_A_LOG,
            .req_out = HTTP_OUTCOME_BAD_REQUEST,
            .reason = b->reason,
        };
        play_all(&sc);
    }
}

/* Framing errors inside an allowed request's body: the valid bytes before
 * the error were forwarded, the upstream must be closed at once. */
static const struct bad bad_bodies[] = {
    {B("5\r\nhello\r\n0\r\n\n"), "bare LF"},
    {B("5\nhello\r\n0\r\n\r\n"), "invalid chunk size"},
    {B("5\r\nhello\n0\r\n\r\n"), "chunk data not followed by CRLF"},
    {B("5\r\nhelloX\r\n"), "chunk data not followed by CRLF"},
    {B("5 \r\nhello\r\n"), "whitespace after a chunk size"},
    {B(" 5\r\nhello\r\n"), "invalid chunk size"},
    {B("-5\r\nhello\r\n"), "invalid chunk size"},
    {B("0x5\r\nhello\r\n"), "invalid chunk size"},
    {B("10000000000000000\r\n"), "chunk size too large"},
    {B("5;a=b\nhello\r\n"), "bare LF in chunk framing"},
    {B("5;a=\x01\r\nhello\r\n"), "control character in a chunk extension"},
    {B("5\rhello\r\n"), "CR not followed by LF"},
    {B("0\r\nT: 1\r\n x\r\n\r\n"), "obs-fold in the trailer section"},
    {B("0\r\nT: 1\n\r\n"), "bare LF in the trailer section"},
    {B("0\r\nT 1\r\n\r\n"), "invalid trailer field name"},
    {B("0\r\n\r\r\n"), "CR not followed by LF"},
};

static void test_bad_chunked(void **state)
{
    (void)state;
#define CHUNK_HEAD "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
        const struct bad *b = &bad_bodies[i];
        char req[256], up[256];
        size_t hl = sizeof(CHUNK_HEAD) - 1;
        memcpy(req, CHUNK_HEAD, hl);
        memcpy(req + hl, b->req, b->len);
        /* the expected upstream stream: head + the body up to the first bad
         * byte, found by feeding prefixes to a fresh inspector */
        size_t good = 0;
        for (size_t n = 1; n <= b->len; n++) {
            struct http_step st;
            sim_init(0, 0, 0, 0);
            assert_int_equal(http_inspect_request_bytes(S.in, (const uint8_t *)req, hl + n, &st),
                             0);
            S.in = http_inspector_free(S.in);
            if (st.outcome != HTTP_OUTCOME_NEED_MORE) {
                assert_int_equal(st.outcome, HTTP_OUTCOME_BAD_REQUEST);
                assert_true(st.upstream_dirty);
                assert_int_equal(st.forward, hl + n - 1);
                good = n - 1;
                break;
            }
            assert_int_equal(st.forward, hl + n);
            good = n;
        }
        assert_true(good < b->len); /* the error was found */
        memcpy(up, req, hl + good);
        struct scenario sc = {
            .name = b->req,
            .ph = {{'C', req, hl + b->len}},
            .up = up,
            .up_len = hl + good,
            .down = B("[400]"),
            .log = "POST /c A;",
            .req_out = HTTP_OUTCOME_BAD_REQUEST,
            .reason = b->reason,
        };
        play_all(&sc);
    }
}

static const struct bad bad_responses[] = {
    {B("garbage\r\n\r\n"), "not an HTTP/1.x response"},
    {B("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), "bare LF"},
    {B("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
     "both Content-Length and Transfer-Encoding"},
    {B("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
     "more than one Content-Length"},
    {B("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), "invalid Content-Length"},
    {B("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n"),
     "invalid Transfer-Encoding"},
    {B("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "invalid Transfer-Encoding"},
    {B("HTTP/1.1 2000 OK\r\n\r\n"), "invalid status code"},
    {B("HTTP/1.1 099 OK\r\n\r\n"), "invalid status code"},
    {B("HTTP/2 200\r\n\r\n"), "not an HTTP/1.x response"},
    {B("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), "obs-fold"},
    {B("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeX"),
     "chunk data not followed by CRLF"},
};

static void test_bad_responses(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_responses) / sizeof(bad_responses[0]); i++) {
        const struct bad *b = &bad_responses[i];
        bool body_error = strstr(b->req, "abcdeX") != NULL;
        struct scenario sc = {
            .name = b->req,
            .ph = {{'C', B(GET_A)}, {'S', b->req, b->len}},
            .up = B(GET_A),
            .down = body_error ? b->req : "",
            .down_len = body_error ? b->len - 1 : 0,
            .log = GET_A_LOG,
            .resp_out = HTTP_OUTCOME_BAD_RESPONSE,
            .reason = b->reason,
        };
        play_all(&sc);
    }
}

/* ---- limits --------------------------------------------------------------- */

static void make_request(char *buf, size_t size, size_t target_len, size_t n_headers,
                         size_t header_value_len)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, size - n, "GET /");
    for (size_t i = 1; i < target_len; i++)
        buf[n++] = 'x';
    n += (size_t)snprintf(buf + n, size - n, " HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i < n_headers; i++) {
        n += (size_t)snprintf(buf + n, size - n, "X-%zu: ", i);
        for (size_t k = 0; k < header_value_len; k++)
            buf[n++] = 'v';
        n += (size_t)snprintf(buf + n, size - n, "\r\n");
    }
    snprintf(buf + n, size - n, "\r\n");
}

static void limit_case(size_t max_start_line, size_t max_head, size_t max_headers, const char *req,
                       const char *reason)
{
    size_t len = strlen(req);
    struct scenario sc = {
        .name = reason ? reason : "at the limit",
        .ph = {{'C', req, len}, {'S', B(OK_HI)}},
        .up = reason ? "" : req,
        .up_len = reason ? 0 : len,
        .down = reason ? "[400]" : OK_HI,
        .down_len = reason ? 5 : sizeof(OK_HI) - 1,
        .req_out = reason ? HTTP_OUTCOME_BAD_REQUEST : HTTP_OUTCOME_NEED_MORE,
        .reason = reason,
        .max_start_line = max_start_line,
        .max_head_bytes = max_head,
        .max_headers = max_headers,
    };
    char log[300];
    if (!reason) {
        const char *sp = strchr(req + 4, ' ');
        snprintf(log, sizeof(log), "GET %.*s A;", (int)(sp - (req + 4)), req + 4);
        sc.log = log;
    }
    play_all(&sc);
}

static void test_limits(void **state)
{
    (void)state;
    char req[4096];

    /* request line: "GET /xxx HTTP/1.1\r\n" is target_len + 15 bytes */
    make_request(req, sizeof(req), 49, 1, 0);
    limit_case(64, 512, 8, req, NULL);
    make_request(req, sizeof(req), 50, 1, 0);
    limit_case(64, 512, 8, req, "request line too long");

    /* whole head */
    make_request(req, sizeof(req), 1, 3, 100);
    assert_true(strlen(req) < 512);
    limit_case(64, strlen(req), 8, req, NULL);
    limit_case(64, strlen(req) - 1, 8, req, "header section too large");

    /* header count (Host counts) */
    make_request(req, sizeof(req), 1, 4, 1);
    limit_case(64, 512, 4, req, NULL);
    make_request(req, sizeof(req), 1, 5, 1);
    limit_case(64, 512, 4, req, "too many header fields");

    /* the default limit is 16 KiB: one byte over */
    static char big[HTTP_DEFAULT_MAX_HEAD_BYTES + 64];
    make_request(big, sizeof(big), 1, 2, HTTP_DEFAULT_MAX_HEAD_BYTES);
    struct http_step st;
    sim_init(0, 0, 0, 0);
    assert_int_equal(
        http_inspect_request_bytes(S.in, (const uint8_t *)big, HTTP_DEFAULT_MAX_HEAD_BYTES, &st),
        0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_NEED_MORE);
    assert_int_equal(st.held, HTTP_DEFAULT_MAX_HEAD_BYTES);
    assert_int_equal(http_inspect_request_bytes(S.in, (const uint8_t *)big,
                                                HTTP_DEFAULT_MAX_HEAD_BYTES + 1, &st),
                     0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_BAD_REQUEST);
    assert_string_equal(st.reason, "header section too large");
    S.in = http_inspector_free(S.in);

    /* trailers are bounded like a head */
    char chunked[1024];
    snprintf(chunked, sizeof(chunked),
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
             "A: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    sim_init(0, 0, 2, 0);
    assert_int_equal(
        http_inspect_request_bytes(S.in, (const uint8_t *)chunked, strlen(chunked), &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_BAD_REQUEST);
    assert_string_equal(st.reason, "too many trailer fields");
    S.in = http_inspector_free(S.in);
}

/* ---- the contract, step by step ------------------------------------------ */

static struct http_request_head last_head;
static char last_copy[8][128];
static int n_decided;

static enum http_verdict record_head(void *ctx, const struct http_request_head *h)
{
    (void)ctx;
    n_decided++;
    last_head = *h;
    /* the strings die with the callback: keep copies to assert on */
    snprintf(last_copy[0], 128, "%s", h->method);
    snprintf(last_copy[1], 128, "%s", h->target);
    snprintf(last_copy[2], 128, "%s", h->path);
    snprintf(last_copy[3], 128, "%s", h->query ? h->query : "(none)");
    snprintf(last_copy[4], 128, "%s", h->host ? h->host : "(none)");
    snprintf(last_copy[5], 128, "%s", h->upgrade_protocols ? h->upgrade_protocols : "(none)");
    snprintf(last_copy[6], 128, "%s=%s", h->n_headers ? h->headers[h->n_headers - 1].name : "",
             h->n_headers ? h->headers[h->n_headers - 1].value : "");
    return HTTP_VERDICT_ALLOW;
}

static struct http_inspector *new_recording(size_t max_pipeline)
{
    struct http_inspector *in;
    struct http_inspector_config cfg = {.decide = record_head, .max_pipeline = max_pipeline};
    n_decided = 0;
    assert_int_equal(http_inspector_new(&cfg, &in), 0);
    return in;
}

static void test_head_fields(void **state)
{
    (void)state;
    struct http_step st;
    struct http_inspector *in = new_recording(0);
    const char req[] = "PUT /repos/a%2Fb/x?y=1&z HTTP/1.1\r\nHost:  api.example.com:8443 \r\n"
                       "Upgrade: foo\r\nUpgrade: websocket/13\r\nConnection: x, UPGRADE\r\n"
                       "X-Last:\tv  v\t\r\n\r\n";
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)req, sizeof(req) - 1, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_NEED_MORE);
    assert_int_equal(st.forward, sizeof(req) - 1);
    assert_int_equal(n_decided, 1);
    assert_string_equal(last_copy[0], "PUT");
    assert_string_equal(last_copy[1], "/repos/a%2Fb/x?y=1&z");
    assert_string_equal(last_copy[2], "/repos/a%2Fb/x");
    assert_string_equal(last_copy[3], "y=1&z");
    assert_string_equal(last_copy[4], "api.example.com:8443");
    assert_string_equal(last_copy[5], "foo, websocket/13");
    assert_string_equal(last_copy[6], "X-Last=v  v");
    assert_int_equal(last_head.n_headers, 5);
    assert_true(last_head.upgrade);
    assert_int_equal(last_head.version_minor, 1);
    assert_int_equal(last_head.body, HTTP_BODY_NONE);
    assert_int_equal(last_head.index, 0);
    assert_int_equal(last_head.path_len, strlen("/repos/a%2Fb/x"));
    assert_int_equal(last_head.host_len, strlen("api.example.com:8443"));
    in = http_inspector_free(in);

    in = new_recording(0);
    const char req2[] = "OPTIONS * HTTP/1.0\r\nContent-Length: 7\r\n\r\n1234567"
                        "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)req2, sizeof(req2) - 1, &st),
                     0);
    assert_int_equal(st.forward, sizeof(req2) - 1);
    assert_int_equal(n_decided, 2);
    assert_string_equal(last_copy[2], "/"); /* absolute-form with an empty path */
    assert_string_equal(last_copy[3], "(none)");
    assert_int_equal(last_head.index, 1);
    in = http_inspector_free(in);

    in = new_recording(0);
    const char req3[] = "OPTIONS * HTTP/1.0\r\nContent-Length: 7\r\n\r\n";
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)req3, sizeof(req3) - 1, &st),
                     0);
    assert_string_equal(last_copy[1], "*");
    assert_string_equal(last_copy[2], "*");
    assert_string_equal(last_copy[4], "(none)");
    assert_int_equal(last_head.body, HTTP_BODY_LENGTH);
    assert_int_equal(last_head.content_length, 7);
    assert_int_equal(last_head.version_minor, 0);
    assert_false(last_head.upgrade);
    in = http_inspector_free(in);
}

static void test_contract(void **state)
{
    (void)state;
    struct http_step st;
    struct http_inspector *in = new_recording(0);
    const char req[] = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
    const uint8_t *r = (const uint8_t *)req;
    size_t hl = sizeof(req) - 1;

    /* a partial head is held, not cleared, and never decided early */
    assert_int_equal(http_inspect_request_bytes(in, r, 10, &st), 0);
    assert_int_equal(st.forward, 0);
    assert_int_equal(st.held, 10);
    assert_int_equal(n_decided, 0);
    /* passing fewer bytes than held breaks the contract */
    assert_int_equal(http_inspect_request_bytes(in, r, 9, &st), -EINVAL);
    /* the same bytes again: nothing new */
    assert_int_equal(http_inspect_request_bytes(in, r, 10, &st), 0);
    assert_int_equal(st.held, 10);
    /* the head completes: cleared whole, decided once */
    assert_int_equal(http_inspect_request_bytes(in, r, hl, &st), 0);
    assert_int_equal(st.forward, hl);
    assert_int_equal(st.held, 0);
    assert_int_equal(n_decided, 1);
    assert_int_equal(http_inspector_pending(in), 1);
    assert_false(http_inspector_idle(in));
    /* the body streams: each piece is cleared as it arrives */
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)"01234", 5, &st), 0);
    assert_int_equal(st.forward, 5);
    assert_int_equal(st.held, 0);
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)"56789GET", 8, &st), 0);
    assert_int_equal(st.forward, 5); /* "GET" starts the next head */
    assert_int_equal(st.held, 3);
    /* the response */
    const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)resp, sizeof(resp) - 1, &st),
                     0);
    assert_int_equal(st.forward, sizeof(resp) - 1);
    assert_true(http_inspector_idle(in));
    assert_int_equal(http_inspector_pending(in), 0);
    /* bad arguments */
    assert_int_equal(http_inspect_request_bytes(NULL, r, 1, &st), -EINVAL);
    assert_int_equal(http_inspect_request_bytes(in, NULL, 1, &st), -EINVAL);
    assert_int_equal(http_inspect_response_bytes(in, r, 1, NULL), -EINVAL);
    in = http_inspector_free(in);
    assert_null(http_inspector_free(NULL));

    struct http_inspector_config cfg = {0};
    assert_int_equal(http_inspector_new(&cfg, &in), -EINVAL);
    assert_int_equal(http_inspector_new(NULL, &in), -EINVAL);
}

static void test_blocked_and_wake(void **state)
{
    (void)state;
    struct http_step st;
    struct http_inspector *in = new_recording(2);
    const char ws[] = WS_REQ("Upgrade") GET_A;
    size_t wl = sizeof(WS_REQ("Upgrade")) - 1;

    /* after a request that asked to upgrade, the next bytes are not examined */
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)ws, sizeof(ws) - 1, &st), 0);
    assert_int_equal(st.forward, wl);
    assert_int_equal(st.held, 0);
    assert_true(st.blocked);
    assert_int_equal(n_decided, 1);
    /* a 100 does not unblock */
    const char r100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)r100, sizeof(r100) - 1, &st),
                     0);
    assert_false(st.wake_request);
    /* a refusal does */
    const char r426[] = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)r426, sizeof(r426) - 1, &st),
                     0);
    assert_true(st.wake_request);
    assert_int_equal(
        http_inspect_request_bytes(in, (const uint8_t *)ws + wl, sizeof(ws) - 1 - wl, &st), 0);
    assert_int_equal(st.forward, sizeof(ws) - 1 - wl);
    assert_false(st.blocked);
    assert_int_equal(n_decided, 2);
    in = http_inspector_free(in);

    /* max_pipeline 2: the third request waits; a response wakes it */
    in = new_recording(2);
    const char three[] = GET_A GET_A GET_A;
    size_t one = sizeof(GET_A) - 1;
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)three, sizeof(three) - 1, &st),
                     0);
    assert_int_equal(st.forward, 2 * one);
    assert_true(st.blocked);
    assert_int_equal(http_inspector_pending(in), 2);
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)OK_HI, 5, &st), 0);
    assert_false(st.wake_request); /* a partial response pops nothing */
    assert_int_equal(
        http_inspect_response_bytes(in, (const uint8_t *)OK_HI, sizeof(OK_HI) - 1, &st), 0);
    assert_true(st.wake_request);
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)three + 2 * one, one, &st), 0);
    assert_int_equal(st.forward, one);
    assert_false(st.blocked);
    in = http_inspector_free(in);
}

static void test_upgraded_overflow(void **state)
{
    (void)state;
    struct http_step st;
    struct http_inspector *in = new_recording(0);
    const char req[] = WS_REQ("Upgrade");
    const char resp[] = WS_101 "\x81\x05hello";
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)req, sizeof(req) - 1, &st), 0);
    /* the 101 head arrives in pieces: held until complete */
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)resp, 20, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_NEED_MORE);
    assert_int_equal(st.forward, 0);
    assert_int_equal(st.held, 20);
    assert_int_equal(http_inspect_response_bytes(in, (const uint8_t *)resp, sizeof(resp) - 1, &st),
                     0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_UPGRADED);
    assert_int_equal(st.forward, sizeof(WS_101) - 1);
    assert_int_equal(st.overflow, 7);
    assert_null(st.reason);
    /* both directions are finished */
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)"x", 1, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_UPGRADED);
    assert_int_equal(st.forward, 0);
    assert_false(http_inspector_idle(in));
    in = http_inspector_free(in);
}

static void test_eof(void **state)
{
    (void)state;
    struct http_step st;
    struct http_inspector *in = new_recording(0);
    assert_int_equal(http_inspect_response_eof(in, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_CLOSED);
    assert_null(st.reason);
    assert_int_equal(http_inspect_request_eof(in, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_CLOSED);
    assert_null(st.reason);
    in = http_inspector_free(in);

    in = new_recording(0);
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)GET_A, sizeof(GET_A) - 1, &st),
                     0);
    assert_int_equal(http_inspect_response_eof(in, &st), 0);
    assert_int_equal(st.outcome, HTTP_OUTCOME_CLOSED);
    assert_string_equal(st.reason, "upstream closed with requests outstanding");
    in = http_inspector_free(in);

    in = new_recording(0);
    const char post[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc";
    assert_int_equal(http_inspect_request_bytes(in, (const uint8_t *)post, sizeof(post) - 1, &st),
                     0);
    assert_int_equal(http_inspect_request_eof(in, &st), 0);
    assert_string_equal(st.reason, "client closed inside a request body");
    in = http_inspector_free(in);
}

/* ---- the error responses -------------------------------------------------- */

/* Minimal checks that an error response is well-formed HTTP: status line,
 * CRLF head, Content-Length equal to the body. */
static const char *check_response(const char *r, int len, const char *status)
{
    assert_true(len > 0);
    assert_int_equal((size_t)len, strlen(r));
    assert_memory_equal(r, status, strlen(status));
    const char *end = strstr(r, "\r\n\r\n");
    assert_non_null(end);
    for (const char *p = r; p < end; p++)
        if (*p == '\n')
            assert_true(p > r && p[-1] == '\r');
    const char *cl = strstr(r, "\r\nContent-Length: ");
    assert_non_null(cl);
    assert_true(cl < end);
    long n = strtol(cl + 18, NULL, 10);
    assert_int_equal(n, (long)strlen(end + 4));
    assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(r, "\r\nContent-Type: application/json\r\n"));
    return end + 4;
}

static void test_format(void **state)
{
    (void)state;
    char buf[1024];
    int n =
        http_format_403("github_readonly", "access: read-only", "POST /repos/x", buf, sizeof(buf));
    const char *body = check_response(buf, n, "HTTP/1.1 403 Forbidden\r\n");
    assert_string_equal(body, "{\"error\":\"policy_denied\",\"policy\":\"github_readonly\","
                              "\"rule\":\"access: read-only\",\"detail\":\"POST /repos/x\"}\n");
    assert_non_null(strstr(buf, "\r\nX-Portcullis-Policy: github_readonly\r\n"));

    /* escaping: quotes, backslash, controls, UTF-8 kept, invalid UTF-8
     * replaced; the header never gets CR/LF */
    n = http_format_403("p\"o\\l\r\nX-Evil: 1", NULL, "caf\xc3\xa9 \x01 \xff\xc3 \xed\xa0\x80 \t",
                        buf, sizeof(buf));
    body = check_response(buf, n, "HTTP/1.1 403 Forbidden\r\n");
    assert_string_equal(body,
                        "{\"error\":\"policy_denied\",\"policy\":\"p\\\"o\\\\l\\r\\nX-Evil: 1\","
                        "\"rule\":null,\"detail\":\"caf\xc3\xa9 \\u0001 \\ufffd\\ufffd "
                        "\\ufffd\\ufffd\\ufffd \\t\"}\n");
    assert_non_null(strstr(buf, "\r\nX-Portcullis-Policy: p\"o\\l??X-Evil: 1\r\n"));
    assert_null(strstr(buf, "\r\nX-Evil"));

    n = http_format_403(NULL, NULL, NULL, buf, sizeof(buf));
    body = check_response(buf, n, "HTTP/1.1 403 Forbidden\r\n");
    assert_string_equal(
        body, "{\"error\":\"policy_denied\",\"policy\":null,\"rule\":null,\"detail\":null}\n");
    assert_non_null(strstr(buf, "\r\nX-Portcullis-Policy: -\r\n"));

    n = http_format_400("h2c upgrade not allowed on an inspected endpoint", buf, sizeof(buf));
    body = check_response(buf, n, "HTTP/1.1 400 Bad Request\r\n");
    assert_string_equal(body, "{\"error\":\"bad_request\",\"detail\":\"h2c upgrade not allowed "
                              "on an inspected endpoint\"}\n");

    /* too small: -ENOSPC, never a truncated response; exactly enough works */
    n = http_format_400("x", buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(http_format_400("x", buf, (size_t)n), -ENOSPC);
    assert_int_equal(http_format_400("x", buf, (size_t)n + 1), n);
    assert_int_equal(http_format_403("p", "r", "d", buf, 10), -ENOSPC);
}

static void test_outcome_names(void **state)
{
    (void)state;
    for (int o = 0; o < HTTP_OUTCOME_MAX; o++)
        assert_string_not_equal(http_outcome_name((enum http_outcome)o), "unknown");
    assert_string_equal(http_outcome_name(HTTP_OUTCOME_UPGRADED), "upgraded");
    assert_string_equal(http_outcome_name(HTTP_OUTCOME_MAX), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_bad_chunked),
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_head_fields),
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_blocked_and_wake),
        cmocka_unit_test(test_upgraded_overflow),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_outcome_names),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "test_inspect: %lu scenario runs\n", n_runs);
    return rc;
}
