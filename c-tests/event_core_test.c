/* The libevent 2.1 event core, checked from C: the same source must pass against libix and against Debian's
 * libevent, which shows it checks libevent's behaviour rather than ours.
 *
 *   libix:    gcc -O1 -Wall -I compat/include c-tests/event_core_test.c -L target/release -lix -lpthread
 *   libevent: gcc -O1 -Wall c-tests/event_core_test.c -levent_core -levent_pthreads -lpthread
 *
 * Timing checks assert order and "not early" only (never an upper bound on wall time). "Not early" allows the
 * resolution of CLOCK_MONOTONIC_COARSE, the clock libevent (and libix) measure timeouts on by default.
 * Tests that change process-wide state (signals' dispositions, allocator, debug mode) run in a child process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_compat.h>
#include <event2/event_struct.h>
#include <event2/thread.h>

/* One pass of the loop: poll without waiting, run what is active, return. (EVLOOP_NONBLOCK alone keeps looping
 * while callbacks keep becoming active, e.g. on a level-triggered readable fd.) */
#define ONE_PASS (EVLOOP_ONCE | EVLOOP_NONBLOCK)

#include "check.h"

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* How early a timeout may fire as seen on CLOCK_MONOTONIC: two ticks of the coarse clock. A loop that reads the
 * coarse clock (real libevent does without EVENT_BASE_FLAG_PRECISE_TIMER) sets a deadline from a reading up to a
 * tick old, and on a tickless kernel in a VM the reading can lag by more than one nominal tick after an idle
 * stretch (seen in CI: a 40 ms loopexit of real libevent after 35.4 ms, with 4 ms ticks). */
static long long tolerance_us(void)
{
	struct timespec res;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0)
		return 10000;
	return 2 * ((long long)res.tv_sec * 1000000 + res.tv_nsec / 1000) + 200;
}

static void make_pipe(int fds[2])
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		perror("pipe2");
		exit(2);
	}
}

static void make_socketpair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
		perror("socketpair");
		exit(2);
	}
}

/* ---------------------------------------------------------------------------------------------------------- */

static void test_layout(void)
{
	CHECK_INT(sizeof(struct event), ==, 128);
	CHECK_INT(event_get_struct_event_size(), ==, 128);
	CHECK_INT(offsetof(struct event, ev_evcallback.evcb_flags), ==, 16);
	CHECK_INT(offsetof(struct event, ev_evcallback.evcb_pri), ==, 18);
	CHECK_INT(offsetof(struct event, ev_evcallback.evcb_cb_union), ==, 24);
	CHECK_INT(offsetof(struct event, ev_evcallback.evcb_arg), ==, 32);
	CHECK_INT(offsetof(struct event, ev_fd), ==, 56);
	CHECK_INT(offsetof(struct event, ev_base), ==, 64);
	CHECK_INT(offsetof(struct event, ev_events), ==, 104);
	CHECK_INT(offsetof(struct event, ev_res), ==, 106);
	CHECK_INT(offsetof(struct event, ev_timeout), ==, 112);
}

static void dummy_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* The fields programs read through struct event are the ones the accessors return. */
static void test_struct_fields(void)
{
	struct event_base *base = event_base_new();
	struct event ev;
	int x;
	memset(&ev, 0, sizeof(ev));
	CHECK(!event_initialized(&ev));
	CHECK_INT(event_assign(&ev, base, 7, EV_READ | EV_PERSIST, dummy_cb, &x), ==, 0);
	CHECK(event_initialized(&ev));
	CHECK_INT(ev.ev_fd, ==, 7);
	CHECK(ev.ev_base == base);
	CHECK_INT(ev.ev_events, ==, EV_READ | EV_PERSIST);
	CHECK(ev.ev_evcallback.evcb_cb_union.evcb_callback == dummy_cb);
	CHECK(ev.ev_evcallback.evcb_arg == &x);
	CHECK_INT(ev.ev_evcallback.evcb_flags, ==, EVLIST_INIT);
	CHECK_INT(EVENT_FD(&ev), ==, 7);
	event_base_free(base);
}

static void test_base_basics(void)
{
	struct event_base *base = event_base_new();
	const char **methods = event_get_supported_methods();
	struct event_config *cfg;
	int n = 0;
	CHECK(base != NULL);
	CHECK(event_base_get_method(base) != NULL);
	CHECK(event_base_get_features(base) & EV_FEATURE_ET);
	CHECK(event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE);
	CHECK_INT(event_base_get_npriorities(base), ==, 1);
	CHECK(methods && methods[0]);
	while (methods[n])
		n++;
	/* With no events, dispatch returns 1 at once. */
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 1);
	event_base_free(base);

	/* Avoiding the first method gives another one, or no base when it is the only one. */
	cfg = event_config_new();
	CHECK_INT(event_config_avoid_method(cfg, methods[0]), ==, 0);
	CHECK_INT(event_config_set_flag(cfg, EVENT_BASE_FLAG_IGNORE_ENV), ==, 0);
	base = event_base_new_with_config(cfg);
	if (n > 1) {
		CHECK(base != NULL);
		if (base)
			CHECK(strcmp(event_base_get_method(base), methods[0]) != 0);
	} else {
		CHECK(base == NULL);
	}
	if (base)
		event_base_free(base);
	event_config_free(cfg);

	/* Requiring a feature yields a base that has it, or none. */
	cfg = event_config_new();
	CHECK_INT(event_config_require_features(cfg, EV_FEATURE_FDS), ==, 0);
	base = event_base_new_with_config(cfg);
	if (base) {
		CHECK(event_base_get_features(base) & EV_FEATURE_FDS);
		event_base_free(base);
	}
	event_config_free(cfg);

	CHECK(strcmp(event_get_version(), "2.1.12-stable") == 0);
	CHECK_INT(event_get_version_number(), ==, 0x02010c00);
}

/* --- Timers ----------------------------------------------------------------------------------------------- */

struct timer_rec {
	int order[8];
	long long at[8];
	int n;
	long long start;
};

struct timer_arg {
	struct timer_rec *rec;
	int id;
};

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timer_arg *a = arg;
	(void)fd;
	CHECK_INT(what, ==, EV_TIMEOUT);
	a->rec->order[a->rec->n] = a->id;
	a->rec->at[a->rec->n] = now_us() - a->rec->start;
	a->rec->n++;
}

