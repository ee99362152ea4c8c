/*
 * inspect: HTTP/1.1 inspection of one connection, both directions.
 *
 * Pure: no sockets, no libuv, no policy, no logging, no globals.  The caller
 * (the relay integration) reads bytes, hands them to the inspector, and moves
 * exactly the bytes the inspector clears.  Every request head is parsed,
 * validated and decided (cfg->decide, synchronously) before any byte of it is
 * cleared; request bodies (Content-Length or chunked) are cleared as they
 * stream, never buffered whole; responses are followed so the next request
 * and the next response start at the right byte, and so a 101 is recognised.
 *
 * Byte-accounting contract (the same for both directions)
 * --------------------------------------------------------
 * The caller keeps, per direction, one buffer of the bytes it read from that
 * peer and has not yet written to the other peer, in the order read: buf[0,len).
 * On every call it passes the WHOLE buffer (new bytes appended at the end; the
 * buffer may move between calls, the inspector keeps counts, never pointers).
 * On return (0), with s the struct http_step:
 *
 *   1. write buf[0, s.forward) to the other peer, then drop those bytes from
 *      the front of buf.  These bytes are cleared; each byte is cleared once.
 *   2. of what remains, buf[0, s.held) has been examined and is held back (a
 *      request or response head that is not complete yet).  The caller keeps
 *      it at the front; the inspector will clear it, or end the connection,
 *      later.  s.held <= cfg->max_head_bytes always, so a caller buffer of
 *      max_head_bytes plus one read never deadlocks.
 *   3. the rest of buf has not been examined: the inspector stopped early
 *      (s.blocked, or a terminal outcome).  Keep it and pass it again.
 *
 * Never drop or reorder bytes that were not cleared, never pass fewer than the
 * held bytes (-EINVAL), and never alter bytes already passed.  Bytes are
 * cleared in stream order, so concatenating every forward prefix gives
 * exactly the stream the other peer receives.
 *
 * Outcomes (s.outcome)
 * --------------------
 *   NEED_MORE  nothing ends the connection: forward, then read more.  On the
 *              request side s.blocked means the inspector will not examine
 *              further client bytes until the response side sets
 *              s.wake_request (after a request that asked to upgrade, until its
 *              response is known; or when cfg->max_pipeline requests await
 *              their responses).  The caller then calls
 *              http_inspect_request_bytes() again with its client buffer, even
 *              if nothing new was read.
 *   DENY       (request) the decide callback denied a request.  Nothing of that
 *              request is in s.forward (earlier requests' bytes may be).  The
 *              request side is finished: stop reading the client, deliver the
 *              responses to the earlier requests through the response side until
 *              http_inspector_idle(), then write http_format_403() to the client
 *              and close both sides.
 *   BAD_REQUEST (request) malformed or ambiguous request (s.reason).  As DENY
 *              with http_format_400(s.reason); if s.upstream_dirty the error is
 *              inside a request body the upstream has partly seen: close the
 *              upstream at once instead of draining responses.
 *   UPGRADED   (response) a 101 answered a request that asked for it.  s.forward
 *              ends exactly after the 101 head; buf[s.forward, len) (s.overflow
 *              bytes) is already raw: write it after the 101 head, then relay
 *              both directions raw, the whole client buffer included (the
 *              request side stopped examining client bytes at the end of the
 *              upgrade request).  The inspector is finished in both directions.
 *   UNSOLICITED_UPGRADE (response) a 101 the request did not ask for.  Nothing
 *              of the 101 is cleared (s.forward may clear bytes before it:
 *              the caller may drop them); close both sides and raise the
 *              finding.  Finished in both directions.
 *   BAD_RESPONSE (response) not HTTP/1.x, ambiguous framing, over a limit, or
 *              bytes with no request outstanding (s.reason).  Close both sides.
 *   CLOSED     (from the _eof() functions) the peer ended the stream; s.reason
 *              is NULL when it ended at a clean message boundary.
 *
 * After a terminal outcome a direction returns the same outcome again with
 * s.forward == 0 (idempotent, never clears more).  In DESIGN.md's words:
 * NEED_MORE with http_inspector_idle() is REUSABLE, UPGRADED is UPGRADED, and
 * every other outcome is CONSUMED (close).
 *
 * Decisions made here (not configurable): CONNECT, `Upgrade: h2c` (any h2c
 * token), HTTP2-Settings and the HTTP/2 preface are rejected (400); duplicate
 * Content-Length is rejected even with identical values; Transfer-Encoding in a
 * request must be exactly one `chunked` (not with Content-Length, not in
 * HTTP/1.0); an Upgrade request may not carry a body; an absolute-form target
 * must name the same authority as Host; every line of a head, of chunk framing
 * and of trailers must end in CRLF and obs-fold is rejected.  See inspect.c.
 */
#ifndef PCL_INSPECT_H
#define PCL_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_DEFAULT_MAX_START_LINE 8192
#define HTTP_DEFAULT_MAX_HEAD_BYTES 16384
#define HTTP_DEFAULT_MAX_HEADERS 100
#define HTTP_DEFAULT_MAX_PIPELINE 16

enum http_verdict {
    HTTP_VERDICT_ALLOW = 0,
    HTTP_VERDICT_DENY,
    HTTP_VERDICT_MAX,
};

enum http_outcome {
    HTTP_OUTCOME_NEED_MORE = 0,
    HTTP_OUTCOME_DENY,
    HTTP_OUTCOME_BAD_REQUEST,
    HTTP_OUTCOME_UPGRADED,
    HTTP_OUTCOME_UNSOLICITED_UPGRADE,
    HTTP_OUTCOME_BAD_RESPONSE,
    HTTP_OUTCOME_CLOSED,
    HTTP_OUTCOME_MAX,
};

