/*
 * http_rules: request-target normalisation (policy_http_target_parse), path
 * and query globs, access levels, deny_rules and audit (policy_decide_http),
 * and requests shaped to dodge a deny rule.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

/* ---- helpers ---- */

static struct policy_http_target target; /* large: not on the stack */

/* Parse must give exactly this error, and on success this path. */
static void check_path(const char *raw, bool slash, enum policy_http_error want,
                       const char *want_path)
{
    enum policy_http_error e = policy_http_target_parse(raw, strlen(raw), slash, &target);
    if (e != want || (want == POLICY_HTTP_OK && strcmp(target.path, want_path) != 0))
        fail_msg("target \"%s\" (encoded slash %s): expected %s \"%s\", got %s \"%s\"", raw,
                 slash ? "allowed" : "refused", policy_http_error_name(want),
                 want_path ? want_path : "", policy_http_error_name(e), target.path);
    if (e == POLICY_HTTP_OK)
        assert_int_equal(target.path_len, strlen(target.path));
}

static const char *param_name(size_t i)
{
    return target.qbuf + target.params[i].name_off;
}

static const char *param_value(size_t i)
{
    return target.qbuf + target.params[i].value_off;
}

/* An endpoint body appended to a one-endpoint policy named "p". */
static struct policy *load_endpoint(const char *body)
{
    char yaml[8192], buf[600];
    struct policy *p = NULL;
    struct policy_error err;
    snprintf(yaml, sizeof(yaml),
             "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n"
             "      - host: api.test\n        port: 443\n        protocol: rest\n%s",
             body);
    if (policy_load_buffer("t.yaml", yaml, strlen(yaml), &p, &err) != 0)
        fail_msg("%s", policy_error_format(&err, buf, sizeof(buf)));
    return p;
}

static void first_endpoint(void *ctx, const char *name, const struct policy_endpoint *ep)
{
    (void)name;
    const struct policy_endpoint **ret = ctx;
    if (!*ret)
        *ret = ep;
}

static const struct policy_endpoint *endpoint_of(const struct policy *p)
{
    const struct policy_endpoint *ep = NULL;
    policy_foreach_endpoint(p, first_endpoint, &ep);
    assert_non_null(ep);
    return ep;
}

/*
 * Decide METHOD TARGET on the policy's endpoint and check the verdict and the
 * rule that decided.  A target the parser refuses is checked as want_error.
 */
static void check_req(const struct policy *p, bool audit, const char *method, const char *raw,
                      enum policy_verdict want, const char *want_rule)
{
    const struct policy_endpoint *ep = endpoint_of(p);
    struct policy_http_decision d;
    enum policy_http_error e = policy_http_target_parse(
        raw, strlen(raw), policy_endpoint_allow_encoded_slash(ep), &target);
    if (e != POLICY_HTTP_OK)
        fail_msg("%s %s: target refused: %s", method, raw, policy_http_error_name(e));
    memset(&d, 0xa5, sizeof(d));
    policy_decide_http(ep, audit, method, &target, &d);
    if (d.verdict != want || strcmp(d.rule, want_rule) != 0)
        fail_msg("%s %s (path %s): expected verdict %d by %s, got %d by %s", method, raw,
                 target.path, want, want_rule, d.verdict, d.rule);
    assert_int_equal(d.reason, want == POLICY_ALLOW ? POLICY_REASON_NONE : POLICY_REASON_L7_RULE);
    assert_string_equal(d.policy_name, "p");
}

#define ALLOW(p, m, t, r) check_req(p, false, m, t, POLICY_ALLOW, r)
#define DENY(p, m, t, r) check_req(p, false, m, t, POLICY_DENY, r)

/* ---- normalisation ---- */

