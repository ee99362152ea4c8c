/* Unit tests of the rules generator (pure text in, text out, no iptables) and
 * of the nf_tables registry and message classification (no netlink socket). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "rules.h"

/* One rule per line, as iptables-save prints them. */
// clang-format off
static const char golden_v4[] =
    "*raw\n"
    ":PCL3-RAW - [0:0]\n"
    "-I PREROUTING 1 -i pcl3 -j PCL3-RAW\n"
    "-A PCL3-RAW -s 10.200.0.2/32 -j RETURN\n"
    "-A PCL3-RAW -j DROP\n"
    "COMMIT\n"
    "*nat\n"
    ":PCL3-NAT - [0:0]\n"
    "-I PREROUTING 1 -i pcl3 -j PCL3-NAT\n"
    "-A PCL3-NAT -p tcp -j REDIRECT --to-ports 15001\n"
    "COMMIT\n"
    "*filter\n"
    ":PCL3-IN - [0:0]\n"
    ":PCL3-FWD - [0:0]\n"
    "-I INPUT 1 -i pcl3 -j PCL3-IN\n"
    "-I FORWARD 1 -i pcl3 -j PCL3-FWD\n"
    "-I FORWARD 1 -o pcl3 -j PCL3-FWD\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m conntrack ! --ctstate NEW -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m socket --transparent --nowildcard -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\n"
    "-A PCL3-IN -j DROP\n"
    "-A PCL3-FWD -j DROP\n"
    "COMMIT\n";

static const char golden_v6[] =
    "*raw\n"
    ":PCL3-RAW - [0:0]\n"
    "-I PREROUTING 1 -i pcl3 -j PCL3-RAW\n"
    "-A PCL3-RAW -s fdcc:706f:7274::2/128 -j RETURN\n"
    "-A PCL3-RAW -s fe80::/10 -p ipv6-icmp -j RETURN\n"
    "-A PCL3-RAW -j DROP\n"
    "COMMIT\n"
    "*nat\n"
    ":PCL3-NAT - [0:0]\n"
    "-I PREROUTING 1 -i pcl3 -j PCL3-NAT\n"
    "-A PCL3-NAT -p tcp -j REDIRECT --to-ports 15001\n"
    "COMMIT\n"
    "*filter\n"
    ":PCL3-IN - [0:0]\n"
    ":PCL3-FWD - [0:0]\n"
    "-I INPUT 1 -i pcl3 -j PCL3-IN\n"
    "-I FORWARD 1 -i pcl3 -j PCL3-FWD\n"
    "-I FORWARD 1 -o pcl3 -j PCL3-FWD\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m conntrack ! --ctstate NEW -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m socket --transparent --nowildcard -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\n"
    "-A PCL3-IN -p ipv6-icmp -m icmp6 --icmpv6-type 133 -j ACCEPT\n"
    "-A PCL3-IN -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT\n"
    "-A PCL3-IN -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT\n"
    "-A PCL3-IN -j DROP\n"
    "-A PCL3-FWD -j DROP\n"
    "COMMIT\n";
// clang-format on

static struct rules_sandbox sample(void)
{
    struct rules_sandbox sb = {.index = 3, .host_ifname = "pcl3", .proxy_port = 15001};
    assert_int_equal(net_addr_parse("10.200.0.2", &sb.sandbox_v4), 0);
    assert_int_equal(net_addr_parse("fdcc:706f:7274::2", &sb.sandbox_v6), 0);
    return sb;
}

static void test_golden_v4(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    assert_int_equal(rules_generate(&sb, AF_INET, buf, sizeof(buf)), strlen(golden_v4));
    assert_string_equal(buf, golden_v4);
}

static void test_golden_v6(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    assert_int_equal(rules_generate(&sb, AF_INET6, buf, sizeof(buf)), strlen(golden_v6));
    assert_string_equal(buf, golden_v6);
}

