/*
 * One TLS connection on a pair of memory BIOs, the upstream leg's SSL_CTX
 * and its session resumption, and the name rules shared by both legs.
 *
 * Every entry point that calls into OpenSSL clears the thread's error queue
 * first and leaves it empty, so one connection's errors are never reported
 * as another's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls-int.h"

/* An empty memory BIO whose buffer grew past this is replaced by a new one,
 * so an idle connection does not keep the peak of a burst. */
#define BIO_KEEP (16 * 1024)
#define EXTRA_CA_MAX (16 * 1024 * 1024)

static const unsigned char alpn_offer_http11[] = "\x08http/1.1";

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    unsigned flags;
    bool server;
    bool failed;
    bool closed;    /* close_notify received */
    bool refused;   /* TLS_CONN_F_REFUSE took effect */
    int alert_rcvd; /* 0x100 | description of a fatal alert received */
    /* client with a session key: "key" NUL "name" NUL (malloc'ed); NULL
     * without resumption */
    char *sess_key;
    const char *sess_name; /* inside sess_key */
    char err[128];
};

struct tls_client {
    SSL_CTX *ctx;   /* its app data: this tls_client, NULL once freed */
    bool own_store; /* its cert store is its own, not the shared base */
    struct tls_sess_cache *sessions;
    uint64_t offered, resumed;
};

int tls_name_parse(const char *in, struct tls_name *ret)
{
    if (!in)
        return -EINVAL;
    size_t len = strnlen(in, TLS_NAME_MAX + 1);
    if (len == 0 || len > TLS_NAME_MAX)
        return -EINVAL;
    memset(ret, 0, sizeof(*ret));
    if (strchr(in, ':')) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, in, &a6) != 1)
            return -EINVAL;
        ret->is_ip = true;
        ret->ip_len = 16;
        memcpy(ret->ip, &a6, 16);
        /* canonical form, so "2001:DB8::1" and "2001:db8:0::1" share a leaf */
        if (!inet_ntop(AF_INET6, &a6, ret->s, sizeof(ret->s)))
            return -EINVAL;
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
                   ch == '.'))
            return -EINVAL;
        ret->s[i] = ch;
    }
    ret->s[len] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, ret->s, &a4) == 1) {
        ret->is_ip = true;
        ret->ip_len = 4;
        memcpy(ret->ip, &a4, 4);
    }
    return 0;
}

/* ---- connections ---- */

struct tls_conn *tls_conn_of(const SSL *ssl)
{
    return SSL_get_app_data(ssl);
}

SSL *tls_conn_ssl(const struct tls_conn *c)
{
    return c->ssl;
}

/* The tls_client a client-side SSL was made by; NULL once it is freed. */
static struct tls_client *client_of(const SSL *ssl)
{
    return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

unsigned tls_conn_flags(const struct tls_conn *c)
{
    return c->flags;
}

void tls_conn_mark_refused(struct tls_conn *c)
{
    c->refused = true;
}

static void on_info(const SSL *ssl, int where, int val)
{
    /* SSL_CB_READ_ALERT shares its SSL_CB_ALERT bit with SSL_CB_WRITE_ALERT */
    if ((where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT || (val >> 8) != SSL3_AL_FATAL)
        return;
    struct tls_conn *c = tls_conn_of(ssl);
    if (c && !c->alert_rcvd)
        c->alert_rcvd = 0x100 | (val & 0xff);
}

static BIO *mem_bio_new(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    /* empty means "try again later", never end of file */
    if (b)
        BIO_set_mem_eof_return(b, -1);
    return b;
}

int tls_conn_wrap(SSL *ssl, unsigned flags, bool server, struct tls_conn **ret)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    BIO *r = mem_bio_new(), *w = mem_bio_new();
    if (!c || !r || !w) {
        BIO_free(r);
        BIO_free(w);
        free(c);
        SSL_free(ssl);
        ERR_clear_error();
        return -ENOMEM;
    }
    c->ssl = ssl;
    c->rbio = r;
    c->wbio = w;
    c->flags = flags;
    c->server = server;
    SSL_set_bio(ssl, r, w);
    SSL_set_app_data(ssl, c);
    SSL_set_info_callback(ssl, on_info);
    *ret = c;
    return 0;
}

struct tls_conn *tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return NULL;
    SSL_free(c->ssl);
    free(c->sess_key);
    free(c);
    return NULL;
}

