/*
 * nftables: put back the nf_tables tables that iptables-nft created for us.
 *
 * With the nf_tables backend, the first iptables-restore on a host without
 * tables creates "ip raw", "ip6 nat", ... with base chains, and removing our
 * chains leaves those tables behind, which iptables-save then prints.  The
 * tables an apply created are listed in RULES_NFT_REGISTRY; once nothing
 * but bare accepting base chains is left in one, it is deleted.  A table
 * that existed before is never listed, so never deleted.  The registry is
 * one per host, not per state directory: the tables belong to the host's
 * network namespace, so sandboxes of every registry (PORTCULLIS_STATE_DIR)
 * share them, and one registry's last removal must not delete a table
 * another's apply is about to fill (it saw the table there, so it did not
 * list it).
 *
 * This speaks nf_tables netlink directly (libmnl): the nft CLI is optional.
 */
#include "rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "sandbox.h"

/* the registry is six short lines; anything longer is not ours */
#define REGISTRY_MAX 4096
/* room for any dump message the kernel sends (it sizes to our buffer) */
#define NFT_BUFSZ (64u * 1024)
/* the ruleset changed between our check and our delete: check again */
#define NFT_CLEANUP_ATTEMPTS 8

static const char *const table_name[3] = {"raw", "nat", "filter"};

const char *rules_nft_table_label(unsigned i)
{
    static const char *const label[RULES_NFT_NTABLES] = {"ip raw",  "ip nat",  "ip filter",
                                                         "ip6 raw", "ip6 nat", "ip6 filter"};
    return i < RULES_NFT_NTABLES ? label[i] : NULL;
}

static int family_index(uint8_t nfproto)
{
    if (nfproto == NFPROTO_IPV4)
        return 0;
    if (nfproto == NFPROTO_IPV6)
        return 1;
    return -1;
}

static int table_index(const char *name)
{
    for (int t = 0; t < 3; t++)
        if (strcmp(name, table_name[t]) == 0)
            return t;
    return -1;
}

/* ---- registry text ---- */

unsigned rules_nft_registry_parse(const char *text)
{
    unsigned mask = 0;

    if (!text)
        return 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);

        for (unsigned i = 0; i < RULES_NFT_NTABLES; i++) {
            const char *l = rules_nft_table_label(i);
            if (strlen(l) == n && memcmp(p, l, n) == 0)
                mask |= 1u << i;
        }
        p += n + (eol ? 1 : 0);
    }
    return mask;
}

int rules_nft_registry_format(unsigned mask, char *buf, size_t len)
{
    size_t pos = 0;

    if (!buf && len > 0)
        return -EINVAL;
    if (len > 0)
        buf[0] = '\0';
    for (unsigned i = 0; i < RULES_NFT_NTABLES; i++) {
        if (!(mask & (1u << i)))
            continue;
        int n = snprintf(pos < len ? buf + pos : NULL, pos < len ? len - pos : 0, "%s\n",
                         rules_nft_table_label(i));
        if (n < 0)
            return -EINVAL;
        pos += (size_t)n;
    }
    return (int)pos;
}

/* ---- classifying dump messages ---- */

/* The base chains iptables-nft makes in each table (NF_IP_PRI_* and
 * NF_IP6_PRI_* agree); these and nothing else may be left in a table we drop. */
struct builtin_chain {
    const char *name;
    uint32_t hook;
    int32_t prio;
};

static const struct builtin_chain builtin_raw[] = {
    {"PREROUTING", NF_INET_PRE_ROUTING, -300},
    {"OUTPUT", NF_INET_LOCAL_OUT, -300},
};
static const struct builtin_chain builtin_nat[] = {
    {"PREROUTING", NF_INET_PRE_ROUTING, -100},
    {"INPUT", NF_INET_LOCAL_IN, 100},
    {"OUTPUT", NF_INET_LOCAL_OUT, -100},
    {"POSTROUTING", NF_INET_POST_ROUTING, 100},
};
static const struct builtin_chain builtin_filter[] = {
    {"INPUT", NF_INET_LOCAL_IN, 0},
    {"FORWARD", NF_INET_FORWARD, 0},
    {"OUTPUT", NF_INET_LOCAL_OUT, 0},
};

static const struct {
    const struct builtin_chain *chains;
    size_t n;
    const char *type;
} builtin[3] = {
    {builtin_raw, ARRAY_SIZE(builtin_raw), "filter"},
    {builtin_nat, ARRAY_SIZE(builtin_nat), "nat"},
    {builtin_filter, ARRAY_SIZE(builtin_filter), "filter"},
};

