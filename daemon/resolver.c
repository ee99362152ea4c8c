/*
 * Resolution of policy hosts with the system resolver (getaddrinfo on the
 * libuv thread pool), cached briefly.  The cache is bounded; an entry being
 * resolved is never evicted, and flows waiting on it are called back once.
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define RESOLVER_MAX_ENTRIES 4096
#define RESOLVER_MAX_ADDRS 32
#define RESOLVER_TTL_MS 30000
#define RESOLVER_NEGATIVE_TTL_MS 5000
#define RESOLVER_MAX_WAITERS 4096 /* per entry */

struct resolver_waiter {
    resolver_done_fn done;
    void *data;
    struct resolver_waiter *next;
};

struct resolver_entry {
    char host[POLICY_MAX_HOST_LEN + 1];
    struct net_addr addrs[RESOLVER_MAX_ADDRS];
    size_t n_addrs;
    uint64_t expires_ms; /* 0 while resolving */
    bool resolving;
    uv_getaddrinfo_t req;
    struct resolver_waiter *waiters;
    size_t n_waiters;
    struct resolver_entry *next;
};

static struct resolver_entry *entries;
static size_t n_entries;
static bool shutting_down;

static uint64_t now_ms(void)
{
    return uv_now(daemon_loop);
}

static struct resolver_entry *entry_find(const char *host)
{
    for (struct resolver_entry *e = entries; e; e = e->next)
        if (strcasecmp(e->host, host) == 0)
            return e;
    return NULL;
}

static void entry_unlink(struct resolver_entry *victim)
{
    for (struct resolver_entry **pp = &entries; *pp; pp = &(*pp)->next) {
        if (*pp == victim) {
            *pp = victim->next;
            n_entries--;
            return;
        }
    }
}

/* Make room: drop expired entries, then the one expiring first. */
static void cache_trim(void)
{
    uint64_t now = now_ms();
    struct resolver_entry **pp = &entries;
    while (*pp) {
        struct resolver_entry *e = *pp;
        if (!e->resolving && e->expires_ms <= now) {
            *pp = e->next;
            n_entries--;
            free(e);
        } else {
            pp = &e->next;
        }
    }
    while (n_entries >= RESOLVER_MAX_ENTRIES) {
        struct resolver_entry *oldest = NULL;
        for (struct resolver_entry *e = entries; e; e = e->next)
            if (!e->resolving && (!oldest || e->expires_ms < oldest->expires_ms))
                oldest = e;
        if (!oldest)
            return;
        entry_unlink(oldest);
        free(oldest);
    }
}

int resolver_init(void)
{
    entries = NULL;
    n_entries = 0;
    shutting_down = false;
    return 0;
}

void resolver_shutdown(void)
{
    struct resolver_entry *e = entries;
    shutting_down = true;
    while (e) {
        struct resolver_entry *next = e->next;
        while (e->waiters) {
            struct resolver_waiter *w = e->waiters;
            e->waiters = w->next;
            free(w);
        }
        if (e->resolving) {
            /* The callback will free it (UV_ECANCELED or not). */
            uv_cancel((uv_req_t *)&e->req);
            e->next = NULL;
        } else {
            free(e);
        }
        e = next;
    }
    entries = NULL;
    n_entries = 0;
}

enum policy_lookup resolver_lookup(void *ctx, const char *host, const struct net_addr *addr)
{
    (void)ctx;
    struct resolver_entry *e = entry_find(host);
    if (!e || e->resolving || e->expires_ms <= now_ms())
        return POLICY_LOOKUP_PENDING;
    for (size_t i = 0; i < e->n_addrs; i++)
        if (net_addr_equal(&e->addrs[i], addr))
            return POLICY_LOOKUP_YES;
    return POLICY_LOOKUP_NO;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolver_entry *e = req->data;
    e->resolving = false;
    e->n_addrs = 0;
    if (status == 0) {
        for (struct addrinfo *ai = res; ai && e->n_addrs < RESOLVER_MAX_ADDRS; ai = ai->ai_next) {
            struct net_addr a;
            if (net_addr_from_sockaddr(ai->ai_addr, &a, NULL) < 0)
                continue;
            bool dup = false;
            for (size_t i = 0; i < e->n_addrs; i++)
                dup |= net_addr_equal(&e->addrs[i], &a);
            if (!dup)
                e->addrs[e->n_addrs++] = a;
        }
    } else if (status != UV_ECANCELED) {
        log_debug("resolving %s: %s", e->host, uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    if (status == UV_ECANCELED || shutting_down) {
        free(e);
        return;
    }
    e->expires_ms = now_ms() + (e->n_addrs ? RESOLVER_TTL_MS : RESOLVER_NEGATIVE_TTL_MS);
    /* Detach the waiters first: a callback may start another resolution. */
    struct resolver_waiter *w = e->waiters;
    e->waiters = NULL;
    e->n_waiters = 0;
    while (w) {
        struct resolver_waiter *next = w->next;
        resolver_done_fn done = w->done;
        void *data = w->data;
        free(w);
        done(data);
        w = next;
    }
}

int resolver_resolve(const char *host, resolver_done_fn done, void *data)
{
    struct resolver_entry *e = entry_find(host);
    if (e && !e->resolving && e->expires_ms <= now_ms()) {
        entry_unlink(e);
        free(e);
        e = NULL;
    }
    if (!e) {
        cache_trim();
        if (n_entries >= RESOLVER_MAX_ENTRIES)
            return -ENOBUFS;
        e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        str_copy(e->host, host, sizeof(e->host));
        e->next = entries;
        entries = e;
        n_entries++;
    }
    if (e->n_waiters >= RESOLVER_MAX_WAITERS)
        return -ENOBUFS;
    struct resolver_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->done = done;
    w->data = data;
    w->next = e->waiters;
    e->waiters = w;
    e->n_waiters++;
    /* A valid answer that a caller still asks for (a racing expiry) is simply
     * refreshed: one code path, and the waiter is called back from the loop. */
    if (!e->resolving) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        e->req.data = e;
        e->expires_ms = 0;
        int rc = uv_getaddrinfo(daemon_loop, &e->req, on_resolved, e->host, NULL, &hints);
        if (rc < 0) {
            e->waiters = w->next;
            e->n_waiters--;
            free(w);
            return rc;
        }
        e->resolving = true;
    }
    return 0;
}

void resolver_cancel(void *data)
{
    for (struct resolver_entry *e = entries; e; e = e->next) {
        for (struct resolver_waiter **pp = &e->waiters; *pp;) {
            if ((*pp)->data == data) {
                struct resolver_waiter *w = *pp;
                *pp = w->next;
                e->n_waiters--;
                free(w);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}
