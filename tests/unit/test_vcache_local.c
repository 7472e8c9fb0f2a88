/* test_vcache_local.c - the local layer in front of Redis: fresh vs still-valid answers, expiry,
 * a bounded table under many keys, purge by address (with sub-addresses), by @domain and all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vcache_local.h"

static struct vcache_entry entry(enum rcpt_verdict v, uint64_t stored, uint64_t ttl)
{
	struct vcache_entry e = { .verdict = v, .stored_ms = stored, .ttl_ms = ttl };
	snprintf(e.source, sizeof e.source, "callout:x:25");
	return e;
}

static void test_fresh_then_fallback_then_expired(void **state)
{
	(void)state;
	struct vcache_local *l = vcache_local_new(1000);
	uint64_t now = vcache_now();
	struct vcache_entry e = entry(RCPT_VALID, now, 60000), got;
	bool fresh;

	vcache_local_put(l, "a@d", &e, now + 10000);
	assert_int_equal(vcache_local_get(l, "a@d", now + 5000, &got, &fresh), 1);
	assert_true(fresh);
	assert_string_equal(got.source, "callout:x:25");
	assert_int_equal(vcache_local_get(l, "a@d", now + 20000, &got, &fresh), 1);
	assert_false(fresh); /* ask Redis, or use it if Redis cannot say */
	assert_int_equal(vcache_local_get(l, "a@d", now + 61000, &got, &fresh), 0);
	assert_int_equal(vcache_local_get(l, "b@d", now, &got, &fresh), 0);
	vcache_local_del(l, "a@d");
	assert_int_equal(vcache_local_get(l, "a@d", now, &got, &fresh), 0);
	vcache_local_free(l);
}

static void test_bounded(void **state)
{
	(void)state;
	struct vcache_local *l = vcache_local_new(64);
	uint64_t now = vcache_now();
	struct vcache_entry e = entry(RCPT_INVALID, now, 60000);
	char key[64];

	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof key, "u%d@example.test", i);
		vcache_local_put(l, key, &e, now + 10000);
	}
	char stats[1024] = "";
	FILE *f = fmemopen(stats, sizeof stats, "w");
	vcache_local_stats(l, f);
	fclose(f);
	unsigned long held = 0;
	sscanf(strstr(stats, "local_entries="), "local_entries=%lu", &held);
	assert_true(held <= 64);
	assert_int_equal(vcache_local_purge(l, NULL, ""), (long)held);
	vcache_local_free(l);
}

static void test_purge_patterns(void **state)
{
	(void)state;
	struct vcache_local *l = vcache_local_new(4096);
	uint64_t now = vcache_now();
	struct vcache_entry e = entry(RCPT_VALID, now, 60000), got;
	bool fresh;
	const char *keys[] = { "bob@d.test", "bob+x@d.test", "bobby@d.test", "ann@d.test", "bob@e.test" };

	for (size_t i = 0; i < 5; i++)
		vcache_local_put(l, keys[i], &e, now + 10000);
	assert_int_equal(vcache_local_purge(l, "bob@d.test", "+"), 2);
	assert_int_equal(vcache_local_get(l, "bobby@d.test", now, &got, &fresh), 1);
	assert_int_equal(vcache_local_purge(l, "@d.test", ""), 2);
	assert_int_equal(vcache_local_get(l, "bob@e.test", now, &got, &fresh), 1);
	assert_int_equal(vcache_local_purge(l, NULL, ""), 1);
	vcache_local_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_then_fallback_then_expired),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_purge_patterns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
