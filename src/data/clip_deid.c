/* clip_deid.c - the de-identification worker and its sandboxed runs (clip_deid.h, D1-D5). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "data/clip_deid.h"
#include "data/clip_store.h"
#include "os/fsio.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define SUMMARY_MAX 480

struct fv_clip_deid {
    const struct fv_clips_config *c;
    char dir[PATH_MAX]; /* DATA/clips */
    struct fv_keystore *ks;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken, stop; /* under mu; stop also read atomically by a run */
    int started;
    struct fv_deid_audit audit[FV_DEID_AUDIT_QUEUE]; /* D6, under mu */
    size_t naudit;
};

/* D6: queues a record, first waiting (up to the stop) for room. 0, or -1 when stopping. */
static int audit_push(struct fv_clip_deid *w, const char *action, const struct fv_clip_row *row,
                      const char *result, const char *reason)
{
    pthread_mutex_lock(&w->mu);
    while (w->naudit == FV_DEID_AUDIT_QUEUE && !w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    int rc = -1;
    if (w->naudit < FV_DEID_AUDIT_QUEUE) {
        struct fv_deid_audit *a = &w->audit[w->naudit++];
        snprintf(a->action, sizeof a->action, "%s", action);
        snprintf(a->clip, sizeof a->clip, "%s", row->id);
        snprintf(a->subject, sizeof a->subject, "%s", row->subject);
        snprintf(a->result, sizeof a->result, "%s", result);
        snprintf(a->reason, sizeof a->reason, "%s", reason);
        rc = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

size_t fv_clip_deid_audit_drain(struct fv_clip_deid *w,
                                int (*fn)(void *arg, const struct fv_deid_audit *r), void *arg)
{
    if (w == NULL) return 0;
    size_t done = 0;
    pthread_mutex_lock(&w->mu);
    while (done < w->naudit && fn(arg, &w->audit[done]) == 0)
        done++;
    memmove(w->audit, w->audit + done, (w->naudit - done) * sizeof w->audit[0]);
    w->naudit -= done;
    if (done) pthread_cond_broadcast(&w->cv); /* room for a waiting worker */
    pthread_mutex_unlock(&w->mu);
    return done;
}

/* The program's path: argv[0] itself when it names a path, else found on PATH (before the
 * fork: the child only makes system calls). */
static int resolve(const char *prog, char *out, size_t n)
{
    if (strchr(prog, '/')) {
        snprintf(out, n, "%s", prog);
        return access(out, X_OK) == 0 ? FV_OK : FV_ENOENT;
    }
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0') path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(out, n, "%.*s/%s", (int)len, path, prog);
        if (len && access(out, X_OK) == 0) return FV_OK;
        path += len + (path[len] == ':');
    }
    return FV_ENOENT;
}

/* An argument with {in} and {out} replaced. */
static void substitute(const char *arg, const char *in, const char *outp, char *dst, size_t n)
{
    size_t k = 0;
    dst[0] = '\0';
    for (const char *p = arg; *p && k + 1 < n;) {
        const char *rep = NULL;
        if (strncmp(p, "{in}", 4) == 0) {
            rep = in;
            p += 4;
        } else if (strncmp(p, "{out}", 5) == 0) {
            rep = outp;
            p += 5;
        }
        if (rep) {
            int w = snprintf(dst + k, n - k, "%s", rep);
            k += w > 0 ? (size_t)w : 0;
            if (k >= n) k = n - 1;
        } else {
            dst[k++] = *p++;
        }
        dst[k] = '\0';
    }
}

static int stop_requested(const int *stop)
{
    return stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
}

/* The run itself; stop (may be NULL) is polled so the server's stop kills the child. */
static int run(const struct fv_clips_config *c, const char *workdir, const char *in_path,
               const int *stop, struct fv_deid_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->status, sizeof r->status, "failed");
    r->exit_code = -1;
    if (c->deid_argc <= 0) {
        snprintf(r->summary, sizeof r->summary, "no clips.deid_command configured");
        return FV_EINVAL;
    }
    char prog[PATH_MAX], outp[PATH_MAX], args[FV_CLIPS_DEID_ARGS][PATH_MAX + 256];
    char *argv[FV_CLIPS_DEID_ARGS + 1];
    snprintf(outp, sizeof outp, "%s/out.mcap", workdir);
    if (resolve(c->deid_argv[0], prog, sizeof prog) != FV_OK) {
        snprintf(r->summary, sizeof r->summary, "deid_command: %s: not found or not executable",
                 c->deid_argv[0]);
        return FV_ENOENT;
    }
    for (int i = 0; i < c->deid_argc; i++) {
        substitute(c->deid_argv[i], in_path, outp, args[i], sizeof args[i]);
        argv[i] = args[i];
    }
    argv[c->deid_argc] = NULL;
    char e_home[PATH_MAX + 8], e_in[PATH_MAX + 16], e_out[PATH_MAX + 16];
    snprintf(e_home, sizeof e_home, "HOME=%s", workdir);
    snprintf(e_in, sizeof e_in, "FV_CLIP_IN=%s", in_path);
    snprintf(e_out, sizeof e_out, "FV_CLIP_OUT=%s", outp);
    char *envp[] = {"PATH=/usr/bin:/bin", e_home, e_in, e_out, NULL}; /* D4 */
    int in_fd = open(in_path, O_RDONLY | O_CLOEXEC);
    int pipefd[2] = {-1, -1};
    int nsfd[2] = {-1, -1}; /* the child's word on D2 */
    if (in_fd < 0 || pipe2(pipefd, O_CLOEXEC) != 0 || pipe2(nsfd, O_CLOEXEC) != 0) {
        snprintf(r->summary, sizeof r->summary, "cannot set up the run: %s", strerror(errno));
        if (in_fd >= 0) close(in_fd);
        for (int i = 0; i < 2; i++) {
            if (pipefd[i] >= 0) close(pipefd[i]);
            if (nsfd[i] >= 0) close(nsfd[i]);
        }
        return FV_EIO;
    }
    uint64_t tmo_s = (c->deid_timeout_ms + 999) / 1000;
    struct rlimit cpu = {tmo_s + 1, tmo_s + 1}, as = {c->deid_mem_bytes, c->deid_mem_bytes};
    struct rlimit fsz = {c->max_clip_bytes * 2, c->max_clip_bytes * 2}, nof = {64, 64},
                  core = {0, 0};
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: system calls only (the parent has threads). */
        setpgid(0, 0); /* D5 */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        char ns = 'n'; /* D2: a network namespace of its own */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 || unshare(CLONE_NEWNET) == 0) ns = 'y';
        if (write(nsfd[1], &ns, 1) != 1) _exit(126);
        setrlimit(RLIMIT_CPU, &cpu); /* D3 */
        setrlimit(RLIMIT_AS, &as);
        setrlimit(RLIMIT_FSIZE, &fsz);
        setrlimit(RLIMIT_NOFILE, &nof);
        setrlimit(RLIMIT_CORE, &core);
        if (chdir(workdir) != 0) _exit(126); /* D1 */
        if (dup2(in_fd, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0) _exit(126);
        syscall(SYS_close_range, 3, ~0u, 0); /* D5 */
        execve(prog, argv, envp);
        _exit(127);
    }
    close(in_fd);
    close(pipefd[1]);
    close(nsfd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        close(nsfd[0]);
        snprintf(r->summary, sizeof r->summary, "fork failed: %s", strerror(errno));
        return FV_EIO;
    }
    char ns = 'n';
    if (read(nsfd[0], &ns, 1) != 1) ns = 'n';
    close(nsfd[0]);
    char out[SUMMARY_MAX + 1];
    size_t got = 0;
    int timed_out = 0, open_pipe = 1;
    uint64_t deadline = fv_mono_ns() + c->deid_timeout_ms * 1000000ull;
    while (open_pipe) {
        uint64_t now = fv_mono_ns();
        if (now >= deadline || stop_requested(stop)) {
            timed_out = now >= deadline;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            break;
        }
        uint64_t left_ms = (deadline - now) / 1000000ull;
        struct pollfd pfd = {pipefd[0], POLLIN, 0};
        int pr = poll(&pfd, 1, left_ms > 200 ? 200 : (int)left_ms + 1);
        if (pr <= 0) continue;
        char buf[4096];
        ssize_t n = read(pipefd[0], buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            open_pipe = 0;
            break;
        }
        size_t take = (size_t)n < SUMMARY_MAX - got ? (size_t)n : SUMMARY_MAX - got;
        memcpy(out + got, buf, take);
        got += take;
    }
    close(pipefd[0]);
    /* After the pipe closed the child may still run (it closed its stdout): wait, within
     * the deadline. */
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) break;
        if (fv_mono_ns() >= deadline || stop_requested(stop)) {
            timed_out = timed_out || fv_mono_ns() >= deadline;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL); /* whatever it left running in its group */
    out[got] = '\0';
    for (size_t i = 0; i < got; i++) /* the summary is one readable line */
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) out[i] = ' ';
    r->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    if (timed_out)
        snprintf(r->status, sizeof r->status, "timeout");
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        snprintf(r->status, sizeof r->status, "passed");
    snprintf(r->summary, sizeof r->summary, "%s%s%s", timed_out ? "killed after the timeout; " : "",
             out, ns == 'y' ? "" : " (no network namespace)");
    struct stat sb;
    r->replaced = strcmp(r->status, "passed") == 0 && stat(outp, &sb) == 0 && sb.st_size > 0;
    return FV_OK;
}

