/* POSIX TCP and UDP sockets against the Linux stack: plain POSIX C, no libix header. Run under LD_PRELOAD=libix.so
 * (the sockets on the dataplane's address become dataplane sockets) and, as the control, without it on a kernel
 * that owns the same address: both runs must pass, which shows the test checks POSIX behaviour.
 *
 * Environment:
 *   POSIX_DP_IP    our address (198.18.0.1)           POSIX_PEER_IP  the Linux peer's (198.18.0.2)
 *   POSIX_PEER     command prefix running c-tests/peer.py on the peer, split on spaces
 *                  ("ip netns exec NS python3 .../peer.py")
 *   POSIX_PORT     base of our listening ports (each case adds its own offset; 127.0.0.1 must have it free)
 *   POSIX_IDLE     optional command run (prefix, split on spaces, + "start" | "case N" | "end") that exits 0 when
 *                  the dataplane is idle (no TCP connection, every mbuf back); retried for up to 20 s while this
 *                  program keeps the dataplane running (poll on a kernel fd)
 *   POSIX_CASES    optional comma-separated case numbers to run (default all)
 *   POSIX_UNROUTABLE  optional: an address outside our subnet that nothing routes (case 18 is skipped without)
 * Usage: posix_socket_test   (exit status 0: every case passed)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *dp_ip, *peer_ip;
static char *peer_prefix, *idle_prefix;
static int base_port;
static int current_case;
static int idle_pipe[2] = {-1, -1}; /* never readable: poll on it waits (and runs the dataplane) */
static volatile sig_atomic_t sigpipes;
/* Hidden from the compiler so that it lets the test pass bad arguments. */
static void *volatile null_ptr;
static volatile int minus_one = -1;

/* ---- bookkeeping: fds and children a case opened, released at its end whatever happened ---- */
#define MAX_TRACK 256
static int tracked[MAX_TRACK];
static int ntracked;
static pid_t children[16];
static int child_out[16];
static int nchildren;

static void fail_msg(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_msg(int line, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	fprintf(stderr, "FAIL case %d (line %d): ", current_case, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " [errno %d %s]\n", e, strerror(e));
}

#define CHECK(cond, ...)                                                                                           \
	do {                                                                                                       \
		if (!(cond)) {                                                                                     \
			fail_msg(__LINE__, __VA_ARGS__);                                                           \
			return -1;                                                                                 \
		}                                                                                                  \
	} while (0)
/* A call that must fail with errno E. */
#define CHECK_ERR(call, E, what)                                                                                   \
	do {                                                                                                       \
		errno = 0;                                                                                         \
		long r_ = (long)(call);                                                                            \
		CHECK(r_ == -1 && errno == (E), "%s: expected -1/%s, got %ld", what, strerror(E), r_);            \
	} while (0)

static int track(int fd)
{
	if (fd >= 0 && ntracked < MAX_TRACK)
		tracked[ntracked++] = fd;
	return fd;
}

/* Closes a tracked fd; returns close's result. */
static int xclose(int fd)
{
	for (int i = 0; i < ntracked; i++)
		if (tracked[i] == fd) {
			tracked[i] = tracked[--ntracked];
			break;
		}
	return close(fd);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits ms milliseconds in poll(2) on a kernel fd (the dataplane keeps running meanwhile under libix). */
static void idle_wait(int ms)
{
	struct pollfd p = {.fd = idle_pipe[0], .events = POLLIN};
	poll(&p, 1, ms);
}

/* ---- the byte pattern (c-tests/peer.py's pat) ---- */
#define PAT_PERIOD 64256
static unsigned char pat_at(uint64_t i)
{
	uint64_t j = i % PAT_PERIOD;
	return (unsigned char)((j % 251) + (j / 251));
}
static void pat_fill(unsigned char *b, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat_at(off + i);
}
/* Offset of the first byte that differs from the pattern, or -1. */
static long pat_check(const unsigned char *b, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat_at(off + i))
			return (long)i;
	return -1;
}

/* ---- addresses ---- */
static struct sockaddr_in sin_of(const char *ip, int port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}
static int same_ip(const struct sockaddr_in *a, const char *ip)
{
	struct in_addr x;
	inet_pton(AF_INET, ip, &x);
	return a->sin_family == AF_INET && a->sin_addr.s_addr == x.s_addr;
}
static const char *fmt_sin(const struct sockaddr_in *a)
{
	static char buf[4][40];
	static int k;
	char ip[INET_ADDRSTRLEN];
	k = (k + 1) % 4;
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	snprintf(buf[k], sizeof buf[k], "%s:%d", ip, ntohs(a->sin_port));
	return buf[k];
}

/* ---- the Linux peer: peer.py run through POSIX_PEER, its stdout on a pipe ---- */
static int split_into(char *s, char **argv, int max)
{
	int n = 0;
	for (char *t = strtok(s, " "); t && n < max - 1; t = strtok(NULL, " "))
		argv[n++] = t;
	return n;
}

/* Spawns PREFIX ARGS... (NULL-terminated) without libix (LD_PRELOAD and IX_* removed); *out: its stdout. */
static pid_t spawn(const char *prefix, int *out, ...)
{
	char *copy = strdup(prefix);
	char *argv[64];
	int n = split_into(copy, argv, 48);
	va_list ap;
	va_start(ap, out);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 62;)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	char *envp[256];
	int ne = 0;
	for (char **e = environ; *e && ne < 255; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "IX_", 3) != 0)
			envp[ne++] = *e;
	envp[ne] = NULL;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		free(copy);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		/* Only raw system calls here: the parent's dataplane state must not be touched by the child. */
		syscall(SYS_dup3, p[1], 1, 0);
		syscall(SYS_close_range, 3, ~0U, 0);
		execvpe(argv[0], argv, envp);
		_exit(127);
	}
	close(p[1]);
	free(copy);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	/* The pipe stays open until the child is reaped (wait_child forwards what is left to our stdout). */
	if (out)
		*out = p[0];
	if (nchildren < 16) {
		child_out[nchildren] = p[0];
		children[nchildren++] = pid;
	} else {
		close(p[0]);
	}
	return pid;
}

static pid_t spawn_peer(int *out, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
			const char *a6, const char *a7)
{
	return spawn(peer_prefix, out, a1, a2, a3, a4, a5, a6, a7, (char *)NULL);
}

/* Waits (bounded) for a line starting with `word` on a child's stdout. */
static int wait_line(int fd, const char *word, int timeout_ms)
{
	char buf[512];
	size_t len = 0;
	long end = now_ms() + timeout_ms;
	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = 0;
		if (strstr(buf, word))
			return 0;
		if (len > sizeof buf / 2)
			len = 0;
	}
	return -1;
}

/* Waits (bounded, running the dataplane) for a child; returns its exit status, or -1 (then it is killed). */
static int wait_child(pid_t pid, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 || now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			st = -1;
			break;
		}
		idle_wait(5);
	}
	for (int i = 0; i < nchildren; i++)
		if (children[i] == pid) {
			char buf[4096];
			ssize_t n;
			fcntl(child_out[i], F_SETFL, O_NONBLOCK);
			while ((n = read(child_out[i], buf, sizeof buf)) > 0)
				fwrite(buf, 1, (size_t)n, stdout);
			close(child_out[i]);
			nchildren--;
			children[i] = children[nchildren];
			child_out[i] = child_out[nchildren];
			break;
		}
	if (st == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A Linux peer server (peer.py ARGS...) that printed "ready"; *pid set. */
static int peer_server(pid_t *pid, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
	int out = -1;
	*pid = spawn_peer(&out, a1, a2, a3, a4, a5, NULL, NULL);
	if (*pid < 0)
		return -1;
	return wait_line(out, "ready", 10000);
}

/* Runs POSIX_IDLE with `what` until it succeeds (up to 20 s); 0 when not configured. */
static int check_idle(const char *what)
{
	if (!idle_prefix)
		return 0;
	long end = now_ms() + 20000;
	for (;;) {
		/* The last attempt prints the counters, so a failure says what was left. */
		const char *say = now_ms() + 1000 >= end ? "verbose" : "quiet";
		pid_t pid = spawn(idle_prefix, NULL, what, say, (char *)NULL);
		if (pid > 0 && wait_child(pid, 10000) == 0)
			return 0;
		if (now_ms() >= end)
			return -1;
		idle_wait(200);
	}
}

/* ---- I/O helpers (blocking sockets) ---- */
static int write_all(int fd, const unsigned char *b, size_t n, int flags)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = send(fd, b + done, n - done, flags);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}
static int send_pattern(int fd, uint64_t off, size_t n, int flags)
{
	unsigned char b[4096];
	while (n > 0) {
		size_t k = n < sizeof b ? n : sizeof b;
		pat_fill(b, k, off);
		if (write_all(fd, b, k, flags) != 0)
			return -1;
		off += k;
		n -= k;
	}
	return 0;
}
/* Reads exactly n pattern bytes from offset off; -2 on a mismatch, -1 on error/EOF. */
static int recv_pattern(int fd, uint64_t off, size_t n)
{
	unsigned char b[4096];
	while (n > 0) {
		ssize_t r = read(fd, b, n < sizeof b ? n : sizeof b);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (pat_check(b, (size_t)r, off) >= 0)
			return -2;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r = poll(&p, 1, timeout_ms);
	return r == 1 ? p.revents : r;
}
static int tcp_socket(int flags)
{
	return track(socket(AF_INET, SOCK_STREAM | flags, 0));
}
static int listener_on(const char *ip, int port, int flags)
{
	int fd = tcp_socket(flags);
	int one = 1;
	struct sockaddr_in a = sin_of(ip, port);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0)
		return -1;
	return fd;
}
static int connect_to(const char *ip, int port, int flags)
{
	int fd = tcp_socket(flags);
	struct sockaddr_in a = sin_of(ip, port);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		return -1;
	return fd;
}
static const char *num(int v)
{
	static char buf[8][16];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof buf[k], "%d", v);
	return buf[k];
}

