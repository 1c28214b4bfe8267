/*
 * ix_udp_echo: a UDP echo server and client on libix's native API (include/ix.h).
 *
 *   ix_udp_echo server PORT              echo every datagram on PORT, one thread per queue (IX_QUEUES),
 *                                        until SIGTERM/SIGINT; prints "ready" once bound, totals at exit.
 *   ix_udp_echo client A.B.C.D PORT N    send N datagrams of sizes 1..1472 (cycling) to a Linux echo server,
 *                                        check every reply byte for byte; exit 0 only if all N came back exact.
 *
 * The dataplane comes from the IX_* environment (IX_IFACE, IX_IP, IX_BACKEND, ...).
 * Zero-copy echo: the reply's payload vector points into the lent receive buffer; the buffer is given back
 * (IX_CMD_RECV_DONE) after the send, in the same batch (commands run in order).
 */
#include <ix.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_CMDS (2 * MAX_EVENTS + 1)

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

struct worker {
    ix_port *port;
    uint32_t queue;
    uint16_t udp_port;
    unsigned long long echoed, errors;
    pthread_t thread;
};

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ready_count;

static void *serve(void *arg) {
    struct worker *w = arg;
    ix_queue *q = ix_queue_open(w->port, w->queue);
    if (!q) {
        fprintf(stderr, "ix_udp_echo: queue %u: %s\n", w->queue, ix_last_error());
        w->errors++;
        return NULL;
    }
    static __thread struct ix_cmd cmds[MAX_CMDS];
    static __thread struct ix_iovec iov[MAX_EVENTS];
    struct ix_event ev[MAX_EVENTS];
    uint32_t ncmds = 0;
    ix_cmd_udp_bind(&cmds[ncmds++], w->udp_port);
    int bound = 0;
    while (!stop_flag) {
        int n = ix_run_io(q, cmds, ncmds, ev, MAX_EVENTS, 100000);
        if (n < 0) {
            fprintf(stderr, "ix_udp_echo: ix_run_io: %s\n", strerror(errno));
            w->errors++;
            break;
        }
        for (uint32_t i = 0; i < ncmds; i++) {
            if (cmds[i].ret != IX_RET_OK) {
                if (cmds[i].op == IX_CMD_UDP_BIND) {
                    fprintf(stderr, "ix_udp_echo: bind %u failed: %lld\n", w->udp_port, (long long)cmds[i].ret);
                    stop_flag = 1;
                }
                w->errors++;
            } else if (cmds[i].op == IX_CMD_UDP_BIND) {
                bound = 1;
                pthread_mutex_lock(&ready_lock);
                ready_count++;
                pthread_mutex_unlock(&ready_lock);
            }
        }
        ncmds = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].kind == IX_EV_UDP_RECV) {
                iov[i].base = ev[i].data;
                iov[i].len = ev[i].len;
                ix_cmd_udp_sendv(&cmds[ncmds++], ev[i].port, ev[i].src, &iov[i], 1, 0);
                ix_cmd_recv_done(&cmds[ncmds++], ev[i].data);
                w->echoed++;
            }
        }
    }
    (void)bound;
    ix_queue_close(q);
    return NULL;
}

