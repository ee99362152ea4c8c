/*
 * Flows: accept a REDIRECTed connection, recover its original destination,
 * find its sandbox, decide (resolving policy hosts when needed), identify the
 * sandboxed process, write the event, then relay or reset.
 *
 * A flow object lives from accept until both the decision and the process
 * lookup are done.  An allowed flow is handed to the relay at once (the
 * lookup finishes in parallel); a denied one is reset only after the lookup,
 * so the process is still there to be named in the event.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "events.h"
#include "http_flow.h"
#include "ident.h"
#include "tlshello.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define FLOW_ACCEPT_BATCH 64
#define FLOW_ACCEPT_BACKOFF_MS 250
#define FLOW_MAX_DECIDE_ROUNDS 32
#define FLOW_MAX_PENDING 16384 /* flows deciding or being identified, all sandboxes */
/* One sandbox cannot take every pending slot from the others. */
#define FLOW_MAX_PENDING_PER_SANDBOX 1024
#define FLOW_MISS_RESCAN_MS 100

static uint64_t last_miss_rescan_ms;

enum flow_flags {
    FLOW_F_DECIDED = 1 << 0,
    FLOW_F_IDENT_DONE = 1 << 1,
    FLOW_F_IDENT_QUEUED = 1 << 2, /* waiting for, or in, an ident batch */
    FLOW_F_RELAYING = 1 << 3,     /* fd handed to the relay */
    FLOW_F_COUNTED = 1 << 4,      /* counted in sandbox->n_flows */
    FLOW_F_PEEKING = 1 << 5,      /* waiting for the client's first bytes */
};

struct flow {
    struct flow *peek_next, *peek_prev; /* while peeking, for flow_shutdown() */
    int fd;
    unsigned flags;
    struct net_addr src, dst;
    uint16_t sport, dport;
    struct sandbox *sb;
    enum event_action action;
    const char *reason;
    const char *policy_name;
    char policy_name_buf[POLICY_MAX_NAME_LEN + 1];
    unsigned rounds;
    struct flow *ident_next; /* in the ident queue or batch */
    pid_t pid;
    char *exe; /* from the process lookup; NULL when unknown */
    /* the peek at the first bytes: a ClientHello's SNI, an HTTP Host */
    uv_poll_t peek_poll;
    uv_timer_t peek_timer;
    unsigned peek_handles; /* open: 0 while the first look needed none */
    bool peek_closing;     /* flow_peek_done() ran: the handles are closing */
    bool peek_lowat;       /* SO_RCVLOWAT raised while waiting for more */
    bool resolving;        /* a resolution for the SNI decision is pending */
    size_t peek_seen;
    bool peek_tls; /* what was seen so far starts a ClientHello */
    uint64_t peek_started_ms;
    /* a client silent past PEEK_FIRST_BYTE_MS: the upstream, connected by
     * the flow itself so a server-first protocol can speak first */
    bool late;
    bool up_connected;
    bool up_failed; /* connect failed, or neither side spoke: reset both */
    int up_fd;
    uv_poll_t up_poll;
    bool want_name; /* denied by address, but a wildcard could match the SNI */
    bool tls;       /* the client opened with a ClientHello */
    char sni[TLS_HELLO_MAX_SNI + 1];
    enum policy_tls tls_mode; /* of the matched endpoint */
    /* an inspected endpoint (protocol: rest): started once identified */
    bool inspect;
    bool terminate; /* decrypt (inspect, or tls: terminate) */
    const struct policy_endpoint *ep;
    struct policy_ref *pol;
    char endpoint_host[POLICY_MAX_HOST_LEN + 1];
};

struct listener {
    int fd;
    uv_poll_t poll;
    bool polling;
};

static struct flow *peeking; /* flows looking at their first bytes */
static struct listener listeners[2];
static size_t n_listeners;
static uv_timer_t backoff_timer;
static bool backoff_logged;
static size_t n_pending;
/* late peeks: decided, waiting for either peer to speak (bounded, like relays,
 * by the sandbox's flow limit, not by the pending ones) */
static size_t n_late;
static size_t n_relaying;

static void flow_decide(struct flow *f);

/* Once the daemon stops, nothing new is relayed or inspected: whatever
 * started then would outlive the shutdown's aborts. */
static void flow_refuse_if_stopping(struct flow *f)
{
    if (daemon_stopping && f->action != EVENT_ACTION_DENIED && !(f->flags & FLOW_F_RELAYING)) {
        f->action = EVENT_ACTION_DENIED;
        f->reason = "shutting_down";
        f->inspect = f->terminate = false;
    }
}
static void flow_peek_start(struct flow *f);
static void flow_peek_open(struct flow *f);
static void flow_maybe_finish(struct flow *f);
static void on_peek_timer(uv_timer_t *t);

size_t flow_count(void)
{
    return n_pending + n_late + n_relaying + http_flow_count();
}

static void flow_free(struct flow *f)
{
    if (f->fd >= 0 && !(f->flags & FLOW_F_RELAYING))
        relay_reset_fd(f->fd);
    if (f->up_fd >= 0)
        relay_reset_fd(f->up_fd);
    if (f->sb && (f->flags & FLOW_F_COUNTED) && !(f->flags & FLOW_F_RELAYING))
        f->sb->n_flows--;
    if (f->late) {
        n_late--;
    } else {
        f->sb->n_pending--;
        n_pending--;
    }
    policy_ref_put(f->pol);
    sandbox_unref(f->sb);
    free(f->exe);
    free(f);
}

static void flow_emit(struct flow *f)
{
    struct event ev;
    memset(&ev, 0, sizeof(ev));
    ev.sandbox = f->sb ? f->sb->rec.name : NULL;
    ev.type = "NET:OPEN";
    ev.action = f->action;
    ev.reason = f->reason;
    ev.policy = f->policy_name;
    ev.proto = "tcp";
    /* The name the flow went by: its SNI, else the exact host it matched. */
    if (f->sni[0])
        ev.dst_host = f->sni;
    else if (f->endpoint_host[0] && !strchr(f->endpoint_host, '*'))
        ev.dst_host = f->endpoint_host;
    ev.dst_ip = f->dst;
    ev.dst_port = f->dport;
    ev.pid = f->pid;
    ev.exe = f->exe;
    if (f->tls && f->action != EVENT_ACTION_DENIED)
        ev.detail = f->terminate ? "tls:terminate" : "tls:passthrough";
    ev.severity = f->action == EVENT_ACTION_ALLOWED ? EVENT_SEVERITY_INFO
                  : f->action == EVENT_ACTION_AUDIT ? EVENT_SEVERITY_LOW
                                                    : EVENT_SEVERITY_MEDIUM;
    events_emit(&ev);
}

