/* test_connlimit.c - admission control: total and per-IP limits, release on every path, IPv4
 * and IPv6 keyed apart, and the table surviving many distinct clients. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "connlimit.h"

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	inet_pton(AF_INET, ip, &sa.sin_addr);
	return sa;
}

static void test_per_ip_limit(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_new();
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	for (int i = 0; i < 3; i++)
		assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 100, 3), CONNLIMIT_OK);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 100, 3), CONNLIMIT_PER_IP);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&b, 100, 3), CONNLIMIT_OK);
	connlimit_release(cl, (struct sockaddr *)&a);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 100, 3), CONNLIMIT_OK);
	assert_int_equal(connlimit_total(cl), 4);
	connlimit_free(cl);
}

static void test_total_limit(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_new();
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 2, 10), CONNLIMIT_OK);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&b, 2, 10), CONNLIMIT_OK);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&b, 2, 10), CONNLIMIT_TOTAL);
	connlimit_release(cl, (struct sockaddr *)&b);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&b, 2, 10), CONNLIMIT_OK);
	connlimit_free(cl);
}

static void test_v6_and_mapped_v4(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_new();
	struct sockaddr_in a = v4("192.0.2.1");
	struct sockaddr_in6 m = { .sin6_family = AF_INET6 }, six = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &m.sin6_addr);
	inet_pton(AF_INET6, "2001:db8::1", &six.sin6_addr);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 100, 1), CONNLIMIT_OK);
	/* the same client over a dual-stack socket counts as the same address */
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&m, 100, 1), CONNLIMIT_PER_IP);
	assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&six, 100, 1), CONNLIMIT_OK);
	connlimit_free(cl);
}

static void test_many_clients_churn(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_new();
	char ip[32];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 20000; i++) {
			snprintf(ip, sizeof ip, "10.%d.%d.%d", round, i / 256, i % 256);
			struct sockaddr_in a = v4(ip);
			assert_int_equal(connlimit_acquire(cl, (struct sockaddr *)&a, 1000000, 1), CONNLIMIT_OK);
		}
		assert_int_equal(connlimit_total(cl), 20000);
		for (int i = 0; i < 20000; i++) {
			snprintf(ip, sizeof ip, "10.%d.%d.%d", round, i / 256, i % 256);
			struct sockaddr_in a = v4(ip);
			connlimit_release(cl, (struct sockaddr *)&a);
		}
		assert_int_equal(connlimit_total(cl), 0);
	}
	connlimit_free(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_per_ip_limit),
		cmocka_unit_test(test_total_limit),
		cmocka_unit_test(test_v6_and_mapped_v4),
		cmocka_unit_test(test_many_clients_churn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
