/* test_smtp_address.c - domain_normalise(), smtp_path_parse() and smtp_address_format(), plus
 * every case of the is_email RFC 5321 envelope corpus (tests/data/isemail-rfc5321-envelope.tsv). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_address.h"

static enum smtp_addr_status parse(const char *s, bool allow_null, bool allow_utf8,
				   struct smtp_address *a)
{
	size_t used = 0;
	enum smtp_addr_status st = smtp_path_parse(s, strlen(s), allow_null, allow_utf8, a, &used);
	if (st == ADDR_OK)
		assert_int_equal(used, strlen(s));
	else
		assert_int_equal(used, 0);
	return st;
}

static void expect_norm(const char *in, bool utf8, const char *want)
{
	char out[SMTP_DOMAIN_MAX + 1];
	size_t n = domain_normalise(in, strlen(in), utf8, out, sizeof(out));
	if (want == NULL) {
		if (n != 0)
			fail_msg("domain_normalise(\"%s\") accepted as \"%s\"", in, out);
		return;
	}
	if (n == 0)
		fail_msg("domain_normalise(\"%s\") refused", in);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_domain_normalise(void **state)
{
	(void)state;
	expect_norm("Example.TEST", false, "example.test");
	expect_norm("EXAMPLE.test.", false, "example.test");
	expect_norm("a", false, "a");
	expect_norm("1-2.3com", false, "1-2.3com");
	expect_norm("xn--bcher-kva.ch", false, "xn--bcher-kva.ch");
	expect_norm("b\xc3\xbc" "cher.ch", true, "b\xc3\xbc" "cher.ch");
	expect_norm("B\xc3\x9c" "CHER.ch", true, "b\xc3\x9c" "cher.ch"); /* ASCII folding only */
	expect_norm("b\xc3\xbc" "cher.ch", false, NULL);
	expect_norm("b\xc0\x80.ch", true, NULL);     /* overlong */
	expect_norm("b\xed\xa0\x80.ch", true, NULL); /* surrogate */
	expect_norm("b\xf4\x90\x80\x80.ch", true, NULL); /* above U+10FFFF */
	expect_norm("b\xc3", true, NULL);            /* truncated */
	expect_norm("example.test..", false, NULL);  /* only one trailing dot */
	expect_norm(".example.test", false, NULL);
	expect_norm("example..test", false, NULL);
	expect_norm(".", false, NULL);
	expect_norm("", false, NULL);
	expect_norm("-a.test", false, NULL);
	expect_norm("a-.test", false, NULL);
	expect_norm("a_b.test", false, NULL);
	expect_norm("a b.test", false, NULL);
	expect_norm("a@b.test", false, NULL);
	/* labels: 63 octets max */
	char label[80];
	memset(label, 'a', 63);
	strcpy(label + 63, ".test");
	expect_norm(label, false, label);
	memset(label, 'a', 64);
	strcpy(label + 64, ".test");
	expect_norm(label, false, NULL);
	/* the whole domain: 255 octets max (plus one trailing dot) */
	char dom[300];
	size_t n = 0;
	while (n + 4 <= 253) {
		memcpy(dom + n, "abc.", 4);
		n += 4;
	}
	memcpy(dom + n, "ab", 2); /* 254 octets */
	dom[n + 2] = 'c';          /* 255 */
	dom[n + 3] = '\0';
	expect_norm(dom, false, dom);
	dom[n + 3] = '.';
	dom[n + 4] = '\0';
	char want[300];
	memcpy(want, dom, n + 3);
	want[n + 3] = '\0';
	expect_norm(dom, false, want);
	dom[n + 3] = 'd';
	expect_norm(dom, false, NULL);
	/* address literals, canonicalised */
	expect_norm("[192.0.2.1]", false, "[192.0.2.1]");
	expect_norm("[IPv6:2001:DB8:0:0:0:0:0:1]", false, "[ipv6:2001:db8::1]");
	expect_norm("[ipv6:::ffff:192.0.2.1]", false, "[ipv6:::ffff:192.0.2.1]");
	expect_norm("[192.0.2.256]", false, NULL);
	expect_norm("[192.0.2]", false, NULL);
	expect_norm("[2001:db8::1]", false, NULL);   /* IPv6 needs its tag */
	expect_norm("[IPv6:192.0.2.1]", false, NULL);
	expect_norm("[x400:c=us]", false, NULL);     /* General-address-literal refused */
	expect_norm("[192.0.2.1", false, NULL);
	expect_norm("[]", false, NULL);
	expect_norm("[IPv6:1:2:3:4:5:6::8]", false, NULL); /* RFC 5321: "::" is >= 2 groups */
	expect_norm("[IPv6:1:2:3:4:5::8]", false, "[ipv6:1:2:3:4:5::8]");
	/* small output buffer */
	char small[4];
	assert_int_equal(domain_normalise("example.test", 12, false, small, sizeof(small)), 0);
	assert_int_equal(domain_normalise("[192.0.2.1]", 11, false, small, sizeof(small)), 0);
}