/*
 * Before relaying, look at what the client sends first, without consuming
 * it (MSG_PEEK):
 *  - a TLS ClientHello: its SNI is the flow's name, and the flow is decided
 *    again on it.  A policy host's name sent to another host's address, or
 *    no name at all where the address matched a host endpoint, is a
 *    host_mismatch (domain fronting).  Then the flow is passed through, or
 *    terminated where the endpoint inspects HTTP or says `tls: terminate`;
 *  - an HTTP request on a plain endpoint: its Host must agree with the
 *    destination;
 *  - anything else passes as it is, except on an endpoint that requires TLS.
 * A flow denied by its address is peeked too when a wildcard host could
 * still allow it by name.  A client still silent after a short deadline on a
 * plain endpoint may be waiting for the server to speak first (SMTP, FTP):
 * the upstream is connected then, and whichever side speaks first decides -
 * the server (relay from there), or the client, whose first bytes get the
 * same check however late they come, so waiting cannot dodge it.  A
 * ClientHello or request head that never completes is refused, so a slow
 * sender cannot outwait the check either.
 */
#define PEEK_FIRST_BYTE_MS 250
#define PEEK_HEAD_MS 3000
#define PEEK_HTTP_MAX 8192
#define PEEK_MAX TLS_HELLO_MAX_BYTES

static void flow_relay(struct flow *f);