/* Store a copy of sess for c's key.  A copy, because SSL_free marks the
 * session of an SSL that sent no close_notify as not resumable (a TLS 1.0
 * rule, dropped since: RFC 4346 7.2.1), and a flow often ends with a bare
 * FIN; failures are handled by conn_fail instead. */
static void client_store(struct tls_client *cli, const struct tls_conn *c, const SSL_SESSION *sess)
{
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (copy && tls_sess_cache_put(cli->sessions, c->sess_key, c->sess_name, copy) < 0)
        SSL_SESSION_free(copy);
    ERR_clear_error();
}

/* Latch the failure and describe it, most specific cause first. */
static void conn_fail(struct tls_conn *c, int sslerr)
{
    if (c->failed) {
        ERR_clear_error();
        return;
    }
    c->failed = true;
    /* Whatever the cause (the server changed its certificate, rejects what
     * was offered, or broke the connection later), the key's next
     * connection starts afresh. */
    struct tls_client *cli = c->sess_key ? client_of(c->ssl) : NULL;
    if (cli)
        tls_sess_cache_drop(cli->sessions, c->sess_key);
    long v = c->server ? X509_V_OK : SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
        snprintf(c->err, sizeof(c->err), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (c->alert_rcvd)
        snprintf(c->err, sizeof(c->err), "alert: %s",
                 SSL_alert_desc_string_long(c->alert_rcvd & 0xff));
    else if (c->refused)
        snprintf(c->err, sizeof(c->err), "refused: sent an access denied alert");
    else if (ERR_peek_error())
        snprintf(c->err, sizeof(c->err), "%s", tls_ossl_reason("TLS error"));
    else if (sslerr == SSL_ERROR_ZERO_RETURN)
        snprintf(c->err, sizeof(c->err), "peer closed the connection during the handshake");
    else
        snprintf(c->err, sizeof(c->err), "TLS error (%d)", sslerr);
    ERR_clear_error();
}

int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        size_t n = 0;
        if (BIO_write_ex(c->rbio, p, len, &n) != 1 || n == 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        p += n;
        len -= n;
    }
    return 0;
}

/* A client handshake with a session key finished. */
static void client_resume_done(struct tls_conn *c)
{
    struct tls_client *cli = client_of(c->ssl);
    if (!cli || !SSL_session_reused(c->ssl))
        return;
    cli->resumed++;
    /* TLS 1.2 makes no new session on a resumption (OpenSSL calls the
     * new-session callback after full handshakes only), and its sessions
     * may be used again (RFC 5077 3.4): the one just used (with the ticket
     * the server renewed, if it did) goes back.  TLS 1.3 servers send fresh
     * tickets instead, which on_new_session stores. */
    const SSL_SESSION *s = SSL_get_session(c->ssl);
    if (SSL_version(c->ssl) < TLS1_3_VERSION && s && SSL_SESSION_is_resumable(s))
        client_store(cli, c, s);
}

int tls_conn_handshake(struct tls_conn *c)
{
    if (c->failed)
        return -EPROTO;
    if (SSL_is_init_finished(c->ssl))
        return 1;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (c->sess_key)
            client_resume_done(c);
        /* The record buffers (~17 KiB each) outlive the handshake otherwise:
         * SSL_MODE_RELEASE_BUFFERS only frees them in later reads/writes. */
        SSL_free_buffers(c->ssl);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    conn_fail(c, e);
    return -EPROTO;
}