/* ------------------------------------------------------------------------------------------------------------ */
/* 1. Server role, blocking: 4 MiB echoed byte-exact; names; accept4 flags. */
static int case_server_blocking(void)
{
	const size_t total = 4u << 20;
	int port = base_port + 1;
	int ls = listener_on(dp_ip, port, 0);
	CHECK(ls >= 0, "listen on %s:%d", dp_ip, port);
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	CHECK(getsockname(ls, (struct sockaddr *)&a, &alen) == 0 && same_ip(&a, dp_ip) && ntohs(a.sin_port) == port,
	      "listener getsockname %s", fmt_sin(&a));
	pid_t pid = spawn_peer(NULL, "tcp-pattern-client", dp_ip, num(port), "--bytes", num((int)total), "--timeout",
			       "30");
	CHECK(pid > 0, "spawn peer");
	struct sockaddr_in peer;
	socklen_t plen = sizeof peer;
	int c = track(accept(ls, (struct sockaddr *)&peer, &plen));
	CHECK(c >= 0, "accept");
	CHECK(plen == sizeof peer && same_ip(&peer, peer_ip), "accept's peer address %s", fmt_sin(&peer));
	alen = sizeof a;
	CHECK(getsockname(c, (struct sockaddr *)&a, &alen) == 0 && same_ip(&a, dp_ip) && ntohs(a.sin_port) == port,
	      "getsockname %s", fmt_sin(&a));
	struct sockaddr_in p2;
	alen = sizeof p2;
	CHECK(getpeername(c, (struct sockaddr *)&p2, &alen) == 0 && p2.sin_addr.s_addr == peer.sin_addr.s_addr &&
		      p2.sin_port == peer.sin_port,
	      "getpeername %s vs %s", fmt_sin(&p2), fmt_sin(&peer));
	static unsigned char buf[65536];
	uint64_t got = 0;
	uint32_t sum = 0;
	for (;;) {
		ssize_t n = read(c, buf, sizeof buf);
		CHECK(n >= 0, "read after %llu bytes", (unsigned long long)got);
		if (n == 0)
			break;
		long bad = pat_check(buf, (size_t)n, got);
		CHECK(bad < 0, "received byte %llu differs", (unsigned long long)(got + (uint64_t)bad));
		for (ssize_t i = 0; i < n; i++)
			sum = sum * 31 + buf[i];
		got += (uint64_t)n;
		CHECK(write_all(c, buf, (size_t)n, 0) == 0, "write echo at %llu", (unsigned long long)got);
	}
	CHECK(got == total, "received %llu bytes, expected %zu", (unsigned long long)got, total);
	printf("  case 1: echoed %llu bytes, checksum %08x\n", (unsigned long long)got, sum);
	CHECK(xclose(c) == 0, "close");
	CHECK(wait_child(pid, 30000) == 0, "Linux client failed (see its output)");

	/* accept4 flags; options set on the listener are inherited by what it accepts */
	int yes = 1;
	CHECK(setsockopt(ls, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes) == 0, "TCP_NODELAY on the listener");
	CHECK(setsockopt(ls, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes) == 0, "SO_KEEPALIVE on the listener");
	struct timeval rto = {2, 0};
	CHECK(setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO on the listener");
	pid_t p1 = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "eof", NULL, NULL, NULL);
	int c1 = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
	CHECK(c1 >= 0, "accept4(SOCK_NONBLOCK|SOCK_CLOEXEC)");
	pid_t p2pid = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "eof", NULL, NULL, NULL);
	int c2 = track(accept4(ls, NULL, NULL, 0));
	CHECK(c2 >= 0, "accept4(0)");
	int fl = fcntl(c1, F_GETFL), fd = fcntl(c1, F_GETFD);
	CHECK(fl >= 0 && (fl & O_NONBLOCK) && (fl & O_ACCMODE) == O_RDWR, "accept4 NONBLOCK: F_GETFL %#x", fl);
	CHECK(fd >= 0 && (fd & FD_CLOEXEC), "accept4 CLOEXEC: F_GETFD %#x", fd);
	fl = fcntl(c2, F_GETFL);
	fd = fcntl(c2, F_GETFD);
	CHECK(fl >= 0 && !(fl & O_NONBLOCK), "accept4(0): F_GETFL %#x", fl);
	CHECK(fd == 0, "accept4(0): F_GETFD %#x", fd);
	int v = -1;
	socklen_t vlen = sizeof v;
	CHECK(getsockopt(c2, IPPROTO_TCP, TCP_NODELAY, &v, &vlen) == 0 && v == 1, "TCP_NODELAY inherited: %d", v);
	v = -1;
	CHECK(getsockopt(c2, SOL_SOCKET, SO_KEEPALIVE, &v, &vlen) == 0 && v == 1, "SO_KEEPALIVE inherited: %d", v);
	struct timeval got_rto = {0, 0};
	socklen_t tlen = sizeof got_rto;
	CHECK(getsockopt(c2, SOL_SOCKET, SO_RCVTIMEO, &got_rto, &tlen) == 0 && got_rto.tv_sec == 2,
	      "SO_RCVTIMEO inherited: %ld", (long)got_rto.tv_sec);
	CHECK_ERR(read(c1, buf, 10), EAGAIN, "read on an empty SOCK_NONBLOCK socket");
	CHECK(fcntl(c1, F_SETFD, 0) == 0 && fcntl(c1, F_GETFD) == 0, "F_SETFD 0");
	CHECK(xclose(c1) == 0 && xclose(c2) == 0, "close accepted");
	CHECK(wait_child(p1, 15000) == 0 && wait_child(p2pid, 15000) == 0, "Linux clients expecting EOF");
	CHECK(xclose(ls) == 0, "close listener");
	return 0;
}

/* 2. Server role, non-blocking + poll: EAGAIN, POLLIN/POLLOUT, FIONREAD, MSG_PEEK, MSG_DONTWAIT; 20 clients echoed
 * with readv/writev and recv/send. */
#define NCLIENTS 20
struct conn {
	int fd;
	int idx;
	unsigned char buf[32768];
	size_t len;
	uint64_t rx;
	int eof;
};
static struct conn conns[NCLIENTS];

static int case_server_nonblocking(void)
{
	int port = base_port + 2;
	int ls = listener_on(dp_ip, port, SOCK_NONBLOCK);
	CHECK(ls >= 0, "listen");
	CHECK_ERR(accept(ls, NULL, NULL), EAGAIN, "accept with no connection");
	CHECK(wait_fd(ls, POLLIN, 0) == 0, "poll on an idle listener");
	pid_t quiet = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "recv 5;send 1000;eof", NULL, NULL, NULL);
	CHECK(wait_fd(ls, POLLIN, 10000) == POLLIN, "listener POLLIN for a connection");
	int c = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
	CHECK(c >= 0, "accept4");
	unsigned char b[2048];
	struct iovec iov[2] = {{b, 10}, {b + 10, 10}};
	CHECK_ERR(recv(c, b, sizeof b, 0), EAGAIN, "recv on an empty socket");
	CHECK_ERR(read(c, b, sizeof b), EAGAIN, "read on an empty socket");
	CHECK_ERR(readv(c, iov, 2), EAGAIN, "readv on an empty socket");
	int r = wait_fd(c, POLLIN, 200);
	CHECK(r == 0, "POLLIN on an empty socket: revents %#x", r);
	r = wait_fd(c, POLLOUT, 0);
	CHECK(r == POLLOUT, "POLLOUT on an idle connection: revents %#x", r);
	r = wait_fd(c, POLLIN | POLLOUT, 1000);
	CHECK(r == POLLOUT, "POLLIN|POLLOUT on an idle connection: revents %#x", r);
	int avail = -1;
	CHECK(ioctl(c, FIONREAD, &avail) == 0 && avail == 0, "FIONREAD on an empty socket: %d", avail);
	CHECK(send_pattern(c, 0, 5, 0) == 0, "send 5");
	long end = now_ms() + 10000;
	do {
		wait_fd(c, POLLIN, 100);
		CHECK(ioctl(c, FIONREAD, &avail) == 0, "FIONREAD");
	} while (avail < 1000 && now_ms() < end);
	CHECK(avail == 1000, "FIONREAD %d, expected 1000", avail);
	r = wait_fd(c, POLLIN, 0);
	CHECK(r & POLLIN, "POLLIN with data: %#x", r);
	CHECK(recv(c, b, 100, MSG_PEEK) == 100 && pat_check(b, 100, 0) < 0, "MSG_PEEK 100");
	CHECK(recv(c, b, 100, MSG_PEEK) == 100 && pat_check(b, 100, 0) < 0, "MSG_PEEK again");
	CHECK(ioctl(c, FIONREAD, &avail) == 0 && avail == 1000, "FIONREAD after MSG_PEEK: %d", avail);
	CHECK(recv(c, b, 300, 0) == 300 && pat_check(b, 300, 0) < 0, "recv 300");
	CHECK(readv(c, iov, 2) == 20 && pat_check(b, 20, 300) < 0, "readv 20");
	ssize_t n = recv(c, b, sizeof b, 0);
	CHECK(n == 680 && pat_check(b, 680, 320) < 0, "recv the rest: %zd", n);
	CHECK_ERR(recv(c, b, sizeof b, 0), EAGAIN, "recv once drained");
	CHECK(ioctl(c, FIONREAD, &avail) == 0 && avail == 0, "FIONREAD drained: %d", avail);
	CHECK(fcntl(c, F_SETFL, 0) == 0 && !(fcntl(c, F_GETFL) & O_NONBLOCK), "F_SETFL blocking");
	CHECK_ERR(recv(c, b, sizeof b, MSG_DONTWAIT), EAGAIN, "MSG_DONTWAIT on a blocking socket");
	int on = 1;
	CHECK(ioctl(c, FIONBIO, &on) == 0 && (fcntl(c, F_GETFL) & O_NONBLOCK), "FIONBIO");
	CHECK(xclose(c) == 0, "close");
	CHECK(wait_child(quiet, 10000) == 0, "quiet client");

	/* NCLIENTS at once */
	const int each = 262144;
	pid_t pid = spawn_peer(NULL, "tcp-pattern-client", dp_ip, num(port), "--bytes", num(each), "--conns",
			       num(NCLIENTS));
	int accepted = 0, done = 0, spurious = 0;
	end = now_ms() + 60000;
	while (done < NCLIENTS && now_ms() < end) {
		struct pollfd pf[NCLIENTS + 1];
		struct conn *who[NCLIENTS + 1];
		int np = 0;
		if (accepted < NCLIENTS) {
			pf[np] = (struct pollfd){.fd = ls, .events = POLLIN};
			who[np++] = NULL;
		}
		for (int i = 0; i < accepted; i++) {
			struct conn *k = &conns[i];
			if (k->fd < 0)
				continue;
			short ev = 0;
			if (!k->eof && k->len < sizeof k->buf)
				ev |= POLLIN;
			if (k->len > 0)
				ev |= POLLOUT;
			pf[np] = (struct pollfd){.fd = k->fd, .events = ev};
			who[np++] = k;
		}
		r = poll(pf, (nfds_t)np, 1000);
		CHECK(r >= 0, "poll");
		for (int i = 0; i < np; i++) {
			if (!pf[i].revents)
				continue;
			CHECK(!(pf[i].revents & (POLLNVAL | POLLERR)), "poll revents %#x", pf[i].revents);
			if (!who[i]) {
				for (;;) {
					int nc = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
					if (nc < 0) {
						CHECK(errno == EAGAIN, "accept4");
						break;
					}
					CHECK(accepted < NCLIENTS, "more connections than clients");
					conns[accepted] = (struct conn){.fd = nc, .idx = accepted};
					accepted++;
				}
				continue;
			}
			struct conn *k = who[i];
			if ((pf[i].revents & (POLLIN | POLLHUP)) && !k->eof && k->len < sizeof k->buf) {
				size_t room = sizeof k->buf - k->len;
				if (k->idx % 2 == 0) {
					struct iovec v[2] = {{k->buf + k->len, room / 2},
							     {k->buf + k->len + room / 2, room - room / 2}};
					n = readv(k->fd, v, 2);
				} else {
					n = recv(k->fd, k->buf + k->len, room, 0);
				}
				if (n < 0) {
					CHECK(errno == EAGAIN, "read on conn %d", k->idx);
					if (pf[i].revents & POLLIN)
						spurious++;
				} else if (n == 0) {
					k->eof = 1;
				} else {
					long bad = pat_check(k->buf + k->len, (size_t)n, k->rx);
					CHECK(bad < 0, "conn %d: byte %llu differs", k->idx,
					      (unsigned long long)(k->rx + (uint64_t)bad));
					k->rx += (uint64_t)n;
					k->len += (size_t)n;
				}
			}
			if (k->len > 0) {
				if (k->idx % 2 == 0) {
					struct iovec v[2] = {{k->buf, k->len / 2}, {k->buf + k->len / 2, k->len - k->len / 2}};
					n = writev(k->fd, v, 2);
				} else {
					n = send(k->fd, k->buf, k->len, MSG_DONTWAIT);
				}
				if (n < 0) {
					CHECK(errno == EAGAIN, "write on conn %d", k->idx);
				} else {
					memmove(k->buf, k->buf + n, k->len - (size_t)n);
					k->len -= (size_t)n;
				}
			}
			if (k->eof && k->len == 0) {
				CHECK(k->rx == (uint64_t)each, "conn %d: EOF after %llu bytes", k->idx,
				      (unsigned long long)k->rx);
				CHECK(xclose(k->fd) == 0, "close conn %d", k->idx);
				k->fd = -1;
				done++;
			}
		}
	}
	CHECK(done == NCLIENTS, "%d of %d connections finished (accepted %d)", done, NCLIENTS, accepted);
	CHECK(spurious == 0, "%d reads found nothing after poll said POLLIN", spurious);
	CHECK(wait_child(pid, 30000) == 0, "Linux clients");
	CHECK(xclose(ls) == 0, "close listener");
	return 0;
}

struct reader {
	int fd;
	size_t n;
	int result;
};
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	r->result = recv_pattern(r->fd, 0, r->n);
	return NULL;
}

