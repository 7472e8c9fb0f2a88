/* test_vcache.c - the verdict cache and its memory: and lmdb: stores: store and fetch, UNAVAILABLE
 * refused, expiry, purge by address and by @domain, flush, LMDB verdicts surviving a restart
 * (close and reopen) and a full LMDB map making room instead of failing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vcache.h"

struct fixture {
	char dir[64];
	char spec[128];
	struct bs_config cfg;
	struct vcache *c;
};

static struct vcache *open_cache(struct fixture *f)
{
	char why[256] = "";
	struct vcache *c = vcache_open(f->spec, &f->cfg, why, sizeof why);
	if (c == NULL)
		fail_msg("vcache_open(%s): %s", f->spec, why);
	return c;
}

static int setup_store(void **state, bool lmdb)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_vcache.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	if (lmdb)
		snprintf(f->spec, sizeof f->spec, "lmdb:%s/sub/verdicts", f->dir); /* parents created */
	else
		snprintf(f->spec, sizeof f->spec, "memory:");
	f->cfg.cache_max_size = 16 << 20;
	f->c = open_cache(f);
	*state = f;
	return 0;
}

static int setup_memory(void **state) { return setup_store(state, false); }
static int setup_lmdb(void **state) { return setup_store(state, true); }

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	vcache_close(f->c);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

struct got {
	int calls, found;
	struct vcache_entry e;
};

static void on_get(void *arg, int found, const struct vcache_entry *e)
{
	struct got *g = arg;
	g->calls++;
	g->found = found;
	if (found)
		g->e = *e;
}

static struct got get(struct fixture *f, const char *key)
{
	struct got g = { 0 };
	vcache_sync(f->c); /* writes are queued: make them visible */
	assert_null(vcache_get(f->c, NULL, key, on_get, &g)); /* both stores answer synchronously */
	assert_int_equal(g.calls, 1);
	return g;
}

static void test_put_get(void **state)
{
	struct fixture *f = *state;
	uint64_t before = vcache_now();
	assert_int_equal(vcache_put(f->c, "alice@example.com", RCPT_VALID, "map:/etc/rr", 3600000), 0);
	assert_int_equal(vcache_put(f->c, "bob@example.com", RCPT_INVALID, "ldap:corp", 60000), 0);
	struct got g = get(f, "alice@example.com");
	assert_true(g.found);
	assert_int_equal(g.e.verdict, RCPT_VALID);
	assert_string_equal(g.e.source, "map:/etc/rr");
	assert_int_equal(g.e.ttl_ms, 3600000);
	assert_true(g.e.stored_ms >= before && g.e.stored_ms <= vcache_now());
	g = get(f, "bob@example.com");
	assert_true(g.found);
	assert_int_equal(g.e.verdict, RCPT_INVALID);
	assert_false(get(f, "carol@example.com").found);
	/* replace */
	assert_int_equal(vcache_put(f->c, "bob@example.com", RCPT_VALID, "callout:mx", 60000), 0);
	g = get(f, "bob@example.com");
	assert_int_equal(g.e.verdict, RCPT_VALID);
	assert_string_equal(g.e.source, "callout:mx");
}

static void test_unavailable_refused(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(vcache_put(f->c, "x@example.com", RCPT_UNAVAILABLE, "ldap:corp", 60000), -1);
	assert_int_equal(vcache_put(f->c, "x@example.com", RCPT_VALID, "ldap:corp", 0), -1);
	assert_int_equal(vcache_put(f->c, "", RCPT_VALID, "ldap:corp", 1000), -1);
	assert_false(get(f, "x@example.com").found);
}

static void test_expiry(void **state)
{
	struct fixture *f = *state;
	uint64_t now = vcache_now();
	struct vcache_entry old = { .verdict = RCPT_VALID, .stored_ms = now - 7200000, .ttl_ms = 3600000 };
	struct vcache_entry fresh = { .verdict = RCPT_INVALID, .stored_ms = now - 1000, .ttl_ms = 3600000 };
	assert_int_equal(vcache_put_entry(f->c, "old@example.com", &old), 0);
	assert_int_equal(vcache_put_entry(f->c, "fresh@example.com", &fresh), 0);
	assert_false(get(f, "old@example.com").found);
	assert_true(get(f, "fresh@example.com").found);
}

