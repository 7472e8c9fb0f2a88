/* redis_loops.c - a store's Redis connections, one per event loop (redis_loops.h). */
#include "redis_loops.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util.h"

struct loop_conn {
	struct loop_conn *next;
	struct redis_loops *L;
	struct event_base *base;
	struct redis_conn *conn;
	unsigned long up_seen;          /* L->up_epoch when this connection last looked */
};

struct redis_loops {
	const struct redis_target *target;
	redis_state_cb state_cb;
	void *state_arg;
	pthread_mutex_t lock;
	struct loop_conn *list;
	atomic_ulong up_epoch;          /* a connection came up: the others need not wait their backoff */
};

/* The connections this thread asked for last, one per set (a worker asks the verdict cache's and
 * the budgets'). */
#define TL_SLOTS 4
static _Thread_local struct loop_conn *tl[TL_SLOTS];

static void loops_state(void *arg, bool up)
{
	struct redis_loops *L = arg;

	if (up)
		redis_loops_up(L);
	L->state_cb(L->state_arg, up);
}

struct redis_loops *redis_loops_new(const struct redis_target *t, redis_state_cb state_cb, void *state_arg)
{
	struct redis_loops *L = xcalloc(1, sizeof *L);

	L->target = t;
	L->state_cb = state_cb;
	L->state_arg = state_arg;
	pthread_mutex_init(&L->lock, NULL);
	return L;
}

static void tl_drop(const struct loop_conn *lc)
{
	for (size_t i = 0; i < TL_SLOTS; i++)
		if (tl[i] == lc)
			tl[i] = NULL;
}

void redis_loops_free(struct redis_loops *L)
{
	if (L == NULL)
		return;
	while (L->list) {
		struct loop_conn *lc = L->list;
		L->list = lc->next;
		tl_drop(lc);
		redis_conn_free(lc->conn);
		free(lc);
	}
	pthread_mutex_destroy(&L->lock);
	free(L);
}

/* This connection is down but another one is up again: try now rather than at the end of the
 * backoff. */
static struct redis_conn *loop_fresh(struct loop_conn *lc)
{
	unsigned long epoch = atomic_load(&lc->L->up_epoch);

	if (epoch != lc->up_seen) {
		lc->up_seen = epoch;
		if (redis_conn_failed(lc->conn))
			redis_conn_retry_now(lc->conn);
	}
	return lc->conn;
}

static struct loop_conn *tl_find(const struct redis_loops *L)
{
	for (size_t i = 0; i < TL_SLOTS; i++)
		if (tl[i] && tl[i]->L == L)
			return tl[i];
	return NULL;
}

static void tl_put(struct loop_conn *lc)
{
	for (size_t i = 0; i < TL_SLOTS; i++)
		if (tl[i] == NULL || tl[i]->L == lc->L) {
			tl[i] = lc;
			return;
		}
	tl[0] = lc;
}

struct redis_conn *redis_loops_conn(struct redis_loops *L, struct event_base *base)
{
	struct loop_conn *lc = tl_find(L);

	if (lc && lc->base == base)
		return loop_fresh(lc);
	pthread_mutex_lock(&L->lock);
	for (lc = L->list; lc && lc->base != base; lc = lc->next)
		;
	if (lc == NULL) {
		lc = xcalloc(1, sizeof *lc);
		lc->L = L;
		lc->base = base;
		lc->conn = redis_conn_new(base, L->target, loops_state, L);
		redis_conn_kick(lc->conn); /* the first commands wait for it, within the target's timeout */
		lc->next = L->list;
		L->list = lc;
	}
	pthread_mutex_unlock(&L->lock);
	tl_put(lc);
	return loop_fresh(lc);
}

struct redis_conn *redis_loops_current(struct redis_loops *L)
{
	struct loop_conn *lc = tl_find(L);
	return lc ? loop_fresh(lc) : NULL;
}

void redis_loops_up(struct redis_loops *L)
{
	atomic_fetch_add(&L->up_epoch, 1);
}

void redis_loops_forget(struct redis_loops *L, struct event_base *base)
{
	pthread_mutex_lock(&L->lock);
	for (struct loop_conn **pp = &L->list; *pp; pp = &(*pp)->next) {
		struct loop_conn *lc = *pp;
		if (lc->base != base)
			continue;
		*pp = lc->next;
		tl_drop(lc);
		redis_conn_free(lc->conn);
		free(lc);
		break;
	}
	pthread_mutex_unlock(&L->lock);
}
