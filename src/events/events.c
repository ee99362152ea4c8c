/*
 * events: the sinks (journal, stderr, rotated JSONL file) and the rate
 * limiter in front of them.
 *
 * Denied events are limited per key (sandbox, type, action, reason, dst_ip,
 * dst_port, proto): RL_BURST per RL_INTERVAL_MS pass, the rest are counted and
 * reported as one summary per key and interval ("suppressed N similar events
 * in the last 1s").  A key that overflowed gets no new burst in the next
 * interval, so a sustained flood costs one entry per second.  Keys live in a
 * bounded table (LRU eviction); on top of that each sandbox has a budget for
 * all its keys together, and all sandboxes one between them, so a flood over
 * many distinct keys (a UDP port sweep) folds into one overflow summary
 * instead of one entry per packet, and one sandbox's flood cannot use up what
 * another's denials need to be seen.
 * Allowed and audit events are never limited.
 *
 * All state sits behind one mutex, so any thread may emit.
 *
 * Journal entries are handed to a writer thread through a bounded queue:
 * journald falling behind (a file rotation, a burst) then never stalls the
 * caller's event loop, and with it every flow.  A full queue makes the
 * emitter wait (nothing is dropped); a write the journal refuses goes to
 * stderr, from the writer.  The writer takes the whole queue at a time and,
 * after a batch, naps briefly instead of asking to be woken, so under load
 * the emitter pays no thread wake-up per entry (only after an idle spell).
 */
#include "events.h"
#include "events-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* No CODE_FILE/CODE_LINE of this file in every entry. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#define RL_KEYS 256
#define RL_BURST 20
#define RL_INTERVAL_MS 1000
#define RL_SANDBOX_BUDGET 100 /* denied entries per interval, all keys of one sandbox */
#define RL_GLOBAL_BUDGET 1000 /* ... of all sandboxes together */
#define RL_SANDBOXES 64       /* sandboxes whose budget is tracked (LRU) */

#define JOURNAL_RECHECK_MS 5000
#define JQ_MAX_ENTRIES 8192
#define JQ_MAX_BYTES (16u << 20)
#define JQ_NAP_NS 1000000 /* entries reach journald at most ~1 ms late */
#define JQ_ROOM_STEP 32
#define JSONL_DEFAULT_MAX_BYTES (64ull * 1024 * 1024)
#define JSONL_DEFAULT_KEEP 3
#define JSONL_MAX_KEEP 100

/* One rate-limited key, plus a sample of what it suppressed for the summary.
 * Strings are truncated copies; the hash covers the full strings. */
struct rl_entry {
    bool used;
    uint64_t hash;
    char sandbox[128];
    char type[128];
    char reason[128];
    char proto[16];
    struct net_addr dst_ip;
    uint16_t dst_port;
    enum event_action action;
    /* sample of the suppressed events */
    char policy[128];
    char dst_host[256];
    char exe[256];
    pid_t pid;
    enum event_severity severity;
    /* window */
    uint64_t window_start_ms;
    uint64_t last_use; /* ev_state.use_seq at the last event: LRU order */
    unsigned passed;
    uint64_t suppressed;
    bool throttled; /* the previous window overflowed: no burst in this one */
};

/* One sandbox's budget in the current interval. */
struct rl_sandbox {
    bool used;
    char name[128];
    uint64_t start_ms;
    unsigned emitted;
    uint64_t last_use;
};

/* Summaries that did not fit a budget, folded together; fields
 * that differ between them are dropped. */
struct rl_overflow {
    struct rl_entry e; /* e.suppressed is the count, e.window_start_ms when it began */
    bool mixed_sandbox, mixed_type, mixed_reason, mixed_proto, mixed_dst, mixed_policy;
};

struct events_state {
    bool initialized;
    bool want_journal;
    bool journal;
    uint64_t journal_checked_ms;
    bool journal_error_reported;

    char *jsonl_path;
    uint64_t jsonl_max_bytes;
    unsigned jsonl_keep;
    int jsonl_fd;
    uint64_t jsonl_size;
    bool jsonl_rotate; /* regular file: rotation applies */
    bool jsonl_error_reported;

    char *scratch; /* OCSF / JSON text */
    size_t scratch_size;

    struct rl_entry keys[RL_KEYS];
    struct rl_overflow overflow;
    struct rl_sandbox sandboxes[RL_SANDBOXES];
    uint64_t global_start_ms;
    unsigned global_emitted;
    uint64_t use_seq;
};

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static struct events_state ev_state = {.jsonl_fd = -1};
static char journal_fields[24 * 1024]; /* under events_lock */

