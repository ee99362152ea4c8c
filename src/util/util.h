/*
 * util: small shared helpers with no dependencies beyond libc.
 *
 * net_addr/net_prefix: one representation of an IPv4 or IPv6 address used by
 * every module (policy, events, relay, the tool), so nobody passes sockaddrs
 * of guessed size around.  IPv4-mapped IPv6 addresses are normalised to IPv4.
 */
#ifndef PCL_UTIL_H
#define PCL_UTIL_H

#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define NET_ADDR_STRLEN 46 /* INET6_ADDRSTRLEN */
/* "[addr]:port" */
#define NET_ENDPOINT_STRLEN (NET_ADDR_STRLEN + 8)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Intrusive doubly linked lists: a head pointer, and in each node a pair of
 * link fields named by prev/next (so a node can sit in several lists). */
#define DLIST_PUSH(head, node, prev, next)                                                         \
    do {                                                                                           \
        (node)->prev = NULL;                                                                       \
        (node)->next = (head);                                                                     \
        if (head)                                                                                  \
            (head)->prev = (node);                                                                 \
        (head) = (node);                                                                           \
    } while (0)

#define DLIST_UNLINK(head, node, prev, next)                                                       \
    do {                                                                                           \
        if ((node)->prev)                                                                          \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            (head) = (node)->next;                                                                 \
        if ((node)->next)                                                                          \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)

struct net_addr {
    int family; /* AF_INET or AF_INET6; 0 = unset */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
};

struct net_prefix {
    struct net_addr addr; /* host bits are zero */
    unsigned len;         /* 0..32 or 0..128 */
};

/* Parse a literal IPv4 or IPv6 address. Returns 0 or -EINVAL. */
int net_addr_parse(const char *s, struct net_addr *ret);

/* Format without port into buf (at least NET_ADDR_STRLEN). Returns buf. */
const char *net_addr_format(const struct net_addr *a, char *buf, size_t len);

/* Format as "1.2.3.4:80" or "[2001:db8::1]:80" into buf (NET_ENDPOINT_STRLEN). */
const char *net_endpoint_format(const struct net_addr *a, uint16_t port, char *buf, size_t len);

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);

/* Convert from a sockaddr (v4-mapped v6 becomes v4). Returns 0 or -EAFNOSUPPORT. */
int net_addr_from_sockaddr(const struct sockaddr *sa, struct net_addr *ret, uint16_t *ret_port);

/* Fill a sockaddr_storage; returns its length. */
socklen_t net_addr_to_sockaddr(const struct net_addr *a, uint16_t port,
                               struct sockaddr_storage *ret);

/* Parse "a.b.c.d/n", "x::/n" or a bare address (full length). Host bits must be
 * zero unless allow_host_bits, in which case they are cleared. Returns 0 or -EINVAL. */
int net_prefix_parse(const char *s, bool allow_host_bits, struct net_prefix *ret);

bool net_prefix_contains(const struct net_prefix *p, const struct net_addr *a);

const char *net_prefix_format(const struct net_prefix *p, char *buf, size_t len);

/* Copy with truncation, always NUL-terminated. Returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);

/* mkdir -p: parents 0755, the last component with mode. 0 or -errno. */
int util_mkdir_p(const char *path, mode_t mode);

/* Parse a decimal integer in [min,max]. Returns 0 or -EINVAL/-ERANGE. */
int parse_long(const char *s, long min, long max, long *ret);

/* Diagnostics of the binaries themselves (not policy events): one line on stderr
 * prefixed with the program name. */
void log_set_program(const char *name);
void log_msg(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg("error", __VA_ARGS__)
#define log_warn(...) log_msg("warning", __VA_ARGS__)
#define log_info(...) log_msg(NULL, __VA_ARGS__)
void log_set_verbose(bool verbose);
bool log_is_verbose(void);
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_is_verbose())                                                                      \
            log_msg("debug", __VA_ARGS__);                                                         \
    } while (0)

#endif