static void test_normalize_plain(void **state)
{
    (void)state;
    check_path("/", false, POLICY_HTTP_OK, "/");
    check_path("/a/b", false, POLICY_HTTP_OK, "/a/b");
    check_path("/a/b/", false, POLICY_HTTP_OK, "/a/b/"); /* trailing slash kept */
    check_path("/a//b", false, POLICY_HTTP_OK, "/a/b");  /* empty segments merged */
    check_path("//a///b//", false, POLICY_HTTP_OK, "/a/b/");
    check_path("//", false, POLICY_HTTP_OK, "/");
    check_path("/a+b;c=d,e", false, POLICY_HTTP_OK, "/a+b;c=d,e"); /* '+' is not space here */
    check_path("/caf\xc3\xa9", false, POLICY_HTTP_OK, "/caf\xc3\xa9");
    check_path("/a/..x/...", false, POLICY_HTTP_OK, "/a/..x/..."); /* not dot segments */
    check_path("/a/b?", false, POLICY_HTTP_OK, "/a/b");
    check_path("/a/b?x=1/../..", false, POLICY_HTTP_OK, "/a/b"); /* the query is no path */
    check_path("/a/b?#", false, POLICY_HTTP_E_BAD_CHAR, NULL);
}

static void test_normalize_percent(void **state)
{
    (void)state;
    check_path("/%61%62", false, POLICY_HTTP_OK, "/ab");
    check_path("/%7e%7E%4a%4A%aA", false, POLICY_HTTP_OK, "/~~JJ\xaa"); /* either case */
    check_path("/a%20b", false, POLICY_HTTP_OK, "/a b");
    check_path("/a%3Fb?c", false, POLICY_HTTP_OK, "/a?b"); /* %3F is no query */
    check_path("/a%23b", false, POLICY_HTTP_OK, "/a#b");
    /* A decoded '%' stays encoded, so "%252F" can never pass for an encoded slash. */
    check_path("/%25", false, POLICY_HTTP_OK, "/%25");
    check_path("/a%252Fb", false, POLICY_HTTP_OK, "/a%252Fb");
    check_path("/a%252Fb", true, POLICY_HTTP_OK, "/a%252Fb");

    /* Encoded slash: refused, or kept encoded (never a separator). */
    check_path("/a%2Fb", false, POLICY_HTTP_E_ENCODED_SLASH, NULL);
    check_path("/a%2fb", false, POLICY_HTTP_E_ENCODED_SLASH, NULL);
    check_path("/a%2fb", true, POLICY_HTTP_OK, "/a%2Fb");
    check_path("/a%2F..%2Fb", true, POLICY_HTTP_OK, "/a%2F..%2Fb");
    check_path("/a/%2F/b", true, POLICY_HTTP_OK, "/a/%2F/b");
    check_path("/a/..%2f", true, POLICY_HTTP_OK, "/a/..%2F");

    /* Bad escapes, NUL, control characters. */
    static const char *const bad[] = {"/%", "/a%", "/%4", "/%4g", "/%g4", "/%zz", "/%%41", "/% 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_path(bad[i], true, POLICY_HTTP_E_BAD_PERCENT, NULL);
    check_path("/a%00", true, POLICY_HTTP_E_NUL, NULL);
    check_path("/%00/../a", true, POLICY_HTTP_E_NUL, NULL);
    check_path("/a%0a", true, POLICY_HTTP_E_CONTROL, NULL);
    check_path("/a%0D%0A", true, POLICY_HTTP_E_CONTROL, NULL);
    check_path("/a%1f", true, POLICY_HTTP_E_CONTROL, NULL);
    check_path("/a%7F", true, POLICY_HTTP_E_CONTROL, NULL);

    /* Raw bytes that never belong in a target. */
    check_path("/a b", true, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/a\tb", true, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/a\x7f", true, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/a#/../b", true, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/a\r\n", true, POLICY_HTTP_E_BAD_CHAR, NULL);
    enum policy_http_error e = policy_http_target_parse("/a\0b", 4, false, &target);
    assert_int_equal(e, POLICY_HTTP_E_BAD_CHAR);

    /* Only origin-form. */
    check_path("", false, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
    check_path("*", false, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
    check_path("a/b", false, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
    check_path("http://api.test/a", false, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
    check_path("%2Fa", true, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
    check_path("?a=1", false, POLICY_HTTP_E_NOT_ORIGIN_FORM, NULL);
}

static void test_normalize_dots(void **state)
{
    (void)state;
    check_path("/a/../b", false, POLICY_HTTP_OK, "/b");
    check_path("/./a", false, POLICY_HTTP_OK, "/a");
    check_path("/a/./b/.", false, POLICY_HTTP_OK, "/a/b/");
    check_path("/..", false, POLICY_HTTP_OK, "/");
    check_path("/../../a", false, POLICY_HTTP_OK, "/a");
    check_path("/a/b/..", false, POLICY_HTTP_OK, "/a/");
    check_path("/a/b/../", false, POLICY_HTTP_OK, "/a/");
    check_path("/a/.", false, POLICY_HTTP_OK, "/a/");
    check_path("/a/b/c/../../d", false, POLICY_HTTP_OK, "/a/d");
    check_path("/.", false, POLICY_HTTP_OK, "/");
    /* Encoded dots are decoded first. */
    check_path("/a/%2e%2e/b", false, POLICY_HTTP_OK, "/b");
    check_path("/a/%2E%2E/b", false, POLICY_HTTP_OK, "/b");
    check_path("/a/.%2e/b", false, POLICY_HTTP_OK, "/b");
    check_path("/a/%2e/b", false, POLICY_HTTP_OK, "/a/b");
    check_path("/a/b/%2e%2e", false, POLICY_HTTP_OK, "/a/");
    check_path("/a/%2e%2e%2fb", true, POLICY_HTTP_OK, "/a/..%2Fb"); /* one segment */
    /* ".." over an empty segment means "/a/b" to RFC 3986 and "/b" to a server
     * that merges slashes first: refused. */
    check_path("/a//../b", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a//b/../../c", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a//./../c", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("//..", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a//b/../c", false, POLICY_HTTP_OK, "/a/c"); /* the same either way */
    /* Dot segments with parameters, which Java servers resolve. */
    check_path("/public/..;/admin", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a/.;x/b", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a/%2e%2e;/b", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a/..%3b/b", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/a;x/../b", false, POLICY_HTTP_OK, "/b");
}

static void test_normalize_long(void **state)
{
    (void)state;
    char *raw = malloc(POLICY_HTTP_MAX_TARGET + 2);
    assert_non_null(raw);

    /* The longest target is accepted whole, one more byte is refused. */
    memset(raw, 'a', POLICY_HTTP_MAX_TARGET + 1);
    raw[0] = '/';
    assert_int_equal(policy_http_target_parse(raw, POLICY_HTTP_MAX_TARGET, false, &target),
                     POLICY_HTTP_OK);
    assert_int_equal(target.path_len, POLICY_HTTP_MAX_TARGET);
    assert_int_equal(policy_http_target_parse(raw, POLICY_HTTP_MAX_TARGET + 1, false, &target),
                     POLICY_HTTP_E_TOO_LONG);

    /* Thousands of segments, all dots. */
    size_t n = 0;
    while (n + 3 <= POLICY_HTTP_MAX_TARGET) {
        memcpy(raw + n, "/..", 3);
        n += 3;
    }
    assert_int_equal(policy_http_target_parse(raw, n, false, &target), POLICY_HTTP_OK);
    assert_string_equal(target.path, "/");

    /* Thousands of one-letter segments, then as many "..": back to "/x". */
    n = 0;
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(raw + n, "/a");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(raw + n, "/%%2e.");
    n += (size_t)sprintf(raw + n, "/x");
    assert_int_equal(policy_http_target_parse(raw, n, false, &target), POLICY_HTTP_OK);
    assert_string_equal(target.path, "/x");

    /* A long query is decoded whole. */
    n = (size_t)sprintf(raw, "/q?v=");
    memset(raw + n, 'b', POLICY_HTTP_MAX_TARGET - n);
    assert_int_equal(policy_http_target_parse(raw, POLICY_HTTP_MAX_TARGET, false, &target),
                     POLICY_HTTP_OK);
    assert_int_equal(target.n_params, 1);
    assert_int_equal(target.params[0].value_len, POLICY_HTTP_MAX_TARGET - n);
    free(raw);
}

static void test_query_decode(void **state)
{
    (void)state;
    const char *raw = "/s?a=1&b=x%2By+z&c&d=&=e&&f=g=h&%71=%41%62&a=2";
    assert_int_equal(policy_http_target_parse(raw, strlen(raw), false, &target), POLICY_HTTP_OK);
    assert_string_equal(target.path, "/s");
    static const char *const want[][2] = {{"a", "1"}, {"b", "x+y z"}, {"c", ""},   {"d", ""},
                                          {"", "e"},  {"f", "g=h"},   {"q", "Ab"}, {"a", "2"}};
    assert_int_equal(target.n_params, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < target.n_params; i++) {
        assert_string_equal(param_name(i), want[i][0]);
        assert_string_equal(param_value(i), want[i][1]);
        assert_int_equal(target.params[i].name_len, strlen(want[i][0]));
        assert_int_equal(target.params[i].value_len, strlen(want[i][1]));
    }

    /* Control characters other than NUL are data in a query value. */
    raw = "/s?a=%0a";
    assert_int_equal(policy_http_target_parse(raw, strlen(raw), false, &target), POLICY_HTTP_OK);
    assert_string_equal(param_value(0), "\n");
    check_path("/s?a=%00", false, POLICY_HTTP_E_NUL, NULL);
    check_path("/s?a%00=1", false, POLICY_HTTP_E_NUL, NULL);
    check_path("/s?a=%zz", false, POLICY_HTTP_E_BAD_PERCENT, NULL);
    check_path("/s?a=%2", false, POLICY_HTTP_E_BAD_PERCENT, NULL);
    check_path("/s?a=x y", false, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/s?a=x#y", false, POLICY_HTTP_E_BAD_CHAR, NULL);
    /* A '?' in the query is data; %2F in a query is fine without allow_encoded_slash. */
    raw = "/s?a=b?c%2Fd";
    assert_int_equal(policy_http_target_parse(raw, strlen(raw), false, &target), POLICY_HTTP_OK);
    assert_string_equal(param_value(0), "b?c/d");

    /* POLICY_HTTP_MAX_QUERY_PARAMS pairs, and one more is refused, not dropped. */
    char buf[4096];
    size_t n = (size_t)sprintf(buf, "/s?");
    for (int i = 0; i < POLICY_HTTP_MAX_QUERY_PARAMS; i++)
        n += (size_t)sprintf(buf + n, "p%d=%d&", i, i);
    assert_int_equal(policy_http_target_parse(buf, n, false, &target), POLICY_HTTP_OK);
    assert_int_equal(target.n_params, POLICY_HTTP_MAX_QUERY_PARAMS);
    assert_string_equal(param_name(POLICY_HTTP_MAX_QUERY_PARAMS - 1), "p127");
    n += (size_t)sprintf(buf + n, "x=1");
    assert_int_equal(policy_http_target_parse(buf, n, false, &target),
                     POLICY_HTTP_E_TOO_MANY_PARAMS);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_null(policy_http_error_name(POLICY_HTTP_OK));
    assert_null(policy_http_error_name(POLICY_HTTP_ERROR_MAX));
    for (int e = POLICY_HTTP_OK + 1; e < POLICY_HTTP_ERROR_MAX; e++) {
        const char *n = policy_http_error_name((enum policy_http_error)e);
        assert_non_null(n);
        for (int f = POLICY_HTTP_OK + 1; f < e; f++)
            assert_string_not_equal(n, policy_http_error_name((enum policy_http_error)f));
    }
    assert_string_equal(policy_http_error_name(POLICY_HTTP_E_ENCODED_SLASH), "encoded_slash");
    assert_string_equal(policy_http_error_name(POLICY_HTTP_E_BAD_PERCENT), "bad_percent_encoding");
}

/* ---- globs ---- */

/* One allow rule with this path glob; a request matches it or hits "no_rule". */
static void check_glob(const char *glob, const char *const *yes, const char *const *no)
{
    char body[2048];
    snprintf(body, sizeof(body),
             "        allow_encoded_slash: true\n"
             "        rules: [{allow: {method: GET, path: \"%s\"}}]\n",
             glob);
    struct policy *p = load_endpoint(body);
    for (; *yes; yes++)
        ALLOW(p, "GET", *yes, "rules[0]");
    for (; *no; no++)
        DENY(p, "GET", *no, "no_rule");
    policy_free(p);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

static void test_glob_star(void **state)
{
    (void)state;
    check_glob("/a/*", LIST("/a/x", "/a/x/", "/a/xyz", "/a//x", "/a/x%2Fy", "/a/*"),
               LIST("/a", "/a/", "/a/x/y", "/b/x", "/A/x", "/ax"));
    check_glob("/*", LIST("/x", "/x/"), LIST("/", "/x/y"));
    check_glob("/*/b", LIST("/a/b", "/zz/b/"), LIST("/b", "/a/c/b", "/a/bb"));
    check_glob("/v1/*.json", LIST("/v1/x.json", "/v1/.json", "/v1/a.b.json"),
               LIST("/v1/x.jsonx", "/v1/a/b.json", "/v1/json", "/v1/x.JSON"));
    check_glob("/a*b*c", LIST("/abc", "/aXbYc", "/abbc", "/a-b-c-c"), LIST("/acb", "/ab", "/abcd"));
    check_glob("/*a*", LIST("/a", "/bab", "/aaa"), LIST("/b", "/b/a"));
    check_glob("/x", LIST("/x", "/x/", "//x//"), LIST("/", "/xx", "/x/y", "/X"));
    check_glob("/", LIST("/", "//"), LIST("/a"));
    /* Globs are decoded like paths: %61 is 'a', %2F an encoded slash. */
    check_glob("/%61/b%20c", LIST("/a/b%20c", "/%61/b%20c"), LIST("/a/b+c"));
    check_glob("/a%2Fb", LIST("/a%2fb", "/a%2Fb"), LIST("/a/b", "/a%252Fb"));
}

static void test_glob_globstar(void **state)
{
    (void)state;
    check_glob("/**", LIST("/", "/a", "/a/b/c", "/a/"), NONE);
    check_glob("/a/**", LIST("/a", "/a/", "/a/x", "/a/x/y/z"), LIST("/", "/ab", "/b/a", "/ab/c"));
    check_glob("/a/**/b", LIST("/a/b", "/a/x/b", "/a/x/y/b", "/a/b/b", "/a/b/"),
               LIST("/a", "/a/x/c", "/a/b/c", "/b"));
    check_glob("/**/x", LIST("/x", "/a/x", "/a/b/x", "/x/x"), LIST("/", "/x/a", "/ax"));
    check_glob("/**/**", LIST("/", "/a/b"), NONE);
    check_glob("/a/**/b/**/c", LIST("/a/b/c", "/a/1/b/2/3/c", "/a/b/b/c/c", "/a/b/x/b/c"),
               LIST("/a/c/b", "/a/b", "/a/b/c/d"));
    check_glob("/a/*/**", LIST("/a/x", "/a/x/y/z"), LIST("/a", "/a/"));
    check_glob("/**/*.git", LIST("/r.git", "/o/r.git", "/a/b/c.git"), LIST("/r.git/x", "/git"));
}

/* ---- decisions ---- */

static void test_access_levels(void **state)
{
    (void)state;
    static const char *const methods[] = {"GET",   "HEAD",  "OPTIONS", "POST",
                                          "PUT",   "PATCH", "DELETE",  "CONNECT",
                                          "TRACE", "get",   "Get",     "PROPFIND"};
    static const struct {
        const char *level;
        const char *allowed; /* ';'-joined */
    } levels[] = {
        {"read-only", ";GET;HEAD;OPTIONS;"},
        {"read-write", ";GET;HEAD;OPTIONS;POST;PUT;PATCH;"},
        {"full", ";GET;HEAD;OPTIONS;POST;PUT;PATCH;DELETE;CONNECT;TRACE;get;Get;PROPFIND;"},
    };
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        char body[128], rule[64], key[32];
        snprintf(body, sizeof(body), "        access: %s\n", levels[i].level);
        snprintf(rule, sizeof(rule), "access:%s", levels[i].level);
        struct policy *p = load_endpoint(body);
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
            snprintf(key, sizeof(key), ";%s;", methods[m]);
            if (strstr(levels[i].allowed, key))
                ALLOW(p, methods[m], "/any/path?x=1", rule);
            else
                DENY(p, methods[m], "/any/path?x=1", rule);
        }
        policy_free(p);
    }
}

static void test_rules_order_and_methods(void **state)
{
    (void)state;
    struct policy *p = load_endpoint("        rules:\n"
                                     "          - allow: {method: GET, path: /a}\n"
                                     "          - allow: {method: \"*\", path: /b}\n"
                                     "          - allow: {method: POST, path: \"/**\"}\n"
                                     "          - allow: {method: PROPFIND, path: /dav}\n");
    ALLOW(p, "GET", "/a", "rules[0]");
    DENY(p, "HEAD", "/a", "no_rule"); /* rules name methods exactly: no implied HEAD */
    DENY(p, "get", "/a", "no_rule");  /* allow rules are case-sensitive */
    ALLOW(p, "DELETE", "/b", "rules[1]");
    ALLOW(p, "whatever", "/b", "rules[1]");
    ALLOW(p, "POST", "/a", "rules[2]"); /* first match wins */
    ALLOW(p, "POST", "/b", "rules[1]");
    ALLOW(p, "PROPFIND", "/dav/", "rules[3]");
    DENY(p, "PUT", "/c", "no_rule");
    policy_free(p);
}

static void test_query_rules(void **state)
{
    (void)state;
    struct policy *p =
        load_endpoint("        rules:\n"
                      "          - allow:\n"
                      "              method: GET\n"
                      "              path: /search\n"
                      "              query:\n"
                      "                q: \"foo*\"\n"
                      "                per_page: {any: [\"10\", \"1*0\"]}\n"
                      "          - allow: {method: GET, path: /empty, query: {a: \"\"}}\n"
                      "        deny_rules:\n"
                      "          - {method: GET, path: /search, query: {q: \"*secret*\"}}\n");
    ALLOW(p, "GET", "/search?q=foobar&per_page=10", "rules[0]");
    ALLOW(p, "GET", "/search?per_page=100&q=foo", "rules[0]");
    ALLOW(p, "GET", "/search?q=foo+bar&per_page=1000&extra=1", "rules[0]"); /* '+' is a space */
    ALLOW(p, "GET", "/search?%71=foo&per_page=1%30", "rules[0]");           /* decoded names */
    DENY(p, "GET", "/search?q=bar&per_page=10", "no_rule");
    DENY(p, "GET", "/search?q=foo", "no_rule");             /* missing parameter */
    DENY(p, "GET", "/search?Q=foo&per_page=10", "no_rule"); /* names are case-sensitive */
    DENY(p, "GET", "/search?q=foo&per_page=11", "no_rule");
    DENY(p, "GET", "/search?q=foo&per_page", "no_rule"); /* empty value */
    DENY(p, "GET", "/search", "no_rule");
    /* Repeated: every occurrence must match for an allow ... */
    ALLOW(p, "GET", "/search?q=foo1&q=foo2&per_page=10", "rules[0]");
    DENY(p, "GET", "/search?q=foo&q=bar&per_page=10", "no_rule");
    DENY(p, "GET", "/search?q=foo&per_page=10&per_page=999", "no_rule");
    /* ... and any occurrence denies. */
    DENY(p, "GET", "/search?q=foo&q=foosecret&per_page=10", "deny_rules[0]");
    DENY(p, "GET", "/search?q=foo%73ecret&per_page=10", "deny_rules[0]");
    /* Empty globs match empty values only. */
    ALLOW(p, "GET", "/empty?a", "rules[1]");
    ALLOW(p, "GET", "/empty?a=", "rules[1]");
    DENY(p, "GET", "/empty?a=x", "no_rule");
    DENY(p, "GET", "/empty", "no_rule");
    policy_free(p);
}

static void test_deny_wins(void **state)
{
    (void)state;
    struct policy *p =
        load_endpoint("        access: full\n"
                      "        deny_rules:\n"
                      "          - {method: DELETE, path: \"/**\"}\n"
                      "          - {method: \"*\", path: /admin/**}\n"
                      "          - {method: POST, path: /x, query: {force: \"true\"}}\n");
    ALLOW(p, "GET", "/repos", "access:full");
    DENY(p, "DELETE", "/repos", "deny_rules[0]");
    DENY(p, "delete", "/repos", "deny_rules[0]"); /* deny methods match in any case */
    DENY(p, "GET", "/admin", "deny_rules[1]");
    DENY(p, "GET", "/admin/users/1", "deny_rules[1]");
    DENY(p, "GET", "/ADMIN/users", "deny_rules[1]"); /* and paths in any case */
    DENY(p, "GET", "/admin;jsessionid=1/users", "deny_rules[1]");
    DENY(p, "GET", "/x/../admin", "deny_rules[1]");
    ALLOW(p, "GET", "/administrator", "access:full");
    ALLOW(p, "POST", "/x", "access:full");
    ALLOW(p, "POST", "/x?force=false", "access:full");
    DENY(p, "POST", "/x?force=true", "deny_rules[2]");
    DENY(p, "POST", "/x?force=false&force=true", "deny_rules[2]");
    DENY(p, "POST", "/x?force=TRUE", "deny_rules[2]"); /* deny queries in any case too */
    DENY(p, "POST", "/x?Force=True", "deny_rules[2]");
    policy_free(p);

    p = load_endpoint("        rules:\n"
                      "          - allow: {method: GET, path: \"/**\"}\n"
                      "        deny_rules:\n"
                      "          - {method: GET, path: /private/**}\n");
    ALLOW(p, "GET", "/public", "rules[0]");
    DENY(p, "GET", "/private/key", "deny_rules[0]");
    policy_free(p);
}

static void test_audit(void **state)
{
    (void)state;
    struct policy *p = load_endpoint("        access: read-only\n"
                                     "        deny_rules: [{method: GET, path: /secret}]\n");
    /* The sandbox's audit mode: a deny passes as audit, with the rule that would deny. */
    check_req(p, true, "POST", "/x", POLICY_AUDIT, "access:read-only");
    check_req(p, true, "GET", "/secret", POLICY_AUDIT, "deny_rules[0]");
    check_req(p, true, "GET", "/x", POLICY_ALLOW, "access:read-only");
    check_req(p, false, "POST", "/x", POLICY_DENY, "access:read-only");
    policy_free(p);

    /* enforcement: audit on the endpoint does the same without audit mode. */
    p = load_endpoint("        enforcement: audit\n"
                      "        rules: [{allow: {method: GET, path: /ok}}]\n");
    check_req(p, false, "GET", "/no", POLICY_AUDIT, "no_rule");
    check_req(p, false, "GET", "/ok", POLICY_ALLOW, "rules[0]");
    policy_free(p);
}

static void test_not_inspected(void **state)
{
    (void)state;
    const char *yaml = "version: 1\nnetwork_policies:\n  l4:\n    endpoints:\n"
                       "      - {host: api.test, port: 443}\n";
    struct policy *p = NULL;
    struct policy_http_decision d;
    assert_int_equal(policy_load_buffer("t", yaml, strlen(yaml), &p, NULL), 0);
    const struct policy_endpoint *ep = endpoint_of(p);
    assert_false(policy_endpoint_inspect(ep));
    assert_int_equal(policy_http_target_parse("/", 1, false, &target), POLICY_HTTP_OK);
    /* A caller bug fails closed, audit mode or not. */
    policy_decide_http(ep, true, "GET", &target, &d);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_string_equal(d.rule, "not_inspected");
    assert_string_equal(d.policy_name, "l4");
    policy_decide_http(NULL, true, "GET", &target, &d);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_string_equal(d.rule, "not_inspected");
    assert_null(d.policy_name);
    assert_false(policy_endpoint_inspect(NULL));
    assert_false(policy_endpoint_allow_encoded_slash(NULL));
    policy_free(p);
}

/* ---- dodging a deny rule ---- */

static void test_no_dodge(void **state)
{
    (void)state;
    struct policy *p =
        load_endpoint("        access: full\n"
                      "        deny_rules:\n"
                      "          - {method: PUT, path: \"/repos/*/*/branches/*/protection\"}\n");
    static const char *const denied[] = {
        "/repos/a/b/branches/c/protection",
        "/repos/a/b/x/../branches/c/protection",
        "/repos/a/b/x/%2e%2e/branches/c/protection",
        "/repos/a/b/x/%2E./branches/c/protection",
        "/repos/a/b/branches/c/%70rotection",
        "/repos/a/b/branches/c/%70%72%6F%74%65%63%74%69%6f%6e",
        "/%72epos/a/b/branches/c/protection",
        "/repos/a/b/branches/c/protection/",
        "/repos/a/b/branches/c/protection//",
        "/repos/a/b/branches/c/protection/.",
        "/repos/a//b/branches/c/protection",
        "//repos/a/b/branches/c/protection",
        "/repos/a/b/branches/c//protection",
        "/repos/a/b/branches/c/./protection",
        "/repos/a/b/branches/c/%2e/protection",
        "/./repos/a/b/branches/c/protection",
        "/../repos/a/b/branches/c/protection",
        "/repos/a/b/branches/c/protection?x=1",
        "/repos/a/b/branches/c/PROTECTION",
        "/repos/a/b/branches/c/protection;v=1",
        "/repos/a/b;x/branches/c/protection",
        "/repos/a/b/branches/c/x/y/../../protection",
    };
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        DENY(p, "PUT", denied[i], "deny_rules[0]");
        DENY(p, "put", denied[i], "deny_rules[0]");
    }
    /* Shapes that cannot be decided safely never reach the rules. */
    check_path("/repos/a/b/branches/c%2Fprotection", false, POLICY_HTTP_E_ENCODED_SLASH, NULL);
    check_path("/repos/a/b/branches/c/protection%00", false, POLICY_HTTP_E_NUL, NULL);
    check_path("/repos/a/b/branches/c/protection#", false, POLICY_HTTP_E_BAD_CHAR, NULL);
    check_path("/repos/a/b/branches/c/protection%", false, POLICY_HTTP_E_BAD_PERCENT, NULL);
    check_path("/repos/a/b/x/..;/branches/c/protection", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    check_path("/repos/a/b/branches/c/x//../protection", false, POLICY_HTTP_E_AMBIGUOUS_DOTS, NULL);
    /* What the rule does not cover stays allowed. */
    ALLOW(p, "PUT", "/repos/a/b/branches/c", "access:full");
    ALLOW(p, "GET", "/repos/a/b/branches/c/protection", "access:full");
    ALLOW(p, "PUT", "/repos/a/b/branches/c/protection/x", "access:full");
    ALLOW(p, "PUT", "/repos/a/b/c/branches/d/protection", "access:full");
    policy_free(p);

    /* An allow rule cannot be widened by the same tricks. */
    p = load_endpoint("        rules: [{allow: {method: GET, path: \"/public/**\"}}]\n");
    ALLOW(p, "GET", "/public/x", "rules[0]");
    static const char *const escapes[] = {"/public/../admin",
                                          "/public/%2e%2e/admin",
                                          "/public/x/../../admin",
                                          "/public;/../admin",
                                          "/PUBLIC/x",
                                          "/publicx"};
    for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++)
        DENY(p, "GET", escapes[i], "no_rule");
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_plain), cmocka_unit_test(test_normalize_percent),
        cmocka_unit_test(test_normalize_dots),  cmocka_unit_test(test_normalize_long),
        cmocka_unit_test(test_query_decode),    cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_glob_star),       cmocka_unit_test(test_glob_globstar),
        cmocka_unit_test(test_access_levels),   cmocka_unit_test(test_rules_order_and_methods),
        cmocka_unit_test(test_query_rules),     cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_audit),           cmocka_unit_test(test_not_inspected),
        cmocka_unit_test(test_no_dodge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
