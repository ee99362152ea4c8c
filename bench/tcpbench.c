/*
 * tcpbench: the traffic generator of bench/run.sh (not part of the build;
 * run.sh compiles it with `cc -O2`).
 *
 *   tcpbench server ADDR PORT STATSFILE
 *       One epoll thread, three listeners:
 *         PORT    sink: read until EOF, answer the byte count (8 bytes), close
 *         PORT+1  crr:  read the 1-byte request, write a 1-byte response, close
 *                       (the server closes first, so TIME_WAIT stays on the
 *                       server and the client never runs out of ports)
 *         PORT+2  echo: echo until EOF (held open by `idle`)
 *         PORT+3  http: HTTP/1.1, keep-alive and pipelining; every request
 *                       head gets a fixed 200 with a 13-byte body
 *                       ("Connection: close" in the request: the same 200
 *                       with "Connection: close", then the server closes
 *                       first); "Upgrade: websocket" with "Connection:
 *                       upgrade": a 101, after which the connection is a
 *                       sink as on PORT (read until EOF, answer the byte
 *                       count).  Requests with a body get a 400 and a close.
 *       SIGUSR1 writes the counters to STATSFILE (proof that the flows of a
 *       mode really reached this server).
 *   tcpbench bulk ADDR PORT SECONDS
 *       One stream: write for SECONDS, half-close, wait for the server's
 *       count; prints "Gbit/s bytes seconds".  The clock stops when the server
 *       has received every byte.
 *   tcpbench crr ADDR PORT SECONDS CONCURRENCY
 *       Connect, 1-byte request, 1-byte response, close, as fast as possible
 *       with CONCURRENCY connections in flight; prints "conn/s done errors".
 *   tcpbench idle ADDR PORT N
 *       Open N connections, exchange one byte on each, print "ready N", hold
 *       them until stdin reaches EOF, close them.
 *   tcpbench ping ADDR PORT
 *       One crr exchange (readiness probe).
 *   tcpbench hcrr ADDR PORT SECONDS CONCURRENCY HOST
 *       As crr, against the http port: each connection sends one
 *       "GET / HTTP/1.1" with "Host: HOST" and "Connection: close", reads the
 *       response until the server's FIN and needs a 200; prints
 *       "conn/s done errors".
 *   tcpbench hping ADDR PORT HOST
 *       One hcrr exchange (readiness probe).
 *   tcpbench wsbulk ADDR PORT SECONDS HOST
 *       The WebSocket opening handshake (GET /ws with Upgrade: websocket,
 *       Connection: Upgrade, Host: HOST), needs a 101, then bulk as `bulk`
 *       in masked binary frames of 128 KiB (prebuilt: the client spends
 *       nothing on framing); the clock starts after the 101.  Prints
 *       "Gbit/s bytes seconds".
 *
 *   tcpbench hrate ADDR PORT SECONDS CONNS RATE HOST
 *       Keep-alive HTTP at a fixed offered load (open loop): CONNS
 *       connections, one "GET / HTTP/1.1" (Host: HOST) scheduled every
 *       1/RATE s, round robin over them; a request whose connection is still
 *       busy waits in that connection's queue.  Latency runs from the
 *       request's scheduled time to its response's last byte, so a stall
 *       counts for every request it delays (no coordinated omission).
 *       Prints "req/s p50_ms p99_ms p999_ms done", req/s being the
 *       responses per second over the run.
 *
 *   tcpbench tlscrr ADDR PORT SECONDS CONCURRENCY HOST CAFILE
 *       Only when compiled with -DTCPBENCH_TLS (and -lssl -lcrypto; run-tls.sh
 *       does): as hcrr over TLS.  Every connection is a new SSL object with
 *       no session offered, so every handshake is a full one (wrk resumes
 *       its sessions on reconnect, so it cannot measure this); SNI HOST, the
 *       server's certificate verified against CAFILE ("-": OpenSSL's default
 *       paths, i.e. SSL_CERT_FILE) and HOST, or not verified ("none": as
 *       wrk; the server still proves it holds the certificate's key).
 *       Prints "conn/s done errors resumed p50_ms p99_ms", the percentiles
 *       of the time from connect() to the server's close.
 *
 * Every client has deadlines: a stalled relay makes it fail (exit 1 with a
 * message), never hang.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BULK_CHUNK (128 * 1024)
#define IO_TIMEOUT_S 10
#define CRR_STALL_NS (5 * 1000000000LL)

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "tcpbench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "tcpbench: deadline exceeded (stalled?)\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    _exit(1);
}

static void set_deadline(unsigned seconds)
{
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

static struct sockaddr_in parse_addr(const char *addr, const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char *end;
    long p = strtol(port, &end, 10);
    if (*end || p <= 0 || p > 65535)
        die("bad port '%s'", port);
    sa.sin_port = htons((uint16_t)p);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        die("bad IPv4 address '%s'", addr);
    return sa;
}

static long parse_num(const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < min || v > max)
        die("bad number '%s'", s);
    return v;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int connect_blocking(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    set_timeouts(fd);
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
        die("connect: %s", strerror(errno));
    return fd;
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- server ---- */

