/*
 * ident against real sockets: in our own namespace, from forked children, and
 * from children in fresh network namespaces.  Loopback only.
 *
 * Includes ident.c to reach its caches and counters: the tests prove which
 * path a lookup took (socket cache, remembered fd, fd table, walk of /proc) and plant
 * stale cache entries to show that none is trusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ident.c"
#include "util.h"

/* A second child (a grandchild left behind by the first); killed too. */
static pid_t child2 = -1;

/* A child this test started; killed in teardown even when an assert fails. */
static pid_t child = -1;

struct flow {
    int listen_fd, client_fd, accept_fd;
    struct net_addr src, dst;
    uint16_t sport, dport;
};

static int teardown_child(void **state)
{
    (void)state;
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
    if (child2 > 0) {
        kill(child2, SIGKILL);
        waitpid(child2, NULL, 0); /* ours: main() made us a subreaper */
        child2 = -1;
    }
    return 0;
}

static void self_exe(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    assert_true(n > 0);
    buf[n] = '\0';
}

static int open_ns(pid_t pid)
{
    char path[64];
    int fd;

    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/ns/net");
    else
        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Listening socket on addr, port chosen by the kernel. Returns the fd or -1. */
static int listen_on(const char *addr, struct net_addr *ret_addr, uint16_t *ret_port)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd;

    if (net_addr_parse(addr, ret_addr) < 0)
        return -1;
    sl = net_addr_to_sockaddr(ret_addr, 0, &ss);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0)
        goto fail;
    sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        goto fail;
    net_addr_from_sockaddr((struct sockaddr *)&ss, ret_addr, ret_port);
    return fd;
fail:
    close(fd);
    return -1;
}

/* Client socket of family connected to to:port; fills its local end. */
static int connect_to(int family, const struct sockaddr *to, socklen_t tolen,
                      struct net_addr *ret_src, uint16_t *ret_sport)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, to, tolen) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        close(fd);
        return -1;
    }
    net_addr_from_sockaddr((struct sockaddr *)&ss, ret_src, ret_sport);
    return fd;
}

static void flow_open(struct flow *f, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;

    f->listen_fd = listen_on(addr, &f->dst, &f->dport);
    assert_true(f->listen_fd >= 0);
    sl = net_addr_to_sockaddr(&f->dst, f->dport, &ss);
    f->client_fd = connect_to(ss.ss_family, (struct sockaddr *)&ss, sl, &f->src, &f->sport);
    assert_true(f->client_fd >= 0);
    f->accept_fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(f->accept_fd >= 0);
}

static void flow_close(struct flow *f)
{
    close(f->client_fd);
    close(f->accept_fd);
    close(f->listen_fd);
}

