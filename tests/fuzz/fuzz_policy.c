/*
 * Fuzz the policy loader with arbitrary bytes; whatever loads is then used
 * for a few decisions so the decision code runs over hostile policies too.
 *
 * The same bytes are also a request target for policy_http_target_parse
 * (whose output must keep its documented shape), and lines of the form
 * "#> METHOD TARGET" (YAML comments, so a corpus file can be a valid policy
 * and carry requests) are decided on every inspected endpoint.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static enum policy_lookup stub_lookup(void *ctx, const char *host, const struct net_addr *addr)
{
    (void)ctx;
    (void)addr;
    /* Deterministic but varied answers. */
    size_t n = strlen(host);
    return (enum policy_lookup)(n % 3);
}

static void count_host(void *ctx, const char *host)
{
    *(size_t *)ctx += strlen(host);
}

static struct policy_http_target target; /* large: not on the stack */

/* What policy.h promises of a normalised path. */
static void check_path_shape(const struct policy_http_target *t)
{
    const char *p = t->path;
    size_t n = t->path_len;

    if (n == 0 || p[0] != '/' || strlen(p) != n)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            abort();
        if (c == '%' && !(i + 2 < n && p[i + 1] == '2' && (p[i + 2] == 'F' || p[i + 2] == '5')))
            abort();
        if (c == '/' && i + 1 < n && p[i + 1] == '/')
            abort();
        if (c == '/') {
            /* No "." or ".." segment survives. */
            size_t e = i + 1;
            while (e < n && p[e] != '/')
                e++;
            size_t len = e - i - 1;
            if ((len == 1 && p[i + 1] == '.') || (len == 2 && p[i + 1] == '.' && p[i + 2] == '.'))
                abort();
        }
    }
    for (size_t i = 0; i < t->n_params; i++) {
        const struct policy_http_param *q = &t->params[i];
        if (q->name_off + q->name_len >= sizeof(t->qbuf) ||
            q->value_off + q->value_len >= sizeof(t->qbuf) ||
            strlen(t->qbuf + q->name_off) != q->name_len ||
            strlen(t->qbuf + q->value_off) != q->value_len)
            abort();
    }
}

struct requests {
    const char *data;
    size_t size;
    size_t total;
};

static void decide_one(const struct policy_endpoint *ep, const char *method, const char *raw,
                       size_t len, size_t *total)
{
    struct policy_http_decision d;
    enum policy_http_error e =
        policy_http_target_parse(raw, len, policy_endpoint_allow_encoded_slash(ep), &target);
    if (e != POLICY_HTTP_OK) {
        if (!policy_http_error_name(e))
            abort();
        return;
    }
    check_path_shape(&target);
    for (int audit = 0; audit <= 1; audit++) {
        policy_decide_http(ep, audit, method, &target, &d);
        if (d.verdict != POLICY_ALLOW && d.verdict != POLICY_DENY && d.verdict != POLICY_AUDIT)
            abort();
        if (!policy_endpoint_inspect(ep) &&
            (d.verdict != POLICY_DENY || strcmp(d.rule, "not_inspected") != 0))
            abort();
        *total += strlen(d.rule) + (d.policy_name ? strlen(d.policy_name) : 0);
    }
}

static void on_endpoint(void *ctx, const char *policy_name, const struct policy_endpoint *ep)
{
    struct requests *r = ctx;
    static const char *const fixed[][2] = {
        {"GET", "/"},
        {"GET", "/repos/a/b/branches/c/protection?x=1&y"},
        {"PUT", "/repos/a/b/x/../branches/c/%70rotection/"},
        {"DELETE", "/a//b/./c;p=1?force=true&force=false"},
        {"POST", "/search?q=foo+bar&per_page=10"},
        {"get", "/A%2fB/%2e%2e/c"},
    };

    r->total += strlen(policy_name);
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        decide_one(ep, fixed[i][0], fixed[i][1], strlen(fixed[i][1]), &r->total);

    /* "#> METHOD TARGET" lines. */
    for (size_t i = 0; i + 3 < r->size; i++) {
        if ((i > 0 && r->data[i - 1] != '\n') || memcmp(r->data + i, "#> ", 3) != 0)
            continue;
        size_t m = i + 3, end = m;
        while (end < r->size && r->data[end] != '\n')
            end++;
        const char *sp = memchr(r->data + m, ' ', end - m);
        if (!sp)
            continue;
        char method[64];
        size_t mlen = (size_t)(sp - (r->data + m));
        if (mlen == 0 || mlen >= sizeof(method) || memchr(r->data + m, '\0', mlen))
            continue;
        memcpy(method, r->data + m, mlen);
        method[mlen] = '\0';
        decide_one(ep, method, sp + 1, (size_t)(r->data + end - (sp + 1)), &r->total);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy *p = NULL;
    struct policy_error err;
    char buf[600];
    size_t total = 0;

    /* The input as a request target, both ways. */
    for (int slash = 0; slash <= 1; slash++) {
        enum policy_http_error e =
            policy_http_target_parse((const char *)data, size, slash, &target);
        if (e == POLICY_HTTP_OK)
            check_path_shape(&target);
        else if (!policy_http_error_name(e))
            abort();
    }

    if (policy_load_buffer("fuzz.yaml", (const char *)data, size, &p, &err) < 0) {
        policy_error_format(&err, buf, sizeof(buf));
        return 0;
    }

    static const char *const dsts[] = {"140.82.112.6", "10.0.5.7", "203.0.113.9", "2001:db8::1",
                                       "127.0.0.1"};
    static const char *const names[] = {"api.github.com", "a.b.example.com", "x.example.com.",
                                        "db.internal"};
    static const uint16_t ports[] = {443, 22, 5432};
    for (size_t i = 0; i < sizeof(dsts) / sizeof(dsts[0]); i++) {
        struct policy_flow flow;
        struct policy_decision d;
        memset(&flow, 0, sizeof(flow));
        net_addr_parse(dsts[i], &flow.dst);
        flow.dst_port = ports[i % 3];
        flow.hostname = i < 4 ? names[i] : NULL;
        policy_decide(p, NULL, i & 1, &flow, stub_lookup, NULL, &d);
        /* Touch what the decision points at: it must live inside p. */
        if (d.policy_name)
            total += strlen(d.policy_name);
        if (d.endpoint_host)
            total += strlen(d.endpoint_host);
        if (d.pending_host)
            total += strlen(d.pending_host);
        if (d.inspect != policy_endpoint_inspect(d.endpoint))
            abort();
        if (d.inspect)
            decide_one(d.endpoint, "GET", "/x", 2, &total);
    }
    policy_foreach_host(p, count_host, &total);

    struct requests r = {(const char *)data, size, 0};
    policy_foreach_endpoint(p, on_endpoint, &r);
    total += r.total;
    policy_free(p);
    return total == (size_t)-1;
}
