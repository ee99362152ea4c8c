/*
 * relay: bidirectional TCP relay on a private epoll set.
 *
 * One struct relay_conn holds both halves.  side[s] is a socket plus the bytes
 * read from it that still have to be written to the other side, so "direction
 * s" means side[s] -> side[!s].  Bytes in flight live in a malloc'd buffer
 * (copy path) or a pipe (splice path); either exists only while the direction
 * carries data, so an idle relay costs this struct and two sockets.
 *
 * A direction starts on the copy path: read into a stack buffer, write straight
 * through, keep on the heap only what the destination refused.  A short
 * exchange (a request, a response) so costs no pipe.  Once the direction has
 * carried RELAY_SPLICE_AFTER bytes it moves to splice(2) through a pipe of its
 * own, after its buffer drained, so no byte is reordered.
 *
 * Events: all relays of a loop share one epoll set, watched by one uv_poll_t,
 * and every socket is in it edge-triggered from start to end.  uv_poll_t per
 * socket would cost libuv's fd checks (epoll ADD+DEL, ioctl) per socket and an
 * EPOLL_CTL_DEL plus ADD for each interest change (uv_poll_start() always
 * invalidates the fd first), a dozen syscalls per short connection; here a
 * socket costs one ADD and one DEL.  Readiness is remembered per side
 * (RD_READY, WR_READY) and forgotten only when a syscall says EAGAIN, so a
 * side that stops being read (buffer full) does not make the loop spin, and
 * reading resumes as soon as the other side drains.
 *
 * Not thread-safe: all relays, like the global lists, belong to the thread
 * that runs their loop.
 */
#include "relay.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define RELAY_BUFFER_DEFAULT (256u * 1024)
#define RELAY_BUFFER_MAX (16u * 1024 * 1024)
/* Linux's default pipe capacity: no F_SETPIPE_SZ needed for this size. */
#define RELAY_PIPE_DEFAULT (64u * 1024)
/* A direction moves from the copy path to splice after this many bytes. */
#define RELAY_SPLICE_AFTER (64u * 1024)
/* The copy path's stack buffer (bytes per read while nothing is buffered),
 * and the most it keeps on the heap per direction: a pipe holds page
 * references, a copy buffer is process memory, so buffer_size bounds the
 * latter only up to this. */
#define RELAY_STACK_BUF (64u * 1024)
#define RELAY_COPY_MAX (64u * 1024)
/* Bytes read per direction per turn, so one bulk stream cannot starve the
 * other relays on the loop; a relay with more to do runs again next turn. */
#define RELAY_BUDGET (1u << 20)
/* Events taken from the epoll set per wakeup. */
#define RELAY_EVENTS 64

/* A pipe is two fds and a few KiB of kernel memory: an empty one goes back
 * after this long without traffic, so relays that went quiet (keep-alive,
 * websockets) cost two sockets again; the direction starts over on the copy
 * path.  A variable so tests can shorten it. */
static uint32_t relay_pipe_idle_ms = 5000;
/* RELAY_BUDGET, a variable for the same reason. */
static size_t relay_budget = RELAY_BUDGET;

enum {
    RELAY_CLIENT = 0,
    RELAY_UPSTREAM = 1,
};

/* Per-side flags (struct relay_side.flags). */
enum {
    RELAY_F_EOF = 1u << 0,       /* read returned 0: no more bytes from this side */
    RELAY_F_SHUT_WR = 1u << 1,   /* we sent FIN to this side */
    RELAY_F_RD_READY = 1u << 2,  /* the socket may have bytes (no EAGAIN since the last event) */
    RELAY_F_WR_READY = 1u << 3,  /* the socket may take bytes (same) */
    RELAY_F_SPLICE = 1u << 4,    /* this direction moves through a pipe (bulk) */
    RELAY_F_TO_SPLICE = 1u << 5, /* enough carried: splice once the copy buffer drained */
    RELAY_F_IN_EPOLL = 1u << 6,  /* the socket is in the epoll set */
};

