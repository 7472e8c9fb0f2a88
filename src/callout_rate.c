/* callout_rate.c - the probe limiter per validation server (callout_rate.h): a ring of the times
 * the last N tokens were taken; a token is free when the oldest of them is a second old. The
 * process's limiters are in one list under one lock (a handful of servers). */
#include "callout_rate.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
