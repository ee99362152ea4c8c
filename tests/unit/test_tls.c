/*
 * Unit tests for src/tls: the CA on disk, leaves and their cache, both legs
 * talking to each other through memory (ciphertext pumped by hand), and
 * session resumption on the upstream leg.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls-int.h" /* tls_conn_ssl, tls_client_set_session_capacity */
#include "tls.h"

/* ---- helpers ---- */

static char *path_join(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

static void make_tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/test_tls.XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *ca_pem(const struct tls_ca *ca)
{
    char *pem = NULL;
    size_t len = 0;
    assert_int_equal(tls_ca_cert_pem(ca, &pem, &len), 0);
    assert_int_equal(strlen(pem), len);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    return pem;
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(data, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Move everything c has for the socket into peer, in uneven pieces so that
 * partial consumption is exercised too. */
static void pump(struct tls_conn *from, struct tls_conn *to)
{
    const uint8_t *p;
    size_t n;
    unsigned step = 0;
    while ((n = tls_conn_out_peek(from, &p)) > 0) {
        assert_int_equal(tls_conn_out_pending(from), n);
        size_t take = (step++ % 2) ? n : (n > 7001 ? 7001 : n);
        assert_int_equal(tls_conn_feed(to, p, take), 0);
        tls_conn_out_consume(from, take);
    }
    assert_int_equal(tls_conn_out_pending(from), 0);
}

/* Drive both handshakes until each has finished or failed. */
static void handshake(struct tls_conn *srv, struct tls_conn *cli, int *ret_srv, int *ret_cli)
{
    int rs = 0, rc = 0;
    for (int i = 0; i < 20 && (rs == 0 || rc == 0); i++) {
        if (rc == 0)
            rc = tls_conn_handshake(cli);
        pump(cli, srv);
        if (rs == 0)
            rs = tls_conn_handshake(srv);
        pump(srv, cli);
    }
    *ret_srv = rs;
    *ret_cli = rc;
}

/* ---- shared fixture for the connection tests ---- */

static struct {
    char dir[64];
    char ca_file[128];
    struct tls_ca *ca;
    struct tls_server *srv;
    struct tls_client *cli;       /* trusts the test CA */
    struct tls_client *cli_plain; /* system roots only */
} fx;

static int group_setup(void **state)
{
    (void)state;
    char err[256] = "";
    make_tmpdir(fx.dir, sizeof(fx.dir));
    char cadir[128];
    path_join(cadir, sizeof(cadir), fx.dir, "ca");
    if (tls_ca_load_or_create(cadir, &fx.ca, err, sizeof(err)) < 0) {
        fprintf(stderr, "CA: %s\n", err);
        return -1;
    }
    char *pem = ca_pem(fx.ca);
    path_join(fx.ca_file, sizeof(fx.ca_file), fx.dir, "trust.pem");
    write_file(fx.ca_file, pem);
    free(pem);
    if (tls_server_new(fx.ca, 0, &fx.srv) < 0 ||
        tls_client_new(fx.ca_file, &fx.cli, err, sizeof(err)) < 0 ||
        tls_client_new(NULL, &fx.cli_plain, err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fx.cli = tls_client_free(fx.cli);
    fx.cli_plain = tls_client_free(fx.cli_plain);
    fx.srv = tls_server_free(fx.srv);
    fx.ca = tls_ca_free(fx.ca);
    rm_rf(fx.dir);
    return 0;
}

struct pair {
    struct tls_conn *s, *c;
    int rs, rc;
};

static void pair_open(struct pair *p, struct tls_server *srv, const char *leaf_name,
                      unsigned sflags, struct tls_client *cli, const char *expect_name,
                      unsigned cflags)
{
    assert_int_equal(tls_conn_new_server(srv, leaf_name, sflags, &p->s), 0);
    assert_int_equal(tls_conn_new_client(cli, expect_name, NULL, cflags, &p->c), 0);
    handshake(p->s, p->c, &p->rs, &p->rc);
}

static void pair_close(struct pair *p)
{
    p->s = tls_conn_free(p->s);
    p->c = tls_conn_free(p->c);
}

/* ---- the CA ---- */

static void test_ca_dir_env(void **state)
{
    (void)state;
    unsetenv("PORTCULLIS_CA_DIR");
    assert_string_equal(tls_ca_dir(), TLS_DEFAULT_CA_DIR);
    setenv("PORTCULLIS_CA_DIR", "/tmp/elsewhere/ca", 1);
    assert_string_equal(tls_ca_dir(), "/tmp/elsewhere/ca");
    setenv("PORTCULLIS_CA_DIR", "relative/ca", 1);
    assert_string_equal(tls_ca_dir(), TLS_DEFAULT_CA_DIR);
    setenv("PORTCULLIS_CA_DIR", "", 1);
    assert_string_equal(tls_ca_dir(), TLS_DEFAULT_CA_DIR);
    unsetenv("PORTCULLIS_CA_DIR");
}

static void test_ca_create_and_reload(void **state)
{
    (void)state;
    char tmp[64], dir[128], p[192], err[256] = "";
    make_tmpdir(tmp, sizeof(tmp));
    path_join(dir, sizeof(dir), tmp, "var/ca");

    struct tls_ca *ca = NULL;
    assert_int_equal(tls_ca_load(dir, &ca, err, sizeof(err)), -ENOENT);

    /* modes must not depend on the umask */
    mode_t old = umask(0);
    int r = tls_ca_load_or_create(dir, &ca, err, sizeof(err));
    umask(old);
    assert_int_equal(r, 0);
    assert_int_equal(file_mode(dir), 0700);
    assert_int_equal(file_mode(path_join(p, sizeof(p), tmp, "var")), 0700);
    assert_int_equal(file_mode(path_join(p, sizeof(p), dir, TLS_CA_KEY_FILE)), 0600);
    assert_int_equal(file_mode(path_join(p, sizeof(p), dir, TLS_CA_CERT_FILE)), 0644);
    /* no temporary left behind */
    assert_int_equal(access(path_join(p, sizeof(p), dir, "ca.key.tmp"), F_OK), -1);
    assert_int_equal(access(path_join(p, sizeof(p), dir, "ca.crt.tmp"), F_OK), -1);

    char *pem1 = ca_pem(ca);
    /* the file on disk is what we serve */
    char *disk = read_file(path_join(p, sizeof(p), dir, TLS_CA_CERT_FILE));
    assert_string_equal(disk, pem1);
    free(disk);

    /* a CA certificate with the promised shape */
    BIO *b = BIO_new_mem_buf(pem1, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    assert_int_equal(X509_check_ca(x), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    assert_non_null(X509_get0_subject_key_id(x));
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_non_null(strstr(cn, "portcullis interception CA"));
    EVP_PKEY *pk = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_id(pk), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(pk), 256);
    X509_free(x);

    /* both loaders find the same CA again */
    struct tls_ca *ca2 = NULL, *ca3 = NULL;
    assert_int_equal(tls_ca_load_or_create(dir, &ca2, err, sizeof(err)), 0);
    assert_int_equal(tls_ca_load(dir, &ca3, err, sizeof(err)), 0);
    char *pem2 = ca_pem(ca2), *pem3 = ca_pem(ca3);
    assert_string_equal(pem1, pem2);
    assert_string_equal(pem1, pem3);
    free(pem1);
    free(pem2);
    free(pem3);
    tls_ca_free(ca);
    tls_ca_free(ca2);
    assert_null(tls_ca_free(ca3));
    assert_null(tls_ca_free(NULL));
    rm_rf(tmp);
}

static void test_ca_key_mode_refused(void **state)
{
    (void)state;
    char tmp[64], key[128], err[256] = "";
    make_tmpdir(tmp, sizeof(tmp));
    struct tls_ca *ca = NULL;
    assert_int_equal(tls_ca_load_or_create(tmp, &ca, err, sizeof(err)), 0);
    char *pem1 = ca_pem(ca);
    ca = tls_ca_free(ca);

    path_join(key, sizeof(key), tmp, TLS_CA_KEY_FILE);
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(tls_ca_load(tmp, &ca, err, sizeof(err)), -EPERM);
    assert_null(ca);
    assert_non_null(strstr(err, "0644"));
    /* never "repaired" by making a new CA over it */
    err[0] = '\0';
    assert_int_equal(tls_ca_load_or_create(tmp, &ca, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "group/other"));
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(tls_ca_load(tmp, &ca, err, sizeof(err)), -EPERM);

    assert_int_equal(chmod(key, 0600), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(key, 65534, 65534), 0);
        assert_int_equal(tls_ca_load(tmp, &ca, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "owned by uid 65534"));
        assert_int_equal(chown(key, 0, 0), 0);
    }
    /* a symlink in place of the key is not followed */
    char moved[128];
    path_join(moved, sizeof(moved), tmp, "elsewhere.key");
    assert_int_equal(rename(key, moved), 0);
    assert_int_equal(symlink(moved, key), 0);
    assert_true(tls_ca_load(tmp, &ca, err, sizeof(err)) < 0);
    assert_int_equal(unlink(key), 0);
    assert_int_equal(rename(moved, key), 0);

    /* nor is a directory where others could swap the files */
    assert_int_equal(chmod(tmp, 0777), 0);
    assert_int_equal(tls_ca_load(tmp, &ca, err, sizeof(err)), -EPERM);
    assert_int_equal(tls_ca_load_or_create(tmp, &ca, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "others may write"));
    assert_int_equal(chmod(tmp, 0755), 0);

    assert_int_equal(tls_ca_load(tmp, &ca, err, sizeof(err)), 0);
    char *pem2 = ca_pem(ca);
    assert_string_equal(pem1, pem2);
    free(pem1);
    free(pem2);
    tls_ca_free(ca);
    rm_rf(tmp);
}

static void test_ca_mismatch_refused(void **state)
{
    (void)state;
    char a[64], b[64], p[128], err[256] = "";
    make_tmpdir(a, sizeof(a));
    make_tmpdir(b, sizeof(b));
    struct tls_ca *ca_a = NULL, *ca_b = NULL;
    assert_int_equal(tls_ca_load_or_create(a, &ca_a, err, sizeof(err)), 0);
    assert_int_equal(tls_ca_load_or_create(b, &ca_b, err, sizeof(err)), 0);
    char *pem_b = ca_pem(ca_b);
    /* b's certificate next to a's key */
    write_file(path_join(p, sizeof(p), a, TLS_CA_CERT_FILE), pem_b);
    free(pem_b);
    tls_ca_free(ca_a);
    tls_ca_free(ca_b);
    ca_a = NULL;
    assert_int_equal(tls_ca_load(a, &ca_a, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(tls_ca_load_or_create(a, &ca_a, err, sizeof(err)), -EINVAL);
    assert_null(ca_a);
    /* garbage is refused with words too */
    write_file(p, "not a certificate\n");
    assert_int_equal(tls_ca_load(a, &ca_a, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a PEM certificate"));
    rm_rf(a);
    rm_rf(b);
}

/* Several first runs at once end with one CA that all of them use. */
static void test_ca_concurrent_create(void **state)
{
    (void)state;
    enum { ROUNDS = 3, KIDS = 4 };
    for (int round = 0; round < ROUNDS; round++) {
        char tmp[64], dir[128], out[KIDS][160];
        make_tmpdir(tmp, sizeof(tmp));
        path_join(dir, sizeof(dir), tmp, "ca");
        int gate[2];
        assert_int_equal(pipe(gate), 0);
        pid_t pids[KIDS];
        for (int k = 0; k < KIDS; k++) {
            snprintf(out[k], sizeof(out[k]), "%s/out%d.pem", tmp, k);
            pids[k] = fork();
            assert_true(pids[k] >= 0);
            if (pids[k] == 0) {
                char ch, err[256] = "";
                close(gate[1]);
                if (read(gate[0], &ch, 1) != 0)
                    _exit(3);
                struct tls_ca *ca = NULL;
                if (tls_ca_load_or_create(dir, &ca, err, sizeof(err)) < 0) {
                    fprintf(stderr, "child: %s\n", err);
                    _exit(1);
                }
                char *pem = NULL;
                size_t len = 0;
                if (tls_ca_cert_pem(ca, &pem, &len) < 0)
                    _exit(2);
                FILE *f = fopen(out[k], "w");
                if (!f || fwrite(pem, 1, len, f) != len || fclose(f) != 0)
                    _exit(2);
                _exit(0);
            }
        }
        close(gate[0]);
        close(gate[1]); /* all start now */
        for (int k = 0; k < KIDS; k++) {
            int st = 0;
            assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        }
        struct tls_ca *ca = NULL;
        char err[256] = "";
        assert_int_equal(tls_ca_load(dir, &ca, err, sizeof(err)), 0);
        char *pem = ca_pem(ca);
        for (int k = 0; k < KIDS; k++) {
            char *got = read_file(out[k]);
            assert_string_equal(got, pem);
            free(got);
        }
        free(pem);
        tls_ca_free(ca);
        rm_rf(tmp);
    }
}

static void test_client_extra_ca_errors(void **state)
{
    (void)state;
    char tmp[64], p[128], err[256] = "";
    struct tls_client *cli = NULL;
    make_tmpdir(tmp, sizeof(tmp));
    path_join(p, sizeof(p), tmp, "missing.pem");
    assert_int_equal(tls_client_new(p, &cli, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing.pem"));
    write_file(p, "");
    assert_int_equal(tls_client_new(p, &cli, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no PEM certificate"));
    write_file(p, "-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n");
    assert_int_equal(tls_client_new(p, &cli, err, sizeof(err)), -EINVAL);
    assert_null(cli);
    rm_rf(tmp);
}

/* A client made without the CA trusts it once the file is added; another
 * client, which shared its trust store until then, still does not. */
static void test_client_add_ca_file(void **state)
{
    (void)state;
    char err[256] = "";
    struct tls_client *cli = NULL, *other = NULL;
    struct pair p;
    assert_int_equal(tls_client_new(NULL, &cli, err, sizeof(err)), 0);
    assert_int_equal(tls_client_new(NULL, &other, err, sizeof(err)), 0);
    assert_ptr_equal(tls_client_cert_store(cli), tls_client_cert_store(other));
    pair_open(&p, fx.srv, "add.example.test", 0, cli, "add.example.test", 0);
    assert_int_equal(p.rc, -EPROTO);
    pair_close(&p);
    assert_int_equal(tls_client_add_ca_file(cli, "/nonexistent/ca.pem", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    assert_int_equal(tls_client_add_ca_file(cli, fx.ca_file, err, sizeof(err)), 0);
    assert_ptr_not_equal(tls_client_cert_store(cli), tls_client_cert_store(other));
    pair_open(&p, fx.srv, "add.example.test", 0, cli, "add.example.test", 0);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    pair_open(&p, fx.srv, "add.example.test", 0, other, "add.example.test", 0);
    assert_int_equal(p.rc, -EPROTO);
    pair_close(&p);
    assert_int_equal(tls_client_add_ca_file(NULL, fx.ca_file, err, sizeof(err)), -EINVAL);
    tls_client_free(cli);
    tls_client_free(other);
}

/* The system roots and the extra CA file are loaded once for all clients,
 * and again when the file changes; a client keeps the store it was made
 * with. */
static void test_client_trust_shared(void **state)
{
    (void)state;
    char tmp[64], ca[128], err[256] = "";
    struct tls_client *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    struct pair p;
    make_tmpdir(tmp, sizeof(tmp));
    path_join(ca, sizeof(ca), tmp, "ca.pem");
    char *pem = read_file(fx.ca_file);
    write_file(ca, pem);

    assert_int_equal(tls_client_new(ca, &a, err, sizeof(err)), 0);
    assert_int_equal(tls_client_new(ca, &b, err, sizeof(err)), 0);
    assert_ptr_equal(tls_client_cert_store(a), tls_client_cert_store(b));
    /* another file: another store */
    assert_int_equal(tls_client_new(NULL, &c, err, sizeof(err)), 0);
    assert_ptr_not_equal(tls_client_cert_store(a), tls_client_cert_store(c));

    /* Rewritten (a new inode, as editors and cp do): loaded again. */
    char ca2[160];
    snprintf(ca2, sizeof(ca2), "%s.new", ca);
    write_file(ca2, pem);
    assert_int_equal(rename(ca2, ca), 0);
    assert_int_equal(tls_client_new(ca, &d, err, sizeof(err)), 0);
    assert_ptr_not_equal(tls_client_cert_store(a), tls_client_cert_store(d));
    /* Both the old and the new store trust the test CA. */
    pair_open(&p, fx.srv, "shared.example.test", 0, a, "shared.example.test", 0);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    pair_open(&p, fx.srv, "shared.example.test", 0, d, "shared.example.test", 0);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    /* An unreadable file is an error even after a good build. */
    write_file(ca2, "");
    assert_int_equal(rename(ca2, ca), 0);
    struct tls_client *e = NULL;
    assert_int_equal(tls_client_new(ca, &e, err, sizeof(err)), -EINVAL);
    assert_null(e);

    free(pem);
    tls_client_free(a);
    tls_client_free(b);
    tls_client_free(c);
    tls_client_free(d);
    rm_rf(tmp);
}

/* ---- connections ---- */

static void test_handshake_dns_alpn(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "www.example.test", TLS_CONN_F_ALPN_HTTP11, fx.cli, "www.example.test",
              TLS_CONN_F_ALPN_HTTP11);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    assert_true(tls_conn_handshake_done(p.s));
    assert_true(tls_conn_handshake_done(p.c));
    assert_string_equal(tls_conn_alpn(p.s), "http/1.1");
    assert_string_equal(tls_conn_alpn(p.c), "http/1.1");
    assert_string_equal(tls_conn_error(p.s), "");
    assert_string_equal(tls_conn_error(p.c), "");
    pair_close(&p);

    /* without the flag on either side, no ALPN */
    pair_open(&p, fx.srv, "www.example.test", 0, fx.cli, "www.example.test",
              TLS_CONN_F_ALPN_HTTP11);
    assert_int_equal(p.rc, 1);
    assert_string_equal(tls_conn_alpn(p.s), "");
    assert_string_equal(tls_conn_alpn(p.c), "");
    pair_close(&p);
    pair_open(&p, fx.srv, "www.example.test", TLS_CONN_F_ALPN_HTTP11, fx.cli, "www.example.test",
              0);
    assert_int_equal(p.rc, 1);
    assert_string_equal(tls_conn_alpn(p.s), "");
    pair_close(&p);

    /* names are case-insensitive */
    pair_open(&p, fx.srv, "WWW.Example.TEST", 0, fx.cli, "www.EXAMPLE.test", 0);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
}

static void test_handshake_ip_literals(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "198.18.0.10", 0, fx.cli, "198.18.0.10", 0);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    pair_open(&p, fx.srv, "2001:DB8::10", 0, fx.cli, "2001:db8:0::10", 0);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    /* an address leaf does not pass for another address */
    pair_open(&p, fx.srv, "198.18.0.10", 0, fx.cli, "198.18.0.11", 0);
    assert_int_equal(p.rc, -EPROTO);
    assert_non_null(strstr(tls_conn_error(p.c), "certificate verify failed"));
    pair_close(&p);
}

/* A plain OpenSSL client, for what our own client never does. */
struct raw {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
};

static void raw_open(struct raw *r, const unsigned char *alpn, unsigned alpn_len, const char *sni)
{
    r->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(r->ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(r->ctx, fx.ca_file, NULL), 1);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    r->ssl = SSL_new(r->ctx);
    r->in = BIO_new(BIO_s_mem());
    r->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r->in, -1);
    BIO_set_mem_eof_return(r->out, -1);
    SSL_set_bio(r->ssl, r->in, r->out);
    SSL_set_connect_state(r->ssl);
    if (alpn)
        assert_int_equal(SSL_set_alpn_protos(r->ssl, alpn, alpn_len), 0);
    if (sni)
        assert_int_equal(SSL_set_tlsext_host_name(r->ssl, sni), 1);
}

static void raw_close(struct raw *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
}

/* Returns 1 done, <0 failed. */
static int raw_handshake(struct raw *r, struct tls_conn *s)
{
    int rc = 0, rs = 0;
    for (int i = 0; i < 20 && (rc <= 0 || rs == 0); i++) {
        rc = SSL_do_handshake(r->ssl);
        if (rc <= 0 && SSL_get_error(r->ssl, rc) != SSL_ERROR_WANT_READ)
            return -1;
        char buf[16384];
        int n;
        while ((n = BIO_read(r->out, buf, sizeof(buf))) > 0)
            assert_int_equal(tls_conn_feed(s, buf, (size_t)n), 0);
        if (rs == 0)
            rs = tls_conn_handshake(s);
        const uint8_t *p;
        size_t len;
        while ((len = tls_conn_out_peek(s, &p)) > 0) {
            assert_int_equal(BIO_write(r->in, p, (int)len), (int)len);
            tls_conn_out_consume(s, len);
        }
    }
    ERR_clear_error();
    return rc == 1 && rs == 1 ? 1 : -1;
}

static void test_alpn_h2_only_client(void **state)
{
    (void)state;
    struct raw r;
    struct tls_conn *s = NULL;
    const unsigned char *sel;
    unsigned sel_len;

    /* h2 only: the handshake succeeds without ALPN (no fatal alert) */
    assert_int_equal(tls_conn_new_server(fx.srv, "h2.example.test", TLS_CONN_F_ALPN_HTTP11, &s), 0);
    raw_open(&r, (const unsigned char *)"\x02h2", 3, "h2.example.test");
    assert_int_equal(raw_handshake(&r, s), 1);
    assert_string_equal(tls_conn_alpn(s), "");
    SSL_get0_alpn_selected(r.ssl, &sel, &sel_len);
    assert_int_equal(sel_len, 0);

    /* what the client was shown: the leaf for the name, issued by our CA,
     * alone (the client has the CA already) */
    STACK_OF(X509) *shown = SSL_get_peer_cert_chain(r.ssl);
    assert_int_equal(sk_X509_num(shown), 1);
    X509 *leaf = SSL_get0_peer_certificate(r.ssl);
    assert_non_null(leaf);
    assert_int_equal(X509_check_host(leaf, "h2.example.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(leaf, "other.example.test", 0, 0, NULL), 0);
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(leaf), 0);
    assert_non_null(X509_get0_authority_key_id(leaf));
    assert_int_equal(SSL_get_verify_result(r.ssl), X509_V_OK);
    raw_close(&r);
    tls_conn_free(s);

    /* h2 and http/1.1: http/1.1 */
    assert_int_equal(tls_conn_new_server(fx.srv, "h2.example.test", TLS_CONN_F_ALPN_HTTP11, &s), 0);
    raw_open(&r, (const unsigned char *)"\x02h2\x08http/1.1", 12, "h2.example.test");
    assert_int_equal(raw_handshake(&r, s), 1);
    assert_string_equal(tls_conn_alpn(s), "http/1.1");
    SSL_get0_alpn_selected(r.ssl, &sel, &sel_len);
    assert_int_equal(sel_len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    raw_close(&r);
    tls_conn_free(s);

    /* an address leaf carries an IP SAN, not a DNS one */
    assert_int_equal(tls_conn_new_server(fx.srv, "198.18.0.7", 0, &s), 0);
    raw_open(&r, NULL, 0, NULL);
    assert_int_equal(raw_handshake(&r, s), 1);
    leaf = SSL_get0_peer_certificate(r.ssl);
    assert_int_equal(X509_check_ip_asc(leaf, "198.18.0.7", 0), 1);
    GENERAL_NAMES *san = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(san);
    assert_int_equal(sk_GENERAL_NAME_num(san), 1);
    assert_int_equal(sk_GENERAL_NAME_value(san, 0)->type, GEN_IPADD);
    GENERAL_NAMES_free(san);
    raw_close(&r);
    tls_conn_free(s);

    /* TLS 1.1 is refused */
    assert_int_equal(tls_conn_new_server(fx.srv, "old.example.test", 0, &s), 0);
    raw_open(&r, NULL, 0, NULL);
    SSL_set_min_proto_version(r.ssl, TLS1_VERSION);
    SSL_set_max_proto_version(r.ssl, TLS1_1_VERSION);
    SSL_set_security_level(r.ssl, 0);
    assert_int_equal(raw_handshake(&r, s), -1);
    assert_false(tls_conn_handshake_done(s));
    assert_int_equal(tls_conn_handshake(s), -EPROTO);
    assert_non_null(strstr(tls_conn_error(s), "protocol"));
    raw_close(&r);
    tls_conn_free(s);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* Send total bytes from one end to the other, writing in uneven chunks and
 * only while the output is small, as a relay would. */
static void transfer(struct tls_conn *from, struct tls_conn *to, size_t total, uint32_t seed)
{
    uint8_t *src = malloc(total), *dst = malloc(total + 1);
    assert_non_null(src);
    assert_non_null(dst);
    fill(src, total, seed);
    size_t w = 0, r = 0;
    for (int guard = 0; r < total; guard++) {
        assert_true(guard < 100000);
        if (w < total && tls_conn_out_pending(from) < 65536) {
            size_t chunk = total - w < 40000 ? total - w : 40000;
            ssize_t n = tls_conn_write(from, src + w, chunk);
            assert_true(n > 0);
            w += (size_t)n;
        }
        pump(from, to);
        for (;;) {
            ssize_t n = tls_conn_read(to, dst + r, total + 1 - r);
            if (n == 0)
                break;
            assert_true(n > 0);
            r += (size_t)n;
        }
        pump(to, from);
    }
    assert_int_equal(r, total);
    assert_memory_equal(src, dst, total);
    free(src);
    free(dst);
}

static void test_data_both_ways(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "data.example.test", TLS_CONN_F_ALPN_HTTP11, fx.cli, "data.example.test",
              TLS_CONN_F_ALPN_HTTP11);
    assert_int_equal(p.rs, 1);
    assert_int_equal(p.rc, 1);
    uint8_t buf[16];
    assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf)), 0);
    assert_int_equal(tls_conn_read(p.c, buf, sizeof(buf)), 0);
    const size_t sizes[] = {1, 65536, 1 << 20};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        transfer(p.c, p.s, sizes[i], 1 + i);
        transfer(p.s, p.c, sizes[i], 100 + i);
        /* Giving back idle buffers between bursts changes nothing. */
        tls_conn_trim(p.s);
        tls_conn_trim(p.c);
    }
    tls_conn_trim(NULL);
    assert_string_equal(tls_conn_error(p.s), "");
    assert_string_equal(tls_conn_error(p.c), "");
    pair_close(&p);
}

static void test_close_notify(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "close.example.test", 0, fx.cli, "close.example.test", 0);
    assert_int_equal(p.rc, 1);
    assert_int_equal(p.rs, 1);
    assert_int_equal(tls_conn_write(p.c, "bye", 3), 3);
    tls_conn_close_notify(p.c);
    tls_conn_close_notify(p.c); /* once is enough, twice is harmless */
    pump(p.c, p.s);
    char buf[8];
    assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf)), TLS_CONN_CLOSED);
    assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf)), TLS_CONN_CLOSED);
    /* the other direction is still open until the server closes too */
    assert_int_equal(tls_conn_write(p.s, "ok", 2), 2);
    tls_conn_close_notify(p.s);
    pump(p.s, p.c);
    assert_int_equal(tls_conn_read(p.c, buf, sizeof(buf)), 2);
    assert_int_equal(tls_conn_read(p.c, buf, sizeof(buf)), TLS_CONN_CLOSED);
    assert_string_equal(tls_conn_error(p.c), "");
    pair_close(&p);
}

static void test_hostname_mismatch(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "a.test", 0, fx.cli, "b.test", 0);
    assert_int_equal(p.rc, -EPROTO);
    assert_false(tls_conn_handshake_done(p.c));
    assert_non_null(strstr(tls_conn_error(p.c), "hostname mismatch"));
    /* the server heard why */
    assert_int_equal(p.rs, -EPROTO);
    assert_non_null(strstr(tls_conn_error(p.s), "alert:"));
    /* and nothing can be sent or received on it */
    char buf[4];
    assert_int_equal(tls_conn_read(p.c, buf, sizeof(buf)), -EPROTO);
    assert_true(tls_conn_write(p.c, "x", 1) < 0);
    pair_close(&p);

    /* a failure does not spill into the next connection */
    pair_open(&p, fx.srv, "b.test", 0, fx.cli, "b.test", 0);
    assert_int_equal(p.rc, 1);
    assert_string_equal(tls_conn_error(p.c), "");
    assert_string_equal(tls_conn_error(p.s), "");
    pair_close(&p);

    /* no partial wildcards, and a leaf for the parent does not fit a child */
    pair_open(&p, fx.srv, "example.test", 0, fx.cli, "www.example.test", 0);
    assert_int_equal(p.rc, -EPROTO);
    pair_close(&p);
}

static void test_untrusted_ca(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, fx.srv, "a.test", 0, fx.cli_plain, "a.test", 0);
    assert_int_equal(p.rc, -EPROTO);
    assert_non_null(strstr(tls_conn_error(p.c), "certificate verify failed: "));
    assert_false(tls_conn_handshake_done(p.c));
    /* our client told the server */
    assert_int_equal(p.rs, -EPROTO);
    assert_non_null(strstr(tls_conn_error(p.s), "alert: "));
    pair_close(&p);
}

static void test_refuse(void **state)
{
    (void)state;
    struct tls_cache_stats before, after;
    tls_server_stats(fx.srv, &before);
    struct pair p;
    pair_open(&p, fx.srv, "refused.example.test", TLS_CONN_F_REFUSE | TLS_CONN_F_ALPN_HTTP11,
              fx.cli, "refused.example.test", TLS_CONN_F_ALPN_HTTP11);
    assert_int_equal(p.rs, -EPROTO);
    assert_int_equal(p.rc, -EPROTO);
    assert_false(tls_conn_handshake_done(p.c));
    assert_false(tls_conn_handshake_done(p.s));
    assert_string_equal(tls_conn_error(p.c), "alert: access denied");
    assert_non_null(strstr(tls_conn_error(p.s), "refused"));
    pair_close(&p);
    /* no leaf was issued for it */
    tls_server_stats(fx.srv, &after);
    assert_int_equal(after.misses, before.misses);
    assert_int_equal(after.hits, before.hits);
}

static void test_cache_lru(void **state)
{
    (void)state;
    struct tls_server *srv = NULL;
    struct tls_cache_stats st;
    struct tls_conn *c[8];
    assert_int_equal(tls_server_new(fx.ca, 2, &srv), 0);
    tls_server_stats(srv, &st);
    assert_int_equal(st.capacity, 2);
    assert_int_equal(st.entries, 0);

    assert_int_equal(tls_conn_new_server(srv, "a.test", 0, &c[0]), 0);
    assert_int_equal(tls_conn_new_server(srv, "A.TEST", 0, &c[1]), 0);
    tls_server_stats(srv, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.entries, 1);

    assert_int_equal(tls_conn_new_server(srv, "b.test", 0, &c[2]), 0);
    assert_int_equal(tls_conn_new_server(srv, "a.test", 0, &c[3]), 0); /* b is now LRU */
    assert_int_equal(tls_conn_new_server(srv, "c.test", 0, &c[4]), 0); /* evicts b */
    tls_server_stats(srv, &st);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.entries, 2);

    assert_int_equal(tls_conn_new_server(srv, "a.test", 0, &c[5]), 0); /* still there */
    tls_server_stats(srv, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 3);
    assert_int_equal(tls_conn_new_server(srv, "b.test", 0, &c[6]), 0); /* gone: a miss */
    tls_server_stats(srv, &st);
    assert_int_equal(st.misses, 4);
    assert_int_equal(st.evictions, 2); /* c was LRU */
    assert_true(st.entries <= st.capacity);

    /* a connection outlives the eviction of its leaf */
    assert_int_equal(tls_conn_new_server(srv, "d.test", 0, &c[7]), 0);
    tls_server_stats(srv, &st);
    assert_int_equal(st.evictions, 3);
    assert_int_equal(st.entries, 2);
    struct tls_conn *cli = NULL;
    assert_int_equal(tls_conn_new_client(fx.cli, "b.test", NULL, 0, &cli), 0);
    int rs, rc;
    handshake(c[2], cli, &rs, &rc);
    assert_int_equal(rc, 1);
    assert_int_equal(rs, 1);
    tls_conn_free(cli);

    for (unsigned i = 0; i < 8; i++)
        tls_conn_free(c[i]);
    assert_null(tls_server_free(srv));
    assert_null(tls_server_free(NULL));
    assert_null(tls_conn_free(NULL));
    assert_null(tls_client_free(NULL));

    /* 0 means the default capacity */
    assert_int_equal(tls_server_new(fx.ca, 0, &srv), 0);
    tls_server_stats(srv, &st);
    assert_int_equal(st.capacity, TLS_LEAF_CACHE_DEFAULT);
    tls_server_free(srv);
}

