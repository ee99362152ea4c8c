/*
 * test_relay: the relay against real TCP sockets on 127.0.0.1 and ::1.
 *
 * The relay runs on a uv loop in the test thread; the client and the upstream
 * server are "peers" in their own threads with plain non-blocking sockets and
 * poll(2), each following a small script (send N pattern bytes, shut down,
 * reset after M bytes...).  Every test ends with uv_loop_close() == 0, so a
 * leaked handle fails it, and checks that done ran exactly once per relay.
 *
 * relay.c is included (h2o style) to reach its state for the backpressure and
 * resource checks, and so that splice(2), pipe2(2), recv(2) and send(2) can be
 * wrapped: to force the fallback to the copy path, to fake a pipe out of
 * slots, to count pipes and the bytes of the copy path, to see a direction
 * drain its copy buffer before it switches to splice.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

/* splice(2) wrapper: counts calls, and from call number splice_fail_at on (0:
 * never) fails with EINVAL like a socket that cannot splice, either reading
 * the socket or (splice_fail_out) writing it, when bytes sit in the pipe. */
static unsigned long splice_calls;
static unsigned long splice_fail_at;
static bool splice_fail_out;
static bool splice_failed;
static unsigned long splice_calls_after_fail;
/* > 0: a pipe holding this many bytes refuses more, as a real one does when
 * small segments have used up its slots. */
static int splice_pipe_limit;

static ssize_t test_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                           unsigned int flags)
{
    struct stat st;

    splice_calls++;
    if (splice_failed) {
        splice_calls_after_fail++;
    } else if (splice_fail_at && splice_calls >= splice_fail_at && fstat(fd_in, &st) == 0 &&
               S_ISFIFO(st.st_mode) == splice_fail_out) {
        splice_failed = true;
    }
    if (splice_failed) {
        errno = EINVAL;
        return -1;
    }
    if (splice_pipe_limit) {
        int queued = 0;

        if (fstat(fd_out, &st) == 0 && S_ISFIFO(st.st_mode) &&
            ioctl(fd_out, FIONREAD, &queued) == 0 && queued >= splice_pipe_limit) {
            errno = EAGAIN;
            return -1;
        }
    }
    return splice(fd_in, off_in, fd_out, off_out, len, flags);
}

static unsigned long pipe2_calls;

static int test_pipe2(int fds[2], int flags)
{
    pipe2_calls++;
    return pipe2(fds, flags);
}

/* recv(2) wrapper: bytes the relay read on the copy path, by the fd they came
 * from (copy_fd[s], set by the test: the relay's sockets). */
static int copy_fd[2] = {-1, -1};
static size_t copy_bytes[2];

static ssize_t test_recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = recv(fd, buf, len, flags);

    for (int s = 0; s < 2; s++) {
        if (n > 0 && fd == copy_fd[s])
            copy_bytes[s] += (size_t)n;
    }
    return n;
}

/* send(2) wrapper, defined below (it needs the relay's state): notes when a
 * direction drains its copy buffer on the way to the pipe. */
static ssize_t test_send(int fd, const void *buf, size_t len, int flags);
static bool switch_gated[2];

#define splice test_splice
#define pipe2 test_pipe2
#define recv test_recv
#define send test_send
#include "relay.c"
#undef send
#undef recv
#undef pipe2
#undef splice

static ssize_t test_send(int fd, const void *buf, size_t len, int flags)
{
    for (int s = 0; s < 2; s++) {
        const struct relay_side *src = relay_list ? &relay_list->side[s] : NULL;

        if (src && fd == copy_fd[!s] && (src->flags & RELAY_F_TO_SPLICE) && src->pending > 0)
            switch_gated[s] = true;
    }
    return send(fd, buf, len, flags);
}

#define MIB (1024u * 1024)

/* Unread bytes in a socket's receive queue. */
static bool sock_has_data(int fd)
{
    int n = 0;

    return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}
#define PEER_TIMEOUT_MS 20000
#define WATCHDOG_MS 60000

/* ---- byte pattern and checksum ------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Bytes [off, off+len) of the stream named by seed. */
static void pattern_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t len)
{
    uint64_t word = mix64(seed ^ (off >> 3));

    for (size_t i = 0; i < len; i++, off++) {
        if ((off & 7) == 0)
            word = mix64(seed ^ (off >> 3));
        buf[i] = (unsigned char)(word >> (8 * (off & 7)));
    }
}

#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t pattern_hash(uint64_t seed, size_t len)
{
    static unsigned char buf[64 * 1024];
    uint64_t h = FNV_INIT;

    for (size_t off = 0; off < len; off += sizeof(buf)) {
        size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);

        pattern_fill(seed, off, buf, n);
        h = fnv1a(h, buf, n);
    }
    return h;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- peers ----------------------------------------------------------------- */

struct peer {
    int fd;
    int listen_fd; /* >= 0: accept the connection from here first */
    /* script */
    size_t send_len;
    uint64_t seed;
    size_t send_after_recv;  /* start sending once this many bytes arrived */
    bool send_after_eof;     /* start sending once the peer's FIN arrived */
    bool shut_after_send;    /* shutdown(SHUT_WR) when everything is sent */
    size_t reset_after_recv; /* > 0: SO_LINGER 0 close after this many bytes (and the sending) */
    int trickle_ms;          /* > 0: one byte per trickle_ms */
    size_t send_chunk;       /* > 0: at most this many bytes per send */
    size_t chunk_until;      /* > 0: send_chunk only applies below this offset */
    size_t pause_at;         /* with pause_ms: stop sending at this offset for a while */
    int pause_ms;
    int recv_delay_ms; /* > 0: read nothing for this long after the start */
    int recv_pace_us;  /* > 0: a slow reader, 16 KiB per recv and a sleep after it */
    int stall_ms;      /* > 0: report a send stall of this long, then wait for gate */
    void (*on_stall)(struct peer *p);
    sem_t *gate;        /* waited for after accept (server) or after the stall (client) */
    atomic_int *notify; /* incremented once when the first byte arrived */
    /* results */
    size_t sent, received, stalled_at;
    uint64_t hash;
    int recv_err; /* 0: clean EOF */
    int send_err;
    bool timed_out, did_reset, got_eof;
    pthread_t thread;
};

static void peer_init(struct peer *p)
{
    memset(p, 0, sizeof(*p));
    p->fd = -1;
    p->listen_fd = -1;
    p->hash = FNV_INIT;
}

