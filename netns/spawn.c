/*
 * Running commands inside a sandbox, and starting a private daemon.
 *
 * The command runs in the sandbox's network namespace and a private mount
 * namespace (for the sandbox's resolv.conf and trust store), as an
 * unprivileged user, with an empty capability bounding set, no capabilities
 * and no_new_privs: nothing inside can undo the confinement.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "tls.h"
#include "tool.h"

#define CA_CERT_MAX (64 * 1024)

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
    static bool warned_root;
    if (pw->pw_uid == 0 && !warned_root) {
        warned_root = true;
        log_warn("running the command as root: its network is confined, but a root process "
                 "without capabilities can still write root-owned files on the host");
    }
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

/*
 * seccomp: refuse the ioctls that inject input into a terminal (TIOCSTI,
 * TIOCLINUX) so the command cannot type into the user's shell through the
 * terminal it inherits.  Everything else is allowed; the network is confined
 * by the namespace and the daemon, not here.
 */
#if defined(__x86_64__)
#define SECCOMP_NATIVE_ARCH AUDIT_ARCH_X86_64
#define SECCOMP_NATIVE_IOCTL 16
#define SECCOMP_X32_IOCTL (0x40000000 | 514)
#define SECCOMP_COMPAT_ARCH AUDIT_ARCH_I386
#define SECCOMP_COMPAT_IOCTL 54
#elif defined(__aarch64__)
#define SECCOMP_NATIVE_ARCH AUDIT_ARCH_AARCH64
#define SECCOMP_NATIVE_IOCTL 29
#define SECCOMP_X32_IOCTL 29
#define SECCOMP_COMPAT_ARCH AUDIT_ARCH_ARM
#define SECCOMP_COMPAT_IOCTL 54
#endif

static int install_seccomp(void)
{
#ifdef SECCOMP_NATIVE_ARCH
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        /* Jump offsets count the instructions skipped: native is +2 (the
         * load of nr below), compat +4 (its own load of nr). */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_NATIVE_ARCH, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_COMPAT_ARCH, 4, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* no other ABI on this kernel */
        /* native: */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_NATIVE_IOCTL, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_X32_IOCTL, 3, 2),
        /* compat: */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_COMPAT_IOCTL, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* ioctl: the request is the low 32 bits of args[1] (little endian) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = ARRAY_SIZE(filter), .filter = filter};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
#endif
    return 0;
}

/* A fresh tmpfs over path (if it exists): hides what the host keeps there. */
static int mask_dir(const char *path, const char *mode)
{
    struct stat st;
    char opts[64];
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    snprintf(opts, sizeof(opts), "mode=%s,size=16m", mode);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return -errno;
    return 0;
}

