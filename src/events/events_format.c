/*
 * events_format: the pure half of the events module.  MESSAGE, the JSON line
 * and the OCSF object are built here from a struct event, with every string
 * cleaned (control characters and broken UTF-8 become '?') and capped, so a
 * sandboxed process that names a file "\e[2J" or sends a hostile Host header
 * cannot forge lines in the journal, a terminal or a JSON consumer.
 */
#include "events.h"
#include "events-int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- string builder ---- */

void sbuf_init(struct sbuf *b, char *buf, size_t size)
{
    b->buf = buf;
    b->size = buf ? size : 0;
    b->pos = 0;
}

void sbuf_putc(struct sbuf *b, char c)
{
    /* The last byte is kept for the NUL of sbuf_finish. */
    if (b->pos + 1 < b->size)
        b->buf[b->pos] = c;
    b->pos++;
}

static void sbuf_putn(struct sbuf *b, const char *s, size_t n)
{
    /* As n sbuf_putc() calls: the last byte is kept for the NUL. */
    size_t room = b->pos + 1 < b->size ? b->size - 1 - b->pos : 0;
    if (room)
        memcpy(b->buf + b->pos, s, n < room ? n : room);
    b->pos += n;
}

void sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_putn(b, s, strlen(s));
}

void sbuf_put_uint(struct sbuf *b, unsigned long long v)
{
    char digits[24];
    size_t i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sbuf_putn(b, digits + i, sizeof(digits) - i);
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    size_t avail = b->pos < b->size ? b->size - b->pos : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(avail ? b->buf + b->pos : NULL, avail, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->pos += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes) and its code
 * point, or 0 when it is not one (overlong, surrogate, > U+10FFFF, cut). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t len;
    uint32_t min;

    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
        min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
        min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return len;
}

static void sbuf_put_escaped_cp(struct sbuf *b, uint32_t cp)
{
    switch (cp) {
    case '\n':
        sbuf_puts(b, "\\n");
        return;
    case '\r':
        sbuf_puts(b, "\\r");
        return;
    case '\t':
        sbuf_puts(b, "\\t");
        return;
    case '\b':
        sbuf_puts(b, "\\b");
        return;
    case '\f':
        sbuf_puts(b, "\\f");
        return;
    default:
        sbuf_printf(b, "\\u%04x", (unsigned)cp);
        return;
    }
}

void sbuf_put_text(struct sbuf *b, const char *s, size_t n, size_t cap, enum sbuf_mode mode)
{
    const unsigned char *p = (const unsigned char *)s;
    bool json = mode == SBUF_JSON_CLEAN || mode == SBUF_JSON_RAW;

    if (!s)
        return;
    /* Look a little past cap so a character straddling it is seen whole
     * and dropped rather than turned into '?'. */
    if (n == SIZE_MAX)
        n = strnlen(s, cap + 4);
    size_t end = n < cap ? n : cap;
    for (size_t i = 0; i < end;) {
        /* Printable ASCII that needs no escape goes as one copy. */
        size_t run = 0;
        while (i + run < end && p[i + run] >= 0x20 && p[i + run] < 0x7f &&
               !(json && (p[i + run] == '"' || p[i + run] == '\\')))
            run++;
        if (run) {
            sbuf_putn(b, s + i, run);
            i += run;
            continue;
        }
        uint32_t cp = 0;
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (len && i + len > cap)
            break;
        if (len == 0) {
            /* Not UTF-8. */
            if (mode == SBUF_JSON_RAW)
                sbuf_puts(b, "\\ufffd");
            else
                sbuf_putc(b, '?');
            i++;
            continue;
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            /* C0, DEL and C1 controls: terminal escapes, line breaks. */
            if (mode == SBUF_JSON_RAW)
                sbuf_put_escaped_cp(b, cp);
            else
                sbuf_putc(b, '?');
        } else if (json && (cp == '"' || cp == '\\')) {
            sbuf_putc(b, '\\');
            sbuf_putc(b, (char)cp);
        } else {
            sbuf_putn(b, (const char *)p + i, len);
        }
        i += len;
    }
}

