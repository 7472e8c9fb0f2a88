/* test_smtp_parse.c - command lines, MAIL/RCPT arguments and their ESMTP parameters, with the
 * exact reply codes the session sends for each refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_parse.h"
#include "util.h"

static void test_command_verbs(void **state)
{
	struct smtp_command c;
	(void)state;
	assert_int_equal(smtp_command_parse("mail FROM:<a@b.test>  ", 22, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_int_equal(c.arg_len, 15);
	assert_memory_equal(c.arg, "FROM:<a@b.test>", 15);
	assert_int_equal(smtp_command_parse("QuIt", 4, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_QUIT);
	assert_int_equal(c.arg_len, 0);
	assert_int_equal(smtp_command_parse("STARTTLS", 8, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_STARTTLS);
	assert_int_equal(smtp_command_parse("ehlo   client.test", 18, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_EHLO);
	assert_memory_equal(c.arg, "client.test", c.arg_len);
	assert_int_equal(smtp_command_parse("MAILX FROM:<>", 13, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(smtp_command_parse("MAI", 3, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(smtp_command_parse("", 0, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(smtp_command_parse("GET / HTTP/1.0", 14, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	const char *all[] = {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "HELP",
			     "VRFY", "EXPN", "STARTTLS", "BDAT", "AUTH"};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(smtp_command_parse(all[i], strlen(all[i]), &c), 0);
		assert_int_equal(c.verb, (enum smtp_verb)(i + 1));
		assert_string_equal(smtp_verb_name(c.verb), all[i]);
	}
	assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name((enum smtp_verb)99), "UNKNOWN");
}

static void test_command_controls(void **state)
{
	struct smtp_command c;
	(void)state;
	assert_int_equal(smtp_command_parse("NOOP\0x", 6, &c), -1);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(smtp_command_parse("NOOP\r", 5, &c), -1);
	assert_int_equal(smtp_command_parse("NOOP\nRSET", 9, &c), -1);
	assert_int_equal(smtp_command_parse("MAIL FROM:<a\x1b@b>", 17, &c), -1);
	assert_int_equal(smtp_command_parse("NOOP \x7f", 6, &c), -1);
	assert_int_equal(smtp_command_parse("NOOP a\tb", 8, &c), 0);
	assert_int_equal(smtp_command_parse("RCPT TO:<j\xc3\xb6@b.test>", 20, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_RCPT);
}

/* smtp_helo_parse on a C string: 0 or -1; *name gets the safe name. */
static int helo(const char *arg, bool strict, char name[SMTP_DOMAIN_MAX + 1])
{
	return smtp_helo_parse(arg, strlen(arg), strict, name, SMTP_DOMAIN_MAX + 1);
}

