/*
 * The upstream leg's session cache: one SSL_SESSION per session key (the
 * caller's "name|address|port"), most recently stored first, bounded with
 * LRU eviction (hash table + list, as the leaf cache).
 *
 * A session stays in the cache when it is offered, and every connection
 * gets its own copy (so one that ends without a close_notify cannot spoil
 * it for the others): concurrent connections to one server all resume, as
 * HAProxy's do towards its servers.  RFC 8446 C.4 asks clients not to reuse
 * a ticket so that their connections cannot be linked; here every
 * connection comes from the same proxy on behalf of the same sandbox, so
 * there is nothing to unlink, and no early data is ever sent (no replay).
 * The newest ticket a server gives replaces the cached one.
 *
 * Each entry also records the name the server was verified as: OpenSSL does
 * no certificate or host check on a resumed handshake, so a session is only
 * ever offered to a connection expecting that same name.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "tls-int.h"

/* A power of two, >= the largest capacity. */
#define SESS_BUCKETS 256

struct sess_entry {
    struct sess_entry *hnext;       /* bucket chain */
    struct sess_entry *prev, *next; /* LRU list, most recently stored first */
    uint32_t hash;
    SSL_SESSION *sess; /* one reference */
    const char *name;  /* inside key[], after the key's NUL */
    char key[];        /* key NUL name NUL */
};

struct tls_sess_cache {
    struct sess_entry *buckets[SESS_BUCKETS];
    struct sess_entry *head, *tail;
    size_t entries, capacity;
    uint64_t evictions;
    uint32_t hash_basis;
};

_Static_assert(TLS_SESSION_CACHE_DEFAULT <= SESS_BUCKETS, "more entries than buckets");
_Static_assert((SESS_BUCKETS & (SESS_BUCKETS - 1)) == 0, "buckets: a power of two");

/* FNV-1a from a random basis: keys carry names the sandboxed client chose. */
static uint32_t key_hash(const struct tls_sess_cache *sc, const char *s)
{
    uint32_t h = sc->hash_basis;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int tls_sess_cache_new(struct tls_sess_cache **ret)
{
    struct tls_sess_cache *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->capacity = TLS_SESSION_CACHE_DEFAULT;
    if (RAND_bytes((unsigned char *)&sc->hash_basis, sizeof(sc->hash_basis)) != 1) {
        ERR_clear_error();
        free(sc);
        return -ENOMEM;
    }
    *ret = sc;
    return 0;
}

static void entry_free(struct sess_entry *e)
{
    SSL_SESSION_free(e->sess);
    free(e);
}

struct tls_sess_cache *tls_sess_cache_free(struct tls_sess_cache *sc)
{
    if (!sc)
        return NULL;
    for (struct sess_entry *e = sc->head, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    free(sc);
    return NULL;
}

static struct sess_entry *lookup(struct tls_sess_cache *sc, const char *key, uint32_t h)
{
    for (struct sess_entry *e = sc->buckets[h & (SESS_BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void lru_push_front(struct tls_sess_cache *sc, struct sess_entry *e)
{
    e->prev = NULL;
    e->next = sc->head;
    if (sc->head)
        sc->head->prev = e;
    sc->head = e;
    if (!sc->tail)
        sc->tail = e;
}

static void lru_unlink(struct tls_sess_cache *sc, struct sess_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        sc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        sc->tail = e->prev;
    e->prev = e->next = NULL;
}

/* Unlink e from both structures and free it. */
static void entry_remove(struct tls_sess_cache *sc, struct sess_entry *e)
{
    struct sess_entry **pp = &sc->buckets[e->hash & (SESS_BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(sc, e);
    entry_free(e);
    sc->entries--;
}

static bool expired(const SSL_SESSION *s)
{
    long age = (long)time(NULL) - (long)SSL_SESSION_get_time(s);
    return age < 0 || age >= (long)SSL_SESSION_get_timeout(s);
}

SSL_SESSION *tls_sess_cache_get(struct tls_sess_cache *sc, const char *key, const char *name)
{
    struct sess_entry *e = lookup(sc, key, key_hash(sc, key));
    if (!e)
        return NULL;
    SSL_SESSION *s = e->sess;
    /* The SNI the session was made with, when the server acknowledged it. */
    const char *sni = SSL_SESSION_get0_hostname(s);
    bool fits = strcmp(e->name, name) == 0 && (!sni || strcmp(sni, name) == 0);
    if (!fits || expired(s) || !SSL_SESSION_is_resumable(s)) {
        /* Another name now under this key (whose own session will replace
         * this one), or a session no server would take: gone. */
        entry_remove(sc, e);
        return NULL;
    }
    lru_unlink(sc, e);
    lru_push_front(sc, e);
    return SSL_SESSION_dup(s);
}

int tls_sess_cache_put(struct tls_sess_cache *sc, const char *key, const char *name,
                       SSL_SESSION *sess)
{
    uint32_t h = key_hash(sc, key);
    struct sess_entry *e = lookup(sc, key, h);
    if (e && strcmp(e->name, name) == 0) {
        /* the newest ticket wins */
        SSL_SESSION_free(e->sess);
        e->sess = sess;
        lru_unlink(sc, e);
        lru_push_front(sc, e);
        return 0;
    }
    if (e)
        entry_remove(sc, e);
    size_t klen = strlen(key), nlen = strlen(name);
    e = malloc(sizeof(*e) + klen + 1 + nlen + 1);
    if (!e)
        return -ENOMEM;
    while (sc->entries >= sc->capacity && sc->tail) {
        entry_remove(sc, sc->tail);
        sc->evictions++;
    }
    memcpy(e->key, key, klen + 1);
    memcpy(e->key + klen + 1, name, nlen + 1);
    e->name = e->key + klen + 1;
    e->hash = h;
    e->sess = sess;
    struct sess_entry **bucket = &sc->buckets[h & (SESS_BUCKETS - 1)];
    e->hnext = *bucket;
    *bucket = e;
    lru_push_front(sc, e);
    sc->entries++;
    return 0;
}

void tls_sess_cache_drop(struct tls_sess_cache *sc, const char *key)
{
    struct sess_entry *e = lookup(sc, key, key_hash(sc, key));
    if (e)
        entry_remove(sc, e);
}

void tls_sess_cache_set_capacity(struct tls_sess_cache *sc, size_t capacity)
{
    if (capacity == 0 || capacity > TLS_SESSION_CACHE_DEFAULT)
        capacity = TLS_SESSION_CACHE_DEFAULT;
    sc->capacity = capacity;
    while (sc->entries > sc->capacity) {
        entry_remove(sc, sc->tail);
        sc->evictions++;
    }
}

void tls_sess_cache_stats(const struct tls_sess_cache *sc, struct tls_resume_stats *ret)
{
    ret->entries = sc->entries;
    ret->capacity = sc->capacity;
    ret->evictions = sc->evictions;
}