/* Where the stderr sink writes; NULL = stderr.  The tests redirect it. */
static FILE *events_stderr;

static uint64_t clock_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t clock_realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Time since `since`; 0 when the clock of the caller (uv_now() is coarse)
 * lags ours. */
static uint64_t elapsed_ms(uint64_t now_ms, uint64_t since_ms)
{
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

/* Time sources; the tests replace them. */
static uint64_t (*events_now_ms)(void) = clock_monotonic_ms;
static uint64_t (*events_now_us)(void) = clock_realtime_us;

static FILE *stderr_sink(void)
{
    return events_stderr ? events_stderr : stderr;
}

/* ---- scratch ---- */

/* Grow the scratch for a formatter that reported n bytes. Returns 1 when the
 * caller must format again, 0 when it fit, -errno. */
static int scratch_fit(int n)
{
    if (n < 0)
        return n;
    if ((size_t)n + 2 <= ev_state.scratch_size) /* +2: room for '\n' and NUL */
        return 0;
    size_t want = (size_t)n + 2;
    char *p = realloc(ev_state.scratch, want);
    if (!p)
        return -ENOMEM;
    ev_state.scratch = p;
    ev_state.scratch_size = want;
    return 1;
}

/* ---- the journal writer thread ---- */

struct jq_entry {
    struct jq_entry *next;
    uint64_t time_us;
    size_t size;
    int n;
    struct iovec iov[26];
    char data[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, room, idle;
    struct jq_entry *head, *tail;
    size_t n, bytes; /* queued or being written: the bound covers both */
    unsigned room_waiters, idle_waiters;
    bool running, stop, busy, error_reported;
    bool writer_waiting; /* blocked on `work`: an emitter must signal */
    pthread_t thread;
} jq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};

/* The value of field name= in e, or "-". */
static const char *jq_field(const struct jq_entry *e, const char *name, size_t *ret_len)
{
    size_t nl = strlen(name);
    for (int i = 0; i < e->n; i++) {
        const char *b = e->iov[i].iov_base;
        if (e->iov[i].iov_len > nl && memcmp(b, name, nl) == 0 && b[nl] == '=') {
            *ret_len = e->iov[i].iov_len - nl - 1;
            return b + nl + 1;
        }
    }
    *ret_len = 1;
    return "-";
}

/* The journal refused e: its line goes to stderr instead. */
static void jq_fallback(const struct jq_entry *e, int err)
{
    char ts[40];
    size_t sl, ml;
    const char *sb = jq_field(e, "PORTCULLIS_SANDBOX", &sl);
    const char *msg = jq_field(e, "MESSAGE", &ml);
    FILE *out = stderr_sink();
    if (!jq.error_reported) {
        jq.error_reported = true;
        log_error("writing to the journal failed: %s; events go to stderr (reported once)",
                  strerror(-err));
    }
    events_format_rfc3339(e->time_us, 3, ts, sizeof(ts));
    fprintf(out, "%s %.*s %.*s\n", ts, (int)sl, sb, (int)ml, msg);
    fflush(out);
}

/* n entries of bytes in all are written (called locked). */
static void jq_release(size_t n, size_t bytes)
{
    jq.n -= n;
    jq.bytes -= bytes;
    if (jq.room_waiters)
        pthread_cond_broadcast(&jq.room);
}

static void *jq_main(void *arg)
{
    static const struct timespec nap = {.tv_nsec = JQ_NAP_NS};
    (void)arg;
    pthread_mutex_lock(&jq.lock);
    for (;;) {
        while (!jq.head && !jq.stop) {
            jq.writer_waiting = true;
            pthread_cond_wait(&jq.work, &jq.lock);
            jq.writer_waiting = false;
        }
        struct jq_entry *batch = jq.head;
        if (!batch)
            break; /* stopping, and everything is written */
        jq.head = jq.tail = NULL;
        jq.busy = true;
        pthread_mutex_unlock(&jq.lock);
        size_t n = 0, bytes = 0;
        while (batch) {
            struct jq_entry *e = batch;
            batch = e->next;
            int r = sd_journal_sendv(e->iov, e->n);
            if (r < 0)
                jq_fallback(e, r);
            n++;
            bytes += e->size;
            free(e);
            if (batch && n == JQ_ROOM_STEP) {
                /* An emitter waiting for room gets it as it frees up. */
                pthread_mutex_lock(&jq.lock);
                jq_release(n, bytes);
                pthread_mutex_unlock(&jq.lock);
                n = bytes = 0;
            }
        }
        pthread_mutex_lock(&jq.lock);
        jq_release(n, bytes);
        jq.busy = false;
        if (!jq.head && jq.idle_waiters)
            pthread_cond_broadcast(&jq.idle);
        if (!jq.head && !jq.stop) {
            /* Let the next entries gather without a wake-up each. */
            pthread_mutex_unlock(&jq.lock);
            nanosleep(&nap, NULL);
            pthread_mutex_lock(&jq.lock);
        }
    }
    pthread_mutex_unlock(&jq.lock);
    return NULL;
}

static int jq_start(void)
{
    if (jq.running)
        return 0;
    jq.stop = false;
    jq.error_reported = false;
    sigset_t all, old;
    sigfillset(&all);
    /* The writer takes no signals: they stay with the daemon's loop. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&jq.thread, NULL, jq_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -r;
    jq.running = true;
    return 0;
}

/* Write what is queued, then end the writer. */
static void jq_stop(void)
{
    if (!jq.running)
        return;
    pthread_mutex_lock(&jq.lock);
    jq.stop = true;
    pthread_cond_signal(&jq.work);
    pthread_mutex_unlock(&jq.lock);
    pthread_join(jq.thread, NULL);
    jq.running = false;
}

/* Queue one entry (copied); waits while the queue is full.  Without a
 * writer thread, sends at once. */
static int jq_push(const struct iovec *iov, int n, uint64_t time_us)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (!jq.running)
        return sd_journal_sendv(iov, n);
    struct jq_entry *e = malloc(sizeof(*e) + total);
    if (!e)
        return sd_journal_sendv(iov, n);
    char *p = e->data;
    e->next = NULL;
    e->time_us = time_us;
    e->size = total;
    e->n = n < (int)ARRAY_SIZE(e->iov) ? n : (int)ARRAY_SIZE(e->iov);
    for (int i = 0; i < e->n; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        e->iov[i].iov_base = p;
        e->iov[i].iov_len = iov[i].iov_len;
        p += iov[i].iov_len;
    }
    pthread_mutex_lock(&jq.lock);
    while (jq.n >= JQ_MAX_ENTRIES || jq.bytes + total > JQ_MAX_BYTES) {
        jq.room_waiters++;
        pthread_cond_wait(&jq.room, &jq.lock);
        jq.room_waiters--;
    }
    if (jq.tail)
        jq.tail->next = e;
    else
        jq.head = e;
    jq.tail = e;
    jq.n++;
    jq.bytes += total;
    if (jq.writer_waiting)
        pthread_cond_signal(&jq.work);
    pthread_mutex_unlock(&jq.lock);
    return 0;
}

void events_drain(void)
{
    pthread_mutex_lock(&jq.lock);
    while (jq.running && (jq.head || jq.busy)) {
        jq.idle_waiters++;
        pthread_cond_wait(&jq.idle, &jq.lock);
        jq.idle_waiters--;
    }
    pthread_mutex_unlock(&jq.lock);
}

/* ---- journal ---- */

static bool journal_socket_present(void)
{
    return access(EVENTS_JOURNAL_SOCKET, F_OK) == 0;
}

/* Re-check now and then for a journal that was missing at start. */
static void journal_recheck(uint64_t now_ms)
{
    if (!ev_state.want_journal || ev_state.journal ||
        elapsed_ms(now_ms, ev_state.journal_checked_ms) < JOURNAL_RECHECK_MS)
        return;
    ev_state.journal_checked_ms = now_ms;
    if (journal_socket_present()) {
        ev_state.journal = true;
        log_info("journal socket %s appeared; events go to the journal", EVENTS_JOURNAL_SOCKET);
    }
}

struct field_vec {
    struct sbuf b;
    struct iovec iov[24];
    int n;
};

static void field_add_raw(struct field_vec *f, const char *name, const char *val, size_t cap)
{
    size_t start = f->b.pos;
    if (!val || f->n >= (int)ARRAY_SIZE(f->iov))
        return;
    sbuf_puts(&f->b, name);
    sbuf_putc(&f->b, '=');
    sbuf_put_text(&f->b, val, SIZE_MAX, cap, SBUF_CLEAN);
    if (f->b.pos >= f->b.size) {
        /* Cannot happen with the caps; drop the field rather than cut it. */
        f->b.pos = start;
        return;
    }
    f->iov[f->n].iov_base = f->b.buf + start;
    f->iov[f->n].iov_len = f->b.pos - start;
    f->n++;
}

static void field_add_fmt_uint(struct field_vec *f, const char *name, unsigned long v)
{
    char num[24];
    struct sbuf nb;
    sbuf_init(&nb, num, sizeof(num));
    sbuf_put_uint(&nb, v);
    sbuf_finish(&nb);
    field_add_raw(f, name, num, sizeof(num));
}

#define OCSF_FIELD "OCSF_JSON="
#define OCSF_FIELD_LEN (sizeof(OCSF_FIELD) - 1)

/* ocsf_field: "OCSF_JSON=" and our own clean JSON of capped parts, or NULL. */
static int journal_send(const struct event *ev, const char *message, const char *ocsf_field,
                        uint64_t time_us)
{
    struct field_vec f;
    char ip[NET_ADDR_STRLEN];

    sbuf_init(&f.b, journal_fields, sizeof(journal_fields));
    f.n = 0;
    field_add_raw(&f, "SYSLOG_IDENTIFIER", EVENTS_IDENTIFIER, EVENTS_FIELD_MAX);
    field_add_raw(&f, "MESSAGE", message, EVENTS_MESSAGE_MAX);
    field_add_fmt_uint(&f, "PRIORITY", (unsigned long)event_priority(ev));
    field_add_raw(&f, "PORTCULLIS_SANDBOX", ev->sandbox, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_EVENT", ev->type, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_ACTION", event_action_name(ev->action), EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_REASON", ev->reason, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_POLICY", ev->policy, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_PROTO", ev->proto, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_DST_HOST", ev->dst_host, EVENTS_FIELD_MAX);
    if (ev->dst_ip.family == AF_INET || ev->dst_ip.family == AF_INET6)
        field_add_raw(&f, "PORTCULLIS_DST_IP", net_addr_format(&ev->dst_ip, ip, sizeof(ip)),
                      sizeof(ip));
    if (ev->dst_port)
        field_add_fmt_uint(&f, "PORTCULLIS_DST_PORT", ev->dst_port);
    field_add_raw(&f, "PORTCULLIS_HTTP_METHOD", ev->http_method, EVENTS_FIELD_MAX);
    field_add_raw(&f, "PORTCULLIS_HTTP_PATH", ev->http_path, EVENTS_PATH_MAX);
    if (ev->pid > 0)
        field_add_fmt_uint(&f, "PORTCULLIS_PID", (unsigned long)ev->pid);
    field_add_raw(&f, "PORTCULLIS_EXE", ev->exe, EVENTS_PATH_MAX);
    field_add_raw(&f, "PORTCULLIS_SEVERITY", event_severity_name(ev->severity), EVENTS_FIELD_MAX);
    field_add_fmt_uint(&f, "OCSF_CLASS_UID", (unsigned long)event_ocsf_class(ev));
    struct iovec iov[ARRAY_SIZE(f.iov) + 1];
    int n = f.n;
    memcpy(iov, f.iov, sizeof(f.iov[0]) * (size_t)n);
    if (ocsf_field) {
        iov[n].iov_base = (void *)ocsf_field;
        iov[n].iov_len = strlen(ocsf_field);
        n++;
    }
    return jq_push(iov, n, time_us);
}

/* ---- stderr ---- */

static void stderr_write(const struct event *ev, const char *message, uint64_t time_us)
{
    char ts[40], sandbox[EVENTS_FIELD_MAX];
    FILE *out = stderr_sink();

    events_format_rfc3339(time_us, 3, ts, sizeof(ts));
    events_clean_copy(sandbox, sizeof(sandbox), ev->sandbox && *ev->sandbox ? ev->sandbox : "-",
                      EVENTS_FIELD_MAX);
    fprintf(out, "%s %s %s\n", ts, sandbox, message);
    fflush(out);
}

/* ---- JSONL ---- */

static void jsonl_report(const char *what, int err)
{
    if (ev_state.jsonl_error_reported)
        return;
    ev_state.jsonl_error_reported = true;
    log_error("events JSONL %s %s: %s (reported once)", what, ev_state.jsonl_path, strerror(err));
}

static int jsonl_open(void)
{
    const char *path = ev_state.jsonl_path;
    struct stat st;
    /* O_NOFOLLOW: the file often sits in a directory a sandboxed process can
     * write (/tmp), and we append as root. */
    /* O_NONBLOCK: a FIFO planted at the path must not hang the daemon; only
     * a regular file owned by root is accepted below anyway. */
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;
    int fd = open(path, flags);
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, flags | O_CREAT | O_EXCL, 0640);
        if (fd >= 0)
            (void)fchmod(fd, 0640); /* whatever the umask */
        else if (errno == EEXIST)
            fd = open(path, flags);
    }
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return -EPERM;
    }
    ev_state.jsonl_fd = fd;
    ev_state.jsonl_rotate = true;
    ev_state.jsonl_size = (uint64_t)st.st_size;
    return 0;
}