/* The peek is over (its handles, if any, closed): relay, or finish. */
static void flow_peek_finish(struct flow *f)
{
    f->flags &= ~FLOW_F_PEEKING;
    DLIST_UNLINK(peeking, f, peek_prev, peek_next);
    if (f->peek_lowat) {
        int one = 1;
        setsockopt(f->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    }
    flow_refuse_if_stopping(f);
    bool no_relay = f->action == EVENT_ACTION_DENIED || f->inspect || f->terminate || f->up_failed;
    if (f->up_fd >= 0 && no_relay) {
        /* The upstream saw a connection but not one byte. */
        relay_reset_fd(f->up_fd);
        f->up_fd = -1;
    }
    if (no_relay)
        flow_maybe_finish(f);
    else
        flow_relay(f);
}

static void on_peek_closed(uv_handle_t *h)
{
    struct flow *f = h->data;
    if (--f->peek_handles == 0)
        flow_peek_finish(f);
}

static void flow_peek_done(struct flow *f, const char *deny_reason)
{
    if (f->peek_closing)
        return; /* aborted by a shutdown meanwhile */
    f->peek_closing = true;
    if (deny_reason) {
        /* --audit lets what would be refused pass, logged as audit. */
        f->action = f->sb->rec.audit ? EVENT_ACTION_AUDIT : EVENT_ACTION_DENIED;
        f->reason = deny_reason;
    }
    if (f->action == EVENT_ACTION_DENIED)
        f->inspect = f->terminate = false;
    if (!f->peek_handles) {
        flow_peek_finish(f); /* decided on the first look */
        return;
    }
    uv_poll_stop(&f->peek_poll);
    uv_timer_stop(&f->peek_timer);
    uv_close((uv_handle_t *)&f->peek_poll, on_peek_closed);
    uv_close((uv_handle_t *)&f->peek_timer, on_peek_closed);
    if (f->late)
        uv_close((uv_handle_t *)&f->up_poll, on_peek_closed);
}

/* The upstream may not decide the flow by speaking while the client's
 * first bytes are being checked. */
static void flow_peek_hold_upstream(struct flow *f)
{
    if (f->late)
        uv_poll_stop(&f->up_poll);
}

/* A FINDING:HOST_MISMATCH event: the flow's name contradicts its address. */
static void flow_host_mismatch_finding(struct flow *f, const char *host, const char *detail)
{
    struct event ev;
    memset(&ev, 0, sizeof(ev));
    ev.sandbox = f->sb->rec.name;
    ev.type = "FINDING:HOST_MISMATCH";
    ev.action = f->sb->rec.audit ? EVENT_ACTION_AUDIT : EVENT_ACTION_DENIED;
    ev.reason = "host_mismatch";
    ev.policy = f->policy_name;
    ev.proto = "tcp";
    ev.dst_host = host;
    ev.dst_ip = f->dst;
    ev.dst_port = f->dport;
    ev.severity = EVENT_SEVERITY_HIGH;
    ev.detail = detail;
    events_emit(&ev);
}

enum peek_http {
    PEEK_NOT_HTTP,
    PEEK_HTTP,
    PEEK_HTTP_MORE, /* could still become a request line */
};

/* "GET ", "POST "...: an HTTP request line starts with an upper-case token
 * and a space.  Until the token ends, the bytes could still be one. */
static enum peek_http looks_like_http(const char *b, size_t n)
{
    size_t i = 0;
    while (i < n && i < 16 && b[i] >= 'A' && b[i] <= 'Z')
        i++;
    if (i < n)
        return i >= 3 && b[i] == ' ' ? PEEK_HTTP : PEEK_NOT_HTTP;
    return i < 16 ? PEEK_HTTP_MORE : PEEK_NOT_HTTP;
}

/* The empty lines a server skips before a request line (RFC 9112 2.2). */
static size_t skip_empty_lines(const char *b, size_t n)
{
    size_t i = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n'))
        i++;
    return i;
}

/* The Host header of a complete head in b (NUL-terminated), or NULL. */
static const char *find_host(const char *b, size_t *ret_len)
{
    for (const char *p = strchr(b, '\n'); p; p = strchr(p + 1, '\n')) {
        if (strncasecmp(p + 1, "host:", 5) == 0) {
            const char *v = p + 6;
            size_t len = strcspn(v, "\r\n");
            *ret_len = len;
            return v;
        }
    }
    return NULL;
}

/* Wake again only when more than n bytes have arrived (peeked bytes stay
 * readable), within PEEK_HEAD_MS of the first ones. */
static void flow_peek_wait_more(struct flow *f, size_t n)
{
    if (f->peek_seen && n <= f->peek_seen) {
        /* Woken without a new byte: the client closed (or failed) in the
         * middle of its head, and would wake us again at once. */
        flow_peek_done(f, f->peek_tls ? "tls_hello_incomplete" : "http_head_incomplete");
        return;
    }
    int lowat = (int)n + 1;
    flow_peek_open(f);
    setsockopt(f->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
    f->peek_lowat = true;
    if (!f->peek_seen) {
        uint64_t waited = uv_now(daemon_loop) - f->peek_started_ms;
        uint64_t left = waited < PEEK_HEAD_MS ? PEEK_HEAD_MS - waited : 0;
        uv_timer_start(&f->peek_timer, on_peek_timer, left, 0);
    }
    f->peek_seen = n;
    flow_peek_hold_upstream(f);
}

/* The endpoint the flow matched decides what TLS means for it. */
static void flow_set_endpoint(struct flow *f, const struct policy_decision *d)
{
    f->ep = d->endpoint;
    f->inspect = d->inspect;
    f->tls_mode = policy_endpoint_tls(d->endpoint);
    str_copy(f->endpoint_host, d->endpoint_host ? d->endpoint_host : "", sizeof(f->endpoint_host));
    if (d->policy_name) {
        str_copy(f->policy_name_buf, d->policy_name, sizeof(f->policy_name_buf));
        f->policy_name = f->policy_name_buf;
    }
}

static void flow_decide_name(struct flow *f);

static void on_name_resolved(void *data)
{
    struct flow *f = data;
    f->resolving = false;
    if (daemon_stopping) {
        f->action = EVENT_ACTION_DENIED;
        f->reason = "shutting_down";
        flow_peek_done(f, NULL);
        return;
    }
    flow_decide_name(f);
}

/* Decide a TLS flow again, on its SNI (f->sni, "" when none was sent). */
static void flow_decide_name(struct flow *f)
{
    bool by_host = f->action != EVENT_ACTION_DENIED && f->endpoint_host[0];
    char detail[160];

    if (!f->sni[0]) {
        if (by_host) {
            snprintf(detail, sizeof(detail), "TLS without SNI to %.80s", f->endpoint_host);
            flow_host_mismatch_finding(f, NULL, detail);
            /* (passes on only in audit mode) */
            f->terminate = f->inspect || f->tls_mode == POLICY_TLS_TERMINATE;
            flow_peek_done(f, "host_mismatch");
            return;
        }
        /* An address-only endpoint names no host to contradict. */
        f->terminate =
            f->action != EVENT_ACTION_DENIED && (f->inspect || f->tls_mode == POLICY_TLS_TERMINATE);
        flow_peek_done(f, NULL);
        return;
    }
    struct policy_decision d;
    struct policy_flow pf = {
        .proto = POLICY_PROTO_TCP,
        .dst = f->dst,
        .dst_port = f->dport,
        .hostname = f->sni,
    };
    policy_decide(f->pol ? f->pol->policy : NULL, registry_policy_env(), f->sb->rec.audit, &pf,
                  resolver_lookup, NULL, &d);
    if (d.verdict == POLICY_PENDING) {
        f->resolving = true;
        if (++f->rounds > FLOW_MAX_DECIDE_ROUNDS ||
            resolver_resolve(d.pending_host, on_name_resolved, f) < 0) {
            f->resolving = false;
            flow_peek_done(f, "resolution_failed");
        }
        return;
    }
    if (d.verdict == POLICY_ALLOW || d.verdict == POLICY_AUDIT) {
        flow_set_endpoint(f, &d);
        f->action = d.verdict == POLICY_ALLOW ? EVENT_ACTION_ALLOWED : EVENT_ACTION_AUDIT;
        f->reason = d.verdict == POLICY_AUDIT ? policy_reason_name(d.reason) : NULL;
        f->terminate = f->inspect || f->tls_mode == POLICY_TLS_TERMINATE;
        if (d.verdict == POLICY_AUDIT &&
            (d.name_mismatch || (by_host && d.reason == POLICY_REASON_NO_MATCHING_POLICY))) {
            /* Audit mode lets it pass; the mismatch is still reported. */
            snprintf(detail, sizeof(detail), "SNI %.80s does not match the destination", f->sni);
            flow_host_mismatch_finding(f, f->sni, detail);
            f->reason = "host_mismatch";
        }
        flow_peek_done(f, NULL);
        return;
    }
    if (d.name_mismatch || by_host) {
        /* The address was allowed for another name, or the name belongs
         * to other addresses: the SNI contradicts the destination. */
        snprintf(detail, sizeof(detail), "SNI %.80s does not match the destination", f->sni);
        flow_host_mismatch_finding(f, f->sni, detail);
        f->terminate = f->inspect || f->tls_mode == POLICY_TLS_TERMINATE;
        flow_peek_done(f, "host_mismatch");
        return;
    }
    f->action = EVENT_ACTION_DENIED;
    f->reason = policy_reason_name(d.reason);
    if (d.policy_name)
        flow_set_endpoint(f, &d);
    flow_peek_done(f, NULL);
}

/* A complete ClientHello was peeked. */
static void flow_peek_tls(struct flow *f, const struct tls_hello *hello)
{
    f->tls = true;
    /* One spelling of the name from here on (events, leaf, upstream check):
     * lower case, without a trailing dot. */
    size_t n = 0;
    for (const char *c = hello->has_sni ? hello->sni : ""; *c && n < sizeof(f->sni) - 1; c++)
        f->sni[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    if (n && f->sni[n - 1] == '.')
        n--;
    f->sni[n] = '\0';
    /* The decision may wait for a resolution: no more wake-ups meanwhile. */
    if (f->peek_handles) {
        uv_poll_stop(&f->peek_poll);
        uv_timer_stop(&f->peek_timer);
        flow_peek_hold_upstream(f);
    }
    flow_decide_name(f);
}

/* v (len bytes) names the flow's host, or the flow is denied with a
 * finding (and gone). */
static bool flow_http_host_ok(struct flow *f, const char *v, size_t len, const char *what)
{
    if (http_host_agrees(v, len, &f->dst, f->endpoint_host))
        return true;
    char detail[96];
    snprintf(detail, sizeof(detail), "%s disagrees with %.60s", what,
             f->endpoint_host[0] ? f->endpoint_host : "the destination");
    flow_host_mismatch_finding(f, NULL, detail);
    flow_peek_done(f, "host_mismatch");
    return false;
}

/* Plain HTTP on an L4 endpoint: the host its first request names (Host, or
 * an absolute-form target, which a server goes by instead) must agree with
 * the destination.  Later requests on the connection are not looked at. */
static void flow_peek_http(struct flow *f, char *buf, size_t n)
{
    size_t start = skip_empty_lines(buf, n);
    enum peek_http kind = looks_like_http(buf + start, n - start);
    if (kind == PEEK_NOT_HTTP) {
        flow_peek_done(f, NULL);
        return;
    }
    if (n > PEEK_HTTP_MAX)
        n = PEEK_HTTP_MAX;
    buf[n] = '\0';
    char *head = buf + (start < n ? start : n);
    char *end = strstr(head, "\r\n\r\n"), *end_lf = strstr(head, "\n\n");
    if (!end || (end_lf && end_lf < end))
        end = end_lf;
    if (kind == PEEK_HTTP_MORE || !end) {
        if (n >= PEEK_HTTP_MAX)
            flow_peek_done(f, "http_head_too_large");
        else
            flow_peek_wait_more(f, n);
        return;
    }
    *end = '\0'; /* the head only: not a body, not a pipelined request */
    const char *target = strchr(head, ' ') + 1;
    size_t scheme = strncasecmp(target, "http://", 7) == 0    ? 7
                    : strncasecmp(target, "https://", 8) == 0 ? 8
                                                              : 0;
    if (scheme) {
        const char *auth = target + scheme;
        size_t alen = strcspn(auth, "/?# \t\r\n");
        const char *at = memchr(auth, '@', alen);
        if (at) {
            alen -= (size_t)(at + 1 - auth);
            auth = at + 1;
        }
        if (!flow_http_host_ok(f, auth, alen, "request target"))
            return;
    }
    size_t hlen = 0;
    const char *host = find_host(head, &hlen);
    if (host && !flow_http_host_ok(f, host, hlen, "Host header"))
        return;
    flow_peek_done(f, NULL);
}

/* Look at what the client has sent.  Returns true when it has sent nothing
 * yet (f untouched); otherwise f went on (and may be gone). */
static bool flow_peek_check(struct flow *f)
{
    static char buf[PEEK_MAX + 1]; /* the loop is single-threaded */
    struct tls_hello hello;

    ssize_t n = recv(f->fd, buf, PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return true;
        flow_peek_done(f, NULL); /* the relay will see the error and reset */
        return false;
    }
    if (n == 0) {
        flow_peek_done(f, NULL);
        return false;
    }
    f->peek_tls = false;
    switch (tls_hello_parse((const uint8_t *)buf, (size_t)n, &hello)) {
    case TLS_HELLO_OK:
        flow_peek_tls(f, &hello);
        return false;
    case TLS_HELLO_NEED_MORE:
        f->peek_tls = true;
        flow_peek_wait_more(f, (size_t)n);
        return false;
    case TLS_HELLO_MALFORMED:
        flow_peek_done(f, "tls_hello_malformed");
        return false;
    case TLS_HELLO_TOO_LARGE:
        flow_peek_done(f, "tls_hello_too_large");
        return false;
    default: /* not TLS */
        break;
    }
    if (f->action == EVENT_ACTION_DENIED) {
        flow_peek_done(f, NULL); /* only a name from a ClientHello could have helped */
        return false;
    }
    if (f->tls_mode != POLICY_TLS_AUTO) {
        flow_peek_done(f, "not_tls");
        return false;
    }
    if (f->inspect) {
        flow_peek_done(f, NULL); /* the HTTP inspector checks every request */
        return false;
    }
    flow_peek_http(f, buf, (size_t)n);
    return false;
}

static void on_peek_readable(uv_poll_t *p, int status, int events)
{
    struct flow *f = p->data;
    (void)events;
    if (status < 0) {
        /* A reset after part of a head: nothing of it may reach the upstream. */
        flow_peek_done(f, !f->peek_seen ? NULL
                          : f->peek_tls ? "tls_hello_incomplete"
                                        : "http_head_incomplete");
        return;
    }
    if (f->late && !f->peek_seen)
        f->peek_started_ms = uv_now(daemon_loop); /* a late head gets its own deadline */
    (void)flow_peek_check(f);
}

static void on_upstream_event(uv_poll_t *p, int status, int events)
{
    struct flow *f = p->data;
    (void)events;
    if (!f->up_connected) {
        int err = status;
        socklen_t len = sizeof(err);
        if (!err && getsockopt(f->up_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            f->up_failed = true;
            flow_peek_done(f, NULL);
            return;
        }
        f->up_connected = true;
        uv_poll_start(&f->up_poll, UV_READABLE | UV_DISCONNECT, on_upstream_event);
        uv_poll_start(&f->peek_poll, UV_READABLE, on_peek_readable);
        uv_timer_start(&f->peek_timer, on_peek_timer, daemon_cfg.idle_timeout_ms, 0);
        return;
    }
    /* The server spoke (or closed) first: a server-first protocol, relayed
     * from here (an error is the relay's to report). */
    flow_peek_done(f, NULL);
}

/* The client has said nothing for PEEK_FIRST_BYTE_MS: connect the upstream,
 * and watch both sides until one speaks. */
static void flow_peek_late(struct flow *f)
{
    struct sockaddr_storage ss;
    socklen_t len = net_addr_to_sockaddr(&f->dst, f->dport, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? -errno : uv_poll_init(daemon_loop, &f->up_poll, fd);
    if (err < 0) {
        log_warn("sandbox %s: cannot connect upstream: %s", f->sb->rec.name, strerror(-err));
        if (fd >= 0)
            close(fd);
        f->action = EVENT_ACTION_DENIED;
        f->reason = "proxy_error";
        flow_peek_done(f, NULL);
        return;
    }
    f->up_fd = fd;
    f->up_poll.data = f;
    f->late = true;
    f->peek_handles++;
    /* It may wait as long as an idle relay: it must not hold one of the
     * sandbox's pending slots (new flows would be refused) meanwhile. */
    n_pending--;
    f->sb->n_pending--;
    n_late++;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        f->up_failed = true;
        flow_peek_done(f, NULL);
        return;
    }
    /* The client's bytes wait in its socket until the upstream is there. */
    uv_poll_stop(&f->peek_poll);
    uv_poll_start(&f->up_poll, UV_WRITABLE, on_upstream_event);
    uv_timer_start(&f->peek_timer, on_peek_timer, daemon_cfg.connect_timeout_ms, 0);
}

static void on_peek_timer(uv_timer_t *t)
{
    struct flow *f = t->data;
    if (f->peek_seen) {
        /* A started ClientHello or request head that never completed. */
        flow_peek_done(f, f->peek_tls ? "tls_hello_incomplete" : "http_head_incomplete");
        return;
    }
    if (f->action != EVENT_ACTION_DENIED && f->tls_mode != POLICY_TLS_AUTO) {
        flow_peek_done(f, "tls_hello_timeout");
        return;
    }
    if (f->late) {
        /* The upstream never answered the connect, or neither side spoke
         * for the idle timeout. */
        f->up_failed = true;
        flow_peek_done(f, NULL);
        return;
    }
    if (f->action != EVENT_ACTION_DENIED && !f->inspect) {
        flow_peek_late(f); /* perhaps a server-first protocol */
        return;
    }
    /* An inspected endpoint: its inspector takes it from here. */
    flow_peek_done(f, NULL);
}

/* The peek's handles: a poll for the client's bytes, a deadline. */
static void flow_peek_open(struct flow *f)
{
    if (f->peek_handles)
        return;
    uv_poll_init(daemon_loop, &f->peek_poll, f->fd);
    uv_timer_init(daemon_loop, &f->peek_timer);
    f->peek_poll.data = f->peek_timer.data = f;
    f->peek_handles = 2;
    uv_poll_start(&f->peek_poll, UV_READABLE, on_peek_readable);
    /* Clients speak first to HTTP and TLS endpoints, and to a wildcard that
     * needs a name: wait longer there than for what may be server-first. */
    bool client_first = f->inspect || f->tls_mode != POLICY_TLS_AUTO || f->want_name;
    uv_timer_start(&f->peek_timer, on_peek_timer, client_first ? PEEK_HEAD_MS : PEEK_FIRST_BYTE_MS,
                   0);
}

static void flow_peek_start(struct flow *f)
{
    f->flags |= FLOW_F_PEEKING;
    DLIST_PUSH(peeking, f, peek_prev, peek_next);
    f->peek_started_ms = uv_now(daemon_loop);
    /* Most clients have spoken by the time their connection is accepted:
     * a first look decides those without a handle (no epoll registration,
     * no timer, no close round).  The rest wait for their bytes. */
    if (flow_peek_check(f))
        flow_peek_open(f);
}

/* Hand an identified, allowed flow to the HTTP inspector. */
static void flow_start_inspection(struct flow *f)
{
    struct http_flow *h;
    if (f->sb->n_http_flows >= HTTP_FLOW_MAX_PER_SANDBOX) {
        f->action = EVENT_ACTION_DENIED;
        f->reason = "connection_limit";
        return;
    }
    struct http_flow_params p = {
        .client_fd = f->fd,
        .sb = f->sb,
        .pol = f->pol,
        .ep = f->ep,
        .policy_name = f->policy_name,
        /* Over TLS every Host must name what the SNI named. */
        .endpoint_host = f->sni[0]             ? f->sni
                         : f->endpoint_host[0] ? f->endpoint_host
                                               : NULL,
        .dst = f->dst,
        .dport = f->dport,
        .audit = f->sb->rec.audit,
        .tls = f->terminate,
        .tls_name = f->sni[0] ? f->sni : NULL,
        .raw = !f->inspect,
    };
    int err = http_flow_start(&p, &h);
    if (err < 0) {
        log_debug("sandbox %s: cannot start an inspected flow: %s", f->sb->rec.name,
                  strerror(-err));
        f->action = EVENT_ACTION_DENIED;
        f->reason = err == -ENOTSUP ? "tls_unavailable" : "proxy_error";
        return;
    }
    http_flow_set_process(h, f->pid, f->exe);
    /* The HTTP flow owns the fd and the flow count now. */
    f->flags |= FLOW_F_RELAYING;
}

static void flow_maybe_finish(struct flow *f)
{
    if (!(f->flags & FLOW_F_DECIDED) || !(f->flags & FLOW_F_IDENT_DONE) ||
        (f->flags & FLOW_F_PEEKING))
        return;
    flow_refuse_if_stopping(f);
    if ((f->inspect || f->terminate) && f->action != EVENT_ACTION_DENIED)
        flow_start_inspection(f);
    flow_emit(f);
    flow_free(f);
}

static void on_relay_done(void *data, const struct relay_stats *st)
{
    struct sandbox *sb = data;
    (void)st;
    n_relaying--;
    sb->n_flows--;
    sandbox_unref(sb);
}

static void flow_set_verdict(struct flow *f, enum event_action action, const char *reason,
                             const char *policy_name)
{
    f->action = action;
    f->reason = reason;
    if (policy_name) {
        str_copy(f->policy_name_buf, policy_name, sizeof(f->policy_name_buf));
        f->policy_name = f->policy_name_buf;
    }
    f->flags |= FLOW_F_DECIDED;
    if (action == EVENT_ACTION_DENIED && !f->want_name) {
        flow_maybe_finish(f);
        return;
    }
    flow_peek_start(f);
}

/* Relay an allowed plain flow (after its peek). */
static void flow_relay(struct flow *f)
{
    struct sockaddr_storage ss;
    socklen_t len = net_addr_to_sockaddr(&f->dst, f->dport, &ss);
    struct relay_config rc = {
        .connect_timeout_ms = daemon_cfg.connect_timeout_ms,
        .idle_timeout_ms = daemon_cfg.idle_timeout_ms,
        .no_splice = daemon_cfg.no_splice,
    };
    int err = f->up_fd >= 0 ? relay_adopt(daemon_loop, &rc, f->fd, f->up_fd, on_relay_done, f->sb)
                            : relay_start(daemon_loop, &rc, f->fd, (struct sockaddr *)&ss, len,
                                          NULL, on_relay_done, f->sb);
    if (err < 0) {
        log_warn("sandbox %s: cannot relay: %s", f->sb->rec.name, strerror(-err));
        f->action = EVENT_ACTION_DENIED;
        f->reason = "proxy_error";
        flow_maybe_finish(f);
        return;
    }
    /* The relay owns the fds and one sandbox reference and the flow count. */
    f->up_fd = -1;
    f->flags |= FLOW_F_RELAYING;
    sandbox_ref(f->sb);
    n_relaying++;
    flow_maybe_finish(f);
}

static void on_resolved(void *data)
{
    flow_decide(data);
}

static void flow_decide(struct flow *f)
{
    struct policy_decision d;
    struct policy_flow pf = {
        .proto = POLICY_PROTO_TCP,
        .dst = f->dst,
        .dst_port = f->dport,
        .hostname = NULL,
    };
    if (!f->sb->policy) {
        /* The sandbox's policy failed to load: deny everything, visibly, and
         * never let audit mode turn that into a pass. */
        bool blocked =
            policy_classify_addr(&f->dst, registry_policy_env()) == POLICY_ADDR_ALWAYS_BLOCKED;
        flow_set_verdict(f, EVENT_ACTION_DENIED,
                         blocked ? policy_reason_name(POLICY_REASON_ALWAYS_BLOCKED_ADDRESS)
                                 : "policy_invalid",
                         NULL);
        return;
    }
    if (daemon_stopping) {
        flow_set_verdict(f, EVENT_ACTION_DENIED, "shutting_down", NULL);
        return;
    }
    policy_decide(f->sb->policy, registry_policy_env(), f->sb->rec.audit, &pf, resolver_lookup,
                  NULL, &d);
    if (d.verdict == POLICY_PENDING) {
        if (++f->rounds > FLOW_MAX_DECIDE_ROUNDS ||
            resolver_resolve(d.pending_host, on_resolved, f) < 0) {
            flow_set_verdict(f, EVENT_ACTION_DENIED, "resolution_failed", d.policy_name);
        }
        return;
    }
    bool passes = d.verdict == POLICY_ALLOW || d.verdict == POLICY_AUDIT;
    f->want_name = d.verdict == POLICY_DENY && d.name_could_match;
    if (passes || f->want_name) {
        /* The endpoint (and the policy it lives in) stays in use: for the
         * inspector (`protocol: rest`), and to decide again on the SNI. */
        f->pol = policy_ref_get(f->sb->policy_ref);
    }
    if (passes)
        flow_set_endpoint(f, &d);
    else
        str_copy(f->endpoint_host, "", sizeof(f->endpoint_host));
    switch (d.verdict) {
    case POLICY_ALLOW:
        flow_set_verdict(f, EVENT_ACTION_ALLOWED, NULL, d.policy_name);
        break;
    case POLICY_AUDIT:
        flow_set_verdict(f, EVENT_ACTION_AUDIT, policy_reason_name(d.reason), d.policy_name);
        break;
    default:
        flow_set_verdict(f, EVENT_ACTION_DENIED, policy_reason_name(d.reason), d.policy_name);
        break;
    }
}

/*
 * Process lookups run in the thread pool one batch at a time: a work item
 * takes the flows waiting when it starts (up to IDENT_BATCH_MAX), so a burst
 * of connections costs one hand-off to a pool thread and back instead of one
 * per connection.  Flows in the queue or the batch are not freed: a flow
 * finishes only once its lookup is done.
 */
#define IDENT_BATCH_MAX 64
/* A sandbox whose namespace no search found is searched again after this. */
#define IDENT_SEARCH_RETRY_MS 5000

/* A sandbox without a lookup context (its /run/netns mount is not visible
 * here) gets one from a batch: the pool thread finds the namespace through
 * the sandbox's processes (ident_netns_find), and the loop installs the
 * context before the next batch starts.  sb->ident is only written while no
 * batch runs, so the pool thread may read it. */
struct ident_search {
    struct sandbox *sb;    /* held by a flow of the batch */
    struct ident_ctx *ctx; /* NULL: none found */
};

static struct {
    uv_work_t req;
    bool running;
    struct flow *head, *tail;                      /* waiting (the loop's) */
    struct flow *batch;                            /* the pool thread's while running */
    struct ident_search searched[IDENT_BATCH_MAX]; /* by the pool thread, for the loop */
    size_t n_searched;
} ident_q;

/* Worth a lookup batch: the sandbox has a context, or may get one. */
static bool ident_possible(const struct sandbox *sb)
{
    if (daemon_cfg.no_ident)
        return false;
    return sb->ident || (sb->rec.netns_ino && uv_now(daemon_loop) >= sb->ident_retry_ms);
}

/* The pool thread's context for sb: its own, or one searched in this batch. */
static struct ident_ctx *ident_ctx_of(struct sandbox *sb)
{
    if (sb->ident)
        return sb->ident;
    for (size_t i = 0; i < ident_q.n_searched; i++)
        if (ident_q.searched[i].sb == sb)
            return ident_q.searched[i].ctx;
    struct ident_ctx *ctx = NULL;
    int fd = registry_netns_find(sb);
    if (fd >= 0) {
        ctx = ident_ctx_new(fd);
        close(fd); /* ctx's socket keeps the namespace */
    }
    /* One flow per entry at most, so the array cannot fill up. */
    ident_q.searched[ident_q.n_searched++] = (struct ident_search){.sb = sb, .ctx = ctx};
    return ctx;
}

/* On the loop, after a batch: install what it found. */
static void ident_install_searched(void)
{
    for (size_t i = 0; i < ident_q.n_searched; i++) {
        struct sandbox *sb = ident_q.searched[i].sb;
        struct ident_ctx *ctx = ident_q.searched[i].ctx;
        if (!ctx) {
            sb->ident_retry_ms = uv_now(daemon_loop) + IDENT_SEARCH_RETRY_MS;
            if (!sb->ident_search_reported)
                log_info("sandbox %s: no process found in its namespace yet; its flows go "
                         "without a process name until one is",
                         sb->rec.name);
            sb->ident_search_reported = true;
        } else if (sb->ident) {
            ident_ctx_free(ctx);
        } else {
            sb->ident = ctx;
            log_info("sandbox %s: process lookup in its namespace, found through its "
                     "processes",
                     sb->rec.name);
        }
    }
    ident_q.n_searched = 0;
}

static void ident_batch_work(uv_work_t *req)
{
    (void)req;
    char exe[PATH_MAX];
    for (struct flow *f = ident_q.batch; f; f = f->ident_next) {
        struct ident_ctx *ctx = ident_ctx_of(f->sb);
        if (!ctx || ident_lookup(ctx, &f->src, f->sport, &f->dst, f->dport, &f->pid, exe,
                                 sizeof(exe)) < 0) {
            f->pid = 0;
            continue;
        }
        /* Sized to the path: a flow waiting for its first bytes is small. */
        f->exe = exe[0] ? strdup(exe) : NULL;
    }
}

static void ident_finish(struct flow *f)
{
    while (f) {
        struct flow *next = f->ident_next;
        f->ident_next = NULL;
        f->flags &= ~FLOW_F_IDENT_QUEUED;
        f->flags |= FLOW_F_IDENT_DONE;
        flow_maybe_finish(f);
        f = next;
    }
}

static void on_ident_batch_done(uv_work_t *req, int status);

static void ident_batch_submit(void)
{
    if (ident_q.running || !ident_q.head)
        return;
    struct flow *last = ident_q.head;
    for (size_t n = 1; last->ident_next && n < IDENT_BATCH_MAX; n++)
        last = last->ident_next;
    ident_q.batch = ident_q.head;
    ident_q.head = last->ident_next;
    if (!ident_q.head)
        ident_q.tail = NULL;
    last->ident_next = NULL;
    if (uv_queue_work(daemon_loop, &ident_q.req, ident_batch_work, on_ident_batch_done) == 0) {
        ident_q.running = true;
        return;
    }
    /* No pool: these flows go without a process name. */
    struct flow *batch = ident_q.batch;
    ident_q.batch = NULL;
    ident_finish(batch);
    ident_batch_submit();
}

static void on_ident_batch_done(uv_work_t *req, int status)
{
    (void)req;
    (void)status;
    struct flow *batch = ident_q.batch;
    ident_q.batch = NULL;
    ident_q.running = false;
    ident_install_searched();
    ident_batch_submit(); /* the next batch runs while this one finishes */
    ident_finish(batch);
}

static void ident_enqueue(struct flow *f)
{
    f->flags |= FLOW_F_IDENT_QUEUED;
    f->ident_next = NULL;
    if (ident_q.tail)
        ident_q.tail->ident_next = f;
    else
        ident_q.head = f;
    ident_q.tail = f;
    ident_batch_submit();
}

/* Most flows come from a process the sandbox's lookup context has seen
 * connect before: then a few syscalls here name it, without the round trip
 * through the pool (two thread wake-ups per batch).  Returns whether the
 * lookup is done; otherwise the pool takes it. */
static bool ident_quick(struct flow *f)
{
    char exe[PATH_MAX];
    if (!f->sb->ident)
        return false; /* the namespace is still to be found: the pool's job */
    int r = ident_lookup_quick(f->sb->ident, &f->src, f->sport, &f->dst, f->dport, &f->pid, exe,
                               sizeof(exe));
    if (r < 0 && r != -ENOENT)
        return false; /* not known yet (-EAGAIN), or a failure the pool may not have */
    if (r < 0) {
        f->pid = 0; /* the socket or its process is already gone */
    } else {
        f->exe = exe[0] ? strdup(exe) : NULL;
    }
    f->flags |= FLOW_F_IDENT_DONE;
    return true;
}

static int get_original_dst(int fd, int family, struct net_addr *ret, uint16_t *ret_port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = family == AF_INET ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len)
                               : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len);
    if (rc < 0)
        return -errno;
    return net_addr_from_sockaddr((struct sockaddr *)&ss, ret, ret_port);
}

static void flow_accepted(int fd, int family, const struct sockaddr_storage *peer)
{
    struct flow *f;
    struct net_addr src, dst;
    uint16_t sport, dport;
    char sbuf[NET_ENDPOINT_STRLEN];

    if (net_addr_from_sockaddr((const struct sockaddr *)peer, &src, &sport) < 0 ||
        get_original_dst(fd, family, &dst, &dport) < 0) {
        /* Not a REDIRECTed flow (someone connected to the port directly). */
        log_debug("connection from %s without an original destination: reset",
                  net_endpoint_format(&src, sport, sbuf, sizeof(sbuf)));
        relay_reset_fd(fd);
        return;
    }
    struct sandbox *sb = registry_find_by_addr(&src);
    if (!sb && uv_now(daemon_loop) - last_miss_rescan_ms >= FLOW_MISS_RESCAN_MS) {
        /* Perhaps registered a moment ago: look at the registry once more
         * (rate-limited: anyone on the network can reach this port). */
        last_miss_rescan_ms = uv_now(daemon_loop);
        registry_rescan();
        sb = registry_find_by_addr(&src);
    }
    if (!sb || n_pending >= FLOW_MAX_PENDING || sb->n_pending >= FLOW_MAX_PENDING_PER_SANDBOX) {
        struct event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = "NET:OPEN";
        ev.action = EVENT_ACTION_DENIED;
        ev.reason = sb ? "flow_limit" : "unknown_sandbox";
        ev.proto = "tcp";
        ev.dst_ip = dst;
        ev.dst_port = dport;
        ev.severity = EVENT_SEVERITY_MEDIUM;
        ev.sandbox = sb ? sb->rec.name : NULL;
        events_emit(&ev);
        sandbox_unref(sb);
        relay_reset_fd(fd);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (!f) {
        sandbox_unref(sb);
        relay_reset_fd(fd);
        return;
    }
    n_pending++;
    sb->n_pending++;
    f->fd = fd;
    f->up_fd = -1;
    f->src = src;
    f->sport = sport;
    f->dst = dst;
    f->dport = dport;
    f->sb = sb;

    if (sb->n_flows >= daemon_cfg.max_flows_per_sandbox) {
        f->flags |= FLOW_F_IDENT_DONE;
        flow_set_verdict(f, EVENT_ACTION_DENIED, "connection_limit", NULL);
        return;
    }
    sb->n_flows++;
    f->flags |= FLOW_F_COUNTED;

    if (!ident_possible(sb))
        f->flags |= FLOW_F_IDENT_DONE;
    else if (!ident_quick(f))
        ident_enqueue(f);
    flow_decide(f);
}

static void on_listener_readable(uv_poll_t *p, int status, int events);

static void on_backoff(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < n_listeners; i++) {
        if (!listeners[i].polling) {
            uv_poll_start(&listeners[i].poll, UV_READABLE, on_listener_readable);
            listeners[i].polling = true;
        }
    }
}

static void listener_pause(void)
{
    if (!backoff_logged) {
        log_error("out of file descriptors: pausing accept for %d ms (connections wait in the "
                  "backlog)",
                  FLOW_ACCEPT_BACKOFF_MS);
        backoff_logged = true;
    }
    for (size_t i = 0; i < n_listeners; i++) {
        if (listeners[i].polling) {
            uv_poll_stop(&listeners[i].poll);
            listeners[i].polling = false;
        }
    }
    uv_timer_start(&backoff_timer, on_backoff, FLOW_ACCEPT_BACKOFF_MS, 0);
}

static void on_listener_readable(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < FLOW_ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                listener_pause();
                return;
            }
            continue; /* ECONNABORTED, EINTR, EPROTO...: next one */
        }
        if (backoff_logged) {
            log_info("accepting connections again");
            backoff_logged = false;
        }
        int family = ((struct sockaddr *)&peer)->sa_family;
        flow_accepted(fd, family, &peer);
    }
}