/* Open fds of this process, to catch a lookup that leaks one. */
static int count_fds(void)
{
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n++;
    closedir(d);
    return n;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static struct ident_stats stats_of(struct ident_ctx *ctx)
{
    struct ident_stats s;

    pthread_mutex_lock(&ctx->lock);
    s = ctx->stats;
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

static void sock_cache_clear(struct ident_ctx *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    memset(ctx->socks, 0, sizeof(ctx->socks));
    pthread_mutex_unlock(&ctx->lock);
}

static struct ident_ctx *ctx_for(pid_t pid)
{
    int nsfd = open_ns(pid);
    struct ident_ctx *ctx = ident_ctx_new(nsfd);

    assert_non_null(ctx);
    close(nsfd); /* the context keeps the namespace itself */
    return ctx;
}

static uint32_t flow_inode(struct ident_ctx *ctx, const struct flow *f)
{
    struct diag_query q = {.src = &f->src, .dst = &f->dst, .sport = f->sport, .dport = f->dport};
    uint32_t inode = 0;

    assert_int_equal(diag_find_inode(ctx, &q, false, &inode), 0);
    return inode;
}

static uint64_t start_of(pid_t pid)
{
    char path[32];
    uint64_t start;
    int piddir;

    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    piddir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(piddir >= 0);
    assert_int_equal(read_start(piddir, &start), 0);
    close(piddir);
    return start;
}

static int lookup(struct ident_ctx *ctx, const struct flow *f, pid_t *pid)
{
    return ident_lookup(ctx, &f->src, f->sport, &f->dst, f->dport, pid, NULL, 0);
}

/* Forget the socket fds remembered for the members: the next lookup lists
 * their fd tables. */
static void member_fds_clear(struct ident_ctx *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->n_members; i++)
        ctx->members[i].n_fds = 0;
    pthread_mutex_unlock(&ctx->lock);
}

/* How a lookup of f is timed: the same flow again (socket cache), with the
 * socket cache emptied first (found at a remembered fd of the member), with
 * the member's remembered fds forgotten too (its fd table listed), or with a
 * new context each time (what every lookup cost before contexts: a thread
 * into the namespace for the diag socket and a full walk of /proc). */
enum timing { TIME_CACHED = 0, TIME_PROBE, TIME_SCAN, TIME_NEW_CTX, TIME_MAX };

/* Mean microseconds per lookup of a flow that must resolve to want_pid. */
static double time_lookups(struct ident_ctx *ctx, pid_t ns_pid, const struct flow *f,
                           pid_t want_pid, enum timing how, int rounds)
{
    char exe[PATH_MAX];
    pid_t pid;
    double t0 = now_us();

    for (int i = 0; i < rounds; i++) {
        struct ident_ctx *c = ctx;
        int nsfd = -1;

        if (how == TIME_NEW_CTX) {
            nsfd = open_ns(ns_pid);
            c = ident_ctx_new(nsfd);
            assert_non_null(c);
        } else if (how == TIME_PROBE || how == TIME_SCAN) {
            sock_cache_clear(ctx);
            if (how == TIME_SCAN)
                member_fds_clear(ctx);
        }
        assert_int_equal(
            ident_lookup(c, &f->src, f->sport, &f->dst, f->dport, &pid, exe, sizeof(exe)), 0);
        assert_int_equal(pid, want_pid);
        if (how == TIME_NEW_CTX) {
            ident_ctx_free(c);
            close(nsfd);
        }
    }
    return (now_us() - t0) / rounds;
}

static void print_timings(struct ident_ctx *ctx, pid_t ns_pid, const struct flow *f, pid_t want_pid,
                          const char *what)
{
    double cached = time_lookups(ctx, ns_pid, f, want_pid, TIME_CACHED, 1000);
    double probe = time_lookups(ctx, ns_pid, f, want_pid, TIME_PROBE, 1000);
    double scan = time_lookups(ctx, ns_pid, f, want_pid, TIME_SCAN, 1000);
    double fresh = time_lookups(ctx, ns_pid, f, want_pid, TIME_NEW_CTX, 200);

    print_message("  %s (%s): mean lookup %.1f us socket cached, %.1f us remembered fd, %.1f us "
                  "fd table listed, %.1f us with a new context each time\n",
                  what, ns_pid ? "other namespace" : "same namespace", cached, probe, scan, fresh);
}

static void check_self(const char *addr)
{
    char exe[PATH_MAX], want[PATH_MAX];
    struct ident_ctx *ctx;
    struct flow f;
    pid_t pid = 0;
    int nfds;

    nfds = count_fds();
    ctx = ctx_for(0);
    self_exe(want, sizeof(want));
    flow_open(&f, addr);
    assert_int_equal(ident_lookup(ctx, &f.src, f.sport, &f.dst, f.dport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, getpid());
    assert_string_equal(exe, want);

    /* The server end of the same connection is a different socket: the
     * reversed tuple must resolve too (to us), proving the exact match. */
    assert_int_equal(ident_lookup(ctx, &f.dst, f.dport, &f.src, f.sport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, getpid());

    print_timings(ctx, 0, &f, getpid(), addr);
    flow_close(&f);
    ident_ctx_free(ctx);
    /* Lookups and the context leave no fd behind. */
    assert_int_equal(count_fds(), nfds);
}

static void test_self_v4(void **state)
{
    (void)state;
    check_self("127.0.0.1");
}

static void test_self_v6(void **state)
{
    (void)state;
    check_self("::1");
}

/* A dual-stack AF_INET6 client talking to an IPv4 server: the daemon sees an
 * IPv4 flow, the kernel reports the socket with v4-mapped addresses. */
static void test_dual_stack_mapped(void **state)
{
    struct ident_ctx *ctx = ctx_for(0);
    struct sockaddr_in6 to;
    struct flow f;
    pid_t pid = 0;

    (void)state;
    f.listen_fd = listen_on("127.0.0.1", &f.dst, &f.dport);
    assert_true(f.listen_fd >= 0);
    memset(&to, 0, sizeof(to));
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(f.dport);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &to.sin6_addr), 1);
    f.client_fd = connect_to(AF_INET6, (struct sockaddr *)&to, sizeof(to), &f.src, &f.sport);
    assert_true(f.client_fd >= 0);
    assert_int_equal(f.src.family, AF_INET); /* normalised by util */
    f.accept_fd = accept4(f.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(f.accept_fd >= 0);

    assert_int_equal(lookup(ctx, &f, &pid), 0);
    assert_int_equal(pid, getpid());
    flow_close(&f);
    ident_ctx_free(ctx);
}

static void test_forked_child(void **state)
{
    struct sockaddr_storage ss;
    struct ident_ctx *ctx = ctx_for(0);
    struct net_addr dst, src;
    uint16_t dport, sport;
    char exe[PATH_MAX], want[PATH_MAX];
    socklen_t sl;
    pid_t pid = 0;
    int lfd, p[2];

    (void)state;
    self_exe(want, sizeof(want));
    lfd = listen_on("127.0.0.1", &dst, &dport);
    assert_true(lfd >= 0);
    sl = net_addr_to_sockaddr(&dst, dport, &ss);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);

    /* Members known before the child exists: its lookup must find it anyway. */
    {
        struct flow warm;
        flow_open(&warm, "127.0.0.1");
        assert_int_equal(lookup(ctx, &warm, &pid), 0);
        flow_close(&warm);
    }

    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int fd;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        fd = connect_to(ss.ss_family, (struct sockaddr *)&ss, sl, &src, &sport);
        if (fd < 0 || write(p[1], &sport, sizeof(sport)) != sizeof(sport))
            _exit(1);
        /* Hold the socket until the parent kills us. */
        for (;;)
            pause();
    }
    close(p[1]);
    assert_int_equal(read(p[0], &sport, sizeof(sport)), (ssize_t)sizeof(sport));
    close(p[0]);
    src = dst;

    assert_int_equal(ident_lookup(ctx, &src, sport, &dst, dport, &pid, exe, sizeof(exe)), 0);
    assert_int_equal(pid, child);
    assert_string_equal(exe, want);

    /* Truncation keeps a NUL-terminated prefix. */
    assert_int_equal(ident_lookup(ctx, &src, sport, &dst, dport, &pid, exe, 5), 0);
    assert_int_equal(strlen(exe), 4);
    assert_memory_equal(exe, want, 4);

    /* Once the holder is gone the flow has no owner any more. */
    teardown_child(NULL);
    assert_int_equal(ident_lookup(ctx, &src, sport, &dst, dport, &pid, exe, sizeof(exe)), -ENOENT);
    close(lfd);
    ident_ctx_free(ctx);
}

