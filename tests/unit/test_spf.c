/* test_spf.c - the SPF record parser, the macro expander and the evaluator beyond the RFC 7208
 * suite: the RFC's own macro examples, hostile input (huge records, many terms, include and
 * redirect loops, deep nesting, too many MX names, long expansions), the limits, cancel, and
 * what the answer carries (records used, mechanism, counts, explanation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spf_eval.h"
#include "spf_macro.h"
#include "spf_record.h"
#include "spf_zone.h"
#include "util.h"

/* ---- parser --------------------------------------------------------------------------------- */

static int parse(const char *text, struct spf_record *rec)
{
	char why[160];
	return spf_record_parse(text, strlen(text), rec, why, sizeof(why));
}

static void test_record_version(void **state)
{
	(void)state;
	assert_true(spf_record_is_spf("v=spf1", 6));
	assert_true(spf_record_is_spf("V=SPF1 -all", 11));
	assert_false(spf_record_is_spf("v=spf10 -all", 12));
	assert_false(spf_record_is_spf("v=spf1\t-all", 11));
	assert_false(spf_record_is_spf(" v=spf1", 7));
	assert_false(spf_record_is_spf("v=spf", 5));
}

static void test_record_terms(void **state)
{
	struct spf_record rec;
	struct spf_term t;
	size_t pos = 0;
	(void)state;
	assert_int_equal(parse("v=spf1 -ip4:192.0.2.0/24 ~a:example.com/28//64 ?mx//0 ptr:x.example "
			       "ip6:2001:db8::/32 exists:%{ir}.x.example include:_spf.example.com foo=bar%{d} "
			       "redirect=r.example.com exp=e.example.com +all  ", &rec), 0);
	assert_int_equal(rec.nmech, 8);
	assert_memory_equal(rec.redirect, "r.example.com", rec.redirect_len);
	assert_memory_equal(rec.exp, "e.example.com", rec.exp_len);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_IP4);
	assert_int_equal(t.qual, '-');
	assert_int_equal(t.cidr4, 24);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_A);
	assert_int_equal(t.qual, '~');
	assert_int_equal(t.cidr4, 28);
	assert_int_equal(t.cidr6, 64);
	assert_memory_equal(t.spec, "example.com", t.spec_len);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_MX);
	assert_null(t.spec);
	assert_int_equal(t.cidr4, 32);
	assert_int_equal(t.cidr6, 0);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_PTR);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_IP6);
	assert_int_equal(t.cidr6, 32);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_EXISTS);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_INCLUDE);
	assert_int_equal(spf_record_next(&rec, &pos, &t), 1);
	assert_int_equal(t.mech, SPF_MECH_ALL);
	assert_int_equal(t.qual, '+');
	assert_int_equal(spf_record_next(&rec, &pos, &t), 0);
}

static void test_record_errors(void **state)
{
	static const char *const bad[] = {
		"v=spf1 redirect=a.example redirect=b.example", "v=spf1 exp=a.example exp=b.example",
		"v=spf1 ip4:192.0.2.0/33", "v=spf1 ip4:192.0.2.0/024", "v=spf1 ip6:::1/129", "v=spf1 ip4:192.0.02.1",
		"v=spf1 ip4:", "v=spf1 ip4", "v=spf1 a/", "v=spf1 a:", "v=spf1 all:x", "v=spf1 all/24",
		"v=spf1 include", "v=spf1 exists", "v=spf1 a:museum", "v=spf1 a:example.123", "v=spf1 a:x.-com",
		"v=spf1 a:%{d0}.example", "v=spf1 a:%{c}.example", "v=spf1 a:%{x}.example", "v=spf1 a:%.example",
		"v=spf1 foo", "v=spf1 =bar", "v=spf1 1foo=bar", "v=spf1 -", "v=spf1 a\t-all", "v=spf1 a:\x80.example",
		"v=spf1 mx/24/64", "v=spf1 ptr/24", "v=spf1 redirect=", "v=spf1 foo=%", "v=spf1 ++all",
	};
	struct spf_record rec;
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (parse(bad[i], &rec) != -1)
			fail_msg("accepted '%s'", bad[i]);
	}
	assert_int_equal(parse("v=spf1 a:foo:bar/baz.example.com a:%{d}. a:x.xn--zckzah foo=%{c} -all", &rec), 0);
	assert_int_equal(parse("v=spf1", &rec), 0);
	assert_int_equal(rec.nmech, 0);
}

