/*
 * tls: portcullisd's TLS machinery on OpenSSL 3, with no sockets and no
 * libuv, so every part runs in unit tests:
 *
 *  - the interception CA (EC P-256): created once, its key readable by root
 *    only, never copied anywhere; its certificate goes into sandbox trust
 *    stores;
 *  - tls_server: leaf certificates per name, signed by the CA, held in a
 *    bounded LRU cache, for the leg towards the sandboxed client;
 *  - tls_client: the leg towards the upstream, which verifies the server's
 *    chain (system roots plus an optional extra bundle) and its name, and
 *    resumes sessions from earlier verified handshakes with the same server;
 *  - tls_conn: one TLS connection on memory BIOs.  The caller moves
 *    ciphertext between the connection and its socket: what it reads from the
 *    socket goes in with tls_conn_feed, what tls_conn_out_peek shows goes out
 *    and is then dropped with tls_conn_out_consume.
 *
 * Everything returns 0 (or a count) or -errno; nothing logs: errors are
 * described in caller-provided buffers or by tls_conn_error.
 */
#ifndef PCL_TLS_H
#define PCL_TLS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_DEFAULT_CA_DIR "/var/lib/portcullis/ca"
#define TLS_CA_CERT_FILE "ca.crt" /* PEM certificate, 0644 */
#define TLS_CA_KEY_FILE "ca.key"  /* PEM private key, 0600, root */
#define TLS_LEAF_CACHE_DEFAULT 1024
#define TLS_SESSION_CACHE_DEFAULT 256 /* upstream sessions per tls_client */
#define TLS_SESSION_KEY_MAX 320       /* bytes, "name|address|port" fits */

/* $PORTCULLIS_CA_DIR when set to an absolute path, else TLS_DEFAULT_CA_DIR. */
const char *tls_ca_dir(void);

/* ---- the CA ---- */

struct tls_ca;

/*
 * Load the CA from dir, creating it when absent: dir (and missing parents)
 * 0700, a new EC P-256 key (0600) and a self-signed CA certificate (0644,
 * CN "portcullis interception CA <hostname>", 10 years, basicConstraints
 * CA:TRUE critical, keyUsage keyCertSign+cRLSign critical, SKI).  Creation
 * runs under an flock on dir/ca.lock and writes through temporary files and
 * rename, so concurrent first runs end with one CA.  Refuses a key file that
 * is not a regular file owned by the caller's uid with no group/other bits,
 * and a key that does not match the certificate.  On failure fills err.
 */
int tls_ca_load_or_create(const char *dir, struct tls_ca **ret, char *err, size_t errlen);
/* Load only (no creation): the tool uses this to find the certificate. */
int tls_ca_load(const char *dir, struct tls_ca **ret, char *err, size_t errlen);
/* The CA certificate as PEM (NUL-terminated, malloc'ed; caller frees). */
int tls_ca_cert_pem(const struct tls_ca *ca, char **ret_pem, size_t *ret_len);
/* Accepts NULL; returns NULL. */
struct tls_ca *tls_ca_free(struct tls_ca *ca);

/* ---- the client-facing leg ---- */

struct tls_server;
struct tls_conn;

struct tls_cache_stats {
    uint64_t hits, misses, evictions;
    size_t entries, capacity;
};

/*
 * A server side issuing leaves from ca (which must outlive it).  One EC
 * P-256 key, made here, serves every leaf.  Leaves: subject CN = name, SAN
 * DNS:name (or IP:addr when name is an IPv4/IPv6 literal), serial random,
 * valid from 1 hour ago for 7 days, extendedKeyUsage serverAuth, AKI; sent
 * alone (clients trust the CA itself).  Cache entries are leaf certificates
 * (about 3 KiB each), attached per connection to one shared SSL_CTX (TLS 1.2
 * and 1.3; a leaf close to expiry is issued anew).  capacity bounds the
 * entries (LRU eviction); 0 means TLS_LEAF_CACHE_DEFAULT.
 */
int tls_server_new(const struct tls_ca *ca, size_t capacity, struct tls_server **ret);
struct tls_server *tls_server_free(struct tls_server *srv);
void tls_server_stats(const struct tls_server *srv, struct tls_cache_stats *ret);

enum tls_conn_flags {
    TLS_CONN_F_ALPN_HTTP11 = 1 << 0, /* offer (client) / select (server) only http/1.1 */
    /* server: answer the ClientHello with a fatal access_denied alert (the
     * upstream failed verification: the client must not get a session). */
    TLS_CONN_F_REFUSE = 1 << 1,
};

/* A server-side connection presenting the leaf for name (from the cache, or
 * issued now).  With ALPN_HTTP11 http/1.1 is selected when the client offers
 * it; otherwise no ALPN is selected.  Returns 0, -ENOMEM, -EINVAL (bad name). */
