/* budget_memory.c - the in-memory budget store (budget_store.h): one table for the process, under
 * one lock, at most max_entries keys (the least recently counted is evicted for a new one). A
 * key's window is kept as BUDGET_SLOTS counters of a sixteenth of the window each: an event
 * counts for at least the window and at most a sixteenth longer, in constant memory per key. */
#include "budget_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define BUDGET_SLICES 16                 /* the window in slices */
#define BUDGET_SLOTS (BUDGET_SLICES + 1) /* and the slice being filled */

struct bentry {
	struct bentry *hnext;            /* hash chain */
	struct bentry *older, *newer;    /* by last add */
	uint64_t slot_ms;                /* width of a slot (window / 16) */
	uint64_t newest;                 /* index (time / slot_ms) of the newest slot */
	uint64_t penalty_until_ms;
	uint32_t slots[BUDGET_SLOTS];    /* slot of index i at i % BUDGET_SLOTS */
	char key[BUDGET_KEY_MAX];
};

struct budget_memory {
	pthread_mutex_t lock;
	struct bentry **table;
	size_t tsize;                    /* a power of two */
	size_t n, max;
	struct bentry *oldest, *newest;  /* by last add */
	unsigned long adds, trips, evictions;
};

static uint64_t bm_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ULL;
	return h;
}

