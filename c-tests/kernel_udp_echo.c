/*
 * kernel_udp_echo: the Linux baseline for the UDP echo benchmark (scripts/bench-udp.sh): a plain UDP echo server
 * on kernel sockets, batching with recvmmsg/sendmmsg.
 *
 *   kernel_udp_echo [--port P] [--bind A.B.C.D] [--batch N] [--busy] [--busy-poll USECS]
 *
 *   --busy            spin on non-blocking recvmmsg (never sleep), for a fair comparison with the busy-polling
 *                     dataplane; default: block in recvmmsg (MSG_WAITFORONE) like an ordinary server
 *   --busy-poll USECS SO_BUSY_POLL on the socket (the kernel busy-polls the device queue for USECS before it
 *                     sleeps; needs a NAPI-driven device, CAP_NET_ADMIN above net.core.busy_read)
 *   --batch N         datagrams per recvmmsg/sendmmsg (1..256, default 64)
 *
 * Prints "ready port=P" once bound; on SIGTERM/SIGINT prints "echoed=N errors=E" and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 256
#define BUF 2048

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(const char *p) {
    fprintf(stderr, "usage: %s [--port P] [--bind A.B.C.D] [--batch N] [--busy] [--busy-poll USECS]\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    int port = 7, batch = 64, busy = 0, busy_poll = -1;
    const char *bind_addr = "0.0.0.0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bind") && i + 1 < argc) bind_addr = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--busy-poll") && i + 1 < argc) busy_poll = atoi(argv[++i]);
        else usage(argv[0]);
    }
    if (port <= 0 || port > 65535 || batch < 1 || batch > MAX_BATCH) usage(argv[0]);

    /* No SA_RESTART: a blocking recvmmsg returns EINTR on SIGTERM. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1, buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (busy_poll >= 0 && setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &busy_poll, sizeof busy_poll) < 0) {
        perror("setsockopt SO_BUSY_POLL");
        return 1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", bind_addr); return 2; }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    printf("ready port=%d busy=%d busy_poll=%d batch=%d\n", port, busy, busy_poll, batch);
    fflush(stdout);

    static char bufs[MAX_BATCH][BUF];
    static struct iovec iov[MAX_BATCH];
    static struct sockaddr_in peers[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    unsigned long long echoed = 0, errors = 0;
    int flags = busy ? MSG_DONTWAIT : MSG_WAITFORONE;
    while (!stop_flag) {
        for (int i = 0; i < batch; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = BUF;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &peers[i];
            msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        int n = recvmmsg(fd, msgs, (unsigned)batch, flags, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            perror("recvmmsg");
            errors++;
            break;
        }
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int off = 0;
        while (off < n) {
            int s = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);
            if (s < 0) {
                if (errno == EINTR && !stop_flag) continue;
                errors++; /* drop the rest of this batch (ENOBUFS, ...) */
                break;
            }
            off += s;
            echoed += (unsigned long long)s;
        }
    }
    printf("echoed=%llu errors=%llu\n", echoed, errors);
    close(fd);
    return 0;
}