/* 3. Client role: blocking connect, 4 MiB both ways; non-blocking connect; refused; two threads on a socket. */
static int case_client(void)
{
	const uint64_t total = 4u << 20;
	pid_t srv;
	CHECK(peer_server(&srv, "tcp-echo-server", "9000", "--seconds", "60", NULL) == 0, "Linux echo server");
	int c = connect_to(peer_ip, 9000, 0);
	CHECK(c >= 0, "blocking connect to %s:9000", peer_ip);
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	CHECK(getpeername(c, (struct sockaddr *)&a, &alen) == 0 && same_ip(&a, peer_ip) && ntohs(a.sin_port) == 9000,
	      "getpeername %s", fmt_sin(&a));
	alen = sizeof a;
	CHECK(getsockname(c, (struct sockaddr *)&a, &alen) == 0 && same_ip(&a, dp_ip) && a.sin_port != 0,
	      "getsockname %s (the dataplane's ephemeral port)", fmt_sin(&a));
	printf("  case 3: connected from %s\n", fmt_sin(&a));
	/* Keep at most 256 KiB in flight so neither side's buffers fill while we are not reading. */
	static unsigned char buf[65536];
	uint64_t sent = 0, got = 0;
	while (got < total) {
		if (sent < total && sent - got < (256u << 10)) {
			size_t k = total - sent < 65536 ? (size_t)(total - sent) : 65536;
			CHECK(send_pattern(c, sent, k, 0) == 0, "send at %llu", (unsigned long long)sent);
			sent += k;
			if (sent == total)
				CHECK(shutdown(c, SHUT_WR) == 0, "shutdown(SHUT_WR)");
			continue;
		}
		ssize_t n = read(c, buf, sizeof buf);
		CHECK(n > 0, "read at %llu (%zd)", (unsigned long long)got, n);
		long bad = pat_check(buf, (size_t)n, got);
		CHECK(bad < 0, "echoed byte %llu differs", (unsigned long long)(got + (uint64_t)bad));
		got += (uint64_t)n;
	}
	CHECK(read(c, buf, sizeof buf) == 0, "EOF after the echo");
	CHECK(xclose(c) == 0, "close");

	/* MSG_WAITALL: one recv returns the whole echo, more than a receive window's worth. */
	{
		const size_t want = 600000;
		unsigned char *big = malloc(want);
		CHECK(big != NULL, "malloc");
		c = connect_to(peer_ip, 9000, 0);
		int ok = c >= 0 && send_pattern(c, 0, want, 0) == 0;
		ssize_t n = ok ? recv(c, big, want, MSG_WAITALL) : -1;
		long bad = n > 0 ? pat_check(big, (size_t)n, 0) : -1;
		free(big);
		CHECK(ok, "connect and send %zu", want);
		CHECK(n == (ssize_t)want, "recv(MSG_WAITALL) returned %zd of %zu", n, want);
		CHECK(bad < 0, "MSG_WAITALL data differs at %ld", bad);
		CHECK(xclose(c) == 0, "close");
	}

	/* one thread blocked in read while another writes the bytes that the echo brings back */
	{
		c = connect_to(peer_ip, 9000, 0);
		CHECK(c >= 0, "connect");
		struct reader rd = {.fd = c, .n = 300000, .result = 1};
		pthread_t t;
		CHECK(pthread_create(&t, NULL, reader_main, &rd) == 0, "pthread_create");
		idle_wait(100);
		int ok = send_pattern(c, 0, 300000, 0) == 0;
		pthread_join(t, NULL);
		CHECK(ok, "send from the main thread");
		CHECK(rd.result == 0, "the reading thread got %d", rd.result);
		CHECK(xclose(c) == 0, "close");
	}

	/* close right after a large write: what was written still reaches the peer, then the FIN */
	{
		pid_t sink;
		CHECK(peer_server(&sink, "tcp-steps-server", "9008", "recv 3000000;eof", NULL, NULL) == 0, "sink");
		c = connect_to(peer_ip, 9008, 0);
		CHECK(c >= 0, "connect");
		CHECK(send_pattern(c, 0, 3000000, 0) == 0, "send 3000000");
		CHECK(xclose(c) == 0, "close with data in flight");
		CHECK(wait_child(sink, 20000) == 0, "the Linux peer did not get all 3000000 bytes and the FIN");
	}

	/* non-blocking connect */
	c = tcp_socket(SOCK_NONBLOCK);
	struct sockaddr_in to = sin_of(peer_ip, 9000);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), EINPROGRESS, "non-blocking connect");
	int r = wait_fd(c, POLLOUT, 10000);
	CHECK(r == POLLOUT, "POLLOUT when connected: %#x", r);
	int err = -1;
	socklen_t elen = sizeof err;
	CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0 && elen == sizeof err,
	      "SO_ERROR %d", err);
	/* Linux answers the first connect after completion with 0, later ones with EISCONN; both mean connected. */
	errno = 0;
	r = connect(c, (struct sockaddr *)&to, sizeof to);
	CHECK(r == 0 || errno == EISCONN, "connect once connected: %d", r);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), EISCONN, "connect again");
	CHECK(send_pattern(c, 0, 1000, 0) == 0, "send 1000");
	uint64_t off = 0;
	while (off < 1000) {
		CHECK(wait_fd(c, POLLIN, 10000) & POLLIN, "POLLIN for the echo");
		ssize_t n = recv(c, buf, sizeof buf, 0);
		CHECK(!(n < 0 && errno == EAGAIN), "EAGAIN right after POLLIN");
		CHECK(n > 0 && pat_check(buf, (size_t)n, off) < 0, "echo (%zd)", n);
		off += (uint64_t)n;
	}
	CHECK(off == 1000, "echo length %llu", (unsigned long long)off);
	CHECK(xclose(c) == 0, "close");
	kill(srv, SIGTERM);
	wait_child(srv, 5000);

	/* refused */
	c = tcp_socket(0);
	to = sin_of(peer_ip, 9);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), ECONNREFUSED, "blocking connect to a closed port");
	CHECK(xclose(c) == 0, "close");
	c = tcp_socket(SOCK_NONBLOCK);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), EINPROGRESS, "non-blocking connect to a closed port");
	r = wait_fd(c, POLLOUT, 10000);
	CHECK(r > 0 && (r & POLLERR), "poll after refusal: %#x, expected POLLERR", r);
	err = -1;
	elen = sizeof err;
	CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == ECONNREFUSED, "SO_ERROR %d", err);
	err = -1;
	CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0, "SO_ERROR read twice: %d", err);
	CHECK(xclose(c) == 0, "close");
	return 0;
}

/* 4. Half-close, both roles. */
static int case_half_close(void)
{
	unsigned char b[16];
	pid_t srv;
	CHECK(peer_server(&srv, "tcp-steps-server", "9001", "recv 1000;eof;send 2000;shutwr;sleep 0.2", NULL, NULL) ==
		      0,
	      "Linux steps server");
	int c = connect_to(peer_ip, 9001, 0);
	CHECK(c >= 0, "connect");
	CHECK(send_pattern(c, 0, 1000, 0) == 0, "send 1000");
	CHECK(shutdown(c, SHUT_WR) == 0, "shutdown(SHUT_WR)");
	{
		/* select(2) sees the peer's answer coming (interposed: the layer's readiness). */
		fd_set rd;
		FD_ZERO(&rd);
		FD_SET(c, &rd);
		struct timeval tv = {10, 0};
		int n = select(c + 1, &rd, NULL, NULL, &tv);
		CHECK(n == 1 && FD_ISSET(c, &rd), "select for the peer's data: %d, readable %d", n, FD_ISSET(c, &rd));
		CHECK(tv.tv_sec < 10 || tv.tv_usec < 1000000, "select leaves the time not slept");
	}
	CHECK(recv_pattern(c, 0, 2000) == 0, "receive 2000 after our SHUT_WR");
	CHECK(read(c, b, sizeof b) == 0, "read 0 at the peer's FIN");
	CHECK(read(c, b, sizeof b) == 0, "read 0 again");
	CHECK_ERR(send(c, b, 1, MSG_NOSIGNAL), EPIPE, "send after SHUT_WR");
	CHECK(xclose(c) == 0, "close");
	CHECK(wait_child(srv, 10000) == 0, "Linux peer (server)");

	int port = base_port + 4;
	int ls = listener_on(dp_ip, port, 0);
	CHECK(ls >= 0, "listen");
	pid_t cl = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "send 500;shutwr;recv 700;eof", NULL, NULL, NULL);
	{
		fd_set rd;
		FD_ZERO(&rd);
		FD_SET(ls, &rd);
		struct timeval tv = {10, 0};
		CHECK(select(ls + 1, &rd, NULL, NULL, &tv) == 1 && FD_ISSET(ls, &rd), "select on the listener");
	}
	c = track(accept(ls, NULL, NULL));
	CHECK(c >= 0, "accept");
	CHECK(recv_pattern(c, 0, 500) == 0, "receive 500");
	int on = 1;
	CHECK(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0, "SO_KEEPALIVE on a live connection");
	CHECK(read(c, b, sizeof b) == 0, "read 0 at the peer's FIN");
	int r = wait_fd(c, POLLIN | POLLOUT | POLLRDHUP, 0);
	CHECK(r == (POLLIN | POLLOUT | POLLRDHUP), "poll after the peer's FIN: %#x, expected POLLIN|POLLOUT|POLLRDHUP",
	      r);
	CHECK(send_pattern(c, 0, 700, 0) == 0, "send 700 after the peer's FIN");
	CHECK(shutdown(c, SHUT_RD) == 0, "shutdown(SHUT_RD)");
	CHECK(read(c, b, sizeof b) == 0, "read 0 after SHUT_RD");
	CHECK(xclose(c) == 0, "close");
	CHECK(wait_child(cl, 10000) == 0, "Linux peer (client)");
	CHECK(xclose(ls) == 0, "close listener");
	return 0;
}

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

/* 5. Peer reset: ECONNRESET, then EPIPE (+SIGPIPE unless MSG_NOSIGNAL); reset during a transfer. */
static int case_reset(void)
{
	unsigned char b[64];
	pid_t s1, s2, s3;
	CHECK(peer_server(&s1, "tcp-steps-server", "9002", "recv 10;rst", NULL, NULL) == 0, "server 1");
	CHECK(peer_server(&s2, "tcp-steps-server", "9003", "recv 10;rst", NULL, NULL) == 0, "server 2");
	CHECK(peer_server(&s3, "tcp-steps-server", "9004", "recv 200000;rst", NULL, NULL) == 0, "server 3");

	int c = connect_to(peer_ip, 9002, 0);
	CHECK(c >= 0, "connect 1");
	CHECK(send_pattern(c, 0, 10, 0) == 0, "send 10");
	CHECK(wait_child(s1, 10000) == 0, "server 1 reset");
	int r = wait_fd(c, POLLIN, 10000);
	CHECK(r & POLLIN, "POLLIN at the reset: %#x", r);
	r = wait_fd(c, POLLIN | POLLOUT, 0);
	CHECK((r & (POLLERR | POLLHUP)) == (POLLERR | POLLHUP), "poll at the reset: %#x, expected POLLERR|POLLHUP", r);
	CHECK_ERR(read(c, b, sizeof b), ECONNRESET, "read after the peer's RST");
	r = wait_fd(c, POLLIN | POLLOUT, 0);
	CHECK((r & (POLLERR | POLLHUP)) == POLLHUP, "poll once the error was read: %#x, expected POLLHUP", r);
	sigpipes = 0;
	CHECK_ERR(send(c, b, 1, MSG_NOSIGNAL), EPIPE, "send(MSG_NOSIGNAL) after the reset");
	CHECK(sigpipes == 0, "SIGPIPE despite MSG_NOSIGNAL");
	CHECK_ERR(write(c, b, 1), EPIPE, "write after the reset");
	CHECK(sigpipes == 1, "SIGPIPE count %d after write", (int)sigpipes);
	CHECK(xclose(c) == 0, "close 1");

	c = connect_to(peer_ip, 9003, 0);
	CHECK(c >= 0, "connect 2");
	CHECK(send_pattern(c, 0, 10, 0) == 0, "send 10");
	CHECK(wait_child(s2, 10000) == 0, "server 2 reset");
	r = wait_fd(c, POLLIN, 10000);
	CHECK(r & POLLIN, "POLLIN at the reset: %#x", r);
	CHECK_ERR(send(c, b, 1, MSG_NOSIGNAL), ECONNRESET, "send after the peer's RST");
	CHECK(read(c, b, sizeof b) == 0, "read 0 once the error was reported");
	CHECK(xclose(c) == 0, "close 2");

	c = connect_to(peer_ip, 9004, 0);
	CHECK(c >= 0, "connect 3");
	uint64_t sent = 0;
	long end = now_ms() + 20000;
	int e = 0;
	while (sent < (64u << 20) && now_ms() < end) {
		unsigned char big[16384];
		pat_fill(big, sizeof big, sent);
		ssize_t n = send(c, big, sizeof big, MSG_NOSIGNAL);
		if (n < 0) {
			e = errno;
			break;
		}
		sent += (uint64_t)n;
	}
	CHECK(e == ECONNRESET, "send during the transfer the peer reset: errno %d (%s) after %llu bytes", e,
	      strerror(e), (unsigned long long)sent);
	CHECK(read(c, b, sizeof b) == 0, "read 0 once the error was reported");
	CHECK(xclose(c) == 0, "close 3");
	CHECK(wait_child(s3, 10000) == 0, "server 3");
	return 0;
}

