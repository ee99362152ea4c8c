/*
 * portcullis: create sandboxes, run commands in them, read their events.
 * See DESIGN.md ("User-facing contract") and portcullis(1).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "net.h"
#include "policy.h"
#include "rules.h"
#include "tool.h"

#define ACK_TIMEOUT_MS 5000

static const char usage_text[] =
    "Usage:\n"
    "  portcullis run [--policy FILE] [--name NAME] [--user USER] [--allow-root] [--audit]\n"
    "                 [--upstream-ca PEM] -- CMD [ARG...]\n"
    "  portcullis create NAME --policy FILE [--audit] [--upstream-ca PEM]\n"
    "  portcullis exec NAME [--user USER] [--allow-root] -- CMD [ARG...]\n"
    "  portcullis delete NAME\n"
    "  portcullis list\n"
    "  portcullis policy check FILE\n"
    "  portcullis rules NAME [--policy FILE]\n"
    "  portcullis events [--sandbox NAME] [--denied] [--follow] [--since TIME] [--json]\n"
    "\n"
    "Confines the network egress of a command: it runs in its own network namespace,\n"
    "every TCP connection goes to portcullisd, which allows or denies it by the YAML\n"
    "policy and logs each decision to the systemd journal.\n"
    "\n"
    "  run      create a sandbox, run CMD in it, exit with CMD's status, remove the sandbox.\n"
    "           Without --policy everything is denied. CMD runs as USER (default: the\n"
    "           invoking user under sudo, else nobody) with no capabilities.\n"
    "  --audit  log what would be denied as `audit` and let it pass (except always-blocked\n"
    "           addresses).\n"
    "\n"
    "Exit status: CMD's status for run/exec; 0 success; 1 failure; 2 usage error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "portcullis: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see portcullis --help)\n");
    return 2;
}

static int need_root(void)
{
    if (geteuid() != 0) {
        log_error("must run as root (try sudo): it creates network namespaces and rules");
        return 1;
    }
    return 0;
}

/* Shared option parsing for run/create/exec. */
struct cmd_opts {
    const char *policy;
    const char *name;
    const char *user;
    const char *upstream_ca;
    bool allow_root;
    bool audit;
};

enum {
    OPT_POLICY = 256,
    OPT_NAME,
    OPT_USER,
    OPT_ALLOW_ROOT,
    OPT_AUDIT,
    OPT_UPSTREAM_CA,
    OPT_SANDBOX,
    OPT_DENIED,
    OPT_FOLLOW,
    OPT_SINCE,
    OPT_JSON,
};

/* Parses argv (argv[0] is the command name). Returns the index of the first
 * non-option (after "--"), or -1 after printing a usage error. allowed is a
 * string of the OPT_ letters accepted: p n u r a c. */
