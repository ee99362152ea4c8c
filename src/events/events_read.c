/*
 * events_read: `portcullis events`, reading our entries back from the
 * journal as a table or as JSON lines of the same shape as the JSONL sink.
 *
 * Only entries that journald itself attributes to root (_UID=0) are shown:
 * SYSLOG_IDENTIFIER is set by the sender, and a sandboxed process (running as
 * the invoking user) can reach the journal socket and forge "portcullisd"
 * entries.  Every filter that is also a journal match is checked again on the
 * entry: a journal with a match bug must not widen the result.
 */
#include "events.h"
#include "events-int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <systemd/sd-journal.h>

#define FOLLOW_WAIT_US 250000 /* re-poll even without a wakeup (entries can lag) */
#define READ_DATA_MAX (1024 * 1024)
#define SPAN_MAX_US (100ull * 366 * 24 * 3600 * 1000000)

/* ---- --since ---- */

/* "5min", "1h30min", "2 hours", "90" (seconds).  Returns 0 or -EINVAL. */
static int parse_span(const char *s, uint64_t *ret_us)
{
    static const struct {
        const char *name;
        uint64_t us;
    } units[] = {
        {"us", 1},
        {"usec", 1},
        {"ms", 1000},
        {"msec", 1000},
        {"s", 1000000},
        {"sec", 1000000},
        {"secs", 1000000},
        {"second", 1000000},
        {"seconds", 1000000},
        {"m", 60000000},
        {"min", 60000000},
        {"mins", 60000000},
        {"minute", 60000000},
        {"minutes", 60000000},
        {"h", 3600000000ull},
        {"hr", 3600000000ull},
        {"hrs", 3600000000ull},
        {"hour", 3600000000ull},
        {"hours", 3600000000ull},
        {"d", 86400000000ull},
        {"day", 86400000000ull},
        {"days", 86400000000ull},
        {"w", 604800000000ull},
        {"week", 604800000000ull},
        {"weeks", 604800000000ull},
    };
    uint64_t total = 0;
    bool any = false;

    for (;;) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        uint64_t v = 0;
        while (isdigit((unsigned char)*s)) {
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > 1000000000ull)
                return -EINVAL;
            s++;
        }
        while (*s == ' ')
            s++;
        char unit[16];
        size_t ul = 0;
        while (isalpha((unsigned char)*s)) {
            if (ul + 1 >= sizeof(unit))
                return -EINVAL;
            unit[ul++] = (char)*s++;
        }
        unit[ul] = '\0';
        uint64_t mult = 0;
        if (ul == 0) {
            mult = 1000000; /* bare number: seconds, as systemd */
        } else {
            for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                if (strcmp(unit, units[i].name) == 0)
                    mult = units[i].us;
            }
        }
        if (!mult || v > SPAN_MAX_US / mult)
            return -EINVAL;
        total += v * mult;
        if (total > SPAN_MAX_US)
            return -EINVAL;
        any = true;
    }
    if (!any)
        return -EINVAL;
    *ret_us = total;
    return 0;
}

static int local_to_us(struct tm *tm, uint64_t *ret_us)
{
    int year = tm->tm_year, mon = tm->tm_mon, mday = tm->tm_mday;
    tm->tm_isdst = -1;
    time_t t = mktime(tm);
    /* mktime normalises 2026-02-31 into March: reject what it changed. */
    if (t == (time_t)-1 || t < 0 || tm->tm_year != year || tm->tm_mon != mon || tm->tm_mday != mday)
        return -EINVAL;
    *ret_us = (uint64_t)t * 1000000;
    return 0;
}

static int local_midnight(uint64_t now_us, int day_offset, uint64_t *ret_us)
{
    time_t now = (time_t)(now_us / 1000000);
    struct tm tm;
    if (!localtime_r(&now, &tm))
        return -EINVAL;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mday += day_offset;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1 || t < 0)
        return -EINVAL;
    *ret_us = (uint64_t)t * 1000000;
    return 0;
}