/* Listeners are transparent: the sandboxes' rules let a new flow in only to
 * a transparent socket (see rules.c), which takes CAP_NET_ADMIN. */
static int listener_make_transparent(int fd, int family)
{
    int one = 1;
    int rc = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
                                : setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one));
    return rc < 0 ? -errno : 0;
}

static int listener_open(int family, uint16_t port)
{
    struct sockaddr_storage ss;
    struct net_addr any;
    int one = 1;
    memset(&any, 0, sizeof(any));
    any.family = family;
    socklen_t len = net_addr_to_sockaddr(&any, port, &ss);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int err = listener_make_transparent(fd, family);
    if (err == 0 && (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0))
        err = -errno;
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/*
 * Socket activation: listeners the service manager holds keep the port bound
 * while the daemon restarts (no local process can take it meanwhile) and
 * connections wait in their backlog instead of being reset.  Each must be a
 * listening TCP socket on our port, the IPv6 one IPv6-only; anything else
 * passed is a configuration error, not something to ignore.
 */
static int listeners_inherited(int fds[2])
{
    static const int families[2] = {AF_INET, AF_INET6};
    int n = sd_listen_fds(1);
    fds[0] = fds[1] = -1;
    if (n < 0) {
        log_error("socket activation: %s", strerror(-n));
        return n;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i, f = -1, v6only = 0;
        socklen_t len = sizeof(v6only);
        for (int k = 0; k < 2; k++)
            if (sd_is_socket_inet(fd, families[k], SOCK_STREAM, 1, daemon_cfg.port) > 0)
                f = k;
        if (f == 1 && (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) < 0 || !v6only))
            f = -1;
        if (f < 0 || fds[f] >= 0) {
            log_error("socket activation: fd %d is not a listening TCP socket on port %u (IPv4, "
                      "or IPv6-only), or a second one of its family",
                      fd, daemon_cfg.port);
            return -EINVAL;
        }
        int err = listener_make_transparent(fd, families[f]);
        if (err < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            log_error("socket activation: fd %d: %s", fd, strerror(err < 0 ? -err : errno));
            return err < 0 ? err : -errno;
        }
        fds[f] = fd;
    }
    if (n > 0)
        log_info("socket activation: %d listener(s) from the service manager", n);
    return 0;
}

