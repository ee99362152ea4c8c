/*
 * Internal interfaces of the `portcullis` tool.
 *
 *  main.c       command line, one function per command
 *  lifecycle.c  create / delete a sandbox: registry record, trust store (the
 *               interception CA's certificate), namespace, veth, addresses,
 *               routes, rules, resolv.conf
 *  spawn.c      run a command inside a sandbox (user, capabilities,
 *               no_new_privs), and start a private daemon
 */
#ifndef PCL_TOOL_H
#define PCL_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sandbox.h"

struct tool_create_opts {
    const char *name;
    const char *policy_path;
    const char *upstream_ca;
    bool audit;
    bool ephemeral;
};

/* Create and register a sandbox; on failure everything made is removed and
 * the reason printed. 0 or -errno. */
int tool_create(const struct tool_create_opts *o, struct sandbox_record *ret);

/* Remove every trace of NAME (idempotent). quiet: no message when absent. */
int tool_delete(const char *name, bool quiet);

/* Largest trust bundle (system roots + the interception CA) the tool
 * handles: it is copied into the sandbox's /run, a 16 MiB tmpfs. */
#define TOOL_TRUST_BUNDLE_MAX (4u * 1024 * 1024)
/* The system bundle (Debian's), the roots the sandbox's bundle starts with. */
#define TOOL_SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"
/* Where the trust store appears inside a sandbox. */
#define TOOL_SANDBOX_TRUST_DIR "/run/portcullis"
#define TOOL_SANDBOX_CA_CERT TOOL_SANDBOX_TRUST_DIR "/ca.crt"
#define TOOL_SANDBOX_CA_BUNDLE TOOL_SANDBOX_TRUST_DIR "/ca-bundle.crt"

/* Read a regular file of at most max bytes into a malloc'ed, NUL-terminated
 * buffer (the caller frees *ret).  0, -EFBIG when larger, or -errno. */
int tool_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Write path through path.tmp and rename, with exactly mode (not masked by
 * the umask).  0 or -errno. */
int tool_write_file(const char *path, const void *data, size_t len, mode_t mode);

struct rules_sandbox;
/* The rules' view of a sandbox record. */
void tool_rules_of(const struct sandbox_record *r, struct rules_sandbox *ret);

/* Index the next sandbox would get (for `rules --policy` dry runs). */
int tool_next_index(const struct sandbox_pools *pools, unsigned *ret);

/* Ensure a daemon serves the registry; start a private one if none. Returns 0
 * or -errno (message printed). */
int tool_ensure_daemon(const char *upstream_ca);

/* Is a daemon serving the registry?  *ret_pid gets its pid when known. */
bool tool_daemon_alive(pid_t *ret_pid);

/* Tell the daemon to rescan the registry (SIGUSR1); no-op without a daemon. */
void tool_notify_daemon(void);

/* Wait (bounded) until the daemon acknowledged NAME. 0, -ETIMEDOUT, or
 * -EINVAL when it reported the policy invalid. */
int tool_wait_ack(const char *name, int timeout_ms);

struct tool_exec_opts {
    const char *user; /* NULL: SUDO_USER, else nobody */
    bool allow_root;
    char *const *argv;
};

/* Resolve the target user; prints the reason on failure. */
int tool_resolve_user(const struct tool_exec_opts *o, uid_t *uid, gid_t *gid, char *name,
                      size_t namelen, char *home, size_t homelen);

/* Fork a child that enters the sandbox and execs argv as the user.  Returns
 * its pid, or -errno (the exec error is reported here, with the command). The
 * child starts with sigmask restored to `mask`. */
pid_t tool_spawn(const struct sandbox_record *rec, const struct tool_exec_opts *o,
                 const void *orig_sigmask);

/* Kill every process whose network namespace is the sandbox's: the one at
 * /run/netns/NETNS, or r's recorded one (r may be NULL). */
void tool_kill_sandbox_processes(const char *netns, const struct sandbox_record *r);

#endif