static void test_timers_order(void)
{
	struct event_base *base = event_base_new();
	struct timer_rec rec = {.n = 0};
	struct timer_arg args[4];
	struct event *ev[4];
	const int ms[4] = {30, 10, 20, 0};
	int i;
	for (i = 0; i < 4; i++) {
		args[i].rec = &rec;
		args[i].id = i;
		ev[i] = evtimer_new(base, timer_cb, &args[i]);
	}
	rec.start = now_us();
	for (i = 0; i < 4; i++) {
		struct timeval tv = {0, ms[i] * 1000};
		CHECK_INT(evtimer_add(ev[i], &tv), ==, 0);
	}
	CHECK(evtimer_pending(ev[0], NULL));
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 4);
	CHECK_INT(rec.order[0], ==, 3);
	CHECK_INT(rec.order[1], ==, 1);
	CHECK_INT(rec.order[2], ==, 2);
	CHECK_INT(rec.order[3], ==, 0);
	for (i = 0; i < 4; i++)
		CHECK_INT(rec.at[i], >=, ms[rec.order[i]] * 1000LL - tolerance_us());
	CHECK(!evtimer_pending(ev[0], NULL));
	for (i = 0; i < 4; i++)
		event_free(ev[i]);
	event_base_free(base);
}

struct persist_rec {
	struct event *ev;
	int n;
	long long start, last;
};

static void persist_cb(evutil_socket_t fd, short what, void *arg)
{
	struct persist_rec *r = arg;
	(void)fd;
	CHECK_INT(what, ==, EV_TIMEOUT);
	/* A persistent timer is pending again while its callback runs. */
	CHECK(evtimer_pending(r->ev, NULL));
	r->n++;
	r->last = now_us() - r->start;
	if (r->n == 5)
		event_del(r->ev);
}

static void test_persistent_timer(void)
{
	struct event_base *base = event_base_new();
	struct persist_rec r = {.n = 0};
	struct timeval tv = {0, 10000};
	r.ev = event_new(base, -1, EV_PERSIST, persist_cb, &r);
	r.start = now_us();
	CHECK_INT(event_add(r.ev, &tv), ==, 0);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(r.n, ==, 5);
	/* Rescheduled one interval after each deadline: five intervals at least. */
	CHECK_INT(r.last, >=, 50000 - tolerance_us());
	event_free(r.ev);
	event_base_free(base);
}

static void test_readd_and_remove_timer(void)
{
	struct event_base *base = event_base_new();
	struct timer_rec rec = {.n = 0};
	struct timer_arg a = {&rec, 1};
	struct event *ev = evtimer_new(base, timer_cb, &a);
	struct timeval long_tv = {100, 0}, short_tv = {0, 5000}, got;
	struct timeval before;
	CHECK_INT(event_add(ev, &long_tv), ==, 0);
	gettimeofday(&before, NULL);
	CHECK(event_pending(ev, EV_TIMEOUT, &got) & EV_TIMEOUT);
	/* event_pending reports the deadline in wall-clock time. */
	CHECK_INT(got.tv_sec, >=, before.tv_sec + 98);
	CHECK_INT(got.tv_sec, <=, before.tv_sec + 101);
	/* Adding again replaces the timeout. */
	rec.start = now_us();
	CHECK_INT(event_add(ev, &short_tv), ==, 0);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 1);
	CHECK_INT(rec.at[0], >=, 5000 - tolerance_us());
	/* event_remove_timer drops the timeout: nothing left. */
	CHECK_INT(event_add(ev, &long_tv), ==, 0);
	CHECK_INT(event_remove_timer(ev), ==, 0);
	CHECK(!event_pending(ev, EV_TIMEOUT, NULL));
	CHECK_INT(event_base_dispatch(base), ==, 1);
	event_free(ev);
	event_base_free(base);
}

static void test_common_timeout(void)
{
	struct event_base *base = event_base_new();
	struct timeval d = {0, 20000}, big = {0, 2500000};
	const struct timeval *c1 = event_base_init_common_timeout(base, &d);
	const struct timeval *c2 = event_base_init_common_timeout(base, &d);
	const struct timeval *c3 = event_base_init_common_timeout(base, &big);
	struct timer_rec rec = {.n = 0};
	struct timer_arg a = {&rec, 0}, b = {&rec, 1};
	struct event *e1, *e2;
	CHECK(c1 != NULL);
	CHECK(c1 == c2);
	CHECK(c3 != NULL && c3 != c1);
	if (c3)
		CHECK_INT(c3->tv_sec, ==, 2);
	e1 = evtimer_new(base, timer_cb, &a);
	e2 = evtimer_new(base, timer_cb, &b);
	rec.start = now_us();
	event_add(e1, c1);
	event_add(e2, c1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 2);
	CHECK_INT(rec.order[0], ==, 0);
	CHECK_INT(rec.order[1], ==, 1);
	CHECK_INT(rec.at[0], >=, 20000 - tolerance_us());
	event_free(e1);
	event_free(e2);
	event_base_free(base);
}

/* --- I/O -------------------------------------------------------------------------------------------------- */

struct io_rec {
	int n;
	short what;
};

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct io_rec *r = arg;
	(void)fd;
	r->n++;
	r->what = what;
}

static void test_level_vs_edge(void)
{
	struct event_base *base = event_base_new();
	int lp[2], ep[2], i;
	struct io_rec lvl = {0, 0}, edge = {0, 0};
	struct event *l, *e;
	make_pipe(lp);
	make_pipe(ep);
	l = event_new(base, lp[0], EV_READ | EV_PERSIST, io_cb, &lvl);
	e = event_new(base, ep[0], EV_READ | EV_PERSIST | EV_ET, io_cb, &edge);
	event_add(l, NULL);
	event_add(e, NULL);
	CHECK_INT(write(lp[1], "x", 1), ==, 1);
	CHECK_INT(write(ep[1], "x", 1), ==, 1);
	/* Nobody reads: level-triggered fires on every pass, edge-triggered once. */
	for (i = 0; i < 3; i++)
		CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(lvl.n, ==, 3);
	CHECK_INT(lvl.what, ==, EV_READ);
	CHECK_INT(edge.n, ==, 1);
	/* libevent hands EV_ET back along with the condition for edge-triggered events. */
	CHECK_INT(edge.what, ==, EV_READ | EV_ET);
	/* A new edge fires again. */
	CHECK_INT(write(ep[1], "y", 1), ==, 1);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(edge.n, ==, 2);
	event_free(l);
	event_free(e);
	close(lp[0]);
	close(lp[1]);
	close(ep[0]);
	close(ep[1]);
	event_base_free(base);
}

static void test_nonpersist_io_and_timeout(void)
{
	struct event_base *base = event_base_new();
	int p[2];
	struct io_rec r = {0, 0};
	struct event *ev;
	struct timeval tv = {0, 20000};
	long long t0;
	make_pipe(p);
	ev = event_new(base, p[0], EV_READ, io_cb, &r);
	/* Nothing to read: the timeout fires, with EV_TIMEOUT only. */
	t0 = now_us();
	event_add(ev, &tv);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(r.n, ==, 1);
	CHECK_INT(r.what, ==, EV_TIMEOUT);
	CHECK_INT(now_us() - t0, >=, 20000 - tolerance_us());
	CHECK(!event_pending(ev, EV_READ | EV_TIMEOUT, NULL));
	/* Readable: EV_READ, and a non-persistent event is no longer pending. */
	CHECK_INT(write(p[1], "x", 1), ==, 1);
	event_add(ev, &tv);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(r.n, ==, 2);
	CHECK_INT(r.what, ==, EV_READ);
	CHECK(!event_pending(ev, EV_READ | EV_TIMEOUT, NULL));
	event_free(ev);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
}

