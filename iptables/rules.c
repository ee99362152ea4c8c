#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Suffixes of the per-sandbox chains, one per table we hook. */
enum rules_chain {
    RULES_CHAIN_RAW = 0,
    RULES_CHAIN_NAT,
    RULES_CHAIN_IN,
    RULES_CHAIN_FWD,
    RULES_CHAIN_MAX,
};

static const char *const chain_suffix[RULES_CHAIN_MAX] = {"RAW", "NAT", "IN", "FWD"};

/* "PCL4294967295-RAW" is 17 characters, well inside the 28 iptables allows. */
#define RULES_CHAIN_NAMESZ 32

/* iptables-save of a busy host can be large; beyond this something is wrong. */
#define RULES_SAVE_MAX (64u << 20)

static void chain_name(unsigned index, enum rules_chain c, char buf[RULES_CHAIN_NAMESZ])
{
    snprintf(buf, RULES_CHAIN_NAMESZ, "PCL%u-%s", index, chain_suffix[c]);
}

/* snprintf-style appender: keeps counting past the end so the caller learns
 * the size it needs. */
struct text {
    char *buf;
    size_t len;
    size_t pos;
};

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    size_t room = t->pos < t->len ? t->len - t->pos : 0;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(room ? t->buf + t->pos : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->pos += (size_t)n;
}

static void text_add_mem(struct text *t, const char *s, size_t n)
{
    if (t->pos < t->len) {
        size_t room = t->len - t->pos - 1;
        size_t c = n < room ? n : room;
        memcpy(t->buf + t->pos, s, c);
        t->buf[t->pos + c] = '\0';
    }
    t->pos += n;
}

static int text_finish(struct text *t)
{
    if (t->len > 0 && t->pos < t->len)
        t->buf[t->pos] = '\0';
    if (t->pos > INT_MAX)
        return -EOVERFLOW;
    return (int)t->pos;
}

/*
 * The interface name lands in iptables-restore text, so anything that could
 * split a line or a word, or that iptables reads as syntax ('+' is a wildcard,
 * '!' a negation), is refused rather than escaped.
 */
