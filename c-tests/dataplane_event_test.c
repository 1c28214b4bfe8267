/* libevent's API on dataplane sockets, against Linux peers (run by dataplane_event_test.sh: the dataplane on a veth
 * end, the peers in the namespace). Plain libevent code: the same program runs on the kernel with real libevent.
 *
 *   1. Two event bases watching one UDP socket (libevent allows any number of events on a fd across bases; stock
 *      memcached -U -t N has every worker watch its UDP socket): both report it readable; after one deletes its
 *      event, the other still reports new datagrams (a Linux peer sends one every 50 ms).
 *   2. evconnlistener + bufferevents: an echo server; the Linux peer opens CONNS connections at once, each sends
 *      BYTES of a pattern, shuts down its direction and checks the echo byte for byte (peer.py tcp-pattern-client).
 *      The server frees each bufferevent once its echo is written after the peer's EOF.
 *   3. bufferevent_socket_connect from the dataplane to a Linux echo server: 1 MiB out, the same back.
 * Every wait is bounded (loopexit). Usage: dataplane_event_test DP_IP PEER_IP PORT CONNS BYTES (ports PORT..+2)
 * Prints "ready udp" and "ready tcp" for the script to start the peers. Exit 0: every check held.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CHECK(cond, ...)                                                                                         \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "dataplane_event_test: FAILED (line %d): ", __LINE__);                              \
            fprintf(stderr, __VA_ARGS__);                                                                        \
            fprintf(stderr, "\n");                                                                               \
            exit(1);                                                                                             \
        }                                                                                                        \
        printf("ok: ");                                                                                          \
        printf(__VA_ARGS__);                                                                                     \
        printf("\n");                                                                                            \
        fflush(stdout);                                                                                          \
    } while (0)

/* The byte pattern of peer.py (PAT_BLOCK): byte i of a stream. */
static unsigned char pat_at(uint64_t i)
{
    uint64_t j = i % 64256;
    return (unsigned char)((j % 251) + (j / 251));
}

static struct sockaddr_in sin_of(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        exit(2);
    }
    return a;
}

