/* callout.h - the rules of a recipient callout that the pool (callout_pool.c) and the probe
 * command (callout_probe.c) share: how an RCPT line is written and what its reply means. */
#ifndef BACKSTOP_CALLOUT_H
#define BACKSTOP_CALLOUT_H

#include <stddef.h>

#include "rcpt.h"
#include "smtp_client.h"

/* The verdict an RCPT reply gives: 2xx VALID; 550, 551, 553 or a 5xx with a 5.1.x enhanced code
 * INVALID; anything else (4xx, other 5xx, code 0 = no reply) UNAVAILABLE. */
enum rcpt_verdict callout_verdict(const struct smtp_reply *r);

/* "RCPT TO:<addr>" into buf, the local part quoted when it is not a dot-atom. -1 if addr has
 * no '@', holds control characters or does not fit. */
int callout_rcpt_line(const char *addr, char *buf, size_t bufsz);

#endif