static void test_not_found(void **state)
{
    struct ident_ctx *ctx = ctx_for(0);
    struct net_addr a;
    struct flow f;
    pid_t pid = 0;

    (void)state;
    flow_open(&f, "127.0.0.1");

    /* Wrong source port. */
    assert_int_equal(
        ident_lookup(ctx, &f.src, (uint16_t)(f.sport ^ 1), &f.dst, f.dport, &pid, NULL, 0),
        -ENOENT);
    /* The listener's own address as source: the kernel would hand back the
     * listening socket, which must not be mistaken for a client. */
    assert_int_equal(net_addr_parse("127.0.0.2", &a), 0);
    assert_int_equal(ident_lookup(ctx, &f.dst, f.dport, &a, 40000, &pid, NULL, 0), -ENOENT);
    /* Right ports, wrong family of the same flow. */
    assert_int_equal(net_addr_parse("::1", &a), 0);
    assert_int_equal(ident_lookup(ctx, &a, f.sport, &a, f.dport, &pid, NULL, 0), -ENOENT);

    /* Found once (and cached), then the client closes first: it lingers as
     * an orphan (FIN_WAIT/TIME_WAIT) without an inode, owned by nobody. */
    assert_int_equal(lookup(ctx, &f, &pid), 0);
    close(f.client_fd);
    assert_int_equal(lookup(ctx, &f, &pid), -ENOENT);
    close(f.accept_fd);
    close(f.listen_fd);
    ident_ctx_free(ctx);
}