static bool peer_may_send(const struct peer *p)
{
    if (p->send_after_eof && !p->got_eof)
        return false;
    return p->received >= p->send_after_recv;
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    unsigned char *buf = malloc(64 * 1024);
    bool rdone = false, wdone = false, gated = false, paused = false;
    uint64_t next_trickle = 0, read_from;

    if (p->listen_fd >= 0) {
        struct pollfd pfd = {.fd = p->listen_fd, .events = POLLIN};

        if (poll(&pfd, 1, PEER_TIMEOUT_MS) != 1) {
            p->timed_out = true;
            goto out;
        }
        p->fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (p->fd < 0) {
            p->recv_err = errno;
            goto out;
        }
        if (p->gate)
            sem_wait(p->gate);
    }
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
    read_from = now_ms() + (uint64_t)p->recv_delay_ms;

    for (;;) {
        struct pollfd pfd = {.fd = p->fd};
        int timeout = PEER_TIMEOUT_MS;
        bool may_send = !wdone && peer_may_send(p);
        bool read_later = false;
        int r;

        if (may_send && p->sent == p->send_len) {
            if (p->shut_after_send)
                shutdown(p->fd, SHUT_WR);
            wdone = true;
            may_send = false;
        }
        if (p->reset_after_recv && p->received >= p->reset_after_recv && wdone) {
            relay_reset_fd(p->fd);
            p->fd = -1;
            p->did_reset = true;
            break;
        }
        if (rdone && wdone)
            break;
        if (!rdone && p->recv_delay_ms) {
            uint64_t t = now_ms();

            read_later = t < read_from;
            if (read_later)
                timeout = (int)(read_from - t);
        }
        if (!rdone && !read_later)
            pfd.events |= POLLIN;
        if (may_send && p->trickle_ms) {
            uint64_t t = now_ms();

            if (t >= next_trickle)
                pfd.events |= POLLOUT;
            else
                timeout = (int)(next_trickle - t);
        } else if (may_send) {
            pfd.events |= POLLOUT;
            if (p->stall_ms && !gated)
                timeout = p->stall_ms;
        }
        if (pfd.events == 0 && !(may_send && p->trickle_ms) && !read_later) {
            /* Waiting for bytes that can no longer come. */
            p->send_err = EPROTO;
            break;
        }
        r = poll(&pfd, 1, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            if ((may_send && p->trickle_ms) || read_later)
                continue;
            if (may_send && p->stall_ms && !gated) {
                /* The relay stopped taking bytes: let the test look. */
                gated = true;
                p->stalled_at = p->sent;
                p->on_stall(p);
                sem_wait(p->gate);
                continue;
            }
            p->timed_out = true;
            break;
        }
        if (!rdone && (pfd.revents & (POLLIN | POLLERR | POLLHUP))) {
            ssize_t n = recv(p->fd, buf, p->recv_pace_us ? 16 * 1024 : 64 * 1024, 0);

            if (p->recv_pace_us)
                usleep((useconds_t)p->recv_pace_us);

            if (n > 0) {
                if (p->received == 0 && p->notify)
                    atomic_fetch_add(p->notify, 1);
                p->hash = fnv1a(p->hash, buf, (size_t)n);
                p->received += (size_t)n;
            } else if (n == 0) {
                rdone = true;
                p->got_eof = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                /* A reset ends the script: nothing more can be sent either. */
                p->recv_err = errno;
                rdone = wdone = true;
            }
        }
        if (!wdone && (pfd.revents & POLLOUT)) {
            size_t n = p->send_len - p->sent;
            ssize_t w;

            if (n > 64 * 1024)
                n = 64 * 1024;
            if (p->send_chunk && n > p->send_chunk && (!p->chunk_until || p->sent < p->chunk_until))
                n = p->send_chunk;
            if (p->pause_ms && !paused) {
                if (p->sent == p->pause_at) {
                    usleep((useconds_t)p->pause_ms * 1000);
                    paused = true;
                } else if (n > p->pause_at - p->sent) {
                    n = p->pause_at - p->sent;
                }
            }
            if (p->trickle_ms)
                n = 1;
            pattern_fill(p->seed, p->sent, buf, n);
            w = send(p->fd, buf, n, MSG_NOSIGNAL);
            if (w > 0) {
                p->sent += (size_t)w;
                next_trickle = now_ms() + (uint64_t)p->trickle_ms;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                p->send_err = errno;
                wdone = true;
            }
        }
    }
out:
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    free(buf);
    return NULL;
}

static void peer_start(struct peer *p)
{
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
    assert_int_equal(pthread_join(p->thread, NULL), 0);
}

/* ---- fixture -------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    uv_timer_t watchdog;
    int family;
    int proxy_lfd;  /* test clients connect here; accepted sockets go to the relay */
    int server_lfd; /* the upstream */
    struct sockaddr_storage server_sa;
    socklen_t server_len;
    int client_buf;   /* run_one(): socket buffers of the test client */
    int relay_sndbuf; /* run_one(): pin SO_SNDBUF of the relay's sockets (no autotuning) */
    /* callbacks */
    int done_calls;
    int connected_calls;
    int connected_status;
    int ends[RELAY_END_MAX];
    struct relay_stats stats;
    uint64_t start_ms, done_ms;
};

static int listen_on(int family, int backlog, int rcvbuf, struct sockaddr_storage *ret_sa,
                     socklen_t *ret_len)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&sa;

        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;

        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        len = sizeof(*in6);
    }
    if (rcvbuf)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    if (backlog >= 0)
        assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    if (ret_sa) {
        *ret_sa = sa;
        *ret_len = len;
    }
    return fd;
}

/* A connected pair through fx->proxy_lfd: *ret_client is the test's end
 * (bufsize: its SO_SNDBUF and SO_RCVBUF, 0 = default), *ret_accepted the one
 * handed to the relay. */
static void client_pair(struct fx *fx, int bufsize, int *ret_client, int *ret_accepted)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int c = socket(fx->family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(c >= 0);
    if (bufsize) {
        assert_int_equal(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize)), 0);
        assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize)), 0);
    }
    assert_int_equal(getsockname(fx->proxy_lfd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, len), 0);
    *ret_accepted = accept4(fx->proxy_lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*ret_accepted >= 0);
    *ret_client = c;
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "watchdog: relay test hung\n");
    /* What the relays were waiting for, to tell a lost wake-up from a peer
     * that stopped. */
    for (const struct relay_conn *c = relay_list; c; c = c->next) {
        fprintf(stderr, "relay flags %#x queued %d\n", c->flags, !!(c->flags & RELAY_F_QUEUED));
        for (int s = 0; s < 2; s++) {
            const struct relay_side *sd = &c->side[s];
            int pending_in_socket = 0, unsent = 0;
            ioctl(sd->fd, FIONREAD, &pending_in_socket);
            ioctl(sd->fd, SIOCOUTQ, &unsent);
            /* What the kernel says now: POLLOUT with the write flag clear
             * (or POLLIN with the read flag clear) is an edge the relay
             * never got. */
            struct pollfd pfd = {.fd = sd->fd, .events = POLLIN | POLLOUT | POLLRDHUP};
            poll(&pfd, 1, 0);
            fprintf(stderr,
                    "  side %d fd %d flags %#x pending %u cap %u off %u moved %u pipe %d buf %s "
                    "socket holds %d unsent %d poll %#x\n",
                    s, sd->fd, sd->flags, sd->pending, sd->cap, sd->off, sd->moved, sd->pipe[0],
                    sd->buf ? "yes" : "no", pending_in_socket, unsent, (unsigned)pfd.revents);
        }
    }
    abort();
}

static void fx_init(struct fx *fx, int family, int proxy_rcvbuf, int server_rcvbuf)
{
    memset(fx, 0, sizeof(*fx));
    fx->family = family;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->watchdog);
    uv_timer_start(&fx->watchdog, on_watchdog, WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *)&fx->watchdog);
    fx->proxy_lfd = listen_on(family, 128, proxy_rcvbuf, NULL, NULL);
    fx->server_lfd = listen_on(family, 128, server_rcvbuf, &fx->server_sa, &fx->server_len);
    splice_calls = splice_fail_at = splice_calls_after_fail = 0;
    splice_fail_out = splice_failed = false;
    splice_pipe_limit = 0;
    pipe2_calls = 0;
    copy_fd[0] = copy_fd[1] = -1;
    copy_bytes[0] = copy_bytes[1] = 0;
    switch_gated[0] = switch_gated[1] = false;
    relay_pipe_idle_ms = 5000;
    relay_budget = RELAY_BUDGET;
}

