/* relay_pool.h - idle backend sessions kept by a worker between client sessions, so that the
 * next client session to the same backend (with the same TLS policy) skips connect, banner and
 * EHLO. One pool per worker loop: no locking. A pooled session that the backend closed is
 * noticed when taken (or swept), never handed out. A pooled session keeps its connection slot
 * (backend_slots.h); when a transaction anywhere waits for a slot of that backend, the session
 * is closed (at the next sweep, within a second) and its slot goes to the waiter. */
#ifndef BACKSTOP_RELAY_POOL_H
#define BACKSTOP_RELAY_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>

#include "backend_slots.h"
#include "smtp_client.h"

#define RELAY_POOL_PER_KEY 16
#define RELAY_POOL_MAX 256

struct relay_pool;

struct relay_pool *relay_pool_new(struct event_base *base);
void relay_pool_free(struct relay_pool *p); /* QUITs and frees what it holds */
/* The worker is stopping: QUIT what the pool holds now, and every session put later at once. */
void relay_pool_close(struct relay_pool *p);

/* Keep c (usable, no transaction open) under key for idle_ms; takes ownership, and of the
 * connection slot of target in slots (NULL: none held), given back when c is closed. When the
 * pool is full for that key or overall, the oldest entry is closed; when a transaction waits for
 * a slot of target, c is closed at once. */
void relay_pool_put(struct relay_pool *p, const char *key, struct smtp_client *c, uint64_t idle_ms,
		    struct backend_slots *slots, const char *target);

/* A usable idle session for key, now owned by the caller with its connection slot, or NULL. */
struct smtp_client *relay_pool_take(struct relay_pool *p, const char *key);
/* Keep *gauge equal to the number of idle sessions held (relaxed stores; read from any thread). */
void relay_pool_set_gauge(struct relay_pool *p, atomic_ulong *gauge);

#endif
