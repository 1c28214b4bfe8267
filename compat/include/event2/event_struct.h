/* libix: libevent 2.1 public API: event2/event_struct.h.
 *
 * struct event, for programs that embed it by value (event_assign). The layout is libevent 2.1.12's on x86-64
 * (Copyright (c) 2000-2007 Niels Provos, 2007-2012 Niels Provos and Nick Mathewson; 3-clause BSD licence):
 * 128 bytes; ev_fd at 56, ev_base at 64, ev_events at 104, ev_res at 106, ev_timeout at 112. libix keeps the
 * fields programs read (ev_fd, ev_base, ev_events, ev_res, ev_timeout, ev_flags' EVLIST_* bits, and the
 * callback, argument and priority in ev_evcallback) with libevent's meaning; the rest is private to the
 * implementation. Prefer the event_get_*() accessors of event2/event.h.
 */
#ifndef EVENT2_EVENT_STRUCT_H_INCLUDED_
#define EVENT2_EVENT_STRUCT_H_INCLUDED_

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
#include <event2/keyvalq_struct.h>

/* Bits of ev_flags (evcb_flags). */
#define EVLIST_TIMEOUT	    0x01
#define EVLIST_INSERTED	    0x02
#define EVLIST_SIGNAL	    0x04
#define EVLIST_ACTIVE	    0x08
#define EVLIST_INTERNAL	    0x10
#define EVLIST_ACTIVE_LATER 0x20
#define EVLIST_FINALIZING   0x40
#define EVLIST_INIT	    0x80

#define EVLIST_ALL          0xff

/* <sys/queue.h>-compatible list links, defined here when the program has not included it. */
#ifndef TAILQ_ENTRY
#define EVENT_DEFINED_TQENTRY_
#define TAILQ_ENTRY(type)						\
struct {								\
	struct type *tqe_next;						\
	struct type **tqe_prev;						\
}
#endif

#ifndef TAILQ_HEAD
#define EVENT_DEFINED_TQHEAD_
#define TAILQ_HEAD(name, type)						\
struct name {								\
	struct type *tqh_first;						\
	struct type **tqh_last;						\
}
#endif

#ifndef LIST_ENTRY
#define EVENT_DEFINED_LISTENTRY_
#define LIST_ENTRY(type)						\
struct {								\
	struct type *le_next;						\
	struct type **le_prev;						\
}
#endif

#ifndef LIST_HEAD
#define EVENT_DEFINED_LISTHEAD_
#define LIST_HEAD(name, type)						\
struct name {								\
	struct type *lh_first;						\
	}
#endif

struct event;

/* The callback part of an event (40 bytes). */
struct event_callback {
	TAILQ_ENTRY(event_callback) evcb_active_next;	/* 0: private */
	short evcb_flags;				/* 16: EVLIST_* */
	ev_uint8_t evcb_pri;				/* 18: priority, smaller runs first */
	ev_uint8_t evcb_closure;			/* 19: private */
	union {						/* 24: the callback */
		void (*evcb_callback)(evutil_socket_t, short, void *);
		void (*evcb_selfcb)(struct event_callback *, void *);
		void (*evcb_evfinalize)(struct event *, void *);
		void (*evcb_cbfinalize)(struct event_callback *, void *);
	} evcb_cb_union;
	void *evcb_arg;					/* 32: its argument */
};

struct event_base;
struct event {
	struct event_callback ev_evcallback;		/* 0 */

	union {						/* 40: private */
		TAILQ_ENTRY(event) ev_next_with_common_timeout;
		int min_heap_idx;
	} ev_timeout_pos;
	evutil_socket_t ev_fd;				/* 56: fd or signal number */

	struct event_base *ev_base;			/* 64 */

	union {						/* 72: private */
		struct {
			LIST_ENTRY (event) ev_io_next;
			struct timeval ev_timeout;
		} ev_io;

		struct {
			LIST_ENTRY (event) ev_signal_next;
			short ev_ncalls;
			short *ev_pncalls;
		} ev_signal;
	} ev_;

	short ev_events;				/* 104: EV_* asked for */
	short ev_res;					/* 106: EV_* passed to the callback */
	struct timeval ev_timeout;			/* 112: deadline (monotonic) */
};

TAILQ_HEAD (event_list, event);

#ifdef EVENT_DEFINED_TQENTRY_
#undef TAILQ_ENTRY
#endif

#ifdef EVENT_DEFINED_TQHEAD_
#undef TAILQ_HEAD
#endif

LIST_HEAD (event_dlist, event);

#ifdef EVENT_DEFINED_LISTENTRY_
#undef LIST_ENTRY
#endif

#ifdef EVENT_DEFINED_LISTHEAD_
#undef LIST_HEAD
#endif

#ifdef __cplusplus
}
#endif

#endif /* EVENT2_EVENT_STRUCT_H_INCLUDED_ */
