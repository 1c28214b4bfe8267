/* evbuffer differential trace: a seeded random sequence of operations (add, prepend, drain, remove, reserve and
 * commit with 1-4 iovecs, expand, pullup, add/remove/prepend_buffer, search, search_eol, readln in every style,
 * add_reference, copyout_from, printf), printing every result, the length, the contiguous space and the number of
 * chains the data occupies (peek's count). Built against libix and against Debian's libevent, the two outputs for a
 * seed must be byte-identical: that checks libevent's chain layout (what reserve hands out, where data lands) as
 * well as every return value. Also traced: every callback invocation (orig_size, n_added, n_deleted), evbuffer_read
 * and evbuffer_write_atmost on a socketpair, add_iovec, peek and search_range from positions. Usage: evbuffer_trace SEED STEPS.
 *
 *   gcc -O1 -I compat/include c-tests/evbuffer_trace.c -L target/release -lix -o trace_ix
 *   gcc -O1 c-tests/evbuffer_trace.c -levent_core -o trace_le
 *   cmp <(./trace_ix 7 3000) <(./trace_le 7 3000)
 */
#include <event2/buffer.h>
#include <event2/buffer_compat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t st;
static uint32_t rnd(void)
{
	st ^= st << 13;
	st ^= st >> 7;
	st ^= st << 17;
	return (uint32_t)st;
}
static char src[70000];
static const char lent[] = "REFERENCED-BYTES-0123456789";
static void nop_cleanup(const void *d, size_t l, void *a)
{
	(void)d;
	(void)l;
	(void)a;
}

/* Every callback invocation is part of the trace. */
static void trace_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	(void)arg;
	printf(" {cb %zu +%zu -%zu}", info->orig_size, info->n_added, info->n_deleted);
}

/* Reads and discards whatever is waiting on a non-blocking socket. */
static void discard(int fd)
{
	char sink[8192];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
}

static unsigned sum(struct evbuffer *b)
{
	static char tmp[1 << 20];
	size_t n = evbuffer_get_length(b);
	unsigned s = 0;
	size_t i;
	if (n > sizeof(tmp))
		n = sizeof(tmp);
	evbuffer_copyout(b, tmp, n);
	for (i = 0; i < n; i++)
		s = s * 31 + (unsigned char)tmp[i];
	return s;
}

