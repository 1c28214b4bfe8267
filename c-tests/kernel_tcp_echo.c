/*
 * kernel_tcp_echo: the Linux baseline for the TCP benchmarks (scripts/bench-tcp.sh): a TCP echo server on kernel
 * sockets, epoll and non-blocking I/O, every received byte written back in order.
 *
 *   kernel_tcp_echo [--port P] [--bind A.B.C.D] [--threads N] [--busy] [--busy-poll USECS] [--backlog N]
 *
 *   --threads N       N threads, each with its own SO_REUSEPORT listener and epoll (the kernel spreads
 *                     connections over them); pin the process with taskset (default 1)
 *   --busy            spin in epoll_wait with timeout 0 (never sleep), like a busy-polling dataplane; default:
 *                     sleep in epoll_wait like an ordinary server
 *   --busy-poll USECS SO_BUSY_POLL on the listeners and every accepted socket (the kernel busy-polls the device
 *                     queue for USECS in blocking receives; needs a NAPI context on the device)
 *   --backlog N       listen(2) backlog (default 4096; the kernel caps it at net.core.somaxconn)
 *
 * A connection is read until EAGAIN and each chunk written back at once; a write that does not fit keeps the
 * rest and stops reading that connection until it is flushed (back-pressure, nothing is dropped). EOF from the
 * client closes the connection once everything was echoed. Prints "ready port=P threads=N" once every listener
 * is listening; on SIGTERM/SIGINT prints "connections=N echoed_bytes=B errors=E" and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_EVENTS 256
#define RXBUF (64 * 1024)

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

struct conn {
    int fd;
    char *pending; /* bytes read but not yet written back */
    size_t len, off;
};

struct worker {
    int lfd, ep, busy, busy_poll;
    unsigned long long conns, bytes, errors;
    pthread_t thread;
};

static void usage(const char *p) {
    fprintf(stderr,
            "usage: %s [--port P] [--bind A.B.C.D] [--threads N] [--busy] [--busy-poll USECS] [--backlog N]\n", p);
    exit(2);
}

static void conn_close(struct worker *w, struct conn *c) {
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static int set_interest(struct worker *w, struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending. 1: all written, 0: the socket is full, -1: error. */
static int flush_pending(struct worker *w, struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            return -1;
        }
        c->off += (size_t)n;
        w->bytes += (unsigned long long)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->len = c->off = 0;
    return 1;
}

/* Reads until EAGAIN, echoing each chunk. 0: keep the connection, -1: close it (EOF or error). */
static int echo_readable(struct worker *w, struct conn *c, char *buf) {
    for (;;) {
        ssize_t n = recv(c->fd, buf, RXBUF, 0);
        if (n == 0) return -1; /* EOF: everything before it was echoed */
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            if (errno != ECONNRESET) w->errors++;
            return -1;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t s = send(c->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
            if (s < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN) {
                    if (errno != ECONNRESET && errno != EPIPE) w->errors++;
                    return -1;
                }
                /* Socket full: keep the rest, wait for room, stop reading meanwhile. */
                c->len = (size_t)n - off;
                c->off = 0;
                c->pending = malloc(c->len);
                if (!c->pending) { w->errors++; return -1; }
                memcpy(c->pending, buf + off, c->len);
                if (set_interest(w, c, EPOLLOUT) < 0) { w->errors++; return -1; }
                return 0;
            }
            off += (size_t)s;
            w->bytes += (unsigned long long)s;
        }
    }
}

static void accept_all(struct worker *w) {
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                w->errors++;
                if (errno == EMFILE || errno == ENFILE) perror("accept4");
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (w->busy_poll >= 0) setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &w->busy_poll, sizeof w->busy_poll);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); w->errors++; continue; }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) { close(fd); free(c); w->errors++; continue; }
        w->conns++;
    }
}

static void *serve(void *arg) {
    struct worker *w = arg;
    static __thread char buf[RXBUF];
    struct epoll_event evs[MAX_EVENTS];
    while (!stop_flag) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, w->busy ? 0 : 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            w->errors++;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                accept_all(w);
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            int r = 0;
            if (c->pending) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                    r = flush_pending(w, c);
                    if (r == 1) r = set_interest(w, c, EPOLLIN | EPOLLRDHUP) < 0 ? -1 : 0;
                    else if (r < 0 && errno != ECONNRESET && errno != EPIPE) w->errors++;
                }
            } else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
                r = echo_readable(w, c, buf);
            }
            if (r < 0) conn_close(w, c);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int port = 7, threads = 1, busy = 0, busy_poll = -1, backlog = 4096;
    const char *bind_addr = "0.0.0.0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bind") && i + 1 < argc) bind_addr = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--busy-poll") && i + 1 < argc) busy_poll = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backlog") && i + 1 < argc) backlog = atoi(argv[++i]);
        else usage(argv[0]);
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > MAX_THREADS || backlog < 1) usage(argv[0]);

    /* No SA_RESTART: epoll_wait returns EINTR on SIGTERM. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &a.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", bind_addr);
        return 2;
    }
    static struct worker w[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        w[t].busy = busy;
        w[t].busy_poll = busy_poll;
        w[t].lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (w[t].lfd < 0) { perror("socket"); return 1; }
        int one = 1;
        setsockopt(w[t].lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (setsockopt(w[t].lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
            perror("setsockopt SO_REUSEPORT");
            return 1;
        }
        if (busy_poll >= 0 && setsockopt(w[t].lfd, SOL_SOCKET, SO_BUSY_POLL, &busy_poll, sizeof busy_poll) < 0) {
            perror("setsockopt SO_BUSY_POLL");
            return 1;
        }
        if (bind(w[t].lfd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
        if (listen(w[t].lfd, backlog) < 0) { perror("listen"); return 1; }
        w[t].ep = epoll_create1(EPOLL_CLOEXEC);
        if (w[t].ep < 0) { perror("epoll_create1"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL: the listener */
        if (epoll_ctl(w[t].ep, EPOLL_CTL_ADD, w[t].lfd, &ev) < 0) { perror("epoll_ctl"); return 1; }
    }
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&w[t].thread, NULL, serve, &w[t]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    printf("ready port=%d threads=%d busy=%d busy_poll=%d backlog=%d\n", port, threads, busy, busy_poll, backlog);
    fflush(stdout);

    unsigned long long conns = 0, bytes = 0, errors = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(w[t].thread, NULL);
        conns += w[t].conns;
        bytes += w[t].bytes;
        errors += w[t].errors;
        close(w[t].ep);
        close(w[t].lfd);
    }
    printf("connections=%llu echoed_bytes=%llu errors=%llu\n", conns, bytes, errors);
    return 0;
}
