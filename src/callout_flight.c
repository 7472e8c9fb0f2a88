/* callout_flight.c - single-flight for the callout pool: the table of flights by address, the
 * queue waiting for a connection, the memo of fresh answers, and answering waiters. */
#include "callout_flight.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "callout_catchall.h"
#include "callout_pool_priv.h"
#include "log.h"
#include "util.h"

/* ---- the table ---- */

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static struct flight **table_slot(struct callout_pool *p, const char *addr)
{
	struct flight **pp = &p->table[hash_str(addr) & (p->tsize - 1)];
	while (*pp && strcmp((*pp)->addr, addr) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void table_grow(struct callout_pool *p)
{
	struct flight **old = p->table;
	size_t osize = p->tsize;

	p->tsize = osize ? osize * 2 : 256;
	p->table = xcalloc(p->tsize, sizeof *p->table);
	for (size_t i = 0; i < osize; i++) {
		for (struct flight *f = old[i], *n; f; f = n) {
			n = f->hnext;
			struct flight **slot = &p->table[hash_str(f->addr) & (p->tsize - 1)];
			f->hnext = *slot;
			*slot = f;
		}
	}
	free(old);
}

static void table_del(struct callout_pool *p, struct flight *f)
{
	struct flight **pp = table_slot(p, f->addr);
	if (*pp == f) {
		*pp = f->hnext;
		p->tcount--;
	}
}

struct flight *callout_flight_find(struct callout_pool *p, const char *addr)
{
	return *table_slot(p, addr);
}

void callout_flight_add(struct callout_pool *p, struct flight *f)
{
	if (p->tcount + 1 > p->tsize / 2 + p->tsize / 4)
		table_grow(p);
	struct flight **slot = &p->table[hash_str(f->addr) & (p->tsize - 1)];
	f->hnext = *slot;
	*slot = f;
	p->tcount++;
}

void callout_flight_expire(struct callout_pool *p, uint64_t now)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&p->memo)) != NULL && now - f->done_ms >= POOL_MEMO_MS) {
		TAILQ_REMOVE(&p->memo, f, link);
		table_del(p, f);
		free(f);
	}
}

void callout_flight_forget(struct callout_pool *p)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&p->memo)) != NULL) {
		TAILQ_REMOVE(&p->memo, f, link);
		table_del(p, f);
		free(f);
	}
}

void callout_flight_free_memo(struct callout_pool *p)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&p->memo)) != NULL) {
		TAILQ_REMOVE(&p->memo, f, link);
		free(f);
	}
}

/* ---- the queue ---- */

void callout_flight_enqueue(struct callout_pool *p, struct flight *f, bool head)
{
	f->state = FL_QUEUED;
	if (head)
		TAILQ_INSERT_HEAD(&p->queue, f, link);
	else
		TAILQ_INSERT_TAIL(&p->queue, f, link);
	p->queued++;
	atomic_store(&p->o.counters->queued, p->queued);
}

struct flight *callout_flight_dequeue(struct callout_pool *p)
{
	struct flight *f = TAILQ_FIRST(&p->queue);
	if (f) {
		TAILQ_REMOVE(&p->queue, f, link);
		p->queued--;
		atomic_store(&p->o.counters->queued, p->queued);
	}
	return f;
}

void callout_flight_fail_queued(struct callout_pool *p, const char *why)
{
	struct flight *f;
	while ((f = callout_flight_dequeue(p)) != NULL) {
		callout_pool_answer(p, &f->ans, RCPT_UNAVAILABLE, "%s", why);
		callout_flight_finish(p, f);
	}
}

/* ---- waiters ---- */

bool callout_flight_wait(struct callout_pool *p, struct flight *f, struct callout_waiter *w)
{
	if (f->nwaiters >= POOL_WAITERS_MAX)
		return false;
	w->f = f;
	LIST_INSERT_HEAD(&f->waiters, w, link);
	f->nwaiters++;
	atomic_fetch_add(&p->o.counters->waiting, 1);
	return true;
}

/* Forget a queued flight nobody waits for: it is in the queue and the table. */
static void flight_drop_queued(struct callout_pool *p, struct flight *f)
{
	TAILQ_REMOVE(&p->queue, f, link);
	p->queued--;
	atomic_store(&p->o.counters->queued, p->queued);
	table_del(p, f);
	free(f);
}

void callout_flight_unwait(struct callout_pool *p, struct callout_waiter *w)
{
	struct flight *f = w->f;

	LIST_REMOVE(w, link);
	f->nwaiters--;
	atomic_fetch_sub(&p->o.counters->waiting, 1);
	free(w);
	if (f->nwaiters > 0)
		return;
	if (f->state == FL_DONE) { /* a ready answer's holder (callout_flight_ready) */
		TAILQ_REMOVE(&p->ready, f, link);
		free(f);
	} else if (f->state == FL_QUEUED && !f->check) {
		flight_drop_queued(p, f);
	}
}

/* Give f's answer to each of its waiters and free them. */
static void callout_flight_give(struct callout_pool *p, struct flight *f)
{
	struct callout_waiter *w;

	while ((w = LIST_FIRST(&f->waiters)) != NULL) {
		LIST_REMOVE(w, link);
		f->nwaiters--;
		atomic_fetch_sub(&p->o.counters->waiting, 1);
		w->cb(w->arg, &f->ans);
		free(w);
	}
}

/* ---- answering ---- */

void callout_flight_answer(struct callout_pool *p, struct flight *f)
{
	if (f->ans.verdict == RCPT_VALID && f->dom->catchall) {
		f->ans.catchall = true;
		callout_pool_reason(f->ans.reason, sizeof f->ans.reason, "catch-all: %s accepts any address at %s",
				    p->host, f->dom->name);
	}
	callout_pool_count(p, f->ans.verdict);
	log_debug("%s: %s: %s (%s)", p->spec, f->addr, rcpt_verdict_name(f->ans.verdict), f->ans.reason);
	callout_flight_give(p, f);
	if (f->ans.verdict == RCPT_UNAVAILABLE || p->closing) {
		table_del(p, f);
		free(f);
		return;
	}
	f->state = FL_DONE;
	f->done_ms = now_ms();
	TAILQ_INSERT_TAIL(&p->memo, f, link);
}

void callout_flight_finish(struct callout_pool *p, struct flight *f)
{
	if (f->check) {
		callout_catchall_done(p, f->dom, &f->ans);
		free(f);
		return;
	}
	if (callout_catchall_park(p, f))
		return;
	callout_flight_answer(p, f);
}

void callout_flight_ready(struct callout_pool *p, const struct rcpt_answer *ans, struct callout_waiter *w)
{
	struct flight *g = xcalloc(1, sizeof *g);

	g->ans = *ans;
	LIST_INIT(&g->waiters);
	g->state = FL_DONE;
	callout_flight_wait(p, g, w);
	TAILQ_INSERT_TAIL(&p->ready, g, link);
	callout_pool_kick(p);
}

void callout_flight_ready_drain(struct callout_pool *p)
{
	struct flight *g;
	while ((g = TAILQ_FIRST(&p->ready)) != NULL) {
		TAILQ_REMOVE(&p->ready, g, link);
		callout_flight_give(p, g);
		free(g);
	}
}
