/* A libevent program using only the event core: under LD_PRELOAD=libix.so it runs on libix. */
#include <event2/event.h>
#include <stdio.h>
int main(void) { struct event_base *b = event_base_new(); printf("method=%s\n", event_base_get_method(b)); event_base_free(b); return 0; }
