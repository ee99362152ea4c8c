/*
 * policy-int: what policy.c (loading), http_path.c (request targets) and
 * http_rules.c (globs and HTTP decisions) share.  Not for other modules.
 */
#ifndef PCL_POLICY_INT_H
#define PCL_POLICY_INT_H

#include "policy.h"

enum host_kind {
    HOST_NONE = 0,   /* address-only endpoint */
    HOST_EXACT,      /* api.github.com */
    HOST_ONE_LABEL,  /* *.github.com: exactly one more label */
    HOST_ANY_LABELS, /* **.github.com: one or more labels */
    HOST_KIND_MAX,
};

enum http_access {
    HTTP_ACCESS_NONE = 0, /* `rules:` decide */
    HTTP_ACCESS_READ_ONLY,
    HTTP_ACCESS_READ_WRITE,
    HTTP_ACCESS_FULL,
    HTTP_ACCESS_MAX,
};

/* One `query:` entry of a rule: the parameter and the globs of which one must match. */
struct http_query_match {
    char *name; /* owned */
    size_t n_globs;
    char **globs; /* owned, each owned */
};

/* One entry of `rules:` (the body of its `allow:`) or of `deny_rules:`. */
struct http_rule {
    char method[POLICY_MAX_METHOD_LEN + 1]; /* "*" is any */
    char *path;                             /* owned, normalised glob */
    size_t n_query;
    struct http_query_match *query; /* owned */
};

/* What `protocol: rest` adds to an endpoint. */
struct http_config {
    enum http_access access;
    bool allow_encoded_slash;
    size_t n_rules, n_deny;
    struct http_rule *rules; /* owned */
    struct http_rule *deny;  /* owned */
};

struct policy_endpoint {
    enum host_kind kind;
    char host[POLICY_MAX_HOST_LEN + 1]; /* as written, lower case, no trailing dot */
    size_t suffix_off;                  /* wildcard: host + suffix_off is ".github.com" */
    bool audit;                         /* enforcement: audit */
    size_t n_ports;
    uint16_t ports[POLICY_MAX_PORTS];
    size_t n_ips;
    struct net_prefix *ips;   /* owned */
    struct http_config *http; /* owned; NULL unless `protocol: rest` */
    enum policy_tls tls;      /* `tls:` as written; AUTO when absent */
    const char *policy_key;   /* the key of its policy, set once loading is done */
};

/* Frees what the rule owns (not r itself). */
void http_rule_clear(struct http_rule *r);

/* Frees c and everything it owns; accepts NULL. Returns NULL. */
struct http_config *http_config_free(struct http_config *c);

/* Path normalisation of policy.h; flags below.  Writes at most outlen bytes
 * including the NUL to out and the length without it to *ret_len. */
#define HTTP_PATH_F_ENCODED_SLASH 0x1u /* keep %2F as "%2F" instead of refusing it */
#define HTTP_PATH_F_GLOB 0x2u          /* a policy glob: no dot or inner empty segments */
enum policy_http_error http_path_normalize(const char *raw, size_t len, unsigned flags, char *out,
                                           size_t outlen, size_t *ret_len);

/*
 * Check a path glob as written in the policy (s[0..len)) and store its
 * normalised form in out (outlen >= len + 1 suffices).  Returns NULL, or why
 * it is invalid (a static string).
 */
const char *http_glob_parse(const char *s, size_t len, char *out, size_t outlen);

#endif
