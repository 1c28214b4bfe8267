/* libevent 2.1's evbuffer, checked from C: the same source must pass against libix and against Debian's libevent,
 * which shows it checks libevent's behaviour rather than ours.
 *
 *   libix:    gcc -O1 -Wall -I compat/include c-tests/evbuffer_test.c -L target/release -lix -lpthread
 *   libevent: gcc -O1 -Wall c-tests/evbuffer_test.c -levent_core -levent_pthreads -lpthread
 *
 * Checked: contents after every kind of change, the space and iovecs libevent hands out (its chain sizes), frozen
 * ends, positions and searches, every end-of-line style, references and files and when their cleanups run, fd
 * reads (4096 per call, or what FIONREAD reports) and writes, callbacks (order, information, flags, the compat
 * callback, deferral to a base), printf, locking.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/buffer_compat.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "check.h"

/* The buffer's whole contents equal the NUL-terminated `s`. */
static int contents_are(struct evbuffer *b, const char *s)
{
	size_t n = strlen(s);
	char tmp[8192];
	if (evbuffer_get_length(b) != n || n > sizeof(tmp))
		return 0;
	if (evbuffer_copyout(b, tmp, n) != (ev_ssize_t)n)
		return 0;
	return memcmp(tmp, s, n) == 0;
}

static void test_add_remove_drain(void)
{
	struct evbuffer *b = evbuffer_new();
	char out[16];
	CHECK(b != NULL);
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, 0);
	CHECK_INT(evbuffer_add(b, "hello ", 6), ==, 0);
	CHECK_INT(evbuffer_add(b, "world", 5), ==, 0);
	CHECK(contents_are(b, "hello world"));
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, 11);
	CHECK_INT(evbuffer_copyout(b, out, 5), ==, 5);
	CHECK(memcmp(out, "hello", 5) == 0);
	CHECK_INT(evbuffer_get_length(b), ==, 11);
	CHECK_INT(evbuffer_remove(b, out, 6), ==, 6);
	CHECK(memcmp(out, "hello ", 6) == 0);
	CHECK_INT(evbuffer_remove(b, out, sizeof(out)), ==, 5);
	CHECK_INT(evbuffer_remove(b, out, sizeof(out)), ==, 0);
	CHECK_INT(evbuffer_add(b, "abcdef", 6), ==, 0);
	CHECK_INT(evbuffer_drain(b, 2), ==, 0);
	CHECK(contents_are(b, "cdef"));
	CHECK_INT(evbuffer_drain(b, 100), ==, 0);
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	CHECK_INT(evbuffer_prepend(b, "world", 5), ==, 0);
	CHECK_INT(evbuffer_prepend(b, "hello ", 6), ==, 0);
	CHECK(contents_are(b, "hello world"));
	CHECK_INT(evbuffer_add(b, "", 0), ==, 0);
	evbuffer_free(b);
}

static void test_chain_sizes_and_space(void)
{
	struct evbuffer *b = evbuffer_new();
	struct evbuffer_iovec v[4];
	char big[3000];
	int n;
	memset(big, 'x', sizeof(big));
	/* libevent's smallest chain holds 1024 - sizeof(struct evbuffer_chain) = 976 bytes on LP64. */
	CHECK_INT(evbuffer_reserve_space(b, 1, v, 1), ==, 1);
	CHECK_INT(v[0].iov_len, ==, 976);
	memcpy(v[0].iov_base, "abc", 3);
	v[0].iov_len = 3;
	CHECK_INT(evbuffer_commit_space(b, v, 1), ==, 0);
	CHECK(contents_are(b, "abc"));
	/* Committing more than was reserved fails. */
	CHECK_INT(evbuffer_reserve_space(b, 10, v, 1), ==, 1);
	CHECK_INT(v[0].iov_len, ==, 973);
	v[0].iov_len = 974;
	CHECK_INT(evbuffer_commit_space(b, v, 1), ==, -1);
	CHECK_INT(evbuffer_get_length(b), ==, 3);
	/* An iovec that is not the buffer's space fails. */
	v[0].iov_base = big;
	v[0].iov_len = 1;
	CHECK_INT(evbuffer_commit_space(b, v, 1), ==, -1);
	/* Committing nothing is fine. */
	CHECK_INT(evbuffer_commit_space(b, v, 0), ==, 0);
	/* Two vectors: the rest of the last chain plus a new one for what does not fit. */
	n = evbuffer_reserve_space(b, 2000, v, 2);
	CHECK_INT(n, ==, 2);
	CHECK_INT(v[0].iov_len, ==, 973);
	CHECK(v[1].iov_len >= 2000 - 973);
	memset(v[0].iov_base, 'a', v[0].iov_len);
	memset(v[1].iov_base, 'b', 27);
	v[1].iov_len = 27;
	CHECK_INT(evbuffer_commit_space(b, v, 2), ==, 0);
	CHECK_INT(evbuffer_get_length(b), ==, 3 + 973 + 27);
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, 976);
	/* A big add gets a chain of its own, sized to a power of two. */
	evbuffer_drain(b, evbuffer_get_length(b));
	CHECK_INT(evbuffer_add(b, big, sizeof(big)), ==, 0);
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, sizeof(big));
	CHECK_INT(evbuffer_reserve_space(b, 1, v, 1), ==, 1);
	CHECK_INT(v[0].iov_len, ==, 4096 - 48 - 3000);
	CHECK_INT(evbuffer_expand(b, 10000), ==, 0);
	CHECK_INT(evbuffer_reserve_space(b, 10000, v, 1), ==, 1);
	CHECK(v[0].iov_len >= 10000);
	CHECK_INT(evbuffer_reserve_space(b, 10, v, 0), ==, -1);
	evbuffer_free(b);

	/* libevent's quirk: one iovec reserved in an empty chain that is neither the last chain nor the first with space
	 * cannot be committed. */
	b = evbuffer_new();
	CHECK_INT(evbuffer_expand(b, 4000), ==, 0);
	evbuffer_add(b, big, 3000);
	evbuffer_add(b, big, 1000); /* one 4048-byte chain holding 4000 */
	CHECK_INT(evbuffer_reserve_space(b, 5000, v, 2), ==, 2);
	CHECK_INT(v[0].iov_len, ==, 48);
	CHECK_INT(v[1].iov_len, ==, 8144);
	CHECK_INT(evbuffer_reserve_space(b, 9000, v, 3), ==, 3);
	CHECK_INT(v[2].iov_len, ==, 976);
	CHECK_INT(evbuffer_reserve_space(b, 1000, v, 1), ==, 1);
	CHECK_INT(v[0].iov_len, ==, 8144);
	v[0].iov_len = 10;
	CHECK_INT(evbuffer_commit_space(b, v, 1), ==, -1);
	CHECK_INT(evbuffer_get_length(b), ==, 4000);
	evbuffer_free(b);
}

