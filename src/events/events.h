/*
 * events: every decision of the daemon becomes one struct event, built once
 * and handed to the sinks (journal, stderr when there is no journal, JSONL
 * file).  Field names and formats are the contract of DESIGN.md ("Events").
 *
 * Also the reader behind `portcullis events` (journal API), so the field list
 * lives in one place.
 */
#ifndef PCL_EVENTS_H
#define PCL_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "util.h"

enum event_action {
    EVENT_ACTION_ALLOWED = 0,
    EVENT_ACTION_DENIED,
    EVENT_ACTION_AUDIT,
    EVENT_ACTION_MAX,
};

enum event_severity {
    EVENT_SEVERITY_INFO = 0,
    EVENT_SEVERITY_LOW,
    EVENT_SEVERITY_MEDIUM,
    EVENT_SEVERITY_HIGH,
    EVENT_SEVERITY_CRITICAL,
    EVENT_SEVERITY_MAX,
};

/* One decision.  Every pointer may be NULL (= field absent); the event does
 * not own them. */
struct event {
    const char *sandbox;
    const char *type; /* "NET:OPEN", "HTTP:GET", "FINDING:UNSOLICITED_UPGRADE" ... */
    enum event_action action;
    const char *reason; /* "no_matching_policy" ...; NULL when allowed without a reason */
    const char *policy; /* policy key; NULL = none ("-" in MESSAGE) */
    const char *proto;  /* "tcp", "udp" */
    const char *dst_host;
    struct net_addr dst_ip; /* family 0 = absent */
    uint16_t dst_port;      /* 0 = absent */
    const char *http_method;
    const char *http_path;
    pid_t pid;       /* 0 = absent */
    const char *exe; /* full path; MESSAGE shows its basename */
    enum event_severity severity;
    const char *detail; /* optional free text appended to MESSAGE, never secrets */
};

const char *event_action_name(enum event_action a);     /* "allowed", "denied", "audit" */
const char *event_severity_name(enum event_severity s); /* "info" ... "critical" */

/* syslog priority: 6 allowed, 5 audit, 4 denied, 3 severity >= high. */
int event_priority(const struct event *ev);

/* MESSAGE, e.g.
 * "NET:OPEN [MED] DENIED curl(4242) -> 198.18.0.10:8080 [policy:- reason:no_matching_policy]".
 * Returns the length that would have been written (snprintf semantics). */
int event_format_message(const struct event *ev, char *buf, size_t len);

/* The event as one OCSF JSON object (class 4001 Network Activity, or 4002 HTTP
 * Activity for HTTP:*), with the time in ms since the epoch.  Over a budget
 * (0: none), as far as needed: the detail is left out, the executable is
 * given by its file name, then the request path and the host are cut
 * (marked with U+2026), each down to a floor, so very long other strings
 * can still take it over.  snprintf semantics. */
int event_format_ocsf(const struct event *ev, uint64_t time_ms, size_t budget, char *buf,
                      size_t len);

/* The budget of the journal's OCSF_JSON: journald compresses every field of
 * 512 bytes or more ("OCSF_JSON=" included), at several times the cost of
 * storing the entry. */
#define EVENTS_OCSF_JOURNAL_MAX (511 - sizeof("OCSF_JSON=") + 1)

/* OCSF class uid for the event (4001 or 4002). */
int event_ocsf_class(const struct event *ev);

/* One JSON object (the `portcullis events --json` shape, with "time" as
 * RFC 3339 UTC) on one line, no trailing newline. snprintf semantics. */
int event_format_json(const struct event *ev, uint64_t time_us, char *buf, size_t len);

struct events_config {
    bool use_journal;         /* false: stderr only */
    const char *jsonl_path;   /* NULL: no JSONL sink */
    uint64_t jsonl_max_bytes; /* rotate when exceeded (0 = 64 MiB) */
    unsigned jsonl_keep;      /* rotated files kept (0 = 3) */
};

/* Set up the sinks. If use_journal and the journal socket is missing, falls
 * back to stderr and says so once. Returns 0 or -errno (JSONL open failed). */
int events_init(const struct events_config *cfg);

/* Write ev to every sink. Never blocks the caller for long, never fails
 * loudly: a sink error is reported once on stderr. */
void events_emit(const struct event *ev);

/* Write the summaries of rate-limited (suppressed) denied events whose
 * interval has ended, so they appear even when the flood stops.  Call it from
 * a 1 s timer; now_ms is CLOCK_MONOTONIC in ms (uv_now() of the loop is fine),
 * 0 = read the clock here. */
void events_flush(uint64_t now_ms);

/* Write what is still suppressed, close the sinks. events_init may follow. */
void events_shutdown(void);

/* ---- reading back (portcullis events) ---- */

struct events_query {
    const char *sandbox; /* NULL = all */
    bool denied_only;    /* action denied (audit is not denied) */
    bool follow;
    const char *since; /* "2026-01-01 10:00:00", "-10min", "today" ...; NULL = all */
    bool json;
};

/* Print matching events to out, table or JSON lines. Returns 0, or -errno with
 * a message already printed to stderr (e.g. bad --since). */
int events_read(const struct events_query *q, FILE *out);

/* Wait until every queued journal entry has been written (the journal
 * writer thread's queue is empty). */
void events_drain(void);

#endif