static struct bentry **bm_slot(struct budget_memory *m, const char *key)
{
	struct bentry **pp = &m->table[bm_hash(key) & (m->tsize - 1)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void bm_lru_unlink(struct budget_memory *m, struct bentry *e)
{
	if (e->older)
		e->older->newer = e->newer;
	else
		m->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		m->newest = e->older;
	e->older = e->newer = NULL;
}

static void bm_lru_push(struct budget_memory *m, struct bentry *e)
{
	e->older = m->newest;
	e->newer = NULL;
	if (m->newest)
		m->newest->newer = e;
	else
		m->oldest = e;
	m->newest = e;
}

/* Bring e's slots to now under a window of window_ms. A window changed by a reload keeps what
 * was counted, all in the newest slot (never forgiving an event early). */
static void bm_advance(struct bentry *e, uint64_t window_ms, uint64_t now)
{
	uint64_t slot_ms = window_ms / BUDGET_SLICES ? window_ms / BUDGET_SLICES : 1;
	uint64_t idx = now / slot_ms;

	if (e->slot_ms != slot_ms) {
		uint64_t total = 0;
		for (size_t i = 0; i < BUDGET_SLOTS; i++)
			total += e->slots[i];
		memset(e->slots, 0, sizeof e->slots);
		e->slots[idx % BUDGET_SLOTS] = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
		e->slot_ms = slot_ms;
		e->newest = idx;
		return;
	}
	if (idx <= e->newest) /* the same slot, or a clock that went back */
		return;
	if (idx - e->newest >= BUDGET_SLOTS) {
		memset(e->slots, 0, sizeof e->slots);
	} else {
		for (uint64_t i = e->newest + 1; i <= idx; i++)
			e->slots[i % BUDGET_SLOTS] = 0;
	}
	e->newest = idx;
}

static uint32_t bm_count(const struct bentry *e)
{
	uint64_t total = 0;
	for (size_t i = 0; i < BUDGET_SLOTS; i++)
		total += e->slots[i];
	return total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
}

/* A new entry for key: a fresh one, or the least recently counted one, evicted. */
static struct bentry *bm_create(struct budget_memory *m, const char *key)
{
	struct bentry *e;

	if (m->n >= m->max && m->oldest != NULL) {
		e = m->oldest;
		bm_lru_unlink(m, e);
		struct bentry **pp = bm_slot(m, e->key);
		*pp = e->hnext;
		m->evictions++;
	} else {
		e = xmalloc(sizeof *e);
		m->n++;
	}
	memset(e, 0, sizeof *e);
	strbuf_append(e->key, sizeof e->key, key);
	struct bentry **head = &m->table[bm_hash(key) & (m->tsize - 1)];
	e->hnext = *head;
	*head = e;
	bm_lru_push(m, e);
	return e;
}

static void bm_state(struct bentry *e, const struct budget_rule *rule, uint64_t now, struct budget_state *st)
{
	bm_advance(e, rule->window_ms, now);
	st->count = bm_count(e);
	st->penalty_until_ms = e->penalty_until_ms > now ? e->penalty_until_ms : 0;
}

static struct budget_query *bm_get(void *state, struct event_base *base, const char *const *keys,
				   const struct budget_rule *rules, size_t n, uint64_t now, budget_cb cb, void *arg)
{
	struct budget_memory *m = state;
	struct budget_state st[BUDGET_KEYS_MAX];

	(void)base;
	memset(st, 0, sizeof st);
	n = n < BUDGET_KEYS_MAX ? n : BUDGET_KEYS_MAX;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct bentry *e = *bm_slot(m, keys[i]);
		if (e != NULL)
			bm_state(e, &rules[i], now, &st[i]);
	}
	pthread_mutex_unlock(&m->lock);
	cb(arg, st, n);
	return NULL;
}

static struct budget_query *bm_add(void *state, struct event_base *base, const char *const *keys,
				   const struct budget_rule *rules, size_t n, uint64_t now, budget_cb cb, void *arg)
{
	struct budget_memory *m = state;
	struct budget_state st[BUDGET_KEYS_MAX];

	(void)base;
	memset(st, 0, sizeof st);
	n = n < BUDGET_KEYS_MAX ? n : BUDGET_KEYS_MAX;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct bentry **pp = bm_slot(m, keys[i]);
		struct bentry *e = *pp ? *pp : bm_create(m, keys[i]);
		bm_advance(e, rules[i].window_ms, now);
		uint32_t before = bm_count(e);
		uint32_t *slot = &e->slots[e->newest % BUDGET_SLOTS];
		if (*slot < UINT32_MAX)
			(*slot)++;
		bm_lru_unlink(m, e);
		bm_lru_push(m, e);
		m->adds++;
		bm_state(e, &rules[i], now, &st[i]);
		if (rules[i].limit > 0 && before < rules[i].limit && st[i].count >= rules[i].limit) {
			st[i].tripped = true;
			m->trips++;
			if (rules[i].penalty_ms > 0 && e->penalty_until_ms <= now) {
				e->penalty_until_ms = now + rules[i].penalty_ms;
				st[i].penalty_until_ms = e->penalty_until_ms;
			}
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (cb)
		cb(arg, st, n);
	return NULL;
}

static void bm_stats(void *state, FILE *out)
{
	struct budget_memory *m = state;

	pthread_mutex_lock(&m->lock);
	fprintf(out, "budget_store=memory\nbudget_entries=%zu\nbudget_max_entries=%zu\nbudget_adds=%lu\n"
		     "budget_trips=%lu\nbudget_evictions=%lu\n", m->n, m->max, m->adds, m->trips, m->evictions);
	pthread_mutex_unlock(&m->lock);
}

static void bm_free(void *state)
{
	struct budget_memory *m = state;

	for (struct bentry *e = m->oldest, *next; e != NULL; e = next) {
		next = e->newer;
		free(e);
	}
	pthread_mutex_destroy(&m->lock);
	free(m->table);
	free(m);
}

static const struct budget_store_type budget_memory_type = {
	.name = "memory",
	.get = bm_get,
	.add = bm_add,
	.stats = bm_stats,
	.free = bm_free,
};

struct budget_store *budget_memory_new(size_t max_entries)
{
	struct budget_memory *m = xcalloc(1, sizeof *m);
	struct budget_store *st = xcalloc(1, sizeof *st);

	pthread_mutex_init(&m->lock, NULL);
	m->max = max_entries ? max_entries : 1;
	m->tsize = 64;
	while (m->tsize < m->max && m->tsize < (1u << 22))
		m->tsize <<= 1;
	m->table = xcalloc(m->tsize, sizeof *m->table);
	st->type = &budget_memory_type;
	st->state = m;
	return st;
}