static int run_server(uint16_t udp_port) {
    ix_port *port = ix_port_open_env();
    if (!port) {
        fprintf(stderr, "ix_udp_echo: %s\n", ix_last_error());
        return 2;
    }
    int nq = ix_port_queues(port);
    struct worker *w = calloc((size_t)nq, sizeof *w);
    for (int i = 0; i < nq; i++) {
        w[i].port = port;
        w[i].queue = (uint32_t)i;
        w[i].udp_port = udp_port;
        pthread_create(&w[i].thread, NULL, serve, &w[i]);
    }
    for (int waited = 0; !stop_flag; waited++) {
        pthread_mutex_lock(&ready_lock);
        unsigned r = ready_count;
        pthread_mutex_unlock(&ready_lock);
        if (r == (unsigned)nq) {
            printf("ready queues=%d port=%u\n", nq, udp_port);
            fflush(stdout);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    unsigned long long echoed = 0, errors = 0;
    for (int i = 0; i < nq; i++) {
        pthread_join(w[i].thread, NULL);
        echoed += w[i].echoed;
        errors += w[i].errors;
    }
    printf("echoed=%llu errors=%llu\n", echoed, errors);
    free(w);
    ix_port_close(port);
    return errors ? 1 : 0;
}

static void fill(uint8_t *buf, size_t len, uint32_t seq) {
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(seq * 31 + i * 7 + (i >> 8));
    if (len >= 4) memcpy(buf, &seq, 4);
}

static int run_client(const char *dst_s, uint16_t dst_port, uint32_t count) {
    struct in_addr a;
    if (inet_pton(AF_INET, dst_s, &a) != 1) {
        fprintf(stderr, "ix_udp_echo: bad address %s\n", dst_s);
        return 2;
    }
    ix_port *port = ix_port_open_env();
    if (!port) {
        fprintf(stderr, "ix_udp_echo: %s\n", ix_last_error());
        return 2;
    }
    ix_queue *q = ix_queue_open(port, 0);
    if (!q) {
        fprintf(stderr, "ix_udp_echo: %s\n", ix_last_error());
        return 2;
    }
    /* A test may need to wire the interface up (move a TAP into a namespace) before we send. */
    const char *go = getenv("IX_CLIENT_GO_FILE");
    if (go) {
        printf("opened\n");
        fflush(stdout);
        for (int i = 0; i < 400 && access(go, F_OK) != 0; i++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    const uint16_t local = 40000;
    struct ix_endpoint dst = {ntohl(a.s_addr), dst_port, 0};
    struct ix_cmd cmds[4];
    struct ix_event ev[MAX_EVENTS];
    static uint8_t out[2048];
    struct ix_iovec iov;
    uint32_t ok = 0, bad = 0, lost = 0;
    ix_cmd_udp_bind(&cmds[0], local);
    ix_run_io(q, cmds, 1, ev, 0, 0);
    if (cmds[0].ret != IX_RET_OK) {
        fprintf(stderr, "ix_udp_echo: bind failed %lld\n", (long long)cmds[0].ret);
        return 1;
    }
    for (uint32_t seq = 0; seq < count && !stop_flag; seq++) {
        size_t len = 1 + seq % 1472;
        fill(out, len, seq);
        iov.base = out;
        iov.len = len;
        int got = 0, tries = 0;
        uint32_t nc = 0;
        ix_cmd_udp_sendv(&cmds[nc++], local, dst, &iov, 1, seq);
        /* Wait for this datagram's echo; resend after 200 ms (the first one may wait for ARP). */
        while (!got && tries < 25) {
            int n = ix_run_io(q, cmds, nc, ev, MAX_EVENTS, 200000);
            for (uint32_t i = 0; i < nc; i++)
                if (cmds[i].ret != IX_RET_OK && cmds[i].op == IX_CMD_UDP_SENDV) {
                    fprintf(stderr, "send %u: ret %lld\n", seq, (long long)cmds[i].ret);
                    bad++;
                }
            nc = 0;
            for (int i = 0; i < n; i++) {
                if (ev[i].kind != IX_EV_UDP_RECV) continue;
                uint32_t rseq = 0;
                if (ev[i].len >= 4) memcpy(&rseq, ev[i].data, 4);
                if (ev[i].len == len && (len < 4 || rseq == seq)) {
                    if (memcmp(ev[i].data, out, len) == 0) ok++; else bad++;
                    got = 1;
                } else if (len < 4 && ev[i].len == len && memcmp(ev[i].data, out, len) == 0) {
                    ok++;
                    got = 1;
                }
                ix_cmd_recv_done(&cmds[nc++], ev[i].data);
                if (nc == 4) { ix_run_io(q, cmds, nc, ev, 0, 0); nc = 0; }
            }
            if (!got && n == 0) {
                tries++;
                ix_cmd_udp_sendv(&cmds[nc++], local, dst, &iov, 1, seq);
            }
        }
        if (nc) ix_run_io(q, cmds, nc, ev, 0, 0);
        if (!got) lost++;
    }
    printf("client ok=%u bad=%u lost=%u\n", ok, bad, lost);
    ix_queue_close(q);
    ix_port_close(port);
    return (ok == count && bad == 0) ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc == 3 && strcmp(argv[1], "server") == 0) return run_server((uint16_t)atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return run_client(argv[2], (uint16_t)atoi(argv[3]), (uint32_t)strtoul(argv[4], NULL, 10));
    fprintf(stderr, "usage: %s server PORT | client A.B.C.D PORT COUNT\n", argv[0]);
    return 2;
}
