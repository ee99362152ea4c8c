/*
 * ident: which process inside a sandbox owns the client side of a flow.
 *
 * Blocking (netlink sock_diag in the sandbox's network namespace, then /proc);
 * the daemon calls it from the libuv thread pool.  Never trusts anything the
 * sandboxed process can influence beyond what the kernel reports.
 *
 * One context per sandbox namespace: it holds the sock_diag socket made inside
 * the namespace and a bounded cache of the processes of that namespace and of
 * the sockets seen in their fd tables, so a lookup usually costs one netlink
 * round trip and a few /proc reads instead of a thread and a walk of /proc.
 */
#ifndef PCL_IDENT_H
#define PCL_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct ident_ctx;

/*
 * netns_fd: an fd of the sandbox network namespace (open("/run/netns/X")),
 * borrowed: the caller still owns and closes it.  Returns a new context, or
 * NULL with errno set (EBADF, EINVAL when netns_fd is not a network namespace,
 * ENOMEM, ...).  The context's socket keeps the namespace alive until
 * ident_ctx_free().
 */
struct ident_ctx *ident_ctx_new(int netns_fd);

/*
 * An fd (O_CLOEXEC) of the network namespace whose nsfs identity is dev/ino,
 * checked after opening, or -ENOENT when none is found: among the open files
 * of holder (when > 0; the tool holds its sandbox's namespace open), then
 * through any process in it (/proc/PID/ns/net, a walk of /proc).  For a
 * sandbox whose /run/netns/NAME mount lives in a mount namespace the caller
 * cannot see.
 */
int ident_netns_find(uint64_t dev, uint64_t ino, pid_t holder);

/* fd is the namespace (or any file) whose identity is dev/ino. */
bool ident_netns_is(int fd, uint64_t dev, uint64_t ino);

/* Frees ctx (NULL is fine); no lookup on it may be running.  Returns NULL. */
struct ident_ctx *ident_ctx_free(struct ident_ctx *ctx);

/*
 * src/sport: the client's address as the daemon saw it; dst/dport: the original
 * destination.  Safe to call from several threads at once on the same ctx.
 * On success returns 0 and fills *ret_pid and ret_exe (the /proc/PID/exe
 * target, truncated to exe_len).  -ENOENT when no process of the namespace
 * holds the socket (it exited), other -errno on failure.
 */
int ident_lookup(struct ident_ctx *ctx, const struct net_addr *src, uint16_t sport,
                 const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                 size_t exe_len);

/*
 * As ident_lookup(), within a few system calls and no walk of /proc, so that
 * it may run on an event loop: the netlink query, then the cache of sockets
 * seen and the fds where the most recently identified processes held sockets
 * before (a process that keeps connecting reuses the numbers of the sockets
 * it closed).  It never waits for the kernel's netlink reply either.  -EAGAIN
 * when that does not find the holder: ident_lookup() will, listing fd tables
 * and walking /proc as needed.
 */
int ident_lookup_quick(struct ident_ctx *ctx, const struct net_addr *src, uint16_t sport,
                       const struct net_addr *dst, uint16_t dport, pid_t *ret_pid, char *ret_exe,
                       size_t exe_len);

#endif
