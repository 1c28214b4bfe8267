/* evconnlistener (event2/listener.h), checked from C over 127.0.0.1: the same source must pass against libix and
 * against Debian's libevent, which shows it checks libevent's behaviour rather than ours.
 *
 *   libix:    gcc -O1 -Wall -I compat/include c-tests/listener_test.c -L target/release -lix -lpthread
 *   libevent: gcc -O1 -Wall c-tests/listener_test.c -levent_core -levent_pthreads -lpthread
 *
 * Connections are made with blocking connect() on loopback, which completes the handshake before it returns, so
 * a connection is in the listener's accept queue when the test then runs the loop: one non-waiting pass of the
 * loop is enough to see it accepted (no timing assumptions). Tests that change process-wide state (the file
 * limit, the log callback, thread callbacks) run in a child process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

/* One pass of the loop: poll without waiting, run what is active, return. */
#define ONE_PASS (EVLOOP_ONCE | EVLOOP_NONBLOCK)

#include "check.h"

/* ---------------------------------------------------------------------------------------------------------- */
/* Helpers */

static struct sockaddr_in loopback_any_port(void)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = 0;
	return sin;
}

static struct evconnlistener *bind_loopback(struct event_base *base, evconnlistener_cb cb, void *arg, unsigned flags)
{
	struct sockaddr_in sin = loopback_any_port();
	return evconnlistener_new_bind(base, cb, arg, flags, -1, (struct sockaddr *)&sin, sizeof(sin));
}

/* A blocking client connected to the listening socket `fd` (the handshake is complete when it returns). */
static int connect_to(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int c;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		perror("getsockname");
		exit(2);
	}
	c = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0) {
		perror("connect");
		exit(2);
	}
	return c;
}

static int int_option(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, level, name, &v, &len) != 0)
		return -1;
	return v;
}

static int is_nonblocking(int fd)
{
	return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

static int is_cloexec(int fd)
{
	return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static int is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* What the accept callback saw, and what it does next. */
struct accepts {
	int count;
	int fds[16];
	int socklens[16];
	struct sockaddr_in peers[16];
	struct evconnlistener *listener;
	void *seen_arg_ok;
	int disable_at;  /* disable the listener when `count` reaches this (0: never) */
	int free_at;     /* free it then */
	int set_cb_at;   /* replace the callback (and argument) then */
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *arg)
{
	struct accepts *a = arg;
	CHECK(l == a->listener);
	if (a->count < 16) {
		a->fds[a->count] = fd;
		a->socklens[a->count] = socklen;
		memcpy(&a->peers[a->count], sa, sizeof(struct sockaddr_in));
	}
	a->count++;
	if (a->disable_at && a->count == a->disable_at)
		CHECK_INT(evconnlistener_disable(l), ==, 0);
	if (a->free_at && a->count == a->free_at)
		evconnlistener_free(l);
}

static void close_accepted(struct accepts *a)
{
	for (int i = 0; i < a->count && i < 16; i++)
		close(a->fds[i]);
}

/* ---------------------------------------------------------------------------------------------------------- */

/* new_bind on 127.0.0.1:0, N clients, one loop pass: all N accepted in that pass (accept loop per readiness),
 * peer addresses and lengths right, accessors right, accepted sockets non-blocking and not close-on-exec. */
static void test_accept_many(void)
{
	struct event_base *base = event_base_new();
	struct accepts a = {0};
	int clients[10];
	a.listener = bind_loopback(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE);
	CHECK(a.listener != NULL);
	if (!a.listener)
		return;
	CHECK(evconnlistener_get_base(a.listener) == base);
	int lfd = evconnlistener_get_fd(a.listener);
	CHECK(lfd >= 0);
	CHECK(is_nonblocking(lfd));
	CHECK(!is_cloexec(lfd));
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_ACCEPTCONN), ==, 1);
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_KEEPALIVE), ==, 1);
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_REUSEADDR), ==, 1);
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_REUSEPORT), ==, 0);

	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.count, ==, 0);
	for (int i = 0; i < 10; i++)
		clients[i] = connect_to(lfd);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.count, ==, 10);
	for (int i = 0; i < a.count && i < 10; i++) {
		struct sockaddr_in local;
		socklen_t len = sizeof(local);
		CHECK_INT(a.socklens[i], ==, sizeof(struct sockaddr_in));
		CHECK_INT(a.peers[i].sin_family, ==, AF_INET);
		CHECK_INT(ntohl(a.peers[i].sin_addr.s_addr), ==, INADDR_LOOPBACK);
		getsockname(clients[i], (struct sockaddr *)&local, &len);
		CHECK_INT(a.peers[i].sin_port, ==, local.sin_port);
		CHECK(is_nonblocking(a.fds[i]));
		CHECK(!is_cloexec(a.fds[i]));
		/* A real connection: bytes go through. */
		CHECK_INT(write(clients[i], "x", 1), ==, 1);
		char c = 0;
		CHECK_INT(recv(a.fds[i], &c, 1, MSG_WAITALL), ==, 1);
		CHECK_INT(c, ==, 'x');
		close(clients[i]);
	}
	close_accepted(&a);
	evconnlistener_free(a.listener);
	CHECK(!is_open(lfd));
	event_base_free(base);
}