/* Connection flags (struct relay_conn.flags); disjoint from the side flags. */
enum {
    RELAY_F_CONNECTING = 1u << 8,
    RELAY_F_CONNECT_ERR = 1u << 9, /* connect() failed at once; reported from the timer */
    RELAY_F_COPY = 1u << 10,       /* never splice (configured, or splice failed) */
    RELAY_F_CLOSING = 1u << 11,
    RELAY_F_QUEUED = 1u << 12, /* on the epoll set's run queue (budget spent) */
};

/* Which sockets relay_close() resets instead of closing. */
enum {
    RELAY_RST_CLIENT = 1u << RELAY_CLIENT,
    RELAY_RST_UPSTREAM = 1u << RELAY_UPSTREAM,
    RELAY_RST_BOTH = RELAY_RST_CLIENT | RELAY_RST_UPSTREAM,
};

/* The epoll set of one loop: alive while a relay on that loop is. */
struct relay_ep {
    struct relay_ep *next; /* relay_eps */
    uv_loop_t *loop;
    uv_poll_t poll; /* the epoll fd, in the loop */
    uv_idle_t idle; /* active while the run queue is not empty */
    int fd;
    int closing; /* close callbacks still to come */
    size_t users;
    struct relay_conn *runq; /* relays that spent their budget, to run next turn */
};

struct relay_side {
    int fd;
    uint32_t flags;
    uint32_t pending; /* bytes read from this side, not yet written to the other */
    uint32_t cap;     /* high watermark for pending (pipe or copy buffer size) */
    uint32_t off;     /* copy path: start of the pending bytes in buf */
    uint32_t moved;   /* bytes carried on the copy path (saturates at RELAY_SPLICE_AFTER) */
    int pipe[2];      /* splice path: -1 while no bytes are in flight for a while */
    char *buf;        /* copy path: NULL while nothing is buffered */
};

struct relay_conn {
    struct relay_conn *next, *prev; /* relay_list */
    struct relay_conn *qnext;       /* ep->runq */
    uv_loop_t *loop;
    struct relay_ep *ep;
    struct relay_side side[2];
    uv_timer_t timer; /* connect timeout, then idle timeout and pipe release */
    uint64_t last_active;
    uint32_t idle_ms;
    uint32_t buffer_size;
    uint32_t flags;
    relay_connected_fn connected;
    relay_done_fn done;
    void *data;
    struct relay_stats stats;
};

static struct relay_conn *relay_list;
static size_t relay_live;
static struct relay_ep *relay_eps;

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

/* ---- the epoll set of a loop ------------------------------------------------ */

static void relay_run(struct relay_conn *c);

static void on_ep_events(uv_poll_t *handle, int status, int events);
static void on_ep_idle(uv_idle_t *idle);

static void on_ep_close(uv_handle_t *handle)
{
    struct relay_ep *ep = handle->data;

    if (--ep->closing > 0)
        return;
    close(ep->fd);
    free(ep);
}

/* The epoll set of loop, created with its first relay.  0 or -errno. */
static int relay_ep_acquire(uv_loop_t *loop, struct relay_ep **ret_ep)
{
    struct relay_ep *ep;
    int r;

    for (ep = relay_eps; ep; ep = ep->next) {
        if (ep->loop == loop) {
            ep->users++;
            *ret_ep = ep;
            return 0;
        }
    }
    ep = calloc(1, sizeof(*ep));
    if (!ep)
        return -ENOMEM;
    ep->fd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->fd < 0) {
        r = -errno;
        free(ep);
        return r;
    }
    r = uv_poll_init(loop, &ep->poll, ep->fd);
    if (r < 0) {
        close(ep->fd);
        free(ep);
        return r;
    }
    ep->poll.data = ep;
    uv_idle_init(loop, &ep->idle);
    ep->idle.data = ep;
    r = uv_poll_start(&ep->poll, UV_READABLE, on_ep_events);
    if (r < 0) {
        /* The handles exist: only their close callbacks may free ep. */
        ep->closing = 2;
        uv_close((uv_handle_t *)&ep->poll, on_ep_close);
        uv_close((uv_handle_t *)&ep->idle, on_ep_close);
        return r;
    }
    ep->loop = loop;
    ep->users = 1;
    ep->next = relay_eps;
    relay_eps = ep;
    *ret_ep = ep;
    return 0;
}