static void test_freeze(void)
{
	struct evbuffer *b = evbuffer_new();
	struct evbuffer *o = evbuffer_new();
	struct evbuffer_iovec v[1];
	char out[4];
	evbuffer_add(b, "abcd", 4);
	CHECK_INT(evbuffer_freeze(b, 1), ==, 0);
	CHECK_INT(evbuffer_drain(b, 1), ==, -1);
	CHECK_INT(evbuffer_remove(b, out, 1), ==, -1);
	CHECK_INT(evbuffer_copyout(b, out, 1), ==, -1);
	CHECK_INT(evbuffer_prepend(b, "x", 1), ==, -1);
	CHECK(evbuffer_readln(b, NULL, EVBUFFER_EOL_ANY) == NULL);
	CHECK_INT(evbuffer_add_buffer(o, b), ==, -1);
	CHECK_INT(evbuffer_add(b, "e", 1), ==, 0);
	CHECK_INT(evbuffer_unfreeze(b, 1), ==, 0);
	CHECK_INT(evbuffer_freeze(b, 0), ==, 0);
	CHECK_INT(evbuffer_add(b, "f", 1), ==, -1);
	CHECK_INT(evbuffer_add_printf(b, "%d", 1), ==, -1);
	CHECK_INT(evbuffer_reserve_space(b, 1, v, 1), ==, -1);
	CHECK_INT(evbuffer_add_buffer(b, o), ==, 0); /* o is empty: nothing to refuse */
	evbuffer_add(o, "z", 1);
	CHECK_INT(evbuffer_add_buffer(b, o), ==, -1);
	CHECK_INT(evbuffer_drain(b, 1), ==, 0);
	CHECK_INT(evbuffer_unfreeze(b, 0), ==, 0);
	CHECK(contents_are(b, "bcde"));
	/* Draining an empty buffer succeeds even with its front frozen. */
	evbuffer_drain(o, 100);
	evbuffer_freeze(o, 1);
	CHECK_INT(evbuffer_drain(o, 10), ==, 0);
	CHECK_INT(evbuffer_drain(b, 0), ==, 0);
	evbuffer_free(b);
	evbuffer_free(o);
}

static void test_moves(void)
{
	struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
	struct evbuffer_iovec before[2], after[2];
	char big[2000];
	memset(big, 'q', sizeof(big));
	evbuffer_add(a, "0123456789", 10);
	/* add_buffer moves the chains themselves: the bytes do not move in memory. */
	CHECK_INT(evbuffer_peek(a, -1, NULL, before, 2), ==, 1);
	evbuffer_add(b, "xy", 2);
	CHECK_INT(evbuffer_add_buffer(b, a), ==, 0);
	CHECK_INT(evbuffer_get_length(a), ==, 0);
	CHECK(contents_are(b, "xy0123456789"));
	CHECK_INT(evbuffer_peek(b, -1, NULL, after, 2), ==, 2);
	CHECK(after[1].iov_base == before[0].iov_base);
	CHECK_INT(evbuffer_add_buffer(b, b), ==, 0);
	/* prepend_buffer */
	evbuffer_add(a, "<<", 2);
	CHECK_INT(evbuffer_prepend_buffer(b, a), ==, 0);
	CHECK(contents_are(b, "<<xy0123456789"));
	CHECK_INT(evbuffer_get_length(a), ==, 0);
	/* remove_buffer: whole chains move, a partial one is split. */
	CHECK_INT(evbuffer_remove_buffer(b, a, 5), ==, 5);
	CHECK(contents_are(a, "<<xy0"));
	CHECK(contents_are(b, "123456789"));
	CHECK_INT(evbuffer_remove_buffer(b, a, 0), ==, 0);
	CHECK_INT(evbuffer_remove_buffer(b, a, 100), ==, 9);
	CHECK(contents_are(a, "<<xy0123456789"));
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	/* A big buffer moved piecewise keeps its bytes. */
	evbuffer_drain(a, 100);
	evbuffer_add(a, big, sizeof(big));
	evbuffer_add(a, "end", 3);
	CHECK_INT(evbuffer_remove_buffer(a, b, 1999), ==, 1999);
	CHECK(contents_are(a, "qend"));
	evbuffer_free(a);
	evbuffer_free(b);
}