int fv_clip_deid_run(const struct fv_clips_config *c, const char *workdir, const char *in_path,
                     struct fv_deid_result *r)
{
    return run(c, workdir, in_path, NULL, r);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* Removes a run's directory and everything the command left in it (depth first, links not
 * followed). */
static void remove_workdir(const char *wd)
{
    nftw(wd, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* One clip: decrypted into a private directory, the command run, the outcome recorded. */
static void process(struct fv_clip_deid *w, const struct fv_clip_row *row)
{
    char tmp[PATH_MAX], wd[PATH_MAX + 32], in[PATH_MAX + 64], err[256] = "";
    snprintf(tmp, sizeof tmp, "%s/tmp", w->dir);
    snprintf(wd, sizeof wd, "%s/deid-XXXXXX", tmp);
    struct fv_deid_result r;
    memset(&r, 0, sizeof r);
    struct fv_buf clip = {0};
    if (audit_push(w, "clips.deid", row, "allow", "de-identification run") != 0) return;
    int rc = fv_os_mkdirs(tmp, 0700, err, sizeof err);
    if (rc == FV_OK && mkdtemp(wd) == NULL) {
        fv_seterr(err, sizeof err, "mkdtemp %s: %s", wd, strerror(errno));
        rc = FV_EIO;
    }
    if (rc == FV_OK) rc = fv_clip_store_read(w->ks, w->dir, row->id, &clip, err, sizeof err);
    snprintf(in, sizeof in, "%s/in.mcap", wd);
    int fd = -1;
    if (rc == FV_OK) rc = fv_os_open(in, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, err, sizeof err);
    if (rc == FV_OK) rc = fv_os_write_all(fd, clip.data, clip.len, in, err, sizeof err);
    if (fd >= 0) close(fd);
    fv_buf_free(&clip);
    if (rc == FV_ESTATE || rc == FV_ENOENT) { /* erased meanwhile: nothing to record */
        remove_workdir(wd);
        return;
    }
    if (rc == FV_OK) rc = run(w->c, wd, in, &w->stop, &r);
    if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) { /* killed by the stop: run it again */
        remove_workdir(wd);
        return;
    }
    if (rc != FV_OK && r.summary[0] == '\0')
        snprintf(r.summary, sizeof r.summary, "%s", err[0] ? err : fv_strerror(rc));
    if (rc != FV_OK) snprintf(r.status, sizeof r.status, "failed");
    if (r.replaced) {
        char outp[PATH_MAX + 64];
        snprintf(outp, sizeof outp, "%s/out.mcap", wd);
        char *data = NULL;
        size_t len = 0;
        int vr = fv_clip_check_mcap(outp, err, sizeof err);
        if (vr == FV_OK)
            vr = fv_os_read_file(outp, w->c->max_clip_bytes * 2, &data, &len, err, sizeof err);
        if (vr == FV_OK)
            vr = fv_clip_store_replace(w->ks, w->dir, row->id, data, len, err, sizeof err);
        free(data);
        if (vr != FV_OK) {
            snprintf(r.status, sizeof r.status, "failed");
            snprintf(r.summary, sizeof r.summary, "its output could not replace the clip: %s", err);
        }
    }
    remove_workdir(wd);
    char reason[64];
    snprintf(reason, sizeof reason, "%s (exit %d)", r.status, r.exit_code);
    audit_push(w, "clips.deid.result", row, strcmp(r.status, "passed") == 0 ? "allow" : "error",
               reason);
    if (fv_clip_store_set_deid(w->ks, row->id, r.status, r.exit_code, r.summary, fv_now_ms()) !=
        FV_OK)
        fv_error("clips: the de-identification of clip %s could not be recorded", row->id);
    else
        fv_info("clips: de-identification of clip %s: %s (exit %d)", row->id, r.status,
                r.exit_code);
}

struct pending {
    struct fv_clip_row *rows;
    size_t n, cap;
};

static int collect(void *arg, const struct fv_clip_row *r)
{
    struct pending *p = arg;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 8;
        struct fv_clip_row *nr = realloc(p->rows, nc * sizeof *nr);
        if (nr == NULL) return FV_ENOMEM;
        p->rows = nr;
        p->cap = nc;
    }
    p->rows[p->n++] = *r;
    return 0;
}