/* PATH -> PATH.1 -> ... -> PATH.keep (the oldest is overwritten). */
static void jsonl_rotate(void)
{
    const char *path = ev_state.jsonl_path;
    size_t plen = strlen(path);
    char *from = malloc(plen + 16), *to = malloc(plen + 16);

    if (!from || !to) {
        free(from);
        free(to);
        jsonl_report("rotation of", ENOMEM);
        return;
    }
    close(ev_state.jsonl_fd);
    ev_state.jsonl_fd = -1;
    for (unsigned i = ev_state.jsonl_keep; i >= 1; i--) {
        if (i == 1)
            snprintf(from, plen + 16, "%s", path);
        else
            snprintf(from, plen + 16, "%s.%u", path, i - 1);
        snprintf(to, plen + 16, "%s.%u", path, i);
        if (rename(from, to) < 0 && errno != ENOENT)
            jsonl_report("rotation of", errno);
    }
    free(from);
    free(to);
    int r = jsonl_open();
    if (r < 0)
        jsonl_report("reopen of", -r);
}

static void jsonl_write(const struct event *ev, uint64_t time_us)
{
    int n, r;

    do {
        n = event_format_json(ev, time_us, ev_state.scratch, ev_state.scratch_size);
        r = scratch_fit(n);
    } while (r > 0);
    if (r < 0) {
        jsonl_report("formatting for", -r);
        return;
    }
    ev_state.scratch[n] = '\n';
    size_t len = (size_t)n + 1;

    if (ev_state.jsonl_rotate && ev_state.jsonl_size > 0 &&
        ev_state.jsonl_size + len > ev_state.jsonl_max_bytes)
        jsonl_rotate();
    if (ev_state.jsonl_fd < 0)
        return;
    /* One write with O_APPEND: lines of concurrent writers do not interleave. */
    ssize_t w;
    do {
        w = write(ev_state.jsonl_fd, ev_state.scratch, len);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        jsonl_report("write to", errno);
        return;
    }
    if ((size_t)w < len)
        jsonl_report("write to", ENOSPC);
    ev_state.jsonl_size += (uint64_t)w;
}

