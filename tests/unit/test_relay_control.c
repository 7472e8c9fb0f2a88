/* test_relay_control.c - relay control against the forms that relay testers (nmap smtp-open-relay,
 * Metasploit's SMTP relay scanner) and the RFCs use: every recipient must be refused unless it
 * is a plain mailbox of a configured [domain]. Recipients go through smtp_rcpt_parse() first,
 * as in a session; a form the parser already refuses counts as refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay_control.h"
#include "smtp_parse.h"

static struct bs_domain domains[3];
static struct bs_config cfg;

static int domain_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bs_domain *)a)->name, ((const struct bs_domain *)b)->name);
}

/* [domain example.test], [domain [192.0.2.10]], [domain [IPv6:2001:db8::25]], postmaster at
 * example.test; names normalised as the config loader does. */
static int setup(void **state)
{
	static const char *const names[] = {"Example.TEST", "[192.0.2.10]", "[IPv6:2001:DB8:0::25]"};
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(domains, 0, sizeof(domains));
	for (size_t i = 0; i < 3; i++)
		assert_true(domain_normalise(names[i], strlen(names[i]), false, domains[i].name,
					     sizeof(domains[i].name)) > 0);
	qsort(domains, 3, sizeof(domains[0]), domain_cmp);
	cfg.domains = domains;
	cfg.ndomains = 3;
	strcpy(cfg.postmaster_domain, "example.test");
	return 0;
}

enum outcome { ACCEPT, PARSE_REFUSED, DENIED, ROUTING, LITERAL };

/* RCPT TO:<path> through the parser and the policy. */
static enum outcome relay(const char *path, struct relay_decision *dec)
{
	char arg[600];
	struct smtp_rcpt_cmd r;
	struct smtp_parse_error err;
	snprintf(arg, sizeof(arg), "TO:%s", path);
	memset(dec, 0, sizeof(*dec));
	if (smtp_rcpt_parse(arg, strlen(arg), true, &r, &err) != 0)
		return PARSE_REFUSED;
	relay_control_check(&cfg, &r.to, dec);
	switch (dec->verdict) {
	case RELAY_ACCEPT:
		assert_non_null(dec->domain);
		return ACCEPT;
	case RELAY_DENIED:
		assert_int_equal(dec->code, 554);
		assert_string_equal(dec->enhanced, "5.7.1");
		assert_string_equal(dec->reason, "Relay access denied");
		return DENIED;
	case RELAY_ROUTING_LOCALPART:
		assert_int_equal(dec->code, 550);
		assert_string_equal(dec->enhanced, "5.7.1");
		assert_string_equal(dec->reason, "Local part holds routing characters");
		return ROUTING;
	case RELAY_IP_LITERAL:
		assert_int_equal(dec->code, 554);
		assert_string_equal(dec->enhanced, "5.7.1");
		assert_string_equal(dec->reason, "Relay access denied");
		return LITERAL;
	}
	fail();
	return DENIED;
}

#define EXPECT(path, want)                                                          \
	do {                                                                        \
		struct relay_decision dec_;                                         \
		enum outcome got_ = relay((path), &dec_);                           \
		if (got_ != (want))                                                 \
			fail_msg("%s: outcome %d, want %d", (path), got_, (want));  \
		if (got_ != ACCEPT)                                                 \
			assert_null(dec_.domain);                                   \
	} while (0)

static void test_plain_mailboxes(void **state)
{
	struct relay_decision dec;
	(void)state;
	EXPECT("<user@example.test>", ACCEPT);
	assert_int_equal(relay("<user@example.test>", &dec), ACCEPT);
	assert_string_equal(dec.domain->name, "example.test");
	EXPECT("<User@EXAMPLE.TEST>", ACCEPT);
	EXPECT("<\"user\"@example.test>", ACCEPT);
	EXPECT("<\"john doe\"@example.test>", ACCEPT); /* odd but a plain mailbox: verification decides */
	EXPECT("<first.last+tag@example.test>", ACCEPT);
	EXPECT("<Postmaster>", ACCEPT);
	assert_int_equal(relay("<postmaster>", &dec), ACCEPT);
	assert_string_equal(dec.domain->name, "example.test");
	EXPECT("<user@[192.0.2.10]>", ACCEPT);
	EXPECT("<user@[IPv6:2001:db8::25]>", ACCEPT);
	EXPECT("<user@[IPv6:2001:0DB8:0:0:0:0:0:25]>", ACCEPT);
	/* a source route is ignored (RFC 5321 4.1.2, C.): the mailbox is ours */
	EXPECT("<@relay.evil:user@example.test>", ACCEPT);
}

static void test_other_domains(void **state)
{
	(void)state;
	EXPECT("<user@other.test>", DENIED);
	EXPECT("<user@example.test.evil>", DENIED);
	EXPECT("<user@evilexample.test>", DENIED);
	EXPECT("<user@sub.example.test>", DENIED);
	EXPECT("<user@example.tes>", DENIED);
	EXPECT("<user@xample.test>", DENIED);
	EXPECT("<@example.test:user@other.test>", DENIED);
	EXPECT("<@example.test,@[192.0.2.10]:user@other.test>", DENIED);
	EXPECT("<user@b\xc3\xbc" "cher.example>", DENIED);
	/* forms the parser refuses outright */
	EXPECT("<user@EXAMPLE.TEST.>", PARSE_REFUSED); /* trailing dot: not RFC 5321 */
	EXPECT("<user@other.test@example.test>", PARSE_REFUSED);
	EXPECT("<user@example.test@other.test>", PARSE_REFUSED);
	EXPECT("<\"user@other.test\">", PARSE_REFUSED);
	EXPECT("<other.test!user>", PARSE_REFUSED);
	EXPECT("<user%other.test>", PARSE_REFUSED);
	EXPECT("<user>", PARSE_REFUSED);
	EXPECT("<@example.test:user>", PARSE_REFUSED);
	EXPECT("<user@[tag:other]>", PARSE_REFUSED);
	EXPECT("<user@example.test:25>", PARSE_REFUSED);
	EXPECT("<user@example..test>", PARSE_REFUSED);
	EXPECT("<.user@example.test>", PARSE_REFUSED);
	EXPECT("<user.@example.test>", PARSE_REFUSED);
	EXPECT("<>", PARSE_REFUSED);
}

