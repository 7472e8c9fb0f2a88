/* backend_health.h - circuit breaker for backends (delivery targets and validation servers),
 * shared by all workers. A target that failed BACKEND_TRIP_FAILURES times in a row (refused
 * connections, timed out, answered 4xx to the greeting) is skipped for retry_after; then one
 * session at a time may probe it (half-open) until one succeeds. One failure alone does not
 * trip it: a single lost SYN under load must not turn into 30 s of 451s for every client.
 * Keyed by "host:port". Thread-safe. */
#ifndef BACKSTOP_BACKEND_HEALTH_H
#define BACKSTOP_BACKEND_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct backend_health;

#define BACKEND_TRIP_FAILURES 2

enum backend_state { BACKEND_HEALTHY = 0, BACKEND_FAILING, BACKEND_HALF_OPEN };

struct backend_health *backend_health_new(void);
void backend_health_free(struct backend_health *h);

/* May a connection to key be tried now? A failing target past retry_after_ms becomes half-open
 * and this returns true for exactly one caller, who must then report the outcome. */
bool backend_health_try(struct backend_health *h, const char *key, uint64_t retry_after_ms);

/* Outcome of an attempt: ok = the target greeted and answered EHLO. */
void backend_health_report(struct backend_health *h, const char *key, bool ok);

enum backend_state backend_health_state(struct backend_health *h, const char *key);

/* What the table knows of one target (valid only during the callback; targets that never
 * failed may be absent: healthy). */
struct backend_health_info {
	const char *key;
	enum backend_state state;
	unsigned failures;             /* in a row */
	unsigned long trips;           /* times the breaker opened */
	uint64_t since_ms;             /* failing or half-open: time since the last failure; 0 healthy */
};
/* Call fn for every target in the table, under its mutex (fn only copies, never calls back
 * into h). */
void backend_health_each(struct backend_health *h, void (*fn)(void *arg, const struct backend_health_info *info),
			 void *arg);

#endif
