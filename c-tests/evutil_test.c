/* libevent 2.1's evutil (event2/util.h) and the evutil internals libevent_core exports, checked from C: the same
 * source must pass against libix and against Debian's libevent, which shows it checks libevent's behaviour
 * (including its parsers' and formatters' quirks) rather than ours.
 *
 *   libix:    gcc -O1 -Wall -I compat/include c-tests/evutil_test.c -L target/release -lix
 *   libevent: gcc -O1 -Wall c-tests/evutil_test.c -levent_core
 *
 * Only loopback is used; getaddrinfo is asked about literal addresses and NULL hosts only (no DNS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

/* libevent's internal declarations (util-internal.h, log-internal.h, time-internal.h, strlcpy-internal.h), which
 * its libevent_core exports and its own test programs call. */
struct evutil_weakrand_state {
	uint32_t seed;
};
uint32_t evutil_weakrand_seed_(struct evutil_weakrand_state *state, uint32_t seed);
int32_t evutil_weakrand_(struct evutil_weakrand_state *state);
int32_t evutil_weakrand_range_(struct evutil_weakrand_state *state, int32_t top);
int evutil_make_internal_pipe_(evutil_socket_t fd[2]);
const char *evutil_format_sockaddr_port_(const struct sockaddr *sa, char *out, size_t outlen);
int evutil_sockaddr_is_loopback_(const struct sockaddr *sa);
int evutil_v4addr_is_local_(const struct in_addr *in);
int evutil_v6addr_is_local_(const struct in6_addr *in);
void evutil_rtrim_lws_(char *s);
size_t event_strlcpy_(char *dst, const char *src, size_t siz);
int EVUTIL_ISSPACE_(char c);
int EVUTIL_ISPRINT_(char c);
int EVUTIL_ISXDIGIT_(char c);
char EVUTIL_TOLOWER_(char c);
int evutil_hex_char_to_int_(char c);
int evutil_socket_connect_(evutil_socket_t *fd_ptr, const struct sockaddr *sa, int socklen);
int evutil_getaddrinfo_common_(const char *nodename, const char *servname, struct evutil_addrinfo *hints,
    struct evutil_addrinfo **res, int *portnum);