/* The other fields reach the text: port, index, ifname and address. */
static void test_fields_substituted(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    sb.index = 41;
    sb.host_ifname = "veth-x.1";
    sb.proxy_port = 8443;
    assert_int_equal(net_addr_parse("10.200.1.6", &sb.sandbox_v4), 0);
    assert_true(rules_generate(&sb, AF_INET, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "-I PREROUTING 1 -i veth-x.1 -j PCL41-RAW\n"));
    assert_non_null(strstr(buf, "-A PCL41-RAW -s 10.200.1.6/32 -j RETURN\n"));
    assert_non_null(strstr(buf, "-A PCL41-NAT -p tcp -j REDIRECT --to-ports 8443\n"));
    assert_non_null(strstr(buf, "--dport 8443 -m conntrack --ctstate DNAT -m socket --transparent "
                                "--nowildcard -j ACCEPT\n"));
    assert_null(strstr(buf, "PCL3-"));
    assert_null(strstr(buf, "15001"));
}

/* Every chain name, at the largest index, fits iptables' 28 characters. */
static void test_chain_name_length(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    int chains = 0;
    (void)state;

    sb.index = UINT_MAX;
    for (int f = 0; f < 2; f++) {
        assert_true(rules_generate(&sb, f ? AF_INET6 : AF_INET, buf, sizeof(buf)) > 0);
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            if (line[0] != ':')
                continue;
            size_t n = strcspn(line + 1, " ");
            assert_true(n <= 28);
            assert_memory_equal(line + 1, "PCL4294967295-", 14);
            chains++;
        }
    }
    assert_int_equal(chains, 8);
}

