/* Two event bases watching one dataplane socket (libevent allows any number of events on a fd, across bases; stock
 * memcached -U -t N has every worker watch its one UDP socket). Run by shared_watch_test.sh with the dataplane on a
 * veth end while a Linux peer in the namespace sends a datagram to DP_IP:PORT every 50 ms (bounded).
 *
 * Checks, each bounded by a 10 s loopexit:
 *   1. both bases report the socket readable (each loop's own wait);
 *   2. after base B deletes its event, base A still reports new datagrams;
 *   3. after B re-adds and A deletes, B reports them.
 * Usage: shared_watch_test DP_IP PORT   (exit 0: every check held)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

static int fd;
static int fired_a, fired_b;

static void drain(void)
{
    char buf[2048];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

static void on_read(evutil_socket_t s, short what, void *arg)
{
    (void)s;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs `base` until its event fires (loopbreak) or 10 s pass: whether it fired. */
static int fires(struct event_base *base, int *counter)
{
    int before = *counter;
    struct timeval limit = {10, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    return *counter > before;
}

static void on_read_a(evutil_socket_t s, short what, void *arg)
{
    fired_a++;
    on_read(s, what, arg);
}

static void on_read_b(evutil_socket_t s, short what, void *arg)
{
    fired_b++;
    on_read(s, what, arg);
}

#define CHECK(cond, msg)                                                                                         \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "shared_watch_test: FAILED: %s\n", msg);                                             \
            return 1;                                                                                            \
        }                                                                                                        \
        printf("ok: %s\n", msg);                                                                                 \
        fflush(stdout);                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: shared_watch_test DP_IP PORT\n");
        return 2;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        perror("socket/bind");
        return 1;
    }
    struct event_base *a = event_base_new(), *b = event_base_new();
    struct event *ev_a = event_new(a, fd, EV_READ | EV_PERSIST, on_read_a, a);
    struct event *ev_b = event_new(b, fd, EV_READ | EV_PERSIST, on_read_b, b);
    CHECK(a && b && ev_a && ev_b, "two bases, one event each on the socket");
    CHECK(event_add(ev_a, NULL) == 0 && event_add(ev_b, NULL) == 0, "both events added");
    printf("ready\n");
    fflush(stdout);

    /* 1. Neither loop reads, so the datagram that wakes one is still there for the other. */
    CHECK(fires(a, &fired_a), "base A reports the socket readable");
    CHECK(fires(b, &fired_b), "base B reports the socket readable too");

    /* 2. B stops watching: A still hears of datagrams that arrive after. */
    CHECK(event_del(ev_b) == 0, "base B deletes its event");
    drain();
    CHECK(fires(a, &fired_a), "base A reports a later datagram after B's delete");

    /* 3. The other way round. */
    CHECK(event_add(ev_b, NULL) == 0 && event_del(ev_a) == 0, "B re-adds, A deletes");
    drain();
    CHECK(fires(b, &fired_b), "base B reports a later datagram after A's delete");

    event_free(ev_a);
    event_free(ev_b);
    event_base_free(a);
    event_base_free(b);
    close(fd);
    printf("shared_watch_test: ok\n");
    return 0;
}