/* 6. Close with unread data: the peer gets a RST. */
static int case_close_unread(void)
{
	pid_t srv;
	CHECK(peer_server(&srv, "tcp-steps-server", "9005", "send 5000;expect-reset", NULL, NULL) == 0, "server");
	int c = connect_to(peer_ip, 9005, 0);
	CHECK(c >= 0, "connect");
	int avail = 0;
	long end = now_ms() + 10000;
	while (avail < 5000 && now_ms() < end) {
		wait_fd(c, POLLIN, 100);
		CHECK(ioctl(c, FIONREAD, &avail) == 0, "FIONREAD");
	}
	CHECK(avail == 5000, "FIONREAD %d, expected 5000", avail);
	CHECK(recv_pattern(c, 0, 100) == 0, "read 100 of 5000");
	CHECK(xclose(c) == 0, "close with 4900 bytes unread");
	CHECK(wait_child(srv, 15000) == 0, "the Linux peer did not see ECONNRESET (see its message)");
	return 0;
}

/* 7. Socket options round trips; SO_LINGER {1, 0} close resets. */
static int case_options(void)
{
	pid_t srv;
	CHECK(peer_server(&srv, "tcp-echo-server", "9000", "--seconds", "30", NULL) == 0, "Linux echo server");
	int c = connect_to(peer_ip, 9000, 0);
	CHECK(c >= 0, "connect");
	int v = -1;
	socklen_t len = sizeof v;
	static const struct {
		int level, name;
		const char *what;
	} bools[] = {{IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY"},
		     {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"},
		     {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"}};
	for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
		v = -1;
		len = sizeof v;
		CHECK(getsockopt(c, bools[i].level, bools[i].name, &v, &len) == 0 && v == 0 && len == sizeof v,
		      "%s default %d", bools[i].what, v);
		v = 1;
		CHECK(setsockopt(c, bools[i].level, bools[i].name, &v, sizeof v) == 0, "set %s 1", bools[i].what);
		v = -1;
		CHECK(getsockopt(c, bools[i].level, bools[i].name, &v, &len) == 0 && v == 1, "%s after set: %d",
		      bools[i].what, v);
		v = 0;
		CHECK(setsockopt(c, bools[i].level, bools[i].name, &v, sizeof v) == 0, "set %s 0", bools[i].what);
		v = -1;
		CHECK(getsockopt(c, bools[i].level, bools[i].name, &v, &len) == 0 && v == 0, "%s after clear: %d",
		      bools[i].what, v);
	}
	struct linger lg = {-1, -1};
	len = sizeof lg;
	CHECK(getsockopt(c, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff == 0 && len == sizeof lg,
	      "SO_LINGER default {%d, %d}", lg.l_onoff, lg.l_linger);
	lg = (struct linger){1, 5};
	CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "set SO_LINGER {1, 5}");
	lg = (struct linger){-1, -1};
	CHECK(getsockopt(c, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff == 1 && lg.l_linger == 5,
	      "SO_LINGER {%d, %d}", lg.l_onoff, lg.l_linger);
	lg = (struct linger){0, 0};
	CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "clear SO_LINGER");
	v = 5;
	CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) == 0, "set TCP_NODELAY 5");
	v = -1;
	CHECK(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v == 1, "TCP_NODELAY after 5: %d", v);
	v = -1;
	CHECK(getsockopt(c, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0 && v > 0, "SO_RCVBUF %d", v);
	struct timeval tv = {0, 200000}, tv2 = {-1, -1};
	socklen_t tlen = sizeof tv2;
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "set SO_RCVTIMEO");
	CHECK(getsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv2, &tlen) == 0 && tlen == sizeof tv2 && tv2.tv_sec == 0 &&
		      tv2.tv_usec == 200000,
	      "SO_RCVTIMEO {%ld, %ld} len %u", (long)tv2.tv_sec, (long)tv2.tv_usec, tlen);
	long t0 = now_ms();
	unsigned char one;
	CHECK_ERR(read(c, &one, 1), EAGAIN, "blocking read past SO_RCVTIMEO");
	long took = now_ms() - t0;
	CHECK(took >= 150 && took < 3000, "SO_RCVTIMEO 200 ms: read returned after %ld ms", took);
	tv = (struct timeval){0, 0};
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "clear SO_RCVTIMEO");
	tv = (struct timeval){1, 500000};
	tlen = sizeof tv2;
	CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "set SO_SNDTIMEO");
	CHECK(getsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv2, &tlen) == 0 && tv2.tv_sec == 1 && tv2.tv_usec == 500000,
	      "SO_SNDTIMEO {%ld, %ld}", (long)tv2.tv_sec, (long)tv2.tv_usec);
	v = 65536;
	CHECK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0, "set SO_SNDBUF");
	v = -1;
	len = sizeof v;
	CHECK(getsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v == 131072, "SO_SNDBUF %d, expected 131072", v);
	v = -1;
	CHECK(getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM, "SO_TYPE %d", v);
	v = -1;
	CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &len) == 0 && v == 0, "SO_ERROR %d", v);
	/* still a working connection */
	CHECK(send_pattern(c, 0, 300000, 0) == 0, "send 300000 with SO_SNDBUF 64 KiB");
	CHECK(recv_pattern(c, 0, 300000) == 0, "echo");
	CHECK(xclose(c) == 0, "close");
	kill(srv, SIGTERM);
	wait_child(srv, 5000);

	/* SO_SNDTIMEO: a blocking write to a peer that reads nothing gives up after the timeout. */
	CHECK(peer_server(&srv, "tcp-steps-server", "9007", "sleep 8", NULL, NULL) == 0, "silent server");
	c = connect_to(peer_ip, 9007, 0);
	CHECK(c >= 0, "connect");
	tv = (struct timeval){0, 300000};
	CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "set SO_SNDTIMEO 300 ms");
	{
		static unsigned char chunk[65536];
		uint64_t sent = 0;
		long end = now_ms() + 20000;
		int e = 0;
		while (sent < (256u << 20) && now_ms() < end) {
			t0 = now_ms();
			ssize_t n = send(c, chunk, sizeof chunk, MSG_NOSIGNAL);
			took = now_ms() - t0;
			if (n < 0) {
				e = errno;
				break;
			}
			sent += (uint64_t)n;
			if (n < (ssize_t)sizeof chunk)
				break; /* a timed-out send returns what it took */
		}
		CHECK(e == 0 || e == EAGAIN, "send with SO_SNDTIMEO: errno %d after %llu bytes", e,
		      (unsigned long long)sent);
		CHECK(now_ms() < end && took >= 250 && took < 3000,
		      "SO_SNDTIMEO 300 ms: the blocked send returned after %ld ms (%llu bytes sent)", took,
		      (unsigned long long)sent);
	}
	lg = (struct linger){1, 0};
	CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "set SO_LINGER {1, 0}");
	CHECK(xclose(c) == 0, "close");
	kill(srv, SIGTERM);
	wait_child(srv, 5000);

	CHECK(peer_server(&srv, "tcp-steps-server", "9006", "recv 10;send 1;expect-reset", NULL, NULL) == 0,
	      "steps server");
	c = connect_to(peer_ip, 9006, 0);
	CHECK(c >= 0, "connect");
	CHECK(send_pattern(c, 0, 10, 0) == 0, "send 10");
	CHECK(recv_pattern(c, 0, 1) == 0, "read the peer's byte");
	lg = (struct linger){1, 0};
	CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "set SO_LINGER {1, 0}");
	CHECK(xclose(c) == 0, "close with SO_LINGER {1, 0}");
	CHECK(wait_child(srv, 10000) == 0, "the Linux peer did not see ECONNRESET after SO_LINGER {1, 0}");
	return 0;
}

/* 8. INADDR_ANY listener: a Linux client over the dataplane and a loopback client over the kernel, one accept. */
static int case_any(void)
{
	int port = base_port + 8;
	int ls = listener_on("0.0.0.0", port, 0);
	CHECK(ls >= 0, "listen on 0.0.0.0:%d", port);
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	CHECK(getsockname(ls, (struct sockaddr *)&a, &alen) == 0 && same_ip(&a, "0.0.0.0") && ntohs(a.sin_port) == port,
	      "listener getsockname %s", fmt_sin(&a));
	struct timeval rto = {3, 0};
	CHECK(setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO on the listener");
	pid_t cl = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "send 10;recv 10;eof", NULL, NULL, NULL);
	int lc = connect_to("127.0.0.1", port, 0);
	CHECK(lc >= 0, "loopback connect");
	CHECK(send_pattern(lc, 0, 10, 0) == 0, "loopback send");
	int seen_dp = 0, seen_lo = 0;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in p;
		socklen_t plen = sizeof p;
		int c = track(accept(ls, (struct sockaddr *)&p, &plen));
		CHECK(c >= 0, "accept %d", i);
		if (same_ip(&p, peer_ip))
			seen_dp++;
		else if (same_ip(&p, "127.0.0.1"))
			seen_lo++;
		else
			CHECK(0, "accepted an unexpected peer %s", fmt_sin(&p));
		alen = sizeof a;
		CHECK(getsockname(c, (struct sockaddr *)&a, &alen) == 0 && ntohs(a.sin_port) == port &&
			      same_ip(&a, same_ip(&p, peer_ip) ? dp_ip : "127.0.0.1"),
		      "accepted socket's name %s (peer %s)", fmt_sin(&a), fmt_sin(&p));
		struct timeval got = {0, 0};
		socklen_t tlen = sizeof got;
		CHECK(getsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &got, &tlen) == 0 && got.tv_sec == 3,
		      "SO_RCVTIMEO inherited from the listener by %s: %ld", fmt_sin(&p), (long)got.tv_sec);
		CHECK(recv_pattern(c, 0, 10) == 0, "read 10 from %s", fmt_sin(&p));
		CHECK(send_pattern(c, 0, 10, 0) == 0, "echo to %s", fmt_sin(&p));
		CHECK(xclose(c) == 0, "close");
	}
	CHECK(seen_dp == 1 && seen_lo == 1, "accepted %d dataplane and %d loopback connections", seen_dp, seen_lo);
	CHECK(recv_pattern(lc, 0, 10) == 0, "loopback client echo");
	unsigned char b[4];
	CHECK(read(lc, b, sizeof b) == 0, "loopback client EOF");
	CHECK(xclose(lc) == 0, "close loopback client");
	CHECK(wait_child(cl, 10000) == 0, "Linux client");
	CHECK(xclose(ls) == 0, "close listener");
	return 0;
}

