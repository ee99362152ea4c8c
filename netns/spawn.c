/*
 * Running commands inside a sandbox, and starting a private daemon.
 *
 * The command runs in the sandbox's network namespace and a private mount
 * namespace (for the sandbox's resolv.conf), as an unprivileged user, with an
 * empty capability bounding set, no capabilities and no_new_privs: nothing
 * inside can undo the confinement.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "tool.h"

int tool_resolve_user(const struct tool_exec_opts *o, uid_t *uid, gid_t *gid, char *name,
                      size_t namelen, char *home, size_t homelen)
{
    const char *want = o->user;
    struct passwd *pw;
    if (!want) {
        const char *sudo_user = getenv("SUDO_USER");
        want = sudo_user && *sudo_user && strcmp(sudo_user, "root") != 0 ? sudo_user : "nobody";
    }
    errno = 0;
    pw = getpwnam(want);
    if (!pw) {
        long v;
        if (parse_long(want, 0, INT32_MAX, &v) == 0)
            pw = getpwuid((uid_t)v);
    }
    if (!pw) {
        log_error("unknown user '%s'", want);
        return -ENOENT;
    }
    if (pw->pw_uid == 0 && !o->allow_root) {
        log_error("refusing to run the command as root; pass --user root --allow-root if you "
                  "really mean it");
        return -EPERM;
    }
    if (pw->pw_uid == 0)
        log_warn("running the command as root: its network is confined, but a root process "
                 "without capabilities can still write root-owned files on the host");
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    str_copy(name, pw->pw_name, namelen);
    str_copy(home, pw->pw_dir, homelen);
    return 0;
}

static int drop_capabilities(void)
{
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return 0;
}

static int clear_capability_sets(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

/* In the child: never returns. Reports a failure's errno and step through
 * errfd (CLOEXEC: a successful exec closes it with nothing written). */
static void child_exec(const struct sandbox_record *rec, const struct tool_exec_opts *o,
                       const sigset_t *mask, int errfd, uid_t uid, gid_t gid, const char *uname,
                       const char *home)
{
    char path[PATH_MAX];
    int step = 0, err = 0;

#define CHILD_FAIL(s)                                                                              \
    do {                                                                                           \
        step = (s);                                                                                \
        err = errno;                                                                               \
        goto fail;                                                                                 \
    } while (0)

    int nsfd = netns_open(rec->netns);
    if (nsfd < 0) {
        errno = -nsfd;
        CHILD_FAIL(1);
    }
    if (netns_enter(nsfd) < 0)
        CHILD_FAIL(1);
    close(nsfd);
    if (unshare(CLONE_NEWNS) < 0)
        CHILD_FAIL(2);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        CHILD_FAIL(2);
    snprintf(path, sizeof(path), "/etc/netns/%s/resolv.conf", rec->netns);
    /* Best effort: an unusual /etc/resolv.conf (dangling symlink) keeps the
     * host's file, and DNS is confined by the rules either way. */
    mount(path, "/etc/resolv.conf", NULL, MS_BIND, NULL);
    /* /sys reflects the namespace it was mounted in; remount it for this one. */
    if (umount2("/sys", MNT_DETACH) == 0)
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);

    if (drop_capabilities() < 0)
        CHILD_FAIL(3);
    if (setgroups(0, NULL) < 0 || (uid != 0 && initgroups(uname, gid) < 0))
        CHILD_FAIL(4);
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        CHILD_FAIL(4);
    if (clear_capability_sets() < 0)
        CHILD_FAIL(3);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        CHILD_FAIL(5);
    /* After the credential change (which clears it): die with `portcullis run`. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

    setenv("PORTCULLIS_SANDBOX", rec->name, 1);
    if (getenv("SUDO_USER") || o->user) {
        setenv("USER", uname, 1);
        setenv("LOGNAME", uname, 1);
        setenv("HOME", home, 1);
    }
    sigprocmask(SIG_SETMASK, mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(o->argv[0], o->argv);
    step = 6;
    err = errno;
fail:;
    int msg[2] = {step, err};
    if (write(errfd, msg, sizeof(msg)) < 0) {
        /* parent gone */
    }
    _exit(127);
#undef CHILD_FAIL
}