static void test_bad_args(void **state)
{
    struct ident_ctx *ctx;
    struct net_addr v4, v6;
    pid_t pid;
    int fd, nfds;

    (void)state;
    nfds = count_fds();
    assert_int_equal(net_addr_parse("127.0.0.1", &v4), 0);
    assert_int_equal(net_addr_parse("::1", &v6), 0);

    errno = 0;
    assert_null(ident_ctx_new(-1));
    assert_int_equal(errno, EBADF);
    /* Not a namespace: setns refuses it. */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    errno = 0;
    assert_null(ident_ctx_new(fd));
    assert_int_equal(errno, EINVAL);
    close(fd);
    assert_null(ident_ctx_free(NULL));
    assert_int_equal(ident_lookup(NULL, &v4, 1, &v4, 2, &pid, NULL, 0), -EINVAL);

    ctx = ctx_for(0);
    assert_int_equal(ident_lookup(ctx, &v4, 1, &v6, 2, &pid, NULL, 0), -EINVAL);
    assert_int_equal(ident_lookup(ctx, NULL, 1, &v4, 2, &pid, NULL, 0), -EINVAL);
    /* A real namespace, no such flow. */
    assert_int_equal(ident_lookup(ctx, &v4, 1, &v4, 2, &pid, NULL, 0), -ENOENT);
    assert_null(ident_ctx_free(ctx));
    assert_int_equal(count_fds(), nfds);
}

/* ---- children in their own network namespace ---- */

#define NSCHILD_FLOWS 4

struct nschild_info {
    pid_t pid;
    uint16_t dport;
    uint16_t sport[NSCHILD_FLOWS];
};

/* A child in a fresh network namespace holding NSCHILD_FLOWS loopback
 * connections (client fds first).  It obeys one-byte commands on cmd:
 *  'f': fork a grandchild that holds everything, report its pid, exit;
 *  's': send the first client fd over the unix socket us, close its own.
 */
struct nschild {
    pid_t pid;
    int cmd, reply, us; /* our ends */
    struct nschild_info info;
    struct flow flows[NSCHILD_FLOWS]; /* only the addresses */
};

static void nschild_main(int wfd, int rfd, int us)
{
    struct nschild_info info = {0};
    struct sockaddr_storage ss;
    struct net_addr dst, src;
    struct ifreq ifr;
    socklen_t sl;
    int s, lfd, cfd[NSCHILD_FLOWS];
    char c;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (unshare(CLONE_NEWNET) < 0)
        _exit(1);
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        _exit(1);
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        _exit(1);
    close(s);

    lfd = listen_on("127.0.0.1", &dst, &info.dport);
    if (lfd < 0)
        _exit(1);
    sl = net_addr_to_sockaddr(&dst, info.dport, &ss);
    for (int i = 0; i < NSCHILD_FLOWS; i++) {
        cfd[i] = connect_to(ss.ss_family, (struct sockaddr *)&ss, sl, &src, &info.sport[i]);
        if (cfd[i] < 0)
            _exit(1);
    }
    info.pid = getpid();
    if (write(wfd, &info, sizeof(info)) != sizeof(info))
        _exit(1);
    while (read(rfd, &c, 1) == 1) {
        if (c == 'f') {
            pid_t g = fork();

            if (g < 0)
                _exit(1);
            if (g == 0) {
                /* The grandchild: holds every socket until killed. */
                for (;;)
                    pause();
            }
            if (write(wfd, &g, sizeof(g)) != sizeof(g))
                _exit(1);
            _exit(0);
        } else if (c == 's') {
            char data = 'x';
            union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
            } u;
            struct iovec iov = {.iov_base = &data, .iov_len = 1};
            struct msghdr msg = {.msg_iov = &iov,
                                 .msg_iovlen = 1,
                                 .msg_control = u.buf,
                                 .msg_controllen = sizeof(u.buf)};
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &cfd[0], sizeof(int));
            if (sendmsg(us, &msg, 0) != 1)
                _exit(1);
            close(cfd[0]);
            if (write(wfd, "k", 1) != 1)
                _exit(1);
        }
    }
    /* Hold the sockets until the parent kills us. */
    for (;;)
        pause();
}