static void test_pullup_and_peek(void)
{
	struct evbuffer *b = evbuffer_new(), *o = evbuffer_new();
	struct evbuffer_iovec v[8];
	struct evbuffer_ptr p;
	unsigned char *s;
	int i;
	for (i = 0; i < 3; i++) {
		/* Separate chains: move each through another buffer. */
		evbuffer_add(o, "abcd" + i, 2);
		evbuffer_add_buffer(b, o);
	}
	CHECK(contents_are(b, "abbccd"));
	CHECK_INT(evbuffer_peek(b, -1, NULL, NULL, 0), ==, 3);
	CHECK_INT(evbuffer_peek(b, 3, NULL, v, 8), ==, 2);
	CHECK_INT(evbuffer_peek(b, -1, NULL, v, 1), ==, 1);
	CHECK_INT(v[0].iov_len, ==, 2);
	CHECK_INT(evbuffer_ptr_set(b, &p, 3, EVBUFFER_PTR_SET), ==, 0);
	CHECK_INT(evbuffer_peek(b, -1, &p, v, 8), ==, 2);
	CHECK_INT(v[0].iov_len, ==, 1);
	CHECK(memcmp(v[0].iov_base, "c", 1) == 0);
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, 2);
	CHECK(evbuffer_pullup(b, 7) == NULL);
	CHECK(evbuffer_pullup(b, 0) == NULL);
	s = evbuffer_pullup(b, 4);
	CHECK(s != NULL && memcmp(s, "abbc", 4) == 0);
	CHECK(evbuffer_get_contiguous_space(b) >= 4);
	s = evbuffer_pullup(b, -1);
	CHECK(s != NULL && memcmp(s, "abbccd", 6) == 0);
	CHECK_INT(evbuffer_get_contiguous_space(b), ==, 6);
	CHECK(EVBUFFER_DATA(b) == s);
	CHECK_INT(EVBUFFER_LENGTH(b), ==, 6);
	/* find (compat) pulls up through the match. */
	s = evbuffer_find(b, (const unsigned char *)"cc", 2);
	CHECK(s != NULL && memcmp(s, "ccd", 3) == 0);
	CHECK(evbuffer_find(b, (const unsigned char *)"zz", 2) == NULL);
	evbuffer_free(b);
	evbuffer_free(o);
}

static void test_search(void)
{
	struct evbuffer *b = evbuffer_new(), *o = evbuffer_new();
	struct evbuffer_ptr p, q, end;
	size_t eol_len = 99;
	evbuffer_add(b, "hello wor", 9);
	evbuffer_add(o, "ld, hello again", 15);
	evbuffer_add_buffer(b, o); /* "world" spans two chains */
	p = evbuffer_search(b, "world", 5, NULL);
	CHECK_INT(p.pos, ==, 6);
	p = evbuffer_search(b, "hello", 5, NULL);
	CHECK_INT(p.pos, ==, 0);
	CHECK_INT(evbuffer_ptr_set(b, &p, 1, EVBUFFER_PTR_ADD), ==, 0);
	q = evbuffer_search(b, "hello", 5, &p);
	CHECK_INT(q.pos, ==, 13);
	q = evbuffer_search(b, "nothere", 7, NULL);
	CHECK_INT(q.pos, ==, -1);
	CHECK(q.internal_.chain == NULL);
	/* search_range: the match must end by `end`. */
	CHECK_INT(evbuffer_ptr_set(b, &end, 17, EVBUFFER_PTR_SET), ==, 0);
	q = evbuffer_search_range(b, "hello", 5, &p, &end);
	CHECK_INT(q.pos, ==, -1);
	CHECK_INT(evbuffer_ptr_set(b, &end, 18, EVBUFFER_PTR_SET), ==, 0);
	q = evbuffer_search_range(b, "hello", 5, &p, &end);
	CHECK_INT(q.pos, ==, 13);
	/* ptr_set: to the end is fine (on no byte), past it fails and marks the pointer not found. */
	CHECK_INT(evbuffer_ptr_set(b, &p, 24, EVBUFFER_PTR_SET), ==, 0);
	CHECK_INT(p.pos, ==, 24);
	CHECK(p.internal_.chain == NULL);
	q = evbuffer_search(b, "a", 1, &p);
	CHECK_INT(q.pos, ==, -1);
	CHECK_INT(evbuffer_ptr_set(b, &p, 1, EVBUFFER_PTR_ADD), ==, -1);
	CHECK_INT(p.pos, ==, -1);
	CHECK_INT(evbuffer_ptr_set(b, &p, 25, EVBUFFER_PTR_SET), ==, -1);
	CHECK_INT(p.pos, ==, -1);
	/* copyout_from a position. */
	{
		char out[8];
		CHECK_INT(evbuffer_ptr_set(b, &p, 20, EVBUFFER_PTR_SET), ==, 0);
		CHECK_INT(evbuffer_copyout_from(b, &p, out, sizeof(out)), ==, 4);
		CHECK(memcmp(out, "gain", 4) == 0);
	}
	/* search_eol with no EOL: not found, length 0. */
	p = evbuffer_search_eol(b, NULL, &eol_len, EVBUFFER_EOL_LF);
	CHECK_INT(p.pos, ==, -1);
	CHECK_INT(eol_len, ==, 0);
	evbuffer_add(b, "\r\n", 2);
	p = evbuffer_search_eol(b, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	CHECK_INT(p.pos, ==, 24);
	CHECK_INT(eol_len, ==, 2);
	evbuffer_free(b);
	evbuffer_free(o);
}

static void test_readln(void)
{
	struct evbuffer *b = evbuffer_new();
	size_t n = 99;
	char *line;
	static const char text[] = "one\r\n\r\ntwo\nthree\r\rfour\r\nfive";
	/* EOL_ANY: a run of CR/LF ends the line. */
	evbuffer_add(b, text, sizeof(text) - 1);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_ANY);
	CHECK(line && strcmp(line, "one") == 0);
	CHECK_INT(n, ==, 3);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_ANY);
	CHECK(line && strcmp(line, "two") == 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_ANY);
	CHECK(line && strcmp(line, "three") == 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_ANY);
	CHECK(line && strcmp(line, "four") == 0);
	free(line);
	n = 99;
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_ANY);
	CHECK(line == NULL);
	CHECK_INT(n, ==, 0);
	CHECK(contents_are(b, "five"));
	evbuffer_drain(b, 100);

	/* EOL_CRLF: LF with an optional CR before it; a lone CR is data. */
	evbuffer_add(b, text, sizeof(text) - 1);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_CRLF);
	CHECK(line && strcmp(line, "one") == 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_CRLF);
	CHECK(line && strcmp(line, "") == 0);
	CHECK_INT(n, ==, 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_CRLF);
	CHECK(line && strcmp(line, "two") == 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_CRLF);
	CHECK(line && strcmp(line, "three\r\rfour") == 0);
	free(line);
	evbuffer_drain(b, 100);

	/* EOL_CRLF_STRICT: only CR LF. */
	evbuffer_add(b, "a\nb\r\nc", 6);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_CRLF_STRICT);
	CHECK(line && strcmp(line, "a\nb") == 0);
	free(line);
	CHECK(contents_are(b, "c"));
	evbuffer_drain(b, 100);

	/* EOL_LF and EOL_NUL. */
	evbuffer_add(b, "x\r\ny\0z", 6);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_LF);
	CHECK(line && strcmp(line, "x\r") == 0);
	free(line);
	line = evbuffer_readln(b, &n, EVBUFFER_EOL_NUL);
	CHECK(line && strcmp(line, "y") == 0);
	CHECK_INT(n, ==, 1);
	free(line);
	CHECK(contents_are(b, "z"));
	/* An unknown style finds nothing. */
	evbuffer_add(b, "\n", 1);
	CHECK(evbuffer_readln(b, &n, 99) == NULL);
	/* readline (compat) is EOL_ANY. */
	line = evbuffer_readline(b);
	CHECK(line && strcmp(line, "z") == 0);
	free(line);
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	evbuffer_free(b);
}