/* The flags that shape sockets: CLOSE_ON_EXEC (listener and accepted), LEAVE_SOCKETS_BLOCKING, REUSEABLE_PORT,
 * DEFERRED_ACCEPT; without CLOSE_ON_FREE the socket survives the listener. */
static void test_socket_flags(void)
{
	struct event_base *base = event_base_new();
	struct accepts a = {0};
	a.listener = bind_loopback(base, accept_cb, &a,
	    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_LEAVE_SOCKETS_BLOCKING | LEV_OPT_REUSEABLE_PORT | LEV_OPT_DEFERRED_ACCEPT);
	CHECK(a.listener != NULL);
	if (!a.listener)
		return;
	int lfd = evconnlistener_get_fd(a.listener);
	CHECK(is_cloexec(lfd));
	CHECK(is_nonblocking(lfd));
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_REUSEPORT), ==, 1);
	CHECK_INT(int_option(lfd, SOL_SOCKET, SO_REUSEADDR), ==, 0);
	CHECK_INT(int_option(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT), >, 0);
	/* TCP_DEFER_ACCEPT holds a connection until data arrives. */
	int c = connect_to(lfd);
	CHECK_INT(write(c, "y", 1), ==, 1);
	struct timeval tv = {5, 0};
	event_base_loopexit(base, &tv);
	while (a.count == 0 && !event_base_got_exit(base))
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(a.count, ==, 1);
	if (a.count == 1) {
		CHECK(!is_nonblocking(a.fds[0]));
		CHECK(is_cloexec(a.fds[0]));
	}
	close(c);
	close_accepted(&a);
	evconnlistener_free(a.listener);
	CHECK(is_open(lfd));
	close(lfd);
	event_base_free(base);
}

/* BIND_IPV6ONLY on [::1] (only where loopback has IPv6). */
static void test_ipv6only(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	struct evconnlistener *l = evconnlistener_new_bind(base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_BIND_IPV6ONLY, 8, (struct sockaddr *)&sin6, sizeof(sin6));
	if (!l && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT)) {
		printf("     (no IPv6 on loopback: BIND_IPV6ONLY not checked)\n");
	} else {
		CHECK(l != NULL);
		if (l)
			CHECK_INT(int_option(evconnlistener_get_fd(l), IPPROTO_IPV6, IPV6_V6ONLY), ==, 1);
	}
	if (l)
		evconnlistener_free(l);
	event_base_free(base);
}

/* Creation rules: new_bind refuses backlog 0 and a NULL address (socket(AF_UNSPEC) fails) and a bad bind;
 * evconnlistener_new with backlog 0 does not listen, with a positive one listens, on a socket that cannot
 * listen fails. */
