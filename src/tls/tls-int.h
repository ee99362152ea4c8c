/*
 * Private to src/tls: what ca.c, leaf.c, conn.c and resume.c share.  Not
 * installed, not included outside this folder but by its unit test.
 */
#ifndef PCL_TLS_INT_H
#define PCL_TLS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

#define TLS_NAME_MAX 253

struct tls_ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* A validated name: lower-cased DNS name, or an IP literal in canonical form. */
struct tls_name {
    char s[TLS_NAME_MAX + 1];
    bool is_ip;
    unsigned char ip[16];
    size_t ip_len; /* 4 or 16 when is_ip */
};

/* Letters, digits, '-', '_', '.' (1..253 bytes), or an IPv4/IPv6 literal.
 * Returns 0 or -EINVAL. */
int tls_name_parse(const char *in, struct tls_name *ret);

/* Wrap ssl (owned from now on, also on failure) in a tls_conn with a fresh
 * pair of memory BIOs.  Returns 0 or -ENOMEM. */
int tls_conn_wrap(SSL *ssl, unsigned flags, bool server, struct tls_conn **ret);

/* The tls_conn an SSL belongs to (for the SSL_CTX callbacks). */
struct tls_conn *tls_conn_of(const SSL *ssl);
unsigned tls_conn_flags(const struct tls_conn *c);
/* The server refused this connection from its ClientHello callback. */
void tls_conn_mark_refused(struct tls_conn *c);

/* The SSL of a connection (for tests that need to reach into OpenSSL). */
SSL *tls_conn_ssl(const struct tls_conn *c);
/* The trust store a client verifies with (for tests: shared or its own). */
X509_STORE *tls_client_cert_store(const struct tls_client *cli);

/* ---- the upstream leg's session cache (resume.c) ---- */

/*
 * SSL_SESSIONs by session key, each recorded with the name its server was
 * verified as; at most TLS_SESSION_CACHE_DEFAULT of them, least recently
 * stored evicted first.  Not thread-safe (neither is a tls_client).
 */
struct tls_sess_cache;

int tls_sess_cache_new(struct tls_sess_cache **ret);
/* Frees every session held.  Accepts NULL; returns NULL. */
struct tls_sess_cache *tls_sess_cache_free(struct tls_sess_cache *sc);
/* A copy of key's session (the caller owns it; the cached one stays).
 * NULL when there is none, or when it was made for another name than name,
 * expired or is not resumable (then it is dropped). */
SSL_SESSION *tls_sess_cache_get(struct tls_sess_cache *sc, const char *key, const char *name);
/* Store sess (one reference, which the cache takes on success) for key and
 * name, replacing what key held.  0 or -ENOMEM (sess still the caller's). */
int tls_sess_cache_put(struct tls_sess_cache *sc, const char *key, const char *name,
                       SSL_SESSION *sess);
/* Forget key's session, if any. */
void tls_sess_cache_drop(struct tls_sess_cache *sc, const char *key);
/* Test hook: a smaller bound (0 or too large: TLS_SESSION_CACHE_DEFAULT),
 * evicting down to it now. */
void tls_sess_cache_set_capacity(struct tls_sess_cache *sc, size_t capacity);
/* Fills entries, capacity and evictions. */
void tls_sess_cache_stats(const struct tls_sess_cache *sc, struct tls_resume_stats *ret);

/* Test hook: tls_sess_cache_set_capacity on cli's cache. */
void tls_client_set_session_capacity(struct tls_client *cli, size_t capacity);

/* A random positive 127-bit serial number into x.  0 or -errno. */
int tls_rand_serial(X509 *x);

/* The reason of the oldest queued OpenSSL error in words, or fallback. */
const char *tls_ossl_reason(const char *fallback);

#endif
