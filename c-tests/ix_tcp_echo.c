/*
 * ix_tcp_echo: a TCP echo server and a TCP client on libix's native API (include/ix.h), zero-copy both ways.
 *
 *   ix_tcp_echo server PORT             echo every byte on every connection until SIGTERM; prints "ready" once
 *                                       listening, totals at exit. One thread per queue (IX_QUEUES).
 *   ix_tcp_echo noaccept PORT BACKLOG  listen but never accept (the backlog fills; later SYNs are dropped)
 *   ix_tcp_echo sink PORT               accept, and close each connection at its first data without giving the
 *                                       data back (closing with unread data; the dataplane frees it at DEAD)
 *   ix_tcp_echo client A.B.C.D PORT BYTES [CONNS]
 *                                       CONNS connections (default 1) each send BYTES of a known pattern to an echo
 *                                       server and check every echoed byte; exit 0 only if all came back exact.
 *                                       Connections open on queue 0; the other queues (IX_QUEUES) get a thread
 *                                       each that only runs cycles (replies that land there are steered to 0).
 *
 * Zero-copy echo: the reply's vector points into the lent receive buffer; the buffer is given back
 * (IX_CMD_TCP_RECV_DONE) only when IX_EV_TCP_SENT says the peer acknowledged those bytes.
 */
#include <ix.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_EVENTS 512
#define MAX_CMDS 2048

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

/* A connection of the echo server: received segments not yet fully handed to sendv, in order. */
struct echo_conn {
    uint64_t handle;
    struct ix_iovec *pending, *iov; /* ring of `cap` entries, and scratch for one sendv */
    unsigned cap, head, count;
    size_t head_sent; /* bytes of pending[head] already taken by sendv */
    int eof, closed, dirty;
    unsigned long long bytes;
};

/* Room for one more pending segment: the ring doubles when full (segments are as small as the peer sends). */
static int pending_reserve(struct echo_conn *c) {
    if (c->count < c->cap) return 1;
    unsigned ncap = c->cap ? 2 * c->cap : 64;
    struct ix_iovec *np = malloc(ncap * sizeof *np), *ni = malloc(ncap * sizeof *ni);
    if (!np || !ni) { free(np); free(ni); return 0; }
    for (unsigned i = 0; i < c->count; i++) np[i] = c->pending[(c->head + i) % c->cap];
    free(c->pending);
    free(c->iov);
    c->pending = np;
    c->iov = ni;
    c->head = 0;
    c->cap = ncap;
    return 1;
}

struct batch {
    struct ix_cmd cmds[MAX_CMDS];
    uint32_t n;
};

static struct ix_cmd *next_cmd(struct batch *b) { return b->n < MAX_CMDS ? &b->cmds[b->n++] : NULL; }

/* Queue sendv commands for what is pending; sendv returns how much the window took, handled on return. */
static void echo_push(struct batch *b, struct echo_conn *c) {
    if (c->count == 0) return;
    unsigned k = 0;
    for (unsigned i = 0; i < c->count && k < 64; i++) { /* IX_MAX_IOV */
        struct ix_iovec v = c->pending[(c->head + i) % c->cap];
        if (i == 0) {
            v.base = (const char *)v.base + c->head_sent;
            v.len -= c->head_sent;
        }
        c->iov[k++] = v;
    }
    struct ix_cmd *cmd = next_cmd(b);
    if (cmd) {
        ix_cmd_tcp_sendv(cmd, c->handle, c->iov, k);
        cmd->cookie = (uint64_t)(uintptr_t)c; /* to find the connection when the result comes back */
    }
}

static void echo_taken(struct echo_conn *c, uint64_t taken) {
    while (taken > 0 && c->count > 0) {
        size_t left = c->pending[c->head].len - c->head_sent;
        if (taken >= left) {
            taken -= left;
            c->head_sent = 0;
            c->head = (c->head + 1) % c->cap;
            c->count--;
        } else {
            c->head_sent += taken;
            taken = 0;
        }
    }
}

enum mode { MODE_ECHO, MODE_NOACCEPT, MODE_SINK };

struct worker {
    ix_port *port;
    uint32_t queue;
    uint16_t tcp_port;
    uint32_t backlog;
    enum mode mode;
    unsigned long long conns, bytes, errors;
    pthread_t thread;
};

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ready_count;

