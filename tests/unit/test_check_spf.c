/* test_check_spf.c - the spf check through the engine, with a resolver pointed at a fake DNS
 * server on 127.0.0.1 (UDP, same loop): the MAIL decision (refused only when every domain
 * refuses alike, else neutral with the header fields and a fact), RCPT with the fact under each
 * domain's action and spf_skip, the policy front end evaluating at RCPT, spf_helo with a HELO
 * fail deciding and a sender answered without DNS after a HELO check (freed once), a silent
 * server (temperror: defer), and a cancel in the middle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "config.h"
#include "dns.h"
#include "engine.h"
#include "smtp_address.h"

/* ---- a fake DNS server: TXT records by name, NXDOMAIN for the rest, silence for silent.* ---- */

static const struct { const char *name, *txt; } zone[] = {
	{ "fail.test", "v=spf1 -all" },
	{ "pass.test", "v=spf1 ip4:192.0.2.0/24 -all" },
	{ "soft.test", "v=spf1 ~all" },
	{ "badhelo.test", "v=spf1 -all" },
};

struct fakedns {
	int fd, port, queries;
	struct event *ev;
};

static void fakedns_read(evutil_socket_t fd, short what, void *arg)
{
	struct fakedns *d = arg;
	unsigned char q[512], r[1024];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	ssize_t len = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fromlen);
	char name[256];
	size_t at = 12, o = 0;

	(void)what;
	if (len <= 12)
		return;
	while (at < (size_t)len && q[at] != 0 && o + q[at] + 2 < sizeof name) {
		if (o)
			name[o++] = '.';
		memcpy(name + o, q + at + 1, q[at]);
		o += q[at];
		at += 1 + q[at];
	}
	name[o] = '\0';
	size_t qend = at + 5;
	if (qend > (size_t)len)
		return;
	d->queries++;
	if (strncasecmp(name, "silent.", 7) == 0)
		return;
	unsigned type = (unsigned)(q[at + 1] << 8 | q[at + 2]);
	memcpy(r, q, qend);
	size_t n = qend, an = 0;
	unsigned rcode = 3;
	for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
		if (strcasecmp(zone[i].name, name) != 0)
			continue;
		rcode = 0;
		if (type != 16)
			break;
		size_t tl = strlen(zone[i].txt);
		unsigned char rr[] = { 0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, (unsigned char)(tl + 1), (unsigned char)tl };
		memcpy(r + n, rr, sizeof rr);
		n += sizeof rr;
		memcpy(r + n, zone[i].txt, tl);
		n += tl;
		an = 1;
	}
	r[2] = 0x81;
	r[3] = (unsigned char)(0x80 | rcode);
	r[4] = 0, r[5] = 1, r[6] = 0, r[7] = (unsigned char)an, r[8] = r[9] = r[10] = r[11] = 0;
	sendto(fd, r, n, 0, (struct sockaddr *)&from, fromlen);
}

/* ---- harness ---- */

struct t {
	struct event_base *base;
	struct fakedns dns;
	struct dns_resolver *r;
	struct bs_config *cfg;
	struct engine *e;
	int calls;
	enum check_result result;
	int code;
	char enhanced[8], text[ENGINE_TEXT_MAX], log[ENGINE_LOG_MAX], headers[ENGINE_HEADERS_MAX];
	char facts[ENGINE_FACTS_MAX];
	/* what a request points to, kept until its decision (as a session keeps them) */
	char helo[SMTP_DOMAIN_MAX + 1];
	struct smtp_address sender, rcpt;
};

static struct dns_resolver *dns_of(void *arg, struct event_base *base)
{
	struct t *t = arg;
	return base == t->base ? t->r : NULL;
}

static void decided(void *arg, const struct engine_decision *d)
{
	struct t *t = arg;
	t->calls++;
	t->result = d->result;
	t->code = d->code;
	snprintf(t->enhanced, sizeof t->enhanced, "%s", d->enhanced);
	snprintf(t->text, sizeof t->text, "%s", d->text);
	snprintf(t->log, sizeof t->log, "%s", d->log);
	snprintf(t->headers, sizeof t->headers, "%s", d->headers);
	snprintf(t->facts, sizeof t->facts, "%s", d->facts);
	event_base_loopbreak(t->base);
}

