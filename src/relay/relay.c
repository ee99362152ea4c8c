/*
 * relay: bidirectional TCP relay driven by uv_poll_t.
 *
 * One struct relay_conn holds both halves.  side[s] is a socket plus the bytes
 * read from it that still have to be written to the other side, so "direction
 * s" means side[s] -> side[!s].  Bytes in flight live in a pipe (splice path)
 * or a malloc'd buffer (copy path); either exists only while the direction
 * carries data, so an idle relay costs this struct and two sockets.
 *
 * Every epoll interest change costs libuv an EPOLL_CTL_DEL plus an ADD
 * (uv_poll_start() always invalidates the fd first), so the wanted events are
 * cached in the READING/WRITING flags and uv_poll_start() runs only when they
 * change.
 *
 * Not thread-safe: all relays, like the global list, belong to the thread that
 * runs their loop.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/sockios.h>

#define RELAY_CONNECT_TIMEOUT_MS 10000u
#define RELAY_IDLE_TIMEOUT_MS 3600000u
#define RELAY_BUFFER_DEFAULT (64u * 1024)
#define RELAY_BUFFER_MAX (16u * 1024 * 1024)
/* Linux's default pipe capacity: no F_SETPIPE_SZ needed for this size. */
#define RELAY_PIPE_DEFAULT (64u * 1024)
/* Bytes read per direction per callback, so one bulk stream cannot starve
 * the other relays on the loop. */
#define RELAY_BUDGET (1u << 20)

/* A pipe is two fds and a few KiB of kernel memory: an empty one goes back
 * after this long without traffic, so relays that went quiet (keep-alive,
 * websockets) cost two sockets again.  A variable so tests can shorten it. */
static uint32_t relay_pipe_idle_ms = 5000;

enum {
    RELAY_CLIENT = 0,
    RELAY_UPSTREAM = 1,
};

/* Per-side flags (struct relay_side.flags). */
enum {
    RELAY_F_EOF = 1u << 0,       /* read returned 0: no more bytes from this side */
    RELAY_F_SHUT_WR = 1u << 1,   /* we sent FIN to this side */
    RELAY_F_READING = 1u << 2,   /* poll handle watches UV_READABLE */
    RELAY_F_WRITING = 1u << 3,   /* poll handle watches UV_WRITABLE */
    RELAY_F_PIPE_FULL = 1u << 4, /* pipe refused bytes below the watermark (slots used up) */
};

/* Connection flags (struct relay_conn.flags); disjoint from the side flags. */
enum {
    RELAY_F_CONNECTING = 1u << 8,
    RELAY_F_CONNECT_ERR = 1u << 9, /* connect() failed at once; reported from the timer */
    RELAY_F_COPY = 1u << 10,       /* read/write path instead of splice */
    RELAY_F_CLOSING = 1u << 11,
    RELAY_F_ABANDONED = 1u << 12, /* relay_start() failed after handles existed: no done */
};

/* Which sockets relay_close() resets instead of closing. */
enum {
    RELAY_RST_CLIENT = 1u << RELAY_CLIENT,
    RELAY_RST_UPSTREAM = 1u << RELAY_UPSTREAM,
    RELAY_RST_BOTH = RELAY_RST_CLIENT | RELAY_RST_UPSTREAM,
};

struct relay_side {
    uv_poll_t poll;
    int fd;
    uint32_t flags;
    uint32_t pending; /* bytes read from this side, not yet written to the other */
    uint32_t cap;     /* high watermark for pending */
    uint32_t off;     /* copy path: start of the pending bytes in buf */
    int pipe[2];      /* splice path: -1 while the direction is idle */
    char *buf;        /* copy path: NULL while the direction is idle */
};

struct relay_conn {
    struct relay_conn *next, *prev; /* relay_list */
    uv_loop_t *loop;
    struct relay_side side[2];
    uv_timer_t timer; /* connect timeout, then idle timeout */
    uint64_t last_active;
    uint32_t idle_ms;
    uint32_t buffer_size;
    uint32_t flags;
    int closing; /* close callbacks still to come */
    relay_connected_fn connected;
    relay_done_fn done;
    void *data;
    struct relay_stats stats;
};

static struct relay_conn *relay_list;
static size_t relay_live;

