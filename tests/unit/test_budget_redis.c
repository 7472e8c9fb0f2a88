/* test_budget_redis.c - the Redis budget store (budget_redis.c) against a redis-server started
 * here on a free loopback port (skipped without one): its Lua script keeps the memory store's
 * semantics (count within the window, the trip, the penalty once, a changed window keeps the
 * count), the keys and their expiry, the shared rate, and the fallback to the local store when
 * Redis is gone. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "budget_store.h"
#include "config.h"
#include "util.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define MINUTE (60ULL * 1000)
#define HOUR (60 * MINUTE)

static pid_t redis_pid;
static int redis_port;
static char redis_dir[] = "/tmp/test_budget_redis.XXXXXX";

static struct budget_state got[BUDGET_KEYS_MAX];
static size_t got_n;
static unsigned granted;
static bool answered;

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(fd, (struct sockaddr *)&sa, sizeof sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	close(fd);
	return ntohs(sa.sin_port);
}

static bool redis_listening(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)redis_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void redis_start(void)
{
	char port[16];
	snprintf(port, sizeof port, "%d", redis_port);
	redis_pid = fork();
	if (redis_pid == 0) {
		execl(REDIS_SERVER, REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--dir", redis_dir, "--save", "",
		      "--appendonly", "no", "--logfile", "/dev/null", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && !redis_listening(); i++) /* 5 s at most */
		usleep(10000);
}

static void redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = 0;
}

static int setup(void **state)
{
	(void)state;
	if (access(REDIS_SERVER, X_OK) != 0 || mkdtemp(redis_dir) == NULL)
		return 0;
	redis_port = free_port();
	redis_start();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	redis_stop();
	rmdir(redis_dir);
	return 0;
}

static struct budget_store *store_new(struct bs_config *cfg, char *cache, size_t len)
{
	char why[256] = "";

	if (redis_pid <= 0 || !redis_listening())
		skip();
	memset(cfg, 0, sizeof *cfg);
	snprintf(cache, len, "redis://127.0.0.1:%d/5", redis_port);
	cfg->cache = cache;
	cfg->cache_redis_timeout_ms = 1000;
	struct budget_store *s = budget_redis_new(cfg, 1000, why, sizeof why);
	assert_non_null(s);
	return s;
}

static void on_state(void *arg, const struct budget_state *st, size_t n)
{
	(void)arg;
	memcpy(got, st, n * sizeof *st);
	got_n = n;
	answered = true;
}

static void on_take(void *arg, unsigned n)
{
	(void)arg;
	granted = n;
	answered = true;
}