/* 9. Kernel fds untouched: pipe, AF_UNIX socketpair, loopback TCP, bad fds. */
static int case_kernel_fds(void)
{
	unsigned char b[64];
	int p[2];
	CHECK(pipe(p) == 0, "pipe");
	track(p[0]);
	track(p[1]);
	CHECK(write(p[1], "hello", 5) == 5, "pipe write");
	CHECK(wait_fd(p[0], POLLIN, 1000) == POLLIN, "pipe POLLIN");
	CHECK(wait_fd(p[1], POLLOUT, 0) == POLLOUT, "pipe POLLOUT");
	CHECK(read(p[0], b, sizeof b) == 5 && memcmp(b, "hello", 5) == 0, "pipe read");
	CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0 && (fcntl(p[0], F_GETFL) & O_NONBLOCK), "pipe O_NONBLOCK");
	CHECK_ERR(read(p[0], b, sizeof b), EAGAIN, "empty non-blocking pipe");
	CHECK(fcntl(p[1], F_SETFD, FD_CLOEXEC) == 0 && fcntl(p[1], F_GETFD) == FD_CLOEXEC, "pipe FD_CLOEXEC");
	CHECK(xclose(p[0]) == 0, "close pipe read end");
	sigpipes = 0;
	CHECK_ERR(write(p[1], "x", 1), EPIPE, "write to a pipe without reader");
	CHECK(sigpipes == 1, "SIGPIPE for the pipe: %d", (int)sigpipes);
	CHECK(xclose(p[1]) == 0, "close pipe write end");
	int gone = p[1];
	CHECK_ERR(read(gone, b, 1), EBADF, "read on a closed fd");
	CHECK_ERR(write(gone, b, 1), EBADF, "write on a closed fd");
	CHECK_ERR(close(gone), EBADF, "close on a closed fd");
	CHECK_ERR(fcntl(gone, F_GETFL), EBADF, "fcntl on a closed fd");
	CHECK_ERR(read(-1, b, 1), EBADF, "read(-1)");
	CHECK(wait_fd(gone, POLLIN, 0) == POLLNVAL, "poll on a closed fd: POLLNVAL");

	int sp[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
	track(sp[0]);
	track(sp[1]);
	CHECK(send(sp[0], "abc", 3, 0) == 3, "unix send");
	int avail = -1;
	CHECK(wait_fd(sp[1], POLLIN, 1000) == POLLIN, "unix POLLIN");
	CHECK(ioctl(sp[1], FIONREAD, &avail) == 0 && avail == 3, "unix FIONREAD %d", avail);
	CHECK(recv(sp[1], b, 2, MSG_PEEK) == 2 && memcmp(b, "ab", 2) == 0, "unix MSG_PEEK");
	CHECK(read(sp[1], b, sizeof b) == 3 && memcmp(b, "abc", 3) == 0, "unix read");
	CHECK_ERR(recv(sp[1], b, 1, MSG_DONTWAIT), EAGAIN, "unix MSG_DONTWAIT");
	CHECK(shutdown(sp[0], SHUT_WR) == 0 && read(sp[1], b, sizeof b) == 0, "unix shutdown/EOF");
	CHECK_ERR(listen(sp[0], 1), EINVAL, "listen on a connected AF_UNIX socket");
	CHECK(xclose(sp[0]) == 0 && xclose(sp[1]) == 0, "close socketpair");

	int ls = track(socket(AF_INET, SOCK_STREAM, 0));
	struct sockaddr_in a = sin_of("127.0.0.1", 0);
	socklen_t alen = sizeof a;
	CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 4) == 0, "loopback listen");
	CHECK(getsockname(ls, (struct sockaddr *)&a, &alen) == 0 && ntohs(a.sin_port) != 0, "loopback port");
	int c = track(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
	int r = connect(c, (struct sockaddr *)&a, sizeof a);
	CHECK(r == 0 || errno == EINPROGRESS, "loopback connect");
	CHECK(wait_fd(ls, POLLIN, 1000) == POLLIN, "loopback listener POLLIN");
	int s = track(accept4(ls, NULL, NULL, SOCK_CLOEXEC));
	CHECK(s >= 0 && (fcntl(s, F_GETFD) & FD_CLOEXEC), "loopback accept4");
	CHECK(wait_fd(c, POLLOUT, 1000) == POLLOUT, "loopback POLLOUT");
	CHECK(write(c, "ping", 4) == 4 && recv_pattern(s, 0, 0) == 0, "loopback write");
	CHECK(wait_fd(s, POLLIN, 1000) == POLLIN && read(s, b, sizeof b) == 4 && memcmp(b, "ping", 4) == 0,
	      "loopback read");
	struct iovec v[2] = {{"po", 2}, {"ng", 2}};
	CHECK(writev(s, v, 2) == 4, "loopback writev");
	CHECK(wait_fd(c, POLLIN, 1000) & POLLIN, "loopback POLLIN");
	CHECK(recv(c, b, sizeof b, 0) == 4 && memcmp(b, "pong", 4) == 0, "loopback recv");
	CHECK_ERR(recv(c, b, sizeof b, 0), EAGAIN, "loopback EAGAIN");
	CHECK_ERR(listen(c, 1), EINVAL, "listen on a connected loopback socket");
	CHECK(xclose(c) == 0 && xclose(s) == 0 && xclose(ls) == 0, "close loopback sockets");
	return 0;
}

/* 10. Bad input on dataplane fds: EFAULT, EINVAL, EBADF after close; nothing crashes. */
static int case_bad_input(void)
{
	unsigned char b[64];
	pid_t srv;
	CHECK(peer_server(&srv, "tcp-echo-server", "9000", "--seconds", "30", NULL) == 0, "Linux echo server");
	int c = connect_to(peer_ip, 9000, 0);
	CHECK(c >= 0, "connect");
	CHECK(send_pattern(c, 0, 10, 0) == 0, "send 10");
	int avail = 0;
	long end = now_ms() + 10000;
	while (avail < 10 && now_ms() < end) {
		wait_fd(c, POLLIN, 100);
		CHECK(ioctl(c, FIONREAD, &avail) == 0, "FIONREAD");
	}
	CHECK(avail == 10, "echo of 10 bytes: FIONREAD %d", avail);
	CHECK_ERR(read(c, null_ptr, 10), EFAULT, "read into NULL");
	CHECK_ERR(recv(c, null_ptr, 10, 0), EFAULT, "recv into NULL");
	struct iovec nv[1] = {{NULL, 10}};
	CHECK_ERR(readv(c, nv, 1), EFAULT, "readv with a NULL iovec");
	CHECK_ERR(write(c, null_ptr, 10), EFAULT, "write from NULL");
	CHECK_ERR(send(c, null_ptr, 10, 0), EFAULT, "send from NULL");
	CHECK_ERR(writev(c, nv, 1), EFAULT, "writev with a NULL iovec");
	CHECK_ERR(readv(c, nv, minus_one), EINVAL, "readv with a negative count");
	int v = 0;
	CHECK_ERR(getsockopt(c, SOL_SOCKET, SO_ERROR, &v, null_ptr), EFAULT, "getsockopt with NULL optlen");
	CHECK_ERR(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, null_ptr, sizeof v), EFAULT, "setsockopt from NULL");
	CHECK_ERR(ioctl(c, FIONREAD, null_ptr), EFAULT, "FIONREAD into NULL");
	CHECK_ERR(listen(c, 5), EINVAL, "listen on a connected socket");
	CHECK_ERR(accept(c, NULL, NULL), EINVAL, "accept on a connected socket");
	CHECK_ERR(shutdown(c, 99), EINVAL, "shutdown(99)");
	struct sockaddr_in to = sin_of(peer_ip, 9000);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), EISCONN, "connect on a connected socket");
	struct sockaddr_in here = sin_of(dp_ip, base_port + 10);
	CHECK_ERR(bind(c, (struct sockaddr *)&here, sizeof here), EINVAL, "bind on a connected socket");
	struct timeval huge = {LONG_MAX, 999999}, bad_usec = {1, 1000000};
	CHECK_ERR(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &bad_usec, sizeof bad_usec), EDOM, "SO_RCVTIMEO usec 1000000");
	CHECK_ERR(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &huge, 8), EINVAL, "SO_RCVTIMEO too short");
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &huge, sizeof huge) == 0, "SO_RCVTIMEO of LONG_MAX seconds");
	CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &huge, sizeof huge) == 0, "SO_SNDTIMEO of LONG_MAX seconds");
	/* the data is still there, intact */
	CHECK(recv_pattern(c, 0, 10) == 0, "the echo after the failed calls");
	CHECK(xclose(c) == 0, "close");
	CHECK_ERR(read(c, b, sizeof b), EBADF, "read on a closed dataplane fd");
	CHECK_ERR(write(c, b, 1), EBADF, "write on a closed dataplane fd");
	CHECK_ERR(send(c, b, 1, MSG_NOSIGNAL), EBADF, "send on a closed dataplane fd");
	CHECK_ERR(accept(c, NULL, NULL), EBADF, "accept on a closed dataplane fd");
	CHECK_ERR(getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &(socklen_t){sizeof v}), EBADF, "getsockopt on closed");
	CHECK_ERR(shutdown(c, SHUT_RDWR), EBADF, "shutdown on a closed dataplane fd");
	CHECK_ERR(close(c), EBADF, "close on a closed dataplane fd");
	CHECK(wait_fd(c, POLLIN, 0) == POLLNVAL, "poll on a closed dataplane fd: POLLNVAL");
	kill(srv, SIGTERM);
	wait_child(srv, 5000);

	/* close while a non-blocking connect is under way: nothing may be left behind (checked by the idle check) */
	c = tcp_socket(SOCK_NONBLOCK);
	CHECK_ERR(connect(c, (struct sockaddr *)&to, sizeof to), EINPROGRESS, "non-blocking connect");
	CHECK(xclose(c) == 0, "close while connecting");

	int ls = listener_on(dp_ip, base_port + 10, 0);
	CHECK(ls >= 0, "listen");
	int other = tcp_socket(0);
	int yes = 1;
	CHECK(setsockopt(other, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == 0, "SO_REUSEADDR");
	CHECK_ERR(bind(other, (struct sockaddr *)&here, sizeof here), EADDRINUSE, "bind to a port in use");
	CHECK(xclose(other) == 0, "close");
	CHECK_ERR(read(ls, b, sizeof b), ENOTCONN, "read on a listener");
	CHECK_ERR(send(ls, b, 1, MSG_NOSIGNAL), EPIPE, "send on a listener");
	struct sockaddr_in pa;
	socklen_t palen = sizeof pa;
	CHECK_ERR(getpeername(ls, (struct sockaddr *)&pa, &palen), ENOTCONN, "getpeername on a listener");
	CHECK_ERR(connect(ls, (struct sockaddr *)&to, sizeof to), EISCONN, "connect on a listener");
	CHECK(xclose(ls) == 0, "close listener");
	CHECK_ERR(accept(ls, NULL, NULL), EBADF, "accept on a closed dataplane listener");
	CHECK_ERR(listen(ls, 1), EBADF, "listen on a closed dataplane listener");
	return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* ---- UDP ---- */
/* c-tests/peer.py's UDP payload: pattern(size, seq). */
static void udp_pat(unsigned char *b, size_t n, int seq)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((seq * 131 + (int)i * 7 + (int)(i >> 8)) & 0xFF);
}

static int udp_socket_on(const char *ip, int port)
{
	int s = track(socket(AF_INET, SOCK_DGRAM, 0));
	if (s < 0 || !ip)
		return s;
	struct sockaddr_in a = sin_of(ip, port);
	return bind(s, (struct sockaddr *)&a, sizeof a) == 0 ? s : -1;
}

/* 12. UDP server role: a Linux client's echo check (every size 1..1472) served with recvfrom/sendto; datagram
 * boundaries, MSG_TRUNC/MSG_PEEK, FIONREAD, EAGAIN, blocking reads with SO_RCVTIMEO, poll/select readiness. */
