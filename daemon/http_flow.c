/*
 * Inspected flows (`protocol: rest`): every request on the connection is
 * parsed by the HTTP inspector and decided against the endpoint's rules
 * before any of its bytes reach the upstream; responses are followed so the
 * next request starts at the right byte.  A denied request gets a 403 (after
 * the responses to earlier requests), a malformed one a 400, and the
 * connection closes.  After a solicited 101 both directions carry raw bytes.
 *
 * Each direction keeps two bounded buffers: `in`, bytes read from its source
 * that the inspector has not cleared yet, and `out`, cleared bytes not yet
 * written.  A source is read only while its `out` is empty, so a slow reader
 * stops its writer (bounded memory per connection).
 *
 * Terminated TLS sits below the buffers: a side with a tls_conn is read as
 * ciphertext, fed to the connection and drained as plaintext into `in`;
 * `out` is encrypted only while the connection's own output is empty, so
 * neither grows without bound.  The upstream handshake (which verifies the
 * server) comes first; only then is the client's ClientHello, which is still
 * in its socket, answered — with a leaf for the same name, or with an alert
 * when the upstream failed.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "events.h"
#include "http_flow.h"
#include "inspect.h"
#include "tls.h"

#define HF_BUF_SIZE (HTTP_DEFAULT_MAX_HEAD_BYTES + 48 * 1024)
#define HF_DENY_DRAIN_MS 10000
/* Closing with unread input would reset the connection and could destroy
 * the 403 before the client reads it: drain for a moment first. */
#define HF_LINGER_MS 2000
/* Ciphertext read per wake-up, and encrypted before a send: several
 * records, so bulk costs few system calls. */
#define HF_TLS_BATCH (64 * 1024)
/* The loop is single-threaded: one scratch buffer for ciphertext reads. */
static uint8_t hf_cbuf[HF_TLS_BATCH];

enum { HF_CLIENT = 0, HF_UPSTREAM = 1 };

enum hf_state {
    HF_CONNECTING = 0,
    HF_TLS_UPSTREAM, /* handshake with the upstream, which must verify */
    HF_TLS_CLIENT,   /* then the client's, with a leaf for the same name */
    HF_TLS_REFUSING, /* the upstream failed: the client gets an alert */
    HF_RUNNING,
    HF_REJECTING, /* a request was refused: deliver earlier responses, then the 403/400 */
    HF_LINGERING, /* the refusal is out: read and drop what the client still sends */
    HF_CLOSING,
    HF_STATE_MAX,
};

struct hf_dir {
    uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_len, out_off;
    bool eof;       /* the source sent FIN */
    bool shut;      /* FIN passed on to the destination */
    bool stalled;   /* the inspector needs more bytes than `in` holds now */
    bool eof_given; /* the inspector was told about the EOF */
    bool sock_eof;  /* TLS: the socket ended; eof once the plaintext is drained */
};

struct http_flow {
    struct http_flow *next, *prev; /* the live flows, for http_flow_abort_all() */
    int fd[2];
    uv_poll_t poll[2];
    int poll_events[2];
    uv_timer_t timer;
    unsigned open_handles;
    enum hf_state state;
    bool raw;             /* after a 101: no more inspection */
    bool handed_over;     /* the raw relay owns the sockets (and the flow count) */
    bool request_blocked; /* the inspector waits for a response first */
    struct hf_dir dir[2]; /* [0] client -> upstream, [1] upstream -> client */
    struct http_inspector *insp;
    struct tls_conn *tls[2]; /* per side; NULL: plain */
    bool tls_fin[2];         /* a FIN follows once the close_notify is written */
    char tls_name[POLICY_MAX_HOST_LEN + 1];
    char *reject; /* the 403/400 to send once earlier responses are out */
    size_t reject_len;
    uint64_t last_activity_ms, deadline_ms;

    struct sandbox *sb;
    struct policy_ref *pol;
    const struct policy_endpoint *ep;
    char policy_name[POLICY_MAX_NAME_LEN + 1];
    char endpoint_host[POLICY_MAX_HOST_LEN + 1];
    bool audit;
    struct net_addr dst;
    uint16_t dport;
    pid_t pid;
    char *exe; /* NULL when unknown */
    /* for the 403 of a denied request */
    char deny_rule[64];
    char deny_detail[160];
};

static size_t n_http_flows;
static struct http_flow *http_flows;
static size_t n_handed_over; /* upgraded flows the raw relay carries now */
static struct tls_ca *hf_ca;
static struct tls_server *hf_tls_server;

static void hf_settle(struct http_flow *h);
static void on_poll(uv_poll_t *p, int status, int events);

static void hf_event(struct http_flow *h, const char *type, enum event_action action,
                     const char *reason, enum event_severity sev, const char *method,
                     const char *path, const char *host, const char *detail)
{
    struct event ev;
    memset(&ev, 0, sizeof(ev));
    ev.sandbox = h->sb->rec.name;
    ev.type = type;
    ev.action = action;
    ev.reason = reason;
    ev.policy = h->policy_name[0] ? h->policy_name : NULL;
    ev.proto = "tcp";
    ev.dst_host = host;
    ev.dst_ip = h->dst;
    ev.dst_port = h->dport;
    ev.http_method = method;
    ev.http_path = path;
    ev.pid = h->pid;
    ev.exe = h->exe;
    ev.severity = sev;
    ev.detail = detail;
    events_emit(&ev);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct http_flow *h = handle->data;
    if (--h->open_handles > 0)
        return;
    for (int s = 0; s < 2; s++) {
        free(h->dir[s].in);
        free(h->dir[s].out);
    }
    free(h->reject);
    http_inspector_free(h->insp);
    for (int s = 0; s < 2; s++)
        tls_conn_free(h->tls[s]);
    policy_ref_put(h->pol);
    DLIST_UNLINK(http_flows, h, prev, next);
    n_http_flows--;
    h->sb->n_http_flows--;
    if (!h->handed_over)
        h->sb->n_flows--;
    sandbox_unref(h->sb);
    free(h->exe);
    free(h);
}