/* Create the directories of path (inside a fresh tmpfs) and an empty file. */
static void make_file_path(const char *path)
{
    char buf[PATH_MAX];
    str_copy(buf, path, sizeof(buf));
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    int fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

/* The sandbox's trust store, read from its state dir while that is visible. */
struct trust_store {
    char *cert, *bundle;
    size_t cert_len, bundle_len;
};

/* 0 with both files, or with neither when the sandbox has none (one made by
 * an older portcullis): then cert is NULL and nothing is installed. */
static int trust_store_read(const char *name, struct trust_store *t)
{
    char path[PATH_MAX];
    memset(t, 0, sizeof(*t));
    int rc = tool_read_file(sandbox_path(name, "ca.crt", path, sizeof(path)), CA_CERT_MAX, &t->cert,
                            &t->cert_len);
    if (rc == 0)
        rc = tool_read_file(sandbox_path(name, "ca-bundle.crt", path, sizeof(path)),
                            TOOL_TRUST_BUNDLE_MAX, &t->bundle, &t->bundle_len);
    if (rc < 0) {
        free(t->cert);
        memset(t, 0, sizeof(*t));
    }
    return rc == -ENOENT ? 0 : rc;
}

static void trust_store_free(struct trust_store *t)
{
    free(t->cert);
    free(t->bundle);
    memset(t, 0, sizeof(*t));
}

/*
 * Write the trust store to /run/portcullis (in the sandbox's fresh /run,
 * root-owned, world-readable), and put the bundle read-only over the system
 * bundle (roots_target: its real path, NULL when the host has none), so
 * clients that only know the default path trust the interception CA too.
 */
static int trust_store_install(const struct trust_store *t, const char *roots_target)
{
    if (mkdir(TOOL_SANDBOX_TRUST_DIR, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (chmod(TOOL_SANDBOX_TRUST_DIR, 0755) < 0)
        return -errno;
    int rc = tool_write_file(TOOL_SANDBOX_CA_CERT, t->cert, t->cert_len, 0644);
    if (rc == 0)
        rc = tool_write_file(TOOL_SANDBOX_CA_BUNDLE, t->bundle, t->bundle_len, 0644);
    if (rc < 0 || !roots_target)
        return rc;
    if (strncmp(roots_target, "/run/", 5) == 0)
        make_file_path(roots_target);
    if (mount(TOOL_SANDBOX_CA_BUNDLE, roots_target, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, roots_target, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    return 0;
}

/* The CA dir is masked in every sandbox; a sandbox made before the CA existed
 * would not mask it, and the CA made later would then show up in it.  So it
 * is made here (0700, like tls_ca_load_or_create makes it) if missing. */
static int ensure_ca_dir(const char *dir)
{
    char buf[PATH_MAX];
    struct stat st;
    if (stat(dir, &st) == 0 || strncmp(dir, "/run/", 5) == 0)
        return 0; /* under /run, it is masked with /run */
    str_copy(buf, dir, sizeof(buf));
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (!c)
            return 0;
    }
}

/*
 * The sandbox's filesystem view (we are root, in the new mount and PID
 * namespaces): its own /proc (only the sandbox's processes are visible, so
 * none of the host's can be signalled or traced), /sys of its network
 * namespace, and /run masked — the host's Unix sockets there (systemd,
 * D-Bus, docker, the user's session, resolvers) would let a command act
 * outside its network namespace, and the registry lives there.  The
 * interception CA's directory is masked too: its key must stay out of reach
 * even of a command run as root.  *ret_trust tells whether the sandbox's
 * trust store was installed in /run/portcullis.
 */
static int setup_mounts(const struct sandbox_record *rec, uid_t uid, bool *ret_trust,
                        const char **step)
{
    char ours[PATH_MAX], target[PATH_MAX], roots[PATH_MAX], path[PATH_MAX];
    struct trust_store trust;
    struct stat st;
    int rc;

    *ret_trust = false;
    *step = "setting up the mount namespace";
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return -errno;
    /* Where /etc/resolv.conf and the system CA bundle really are, and the
     * sandbox's trust store, before /run (and the registry) disappears. */
    if (!realpath("/etc/resolv.conf", target))
        str_copy(target, "/etc/resolv.conf", sizeof(target));
    bool have_roots =
        realpath(TOOL_SYSTEM_ROOTS, roots) != NULL && stat(roots, &st) == 0 && S_ISREG(st.st_mode);
    *step = "reading the sandbox's trust store";
    if ((rc = trust_store_read(rec->name, &trust)) < 0)
        return rc;
    *step = "creating the interception CA directory";
    if ((rc = ensure_ca_dir(tls_ca_dir())) < 0)
        goto out;

    *step = "mounting /proc";
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        rc = -errno;
        goto out;
    }
    if (umount2("/sys", MNT_DETACH) == 0)
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);

    *step = "masking /run";
    if ((rc = mask_dir("/run", "755")) < 0)
        goto out;
    mkdir("/run/lock", 01777);
    chmod("/run/lock", 01777);
    const char *state = sandbox_state_dir();
    if (strncmp(state, "/run/", 5) != 0 && (rc = mask_dir(state, "700")) < 0)
        goto out;
    if ((rc = mask_dir("/etc/portcullis", "755")) < 0)
        goto out;
    *step = "masking the interception CA directory";
    if ((rc = mask_dir(tls_ca_dir(), "700")) < 0)
        goto out;
    /* tmux keeps its server socket in /tmp/tmux-UID: a server outside would
     * run commands for us outside the sandbox. */
    *step = "masking /run";
    snprintf(path, sizeof(path), "/tmp/tmux-%u", (unsigned)uid);
    if ((rc = mask_dir(path, "700")) < 0)
        goto out;

    *step = "installing the sandbox's resolv.conf";
    snprintf(ours, sizeof(ours), "/etc/netns/%s/resolv.conf", rec->netns);
    if (strncmp(target, "/run/", 5) == 0)
        make_file_path(target);
    if (mount(ours, target, NULL, MS_BIND, NULL) < 0) {
        rc = -errno;
        goto out;
    }

    if (trust.cert) {
        *step = "installing the sandbox's trust store";
        if ((rc = trust_store_install(&trust, have_roots ? roots : NULL)) < 0)
            goto out;
        *ret_trust = true;
    }
    rc = 0;
out:
    trust_store_free(&trust);
    return rc;
}

static int drop_privileges(uid_t uid, gid_t gid, const char *uname, const char **step)
{
    *step = "dropping capabilities";
    if (drop_capabilities() < 0)
        return -errno;
    *step = "switching user";
    if (setgroups(0, NULL) < 0 || (uid != 0 && initgroups(uname, gid) < 0))
        return -errno;
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return -errno;
    *step = "dropping capabilities";
    if (clear_capability_sets() < 0)
        return -errno;
    *step = "setting no_new_privs";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    *step = "installing the seccomp filter";
    return install_seccomp();
}

struct child_args {
    const struct sandbox_record *rec;
    const struct tool_exec_opts *o;
    const sigset_t *mask;
    int errfd;
    uid_t uid;
    gid_t gid;
    const char *uname;
    const char *home;
    bool trust_store; /* set in the child: /run/portcullis holds the trust store */
};

/* Report a failed step to `portcullis` (which prints it) and exit. */
static void child_fail(int errfd, const char *step, int err)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "%d %s", err, step);
    if (write(errfd, msg, (size_t)n) < 0) {
        /* the parent is gone; nothing to tell */
    }
    _exit(127);
}

