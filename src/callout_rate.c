/* callout_rate.c - the probe limiter per validation server (callout_rate.h): a ring of the times
 * the last N tokens were taken; a token is free when the oldest of them is a second old. The
 * process's limiters are in one list under one lock (a handful of servers). A pool's share of a
 * rate counted by the gateways together: tokens of the current second, asked from the budget
 * store a batch at a time. */
#include "callout_rate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "budget_store.h"
#include "util.h"

#define CALLOUT_RATE_WINDOW_MS 1000

struct callout_rate {
	struct callout_rate *next;
	char *key;
	unsigned refs;
	unsigned rate;       /* tokens; 0: no limit */
	unsigned used;       /* ring entries in use (< rate while filling) */
	unsigned head;       /* the oldest entry */
	uint64_t *taken;     /* rate entries */
};

static pthread_mutex_t rates_lock = PTHREAD_MUTEX_INITIALIZER;
static struct callout_rate *rates; /* guarded by rates_lock, as is every limiter's content */

/* rates_lock held. A changed rate starts a new ring: conservative, it holds what the new rate
 * allows from now. */
static void rate_set(struct callout_rate *r, unsigned rate)
{
	if (r->rate == rate)
		return;
	free(r->taken);
	r->taken = rate ? xcalloc(rate, sizeof *r->taken) : NULL;
	r->rate = rate;
	r->used = r->head = 0;
}

struct callout_rate *callout_rate_get(const char *key, unsigned rate)
{
	struct callout_rate *r;

	pthread_mutex_lock(&rates_lock);
	for (r = rates; r != NULL && strcmp(r->key, key) != 0; r = r->next)
		;
	if (r == NULL) {
		r = xcalloc(1, sizeof *r);
		r->key = xstrdup(key);
		r->next = rates;
		rates = r;
	}
	r->refs++;
	rate_set(r, rate);
	pthread_mutex_unlock(&rates_lock);
	return r;
}

void callout_rate_put(struct callout_rate *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&rates_lock);
	if (--r->refs == 0) {
		struct callout_rate **pp = &rates;
		while (*pp != r)
			pp = &(*pp)->next;
		*pp = r->next;
		free(r->taken);
		free(r->key);
		free(r);
	}
	pthread_mutex_unlock(&rates_lock);
}

bool callout_rate_take(struct callout_rate *r, uint64_t now)
{
	bool ok = true;

	if (r == NULL)
		return true;
	pthread_mutex_lock(&rates_lock);
	if (r->rate == 0) {
		ok = true;
	} else if (r->used < r->rate) {
		r->taken[(r->head + r->used++) % r->rate] = now;
	} else if (now >= r->taken[r->head] + CALLOUT_RATE_WINDOW_MS) {
		r->taken[r->head] = now; /* the oldest token came back: it is the newest now */
		r->head = (r->head + 1) % r->rate;
	} else {
		ok = false;
	}
	pthread_mutex_unlock(&rates_lock);
	return ok;
}

unsigned callout_rate_limit(const struct callout_rate *r)
{
	return r ? r->rate : 0;
}

/* ---- shared by the gateways ---- */

static struct budget_store *_Atomic share_store;

struct callout_share {
	struct budget_store *store;
	struct event_base *base;
	void (*wake)(void *arg);
	void *wake_arg;
	char *key;                   /* "HOST:PORT" */
	uint64_t second;             /* wall clock: the second the tokens below are for */
	unsigned left;               /* tokens granted for it, not used yet */
	bool spent;                  /* the store granted less than asked: no more this second */
	bool asking;                 /* inside budget_store_take */
	uint64_t asked_second;
	unsigned asked;
	struct budget_query *pending;
};

void callout_rate_share_store(struct budget_store *st)
{
	atomic_store(&share_store, st);
}

struct callout_share *callout_share_new(struct event_base *base, const char *key, void (*wake)(void *arg), void *arg)
{
	struct budget_store *st = atomic_load(&share_store);

	if (!budget_store_shares_rates(st))
		return NULL;
	struct callout_share *sh = xcalloc(1, sizeof *sh);
	sh->store = st;
	sh->base = base;
	sh->wake = wake;
	sh->wake_arg = arg;
	sh->key = xstrdup(key);
	return sh;
}

void callout_share_free(struct callout_share *sh)
{
	if (sh == NULL)
		return;
	budget_store_cancel(sh->store, sh->pending);
	budget_store_forget_base(sh->store, sh->base);
	free(sh->key);
	free(sh);
}

static uint64_t share_second(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec;
}

static void share_granted(void *arg, unsigned granted)
{
	struct callout_share *sh = arg;

	sh->pending = NULL;
	if (sh->asked_second == sh->second) {
		sh->left += granted;
		if (granted < sh->asked)
			sh->spent = true;
	}
	if (!sh->asking)
		sh->wake(sh->wake_arg);
}

enum callout_share_answer callout_share_ask(struct callout_share *sh, unsigned limit, unsigned want)
{
	if (sh == NULL || limit == 0)
		return CALLOUT_SHARE_YES;
	uint64_t now = share_second();
	if (now != sh->second) {
		sh->second = now;
		sh->left = 0;
		sh->spent = false;
	}
	if (sh->left > 0)
		return CALLOUT_SHARE_YES;
	if (sh->spent)
		return CALLOUT_SHARE_NO;
	if (sh->pending)
		return CALLOUT_SHARE_WAIT;
	sh->asked_second = now;
	sh->asked = want == 0 ? 1 : want < limit ? want : limit;
	sh->asking = true;
	struct budget_query *q = budget_store_take(sh->store, sh->base, sh->key, now, sh->asked, limit, share_granted, sh);
	sh->asking = false;
	if (q != NULL) {
		sh->pending = q;
		return CALLOUT_SHARE_WAIT;
	}
	return sh->left > 0 ? CALLOUT_SHARE_YES : CALLOUT_SHARE_NO; /* answered from inside */
}

void callout_share_use(struct callout_share *sh)
{
	if (sh != NULL && sh->left > 0)
		sh->left--;
}
