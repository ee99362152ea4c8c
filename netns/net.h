/*
 * net: the kernel objects of a sandbox, over rtnetlink (libmnl) and nsfs.
 *
 * Named network namespaces follow iproute2's convention (/run/netns/NAME, a
 * bind mount of the namespace) so `ip netns` sees them and cleans them the same
 * way.  All functions return 0 or -errno and print nothing; the caller says
 * what failed.
 */
#ifndef PCL_NET_H
#define PCL_NET_H

#include <stdbool.h>

#include "util.h"

#define NETNS_RUN_DIR "/run/netns"

/* Create /run/netns/NAME holding a new network namespace. -EEXIST if present. */
int netns_create(const char *name);

/* Open /run/netns/NAME (O_RDONLY|O_CLOEXEC). Returns fd or -errno. */
int netns_open(const char *name);

/* Unmount and remove /run/netns/NAME; 0 also when it did not exist. */
int netns_delete(const char *name);

/* Enter the namespace (setns CLONE_NEWNET) of fd. */
int netns_enter(int netns_fd);

/* Create a veth pair host_if <-> peer_if with peer_if moved into the namespace
 * peer_netns_fd. */
int link_veth_create(const char *host_if, const char *peer_if, int peer_netns_fd);

/* Delete a link by name in the current namespace; 0 also when absent. */
int link_delete(const char *ifname);

/* Set a link up in the current namespace. */
int link_set_up(const char *ifname);

/* Does the link exist in the current namespace? */
bool link_exists(const char *ifname);

/* Add addr/prefixlen to ifname; IPv6 addresses are added with IFA_F_NODAD so
 * they are usable at once. */
int addr_add(const char *ifname, const struct net_addr *addr, unsigned prefixlen);

/* Add a default route via gw on ifname (family from gw). */
int route_add_default(const char *ifname, const struct net_addr *gw);

/* Write a sysctl under /proc/sys/net (e.g. "ipv6/conf/pcl3/accept_ra", "0"). */
int net_sysctl_write(const char *path, const char *value);

#endif
