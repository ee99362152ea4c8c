/*
 * ident_lookup against real sockets: in our own namespace, from a forked
 * child, and from a child in a fresh network namespace. Loopback only.
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

#include "ident.h"
#include "util.h"

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

/* Mean microseconds per lookup of a flow that must resolve to want_pid. */
static double time_lookups(int nsfd, const struct flow *f, pid_t want_pid, int rounds)
{
    char exe[PATH_MAX];
    pid_t pid;
    double t0 = now_us();

    for (int i = 0; i < rounds; i++) {
        assert_int_equal(
            ident_lookup(nsfd, &f->src, f->sport, &f->dst, f->dport, &pid, exe, sizeof(exe)), 0);
        assert_int_equal(pid, want_pid);
    }
    return (now_us() - t0) / rounds;
}

static void check_self(const char *addr)
{
    char exe[PATH_MAX], want[PATH_MAX];
    struct flow f;
    pid_t pid = 0;
    int nfds, nsfd = open_ns(0);

    self_exe(want, sizeof(want));
    flow_open(&f, addr);
    assert_int_equal(ident_lookup(nsfd, &f.src, f.sport, &f.dst, f.dport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, getpid());
    assert_string_equal(exe, want);

    /* The server end of the same connection is a different socket: the
     * reversed tuple must resolve too (to us), proving the exact match. */
    assert_int_equal(ident_lookup(nsfd, &f.dst, f.dport, &f.src, f.sport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, getpid());

    nfds = count_fds();
    print_message("  %s: mean lookup %.1f us over 1000 (same namespace)\n", addr,
                  time_lookups(nsfd, &f, getpid(), 1000));
    assert_int_equal(count_fds(), nfds);
    flow_close(&f);
    close(nsfd);
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
    struct sockaddr_in6 to;
    struct flow f;
    pid_t pid = 0;
    int nsfd = open_ns(0);

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

    assert_int_equal(ident_lookup(nsfd, &f.src, f.sport, &f.dst, f.dport, &pid, NULL, 0), 0);
    assert_int_equal(pid, getpid());
    flow_close(&f);
    close(nsfd);
}

static void test_forked_child(void **state)
{
    struct sockaddr_storage ss;
    struct net_addr dst, src;
    uint16_t dport, sport;
    char exe[PATH_MAX], want[PATH_MAX];
    socklen_t sl;
    pid_t pid = 0;
    int lfd, p[2], nsfd = open_ns(0);

    (void)state;
    self_exe(want, sizeof(want));
    lfd = listen_on("127.0.0.1", &dst, &dport);
    assert_true(lfd >= 0);
    sl = net_addr_to_sockaddr(&dst, dport, &ss);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);

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

    assert_int_equal(ident_lookup(nsfd, &src, sport, &dst, dport, &pid, exe, sizeof(exe)), 0);
    assert_int_equal(pid, child);
    assert_string_equal(exe, want);

    /* Truncation keeps a NUL-terminated prefix. */
    assert_int_equal(ident_lookup(nsfd, &src, sport, &dst, dport, &pid, exe, 5), 0);
    assert_int_equal(strlen(exe), 4);
    assert_memory_equal(exe, want, 4);

    /* Once the holder is gone the flow has no owner any more. */
    teardown_child(NULL);
    assert_int_equal(ident_lookup(nsfd, &src, sport, &dst, dport, &pid, exe, sizeof(exe)), -ENOENT);
    close(lfd);
    close(nsfd);
}

static void test_not_found(void **state)
{
    struct net_addr a;
    struct flow f;
    pid_t pid = 0;
    int nsfd = open_ns(0);

    (void)state;
    flow_open(&f, "127.0.0.1");

    /* Wrong source port. */
    assert_int_equal(
        ident_lookup(nsfd, &f.src, (uint16_t)(f.sport ^ 1), &f.dst, f.dport, &pid, NULL, 0),
        -ENOENT);
    /* The listener's own address as source: the kernel would hand back the
     * listening socket, which must not be mistaken for a client. */
    assert_int_equal(net_addr_parse("127.0.0.2", &a), 0);
    assert_int_equal(ident_lookup(nsfd, &f.dst, f.dport, &a, 40000, &pid, NULL, 0), -ENOENT);
    /* Right ports, wrong family of the same flow. */
    assert_int_equal(net_addr_parse("::1", &a), 0);
    assert_int_equal(ident_lookup(nsfd, &a, f.sport, &a, f.dport, &pid, NULL, 0), -ENOENT);

    /* A client that closed first lingers as an orphan (FIN_WAIT/TIME_WAIT)
     * without an inode: nobody owns it. */
    close(f.client_fd);
    assert_int_equal(ident_lookup(nsfd, &f.src, f.sport, &f.dst, f.dport, &pid, NULL, 0), -ENOENT);
    close(f.accept_fd);
    close(f.listen_fd);
    close(nsfd);
}

static void test_bad_args(void **state)
{
    struct net_addr v4, v6;
    pid_t pid;
    int fd, nfds, nsfd;

    (void)state;
    nfds = count_fds();
    nsfd = open_ns(0);
    assert_int_equal(net_addr_parse("127.0.0.1", &v4), 0);
    assert_int_equal(net_addr_parse("::1", &v6), 0);
    assert_int_equal(ident_lookup(nsfd, &v4, 1, &v6, 2, &pid, NULL, 0), -EINVAL);
    assert_int_equal(ident_lookup(-1, &v4, 1, &v4, 2, &pid, NULL, 0), -EBADF);
    /* Not a namespace: setns refuses it. */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ident_lookup(fd, &v4, 1, &v4, 2, &pid, NULL, 0), -EINVAL);
    /* A real namespace, no such flow: the diag socket is closed too. */
    assert_int_equal(ident_lookup(nsfd, &v4, 1, &v4, 2, &pid, NULL, 0), -ENOENT);
    close(fd);
    assert_int_equal(count_fds(), nfds + 1);
    close(nsfd);
}