static void *deid_main(void *arg)
{
    struct fv_clip_deid *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (!w->woken && !w->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 5; /* also finds clips stored before a restart */
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        w->woken = 0;
        int stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop) break;
        if (w->c->deid_argc == 0) continue;
        struct pending p = {0};
        fv_clip_store_list(w->ks, "pending", collect, &p);
        for (size_t i = 0; i < p.n && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++)
            process(w, &p.rows[i]);
        free(p.rows);
    }
    return NULL;
}

/* D1: runs a crash interrupted left their clear copies behind; they go before anything runs. */
static void remove_stale_workdirs(const char *clips_dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/tmp", clips_dir);
    DIR *d = opendir(tmp);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "deid-", 5) != 0) continue;
        char wd[PATH_MAX + 300];
        snprintf(wd, sizeof wd, "%s/%s", tmp, e->d_name);
        remove_workdir(wd);
    }
    closedir(d);
}

int fv_clip_deid_start(struct fv_clip_deid **out, const struct fv_clips_config *c,
                       const char *data_dir, const struct fv_kek *kek, char *err, size_t errlen)
{
    *out = NULL;
    struct fv_clip_deid *w = calloc(1, sizeof *w);
    if (w == NULL) return FV_ENOMEM;
    w->c = c;
    snprintf(w->dir, sizeof w->dir, "%s/clips", data_dir);
    remove_stale_workdirs(w->dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/catalog.db", data_dir);
    int rc = fv_keystore_open(path, kek, &w->ks, err, errlen);
    if (rc == FV_OK) rc = fv_clip_store_init(w->ks, err, errlen);
    if (rc) {
        if (w->ks) fv_keystore_close(w->ks);
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, deid_main, w) != 0) {
        fv_keystore_close(w->ks);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        fv_seterr(err, errlen, "cannot start the de-identification thread");
        return FV_ENOMEM;
    }
    w->started = 1;
    *out = w;
    return FV_OK;
}

void fv_clip_deid_wake(void *arg)
{
    struct fv_clip_deid *w = arg;
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->woken = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void fv_clip_deid_stop(struct fv_clip_deid *w)
{
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started) pthread_join(w->thread, NULL);
    w->started = 0;
}

void fv_clip_deid_free(struct fv_clip_deid *w)
{
    if (w == NULL) return;
    fv_clip_deid_stop(w);
    fv_keystore_close(w->ks);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