enum { SRV_SINK, SRV_CRR, SRV_ECHO, SRV_HTTP, SRV_N };

#define HTTP_IN_MAX 8192
#define HTTP_OUT_MAX 32768

/* State of a connection on the http port (freed when it becomes a sink). */
struct http_state {
    size_t in_len, out_len, out_off;
    int want_out;      /* waiting for EPOLLOUT to finish the output */
    int close_after;   /* close once the output is written */
    int upgrade_after; /* become a sink once the 101 is written */
    char in[HTTP_IN_MAX];
    char out[HTTP_OUT_MAX];
};

struct conn {
    int fd;
    int kind;
    uint64_t bytes;
    struct http_state *h;
};

static uint64_t srv_conns[SRV_N], srv_bytes, srv_http_reqs, srv_ws_upgrades;

static void write_stats(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f,
            "sink_conns %llu\nsink_bytes %llu\ncrr_conns %llu\necho_conns %llu\n"
            "http_conns %llu\nhttp_reqs %llu\nws_upgrades %llu\n",
            (unsigned long long)srv_conns[SRV_SINK], (unsigned long long)srv_bytes,
            (unsigned long long)srv_conns[SRV_CRR], (unsigned long long)srv_conns[SRV_ECHO],
            (unsigned long long)srv_conns[SRV_HTTP], (unsigned long long)srv_http_reqs,
            (unsigned long long)srv_ws_upgrades);
    fclose(f);
    rename(tmp, path);
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->h);
    free(c);
}

static void serve_conn(int ep, struct conn *c, char *buf, size_t bufsz)
{
    for (;;) {
        ssize_t r = read(c->fd, buf, c->kind == SRV_CRR ? 1 : bufsz);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r < 0) {
            conn_close(ep, c);
            return;
        }
        if (r == 0) {
            if (c->kind == SRV_SINK) {
                uint64_t n = c->bytes;
                /* 8 bytes into an empty send buffer: cannot block. */
                if (write(c->fd, &n, sizeof(n)) != sizeof(n)) {
                    /* the client will report it */
                }
            }
            conn_close(ep, c);
            return;
        }
        c->bytes += (uint64_t)r;
        if (c->kind == SRV_SINK) {
            srv_bytes += (uint64_t)r;
            continue;
        }
        if (c->kind == SRV_CRR) {
            if (write(c->fd, "y", 1) != 1) {
                /* the client counts it as an error */
            }
            conn_close(ep, c);
            return;
        }
        /* echo: the tiny amounts `idle` sends always fit the send buffer */
        if (write(c->fd, buf, (size_t)r) != r) {
            conn_close(ep, c);
            return;
        }
    }
}

/* ---- the http port ---- */

#define BODY "hello, world\n"
static const char RESP_200[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\n" BODY;
static const char RESP_200_CLOSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                     "Content-Length: 13\r\nConnection: close\r\n\r\n" BODY;
static const char RESP_400[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";
/* The accept value of RFC 6455's example key, which the clients send. */
static const char RESP_101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static int has_ci(const char *s, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(s + i, tok, tl) == 0)
            return 1;
    return 0;
}

/* Whether a header field NAME is in the head (and, with TOKEN, whether its
 * value contains TOKEN, case-insensitively: enough for the clients here). */
static int head_field(const char *head, size_t len, const char *name, const char *token)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':')
            if (!token || has_ci(line + nl + 1, (size_t)(eol - line - nl - 1), token))
                return 1;
        p = eol;
    }
    return 0;
}

/* Queue the responses of the complete request heads in the input. */
static void http_process(struct conn *c)
{
    struct http_state *h = c->h;
    size_t off = 0;
    while (!h->close_after && !h->upgrade_after) {
        char *end = memmem(h->in + off, h->in_len - off, "\r\n\r\n", 4);
        if (!end)
            break;
        const char *head = h->in + off;
        size_t hlen = (size_t)(end + 4 - head);
        const char *resp = RESP_200;
        size_t rlen = sizeof(RESP_200) - 1;
        int close_after = 0, upgrade_after = 0;
        if (head_field(head, hlen, "content-length", NULL) ||
            head_field(head, hlen, "transfer-encoding", NULL)) {
            resp = RESP_400, rlen = sizeof(RESP_400) - 1, close_after = 1;
        } else if (head_field(head, hlen, "upgrade", "websocket") &&
                   head_field(head, hlen, "connection", "upgrade")) {
            resp = RESP_101, rlen = sizeof(RESP_101) - 1, upgrade_after = 1;
        } else if (head_field(head, hlen, "connection", "close")) {
            resp = RESP_200_CLOSE, rlen = sizeof(RESP_200_CLOSE) - 1, close_after = 1;
        }
        if (h->out_len + rlen > HTTP_OUT_MAX)
            break; /* after this output is written */
        memcpy(h->out + h->out_len, resp, rlen);
        h->out_len += rlen;
        off += hlen;
        srv_http_reqs++;
        srv_ws_upgrades += (uint64_t)upgrade_after;
        h->close_after = close_after;
        h->upgrade_after = upgrade_after;
    }
    memmove(h->in, h->in + off, h->in_len - off);
    h->in_len -= off;
}