struct nschild_info {
    pid_t pid;
    uint16_t sport, dport;
};

/* In the child: a fresh netns with lo up, a loopback connection, report. */
static void nschild_main(int wfd)
{
    struct nschild_info info = {0};
    struct sockaddr_storage ss;
    struct net_addr dst, src;
    struct ifreq ifr;
    socklen_t sl;
    int s, lfd, cfd;

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
    cfd = connect_to(ss.ss_family, (struct sockaddr *)&ss, sl, &src, &info.sport);
    if (cfd < 0)
        _exit(1);
    info.pid = getpid();
    if (write(wfd, &info, sizeof(info)) != sizeof(info))
        _exit(1);
    /* Hold the socket until the parent kills us. */
    for (;;)
        pause();
}

static void test_other_netns(void **state)
{
    struct nschild_info info;
    char exe[PATH_MAX], want[PATH_MAX];
    struct flow f;
    pid_t pid = 0;
    int p[2], nsfd, selffd = open_ns(0);

    (void)state;
    self_exe(want, sizeof(want));
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(p[0]);
        nschild_main(p[1]);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &info, sizeof(info)), (ssize_t)sizeof(info));
    close(p[0]);
    assert_int_equal(info.pid, child);

    nsfd = open_ns(child);
    memset(&f, 0, sizeof(f));
    assert_int_equal(net_addr_parse("127.0.0.1", &f.src), 0);
    f.dst = f.src;
    f.sport = info.sport;
    f.dport = info.dport;

    assert_int_equal(ident_lookup(nsfd, &f.src, f.sport, &f.dst, f.dport, &pid, exe, sizeof(exe)),
                     0);
    assert_int_equal(pid, child);
    assert_string_equal(exe, want);

    /* The same tuple means nothing in our own namespace. */
    assert_int_equal(ident_lookup(selffd, &f.src, f.sport, &f.dst, f.dport, &pid, NULL, 0),
                     -ENOENT);

    /* The helper thread's setns must not leak into the calling thread. */
    {
        struct stat a, b;
        assert_int_equal(stat("/proc/thread-self/ns/net", &a), 0);
        assert_int_equal(fstat(selffd, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    }

    print_message("  127.0.0.1: mean lookup %.1f us over 1000 (other namespace)\n",
                  time_lookups(nsfd, &f, child, 1000));

    teardown_child(NULL);
    /* The namespace lives on through nsfd, but the socket died with the child. */
    assert_int_equal(ident_lookup(nsfd, &f.src, f.sport, &f.dst, f.dport, &pid, NULL, 0), -ENOENT);
    close(nsfd);
    close(selffd);
}

struct worker {
    int nsfd;
    const struct flow *f;
    pid_t want;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pid_t pid;

    for (int i = 0; i < 200; i++)
        if (ident_lookup(w->nsfd, &w->f->src, w->f->sport, &w->f->dst, w->f->dport, &pid, NULL,
                         0) != 0 ||
            pid != w->want)
            w->failures++;
    return NULL;
}

/* Several pool threads at once, half of them crossing into another
 * namespace: no shared state, no namespace leaking between threads. */
static void test_concurrent(void **state)
{
    struct nschild_info info;
    struct worker w[4];
    pthread_t t[4];
    struct flow self, other;
    int p[2], selffd = open_ns(0), nsfd;

    (void)state;
    flow_open(&self, "127.0.0.1");
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(p[0]);
        nschild_main(p[1]);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &info, sizeof(info)), (ssize_t)sizeof(info));
    close(p[0]);
    nsfd = open_ns(child);
    memset(&other, 0, sizeof(other));
    assert_int_equal(net_addr_parse("127.0.0.1", &other.src), 0);
    other.dst = other.src;
    other.sport = info.sport;
    other.dport = info.dport;

    for (int i = 0; i < 4; i++) {
        w[i].nsfd = i % 2 ? nsfd : selffd;
        w[i].f = i % 2 ? &other : &self;
        w[i].want = i % 2 ? child : getpid();
        w[i].failures = 0;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    flow_close(&self);
    close(nsfd);
    close(selffd);
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
        cmocka_unit_test_teardown(test_concurrent, teardown_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