long evutil_tv_to_msec_(const struct timeval *tv);
void event_warn(const char *fmt, ...);
void event_warnx(const char *fmt, ...);
void event_sock_warn(evutil_socket_t sock, const char *fmt, ...);
void event_msgx(const char *fmt, ...);
void event_errx(int eval, const char *fmt, ...);
struct evutil_monotonic_timer_layout {
	int monotonic_clock;
	struct timeval adjust_monotonic_clock;
	struct timeval last_time;
};
int evutil_configure_monotonic_time_(struct evutil_monotonic_timer *timer, int flags);
int evutil_gettime_monotonic_(struct evutil_monotonic_timer *timer, struct timeval *tv);
int evutil_ersatz_socketpair_(int family, int type, int protocol, evutil_socket_t fd[2]);
evutil_socket_t evutil_socket_(int domain, int type, int protocol);
evutil_socket_t evutil_accept4_(evutil_socket_t sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
evutil_socket_t evutil_eventfd_(unsigned initval, int flags);
int evutil_open_closeonexec_(const char *pathname, int flags, unsigned mode);
int evutil_read_file_(const char *filename, char **content_out, size_t *len_out, int is_binary);
void evutil_memclear_(void *mem, size_t len);
const char *evutil_getenv_(const char *varname);
struct evutil_addrinfo *evutil_new_addrinfo_(struct sockaddr *sa, socklen_t socklen,
    const struct evutil_addrinfo *hints);
struct evutil_addrinfo *evutil_addrinfo_append_(struct evutil_addrinfo *first, struct evutil_addrinfo *append);
void *evutil_getaddrinfo_async_(void *dns_base, const char *nodename, const char *servname,
    const struct evutil_addrinfo *hints_in, void (*cb)(int, struct evutil_addrinfo *, void *), void *arg);
void event_mm_free_(void *p);
#define EVUTIL_EAI_NEED_RESOLVE -90002

#include "check.h"

#define CHECK_STR(a, b)                                                                                \
	do {                                                                                           \
		const char *a_ = (a), *b_ = (b);                                                       \
		if (!a_ || strcmp(a_, b_)) {                                                           \
			fprintf(stderr, "FAIL %s:%d [%s]: %s == \"%s\" (got \"%s\")\n", __FILE__, __LINE__, \
			    current_test, #a, b_, a_ ? a_ : "(null)");                                 \
			failures++;                                                                    \
		}                                                                                      \
	} while (0)

/* IPv4 text → the address in host order, or -1 if libevent rejects it. */
static long long pton4(const char *s)
{
	struct in_addr a;
	int r = evutil_inet_pton(AF_INET, s, &a);
	return r == 1 ? (long long)ntohl(a.s_addr) : -1;
}

/* IPv6 text → libevent's own formatting of what it parsed, or "REJECT". */
static const char *v6_round_trip(const char *s)
{
	static char out[128];
	struct in6_addr a;
	if (evutil_inet_pton(AF_INET6, s, &a) != 1)
		return "REJECT";
	if (!evutil_inet_ntop(AF_INET6, &a, out, sizeof(out)))
		return "NTOP-FAILED";
	return out;
}

static void test_inet_pton_ntop(void)
{
	char buf[64];
	struct in_addr a4;
	struct in6_addr a6;
	current_test = "inet_pton_ntop";
	CHECK_INT(pton4("1.2.3.4"), ==, 0x01020304);
	CHECK_INT(pton4("255.255.255.255"), ==, 0xffffffffLL);
	/* sscanf("%u.%u.%u.%u%c"): spaces and '+' before a part pass, trailing text does not. */
	CHECK_INT(pton4(" 1. 2.+3.04"), ==, 0x01020304);
	CHECK_INT(pton4("1.2.3.4 "), ==, -1);
	CHECK_INT(pton4("1.2.3"), ==, -1);
	CHECK_INT(pton4("1.2.3.256"), ==, -1);
	CHECK_INT(pton4("-1.2.3.4"), ==, -1);
	CHECK_INT(pton4(""), ==, -1);
	CHECK_INT(evutil_inet_pton(AF_UNIX, "1.2.3.4", &a4), ==, -1);

	CHECK_STR(v6_round_trip("::"), "::");
	CHECK_STR(v6_round_trip("::1"), "::1");
	CHECK_STR(v6_round_trip("1::"), "1::");
	CHECK_STR(v6_round_trip("::1.2.3.4"), "::1.2.3.4");
	CHECK_STR(v6_round_trip("::FFFF:1.2.3.4"), "::ffff:1.2.3.4");
	CHECK_STR(v6_round_trip("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
	CHECK_STR(v6_round_trip("1:0:0:2::3"), "1:0:0:2::3");
	CHECK_STR(v6_round_trip("1:2:3:4:5:6:7:8"), "1:2:3:4:5:6:7:8");
	CHECK_STR(v6_round_trip("1:2:3:4:5:0:7:8"), "1:2:3:4:5:0:7:8");
	CHECK_STR(v6_round_trip("1:2:3:4:5:6:1.2.3.4"), "1:2:3:4:5:6:102:304");
	CHECK_STR(v6_round_trip("0x12::"), "12::"); /* strtol's 0x prefix counts toward the 4 characters */
	CHECK_STR(v6_round_trip("0x123::"), "REJECT");
	CHECK_STR(v6_round_trip(":1::2"), "REJECT");
	CHECK_STR(v6_round_trip("1:::2"), "REJECT");
	CHECK_STR(v6_round_trip("1::2::3"), "REJECT");
	CHECK_STR(v6_round_trip("12345::"), "REJECT");
	CHECK_STR(v6_round_trip("1:2:3:4:5:6:7"), "REJECT");
	CHECK_STR(v6_round_trip("1:2:3:4:5:6:7:8:9"), "REJECT");
	CHECK_STR(v6_round_trip("1:2:3:4:5:6:7:1.2.3.4"), "REJECT");
	CHECK_STR(v6_round_trip("::1.2.3"), "REJECT");

	/* ntop truncation: IPv4 needs room for the NUL; IPv6 accepts a buffer exactly as long as the text and cuts
	 * its last character (libevent's strlcpy). */
	a4.s_addr = htonl(0x0a000001);
	CHECK(evutil_inet_ntop(AF_INET, &a4, buf, 8) == NULL && !strcmp(buf, "10.0.0."));
	CHECK(evutil_inet_ntop(AF_INET, &a4, buf, 9) == buf && !strcmp(buf, "10.0.0.1"));
	evutil_inet_pton(AF_INET6, "1::2", &a6);
	CHECK(evutil_inet_ntop(AF_INET6, &a6, buf, 3) == NULL);
	CHECK(evutil_inet_ntop(AF_INET6, &a6, buf, 4) == buf && !strcmp(buf, "1::"));
	CHECK(evutil_inet_ntop(AF_INET6, &a6, buf, 5) == buf && !strcmp(buf, "1::2"));
	CHECK(evutil_inet_ntop(AF_UNIX, &a6, buf, sizeof(buf)) == NULL);
}

static void test_inet_pton_scope(void)
{
	struct in6_addr a6;
	unsigned idx = 99;
	current_test = "inet_pton_scope";
	CHECK_INT(evutil_inet_pton_scope(AF_INET6, "fe80::1%7", &a6, &idx), ==, 1);
	CHECK_INT(idx, ==, 7);
	CHECK_INT(evutil_inet_pton_scope(AF_INET6, "fe80::1%lo", &a6, &idx), ==, 1);
	CHECK_INT(idx, ==, 1);
	CHECK_INT(evutil_inet_pton_scope(AF_INET6, "fe80::1%no-such-if", &a6, &idx), ==, 0);
	CHECK_INT(evutil_inet_pton_scope(AF_INET6, "fe80::1", &a6, &idx), ==, 1);
	CHECK_INT(idx, ==, 0);
	idx = 5;
	CHECK_INT(evutil_inet_pton_scope(AF_INET, "1.2.3.4", &a6, &idx), ==, 1);
	CHECK_INT(idx, ==, 0);
}

static void test_parse_sockaddr_port(void)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	int len;
	current_test = "parse_sockaddr_port";
	memset(&ss, 0xee, sizeof(ss));
	len = sizeof(ss);
	CHECK_INT(evutil_parse_sockaddr_port("1.2.3.4:80x", (struct sockaddr *)&ss, &len), ==, 0);
	CHECK_INT(len, ==, sizeof(struct sockaddr_in));
	CHECK_INT(sin->sin_family, ==, AF_INET);
	CHECK_INT(ntohs(sin->sin_port), ==, 80);
	CHECK_INT(ntohl(sin->sin_addr.s_addr), ==, 0x01020304);
	CHECK_INT(((unsigned char *)&ss)[sizeof(ss) - 1], ==, 0); /* the whole given length is zeroed */
	len = sizeof(ss);
	CHECK_INT(evutil_parse_sockaddr_port("[ffff::1]:8080", (struct sockaddr *)&ss, &len), ==, 0);
	CHECK_INT(len, ==, sizeof(struct sockaddr_in6));
	CHECK_INT(sin6->sin6_family, ==, AF_INET6);
	CHECK_INT(ntohs(sin6->sin6_port), ==, 8080);
	CHECK_INT(sin6->sin6_addr.s6_addr[0], ==, 0xff);
	CHECK_INT(sin6->sin6_addr.s6_addr[15], ==, 1);
	len = sizeof(ss);
	CHECK_INT(evutil_parse_sockaddr_port("::1", (struct sockaddr *)&ss, &len), ==, 0);
	CHECK_INT(ntohs(sin6->sin6_port), ==, 0);
	len = sizeof(ss);
	CHECK_INT(evutil_parse_sockaddr_port("[::1%3]", (struct sockaddr *)&ss, &len), ==, 0);
	CHECK_INT(sin6->sin6_scope_id, ==, 3);
	len = sizeof(ss);
	CHECK_INT(evutil_parse_sockaddr_port("1.2.3.4", (struct sockaddr *)&ss, &len), ==, 0);
	CHECK_INT(ntohs(sin->sin_port), ==, 0);
	const char *bad[] = {"1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:-1", "[::1", "[::1]:0", "1.2.3:80", "[1.2.3.4]", "x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = sizeof(ss);
		if (evutil_parse_sockaddr_port(bad[i], (struct sockaddr *)&ss, &len) != -1) {
			fprintf(stderr, "FAIL [%s]: \"%s\" accepted\n", current_test, bad[i]);
			failures++;
		}
	}
	len = sizeof(struct sockaddr_in) - 1;
	CHECK_INT(evutil_parse_sockaddr_port("1.2.3.4:1", (struct sockaddr *)&ss, &len), ==, -1);
	len = sizeof(struct sockaddr_in);
	CHECK_INT(evutil_parse_sockaddr_port("[::1]:1", (struct sockaddr *)&ss, &len), ==, -1);
}

static void test_sockaddr_cmp_and_format(void)
{
	struct sockaddr_in a, b;
	struct sockaddr_in6 c, d;
	char out[64];
	current_test = "sockaddr_cmp_format";
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(0x01000002); /* 1.0.0.2 */
	a.sin_port = htons(1);
	b = a;
	b.sin_addr.s_addr = htonl(0x02000001); /* 2.0.0.1 */
	/* libevent compares the raw s_addr as a host-order integer: on little-endian, 1.0.0.2 > 2.0.0.1. */
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&a, (struct sockaddr *)&b, 0), ==, 1);
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&b, (struct sockaddr *)&a, 0), ==, -1);
	b = a;
	b.sin_port = htons(2);
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&a, (struct sockaddr *)&b, 0), ==, 0);
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&a, (struct sockaddr *)&b, 1), ==, (int)htons(1) - (int)htons(2));
	memset(&c, 0, sizeof(c));
	c.sin6_family = AF_INET6;
	d = c;
	c.sin6_addr.s6_addr[3] = 9;
	d.sin6_addr.s6_addr[3] = 2;
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&c, (struct sockaddr *)&d, 1), >, 0);
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&d, (struct sockaddr *)&c, 1), <, 0);
	CHECK_INT(evutil_sockaddr_cmp((struct sockaddr *)&a, (struct sockaddr *)&c, 1), ==, AF_INET - AF_INET6);

	CHECK_STR(evutil_format_sockaddr_port_((struct sockaddr *)&a, out, sizeof(out)), "1.0.0.2:1");
	c.sin6_port = htons(443);
	CHECK_STR(evutil_format_sockaddr_port_((struct sockaddr *)&c, out, sizeof(out)), "[0:9::]:443");
	evutil_format_sockaddr_port_((struct sockaddr *)&a, out, 5);
	CHECK_STR(out, "1.0.");
	a.sin_family = AF_UNIX;
	CHECK_STR(evutil_format_sockaddr_port_((struct sockaddr *)&a, out, sizeof(out)), "<addr with socktype 1>");

	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(0x7f0000fe);
	CHECK_INT(evutil_sockaddr_is_loopback_((struct sockaddr *)&a), ==, 1);
	a.sin_addr.s_addr = htonl(0x08080808);
	CHECK_INT(evutil_sockaddr_is_loopback_((struct sockaddr *)&a), ==, 0);
	CHECK_INT(evutil_v4addr_is_local_(&a.sin_addr), ==, 0);
	a.sin_addr.s_addr = htonl(0xa9fe0101);
	CHECK_INT(evutil_v4addr_is_local_(&a.sin_addr), ==, 1);
	memset(&c, 0, sizeof(c));
	c.sin6_addr.s6_addr[0] = 0xfe;
	c.sin6_addr.s6_addr[1] = 0xc0;
	c.sin6_addr.s6_addr[8] = 1;
	CHECK_INT(evutil_v6addr_is_local_(&c.sin6_addr), ==, 1);
	c.sin6_addr.s6_addr[0] = 0x20;
	CHECK_INT(evutil_v6addr_is_local_(&c.sin6_addr), ==, 0);
}

