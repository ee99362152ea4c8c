/*
 * The interception CA: loaded from, or created once in, a directory that only
 * its owner may enter.  The key never leaves this file except as the signer
 * of leaves (leaf.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls-int.h"

#define CA_KEY_MAX (64 * 1024)
#define CA_CERT_MAX (256 * 1024)
#define CA_LOCK_FILE "ca.lock"
#define CA_KEY_TMP "ca.key.tmp"
#define CA_CERT_TMP "ca.crt.tmp"
#define CA_DAYS 3650

const char *tls_ca_dir(void)
{
    /* secure_getenv: a set-id caller must not be pointed at another CA. */
    const char *d = secure_getenv("PORTCULLIS_CA_DIR");
    if (d && d[0] == '/')
        return d;
    return TLS_DEFAULT_CA_DIR;
}

const char *tls_ossl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

struct tls_ca *tls_ca_free(struct tls_ca *ca)
{
    if (!ca)
        return NULL;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca);
    return NULL;
}

/*
 * Read a whole small file below dirfd.  A secret must be a regular file owned
 * by the effective uid with no group/other permission bits; it is checked on
 * the open descriptor, so a swap between check and read is impossible.
 */
static int read_small_file(int dirfd, const char *dir, const char *name, size_t max, bool secret,
                           char **ret_buf, size_t *ret_len, char *err, size_t errlen)
{
    int r;
    /* O_NONBLOCK: a FIFO planted in place of the file must not hang us. */
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        set_err(err, errlen, "%s/%s: not a regular file", dir, name);
        goto fail_fd;
    }
    if (secret && st.st_uid != geteuid()) {
        r = -EPERM;
        set_err(err, errlen, "%s/%s: owned by uid %u, not %u; refusing the key", dir, name,
                (unsigned)st.st_uid, (unsigned)geteuid());
        goto fail_fd;
    }
    if (secret && (st.st_mode & 077)) {
        r = -EPERM;
        set_err(err, errlen,
                "%s/%s: mode %04o lets group/other at the key; refusing it (want 0600)", dir, name,
                (unsigned)(st.st_mode & 07777));
        goto fail_fd;
    }
    if ((size_t)st.st_size > max) {
        r = -EFBIG;
        set_err(err, errlen, "%s/%s: larger than %zu bytes", dir, name, max);
        goto fail_fd;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        r = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto fail_fd;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
            goto fail_buf;
        }
        if (n == 0 || len + (size_t)n == cap - 1) {
            len += (size_t)n;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    *ret_buf = buf;
    *ret_len = len;
    return 0;

fail_buf:
    OPENSSL_cleanse(buf, cap);
    free(buf);
fail_fd:
    close(fd);
    return r;
}

/* Load and cross-check both files below dirfd.  -ENOENT when either is absent. */
static int ca_load_at(int dirfd, const char *dir, struct tls_ca **ret, char *err, size_t errlen)
{
    char *kbuf = NULL, *cbuf = NULL;
    size_t klen = 0, clen = 0;
    int r;

    ERR_clear_error();
    r = read_small_file(dirfd, dir, TLS_CA_KEY_FILE, CA_KEY_MAX, true, &kbuf, &klen, err, errlen);
    if (r < 0)
        return r;
    r = read_small_file(dirfd, dir, TLS_CA_CERT_FILE, CA_CERT_MAX, false, &cbuf, &clen, err,
                        errlen);
    if (r < 0)
        goto fail_kbuf;

    struct tls_ca *ca = calloc(1, sizeof(*ca));
    if (!ca) {
        r = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto fail_cbuf;
    }
    BIO *b = BIO_new_mem_buf(kbuf, (int)klen);
    ca->key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!ca->key) {
        r = -EINVAL;
        set_err(err, errlen, "%s/%s: not a PEM private key (%s)", dir, TLS_CA_KEY_FILE,
                tls_ossl_reason("unreadable"));
        goto fail_ca;
    }
    b = BIO_new_mem_buf(cbuf, (int)clen);
    ca->cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!ca->cert) {
        r = -EINVAL;
        set_err(err, errlen, "%s/%s: not a PEM certificate (%s)", dir, TLS_CA_CERT_FILE,
                tls_ossl_reason("unreadable"));
        goto fail_ca;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        r = -EINVAL;
        set_err(err, errlen, "%s: %s does not match %s", dir, TLS_CA_KEY_FILE, TLS_CA_CERT_FILE);
        goto fail_ca;
    }
    if (X509_check_ca(ca->cert) == 0) {
        r = -EINVAL;
        set_err(err, errlen, "%s/%s: not a CA certificate", dir, TLS_CA_CERT_FILE);
        goto fail_ca;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) <= 0) {
        r = -EINVAL;
        set_err(err, errlen, "%s/%s: the CA certificate has expired; remove %s to make a new one",
                dir, TLS_CA_CERT_FILE, dir);
        goto fail_ca;
    }
    OPENSSL_cleanse(kbuf, klen);
    free(kbuf);
    free(cbuf);
    ERR_clear_error();
    *ret = ca;
    return 0;