static void test_creation(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin = loopback_any_port();
	struct accepts a = {0};
	CHECK(evconnlistener_new_bind(base, accept_cb, &a, 0, 0, (struct sockaddr *)&sin, sizeof(sin)) == NULL);
	CHECK(evconnlistener_new_bind(base, accept_cb, &a, 0, -1, NULL, 0) == NULL);
	/* An address in use: bind fails, errno EADDRINUSE, no listener. */
	struct evconnlistener *first = bind_loopback(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE);
	CHECK(first != NULL);
	if (first) {
		struct sockaddr_in taken;
		socklen_t len = sizeof(taken);
		getsockname(evconnlistener_get_fd(first), (struct sockaddr *)&taken, &len);
		errno = 0;
		CHECK(evconnlistener_new_bind(base, accept_cb, &a, 0, -1, (struct sockaddr *)&taken, len) == NULL);
		CHECK_INT(errno, ==, EADDRINUSE);
		evconnlistener_free(first);
	}

	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK_INT(bind(s, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	struct evconnlistener *l = evconnlistener_new(base, accept_cb, &a, 0, 0, s);
	CHECK(l != NULL);
	CHECK_INT(int_option(s, SOL_SOCKET, SO_ACCEPTCONN), ==, 0);
	CHECK_INT(evconnlistener_get_fd(l), ==, s);
	evconnlistener_free(l);
	CHECK(is_open(s));
	l = evconnlistener_new(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE, 3, s);
	CHECK(l != NULL);
	CHECK_INT(int_option(s, SOL_SOCKET, SO_ACCEPTCONN), ==, 1);
	evconnlistener_free(l);
	CHECK(!is_open(s));

	/* listen on a UDP socket fails: NULL, the socket stays open. */
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(evconnlistener_new(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE, 4, u) == NULL);
	CHECK(is_open(u));
	close(u);
	event_base_free(base);
}

/* LEV_OPT_DISABLED, disable/enable, a disable inside the callback stops the accept loop, a NULL callback means
 * nothing is accepted, set_cb starts accepting with the new argument. */
static void test_disable_enable(void)
{
	struct event_base *base = event_base_new();
	struct accepts a = {0};
	int clients[4];
	a.listener = bind_loopback(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED);
	CHECK(a.listener != NULL);
	if (!a.listener)
		return;
	int lfd = evconnlistener_get_fd(a.listener);
	clients[0] = connect_to(lfd);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 1); /* no events: a disabled listener is not pending */
	CHECK_INT(a.count, ==, 0);
	CHECK_INT(evconnlistener_enable(a.listener), ==, 0);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.count, ==, 1);

	/* Disabled in the callback for the first of 3 queued connections: the accept loop stops there. */
	for (int i = 1; i < 4; i++)
		clients[i] = connect_to(lfd);
	a.disable_at = 2;
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.count, ==, 2);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 1);
	CHECK_INT(a.count, ==, 2);
	CHECK_INT(evconnlistener_enable(a.listener), ==, 0);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.count, ==, 4);
	CHECK_INT(evconnlistener_disable(a.listener), ==, 0);
	CHECK_INT(evconnlistener_disable(a.listener), ==, 0);

	/* No callback: enabled but not accepting; set_cb starts it, with the new argument. */
	struct accepts b = {0};
	b.listener = a.listener;
	evconnlistener_set_cb(a.listener, NULL, NULL);
	CHECK_INT(evconnlistener_enable(a.listener), ==, 0);
	int late = connect_to(lfd);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 1);
	evconnlistener_set_cb(a.listener, accept_cb, &b);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(b.count, ==, 1);
	CHECK_INT(a.count, ==, 4);

	for (int i = 0; i < 4; i++)
		close(clients[i]);
	close(late);
	close_accepted(&a);
	close_accepted(&b);
	evconnlistener_free(a.listener);
	event_base_free(base);
}

/* Freed inside its callback with connections still queued: the loop stops, the socket is closed when the
 * callback returns (CLOSE_ON_FREE), nothing else runs, the base has nothing left. */
static void test_free_in_callback(void)
{
	struct event_base *base = event_base_new();
	struct accepts a = {0};
	int clients[3];
	a.listener = bind_loopback(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE);
	CHECK(a.listener != NULL);
	if (!a.listener)
		return;
	int lfd = evconnlistener_get_fd(a.listener);
	for (int i = 0; i < 3; i++)
		clients[i] = connect_to(lfd);
	a.free_at = 1;
	CHECK_INT(event_base_dispatch(base), ==, 1); /* returns: no events left */
	CHECK_INT(a.count, ==, 1);
	CHECK(!is_open(lfd));
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), ==, 0);
	for (int i = 0; i < 3; i++)
		close(clients[i]);
	close_accepted(&a);
	event_base_free(base);
}

/* The error callback: accept on a socket that is not listening (a readable socketpair end) fails with EINVAL,
 * which is not EAGAIN/EINTR/ECONNABORTED: the error callback runs with errno set and the listener's argument; it
 * may disable or free the listener. */
struct errors {
	int calls;
	int err;
	void *arg_seen;
	int free_it;
};

static struct errors *error_state;

static void error_cb(struct evconnlistener *l, void *arg)
{
	struct errors *e = error_state;
	e->err = EVUTIL_SOCKET_ERROR();
	e->arg_seen = arg;
	e->calls++;
	if (e->free_it)
		evconnlistener_free(l);
	else
		evconnlistener_disable(l);
}