static int count_ai(struct evutil_addrinfo *ai, int family, int socktype)
{
	int n = 0;
	for (; ai; ai = ai->ai_next)
		n += (ai->ai_family == family && ai->ai_socktype == socktype);
	return n;
}

static void test_getaddrinfo(void)
{
	struct evutil_addrinfo hints, *ai = NULL;
	int port = -1;
	current_test = "getaddrinfo";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST;
	CHECK_INT(evutil_getaddrinfo("1.2.3.4", "80", &hints, &ai), ==, 0);
	CHECK(ai && ai->ai_family == AF_INET && ai->ai_protocol == IPPROTO_TCP && !ai->ai_next);
	if (ai) {
		CHECK_INT(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), ==, 80);
		evutil_freeaddrinfo(ai);
	}
	ai = NULL;
	CHECK_INT(evutil_getaddrinfo("no.such.host.invalid", "80", &hints, &ai), ==, EVUTIL_EAI_NONAME);
	CHECK_INT(evutil_getaddrinfo(NULL, NULL, &hints, &ai), ==, EVUTIL_EAI_NONAME);

	/* NULL hints: any family, every socket type. */
	ai = NULL;
	CHECK_INT(evutil_getaddrinfo("127.0.0.1", "8080", NULL, &ai), ==, 0);
	CHECK_INT(count_ai(ai, AF_INET, SOCK_STREAM), ==, 1);
	CHECK_INT(count_ai(ai, AF_INET, SOCK_DGRAM), ==, 1);
	if (ai)
		evutil_freeaddrinfo(ai);

	/* The resolver-free part (libevent's own implementation): NULL host is loopback (or any with PASSIVE),
	 * IPv4 first; no socket type means a TCP and a UDP entry; protocols are inferred into the hints. */
	memset(&hints, 0, sizeof(hints));
	ai = NULL;
	CHECK_INT(evutil_getaddrinfo_common_(NULL, "8080", &hints, &ai, &port), ==, 0);
	CHECK(ai && ai->ai_family == AF_INET);
	CHECK_INT(count_ai(ai, AF_INET, SOCK_STREAM) + count_ai(ai, AF_INET, SOCK_DGRAM), ==, 2);
	CHECK_INT(count_ai(ai, AF_INET6, SOCK_STREAM) + count_ai(ai, AF_INET6, SOCK_DGRAM), ==, 2);
	if (ai) {
		CHECK_INT(ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr), ==, 0x7f000001);
		CHECK_INT(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), ==, 8080);
		evutil_freeaddrinfo(ai);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE;
	ai = NULL;
	CHECK_INT(evutil_getaddrinfo_common_("::1", "53", &hints, &ai, &port), ==, 0);
	CHECK_INT(hints.ai_protocol, ==, IPPROTO_UDP);
	CHECK(ai && ai->ai_family == AF_INET6 && !ai->ai_next && ai->ai_protocol == IPPROTO_UDP);
	if (ai)
		evutil_freeaddrinfo(ai);
	memset(&hints, 0, sizeof(hints));
	CHECK_INT(evutil_getaddrinfo_common_("example.invalid", "99", &hints, &ai, &port), ==, EVUTIL_EAI_NEED_RESOLVE);
	CHECK_INT(port, ==, 99);
	CHECK_INT(evutil_getaddrinfo_common_(NULL, "65536", &hints, &ai, &port), ==, EVUTIL_EAI_NONAME);
	hints.ai_family = AF_UNIX;
	CHECK_INT(evutil_getaddrinfo_common_(NULL, "1", &hints, &ai, &port), ==, EVUTIL_EAI_FAMILY);

	CHECK_STR(evutil_gai_strerror(0), "No error");
	CHECK_STR(evutil_gai_strerror(EVUTIL_EAI_CANCEL), "Request canceled");
	CHECK_STR(evutil_gai_strerror(EVUTIL_EAI_NONAME), "nodename nor servname provided, or not known");
	CHECK_STR(evutil_gai_strerror(EVUTIL_EAI_MEMORY), "memory allocation failure");
	CHECK_STR(evutil_gai_strerror(-5), "no address associated with nodename");     /* glibc's EAI_NODATA */
	CHECK_STR(evutil_gai_strerror(-9), "address family for nodename not supported"); /* EAI_ADDRFAMILY */
	CHECK_STR(evutil_gai_strerror(-100), gai_strerror(-100));
}