/* Runs `base` until a callback breaks the loop or `secs` pass. */
static void run_for(struct event_base *base, int secs)
{
    struct timeval limit = {secs, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
}

/* ---- 1. two bases, one UDP socket ---------------------------------------------------------------------------- */

static int udp_fd, fired_a, fired_b;

static void on_udp(evutil_socket_t s, short what, void *arg)
{
    (void)s;
    (void)what;
    event_base_loopbreak(arg);
}

static void on_udp_a(evutil_socket_t s, short what, void *arg)
{
    fired_a++;
    on_udp(s, what, arg);
}

static void on_udp_b(evutil_socket_t s, short what, void *arg)
{
    fired_b++;
    on_udp(s, what, arg);
}

static int fires(struct event_base *base, int *counter)
{
    int before = *counter;
    run_for(base, 10);
    return *counter > before;
}

static void drain_udp(void)
{
    char buf[2048];
    while (recv(udp_fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

static void shared_watch(const char *dp_ip, int port)
{
    struct sockaddr_in sin = sin_of(dp_ip, port);
    udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(udp_fd >= 0 && bind(udp_fd, (struct sockaddr *)&sin, sizeof sin) == 0, "UDP socket bound to %s:%d",
          dp_ip, port);
    struct event_base *a = event_base_new(), *b = event_base_new();
    struct event *ev_a = event_new(a, udp_fd, EV_READ | EV_PERSIST, on_udp_a, a);
    struct event *ev_b = event_new(b, udp_fd, EV_READ | EV_PERSIST, on_udp_b, b);
    CHECK(a && b && ev_a && ev_b, "two bases, one event each on the socket");
    CHECK(event_add(ev_a, NULL) == 0 && event_add(ev_b, NULL) == 0, "both events added");
    printf("ready udp\n");
    fflush(stdout);
    /* Neither loop reads, so the datagram that wakes one is still there for the other. */
    CHECK(fires(a, &fired_a), "base A reports the socket readable");
    CHECK(fires(b, &fired_b), "base B reports the socket readable too");
    CHECK(event_del(ev_b) == 0, "base B deletes its event");
    drain_udp();
    CHECK(fires(a, &fired_a), "base A reports a later datagram after B's delete");
    CHECK(event_add(ev_b, NULL) == 0 && event_del(ev_a) == 0, "B re-adds, A deletes");
    drain_udp();
    CHECK(fires(b, &fired_b), "base B reports a later datagram after A's delete");
    event_free(ev_a);
    event_free(ev_b);
    event_base_free(a);
    event_base_free(b);
    close(udp_fd);
}

/* ---- 2. evconnlistener + bufferevent echo server -------------------------------------------------------------- */

static struct {
    struct event_base *base;
    int conns, done, errors;
    uint64_t echoed;
} srv;

static void echo_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    srv.echoed += evbuffer_get_length(in);
    bufferevent_write_buffer(bev, in);
}

static void echo_finished(struct bufferevent *bev)
{
    bufferevent_free(bev);
    if (++srv.done == srv.conns)
        event_base_loopbreak(srv.base);
}

static void echo_written(struct bufferevent *bev, void *arg)
{
    (void)arg;
    /* Set only after the peer's EOF: the echo is out, the connection goes. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        echo_finished(bev);
}

static void echo_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & BEV_EVENT_ERROR) {
        srv.errors++;
        echo_finished(bev);
    } else if (what & BEV_EVENT_EOF) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            echo_finished(bev);
        } else {
            bufferevent_setcb(bev, echo_read, echo_written, echo_event, NULL);
        }
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)l;
    (void)sa;
    (void)len;
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        srv.errors++;
        close(fd);
        return;
    }
    bufferevent_setcb(bev, echo_read, NULL, echo_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void echo_server(const char *dp_ip, int port, int conns, uint64_t bytes)
{
    srv.base = event_base_new();
    srv.conns = conns;
    struct sockaddr_in sin = sin_of(dp_ip, port);
    struct evconnlistener *l = evconnlistener_new_bind(srv.base, on_accept, NULL,
                                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                                       (struct sockaddr *)&sin, sizeof sin);
    CHECK(l != NULL, "evconnlistener on %s:%d", dp_ip, port);
    printf("ready tcp\n");
    fflush(stdout);
    run_for(srv.base, 120);
    CHECK(srv.done == conns && srv.errors == 0, "%d of %d connections echoed and closed, %d errors", srv.done,
          conns, srv.errors);
    CHECK(srv.echoed == (uint64_t)conns * bytes, "%llu bytes echoed", (unsigned long long)srv.echoed);
    evconnlistener_free(l);
    event_base_free(srv.base);
}

/* ---- 3. bufferevent_socket_connect to a Linux echo server ------------------------------------------------------ */

static struct {
    struct event_base *base;
    int connected, failed;
    uint64_t got, bad_at;
} cli;

#define CLIENT_BYTES (1u << 20)

static void client_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    unsigned char buf[16384];
    size_t n;
    while ((n = bufferevent_read(bev, buf, sizeof buf)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (buf[i] != pat_at(cli.got + i) && cli.bad_at == UINT64_MAX)
                cli.bad_at = cli.got + i;
        }
        cli.got += n;
    }
    if (cli.got >= CLIENT_BYTES)
        event_base_loopbreak(cli.base);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & BEV_EVENT_CONNECTED) {
        cli.connected = 1;
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        cli.failed = 1;
        event_base_loopbreak(cli.base);
    }
}

static void echo_client(const char *peer_ip, int port)
{
    cli.base = event_base_new();
    cli.bad_at = UINT64_MAX;
    struct bufferevent *bev = bufferevent_socket_new(cli.base, -1, BEV_OPT_CLOSE_ON_FREE);
    CHECK(bev != NULL, "client bufferevent");
    bufferevent_setcb(bev, client_read, NULL, client_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    struct sockaddr_in sin = sin_of(peer_ip, port);
    CHECK(bufferevent_socket_connect(bev, (struct sockaddr *)&sin, sizeof sin) == 0, "connect to %s:%d started",
          peer_ip, port);
    static unsigned char out[CLIENT_BYTES];
    for (uint64_t i = 0; i < CLIENT_BYTES; i++)
        out[i] = pat_at(i);
    CHECK(bufferevent_write(bev, out, sizeof out) == 0, "1 MiB queued before the connection is up");
    run_for(cli.base, 60);
    CHECK(cli.connected && !cli.failed, "connected, no error or early EOF");
    CHECK(cli.got == CLIENT_BYTES && cli.bad_at == UINT64_MAX, "1 MiB echoed byte for byte (%llu bytes)",
          (unsigned long long)cli.got);
    bufferevent_free(bev);
    event_base_free(cli.base);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: dataplane_event_test DP_IP PEER_IP PORT CONNS BYTES\n");
        return 2;
    }
    const char *dp_ip = argv[1], *peer_ip = argv[2];
    int port = atoi(argv[3]), conns = atoi(argv[4]);
    uint64_t bytes = strtoull(argv[5], NULL, 10);
    setvbuf(stdout, NULL, _IOLBF, 0);
    shared_watch(dp_ip, port);
    echo_server(dp_ip, port + 1, conns, bytes);
    echo_client(peer_ip, port + 2);
    printf("dataplane_event_test: ok\n");
    return 0;
}