static void fx_fini(struct fx *fx)
{
    close(fx->proxy_lfd);
    close(fx->server_lfd);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(relay_count(), 0);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void on_connected(void *data, int status)
{
    struct fx *fx = data;

    fx->connected_calls++;
    fx->connected_status = status;
}

static void on_done(void *data, const struct relay_stats *st)
{
    struct fx *fx = data;

    fx->done_calls++;
    fx->stats = *st;
    assert_true(st->end < RELAY_END_MAX);
    fx->ends[st->end]++;
    fx->done_ms = now_ms();
}

static void fx_start(struct fx *fx, const struct relay_config *cfg, int accepted,
                     const struct sockaddr_storage *sa, socklen_t len)
{
    fx->start_ms = now_ms();
    assert_int_equal(relay_start(&fx->loop, cfg, accepted, (const struct sockaddr *)sa, len,
                                 on_connected, on_done, fx),
                     0);
}

/* One relay from a fresh client pair to the fixture's server; runs the loop
 * until the relay is done and joins the peers. */
static void run_one(struct fx *fx, const struct relay_config *cfg, struct peer *client,
                    struct peer *server)
{
    int accepted;

    client_pair(fx, fx->client_buf, &client->fd, &accepted);
    fx_start(fx, cfg, accepted, &fx->server_sa, fx->server_len);
    for (int s = 0; s < 2; s++)
        copy_fd[s] = relay_list->side[s].fd;
    if (fx->relay_sndbuf) {
        for (int s = 0; s < 2; s++)
            assert_int_equal(setsockopt(relay_list->side[s].fd, SOL_SOCKET, SO_SNDBUF,
                                        &fx->relay_sndbuf, sizeof(fx->relay_sndbuf)),
                             0);
    }
    peer_start(client);
    if (server) {
        server->listen_fd = fx->server_lfd;
        peer_start(server);
    }
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    peer_join(client);
    if (server)
        peer_join(server);
    assert_int_equal(fx->done_calls, 1);
    assert_false(client->timed_out);
    if (server)
        assert_false(server->timed_out);
}

static void check_path(bool no_splice)
{
    if (no_splice)
        assert_int_equal(splice_calls, 0);
    else
        assert_true(splice_calls > 0);
}

/* ---- transfer --------------------------------------------------------------- */

static void do_transfer(int family, const struct relay_config *cfg, size_t len)
{
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, family, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = server.send_len = len;
    client.seed = 1;
    server.seed = 2;
    client.shut_after_send = server.shut_after_send = true;
    run_one(&fx, cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(fx.stats.error, 0);
    assert_int_equal(fx.connected_calls, 1);
    assert_int_equal(fx.connected_status, 0);
    assert_int_equal(fx.stats.bytes_to_upstream, len);
    assert_int_equal(fx.stats.bytes_to_client, len);
    assert_int_equal(server.recv_err, 0);
    assert_int_equal(client.recv_err, 0);
    assert_int_equal(server.received, len);
    assert_int_equal(client.received, len);
    assert_true(server.hash == pattern_hash(1, len));
    assert_true(client.hash == pattern_hash(2, len));
    check_path(cfg->no_splice);
    fx_fini(&fx);
}

/* relay_adopt: two sockets someone else connected and spoke on; bytes
 * already waiting on both move first, then bulk both ways, half-close. */
static void do_adopt(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct peer client, server;
    int accepted, up, srv;
    const size_t len = 3 << 20;

    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client_pair(&fx, 0, &client.fd, &accepted);
    up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(up >= 0);
    assert_int_equal(connect(up, (struct sockaddr *)&fx.server_sa, fx.server_len), 0);
    srv = accept4(fx.server_lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(srv >= 0);
    server.fd = srv;
    client.send_len = server.send_len = len;
    client.seed = 11;
    server.seed = 12;
    client.shut_after_send = server.shut_after_send = true;
    /* Bytes in flight before the relay exists (an edge-triggered set would
     * never report them again). */
    client.send_chunk = server.send_chunk = 1000;
    client.chunk_until = server.chunk_until = 1000;
    assert_int_equal(relay_adopt(&fx.loop, &cfg, accepted, accepted, on_done, &fx), -EINVAL);
    peer_start(&client);
    peer_start(&server);
    usleep(50 * 1000);
    assert_int_equal(relay_adopt(&fx.loop, &cfg, accepted, up, on_done, &fx), 0);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);
    peer_join(&server);
    assert_int_equal(fx.done_calls, 1);
    assert_int_equal(fx.connected_calls, 0);
    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(fx.stats.bytes_to_upstream, len);
    assert_int_equal(fx.stats.bytes_to_client, len);
    assert_int_equal(server.received, len);
    assert_int_equal(client.received, len);
    assert_true(server.hash == pattern_hash(11, len));
    assert_true(client.hash == pattern_hash(12, len));
    check_path(no_splice);
    fx_fini(&fx);
}

static void test_adopt_splice(void **state)
{
    (void)state;
    do_adopt(false);
}

static void test_adopt_copy(void **state)
{
    (void)state;
    do_adopt(true);
}

static void test_transfer_splice_v4(void **state)
{
    struct relay_config cfg = {0};

    (void)state;
    do_transfer(AF_INET, &cfg, 16 * MIB);
}

static void test_transfer_copy_v4(void **state)
{
    struct relay_config cfg = {.no_splice = true};

    (void)state;
    do_transfer(AF_INET, &cfg, 16 * MIB);
}

static void test_transfer_splice_v6(void **state)
{
    struct relay_config cfg = {0};

    (void)state;
    do_transfer(AF_INET6, &cfg, 16 * MIB);
}

static void test_transfer_copy_v6(void **state)
{
    struct relay_config cfg = {.no_splice = true};

    (void)state;
    do_transfer(AF_INET6, &cfg, 16 * MIB);
}

/* Odd sizes: a 1 MiB pipe (F_SETPIPE_SZ), a tiny copy buffer that forces the
 * compaction and many partial writes. */
static void test_transfer_buffer_sizes(void **state)
{
    struct relay_config big = {.buffer_size = MIB};
    struct relay_config tiny = {.buffer_size = 1000, .no_splice = true};
    struct relay_config tiny_pipe = {.buffer_size = 1000};

    (void)state;
    do_transfer(AF_INET, &big, 16 * MIB);
    do_transfer(AF_INET, &tiny, 2 * MIB);
    do_transfer(AF_INET, &tiny_pipe, 2 * MIB);
}

/* splice failing with EINVAL mid-stream: the bytes already in the pipes move to
 * buffers and the stream stays intact on the copy path. */
static void do_splice_fallback(bool fail_out)
{
    struct relay_config cfg = {0};
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, AF_INET, 0, 0);
    splice_fail_at = 301;
    splice_fail_out = fail_out;
    peer_init(&client);
    peer_init(&server);
    client.send_len = server.send_len = 16 * MIB;
    client.seed = 3;
    server.seed = 4;
    client.shut_after_send = server.shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_true(splice_failed);
    assert_int_equal(splice_calls_after_fail, 0);
    assert_int_equal(server.received, 16 * MIB);
    assert_int_equal(client.received, 16 * MIB);
    assert_true(server.hash == pattern_hash(3, 16 * MIB));
    assert_true(client.hash == pattern_hash(4, 16 * MIB));
    fx_fini(&fx);
}

static void test_splice_fallback_in(void **state)
{
    (void)state;
    do_splice_fallback(false);
}

static void test_splice_fallback_out(void **state)
{
    (void)state;
    do_splice_fallback(true);
}

/* ---- half-close ------------------------------------------------------------- */

static void do_half_close(bool no_splice, bool client_first)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct peer client, server;
    struct peer *first, *second;

    /* Small buffers and a slow reader keep bytes in the relay when the FIN
     * arrives, so the FIN must wait for them. */
    fx_init(&fx, AF_INET, 0, 16 * 1024);
    fx.client_buf = 16 * 1024;
    fx.relay_sndbuf = 16 * 1024;
    peer_init(&client);
    peer_init(&server);
    first = client_first ? &client : &server;
    second = client_first ? &server : &client;
    first->send_len = 300000;
    first->seed = 5;
    first->shut_after_send = true;
    second->recv_pace_us = 500;
    /* The second side answers only after the FIN, so its reply travels over a
     * connection whose other direction is already closed. */
    second->send_len = 700000;
    second->seed = 6;
    second->send_after_eof = true;
    second->shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(second->received, 300000);
    assert_true(second->hash == pattern_hash(5, 300000));
    assert_int_equal(first->received, 700000);
    assert_true(first->hash == pattern_hash(6, 700000));
    assert_int_equal(first->recv_err, 0);
    assert_int_equal(second->recv_err, 0);
    assert_int_equal(first->send_err, 0);
    assert_int_equal(second->send_err, 0);
    assert_int_equal(fx.stats.bytes_to_upstream, client_first ? 300000 : 700000);
    assert_int_equal(fx.stats.bytes_to_client, client_first ? 700000 : 300000);
    check_path(no_splice);
    fx_fini(&fx);
}