static void guard(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void run(struct t *t, int ms)
{
	struct event *g = evtimer_new(t->base, guard, t->base);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(g, &tv);
	event_base_dispatch(t->base);
	event_free(g);
}

static void start(struct t *t, const char *extra_gateway, const char *tagged_domain_keys)
{
	char conf[2048];
	struct config_errors errs = { 0 };

	t->base = event_base_new();
	t->dns.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(t->dns.fd, (struct sockaddr *)&sin, sizeof sin), 0);
	socklen_t len = sizeof sin;
	getsockname(t->dns.fd, (struct sockaddr *)&sin, &len);
	t->dns.port = ntohs(sin.sin_port);
	t->dns.ev = event_new(t->base, t->dns.fd, EV_READ | EV_PERSIST, fakedns_read, &t->dns);
	event_add(t->dns.ev, NULL);
	t->r = dns_resolver_new_opts(t->base, 200, 1, NULL);
	snprintf(conf, sizeof conf,
		 "[gateway]\nhostname = gw.test\nspf = on\ndns_servers = 127.0.0.1:%d\n%s\n"
		 "[domain example.test]\ndeliver = 127.0.0.1:25\n"
		 "[domain tagged.test]\ndeliver = 127.0.0.1:25\n%s\n",
		 t->dns.port, extra_gateway, tagged_domain_keys);
	t->cfg = config_load_buffer("test.conf", conf, strlen(conf), &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	assert_non_null(t->cfg);
	struct engine_env env = { .cfg = t->cfg, .dns = dns_of, .dns_arg = t };
	char why[256];
	t->e = engine_new(&env, why, sizeof why);
	assert_non_null(t->e);
	assert_true(engine_stage_has_checks(t->e, ENGINE_STAGE_MAIL));
}

static int teardown(void **state)
{
	struct t *t = *state;
	engine_free(t->e);
	config_unref(t->cfg);
	dns_resolver_free(t->r);
	event_free(t->dns.ev);
	close(t->dns.fd);
	event_base_free(t->base);
	free(t);
	return 0;
}

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct t));
	return 0;
}

static void request(struct t *t, struct engine_request *req, enum engine_stage stage, enum engine_frontend fe,
		    const char *ip, const char *helo, const char *sender, const char *rcpt, const char *facts)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	size_t used;

	inet_pton(AF_INET, ip, &sin.sin_addr);
	engine_request_init(req, fe, "T", (struct sockaddr *)&sin, sizeof sin);
	req->stage = stage;
	snprintf(t->helo, sizeof t->helo, "%s", helo);
	req->helo = t->helo;
	assert_int_equal(smtp_path_parse(sender, strlen(sender), true, false, &t->sender, &used), ADDR_OK);
	engine_request_set_sender(req, &t->sender);
	if (rcpt) {
		assert_int_equal(smtp_path_parse(rcpt, strlen(rcpt), false, false, &t->rcpt, &used), ADDR_OK);
		engine_request_set_rcpt(req, t->cfg, &t->rcpt);
	}
	req->facts = facts;
}

static void ask(struct t *t, const struct engine_request *req)
{
	t->calls = 0;
	engine_start(t->e, t->base, req, decided, t);
	run(t, 5000);
	assert_int_equal(t->calls, 1);
}

/* ---- tests ---- */

static void test_mail_uniform_reject(void **state)
{
	struct t *t = *state;
	struct engine_request req;
	start(t, "", "");
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "198.51.100.1", "client.test", "<a@fail.test>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_REJECT);
	assert_int_equal(t->code, 550);
	assert_string_equal(t->enhanced, "5.7.23");
	assert_string_equal(t->text, "SPF fail: fail.test does not designate 198.51.100.1 as a permitted sender");
	assert_non_null(strstr(t->log, "spf=fail spf_identity=mailfrom spf_checked=\"a@fail.test\" spf_action=reject"));
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "192.0.2.9", "client.test", "<a@pass.test>", NULL,
		NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_true(strncmp(t->headers, "Received-SPF: pass (gw.test: domain of a@pass.test designates 192.0.2.9", 70) == 0);
	assert_non_null(strstr(t->headers, "Authentication-Results: gw.test;\r\n\tspf=pass"));
	assert_string_equal(t->facts, "spf pass mailfrom a@pass.test \n");
}

