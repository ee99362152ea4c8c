/*
 * The inspector: two half-connection state machines (request side, response
 * side) joined by the queue of allowed requests awaiting their response.
 *
 * Each side is between messages (ST_HEAD with an empty scan), inside a head
 * (ST_HEAD, scan.len bytes held at the front of the caller's buffer), or
 * inside a body (ST_BODY, every byte cleared as soon as it is framed).  A head
 * is cleared only in the call that completes it and only if it is valid and
 * (request side) allowed, so the held bytes are always exactly one partial
 * head and the caller's buffer never needs more than max_head_bytes for them.
 *
 * Why the request side sometimes stops (blocked):
 *  - after a request that asked to upgrade, the next client byte is either the
 *    first byte of another request (the upgrade was refused) or the first
 *    byte of the new protocol (a 101 came): only the response tells which;
 *  - cfg->max_pipeline bounds the queue (and so the memory per connection).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inspect-int.h"

enum side_state {
    ST_HEAD = 0,
    ST_BODY,
};

struct side {
    enum side_state state;
    struct head_scan scan;
    struct body_framer body;
    size_t held;
    bool terminal;
    enum http_outcome outcome; /* when terminal */
    const char *reason;
};

struct pending {
    bool head;    /* HEAD request: the response has no body */
    bool upgrade; /* asked to upgrade: a 101 is welcome */
};

struct arena {
    char *buf;
    size_t size;
    size_t used;
};

struct http_inspector {
    struct http_inspector_config cfg;
    struct head_limits lim;
    struct side req;
    struct side resp;
    struct pending *queue; /* ring of cfg.max_pipeline */
    size_t q_first;
    size_t q_count;
    bool wait_upgrade; /* the last queued request asked to upgrade */
    bool req_blocked;  /* the request side told its caller it is blocked */
    uint64_t n_requests;
    struct raw_field *fields;    /* lim.max_headers */
    struct http_header *headers; /* lim.max_headers */
    struct arena arena;          /* NUL-terminated copies for decide() */
};

static size_t pick(size_t v, size_t def, size_t max)
{
    if (v == 0)
        return def;
    return v > max ? max : v;
}

int http_inspector_new(const struct http_inspector_config *cfg, struct http_inspector **ret)
{
    if (!cfg || !cfg->decide || !ret)
        return -EINVAL;
    struct http_inspector *in = calloc(1, sizeof(*in));
    if (!in)
        return -ENOMEM;
    in->cfg = *cfg;
    in->lim.max_head_bytes = pick(cfg->max_head_bytes, HTTP_DEFAULT_MAX_HEAD_BYTES, 1 << 20);
    in->lim.max_start_line =
        pick(cfg->max_start_line, HTTP_DEFAULT_MAX_START_LINE, in->lim.max_head_bytes);
    in->lim.max_headers = pick(cfg->max_headers, HTTP_DEFAULT_MAX_HEADERS, 10000);
    in->cfg.max_pipeline = pick(cfg->max_pipeline, HTTP_DEFAULT_MAX_PIPELINE, 4096);
    in->cfg.max_head_bytes = in->lim.max_head_bytes;
    in->cfg.max_start_line = in->lim.max_start_line;
    in->cfg.max_headers = in->lim.max_headers;

    /* Every string handed to decide() is a copy of a piece of one head plus a
     * NUL; target, path and query may each copy the start line once. */
    in->arena.size =
        3 * in->lim.max_start_line + 2 * in->lim.max_head_bytes + 4 * in->lim.max_headers + 256;
    in->queue = calloc(in->cfg.max_pipeline, sizeof(*in->queue));
    in->fields = calloc(in->lim.max_headers, sizeof(*in->fields));
    in->headers = calloc(in->lim.max_headers, sizeof(*in->headers));
    in->arena.buf = malloc(in->arena.size);
    if (!in->queue || !in->fields || !in->headers || !in->arena.buf) {
        http_inspector_free(in);
        return -ENOMEM;
    }
    *ret = in;
    return 0;
}

struct http_inspector *http_inspector_free(struct http_inspector *in)
{
    if (!in)
        return NULL;
    free(in->queue);
    free(in->fields);
    free(in->headers);
    free(in->arena.buf);
    free(in);
    return NULL;
}