void sbuf_put_json_str(struct sbuf *b, const char *s, size_t cap)
{
    sbuf_putc(b, '"');
    sbuf_put_text(b, s, SIZE_MAX, cap, SBUF_JSON_CLEAN);
    sbuf_putc(b, '"');
}

int sbuf_finish(struct sbuf *b)
{
    if (b->size) {
        size_t end = b->pos < b->size ? b->pos : b->size - 1;
        if (b->pos >= b->size) {
            /* Truncated: do not leave half a character at the end. */
            size_t k = end, cont = 0;
            while (k > 0 && cont < 3 && ((unsigned char)b->buf[k - 1] & 0xc0) == 0x80) {
                k--;
                cont++;
            }
            if (k > 0 && (unsigned char)b->buf[k - 1] >= 0xc0) {
                unsigned char lead = (unsigned char)b->buf[k - 1];
                size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
                if (cont + 1 < need)
                    end = k - 1;
            }
        }
        b->buf[end] = '\0';
    }
    if (b->pos > INT_MAX)
        return -EOVERFLOW;
    return (int)b->pos;
}

char *events_clean_copy(char *dst, size_t size, const char *src, size_t cap)
{
    struct sbuf b;
    sbuf_init(&b, dst, size);
    sbuf_put_text(&b, src ? src : "", SIZE_MAX, cap, SBUF_CLEAN);
    sbuf_finish(&b);
    return dst;
}

const char *events_format_rfc3339(uint64_t time_us, int digits, char *buf, size_t len)
{
    time_t t = (time_t)(time_us / 1000000);
    unsigned frac = (unsigned)(time_us % 1000000);
    struct tm tm;
    char date[32];

    if (!gmtime_r(&t, &tm) || !strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm))
        str_copy(date, "1970-01-01T00:00:00", sizeof(date));
    if (digits == 3)
        snprintf(buf, len, "%s.%03uZ", date, frac / 1000);
    else
        snprintf(buf, len, "%s.%06uZ", date, frac);
    return buf;
}

/* ---- names ---- */

const char *event_action_name(enum event_action a)
{
    switch (a) {
    case EVENT_ACTION_ALLOWED:
        return "allowed";
    case EVENT_ACTION_DENIED:
        return "denied";
    case EVENT_ACTION_AUDIT:
        return "audit";
    default:
        return "unknown";
    }
}

const char *event_severity_name(enum event_severity s)
{
    static const char *const names[EVENT_SEVERITY_MAX] = {"info", "low", "medium", "high",
                                                          "critical"};
    if ((unsigned)s >= EVENT_SEVERITY_MAX)
        return "unknown";
    return names[s];
}

static const char *severity_tag(enum event_severity s)
{
    static const char *const tags[EVENT_SEVERITY_MAX] = {"INFO", "LOW", "MED", "HIGH", "CRIT"};
    if ((unsigned)s >= EVENT_SEVERITY_MAX)
        return "?";
    return tags[s];
}

static const char *action_tag(enum event_action a)
{
    switch (a) {
    case EVENT_ACTION_ALLOWED:
        return "ALLOWED";
    case EVENT_ACTION_DENIED:
        return "DENIED";
    case EVENT_ACTION_AUDIT:
        return "AUDIT";
    default:
        return "UNKNOWN";
    }
}

int event_priority(const struct event *ev)
{
    if (ev->severity >= EVENT_SEVERITY_HIGH && ev->severity < EVENT_SEVERITY_MAX)
        return 3; /* LOG_ERR */
    switch (ev->action) {
    case EVENT_ACTION_ALLOWED:
        return 6; /* LOG_INFO */
    case EVENT_ACTION_AUDIT:
        return 5; /* LOG_NOTICE */
    default:
        return 4; /* LOG_WARNING */
    }
}

/* ---- MESSAGE ---- */

