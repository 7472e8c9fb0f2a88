/* test_config_value.c - the typed value parsers: sizes, durations, booleans, enums, uints and
 * host:port lists, with their overflow and syntax errors, and the formatters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config_value.h"

static void test_uint(void **state)
{
	uint64_t v;
	const char *why = NULL;

	(void)state;
	assert_int_equal(cfgval_uint("0", &v, &why), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cfgval_uint("18446744073709551615", &v, &why), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(cfgval_uint("18446744073709551616", &v, &why), -1);
	assert_string_equal(why, "number too large");
	assert_int_equal(cfgval_uint("-1", &v, &why), -1);
	assert_int_equal(cfgval_uint("12a", &v, &why), -1);
	assert_int_equal(cfgval_uint("", &v, &why), -1);
	assert_int_equal(cfgval_uint(" 1", &v, &why), -1);
}

static void test_size(void **state)
{
	uint64_t v;
	const char *why = NULL;

	(void)state;
	assert_int_equal(cfgval_size("512", &v, &why), 0);
	assert_int_equal(v, 512);
	assert_int_equal(cfgval_size("4K", &v, &why), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(cfgval_size("50M", &v, &why), 0);
	assert_int_equal(v, 50u << 20);
	assert_int_equal(cfgval_size("2g", &v, &why), 0);
	assert_true(v == (uint64_t)2 << 30);
	assert_int_equal(cfgval_size("17179869184G", &v, &why), -1); /* 2^34 G = 2^64 */
	assert_string_equal(why, "number too large");
	assert_int_equal(cfgval_size("17179869183G", &v, &why), 0);
	assert_int_equal(cfgval_size("5T", &v, &why), -1);
	assert_int_equal(cfgval_size("5MB", &v, &why), -1);
	assert_int_equal(cfgval_size("M", &v, &why), -1);
	assert_int_equal(cfgval_size("1.5M", &v, &why), -1);
}

static void test_duration(void **state)
{
	uint64_t v;
	const char *why = NULL;

	(void)state;
	assert_int_equal(cfgval_duration("30", &v, &why), 0); /* bare number: seconds */
	assert_int_equal(v, 30000);
	assert_int_equal(cfgval_duration("250ms", &v, &why), 0);
	assert_int_equal(v, 250);
	assert_int_equal(cfgval_duration("5m", &v, &why), 0);
	assert_int_equal(v, 300000);
	assert_int_equal(cfgval_duration("1h30m", &v, &why), 0);
	assert_int_equal(v, 5400000);
	assert_int_equal(cfgval_duration("1d2h3m4s5ms", &v, &why), 0);
	assert_int_equal(v, 86400000 + 7200000 + 180000 + 4000 + 5);
	assert_int_equal(cfgval_duration("0s", &v, &why), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cfgval_duration("1h30", &v, &why), -1); /* trailing bare number */
	assert_int_equal(cfgval_duration("5w", &v, &why), -1);
	assert_int_equal(cfgval_duration("h", &v, &why), -1);
	assert_int_equal(cfgval_duration("", &v, &why), -1);
	assert_int_equal(cfgval_duration("18446744073709551615", &v, &why), -1); /* *1000 */
	assert_int_equal(cfgval_duration("213503982335d", &v, &why), -1);
	assert_int_equal(cfgval_duration("18446744073709551615ms1ms", &v, &why), -1);
}

static void test_bool_enum(void **state)
{
	static const char *const vals[] = { "log", "reject", NULL };
	bool b = false;
	int e = -1;
	const char *why = NULL;

	(void)state;
	assert_int_equal(cfgval_bool("yes", &b, &why), 0);
	assert_true(b);
	assert_int_equal(cfgval_bool("Off", &b, &why), 0);
	assert_false(b);
	assert_int_equal(cfgval_bool("1", &b, &why), 0);
	assert_true(b);
	assert_int_equal(cfgval_bool("false", &b, &why), 0);
	assert_false(b);
	assert_int_equal(cfgval_bool("maybe", &b, &why), -1);
	assert_int_equal(cfgval_enum("reject", vals, &e, &why), 0);
	assert_int_equal(e, 1);
	assert_int_equal(cfgval_enum("log", vals, &e, &why), 0);
	assert_int_equal(e, 0);
	assert_int_equal(cfgval_enum("drop", vals, &e, &why), -1);
}

static void test_hostport_list(void **state)
{
	struct bs_hostport_list l = { NULL, 0 };
	const char *why = NULL;

	(void)state;
	assert_int_equal(cfgval_hostport_list("127.0.0.1:2525, [::1]:2525", &l, &why), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.items[0].host, "127.0.0.1");
	assert_string_equal(l.items[0].port, "2525");
	assert_string_equal(l.items[1].host, "::1");
	assert_string_equal(l.items[1].port, "2525");
	assert_int_equal(cfgval_hostport_list("*:25 mx.example.test:0,,a-b_c.d:65535", &l, &why),
			 0); /* appends */
	assert_int_equal(l.n, 5);
	assert_string_equal(l.items[2].host, "*");
	assert_string_equal(l.items[3].port, "0");
	assert_string_equal(l.items[4].host, "a-b_c.d");
	cfgval_hostport_list_free(&l);
	assert_null(l.items);

	assert_int_equal(cfgval_hostport_list("::1:25", &l, &why), -1);
	assert_string_equal(why, "an IPv6 address needs brackets: [::1]:25");
	assert_int_equal(cfgval_hostport_list("host", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("host:", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("host:65536", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("host:123456", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("host:2x", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("[::1]", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("[nope]:25", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("[::1:25", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list("a:1, b/c:2", &l, &why), -1);
	assert_int_equal(cfgval_hostport_list(" , ", &l, &why), -1);
	assert_int_equal(l.n, 0); /* failures leave the list alone */
}

static void test_format(void **state)
{
	char buf[64];

	(void)state;
	cfgval_format_size(50u << 20, buf, sizeof(buf));
	assert_string_equal(buf, "50M");
	cfgval_format_size(1000, buf, sizeof(buf));
	assert_string_equal(buf, "1000");
	cfgval_format_size((uint64_t)1 << 40, buf, sizeof(buf));
	assert_string_equal(buf, "1024G");
	cfgval_format_duration(5400000, buf, sizeof(buf));
	assert_string_equal(buf, "1h30m");
	cfgval_format_duration(0, buf, sizeof(buf));
	assert_string_equal(buf, "0s");
	cfgval_format_duration(1001, buf, sizeof(buf));
	assert_string_equal(buf, "1s1ms");
	cfgval_format_duration(1001, buf, 3); /* truncated, still a string */
	assert_int_equal(strlen(buf), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uint),	       cmocka_unit_test(test_size),
		cmocka_unit_test(test_duration),       cmocka_unit_test(test_bool_enum),
		cmocka_unit_test(test_hostport_list),  cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
