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

/* libevent's internal logging entry points (event_warn, event_err, ... from log-internal.h, exported by
 * libevent_core and called by programs built on its internals). The message is formatted here as libevent does
 * (1024-byte buffer; ": <strerror>" appended when it fits) and handed to the Rust side, which owns the log
 * callback, debug mask and fatal callback. capi/util.rs registers the sink before main. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { IXC_LOG_DEBUG = 0, IXC_LOG_MSG = 1, IXC_LOG_WARN = 2, IXC_LOG_ERR = 3 };

typedef void (*ixc_log_sink_fn)(int severity, const char *msg, int fatal, int exit_code);
static ixc_log_sink_fn log_sink;

void ixc_set_log_sink(ixc_log_sink_fn sink)
{
	log_sink = sink;
}

static void deliver(int severity, const char *errstr, int fatal, int exit_code, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t len;
	if (fmt)
		ixc_evutil_vsnprintf(buf, sizeof(buf), fmt, ap);
	else
		buf[0] = '\0';
	if (errstr) {
		len = strlen(buf);
		if (len < sizeof(buf) - 3)
			ixc_evutil_snprintf(buf + len, sizeof(buf) - len, ": %s", errstr);
	}
	if (log_sink) {
		log_sink(severity, buf, fatal, exit_code);
	} else {
		/* Only before libix's constructor has run (another library's constructor logging): libevent's default
		 * output, without the application's callback, which cannot have been set yet either. */
		static const char *const names[] = {"debug", "msg", "warn", "err"};
		if (severity != IXC_LOG_DEBUG)
			fprintf(stderr, "[%s] %s\n", severity >= 0 && severity <= 3 ? names[severity] : "???", buf);
	}
	if (fatal)
		exit(exit_code); /* the sink ends the process; this is never reached */
}

void ixc_event_err(int eval, const char *fmt, ...)
{
	va_list ap;
	const char *errstr = strerror(errno);
	va_start(ap, fmt);
	deliver(IXC_LOG_ERR, errstr, 1, eval, fmt, ap);
	va_end(ap);
}

void ixc_event_warn(const char *fmt, ...)
{
	va_list ap;
	const char *errstr = strerror(errno);
	va_start(ap, fmt);
	deliver(IXC_LOG_WARN, errstr, 0, 0, fmt, ap);
	va_end(ap);
}

/* On Unix a socket's error is errno (evutil_socket_geterror), so the socket argument is not consulted. */
void ixc_event_sock_err(int eval, int sock, const char *fmt, ...)
{
	va_list ap;
	const char *errstr = strerror(errno);
	(void)sock;
	va_start(ap, fmt);
	deliver(IXC_LOG_ERR, errstr, 1, eval, fmt, ap);
	va_end(ap);
}

void ixc_event_sock_warn(int sock, const char *fmt, ...)
{
	va_list ap;
	const char *errstr = strerror(errno);
	(void)sock;
	va_start(ap, fmt);
	deliver(IXC_LOG_WARN, errstr, 0, 0, fmt, ap);
	va_end(ap);
}

void ixc_event_errx(int eval, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	deliver(IXC_LOG_ERR, NULL, 1, eval, fmt, ap);
	va_end(ap);
}

void ixc_event_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	deliver(IXC_LOG_WARN, NULL, 0, 0, fmt, ap);
	va_end(ap);
}

void ixc_event_msgx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	deliver(IXC_LOG_MSG, NULL, 0, 0, fmt, ap);
	va_end(ap);
}

void ixc_event_debugx_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	deliver(IXC_LOG_DEBUG, NULL, 0, 0, fmt, ap);
	va_end(ap);
}

void ixc_event_logv_(int severity, const char *errstr, const char *fmt, va_list ap)
{
	deliver(severity, errstr, 0, 0, fmt, ap);
}