/* Starts the namespace child as `child`. */
static void nschild_start(struct nschild *c)
{
    int down[2], up[2], sp[2];

    assert_int_equal(pipe2(down, O_CLOEXEC), 0);
    assert_int_equal(pipe2(up, O_CLOEXEC), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        close(sp[0]);
        nschild_main(up[1], down[0], sp[1]);
    }
    close(down[0]);
    close(up[1]);
    close(sp[1]);
    c->pid = child;
    c->cmd = down[1];
    c->reply = up[0];
    c->us = sp[0];
    assert_int_equal(read(c->reply, &c->info, sizeof(c->info)), (ssize_t)sizeof(c->info));
    assert_int_equal(c->info.pid, child);
    memset(c->flows, 0, sizeof(c->flows));
    for (int i = 0; i < NSCHILD_FLOWS; i++) {
        assert_int_equal(net_addr_parse("127.0.0.1", &c->flows[i].src), 0);
        c->flows[i].dst = c->flows[i].src;
        c->flows[i].sport = c->info.sport[i];
        c->flows[i].dport = c->info.dport;
    }
}

static void nschild_close(struct nschild *c)
{
    close(c->cmd);
    close(c->reply);
    close(c->us);
}

static void test_other_netns(void **state)
{
    char exe[PATH_MAX], want[PATH_MAX];
    struct ident_ctx *ctx, *self;
    struct nschild c;
    pid_t pid = 0;
    int selffd = open_ns(0);

    (void)state;
    self_exe(want, sizeof(want));
    nschild_start(&c);
    ctx = ctx_for(c.pid);
    self = ctx_for(0);

    assert_int_equal(ident_lookup(ctx, &c.flows[0].src, c.flows[0].sport, &c.flows[0].dst,
                                  c.flows[0].dport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, c.pid);
    assert_string_equal(exe, want);

    /* The same tuple means nothing in our own namespace. */
    assert_int_equal(lookup(self, &c.flows[0], &pid), -ENOENT);

    /* The helper thread's setns must not leak into the calling thread. */
    {
        struct stat a, b;
        assert_int_equal(stat("/proc/thread-self/ns/net", &a), 0);
        assert_int_equal(fstat(selffd, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    }

    print_timings(ctx, c.pid, &c.flows[0], c.pid, "127.0.0.1");

    teardown_child(NULL);
    /* The namespace lives on through ctx, but the socket died with the child. */
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), -ENOENT);
    nschild_close(&c);
    ident_ctx_free(ctx);
    ident_ctx_free(self);
    close(selffd);
}

/* The second lookup of a flow is answered from the socket cache, a new flow of
 * a known process from its remembered fds or a scan of its fd table: none
 * walks /proc. */
static void test_cache_path(void **state)
{
    struct ident_stats s0, s1, s2, s3, s4;
    struct ident_ctx *ctx;
    struct nschild c;
    pid_t pid = 0;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);

    s0 = stats_of(ctx);
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);
    s1 = stats_of(ctx);
    assert_true(s1.walks > s0.walks); /* nothing known yet: one walk */
    assert_true(s1.full_walks > s0.full_walks);

    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);
    s2 = stats_of(ctx);
    assert_int_equal(s2.walks, s1.walks);
    assert_int_equal(s2.scans, s1.scans);
    assert_int_equal(s2.sock_hits, s1.sock_hits + 1);

    /* Another flow of the same process, without the socket cache: the
     * member is scanned, /proc is not walked. */
    sock_cache_clear(ctx);
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, c.pid);
    s3 = stats_of(ctx);
    assert_int_equal(s3.walks, s2.walks);
    assert_int_equal(s3.scans, s2.scans + 1);
    assert_int_equal(s3.sock_hits, s2.sock_hits);

    /* That scan saw the sockets before flow 1's in the fd table too (flow 0
     * has the lower fd): they cost no scan now. */
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);
    assert_int_equal(stats_of(ctx).scans, s3.scans);
    assert_int_equal(stats_of(ctx).walks, s3.walks);
    assert_int_equal(stats_of(ctx).sock_hits, s3.sock_hits + 1);

    /* Without the socket cache, flow 1 is found at an fd the member held a
     * socket at when it was scanned: one readlink, no listing. */
    sock_cache_clear(ctx);
    s3 = stats_of(ctx);
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, c.pid);
    s4 = stats_of(ctx);
    assert_int_equal(s4.probe_hits, s3.probe_hits + 1);
    assert_int_equal(s4.scans, s3.scans);
    assert_int_equal(s4.walks, s3.walks);
    assert_int_equal(s4.sock_hits, s3.sock_hits);

    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

