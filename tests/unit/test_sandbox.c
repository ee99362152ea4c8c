/* Unit tests for src/sandbox: names, address assignment, record format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

static void default_pools(struct sandbox_pools *p)
{
    char err[256];
    setenv("PORTCULLIS_CONFIG", "/nonexistent/portcullis.conf", 1);
    assert_int_equal(sandbox_pools_load(p, err, sizeof(err)), 0);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(sandbox_name_valid("agent-1"));
    assert_true(sandbox_name_valid("a"));
    assert_true(sandbox_name_valid("A.b_c-9"));
    assert_false(sandbox_name_valid(""));
    assert_false(sandbox_name_valid("-x"));
    assert_false(sandbox_name_valid(".x"));
    assert_false(sandbox_name_valid("a/b"));
    assert_false(sandbox_name_valid("a b"));
    assert_false(sandbox_name_valid("abcdefghijabcdefghijabcdefghijabc")); /* 33 */
    assert_true(sandbox_name_valid("abcdefghijabcdefghijabcdefghijab"));   /* 32 */
}

static void test_assign(void **state)
{
    (void)state;
    struct sandbox_pools pools;
    struct sandbox_record r;
    char buf[64];
    default_pools(&pools);
    assert_int_equal(sandbox_pools_capacity(&pools), 16384);
    memset(&r, 0, sizeof(r));
    assert_int_equal(sandbox_record_assign(&r, "agent-1", 3, &pools), 0);
    assert_string_equal(r.host_ifname, "pcl3");
    assert_string_equal(r.netns, "portcullis-agent-1");
    assert_string_equal(net_addr_format(&r.host_v4, buf, sizeof(buf)), "10.200.0.13");
    assert_string_equal(net_addr_format(&r.sandbox_v4, buf, sizeof(buf)), "10.200.0.14");
    assert_string_equal(net_addr_format(&r.host_v6, buf, sizeof(buf)), "fdcc:706f:7274:3::1");
    assert_string_equal(net_addr_format(&r.sandbox_v6, buf, sizeof(buf)), "fdcc:706f:7274:3::2");
    assert_int_equal(sandbox_record_assign(&r, "x", 16383, &pools), 0);
    assert_string_equal(net_addr_format(&r.sandbox_v4, buf, sizeof(buf)), "10.200.255.254");
    assert_string_equal(net_addr_format(&r.sandbox_v6, buf, sizeof(buf)), "fdcc:706f:7274:3fff::2");
    assert_int_equal(sandbox_record_assign(&r, "x", 16384, &pools), -ERANGE);
}

static void test_pools_config(void **state)
{
    (void)state;
    char path[] = "/tmp/pcl-test-pools-XXXXXX", err[256];
    struct sandbox_pools p;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, "# c\npool4=10.77.0.0/24\npool6=fd00:1::/48\n", 40) == 40);
    close(fd);
    setenv("PORTCULLIS_CONFIG", path, 1);
    assert_int_equal(sandbox_pools_load(&p, err, sizeof(err)), 0);
    assert_int_equal(p.v4.len, 24);
    assert_int_equal(sandbox_pools_capacity(&p), 64);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(write(fd, "pool4=10.77.0.1/24\n", 19) == 19);
    close(fd);
    assert_int_equal(sandbox_pools_load(&p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":1: "));
    unlink(path);
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    struct sandbox_pools pools;
    struct sandbox_record r, back;
    char text[4096];
    default_pools(&pools);
    memset(&r, 0, sizeof(r));
    sandbox_record_assign(&r, "agent-1", 7, &pools);
    r.audit = true;
    r.ephemeral = true;
    r.owner_pid = 4242;
    r.owner_start = 123456789;
    r.proxy_port = 15001;
    strcpy(r.policy_source, "/etc/portcullis/agent.yaml");
    r.created_usec = 1700000000000000ull;
    r.netns_dev = 4;
    r.netns_ino = 4026532512ull;
    int n = sandbox_record_format(&r, text, sizeof(text));
    assert_true(n > 0 && (size_t)n < sizeof(text));
    assert_int_equal(sandbox_record_parse(text, &back), 0);
    assert_memory_equal(&r, &back, sizeof(r));
    /* missing required key */
    assert_int_equal(sandbox_record_parse("name=a\nindex=1\n", &back), -EINVAL);
    /* bad values */
    char bad[4200];
    snprintf(bad, sizeof(bad), "%sproxy_port=0\n", text);
    assert_int_equal(sandbox_record_parse(bad, &back), -EINVAL);
    snprintf(bad, sizeof(bad), "%snonsense\n", text);
    assert_int_equal(sandbox_record_parse(bad, &back), -EINVAL);
    snprintf(bad, sizeof(bad), "name=../etc\n%s", text);
    assert_int_equal(sandbox_record_parse(bad, &back), -EINVAL);
    /* a record of an older tool (no "complete" key) was written complete */
    char *line = strstr(text, "complete=0\n");
    assert_non_null(line);
    snprintf(bad, sizeof(bad), "%.*s%s", (int)(line - text), text, line + strlen("complete=0\n"));
    assert_int_equal(sandbox_record_parse(bad, &back), 0);
    assert_true(back.complete);
    /* a key given twice: the second must not override the first */
    snprintf(bad, sizeof(bad), "%sindex=0\n", text);
    assert_int_equal(sandbox_record_parse(bad, &back), -EINVAL);
    snprintf(bad, sizeof(bad), "%saudit=1\n", text);
    assert_int_equal(sandbox_record_parse(bad, &back), -EINVAL);
    /* unknown keys (a newer tool's) are still skipped */
    snprintf(bad, sizeof(bad), "%sfuture_key=1\n", text);
    assert_int_equal(sandbox_record_parse(bad, &back), 0);
    /* a newline in a value would smuggle keys in: refused when formatting */
    strcpy(r.policy_source, "/tmp/x\nindex=0\nsandbox_v4=10.200.0.2\n.yaml");
    assert_int_equal(sandbox_record_format(&r, text, sizeof(text)), -EINVAL);
    strcpy(r.policy_source, "/tmp/x\ty.yaml");
    assert_int_equal(sandbox_record_format(&r, text, sizeof(text)), -EINVAL);
}

static void test_proc_start(void **state)
{
    (void)state;
    struct sandbox_record r;
    memset(&r, 0, sizeof(r));
    r.owner_pid = getpid();
    r.owner_start = sandbox_proc_start_time(getpid());
    assert_true(r.owner_start > 0);
    assert_true(sandbox_owner_alive(&r));
    r.owner_start++;
    assert_false(sandbox_owner_alive(&r));
    r.owner_pid = 0;
    assert_false(sandbox_owner_alive(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),        cmocka_unit_test(test_assign),
        cmocka_unit_test(test_pools_config), cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_proc_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