static void test_record_huge(void **state)
{
	/* 1024 terms are fine; one more is a permerror; a 30 KB record parses in bounded time */
	size_t cap = 40000, n = 6;
	char *r = xmalloc(cap);
	struct spf_record rec;
	struct spf_term t;
	char why[160];
	(void)state;
	memcpy(r, "v=spf1", 6);
	for (int i = 0; i < 1024; i++)
		n += (size_t)snprintf(r + n, cap - n, " ip4:10.%d.%d.0/24", i / 256, i % 256);
	assert_int_equal(spf_record_parse(r, n, &rec, why, sizeof(why)), 0);
	assert_int_equal(rec.nmech, 1024);
	size_t pos = 0, k = 0;
	while (spf_record_next(&rec, &pos, &t))
		k++;
	assert_int_equal(k, 1024);
	n += (size_t)snprintf(r + n, cap - n, " -all");
	assert_int_equal(spf_record_parse(r, n, &rec, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "terms"));
	free(r);
}

/* ---- macros --------------------------------------------------------------------------------- */

static void env_rfc(struct spf_macro_env *env, bool v6)
{
	memset(env, 0, sizeof(*env));
	env->sender = "strong-bad@email.example.com";
	env->local = "strong-bad";
	env->sender_domain = "email.example.com";
	env->domain = "email.example.com";
	env->helo = "mx.example.org";
	env->ptr = "mx.example.org";
	env->receiver = "rx.example.net";
	env->now = 1700000000;
	env->family = v6 ? AF_INET6 : AF_INET;
	inet_pton(AF_INET, "192.0.2.3", &env->ip4);
	inet_pton(AF_INET6, "2001:db8::cb01", &env->ip6);
}

static void expect(const struct spf_macro_env *env, bool exp, const char *in, const char *want)
{
	char out[600];
	size_t n;
	assert_true(spf_macro_valid(in, strlen(in), exp, NULL));
	assert_int_equal(spf_macro_expand(in, strlen(in), env, exp, out, sizeof(out), &n), SPF_MACRO_OK);
	if (strcmp(out, want) != 0)
		fail_msg("%s: got '%s', want '%s'", in, out, want);
	assert_int_equal(n, strlen(want));
}

