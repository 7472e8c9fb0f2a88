/* cache_ops.h - the cache commands (stats, show, purge, flush) on an open verdict cache, their
 * output written to a FILE: `backstop cache` runs them on the store itself when the daemon is
 * not reachable, the daemon runs them on its own cache (memory layer included) for the control
 * socket, so both print the same lines. */
#ifndef BACKSTOP_CACHE_OPS_H
#define BACKSTOP_CACHE_OPS_H

#include <stdio.h>

#include "config.h"
#include "smtp_address.h"
#include "vcache.h"

/* Exit statuses of the cache commands. */
#define CACHE_OPS_OK 0
#define CACHE_OPS_FAILED 1
#define CACHE_OPS_USAGE 3

#define CACHE_OPS_KEY_MAX (RCPT_ADDR_MAX + 2)

/* Split "local@domain" into a parsed address (domain normalised); -1 if it is not one. */
int cache_ops_address(const char *text, struct smtp_address *a);

/* The cache key for ADDR (the domain's rules from cfg when it is one of ours) or "@DOMAIN", and
 * that domain's recipient_delimiter ("" if none) in *delims. 0, or -1 if text is neither. */
int cache_ops_key(const struct bs_config *cfg, const char *text, char *key, size_t keysz, const char **delims);

/* Check op and its argument; on success key (and delims for purge) are set. Writes the usage
 * message to out and returns CACHE_OPS_USAGE when they are wrong, else CACHE_OPS_OK. */
int cache_ops_parse(const struct bs_config *cfg, const char *op, const char *arg, FILE *out, char *key,
		    size_t keysz, const char **delims);

/* The line `cache show` prints for key (found: e set, as from vcache_get). */
void cache_ops_print_entry(FILE *out, const char *key, int found, const struct vcache_entry *e);

/* stats, purge and flush (synchronous; show is vcache_get + cache_ops_print_entry). */
int cache_ops_stats(struct vcache *c, FILE *out);
int cache_ops_purge(struct vcache *c, const char *key, const char *delims, FILE *out);
int cache_ops_flush(struct vcache *c, FILE *out);

#endif
