/* test_hdr_filter.c - Authentication-Results fields claiming our authserv-id leave the header
 * section (folded ones whole, whatever the chunking of the input), others stay, the body is
 * never touched; also the Received-SPF / Authentication-Results fields backstop writes and the
 * CIDR lists of spf_skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "cidr.h"
#include "engine.h"
#include "hdr_filter.h"
#include "spf_header.h"

struct sink {
	char buf[65536];
	size_t len;
};

static void sink_write(void *arg, const char *data, size_t len)
{
	struct sink *s = arg;
	assert_true(s->len + len < sizeof s->buf);
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
}

/* The message through the filter in chunks of `chunk` octets (0: whole). */
static void run(const char *in, size_t chunk, struct sink *out, unsigned *removed)
{
	static struct hdr_filter f;
	size_t len = strlen(in);

	hdr_filter_init(&f, "gw.example.org");
	out->len = 0;
	out->buf[0] = '\0';
	for (size_t i = 0; i < len;) {
		size_t n = chunk && chunk < len - i ? chunk : len - i;
		hdr_filter_feed(&f, in + i, n, sink_write, out);
		i += n;
	}
	hdr_filter_end(&f, sink_write, out);
	*removed = f.removed;
}

static void check_all_chunks(const char *in, const char *want, unsigned want_removed)
{
	struct sink out;
	unsigned removed;
	size_t chunks[] = { 0, 1, 2, 3, 7, 64 };

	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		run(in, chunks[i], &out, &removed);
		assert_string_equal(out.buf, want);
		assert_int_equal(removed, want_removed);
	}
}

static void test_removes_ours(void **state)
{
	(void)state;
	check_all_chunks("Subject: hi\r\n"
			 "Authentication-Results: gw.example.org; spf=pass smtp.mailfrom=a@b.example\r\n"
			 "authentication-results :  GW.Example.Org (forged);\r\n\tdkim=pass\r\n"
			 "Authentication-Results: (c) \"gw.example.org\"; none\r\n"
			 "Authentication-Results: other.example; spf=fail\r\n"
			 "Authentication-Results: gw.example.org.evil; spf=pass\r\n"
			 "From: x@y.example\r\n"
			 "\r\n"
			 "Authentication-Results: gw.example.org; in the body stays\r\n",
			 "Subject: hi\r\n"
			 "Authentication-Results: other.example; spf=fail\r\n"
			 "Authentication-Results: gw.example.org.evil; spf=pass\r\n"
			 "From: x@y.example\r\n"
			 "\r\n"
			 "Authentication-Results: gw.example.org; in the body stays\r\n",
			 3);
}

static void test_last_field_and_no_body(void **state)
{
	(void)state;
	check_all_chunks("X-A: 1\r\nAuthentication-Results: gw.example.org;\r\n\tspf=pass\r\n", "X-A: 1\r\n", 1);
	check_all_chunks("Authentication-Results-X: gw.example.org\r\n\r\nbody\r\n",
			 "Authentication-Results-X: gw.example.org\r\n\r\nbody\r\n", 0);
	check_all_chunks("no colon line\r\nAuthentication-Results: gw.example.org\r\n\r\n", "no colon line\r\n\r\n", 1);
	check_all_chunks("\r\nAuthentication-Results: gw.example.org\r\n", "\r\nAuthentication-Results: gw.example.org\r\n", 0);
}

static void test_too_long_passes(void **state)
{
	(void)state;
	static char in[HDR_HOLD_MAX * 2 + 200];
	int n = snprintf(in, sizeof in, "Authentication-Results: gw.example.org;");
	while ((size_t)n < HDR_HOLD_MAX + 100)
		n += snprintf(in + n, sizeof in - (size_t)n, "\r\n\tspf=pass");
	snprintf(in + n, sizeof in - (size_t)n, "\r\n\r\nbody\r\n");
	check_all_chunks(in, in, 0);
}

