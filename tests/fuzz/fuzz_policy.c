/*
 * Fuzz the policy loader with arbitrary bytes; whatever loads is then used
 * for a few decisions so the decision code runs over hostile policies too.
 */
#include <stddef.h>
#include <stdint.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy *p = NULL;
    struct policy_error err;
    char buf[600];

    if (policy_load_buffer("fuzz.yaml", (const char *)data, size, &p, &err) < 0) {
        policy_error_format(&err, buf, sizeof(buf));
        return 0;
    }

    static const char *const dsts[] = {"140.82.112.6", "10.0.5.7", "203.0.113.9", "2001:db8::1",
                                       "127.0.0.1"};
    static const char *const names[] = {"api.github.com", "a.b.example.com", "x.example.com.",
                                        "db.internal"};
    static const uint16_t ports[] = {443, 22, 5432};
    size_t total = 0;
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
    }
    policy_foreach_host(p, count_host, &total);
    policy_free(p);
    return total == (size_t)-1;
}
