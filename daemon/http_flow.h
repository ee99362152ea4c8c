/*
 * http_flow: an inspected flow (`protocol: rest`) — see http_flow.c.
 * Part of portcullisd, not a library.
 */
#ifndef PCL_HTTP_FLOW_H
#define PCL_HTTP_FLOW_H

#include <sys/types.h>

#include "daemon.h"

struct http_flow;

/* Inspected flows hold about 256 KiB of buffers each: bound them per
 * sandbox so one sandbox cannot make the daemon allocate without limit. */
#define HTTP_FLOW_MAX_PER_SANDBOX 1024

struct http_flow_params {
    int client_fd; /* accepted and non-blocking; owned by the flow on success */
    struct sandbox *sb;
    struct policy_ref *pol;           /* the policy ep belongs to (a reference is taken) */
    const struct policy_endpoint *ep; /* the inspected endpoint the flow matched */
    const char *policy_name;          /* copied */
    const char *endpoint_host;        /* copied; NULL for an address-only endpoint */
    struct net_addr dst;
    uint16_t dport;
    bool audit; /* the sandbox's --audit */
    /* Terminate TLS on both legs: the client gets a leaf for tls_name from
     * the CA, the upstream must prove it is tls_name (NULL: the destination
     * address is the name). */
    bool tls;
    const char *tls_name;
    bool raw; /* relay the bytes without HTTP inspection (tls: terminate only) */
};

/* Load (or create) the interception CA for terminated TLS.  Without it
 * (a failure is logged), TLS flows that need terminating are refused. */
int http_flow_tls_init(void);
void http_flow_tls_shutdown(void);

/* Connect upstream (with TLS: verify it, then answer the client's
 * handshake) and start inspecting.  -ENOTSUP: TLS is needed and the CA
 * could not be loaded.  On success the flow owns the
 * client fd, holds a sandbox reference, takes over one count of
 * sb->n_flows (the caller's) and frees everything itself; *ret (may be NULL)
 * is valid until the flow ends.  On failure (-errno) the caller still owns
 * client_fd and its count. */
int http_flow_start(const struct http_flow_params *p, struct http_flow **ret);

/* Does a Host header value (port allowed) agree with where the flow goes:
 * the literal destination address, or the matched endpoint's host name
 * (any name when the endpoint has none)?  Shared with the L4 peek. */
bool http_host_agrees(const char *value, size_t len, const struct net_addr *dst,
                      const char *endpoint_host);

/* Inspected flows alive. */
size_t http_flow_count(void);

/* Reset every inspected flow (shutdown); each frees itself once its
 * handles have closed.  Upgraded flows belong to the relay by then. */
void http_flow_abort_all(void);

/* The process behind the flow, once known, for its events. */
void http_flow_set_process(struct http_flow *h, pid_t pid, const char *exe);

#endif
