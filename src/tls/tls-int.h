/*
 * Private to src/tls: what ca.c, leaf.c and conn.c share.  Not installed,
 * not included outside this folder.
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

/* A random positive 127-bit serial number into x.  0 or -errno. */
int tls_rand_serial(X509 *x);

/* The reason of the oldest queued OpenSSL error in words, or fallback. */
const char *tls_ossl_reason(const char *fallback);

#endif