/* One relay less; the set goes with the last one.  The handles close
 * asynchronously, so this may run from any callback. */
static void relay_ep_release(struct relay_ep *ep)
{
    struct relay_ep **pp;

    if (--ep->users > 0)
        return;
    for (pp = &relay_eps; *pp != ep; pp = &(*pp)->next)
        ;
    *pp = ep->next;
    ep->closing = 2;
    uv_close((uv_handle_t *)&ep->poll, on_ep_close);
    uv_close((uv_handle_t *)&ep->idle, on_ep_close);
}

static int relay_ep_add(struct relay_conn *c, int s)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        /* struct relay_conn is pointer-aligned: bit 0 says which side. */
        .data.u64 = (uintptr_t)c | (uintptr_t)s,
    };

    if (epoll_ctl(c->ep->fd, EPOLL_CTL_ADD, c->side[s].fd, &ev) < 0)
        return -errno;
    c->side[s].flags |= RELAY_F_IN_EPOLL;
    return 0;
}

static void relay_ep_del(struct relay_conn *c, int s)
{
    struct epoll_event ev = {0};

    /* Explicitly: close() alone leaves the registration behind while another
     * process (a fork) still holds the socket, and its events would then name
     * a freed relay. */
    if (c->side[s].flags & RELAY_F_IN_EPOLL)
        (void)epoll_ctl(c->ep->fd, EPOLL_CTL_DEL, c->side[s].fd, &ev);
    c->side[s].flags &= ~RELAY_F_IN_EPOLL;
}

/* Run c again on the next turn of the loop (it spent its budget with bytes
 * still waiting, and no new edge will come for them). */
static void relay_defer(struct relay_conn *c)
{
    struct relay_ep *ep = c->ep;

    if (c->flags & RELAY_F_QUEUED)
        return;
    c->flags |= RELAY_F_QUEUED;
    c->qnext = ep->runq;
    ep->runq = c;
    if (!uv_is_active((uv_handle_t *)&ep->idle))
        uv_idle_start(&ep->idle, on_ep_idle);
}

static void relay_undefer(struct relay_conn *c)
{
    struct relay_conn **pp;

    if (!(c->flags & RELAY_F_QUEUED))
        return;
    c->flags &= ~RELAY_F_QUEUED;
    for (pp = &c->ep->runq; *pp; pp = &(*pp)->qnext) {
        if (*pp == c) {
            *pp = c->qnext;
            return;
        }
    }
}

static void on_ep_idle(uv_idle_t *idle)
{
    struct relay_ep *ep = idle->data;
    struct relay_conn *q = ep->runq, *c;

    /* Take the whole queue: what runs out of budget again queues itself for
     * the turn after, behind the epoll events of this one.  Nothing frees a
     * relay before the close callbacks of this turn, so the detached list
     * stays valid while some of it closes. */
    ep->runq = NULL;
    uv_idle_stop(idle);
    for (c = q; c; c = c->qnext)
        c->flags &= ~RELAY_F_QUEUED;
    while (q) {
        c = q;
        q = c->qnext;
        if (!(c->flags & RELAY_F_CLOSING))
            relay_run(c);
    }
}

/* ---- one relay -------------------------------------------------------------- */

static uint32_t relay_copy_cap(const struct relay_conn *c)
{
    return min_u32(c->buffer_size, RELAY_COPY_MAX);
}

static void relay_side_release(struct relay_conn *c, struct relay_side *sd)
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
    /* A direction that carries bytes again starts over on the copy path. */
    sd->flags &= ~(RELAY_F_SPLICE | RELAY_F_TO_SPLICE);
    sd->moved = 0;
    sd->cap = relay_copy_cap(c);
}

static void on_close(uv_handle_t *handle)
{
    struct relay_conn *c = handle->data;

    /* Unlink first so relay_count() inside done no longer counts us. */
    DLIST_UNLINK(relay_list, c, prev, next);
    relay_live--;
    c->done(c->data, &c->stats);
    free(c);
}