void events_format_process(struct sbuf *b, const char *exe, long pid)
{
    const char *base = NULL;
    if (exe && *exe) {
        const char *slash = strrchr(exe, '/');
        base = slash ? slash + 1 : exe;
    }
    if (base && *base)
        sbuf_put_text(b, base, SIZE_MAX, EVENTS_FIELD_MAX, SBUF_CLEAN);
    else
        sbuf_putc(b, '-');
    if (pid > 0) {
        sbuf_putc(b, '(');
        sbuf_put_uint(b, (unsigned long long)pid);
        sbuf_putc(b, ')');
    }
}

static bool event_has_ip(const struct event *ev)
{
    return ev->dst_ip.family == AF_INET || ev->dst_ip.family == AF_INET6;
}

static void message_put_destination(struct sbuf *b, const struct event *ev)
{
    char ep[NET_ENDPOINT_STRLEN];

    if (event_has_ip(ev)) {
        if (ev->dst_port)
            sbuf_puts(b, net_endpoint_format(&ev->dst_ip, ev->dst_port, ep, sizeof(ep)));
        else
            sbuf_puts(b, net_addr_format(&ev->dst_ip, ep, sizeof(ep)));
        return;
    }
    if (ev->dst_host && *ev->dst_host)
        sbuf_put_text(b, ev->dst_host, SIZE_MAX, EVENTS_FIELD_MAX, SBUF_CLEAN);
    else
        sbuf_putc(b, '-');
    if (ev->dst_port) {
        sbuf_putc(b, ':');
        sbuf_put_uint(b, ev->dst_port);
    }
}

static void message_put_or_dash(struct sbuf *b, const char *s, size_t cap)
{
    if (s && *s)
        sbuf_put_text(b, s, SIZE_MAX, cap, SBUF_CLEAN);
    else
        sbuf_putc(b, '-');
}

static void message_build(struct sbuf *b, const struct event *ev)
{
    message_put_or_dash(b, ev->type, EVENTS_FIELD_MAX);
    sbuf_puts(b, " [");
    sbuf_puts(b, severity_tag(ev->severity));
    sbuf_puts(b, "] ");
    sbuf_puts(b, action_tag(ev->action));
    sbuf_putc(b, ' ');
    events_format_process(b, ev->exe, (long)ev->pid);
    sbuf_puts(b, " -> ");
    message_put_destination(b, ev);
    if ((ev->http_method && *ev->http_method) || (ev->http_path && *ev->http_path)) {
        sbuf_putc(b, ' ');
        message_put_or_dash(b, ev->http_method, EVENTS_FIELD_MAX);
        sbuf_putc(b, ' ');
        message_put_or_dash(b, ev->http_path, EVENTS_PATH_MAX);
    }
    sbuf_puts(b, " [policy:");
    message_put_or_dash(b, ev->policy, EVENTS_FIELD_MAX);
    sbuf_puts(b, " reason:");
    message_put_or_dash(b, ev->reason, EVENTS_FIELD_MAX);
    /* The destination shows the address; the name goes here. */
    if (event_has_ip(ev) && ev->dst_host && *ev->dst_host) {
        sbuf_puts(b, " host:");
        sbuf_put_text(b, ev->dst_host, SIZE_MAX, EVENTS_FIELD_MAX, SBUF_CLEAN);
    }
    if (ev->detail && *ev->detail) {
        sbuf_puts(b, " detail:");
        sbuf_put_text(b, ev->detail, SIZE_MAX, EVENTS_FIELD_MAX, SBUF_CLEAN);
    }
    sbuf_putc(b, ']');
}

int event_format_message(const struct event *ev, char *buf, size_t len)
{
    struct sbuf b;
    sbuf_init(&b, buf, len);
    message_build(&b, ev);
    return sbuf_finish(&b);
}

/* ---- OCSF ---- */

static bool event_is_http(const struct event *ev)
{
    return ev->type && strncmp(ev->type, "HTTP:", 5) == 0;
}

int event_ocsf_class(const struct event *ev)
{
    return event_is_http(ev) ? 4002 : 4001;
}