static void test_same_fd(void)
{
	struct event_base *base = event_base_new();
	int sp[2];
	struct io_rec r1 = {0, 0}, r2 = {0, 0}, w = {0, 0};
	struct event *rd1, *rd2, *wr;
	make_socketpair(sp);
	rd1 = event_new(base, sp[0], EV_READ | EV_PERSIST, io_cb, &r1);
	rd2 = event_new(base, sp[0], EV_READ | EV_PERSIST, io_cb, &r2);
	wr = event_new(base, sp[0], EV_WRITE | EV_PERSIST, io_cb, &w);
	CHECK_INT(event_add(rd1, NULL), ==, 0);
	CHECK_INT(event_add(rd2, NULL), ==, 0);
	CHECK_INT(event_add(wr, NULL), ==, 0);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(r1.n, ==, 0);
	CHECK_INT(r2.n, ==, 0);
	CHECK_INT(w.n, ==, 1);
	CHECK_INT(w.what, ==, EV_WRITE);
	CHECK_INT(write(sp[1], "x", 1), ==, 1);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(r1.n, ==, 1);
	CHECK_INT(r2.n, ==, 1);
	CHECK_INT(r1.what, ==, EV_READ);
	CHECK_INT(w.n, ==, 2);
	/* Deleting one reader leaves the other (and the writer) registered. */
	event_del(rd1);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(r1.n, ==, 1);
	CHECK_INT(r2.n, ==, 2);
	CHECK_INT(w.n, ==, 3);
	event_del(wr);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(w.n, ==, 3);
	CHECK_INT(r2.n, ==, 3);
	event_free(rd1);
	event_free(rd2);
	event_free(wr);
	close(sp[0]);
	close(sp[1]);
	event_base_free(base);
}

static void test_closed(void)
{
	struct event_base *base = event_base_new();
	int sp[2], sp2[2];
	struct io_rec c = {0, 0}, rc = {0, 0};
	struct event *ec, *erc;
	make_socketpair(sp);
	make_socketpair(sp2);
	ec = event_new(base, sp[0], EV_CLOSED, io_cb, &c);
	erc = event_new(base, sp2[0], EV_READ | EV_CLOSED, io_cb, &rc);
	event_add(ec, NULL);
	event_add(erc, NULL);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(c.n, ==, 0);
	CHECK_INT(rc.n, ==, 0);
	/* The peer half-closes: EV_CLOSED without reading. */
	shutdown(sp[1], SHUT_WR);
	close(sp2[1]);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(c.n, ==, 1);
	CHECK_INT(c.what, ==, EV_CLOSED);
	CHECK_INT(rc.n, ==, 1);
	CHECK_INT(rc.what, ==, EV_READ | EV_CLOSED);
	event_free(ec);
	event_free(erc);
	close(sp[0]);
	close(sp[1]);
	close(sp2[0]);
	event_base_free(base);
}

/* --- Signals (in a child process) ------------------------------------------------------------------------- */

struct sig_rec {
	int n;
	short what;
	struct event *ev;
};

static void sig_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sig_rec *r = arg;
	CHECK_INT(fd, ==, SIGUSR1);
	r->n++;
	r->what = what;
}

static void sig_delete_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sig_rec *r = arg;
	(void)fd;
	r->n++;
	r->what = what;
	event_del(r->ev);
}

static void test_signals(void)
{
	struct event_base *base = event_base_new();
	struct sig_rec a = {0, 0, NULL}, b = {0, 0, NULL};
	struct event *ea = evsignal_new(base, SIGUSR1, sig_cb, &a);
	struct event *eb = evsignal_new(base, SIGUSR1, sig_delete_cb, &b);
	struct sigaction sa;
	b.ev = eb;
	CHECK_INT(event_get_signal(ea), ==, SIGUSR1);
	CHECK_INT(evsignal_add(ea, NULL), ==, 0);
	CHECK_INT(evsignal_add(eb, NULL), ==, 0);
	CHECK(evsignal_pending(ea, NULL));
	/* Two deliveries before the loop looks: the callback runs twice (ncalls); the event that deletes itself runs
	 * once. */
	raise(SIGUSR1);
	raise(SIGUSR1);
	CHECK_INT(event_base_loop(base, ONE_PASS), ==, 0);
	CHECK_INT(a.n, ==, 2);
	CHECK_INT(a.what, ==, EV_SIGNAL);
	CHECK_INT(b.n, ==, 1);
	CHECK(!evsignal_pending(eb, NULL));
	raise(SIGUSR1);
	event_base_loop(base, ONE_PASS);
	CHECK_INT(a.n, ==, 3);
	CHECK_INT(b.n, ==, 1);
	/* Deleting the last event restores the previous disposition. */
	event_del(ea);
	sigaction(SIGUSR1, NULL, &sa);
	CHECK(sa.sa_handler == SIG_DFL);
	event_free(ea);
	event_free(eb);
	/* A signal number out of range is refused. */
	ea = evsignal_new(base, -1, sig_cb, &a);
	CHECK(event_add(ea, NULL) != 0);
	event_free(ea);
	event_base_free(base);
}

/* --- Priorities and activation ---------------------------------------------------------------------------- */

struct order_rec {
	int order[16];
	int n;
};

struct prio_arg {
	struct order_rec *rec;
	int id;
	struct event *activate; /* activated by this callback, if any */
	struct event *del;      /* deleted by this callback, if any */
	struct event_base *base;
	int brk, cont, write_fd;
};

static void prio_cb(evutil_socket_t fd, short what, void *arg)
{
	struct prio_arg *a = arg;
	(void)fd;
	(void)what;
	a->rec->order[a->rec->n++] = a->id;
	if (a->activate)
		event_active(a->activate, EV_WRITE, 1);
	if (a->del)
		event_del(a->del);
	if (a->write_fd >= 0)
		CHECK_INT(write(a->write_fd, "x", 1), ==, 1);
	if (a->brk)
		event_base_loopbreak(a->base);
	if (a->cont)
		event_base_loopcontinue(a->base);
}