static int ref_cleanups;
static const void *ref_cleanup_data;
static void ref_cleanup(const void *data, size_t len, void *arg)
{
	ref_cleanups++;
	ref_cleanup_data = data;
	CHECK_INT(len, ==, 5);
	CHECK(arg == (void *)&ref_cleanups);
}

/* A cleanup that looks at the buffer it was released from (reentry from inside a drain). */
static size_t len_seen_by_cleanup;
static void len_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	len_seen_by_cleanup = evbuffer_get_length(arg);
}

static void test_references(void)
{
	static const char lent[] = "lent!";
	struct evbuffer *b = evbuffer_new(), *c = evbuffer_new();
	struct evbuffer_iovec v[2];
	ref_cleanups = 0;
	evbuffer_add(b, "<", 1);
	CHECK_INT(evbuffer_add_reference(b, lent, 5, ref_cleanup, &ref_cleanups), ==, 0);
	evbuffer_add(b, ">", 1);
	CHECK(contents_are(b, "<lent!>"));
	/* The lent bytes are not copied. */
	CHECK_INT(evbuffer_peek(b, -1, NULL, v, 2), >=, 2);
	CHECK(v[1].iov_base == (void *)lent);
	CHECK_INT(evbuffer_drain(b, 3), ==, 0);
	CHECK_INT(ref_cleanups, ==, 0);
	CHECK_INT(evbuffer_drain(b, 3), ==, 0);
	CHECK_INT(ref_cleanups, ==, 1);
	CHECK(ref_cleanup_data == lent);
	/* Moving a reference keeps it alive; freeing the buffer releases it. */
	CHECK_INT(evbuffer_add_reference(b, lent, 5, ref_cleanup, &ref_cleanups), ==, 0);
	evbuffer_add_buffer(c, b);
	CHECK_INT(ref_cleanups, ==, 1);
	evbuffer_free(c);
	CHECK_INT(ref_cleanups, ==, 2);
	/* A frozen end refuses, without calling the cleanup. */
	evbuffer_freeze(b, 0);
	CHECK_INT(evbuffer_add_reference(b, lent, 5, ref_cleanup, &ref_cleanups), ==, -1);
	CHECK_INT(ref_cleanups, ==, 2);
	evbuffer_unfreeze(b, 0);
	evbuffer_free(b);

	/* The cleanup may call into the buffer that releases the bytes: it sees the length after the drain. */
	b = evbuffer_new();
	evbuffer_add(b, "<", 1);
	evbuffer_add_reference(b, lent, 5, len_cleanup, b);
	evbuffer_add(b, ">>", 2);
	len_seen_by_cleanup = 99;
	CHECK_INT(evbuffer_drain(b, 6), ==, 0);
	CHECK_INT(len_seen_by_cleanup, ==, 2);
	CHECK(contents_are(b, ">>"));
	evbuffer_free(b);

	/* add_buffer_reference: the second buffer sees the bytes; the first keeps them, and appends after it still work. */
	b = evbuffer_new();
	c = evbuffer_new();
	evbuffer_add(b, "shared", 6);
	CHECK_INT(evbuffer_add_buffer_reference(c, b), ==, 0);
	CHECK(contents_are(c, "shared"));
	CHECK(contents_are(b, "shared"));
	evbuffer_add(b, "+more", 5);
	CHECK(contents_are(b, "shared+more"));
	CHECK(contents_are(c, "shared"));
	evbuffer_drain(b, 100);
	CHECK(contents_are(c, "shared"));
	CHECK_INT(evbuffer_add_buffer_reference(c, c), ==, -1);
	evbuffer_free(b);
	evbuffer_free(c);
}

