/* test_proxy_proto.c - the PROXY protocol parser (v1 and v2: addresses, LOCAL/UNKNOWN, byte-by-byte
 * arrival, exact header length so the SMTP stream starts right after it, malformed headers) and
 * the CIDR lists of proxy_protocol_from. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cidr.h"
#include "proxy_proto.h"

static enum proxy_parse_result parse(const char *s, size_t len, struct proxy_header *h)
{
	return proxy_parse((const unsigned char *)s, len, h);
}

static const char *src_text(const struct proxy_header *h, char *buf, size_t len)
{
	const void *a = h->src.ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)&h->src)->sin6_addr
						     : (const void *)&((const struct sockaddr_in *)&h->src)->sin_addr;
	return inet_ntop(h->src.ss_family, a, buf, (socklen_t)len);
}

static void test_v1_tcp4(void **state)
{
	(void)state;
	const char *s = "PROXY TCP4 192.0.2.7 198.51.100.2 56324 25\r\nEHLO x\r\n";
	struct proxy_header h;
	char ip[64];

	assert_int_equal(parse(s, strlen(s), &h), PROXY_DONE);
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_int_equal(h.len, strlen("PROXY TCP4 192.0.2.7 198.51.100.2 56324 25\r\n"));
	assert_string_equal(src_text(&h, ip, sizeof ip), "192.0.2.7");
	assert_int_equal(ntohs(((struct sockaddr_in *)&h.src)->sin_port), 56324);
	/* every shorter prefix is incomplete, never wrong */
	for (size_t i = 0; i < h.len; i++)
		assert_int_equal(parse(s, i, &h), PROXY_INCOMPLETE);
}

static void test_v1_tcp6_unknown(void **state)
{
	(void)state;
	struct proxy_header h;
	char ip[64];
	const char *s6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
	assert_int_equal(parse(s6, strlen(s6), &h), PROXY_DONE);
	assert_string_equal(src_text(&h, ip, sizeof ip), "2001:db8::1");
	const char *u = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
	assert_int_equal(parse(u, strlen(u), &h), PROXY_DONE);
	assert_true(h.local);
	assert_int_equal(parse("PROXY UNKNOWN\r\n", 15, &h), PROXY_DONE);
	assert_true(h.local);
}

static void test_v1_malformed(void **state)
{
	(void)state;
	static const char *bad[] = {
		"EHLO client.example\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 56324\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 56324 25 9\r\n",
		"PROXY TCP4 2001:db8::1 198.51.100.2 56324 25\r\n",
		"PROXY TCP6 192.0.2.7 198.51.100.2 56324 25\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 65536 25\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 056 25\r\n",
		"PROXY TCP4 192.0.2.7  198.51.100.2 56 25\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 56 25\n",
		"PROXY TCP4 192.0.2.7 198.51.100.2 56 25\rX",
		"PROXY UDP4 192.0.2.7 198.51.100.2 56 25\r\n",
		"proxy TCP4 192.0.2.7 198.51.100.2 56 25\r\n",
	};
	struct proxy_header h;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), &h), PROXY_INVALID);
	char longline[200];
	memset(longline, 'A', sizeof longline);
	memcpy(longline, "PROXY ", 6);
	assert_int_equal(parse(longline, sizeof longline, &h), PROXY_INVALID);
	assert_int_equal(parse(longline, 105, &h), PROXY_INCOMPLETE);
	assert_int_equal(parse(longline, 106, &h), PROXY_INVALID); /* the CRLF would end past 107 */
	assert_int_equal(parse(longline, 107, &h), PROXY_INVALID);
}

static size_t v2(unsigned char *b, unsigned ver_cmd, unsigned fam, const unsigned char *addr, size_t alen)
{
	static const unsigned char sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
	memcpy(b, sig, 12);
	b[12] = (unsigned char)ver_cmd;
	b[13] = (unsigned char)fam;
	b[14] = (unsigned char)(alen >> 8);
	b[15] = (unsigned char)alen;
	memcpy(b + 16, addr, alen);
	return 16 + alen;
}

