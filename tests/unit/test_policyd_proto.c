/* test_policyd_proto.c - the Postfix policy protocol as pure functions: requests received in
 * any split (byte by byte, several in one buffer), the limits that make a request malformed,
 * the mapping to an engine request (stage, client, addresses, [domain]), and the action line
 * for each kind of decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policyd_proto.h"

static struct bs_config *cfg;
static struct policy_request req;

static int setup(void **state)
{
	static const char conf[] = "[gateway]\nlisten =\npolicy_listen = 127.0.0.1:0\ncache = memory:\n"
				   "[domain example.test]\ndeliver = 127.0.0.1:25\n";
	struct config_errors errs = { 0 };
	(void)state;
	cfg = config_load_buffer("test.conf", conf, strlen(conf), &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	assert_non_null(cfg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config_unref(cfg);
	return 0;
}

static enum policy_feed feed_all(const char *s, size_t *consumed, const char **why)
{
	policy_request_reset(&req);
	return policy_request_feed(&req, s, strlen(s), consumed, why);
}

static const char RCPT_REQ[] = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
			       "client_address=192.0.2.7\nclient_port=4242\nhelo_name=client.test\n"
			       "sender=s@client.test\nrecipient=Alice@Example.TEST\ninstance=1a.2b.3c\n"
			       "queue_id=ABC123\nsize=1234\nrecipient_count=0\n"
			       "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n\n";

static void test_feed_whole_and_bytewise(void **state)
{
	size_t used;
	const char *why;
	(void)state;
	assert_int_equal(feed_all(RCPT_REQ, &used, &why), POLICY_FEED_DONE);
	assert_int_equal(used, strlen(RCPT_REQ));
	assert_string_equal(policy_request_get(&req, "recipient"), "Alice@Example.TEST");
	assert_string_equal(policy_request_get(&req, "protocol_state"), "RCPT");
	assert_null(policy_request_get(&req, "nothing"));

	policy_request_reset(&req);
	for (size_t i = 0; i < strlen(RCPT_REQ); i++) {
		enum policy_feed f = policy_request_feed(&req, RCPT_REQ + i, 1, &used, &why);
		assert_int_equal(used, 1);
		assert_int_equal(f, i + 1 == strlen(RCPT_REQ) ? POLICY_FEED_DONE : POLICY_FEED_MORE);
	}
	assert_string_equal(policy_request_get(&req, "queue_id"), "ABC123");
}

static void test_feed_pipelined_stops_at_end(void **state)
{
	char two[2 * sizeof RCPT_REQ];
	size_t used;
	const char *why;
	(void)state;
	snprintf(two, sizeof two, "%s%s", RCPT_REQ, "request=smtpd_access_policy\n\n");
	assert_int_equal(feed_all(two, &used, &why), POLICY_FEED_DONE);
	assert_int_equal(used, strlen(RCPT_REQ));
	policy_request_reset(&req);
	assert_int_equal(policy_request_feed(&req, two + used, strlen(two + used), &used, &why), POLICY_FEED_DONE);
	assert_int_equal(req.n, 1);
}

static void test_feed_crlf_and_equals_in_value(void **state)
{
	size_t used;
	const char *why;
	(void)state;
	assert_int_equal(feed_all("a=b=c\r\nempty=\r\n\r\n", &used, &why), POLICY_FEED_DONE);
	assert_string_equal(policy_request_get(&req, "a"), "b=c");
	assert_string_equal(policy_request_get(&req, "empty"), "");
}

static void expect_bad(const char *s, size_t len, const char *why_part)
{
	size_t used;
	const char *why = NULL;
	policy_request_reset(&req);
	assert_int_equal(policy_request_feed(&req, s, len, &used, &why), POLICY_FEED_BAD);
	assert_non_null(why);
	assert_non_null(strstr(why, why_part));
}

static void test_feed_malformed(void **state)
{
	(void)state;
	expect_bad("no equals sign\n", 15, "without '='");
	expect_bad("=value\n", 7, "empty attribute name");
	expect_bad("a b=c\n", 6, "spaces");
	expect_bad("a=b\0c\n", 6, "NUL");
	char name[POLICY_NAME_MAX + 8];
	memset(name, 'n', POLICY_NAME_MAX + 1);
	strcpy(name + POLICY_NAME_MAX + 1, "=v\n");
	expect_bad(name, strlen(name), "name too long");
	static char big[POLICY_REQUEST_MAX + 64];
	memcpy(big, "a=", 2);
	memset(big + 2, 'v', POLICY_VALUE_MAX + 1);
	big[POLICY_VALUE_MAX + 3] = '\n';
	expect_bad(big, POLICY_VALUE_MAX + 4, "too long");
	/* a value line that never ends is cut once it is over the limit, not at the end */
	memset(big, 'v', sizeof big);
	memcpy(big, "a=", 2);
	expect_bad(big, sizeof big, "too long");
}

