#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

/* Our requests are a few hundred bytes; an error ack echoes the request. */
#define NL_BUFSZ 8192

/* ---- named network namespaces (iproute2's /run/netns convention) ---- */

static int netns_path(const char *name, char *buf, size_t len)
{
    if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) > NAME_MAX)
        return -EINVAL;
    if ((size_t)snprintf(buf, len, "%s/%s", NETNS_RUN_DIR, name) >= len)
        return -ENAMETOOLONG;
    return 0;
}

/*
 * The namespace files are bind mounts; /run/netns must be a shared mount point
 * so that mounts made later appear in mount namespaces created earlier (a
 * running `portcullis exec`, systemd services with PrivateTmp and the like).
 */
static int netns_run_dir_prepare(void)
{
    bool bound = false;

    if (mkdir(NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST)
        return -errno;
    for (;;) {
        if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
            return 0;
        /* EINVAL: not a mount point yet; make it one, then retry once */
        if (errno != EINVAL || bound)
            return -errno;
        if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
            return -errno;
        bound = true;
    }
}

int netns_create(const char *name)
{
    char path[PATH_MAX];
    int fd, status, ret;
    pid_t pid;

    ret = netns_path(name, path, sizeof(path));
    if (ret < 0)
        return ret;
    ret = netns_run_dir_prepare();
    if (ret < 0)
        return ret;

    fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    close(fd);

    /* The child unshares, so the caller's own namespace never changes. */
    pid = fork();
    if (pid < 0) {
        ret = -errno;
        goto fail_unlink;
    }
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0)
            _exit(errno);
        if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
            _exit(errno);
        _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            ret = -errno;
            goto fail_unlink;
        }
    }
    if (!WIFEXITED(status)) {
        ret = -ECHILD;
        goto fail_unlink;
    }
    if (WEXITSTATUS(status) != 0) {
        ret = -WEXITSTATUS(status);
        goto fail_unlink;
    }
    return 0;

fail_unlink:
    /* a bind mount may have been made before the child failed or was killed */
    (void)umount2(path, MNT_DETACH);
    unlink(path);
    return ret;
}

int netns_open(const char *name)
{
    char path[PATH_MAX];
    int fd, ret;

    ret = netns_path(name, path, sizeof(path));
    if (ret < 0)
        return ret;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int netns_delete(const char *name)
{
    char path[PATH_MAX];
    int ret;

    ret = netns_path(name, path, sizeof(path));
    if (ret < 0)
        return ret;
    /* EINVAL: not mounted (a half-created file); ENOENT: already gone */
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return -errno;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int netns_enter(int netns_fd)
{
    if (netns_fd < 0)
        return -EBADF;
    return setns(netns_fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

/* ---- rtnetlink ---- */

/*
 * Send one request with NLM_F_ACK on a fresh socket and wait for its ack.
 * Messages with another sequence number or port id are refused by
 * mnl_cb_run().  Returns 0 or the kernel's -errno.
 */
static int nl_transact(struct nlmsghdr *nlh)
{
    static unsigned seq_counter;
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct mnl_socket *nl;
    unsigned portid, seq;
    ssize_t n;
    int ret;

    nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return -errno;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        ret = -errno;
        goto out;
    }
    portid = mnl_socket_get_portid(nl);
    seq = (unsigned)time(NULL) + __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
    nlh->nlmsg_seq = seq;
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;

    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        ret = -errno;
        goto out;
    }
    for (;;) {
        n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        /* MNL_CB_STOP on the ack, MNL_CB_ERROR with errno from the kernel */
        ret = mnl_cb_run(buf, (size_t)n, seq, portid, NULL, NULL);
        if (ret == MNL_CB_ERROR) {
            ret = errno ? -errno : -EPROTO;
            break;
        }
        if (ret == MNL_CB_STOP) {
            ret = 0;
            break;
        }
    }
out:
    mnl_socket_close(nl);
    return ret;
}

static bool ifname_ok(const char *name)
{
    return name && *name && strlen(name) < IFNAMSIZ;
}

static struct nlmsghdr *link_msg(char *buf, uint16_t type, uint16_t flags, struct ifinfomsg **ret)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    *ret = mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
    (*ret)->ifi_family = AF_UNSPEC;
    return nlh;
}

int link_veth_create(const char *host_if, const char *peer_if, int peer_netns_fd)
{
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct nlattr *linkinfo, *data, *peer;
    struct ifinfomsg *ifm;
    struct nlmsghdr *nlh;

    if (!ifname_ok(host_if) || !ifname_ok(peer_if))
        return -EINVAL;
    if (peer_netns_fd < 0)
        return -EBADF;

    nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifm);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
    linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    /* The peer is an ifinfomsg followed by its own attributes; creating it in
     * the namespace directly means it never exists in ours, even briefly. */
    peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_if);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, linkinfo);
    return nl_transact(nlh);
}

