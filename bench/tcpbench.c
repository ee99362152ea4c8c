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

enum { SRV_SINK, SRV_CRR, SRV_ECHO, SRV_N };

struct conn {
    int fd;
    int kind;
    uint64_t bytes;
};

static uint64_t srv_conns[SRV_N], srv_bytes;

static void write_stats(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "sink_conns %llu\nsink_bytes %llu\ncrr_conns %llu\necho_conns %llu\n",
            (unsigned long long)srv_conns[SRV_SINK], (unsigned long long)srv_bytes,
            (unsigned long long)srv_conns[SRV_CRR], (unsigned long long)srv_conns[SRV_ECHO]);
    fclose(f);
    rename(tmp, path);
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
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
                serve_conn(ep, evs[i].data.ptr, buf, bufsz);
            }
        }
    }
}

/* ---- clients ---- */

static int cmd_bulk(const char *addr, const char *port, const char *secs)
{
    struct sockaddr_in sa = parse_addr(addr, port);
    long seconds = parse_num(secs, 1, 3600);
    set_deadline((unsigned)seconds + 3 * IO_TIMEOUT_S);
    int fd = connect_blocking(&sa);
    char *buf = malloc(BULK_CHUNK);
    memset(buf, 'b', BULK_CHUNK);
    uint64_t sent = 0;
    int64_t t0 = now_ns(), end = t0 + seconds * 1000000000LL;
    while (now_ns() < end) {
        ssize_t w = write(fd, buf, BULK_CHUNK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("write: %s", errno == EAGAIN ? "timed out (stalled)" : strerror(errno));
        sent += (uint64_t)w;
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

enum { CRR_CONNECTING, CRR_WAITING };

struct crr_slot {
    int fd;
    int state;
    int got;
    int64_t started;
};

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
        if (write(s->fd, "x", 1) != 1)
            return -1;
        s->state = CRR_WAITING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        return 0;
    }
    char b[16];
    for (;;) {
        ssize_t r = read(s->fd, b, sizeof(b));
        if (r > 0) {
            s->got += (int)r;
            continue;
        }
        if (r == 0)
            return s->got == 1 ? 1 : -1; /* response, then the server's FIN */
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
    fprintf(stderr,
            "usage: tcpbench server ADDR PORT STATSFILE | bulk ADDR PORT SECONDS |\n"
            "       crr ADDR PORT SECONDS CONCURRENCY | idle ADDR PORT N | ping ADDR PORT\n");
    return 2;
}
