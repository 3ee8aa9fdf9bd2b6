/* natsserver.h - a real nats-server for the cluster unit tests: started on a free port of
 * 127.0.0.1 with JetStream in DIR/nats, stopped with SIGTERM. Debian's nats-server (installed
 * by scripts/deps.sh). */
#ifndef FV_TEST_NATSSERVER_H
#define FV_TEST_NATSSERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct fv_test_nats {
    const char *bin;
    char dir[64];
    int port;
    pid_t pid;
};

static inline int fv_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static inline int fv_test_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* Starts (or starts again, same port and store) the server; 0 once it accepts connections. */
static inline int fv_test_nats_start(struct fv_test_nats *n)
{
    char ports[16], sd[96];
    snprintf(ports, sizeof ports, "%d", n->port);
    snprintf(sd, sizeof sd, "%s/nats", n->dir);
    n->pid = fork();
    if (n->pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL || freopen("/dev/null", "w", stderr) == NULL)
            _exit(126);
        execl(n->bin, n->bin, "-js", "-a", "127.0.0.1", "-p", ports, "-sd", sd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 150 && !fv_test_port_open(n->port); i++)
        usleep(100000);
    return fv_test_port_open(n->port) ? 0 : -1;
}

/* Finds nats-server, makes a temporary directory named after tag, starts it. 0, or -1 with
 * the reason on standard error. */
static inline int fv_test_nats_setup(struct fv_test_nats *n, const char *tag)
{
    n->bin = access("/usr/sbin/nats-server", X_OK) == 0  ? "/usr/sbin/nats-server"
             : access("/usr/bin/nats-server", X_OK) == 0 ? "/usr/bin/nats-server"
                                                         : NULL;
    if (n->bin == NULL) {
        fprintf(stderr, "nats-server is not installed (scripts/deps.sh installs it)\n");
        return -1;
    }
    snprintf(n->dir, sizeof n->dir, "/tmp/fv-%s-XXXXXX", tag);
    if (mkdtemp(n->dir) == NULL) return -1;
    n->port = fv_test_free_port();
    return fv_test_nats_start(n);
}

static inline void fv_test_nats_stop(struct fv_test_nats *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGTERM);
        waitpid(n->pid, NULL, 0);
    }
    n->pid = -1;
}

/* Stops the server and removes its directory. */
static inline int fv_test_nats_teardown(struct fv_test_nats *n)
{
    fv_test_nats_stop(n);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
    return system(cmd);
}

#endif
