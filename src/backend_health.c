/* backend_health.c - the circuit breaker table: a small array of targets (a gateway has a
 * handful of backends) under one mutex. */
#include "backend_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define HEALTH_KEY_MAX 300

struct health_entry {
	char key[HEALTH_KEY_MAX];
	enum backend_state state;
	uint64_t failed_at_ms;
	unsigned failures;
	unsigned long trips;           /* times the breaker opened */
};

struct backend_health {
	pthread_mutex_t lock;
	struct health_entry *entries;
	size_t n, cap;
};

struct backend_health *backend_health_new(void)
{
	struct backend_health *h = xcalloc(1, sizeof *h);
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

void backend_health_free(struct backend_health *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h->entries);
	free(h);
}

static struct health_entry *health_find(struct backend_health *h, const char *key, bool create)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->entries[i].key, key) == 0)
			return &h->entries[i];
	if (!create)
		return NULL;
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 8;
		h->entries = xrealloc(h->entries, h->cap * sizeof *h->entries);
	}
	struct health_entry *e = &h->entries[h->n++];
	memset(e, 0, sizeof *e);
	strbuf_copy(e->key, sizeof e->key, key, strnlen(key, sizeof e->key - 1));
	return e;
}

bool backend_health_try(struct backend_health *h, const char *key, uint64_t retry_after_ms)
{
	bool ok = true;
	pthread_mutex_lock(&h->lock);
	struct health_entry *e = health_find(h, key, false);
	if (e != NULL && e->state == BACKEND_FAILING) {
		if (now_ms() - e->failed_at_ms >= retry_after_ms)
			e->state = BACKEND_HALF_OPEN; /* this caller probes */
		else
			ok = false;
	} else if (e != NULL && e->state == BACKEND_HALF_OPEN) {
		/* a probe is already out; if its owner vanished without reporting, allow another */
		ok = now_ms() - e->failed_at_ms >= 2 * retry_after_ms;
		if (ok)
			e->failed_at_ms = now_ms() - retry_after_ms;
	}
	pthread_mutex_unlock(&h->lock);
	return ok;
}

void backend_health_report(struct backend_health *h, const char *key, bool ok)
{
	pthread_mutex_lock(&h->lock);
	struct health_entry *e = health_find(h, key, !ok);
	if (e != NULL) {
		enum backend_state before = e->state;
		if (ok) {
			e->state = BACKEND_HEALTHY;
			e->failures = 0;
		} else if (++e->failures >= BACKEND_TRIP_FAILURES || e->state == BACKEND_HALF_OPEN) {
			if (e->state != BACKEND_FAILING)
				e->trips++;
			e->state = BACKEND_FAILING;
			e->failed_at_ms = now_ms();
		}
		if (before != e->state)
			log_notice("backend %s is now %s", key, ok ? "healthy" : "failing (skipped for a while)");
	}
	pthread_mutex_unlock(&h->lock);
}

enum backend_state backend_health_state(struct backend_health *h, const char *key)
{
	pthread_mutex_lock(&h->lock);
	struct health_entry *e = health_find(h, key, false);
	enum backend_state st = e ? e->state : BACKEND_HEALTHY;
	pthread_mutex_unlock(&h->lock);
	return st;
}

void backend_health_each(struct backend_health *h, void (*fn)(void *arg, const struct backend_health_info *info),
			 void *arg)
{
	uint64_t now = now_ms();

	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->n; i++) {
		const struct health_entry *e = &h->entries[i];
		struct backend_health_info info = { .key = e->key, .state = e->state, .failures = e->failures,
						    .trips = e->trips,
						    .since_ms = e->state == BACKEND_HEALTHY ? 0 : now - e->failed_at_ms };
		fn(arg, &info);
	}
	pthread_mutex_unlock(&h->lock);
}