static void test_invalid_names(void **state)
{
    (void)state;
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name));
    for (int i = 50; i < 254; i += 51)
        long_name[i] = '.';
    long_name[254] = '\0'; /* 254 bytes: one too many */
    const char *bad[] = {"",          "a b.test",         "*.example.test", "a.test/x",
                         "a%b.test",  "caf\xc3\xa9.test", "a.test:443",     "[2001:db8::1]",
                         "fe80::1%1", "a\nb.test",        "1.2.3.4:80",     long_name,
                         ":::"};
    struct tls_cache_stats before, after;
    tls_server_stats(fx.srv, &before);
    struct tls_conn *c = NULL;
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tls_conn_new_server(fx.srv, bad[i], 0, &c), -EINVAL);
        assert_int_equal(tls_conn_new_client(fx.cli, bad[i], NULL, 0, &c), -EINVAL);
    }
    assert_int_equal(tls_conn_new_server(fx.srv, NULL, 0, &c), -EINVAL);
    assert_int_equal(tls_conn_new_client(fx.cli, NULL, NULL, 0, &c), -EINVAL);
    tls_server_stats(fx.srv, &after);
    assert_int_equal(after.misses, before.misses);

    /* the longest allowed name, underscores, and a bare label are fine */
    long_name[253] = '\0';
    const char *good[] = {long_name, "_acme.example.test", "localhost", "x-y.test"};
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct pair p;
        pair_open(&p, fx.srv, good[i], 0, fx.cli, good[i], 0);
        assert_int_equal(p.rs, 1);
        assert_int_equal(p.rc, 1);
        pair_close(&p);
    }
}

