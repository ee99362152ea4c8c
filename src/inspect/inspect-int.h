/*
 * inspect internals shared by inspect.c, head.c and body.c (and the unit
 * tests).  Not part of the module's interface.
 */
#ifndef PCL_INSPECT_INT_H
#define PCL_INSPECT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inspect.h"

/* Longest chunk-size line (size, extensions, CRLF) we accept. */
#define CHUNK_LINE_MAX 4096

struct head_limits {
    size_t max_start_line;
    size_t max_head_bytes;
    size_t max_headers;
};

/* ---- head.c: finding and validating a head ---------------------------- */

enum scan_result {
    SCAN_MORE = 0,
    SCAN_DONE,
    SCAN_ERROR,
};

/* Incremental scan of one head: strict CRLF, no obs-fold, the limits.  Keeps
 * offsets relative to the head's first byte only, so the bytes may move. */
struct head_scan {
    size_t len;        /* bytes examined (the head's length once DONE) */
    size_t line_start; /* offset of the current line */
    size_t start_line; /* offset of the start line (leading empty lines skipped) */
    size_t lines;      /* complete non-empty lines so far */
    bool cr;           /* the last byte examined was CR */
};

/* head[0, avail) is the head so far (avail >= s->len); examines the new bytes. */
enum scan_result head_scan(struct head_scan *s, const struct head_limits *lim, bool request,
                           const uint8_t *head, size_t avail, const char **ret_reason);

struct raw_field {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value; /* OWS trimmed */
    size_t value_len;
};

/* A complete head cut into its start line and field lines. */
struct head_lines {
    const uint8_t *start; /* start line without CRLF */
    size_t start_len;
    struct raw_field *fields;
    size_t n_fields;
};

/* head[0, s->len) is a head the scanner accepted; fields has room for
 * lim->max_headers.  Validates field-name and field-value syntax. */
int head_split(const uint8_t *head, const struct head_scan *s, struct raw_field *fields,
               size_t max_fields, struct head_lines *ret, const char **ret_reason);

struct span {
    const uint8_t *p;
    size_t len;
};

struct req_info {
    struct span method, target, path, query, host;
    bool has_query;
    bool has_host;
    bool absolute_form;
    unsigned minor;
    bool upgrade; /* Upgrade + Connection: upgrade, HTTP/1.1 */
    bool has_upgrade_field;
    enum http_body body;
    uint64_t content_length;
    bool has_content_length;
};

struct resp_info {
    unsigned status;
    unsigned minor;
    enum http_body body;
    uint64_t content_length;
};

int head_check_request(const struct head_lines *hl, struct req_info *ret, const char **ret_reason);
int head_check_response(const struct head_lines *hl, bool head_request, struct resp_info *ret,
                        const char **ret_reason);

/* Second opinion: run http-parser over the complete head and compare. */
int head_cross_check_request(const uint8_t *head, size_t len, const struct head_lines *hl,
                             const struct req_info *ri, const char **ret_reason);
int head_cross_check_response(const uint8_t *head, size_t len, const struct head_lines *hl,
                              const struct resp_info *ri, const char **ret_reason);

bool http_tchar(uint8_t c);

/* Comma-separated list helpers (RFC 9110 5.6.1): case-insensitive tokens. */
bool list_next(const uint8_t **pp, const uint8_t *end, struct span *ret);
bool list_has_token(const uint8_t *v, size_t len, const char *token);

/* ---- body.c: message body framing ------------------------------------- */

struct body_framer {
    enum http_body kind;
    uint64_t remaining; /* LENGTH: bytes left; CHUNKED: bytes left of the chunk's data */
    uint8_t state;      /* CHUNKED: enum chunk_state */
    uint8_t digits;
    size_t line_len;      /* bytes of the current chunk-size or trailer line */
    size_t trailer_bytes; /* the trailer section so far */
    size_t trailers;
    size_t max_trailer_bytes;
    size_t max_trailers;
};

void body_init(struct body_framer *b, enum http_body kind, uint64_t length,
               const struct head_limits *lim);

/* Consume p[0, len).  Returns the number of bytes that belong to the body and
 * are valid; *ret_done when the body ends right after them; on a framing error
 * *ret_reason is set and the return value counts the valid bytes before it. */
size_t body_feed(struct body_framer *b, const uint8_t *p, size_t len, bool *ret_done,
                 const char **ret_reason);

#endif