static void test_strings(void)
{
	char buf[32];
	char *end = NULL;
	current_test = "strings";
	CHECK_INT(evutil_ascii_strcasecmp("Hello", "hELLO"), ==, 0);
	CHECK_INT(evutil_ascii_strcasecmp("abc", "abd"), ==, -1);
	CHECK_INT(evutil_ascii_strcasecmp("abcd", "ABC"), ==, 1);
	CHECK_INT(evutil_ascii_strcasecmp("\xe9", "a"), ==, -1); /* compared as signed char */
	CHECK_INT(evutil_ascii_strncasecmp("abcX", "ABCy", 3), ==, 0);
	CHECK_INT(evutil_ascii_strncasecmp("abcX", "ABCy", 4), ==, -1);
	CHECK_INT(evutil_ascii_strncasecmp("a", "b", 0), ==, 0);
	CHECK_INT(evutil_strtoll(" -1234x", &end, 10), ==, -1234);
	CHECK(end && *end == 'x');
	CHECK_INT(evutil_strtoll("ff", NULL, 16), ==, 255);
	errno = 0;
	CHECK_INT(evutil_strtoll("99999999999999999999", NULL, 10), ==, INT64_MAX);
	CHECK_INT(errno, ==, ERANGE);
	CHECK_INT(evutil_snprintf(buf, 4, "%d", 12345), ==, 5);
	CHECK_STR(buf, "123");
	CHECK_INT(event_strlcpy_(buf, "hello", 3), ==, 5);
	CHECK_STR(buf, "he");
	strcpy(buf, "a b \t \t");
	evutil_rtrim_lws_(buf);
	CHECK_STR(buf, "a b");
	strcpy(buf, "  ");
	evutil_rtrim_lws_(buf);
	CHECK_STR(buf, "");
	for (int c = 0; c < 256; c++) {
		int space = c == ' ' || (c >= '\t' && c <= '\r');
		CHECK_INT(EVUTIL_ISSPACE_((char)c), ==, space);
		CHECK_INT(EVUTIL_ISPRINT_((char)c), ==, (c >= 0x20 && c < 0x7f));
		CHECK_INT(EVUTIL_TOLOWER_((char)c), ==, (char)((c >= 'A' && c <= 'Z') ? c + 32 : c));
	}
	CHECK_INT(EVUTIL_ISXDIGIT_('F'), ==, 1);
	CHECK_INT(EVUTIL_ISXDIGIT_('g'), ==, 0);
	CHECK_INT(evutil_hex_char_to_int_('b'), ==, 11);
	CHECK_INT(evutil_hex_char_to_int_('z'), ==, -1);
}