static bool ifname_valid(const char *name)
{
    size_t n;

    if (!name)
        return false;
    n = strlen(name);
    if (n == 0 || n >= IFNAMSIZ || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

int rules_generate(const struct rules_sandbox *sb, int family, char *buf, size_t len)
{
    struct text t = {.buf = buf, .len = len};
    char ch[RULES_CHAIN_MAX][RULES_CHAIN_NAMESZ];
    char src[NET_ADDR_STRLEN];
    const struct net_addr *addr;
    const char *ifn;

    if (!sb || (!buf && len > 0) || !ifname_valid(sb->host_ifname) || sb->proxy_port == 0)
        return -EINVAL;
    if (family == AF_INET)
        addr = &sb->sandbox_v4;
    else if (family == AF_INET6)
        addr = &sb->sandbox_v6;
    else
        return -EINVAL;
    if (addr->family != family)
        return -EINVAL;

    ifn = sb->host_ifname;
    net_addr_format(addr, src, sizeof(src));
    for (int c = 0; c < RULES_CHAIN_MAX; c++)
        chain_name(sb->index, (enum rules_chain)c, ch[c]);

    /*
     * Every jump is inserted at position 1 so that a host rule earlier in the
     * built-in chain (an ACCEPT, a foreign DNAT) cannot pre-empt the sandbox's.
     */

    /* raw: anything not from the sandbox's own address is spoofed. */
    text_add(&t, "*raw\n:%s - [0:0]\n", ch[RULES_CHAIN_RAW]);
    text_add(&t, "-I PREROUTING 1 -i %s -j %s\n", ifn, ch[RULES_CHAIN_RAW]);
    text_add(&t, "-A %s -s %s/%u -j RETURN\n", ch[RULES_CHAIN_RAW], src,
             family == AF_INET ? 32u : 128u);
    if (family == AF_INET6) /* neighbour discovery runs from link-local addresses */
        text_add(&t, "-A %s -s fe80::/10 -p ipv6-icmp -j RETURN\n", ch[RULES_CHAIN_RAW]);
    text_add(&t, "-A %s -j DROP\nCOMMIT\n", ch[RULES_CHAIN_RAW]);

    /* nat: every TCP flow goes to the transparent listener.
     * Later: UDP port 53 REDIRECT to the policy DNS goes here, before the
     * NFQUEUE for the rest of UDP and ICMP (filter table). */
    text_add(&t, "*nat\n:%s - [0:0]\n", ch[RULES_CHAIN_NAT]);
    text_add(&t, "-I PREROUTING 1 -i %s -j %s\n", ifn, ch[RULES_CHAIN_NAT]);
    text_add(&t, "-A %s -p tcp -j REDIRECT --to-ports %u\nCOMMIT\n", ch[RULES_CHAIN_NAT],
             (unsigned)sb->proxy_port);

    /* filter: only redirected flows reach the host; nothing is routed. */
    text_add(&t, "*filter\n:%s - [0:0]\n:%s - [0:0]\n", ch[RULES_CHAIN_IN], ch[RULES_CHAIN_FWD]);
    text_add(&t, "-I INPUT 1 -i %s -j %s\n", ifn, ch[RULES_CHAIN_IN]);
    text_add(&t, "-I FORWARD 1 -i %s -j %s\n", ifn, ch[RULES_CHAIN_FWD]);
    text_add(&t, "-I FORWARD 1 -o %s -j %s\n", ifn, ch[RULES_CHAIN_FWD]);
    /*
     * ctstate DNAT: a direct connection to the proxy port is not a redirect.
     * A new flow is let in only when the socket that would take it is
     * transparent, which takes CAP_NET_ADMIN: a local process that binds the
     * port while portcullisd is down gets a reset, never the sandbox's
     * connections.  The rest of an accepted flow goes by its conntrack entry.
     */
    text_add(&t,
             "-A %s -p tcp -m tcp --dport %u -m conntrack --ctstate DNAT -m conntrack ! --ctstate "
             "NEW -j ACCEPT\n",
             ch[RULES_CHAIN_IN], (unsigned)sb->proxy_port);
    text_add(&t,
             "-A %s -p tcp -m tcp --dport %u -m conntrack --ctstate DNAT -m socket --transparent "
             "--nowildcard -j ACCEPT\n",
             ch[RULES_CHAIN_IN], (unsigned)sb->proxy_port);
    text_add(&t,
             "-A %s -p tcp -m tcp --dport %u -m conntrack --ctstate DNAT -j REJECT --reject-with "
             "tcp-reset\n",
             ch[RULES_CHAIN_IN], (unsigned)sb->proxy_port);
    if (family == AF_INET6) {
        /* router solicitation is harmless; NS/NA are needed to reach the host */
        static const unsigned nd_types[] = {133, 135, 136};
        for (size_t i = 0; i < ARRAY_SIZE(nd_types); i++)
            text_add(&t, "-A %s -p ipv6-icmp -m icmp6 --icmpv6-type %u -j ACCEPT\n",
                     ch[RULES_CHAIN_IN], nd_types[i]);
    }
    /* Later: NFQUEUE for UDP and ICMP goes here, before the final DROP. */
    text_add(&t, "-A %s -j DROP\n", ch[RULES_CHAIN_IN]);
    text_add(&t, "-A %s -j DROP\nCOMMIT\n", ch[RULES_CHAIN_FWD]);

    return text_finish(&t);
}

/* Split the next word of an iptables-save line, honouring "..." with \"
 * escapes (comments); returns false at the end of the line. */
static bool next_word(const char **p, const char *end, const char **ret_w, size_t *ret_n)
{
    const char *s = *p;

    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s >= end)
        return false;
    *ret_w = s;
    if (*s == '"') {
        for (s++; s < end && *s != '"'; s++)
            if (*s == '\\' && s + 1 < end)
                s++;
        if (s < end)
            s++;
    } else {
        while (s < end && *s != ' ' && *s != '\t')
            s++;
    }
    *ret_n = (size_t)(s - *ret_w);
    *p = s;
    return true;
}

static bool word_is(const char *w, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(w, s, n) == 0;
}

static int chain_lookup(char ch[RULES_CHAIN_MAX][RULES_CHAIN_NAMESZ], const char *w, size_t n)
{
    for (int c = 0; c < RULES_CHAIN_MAX; c++)
        if (word_is(w, n, ch[c]))
            return c;
    return -1;
}

/* Does this "-A CHAIN ..." line live in one of ours (parent), or jump to one
 * of ours (target)? */
static void rule_classify(char ch[RULES_CHAIN_MAX][RULES_CHAIN_NAMESZ], const char *line,
                          const char *end, bool *ret_in_ours, bool *ret_to_ours)
{
    const char *p = line, *w;
    size_t n;
    bool want_target = false;

    *ret_in_ours = *ret_to_ours = false;
    if (!next_word(&p, end, &w, &n) || !next_word(&p, end, &w, &n))
        return;
    *ret_in_ours = chain_lookup(ch, w, n) >= 0;
    while (next_word(&p, end, &w, &n)) {
        if (want_target && chain_lookup(ch, w, n) >= 0)
            *ret_to_ours = true;
        want_target = word_is(w, n, "-j") || word_is(w, n, "-g") || word_is(w, n, "--jump") ||
                      word_is(w, n, "--goto");
    }
}

/*
 * Removal text from the current ruleset (iptables-save output): delete every
 * rule that jumps to one of the sandbox's chains, then flush and delete the
 * chains, per table.  Built from what exists, so it works on any partial state
 * (a crash half way through apply, duplicated jumps) and is empty when nothing
 * is left.  Pure; returns the length (snprintf semantics) or -EINVAL.
 */
int rules_generate_removal(const struct rules_sandbox *sb, const char *saved, char *buf, size_t len)
{
    struct text t = {.buf = buf, .len = len};
    char ch[RULES_CHAIN_MAX][RULES_CHAIN_NAMESZ];
    const char *p, *table = NULL;
    size_t table_len = 0;

    if (!sb || !saved || (!buf && len > 0))
        return -EINVAL;
    for (int c = 0; c < RULES_CHAIN_MAX; c++)
        chain_name(sb->index, (enum rules_chain)c, ch[c]);
    if (len > 0)
        buf[0] = '\0';

    /* Two passes over each table section: jumps first, then the chains, so a
     * chain is never deleted while still referenced. */
    for (p = saved; *p;) {
        const char *eol = strchr(p, '\n');
        const char *end = eol ? eol : p + strlen(p);
        const char *next = eol ? eol + 1 : end;

        if (*p != '*') {
            p = next;
            continue;
        }
        table = p + 1;
        table_len = (size_t)(end - table);

        bool header = false, own[RULES_CHAIN_MAX] = {false};
        const char *q;
        for (q = next; *q && *q != '*';) {
            const char *qe = strchr(q, '\n');
            const char *qend = qe ? qe : q + strlen(q);
            const char *w;
            size_t n;

            if (*q == ':') {
                const char *r = q + 1;
                if (next_word(&r, qend, &w, &n)) {
                    int c = chain_lookup(ch, w, n);
                    if (c >= 0)
                        own[c] = true;
                }
            } else if (qend - q > 3 && memcmp(q, "-A ", 3) == 0) {
                bool in_ours, to_ours;
                rule_classify(ch, q, qend, &in_ours, &to_ours);
                /* rules inside our chains go with the flush below */
                if (to_ours && !in_ours) {
                    if (!header) {
                        text_add(&t, "*");
                        text_add_mem(&t, table, table_len);
                        text_add(&t, "\n");
                        header = true;
                    }
                    text_add(&t, "-D");
                    text_add_mem(&t, q + 2, (size_t)(qend - q - 2));
                    text_add(&t, "\n");
                }
            }
            q = qe ? qe + 1 : qend;
        }
        for (int c = 0; c < RULES_CHAIN_MAX; c++) {
            if (!own[c])
                continue;
            if (!header) {
                text_add(&t, "*");
                text_add_mem(&t, table, table_len);
                text_add(&t, "\n");
                header = true;
            }
            text_add(&t, "-F %s\n", ch[c]);
        }
        for (int c = 0; c < RULES_CHAIN_MAX; c++)
            if (own[c])
                text_add(&t, "-X %s\n", ch[c]);
        if (header)
            text_add(&t, "COMMIT\n");
        p = q;
    }
    return text_finish(&t);
}

/* ---- running iptables-restore / iptables-save ---- */

enum rules_tool {
    TOOL_SAVE = 0,
    TOOL_RESTORE,
    TOOL_MAX,
};

static const char *tool_name(int family, enum rules_tool tool)
{
    if (tool == TOOL_SAVE)
        return family == AF_INET6 ? "ip6tables-save" : "iptables-save";
    return family == AF_INET6 ? "ip6tables-restore" : "iptables-restore";
}

/* Find name in PATH; /usr/sbin and /sbin are appended because a root shell
 * reached through su or a service may not have them. */
static int find_binary(const char *name, char *buf, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    char *save = NULL;

    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin", path && *path ? path : "/usr/bin:/bin");
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (*d != '/') /* relative PATH entries are never trusted by a root tool */
            continue;
        if ((size_t)snprintf(buf, len, "%s/%s", d, name) >= len)
            continue;
        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

static void close_from(int lowfd)
{
    struct rlimit rl;

    if (close_range((unsigned)lowfd, ~0u, 0) == 0)
        return;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536)
        rl.rlim_cur = 65536;
    for (int fd = lowfd; fd < (int)rl.rlim_cur; fd++)
        close(fd);
}

/* Keep pipe ends off 0..2, so the dup2() calls in the child cannot clobber one
 * another when the caller runs with a standard stream closed. */
static int fd_above_stdio(int fd)
{
    int nfd;

    if (fd > STDERR_FILENO)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    return nfd < 0 ? -errno : nfd;
}

static void close_pipes(int in_p[2], int out_p[2], int err_p[2])
{
    for (int i = 0; i < 2; i++) {
        if (in_p[i] >= 0)
            close(in_p[i]);
        if (out_p[i] >= 0)
            close(out_p[i]);
        if (err_p[i] >= 0)
            close(err_p[i]);
        in_p[i] = out_p[i] = err_p[i] = -1;
    }
}

struct run_result {
    char *out; /* stdout (malloc'd, NUL-terminated) when asked for */
    size_t out_len;
    char err[512];  /* first non-empty line of stderr */
    size_t err_len; /* bytes of stderr kept in errbuf */
    char errbuf[4096];
    int status; /* wait status */
};

static int out_append(struct run_result *r, size_t *cap, const char *data, size_t n)
{
    if (r->out_len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 65536;
        char *nb;
        while (ncap < r->out_len + n + 1)
            ncap *= 2;
        if (ncap > RULES_SAVE_MAX)
            return -EFBIG;
        nb = realloc(r->out, ncap);
        if (!nb)
            return -ENOMEM;
        r->out = nb;
        *cap = ncap;
    }
    memcpy(r->out + r->out_len, data, n);
    r->out_len += n;
    r->out[r->out_len] = '\0';
    return 0;
}

static void first_line(struct run_result *r)
{
    const char *s = r->errbuf, *end = r->errbuf + r->err_len;

    r->err[0] = '\0';
    while (s < end) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        size_t n = e ? (size_t)(e - s) : (size_t)(end - s);
        if (n > 0) {
            if (n >= sizeof(r->err))
                n = sizeof(r->err) - 1;
            memcpy(r->err, s, n);
            r->err[n] = '\0';
            return;
        }
        s += n + 1;
    }
}

