/* callout.h - the rules of a recipient callout that the pool (callout_pool.c) and the probe
 * command (callout_probe.c) share: how an RCPT line is written and what its reply means. */
#ifndef BACKSTOP_CALLOUT_H
#define BACKSTOP_CALLOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "rcpt.h"
#include "smtp_client.h"

/* The verdict an RCPT reply gives: 2xx VALID; a 5xx with an enhanced code 5.1.x (not 5.1.7 or
 * 5.1.8, the sender's) INVALID; without an enhanced code, 550, 551 or 553 INVALID; anything else
 * (4xx, a 5xx policy rejection such as 550 5.7.1, other 5xx, code 0 = no reply) UNAVAILABLE. */
enum rcpt_verdict callout_verdict(const struct smtp_reply *r);

/* Is r a 5xx whose enhanced code says policy (5.7.1 relay denied, 5.5.3 too many recipients, a
 * sender's 5.1.8), not an unknown address? The validation server is then misconfigured. */
bool callout_policy_reject(const struct smtp_reply *r);

/* "RCPT TO:<addr>" into buf, the local part quoted when it is not a dot-atom. -1 if addr has
 * no '@', holds control characters or does not fit. */
int callout_rcpt_line(const char *addr, char *buf, size_t bufsz);

#endif