/* ---- all sinks ---- */

static void sinks_write(const struct event *ev)
{
    char message[EVENTS_MESSAGE_MAX];
    uint64_t time_us = events_now_us();
    bool to_stderr = true;

    event_format_message(ev, message, sizeof(message));
    journal_recheck(events_now_ms());
    if (ev_state.journal) {
        int n, r;
        /* Formatted behind its field name, ready for the journal as it is. */
        do {
            memcpy(ev_state.scratch, OCSF_FIELD, OCSF_FIELD_LEN);
            n = event_format_ocsf(ev, time_us / 1000, EVENTS_OCSF_JOURNAL_MAX,
                                  ev_state.scratch + OCSF_FIELD_LEN,
                                  ev_state.scratch_size - OCSF_FIELD_LEN);
            r = scratch_fit(n < 0 ? n : n + (int)OCSF_FIELD_LEN);
        } while (r > 0);
        r = journal_send(ev, message, r == 0 ? ev_state.scratch : NULL, time_us);
        if (r >= 0) {
            to_stderr = false;
        } else if (!ev_state.journal_error_reported) {
            ev_state.journal_error_reported = true;
            log_error("writing to the journal failed: %s; events go to stderr (reported once)",
                      strerror(-r));
        }
    }
    if (to_stderr)
        stderr_write(ev, message, time_us);
    if (ev_state.jsonl_fd >= 0)
        jsonl_write(ev, time_us);
}