static void test_priorities(void)
{
	struct event_base *base = event_base_new();
	struct order_rec rec = {.n = 0};
	struct prio_arg args[4];
	struct event *ev[4];
	const int pri[4] = {2, 0, 1, 2};
	int i;
	CHECK_INT(event_base_priority_init(base, 3), ==, 0);
	CHECK_INT(event_base_get_npriorities(base), ==, 3);
	for (i = 0; i < 4; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].rec = &rec;
		args[i].id = i;
		args[i].write_fd = -1;
		ev[i] = event_new(base, -1, 0, prio_cb, &args[i]);
		/* New events get the middle priority. */
		CHECK_INT(event_get_priority(ev[i]), ==, 1);
		CHECK_INT(event_priority_set(ev[i], pri[i]), ==, 0);
	}
	CHECK(event_priority_set(ev[0], 3) != 0);
	/* Event 0 (priority 2) activates event 1 (priority 0): it runs before event 3, queued earlier at 2. */
	args[0].activate = ev[1];
	event_active(ev[0], EV_READ, 1);
	event_active(ev[3], EV_READ, 1);
	event_active(ev[2], EV_READ, 1);
	/* Active events cannot change priority; the base cannot change its number of priorities. */
	CHECK(event_priority_set(ev[2], 0) != 0);
	CHECK(event_base_priority_init(base, 5) != 0);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 4);
	CHECK_INT(rec.order[0], ==, 2);
	CHECK_INT(rec.order[1], ==, 0);
	CHECK_INT(rec.order[2], ==, 1);
	CHECK_INT(rec.order[3], ==, 3);
	for (i = 0; i < 4; i++)
		event_free(ev[i]);
	event_base_free(base);
}

static void test_active_and_delete_in_callbacks(void)
{
	struct event_base *base = event_base_new();
	struct order_rec rec = {.n = 0};
	struct prio_arg args[3];
	struct event *ev[3];
	int i;
	for (i = 0; i < 3; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].rec = &rec;
		args[i].id = i;
		args[i].write_fd = -1;
		ev[i] = event_new(base, -1, 0, prio_cb, &args[i]);
	}
	/* 0 deletes 1 (active, queued behind it) and activates 2. */
	args[0].del = ev[1];
	args[0].activate = ev[2];
	event_active(ev[0], EV_READ, 1);
	event_active(ev[1], EV_READ, 1);
	CHECK_INT(event_pending(ev[1], EV_READ | EV_WRITE | EV_TIMEOUT, NULL), ==, EV_READ);
	/* Activating twice merges the conditions. */
	event_active(ev[1], EV_WRITE, 1);
	CHECK_INT(event_pending(ev[1], EV_READ | EV_WRITE | EV_TIMEOUT, NULL), ==, EV_READ | EV_WRITE);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 2);
	CHECK_INT(rec.order[0], ==, 0);
	CHECK_INT(rec.order[1], ==, 2);
	for (i = 0; i < 3; i++)
		event_free(ev[i]);
	event_base_free(base);
}

static void self_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event *self = arg;
	(void)fd;
	(void)what;
	event_free(self);
}

static void test_free_self_in_callback(void)
{
	struct event_base *base = event_base_new();
	struct timeval tv = {0, 1000};
	struct event *ev = event_new(base, -1, EV_PERSIST, self_free_cb, event_self_cbarg());
	CHECK(event_get_callback_arg(ev) == ev);
	event_add(ev, &tv);
	/* The persistent timer frees itself: nothing is left and dispatch returns 1. */
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), ==, 0);
	event_base_free(base);
}

static void running_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event *self = arg;
	struct event_base *base = event_get_base(self);
	(void)fd;
	(void)what;
	CHECK(event_base_get_running_event(base) == self);
	/* The loop cannot be entered again from its own callback. */
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, -1);
}

static void quiet_log(int sev, const char *msg)
{
	(void)sev;
	(void)msg;
}

static void test_running_event_and_reentry(void)
{
	struct event_base *base = event_base_new();
	struct event ev;
	event_set_log_callback(quiet_log);
	event_assign(&ev, base, -1, 0, running_cb, event_self_cbarg());
	event_active(&ev, EV_READ, 1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	/* (Outside callbacks, libevent's event_base_get_running_event dereferences NULL: not asked here.) */
	event_set_log_callback(NULL);
	event_base_free(base);
}

/* --- Loop control ----------------------------------------------------------------------------------------- */

struct tick {
	int n;
	struct event *ev;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tick *t = arg;
	(void)fd;
	(void)what;
	t->n++;
}

static void test_loopexit(void)
{
	struct event_base *base = event_base_new();
	struct tick t = {0, NULL};
	struct timeval tick = {0, 5000}, exit_after = {0, 40000};
	long long t0;
	t.ev = event_new(base, -1, EV_PERSIST, tick_cb, &t);
	event_add(t.ev, &tick);
	t0 = now_us();
	CHECK_INT(event_base_loopexit(base, &exit_after), ==, 0);
	CHECK_INT(event_base_dispatch(base), ==, 0);
	CHECK_INT(now_us() - t0, >=, 40000 - tolerance_us());
	CHECK(t.n >= 1);
	CHECK(event_base_got_exit(base));
	CHECK(!event_base_got_break(base));
	/* loopexit(NULL) before dispatch: the loop runs one pass and stops. */
	t.n = 0;
	event_base_loopexit(base, NULL);
	CHECK_INT(event_base_dispatch(base), ==, 0);
	CHECK(event_base_got_exit(base));
	event_free(t.ev);
	event_base_free(base);
}

static void test_loopbreak(void)
{
	struct event_base *base = event_base_new();
	struct order_rec rec = {.n = 0};
	struct prio_arg args[3];
	struct event *ev[3];
	int i;
	for (i = 0; i < 3; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].rec = &rec;
		args[i].id = i;
		args[i].base = base;
		args[i].write_fd = -1;
		ev[i] = event_new(base, -1, 0, prio_cb, &args[i]);
		event_active(ev[i], EV_READ, 1);
	}
	args[1].brk = 1;
	CHECK_INT(event_base_dispatch(base), ==, 0);
	CHECK_INT(rec.n, ==, 2);
	CHECK(event_base_got_break(base));
	CHECK(!event_base_got_exit(base));
	/* The remaining active event runs on the next dispatch, which clears the flag. */
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 3);
	CHECK(!event_base_got_break(base));
	/* loopbreak before the loop is forgotten when it starts. */
	event_base_loopbreak(base);
	event_active(ev[0], EV_READ, 1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(rec.n, ==, 4);
	for (i = 0; i < 3; i++)
		event_free(ev[i]);
	event_base_free(base);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct prio_arg *a = arg;
	char buf[16];
	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	a->rec->order[a->rec->n++] = a->id;
}

static void loopcontinue_case(int use_continue, struct order_rec *rec)
{
	struct event_base *base = event_base_new();
	struct prio_arg a, b, r;
	struct event *ea, *eb, *er;
	int p[2];
	make_pipe(p);
	event_base_priority_init(base, 2);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&r, 0, sizeof(r));
	a.rec = b.rec = r.rec = rec;
	a.base = base;
	a.id = 0;
	b.id = 1;
	r.id = 2;
	b.write_fd = r.write_fd = -1;
	a.write_fd = p[1];
	a.cont = use_continue;
	ea = event_new(base, -1, 0, prio_cb, &a);
	eb = event_new(base, -1, 0, prio_cb, &b);
	er = event_new(base, p[0], EV_READ, drain_cb, &r);
	event_priority_set(ea, 1);
	event_priority_set(eb, 1);
	event_priority_set(er, 0);
	event_add(er, NULL);
	event_active(ea, EV_READ, 1);
	event_active(eb, EV_READ, 1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	event_free(ea);
	event_free(eb);
	event_free(er);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
}

