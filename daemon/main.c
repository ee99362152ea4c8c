/*
 * portcullisd: the egress daemon.  See DESIGN.md and portcullisd(8).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "events.h"
#include "http_flow.h"
#include "tls.h"

#define PRIVATE_IDLE_EXIT_MS 3000
#define PRIVATE_START_GRACE_MS 15000
#define RESCAN_INTERVAL_MS 2000

struct daemon_config daemon_cfg = {
    .port = SANDBOX_DEFAULT_PROXY_PORT,
    .max_flows_per_sandbox = 16384,
    .connect_timeout_ms = RELAY_DEFAULT_CONNECT_TIMEOUT_MS,
    .idle_timeout_ms = RELAY_DEFAULT_IDLE_TIMEOUT_MS,
};
uv_loop_t *daemon_loop;
bool daemon_stopping;

static uv_signal_t sig_hup, sig_usr1, sig_term, sig_int;
static uv_timer_t tick_timer;
static uint64_t idle_since_ms;
static int lock_fd = -1;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: portcullisd [OPTIONS]\n"
            "\n"
            "The portcullis egress daemon: receives every flow REDIRECTed out of a sandbox,\n"
            "decides it against the sandbox's policy, relays what is allowed and writes\n"
            "every decision to the systemd journal.\n"
            "\n"
            "Options:\n"
            "  --port N               transparent listener port (default %u)\n"
            "  --state-dir DIR        sandbox registry (default %s, or $PORTCULLIS_STATE_DIR)\n"
            "  --events-jsonl PATH    also write events as JSON lines to PATH (rotated)\n"
            "  --no-journal           write events to stderr instead of the journal\n"
            "  --upstream-ca PEM      extra CA certificates trusted for upstream TLS\n"
            "  --ca-dir DIR           the interception CA (default %s, or $PORTCULLIS_CA_DIR)\n"
            "  --connect-timeout MS   upstream connect timeout (default 10000)\n"
            "  --idle-timeout S       reset a connection idle this long (default 3600)\n"
            "  --private              exit when no sandbox is left (started by `portcullis run`)\n"
            "  --no-splice            relay with read/write instead of splice(2)\n"
            "  --ready-fd FD          write one byte to FD once listening, then close it\n"
            "  -v, --verbose          debug diagnostics on stderr\n"
            "  -h, --help             this help\n"
            "\n"
            "Signals: SIGHUP reloads every sandbox's policy (an invalid one keeps the old),\n"
            "SIGUSR1 rescans the registry, SIGTERM/SIGINT stop.\n",
            SANDBOX_DEFAULT_PROXY_PORT, SANDBOX_DEFAULT_STATE_DIR, TLS_DEFAULT_CA_DIR);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "portcullisd: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#define LOCK_WAIT_MS 5000
#define LOCK_POLL_MS 50

/* One daemon per state directory: an open-file-description write lock held
 * for the daemon's life.  The file is root-only, so nobody else can hold it;
 * `portcullis` tests it with F_OFD_GETLK, which takes no lock and so cannot
 * race a starting daemon. */