/*
 * Run argv[0] (absolute path) with input on its stdin, collecting stdout into
 * r->out when want_out, and stderr into r->errbuf.  One poll loop serves all
 * three pipes so neither side can block the other.  SIGPIPE is blocked while
 * writing so a child that dies early is an EPIPE, not the end of the caller.
 * Returns 0 when the child ran (r->status says how it ended) or -errno.
 */
static int run_tool(char *const argv[], const char *input, size_t input_len, bool want_out,
                    struct run_result *r)
{
    int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    sigset_t pipe_set, old_set;
    bool sigpipe_pending_before;
    size_t written = 0, out_cap = 0;
    pid_t pid;
    int ret = 0;

    memset(r, 0, sizeof(*r));
    if (pipe2(in_p, O_CLOEXEC) < 0 || pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0) {
        ret = -errno;
        goto fail_pipes;
    }
    for (int i = 0; i < 2; i++) {
        in_p[i] = fd_above_stdio(in_p[i]);
        out_p[i] = fd_above_stdio(out_p[i]);
        err_p[i] = fd_above_stdio(err_p[i]);
        if (in_p[i] < 0 || out_p[i] < 0 || err_p[i] < 0) {
            ret = -EMFILE;
            goto fail_pipes;
        }
    }

    pid = fork();
    if (pid < 0) {
        ret = -errno;
        goto fail_pipes;
    }
    if (pid == 0) {
        int devnull = -1;
        if (!want_out) {
            devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (devnull >= 0 && devnull <= STDERR_FILENO)
                devnull = fcntl(devnull, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        }
        if (dup2(in_p[0], STDIN_FILENO) < 0 ||
            dup2(want_out ? out_p[1] : devnull, STDOUT_FILENO) < 0 ||
            dup2(err_p[1], STDERR_FILENO) < 0)
            _exit(127);
        close_from(3);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        _exit(127);
    }

    close(in_p[0]);
    close(out_p[1]);
    close(err_p[1]);
    in_p[0] = out_p[1] = err_p[1] = -1;
    if (input_len == 0) {
        close(in_p[1]);
        in_p[1] = -1;
    }

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    {
        sigset_t pending;
        sigpending(&pending);
        sigpipe_pending_before = sigismember(&pending, SIGPIPE) == 1;
    }
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);