/* ---- rate limiter ---- */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull; /* FNV-1a */
    }
    return h;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    /* The terminator separates adjacent fields ("ab"+"c" vs "a"+"bc"). */
    return hash_bytes(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

static uint64_t rl_hash(const struct event *ev)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = hash_str(h, ev->sandbox);
    h = hash_str(h, ev->type);
    h = hash_str(h, ev->reason);
    h = hash_str(h, ev->proto);
    h = hash_bytes(h, &ev->dst_ip.family, sizeof(ev->dst_ip.family));
    if (ev->dst_ip.family == AF_INET)
        h = hash_bytes(h, &ev->dst_ip.u.v4, sizeof(ev->dst_ip.u.v4));
    else if (ev->dst_ip.family == AF_INET6)
        h = hash_bytes(h, &ev->dst_ip.u.v6, sizeof(ev->dst_ip.u.v6));
    h = hash_bytes(h, &ev->dst_port, sizeof(ev->dst_port));
    h = hash_bytes(h, &ev->action, sizeof(ev->action));
    return h;
}

static bool str_eq_trunc(const char *stored, size_t size, const char *s)
{
    return strncmp(stored, s ? s : "", size - 1) == 0;
}

static bool addr_known(const struct net_addr *a)
{
    return a->family == AF_INET || a->family == AF_INET6;
}

