/* callout_pool_priv.h - private to the callout pool's files: the pool itself (what every part
 * reaches) and the helpers they share to answer and to wake the scheduler. */
#ifndef BACKSTOP_CALLOUT_POOL_PRIV_H
#define BACKSTOP_CALLOUT_POOL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "callout_flight.h"
#include "callout_pool.h"
#include "rcpt.h"

struct callout_pool {
	struct event_base *base;
	struct dns_resolver *dns;
	struct backend_health *health;
	struct callout_rate *rate; /* callout_max_rate, shared with the process (callout_rate.h) */
	struct callout_share *share; /* and with the other gateways (NULL: not shared) */
	struct callout_pool_opts o;
	char *spec, *host, *port, *sender, *helo, *key;
	struct callout_domain_ttl *ttls;
	struct flight **table;     /* address -> flight (queued, sent, parked or fresh answer) */
	size_t tsize, tcount;
	struct flight_list queue;  /* waiting for a connection */
	size_t queued;
	struct flight_list memo;   /* answered, kept POOL_MEMO_MS, oldest first */
	struct flight_list ready;  /* answers known at lookup time, given from the loop (not in table) */
	struct cdomain *domains;
	struct cconn **conns;      /* max_conns slots */
	struct event *kick;
	uint64_t policy_warn_ms;   /* last warning about policy rejections (callout_conn.c) */
	unsigned long policy_rejects; /* since then */
	uint64_t desync_warn_ms;   /* last warning about replies out of step */
	unsigned long desyncs;     /* since then */
	bool closing;
};

/* The breaker's state into the counters (after each report). */
void callout_pool_note_health(struct callout_pool *p);

/* Schedule from the loop (never re-enter from inside a callback chain). */
void callout_pool_kick(struct callout_pool *p);

/* Count an answer's verdict. */
void callout_pool_count(struct callout_pool *p, enum rcpt_verdict v);

/* Set a to verdict v from this pool with a formatted reason (cut short if too long). */
void callout_pool_answer(struct callout_pool *p, struct rcpt_answer *a, enum rcpt_verdict v, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* snprintf that may truncate (reasons are for logs). */
void callout_pool_reason(char *buf, size_t bufsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