static int take_lock(void)
{
    char path[PATH_MAX], pidbuf[32];
    snprintf(path, sizeof(path), "%s/daemon.lock", sandbox_state_dir());
    lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock_fd < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    fchmod(lock_fd, 0600);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    /* A holder without a port file is starting or, more likely, stopping
     * (a private daemon whose last sandbox just went): wait a little for
     * it instead of failing a start that comes right after. */
    char port_path[PATH_MAX];
    snprintf(port_path, sizeof(port_path), "%s/daemon.port", sandbox_state_dir());
    int r;
    for (int waited_ms = 0;; waited_ms += LOCK_POLL_MS) {
        r = fcntl(lock_fd, F_OFD_SETLK, &fl);
        if (r == 0 || (errno != EAGAIN && errno != EACCES) || access(port_path, F_OK) == 0 ||
            waited_ms >= LOCK_WAIT_MS)
            break;
        usleep(LOCK_POLL_MS * 1000);
    }
    if (r < 0) {
        char other[32] = "";
        ssize_t n = pread(lock_fd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        log_error("another portcullisd (pid %s) is already serving %s", other[0] ? other : "?",
                  sandbox_state_dir());
        return -1;
    }
    int n = snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int)getpid());
    if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, pidbuf, (size_t)n, 0) != n) {
        log_error("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Written once listening: the tool reads it for the REDIRECT port, and its
 * presence tells starters that the daemon is serving. */
static int write_port_file(void)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/daemon.port", sandbox_state_dir());
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f || fprintf(f, "%u\n", daemon_cfg.port) < 0 || fclose(f) != 0 || rename(tmp, path) < 0) {
        log_error("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void stop_loop(void)
{
    daemon_stopping = true;
    flow_shutdown();
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_usr1, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&tick_timer, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    switch (signum) {
    case SIGHUP:
        log_info("SIGHUP: reloading policies");
        registry_rescan();
        registry_reload_policies();
        break;
    case SIGUSR1:
        registry_rescan();
        break;
    default:
        log_info("stopping (signal %d)", signum);
        stop_loop();
        break;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    registry_rescan();
    registry_refresh_host_addrs();
    events_flush(uv_now(daemon_loop));
    if (!daemon_cfg.private_mode)
        return;
    uint64_t now = uv_now(daemon_loop);
    if (registry_count() > 0 || flow_count() > 0) {
        idle_since_ms = now;
        return;
    }
    if (now - idle_since_ms >= PRIVATE_IDLE_EXIT_MS) {
        log_info("private daemon: no sandbox left, exiting");
        stop_loop();
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 's'},
        {"events-jsonl", required_argument, NULL, 'j'},
        {"no-journal", no_argument, NULL, 'J'},
        {"upstream-ca", required_argument, NULL, 'c'},
        {"ca-dir", required_argument, NULL, 'C'},
        {"connect-timeout", required_argument, NULL, 'T'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"private", no_argument, NULL, 'P'},
        {"no-splice", no_argument, NULL, 'S'},
        {"no-ident", no_argument, NULL, 'N'},
        {"ready-fd", required_argument, NULL, 'r'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct events_config ecfg = {.use_journal = true};
    long ready_fd = -1, v;
    int c;

    log_set_program("portcullisd");
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_long(optarg, 1, 65535, &v) < 0)
                return usage_error("invalid --port '%s'", optarg);
            daemon_cfg.port = (uint16_t)v;
            break;
        case 's':
            if (optarg[0] != '/')
                return usage_error("--state-dir must be an absolute path, not '%s'", optarg);
            setenv("PORTCULLIS_STATE_DIR", optarg, 1);
            break;
        case 'C':
            if (optarg[0] != '/')
                return usage_error("--ca-dir must be an absolute path, not '%s'", optarg);
            setenv("PORTCULLIS_CA_DIR", optarg, 1);
            break;
        case 'j':
            ecfg.jsonl_path = optarg;
            break;
        case 'J':
            ecfg.use_journal = false;
            break;
        case 'c':
            if (access(optarg, R_OK) < 0) {
                log_error("--upstream-ca %s: %s", optarg, strerror(errno));
                return 1;
            }
            daemon_cfg.upstream_ca = optarg;
            break;
        case 'T':
            if (parse_long(optarg, 1, 600000, &v) < 0)
                return usage_error("invalid --connect-timeout '%s' (milliseconds)", optarg);
            daemon_cfg.connect_timeout_ms = (uint32_t)v;
            break;
        case 'I':
            if (parse_long(optarg, 1, 7 * 86400, &v) < 0)
                return usage_error("invalid --idle-timeout '%s' (seconds)", optarg);
            daemon_cfg.idle_timeout_ms = (uint32_t)v * 1000;
            break;
        case 'P':
            daemon_cfg.private_mode = true;
            break;
        case 'S':
            daemon_cfg.no_splice = true;
            break;
        case 'N':
            daemon_cfg.no_ident = true;
            break;
        case 'r':
            if (parse_long(optarg, 3, 1 << 20, &ready_fd) < 0)
                return usage_error("invalid --ready-fd '%s'", optarg);
            break;
        case 'v':
            log_set_verbose(true);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (geteuid() != 0) {
        log_error("must run as root (it reads connection tracking state and sandbox namespaces)");
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    umask(022);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/sandboxes", sandbox_state_dir());
    int rc = util_mkdir_p(dir, 0700);
    if (rc < 0) {
        log_error("cannot create %s: %s", dir, strerror(-rc));
        return 1;
    }
    if (take_lock() < 0)
        return 1;
    rc = events_init(&ecfg);
    if (rc < 0) {
        log_error("--events-jsonl %s: %s", ecfg.jsonl_path ? ecfg.jsonl_path : "-",
                  rc == -EPERM ? "not a regular file owned by root" : strerror(-rc));
        return 1;
    }

    daemon_loop = uv_default_loop();
    if (resolver_init() < 0 || registry_init() < 0)
        return 1;
    /* Without a CA only terminated TLS is refused; the rest works. */
    http_flow_tls_init();
    if (flow_listen() < 0 || write_port_file() < 0)
        return 1;

    uv_signal_init(daemon_loop, &sig_hup);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);
    uv_signal_init(daemon_loop, &sig_usr1);
    uv_signal_start(&sig_usr1, on_signal, SIGUSR1);
    uv_signal_init(daemon_loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(daemon_loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_timer_init(daemon_loop, &tick_timer);
    uv_timer_start(&tick_timer, on_tick, RESCAN_INTERVAL_MS / 2, RESCAN_INTERVAL_MS / 2);
    /* A private daemon started before its first sandbox is registered waits a while. */
    idle_since_ms = uv_now(daemon_loop) + PRIVATE_START_GRACE_MS - PRIVATE_IDLE_EXIT_MS;

    log_info("listening on port %u (IPv4 and IPv6), registry %s, %zu sandbox(es)", daemon_cfg.port,
             sandbox_state_dir(), registry_count());
    if (ready_fd >= 0) {
        if (write((int)ready_fd, "1", 1) < 0) {
            /* the starter went away; keep serving */
        }
        close((int)ready_fd);
    }

    uv_run(daemon_loop, UV_RUN_DEFAULT);

    resolver_shutdown();
    registry_shutdown();
    http_flow_tls_shutdown();
    events_shutdown();
    /* Let close callbacks of cancelled work run. */
    uv_run(daemon_loop, UV_RUN_NOWAIT);
    if (uv_loop_close(daemon_loop) != 0)
        log_debug("loop closed with handles still open");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/daemon.port", sandbox_state_dir());
    unlink(path);
    return 0;
}