static bool addr_same(const struct net_addr *a, const struct net_addr *b)
{
    if (!addr_known(a) || !addr_known(b))
        return addr_known(a) == addr_known(b);
    return net_addr_equal(a, b);
}

static bool rl_match(const struct rl_entry *e, uint64_t hash, const struct event *ev)
{
    return e->used && e->hash == hash && e->action == ev->action && e->dst_port == ev->dst_port &&
           addr_same(&e->dst_ip, &ev->dst_ip) &&
           str_eq_trunc(e->sandbox, sizeof(e->sandbox), ev->sandbox) &&
           str_eq_trunc(e->type, sizeof(e->type), ev->type) &&
           str_eq_trunc(e->reason, sizeof(e->reason), ev->reason) &&
           str_eq_trunc(e->proto, sizeof(e->proto), ev->proto);
}

static void copy_opt(char *dst, size_t size, const char *src)
{
    str_copy(dst, src ? src : "", size);
}

static const char *opt(const char *s)
{
    return *s ? s : NULL;
}

/* The budget of sandbox (NULL: events of no sandbox), found or taken over
 * from the least recently used one (which then starts afresh). */
static struct rl_sandbox *rl_sandbox_get(const char *sandbox, uint64_t now_ms)
{
    struct rl_sandbox *victim = NULL;
    for (size_t i = 0; i < RL_SANDBOXES; i++) {
        struct rl_sandbox *b = &ev_state.sandboxes[i];
        if (b->used && str_eq_trunc(b->name, sizeof(b->name), sandbox))
            return b;
        if (!victim || (victim->used && (!b->used || b->last_use < victim->last_use)))
            victim = b;
    }
    memset(victim, 0, sizeof(*victim));
    victim->used = true;
    copy_opt(victim->name, sizeof(victim->name), sandbox);
    victim->start_ms = now_ms;
    return victim;
}

/* One denied entry may be written for sandbox in this interval: take it
 * from its budget and the global one, or say no. */
static bool rl_budget_take(const char *sandbox, uint64_t now_ms)
{
    struct rl_sandbox *b = rl_sandbox_get(sandbox, now_ms);
    b->last_use = ++ev_state.use_seq;
    if (elapsed_ms(now_ms, b->start_ms) >= RL_INTERVAL_MS) {
        b->start_ms = now_ms;
        b->emitted = 0;
    }
    if (elapsed_ms(now_ms, ev_state.global_start_ms) >= RL_INTERVAL_MS) {
        ev_state.global_start_ms = now_ms;
        ev_state.global_emitted = 0;
    }
    if (b->emitted >= RL_SANDBOX_BUDGET || ev_state.global_emitted >= RL_GLOBAL_BUDGET)
        return false;
    b->emitted++;
    ev_state.global_emitted++;
    return true;
}

static unsigned rl_seconds(uint64_t now_ms, uint64_t since_ms)
{
    uint64_t s = (elapsed_ms(now_ms, since_ms) + 500) / 1000;
    return s ? (unsigned)(s > UINT_MAX ? UINT_MAX : s) : 1;
}

static void rl_event_from_entry(const struct rl_entry *e, struct event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->sandbox = opt(e->sandbox);
    ev->type = opt(e->type);
    ev->action = e->action;
    ev->reason = opt(e->reason);
    ev->policy = opt(e->policy);
    ev->proto = opt(e->proto);
    ev->dst_host = opt(e->dst_host);
    ev->dst_ip = e->dst_ip;
    ev->dst_port = e->dst_port;
    ev->pid = e->pid;
    ev->exe = opt(e->exe);
    ev->severity = e->severity;
}

