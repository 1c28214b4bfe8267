/* Differential trace of bufferevent behaviour: a seeded random sequence of operations on a bufferevent pair, a
 * filter over a pair, and two socket bufferevents over a socketpair, printing every callback (which, when, with
 * what buffer lengths and flags) and the state after each step. Built against libix and against Debian's libevent
 * (CMake: bufferevent_trace, bufferevent_trace_libevent), the two outputs must be identical.
 *
 *   usage: bufferevent_trace SEED STEPS
 *
 * The socket bufferevent's peer is a plain descriptor the trace writes to directly, so one bufferevent is the only
 * socket activity and no readiness order between loops can differ; nothing depends on time (no timeouts, no rate
 * limits).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

static unsigned long long rng;
static unsigned next_rand(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng >> 33) % n);
}

#define NBEV 6
static struct bufferevent *bevs[NBEV];
static const char *names[NBEV] = {"pairA", "pairB", "fpairA", "fpairB", "filter", "sock0"};
static int peer_fd;
static int drain_in_cb[NBEV];

/* A callback left at the high watermark without draining is called again and again (libevent's rule), which
 * would never end: the callbacks of one step are bounded, and the read callback drains at the mark. */
static int callbacks_this_step;
static void count_callback(void)
{
	if (++callbacks_this_step > 10000) {
		printf("more than 10000 callbacks in one step\n");
		exit(1);
	}
}

static void readcb(struct bufferevent *bev, void *arg)
{
	int i = (int)(long)arg;
	count_callback();
	printf("  R %s in=%zu out=%zu en=%d\n", names[i], evbuffer_get_length(bev->input), evbuffer_get_length(bev->output),
	    bufferevent_get_enabled(bev));
	if (drain_in_cb[i])
		evbuffer_drain(bev->input, drain_in_cb[i]);
	if (bev->wm_read.high && evbuffer_get_length(bev->input) >= bev->wm_read.high)
		evbuffer_drain(bev->input, evbuffer_get_length(bev->input));
}

static void writecb(struct bufferevent *bev, void *arg)
{
	int i = (int)(long)arg;
	count_callback();
	printf("  W %s in=%zu out=%zu\n", names[i], evbuffer_get_length(bev->input), evbuffer_get_length(bev->output));
}

static void eventcb(struct bufferevent *bev, short what, void *arg)
{
	int i = (int)(long)arg;
	count_callback();
	printf("  E %s what=0x%x in=%zu out=%zu\n", names[i], what, evbuffer_get_length(bev->input),
	    evbuffer_get_length(bev->output));
}

/* A filter that moves at most 700 bytes per call and rot13s letters on the way in. */
static enum bufferevent_filter_result filt_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *ctx)
{
	(void)ctx;
	size_t n = evbuffer_get_length(src);
	if (n == 0)
		return BEV_NEED_MORE;
	if (n > 700)
		n = 700;
	if (lim >= 0 && (size_t)lim < n)
		n = (size_t)lim;
	char buf[700];
	evbuffer_remove(src, buf, n);
	for (size_t i = 0; i < n; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = 'a' + (buf[i] - 'a' + 13) % 26;
	evbuffer_add(dst, buf, n);
	printf("  F in moved=%zu lim=%zd mode=%d\n", n, lim, (int)mode);
	return BEV_OK;
}

static enum bufferevent_filter_result filt_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *ctx)
{
	(void)ctx;
	size_t n = evbuffer_get_length(src);
	if (lim >= 0 && (size_t)lim < n)
		n = (size_t)lim;
	evbuffer_remove_buffer(src, dst, n);
	printf("  F out moved=%zu lim=%zd mode=%d\n", n, lim, (int)mode);
	return BEV_OK;
}

