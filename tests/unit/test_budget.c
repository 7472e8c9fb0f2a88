/* test_budget.c - the budget store (budget_store.h, budget_memory.c): the sliding window, the
 * trip and its penalty, the bound on entries, client keys per address and network, the rule
 * syntax; and the probe limiter of callout_max_rate (callout_rate.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "budget_store.h"
#include "callout_rate.h"

#define HOUR (3600ULL * 1000)
#define T0 (1000ULL * HOUR) /* any clock: far from 0 */

static struct budget_state got[BUDGET_KEYS_MAX];
static size_t got_n;

static void on_state(void *arg, const struct budget_state *st, size_t n)
{
	(void)arg;
	memcpy(got, st, n * sizeof *st);
	got_n = n;
}

static struct budget_state add1(struct budget_store *s, const char *key, const struct budget_rule *r, uint64_t now)
{
	const char *keys[1] = { key };
	got_n = 0;
	assert_null(budget_store_add(s, NULL, keys, r, 1, now, on_state, NULL)); /* memory: at once */
	assert_int_equal(got_n, 1);
	return got[0];
}

static struct budget_state get1(struct budget_store *s, const char *key, const struct budget_rule *r, uint64_t now)
{
	const char *keys[1] = { key };
	got_n = 0;
	assert_null(budget_store_get(s, NULL, keys, r, 1, now, on_state, NULL));
	assert_int_equal(got_n, 1);
	return got[0];
}

static void test_sliding_window(void **state)
{
	(void)state;
	struct budget_store *s = budget_memory_new(100);
	struct budget_rule r = { .limit = 1000, .window_ms = HOUR };

	assert_int_equal(get1(s, "a:192.0.2.1", &r, T0).count, 0); /* unknown key: nothing, not created */
	for (int i = 0; i < 10; i++)
		add1(s, "a:192.0.2.1", &r, T0 + (uint64_t)i * 60000); /* one a minute for 10 minutes */
	assert_int_equal(get1(s, "a:192.0.2.1", &r, T0 + 10 * 60000).count, 10);
	/* an hour after the first one, it may still count (at most a sixteenth longer) */
	assert_true(get1(s, "a:192.0.2.1", &r, T0 + HOUR).count >= 9);
	/* the first six are gone an hour and a sixteenth after they happened; the last, younger than
	 * an hour, still counts */
	uint32_t mid = get1(s, "a:192.0.2.1", &r, T0 + 5 * 60000 + HOUR + HOUR / 16).count;
	assert_true(mid >= 1 && mid <= 4);
	/* ...and all of them once the window has passed the last one */
	assert_int_equal(get1(s, "a:192.0.2.1", &r, T0 + 9 * 60000 + HOUR + HOUR / 16).count, 0);
	/* counting again starts from nothing */
	assert_int_equal(add1(s, "a:192.0.2.1", &r, T0 + 3 * HOUR).count, 1);
	/* an event counts at least for the whole window, whatever the slot boundaries */
	for (uint64_t off = 0; off < HOUR; off += 137777) {
		uint64_t t = T0 + 10 * HOUR + off;
		uint32_t before = get1(s, "a:198.51.100.7", &r, t).count;
		add1(s, "a:198.51.100.7", &r, t);
		assert_int_equal(get1(s, "a:198.51.100.7", &r, t + HOUR - 1).count >= before + 1 || before > 0, 1);
	}
	budget_store_free(s);
}

static void test_trip_and_penalty(void **state)
{
	(void)state;
	struct budget_store *s = budget_memory_new(100);
	struct budget_rule r = { .limit = 3, .window_ms = HOUR, .penalty_ms = 2 * HOUR };
	struct budget_state st;

	st = add1(s, "a:192.0.2.9", &r, T0);
	assert_false(st.tripped);
	assert_false(budget_over(&st, &r, T0));
	add1(s, "a:192.0.2.9", &r, T0 + 1000);
	st = add1(s, "a:192.0.2.9", &r, T0 + 2000);
	assert_true(st.tripped);
	assert_int_equal(st.count, 3);
	assert_int_equal(st.penalty_until_ms, T0 + 2000 + 2 * HOUR);
	assert_true(budget_over(&st, &r, T0 + 2000));
	st = add1(s, "a:192.0.2.9", &r, T0 + 3000); /* a late one: over, but no second trip */
	assert_false(st.tripped);
	assert_int_equal(st.penalty_until_ms, T0 + 2000 + 2 * HOUR);
	/* the window has passed, the penalty has not: still over */
	st = get1(s, "a:192.0.2.9", &r, T0 + HOUR + HOUR / 8);
	assert_int_equal(st.count, 0);
	assert_true(budget_over(&st, &r, T0 + HOUR + HOUR / 8));
	/* both passed */
	st = get1(s, "a:192.0.2.9", &r, T0 + 3 * HOUR);
	assert_int_equal(st.penalty_until_ms, 0);
	assert_false(budget_over(&st, &r, T0 + 3 * HOUR));
	/* limit 0: never over */
	struct budget_rule off = { .limit = 0, .window_ms = HOUR };
	st = add1(s, "a:192.0.2.10", &off, T0);
	assert_false(st.tripped);
	assert_false(budget_over(&st, &off, T0));
	budget_store_free(s);
}

