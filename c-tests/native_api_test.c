/*
 * native_api_test: misuse of the native API from C gets documented errors, never a crash.
 * Uses the TAP backend on an interface of its own (needs root), so no namespace is involved.
 */
#include <ix.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) {                                            \
            failures++;                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                         \
            fputc('\n', stderr);                                  \
        }                                                         \
    } while (0)

static void expect_open_error(const char *what, const char *needle) {
    errno = 0;
    ix_port *p = ix_port_open_env();
    CHECK(p == NULL, "%s: port opened", what);
    const char *msg = ix_last_error();
    CHECK(msg && strstr(msg, needle), "%s: message %s lacks %s", what, msg ? msg : "(null)", needle);
    CHECK(errno != 0, "%s: errno not set", what);
    if (p) ix_port_close(p);
}

static int run(ix_queue *q, struct ix_cmd *c, uint32_t n) {
    struct ix_event ev[64];
    return ix_run_io(q, c, n, ev, 64, 0);
}

int main(void) {
    _Static_assert(sizeof(struct ix_cmd) == 72, "ix_cmd layout");
    _Static_assert(sizeof(struct ix_event) == 64, "ix_event layout");
    _Static_assert(sizeof(struct ix_iovec) == 16, "ix_iovec layout");

    /* Configuration errors name the variable. */
    unsetenv("IX_IFACE");
    unsetenv("IX_IP");
    expect_open_error("no config", "IX_IFACE");
    char name[16];
    snprintf(name, sizeof name, "ixm%d", (int)getpid() % 100000);
    setenv("IX_IFACE", name, 1);
    expect_open_error("no address", "IX_IP");
    setenv("IX_IP", "198.18.7.1", 1);
    expect_open_error("no prefix", "IX_IP");
    setenv("IX_IP", "198.18.7.1/24", 1);
    setenv("IX_BATCH", "0", 1);
    expect_open_error("batch 0", "IX_BATCH");
    unsetenv("IX_BATCH");
    setenv("IX_BACKEND", "afxdp", 1);
    expect_open_error("missing interface", name);
    setenv("IX_BACKEND", "tap", 1);

    /* NULL and bad arguments. */
    errno = 0;
    CHECK(ix_run_io(NULL, NULL, 0, NULL, 0, 0) == -1 && errno == EINVAL, "run_io(NULL) must be EINVAL");
    CHECK(ix_queue_open(NULL, 0) == NULL, "queue_open(NULL)");
    CHECK(ix_port_queues(NULL) == -1, "port_queues(NULL)");
    ix_queue_close(NULL);
    ix_port_close(NULL);

    ix_port *port = ix_port_open_env();
    CHECK(port != NULL, "TAP port: %s", ix_last_error());
    if (!port) return 1;
    CHECK(ix_queue_open(port, 5) == NULL, "queue 5 of 1 opened");
    ix_queue *q = ix_queue_open(port, 0);
    CHECK(q != NULL, "queue 0: %s", ix_last_error());
    if (!q) return 1;
    errno = 0;
    CHECK(ix_queue_open(port, 0) == NULL && errno == EBUSY, "queue opened twice");
    CHECK(ix_queue_fd(q) >= 0, "queue fd");
    errno = 0;
    CHECK(ix_queue_timeout_us(NULL) == 0 && errno == EINVAL, "timeout_us(NULL) must be 0 with EINVAL");
    CHECK(ix_queue_timeout_us(q) >= -1, "timeout_us of an idle queue: %lld", (long long)ix_queue_timeout_us(q));
    errno = 0;
    CHECK(ix_run_io(q, NULL, 3, NULL, 0, 0) == -1 && errno == EINVAL, "NULL cmds with count");

    struct ix_cmd c[8];
    static uint8_t big[4000];
    struct ix_iovec iov = {big, 100};
    struct ix_iovec many[65];
    for (int i = 0; i < 65; i++) many[i] = iov;
    struct ix_endpoint peer = {ix_ipv4(198, 18, 7, 2), 9, 0};
    struct ix_endpoint offlink = {ix_ipv4(198, 19, 9, 9), 9, 0};

    ix_cmd_udp_bind(&c[0], 0);
    ix_cmd_udp_bind(&c[1], 7);
    ix_cmd_udp_bind(&c[2], 7);
    ix_cmd_udp_unbind(&c[3], 8);
    memset(&c[4], 0, sizeof c[4]);
    c[4].op = 99;
    ix_cmd_recv_done(&c[5], big);
    ix_cmd_recv_done(&c[6], NULL);
    ix_cmd_recv_done(&c[7], (void *)0x1000);
    CHECK(run(q, c, 8) >= 0, "run_io");
    CHECK(c[0].ret == IX_RET_INVAL, "bind port 0: %lld", (long long)c[0].ret);
    CHECK(c[1].ret == IX_RET_OK, "bind 7: %lld", (long long)c[1].ret);
    CHECK(c[2].ret == IX_RET_ADDRINUSE, "double bind: %lld", (long long)c[2].ret);
    CHECK(c[3].ret == IX_RET_BADH, "unbind unbound: %lld", (long long)c[3].ret);
    CHECK(c[4].ret == IX_RET_INVAL, "unknown op: %lld", (long long)c[4].ret);
    CHECK(c[5].ret == IX_RET_BADH, "recv_done of app memory: %lld", (long long)c[5].ret);
    CHECK(c[6].ret == IX_RET_BADH, "recv_done(NULL): %lld", (long long)c[6].ret);
    CHECK(c[7].ret == IX_RET_BADH, "recv_done(forged): %lld", (long long)c[7].ret);

    ix_cmd_udp_sendv(&c[0], 7, peer, NULL, 1, 1);
    ix_cmd_udp_sendv(&c[1], 7, peer, many, 65, 2);
    struct ix_iovec huge = {big, sizeof big};
    ix_cmd_udp_sendv(&c[2], 7, peer, &huge, 1, 3);
    ix_cmd_udp_sendv(&c[3], 7, offlink, &iov, 1, 4);
    ix_cmd_udp_sendv(&c[4], 0, peer, &iov, 1, 5);
    ix_cmd_udp_sendv(&c[5], 7, peer, &iov, 1, 6);
    ix_cmd_udp_sendv(&c[6], 7, peer, &iov, 0, 7); /* zero-length datagram: legal */
    struct ix_iovec nullbuf = {NULL, 10};
    ix_cmd_udp_sendv(&c[7], 7, peer, &nullbuf, 1, 8);
    struct ix_event ev[64];
    int n = ix_run_io(q, c, 8, ev, 64, 0);
    CHECK(c[0].ret == IX_RET_INVAL, "NULL iov: %lld", (long long)c[0].ret);
    CHECK(c[1].ret == IX_RET_INVAL, "65 iovecs: %lld", (long long)c[1].ret);
    CHECK(c[2].ret == IX_RET_TOOBIG, "oversized: %lld", (long long)c[2].ret);
    CHECK(c[3].ret == IX_RET_UNREACH, "off-link without gateway: %lld", (long long)c[3].ret);
    CHECK(c[4].ret == IX_RET_INVAL, "source port 0: %lld", (long long)c[4].ret);
    CHECK(c[5].ret == IX_RET_OK, "good send: %lld", (long long)c[5].ret);
    CHECK(c[6].ret == IX_RET_OK, "empty send: %lld", (long long)c[6].ret);
    CHECK(c[7].ret == IX_RET_INVAL, "NULL buffer with length: %lld", (long long)c[7].ret);
    int sent = 0;
    for (int i = 0; i < n; i++)
        if (ev[i].kind == IX_EV_UDP_SENT && (ev[i].cookie == 6 || ev[i].cookie == 7)) sent++;
    CHECK(sent == 2, "sent events for the two good sends: %d of %d events", sent, n);

    /* Zero-capacity event array: commands still run, nothing is written. */
    ix_cmd_udp_unbind(&c[0], 7);
    CHECK(ix_run_io(q, c, 1, NULL, 0, 0) == 0 && c[0].ret == IX_RET_OK, "unbind with no event room");

    /* TCP misuse: forged and stale handles, double close, sendv on a connection that is not up, bad vectors. */
    struct ix_cmd t[12];
    ix_cmd_tcp_listen(&t[0], 80, 16);
    ix_cmd_tcp_listen(&t[1], 80, 16);
    ix_cmd_tcp_listen(&t[2], 0, 16);
    ix_cmd_tcp_connect(&t[3], peer, 1); /* nobody answers ARP: stays in SYN-SENT */
    ix_cmd_tcp_connect(&t[4], offlink, 2);
    struct ix_endpoint zero_port = {ix_ipv4(198, 18, 7, 2), 0, 0};
    ix_cmd_tcp_connect(&t[5], zero_port, 3);
    CHECK(run(q, t, 6) >= 0, "run_io");
    CHECK(t[0].ret == IX_RET_OK, "listen: %lld", (long long)t[0].ret);
    CHECK(t[1].ret == IX_RET_ADDRINUSE, "listen twice: %lld", (long long)t[1].ret);
    CHECK(t[2].ret == IX_RET_INVAL, "listen on port 0: %lld", (long long)t[2].ret);
    CHECK(t[3].ret > 0, "connect returns a handle: %lld", (long long)t[3].ret);
    CHECK(t[4].ret == IX_RET_UNREACH, "connect off-link: %lld", (long long)t[4].ret);
    CHECK(t[5].ret == IX_RET_INVAL, "connect to port 0: %lld", (long long)t[5].ret);
    /* The connection waits for ARP and its SYN timer: an app sleeping on ix_queue_fd must come back within the
     * first retransmission timeout (1 s, RFC 6298), never later. */
    int64_t wait_us = ix_queue_timeout_us(q);
    CHECK(wait_us >= 0 && wait_us <= 1000000, "timeout_us with a connect pending: %lld", (long long)wait_us);
    uint64_t h = (uint64_t)t[3].ret;
    uint64_t forged = h ^ (1ull << 40); /* same slot, another generation */
    ix_cmd_tcp_sendv(&t[0], h, &iov, 1);          /* not connected yet */
    ix_cmd_tcp_sendv(&t[1], forged, &iov, 1);
    ix_cmd_tcp_recv_done(&t[2], h, 10);           /* nothing was lent */
    ix_cmd_tcp_accept(&t[3], h, 9);               /* not a knocked connection */
    ix_cmd_tcp_close(&t[4], 12345);               /* never a handle */
    ix_cmd_tcp_sendv(&t[5], h, NULL, 2);          /* NULL vector */
    ix_cmd_tcp_sendv(&t[6], h, many, 65);         /* too many iovecs */
    ix_cmd_tcp_abort(&t[7], h);
    ix_cmd_tcp_abort(&t[8], h);                   /* stale after abort */
    ix_cmd_tcp_close(&t[9], h);
    ix_cmd_tcp_unlisten(&t[10], 80);
    ix_cmd_tcp_unlisten(&t[11], 80);
    CHECK(run(q, t, 12) >= 0, "run_io");
    CHECK(t[0].ret == IX_RET_AGAIN, "sendv before connected: %lld", (long long)t[0].ret);
    CHECK(t[1].ret == IX_RET_BADH, "forged handle: %lld", (long long)t[1].ret);
    CHECK(t[2].ret == IX_RET_INVAL, "recv_done of unlent bytes: %lld", (long long)t[2].ret);
    CHECK(t[3].ret == IX_RET_BADH, "accept of an outgoing connection: %lld", (long long)t[3].ret);
    CHECK(t[4].ret == IX_RET_BADH, "close of a made-up handle: %lld", (long long)t[4].ret);
    CHECK(t[5].ret == IX_RET_INVAL, "sendv with NULL vector: %lld", (long long)t[5].ret);
    CHECK(t[6].ret == IX_RET_INVAL, "sendv with 65 iovecs: %lld", (long long)t[6].ret);
    CHECK(t[7].ret == IX_RET_OK, "abort: %lld", (long long)t[7].ret);
    CHECK(t[8].ret == IX_RET_BADH, "abort twice: %lld", (long long)t[8].ret);
    CHECK(t[9].ret == IX_RET_BADH, "close after abort: %lld", (long long)t[9].ret);
    CHECK(t[10].ret == IX_RET_OK, "unlisten: %lld", (long long)t[10].ret);
    CHECK(t[11].ret == IX_RET_BADH, "unlisten twice: %lld", (long long)t[11].ret);

    ix_queue_close(q);
    ix_port_close(port);

    /* Without privileges: a clear error, for both backends, and no crash. */
    pid_t child = fork();
    if (child == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        setenv("IX_STATS_DIR", "/tmp", 1);
        setenv("IX_IFACE", "lo", 1);
        setenv("IX_BACKEND", "afxdp", 1);
        expect_open_error("afxdp unprivileged", "CAP_");
        setenv("IX_IFACE", name, 1);
        setenv("IX_BACKEND", "tap", 1);
        expect_open_error("tap unprivileged", "CAP_NET_ADMIN");
        _exit(failures ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged checks (status %d)", status);

    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("native_api_test: all checks passed\n");
    return 0;
}