/* 1: all written, 0: the socket is full, -1: error. */
static int http_flush(struct conn *c)
{
    struct http_state *h = c->h;
    while (h->out_off < h->out_len) {
        ssize_t w = write(c->fd, h->out + h->out_off, h->out_len - h->out_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w <= 0)
            return -1;
        h->out_off += (size_t)w;
    }
    h->out_off = h->out_len = 0;
    return 1;
}

static void http_want_out(int ep, struct conn *c, int on)
{
    struct epoll_event ev = {.events = on ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->h->want_out = on;
}

static void serve_conn(int ep, struct conn *c, char *buf, size_t bufsz);

/* Level-triggered: one read per readiness event, then the responses of every
 * complete head in one write. */
static void serve_http(int ep, struct conn *c, char *buf, size_t bufsz)
{
    struct http_state *h = c->h;
    if (!h->want_out) {
        if (h->in_len == HTTP_IN_MAX) { /* a head over 8 KiB */
            conn_close(ep, c);
            return;
        }
        ssize_t r = read(c->fd, h->in + h->in_len, HTTP_IN_MAX - h->in_len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        if (r <= 0) {
            conn_close(ep, c);
            return;
        }
        h->in_len += (size_t)r;
    }
    for (;;) {
        http_process(c);
        int f = http_flush(c);
        if (f < 0) {
            conn_close(ep, c);
            return;
        }
        if (f == 0) {
            if (!h->want_out)
                http_want_out(ep, c, 1);
            return;
        }
        if (h->want_out)
            http_want_out(ep, c, 0);
        if (h->close_after) {
            conn_close(ep, c);
            return;
        }
        if (h->upgrade_after) {
            /* Whatever follows the request head is the new protocol: the
             * connection is a sink from here on, its bytes counted. */
            c->kind = SRV_SINK;
            c->bytes = h->in_len;
            srv_bytes += h->in_len;
            free(h);
            c->h = NULL;
            serve_conn(ep, c, buf, bufsz);
            return;
        }
        if (!memmem(h->in, h->in_len, "\r\n\r\n", 4))
            return;
    }
}

static int cmd_server(const char *addr, const char *port, const char *stats)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int lfd[SRV_N];
    raise_nofile();
    for (int k = 0; k < SRV_N; k++) {
        struct sockaddr_in a = sa;
        a.sin_port = htons((uint16_t)(ntohs(sa.sin_port) + k));
        int one = 1;
        lfd[k] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(lfd[k], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(lfd[k], (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd[k], 4096) < 0)
            die("bind/listen: %s", strerror(errno));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        ev.data.u64 = (uint64_t)k + 1; /* small integers: listeners */
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd[k], &ev);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    struct epoll_event sev = {.events = EPOLLIN};
    sev.data.u64 = SRV_N + 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev);

    size_t bufsz = 256 * 1024;
    char *buf = malloc(bufsz);
    write_stats(stats);
    printf("ready\n");
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag >= 1 && tag <= SRV_N) {
                int k = (int)tag - 1;
                for (;;) {
                    int fd = accept4(lfd[k], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    struct conn *c = calloc(1, sizeof(*c));
                    c->fd = fd;
                    c->kind = k;
                    srv_conns[k]++;
                    if (k == SRV_HTTP) {
                        int one = 1;
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        c->h = malloc(sizeof(*c->h));
                        c->h->in_len = c->h->out_len = c->h->out_off = 0;
                        c->h->want_out = c->h->close_after = c->h->upgrade_after = 0;
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (tag == SRV_N + 1) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                    write_stats(stats);
                    if (si.ssi_signo != SIGUSR1)
                        return 0;
                }
            } else {
                struct conn *c = evs[i].data.ptr;
                if (c->kind == SRV_HTTP)
                    serve_http(ep, c, buf, bufsz);
                else
                    serve_conn(ep, c, buf, bufsz);
            }
        }
    }
}

/* ---- clients ---- */

/* Write BUF (BULK_CHUNK bytes, repeated) for SECONDS, never stopping inside
 * a chunk, half-close, wait for the server's count; print the rate. */
