/*
 * Unit tests of the events module: MESSAGE, JSON and OCSF formats, cleaning
 * of hostile strings, priorities, the rate limiter (with fake clocks), JSONL
 * rotation, --since parsing, and a round trip through the journal when one
 * runs here.
 *
 * events.c is included (h2o style) to reach its static state: the clocks,
 * the stderr sink and the limiter constants.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "events.c"

#define T0_US 1796025600123456ull /* 2026-11-30T08:00:00.123456Z */

static uint64_t fake_ms = 1000000;
static uint64_t fake_us = T0_US;

static uint64_t fake_now_ms(void)
{
    return fake_ms;
}

static uint64_t fake_now_us(void)
{
    return fake_us;
}

static struct event ev_denied(void)
{
    struct event ev;
    memset(&ev, 0, sizeof(ev));
    ev.sandbox = "agent-1";
    ev.type = "NET:OPEN";
    ev.action = EVENT_ACTION_DENIED;
    ev.reason = "no_matching_policy";
    ev.proto = "tcp";
    assert_int_equal(net_addr_parse("198.18.0.10", &ev.dst_ip), 0);
    ev.dst_port = 8080;
    ev.pid = 4242;
    ev.exe = "/usr/bin/curl";
    ev.severity = EVENT_SEVERITY_MEDIUM;
    return ev;
}

static char *msg(const struct event *ev)
{
    static char buf[8192];
    int n = event_format_message(ev, buf, sizeof(buf));
    assert_true(n >= 0 && (size_t)n < sizeof(buf));
    assert_int_equal((size_t)n, strlen(buf));
    return buf;
}

static bool json_ok(const char *s)
{
    return events_json_valid(s, strlen(s));
}

/* ---- names, priority ---- */

static void test_names_priority(void **state)
{
    (void)state;
    struct event ev = ev_denied();

    assert_string_equal(event_action_name(EVENT_ACTION_ALLOWED), "allowed");
    assert_string_equal(event_action_name(EVENT_ACTION_DENIED), "denied");
    assert_string_equal(event_action_name(EVENT_ACTION_AUDIT), "audit");
    assert_string_equal(event_severity_name(EVENT_SEVERITY_INFO), "info");
    assert_string_equal(event_severity_name(EVENT_SEVERITY_LOW), "low");
    assert_string_equal(event_severity_name(EVENT_SEVERITY_MEDIUM), "medium");
    assert_string_equal(event_severity_name(EVENT_SEVERITY_HIGH), "high");
    assert_string_equal(event_severity_name(EVENT_SEVERITY_CRITICAL), "critical");

    assert_int_equal(event_priority(&ev), 4);
    ev.action = EVENT_ACTION_ALLOWED;
    ev.severity = EVENT_SEVERITY_INFO;
    assert_int_equal(event_priority(&ev), 6);
    ev.action = EVENT_ACTION_AUDIT;
    ev.severity = EVENT_SEVERITY_LOW;
    assert_int_equal(event_priority(&ev), 5);
    ev.action = EVENT_ACTION_DENIED;
    ev.severity = EVENT_SEVERITY_HIGH;
    assert_int_equal(event_priority(&ev), 3);
    ev.severity = EVENT_SEVERITY_CRITICAL;
    assert_int_equal(event_priority(&ev), 3);
    ev.action = EVENT_ACTION_ALLOWED;
    assert_int_equal(event_priority(&ev), 3);
}

/* ---- MESSAGE ---- */

static void test_message_denied(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED curl(4242) -> 198.18.0.10:8080 "
                                  "[policy:- reason:no_matching_policy]");
}

static void test_message_allowed_audit(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    ev.action = EVENT_ACTION_ALLOWED;
    ev.severity = EVENT_SEVERITY_INFO;
    ev.reason = NULL;
    ev.policy = "github_readonly";
    ev.dst_host = "api.github.com";
    assert_int_equal(net_addr_parse("140.82.112.6", &ev.dst_ip), 0);
    ev.dst_port = 443;
    assert_string_equal(msg(&ev), "NET:OPEN [INFO] ALLOWED curl(4242) -> 140.82.112.6:443 "
                                  "[policy:github_readonly reason:- host:api.github.com]");

    ev.action = EVENT_ACTION_AUDIT;
    ev.severity = EVENT_SEVERITY_LOW;
    ev.policy = NULL;
    ev.reason = "no_matching_policy";
    ev.type = "UDP:SEND";
    ev.proto = "udp";
    ev.dst_port = 53;
    ev.dst_host = NULL;
    assert_string_equal(msg(&ev), "UDP:SEND [LOW] AUDIT curl(4242) -> 140.82.112.6:53 "
                                  "[policy:- reason:no_matching_policy]");

    ev.severity = EVENT_SEVERITY_CRITICAL;
    ev.detail = "burst";
    assert_string_equal(msg(&ev), "UDP:SEND [CRIT] AUDIT curl(4242) -> 140.82.112.6:53 "
                                  "[policy:- reason:no_matching_policy detail:burst]");
}

static void test_message_http(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    ev.type = "HTTP:PUT";
    ev.severity = EVENT_SEVERITY_HIGH;
    ev.reason = "l7_rule";
    ev.policy = "github_readonly";
    ev.dst_host = "api.github.com";
    assert_int_equal(net_addr_parse("140.82.112.6", &ev.dst_ip), 0);
    ev.dst_port = 443;
    ev.http_method = "PUT";
    ev.http_path = "/repos/x/y/branches/main/protection";
    ev.exe = "/usr/bin/git";
    ev.pid = 99;
    assert_string_equal(msg(&ev), "HTTP:PUT [HIGH] DENIED git(99) -> 140.82.112.6:443 PUT "
                                  "/repos/x/y/branches/main/protection [policy:github_readonly "
                                  "reason:l7_rule host:api.github.com]");

    /* Host only (no address known): the name is the destination. */
    memset(&ev.dst_ip, 0, sizeof(ev.dst_ip));
    ev.http_method = "GET";
    ev.http_path = NULL;
    ev.type = "HTTP:GET";
    ev.severity = EVENT_SEVERITY_MEDIUM;
    assert_string_equal(msg(&ev), "HTTP:GET [MED] DENIED git(99) -> api.github.com:443 GET - "
                                  "[policy:github_readonly reason:l7_rule]");
}