    while (in_p[1] >= 0 || out_p[0] >= 0 || err_p[0] >= 0) {
        struct pollfd pf[3] = {
            {.fd = in_p[1], .events = POLLOUT},
            {.fd = out_p[0], .events = POLLIN},
            {.fd = err_p[0], .events = POLLIN},
        };
        char chunk[16384];
        ssize_t n;

        if (poll(pf, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (pf[0].revents) {
            n = write(in_p[1], input + written, input_len - written);
            if (n > 0)
                written += (size_t)n;
            /* EPIPE: the child stopped reading; its exit status will say why */
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == input_len) {
                close(in_p[1]);
                in_p[1] = -1;
            }
        }
        if (pf[1].revents) {
            n = read(out_p[0], chunk, sizeof(chunk));
            if (n > 0) {
                int e = out_append(r, &out_cap, chunk, (size_t)n);
                if (e < 0 && ret == 0)
                    ret = e; /* keep draining so the child can finish */
            } else if (n == 0 || errno != EINTR) {
                close(out_p[0]);
                out_p[0] = -1;
            }
        }
        if (pf[2].revents) {
            n = read(err_p[0], chunk, sizeof(chunk));
            if (n > 0) {
                size_t keep = sizeof(r->errbuf) - r->err_len;
                if ((size_t)n < keep)
                    keep = (size_t)n;
                memcpy(r->errbuf + r->err_len, chunk, keep);
                r->err_len += keep;
            } else if (n == 0 || errno != EINTR) {
                close(err_p[0]);
                err_p[0] = -1;
            }
        }
    }

    /* after a poll failure: closing our ends lets a blocked child finish */
    close_pipes(in_p, out_p, err_p);

    if (!sigpipe_pending_before) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);

