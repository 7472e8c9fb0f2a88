/* redis_loops.h - one Redis connection per event loop for a store that lives in Redis (the verdict
 * cache, the harvest budgets): found or made by the asking loop's thread, forgotten when its loop
 * ends. When one connection comes up again, the others try at once instead of waiting out their
 * backoff. Thread-safe; a connection itself belongs to its loop's thread (redis_conn.h). */
#ifndef BACKSTOP_REDIS_LOOPS_H
#define BACKSTOP_REDIS_LOOPS_H

#include "redis_conn.h"

struct redis_loops;

/* t must outlive the set. state_cb (thread: the connection's loop) hears every connection's ups
 * and downs. */
struct redis_loops *redis_loops_new(const struct redis_target *t, redis_state_cb state_cb, void *state_arg);
/* Frees the connections still there (their loops must still exist, or have forgotten them). */
void redis_loops_free(struct redis_loops *L);
/* base's connection, made (and started) on first use; call from base's thread. */
struct redis_conn *redis_loops_conn(struct redis_loops *L, struct event_base *base);
/* This thread's connection of L, if it has asked for one, else NULL (a caller without a loop of
 * its own at hand: the verdict cache's put). */
struct redis_conn *redis_loops_current(struct redis_loops *L);
/* Another connection of the store (a subscriber's) came up: the loops' connections that are down
 * try again at once. */
void redis_loops_up(struct redis_loops *L);
/* base is ending: free its connection. */
void redis_loops_forget(struct redis_loops *L, struct event_base *base);

#endif