static void state(void)
{
	for (int i = 0; i < NBEV; i++) {
		size_t lo, hi, wlo, whi;
		bufferevent_getwatermark(bevs[i], EV_READ, &lo, &hi);
		bufferevent_getwatermark(bevs[i], EV_WRITE, &wlo, &whi);
		printf("  %s in=%zu out=%zu en=%d wm=%zu/%zu,%zu/%zu\n", names[i], evbuffer_get_length(bevs[i]->input),
		    evbuffer_get_length(bevs[i]->output), bufferevent_get_enabled(bevs[i]), lo, hi, wlo, whi);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SEED STEPS\n", argv[0]);
		return 2;
	}
	rng = strtoull(argv[1], NULL, 10) * 2654435761ULL + 1;
	int steps = atoi(argv[2]);
	struct event_base *base = event_base_new();
	struct bufferevent *p[2], *fp[2];
	bufferevent_pair_new(base, 0, p);
	bufferevent_pair_new(base, 0, fp);
	bevs[0] = p[0];
	bevs[1] = p[1];
	bevs[2] = fp[0];
	bevs[3] = fp[1];
	bevs[4] = bufferevent_filter_new(fp[0], filt_in, filt_out, 0, NULL, NULL);
	int fds[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	/* Odd seeds: the socket bufferevent defers its callbacks. */
	int sock_opts = BEV_OPT_CLOSE_ON_FREE | (strtoull(argv[1], NULL, 10) % 2 ? BEV_OPT_DEFER_CALLBACKS : 0);
	bevs[5] = bufferevent_socket_new(base, fds[0], sock_opts);
	peer_fd = fds[1];
	for (int i = 0; i < NBEV; i++)
		if (i != 2) /* fpairA's callbacks belong to the filter */
			bufferevent_setcb(bevs[i], readcb, writecb, eventcb, (void *)(long)i);
	static char data[8192];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = 'a' + i % 26;

	for (int step = 0; step < steps; step++) {
		int i = (int)next_rand(NBEV);
		struct bufferevent *b = bevs[i];
		callbacks_this_step = 0;
		switch (next_rand(11)) {
		case 0:
		case 1: {
			size_t n = next_rand(3000);
			if (i == 5 && next_rand(2)) {
				printf("%d peer_write %zu -> %zd\n", step, n, write(peer_fd, data, n));
				break;
			}
			printf("%d write %s %zu\n", step, names[i], n);
			bufferevent_write(b, data, n);
			break;
		}
		case 2: {
			short ev = next_rand(2) ? EV_READ : EV_WRITE;
			size_t lo = next_rand(3) * 400, hi = next_rand(3) * 1000;
			if (hi && hi < lo)
				hi = lo + 1;
			/* A read high watermark under a filter whose own input is full makes libevent re-run the filter's
			 * read callback forever without progress (both implementations do): not traced. */
			if (i == 2 && ev == EV_READ)
				hi = 0;
			printf("%d setwatermark %s %d %zu %zu\n", step, names[i], ev, lo, hi);
			bufferevent_setwatermark(b, ev, lo, hi);
			break;
		}
		case 3: {
			short ev = (short)(2 << next_rand(2)) | (next_rand(3) == 0 ? EV_READ | EV_WRITE : 0);
			printf("%d enable %s %d\n", step, names[i], ev);
			bufferevent_enable(b, ev);
			break;
		}
		case 4: {
			short ev = (short)(2 << next_rand(2));
			printf("%d disable %s %d\n", step, names[i], ev);
			bufferevent_disable(b, ev);
			break;
		}
		case 5: {
			size_t n = next_rand(2500);
			printf("%d drain %s %zu\n", step, names[i], n);
			evbuffer_drain(b->input, n);
			break;
		}
		case 6: {
			drain_in_cb[i] = (int)next_rand(3) * 500;
			printf("%d drain_in_cb %s %d\n", step, names[i], drain_in_cb[i]);
			break;
		}
		case 7: {
			short io = (short)(2 << next_rand(2));
			int mode = (int)next_rand(3);
			int r = bufferevent_flush(b, io, (enum bufferevent_flush_mode)mode);
			printf("%d flush %s %d %d -> %d\n", step, names[i], io, mode, r);
			break;
		}
		case 8: {
			short io = (short)(2 << next_rand(2));
			int opts = (next_rand(2) ? BEV_TRIG_IGNORE_WATERMARKS : 0) |
			    (next_rand(2) ? BEV_TRIG_DEFER_CALLBACKS : 0);
			printf("%d trigger %s %d 0x%x\n", step, names[i], io, opts);
			bufferevent_trigger(b, io, opts);
			break;
		}
		case 9: {
			short what = next_rand(2) ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
			int opts = next_rand(2) ? BEV_TRIG_DEFER_CALLBACKS : 0;
			printf("%d trigger_event %s 0x%x 0x%x\n", step, names[i], what, opts);
			bufferevent_trigger_event(b, what, opts);
			break;
		}
		default: {
			printf("%d loop\n", step);
			event_base_loop(base, EVLOOP_NONBLOCK);
			break;
		}
		}
		state();
	}
	for (int i = 0; i < NBEV; i++)
		if (i != 2)
			bufferevent_free(bevs[i]);
	bufferevent_free(bevs[2]);
	close(peer_fd);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
	printf("done\n");
	return 0;
}