int events_parse_since(const char *s, uint64_t now_us, uint64_t *ret_us)
{
    static const struct {
        const char *fmt;
        bool time_only;
    } formats[] = {
        {"%Y-%m-%d %H:%M:%S", false}, {"%Y-%m-%dT%H:%M:%S", false}, {"%Y-%m-%d %H:%M", false},
        {"%Y-%m-%d", false},          {"%H:%M:%S", true},           {"%H:%M", true},
    };
    uint64_t span;
    size_t len;

    if (!s)
        return -EINVAL;
    len = strlen(s);
    if (len == 0 || len > 64)
        return -EINVAL;
    if (strcmp(s, "now") == 0) {
        *ret_us = now_us;
        return 0;
    }
    if (strcmp(s, "today") == 0)
        return local_midnight(now_us, 0, ret_us);
    if (strcmp(s, "yesterday") == 0)
        return local_midnight(now_us, -1, ret_us);
    if (strcmp(s, "tomorrow") == 0)
        return local_midnight(now_us, 1, ret_us);
    if (s[0] == '@') {
        long v;
        if (parse_long(s + 1, 0, LONG_MAX / 1000000, &v) < 0)
            return -EINVAL;
        *ret_us = (uint64_t)v * 1000000;
        return 0;
    }
    if (s[0] == '-' || s[0] == '+' || (len > 4 && strcmp(s + len - 4, " ago") == 0)) {
        char buf[72];
        bool ago = s[0] != '+';
        str_copy(buf, s[0] == '-' || s[0] == '+' ? s + 1 : s, sizeof(buf));
        if (s[0] != '-' && s[0] != '+')
            buf[strlen(buf) - 3] = '\0'; /* "ago" */
        if (parse_span(buf, &span) < 0)
            return -EINVAL;
        if (ago)
            *ret_us = span > now_us ? 0 : now_us - span;
        else
            *ret_us = now_us + span;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
        struct tm tm;
        time_t now = (time_t)(now_us / 1000000);
        memset(&tm, 0, sizeof(tm));
        if (formats[i].time_only && !localtime_r(&now, &tm))
            return -EINVAL;
        if (formats[i].time_only)
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        const char *end = strptime(s, formats[i].fmt, &tm);
        if (!end || *end)
            continue;
        return local_to_us(&tm, ret_us);
    }
    return -EINVAL;
}

/* ---- one entry ---- */

enum jkind {
    JK_STR = 0,
    JK_NUM,
    JK_MAX,
};

/* The journal fields, in the order of the JSON keys (DESIGN.md "Events"). */
static const struct jfield {
    const char *field;
    const char *key;
    enum jkind kind;
    size_t cap;
} jfields[] = {
    {"PORTCULLIS_SANDBOX", "sandbox", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_EVENT", "event", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_ACTION", "action", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_REASON", "reason", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_POLICY", "policy", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_PROTO", "proto", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_DST_HOST", "dst_host", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_DST_IP", "dst_ip", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_DST_PORT", "dst_port", JK_NUM, 16},
    {"PORTCULLIS_HTTP_METHOD", "http_method", JK_STR, EVENTS_FIELD_MAX},
    {"PORTCULLIS_HTTP_PATH", "http_path", JK_STR, EVENTS_PATH_MAX},
    {"PORTCULLIS_PID", "pid", JK_NUM, 16},
    {"PORTCULLIS_EXE", "exe", JK_STR, EVENTS_PATH_MAX},
    {"PORTCULLIS_SEVERITY", "severity", JK_STR, EVENTS_FIELD_MAX},
    {"MESSAGE", "message", JK_STR, EVENTS_MESSAGE_MAX},
};

enum {
    F_SANDBOX = 0,
    F_EVENT,
    F_ACTION,
    F_REASON,
    F_POLICY,
    F_PROTO,
    F_DST_HOST,
    F_DST_IP,
    F_DST_PORT,
    F_HTTP_METHOD,
    F_HTTP_PATH,
    F_PID,
    F_EXE,
    F_SEVERITY,
    F_MESSAGE,
    F_OCSF, /* not in jfields: embedded raw */
    F_MAX,
};

struct entry {
    uint64_t time_us;
    char *val[F_MAX]; /* NULL = absent; raw bytes up to the first NUL */
};

static void entry_clear(struct entry *e)
{
    for (size_t i = 0; i < F_MAX; i++)
        free(e->val[i]);
    memset(e, 0, sizeof(*e));
}

static char *entry_get(sd_journal *j, const char *field)
{
    const void *data;
    size_t len, plen = strlen(field);

    if (sd_journal_get_data(j, field, &data, &len) < 0 || len <= plen)
        return NULL;
    return strndup((const char *)data + plen + 1, len - plen - 1);
}

static int entry_load(sd_journal *j, struct entry *e)
{
    memset(e, 0, sizeof(*e));
    int r = sd_journal_get_realtime_usec(j, &e->time_us);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(jfields); i++)
        e->val[i] = entry_get(j, jfields[i].field);
    e->val[F_OCSF] = entry_get(j, "OCSF_JSON");
    return 0;
}

static bool entry_wanted(const struct entry *e, const struct events_query *q, uint64_t since_us)
{
    if (since_us && e->time_us < since_us)
        return false;
    if (q->sandbox && (!e->val[F_SANDBOX] || strcmp(e->val[F_SANDBOX], q->sandbox) != 0))
        return false;
    if (q->denied_only && (!e->val[F_ACTION] || strcmp(e->val[F_ACTION], "denied") != 0))
        return false;
    return true;
}