static int bulk_stream(int fd, long seconds, const char *buf)
{
    uint64_t sent = 0;
    size_t off = 0;
    int64_t t0 = now_ns(), end = t0 + seconds * 1000000000LL;
    while (off != 0 || now_ns() < end) {
        ssize_t w = write(fd, buf + off, BULK_CHUNK - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("write: %s", errno == EAGAIN ? "timed out (stalled)" : strerror(errno));
        sent += (uint64_t)w;
        off = (off + (size_t)w) % BULK_CHUNK;
    }
    if (shutdown(fd, SHUT_WR) < 0)
        die("shutdown: %s", strerror(errno));
    uint64_t got;
    if (read_full(fd, &got, sizeof(got)) < 0)
        die("%s", "no byte count from the server (stalled, reset or timed out)");
    int64_t t1 = now_ns();
    if (got != sent) {
        fprintf(stderr, "tcpbench: server received %llu bytes of %llu\n", (unsigned long long)got,
                (unsigned long long)sent);
        return 1;
    }
    double s = (double)(t1 - t0) / 1e9;
    printf("%.3f %llu %.3f\n", (double)sent * 8 / s / 1e9, (unsigned long long)sent, s);
    close(fd);
    return 0;
}

static int cmd_bulk(const char *addr, const char *port, const char *secs)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long seconds = parse_num(secs, 1, 3600);
    set_deadline((unsigned)seconds + 3 * IO_TIMEOUT_S);
    int fd = connect_blocking(&sa);
    char *buf = malloc(BULK_CHUNK);
    memset(buf, 'b', BULK_CHUNK);
    return bulk_stream(fd, seconds, buf);
}

static const char *check_host(const char *host)
{
    if (strlen(host) > 255 || strpbrk(host, "\r\n "))
        die("bad host '%s'", host);
    return host;
}

/* Read a response head (up to the blank line) into buf; -1 on EOF/error. */
static int read_head(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *e = strstr(buf, "\r\n\r\n");
        if (e) {
            if ((size_t)(e + 4 - buf) != got)
                die("%s", "bytes after the 101 head before the client sent anything");
            return 0;
        }
    }
    return -1;
}

static int cmd_wsbulk(const char *addr, const char *port, const char *secs, const char *host)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long seconds = parse_num(secs, 1, 3600);
    char req[1024], head[4096];
    int n = snprintf(req, sizeof(req),
                     "GET /ws HTTP/1.1\r\nHost: %s\r\nUser-Agent: tcpbench\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     check_host(host));
    /* Masked binary frames, FIN set, 64-bit length, each filling a chunk. */
    unsigned char *buf = malloc(BULK_CHUNK);
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint64_t payload = BULK_CHUNK - 14;
    buf[0] = 0x82;
    buf[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
        buf[2 + i] = (unsigned char)(payload >> (56 - 8 * i));
    memcpy(buf + 10, mask, 4);
    for (uint64_t j = 0; j < payload; j++)
        buf[14 + j] = (unsigned char)('b' ^ mask[j % 4]);
    set_deadline((unsigned)seconds + 3 * IO_TIMEOUT_S);
    int fd = connect_blocking(&sa);
    if (write(fd, req, (size_t)n) != n)
        die("write: %s", strerror(errno));
    if (read_head(fd, head, sizeof(head)) < 0)
        die("%s", "no complete response to the upgrade request");
    if (strncmp(head, "HTTP/1.1 101 ", 13) != 0) {
        head[strcspn(head, "\r\n")] = '\0';
        die("upgrade refused: %s", head);
    }
    return bulk_stream(fd, seconds, (const char *)buf);
}

enum { CRR_CONNECTING, CRR_WAITING };

struct crr_slot {
    int fd;
    int state;
    int got;
    char head[12]; /* the first bytes of the response */
    int64_t started;
};

/* What a crr exchange sends, and whether the answer is HTTP (a 200) or the
 * single byte of the crr port. */
static const char *crr_req = "x";
static size_t crr_req_len = 1;
static int crr_http;

static void crr_set_http(const char *host)
{
    static char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: tcpbench\r\n"
                     "Connection: close\r\n\r\n",
                     check_host(host));
    crr_req = req;
    crr_req_len = (size_t)n;
    crr_http = 1;
}

static int crr_response_ok(int got, const char *head)
{
    if (!crr_http)
        return got == 1;
    return got >= 12 && memcmp(head, "HTTP/1.1 200", 12) == 0;
}

static int crr_open(int ep, const struct sockaddr_in *sa, struct crr_slot *s, uint32_t idx)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    s->state = CRR_CONNECTING;
    s->got = 0;
    s->started = now_ns();
    int r = connect(s->fd, (const struct sockaddr *)sa, sizeof(*sa));
    if (r < 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

static void crr_close(int ep, struct crr_slot *s)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
}

/* Returns 1 when the exchange completed, 0 while in progress, -1 on error. */
static int crr_step(int ep, struct crr_slot *s, uint32_t idx)
{
    if (s->state == CRR_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err)
            return -1;
        /* a small request into an empty send buffer: written whole */
        if (write(s->fd, crr_req, crr_req_len) != (ssize_t)crr_req_len)
            return -1;
        s->state = CRR_WAITING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        return 0;
    }
    char b[512];
    for (;;) {
        ssize_t r = read(s->fd, b, sizeof(b));
        if (r > 0) {
            if (s->got < (int)sizeof(s->head)) {
                size_t k = sizeof(s->head) - (size_t)s->got;
                memcpy(s->head + s->got, b, (size_t)r < k ? (size_t)r : k);
            }
            s->got += (int)r;
            continue;
        }
        if (r == 0) /* response, then the server's FIN */
            return crr_response_ok(s->got, s->head) ? 1 : -1;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 0 : -1;
    }
}