/* OCSF HTTP Activity activity ids by method. */
static int ocsf_http_activity(const char *method, const char **ret_name)
{
    static const struct {
        const char *method;
        int id;
        const char *name;
    } map[] = {
        {"CONNECT", 1, "Connect"}, {"DELETE", 2, "Delete"},   {"GET", 3, "Get"},
        {"HEAD", 4, "Head"},       {"OPTIONS", 5, "Options"}, {"POST", 6, "Post"},
        {"PUT", 7, "Put"},         {"TRACE", 8, "Trace"},     {"PATCH", 9, "Patch"},
    };
    for (size_t i = 0; method && i < ARRAY_SIZE(map); i++) {
        if (strcasecmp(method, map[i].method) == 0) {
            *ret_name = map[i].name;
            return map[i].id;
        }
    }
    *ret_name = "Other";
    return 99;
}

static int ocsf_activity(const struct event *ev, const char **ret_name)
{
    if (event_is_http(ev))
        return ocsf_http_activity(ev->http_method ? ev->http_method : ev->type + 5, ret_name);
    if (!ev->type || strncmp(ev->type, "FINDING:", 8) == 0) {
        *ret_name = "Other";
        return 99;
    }
    if (strcmp(ev->type, "NET:OPEN") == 0) {
        *ret_name = "Open";
        return 1;
    }
    *ret_name = "Traffic";
    return 6;
}

static void json_key(struct sbuf *b, bool *first, const char *key)
{
    if (!*first)
        sbuf_putc(b, ',');
    *first = false;
    sbuf_putc(b, '"');
    sbuf_puts(b, key);
    sbuf_puts(b, "\":");
}

static void json_key_str(struct sbuf *b, bool *first, const char *key, const char *val, size_t cap)
{
    if (!val)
        return;
    json_key(b, first, key);
    sbuf_put_json_str(b, val, cap);
}

/* What of the event's longer strings goes into an OCSF object: all of it,
 * or, within a byte budget (event_format_ocsf), less of it. */
struct ocsf_caps {
    bool detail;       /* false: left out (MESSAGE has it) */
    bool exe_path;     /* false: process.name, the file name, for file.path */
    size_t path, host; /* bytes kept; past them cut and marked */
};

static const struct ocsf_caps ocsf_caps_whole = {true, true, EVENTS_PATH_MAX, EVENTS_FIELD_MAX};

#define OCSF_CUT_MARK "\xe2\x80\xa6" /* U+2026 HORIZONTAL ELLIPSIS */

/* s as a JSON string of at most cap of its bytes (whole_cap when it is not
 * cut), marked when it is cut. */
static void ocsf_put_str(struct sbuf *b, const char *s, size_t cap, size_t whole_cap)
{
    if (cap >= whole_cap || strnlen(s, cap + 1) <= cap) {
        sbuf_put_json_str(b, s, whole_cap);
        return;
    }
    sbuf_putc(b, '"');
    sbuf_put_text(b, s, SIZE_MAX, cap, SBUF_JSON_CLEAN);
    sbuf_puts(b, OCSF_CUT_MARK "\"");
}

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Returns where the detail, the last key, starts (SIZE_MAX: none), so that
 * leaving it out afterwards is a cut rather than a rebuild. */