static void on_poll(uv_poll_t *handle, int status, int events);
static void on_timer(uv_timer_t *timer);

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static bool sock_has_data(int fd)
{
    int n = 0;

    /* On failure assume data, which only pauses reading until the next drain. */
    return ioctl(fd, SIOCINQ, &n) < 0 || n > 0;
}

static void sock_nodelay(int fd)
{
    int one = 1;

    /* Best effort: a non-TCP client socket (tests, odd callers) just keeps Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void relay_reset_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    if (fd < 0)
        return;
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

const char *relay_end_name(enum relay_end e)
{
    static const char *const names[RELAY_END_MAX] = {
        [RELAY_END_CLOSED] = "closed",
        [RELAY_END_CONNECT_FAILED] = "connect_failed",
        [RELAY_END_CONNECT_TIMEOUT] = "connect_timeout",
        [RELAY_END_RESET_BY_CLIENT] = "reset_by_client",
        [RELAY_END_RESET_BY_UPSTREAM] = "reset_by_upstream",
        [RELAY_END_IDLE_TIMEOUT] = "idle_timeout",
        [RELAY_END_ERROR] = "error",
        [RELAY_END_ABORTED] = "aborted",
    };

    if ((unsigned)e >= RELAY_END_MAX)
        return "unknown";
    return names[e];
}

size_t relay_count(void)
{
    return relay_live;
}

static void relay_side_release(struct relay_side *sd)
{
    if (sd->pipe[0] >= 0) {
        close(sd->pipe[0]);
        close(sd->pipe[1]);
        sd->pipe[0] = sd->pipe[1] = -1;
    }
    free(sd->buf);
    sd->buf = NULL;
    sd->off = 0;
    sd->pending = 0;
}

static void on_close(uv_handle_t *handle)
{
    struct relay_conn *c = handle->data;

    if (--c->closing > 0)
        return;
    if (!(c->flags & RELAY_F_ABANDONED)) {
        /* Unlink first so relay_count() inside done no longer counts us. */
        if (c->prev)
            c->prev->next = c->next;
        else
            relay_list = c->next;
        if (c->next)
            c->next->prev = c->prev;
        relay_live--;
        c->done(c->data, &c->stats);
    }
    free(c);
}

/* The one way a relay ends: stop both polls (before their fds go, so epoll
 * never sees a reused number), close or reset the sockets, free the buffers.
 * done runs from the last close callback. */
static void relay_close(struct relay_conn *c, enum relay_end end, int error, unsigned rst)
{
    if (c->flags & RELAY_F_CLOSING)
        return;
    c->flags |= RELAY_F_CLOSING;
    c->stats.end = end;
    c->stats.error = error;
    for (int s = 0; s < 2; s++) {
        struct relay_side *sd = &c->side[s];

        uv_close((uv_handle_t *)&sd->poll, on_close);
        if (rst & (1u << s))
            relay_reset_fd(sd->fd);
        else
            close(sd->fd);
        sd->fd = -1;
        relay_side_release(sd);
    }
    uv_close((uv_handle_t *)&c->timer, on_close);
    c->closing = 3;
}

static bool errno_is_local(int err)
{
    switch (err) {
    case ENOMEM:
    case ENOBUFS:
    case EMFILE:
    case ENFILE:
    case EBADF:
    case EFAULT:
    case EINVAL:
    case EEXIST:
        return true;
    default:
        return false;
    }
}

/* A syscall on side `bad` failed with -err: reset both sockets. */
static void relay_fail(struct relay_conn *c, int bad, int err)
{
    enum relay_end end;

    if (errno_is_local(-err))
        end = RELAY_END_ERROR;
    else if (bad == RELAY_CLIENT)
        end = RELAY_END_RESET_BY_CLIENT;
    else
        end = RELAY_END_RESET_BY_UPSTREAM;
    relay_close(c, end, end == RELAY_END_ERROR ? err : 0, RELAY_RST_BOTH);
}

static void relay_account(struct relay_conn *c, int dst, size_t n)
{
    if (dst == RELAY_UPSTREAM)
        c->stats.bytes_to_upstream += n;
    else
        c->stats.bytes_to_client += n;
    c->last_active = uv_now(c->loop);
}