#define ATTR_MAX 32

static int attr_collect(const struct nlattr *a, void *data)
{
    const struct nlattr **tb = data;
    uint16_t type = mnl_attr_get_type(a);

    if (type < ATTR_MAX)
        tb[type] = a;
    return MNL_CB_OK;
}

static const char *attr_str(const struct nlattr *a)
{
    if (!a || mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
        return NULL;
    return mnl_attr_get_str(a);
}

static bool attr_u32(const struct nlattr *a, uint32_t *ret)
{
    if (!a || mnl_attr_validate(a, MNL_TYPE_U32) < 0)
        return false;
    *ret = ntohl(mnl_attr_get_u32(a));
    return true;
}

/* A bare base chain exactly as iptables-nft creates it, policy ACCEPT. */
static bool chain_is_builtin(int t, const struct nlattr **tb)
{
    const struct nlattr *hk[ATTR_MAX] = {NULL};
    const char *name = attr_str(tb[NFTA_CHAIN_NAME]);
    const char *type = attr_str(tb[NFTA_CHAIN_TYPE]);
    uint32_t hooknum, prio, policy, flags;

    if (!name || !type || strcmp(type, builtin[t].type) != 0)
        return false;
    if (!attr_u32(tb[NFTA_CHAIN_POLICY], &policy) || policy != NF_ACCEPT)
        return false;
    if (tb[NFTA_CHAIN_FLAGS] &&
        (!attr_u32(tb[NFTA_CHAIN_FLAGS], &flags) || flags != NFT_CHAIN_BASE))
        return false;
    if (!tb[NFTA_CHAIN_HOOK] || mnl_attr_validate(tb[NFTA_CHAIN_HOOK], MNL_TYPE_NESTED) < 0 ||
        mnl_attr_parse_nested(tb[NFTA_CHAIN_HOOK], attr_collect, hk) < 0)
        return false;
    if (!attr_u32(hk[NFTA_HOOK_HOOKNUM], &hooknum) || !attr_u32(hk[NFTA_HOOK_PRIORITY], &prio) ||
        hk[NFTA_HOOK_DEV] || hk[NFTA_HOOK_DEVS])
        return false;
    for (size_t i = 0; i < builtin[t].n; i++) {
        const struct builtin_chain *c = &builtin[t].chains[i];
        if (strcmp(name, c->name) == 0)
            return hooknum == c->hook && (int32_t)prio == c->prio;
    }
    return false;
}

int rules_nft_classify(const struct nlmsghdr *nlh, bool *ret_foreign)
{
    const struct nlattr *tb[ATTR_MAX] = {NULL};
    const struct nfgenmsg *nfg;
    const char *tname;
    uint32_t flags;
    int f, t;

    *ret_foreign = true;
    if (!nlh || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*nfg)) ||
        NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
        return -EINVAL;
    nfg = mnl_nlmsg_get_payload(nlh);
    f = family_index(nfg->nfgen_family);
    if (f < 0)
        return -1;
    if (mnl_attr_parse(nlh, sizeof(*nfg), attr_collect, tb) < 0)
        return -EINVAL;
    /* every object names its table in attribute 1 */
    _Static_assert(NFTA_TABLE_NAME == 1 && NFTA_CHAIN_TABLE == 1 && NFTA_RULE_TABLE == 1 &&
                       NFTA_SET_TABLE == 1 && NFTA_OBJ_TABLE == 1 && NFTA_FLOWTABLE_TABLE == 1,
                   "NFTA_*_TABLE");
    tname = attr_str(tb[NFTA_TABLE_NAME]);
    if (!tname)
        return -EINVAL;
    t = table_index(tname);
    if (t < 0)
        return -1;

    switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
    case NFT_MSG_NEWTABLE:
        /* dormant or owned by a process: someone else's table */
        *ret_foreign = tb[NFTA_TABLE_FLAGS] && (!attr_u32(tb[NFTA_TABLE_FLAGS], &flags) || flags);
        break;
    case NFT_MSG_NEWCHAIN:
        *ret_foreign = !chain_is_builtin(t, tb);
        break;
    default: /* rules, sets, objects, flowtables: none of them ours */
        *ret_foreign = true;
        break;
    }
    return f * 3 + t;
}