int flow_listen(void)
{
    static const int families[2] = {AF_INET, AF_INET6};
    int inherited[2];
    int rc = listeners_inherited(inherited);
    if (rc < 0)
        return rc;
    uv_timer_init(daemon_loop, &backoff_timer);
    for (size_t i = 0; i < 2; i++) {
        int fd = inherited[i] >= 0 ? inherited[i] : listener_open(families[i], daemon_cfg.port);
        if (fd < 0) {
            log_error("cannot listen on %s port %u: %s%s", families[i] == AF_INET ? "IPv4" : "IPv6",
                      daemon_cfg.port, strerror(-fd),
                      fd == -EPERM ? " (a transparent listener needs CAP_NET_ADMIN)" : "");
            return fd;
        }
        struct listener *l = &listeners[n_listeners++];
        l->fd = fd;
        uv_poll_init(daemon_loop, &l->poll, fd);
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_listener_readable);
        l->polling = true;
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    close(l->fd);
    l->fd = -1;
}

void flow_shutdown(void)
{
    /* Flows still looking at their first bytes are refused (one waiting
     * for a resolution is, when it comes back). */
    for (struct flow *f = peeking, *next; f; f = next) {
        next = f->peek_next; /* a flow without handles finishes at once */
        if (f->peek_closing || f->resolving)
            continue;
        f->action = EVENT_ACTION_DENIED;
        f->reason = "shutting_down";
        flow_peek_done(f, NULL);
    }
    http_flow_abort_all();
    for (size_t i = 0; i < n_listeners; i++)
        uv_close((uv_handle_t *)&listeners[i].poll, on_listener_closed);
    n_listeners = 0;
    if (!uv_is_closing((uv_handle_t *)&backoff_timer))
        uv_close((uv_handle_t *)&backoff_timer, NULL);
    relay_abort_all();
}
