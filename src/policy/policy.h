/*
 * policy: the YAML policy of DESIGN.md, parsed with libyaml, and the pure
 * decision function.  No I/O besides reading the file in policy_load_file, no
 * globals, no logging, no libuv: everything the decision needs comes in as
 * arguments, so every path is unit-testable.
 *
 * Name resolution is the caller's job: the decision asks, through a callback,
 * whether an address is among the addresses a policy host resolves to.  The
 * callback may answer "not known yet" (POLICY_LOOKUP_PENDING); the decision
 * then returns POLICY_PENDING naming the host, the caller resolves it
 * (asynchronously), and calls policy_decide again.  Each call makes progress
 * because the caller caches answers, including negative ones.
 */
#ifndef PCL_POLICY_H
#define PCL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Limits on what one policy file may hold (bounded memory for a hostile file). */
#define POLICY_MAX_FILE_BYTES (1024 * 1024)
#define POLICY_MAX_POLICIES 256
#define POLICY_MAX_ENDPOINTS 1024 /* per file */
#define POLICY_MAX_PORTS 64       /* per endpoint */
#define POLICY_MAX_IPS 64         /* allowed_ips per endpoint */
#define POLICY_MAX_HOST_LEN 253
#define POLICY_MAX_NAME_LEN 128
#define POLICY_MAX_RULES 256      /* rules, and separately deny_rules, per endpoint */
#define POLICY_MAX_GLOB_LEN 1024  /* a path or query glob as written */
#define POLICY_MAX_QUERY_MATCH 32 /* query parameters per rule */
#define POLICY_MAX_QUERY_ANY 32   /* globs in one `any:` list */
#define POLICY_MAX_METHOD_LEN 32

struct policy; /* opaque; immutable once loaded, safe to share read-only */

/* One endpoint of a loaded policy; opaque, valid while its struct policy lives. */
struct policy_endpoint;

struct policy_error {
    char file[256];
    unsigned line;   /* 1-based; 0 when the error has no position (I/O) */
    unsigned column; /* 1-based */
    char message[256];
};

/* Formats "FILE:LINE:COL: message" (or "FILE: message") into buf. Returns buf. */
const char *policy_error_format(const struct policy_error *err, char *buf, size_t len);

/* Parse a policy file. On success *ret owns the policy (free with policy_free)
 * and 0 is returned. On failure returns -EINVAL (bad content) or -errno (I/O)
 * and fills *err. */
int policy_load_file(const char *path, struct policy **ret, struct policy_error *err);

/* Same from memory; name is used as the FILE in errors. */
int policy_load_buffer(const char *name, const char *buf, size_t len, struct policy **ret,
                       struct policy_error *err);

/* Accepts NULL; returns NULL. */
struct policy *policy_free(struct policy *p);

/* Address classes, in the order of DESIGN.md. */
enum policy_addr_class {
    POLICY_ADDR_PUBLIC = 0,
    POLICY_ADDR_PRIVATE,        /* RFC 1918, 100.64/10, 198.18/15, fc00::/7, other special */
    POLICY_ADDR_ALWAYS_BLOCKED, /* loopback, link-local, host's own, sandbox pool, multicast,
                                   0.0.0.0/8, unspecified */
    POLICY_ADDR_CLASS_MAX,
};

/* What the decision needs to know of the machine it runs on. */
struct policy_env {
    const struct net_addr *host_addrs; /* the host's own addresses */
    size_t n_host_addrs;
    const struct net_prefix *sandbox_pools; /* the sandbox address pools (v4 and v6) */
    size_t n_sandbox_pools;
};

enum policy_addr_class policy_classify_addr(const struct net_addr *a, const struct policy_env *env);

enum policy_lookup {
    POLICY_LOOKUP_NO = 0,  /* the host does not resolve to the address (or not at all) */
    POLICY_LOOKUP_YES,     /* the address is among the host's addresses */
    POLICY_LOOKUP_PENDING, /* not known yet: resolve host, then decide again */
};

