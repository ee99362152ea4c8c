/*
 * relay: a protocol-blind bidirectional TCP relay on the libuv loop.
 *
 * The relay owns both sockets once started.  It drives them itself, through
 * one edge-triggered epoll set per loop that the loop watches with a single
 * uv_poll_t (so never a uv_tcp_t or uv_poll_t of the caller on the same fd).
 * Each direction starts on a read/write copy path (a short exchange costs no
 * pipe) and moves to splice(2) through a pipe of its own (zero copy) once it
 * has carried 64 KiB; the copy path alone is used when splice is disabled or
 * fails, with the same semantics.
 *
 * Semantics a user sees:
 *  - bounded buffering: at most cfg->buffer_size bytes in flight per
 *    direction (the copy path buffers at most 64 KiB of them, except right
 *    after a fallback from splice); reading from a side stops while its
 *    buffer is full and resumes when the other side drains it;
 *  - half-close: EOF from one side becomes shutdown(SHUT_WR) on the other
 *    after everything read before it was written; the other direction goes on;
 *  - a reset (or any error) on one side becomes a reset on the other;
 *  - upstream connect refused/unreachable/timed out becomes a reset to the client;
 *  - no traffic in either direction for idle_timeout_ms resets both sides.
 */
#ifndef PCL_RELAY_H
#define PCL_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* What a relay_config of 0 means. */
#define RELAY_DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define RELAY_DEFAULT_IDLE_TIMEOUT_MS 3600000u

struct relay_config {
    uint32_t connect_timeout_ms; /* 0 = RELAY_DEFAULT_CONNECT_TIMEOUT_MS */
    uint32_t idle_timeout_ms;    /* 0 = RELAY_DEFAULT_IDLE_TIMEOUT_MS */
    size_t buffer_size;          /* per direction; 0 = 256 KiB (the pipe size) */
    bool no_splice;              /* force the read/write copy path */
};

enum relay_end {
    RELAY_END_CLOSED = 0, /* both directions finished with EOF */
    RELAY_END_CONNECT_FAILED,
    RELAY_END_CONNECT_TIMEOUT,
    RELAY_END_RESET_BY_CLIENT,
    RELAY_END_RESET_BY_UPSTREAM,
    RELAY_END_IDLE_TIMEOUT,
    RELAY_END_ERROR,   /* local failure (out of fds, memory) */
    RELAY_END_ABORTED, /* relay_abort_all() */
    RELAY_END_MAX,
};

struct relay_stats {
    uint64_t bytes_to_upstream;
    uint64_t bytes_to_client;
    enum relay_end end;
    int error; /* -errno behind CONNECT_FAILED / ERROR, else 0 */
};

/* Called exactly once when the relay has closed both sockets. */
typedef void (*relay_done_fn)(void *data, const struct relay_stats *stats);

/* Called once when the upstream connect finished (status 0 or -errno), before
 * any byte moves; may be NULL. */
typedef void (*relay_connected_fn)(void *data, int status);

/*
 * Start relaying between client_fd (an accepted, connected TCP socket; made
 * non-blocking here) and a new connection to upstream.  On success (0) the
 * relay owns client_fd and calls done exactly once, later, from the loop.  On
 * failure (-errno, e.g. -ENOMEM, -EMFILE for the upstream socket, -EEXIST
 * when a handle of loop already watches client_fd) nothing was started and the
 * caller still owns client_fd.
 */
int relay_start(uv_loop_t *loop, const struct relay_config *cfg, int client_fd,
                const struct sockaddr *upstream, socklen_t upstream_len,
                relay_connected_fn connected, relay_done_fn done, void *data);

/*
 * Take over two connected sockets and relay between them from now on (after
 * someone else has spoken on them: an HTTP upgrade).  Nothing may be
 * buffered elsewhere for either direction, and no handle of loop may watch
 * either fd.  On success (0) the relay owns both fds and calls done exactly
 * once, later; on failure (-errno) nothing was started and the caller still
 * owns both.
 */
int relay_adopt(uv_loop_t *loop, const struct relay_config *cfg, int client_fd, int upstream_fd,
                relay_done_fn done, void *data);
/* Number of relays alive (for limits and tests). */
size_t relay_count(void);

/* Reset every relay on this loop (shutdown); each done callback runs with
 * RELAY_END_ABORTED. */
void relay_abort_all(void);

/* Close fd so that the peer sees a TCP reset (SO_LINGER 0). */
void relay_reset_fd(int fd);

const char *relay_end_name(enum relay_end e);

#endif
