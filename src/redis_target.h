/* redis_target.h - where a Redis store connects, from the cache key: redis://HOST:PORT/DB,
 * rediss://HOST:PORT/DB (TLS), redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB, with
 * cache_redis_password_file, cache_redis_tls_ca and cache_redis_timeout, and the key namespace
 * "backstop:[PREFIX:]" (cache_redis_prefix). Shared by the verdict store (vcache_redis.c) and the
 * budget store (budget_redis.c), so that both use one Redis and one namespace. */
#ifndef BACKSTOP_REDIS_TARGET_H
#define BACKSTOP_REDIS_TARGET_H

#include <stddef.h>

#include "config.h"
#include "redis_conn.h"

enum redis_kind { REDIS_KIND_PLAIN, REDIS_KIND_TLS, REDIS_KIND_SENTINEL };

/* Check arg ("//HOST[:PORT][/DB]", or "//HOST:PORT,HOST:PORT/MASTER[/DB]" for Sentinel). 0, or -1
 * with *why static. */
int redis_target_check(enum redis_kind kind, const char *arg, const char **why);
/* Fill t (resolving the hosts: blocking, at start-up only) for arg; name ("redis://...", no
 * password in it) prefixes the error. 0, or -1 with why; t is to be cleared either way. */
int redis_target_make(struct redis_target *t, enum redis_kind kind, const char *arg, const char *name,
		      const struct bs_config *cfg, char *why, size_t whysz);
/* Is cache (the config's cache key) a Redis one? Its kind and its "//..." part if so. */
bool redis_target_kind(const char *cache, enum redis_kind *kind, const char **arg);
/* Free what redis_target_make allocated. */
void redis_target_clear(struct redis_target *t);
/* "backstop:" or "backstop:PREFIX:" */
void redis_key_prefix(const struct bs_config *cfg, char *buf, size_t len);

#endif