static void test_write_before_handshake(void **state)
{
    (void)state;
    struct tls_conn *c = NULL;
    assert_int_equal(tls_conn_new_client(fx.cli, "early.test", NULL, 0, &c), 0);
    assert_true(tls_conn_write(c, "x", 1) < 0);
    assert_false(tls_conn_handshake_done(c));
    /* the ClientHello is waiting, with SNI */
    assert_int_equal(tls_conn_handshake(c), 0);
    const uint8_t *p;
    size_t n = tls_conn_out_peek(c, &p);
    assert_true(n > 40);
    assert_int_equal(p[0], 0x16); /* handshake record */
    assert_non_null(memmem(p, n, "early.test", 10));
    tls_conn_free(c);

    /* no SNI for an address */
    assert_int_equal(tls_conn_new_client(fx.cli, "198.18.0.1", NULL, 0, &c), 0);
    assert_int_equal(tls_conn_handshake(c), 0);
    n = tls_conn_out_peek(c, &p);
    assert_null(memmem(p, n, "198.18.0.1", 10));
    tls_conn_free(c);

    /* garbage from the peer is a clean failure with words */
    assert_int_equal(tls_conn_new_server(fx.srv, "garbage.test", 0, &c), 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: garbage.test\r\n\r\n";
    assert_int_equal(tls_conn_feed(c, junk, sizeof(junk) - 1), 0);
    assert_int_equal(tls_conn_handshake(c), -EPROTO);
    assert_true(strlen(tls_conn_error(c)) > 0);
    tls_conn_free(c);
}

/* ---- session resumption on the upstream leg ---- */

static struct tls_client *resume_client(void)
{
    char err[256] = "";
    struct tls_client *cli = NULL;
    assert_int_equal(tls_client_new(fx.ca_file, &cli, err, sizeof(err)), 0);
    return cli;
}

static struct tls_resume_stats resume_stats(const struct tls_client *cli)
{
    struct tls_resume_stats st;
    tls_client_stats(cli, &st);
    return st;
}

/* One request and its response, as a flow would: the client's read takes in
 * the TLS 1.3 tickets the server sent after its handshake. */
static void ping_pong(struct pair *p)
{
    char buf[8];
    assert_int_equal(tls_conn_write(p->c, "ping", 4), 4);
    pump(p->c, p->s);
    assert_int_equal(tls_conn_read(p->s, buf, sizeof(buf)), 4);
    assert_int_equal(tls_conn_write(p->s, "pong", 4), 4);
    pump(p->s, p->c);
    assert_int_equal(tls_conn_read(p->c, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);
}

/* A pair whose server presents leaf_name and speaks at most srv_max (0: TLS
 * 1.3), and whose client expects name and uses key; then one exchange when
 * both handshakes succeeded. */
static void rpair_open(struct pair *p, const char *leaf_name, unsigned sflags, int srv_max,
                       struct tls_client *cli, const char *name, const char *key)
{
    assert_int_equal(tls_conn_new_server(fx.srv, leaf_name, sflags, &p->s), 0);
    if (srv_max)
        assert_int_equal(SSL_set_max_proto_version(tls_conn_ssl(p->s), srv_max), 1);
    assert_int_equal(tls_conn_new_client(cli, name, key, TLS_CONN_F_ALPN_HTTP11, &p->c), 0);
    handshake(p->s, p->c, &p->rs, &p->rc);
    if (p->rs == 1 && p->rc == 1)
        ping_pong(p);
}

static const int resume_versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

/* The second connection with a key resumes, keeps the verified chain, and
 * stores what it gets for the third; both TLS versions. */
static void test_resume_same_key(void **state)
{
    (void)state;
    const char *key = "up.test|198.18.0.10|8443";
    for (unsigned v = 0; v < 2; v++) {
        int ver = resume_versions[v];
        struct tls_client *cli = resume_client();
        struct pair p;
        rpair_open(&p, "up.test", TLS_CONN_F_ALPN_HTTP11, ver, cli, "up.test", key);
        assert_int_equal(p.rc, 1);
        assert_int_equal(SSL_version(tls_conn_ssl(p.c)), ver);
        assert_false(tls_conn_resumed(p.c));
        assert_false(tls_conn_resumed(p.s));
        struct tls_resume_stats st = resume_stats(cli);
        assert_int_equal(st.offered, 0);
        assert_int_equal(st.resumed, 0);
        assert_int_equal(st.entries, 1);
        assert_int_equal(st.capacity, TLS_SESSION_CACHE_DEFAULT);
        pair_close(&p);

        for (unsigned round = 1; round <= 3; round++) {
            rpair_open(&p, "up.test", TLS_CONN_F_ALPN_HTTP11, ver, cli, "up.test", key);
            assert_int_equal(p.rs, 1);
            assert_int_equal(p.rc, 1);
            assert_int_equal(SSL_version(tls_conn_ssl(p.c)), ver);
            assert_true(tls_conn_resumed(p.c));
            assert_true(tls_conn_resumed(p.s));
            assert_string_equal(tls_conn_alpn(p.c), "http/1.1");
            /* the chain verified for the session is still there */
            SSL *ssl = tls_conn_ssl(p.c);
            assert_int_equal(SSL_get_verify_result(ssl), X509_V_OK);
            X509 *peer = SSL_get0_peer_certificate(ssl);
            assert_non_null(peer);
            assert_int_equal(X509_check_host(peer, "up.test", 0, 0, NULL), 1);
            st = resume_stats(cli);
            assert_int_equal(st.offered, round);
            assert_int_equal(st.resumed, round);
            /* 1.3: the new ticket; 1.2: the session just used */
            assert_int_equal(st.entries, 1);
            pair_close(&p);
        }

        /* A session is offered to every connection (each gets a copy): of
         * two connections started together, both resume. */
        struct pair q;
        assert_int_equal(tls_conn_new_server(fx.srv, "up.test", 0, &p.s), 0);
        assert_int_equal(tls_conn_new_server(fx.srv, "up.test", 0, &q.s), 0);
        assert_int_equal(SSL_set_max_proto_version(tls_conn_ssl(p.s), ver), 1);
        assert_int_equal(SSL_set_max_proto_version(tls_conn_ssl(q.s), ver), 1);
        assert_int_equal(tls_conn_new_client(cli, "up.test", key, 0, &p.c), 0);
        assert_int_equal(tls_conn_new_client(cli, "up.test", key, 0, &q.c), 0);
        st = resume_stats(cli);
        assert_int_equal(st.offered, 5);
        assert_int_equal(st.entries, 1);
        handshake(p.s, p.c, &p.rs, &p.rc);
        handshake(q.s, q.c, &q.rs, &q.rc);
        assert_int_equal(p.rc, 1);
        assert_int_equal(q.rc, 1);
        assert_true(tls_conn_resumed(p.c));
        assert_true(tls_conn_resumed(q.c));
        ping_pong(&p);
        ping_pong(&q);
        st = resume_stats(cli);
        assert_int_equal(st.resumed, 5);
        assert_int_equal(st.entries, 1);
        pair_close(&p);
        pair_close(&q);
        assert_null(tls_client_free(cli));
    }
}

/* A session is offered only under its own key; no key, no resumption. */
static void test_resume_other_key_and_null(void **state)
{
    (void)state;
    const char *ka = "up.test|198.18.0.10|443", *kb = "up.test|198.18.0.11|443";
    struct tls_client *cli = resume_client();
    struct pair p;
    rpair_open(&p, "up.test", 0, 0, cli, "up.test", ka);
    assert_int_equal(p.rc, 1);
    pair_close(&p);

    rpair_open(&p, "up.test", 0, 0, cli, "up.test", kb);
    assert_int_equal(p.rc, 1);
    assert_false(tls_conn_resumed(p.c));
    struct tls_resume_stats st = resume_stats(cli);
    assert_int_equal(st.offered, 0);
    assert_int_equal(st.entries, 2);
    pair_close(&p);

    for (int i = 0; i < 2; i++) {
        rpair_open(&p, "up.test", 0, 0, cli, "up.test", NULL);
        assert_int_equal(p.rc, 1);
        assert_false(tls_conn_resumed(p.c));
        pair_close(&p);
    }
    st = resume_stats(cli);
    assert_int_equal(st.offered, 0);
    assert_int_equal(st.resumed, 0);
    assert_int_equal(st.entries, 2);

    /* a's session was left alone by all of that */
    rpair_open(&p, "up.test", 0, 0, cli, "up.test", ka);
    assert_true(tls_conn_resumed(p.c));
    pair_close(&p);
    st = resume_stats(cli);
    assert_int_equal(st.offered, 1);
    assert_int_equal(st.resumed, 1);

    /* a client that never gets a key keeps nothing */
    struct tls_client *plain = resume_client();
    for (int i = 0; i < 2; i++) {
        rpair_open(&p, "up.test", 0, TLS1_2_VERSION, plain, "up.test", NULL);
        assert_int_equal(p.rc, 1);
        assert_false(tls_conn_resumed(p.c));
        pair_close(&p);
    }
    st = resume_stats(plain);
    assert_int_equal(st.offered, 0);
    assert_int_equal(st.entries, 0);
    tls_client_free(plain);

    /* keys: 1..TLS_SESSION_KEY_MAX bytes */
    char big[TLS_SESSION_KEY_MAX + 2];
    memset(big, 'k', sizeof(big));
    big[TLS_SESSION_KEY_MAX + 1] = '\0';
    struct tls_conn *c = NULL;
    assert_int_equal(tls_conn_new_client(cli, "up.test", big, 0, &c), -EINVAL);
    assert_int_equal(tls_conn_new_client(cli, "up.test", "", 0, &c), -EINVAL);
    big[TLS_SESSION_KEY_MAX] = '\0';
    assert_int_equal(tls_conn_new_client(cli, "up.test", big, 0, &c), 0);
    tls_conn_free(c);
    tls_client_free(cli);
}

/* A failed handshake forgets its key's session, even one another connection
 * stored meanwhile; other keys keep theirs. */
static void test_resume_failure_drops(void **state)
{
    (void)state;
    const char *k = "fail.test|198.18.0.20|443", *other = "other.test|198.18.0.21|443";
    struct tls_client *cli = resume_client();
    struct pair p, x;
    rpair_open(&p, "other.test", 0, 0, cli, "other.test", other);
    assert_int_equal(p.rc, 1);
    pair_close(&p);

    /* x starts with nothing to offer; p stores a session for k meanwhile */
    assert_int_equal(tls_conn_new_server(fx.srv, "fail.test", TLS_CONN_F_REFUSE, &x.s), 0);
    assert_int_equal(tls_conn_new_client(cli, "fail.test", k, 0, &x.c), 0);
    rpair_open(&p, "fail.test", 0, 0, cli, "fail.test", k);
    assert_int_equal(p.rc, 1);
    pair_close(&p);
    struct tls_resume_stats st = resume_stats(cli);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.offered, 0);

    handshake(x.s, x.c, &x.rs, &x.rc);
    assert_int_equal(x.rc, -EPROTO);
    pair_close(&x);
    st = resume_stats(cli);
    assert_int_equal(st.entries, 1);

    rpair_open(&p, "fail.test", 0, 0, cli, "fail.test", k);
    assert_int_equal(p.rc, 1);
    assert_false(tls_conn_resumed(p.c));
    pair_close(&p);
    rpair_open(&p, "other.test", 0, 0, cli, "other.test", other);
    assert_true(tls_conn_resumed(p.c));
    pair_close(&p);
    st = resume_stats(cli);
    assert_int_equal(st.offered, 1);
    assert_int_equal(st.resumed, 1);

    /* an offered session whose server now refuses is not put back */
    assert_int_equal(st.entries, 2);
    rpair_open(&p, "fail.test", 0, 0, cli, "fail.test", k); /* resumes, stores anew */
    assert_true(tls_conn_resumed(p.c));
    pair_close(&p);
    assert_int_equal(tls_conn_new_server(fx.srv, "fail.test", TLS_CONN_F_REFUSE, &x.s), 0);
    assert_int_equal(tls_conn_new_client(cli, "fail.test", k, 0, &x.c), 0);
    handshake(x.s, x.c, &x.rs, &x.rc);
    assert_int_equal(x.rc, -EPROTO);
    pair_close(&x);
    st = resume_stats(cli);
    assert_int_equal(st.offered, 3);
    assert_int_equal(st.entries, 1);
    tls_client_free(cli);
}

/* A session cached for one name is never used for another under the same
 * key: OpenSSL checks neither chain nor name on a resumed handshake, and the
 * server here (presenting a.test) would resume it. */
static void test_resume_other_name(void **state)
{
    (void)state;
    static const struct {
        const char *leaf, *want;
    } cases[] = {{"a.test", "b.test"}, {"198.18.0.30", "198.18.0.31"}};
    const char *key = "same|198.18.0.30|443";
    for (unsigned v = 0; v < 2; v++) {
        for (unsigned i = 0; i < 2; i++) {
            struct tls_client *cli = resume_client();
            struct pair p;
            rpair_open(&p, cases[i].leaf, 0, resume_versions[v], cli, cases[i].leaf, key);
            assert_int_equal(p.rc, 1);
            pair_close(&p);
            assert_int_equal(resume_stats(cli).entries, 1);

            rpair_open(&p, cases[i].leaf, 0, resume_versions[v], cli, cases[i].want, key);
            assert_int_equal(p.rc, -EPROTO);
            assert_false(tls_conn_resumed(p.c));
            assert_non_null(strstr(tls_conn_error(p.c), "certificate verify failed"));
            pair_close(&p);
            struct tls_resume_stats st = resume_stats(cli);
            assert_int_equal(st.offered, 0);
            assert_int_equal(st.resumed, 0);
            assert_int_equal(st.entries, 0);
            tls_client_free(cli);
        }
    }
}

/* At most capacity sessions, the least recently stored evicted first. */
static void test_resume_lru_bound(void **state)
{
    (void)state;
    struct tls_client *cli = resume_client();
    struct pair p;
    char key[64];

    /* the real bound: one more key than it holds */
    for (unsigned i = 0; i <= TLS_SESSION_CACHE_DEFAULT; i++) {
        snprintf(key, sizeof(key), "lru.test|198.18.1.1|%u", 1000 + i);
        rpair_open(&p, "lru.test", 0, TLS1_2_VERSION, cli, "lru.test", key);
        assert_int_equal(p.rc, 1);
        pair_close(&p);
    }
    struct tls_resume_stats st = resume_stats(cli);
    assert_int_equal(st.capacity, TLS_SESSION_CACHE_DEFAULT);
    assert_int_equal(st.entries, TLS_SESSION_CACHE_DEFAULT);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.offered, 0);
    rpair_open(&p, "lru.test", 0, TLS1_2_VERSION, cli, "lru.test", "lru.test|198.18.1.1|1000");
    assert_false(tls_conn_resumed(p.c)); /* the oldest went */
    pair_close(&p);
    rpair_open(&p, "lru.test", 0, TLS1_2_VERSION, cli, "lru.test", "lru.test|198.18.1.1|1002");
    assert_true(tls_conn_resumed(p.c));
    pair_close(&p);
    st = resume_stats(cli);
    assert_int_equal(st.entries, TLS_SESSION_CACHE_DEFAULT);
    assert_int_equal(st.evictions, 2); /* 1000 came back and pushed out 1001 */

    /* a smaller bound, down to which the cache shrinks at once */
    tls_client_set_session_capacity(cli, 2);
    st = resume_stats(cli);
    assert_int_equal(st.capacity, 2);
    assert_int_equal(st.entries, 2);
    const char *keys[] = {"lru.test|k1", "lru.test|k2", "lru.test|k3"};
    for (unsigned i = 0; i < 3; i++) {
        rpair_open(&p, "lru.test", 0, 0, cli, "lru.test", keys[i]);
        assert_false(tls_conn_resumed(p.c));
        pair_close(&p);
    }
    st = resume_stats(cli);
    assert_int_equal(st.entries, 2);
    uint64_t offered = st.offered;
    /* k1 was the least recently stored: gone; k3 and k2 are there */
    rpair_open(&p, "lru.test", 0, 0, cli, "lru.test", keys[0]);
    assert_false(tls_conn_resumed(p.c)); /* stores k1, evicting k2 */
    pair_close(&p);
    rpair_open(&p, "lru.test", 0, 0, cli, "lru.test", keys[2]);
    assert_true(tls_conn_resumed(p.c));
    pair_close(&p);
    rpair_open(&p, "lru.test", 0, 0, cli, "lru.test", keys[1]);
    assert_false(tls_conn_resumed(p.c));
    pair_close(&p);
    st = resume_stats(cli);
    assert_int_equal(st.offered, offered + 1);
    assert_int_equal(st.entries, 2);
    tls_client_free(cli);
}

