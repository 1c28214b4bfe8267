/* libix: libevent 2.1 public API, declarations only: event2/dns_struct.h.
 *
 * The declarations, macros and struct layouts are those of libevent 2.1.12 (Copyright (c) 2000-2007 Niels Provos,
 * 2007-2012 Niels Provos and Nick Mathewson; 3-clause BSD licence), so that a program compiled against these
 * headers runs on libix or on libevent alike. For the documentation of each function, see libevent's headers.
 */
#ifndef EVENT2_DNS_STRUCT_H_INCLUDED_
#define EVENT2_DNS_STRUCT_H_INCLUDED_

#ifdef __cplusplus
extern "C" {
#endif

#include <event2/event-config.h>
#ifdef EVENT__HAVE_SYS_TYPES_H
#include <sys/types.h>
#endif
#ifdef EVENT__HAVE_SYS_TIME_H
#include <sys/time.h>
#endif

#include <event2/util.h>

struct evdns_server_request {
	int flags;
	int nquestions;
	struct evdns_server_question **questions;
};
struct evdns_server_question {
	int type;
#ifdef __cplusplus
	int dns_question_class;
#else

	int class;
#define dns_question_class class
#endif
	char name[1];
};

#ifdef __cplusplus
}
#endif

#endif

