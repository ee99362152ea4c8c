/*
 * ident: socket inode from sock_diag inside the sandbox namespace, then the
 * process holding it from /proc.
 *
 * A context per namespace keeps what a lookup would otherwise rebuild:
 *  - the sock_diag socket, made once by a short-lived thread that enters the
 *    namespace (a socket keeps the namespace it was created in).  It pins the
 *    namespace until ident_ctx_free(), which the daemon calls with the sandbox.
 *  - the members: processes seen in the namespace as (pid, start time), the
 *    most recently useful last.  A lookup scans their fd tables, last first,
 *    and walks /proc only when none of them holds the socket.
 *  - the sockets seen while scanning, inode -> (pid, start time, fd), so a
 *    socket that existed when another lookup scanned its process costs one
 *    readlink instead of a scan.
 *
 * Nothing cached is trusted.  The process reported is one whose fd table,
 * read through a /proc/PID directory held open (which pins that process),
 * holds the socket now, whose start time is the one cached (so not a process
 * that reused the PID) and whose network namespace is the sandbox's.  A stale
 * cache costs time, never a wrong answer.
 *
 * Walks of /proc: an incremental walk lists /proc and classifies only the PIDs
 * the previous walk did not list (new processes) and those of members dropped
 * since (gone, or their PID reused); a full walk classifies every PID, which
 * also finds processes that entered the namespace by setns after a walk listed
 * them, at most once per IDENT_FULL_WALK_NS unless the context knows no
 * member.  So such a process, when it connects less than IDENT_FULL_WALK_NS
 * after a full walk, is missed (-ENOENT), never mistaken for another.
 *
 * Locks, always taken in this order: walk_lock (one walk at a time), then
 * lock (members, socket cache, counters; held only for memory operations).
 * diag_lock serialises queries on the netlink socket and nests in neither.
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
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "ident.h"

/* Bounds on the /proc work of one lookup, so a host with a huge process or fd
 * count costs a bounded time per connection instead of stalling the pool. */
#define IDENT_MAX_PROCS 100000
#define IDENT_MAX_FDS 1000000

/* Cache bounds per context: members beyond this are forgotten least recently
 * useful first; the socket cache is direct-mapped and overwrites. */
#define IDENT_MAX_MEMBERS 4096
#define IDENT_SOCK_BITS 10
#define IDENT_SOCK_SLOTS (1U << IDENT_SOCK_BITS)

/* At most one full walk of /proc per this long (unless no member is known). */
#define IDENT_FULL_WALK_NS (50ULL * 1000 * 1000)

/* PIDs of dropped members that the next incremental walk classifies again
 * (their PID may be a new process of the namespace by then); beyond this
 * many, the next walk is a full one. */
#define IDENT_MAX_RECHECK 64

/* One inet_diag_msg plus the few attributes the kernel always adds. */
#define IDENT_NL_BUF 8192

/* Socket fds remembered per member and probed one by one before its fd table
 * is listed: a process that keeps opening connections reuses the numbers of
 * those it closed. */
#define IDENT_MEMBER_FDS 16

/* ident_lookup_quick(): the most recently useful members it probes, and the
 * readlinks it may spend on them. */
#define IDENT_QUICK_MEMBERS 4
#define IDENT_QUICK_PROBES 16

struct ident_member {
    pid_t pid;
    uint64_t start; /* field 22 of /proc/PID/stat: ticks after boot */
    uint64_t gen;   /* ctx->gen of the walk that found it */
    unsigned n_fds;
    int fds[IDENT_MEMBER_FDS]; /* held sockets at the last scans, newest first */
};

struct ident_sock {
    uint32_t inode; /* 0: empty slot */
    int fd;
    pid_t pid;
    uint64_t start;
};

/* What the lookups did; read by the unit test. */
struct ident_stats {
    uint64_t lookups;
    uint64_t sock_hits;  /* answered from the socket cache */
    uint64_t probe_hits; /* found at a remembered fd of a member */
    uint64_t scans;      /* fd tables listed */
    uint64_t walks;      /* listings of /proc, full ones included */
    uint64_t full_walks;
};

struct ident_ctx {
    dev_t ns_dev;
    ino_t ns_ino;
    int procfd;

    pthread_mutex_t diag_lock;
    struct mnl_socket *nl;
    unsigned seq;

    pthread_mutex_t walk_lock;
    pid_t *seen; /* what the last walk listed, ascending */
    size_t n_seen;
    uint64_t last_walk_ns, last_full_ns; /* when they started */
    bool walked, full_walked;

