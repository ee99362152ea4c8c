/*
 * The client-facing leg: leaf certificates issued by the CA on demand, kept
 * in a bounded LRU cache (hash table + list), and server-side connections
 * presenting them.
 *
 * One SSL_CTX serves every leaf: each connection gets its leaf with
 * SSL_use_cert_and_key.  An SSL_CTX per leaf would cost ~13 KiB and ~100 us
 * per cache miss (OpenSSL 3 SSL_CTX_new), against ~1 us per connection here.
 * Sessions are bound to the name by a session id context, so a ticket issued
 * for one name never resumes a connection for another.
 *
 * The chain sent is the leaf alone: a client can only accept it with the CA
 * in its trust store, and a copy of the CA on the wire costs every client a
 * certificate decode (measured with an OpenSSL 3.0 client: ~170 us of CPU and
 * ~5 KiB per connection), for nothing (RFC 8446 4.4.2 lets it be omitted).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls-int.h"

#define LEAF_DAYS 7
/* Issue a fresh leaf once the cached one has less than a day left. */
#define LEAF_REISSUE_AGE ((LEAF_DAYS - 1) * 86400)
#define LEAF_MAX_BUCKETS (1u << 16)

static const unsigned char alpn_http11[] = "http/1.1";

struct leaf {
    struct leaf *hnext;       /* bucket chain */
    struct leaf *prev, *next; /* LRU list, most recently used first */
    uint32_t hash;
    time_t issued;
    X509 *cert;
    char name[]; /* tls_name.s */
};

struct tls_server {
    const struct tls_ca *ca;
    EVP_PKEY *key; /* shared by every leaf */
    SSL_CTX *ctx;
    /* The extensions every leaf has, made once. */
    X509_EXTENSION *ext_bc, *ext_ku, *ext_eku, *ext_aki;
    struct leaf **buckets;
    size_t nbuckets; /* power of two */
    struct leaf *head, *tail;
    struct tls_cache_stats stats;
    uint32_t hash_basis;
};

/* FNV-1a from a per-server random basis: names come from sandboxed clients,
 * which should not be able to aim them all at one bucket. */
