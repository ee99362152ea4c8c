/*
 * tlshello: parse a TLS ClientHello from the first bytes a client sent,
 * without consuming them (the caller peeks with MSG_PEEK and passes what it
 * has).  Pure: no I/O, no allocation, no globals, no logging.
 *
 * The bytes are TLS records (RFC 8446 5.1): the ClientHello handshake message
 * may be fragmented over several handshake records, and the records may
 * arrive split over TCP segments; the caller simply passes the whole prefix
 * it has seen so far, again, each time more arrives.
 */
#ifndef PCL_TLSHELLO_H
#define PCL_TLSHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record bytes (headers included) we look at before giving up: a bound on
 * what the caller must be able to peek.  Real ClientHellos, post-quantum key
 * shares included, stay well under it. */
#define TLS_HELLO_MAX_BYTES 16384
#define TLS_HELLO_MAX_SNI 253
#define TLS_HELLO_MAX_ALPN 8      /* protocol names kept; more are counted only */
#define TLS_HELLO_MAX_ALPN_LEN 32 /* longer names (and names with a NUL) are counted, not kept */

enum tls_hello_status {
    TLS_HELLO_OK = 0,    /* a complete ClientHello: *ret is filled */
    TLS_HELLO_NEED_MORE, /* a valid prefix so far: pass it again with more bytes */
    TLS_HELLO_NOT_TLS,   /* not a TLS handshake record (decided from the first bytes) */
    TLS_HELLO_MALFORMED, /* TLS, but not a well-formed ClientHello */
    TLS_HELLO_TOO_LARGE, /* no complete ClientHello within TLS_HELLO_MAX_BYTES */
    TLS_HELLO_STATUS_MAX,
};

struct tls_hello {
    bool has_sni;
    /* The server_name extension's host_name, NUL-terminated, as sent (letters,
     * digits, '-', '_', '.' only: anything else is MALFORMED). */
    char sni[TLS_HELLO_MAX_SNI + 1];
    size_t n_alpn; /* names in the ALPN extension (all of them) */
    size_t n_alpn_kept;
    /* In the client's order, NUL-terminated: the first TLS_HELLO_MAX_ALPN
     * names of at most TLS_HELLO_MAX_ALPN_LEN bytes that hold no NUL. */
    char alpn[TLS_HELLO_MAX_ALPN][TLS_HELLO_MAX_ALPN_LEN + 1];
    bool has_alpn;           /* the extension was present */
    uint16_t legacy_version; /* client_version field of the ClientHello */
    bool offers_tls13;       /* supported_versions lists 0x0304 */
    size_t record_bytes;     /* bytes of the records that carried the ClientHello;
                                what follows them is not looked at */
};

/*
 * Parse buf[0, len).  Returns a status; *ret is filled only with TLS_HELLO_OK
 * (ret may be NULL).
 * NOT_TLS is returned as soon as the first bytes cannot start a TLS handshake
 * record (byte 0 not 22, byte 1 not 3, byte 2 above 4), so a caller can stop
 * waiting at once; MALFORMED for a handshake record that is not a ClientHello,
 * a later record that is not a handshake record, an empty record or one over
 * 2^14 bytes, a record carrying bytes past the ClientHello, a length that
 * does not add up, duplicate extensions, more than one host_name, an empty or
 * invalid host_name, an ALPN list that does not add up or has an empty name.
 * TOO_LARGE as soon as the lengths seen show the records cannot end within
 * TLS_HELLO_MAX_BYTES, and at the latest with that many bytes: NEED_MORE
 * always means fewer are there.
 * An answer other than NEED_MORE does not change when more bytes arrive, and
 * every strict prefix of a ClientHello's records is NEED_MORE.  Never reads
 * outside buf.
 */
enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *ret);

/* "ok", "need_more", "not_tls", "malformed", "too_large"; NULL for others. */
const char *tls_hello_status_name(enum tls_hello_status s);

#endif
