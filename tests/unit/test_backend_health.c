/* test_backend_health.c - the circuit breaker: trips after consecutive failures, skips while
 * failing, lets exactly one probe through when half-open, heals on success. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend_health.h"

static void test_unknown_target_is_tried(void **state)
{
	(void)state;
	struct backend_health *h = backend_health_new();
	assert_true(backend_health_try(h, "10.0.0.1:25", 1000));
	assert_int_equal(backend_health_state(h, "10.0.0.1:25"), BACKEND_HEALTHY);
	backend_health_free(h);
}

static void test_trips_after_consecutive_failures(void **state)
{
	(void)state;
	struct backend_health *h = backend_health_new();
	backend_health_report(h, "b:25", false);
	assert_true(backend_health_try(h, "b:25", 60000)); /* one failure: still tried */
	backend_health_report(h, "b:25", true);           /* success resets the count */
	backend_health_report(h, "b:25", false);
	assert_true(backend_health_try(h, "b:25", 60000));
	backend_health_report(h, "b:25", false);
	assert_int_equal(backend_health_state(h, "b:25"), BACKEND_FAILING);
	assert_false(backend_health_try(h, "b:25", 60000));
	assert_true(backend_health_try(h, "other:25", 60000)); /* per target */
	backend_health_free(h);
}

static void test_half_open_single_probe(void **state)
{
	(void)state;
	struct backend_health *h = backend_health_new();
	for (int i = 0; i < BACKEND_TRIP_FAILURES; i++)
		backend_health_report(h, "b:25", false);
	usleep(30 * 1000);
	assert_true(backend_health_try(h, "b:25", 20));   /* retry_after passed: one probe */
	assert_int_equal(backend_health_state(h, "b:25"), BACKEND_HALF_OPEN);
	/* a second caller waits; with a long retry_after, so that a stall of this thread (ASan, a
	 * loaded machine) past 2 x 20 ms cannot turn "waits" into "probe again" */
	assert_false(backend_health_try(h, "b:25", 60000));
	backend_health_report(h, "b:25", false);          /* probe failed: failing again */
	assert_false(backend_health_try(h, "b:25", 60000));
	usleep(30 * 1000);
	assert_true(backend_health_try(h, "b:25", 20));
	backend_health_report(h, "b:25", true);           /* probe succeeded: healthy */
	assert_true(backend_health_try(h, "b:25", 60000));
	assert_int_equal(backend_health_state(h, "b:25"), BACKEND_HEALTHY);
	backend_health_free(h);
}

static void test_vanished_probe_does_not_block_forever(void **state)
{
	(void)state;
	struct backend_health *h = backend_health_new();
	for (int i = 0; i < BACKEND_TRIP_FAILURES; i++)
		backend_health_report(h, "b:25", false);
	usleep(30 * 1000);
	assert_true(backend_health_try(h, "b:25", 20)); /* probe owner never reports */
	usleep(50 * 1000);
	assert_true(backend_health_try(h, "b:25", 20)); /* another probe after 2 x retry_after */
	backend_health_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_target_is_tried),
		cmocka_unit_test(test_trips_after_consecutive_failures),
		cmocka_unit_test(test_half_open_single_probe),
		cmocka_unit_test(test_vanished_probe_does_not_block_forever),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