static void test_date(void)
{
	char buf[64];
	struct tm tm;
	current_test = "date_rfc1123";
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = 94;
	tm.tm_mon = 10;
	tm.tm_mday = 6;
	tm.tm_wday = 0;
	tm.tm_hour = 8;
	tm.tm_min = 49;
	tm.tm_sec = 37;
	CHECK_INT(evutil_date_rfc1123(buf, sizeof(buf), &tm), ==, 29);
	CHECK_STR(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
	CHECK_INT(evutil_date_rfc1123(buf, 6, &tm), ==, 29);
	CHECK_STR(buf, "Sun, ");
	CHECK_INT(evutil_date_rfc1123(buf, sizeof(buf), NULL), ==, 29);
	CHECK(strlen(buf) == 29 && !strcmp(buf + 25, " GMT"));
}

static void test_rand(void)
{
	struct evutil_weakrand_state st;
	unsigned char a[64], b[64];
	current_test = "rand";
	CHECK_INT(evutil_weakrand_seed_(&st, 1), ==, 1);
	CHECK_INT(evutil_weakrand_(&st), ==, 1103527590);
	CHECK_INT(evutil_weakrand_(&st), ==, 377401575);
	CHECK(evutil_weakrand_seed_(&st, 0) != 0);
	for (int i = 0; i < 1000; i++) {
		int r = evutil_weakrand_range_(&st, 10);
		CHECK(r >= 0 && r < 10);
	}
	st.seed = 5;
	CHECK_INT(evutil_weakrand_range_(&st, 1000), ==, (((5u * 1103515245u + 12345u) & 0x7fffffff) / (0x7fffffff / 1000)));
	CHECK_INT(evutil_secure_rng_init(), ==, 0);
	CHECK_INT(evutil_secure_rng_set_urandom_device_file("/dev/urandom"), ==, -1); /* Debian's: arc4random */
	evutil_secure_rng_add_bytes("x", 1);
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	evutil_secure_rng_get_bytes(a, sizeof(a));
	evutil_secure_rng_get_bytes(b, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) != 0);
}