    while (waitpid(pid, &r->status, 0) < 0) {
        if (errno != EINTR) {
            if (ret == 0)
                ret = -errno;
            break;
        }
    }
    first_line(r);

fail_pipes:
    close_pipes(in_p, out_p, err_p);
    if (ret < 0) {
        free(r->out);
        r->out = NULL;
    }
    return ret;
}

static bool exited_ok(const struct run_result *r)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static void log_tool_failure(const char *what, const char *tool, const struct run_result *r)
{
    if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 127 && !r->err[0])
        log_error("%s: could not execute %s", what, tool);
    else if (WIFEXITED(r->status))
        log_error("%s: %s exited with status %d%s%s", what, tool, WEXITSTATUS(r->status),
                  r->err[0] ? ": " : "", r->err);
    else
        log_error("%s: %s killed by signal %d", what, tool,
                  WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0);
}

/* Feed text to (ip6)iptables-restore --noflush -w. */
static int restore(int family, const char *text, size_t text_len, const char *what)
{
    const char *name = tool_name(family, TOOL_RESTORE);
    char path[PATH_MAX];
    struct run_result r;
    int ret;

    if (find_binary(name, path, sizeof(path)) < 0) {
        log_error("%s: %s not found in PATH", what, name);
        return -ENOENT;
    }
    char *argv[] = {path, "--noflush", "-w", NULL};
    ret = run_tool(argv, text, text_len, false, &r);
    if (ret < 0) {
        log_error("%s: running %s: %s", what, name, strerror(-ret));
        return ret;
    }
    if (!exited_ok(&r)) {
        log_tool_failure(what, name, &r);
        return -EIO;
    }
    return 0;
}