static int case_udp_server(void)
{
	int port = base_port;
	int s = udp_socket_on(NULL, 0);
	CHECK(s >= 0, "UDP socket");
	int one = 1, rcvbuf = 1 << 18;
	CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
	struct sockaddr_in a = sin_of(dp_ip, port);
	CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind %s:%d", dp_ip, port);
	CHECK(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_RCVBUF");
	CHECK(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_SNDBUF");
	int v = 0;
	socklen_t vlen = sizeof v;
	CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vlen) == 0 && v == SOCK_DGRAM, "SO_TYPE %d", v);
	vlen = sizeof v;
	CHECK(getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &vlen) == 0 && v >= rcvbuf, "SO_RCVBUF reads %d", v);
	struct sockaddr_in n;
	socklen_t nlen = sizeof n;
	CHECK(getsockname(s, (struct sockaddr *)&n, &nlen) == 0 && same_ip(&n, dp_ip) && ntohs(n.sin_port) == port,
	      "getsockname %s", fmt_sin(&n));
	nlen = sizeof n;
	CHECK_ERR(getpeername(s, (struct sockaddr *)&n, &nlen), ENOTCONN, "getpeername unconnected");
	int s2 = track(socket(AF_INET, SOCK_DGRAM, 0));
	CHECK_ERR(bind(s2, (struct sockaddr *)&a, sizeof a), EADDRINUSE, "second bind of the port");
	CHECK(xclose(s2) == 0, "close");
	/* Nothing queued: not readable, writable; EAGAIN without waiting. */
	unsigned char buf[2048], want[2048];
	CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 0, "FIONREAD empty: %d", v);
	CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN, "recv MSG_DONTWAIT");
	CHECK(fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
	CHECK_ERR(recvfrom(s, buf, sizeof buf, 0, NULL, NULL), EAGAIN, "non-blocking recvfrom");
	CHECK(fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK) == 0, "blocking again");
	struct pollfd p = {.fd = s, .events = POLLIN | POLLOUT};
	CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLOUT, "poll empty: revents %#x", p.revents);
	struct sockaddr_in dst = sin_of(peer_ip, 9);
	CHECK_ERR(send(s, buf, 10, 0), EDESTADDRREQ, "send unconnected");
	static unsigned char big[65508];
	CHECK_ERR(sendto(s, big, sizeof big, 0, (struct sockaddr *)&dst, sizeof dst), EMSGSIZE, "65508-byte datagram");

	/* A Linux client checks the echo of every size 1..1472 (retrying lost ones). */
	pid_t cl = spawn_peer(NULL, "udp-client", dp_ip, num(port), "--sizes", "1-1472", NULL, NULL);
	CHECK(cl > 0, "spawn udp-client");
	int echoed = 0, status = -1;
	long end = now_ms() + 60000;
	while (now_ms() < end) {
		p = (struct pollfd){.fd = s, .events = POLLIN};
		if (poll(&p, 1, 50) == 1) {
			CHECK(p.revents == POLLIN, "poll revents %#x", p.revents);
			struct sockaddr_in from;
			socklen_t flen = sizeof from;
			ssize_t r = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
			CHECK(r >= 1 && r <= 1472 && flen == sizeof from && same_ip(&from, peer_ip), "recvfrom %zd from %s",
			      r, fmt_sin(&from));
			CHECK(sendto(s, buf, (size_t)r, 0, (struct sockaddr *)&from, flen) == r, "echo %zd", r);
			echoed++;
			continue;
		}
		int st;
		if (waitpid(cl, &st, WNOHANG) == cl) {
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			for (int i = 0; i < nchildren; i++)
				if (children[i] == cl) {
					close(child_out[i]);
					children[i] = children[--nchildren];
					child_out[i] = child_out[nchildren];
				}
			break;
		}
	}
	CHECK(status == 0, "Linux udp-client status %d after %d echoes", status, echoed);
	CHECK(echoed >= 1472, "echoed %d", echoed);

	/* Three 32-byte datagrams: boundaries kept, PEEK, TRUNC, FIONREAD, recvmsg's name and MSG_TRUNC. */
	CHECK(wait_child(spawn_peer(NULL, "udp-send", dp_ip, num(port), "--count", "3", NULL, NULL), 10000) == 0,
	      "udp-send");
	p = (struct pollfd){.fd = s, .events = POLLIN};
	CHECK(poll(&p, 1, 5000) == 1 && p.revents == POLLIN, "readable after udp-send");
	fd_set rs;
	FD_ZERO(&rs);
	FD_SET(s, &rs);
	struct timeval tv = {1, 0};
	CHECK(select(s + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(s, &rs), "select readable");
	CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 32, "FIONREAD = next datagram: %d", v);
	udp_pat(want, 32, 0);
	CHECK(recv(s, buf, 8, MSG_PEEK) == 8 && memcmp(buf, want, 8) == 0, "peek 8 of 32");
	CHECK(recv(s, buf, 8, MSG_PEEK | MSG_TRUNC) == 32, "peek with MSG_TRUNC says the real length");
	struct iovec iov[2] = {{buf, 4}, {buf + 4, 6}};
	struct sockaddr_in from;
	struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov, .msg_iovlen = 2};
	CHECK(recvmsg(s, &m, 0) == 10 && (m.msg_flags & MSG_TRUNC) && memcmp(buf, want, 10) == 0 &&
		      same_ip(&from, peer_ip),
	      "recvmsg truncated to 10, flags %#x, from %s", m.msg_flags, fmt_sin(&from));
	udp_pat(want, 32, 1);
	CHECK(recvfrom(s, buf, sizeof buf, 0, NULL, NULL) == 32 && memcmp(buf, want, 32) == 0, "second datagram");
	udp_pat(want, 32, 2);
	CHECK(read(s, buf, 4) == 4 && memcmp(buf, want, 4) == 0, "third datagram, read truncated");
	CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 0, "FIONREAD drained: %d", v);
	CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN, "drained");

	/* Blocking reads: SO_RCVTIMEO passes with nothing; a sender wakes a blocked read. */
	struct timeval rto = {0, 200000};
	CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	long t0 = now_ms();
	CHECK_ERR(recv(s, buf, sizeof buf, 0), EAGAIN, "SO_RCVTIMEO passes");
	CHECK(now_ms() - t0 >= 150, "waited %ld ms", now_ms() - t0);
	rto.tv_sec = 10;
	rto.tv_usec = 0;
	CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO 10 s");
	pid_t sender = spawn_peer(NULL, "udp-send", dp_ip, num(port), "--count", "1", NULL, NULL);
	udp_pat(want, 32, 0);
	CHECK(recv(s, buf, sizeof buf, 0) == 32 && memcmp(buf, want, 32) == 0, "blocking recv woken by a sender");
	CHECK(wait_child(sender, 10000) == 0, "udp-send");
	CHECK(xclose(s) == 0, "close");
	return 0;
}

/* 13. UDP client role against a Linux echo server: implicit bind by sendto, recvmsg/sendmsg, connected UDP
 * (write/read, the peer filter, getpeername), connect(AF_UNSPEC), an explicit port-0 bind. */
static int case_udp_client(void)
{
	int port = base_port + 1, mine = base_port + 2;
	pid_t srv;
	CHECK(peer_server(&srv, "udp-echo-server", num(port), "--seconds", "30", NULL) == 0, "Linux UDP echo server");
	struct sockaddr_in to = sin_of(peer_ip, port);
	unsigned char buf[2048], want[2048];
	int c = udp_socket_on(NULL, 0);
	CHECK(c >= 0, "UDP socket");
	struct timeval rto = {3, 0};
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	static const int sizes[] = {1, 100, 1000, 1472};
	for (int k = 0; k < 4; k++) {
		int sz = sizes[k];
		udp_pat(want, (size_t)sz, k);
		/* The first sendto binds implicitly (to the dataplane's address under libix). */
		CHECK(sendto(c, want, (size_t)sz, 0, (struct sockaddr *)&to, sizeof to) == sz, "sendto %d", sz);
		struct sockaddr_in from;
		socklen_t flen = sizeof from;
		ssize_t r = recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		CHECK(r == sz && memcmp(buf, want, (size_t)sz) == 0 && same_ip(&from, peer_ip) &&
			      ntohs(from.sin_port) == port,
		      "echo of %d: %zd from %s", sz, r, fmt_sin(&from));
	}
	struct sockaddr_in n;
	socklen_t nlen = sizeof n;
	CHECK(getsockname(c, (struct sockaddr *)&n, &nlen) == 0 && ntohs(n.sin_port) != 0, "implicit port %s",
	      fmt_sin(&n));
	int cport = ntohs(n.sin_port);
	/* sendmsg/recvmsg with two iovecs each. */
	udp_pat(want, 700, 9);
	struct iovec out[2] = {{want, 300}, {want + 300, 400}};
	struct msghdr m = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = out, .msg_iovlen = 2};
	CHECK(sendmsg(c, &m, 0) == 700, "sendmsg");
	struct iovec in[2] = {{buf, 500}, {buf + 500, 500}};
	struct sockaddr_in from;
	m = (struct msghdr){.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = in, .msg_iovlen = 2};
	CHECK(recvmsg(c, &m, 0) == 700 && m.msg_flags == 0 && memcmp(buf, want, 700) == 0 && same_ip(&from, peer_ip),
	      "recvmsg echo of 700 from %s", fmt_sin(&from));
	CHECK(xclose(c) == 0, "close");

	/* Connected UDP on an explicit port: write/read, getpeername, datagrams from elsewhere filtered out. */
	c = udp_socket_on(dp_ip, mine);
	CHECK(c >= 0, "bind %s:%d", dp_ip, mine);
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0, "connect UDP");
	nlen = sizeof n;
	CHECK(getpeername(c, (struct sockaddr *)&n, &nlen) == 0 && same_ip(&n, peer_ip) && ntohs(n.sin_port) == port,
	      "getpeername %s", fmt_sin(&n));
	/* From another port of the peer: filtered. */
	CHECK(wait_child(spawn_peer(NULL, "udp-send", dp_ip, num(mine), "--count", "2", NULL, NULL), 10000) == 0,
	      "udp-send");
	idle_wait(100);
	udp_pat(want, 64, 5);
	CHECK(write(c, want, 64) == 64, "write connected");
	CHECK(read(c, buf, sizeof buf) == 64 && memcmp(buf, want, 64) == 0, "read the echo (the others filtered)");
	int v = -1;
	CHECK(ioctl(c, FIONREAD, &v) == 0 && v == 0, "nothing else queued: FIONREAD %d", v);
	/* connect(AF_UNSPEC) dissolves: no peer, no default destination, datagrams from anyone. */
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	CHECK(connect(c, &un, sizeof un) == 0, "connect AF_UNSPEC");
	nlen = sizeof n;
	CHECK_ERR(getpeername(c, (struct sockaddr *)&n, &nlen), ENOTCONN, "getpeername after AF_UNSPEC");
	CHECK_ERR(send(c, want, 10, 0), EDESTADDRREQ, "send after AF_UNSPEC");
	nlen = sizeof n;
	CHECK(getsockname(c, (struct sockaddr *)&n, &nlen) == 0 && ntohs(n.sin_port) == mine, "port kept %s",
	      fmt_sin(&n));
	CHECK(wait_child(spawn_peer(NULL, "udp-send", dp_ip, num(mine), "--count", "1", NULL, NULL), 10000) == 0,
	      "udp-send");
	udp_pat(want, 32, 0);
	CHECK(recv(c, buf, sizeof buf, 0) == 32 && memcmp(buf, want, 32) == 0, "unfiltered again");
	CHECK(xclose(c) == 0, "close");
	(void)cport;

	/* Bound to port 0 of our address: an ephemeral port. */
	c = udp_socket_on(dp_ip, 0);
	CHECK(c >= 0, "bind %s:0", dp_ip);
	nlen = sizeof n;
	CHECK(getsockname(c, (struct sockaddr *)&n, &nlen) == 0 && same_ip(&n, dp_ip) && ntohs(n.sin_port) != 0,
	      "ephemeral %s", fmt_sin(&n));
	CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	udp_pat(want, 200, 3);
	CHECK(sendto(c, want, 200, 0, (struct sockaddr *)&to, sizeof to) == 200, "sendto");
	CHECK(recv(c, buf, sizeof buf, 0) == 200 && memcmp(buf, want, 200) == 0, "echo");
	CHECK(xclose(c) == 0, "close");
	kill(srv, SIGTERM);
	wait_child(srv, 5000);
	return 0;
}

/* 14. UDP on INADDR_ANY: datagrams from the dataplane's side (a Linux client's echo check) and from loopback on one
 * socket, replies routed by destination, poll/FIONREAD over both halves. */