static void entry_build_json(struct sbuf *b, const struct entry *e)
{
    char ts[40];

    sbuf_printf(b, "{\"time\":\"%s\"", events_format_rfc3339(e->time_us, 6, ts, sizeof(ts)));
    for (size_t i = 0; i < ARRAY_SIZE(jfields); i++) {
        const char *v = e->val[i];
        if (!v)
            continue;
        if (jfields[i].kind == JK_NUM) {
            long n;
            if (parse_long(v, 1, INT_MAX, &n) == 0)
                sbuf_printf(b, ",\"%s\":%ld", jfields[i].key, n);
            continue;
        }
        sbuf_printf(b, ",\"%s\":", jfields[i].key);
        sbuf_put_json_str(b, v, jfields[i].cap);
    }
    /* Our own JSON, embedded as an object; anything else (a forged or cut
     * entry) is left out rather than breaking the line. */
    const char *o = e->val[F_OCSF];
    if (o && o[0] == '{' && events_json_valid(o, strlen(o))) {
        sbuf_puts(b, ",\"ocsf\":");
        sbuf_puts(b, o);
    }
    sbuf_putc(b, '}');
}

static int entry_print_json(const struct entry *e, FILE *out)
{
    struct sbuf b;
    sbuf_init(&b, NULL, 0);
    entry_build_json(&b, e);
    size_t size = b.pos + 1;
    char *buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    sbuf_init(&b, buf, size);
    entry_build_json(&b, e);
    sbuf_finish(&b);
    fputs(buf, out);
    fputc('\n', out);
    free(buf);
    return 0;
}

/* ---- table ---- */

enum {
    COL_TIME = 0,
    COL_SANDBOX,
    COL_ACTION,
    COL_EVENT,
    COL_DESTINATION,
    COL_REASON,
    COL_POLICY,
    COL_PROCESS,
    COL_MAX,
};

static const struct {
    const char *title;
    size_t width;
} columns[COL_MAX] = {
    {"TIME", 19},        {"SANDBOX", 16}, {"ACTION", 7},  {"EVENT", 22},
    {"DESTINATION", 40}, {"REASON", 22},  {"POLICY", 18}, {"PROCESS", 24},
};

/* Print clean text padded or cut to width characters ('~' marks a cut). */
static void cell_print(FILE *out, const char *text, size_t col)
{
    char clean[512];
    size_t width = columns[col].width, chars = 0, i, cut = 0;
    bool last = col == COL_MAX - 1;

    events_clean_copy(clean, sizeof(clean), text && *text ? text : "-", sizeof(clean) - 1);
    for (i = 0; clean[i]; i++) {
        if (((unsigned char)clean[i] & 0xc0) == 0x80)
            continue; /* UTF-8 continuation */
        if (chars == width - 1)
            cut = i;
        chars++;
    }
    if (chars > width) {
        fwrite(clean, 1, cut, out);
        fputc('~', out);
        chars = width;
    } else {
        fputs(clean, out);
    }
    if (!last) {
        for (; chars < width + 1; chars++)
            fputc(' ', out);
    }
}

static void table_header(FILE *out)
{
    for (size_t c = 0; c < COL_MAX; c++)
        cell_print(out, columns[c].title, c);
    fputc('\n', out);
}

static void entry_print_row(const struct entry *e, FILE *out)
{
    char ts[32], dest[600], proc[300], action[16];
    time_t t = (time_t)(e->time_us / 1000000);
    struct tm tm;
    struct sbuf b;
    long pid = 0;

    if (!localtime_r(&t, &tm) || !strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm))
        str_copy(ts, "?", sizeof(ts));

    /* The name when there is one, else the address; the port; the path. */
    sbuf_init(&b, dest, sizeof(dest));
    const char *host = e->val[F_DST_HOST], *ip = e->val[F_DST_IP];
    if (host && *host)
        sbuf_put_text(&b, host, SIZE_MAX, 256, SBUF_CLEAN);
    else if (ip && strchr(ip, ':') && e->val[F_DST_PORT])
        sbuf_printf(&b, "[%.64s]", ip);
    else if (ip)
        sbuf_put_text(&b, ip, SIZE_MAX, 64, SBUF_CLEAN);
    else
        sbuf_putc(&b, '-');
    if (e->val[F_DST_PORT])
        sbuf_printf(&b, ":%.8s", e->val[F_DST_PORT]);
    if (e->val[F_HTTP_PATH])
        sbuf_put_text(&b, e->val[F_HTTP_PATH], SIZE_MAX, 256, SBUF_CLEAN);
    sbuf_finish(&b);

    if (e->val[F_PID] && parse_long(e->val[F_PID], 1, INT_MAX, &pid) < 0)
        pid = 0;
    sbuf_init(&b, proc, sizeof(proc));
    events_format_process(&b, e->val[F_EXE], pid);
    sbuf_finish(&b);

    str_copy(action, e->val[F_ACTION] ? e->val[F_ACTION] : "-", sizeof(action));
    for (char *p = action; *p; p++)
        *p = (char)toupper((unsigned char)*p);

    cell_print(out, ts, COL_TIME);
    cell_print(out, e->val[F_SANDBOX], COL_SANDBOX);
    cell_print(out, action, COL_ACTION);
    cell_print(out, e->val[F_EVENT], COL_EVENT);
    cell_print(out, dest, COL_DESTINATION);
    cell_print(out, e->val[F_REASON], COL_REASON);
    cell_print(out, e->val[F_POLICY], COL_POLICY);
    cell_print(out, proc, COL_PROCESS);
    fputc('\n', out);
}

