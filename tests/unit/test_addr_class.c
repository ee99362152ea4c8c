/*
 * policy_classify_addr: every range of DESIGN.md, checked at its edges and
 * just outside them, for v4 and v6, plus the host's addresses and the pools.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

#define PUB POLICY_ADDR_PUBLIC
#define PRIV POLICY_ADDR_PRIVATE
#define BLOCK POLICY_ADDR_ALWAYS_BLOCKED

struct addr_case {
    const char *addr;
    enum policy_addr_class cls;
};

static void check_cases(const struct addr_case *c, size_t n, const struct policy_env *env)
{
    static const char *const names[] = {"PUBLIC", "PRIVATE", "ALWAYS_BLOCKED"};
    for (size_t i = 0; i < n; i++) {
        struct net_addr a;
        if (net_addr_parse(c[i].addr, &a) < 0)
            fail_msg("bad test address %s", c[i].addr);
        enum policy_addr_class got = policy_classify_addr(&a, env);
        if (got != c[i].cls)
            fail_msg("%s: expected %s, got %s", c[i].addr, names[c[i].cls],
                     got < POLICY_ADDR_CLASS_MAX ? names[got] : "?");
    }
}

static void test_v4(void **state)
{
    (void)state;
    static const struct addr_case cases[] = {
        /* always blocked */
        {"0.0.0.0", BLOCK},
        {"0.255.255.255", BLOCK},
        {"1.0.0.0", PUB},
        {"127.0.0.1", BLOCK},
        {"127.255.255.255", BLOCK},
        {"126.255.255.255", PUB},
        {"128.0.0.0", PUB},
        {"169.254.0.0", BLOCK},
        {"169.254.169.254", BLOCK},
        {"169.253.255.255", PUB},
        {"169.255.0.0", PUB},
        {"224.0.0.0", BLOCK},
        {"239.255.255.255", BLOCK},
        {"223.255.255.255", PUB},
        {"255.255.255.255", BLOCK},
        /* private and special */
        {"10.0.0.0", PRIV},
        {"10.255.255.255", PRIV},
        {"9.255.255.255", PUB},
        {"11.0.0.0", PUB},
        {"172.16.0.0", PRIV},
        {"172.31.255.255", PRIV},
        {"172.15.255.255", PUB},
        {"172.32.0.0", PUB},
        {"192.168.0.0", PRIV},
        {"192.168.255.255", PRIV},
        {"192.167.255.255", PUB},
        {"192.169.0.0", PUB},
        {"100.64.0.0", PRIV},
        {"100.127.255.255", PRIV},
        {"100.63.255.255", PUB},
        {"100.128.0.0", PUB},
        {"198.18.0.0", PRIV},
        {"198.19.255.255", PRIV},
        {"198.17.255.255", PUB},
        {"198.20.0.0", PUB},
        {"192.0.0.8", PRIV},
        {"192.0.1.0", PUB},
        {"192.0.2.1", PRIV},
        {"192.0.3.0", PUB},
        {"198.51.100.7", PRIV},
        {"198.51.101.0", PUB},
        {"203.0.113.255", PRIV},
        {"203.0.112.255", PUB},
        {"240.0.0.0", PRIV},
        {"255.255.255.254", PRIV},
        /* public */
        {"8.8.8.8", PUB},
        {"140.82.112.6", PUB},
        {"93.184.216.34", PUB},
    };
    check_cases(cases, ARRAY_SIZE(cases), NULL);
}