static void test_v2(void **state)
{
	(void)state;
	unsigned char b[700], a[64] = { 192, 0, 2, 9, 198, 51, 100, 2, 0x1f, 0x90, 0, 25 };
	struct proxy_header h;
	char ip[64];

	size_t n = v2(b, 0x21, 0x11, a, 12);
	memcpy(b + n, "EHLO", 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(proxy_parse(b, i, &h), PROXY_INCOMPLETE);
	assert_int_equal(proxy_parse(b, n + 4, &h), PROXY_DONE);
	assert_int_equal(h.len, n);
	assert_int_equal(h.version, 2);
	assert_string_equal(src_text(&h, ip, sizeof ip), "192.0.2.9");
	assert_int_equal(ntohs(((struct sockaddr_in *)&h.src)->sin_port), 8080);
	/* with TLVs after the addresses (skipped) */
	memset(a + 12, 0x04, 20);
	n = v2(b, 0x21, 0x11, a, 32);
	assert_int_equal(proxy_parse(b, n, &h), PROXY_DONE);
	assert_int_equal(h.len, 48);
	/* IPv6 */
	unsigned char a6[36] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 5, [31] = 1, [32] = 0, [33] = 1, [35] = 25 };
	n = v2(b, 0x21, 0x21, a6, 36);
	assert_int_equal(proxy_parse(b, n, &h), PROXY_DONE);
	assert_string_equal(src_text(&h, ip, sizeof ip), "2001:db8::5");
	/* LOCAL: the real peer */
	n = v2(b, 0x20, 0x00, a, 0);
	assert_int_equal(proxy_parse(b, n, &h), PROXY_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, 16);
}

static void test_v2_malformed(void **state)
{
	(void)state;
	unsigned char b[700], a[600] = { 0 };
	struct proxy_header h;

	size_t n = v2(b, 0x11, 0x11, a, 12); /* version 1 in a v2 header */
	assert_int_equal(proxy_parse(b, n, &h), PROXY_INVALID);
	n = v2(b, 0x22, 0x11, a, 12); /* unknown command */
	assert_int_equal(proxy_parse(b, n, &h), PROXY_INVALID);
	n = v2(b, 0x21, 0x11, a, 8); /* too short for INET */
	assert_int_equal(proxy_parse(b, n, &h), PROXY_INVALID);
	n = v2(b, 0x21, 0x12, a, 12); /* DGRAM */
	assert_int_equal(proxy_parse(b, n, &h), PROXY_INVALID);
	n = v2(b, 0x21, 0x11, a, 600); /* longer than we take */
	assert_int_equal(proxy_parse(b, 20, &h), PROXY_INVALID);
	b[5] = 'X'; /* a broken signature */
	assert_int_equal(proxy_parse(b, 6, &h), PROXY_INVALID);
}

static void test_cidr(void **state)
{
	(void)state;
	struct cidr_list l = { NULL, 0 };
	const char *why = NULL;
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };

	assert_int_equal(cidr_list_parse("10.1.0.0/16, 192.0.2.7 2001:db8::/32", &l, &why), 0);
	assert_int_equal(l.n, 3);
	inet_pton(AF_INET, "10.1.200.3", &s4.sin_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&s4));
	inet_pton(AF_INET, "10.2.0.1", &s4.sin_addr);
	assert_false(cidr_list_match(&l, (struct sockaddr *)&s4));
	inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&s4));
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &s6.sin6_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&s6)); /* a dual-stack listener's IPv4 peer */
	inet_pton(AF_INET6, "2001:db8:ff::1", &s6.sin6_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&s6));
	inet_pton(AF_INET6, "2001:db9::1", &s6.sin6_addr);
	assert_false(cidr_list_match(&l, (struct sockaddr *)&s6));
	cidr_list_free(&l);
	for (const char *bad = "10.0.0.0/33\0" "10.0.0.0/\0" "example.com\0"; *bad; bad += strlen(bad) + 1)
		assert_int_equal(cidr_list_check(bad, &why), -1);
	assert_int_equal(cidr_list_check("", &why), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6_unknown),
		cmocka_unit_test(test_v1_malformed),
		cmocka_unit_test(test_v2),
		cmocka_unit_test(test_v2_malformed),
		cmocka_unit_test(test_cidr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
