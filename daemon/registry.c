/*
 * The daemon's view of the on-disk sandbox registry (see sandbox.h).
 *
 * Sandboxes are found by the source address of a flow: one address pair per
 * sandbox, and the host drops spoofed sources, so the address identifies the
 * sandbox.  A flow holds a reference; a sandbox removed from disk stays in
 * memory until its last flow is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "tls.h"
#include "ident.h"

#define REGISTRY_MAX_HOST_ADDRS 8192

static struct sandbox *sandboxes;
static size_t n_sandboxes;
static struct net_addr host_addrs[REGISTRY_MAX_HOST_ADDRS];
static size_t n_host_addrs;
static struct net_prefix pools[2];
static struct policy_env policy_env;

struct sandbox *sandbox_ref(struct sandbox *sb)
{
    sb->refs++;
    return sb;
}

struct policy_ref *policy_ref_get(struct policy_ref *r)
{
    if (r)
        r->refs++;
    return r;
}

void policy_ref_put(struct policy_ref *r)
{
    if (r && --r->refs == 0) {
        policy_free(r->policy);
        free(r);
    }
}

/* Install np (may be NULL) as the sandbox's policy.  Flows that inspect
 * requests hold a reference to the old one, so it lives until they end. */
static void sandbox_set_policy(struct sandbox *sb, struct policy *np)
{
    struct policy_ref *r = NULL;
    if (np) {
        r = calloc(1, sizeof(*r));
        if (!r) {
            /* Keep the old policy rather than none: this only happens when
             * the daemon is out of memory, and it says so. */
            log_error("sandbox %s: out of memory installing a policy", sb->rec.name);
            policy_free(np);
            return;
        }
        r->policy = np;
        r->refs = 1;
    }
    policy_ref_put(sb->policy_ref);
    sb->policy_ref = r;
    sb->policy = np;
}

static void sandbox_free(struct sandbox *sb)
{
    sandbox_set_policy(sb, NULL);
    sb->ident = ident_ctx_free(sb->ident);
    sb->tls_client = tls_client_free(sb->tls_client);
    free(sb);
}

void sandbox_unref(struct sandbox *sb)
{
    if (!sb)
        return;
    if (--sb->refs == 0)
        sandbox_free(sb);
}

/* A policy source the daemon may re-read: every component root-owned and not
 * writable by others (a sticky directory, like /tmp, is fine), so no
 * sandboxed process (never root with capabilities) could have written it —
 * unless something ran as root inside the sandbox (`root-used`): root
 * without capabilities can still write root-owned files.  The resolved path
 * goes to ret_path; the caller reads that one, not the name it was given. */
static bool policy_source_trusted(const struct sandbox *sb, char *ret_path, char *why,
                                  size_t whylen)
{
    const char *path = sb->rec.policy_source;
    char buf[PATH_MAX], marker[PATH_MAX];
    struct stat st;
    if (!path[0] || path[0] != '/') {
        snprintf(why, whylen, "no absolute source path");
        return false;
    }
    if (access(sandbox_path(sb->rec.name, "root-used", marker, sizeof(marker)), F_OK) == 0) {
        snprintf(why, whylen, "a command ran as root in the sandbox and could have changed it");
        return false;
    }
    if (!realpath(path, buf)) {
        snprintf(why, whylen, "%.300s: %s", path, strerror(errno));
        return false;
    }
    str_copy(ret_path, buf, PATH_MAX);
    if (stat(buf, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 ||
        (st.st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(why, whylen, "%.300s is not a root-owned file writable only by root", buf);
        return false;
    }
    for (char *slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
        if (slash == buf)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(buf, &st) < 0 || st.st_uid != 0 ||
            ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))) {
            snprintf(why, whylen, "directory %.300s is writable by others", buf);
            return false;
        }
        if (slash == buf)
            break;
    }
    return true;
}

/* Read a whole (bounded) file without following a final symlink. */
static int read_small_file(const char *path, char **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > POLICY_MAX_FILE_BYTES) {
        close(fd);
        return -EINVAL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len > (size_t)st.st_size)
            break; /* grew while we read: refuse rather than truncate */
    }
    close(fd);
    if (len > (size_t)st.st_size) {
        free(buf);
        return -EAGAIN;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* Replace the registered copy with text that was just parsed successfully,
 * so a restarted daemon keeps the reloaded policy. */
static void update_policy_copy(const char *name, const char *text, size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    sandbox_path(name, "policy.yaml", path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        log_warn("sandbox %s: could not update the registered copy of its policy", name);
    }
}

static void write_ack(const char *name, const char *status)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], text[512];
    sandbox_path(name, "ack", path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int n = snprintf(text, sizeof(text), "pid=%d\nstatus=%s\n", (int)getpid(), status);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, text, (size_t)n) == n;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp);
}