static int cmd_crr(const char *addr, const char *port, const char *secs, const char *conc)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long seconds = parse_num(secs, 1, 3600), n = parse_num(conc, 1, 1024);
    set_deadline((unsigned)seconds + 3 * IO_TIMEOUT_S);
    raise_nofile();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct crr_slot *slots = calloc((size_t)n, sizeof(*slots));
    uint64_t done = 0, errors = 0;
    int64_t t0 = now_ns(), end = t0 + seconds * 1000000000LL;
    long active = 0;
    for (long i = 0; i < n; i++) {
        if (crr_open(ep, &sa, &slots[i], (uint32_t)i) < 0)
            die("socket/connect: %s", strerror(errno));
        active++;
    }
    struct epoll_event evs[1024];
    int64_t last_sweep = t0;
    while (active > 0) {
        int64_t now = now_ns();
        if (now > end + CRR_STALL_NS)
            break; /* stragglers after the end are not counted anyway */
        int k = epoll_wait(ep, evs, 1024, 100);
        for (int i = 0; i < k; i++) {
            uint32_t idx = evs[i].data.u32;
            struct crr_slot *s = &slots[idx];
            if (s->fd < 0)
                continue;
            int r = crr_step(ep, s, idx);
            if (r == 0)
                continue;
            crr_close(ep, s);
            if (r > 0 && now_ns() <= end)
                done++;
            else if (r < 0)
                errors++;
            if (now_ns() < end && crr_open(ep, &sa, s, idx) == 0)
                continue;
            active--;
        }
        now = now_ns();
        if (now - last_sweep > 500000000LL) { /* stalled exchanges count as errors */
            last_sweep = now;
            for (long i = 0; i < n; i++) {
                struct crr_slot *s = &slots[i];
                if (s->fd < 0 || now - s->started < CRR_STALL_NS)
                    continue;
                crr_close(ep, s);
                errors++;
                if (now < end && crr_open(ep, &sa, s, (uint32_t)i) == 0)
                    continue;
                active--;
            }
        }
    }
    double s = (double)seconds;
    printf("%.0f %llu %llu\n", (double)done / s, (unsigned long long)done,
           (unsigned long long)errors);
    if (done == 0 || errors * 100 > done) {
        fprintf(stderr, "tcpbench: crr: %llu done, %llu errors\n", (unsigned long long)done,
                (unsigned long long)errors);
        return 1;
    }
    return 0;
}

static int cmd_idle(const char *addr, const char *port, const char *count)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long n = parse_num(count, 1, 100000);
    raise_nofile();
    set_deadline((unsigned)(60 + n / 50));
    int *fds = calloc((size_t)n, sizeof(int));
    for (long i = 0; i < n; i++) {
        char c;
        fds[i] = connect_blocking(&sa);
        if (write(fds[i], "i", 1) != 1 || read_full(fds[i], &c, 1) < 0)
            die("%s", "no echo on an idle connection");
    }
    alarm(0);
    printf("ready %ld\n", n);
    fflush(stdout);
    /* Hold until stdin closes (or 10 minutes, in case the caller died). */
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char b[64];
    int64_t until = now_ns() + 600 * 1000000000LL;
    while (now_ns() < until) {
        int r = poll(&p, 1, 1000);
        if (r > 0 && read(0, b, sizeof(b)) <= 0)
            break;
    }
    for (long i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

static int cmd_ping(const char *addr, const char *port)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    char c, e;
    set_deadline(IO_TIMEOUT_S);
    int fd = connect_blocking(&sa);
    if (write(fd, "x", 1) != 1 || read_full(fd, &c, 1) < 0 || read(fd, &e, 1) != 0)
        die("%s", "no response");
    close(fd);
    return 0;
}

static int cmd_hping(const char *addr, const char *port, const char *host)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    char resp[4096];
    size_t got = 0;
    crr_set_http(host);
    set_deadline(IO_TIMEOUT_S);
    int fd = connect_blocking(&sa);
    if (write(fd, crr_req, crr_req_len) != (ssize_t)crr_req_len)
        die("write: %s", strerror(errno));
    for (;;) { /* until the server's FIN */
        ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read: %s", strerror(errno));
        if (r == 0 || (got += (size_t)r) == sizeof(resp) - 1)
            break;
    }
    resp[got] = '\0';
    if (!crr_response_ok((int)got, resp)) {
        resp[strcspn(resp, "\r\n")] = '\0';
        die("not a 200: '%s'", resp);
    }
    close(fd);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

#ifdef TCPBENCH_TLS
/* ---- tlscrr: new TLS connections, one request each ---- */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum { TC_CONNECTING, TC_HANDSHAKE, TC_WRITE, TC_READ };