/* ---- netlink ---- */

struct nft_sock {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    char *buf;
};

/* nf_tables absent (module not loaded, legacy-only kernel): no tables. */
static bool nft_unsupported(int err)
{
    return err == EPROTONOSUPPORT || err == EOPNOTSUPP || err == EAFNOSUPPORT;
}

static void nft_close(struct nft_sock *s)
{
    if (s->nl)
        mnl_socket_close(s->nl);
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

static int nft_open(struct nft_sock *s)
{
    struct timeval tv = {.tv_sec = 5};

    memset(s, 0, sizeof(*s));
    s->buf = malloc(NFT_BUFSZ);
    if (!s->buf)
        return -ENOMEM;
    s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!s->nl || mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int ret = -errno;
        nft_close(s);
        return ret;
    }
    /* never hang on a kernel that does not answer */
    setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    s->portid = mnl_socket_get_portid(s->nl);
    s->seq = (uint32_t)time(NULL);
    return 0;
}

static struct nlmsghdr *nft_put(char *buf, uint16_t type, uint16_t flags, uint32_t seq,
                                uint8_t family, uint16_t res_id)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    struct nfgenmsg *nfg;

    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = seq;
    nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(res_id);
    return nlh;
}

/* Send a request and run cb over the answer until NLMSG_DONE (dump) or one
 * reply (get).  Returns 0 or -errno. */
static int nft_query(struct nft_sock *s, uint8_t msg, uint8_t family, bool dump, mnl_cb_t cb,
                     void *data)
{
    uint32_t seq = ++s->seq;
    struct nlmsghdr *nlh = nft_put(s->buf, (NFNL_SUBSYS_NFTABLES << 8) | msg,
                                   dump ? NLM_F_DUMP : NLM_F_ACK, seq, family, 0);
    ssize_t n;
    int ret;

    if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    do {
        n = mnl_socket_recvfrom(s->nl, s->buf, NFT_BUFSZ);
        if (n < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        ret = mnl_cb_run(s->buf, (size_t)n, seq, s->portid, cb, data);
        if (ret < 0)
            return -errno;
    } while (ret > MNL_CB_STOP);
    return 0;
}

struct gen_ctx {
    uint32_t id;
    bool found;
};

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
    const struct nlattr *tb[ATTR_MAX] = {NULL};
    struct gen_ctx *g = data;

    if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_collect, tb) >= 0)
        g->found = attr_u32(tb[NFTA_GEN_ID], &g->id);
    return MNL_CB_OK;
}

static int nft_genid(struct nft_sock *s, uint32_t *ret)
{
    struct gen_ctx g = {0};
    int err = nft_query(s, NFT_MSG_GETGEN, NFPROTO_UNSPEC, false, gen_cb, &g);

    if (err < 0)
        return err;
    if (!g.found)
        return -EPROTO;
    *ret = g.id;
    return 0;
}

struct scan_ctx {
    unsigned present; /* tables seen */
    unsigned foreign; /* tables holding something iptables-nft did not make alone */
    int err;
};

static int scan_cb(const struct nlmsghdr *nlh, void *data)
{
    struct scan_ctx *c = data;
    bool foreign;
    int i = rules_nft_classify(nlh, &foreign);

    if (i == -EINVAL) {
        c->err = -EPROTO;
        return MNL_CB_ERROR;
    }
    if (i < 0)
        return MNL_CB_OK;
    if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWTABLE)
        c->present |= 1u << i;
    if (foreign)
        c->foreign |= 1u << i;
    return MNL_CB_OK;
}

/* Dump msg for family into c; an object type the kernel lacks (flowtables
 * on an old one) has no instances. */
static int scan(struct nft_sock *s, uint8_t msg, uint8_t family, struct scan_ctx *c)
{
    int err = nft_query(s, msg, family, true, scan_cb, c);

    if (c->err < 0)
        return c->err;
    if (err < 0 && (nft_unsupported(-err) || err == -ENOENT))
        return 0;
    return err;
}

static int tables_present(struct nft_sock *s, unsigned *ret_mask)
{
    struct scan_ctx c = {0};
    int err = scan(s, NFT_MSG_GETTABLE, NFPROTO_UNSPEC, &c);

    *ret_mask = c.present;
    return err;
}