bool tls_conn_handshake_done(const struct tls_conn *c)
{
    return !c->failed && SSL_is_init_finished(c->ssl);
}

static void shrink_rbio(struct tls_conn *c)
{
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(c->rbio) != 0 || !SSL_is_init_finished(c->ssl))
        return;
    BIO_get_mem_ptr(c->rbio, &bm);
    if (!bm || bm->max <= BIO_KEEP)
        return;
    BIO *b = mem_bio_new();
    if (!b)
        return;
    SSL_set0_rbio(c->ssl, b); /* frees the old one */
    c->rbio = b;
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
    if (c->failed)
        return -EPROTO;
    if (c->closed)
        return TLS_CONN_CLOSED;
    if (len == 0)
        return 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    /* Callers poll for buffered plaintext often: nothing held, nothing fed,
     * no call into OpenSSL. */
    if (!SSL_has_pending(c->ssl) && BIO_ctrl_pending(c->rbio) == 0)
        return 0;
    ERR_clear_error();
    size_t n = 0;
    if (SSL_read_ex(c->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    int e = SSL_get_error(c->ssl, 0);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        /* (SSL_get_error says WANT_* only with an empty error queue: nothing
         * to clear.)  Buffers stay for the next record; tls_conn_trim frees
         * them once the connection is idle. */
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        c->closed = true;
        return TLS_CONN_CLOSED;
    default:
        conn_fail(c, e);
        return -EPROTO;
    }
}

ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
    if (c->failed)
        return -EPROTO;
    if (!SSL_is_init_finished(c->ssl))
        return -ENOTCONN;
    if (len == 0)
        return 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    ERR_clear_error();
    size_t n = 0;
    if (SSL_write_ex(c->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0; /* not with memory BIOs; nothing was taken */
    conn_fail(c, e);
    return -EPROTO;
}

void tls_conn_close_notify(struct tls_conn *c)
{
    if (c->failed || !SSL_is_init_finished(c->ssl) ||
        (SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN))
        return;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t tls_conn_out_peek(struct tls_conn *c, const uint8_t **ret_data)
{
    char *p = NULL;
    long n = BIO_get_mem_data(c->wbio, &p);
    *ret_data = n > 0 ? (const uint8_t *)p : NULL;
    return n > 0 ? (size_t)n : 0;
}

void tls_conn_out_consume(struct tls_conn *c, size_t n)
{
    size_t pending = BIO_ctrl_pending(c->wbio);
    if (n >= pending) {
        /* All of it (the usual case): no copy.  The buffer stays for the
         * next burst; tls_conn_trim drops it once the connection is idle. */
        (void)BIO_reset(c->wbio);
        return;
    }
    char scratch[4096];
    while (n > 0) {
        int k = BIO_read(c->wbio, scratch, n < sizeof(scratch) ? (int)n : (int)sizeof(scratch));
        if (k <= 0)
            break;
        n -= (size_t)k;
    }
}

void tls_conn_trim(struct tls_conn *c)
{
    if (!c || c->failed || !SSL_is_init_finished(c->ssl))
        return;
    shrink_rbio(c);
    BUF_MEM *bm = NULL;
    BIO *b;
    if (BIO_ctrl_pending(c->wbio) == 0 && (BIO_get_mem_ptr(c->wbio, &bm), bm) &&
        bm->max > BIO_KEEP && (b = mem_bio_new())) {
        SSL_set0_wbio(c->ssl, b);
        c->wbio = b;
    }
    SSL_free_buffers(c->ssl); /* only when no partial record is held */
    ERR_clear_error();
}

size_t tls_conn_out_pending(const struct tls_conn *c)
{
    return BIO_ctrl_pending(c->wbio);
}

bool tls_conn_resumed(const struct tls_conn *c)
{
    return tls_conn_handshake_done(c) && SSL_session_reused(c->ssl);
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    /* Our server selects, and our client offers, nothing else. */
    if (len == sizeof(alpn_offer_http11) - 2 && memcmp(p, alpn_offer_http11 + 1, len) == 0)
        return "http/1.1";
    return "";
}

const char *tls_conn_error(const struct tls_conn *c)
{
    return c->err;
}

/* ---- the upstream leg ---- */

static int read_extra_ca(const char *file, char **ret_buf, size_t *ret_len)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    if (st.st_size > EXTRA_CA_MAX) {
        r = -EFBIG;
        goto out;
    }
    size_t cap = (size_t)st.st_size, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    while (len < cap) {
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            free(buf);
            goto out;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    *ret_buf = buf;
    *ret_len = len;
out:
    close(fd);
    return r;
}

static int load_extra_ca(X509_STORE *store, const char *file, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int r = read_extra_ca(file, &data, &len);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", file, strerror(-r));
        return r;
    }
    BIO *b = BIO_new_mem_buf(data, (int)len);
    if (!b) {
        free(data);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    unsigned count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL))) {
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (!ok) {
            snprintf(err, errlen, "%s: %s", file, tls_ossl_reason("cannot add a certificate"));
            r = -ENOMEM;
            goto out;
        }
        count++;
    }
    /* The loop ends at the first non-certificate: fine after the last one. */
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        snprintf(err, errlen, "%s: certificate %u: %s", file, count + 1,
                 tls_ossl_reason("unreadable"));
        r = -EINVAL;
    } else if (count == 0) {
        snprintf(err, errlen, "%s: no PEM certificate in it", file);
        r = -EINVAL;
    }