static void test_loopcontinue(void)
{
	struct order_rec with = {.n = 0}, without = {.n = 0};
	/* a (priority 1) makes a pipe readable for r (priority 0). Without loopcontinue, b (queued behind a) runs
	 * before the loop polls again; with it, the loop polls after a and r's higher priority goes first. */
	loopcontinue_case(0, &without);
	loopcontinue_case(1, &with);
	CHECK_INT(without.n, ==, 3);
	CHECK_INT(without.order[0], ==, 0);
	CHECK_INT(without.order[1], ==, 1);
	CHECK_INT(without.order[2], ==, 2);
	CHECK_INT(with.n, ==, 3);
	CHECK_INT(with.order[0], ==, 0);
	CHECK_INT(with.order[1], ==, 2);
	CHECK_INT(with.order[2], ==, 1);
}

static void test_loop_flags(void)
{
	struct event_base *base = event_base_new();
	struct tick t = {0, NULL};
	struct timeval tv = {0, 5000}, exit_after = {0, 20000};
	t.ev = evtimer_new(base, tick_cb, &t);
	/* EVLOOP_ONCE waits for the timer, runs it and returns. */
	event_add(t.ev, &tv);
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE), ==, 0);
	CHECK_INT(t.n, ==, 1);
	/* EVLOOP_NONBLOCK does not wait. */
	event_add(t.ev, &exit_after);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 0);
	CHECK_INT(t.n, ==, 1);
	event_del(t.ev);
	/* EVLOOP_NO_EXIT_ON_EMPTY keeps running with nothing pending, until loopexit. */
	event_base_loopexit(base, &exit_after);
	event_del(t.ev);
	CHECK_INT(event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY), ==, 0);
	event_free(t.ev);
	event_base_free(base);
}

/* --- event_base_once, foreach, dump, counts, time cache --------------------------------------------------- */

static void once_cb(evutil_socket_t fd, short what, void *arg)
{
	struct io_rec *r = arg;
	(void)fd;
	r->n++;
	r->what = what;
}

static void test_once(void)
{
	struct event_base *base = event_base_new();
	struct io_rec now = {0, 0}, later = {0, 0}, io = {0, 0};
	struct timeval tv = {0, 10000};
	int p[2];
	long long t0 = now_us();
	make_pipe(p);
	CHECK_INT(event_base_once(base, -1, EV_TIMEOUT, once_cb, &now, NULL), ==, 0);
	CHECK_INT(event_base_once(base, -1, EV_TIMEOUT, once_cb, &later, &tv), ==, 0);
	CHECK_INT(event_base_once(base, p[0], EV_READ, once_cb, &io, NULL), ==, 0);
	CHECK(event_base_once(base, SIGUSR2, EV_SIGNAL, once_cb, &io, NULL) != 0);
	CHECK(event_base_once(base, p[0], EV_READ | EV_PERSIST, once_cb, &io, NULL) != 0);
	CHECK_INT(write(p[1], "x", 1), ==, 1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(now.n, ==, 1);
	CHECK_INT(now.what, ==, EV_TIMEOUT);
	CHECK_INT(later.n, ==, 1);
	CHECK_INT(later.what, ==, EV_TIMEOUT);
	CHECK_INT(now_us() - t0, >=, 10000 - tolerance_us());
	CHECK_INT(io.n, ==, 1);
	CHECK_INT(io.what, ==, EV_READ);
	/* A once-event that never fires is released with the base. */
	CHECK_INT(event_base_once(base, p[0], EV_WRITE | EV_READ, once_cb, &io, NULL), ==, 0);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
}

struct foreach_rec {
	int n;
	const struct event *seen[8];
};

static int foreach_cb(const struct event_base *base, const struct event *ev, void *arg)
{
	struct foreach_rec *r = arg;
	(void)base;
	if (event_get_callback(ev) != dummy_cb)
		return 0;
	r->seen[r->n++] = ev;
	return r->n == 3 ? 42 : 0;
}

static int seen(struct foreach_rec *r, const struct event *ev)
{
	int i;
	for (i = 0; i < r->n; i++)
		if (r->seen[i] == ev)
			return 1;
	return 0;
}

static void test_foreach_and_dump(void)
{
	struct event_base *base = event_base_new();
	struct foreach_rec r = {0};
	struct timeval ten = {10, 0};
	int p[2];
	struct event *rd, *tm, *act, *idle;
	FILE *f = tmpfile();
	char buf[4096], line[128];
	size_t len;
	make_pipe(p);
	rd = event_new(base, p[0], EV_READ | EV_PERSIST, dummy_cb, NULL);
	tm = evtimer_new(base, dummy_cb, NULL);
	act = event_new(base, -1, 0, dummy_cb, NULL);
	idle = event_new(base, -1, 0, dummy_cb, NULL);
	event_add(rd, NULL);
	event_add(tm, &ten);
	event_active(act, EV_WRITE, 1);
	CHECK_INT(event_base_foreach_event(NULL, foreach_cb, &r), ==, -1);
	CHECK_INT(event_base_foreach_event(base, NULL, &r), ==, -1);
	/* Three events are known: the callback stops on the third with 42. */
	CHECK_INT(event_base_foreach_event(base, foreach_cb, &r), ==, 42);
	CHECK_INT(r.n, ==, 3);
	CHECK(seen(&r, rd) && seen(&r, tm) && seen(&r, act) && !seen(&r, idle));
	/* Counts: inserted, timeout and active each count once. */
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), ==, 3);
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE), ==, 1);
	CHECK_INT(event_base_get_max_events(base, EVENT_BASE_COUNT_ADDED, 0), ==, 3);

	event_base_dump_events(base, f);
	len = fread(buf, 1, sizeof(buf) - 1, (rewind(f), f));
	buf[len] = 0;
	CHECK(strstr(buf, "Inserted events:\n") != NULL);
	CHECK(strstr(buf, "Active events:\n") != NULL);
	snprintf(line, sizeof(line), "  %p [fd  %d] Read Persist\n", (void *)rd, p[0]);
	CHECK(strstr(buf, line) != NULL);
	snprintf(line, sizeof(line), "  %p [fd  -1] Timeout=", (void *)tm);
	CHECK(strstr(buf, line) != NULL);
	snprintf(line, sizeof(line), "  %p [fd  -1, priority=0] Write active\n", (void *)act);
	CHECK(strstr(buf, line) != NULL);
	fclose(f);

	event_free(rd);
	event_free(tm);
	event_free(act);
	event_free(idle);
	CHECK_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), ==, 0);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
}

struct cache_rec {
	struct timeval a, b;
	int ok;
};