static int parse_cmd_opts(int argc, char **argv, const char *allowed, bool permute,
                          struct cmd_opts *o)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, OPT_POLICY},
        {"name", required_argument, NULL, OPT_NAME},
        {"user", required_argument, NULL, OPT_USER},
        {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
        {"audit", no_argument, NULL, OPT_AUDIT},
        {"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    static const char letters[] = "pnurac";
    int c;
    optind = 1;
    opterr = 0;
    /* "+": stop at the first non-option so CMD's own options stay CMD's;
     * commands without a CMD (create NAME --policy F) take options anywhere. */
    while ((c = getopt_long(argc, argv, permute ? ":h" : "+:h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (c == ':') {
            usage_error("%s: option '%s' needs a value", argv[0], argv[optind - 1]);
            return -1;
        }
        if (c == '?' || c < OPT_POLICY || c > OPT_UPSTREAM_CA) {
            usage_error("%s: unknown option '%s'", argv[0], argv[optind - 1]);
            return -1;
        }
        if (!strchr(allowed, letters[c - OPT_POLICY])) {
            usage_error("%s does not take '%s'", argv[0], argv[optind - 1]);
            return -1;
        }
        switch (c) {
        case OPT_POLICY:
            o->policy = optarg;
            break;
        case OPT_NAME:
            o->name = optarg;
            break;
        case OPT_USER:
            o->user = optarg;
            break;
        case OPT_ALLOW_ROOT:
            o->allow_root = true;
            break;
        case OPT_AUDIT:
            o->audit = true;
            break;
        case OPT_UPSTREAM_CA:
            o->upstream_ca = optarg;
            break;
        }
    }
    return optind;
}

static int check_upstream_ca(const char *path)
{
    if (path && access(path, R_OK) < 0) {
        log_error("--upstream-ca %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Register with the daemon; `what` names the command for messages. */
static int register_with_daemon(const struct sandbox_record *rec, const char *upstream_ca)
{
    if (tool_ensure_daemon(upstream_ca) < 0)
        return -1;
    int rc = tool_wait_ack(rec->name, ACK_TIMEOUT_MS);
    if (rc == -EINVAL) {
        log_error("portcullisd could not load the policy of sandbox %s (see its log)", rec->name);
        return -1;
    }
    if (rc < 0) {
        log_error("portcullisd did not register sandbox %s within %d s", rec->name,
                  ACK_TIMEOUT_MS / 1000);
        return -1;
    }
    return 0;
}

static int exit_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/* What `run` and `exec` hold blocked and handle themselves: the child's end
 * and the signals they pass on to it. */
static void supervised_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
}

/* Wait for the child, forwarding termination signals sent to us (not those a
 * terminal sent to the whole process group, which the child got itself), and
 * warning once if the daemon goes away. */
static int supervise(pid_t child, bool warn_daemon)
{
    sigset_t set;
    bool warned = false;
    supervised_signals(&set);
    for (;;) {
        int status;
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child)
            return exit_status(status);
        siginfo_t si;
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(&set, &si, &ts);
        if (sig > 0 && sig != SIGCHLD && si.si_code != SI_KERNEL)
            kill(child, sig);
        if (warn_daemon && !warned && !tool_daemon_alive(NULL)) {
            log_warn("portcullisd is no longer running: the sandbox stays closed (every new "
                     "connection fails) and the command keeps running");
            warned = true;
        }
    }
}

static void block_signals(sigset_t *old)
{
    sigset_t set;
    supervised_signals(&set);
    sigprocmask(SIG_BLOCK, &set, old);
}

/* A termination signal that arrived while we were setting up. */
static int pending_termination(void)
{
    sigset_t pend;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    sigpending(&pend);
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        if (sigismember(&pend, sigs[i]))
            return sigs[i];
    return 0;
}

/* Sandboxes of runs that died without cleaning up (SIGKILL, a crash): a new
 * run removes them, so they do not pile up or keep a private daemon alive. */
static void reap_one(void *ctx, const char *name)
{
    (void)ctx;
    struct sandbox_record r;
    if (sandbox_record_read(name, &r) == 0 && r.ephemeral && !sandbox_owner_alive(&r)) {
        log_info("removing sandbox %s, left behind by a run that ended (pid %d)", name,
                 (int)r.owner_pid);
        tool_delete(name, true);
    }
}

/* A sandbox in which something ran as root: root without capabilities can
 * still write root-owned files such as the policy it was created from, so
 * the daemon must stop re-reading that file on SIGHUP. */
static void mark_root_used(const char *name)
{
    char path[PATH_MAX];
    int fd = open(sandbox_path(name, "root-used", path, sizeof(path)),
                  O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd);
}

static bool user_is_root(const struct tool_exec_opts *eo)
{
    uid_t uid;
    gid_t gid;
    char uname[256], home[PATH_MAX];
    return tool_resolve_user(eo, &uid, &gid, uname, sizeof(uname), home, sizeof(home)) == 0 &&
           uid == 0;
}

static int cmd_run(int argc, char **argv)
{
    struct cmd_opts o = {0};
    struct sandbox_record rec;
    char name[SANDBOX_NAME_MAX + 1], tmp_policy[] = "/tmp/portcullis-deny-all-XXXXXX";
    bool tmp_used = false;
    sigset_t orig;

    int first = parse_cmd_opts(argc, argv, "pnurac", false, &o);
    if (first < 0)
        return 2;
    if (first >= argc)
        return usage_error("run: missing the command (portcullis run [OPTIONS] -- CMD [ARG...])");
    if (need_root() || check_upstream_ca(o.upstream_ca) < 0)
        return 1;
    if (!o.policy) {
        /* No policy: an empty one, i.e. deny everything. */
        int fd = mkstemp(tmp_policy);
        if (fd < 0 || write(fd, "version: 1\nnetwork_policies: {}\n", 32) != 32) {
            log_error("cannot write a temporary policy: %s", strerror(errno));
            return 1;
        }
        close(fd);
        o.policy = tmp_policy;
        tmp_used = true;
    }
    if (o.name)
        str_copy(name, o.name, sizeof(name));
    else
        snprintf(name, sizeof(name), "run-%d", (int)getpid());
    struct tool_exec_opts eo = {.user = o.user, .allow_root = o.allow_root, .argv = argv + first};
    uid_t uid;
    gid_t gid;
    char uname[256], home[PATH_MAX];
    if (tool_resolve_user(&eo, &uid, &gid, uname, sizeof(uname), home, sizeof(home)) < 0)
        goto fail_early;

    sandbox_list(reap_one, NULL);
    block_signals(&orig);
    struct tool_create_opts co = {
        .name = name,
        .policy_path = o.policy,
        .upstream_ca = o.upstream_ca,
        .audit = o.audit,
        .ephemeral = true,
    };
    if (tool_create(&co, &rec) < 0)
        goto fail_early;
    if (tmp_used) {
        unlink(tmp_policy);
        tmp_used = false;
    }
    int status = 1;
    if (register_with_daemon(&rec, o.upstream_ca) < 0)
        goto out;
    int sig = pending_termination();
    if (sig) {
        status = 128 + sig;
        goto out;
    }
    if (uid == 0)
        mark_root_used(rec.name);
    pid_t child = tool_spawn(&rec, &eo, &orig);
    if (child < 0) {
        status = child == -ENOENT || child == -EACCES ? 127 : 1;
        goto out;
    }
    status = supervise(child, true);
out:
    if (tool_delete(rec.name, true) < 0)
        log_error("sandbox %s was not removed completely; run `portcullis delete %s`", rec.name,
                  rec.name);
    return status;
fail_early:
    if (tmp_used)
        unlink(tmp_policy);
    return 1;
}

static int cmd_create(int argc, char **argv)
{
    struct cmd_opts o = {0};
    struct sandbox_record rec;
    int first = parse_cmd_opts(argc, argv, "pac", true, &o);
    if (first < 0)
        return 2;
    if (first >= argc)
        return usage_error("create: missing NAME");
    if (first + 1 < argc)
        return usage_error("create: unexpected argument '%s'", argv[first + 1]);
    if (!o.policy)
        return usage_error("create: --policy FILE is required");
    if (need_root() || check_upstream_ca(o.upstream_ca) < 0)
        return 1;
    struct tool_create_opts co = {
        .name = argv[first],
        .policy_path = o.policy,
        .upstream_ca = o.upstream_ca,
        .audit = o.audit,
        .ephemeral = false,
    };
    /* Ctrl-C must not cut the setup in half (the rules applied for one
     * family only, say); it undoes the whole sandbox instead.  The blocked
     * mask reaches the iptables children too. */
    sigset_t orig;
    block_signals(&orig);
    if (tool_create(&co, &rec) < 0)
        return 1;
    int sig = pending_termination();
    if (sig || register_with_daemon(&rec, o.upstream_ca) < 0) {
        tool_delete(rec.name, true);
        return sig ? 128 + sig : 1;
    }
    sigprocmask(SIG_SETMASK, &orig, NULL);
    char a4[NET_ADDR_STRLEN], a6[NET_ADDR_STRLEN];
    printf("sandbox %s created (%s, %s)%s\n", rec.name,
           net_addr_format(&rec.sandbox_v4, a4, sizeof(a4)),
           net_addr_format(&rec.sandbox_v6, a6, sizeof(a6)), rec.audit ? " in audit mode" : "");
    return 0;
}

static int cmd_exec(int argc, char **argv)
{
    struct cmd_opts o = {0};
    struct sandbox_record rec;
    sigset_t orig;
    /* exec NAME [opts] -- CMD: NAME comes first. */
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(usage_text, stdout);
            return 0;
        }
        return usage_error("exec: missing NAME (portcullis exec NAME [--user USER] -- CMD)");
    }
    const char *name = argv[1];
    int first = parse_cmd_opts(argc - 1, argv + 1, "ur", false, &o);
    if (first < 0)
        return 2;
    first += 1;
    if (first >= argc)
        return usage_error("exec: missing the command (portcullis exec NAME -- CMD [ARG...])");
    if (need_root())
        return 1;
    int rc = sandbox_record_read(name, &rec);
    if (rc < 0) {
        log_error("no sandbox named %s%s", name,
                  rc == -EINVAL ? " (its record is unreadable; delete it)" : "");
        return 1;
    }
    if (!rec.complete) {
        /* Its rules may be missing: what runs there could go anywhere. */
        log_error("sandbox %s is not set up (its creation is running, or was interrupted: "
                  "`portcullis delete %s`, then create it again)",
                  name, name);
        return 1;
    }
    if (tool_ensure_daemon(NULL) < 0 || tool_wait_ack(name, ACK_TIMEOUT_MS) < 0)
        log_warn("portcullisd has not acknowledged sandbox %s: its connections may be denied",
                 name);
    struct tool_exec_opts eo = {.user = o.user, .allow_root = o.allow_root, .argv = argv + first};
    if (user_is_root(&eo))
        mark_root_used(rec.name);
    block_signals(&orig);
    pid_t child = tool_spawn(&rec, &eo, &orig);
    if (child < 0)
        return child == -ENOENT || child == -EACCES ? 127 : 1;
    return supervise(child, true);
}

static int cmd_delete(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 2)
        return usage_error("delete: expected exactly one NAME");
    if (need_root())
        return 1;
    return tool_delete(argv[1], false) < 0 ? 1 : 0;
}