out:
    BIO_free(b);
    free(data);
    ERR_clear_error();
    return r;
}

/*
 * The trust every tls_client starts from: the system roots and the daemon's
 * extra CA file.  Loading the system bundle takes ~20 ms of CPU, which on
 * the event loop would stall every flow at each new sandbox's first TLS
 * connection, so it is built once and shared (an X509_STORE is reference
 * counted), and built again only when one of its files has changed.  A
 * client that adds a file of its own gets a private copy first.
 */
struct file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static struct {
    X509_STORE *store;
    char *extra; /* the extra CA file it was built with, or NULL */
    struct file_id sys_id, extra_id;
} base_trust;

static void file_id_of(const char *path, struct file_id *ret)
{
    struct stat st;
    memset(ret, 0, sizeof(*ret));
    if (!path || stat(path, &st) < 0)
        return;
    ret->exists = true;
    ret->dev = st.st_dev;
    ret->ino = st.st_ino;
    ret->size = st.st_size;
    ret->mtime = st.st_mtim;
}

static bool file_id_equal(const struct file_id *a, const struct file_id *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The system bundle OpenSSL loads (SSL_CERT_FILE overrides the default). */
static const char *system_bundle(void)
{
    const char *env = getenv(X509_get_default_cert_file_env());
    return env && *env ? env : X509_get_default_cert_file();
}

static bool same_path(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A new reference to the base store for extra_ca_file, built if needed. */
static int base_trust_get(const char *extra_ca_file, X509_STORE **ret, char *err, size_t errlen)
{
    struct file_id sys_id, extra_id;
    file_id_of(system_bundle(), &sys_id);
    file_id_of(extra_ca_file, &extra_id);
    if (base_trust.store && same_path(base_trust.extra, extra_ca_file) &&
        file_id_equal(&base_trust.sys_id, &sys_id) &&
        file_id_equal(&base_trust.extra_id, &extra_id))
        goto out;

    char *extra = extra_ca_file ? strdup(extra_ca_file) : NULL;
    X509_STORE *store = X509_STORE_new();
    if (!store || (extra_ca_file && !extra)) {
        X509_STORE_free(store);
        free(extra);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ERR_clear_error();
    if (!X509_STORE_set_default_paths(store)) {
        snprintf(err, errlen, "system trust store: %s", tls_ossl_reason("cannot load"));
        X509_STORE_free(store);
        free(extra);
        ERR_clear_error();
        return -EIO;
    }
    ERR_clear_error();
    if (extra_ca_file) {
        int r = load_extra_ca(store, extra_ca_file, err, errlen);
        if (r < 0) {
            X509_STORE_free(store);
            free(extra);
            return r;
        }
    }
    /* Clients made before keep their reference to the old one. */
    X509_STORE_free(base_trust.store);
    free(base_trust.extra);
    base_trust.store = store;
    base_trust.extra = extra;
    base_trust.sys_id = sys_id;
    base_trust.extra_id = extra_id;
out:
    if (!X509_STORE_up_ref(base_trust.store)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *ret = base_trust.store;
    return 0;
}

/* A private copy of the shared store, to add to: its certificates and CRLs,
 * and the same lazy lookups in the system's hashed directory and store. */
static X509_STORE *store_copy(X509_STORE *from)
{
    X509_STORE *to = X509_STORE_new();
    if (!to)
        return NULL;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(from);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        int ok = 1;
        if (X509_OBJECT_get_type(o) == X509_LU_X509)
            ok = X509_STORE_add_cert(to, X509_OBJECT_get0_X509(o));
        else if (X509_OBJECT_get_type(o) == X509_LU_CRL)
            ok = X509_STORE_add_crl(to, X509_OBJECT_get0_X509_CRL(o));
        if (!ok) {
            X509_STORE_free(to);
            return NULL;
        }
    }
    /* What X509_STORE_set_default_paths adds besides the bundle: both are
     * looked up only when a chain needs them; failing to add them is not
     * fatal there either. */
    X509_LOOKUP *l = X509_STORE_add_lookup(to, X509_LOOKUP_hash_dir());
    if (l)
        X509_LOOKUP_add_dir(l, NULL, X509_FILETYPE_DEFAULT);
    l = X509_STORE_add_lookup(to, X509_LOOKUP_store());
    if (l)
        X509_LOOKUP_add_store(l, NULL);
    ERR_clear_error();
    return to;
}

struct tls_client *tls_client_free(struct tls_client *cli)
{
    if (!cli)
        return NULL;
    if (cli->ctx) {
        /* connections still open hold the SSL_CTX, not cli */
        SSL_CTX_set_app_data(cli->ctx, NULL);
        SSL_CTX_free(cli->ctx);
    }
    tls_sess_cache_free(cli->sessions);
    free(cli);
    return NULL;
}

X509_STORE *tls_client_cert_store(const struct tls_client *cli)
{
    return cli ? SSL_CTX_get_cert_store(cli->ctx) : NULL;
}

void tls_client_stats(const struct tls_client *cli, struct tls_resume_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    tls_sess_cache_stats(cli->sessions, ret);
    ret->offered = cli->offered;
    ret->resumed = cli->resumed;
}

void tls_client_set_session_capacity(struct tls_client *cli, size_t capacity)
{
    tls_sess_cache_set_capacity(cli->sessions, capacity);
}

/*
 * OpenSSL hands over each session a handshake makes: at the end of a full
 * TLS 1.2 handshake, and for every TLS 1.3 NewSessionTicket (after the
 * handshake, from tls_conn_read).  The cache keeps a copy: returns 0, so
 * OpenSSL drops the reference it lent.
 */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *c = tls_conn_of(ssl);
    struct tls_client *cli = client_of(ssl);
    /* SSL_VERIFY_PEER fails an unverified handshake before this; checked
     * anyway, as a session is trusted without a look at the chain again. */
    if (c && cli && c->sess_key && !c->failed && SSL_get_verify_result(ssl) == X509_V_OK &&
        SSL_SESSION_is_resumable(sess))
        client_store(cli, c, sess);
    return 0;
}

int tls_client_new(const char *extra_ca_file, struct tls_client **ret, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!ret)
        return -EINVAL;
    struct tls_client *cli = calloc(1, sizeof(*cli));
    if (!cli) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ERR_clear_error();
    SSL_CTX *ctx = cli->ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        tls_sess_cache_new(&cli->sessions) < 0) {
        snprintf(err, errlen, "SSL_CTX_new: %s", tls_ossl_reason("out of memory"));
        tls_client_free(cli);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_CTX_set_app_data(ctx, cli);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Sessions go to our own cache, by session key, not OpenSSL's (which
     * would key them by session id, useless to a client). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    /* An unverified server ends the handshake: never a session with it. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_STORE *store;
    int r = base_trust_get(extra_ca_file, &store, err, errlen);
    if (r < 0) {
        tls_client_free(cli);
        return r;
    }
    SSL_CTX_set_cert_store(ctx, store); /* takes our reference */
    *ret = cli;
    return 0;
}