static void rl_overflow_add(const struct rl_entry *e, uint64_t now_ms)
{
    struct rl_overflow *o = &ev_state.overflow;

    if (o->e.suppressed == 0) {
        uint64_t n = e->suppressed;
        memset(o, 0, sizeof(*o));
        o->e = *e;
        o->e.suppressed = n;
        o->e.window_start_ms = now_ms;
        return;
    }
    o->mixed_sandbox |= strcmp(o->e.sandbox, e->sandbox) != 0;
    o->mixed_type |= strcmp(o->e.type, e->type) != 0;
    o->mixed_reason |= strcmp(o->e.reason, e->reason) != 0;
    o->mixed_proto |= strcmp(o->e.proto, e->proto) != 0;
    o->mixed_policy |= strcmp(o->e.policy, e->policy) != 0;
    o->mixed_dst |= !addr_same(&o->e.dst_ip, &e->dst_ip) || o->e.dst_port != e->dst_port ||
                    strcmp(o->e.dst_host, e->dst_host) != 0;
    if (o->e.pid != e->pid || strcmp(o->e.exe, e->exe) != 0) {
        o->e.pid = 0;
        o->e.exe[0] = '\0';
    }
    if (e->severity > o->e.severity)
        o->e.severity = e->severity;
    o->e.suppressed += e->suppressed;
}

static void rl_overflow_emit(uint64_t now_ms, bool force)
{
    struct rl_overflow *o = &ev_state.overflow;
    struct event ev;
    char detail[128];

    if (o->e.suppressed == 0 ||
        (!force && elapsed_ms(now_ms, o->e.window_start_ms) < RL_INTERVAL_MS))
        return;
    rl_event_from_entry(&o->e, &ev);
    if (o->mixed_sandbox)
        ev.sandbox = NULL;
    if (o->mixed_type)
        ev.type = "EVENTS:SUPPRESSED";
    if (o->mixed_reason)
        ev.reason = NULL;
    if (o->mixed_proto)
        ev.proto = NULL;
    if (o->mixed_policy)
        ev.policy = NULL;
    if (o->mixed_dst) {
        memset(&ev.dst_ip, 0, sizeof(ev.dst_ip));
        ev.dst_port = 0;
        ev.dst_host = NULL;
    }
    snprintf(detail, sizeof(detail), "suppressed %llu events over the rate limit in the last %us",
             (unsigned long long)o->e.suppressed, rl_seconds(now_ms, o->e.window_start_ms));
    ev.detail = detail;
    sinks_write(&ev);
    memset(o, 0, sizeof(*o));
}

/* Report what e suppressed in its window (or fold it into the overflow). */
static void rl_summary(struct rl_entry *e, uint64_t now_ms)
{
    struct event ev;
    char detail[128];

    if (e->suppressed == 0)
        return;
    if (!rl_budget_take(e->sandbox, now_ms)) {
        rl_overflow_add(e, now_ms);
        return;
    }
    rl_event_from_entry(e, &ev);
    snprintf(detail, sizeof(detail), "suppressed %llu similar events in the last %us",
             (unsigned long long)e->suppressed, rl_seconds(now_ms, e->window_start_ms));
    ev.detail = detail;
    sinks_write(&ev);
}

/* End e's window: summary, then a new window that starts throttled when
 * this one overflowed. */
static void rl_roll(struct rl_entry *e, uint64_t now_ms)
{
    rl_summary(e, now_ms);
    e->throttled = e->suppressed > 0;
    e->window_start_ms = now_ms;
    e->passed = 0;
    e->suppressed = 0;
}

static struct rl_entry *rl_lookup(const struct event *ev, uint64_t now_ms)
{
    uint64_t hash = rl_hash(ev);
    struct rl_entry *victim = NULL;

    for (size_t i = 0; i < RL_KEYS; i++) {
        struct rl_entry *e = &ev_state.keys[i];
        if (rl_match(e, hash, ev))
            return e;
        if (!victim || (victim->used && (!e->used || e->last_use < victim->last_use)))
            victim = e;
    }
    if (victim->used)
        rl_summary(victim, now_ms); /* its count must not be lost */
    memset(victim, 0, sizeof(*victim));
    victim->used = true;
    victim->hash = hash;
    copy_opt(victim->sandbox, sizeof(victim->sandbox), ev->sandbox);
    copy_opt(victim->type, sizeof(victim->type), ev->type);
    copy_opt(victim->reason, sizeof(victim->reason), ev->reason);
    copy_opt(victim->proto, sizeof(victim->proto), ev->proto);
    if (addr_known(&ev->dst_ip))
        victim->dst_ip = ev->dst_ip;
    victim->dst_port = ev->dst_port;
    victim->action = ev->action;
    victim->window_start_ms = now_ms;
    return victim;
}

