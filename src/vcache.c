/* vcache.c - the verdict cache front: the store registry (config prefix -> store, whose row
 * checks its own specs), the rules every store shares (only VALID / INVALID are cached, expiry,
 * "@domain" patterns). Adding a store: write vcache_NAME.c defining vcache_NAME_type, declare it
 * in vcache.h, add a row. */
#include "vcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const struct vcache_store_type *const stores[] = { /* the order of "expected ..." */
	&vcache_lmdb_type,
	&vcache_memory_type,
	&vcache_redis_type,
	&vcache_rediss_type,
	&vcache_redis_sentinel_type,
};

static const struct vcache_store_type *extra_stores[4];

void vcache_type_register_extra(const struct vcache_store_type *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(extra_stores); i++)
		if (extra_stores[i] == NULL || extra_stores[i] == type) {
			extra_stores[i] = type;
			return;
		}
}

const struct vcache_store_type *vcache_type_find(const char *spec, const char **arg)
{
	const char *colon = strchr(spec, ':');

	*arg = colon ? colon + 1 : spec + strlen(spec);
	if (colon == NULL)
		return NULL;
	size_t plen = (size_t)(colon - spec);
	for (size_t i = 0; i < ARRAY_SIZE(stores) + ARRAY_SIZE(extra_stores); i++) {
		const struct vcache_store_type *t = i < ARRAY_SIZE(stores) ? stores[i] : extra_stores[i - ARRAY_SIZE(stores)];
		if (t && strlen(t->prefix) == plen && memcmp(t->prefix, spec, plen) == 0)
			return t;
	}
	return NULL;
}

/* "expected lmdb:/DIRECTORY or memory:", from the rows; built once. */
static char expected[256];
static pthread_once_t expected_once = PTHREAD_ONCE_INIT;

static void vcache_expected_build(void)
{
	strbuf_append(expected, sizeof expected, "expected ");
	for (size_t i = 0; i < ARRAY_SIZE(stores); i++) {
		if (i > 0)
			strbuf_append(expected, sizeof expected, i + 1 < ARRAY_SIZE(stores) ? ", " : " or ");
		strbuf_append(expected, sizeof expected, stores[i]->syntax);
	}
}

static const char *vcache_expected(void)
{
	pthread_once(&expected_once, vcache_expected_build);
	return expected;
}

int vcache_spec_check(const char *spec, const char **why)
{
	const char *arg;
	const struct vcache_store_type *t = vcache_type_find(spec, &arg);

	if (t == NULL) {
		*why = vcache_expected();
		return -1;
	}
	return t->check_spec ? t->check_spec(arg, why) : 0;
}

struct vcache *vcache_open(const char *spec, const struct bs_config *cfg, char *why, size_t whysz)
{
	const char *arg;

	if (spec == NULL || spec[0] == '\0')
		spec = VCACHE_DEFAULT;
	const struct vcache_store_type *t = vcache_type_find(spec, &arg);
	if (t == NULL) {
		snprintf(why, whysz, "cache %s: unknown store (%s)", spec, vcache_expected());
		return NULL;
	}
	void *state = t->open(arg, cfg, why, whysz);
	if (state == NULL)
		return NULL;
	struct vcache *c = xcalloc(1, sizeof *c);
	c->type = t;
	c->state = state;
	c->spec = xstrdup(spec);
	return c;
}

void vcache_close(struct vcache *c)
{
	if (c == NULL)
		return;
	c->type->close(c->state);
	free(c->spec);
	free(c);
}

struct vcache_query *vcache_get(struct vcache *c, struct event_base *base, const char *key,
				vcache_get_cb cb, void *arg)
{
	return c->type->get(c->state, base, key, cb, arg);
}

void vcache_cancel(struct vcache *c, struct vcache_query *q)
{
	if (q)
		c->type->cancel(q);
}

int vcache_put_entry(struct vcache *c, const char *key, const struct vcache_entry *e)
{
	if ((e->verdict != RCPT_VALID && e->verdict != RCPT_INVALID) || e->ttl_ms == 0 || key[0] == '\0' ||
	    strlen(key) > RCPT_ADDR_MAX)
		return -1;
	c->type->put(c->state, key, e);
	return 0;
}

int vcache_put(struct vcache *c, const char *key, enum rcpt_verdict verdict, const char *source,
	       uint64_t ttl_ms)
{
	struct vcache_entry e = { .verdict = verdict, .stored_ms = vcache_now(), .ttl_ms = ttl_ms };

	snprintf(e.source, sizeof e.source, "%s", source ? source : "");
	return vcache_put_entry(c, key, &e);
}

long vcache_purge(struct vcache *c, const char *key_or_at_domain, const char *delims)
{
	return c->type->purge(c->state, key_or_at_domain, delims ? delims : "");
}
int vcache_flush(struct vcache *c) { return c->type->flush(c->state); }

void vcache_sync(struct vcache *c)
{
	if (c->type->sync)
		c->type->sync(c->state);
}

void vcache_stats(struct vcache *c, FILE *out)
{
	fprintf(out, "cache=%s\n", c->spec);
	c->type->stats(c->state, out);
}

void vcache_forget_base(struct vcache *c, struct event_base *base)
{
	if (c && c->type->forget_base)
		c->type->forget_base(c->state, base);
}

uint64_t vcache_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool vcache_expired(const struct vcache_entry *e, uint64_t now)
{
	return now >= e->stored_ms + e->ttl_ms || now + 60000 < e->stored_ms; /* or from the future */
}

bool vcache_key_matches(const char *key, const char *pattern, const char *delims)
{
	const char *kat = strrchr(key, '@'), *pat = strrchr(pattern, '@');

	if (pattern[0] == '@')
		return kat && strcmp(kat, pattern) == 0;
	if (strcmp(key, pattern) == 0)
		return true;
	if (delims == NULL || delims[0] == '\0' || kat == NULL || pat == NULL || strcmp(kat, pat) != 0)
		return false;
	size_t llen = (size_t)(pat - pattern); /* "bob" + one delimiter + anything, same domain */
	return (size_t)(kat - key) > llen && memcmp(key, pattern, llen) == 0 && strchr(delims, key[llen]) != NULL;
}