pid_t tool_spawn(const struct sandbox_record *rec, const struct tool_exec_opts *o,
                 const void *orig_sigmask)
{
    static const char *const steps[] = {
        "?",
        "entering the sandbox namespace",
        "setting up the mount namespace",
        "dropping capabilities",
        "switching user",
        "setting no_new_privs",
        "executing",
    };
    uid_t uid;
    gid_t gid;
    char uname[256], home[PATH_MAX];
    int pipefd[2];

    int rc = tool_resolve_user(o, &uid, &gid, uname, sizeof(uname), home, sizeof(home));
    if (rc < 0)
        return rc;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return rc;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(rec, o, orig_sigmask, pipefd[1], uid, gid, uname, home);
    }
    close(pipefd[1]);
    int msg[2];
    ssize_t n;
    do {
        n = read(pipefd[0], msg, sizeof(msg));
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(msg)) {
        int step = msg[0] >= 0 && msg[0] < (int)ARRAY_SIZE(steps) ? msg[0] : 0;
        if (step == 6)
            log_error("cannot run '%s': %s", o->argv[0], strerror(msg[1]));
        else
            log_error("sandbox %s: %s failed: %s", rec->name, steps[step], strerror(msg[1]));
        waitpid(pid, NULL, 0);
        return -(msg[1] ? msg[1] : EIO);
    }
    return pid;
}

/* ---- the daemon ---- */

bool tool_daemon_alive(pid_t *ret_pid)
{
    char path[PATH_MAX], buf[32];
    long v;
    snprintf(path, sizeof(path), "%s/daemon.lock", sandbox_state_dir());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool alive = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    if (alive && ret_pid) {
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        *ret_pid = parse_long(buf, 1, INT32_MAX, &v) == 0 ? (pid_t)v : 0;
    }
    close(fd);
    return alive;
}

void tool_notify_daemon(void)
{
    pid_t pid = 0;
    if (tool_daemon_alive(&pid) && pid > 0)
        kill(pid, SIGUSR1);
}

static int find_daemon_binary(char *buf, size_t len)
{
    const char *env = getenv("PORTCULLISD");
    if (env && *env) {
        str_copy(buf, env, len);
        return access(buf, X_OK) == 0 ? 0 : -errno;
    }
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/portcullisd", self);
            if (access(buf, X_OK) == 0)
                return 0;
        }
    }
    static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                       "/usr/bin"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        snprintf(buf, len, "%s/portcullisd", dirs[i]);
        if (access(buf, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

int tool_ensure_daemon(const char *upstream_ca)
{
    char bin[PATH_MAX], logpath[PATH_MAX], fdarg[16];
    int pipefd[2];

    if (tool_daemon_alive(NULL))
        return 0;
    if (find_daemon_binary(bin, sizeof(bin)) < 0) {
        log_error("no portcullisd is running and none was found next to portcullis or in "
                  "/usr/local/sbin, /usr/sbin (set PORTCULLISD=/path/to/portcullisd)");
        return -ENOENT;
    }
    snprintf(logpath, sizeof(logpath), "%s/portcullisd.log", sandbox_state_dir());
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -errno;
    }
    if (pid == 0) {
        /* Detach fully: the daemon must outlive this run and its terminal. */
        setsid();
        if (fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR);
        int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(null, 0);
        dup2(null, 1);
        dup2(logfd >= 0 ? logfd : null, 2);
        /* The ready pipe must survive exec: fd 3, without CLOEXEC. */
        dup2(pipefd[1], 3);
        snprintf(fdarg, sizeof(fdarg), "%d", 3);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        const char *argv[10];
        int a = 0;
        argv[a++] = bin;
        argv[a++] = "--private";
        argv[a++] = "--ready-fd";
        argv[a++] = fdarg;
        if (upstream_ca) {
            argv[a++] = "--upstream-ca";
            argv[a++] = upstream_ca;
        }
        argv[a] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    waitpid(pid, NULL, 0);
    struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
    char c = 0;
    int ready = poll(&p, 1, 10000) > 0 && read(pipefd[0], &c, 1) == 1 && c == '1';
    close(pipefd[0]);
    if (ready || tool_daemon_alive(NULL)) /* or a concurrent run's daemon won the lock */
        return 0;
    log_error("portcullisd did not start; see %s", logpath);
    return -EIO;
}

int tool_wait_ack(const char *name, int timeout_ms)
{
    char path[PATH_MAX], buf[256];
    sandbox_path(name, "ack", path, sizeof(path));
    tool_notify_daemon();
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof(buf) - 1);
            close(fd);
            buf[n > 0 ? n : 0] = '\0';
            return strstr(buf, "status=ok") ? 0 : -EINVAL;
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
        if (waited % 500 == 490)
            tool_notify_daemon();
    }
    return -ETIMEDOUT;
}