static bool side_can_read(const struct relay_side *sd)
{
    return !(sd->flags & (RELAY_F_EOF | RELAY_F_PIPE_FULL)) && sd->pending < sd->cap;
}

/* Bring the poll handle of side s in line with what its two directions need. */
static int side_update(struct relay_conn *c, int s)
{
    struct relay_side *sd = &c->side[s];
    uint32_t want = 0;
    int events = 0;

    if (side_can_read(sd)) {
        want |= RELAY_F_READING;
        events |= UV_READABLE;
    }
    if (c->side[!s].pending > 0) {
        want |= RELAY_F_WRITING;
        events |= UV_WRITABLE;
    }
    if ((sd->flags & (RELAY_F_READING | RELAY_F_WRITING)) == want)
        return 0;
    sd->flags = (sd->flags & ~(RELAY_F_READING | RELAY_F_WRITING)) | want;
    if (events == 0)
        return uv_poll_stop(&sd->poll);
    return uv_poll_start(&sd->poll, events, on_poll);
}

static int relay_pipe_open(struct relay_conn *c, struct relay_side *sd)
{
    int p[2];
    int size;

    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    sd->cap = c->buffer_size;
    if (c->buffer_size != RELAY_PIPE_DEFAULT) {
        size = fcntl(p[1], F_SETPIPE_SZ, (int)c->buffer_size);
        /* Over pipe-max-size or the per-user pipe quota: live with what the
         * pipe has; the watermark must not exceed it. */
        if (size < 0)
            size = fcntl(p[1], F_GETPIPE_SZ);
        if (size > 0)
            sd->cap = min_u32(c->buffer_size, (uint32_t)size);
    }
    sd->pipe[0] = p[0];
    sd->pipe[1] = p[1];
    /* Make sure the timer comes back in time to take it away again. */
    if (uv_timer_get_due_in(&c->timer) > relay_pipe_idle_ms)
        uv_timer_start(&c->timer, on_timer, relay_pipe_idle_ms, 0);
    return 0;
}

/* Switch the connection to the copy path, moving whatever sits in the pipes
 * into buffers so no byte is lost or reordered. */
static int relay_to_copy(struct relay_conn *c)
{
    c->flags |= RELAY_F_COPY;
    for (int s = 0; s < 2; s++) {
        struct relay_side *sd = &c->side[s];
        uint32_t got = 0;

        sd->flags &= ~RELAY_F_PIPE_FULL;
        if (sd->pipe[0] < 0) {
            sd->cap = c->buffer_size;
            continue;
        }
        if (sd->pending > 0) {
            sd->buf = malloc(c->buffer_size);
            if (!sd->buf)
                return -ENOMEM;
            while (got < sd->pending) {
                ssize_t n = read(sd->pipe[0], sd->buf + got, sd->pending - got);

                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    return n < 0 ? -errno : -EIO;
                got += (uint32_t)n;
            }
        }
        close(sd->pipe[0]);
        close(sd->pipe[1]);
        sd->pipe[0] = sd->pipe[1] = -1;
        sd->off = 0;
        sd->cap = c->buffer_size;
    }
    return 0;
}

/* Splice direction s until both ends would block or the budget is spent.
 * Returns 0, 1 when this connection cannot splice (fall back to copying), or
 * -errno with *ret_bad set to the side whose syscall failed. */