static void test_half_close_client_splice(void **state)
{
    (void)state;
    do_half_close(false, true);
}

static void test_half_close_client_copy(void **state)
{
    (void)state;
    do_half_close(true, true);
}

static void test_half_close_server_splice(void **state)
{
    (void)state;
    do_half_close(false, false);
}

static void test_half_close_server_copy(void **state)
{
    (void)state;
    do_half_close(true, false);
}

/* ---- connect failures --------------------------------------------------------- */

static void do_refused(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct peer client;
    struct sockaddr_storage sa;
    socklen_t len;
    int accepted, closed_fd;

    fx_init(&fx, AF_INET, 0, 0);
    /* Bound but not listening: the port stays ours and answers SYN with RST. */
    closed_fd = listen_on(AF_INET, -1, 0, &sa, &len);
    peer_init(&client);
    /* Sends nothing: with unread bytes even a plain close() would be a RST. */
    client_pair(&fx, 0, &client.fd, &accepted);
    fx_start(&fx, &cfg, accepted, &sa, len);
    peer_start(&client);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);
    close(closed_fd);

    assert_int_equal(fx.done_calls, 1);
    assert_int_equal(fx.connected_calls, 1);
    assert_int_equal(fx.connected_status, -ECONNREFUSED);
    assert_int_equal(fx.stats.end, RELAY_END_CONNECT_FAILED);
    assert_int_equal(fx.stats.error, -ECONNREFUSED);
    assert_int_equal(fx.stats.bytes_to_upstream, 0);
    /* A reset, not a clean EOF: the client must not think the server answered. */
    assert_int_equal(client.recv_err, ECONNRESET);
    assert_int_equal(client.received, 0);
    fx_fini(&fx);
}

static void test_refused_splice(void **state)
{
    (void)state;
    do_refused(false);
}

static void test_refused_copy(void **state)
{
    (void)state;
    do_refused(true);
}

/* A connect that fails inside connect(2) itself is still reported from the
 * loop.  TCP refuses a broadcast destination before sending anything. */
static void test_connect_immediate_error(void **state)
{
    struct fx fx;
    struct peer client;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
    int accepted;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    client_pair(&fx, 0, &client.fd, &accepted);
    fx.start_ms = now_ms();
    assert_int_equal(relay_start(&fx.loop, NULL, accepted, (struct sockaddr *)&sa, sizeof(sa),
                                 on_connected, on_done, &fx),
                     0);
    /* Nothing synchronous: both callbacks come from the loop. */
    assert_int_equal(fx.connected_calls, 0);
    assert_int_equal(fx.done_calls, 0);
    peer_start(&client);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);

    assert_int_equal(fx.done_calls, 1);
    assert_int_equal(fx.connected_calls, 1);
    assert_true(fx.connected_status < 0);
    assert_int_equal(fx.stats.end, RELAY_END_CONNECT_FAILED);
    assert_int_equal(fx.stats.error, fx.connected_status);
    assert_int_equal(client.recv_err, ECONNRESET);
    fx_fini(&fx);
}

/* A listener with backlog 0 whose accept queue holds one connection drops
 * further SYNs (Linux, tcp_abort_on_overflow=0): a connect that never
 * completes, on loopback, deterministically. */
static int full_listener(int family, struct sockaddr_storage *sa, socklen_t *len, int *ret_filler)
{
    int lfd = listen_on(family, 0, 0, sa, len);
    int filler = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(filler >= 0);
    assert_int_equal(connect(filler, (struct sockaddr *)sa, *len), 0);
    *ret_filler = filler;
    return lfd;
}

static void do_connect_timeout(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice, .connect_timeout_ms = 300};
    struct fx fx;
    struct peer client;
    struct sockaddr_storage sa;
    socklen_t len;
    int accepted, lfd, filler;
    uint64_t elapsed;

    fx_init(&fx, AF_INET, 0, 0);
    lfd = full_listener(AF_INET, &sa, &len, &filler);
    peer_init(&client);
    /* Sends nothing, so only a real reset makes ECONNRESET. */
    client_pair(&fx, 0, &client.fd, &accepted);
    fx_start(&fx, &cfg, accepted, &sa, len);
    peer_start(&client);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);
    close(filler);
    close(lfd);
    elapsed = fx.done_ms - fx.start_ms;

    assert_int_equal(fx.done_calls, 1);
    assert_int_equal(fx.connected_calls, 1);
    assert_int_equal(fx.connected_status, -ETIMEDOUT);
    assert_int_equal(fx.stats.end, RELAY_END_CONNECT_TIMEOUT);
    assert_int_equal(fx.stats.error, -ETIMEDOUT);
    assert_int_equal(client.recv_err, ECONNRESET);
    assert_true(elapsed >= 290);
    assert_true(elapsed < 3000);
    fx_fini(&fx);
}

static void test_connect_timeout_splice(void **state)
{
    (void)state;
    do_connect_timeout(false);
}

static void test_connect_timeout_copy(void **state)
{
    (void)state;
    do_connect_timeout(true);
}

/* ---- resets ------------------------------------------------------------------- */

static void do_server_reset(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = 1;
    client.seed = 9;
    server.reset_after_recv = 1;
    run_one(&fx, &cfg, &client, &server);

    assert_true(server.did_reset);
    assert_int_equal(fx.stats.end, RELAY_END_RESET_BY_UPSTREAM);
    assert_int_equal(fx.stats.error, 0);
    assert_int_equal(fx.stats.bytes_to_upstream, 1);
    assert_int_equal(client.recv_err, ECONNRESET);
    fx_fini(&fx);
}

static void test_server_reset_splice(void **state)
{
    (void)state;
    do_server_reset(false);
}