static void wait_answer(struct event_base *base)
{
	for (int i = 0; i < 300 && !answered; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(i < 10 ? 100 : 10000);
	assert_true(answered);
}

static struct budget_state call1(struct budget_store *s, struct event_base *base, bool add, const char *key,
				 const struct budget_rule *r)
{
	const char *keys[1] = { key };
	answered = false;
	got_n = 0;
	if (add)
		budget_store_add(s, base, keys, r, 1, now_ms(), on_state, NULL);
	else
		budget_store_get(s, base, keys, r, 1, now_ms(), on_state, NULL);
	wait_answer(base);
	assert_int_equal(got_n, 1);
	return got[0];
}

static void test_semantics_of_the_memory_store(void **state)
{
	(void)state;
	struct bs_config cfg;
	char cache[64];
	struct budget_store *s = store_new(&cfg, cache, sizeof cache);
	struct event_base *base = event_base_new();
	struct budget_rule r = { .limit = 3, .window_ms = HOUR, .penalty_ms = 10 * MINUTE };
	char key[64];

	snprintf(key, sizeof key, "a:192.0.2.%d", (int)(now_ms() % 200)); /* a fresh key per run */
	assert_int_equal(call1(s, base, false, key, &r).count, 0);
	struct budget_state st = call1(s, base, true, key, &r);
	assert_int_equal(st.count, 1);
	assert_false(st.tripped);
	assert_int_equal(st.penalty_until_ms, 0);
	assert_false(budget_over(&st, &r, now_ms()));
	call1(s, base, true, key, &r);
	st = call1(s, base, true, key, &r); /* the third reaches the limit: trips, penalty starts */
	uint64_t now = now_ms();
	assert_int_equal(st.count, 3);
	assert_true(st.tripped);
	assert_true(st.penalty_until_ms > now + 10 * MINUTE - 2000 && st.penalty_until_ms <= now + 10 * MINUTE + 10);
	assert_true(budget_over(&st, &r, now));
	uint64_t until = st.penalty_until_ms;
	st = call1(s, base, true, key, &r); /* past the limit: no new trip, the same penalty */
	assert_int_equal(st.count, 4);
	assert_false(st.tripped);
	assert_true(st.penalty_until_ms <= until + 50 && st.penalty_until_ms + 50 >= until);
	st = call1(s, base, false, key, &r);
	assert_int_equal(st.count, 4);
	assert_true(st.penalty_until_ms > 0);
	/* a reload changed the window: what was counted stays */
	struct budget_rule r2 = { .limit = 10, .window_ms = 30 * MINUTE, .penalty_ms = 0 };
	assert_int_equal(call1(s, base, false, key, &r2).count, 4);
	/* a rule without a limit never trips; a penalty of 0 is none */
	struct budget_rule off = { .limit = 0, .window_ms = HOUR }, nopen = { .limit = 1, .window_ms = HOUR };
	assert_false(call1(s, base, true, "n:198.51.100.0/24", &off).tripped);
	st = call1(s, base, true, "a:198.51.100.7", &nopen);
	assert_true(st.tripped);
	assert_int_equal(st.penalty_until_ms, 0);
	budget_store_forget_base(s, base);
	budget_store_free(s);
	event_base_free(base);
}

static void test_window_slides(void **state)
{
	(void)state;
	struct bs_config cfg;
	char cache[64];
	struct budget_store *s = store_new(&cfg, cache, sizeof cache);
	struct event_base *base = event_base_new();
	struct budget_rule r = { .limit = 100, .window_ms = 320 }; /* slots of 20 ms */
	char key[64];

	snprintf(key, sizeof key, "a:203.0.113.%d", (int)(now_ms() % 200));
	call1(s, base, true, key, &r);
	call1(s, base, true, key, &r);
	assert_int_equal(call1(s, base, false, key, &r).count, 2);
	usleep(400 * 1000); /* more than the window and a sixteenth */
	assert_int_equal(call1(s, base, false, key, &r).count, 0);
	budget_store_forget_base(s, base);
	budget_store_free(s);
	event_base_free(base);
}

static void test_shared_rate(void **state)
{
	(void)state;
	struct bs_config cfg;
	char cache[64];
	struct budget_store *s = store_new(&cfg, cache, sizeof cache);
	struct event_base *base = event_base_new();
	uint64_t second = (uint64_t)time(NULL) + 1000000; /* a second nobody else counts */
	static const unsigned asks[] = { 3, 3, 1 }, want[] = { 3, 2, 0 };

	assert_true(budget_store_shares_rates(s));
	for (size_t i = 0; i < 3; i++) {
		answered = false;
		budget_store_take(s, base, "mx.example:25", second, asks[i], 5, on_take, NULL);
		wait_answer(base);
		assert_int_equal(granted, want[i]);
	}
	budget_store_forget_base(s, base);
	budget_store_free(s);
	event_base_free(base);
}

/* Last: stops Redis. Answers come from the local store, which counted every add. */
static void test_fallback_when_redis_is_gone(void **state)
{
	(void)state;
	struct bs_config cfg;
	char cache[64];
	struct budget_store *s = store_new(&cfg, cache, sizeof cache);
	struct event_base *base = event_base_new();
	struct budget_rule r = { .limit = 2, .window_ms = HOUR, .penalty_ms = MINUTE };

	call1(s, base, true, "a:192.0.2.250", &r); /* counted in Redis and locally */
	redis_stop();
	struct budget_state st = call1(s, base, true, "a:192.0.2.250", &r);
	assert_int_equal(st.count, 2);
	assert_true(st.tripped);
	assert_int_equal(call1(s, base, false, "a:192.0.2.250", &r).count, 2);
	answered = false;
	budget_store_take(s, base, "mx.example:25", (uint64_t)time(NULL), 4, 1, on_take, NULL);
	wait_answer(base);
	assert_int_equal(granted, 4); /* this process's own limiter decides */
	budget_store_forget_base(s, base);
	budget_store_free(s);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_semantics_of_the_memory_store),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_shared_rate),
		cmocka_unit_test(test_fallback_when_redis_is_gone),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
