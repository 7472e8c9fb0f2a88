/* vcache.h - the verdict cache: recipient verdicts (VALID / INVALID only; UNAVAILABLE is never
 * cached) shared by all worker threads, keyed by the normalised address (rcpt_addr.full).
 * Each store is one row of the registry in vcache.c, named by the config's cache key:
 * "memory:" (in-process hash table, for tests), "lmdb:PATH" (persistent, the default
 * lmdb:/var/lib/backstop/verdicts), "redis://", "rediss://", "redis+sentinel://" (shared by
 * several gateways, with a local layer in front). The interface is asynchronous (get answers through a
 * callback) so that a network store (Redis) plugs in as one more file.
 * Times are wall-clock milliseconds since the epoch, so that entries survive restarts. */
#ifndef BACKSTOP_VCACHE_H
#define BACKSTOP_VCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>

#include "config.h"
#include "rcpt.h"

#define VCACHE_DEFAULT "lmdb:/var/lib/backstop/verdicts"
#define VCACHE_SOURCE_MAX 96

struct vcache_entry {
	enum rcpt_verdict verdict;       /* RCPT_VALID or RCPT_INVALID */
	char source[VCACHE_SOURCE_MAX];  /* the source that answered, "map:/etc/..." */
	uint64_t stored_ms;              /* wall clock, ms since the epoch */
	uint64_t ttl_ms;
};

/* found: 1 and e set, or 0 (absent or expired; e is NULL). e is valid only during the call. */
typedef void (*vcache_get_cb)(void *arg, int found, const struct vcache_entry *e);

struct vcache_query; /* an outstanding get, defined by each store */

struct vcache_store_type {
	const char *prefix; /* "memory", "lmdb" */
	const char *syntax; /* how the spec is written, for messages: "lmdb:/DIRECTORY" */
	/* Check arg (the part after "prefix:") when the config is read: syntax only, no I/O. 0, or
	 * -1 with *why pointing at a static sentence. NULL: any arg. */
	int (*check_spec)(const char *arg, const char **why);
	void *(*open)(const char *arg, const struct bs_config *cfg, char *why, size_t whysz);
	/* Like rcpt_source_type.lookup: answers synchronously (returns NULL) or later from base's
	 * loop (returns a handle for cancel). Any thread. Expired entries are reported absent. */
	struct vcache_query *(*get)(void *state, struct event_base *base, const char *key,
				    vcache_get_cb cb, void *arg);
	void (*cancel)(struct vcache_query *q);
	/* Store (replace). Never blocks on I/O: persistent stores queue the write. Any thread. */
	void (*put)(void *state, const char *key, const struct vcache_entry *e);
	/* Remove one key and its sub-addresses (vcache_key_matches with delims, "" for none), or
	 * every key of a domain when key is "@domain". Returns the number removed, or -1 on error.
	 * Main thread or CLI (may block). Ordered after earlier puts. */
	long (*purge)(void *state, const char *key, const char *delims);
	int (*flush)(void *state);            /* remove everything; 0 or -1 */
	void (*sync)(void *state);            /* wait until queued writes are stored */
	void (*stats)(void *state, FILE *out); /* "key=value" lines */
	void (*close)(void *state);           /* stores queued writes first */
	/* base is about to be freed: drop what the store keeps on it (a network store's connection).
	 * On base's thread, or once its loop has stopped. NULL: nothing kept. */
	void (*forget_base)(void *state, struct event_base *base);
};

/* An opened cache: the store type and its state. */
struct vcache {
	const struct vcache_store_type *type;
	void *state;
	char *spec;
};

/* Open the cache named by spec (NULL: VCACHE_DEFAULT). NULL with why set if it cannot be opened
 * (the caller decides: backstop run then works without a cache and says so). Main thread. */
struct vcache *vcache_open(const char *spec, const struct bs_config *cfg, char *why, size_t whysz);
void vcache_close(struct vcache *c);

struct vcache_query *vcache_get(struct vcache *c, struct event_base *base, const char *key,
				vcache_get_cb cb, void *arg);
void vcache_cancel(struct vcache *c, struct vcache_query *q);
/* Store a verdict now: refuses (returns -1) anything but VALID/INVALID, a zero TTL or an empty
 * key. stored_ms is set to the current wall clock. */
int vcache_put(struct vcache *c, const char *key, enum rcpt_verdict verdict, const char *source,
	       uint64_t ttl_ms);
/* Same with the entry given whole (stored_ms as set by the caller; tests, imports). */
int vcache_put_entry(struct vcache *c, const char *key, const struct vcache_entry *e);
/* delims: the domain's recipient_delimiter (NULL or "": no sub-addresses to purge). */
long vcache_purge(struct vcache *c, const char *key_or_at_domain, const char *delims);
int vcache_flush(struct vcache *c);
void vcache_sync(struct vcache *c);
void vcache_stats(struct vcache *c, FILE *out);
/* Call before freeing an event_base that vcache_get() was given (c may be NULL). */
void vcache_forget_base(struct vcache *c, struct event_base *base);

/* Wall clock in ms since the epoch. */
uint64_t vcache_now(void);
/* Is e expired at now? */
bool vcache_expired(const struct vcache_entry *e, uint64_t now);

/* Does key belong to the "@domain" pattern, or, when pattern is an address "bob@d", equal it
 * or is one of its sub-addresses ("bob" + a character of delims + anything, "@d")? */
bool vcache_key_matches(const char *key, const char *pattern, const char *delims);

/* The store type for a spec's prefix, with *arg set to the part after ':'; NULL if no store
 * has that prefix or spec has no ':'. */
const struct vcache_store_type *vcache_type_find(const char *spec, const char **arg);
/* A spec's syntax, checked by its store's row (the `cache` key's check, config.c): 0, or -1 with
 * *why static (an unknown prefix lists the known ones). */
int vcache_spec_check(const char *spec, const char **why);

/* Test hook: add a store type (at most 4 extra). */
void vcache_type_register_extra(const struct vcache_store_type *type);

extern const struct vcache_store_type vcache_memory_type;
extern const struct vcache_store_type vcache_lmdb_type;
extern const struct vcache_store_type vcache_redis_type;          /* vcache_redis.c */
extern const struct vcache_store_type vcache_rediss_type;
extern const struct vcache_store_type vcache_redis_sentinel_type;

#endif
