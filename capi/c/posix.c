/* The C-variadic POSIX calls libix interposes: fcntl(2) and ioctl(2). Each reads its one optional argument (as
 * glibc's own wrappers do, an unsigned long) and calls the Rust body in capi/posix.rs; capi/variadic.rs exports
 * the public names. */
#include <stdarg.h>

int ixc_rs_fcntl(int fd, int cmd, unsigned long arg);
int ixc_rs_ioctl(int fd, unsigned long request, unsigned long arg);

int ixc_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;
	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	return ixc_rs_fcntl(fd, cmd, arg);
}

int ixc_ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	unsigned long arg;
	va_start(ap, request);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	return ixc_rs_ioctl(fd, request, arg);
}

int ixc_fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;
	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	return ixc_rs_fcntl(fd, cmd, arg);
}
