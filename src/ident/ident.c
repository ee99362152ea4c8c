/*
 * ident: socket inode from sock_diag inside the sandbox namespace, then the
 * process holding it from /proc.
 *
 * No state is kept between calls: a cached diag socket would pin the sandbox
 * namespace (and its veth) after the sandbox is deleted, and the header has no
 * call to drop it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "ident.h"

/* Bounds on the /proc walk, so a host with a huge process or fd count costs
 * a bounded time per connection instead of stalling the thread pool. */
#define IDENT_MAX_PROCS 100000
#define IDENT_MAX_FDS 1000000

/* One inet_diag_msg plus the few attributes the kernel always adds. */
#define IDENT_NL_BUF 8192

static bool same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

struct ns_socket {
    int netns_fd;
    int ret; /* the socket, or -errno */
};

static void *ns_socket_thread(void *arg)
{
    struct ns_socket *s = arg;

    /* This thread ends right after, so its namespace never needs restoring:
     * no failure can leave a thread-pool thread inside a sandbox. */
    if (setns(s->netns_fd, CLONE_NEWNET) < 0) {
        s->ret = -errno;
        return NULL;
    }
    s->ret = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s->ret < 0)
        s->ret = -errno;
    return NULL;
}

/* A sock_diag socket bound to the namespace of netns_fd (a socket keeps the
 * namespace it was created in). Returns the fd or -errno. */
static int diag_socket_open(int netns_fd, const struct stat *ns)
{
    struct ns_socket s = {.netns_fd = netns_fd, .ret = -EIO};
    struct stat cur;
    sigset_t all, old;
    pthread_t t;
    int r;

    if (stat("/proc/thread-self/ns/net", &cur) == 0 && same_inode(&cur, ns)) {
        r = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        return r < 0 ? -errno : r;
    }

    /* The helper inherits a fully blocked mask, so no process signal is ever
     * handled on a thread that sits in a sandbox namespace. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&t, NULL, ns_socket_thread, &s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -r;
    pthread_join(t, NULL);
    return s.ret;
}

struct diag_query {
    const struct net_addr *src, *dst;
    uint16_t sport, dport;
    uint32_t inode;
    bool found;
};

static void diag_addr(int family, const __be32 *words, struct net_addr *ret)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        memcpy(&((struct sockaddr_in *)&ss)->sin_addr, words, 4);
    else
        memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, words, 16);
    /* Normalises v4-mapped, which a dual-stack client socket reports. */
    if (net_addr_from_sockaddr((struct sockaddr *)&ss, ret, NULL) < 0)
        memset(ret, 0, sizeof(*ret));
}

static int on_diag_msg(const struct nlmsghdr *nlh, void *data)
{
    struct diag_query *q = data;
    const struct inet_diag_msg *m;
    struct net_addr src, dst;

    if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY || mnl_nlmsg_get_payload_len(nlh) < sizeof(*m))
        return MNL_CB_OK;
    m = mnl_nlmsg_get_payload(nlh);
    if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
        return MNL_CB_OK;

    /* The kernel's lookup falls back to a listener on src:sport when no
     * connection matches; only the exact flow identifies a client. */
    diag_addr(m->idiag_family, m->id.idiag_src, &src);
    diag_addr(m->idiag_family, m->id.idiag_dst, &dst);
    if (ntohs(m->id.idiag_sport) != q->sport || ntohs(m->id.idiag_dport) != q->dport ||
        !net_addr_equal(&src, q->src) || !net_addr_equal(&dst, q->dst))
        return MNL_CB_OK;

    q->inode = m->idiag_inode;
    q->found = true;
    return MNL_CB_STOP;
}

static void diag_put_addr(const struct net_addr *a, __be32 *words)
{
    if (a->family == AF_INET)
        memcpy(words, &a->u.v4, 4);
    else
        memcpy(words, &a->u.v6, 16);
}

/* Inode of the TCP socket whose local end is src:sport and remote end
 * dst:dport, seen from the namespace of diag_fd. Takes ownership of diag_fd.
 * Returns 0, -ENOENT (no such socket, or one without an inode: closed and
 * orphaned or TIME_WAIT), or -errno. */