static void test_monotonic(void)
{
	struct evutil_monotonic_timer *t = evutil_monotonic_timer_new();
	struct evutil_monotonic_timer_layout on_stack;
	struct timeval tv1, tv2;
	struct timeval ms = {1, 999};
	current_test = "monotonic";
	CHECK(t != NULL);
	for (int flags = 0; flags <= EV_MONOT_PRECISE + EV_MONOT_FALLBACK; flags++) {
		CHECK_INT(evutil_configure_monotonic_time(t, flags), ==, 0);
		CHECK_INT(evutil_gettime_monotonic(t, &tv1), ==, 0);
		CHECK_INT(evutil_gettime_monotonic(t, &tv2), ==, 0);
		CHECK(evutil_timercmp(&tv1, &tv2, <=));
	}
	evutil_monotonic_timer_free(t);
	/* The internal layout (regress keeps the timer on the stack): PRECISE picks CLOCK_MONOTONIC, the default the
	 * coarse clock, FALLBACK the wall clock (-1). */
	memset(&on_stack, 0, sizeof(on_stack));
	CHECK_INT(evutil_configure_monotonic_time_((struct evutil_monotonic_timer *)&on_stack, EV_MONOT_PRECISE), ==, 0);
	CHECK_INT(on_stack.monotonic_clock, ==, CLOCK_MONOTONIC);
	CHECK_INT(evutil_configure_monotonic_time_((struct evutil_monotonic_timer *)&on_stack, 0), ==, 0);
	CHECK_INT(on_stack.monotonic_clock, ==, CLOCK_MONOTONIC_COARSE);
	CHECK_INT(evutil_configure_monotonic_time_((struct evutil_monotonic_timer *)&on_stack, EV_MONOT_FALLBACK), ==, 0);
	CHECK_INT(on_stack.monotonic_clock, ==, -1);
	CHECK_INT(evutil_tv_to_msec_(&ms), ==, 1001);
}