static int case_udp_any(void)
{
	int port = base_port + 3;
	int s = udp_socket_on("0.0.0.0", port);
	CHECK(s >= 0, "bind 0.0.0.0:%d", port);
	struct sockaddr_in n;
	socklen_t nlen = sizeof n;
	CHECK(getsockname(s, (struct sockaddr *)&n, &nlen) == 0 && same_ip(&n, "0.0.0.0") && ntohs(n.sin_port) == port,
	      "getsockname %s", fmt_sin(&n));
	struct timeval rto = {5, 0};
	CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	unsigned char buf[2048], want[64];
	int v = -1;
	CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 0, "FIONREAD empty %d", v);
	CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN, "empty");
	/* Loopback: a kernel socket sends; the reply goes back through the kernel. */
	int lo = udp_socket_on("127.0.0.1", 0);
	CHECK(lo >= 0, "loopback socket");
	CHECK(setsockopt(lo, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) == 0, "SO_RCVTIMEO");
	struct sockaddr_in to = sin_of("127.0.0.1", port);
	udp_pat(want, 40, 7);
	CHECK(sendto(lo, want, 40, 0, (struct sockaddr *)&to, sizeof to) == 40, "loopback sendto");
	struct pollfd p = {.fd = s, .events = POLLIN};
	CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN), "readable from loopback: %#x", p.revents);
	CHECK(ioctl(s, FIONREAD, &v) == 0 && v == 40, "FIONREAD loopback datagram %d", v);
	struct sockaddr_in from;
	socklen_t flen = sizeof from;
	CHECK(recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 40 && memcmp(buf, want, 40) == 0 &&
		      same_ip(&from, "127.0.0.1"),
	      "loopback datagram from %s", fmt_sin(&from));
	CHECK(sendto(s, buf, 40, 0, (struct sockaddr *)&from, flen) == 40, "reply to loopback");
	CHECK(recv(lo, buf, sizeof buf, 0) == 40 && memcmp(buf, want, 40) == 0, "loopback got the reply");
	/* The dataplane's side: a Linux client's echo check, served by blocking recvfrom. */
	pid_t cl = spawn_peer(NULL, "udp-client", dp_ip, num(port), "--sizes", "1-200", NULL, NULL);
	CHECK(cl > 0, "spawn udp-client");
	for (int i = 0; i < 200; i++) {
		flen = sizeof from;
		ssize_t r = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		CHECK(r >= 1 && same_ip(&from, peer_ip), "datagram %d: %zd from %s", i, r, fmt_sin(&from));
		CHECK(sendto(s, buf, (size_t)r, 0, (struct sockaddr *)&from, flen) == r, "echo");
		if (r == 200)
			break;
	}
	CHECK(wait_child(cl, 20000) == 0, "Linux udp-client");
	CHECK(xclose(lo) == 0, "close");
	CHECK(xclose(s) == 0, "close");
	return 0;
}

/* 11. Threads: each of two workers serves the connections of its own NIC queue (SO_INCOMING_NAPI_ID; with
 * IX_QUEUES=2 each queue's shard is then used by one thread, owner == user) while a third thread serves
 * connections handed to it from either queue (the hand-off of memcached's main thread), all at once, byte-exact. */
#ifndef SO_INCOMING_NAPI_ID
#define SO_INCOMING_NAPI_ID 56
#endif
#define T_CONNS 12
#define T_BYTES (256 * 1024)
struct tconn {
	int fd;
	int done;
	uint64_t rx;
	size_t len, off;
	unsigned char buf[16384];
};
struct tworker {
	struct tconn *c[T_CONNS];
	int n;
	int result;
	char err[160];
};
static struct tconn tconns[T_CONNS];

static void *tworker_main(void *arg)
{
	struct tworker *w = arg;
	long end = now_ms() + 60000;
	int open = w->n;
	w->result = -1;
	while (open > 0) {
		if (now_ms() > end) {
			snprintf(w->err, sizeof w->err, "timed out with %d connection(s) open", open);
			return NULL;
		}
		struct pollfd pf[T_CONNS];
		int map[T_CONNS], k = 0;
		for (int i = 0; i < w->n; i++) {
			struct tconn *c = w->c[i];
			if (c->done)
				continue;
			pf[k] = (struct pollfd){.fd = c->fd, .events = c->len > c->off ? POLLOUT : POLLIN};
			map[k++] = i;
		}
		int r = poll(pf, (nfds_t)k, 100);
		if (r < 0 && errno != EINTR) {
			snprintf(w->err, sizeof w->err, "poll: %s", strerror(errno));
			return NULL;
		}
		for (int j = 0; j < k && r > 0; j++) {
			struct tconn *c = w->c[map[j]];
			if (!pf[j].revents)
				continue;
			if (c->len > c->off) {
				ssize_t s = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
				if (s < 0 && errno != EAGAIN) {
					snprintf(w->err, sizeof w->err, "send on fd %d: %s", c->fd, strerror(errno));
					return NULL;
				}
				if (s > 0)
					c->off += (size_t)s;
				if (c->off == c->len)
					c->len = c->off = 0;
				continue;
			}
			ssize_t n = read(c->fd, c->buf, sizeof c->buf);
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n < 0) {
				snprintf(w->err, sizeof w->err, "read on fd %d: %s", c->fd, strerror(errno));
				return NULL;
			}
			if (n == 0) {
				if (c->rx != T_BYTES) {
					snprintf(w->err, sizeof w->err, "fd %d: EOF after %llu bytes", c->fd,
						 (unsigned long long)c->rx);
					return NULL;
				}
				c->done = 1;
				open--;
				continue;
			}
			long bad = pat_check(c->buf, (size_t)n, c->rx);
			if (bad >= 0) {
				snprintf(w->err, sizeof w->err, "fd %d: byte %llu differs", c->fd,
					 (unsigned long long)(c->rx + (uint64_t)bad));
				return NULL;
			}
			c->rx += (uint64_t)n;
			c->len = (size_t)n;
			c->off = 0;
		}
	}
	w->result = 0;
	return NULL;
}

static int case_threads(void)
{
	int port = base_port + 6;
	int ls = listener_on(dp_ip, port, 0);
	CHECK(ls >= 0, "listen on %s:%d", dp_ip, port);
	pid_t pid = spawn_peer(NULL, "tcp-pattern-client", dp_ip, num(port), "--bytes", num(T_BYTES), "--conns",
			       num(T_CONNS));
	CHECK(pid > 0, "spawn peer");
	static struct tworker w[3];
	memset(w, 0, sizeof w);
	int perq[2] = {0, 0};
	for (int i = 0; i < T_CONNS; i++) {
		struct tconn *c = &tconns[i];
		memset(c, 0, sizeof *c);
		c->fd = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
		CHECK(c->fd >= 0, "accept %d", i);
		int napi = 0;
		socklen_t nl = sizeof napi;
		CHECK(getsockopt(c->fd, SOL_SOCKET, SO_INCOMING_NAPI_ID, &napi, &nl) == 0, "SO_INCOMING_NAPI_ID");
		/* Under libix: 1 + the connection's queue. Every fourth connection goes to the hand-off thread. */
		int q = (napi - 1) & 1;
		perq[q]++;
		struct tworker *to = i % 4 == 3 ? &w[2] : &w[q];
		to->c[to->n++] = c;
	}
	printf("  case 11: %d connection(s) on queue 0, %d on queue 1 (by SO_INCOMING_NAPI_ID); workers serve %d, %d, "
	       "hand-off thread %d\n",
	       perq[0], perq[1], w[0].n, w[1].n, w[2].n);
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t[i], NULL, tworker_main, &w[i]) == 0, "pthread_create");
	int failed = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		if (w[i].result != 0) {
			fprintf(stderr, "  case 11: thread %d: %s\n", i, w[i].err);
			failed++;
		}
	}
	CHECK(failed == 0, "%d thread(s) failed", failed);
	for (int i = 0; i < T_CONNS; i++)
		CHECK(xclose(tconns[i].fd) == 0, "close %d", i);
	CHECK(wait_child(pid, 30000) == 0, "Linux clients checking the echo failed (see their output)");
	CHECK(xclose(ls) == 0, "close listener");
	return 0;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "FAIL: the case did not finish within its time bound\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	for (int i = 0; i < nchildren; i++)
		kill(children[i], SIGKILL);
	_exit(3);
}

/* Fds open now, as a bitmap over the first 1024 numbers. */
static void open_fds(unsigned char *set)
{
	memset(set, 0, 1024);
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			set[fd] = 1;
}

/* Reads `want` bytes from non-blocking `c` into `b` (room `cap`), calling `wait(ctx, got)` before each recv: it
 * returns > 0 when `c` may be readable, 0 on a timeout, -1 on failure (EINTR tolerated). Gives up after 10 s.
 * Returns the bytes read, -1 on failure. */
static long read_after_waits(int c, unsigned char *b, size_t cap, size_t want, int (*wait)(void *ctx, size_t got),
			     void *ctx, const char *what)
{
	size_t got = 0;
	long end = now_ms() + 10000;
	while (got < want && now_ms() < end) {
		int n = wait(ctx, got);
		CHECK(n >= 0 || errno == EINTR, "%s: %s", what, strerror(errno));
		if (n <= 0)
			continue;
		ssize_t r = recv(c, b + got, cap - got, 0);
		CHECK(r > 0 || (r < 0 && errno == EAGAIN), "recv after %s: %zd", what, r);
		if (r > 0)
			got += (size_t)r;
	}
	return (long)got;
}

struct epoll_waiter {
	int ep;
	struct epoll_event out[8];
	sigset_t none;
};

/* epoll_wait and epoll_pwait in turn, blocking (bounded by the caller's deadline). */
static int epoll_waits(void *ctx, size_t got)
{
	struct epoll_waiter *w = ctx;
	return got % 2 ? epoll_pwait(w->ep, w->out, 8, 5000, &w->none) : epoll_wait(w->ep, w->out, 8, 5000);
}

/* An app that waits in epoll_wait itself (no libevent): a blocking wait must see connections and data arrive, so
 * the wait keeps the dataplane running. */
static int case_epoll(void)
{
	int port = base_port + 12;
	int ls = listener_on(dp_ip, port, SOCK_NONBLOCK);
	CHECK(ls >= 0, "listen");
	int ep = track(epoll_create1(EPOLL_CLOEXEC));
	CHECK(ep >= 0, "epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, out[8];
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) == 0, "EPOLL_CTL_ADD the listener");
	CHECK(epoll_wait(ep, out, 8, 0) == 0, "epoll_wait on an idle listener");
	pid_t peer = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "send 1000;recv 1000;eof", NULL, NULL, NULL);
	int n = epoll_wait(ep, out, 8, 10000);
	CHECK(n == 1 && out[0].data.fd == ls && (out[0].events & EPOLLIN), "epoll_wait: the listener readable (%d)", n);
	int c = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
	CHECK(c >= 0, "accept4");
	ev = (struct epoll_event){.events = EPOLLIN, .data.fd = c};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "EPOLL_CTL_ADD the connection");
	unsigned char b[2048];
	struct epoll_waiter w = {.ep = ep};
	sigemptyset(&w.none);
	long got = read_after_waits(c, b, sizeof b, 1000, epoll_waits, &w, "epoll_wait");
	CHECK(got == 1000 && pat_check(b, 1000, 0) < 0, "1000 bytes through epoll_wait (%ld)", got);
	CHECK(epoll_wait(ep, out, 8, 0) == 0, "epoll_wait once drained");
	CHECK(send_pattern(c, 0, 1000, 0) == 0, "send 1000");
	CHECK(xclose(c) == 0 && xclose(ls) == 0 && xclose(ep) == 0, "close");
	CHECK(wait_child(peer, 10000) == 0, "peer");
	return 0;
}

struct plain_writer {
	int fd;
	int result;
};

/* A thread that runs no loop and never polls: it writes and is gone. */
static void *plain_writer_main(void *arg)
{
	struct plain_writer *w = arg;
	/* Let the main thread go to sleep in its epoll_wait first (ordering only: the case passes either way if
	 * this is too short, and fails without the write going out if it is long enough). */
	usleep(200 * 1000);
	w->result = send_pattern(w->fd, 0, 1000, 0);
	return NULL;
}

/* A write made by a thread that runs no event loop, while the only loop sleeps: it must go out by itself, at once
 * (nothing else would cycle the dataplane for it). The main thread sleeps in epoll_wait on a set holding only the
 * listener, so neither the write nor the answer ends its wait; when the wait times out, the peer's answer must
 * already be there: had the write waited for the main thread's next cycle (at the end of its wait), the answer
 * would still be a round trip away. */