static int pump_splice(struct relay_conn *c, int s, int *ret_bad)
{
    struct relay_side *src = &c->side[s], *dst = &c->side[!s];
    size_t budget = RELAY_BUDGET;
    ssize_t n;
    int r;

    for (;;) {
        bool moved = false;

        if (src->pending > 0) {
            n = splice(src->pipe[0], NULL, dst->fd, NULL, src->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                src->pending -= (uint32_t)n;
                src->flags &= ~RELAY_F_PIPE_FULL;
                relay_account(c, !s, (size_t)n);
                moved = true;
            } else if (n < 0 && errno == EINTR) {
                moved = true;
            } else if (n < 0 && errno == EINVAL) {
                return 1;
            } else if (n < 0 && errno != EAGAIN) {
                *ret_bad = !s;
                return -errno;
            }
        }
        if (budget > 0 && side_can_read(src)) {
            if (src->pipe[0] < 0) {
                r = relay_pipe_open(c, src);
                if (r < 0)
                    return 1; /* out of fds or pipe quota: copying still works */
            }
            n = splice(src->fd, NULL, src->pipe[1], NULL, src->cap - src->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                src->pending += (uint32_t)n;
                budget -= (size_t)n < budget ? (size_t)n : budget;
                c->last_active = uv_now(c->loop);
                moved = true;
            } else if (n == 0) {
                src->flags |= RELAY_F_EOF;
            } else if (errno == EAGAIN) {
                /* With bytes in the pipe, EAGAIN may mean the pipe ran out of
                 * slots (one per skb fragment, so far below cap with small
                 * segments) while the socket still holds data: then stop
                 * reading until the destination drains, or level-triggered
                 * epoll would spin on the readable socket. */
                if (src->pending > 0 && sock_has_data(src->fd))
                    src->flags |= RELAY_F_PIPE_FULL;
            } else if (errno == EINTR) {
                moved = true;
            } else if (errno == EINVAL) {
                return 1;
            } else {
                *ret_bad = s;
                return -errno;
            }
        }
        if (!moved)
            return 0;
    }
}

/* Same contract as pump_splice() with read/send through a buffer. */
static int pump_copy(struct relay_conn *c, int s, int *ret_bad)
{
    struct relay_side *src = &c->side[s], *dst = &c->side[!s];
    size_t budget = RELAY_BUDGET;
    ssize_t n;

    for (;;) {
        bool moved = false;

        if (src->pending > 0) {
            n = send(dst->fd, src->buf + src->off, src->pending, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                src->pending -= (uint32_t)n;
                src->off = src->pending > 0 ? src->off + (uint32_t)n : 0;
                relay_account(c, !s, (size_t)n);
                moved = true;
            } else if (n < 0 && errno == EINTR) {
                moved = true;
            } else if (n < 0 && errno != EAGAIN) {
                *ret_bad = !s;
                return -errno;
            }
        }
        if (budget > 0 && side_can_read(src)) {
            if (!src->buf) {
                src->buf = malloc(src->cap);
                if (!src->buf) {
                    *ret_bad = s;
                    return -ENOMEM;
                }
            }
            if (src->off + src->pending == src->cap) {
                memmove(src->buf, src->buf + src->off, src->pending);
                src->off = 0;
            }
            n = recv(src->fd, src->buf + src->off + src->pending,
                     src->cap - src->off - src->pending, MSG_DONTWAIT);
            if (n > 0) {
                src->pending += (uint32_t)n;
                budget -= (size_t)n < budget ? (size_t)n : budget;
                c->last_active = uv_now(c->loop);
                moved = true;
            } else if (n == 0) {
                src->flags |= RELAY_F_EOF;
            } else if (errno == EINTR) {
                moved = true;
            } else if (errno != EAGAIN) {
                *ret_bad = s;
                return -errno;
            }
        }
        if (!moved)
            break;
    }
    /* Drained and the source is dry: give the memory back until the next burst. */
    if (src->pending == 0 && budget > 0) {
        free(src->buf);
        src->buf = NULL;
        src->off = 0;
    }
    return 0;
}

static int relay_pump(struct relay_conn *c, int s, int *ret_bad)
{
    int r;

    if (!(c->flags & RELAY_F_COPY)) {
        r = pump_splice(c, s, ret_bad);
        if (r <= 0)
            return r;
        r = relay_to_copy(c);
        if (r < 0) {
            *ret_bad = s;
            return r;
        }
    }
    return pump_copy(c, s, ret_bad);
}

/* After bytes moved: turn a drained EOF into a FIN on the other side, end the
 * relay when both directions are done, else update what we poll for. */
static void relay_settle(struct relay_conn *c)
{
    int r;

    for (int s = 0; s < 2; s++) {
        struct relay_side *src = &c->side[s], *dst = &c->side[!s];

        if (!(src->flags & RELAY_F_EOF) || src->pending > 0 || (dst->flags & RELAY_F_SHUT_WR))
            continue;
        relay_side_release(src);
        if (shutdown(dst->fd, SHUT_WR) < 0) {
            relay_fail(c, !s, -errno);
            return;
        }
        dst->flags |= RELAY_F_SHUT_WR;
    }
    if ((c->side[RELAY_CLIENT].flags & RELAY_F_SHUT_WR) &&
        (c->side[RELAY_UPSTREAM].flags & RELAY_F_SHUT_WR)) {
        relay_close(c, RELAY_END_CLOSED, 0, 0);
        return;
    }
    for (int s = 0; s < 2; s++) {
        r = side_update(c, s);
        if (r < 0) {
            relay_close(c, RELAY_END_ERROR, r, RELAY_RST_BOTH);
            return;
        }
    }
}