static void test_sockets(void)
{
	evutil_socket_t pair[2] = {-1, -1}, pipe_fds[2] = {-1, -1}, c = -1;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int listener, r;
	current_test = "sockets";
	CHECK_INT(evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, pair), ==, 0);
	CHECK_INT(fcntl(pair[0], F_GETFL) & O_NONBLOCK, ==, 0);
	CHECK_INT(evutil_make_socket_nonblocking(pair[0]), ==, 0);
	CHECK(fcntl(pair[0], F_GETFL) & O_NONBLOCK);
	CHECK_INT(evutil_make_socket_closeonexec(pair[0]), ==, 0);
	CHECK(fcntl(pair[0], F_GETFD) & FD_CLOEXEC);
	CHECK_INT(evutil_closesocket(pair[0]), ==, 0);
	CHECK_INT(evutil_closesocket(pair[1]), ==, 0);
	CHECK_INT(evutil_closesocket(pair[1]), ==, -1);
	CHECK_INT(errno, ==, EBADF);
	CHECK_INT(evutil_make_socket_nonblocking(pair[1]), ==, -1);

	CHECK_INT(evutil_make_internal_pipe_(pipe_fds), ==, 0);
	CHECK(fcntl(pipe_fds[0], F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(pipe_fds[1], F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(pipe_fds[0], F_GETFD) & FD_CLOEXEC);
	CHECK_INT(write(pipe_fds[1], "x", 1), ==, 1);
	char ch = 0;
	CHECK_INT(read(pipe_fds[0], &ch, 1), ==, 1);
	CHECK_INT(ch, ==, 'x');
	close(pipe_fds[0]);
	close(pipe_fds[1]);

	listener = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_INT(evutil_make_listen_socket_reuseable(listener), ==, 0);
	CHECK_INT(evutil_make_listen_socket_reuseable_port(listener), ==, 0);
	CHECK_INT(evutil_make_tcp_listen_socket_deferred(listener), ==, 0);
	CHECK_INT(evutil_make_listen_socket_ipv6only(listener), ==, -1); /* not an IPv6 socket */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	CHECK_INT(bind(listener, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	CHECK_INT(getsockname(listener, (struct sockaddr *)&sin, &len), ==, 0);
	CHECK_INT(listen(listener, 8), ==, 0);
	r = evutil_socket_connect_(&c, (struct sockaddr *)&sin, sizeof(sin));
	CHECK(r == 0 || r == 1);
	CHECK(c >= 0 && (fcntl(c, F_GETFL) & O_NONBLOCK));
	close(c);
	close(listener); /* now nothing listens there: refused (2) or in progress (0) */
	c = -1;
	r = evutil_socket_connect_(&c, (struct sockaddr *)&sin, sizeof(sin));
	CHECK(r == 2 || r == 0);
	if (c >= 0)
		close(c);
}

static int async_err = 99;
static struct evutil_addrinfo *async_ai;

static void async_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	async_err = err;
	async_ai = ai;
	*(int *)arg += 1;
}

static void test_internals(void)
{
	evutil_socket_t fds[2] = {-1, -1};
	struct sockaddr_in sin;
	struct evutil_addrinfo hints, *ai, *tail;
	char path[] = "/tmp/evutil_test.XXXXXX", *content = NULL;
	size_t len = 0;
	unsigned char secret[8] = {1, 2, 3, 4, 5, 6, 7, 8}, zero[8] = {0};
	int fd, calls = 0;
	current_test = "internals";
	/* The TCP-over-loopback socketpair: fd[0] the connector, fd[1] the accepted end. */
	CHECK_INT(evutil_ersatz_socketpair_(AF_INET, SOCK_STREAM, 0, fds), ==, 0);
	CHECK_INT(write(fds[0], "ab", 2), ==, 2);
	char buf[4] = {0};
	CHECK_INT(read(fds[1], buf, sizeof(buf)), ==, 2);
	CHECK_STR(buf, "ab");
	close(fds[0]);
	close(fds[1]);
	CHECK_INT(evutil_ersatz_socketpair_(AF_INET6, SOCK_STREAM, 0, fds), ==, -1);
	CHECK_INT(errno, ==, EAFNOSUPPORT);
	CHECK_INT(evutil_ersatz_socketpair_(AF_INET, SOCK_STREAM, 1, fds), ==, -1);
	CHECK_INT(errno, ==, EAFNOSUPPORT);

	fd = evutil_socket_(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) && (fcntl(fd, F_GETFD) & FD_CLOEXEC));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	CHECK_INT(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	CHECK_INT(listen(fd, 1), ==, 0);
	CHECK_INT(evutil_accept4_(fd, NULL, NULL, SOCK_NONBLOCK), ==, -1);
	CHECK_INT(errno, ==, EAGAIN);
	close(fd);
	fd = evutil_eventfd_(3, EFD_NONBLOCK);
	CHECK(fd >= 0);
	uint64_t v = 0;
	CHECK_INT(read(fd, &v, sizeof(v)), ==, 8);
	CHECK_INT(v, ==, 3);
	close(fd);

	fd = mkstemp(path);
	CHECK_INT(write(fd, "hello\0x", 7), ==, 7);
	close(fd);
	CHECK_INT(evutil_read_file_(path, &content, &len, 0), ==, 0);
	CHECK_INT(len, ==, 7);
	CHECK(content && !memcmp(content, "hello\0x", 8)); /* NUL-terminated too */
	event_mm_free_(content);
	fd = evutil_open_closeonexec_(path, O_RDONLY, 0);
	CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC));
	close(fd);
	unlink(path);
	CHECK_INT(evutil_read_file_(path, &content, &len, 0), ==, -1);
	CHECK(content == NULL && len == 0);

	evutil_memclear_(secret, sizeof(secret));
	CHECK(!memcmp(secret, zero, sizeof(secret)));
	setenv("EVUTIL_TEST_VAR", "yes", 1);
	CHECK_STR(evutil_getenv_("EVUTIL_TEST_VAR"), "yes");

	/* Two libevent-allocated lists appended and freed with evutil_freeaddrinfo. */
	memset(&hints, 0, sizeof(hints));
	ai = evutil_new_addrinfo_((struct sockaddr *)&sin, sizeof(sin), &hints);
	CHECK(ai && ai->ai_next && ai->ai_socktype == SOCK_STREAM && ai->ai_next->ai_protocol == IPPROTO_UDP);
	hints.ai_socktype = SOCK_STREAM;
	tail = evutil_new_addrinfo_((struct sockaddr *)&sin, sizeof(sin), &hints);
	CHECK(tail && !tail->ai_next && tail->ai_addrlen == sizeof(sin) && tail->ai_family == AF_INET);
	CHECK(evutil_addrinfo_append_(ai, tail) == ai && ai->ai_next->ai_next == tail);
	CHECK(evutil_addrinfo_append_(NULL, tail) == tail);
	evutil_freeaddrinfo(ai);

	/* Without an evdns base the "async" lookup is the blocking one, answered before it returns. */
	hints.ai_flags = EVUTIL_AI_NUMERICHOST;
	CHECK(evutil_getaddrinfo_async_(NULL, "127.0.0.1", "80", &hints, async_cb, &calls) == NULL);
	CHECK_INT(calls, ==, 1);
	CHECK_INT(async_err, ==, 0);
	CHECK(async_ai && async_ai->ai_family == AF_INET);
	if (async_ai)
		evutil_freeaddrinfo(async_ai);
}