const char *http_outcome_name(enum http_outcome o)
{
    static const char *const names[HTTP_OUTCOME_MAX] = {
        [HTTP_OUTCOME_NEED_MORE] = "need_more",
        [HTTP_OUTCOME_DENY] = "deny",
        [HTTP_OUTCOME_BAD_REQUEST] = "bad_request",
        [HTTP_OUTCOME_UPGRADED] = "upgraded",
        [HTTP_OUTCOME_UNSOLICITED_UPGRADE] = "unsolicited_upgrade",
        [HTTP_OUTCOME_BAD_RESPONSE] = "bad_response",
        [HTTP_OUTCOME_CLOSED] = "closed",
    };
    if ((unsigned)o >= HTTP_OUTCOME_MAX)
        return "unknown";
    return names[o];
}

bool http_inspector_idle(const struct http_inspector *in)
{
    return in && !in->resp.terminal && in->q_count == 0 && in->resp.state == ST_HEAD &&
           in->resp.scan.len == 0;
}

size_t http_inspector_pending(const struct http_inspector *in)
{
    return in ? in->q_count : 0;
}

/* ---- helpers ------------------------------------------------------------ */

static void side_end(struct side *sd, enum http_outcome o, const char *reason)
{
    sd->terminal = true;
    sd->outcome = o;
    sd->reason = reason;
    sd->held = 0;
}

static void step_terminal(const struct side *sd, struct http_step *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->outcome = sd->outcome;
    ret->reason = sd->reason;
}

static void scan_reset(struct side *sd)
{
    memset(&sd->scan, 0, sizeof(sd->scan));
    sd->state = ST_HEAD;
}

static bool req_must_wait(const struct http_inspector *in)
{
    return in->wait_upgrade || in->q_count >= in->cfg.max_pipeline;
}

static const char *arena_put(struct arena *a, const uint8_t *p, size_t n)
{
    if (n + 1 > a->size - a->used)
        return NULL;
    char *s = a->buf + a->used;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    a->used += n + 1;
    return s;
}

/* Copy what decide() sees; false only if the arena was sized wrong. */
static bool build_head(struct http_inspector *in, const struct head_lines *hl,
                       const struct req_info *ri, struct http_request_head *h)
{
    struct arena *a = &in->arena;
    bool ok = true;
    a->used = 0;
    memset(h, 0, sizeof(*h));

    h->index = in->n_requests;
    ok &= (h->method = arena_put(a, ri->method.p, ri->method.len)) != NULL;
    ok &= (h->target = arena_put(a, ri->target.p, ri->target.len)) != NULL;
    h->target_len = ri->target.len;
    if (ri->path.len == 0) {
        ok &= (h->path = arena_put(a, (const uint8_t *)"/", 1)) != NULL;
        h->path_len = 1;
    } else {
        ok &= (h->path = arena_put(a, ri->path.p, ri->path.len)) != NULL;
        h->path_len = ri->path.len;
    }
    if (ri->has_query) {
        ok &= (h->query = arena_put(a, ri->query.p, ri->query.len)) != NULL;
        h->query_len = ri->query.len;
    }
    if (ri->has_host) {
        ok &= (h->host = arena_put(a, ri->host.p, ri->host.len)) != NULL;
        h->host_len = ri->host.len;
    }
    h->version_minor = ri->minor;
    h->upgrade = ri->upgrade;
    h->body = ri->body;
    h->content_length = ri->body == HTTP_BODY_LENGTH ? ri->content_length : 0;

    for (size_t i = 0; i < hl->n_fields && ok; i++) {
        const struct raw_field *f = &hl->fields[i];
        struct http_header *o = &in->headers[i];
        ok &= (o->name = arena_put(a, f->name, f->name_len)) != NULL;
        ok &= (o->value = arena_put(a, f->value, f->value_len)) != NULL;
        o->name_len = f->name_len;
        o->value_len = f->value_len;
    }
    h->headers = in->headers;
    h->n_headers = hl->n_fields;

    if (ri->has_upgrade_field && ok) {
        /* joined with ", " into the arena, in field order */
        char *s = a->buf + a->used;
        size_t n = 0;
        for (size_t i = 0; i < hl->n_fields; i++) {
            const struct raw_field *f = &hl->fields[i];
            if (f->name_len != 7 || strncasecmp((const char *)f->name, "Upgrade", 7) != 0 ||
                f->value_len == 0)
                continue;
            size_t need = (n ? 2 : 0) + f->value_len + 1;
            if (need > a->size - a->used - n)
                return false;
            if (n) {
                memcpy(s + n, ", ", 2);
                n += 2;
            }
            memcpy(s + n, f->value, f->value_len);
            n += f->value_len;
        }
        s[n] = '\0';
        a->used += n + 1;
        h->upgrade_protocols = s;
    }
    return ok;
}

/* A complete request head: validate, decide, queue.  Returns NEED_MORE when
 * allowed (the caller clears it), else the terminal outcome. */
