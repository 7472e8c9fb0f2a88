/* callout_flight.h - private to the callout pool: a flight is one probe of one address, shared
 * by every lookup of it (single-flight), and kept a few seconds after its answer. */
#ifndef BACKSTOP_CALLOUT_FLIGHT_H
#define BACKSTOP_CALLOUT_FLIGHT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "callout_pool.h"
#include "rcpt.h"

#define POOL_MEMO_MS 5000          /* an answer is shared with lookups arriving this much later */
#define POOL_WAITERS_MAX 1000      /* lookups waiting on one flight; more answer UNAVAILABLE */

struct flight;

struct callout_waiter {
	LIST_ENTRY(callout_waiter) link; /* in its flight's list */
	struct flight *f;          /* the flight it waits on (a ready answer's holder included) */
	callout_answer_cb cb;
	void *arg;
};
LIST_HEAD(waiter_list, callout_waiter);

struct cdomain;
struct cconn;

enum flight_state { FL_QUEUED, FL_SENT, FL_PARKED, FL_DONE };

struct flight {
	TAILQ_ENTRY(flight) link;  /* in the pool's queue, a batch, a domain's parked list or memo */
	struct flight *hnext;      /* hash chain (not for catch-all checks) */
	enum flight_state state;
	struct waiter_list waiters;
	unsigned nwaiters;
	struct cdomain *dom;
	struct cconn *conn;        /* FL_SENT: the connection carrying it */
	bool check;                /* the domain's catch-all check */
	unsigned tries;
	uint64_t done_ms;
	struct rcpt_answer ans;
	char addr[RCPT_ADDR_MAX + 1];
};
TAILQ_HEAD(flight_list, flight);

/* The flight table (address -> flight queued, sent, parked or freshly answered). find returns
 * NULL when addr has none; add puts f (owned by the pool) under f->addr. */
struct flight *callout_flight_find(struct callout_pool *p, const char *addr);
void callout_flight_add(struct callout_pool *p, struct flight *f);

/* Forget answers older than POOL_MEMO_MS. */
void callout_flight_expire(struct callout_pool *p, uint64_t now);

/* The queue of flights waiting for a connection: enqueue at the head or the tail; dequeue
 * returns NULL when it is empty; fail_queued answers every queued flight UNAVAILABLE (why). */
void callout_flight_enqueue(struct callout_pool *p, struct flight *f, bool head);
struct flight *callout_flight_dequeue(struct callout_pool *p);
void callout_flight_fail_queued(struct callout_pool *p, const char *why);

/* A flight's probe ended (f is in no list, f->ans is set): a catch-all check ends, a VALID
 * answer waits for its domain's running check, anything else is answered. */
void callout_flight_finish(struct callout_pool *p, struct flight *f);

/* Give f's answer to its waiters; f is then kept a few seconds for late lookups, or freed. */
void callout_flight_answer(struct callout_pool *p, struct flight *f);

/* Put w on f's list (at most POOL_WAITERS_MAX: false when f is full, w untouched). */
bool callout_flight_wait(struct callout_pool *p, struct flight *f, struct callout_waiter *w);

/* Take w off its flight and free it (its callback is never called); a queued flight nobody
 * waits for any more and a ready answer nobody wants are dropped too. */
void callout_flight_unwait(struct callout_pool *p, struct callout_waiter *w);

/* An answer known now, given to w from the loop like every answer; ready_drain gives them. */
void callout_flight_ready(struct callout_pool *p, const struct rcpt_answer *ans, struct callout_waiter *w);
void callout_flight_ready_drain(struct callout_pool *p);

/* Forget every remembered answer (a verdict was purged: the next lookup probes). */
void callout_flight_forget(struct callout_pool *p);

/* Free the remembered answers (the pool is closing). */
void callout_flight_free_memo(struct callout_pool *p);

#endif
