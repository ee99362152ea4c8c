/*
 * Creating and deleting sandboxes.  Creation writes the registry record
 * first, so that a crash at any later step leaves something `list` shows and
 * `delete` can clean; deletion works from the record and is idempotent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "policy.h"
#include "rules.h"
#include "tls.h"
#include "tool.h"

#define ETC_NETNS "/etc/netns"

/* Serialises index allocation and create/delete across concurrent tools. */
static int registry_lock(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/sandboxes", sandbox_state_dir());
    int rc = util_mkdir_p(path, 0700);
    if (rc < 0) {
        log_error("cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    snprintf(path, sizeof(path), "%s/registry.lock", sandbox_state_dir());
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        rc = -errno;
        log_error("cannot lock %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

static void registry_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int copy_file(const char *src, const char *dst, mode_t mode, size_t max)
{
    char tmp[PATH_MAX + 8];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (out < 0) {
        int err = -errno;
        close(in);
        return err;
    }
    char buf[65536];
    size_t total = 0;
    int err = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            err = -errno;
            break;
        }
        if (n == 0)
            break;
        total += (size_t)n;
        if (total > max) {
            err = -EFBIG;
            break;
        }
        if (write(out, buf, (size_t)n) != n) {
            err = -EIO;
            break;
        }
    }
    close(in);
    if (close(out) < 0 && !err)
        err = -errno;
    if (!err && rename(tmp, dst) < 0)
        err = -errno;
    if (err)
        unlink(tmp);
    return err;
}

int tool_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int err = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : 0;
    if (err) {
        close(fd);
        return err;
    }
    /* One spare byte, so reading max+1 bytes shows the file is too large. */
    size_t cap = (size_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
    char *buf = malloc(cap + 1);
    size_t len = 0;
    err = buf ? 0 : -ENOMEM;
    while (!err) {
        if (len == cap) {
            if (cap > max) {
                err = -EFBIG;
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf) {
                err = -ENOMEM;
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            err = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    close(fd);
    if (!err && len > max)
        err = -EFBIG;
    if (err) {
        free(buf);
        return err;
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

int tool_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    int err = 0;
    /* Whatever the caller's umask: these files are meant to be readable. */
    if (fchmod(fd, mode) < 0)
        err = -errno;
    for (size_t off = 0; !err && off < len;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            err = n < 0 ? -errno : -EIO;
        else
            off += (size_t)n;
    }
    if (close(fd) < 0 && !err)
        err = -errno;
    if (!err && rename(tmp, path) < 0)
        err = -errno;
    if (err)
        unlink(tmp);
    return err;
}

/*
 * The sandbox's trust store, in its state dir: ca.crt (the interception CA's
 * certificate) and ca-bundle.crt (the system roots, when readable, followed
 * by that certificate).  spawn.c installs both inside the sandbox.  The CA
 * is created on first use; its key is never copied.  On failure err says why.
 */
static int write_trust_store(const char *name, const char **step, char *err, size_t errlen)
{
    struct tls_ca *ca = NULL;
    char *pem = NULL, *roots = NULL, *bundle = NULL, path[PATH_MAX];
    char cerr[384] = "";
    size_t pem_len = 0, roots_len = 0;

    *step = "loading the interception CA";
    int rc = tls_ca_load_or_create(tls_ca_dir(), &ca, cerr, sizeof(cerr));
    if (rc < 0) {
        /* The module's messages name the file at fault. */
        if (cerr[0])
            str_copy(err, cerr, errlen);
        else
            snprintf(err, errlen, "%s: %s", tls_ca_dir(), strerror(-rc));
        return rc;
    }
    rc = tls_ca_cert_pem(ca, &pem, &pem_len);
    ca = tls_ca_free(ca);
    if (rc < 0)
        return rc;
    *step = "writing the sandbox's CA certificate";
    rc = tool_write_file(sandbox_path(name, "ca.crt", path, sizeof(path)), pem, pem_len, 0644);
    if (rc < 0)
        goto out;
    /* Without readable system roots the bundle is the CA alone: clients
     * using it then trust only the endpoints the daemon terminates. */
    if (tool_read_file(TOOL_SYSTEM_ROOTS, TOOL_TRUST_BUNDLE_MAX, &roots, &roots_len) < 0) {
        roots = NULL;
        roots_len = 0;
    }
    bool sep = roots_len > 0 && roots[roots_len - 1] != '\n';
    size_t len = roots_len + sep + pem_len;
    *step = "writing the sandbox's CA bundle";
    if (len > TOOL_TRUST_BUNDLE_MAX) {
        rc = -EFBIG;
        goto out;
    }
    bundle = malloc(len ? len : 1);
    if (!bundle) {
        rc = -ENOMEM;
        goto out;
    }
    if (roots_len)
        memcpy(bundle, roots, roots_len);
    if (sep)
        bundle[roots_len] = '\n';
    memcpy(bundle + roots_len + sep, pem, pem_len);
    sandbox_path(name, "ca-bundle.crt", path, sizeof(path));
    rc = tool_write_file(path, bundle, len, 0644);
out:
    free(bundle);
    free(roots);
    free(pem);
    return rc;
}

struct used_indexes {
    unsigned char *used;
    unsigned cap;
};

static void mark_used(void *ctx, const char *name)
{
    struct used_indexes *u = ctx;
    struct sandbox_record r;
    if (sandbox_record_read(name, &r) == 0 && r.index < u->cap)
        u->used[r.index] = 1;
}

int tool_next_index(const struct sandbox_pools *pools, unsigned *ret)
{
    struct used_indexes u;
    u.cap = sandbox_pools_capacity(pools);
    u.used = calloc(u.cap, 1);
    if (!u.used)
        return -ENOMEM;
    int rc = sandbox_list(mark_used, &u);
    if (rc < 0) {
        free(u.used);
        return rc;
    }
    for (unsigned i = 0; i < u.cap; i++) {
        char ifname[IF_NAMESIZE];
        snprintf(ifname, sizeof(ifname), SANDBOX_IF_PREFIX "%u", i);
        /* A leftover link (crash before its record) also takes the index. */
        if (!u.used[i] && !link_exists(ifname)) {
            free(u.used);
            *ret = i;
            return 0;
        }
    }
    free(u.used);
    return -ENOSPC;
}

static int write_resolv_conf(const struct sandbox_record *r)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], h4[NET_ADDR_STRLEN], h6[NET_ADDR_STRLEN];
    snprintf(dir, sizeof(dir), ETC_NETNS "/%s", r->netns);
    int rc = util_mkdir_p(dir, 0755);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/resolv.conf", dir);
    FILE *f = fopen(path, "we");
    if (!f)
        return -errno;
    /* DNS goes to the host side of the veth, where the daemon's policy DNS
     * will answer; until then queries are dropped (fail closed). */
    fprintf(f, "# written by portcullis for sandbox %s\nnameserver %s\nnameserver %s\n", r->name,
            net_addr_format(&r->host_v4, h4, sizeof(h4)),
            net_addr_format(&r->host_v6, h6, sizeof(h6)));
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

static void remove_resolv_conf(const char *netns)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), ETC_NETNS "/%s", netns);
    snprintf(path, sizeof(path), "%s/resolv.conf", dir);
    unlink(path);
    rmdir(dir);
    rmdir(ETC_NETNS); /* only if empty; we may have created it */
}

void tool_rules_of(const struct sandbox_record *r, struct rules_sandbox *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->index = r->index;
    ret->host_ifname = r->host_ifname;
    ret->sandbox_v4 = r->sandbox_v4;
    ret->sandbox_v6 = r->sandbox_v6;
    ret->proxy_port = r->proxy_port;
}

/* Configure the inside of the namespace: lo, eth0, addresses, routes. */
static int setup_inside(const struct sandbox_record *r, int nsfd, const char **step)
{
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -errno;
    int rc = netns_enter(nsfd);
    if (rc < 0) {
        close(self);
        *step = "entering the namespace";
        return rc;
    }
    if ((rc = net_sysctl_write("ipv6/conf/all/accept_ra", "0")) < 0 ||
        (rc = net_sysctl_write("ipv6/conf/default/accept_ra", "0")) < 0) {
        *step = "disabling router advertisements";
    } else if ((rc = link_set_up("lo")) < 0) {
        *step = "bringing up lo";
    } else if ((rc = addr_add("eth0", &r->sandbox_v4, r->prefix_v4)) < 0 ||
               (rc = addr_add("eth0", &r->sandbox_v6, r->prefix_v6)) < 0) {
        *step = "adding the sandbox addresses";
    } else if ((rc = link_set_up("eth0")) < 0) {
        *step = "bringing up eth0";
    } else if ((rc = route_add_default("eth0", &r->host_v4)) < 0 ||
               (rc = route_add_default("eth0", &r->host_v6)) < 0) {
        *step = "adding the default routes";
    }
    if (netns_enter(self) < 0) {
        /* Cannot get back: nothing sane left to do in this process. */
        log_error("cannot return to the host network namespace: %s", strerror(errno));
        _exit(1);
    }
    close(self);
    return rc;
}

/* `run` holds its sandbox's namespace open until it deletes the sandbox: a
 * daemon that cannot see our /run/netns mount (we run in a mount namespace
 * of our own) finds the namespace among our open files. */
static int held_netns_fd = -1;

/* Builds the sandbox of r and fills in r's namespace identity. */
static int build_sandbox(struct sandbox_record *r, const char **step)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = netns_create(r->netns);
    if (rc < 0) {
        *step = "creating the network namespace";
        return rc;
    }
    int nsfd = netns_open(r->netns);
    if (nsfd < 0) {
        *step = "opening the network namespace";
        return nsfd;
    }
    if (fstat(nsfd, &st) < 0) {
        rc = -errno;
        *step = "reading the network namespace's identity";
        goto out;
    }
    r->netns_dev = (uint64_t)st.st_dev;
    r->netns_ino = (uint64_t)st.st_ino;
    if (r->ephemeral && held_netns_fd < 0)
        held_netns_fd = fcntl(nsfd, F_DUPFD_CLOEXEC, 3); /* best effort */
    rc = link_veth_create(r->host_ifname, "eth0", nsfd);
    if (rc < 0) {
        *step = "creating the veth pair";
        goto out;
    }
    snprintf(path, sizeof(path), "ipv6/conf/%s/accept_ra", r->host_ifname);
    net_sysctl_write(path, "0");
    snprintf(path, sizeof(path), "ipv6/conf/%s/forwarding", r->host_ifname);
    net_sysctl_write(path, "0");
    /* IPv4 decides forwarding by the input interface: even with ip_forward
     * on (or the FORWARD rule flushed by someone), nothing that arrives from
     * the sandbox is routed. */
    snprintf(path, sizeof(path), "ipv4/conf/%s/forwarding", r->host_ifname);
    net_sysctl_write(path, "0");
    if ((rc = addr_add(r->host_ifname, &r->host_v4, r->prefix_v4)) < 0 ||
        (rc = addr_add(r->host_ifname, &r->host_v6, r->prefix_v6)) < 0) {
        *step = "adding the host-side addresses";
        goto out;
    }
    if ((rc = link_set_up(r->host_ifname)) < 0) {
        *step = "bringing up the host-side link";
        goto out;
    }
    rc = setup_inside(r, nsfd, step);
    if (rc < 0)
        goto out;
    struct rules_sandbox rs;
    tool_rules_of(r, &rs);
    rc = rules_apply(&rs);
    if (rc < 0) {
        *step = "applying the netfilter rules";
        goto out;
    }
    rc = write_resolv_conf(r);
    if (rc < 0)
        *step = "writing resolv.conf";
out:
    close(nsfd);
    return rc;
}

static uint16_t daemon_port(void)
{
    char path[PATH_MAX], buf[16];
    long v;
    snprintf(path, sizeof(path), "%s/daemon.port", sandbox_state_dir());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return SANDBOX_DEFAULT_PROXY_PORT;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || !tool_daemon_alive(NULL))
        return SANDBOX_DEFAULT_PROXY_PORT;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (parse_long(buf, 1, 65535, &v) < 0)
        return SANDBOX_DEFAULT_PROXY_PORT;
    return (uint16_t)v;
}