int rules_nft_existing(unsigned *ret_mask)
{
    struct nft_sock s;
    int err;

    *ret_mask = 0;
    for (int attempt = 0; attempt < NFT_CLEANUP_ATTEMPTS; attempt++) {
        err = nft_open(&s);
        if (err == 0)
            err = tables_present(&s, ret_mask);
        nft_close(&s);
        if (err != -EINTR) /* an interrupted dump: the tables changed meanwhile */
            break;
    }
    if (err < 0 && nft_unsupported(-err))
        return 0;
    if (err < 0)
        log_error("listing nf_tables tables: %s", strerror(-err));
    return err;
}

/* Everything in the families of mask: which tables exist, which hold foreign
 * content.  Generation first, so the delete that follows fails if anything
 * changed after it. */
static int survey(struct nft_sock *s, unsigned mask, uint32_t *ret_genid, struct scan_ctx *c)
{
    static const uint8_t msgs[] = {NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE,
                                   NFT_MSG_GETSET,   NFT_MSG_GETOBJ,   NFT_MSG_GETFLOWTABLE};
    int err = nft_genid(s, ret_genid);

    memset(c, 0, sizeof(*c));
    for (int f = 0; f < 2 && err == 0; f++) {
        if (!(mask & (7u << (3 * f))))
            continue;
        for (size_t m = 0; m < ARRAY_SIZE(msgs) && err == 0; m++)
            err = scan(s, msgs[m], f == 0 ? NFPROTO_IPV4 : NFPROTO_IPV6, c);
    }
    return err;
}

/* One transaction deleting the tables in mask, refused by the kernel
 * (-ERESTART) if the ruleset generation is no longer genid. */
static int delete_tables(struct nft_sock *s, unsigned mask, uint32_t genid)
{
    uint32_t begin_seq, first_seq, acked = 0, want = 0;
    struct nlmsghdr *nlh;
    char *p = s->buf;
    int ret = 0;

    begin_seq = ++s->seq;
    nlh = nft_put(p, NFNL_MSG_BATCH_BEGIN, 0, begin_seq, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES);
    mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(genid));
    p += nlh->nlmsg_len;
    first_seq = s->seq + 1;
    for (unsigned i = 0; i < RULES_NFT_NTABLES; i++) {
        if (!(mask & (1u << i)))
            continue;
        nlh = nft_put(p, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, NLM_F_ACK, ++s->seq,
                      i < 3 ? NFPROTO_IPV4 : NFPROTO_IPV6, 0);
        mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table_name[i % 3]);
        p += nlh->nlmsg_len;
        want++;
    }
    nlh = nft_put(p, NFNL_MSG_BATCH_END, 0, ++s->seq, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES);
    p += nlh->nlmsg_len;
    if (mnl_socket_sendto(s->nl, s->buf, (size_t)(p - s->buf)) < 0)
        return -errno;

    /* one ack per DELTABLE, or a single error on the batch itself */
    while (acked < want) {
        ssize_t got = mnl_socket_recvfrom(s->nl, s->buf, NFT_BUFSZ);
        int n = (int)got;
        if (got < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        for (nlh = (struct nlmsghdr *)s->buf; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n)) {
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
            if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
                continue;
            if (nlh->nlmsg_seq == begin_seq && e->error)
                return e->error;
            if (nlh->nlmsg_seq >= first_seq && nlh->nlmsg_seq < first_seq + want) {
                acked++;
                /* a table already gone is what we wanted */
                if (e->error && e->error != -ENOENT && ret == 0)
                    ret = e->error;
            }
        }
    }
    return ret;
}

/* ---- the registry file ---- */

static int registry_path(char *buf, size_t len)
{
    if ((size_t)snprintf(buf, len, "%s", RULES_NFT_REGISTRY) >= len)
        return -ENAMETOOLONG;
    return 0;
}

