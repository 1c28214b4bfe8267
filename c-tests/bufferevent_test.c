/* libevent 2.1's bufferevents, checked from C: the same source must pass against libix and against Debian's
 * libevent, which shows it checks libevent's behaviour rather than ours.
 *
 *   libix:    gcc -O1 -Wall -I compat/include c-tests/bufferevent_test.c -L target/release -lix -lpthread
 *   libevent: gcc -O1 -Wall c-tests/bufferevent_test.c -levent_core -levent_pthreads -lpthread
 *
 * Checked over socketpairs and 127.0.0.1: the public struct's fields, data and write callbacks with their counts,
 * read and write watermarks (reading stops at the high mark and resumes when drained), read timeouts, EOF,
 * connect success and refusal (errno), deferred callbacks and triggers, pairs (deferral, flush modes), filters
 * (transforming both ways, free_context), rate limits (configuration checks, buckets, a transfer that must take
 * several ticks, group totals), reference counts, and freeing inside callbacks with BEV_OPT_CLOSE_ON_FREE.
 * Time is only ever bounded from below (a rate limit makes a transfer take at least so long), never from above,
 * so a slow machine cannot fail it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_compat.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>

#include "check.h"

/* What the callbacks saw. */
struct seen {
	int reads, writes, events;
	short last_what;
	int last_errno;
	size_t input_at_read; /* input length at the last read callback */
	size_t max_input;     /* the most it ever was at a read callback */
	size_t total_read;    /* bytes drained by the read callback, when it drains */
	int drain;            /* the read callback drains the input */
	int free_in_read;     /* the read callback frees the bufferevent */
	int stop_loop;        /* the callbacks stop the loop when they run */
	struct event_base *base;
};

static void on_read(struct bufferevent *bev, void *arg)
{
	struct seen *s = arg;
	s->reads++;
	s->input_at_read = evbuffer_get_length(bufferevent_get_input(bev));
	if (s->input_at_read > s->max_input)
		s->max_input = s->input_at_read;
	if (s->drain) {
		char buf[65536];
		size_t n;
		while ((n = bufferevent_read(bev, buf, sizeof(buf))) > 0)
			s->total_read += n;
	}
	if (s->free_in_read)
		bufferevent_free(bev);
	if (s->stop_loop)
		event_base_loopbreak(s->base);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct seen *s = arg;
	(void)bev;
	s->writes++;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct seen *s = arg;
	(void)bev;
	s->events++;
	s->last_what = what;
	s->last_errno = errno;
	if (s->stop_loop)
		event_base_loopbreak(s->base);
}

/* Runs the loop until `*flag` becomes nonzero (or 10 s pass, a hang guard that only ends a failing test). */
static void run_until(struct event_base *base, const int *flag)
{
	struct timeval start, now;
	gettimeofday(&start, NULL);
	while (!*flag) {
		event_base_loop(base, EVLOOP_ONCE);
		gettimeofday(&now, NULL);
		if (now.tv_sec - start.tv_sec > 10) {
			fprintf(stderr, "[%s] gave up waiting\n", current_test);
			break;
		}
	}
}

static void socketpair_nb(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
		perror("socketpair");
		exit(2);
	}
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

static int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static double elapsed_ms(const struct timeval *a, const struct timeval *b)
{
	return (b->tv_sec - a->tv_sec) * 1000.0 + (b->tv_usec - a->tv_usec) / 1000.0;
}

/* ------------------------------------------------------------------------------------------------------------- */