static enum http_outcome request_head(struct http_inspector *in, const uint8_t *head,
                                      const char **ret_reason)
{
    struct head_lines hl;
    struct req_info ri;
    struct http_request_head h;
    size_t len = in->req.scan.len;

    if (head_split(head, &in->req.scan, in->fields, in->lim.max_headers, &hl, ret_reason) < 0 ||
        head_check_request(&hl, &ri, ret_reason) < 0 ||
        head_cross_check_request(head, len, &hl, &ri, ret_reason) < 0)
        return HTTP_OUTCOME_BAD_REQUEST;
    if (!build_head(in, &hl, &ri, &h)) {
        *ret_reason = "header section too large";
        return HTTP_OUTCOME_BAD_REQUEST;
    }
    in->n_requests++;
    if (in->cfg.decide(in->cfg.ctx, &h) != HTTP_VERDICT_ALLOW)
        return HTTP_OUTCOME_DENY;

    struct pending *p = &in->queue[(in->q_first + in->q_count) % in->cfg.max_pipeline];
    p->head = ri.method.len == 4 && memcmp(ri.method.p, "HEAD", 4) == 0;
    p->upgrade = ri.upgrade;
    in->q_count++;
    in->wait_upgrade = ri.upgrade;

    scan_reset(&in->req);
    if (ri.body != HTTP_BODY_NONE) {
        body_init(&in->req.body, ri.body, ri.content_length, &in->lim);
        in->req.state = ST_BODY;
    }
    return HTTP_OUTCOME_NEED_MORE;
}

/* ---- client -> upstream -------------------------------------------------- */

int http_inspect_request_bytes(struct http_inspector *in, const uint8_t *buf, size_t len,
                               struct http_step *ret)
{
    if (!in || !ret || (!buf && len))
        return -EINVAL;
    struct side *sd = &in->req;
    if (sd->terminal) {
        step_terminal(sd, ret);
        return 0;
    }
    if (len < sd->held)
        return -EINVAL;
    memset(ret, 0, sizeof(*ret));
    in->req_blocked = false;

    size_t pos = sd->held; /* examined */
    size_t clear = 0;      /* cleared; in ST_HEAD also where the head starts */
    while (pos < len) {
        if (sd->state == ST_BODY) {
            bool done;
            const char *why;
            size_t used = body_feed(&sd->body, buf + pos, len - pos, &done, &why);
            pos += used;
            clear = pos;
            if (why) {
                side_end(sd, HTTP_OUTCOME_BAD_REQUEST, why);
                ret->upstream_dirty = true;
                goto fail;
            }
            if (done)
                scan_reset(sd);
            continue;
        }

        if (sd->scan.len == 0 && req_must_wait(in)) {
            ret->blocked = true;
            in->req_blocked = true;
            break;
        }
        const char *why = NULL;
        enum scan_result r = head_scan(&sd->scan, &in->lim, true, buf + clear, len - clear, &why);
        if (r == SCAN_MORE) {
            pos = len;
            break;
        }
        if (r == SCAN_ERROR) {
            side_end(sd, HTTP_OUTCOME_BAD_REQUEST, why);
            goto fail;
        }
        size_t head_len = sd->scan.len;
        enum http_outcome o = request_head(in, buf + clear, &why);
        if (o != HTTP_OUTCOME_NEED_MORE) {
            side_end(sd, o, why);
            goto fail;
        }
        clear += head_len;
        pos = clear;
    }

    ret->outcome = HTTP_OUTCOME_NEED_MORE;
    ret->forward = clear;
    ret->held = pos - clear;
    sd->held = ret->held;
    return 0;

fail:
    ret->outcome = sd->outcome;
    ret->reason = sd->reason;
    ret->forward = clear;
    return 0;
}

int http_inspect_request_eof(struct http_inspector *in, struct http_step *ret)
{
    if (!in || !ret)
        return -EINVAL;
    struct side *sd = &in->req;
    if (!sd->terminal) {
        const char *why = NULL;
        if (sd->state == ST_BODY)
            why = "client closed inside a request body";
        else if (sd->scan.len > 0)
            why = "client closed inside a request head";
        side_end(sd, HTTP_OUTCOME_CLOSED, why);
    }
    step_terminal(sd, ret);
    return 0;
}

/* ---- upstream -> client -------------------------------------------------- */

static void response_done(struct http_inspector *in, struct http_step *ret)
{
    in->q_first = (in->q_first + 1) % in->cfg.max_pipeline;
    in->q_count--;
    if (in->q_count == 0)
        in->wait_upgrade = false;
    if (in->req_blocked && !req_must_wait(in)) {
        in->req_blocked = false;
        ret->wake_request = true;
    }
}