int link_delete(const char *ifname)
{
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct ifinfomsg *ifm;
    struct nlmsghdr *nlh;
    int ret;

    if (!ifname_ok(ifname))
        return -EINVAL;
    /* by name in the request: no window between lookup and delete */
    nlh = link_msg(buf, RTM_DELLINK, 0, &ifm);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    ret = nl_transact(nlh);
    return ret == -ENODEV ? 0 : ret;
}

int link_set_up(const char *ifname)
{
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct ifinfomsg *ifm;
    struct nlmsghdr *nlh;

    if (!ifname_ok(ifname))
        return -EINVAL;
    /* no NLM_F_CREATE: modifies the link found by name, -ENODEV if none */
    nlh = link_msg(buf, RTM_NEWLINK, 0, &ifm);
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    return nl_transact(nlh);
}

bool link_exists(const char *ifname)
{
    return ifname_ok(ifname) && if_nametoindex(ifname) != 0;
}

static int ifindex_of(const char *ifname, unsigned *ret)
{
    if (!ifname_ok(ifname))
        return -EINVAL;
    *ret = if_nametoindex(ifname);
    return *ret ? 0 : -(errno ? errno : ENODEV);
}

static size_t addr_len(const struct net_addr *a)
{
    if (!a)
        return 0;
    if (a->family == AF_INET)
        return sizeof(a->u.v4);
    if (a->family == AF_INET6)
        return sizeof(a->u.v6);
    return 0;
}

int addr_add(const char *ifname, const struct net_addr *addr, unsigned prefixlen)
{
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    size_t alen = addr_len(addr);
    struct nlmsghdr *nlh;
    struct ifaddrmsg *ifa;
    unsigned index;
    int ret;

    if (alen == 0 || prefixlen > alen * 8)
        return -EINVAL;
    ret = ifindex_of(ifname, &index);
    if (ret < 0)
        return ret;

    nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = (unsigned char)addr->family;
    ifa->ifa_prefixlen = (unsigned char)prefixlen;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = index;
    mnl_attr_put(nlh, IFA_LOCAL, alen, &addr->u);
    mnl_attr_put(nlh, IFA_ADDRESS, alen, &addr->u);
    if (addr->family == AF_INET6) {
        /* no duplicate address detection: the address is usable at once, and
         * nobody else is on a veth pair */
        ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    }
    return nl_transact(nlh);
}

int route_add_default(const char *ifname, const struct net_addr *gw)
{
    char buf[NL_BUFSZ] __attribute__((aligned(NLMSG_ALIGNTO)));
    size_t alen = addr_len(gw);
    struct nlmsghdr *nlh;
    struct rtmsg *rtm;
    unsigned index;
    int ret;

    if (alen == 0)
        return -EINVAL;
    ret = ifindex_of(ifname, &index);
    if (ret < 0)
        return ret;

    nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = (unsigned char)gw->family;
    rtm->rtm_dst_len = 0;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_GATEWAY, alen, &gw->u);
    mnl_attr_put_u32(nlh, RTA_OIF, index);
    return nl_transact(nlh);
}

int net_sysctl_write(const char *path, const char *value)
{
    char full[PATH_MAX];
    size_t len, done = 0;
    int fd, ret = 0;

    /* relative, and never climbing out of /proc/sys/net */
    if (!path || !*path || path[0] == '/' || strstr(path, "..") || !value)
        return -EINVAL;
    if ((size_t)snprintf(full, sizeof(full), "/proc/sys/net/%s", path) >= sizeof(full))
        return -ENAMETOOLONG;
    fd = open(full, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    len = strlen(value);
    while (done < len) {
        ssize_t n = write(fd, value + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        done += (size_t)n;
    }
    if (close(fd) < 0 && ret == 0 && errno != EINTR)
        ret = -errno;
    return ret;
}
