/*
 * rules: the netfilter rules of one sandbox.
 *
 * rules_generate() is pure: a sandbox description in, iptables-restore text
 * out.  rules_apply()/rules_remove() feed that text to iptables-restore and
 * ip6tables-restore --noflush, so only the sandbox's own chains and the jumps
 * into them are touched; nobody else's rules are flushed.
 */
#ifndef PCL_RULES_H
#define PCL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct rules_sandbox {
    unsigned index;          /* allocation index; names the chains "PCL<index>..." */
    const char *host_ifname; /* host side of the veth pair, e.g. "pcl3" */
    struct net_addr sandbox_v4; /* the only source address accepted from the sandbox (v4) */
    struct net_addr sandbox_v6; /* ... and v6 */
    uint16_t proxy_port;     /* portcullisd's transparent listener, 15001 by default */
};

/*
 * Generate the iptables-restore text for family AF_INET or AF_INET6 into buf.
 * Returns the length (snprintf semantics: >= len means truncated) or -EINVAL.
 */
int rules_generate(const struct rules_sandbox *sb, int family, char *buf, size_t len);

/* Apply both families atomically per family. Returns 0 or -errno; on failure
 * nothing of this sandbox stays applied and the reason was printed to stderr. */
int rules_apply(const struct rules_sandbox *sb);

/* Remove every rule and chain of the sandbox index/ifname; idempotent (missing
 * rules are not an error). Returns 0 or -errno. */
int rules_remove(const struct rules_sandbox *sb);

#endif