static void test_error_cb(void)
{
	for (int free_it = 0; free_it < 2; free_it++) {
		struct event_base *base = event_base_new();
		struct errors e = {0};
		struct accepts a = {0};
		int sp[2];
		e.free_it = free_it;
		error_state = &e;
		CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
		CHECK_INT(send(sp[1], "hello", 5, 0), ==, 5);
		a.listener = evconnlistener_new(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE, 0, sp[0]);
		CHECK(a.listener != NULL);
		evconnlistener_set_error_cb(a.listener, error_cb);
		CHECK_INT(event_base_dispatch(base), ==, 1);
		CHECK_INT(e.calls, ==, 1);
		CHECK_INT(e.err, ==, EINVAL);
		CHECK(e.arg_seen == &a);
		CHECK_INT(a.count, ==, 0);
		if (free_it)
			CHECK(!is_open(sp[0]));
		else
			evconnlistener_free(a.listener);
		CHECK(!is_open(sp[0]));
		close(sp[1]);
		event_base_free(base);
	}
}

/* Without an error callback the error is logged as a warning and the listener stays enabled. Then EMFILE (the
 * file limit reached) goes to the error callback too. Child process: log callback and file limit. */
static int warnings;
static char last_warning[256];

static void log_cb(int severity, const char *msg)
{
	if (severity == EVENT_LOG_WARN) {
		warnings++;
		snprintf(last_warning, sizeof(last_warning), "%s", msg);
	}
}

static void test_error_logged_and_emfile(void)
{
	struct event_base *base = event_base_new();
	struct accepts a = {0};
	int sp[2];
	event_set_log_callback(log_cb);
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
	CHECK_INT(send(sp[1], "hello", 5, 0), ==, 5);
	a.listener = evconnlistener_new(base, accept_cb, &a, LEV_OPT_CLOSE_ON_FREE, 0, sp[0]);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(warnings, ==, 1);
	CHECK(strncmp(last_warning, "Error from accept() call", 24) == 0);
	CHECK(strstr(last_warning, strerror(EINVAL)) != NULL);
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), ==, 1);
	evconnlistener_free(a.listener);
	close(sp[1]);

	/* EMFILE. */
	struct errors e = {0};
	error_state = &e;
	struct accepts b = {0};
	b.listener = bind_loopback(base, accept_cb, &b, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_THREADSAFE);
	CHECK(b.listener != NULL);
	if (!b.listener)
		return;
	evconnlistener_set_error_cb(b.listener, error_cb);
	int c = connect_to(evconnlistener_get_fd(b.listener));
	/* Every descriptor below the lowest free one is in use: a limit just above it, then that one taken. */
	int lowest_free = dup(0);
	struct rlimit rl = {(rlim_t)lowest_free + 1, (rlim_t)lowest_free + 1};
	close(lowest_free);
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), ==, 0);
	int filler = dup(0);
	CHECK_INT(filler, ==, lowest_free);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(e.calls, ==, 1);
	CHECK_INT(e.err, ==, EMFILE);
	CHECK_INT(b.count, ==, 0);
	close(filler);
	CHECK_INT(evconnlistener_enable(b.listener), ==, 0);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(b.count, ==, 1);
	close(c);
	close_accepted(&b);
	evconnlistener_free(b.listener);
	event_base_free(base);
}

/* THREADSAFE listener on a threaded base: the loop in one thread, clients and listener calls (set_cb, get_fd)
 * from another; every connection accepted exactly once. (Not disable from another thread: in libevent that can
 * deadlock against the running accept callback, which waits for the listener lock event_del is holding.) */
struct threaded {
	struct event_base *base;
	struct evconnlistener *listener;
	int lfd;
	int accepted;
	pthread_mutex_t mu;
};

static void threaded_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct threaded *t = arg;
	(void)l;
	(void)sa;
	(void)len;
	close(fd);
	pthread_mutex_lock(&t->mu);
	t->accepted++;
	pthread_mutex_unlock(&t->mu);
}

static void *client_thread(void *arg)
{
	struct threaded *t = arg;
	for (int i = 0; i < 50; i++) {
		if (i % 10 == 5) {
			evconnlistener_set_cb(t->listener, threaded_accept_cb, t);
			CHECK_INT(evconnlistener_get_fd(t->listener), ==, t->lfd);
		}
		close(connect_to(t->lfd));
	}
	for (int spins = 0; spins < 1000; spins++) {
		pthread_mutex_lock(&t->mu);
		int n = t->accepted;
		pthread_mutex_unlock(&t->mu);
		if (n >= 50)
			break;
		usleep(5000);
	}
	event_base_loopbreak(t->base);
	return NULL;
}

/* libevent_core exports this internal getter (evthread-internal.h); its test suite wraps the lock callbacks. */
struct evthread_lock_callbacks *evthread_get_lock_callbacks(void);