static void test_server_reset_copy(void **state)
{
    (void)state;
    do_server_reset(true);
}

static void do_client_reset(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = 1;
    client.seed = 10;
    client.reset_after_recv = 1;
    server.send_after_recv = 1;
    server.send_len = 1;
    server.seed = 11;
    run_one(&fx, &cfg, &client, &server);

    assert_true(client.did_reset);
    assert_int_equal(fx.stats.end, RELAY_END_RESET_BY_CLIENT);
    assert_int_equal(fx.stats.bytes_to_upstream, 1);
    assert_int_equal(fx.stats.bytes_to_client, 1);
    assert_int_equal(server.received, 1);
    assert_int_equal(server.recv_err, ECONNRESET);
    fx_fini(&fx);
}

static void test_client_reset_splice(void **state)
{
    (void)state;
    do_client_reset(false);
}

static void test_client_reset_copy(void **state)
{
    (void)state;
    do_client_reset(true);
}

/* ---- idle timeout -------------------------------------------------------------- */

static void do_idle_timeout(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice, .idle_timeout_ms = 200};
    struct fx fx;
    struct peer client, server;
    uint64_t elapsed;

    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = 1;
    client.seed = 12;
    server.send_after_recv = 1;
    server.send_len = 1;
    server.seed = 13;
    run_one(&fx, &cfg, &client, &server);
    elapsed = fx.done_ms - fx.start_ms;

    assert_int_equal(fx.stats.end, RELAY_END_IDLE_TIMEOUT);
    assert_int_equal(client.received, 1);
    assert_int_equal(server.received, 1);
    assert_int_equal(client.recv_err, ECONNRESET);
    assert_int_equal(server.recv_err, ECONNRESET);
    assert_true(elapsed >= 195);
    assert_true(elapsed < 2000);
    fx_fini(&fx);
}

static void test_idle_timeout_splice(void **state)
{
    (void)state;
    do_idle_timeout(false);
}

static void test_idle_timeout_copy(void **state)
{
    (void)state;
    do_idle_timeout(true);
}

/* Traffic slower than the idle timeout but never idle for that long keeps the
 * relay alive past several timer periods (the lazy re-arm). */
static void test_idle_activity_keeps_alive(void **state)
{
    struct relay_config cfg = {.idle_timeout_ms = 300};
    struct fx fx;
    struct peer client, server;

    (void)state;
    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = 9;
    client.seed = 14;
    client.trickle_ms = 100;
    client.shut_after_send = true;
    server.send_after_eof = true;
    server.shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(server.received, 9);
    assert_true(server.hash == pattern_hash(14, 9));
    assert_int_equal(client.recv_err, 0);
    assert_true(fx.done_ms - fx.start_ms >= 800);
    fx_fini(&fx);
}

/* A pipe that stayed empty for relay_pipe_idle_ms is closed, and the
 * direction starts over on the copy path: the next burst opens a new pipe
 * only once it is bulk again. */
struct pipe_check {
    uv_timer_t timer;
    bool seen;
    int pipe_fd; /* client direction, during the pause */
    bool buf;
    uint32_t flags;
};

static void on_pipe_check(uv_timer_t *t)
{
    struct pipe_check *pc = t->data;

    if (relay_list) {
        pc->seen = true;
        pc->pipe_fd = relay_list->side[RELAY_CLIENT].pipe[0];
        pc->buf = relay_list->side[RELAY_CLIENT].buf != NULL;
        pc->flags = relay_list->side[RELAY_CLIENT].flags;
    }
    uv_close((uv_handle_t *)t, NULL);
}

static void test_idle_pipe_release(void **state)
{
    const size_t burst = 2 * RELAY_SPLICE_AFTER;
    struct relay_config cfg = {0};
    struct pipe_check pc = {0};
    struct fx fx;
    struct peer client, server;

    (void)state;
    fx_init(&fx, AF_INET, 0, 0);
    relay_pipe_idle_ms = 50;
    uv_timer_init(&fx.loop, &pc.timer);
    pc.timer.data = &pc;
    uv_timer_start(&pc.timer, on_pipe_check, 400, 0);
    peer_init(&client);
    peer_init(&server);
    /* A bulk burst, a pause well over the pipe's idle time, a second burst. */
    client.send_len = 2 * burst;
    client.seed = 16;
    client.pause_at = burst;
    client.pause_ms = 700;
    client.shut_after_send = true;
    server.send_after_eof = true;
    server.shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(server.received, 2 * burst);
    assert_true(server.hash == pattern_hash(16, 2 * burst));
    assert_int_equal(client.recv_err, 0);
    /* In the pause: no pipe, no buffer, back on the copy path. */
    assert_true(pc.seen);
    assert_int_equal(pc.pipe_fd, -1);
    assert_false(pc.buf);
    assert_false(pc.flags & (RELAY_F_SPLICE | RELAY_F_TO_SPLICE));
    /* One pipe per burst; the server's FIN needed none.  Each burst started
     * on the copy path. */
    assert_int_equal(pipe2_calls, 2);
    assert_true(copy_bytes[RELAY_CLIENT] >= 2 * RELAY_SPLICE_AFTER);
    assert_true(copy_bytes[RELAY_CLIENT] < 2 * burst);
    assert_int_equal(copy_bytes[RELAY_UPSTREAM], 0);
    fx_fini(&fx);
}

/* ---- copy -> splice switch ------------------------------------------------------ */

/* Socket buffers (pinned, no autotuning) too small to hold what the relay
 * reads, so that it buffers. */
static void fx_small_buffers(struct fx *fx, int size)
{
    close(fx->server_lfd);
    fx->server_lfd = listen_on(fx->family, 128, size, &fx->server_sa, &fx->server_len);
    fx->client_buf = size;
    fx->relay_sndbuf = size;
}

/* Both directions at once: small sends first (the copy path), then bulk (the
 * switch to splice), byte-exact and in order.  blocked: tiny socket buffers and
 * readers that start late, so that each direction's copy buffer holds bytes
 * when it reaches the threshold and must drain before the pipe is used. */
static void do_switch_both(size_t len, size_t small_part, bool blocked)
{
    struct relay_config cfg = {0};
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, AF_INET, 0, 0);
    if (blocked)
        fx_small_buffers(&fx, 4096);
    peer_init(&client);
    peer_init(&server);
    client.send_len = server.send_len = len;
    client.seed = 40;
    server.seed = 41;
    client.send_chunk = server.send_chunk = 700;
    client.chunk_until = server.chunk_until = small_part;
    client.recv_delay_ms = server.recv_delay_ms = blocked ? 300 : 0;
    client.shut_after_send = server.shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(fx.stats.bytes_to_upstream, len);
    assert_int_equal(fx.stats.bytes_to_client, len);
    assert_int_equal(server.received, len);
    assert_int_equal(client.received, len);
    assert_true(server.hash == pattern_hash(40, len));
    assert_true(client.hash == pattern_hash(41, len));
    assert_int_equal(server.recv_err, 0);
    assert_int_equal(client.recv_err, 0);
    /* Each direction: its first RELAY_SPLICE_AFTER bytes (and what was
     * buffered when it got there) copied, the rest spliced through one pipe. */
    assert_int_equal(pipe2_calls, 2);
    for (int s = 0; s < 2; s++) {
        assert_true(copy_bytes[s] >= RELAY_SPLICE_AFTER);
        assert_true(copy_bytes[s] <= RELAY_SPLICE_AFTER + RELAY_BUFFER_DEFAULT + RELAY_STACK_BUF);
    }
    assert_true(splice_calls > 0);
    if (blocked) {
        assert_true(switch_gated[RELAY_CLIENT]);
        assert_true(switch_gated[RELAY_UPSTREAM]);
    }
    fx_fini(&fx);
}