/* ---- the loop ---- */

static volatile sig_atomic_t read_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    read_stop = 1;
}

static int journal_open(sd_journal **ret)
{
    /* Local files are all we need (we run as root, next to journald); plain
     * 0 also covers journals of other machines in the directories. */
    int r = sd_journal_open(ret, SD_JOURNAL_LOCAL_ONLY);
    if (r < 0)
        r = sd_journal_open(ret, 0);
    return r;
}

static int journal_add_matches(sd_journal *j, const struct events_query *q)
{
    char *m = NULL;
    int r = sd_journal_add_match(j, "SYSLOG_IDENTIFIER=" EVENTS_IDENTIFIER, 0);
    if (r >= 0)
        r = sd_journal_add_match(j, "_UID=0", 0);
    if (r >= 0 && q->denied_only)
        r = sd_journal_add_match(j, "PORTCULLIS_ACTION=denied", 0);
    if (r >= 0 && q->sandbox) {
        if (asprintf(&m, "PORTCULLIS_SANDBOX=%s", q->sandbox) < 0)
            return -ENOMEM;
        r = sd_journal_add_match(j, m, 0);
        free(m);
    }
    return r;
}

int events_read(const struct events_query *q, FILE *out)
{
    struct sigaction sa, old_int, old_term;
    sd_journal *j = NULL;
    uint64_t since_us = 0;
    int r;

    if (!q || !out)
        return -EINVAL;
    if (q->since && events_parse_since(q->since, (uint64_t)time(NULL) * 1000000, &since_us) < 0) {
        log_error("invalid --since '%s' (use e.g. \"2026-01-01 10:00:00\", \"today\", "
                  "\"-10min\", \"2h ago\")",
                  q->since);
        return -EINVAL;
    }
    r = journal_open(&j);
    if (r < 0) {
        log_error("cannot open the journal: %s", strerror(-r));
        return r;
    }
    r = journal_add_matches(j, q);
    if (r < 0) {
        log_error("cannot filter the journal: %s", strerror(-r));
        goto fail_close;
    }
    (void)sd_journal_set_data_threshold(j, READ_DATA_MAX);
    r = since_us ? sd_journal_seek_realtime_usec(j, since_us) : sd_journal_seek_head(j);
    if (r < 0) {
        log_error("cannot seek in the journal: %s", strerror(-r));
        goto fail_close;
    }

    if (q->follow) {
        /* No SA_RESTART: the signal must cut sd_journal_wait short. */
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        read_stop = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
    }
    if (!q->json)
        table_header(out);

    for (;;) {
        if (q->follow && read_stop) {
            r = 0;
            break;
        }
        r = sd_journal_next(j);
        if (r < 0) {
            log_error("reading the journal failed: %s", strerror(-r));
            break;
        }
        if (r == 0) {
            if (!q->follow)
                break;
            fflush(out);
            /* A timeout, not only the wakeup: entries become readable late. */
            r = sd_journal_wait(j, FOLLOW_WAIT_US);
            if (r < 0 && r != -EINTR) {
                log_error("waiting for the journal failed: %s", strerror(-r));
                break;
            }
            continue;
        }
        struct entry e;
        if (entry_load(j, &e) < 0)
            continue;
        if (entry_wanted(&e, q, since_us)) {
            if (q->json)
                r = entry_print_json(&e, out);
            else
                entry_print_row(&e, out);
            if (q->follow)
                fflush(out);
        }
        entry_clear(&e);
        if (r < 0) {
            log_error("formatting an event failed: %s", strerror(-r));
            break;
        }
        if (ferror(out)) {
            log_error("writing the events failed");
            r = -EIO;
            break;
        }
    }
    if (q->follow) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (fflush(out) != 0 && r >= 0) {
        log_error("writing the events failed");
        r = -EIO;
    }
fail_close:
    sd_journal_close(j);
    return r < 0 ? r : 0;
}