fail_ca:
    tls_ca_free(ca);
fail_cbuf:
    free(cbuf);
fail_kbuf:
    OPENSSL_cleanse(kbuf, klen);
    free(kbuf);
    ERR_clear_error();
    return r;
}

/* The CA directory, refused when someone else could swap files in it. */
static int open_ca_dir(const char *dir, char *err, size_t errlen)
{
    int r;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstat(dfd, &st) < 0) {
        r = -errno;
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        close(dfd);
        return r;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 022)) {
        set_err(err, errlen,
                "%s: owned by uid %u with mode %04o; refusing a CA directory that "
                "others may write (want uid %u, no group/other write)",
                dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
        close(dfd);
        return -EPERM;
    }
    return dfd;
}

int tls_ca_load(const char *dir, struct tls_ca **ret, char *err, size_t errlen)
{
    if (!dir || !ret)
        return -EINVAL;
    int dfd = open_ca_dir(dir, err, errlen);
    if (dfd < 0)
        return dfd;
    int r = ca_load_at(dfd, dir, ret, err, errlen);
    close(dfd);
    return r;
}

/* mkdir -p where every directory we create is 0700 whatever the umask. */
static int mkdir_private(const char *dir, char *err, size_t errlen)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(buf)) {
        set_err(err, errlen, "%s: bad directory name", dir);
        return -ENAMETOOLONG;
    }
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) == 0) {
            if (chmod(buf, 0700) < 0) {
                int r = -errno;
                set_err(err, errlen, "%s: %s", buf, strerror(errno));
                return r;
            }
        } else if (errno != EEXIST) {
            int r = -errno;
            set_err(err, errlen, "%s: %s", buf, strerror(errno));
            return r;
        }
        if (c == '\0')
            break;
        *p = c;
    }
    return 0;
}

int tls_rand_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -EIO;
    b[0] &= 0x7f; /* positive */
    b[0] |= 0x40; /* and of full length, so never zero */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    if (!bn)
        return -ENOMEM;
    int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -ENOMEM;
}

static int add_ext(X509V3_CTX *v3, X509 *x, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (!e)
        return -EINVAL;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -ENOMEM;
}

static int ca_generate(struct tls_ca **ret)
{
    struct tls_ca *ca = calloc(1, sizeof(*ca));
    if (!ca)
        return -ENOMEM;
    ca->key = EVP_EC_gen("P-256");
    ca->cert = X509_new();
    if (!ca->key || !ca->cert)
        goto fail;

    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) < 0)
        strcpy(host, "localhost");
    /* ub-common-name is 64: the prefix leaves 37 bytes of the hostname */
    char cn[65];
    snprintf(cn, sizeof(cn), "portcullis interception CA %.37s", host);

    X509 *x = ca->cert;
    X509_NAME *nm = X509_get_subject_name(x);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    if (!X509_set_version(x, X509_VERSION_3) || tls_rand_serial(x) < 0 ||
        !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"portcullis", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, nm) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), CA_DAYS, 0, NULL) ||
        !X509_set_pubkey(x, ca->key) ||
        add_ext(&v3, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(&v3, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(&v3, x, NID_subject_key_identifier, "hash") < 0 ||
        X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto fail;
    *ret = ca;
    return 0;

fail:
    tls_ca_free(ca);
    return -ENOMEM;
}

/* Write data to dir/tmp (mode exactly, O_EXCL) and fsync it. */
static int write_tmp(int dirfd, const char *tmp, const void *data, size_t len, mode_t mode)
{
    /* Only lock holders write here, so a leftover is from a crashed run. */
    if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
        return -errno;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (fchmod(fd, mode) < 0) {
        r = -errno;
        goto out;
    }
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0)
        r = -errno;
out:
    close(fd);
    if (r < 0)
        unlinkat(dirfd, tmp, 0);
    return r;
}

