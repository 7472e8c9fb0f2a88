/* vcache_memory.c - the memory: verdict store: a chained hash table under one mutex, bounded
 * in entries ("memory:N", else cache_max_size / 256), entries in a list by age so that a full
 * table drops expired entries first, then the oldest. Lost on restart: for tests and for
 * single-process setups that do not want a file. */
#include "vcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct mem_entry {
	struct mem_entry *next_hash;
	struct mem_entry *older, *newer; /* age list */
	struct vcache_entry e;
	char key[];
};

struct mem_store {
	pthread_mutex_t lock;
	struct mem_entry **buckets;
	size_t nbuckets, n, max;
	struct mem_entry *oldest, *newest;
	unsigned long hits, misses, puts, evicted;
};

static size_t mem_hash(const struct mem_store *m, const char *key)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ULL;
	return (size_t)(h % m->nbuckets);
}

static struct mem_entry **mem_find(struct mem_store *m, const char *key)
{
	struct mem_entry **pp = &m->buckets[mem_hash(m, key)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next_hash;
	return pp;
}

static void mem_unlink(struct mem_store *m, struct mem_entry *x)
{
	struct mem_entry **pp = mem_find(m, x->key);
	*pp = x->next_hash;
	if (x->older)
		x->older->newer = x->newer;
	else
		m->oldest = x->newer;
	if (x->newer)
		x->newer->older = x->older;
	else
		m->newest = x->older;
	m->n--;
	free(x);
}

/* The config takes memory: alone; memory:N (a number of entries) is for tests. */
static int vcache_memory_check_spec(const char *arg, const char **why)
{
	if (arg[0] != '\0') {
		*why = "memory: takes nothing after the colon";
		return -1;
	}
	return 0;
}

static void *vcache_memory_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	struct mem_store *m = xcalloc(1, sizeof *m);
	char *end = NULL;
	unsigned long long max = arg[0] ? strtoull(arg, &end, 10) : 0;

	if (arg[0] && (*end != '\0' || max == 0)) {
		snprintf(why, whysz, "cache memory:%s: the argument is a number of entries", arg);
		free(m);
		return NULL;
	}
	if (max == 0)
		max = cfg && cfg->cache_max_size ? cfg->cache_max_size / 256 : 100000;
	m->max = max < 16 ? 16 : (size_t)max;
	m->nbuckets = m->max < (1u << 20) ? m->max : (1u << 20);
	m->buckets = xcalloc(m->nbuckets, sizeof *m->buckets);
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

static struct vcache_query *vcache_memory_get(void *state, struct event_base *base, const char *key,
					      vcache_get_cb cb, void *arg)
{
	struct mem_store *m = state;
	struct vcache_entry e;

	pthread_mutex_lock(&m->lock);
	struct mem_entry *x = *mem_find(m, key);
	bool found = x && !vcache_expired(&x->e, vcache_now());
	if (found)
		e = x->e, m->hits++;
	else
		m->misses++;
	pthread_mutex_unlock(&m->lock);
	cb(arg, found, found ? &e : NULL);
	return NULL;
}

static void vcache_memory_cancel(struct vcache_query *q) { (void)q; }

/* Make room for one entry: expired ones first, then the oldest. Under the lock. */
static void mem_make_room(struct mem_store *m)
{
	uint64_t now = vcache_now();

	/* expired entries among the oldest few first; never a walk of the whole table under the
	 * lock every worker's get takes */
	unsigned looked = 0;
	for (struct mem_entry *x = m->oldest, *nx; x && m->n >= m->max && looked < 32; x = nx, looked++) {
		nx = x->newer;
		if (vcache_expired(&x->e, now))
			mem_unlink(m, x), m->evicted++;
	}
	while (m->n >= m->max && m->oldest)
		mem_unlink(m, m->oldest), m->evicted++;
}

static void vcache_memory_put(void *state, const char *key, const struct vcache_entry *e)
{
	struct mem_store *m = state;
	size_t klen = strlen(key);
	struct mem_entry *x = xcalloc(1, sizeof *x + klen + 1);

	memcpy(x->key, key, klen + 1);
	x->e = *e;
	pthread_mutex_lock(&m->lock);
	struct mem_entry *old = *mem_find(m, key);
	if (old)
		mem_unlink(m, old);
	mem_make_room(m);
	struct mem_entry **pp = mem_find(m, key);
	*pp = x;
	x->older = m->newest;
	if (m->newest)
		m->newest->newer = x;
	else
		m->oldest = x;
	m->newest = x;
	m->n++;
	m->puts++;
	pthread_mutex_unlock(&m->lock);
}

static long vcache_memory_purge(void *state, const char *pattern, const char *delims)
{
	struct mem_store *m = state;
	long removed = 0;

	pthread_mutex_lock(&m->lock);
	for (struct mem_entry *x = m->oldest, *nx; x; x = nx) {
		nx = x->newer;
		if (vcache_key_matches(x->key, pattern, delims))
			mem_unlink(m, x), removed++;
	}
	pthread_mutex_unlock(&m->lock);
	return removed;
}

static int vcache_memory_flush(void *state)
{
	struct mem_store *m = state;

	pthread_mutex_lock(&m->lock);
	while (m->oldest)
		mem_unlink(m, m->oldest);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void vcache_memory_stats(void *state, FILE *out)
{
	struct mem_store *m = state;

	pthread_mutex_lock(&m->lock);
	fprintf(out, "entries=%zu\nmax_entries=%zu\nhits=%lu\nmisses=%lu\nputs=%lu\nevicted=%lu\n",
		m->n, m->max, m->hits, m->misses, m->puts, m->evicted);
	pthread_mutex_unlock(&m->lock);
}

static void vcache_memory_close(void *state)
{
	struct mem_store *m = state;

	vcache_memory_flush(m);
	pthread_mutex_destroy(&m->lock);
	free(m->buckets);
	free(m);
}

const struct vcache_store_type vcache_memory_type = {
	.prefix = "memory",
	.syntax = "memory:",
	.check_spec = vcache_memory_check_spec,
	.open = vcache_memory_open,
	.get = vcache_memory_get,
	.cancel = vcache_memory_cancel,
	.put = vcache_memory_put,
	.purge = vcache_memory_purge,
	.flush = vcache_memory_flush,
	.sync = NULL,
	.stats = vcache_memory_stats,
	.close = vcache_memory_close,
};