static void test_switch_both_directions(void **state)
{
    (void)state;
    /* Small sends well past the threshold, then bulk. */
    do_switch_both(4 * MIB, 3 * RELAY_SPLICE_AFTER / 2, false);
    /* The copy buffer holds bytes when the threshold is reached, and must
     * drain before the pipe is used. */
    do_switch_both(MIB, RELAY_SPLICE_AFTER / 2, true);
}

enum switch_pace {
    PACE_FAST,    /* default socket buffers, eager readers */
    PACE_SLOW,    /* 16 KiB socket buffers, readers that sleep after each recv */
    PACE_BLOCKED, /* 4 KiB socket buffers, the server reads only after 300 ms */
};

/* EOF right around the switch: a stream of exactly the threshold (the EOF is
 * read by the first splice), one byte less (EOF on the copy path) or more (one
 * byte in the pipe with the FIN behind it); each one way, then answered the
 * same way after the FIN.  PACE_BLOCKED: the client's FIN arrives while the
 * relay drains its copy buffer before the switch. */
static void do_switch_half_close(size_t len, enum switch_pace pace)
{
    struct relay_config cfg = {0};
    struct fx fx;
    struct peer client, server;

    fx_init(&fx, AF_INET, 0, 0);
    if (pace != PACE_FAST)
        fx_small_buffers(&fx, pace == PACE_SLOW ? 16 * 1024 : 4096);
    peer_init(&client);
    peer_init(&server);
    client.send_len = len;
    client.seed = 42;
    client.shut_after_send = true;
    client.recv_pace_us = pace == PACE_SLOW ? 300 : 0;
    server.send_len = len;
    server.seed = 43;
    server.send_after_eof = true;
    server.shut_after_send = true;
    server.recv_pace_us = pace == PACE_SLOW ? 300 : 0;
    server.recv_delay_ms = pace == PACE_BLOCKED ? 300 : 0;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(server.received, len);
    assert_int_equal(client.received, len);
    assert_true(server.hash == pattern_hash(42, len));
    assert_true(client.hash == pattern_hash(43, len));
    assert_true(server.got_eof);
    assert_true(client.got_eof);
    assert_int_equal(server.recv_err, 0);
    assert_int_equal(client.recv_err, 0);
    assert_int_equal(server.send_err, 0);
    assert_int_equal(fx.stats.bytes_to_upstream, len);
    assert_int_equal(fx.stats.bytes_to_client, len);
    if (pace == PACE_BLOCKED && len >= RELAY_SPLICE_AFTER)
        assert_true(switch_gated[RELAY_CLIENT]);
    if (len > RELAY_SPLICE_AFTER)
        assert_true(pipe2_calls >= 1);
    fx_fini(&fx);
}

static void test_switch_half_close(void **state)
{
    static const size_t lens[] = {RELAY_SPLICE_AFTER - 1, RELAY_SPLICE_AFTER,
                                  RELAY_SPLICE_AFTER + 1, RELAY_SPLICE_AFTER + 4096,
                                  3 * RELAY_SPLICE_AFTER};

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        do_switch_half_close(lens[i], PACE_FAST);
        do_switch_half_close(lens[i], PACE_SLOW);
        do_switch_half_close(lens[i], PACE_BLOCKED);
    }
}

/* A relay that spent its budget with bytes still in the socket runs again on
 * the next turn: no new edge would come for bytes that are already there.
 * Here the client's bytes and FIN all sit in the relay's socket before the
 * loop runs, and each turn may read only a few small reads. */
static void test_budget_requeue(void **state)
{
    const size_t len = 32 * 1024;
    struct relay_config cfg = {.buffer_size = 1000};
    struct fx fx;
    struct peer client, server;
    int accepted;

    (void)state;
    fx_init(&fx, AF_INET, 0, 0);
    relay_budget = 4096;
    peer_init(&client);
    peer_init(&server);
    client.send_len = len;
    client.seed = 46;
    client.shut_after_send = true;
    server.send_after_eof = true;
    server.send_len = 1;
    server.seed = 47;
    server.shut_after_send = true;
    server.listen_fd = fx.server_lfd;
    client_pair(&fx, 0, &client.fd, &accepted);
    fx_start(&fx, &cfg, accepted, &fx.server_sa, fx.server_len);
    peer_start(&client);
    peer_start(&server);
    usleep(300 * 1000); /* the client's bytes and FIN are in the relay's socket */
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);
    peer_join(&server);

    assert_int_equal(fx.done_calls, 1);
    assert_false(client.timed_out);
    assert_false(server.timed_out);
    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(server.received, len);
    assert_true(server.hash == pattern_hash(46, len));
    assert_int_equal(client.received, 1);
    fx_fini(&fx);
}

/* A short exchange never opens a pipe. */
static void test_short_exchange_no_pipe(void **state)
{
    struct relay_config cfg = {0};
    struct fx fx;
    struct peer client, server;

    (void)state;
    fx_init(&fx, AF_INET, 0, 0);
    peer_init(&client);
    peer_init(&server);
    client.send_len = 300;
    client.seed = 44;
    client.shut_after_send = true;
    server.send_after_recv = 300;
    server.send_len = 5000;
    server.seed = 45;
    server.shut_after_send = true;
    run_one(&fx, &cfg, &client, &server);

    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_true(server.hash == pattern_hash(44, 300));
    assert_true(client.hash == pattern_hash(45, 5000));
    assert_int_equal(pipe2_calls, 0);
    assert_int_equal(splice_calls, 0);
    assert_int_equal(copy_bytes[RELAY_CLIENT], 300);
    assert_int_equal(copy_bytes[RELAY_UPSTREAM], 5000);
    fx_fini(&fx);
}

/* ---- backpressure --------------------------------------------------------------- */

struct bp {
    uv_async_t async;
    uv_timer_t timer;
    uint64_t cpu_ns; /* loop thread CPU while stalled */
    sem_t client_gate, server_gate;
    /* what the loop saw while the server was not reading */
    bool seen;
    uint32_t pending, cap, client_flags;
    bool client_has_data; /* unread bytes in the relay's client socket */
    bool client_can_read; /* the relay would read them, given readiness */
    uint64_t to_upstream;
    int live;
};

static struct bp *bp_current;