int tls_conn_new_server(struct tls_server *srv, const char *name, unsigned flags,
                        struct tls_conn **ret);

/* ---- the upstream leg ---- */

struct tls_client;

struct tls_resume_stats {
    uint64_t offered;   /* connections that offered a cached session */
    uint64_t resumed;   /* handshakes the server let resume */
    uint64_t evictions; /* sessions pushed out by the bound */
    size_t entries, capacity;
};

/*
 * A client side verifying upstream servers against the system roots plus,
 * when extra_ca_file is not NULL, the PEM certificates in it (unreadable or
 * empty: an error in err).  TLS 1.2 and 1.3.  Those are loaded once, in a
 * store all clients share, and again when the system bundle or
 * extra_ca_file changes on disk (a client keeps the store it started with).
 *
 * It keeps the newest session (TLS 1.3 ticket, or TLS 1.2 ticket or session
 * id) of each session key's last verified handshake, at most
 * TLS_SESSION_CACHE_DEFAULT of them (LRU; each holds the server's chain, a
 * few KiB).  Not thread-safe.
 */
int tls_client_new(const char *extra_ca_file, struct tls_client **ret, char *err, size_t errlen);
/* Trust the PEM certificates in file too (the same checks as extra_ca_file);
 * the client gets a private copy of the shared store to add them to. */
int tls_client_add_ca_file(struct tls_client *cli, const char *file, char *err, size_t errlen);
/* Frees the cached sessions too.  Connections may outlive their client (they
 * then store no session).  Accepts NULL; returns NULL. */
struct tls_client *tls_client_free(struct tls_client *cli);
void tls_client_stats(const struct tls_client *cli, struct tls_resume_stats *ret);

/*
 * A client-side connection to a server that must prove it is name: a DNS
 * name is sent as SNI and checked against the certificate; an IP literal is
 * checked as an address (no SNI).
 *
 * session_key (NULL: no resumption; else 1..TLS_SESSION_KEY_MAX bytes, e.g.
 * "up.test|198.18.0.10|8443") names the server for resumption: a session
 * cached under the same key, from a verified handshake for the same name, is
 * offered (and taken out of the cache: one use); the sessions this
 * connection gets are stored under the key; a failure (in the handshake or
 * later) forgets the key's session.  Sessions arriving after the handshake
 * (TLS 1.3 tickets) are stored while tls_conn_read runs.
 *
 * Returns 0, -EINVAL (bad name or key) or -ENOMEM.
 */
int tls_conn_new_client(struct tls_client *cli, const char *name, const char *session_key,
                        unsigned flags, struct tls_conn **ret);

/* ---- one connection ---- */

#define TLS_CONN_CLOSED (-EPIPE) /* the peer sent close_notify */

/* Ciphertext read from the socket.  Always takes all of it (the caller bounds
 * how much it reads before draining plaintext).  Returns 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len);
/* Advance the handshake: 1 done, 0 needs more input (send what
 * tls_conn_out_peek shows first), -EPROTO failed (see tls_conn_error; an
 * alert for the peer may be waiting in the output). */
int tls_conn_handshake(struct tls_conn *c);
bool tls_conn_handshake_done(const struct tls_conn *c);
/* Decrypted bytes: >0 a count, 0 nothing until more is fed, TLS_CONN_CLOSED,
 * or -EPROTO. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len);
/* Encrypt up to len bytes into the output; returns the count taken (>0),
 * -EPROTO, or -ENOTCONN before the handshake is done.  The output grows: callers write
 * again only once tls_conn_out_pending is small. */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);
/* Queue a close_notify. */
void tls_conn_close_notify(struct tls_conn *c);
/* Ciphertext waiting to go to the socket: its length, and *ret_data the
 * first bytes of it (contiguous, valid until the next call on c). */
size_t tls_conn_out_peek(struct tls_conn *c, const uint8_t **ret_data);
void tls_conn_out_consume(struct tls_conn *c, size_t n);
size_t tls_conn_out_pending(const struct tls_conn *c);
/* Give back what a burst grew (record buffers, memory BIOs) when the
 * connection is idle: an idle connection keeps ~16-22 KiB.  Buffers are
 * otherwise kept between records, for throughput. */
void tls_conn_trim(struct tls_conn *c);
/* The handshake is done and resumed a session (either side). */
bool tls_conn_resumed(const struct tls_conn *c);
/* The selected ALPN protocol ("" when none), after the handshake. */
const char *tls_conn_alpn(const struct tls_conn *c);
/* Why the connection failed, in words ("certificate verify failed: unable to
 * get local issuer certificate", "hostname mismatch", "alert: ..."); "" when
 * it did not. */
const char *tls_conn_error(const struct tls_conn *c);
/* Accepts NULL; returns NULL. */
struct tls_conn *tls_conn_free(struct tls_conn *c);

#endif