static void test_message_process_and_ipv6(void **state)
{
    (void)state;
    struct event ev = ev_denied();

    ev.exe = NULL;
    ev.pid = 0;
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED - -> 198.18.0.10:8080 "
                                  "[policy:- reason:no_matching_policy]");
    ev.pid = 4242;
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED -(4242) -> 198.18.0.10:8080 "
                                  "[policy:- reason:no_matching_policy]");
    ev.pid = 0;
    ev.exe = "/usr/bin/curl";
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED curl -> 198.18.0.10:8080 "
                                  "[policy:- reason:no_matching_policy]");
    ev.exe = "curl";
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED curl -> 198.18.0.10:8080 "
                                  "[policy:- reason:no_matching_policy]");

    assert_int_equal(net_addr_parse("2001:db8::1", &ev.dst_ip), 0);
    ev.dst_port = 443;
    ev.dst_host = "v6.example";
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED curl -> [2001:db8::1]:443 "
                                  "[policy:- reason:no_matching_policy host:v6.example]");
    ev.dst_port = 0;
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED curl -> 2001:db8::1 "
                                  "[policy:- reason:no_matching_policy host:v6.example]");

    /* Nothing known about the destination, no type. */
    memset(&ev.dst_ip, 0, sizeof(ev.dst_ip));
    ev.dst_host = NULL;
    ev.type = NULL;
    ev.reason = NULL;
    assert_string_equal(msg(&ev), "- [MED] DENIED curl -> - [policy:- reason:-]");
}

static void test_message_control_chars(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    ev.exe = "/tmp/ev\x1b[2Jil\n";
    ev.dst_host = "a\r\nb.example\x7f";
    ev.http_method = "GET";
    ev.http_path = "/p\tq\xff\xc3\xbc\xc2\x9b";
    ev.policy = "po\x01l";
    ev.detail = "d\x1f";
    assert_string_equal(msg(&ev), "NET:OPEN [MED] DENIED ev?[2Jil?(4242) -> 198.18.0.10:8080 "
                                  "GET /p?q?\xc3\xbc? [policy:po?l reason:no_matching_policy "
                                  "host:a??b.example? detail:d?]");
}

static void test_message_truncation(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    char small[16];

    int n = event_format_message(&ev, small, sizeof(small));
    assert_int_equal(n, (int)strlen("NET:OPEN [MED] DENIED curl(4242) -> 198.18.0.10:8080 "
                                    "[policy:- reason:no_matching_policy]"));
    assert_string_equal(small, "NET:OPEN [MED] ");
    assert_int_equal(event_format_message(&ev, NULL, 0), n);

    /* A cut never leaves half a character. */
    ev.type = "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc";
    char cut[8];
    event_format_message(&ev, cut, sizeof(cut));
    assert_string_equal(cut, "\xc3\xbc\xc3\xbc\xc3\xbc");

    /* Field caps. */
    char *longpath = malloc(5001);
    assert_non_null(longpath);
    memset(longpath, 'a', 5000);
    longpath[5000] = '\0';
    ev.type = "HTTP:GET";
    ev.http_path = longpath;
    ev.http_method = "GET";
    char *m = msg(&ev);
    assert_non_null(strstr(m, "GET aaaa"));
    assert_null(strstr(m, longpath + 5000 - EVENTS_PATH_MAX - 1));
    assert_non_null(strstr(m, longpath + 5000 - EVENTS_PATH_MAX));
    free(longpath);
}

/* ---- JSON ---- */

static void test_json_validator(void **state)
{
    (void)state;
    assert_true(json_ok("{}"));
    assert_true(json_ok(" {\"a\":[1,-2.5e3,true,false,null,\"x\\u00e9\\n\"],\"b\":{}} "));
    assert_true(json_ok("\"\xc3\xbc\""));
    assert_false(json_ok(""));
    assert_false(json_ok("{"));
    assert_false(json_ok("{\"a\":1,}"));
    assert_false(json_ok("{\"a\" 1}"));
    assert_false(json_ok("{a:1}"));
    assert_false(json_ok("\"\n\""));
    assert_false(json_ok("\"\xff\""));
    assert_false(json_ok("\"\\x\""));
    assert_false(json_ok("\"\\u12\""));
    assert_false(json_ok("01"));
    assert_false(json_ok("{} {}"));
    assert_false(json_ok("[1 2]"));
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    assert_false(events_json_valid(deep, sizeof(deep)));
}

static void test_json_escaping(void **state)
{
    (void)state;
    char buf[256];
    struct sbuf b;

    sbuf_init(&b, buf, sizeof(buf));
    sbuf_put_text(&b, "a\"b\\c\nd\x1b\xff\xc3\xbc\x7f", SIZE_MAX, 100, SBUF_JSON_RAW);
    sbuf_finish(&b);
    assert_string_equal(buf, "a\\\"b\\\\c\\nd\\u001b\\ufffd\xc3\xbc\\u007f");

    sbuf_init(&b, buf, sizeof(buf));
    sbuf_put_text(&b, "a\"b\\c\nd\x1b\xff\xc3\xbc\x7f", SIZE_MAX, 100, SBUF_JSON_CLEAN);
    sbuf_finish(&b);
    assert_string_equal(buf, "a\\\"b\\\\c?d??\xc3\xbc?");

    /* Overlong, surrogate, and cut sequences are not UTF-8. */
    sbuf_init(&b, buf, sizeof(buf));
    sbuf_put_text(&b, "\xc0\xaf|\xed\xa0\x80|\xe2\x82", SIZE_MAX, 100, SBUF_CLEAN);
    sbuf_finish(&b);
    assert_string_equal(buf, "??|???|??");

    /* Runs of plain ASCII are copied whole; the cap and a short buffer cut
     * them like single characters would, and pos counts what was cut. */
    char small[8];
    sbuf_init(&b, small, sizeof(small));
    sbuf_put_text(&b, "abcdefghij", SIZE_MAX, 9, SBUF_CLEAN);
    assert_int_equal(b.pos, 9);
    assert_int_equal(sbuf_finish(&b), 9);
    assert_string_equal(small, "abcdefg");
    sbuf_init(&b, NULL, 0);
    sbuf_put_text(&b, "abc\"d", SIZE_MAX, 100, SBUF_JSON_CLEAN);
    assert_int_equal(b.pos, 6);

    /* Integers without printf. */
    sbuf_init(&b, buf, sizeof(buf));
    sbuf_put_uint(&b, 0);
    sbuf_putc(&b, ' ');
    sbuf_put_uint(&b, 18446744073709551615ull);
    sbuf_finish(&b);
    assert_string_equal(buf, "0 18446744073709551615");

    /* Event strings end up escaped and cleaned, and the line stays JSON. */
    struct event ev = ev_denied();
    ev.type = "HTTP:GET";
    ev.http_method = "GET";
    ev.http_path = "/a\"b\\c\n\xff";
    ev.dst_host = "h\"ost";
    char line[16384];
    int n = event_format_json(&ev, T0_US, line, sizeof(line));
    assert_true(n > 0 && (size_t)n < sizeof(line));
    assert_true(json_ok(line));
    assert_non_null(strstr(line, "\"http_path\":\"/a\\\"b\\\\c??\""));
    assert_non_null(strstr(line, "\"dst_host\":\"h\\\"ost\""));
}