struct tc_slot {
    int fd;
    int state;
    int got;
    char head[12];
    SSL *ssl;
    int64_t started;
};

static SSL_CTX *tc_ctx;
static const char *tc_host;

static void tc_watch(int ep, struct tc_slot *s, uint32_t idx, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = idx};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static int tc_open(int ep, const struct sockaddr_in *sa, struct tc_slot *s, uint32_t idx)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->state = TC_CONNECTING;
    s->got = 0;
    s->ssl = NULL;
    s->started = now_ns();
    int r = connect(s->fd, (const struct sockaddr *)sa, sizeof(*sa));
    if (r < 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

static void tc_close(int ep, struct tc_slot *s)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    SSL_free(s->ssl); /* no close_notify of ours: the server has closed */
    s->ssl = NULL;
    close(s->fd);
    s->fd = -1;
}

/* After an SSL call returned r <= 0: 0 (wait, epoll updated) or -1. */
static int tc_want(int ep, struct tc_slot *s, uint32_t idx, int r)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        tc_watch(ep, s, idx, EPOLLIN);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        tc_watch(ep, s, idx, EPOLLOUT);
        return 0;
    default:
        return -1;
    }
}

/* 1 when the exchange completed (resumed: *resumed), 0 in progress, -1 error. */
static int tc_step(int ep, struct tc_slot *s, uint32_t idx, int *resumed)
{
    static const char *req;
    static int req_len;
    static char reqbuf[512];
    if (!req) {
        req_len = snprintf(reqbuf, sizeof(reqbuf),
                           "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: tcpbench\r\n"
                           "Connection: close\r\n\r\n",
                           tc_host);
        req = reqbuf;
    }
    int r;
    switch (s->state) {
    case TC_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err)
            return -1;
        s->ssl = SSL_new(tc_ctx);
        if (!s->ssl || !SSL_set_fd(s->ssl, s->fd) || !SSL_set_tlsext_host_name(s->ssl, tc_host) ||
            ((SSL_get_verify_mode(s->ssl) & SSL_VERIFY_PEER) && !SSL_set1_host(s->ssl, tc_host)))
            return -1;
        SSL_set_connect_state(s->ssl);
        s->state = TC_HANDSHAKE;
    }
        /* fall through */
    case TC_HANDSHAKE:
        r = SSL_do_handshake(s->ssl);
        if (r <= 0)
            return tc_want(ep, s, idx, r);
        *resumed = SSL_session_reused(s->ssl);
        s->state = TC_WRITE;
        /* fall through */
    case TC_WRITE:
        r = SSL_write(s->ssl, req, req_len);
        if (r <= 0)
            return tc_want(ep, s, idx, r);
        s->state = TC_READ;
        tc_watch(ep, s, idx, EPOLLIN);
        /* fall through */
    case TC_READ:
        for (;;) {
            char b[4096];
            r = SSL_read(s->ssl, b, sizeof(b));
            if (r > 0) {
                if (s->got < (int)sizeof(s->head)) {
                    size_t k = sizeof(s->head) - (size_t)s->got;
                    memcpy(s->head + s->got, b, (size_t)r < k ? (size_t)r : k);
                }
                s->got += r;
                continue;
            }
            if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN) /* the server's close */
                return s->got >= 12 && memcmp(s->head, "HTTP/1.1 200", 12) == 0 ? 1 : -1;
            return tc_want(ep, s, idx, r);
        }
    }
    return -1;
}