static void set_environment(const struct child_args *a)
{
    setenv("PORTCULLIS_SANDBOX", a->rec->name, 1);
    setenv("USER", a->uname, 1);
    setenv("LOGNAME", a->uname, 1);
    setenv("HOME", a->home, 1);
    if (a->trust_store) {
        /* The system bundle is already replaced; these reach the clients
         * that bring their own (Python requests, Node, Git builds). */
        static const char *const bundle_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                                                  "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"};
        for (size_t i = 0; i < ARRAY_SIZE(bundle_vars); i++)
            setenv(bundle_vars[i], TOOL_SANDBOX_CA_BUNDLE, 1);
        setenv("NODE_EXTRA_CA_CERTS", TOOL_SANDBOX_CA_CERT, 1);
    }
    /* They point at /run, which the sandbox does not see. */
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("DBUS_SESSION_BUS_ADDRESS");
}

/*
 * Sockets the invoker left open without FD_CLOEXEC live in its network
 * namespace: through one the command would reach the network, or a host
 * service, without the daemon.  Close them.  Standard input, output and
 * error stay, and so do pipes and files (a process substitution, a
 * redirect).  keep: our own pipe to `portcullis`.
 */
static int close_inherited_sockets(int keep)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        struct stat st;
        char *end;
        long fd = strtol(e->d_name, &end, 10);

        if (end == e->d_name || *end || fd < 3 || fd == dirfd(d) || fd == keep)
            continue;
        if (fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode))
            close((int)fd);
    }
    closedir(d);
    return 0;
}

/*
 * PID 1 of the sandbox's PID namespace: sets the namespace up, drops every
 * privilege, forks the command, then only forwards signals to it and reaps.
 * When the command exits, this exits with its status (128+N for signal N),
 * and the kernel ends whatever the command left behind.
 */
