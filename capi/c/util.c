/* Variadic and va_list entry points of evutil (event2/util.h). Stable Rust cannot define C-variadic functions,
 * so their bodies live here under internal names (ixc_*); capi/variadic.rs exports the public names as jumps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

int ixc_evutil_vsnprintf(char *buf, size_t buflen, const char *format, va_list ap)
{
	/* As libevent: nothing written for an empty buffer, always NUL-terminated, returns what vsnprintf returns. */
	int r;
	if (!buflen)
		return 0;
	r = vsnprintf(buf, buflen, format, ap);
	buf[buflen - 1] = '\0';
	return r;
}

int ixc_evutil_snprintf(char *buf, size_t buflen, const char *format, ...)
{
	int r;
	va_list ap;
	va_start(ap, format);
	r = ixc_evutil_vsnprintf(buf, buflen, format, ap);
	va_end(ap);
	return r;
}