static size_t ocsf_build(struct sbuf *b, const struct event *ev, uint64_t time_ms,
                         const struct ocsf_caps *caps)
{
    size_t detail_at = SIZE_MAX;
    const char *activity_name;
    int class_uid = event_ocsf_class(ev);
    int activity = ocsf_activity(ev, &activity_name);
    unsigned sev = (unsigned)ev->severity < EVENT_SEVERITY_MAX ? (unsigned)ev->severity : 0;
    bool denied = ev->action == EVENT_ACTION_DENIED;
    bool audit = ev->action == EVENT_ACTION_AUDIT;
    char ip[NET_ADDR_STRLEN];
    bool first;

    /* Ids only, no captions (class_name, status, ...: derivable from the
     * ids), no status_id, disposition_id only where it adds to action_id
     * (audit: allowed and logged), no copy of MESSAGE: kept small because
     * journald compresses every field of 512 bytes or more, which more than
     * doubles its cost per event. */
    (void)activity_name;
    sbuf_puts(b, "{\"class_uid\":");
    sbuf_put_uint(b, (unsigned)class_uid);
    sbuf_puts(b, ",\"category_uid\":4,\"activity_id\":");
    sbuf_put_uint(b, (unsigned)activity);
    sbuf_puts(b, ",\"type_uid\":");
    sbuf_put_uint(b, (unsigned)(class_uid * 100 + activity));
    sbuf_puts(b, ",\"time\":");
    sbuf_put_uint(b, time_ms);
    sbuf_puts(b, ",\"severity_id\":");
    sbuf_put_uint(b, sev + 1);
    sbuf_puts(b, denied ? ",\"action_id\":2" : ",\"action_id\":1");
    if (audit)
        sbuf_puts(b, ",\"disposition_id\":17");

    if (event_has_ip(ev) || ev->dst_port || ev->dst_host) {
        first = true;
        sbuf_puts(b, ",\"dst_endpoint\":{");
        if (event_has_ip(ev))
            json_key_str(b, &first, "ip", net_addr_format(&ev->dst_ip, ip, sizeof(ip)),
                         EVENTS_FIELD_MAX);
        if (ev->dst_port) {
            json_key(b, &first, "port");
            sbuf_put_uint(b, ev->dst_port);
        }
        if (ev->dst_host) {
            json_key(b, &first, "hostname");
            ocsf_put_str(b, ev->dst_host, caps->host, EVENTS_FIELD_MAX);
        }
        sbuf_putc(b, '}');
    }
    /* HTTP Activity is always over TCP: the protocol goes without saying. */
    if (class_uid != 4002 && ev->proto &&
        (strcmp(ev->proto, "tcp") == 0 || strcmp(ev->proto, "udp") == 0)) {
        sbuf_puts(b, strcmp(ev->proto, "tcp") == 0 ? ",\"connection_info\":{\"protocol_num\":6}"
                                                   : ",\"connection_info\":{\"protocol_num\":17}");
    }
    if (ev->pid > 0 || ev->exe) {
        first = true;
        sbuf_puts(b, ",\"actor\":{\"process\":{");
        if (ev->pid > 0) {
            json_key(b, &first, "pid");
            sbuf_put_uint(b, (unsigned long long)ev->pid);
        }
        if (ev->exe && caps->exe_path) {
            json_key(b, &first, "file");
            sbuf_puts(b, "{\"path\":");
            sbuf_put_json_str(b, ev->exe, EVENTS_PATH_MAX);
            sbuf_putc(b, '}');
        } else if (ev->exe) {
            json_key_str(b, &first, "name", file_name(ev->exe), EVENTS_FIELD_MAX);
        }
        sbuf_puts(b, "}}");
    }
    if (ev->http_method || ev->http_path) {
        first = true;
        sbuf_puts(b, ",\"http_request\":{");
        json_key_str(b, &first, "http_method", ev->http_method, EVENTS_FIELD_MAX);
        if (ev->http_path) {
            /* host and port are in dst_endpoint */
            json_key(b, &first, "url");
            sbuf_puts(b, "{\"path\":");
            ocsf_put_str(b, ev->http_path, caps->path, EVENTS_PATH_MAX);
            sbuf_putc(b, '}');
        }
        sbuf_putc(b, '}');
    }
    sbuf_puts(b, ",\"metadata\":{\"version\":\"1.1.0\",\"product\":{\"name\":\"portcullis\"}}");
    sbuf_puts(b, ",\"unmapped\":{");
    first = true;
    json_key_str(b, &first, "sandbox", ev->sandbox, EVENTS_FIELD_MAX);
    json_key_str(b, &first, "policy", ev->policy, EVENTS_FIELD_MAX);
    json_key_str(b, &first, "reason", ev->reason, EVENTS_FIELD_MAX);
    if (caps->detail && ev->detail) {
        detail_at = b->pos;
        json_key_str(b, &first, "detail", ev->detail, EVENTS_FIELD_MAX);
    }
    sbuf_puts(b, "}}");
    return detail_at;
}