static void test_received_spf(void **state)
{
	(void)state;
	char out[2048];
	struct spf_header_in in = {
		.result = "fail", .identity = "mailfrom", .identity_value = "us\"er@example.com",
		.client_ip = "192.0.2.1", .helo = "[192.0.2.1]", .envelope_from = "us\"er@example.com",
		.receiver = "gw.example.org", .mechanism = "-all", .problem = NULL,
	};
	size_t n = spf_received_header(&in, out, sizeof out);
	assert_int_equal(n, strlen(out));
	assert_non_null(strstr(out, "Received-SPF: fail (gw.example.org: domain of us\"er@example.com does not designate 192.0.2.1 as permitted sender)\r\n"));
	assert_non_null(strstr(out, "client-ip=192.0.2.1;"));
	assert_non_null(strstr(out, "envelope-from=\"us\\\"er@example.com\";"));
	assert_non_null(strstr(out, "helo=\"[192.0.2.1]\"; identity=mailfrom;\r\n\tmechanism=-all\r\n"));
	assert_int_equal(spf_received_header(&in, out, 40), 0);
	struct spf_header_in helo = in;
	helo.result = "permerror";
	helo.identity = "helo";
	helo.identity_value = "mx.example.com";
	helo.problem = "bad (record)";
	n = spf_auth_results("gw.example.org", &in, &helo, out, sizeof out);
	assert_string_equal(out, "Authentication-Results: gw.example.org;\r\n"
				 "\tspf=fail (sender IP is 192.0.2.1) smtp.mailfrom=\"us\\\"er@example.com\";\r\n"
				 "\tspf=permerror (sender IP is 192.0.2.1) smtp.helo=mx.example.com\r\n");
	spf_received_header(&helo, out, sizeof out);
	assert_non_null(strstr(out, "permanent error in the SPF record of mx.example.com: bad [record]"));
	assert_non_null(strstr(out, "problem=\"bad (record)\""));
}

static void test_cidr(void **state)
{
	(void)state;
	struct cidr_list l;
	const char *why;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

	assert_int_equal(cidr_list_parse("192.0.2.0/24, 2001:db8::/32 198.51.100.7", &l, &why), 0);
	assert_int_equal(l.n, 3);
	inet_pton(AF_INET, "192.0.2.200", &sin.sin_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.3.1", &sin.sin_addr);
	assert_false(cidr_list_match(&l, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&sin));
	inet_pton(AF_INET6, "::ffff:192.0.2.9", &sin6.sin6_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8:ffff::1", &sin6.sin6_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db9::1", &sin6.sin6_addr);
	assert_false(cidr_list_match(&l, (struct sockaddr *)&sin6));
	cidr_list_free(&l);
	assert_int_equal(cidr_list_check("10.0.0.0/33", &why), -1);
	assert_int_equal(cidr_list_check("example.com", &why), -1);
	assert_int_equal(cidr_list_check("10.1.2.3/8", &why), 0);
	assert_int_equal(cidr_list_check("", &why), 0);
	assert_int_equal(cidr_list_parse("0.0.0.0/0", &l, &why), 0);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&sin));
	cidr_list_free(&l);
}

static void test_engine_fact(void **state)
{
	(void)state;
	size_t len = 0;
	const char *facts = "dnsbl listed x\nspf fail mailfrom a@b.example b.example does not designate\n";
	const char *v = engine_fact(facts, "spf", &len);
	assert_non_null(v);
	assert_int_equal(len, strlen("fail mailfrom a@b.example b.example does not designate"));
	assert_null(engine_fact(facts, "sp", &len));
	assert_null(engine_fact(NULL, "spf", &len));
	assert_null(engine_fact("", "spf", &len));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_removes_ours),
		cmocka_unit_test(test_last_field_and_no_body),
		cmocka_unit_test(test_too_long_passes),
		cmocka_unit_test(test_received_spf),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_engine_fact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