/* PEM of the key (secure memory when the secure heap is on) or the cert. */
static int write_pem(int dirfd, const char *tmp, const struct tls_ca *ca, bool key)
{
    BIO *b = BIO_new(key ? BIO_s_secmem() : BIO_s_mem());
    if (!b)
        return -ENOMEM;
    int ok = key ? PEM_write_bio_PrivateKey(b, ca->key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, ca->cert);
    int r = -ENOMEM;
    if (ok) {
        char *data;
        long len = BIO_get_mem_data(b, &data);
        r = write_tmp(dirfd, tmp, data, (size_t)len, key ? 0600 : 0644);
    }
    BIO_free(b);
    return r;
}

static int ca_create_at(int dirfd, const char *dir, struct tls_ca **ret, char *err, size_t errlen)
{
    struct tls_ca *ca = NULL;
    ERR_clear_error();
    int r = ca_generate(&ca);
    if (r < 0) {
        set_err(err, errlen, "creating the CA: %s", tls_ossl_reason("out of memory"));
        ERR_clear_error();
        return r;
    }
    r = write_pem(dirfd, CA_KEY_TMP, ca, true);
    if (r < 0) {
        set_err(err, errlen, "%s/%s: %s", dir, CA_KEY_TMP, strerror(-r));
        goto fail_ca;
    }
    r = write_pem(dirfd, CA_CERT_TMP, ca, false);
    if (r < 0) {
        set_err(err, errlen, "%s/%s: %s", dir, CA_CERT_TMP, strerror(-r));
        goto fail_key_tmp;
    }
    /* Key first: a crash in between leaves a key without a matching
     * certificate, which the next run (under the lock) replaces. */
    if (renameat(dirfd, CA_KEY_TMP, dirfd, TLS_CA_KEY_FILE) < 0 ||
        renameat(dirfd, CA_CERT_TMP, dirfd, TLS_CA_CERT_FILE) < 0) {
        r = -errno;
        set_err(err, errlen, "%s: installing the CA: %s", dir, strerror(errno));
        unlinkat(dirfd, CA_CERT_TMP, 0);
        goto fail_key_tmp;
    }
    if (fsync(dirfd) < 0) {
        r = -errno;
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail_ca;
    }
    *ret = ca;
    return 0;

fail_key_tmp:
    unlinkat(dirfd, CA_KEY_TMP, 0);
fail_ca:
    tls_ca_free(ca);
    ERR_clear_error();
    return r;
}

int tls_ca_load_or_create(const char *dir, struct tls_ca **ret, char *err, size_t errlen)
{
    if (!dir || !ret)
        return -EINVAL;
    int r = mkdir_private(dir, err, errlen);
    if (r < 0)
        return r;
    int dfd = open_ca_dir(dir, err, errlen);
    if (dfd < 0)
        return dfd;
    /* The common case, and the one that works on a read-only directory. */
    r = ca_load_at(dfd, dir, ret, err, errlen);
    if (r != -ENOENT)
        goto out_dfd;

    int lfd = openat(dfd, CA_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: %s", dir, CA_LOCK_FILE, strerror(errno));
        goto out_dfd;
    }
    while ((r = flock(lfd, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        r = -errno;
        set_err(err, errlen, "%s/%s: %s", dir, CA_LOCK_FILE, strerror(errno));
        goto out_lfd;
    }
    /* Whoever held the lock before us may have made it. */
    r = ca_load_at(dfd, dir, ret, err, errlen);
    if (r == -ENOENT)
        r = ca_create_at(dfd, dir, ret, err, errlen);
out_lfd:
    close(lfd); /* releases the lock */
out_dfd:
    close(dfd);
    return r;
}

int tls_ca_cert_pem(const struct tls_ca *ca, char **ret_pem, size_t *ret_len)
{
    if (!ca || !ret_pem)
        return -EINVAL;
    ERR_clear_error();
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return -ENOMEM;
    int r = -ENOMEM;
    if (PEM_write_bio_X509(b, ca->cert)) {
        char *data;
        long len = BIO_get_mem_data(b, &data);
        char *pem = malloc((size_t)len + 1);
        if (pem) {
            memcpy(pem, data, (size_t)len);
            pem[len] = '\0';
            *ret_pem = pem;
            if (ret_len)
                *ret_len = (size_t)len;
            r = 0;
        }
    }
    BIO_free(b);
    ERR_clear_error();
    return r;
}