/* Shortest the request path and the host are cut to. */
#define OCSF_KEEP_PATH 32
#define OCSF_KEEP_HOST 32
/* Rebuilds while cutting: the first usually fits (see below). */
#define OCSF_CUT_PASSES 8

/* Lower *cap on s (whole: whole_cap bytes) by excess bytes, and by the mark
 * on its first cut, never below keep.  False when it cannot go further, or
 * when a first cut would not even pay for its mark. */
static bool ocsf_cut(size_t *cap, const char *s, size_t whole_cap, size_t keep, size_t excess)
{
    size_t mark = sizeof(OCSF_CUT_MARK) - 1;
    if (!s)
        return false;
    size_t len = strnlen(s, whole_cap);
    size_t cur = len < *cap ? len : *cap;
    bool first = cur == len;
    if (cur <= keep || (first && cur - keep <= mark))
        return false;
    size_t want = excess + (first ? mark : 0);
    *cap = cur - (cur - keep < want ? cur - keep : want);
    return true;
}

static size_t ocsf_build_in(struct sbuf *b, char *buf, size_t len, const struct event *ev,
                            uint64_t time_ms, const struct ocsf_caps *caps)
{
    sbuf_init(b, buf, len);
    ocsf_build(b, ev, time_ms, caps);
    return b->pos;
}

int event_format_ocsf(const struct event *ev, uint64_t time_ms, size_t budget, char *buf,
                      size_t len)
{
    struct ocsf_caps caps = ocsf_caps_whole;
    struct sbuf b;
    sbuf_init(&b, buf, len);
    size_t detail_at = ocsf_build(&b, ev, time_ms, &caps);
    size_t n = b.pos;

    /* Over: first the detail goes, then the executable's directory, then
     * the path and the host are cut, in that order and as far as needed,
     * each step measured rather than estimated: an input byte cut is not
     * always an output byte saved (two bytes of a C1 control come out as
     * one '?'), and a capped string saves less than its length. */
    if (budget && n > budget && detail_at != SIZE_MAX) {
        /* The same bytes as a rebuild without it: the detail is last. */
        caps.detail = false;
        b.pos = detail_at;
        sbuf_puts(&b, "}}");
        n = b.pos;
    }
    if (budget && n > budget && ev->exe) {
        caps.exe_path = false;
        n = ocsf_build_in(&b, buf, len, ev, time_ms, &caps);
    }
    for (int pass = 0; budget && n > budget && pass < OCSF_CUT_PASSES; pass++) {
        /* Still over after a cut: its bytes came out shorter than they
         * went in, so cut twice as much (halving would take a pass per bit). */
        size_t excess = (n - budget) << (pass ? 1 : 0);
        if (!ocsf_cut(&caps.path, ev->http_path, EVENTS_PATH_MAX, OCSF_KEEP_PATH, excess) &&
            !ocsf_cut(&caps.host, ev->dst_host, EVENTS_FIELD_MAX, OCSF_KEEP_HOST, excess))
            break;
        n = ocsf_build_in(&b, buf, len, ev, time_ms, &caps);
    }
    return sbuf_finish(&b);
}

/* ---- JSON line ---- */