static int lookup_quick(struct ident_ctx *ctx, const struct flow *f, pid_t *pid)
{
    return ident_lookup_quick(ctx, &f->src, f->sport, &f->dst, f->dport, pid, NULL, 0);
}

/* The quick lookup (the daemon's, on its event loop) answers only from what
 * the context already knows, never listing a fd table or walking /proc, and
 * says -EAGAIN otherwise. */
static void test_quick_path(void **state)
{
    struct ident_stats s0, s1, s2;
    struct ident_ctx *ctx;
    struct nschild c;
    char exe[PATH_MAX];
    pid_t pid = 0;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);

    /* A fresh context knows no process: the pool's full lookup is needed. */
    s0 = stats_of(ctx);
    assert_int_equal(lookup_quick(ctx, &c.flows[1], &pid), -EAGAIN);
    s1 = stats_of(ctx);
    assert_int_equal(s1.walks, s0.walks);
    assert_int_equal(s1.scans, s0.scans);

    /* The full lookup of flow 1 lists the child's fd table, which holds
     * flow 0's socket too: both fds are remembered. */
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, c.pid);

    /* Flow 0 quickly, without the socket cache: found at a remembered fd. */
    sock_cache_clear(ctx);
    s1 = stats_of(ctx);
    pid = 0;
    assert_int_equal(ident_lookup_quick(ctx, &c.flows[0].src, c.flows[0].sport, &c.flows[0].dst,
                                        c.flows[0].dport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, c.pid);
    assert_true(exe[0] == '/');
    s2 = stats_of(ctx);
    assert_int_equal(s2.probe_hits, s1.probe_hits + 1);
    assert_int_equal(s2.scans, s1.scans);
    assert_int_equal(s2.walks, s1.walks);

    /* A tuple no socket has: -ENOENT from the netlink query, as the full
     * lookup says. */
    assert_int_equal(ident_lookup_quick(ctx, &c.flows[0].src, (uint16_t)(c.flows[0].sport ^ 1),
                                        &c.flows[0].dst, c.flows[0].dport, &pid, NULL, 0),
                     -ENOENT);

    /* Its remembered fds forgotten, the member is not listed quickly. */
    sock_cache_clear(ctx);
    member_fds_clear(ctx);
    s1 = stats_of(ctx);
    assert_int_equal(lookup_quick(ctx, &c.flows[0], &pid), -EAGAIN);
    assert_int_equal(stats_of(ctx).scans, s1.scans);

    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

/* A cached member that exited is not reported: the process that holds the
 * socket now (forked from it, so unknown to the cache) is. */
static void test_member_exited(void **state)
{
    struct ident_ctx *ctx;
    struct nschild c;
    pid_t pid = 0, g;
    int status;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);

    assert_int_equal(write(c.cmd, "f", 1), 1);
    assert_int_equal(read(c.reply, &g, sizeof(g)), (ssize_t)sizeof(g));
    child2 = g;
    assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
    child = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* The socket cache and the member list both name the dead child. */
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, g);
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, g);
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->n_members; i++)
        assert_int_not_equal(ctx->members[i].pid, c.pid);
    pthread_mutex_unlock(&ctx->lock);

    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

/* A cached member whose PID now belongs to another process (simulated: the
 * recorded start time differs), and a cached member that is a process outside
 * the namespace (the test itself, holding a socket of the namespace that the
 * child passed to it): neither is ever reported. */