static void test_json_line(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    char line[16384];

    int n = event_format_json(&ev, T0_US, line, sizeof(line));
    assert_true(n > 0 && (size_t)n < sizeof(line));
    assert_int_equal((size_t)n, strlen(line));
    assert_true(json_ok(line));
    assert_null(strchr(line, '\n'));

    const char *head =
        "{\"time\":\"2026-11-30T08:00:00.123456Z\",\"sandbox\":\"agent-1\",\"event\":"
        "\"NET:OPEN\",\"action\":\"denied\",\"reason\":\"no_matching_policy\",\"proto\":"
        "\"tcp\",\"dst_ip\":\"198.18.0.10\",\"dst_port\":8080,\"pid\":4242,\"exe\":"
        "\"/usr/bin/curl\",\"severity\":\"medium\",\"message\":\"NET:OPEN [MED] DENIED "
        "curl(4242) -> 198.18.0.10:8080 [policy:- reason:no_matching_policy]\",\"ocsf\":{";
    assert_memory_equal(line, head, strlen(head));
    assert_string_equal(line + n - 2, "}}");
    /* Absent fields are absent, not null or "". */
    assert_null(strstr(line, "\"policy\""));
    assert_null(strstr(line, "\"dst_host\""));
    assert_null(strstr(line, "\"http_method\""));
    assert_null(strstr(line, "null"));
    /* The ocsf value is an object whose time is the event's, in ms. */
    assert_non_null(strstr(line, "\"ocsf\":{\"class_uid\":4001,"));
    assert_non_null(strstr(line, "\"time\":1796025600123,"));

    /* Snprintf semantics. */
    char small[64];
    assert_int_equal(event_format_json(&ev, T0_US, small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* ---- OCSF ---- */

#define OCSF_MARK "\xe2\x80\xa6"

static char *ocsf_within(const struct event *ev, size_t budget)
{
    static char buf[16384];
    int n = event_format_ocsf(ev, 1796025600123ull, budget, buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    assert_true(json_ok(buf));
    assert_int_equal(buf[0], '{');
    return buf;
}

static char *ocsf(const struct event *ev)
{
    return ocsf_within(ev, 0);
}

static void test_ocsf(void **state)
{
    (void)state;
    struct event ev = ev_denied();
    char *o = ocsf(&ev);

    assert_int_equal(event_ocsf_class(&ev), 4001);
    assert_non_null(strstr(o, "\"class_uid\":4001,"));
    assert_non_null(strstr(o, "\"category_uid\":4,"));
    assert_non_null(strstr(o, "\"activity_id\":1,"));
    assert_non_null(strstr(o, "\"type_uid\":400101,"));
    assert_non_null(strstr(o, "\"time\":1796025600123,"));
    assert_non_null(strstr(o, "\"severity_id\":3,"));
    assert_non_null(strstr(o, "\"severity_id\":3,\"action_id\":2,\"dst_endpoint\""));
    assert_non_null(strstr(o, "\"dst_endpoint\":{\"ip\":\"198.18.0.10\",\"port\":8080}"));
    assert_non_null(
        strstr(o, "\"actor\":{\"process\":{\"pid\":4242,\"file\":{\"path\":\"/usr/bin/curl\""));
    assert_non_null(strstr(o, "\"connection_info\":{\"protocol_num\":6}"));
    assert_non_null(strstr(o, "\"product\":{\"name\":\"portcullis\"}"));
    /* small enough that journald stores it uncompressed (it compresses > 512 bytes) */
    assert_true(strlen(o) < 512);
    assert_null(strstr(o, "\"message\""));
    assert_non_null(strstr(o, "\"version\":\"1.1.0\""));
    assert_non_null(strstr(o, "\"unmapped\":{\"sandbox\":\"agent-1\",\"reason\":"));
    assert_null(strstr(o, "src_endpoint"));
    assert_null(strstr(o, "http_request"));

    ev.action = EVENT_ACTION_ALLOWED;
    ev.severity = EVENT_SEVERITY_INFO;
    ev.type = "HTTP:GET";
    ev.http_method = "GET";
    ev.http_path = "/x";
    ev.dst_host = "api.github.com";
    o = ocsf(&ev);
    assert_int_equal(event_ocsf_class(&ev), 4002);
    assert_non_null(strstr(o, "\"class_uid\":4002,"));
    assert_non_null(strstr(o, "\"activity_id\":3,"));
    assert_non_null(strstr(o, "\"type_uid\":400203,"));
    assert_non_null(strstr(o, "\"severity_id\":1,"));
    assert_non_null(strstr(o, "\"severity_id\":1,\"action_id\":1,\"dst_endpoint\""));
    assert_non_null(
        strstr(o, "\"http_request\":{\"http_method\":\"GET\",\"url\":{\"path\":\"/x\"}}"));
    assert_non_null(strstr(o, "\"hostname\":\"api.github.com\"}"));
    /* HTTP is TCP: no connection_info; action_id says what status_id would */
    assert_null(strstr(o, "connection_info"));
    assert_null(strstr(o, "status_id"));
    assert_null(strstr(o, "disposition_id")); /* only audit's adds to action_id */

    ev.action = EVENT_ACTION_AUDIT;
    ev.severity = EVENT_SEVERITY_LOW;
    ev.type = "UDP:SEND";
    ev.http_method = NULL;
    ev.http_path = NULL;
    o = ocsf(&ev);
    assert_non_null(strstr(o, "\"type_uid\":400106,"));
    assert_non_null(strstr(o, "\"severity_id\":2,"));
    assert_non_null(strstr(o, "\"disposition_id\":17"));
    assert_non_null(strstr(o, "\"action_id\":1,"));

    ev.action = EVENT_ACTION_DENIED;
    ev.severity = EVENT_SEVERITY_HIGH;
    ev.type = "FINDING:UNSOLICITED_UPGRADE";
    o = ocsf(&ev);
    assert_non_null(strstr(o, "\"type_uid\":400199,"));
    assert_non_null(strstr(o, "\"severity_id\":4,"));

    ev.severity = EVENT_SEVERITY_CRITICAL;
    ev.type = "HTTP:BREW";
    o = ocsf(&ev);
    assert_non_null(strstr(o, "\"type_uid\":400299,"));
    assert_non_null(strstr(o, "\"severity_id\":5,"));

    /* A hostile exe cannot break out of its string. */
    ev.exe = "/x\"},\"evil\":{\"";
    o = ocsf(&ev);
    assert_null(strstr(o, "\"evil\":"));
}

/* The journal's OCSF_JSON stays under journald's compression threshold:
 * detail, executable, path and host are cut in that order, each marked,
 * each down to a floor; what fits stays whole. */
static void test_ocsf_journal_budget(void **state)
{
    (void)state;
    const size_t budget = EVENTS_OCSF_JOURNAL_MAX;
    struct event ev = ev_denied();
    static char path[400], exe[300], detail[120], host[1100], upath[600], quotes[400];
    char *o;

    assert_int_equal(budget + sizeof("OCSF_JSON=") - 1, 511);

    /* A typical inspected request fits whole. */
    ev.type = "HTTP:GET";
    ev.action = EVENT_ACTION_ALLOWED;
    ev.severity = EVENT_SEVERITY_INFO;
    ev.dst_host = "api.github.com";
    ev.dst_port = 443;
    ev.http_method = "GET";
    ev.http_path = "/repos/octo/hello-world/pulls/1347/comments";
    ev.exe = "/usr/bin/curl";
    ev.policy = "github_readonly";
    ev.reason = "l7_rule";
    char whole[2048];
    snprintf(whole, sizeof(whole), "%s", ocsf(&ev));
    o = ocsf_within(&ev, budget);
    assert_string_equal(o, whole);
    assert_true(strlen(o) <= budget);

    /* Long ones: the detail goes first, then the executable's directory
     * (process.name for file.path), then the path is cut (its head kept). */
    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    memset(exe, 'e', sizeof(exe) - 1);
    exe[0] = '/';
    memcpy(exe + sizeof(exe) - 6, "/curl", 6);
    memset(detail, 'd', sizeof(detail) - 1);
    ev.http_path = path;
    ev.exe = exe;
    ev.detail = detail;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_true(strlen(o) >= budget - 8);
    assert_null(strstr(o, "\"detail\""));
    assert_non_null(strstr(o, "\"process\":{\"pid\":4242,\"name\":\"curl\"}"));
    assert_non_null(strstr(o, "\"url\":{\"path\":\"/pppppppppp"));
    assert_non_null(strstr(o, "ppp" OCSF_MARK "\"}"));
    assert_non_null(strstr(o, "\"hostname\":\"api.github.com\""));
    /* ... and whole without a budget (the JSONL sink) */
    assert_non_null(strstr(ocsf(&ev), path));
    assert_non_null(strstr(ocsf(&ev), exe));
    assert_non_null(strstr(ocsf(&ev), detail));

    /* Just over: the detail and the executable's directory go, the path
     * stays whole. */
    ev.http_path = "/repos/octo/hello-world/pulls/1347/comments";
    ev.exe = "/usr/lib/git-core/git-remote-https";
    ev.detail = "rule:allow GET /repos/**";
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_null(strstr(o, "\"detail\""));
    assert_null(strstr(o, OCSF_MARK));
    assert_non_null(strstr(o, "\"name\":\"git-remote-https\""));
    assert_non_null(strstr(o, "\"path\":\"/repos/octo/hello-world/pulls/1347/comments\""));
    ev.detail = NULL;
    ev.exe = exe;

    /* Escaped characters take two bytes each: the cut never splits an
     * escape (ocsf_within checks the JSON), and the floor counts characters. */
    memset(quotes, '"', sizeof(quotes) - 1);
    ev.http_path = quotes;
    o = ocsf_within(&ev, budget);
    assert_non_null(strstr(o, "\"path\":\"\\\"\\\""));
    assert_non_null(strstr(o, "\\\"" OCSF_MARK "\"}"));
    assert_true(strlen(o) <= budget + 32);

    /* A multi-byte character is never split. */
    for (size_t i = 0; i + 2 < sizeof(upath); i += 2)
        memcpy(upath + i, "\xc3\xbc", 2);
    ev.http_path = upath;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_non_null(strstr(o, "\xc3\xbc" OCSF_MARK "\"}"));
    assert_null(strstr(o, "?"));

    /* Measured, not estimated: an executable past EVENTS_PATH_MAX, whose
     * whole length is not what leaving its directory saves; C1 controls,
     * two bytes in that come out as one '?'; a detail past its cap. */
    static char bigexe[3100], c1[900], bigdetail[1100];
    memset(bigexe, 'x', sizeof(bigexe) - 1);
    for (size_t i = 0; i + 1 < sizeof(bigexe); i += 100)
        bigexe[i] = '/';
    memcpy(bigexe + sizeof(bigexe) - 6, "/curl", 6);
    for (size_t i = 0; i + 2 < sizeof(c1); i += 2)
        memcpy(c1 + i, "\xc2\x85", 2);
    memset(bigdetail, 'd', sizeof(bigdetail) - 1);
    memcpy(bigdetail + EVENTS_FIELD_MAX - 1, "\xc3\xbc", 2); /* across the cap */
    ev.http_path = path;
    ev.exe = bigexe;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_non_null(strstr(o, "\"name\":\"curl\""));
    static char c1exe[sizeof(c1) + 8];
    snprintf(c1exe, sizeof(c1exe), "/%s/tool", c1);
    ev.exe = c1exe;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_non_null(strstr(o, "\"name\":\"tool\""));
    ev.exe = "/usr/bin/curl";
    ev.http_path = c1;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    assert_non_null(strstr(o, "\"path\":\"????????????????"));
    assert_non_null(strstr(o, "?" OCSF_MARK "\"}"));
    ev.http_path = path;
    ev.detail = bigdetail;
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) <= budget);
    ev.detail = NULL;

    /* Past every floor it goes over rather than lose more. */
    memset(host, 'h', sizeof(host) - 1);
    ev.dst_host = host;
    ev.policy = detail; /* never cut */
    o = ocsf_within(&ev, budget);
    assert_true(strlen(o) > budget);
    assert_non_null(strstr(o, "\"hostname\":\"hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh" OCSF_MARK "\""));
}

/* ---- --since ---- */

static void test_since(void **state)
{
    (void)state;
    uint64_t now = T0_US, t;
    time_t now_s = (time_t)(now / 1000000);
    struct tm tm, got;

    assert_int_equal(events_parse_since("now", now, &t), 0);
    assert_int_equal(t, now);
    assert_int_equal(events_parse_since("-5min", now, &t), 0);
    assert_int_equal(t, now - 300000000ull);
    assert_int_equal(events_parse_since("-2h", now, &t), 0);
    assert_int_equal(t, now - 7200000000ull);
    assert_int_equal(events_parse_since("-30s", now, &t), 0);
    assert_int_equal(t, now - 30000000ull);
    assert_int_equal(events_parse_since("-1d", now, &t), 0);
    assert_int_equal(t, now - 86400000000ull);
    assert_int_equal(events_parse_since("-1h30min", now, &t), 0);
    assert_int_equal(t, now - 5400000000ull);
    assert_int_equal(events_parse_since("5 min ago", now, &t), 0);
    assert_int_equal(t, now - 300000000ull);
    assert_int_equal(events_parse_since("2 hours ago", now, &t), 0);
    assert_int_equal(t, now - 7200000000ull);
    assert_int_equal(events_parse_since("@1700000000", now, &t), 0);
    assert_int_equal(t, 1700000000000000ull);

    localtime_r(&now_s, &tm);
    assert_int_equal(events_parse_since("today", now, &t), 0);
    time_t ts = (time_t)(t / 1000000);
    localtime_r(&ts, &got);
    assert_int_equal(got.tm_mday, tm.tm_mday);
    assert_int_equal(got.tm_hour + got.tm_min + got.tm_sec, 0);
    assert_int_equal(events_parse_since("yesterday", now, &t), 0);
    ts = (time_t)(t / 1000000);
    localtime_r(&ts, &got);
    assert_int_equal(got.tm_hour + got.tm_min + got.tm_sec, 0);
    assert_true(t < now - 86400000000ull + 3600000000ull);

    struct tm want;
    memset(&want, 0, sizeof(want));
    want.tm_year = 126;
    want.tm_mon = 0;
    want.tm_mday = 1;
    want.tm_hour = 10;
    want.tm_isdst = -1;
    uint64_t w = (uint64_t)mktime(&want) * 1000000;
    assert_int_equal(events_parse_since("2026-01-01 10:00:00", now, &t), 0);
    assert_int_equal(t, w);
    assert_int_equal(events_parse_since("2026-01-01T10:00:00", now, &t), 0);
    assert_int_equal(t, w);
    assert_int_equal(events_parse_since("2026-01-01 10:00", now, &t), 0);
    assert_int_equal(t, w);
    assert_int_equal(events_parse_since("2026-01-01", now, &t), 0);
    assert_int_equal(t, w - 36000000000ull);

    assert_int_equal(events_parse_since("07:30:15", now, &t), 0);
    ts = (time_t)(t / 1000000);
    localtime_r(&ts, &got);
    assert_int_equal(got.tm_mday, tm.tm_mday);
    assert_int_equal(got.tm_hour, 7);
    assert_int_equal(got.tm_min, 30);
    assert_int_equal(got.tm_sec, 15);

    const char *bad[] = {"",           "foo",        "-",
                         "-5parsecs",  "2026-02-31", "25:00",
                         "2026-13-01", "5 min",      "ago",
                         "-5min x",    "@x",         "-99999999999999d",
                         "yesterday!", "1 2 3 4",    "2026-01-01 10:00:00 junk"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        t = 42;
        if (events_parse_since(bad[i], now, &t) != -EINVAL)
            fail_msg("accepted --since '%s'", bad[i]);
        assert_int_equal(t, 42);
    }
}

/* ---- sinks and the rate limiter (fake clocks, no journal) ---- */

struct sink_fixture {
    char dir[64];
    char path[96];
    FILE *err;
};

static int sink_setup(void **state)
{
    struct sink_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    str_copy(f->dir, "/tmp/test_events.XXXXXX", sizeof(f->dir));
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/events.jsonl", f->dir);
    f->err = tmpfile();
    assert_non_null(f->err);
    events_stderr = f->err;
    events_now_ms = fake_now_ms;
    events_now_us = fake_now_us;
    fake_ms = 1000000;
    fake_us = T0_US;
    *state = f;
    return 0;
}

static int sink_teardown(void **state)
{
    struct sink_fixture *f = *state;
    char cmd[128];
    events_shutdown();
    events_stderr = NULL;
    events_now_ms = clock_monotonic_ms;
    events_now_us = clock_realtime_us;
    fclose(f->err);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void sink_init(struct sink_fixture *f, uint64_t max_bytes, unsigned keep)
{
    struct events_config cfg = {
        .use_journal = false,
        .jsonl_path = f->path,
        .jsonl_max_bytes = max_bytes,
        .jsonl_keep = keep,
    };
    assert_int_equal(events_init(&cfg), 0);
}

/* Lines of a file; each must be JSON. Optionally count lines containing needle. */
static size_t file_lines(const char *path, const char *needle, size_t *ret_matches)
{
    FILE *fp = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0, n = 0, m = 0;
    ssize_t len;

    if (!fp) {
        if (ret_matches)
            *ret_matches = 0;
        return 0;
    }
    while ((len = getline(&line, &cap, fp)) > 0) {
        assert_int_equal(line[len - 1], '\n');
        if (!events_json_valid(line, (size_t)len - 1))
            fail_msg("not JSON: %s", line);
        if (needle && strstr(line, needle))
            m++;
        n++;
    }
    free(line);
    fclose(fp);
    if (ret_matches)
        *ret_matches = m;
    return n;
}

static size_t stream_lines(FILE *fp)
{
    size_t n = 0;
    int c;
    fflush(fp);
    rewind(fp);
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    return n;
}

static void test_sink_stderr_and_jsonl(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    struct stat st;
    char line[512];

    sink_init(f, 0, 0);
    events_emit(&ev);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(file_lines(f->path, NULL, NULL), 1);

    rewind(f->err);
    assert_non_null(fgets(line, sizeof(line), f->err));
    assert_string_equal(line, "2026-11-30T08:00:00.123Z agent-1 NET:OPEN [MED] DENIED "
                              "curl(4242) -> 198.18.0.10:8080 [policy:- "
                              "reason:no_matching_policy]\n");

    /* The JSONL line is event_format_json of the event at the sink's time. */
    char want[16384];
    event_format_json(&ev, T0_US, want, sizeof(want));
    FILE *fp = fopen(f->path, "re");
    char *got = NULL;
    size_t cap = 0;
    assert_true(getline(&got, &cap, fp) > 0);
    fclose(fp);
    strcat(want, "\n");
    assert_string_equal(got, want);
    free(got);
}

static void test_jsonl_symlink_refused(void **state)
{
    struct sink_fixture *f = *state;
    char target[128];
    snprintf(target, sizeof(target), "%s/target", f->dir);
    assert_int_equal(symlink(target, f->path), 0);
    struct events_config cfg = {.use_journal = false, .jsonl_path = f->path};
    assert_int_equal(events_init(&cfg), -ELOOP);
    assert_int_equal(access(target, F_OK), -1);
}

static void test_rate_limit_burst_and_summary(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    size_t m;

    sink_init(f, 0, 0);
    for (int i = 0; i < 100; i++)
        events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST);
    assert_int_equal(stream_lines(f->err), RL_BURST);

    /* Not before the interval is over. */
    fake_ms += RL_INTERVAL_MS / 2;
    events_flush(fake_ms);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST);

    /* Then one summary for the key, even with no further event. */
    fake_ms += RL_INTERVAL_MS / 2;
    events_flush(fake_ms);
    assert_int_equal(file_lines(f->path, "suppressed 80 similar events in the last 1s", &m),
                     RL_BURST + 1);
    assert_int_equal(m, 1);
    assert_int_equal(file_lines(f->path,
                                "\"sandbox\":\"agent-1\",\"event\":\"NET:OPEN\","
                                "\"action\":\"denied\",\"reason\":\"no_matching_policy\"",
                                &m),
                     RL_BURST + 1);
    assert_int_equal(m, RL_BURST + 1);
    events_flush(fake_ms);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST + 1);

    /* A sustained flood: no new burst, one summary per interval. */
    for (int i = 0; i < 50; i++)
        events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST + 1);
    fake_ms += RL_INTERVAL_MS;
    events_flush(fake_ms);
    assert_int_equal(file_lines(f->path, "suppressed 50 similar events", &m), RL_BURST + 2);
    assert_int_equal(m, 1);

    /* After a quiet interval the key is fresh again. */
    fake_ms += RL_INTERVAL_MS;
    events_flush(fake_ms);
    events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST + 3);

    /* A different key (port) has its own burst. */
    ev.dst_port = 8081;
    for (int i = 0; i < 5; i++)
        events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_BURST + 8);
}