static void test_ip_literals(void **state)
{
	(void)state;
	EXPECT("<user@[1.2.3.4]>", LITERAL);
	EXPECT("<user@[192.0.2.11]>", LITERAL);
	EXPECT("<user@[IPv6:2001:db8::1]>", LITERAL);
	EXPECT("<user@[IPv6:::ffff:192.0.2.10]>", LITERAL); /* mapped form is another literal */
	EXPECT("<user%other.test@[1.2.3.4]>", LITERAL);
	EXPECT("<\"user@other.test\"@[1.2.3.4]>", LITERAL);
	EXPECT("<@[1.2.3.4]:user@other.test>", DENIED);
	EXPECT("<postmaster@[1.2.3.4]>", LITERAL);
}

static void test_routing_localparts(void **state)
{
	(void)state;
	EXPECT("<user%other.test@example.test>", ROUTING);
	EXPECT("<other.test!user@example.test>", ROUTING);
	EXPECT("<\"user@other.test\"@example.test>", ROUTING);
	EXPECT("<\"user%other.test\"@example.test>", ROUTING);
	EXPECT("<\"other.test!user\"@example.test>", ROUTING);
	EXPECT("<\".user\"@example.test>", ROUTING);
	EXPECT("<user/x@example.test>", ROUTING);
	EXPECT("<\"|cmd\"@example.test>", ROUTING);
	EXPECT("<|cmd@example.test>", ROUTING);
	EXPECT("<\"user\\@other.test\"@example.test>", ROUTING);
	EXPECT("<user%other.test@[192.0.2.10]>", ROUTING);
	EXPECT("<@other.test:user%other.test@example.test>", ROUTING);
	EXPECT("<\"/bin/sh\"@example.test>", ROUTING);
	EXPECT("<user%other.test@sub.example.test>", DENIED);
	/* the admin may allow them */
	cfg.allow_routing_localparts = true;
	EXPECT("<user%other.test@example.test>", ACCEPT);
	EXPECT("<\"user@other.test\"@example.test>", ACCEPT);
	EXPECT("<user%other.test@other.test>", DENIED);
	EXPECT("<user@[1.2.3.4]>", LITERAL);
	cfg.allow_routing_localparts = false;

	assert_true(relay_control_has_routing("a%b", 3));
	assert_true(relay_control_has_routing("a!b", 3));
	assert_true(relay_control_has_routing("a@b", 3));
	assert_true(relay_control_has_routing("a/b", 3));
	assert_true(relay_control_has_routing("a|b", 3));
	assert_true(relay_control_has_routing(".ab", 3));
	assert_false(relay_control_has_routing("a.b", 3));
	assert_false(relay_control_has_routing("a+b-c_d=e", 9));
	assert_false(relay_control_has_routing("", 0));
	assert_false(relay_control_has_routing("ab\0%", 2)); /* only len octets are looked at */
}

/* Addresses built by hand (not from the parser): the policy normalises again. */
static void test_hand_built(void **state)
{
	struct smtp_address a;
	struct relay_decision dec;
	(void)state;
	memset(&a, 0, sizeof(a));
	strcpy(a.local, "user");
	strcpy(a.local_raw, "user");
	a.local_len = a.local_raw_len = 4;
	strcpy(a.domain, "EXAMPLE.TEST.");
	a.domain_len = 13;
	relay_control_check(&cfg, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_ACCEPT);
	/* empty domain but not postmaster */
	a.domain[0] = '\0';
	a.domain_len = 0;
	relay_control_check(&cfg, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_DENIED);
	/* postmaster with no postmaster_domain configured */
	strcpy(a.local_raw, "POSTMASTER");
	a.local_raw_len = 10;
	cfg.postmaster_domain[0] = '\0';
	relay_control_check(&cfg, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_DENIED);
	strcpy(cfg.postmaster_domain, "example.test");
	relay_control_check(&cfg, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_ACCEPT);
	/* the null path is nobody's recipient */
	memset(&a, 0, sizeof(a));
	a.is_null = true;
	relay_control_check(&cfg, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_DENIED);
	/* a config without domains accepts nothing */
	struct bs_config empty;
	memset(&empty, 0, sizeof(empty));
	strcpy(a.local_raw, "user");
	a.is_null = false;
	a.local_raw_len = 4;
	strcpy(a.domain, "example.test");
	a.domain_len = 12;
	relay_control_check(&empty, &a, &dec);
	assert_int_equal(dec.verdict, RELAY_DENIED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_plain_mailboxes, setup),
		cmocka_unit_test_setup(test_other_domains, setup),
		cmocka_unit_test_setup(test_ip_literals, setup),
		cmocka_unit_test_setup(test_routing_localparts, setup),
		cmocka_unit_test_setup(test_hand_built, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