static void test_feed_limits(void **state)
{
	static char many[(POLICY_ATTRS_MAX + 1) * 8 + 2];
	size_t o = 0, used;
	const char *why;
	(void)state;
	for (int i = 0; i <= POLICY_ATTRS_MAX; i++)
		o += (size_t)sprintf(many + o, "a%03d=x\n", i);
	expect_bad(many, o, "too many attributes");
	/* exactly POLICY_ATTRS_MAX attributes are fine */
	policy_request_reset(&req);
	assert_int_equal(policy_request_feed(&req, many, (size_t)POLICY_ATTRS_MAX * 7, &used, &why), POLICY_FEED_MORE);
	assert_int_equal(policy_request_feed(&req, "\n", 1, &used, &why), POLICY_FEED_DONE);
	/* 16 KB in total: four 4000-byte values fit, a fifth does not */
	static char big[6 * 4100];
	o = 0;
	for (int i = 0; i < 5; i++) {
		o += (size_t)sprintf(big + o, "v%d=", i);
		memset(big + o, 'x', 4000);
		o += 4000;
		big[o++] = '\n';
	}
	policy_request_reset(&req);
	assert_int_equal(policy_request_feed(&req, big, 4 * 4004, &used, &why), POLICY_FEED_MORE);
	expect_bad(big, o, "request too long");
}

static void decode(const char *s, struct engine_request *er, struct policy_query *q)
{
	size_t used;
	const char *why;
	assert_int_equal(feed_all(s, &used, &why), POLICY_FEED_DONE);
	policy_request_decode(&req, cfg, "SESSIONID", er, q);
}

static void test_decode_rcpt(void **state)
{
	struct engine_request er;
	struct policy_query q;
	(void)state;
	decode(RCPT_REQ, &er, &q);
	assert_true(q.ask);
	assert_int_equal(er.stage, ENGINE_STAGE_RCPT);
	assert_int_equal(er.frontend, ENGINE_FRONTEND_POLICY);
	assert_string_equal(er.session_id, "SESSIONID");
	assert_string_equal(er.client_ip, "192.0.2.7");
	assert_int_equal(er.client_port, 4242);
	assert_int_equal(er.client.ss_family, AF_INET);
	assert_string_equal(er.helo, "client.test");
	assert_true(er.has_sender);
	assert_string_equal(er.sender->domain, "client.test");
	assert_true(er.has_rcpt);
	assert_string_equal(er.rcpt->domain, "example.test");
	assert_string_equal(er.rcpt->local, "Alice");
	assert_non_null(er.domain);
	assert_string_equal(er.domain->name, "example.test");
	assert_true(er.size_known);
	assert_int_equal(er.size, 1234);
	assert_string_equal(er.tls_version, "TLSv1.3");
	assert_string_equal(er.tls_cipher, "TLS_AES_256_GCM_SHA384");
	assert_string_equal(q.instance, "1a.2b.3c");
	assert_string_equal(q.queue_id, "ABC123");
	assert_string_equal(q.state, "RCPT");
}

static void test_decode_other_domain_and_null_sender(void **state)
{
	struct engine_request er;
	struct policy_query q;
	(void)state;
	decode("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=2001:db8::7\n"
	       "sender=\nrecipient=bob@elsewhere.test\n\n", &er, &q);
	assert_true(q.ask);
	assert_true(er.has_sender && er.sender->is_null);
	assert_true(er.has_rcpt);
	assert_null(er.domain); /* not ours: the checks answer neutral for the policy front end */
	assert_string_equal(er.client_ip, "2001:db8::7");
	assert_int_equal(er.client.ss_family, AF_INET6);
	assert_false(er.size_known);
}

static void test_decode_unquoted_local_part(void **state)
{
	struct engine_request er;
	struct policy_query q;
	(void)state;
	/* Postfix hands over the local part without its quotes */
	decode("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=john doe@example.test\n\n", &er, &q);
	assert_true(q.ask);
	assert_true(er.rcpt->quoted_local);
	assert_string_equal(er.rcpt->local_raw, "john doe");
}

static void test_decode_dunno_cases(void **state)
{
	struct engine_request er;
	struct policy_query q;
	(void)state;
	decode("request=smtpd_access_policy\nprotocol_state=VRFY\nrecipient=a@example.test\n\n", &er, &q);
	assert_false(q.ask);
	decode("request=smtpd_access_policy\nprotocol_state=ETRN\n\n", &er, &q);
	assert_false(q.ask);
	decode("request=smtpd_access_policy\nprotocol_state=BOGUS\n\n", &er, &q);
	assert_false(q.ask);
	assert_string_equal(q.why, "unknown protocol_state");
	assert_false(q.staged);
	decode("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=\n\n", &er, &q);
	assert_false(q.ask);
	assert_string_equal(q.why, "no recipient");
	assert_true(q.staged);
	decode("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@exa mple.test\n\n", &er, &q);
	assert_false(q.ask);
	assert_string_equal(q.why, "unparsable recipient");
	assert_string_equal(q.rcpt_raw, "a@exa mple.test");
	/* "a@@b": Postfix's unquoted form of "a@"@b, which is a valid address */
	decode("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@@example.test\n\n", &er, &q);
	assert_true(q.ask);
	assert_string_equal(er.rcpt->local_raw, "a@");
	decode("request=something_else\nprotocol_state=RCPT\nrecipient=a@example.test\n\n", &er, &q);
	assert_false(q.ask);
	decode("\n", &er, &q);
	assert_false(q.ask);
	assert_string_equal(er.client_ip, "unknown");
}