static int load_policy_copy(const char *name, struct policy **ret, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct policy_error perr;
    sandbox_path(name, "policy.yaml", path, sizeof(path));
    int rc = policy_load_file(path, ret, &perr);
    if (rc < 0)
        policy_error_format(&perr, err, errlen);
    return rc;
}

int registry_netns_find(const struct sandbox *sb)
{
    /* Only while its link exists: a veth pair dies with its namespace, so
     * the namespace is alive and no other one can have its inode number. */
    if (!sb->rec.netns_ino || if_nametoindex(sb->rec.host_ifname) == 0)
        return -ENOENT;
    /* The owner only while it is the run that made the sandbox (not a later
     * process behind its PID). */
    pid_t holder = sb->rec.ephemeral && sandbox_owner_alive(&sb->rec) ? sb->rec.owner_pid : 0;
    return ident_netns_find(sb->rec.netns_dev, sb->rec.netns_ino, holder);
}

/* The process lookup of a sandbox being loaded, or NULL (flow.c tries again
 * when its flows come, if its namespace has a recorded identity). */
static struct ident_ctx *sandbox_ident_new(const struct sandbox *sb)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/run/netns/%s", sb->rec.netns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && sb->rec.netns_ino && !ident_netns_is(fd, sb->rec.netns_dev, sb->rec.netns_ino)) {
        /* Made in another mount namespace: here the path is an empty file
         * (the mount point), or nothing. */
        close(fd);
        fd = -1;
    }
    if (fd < 0 && sb->rec.netns_ino) {
        /* Through the tool that holds it open (`run`), or a process in it. */
        fd = registry_netns_find(sb);
        log_info("sandbox %s: %s is not its namespace here (made in another mount "
                 "namespace?); %s",
                 sb->rec.name, path,
                 fd >= 0 ? "found it through a process that holds it"
                         : "its processes will be looked up once one is in it");
    }
    if (fd < 0)
        return NULL;
    struct ident_ctx *ctx = ident_ctx_new(fd);
    if (!ctx)
        log_warn("sandbox %s: no process lookup: %s", sb->rec.name, strerror(errno));
    close(fd); /* the context's socket keeps the namespace */
    return ctx;
}

static struct sandbox *sandbox_load(const char *name, uint64_t mtime_ns)
{
    struct sandbox *sb = calloc(1, sizeof(*sb));
    char err[512];
    if (!sb)
        return NULL;
    sb->refs = 1;
    sb->conf_mtime_ns = mtime_ns;
    int rc = sandbox_record_read(name, &sb->rec);
    if (rc < 0) {
        log_error("sandbox %s: cannot read its record: %s", name, strerror(-rc));
        free(sb);
        return NULL;
    }
    struct policy *np = NULL;
    int prc = load_policy_copy(name, &np, err, sizeof(err));
    sandbox_set_policy(sb, np);
    if (prc < 0) {
        /* Fail closed: the sandbox is known, and everything it does is denied. */
        log_error("sandbox %s: policy not loaded, denying everything: %s", name, err);
        write_ack(name, "policy-error");
    } else {
        write_ack(name, "ok");
    }
    if (!daemon_cfg.no_ident)
        sb->ident = sandbox_ident_new(sb);
    log_info("sandbox %s registered (%s)", name, sb->policy ? "policy loaded" : "deny all");
    return sb;
}

static void sandbox_remove(struct sandbox **pp)
{
    struct sandbox *sb = *pp;
    *pp = sb->next;
    n_sandboxes--;
    sb->removed = true;
    sb->next = NULL;
    log_info("sandbox %s unregistered", sb->rec.name);
    sandbox_unref(sb);
}