int tool_create(const struct tool_create_opts *o, struct sandbox_record *ret)
{
    struct sandbox_pools pools;
    struct sandbox_record r;
    struct policy *pol = NULL;
    struct policy_error perr;
    char err[512], detail[512] = "", dir[PATH_MAX], path[PATH_MAX], abs[PATH_MAX];
    const char *step = NULL;
    unsigned index;
    int rc;

    if (!sandbox_name_valid(o->name)) {
        log_error("invalid sandbox name '%s' (letters, digits, '_', '.', '-'; at most %d; "
                  "starting with a letter or digit)",
                  o->name, SANDBOX_NAME_MAX);
        return -EINVAL;
    }
    rc = policy_load_file(o->policy_path, &pol, &perr);
    if (rc < 0) {
        fprintf(stderr, "%s\n", policy_error_format(&perr, err, sizeof(err)));
        return rc;
    }
    policy_free(pol);
    if (!realpath(o->policy_path, abs))
        str_copy(abs, o->policy_path, sizeof(abs));
    if (!sandbox_record_value_ok(abs)) {
        /* The path goes into the sandbox's record, a line per key. */
        log_error("the policy's path holds a control character (a newline?): refused; "
                  "copy the policy to a plain name");
        return -EINVAL;
    }
    rc = sandbox_pools_load(&pools, err, sizeof(err));
    if (rc < 0) {
        log_error("%s", err);
        return rc;
    }

    int lock = registry_lock();
    if (lock < 0)
        return lock;
    sandbox_path(o->name, NULL, dir, sizeof(dir));
    if (access(dir, F_OK) == 0) {
        registry_unlock(lock);
        log_error("sandbox %s already exists (remove it with `portcullis delete %s`)", o->name,
                  o->name);
        return -EEXIST;
    }
    /* The namespace's name is the host's, not this registry's: one that
     * exists belongs to a sandbox of another registry (or is left over),
     * and a failed create here would tear it down with its processes. */
    char nspath[PATH_MAX];
    snprintf(nspath, sizeof(nspath), NETNS_RUN_DIR "/" SANDBOX_NETNS_PREFIX "%s", o->name);
    if (access(nspath, F_OK) == 0) {
        registry_unlock(lock);
        log_error("network namespace %s already exists (a sandbox of another registry, or a "
                  "leftover): not creating sandbox %s",
                  nspath, o->name);
        return -EEXIST;
    }
    rc = tool_next_index(&pools, &index);
    if (rc < 0) {
        registry_unlock(lock);
        log_error("no free sandbox address in the pools: %s", strerror(-rc));
        return rc;
    }
    memset(&r, 0, sizeof(r));
    sandbox_record_assign(&r, o->name, index, &pools);
    r.audit = o->audit;
    r.ephemeral = o->ephemeral;
    r.owner_pid = o->ephemeral ? getpid() : 0;
    r.owner_start = o->ephemeral ? sandbox_proc_start_time(getpid()) : 0;
    r.proxy_port = daemon_port();
    str_copy(r.policy_source, abs, sizeof(r.policy_source));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r.created_usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;

    if (mkdir(dir, 0700) < 0) {
        rc = -errno;
        registry_unlock(lock);
        log_error("cannot create %s: %s", dir, strerror(errno));
        return rc;
    }
    /* The daemon reads this copy, never the user's file: a sandboxed process
     * may be able to write the original. */
    rc = copy_file(o->policy_path, sandbox_path(o->name, "policy.yaml", path, sizeof(path)), 0600,
                   POLICY_MAX_FILE_BYTES);
    if (rc < 0) {
        step = "copying the policy";
        goto fail;
    }
    if (o->upstream_ca) {
        rc = copy_file(o->upstream_ca, sandbox_path(o->name, "upstream-ca.pem", path, sizeof(path)),
                       0600, 4 * 1024 * 1024);
        if (rc < 0) {
            step = "copying the upstream CA bundle";
            goto fail;
        }
    }
    rc = write_trust_store(o->name, &step, detail, sizeof(detail));
    if (rc < 0)
        goto fail;
    rc = sandbox_record_write(&r);
    if (rc < 0) {
        step = "writing the registry record";
        goto fail;
    }
    rc = build_sandbox(&r, &step);
    if (rc < 0)
        goto fail;
    /* Rewrite the record so the daemon (re)loads the finished sandbox, and
     * `exec` may run in it from now on. */
    r.complete = true;
    unlink(sandbox_path(o->name, "ack", path, sizeof(path)));
    rc = sandbox_record_write(&r);
    if (rc < 0) {
        step = "writing the registry record";
        goto fail;
    }
    registry_unlock(lock);
    *ret = r;
    return 0;

fail:
    log_error("creating sandbox %s: %s failed: %s", o->name, step ? step : "setup",
              detail[0] ? detail : strerror(-rc));
    registry_unlock(lock);
    tool_delete(o->name, true);
    return rc;
}

