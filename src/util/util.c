#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *log_program = "portcullis";
static bool log_verbose;

static void net_addr_normalise(struct net_addr *a)
{
    if (a->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.v6)) {
        struct in_addr v4;
        memcpy(&v4, &a->u.v6.s6_addr[12], 4);
        memset(a, 0, sizeof(*a));
        a->family = AF_INET;
        a->u.v4 = v4;
    }
}

int net_addr_parse(const char *s, struct net_addr *ret)
{
    struct net_addr a;
    memset(&a, 0, sizeof(a));
    if (!s)
        return -EINVAL;
    if (inet_pton(AF_INET, s, &a.u.v4) == 1) {
        a.family = AF_INET;
    } else if (inet_pton(AF_INET6, s, &a.u.v6) == 1) {
        a.family = AF_INET6;
        net_addr_normalise(&a);
    } else {
        return -EINVAL;
    }
    *ret = a;
    return 0;
}

const char *net_addr_format(const struct net_addr *a, char *buf, size_t len)
{
    if (!a || (a->family != AF_INET && a->family != AF_INET6) ||
        !inet_ntop(a->family, &a->u, buf, (socklen_t)len))
        str_copy(buf, "?", len);
    return buf;
}

const char *net_endpoint_format(const struct net_addr *a, uint16_t port, char *buf, size_t len)
{
    char ab[NET_ADDR_STRLEN];
    net_addr_format(a, ab, sizeof(ab));
    if (a && a->family == AF_INET6)
        snprintf(buf, len, "[%s]:%u", ab, port);
    else
        snprintf(buf, len, "%s:%u", ab, port);
    return buf;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == AF_INET)
        return a->u.v4.s_addr == b->u.v4.s_addr;
    if (a->family == AF_INET6)
        return memcmp(&a->u.v6, &b->u.v6, sizeof(a->u.v6)) == 0;
    return false;
}

int net_addr_from_sockaddr(const struct sockaddr *sa, struct net_addr *ret, uint16_t *ret_port)
{
    struct net_addr a;
    uint16_t port;
    memset(&a, 0, sizeof(a));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        a.family = AF_INET;
        a.u.v4 = in->sin_addr;
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        a.family = AF_INET6;
        a.u.v6 = in6->sin6_addr;
        port = ntohs(in6->sin6_port);
        net_addr_normalise(&a);
    } else {
        return -EAFNOSUPPORT;
    }
    *ret = a;
    if (ret_port)
        *ret_port = port;
    return 0;
}

socklen_t net_addr_to_sockaddr(const struct net_addr *a, uint16_t port,
                               struct sockaddr_storage *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (a->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ret;
        in->sin_family = AF_INET;
        in->sin_addr = a->u.v4;
        in->sin_port = htons(port);
        return sizeof(*in);
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = a->u.v6;
    in6->sin6_port = htons(port);
    return sizeof(*in6);
}

static void prefix_mask(struct net_addr *a, unsigned len, bool *had_host_bits)
{
    uint8_t *b = a->family == AF_INET ? (uint8_t *)&a->u.v4 : a->u.v6.s6_addr;
    unsigned bytes = a->family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned bit0 = i * 8;
        uint8_t keep;
        if (bit0 + 8 <= len)
            keep = 0xff;
        else if (bit0 >= len)
            keep = 0;
        else
            keep = (uint8_t)(0xff << (8 - (len - bit0)));
        if (b[i] & (uint8_t)~keep)
            *had_host_bits = true;
        b[i] &= keep;
    }
}

int net_prefix_parse(const char *s, bool allow_host_bits, struct net_prefix *ret)
{
    char buf[64];
    struct net_prefix p;
    long len = -1;

    if (!s || strlen(s) >= sizeof(buf))
        return -EINVAL;
    str_copy(buf, s, sizeof(buf));
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
        if (parse_long(slash + 1, 0, 128, &len) < 0)
            return -EINVAL;
    }
    memset(&p, 0, sizeof(p));
    if (net_addr_parse(buf, &p.addr) < 0)
        return -EINVAL;
    /* A v4-mapped literal was normalised to v4; refuse a v6 prefix length on it. */
    if (strchr(buf, ':') && p.addr.family == AF_INET)
        return -EINVAL;
    unsigned max = p.addr.family == AF_INET ? 32 : 128;
    if (len < 0)
        len = max;
    if ((unsigned long)len > max)
        return -EINVAL;
    p.len = (unsigned)len;
    bool host_bits = false;
    prefix_mask(&p.addr, p.len, &host_bits);
    if (host_bits && !allow_host_bits)
        return -EINVAL;
    *ret = p;
    return 0;
}

bool net_prefix_contains(const struct net_prefix *p, const struct net_addr *a)
{
    if (p->addr.family != a->family)
        return false;
    struct net_addr masked = *a;
    bool ignored = false;
    prefix_mask(&masked, p->len, &ignored);
    return net_addr_equal(&masked, &p->addr);
}

const char *net_prefix_format(const struct net_prefix *p, char *buf, size_t len)
{
    char ab[NET_ADDR_STRLEN];
    snprintf(buf, len, "%s/%u", net_addr_format(&p->addr, ab, sizeof(ab)), p->len);
    return buf;
}

size_t str_copy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

int util_mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (str_copy(buf, path, sizeof(buf)) >= sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int parse_long(const char *s, long min, long max, long *ret)
{
    char *end;
    if (!s || !*s || *s == ' ' || *s == '+')
        return -EINVAL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

void log_set_program(const char *name)
{
    log_program = name;
}

void log_set_verbose(bool verbose)
{
    log_verbose = verbose;
}

bool log_is_verbose(void)
{
    return log_verbose;
}

void log_msg(const char *level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level)
        fprintf(stderr, "%s: %s: %s\n", log_program, level, line);
    else
        fprintf(stderr, "%s: %s\n", log_program, line);
}
