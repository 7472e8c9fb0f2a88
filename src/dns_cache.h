/* dns_cache.h - DNS answers kept by their TTL (dns_msg.h): records by their smallest TTL,
 * NXDOMAIN and NODATA by their SOA's minimum (RFC 2308), failures never. Bounded: past
 * max_entries the least recently used answer goes. Thread-safe (one mutex): backstop has one
 * cache per process, shared by every worker's resolver (README, "DNS"). */
#ifndef BACKSTOP_DNS_CACHE_H
#define BACKSTOP_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dns_msg.h"

#define DNS_CACHE_DEFAULT_ENTRIES 20000

struct dns_cache;

struct dns_cache_stats {
	uint64_t hits, misses, inserts, evictions, expired;
	size_t entries;
};

struct dns_cache *dns_cache_new(size_t max_entries);
void dns_cache_free(struct dns_cache *c);

/* The answer kept for name/type (a new reference for the caller), or NULL. now_ms: monotonic. */
struct dns_answer *dns_cache_get(struct dns_cache *c, const char *name, enum dns_type type, uint64_t now_ms);
/* Keep a (its own reference is taken) for a->ttl seconds if that is > 0 and it is no failure. */
void dns_cache_put(struct dns_cache *c, const char *name, struct dns_answer *a, uint64_t now_ms);
void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out);
/* Forget everything. */
void dns_cache_clear(struct dns_cache *c);

#endif
