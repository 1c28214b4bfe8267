/* libix: libevent 2.1 public API, declarations only: event2/buffer_compat.h.
 *
 * The declarations, macros and struct layouts are those of libevent 2.1.12 (Copyright (c) 2000-2007 Niels Provos,
 * 2007-2012 Niels Provos and Nick Mathewson; 3-clause BSD licence), so that a program compiled against these
 * headers runs on libix or on libevent alike. For the documentation of each function, see libevent's headers.
 */
#ifndef EVENT2_BUFFER_COMPAT_H_INCLUDED_
#define EVENT2_BUFFER_COMPAT_H_INCLUDED_

#include <event2/visibility.h>

EVENT2_EXPORT_SYMBOL
char *evbuffer_readline(struct evbuffer *buffer);

typedef void (*evbuffer_cb)(struct evbuffer *buffer, size_t old_len, size_t new_len, void *arg);

EVENT2_EXPORT_SYMBOL
int evbuffer_setcb(struct evbuffer *buffer, evbuffer_cb cb, void *cbarg);

EVENT2_EXPORT_SYMBOL
unsigned char *evbuffer_find(struct evbuffer *buffer, const unsigned char *what, size_t len);

#define EVBUFFER_LENGTH(x)	evbuffer_get_length(x)

#define EVBUFFER_DATA(x)	evbuffer_pullup((x), -1)

#endif

