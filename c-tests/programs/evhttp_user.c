/* A libevent program that uses the HTTP layer, which libix does not provide yet: under LD_PRELOAD=libix.so it
 * must run entirely on the real libevent (libix re-executes it without itself). */
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
int main(void) {
    struct event_base *b = event_base_new();
    struct evhttp *h = evhttp_new(b);
    printf("method=%s http=%s\n", event_base_get_method(b), h ? "yes" : "no");
    evhttp_free(h); event_base_free(b); return 0;
}
