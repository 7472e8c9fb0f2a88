/* verify.h - recipient verification as the SMTP session asks for it, once per RCPT: the chain's
 * leading local sources (map:, whose verdicts are never cached), then the verdict cache, on a
 * miss the rest of the domain's source chain within the verify_timeout budget, and the
 * reply the session should give. Past the budget the session gets UNAVAILABLE while the lookup
 * goes on in the background and fills the cache; a positive verdict past half its TTL is served
 * and refreshed in the background.
 *
 * Threads: a verifier is shared by all workers; verify_start/verify_cancel run on the worker
 * that owns `base`, and the callback comes from that loop, never from inside verify_start. */
#ifndef BACKSTOP_VERIFY_H
#define BACKSTOP_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "rcpt.h"
#include "smtp_address.h"
#include "vcache.h"

enum verify_action { VERIFY_ACCEPT = 0, VERIFY_REJECT, VERIFY_DEFER };

struct verify_result {
	enum rcpt_verdict verdict;     /* what the sources (or the cache) said */
	enum verify_action action;     /* what to answer, after on_unavailable */
	int code;                      /* 250, reject_code (550) or 451 */
	char enhanced[8];              /* "2.1.5", "5.1.1", "4.4.3" */
	char text[512];                /* "<addr>: Recipient address rejected: User unknown"; for the client */
	char source[VCACHE_SOURCE_MAX]; /* the source that decided ("none" without verify list) */
	char reason[RCPT_REASON_MAX];   /* for the log only (may name backend hosts) */
	bool cached;                   /* answered from the cache */
	bool timed_out;                /* the budget ran out: the lookup goes on in the background */
	bool rate_limited;             /* not probed: callout_max_rate (deferred whatever on_unavailable) */
	uint64_t age_ms;               /* cached: age of the entry */
	uint64_t ttl_left_ms;          /* cached: time before it expires */
	uint64_t latency_ms;           /* from verify_start to the callback */
};

/* res is valid only during the call. The handle is gone once the callback runs. */
typedef void (*verify_cb)(void *arg, const struct verify_result *res);

struct verifier;
struct verify_query;

/* A verifier over a registry of sources and a cache (NULL: no cache, every RCPT asks the
 * sources). It borrows reg, cache and cfg: the caller keeps them alive until verifier_free()
 * has returned (hold a config reference for as long). Main thread. */
struct verifier *verifier_new(const struct bs_config *cfg, struct rcpt_registry *reg, struct vcache *cache);

/* Cancel the background lookups running on base (call it on base's thread before freeing a
 * worker's loop; their verdicts are then not cached). */
void verifier_shutdown_base(struct verifier *v, struct event_base *base);

/* Free, once every worker loop has stopped and verifier_shutdown_base() was called for each. */
void verifier_free(struct verifier *v);

/* Verify rcpt (local_raw and domain as parsed) in dom (from relay_control_check()). Returns a
 * handle for verify_cancel; the callback always comes later from base's loop. A domain without
 * a verify list answers ACCEPT with source "none" (the backend's RCPT reply then decides). */
struct verify_query *verify_start(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
				  const struct smtp_address *rcpt, verify_cb cb, void *arg);

/* Verify without the cache (read or write): `backstop verify --no-cache`. */
struct verify_query *verify_start_nocache(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
					  const struct smtp_address *rcpt, verify_cb cb, void *arg);

/* Verify with the cache used as flags say: VERIFY_CACHE_READ answers from it, VERIFY_CACHE_WRITE
 * stores the verdict (verify_start is both, verify_start_nocache neither; `backstop verify`
 * reads only, unless --store). */
#define VERIFY_CACHE_READ 1u
#define VERIFY_CACHE_WRITE 2u
struct verify_query *verify_start_flags(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
					const struct smtp_address *rcpt, unsigned flags, verify_cb cb, void *arg);

/* The session no longer wants the answer (client gone, RSET, timeout). The callback is not
 * called; a lookup in progress goes on in the background to fill the cache. */
void verify_cancel(struct verify_query *q);

/* Background lookups still running (a released configuration generation is torn down only
 * once this is 0). */
size_t verifier_background(struct verifier *v);

/* Counters: lookups, cache hits, misses, timeouts, background refreshes. */
void verifier_stats(struct verifier *v, FILE *out);

#endif