/* Is addr among the addresses `host` (an exact policy host name) resolves to? */
typedef enum policy_lookup (*policy_lookup_fn)(void *ctx, const char *host,
                                               const struct net_addr *addr);

enum policy_proto {
    POLICY_PROTO_TCP = 0,
    POLICY_PROTO_UDP,
    POLICY_PROTO_MAX,
};

struct policy_flow {
    enum policy_proto proto;
    struct net_addr dst;
    uint16_t dst_port;
    /* A hostname already bound to the flow (DNS binding, SNI, Host), or NULL.
     * When set, exact and wildcard hosts are matched against it by name and
     * the address must still resolve from it (exact) — see policy.c. */
    const char *hostname;
};

enum policy_verdict {
    POLICY_DENY = 0,
    POLICY_ALLOW,
    POLICY_AUDIT,   /* would be denied; passes because of audit mode or enforcement: audit */
    POLICY_PENDING, /* a host needs resolving: see policy_decision.pending_host */
    POLICY_VERDICT_MAX,
};

enum policy_reason {
    POLICY_REASON_NONE = 0, /* allowed */
    POLICY_REASON_NO_MATCHING_POLICY,
    POLICY_REASON_ALWAYS_BLOCKED_ADDRESS,
    POLICY_REASON_PRIVATE_ADDRESS,
    POLICY_REASON_L7_RULE,       /* an HTTP request refused by an inspected endpoint */
    POLICY_REASON_HOST_MISMATCH, /* the flow's name (SNI, Host) contradicts its address */
    POLICY_REASON_MAX,
};

/* "no_matching_policy", "always_blocked_address", "private_address", "l7_rule",
 * "host_mismatch"; NULL for NONE. */
const char *policy_reason_name(enum policy_reason r);

struct policy_decision {
    enum policy_verdict verdict;
    enum policy_reason reason; /* why it was denied, also set for AUDIT */
    const char *policy_name;   /* key of the matching (or nearly matching) policy, or NULL;
                                  points into the struct policy */
    const char *endpoint_host; /* the matching endpoint's host, or NULL */
    const char *pending_host;  /* with POLICY_PENDING: the host to resolve */
    /* The endpoint that matched (or nearly matched: it is set whenever
     * policy_name is), also an address-only one; NULL otherwise.  Valid while
     * p lives. */
    const struct policy_endpoint *endpoint;
    /* endpoint has `protocol: rest`: every request on the flow must be
     * decided with policy_decide_http before any of it goes upstream. */
    bool inspect;
    /* Not allowed, and flow->hostname named the host of an endpoint that
     * fits the port, but the address is not among that name's addresses: the
     * name contradicts the destination (reason is then HOST_MISMATCH). */
    bool name_mismatch;
    /* Decided without a hostname, and a wildcard endpoint fits the port and
     * address: a name learnt from the flow (SNI, Host) could still allow it. */
    bool name_could_match;
};

/*
 * Decide a flow.  audit_mode is the sandbox's --audit: every deny except
 * ALWAYS_BLOCKED becomes POLICY_AUDIT.  An endpoint with `enforcement: audit`
 * that would deny (private address without allowed_ips) also gives AUDIT.
 * Pointers in *ret point into p and stay valid while p lives.
 */
void policy_decide(const struct policy *p, const struct policy_env *env, bool audit_mode,
                   const struct policy_flow *flow, policy_lookup_fn lookup, void *lookup_ctx,
                   struct policy_decision *ret);

/* Call fn for every exact (non-wildcard) host of the policy, e.g. to pre-resolve. */
void policy_foreach_host(const struct policy *p, void (*fn)(void *ctx, const char *host),
                         void *ctx);

/* Call fn for every endpoint, in file order, with the key of its policy. */
void policy_foreach_endpoint(const struct policy *p,
                             void (*fn)(void *ctx, const char *policy_name,
                                        const struct policy_endpoint *ep),
                             void *ctx);

