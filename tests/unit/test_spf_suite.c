/* test_spf_suite.c - the RFC 7208 test suite (tests/spf/rfc7208-cases.txt, converted from
 * rfc7208-tests.yml) through the evaluator and the zone double: every case, with DNS answers
 * given synchronously, later in FIFO order and later in LIFO order. A case passes when the
 * result is one the suite lists and the explanation, where given, is the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spf_eval.h"
#include "spf_zone.h"
#include "util.h"

static const char *cases_path;

struct tcase {
	char *name, *host, *mailfrom, *helo, *results, *explanation;
	size_t section;
};

struct suite {
	struct zone *zones; /* one per section */
	size_t nzones;
	struct tcase *cases;
	size_t ncases;
};

/* Decode a %XX field in place; returns its length (it may hold NULs). */
static size_t decode(char *s)
{
	size_t o = 0;
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '%' && s[i + 1] && s[i + 2]) {
			char hex[3] = {s[i + 1], s[i + 2], 0};
			s[o++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	s[o] = '\0';
	return o;
}

static int rr_type(const char *t)
{
	static const struct {
		const char *name;
		int type;
	} types[] = {{"A", SPF_DNS_A}, {"AAAA", SPF_DNS_AAAA}, {"MX", SPF_DNS_MX}, {"PTR", SPF_DNS_PTR},
		     {"TXT", SPF_DNS_TXT}, {"TIMEOUT", ZONE_TIMEOUT}, {"CNAME", ZONE_CNAME}, {"SPF", ZONE_SPF}};
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (strcmp(types[i].name, t) == 0)
			return types[i].type;
	return -1;
}

static char *field_value(char *f, const char *key)
{
	size_t n = strlen(key);
	if (strncmp(f, key, n) != 0 || f[n] != '=')
		return NULL;
	char *v = f + n + 1;
	decode(v);
	return xstrdup(v);
}

static void load(struct suite *s, const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[8192];
	assert_non_null(fp);
	memset(s, 0, sizeof(*s));
	while (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = '\0';
		char *rest = line, *f[8];
		size_t nf = 0;
		if (line[0] == '#' || line[0] == '\0')
			continue;
		while (nf < 8 && (f[nf] = strsep(&rest, " ")) != NULL)
			nf++;
		if (strcmp(f[0], "section") == 0) {
			s->zones = xrealloc(s->zones, (s->nzones + 1) * sizeof(*s->zones));
			memset(&s->zones[s->nzones++], 0, sizeof(*s->zones));
		} else if (strcmp(f[0], "rr") == 0 && nf >= 3) {
			int type = rr_type(f[2]);
			assert_true(type > 0);
			decode(f[1]);
			char data[8192] = "";
			size_t len = 0;
			if (type == SPF_DNS_MX && nf >= 5) {
				decode(f[4]);
				snprintf(data, sizeof(data), "%s %s", f[3], f[4]);
				len = strlen(data);
			} else if (nf >= 4) {
				len = decode(f[3]);
				memcpy(data, f[3], len + 1);
			}
			assert_true(zone_add(&s->zones[s->nzones - 1], f[1], type, data, len));
		} else if (strcmp(f[0], "case") == 0) {
			s->cases = xrealloc(s->cases, (s->ncases + 1) * sizeof(*s->cases));
			struct tcase *c = &s->cases[s->ncases++];
			memset(c, 0, sizeof(*c));
			c->section = s->nzones - 1;
			decode(f[1]);
			c->name = xstrdup(f[1]);
			for (size_t i = 2; i < nf; i++) {
				char *v;
				if ((v = field_value(f[i], "host")))
					c->host = v;
				else if ((v = field_value(f[i], "mailfrom")))
					c->mailfrom = v;
				else if ((v = field_value(f[i], "helo")))
					c->helo = v;
				else if ((v = field_value(f[i], "result")))
					c->results = v;
				else if ((v = field_value(f[i], "explanation")))
					c->explanation = v;
			}
		}
	}
	fclose(fp);
}

static void suite_free(struct suite *s)
{
	for (size_t i = 0; i < s->nzones; i++)
		zone_free(&s->zones[i]);
	for (size_t i = 0; i < s->ncases; i++) {
		struct tcase *c = &s->cases[i];
		free(c->name), free(c->host), free(c->mailfrom), free(c->helo), free(c->results), free(c->explanation);
	}
	free(s->zones);
	free(s->cases);
}

struct outcome {
	int calls;
	enum spf_result result;
	char explanation[SPF_EXP_MAX + 1];
	char problem[256];
	char mechanism[128];
};

static void on_answer(void *arg, const struct spf_answer *a)
{
	struct outcome *o = arg;
	o->calls++;
	o->result = a->result;
	snprintf(o->explanation, sizeof(o->explanation), "%s", a->explanation ? a->explanation : "");
	snprintf(o->problem, sizeof(o->problem), "%s", a->problem ? a->problem : "");
	snprintf(o->mechanism, sizeof(o->mechanism), "%s", a->mechanism);
	assert_non_null(a->mechanism);
	assert_true(a->result != SPF_FAIL || a->explanation != NULL);
}

static bool result_listed(const char *list, enum spf_result r)
{
	const char *name = spf_result_name(r);
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && strncmp(p, name, n) == 0)
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

/* Run one case; true if it passes. */
static bool run_case(struct suite *s, const struct tcase *t, bool async, bool lifo)
{
	struct zone *z = &s->zones[t->section];
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, t->host, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, t->host, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	struct spf_request req = {
		.client = (struct sockaddr *)&ss,
		.sender = t->mailfrom,
		.helo = t->helo,
		.receiver = "receiver.test",
		.identity = SPF_ID_MAILFROM,
		.now = 1700000000,
		.default_exp = "DEFAULT",
	};
	struct outcome o;
	memset(&o, 0, sizeof(o));
	z->async = async;
	z->lifo = lifo;
	z->queries = 0;
	struct spf_dns dns = zone_dns(z);
	struct spf_check *c = spf_check_start(&dns, &req, on_answer, &o);
	assert_true(async || c == NULL);
	zone_run(z);
	assert_int_equal(o.calls, 1);
	bool ok = result_listed(t->results, o.result);
	if (ok && t->explanation && o.result == SPF_FAIL && strcmp(t->explanation, o.explanation) != 0)
		ok = false;
	if (!ok)
		print_message("FAIL %s (%s%s): got %s (%s) exp='%s' problem='%s', want %s exp='%s'\n", t->name,
			      async ? "async" : "sync", lifo ? " lifo" : "", spf_result_name(o.result), o.mechanism,
			      o.explanation, o.problem, t->results, t->explanation ? t->explanation : "");
	return ok;
}

static void run_suite(bool async, bool lifo)
{
	struct suite s;
	size_t passed = 0;
	load(&s, cases_path);
	assert_true(s.ncases > 200);
	for (size_t i = 0; i < s.ncases; i++)
		passed += run_case(&s, &s.cases[i], async, lifo);
	print_message("RFC 7208 suite (%s%s): %zu of %zu cases pass\n", async ? "async" : "sync",
		      lifo ? " lifo" : "", passed, s.ncases);
	assert_int_equal(passed, s.ncases);
	suite_free(&s);
}

static void test_suite_sync(void **state)
{
	(void)state;
	run_suite(false, false);
}

static void test_suite_async_fifo(void **state)
{
	(void)state;
	run_suite(true, false);
}

static void test_suite_async_lifo(void **state)
{
	(void)state;
	run_suite(true, true);
}

int main(int argc, char **argv)
{
	cases_path = argc > 1 ? argv[1] : "tests/spf/rfc7208-cases.txt";
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_sync),
		cmocka_unit_test(test_suite_async_fifo),
		cmocka_unit_test(test_suite_async_lifo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