static int seg_cleanups;
static void seg_cleanup(struct evbuffer_file_segment const *seg, int flags, void *arg)
{
	(void)seg;
	seg_cleanups++;
	CHECK_INT(flags, ==, EVBUF_FS_CLOSE_ON_FREE);
	CHECK(arg == (void *)&seg_cleanups);
}

static int temp_file(const char *content)
{
	char path[] = "/tmp/evbuffer_test_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	CHECK_INT(write(fd, content, strlen(content)), ==, (ssize_t)strlen(content));
	return fd;
}

static void test_files(void)
{
	struct evbuffer *b = evbuffer_new(), *c;
	struct evbuffer_file_segment *seg;
	int fd = temp_file("0123456789abcdef");
	CHECK_INT(evbuffer_add_file(b, fd, 4, 6), ==, 0);
	CHECK(contents_are(b, "456789"));
	evbuffer_drain(b, 100);
	evbuffer_free(b);
	/* The buffer owned the fd and closed it once the data was gone. */
	CHECK_INT(fcntl(fd, F_GETFD), ==, -1);
	CHECK_INT(errno, ==, EBADF);

	fd = temp_file("segment contents");
	seg = evbuffer_file_segment_new(fd, 0, -1, EVBUF_FS_CLOSE_ON_FREE);
	CHECK(seg != NULL);
	seg_cleanups = 0;
	evbuffer_file_segment_add_cleanup_cb(seg, seg_cleanup, &seg_cleanups);
	b = evbuffer_new();
	c = evbuffer_new();
	CHECK_INT(evbuffer_add_file_segment(b, seg, 8, -1), ==, 0);
	CHECK_INT(evbuffer_add_file_segment(c, seg, 0, 7), ==, 0);
	CHECK(contents_are(b, "contents"));
	CHECK(contents_are(c, "segment"));
	evbuffer_file_segment_free(seg);
	CHECK_INT(seg_cleanups, ==, 0);
	evbuffer_free(b);
	CHECK_INT(seg_cleanups, ==, 0);
	CHECK_INT(fcntl(fd, F_GETFD), >=, 0);
	evbuffer_free(c);
	CHECK_INT(seg_cleanups, ==, 1);
	CHECK_INT(fcntl(fd, F_GETFD), ==, -1);

	/* A larger file, from an offset that is not page-aligned, mapped (default) and read (mmap disabled). */
	{
		static char big[300000], back[200000];
		unsigned flags[2] = {0, EVBUF_FS_DISABLE_MMAP | EVBUF_FS_DISABLE_SENDFILE};
		char path[] = "/tmp/evbuffer_test_XXXXXX";
		int i, k;
		for (i = 0; i < (int)sizeof(big); i++)
			big[i] = (char)(i * 31 + i / 977);
		fd = mkstemp(path);
		unlink(path);
		CHECK_INT(write(fd, big, sizeof(big)), ==, (ssize_t)sizeof(big));
		for (k = 0; k < 2; k++) {
			seg = evbuffer_file_segment_new(fd, 5000, 200000, flags[k]);
			CHECK(seg != NULL);
			b = evbuffer_new();
			CHECK_INT(evbuffer_add_file_segment(b, seg, 1000, 150000), ==, 0);
			CHECK_INT(evbuffer_get_length(b), ==, 150000);
			CHECK_INT(evbuffer_remove(b, back, sizeof(back)), ==, 150000);
			CHECK(memcmp(back, big + 6000, 150000) == 0);
			/* (Not checked: a range past the segment is refused, but libevent 2.1.12 then also drops a reference
			 * it never took, so freeing the segment afterwards crashes it. libix only refuses.) */
			evbuffer_free(b);
			evbuffer_file_segment_free(seg);
		}
		close(fd);
	}
}

static void test_fd_io(void)
{
	struct evbuffer *b = evbuffer_new();
	int sv[2];
	char data[10000];
	int i, r;
	for (i = 0; i < (int)sizeof(data); i++)
		data[i] = (char)(i * 7);
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	CHECK_INT(write(sv[1], data, sizeof(data)), ==, (ssize_t)sizeof(data));
	/* At most 4096 per call. */
	CHECK_INT(evbuffer_read(b, sv[0], -1), ==, 4096);
	CHECK_INT(evbuffer_read(b, sv[0], 10), ==, 10);
	CHECK_INT(evbuffer_read(b, sv[0], 100000), ==, 4096);
	/* FIONREAD's count when less is waiting. */
	CHECK_INT(evbuffer_read(b, sv[0], -1), ==, 10000 - 4096 - 10 - 4096);
	CHECK_INT(evbuffer_get_length(b), ==, 10000);
	{
		char check[10000];
		CHECK_INT(evbuffer_copyout(b, check, sizeof(check)), ==, 10000);
		CHECK(memcmp(check, data, sizeof(data)) == 0);
	}
	/* Nothing waiting on a non-blocking socket: -1 with EAGAIN. */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	errno = 0;
	CHECK_INT(evbuffer_read(b, sv[0], -1), ==, -1);
	CHECK_INT(errno, ==, EAGAIN);
	/* Writes drain what was written. */
	CHECK_INT(evbuffer_write_atmost(b, sv[1], 5), ==, 5);
	CHECK_INT(evbuffer_get_length(b), ==, 9995);
	r = evbuffer_write(b, sv[1]);
	CHECK_INT(r, ==, 9995);
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	/* Nothing to write is -1, not 0 (libevent never calls writev then). */
	CHECK_INT(evbuffer_write(b, sv[1]), ==, -1);
	{
		char back[10000];
		size_t got = 0;
		while (got < sizeof(back)) {
			ssize_t k = read(sv[0], back + got, sizeof(back) - got);
			if (k <= 0)
				break;
			got += (size_t)k;
		}
		CHECK_INT(got, ==, sizeof(back));
		CHECK(memcmp(back, data, sizeof(data)) == 0);
	}
	/* EOF reads 0. */
	close(sv[1]);
	CHECK_INT(evbuffer_read(b, sv[0], -1), ==, 0);
	close(sv[0]);
	evbuffer_free(b);
}

