/* proxy_accept.h - waiting for the PROXY protocol header on a freshly accepted connection from a
 * trusted load balancer (proxy_protocol_from), before any banner: bounded in time and length,
 * never reading past the header. Success hands the socket and the client's address (the header's,
 * or the real peer for v2 LOCAL / v1 UNKNOWN) to a callback; failure closes the socket. */
#ifndef BACKSTOP_PROXY_ACCEPT_H
#define BACKSTOP_PROXY_ACCEPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

struct proxy_wait;

/* The connections of one loop still waiting for their header, owned by that loop's owner. */
struct proxy_waits {
	struct proxy_wait *head;
	size_t n;
};

/* fd: the accepted socket (taken over); client: the address to use for everything. */
typedef void (*proxy_accept_cb)(void *arg, evutil_socket_t fd, const struct sockaddr *client, socklen_t len);

/* Start reading the header of fd (accepted from peer) on base. The callback comes later from the
 * loop, never from inside this call; on a bad, missing or late header the socket is closed with a
 * log line and no callback. Returns -1 (fd closed) when the event cannot be made. */
int proxy_accept_start(struct proxy_waits *list, struct event_base *base, evutil_socket_t fd,
		       const struct sockaddr *peer, socklen_t peerlen, uint64_t timeout_ms, proxy_accept_cb cb,
		       void *arg);
/* Close every connection of list still waiting (the loop is stopping). */
void proxy_accept_abort_all(struct proxy_waits *list);

#endif
