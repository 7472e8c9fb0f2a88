/* vcache_local.h - the local layer in front of a network verdict store: a bounded table (a fixed
 * number of slots, a new entry replaces what its slot held) of verdicts with two horizons: fresh
 * (stored here less than local_ttl ago: answer without asking the store) and the verdict's own
 * expiry (what may still be answered while the store is unreachable). Thread-safe (striped
 * locks). Memory is bounded by the slot count whatever happens to the store. */
#ifndef BACKSTOP_VCACHE_LOCAL_H
#define BACKSTOP_VCACHE_LOCAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vcache.h"

struct vcache_local;

struct vcache_local *vcache_local_new(size_t slots);
void vcache_local_free(struct vcache_local *l);
/* 1 and *e when key is held and not expired (*fresh: held for less than its local horizon), else 0. */
int vcache_local_get(struct vcache_local *l, const char *key, uint64_t now, struct vcache_entry *e, bool *fresh);
/* Hold e until fresh_until (wall clock ms) as fresh, until its expiry as a fallback. */
void vcache_local_put(struct vcache_local *l, const char *key, const struct vcache_entry *e, uint64_t fresh_until);
/* Forget key (the store said it has none). */
void vcache_local_del(struct vcache_local *l, const char *key);
/* vcache_key_matches() pattern, or every entry when pattern is NULL. Returns the number removed. */
long vcache_local_purge(struct vcache_local *l, const char *pattern, const char *delims);
void vcache_local_stats(struct vcache_local *l, FILE *out);

#endif