static int cmd_tlscrr(const char *addr, const char *port, const char *secs, const char *conc,
                      const char *host, const char *cafile)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long seconds = parse_num(secs, 1, 3600), n = parse_num(conc, 1, 1024);
    tc_host = check_host(host);
    set_deadline((unsigned)seconds + 3 * IO_TIMEOUT_S);
    raise_nofile();
    tc_ctx = SSL_CTX_new(TLS_client_method());
    if (!tc_ctx)
        die("%s", "SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(tc_ctx, TLS1_2_VERSION);
    /* No session is ever offered back: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(tc_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(tc_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (strcmp(cafile, "none") != 0) {
        SSL_CTX_set_verify(tc_ctx, SSL_VERIFY_PEER, NULL);
        if (strcmp(cafile, "-") == 0 ? !SSL_CTX_set_default_verify_paths(tc_ctx)
                                     : !SSL_CTX_load_verify_locations(tc_ctx, cafile, NULL))
            die("cannot load the CA certificates (%s)", cafile);
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct tc_slot *slots = calloc((size_t)n, sizeof(*slots));
    size_t lat_cap = 65536, nlat = 0;
    int64_t *lat = malloc(lat_cap * sizeof(*lat));
    uint64_t done = 0, errors = 0, resumed = 0;
    unsigned long first_err = 0;
    int64_t t0 = now_ns(), end = t0 + seconds * 1000000000LL;
    long active = 0;
    for (long i = 0; i < n; i++) {
        if (tc_open(ep, &sa, &slots[i], (uint32_t)i) < 0)
            die("socket/connect: %s", strerror(errno));
        active++;
    }
    struct epoll_event evs[1024];
    int64_t last_sweep = t0;
    while (active > 0) {
        int64_t now = now_ns();
        if (now > end + CRR_STALL_NS)
            break;
        int k = epoll_wait(ep, evs, 1024, 100);
        for (int i = 0; i < k; i++) {
            uint32_t idx = evs[i].data.u32;
            struct tc_slot *s = &slots[idx];
            if (s->fd < 0)
                continue;
            int reused = 0;
            int r = tc_step(ep, s, idx, &reused);
            if (r == 0)
                continue;
            if (r < 0 && !first_err)
                first_err = ERR_peek_error() ? ERR_peek_error() : 1;
            ERR_clear_error();
            tc_close(ep, s);
            now = now_ns();
            if (r > 0 && now <= end) {
                done++;
                resumed += reused != 0;
                if (nlat == lat_cap)
                    lat = realloc(lat, (lat_cap *= 2) * sizeof(*lat));
                lat[nlat++] = now - s->started;
            } else if (r < 0) {
                errors++;
            }
            if (now < end && tc_open(ep, &sa, s, idx) == 0)
                continue;
            active--;
        }
        now = now_ns();
        if (now - last_sweep > 500000000LL) { /* stalled exchanges count as errors */
            last_sweep = now;
            for (long i = 0; i < n; i++) {
                struct tc_slot *s = &slots[i];
                if (s->fd < 0 || now - s->started < CRR_STALL_NS)
                    continue;
                tc_close(ep, s);
                errors++;
                if (now < end && tc_open(ep, &sa, s, (uint32_t)i) == 0)
                    continue;
                active--;
            }
        }
    }
    double p50 = 0, p99 = 0;
    if (nlat) {
        qsort(lat, nlat, sizeof(*lat), cmp_i64);
        p50 = (double)lat[(nlat - 1) / 2] / 1e6;
        p99 = (double)lat[(size_t)((double)(nlat - 1) * 0.99)] / 1e6;
    }
    printf("%.0f %llu %llu %llu %.4f %.4f\n", (double)done / (double)seconds,
           (unsigned long long)done, (unsigned long long)errors, (unsigned long long)resumed, p50,
           p99);
    if (done == 0 || errors * 100 > done) {
        char e[256] = "";
        if (first_err > 1)
            ERR_error_string_n(first_err, e, sizeof(e));
        fprintf(stderr, "tcpbench: tlscrr: %llu done, %llu errors%s%s\n", (unsigned long long)done,
                (unsigned long long)errors, *e ? "; first: " : "", e);
        return 1;
    }
    return 0;
}
#endif

/* ---- hrate: keep-alive HTTP at a fixed offered load ---- */

#define HR_QUEUE 1024 /* scheduled requests waiting per connection */
#define HR_BUF 4096
#define HR_DRAIN_NS (5 * 1000000000LL)

struct hr_conn {
    int fd;
    int busy;                /* a request is on the wire */
    int64_t queue[HR_QUEUE]; /* scheduled times, the head one in flight when busy */
    unsigned head, len;
    char buf[HR_BUF];
    size_t got;
};

static char hr_req[512];
static size_t hr_req_len;

static void hr_send(struct hr_conn *c)
{
    size_t off = 0;
    while (off < hr_req_len) {
        ssize_t w = send(c->fd, hr_req + off, hr_req_len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            /* A 60-byte request into an idle keep-alive connection's empty
             * send buffer: never partial in practice; wait briefly if so. */
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            if (poll(&p, 1, IO_TIMEOUT_S * 1000) <= 0)
                die("%s", "send stalled");
            continue;
        }
        if (w <= 0)
            die("send: %s", strerror(errno));
        off += (size_t)w;
    }
    c->busy = 1;
}

/* Bytes of one complete 200 response at the front of c->buf, 0 when
 * incomplete. */
static size_t hr_response_len(struct hr_conn *c)
{
    c->buf[c->got] = '\0';
    char *e = strstr(c->buf, "\r\n\r\n");
    if (!e)
        return 0;
    size_t head = (size_t)(e + 4 - c->buf);
    if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0)
        die("not a 200: %.40s", c->buf);
    long cl = -1;
    for (const char *l = strstr(c->buf, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "content-length:", 15) == 0)
            cl = strtol(l + 17, NULL, 10);
    if (cl < 0 || cl > HR_BUF / 2)
        die("%s", "a response without a usable Content-Length");
    return c->got >= head + (size_t)cl ? head + (size_t)cl : 0;
}

