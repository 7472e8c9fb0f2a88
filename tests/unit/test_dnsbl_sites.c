/* test_dnsbl_sites.c - the postscreen_dnsbl_sites parser (filters with ranges, weights, repeated
 * domains), query names in dotted and nibble form (IPv4-mapped clients as IPv4), and what a
 * reply address means. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "dnsbl_sites.h"

static const uint8_t *ip4(const char *s)
{
	static uint8_t a[4];
	assert_int_equal(inet_pton(AF_INET, s, a), 1);
	return a;
}

static void test_postscreen_example(void **state)
{
	struct dnsbl_sites s;
	char why[256] = "";
	(void)state;
	assert_int_equal(dnsbl_sites_parse("zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net*2, "
					   "list.dnswl.org=127.0.[0..255].[1..3]*-2", &s, why, sizeof why), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.ndomains, 3);
	assert_string_equal(s.items[0].domain, "zen.spamhaus.org");
	assert_true(s.items[0].has_filter);
	assert_int_equal(s.items[0].weight, 3);
	assert_true(dnsbl_site_matches(&s.items[0], ip4("127.0.0.2")));
	assert_true(dnsbl_site_matches(&s.items[0], ip4("127.0.0.11")));
	assert_false(dnsbl_site_matches(&s.items[0], ip4("127.0.0.12")));
	assert_false(dnsbl_site_matches(&s.items[0], ip4("127.0.0.1")));
	assert_false(dnsbl_site_matches(&s.items[0], ip4("127.0.1.2")));
	assert_string_equal(s.items[1].domain, "bl.spamcop.net");
	assert_false(s.items[1].has_filter);
	assert_int_equal(s.items[1].weight, 2);
	assert_true(dnsbl_site_matches(&s.items[1], ip4("10.1.2.3"))); /* no filter: anything */
	assert_int_equal(s.items[2].weight, -2);
	assert_true(dnsbl_site_matches(&s.items[2], ip4("127.0.200.3")));
	assert_false(dnsbl_site_matches(&s.items[2], ip4("127.0.200.0")));
	assert_false(dnsbl_site_matches(&s.items[2], ip4("127.0.200.4")));
	dnsbl_sites_free(&s);
}

