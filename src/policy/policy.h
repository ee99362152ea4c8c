/*
 * policy: the YAML policy of DESIGN.md, parsed with libyaml, and the pure
 * decision function.  No I/O besides reading the file in policy_load_file, no
 * globals, no logging, no libuv: everything the decision needs comes in as
 * arguments, so every path is unit-testable.
 *
 * Name resolution is the caller's job: the decision asks, through a callback,
 * whether an address is among the addresses a policy host resolves to.  The
 * callback may answer "not known yet" (POLICY_LOOKUP_PENDING); the decision
 * then returns POLICY_PENDING naming the host, the caller resolves it
 * (asynchronously), and calls policy_decide again.  Each call makes progress
 * because the caller caches answers, including negative ones.
 */
#ifndef PCL_POLICY_H
#define PCL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Limits on what one policy file may hold (bounded memory for a hostile file). */
#define POLICY_MAX_FILE_BYTES (1024 * 1024)
#define POLICY_MAX_POLICIES 256
#define POLICY_MAX_ENDPOINTS 1024 /* per file */
#define POLICY_MAX_PORTS 64       /* per endpoint */
#define POLICY_MAX_IPS 64         /* allowed_ips per endpoint */
#define POLICY_MAX_HOST_LEN 253
#define POLICY_MAX_NAME_LEN 128

struct policy; /* opaque; immutable once loaded, safe to share read-only */

struct policy_error {
    char file[256];
    unsigned line;   /* 1-based; 0 when the error has no position (I/O) */
    unsigned column; /* 1-based */
    char message[256];
};

/* Formats "FILE:LINE:COL: message" (or "FILE: message") into buf. Returns buf. */
const char *policy_error_format(const struct policy_error *err, char *buf, size_t len);

/* Parse a policy file. On success *ret owns the policy (free with policy_free)
 * and 0 is returned. On failure returns -EINVAL (bad content) or -errno (I/O)
 * and fills *err. */
int policy_load_file(const char *path, struct policy **ret, struct policy_error *err);

/* Same from memory; name is used as the FILE in errors. */
int policy_load_buffer(const char *name, const char *buf, size_t len, struct policy **ret,
                       struct policy_error *err);

/* Accepts NULL; returns NULL. */
struct policy *policy_free(struct policy *p);

/* Address classes, in the order of DESIGN.md. */
enum policy_addr_class {
    POLICY_ADDR_PUBLIC = 0,
    POLICY_ADDR_PRIVATE,        /* RFC 1918, 100.64/10, 198.18/15, fc00::/7, other special */
    POLICY_ADDR_ALWAYS_BLOCKED, /* loopback, link-local, host's own, sandbox pool, multicast,
                                   0.0.0.0/8, unspecified */
    POLICY_ADDR_CLASS_MAX,
};

/* What the decision needs to know of the machine it runs on. */
struct policy_env {
    const struct net_addr *host_addrs; /* the host's own addresses */
    size_t n_host_addrs;
    const struct net_prefix *sandbox_pools; /* the sandbox address pools (v4 and v6) */
    size_t n_sandbox_pools;
};

enum policy_addr_class policy_classify_addr(const struct net_addr *a, const struct policy_env *env);

enum policy_lookup {
    POLICY_LOOKUP_NO = 0,  /* the host does not resolve to the address (or not at all) */
    POLICY_LOOKUP_YES,     /* the address is among the host's addresses */
    POLICY_LOOKUP_PENDING, /* not known yet: resolve host, then decide again */
};

/* Is addr among the addresses `host` (an exact policy host name) resolves to? */
typedef enum policy_lookup (*policy_lookup_fn)(void *ctx, const char *host,
                                               const struct net_addr *addr);

enum policy_proto {
    POLICY_PROTO_TCP = 0,
    POLICY_PROTO_UDP,
    POLICY_PROTO_MAX,
};

struct policy_flow {
    enum policy_proto proto;
    struct net_addr dst;
    uint16_t dst_port;
    /* A hostname already bound to the flow (DNS binding, SNI, Host), or NULL.
     * When set, exact and wildcard hosts are matched against it by name and
     * the address must still resolve from it (exact) — see policy.c. */
    const char *hostname;
};

enum policy_verdict {
    POLICY_DENY = 0,
    POLICY_ALLOW,
    POLICY_AUDIT,   /* would be denied; passes because of audit mode or enforcement: audit */
    POLICY_PENDING, /* a host needs resolving: see policy_decision.pending_host */
    POLICY_VERDICT_MAX,
};

enum policy_reason {
    POLICY_REASON_NONE = 0, /* allowed */
    POLICY_REASON_NO_MATCHING_POLICY,
    POLICY_REASON_ALWAYS_BLOCKED_ADDRESS,
    POLICY_REASON_PRIVATE_ADDRESS,
    POLICY_REASON_MAX,
};

/* "no_matching_policy", "always_blocked_address", "private_address"; NULL for NONE. */
const char *policy_reason_name(enum policy_reason r);

struct policy_decision {
    enum policy_verdict verdict;
    enum policy_reason reason; /* why it was denied, also set for AUDIT */
    const char *policy_name;   /* key of the matching (or nearly matching) policy, or NULL;
                                  points into the struct policy */
    const char *endpoint_host; /* the matching endpoint's host, or NULL */
    const char *pending_host;  /* with POLICY_PENDING: the host to resolve */
};

/*
 * Decide a flow.  audit_mode is the sandbox's --audit: every deny except
 * ALWAYS_BLOCKED becomes POLICY_AUDIT.  An endpoint with `enforcement: audit`
 * that would deny (private address without allowed_ips) also gives AUDIT.
 * Pointers in *ret point into p and stay valid while p lives.
 */
void policy_decide(const struct policy *p, const struct policy_env *env, bool audit_mode,
                   const struct policy_flow *flow, policy_lookup_fn lookup, void *lookup_ctx,
                   struct policy_decision *ret);

/* Call fn for every exact (non-wildcard) host of the policy, e.g. to pre-resolve. */
void policy_foreach_host(const struct policy *p, void (*fn)(void *ctx, const char *host),
                         void *ctx);

#endif