static void test_public_struct(void)
{
	struct event_base *base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	current_test = "public_struct";
	struct bufferevent *bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	CHECK(bev != NULL);
	CHECK(bev->ev_base == base);
	CHECK(bufferevent_get_base(bev) == base);
	CHECK(bev->input == bufferevent_get_input(bev));
	CHECK(bev->output == bufferevent_get_output(bev));
	CHECK_INT(bev->enabled, ==, EV_WRITE);
	CHECK_INT(bufferevent_get_enabled(bev), ==, EV_WRITE);
	CHECK_INT(bufferevent_getfd(bev), ==, fds[0]);
	CHECK_INT(event_get_fd(&bev->ev_read), ==, fds[0]);
	CHECK(event_get_base(&bev->ev_write) == base);
	CHECK(bufferevent_get_underlying(bev) == NULL);
	CHECK(bufferevent_pair_get_partner(bev) == NULL);
	CHECK_INT(bufferevent_get_max_single_read(bev), ==, 16384);
	CHECK_INT(bufferevent_get_max_single_write(bev), ==, 16384);
	CHECK_INT(bufferevent_set_max_single_read(bev, 100), ==, 0);
	CHECK_INT(bufferevent_get_max_single_read(bev), ==, 100);
	CHECK_INT(bufferevent_set_max_single_read(bev, 0), ==, 0);
	CHECK_INT(bufferevent_get_max_single_read(bev), ==, 16384);
	CHECK_INT(bufferevent_get_priority(bev), ==, 0);
	CHECK_INT(bufferevent_get_read_limit(bev), ==, EV_SSIZE_MAX);
	CHECK(bufferevent_get_token_bucket_cfg(bev) == NULL);

	struct seen s = {0};
	bufferevent_setcb(bev, on_read, on_write, on_event, &s);
	CHECK(bev->readcb == on_read && bev->writecb == on_write && bev->errorcb == on_event && bev->cbarg == &s);
	bufferevent_data_cb r, w;
	bufferevent_event_cb e;
	void *a;
	bufferevent_getcb(bev, &r, &w, &e, &a);
	CHECK(r == on_read && w == on_write && e == on_event && a == &s);

	bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 10, 100);
	CHECK_INT(bev->wm_read.low, ==, 10);
	CHECK_INT(bev->wm_write.high, ==, 100);
	size_t lo = 0, hi = 0;
	CHECK_INT(bufferevent_getwatermark(bev, EV_READ, &lo, &hi), ==, 0);
	CHECK_INT(lo, ==, 10);
	CHECK_INT(hi, ==, 100);
	CHECK_INT(bufferevent_getwatermark(bev, EV_READ | EV_WRITE, &lo, &hi), ==, -1);

	struct timeval tv = {3, 500};
	CHECK_INT(bufferevent_set_timeouts(bev, &tv, NULL), ==, 0);
	CHECK_INT(bev->timeout_read.tv_sec, ==, 3);
	CHECK_INT(bev->timeout_read.tv_usec, ==, 500);
	CHECK_INT(bev->timeout_write.tv_sec, ==, 0);

	/* Options libevent refuses. */
	CHECK(bufferevent_socket_new(base, -1, BEV_OPT_UNLOCK_CALLBACKS) == NULL);

	bufferevent_free(bev);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(!fd_is_open(fds[0]));
	close(fds[1]);
	event_base_free(base);
}