static void test_invalid(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    assert_int_equal(rules_generate(NULL, AF_INET, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(rules_generate(&sb, AF_INET, NULL, 10), -EINVAL);
    assert_int_equal(rules_generate(&sb, AF_UNSPEC, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(rules_generate(&sb, AF_UNIX, buf, sizeof(buf)), -EINVAL);

    static const char *const bad_names[] = {
        NULL,    "",           "0123456789abcdef" /* 16 > IFNAMSIZ-1 */,
        "pcl 3", "pcl3\n-A X", "pcl+",
        "!pcl3", "a/b",        ".",
        "..",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
        sb.host_ifname = bad_names[i];
        assert_int_equal(rules_generate(&sb, AF_INET, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(rules_generate(&sb, AF_INET6, buf, sizeof(buf)), -EINVAL);
    }
    sb.host_ifname = "0123456789abcde"; /* exactly 15 is fine */
    assert_true(rules_generate(&sb, AF_INET, buf, sizeof(buf)) > 0);

    sb = sample();
    sb.proxy_port = 0;
    assert_int_equal(rules_generate(&sb, AF_INET, buf, sizeof(buf)), -EINVAL);

    /* the address of the family asked for must be there and of that family */
    sb = sample();
    memset(&sb.sandbox_v6, 0, sizeof(sb.sandbox_v6));
    assert_true(rules_generate(&sb, AF_INET, buf, sizeof(buf)) > 0);
    assert_int_equal(rules_generate(&sb, AF_INET6, buf, sizeof(buf)), -EINVAL);
    sb = sample();
    memset(&sb.sandbox_v4, 0, sizeof(sb.sandbox_v4));
    assert_int_equal(rules_generate(&sb, AF_INET, buf, sizeof(buf)), -EINVAL);
    assert_true(rules_generate(&sb, AF_INET6, buf, sizeof(buf)) > 0);
    sb = sample();
    sb.sandbox_v4 = sb.sandbox_v6;
    assert_int_equal(rules_generate(&sb, AF_INET, buf, sizeof(buf)), -EINVAL);
}

static void test_truncation(void **state)
{
    struct rules_sandbox sb = sample();
    int n = (int)strlen(golden_v6);
    char buf[4096];
    (void)state;

    /* size query */
    assert_int_equal(rules_generate(&sb, AF_INET6, NULL, 0), n);

    /* too small: full length returned, a NUL-terminated prefix written */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(rules_generate(&sb, AF_INET6, buf, 10), n);
    assert_int_equal(buf[9], '\0');
    assert_memory_equal(buf, golden_v6, 9);
    assert_int_equal(buf[10], 'x');

    /* one short of the terminator is still truncation (n >= len) */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(rules_generate(&sb, AF_INET6, buf, (size_t)n), n);
    assert_int_equal(strlen(buf), n - 1);
    assert_memory_equal(buf, golden_v6, (size_t)n - 1);

    /* exactly enough */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(rules_generate(&sb, AF_INET6, buf, (size_t)n + 1), n);
    assert_string_equal(buf, golden_v6);

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(rules_generate(&sb, AF_INET6, buf, 1), n);
    assert_int_equal(buf[0], '\0');
}

/* What iptables-save prints with the sandbox applied next to a foreign rule. */
// clang-format off
static const char saved_full[] =
    "# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024\n"
    "*raw\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":PCL3-RAW - [0:0]\n"
    "-A PREROUTING -i pcl3 -j PCL3-RAW\n"
    "-A PREROUTING -i eth0 -j ACCEPT\n"
    "-A PCL3-RAW -s 10.200.0.2/32 -j RETURN\n"
    "-A PCL3-RAW -j DROP\n"
    "COMMIT\n"
    "# Completed on Mon Jan  1 00:00:00 2024\n"
    "*filter\n"
    ":INPUT ACCEPT [10:400]\n"
    ":FORWARD ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":PCL3-FWD - [0:0]\n"
    ":PCL3-IN - [0:0]\n"
    ":PCL31-IN - [0:0]\n"
    "-A INPUT -i pcl3 -j PCL3-IN\n"
    "-A INPUT -i pcl31 -j PCL31-IN\n"
    "-A FORWARD -o pcl3 -j PCL3-FWD\n"
    "-A FORWARD -i pcl3 -j PCL3-FWD\n"
    "-A PCL3-FWD -j DROP\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m conntrack ! --ctstate NEW -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -m socket --transparent --nowildcard -j ACCEPT\n"
    "-A PCL3-IN -p tcp -m tcp --dport 15001 -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\n"
    "-A PCL3-IN -j DROP\n"
    "-A PCL31-IN -j DROP\n"
    "COMMIT\n"
    "*nat\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":PCL3-NAT - [0:0]\n"
    "-A PREROUTING -i pcl3 -j PCL3-NAT\n"
    "-A PCL3-NAT -p tcp -j REDIRECT --to-ports 15001\n"
    "COMMIT\n";
// clang-format on

static const char removal_full[] = "*raw\n"
                                   "-D PREROUTING -i pcl3 -j PCL3-RAW\n"
                                   "-F PCL3-RAW\n"
                                   "-X PCL3-RAW\n"
                                   "COMMIT\n"
                                   "*filter\n"
                                   "-D INPUT -i pcl3 -j PCL3-IN\n"
                                   "-D FORWARD -o pcl3 -j PCL3-FWD\n"
                                   "-D FORWARD -i pcl3 -j PCL3-FWD\n"
                                   "-F PCL3-IN\n"
                                   "-F PCL3-FWD\n"
                                   "-X PCL3-IN\n"
                                   "-X PCL3-FWD\n"
                                   "COMMIT\n"
                                   "*nat\n"
                                   "-D PREROUTING -i pcl3 -j PCL3-NAT\n"
                                   "-F PCL3-NAT\n"
                                   "-X PCL3-NAT\n"
                                   "COMMIT\n";

static void test_removal_full(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    assert_int_equal(rules_generate_removal(&sb, saved_full, buf, sizeof(buf)),
                     strlen(removal_full));
    assert_string_equal(buf, removal_full);

    /* the neighbour PCL31 is left alone, and is removed on its own */
    sb.index = 31;
    assert_true(rules_generate_removal(&sb, saved_full, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "*filter\n"
                             "-D INPUT -i pcl31 -j PCL31-IN\n"
                             "-F PCL31-IN\n"
                             "-X PCL31-IN\n"
                             "COMMIT\n");
}

/* A crash half way: a chain without its jump, duplicated jumps, a jump with a
 * quoted comment naming the chain, and no trailing newline. */
static void test_removal_partial(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[4096];
    (void)state;

    static const char saved[] =
        "*raw\n"
        ":PREROUTING ACCEPT [0:0]\n"
        ":PCL3-RAW - [0:0]\n"
        "-A PREROUTING -i pcl3 -j PCL3-RAW\n"
        "-A PREROUTING -i pcl3 -j PCL3-RAW\n"
        "COMMIT\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n"
        ":PCL3-IN - [0:0]\n"
        "-A INPUT -m comment --comment \"not -j PCL3-FWD \\\" -j PCL3-NAT\" -j PCL3-IN\n"
        "-A INPUT -m comment --comment \"mentions -j PCL3-IN only\" -j ACCEPT\n"
        "COMMIT\n"
        "*nat\n"
        ":PCL3-NAT - [0:0]\n"
        "COMMIT";
    static const char want[] =
        "*raw\n"
        "-D PREROUTING -i pcl3 -j PCL3-RAW\n"
        "-D PREROUTING -i pcl3 -j PCL3-RAW\n"
        "-F PCL3-RAW\n"
        "-X PCL3-RAW\n"
        "COMMIT\n"
        "*filter\n"
        "-D INPUT -m comment --comment \"not -j PCL3-FWD \\\" -j PCL3-NAT\" -j PCL3-IN\n"
        "-F PCL3-IN\n"
        "-X PCL3-IN\n"
        "COMMIT\n"
        "*nat\n"
        "-F PCL3-NAT\n"
        "-X PCL3-NAT\n"
        "COMMIT\n";

    assert_int_equal(rules_generate_removal(&sb, saved, buf, sizeof(buf)), strlen(want));
    assert_string_equal(buf, want);
}

static void test_removal_nothing(void **state)
{
    struct rules_sandbox sb = sample();
    char buf[64];
    (void)state;

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(rules_generate_removal(&sb, "", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(rules_generate_removal(&sb,
                                            "*filter\n:INPUT ACCEPT [0:0]\n"
                                            "-A INPUT -i pcl3 -j ACCEPT\nCOMMIT\n",
                                            buf, sizeof(buf)),
                     0);
    assert_int_equal(rules_generate_removal(&sb, "", NULL, 0), 0);
    assert_int_equal(rules_generate_removal(NULL, "", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(rules_generate_removal(&sb, NULL, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(rules_generate_removal(&sb, "", NULL, 1), -EINVAL);

    /* truncation like rules_generate */
    int n = (int)strlen(removal_full);
    assert_int_equal(rules_generate_removal(&sb, saved_full, NULL, 0), n);
    assert_int_equal(rules_generate_removal(&sb, saved_full, buf, sizeof(buf)), n);
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    assert_memory_equal(buf, removal_full, sizeof(buf) - 1);
}

/* What rules_generate applies is exactly what the removal takes away: feed
 * the generated text, rewritten the way iptables-save lists it, back in. */
static void test_removal_covers_generated(void **state)
{
    struct rules_sandbox sb = sample();
    char gen[4096], saved[4096], rem[4096];
    int jumps = 0, chains = 0;
    (void)state;

    assert_true(rules_generate(&sb, AF_INET6, gen, sizeof(gen)) > 0);
    saved[0] = '\0';
    for (char *line = strtok(gen, "\n"); line; line = strtok(NULL, "\n")) {
        char tmp[256];
        if (strncmp(line, "-I ", 3) == 0) {
            /* "-I CHAIN 1 rest" -> "-A CHAIN rest" */
            char chain[32];
            int off = 0;
            assert_int_equal(sscanf(line, "-I %31s 1 %n", chain, &off), 1);
            snprintf(tmp, sizeof(tmp), "-A %s %s\n", chain, line + off);
            jumps++;
        } else {
            snprintf(tmp, sizeof(tmp), "%s\n", line);
            chains += line[0] == ':';
        }
        strcat(saved, tmp);
    }
    assert_true(rules_generate_removal(&sb, saved, rem, sizeof(rem)) > 0);
    int dels = 0, xs = 0;
    for (char *line = strtok(rem, "\n"); line; line = strtok(NULL, "\n")) {
        dels += strncmp(line, "-D ", 3) == 0;
        xs += strncmp(line, "-X ", 3) == 0;
    }
    assert_int_equal(jumps, 5);
    assert_int_equal(dels, jumps);
    assert_int_equal(xs, chains);
    assert_int_equal(chains, 4);
}

/* ---- nf_tables registry ---- */

static void test_nft_registry_roundtrip(void **state)
{
    char buf[128];
    (void)state;

    for (unsigned mask = 0; mask <= RULES_NFT_ALL; mask++) {
        int n = rules_nft_registry_format(mask, buf, sizeof(buf));
        assert_true(n >= 0 && (size_t)n < sizeof(buf));
        assert_int_equal(rules_nft_registry_parse(buf), mask);
    }
    assert_int_equal(rules_nft_registry_format(RULES_NFT_ALL, buf, sizeof(buf)), 51);
    assert_string_equal(buf, "ip raw\nip nat\nip filter\nip6 raw\nip6 nat\nip6 filter\n");
    assert_int_equal(rules_nft_registry_format(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void test_nft_registry_format_truncation(void **state)
{
    char buf[8];
    (void)state;

    /* snprintf semantics: the full length, a terminated prefix */
    assert_int_equal(rules_nft_registry_format((1u << 2) | (1u << 5), buf, sizeof(buf)), 21);
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    assert_int_equal(rules_nft_registry_format(RULES_NFT_ALL, NULL, 0), 51);
    assert_int_equal(rules_nft_registry_format(1, NULL, 4), -EINVAL);
}

static void test_nft_registry_parse_lenient(void **state)
{
    (void)state;

    assert_int_equal(rules_nft_registry_parse(NULL), 0);
    assert_int_equal(rules_nft_registry_parse(""), 0);
    /* no final newline, blank lines, duplicates */
    assert_int_equal(rules_nft_registry_parse("\nip6 nat\n\nip6 nat\nip raw"), (1u << 4) | 1u);
    /* near misses never select a table */
    assert_int_equal(rules_nft_registry_parse("ip  raw\n ip nat\nip filter \ninet filter\n"
                                              "ip mangle\nip6 nat2\nIP RAW\nip\nraw\n"),
                     0);
    assert_string_equal(rules_nft_table_label(0), "ip raw");
    assert_string_equal(rules_nft_table_label(5), "ip6 filter");
    assert_null(rules_nft_table_label(6));
}

/* ---- nf_tables message classification ---- */

static union {
    char buf[4096];
    struct nlmsghdr align;
} msgbuf;

static struct nlmsghdr *nft_msg(uint8_t type, uint8_t family, const char *table)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(msgbuf.buf);
    struct nfgenmsg *nfg;

    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | type;
    nlh->nlmsg_flags = NLM_F_MULTI;
    nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    if (table)
        mnl_attr_put_strz(nlh, 1, table); /* NFTA_*_TABLE */
    return nlh;
}

struct chain_spec {
    const char *name;
    int hook; /* -1: not a base chain */
    int32_t prio;
    const char *type;
    uint32_t policy;
    uint32_t flags;
    const char *dev;
};

static struct nlmsghdr *chain_msg(uint8_t family, const char *table, const struct chain_spec *c)
{
    struct nlmsghdr *nlh = nft_msg(NFT_MSG_NEWCHAIN, family, table);

    mnl_attr_put_strz(nlh, NFTA_CHAIN_NAME, c->name);
    mnl_attr_put_u64(nlh, NFTA_CHAIN_HANDLE, htobe64(7));
    if (c->hook >= 0) {
        struct nlattr *nest = mnl_attr_nest_start(nlh, NFTA_CHAIN_HOOK);
        mnl_attr_put_u32(nlh, NFTA_HOOK_HOOKNUM, htonl((uint32_t)c->hook));
        mnl_attr_put_u32(nlh, NFTA_HOOK_PRIORITY, htonl((uint32_t)c->prio));
        if (c->dev)
            mnl_attr_put_strz(nlh, NFTA_HOOK_DEV, c->dev);
        mnl_attr_nest_end(nlh, nest);
        mnl_attr_put_u32(nlh, NFTA_CHAIN_POLICY, htonl(c->policy));
        mnl_attr_put_strz(nlh, NFTA_CHAIN_TYPE, c->type);
    }
    mnl_attr_put_u32(nlh, NFTA_CHAIN_USE, htonl(0));
    mnl_attr_put_u32(nlh, NFTA_CHAIN_FLAGS, htonl(c->flags));
    return nlh;
}

static void test_nft_classify_tables(void **state)
{
    struct nlmsghdr *nlh;
    bool foreign;
    (void)state;

    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV4, "raw");
    mnl_attr_put_u32(nlh, NFTA_TABLE_FLAGS, htonl(0));
    mnl_attr_put_u32(nlh, NFTA_TABLE_USE, htonl(2));
    assert_int_equal(rules_nft_classify(nlh, &foreign), 0);
    assert_false(foreign);

    /* no flags attribute at all (older kernels) */
    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV6, "filter");
    assert_int_equal(rules_nft_classify(nlh, &foreign), 5);
    assert_false(foreign);

    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV6, "nat");
    mnl_attr_put_u32(nlh, NFTA_TABLE_FLAGS, htonl(NFT_TABLE_F_DORMANT));
    assert_int_equal(rules_nft_classify(nlh, &foreign), 4);
    assert_true(foreign);

    /* other tables and families are not ours to judge */
    assert_int_equal(
        rules_nft_classify(nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV4, "mangle"), &foreign), -1);
    assert_int_equal(
        rules_nft_classify(nft_msg(NFT_MSG_NEWTABLE, NFPROTO_INET, "filter"), &foreign), -1);
    assert_int_equal(rules_nft_classify(nft_msg(NFT_MSG_NEWTABLE, NFPROTO_ARP, "filter"), &foreign),
                     -1);
    assert_int_equal(
        rules_nft_classify(nft_msg(NFT_MSG_NEWTABLE, NFPROTO_BRIDGE, "filter"), &foreign), -1);
}

static void test_nft_classify_builtin_chains(void **state)
{
    static const struct {
        const char *table;
        int idx;
        struct chain_spec c;
    } ok[] = {
        {"raw", 0, {"PREROUTING", NF_INET_PRE_ROUTING, -300, "filter", NF_ACCEPT, 1, NULL}},
        {"raw", 0, {"OUTPUT", NF_INET_LOCAL_OUT, -300, "filter", NF_ACCEPT, 1, NULL}},
        {"nat", 1, {"PREROUTING", NF_INET_PRE_ROUTING, -100, "nat", NF_ACCEPT, 1, NULL}},
        {"nat", 1, {"INPUT", NF_INET_LOCAL_IN, 100, "nat", NF_ACCEPT, 1, NULL}},
        {"nat", 1, {"OUTPUT", NF_INET_LOCAL_OUT, -100, "nat", NF_ACCEPT, 1, NULL}},
        {"nat", 1, {"POSTROUTING", NF_INET_POST_ROUTING, 100, "nat", NF_ACCEPT, 1, NULL}},
        {"filter", 2, {"INPUT", NF_INET_LOCAL_IN, 0, "filter", NF_ACCEPT, 1, NULL}},
        {"filter", 2, {"FORWARD", NF_INET_FORWARD, 0, "filter", NF_ACCEPT, 1, NULL}},
        {"filter", 2, {"OUTPUT", NF_INET_LOCAL_OUT, 0, "filter", NF_ACCEPT, 1, NULL}},
    };
    bool foreign;
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        assert_int_equal(
            rules_nft_classify(chain_msg(NFPROTO_IPV4, ok[i].table, &ok[i].c), &foreign),
            ok[i].idx);
        assert_false(foreign);
        assert_int_equal(
            rules_nft_classify(chain_msg(NFPROTO_IPV6, ok[i].table, &ok[i].c), &foreign),
            ok[i].idx + 3);
        assert_false(foreign);
    }
}

static void test_nft_classify_foreign_chains(void **state)
{
    static const struct {
        const char *table;
        struct chain_spec c;
    } bad[] = {
        /* a policy other than ACCEPT is a host decision */
        {"filter", {"INPUT", NF_INET_LOCAL_IN, 0, "filter", NF_DROP, 1, NULL}},
        /* a regular chain, ours or anybody's */
        {"filter", {"PCL3-IN", -1, 0, NULL, 0, 0, NULL}},
        {"nat", {"FOREIGN", -1, 0, NULL, 0, 0, NULL}},
        /* not a builtin of this table */
        {"filter", {"PREROUTING", NF_INET_PRE_ROUTING, 0, "filter", NF_ACCEPT, 1, NULL}},
        {"raw", {"INPUT", NF_INET_LOCAL_IN, -300, "filter", NF_ACCEPT, 1, NULL}},
        /* right name, made by someone else: wrong hook, priority, type, flags */
        {"nat", {"INPUT", NF_INET_LOCAL_OUT, 100, "nat", NF_ACCEPT, 1, NULL}},
        {"nat", {"PREROUTING", NF_INET_PRE_ROUTING, -101, "nat", NF_ACCEPT, 1, NULL}},
        {"raw", {"PREROUTING", NF_INET_PRE_ROUTING, -300, "nat", NF_ACCEPT, 1, NULL}},
        {"filter", {"INPUT", NF_INET_LOCAL_IN, 0, "route", NF_ACCEPT, 1, NULL}},
        {"filter", {"OUTPUT", NF_INET_LOCAL_OUT, 0, "filter", NF_ACCEPT, 3, NULL}},
        {"filter", {"FORWARD", NF_INET_FORWARD, 0, "filter", NF_ACCEPT, 1, "eth0"}},
        /* iptables names are case sensitive */
        {"filter", {"input", NF_INET_LOCAL_IN, 0, "filter", NF_ACCEPT, 1, NULL}},
    };
    bool foreign;
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        foreign = false;
        assert_int_equal(
            rules_nft_classify(chain_msg(NFPROTO_IPV4, bad[i].table, &bad[i].c), &foreign),
            bad[i].table[0] == 'r'   ? 0
            : bad[i].table[0] == 'n' ? 1
                                     : 2);
        assert_true(foreign);
    }
}

static void test_nft_classify_other_objects(void **state)
{
    static const uint8_t types[] = {NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWOBJ,
                                    NFT_MSG_NEWFLOWTABLE};
    bool foreign;
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
        foreign = false;
        assert_int_equal(rules_nft_classify(nft_msg(types[i], NFPROTO_IPV6, "raw"), &foreign), 3);
        assert_true(foreign);
        assert_int_equal(rules_nft_classify(nft_msg(types[i], NFPROTO_IPV4, "security"), &foreign),
                         -1);
    }
}

static void test_nft_classify_malformed(void **state)
{
    struct nlmsghdr *nlh;
    bool foreign;
    (void)state;

    /* no table name */
    assert_int_equal(rules_nft_classify(nft_msg(NFT_MSG_NEWCHAIN, NFPROTO_IPV4, NULL), &foreign),
                     -EINVAL);
    /* a table name without its NUL */
    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV4, NULL);
    mnl_attr_put(nlh, NFTA_TABLE_NAME, 3, "raw");
    assert_int_equal(rules_nft_classify(nlh, &foreign), -EINVAL);
    /* another netlink subsystem */
    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV4, "raw");
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | 0;
    assert_int_equal(rules_nft_classify(nlh, &foreign), -EINVAL);
    /* too short for the nfgenmsg */
    nlh = mnl_nlmsg_put_header(msgbuf.buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
    assert_int_equal(rules_nft_classify(nlh, &foreign), -EINVAL);
    /* the table name cut off by the message end */
    nlh = nft_msg(NFT_MSG_NEWTABLE, NFPROTO_IPV4, "raw");
    nlh->nlmsg_len -= 4;
    assert_int_equal(rules_nft_classify(nlh, &foreign), -EINVAL);
    assert_true(foreign);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_v4),
        cmocka_unit_test(test_golden_v6),
        cmocka_unit_test(test_fields_substituted),
        cmocka_unit_test(test_chain_name_length),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_removal_full),
        cmocka_unit_test(test_removal_partial),
        cmocka_unit_test(test_removal_nothing),
        cmocka_unit_test(test_removal_covers_generated),
        cmocka_unit_test(test_nft_registry_roundtrip),
        cmocka_unit_test(test_nft_registry_format_truncation),
        cmocka_unit_test(test_nft_registry_parse_lenient),
        cmocka_unit_test(test_nft_classify_tables),
        cmocka_unit_test(test_nft_classify_builtin_chains),
        cmocka_unit_test(test_nft_classify_foreign_chains),
        cmocka_unit_test(test_nft_classify_other_objects),
        cmocka_unit_test(test_nft_classify_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
