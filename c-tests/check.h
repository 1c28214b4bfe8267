/* The assertion helpers of libix's libevent-API C tests (event_core, evutil, evbuffer, bufferevent, listener
 * tests, each built against libix and against Debian's libevent): a failed check prints where and what, counts
 * in `failures`, and the test goes on; `current_test` names the case running. Include once per program. */
#ifndef IX_CTEST_CHECK_H
#define IX_CTEST_CHECK_H

#include <stdio.h>

static int failures;
static const char *current_test;

#define CHECK(cond)                                                                                    \
	do {                                                                                           \
		if (!(cond)) {                                                                         \
			fprintf(stderr, "FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, current_test, #cond); \
			failures++;                                                                    \
		}                                                                                      \
	} while (0)

#define CHECK_INT(a, op, b)                                                                            \
	do {                                                                                           \
		long long a_ = (long long)(a), b_ = (long long)(b);                                    \
		if (!(a_ op b_)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d [%s]: %s %s %s (%lld vs %lld)\n", __FILE__, __LINE__, \
			    current_test, #a, #op, #b, a_, b_);                                        \
			failures++;                                                                    \
		}                                                                                      \
	} while (0)

#endif