static void test_pid_reuse(void **state)
{
    struct ident_stats s0, s1;
    struct ident_ctx *ctx;
    struct nschild c;
    uint32_t inode;
    pid_t pid = 0;
    char ack;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);
    inode = flow_inode(ctx, &c.flows[0]);

    /* Every record of the child says "started at another time", and there
     * is another member (this process, outside the namespace, planted first
     * in the list): the list does not become empty when the child's record
     * is dropped, so no full walk is allowed for it. */
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->n_members; i++)
        if (ctx->members[i].pid == c.pid)
            ctx->members[i].start++;
    for (size_t i = 0; i < IDENT_SOCK_SLOTS; i++)
        if (ctx->socks[i].pid == c.pid)
            ctx->socks[i].start++;
    ctx->members = realloc(ctx->members, (ctx->n_members + 1) * sizeof(*ctx->members));
    assert_non_null(ctx->members);
    ctx->cap_members = ctx->n_members + 1;
    memmove(ctx->members + 1, ctx->members, ctx->n_members * sizeof(*ctx->members));
    ctx->members[0] =
        (struct ident_member){.pid = getpid(), .start = start_of(getpid()), .gen = ctx->gen};
    ctx->n_members++;
    pthread_mutex_unlock(&ctx->lock);
    s0 = stats_of(ctx);
    /* Found again, but only through an incremental walk that classified the
     * dropped member's PID afresh. */
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    assert_int_equal(pid, c.pid);
    s1 = stats_of(ctx);
    assert_int_equal(s1.sock_hits, s0.sock_hits);
    assert_int_equal(s1.walks, s0.walks + 1);
    assert_int_equal(s1.full_walks, s0.full_walks);
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->n_members; i++)
        if (ctx->members[i].pid == c.pid)
            assert_true(ctx->members[i].start == start_of(c.pid));
    pthread_mutex_unlock(&ctx->lock);

    /* Now the only holder of flow 0 is this process, outside the namespace,
     * and it is made a member and cached as the holder. */
    assert_int_equal(write(c.cmd, "s", 1), 1);
    assert_int_equal(read(c.reply, &ack, 1), 1);
    {
        char data;
        int fd = -1;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct iovec iov = {.iov_base = &data, .iov_len = 1};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = u.buf,
                             .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *cm;

        assert_int_equal(recvmsg(c.us, &msg, MSG_CMSG_CLOEXEC), 1);
        cm = CMSG_FIRSTHDR(&msg);
        assert_non_null(cm);
        memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
        assert_true(fd >= 0);

        /* This process is still a planted member; cache it as the holder. */
        pthread_mutex_lock(&ctx->lock);
        assert_true(member_find(ctx, getpid(), start_of(getpid())) >= 0);
        *sock_slot(ctx, inode) = (struct ident_sock){
            .inode = inode, .fd = fd, .pid = getpid(), .start = start_of(getpid())};
        pthread_mutex_unlock(&ctx->lock);
        assert_int_equal(lookup(ctx, &c.flows[0], &pid), -ENOENT);
        /* The other flows still belong to the child. */
        assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
        assert_int_equal(pid, c.pid);
        close(fd);
    }

    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

/* An inode number cached for a (pid, fd) that holds another socket now (the
 * fd was closed and reused, or the inode number was): the cache entry is
 * checked with one readlink, fails, and the scan finds the real holder. */
static void test_inode_reuse(void **state)
{
    struct ident_stats s0, s1;
    struct ident_ctx *ctx;
    struct nschild c;
    struct flow mine;
    uint32_t inode;
    pid_t pid = 0;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);
    assert_int_equal(lookup(ctx, &c.flows[0], &pid), 0);
    inode = flow_inode(ctx, &c.flows[1]);

    /* Flow 1's inode, cached as held by a socket fd of ours (the fd of
     * another socket, in another namespace). */
    flow_open(&mine, "127.0.0.1");
    pthread_mutex_lock(&ctx->lock);
    *sock_slot(ctx, inode) = (struct ident_sock){
        .inode = inode, .fd = mine.client_fd, .pid = getpid(), .start = start_of(getpid())};
    pthread_mutex_unlock(&ctx->lock);
    s0 = stats_of(ctx);
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, c.pid);
    s1 = stats_of(ctx);
    assert_int_equal(s1.sock_hits, s0.sock_hits);
    assert_int_equal(s1.scans, s0.scans + 1);

    /* Cached as held by the right process, at the wrong fd. */
    pthread_mutex_lock(&ctx->lock);
    sock_slot(ctx, inode)->fd = 0;
    pthread_mutex_unlock(&ctx->lock);
    assert_int_equal(lookup(ctx, &c.flows[1], &pid), 0);
    assert_int_equal(pid, c.pid);
    assert_int_equal(stats_of(ctx).sock_hits, s1.sock_hits);

    /* A real close and reopen in our own namespace: the new socket likely
     * takes the closed one's fd number. */
    {
        struct ident_ctx *self = ctx_for(0);
        struct flow a, b;

        flow_open(&a, "127.0.0.1");
        assert_int_equal(lookup(self, &a, &pid), 0);
        assert_int_equal(pid, getpid());
        flow_close(&a);
        flow_open(&b, "127.0.0.1");
        assert_int_equal(lookup(self, &b, &pid), 0);
        assert_int_equal(pid, getpid());
        assert_int_equal(lookup(self, &a, &pid), -ENOENT);
        flow_close(&b);
        ident_ctx_free(self);
    }

    flow_close(&mine);
    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