/* The one way a relay ends: take both sockets out of the epoll set (before
 * their fds go), close or reset them, free the buffers.  done runs from the
 * timer's close callback. */
static void relay_close(struct relay_conn *c, enum relay_end end, int error, unsigned rst)
{
    if (c->flags & RELAY_F_CLOSING)
        return;
    c->flags |= RELAY_F_CLOSING;
    c->stats.end = end;
    c->stats.error = error;
    relay_undefer(c);
    for (int s = 0; s < 2; s++) {
        struct relay_side *sd = &c->side[s];

        relay_ep_del(c, s);
        if (rst & (1u << s))
            relay_reset_fd(sd->fd);
        else
            close(sd->fd);
        sd->fd = -1;
        relay_side_release(c, sd);
    }
    uv_close((uv_handle_t *)&c->timer, on_close);
    relay_ep_release(c->ep);
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

/* Whether the relay would read side sd now, readiness aside. */
static bool side_can_read(const struct relay_side *sd)
{
    if (sd->flags & RELAY_F_EOF)
        return false;
    /* On the way to the pipe the buffer drains first: bytes read now would
     * have to queue behind it and postpone the switch. */
    if ((sd->flags & RELAY_F_TO_SPLICE) && sd->pending > 0)
        return false;
    return sd->pending < sd->cap;
}

/* Whether direction s has something to do that a syscall could do now. */
static bool relay_has_work(const struct relay_conn *c, int s)
{
    const struct relay_side *src = &c->side[s], *dst = &c->side[!s];

    return ((src->flags & RELAY_F_RD_READY) && side_can_read(src)) ||
           (src->pending > 0 && (dst->flags & RELAY_F_WR_READY));
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

/* Switch the connection to the copy path for good, moving whatever sits in
 * the pipes into buffers so no byte is lost or reordered. */
static int relay_to_copy(struct relay_conn *c)
{
    c->flags |= RELAY_F_COPY;
    for (int s = 0; s < 2; s++) {
        struct relay_side *sd = &c->side[s];
        uint32_t got = 0;

        sd->flags &= ~(RELAY_F_SPLICE | RELAY_F_TO_SPLICE);
        if (sd->pipe[0] < 0)
            continue; /* on the copy path already (cap fits its buffer) */
        if (sd->pending > 0) {
            /* Until it drains, the buffer is as large as the pipe was. */
            sd->buf = malloc(sd->cap);
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
        if (sd->pending == 0)
            sd->cap = relay_copy_cap(c);
    }
    return 0;
}

/* Splice direction s while either end makes progress and the budget lasts.
 * Returns 0, 1 when this connection cannot splice (fall back to copying), or
 * -errno with *ret_bad set to the side whose syscall failed. */
static int pump_splice(struct relay_conn *c, int s, size_t *budget, int *ret_bad)
{
    struct relay_side *src = &c->side[s], *dst = &c->side[!s];
    ssize_t n;

    for (;;) {
        bool moved = false;

        if (src->pending > 0 && (dst->flags & RELAY_F_WR_READY)) {
            n = splice(src->pipe[0], NULL, dst->fd, NULL, src->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                src->pending -= (uint32_t)n;
                relay_account(c, !s, (size_t)n);
                moved = true;
            } else if (n < 0 && errno == EAGAIN) {
                dst->flags &= ~RELAY_F_WR_READY;
            } else if (n < 0 && errno == EINTR) {
                moved = true;
            } else if (n < 0 && errno == EINVAL) {
                return 1;
            } else {
                *ret_bad = !s;
                return n < 0 ? -errno : -EIO;
            }
        }
        if (*budget > 0 && (src->flags & RELAY_F_RD_READY) && side_can_read(src)) {
            if (src->pipe[0] < 0 && relay_pipe_open(c, src) < 0)
                return 1; /* out of fds or pipe quota: copying still works */
            n = splice(src->fd, NULL, src->pipe[1], NULL, src->cap - src->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                src->pending += (uint32_t)n;
                *budget -= (size_t)n < *budget ? (size_t)n : *budget;
                c->last_active = uv_now(c->loop);
                moved = true;
            } else if (n == 0) {
                src->flags |= RELAY_F_EOF;
            } else if (errno == EAGAIN) {
                /* From an empty pipe, EAGAIN means the socket is dry.  With
                 * bytes in the pipe it may instead mean the pipe ran out of
                 * slots (one per skb fragment, so far below cap with small
                 * segments): then keep the readiness and try again after the
                 * destination drained some; no event would come for bytes
                 * that are already there. */
                if (src->pending == 0)
                    src->flags &= ~RELAY_F_RD_READY;
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

/* Bytes read from src on the copy path: count them towards the switch. */
static void relay_note_read(struct relay_conn *c, struct relay_side *src, size_t n, size_t *budget)
{
    src->moved = (uint32_t)min_u64((uint64_t)src->moved + n, RELAY_SPLICE_AFTER);
    if (src->moved == RELAY_SPLICE_AFTER && !(c->flags & RELAY_F_COPY))
        src->flags |= RELAY_F_TO_SPLICE;
    *budget -= n < *budget ? n : *budget;
    c->last_active = uv_now(c->loop);
}

/* Nothing buffered: read into the stack and write straight through; only what
 * the destination refused goes to a heap buffer.  Returns 1 if bytes moved,
 * 0 if not, or -errno with *ret_bad set. */
static int copy_through(struct relay_conn *c, int s, size_t *budget, int *ret_bad)
{
    struct relay_side *src = &c->side[s], *dst = &c->side[!s];
    char stack[RELAY_STACK_BUF];
    ssize_t n, w = 0;

    n = recv(src->fd, stack, min_u32(src->cap, sizeof(stack)), MSG_DONTWAIT);
    if (n == 0) {
        src->flags |= RELAY_F_EOF;
        return 0;
    }
    if (n < 0) {
        if (errno == EINTR)
            return 1;
        if (errno == EAGAIN) {
            src->flags &= ~RELAY_F_RD_READY;
            return 0;
        }
        *ret_bad = s;
        return -errno;
    }
    relay_note_read(c, src, (size_t)n, budget);
    if (dst->flags & RELAY_F_WR_READY) {
        w = send(dst->fd, stack, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN)
                dst->flags &= ~RELAY_F_WR_READY;
            else if (errno != EINTR) {
                *ret_bad = !s;
                return -errno;
            }
            w = 0;
        }
        if (w > 0)
            relay_account(c, !s, (size_t)w);
    }
    if (w < n) {
        src->buf = malloc(src->cap);
        if (!src->buf) {
            *ret_bad = s;
            return -ENOMEM;
        }
        memcpy(src->buf, stack + w, (size_t)(n - w));
        src->off = 0;
        src->pending = (uint32_t)(n - w);
    }
    return 1;
}

/* Same contract as pump_splice() with read/send, plus 2: this direction has
 * carried enough to splice and nothing is buffered (switch now). */
static int pump_copy(struct relay_conn *c, int s, size_t *budget, int *ret_bad)
{
    struct relay_side *src = &c->side[s], *dst = &c->side[!s];
    ssize_t n;
    int r;

    for (;;) {
        bool moved = false;

        if (src->pending > 0 && (dst->flags & RELAY_F_WR_READY)) {
            n = send(dst->fd, src->buf + src->off, src->pending, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                src->pending -= (uint32_t)n;
                src->off = src->pending > 0 ? src->off + (uint32_t)n : 0;
                relay_account(c, !s, (size_t)n);
                moved = true;
            } else if (n < 0 && errno == EAGAIN) {
                dst->flags &= ~RELAY_F_WR_READY;
            } else if (n < 0 && errno == EINTR) {
                moved = true;
            } else {
                *ret_bad = !s;
                return n < 0 ? -errno : -EIO;
            }
        }
        if (src->pending == 0) {
            /* Drained: the buffer goes back; the stack carries on. */
            free(src->buf);
            src->buf = NULL;
            src->off = 0;
            src->cap = relay_copy_cap(c);
            if (src->flags & RELAY_F_TO_SPLICE)
                return 2;
        }
        if (*budget > 0 && (src->flags & RELAY_F_RD_READY) && side_can_read(src)) {
            if (src->pending == 0) {
                r = copy_through(c, s, budget, ret_bad);
                if (r < 0)
                    return r;
                moved = moved || r > 0;
            } else {
                if (src->off + src->pending == src->cap) {
                    memmove(src->buf, src->buf + src->off, src->pending);
                    src->off = 0;
                }
                n = recv(src->fd, src->buf + src->off + src->pending,
                         src->cap - src->off - src->pending, MSG_DONTWAIT);
                if (n > 0) {
                    src->pending += (uint32_t)n;
                    relay_note_read(c, src, (size_t)n, budget);
                    moved = true;
                } else if (n == 0) {
                    src->flags |= RELAY_F_EOF;
                } else if (errno == EAGAIN) {
                    src->flags &= ~RELAY_F_RD_READY;
                } else if (errno == EINTR) {
                    moved = true;
                } else {
                    *ret_bad = s;
                    return -errno;
                }
            }
        }
        if (!moved)
            return 0;
    }
}

/* Move what direction s can move now.  0, or -errno with *ret_bad set. */
static int relay_pump(struct relay_conn *c, int s, size_t *budget, int *ret_bad)
{
    struct relay_side *src = &c->side[s];
    int r;

    if (!(src->flags & RELAY_F_SPLICE)) {
        r = pump_copy(c, s, budget, ret_bad);
        if (r != 2)
            return r;
        src->flags = (src->flags & ~RELAY_F_TO_SPLICE) | RELAY_F_SPLICE;
    }
    r = pump_splice(c, s, budget, ret_bad);
    if (r <= 0)
        return r;
    r = relay_to_copy(c);
    if (r < 0) {
        *ret_bad = s;
        return r;
    }
    return pump_copy(c, s, budget, ret_bad);
}

/* After bytes moved: turn a drained EOF into a FIN on the other side, and end
 * the relay when both directions are done. */
static void relay_settle(struct relay_conn *c)
{
    for (int s = 0; s < 2; s++) {
        struct relay_side *src = &c->side[s], *dst = &c->side[!s];

        if (!(src->flags & RELAY_F_EOF) || src->pending > 0 || (dst->flags & RELAY_F_SHUT_WR))
            continue;
        relay_side_release(c, src);
        /* The last direction to finish: the close() below sends this FIN
         * (both receive queues are empty, EOF was read from both sides, so
         * it is a FIN and not a reset). */
        if (!(src->flags & RELAY_F_SHUT_WR) && shutdown(dst->fd, SHUT_WR) < 0) {
            relay_fail(c, !s, -errno);
            return;
        }
        dst->flags |= RELAY_F_SHUT_WR;
    }
    if ((c->side[RELAY_CLIENT].flags & RELAY_F_SHUT_WR) &&
        (c->side[RELAY_UPSTREAM].flags & RELAY_F_SHUT_WR))
        relay_close(c, RELAY_END_CLOSED, 0, 0);
}

/* Move whatever both directions can move, then settle. */
static void relay_run(struct relay_conn *c)
{
    bool again = false;

    for (int s = 0; s < 2; s++) {
        size_t budget = relay_budget;
        int bad = s;
        int r = relay_pump(c, s, &budget, &bad);

        if (r < 0) {
            relay_fail(c, bad, r);
            return;
        }
        if (budget == 0 && relay_has_work(c, s))
            again = true;
    }
    relay_settle(c);
    if (again && !(c->flags & RELAY_F_CLOSING))
        relay_defer(c);
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
    /* Whatever the client sent meanwhile goes now, without another wakeup. */
    relay_run(c);
}

static void relay_on_event(struct relay_conn *c, int s, uint32_t ev)
{
    struct relay_side *sd = &c->side[s];
    int err;

    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        sd->flags |= RELAY_F_RD_READY;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        sd->flags |= RELAY_F_WR_READY;
    if (c->flags & RELAY_F_CONNECTING) {
        /* Client events only leave their readiness behind until then. */
        if (s == RELAY_UPSTREAM && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            /* A failed connect always shows EPOLLERR or EPOLLHUP. */
            err = (ev & (EPOLLERR | EPOLLHUP)) ? sock_error(sd->fd) : 0;
            if ((ev & (EPOLLERR | EPOLLHUP)) && !err)
                err = ECONNABORTED;
            relay_connect_done(c, -err, RELAY_END_CONNECT_FAILED);
        }
        return;
    }
    if (ev & EPOLLERR) {
        /* Also when nothing would read or write this side (both buffers
         * full): a reset must not wait for the idle timeout. */
        err = sock_error(sd->fd);
        if (err) {
            relay_fail(c, s, -err);
            return;
        }
    }
    relay_run(c);
}

static void on_ep_events(uv_poll_t *handle, int status, int events)
{
    struct relay_ep *ep = handle->data;
    struct epoll_event evs[RELAY_EVENTS];
    int n;

    (void)events;
    if (status < 0) /* libuv stopped the handle; an epoll fd has no error to report */
        uv_poll_start(handle, UV_READABLE, on_ep_events);
    n = epoll_wait(ep->fd, evs, RELAY_EVENTS, 0);
    /* Nothing frees a relay before the close callbacks of this turn, so an
     * event for one that closed earlier in the batch is safe to skip. */
    for (int i = 0; i < n; i++) {
        struct relay_conn *c = (struct relay_conn *)(uintptr_t)(evs[i].data.u64 & ~(uint64_t)1);

        if (!(c->flags & RELAY_F_CLOSING))
            relay_on_event(c, (int)(evs[i].data.u64 & 1), evs[i].events);
    }
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
            relay_side_release(c, sd);
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

/* Whether a handle of loop already watches fd (a uv_tcp_t or uv_poll_t the
 * caller forgot): two readers on one socket would tear the stream apart.
 * libuv has no public call for this; its watcher table is what uv_poll_init()
 * consults. */
static bool loop_watches_fd(const uv_loop_t *loop, int fd)
{
    return (unsigned)fd < loop->nwatchers && loop->watchers[fd] != NULL;
}

/* A new relay for loop with cfg, joined to the loop's epoll set; no sockets
 * yet.  Returns 0 or -errno. */
static int relay_conn_new(uv_loop_t *loop, const struct relay_config *cfg, relay_done_fn done,
                          void *data, struct relay_conn **ret)
{
    struct relay_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->buffer_size = cfg->buffer_size ? (uint32_t)cfg->buffer_size : RELAY_BUFFER_DEFAULT;
    c->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : RELAY_DEFAULT_IDLE_TIMEOUT_MS;
    c->done = done;
    c->data = data;
    if (cfg->no_splice)
        c->flags |= RELAY_F_COPY;
    for (int s = 0; s < 2; s++) {
        c->side[s].pipe[0] = c->side[s].pipe[1] = -1;
        c->side[s].cap = relay_copy_cap(c);
    }
    int r = relay_ep_acquire(loop, &c->ep);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret = c;
    return 0;
}

/* c is complete (its timer armed): count it among the live relays. */
static void relay_conn_link(struct relay_conn *c)
{
    DLIST_PUSH(relay_list, c, prev, next);
    relay_live++;
}

int relay_start(uv_loop_t *loop, const struct relay_config *cfg, int client_fd,
                const struct sockaddr *upstream, socklen_t upstream_len,
                relay_connected_fn connected, relay_done_fn done, void *data)
{
    static const struct relay_config defaults;
    struct relay_conn *c;
    int fd, r, one = 1;

    if (!cfg)
        cfg = &defaults;
    if (!loop || client_fd < 0 || !upstream || !done)
        return -EINVAL;
    if (cfg->buffer_size > RELAY_BUFFER_MAX)
        return -EINVAL;
    if (!((upstream->sa_family == AF_INET && upstream_len >= sizeof(struct sockaddr_in)) ||
          (upstream->sa_family == AF_INET6 && upstream_len >= sizeof(struct sockaddr_in6))))
        return -EAFNOSUPPORT;
    if (loop_watches_fd(loop, client_fd))
        return -EEXIST;
    if (ioctl(client_fd, FIONBIO, &one) < 0)
        return -errno;

    relay_ignore_sigpipe();

    r = relay_conn_new(loop, cfg, done, data, &c);
    if (r < 0)
        return r;
    c->connected = connected;

    fd = socket(upstream->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        r = -errno;
        goto fail_ep;
    }
    c->side[RELAY_CLIENT].fd = client_fd;
    c->side[RELAY_UPSTREAM].fd = fd;
    sock_nodelay(client_fd);
    sock_nodelay(fd);

    /* The client from now on: what it sends while the upstream connects is
     * remembered as readiness and read when the connect completes. */
    r = relay_ep_add(c, RELAY_CLIENT);
    if (r < 0)
        goto fail_sock;
    c->flags |= RELAY_F_CONNECTING;
    if (connect(fd, upstream, upstream_len) == 0 || errno == EINPROGRESS || errno == EINTR) {
        /* Only now: an unconnected socket reports EPOLLHUP. */
        r = relay_ep_add(c, RELAY_UPSTREAM);
        if (r < 0)
            goto fail_client;
    } else {
        /* Refused/unreachable at once: still a reset to the client, from the
         * loop, like every other outcome. */
        c->stats.error = -errno;
        c->flags |= RELAY_F_CONNECT_ERR;
    }
    /* Nothing fails from here on: the timer is the handle whose close
     * callback frees c. */
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer,
                   (c->flags & RELAY_F_CONNECT_ERR) ? 0
                   : cfg->connect_timeout_ms        ? cfg->connect_timeout_ms
                                                    : RELAY_DEFAULT_CONNECT_TIMEOUT_MS,
                   0);
    relay_conn_link(c);
    return 0;

fail_client:
    relay_ep_del(c, RELAY_CLIENT);
fail_sock:
    close(fd);
fail_ep:
    relay_ep_release(c->ep);
    free(c);
    return r;
}

int relay_adopt(uv_loop_t *loop, const struct relay_config *cfg, int client_fd, int upstream_fd,
                relay_done_fn done, void *data)
{
    static const struct relay_config defaults;
    struct relay_conn *c;
    int r, one = 1;

    if (!cfg)
        cfg = &defaults;
    if (!loop || client_fd < 0 || upstream_fd < 0 || client_fd == upstream_fd || !done)
        return -EINVAL;
    if (cfg->buffer_size > RELAY_BUFFER_MAX)
        return -EINVAL;
    if (loop_watches_fd(loop, client_fd) || loop_watches_fd(loop, upstream_fd))
        return -EEXIST;
    if (ioctl(client_fd, FIONBIO, &one) < 0 || ioctl(upstream_fd, FIONBIO, &one) < 0)
        return -errno;

    relay_ignore_sigpipe();

    r = relay_conn_new(loop, cfg, done, data, &c);
    if (r < 0)
        return r;
    c->side[RELAY_CLIENT].fd = client_fd;
    c->side[RELAY_UPSTREAM].fd = upstream_fd;
    sock_nodelay(client_fd);
    sock_nodelay(upstream_fd);
    /* Both sockets may already hold bytes: start out ready, and let the
     * first run find out (an edge-triggered set reports only changes). */
    for (int s = 0; s < 2; s++) {
        r = relay_ep_add(c, s);
        if (r < 0)
            goto fail_ep;
        c->side[s].flags |= RELAY_F_RD_READY | RELAY_F_WR_READY;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->last_active = uv_now(loop);
    uv_timer_start(&c->timer, on_timer, c->idle_ms, 0);
    relay_conn_link(c);
    relay_run(c);
    return 0;

fail_ep:
    for (int s = 0; s < 2; s++)
        if (c->side[s].flags & RELAY_F_IN_EPOLL)
            relay_ep_del(c, s);
    relay_ep_release(c->ep);
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
