/*
 * Address classes of DESIGN.md: what is never reachable from a sandbox, what
 * needs an explicit allowed_ips, and the rest.  Static tables, no parsing at
 * run time.
 */
#include "policy.h"

#include <string.h>

struct v4_range {
    uint32_t net; /* host byte order */
    unsigned len;
};

struct v6_range {
    uint8_t net[16];
    unsigned len;
};

static const struct v4_range v4_blocked[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network" */
    {0x7f000000u, 8},  /* loopback */
    {0xa9fe0000u, 16}, /* link-local */
    {0xe0000000u, 4},  /* multicast */
    {0xffffffffu, 32}, /* limited broadcast */
};

static const struct v4_range v4_private[] = {
    {0x0a000000u, 8},  /* RFC 1918 */
    {0xac100000u, 12}, /* RFC 1918 */
    {0xc0a80000u, 16}, /* RFC 1918 */
    {0x64400000u, 10}, /* CGNAT */
    {0xc6120000u, 15}, /* benchmarking */
    {0xc0000000u, 24}, /* IETF protocol assignments */
    {0xc0000200u, 24}, /* TEST-NET-1 */
    {0xc6336400u, 24}, /* TEST-NET-2 */
    {0xcb007100u, 24}, /* TEST-NET-3 */
    {0xf0000000u, 4},  /* reserved */
};

static const struct v6_range v6_blocked[] = {
    {{0}, 128},                                              /* unspecified */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128}, /* loopback */
    {{0xfe, 0x80}, 10},                                      /* link-local */
    {{0xff}, 8},                                             /* multicast */
};

static const struct v6_range v6_private[] = {
    {{0xfc}, 7},                             /* unique local */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},          /* documentation */
    {{0x00, 0x64, 0xff, 0x9b}, 96},          /* NAT64: embeds any v4, private ones too */
    {{0x00, 0x64, 0xff, 0x9b, 0, 0x01}, 48}, /* local-use NAT64 (RFC 8215), same reason */
    {{0x20, 0x02}, 16},                      /* 6to4: could tunnel to a private v4 */
    {{0x20, 0x01, 0, 0}, 32},                /* Teredo: tunnels to v4 as well */
    {{0x01, 0x00}, 64},                      /* discard-only */
    {{0xfe, 0xc0}, 10},                      /* deprecated site-local */
    {{0}, 96},                               /* deprecated v4-compatible ::a.b.c.d */
};

static bool v4_in(uint32_t a, const struct v4_range *r)
{
    uint32_t mask = r->len == 0 ? 0 : 0xffffffffu << (32 - r->len);
    return (a & mask) == r->net;
}

static bool v6_in(const uint8_t *a, const struct v6_range *r)
{
    unsigned full = r->len / 8, rest = r->len % 8;
    if (memcmp(a, r->net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == r->net[full];
}

static bool v4_in_any(uint32_t a, const struct v4_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v4_in(a, &r[i]))
            return true;
    return false;
}

static bool v6_in_any(const uint8_t *a, const struct v6_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v6_in(a, &r[i]))
            return true;
    return false;
}

/*
 * Classify a destination.  env may be NULL (no host addresses, no pools).  An
 * address of unknown family is ALWAYS_BLOCKED: we never pass what we cannot
 * classify.
 */
enum policy_addr_class policy_classify_addr(const struct net_addr *addr,
                                            const struct policy_env *env)
{
    if (!addr || (addr->family != AF_INET && addr->family != AF_INET6))
        return POLICY_ADDR_ALWAYS_BLOCKED;

    /* util normalises v4-mapped addresses; a hand-built one must not dodge the v4 rules. */
    struct net_addr norm = *addr;
    if (norm.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&norm.u.v6)) {
        struct in_addr v4;
        memcpy(&v4, &norm.u.v6.s6_addr[12], sizeof(v4));
        memset(&norm, 0, sizeof(norm));
        norm.family = AF_INET;
        norm.u.v4 = v4;
    }
    const struct net_addr *a = &norm;

    if (env) {
        for (size_t i = 0; i < env->n_host_addrs; i++)
            if (net_addr_equal(&env->host_addrs[i], a))
                return POLICY_ADDR_ALWAYS_BLOCKED;
        for (size_t i = 0; i < env->n_sandbox_pools; i++)
            if (net_prefix_contains(&env->sandbox_pools[i], a))
                return POLICY_ADDR_ALWAYS_BLOCKED;
    }

    if (a->family == AF_INET) {
        uint32_t v = ntohl(a->u.v4.s_addr);
        if (v4_in_any(v, v4_blocked, ARRAY_SIZE(v4_blocked)))
            return POLICY_ADDR_ALWAYS_BLOCKED;
        if (v4_in_any(v, v4_private, ARRAY_SIZE(v4_private)))
            return POLICY_ADDR_PRIVATE;
        return POLICY_ADDR_PUBLIC;
    }

    const uint8_t *b = a->u.v6.s6_addr;
    if (v6_in_any(b, v6_blocked, ARRAY_SIZE(v6_blocked)))
        return POLICY_ADDR_ALWAYS_BLOCKED;
    if (v6_in_any(b, v6_private, ARRAY_SIZE(v6_private)))
        return POLICY_ADDR_PRIVATE;
    return POLICY_ADDR_PUBLIC;
}