/* ---- HTTP (endpoints with `protocol: rest`) ----
 *
 * A request target is checked and normalised once (policy_http_target_parse),
 * then decided (policy_decide_http).  Normalisation, in this order:
 *  - the target must be origin-form ("/..."); the query starts at the first '?';
 *  - raw control characters, space, DEL and '#' are refused (a fragment is
 *    never sent, and a server that cut at '#' would see another path);
 *  - the path is percent-decoded (hex in either case); %00 and decoded control
 *    characters are refused; %2F is refused unless the endpoint has
 *    `allow_encoded_slash: true`, and then stays "%2F" so it never separates
 *    segments; a decoded '%' is written "%25", so the result is unambiguous;
 *  - dot segments are removed after decoding (RFC 3986 5.2.4: "/a/%2e%2e/b"
 *    is "/b", "/.." is "/"); a ".." that would remove an empty segment
 *    ("/a//../b": "/a/b" to RFC 3986, "/b" to a server that merges slashes)
 *    and a "." or ".." segment with ";parameters" ("/..;/", which Java
 *    servers resolve) are refused as ambiguous;
 *  - empty segments are merged ("//" is "/"); a trailing slash is kept.
 * The query is split at '&' into at most POLICY_HTTP_MAX_QUERY_PARAMS pairs
 * (split at the first '='), each percent-decoded with '+' as space; %00 is
 * refused, other decoded bytes are kept.  Nothing is truncated: a target over
 * a limit is an error, so no part of a request escapes the rules.
 */
#define POLICY_HTTP_MAX_TARGET 8192 /* bytes of request target */
#define POLICY_HTTP_MAX_QUERY_PARAMS 128

enum policy_http_error {
    POLICY_HTTP_OK = 0,
    POLICY_HTTP_E_NOT_ORIGIN_FORM, /* "not_origin_form": does not start with '/' */
    POLICY_HTTP_E_TOO_LONG,        /* "target_too_long": over POLICY_HTTP_MAX_TARGET */
    POLICY_HTTP_E_BAD_CHAR,        /* "bad_character": raw control, space, DEL or '#' */
    POLICY_HTTP_E_BAD_PERCENT,     /* "bad_percent_encoding": '%' without two hex digits */
    POLICY_HTTP_E_NUL,             /* "encoded_nul": %00 */
    POLICY_HTTP_E_CONTROL,         /* "encoded_control": a control character in the path */
    POLICY_HTTP_E_ENCODED_SLASH,   /* "encoded_slash": %2F without allow_encoded_slash */
    POLICY_HTTP_E_AMBIGUOUS_DOTS,  /* "ambiguous_dot_segment" */
    POLICY_HTTP_E_TOO_MANY_PARAMS, /* "too_many_query_params" */
    POLICY_HTTP_E_DOT_SEGMENT,     /* policy globs only: "." or ".." segment */
    POLICY_HTTP_E_EMPTY_SEGMENT,   /* policy globs only: "//" */
    POLICY_HTTP_ERROR_MAX,
};

/* The short reason above, for a 400 body or an event; NULL for OK and unknown values. */
const char *policy_http_error_name(enum policy_http_error e);

/* One decoded query parameter: offsets into policy_http_target.qbuf, where
 * name and value are also NUL-terminated. */
struct policy_http_param {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
};

/* A parsed request target.  Large (about 17 KiB): keep one per connection.
 * Holds no pointers into itself, so it may be copied. */
struct policy_http_target {
    char path[POLICY_HTTP_MAX_TARGET + 1]; /* normalised, NUL-terminated */
    size_t path_len;
    size_t n_params;
    struct policy_http_param params[POLICY_HTTP_MAX_QUERY_PARAMS];
    char qbuf[POLICY_HTTP_MAX_TARGET + 2 * POLICY_HTTP_MAX_QUERY_PARAMS + 2];
};

/*
 * Check and normalise the request target target[0..len) (not NUL-terminated)
 * into *ret, as described above.  allow_encoded_slash is the endpoint's
 * (policy_endpoint_allow_encoded_slash).  Returns POLICY_HTTP_OK, or the
 * reason to answer 400; *ret is then unspecified.
 */