static int case_plain_thread_write(void)
{
	int port = base_port + 13;
	int ls = listener_on(dp_ip, port, SOCK_NONBLOCK);
	CHECK(ls >= 0, "listen");
	pid_t peer = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "recv 1000;send 1000;eof", NULL, NULL, NULL);
	CHECK(peer > 0, "spawn peer");
	int ep = track(epoll_create1(EPOLL_CLOEXEC));
	CHECK(ep >= 0, "epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, out[4];
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) == 0, "EPOLL_CTL_ADD the listener");
	CHECK(epoll_wait(ep, out, 4, 10000) == 1, "the peer's connection");
	int c = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
	CHECK(c >= 0, "accept4");
	struct plain_writer w = {.fd = c, .result = -1};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, plain_writer_main, &w) == 0, "pthread_create");
	/* Sleep through the write and the answer: nothing in the set becomes ready. */
	long end = now_ms() + 5000;
	int n = 0;
	while (n == 0 && now_ms() < end) {
		n = epoll_wait(ep, out, 4, (int)(end - now_ms()));
		if (n < 0 && errno == EINTR)
			n = 0;
	}
	pthread_join(t, NULL);
	CHECK(n == 0, "epoll_wait on the listener alone: %d", n);
	CHECK(w.result == 0, "the plain thread's send");
	unsigned char b[1000];
	ssize_t r = recv(c, b, sizeof b, MSG_DONTWAIT);
	CHECK(r > 0, "the answer to the plain thread's write was not there when the wait ended: %zd", r);
	size_t got = (size_t)r;
	end = now_ms() + 10000;
	while (got < sizeof b && now_ms() < end) {
		r = recv(c, b + got, sizeof b - got, MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
		else
			CHECK(r < 0 && errno == EAGAIN, "recv: %zd", r);
		if (got < sizeof b)
			idle_wait(10);
	}
	CHECK(got == sizeof b && pat_check(b, sizeof b, 0) < 0, "the answer, byte-exact (%zu)", got);
	CHECK(xclose(c) == 0 && xclose(ls) == 0 && xclose(ep) == 0, "close");
	CHECK(wait_child(peer, 10000) == 0, "peer");
	return 0;
}

/* An app that waits in ppoll(2) with a signal mask: a blocking wait must see the connection and the data arrive
 * (the wait keeps the dataplane running), and a signal the mask lets through ends it with EINTR. */
static volatile sig_atomic_t ppoll_signals;
static void on_usr1(int sig)
{
	(void)sig;
	ppoll_signals++;
}

struct ppoll_waiter {
	int fd;
	sigset_t mask;
};

/* ppoll on one fd for input, 10 s, with the waiter's signal mask. */
static int ppoll_waits(void *ctx, size_t got)
{
	(void)got;
	struct ppoll_waiter *w = ctx;
	struct pollfd p = {.fd = w->fd, .events = POLLIN};
	struct timespec ten = {10, 0};
	return ppoll(&p, 1, &ten, &w->mask);
}

static int case_ppoll(void)
{
	int port = base_port + 14;
	int ls = listener_on(dp_ip, port, SOCK_NONBLOCK);
	CHECK(ls >= 0, "listen");
	sigset_t none, usr1;
	sigemptyset(&none);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	struct sigaction sa, old_sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	CHECK(sigaction(SIGUSR1, &sa, &old_sa) == 0, "sigaction");
	sigset_t old_mask;
	CHECK(pthread_sigmask(SIG_BLOCK, &usr1, &old_mask) == 0, "block SIGUSR1");
	struct timespec ten = {10, 0}, zero = {0, 0};
	struct pollfd p = {.fd = ls, .events = POLLIN};
	CHECK(ppoll(&p, 1, &zero, &none) == 0, "ppoll on an idle listener");
	/* A SIGUSR1 pending while blocked: the wait's mask lets it through, so the wait ends with EINTR at once. */
	ppoll_signals = 0;
	CHECK(kill(getpid(), SIGUSR1) == 0, "raise SIGUSR1");
	errno = 0;
	int r = ppoll(&p, 1, &ten, &none);
	CHECK(r == -1 && errno == EINTR && ppoll_signals == 1, "ppoll: a signal the mask lets through (%d)", r);
	pid_t peer = spawn_peer(NULL, "tcp-steps", dp_ip, num(port), "sleep 0.3;send 1000;recv 1000;eof", NULL, NULL,
			       NULL);
	CHECK(peer > 0, "spawn peer");
	/* The mask keeps SIGUSR1 out this time (a blocking wait for the connection). */
	r = ppoll(&p, 1, &ten, &usr1);
	CHECK(r == 1 && (p.revents & POLLIN), "ppoll: the listener readable (%d)", r);
	int c = track(accept4(ls, NULL, NULL, SOCK_NONBLOCK));
	CHECK(c >= 0, "accept4");
	unsigned char b[2048];
	struct ppoll_waiter w = {.fd = c, .mask = usr1};
	long got = read_after_waits(c, b, sizeof b, 1000, ppoll_waits, &w, "ppoll");
	CHECK(got == 1000 && pat_check(b, 1000, 0) < 0, "1000 bytes through ppoll (%ld)", got);
	CHECK(send_pattern(c, 0, 1000, 0) == 0, "send 1000");
	CHECK(xclose(c) == 0 && xclose(ls) == 0, "close");
	CHECK(wait_child(peer, 10000) == 0, "peer");
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGUSR1, &old_sa, NULL);
	return 0;
}

/* 18. No route: a UDP socket on our address gets ENETUNREACH at once from sendto and connect for a destination
 * outside the subnet with no gateway, as Linux's does: not a datagram dropped later where nobody hears of it.
 * (TCP to outside the subnet goes through the kernel under libix.)
 * POSIX_UNROUTABLE is such an address; the script makes the kernel agree for the control run (an `ip rule ...
 * unreachable` for it), so that neither run sends anything anywhere. */
static int case_no_route(void)
{
	const char *dst = getenv("POSIX_UNROUTABLE");
	if (!dst) {
		printf("  skipped: POSIX_UNROUTABLE is not set\n");
		return 0;
	}
	struct sockaddr_in to = sin_of(dst, 9);
	int u = udp_socket_on(dp_ip, 0);
	CHECK(u >= 0, "UDP socket on %s", dp_ip);
	errno = 0;
	CHECK(sendto(u, "x", 1, 0, (struct sockaddr *)&to, sizeof to) == -1 && errno == ENETUNREACH,
	      "sendto %s: ENETUNREACH, got errno %d", dst, errno);
	errno = 0;
	CHECK(connect(u, (struct sockaddr *)&to, sizeof to) == -1 && errno == ENETUNREACH,
	      "connect UDP to %s: ENETUNREACH, got errno %d", dst, errno);
	/* The socket still works for a destination it can reach. */
	struct sockaddr_in peer = sin_of(peer_ip, 9);
	CHECK(connect(u, (struct sockaddr *)&peer, sizeof peer) == 0, "connect UDP to %s after", peer_ip);
	CHECK(xclose(u) == 0, "close");
	return 0;
}

int main(void)
{
	static const struct {
		int (*fn)(void);
		const char *name;
		int secs;
	} cases[] = {
		{case_server_blocking, "server role, blocking: 4 MiB echo, names, accept4 flags", 120},
		{case_server_nonblocking, "server role, non-blocking + poll: 20 clients, EAGAIN/FIONREAD/PEEK", 120},
		{case_client, "client role: 4 MiB both ways, non-blocking connect, refused", 120},
		{case_half_close, "half-close both ways", 60},
		{case_reset, "peer reset: ECONNRESET, EPIPE, SIGPIPE", 60},
		{case_close_unread, "close with unread data resets", 60},
		{case_options, "socket options, SO_LINGER {1, 0}", 60},
		{case_any, "INADDR_ANY listener: dataplane and loopback", 60},
		{case_kernel_fds, "kernel fds untouched", 30},
		{case_bad_input, "bad input", 60},
		{case_threads, "threads: a worker per queue and a hand-off thread, concurrently", 90},
		{case_udp_server, "UDP server role: echo for a Linux client, boundaries, TRUNC/PEEK, FIONREAD, waits", 120},
		{case_udp_client, "UDP client role: implicit bind, sendmsg/recvmsg, connected filter, AF_UNSPEC", 60},
		{case_udp_any, "UDP on INADDR_ANY: dataplane and loopback on one socket", 60},
		{case_epoll, "epoll_wait/epoll_pwait on dataplane sockets, blocking", 60},
		{case_plain_thread_write, "a write from a thread that runs no loop while the loop sleeps", 60},
		{case_ppoll, "ppoll on dataplane sockets, blocking, with a signal mask", 60},
		{case_no_route, "no route: ENETUNREACH from UDP sendto and connect", 30},
	};
	dp_ip = getenv("POSIX_DP_IP");
	peer_ip = getenv("POSIX_PEER_IP");
	const char *pp = getenv("POSIX_PEER"), *bp = getenv("POSIX_PORT"), *only = getenv("POSIX_CASES");
	if (!dp_ip || !peer_ip || !pp || !bp) {
		fprintf(stderr, "set POSIX_DP_IP, POSIX_PEER_IP, POSIX_PEER and POSIX_PORT (see the header)\n");
		return 2;
	}
	peer_prefix = strdup(pp);
	idle_prefix = getenv("POSIX_IDLE") ? strdup(getenv("POSIX_IDLE")) : NULL;
	base_port = atoi(bp);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_alarm);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigpipe;
	sigaction(SIGPIPE, &sa, NULL);
	if (pipe2(idle_pipe, O_CLOEXEC) != 0)
		return 2;

	/* Warm-up: a bind on our address brings the dataplane up under libix (its own fds are opened now), so that
	 * the fd census below sees only what the cases leave behind. */
	int w = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in wa = sin_of(dp_ip, base_port);
	if (w < 0 || bind(w, (struct sockaddr *)&wa, sizeof wa) != 0) {
		perror("warm-up bind");
		return 2;
	}
	close(w);
	static unsigned char before[1024], after[1024];
	open_fds(before);
	current_case = 0;
	if (check_idle("start") != 0) {
		fprintf(stderr, "FAIL: the dataplane is not idle at the start\n");
		return 1;
	}

	int failed = 0, ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int n = (int)i + 1;
		if (only) {
			char key[8];
			snprintf(key, sizeof key, ",%d,", n);
			char list[128];
			snprintf(list, sizeof list, ",%s,", only);
			if (!strstr(list, key))
				continue;
		}
		current_case = n;
		ran++;
		printf("== case %d: %s\n", n, cases[i].name);
		alarm((unsigned)cases[i].secs);
		int r = cases[i].fn();
		alarm(0);
		if (ntracked > 0 && r == 0) {
			fprintf(stderr, "FAIL case %d: %d fd(s) left open by the case (first %d)\n", n, ntracked,
				tracked[0]);
			r = -1;
		}
		while (ntracked > 0)
			xclose(tracked[ntracked - 1]);
		while (nchildren > 0) {
			kill(children[0], SIGKILL);
			wait_child(children[0], 5000);
		}
		char what[32];
		snprintf(what, sizeof what, "case%d", n);
		alarm(40);
		if (check_idle(what) != 0) {
			fprintf(stderr, "FAIL case %d: the dataplane did not return to idle (connections/mbufs)\n", n);
			r = -1;
		}
		alarm(0);
		printf("%s case %d\n", r == 0 ? "PASS" : "FAIL", n);
		failed += r != 0;
	}
	open_fds(after);
	int leaked = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (after[fd] && !before[fd]) {
			char link[64], target[256];
			snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
			ssize_t k = readlink(link, target, sizeof target - 1);
			target[k > 0 ? k : 0] = 0;
			fprintf(stderr, "FAIL: fd %d (%s) is open at the end and was not at the start\n", fd, target);
			leaked++;
		}
	alarm(40);
	if (check_idle("end") != 0) {
		fprintf(stderr, "FAIL: the dataplane did not return to its starting state\n");
		failed++;
	}
	alarm(0);
	close(idle_pipe[0]);
	close(idle_pipe[1]);
	printf("%d case(s) run, %d failed, %d fd(s) leaked\n", ran, failed, leaked);
	return failed || leaked ? 1 : 0;
}