static void test_helo(void **state)
{
	static const char *const good[] = {
		"client.example.test", "client.example.test.", "localhost", "MX1.Example.COM",
		"my_pc", "win_host.corp.example", "192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]",
		"[ipv6:::1]", "xn--bcher-kva.example",
	};
	static const char *const bad[] = {
		"good.example (mail.bank.example [203.0.113.5]) by x", "my odd host", "[192.0.2.1",
		"[300.0.0.1]", "[2001:db8::1]", "[tag:content]", "-leading.example", "a..b",
		"trailing-.example", "double.dot..", "exa(mple", "caf\xc3\xa9.example", "a b",
	};
	char name[SMTP_DOMAIN_MAX + 1], long_label[80], too_long[300];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(helo(good[i], true, name), 0);
		assert_string_equal(name, good[i]); /* shown as sent */
		assert_int_equal(helo(good[i], false, name), 0);
		assert_string_equal(name, good[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(helo(bad[i], true, name), -1);
	/* lenient: accepted, but only a safe first word is shown */
	assert_int_equal(helo("good.example (mail.bank.example [203.0.113.5]) by x", false, name), 0);
	assert_string_equal(name, "good.example");
	assert_int_equal(helo("[203.0.113.5] (fake)", false, name), 0);
	assert_string_equal(name, "_203.0.113.5_");
	assert_int_equal(helo("(mail.bank.example", false, name), 0);
	assert_string_equal(name, "_mail.bank.example");
	assert_int_equal(helo("caf\xc3\xa9.example", false, name), 0);
	assert_string_equal(name, "caf__.example");
	/* never accepted: empty, control octets (CR, LF, NUL, HT) */
	assert_int_equal(smtp_helo_parse("", 0, false, name, sizeof name), -1);
	assert_int_equal(smtp_helo_parse("a\x01", 2, false, name, sizeof name), -1);
	assert_int_equal(smtp_helo_parse("a\r\nb", 4, false, name, sizeof name), -1);
	assert_int_equal(smtp_helo_parse("a\0b", 3, false, name, sizeof name), -1);
	assert_int_equal(smtp_helo_parse("a\tb", 3, false, name, sizeof name), -1);
	/* lengths: a label of 63 octets, not 64; a name of 255 octets, not 256 */
	memset(long_label, 'a', 64);
	long_label[64] = '\0';
	assert_int_equal(helo(long_label, true, name), -1);
	long_label[63] = '\0';
	assert_int_equal(helo(long_label, true, name), 0);
	for (size_t i = 0; i < sizeof too_long - 1; i++)
		too_long[i] = i % 2 ? '.' : 'a';
	too_long[255] = '\0';
	assert_int_equal(helo(too_long, true, name), 0);
	too_long[255] = 'a', too_long[256] = '\0';
	assert_int_equal(helo(too_long, true, name), -1);
	assert_int_equal(helo(too_long, false, name), 0); /* lenient: cut to 255 */
	assert_int_equal(strlen(name), SMTP_DOMAIN_MAX);
	/* a buffer too small for any name is refused, not overrun */
	assert_int_equal(smtp_helo_parse("a", 1, false, name, SMTP_DOMAIN_MAX), -1);
}

/* MAIL: returns 0, or the reply code; *enh gets the enhanced status. */
static int mail(const char *arg, struct smtp_mail_cmd *m, const char **enh)
{
	struct smtp_parse_error err = {0};
	if (smtp_mail_parse(arg, strlen(arg), m, &err) == 0)
		return 0;
	assert_non_null(err.text);
	*enh = err.enhanced;
	return err.code;
}

static int rcpt(const char *arg, bool utf8_ok, struct smtp_rcpt_cmd *r, const char **enh)
{
	struct smtp_parse_error err = {0};
	if (smtp_rcpt_parse(arg, strlen(arg), utf8_ok, r, &err) == 0)
		return 0;
	assert_non_null(err.text);
	*enh = err.enhanced;
	return err.code;
}

#define MAIL_FAILS(arg, code, enhanced)                                \
	do {                                                           \
		assert_int_equal(mail((arg), &m, &enh), (code));       \
		assert_string_equal(enh, (enhanced));                  \
	} while (0)

#define RCPT_FAILS(arg, utf8, code, enhanced)                          \
	do {                                                           \
		assert_int_equal(rcpt((arg), (utf8), &r, &enh), (code)); \
		assert_string_equal(enh, (enhanced));                  \
	} while (0)

static void test_mail_basic(void **state)
{
	struct smtp_mail_cmd m;
	const char *enh = NULL;
	(void)state;
	assert_int_equal(mail("FROM:<Sender@Example.TEST>", &m, &enh), 0);
	assert_string_equal(m.from.local, "Sender");
	assert_string_equal(m.from.domain, "example.test");
	assert_int_equal(mail("from: <>", &m, &enh), 0);
	assert_true(m.from.is_null);
	assert_int_equal(mail("From:<@relay.test:a@b.test>", &m, &enh), 0);
	assert_true(m.from.had_source_route);
	MAIL_FAILS("TO:<a@b.test>", 501, "5.5.2");
	MAIL_FAILS("FROM <a@b.test>", 501, "5.5.2");
	MAIL_FAILS("", 501, "5.5.2");
	MAIL_FAILS("FROM:", 501, "5.5.2");
	MAIL_FAILS("FROM:a@b.test", 501, "5.5.2");
	MAIL_FAILS("FROM:<a@b.test>SIZE=1", 501, "5.5.2");
	MAIL_FAILS("FROM:<a@@b.test>", 501, "5.1.7");
	MAIL_FAILS("FROM:<a@b.test", 501, "5.1.7");
	MAIL_FAILS("FROM:<Postmaster>", 501, "5.1.7"); /* only RCPT may omit the domain */
	MAIL_FAILS("FROM:<j\xc3\xb6@b.test>", 553, "5.6.7");
	assert_int_equal(mail("FROM:<j\xc3\xb6@b.test> SMTPUTF8", &m, &enh), 0);
	assert_true(m.from.utf8);
	assert_true(m.params.smtputf8);
	MAIL_FAILS("FROM:<j\xc0\xb6@b.test> SMTPUTF8", 501, "5.1.7");
}

static void test_mail_params(void **state)
{
	struct smtp_mail_cmd m;
	const char *enh = NULL;
	(void)state;
	assert_int_equal(mail("FROM:<a@b.test> size=1000  body=8bitmime RET=hdrs ENVID=QQ+2B314", &m,
			      &enh), 0);
	assert_true(m.params.has_size);
	assert_int_equal(m.params.size, 1000);
	assert_int_equal(m.params.body, SMTP_BODY_8BITMIME);
	assert_int_equal(m.params.ret, SMTP_RET_HDRS);
	assert_string_equal(m.params.envid, "QQ+2B314");
	assert_false(m.params.smtputf8);
	assert_int_equal(mail("FROM:<a@b.test> BODY=7BIT RET=FULL", &m, &enh), 0);
	assert_int_equal(m.params.body, SMTP_BODY_7BIT);
	assert_int_equal(m.params.ret, SMTP_RET_FULL);
	assert_false(m.params.has_size);
	assert_string_equal(m.params.envid, "");
	assert_int_equal(mail("FROM:<a@b.test> SIZE=18446744073709551615", &m, &enh), 0);
	assert_true(m.params.size == UINT64_MAX);
	MAIL_FAILS("FROM:<a@b.test> SIZE=18446744073709551616", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SIZE=000000000000000000001", 501, "5.5.4"); /* 21 digits */
	MAIL_FAILS("FROM:<a@b.test> SIZE=-1", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SIZE=1k", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SIZE", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SIZE=", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SIZE=1 size=2", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> BODY=BINARYMIME", 555, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> BODY=9BIT", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> BODY=7BIT BODY=7BIT", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SMTPUTF8=yes", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> SMTPUTF8 SMTPUTF8", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> RET=NONE", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> ENVID=a+2b", 501, "5.5.4"); /* hex must be upper case */
	MAIL_FAILS("FROM:<a@b.test> ENVID=a+2", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> ENVID=a\xc3\xb6", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> ENVID", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> AUTH=<>", 555, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> X-FOO", 555, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> =x", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> -X=1", 501, "5.5.4");
	MAIL_FAILS("FROM:<a@b.test> A=b=c", 501, "5.5.4");
	char envid[200] = "FROM:<a@b.test> ENVID=";
	size_t n = strlen(envid);
	memset(envid + n, 'e', 100);
	envid[n + 100] = '\0';
	assert_int_equal(mail(envid, &m, &enh), 0);
	assert_int_equal(strlen(m.params.envid), 100);
	envid[n + 100] = 'e';
	envid[n + 101] = '\0';
	MAIL_FAILS(envid, 501, "5.5.4");
}

static void test_rcpt(void **state)
{
	struct smtp_rcpt_cmd r;
	const char *enh = NULL;
	(void)state;
	assert_int_equal(rcpt("TO:<User@Example.TEST>", false, &r, &enh), 0);
	assert_string_equal(r.to.domain, "example.test");
	assert_int_equal(r.params.notify, 0);
	assert_string_equal(r.params.orcpt, "");
	assert_int_equal(rcpt("to: <PostMaster>", false, &r, &enh), 0);
	assert_int_equal(r.to.domain_len, 0);
	assert_string_equal(r.to.domain, "");
	assert_string_equal(r.to.local, "PostMaster");
	assert_string_equal(r.to.local_raw, "PostMaster");
	assert_int_equal(rcpt("TO:<postmaster> NOTIFY=NEVER", false, &r, &enh), 0);
	assert_int_equal(r.params.notify, SMTP_NOTIFY_NEVER);
	RCPT_FAILS("TO:<postmaster2>", false, 501, "5.1.3");
	RCPT_FAILS("TO:<postmaster>x", false, 501, "5.5.2");
	RCPT_FAILS("TO:<>", false, 501, "5.1.3");
	RCPT_FAILS("TO:<a..b@c.test>", false, 501, "5.1.3");
	RCPT_FAILS("FROM:<a@b.test>", false, 501, "5.5.2");
	RCPT_FAILS("TO:a@b.test", false, 501, "5.5.2");
	RCPT_FAILS("TO:<j\xc3\xb6@b.test>", false, 553, "5.6.7");
	assert_int_equal(rcpt("TO:<j\xc3\xb6@b.test>", true, &r, &enh), 0);
	assert_true(r.to.utf8);
	RCPT_FAILS("TO:<a@b.test> SIZE=10", false, 555, "5.5.4");
}

static void test_rcpt_dsn(void **state)
{
	struct smtp_rcpt_cmd r;
	const char *enh = NULL;
	(void)state;
	assert_int_equal(rcpt("TO:<a@b.test> notify=success,Failure,DELAY orcpt=rfc822;a+40b.test",
			      false, &r, &enh), 0);
	assert_int_equal(r.params.notify,
			 SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
	assert_string_equal(r.params.orcpt, "rfc822;a+40b.test");
	assert_int_equal(rcpt("TO:<a@b.test> NOTIFY=FAILURE", false, &r, &enh), 0);
	assert_int_equal(r.params.notify, SMTP_NOTIFY_FAILURE);
	RCPT_FAILS("TO:<a@b.test> NOTIFY=NEVER,SUCCESS", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> NOTIFY=SUCCESS,SUCCESS", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> NOTIFY=SUCCESS,", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> NOTIFY=ALWAYS", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> NOTIFY", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> NOTIFY=DELAY NOTIFY=DELAY", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=rfc822", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=;a@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=rfc822;", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=rfc822;a+4", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=rf(c;a", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=rfc822;a ORCPT=rfc822;a", false, 501, "5.5.4");
	/* RFC 6533 utf-8-addr-xtext and -unitext */
	assert_int_equal(rcpt("TO:<a@b.test> ORCPT=utf-8;j\\x{F6}rg@b.test", false, &r, &enh), 0);
	assert_string_equal(r.params.orcpt, "utf-8;j\\x{F6}rg@b.test");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\\x{D800}@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\\x{110000}@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\\x{41}@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\\x{f6}@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\\x{F6@b.test", false, 501, "5.5.4");
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\xc3\xb6@b.test", false, 501, "5.5.4");
	assert_int_equal(rcpt("TO:<a@b.test> ORCPT=utf-8;j\xc3\xb6@b.test", true, &r, &enh), 0);
	RCPT_FAILS("TO:<a@b.test> ORCPT=utf-8;j\xc3@b.test", true, 501, "5.5.4");
	/* 500 octets max */
	char buf[700] = "TO:<a@b.test> ORCPT=rfc822;";
	size_t n = strlen(buf);
	memset(buf + n, 'x', 493); /* "rfc822;" + 493 = 500 */
	buf[n + 493] = '\0';
	assert_int_equal(rcpt(buf, false, &r, &enh), 0);
	assert_int_equal(strlen(r.params.orcpt), 500);
	strcat(buf, "x");
	RCPT_FAILS(buf, false, 501, "5.5.4");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_verbs),
		cmocka_unit_test(test_command_controls),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_mail_basic),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_rcpt_dsn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