/* The upstream connect finished with status (0 or -errno). */
static void relay_connect_done(struct relay_conn *c, int status, enum relay_end end)
{
    c->flags &= ~(RELAY_F_CONNECTING | RELAY_F_CONNECT_ERR);
    if (c->connected)
        c->connected(c->data, status);
    if (c->flags & RELAY_F_CLOSING)
        return; /* the callback aborted us */
    if (status < 0) {
        relay_close(c, end, status, RELAY_RST_CLIENT);
        return;
    }
    c->last_active = uv_now(c->loop);
    uv_timer_start(&c->timer, on_timer, c->idle_ms, 0);
    relay_settle(c);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct relay_conn *c = handle->data;
    int s = handle == &c->side[RELAY_UPSTREAM].poll ? RELAY_UPSTREAM : RELAY_CLIENT;
    int bad = s;
    int err, r;

    if (status < 0) {
        /* EPOLLERR: libuv stopped the handle; the socket error says why. */
        c->side[s].flags &= ~(RELAY_F_READING | RELAY_F_WRITING);
        err = sock_error(c->side[s].fd);
        if (c->flags & RELAY_F_CONNECTING) {
            relay_connect_done(c, err ? -err : -ECONNABORTED, RELAY_END_CONNECT_FAILED);
            return;
        }
        if (err) {
            relay_fail(c, s, -err);
            return;
        }
        /* Error already consumed: let the syscalls report what is left. */
        events = UV_READABLE | UV_WRITABLE;
    }
    if (c->flags & RELAY_F_CONNECTING) {
        err = sock_error(c->side[s].fd);
        relay_connect_done(c, -err, RELAY_END_CONNECT_FAILED);
        return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        r = relay_pump(c, s, &bad);
        if (r < 0) {
            relay_fail(c, bad, r);
            return;
        }
    }
    if (events & UV_WRITABLE) {
        r = relay_pump(c, !s, &bad);
        if (r < 0) {
            relay_fail(c, bad, r);
            return;
        }
    }
    relay_settle(c);
}

static void on_timer(uv_timer_t *timer)
{
    struct relay_conn *c = timer->data;
    uint64_t idle, next;

    if (c->flags & RELAY_F_CONNECT_ERR) {
        relay_connect_done(c, c->stats.error, RELAY_END_CONNECT_FAILED);
        return;
    }
    if (c->flags & RELAY_F_CONNECTING) {
        relay_connect_done(c, -ETIMEDOUT, RELAY_END_CONNECT_TIMEOUT);
        return;
    }
    /* Activity only stamps last_active; the timer is re-armed here, lazily,
     * for what is left of the idle period. */
    idle = uv_now(c->loop) - c->last_active;
    if (idle >= c->idle_ms) {
        relay_close(c, RELAY_END_IDLE_TIMEOUT, 0, RELAY_RST_BOTH);
        return;
    }
    next = c->idle_ms - idle;
    for (int s = 0; s < 2; s++) {
        struct relay_side *sd = &c->side[s];

        if (sd->pipe[0] < 0)
            continue;
        if (idle >= relay_pipe_idle_ms && sd->pending == 0)
            relay_side_release(sd);
        else
            next = min_u64(next, idle < relay_pipe_idle_ms ? relay_pipe_idle_ms - idle
                                                           : relay_pipe_idle_ms);
    }
    uv_timer_start(&c->timer, on_timer, next, 0);
}

/* splice(2) into a reset socket raises SIGPIPE (it has no MSG_NOSIGNAL), which
 * would kill the daemon.  Ignore it unless the program chose a handler. */
static void relay_ignore_sigpipe(void)
{
    static bool done;
    struct sigaction sa;

    if (done)
        return;
    done = true;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        !(sa.sa_flags & SA_SIGINFO)) {
        sa.sa_handler = SIG_IGN;
        (void)sigaction(SIGPIPE, &sa, NULL);
    }
}