static void test_lists_and_separators(void **state)
{
	struct dnsbl_sites s;
	char why[256] = "";
	(void)state;
	/* ';' lists, spaces only, a trailing dot, upper case, '+' weight, a domain twice */
	assert_int_equal(dnsbl_sites_parse("  B.Example.TEST.=127.0.0.[2;4;6..8]*+4\tb.example.test=127.0.0.10 "
					   "c.example.test,,", &s, why, sizeof why), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.ndomains, 2);
	assert_string_equal(s.items[0].domain, "b.example.test");
	assert_int_equal(s.items[0].domain_index, s.items[1].domain_index);
	assert_int_not_equal(s.items[0].domain_index, s.items[2].domain_index);
	assert_ptr_equal(dnsbl_sites_domain(&s, 0), &s.items[0]);
	assert_ptr_equal(dnsbl_sites_domain(&s, 1), &s.items[2]);
	assert_int_equal(s.items[0].weight, 4);
	assert_int_equal(s.items[1].weight, 1);
	for (unsigned v = 0; v < 256; v++) {
		char a[16];
		snprintf(a, sizeof a, "127.0.0.%u", v);
		assert_int_equal(dnsbl_site_matches(&s.items[0], ip4(a)), v == 2 || v == 4 || (v >= 6 && v <= 8));
		assert_int_equal(dnsbl_site_matches(&s.items[1], ip4(a)), v == 10);
	}
	dnsbl_sites_free(&s);
	assert_int_equal(dnsbl_sites_parse("", &s, why, sizeof why), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(dnsbl_sites_parse(" , ", &s, why, sizeof why), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(dnsbl_sites_parse(NULL, &s, why, sizeof why), 0);
	assert_int_equal(s.n, 0);
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
		"zen.spamhaus.org=127.0.0.[2..11",    /* unclosed */
		"zen.spamhaus.org=127.0.0.[11..2]",   /* reversed */
		"zen.spamhaus.org=127.0.0.256",
		"zen.spamhaus.org=127.0.0",           /* three octets */
		"zen.spamhaus.org=127.0.0.2.5",
		"zen.spamhaus.org=127.0.0.2..5",      /* range outside brackets */
		"zen.spamhaus.org*",
		"zen.spamhaus.org*x",
		"zen.spamhaus.org*1000001",
		"zen.spamhaus.org*3x",
		"org",                                /* a top-level domain */
		".zen.spamhaus.org",
		"zen..spamhaus.org",
		"zen.spam haus.org=127.0.0.2 =",
		"=127.0.0.2",
		"zen.spamhaus.org=",
		"zen.spamhaus.org=[1..2].0.0.2*3*4",
		"zen.spamhaus.org=127.0.0.[]",
		"zen.spamhaus.org=127.0.0.[2;]",
		"zen.spam/haus.org",
		"zenzen..",                           /* found by fuzz_dnsbl_sites */
		"zen.test-",
	};
	struct dnsbl_sites s;
	char why[256];
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		if (dnsbl_sites_parse(bad[i], &s, why, sizeof why) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_true(strncmp(why, "entry ", 6) == 0);
	}
	/* the message names the entry and says what is expected */
	assert_int_equal(dnsbl_sites_parse("a.test, b.test=127.0.0.[9..1]", &s, why, sizeof why), -1);
	assert_non_null(strstr(why, "entry 2 (b.test=127.0.0.[9..1])"));
	assert_non_null(strstr(why, "[2..11]"));
	/* a domain that leaves no room for an IPv6 query name */
	char longname[DNSBL_DOMAIN_MAX + 8];
	memset(longname, 'a', sizeof longname);
	for (size_t i = 50; i < sizeof longname - 1; i += 51)
		longname[i] = '.';
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(dnsbl_sites_parse(longname, &s, why, sizeof why), -1);
	/* too many entries */
	char many[DNSBL_SITES_MAX * 12 + 16] = "";
	for (int i = 0; i <= DNSBL_SITES_MAX; i++) {
		char e[16];
		snprintf(e, sizeof e, "l%d.test,", i);
		strcat(many, e);
	}
	assert_int_equal(dnsbl_sites_parse(many, &s, why, sizeof why), -1);
	assert_non_null(strstr(why, "more than"));
}

static void test_reply_error(void **state)
{
	(void)state;
	assert_true(dnsbl_reply_is_error(ip4("127.255.255.254")));
	assert_true(dnsbl_reply_is_error(ip4("127.255.255.0")));
	assert_false(dnsbl_reply_is_error(ip4("127.255.254.254")));
	assert_false(dnsbl_reply_is_error(ip4("127.0.0.2")));
}

static void sa4(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof *ss);
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

static void sa6(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
}

static void test_query_names(void **state)
{
	struct sockaddr_storage ss;
	uint8_t a[16];
	int family;
	char name[DNSBL_QNAME_MAX];
	(void)state;
	sa4(&ss, "192.0.2.99");
	assert_int_equal(dnsbl_client_addr((struct sockaddr *)&ss, &family, a), 0);
	assert_int_equal(dnsbl_query_name(family, a, "zen.spamhaus.org", name, sizeof name), 0);
	assert_string_equal(name, "99.2.0.192.zen.spamhaus.org.");
	sa6(&ss, "2001:db8:1:2::3:4");
	assert_int_equal(dnsbl_client_addr((struct sockaddr *)&ss, &family, a), 0);
	assert_int_equal(family, AF_INET6);
	assert_int_equal(dnsbl_query_name(family, a, "bl.test", name, sizeof name), 0);
	assert_string_equal(name, "4.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test.");
	sa6(&ss, "::ffff:192.0.2.1");
	assert_int_equal(dnsbl_client_addr((struct sockaddr *)&ss, &family, a), 0);
	assert_int_equal(family, AF_INET);
	assert_int_equal(dnsbl_query_name(family, a, "bl.test", name, sizeof name), 0);
	assert_string_equal(name, "1.2.0.192.bl.test.");
	assert_int_equal(dnsbl_query_name(family, a, "bl.test", name, 10), -1);
	ss.ss_family = AF_UNIX;
	assert_int_equal(dnsbl_client_addr((struct sockaddr *)&ss, &family, a), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postscreen_example),
		cmocka_unit_test(test_lists_and_separators),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_reply_error),
		cmocka_unit_test(test_query_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
