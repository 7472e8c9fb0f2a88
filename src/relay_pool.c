/* relay_pool.c - the per-worker pool of idle backend sessions (relay_pool.h): a small array
 * scanned linearly (a gateway has a handful of backends), swept once a second while non-empty. */
#include "relay_pool.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define POOL_KEY_MAX 600

struct pool_entry {
	char key[POOL_KEY_MAX];
	struct smtp_client *client;
	uint64_t expires_ms;
	struct backend_slots *slots;   /* the connection slot it holds, or NULL */
	char target[BACKEND_SLOT_KEY_MAX];
};

struct relay_pool {
	struct event *sweep;
	struct pool_entry items[RELAY_POOL_MAX];
	size_t n;
	bool closed;
	atomic_ulong *gauge;           /* p->n for readers on other threads, or NULL */
};

static void pool_count(struct relay_pool *p)
{
	if (p->gauge != NULL)
		atomic_store_explicit(p->gauge, p->n, memory_order_relaxed);
}

void relay_pool_set_gauge(struct relay_pool *p, atomic_ulong *gauge)
{
	p->gauge = gauge;
	pool_count(p);
}

/* Drop entry i: closed (its slot given back) when closing, else handed to the caller. */
static void pool_remove(struct relay_pool *p, size_t i, bool closing)
{
	struct pool_entry *e = &p->items[i];
	if (closing) {
		smtp_client_free(e->client, smtp_client_usable(e->client));
		if (e->slots)
			backend_slots_give(e->slots, e->target);
	}
	*e = p->items[--p->n];
	pool_count(p);
}

/* Does a transaction wait for the slot entry i holds? */
static bool pool_slot_wanted(const struct relay_pool *p, size_t i)
{
	const struct pool_entry *e = &p->items[i];
	return e->slots != NULL && backend_slots_wanted(e->slots, e->target);
}

static void pool_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_pool *p = arg;
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	for (size_t i = 0; i < p->n;) {
		if (now >= p->items[i].expires_ms || !smtp_client_usable(p->items[i].client) ||
		    pool_slot_wanted(p, i))
			pool_remove(p, i, true);
		else
			i++;
	}
	if (p->n == 0)
		evtimer_del(p->sweep);
}

struct relay_pool *relay_pool_new(struct event_base *base)
{
	struct relay_pool *p = xcalloc(1, sizeof *p);
	p->sweep = event_new(base, -1, EV_PERSIST, pool_sweep_cb, p);
	return p;
}

void relay_pool_close(struct relay_pool *p)
{
	while (p->n > 0)
		pool_remove(p, p->n - 1, true);
	evtimer_del(p->sweep);
	p->closed = true;
}

void relay_pool_free(struct relay_pool *p)
{
	if (p == NULL)
		return;
	relay_pool_close(p);
	event_free(p->sweep);
	free(p);
}

/* Index of the oldest entry (with key, or any when key is NULL); p->n if none. */
static size_t pool_oldest(const struct relay_pool *p, const char *key, size_t *count)
{
	size_t best = p->n;
	*count = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (key != NULL && strcmp(p->items[i].key, key) != 0)
			continue;
		(*count)++;
		if (best == p->n || p->items[i].expires_ms < p->items[best].expires_ms)
			best = i;
	}
	return best;
}

void relay_pool_put(struct relay_pool *p, const char *key, struct smtp_client *c, uint64_t idle_ms,
		    struct backend_slots *slots, const char *target)
{
	static const struct timeval second = { 1, 0 };
	size_t count;

	if (p->closed || strlen(key) >= POOL_KEY_MAX || (slots && backend_slots_wanted(slots, target))) {
		smtp_client_free(c, true);
		if (slots)
			backend_slots_give(slots, target);
		return;
	}
	size_t old = pool_oldest(p, key, &count);
	if (count >= RELAY_POOL_PER_KEY)
		pool_remove(p, old, true);
	else if (p->n == RELAY_POOL_MAX)
		pool_remove(p, pool_oldest(p, NULL, &count), true);
	struct pool_entry *e = &p->items[p->n++];
	memcpy(e->key, key, strlen(key) + 1);
	e->client = c;
	e->expires_ms = now_ms() + idle_ms;
	e->slots = slots;
	if (slots)
		strbuf_copy(e->target, sizeof e->target, target, strnlen(target, sizeof e->target - 1));
	pool_count(p);
	if (!evtimer_pending(p->sweep, NULL))
		evtimer_add(p->sweep, &second);
}

struct smtp_client *relay_pool_take(struct relay_pool *p, const char *key)
{
	for (size_t i = p->n; i-- > 0;) {
		if (strcmp(p->items[i].key, key) != 0)
			continue;
		struct smtp_client *c = p->items[i].client;
		bool ok = smtp_client_usable(c);
		pool_remove(p, i, !ok);
		if (ok)
			return c;
	}
	return NULL;
}