static uint32_t name_hash(const struct tls_server *srv, const char *s)
{
    uint32_t h = srv->hash_basis;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    struct tls_conn *c = tls_conn_of(ssl);
    if (c && (tls_conn_flags(c) & TLS_CONN_F_REFUSE)) {
        tls_conn_mark_refused(c);
        *al = SSL_AD_ACCESS_DENIED;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* http/1.1 when the connection may select it and the client offers it; else
 * no ALPN at all (never a no_application_protocol alert: a client offering
 * only h2 still gets HTTP/1.1 semantics, as without ALPN). */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    struct tls_conn *c = tls_conn_of(ssl);
    if (!c || !(tls_conn_flags(c) & TLS_CONN_F_ALPN_HTTP11))
        return SSL_TLSEXT_ERR_NOACK;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (l == 0 || i + 1 + l > inlen)
            break;
        if (l == sizeof(alpn_http11) - 1 && memcmp(in + i + 1, alpn_http11, l) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static X509_EXTENSION *conf_ext(int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, NULL, NULL, NULL, NULL, 0);
    return X509V3_EXT_conf_nid(NULL, &v3, nid, value);
}

/* authorityKeyIdentifier: the CA's SKI, or the hash of its key when it has none. */
static X509_EXTENSION *aki_ext(X509 *ca)
{
    X509_EXTENSION *e = NULL;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    if (!akid)
        return NULL;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    if (ski) {
        akid->keyid = ASN1_OCTET_STRING_dup(ski);
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        if (X509_pubkey_digest(ca, EVP_sha1(), md, &len) && (akid->keyid = ASN1_OCTET_STRING_new()))
            ASN1_OCTET_STRING_set(akid->keyid, md, (int)len);
    }
    if (akid->keyid)
        e = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    AUTHORITY_KEYID_free(akid);
    return e;
}

struct tls_server *tls_server_free(struct tls_server *srv)
{
    if (!srv)
        return NULL;
    for (struct leaf *e = srv->head, *next; e; e = next) {
        next = e->next;
        X509_free(e->cert);
        free(e);
    }
    free(srv->buckets);
    X509_EXTENSION_free(srv->ext_bc);
    X509_EXTENSION_free(srv->ext_ku);
    X509_EXTENSION_free(srv->ext_eku);
    X509_EXTENSION_free(srv->ext_aki);
    SSL_CTX_free(srv->ctx);
    EVP_PKEY_free(srv->key);
    free(srv);
    return NULL;
}

int tls_server_new(const struct tls_ca *ca, size_t capacity, struct tls_server **ret)
{
    if (!ca || !ret)
        return -EINVAL;
    struct tls_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->ca = ca;
    srv->stats.capacity = capacity ? capacity : TLS_LEAF_CACHE_DEFAULT;
    srv->nbuckets = 16;
    while (srv->nbuckets < srv->stats.capacity && srv->nbuckets < LEAF_MAX_BUCKETS)
        srv->nbuckets <<= 1;
    srv->buckets = calloc(srv->nbuckets, sizeof(*srv->buckets));
    if (!srv->buckets)
        goto fail;

    ERR_clear_error();
    if (RAND_bytes((unsigned char *)&srv->hash_basis, sizeof(srv->hash_basis)) != 1)
        goto fail;
    srv->key = EVP_EC_gen("P-256");
    srv->ext_bc = conf_ext(NID_basic_constraints, "critical,CA:FALSE");
    srv->ext_ku = conf_ext(NID_key_usage, "critical,digitalSignature");
    srv->ext_eku = conf_ext(NID_ext_key_usage, "serverAuth");
    srv->ext_aki = aki_ext(ca->cert);
    if (!srv->key || !srv->ext_bc || !srv->ext_ku || !srv->ext_eku || !srv->ext_aki)
        goto fail;

    SSL_CTX *ctx = srv->ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Tickets only (stateless): no per-session memory on our side. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    ERR_clear_error();
    *ret = srv;
    return 0;

fail:
    tls_server_free(srv);
    ERR_clear_error();
    return -ENOMEM;
}

void tls_server_stats(const struct tls_server *srv, struct tls_cache_stats *ret)
{
    *ret = srv->stats;
}

static X509 *leaf_issue(const struct tls_server *srv, const struct tls_name *n)
{
    X509 *x = X509_new();
    GENERAL_NAMES *san = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!x || !san || !gn)
        goto fail;

    if (n->is_ip) {
        ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();
        if (!ip || !ASN1_OCTET_STRING_set(ip, n->ip, (int)n->ip_len)) {
            ASN1_OCTET_STRING_free(ip);
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (!dns || !ASN1_STRING_set(dns, n->s, -1)) {
            ASN1_IA5STRING_free(dns);
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(san, gn))
        goto fail;
    gn = NULL;

    /* CN is informational (clients check the SAN) and limited to 64 bytes. */
    X509_NAME *subj = X509_get_subject_name(x);
    bool cn_fits = strlen(n->s) <= 64;
    /* X509_set_pubkey is most of the cost of a leaf (~170 us: OpenSSL 3
     * encodes the key through its provider machinery); a copied template
     * would decode it instead (~120 us) and hold a private copy of the key
     * per leaf, where this shares srv->key. */
    if (!X509_set_version(x, X509_VERSION_3) || tls_rand_serial(x) < 0 ||
        !X509_NAME_add_entry_by_txt(subj, cn_fits ? "CN" : "O", MBSTRING_UTF8,
                                    (const unsigned char *)(cn_fits ? n->s : "portcullis"), -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(srv->ca->cert)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), LEAF_DAYS, 0, NULL) ||
        !X509_set_pubkey(x, srv->key) || !X509_add_ext(x, srv->ext_bc, -1) ||
        !X509_add_ext(x, srv->ext_ku, -1) || !X509_add_ext(x, srv->ext_eku, -1) ||
        !X509_add_ext(x, srv->ext_aki, -1) ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) != 1 ||
        X509_sign(x, srv->ca->key, EVP_sha256()) <= 0)
        goto fail;
    GENERAL_NAMES_free(san);
    return x;

fail:
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(san);
    X509_free(x);
    return NULL;
}

static void lru_unlink(struct tls_server *srv, struct leaf *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        srv->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        srv->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct tls_server *srv, struct leaf *e)
{
    e->prev = NULL;
    e->next = srv->head;
    if (srv->head)
        srv->head->prev = e;
    srv->head = e;
    if (!srv->tail)
        srv->tail = e;
}

static void cache_evict_tail(struct tls_server *srv)
{
    struct leaf *e = srv->tail;
    struct leaf **pp = &srv->buckets[e->hash & (srv->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(srv, e);
    X509_free(e->cert);
    free(e);
    srv->stats.entries--;
    srv->stats.evictions++;
}

/* The leaf for n, from the cache or issued now (borrowed: valid until the
 * entry is evicted; SSL_use_cert_and_key takes its own reference). */
static int cache_get(struct tls_server *srv, const struct tls_name *n, X509 **ret)
{
    uint32_t h = name_hash(srv, n->s);
    struct leaf **bucket = &srv->buckets[h & (srv->nbuckets - 1)];
    time_t now = time(NULL);
    struct leaf *e;
    for (e = *bucket; e; e = e->hnext)
        if (e->hash == h && strcmp(e->name, n->s) == 0)
            break;
    /* A leaf near its end (or from a clock that went back) is reissued. */
    if (e && now - e->issued < LEAF_REISSUE_AGE && now >= e->issued - 3600) {
        srv->stats.hits++;
        lru_unlink(srv, e);
        lru_push_front(srv, e);
        *ret = e->cert;
        return 0;
    }
    srv->stats.misses++;
    X509 *x = leaf_issue(srv, n);
    if (!x)
        return -ENOMEM;
    if (e) {
        X509_free(e->cert);
        e->cert = x;
        e->issued = now;
        lru_unlink(srv, e);
        lru_push_front(srv, e);
        *ret = x;
        return 0;
    }
    size_t len = strlen(n->s);
    e = malloc(sizeof(*e) + len + 1);
    if (!e) {
        X509_free(x);
        return -ENOMEM;
    }
    if (srv->stats.entries >= srv->stats.capacity)
        cache_evict_tail(srv);
    memcpy(e->name, n->s, len + 1);
    e->hash = h;
    e->issued = now;
    e->cert = x;
    e->hnext = *bucket;
    *bucket = e;
    lru_push_front(srv, e);
    srv->stats.entries++;
    *ret = x;
    return 0;
}

int tls_conn_new_server(struct tls_server *srv, const char *name, unsigned flags,
                        struct tls_conn **ret)
{
    struct tls_name n;
    if (!srv || !ret || tls_name_parse(name, &n) < 0)
        return -EINVAL;
    ERR_clear_error();
    SSL *ssl = SSL_new(srv->ctx);
    if (!ssl)
        goto fail;
    /* A refused connection ends at the ClientHello: it needs no leaf. */
    if (!(flags & TLS_CONN_F_REFUSE)) {
        X509 *leaf;
        int r = cache_get(srv, &n, &leaf);
        if (r < 0) {
            SSL_free(ssl);
            ERR_clear_error();
            return r;
        }
        if (SSL_use_cert_and_key(ssl, leaf, srv->key, NULL, 1) != 1)
            goto fail;
    }
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned sid_len = 0;
    if (!EVP_Digest(n.s, strlen(n.s), sid, &sid_len, EVP_sha256(), NULL) ||
        !SSL_set_session_id_context(ssl, sid, sid_len))
        goto fail;
    SSL_set_accept_state(ssl);
    return tls_conn_wrap(ssl, flags, true, ret);

fail:
    SSL_free(ssl);
    ERR_clear_error();
    return -ENOMEM;
}