static void end_both(struct http_inspector *in, enum http_outcome o, const char *reason)
{
    side_end(&in->resp, o, reason);
    if (!in->req.terminal)
        side_end(&in->req, o, reason);
}

int http_inspect_response_bytes(struct http_inspector *in, const uint8_t *buf, size_t len,
                                struct http_step *ret)
{
    if (!in || !ret || (!buf && len))
        return -EINVAL;
    struct side *sd = &in->resp;
    if (sd->terminal) {
        step_terminal(sd, ret);
        return 0;
    }
    if (len < sd->held)
        return -EINVAL;
    memset(ret, 0, sizeof(*ret));

    size_t pos = sd->held, clear = 0;
    while (pos < len) {
        const char *why = NULL;
        if (sd->state == ST_BODY) {
            bool done;
            size_t used = body_feed(&sd->body, buf + pos, len - pos, &done, &why);
            pos += used;
            clear = pos;
            if (why) {
                end_both(in, HTTP_OUTCOME_BAD_RESPONSE, why);
                goto fail;
            }
            if (done) {
                scan_reset(sd);
                response_done(in, ret);
            }
            continue;
        }

        if (sd->scan.len == 0 && in->q_count == 0) {
            end_both(in, HTTP_OUTCOME_BAD_RESPONSE,
                     "bytes from the upstream with no request outstanding");
            goto fail;
        }
        enum scan_result r = head_scan(&sd->scan, &in->lim, false, buf + clear, len - clear, &why);
        if (r == SCAN_MORE) {
            pos = len;
            break;
        }
        if (r == SCAN_ERROR) {
            end_both(in, HTTP_OUTCOME_BAD_RESPONSE, why);
            goto fail;
        }

        const struct pending *front = &in->queue[in->q_first];
        const uint8_t *head = buf + clear;
        size_t head_len = sd->scan.len;
        struct head_lines hl;
        struct resp_info ri;
        if (head_split(head, &sd->scan, in->fields, in->lim.max_headers, &hl, &why) < 0 ||
            head_check_response(&hl, front->head, &ri, &why) < 0 ||
            head_cross_check_response(head, head_len, &hl, &ri, &why) < 0) {
            end_both(in, HTTP_OUTCOME_BAD_RESPONSE, why);
            goto fail;
        }

        if (ri.status == 101) {
            if (!front->upgrade) {
                end_both(in, HTTP_OUTCOME_UNSOLICITED_UPGRADE,
                         "101 Switching Protocols for a request that did not ask to upgrade");
                goto fail;
            }
            response_done(in, ret);
            ret->wake_request = false; /* nothing more to inspect */
            end_both(in, HTTP_OUTCOME_UPGRADED, NULL);
            ret->outcome = HTTP_OUTCOME_UPGRADED;
            ret->forward = clear + head_len;
            ret->overflow = len - ret->forward;
            return 0;
        }

        clear += head_len;
        pos = clear;
        scan_reset(sd);
        if (ri.status < 200)
            continue; /* interim: the final response is still to come */
        if (ri.body == HTTP_BODY_NONE) {
            response_done(in, ret);
        } else {
            body_init(&sd->body, ri.body, ri.content_length, &in->lim);
            sd->state = ST_BODY;
        }
    }

    ret->outcome = HTTP_OUTCOME_NEED_MORE;
    ret->forward = clear;
    ret->held = pos - clear;
    sd->held = ret->held;
    return 0;

fail:
    ret->outcome = sd->outcome;
    ret->reason = sd->reason;
    ret->forward = clear;
    ret->wake_request = false;
    return 0;
}

int http_inspect_response_eof(struct http_inspector *in, struct http_step *ret)
{
    if (!in || !ret)
        return -EINVAL;
    struct side *sd = &in->resp;
    if (!sd->terminal) {
        if (sd->state == ST_BODY && sd->body.kind == HTTP_BODY_EOF) {
            struct http_step ignored;
            memset(&ignored, 0, sizeof(ignored));
            response_done(in, &ignored);
            side_end(sd, HTTP_OUTCOME_CLOSED, NULL);
        } else if (sd->state == ST_BODY || sd->scan.len > 0) {
            side_end(sd, HTTP_OUTCOME_BAD_RESPONSE, "upstream closed inside a response");
        } else {
            side_end(sd, HTTP_OUTCOME_CLOSED,
                     in->q_count ? "upstream closed with requests outstanding" : NULL);
        }
    }
    step_terminal(sd, ret);
    return 0;
}
