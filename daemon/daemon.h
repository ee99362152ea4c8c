/*
 * Internal interfaces of portcullisd (not a library: one binary's parts).
 *
 *  registry.c  sandboxes loaded from the on-disk registry, policy reloads
 *  resolver.c  bounded, short-lived cache of policy host resolutions
 *  flow.c      accept, original destination, decision, hand-off to the relay
 */
#ifndef PCL_DAEMON_H
#define PCL_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "policy.h"
#include "relay.h"
#include "sandbox.h"
#include "util.h"

struct daemon_config {
    uint16_t port;
    bool private_mode;       /* exit when no sandbox is left */
    const char *upstream_ca; /* used by TLS inspection (later); checked readable */
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms;
    size_t max_flows_per_sandbox;
    bool no_splice;
    bool no_ident;
};

extern struct daemon_config daemon_cfg;
extern uv_loop_t *daemon_loop;
extern bool daemon_stopping; /* SIGTERM seen: new flows are denied */

/* ---- registry ---- */

/* A loaded policy with the flows that still use it (inspected flows keep
 * pointers into it across a SIGHUP reload). */
struct policy_ref {
    struct policy *policy;
    unsigned refs;
};
struct policy_ref *policy_ref_get(struct policy_ref *r);
void policy_ref_put(struct policy_ref *r);

struct sandbox {
    struct sandbox_record rec;
    struct policy *policy;         /* NULL: the policy failed to load; deny everything */
    struct policy_ref *policy_ref; /* owns policy */
    uint64_t conf_mtime_ns;        /* of sandbox.conf, to notice a re-created sandbox */
    /* Process lookup in the sandbox's namespace; NULL: none (or --no-ident).
     * Set by the registry from /run/netns, or by flow.c's lookup batches
     * once they find the namespace through the sandbox's processes (then
     * again at ident_retry_ms at the earliest after a search found none). */
    struct ident_ctx *ident;
    uint64_t ident_retry_ms;
    bool ident_search_reported;
    size_t n_flows;      /* relaying or pending, against max_flows_per_sandbox */
    size_t n_pending;    /* deciding or being identified */
    size_t n_http_flows; /* inspected flows (each holds its buffers) */
    /* Verifies upstream servers for terminated TLS (made on first use); see
     * http_flow.c.  tls_client_failed: making it failed, say so once. */
    struct tls_client *tls_client;
    bool tls_client_failed;
    unsigned refs;
    bool removed;
    bool seen;
    struct sandbox *next;
};

int registry_init(void);
void registry_shutdown(void);
/* An fd of sb's namespace found through the run that holds it or a process
 * in it (for a sandbox made in a mount namespace we cannot see), or -errno.
 * Walks /proc: off the loop when it can wait. */
int registry_netns_find(const struct sandbox *sb);
/* Rescan the state directory: add new sandboxes, drop removed ones. */
void registry_rescan(void);
/* Reload every sandbox's policy (SIGHUP); an invalid one keeps the old. */
void registry_reload_policies(void);
/* The sandbox whose address is src (ref taken), or NULL. */
struct sandbox *registry_find_by_addr(const struct net_addr *src);
struct sandbox *sandbox_ref(struct sandbox *sb);
void sandbox_unref(struct sandbox *sb);
size_t registry_count(void);
const struct policy_env *registry_policy_env(void);
/* Refresh the host's own addresses (always blocked). */
void registry_refresh_host_addrs(void);

/* ---- resolver ---- */

typedef void (*resolver_done_fn)(void *data);

int resolver_init(void);
void resolver_shutdown(void);
/* policy_lookup_fn over the cache. */
enum policy_lookup resolver_lookup(void *ctx, const char *host, const struct net_addr *addr);
/* Resolve host (if not cached) and call done(data) from the loop when the
 * answer is in the cache. Returns 0 or -errno (done will not be called). */
int resolver_resolve(const char *host, resolver_done_fn done, void *data);
/* Drop a waiter (flow going away). */
void resolver_cancel(void *data);

/* ---- flows ---- */

int flow_listen(void);
void flow_shutdown(void);
size_t flow_count(void);

#endif