static void cache_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cache_rec *c = arg;
	struct timeval real;
	(void)fd;
	(void)what;
	event_base_gettimeofday_cached(NULL, &c->a);
	usleep(3000);
	event_base_gettimeofday_cached(NULL, &c->b);
	gettimeofday(&real, NULL);
	c->ok = 1;
	/* The cached time does not move inside one callback, and is not in the future (beyond the 4 ms resolution of
	 * CLOCK_MONOTONIC_COARSE, on which libevent and libix both base it: measured 1 in 30 runs ahead otherwise). */
	CHECK(c->a.tv_sec == c->b.tv_sec && c->a.tv_usec == c->b.tv_usec);
	long long ahead_us = (c->a.tv_sec - real.tv_sec) * 1000000LL + (c->a.tv_usec - real.tv_usec);
	CHECK_INT(ahead_us, <=, 10000);
}

/* The 1.4 API, on the current base. */
static void test_compat(void)
{
	struct event_base *base = event_init();
	struct event ev, ev2;
	struct cache_rec c = {{0, 0}, {0, 0}, 0};
	struct timeval tv = {0, 1000};
	struct event_base *other = event_base_new();
	CHECK(base != NULL);
	evtimer_set(&ev, cache_cb, &c);
	CHECK(ev.ev_base == base);
	CHECK_INT(evtimer_add(&ev, &tv), ==, 0);
	CHECK_INT(event_dispatch(), ==, 1);
	CHECK(c.ok);
	/* event_base_set moves an idle event to another base. */
	event_set(&ev2, -1, 0, dummy_cb, NULL);
	CHECK_INT(event_base_set(other, &ev2), ==, 0);
	CHECK(event_get_base(&ev2) == other);
	event_active(&ev2, EV_READ, 1);
	CHECK(event_base_set(base, &ev2) != 0);
	CHECK_INT(event_base_loop(other, 0), ==, 1);
	CHECK_INT(event_priority_init(2), ==, 0);
	CHECK_INT(event_base_get_npriorities(NULL), ==, 2);
	CHECK_INT(event_loopexit(NULL), ==, 0);
	CHECK_INT(event_loop(0), ==, 0);
	event_base_free(other);
	event_base_free(NULL); /* frees the current base */
}

static void test_get_assignment(void)
{
	struct event_base *base = event_base_new(), *b = NULL;
	int x, fd = 0;
	short what = 0;
	event_callback_fn cb = NULL;
	void *arg = NULL;
	struct event *ev = event_new(base, 5, EV_WRITE, dummy_cb, &x);
	event_get_assignment(ev, &b, &fd, &what, &cb, &arg);
	CHECK(b == base);
	CHECK_INT(fd, ==, 5);
	CHECK_INT(what, ==, EV_WRITE);
	CHECK(cb == dummy_cb);
	CHECK(arg == &x);
	event_get_assignment(ev, NULL, NULL, NULL, NULL, NULL);
	CHECK_INT(event_get_fd(ev), ==, 5);
	CHECK_INT(event_get_events(ev), ==, EV_WRITE);
	CHECK(event_get_base(ev) == base);
	/* EV_SIGNAL with I/O conditions is refused. */
	CHECK(event_new(base, SIGUSR1, EV_SIGNAL | EV_READ, dummy_cb, NULL) == NULL);
	event_free(ev);
	event_base_free(base);
}

/* --- Finalizers ------------------------------------------------------------------------------------------- */

static int finalized;

static void fin_cb(struct event *ev, void *arg)
{
	(void)ev;
	finalized += *(int *)arg;
}

static void test_finalize(void)
{
	struct event_base *base = event_base_new();
	int one = 1, ten = 10;
	struct event ev;
	struct event *heap_ev;
	struct timeval tv = {100, 0};
	finalized = 0;
	event_assign(&ev, base, -1, 0, dummy_cb, &one);
	event_add(&ev, &tv);
	heap_ev = event_new(base, -1, 0, dummy_cb, &ten);
	event_add(heap_ev, &tv);
	CHECK_INT(event_finalize(0, &ev, fin_cb), ==, 0);
	CHECK_INT(event_free_finalize(0, heap_ev, fin_cb), ==, 0);
	/* Finalizing events are deleted and cannot be added again. */
	CHECK(!event_pending(&ev, EV_TIMEOUT, NULL));
	CHECK(event_add(&ev, &tv) != 0);
	CHECK_INT(finalized, ==, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(finalized, ==, 11);
	/* Pending finalizers run when the base is freed. */
	event_assign(&ev, base, -1, 0, dummy_cb, &one);
	event_finalize(0, &ev, fin_cb);
	event_base_free(base);
	CHECK_INT(finalized, ==, 12);
}

/* --- Threads ---------------------------------------------------------------------------------------------- */

struct thread_arg {
	struct event_base *base;
	struct event *ev;
	int fired;
};

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct thread_arg *t = arg;
	(void)fd;
	(void)what;
	t->fired++;
	event_base_loopbreak(t->base);
}

static void *activator(void *p)
{
	struct thread_arg *t = p;
	usleep(20000);
	event_active(t->ev, EV_READ, 1);
	return NULL;
}

static void *breaker(void *p)
{
	struct thread_arg *t = p;
	usleep(20000);
	event_base_loopbreak(t->base);
	return NULL;
}

/* evthread_use_pthreads() was called in main() before any base. */
static void test_threads(void)
{
	struct thread_arg t;
	pthread_t th;
	t.base = event_base_new();
	t.fired = 0;
	t.ev = event_new(t.base, -1, 0, wake_cb, &t);
	/* The loop sleeps with nothing pending; another thread's event_active wakes it. */
	pthread_create(&th, NULL, activator, &t);
	CHECK_INT(event_base_loop(t.base, EVLOOP_NO_EXIT_ON_EMPTY), ==, 0);
	pthread_join(th, NULL);
	CHECK_INT(t.fired, ==, 1);
	/* So does another thread's loopbreak. */
	pthread_create(&th, NULL, breaker, &t);
	CHECK_INT(event_base_loop(t.base, EVLOOP_NO_EXIT_ON_EMPTY), ==, 0);
	pthread_join(th, NULL);
	CHECK(event_base_got_break(t.base));
	CHECK_INT(evthread_make_base_notifiable(t.base), ==, 0);
	event_free(t.ev);
	event_base_free(t.base);
}

/* --- Child-process tests ---------------------------------------------------------------------------------- */

static size_t mm_allocs, mm_frees;

static void *guard_malloc(size_t n)
{
	char *p = malloc(n + 16);
	memcpy(p, "{[<guardedram>]}", 16);
	mm_allocs++;
	return p + 16;
}

static void *guard_realloc(void *p, size_t n)
{
	char *q;
	if (!p)
		return guard_malloc(n);
	q = realloc((char *)p - 16, n + 16);
	return q + 16;
}

static void guard_free(void *p)
{
	if (!p)
		return;
	CHECK(memcmp((char *)p - 16, "{[<guardedram>]}", 16) == 0);
	mm_frees++;
	free((char *)p - 16);
}