static void test_rate_limit_summary_on_next_event(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    size_t m;

    sink_init(f, 0, 0);
    for (int i = 0; i < RL_BURST + 7; i++)
        events_emit(&ev);
    /* The next event after the interval brings the summary along. */
    fake_ms += 3 * RL_INTERVAL_MS;
    events_emit(&ev);
    assert_int_equal(file_lines(f->path, "suppressed 7 similar events in the last 3s", &m),
                     RL_BURST + 1);
    assert_int_equal(m, 1);
    /* ...and that event itself is suppressed: the key overflowed. */
    fake_ms += RL_INTERVAL_MS;
    events_shutdown();
    assert_int_equal(file_lines(f->path, "suppressed 1 similar events", &m), RL_BURST + 2);
    assert_int_equal(m, 1);
}

static void test_rate_limit_allowed_never(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();

    sink_init(f, 0, 0);
    ev.action = EVENT_ACTION_ALLOWED;
    for (int i = 0; i < 500; i++)
        events_emit(&ev);
    ev.action = EVENT_ACTION_AUDIT;
    for (int i = 0; i < 500; i++)
        events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), 1000);
    assert_int_equal(stream_lines(f->err), 1000);
}

static void test_rate_limit_many_keys(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    size_t m, total;

    sink_init(f, 0, 0);
    ev.type = "UDP:SEND";
    ev.proto = "udp";
    /* A port sweep: every packet its own key. */
    for (int i = 0; i < 5000; i++) {
        ev.dst_port = (uint16_t)(1000 + i);
        events_emit(&ev);
    }
    assert_int_equal(file_lines(f->path, NULL, NULL), RL_SANDBOX_BUDGET);
    fake_ms += RL_INTERVAL_MS;
    events_flush(fake_ms);
    total = file_lines(f->path, "suppressed", &m);
    /* Bounded: one budget of events, one of summaries, one overflow line. */
    assert_true(total <= 2 * RL_SANDBOX_BUDGET + 1);
    assert_int_equal(file_lines(f->path, "events over the rate limit", &m), total);
    assert_int_equal(m, 1);

    /* Nothing is lost: the counts add up. */
    FILE *fp = fopen(f->path, "re");
    char *line = NULL;
    size_t cap = 0;
    unsigned long long sum = 0, shown = 0;
    while (getline(&line, &cap, fp) > 0) {
        const char *p = strstr(line, "detail:suppressed ");
        if (p)
            sum += strtoull(p + strlen("detail:suppressed "), NULL, 10);
        else
            shown++;
        if (strstr(line, "over the rate limit")) {
            /* Mixed destinations are dropped, the common fields stay. */
            assert_non_null(strstr(line, "\"sandbox\":\"agent-1\",\"event\":\"UDP:SEND\""));
            assert_null(strstr(line, "\"dst_port\""));
        }
    }
    free(line);
    fclose(fp);
    assert_int_equal(shown, RL_SANDBOX_BUDGET);
    assert_int_equal(sum + shown, 5000);
}