static void list_one(void *ctx, const char *name)
{
    int *count = ctx;
    struct sandbox_record r;
    char a4[NET_ADDR_STRLEN], a6[NET_ADDR_STRLEN], nspath[PATH_MAX];
    const char *state = "ready";
    (*count)++;
    if (sandbox_record_read(name, &r) < 0) {
        printf("%-20s %-26s %-15s %-28s %s\n", name, "stale (no valid record)", "-", "-", "-");
        return;
    }
    snprintf(nspath, sizeof(nspath), NETNS_RUN_DIR "/%s", r.netns);
    if (!r.complete)
        state = "incomplete (setup)";
    else if (access(nspath, F_OK) < 0)
        state = "stale (namespace gone)";
    else if (!link_exists(r.host_ifname))
        state = "stale (link gone)";
    else if (r.ephemeral && !sandbox_owner_alive(&r))
        state = "stale (its run ended)";
    printf("%-20s %-26s %-15s %-28s %s%s\n", r.name, state,
           net_addr_format(&r.sandbox_v4, a4, sizeof(a4)),
           net_addr_format(&r.sandbox_v6, a6, sizeof(a6)), r.ephemeral ? "run" : "persistent",
           r.audit ? ",audit" : "");
}

static int cmd_list(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error("list: unexpected argument '%s'", argv[1]);
    int count = 0;
    printf("%-20s %-26s %-15s %-28s %s\n", "NAME", "STATE", "IPV4", "IPV6", "KIND");
    int rc = sandbox_list(list_one, &count);
    if (rc < 0) {
        log_error("reading the registry: %s", strerror(-rc));
        return 1;
    }
    if (!tool_daemon_alive(NULL) && count > 0)
        fprintf(stderr, "portcullis: note: no portcullisd is running; these sandboxes are closed "
                        "(every connection fails)\n");
    return 0;
}