static void bp_on_stall(struct peer *p)
{
    (void)p;
    uv_async_send(&bp_current->async);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 200 ms into the stall: the loop must have slept, not spun on a readable
 * socket it does not read. */
static void bp_on_timer(uv_timer_t *t)
{
    struct bp *bp = t->data;

    bp->cpu_ns = thread_cpu_ns() - bp->cpu_ns;
    uv_close((uv_handle_t *)t, NULL);
    sem_post(&bp->client_gate);
    sem_post(&bp->server_gate);
}

static void bp_on_async(uv_async_t *a)
{
    struct bp *bp = a->data;
    struct relay_conn *c = relay_list;

    bp->live = (int)relay_count();
    if (c) {
        bp->seen = true;
        bp->pending = c->side[RELAY_CLIENT].pending;
        bp->cap = c->side[RELAY_CLIENT].cap;
        bp->client_flags = c->side[RELAY_CLIENT].flags;
        bp->client_has_data = sock_has_data(c->side[RELAY_CLIENT].fd);
        bp->client_can_read = side_can_read(&c->side[RELAY_CLIENT]);
        bp->to_upstream = c->stats.bytes_to_upstream;
    }
    uv_close((uv_handle_t *)a, NULL);
    bp->cpu_ns = thread_cpu_ns();
    uv_timer_init(a->loop, &bp->timer);
    bp->timer.data = bp;
    uv_timer_start(&bp->timer, bp_on_timer, 200, 0);
}

static void do_backpressure(bool no_splice, size_t chunk, int pipe_limit)
{
    struct relay_config cfg = {.no_splice = no_splice};
    const size_t total = 8 * MIB;
    struct fx fx;
    struct bp bp = {0};
    struct peer client, server;
    int accepted;

    /* Small socket buffers at both ends so the kernel cannot swallow 8 MiB. */
    fx_init(&fx, AF_INET, 64 * 1024, 64 * 1024);
    splice_pipe_limit = pipe_limit;
    bp_current = &bp;
    sem_init(&bp.client_gate, 0, 0);
    sem_init(&bp.server_gate, 0, 0);
    assert_int_equal(uv_async_init(&fx.loop, &bp.async, bp_on_async), 0);
    bp.async.data = &bp;

    peer_init(&client);
    peer_init(&server);
    client.send_len = total;
    client.seed = 15;
    client.shut_after_send = true;
    client.send_chunk = chunk;
    client.stall_ms = 300;
    client.on_stall = bp_on_stall;
    client.gate = &bp.client_gate;
    server.gate = &bp.server_gate; /* the server reads nothing until the check */
    server.send_after_eof = true;
    server.shut_after_send = true;
    server.listen_fd = fx.server_lfd;

    client_pair(&fx, 64 * 1024, &client.fd, &accepted);
    fx_start(&fx, &cfg, accepted, &fx.server_sa, fx.server_len);
    peer_start(&client);
    peer_start(&server);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    peer_join(&client);
    peer_join(&server);

    assert_int_equal(fx.done_calls, 1);
    assert_false(client.timed_out);
    assert_false(server.timed_out);
    /* The client's sends blocked well before 8 MiB... */
    assert_true(client.stalled_at > 0);
    assert_true(client.stalled_at < total);
    /* ...because the relay held at most buffer_size and stopped reading. */
    assert_true(bp.seen);
    assert_int_equal(bp.live, 1);
    assert_true(bp.pending <= RELAY_BUFFER_DEFAULT);
    assert_true(bp.cap <= RELAY_BUFFER_DEFAULT);
    /* Bytes wait in the relay's client socket and no new edge will come for
     * them: the relay must remember that the socket is readable, or it would
     * never read it again once the server drains. */
    assert_true(bp.client_has_data);
    assert_true(bp.client_flags & RELAY_F_RD_READY);
    /* And it stopped reading for a reason: its buffer is full, or (splice)
     * the pipe refused more. */
    assert_true(!bp.client_can_read || (!no_splice && bp.pending > 0));
    assert_true(bp.to_upstream > 0);
    assert_true(bp.to_upstream < client.stalled_at);
    assert_true(bp.cpu_ns < 50 * 1000000u);
    if (pipe_limit)
        assert_true(bp.pending < (uint32_t)pipe_limit + 64 * 1024);
    /* And everything arrives once the server reads. */
    assert_int_equal(fx.stats.end, RELAY_END_CLOSED);
    assert_int_equal(server.received, total);
    assert_true(server.hash == pattern_hash(15, total));
    assert_int_equal(client.recv_err, 0);
    sem_destroy(&bp.client_gate);
    sem_destroy(&bp.server_gate);
    bp_current = NULL;
    fx_fini(&fx);
}

static void test_backpressure_splice(void **state)
{
    (void)state;
    do_backpressure(false, 0, 0);
    do_backpressure(false, 100, 0);
    do_backpressure(false, 0, 1000);
}

static void test_backpressure_copy(void **state)
{
    (void)state;
    do_backpressure(true, 0, 0);
    do_backpressure(true, 100, 0);
}

/* ---- abort_all ------------------------------------------------------------------ */

#define ABORT_N 3

struct abort_ctx {
    uv_timer_t timer;
    atomic_int ready; /* clients that got their byte back */
    int aborted;
};

static void on_abort_check(uv_timer_t *t)
{
    struct abort_ctx *ac = t->data;

    if (atomic_load(&ac->ready) < ABORT_N)
        return;
    ac->aborted = (int)relay_count();
    relay_abort_all();
    relay_abort_all(); /* idempotent */
    uv_close((uv_handle_t *)t, NULL);
}

static void do_abort_all(bool no_splice)
{
    struct relay_config cfg = {.no_splice = no_splice};
    struct fx fx;
    struct abort_ctx ac = {0};
    struct peer clients[ABORT_N + 1], servers[ABORT_N];
    struct sockaddr_storage full_sa;
    socklen_t full_len;
    int accepted, full_lfd, filler;

    fx_init(&fx, AF_INET, 0, 0);
    atomic_init(&ac.ready, 0);
    full_lfd = full_listener(AF_INET, &full_sa, &full_len, &filler);
    for (int i = 0; i < ABORT_N; i++) {
        peer_init(&clients[i]);
        clients[i].send_len = 1;
        clients[i].seed = 20 + (uint64_t)i;
        clients[i].notify = &ac.ready;
        peer_init(&servers[i]);
        servers[i].send_after_recv = 1;
        servers[i].send_len = 1;
        servers[i].seed = 30 + (uint64_t)i;
        servers[i].listen_fd = fx.server_lfd;
        client_pair(&fx, 0, &clients[i].fd, &accepted);
        fx_start(&fx, &cfg, accepted, &fx.server_sa, fx.server_len);
        peer_start(&clients[i]);
        peer_start(&servers[i]);
    }
    /* And one still connecting when the abort comes. */
    peer_init(&clients[ABORT_N]);
    client_pair(&fx, 0, &clients[ABORT_N].fd, &accepted);
    fx_start(&fx, &cfg, accepted, &full_sa, full_len);
    peer_start(&clients[ABORT_N]);
    assert_int_equal(relay_count(), ABORT_N + 1);

    uv_timer_init(&fx.loop, &ac.timer);
    ac.timer.data = &ac;
    uv_timer_start(&ac.timer, on_abort_check, 10, 10);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    for (int i = 0; i <= ABORT_N; i++)
        peer_join(&clients[i]);
    for (int i = 0; i < ABORT_N; i++)
        peer_join(&servers[i]);
    close(filler);
    close(full_lfd);

    assert_int_equal(ac.aborted, ABORT_N + 1);
    assert_int_equal(fx.done_calls, ABORT_N + 1);
    assert_int_equal(fx.ends[RELAY_END_ABORTED], ABORT_N + 1);
    assert_int_equal(fx.connected_calls, ABORT_N);
    for (int i = 0; i <= ABORT_N; i++) {
        assert_false(clients[i].timed_out);
        assert_int_equal(clients[i].recv_err, ECONNRESET);
    }
    for (int i = 0; i < ABORT_N; i++) {
        assert_int_equal(clients[i].received, 1);
        assert_int_equal(servers[i].received, 1);
        assert_int_equal(servers[i].recv_err, ECONNRESET);
    }
    fx_fini(&fx);
}

static void test_abort_all_splice(void **state)
{
    (void)state;
    do_abort_all(false);
}

static void test_abort_all_copy(void **state)
{
    (void)state;
    do_abort_all(true);
}

/* ---- resources and API ------------------------------------------------------------- */

#define IDLE_N 50

static int count_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

struct idle_ctx {
    uv_timer_t timer;
    struct fx *fx;
    int fds_before;
    int fds_during;
    int unallocated; /* relays without pipe or buffer */
    int nodelay;     /* sockets with TCP_NODELAY */
};

static void on_idle_check(uv_timer_t *t)
{
    struct idle_ctx *ic = t->data;

    if (ic->fx->connected_calls < IDLE_N)
        return;
    ic->fds_during = count_fds();
    for (struct relay_conn *c = relay_list; c; c = c->next) {
        bool empty = true;

        for (int s = 0; s < 2; s++) {
            int one = 0;
            socklen_t len = sizeof(one);

            if (c->side[s].pipe[0] >= 0 || c->side[s].buf || c->side[s].pending)
                empty = false;
            if (getsockopt(c->side[s].fd, IPPROTO_TCP, TCP_NODELAY, &one, &len) == 0 && one)
                ic->nodelay++;
        }
        if (empty)
            ic->unallocated++;
    }
    relay_abort_all();
    uv_close((uv_handle_t *)t, NULL);
}

/* An idle relay holds its struct and two sockets: no pipe, no buffer. */
static void test_idle_resources(void **state)
{
    struct relay_config cfg = {0};
    struct fx fx;
    struct idle_ctx ic = {0};
    int clients[IDLE_N];

    (void)state;
    /* The budget behind "well under 16 KiB of RSS per idle connection". */
    assert_true(sizeof(struct relay_conn) <= 1024);
    fx_init(&fx, AF_INET, 0, 0);
    ic.fx = &fx;
    ic.fds_before = count_fds();
    for (int i = 0; i < IDLE_N; i++) {
        int accepted;

        client_pair(&fx, 0, &clients[i], &accepted);
        fx_start(&fx, &cfg, accepted, &fx.server_sa, fx.server_len);
    }
    uv_timer_init(&fx.loop, &ic.timer);
    ic.timer.data = &ic;
    uv_timer_start(&ic.timer, on_idle_check, 10, 10);
    uv_run(&fx.loop, UV_RUN_DEFAULT);

    assert_int_equal(fx.done_calls, IDLE_N);
    assert_int_equal(fx.ends[RELAY_END_ABORTED], IDLE_N);
    assert_int_equal(ic.unallocated, IDLE_N);
    assert_int_equal(ic.nodelay, 2 * IDLE_N);
    /* Per relay: the test's client socket, the accepted one, the upstream one;
     * plus the epoll set all relays of the loop share. */
    assert_int_equal(ic.fds_during - ic.fds_before, 3 * IDLE_N + 1);
    for (int i = 0; i < IDLE_N; i++)
        close(clients[i]);
    fx_fini(&fx);
}

static void test_start_errors(void **state)
{
    struct relay_config big = {.buffer_size = 64 * MIB};
    struct fx fx;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int client, accepted;

    (void)state;
    fx_init(&fx, AF_INET, 0, 0);
    client_pair(&fx, 0, &client, &accepted);
    assert_int_equal(relay_start(&fx.loop, NULL, accepted, (struct sockaddr *)&un, sizeof(un), NULL,
                                 on_done, &fx),
                     -EAFNOSUPPORT);
    assert_int_equal(relay_start(&fx.loop, NULL, accepted, (struct sockaddr *)&fx.server_sa, 4,
                                 NULL, on_done, &fx),
                     -EAFNOSUPPORT);
    assert_int_equal(relay_start(&fx.loop, &big, accepted, (struct sockaddr *)&fx.server_sa,
                                 fx.server_len, NULL, on_done, &fx),
                     -EINVAL);
    assert_int_equal(relay_start(&fx.loop, NULL, accepted, (struct sockaddr *)&fx.server_sa,
                                 fx.server_len, NULL, NULL, &fx),
                     -EINVAL);
    /* A loop already watching the fd (a uv_poll_t elsewhere) is refused, and
     * the caller keeps the fd. */
    {
        uv_poll_t other;

        assert_int_equal(uv_poll_init(&fx.loop, &other, accepted), 0);
        assert_int_equal(uv_poll_start(&other, UV_READABLE, NULL), 0);
        assert_int_equal(relay_start(&fx.loop, NULL, accepted, (struct sockaddr *)&fx.server_sa,
                                     fx.server_len, NULL, on_done, &fx),
                         -EEXIST);
        uv_close((uv_handle_t *)&other, NULL);
        assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    }
    assert_int_equal(relay_count(), 0);
    assert_true(fcntl(accepted, F_GETFD) >= 0);
    assert_int_equal(fx.done_calls, 0);
    close(accepted);
    close(client);
    fx_fini(&fx);
}

static void test_end_names(void **state)
{
    (void)state;
    for (int e = 0; e < RELAY_END_MAX; e++) {
        assert_non_null(relay_end_name(e));
        assert_string_not_equal(relay_end_name(e), "unknown");
    }
    assert_string_equal(relay_end_name(RELAY_END_CLOSED), "closed");
    assert_string_equal(relay_end_name(RELAY_END_MAX), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_splice_v4),
        cmocka_unit_test(test_adopt_splice),
        cmocka_unit_test(test_adopt_copy),
        cmocka_unit_test(test_transfer_copy_v4),
        cmocka_unit_test(test_transfer_splice_v6),
        cmocka_unit_test(test_transfer_copy_v6),
        cmocka_unit_test(test_transfer_buffer_sizes),
        cmocka_unit_test(test_splice_fallback_in),
        cmocka_unit_test(test_splice_fallback_out),
        cmocka_unit_test(test_half_close_client_splice),
        cmocka_unit_test(test_half_close_client_copy),
        cmocka_unit_test(test_half_close_server_splice),
        cmocka_unit_test(test_half_close_server_copy),
        cmocka_unit_test(test_refused_splice),
        cmocka_unit_test(test_refused_copy),
        cmocka_unit_test(test_connect_immediate_error),
        cmocka_unit_test(test_connect_timeout_splice),
        cmocka_unit_test(test_connect_timeout_copy),
        cmocka_unit_test(test_server_reset_splice),
        cmocka_unit_test(test_server_reset_copy),
        cmocka_unit_test(test_client_reset_splice),
        cmocka_unit_test(test_client_reset_copy),
        cmocka_unit_test(test_idle_timeout_splice),
        cmocka_unit_test(test_idle_timeout_copy),
        cmocka_unit_test(test_idle_activity_keeps_alive),
        cmocka_unit_test(test_idle_pipe_release),
        cmocka_unit_test(test_switch_both_directions),
        cmocka_unit_test(test_switch_half_close),
        cmocka_unit_test(test_short_exchange_no_pipe),
        cmocka_unit_test(test_budget_requeue),
        cmocka_unit_test(test_backpressure_splice),
        cmocka_unit_test(test_backpressure_copy),
        cmocka_unit_test(test_abort_all_splice),
        cmocka_unit_test(test_abort_all_copy),
        cmocka_unit_test(test_idle_resources),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_end_names),
    };

    signal(SIGPIPE, SIG_IGN);
    /* PCL_TEST_FILTER=test_name (glob): run just that one, e.g. in a loop to chase a flake. */
    if (getenv("PCL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("PCL_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
