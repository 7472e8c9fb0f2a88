/* callout_rate.h - callout_max_rate: at most N probes per second to one validation server, all
 * workers and configuration generations together. A limiter is a bucket of N tokens; a probe
 * takes one, which comes back one second after it was taken, so that in no second does the
 * server get more than N probes (a bucket refilled at N per second would let up to 2N through in
 * the second after an idle spell). Limiters are shared by the process, one per "host:port", so
 * that a reload (a new callout pool beside the old generation's) never doubles the rate.
 * Thread-safe.
 * When the process's budget store is shared by several gateways (Redis), a pool also asks it for
 * the tokens of the current wall-clock second (callout_share: all gateways together stay at or
 * under the rate in each second); the store answering late or not at all leaves the decision to
 * this process's limiter. */
#ifndef BACKSTOP_CALLOUT_RATE_H
#define BACKSTOP_CALLOUT_RATE_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

struct budget_store;

struct callout_rate;

/* The limiter of server key, now at rate probes per second (0: no limit; the rate of the latest
 * caller wins). Each get is released with callout_rate_put. */
struct callout_rate *callout_rate_get(const char *key, unsigned rate);
void callout_rate_put(struct callout_rate *r);

/* May a probe go now (now_ms: a monotonic clock in ms)? Takes a token if so. NULL: yes. */
bool callout_rate_take(struct callout_rate *r, uint64_t now_ms);
unsigned callout_rate_limit(const struct callout_rate *r);

/* The process's budget store (server.c: at start, NULL at the end); pools made while it is one
 * that shares rates share theirs. */
void callout_rate_share_store(struct budget_store *st);

/* A pool's shared tokens, on its loop base. NULL when the rate is not shared. wake(arg) is called
 * from the loop when an answer came back (schedule again). */
struct callout_share;
struct callout_share *callout_share_new(struct event_base *base, const char *key, void (*wake)(void *arg), void *arg);
/* Cancels a request out, and forgets the store's connection on base. */
void callout_share_free(struct callout_share *sh);

enum callout_share_answer {
	CALLOUT_SHARE_YES,  /* a token is there: callout_share_use once the probe goes */
	CALLOUT_SHARE_NO,   /* the gateways used this second's tokens */
	CALLOUT_SHARE_WAIT, /* asked for up to want tokens: wait for wake */
};
/* May one more probe go this second under limit (sh NULL, limit 0: yes)? */
enum callout_share_answer callout_share_ask(struct callout_share *sh, unsigned limit, unsigned want);
void callout_share_use(struct callout_share *sh);

#endif