int tls_client_add_ca_file(struct tls_client *cli, const char *file, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!cli || !file)
        return -EINVAL;
    if (!cli->own_store) {
        /* Never add to the store other clients share. */
        X509_STORE *own = store_copy(SSL_CTX_get_cert_store(cli->ctx));
        if (!own) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        SSL_CTX_set_cert_store(cli->ctx, own);
        cli->own_store = true;
    }
    return load_extra_ca(SSL_CTX_get_cert_store(cli->ctx), file, err, errlen);
}

int tls_conn_new_client(struct tls_client *cli, const char *name, const char *session_key,
                        unsigned flags, struct tls_conn **ret)
{
    struct tls_name n;
    size_t klen = session_key ? strnlen(session_key, TLS_SESSION_KEY_MAX + 1) : 0;
    if (!cli || !ret || tls_name_parse(name, &n) < 0 ||
        (session_key && (klen == 0 || klen > TLS_SESSION_KEY_MAX)))
        return -EINVAL;
    ERR_clear_error();
    SSL *ssl = SSL_new(cli->ctx);
    if (!ssl)
        goto fail;
    if (n.is_ip) {
        /* RFC 6066: no SNI for an address */
        if (!X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), n.ip, n.ip_len))
            goto fail;
    } else {
        if (!SSL_set_tlsext_host_name(ssl, n.s) || !SSL_set1_host(ssl, n.s))
            goto fail;
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    /* SSL_set_alpn_protos returns 0 on success */
    if ((flags & TLS_CONN_F_ALPN_HTTP11) &&
        SSL_set_alpn_protos(ssl, alpn_offer_http11, sizeof(alpn_offer_http11) - 1) != 0)
        goto fail;
    SSL_set_connect_state(ssl);
    struct tls_conn *c;
    int r = tls_conn_wrap(ssl, flags & ~(unsigned)TLS_CONN_F_REFUSE, false, &c);
    if (r < 0)
        return r;
    if (session_key) {
        size_t nlen = strlen(n.s);
        c->sess_key = malloc(klen + 1 + nlen + 1);
        if (!c->sess_key) {
            tls_conn_free(c);
            return -ENOMEM;
        }
        memcpy(c->sess_key, session_key, klen);
        c->sess_key[klen] = '\0';
        memcpy(c->sess_key + klen + 1, n.s, nlen + 1);
        c->sess_name = c->sess_key + klen + 1;
        /* Offered before the first handshake call; SSL_set_session takes its
         * own reference.  Failing to set it only costs the resumption. */
        SSL_SESSION *s = tls_sess_cache_get(cli->sessions, c->sess_key, c->sess_name);
        if (s && SSL_set_session(ssl, s) == 1)
            cli->offered++;
        SSL_SESSION_free(s);
        ERR_clear_error();
    }
    *ret = c;
    return 0;

fail:
    SSL_free(ssl);
    ERR_clear_error();
    return -ENOMEM;
}