/* One sandbox sweeping ports cannot hide another sandbox's denials; many
 * sandboxes flooding together are still bounded by the global budget. */
static void test_rate_limit_per_sandbox(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    char name[32];
    size_t m;

    sink_init(f, 0, 0);
    ev.sandbox = "noisy";
    for (int i = 0; i < 5000; i++) {
        ev.dst_port = (uint16_t)(1000 + i);
        events_emit(&ev);
    }
    ev.sandbox = "quiet";
    ev.dst_port = 443;
    events_emit(&ev);
    assert_int_equal(file_lines(f->path, "\"sandbox\":\"quiet\"", &m), RL_SANDBOX_BUDGET + 1);
    assert_int_equal(m, 1);

    /* Two intervals later (the first one's summaries are out): 40
     * sandboxes sweep at once; events and summaries together stop at the
     * global budget. */
    fake_ms += RL_INTERVAL_MS;
    events_flush(fake_ms);
    fake_ms += RL_INTERVAL_MS;
    events_flush(fake_ms);
    size_t before = file_lines(f->path, NULL, NULL);
    for (int s = 0; s < 40; s++) {
        snprintf(name, sizeof(name), "sb-%d", s);
        ev.sandbox = name;
        for (int i = 0; i < 200; i++) {
            ev.dst_port = (uint16_t)(2000 + i);
            events_emit(&ev);
        }
    }
    assert_int_equal(file_lines(f->path, NULL, NULL) - before, RL_GLOBAL_BUDGET);
}

