/* callout_rate.h - callout_max_rate: at most N probes per second to one validation server, all
 * workers and configuration generations together. A limiter is a bucket of N tokens; a probe
 * takes one, which comes back one second after it was taken, so that in no second does the
 * server get more than N probes (a bucket refilled at N per second would let up to 2N through in
 * the second after an idle spell). Limiters are shared by the process, one per "host:port", so
 * that a reload (a new callout pool beside the old generation's) never doubles the rate.
 * Thread-safe. */
#ifndef BACKSTOP_CALLOUT_RATE_H
#define BACKSTOP_CALLOUT_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct callout_rate;

/* The limiter of server key, now at rate probes per second (0: no limit; the rate of the latest
 * caller wins). Each get is released with callout_rate_put. */
struct callout_rate *callout_rate_get(const char *key, unsigned rate);
void callout_rate_put(struct callout_rate *r);

/* May a probe go now (now_ms: a monotonic clock in ms)? Takes a token if so. NULL: yes. */
bool callout_rate_take(struct callout_rate *r, uint64_t now_ms);
unsigned callout_rate_limit(const struct callout_rate *r);

#endif
