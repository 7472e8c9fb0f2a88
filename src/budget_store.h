/* budget_store.h - counters of events per key over a sliding window, with a penalty once a key
 * reaches its limit: what the harvest defence (check_harvest.c) keeps per client address and per
 * client network. A store is an interface (struct budget_store_type: get, add, cancel, stats,
 * free) so that the counters can live in this process (budget_memory.c) or be shared by several
 * gateways (budget_redis.c, when the cache is Redis) with the same semantics:
 *   - a key's count is the number of events added within its rule's window (an event counts for
 *     at least the window and at most a sixteenth of it longer: budget_memory.c's slots);
 *   - an add that brings the count to the rule's limit starts a penalty of the rule's penalty
 *     time, unless one is already running; it "tripped" the key;
 *   - a key is over budget while its count is at or above the limit or its penalty runs.
 * Times are milliseconds on a clock given by the caller (now_ms(); tests pass their own; the
 * Redis store counts on the wall clock, which all gateways share, and answers on the caller's).
 * A shared store also counts rates per second for all gateways (take: callout_max_rate).
 *
 * Threads: a store is shared by every worker (thread-safe) and outlives configuration generations
 * (the server owns it, like engine_stats): budgets survive SIGHUP. Calls follow check.h's rule:
 * the callback comes from inside the call (returns NULL: the memory store) or later from base's
 * loop (returns a handle for budget_store_cancel). */
#ifndef BACKSTOP_BUDGET_STORE_H
#define BACKSTOP_BUDGET_STORE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <event2/event.h>

struct bs_config;

#define BUDGET_KEY_MAX 64  /* "a:" or "n:" and an address or a network, NUL included */
#define BUDGET_KEYS_MAX 4  /* keys per call */

/* What a key may do: limit events per window_ms; reaching it starts penalty_ms. */
struct budget_rule {
	uint32_t limit;        /* 0: no budget (the key is never over) */
	uint64_t window_ms;
	uint64_t penalty_ms;   /* 0: over budget only while the count is */
};

/* A key as the store saw it. */
struct budget_state {
	uint32_t count;            /* events within the window */
	uint64_t penalty_until_ms; /* end of the running penalty, 0 if none */
	bool tripped;              /* add: this event brought the count to the limit */
};

/* states[i] answers keys[i]; valid only during the call. */
typedef void (*budget_cb)(void *arg, const struct budget_state *states, size_t n);
/* take: granted of the n events asked fit in the rate (0..n). */
typedef void (*budget_take_cb)(void *arg, unsigned granted);

struct budget_query; /* an outstanding call, defined by each store */

struct budget_store_type {
	const char *name; /* "memory" */
	/* The state of n keys (n <= BUDGET_KEYS_MAX), nothing counted. */
	struct budget_query *(*get)(void *state, struct event_base *base, const char *const *keys,
				    const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				    void *arg);
	/* Count one event for each of n keys under rules[i]; cb (may be NULL) gets the new states. */
	struct budget_query *(*add)(void *state, struct event_base *base, const char *const *keys,
				    const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				    void *arg);
	void (*cancel)(struct budget_query *q); /* no callback after this */
	void (*stats)(void *state, FILE *out);  /* "budget_..." key=value lines */
	void (*free)(void *state);
	/* Optional, for stores shared by several gateways: a rate per second (callout_max_rate).
	 * Count n events in second (wall clock, seconds since the epoch) of key, of which at most
	 * limit fit; cb gets how many of the n did. */
	struct budget_query *(*take)(void *state, struct event_base *base, const char *key, uint64_t second,
				     unsigned n, unsigned limit, budget_take_cb cb, void *arg);
	/* Optional: drop what the store keeps for base's loop (a connection), before base is freed. */
	void (*forget_base)(void *state, struct event_base *base);
};

struct budget_store {
	const struct budget_store_type *type;
	void *state;
};

/* The in-memory store: at most max_entries keys, the least recently counted one evicted first. */
struct budget_store *budget_memory_new(size_t max_entries);
/* The Redis store of cfg's cache (redis://, rediss://, redis+sentinel://), with a memory store of
 * max_entries keys as its local fallback. NULL with why if the target is wrong. */
struct budget_store *budget_redis_new(const struct bs_config *cfg, size_t max_entries, char *why, size_t whysz);
/* The store for cfg: Redis when its cache is, else memory (harvest_max_entries keys). */
struct budget_store *budget_store_open(const struct bs_config *cfg, char *why, size_t whysz);

struct budget_query *budget_store_get(struct budget_store *st, struct event_base *base, const char *const *keys,
				      const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				      void *arg);
struct budget_query *budget_store_add(struct budget_store *st, struct event_base *base, const char *const *keys,
				      const struct budget_rule *rules, size_t n, uint64_t now_ms, budget_cb cb,
				      void *arg);
/* A shared rate (the type's take); a store without one answers n from inside the call (the
 * caller's own limiter decides). */
struct budget_query *budget_store_take(struct budget_store *st, struct event_base *base, const char *key,
				       uint64_t second, unsigned n, unsigned limit, budget_take_cb cb, void *arg);
/* Does st count rates for several gateways (has a take)? */
bool budget_store_shares_rates(const struct budget_store *st);
void budget_store_cancel(struct budget_store *st, struct budget_query *q);
void budget_store_stats(struct budget_store *st, FILE *out);
void budget_store_free(struct budget_store *st);
/* base's loop is going away (called from the thread that frees it, after it stopped). */
void budget_store_forget_base(struct budget_store *st, struct event_base *base);

/* Is a key in state st over its budget at now_ms? */
bool budget_over(const struct budget_state *st, const struct budget_rule *rule, uint64_t now_ms);

/* "25/1h" -> limit 25, window 1h; "0" -> limit 0 (off). 0, or -1 with *why static. */
int budget_rule_parse(const char *text, struct budget_rule *out, const char **why);
/* The config's check of such a value (config.c). */
int budget_rule_check(const char *text, const char **why);

/* Keys of a client: "a:ADDRESS" and "n:NETWORK/PREFIX" (IPv4-mapped IPv6 counted as IPv4; the
 * prefix is v4_prefix or v6_prefix). -1 for an address of another family. */
int budget_client_keys(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix,
		       char addr_key[BUDGET_KEY_MAX], char net_key[BUDGET_KEY_MAX]);

#endif