static int cmd_policy(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "check") != 0)
        return usage_error("policy: expected 'policy check FILE'");
    if (argc != 3)
        return usage_error("policy check: expected exactly one FILE");
    struct policy *p = NULL;
    struct policy_error err;
    char buf[512];
    if (policy_load_file(argv[2], &p, &err) < 0) {
        fprintf(stderr, "%s\n", policy_error_format(&err, buf, sizeof(buf)));
        return 1;
    }
    policy_free(p);
    printf("%s: ok\n", argv[2]);
    return 0;
}

static int print_rules(const struct sandbox_record *r)
{
    static const int families[2] = {AF_INET, AF_INET6};
    struct rules_sandbox rs;
    tool_rules_of(r, &rs);
    char buf[16384];
    for (int i = 0; i < 2; i++) {
        int n = rules_generate(&rs, families[i], buf, sizeof(buf));
        if (n < 0 || (size_t)n >= sizeof(buf)) {
            log_error("cannot generate the rules of sandbox %s", r->name);
            return 1;
        }
        printf("# %s (applied with %s --noflush)\n%s", families[i] == AF_INET ? "IPv4" : "IPv6",
               families[i] == AF_INET ? "iptables-restore" : "ip6tables-restore", buf);
    }
    return 0;
}

static int cmd_rules(int argc, char **argv)
{
    struct cmd_opts o = {0};
    struct sandbox_record r;
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(usage_text, stdout);
            return 0;
        }
        return usage_error("rules: missing NAME");
    }
    const char *name = argv[1];
    int first = parse_cmd_opts(argc - 1, argv + 1, "p", true, &o);
    if (first < 0)
        return 2;
    if (first + 1 < argc)
        return usage_error("rules: unexpected argument '%s'", argv[first + 1]);
    if (sandbox_record_read(name, &r) == 0)
        return print_rules(&r);
    if (!o.policy) {
        log_error("no sandbox named %s (give --policy FILE for a dry run)", name);
        return 1;
    }
    /* Dry run: what `create NAME --policy FILE` would apply now. */
    struct policy *p = NULL;
    struct policy_error err;
    char buf[512];
    if (policy_load_file(o.policy, &p, &err) < 0) {
        fprintf(stderr, "%s\n", policy_error_format(&err, buf, sizeof(buf)));
        return 1;
    }
    policy_free(p);
    struct sandbox_pools pools;
    unsigned index;
    if (!sandbox_name_valid(name)) {
        log_error("invalid sandbox name '%s'", name);
        return 1;
    }
    if (sandbox_pools_load(&pools, buf, sizeof(buf)) < 0) {
        log_error("%s", buf);
        return 1;
    }
    if (tool_next_index(&pools, &index) < 0) {
        log_error("no free sandbox address in the pools");
        return 1;
    }
    memset(&r, 0, sizeof(r));
    sandbox_record_assign(&r, name, index, &pools);
    r.proxy_port = SANDBOX_DEFAULT_PROXY_PORT;
    return print_rules(&r);
}

