/* backend_slots.h - a cap on the connections backstop holds open to each backend (key
 * "host:port"), counted across all workers (deliver_max_connections). A connection takes a slot
 * before it is opened and gives it back when it is closed; an idle pooled connection keeps its
 * slot. A transaction that finds every slot taken waits in line: a slot given back goes straight
 * to the oldest waiter, whose event is made active on its own loop (safe across threads:
 * evthread_use_pthreads() is on). Nothing blocks but the table's mutex. Thread-safe. */
#ifndef BACKSTOP_BACKEND_SLOTS_H
#define BACKSTOP_BACKEND_SLOTS_H

#include <stdbool.h>

#include <event2/event.h>

#define BACKEND_SLOT_KEY_MAX 300

/* One waiter, owned by the caller (embedded in its struct); linked into the table while it
 * waits. Fields are the table's: set them only through backend_slots_wait. */
struct backend_slot_wait {
	struct event *wake;            /* made active (EV_TIMEOUT) when a slot was granted */
	struct backend_slot_wait *next;
	bool queued;                   /* in the table's line */
	bool granted;                  /* a slot is held for the waiter */
	char key[BACKEND_SLOT_KEY_MAX];
};

struct backend_slots;

struct backend_slots *backend_slots_new(void);
void backend_slots_free(struct backend_slots *s); /* after every slot and waiter is gone */

/* Take a slot of key if fewer than max are taken and nobody waits (max 0: no cap). */
bool backend_slots_take(struct backend_slots *s, const char *key, unsigned max);

/* Give a slot of key back. The oldest waiter gets it (if the cap, as last given to take or
 * wait, allows) and its wake event is activated. */
void backend_slots_give(struct backend_slots *s, const char *key);

/* Queue w for a slot of key; wake (the caller's event) is activated when one is granted. */
void backend_slots_wait(struct backend_slots *s, const char *key, unsigned max,
			struct backend_slot_wait *w, struct event *wake);

/* Leave the line (a waiter that timed out or went away, or was woken). true: a slot had been
 * granted and now belongs to the caller, who gives it back when done. Idempotent. */
bool backend_slots_cancel(struct backend_slots *s, struct backend_slot_wait *w);

/* Does a transaction wait for a slot of key? (Idle pooled connections then give theirs up.) */
bool backend_slots_wanted(struct backend_slots *s, const char *key);

/* Slots of key taken now (for logs and tests). */
unsigned backend_slots_in_use(struct backend_slots *s, const char *key);
/* Call fn for every backend the table knows (under the table's mutex: fn only copies). */
void backend_slots_each(struct backend_slots *s, void (*fn)(void *arg, const char *key, unsigned in_use, unsigned waiting),
			void *arg);

#endif