/* Whether ev (denied) may be written now. */
static bool rl_admit(const struct event *ev, uint64_t now_ms)
{
    struct rl_entry *e = rl_lookup(ev, now_ms);

    e->last_use = ++ev_state.use_seq;
    if (elapsed_ms(now_ms, e->window_start_ms) >= RL_INTERVAL_MS)
        rl_roll(e, now_ms);
    if (!e->throttled && e->passed < RL_BURST && rl_budget_take(ev->sandbox, now_ms)) {
        e->passed++;
        return true;
    }
    if (e->suppressed == 0 || ev->severity > e->severity) {
        copy_opt(e->policy, sizeof(e->policy), ev->policy);
        copy_opt(e->dst_host, sizeof(e->dst_host), ev->dst_host);
        copy_opt(e->exe, sizeof(e->exe), ev->exe);
        e->pid = ev->pid;
        e->severity = ev->severity;
    }
    e->suppressed++;
    return false;
}

static void rl_flush(uint64_t now_ms, bool force)
{
    for (size_t i = 0; i < RL_KEYS; i++) {
        struct rl_entry *e = &ev_state.keys[i];
        if (e->used && (force || elapsed_ms(now_ms, e->window_start_ms) >= RL_INTERVAL_MS))
            rl_roll(e, now_ms);
    }
    rl_overflow_emit(now_ms, force);
}

/* ---- public ---- */

static void events_shutdown_locked(void)
{
    if (ev_state.initialized)
        rl_flush(events_now_ms(), true);
    jq_stop();
    if (ev_state.jsonl_fd >= 0)
        close(ev_state.jsonl_fd);
    free(ev_state.jsonl_path);
    free(ev_state.scratch);
    memset(&ev_state, 0, sizeof(ev_state));
    ev_state.jsonl_fd = -1;
}

static int events_init_locked(const struct events_config *cfg)
{
    events_shutdown_locked();
    ev_state.want_journal = cfg->use_journal;
    ev_state.journal = cfg->use_journal && journal_socket_present();
    ev_state.journal_checked_ms = events_now_ms();
    ev_state.global_start_ms = ev_state.journal_checked_ms;
    ev_state.jsonl_max_bytes =
        cfg->jsonl_max_bytes ? cfg->jsonl_max_bytes : JSONL_DEFAULT_MAX_BYTES;
    ev_state.jsonl_keep = cfg->jsonl_keep ? cfg->jsonl_keep : JSONL_DEFAULT_KEEP;
    if (ev_state.jsonl_keep > JSONL_MAX_KEEP)
        ev_state.jsonl_keep = JSONL_MAX_KEEP;
    ev_state.scratch_size = 16384;
    ev_state.scratch = malloc(ev_state.scratch_size);
    if (!ev_state.scratch)
        return -ENOMEM;
    if (cfg->jsonl_path) {
        ev_state.jsonl_path = strdup(cfg->jsonl_path);
        if (!ev_state.jsonl_path)
            return -ENOMEM;
        int r = jsonl_open();
        if (r < 0)
            return r;
    }
    if (cfg->use_journal) {
        int r = jq_start();
        if (r < 0)
            log_warn("no journal writer thread (%s): events are written from the loop",
                     strerror(-r));
    }
    ev_state.initialized = true;
    if (cfg->use_journal && !ev_state.journal)
        log_warn("no journal at %s; events go to stderr", EVENTS_JOURNAL_SOCKET);
    return 0;
}

int events_init(const struct events_config *cfg)
{
    struct events_config def = {.use_journal = true};
    int r;

    pthread_mutex_lock(&events_lock);
    r = events_init_locked(cfg ? cfg : &def);
    if (r < 0)
        events_shutdown_locked();
    pthread_mutex_unlock(&events_lock);
    return r;
}

void events_emit(const struct event *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&events_lock);
    if (!ev_state.initialized) {
        /* Emitting before events_init: journal (or stderr), no file. */
        struct events_config def = {.use_journal = true};
        if (events_init_locked(&def) < 0) {
            events_shutdown_locked();
            pthread_mutex_unlock(&events_lock);
            return;
        }
    }
    if (ev->action != EVENT_ACTION_DENIED || rl_admit(ev, events_now_ms()))
        sinks_write(ev);
    pthread_mutex_unlock(&events_lock);
}

void events_flush(uint64_t now_ms)
{
    pthread_mutex_lock(&events_lock);
    if (ev_state.initialized)
        rl_flush(now_ms ? now_ms : events_now_ms(), false);
    pthread_mutex_unlock(&events_lock);
}

void events_shutdown(void)
{
    pthread_mutex_lock(&events_lock);
    events_shutdown_locked();
    pthread_mutex_unlock(&events_lock);
}
