/*
 * rules: the netfilter rules of one sandbox.
 *
 * rules_generate() is pure: a sandbox description in, iptables-restore text
 * out.  rules_apply()/rules_remove() feed that text to iptables-restore and
 * ip6tables-restore --noflush, so only the sandbox's own chains and the jumps
 * into them are touched; nobody else's rules are flushed.  With the nf_tables
 * backend, tables created by an apply are deleted again with the last
 * sandbox (nftables.c).
 */
#ifndef PCL_RULES_H
#define PCL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct rules_sandbox {
    unsigned index;             /* allocation index; names the chains "PCL<index>..." */
    const char *host_ifname;    /* host side of the veth pair, e.g. "pcl3" */
    struct net_addr sandbox_v4; /* the only source address accepted from the sandbox (v4) */
    struct net_addr sandbox_v6; /* ... and v6 */
    uint16_t proxy_port;        /* portcullisd's transparent listener, 15001 by default */
};

/*
 * Generate the iptables-restore text for family AF_INET or AF_INET6 into buf.
 * Returns the length (snprintf semantics: >= len means truncated) or -EINVAL.
 */
int rules_generate(const struct rules_sandbox *sb, int family, char *buf, size_t len);

/*
 * Generate the iptables-restore text that removes what of the sandbox exists in
 * saved (the output of iptables-save or ip6tables-save): every rule jumping to
 * one of its chains, then the chains.  Works on any partial state; empty text
 * (0) when nothing of the sandbox is in saved.  Only sb->index is used.
 * Returns the length (snprintf semantics) or -EINVAL.
 */
int rules_generate_removal(const struct rules_sandbox *sb, const char *saved, char *buf,
                           size_t len);

/* Apply both families atomically per family. Returns 0 or -errno; on failure
 * nothing of this sandbox stays applied and the reason was printed to stderr.
 * nf_tables tables the apply had to create are listed in RULES_NFT_REGISTRY
 * (see below). */
int rules_apply(const struct rules_sandbox *sb);

/* Remove every rule and chain of the sandbox index/ifname; idempotent (missing
 * rules are not an error). Then delete the listed nf_tables tables that are
 * left as iptables-nft made them, so removing the last sandbox leaves
 * iptables-save as it was before the first. Returns 0 or -errno. */
int rules_remove(const struct rules_sandbox *sb);

/*
 * nf_tables housekeeping (nftables.c), for rules.c and the tests.
 *
 * With iptables-nft, the first apply on a host without tables creates the
 * nf_tables tables ip/ip6 raw, nat and filter.  One bit per such table: bit
 * 3 * family + table, family 0 = ip, 1 = ip6; table 0 = raw, 1 = nat,
 * 2 = filter.  The registry file lists one "FAMILY TABLE" per line; it is
 * one per host (the tables are the host's, whatever PORTCULLIS_STATE_DIR
 * says), locked while in use, and removed once it lists nothing.
 */
#define RULES_NFT_REGISTRY "/run/portcullis-nft-tables"
#define RULES_NFT_NTABLES 6
#define RULES_NFT_ALL ((1u << RULES_NFT_NTABLES) - 1)

/* "ip raw" ... "ip6 filter" for bit i; NULL out of range. */
const char *rules_nft_table_label(unsigned i);

/* Registry text to a mask; unknown lines are ignored (never a reason to
 * delete anything). */
unsigned rules_nft_registry_parse(const char *text);

/* Mask to registry text; snprintf semantics, or -EINVAL. */
int rules_nft_registry_format(unsigned mask, char *buf, size_t len);

/*
 * One nf_tables dump message (NEWTABLE, NEWCHAIN, NEWRULE, NEWSET, NEWOBJ,
 * NEWFLOWTABLE): the bit of the table it belongs to, -1 for any other table or
 * family, -EINVAL when malformed.  *ret_foreign: it is something iptables-nft
 * would not have made on its own, i.e. anything but a table without flags or
 * a builtin base chain (name, hook, priority, type as iptables-nft makes it)
 * with policy ACCEPT.
 */
struct nlmsghdr;
int rules_nft_classify(const struct nlmsghdr *nlh, bool *ret_foreign);

/* flock()ed registry file, created if need be: the fd, or -errno. Held across
 * check-apply-record and check-delete so they never interleave. */
int rules_nft_lock(void);
/* Unlock; an empty registry file is removed. */
void rules_nft_unlock(int fd);
/* Mask of the six tables that exist now. 0 or -errno. */
int rules_nft_existing(unsigned *ret_mask);
/* After an apply: add to the registry those of missing that exist now. */
int rules_nft_record(int lock_fd, unsigned missing);
/* Delete the listed tables holding nothing foreign (in one transaction bound
 * to the ruleset generation seen, so a concurrent change makes us look again)
 * and drop from the registry whatever no longer exists. 0 or -errno. */
int rules_nft_cleanup(int lock_fd);

#endif