static void test_threadsafe(void)
{
	struct threaded t;
	pthread_t th;
	memset(&t, 0, sizeof(t));
	pthread_mutex_init(&t.mu, NULL);
	CHECK(evthread_get_lock_callbacks()->lock == NULL);
	CHECK_INT(evthread_use_pthreads(), ==, 0);
	struct evthread_lock_callbacks *lock_cbs = evthread_get_lock_callbacks();
	CHECK_INT(lock_cbs->lock_api_version, ==, EVTHREAD_LOCK_API_VERSION);
	CHECK(lock_cbs->supported_locktypes & EVTHREAD_LOCKTYPE_RECURSIVE);
	CHECK(lock_cbs->alloc != NULL && lock_cbs->free != NULL && lock_cbs->lock != NULL && lock_cbs->unlock != NULL);
	t.base = event_base_new();
	t.listener = bind_loopback(t.base, threaded_accept_cb, &t, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_THREADSAFE);
	CHECK(t.listener != NULL);
	if (!t.listener)
		return;
	t.lfd = evconnlistener_get_fd(t.listener);
	pthread_create(&th, NULL, client_thread, &t);
	CHECK_INT(event_base_dispatch(t.base), ==, 0);
	pthread_join(th, NULL);
	CHECK_INT(t.accepted, ==, 50);
	evconnlistener_free(t.listener);
	event_base_free(t.base);
}

/* A listener without THREADSAFE disabled from another thread while its accept callback runs: the disabling
 * thread's event_del waits for the callback to return (a threaded base's rule), and the listener must not hold
 * anything the callback's return path needs (libevent takes no listener lock without the flag). */
struct cross {
	struct evconnlistener *listener;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int in_callback;
	int disabling;
	int calls;
};

static void cross_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct cross *x = arg;
	(void)l;
	(void)sa;
	(void)len;
	close(fd);
	pthread_mutex_lock(&x->mu);
	x->calls++;
	x->in_callback = 1;
	pthread_cond_broadcast(&x->cond);
	while (!x->disabling)
		pthread_cond_wait(&x->cond, &x->mu);
	pthread_mutex_unlock(&x->mu);
	usleep(20000); /* let the other thread get into evconnlistener_disable */
}

static void *disabling_thread(void *arg)
{
	struct cross *x = arg;
	pthread_mutex_lock(&x->mu);
	while (!x->in_callback)
		pthread_cond_wait(&x->cond, &x->mu);
	x->disabling = 1;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->mu);
	CHECK_INT(evconnlistener_disable(x->listener), ==, 0);
	return NULL;
}

static void test_disable_from_other_thread(void)
{
	struct cross x;
	pthread_t th;
	memset(&x, 0, sizeof(x));
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cond, NULL);
	CHECK_INT(evthread_use_pthreads(), ==, 0);
	struct event_base *base = event_base_new();
	x.listener = bind_loopback(base, cross_accept_cb, &x, LEV_OPT_CLOSE_ON_FREE);
	CHECK(x.listener != NULL);
	if (!x.listener)
		return;
	int c1 = connect_to(evconnlistener_get_fd(x.listener));
	int c2 = connect_to(evconnlistener_get_fd(x.listener));
	pthread_create(&th, NULL, disabling_thread, &x);
	/* Returns once the listener is disabled (no events left); a deadlock would end in ctest's timeout. */
	CHECK_INT(event_base_dispatch(base), ==, 1);
	pthread_join(th, NULL);
	CHECK_INT(x.calls, ==, 1);
	close(c1);
	close(c2);
	evconnlistener_free(x.listener);
	event_base_free(base);
}

/* ---------------------------------------------------------------------------------------------------------- */

typedef void (*test_fn)(void);

static void run(const char *name, test_fn fn)
{
	int before = failures;
	current_test = name;
	fn();
	printf("%s %s\n", failures == before ? "ok  " : "FAIL", name);
}

static void run_child(const char *name, test_fn fn)
{
	int status;
	pid_t pid;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		current_test = name;
		fn();
		_exit(failures ? 1 : 0);
	}
	current_test = name;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	printf("%s %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok  " : "FAIL", name);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run("accept_many", test_accept_many);
	run("socket_flags", test_socket_flags);
	run("ipv6only", test_ipv6only);
	run("creation", test_creation);
	run("disable_enable", test_disable_enable);
	run("free_in_callback", test_free_in_callback);
	run("error_cb", test_error_cb);
	run_child("error_logged_and_emfile", test_error_logged_and_emfile);
	run_child("threadsafe", test_threadsafe);
	run_child("disable_from_other_thread", test_disable_from_other_thread);
	printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
	return failures ? 1 : 0;
}
