/* proxy_accept.c - reads the PROXY header of a connection from a trusted balancer: peeks at what
 * has arrived, lets proxy_parse() decide, and consumes exactly the header's octets (the SMTP
 * session then starts on the first octet after it). Everything peeked while the header is
 * incomplete belongs to the header, so it is consumed too and the socket never stays readable
 * with nothing to do. */
#include "proxy_accept.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proxy_proto.h"
#include "util.h"

struct proxy_wait {
	struct proxy_wait *prev, *next;
	struct proxy_waits *list;
	struct event *ev;
	evutil_socket_t fd;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	proxy_accept_cb cb;
	void *arg;
	uint64_t deadline_ms;   /* the whole header by then (a deadline, not an idle timer) */
	size_t have;
	unsigned char buf[PROXY_HEADER_MAX];
};

static void proxy_wait_unlink(struct proxy_wait *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->list->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->list->n--;
	event_free(w->ev);
}

static void proxy_peer_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a = ss->ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
						  : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
	if (inet_ntop(ss->ss_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "unknown");
}

static void proxy_fail(struct proxy_wait *w, const char *why)
{
	char peer[64];

	proxy_peer_text(&w->peer, peer, sizeof peer);
	log_notice("proxy=%s PROXY protocol: %s; connection closed", peer, why);
	proxy_wait_unlink(w);
	close(w->fd);
	free(w);
}

static void proxy_done(struct proxy_wait *w, const struct proxy_header *h)
{
	struct sockaddr_storage client = h->local ? w->peer : h->src;
	socklen_t len = h->local ? w->peerlen : h->srclen;
	proxy_accept_cb cb = w->cb;
	void *arg = w->arg;
	evutil_socket_t fd = w->fd;
	char peer[64], text[64];

	proxy_peer_text(&w->peer, peer, sizeof peer);
	proxy_peer_text(&client, text, sizeof text);
	log_debug("proxy=%s PROXY v%d client=%s%s", peer, h->version, text, h->local ? " (local)" : "");
	proxy_wait_unlink(w);
	free(w);
	cb(arg, fd, (const struct sockaddr *)&client, len);
}

/* Wait for more until the deadline. */
static void proxy_rearm(struct proxy_wait *w)
{
	uint64_t now = now_ms(), left = w->deadline_ms > now ? w->deadline_ms - now : 0;
	struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };

	event_add(w->ev, &tv);
}

static void proxy_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;
	struct proxy_header h;

	if (what & EV_TIMEOUT) {
		proxy_fail(w, "no header in time");
		return;
	}
	ssize_t n = recv(fd, w->buf + w->have, sizeof w->buf - w->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		proxy_rearm(w);
		return;
	}
	if (n <= 0) {
		proxy_fail(w, n == 0 ? "connection closed before the header" : strerror(errno));
		return;
	}
	enum proxy_parse_result r = proxy_parse(w->buf, w->have + (size_t)n, &h);
	if (r == PROXY_INVALID) {
		proxy_fail(w, "malformed or missing header");
		return;
	}
	size_t take = r == PROXY_DONE ? h.len - w->have : (size_t)n;
	if (recv(fd, w->buf + w->have, take, 0) != (ssize_t)take) { /* peeked: it is there */
		proxy_fail(w, "short read");
		return;
	}
	w->have += take;
	if (r == PROXY_DONE)
		proxy_done(w, &h);
	else if (w->have >= sizeof w->buf)
		proxy_fail(w, "header too long");
	else
		proxy_rearm(w);
}

int proxy_accept_start(struct proxy_waits *list, struct event_base *base, evutil_socket_t fd,
		       const struct sockaddr *peer, socklen_t peerlen, uint64_t timeout_ms, proxy_accept_cb cb,
		       void *arg)
{
	struct proxy_wait *w = xcalloc(1, sizeof *w);

	w->ev = event_new(base, fd, EV_READ, proxy_read_cb, w);
	if (w->ev == NULL) {
		close(fd);
		free(w);
		return -1;
	}
	w->fd = fd;
	memcpy(&w->peer, peer, peerlen < sizeof w->peer ? peerlen : sizeof w->peer);
	w->peerlen = peerlen;
	w->cb = cb;
	w->arg = arg;
	w->deadline_ms = now_ms() + timeout_ms;
	w->list = list;
	w->next = list->head;
	if (w->next)
		w->next->prev = w;
	list->head = w;
	list->n++;
	proxy_rearm(w);
	return 0;
}

void proxy_accept_abort_all(struct proxy_waits *list)
{
	while (list->head) {
		struct proxy_wait *w = list->head;
		proxy_wait_unlink(w);
		close(w->fd);
		free(w);
	}
}