enum http_body {
    HTTP_BODY_NONE = 0,
    HTTP_BODY_LENGTH,  /* Content-Length */
    HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    HTTP_BODY_EOF,     /* responses only: until the upstream closes */
    HTTP_BODY_MAX,
};

/* One header field line, OWS trimmed from the value.  NUL-terminated copies. */
struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * A complete, validated request head, as the decide callback sees it.  Every
 * pointer is a NUL-terminated copy owned by the inspector and valid only
 * during the callback (copy what must outlive it).  Nothing is decoded:
 * path normalisation and percent-decoding are the policy's job.
 */
struct http_request_head {
    uint64_t index;     /* 0 for the first request of the connection */
    const char *method; /* "GET", ... */
    const char *target; /* the raw request-target */
    size_t target_len;
    const char *path; /* target without query: "/a/b", "*" for OPTIONS *; for
                         an absolute-form target the path part ("/" if empty) */
    size_t path_len;
    const char *query; /* after '?', NULL if there is no '?' */
    size_t query_len;
    const char *host; /* Host value; NULL if absent (only possible in HTTP/1.0) */
    size_t host_len;
    unsigned version_minor;        /* HTTP/1.<version_minor>: 0 or 1 */
    bool upgrade;                  /* Upgrade plus a Connection "upgrade" token: a 101 may follow */
    const char *upgrade_protocols; /* the Upgrade value(s) joined with ", ", NULL if none */
    enum http_body body;           /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;       /* when body == LENGTH */
    const struct http_header *headers;
    size_t n_headers;
};

/* Called once per request when its head is complete and valid.  Must not
 * call back into the inspector. */
typedef enum http_verdict (*http_decide_fn)(void *ctx, const struct http_request_head *head);

struct http_inspector_config {
    size_t max_start_line; /* request/status line with its CRLF; 0 = 8 KiB */
    size_t max_head_bytes; /* a whole head (start line to the empty line), and a
                              chunked body's trailer section; 0 = 16 KiB */
    size_t max_headers;    /* header fields per head (and trailers); 0 = 100 */
    size_t max_pipeline;   /* allowed requests awaiting their response; 0 = 16 */
    http_decide_fn decide; /* required */
    void *ctx;
};

struct http_step {
    enum http_outcome outcome;
    size_t forward;      /* write buf[0, forward) to the other peer, then drop it */
    size_t held;         /* then buf[0, held) is examined, held back: keep it */
    size_t overflow;     /* UPGRADED: bytes after the 101 head (buf[forward, len)) */
    bool blocked;        /* request side: waits for the response side (wake_request) */
    bool wake_request;   /* response side: call http_inspect_request_bytes() again */
    bool upstream_dirty; /* BAD_REQUEST inside a body: close the upstream at once */
    const char *reason;  /* static text for BAD_*, UNSOLICITED_UPGRADE, unclean CLOSED */
};

struct http_inspector;

/* Create an inspector for one connection.  cfg is copied; cfg->decide is
 * required.  Returns 0, -EINVAL or -ENOMEM. */
int http_inspector_new(const struct http_inspector_config *cfg, struct http_inspector **ret);

/* Accepts NULL; returns NULL. */
struct http_inspector *http_inspector_free(struct http_inspector *insp);

/* Client -> upstream bytes; buf is the caller's whole pending client buffer
 * (see the contract above).  Returns 0 and fills *ret, or -EINVAL when len is
 * smaller than what the inspector holds or an argument is NULL. */
int http_inspect_request_bytes(struct http_inspector *insp, const uint8_t *buf, size_t len,
                               struct http_step *ret);

/* Upstream -> client bytes; same contract. */
int http_inspect_response_bytes(struct http_inspector *insp, const uint8_t *buf, size_t len,
                                struct http_step *ret);

/* The client (resp. upstream) closed its sending side; everything it sent was
 * passed already.  CLOSED with reason NULL at a message boundary (and, for the
 * upstream, at the end of a close-delimited body); otherwise CLOSED with a
 * reason (client: a held partial head is dropped) or, for the upstream
 * mid-response, BAD_RESPONSE.  Both make the direction terminal. */
int http_inspect_request_eof(struct http_inspector *insp, struct http_step *ret);
int http_inspect_response_eof(struct http_inspector *insp, struct http_step *ret);

/* True when every allowed request got its complete response and the response
 * side is between messages: the connection is REUSABLE, and after DENY or
 * BAD_REQUEST the 403/400 may be written. */
bool http_inspector_idle(const struct http_inspector *insp);

/* Allowed requests whose final response has not been fully seen. */
size_t http_inspector_pending(const struct http_inspector *insp);

const char *http_outcome_name(enum http_outcome o); /* "need_more", "deny", ... */

/*
 * Complete HTTP/1.1 error responses with a JSON body and Connection: close,
 * written to buf (NUL-terminated).  403: {"error":"policy_denied","policy":P,
 * "rule":R,"detail":D} plus an X-Portcullis-Policy header; 400:
 * {"error":"bad_request","detail":REASON}.  Strings are JSON-escaped (invalid
 * UTF-8 becomes U+FFFD); NULL gives JSON null (and "-" in the header, whose
 * value keeps only printable ASCII).  Returns the length without the NUL, or
 * -ENOSPC if buf is too small (1 KiB plus the strings' escaped size suffices).
 */
int http_format_403(const char *policy, const char *rule, const char *detail, char *buf,
                    size_t len);
int http_format_400(const char *reason, char *buf, size_t len);

#endif