static void test_socket_data_and_watermarks(void)
{
	struct event_base *base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	current_test = "socket_data";
	struct seen sa = {0}, sb = {0};
	struct bufferevent *a = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent *b = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(a, on_read, on_write, on_event, &sa);
	bufferevent_setcb(b, on_read, on_write, on_event, &sb);
	bufferevent_enable(b, EV_READ);

	/* A write callback once the output drains; the read side sees the bytes. */
	CHECK_INT(bufferevent_write(a, "hello", 5), ==, 0);
	CHECK_INT(evbuffer_get_length(a->output), ==, 5);
	CHECK_INT(sa.writes, ==, 0); /* nothing runs before the loop */
	run_until(base, &sb.reads);
	CHECK_INT(sa.writes, ==, 1);
	CHECK_INT(sb.reads, ==, 1);
	CHECK_INT(sb.input_at_read, ==, 5);
	char buf[16] = {0};
	CHECK_INT(bufferevent_read(b, buf, sizeof(buf)), ==, 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	struct evbuffer *tmp = evbuffer_new();
	evbuffer_add(tmp, "world", 5);
	CHECK_INT(bufferevent_write_buffer(a, tmp), ==, 0);
	CHECK_INT(evbuffer_get_length(tmp), ==, 0);
	run_until(base, &sb.reads);
	while (sb.reads < 2)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(bufferevent_read_buffer(b, tmp), ==, 0);
	CHECK_INT(evbuffer_get_length(tmp), ==, 5);
	evbuffer_free(tmp);

	/* Read low watermark: no read callback below it. */
	current_test = "read_low_watermark";
	sb.reads = 0;
	bufferevent_setwatermark(b, EV_READ, 10, 0);
	bufferevent_write(a, "12345", 5);
	while (sa.writes < 3)
		event_base_loop(base, EVLOOP_ONCE);
	/* The 5 bytes arrive; give the reader every chance to (wrongly) report them. */
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(sb.reads, ==, 0);
	bufferevent_write(a, "67890", 5);
	run_until(base, &sb.reads);
	CHECK_INT(sb.reads, ==, 1);
	CHECK_INT(sb.input_at_read, ==, 10);
	/* A trigger that ignores watermarks calls it anyway; one that honours them does not. */
	evbuffer_drain(b->input, 8);
	bufferevent_trigger(b, EV_READ, 0);
	CHECK_INT(sb.reads, ==, 1);
	bufferevent_trigger(b, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
	CHECK_INT(sb.reads, ==, 2);
	/* Deferred: later, from the loop. */
	bufferevent_trigger(b, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	CHECK_INT(sb.reads, ==, 2);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(sb.reads, ==, 3);
	bufferevent_trigger_event(b, BEV_EVENT_ERROR, 0);
	CHECK_INT(sb.events, ==, 1);
	CHECK_INT(sb.last_what, ==, BEV_EVENT_ERROR);
	evbuffer_drain(b->input, 100);

	/* Read high watermark: reading stops with the input at the mark (a read callback that left the input there
	 * would be called again and again, libevent's rule), so the reader drains; it never sees more than the mark
	 * although the writer sends five times as much at once. */
	bufferevent_setwatermark(b, EV_READ, 0, 1000);
	sb.reads = 0;
	sb.max_input = 0;
	sb.drain = 1;
	char big[5000];
	memset(big, 'x', sizeof(big));
	bufferevent_write(a, big, sizeof(big));
	while (sb.total_read < 5000 && sb.reads < 1000)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(sb.total_read, ==, 5000);
	CHECK_INT(sb.max_input, ==, 1000);
	CHECK_INT(sb.reads, >=, 5);

	/* Lowering the mark under what is buffered suspends reading until the input is drained. */
	sb.drain = 0;
	bufferevent_setwatermark(b, EV_READ, 0, 0);
	bufferevent_write(a, big, 300);
	while (evbuffer_get_length(b->input) < 300)
		event_base_loop(base, EVLOOP_ONCE);
	bufferevent_setwatermark(b, EV_READ, 0, 100);
	bufferevent_write(a, big, 300);
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(evbuffer_get_length(b->input), ==, 300);
	sb.drain = 1;
	bufferevent_setwatermark(b, EV_READ, 0, 0);
	evbuffer_drain(b->input, 300);
	while (sb.total_read < 5300)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(sb.total_read, ==, 5300);

	/* Write low watermark: the write callback runs when the output falls to it. */
	current_test = "write_low_watermark";
	bufferevent_setwatermark(a, EV_WRITE, 3, 0);
	int w0 = sa.writes;
	bufferevent_write(a, "abcdef", 6);
	while (sa.writes == w0)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(evbuffer_get_length(a->output), <=, 3);

	/* EOF: the peer closes. */
	current_test = "eof";
	sb.stop_loop = 1;
	sb.base = base;
	sb.events = 0;
	bufferevent_free(a);
	run_until(base, &sb.events);
	CHECK_INT(sb.last_what, ==, BEV_EVENT_READING | BEV_EVENT_EOF);
	CHECK_INT(bufferevent_get_enabled(b) & EV_READ, ==, 0);
	bufferevent_free(b);
	event_base_free(base);
}

static void test_timeouts(void)
{
	struct event_base *base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	current_test = "read_timeout";
	struct seen s = {0};
	struct bufferevent *b = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(b, on_read, on_write, on_event, &s);
	struct timeval tv = {0, 50000};
	bufferevent_set_timeouts(b, &tv, NULL);
	bufferevent_enable(b, EV_READ);
	struct timeval t0, t1;
	gettimeofday(&t0, NULL);
	run_until(base, &s.events);
	gettimeofday(&t1, NULL);
	CHECK_INT(s.events, ==, 1);
	CHECK_INT(s.last_what, ==, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
	CHECK(elapsed_ms(&t0, &t1) >= 40);
	CHECK_INT(bufferevent_get_enabled(b) & EV_READ, ==, 0); /* a timeout disables the direction */
	CHECK_INT(s.reads, ==, 0);

	/* Data before the timeout resets it: no timeout while bytes keep arriving. */
	current_test = "read_timeout_reset";
	s.events = 0;
	bufferevent_enable(b, EV_READ);
	s.drain = 1;
	for (int i = 0; i < 3; i++) {
		CHECK_INT(write(fds[1], "x", 1), ==, 1);
		int r = s.reads;
		while (s.reads == r && !s.events)
			event_base_loop(base, EVLOOP_ONCE);
	}
	CHECK_INT(s.reads, ==, 3);
	run_until(base, &s.events);
	CHECK_INT(s.last_what, ==, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);

	/* Write timeout: the peer reads nothing, the socket buffers fill, the output stays pending. */
	current_test = "write_timeout";
	int wfds[2];
	socketpair_nb(wfds);
	struct seen w = {0};
	struct bufferevent *wb = bufferevent_socket_new(base, wfds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(wb, NULL, on_write, on_event, &w);
	struct timeval wtv = {0, 100000};
	bufferevent_set_timeouts(wb, NULL, &wtv);
	static char lots[4 << 20];
	bufferevent_write(wb, lots, sizeof(lots));
	run_until(base, &w.events);
	CHECK_INT(w.last_what, ==, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING);
	CHECK_INT(w.writes, ==, 0);
	CHECK(evbuffer_get_length(wb->output) > 0);
	CHECK_INT(bufferevent_get_enabled(wb) & EV_WRITE, ==, 0);
	bufferevent_free(wb);
	close(wfds[1]);

	/* Compat settimeout takes seconds. */
	bufferevent_settimeout(b, 7, 0);
	CHECK_INT(b->timeout_read.tv_sec, ==, 7);
	bufferevent_free(b);
	close(fds[1]);
	event_base_free(base);
}

static int listen_loopback(struct sockaddr_in *sin)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)sin, sizeof(*sin)) || listen(fd, 16)) {
		perror("listen");
		exit(2);
	}
	socklen_t len = sizeof(*sin);
	getsockname(fd, (struct sockaddr *)sin, &len);
	return fd;
}

static void test_connect(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	int lfd = listen_loopback(&sin);

	current_test = "connect_ok";
	struct seen s = {0};
	struct bufferevent *b = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	CHECK_INT(bufferevent_getfd(b), ==, -1);
	bufferevent_setcb(b, on_read, on_write, on_event, &s);
	CHECK_INT(bufferevent_socket_connect(b, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	CHECK_INT(bufferevent_getfd(b), >=, 0);
	run_until(base, &s.events);
	CHECK_INT(s.last_what, ==, BEV_EVENT_CONNECTED);
	CHECK_INT(s.writes, ==, 0); /* nothing written yet: the connected event is the news */
	int cfd = accept(lfd, NULL, NULL);
	CHECK_INT(cfd, >=, 0);
	bufferevent_write(b, "ping", 4);
	while (s.writes == 0)
		event_base_loop(base, EVLOOP_ONCE);
	char buf[8] = {0};
	CHECK_INT(read(cfd, buf, sizeof(buf)), ==, 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	close(cfd);
	bufferevent_free(b);

	/* Refused: the listener is gone. */
	current_test = "connect_refused";
	close(lfd);
	struct seen r = {0};
	b = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(b, on_read, on_write, on_event, &r);
	bufferevent_enable(b, EV_READ | EV_WRITE);
	CHECK_INT(bufferevent_socket_connect(b, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	run_until(base, &r.events);
	CHECK_INT(r.events, ==, 1);
	CHECK_INT(r.last_what, ==, BEV_EVENT_ERROR);
	CHECK_INT(r.last_errno, ==, ECONNREFUSED);
	CHECK_INT(r.reads, ==, 0);
	bufferevent_free(b);

	/* By name, through evutil_getaddrinfo (no evdns base): refused the same way, no lookup error. */
	current_test = "connect_hostname";
	struct seen h = {0};
	b = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(b, on_read, on_write, on_event, &h);
	CHECK_INT(bufferevent_socket_connect_hostname(b, NULL, AF_INET, "127.0.0.1", ntohs(sin.sin_port)), ==, 0);
	run_until(base, &h.events);
	CHECK_INT(h.last_what, ==, BEV_EVENT_ERROR);
	CHECK_INT(bufferevent_socket_get_dns_error(b), ==, 0);
	CHECK_INT(bufferevent_socket_connect_hostname(b, NULL, AF_INET, "127.0.0.1", 0), ==, -1);
	bufferevent_free(b);
	event_base_free(base);
}

static void test_pair(void)
{
	struct event_base *base = event_base_new();
	current_test = "pair";
	struct bufferevent *p[2];
	CHECK_INT(bufferevent_pair_new(base, 0, p), ==, 0);
	CHECK(bufferevent_pair_get_partner(p[0]) == p[1]);
	CHECK(bufferevent_pair_get_partner(p[1]) == p[0]);
	CHECK_INT(bufferevent_getfd(p[0]), ==, -1);
	CHECK_INT(bufferevent_priority_set(p[0], 0), ==, -1);
	struct seen s0 = {0}, s1 = {0};
	bufferevent_setcb(p[0], on_read, on_write, on_event, &s0);
	bufferevent_setcb(p[1], on_read, on_write, on_event, &s1);
	bufferevent_enable(p[1], EV_READ);
	bufferevent_write(p[0], "abc", 3);
	/* Moved at once, but pairs always defer their callbacks. */
	CHECK_INT(evbuffer_get_length(p[1]->input), ==, 3);
	CHECK_INT(s1.reads, ==, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(s1.reads, ==, 1);
	CHECK_INT(s0.writes, ==, 1);

	/* Reading disabled: the data waits in the writer's output until a flush pushes it. */
	bufferevent_disable(p[1], EV_READ);
	bufferevent_write(p[0], "def", 3);
	CHECK_INT(evbuffer_get_length(p[0]->output), ==, 3);
	CHECK_INT(bufferevent_flush(p[0], EV_WRITE, BEV_NORMAL), ==, 0);
	CHECK_INT(evbuffer_get_length(p[0]->output), ==, 3);
	CHECK_INT(bufferevent_flush(p[0], EV_WRITE, BEV_FLUSH), ==, 0);
	CHECK_INT(evbuffer_get_length(p[0]->output), ==, 0);
	CHECK_INT(evbuffer_get_length(p[1]->input), ==, 6);
	/* Finished: the partner hears EOF. */
	CHECK_INT(bufferevent_flush(p[0], EV_WRITE, BEV_FINISHED), ==, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(s1.events, ==, 1);
	CHECK_INT(s1.last_what, ==, BEV_EVENT_EOF | BEV_EVENT_READING);

	/* Freeing one end unlinks the other. */
	bufferevent_free(p[1]);
	CHECK(bufferevent_pair_get_partner(p[0]) == NULL);
	bufferevent_free(p[0]);
	event_base_free(base);
}

/* Filters: uppercase on input, add a '>' before each byte on output. */
static enum bufferevent_filter_result upper_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *ctx)
{
	(void)lim;
	(void)mode;
	(void)ctx;
	char c;
	while (evbuffer_remove(src, &c, 1) == 1) {
		if (c >= 'a' && c <= 'z')
			c -= 32;
		evbuffer_add(dst, &c, 1);
	}
	return BEV_OK;
}

static enum bufferevent_filter_result mark_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *ctx)
{
	(void)lim;
	(void)mode;
	int *calls = ctx;
	(*calls)++;
	char c;
	while (evbuffer_remove(src, &c, 1) == 1) {
		evbuffer_add(dst, ">", 1);
		evbuffer_add(dst, &c, 1);
	}
	return BEV_OK;
}

static int context_freed;
static void free_ctx(void *ctx)
{
	(void)ctx;
	context_freed++;
}

static void test_filter(void)
{
	struct event_base *base = event_base_new();
	current_test = "filter";
	struct bufferevent *p[2];
	bufferevent_pair_new(base, 0, p);
	int calls = 0;
	struct bufferevent *f = bufferevent_filter_new(p[0], upper_in, mark_out, BEV_OPT_CLOSE_ON_FREE, free_ctx, &calls);
	CHECK(f != NULL);
	CHECK(bufferevent_get_underlying(f) == p[0]);
	CHECK(bufferevent_get_base(f) == base);
	struct seen sf = {0}, s1 = {0};
	bufferevent_setcb(f, on_read, on_write, on_event, &sf);
	bufferevent_setcb(p[1], on_read, on_write, on_event, &s1);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	bufferevent_enable(p[1], EV_READ | EV_WRITE);

	bufferevent_write(f, "ab", 2);
	CHECK_INT(calls, >=, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	char buf[16] = {0};
	CHECK_INT(bufferevent_read(p[1], buf, sizeof(buf)), ==, 4);
	CHECK(memcmp(buf, ">a>b", 4) == 0);

	bufferevent_write(p[1], "hello", 5);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(sf.reads, >=, 1);
	memset(buf, 0, sizeof(buf));
	CHECK_INT(bufferevent_read(f, buf, sizeof(buf)), ==, 5);
	CHECK(strcmp(buf, "HELLO") == 0);

	/* Errors below reach the filter's event callback. */
	bufferevent_flush(p[1], EV_WRITE, BEV_FINISHED);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(sf.events, ==, 1);
	CHECK_INT(sf.last_what & BEV_EVENT_EOF, !=, 0);

	/* Freeing the filter frees its context and, with CLOSE_ON_FREE, the underlying bufferevent. */
	bufferevent_free(f);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(context_freed, ==, 1);
	CHECK(bufferevent_pair_get_partner(p[1]) == NULL);
	bufferevent_free(p[1]);
	event_base_free(base);
}

static void test_rate_limits(void)
{
	struct event_base *base = event_base_new();
	current_test = "rate_limit_cfg";
	struct timeval tick = {0, 100000};
	CHECK(ev_token_bucket_cfg_new(0, 10, 1, 1, &tick) == NULL);
	CHECK(ev_token_bucket_cfg_new(20, 10, 1, 1, &tick) == NULL);
	CHECK(ev_token_bucket_cfg_new(1, 1, 2, 1, NULL) == NULL);
	struct ev_token_bucket_cfg *cfg = ev_token_bucket_cfg_new(4096, 4096, 100000, 100000, &tick);
	CHECK(cfg != NULL);

	int fds[2];
	socketpair_nb(fds);
	struct seen sa = {0}, sb = {0};
	struct bufferevent *a = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent *b = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(a, on_read, on_write, on_event, &sa);
	bufferevent_setcb(b, on_read, on_write, on_event, &sb);
	CHECK_INT(bufferevent_set_rate_limit(b, cfg), ==, 0);
	CHECK(bufferevent_get_token_bucket_cfg(b) == cfg);
	CHECK_INT(bufferevent_get_read_limit(b), ==, 4096);
	CHECK_INT(bufferevent_get_max_to_read(b), ==, 4096);
	CHECK_INT(bufferevent_decrement_read_limit(b, 96), ==, 0);
	CHECK_INT(bufferevent_get_read_limit(b), <=, 4000);

	struct ev_token_bucket_cfg *gcfg = ev_token_bucket_cfg_new(1000000, 1000000, 1000000, 1000000, &tick);
	struct bufferevent_rate_limit_group *g = bufferevent_rate_limit_group_new(base, gcfg);
	CHECK(g != NULL);
	CHECK_INT(bufferevent_add_to_rate_limit_group(b, g), ==, 0);
	CHECK_INT(bufferevent_rate_limit_group_get_read_limit(g), ==, 1000000);
	CHECK_INT(bufferevent_rate_limit_group_set_min_share(g, 100), ==, 0);

	/* 16384 bytes at 4096 per 100 ms tick: the reader needs at least three refills. */
	current_test = "rate_limited_transfer";
	static char data[16384];
	memset(data, 'r', sizeof(data));
	sb.drain = 1;
	bufferevent_enable(b, EV_READ);
	struct timeval t0, t1;
	gettimeofday(&t0, NULL);
	bufferevent_write(a, data, sizeof(data));
	while (sb.total_read < sizeof(data) && sb.events == 0) {
		event_base_loop(base, EVLOOP_ONCE);
		gettimeofday(&t1, NULL);
		if (t1.tv_sec - t0.tv_sec > 20)
			break;
	}
	gettimeofday(&t1, NULL);
	CHECK_INT(sb.total_read, ==, sizeof(data));
	CHECK(elapsed_ms(&t0, &t1) >= 250);
	ev_uint64_t total_r = 0, total_w = 1;
	bufferevent_rate_limit_group_get_totals(g, &total_r, &total_w);
	CHECK_INT(total_r, ==, sizeof(data));
	CHECK_INT(total_w, ==, 0);
	bufferevent_rate_limit_group_reset_totals(g);
	bufferevent_rate_limit_group_get_totals(g, &total_r, NULL);
	CHECK_INT(total_r, ==, 0);
	CHECK_INT(bufferevent_rate_limit_group_decrement_read(g, 10), ==, 0);

	/* Removing the limit: the bucket reads as unlimited. */
	CHECK_INT(bufferevent_set_rate_limit(b, NULL), ==, 0);
	CHECK_INT(bufferevent_get_read_limit(b), ==, EV_SSIZE_MAX);
	CHECK_INT(bufferevent_remove_from_rate_limit_group(b), ==, 0);
	bufferevent_rate_limit_group_free(g);
	bufferevent_free(a);
	bufferevent_free(b);
	ev_token_bucket_cfg_free(cfg);
	ev_token_bucket_cfg_free(gcfg);
	event_base_free(base);
}

static void test_free_in_callback_and_refcount(void)
{
	struct event_base *base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	current_test = "free_in_callback";
	struct seen s = {0};
	struct bufferevent *b = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(b, on_read, on_write, on_event, &s);
	s.free_in_read = 1;
	bufferevent_enable(b, EV_READ);
	CHECK_INT(write(fds[1], "bye", 3), ==, 3);
	run_until(base, &s.reads);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(s.reads, ==, 1);
	CHECK(!fd_is_open(fds[0]));
	/* The peer sees the close. */
	char c;
	CHECK_INT(read(fds[1], &c, 1), ==, 0);
	close(fds[1]);

	/* Deferred callbacks and a free between scheduling and running: nothing runs. */
	current_test = "free_with_deferred_pending";
	socketpair_nb(fds);
	struct seen d = {0};
	b = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_setcb(b, on_read, on_write, on_event, &d);
	bufferevent_trigger(b, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
	CHECK_INT(d.reads, ==, 0);
	bufferevent_free(b);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(d.reads, ==, 0);
	CHECK(!fd_is_open(fds[0]));
	close(fds[1]);

	/* References: the object lives until the last one goes. */
	current_test = "refcount";
	socketpair_nb(fds);
	b = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_incref(b);
	bufferevent_lock(b);
	bufferevent_unlock(b);
	bufferevent_free(b);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(fd_is_open(fds[0]));
	CHECK_INT(bufferevent_decref(b), ==, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK(!fd_is_open(fds[0]));
	close(fds[1]);
	event_base_free(base);
}

static void test_threadsafe(void)
{
	current_test = "threadsafe";
	struct event_base *base = event_base_new();
	struct bufferevent *b = bufferevent_socket_new(base, -1, BEV_OPT_THREADSAFE);
	CHECK(b != NULL);
	bufferevent_lock(b);
	bufferevent_write(b, "x", 1);
	bufferevent_unlock(b);
	CHECK_INT(evbuffer_get_length(bufferevent_get_output(b)), ==, 1);
	struct bufferevent *p[2];
	CHECK_INT(bufferevent_pair_new(base, BEV_OPT_THREADSAFE, p), ==, 0);
	bufferevent_free(p[0]);
	bufferevent_free(p[1]);
	bufferevent_free(b);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
}

/* Deferred callbacks run at the bufferevent's priority. */
static int order_log[4], order_n;
static void order_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	if (order_n < 4)
		order_log[order_n++] = (int)(long)arg;
}

static void test_priority(void)
{
	current_test = "priority";
	struct event_base *base = event_base_new();
	CHECK_INT(event_base_priority_init(base, 3), ==, 0);
	struct bufferevent *low = bufferevent_socket_new(base, -1, BEV_OPT_DEFER_CALLBACKS);
	struct bufferevent *high = bufferevent_socket_new(base, -1, BEV_OPT_DEFER_CALLBACKS);
	CHECK_INT(bufferevent_get_priority(low), ==, 1);
	CHECK_INT(bufferevent_priority_set(low, 2), ==, 0);
	CHECK_INT(bufferevent_priority_set(high, 0), ==, 0);
	CHECK_INT(bufferevent_priority_set(high, 3), ==, -1);
	CHECK_INT(bufferevent_get_priority(low), ==, 2);
	CHECK_INT(bufferevent_get_priority(high), ==, 0);
	bufferevent_setcb(low, order_read, NULL, NULL, (void *)2L);
	bufferevent_setcb(high, order_read, NULL, NULL, (void *)1L);
	bufferevent_trigger(low, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
	bufferevent_trigger(high, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
	CHECK_INT(order_n, ==, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(order_n, ==, 2);
	CHECK_INT(order_log[0], ==, 1);
	CHECK_INT(order_log[1], ==, 2);
	bufferevent_free(low);
	bufferevent_free(high);
	event_base_free(base);
}

/* BEV_OPT_THREADSAFE across threads: a worker writes through a bufferevent, locked, while the loop thread sends its
 * output and a second bufferevent receives it; then the worker frees its bufferevent while the loop still runs
 * (the last reference going in another thread must neither deadlock nor free memory under a running callback). */
#define THREAD_WRITES 2000
struct threaded {
	struct event_base *base;
	struct bufferevent *writer;
	size_t received;
	int done;
};

static void *writer_thread(void *arg)
{
	struct threaded *t = arg;
	char chunk[100];
	memset(chunk, 't', sizeof(chunk));
	for (int i = 0; i < THREAD_WRITES; i++) {
		bufferevent_lock(t->writer);
		bufferevent_write(t->writer, chunk, sizeof(chunk));
		bufferevent_unlock(t->writer);
		if (i % 100 == 0)
			usleep(1000);
	}
	/* Let the loop drain the output before the free (CLOSE_ON_FREE would cut it short). */
	for (;;) {
		bufferevent_lock(t->writer);
		size_t left = evbuffer_get_length(bufferevent_get_output(t->writer));
		bufferevent_unlock(t->writer);
		if (left == 0)
			break;
		usleep(1000);
	}
	bufferevent_free(t->writer);
	return NULL;
}

static void threaded_read(struct bufferevent *bev, void *arg)
{
	struct threaded *t = arg;
	char buf[4096];
	size_t n;
	while ((n = bufferevent_read(bev, buf, sizeof(buf))) > 0)
		t->received += n;
}

static void threaded_event(struct bufferevent *bev, short what, void *arg)
{
	struct threaded *t = arg;
	(void)bev;
	if (what & BEV_EVENT_EOF) {
		t->done = 1;
		event_base_loopbreak(t->base);
	}
}

static void test_threads(void)
{
	current_test = "threads";
	struct threaded t = {0};
	t.base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	t.writer = bufferevent_socket_new(t.base, fds[0], BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE);
	struct bufferevent *reader = bufferevent_socket_new(t.base, fds[1], BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE);
	bufferevent_setcb(reader, threaded_read, NULL, threaded_event, &t);
	bufferevent_enable(reader, EV_READ);
	bufferevent_enable(t.writer, EV_WRITE);
	pthread_t th;
	pthread_create(&th, NULL, writer_thread, &t);
	struct timeval limit = {30, 0};
	event_base_loopexit(t.base, &limit); /* a hang guard: only a failing run gets there */
	event_base_dispatch(t.base);
	pthread_join(th, NULL);
	CHECK(t.done);
	CHECK_INT(t.received, ==, THREAD_WRITES * 100);
	bufferevent_free(reader);
	event_base_free(t.base);
}

/* How much one readiness reads: libevent 2.1.12 reads at most 4096 bytes per callback (evbuffer_read's cap, under
 * the 16384 max_single_read), whatever is waiting; and no more than max_single_read when that is smaller. */
static void test_read_size_per_readiness(void)
{
	current_test = "read_size";
	struct event_base *base = event_base_new();
	int fds[2];
	socketpair_nb(fds);
	int sz = 1 << 20;
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	static char data[20000];
	memset(data, 'q', sizeof(data));
	CHECK_INT(write(fds[1], data, sizeof(data)), ==, sizeof(data));
	struct seen s = {0};
	struct bufferevent *b = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(b, on_read, NULL, on_event, &s);
	bufferevent_enable(b, EV_READ);
	run_until(base, &s.reads);
	CHECK_INT(s.input_at_read, ==, 4096);
	bufferevent_set_max_single_read(b, 1000);
	s.drain = 1;
	int r = s.reads;
	while (s.reads == r)
		event_base_loop(base, EVLOOP_ONCE);
	/* The first callback left its 4096 in the input; the next readiness added max_single_read. */
	CHECK_INT(s.input_at_read, ==, 4096 + 1000);
	bufferevent_free(b);
	close(fds[1]);
	event_base_free(base);
}

int main(void)
{
	evthread_use_pthreads();
	/* Run under LD_PRELOAD, the test says which implementation it must be running on. */
	const char *want = getenv("BUFFEREVENT_TEST_EXPECT_METHOD");
	if (want) {
		current_test = "implementation";
		struct event_base *base = event_base_new();
		CHECK(strcmp(event_base_get_method(base), want) == 0);
		event_base_free(base);
	}
	test_public_struct();
	test_socket_data_and_watermarks();
	test_timeouts();
	test_read_size_per_readiness();
	test_connect();
	test_pair();
	test_filter();
	test_rate_limits();
	test_free_in_callback_and_refcount();
	test_threadsafe();
	test_priority();
	test_threads();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("bufferevent_test: all checks passed\n");
	return 0;
}