/* A connection outlives its client: it stores nothing, and nothing breaks. */
static void test_resume_client_freed_first(void **state)
{
    (void)state;
    struct tls_client *cli = resume_client();
    struct pair p;
    rpair_open(&p, "gone.test", 0, 0, cli, "gone.test", "gone.test|198.18.0.40|443");
    pair_close(&p);
    assert_int_equal(tls_conn_new_server(fx.srv, "gone.test", 0, &p.s), 0);
    assert_int_equal(tls_conn_new_client(cli, "gone.test", "gone.test|198.18.0.40|443", 0, &p.c),
                     0);
    cli = tls_client_free(cli);
    handshake(p.s, p.c, &p.rs, &p.rc);
    assert_int_equal(p.rc, 1);
    assert_true(tls_conn_resumed(p.c));
    ping_pong(&p); /* a ticket arrives with no cache to go to */
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest ca_tests[] = {
        cmocka_unit_test(test_ca_dir_env),           cmocka_unit_test(test_ca_create_and_reload),
        cmocka_unit_test(test_ca_key_mode_refused),  cmocka_unit_test(test_ca_mismatch_refused),
        cmocka_unit_test(test_ca_concurrent_create), cmocka_unit_test(test_client_extra_ca_errors),
    };
    const struct CMUnitTest conn_tests[] = {
        cmocka_unit_test(test_client_add_ca_file),
        cmocka_unit_test(test_client_trust_shared),
        cmocka_unit_test(test_handshake_dns_alpn),
        cmocka_unit_test(test_handshake_ip_literals),
        cmocka_unit_test(test_alpn_h2_only_client),
        cmocka_unit_test(test_data_both_ways),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_untrusted_ca),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_resume_same_key),
        cmocka_unit_test(test_resume_other_key_and_null),
        cmocka_unit_test(test_resume_failure_drops),
        cmocka_unit_test(test_resume_other_name),
        cmocka_unit_test(test_resume_lru_bound),
        cmocka_unit_test(test_resume_client_freed_first),
    };
    int r = cmocka_run_group_tests_name("tls_ca", ca_tests, NULL, NULL);
    r += cmocka_run_group_tests_name("tls_conn", conn_tests, group_setup, group_teardown);
    return r;
}