static void test_mem_functions(void)
{
	struct event_base *base;
	struct event *ev;
	event_set_mem_functions(guard_malloc, guard_realloc, guard_free);
	base = event_base_new();
	CHECK(base != NULL);
	CHECK(memcmp((char *)base - 16, "{[<guardedram>]}", 16) == 0);
	ev = event_new(base, -1, 0, dummy_cb, NULL);
	CHECK(memcmp((char *)ev - 16, "{[<guardedram>]}", 16) == 0);
	event_free(ev);
	event_base_free(base);
	CHECK(mm_allocs >= 2);
	CHECK(mm_frees >= 2);
}

static void test_debug_mode_catches_unassigned(void)
{
	struct event ev;
	struct event_base *base;
	event_enable_debug_mode();
	base = event_base_new();
	memset(&ev, 0, sizeof(ev));
	ev.ev_base = base; /* looks plausible, but was never assigned */
	event_set_log_callback(quiet_log);
	event_add(&ev, NULL);
	/* not reached: debug mode aborts */
	exit(0);
}

/* libevent_core's deferred callbacks on an embedded struct event_callback: internal exports, but the ones
 * libevent_extra (evhttp, evdns) is built on, so a libevent_core stand-in must behave as libevent here. */
typedef void (*deferred_cb_fn)(struct event_callback *, void *);
void event_deferred_cb_init_(struct event_callback *, ev_uint8_t, deferred_cb_fn, void *);
void event_deferred_cb_set_priority_(struct event_callback *, ev_uint8_t);
void event_deferred_cb_cancel_(struct event_base *, struct event_callback *);
int event_deferred_cb_schedule_(struct event_base *, struct event_callback *);

struct deferred_probe {
	struct event_callback cb;
	struct event_base *base;
	int runs, again;
	char order[8];
	char name;
};

static void deferred_probe_cb(struct event_callback *cb, void *arg)
{
	struct deferred_probe *p = arg;
	CHECK(cb == &p->cb);
	p->runs++;
	size_t n = strlen(p->order);
	if (n + 1 < sizeof(p->order))
		p->order[n] = p->name;
	if (p->again > 0) {
		p->again--;
		CHECK_INT(event_deferred_cb_schedule_(p->base, &p->cb), ==, 1);
	}
}

static char deferred_shared_order[8];
static void deferred_order_cb(struct event_callback *cb, void *arg)
{
	(void)cb;
	size_t n = strlen(deferred_shared_order);
	if (n + 1 < sizeof(deferred_shared_order))
		deferred_shared_order[n] = *(char *)arg;
}

static void deferred_free_self_cb(struct event_callback *cb, void *arg)
{
	*(int *)arg += 1;
	free(cb); /* evdns frees its reply struct from the callback this way */
}

static void test_deferred_callbacks(void)
{
	struct event_base *base = event_base_new();
	struct deferred_probe p;
	memset(&p, 0, sizeof(p));
	p.base = base;
	p.name = 'a';
	event_deferred_cb_init_(&p.cb, 0, deferred_probe_cb, &p);

	/* Scheduled twice before the loop: runs once, from the loop. */
	CHECK_INT(event_deferred_cb_schedule_(base, &p.cb), ==, 1);
	CHECK_INT(event_deferred_cb_schedule_(base, &p.cb), ==, 0);
	CHECK_INT(p.runs, ==, 0);
	(void)event_base_loop(base, EVLOOP_NONBLOCK); /* 1 in libevent too: no event is added */
	CHECK_INT(p.runs, ==, 1);

	/* Cancelled: does not run; cancelling again (or an idle callback) is harmless. */
	CHECK_INT(event_deferred_cb_schedule_(base, &p.cb), ==, 1);
	event_deferred_cb_cancel_(base, &p.cb);
	event_deferred_cb_cancel_(base, &p.cb);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 1); /* nothing pending */
	CHECK_INT(p.runs, ==, 1);

	/* Rescheduled from its own callback: a pending deferred callback keeps a plain loop going until done. */
	p.again = 3;
	CHECK_INT(event_deferred_cb_schedule_(base, &p.cb), ==, 1);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK_INT(p.runs, ==, 5);

	/* A callback that frees its own struct. */
	int freed = 0;
	struct event_callback *heap_cb = malloc(sizeof(*heap_cb));
	event_deferred_cb_init_(heap_cb, 0, deferred_free_self_cb, &freed);
	CHECK_INT(event_deferred_cb_schedule_(base, heap_cb), ==, 1);
	(void)event_base_loop(base, EVLOOP_NONBLOCK); /* 1 in libevent too: no event is added */
	CHECK_INT(freed, ==, 1);
	event_base_free(base);

	/* Priorities: the lower number runs first whatever the scheduling order; set_priority moves one. */
	base = event_base_new();
	CHECK_INT(event_base_priority_init(base, 3), ==, 0);
	struct event_callback low, mid, high;
	char l = 'l', m = 'm', h = 'h';
	event_deferred_cb_init_(&low, 2, deferred_order_cb, &l);
	event_deferred_cb_init_(&mid, 2, deferred_order_cb, &m);
	event_deferred_cb_init_(&high, 2, deferred_order_cb, &h);
	event_deferred_cb_set_priority_(&high, 0);
	event_deferred_cb_set_priority_(&mid, 1);
	CHECK_INT(event_deferred_cb_schedule_(base, &low), ==, 1);
	CHECK_INT(event_deferred_cb_schedule_(base, &mid), ==, 1);
	CHECK_INT(event_deferred_cb_schedule_(base, &high), ==, 1);
	while (strlen(deferred_shared_order) < 3 && event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) == 0)
		;
	CHECK(strcmp(deferred_shared_order, "hml") == 0);
	event_base_free(base);

	/* A NULL base means event_init()'s (evdns bases made without a base rely on it). */
	struct event_base *legacy = event_init();
	memset(&p, 0, sizeof(p));
	p.name = 'n';
	event_deferred_cb_init_(&p.cb, 0, deferred_probe_cb, &p);
	CHECK_INT(event_deferred_cb_schedule_(NULL, &p.cb), ==, 1);
	(void)event_loop(EVLOOP_NONBLOCK);
	CHECK_INT(p.runs, ==, 1);
	CHECK_INT(event_deferred_cb_schedule_(NULL, &p.cb), ==, 1);
	event_deferred_cb_cancel_(NULL, &p.cb);
	CHECK_INT(event_loop(EVLOOP_NONBLOCK), ==, 1);
	CHECK_INT(p.runs, ==, 1);
	event_base_free(legacy);
}

/* An fd deleted from a base, closed, and its number reused by a new file before the loop runs again: the new
 * file's event must fire (libix keeps a deleted fd's epoll registration until the next wait; a close must drop it). */
static int recycled_fired;
static void recycled_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)arg;
	if (what & EV_READ)
		recycled_fired++;
}