struct worker {
    struct ident_ctx *ctx;
    const struct flow *f;
    pid_t want;
    bool clear; /* empty the socket cache now and then: scan concurrently */
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pid_t pid;

    for (int i = 0; i < 200; i++) {
        if (w->clear && i % 8 == 0)
            sock_cache_clear(w->ctx);
        if (lookup(w->ctx, w->f, &pid) != 0 || pid != w->want)
            w->failures++;
    }
    return NULL;
}

/* Four threads on one fresh context (they race on the first walk, then on
 * scans and the caches), each looking up its own flow. */
static void test_concurrent_one_ctx(void **state)
{
    struct worker w[NSCHILD_FLOWS];
    pthread_t t[NSCHILD_FLOWS];
    struct ident_ctx *ctx;
    struct nschild c;

    (void)state;
    nschild_start(&c);
    ctx = ctx_for(c.pid);
    for (int i = 0; i < NSCHILD_FLOWS; i++) {
        w[i] = (struct worker){.ctx = ctx, .f = &c.flows[i], .want = c.pid, .clear = i % 2};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NSCHILD_FLOWS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(ctx);
}

/* Four threads on two contexts, one of them another namespace: no namespace
 * leaks between threads. */
static void test_concurrent_two_ctx(void **state)
{
    struct worker w[4];
    pthread_t t[4];
    struct ident_ctx *self, *other;
    struct nschild c;
    struct flow f;

    (void)state;
    flow_open(&f, "127.0.0.1");
    nschild_start(&c);
    self = ctx_for(0);
    other = ctx_for(c.pid);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ctx = i % 2 ? other : self,
                               .f = i % 2 ? &c.flows[i] : &f,
                               .want = i % 2 ? c.pid : getpid(),
                               .clear = i >= 2};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    flow_close(&f);
    teardown_child(NULL);
    nschild_close(&c);
    ident_ctx_free(self);
    ident_ctx_free(other);
}

/* A namespace is found through a process in it, then, once none is, only
 * through a holder's open files; never one of another identity. */
static void test_netns_find(void **state)
{
    struct nschild c;
    struct stat want, got;
    int fd, held;

    (void)state;
    nschild_start(&c);
    held = open_ns(c.pid);
    assert_int_equal(fstat(held, &want), 0);

    fd = ident_netns_find(want.st_dev, want.st_ino, 0);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &got), 0);
    assert_true(got.st_dev == want.st_dev && got.st_ino == want.st_ino);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);

    /* No process in it any more: only our open file holds it. */
    teardown_child(NULL);
    nschild_close(&c);
    assert_int_equal(ident_netns_find(want.st_dev, want.st_ino, 0), -ENOENT);
    fd = ident_netns_find(want.st_dev, want.st_ino, getpid());
    assert_true(fd >= 0 && fd != held);
    assert_int_equal(fstat(fd, &got), 0);
    assert_true(got.st_dev == want.st_dev && got.st_ino == want.st_ino);
    close(fd);

    /* Our own namespace's device with an inode no namespace has. */
    assert_int_equal(ident_netns_find(want.st_dev, 1, getpid()), -ENOENT);
    close(held);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_v4),
        cmocka_unit_test(test_self_v6),
        cmocka_unit_test(test_dual_stack_mapped),
        cmocka_unit_test_teardown(test_forked_child, teardown_child),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test_teardown(test_other_netns, teardown_child),
        cmocka_unit_test_teardown(test_cache_path, teardown_child),
        cmocka_unit_test_teardown(test_quick_path, teardown_child),
        cmocka_unit_test_teardown(test_member_exited, teardown_child),
        cmocka_unit_test_teardown(test_pid_reuse, teardown_child),
        cmocka_unit_test_teardown(test_inode_reuse, teardown_child),
        cmocka_unit_test_teardown(test_concurrent_one_ctx, teardown_child),
        cmocka_unit_test_teardown(test_concurrent_two_ctx, teardown_child),
        cmocka_unit_test_teardown(test_netns_find, teardown_child),
    };

    /* Grandchildren left by a child that exits are reparented to us. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