int event_format_json(const struct event *ev, uint64_t time_us, char *buf, size_t len)
{
    char message[EVENTS_MESSAGE_MAX];
    char ts[40], ip[NET_ADDR_STRLEN];
    struct sbuf b;
    bool first = false; /* "time" is always there */

    event_format_message(ev, message, sizeof(message));
    sbuf_init(&b, buf, len);
    sbuf_printf(&b, "{\"time\":\"%s\"", events_format_rfc3339(time_us, 6, ts, sizeof(ts)));
    json_key_str(&b, &first, "sandbox", ev->sandbox, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "event", ev->type, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "action", event_action_name(ev->action), EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "reason", ev->reason, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "policy", ev->policy, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "proto", ev->proto, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "dst_host", ev->dst_host, EVENTS_FIELD_MAX);
    if (event_has_ip(ev))
        json_key_str(&b, &first, "dst_ip", net_addr_format(&ev->dst_ip, ip, sizeof(ip)),
                     EVENTS_FIELD_MAX);
    if (ev->dst_port) {
        json_key(&b, &first, "dst_port");
        sbuf_printf(&b, "%u", (unsigned)ev->dst_port);
    }
    json_key_str(&b, &first, "http_method", ev->http_method, EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "http_path", ev->http_path, EVENTS_PATH_MAX);
    if (ev->pid > 0) {
        json_key(&b, &first, "pid");
        sbuf_printf(&b, "%ld", (long)ev->pid);
    }
    json_key_str(&b, &first, "exe", ev->exe, EVENTS_PATH_MAX);
    json_key_str(&b, &first, "severity", event_severity_name(ev->severity), EVENTS_FIELD_MAX);
    json_key_str(&b, &first, "message", message, EVENTS_MESSAGE_MAX);
    json_key(&b, &first, "ocsf");
    ocsf_build(&b, ev, time_us / 1000, &ocsf_caps_whole);
    sbuf_putc(&b, '}');
    return sbuf_finish(&b);
}

/* ---- JSON validation (for what we embed raw, and for the tests) ---- */

struct json_parser {
    const unsigned char *s;
    size_t n, i;
    int depth;
};

static bool jp_value(struct json_parser *p);

static void jp_ws(struct json_parser *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static bool jp_lit(struct json_parser *p, const char *lit)
{
    size_t l = strlen(lit);
    if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0)
        return false;
    p->i += l;
    return true;
}

static bool jp_digits(struct json_parser *p)
{
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > start;
}

static bool jp_number(struct json_parser *p)
{
    if (p->i < p->n && p->s[p->i] == '-')
        p->i++;
    if (p->i < p->n && p->s[p->i] == '0')
        p->i++;
    else if (!jp_digits(p))
        return false;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (!jp_digits(p))
            return false;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (!jp_digits(p))
            return false;
    }
    return true;
}

static bool jp_string(struct json_parser *p)
{
    p->i++; /* opening quote */
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            p->i++;
            if (p->i >= p->n)
                return false;
            c = p->s[p->i];
            if (c == 'u') {
                for (int k = 1; k <= 4; k++) {
                    if (p->i + k >= p->n || !strchr("0123456789abcdefABCDEF", p->s[p->i + k]) ||
                        !p->s[p->i + k])
                        return false;
                }
                p->i += 5;
            } else if (c && strchr("\"\\/bfnrt", c)) {
                p->i++;
            } else {
                return false;
            }
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(p->s + p->i, p->n - p->i, &cp);
        if (!len)
            return false;
        p->i += len;
    }
    return false;
}

static bool jp_container(struct json_parser *p, bool object)
{
    char close = object ? '}' : ']';
    if (++p->depth > 64)
        return false;
    p->i++;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == (unsigned char)close) {
        p->i++;
        p->depth--;
        return true;
    }
    for (;;) {
        jp_ws(p);
        if (object) {
            if (p->i >= p->n || p->s[p->i] != '"' || !jp_string(p))
                return false;
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return false;
            p->i++;
        }
        if (!jp_value(p))
            return false;
        jp_ws(p);
        if (p->i >= p->n)
            return false;
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] != (unsigned char)close)
            return false;
        p->i++;
        p->depth--;
        return true;
    }
}

static bool jp_value(struct json_parser *p)
{
    jp_ws(p);
    if (p->i >= p->n)
        return false;
    switch (p->s[p->i]) {
    case '{':
        return jp_container(p, true);
    case '[':
        return jp_container(p, false);
    case '"':
        return jp_string(p);
    case 't':
        return jp_lit(p, "true");
    case 'f':
        return jp_lit(p, "false");
    case 'n':
        return jp_lit(p, "null");
    default:
        return jp_number(p);
    }
}

bool events_json_valid(const char *s, size_t len)
{
    struct json_parser p = {.s = (const unsigned char *)s, .n = len, .i = 0, .depth = 0};
    if (!s || !jp_value(&p))
        return false;
    jp_ws(&p);
    return p.i == p.n;
}
