/* vcache_local.c - the bounded local layer of a network verdict store: slots indexed by an FNV
 * hash of the key, each holding one malloc'd entry (a collision replaces it: the table never
 * grows), under 64 striped mutexes. */
#include "vcache_local.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define LOCAL_STRIPES 64

struct local_entry {
	struct vcache_entry e;
	uint64_t fresh_until;
	char key[];
};

struct vcache_local {
	struct local_entry **slots;
	size_t nslots;
	pthread_mutex_t locks[LOCAL_STRIPES];
	atomic_ulong held, fresh_hits, stale_hits, misses, replaced;
};

static size_t local_slot(const struct vcache_local *l, const char *key)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ULL;
	return (size_t)(h % l->nslots);
}

static pthread_mutex_t *local_lock(struct vcache_local *l, size_t slot)
{
	return &l->locks[slot % LOCAL_STRIPES];
}

struct vcache_local *vcache_local_new(size_t slots)
{
	struct vcache_local *l = xcalloc(1, sizeof *l);
	l->nslots = slots < 64 ? 64 : slots;
	l->slots = xcalloc(l->nslots, sizeof *l->slots);
	for (size_t i = 0; i < LOCAL_STRIPES; i++)
		pthread_mutex_init(&l->locks[i], NULL);
	return l;
}

void vcache_local_free(struct vcache_local *l)
{
	if (l == NULL)
		return;
	vcache_local_purge(l, NULL, "");
	for (size_t i = 0; i < LOCAL_STRIPES; i++)
		pthread_mutex_destroy(&l->locks[i]);
	free(l->slots);
	free(l);
}

int vcache_local_get(struct vcache_local *l, const char *key, uint64_t now, struct vcache_entry *e, bool *fresh)
{
	size_t i = local_slot(l, key);
	int found = 0;

	pthread_mutex_lock(local_lock(l, i));
	struct local_entry *x = l->slots[i];
	if (x && strcmp(x->key, key) == 0 && !vcache_expired(&x->e, now)) {
		*e = x->e;
		*fresh = now < x->fresh_until;
		found = 1;
	}
	pthread_mutex_unlock(local_lock(l, i));
	atomic_fetch_add(!found ? &l->misses : *fresh ? &l->fresh_hits : &l->stale_hits, 1);
	return found;
}

void vcache_local_put(struct vcache_local *l, const char *key, const struct vcache_entry *e, uint64_t fresh_until)
{
	size_t i = local_slot(l, key), klen = strlen(key);
	struct local_entry *x = xmalloc(sizeof *x + klen + 1), *old;

	x->e = *e;
	x->fresh_until = fresh_until;
	memcpy(x->key, key, klen + 1);
	pthread_mutex_lock(local_lock(l, i));
	old = l->slots[i];
	l->slots[i] = x;
	pthread_mutex_unlock(local_lock(l, i));
	if (old == NULL)
		atomic_fetch_add(&l->held, 1);
	else if (strcmp(old->key, key) != 0)
		atomic_fetch_add(&l->replaced, 1);
	free(old);
}

void vcache_local_del(struct vcache_local *l, const char *key)
{
	size_t i = local_slot(l, key);
	struct local_entry *x = NULL;

	pthread_mutex_lock(local_lock(l, i));
	if (l->slots[i] && strcmp(l->slots[i]->key, key) == 0) {
		x = l->slots[i];
		l->slots[i] = NULL;
	}
	pthread_mutex_unlock(local_lock(l, i));
	if (x)
		atomic_fetch_sub(&l->held, 1);
	free(x);
}

long vcache_local_purge(struct vcache_local *l, const char *pattern, const char *delims)
{
	long removed = 0;

	for (size_t i = 0; i < l->nslots; i++) {
		struct local_entry *x = NULL;
		pthread_mutex_lock(local_lock(l, i));
		if (l->slots[i] && (pattern == NULL || vcache_key_matches(l->slots[i]->key, pattern, delims))) {
			x = l->slots[i];
			l->slots[i] = NULL;
		}
		pthread_mutex_unlock(local_lock(l, i));
		if (x) {
			free(x);
			removed++;
			atomic_fetch_sub(&l->held, 1);
		}
	}
	return removed;
}

void vcache_local_stats(struct vcache_local *l, FILE *out)
{
	fprintf(out, "local_entries=%lu\nlocal_slots=%zu\nlocal_fresh_hits=%lu\nlocal_stale_hits=%lu\nlocal_misses=%lu\n"
		"local_replaced=%lu\n", atomic_load(&l->held), l->nslots, atomic_load(&l->fresh_hits),
		atomic_load(&l->stale_hits), atomic_load(&l->misses), atomic_load(&l->replaced));
}