int main(int argc, char **argv)
{
	struct evbuffer *b = evbuffer_new(), *o = evbuffer_new();
	int sp[2];
	int steps = argc > 2 ? atoi(argv[2]) : 2000, i, k;
	st = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
	st = st * 2654435761u + 1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		return 2;
	for (i = 0; i < 2; i++) {
		int one = 1 << 20;
		setsockopt(sp[i], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
		setsockopt(sp[i], SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	}
	evbuffer_add_cb(b, trace_cb, NULL);
	/* Data with every end-of-line byte; the tail (used as printf's %s) has no NUL before its end. */
	for (i = 0; i < (int)sizeof(src); i++)
		src[i] = "abcd\r\n\0xy"[rnd() % 9];
	for (i = 60000; i < (int)sizeof(src) - 1; i++)
		if (!src[i])
			src[i] = 'z';
	src[sizeof(src) - 1] = 0;
	/* The reading end never blocks: leftovers are discarded after each step. */
	{
		int fl = fcntl(sp[0], F_GETFL);
		fcntl(sp[0], F_SETFL, fl | O_NONBLOCK);
	}
	for (i = 0; i < steps; i++) {
		int op = rnd() % 22, r = 0;
		size_t len = rnd() % 5000;
		if (rnd() % 4 == 0)
			len = rnd() % 40;
		if (rnd() % 16 == 0)
			len = rnd() % 20000;
		struct evbuffer_iovec v[4];
		struct evbuffer_ptr p;
		char out[20000];
		char *line;
		size_t n = 0;
		switch (op) {
		case 0: r = evbuffer_add(b, src + rnd() % 40000, len); printf("add %zu -> %d", len, r); break;
		case 1: r = evbuffer_prepend(b, src + rnd() % 40000, len); printf("prepend %zu -> %d", len, r); break;
		case 2: r = evbuffer_drain(b, len); printf("drain %zu -> %d", len, r); break;
		case 3: r = evbuffer_remove(b, out, len); printf("remove %zu -> %d", len, r); break;
		case 4: {
			int nv = 1 + rnd() % 4, got = evbuffer_reserve_space(b, (ev_ssize_t)len, v, nv), used = 0;
			printf("reserve %zu/%d -> %d [", len, nv, got);
			for (k = 0; k < got; k++)
				printf("%zu ", v[k].iov_len);
			printf("]");
			if (got > 0) {
				size_t fill = rnd() % (len + 1);
				for (k = 0; k < got; k++) {
					size_t t = v[k].iov_len < fill ? v[k].iov_len : fill;
					memcpy(v[k].iov_base, src + k * 7, t);
					v[k].iov_len = t;
					fill -= t;
					used = k + 1;
					if (!fill)
						break;
				}
				printf(" commit %d -> %d", used, evbuffer_commit_space(b, v, used));
			}
			break;
		}
		case 5: r = evbuffer_expand(b, len); printf("expand %zu -> %d", len, r); break;
		case 6: printf("pullup %zu -> %s", len, evbuffer_pullup(b, (ev_ssize_t)len) ? "ptr" : "null"); break;
		case 7: evbuffer_add(o, src + rnd() % 40000, len); r = evbuffer_add_buffer(b, o); printf("add_buffer %zu -> %d", len, r); break;
		case 8: r = evbuffer_remove_buffer(b, o, len); printf("remove_buffer %zu -> %d olen=%zu", len, r, evbuffer_get_length(o)); evbuffer_drain(o, 1 << 30); break;
		case 9: {
			char pat[3] = {src[rnd() % 100], src[rnd() % 100], 0};
			p = evbuffer_search(b, pat, 1 + rnd() % 2, NULL);
			printf("search -> %ld", (long)p.pos);
			break;
		}
		case 10: line = evbuffer_readln(b, &n, rnd() % 5); printf("readln -> %s %zu", line ? "line" : "null", n); free(line); break;
		case 11: r = evbuffer_add_reference(b, lent, rnd() % sizeof(lent), nop_cleanup, NULL); printf("add_reference -> %d", r); break;
		case 12: evbuffer_add(o, src + rnd() % 40000, len); r = evbuffer_prepend_buffer(b, o); printf("prepend_buffer %zu -> %d", len, r); break;
		case 13: if (evbuffer_ptr_set(b, &p, len, EVBUFFER_PTR_SET) == 0) printf("copyout_from %zu -> %ld", len, (long)evbuffer_copyout_from(b, &p, out, rnd() % 3000)); else printf("ptr_set %zu -> -1", len); break;
		case 14: r = evbuffer_add_printf(b, "%s-%d", src + 60000 + rnd() % 9000, (int)len); printf("printf -> %d", r); break;
		case 16: {
			/* evbuffer_read: FIONREAD says what waits; at most 4096 per call. */
			int howmuch = (int)(rnd() % 6000) - 1000;
			size_t w = len % 9000;
			if (write(sp[1], src + rnd() % 40000, w) != (ssize_t)w)
				return 3;
			r = evbuffer_read(b, sp[0], howmuch);
			printf("read %zu/%d -> %d", w, howmuch < 0 ? -1 : howmuch, r);
			break;
		}
		case 17: r = evbuffer_write_atmost(b, sp[1], (ev_ssize_t)len - 100); printf("write_atmost %zd -> %d", (ev_ssize_t)len - 100, r); break;
		case 18:
			/* (Not add_buffer_reference: libevent's pullup then writes into the shared chain's spare room, which
			 * libix does not do, so later layouts legitimately differ. evbuffer_test.c checks its contents.) */
			for (k = 0; k < 3; k++) {
				v[k].iov_base = src + rnd() % 40000;
				v[k].iov_len = (rnd() % 3) * (len / 3);
			}
			printf("add_iovec -> %zu", evbuffer_add_iovec(b, v, 3));
			break;
		case 19: {
			int got;
			if (evbuffer_ptr_set(b, &p, len, EVBUFFER_PTR_SET) != 0) {
				printf("peek_at %zu -> bad ptr", len);
				break;
			}
			got = evbuffer_peek(b, (ev_ssize_t)(rnd() % 9000) - 1, &p, v, 4);
			printf("peek_at %zu -> %d", len, got);
			for (k = 0; k < got && k < 4; k++)
				printf(" %zu", v[k].iov_len);
			break;
		}
		case 20: {
			struct evbuffer_ptr e;
			char pat[3] = {src[rnd() % 100], src[rnd() % 100], 0};
			size_t at = rnd() % 3000;
			if (evbuffer_ptr_set(b, &p, len, EVBUFFER_PTR_SET) != 0 || evbuffer_ptr_set(b, &e, len + at, EVBUFFER_PTR_SET) != 0) {
				printf("search_range -> bad ptr");
				break;
			}
			p = evbuffer_search_range(b, pat, 1 + rnd() % 2, &p, &e);
			printf("search_range %zu..%zu -> %ld", len, len + at, (long)p.pos);
			break;
		}
		case 21: {
			char *l = evbuffer_readline(b);
			printf("readline -> %s", l ? "line" : "null");
			free(l);
			break;
		}
		case 15: {
			size_t eol = 99;
			p = evbuffer_search_eol(b, NULL, &eol, rnd() % 5);
			printf("search_eol -> %ld %zu", (long)p.pos, eol);
			break;
		}
		}
		discard(sp[0]);
		printf(" | len=%zu contig=%zu peek=%d", evbuffer_get_length(b), evbuffer_get_contiguous_space(b),
		    evbuffer_peek(b, -1, NULL, NULL, 0));
		if (i % 50 == 0)
			printf(" sum=%u", sum(b));
		printf("\n");
	}
	evbuffer_free(b);
	evbuffer_free(o);
	close(sp[0]);
	close(sp[1]);
	return 0;
}