/* iptables-save of one family; *ret_text is malloc'd. */
static int save(int family, char **ret_text, const char *what)
{
    const char *name = tool_name(family, TOOL_SAVE);
    char path[PATH_MAX];
    struct run_result r;
    int ret;

    if (find_binary(name, path, sizeof(path)) < 0) {
        log_error("%s: %s not found in PATH", what, name);
        return -ENOENT;
    }
    char *argv[] = {path, NULL};
    ret = run_tool(argv, NULL, 0, true, &r);
    if (ret < 0) {
        log_error("%s: running %s: %s", what, name, strerror(-ret));
        return ret;
    }
    if (!exited_ok(&r)) {
        log_tool_failure(what, name, &r);
        free(r.out);
        return -EIO;
    }
    *ret_text = r.out ? r.out : strdup("");
    return *ret_text ? 0 : -ENOMEM;
}

/* Removal text for what of the sandbox currently exists in family; NULL text
 * (and 0) when nothing is left. */
static int removal_text(const struct rules_sandbox *sb, int family, char **ret_text,
                        const char *what)
{
    char *saved = NULL, *text;
    int n, ret;

    *ret_text = NULL;
    ret = save(family, &saved, what);
    if (ret < 0)
        return ret;
    n = rules_generate_removal(sb, saved, NULL, 0);
    if (n <= 0) {
        free(saved);
        return n;
    }
    text = malloc((size_t)n + 1);
    if (!text) {
        free(saved);
        return -ENOMEM;
    }
    rules_generate_removal(sb, saved, text, (size_t)n + 1);
    free(saved);
    *ret_text = text;
    return 0;
}