static void test_rate_limit_eviction_keeps_counts(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    size_t m;

    sink_init(f, 0, 0);
    for (int i = 0; i < RL_BURST + 3; i++)
        events_emit(&ev);
    /* Push it out of the table with fresh keys, spread over later intervals
     * so the budgets do not interfere. */
    for (int i = 0; i < RL_KEYS; i++) {
        fake_ms += 20;
        ev.dst_port = (uint16_t)(20000 + i);
        events_emit(&ev);
    }
    assert_int_equal(file_lines(f->path, "\"dst_port\":8080", &m), RL_BURST + 1 + RL_KEYS);
    assert_int_equal(m, RL_BURST + 1);
    assert_int_equal(file_lines(f->path, "suppressed 3 similar events", &m),
                     RL_BURST + 1 + RL_KEYS);
    assert_int_equal(m, 1);
}

static void test_jsonl_rotation(void **state)
{
    struct sink_fixture *f = *state;
    struct event ev = ev_denied();
    char p[128];
    struct stat st;
    size_t total = 0;

    ev.action = EVENT_ACTION_ALLOWED;
    sink_init(f, 4096, 2);
    for (int i = 0; i < 40; i++)
        events_emit(&ev);
    for (int i = 0; i <= 3; i++) {
        if (i == 0)
            snprintf(p, sizeof(p), "%s", f->path);
        else
            snprintf(p, sizeof(p), "%s.%d", f->path, i);
        if (i == 3) {
            assert_int_equal(stat(p, &st), -1);
            continue;
        }
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 0 && st.st_size <= 4096);
        assert_int_equal(st.st_mode & 07777, 0640);
        total += file_lines(p, NULL, NULL);
    }
    /* Lines are about 1.2 KiB: three per file survive in each of 3 files. */
    assert_in_range(total, 6, 39);
    assert_int_equal(stream_lines(f->err), 40);

    /* Reopening appends to the existing file. */
    events_shutdown();
    size_t before = file_lines(f->path, NULL, NULL);
    sink_init(f, 1 << 20, 2);
    events_emit(&ev);
    assert_int_equal(file_lines(f->path, NULL, NULL), before + 1);
}