static void test_purge_and_flush(void **state)
{
	struct fixture *f = *state;
	const char *keys[] = { "a@one.example", "b@one.example", "c@two.example", "a@sub.one.example" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		assert_int_equal(vcache_put(f->c, keys[i], RCPT_VALID, "map:x", 60000), 0);
	assert_int_equal(vcache_purge(f->c, "c@two.example", ""), 1);
	assert_int_equal(vcache_purge(f->c, "c@two.example", ""), 0);
	assert_false(get(f, "c@two.example").found);
	assert_int_equal(vcache_purge(f->c, "@one.example", ""), 2);
	assert_false(get(f, "a@one.example").found);
	assert_false(get(f, "b@one.example").found);
	assert_true(get(f, "a@sub.one.example").found); /* a subdomain is another domain */
	assert_int_equal(vcache_put(f->c, "d@two.example", RCPT_INVALID, "map:x", 60000), 0);
	assert_int_equal(vcache_flush(f->c), 0);
	assert_false(get(f, "a@sub.one.example").found);
	assert_false(get(f, "d@two.example").found);
}

/* Purging an address also purges its sub-addresses (issue 9 item 8), and nothing else: not
 * "bobby@", not "bob+x@" of another domain, not the address whose tag holds "bob". */
static void test_purge_subaddresses(void **state)
{
	struct fixture *f = *state;
	const char *gone[] = { "bob@d.example", "bob+x@d.example", "bob-y@d.example", "bob+x+z@d.example" };
	const char *kept[] = { "bobby@d.example", "bob+x@e.example", "bo@d.example", "a+bob@d.example",
			       "bob.x@d.example", "bob@sub.d.example" };
	for (size_t i = 0; i < ARRAY_SIZE(gone); i++)
		assert_int_equal(vcache_put(f->c, gone[i], RCPT_INVALID, "callout:x", 60000), 0);
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++)
		assert_int_equal(vcache_put(f->c, kept[i], RCPT_INVALID, "callout:x", 60000), 0);
	assert_int_equal(vcache_purge(f->c, "bob@d.example", "+-"), 4);
	for (size_t i = 0; i < ARRAY_SIZE(gone); i++)
		assert_false(get(f, gone[i]).found);
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++)
		assert_true(get(f, kept[i]).found);
	assert_int_equal(vcache_put(f->c, "bob+x@d.example", RCPT_INVALID, "callout:x", 60000), 0);
	assert_int_equal(vcache_purge(f->c, "bob@d.example", ""), 0); /* no delimiter: the address only */
	assert_true(get(f, "bob+x@d.example").found);
}

static void test_lmdb_survives_restart(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(vcache_put(f->c, "alice@example.com", RCPT_VALID, "map:/etc/rr", 3600000), 0);
	assert_int_equal(vcache_put(f->c, "bob@example.com", RCPT_INVALID, "map:/etc/rr", 3600000), 0);
	vcache_close(f->c); /* close stores what is queued */
	f->c = open_cache(f);
	struct got g = get(f, "alice@example.com");
	assert_true(g.found);
	assert_int_equal(g.e.verdict, RCPT_VALID);
	assert_string_equal(g.e.source, "map:/etc/rr");
	assert_int_equal(get(f, "bob@example.com").e.verdict, RCPT_INVALID);
}

static void test_lmdb_full_makes_room(void **state)
{
	struct fixture *f = *state;
	vcache_close(f->c);
	f->cfg.cache_max_size = 256 << 10; /* 256 KiB: a few thousand entries */
	snprintf(f->spec + strlen(f->spec), sizeof f->spec - strlen(f->spec), "-small");
	f->c = open_cache(f);
	char key[64];
	for (unsigned i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "user%u@example.com", i);
		assert_int_equal(vcache_put(f->c, key, RCPT_VALID, "map:/etc/rr", 3600000), 0);
		if (i % 500 == 499)
			vcache_sync(f->c);
	}
	assert_true(get(f, "user19999@example.com").found); /* the newest stay */
	assert_false(get(f, "user0@example.com").found);    /* the oldest went */
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	vcache_stats(f->c, out);
	fclose(out);
	assert_non_null(strstr(buf, "write_errors=0\n"));
	assert_null(strstr(buf, "evicted=0\n"));
	free(buf);
}

static void test_memory_bounded(void **state)
{
	struct fixture *f = *state;
	vcache_close(f->c);
	snprintf(f->spec, sizeof f->spec, "memory:100");
	f->c = open_cache(f);
	char key[64];
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "user%u@example.com", i);
		vcache_put(f->c, key, RCPT_VALID, "map:x", 60000);
	}
	assert_true(get(f, "user999@example.com").found);
	assert_false(get(f, "user0@example.com").found);
	char why[128];
	assert_null(vcache_open("memory:abc", &f->cfg, why, sizeof why));
	assert_null(vcache_open("nosuch:x", &f->cfg, why, sizeof why));
	assert_non_null(strstr(why, "unknown store"));
}

#define BOTH(t) cmocka_unit_test_setup_teardown(t, setup_memory, teardown), \
		cmocka_unit_test_setup_teardown(t, setup_lmdb, teardown)

int main(void)
{
	log_open(false, LOG_LVL_WARN);
	const struct CMUnitTest tests[] = {
		BOTH(test_put_get),
		BOTH(test_unavailable_refused),
		BOTH(test_expiry),
		BOTH(test_purge_and_flush),
		BOTH(test_purge_subaddresses),
		cmocka_unit_test_setup_teardown(test_lmdb_survives_restart, setup_lmdb, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_full_makes_room, setup_lmdb, teardown),
		cmocka_unit_test_setup_teardown(test_memory_bounded, setup_memory, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
