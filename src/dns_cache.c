/* dns_cache.c - a hash table of answers keyed by (type, name in lower case), chained, with a
 * least-recently-used list for the bound; expiry is checked when an entry is found. One mutex
 * guards it all: a hit costs one hash and one short critical section. */
#include "dns_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct entry {
	struct entry *chain;          /* next in the bucket */
	struct entry *prev, *next;    /* LRU: head is the most recently used */
	uint32_t hash;
	enum dns_type type;
	uint64_t expires_ms;
	struct dns_answer *answer;    /* one reference */
	char name[];
};

struct dns_cache {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t nbuckets;              /* a power of two */
	struct entry *head, *tail;
	size_t max, n;
	struct dns_cache_stats st;
};

static uint32_t key_hash(const char *name, size_t len, enum dns_type type)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		h ^= c >= 'A' && c <= 'Z' ? c + 32u : c;
		h *= 16777619u;
	}
	return h;
}

/* The name without trailing dots: its length. */
static size_t key_len(const char *name)
{
	size_t len = strlen(name);
	while (len > 0 && name[len - 1] == '.')
		len--;
	return len;
}

struct dns_cache *dns_cache_new(size_t max_entries)
{
	struct dns_cache *c = xcalloc(1, sizeof *c);

	pthread_mutex_init(&c->lock, NULL);
	c->max = max_entries ? max_entries : 1;
	c->nbuckets = 64;
	while (c->nbuckets < c->max)
		c->nbuckets <<= 1;
	c->buckets = xcalloc(c->nbuckets, sizeof *c->buckets);
	return c;
}

static void lru_unlink(struct dns_cache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct dns_cache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static void entry_remove(struct dns_cache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	lru_unlink(c, e);
	dns_answer_unref(e->answer);
	free(e);
	c->n--;
}

static struct entry *entry_find(struct dns_cache *c, const char *name, size_t len, enum dns_type type, uint32_t h)
{
	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->chain)
		if (e->hash == h && e->type == type && ascii_casecmp_n(e->name, strlen(e->name), name, len) == 0)
			return e;
	return NULL;
}

struct dns_answer *dns_cache_get(struct dns_cache *c, const char *name, enum dns_type type, uint64_t now)
{
	size_t len = key_len(name);
	uint32_t h = key_hash(name, len, type);
	struct dns_answer *a = NULL;

	pthread_mutex_lock(&c->lock);
	struct entry *e = entry_find(c, name, len, type, h);
	if (e != NULL && e->expires_ms <= now) {
		entry_remove(c, e);
		c->st.expired++;
		e = NULL;
	}
	if (e != NULL) {
		lru_unlink(c, e);
		lru_push(c, e);
		a = dns_answer_ref(e->answer);
		c->st.hits++;
	} else {
		c->st.misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return a;
}

void dns_cache_put(struct dns_cache *c, const char *name, struct dns_answer *a, uint64_t now)
{
	if (a->ttl == 0 || a->result == DNS_RESULT_TEMPFAIL)
		return;
	size_t len = key_len(name);
	uint32_t h = key_hash(name, len, a->type);
	struct entry *e = xmalloc(sizeof *e + len + 1);

	memcpy(e->name, name, len);
	e->name[len] = '\0';
	e->hash = h;
	e->type = a->type;
	e->expires_ms = now + (uint64_t)a->ttl * 1000;
	e->answer = dns_answer_ref(a);
	pthread_mutex_lock(&c->lock);
	struct entry *old = entry_find(c, name, len, a->type, h);
	if (old != NULL)
		entry_remove(c, old);
	while (c->n >= c->max && c->tail != NULL) {
		entry_remove(c, c->tail);
		c->st.evictions++;
	}
	e->chain = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	lru_push(c, e);
	c->n++;
	c->st.inserts++;
	pthread_mutex_unlock(&c->lock);
}

void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->st;
	out->entries = c->n;
	pthread_mutex_unlock(&c->lock);
}

void dns_cache_clear(struct dns_cache *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->head != NULL)
		entry_remove(c, c->head);
	pthread_mutex_unlock(&c->lock);
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	dns_cache_clear(c);
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}