static void *serve(void *arg) {
    struct worker *w = arg;
    ix_queue *q = ix_queue_open(w->port, w->queue);
    if (!q) {
        fprintf(stderr, "ix_tcp_echo: queue %u: %s\n", w->queue, ix_last_error());
        w->errors++;
        return NULL;
    }
    /* Two command buffers, swapped per call: the commands passed to ix_run_io come back in `prev` with their
     * results while the next call's are built in `b` (swapping pointers: a buffer is 2048 commands, 144 KiB). */
    static __thread struct batch bufs[2];
    struct batch *b = &bufs[0], *prev = &bufs[1];
    struct ix_event ev[MAX_EVENTS];
    struct echo_conn *dirty[MAX_EVENTS];
    unsigned ndirty = 0;
    b->n = 0;
    ix_cmd_tcp_listen(next_cmd(b), w->tcp_port, w->backlog);
    while (!stop_flag) {
        struct batch *built = b; /* the commands of this call: their results come back in `prev` */
        b = prev;
        prev = built;
        b->n = 0;
        int n = ix_run_io(q, prev->cmds, prev->n, ev, MAX_EVENTS, 100000);
        if (n < 0) {
            fprintf(stderr, "ix_tcp_echo: ix_run_io: %s\n", strerror(errno));
            w->errors++;
            break;
        }
        for (uint32_t i = 0; i < prev->n; i++) {
            struct ix_cmd *c = &prev->cmds[i];
            if (c->op == IX_CMD_TCP_LISTEN) {
                if (c->ret < 0) {
                    fprintf(stderr, "ix_tcp_echo: listen %u failed: %lld\n", w->tcp_port, (long long)c->ret);
                    stop_flag = 1;
                    w->errors++;
                } else {
                    pthread_mutex_lock(&ready_lock);
                    ready_count++;
                    pthread_mutex_unlock(&ready_lock);
                }
            } else if (c->op == IX_CMD_TCP_SENDV && c->ret >= 0) {
                echo_taken((struct echo_conn *)(uintptr_t)c->cookie, (uint64_t)c->ret);
            } else if (c->op == IX_CMD_TCP_ACCEPT && c->ret == IX_RET_BADH) {
                /* The connection died between its knock and our accept (the peer reset it): not an error. */
                struct echo_conn *gone = (struct echo_conn *)(uintptr_t)c->cookie;
                free(gone->pending);
                free(gone->iov);
                free(gone);
            } else if (c->ret < 0 && c->op != IX_CMD_TCP_SENDV) {
                w->errors++;
                fprintf(stderr, "ix_tcp_echo: op %u failed: %lld\n", c->op, (long long)c->ret);
            }
        }
        for (int i = 0; i < n; i++) {
            struct ix_event *e = &ev[i];
            struct echo_conn *c = (struct echo_conn *)(uintptr_t)e->cookie;
            switch (e->kind) {
            case IX_EV_TCP_KNOCK: {
                if (w->mode == MODE_NOACCEPT) { /* let the backlog fill up */
                    w->conns++;
                    continue;
                }
                struct echo_conn *nc = calloc(1, sizeof *nc);
                nc->handle = e->handle;
                ix_cmd_tcp_accept(next_cmd(b), e->handle, (uint64_t)(uintptr_t)nc);
                w->conns++;
                break;
            }
            case IX_EV_TCP_RECV:
                if (!pending_reserve(c)) {
                    fprintf(stderr, "ix_tcp_echo: out of memory\n");
                    w->errors++;
                    break;
                }
                c->bytes += e->len;
                w->bytes += e->len;
                if (w->mode == MODE_SINK) { /* close while holding unread (lent) data: freed at DEAD */
                    if (!c->closed) {
                        ix_cmd_tcp_close(next_cmd(b), c->handle);
                        c->closed = 1;
                    }
                    continue;
                }
                c->pending[(c->head + c->count) % c->cap] = (struct ix_iovec){e->data, e->len};
                c->count++;
                break;
            case IX_EV_TCP_SENT:
                /* Acknowledged bytes were echoed from lent buffers: now they may be given back. */
                if (e->acked) ix_cmd_tcp_recv_done(next_cmd(b), e->handle, e->acked);
                break;
            case IX_EV_TCP_EOF:
                c->eof = 1;
                break;
            case IX_EV_TCP_DEAD:
                c->closed = 2; /* freed after this batch: it may be on the dirty list */
                if (!c->dirty) { c->dirty = 1; dirty[ndirty++] = c; }
                continue;
            }
            if ((e->kind == IX_EV_TCP_RECV || e->kind == IX_EV_TCP_SENT || e->kind == IX_EV_TCP_EOF) && !c->dirty) {
                c->dirty = 1;
                dirty[ndirty++] = c;
            }
        }
        /* One sendv per connection per batch: two would both cover the same pending bytes. */
        for (unsigned i = 0; i < ndirty; i++) {
            struct echo_conn *c = dirty[i];
            c->dirty = 0;
            if (c->closed == 2) {
                free(c->pending);
                free(c->iov);
                free(c);
                continue;
            }
            if (c->count > 0) echo_push(b, c);
            else if (c->eof && !c->closed) {
                ix_cmd_tcp_close(next_cmd(b), c->handle);
                c->closed = 1;
            }
        }
        ndirty = 0;
    }
    ix_queue_close(q);
    return NULL;
}