static void test_recycled_fd_after_delete(void)
{
	struct event_base *base = event_base_new();
	int p1[2], p2[2];
	CHECK_INT(pipe(p1), ==, 0);
	struct event *a = event_new(base, p1[0], EV_READ | EV_PERSIST, recycled_cb, NULL);
	CHECK_INT(event_add(a, NULL), ==, 0);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 0);
	CHECK_INT(event_del(a), ==, 0);
	int old = p1[0];
	close(p1[0]);
	close(p1[1]);
	CHECK_INT(pipe(p2), ==, 0);
	CHECK_INT(p2[0], ==, old); /* the lowest free number comes back */
	struct event *b = event_new(base, p2[0], EV_READ | EV_PERSIST, recycled_cb, NULL);
	CHECK_INT(event_add(b, NULL), ==, 0);
	CHECK_INT(write(p2[1], "x", 1), ==, 1);
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE), ==, 0);
	CHECK_INT(recycled_fired, ==, 1);

	/* The same events deleted and re-added between two loops keep working. */
	CHECK_INT(event_del(b), ==, 0);
	CHECK_INT(event_add(b, NULL), ==, 0);
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE), ==, 0);
	CHECK_INT(recycled_fired, ==, 2);
	/* Deleted for good: the still-readable pipe reports nothing. */
	CHECK_INT(event_del(b), ==, 0);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 1);
	CHECK_INT(recycled_fired, ==, 2);

	/* dup2 onto a deleted fd replaces its file: the new file's event must fire too. */
	int p3[2];
	CHECK_INT(pipe(p3), ==, 0);
	CHECK_INT(event_add(b, NULL), ==, 0);
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), ==, 0); /* reports the pending byte */
	CHECK_INT(recycled_fired, ==, 3);
	CHECK_INT(event_del(b), ==, 0);
	char c;
	CHECK_INT(read(p2[0], &c, 1), ==, 1);
	CHECK_INT(dup2(p3[0], p2[0]), ==, p2[0]);
	CHECK_INT(event_add(b, NULL), ==, 0);
	CHECK_INT(write(p3[1], "y", 1), ==, 1);
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE), ==, 0);
	CHECK_INT(recycled_fired, ==, 4);

	event_free(a);
	event_free(b);
	close(p2[0]);
	close(p2[1]);
	close(p3[0]);
	close(p3[1]);
	event_base_free(base);
}

/* Timers with equal deadlines (added from one callback, on the loop's cached time) fire in the order of libevent's
 * min-heap, which is not the order of adding: libix's heap moves as libevent's does. */
static char equal_order[16];
static struct event *equal_ev[7];
static void equal_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	size_t n = strlen(equal_order);
	if (n + 1 < sizeof(equal_order))
		equal_order[n] = *(char *)arg;
}

static void equal_add_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct timeval tv = {0, 20000};
	for (int i = 0; i < 7; i++)
		CHECK_INT(evtimer_add(equal_ev[i], &tv), ==, 0);
	CHECK_INT(evtimer_del(equal_ev[2]), ==, 0);
}

static void test_equal_deadlines_order(void)
{
	struct event_base *base = event_base_new();
	static char names[] = "abcdefg";
	for (int i = 0; i < 7; i++)
		equal_ev[i] = evtimer_new(base, equal_cb, &names[i]);
	struct timeval zero = {0, 0};
	CHECK_INT(event_base_once(base, -1, EV_TIMEOUT, equal_add_cb, NULL, &zero), ==, 0);
	CHECK_INT(event_base_dispatch(base), ==, 1);
	CHECK(strcmp(equal_order, "afedgb") == 0);
	if (strcmp(equal_order, "afedgb") != 0)
		fprintf(stderr, "  order: %s\n", equal_order);
	for (int i = 0; i < 7; i++)
		event_free(equal_ev[i]);
	event_base_free(base);
}

static void test_fork_reinit(void)
{
	struct event_base *base = event_base_new();
	int p[2], status;
	struct io_rec r = {0, 0};
	struct event *ev;
	pid_t pid;
	make_pipe(p);
	ev = event_new(base, p[0], EV_READ | EV_PERSIST, io_cb, &r);
	event_add(ev, NULL);
	pid = fork();
	if (pid == 0) {
		if (event_reinit(base) != 0)
			_exit(3);
		if (write(p[1], "x", 1) != 1)
			_exit(4);
		event_base_loop(base, EVLOOP_ONCE);
		_exit(r.n == 1 && r.what == EV_READ ? 0 : 5);
	}
	CHECK_INT(waitpid(pid, &status, 0), ==, pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	event_free(ev);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
}

typedef void (*test_fn)(void);

static void run(const char *name, test_fn fn)
{
	int before = failures;
	current_test = name;
	fn();
	printf("%s %s\n", failures == before ? "ok  " : "FAIL", name);
}

/* Runs `fn` in a child; `expect_signal`: the child must die of that signal instead of exiting cleanly. */
static void run_child(const char *name, test_fn fn, int expect_signal)
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
	if (expect_signal) {
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == expect_signal);
	} else {
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	printf("%s %s\n", (expect_signal ? WIFSIGNALED(status) && WTERMSIG(status) == expect_signal
					 : WIFEXITED(status) && WEXITSTATUS(status) == 0)
			      ? "ok  "
			      : "FAIL",
	    name);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run_child("mem_functions", test_mem_functions, 0);
	run_child("debug_mode_catches_unassigned", test_debug_mode_catches_unassigned, SIGABRT);
	run_child("signals", test_signals, 0);

	run("layout", test_layout);
	run("struct_fields", test_struct_fields);
	run("base_basics", test_base_basics);
	run("timers_order", test_timers_order);
	run("persistent_timer", test_persistent_timer);
	run("readd_and_remove_timer", test_readd_and_remove_timer);
	run("common_timeout", test_common_timeout);
	run("level_vs_edge", test_level_vs_edge);
	run("nonpersist_io_and_timeout", test_nonpersist_io_and_timeout);
	run("same_fd", test_same_fd);
	run("closed", test_closed);
	run("priorities", test_priorities);
	run("active_and_delete_in_callbacks", test_active_and_delete_in_callbacks);
	run("free_self_in_callback", test_free_self_in_callback);
	run("running_event_and_reentry", test_running_event_and_reentry);
	run("loopexit", test_loopexit);
	run("loopbreak", test_loopbreak);
	run("loopcontinue", test_loopcontinue);
	run("loop_flags", test_loop_flags);
	run("once", test_once);
	run("foreach_and_dump", test_foreach_and_dump);
	run("compat", test_compat);
	run("get_assignment", test_get_assignment);
	run("finalize", test_finalize);
	run("deferred_callbacks", test_deferred_callbacks);
	run("recycled_fd_after_delete", test_recycled_fd_after_delete);
	run("equal_deadlines_order", test_equal_deadlines_order);
	run("fork_reinit", test_fork_reinit);

	CHECK_INT(evthread_use_pthreads(), ==, 0);
	run("threads", test_threads);

	printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
	return failures ? 1 : 0;
}
