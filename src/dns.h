/* dns.h - asynchronous DNS on a libevent loop: one c-ares channel per loop, its sockets watched
 * with libevent events and its timeouts with a timer. Nothing here ever blocks.
 *
 * Answers always arrive from the event loop, never from inside a dns_* call; numeric hosts are
 * answered without DNS (still from the loop) and names under "invalid" fail at once (RFC 6761
 * 6.4). A query can be cancelled until its callback has started; after dns_resolver_free() no
 * callback is called. The result structs passed to callbacks belong to the resolver and are
 * valid only during the callback. One resolver serves one thread (one event base). */
#ifndef BACKSTOP_DNS_H
#define BACKSTOP_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#define DNS_ADDRS_MAX 16 /* addresses kept from one answer */
#define DNS_TXT_MAX 32   /* TXT records kept from one answer */

enum dns_status {
	DNS_OK = 0,
	DNS_NOTFOUND, /* the name does not exist or has no such record: permanent */
	DNS_TEMPFAIL, /* timeout, server failure, no server reachable: try again later */
};

struct dns_addrs {
	enum dns_status status;
	const char *error; /* why, for logs ("Domain name not found", "Timeout while contacting DNS servers") */
	size_t count;      /* > 0 when status is DNS_OK */
	struct sockaddr_storage addr[DNS_ADDRS_MAX]; /* port already set */
	socklen_t addrlen[DNS_ADDRS_MAX];
};

struct dns_txt {
	enum dns_status status;
	const char *error;
	size_t count;
	char *txt[DNS_TXT_MAX]; /* each record's strings concatenated, NUL-terminated (may hold NULs) */
	size_t len[DNS_TXT_MAX];
};

typedef void (*dns_addrs_cb)(void *arg, const struct dns_addrs *res);
typedef void (*dns_txt_cb)(void *arg, const struct dns_txt *res);

struct dns_resolver;
struct dns_query;

/* A resolver using the system's configuration (/etc/resolv.conf, /etc/hosts), with
 * timeout_ms per try and tries attempts per server. NULL if c-ares cannot start (*why set). */
struct dns_resolver *dns_resolver_new_opts(struct event_base *base, unsigned timeout_ms, unsigned tries,
					   const char **why);

/* The same with the defaults: 2000 ms, 2 tries. */
struct dns_resolver *dns_resolver_new(struct event_base *base);

/* Use these servers instead of resolv.conf's ("127.0.0.1:5353,[::1]:53"); 0 or -1. */
int dns_resolver_set_servers(struct dns_resolver *r, const char *csv);

/* Free the resolver; pending queries are dropped without their callbacks being called. */
void dns_resolver_free(struct dns_resolver *r);

/* Addresses of host (A and AAAA with family AF_UNSPEC; AF_INET or AF_INET6 for one family),
 * with port set in each. Returns a handle for dns_cancel(), valid until the callback starts. */
struct dns_query *dns_resolve_host(struct dns_resolver *r, const char *host, uint16_t port, int family,
				   dns_addrs_cb cb, void *arg);

/* TXT records of name (for SPF). Same rules as dns_resolve_host(). */
struct dns_query *dns_query_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg);

/* Forget a query: its callback will not be called. */
void dns_cancel(struct dns_query *q);

#endif