static int remove_family(const struct rules_sandbox *sb, int family)
{
    char *text;
    int ret;

    ret = removal_text(sb, family, &text, "removing sandbox rules");
    if (ret < 0 || !text)
        return ret;
    ret = restore(family, text, strlen(text), "removing sandbox rules");
    free(text);
    if (ret < 0)
        return ret;

    /* Verify: whatever is still there (a concurrent re-add, a reference we
     * could not delete) is an error, not a silent leftover. */
    ret = removal_text(sb, family, &text, "verifying removal of sandbox rules");
    if (ret < 0)
        return ret;
    if (text) {
        log_error("removing sandbox rules: chains PCL%u-* still present in %s after removal",
                  sb->index, tool_name(family, TOOL_SAVE));
        free(text);
        return -EBUSY;
    }
    return 0;
}

static int remove_chains(const struct rules_sandbox *sb)
{
    /* Both families always, so one failing does not leave the other behind. */
    int r4 = remove_family(sb, AF_INET);
    int r6 = remove_family(sb, AF_INET6);

    return r4 < 0 ? r4 : r6;
}

int rules_remove(const struct rules_sandbox *sb)
{
    int lock, ret, cret;

    if (!sb)
        return -EINVAL;
    /* Under the registry lock, so no apply elsewhere sees a table we are
     * about to delete as already there. */
    lock = rules_nft_lock();
    ret = remove_chains(sb);
    if (lock < 0)
        return ret < 0 ? ret : lock;
    /* Even after a failure: a table still holding our leftovers is kept. */
    cret = rules_nft_cleanup(lock);
    rules_nft_unlock(lock);
    return ret < 0 ? ret : cret;
}

static int generate_alloc(const struct rules_sandbox *sb, int family, char **ret_text)
{
    int n = rules_generate(sb, family, NULL, 0);
    char *text;

    if (n < 0)
        return n;
    text = malloc((size_t)n + 1);
    if (!text)
        return -ENOMEM;
    rules_generate(sb, family, text, (size_t)n + 1);
    *ret_text = text;
    return n;
}

int rules_apply(const struct rules_sandbox *sb)
{
    char *v4 = NULL, *v6 = NULL;
    unsigned existing;
    int n4, n6, lock, ret, rret;

    /* Both families or none: a sandbox with IPv4 rules only would reach the
     * host over IPv6 unfiltered. */
    n4 = generate_alloc(sb, AF_INET, &v4);
    if (n4 < 0) {
        log_error("applying sandbox rules: invalid sandbox description (IPv4): %s", strerror(-n4));
        return n4;
    }
    n6 = generate_alloc(sb, AF_INET6, &v6);
    if (n6 < 0) {
        log_error("applying sandbox rules: invalid sandbox description (IPv6): %s", strerror(-n6));
        free(v4);
        return n6;
    }

    /* Held from "which tables exist" to "these were created", so a removal
     * elsewhere cannot delete a table between our look and our use of it. */
    lock = rules_nft_lock();
    if (lock < 0) {
        ret = lock;
        goto out;
    }

    /* Leftovers of a previous sandbox with this index (or a crash half way)
     * would otherwise make duplicate jumps. */
    ret = remove_chains(sb);
    if (ret == 0)
        ret = rules_nft_existing(&existing);
    if (ret < 0)
        goto out_unlock;

    ret = restore(AF_INET, v4, (size_t)n4, "applying sandbox rules (IPv4)");
    if (ret == 0)
        ret = restore(AF_INET6, v6, (size_t)n6, "applying sandbox rules (IPv6)");
    /* Recorded even after a failure, so the cleanup below knows them. */
    rret = rules_nft_record(lock, ~existing & RULES_NFT_ALL);
    if (ret == 0)
        ret = rret;
    /* restore commits per table, so a failure can leave part of it behind */
    if (ret < 0) {
        (void)remove_chains(sb);
        (void)rules_nft_cleanup(lock);
    }
out_unlock:
    rules_nft_unlock(lock);
out:
    free(v4);
    free(v6);
    return ret;
}