static int diag_find_inode(int diag_fd, const struct diag_query *in, uint32_t *ret_inode)
{
    union {
        struct nlmsghdr align;
        char buf[IDENT_NL_BUF];
    } u;
    struct diag_query q = *in;
    struct inet_diag_req_v2 *req;
    struct nlmsghdr *nlh;
    struct mnl_socket *nl;
    /* Synchronous in the kernel; the timeout only guards against surprises. */
    struct timeval tv = {.tv_sec = 1};
    const unsigned seq = 1;
    ssize_t n;
    int r;

    nl = mnl_socket_fdopen(diag_fd);
    if (!nl) {
        r = -errno;
        close(diag_fd);
        return r;
    }
    if (setsockopt(diag_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        r = -errno;
        goto out;
    }

    nlh = mnl_nlmsg_put_header(u.buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    nlh->nlmsg_seq = seq;
    req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
    req->sdiag_family = (__u8)q.src->family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = ~0U;
    req->id.idiag_sport = htons(q.sport);
    req->id.idiag_dport = htons(q.dport);
    diag_put_addr(q.src, req->id.idiag_src);
    diag_put_addr(q.dst, req->id.idiag_dst);
    req->id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        r = -errno;
        goto out;
    }
    n = mnl_socket_recvfrom(nl, u.buf, sizeof(u.buf));
    if (n < 0) {
        r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        goto out;
    }
    /* An NLMSG_ERROR from the kernel (ENOENT when no socket matches) comes
     * back as -1 with errno set. */
    if (mnl_cb_run(u.buf, (size_t)n, seq, 0, on_diag_msg, &q) < 0) {
        r = -errno;
        goto out;
    }
    if (!q.found || q.inode == 0) {
        r = -ENOENT;
        goto out;
    }
    *ret_inode = q.inode;
    r = 0;
out:
    mnl_socket_close(nl);
    return r;
}

static bool is_pid_name(const char *s)
{
    if (*s < '1' || *s > '9')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Whether the fd table of the process at piddir holds the socket "want".
 * Returns 1, 0, -E2BIG when the fd budget ran out, or -errno when the fd
 * directory cannot be read (the process is gone). */
static int pid_holds_socket(int piddir, const char *want, size_t want_len, long *budget)
{
    char link[64];
    struct dirent *e;
    DIR *d;
    int fd, r = 0;

    fd = openat(piddir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        r = -errno;
        close(fd);
        return r;
    }
    while ((e = readdir(d))) {
        ssize_t n;

        if (e->d_name[0] == '.')
            continue;
        if (--*budget < 0) {
            r = -E2BIG;
            break;
        }
        n = readlinkat(fd, e->d_name, link, sizeof(link));
        if (n == (ssize_t)want_len && memcmp(link, want, want_len) == 0) {
            r = 1;
            break;
        }
    }
    closedir(d);
    return r;
}

/* The thread-group leaders listed in /proc (threads share the leader's fd
 * table), in listing order. Returns the count or -errno; *ret is malloc'd. */
static long proc_list_pids(DIR *d, pid_t **ret)
{
    pid_t *pids = NULL, *p;
    size_t n = 0, cap = 0;
    struct dirent *e;

    while ((e = readdir(d))) {
        if (!is_pid_name(e->d_name))
            continue;
        if (n == IDENT_MAX_PROCS) {
            free(pids);
            return -E2BIG;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 512;
            p = realloc(pids, cap * sizeof(*pids));
            if (!p) {
                free(pids);
                return -ENOMEM;
            }
            pids = p;
        }
        pids[n++] = (pid_t)strtol(e->d_name, NULL, 10);
    }
    *ret = pids;
    return (long)n;
}

/* A thread-group leader in namespace ns whose fd table holds the socket
 * inode. On success returns 0 with *ret_piddir an open /proc/PID directory,
 * which pins that process: reading through it after the process exited fails
 * instead of describing a process that reused the PID. */
static int proc_find_socket(const struct stat *ns, uint32_t inode, pid_t *ret_pid, int *ret_piddir)
{
    char want[32], path[32];
    long fds = IDENT_MAX_FDS, n;
    size_t want_len;
    pid_t *pids = NULL;
    struct stat st;
    DIR *d;
    int procfd, r = -ENOENT;

    want_len = (size_t)snprintf(want, sizeof(want), "socket:[%u]", inode);

    procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        return -errno;
    d = fdopendir(procfd);
    if (!d) {
        r = -errno;
        close(procfd);
        return r;
    }
    n = proc_list_pids(d, &pids);
    if (n < 0) {
        r = (int)n;
        goto out;
    }
    /* /proc lists PIDs in ascending order; the process that just opened a
     * connection is usually among the newest, so walking backwards stops
     * early. Order only affects speed, and which holder wins when several
     * processes share the socket (the newest). */
    while (n-- > 0) {
        int piddir, h;

        /* Cheap namespace filter first: most of the host is not the sandbox. */
        snprintf(path, sizeof(path), "%d/ns/net", (int)pids[n]);
        if (fstatat(procfd, path, &st, 0) < 0 || !same_inode(&st, ns))
            continue;

        snprintf(path, sizeof(path), "%d", (int)pids[n]);
        piddir = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (piddir < 0)
            continue; /* exited meanwhile */
        /* Again through the pinned directory: the PID may have been reused. */
        if (fstatat(piddir, "ns/net", &st, 0) < 0 || !same_inode(&st, ns)) {
            close(piddir);
            continue;
        }
        h = pid_holds_socket(piddir, want, want_len, &fds);
        if (h == 1) {
            *ret_pid = pids[n];
            *ret_piddir = piddir;
            r = 0;
            break;
        }
        close(piddir);
        if (h == -E2BIG) {
            r = h;
            break;
        }
        /* Other errors: the process vanished or is a zombie; keep looking. */
    }
out:
    free(pids);
    closedir(d);
    return r;
}

int ident_lookup(int netns_fd, const struct net_addr *src, uint16_t sport,
                 const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                 size_t exe_len)
{
    struct diag_query q = {.src = src, .dst = dst, .sport = sport, .dport = dport};
    char exe[PATH_MAX];
    struct stat ns;
    uint32_t inode = 0;
    pid_t pid = 0;
    ssize_t n;
    int fd, piddir = -1, r;

    if (!src || !dst || src->family != dst->family)
        return -EINVAL;
    if (src->family != AF_INET && src->family != AF_INET6)
        return -EAFNOSUPPORT;
    if (fstat(netns_fd, &ns) < 0)
        return -errno;

    fd = diag_socket_open(netns_fd, &ns);
    if (fd < 0)
        return fd;
    r = diag_find_inode(fd, &q, &inode);
    if (r < 0)
        return r;

    r = proc_find_socket(&ns, inode, &pid, &piddir);
    if (r < 0)
        return r;

    n = readlinkat(piddir, "exe", exe, sizeof(exe) - 1);
    r = n < 0 ? -errno : 0;
    close(piddir);
    if (r == -ESRCH)
        r = -ENOENT; /* exited after the fd scan */
    if (r < 0)
        return r;
    exe[n] = '\0';

    if (ret_pid)
        *ret_pid = pid;
    if (ret_exe && exe_len)
        str_copy(ret_exe, exe, exe_len);
    return 0;
}
