/*
 * ident: which process inside a sandbox owns the client side of a flow.
 *
 * Blocking (netlink sock_diag in the sandbox's network namespace, then /proc);
 * the daemon calls it from the libuv thread pool.  Never trusts anything the
 * sandboxed process can influence beyond what the kernel reports.
 */
#ifndef PCL_IDENT_H
#define PCL_IDENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/*
 * netns_fd: an fd of the sandbox network namespace (open("/run/netns/X")).
 * src/sport: the client's address as the daemon saw it; dst/dport: the original
 * destination.  On success returns 0 and fills *ret_pid and ret_exe (the
 * /proc/PID/exe target, truncated to exe_len).  -ENOENT when no process holds
 * the socket (it exited), other -errno on failure.
 */
int ident_lookup(int netns_fd, const struct net_addr *src, uint16_t sport,
                 const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                 size_t exe_len);

#endif
