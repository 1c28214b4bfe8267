/* libix: libevent's compatibility header <event.h>, which pulls in the whole libevent 2.1 core API (events,
 * buffers, bufferevents, tagging) for programs written against libevent 1.4.
 *
 * Same contents as libevent 2.1.12's <event.h> (Copyright (c) 2000-2007 Niels Provos, 2007-2012 Niels Provos and
 * Nick Mathewson; 3-clause BSD licence), except that it includes <event2/util.h> directly where libevent includes
 * its <evutil.h> wrapper.
 */
#ifndef EVENT1_EVENT_H_INCLUDED_
#define EVENT1_EVENT_H_INCLUDED_

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
#ifdef EVENT__HAVE_STDINT_H
#include <stdint.h>
#endif
#include <stdarg.h>

#include <event2/util.h>

#include <event2/event_struct.h>
#include <event2/event.h>
#include <event2/event_compat.h>
#include <event2/buffer.h>
#include <event2/buffer_compat.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/bufferevent_compat.h>
#include <event2/tag.h>
#include <event2/tag_compat.h>

#ifdef __cplusplus
}
#endif

#endif /* EVENT1_EVENT_H_INCLUDED_ */
