/*
 * sandbox: the on-disk registry shared by the tool and the daemon.
 *
 * The tool (portcullis) writes one directory per sandbox under
 * STATE_DIR/sandboxes/NAME/ (root-only, 0700): `policy.yaml` (a copy of the
 * user's policy, so a sandboxed process can never write what the daemon
 * reads) and `sandbox.conf` (key=value, written last and atomically).  The
 * daemon watches that directory, loads what it finds, and acknowledges each
 * sandbox by writing `ack`.  Because the registry is on disk, a restarted
 * daemon finds every sandbox again.
 */
#ifndef PCL_SANDBOX_H
#define PCL_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

#define SANDBOX_NAME_MAX 32
#define SANDBOX_DEFAULT_STATE_DIR "/run/portcullis"
#define SANDBOX_DEFAULT_CONFIG "/etc/portcullis/portcullis.conf"
#define SANDBOX_DEFAULT_PROXY_PORT 15001
#define SANDBOX_NETNS_PREFIX "portcullis-"
#define SANDBOX_IF_PREFIX "pcl"

struct sandbox_record {
    char name[SANDBOX_NAME_MAX + 1];
    unsigned index;
    char host_ifname[16];
    char netns[SANDBOX_NAME_MAX + 16]; /* name under /run/netns */
    /* The namespace's identity (its nsfs device and inode), 0 when unknown:
     * the daemon checks /run/netns/NAME against it, and finds the namespace
     * through its processes when the tool made it in a mount namespace whose
     * /run/netns mount the daemon cannot see. */
    uint64_t netns_dev, netns_ino;
    struct net_addr host_v4, sandbox_v4;
    struct net_addr host_v6, sandbox_v6;
    unsigned prefix_v4, prefix_v6; /* 30 and 64 */
    bool audit;
    bool ephemeral; /* made by `portcullis run`, removed when it ends */
    /* Set up to the end (link, addresses, rules): a record is written before
     * that, so that `delete` finds an interrupted setup; nothing may run in
     * a sandbox until this is set.  Absent from a record of an older tool:
     * complete. */
    bool complete;
    pid_t owner_pid;      /* the `run` process owning an ephemeral sandbox */
    uint64_t owner_start; /* its start time (/proc/PID/stat field 22), against pid reuse */
    uint16_t proxy_port;
    char policy_source[1024]; /* the file the user gave, for SIGHUP reload */
    uint64_t created_usec;    /* CLOCK_REALTIME */
};

struct sandbox_pools {
    struct net_prefix v4; /* default 10.200.0.0/16 */
    struct net_prefix v6; /* default fdcc:706f:7274::/48 */
};

/* State directory: $PORTCULLIS_STATE_DIR or /run/portcullis. */
const char *sandbox_state_dir(void);

/* Pools from $PORTCULLIS_CONFIG or /etc/portcullis/portcullis.conf (keys pool4=,
 * pool6=), defaults when absent.  Returns 0, or -EINVAL with a message in err. */
int sandbox_pools_load(struct sandbox_pools *ret, char *err, size_t errlen);

/* [A-Za-z0-9][A-Za-z0-9_.-]{0,31} */
bool sandbox_name_valid(const char *name);

/* Fill index-derived fields (ifname, netns, addresses) from the pools.
 * -ERANGE when the index is outside the pools. */
int sandbox_record_assign(struct sandbox_record *r, const char *name, unsigned index,
                          const struct sandbox_pools *pools);

/* Largest usable index + 1 for the pools. */
unsigned sandbox_pools_capacity(const struct sandbox_pools *pools);

/* Path helpers: STATE_DIR/sandboxes/NAME[/file]. Return buf. */
const char *sandbox_path(const char *name, const char *file, char *buf, size_t len);

/* Write/read sandbox.conf (atomic write via rename). 0 or -errno (-EINVAL: malformed). */
int sandbox_record_write(const struct sandbox_record *r);
int sandbox_record_read(const char *name, struct sandbox_record *ret);

/* The text form (key=value lines), for tests. */
/* Whether s can be a value of a record's "key=value" line: no newline, no
 * other control character (it would add keys of its own). */
bool sandbox_record_value_ok(const char *s);
int sandbox_record_format(const struct sandbox_record *r, char *buf, size_t len);
int sandbox_record_parse(const char *text, struct sandbox_record *ret);

/* List sandbox names in the registry. Calls fn for each; returns count or -errno. */
int sandbox_list(void (*fn)(void *ctx, const char *name), void *ctx);

/* Is the owner of an ephemeral record still alive (same pid and start time)? */
bool sandbox_owner_alive(const struct sandbox_record *r);

/* Start time of a process (field 22 of /proc/PID/stat), 0 if gone. */
uint64_t sandbox_proc_start_time(pid_t pid);

#endif