/* Callback recording. */
struct cb_record {
	int calls;
	int order;
	struct evbuffer_cb_info last;
};
static int cb_clock;
static void record_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct cb_record *r = arg;
	(void)buf;
	r->calls++;
	r->order = ++cb_clock;
	r->last = *info;
}

static size_t compat_old, compat_new;
static int compat_calls;
static void compat_cb(struct evbuffer *buf, size_t old_len, size_t new_len, void *arg)
{
	(void)buf;
	(void)arg;
	compat_calls++;
	compat_old = old_len;
	compat_new = new_len;
}

static void drain_self_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	int *calls = arg;
	(*calls)++;
	/* Reentry: drain what was just added (which runs the callbacks again, with n_deleted). */
	if (info->n_added > 0)
		evbuffer_drain(buf, info->n_added);
}

static void test_callbacks(void)
{
	struct evbuffer *b = evbuffer_new(), *o = evbuffer_new();
	struct cb_record r1 = {0}, r2 = {0}, ro = {0};
	struct evbuffer_cb_entry *e1, *e2;
	char *line;
	int reentry = 0;
	e1 = evbuffer_add_cb(b, record_cb, &r1);
	e2 = evbuffer_add_cb(b, record_cb, &r2);
	CHECK(e1 != NULL && e2 != NULL);
	evbuffer_add(b, "hello", 5);
	CHECK_INT(r1.calls, ==, 1);
	CHECK_INT(r2.calls, ==, 1);
	/* Newest first. */
	CHECK_INT(r2.order, <, r1.order);
	CHECK_INT(r1.last.orig_size, ==, 0);
	CHECK_INT(r1.last.n_added, ==, 5);
	CHECK_INT(r1.last.n_deleted, ==, 0);
	evbuffer_drain(b, 2);
	CHECK_INT(r1.last.orig_size, ==, 5);
	CHECK_INT(r1.last.n_deleted, ==, 2);
	CHECK_INT(r1.last.n_added, ==, 0);
	/* Nothing changed: no call. */
	evbuffer_drain(b, 0);
	CHECK_INT(r1.calls, ==, 2);
	/* Disabled entries are skipped; re-enabled ones run again. */
	CHECK_INT(evbuffer_cb_clear_flags(b, e1, EVBUFFER_CB_ENABLED), ==, 0);
	evbuffer_add(b, "!", 1);
	CHECK_INT(r1.calls, ==, 2);
	CHECK_INT(r2.calls, ==, 3);
	CHECK_INT(evbuffer_cb_set_flags(b, e1, EVBUFFER_CB_ENABLED), ==, 0);
	/* add_buffer tells both buffers. */
	evbuffer_add_cb(o, record_cb, &ro);
	evbuffer_add(o, "abc", 3);
	CHECK_INT(evbuffer_add_buffer(b, o), ==, 0);
	CHECK_INT(ro.last.orig_size, ==, 3);
	CHECK_INT(ro.last.n_deleted, ==, 3);
	CHECK_INT(r1.last.orig_size, ==, 4);
	CHECK_INT(r1.last.n_added, ==, 3);
	CHECK_INT(ro.order, <, r1.order); /* the source is told first */
	/* remove_buffer: a part tells the destination first; everything is add_buffer, which tells the source first. */
	{
		struct evbuffer *src = evbuffer_new(), *dst = evbuffer_new();
		struct cb_record rs = {0}, rd = {0};
		evbuffer_add(src, "abcdef", 6);
		evbuffer_add_cb(src, record_cb, &rs);
		evbuffer_add_cb(dst, record_cb, &rd);
		CHECK_INT(evbuffer_remove_buffer(src, dst, 2), ==, 2);
		CHECK_INT(rd.order, <, rs.order);
		CHECK_INT(rs.last.n_deleted, ==, 2);
		CHECK_INT(rd.last.n_added, ==, 2);
		CHECK_INT(evbuffer_remove_buffer(src, dst, 100), ==, 4);
		CHECK_INT(rs.order, <, rd.order);
		CHECK_INT(rs.last.orig_size, ==, 4);
		CHECK_INT(rd.last.orig_size, ==, 2);
		evbuffer_free(src);
		evbuffer_free(dst);
	}
	/* readln tells twice: the line removed, then the end of line drained. */
	evbuffer_drain(b, 100);
	evbuffer_add(b, "ab\r\ncd", 6);
	r1.calls = 0;
	line = evbuffer_readln(b, NULL, EVBUFFER_EOL_CRLF);
	free(line);
	CHECK_INT(r1.calls, ==, 2);
	CHECK_INT(r1.last.orig_size, ==, 4);
	CHECK_INT(r1.last.n_deleted, ==, 2);
	/* Removal by callback and argument, and by entry. */
	CHECK_INT(evbuffer_remove_cb(b, record_cb, &r2), ==, 0);
	CHECK_INT(evbuffer_remove_cb(b, record_cb, &r2), ==, -1);
	CHECK_INT(evbuffer_remove_cb_entry(b, e1), ==, 0);
	r1.calls = r2.calls = 0;
	evbuffer_add(b, "x", 1);
	CHECK_INT(r1.calls + r2.calls, ==, 0);
	/* The compat callback gets old and new lengths; setcb replaces every callback. */
	evbuffer_add_cb(b, record_cb, &r1);
	CHECK_INT(evbuffer_setcb(b, compat_cb, NULL), ==, 0);
	r1.calls = 0;
	evbuffer_add(b, "yz", 2);
	CHECK_INT(r1.calls, ==, 0);
	CHECK_INT(compat_calls, ==, 1);
	CHECK_INT(compat_old, ==, 3);
	CHECK_INT(compat_new, ==, 5);
	CHECK_INT(evbuffer_setcb(b, NULL, NULL), ==, 0);
	evbuffer_add(b, "w", 1);
	CHECK_INT(compat_calls, ==, 1);
	/* A callback may change its own buffer. */
	evbuffer_drain(b, 100);
	evbuffer_add_cb(b, drain_self_cb, &reentry);
	evbuffer_add(b, "gone", 4);
	CHECK_INT(evbuffer_get_length(b), ==, 0);
	CHECK_INT(reentry, ==, 2);
	evbuffer_free(b);
	evbuffer_free(o);
}