int relay_start(uv_loop_t *loop, const struct relay_config *cfg, int client_fd,
                const struct sockaddr *upstream, socklen_t upstream_len,
                relay_connected_fn connected, relay_done_fn done, void *data)
{
    static const struct relay_config defaults;
    struct relay_conn *c;
    int fd, r;

    if (!cfg)
        cfg = &defaults;
    if (!loop || client_fd < 0 || !upstream || !done)
        return -EINVAL;
    if (cfg->buffer_size > RELAY_BUFFER_MAX)
        return -EINVAL;
    if (!((upstream->sa_family == AF_INET && upstream_len >= sizeof(struct sockaddr_in)) ||
          (upstream->sa_family == AF_INET6 && upstream_len >= sizeof(struct sockaddr_in6))))
        return -EAFNOSUPPORT;

    relay_ignore_sigpipe();

    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->buffer_size = cfg->buffer_size ? (uint32_t)cfg->buffer_size : RELAY_BUFFER_DEFAULT;
    c->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : RELAY_IDLE_TIMEOUT_MS;
    c->connected = connected;
    c->done = done;
    c->data = data;
    if (cfg->no_splice)
        c->flags |= RELAY_F_COPY;
    for (int s = 0; s < 2; s++) {
        c->side[s].pipe[0] = c->side[s].pipe[1] = -1;
        c->side[s].cap = c->buffer_size;
    }

    fd = socket(upstream->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        r = -errno;
        goto fail_free;
    }
    c->side[RELAY_CLIENT].fd = client_fd;
    c->side[RELAY_UPSTREAM].fd = fd;

    r = uv_poll_init(loop, &c->side[RELAY_CLIENT].poll, client_fd);
    if (r < 0)
        goto fail_sock;
    c->side[RELAY_CLIENT].poll.data = c;
    r = uv_poll_init(loop, &c->side[RELAY_UPSTREAM].poll, fd);
    if (r < 0)
        goto fail_client_poll;
    c->side[RELAY_UPSTREAM].poll.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;

    sock_nodelay(client_fd);
    sock_nodelay(fd);

    c->flags |= RELAY_F_CONNECTING;
    if (connect(fd, upstream, upstream_len) == 0 || errno == EINPROGRESS || errno == EINTR) {
        r = uv_poll_start(&c->side[RELAY_UPSTREAM].poll, UV_WRITABLE, on_poll);
        if (r < 0)
            goto fail_handles;
        c->side[RELAY_UPSTREAM].flags |= RELAY_F_WRITING;
        uv_timer_start(&c->timer, on_timer,
                       cfg->connect_timeout_ms ? cfg->connect_timeout_ms : RELAY_CONNECT_TIMEOUT_MS,
                       0);
    } else {
        /* Refused/unreachable at once: still a reset to the client, from the
         * loop, like every other outcome. */
        c->stats.error = -errno;
        c->flags |= RELAY_F_CONNECT_ERR;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    }

    c->next = relay_list;
    if (relay_list)
        relay_list->prev = c;
    relay_list = c;
    relay_live++;
    return 0;

fail_handles:
    /* Handles exist now: only their close callbacks may free c. */
    c->flags |= RELAY_F_ABANDONED;
    c->closing = 3;
    uv_close((uv_handle_t *)&c->side[RELAY_CLIENT].poll, on_close);
    uv_close((uv_handle_t *)&c->side[RELAY_UPSTREAM].poll, on_close);
    uv_close((uv_handle_t *)&c->timer, on_close);
    close(fd);
    return r;
fail_client_poll:
    c->flags |= RELAY_F_ABANDONED;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->side[RELAY_CLIENT].poll, on_close);
    close(fd);
    return r;
fail_sock:
    close(fd);
fail_free:
    free(c);
    return r;
}

void relay_abort_all(void)
{
    /* relay_close() never unlinks, so walking the list is safe. */
    for (struct relay_conn *c = relay_list; c; c = c->next) {
        if (!(c->flags & RELAY_F_CLOSING))
            relay_close(c, RELAY_END_ABORTED, 0, RELAY_RST_BOTH);
    }
}