/* ---- the journal ---- */

static bool have_journal(void)
{
    return access(EVENTS_JOURNAL_SOCKET, F_OK) == 0;
}

/* Read JSON lines of sandbox into a malloc'd string; poll until at least
 * want lines or 10 s. */
static char *journal_read_until(const char *sandbox, bool denied, bool json, const char *since,
                                size_t want)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct events_query q = {
            .sandbox = sandbox, .denied_only = denied, .json = json, .since = since};
        char *buf = NULL;
        size_t len = 0, lines = 0;
        FILE *out = open_memstream(&buf, &len);
        assert_non_null(out);
        assert_int_equal(events_read(&q, out), 0);
        fclose(out);
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
        if (!json && lines)
            lines--; /* header */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (lines >= want || now.tv_sec - start.tv_sec >= 10)
            return buf;
        free(buf);
        usleep(100000);
    }
}

static void unique_name(char *buf, size_t len, const char *tag)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, len, "pcl-unit-%s-%ld-%ld", tag, (long)getpid(), (long)ts.tv_nsec);
}

/* More entries than the writer thread's queue holds: the emitter waits,
 * nothing is lost, the order stays. */
static void test_journal_queue_bulk(void **state)
{
    (void)state;
    char name[64], path[32];
    struct events_config cfg = {.use_journal = true};
    const size_t n = 10000;

    if (!have_journal())
        skip();
    unique_name(name, sizeof(name), "bulk");
    assert_int_equal(events_init(&cfg), 0);
    struct event ev = ev_denied();
    ev.sandbox = name;
    ev.action = EVENT_ACTION_ALLOWED; /* never rate-limited */
    ev.severity = EVENT_SEVERITY_INFO;
    ev.type = "HTTP:GET";
    ev.http_method = "GET";
    ev.http_path = path;
    ev.reason = NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/%zu", i);
        events_emit(&ev);
    }
    events_drain();
    events_shutdown();
    char *out = journal_read_until(name, false, true, NULL, n);
    size_t lines = 0, next = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        char want[48];
        snprintf(want, sizeof(want), "\"http_path\":\"/%zu\"", next);
        if (strstr(line, want))
            next++;
        lines++;
    }
    assert_int_equal(lines, n);
    assert_int_equal(next, n); /* every path, in the order emitted */
    free(out);
}

