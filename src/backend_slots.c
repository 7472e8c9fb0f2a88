/* backend_slots.c - connection slots per backend (backend_slots.h): a small array of targets (a
 * gateway has a handful of backends) under one mutex, each with its count and a FIFO of waiters. */
#include "backend_slots.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct slot_entry {
	char key[BACKEND_SLOT_KEY_MAX];
	unsigned in_use;
	unsigned max;                  /* the cap last asked for (0: none) */
	struct backend_slot_wait *head, *tail;
};

struct backend_slots {
	pthread_mutex_t lock;
	struct slot_entry *entries;
	size_t n, cap;
};

struct backend_slots *backend_slots_new(void)
{
	struct backend_slots *s = xcalloc(1, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void backend_slots_free(struct backend_slots *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->entries);
	free(s);
}

static struct slot_entry *slots_find(struct backend_slots *s, const char *key, bool create)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->entries[i].key, key) == 0)
			return &s->entries[i];
	if (!create)
		return NULL;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->entries = xrealloc(s->entries, s->cap * sizeof *s->entries);
	}
	struct slot_entry *e = &s->entries[s->n++];
	memset(e, 0, sizeof *e);
	strbuf_copy(e->key, sizeof e->key, key, strnlen(key, sizeof e->key - 1));
	return e;
}

static bool slots_room(const struct slot_entry *e)
{
	return e->max == 0 || e->in_use < e->max;
}

/* Hand free slots to the oldest waiters. Called with the lock held. */
static void slots_grant(struct slot_entry *e)
{
	while (e->head != NULL && slots_room(e)) {
		struct backend_slot_wait *w = e->head;
		e->head = w->next;
		if (e->head == NULL)
			e->tail = NULL;
		w->next = NULL;
		w->queued = false;
		w->granted = true;
		e->in_use++;
		event_active(w->wake, EV_TIMEOUT, 0);
	}
}

bool backend_slots_take(struct backend_slots *s, const char *key, unsigned max)
{
	pthread_mutex_lock(&s->lock);
	struct slot_entry *e = slots_find(s, key, true);
	e->max = max;
	bool ok = e->head == NULL && slots_room(e);
	if (ok)
		e->in_use++;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void backend_slots_give(struct backend_slots *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	struct slot_entry *e = slots_find(s, key, false);
	if (e != NULL && e->in_use > 0) {
		e->in_use--;
		slots_grant(e);
	}
	pthread_mutex_unlock(&s->lock);
}

void backend_slots_wait(struct backend_slots *s, const char *key, unsigned max,
			struct backend_slot_wait *w, struct event *wake)
{
	pthread_mutex_lock(&s->lock);
	struct slot_entry *e = slots_find(s, key, true);
	e->max = max;
	strbuf_copy(w->key, sizeof w->key, key, strnlen(key, sizeof w->key - 1));
	w->wake = wake;
	w->next = NULL;
	w->granted = false;
	w->queued = true;
	if (e->tail)
		e->tail->next = w;
	else
		e->head = w;
	e->tail = w;
	slots_grant(e); /* a slot may have come free since take() said no */
	pthread_mutex_unlock(&s->lock);
}

bool backend_slots_cancel(struct backend_slots *s, struct backend_slot_wait *w)
{
	pthread_mutex_lock(&s->lock);
	bool granted = w->granted;
	w->granted = false;
	struct slot_entry *e = w->queued ? slots_find(s, w->key, false) : NULL;
	if (e != NULL) {
		struct backend_slot_wait **pp = &e->head, *prev = NULL;
		while (*pp != NULL && *pp != w) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp == w) {
			*pp = w->next;
			if (e->tail == w)
				e->tail = prev;
		}
	}
	w->queued = false;
	w->next = NULL;
	pthread_mutex_unlock(&s->lock);
	return granted;
}

bool backend_slots_wanted(struct backend_slots *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	struct slot_entry *e = slots_find(s, key, false);
	bool wanted = e != NULL && e->head != NULL;
	pthread_mutex_unlock(&s->lock);
	return wanted;
}

unsigned backend_slots_in_use(struct backend_slots *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	struct slot_entry *e = slots_find(s, key, false);
	unsigned n = e ? e->in_use : 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void backend_slots_each(struct backend_slots *s, void (*fn)(void *arg, const char *key, unsigned in_use, unsigned waiting),
			void *arg)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		unsigned waiting = 0;
		for (const struct backend_slot_wait *w = s->entries[i].head; w != NULL; w = w->next)
			waiting++;
		fn(arg, s->entries[i].key, s->entries[i].in_use, waiting);
	}
	pthread_mutex_unlock(&s->lock);
}