static int run_server(uint16_t tcp_port, uint32_t backlog, enum mode mode) {
    ix_port *port = ix_port_open_env();
    if (!port) {
        fprintf(stderr, "ix_tcp_echo: %s\n", ix_last_error());
        return 2;
    }
    int nq = ix_port_queues(port);
    struct worker *w = calloc((size_t)nq, sizeof *w);
    for (int i = 0; i < nq; i++) {
        w[i].port = port;
        w[i].queue = (uint32_t)i;
        w[i].tcp_port = tcp_port;
        w[i].backlog = backlog;
        w[i].mode = mode;
        pthread_create(&w[i].thread, NULL, serve, &w[i]);
    }
    while (!stop_flag) {
        pthread_mutex_lock(&ready_lock);
        unsigned r = ready_count;
        pthread_mutex_unlock(&ready_lock);
        if (r == (unsigned)nq) {
            printf("ready queues=%d port=%u\n", nq, tcp_port);
            fflush(stdout);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    unsigned long long conns = 0, bytes = 0, errors = 0;
    for (int i = 0; i < nq; i++) {
        pthread_join(w[i].thread, NULL);
        conns += w[i].conns;
        bytes += w[i].bytes;
        errors += w[i].errors;
    }
    printf("connections=%llu echoed_bytes=%llu errors=%llu\n", conns, bytes, errors);
    free(w);
    ix_port_close(port);
    return errors ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------- client */

#define PATTERN (1u << 20)
static uint8_t pattern[PATTERN];

struct client_conn {
    uint64_t handle;
    uint64_t sent, acked, received, mismatches;
    int up, done, dead;
    struct ix_iovec iov;
};

/* The client's other queues: they open no connection, but a reply may arrive on any queue (on veth the Linux
 * peer picks the TX queue), and the dataplane hands it to the queue that connected (software steering). So each
 * queue gets a thread that runs its cycles until the client is done. */
struct steer_worker {
    ix_port *port;
    uint32_t queue;
    int opened, failed;
    pthread_t thread;
};
static _Atomic int client_done;
static _Atomic int helpers_ready;

static void *run_other_queue(void *arg) {
    struct steer_worker *w = arg;
    ix_queue *q = ix_queue_open(w->port, w->queue);
    if (!q) {
        fprintf(stderr, "ix_tcp_echo: queue %u: %s\n", w->queue, ix_last_error());
        w->failed = 1;
        helpers_ready++;
        return NULL;
    }
    w->opened = 1;
    helpers_ready++;
    struct ix_event ev[MAX_EVENTS];
    while (!client_done && !stop_flag) {
        int n = ix_run_io(q, NULL, 0, ev, MAX_EVENTS, 100000);
        if (n != 0) {
            fprintf(stderr, "ix_tcp_echo: queue %u: %d unexpected events\n", w->queue, n);
            w->failed = 1;
        }
    }
    ix_queue_close(q);
    return NULL;
}

static int run_client(const char *dst_s, uint16_t dst_port, uint64_t bytes, unsigned nconn) {
    struct in_addr a;
    if (inet_pton(AF_INET, dst_s, &a) != 1) return 2;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof pattern; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        pattern[i] = (uint8_t)x;
    }
    ix_port *port = ix_port_open_env();
    if (!port) { fprintf(stderr, "ix_tcp_echo: %s\n", ix_last_error()); return 2; }
    ix_queue *q = ix_queue_open(port, 0);
    if (!q) { fprintf(stderr, "ix_tcp_echo: %s\n", ix_last_error()); return 2; }
    int nq = ix_port_queues(port);
    struct steer_worker *helpers = calloc((size_t)nq, sizeof *helpers);
    for (int i = 1; i < nq; i++) {
        helpers[i].port = port;
        helpers[i].queue = (uint32_t)i;
        pthread_create(&helpers[i].thread, NULL, run_other_queue, &helpers[i]);
    }
    while (helpers_ready < nq - 1) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct client_conn *cc = calloc(nconn, sizeof *cc);
    static struct batch bufs[2]; /* swapped per call, as in serve() */
    struct batch *b = &bufs[0], *prev = &bufs[1];
    struct ix_event ev[MAX_EVENTS];
    struct ix_endpoint dst = {ntohl(a.s_addr), dst_port, 0};
    b->n = 0;
    for (unsigned i = 0; i < nconn; i++) ix_cmd_tcp_connect(next_cmd(b), dst, i);
    unsigned finished = 0;
    time_t deadline = time(NULL) + 600;
    while (finished < nconn && !stop_flag && time(NULL) < deadline) {
        struct batch *built = b;
        b = prev;
        prev = built;
        b->n = 0;
        int n = ix_run_io(q, prev->cmds, prev->n, ev, MAX_EVENTS, 200000);
        for (uint32_t i = 0; i < prev->n; i++) {
            struct ix_cmd *c = &prev->cmds[i];
            if (c->op == IX_CMD_TCP_CONNECT) {
                if (c->ret < 0) { fprintf(stderr, "connect: %lld\n", (long long)c->ret); cc[c->cookie].dead = 1; finished++; }
                else cc[c->cookie].handle = (uint64_t)c->ret;
            } else if (c->op == IX_CMD_TCP_SENDV && c->ret > 0) {
                cc[c->cookie].sent += (uint64_t)c->ret;
            }
        }
        for (int i = 0; i < n; i++) {
            struct ix_event *e = &ev[i];
            struct client_conn *c = &cc[e->cookie];
            switch (e->kind) {
            case IX_EV_TCP_CONNECTED:
                if (e->ret != 0) { fprintf(stderr, "connected: %d\n", e->ret); c->dead = 1; finished++; }
                else c->up = 1;
                break;
            case IX_EV_TCP_RECV: {
                const uint8_t *d = e->data;
                for (uint32_t k = 0; k < e->len; k++)
                    if (d[k] != pattern[(c->received + k) % PATTERN]) c->mismatches++;
                c->received += e->len;
                ix_cmd_tcp_recv_done(next_cmd(b), e->handle, e->len);
                if (c->received >= bytes && !c->done) {
                    c->done = 1;
                    ix_cmd_tcp_close(next_cmd(b), c->handle);
                }
                break;
            }
            case IX_EV_TCP_SENT:
                c->acked += e->acked;
                break;
            case IX_EV_TCP_DEAD:
                c->dead = 1;
                finished++;
                break;
            }
        }
        /* Keep every connection's window full: send from the pattern at the stream offset. */
        for (unsigned i = 0; i < nconn; i++) {
            struct client_conn *c = &cc[i];
            if (!c->up || c->dead || c->sent >= bytes) continue;
            uint64_t off = c->sent % PATTERN;
            uint64_t len = bytes - c->sent;
            if (len > 65536) len = 65536;
            if (len > PATTERN - off) len = PATTERN - off; /* the stream repeats the pattern exactly */
            c->iov.base = pattern + off; /* the pattern is static: stays valid until acknowledged */
            c->iov.len = len;
            struct ix_cmd *cmd = next_cmd(b);
            if (!cmd) break;
            ix_cmd_tcp_sendv(cmd, c->handle, &c->iov, 1);
            cmd->cookie = i;
        }
    }
    int ok = 1;
    for (unsigned i = 0; i < nconn; i++) {
        struct client_conn *c = &cc[i];
        printf("conn %u: sent=%llu acked=%llu received=%llu mismatches=%llu\n", i, (unsigned long long)c->sent,
               (unsigned long long)c->acked, (unsigned long long)c->received, (unsigned long long)c->mismatches);
        if (c->received != bytes || c->mismatches || c->acked != bytes) ok = 0;
    }
    client_done = 1;
    for (int i = 1; i < nq; i++) {
        pthread_join(helpers[i].thread, NULL);
        if (helpers[i].failed) ok = 0;
    }
    free(helpers);
    printf("client %s\n", ok ? "ok" : "FAILED");
    ix_queue_close(q);
    ix_port_close(port);
    free(cc);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "server") == 0)
        return run_server((uint16_t)atoi(argv[2]), argc == 4 ? (uint32_t)atoi(argv[3]) : 4096, MODE_ECHO);
    if (argc == 4 && strcmp(argv[1], "noaccept") == 0)
        return run_server((uint16_t)atoi(argv[2]), (uint32_t)atoi(argv[3]), MODE_NOACCEPT);
    if (argc == 3 && strcmp(argv[1], "sink") == 0) return run_server((uint16_t)atoi(argv[2]), 4096, MODE_SINK);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "client") == 0)
        return run_client(argv[2], (uint16_t)atoi(argv[3]), strtoull(argv[4], NULL, 10),
                          argc == 6 ? (unsigned)atoi(argv[5]) : 1);
    fprintf(stderr,
            "usage: %s server PORT [BACKLOG] | noaccept PORT BACKLOG | sink PORT | client A.B.C.D PORT BYTES [CONNS]\n",
            argv[0]);
    return 2;
}