static int mkdir_parents(const char *file)
{
    char dir[PATH_MAX];

    str_copy(dir, file, sizeof(dir));
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

static int registry_read(int fd, unsigned *ret_mask);
static int registry_write(int fd, unsigned mask);

/* Before 2026-11-30 each state directory had a registry of its own
 * (STATE/nft-tables-created): what one lists joins the host's, so an upgrade
 * with sandboxes alive leaves no table behind. */
static void registry_adopt_legacy(int fd)
{
    char path[PATH_MAX];
    unsigned listed = 0, old = 0;
    int lfd;

    if ((size_t)snprintf(path, sizeof(path), "%s/nft-tables-created", sandbox_state_dir()) >=
        sizeof(path))
        return;
    lfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (lfd < 0)
        return;
    if (registry_read(lfd, &old) == 0 && registry_read(fd, &listed) == 0 &&
        (old == 0 || registry_write(fd, listed | old) == 0))
        unlink(path);
    close(lfd);
}

int rules_nft_lock(void)
{
    char path[PATH_MAX];
    int err = registry_path(path, sizeof(path));

    if (err == 0)
        err = mkdir_parents(path);
    if (err < 0) {
        log_error("nf_tables registry %s: %s", RULES_NFT_REGISTRY, strerror(-err));
        return err;
    }
    for (;;) {
        struct stat a, b;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

        if (fd < 0) {
            err = -errno;
            log_error("opening %s: %s", path, strerror(-err));
            return err;
        }
        while ((err = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
            ;
        if (err < 0) {
            err = -errno;
            log_error("locking %s: %s", path, strerror(-err));
            close(fd);
            return err;
        }
        /* the previous holder may have unlinked it: lock the file on disk */
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            registry_adopt_legacy(fd);
            return fd;
        }
        close(fd);
    }
}

void rules_nft_unlock(int fd)
{
    char path[PATH_MAX];
    struct stat st;

    if (fd < 0)
        return;
    /* an empty registry is no registry; unlinked while still locked */
    if (fstat(fd, &st) == 0 && st.st_size == 0 && registry_path(path, sizeof(path)) == 0)
        unlink(path);
    close(fd);
}

static int registry_read(int fd, unsigned *ret_mask)
{
    char buf[REGISTRY_MAX + 1];
    size_t len = 0;

    while (len < REGISTRY_MAX) {
        ssize_t n = pread(fd, buf + len, REGISTRY_MAX - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret_mask = rules_nft_registry_parse(buf);
    return 0;
}

/* In place, not by rename: the lock lives on this inode. */
static int registry_write(int fd, unsigned mask)
{
    char buf[128];
    int n = rules_nft_registry_format(mask, buf, sizeof(buf));
    size_t off = 0;

    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EINVAL;
    while (off < (size_t)n) {
        ssize_t w = pwrite(fd, buf + off, (size_t)n - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        off += (size_t)w;
    }
    if (ftruncate(fd, (off_t)n) < 0 || fdatasync(fd) < 0)
        return -errno;
    return 0;
}

int rules_nft_record(int fd, unsigned missing)
{
    unsigned now, listed;
    int err;

    if (!(missing & RULES_NFT_ALL))
        return 0;
    err = rules_nft_existing(&now);
    if (err < 0)
        return err;
    if (!(missing & now))
        return 0;
    err = registry_read(fd, &listed);
    if (err == 0)
        err = registry_write(fd, listed | (missing & now));
    if (err < 0)
        log_error("recording created nf_tables tables in %s: %s", RULES_NFT_REGISTRY,
                  strerror(-err));
    return err;
}

int rules_nft_cleanup(int fd)
{
    unsigned listed, now;
    struct nft_sock s;
    int err, attempt;

    err = registry_read(fd, &listed);
    if (err < 0) {
        log_error("reading %s: %s", RULES_NFT_REGISTRY, strerror(-err));
        return err;
    }
    if (!listed)
        return 0;

    for (attempt = 0; attempt < NFT_CLEANUP_ATTEMPTS; attempt++) {
        struct scan_ctx c = {0};
        uint32_t genid;
        unsigned victims;

        /* a fresh socket per attempt: an interrupted dump leaves replies behind */
        err = nft_open(&s);
        if (err == 0)
            err = survey(&s, listed, &genid, &c);
        victims = listed & c.present & ~c.foreign;
        if (err == 0 && victims)
            err = delete_tables(&s, victims, genid);
        nft_close(&s);
        if (err != -ERESTART && err != -EINTR)
            break;
    }
    if (err < 0 && nft_unsupported(-err))
        err = 0;
    if (err == -ERESTART || err == -EINTR)
        err = -EAGAIN;
    if (err < 0)
        log_error("deleting nf_tables tables created for sandboxes: %s", strerror(-err));

    /* whatever the outcome, keep listed exactly the listed tables that exist */
    if (rules_nft_existing(&now) == 0 && (listed & now) != listed) {
        int werr = registry_write(fd, listed & now);
        if (werr < 0) {
            log_error("updating %s: %s", RULES_NFT_REGISTRY, strerror(-werr));
            if (err == 0)
                err = werr;
        }
    }
    return err;
}
