/* cache_ops.c - the cache commands on an open verdict cache (stats, show, purge, flush), shared
 * by `backstop cache` (on the store) and the control socket (on the daemon's cache). */
#include "cache_ops.h"

#include <string.h>

#include "rcpt.h"

int cache_ops_address(const char *text, struct smtp_address *a)
{
	const char *at = strrchr(text, '@');

	memset(a, 0, sizeof *a);
	if (at == NULL || at == text || (size_t)(at - text) > SMTP_LOCAL_MAX)
		return -1;
	a->local_len = a->local_raw_len = (size_t)(at - text);
	memcpy(a->local, text, a->local_len);
	memcpy(a->local_raw, text, a->local_len);
	a->domain_len = domain_normalise(at + 1, strlen(at + 1), true, a->domain, sizeof a->domain);
	return a->domain_len ? 0 : -1;
}

int cache_ops_key(const struct bs_config *cfg, const char *text, char *key, size_t keysz, const char **delims)
{
	struct smtp_address a;
	struct rcpt_addr ra;

	*delims = "";
	if (text[0] == '@') {
		char d[SMTP_DOMAIN_MAX + 1];
		if (domain_normalise(text + 1, strlen(text + 1), true, d, sizeof d) == 0)
			return -1;
		snprintf(key, keysz, "@%s", d);
		return 0;
	}
	const struct bs_domain *dom = cache_ops_address(text, &a) == 0 ? config_find_domain(cfg, a.domain) : NULL;
	if (a.domain_len == 0 || rcpt_addr_make(&ra, a.local_raw, a.local_raw_len, a.domain, dom) != 0)
		return -1;
	snprintf(key, keysz, "%s", ra.full);
	if (dom)
		*delims = dom->recipient_delimiter;
	return 0;
}

int cache_ops_parse(const struct bs_config *cfg, const char *op, const char *arg, FILE *out, char *key,
		    size_t keysz, const char **delims)
{
	*delims = "";
	key[0] = '\0';
	if (strcmp(op, "stats") == 0 || strcmp(op, "flush") == 0) {
		if (arg == NULL)
			return CACHE_OPS_OK;
		fprintf(out, "backstop cache %s: unexpected argument %s\n", op, arg);
		return CACHE_OPS_USAGE;
	}
	if (strcmp(op, "show") != 0 && strcmp(op, "purge") != 0) {
		fprintf(out, "backstop cache: unknown command %s (stats, show ADDR, purge ADDR|@DOMAIN, flush)\n", op);
		return CACHE_OPS_USAGE;
	}
	bool purge = strcmp(op, "purge") == 0;
	if (arg == NULL || cache_ops_key(cfg, arg, key, keysz, delims) != 0 || (!purge && key[0] == '@')) {
		fprintf(out, "backstop cache %s: needs an address%s\n", op, purge ? " or @domain" : "");
		return CACHE_OPS_USAGE;
	}
	return CACHE_OPS_OK;
}

void cache_ops_print_entry(FILE *out, const char *key, int found, const struct vcache_entry *e)
{
	uint64_t now = vcache_now();

	if (!found) {
		fprintf(out, "%s: not cached\n", key);
		return;
	}
	fprintf(out, "%s: %s source=%s age=%llus ttl_left=%llus\n", key, rcpt_verdict_name(e->verdict), e->source,
		(unsigned long long)((now - e->stored_ms) / 1000),
		(unsigned long long)((e->stored_ms + e->ttl_ms - now) / 1000));
}

int cache_ops_stats(struct vcache *c, FILE *out)
{
	vcache_stats(c, out); /* its first line names the cache */
	return CACHE_OPS_OK;
}

int cache_ops_purge(struct vcache *c, const char *key, const char *delims, FILE *out)
{
	long n = vcache_purge(c, key, delims); /* bob@d: bob+anything@d too */

	if (n < 0) {
		fprintf(out, "%s: the cache %s could not be purged\n", key, c->spec);
		return CACHE_OPS_FAILED;
	}
	fprintf(out, "%s%s%s: %ld entr%s removed\n", key, delims[0] ? " and its sub-addresses, delimiter " : "",
		delims, n, n == 1 ? "y" : "ies");
	return CACHE_OPS_OK;
}

int cache_ops_flush(struct vcache *c, FILE *out)
{
	if (vcache_flush(c) != 0) {
		fprintf(out, "the cache %s could not be flushed\n", c->spec);
		return CACHE_OPS_FAILED;
	}
	fprintf(out, "the cache %s is empty\n", c->spec);
	return CACHE_OPS_OK;
}