static void rescan_one(void *ctx, const char *name)
{
    (void)ctx;
    char path[PATH_MAX];
    struct stat st;
    sandbox_path(name, "sandbox.conf", path, sizeof(path));
    if (stat(path, &st) < 0)
        return; /* being created or removed */
    uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    for (struct sandbox **pp = &sandboxes; *pp; pp = &(*pp)->next) {
        struct sandbox *sb = *pp;
        if (strcmp(sb->rec.name, name) != 0)
            continue;
        if (sb->conf_mtime_ns == mtime) {
            sb->seen = true;
            if (!sb->policy) {
                /* It failed to load (perhaps for want of memory or fds): retry. */
                char err[512];
                struct policy *np = NULL;
                if (load_policy_copy(name, &np, err, sizeof(err)) == 0) {
                    sandbox_set_policy(sb, np);
                    log_info("sandbox %s: policy loaded on retry", name);
                }
            }
            return;
        }
        /* Re-created under the same name: replace. */
        sandbox_remove(pp);
        break;
    }
    struct sandbox *sb = sandbox_load(name, mtime);
    if (!sb)
        return;
    sb->seen = true;
    sb->next = sandboxes;
    sandboxes = sb;
    n_sandboxes++;
}

void registry_rescan(void)
{
    for (struct sandbox *sb = sandboxes; sb; sb = sb->next)
        sb->seen = false;
    int rc = sandbox_list(rescan_one, NULL);
    if (rc < 0) {
        log_error("reading the sandbox registry: %s", strerror(-rc));
        return; /* keep what we have rather than dropping every sandbox */
    }
    for (struct sandbox **pp = &sandboxes; *pp;) {
        if (!(*pp)->seen)
            sandbox_remove(pp);
        else
            pp = &(*pp)->next;
    }
}

void registry_reload_policies(void)
{
    for (struct sandbox *sb = sandboxes; sb; sb = sb->next) {
        struct policy *np = NULL;
        struct policy_error perr;
        char why[512], err[512], copy[PATH_MAX], source[PATH_MAX];
        const char *from;
        int rc;
        if (policy_source_trusted(sb, source, why, sizeof(why))) {
            char *text = NULL;
            size_t len = 0;
            from = source;
            rc = read_small_file(source, &text, &len);
            if (rc < 0) {
                snprintf(err, sizeof(err), "%.300s: %s", source, strerror(-rc));
            } else {
                rc = policy_load_buffer(source, text, len, &np, &perr);
                if (rc < 0)
                    policy_error_format(&perr, err, sizeof(err));
                else
                    update_policy_copy(sb->rec.name, text, len);
            }
            free(text);
        } else {
            if (sb->rec.policy_source[0])
                log_warn("sandbox %s: not re-reading %s (%s); reloading the registered copy",
                         sb->rec.name, sb->rec.policy_source, why);
            from = sandbox_path(sb->rec.name, "policy.yaml", copy, sizeof(copy));
            rc = load_policy_copy(sb->rec.name, &np, err, sizeof(err));
        }
        if (rc < 0) {
            log_error("sandbox %s: reload failed, keeping the previous policy: %s", sb->rec.name,
                      err);
            continue;
        }
        sandbox_set_policy(sb, np);
        log_info("sandbox %s: policy reloaded from %s", sb->rec.name, from);
    }
}

struct sandbox *registry_find_by_addr(const struct net_addr *src)
{
    for (struct sandbox *sb = sandboxes; sb; sb = sb->next) {
        if (net_addr_equal(src, &sb->rec.sandbox_v4) || net_addr_equal(src, &sb->rec.sandbox_v6))
            return sandbox_ref(sb);
    }
    return NULL;
}

size_t registry_count(void)
{
    return n_sandboxes;
}

void registry_refresh_host_addrs(void)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) < 0)
        return; /* keep the previous list */
    size_t n = 0;
    for (struct ifaddrs *i = ifa; i && n < REGISTRY_MAX_HOST_ADDRS; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        struct net_addr a;
        if (net_addr_from_sockaddr(i->ifa_addr, &a, NULL) == 0)
            host_addrs[n++] = a;
    }
    freeifaddrs(ifa);
    n_host_addrs = n;
    policy_env.host_addrs = host_addrs;
    policy_env.n_host_addrs = n_host_addrs;
}

const struct policy_env *registry_policy_env(void)
{
    return &policy_env;
}

int registry_init(void)
{
    struct sandbox_pools p;
    char err[512];
    int rc = sandbox_pools_load(&p, err, sizeof(err));
    if (rc < 0) {
        log_error("%s", err);
        return rc;
    }
    pools[0] = p.v4;
    pools[1] = p.v6;
    policy_env.sandbox_pools = pools;
    policy_env.n_sandbox_pools = 2;
    registry_refresh_host_addrs();
    registry_rescan();
    return 0;
}

void registry_shutdown(void)
{
    while (sandboxes)
        sandbox_remove(&sandboxes);
}