enum policy_http_error policy_http_target_parse(const char *target, size_t len,
                                                bool allow_encoded_slash,
                                                struct policy_http_target *ret);

/* The endpoint has `protocol: rest`. */
bool policy_endpoint_inspect(const struct policy_endpoint *ep);

/* An endpoint's `tls:` field. */
enum policy_tls {
    POLICY_TLS_AUTO = 0,    /* absent: TLS is terminated for `protocol: rest`, passed
                               through otherwise, and plain bytes are allowed too */
    POLICY_TLS_TERMINATE,   /* `terminate`: TLS only, decrypted and inspected */
    POLICY_TLS_PASSTHROUGH, /* `passthrough` or `skip`: TLS only, decided on the SNI */
    POLICY_TLS_MAX,
};
enum policy_tls policy_endpoint_tls(const struct policy_endpoint *ep);

/* The endpoint has `allow_encoded_slash: true`. */
bool policy_endpoint_allow_encoded_slash(const struct policy_endpoint *ep);

#define POLICY_HTTP_RULE_LEN 32

struct policy_http_decision {
    enum policy_verdict verdict; /* POLICY_ALLOW, POLICY_DENY or POLICY_AUDIT */
    enum policy_reason reason;   /* NONE when allowed, else POLICY_REASON_L7_RULE */
    const char *policy_name;     /* key of the endpoint's policy (points into the policy) */
    /* What decided: "deny_rules[N]", "rules[N]" (0-based, file order),
     * "access:read-only" (or read-write, full), "no_rule" (rules given, none
     * matched), "not_inspected" (ep is NULL or not `protocol: rest`). */
    char rule[POLICY_HTTP_RULE_LEN];
};

/*
 * Decide one HTTP request on an inspected endpoint (policy_decision.endpoint
 * with .inspect).  method is the request method as sent; t a target that
 * policy_http_target_parse accepted.
 *
 * deny_rules are tried first and win; then `access` or the first matching
 * rule of `rules`; nothing matching is a deny ("no_rule").  A deny becomes
 * POLICY_AUDIT under audit_mode (the sandbox's --audit) or `enforcement:
 * audit`.  Matching:
 *  - methods: an allow (rule or access level) needs the exact, case-sensitive
 *    method; a deny rule's method matches in any case; "*" is any method.
 *    read-only is GET, HEAD, OPTIONS; read-write adds POST, PUT, PATCH; full
 *    is any method.
 *  - paths are compared segment by segment and empty segments are ignored, so
 *    a trailing slash never matters ("/a" and "/a/" are the same to every
 *    rule).  Allow rules compare bytes exactly.  A deny rule compares ASCII
 *    letters in any case and also matches when each segment is cut at its
 *    first ';' ("/Admin;x/y" is denied by a rule for "/admin/y", as a
 *    case-insensitive or Java server would route it).
 *  - path globs are written like paths and normalised like them (percent-
 *    decoded: "%2F" is an encoded slash, "%25" a '%'); a segment "**" stands
 *    for any number of segments, none included (so "/a" followed by that
 *    segment matches "/a" too); any other '*' is a run of characters inside
 *    one segment ("*" is exactly one segment, "*.json" one that ends in
 *    ".json").
 *  - query names and globs are written decoded; '*' is any run of
 *    characters, the rest is literal.  Allow rules compare them exactly,
 *    deny rules in any case (a server may read "TRUE" as true).
 *  - query: every parameter a rule names must be present (a missing one is no
 *    match); others are ignored.  A repeated parameter must match with every
 *    occurrence for an allow rule, with any occurrence for a deny rule.
 * Never fails; ret->policy_name points into the policy.
 */
void policy_decide_http(const struct policy_endpoint *ep, bool audit_mode, const char *method,
                        const struct policy_http_target *t, struct policy_http_decision *ret);

#endif