    pthread_mutex_t lock;
    struct ident_member *members; /* scan order: last first */
    size_t n_members, cap_members;
    pid_t recheck[IDENT_MAX_RECHECK];
    size_t n_recheck; /* IDENT_MAX_RECHECK + 1: overflowed */
    uint64_t gen;
    struct ident_stats stats;
    struct ident_sock socks[IDENT_SOCK_SLOTS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static bool in_ns(const struct ident_ctx *ctx, const struct stat *st)
{
    return st->st_dev == ctx->ns_dev && st->st_ino == ctx->ns_ino;
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
 * dst:dport, seen from the namespace of ctx.  Returns 0, -ENOENT (no such
 * socket, or one without an inode: closed and orphaned or TIME_WAIT), or
 * -errno.  The kernel answers a sock_diag query within the sendto(), so the
 * reply is there at once; nowait: never wait for it anyway (-EAGAIN), for
 * callers on an event loop (the socket's receive timeout is a second). */
static int diag_find_inode(struct ident_ctx *ctx, const struct diag_query *in, bool nowait,
                           uint32_t *ret_inode)
{
    union {
        struct nlmsghdr align;
        char buf[IDENT_NL_BUF];
    } u;
    struct diag_query q = *in;
    struct inet_diag_req_v2 *req;
    struct nlmsghdr *nlh;
    unsigned seq;
    ssize_t n;
    int r;

    nlh = mnl_nlmsg_put_header(u.buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST;
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

    pthread_mutex_lock(&ctx->diag_lock);
    seq = ++ctx->seq;
    nlh->nlmsg_seq = seq;
    if (mnl_socket_sendto(ctx->nl, nlh, nlh->nlmsg_len) < 0) {
        r = -errno;
        goto out;
    }
    for (;;) {
        n = nowait ? recv(mnl_socket_get_fd(ctx->nl), u.buf, sizeof(u.buf), MSG_DONTWAIT)
                   : mnl_socket_recvfrom(ctx->nl, u.buf, sizeof(u.buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = errno != EAGAIN ? -errno : nowait ? -EAGAIN : -ETIMEDOUT;
            goto out;
        }
        /* The late answer to an earlier query that timed out: not ours. */
        if ((size_t)n >= sizeof(struct nlmsghdr) && u.align.nlmsg_seq != seq)
            continue;
        break;
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
    pthread_mutex_unlock(&ctx->diag_lock);
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

/* The start time of the process at piddir, which tells it from a later one
 * that reused its PID.  Returns 0 or -errno (-ESRCH and the like once the
 * process is gone). */
static int read_start(int piddir, uint64_t *ret)
{
    char buf[1024], *p, *end;
    ssize_t n;
    int fd, r;

    fd = openat(piddir, "stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    r = n < 0 ? -errno : 0;
    close(fd);
    if (r < 0)
        return r;
    buf[n] = '\0';
    /* The name (field 2) may hold spaces and ')': count from the last ')'.
     * The k-th space after it starts field 2 + k; the start time is 22. */
    p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return -EIO;
    *ret = strtoull(p + 1, &end, 10);
    return end == p + 1 ? -EIO : 0;
}

/* /proc/PID of ctx's /proc, or -errno. */
static int open_piddir(const struct ident_ctx *ctx, pid_t pid)
{
    char name[16];
    int fd;

    snprintf(name, sizeof(name), "%d", (int)pid);
    fd = openat(ctx->procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Whether the process at piddir (pinned) is the member (pid, start) and in
 * the namespace.  0, -ESTALE when it is another process or elsewhere, or
 * -errno when it is gone. */
static int verify_member(const struct ident_ctx *ctx, int piddir, uint64_t start)
{
    struct stat st;
    uint64_t s;
    int r;

    r = read_start(piddir, &s);
    if (r < 0)
        return r;
    if (s != start)
        return -ESTALE;
    if (fstatat(piddir, "ns/net", &st, 0) < 0)
        return -errno;
    return in_ns(ctx, &st) ? 0 : -ESTALE;
}

/* ---- socket cache ---- */

static struct ident_sock *sock_slot(struct ident_ctx *ctx, uint32_t inode)
{
    return &ctx->socks[(inode * 2654435761U) >> (32 - IDENT_SOCK_BITS)];
}

static void sock_put(struct ident_ctx *ctx, uint32_t inode, pid_t pid, uint64_t start, int fd)
{
    struct ident_sock *s = sock_slot(ctx, inode);

    pthread_mutex_lock(&ctx->lock);
    *s = (struct ident_sock){.inode = inode, .fd = fd, .pid = pid, .start = start};
    pthread_mutex_unlock(&ctx->lock);
}

/* The slot of inode as it was, emptied if it still is. */
static void sock_forget(struct ident_ctx *ctx, const struct ident_sock *was)
{
    struct ident_sock *s = sock_slot(ctx, was->inode);

    pthread_mutex_lock(&ctx->lock);
    if (s->inode == was->inode && s->pid == was->pid && s->fd == was->fd)
        s->inode = 0;
    pthread_mutex_unlock(&ctx->lock);
}

/* "socket:[N]" (not NUL-terminated, n bytes) -> N, or 0. */
static uint32_t socket_link_inode(const char *link, ssize_t n)
{
    uint64_t v = 0;

    if (n < 10 || memcmp(link, "socket:[", 8) != 0 || link[n - 1] != ']')
        return 0;
    for (ssize_t i = 8; i < n - 1; i++) {
        if (link[i] < '0' || link[i] > '9' || v > UINT32_MAX)
            return 0;
        v = v * 10 + (uint64_t)(link[i] - '0');
    }
    return v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* A cached holder of inode that still holds it (one readlink), verified.
 * Returns 1 with *ret_piddir open, or 0. */
static int sock_try(struct ident_ctx *ctx, uint32_t inode, const char *want, size_t want_len,
                    pid_t *ret_pid, int *ret_piddir)
{
    struct ident_sock s;
    char link[64], path[32];
    ssize_t n;
    int piddir;

    pthread_mutex_lock(&ctx->lock);
    s = *sock_slot(ctx, inode);
    pthread_mutex_unlock(&ctx->lock);
    if (s.inode != inode)
        return 0;

    piddir = open_piddir(ctx, s.pid);
    if (piddir >= 0) {
        snprintf(path, sizeof(path), "fd/%d", s.fd);
        n = readlinkat(piddir, path, link, sizeof(link));
        /* The fd may hold another socket now, and the PID be another process:
         * both are checked through the pinned directory. */
        if (n == (ssize_t)want_len && memcmp(link, want, want_len) == 0 &&
            verify_member(ctx, piddir, s.start) == 0) {
            *ret_pid = s.pid;
            *ret_piddir = piddir;
            return 1;
        }
        close(piddir);
    }
    sock_forget(ctx, &s);
    return 0;
}

/* ---- members ---- */

static ssize_t member_find(const struct ident_ctx *ctx, pid_t pid, uint64_t start)
{
    for (size_t i = ctx->n_members; i-- > 0;)
        if (ctx->members[i].pid == pid && ctx->members[i].start == start)
            return (ssize_t)i;
    return -1;
}

/* The member is gone, or its PID is another process now, which the next
 * walk classifies afresh even though the last one listed the PID. */
static void member_drop(struct ident_ctx *ctx, pid_t pid, uint64_t start)
{
    ssize_t i;

    pthread_mutex_lock(&ctx->lock);
    i = member_find(ctx, pid, start);
    if (i >= 0) {
        memmove(&ctx->members[i], &ctx->members[i + 1],
                (ctx->n_members - (size_t)i - 1) * sizeof(ctx->members[0]));
        ctx->n_members--;
        if (ctx->n_recheck < IDENT_MAX_RECHECK)
            ctx->recheck[ctx->n_recheck++] = pid;
        else
            ctx->n_recheck = IDENT_MAX_RECHECK + 1;
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* The member just held a flow's socket: scan it first next time. */
static void member_touch(struct ident_ctx *ctx, pid_t pid, uint64_t start)
{
    struct ident_member m;
    ssize_t i;

    pthread_mutex_lock(&ctx->lock);
    i = member_find(ctx, pid, start);
    if (i >= 0 && (size_t)i + 1 < ctx->n_members) {
        m = ctx->members[i];
        memmove(&ctx->members[i], &ctx->members[i + 1],
                (ctx->n_members - (size_t)i - 1) * sizeof(m));
        ctx->members[ctx->n_members - 1] = m;
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* A copy of the members found after walk generation *gen (all for 0), in
 * scan order; *gen becomes the current generation.  Returns the count or
 * -ENOMEM; *ret is malloc'd (NULL when empty). */
static ssize_t members_snapshot(struct ident_ctx *ctx, uint64_t *gen, struct ident_member **ret)
{
    struct ident_member *copy = NULL;
    size_t n = 0;

    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < ctx->n_members; i++)
        n += ctx->members[i].gen > *gen;
    if (n > 0) {
        copy = malloc(n * sizeof(*copy));
        if (!copy) {
            pthread_mutex_unlock(&ctx->lock);
            return -ENOMEM;
        }
        n = 0;
        for (size_t i = 0; i < ctx->n_members; i++)
            if (ctx->members[i].gen > *gen)
                copy[n++] = ctx->members[i];
    }
    *gen = ctx->gen;
    pthread_mutex_unlock(&ctx->lock);
    *ret = copy;
    return (ssize_t)n;
}

/* Whether the fd table of the process at piddir holds the socket "want";
 * every socket seen on the way goes to the socket cache as held by the member
 * (pid, start), and the first IDENT_MEMBER_FDS of their fds to ret_fds.
 * Returns 1, 0, -E2BIG when the fd budget ran out, or -errno when the fd
 * directory cannot be read (the process is gone). */
static int pid_holds_socket(struct ident_ctx *ctx, int piddir, pid_t pid, uint64_t start,
                            const char *want, size_t want_len, long *budget, int *ret_fds,
                            unsigned *n_fds)
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
        uint32_t inode;
        ssize_t n;

        if (e->d_name[0] == '.')
            continue;
        if (--*budget < 0) {
            r = -E2BIG;
            break;
        }
        n = readlinkat(fd, e->d_name, link, sizeof(link));
        inode = socket_link_inode(link, n);
        if (inode) {
            int num = (int)strtol(e->d_name, NULL, 10);

            sock_put(ctx, inode, pid, start, num);
            if (*n_fds < IDENT_MEMBER_FDS)
                ret_fds[(*n_fds)++] = num;
        }
        if (n == (ssize_t)want_len && memcmp(link, want, want_len) == 0) {
            r = 1;
            break;
        }
    }
    closedir(d);
    pthread_mutex_lock(&ctx->lock);
    ctx->stats.scans++;
    pthread_mutex_unlock(&ctx->lock);
    return r;
}

/* Whether one of the fds where m held sockets at its last scans holds "want"
 * now.  Returns 1, 0 or -E2BIG. */
static int member_probe(struct ident_ctx *ctx, int piddir, const struct ident_member *m,
                        const char *want, size_t want_len, long *budget)
{
    char link[64], path[24];

    for (unsigned i = 0; i < m->n_fds; i++) {
        uint32_t inode;
        ssize_t n;

        if (--*budget < 0)
            return -E2BIG;
        snprintf(path, sizeof(path), "fd/%d", m->fds[i]);
        n = readlinkat(piddir, path, link, sizeof(link));
        if (n == (ssize_t)want_len && memcmp(link, want, want_len) == 0)
            return 1;
        inode = socket_link_inode(link, n);
        if (inode)
            sock_put(ctx, inode, m->pid, m->start, m->fds[i]);
    }
    return 0;
}

/* After a scan of the member (pid, start): remember the socket fds it saw,
 * then those remembered before that it did not see, up to the bound. */
static void member_set_fds(struct ident_ctx *ctx, pid_t pid, uint64_t start, const int *fds,
                           unsigned n_fds)
{
    struct ident_member *m;
    int merged[IDENT_MEMBER_FDS];
    unsigned n = 0;
    ssize_t i;

    pthread_mutex_lock(&ctx->lock);
    i = member_find(ctx, pid, start);
    if (i >= 0) {
        m = &ctx->members[i];
        for (unsigned k = 0; k < n_fds; k++)
            merged[n++] = fds[k];
        for (unsigned k = 0; k < m->n_fds && n < IDENT_MEMBER_FDS; k++) {
            bool dup = false;

            for (unsigned j = 0; j < n_fds; j++)
                dup |= fds[j] == m->fds[k];
            if (!dup)
                merged[n++] = m->fds[k];
        }
        memcpy(m->fds, merged, n * sizeof(merged[0]));
        m->n_fds = n;
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* The first of list (scanned last to first) whose fd table holds "want" and
 * that is still that member.  Returns 1 with *ret_pid and *ret_piddir (open),
 * 0, or -E2BIG.  Members found gone are dropped.  probe_only: only the fds
 * where a member held sockets before, never a listing of its table. */
static int members_scan(struct ident_ctx *ctx, const struct ident_member *list, size_t n,
                        const char *want, size_t want_len, bool probe_only, long *budget,
                        pid_t *ret_pid, int *ret_piddir)
{
    while (n-- > 0) {
        const struct ident_member *m = &list[n];
        int piddir, h;

        piddir = open_piddir(ctx, m->pid);
        if (piddir < 0) {
            member_drop(ctx, m->pid, m->start);
            continue;
        }
        /* The remembered fds first, the whole table only if none holds it. */
        h = member_probe(ctx, piddir, m, want, want_len, budget);
        if (h == 1) {
            pthread_mutex_lock(&ctx->lock);
            ctx->stats.probe_hits++;
            pthread_mutex_unlock(&ctx->lock);
        } else if (h == 0 && !probe_only) {
            int fds[IDENT_MEMBER_FDS];
            unsigned n_fds = 0;

            h = pid_holds_socket(ctx, piddir, m->pid, m->start, want, want_len, budget, fds,
                                 &n_fds);
            if (h >= 0)
                member_set_fds(ctx, m->pid, m->start, fds, n_fds);
        }
        if (h == 1) {
            if (verify_member(ctx, piddir, m->start) == 0) {
                member_touch(ctx, m->pid, m->start);
                *ret_pid = m->pid;
                *ret_piddir = piddir;
                return 1;
            }
            /* Another process behind that PID, or it left the namespace:
             * never reported from here; a walk classifies it afresh. */
            h = -ESTALE;
        }
        close(piddir);
        if (h == -E2BIG)
            return h;
        if (h == -ENOENT || h == -ESRCH || h == -ESTALE)
            member_drop(ctx, m->pid, m->start);
        /* Other errors (a zombie's empty table, EACCES): keep looking. */
    }
    return 0;
}

/* ---- walks ---- */

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

static int cmp_member_pid(const void *a, const void *b)
{
    return cmp_pid(&((const struct ident_member *)a)->pid, &((const struct ident_member *)b)->pid);
}

static int cmp_member_start(const void *a, const void *b)
{
    const struct ident_member *x = a, *y = b;

    if (x->start != y->start)
        return (x->start > y->start) - (x->start < y->start);
    return cmp_pid(&x->pid, &y->pid);
}

/* The thread-group leaders listed in /proc (threads share the leader's fd
 * table), ascending.  Returns the count or -errno; *ret is malloc'd. */
static long proc_list_pids(pid_t **ret)
{
    pid_t *pids = NULL, *p;
    size_t n = 0, cap = 0;
    bool sorted = true;
    struct dirent *e;
    DIR *d;

    d = opendir("/proc");
    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        if (!is_pid_name(e->d_name))
            continue;
        if (n == IDENT_MAX_PROCS) {
            free(pids);
            closedir(d);
            return -E2BIG;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 512;
            p = realloc(pids, cap * sizeof(*pids));
            if (!p) {
                free(pids);
                closedir(d);
                return -ENOMEM;
            }
            pids = p;
        }
        pids[n] = (pid_t)strtol(e->d_name, NULL, 10);
        if (n > 0 && pids[n] < pids[n - 1])
            sorted = false;
        n++;
    }
    closedir(d);
    /* The kernel lists in ascending order; the merge with the last walk
     * relies on it, so do not trust it blindly. */
    if (!sorted && n > 1)
        qsort(pids, n, sizeof(*pids), cmp_pid);
    *ret = pids;
    return (long)n;
}

static bool pid_in(const pid_t *list, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == pid)
            return true;
    return false;
}

/* (pid, start) of pid when it is in the namespace; 0, or -errno. */
static int classify(const struct ident_ctx *ctx, pid_t pid, struct ident_member *ret)
{
    char path[32];
    struct stat st;
    int piddir, r;

    /* Cheap namespace filter first: most of the host is not the sandbox. */
    snprintf(path, sizeof(path), "%d/ns/net", (int)pid);
    if (fstatat(ctx->procfd, path, &st, 0) < 0 || !in_ns(ctx, &st))
        return -ENOENT;
    piddir = open_piddir(ctx, pid);
    if (piddir < 0)
        return piddir;
    /* Again through the pinned directory, so the start time read next is
     * that of the process in the namespace. */
    if (fstatat(piddir, "ns/net", &st, 0) < 0 || !in_ns(ctx, &st))
        r = -ENOENT;
    else
        r = read_start(piddir, &ret->start);
    close(piddir);
    ret->pid = pid;
    ret->gen = 0;
    ret->n_fds = 0;
    return r;
}

/* List /proc and classify its PIDs (all of them when full, else those the
 * last walk did not list), then merge what was found into the members with a
 * new generation.  Called with walk_lock held.  Returns 0 or -errno. */
static int ctx_walk(struct ident_ctx *ctx, bool full)
{
    struct ident_member *found = NULL, *p;
    size_t n_found = 0, cap = 0, n_kept = 0, n_new = 0, j = 0;
    pid_t *pids = NULL, recheck[IDENT_MAX_RECHECK];
    size_t n_recheck;
    uint64_t gen;
    long n;
    int r = 0;

    pthread_mutex_lock(&ctx->lock);
    n_recheck = ctx->n_recheck;
    if (n_recheck > IDENT_MAX_RECHECK)
        full = true;
    else
        memcpy(recheck, ctx->recheck, n_recheck * sizeof(recheck[0]));
    ctx->n_recheck = 0;
    pthread_mutex_unlock(&ctx->lock);

    ctx->last_walk_ns = now_ns();
    ctx->walked = true;
    if (full) {
        ctx->last_full_ns = ctx->last_walk_ns;
        ctx->full_walked = true;
    }
    n = proc_list_pids(&pids);
    if (n < 0) {
        r = (int)n;
        goto fail;
    }

    for (long i = 0; i < n; i++) {
        struct ident_member m;

        if (!full) {
            while (j < ctx->n_seen && ctx->seen[j] < pids[i])
                j++;
            if (j < ctx->n_seen && ctx->seen[j] == pids[i] && !pid_in(recheck, n_recheck, pids[i]))
                continue;
        }
        if (classify(ctx, pids[i], &m) < 0)
            continue;
        if (n_found == cap) {
            cap = cap ? cap * 2 : 16;
            p = realloc(found, cap * sizeof(*found));
            if (!p) {
                free(found);
                free(pids);
                r = -ENOMEM;
                goto fail;
            }
            found = p;
        }
        found[n_found++] = m;
    }
    free(ctx->seen);
    ctx->seen = pids;
    ctx->n_seen = (size_t)n;
    /* found is in PID order: look members up in it. */

    pthread_mutex_lock(&ctx->lock);
    gen = ++ctx->gen;
    ctx->stats.walks++;
    ctx->stats.full_walks += full;
    for (size_t i = 0; i < ctx->n_members; i++) {
        struct ident_member *m = &ctx->members[i];
        struct ident_member *f =
            n_found ? bsearch(m, found, n_found, sizeof(*found), cmp_member_pid) : NULL;

        if (f && f->start == m->start)
            f->gen = UINT64_MAX; /* already a member: keeps its place */
        else if (f || full)
            continue; /* PID reused, or (full) no longer in the namespace */
        ctx->members[n_kept++] = *m;
    }
    ctx->n_members = n_kept;

    /* Newcomers go last (scanned first), the newest process last of all. */
    if (n_found > 1)
        qsort(found, n_found, sizeof(*found), cmp_member_start);
    for (size_t i = 0; i < n_found; i++)
        n_new += found[i].gen != UINT64_MAX;
    if (n_kept + n_new > ctx->cap_members) {
        p = realloc(ctx->members, (n_kept + n_new) * sizeof(*p));
        if (!p) {
            r = -ENOMEM;
            goto out;
        }
        ctx->members = p;
        ctx->cap_members = n_kept + n_new;
    }
    for (size_t i = 0; i < n_found; i++) {
        if (found[i].gen == UINT64_MAX)
            continue;
        found[i].gen = gen;
        ctx->members[ctx->n_members++] = found[i];
    }
    /* Over the bound: forget the least recently useful (the first). */
    if (ctx->n_members > IDENT_MAX_MEMBERS) {
        size_t drop = ctx->n_members - IDENT_MAX_MEMBERS;

        memmove(ctx->members, ctx->members + drop, IDENT_MAX_MEMBERS * sizeof(*p));
        ctx->n_members = IDENT_MAX_MEMBERS;
    }
out:
    pthread_mutex_unlock(&ctx->lock);
    free(found);
    return r;
fail:
    /* The PIDs to recheck are forgotten: make the next walk a full one. */
    pthread_mutex_lock(&ctx->lock);
    ctx->n_recheck = IDENT_MAX_RECHECK + 1;
    pthread_mutex_unlock(&ctx->lock);
    return r;
}

/* Make the members current enough for a socket found at found_ns: an
 * incremental walk (full when no member is known) unless one started since,
 * or with full a full walk unless one started since or the rate limit holds.
 * Returns 0 or -errno. */
static int ctx_refresh(struct ident_ctx *ctx, uint64_t found_ns, bool full)
{
    bool empty;
    int r = 0;

    pthread_mutex_lock(&ctx->walk_lock);
    pthread_mutex_lock(&ctx->lock);
    empty = ctx->n_members == 0;
    pthread_mutex_unlock(&ctx->lock);
    if (!full) {
        if (!ctx->walked || ctx->last_walk_ns < found_ns)
            r = ctx_walk(ctx, empty || !ctx->full_walked);
    } else if (!ctx->full_walked ||
               (ctx->last_full_ns < found_ns &&
                (empty || now_ns() - ctx->last_full_ns >= IDENT_FULL_WALK_NS))) {
        r = ctx_walk(ctx, true);
    }
    pthread_mutex_unlock(&ctx->walk_lock);
    return r;
}

bool ident_netns_is(int fd, uint64_t dev, uint64_t ino)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

/* Opens path if it is the namespace dev/ino (stat first: opening what is not
 * would cost more; checked again once open, as it may change meanwhile). */
static int open_if_netns(int dirfd, const char *path, uint64_t dev, uint64_t ino)
{
    struct stat st;
    if (fstatat(dirfd, path, &st, 0) < 0 || (uint64_t)st.st_dev != dev ||
        (uint64_t)st.st_ino != ino)
        return -ENOENT;
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ENOENT; /* gone meanwhile */
    if (!ident_netns_is(fd, dev, ino)) {
        close(fd);
        return -ENOENT;
    }
    return fd;
}

/* The namespace among the open files of process pid.  The links are read,
 * not followed, until one names it: a stat of another kind of file could
 * block (a hung FUSE mount, say). */
static int netns_in_fds(pid_t pid, uint64_t dev, uint64_t ino)
{
    char path[40], want[40], link[40];
    struct dirent *de;
    int fd = -ENOENT, want_len;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    want_len = snprintf(want, sizeof(want), "net:[%llu]", (unsigned long long)ino);
    DIR *d = opendir(path);
    if (!d)
        return -ENOENT;
    while (fd < 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(dirfd(d), de->d_name, link, sizeof(link));
        if (n == want_len && memcmp(link, want, (size_t)n) == 0)
            fd = open_if_netns(dirfd(d), de->d_name, dev, ino);
    }
    closedir(d);
    return fd;
}

int ident_netns_find(uint64_t dev, uint64_t ino, pid_t holder)
{
    struct dirent *de;
    int fd;

    if (holder > 0 && (fd = netns_in_fds(holder, dev, ino)) >= 0)
        return fd;
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    fd = -ENOENT;
    while (fd < 0 && (de = readdir(d))) {
        char path[48];
        if (!is_pid_name(de->d_name) || strlen(de->d_name) > 20)
            continue;
        snprintf(path, sizeof(path), "%.20s/ns/net", de->d_name);
        fd = open_if_netns(dirfd(d), path, dev, ino);
    }
    closedir(d);
    return fd;
}

struct ident_ctx *ident_ctx_new(int netns_fd)
{
    struct ident_ctx *ctx;
    /* Synchronous in the kernel; the timeout only guards against surprises. */
    struct timeval tv = {.tv_sec = 1};
    struct stat ns;
    int fd, r;

    if (fstat(netns_fd, &ns) < 0)
        return NULL;
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->ns_dev = ns.st_dev;
    ctx->ns_ino = ns.st_ino;
    ctx->procfd = -1;
    pthread_mutex_init(&ctx->diag_lock, NULL);
    pthread_mutex_init(&ctx->walk_lock, NULL);
    pthread_mutex_init(&ctx->lock, NULL);

    fd = diag_socket_open(netns_fd, &ns);
    if (fd < 0) {
        r = fd;
        goto fail;
    }
    ctx->nl = mnl_socket_fdopen(fd);
    if (!ctx->nl) {
        r = -errno;
        close(fd);
        goto fail;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        r = -errno;
        goto fail;
    }
    ctx->procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ctx->procfd < 0) {
        r = -errno;
        goto fail;
    }
    return ctx;
fail:
    ident_ctx_free(ctx);
    errno = -r;
    return NULL;
}

struct ident_ctx *ident_ctx_free(struct ident_ctx *ctx)
{
    if (!ctx)
        return NULL;
    if (ctx->nl)
        mnl_socket_close(ctx->nl);
    if (ctx->procfd >= 0)
        close(ctx->procfd);
    free(ctx->seen);
    free(ctx->members);
    pthread_mutex_destroy(&ctx->diag_lock);
    pthread_mutex_destroy(&ctx->walk_lock);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return NULL;
}

/* Among the IDENT_QUICK_MEMBERS most recently useful members, only at the fds
 * where they held sockets before: 1 with *ret_pid and *ret_piddir, else 0. */
static int recent_members_probe(struct ident_ctx *ctx, const char *want, size_t want_len,
                                pid_t *ret_pid, int *ret_piddir)
{
    struct ident_member recent[IDENT_QUICK_MEMBERS];
    long budget = IDENT_QUICK_PROBES;
    size_t n;

    pthread_mutex_lock(&ctx->lock);
    n = ctx->n_members < IDENT_QUICK_MEMBERS ? ctx->n_members : IDENT_QUICK_MEMBERS;
    if (n > 0) /* (members is NULL before the first walk) */
        memcpy(recent, ctx->members + ctx->n_members - n, n * sizeof(recent[0]));
    pthread_mutex_unlock(&ctx->lock);
    return members_scan(ctx, recent, n, want, want_len, true, &budget, ret_pid, ret_piddir) == 1;
}

/* The holder of the socket "want": from the socket cache, else among the
 * members, refreshing them from /proc when none holds it.  quick: the
 * recently useful members' remembered fds only, -EAGAIN when that is not
 * enough.  Returns 0 with *ret_pid and *ret_piddir (open), or -errno. */
static int find_holder(struct ident_ctx *ctx, uint32_t inode, uint64_t found_ns, bool quick,
                       pid_t *ret_pid, int *ret_piddir)
{
    struct ident_member *list;
    char want[32];
    size_t want_len;
    long budget = IDENT_MAX_FDS;
    uint64_t gen = 0;
    ssize_t n;
    int r;

    want_len = (size_t)snprintf(want, sizeof(want), "socket:[%u]", inode);
    if (sock_try(ctx, inode, want, want_len, ret_pid, ret_piddir)) {
        pthread_mutex_lock(&ctx->lock);
        ctx->stats.sock_hits++;
        pthread_mutex_unlock(&ctx->lock);
        return 0;
    }
    if (quick)
        return recent_members_probe(ctx, want, want_len, ret_pid, ret_piddir) ? 0 : -EAGAIN;
    /* The members known now, then those the walks add: each scanned once. */
    for (int pass = 0; pass < 3; pass++) {
        if (pass > 0) {
            r = ctx_refresh(ctx, found_ns, pass == 2);
            if (r < 0)
                return r;
        }
        n = members_snapshot(ctx, &gen, &list);
        if (n < 0)
            return (int)n;
        r = members_scan(ctx, list, (size_t)n, want, want_len, false, &budget, ret_pid, ret_piddir);
        free(list);
        if (r != 0)
            return r < 0 ? r : 0;
    }
    return -ENOENT;
}

/* ident_lookup() and ident_lookup_quick(). */
static int lookup_flow(struct ident_ctx *ctx, const struct net_addr *src, uint16_t sport,
                       const struct net_addr *dst, uint16_t dport, bool quick, pid_t *ret_pid,
                       char *ret_exe, size_t exe_len)
{
    struct diag_query q = {.src = src, .dst = dst, .sport = sport, .dport = dport};
    char exe[PATH_MAX];
    uint32_t inode = 0;
    pid_t pid = 0;
    ssize_t n;
    int piddir = -1, r;

    if (!ctx || !src || !dst || src->family != dst->family)
        return -EINVAL;
    if (src->family != AF_INET && src->family != AF_INET6)
        return -EAFNOSUPPORT;

    pthread_mutex_lock(&ctx->lock);
    ctx->stats.lookups++;
    pthread_mutex_unlock(&ctx->lock);

    r = diag_find_inode(ctx, &q, quick, &inode);
    if (r < 0)
        return r;
    /* Any walk that starts from now on lists the holder. */
    r = find_holder(ctx, inode, now_ns(), quick, &pid, &piddir);
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

int ident_lookup(struct ident_ctx *ctx, const struct net_addr *src, uint16_t sport,
                 const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                 size_t exe_len)
{
    return lookup_flow(ctx, src, sport, dst, dport, false, ret_pid, ret_exe, exe_len);
}

int ident_lookup_quick(struct ident_ctx *ctx, const struct net_addr *src, uint16_t sport,
                       const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                       size_t exe_len)
{
    return lookup_flow(ctx, src, sport, dst, dport, true, ret_pid, ret_exe, exe_len);
}