static void test_v6(void **state)
{
    (void)state;
    static const struct addr_case cases[] = {
        /* always blocked */
        {"::", BLOCK},
        {"::1", BLOCK},
        {"fe80::", BLOCK},
        {"febf:ffff::1", BLOCK},
        {"fe7f:ffff::1", PUB},
        {"ff00::", BLOCK},
        {"ff02::1", BLOCK},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", BLOCK},
        {"feff::1", PRIV}, /* the top of fec0::/10 */
        /* v4-mapped is v4 (normalised by util) */
        {"::ffff:127.0.0.1", BLOCK},
        {"::ffff:10.1.2.3", PRIV},
        {"::ffff:8.8.8.8", PUB},
        /* private and special */
        {"fc00::", PRIV},
        {"fdff:ffff::1", PRIV},
        {"fbff:ffff::1", PUB},
        {"2001:db8::", PRIV},
        {"2001:db8:ffff::1", PRIV},
        {"2001:db9::1", PUB},
        {"2001:db7:ffff::1", PUB},
        {"64:ff9b::10.0.0.1", PRIV},
        {"64:ff9b::8.8.8.8", PRIV},
        {"64:ff9b:0:0:0:1::1", PUB},
        {"64:ff9b:1::1", PRIV},
        {"64:ff9b:2::1", PUB},
        {"2002::", PRIV},
        {"2002:ffff::1", PRIV},
        {"2003::1", PUB},
        {"2001::1", PRIV},
        {"2001:0:ffff::1", PRIV},
        {"2001:1::1", PUB},
        {"100::", PRIV},
        {"100::ffff:ffff:ffff:ffff", PRIV},
        {"100:0:0:1::", PUB},
        {"fec0::1", PRIV},
        {"feff:ffff::1", PRIV},
        {"::2", PRIV},
        {"::10.0.0.1", PRIV},
        {"::1:0:0:0", PUB},
        /* public */
        {"2606:4700:4700::1111", PUB},
        {"2a00:1450:4001::200e", PUB},
    };
    check_cases(cases, ARRAY_SIZE(cases), NULL);
}

static void test_env(void **state)
{
    (void)state;
    struct net_addr host[2];
    struct net_prefix pools[2];
    assert_int_equal(net_addr_parse("203.0.114.7", &host[0]), 0);
    assert_int_equal(net_addr_parse("2a01:4f8::7", &host[1]), 0);
    assert_int_equal(net_prefix_parse("10.200.0.0/16", false, &pools[0]), 0);
    assert_int_equal(net_prefix_parse("fdcc:706f:7274::/48", false, &pools[1]), 0);
    struct policy_env env = {
        .host_addrs = host, .n_host_addrs = 2, .sandbox_pools = pools, .n_sandbox_pools = 2};

    static const struct addr_case with_env[] = {
        {"203.0.114.7", BLOCK},        {"203.0.114.8", PUB},
        {"2a01:4f8::7", BLOCK},        {"2a01:4f8::8", PUB},
        {"::ffff:203.0.114.7", BLOCK}, {"10.200.0.1", BLOCK},
        {"10.200.255.255", BLOCK},     {"10.201.0.1", PRIV},
        {"fdcc:706f:7274::2", BLOCK},  {"fdcc:706f:7274:ffff::1", BLOCK},
        {"fdcc:706f:7275::1", PRIV},   {"127.0.0.1", BLOCK},
    };
    check_cases(with_env, ARRAY_SIZE(with_env), &env);

    /* The same addresses without env: only their ordinary class. */
    static const struct addr_case without[] = {
        {"203.0.114.7", PUB},
        {"2a01:4f8::7", PUB},
        {"10.200.0.1", PRIV},
        {"fdcc:706f:7274::2", PRIV},
    };
    check_cases(without, ARRAY_SIZE(without), NULL);
    struct policy_env empty = {.n_host_addrs = 0};
    check_cases(without, ARRAY_SIZE(without), &empty);
}

static void test_unusual_inputs(void **state)
{
    (void)state;
    /* What cannot be classified is never let through. */
    struct net_addr unset;
    memset(&unset, 0, sizeof(unset));
    assert_int_equal(policy_classify_addr(&unset, NULL), BLOCK);
    assert_int_equal(policy_classify_addr(NULL, NULL), BLOCK);
    unset.family = AF_UNIX;
    assert_int_equal(policy_classify_addr(&unset, NULL), BLOCK);

    /* A v4-mapped address built by hand (not through util) is still v4. */
    struct net_addr mapped;
    memset(&mapped, 0, sizeof(mapped));
    mapped.family = AF_INET6;
    mapped.u.v6.s6_addr[10] = 0xff;
    mapped.u.v6.s6_addr[11] = 0xff;
    mapped.u.v6.s6_addr[12] = 127;
    mapped.u.v6.s6_addr[15] = 1;
    assert_int_equal(policy_classify_addr(&mapped, NULL), BLOCK);
    mapped.u.v6.s6_addr[12] = 192;
    mapped.u.v6.s6_addr[13] = 168;
    assert_int_equal(policy_classify_addr(&mapped, NULL), PRIV);
    mapped.u.v6.s6_addr[12] = 8;
    mapped.u.v6.s6_addr[13] = 8;
    assert_int_equal(policy_classify_addr(&mapped, NULL), PUB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_v6),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_unusual_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