static int sandbox_init(void *arg)
{
    struct child_args *a = arg;
    const char *step = "closing inherited sockets";
    int rc;

    if ((rc = close_inherited_sockets(a->errfd)) < 0)
        child_fail(a->errfd, step, -rc);
    step = "entering the sandbox namespace";
    int nsfd = netns_open(a->rec->netns);
    if (nsfd < 0)
        child_fail(a->errfd, step, -nsfd);
    if (netns_enter(nsfd) < 0)
        child_fail(a->errfd, step, errno);
    close(nsfd);
    if ((rc = setup_mounts(a->rec, a->uid, &a->trust_store, &step)) < 0)
        child_fail(a->errfd, step, -rc);
    if ((rc = drop_privileges(a->uid, a->gid, a->uname, &step)) < 0)
        child_fail(a->errfd, step, -rc);
    /* After the credential change (which clears it): die with `portcullis`. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    set_environment(a);

    pid_t cmd = fork();
    if (cmd < 0)
        child_fail(a->errfd, "forking the command", errno);
    if (cmd == 0) {
        sigprocmask(SIG_SETMASK, a->mask, NULL);
        signal(SIGPIPE, SIG_DFL);
        execvp(a->o->argv[0], a->o->argv);
        child_fail(a->errfd, "exec", errno);
    }
    close(a->errfd);

    /* Everything forwardable stays blocked here (blocked signals reach PID 1
     * even without a handler) and is handed on to the command. */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            int status;
            pid_t w;
            while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
                if (w != cmd)
                    continue;
                if (WIFSIGNALED(status))
                    _exit(128 + WTERMSIG(status));
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
            }
            continue;
        }
        /* Forward what `portcullis` (outside: si_pid reads 0 here) sends.  A
         * terminal signals the whole process group, so the command got that
         * itself; signals from inside the sandbox are not ours to relay. */
        if (si.si_code != SI_KERNEL && si.si_pid == 0)
            kill(cmd, sig);
    }
}

pid_t tool_spawn(const struct sandbox_record *rec, const struct tool_exec_opts *o,
                 const void *orig_sigmask)
{
    uid_t uid;
    gid_t gid;
    char uname[256], home[PATH_MAX];
    int pipefd[2];

    int rc = tool_resolve_user(o, &uid, &gid, uname, sizeof(uname), home, sizeof(home));
    if (rc < 0)
        return rc;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    struct child_args a = {
        .rec = rec,
        .o = o,
        .mask = orig_sigmask,
        .errfd = pipefd[1],
        .uid = uid,
        .gid = gid,
        .uname = uname,
        .home = home,
    };
    /* clone(CLONE_NEWPID) makes the child PID 1 of a new namespace without
     * moving our own later children (iptables-restore...) into it.  The raw
     * syscall with no new stack behaves like fork (we are single-threaded),
     * which keeps sanitizers and the child's stack simple. */
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0)
        _exit(sandbox_init(&a));
    rc = pid < 0 ? -errno : 0;
    close(pipefd[1]);
    if (rc < 0) {
        close(pipefd[0]);
        return rc;
    }
    char msg[256];
    ssize_t n;
    do {
        n = read(pipefd[0], msg, sizeof(msg) - 1);
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n > 0) {
        msg[n] = '\0';
        char *space = strchr(msg, ' ');
        int err = atoi(msg);
        const char *step = space ? space + 1 : "setup";
        if (!strcmp(step, "exec"))
            log_error("cannot run '%s': %s", o->argv[0], strerror(err));
        else
            log_error("sandbox %s: %s failed: %s", rec->name, step, strerror(err));
        waitpid(pid, NULL, 0);
        return -(err ? err : EIO);
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
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    bool alive = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
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
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (chdir("/") < 0) {
            /* / always exists */
        }
        dup2(null, 0);
        dup2(null, 1);
        dup2(logfd >= 0 ? logfd : null, 2);
        /* The ready pipe must survive exec: fd 3, without CLOEXEC (dup2 clears it). */
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
        if (waited % 500 == 490) {
            /* A private daemon may have exited for want of sandboxes just
             * before ours appeared: start another. */
            if (!tool_daemon_alive(NULL))
                tool_ensure_daemon(NULL);
            tool_notify_daemon();
        }
    }
    return -ETIMEDOUT;
}