static void test_macro_rfc_examples(void **state)
{
	struct spf_macro_env env;
	(void)state;
	env_rfc(&env, false); /* RFC 7208 7.4 */
	expect(&env, false, "%{s}", "strong-bad@email.example.com");
	expect(&env, false, "%{o}", "email.example.com");
	expect(&env, false, "%{d}", "email.example.com");
	expect(&env, false, "%{d4}", "email.example.com");
	expect(&env, false, "%{d3}", "email.example.com");
	expect(&env, false, "%{d2}", "example.com");
	expect(&env, false, "%{d1}", "com");
	expect(&env, false, "%{dr}", "com.example.email");
	expect(&env, false, "%{d2r}", "example.email");
	expect(&env, false, "%{l}", "strong-bad");
	expect(&env, false, "%{l-}", "strong.bad");
	expect(&env, false, "%{lr}", "strong-bad");
	expect(&env, false, "%{lr-}", "bad.strong");
	expect(&env, false, "%{l1r-}", "strong");
	expect(&env, false, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com");
	expect(&env, false, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com");
	expect(&env, false, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
	expect(&env, false, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com");
	expect(&env, false, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net");
	expect(&env, false, "%{h}%{p}", "mx.example.orgmx.example.org");
	expect(&env, false, "%%%_%-", "% %20");
	expect(&env, false, "%{d999}", "email.example.com");
	expect(&env, false, "%{S}", "strong-bad%40email.example.com");
	expect(&env, false, "%{l+=_}", "strong-bad");
	expect(&env, true, "%{c} %{r} %{t} %{v}", "192.0.2.3 rx.example.net 1700000000 in-addr");
	env_rfc(&env, true);
	expect(&env, false, "%{ir}.%{v}._spf.%{d2}",
	       "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com");
	expect(&env, true, "%{c} via %{v}", "2001:db8::cb01 via ip6");
	env.local = "jack&jill=up";
	expect(&env, false, "%{L}", "jack%26jill%3Dup");
}

static void test_macro_errors(void **state)
{
	static const char *const bad[] = {"%", "%{", "%{d", "%{d0}", "%{x}", "%{dr2}", "%{d.x}", "%x", "%{}", "a b"};
	struct spf_macro_env env;
	char out[64];
	size_t n;
	(void)state;
	env_rfc(&env, false);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_false(spf_macro_valid(bad[i], strlen(bad[i]), false, NULL));
		assert_int_equal(spf_macro_expand(bad[i], strlen(bad[i]), &env, false, out, sizeof(out), &n),
				 SPF_MACRO_SYNTAX);
	}
	/* exp-only letters */
	assert_false(spf_macro_valid("%{c}", 4, false, NULL));
	assert_true(spf_macro_valid("%{c}", 4, true, NULL));
	/* %{p} unknown yet */
	env.ptr = NULL;
	assert_true(spf_macro_uses("x.%{P}", 6, 'p'));
	assert_false(spf_macro_uses("x.%%{p}", 7, 'p'));
	assert_int_equal(spf_macro_expand("%{p}", 4, &env, false, out, sizeof(out), &n), SPF_MACRO_NEED_P);
}

static void test_macro_bounded(void **state)
{
	/* 500 %{S} (each 30 bytes escaped) into 64 bytes: cut, NUL-terminated, reported */
	struct spf_macro_env env;
	char in[2001], out[64];
	size_t n;
	(void)state;
	env_rfc(&env, false);
	for (int i = 0; i < 500; i++)
		memcpy(in + i * 4, "%{S}", 4);
	in[2000] = '\0';
	assert_true(spf_macro_valid(in, 2000, false, NULL));
	assert_int_equal(spf_macro_expand(in, 2000, &env, false, out, sizeof(out), &n), SPF_MACRO_TOO_LONG);
	assert_int_equal(n, sizeof(out) - 1);
	assert_int_equal(strlen(out), sizeof(out) - 1);
	/* a value with more parts than kept: still bounded and right-most parts right */
	char many[1000];
	size_t k = 0;
	for (int i = 0; i < 300; i++)
		many[k++] = 'a', many[k++] = '.';
	memcpy(many + k, "z", 2);
	env.domain = many;
	char big[1200];
	assert_int_equal(spf_macro_expand("%{d2}", 5, &env, false, big, sizeof(big), &n), SPF_MACRO_OK);
	assert_string_equal(big, "a.z");
}

/* ---- evaluator ------------------------------------------------------------------------------ */

struct got {
	int calls;
	enum spf_result result;
	char mechanism[128], explanation[SPF_EXP_MAX + 1], problem[256], domain[256], identity[300];
	unsigned terms, voids;
	size_t nrecords;
	char record0[SPF_RECORD_TEXT_MAX + 1], record1[SPF_RECORD_TEXT_MAX + 1];
};

static void on_got(void *arg, const struct spf_answer *a)
{
	struct got *g = arg;
	g->calls++;
	g->result = a->result;
	snprintf(g->mechanism, sizeof(g->mechanism), "%s", a->mechanism);
	snprintf(g->explanation, sizeof(g->explanation), "%s", a->explanation ? a->explanation : "");
	snprintf(g->problem, sizeof(g->problem), "%s", a->problem ? a->problem : "");
	snprintf(g->domain, sizeof(g->domain), "%s", a->domain);
	snprintf(g->identity, sizeof(g->identity), "%s", a->identity_value);
	g->terms = a->dns_terms;
	g->voids = a->void_lookups;
	g->nrecords = a->nrecords;
	snprintf(g->record0, sizeof(g->record0), "%s", a->nrecords > 0 ? a->records[0].text : "");
	snprintf(g->record1, sizeof(g->record1), "%s", a->nrecords > 1 ? a->records[1].domain : "");
}

static void add(struct zone *z, const char *name, int type, const char *data)
{
	zone_add(z, name, type, data, strlen(data));
}

static struct got check_full(struct zone *z, const char *ip, const char *sender, const char *helo,
			     enum spf_identity id, const struct spf_limits *lim)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
		s4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
		s6->sin6_family = AF_INET6;
	struct spf_request req = {.client = (struct sockaddr *)&ss, .sender = sender, .helo = helo,
				  .identity = id, .now = 1, .receiver = "rx.test"};
	if (lim)
		req.limits = *lim;
	struct got g;
	memset(&g, 0, sizeof(g));
	struct spf_dns dns = zone_dns(z);
	for (int mode = 0; mode < 2; mode++) { /* the same answer, synchronous and later */
		struct got g2;
		memset(&g2, 0, sizeof(g2));
		z->async = mode == 1;
		struct spf_check *c = spf_check_start(&dns, &req, on_got, mode ? &g2 : &g);
		assert_true(mode == 1 || c == NULL);
		zone_run(z);
		if (mode == 1) {
			assert_int_equal(g2.calls, 1);
			assert_int_equal(g2.result, g.result);
		}
	}
	assert_int_equal(g.calls, 1);
	return g;
}

static struct got check(struct zone *z, const char *ip, const char *sender)
{
	return check_full(z, ip, sender, "helo.test", SPF_ID_MAILFROM, NULL);
}

static void test_eval_basic(void **state)
{
	struct zone z = {0};
	(void)state;
	add(&z, "example.test", SPF_DNS_TXT, "v=spf1 ip4:192.0.2.0/24 include:inc.example.test -all");
	add(&z, "example.test", SPF_DNS_TXT, "some other TXT record");
	add(&z, "inc.example.test", SPF_DNS_TXT, "v=spf1 ip6:2001:db8::/32 ~all");
	struct got g = check(&z, "192.0.2.9", "user@example.test");
	assert_int_equal(g.result, SPF_PASS);
	assert_string_equal(g.mechanism, "ip4:192.0.2.0/24");
	assert_int_equal(g.nrecords, 1);
	assert_string_equal(g.record0, "v=spf1 ip4:192.0.2.0/24 include:inc.example.test -all");
	g = check(&z, "2001:db8::5", "user@example.test");
	assert_int_equal(g.result, SPF_PASS);
	assert_string_equal(g.mechanism, "include:inc.example.test");
	assert_int_equal(g.nrecords, 2);
	assert_string_equal(g.record1, "inc.example.test");
	assert_int_equal(g.terms, 1);
	g = check(&z, "::ffff:198.51.100.1", "user@example.test"); /* v4-mapped counts as IPv4 */
	assert_int_equal(g.result, SPF_FAIL);
	assert_string_equal(g.mechanism, "-all");
	assert_string_equal(g.explanation, "example.test does not designate 198.51.100.1 as a permitted sender");
	/* the null sender: postmaster@HELO; the HELO identity */
	add(&z, "helo.test", SPF_DNS_TXT, "v=spf1 -all");
	g = check(&z, "192.0.2.9", "");
	assert_int_equal(g.result, SPF_FAIL);
	assert_string_equal(g.identity, "postmaster@helo.test");
	g = check_full(&z, "192.0.2.9", "user@example.test", "helo.test", SPF_ID_HELO, NULL);
	assert_int_equal(g.result, SPF_FAIL);
	assert_string_equal(g.domain, "helo.test");
	g = check(&z, "192.0.2.9", "user@nothing.test");
	assert_int_equal(g.result, SPF_NONE);
	g = check(&z, "192.0.2.9", "user@single");
	assert_int_equal(g.result, SPF_NONE);
	zone_free(&z);
}

static void test_eval_loops(void **state)
{
	struct zone z = {0};
	(void)state;
	add(&z, "a.test", SPF_DNS_TXT, "v=spf1 include:b.test -all");
	add(&z, "b.test", SPF_DNS_TXT, "v=spf1 include:a.test -all");
	add(&z, "self.test", SPF_DNS_TXT, "v=spf1 redirect=self.test");
	add(&z, "r1.test", SPF_DNS_TXT, "v=spf1 redirect=r2.test");
	add(&z, "r2.test", SPF_DNS_TXT, "v=spf1 redirect=r1.test");
	const char *senders[] = {"x@a.test", "x@self.test", "x@r1.test"};
	for (size_t i = 0; i < ARRAY_SIZE(senders); i++) {
		struct got g = check(&z, "192.0.2.1", senders[i]);
		assert_int_equal(g.result, SPF_PERMERROR);
		assert_int_equal(g.terms, SPF_LIMIT_DNS_TERMS + 1);
		assert_non_null(strstr(g.problem, "DNS-querying terms"));
	}
	/* a chain of 12 nested includes: the term limit again, never a deep stack */
	char name[32], rec[64];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		snprintf(rec, sizeof(rec), "v=spf1 include:n%d.test", i + 1);
		add(&z, name, SPF_DNS_TXT, rec);
	}
	add(&z, "n12.test", SPF_DNS_TXT, "v=spf1 +all");
	struct got g = check(&z, "192.0.2.1", "x@n0.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	/* with a higher limit the same chain resolves */
	struct spf_limits lim = {.dns_terms = 20};
	g = check_full(&z, "192.0.2.1", "x@n0.test", "helo.test", SPF_ID_MAILFROM, &lim);
	assert_int_equal(g.result, SPF_PASS);
	assert_int_equal(g.terms, 12);
	assert_int_equal(g.nrecords, SPF_RECORDS_MAX);
	zone_free(&z);
}

static void test_eval_limits(void **state)
{
	struct zone z = {0};
	char rec[1024];
	size_t n = 0;
	(void)state;
	n += (size_t)snprintf(rec + n, sizeof(rec) - n, "v=spf1");
	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(rec + n, sizeof(rec) - n, " a");
	snprintf(rec + n, sizeof(rec) - n, " +all");
	add(&z, "many.test", SPF_DNS_TXT, rec);
	add(&z, "many.test", SPF_DNS_A, "198.51.100.1");
	struct got g = check(&z, "192.0.2.1", "x@many.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	/* void lookups: 3 is over the default 2, fine with 3 allowed */
	add(&z, "void.test", SPF_DNS_TXT, "v=spf1 a:n1.void.test mx:n2.void.test exists:n3.void.test ?all");
	g = check(&z, "192.0.2.1", "x@void.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	assert_int_equal(g.voids, 3);
	struct spf_limits lim = {.void_lookups = 3};
	g = check_full(&z, "192.0.2.1", "x@void.test", "h.test", SPF_ID_MAILFROM, &lim);
	assert_int_equal(g.result, SPF_NEUTRAL);
	/* 11 MX names: permerror */
	add(&z, "mx.test", SPF_DNS_TXT, "v=spf1 mx -all");
	for (int i = 0; i < 11; i++) {
		char mx[32];
		snprintf(mx, sizeof(mx), "%d m%d.mx.test", i, i);
		add(&z, "mx.test", SPF_DNS_MX, mx);
	}
	g = check(&z, "192.0.2.1", "x@mx.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	/* a record over 8 KB: permerror; the answer's copy is cut */
	char *huge = xmalloc(9000);
	memcpy(huge, "v=spf1", 6);
	n = 6;
	while (n < 8990)
		n += (size_t)snprintf(huge + n, 9000 - n, " ip4:10.0.0.1");
	add(&z, "huge.test", SPF_DNS_TXT, huge);
	g = check(&z, "192.0.2.1", "x@huge.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	free(huge);
	/* two SPF records: permerror */
	add(&z, "two.test", SPF_DNS_TXT, "v=spf1 +all");
	add(&z, "two.test", SPF_DNS_TXT, "v=spf1 -all");
	g = check(&z, "192.0.2.1", "x@two.test");
	assert_int_equal(g.result, SPF_PERMERROR);
	zone_free(&z);
}

static void test_eval_dns_errors(void **state)
{
	struct zone z = {0};
	(void)state;
	add(&z, "t.test", SPF_DNS_TXT, "v=spf1 a:slow.test -all");
	add(&z, "slow.test", ZONE_TIMEOUT, "");
	add(&z, "down.test", ZONE_TIMEOUT, "");
	struct got g = check(&z, "192.0.2.1", "x@t.test");
	assert_int_equal(g.result, SPF_TEMPERROR);
	assert_non_null(strstr(g.problem, "slow.test"));
	g = check(&z, "192.0.2.1", "x@down.test");
	assert_int_equal(g.result, SPF_TEMPERROR);
	/* exp= that times out: the default explanation, still fail */
	add(&z, "e.test", SPF_DNS_TXT, "v=spf1 exp=down.test -all");
	g = check(&z, "192.0.2.1", "x@e.test");
	assert_int_equal(g.result, SPF_FAIL);
	assert_non_null(strstr(g.explanation, "does not designate"));
	zone_free(&z);
}

static void test_eval_exp_and_p(void **state)
{
	struct zone z = {0};
	(void)state;
	add(&z, "p.test", SPF_DNS_TXT, "v=spf1 exists:%{p}.ok.test exp=why.test -all");
	add(&z, "1.2.0.192.in-addr.arpa", SPF_DNS_PTR, "host.p.test.");
	add(&z, "host.p.test", SPF_DNS_A, "192.0.2.1");
	add(&z, "why.test", SPF_DNS_TXT, "%{p} (%{c}) may not send for %{o} %{L}");
	struct got g = check(&z, "192.0.2.1", "a&b@p.test");
	assert_int_equal(g.result, SPF_FAIL);
	assert_string_equal(g.explanation, "host.p.test (192.0.2.1) may not send for p.test a%26b");
	add(&z, "host.p.test.ok.test", SPF_DNS_A, "127.0.0.2");
	g = check(&z, "192.0.2.1", "x@p.test");
	assert_int_equal(g.result, SPF_PASS);
	/* an unvalidated PTR name: %{p} is "unknown" */
	g = check(&z, "192.0.2.7", "x@p.test");
	assert_int_equal(g.result, SPF_FAIL);
	assert_string_equal(g.explanation, "unknown (192.0.2.7) may not send for p.test x");
	/* a control character makes the explanation unusable: the default */
	add(&z, "ctl.test", SPF_DNS_TXT, "v=spf1 exp=ctlwhy.test -all");
	add(&z, "ctlwhy.test", SPF_DNS_TXT, "bad\x01text");
	g = check(&z, "192.0.2.1", "x@ctl.test");
	assert_string_equal(g.explanation, "ctl.test does not designate 192.0.2.1 as a permitted sender");
	/* an explanation longer than SPF_EXP_MAX is cut */
	char longexp[1200];
	memset(longexp, 'x', sizeof(longexp) - 1);
	longexp[sizeof(longexp) - 1] = '\0';
	add(&z, "long.test", SPF_DNS_TXT, "v=spf1 exp=longwhy.test -all");
	add(&z, "longwhy.test", SPF_DNS_TXT, longexp);
	g = check(&z, "192.0.2.1", "x@long.test");
	assert_int_equal(strlen(g.explanation), SPF_EXP_MAX);
	zone_free(&z);
}

static void test_eval_long_expansion(void **state)
{
	/* a 64-byte local part five times plus the domain: over 253 bytes, cut on the left */
	struct zone z = {0};
	char local[65], sender[128], want[300];
	(void)state;
	memset(local, 'l', 63);
	local[63] = '\0';
	snprintf(sender, sizeof(sender), "%s@long.test", local);
	add(&z, "long.test", SPF_DNS_TXT, "v=spf1 exists:%{l}.%{l}.%{l}.%{l}.%{l}.x.test -all");
	snprintf(want, sizeof(want), "%s.%s.%s.x.test", local, local, local);
	add(&z, want, SPF_DNS_A, "127.0.0.2");
	struct got g = check(&z, "192.0.2.1", sender);
	assert_int_equal(g.result, SPF_PASS);
	zone_free(&z);
}

static int cancelled_calls;
static void on_cancelled(void *arg, const struct spf_answer *a)
{
	(void)arg, (void)a;
	cancelled_calls++;
}

static void test_eval_cancel(void **state)
{
	struct zone z = {0};
	(void)state;
	add(&z, "c.test", SPF_DNS_TXT, "v=spf1 mx -all");
	for (int i = 0; i < 5; i++) {
		char mx[32];
		snprintf(mx, sizeof(mx), "%d m%d.c.test", i, i);
		add(&z, "c.test", SPF_DNS_MX, mx);
	}
	struct sockaddr_in sin = {.sin_family = AF_INET};
	inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
	struct spf_request req = {.client = (struct sockaddr *)&sin, .sender = "x@c.test", .helo = "h.test"};
	struct spf_dns dns = zone_dns(&z);
	z.async = true;
	/* cancel at each depth of the evaluation: after 0, 1 and 2 rounds of answers */
	for (int rounds = 0; rounds < 3; rounds++) {
		struct spf_check *c = spf_check_start(&dns, &req, on_cancelled, NULL);
		assert_non_null(c);
		for (int r = 0; r < rounds; r++) { /* answer only what is pending now */
			struct zone_pending *p = z.queue;
			z.queue = NULL;
			while (p) {
				struct zone_pending *next = p->next;
				z.outstanding--;
				if (!p->cancelled)
					zone_answer(&z, p->type, p->name, p->cb, p->arg);
				free(p);
				p = next;
			}
		}
		assert_non_null(z.queue);
		spf_check_cancel(c);
		zone_run(&z);
		assert_int_equal(cancelled_calls, 0);
	}
	zone_free(&z);
}

static void test_result_names(void **state)
{
	(void)state;
	assert_string_equal(spf_result_name(SPF_NONE), "none");
	assert_string_equal(spf_result_name(SPF_SOFTFAIL), "softfail");
	assert_string_equal(spf_result_name(SPF_PERMERROR), "permerror");
	assert_string_equal(spf_result_name((enum spf_result)42), "?");
	assert_string_equal(spf_identity_name(SPF_ID_HELO), "helo");
	assert_string_equal(spf_identity_name(SPF_ID_MAILFROM), "mailfrom");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_version),
		cmocka_unit_test(test_record_terms),
		cmocka_unit_test(test_record_errors),
		cmocka_unit_test(test_record_huge),
		cmocka_unit_test(test_macro_rfc_examples),
		cmocka_unit_test(test_macro_errors),
		cmocka_unit_test(test_macro_bounded),
		cmocka_unit_test(test_eval_basic),
		cmocka_unit_test(test_eval_loops),
		cmocka_unit_test(test_eval_limits),
		cmocka_unit_test(test_eval_dns_errors),
		cmocka_unit_test(test_eval_exp_and_p),
		cmocka_unit_test(test_eval_long_expansion),
		cmocka_unit_test(test_eval_cancel),
		cmocka_unit_test(test_result_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