static void test_mail_fact_then_rcpt_per_domain(void **state)
{
	struct t *t = *state;
	struct engine_request req;
	char facts[ENGINE_FACTS_MAX];
	start(t, "spf_skip = 203.0.113.0/24", "spf_fail = tag\nspf_skip = 198.51.100.0/24");
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "198.51.100.1", "client.test", "<a@fail.test>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_non_null(strstr(t->log, "spf_action=per-domain"));
	assert_non_null(strstr(t->headers, "Received-SPF: fail"));
	snprintf(facts, sizeof facts, "%s", t->facts);
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_SMTP, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@example.test>", facts);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_REJECT);
	assert_string_equal(t->enhanced, "5.7.23");
	assert_string_equal(t->headers, ""); /* given at MAIL */
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_SMTP, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@tagged.test>", facts);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_non_null(strstr(t->log, "spf_action=skip"));
	/* the SMTP session without a fact: MAIL found nothing, RCPT does not look */
	int q = t->dns.queries;
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_SMTP, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@example.test>", NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_int_equal(t->dns.queries, q);
	/* skipped by [gateway] and (inheriting) example.test, not by tagged.test: evaluated */
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "203.0.113.5", "client.test", "<a@fail.test>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_non_null(strstr(t->log, "spf=fail"));
}

static void test_policy_evaluates_at_rcpt(void **state)
{
	struct t *t = *state;
	struct engine_request req;
	start(t, "", "spf_fail = tag");
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_POLICY, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@example.test>", NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_REJECT);
	assert_non_null(strstr(t->facts, "spf fail mailfrom a@fail.test"));
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_POLICY, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@tagged.test>", NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_non_null(strstr(t->headers, "Received-SPF: fail"));
	/* a domain that is not ours: [gateway]'s action */
	request(t, &req, ENGINE_STAGE_RCPT, ENGINE_FRONTEND_POLICY, "198.51.100.1", "client.test", "<a@fail.test>",
		"<u@elsewhere.test>", NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_REJECT);
}

static void test_helo_first(void **state)
{
	struct t *t = *state;
	struct engine_request req;
	start(t, "spf_helo = on", "");
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "192.0.2.9", "badhelo.test", "<a@pass.test>", NULL,
		NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_REJECT);
	assert_non_null(strstr(t->log, "spf_identity=helo spf_checked=\"badhelo.test\""));
	/* the HELO passes the turn (none), the sender needs no DNS (an address literal): answered
	 * from inside the HELO check's callback */
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "192.0.2.9", "nothing.test", "<a@[192.0.2.1]>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
	assert_non_null(strstr(t->headers, "smtp.helo=nothing.test"));
	/* only a sender without DNS: answered inside engine_start's check start */
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "192.0.2.9", "[192.0.2.9]", "<a@[192.0.2.1]>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_NEUTRAL);
}

static void test_silent_dns_defers_and_cancel(void **state)
{
	struct t *t = *state;
	struct engine_request req;
	start(t, "", "");
	request(t, &req, ENGINE_STAGE_MAIL, ENGINE_FRONTEND_SMTP, "192.0.2.9", "client.test", "<a@silent.test>",
		NULL, NULL);
	ask(t, &req);
	assert_int_equal(t->result, CHECK_DEFER);
	assert_int_equal(t->code, 451);
	assert_string_equal(t->enhanced, "4.7.24");
	assert_non_null(strstr(t->log, "spf=temperror"));
	t->calls = 0;
	struct engine_query *eq = engine_start(t->e, t->base, &req, decided, t);
	event_base_loop(t->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	engine_cancel(eq);
	run(t, 500);
	assert_int_equal(t->calls, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mail_uniform_reject),
		T(test_mail_fact_then_rcpt_per_domain),
		T(test_policy_evaluates_at_rcpt),
		T(test_helo_first),
		T(test_silent_dns_defers_and_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