/* libevent's EVBUFFER_CB_NODEFER (evbuffer-internal.h, which bufferevents use): not in the public headers, but
 * evbuffer_cb_set_flags accepts it, so programs can set it. */
#define CB_NODEFER 2

static void *failing_malloc(size_t n)
{
	(void)n;
	errno = ENOMEM;
	return NULL;
}

/* Callback entries come from the event allocator: when it fails, registering fails. */
static void test_callback_allocation_failure(void)
{
	struct evbuffer *b = evbuffer_new();
	struct cb_record r = {0};
	evbuffer_add_cb(b, record_cb, &r);
	event_set_mem_functions(failing_malloc, realloc, free);
	CHECK(evbuffer_add_cb(b, record_cb, &r) == NULL);
	/* setcb drops the old callbacks, then fails to add the new one. */
	CHECK_INT(evbuffer_setcb(b, compat_cb, NULL), ==, -1);
	event_set_mem_functions(malloc, realloc, free);
	evbuffer_add(b, "a", 1);
	CHECK_INT(r.calls, ==, 0);
	evbuffer_free(b);
}

static void test_deferred_callbacks(void)
{
	struct event_base *base = event_base_new();
	struct evbuffer *b = evbuffer_new();
	struct cb_record later = {0}, now = {0};
	struct evbuffer_cb_entry *e;
	CHECK_INT(evbuffer_defer_callbacks(b, base), ==, 0);
	evbuffer_add_cb(b, record_cb, &later);
	e = evbuffer_add_cb(b, record_cb, &now);
	CHECK_INT(evbuffer_cb_set_flags(b, e, CB_NODEFER), ==, 0);
	evbuffer_add(b, "abc", 3);
	evbuffer_drain(b, 1);
	/* NODEFER ran at once and saw the changes accumulate (nothing is reset until the deferred run). */
	CHECK_INT(now.calls, ==, 2);
	CHECK_INT(now.last.n_added, ==, 3);
	CHECK_INT(now.last.n_deleted, ==, 1);
	CHECK_INT(later.calls, ==, 0);
	/* The loop runs the queued callbacks, then finds nothing left: 1. */
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 1);
	CHECK_INT(later.calls, ==, 1);
	CHECK_INT(later.last.orig_size, ==, 0);
	CHECK_INT(later.last.n_added, ==, 3);
	CHECK_INT(later.last.n_deleted, ==, 1);
	/* Freeing a buffer whose callbacks are queued is safe: the queued run keeps it until then. */
	evbuffer_add(b, "d", 1);
	evbuffer_free(b);
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), ==, 1);
	CHECK_INT(later.calls, ==, 2);
	CHECK_INT(later.last.n_added, ==, 1);
	event_base_free(base);
}

