/* connlimit.c - total and per-IP connection counts. The per-IP table is an open-addressing
 * hash of 16-byte addresses (IPv4 mapped into IPv6) guarded by one mutex: an accept takes it
 * for a few hundred nanoseconds, which is nothing beside the accept itself. */
#include "connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct connlimit_slot {
	unsigned char addr[16];
	uint32_t count; /* 0 = empty */
	bool tomb;      /* deleted: keeps probe chains intact */
};

struct connlimit {
	pthread_mutex_t lock;
	uint64_t total;
	uint64_t admitted, refused; /* since start: connections let in, turned away by a limit */
	struct connlimit_slot *slots;
	size_t cap;   /* power of two */
	size_t used;  /* live + tombstones */
};

struct connlimit *connlimit_new(void)
{
	struct connlimit *cl = xcalloc(1, sizeof *cl);
	pthread_mutex_init(&cl->lock, NULL);
	cl->cap = 1024;
	cl->slots = xcalloc(cl->cap, sizeof *cl->slots);
	return cl;
}

void connlimit_free(struct connlimit *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_destroy(&cl->lock);
	free(cl->slots);
	free(cl);
}

static void connlimit_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	} else if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	}
}

static size_t connlimit_hash(const unsigned char key[16])
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

/* Find the slot for key; with insert, the first free slot on its chain if absent. */
static struct connlimit_slot *connlimit_find(struct connlimit *cl, const unsigned char key[16], bool insert)
{
	struct connlimit_slot *free_slot = NULL;
	for (size_t i = connlimit_hash(key) & (cl->cap - 1), n = 0; n < cl->cap; n++, i = (i + 1) & (cl->cap - 1)) {
		struct connlimit_slot *s = &cl->slots[i];
		if (s->count == 0 && !s->tomb)
			return insert ? (free_slot ? free_slot : s) : NULL;
		if (s->count == 0 && free_slot == NULL)
			free_slot = s;
		if (s->count && memcmp(s->addr, key, 16) == 0)
			return s;
	}
	return insert ? free_slot : NULL;
}

static void connlimit_grow(struct connlimit *cl)
{
	struct connlimit_slot *old = cl->slots;
	size_t oldcap = cl->cap;
	if (cl->used * 2 < cl->cap)
		return;
	/* rehash (dropping tombstones) into a table where live entries fill under a quarter */
	size_t live = 0;
	for (size_t i = 0; i < oldcap; i++)
		live += old[i].count != 0;
	cl->cap = 1024;
	while (live * 4 >= cl->cap)
		cl->cap *= 2;
	cl->slots = xcalloc(cl->cap, sizeof *cl->slots);
	cl->used = 0;
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].count == 0)
			continue;
		struct connlimit_slot *s = connlimit_find(cl, old[i].addr, true);
		*s = old[i];
		cl->used++;
	}
	free(old);
}

enum connlimit_result connlimit_acquire(struct connlimit *cl, const struct sockaddr *sa,
					uint64_t max_total, uint64_t max_per_ip)
{
	unsigned char key[16];
	enum connlimit_result r = CONNLIMIT_OK;

	connlimit_key(sa, key);
	pthread_mutex_lock(&cl->lock);
	if (cl->total >= max_total) {
		r = CONNLIMIT_TOTAL;
		goto out;
	}
	connlimit_grow(cl);
	struct connlimit_slot *s = connlimit_find(cl, key, true);
	if (s->count >= max_per_ip) {
		r = CONNLIMIT_PER_IP;
		goto out;
	}
	if (s->count == 0) {
		if (!s->tomb)
			cl->used++;
		memcpy(s->addr, key, 16);
		s->tomb = false;
	}
	s->count++;
	cl->total++;
out:
	if (r == CONNLIMIT_OK)
		cl->admitted++;
	else
		cl->refused++;
	pthread_mutex_unlock(&cl->lock);
	return r;
}

void connlimit_release(struct connlimit *cl, const struct sockaddr *sa)
{
	unsigned char key[16];

	connlimit_key(sa, key);
	pthread_mutex_lock(&cl->lock);
	struct connlimit_slot *s = connlimit_find(cl, key, false);
	if (s != NULL) {
		if (--s->count == 0)
			s->tomb = true;
		cl->total--;
	}
	pthread_mutex_unlock(&cl->lock);
}

uint64_t connlimit_total(struct connlimit *cl)
{
	pthread_mutex_lock(&cl->lock);
	uint64_t t = cl->total;
	pthread_mutex_unlock(&cl->lock);
	return t;
}

void connlimit_counts(struct connlimit *cl, uint64_t *open, uint64_t *admitted, uint64_t *refused)
{
	pthread_mutex_lock(&cl->lock);
	*open = cl->total;
	*admitted = cl->admitted;
	*refused = cl->refused;
	pthread_mutex_unlock(&cl->lock);
}
