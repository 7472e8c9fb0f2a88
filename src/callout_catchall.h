/* callout_catchall.h - private to the callout pool: the domains the pool has probed and the
 * check of each (a random address probed: a server that accepts it accepts anything there). */
#ifndef BACKSTOP_CALLOUT_CATCHALL_H
#define BACKSTOP_CALLOUT_CATCHALL_H

#include <stdbool.h>
#include <stdint.h>

#include "callout_flight.h"
#include "smtp_address.h"

enum check_state { CHK_NONE, CHK_RUNNING, CHK_DONE };

struct cdomain {
	struct cdomain *next;
	enum check_state check;
	bool catchall, warned;
	uint64_t checked_ms;       /* when the last check ended (monotonic) */
	uint64_t ttl_ms;
	struct flight_list parked; /* VALID answers waiting for the check */
	char name[SMTP_DOMAIN_MAX + 1];
};

/* The domain of addr, made on first use with its TTL (owned by the pool). */
struct cdomain *callout_catchall_domain(struct callout_pool *p, const char *addr);

/* Queue a check of d unless one is running or ran within d's positive TTL. */
void callout_catchall_check(struct callout_pool *p, struct cdomain *d);

/* The check's answer a: VALID = catch-all, INVALID = not, UNAVAILABLE = unknown (retried
 * soon); the flights parked behind it are answered. */
void callout_catchall_done(struct callout_pool *p, struct cdomain *d, const struct rcpt_answer *a);

/* Park f (a VALID answer) while its domain's check runs: true if parked. */
bool callout_catchall_park(struct callout_pool *p, struct flight *f);

/* Answer what is parked and free every domain (the pool is closing). */
void callout_catchall_free(struct callout_pool *p);

#endif
