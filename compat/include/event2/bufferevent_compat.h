/* libix: libevent 2.1 public API, declarations only: event2/bufferevent_compat.h.
 *
 * The declarations, macros and struct layouts are those of libevent 2.1.12 (Copyright (c) 2000-2007 Niels Provos,
 * 2007-2012 Niels Provos and Nick Mathewson; 3-clause BSD licence), so that a program compiled against these
 * headers runs on libix or on libevent alike. For the documentation of each function, see libevent's headers.
 */
#ifndef EVENT2_BUFFEREVENT_COMPAT_H_INCLUDED_
#define EVENT2_BUFFEREVENT_COMPAT_H_INCLUDED_

#include <event2/visibility.h>

#define evbuffercb bufferevent_data_cb
#define everrorcb bufferevent_event_cb

EVENT2_EXPORT_SYMBOL
struct bufferevent *bufferevent_new(evutil_socket_t fd,
    evbuffercb readcb, evbuffercb writecb, everrorcb errorcb, void *cbarg);

EVENT2_EXPORT_SYMBOL
void bufferevent_settimeout(struct bufferevent *bufev,
    int timeout_read, int timeout_write);

#define EVBUFFER_READ		BEV_EVENT_READING
#define EVBUFFER_WRITE		BEV_EVENT_WRITING
#define EVBUFFER_EOF		BEV_EVENT_EOF
#define EVBUFFER_ERROR		BEV_EVENT_ERROR
#define EVBUFFER_TIMEOUT	BEV_EVENT_TIMEOUT

#define EVBUFFER_INPUT(x)	bufferevent_get_input(x)

#define EVBUFFER_OUTPUT(x)	bufferevent_get_output(x)

#endif