static int cmd_hrate(const char *addr, const char *port, const char *secs_s, const char *conns_s,
                     const char *rate_s, const char *host)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long secs = parse_num(secs_s, 1, 3600), n_conns = parse_num(conns_s, 1, 4096);
    long rate = parse_num(rate_s, 1, 10000000);
    hr_req_len = (size_t)snprintf(hr_req, sizeof(hr_req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
                                  check_host(host));
    set_deadline((unsigned)secs + 30);

    struct hr_conn *conns = calloc((size_t)n_conns, sizeof(*conns));
    size_t cap = (size_t)(secs * rate) + 1;
    int64_t *lat = malloc(cap * sizeof(*lat));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !lat || ep < 0)
        die("%s", "out of memory");
    for (long i = 0; i < n_conns; i++) {
        conns[i].fd = connect_blocking(&sa);
        int one = 1;
        setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }

    const int64_t interval = 1000000000LL / rate;
    const int64_t t0 = now_ns() + 1000000, t_end = t0 + secs * 1000000000LL;
    size_t scheduled = 0, done = 0;
    int64_t last_done = t0;
    for (;;) {
        int64_t now = now_ns();
        /* Issue everything scheduled by now. */
        for (;;) {
            int64_t t = t0 + (int64_t)scheduled * interval;
            if (t > now || t >= t_end)
                break;
            struct hr_conn *c = &conns[scheduled % (size_t)n_conns];
            if (c->len == HR_QUEUE)
                die("%s", "the offered load outran the proxy (a connection's queue is full)");
            c->queue[(c->head + c->len++) % HR_QUEUE] = t;
            scheduled++;
            if (!c->busy)
                hr_send(c);
        }
        if (done == scheduled && now_ns() >= t_end)
            break;
        if (now > t_end + HR_DRAIN_NS)
            die("%s", "responses still missing 5 s after the run");
        int64_t next = t0 + (int64_t)scheduled * interval;
        int64_t wait = next < t_end ? next - now_ns() : 10000000;
        if (wait < 0)
            wait = 0;
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        struct epoll_event evs[64];
        int n = epoll_pwait2(ep, evs, 64, &ts, NULL);
        if (n < 0 && errno != EINTR)
            die("epoll_pwait2: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct hr_conn *c = &conns[evs[i].data.u64];
            for (;;) {
                ssize_t r = read(c->fd, c->buf + c->got, HR_BUF - 1 - c->got);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0 && errno == EAGAIN)
                    break;
                if (r <= 0)
                    die("%s", r == 0 ? "the connection closed" : strerror(errno));
                c->got += (size_t)r;
                size_t len;
                while ((len = hr_response_len(c)) > 0) {
                    if (!c->busy)
                        die("%s", "a response nobody asked for");
                    int64_t t_done = now_ns();
                    if (done < cap)
                        lat[done] = t_done - c->queue[c->head];
                    done++;
                    last_done = t_done;
                    c->head = (c->head + 1) % HR_QUEUE;
                    c->len--;
                    c->busy = 0;
                    memmove(c->buf, c->buf + len, c->got - len);
                    c->got -= len;
                    if (c->len)
                        hr_send(c);
                }
                if (c->got >= HR_BUF - 1)
                    die("%s", "a response larger than the buffer");
            }
        }
    }
    size_t n = done < cap ? done : cap;
    qsort(lat, n, sizeof(*lat), cmp_i64);
    double span = (double)(last_done - t0) / 1e9;
    printf("%.0f %.3f %.3f %.3f %zu\n", (double)done / (span > 0 ? span : 1), lat[n / 2] / 1e6,
           lat[(size_t)((double)n * 0.99)] / 1e6, lat[(size_t)((double)n * 0.999)] / 1e6, done);
    for (long i = 0; i < n_conns; i++)
        close(conns[i].fd);
    free(conns);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "server") == 0)
        return cmd_server(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "bulk") == 0)
        return cmd_bulk(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "crr") == 0)
        return cmd_crr(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 5 && strcmp(argv[1], "idle") == 0)
        return cmd_idle(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "ping") == 0)
        return cmd_ping(argv[2], argv[3]);
    if (argc == 7 && strcmp(argv[1], "hcrr") == 0) {
        crr_set_http(argv[6]);
        return cmd_crr(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc == 5 && strcmp(argv[1], "hping") == 0)
        return cmd_hping(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "wsbulk") == 0)
        return cmd_wsbulk(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 8 && strcmp(argv[1], "hrate") == 0)
        return cmd_hrate(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7]);
#ifdef TCPBENCH_TLS
    if (argc == 8 && strcmp(argv[1], "tlscrr") == 0)
        return cmd_tlscrr(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7]);
#endif
    fprintf(stderr,
            "usage: tcpbench server ADDR PORT STATSFILE | bulk ADDR PORT SECONDS |\n"
            "       crr ADDR PORT SECONDS CONCURRENCY | idle ADDR PORT N | ping ADDR PORT |\n"
            "       hcrr ADDR PORT SECONDS CONCURRENCY HOST | hping ADDR PORT HOST |\n"
            "       wsbulk ADDR PORT SECONDS HOST | hrate ADDR PORT SECONDS CONNS RATE HOST"
#ifdef TCPBENCH_TLS
            " | tlscrr ADDR PORT SECONDS CONCURRENCY HOST CAFILE"
#endif
            "\n");
    return 2;
}