/* Take NAME out of the registry atomically (rename to a tombstone the
 * daemon ignores), then empty and remove it: a daemon writing its ack at the
 * same moment cannot leave the directory half-removed. */
static int remove_state_dir(const char *name)
{
    char dir[PATH_MAX], tomb[PATH_MAX], path[PATH_MAX + 300];
    sandbox_path(name, NULL, dir, sizeof(dir));
    snprintf(tomb, sizeof(tomb), "%s/sandboxes/.deleted-%s-%d", sandbox_state_dir(), name,
             (int)getpid());
    if (rename(dir, tomb) < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = opendir(tomb);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(path, sizeof(path), "%s/%s", tomb, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    return rmdir(tomb) < 0 ? -errno : 0;
}

int tool_delete(const char *name, bool quiet)
{
    struct sandbox_record r;
    char netns[SANDBOX_NAME_MAX + 16], dir[PATH_MAX];
    int failures = 0;

    if (!sandbox_name_valid(name)) {
        log_error("invalid sandbox name '%s'", name);
        return -EINVAL;
    }
    int lock = registry_lock();
    if (lock < 0)
        return lock;
    if (held_netns_fd >= 0) {
        close(held_netns_fd);
        held_netns_fd = -1;
    }
    int rc = sandbox_record_read(name, &r);
    snprintf(netns, sizeof(netns), SANDBOX_NETNS_PREFIX "%s", name);
    if (rc == 0) {
        str_copy(netns, r.netns, sizeof(netns));
    } else {
        sandbox_path(name, NULL, dir, sizeof(dir));
        bool leftovers = access(dir, F_OK) == 0;
        char nspath[PATH_MAX];
        snprintf(nspath, sizeof(nspath), NETNS_RUN_DIR "/%s", netns);
        leftovers |= access(nspath, F_OK) == 0;
        if (!leftovers) {
            registry_unlock(lock);
            if (!quiet)
                log_info("no sandbox named %s (nothing to delete)", name);
            return 0;
        }
    }
    /* Processes first: a namespace with processes in it outlives its mount. */
    tool_kill_sandbox_processes(netns, rc == 0 ? &r : NULL);
    if (rc == 0) {
        /* The link first: without it nothing can pass, whatever happens to
         * the rules next. */
        int lrc = link_delete(r.host_ifname);
        if (lrc < 0) {
            /* The rules stay until the link is gone (the record too): a
             * link without them would let its traffic through. */
            log_error("deleting link %s: %s", r.host_ifname, strerror(-lrc));
            failures++;
        } else {
            struct rules_sandbox rs;
            tool_rules_of(&r, &rs);
            if (rules_remove(&rs) < 0)
                failures++;
        }
    }
    int nrc = netns_delete(netns);
    if (nrc < 0) {
        log_error("deleting network namespace %s: %s", netns, strerror(-nrc));
        failures++;
    }
    remove_resolv_conf(netns);
    /* Keep the record until everything it names is gone: it is what lets
     * the next `delete` find the link and the rules. */
    if (!failures) {
        int drc = remove_state_dir(name);
        if (drc < 0) {
            log_error("removing the registry entry of %s: %s", name, strerror(-drc));
            failures++;
        }
    } else {
        log_error("sandbox %s is not completely removed; its record is kept: run `portcullis "
                  "delete %s` again",
                  name, name);
    }
    registry_unlock(lock);
    tool_notify_daemon();
    return failures ? -EIO : 0;
}

void tool_kill_sandbox_processes(const char *netns, const struct sandbox_record *r)
{
    char path[PATH_MAX];
    struct stat ns;
    snprintf(path, sizeof(path), NETNS_RUN_DIR "/%s", netns);
    bool have = stat(path, &ns) == 0;
    /* Made in a mount namespace whose mount we cannot see: the path is an
     * empty file, or nothing.  The recorded identity stands in for it, but
     * only while the sandbox's link exists: a veth pair dies with its
     * namespace, so the namespace is alive and its inode number cannot have
     * passed to another namespace, whose processes we would kill. */
    if (r && r->netns_ino &&
        (!have || (uint64_t)ns.st_dev != r->netns_dev || (uint64_t)ns.st_ino != r->netns_ino) &&
        link_exists(r->host_ifname)) {
        ns.st_dev = (dev_t)r->netns_dev;
        ns.st_ino = (ino_t)r->netns_ino;
        have = true;
    }
    if (!have)
        return;
    for (int round = 0; round < 50; round++) {
        int found = 0;
        DIR *d = opendir("/proc");
        if (!d)
            return;
        struct dirent *de;
        while ((de = readdir(d))) {
            long pid;
            struct stat st;
            if (parse_long(de->d_name, 1, INT32_MAX, &pid) < 0 || pid == getpid())
                continue;
            snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
            if (stat(path, &st) < 0 || st.st_ino != ns.st_ino || st.st_dev != ns.st_dev)
                continue;
            kill((pid_t)pid, SIGKILL);
            found++;
        }
        closedir(d);
        if (!found)
            return;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}
