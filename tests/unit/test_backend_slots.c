/* test_backend_slots.c - connection slots per backend (deliver_max_connections): the cap holds
 * per key, a slot given back goes to the oldest waiter (its event fires on its loop, also when
 * given back from another thread), cancelled waiters are skipped, a granted-then-cancelled slot
 * belongs to the canceller, newcomers do not overtake waiters, a lowered cap is respected. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/thread.h>

#include "backend_slots.h"

struct waiter {
	struct backend_slot_wait w;
	struct event *ev;
	int woken;
};

static void woken_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct waiter *)arg)->woken++;
}

static void waiter_init(struct waiter *x, struct event_base *base)
{
	*x = (struct waiter){ 0 };
	x->ev = event_new(base, -1, 0, woken_cb, x);
}

static void test_cap_per_key(void **state)
{
	(void)state;
	struct backend_slots *s = backend_slots_new();
	assert_true(backend_slots_take(s, "a:25", 2));
	assert_true(backend_slots_take(s, "a:25", 2));
	assert_false(backend_slots_take(s, "a:25", 2));
	assert_true(backend_slots_take(s, "b:25", 2)); /* per key */
	assert_int_equal(backend_slots_in_use(s, "a:25"), 2);
	backend_slots_give(s, "a:25");
	assert_true(backend_slots_take(s, "a:25", 2));
	for (int i = 0; i < 100; i++)
		assert_true(backend_slots_take(s, "c:25", 0)); /* 0: no cap, still counted */
	assert_int_equal(backend_slots_in_use(s, "c:25"), 100);
	backend_slots_free(s);
}

static void test_given_slot_goes_to_oldest_waiter(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct backend_slots *s = backend_slots_new();
	struct waiter x, y;
	waiter_init(&x, base);
	waiter_init(&y, base);
	assert_true(backend_slots_take(s, "a:25", 1));
	backend_slots_wait(s, "a:25", 1, &x.w, x.ev);
	backend_slots_wait(s, "a:25", 1, &y.w, y.ev);
	assert_true(backend_slots_wanted(s, "a:25"));
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(x.woken + y.woken, 0);
	backend_slots_give(s, "a:25");
	assert_false(backend_slots_take(s, "a:25", 1)); /* handed over, not free */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(x.woken, 1);
	assert_int_equal(y.woken, 0);
	assert_true(backend_slots_cancel(s, &x.w));   /* x owns it now */
	assert_false(backend_slots_cancel(s, &x.w));  /* idempotent */
	assert_true(backend_slots_wanted(s, "a:25")); /* y still waits */
	backend_slots_give(s, "a:25");
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(y.woken, 1);
	assert_true(backend_slots_cancel(s, &y.w));
	assert_false(backend_slots_wanted(s, "a:25"));
	backend_slots_give(s, "a:25");
	assert_int_equal(backend_slots_in_use(s, "a:25"), 0);
	event_free(x.ev);
	event_free(y.ev);
	backend_slots_free(s);
	event_base_free(base);
}

static void test_cancelled_waiter_is_skipped(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct backend_slots *s = backend_slots_new();
	struct waiter x, y, z;
	waiter_init(&x, base);
	waiter_init(&y, base);
	waiter_init(&z, base);
	assert_true(backend_slots_take(s, "a:25", 1));
	backend_slots_wait(s, "a:25", 1, &x.w, x.ev);
	backend_slots_wait(s, "a:25", 1, &y.w, y.ev);
	backend_slots_wait(s, "a:25", 1, &z.w, z.ev);
	assert_false(backend_slots_cancel(s, &y.w)); /* middle of the line */
	assert_false(backend_slots_cancel(s, &z.w)); /* its tail */
	backend_slots_give(s, "a:25");
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(x.woken, 1);
	assert_true(backend_slots_cancel(s, &x.w));
	assert_false(backend_slots_wanted(s, "a:25"));
	/* the line is empty again and its tail was reset: a new waiter is served */
	backend_slots_wait(s, "a:25", 1, &z.w, z.ev);
	backend_slots_give(s, "a:25");
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(z.woken, 1);
	assert_int_equal(y.woken, 0);
	assert_true(backend_slots_cancel(s, &z.w));
	backend_slots_give(s, "a:25");
	event_free(x.ev);
	event_free(y.ev);
	event_free(z.ev);
	backend_slots_free(s);
	event_base_free(base);
}

static void test_newcomer_does_not_overtake_and_lowered_cap_holds(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct backend_slots *s = backend_slots_new();
	struct waiter x;
	waiter_init(&x, base);
	assert_true(backend_slots_take(s, "a:25", 3));
	assert_true(backend_slots_take(s, "a:25", 3));
	assert_true(backend_slots_take(s, "a:25", 3));
	backend_slots_wait(s, "a:25", 1, &x.w, x.ev); /* the cap was lowered to 1 (reload) */
	assert_false(backend_slots_take(s, "a:25", 1)); /* someone waits: no overtaking */
	backend_slots_give(s, "a:25");
	backend_slots_give(s, "a:25");
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(x.woken, 0); /* one still in use: the cap of 1 is full */
	backend_slots_give(s, "a:25");
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(x.woken, 1);
	assert_true(backend_slots_cancel(s, &x.w));
	assert_int_equal(backend_slots_in_use(s, "a:25"), 1);
	backend_slots_give(s, "a:25");
	event_free(x.ev);
	backend_slots_free(s);
	event_base_free(base);
}

static void *give_from_thread(void *arg)
{
	backend_slots_give(arg, "a:25");
	return NULL;
}

static void test_wakeup_from_another_thread(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct backend_slots *s = backend_slots_new();
	struct waiter x;
	waiter_init(&x, base);
	assert_true(backend_slots_take(s, "a:25", 1));
	backend_slots_wait(s, "a:25", 1, &x.w, x.ev);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, give_from_thread, s), 0);
	/* the loop blocks until the other thread's give wakes it (the guard timer only bounds a
	 * failing test) */
	static const struct timeval guard = { 30, 0 };
	struct event *g = evtimer_new(base, woken_cb, &x);
	evtimer_add(g, &guard);
	event_base_loop(base, EVLOOP_ONCE);
	assert_true(evtimer_pending(g, NULL));
	event_free(g);
	pthread_join(t, NULL);
	assert_int_equal(x.woken, 1);
	assert_true(backend_slots_cancel(s, &x.w));
	backend_slots_give(s, "a:25");
	event_free(x.ev);
	backend_slots_free(s);
	event_base_free(base);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_per_key),
		cmocka_unit_test(test_given_slot_goes_to_oldest_waiter),
		cmocka_unit_test(test_cancelled_waiter_is_skipped),
		cmocka_unit_test(test_newcomer_does_not_overtake_and_lowered_cap_holds),
		cmocka_unit_test(test_wakeup_from_another_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