/* End the flow.  reset: the peers see a TCP reset instead of a FIN. */
static void hf_close(struct http_flow *h, bool reset)
{
    if (h->state == HF_CLOSING)
        return;
    h->state = HF_CLOSING;
    for (int s = 0; s < 2; s++) {
        if (h->fd[s] < 0)
            continue;
        uv_poll_stop(&h->poll[s]);
        if (reset)
            relay_reset_fd(h->fd[s]);
        else
            close(h->fd[s]);
        h->fd[s] = -1;
        uv_close((uv_handle_t *)&h->poll[s], on_handle_closed);
    }
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
}

/* Send as much of p[0, len) as fd takes now; *ret_sent says how much.
 * Returns 0 (also when the socket is full) or -errno. */
static int hf_send(struct http_flow *h, int fd, const uint8_t *p, size_t len, size_t *ret_sent)
{
    *ret_sent = 0;
    while (*ret_sent < len) {
        ssize_t n = send(fd, p + *ret_sent, len - *ret_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        *ret_sent += (size_t)n;
        h->last_activity_ms = uv_now(daemon_loop);
    }
    return 0;
}

/* Write side s's pending ciphertext; then a FIN if one waits for it. */
static int hf_tls_send(struct http_flow *h, int s)
{
    const uint8_t *data;
    size_t len, sent;
    while ((len = tls_conn_out_peek(h->tls[s], &data)) > 0) {
        int rc = hf_send(h, h->fd[s], data, len, &sent);
        tls_conn_out_consume(h->tls[s], sent);
        if (rc < 0 || sent < len)
            return rc;
    }
    if (h->tls_fin[s]) {
        h->tls_fin[s] = false;
        shutdown(h->fd[s], SHUT_WR);
    }
    return 0;
}

static bool hf_tls_pending(const struct http_flow *h, int s)
{
    return h->tls[s] && tls_conn_out_pending(h->tls[s]) > 0;
}

/* Send a FIN towards side s (after a close_notify on TLS). */
static void hf_shut_wr(struct http_flow *h, int s)
{
    if (!h->tls[s]) {
        shutdown(h->fd[s], SHUT_WR);
        return;
    }
    tls_conn_close_notify(h->tls[s]);
    h->tls_fin[s] = true;
    hf_tls_send(h, s);
}

/* Write what direction d has cleared to its destination. */
static int hf_flush(struct http_flow *h, int d)
{
    struct hf_dir *dir = &h->dir[d];
    int dst = h->fd[!d];
    struct tls_conn *tls = h->tls[!d];
    if (tls) {
        /* Encrypt a batch of records, then send them at once; the output
         * is refilled only once it has drained, so it stays one batch deep. */
        int rc = hf_tls_send(h, !d);
        while (rc == 0 && dir->out_off < dir->out_len && !tls_conn_out_pending(tls)) {
            while (dir->out_off < dir->out_len && tls_conn_out_pending(tls) < HF_TLS_BATCH) {
                size_t chunk = dir->out_len - dir->out_off;
                ssize_t n =
                    tls_conn_write(tls, dir->out + dir->out_off, chunk > 16384 ? 16384 : chunk);
                if (n <= 0)
                    return -EPROTO;
                dir->out_off += (size_t)n;
            }
            rc = hf_tls_send(h, !d);
        }
        if (rc < 0)
            return rc;
        if (dir->out_off == dir->out_len)
            dir->out_off = dir->out_len = 0;
        return 0;
    }
    size_t sent;
    int rc = hf_send(h, dst, dir->out + dir->out_off, dir->out_len - dir->out_off, &sent);
    dir->out_off += sent;
    if (dir->out_off == dir->out_len)
        dir->out_off = dir->out_len = 0;
    return rc;
}

/* Move the first n bytes of `in` to `out` (out is empty whenever this runs;
 * both hold HF_BUF_SIZE). */
static void hf_clear(struct hf_dir *dir, size_t n)
{
    if (!n || dir->out_len + n > HF_BUF_SIZE)
        return;
    if (!dir->out_len && n == dir->in_len) {
        /* All of it (a whole request, or raw bytes after a 101): swap the
         * buffers instead of copying. */
        uint8_t *t = dir->out;
        dir->out = dir->in;
        dir->in = t;
        dir->out_len = n;
        dir->in_len = 0;
        return;
    }
    memcpy(dir->out + dir->out_len, dir->in, n);
    dir->out_len += n;
    memmove(dir->in, dir->in + n, dir->in_len - n);
    dir->in_len -= n;
}

static void hf_reject(struct http_flow *h, bool bad_request, const char *reason)
{
    char buf[2048];
    int n = bad_request ? http_format_400(reason, buf, sizeof(buf))
                        : http_format_403(h->policy_name[0] ? h->policy_name : NULL, h->deny_rule,
                                          h->deny_detail, buf, sizeof(buf));
    h->state = HF_REJECTING;
    h->deadline_ms = uv_now(daemon_loop) + HF_DENY_DRAIN_MS;
    if (n > 0 && (h->reject = malloc((size_t)n))) {
        memcpy(h->reject, buf, (size_t)n);
        h->reject_len = (size_t)n;
    }
    if (bad_request)
        hf_event(h, "HTTP:REQUEST", EVENT_ACTION_DENIED, "bad_request", EVENT_SEVERITY_MEDIUM, NULL,
                 NULL, NULL, reason);
}

/* Feed direction d's pending bytes (or its EOF) to the inspector and act on
 * the outcome.  Returns true when something changed. */
static bool hf_inspect(struct http_flow *h, int d)
{
    struct hf_dir *dir = &h->dir[d];
    struct http_step st;
    int rc;

    if (dir->out_len || !(h->state == HF_RUNNING || (h->state == HF_REJECTING && d == HF_UPSTREAM)))
        return false;
    if (h->raw) {
        if (!dir->in_len)
            return false;
        hf_clear(dir, dir->in_len);
        return true;
    }
    if (d == HF_CLIENT && h->request_blocked)
        return false;
    if (dir->in_len && !dir->stalled) {
        rc = d == HF_CLIENT ? http_inspect_request_bytes(h->insp, dir->in, dir->in_len, &st)
                            : http_inspect_response_bytes(h->insp, dir->in, dir->in_len, &st);
    } else if (dir->eof && !dir->eof_given && (!dir->in_len || dir->stalled)) {
        dir->eof_given = true;
        rc = d == HF_CLIENT ? http_inspect_request_eof(h->insp, &st)
                            : http_inspect_response_eof(h->insp, &st);
        if (rc == 0 && dir->in_len) {
            /* A message cut off by EOF: none of it goes on. */
            hf_close(h, true);
            return true;
        }
    } else {
        return false;
    }
    if (rc < 0) {
        log_warn("sandbox %s: inspector error: %s", h->sb->rec.name, strerror(-rc));
        hf_close(h, true);
        return true;
    }
    hf_clear(dir, st.forward);
    /* Nothing cleared and nothing decided: wait for more bytes. */
    dir->stalled = st.outcome == HTTP_OUTCOME_NEED_MORE && st.forward == 0;
    if (d == HF_CLIENT)
        h->request_blocked = st.blocked;
    if (d == HF_UPSTREAM && st.wake_request) {
        h->request_blocked = false;
        h->dir[HF_CLIENT].stalled = false;
    }
    switch (st.outcome) {
    case HTTP_OUTCOME_NEED_MORE:
    case HTTP_OUTCOME_CLOSED:
        break;
    case HTTP_OUTCOME_DENY:
        hf_reject(h, false, NULL);
        break;
    case HTTP_OUTCOME_BAD_REQUEST:
        hf_reject(h, true, st.reason);
        if (st.upstream_dirty) {
            /* Part of a refused body already went upstream: cut it off. */
            hf_close(h, true);
        }
        break;
    case HTTP_OUTCOME_UPGRADED:
        /* The 101 head is cleared; what follows it and whatever the client
         * sent meanwhile are raw bytes now.  They stay in `in` and move on
         * (in order) once each `out` has drained: `out` may still hold bytes,
         * so moving them here could overrun it. */
        h->raw = true;
        h->request_blocked = false;
        h->dir[HF_CLIENT].stalled = h->dir[HF_UPSTREAM].stalled = false;
        hf_event(h, "HTTP:UPGRADE", EVENT_ACTION_ALLOWED, "allow_upgrade", EVENT_SEVERITY_INFO,
                 NULL, NULL, NULL, "switched to raw relay after 101");
        break;
    case HTTP_OUTCOME_UNSOLICITED_UPGRADE:
        hf_event(h, "FINDING:UNSOLICITED_UPGRADE", EVENT_ACTION_DENIED, "unsolicited_upgrade",
                 EVENT_SEVERITY_HIGH, NULL, NULL, NULL, st.reason);
        hf_close(h, true);
        break;
    case HTTP_OUTCOME_BAD_RESPONSE:
    default:
        hf_event(h, "HTTP:RESPONSE", EVENT_ACTION_DENIED, "bad_response", EVENT_SEVERITY_MEDIUM,
                 NULL, NULL, NULL, st.reason);
        hf_close(h, true);
        break;
    }
    return true;
}

/* May side s be read into its `in` now?  (Flow control: see the top.) */
static bool hf_may_read(const struct http_flow *h, int s)
{
    const struct hf_dir *from = &h->dir[s];
    bool may_read = !from->eof && from->out_len == 0 && from->in_len < HF_BUF_SIZE &&
                    (h->state == HF_RUNNING || (h->state == HF_REJECTING && s == HF_UPSTREAM));
    if (s == HF_CLIENT && h->request_blocked && !h->raw)
        may_read = false;
    return may_read;
}

/* TLS: move what side s's connection has decrypted into its `in`.  Returns
 * 1 when bytes (or the EOF) arrived, 0 when none, or -errno. */
static int hf_tls_pull(struct http_flow *h, int s)
{
    struct hf_dir *dir = &h->dir[s];
    int got = 0;
    while (hf_may_read(h, s)) {
        ssize_t n = tls_conn_read(h->tls[s], dir->in + dir->in_len, HF_BUF_SIZE - dir->in_len);
        if (n == TLS_CONN_CLOSED || (n == 0 && dir->sock_eof)) {
            dir->eof = true;
            got = 1;
            break;
        }
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        dir->in_len += (size_t)n;
        dir->stalled = false;
        got = 1;
    }
    /* Reading may have produced output (a key update, an alert). */
    int rc = hf_tls_send(h, s);
    return rc < 0 ? rc : got;
}

/* Read what side s has, into direction s's `in`. */
static int hf_read(struct http_flow *h, int s)
{
    struct hf_dir *dir = &h->dir[s];
    if (h->tls[s]) {
        ssize_t n;
        do {
            n = recv(h->fd[s], hf_cbuf, sizeof(hf_cbuf), 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        if (n == 0)
            dir->sock_eof = true;
        else if (tls_conn_feed(h->tls[s], hf_cbuf, (size_t)n) < 0)
            return -ENOMEM;
        h->last_activity_ms = uv_now(daemon_loop);
        int rc = hf_tls_pull(h, s);
        return rc < 0 ? rc : 0;
    }
    while (dir->in_len < HF_BUF_SIZE) {
        ssize_t n = recv(h->fd[s], dir->in + dir->in_len, HF_BUF_SIZE - dir->in_len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        if (n == 0) {
            dir->eof = true;
            return 0;
        }
        dir->in_len += (size_t)n;
        dir->stalled = false;
        h->last_activity_ms = uv_now(daemon_loop);
        /* One read at a time: the inspector looks at it before more arrive. */
        return 0;
    }
    return 0;
}

static void hf_update_polls(struct http_flow *h)
{
    for (int s = 0; s < 2; s++) {
        if (h->fd[s] < 0)
            continue;
        struct hf_dir *to = &h->dir[!s];
        int ev = 0;
        if (hf_may_read(h, s))
            ev |= UV_READABLE;
        if (to->out_off < to->out_len || hf_tls_pending(h, s))
            ev |= UV_WRITABLE;
        if (ev != h->poll_events[s]) {
            h->poll_events[s] = ev;
            if (ev)
                uv_poll_start(&h->poll[s], ev, on_poll);
            else
                uv_poll_stop(&h->poll[s]);
        }
    }
}

/* The refusal is written: FIN to the client, the upstream closed, and the
 * client's remaining input read and dropped until its EOF or a deadline. */
static void hf_linger(struct http_flow *h)
{
    h->state = HF_LINGERING;
    h->deadline_ms = uv_now(daemon_loop) + HF_LINGER_MS;
    hf_shut_wr(h, HF_CLIENT);
    if (h->fd[HF_UPSTREAM] >= 0) {
        uv_poll_stop(&h->poll[HF_UPSTREAM]);
        close(h->fd[HF_UPSTREAM]);
        h->fd[HF_UPSTREAM] = -1;
        uv_close((uv_handle_t *)&h->poll[HF_UPSTREAM], on_handle_closed);
    }
    /* A close_notify the socket could not take yet goes out when it can:
     * without it a TLS client may take the 403 for a truncated answer. */
    h->poll_events[HF_CLIENT] = UV_READABLE | (hf_tls_pending(h, HF_CLIENT) ? UV_WRITABLE : 0);
    uv_poll_start(&h->poll[HF_CLIENT], h->poll_events[HF_CLIENT], on_poll);
}

static void on_relay_done(void *data, const struct relay_stats *st)
{
    struct sandbox *sb = data;
    (void)st;
    n_handed_over--;
    sb->n_flows--;
    sandbox_unref(sb);
}

/*
 * After a 101 on plain TCP, once nothing is buffered either way: give both
 * sockets to the raw relay, which splices bulk (zero copy), like an L4 flow.
 * Returns true when the relay took them (the flow is then closing).
 */
static bool hf_hand_over(struct http_flow *h)
{
    for (int d = 0; d < 2; d++) {
        const struct hf_dir *dir = &h->dir[d];
        if (h->tls[d] || dir->in_len || dir->out_len || dir->eof || dir->shut)
            return false;
    }
    int fd[2] = {h->fd[HF_CLIENT], h->fd[HF_UPSTREAM]};
    /* No handle of ours may watch them when the relay adds them. */
    for (int s = 0; s < 2; s++) {
        uv_poll_stop(&h->poll[s]);
        uv_close((uv_handle_t *)&h->poll[s], on_handle_closed);
        h->fd[s] = -1;
    }
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    h->state = HF_CLOSING;
    struct relay_config rc = {
        .connect_timeout_ms = daemon_cfg.connect_timeout_ms,
        .idle_timeout_ms = daemon_cfg.idle_timeout_ms,
        .no_splice = daemon_cfg.no_splice,
    };
    int err = relay_adopt(daemon_loop, &rc, fd[0], fd[1], on_relay_done, h->sb);
    if (err < 0) {
        log_warn("sandbox %s: cannot hand the upgraded flow to the relay: %s", h->sb->rec.name,
                 strerror(-err));
        relay_reset_fd(fd[0]);
        relay_reset_fd(fd[1]);
        return true;
    }
    /* The relay keeps the sandbox (a reference of its own) and the flow count. */
    h->handed_over = true;
    sandbox_ref(h->sb);
    n_handed_over++;
    return true;
}

/* Bring the flow forward as far as it goes without waiting. */
static void hf_settle(struct http_flow *h)
{
    bool progress = true;
    for (int round = 0; progress && round < 64 && h->state != HF_CLOSING; round++) {
        progress = false;
        for (int d = 0; d < 2 && h->state != HF_CLOSING; d++) {
            int rc = hf_flush(h, d);
            if (rc < 0) {
                hf_close(h, true);
                return;
            }
            if (!h->dir[d].out_len)
                progress |= hf_inspect(h, d);
            /* Plaintext the connection already holds raises no poll event. */
            if (h->tls[d] && h->state != HF_CLOSING) {
                rc = hf_tls_pull(h, d);
                if (rc < 0) {
                    hf_close(h, true);
                    return;
                }
                progress |= rc > 0;
            }
        }
    }
    if (h->state == HF_CLOSING)
        return;
    if (h->state == HF_REJECTING) {
        struct hf_dir *resp = &h->dir[HF_UPSTREAM];
        if (h->reject && !resp->out_len &&
            (http_inspector_idle(h->insp) || resp->eof || h->reject_len > HF_BUF_SIZE)) {
            /* Earlier responses are out: now the refusal. */
            if (h->reject_len <= HF_BUF_SIZE) {
                memcpy(resp->out, h->reject, h->reject_len);
                resp->out_len = h->reject_len;
            }
            free(h->reject);
            h->reject = NULL;
            if (hf_flush(h, HF_UPSTREAM) < 0) {
                hf_close(h, true);
                return;
            }
        }
        if (!h->reject && !resp->out_len && !hf_tls_pending(h, HF_CLIENT)) {
            hf_linger(h);
            return;
        }
        hf_update_polls(h);
        return;
    }
    /* Half-close: a source's FIN goes on once everything before it did. */
    for (int d = 0; d < 2 && h->state != HF_CLOSING; d++) {
        struct hf_dir *dir = &h->dir[d];
        bool drained = !dir->in_len && !dir->out_len;
        if (dir->eof && drained && !dir->shut && (h->raw || dir->eof_given)) {
            hf_shut_wr(h, !d);
            dir->shut = true;
        }
    }
    if (h->dir[0].shut && h->dir[1].shut && !hf_tls_pending(h, 0) && !hf_tls_pending(h, 1)) {
        hf_close(h, false);
        return;
    }
    if (h->raw && h->state == HF_RUNNING && hf_hand_over(h))
        return;
    hf_update_polls(h);
}

/* ---- terminated TLS: the two handshakes ---- */

/* Poll only side s, for its handshake. */
static void hf_poll_only(struct http_flow *h, int s)
{
    for (int i = 0; i < 2; i++) {
        int ev = 0;
        if (i == s)
            ev = UV_READABLE | (hf_tls_pending(h, s) ? UV_WRITABLE : 0);
        if (ev != h->poll_events[i]) {
            h->poll_events[i] = ev;
            if (ev)
                uv_poll_start(&h->poll[i], ev, on_poll);
            else
                uv_poll_stop(&h->poll[i]);
        }
    }
}

static void hf_tls_step(struct http_flow *h);

/* Start the client's handshake: a leaf for the name, or (refuse) an alert. */
static void hf_tls_start_client(struct http_flow *h, bool refuse)
{
    unsigned flags = TLS_CONN_F_ALPN_HTTP11 | (refuse ? TLS_CONN_F_REFUSE : 0);
    int rc = tls_conn_new_server(hf_tls_server, h->tls_name, flags, &h->tls[HF_CLIENT]);
    if (rc < 0) {
        log_warn("sandbox %s: no certificate for %s: %s", h->sb->rec.name, h->tls_name,
                 strerror(-rc));
        hf_close(h, true);
        return;
    }
    h->state = refuse ? HF_TLS_REFUSING : HF_TLS_CLIENT;
    hf_tls_step(h);
}

/* Advance whichever handshake the state names, as far as it goes. */
static void hf_tls_step(struct http_flow *h)
{
    int s = h->state == HF_TLS_UPSTREAM ? HF_UPSTREAM : HF_CLIENT;
    int rc = tls_conn_handshake(h->tls[s]);
    if (hf_tls_send(h, s) < 0) {
        hf_close(h, true);
        return;
    }
    if (rc < 0) {
        const char *why = tls_conn_error(h->tls[s]);
        if (h->state == HF_TLS_UPSTREAM) {
            /* Never a session with a server that did not prove its name:
             * the client gets an alert instead of a certificate. */
            bool verify = strstr(why, "verify") || strstr(why, "hostname") ||
                          strstr(why, "mismatch") || strstr(why, "certificate");
            hf_event(h, "TLS:HANDSHAKE", EVENT_ACTION_DENIED,
                     verify ? "upstream_verify_failed" : "upstream_tls_failed", EVENT_SEVERITY_HIGH,
                     NULL, NULL, h->tls_name, why);
            hf_tls_start_client(h, true);
            return;
        }
        if (h->state == HF_TLS_CLIENT)
            hf_event(h, "TLS:HANDSHAKE", EVENT_ACTION_DENIED, "client_tls_failed",
                     EVENT_SEVERITY_MEDIUM, NULL, NULL, h->tls_name, why);
        /* The alert (ours or for the refusal) went out with the send above. */
        hf_close(h, false);
        return;
    }
    if (rc == 0) {
        hf_poll_only(h, s);
        return;
    }
    if (h->state == HF_TLS_UPSTREAM) {
        hf_tls_start_client(h, false);
        return;
    }
    if (h->state == HF_TLS_REFUSING) {
        hf_close(h, false);
        return;
    }
    h->state = HF_RUNNING;
    hf_settle(h);
}

/* The upstream accepted the TCP connection: TLS, or straight to running. */
static void hf_connected(struct http_flow *h)
{
    if (!h->tls_name[0]) {
        h->state = HF_RUNNING;
        h->poll_events[HF_UPSTREAM] = 0;
        uv_poll_stop(&h->poll[HF_UPSTREAM]);
        uv_poll_start(&h->poll[HF_CLIENT], UV_READABLE, on_poll);
        h->poll_events[HF_CLIENT] = UV_READABLE;
        hf_settle(h);
        return;
    }
    h->deadline_ms = uv_now(daemon_loop) + daemon_cfg.connect_timeout_ms;
    /* Resume only a session from the same name at the same address and port. */
    char addr[NET_ADDR_STRLEN], key[TLS_SESSION_KEY_MAX + 1];
    snprintf(key, sizeof(key), "%s|%s|%u", h->tls_name,
             net_addr_format(&h->dst, addr, sizeof(addr)), (unsigned)h->dport);
    int rc = tls_conn_new_client(h->sb->tls_client, h->tls_name, key, TLS_CONN_F_ALPN_HTTP11,
                                 &h->tls[HF_UPSTREAM]);
    if (rc < 0) {
        log_warn("sandbox %s: cannot start TLS to %s: %s", h->sb->rec.name, h->tls_name,
                 strerror(-rc));
        hf_close(h, true);
        return;
    }
    h->state = HF_TLS_UPSTREAM;
    hf_tls_step(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct http_flow *h = p->data;
    int s = p == &h->poll[HF_CLIENT] ? HF_CLIENT : HF_UPSTREAM;
    if (h->state == HF_CLOSING)
        return;
    if (h->state == HF_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (status < 0 || getsockopt(h->fd[HF_UPSTREAM], SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
            err) {
            log_debug("sandbox %s: upstream connect failed: %s", h->sb->rec.name,
                      strerror(err ? err : EIO));
            hf_close(h, true);
            return;
        }
        hf_connected(h);
        return;
    }
    if (h->state == HF_TLS_UPSTREAM || h->state == HF_TLS_CLIENT || h->state == HF_TLS_REFUSING) {
        if (status < 0) {
            hf_close(h, true);
            return;
        }
        if (events & UV_READABLE) {
            ssize_t n;
            do {
                n = recv(h->fd[s], hf_cbuf, sizeof(hf_cbuf), 0);
            } while (n < 0 && errno == EINTR);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                /* The peer left mid-handshake. */
                hf_close(h, n < 0);
                return;
            }
            if (n > 0 && tls_conn_feed(h->tls[s], hf_cbuf, (size_t)n) < 0) {
                hf_close(h, true);
                return;
            }
        }
        hf_tls_step(h);
        return;
    }
    if (h->state == HF_LINGERING) {
        uint8_t scratch[16384];
        ssize_t n = 1;
        /* A bounded share of the loop per wake-up: a client that keeps
         * sending must not keep the loop here (the poll fires again). */
        int turns = 16;
        if ((events & UV_WRITABLE) && status == 0) {
            if (hf_tls_send(h, HF_CLIENT) < 0) {
                hf_close(h, false);
                return;
            }
            if (!hf_tls_pending(h, HF_CLIENT)) {
                h->poll_events[HF_CLIENT] = UV_READABLE;
                uv_poll_start(&h->poll[HF_CLIENT], UV_READABLE, on_poll);
            }
        }
        while (status == 0 && turns-- > 0 &&
               (n = recv(h->fd[HF_CLIENT], scratch, sizeof(scratch), 0)) > 0) {
        }
        if (status == 0 && n > 0)
            return; /* more to drain next turn, until the deadline */
        if (status < 0 || n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            hf_close(h, false);
        return;
    }
    if (status < 0) {
        hf_close(h, true);
        return;
    }
    if (events & UV_READABLE) {
        int rc = hf_read(h, s);
        if (rc < 0) {
            /* A reset on one side becomes a reset on the other. */
            hf_close(h, true);
            return;
        }
    }
    hf_settle(h);
}

static void on_timer(uv_timer_t *t)
{
    struct http_flow *h = t->data;
    uint64_t now = uv_now(daemon_loop);
    uint32_t idle = daemon_cfg.idle_timeout_ms;
    if (h->state == HF_LINGERING && now >= h->deadline_ms) {
        hf_close(h, false);
        return;
    }
    bool handshaking =
        h->state == HF_TLS_UPSTREAM || h->state == HF_TLS_CLIENT || h->state == HF_TLS_REFUSING;
    if (h->state == HF_CONNECTING || (h->state == HF_REJECTING && now >= h->deadline_ms) ||
        (handshaking && now >= h->deadline_ms) || now - h->last_activity_ms >= idle) {
        hf_close(h, true);
        return;
    }
    if (h->state == HF_RUNNING && now - h->last_activity_ms >= 1000) {
        /* Quiet for a second: give back what bursts grew. */
        for (int s = 0; s < 2; s++)
            tls_conn_trim(h->tls[s]);
    }
    uv_timer_start(&h->timer, on_timer, 1000, 0);
}

/* The host part of a Host header value, without port or brackets. */
static void host_only(const char *v, size_t len, char *buf, size_t buflen)
{
    size_t n = 0;
    if (len && v[0] == '[') {
        const char *end = memchr(v, ']', len);
        size_t l = end ? (size_t)(end - v - 1) : 0;
        n = l < buflen - 1 ? l : buflen - 1;
        memcpy(buf, v + 1, n);
    } else {
        const char *colon = memchr(v, ':', len);
        size_t l = colon ? (size_t)(colon - v) : len;
        n = l < buflen - 1 ? l : buflen - 1;
        memcpy(buf, v, n);
    }
    buf[n] = '\0';
}

bool http_host_agrees(const char *value, size_t len, const struct net_addr *dst,
                      const char *endpoint_host)
{
    char host[POLICY_MAX_HOST_LEN + 2];
    struct net_addr a;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    while (len && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    if (len > POLICY_MAX_HOST_LEN + 8)
        return false;
    host_only(value, len, host, sizeof(host));
    if (net_addr_parse(host, &a) == 0)
        return net_addr_equal(&a, dst);
    if (!endpoint_host || !endpoint_host[0])
        return true; /* an address-only endpoint names no host to contradict */
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == '.')
        hl--;
    return hl && strlen(endpoint_host) == hl && strncasecmp(endpoint_host, host, hl) == 0;
}

static enum http_verdict hf_decide(void *ctx, const struct http_request_head *head)
{
    struct http_flow *h = ctx;
    struct policy_http_decision hd;
    char type[48], host[POLICY_MAX_HOST_LEN + 1] = "";
    snprintf(type, sizeof(type), "HTTP:%s", head->method);
    if (head->host)
        host_only(head->host, head->host_len, host, sizeof(host));

    if (head->host && !http_host_agrees(head->host, head->host_len, &h->dst, h->endpoint_host)) {
        str_copy(h->deny_rule, "host_mismatch", sizeof(h->deny_rule));
        snprintf(h->deny_detail, sizeof(h->deny_detail), "Host does not match %.80s",
                 h->endpoint_host[0] ? h->endpoint_host : "the destination");
        hf_event(h, "FINDING:HOST_MISMATCH", h->audit ? EVENT_ACTION_AUDIT : EVENT_ACTION_DENIED,
                 "host_mismatch", EVENT_SEVERITY_HIGH, head->method, NULL, host, h->deny_detail);
        if (!h->audit)
            return HTTP_VERDICT_DENY;
    }
    /* ~17 KiB, used only within this call on the loop's one thread. */
    static struct policy_http_target target;
    struct policy_http_target *t = &target;
    enum policy_http_error perr = policy_http_target_parse(
        head->target, head->target_len, policy_endpoint_allow_encoded_slash(h->ep), t);
    if (perr != POLICY_HTTP_OK) {
        str_copy(h->deny_rule, "malformed_target", sizeof(h->deny_rule));
        str_copy(h->deny_detail, policy_http_error_name(perr), sizeof(h->deny_detail));
        hf_event(h, type, EVENT_ACTION_DENIED, "l7_rule", EVENT_SEVERITY_MEDIUM, head->method, NULL,
                 host[0] ? host : NULL, h->deny_detail);
        return HTTP_VERDICT_DENY;
    }
    policy_decide_http(h->ep, h->audit, head->method, t, &hd);
    char detail[96];
    snprintf(detail, sizeof(detail), "rule:%s", hd.rule);
    enum event_action action = hd.verdict == POLICY_ALLOW   ? EVENT_ACTION_ALLOWED
                               : hd.verdict == POLICY_AUDIT ? EVENT_ACTION_AUDIT
                                                            : EVENT_ACTION_DENIED;
    const char *reason = action == EVENT_ACTION_ALLOWED
                             ? (head->upgrade ? "allow_upgrade" : NULL)
                             : policy_reason_name(hd.reason ? hd.reason : POLICY_REASON_L7_RULE);
    hf_event(h, type, action, reason,
             action == EVENT_ACTION_DENIED  ? EVENT_SEVERITY_MEDIUM
             : action == EVENT_ACTION_AUDIT ? EVENT_SEVERITY_LOW
                                            : EVENT_SEVERITY_INFO,
             head->method, t->path, host[0] ? host : NULL, detail);
    if (action == EVENT_ACTION_DENIED) {
        str_copy(h->deny_rule, hd.rule, sizeof(h->deny_rule));
        snprintf(h->deny_detail, sizeof(h->deny_detail), "%.16s %.90s is not allowed", head->method,
                 t->path);
    }
    return action == EVENT_ACTION_DENIED ? HTTP_VERDICT_DENY : HTTP_VERDICT_ALLOW;
}

void http_flow_abort_all(void)
{
    /* hf_close() frees nothing before the close callbacks run. */
    for (struct http_flow *h = http_flows; h; h = h->next)
        hf_close(h, true);
}

size_t http_flow_count(void)
{
    return n_http_flows + n_handed_over;
}

void http_flow_set_process(struct http_flow *h, pid_t pid, const char *exe)
{
    if (!h)
        return;
    h->pid = pid;
    free(h->exe);
    h->exe = exe && *exe ? strdup(exe) : NULL;
}

int http_flow_start(const struct http_flow_params *p, struct http_flow **ret)
{
    struct http_flow *h = calloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    int one = 1, rc;
    if (!h)
        return -ENOMEM;
    h->fd[HF_CLIENT] = p->client_fd;
    h->fd[HF_UPSTREAM] = -1;
    for (int d = 0; d < 2; d++) {
        h->dir[d].in = malloc(HF_BUF_SIZE);
        h->dir[d].out = malloc(HF_BUF_SIZE);
        if (!h->dir[d].in || !h->dir[d].out) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    struct http_inspector_config icfg = {.decide = hf_decide, .ctx = h};
    rc = http_inspector_new(&icfg, &h->insp);
    if (rc < 0)
        goto fail;
    if (p->tls) {
        if (!hf_tls_server) {
            rc = -ENOTSUP;
            goto fail;
        }
        if (!p->sb->tls_client && !p->sb->tls_client_failed) {
            /* System roots, the daemon's --upstream-ca and the sandbox's own. */
            char path[PATH_MAX], err[256];
            sandbox_path(p->sb->rec.name, "upstream-ca.pem", path, sizeof(path));
            if (tls_client_new(daemon_cfg.upstream_ca, &p->sb->tls_client, err, sizeof(err)) < 0 ||
                (access(path, F_OK) == 0 &&
                 tls_client_add_ca_file(p->sb->tls_client, path, err, sizeof(err)) < 0)) {
                log_error("sandbox %s: cannot verify upstream TLS servers: %s", p->sb->rec.name,
                          err);
                p->sb->tls_client = tls_client_free(p->sb->tls_client);
                p->sb->tls_client_failed = true;
            }
        }
        if (!p->sb->tls_client) {
            rc = -ENOTSUP;
            goto fail;
        }
        if (p->tls_name)
            str_copy(h->tls_name, p->tls_name, sizeof(h->tls_name));
        else
            net_addr_format(&p->dst, h->tls_name, sizeof(h->tls_name));
    }
    h->raw = p->raw;
    h->dst = p->dst;
    h->dport = p->dport;
    h->audit = p->audit;
    h->ep = p->ep;
    str_copy(h->policy_name, p->policy_name ? p->policy_name : "", sizeof(h->policy_name));
    str_copy(h->endpoint_host, p->endpoint_host ? p->endpoint_host : "", sizeof(h->endpoint_host));
    socklen_t len = net_addr_to_sockaddr(&p->dst, p->dport, &ss);
    int ufd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ufd < 0) {
        rc = -errno;
        goto fail;
    }
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(p->client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(ufd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        /* Refused at once: the client gets a reset, like the raw relay. */
        rc = -errno;
        close(ufd);
        goto fail;
    }
    h->fd[HF_UPSTREAM] = ufd;
    /* From here on the flow owns both fds and frees itself. */
    h->sb = sandbox_ref(p->sb);
    h->pol = policy_ref_get(p->pol);
    h->last_activity_ms = uv_now(daemon_loop);
    for (int s = 0; s < 2; s++) {
        uv_poll_init(daemon_loop, &h->poll[s], h->fd[s]);
        h->poll[s].data = h;
        h->open_handles++;
    }
    uv_timer_init(daemon_loop, &h->timer);
    h->timer.data = h;
    h->open_handles++;
    uv_poll_start(&h->poll[HF_UPSTREAM], UV_WRITABLE, on_poll);
    h->poll_events[HF_UPSTREAM] = UV_WRITABLE;
    uv_timer_start(&h->timer, on_timer, daemon_cfg.connect_timeout_ms, 0);
    n_http_flows++;
    h->sb->n_http_flows++;
    DLIST_PUSH(http_flows, h, prev, next);
    if (ret)
        *ret = h;
    return 0;
fail:
    for (int d = 0; d < 2; d++) {
        free(h->dir[d].in);
        free(h->dir[d].out);
    }
    http_inspector_free(h->insp);
    free(h);
    return rc;
}

int http_flow_tls_init(void)
{
    char err[256];
    const char *dir = tls_ca_dir();
    int rc = tls_ca_load_or_create(dir, &hf_ca, err, sizeof(err));
    if (rc < 0) {
        log_error("TLS interception unavailable (CA in %s): %s; flows that need it are refused",
                  dir, err);
        return rc;
    }
    rc = tls_server_new(hf_ca, 0, &hf_tls_server);
    if (rc < 0) {
        log_error("TLS interception unavailable: %s; flows that need it are refused",
                  strerror(-rc));
        hf_ca = tls_ca_free(hf_ca);
        return rc;
    }
    /* Load the upstream trust (system roots, --upstream-ca) now, not on the
     * loop at the first TLS flow (~20 ms), and say early if it is broken. */
    struct tls_client *cli = NULL;
    if (tls_client_new(daemon_cfg.upstream_ca, &cli, err, sizeof(err)) < 0)
        log_error("cannot verify upstream TLS servers: %s; TLS flows will be refused until it is "
                  "fixed",
                  err);
    tls_client_free(cli);
    return 0;
}

void http_flow_tls_shutdown(void)
{
    if (hf_tls_server) {
        struct tls_cache_stats st;
        tls_server_stats(hf_tls_server, &st);
        log_info("TLS leaf cache: %llu hits, %llu misses, %llu evictions, %zu entries",
                 (unsigned long long)st.hits, (unsigned long long)st.misses,
                 (unsigned long long)st.evictions, st.entries);
    }
    hf_tls_server = tls_server_free(hf_tls_server);
    hf_ca = tls_ca_free(hf_ca);
}
