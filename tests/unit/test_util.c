/* Unit tests for src/util: addresses, prefixes, integers, strings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

static void test_addr_parse_format(void **state)
{
    (void)state;
    struct net_addr a;
    char buf[NET_ADDR_STRLEN];
    assert_int_equal(net_addr_parse("198.18.0.10", &a), 0);
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "198.18.0.10");
    assert_int_equal(net_addr_parse("2001:DB8::10", &a), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "2001:db8::10");
    /* v4-mapped becomes v4, so policy matching sees one form */
    assert_int_equal(net_addr_parse("::ffff:10.0.0.1", &a), 0);
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "10.0.0.1");
    assert_int_equal(net_addr_parse("1.2.3", &a), -EINVAL);
    assert_int_equal(net_addr_parse("", &a), -EINVAL);
    assert_int_equal(net_addr_parse("1.2.3.4 ", &a), -EINVAL);
    assert_int_equal(net_addr_parse(NULL, &a), -EINVAL);
}

static void test_endpoint_format(void **state)
{
    (void)state;
    struct net_addr a;
    char buf[NET_ENDPOINT_STRLEN];
    net_addr_parse("2001:db8::1", &a);
    assert_string_equal(net_endpoint_format(&a, 443, buf, sizeof(buf)), "[2001:db8::1]:443");
    net_addr_parse("10.1.2.3", &a);
    assert_string_equal(net_endpoint_format(&a, 80, buf, sizeof(buf)), "10.1.2.3:80");
}

static void test_sockaddr_roundtrip(void **state)
{
    (void)state;
    struct net_addr a, b;
    struct sockaddr_storage ss;
    uint16_t port = 0;
    net_addr_parse("2001:db8::7", &a);
    socklen_t len = net_addr_to_sockaddr(&a, 8443, &ss);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(net_addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), 0);
    assert_true(net_addr_equal(&a, &b));
    assert_int_equal(port, 8443);
    ss.ss_family = AF_UNIX;
    assert_int_equal(net_addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), -EAFNOSUPPORT);
}

static void test_prefix(void **state)
{
    (void)state;
    struct net_prefix p;
    struct net_addr a;
    char buf[64];
    assert_int_equal(net_prefix_parse("10.0.5.0/24", false, &p), 0);
    assert_string_equal(net_prefix_format(&p, buf, sizeof(buf)), "10.0.5.0/24");
    net_addr_parse("10.0.5.77", &a);
    assert_true(net_prefix_contains(&p, &a));
    net_addr_parse("10.0.6.1", &a);
    assert_false(net_prefix_contains(&p, &a));
    net_addr_parse("2001:db8::1", &a);
    assert_false(net_prefix_contains(&p, &a));                             /* other family */
    assert_int_equal(net_prefix_parse("10.0.5.1/24", false, &p), -EINVAL); /* host bits */
    assert_int_equal(net_prefix_parse("10.0.5.1/24", true, &p), 0);
    assert_string_equal(net_prefix_format(&p, buf, sizeof(buf)), "10.0.5.0/24");
    assert_int_equal(net_prefix_parse("10.0.0.0/33", false, &p), -EINVAL);
    assert_int_equal(net_prefix_parse("10.0.0.0/", false, &p), -EINVAL);
    assert_int_equal(net_prefix_parse("10.0.0.0/-1", false, &p), -EINVAL);
    assert_int_equal(net_prefix_parse("2001:db8::/32", false, &p), 0);
    net_addr_parse("2001:db8:ffff::1", &a);
    assert_true(net_prefix_contains(&p, &a));
    net_addr_parse("2001:db9::1", &a);
    assert_false(net_prefix_contains(&p, &a));
    assert_int_equal(net_prefix_parse("fe80::/10", false, &p), 0);
    net_addr_parse("febf::1", &a);
    assert_true(net_prefix_contains(&p, &a));
    net_addr_parse("fec0::1", &a);
    assert_false(net_prefix_contains(&p, &a));
    assert_int_equal(net_prefix_parse("0.0.0.0/0", false, &p), 0);
    net_addr_parse("203.0.113.9", &a);
    assert_true(net_prefix_contains(&p, &a));
    assert_int_equal(net_prefix_parse("1.2.3.4", false, &p), 0);
    assert_int_equal(p.len, 32);
    assert_int_equal(net_prefix_parse("::ffff:1.2.3.4/120", false, &p), -EINVAL);
}

static void test_parse_long(void **state)
{
    (void)state;
    long v;
    assert_int_equal(parse_long("65535", 1, 65535, &v), 0);
    assert_int_equal(v, 65535);
    assert_int_equal(parse_long("65536", 1, 65535, &v), -ERANGE);
    assert_int_equal(parse_long("0", 1, 65535, &v), -ERANGE);
    assert_int_equal(parse_long("12a", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_long("", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_long(" 1", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_long("+1", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_long("99999999999999999999999", 0, 100, &v), -ERANGE);
}

static void test_str_copy(void **state)
{
    (void)state;
    char buf[4];
    assert_int_equal(str_copy(buf, "abcdef", sizeof(buf)), 6);
    assert_string_equal(buf, "abc");
    assert_int_equal(str_copy(buf, "ab", sizeof(buf)), 2);
    assert_string_equal(buf, "ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_format),  cmocka_unit_test(test_endpoint_format),
        cmocka_unit_test(test_sockaddr_roundtrip), cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_parse_long),         cmocka_unit_test(test_str_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
