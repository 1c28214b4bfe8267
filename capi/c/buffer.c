/* Variadic and va_list entry points of evbuffer (event2/buffer.h). Stable Rust cannot define C-variadic functions,
 * so their bodies live here under internal names (ixc_*); capi/variadic.rs exports the public names as jumps.
 *
 * Formatting goes straight into the buffer, as libevent does: reserve one contiguous region (at least 64 bytes),
 * format into it, and if the text did not fit, reserve room for all of it and format again; then commit exactly the
 * text (not the NUL), which runs the buffer's callbacks once. */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <event2/buffer.h>

int ixc_evbuffer_add_vprintf(struct evbuffer *buf, const char *fmt, va_list ap)
{
	struct evbuffer_iovec space;
	size_t want = 64;
	for (;;) {
		va_list aq;
		int sz;
		if (evbuffer_reserve_space(buf, (ev_ssize_t)want, &space, 1) != 1)
			return -1;
		va_copy(aq, ap);
		sz = vsnprintf(space.iov_base, space.iov_len, fmt, aq);
		va_end(aq);
		if (sz < 0 || sz == INT_MAX)
			return -1;
		if ((size_t)sz < space.iov_len) {
			space.iov_len = (size_t)sz;
			if (evbuffer_commit_space(buf, &space, 1) < 0)
				return -1;
			return sz;
		}
		want = (size_t)sz + 1;
	}
}

int ixc_evbuffer_add_printf(struct evbuffer *buf, const char *fmt, ...)
{
	int r;
	va_list ap;
	va_start(ap, fmt);
	r = ixc_evbuffer_add_vprintf(buf, fmt, ap);
	va_end(ap);
	return r;
}
