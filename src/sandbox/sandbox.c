#include "sandbox.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *sandbox_state_dir(void)
{
    const char *d = getenv("PORTCULLIS_STATE_DIR");
    return d && d[0] == '/' ? d : SANDBOX_DEFAULT_STATE_DIR;
}

static int pools_set_defaults(struct sandbox_pools *p)
{
    if (net_prefix_parse("10.200.0.0/16", false, &p->v4) < 0 ||
        net_prefix_parse("fdcc:706f:7274::/48", false, &p->v6) < 0)
        return -EINVAL;
    return 0;
}

int sandbox_pools_load(struct sandbox_pools *ret, char *err, size_t errlen)
{
    struct sandbox_pools p;
    const char *path = getenv("PORTCULLIS_CONFIG");
    char line[512];
    unsigned lineno = 0;

    if (pools_set_defaults(&p) < 0)
        return -EINVAL;
    if (!path)
        path = SANDBOX_DEFAULT_CONFIG;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT) {
            *ret = p;
            return 0;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        s[strcspn(s, "\r\n")] = '\0';
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            goto bad;
        *eq = '\0';
        const char *key = s, *val = eq + 1;
        if (strcmp(key, "pool4") == 0) {
            if (net_prefix_parse(val, false, &p.v4) < 0 || p.v4.addr.family != AF_INET ||
                p.v4.len > 28)
                goto bad;
        } else if (strcmp(key, "pool6") == 0) {
            if (net_prefix_parse(val, false, &p.v6) < 0 || p.v6.addr.family != AF_INET6 ||
                p.v6.len > 62 || p.v6.len < 32)
                goto bad;
        } else {
            goto bad;
        }
    }
    fclose(f);
    *ret = p;
    return 0;
bad:
    fclose(f);
    snprintf(err, errlen,
             "%s:%u: expected pool4=A.B.C.D/N (N <= 28) or pool6=X::/N (32 <= N <= 62)", path,
             lineno);
    return -EINVAL;
}

bool sandbox_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SANDBOX_NAME_MAX || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-')
            return false;
    }
    return true;
}

unsigned sandbox_pools_capacity(const struct sandbox_pools *pools)
{
    unsigned v4 = 1u << (32 - pools->v4.len - 2); /* one /30 each */
    unsigned v6bits = 64 - pools->v6.len;         /* one /64 each */
    unsigned v6 = v6bits >= 16 ? 65536 : 1u << v6bits;
    unsigned cap = v4 < v6 ? v4 : v6;
    /* Interface names pcl<index> must fit IFNAMSIZ; 100000 is far beyond that. */
    return cap > 100000 ? 100000 : cap;
}

int sandbox_record_assign(struct sandbox_record *r, const char *name, unsigned index,
                          const struct sandbox_pools *pools)
{
    if (index >= sandbox_pools_capacity(pools) || !sandbox_name_valid(name))
        return -ERANGE;
    str_copy(r->name, name, sizeof(r->name));
    r->index = index;
    snprintf(r->host_ifname, sizeof(r->host_ifname), SANDBOX_IF_PREFIX "%u", index);
    snprintf(r->netns, sizeof(r->netns), SANDBOX_NETNS_PREFIX "%s", name);

    uint32_t base = ntohl(pools->v4.addr.u.v4.s_addr) + index * 4u;
    memset(&r->host_v4, 0, sizeof(r->host_v4));
    r->host_v4.family = AF_INET;
    r->host_v4.u.v4.s_addr = htonl(base + 1);
    r->sandbox_v4 = r->host_v4;
    r->sandbox_v4.u.v4.s_addr = htonl(base + 2);
    r->prefix_v4 = 30;

    /* The index goes into bits 48..63 of the /64. */
    struct net_addr net6 = pools->v6.addr;
    net6.u.v6.s6_addr[6] |= (uint8_t)(index >> 8);
    net6.u.v6.s6_addr[7] |= (uint8_t)(index & 0xff);
    r->host_v6 = net6;
    r->host_v6.u.v6.s6_addr[15] = 1;
    r->sandbox_v6 = net6;
    r->sandbox_v6.u.v6.s6_addr[15] = 2;
    r->prefix_v6 = 64;
    return 0;
}