static void test_journal_round_trip(void **state)
{
    (void)state;
    char name[64];
    struct events_config cfg = {.use_journal = true};

    if (!have_journal())
        skip();
    unique_name(name, sizeof(name), "rt");
    assert_int_equal(events_init(&cfg), 0);

    struct event ev = ev_denied();
    ev.sandbox = name;
    ev.dst_host = "blocked.example";
    ev.detail = "tab\there";
    events_emit(&ev);
    struct event ok = ev_denied();
    ok.sandbox = name;
    ok.action = EVENT_ACTION_ALLOWED;
    ok.severity = EVENT_SEVERITY_INFO;
    ok.type = "HTTP:GET";
    ok.http_method = "GET";
    ok.http_path = "/x";
    ok.policy = "p1";
    ok.reason = NULL;
    events_emit(&ok);
    events_shutdown();

    char *out = journal_read_until(name, false, true, NULL, 2);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char *second = nl + 1;
    assert_true(json_ok(out));
    assert_memory_equal(out, "{\"time\":\"", 9);
    char want[512];
    snprintf(want, sizeof(want),
             "\",\"sandbox\":\"%s\",\"event\":\"NET:OPEN\",\"action\":\"denied\",\"reason\":"
             "\"no_matching_policy\",\"proto\":\"tcp\",\"dst_host\":\"blocked.example\","
             "\"dst_ip\":\"198.18.0.10\",\"dst_port\":8080,\"pid\":4242,\"exe\":"
             "\"/usr/bin/curl\",\"severity\":\"medium\",\"message\":\"NET:OPEN [MED] DENIED "
             "curl(4242) -> 198.18.0.10:8080 [policy:- reason:no_matching_policy "
             "host:blocked.example detail:tab?here]\",\"ocsf\":{\"class_uid\":4001,",
             name);
    assert_non_null(strstr(out, want));
    nl = strchr(second, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_true(json_ok(second));
    assert_non_null(strstr(second, "\"action\":\"allowed\",\"policy\":\"p1\""));
    assert_non_null(strstr(second, "\"http_method\":\"GET\",\"http_path\":\"/x\""));
    assert_non_null(strstr(second, "\"ocsf\":{\"class_uid\":4002,"));
    free(out);

    /* --denied, --since, the table. */
    out = journal_read_until(name, true, true, "-10min", 1);
    assert_non_null(strstr(out, "\"action\":\"denied\""));
    assert_null(strstr(out, "\"action\":\"allowed\""));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);

    struct events_query q = {.sandbox = name, .since = "+1h", .json = true};
    FILE *tmp = tmpfile();
    assert_int_equal(events_read(&q, tmp), 0);
    assert_int_equal(ftell(tmp), 0);
    fclose(tmp);

    out = journal_read_until(name, false, false, NULL, 2);
    assert_memory_equal(out, "TIME ", 5);
    assert_non_null(strstr(out, "DENIED  NET:OPEN"));
    assert_non_null(strstr(out, "ALLOWED HTTP:GET"));
    assert_non_null(strstr(out, "blocked.example:8080"));
    assert_non_null(strstr(out, "no_matching_policy"));
    assert_non_null(strstr(out, "curl(4242)"));
    free(out);

    q.since = "not a time";
    tmp = tmpfile();
    assert_int_equal(events_read(&q, tmp), -EINVAL);
    fclose(tmp);
}

static void test_journal_follow(void **state)
{
    (void)state;
    char name[64];
    int fds[2];
    struct events_config cfg = {.use_journal = true};

    if (!have_journal())
        skip();
    unique_name(name, sizeof(name), "follow");
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        FILE *out = fdopen(fds[1], "w");
        struct events_query q = {.sandbox = name, .follow = true, .json = true};
        _exit(out && events_read(&q, out) == 0 ? 0 : 1);
    }
    close(fds[1]);

    assert_int_equal(events_init(&cfg), 0);
    struct event ev = ev_denied();
    ev.sandbox = name;
    usleep(200000);
    events_emit(&ev);
    events_shutdown();

    /* The line must arrive while the reader keeps running. */
    char buf[16384];
    size_t len = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!memchr(buf, '\n', len)) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 10)
            break;
        if (poll(&pfd, 1, 200) > 0) {
            ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
    }
    buf[len] = '\0';
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    char *nl = strchr(buf, '\n');
    if (!nl)
        fail_msg("no line from --follow within 10 s");
    *nl = '\0';
    assert_true(json_ok(buf));
    assert_non_null(strstr(buf, name));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_priority),
        cmocka_unit_test(test_message_denied),
        cmocka_unit_test(test_message_allowed_audit),
        cmocka_unit_test(test_message_http),
        cmocka_unit_test(test_message_process_and_ipv6),
        cmocka_unit_test(test_message_control_chars),
        cmocka_unit_test(test_message_truncation),
        cmocka_unit_test(test_json_validator),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_ocsf),
        cmocka_unit_test(test_ocsf_journal_budget),
        cmocka_unit_test(test_since),
        cmocka_unit_test_setup_teardown(test_sink_stderr_and_jsonl, sink_setup, sink_teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_symlink_refused, sink_setup, sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_burst_and_summary, sink_setup,
                                        sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_summary_on_next_event, sink_setup,
                                        sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_allowed_never, sink_setup, sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_many_keys, sink_setup, sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_sandbox, sink_setup, sink_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_eviction_keeps_counts, sink_setup,
                                        sink_teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_rotation, sink_setup, sink_teardown),
        cmocka_unit_test(test_journal_round_trip),
        cmocka_unit_test(test_journal_queue_bulk),
        cmocka_unit_test(test_journal_follow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