static void test_two_keys_and_cap(void **state)
{
	(void)state;
	struct budget_store *s = budget_memory_new(100);
	struct budget_rule r[2] = { { .limit = 5, .window_ms = HOUR }, { .limit = 2, .window_ms = HOUR } };
	const char *keys[2] = { "a:192.0.2.1", "n:192.0.2.0/24" };

	assert_null(budget_store_add(s, NULL, keys, r, 2, T0, on_state, NULL));
	assert_null(budget_store_add(s, NULL, keys, r, 2, T0, on_state, NULL));
	assert_int_equal(got_n, 2);
	assert_false(got[0].tripped);
	assert_true(got[1].tripped); /* the network reached its limit first */
	/* past the cap the least recently counted key goes, the others stay */
	for (int i = 0; i < 150; i++) {
		char k[32];
		snprintf(k, sizeof k, "a:10.0.%d.%d", i / 250, i % 250);
		add1(s, k, &r[0], T0 + 1 + (uint64_t)i);
	}
	assert_int_equal(get1(s, "a:192.0.2.1", &r[0], T0 + 1000).count, 0); /* evicted */
	assert_int_equal(get1(s, "a:10.0.0.149", &r[0], T0 + 1000).count, 1);
	char text[512] = "";
	FILE *f = fmemopen(text, sizeof text, "w");
	budget_store_stats(s, f);
	fclose(f);
	assert_non_null(strstr(text, "budget_entries=100\n"));
	assert_non_null(strstr(text, "budget_evictions=52\n"));
	budget_store_free(s);
}

static void test_client_keys(void **state)
{
	(void)state;
	char a[BUDGET_KEY_MAX], n[BUDGET_KEY_MAX];
	struct sockaddr_in v4 = { .sin_family = AF_INET };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };

	inet_pton(AF_INET, "127.0.1.77", &v4.sin_addr);
	assert_int_equal(budget_client_keys((struct sockaddr *)&v4, 24, 64, a, n), 0);
	assert_string_equal(a, "a:127.0.1.77");
	assert_string_equal(n, "n:127.0.1.0/24");
	assert_int_equal(budget_client_keys((struct sockaddr *)&v4, 20, 64, a, n), 0);
	assert_string_equal(n, "n:127.0.0.0/20");
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &v6.sin6_addr);
	assert_int_equal(budget_client_keys((struct sockaddr *)&v6, 24, 64, a, n), 0);
	assert_string_equal(a, "a:2001:db8:1:2:3:4:5:6");
	assert_string_equal(n, "n:2001:db8:1:2::/64");
	assert_int_equal(budget_client_keys((struct sockaddr *)&v6, 24, 56, a, n), 0);
	assert_string_equal(n, "n:2001:db8:1::/56");
	inet_pton(AF_INET6, "::ffff:192.0.2.200", &v6.sin6_addr); /* a dual-stack socket's IPv4 client */
	assert_int_equal(budget_client_keys((struct sockaddr *)&v6, 24, 64, a, n), 0);
	assert_string_equal(a, "a:192.0.2.200");
	assert_string_equal(n, "n:192.0.2.0/24");
	struct sockaddr un = { .sa_family = AF_UNIX };
	assert_int_equal(budget_client_keys(&un, 24, 64, a, n), -1);
}

static void test_rule_syntax(void **state)
{
	(void)state;
	struct budget_rule r;
	const char *why = NULL;

	assert_int_equal(budget_rule_parse("25/1h", &r, &why), 0);
	assert_int_equal(r.limit, 25);
	assert_int_equal(r.window_ms, HOUR);
	assert_int_equal(budget_rule_parse("100/30m", &r, &why), 0);
	assert_int_equal(r.window_ms, 30 * 60000);
	assert_int_equal(budget_rule_parse("0", &r, &why), 0);
	assert_int_equal(r.limit, 0);
	assert_int_equal(budget_rule_parse("25", &r, &why), -1);
	assert_int_equal(budget_rule_parse("x/1h", &r, &why), -1);
	assert_int_equal(budget_rule_parse("25/", &r, &why), -1);
	assert_int_equal(budget_rule_parse("25/0s", &r, &why), -1);
	assert_int_equal(budget_rule_parse("25/1h/2", &r, &why), -1);
}

static void test_probe_rate(void **state)
{
	(void)state;
	struct callout_rate *r = callout_rate_get("validator.test:25", 5);
	struct callout_rate *again = callout_rate_get("validator.test:25", 5); /* the same limiter */
	uint64_t t = 5000000;

	for (int i = 0; i < 5; i++)
		assert_true(callout_rate_take(r, t + (uint64_t)i * 100));
	assert_false(callout_rate_take(again, t + 500)); /* shared: the sixth within a second */
	assert_false(callout_rate_take(r, t + 999));
	assert_true(callout_rate_take(r, t + 1000));  /* the first token is back */
	assert_false(callout_rate_take(r, t + 1050));
	assert_true(callout_rate_take(r, t + 1100));
	/* in any second, never more than 5 */
	unsigned n = 0;
	for (uint64_t ms = 10000000; ms < 10000000 + 1000; ms++)
		n += callout_rate_take(r, ms);
	assert_int_equal(n, 5);
	struct callout_rate *other = callout_rate_get("other.test:25", 0); /* 0: no limit */
	for (int i = 0; i < 1000; i++)
		assert_true(callout_rate_take(other, t));
	callout_rate_put(other);
	callout_rate_put(again);
	callout_rate_put(r);
	assert_true(callout_rate_take(NULL, t));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sliding_window),   cmocka_unit_test(test_trip_and_penalty),
		cmocka_unit_test(test_two_keys_and_cap), cmocka_unit_test(test_client_keys),
		cmocka_unit_test(test_rule_syntax),      cmocka_unit_test(test_probe_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