static void test_path_basic(void **state)
{
	struct smtp_address a;
	(void)state;
	assert_int_equal(parse("<User.Name+tag@Example.TEST>", false, false, &a), ADDR_OK);
	assert_string_equal(a.local, "User.Name+tag");
	assert_string_equal(a.local_raw, "User.Name+tag");
	assert_string_equal(a.domain, "example.test");
	assert_int_equal(a.domain_len, 12);
	assert_false(a.quoted_local || a.ip_literal || a.had_source_route || a.utf8 || a.is_null);

	/* consumed stops at '>' */
	size_t used = 0;
	const char *s = "<a@b.test> SIZE=10";
	assert_int_equal(smtp_path_parse(s, strlen(s), false, false, &a, &used), ADDR_OK);
	assert_int_equal(used, 10);

	assert_int_equal(parse("<>", true, false, &a), ADDR_OK);
	assert_true(a.is_null);
	assert_int_equal(parse("<>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("a@b.test", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a@b.test", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a@b.test.>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("< a@b.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a@b.test >", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<@b.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a@>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a..b@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a.@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<a@b@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("", false, false, &a), ADDR_SYNTAX);
}

static void test_path_quoted(void **state)
{
	struct smtp_address a;
	(void)state;
	assert_int_equal(parse("<\"john \\\"j\\\" doe\"@example.test>", false, false, &a), ADDR_OK);
	assert_true(a.quoted_local);
	assert_string_equal(a.local, "\"john \\\"j\\\" doe\"");
	assert_string_equal(a.local_raw, "john \"j\" doe");
	assert_int_equal(a.local_raw_len, 12);
	assert_int_equal(parse("<\"user@other\"@example.test>", false, false, &a), ADDR_OK);
	assert_string_equal(a.local_raw, "user@other");
	assert_int_equal(parse("<\"\"@example.test>", false, false, &a), ADDR_OK);
	assert_int_equal(a.local_raw_len, 0);
	assert_int_equal(parse("<\"a>b\"@example.test>", false, false, &a), ADDR_OK);
	assert_string_equal(a.local_raw, "a>b");
	assert_int_equal(parse("<\"unclosed@example.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<\"a\\\x01\"@example.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<\"a\tb\"@example.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<\"a\"b@example.test>", false, false, &a), ADDR_SYNTAX);
}

static void test_path_literals(void **state)
{
	struct smtp_address a;
	(void)state;
	assert_int_equal(parse("<postmaster@[192.0.2.1]>", false, false, &a), ADDR_OK);
	assert_true(a.ip_literal);
	assert_string_equal(a.domain, "[192.0.2.1]");
	assert_int_equal(parse("<u@[IPv6:2001:DB8::0:1]>", false, false, &a), ADDR_OK);
	assert_true(a.ip_literal);
	assert_string_equal(a.domain, "[ipv6:2001:db8::1]");
	assert_int_equal(parse("<u@[tag:content]>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<u@[192.0.2.1]x>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<u@[192.0.2.1>", false, false, &a), ADDR_SYNTAX);
}

static void test_path_source_route(void **state)
{
	struct smtp_address a;
	(void)state;
	assert_int_equal(parse("<@a.test,@b.test:user@c.test>", false, false, &a), ADDR_OK);
	assert_true(a.had_source_route);
	assert_string_equal(a.local, "user");
	assert_string_equal(a.domain, "c.test");
	assert_int_equal(parse("<@a.test:user@c.test>", false, false, &a), ADDR_OK);
	assert_int_equal(parse("<@a.test,user@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<@a.test:>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<@:user@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<@a..test:user@c.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<@a.test,b.test:user@c.test>", false, false, &a), ADDR_SYNTAX);
}

static void test_path_lengths(void **state)
{
	struct smtp_address a;
	char buf[600];
	(void)state;
	/* local part: 64 ok, 65 too long */
	buf[0] = '<';
	memset(buf + 1, 'l', 64);
	strcpy(buf + 65, "@example.test>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_OK);
	assert_int_equal(a.local_len, 64);
	memset(buf + 1, 'l', 65);
	strcpy(buf + 66, "@example.test>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_TOO_LONG);
	/* quoted local parts count their quotes */
	buf[1] = '"';
	memset(buf + 2, 'q', 62);
	strcpy(buf + 64, "\"@example.test>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_OK);
	assert_int_equal(a.local_raw_len, 62);
	memset(buf + 2, 'q', 63);
	strcpy(buf + 65, "\"@example.test>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_TOO_LONG);
	/* path: 256 octets including the brackets: "<" 64 "@" 189 ">" = 256 */
	char dom[256];
	size_t n = 0;
	while (n + 10 <= 189) {
		memcpy(dom + n, "abcdefghi.", 10);
		n += 10;
	}
	memset(dom + n, 'z', 189 - n);
	dom[189] = '\0';
	snprintf(buf, sizeof(buf), "<%.64s@%s>",
		 "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll", dom);
	assert_int_equal(strlen(buf), 256);
	assert_int_equal(parse(buf, false, false, &a), ADDR_OK);
	snprintf(buf, sizeof(buf), "<%.64s@%sz>",
		 "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll", dom);
	assert_int_equal(parse(buf, false, false, &a), ADDR_TOO_LONG);
	/* a domain over 255 */
	memset(buf, 0, sizeof(buf));
	strcpy(buf, "<a@");
	for (int i = 0; i < 26; i++)
		strcat(buf, "abcdefghi.");
	strcat(buf, "test>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_TOO_LONG);
	/* too long but also malformed: syntax wins */
	memset(buf + 1, 'l', 70);
	strcpy(buf + 71, "@exa..mple>");
	assert_int_equal(parse(buf, false, false, &a), ADDR_SYNTAX);
}

static void test_path_utf8(void **state)
{
	struct smtp_address a;
	(void)state;
	const char *ok = "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>";
	assert_int_equal(parse(ok, false, false, &a), ADDR_NEEDS_UTF8);
	assert_int_equal(parse(ok, false, true, &a), ADDR_OK);
	assert_true(a.utf8);
	assert_string_equal(a.domain, "b\xc3\xbc" "cher.example");
	assert_int_equal(parse("<\"j\xc3\xb6 rg\"@example.test>", false, true, &a), ADDR_OK);
	assert_true(a.utf8);
	assert_int_equal(parse("<user@b\xc3\xbc" "cher.example>", false, false, &a), ADDR_NEEDS_UTF8);
	/* malformed UTF-8 is a syntax error whether or not UTF-8 is allowed */
	assert_int_equal(parse("<j\xc0\xafrg@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<j\xc0\xafrg@example.test>", false, false, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<j\xed\xb0\x80@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<j\xe0\x80\xaf@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<j\x80@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<j\xff@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_int_equal(parse("<\"j\xc3\"@example.test>", false, true, &a), ADDR_SYNTAX);
	assert_true(smtp_utf8_valid("abc\xf0\x9f\x98\x80", 7));
	assert_false(smtp_utf8_valid("\xf0\x9f\x98", 3));
	assert_false(smtp_utf8_valid("\xf8\x88\x80\x80\x80", 5));
}

static void test_format(void **state)
{
	struct smtp_address a;
	char buf[600];
	(void)state;
	assert_int_equal(parse("<\"a b\"@Example.TEST>", false, false, &a), ADDR_OK);
	assert_int_equal(smtp_address_format(&a, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "\"a b\"@example.test");
	assert_int_equal(smtp_address_format(&a, buf, 18), 0);
	assert_string_equal(buf, "");
	assert_int_equal(parse("<>", true, false, &a), ADDR_OK);
	buf[0] = 'x';
	assert_int_equal(smtp_address_format(&a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
}

/* ---- the is_email corpus ---- */

/* Undo the corpus escaping: "\\" is one backslash, "\xHH" the raw byte HH. */
static size_t corpus_unescape(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0' && o + 1 < outsz; i++) {
		if (in[i] == '\\' && in[i + 1] == '\\') {
			out[o++] = '\\';
			i++;
		} else if (in[i] == '\\' && in[i + 1] == 'x' && in[i + 2] && in[i + 3]) {
			char hex[3] = {in[i + 2], in[i + 3], '\0'};
			out[o++] = (char)strtoul(hex, NULL, 16);
			i += 3;
		} else {
			out[o++] = in[i];
		}
	}
	return o;
}

/* Cases where backstop's verdict differs from the corpus, on purpose. Keep this short. */
struct corpus_exception {
	const char *set;
	const char *id;
	const char *why;
};
static const struct corpus_exception corpus_exceptions[] = {
	{NULL, NULL, NULL},
};

static const char *corpus_path(void)
{
	static char path[4096];
	const char *env = getenv("BACKSTOP_TEST_DATA");
	if (env != NULL) {
		snprintf(path, sizeof(path), "%s/isemail-rfc5321-envelope.tsv", env);
		return path;
	}
	/* __FILE__ is ".../tests/unit/test_smtp_address.c", absolute or relative to the build
	 * directory, which is where meson runs the tests */
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *slash = strrchr(path, '/');
	if (slash == NULL)
		return "tests/data/isemail-rfc5321-envelope.tsv";
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/../data/isemail-rfc5321-envelope.tsv");
	return path;
}

static bool is_exception(const char *set, const char *id)
{
	for (size_t i = 0; corpus_exceptions[i].set != NULL; i++)
		if (strcmp(corpus_exceptions[i].set, set) == 0 && strcmp(corpus_exceptions[i].id, id) == 0)
			return true;
	return false;
}

static void test_isemail_corpus(void **state)
{
	(void)state;
	FILE *f = fopen(corpus_path(), "r");
	if (f == NULL)
		fail_msg("cannot open %s", corpus_path());
	char line[2048];
	unsigned cases = 0, wrong = 0, excepted = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#' || strncmp(line, "set\t", 4) == 0)
			continue;
		char *fields[7] = {0};
		char *p = line;
		for (int k = 0; k < 7 && p != NULL; k++) {
			fields[k] = p;
			p = strchr(p, '\t');
			if (p != NULL)
				*p++ = '\0';
		}
		assert_non_null(fields[3]);
		char addr[1024], path[1100];
		size_t n = corpus_unescape(fields[2], addr, sizeof(addr));
		path[0] = '<';
		memcpy(path + 1, addr, n);
		path[n + 1] = '>';
		struct smtp_address a;
		size_t used = 0;
		bool ok = smtp_path_parse(path, n + 2, false, false, &a, &used) == ADDR_OK &&
			  used == n + 2;
		bool want = strcmp(fields[3], "valid") == 0;
		cases++;
		if (ok == want)
			continue;
		if (is_exception(fields[0], fields[1])) {
			excepted++;
			continue;
		}
		wrong++;
		print_message("corpus %s/%s <%s>: want %s, got %s\n", fields[0], fields[1], fields[2],
			      fields[3], ok ? "valid" : "invalid");
	}
	fclose(f);
	print_message("isemail corpus: %u cases, %u documented exceptions\n", cases, excepted);
	assert_true(cases > 400);
	assert_int_equal(wrong, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_domain_normalise),
		cmocka_unit_test(test_path_basic),
		cmocka_unit_test(test_path_quoted),
		cmocka_unit_test(test_path_literals),
		cmocka_unit_test(test_path_source_route),
		cmocka_unit_test(test_path_lengths),
		cmocka_unit_test(test_path_utf8),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_isemail_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