const char *sandbox_path(const char *name, const char *file, char *buf, size_t len)
{
    if (file)
        snprintf(buf, len, "%s/sandboxes/%s/%s", sandbox_state_dir(), name, file);
    else if (name)
        snprintf(buf, len, "%s/sandboxes/%s", sandbox_state_dir(), name);
    else
        snprintf(buf, len, "%s/sandboxes", sandbox_state_dir());
    return buf;
}

bool sandbox_record_value_ok(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

int sandbox_record_format(const struct sandbox_record *r, char *buf, size_t len)
{
    char h4[NET_ADDR_STRLEN], s4[NET_ADDR_STRLEN], h6[NET_ADDR_STRLEN], s6[NET_ADDR_STRLEN];
    /* A newline in a value would add keys of its own to the record. */
    if (!sandbox_record_value_ok(r->name) || !sandbox_record_value_ok(r->host_ifname) ||
        !sandbox_record_value_ok(r->netns) || !sandbox_record_value_ok(r->policy_source))
        return -EINVAL;
    return snprintf(
        buf, len,
        "name=%s\nindex=%u\nhost_ifname=%s\nnetns=%s\nhost_v4=%s\nsandbox_v4=%s\n"
        "host_v6=%s\nsandbox_v6=%s\nprefix_v4=%u\nprefix_v6=%u\naudit=%d\n"
        "ephemeral=%d\ncomplete=%d\nowner_pid=%d\nowner_start=%" PRIu64 "\nproxy_port=%u\n"
        "policy_source=%s\ncreated_usec=%" PRIu64 "\nnetns_dev=%" PRIu64 "\nnetns_ino=%" PRIu64
        "\n",
        r->name, r->index, r->host_ifname, r->netns, net_addr_format(&r->host_v4, h4, sizeof(h4)),
        net_addr_format(&r->sandbox_v4, s4, sizeof(s4)),
        net_addr_format(&r->host_v6, h6, sizeof(h6)),
        net_addr_format(&r->sandbox_v6, s6, sizeof(s6)), r->prefix_v4, r->prefix_v6, r->audit,
        r->ephemeral, r->complete, (int)r->owner_pid, r->owner_start, r->proxy_port,
        r->policy_source, r->created_usec, r->netns_dev, r->netns_ino);
}

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    if (!*s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* The keys of a record, in sandbox_record_format()'s order: each may appear
 * once (a repeated key would override what the first one said), and the
 * required ones must. */
static const struct {
    const char *name;
    bool required;
} record_keys[] = {
    {"name", true},        {"index", true},          {"host_ifname", true},
    {"netns", true},       {"host_v4", false},       {"sandbox_v4", true},
    {"host_v6", false},    {"sandbox_v6", true},     {"prefix_v4", false},
    {"prefix_v6", false},  {"audit", false},         {"ephemeral", false},
    {"complete", false},   {"owner_pid", false},     {"owner_start", false},
    {"proxy_port", false}, {"policy_source", false}, {"created_usec", false},
    {"netns_dev", false},  {"netns_ino", false},
};

/* 0 the first time key (a known one) is seen, -EINVAL the second. */
static int record_key_once(const char *key, uint32_t *keys)
{
    for (size_t i = 0; i < ARRAY_SIZE(record_keys); i++) {
        if (strcmp(key, record_keys[i].name) == 0) {
            if (*keys & (1u << i))
                return -EINVAL;
            *keys |= 1u << i;
            return 0;
        }
    }
    return 0;
}

int sandbox_record_parse(const char *text, struct sandbox_record *ret)
{
    struct sandbox_record r;
    uint32_t keys = 0;
    memset(&r, 0, sizeof(r));
    r.complete = true; /* absent from an older tool's record */
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[1200];
        if (n >= sizeof(line))
            return -EINVAL;
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl ? 1 : 0);
        if (!line[0])
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return -EINVAL;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        uint64_t u = 0;
        int rc = 0;
        if (record_key_once(k, &keys) < 0)
            return -EINVAL;
        if (!strcmp(k, "name")) {
            if (!sandbox_name_valid(v))
                return -EINVAL;
            str_copy(r.name, v, sizeof(r.name));
        } else if (!strcmp(k, "index")) {
            rc = parse_u64(v, &u);
            r.index = (unsigned)u;
        } else if (!strcmp(k, "host_ifname")) {
            if (strlen(v) >= sizeof(r.host_ifname))
                return -EINVAL;
            str_copy(r.host_ifname, v, sizeof(r.host_ifname));
        } else if (!strcmp(k, "netns")) {
            if (strlen(v) >= sizeof(r.netns))
                return -EINVAL;
            str_copy(r.netns, v, sizeof(r.netns));
        } else if (!strcmp(k, "host_v4")) {
            rc = net_addr_parse(v, &r.host_v4);
        } else if (!strcmp(k, "sandbox_v4")) {
            rc = net_addr_parse(v, &r.sandbox_v4);
        } else if (!strcmp(k, "host_v6")) {
            rc = net_addr_parse(v, &r.host_v6);
        } else if (!strcmp(k, "sandbox_v6")) {
            rc = net_addr_parse(v, &r.sandbox_v6);
        } else if (!strcmp(k, "prefix_v4")) {
            rc = parse_u64(v, &u);
            r.prefix_v4 = (unsigned)u;
        } else if (!strcmp(k, "prefix_v6")) {
            rc = parse_u64(v, &u);
            r.prefix_v6 = (unsigned)u;
        } else if (!strcmp(k, "audit")) {
            r.audit = !strcmp(v, "1");
        } else if (!strcmp(k, "ephemeral")) {
            r.ephemeral = !strcmp(v, "1");
        } else if (!strcmp(k, "complete")) {
            r.complete = !strcmp(v, "1");
        } else if (!strcmp(k, "owner_pid")) {
            rc = parse_u64(v, &u);
            r.owner_pid = (pid_t)u;
        } else if (!strcmp(k, "owner_start")) {
            rc = parse_u64(v, &r.owner_start);
        } else if (!strcmp(k, "proxy_port")) {
            rc = parse_u64(v, &u);
            if (!rc && (u == 0 || u > 65535))
                rc = -EINVAL;
            r.proxy_port = (uint16_t)u;
        } else if (!strcmp(k, "policy_source")) {
            str_copy(r.policy_source, v, sizeof(r.policy_source));
        } else if (!strcmp(k, "created_usec")) {
            rc = parse_u64(v, &r.created_usec);
        } else if (!strcmp(k, "netns_dev")) {
            rc = parse_u64(v, &r.netns_dev);
        } else if (!strcmp(k, "netns_ino")) {
            rc = parse_u64(v, &r.netns_ino);
        }
        /* Unknown keys are skipped: a newer tool may add fields. */
        if (rc < 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < ARRAY_SIZE(record_keys); i++) {
        if (record_keys[i].required && !(keys & (1u << i)))
            return -EINVAL;
    }
    if (!r.proxy_port)
        r.proxy_port = SANDBOX_DEFAULT_PROXY_PORT;
    *ret = r;
    return 0;
}

int sandbox_record_write(const struct sandbox_record *r)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], buf[4096];
    int n = sandbox_record_format(r, buf, sizeof(buf));
    if (n < 0)
        return n;
    if ((size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    sandbox_path(r->name, "sandbox.conf", path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, buf, (size_t)n);
    int err = w == n ? 0 : (w < 0 ? -errno : -EIO);
    if (!err && fsync(fd) < 0)
        err = -errno;
    close(fd);
    if (!err && rename(tmp, path) < 0)
        err = -errno;
    if (err)
        unlink(tmp);
    return err;
}

int sandbox_record_read(const char *name, struct sandbox_record *ret)
{
    char path[PATH_MAX], buf[4096];
    if (!sandbox_name_valid(name))
        return -EINVAL;
    sandbox_path(name, "sandbox.conf", path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err)
        return err;
    buf[n] = '\0';
    if (sandbox_record_parse(buf, ret) < 0 || strcmp(ret->name, name) != 0)
        return -EINVAL;
    return 0;
}

int sandbox_list(void (*fn)(void *ctx, const char *name), void *ctx)
{
    char dir[PATH_MAX];
    int count = 0;
    sandbox_path(NULL, NULL, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!sandbox_name_valid(de->d_name))
            continue;
        fn(ctx, de->d_name);
        count++;
    }
    closedir(d);
    return count;
}

uint64_t sandbox_proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* comm may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* field 3 is state; starttime is field 22 -> 20th after ')' */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    if (!p)
        return 0;
    return strtoull(p + 1, NULL, 10);
}

bool sandbox_owner_alive(const struct sandbox_record *r)
{
    if (r->owner_pid <= 0)
        return false;
    uint64_t st = sandbox_proc_start_time(r->owner_pid);
    return st != 0 && st == r->owner_start;
}