static void test_decode_stages(void **state)
{
	static const struct { const char *state; enum engine_stage stage; } cases[] = {
		{ "CONNECT", ENGINE_STAGE_CONNECT }, { "EHLO", ENGINE_STAGE_HELO }, { "HELO", ENGINE_STAGE_HELO },
		{ "MAIL", ENGINE_STAGE_MAIL },       { "DATA", ENGINE_STAGE_DATA },
		{ "END-OF-MESSAGE", ENGINE_STAGE_EOD },
	};
	char buf[512];
	struct engine_request er;
	struct policy_query q;
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(buf, sizeof buf, "request=smtpd_access_policy\nprotocol_state=%s\nsender=a@b.test\n"
			 "recipient=c@example.test\nsize=0\n\n", cases[i].state);
		decode(buf, &er, &q);
		assert_true(q.ask);
		assert_int_equal(er.stage, cases[i].stage);
		assert_int_equal(er.has_sender, cases[i].stage >= ENGINE_STAGE_MAIL);
		assert_int_equal(er.has_rcpt, cases[i].stage >= ENGINE_STAGE_DATA);
		assert_int_equal(er.size_known, cases[i].stage == ENGINE_STAGE_EOD);
	}
}

static void decision(struct engine_decision *d, enum check_result r, int code, const char *enh, const char *text)
{
	memset(d, 0, sizeof *d);
	d->headers = d->log = "";
	d->result = r;
	d->code = code;
	snprintf(d->enhanced, sizeof d->enhanced, "%s", enh);
	d->text = text; /* the caller's, alive for the test */
}

static void test_actions(void **state)
{
	struct engine_decision d;
	char out[4096];
	(void)state;
	decision(&d, CHECK_NEUTRAL, 0, "", "");
	assert_int_equal(policy_action_format(&d, out, sizeof out), strlen("action=DUNNO\n\n"));
	assert_string_equal(out, "action=DUNNO\n\n");
	decision(&d, CHECK_ACCEPT, 250, "2.1.5", "ok");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=DUNNO\n\n");
	decision(&d, CHECK_REJECT, 550, "5.1.1", "<bob@example.test>: Recipient address rejected: User unknown");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=550 5.1.1 User unknown\n\n");
	decision(&d, CHECK_REJECT, 553, "5.7.1", "<a%b@example.test>: Local part holds routing characters");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=553 5.7.1 Local part holds routing characters\n\n");
	decision(&d, CHECK_REJECT, 0, "bogus", "");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=550 5.7.1 Access denied\n\n");
	decision(&d, CHECK_DEFER, 451, "4.4.3",
		 "<a@example.test>: Recipient address verification unavailable, try again later");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=DEFER_IF_PERMIT 4.4.3 Recipient address verification unavailable, try again later\n\n");
	decision(&d, CHECK_DEFER, 451, "5.1.1", "line\r\nbreak");
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=DEFER_IF_PERMIT 4.7.1 line\n\n");
	/* headers: the first field, unfolded; a refusal carries none */
	decision(&d, CHECK_NEUTRAL, 0, "", "");
	d.headers = "X-Backstop: one\r\n\ttwo\r\nX-Second: three\r\n";
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=PREPEND X-Backstop: one two\n\n");
	d.result = CHECK_REJECT;
	d.code = 550;
	policy_action_format(&d, out, sizeof out);
	assert_string_equal(out, "action=550 5.7.1 Access denied\n\n");
	/* a short buffer still ends in the empty line */
	decision(&d, CHECK_REJECT, 550, "5.1.1", "a long text that does not fit");
	assert_int_equal(policy_action_format(&d, out, 24), 23);
	assert_string_equal(out + 21, "\n\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feed_whole_and_bytewise),
		cmocka_unit_test(test_feed_pipelined_stops_at_end),
		cmocka_unit_test(test_feed_crlf_and_equals_in_value),
		cmocka_unit_test(test_feed_malformed),
		cmocka_unit_test(test_feed_limits),
		cmocka_unit_test(test_decode_rcpt),
		cmocka_unit_test(test_decode_other_domain_and_null_sender),
		cmocka_unit_test(test_decode_unquoted_local_part),
		cmocka_unit_test(test_decode_dunno_cases),
		cmocka_unit_test(test_decode_stages),
		cmocka_unit_test(test_actions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
