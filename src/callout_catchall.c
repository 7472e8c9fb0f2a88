/* callout_catchall.c - catch-all detection for the callout pool: per domain, a probe of a random
 * address; while it runs VALID answers wait, and a catch-all domain's VALID says nothing. */
#include "callout_catchall.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "callout_pool_priv.h"
#include "log.h"
#include "util.h"

#define POOL_CHECK_RETRY_MS 60000  /* a catch-all check that got no answer is retried after this */

struct cdomain *callout_catchall_domain(struct callout_pool *p, const char *addr)
{
	const char *name = strrchr(addr, '@');
	name = name ? name + 1 : "";
	for (struct cdomain *d = p->domains; d; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	struct cdomain *d = xcalloc(1, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", name);
	TAILQ_INIT(&d->parked);
	d->ttl_ms = p->o.default_ttl_ms;
	for (size_t i = 0; i < p->o.nttls; i++)
		if (strcmp(p->ttls[i].name, name) == 0)
			d->ttl_ms = p->ttls[i].positive_ttl_ms;
	d->next = p->domains;
	p->domains = d;
	return d;
}

void callout_catchall_check(struct callout_pool *p, struct cdomain *d)
{
	uint64_t now = now_ms();
	unsigned char rnd[8] = { 0 };

	if (d->check == CHK_RUNNING || (d->check == CHK_DONE && now - d->checked_ms < d->ttl_ms))
		return;
	if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
		for (size_t i = 0; i < sizeof rnd; i++)
			rnd[i] = (unsigned char)(now >> (i * 3)) ^ (unsigned char)i;
	struct flight *f = xcalloc(1, sizeof *f);
	f->check = true;
	f->dom = d;
	snprintf(f->addr, sizeof f->addr, "backstop-catchall-check-%02x%02x%02x%02x%02x%02x%02x%02x@%s", rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], d->name);
	d->check = CHK_RUNNING;
	atomic_fetch_add(&p->o.counters->catchall_checks, 1);
	callout_flight_enqueue(p, f, true);
}

static void answer_parked(struct callout_pool *p, struct cdomain *d)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&d->parked)) != NULL) {
		TAILQ_REMOVE(&d->parked, f, link);
		callout_flight_answer(p, f);
	}
}

void callout_catchall_done(struct callout_pool *p, struct cdomain *d, const struct rcpt_answer *a)
{
	bool was = d->catchall;

	d->check = CHK_DONE;
	d->checked_ms = now_ms();
	if (a->verdict == RCPT_UNAVAILABLE && d->ttl_ms > POOL_CHECK_RETRY_MS)
		d->checked_ms -= d->ttl_ms - POOL_CHECK_RETRY_MS;
	d->catchall = a->verdict == RCPT_VALID || (a->verdict == RCPT_UNAVAILABLE && was);
	if (d->catchall && !was)
		atomic_fetch_add(&p->o.counters->catchall_domains, 1);
	if (!d->catchall && was)
		atomic_fetch_sub(&p->o.counters->catchall_domains, 1);
	if (d->catchall && !d->warned) {
		log_warn("%s: validation server accepts any address at %s (catch-all: it accepted %s); "
			 "its VALID answers for %s say nothing (on_catchall applies)", p->spec, d->name,
			 strchr(a->reason, '<') ? a->reason : "a random address", d->name);
		d->warned = true;
	}
	answer_parked(p, d);
}

bool callout_catchall_park(struct callout_pool *p, struct flight *f)
{
	if (f->ans.verdict != RCPT_VALID || f->dom->check != CHK_RUNNING || p->closing)
		return false;
	f->state = FL_PARKED;
	TAILQ_INSERT_TAIL(&f->dom->parked, f, link);
	return true;
}

void callout_catchall_free(struct callout_pool *p)
{
	for (struct cdomain *d = p->domains, *n; d; d = n) {
		n = d->next;
		answer_parked(p, d);
		free(d);
	}
	p->domains = NULL;
}
