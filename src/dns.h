/* dns.h - asynchronous DNS on a libevent loop: one c-ares channel per loop, its sockets watched
 * with libevent events and its timeouts with a timer. Nothing here ever blocks. Two kinds of
 * questions: addresses of a host to connect to (dns_resolve_host: /etc/hosts, numeric hosts),
 * and typed lookups (dns_lookup: A, AAAA, MX, PTR, TXT as DNS has them, with their TTL,
 * NXDOMAIN apart from NODATA apart from a failure, through an optional shared dns_cache).
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

#include "dns_msg.h"

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

/* Use these servers instead of resolv.conf's ("127.0.0.1:5353, [::1]:53": the dns_servers
 * key; commas and/or spaces; port 53 when none); NULL or "" goes back to resolv.conf's. Nothing
 * is done when csv is what is already in use, so a caller may pass its configuration's value
 * before every use (a reload that changes it takes effect then). 0 or -1 (bad list, or queries
 * still pending: tried again on the next call). */
int dns_resolver_set_servers(struct dns_resolver *r, const char *csv);

/* Check a dns_servers value (config table): 0, or -1 with *why. */
int dns_servers_check(const char *value, const char **why);

/* Keep typed answers in c (borrowed; shared by several resolvers, thread-safe); NULL: none. */
struct dns_cache;
void dns_resolver_set_cache(struct dns_resolver *r, struct dns_cache *c);

/* Counters of one resolver's typed lookups. */
struct dns_resolver_stats {
	uint64_t lookups, cache_hits, sent, tempfails;
};
void dns_resolver_stats(const struct dns_resolver *r, struct dns_resolver_stats *out);

/* Free the resolver; pending queries are dropped without their callbacks being called. */
void dns_resolver_free(struct dns_resolver *r);

/* Addresses of host (A and AAAA with family AF_UNSPEC; AF_INET or AF_INET6 for one family),
 * with port set in each. Returns a handle for dns_cancel(), valid until the callback starts. */
struct dns_query *dns_resolve_host(struct dns_resolver *r, const char *host, uint16_t port, int family,
				   dns_addrs_cb cb, void *arg);

/* TXT records of name (for SPF). Same rules as dns_resolve_host(). */
struct dns_query *dns_query_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg);

/* Records of type for name (a domain name, trailing dot optional), from the cache when it holds
 * them. The answer says OK (records), NXDOMAIN, NODATA or TEMPFAIL (timeout, SERVFAIL, REFUSED,
 * no server), with its TTL; it is valid during the callback only (take a reference with
 * dns_answer_ref() to keep it). Names under "invalid" are NXDOMAIN at once, a name that is not
 * a domain name (empty, too long, an empty label) too. Same rules as dns_resolve_host(). */
typedef void (*dns_answer_cb)(void *arg, const struct dns_answer *ans);
struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, enum dns_type type, dns_answer_cb cb,
			     void *arg);

/* Forget a query: its callback will not be called. */
void dns_cancel(struct dns_query *q);

#endif