static int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        {"sandbox", required_argument, NULL, OPT_SANDBOX},
        {"denied", no_argument, NULL, OPT_DENIED},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"since", required_argument, NULL, OPT_SINCE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct events_query q = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hf", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SANDBOX:
            q.sandbox = optarg;
            break;
        case OPT_DENIED:
            q.denied_only = true;
            break;
        case 'f':
        case OPT_FOLLOW:
            q.follow = true;
            break;
        case OPT_SINCE:
            q.since = optarg;
            break;
        case OPT_JSON:
            q.json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            return usage_error("events: option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("events: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("events: unexpected argument '%s'", argv[optind]);
    int rc = events_read(&q, stdout);
    /* -EINVAL: a --since the reader could not parse (it said why): usage. */
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    log_set_program("portcullis");
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        return usage_error("missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("portcullis 0.1.0\n");
        return 0;
    }
    argc--;
    argv++;
    if (!strcmp(cmd, "run"))
        return cmd_run(argc, argv);
    if (!strcmp(cmd, "create"))
        return cmd_create(argc, argv);
    if (!strcmp(cmd, "exec"))
        return cmd_exec(argc, argv);
    if (!strcmp(cmd, "delete"))
        return cmd_delete(argc, argv);
    if (!strcmp(cmd, "list"))
        return cmd_list(argc, argv);
    if (!strcmp(cmd, "policy"))
        return cmd_policy(argc, argv);
    if (!strcmp(cmd, "rules"))
        return cmd_rules(argc, argv);
    if (!strcmp(cmd, "events"))
        return cmd_events(argc, argv);
    return usage_error("unknown command '%s'", cmd);
}