static int last_severity = -1;
static char last_msg[2048];

static void log_cb(int severity, const char *msg)
{
	last_severity = severity;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static void fatal_cb(int code)
{
	_exit(100 + code);
}

static void test_logging(void)
{
	char expect[128], big[1100];
	pid_t pid;
	int status = 0;
	current_test = "logging";
	event_set_log_callback(log_cb);
	event_warnx("Far too many %s (%d)", "wombats", 99);
	CHECK_INT(last_severity, ==, EVENT_LOG_WARN);
	CHECK_STR(last_msg, "Far too many wombats (99)");
	event_msgx("lime");
	CHECK_INT(last_severity, ==, EVENT_LOG_MSG);
	errno = ENOENT;
	event_warn("Couldn't open %s", "/bad/file");
	snprintf(expect, sizeof(expect), "Couldn't open /bad/file: %s", strerror(ENOENT));
	CHECK_STR(last_msg, expect);
	errno = EAGAIN;
	event_sock_warn(-1, "Unhappy socket");
	snprintf(expect, sizeof(expect), "Unhappy socket: %s", strerror(EAGAIN));
	CHECK_STR(last_msg, expect);
	/* 1024-byte buffer: the message is cut at 1023 characters, and no room means no ": strerror". */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	errno = ENOENT;
	event_warn("%s", big);
	CHECK_INT(strlen(last_msg), ==, 1023);
	/* A failing fcntl warns through the same path. */
	last_severity = -1;
	CHECK_INT(evutil_make_socket_nonblocking(-1), ==, -1);
	snprintf(expect, sizeof(expect), "fcntl(-1, F_GETFL): %s", strerror(EBADF));
	CHECK_STR(last_msg, expect);
	/* event_errx ends the process through the fatal callback. */
	pid = fork();
	if (pid == 0) {
		event_set_fatal_callback(fatal_cb);
		event_errx(7, "fatal");
		_exit(0);
	}
	CHECK_INT(waitpid(pid, &status, 0), ==, pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 107);
	event_set_log_callback(NULL);
}

int main(void)
{
	test_inet_pton_ntop();
	test_inet_pton_scope();
	test_parse_sockaddr_port();
	test_sockaddr_cmp_and_format();
	test_getaddrinfo();
	test_strings();
	test_date();
	test_rand();
	test_monotonic();
	test_sockets();
	test_internals();
	test_logging();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("evutil: all checks passed\n");
	return 0;
}
