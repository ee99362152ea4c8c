/*
 * events-int: helpers shared by the files of the events module (formatting,
 * sinks, reader).  Not part of the public interface.
 */
#ifndef PCL_EVENTS_INT_H
#define PCL_EVENTS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"

#define EVENTS_IDENTIFIER "portcullisd"
#define EVENTS_JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Caps on what one string may put into MESSAGE, a journal field or JSON: the
 * sandboxed process controls paths and hostnames. */
#define EVENTS_FIELD_MAX 1024
#define EVENTS_PATH_MAX 2048
#define EVENTS_MESSAGE_MAX 4096

/* A bounded string builder with snprintf semantics: pos counts every byte
 * that would have been written, buf holds what fits (NUL-terminated by
 * sbuf_finish). */
struct sbuf {
    char *buf;
    size_t size;
    size_t pos;
};

enum sbuf_mode {
    SBUF_CLEAN = 0,  /* plain text; control chars and bad UTF-8 become '?' */
    SBUF_JSON_CLEAN, /* JSON string body of cleaned text */
    SBUF_JSON_RAW,   /* JSON string body, escaping (\n, \u00XX, \ufffd) instead */
    SBUF_MODE_MAX,
};

void sbuf_init(struct sbuf *b, char *buf, size_t size);
void sbuf_putc(struct sbuf *b, char c);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_put_uint(struct sbuf *b, unsigned long long v);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append at most cap input bytes of s (n bytes, or up to NUL when n is
 * SIZE_MAX) transformed by mode.  Cuts happen at character boundaries. */
void sbuf_put_text(struct sbuf *b, const char *s, size_t n, size_t cap, enum sbuf_mode mode);
/* Append "s" as a quoted JSON string of cleaned text. */
void sbuf_put_json_str(struct sbuf *b, const char *s, size_t cap);
/* NUL-terminate (trimming a character cut in half at the end); returns the
 * full length, or -EOVERFLOW past INT_MAX. */
int sbuf_finish(struct sbuf *b);

/* Copy the cleaned, capped text of src into dst. Returns dst. */
char *events_clean_copy(char *dst, size_t size, const char *src, size_t cap);

/* "2026-11-29T08:00:00.123456Z" (digits = 6) or "...00.123Z" (digits = 3). */
const char *events_format_rfc3339(uint64_t time_us, int digits, char *buf, size_t len);

/* True when s[0..len) is exactly one valid JSON value (objects, arrays,
 * strings with valid UTF-8, numbers, literals), nesting at most 64 deep. */
bool events_json_valid(const char *s, size_t len);

/* Parse a --since value relative to now_us (CLOCK_REALTIME, local time zone).
 * Returns 0 and *ret_us, or -EINVAL. */
int events_parse_since(const char *s, uint64_t now_us, uint64_t *ret_us);

/* "curl(4242)", "curl", "-(4242)" or "-". */
void events_format_process(struct sbuf *b, const char *exe, long pid);

#endif