static void test_printf_and_iovec(void)
{
	struct evbuffer *b = evbuffer_new();
	struct evbuffer_iovec v[3];
	char longer[300];
	memset(longer, 'L', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	CHECK_INT(evbuffer_add_printf(b, "%d-%s-%c", 42, "x", 'y'), ==, 6);
	CHECK(contents_are(b, "42-x-y"));
	CHECK_INT(evbuffer_add_printf(b, "%s", longer), ==, 299);
	CHECK_INT(evbuffer_get_length(b), ==, 305);
	evbuffer_drain(b, 6);
	{
		char out[299];
		CHECK_INT(evbuffer_remove(b, out, sizeof(out)), ==, 299);
		CHECK(memcmp(out, longer, 299) == 0);
	}
	CHECK_INT(evbuffer_add_printf(b, "%s", ""), ==, 0);
	v[0].iov_base = "ab";
	v[0].iov_len = 2;
	v[1].iov_base = "";
	v[1].iov_len = 0;
	v[2].iov_base = "cde";
	v[2].iov_len = 3;
	CHECK_INT(evbuffer_add_iovec(b, v, 3), ==, 5);
	CHECK(contents_are(b, "abcde"));
	evbuffer_free(b);
}

static void test_flags(void)
{
	struct evbuffer *b = evbuffer_new();
	CHECK_INT(evbuffer_set_flags(b, EVBUFFER_FLAG_DRAINS_TO_FD), ==, 0);
	CHECK_INT(evbuffer_clear_flags(b, EVBUFFER_FLAG_DRAINS_TO_FD), ==, 0);
	evbuffer_free(b);
}

#define WRITERS 4
#define ADDS_PER_WRITER 20000
static void *locked_writer(void *arg)
{
	struct evbuffer *b = arg;
	int i;
	for (i = 0; i < ADDS_PER_WRITER; i++) {
		/* Each record is written atomically under the buffer's lock (lock/unlock around two adds). */
		evbuffer_lock(b);
		evbuffer_add(b, "<", 1);
		evbuffer_add(b, ">", 1);
		evbuffer_unlock(b);
	}
	return NULL;
}

static void *try_lock_elsewhere(void *arg)
{
	pthread_mutex_t *m = arg;
	int r = pthread_mutex_trylock(m);
	if (r == 0)
		pthread_mutex_unlock(m);
	return (void *)(intptr_t)r;
}

static void test_locking(void)
{
	struct evbuffer *b = evbuffer_new(), *c;
	/* Without lock callbacks there is no lock to allocate. */
	CHECK_INT(evbuffer_enable_locking(b, NULL), ==, -1);
	evbuffer_lock(b); /* no lock: does nothing */
	evbuffer_unlock(b);
	CHECK_INT(evthread_use_pthreads(), ==, 0);
	CHECK_INT(evbuffer_enable_locking(b, NULL), ==, 0);
	CHECK_INT(evbuffer_enable_locking(b, NULL), ==, -1);
	/* Recursive: an operation inside lock/unlock does not deadlock. */
	evbuffer_lock(b);
	evbuffer_lock(b);
	CHECK_INT(evbuffer_add(b, "x", 1), ==, 0);
	evbuffer_unlock(b);
	evbuffer_unlock(b);
	CHECK(contents_are(b, "x"));
	/* Concurrent writers and a concurrent reader on one locked buffer: nothing lost, records never torn. */
	evbuffer_drain(b, 100);
	{
		pthread_t t[WRITERS];
		size_t drained = 0;
		int i, torn = 0;
		for (i = 0; i < WRITERS; i++)
			pthread_create(&t[i], NULL, locked_writer, b);
		while (drained < (size_t)WRITERS * ADDS_PER_WRITER * 2) {
			char chunk[256];
			int n;
			evbuffer_lock(b);
			n = evbuffer_remove(b, chunk, (evbuffer_get_length(b) & ~(size_t)1) < sizeof(chunk)
			        ? (evbuffer_get_length(b) & ~(size_t)1) : sizeof(chunk));
			evbuffer_unlock(b);
			for (i = 0; i + 1 < n; i += 2)
				torn += chunk[i] != '<' || chunk[i + 1] != '>';
			if (n > 0)
				drained += (size_t)n;
		}
		for (i = 0; i < WRITERS; i++)
			pthread_join(t[i], NULL);
		CHECK_INT(torn, ==, 0);
		CHECK_INT(drained, ==, WRITERS * ADDS_PER_WRITER * 2);
		CHECK_INT(evbuffer_get_length(b), ==, 0);
	}
	/* A caller-supplied lock (libevent takes any lock the installed callbacks can work, here a recursive pthread
	 * mutex): evbuffer_lock holds it, and freeing the buffer leaves it to the caller. */
	{
		pthread_mutex_t m;
		pthread_mutexattr_t attr;
		pthread_t t;
		void *busy = NULL;
		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&m, &attr);
		c = evbuffer_new();
		CHECK_INT(evbuffer_enable_locking(c, &m), ==, 0);
		evbuffer_lock(c);
		pthread_create(&t, NULL, try_lock_elsewhere, &m);
		pthread_join(t, &busy);
		CHECK(busy == (void *)(intptr_t)EBUSY);
		evbuffer_unlock(c);
		pthread_create(&t, NULL, try_lock_elsewhere, &m);
		pthread_join(t, &busy);
		CHECK(busy == (void *)0);
		evbuffer_free(c);
		CHECK_INT(pthread_mutex_lock(&m), ==, 0);
		pthread_mutex_unlock(&m);
		pthread_mutex_destroy(&m);
	}
	evbuffer_free(b);
}

static void run(const char *name, void (*fn)(void))
{
	int before = failures;
	current_test = name;
	fn();
	printf("%s %s\n", failures == before ? "ok  " : "FAIL", name);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run("add_remove_drain", test_add_remove_drain);
	run("chain_sizes_and_space", test_chain_sizes_and_space);
	run("freeze", test_freeze);
	run("moves", test_moves);
	run("pullup_and_peek", test_pullup_and_peek);
	run("search", test_search);
	run("readln", test_readln);
	run("references", test_references);
	run("files", test_files);
	run("fd_io", test_fd_io);
	run("callbacks", test_callbacks);
	run("callback_allocation_failure", test_callback_allocation_failure);
	run("deferred_callbacks", test_deferred_callbacks);
	run("printf_and_iovec", test_printf_and_iovec);
	run("flags", test_flags);
	run("locking", test_locking); /* last: installs lock callbacks process-wide */
	if (failures) {
		printf("%d failure(s)\n", failures);
		return 1;
	}
	printf("all evbuffer tests passed\n");
	return 0;
}
