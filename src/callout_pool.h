/* callout_pool.h - recipient callouts to one validation server, on one event loop (the callout
 * thread's): a queue of addresses to probe, at most max_conns persistent SMTP connections that
 * carry batches of RCPTs in one MAIL transaction (RSET between batches, PIPELINING when the
 * server offers it), single-flight (lookups of an address already being probed wait for that
 * probe; its answer is remembered a few seconds), catch-all detection per domain, and a circuit
 * breaker so that a server that is down answers UNAVAILABLE at once.
 * Everything here runs on the pool's loop; only the counters are read from other threads. */
#ifndef BACKSTOP_CALLOUT_POOL_H
#define BACKSTOP_CALLOUT_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>

#include "callout.h" /* callout_verdict, callout_rcpt_line */
#include "rcpt.h"
#include "smtp_client.h"

/* Counters, written on the pool's loop and read by stats from any thread. */
struct callout_counters {
	atomic_ulong probes;       /* RCPTs sent for addresses (catch-all checks not included) */
	atomic_ulong rate_limited; /* addresses not probed: callout_max_rate reached */
	atomic_ulong shared;       /* lookups that joined a probe in progress or a fresh answer */
	atomic_ulong connections;  /* connections opened */
	atomic_ulong connect_failures;
	atomic_ulong open_now;     /* connections currently open or opening */
	atomic_ulong valid, invalid, unavailable;
	atomic_ulong catchall_checks;
	atomic_ulong catchall_domains; /* domains found to be catch-all (currently) */
	atomic_ulong queued;       /* addresses waiting for a connection */
	atomic_ulong waiting;      /* lookups waiting for an answer (cancelled ones are gone at once) */
	atomic_ulong down;         /* 1 while the circuit breaker skips the server */
};

struct callout_domain_ttl {
	const char *name;          /* normalised domain */
	uint64_t positive_ttl_ms;  /* how long a catch-all check holds */
};

struct callout_pool_opts {
	const char *spec;          /* "callout:host:port": answers name it (kept by the caller) */
	const char *host, *port;
	const char *sender;        /* MAIL FROM:<sender>; "" = null sender */
	const char *helo;          /* our EHLO name */
	const char *dns_servers;   /* the dns_servers key (NULL: resolv.conf) */
	uint64_t timeout_ms;       /* connect + banner, and each reply */
	unsigned max_conns;        /* at least 1 */
	uint64_t retry_after_ms;   /* circuit breaker: a server that failed is not tried for this long */
	const struct callout_domain_ttl *ttls; /* per domain, copied; may be NULL */
	size_t nttls;
	uint64_t default_ttl_ms;   /* for domains not in ttls */
	unsigned max_rate;         /* probes per second to this server, all pools together (0: no
				    * limit); past it an address gets UNAVAILABLE, rate_limited */
	struct callout_counters *counters; /* kept by the caller, outlives the pool */
};

typedef void (*callout_answer_cb)(void *arg, const struct rcpt_answer *ans);

struct callout_pool;

/* A pool on base (its loop must be run by the caller). Copies opts. NULL with why set if the
 * resolver cannot start. */
struct callout_pool *callout_pool_new(struct event_base *base, const struct callout_pool_opts *opts,
				      char *why, size_t whysz);

struct callout_waiter;

/* Probe addr ("local@domain", local part unquoted) and call cb once from the loop, never from
 * inside this call. The handle returned (owned by the pool) is valid until cb is called or it
 * is cancelled. A lookup that would wait on a probe already awaited by POOL_WAITERS_MAX (1000)
 * lookups is answered UNAVAILABLE. */
struct callout_waiter *callout_pool_lookup(struct callout_pool *p, const char *addr, callout_answer_cb cb,
					   void *arg);

/* The caller no longer wants w's answer: w is unlinked and freed now (cb is never called), and
 * a probe still queued that nobody waits for is dropped. */
void callout_pool_cancel(struct callout_pool *p, struct callout_waiter *w);
/* Forget the answers kept for late lookups (POOL_MEMO_MS): after `backstop cache purge`, the
 * next lookup of any address probes again. On the pool's loop. */
void callout_pool_forget(struct callout_pool *p);

/* Close every connection; lookups still waiting get UNAVAILABLE ("shutting down") before this
 * returns. */
void callout_pool_free(struct callout_pool *p);

#endif
