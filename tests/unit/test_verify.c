/* test_verify.c - verification orchestration with a fake source type registered for the test:
 * chain order, the reply for each verdict, on_unavailable both ways, on_catchall, the cache
 * (hits, UNAVAILABLE never cached, refresh past half the TTL), the budget (UNAVAILABLE to the
 * session, then the cache filled in the background), cancel and shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "verify.h"

/* ---- the fake source: "fake:valid", "fake:invalid", "fake:unavail", "fake:catchall",
 * "fake:slow" (VALID after 200 ms on the caller's loop) ---- */

static char calls[256]; /* one letter per lookup, in order */
static int fake_cancels;
static int slow_answers;              /* answers of "fake:slow" so far */
static int slow_answers_at_result;    /* ... when the last verify result reached the caller */

struct fake { char *spec; char kind; };
struct rcpt_query { struct event *ev; rcpt_answer_cb done; void *arg; struct fake *f; };

static void *fake_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	struct fake *f = xcalloc(1, sizeof *f);
	f->spec = xmalloc(strlen(arg) + 6);
	sprintf(f->spec, "fake:%s", arg);
	f->kind = arg[0] == 'c' ? 'C' : arg[0]; /* v, i, u, C, s */
	return f;
}

static void fake_slow_fire(evutil_socket_t fd, short what, void *arg)
{
	struct rcpt_query *q = arg;
	struct rcpt_answer ans = { .verdict = RCPT_VALID, .source = q->f->spec, .reason = "slow yes" };
	slow_answers++;
	event_free(q->ev);
	rcpt_answer_cb done = q->done;
	void *darg = q->arg;
	free(q);
	done(darg, &ans);
}

static struct rcpt_query *fake_lookup(void *state, struct event_base *base, const struct rcpt_addr *addr,
				      rcpt_answer_cb done, void *arg)
{
	struct fake *f = state;
	struct rcpt_answer ans = { .source = f->spec };
	size_t n = strlen(calls);
	if (n + 1 < sizeof calls)
		calls[n] = f->kind, calls[n + 1] = '\0';
	if (f->kind == 's') {
		struct rcpt_query *q = xcalloc(1, sizeof *q);
		struct timeval tv = { 0, 200000 };
		*q = (struct rcpt_query){ .done = done, .arg = arg, .f = f };
		q->ev = evtimer_new(base, fake_slow_fire, q);
		evtimer_add(q->ev, &tv);
		return q;
	}
	ans.verdict = f->kind == 'i' ? RCPT_INVALID : f->kind == 'u' ? RCPT_UNAVAILABLE : RCPT_VALID;
	ans.catchall = f->kind == 'C';
	snprintf(ans.reason, sizeof ans.reason, "fake %c", f->kind);
	done(arg, &ans);
	return NULL;
}

static void fake_cancel(struct rcpt_query *q)
{
	fake_cancels++;
	event_free(q->ev);
	free(q);
}

static void fake_close(void *state)
{
	struct fake *f = state;
	free(f->spec);
	free(f);
}

static const struct rcpt_source_type fake_type = {
	.prefix = "fake", .open = fake_open, .lookup = fake_lookup, .cancel = fake_cancel, .close = fake_close,
};

/* ---- fixture: one domain, example.com, whose verify list each test sets ---- */

struct fixture {
	struct bs_config cfg;
	struct bs_domain dom;
	char *specs[4];
	struct rcpt_registry *reg;
	struct vcache *cache;
	struct verifier *v;
	struct event_base *base;
};

static void start(struct fixture *f, const char *s1, const char *s2, const char *s3)
{
	const char *in[] = { s1, s2, s3 };
	for (size_t i = 0; i < 3; i++)
		if (in[i])
			f->specs[f->dom.verify.n++] = (char *)(uintptr_t)in[i];
	f->dom.verify.items = f->specs;
	f->reg = rcpt_registry_open(&f->cfg);
	f->v = verifier_new(&f->cfg, f->reg, f->cache);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	char why[128];
	rcpt_type_register_extra(&fake_type);
	snprintf(f->dom.name, sizeof f->dom.name, "example.com");
	f->dom.reject_code = 550;
	f->cfg.domains = &f->dom;
	f->cfg.ndomains = 1;
	f->cfg.verify_timeout_ms = 50;
	f->cache = vcache_open("memory:", &f->cfg, why, sizeof why);
	f->base = event_base_new();
	calls[0] = '\0';
	fake_cancels = 0;
	slow_answers = 0;
	slow_answers_at_result = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	verifier_shutdown_base(f->v, f->base);
	verifier_free(f->v);
	rcpt_registry_close(f->reg);
	vcache_close(f->cache);
	event_base_free(f->base);
	free(f);
	return 0;
}

struct outcome { int calls; struct verify_result r; };

static void on_result(void *arg, const struct verify_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->r = *r;
	slow_answers_at_result = slow_answers;
}

static struct smtp_address mkaddr(const char *local)
{
	struct smtp_address a = { 0 };
	snprintf(a.local, sizeof a.local, "%s", local);
	snprintf(a.local_raw, sizeof a.local_raw, "%s", local);
	a.local_len = a.local_raw_len = strlen(local);
	snprintf(a.domain, sizeof a.domain, "example.com");
	a.domain_len = strlen(a.domain);
	return a;
}

/* Verify and run the loop until the answer (and anything in the background) is done. */
static struct verify_result verify(struct fixture *f, const char *local)
{
	struct outcome o = { 0 };
	struct smtp_address a = mkaddr(local);
	verify_start(f->v, f->base, &f->dom, &a, on_result, &o);
	assert_int_equal(o.calls, 0); /* never from inside verify_start */
	event_base_dispatch(f->base);
	assert_int_equal(o.calls, 1);
	return o.r;
}

static void test_chain_order_first_definite_answer_wins(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:unavail", "fake:invalid", "fake:valid");
	struct verify_result r = verify(f, "Bob");
	assert_string_equal(calls, "ui");
	assert_int_equal(r.verdict, RCPT_INVALID);
	assert_int_equal(r.action, VERIFY_REJECT);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enhanced, "5.1.1");
	assert_string_equal(r.text, "<Bob@example.com>: Recipient address rejected: User unknown");
	assert_string_equal(r.source, "fake:invalid");
	assert_false(r.cached);
	/* now cached (key case-folded) */
	r = verify(f, "bob");
	assert_string_equal(calls, "ui");
	assert_true(r.cached);
	assert_int_equal(r.verdict, RCPT_INVALID);
	assert_string_equal(r.source, "fake:invalid");
	assert_true(r.ttl_left_ms > 290000 && r.ttl_left_ms <= 300000); /* default negative TTL 5 min */
}

static void test_valid_and_custom_reject(void **state)
{
	struct fixture *f = *state;
	f->dom.reject_code = 450;
	f->dom.reject_text = (char *)(uintptr_t)"No such mailbox here";
	start(f, "fake:invalid", NULL, NULL);
	struct verify_result r = verify(f, "x");
	assert_int_equal(r.code, 450);
	assert_string_equal(r.enhanced, "4.1.1");
	assert_string_equal(r.text, "<x@example.com>: No such mailbox here");
}

static void test_all_unavailable_defer_not_cached(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:unavail", "nosuch:thing", NULL);
	struct verify_result r = verify(f, "carol");
	assert_int_equal(r.verdict, RCPT_UNAVAILABLE);
	assert_int_equal(r.action, VERIFY_DEFER);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enhanced, "4.4.3");
	assert_non_null(strstr(r.reason, "fake:unavail: fake u"));
	assert_non_null(strstr(r.reason, "nosuch:thing: unavailable: unknown source type"));
	r = verify(f, "carol");
	assert_false(r.cached);
	assert_string_equal(calls, "uu");
}

static void test_all_unavailable_accept(void **state)
{
	struct fixture *f = *state;
	f->dom.on_unavailable = ON_UNAVAILABLE_ACCEPT;
	start(f, "fake:unavail", NULL, NULL);
	struct verify_result r = verify(f, "carol");
	assert_int_equal(r.verdict, RCPT_UNAVAILABLE);
	assert_int_equal(r.action, VERIFY_ACCEPT);
	assert_int_equal(r.code, 250);
}

static void test_catchall_rules(void **state)
{
	struct fixture *f = *state;
	f->dom.on_catchall = ON_CATCHALL_UNAVAILABLE;
	start(f, "fake:catchall", "fake:invalid", NULL);
	struct verify_result r = verify(f, "dave");
	assert_string_equal(calls, "Ci");
	assert_int_equal(r.verdict, RCPT_INVALID);
	f->dom.on_catchall = ON_CATCHALL_ACCEPT;
	r = verify(f, "erin");
	assert_int_equal(r.verdict, RCPT_VALID);
	assert_string_equal(calls, "CiC");
}

static void test_no_verify_list_leaves_it_to_the_backend(void **state)
{
	struct fixture *f = *state;
	start(f, NULL, NULL, NULL);
	struct verify_result r = verify(f, "anyone");
	assert_int_equal(r.action, VERIFY_ACCEPT);
	assert_string_equal(r.source, "none");
}

static void test_budget_timeout_then_background_fill(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:slow", NULL, NULL);
	struct verify_result r = verify(f, "frank"); /* dispatch runs until the slow source is done */
	assert_true(r.timed_out);
	assert_int_equal(r.verdict, RCPT_UNAVAILABLE);
	assert_int_equal(r.action, VERIFY_DEFER);
	/* the budget (50 ms) answered before the source (200 ms), which answered afterwards: by the
	 * order of events, not a wall-clock window */
	assert_int_equal(slow_answers_at_result, 0);
	assert_int_equal(slow_answers, 1);
	r = verify(f, "frank");
	assert_true(r.cached);
	assert_int_equal(r.verdict, RCPT_VALID);
	assert_string_equal(r.source, "fake:slow");
	assert_string_equal(calls, "s");
}

static void test_cancel_lets_the_lookup_fill_the_cache(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:slow", NULL, NULL);
	struct outcome o = { 0 };
	struct smtp_address a = mkaddr("gina");
	verify_cancel(verify_start(f->v, f->base, &f->dom, &a, on_result, &o));
	event_base_dispatch(f->base);
	assert_int_equal(o.calls, 0);
	assert_true(verify(f, "gina").cached);
}

static void test_shutdown_cancels_background(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:slow", NULL, NULL);
	struct outcome o = { 0 };
	struct smtp_address a = mkaddr("hank");
	verify_cancel(verify_start(f->v, f->base, &f->dom, &a, on_result, &o));
	verifier_shutdown_base(f->v, f->base);
	assert_int_equal(fake_cancels, 1);
	event_base_dispatch(f->base);
	assert_false(verify(f, "hank").cached);
}

static void test_refresh_past_half_ttl(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:valid", NULL, NULL);
	uint64_t ttl = 24ULL * 3600 * 1000;
	struct vcache_entry e = { .verdict = RCPT_VALID, .stored_ms = vcache_now() - ttl / 4 * 3, .ttl_ms = ttl };
	snprintf(e.source, sizeof e.source, "fake:valid");
	vcache_put_entry(f->cache, "ivy@example.com", &e);
	struct verify_result r = verify(f, "ivy");
	assert_true(r.cached); /* served from the cache... */
	assert_true(r.age_ms >= ttl / 4 * 3);
	assert_string_equal(calls, "v"); /* ...and refreshed */
	r = verify(f, "ivy");
	assert_true(r.cached);
	assert_true(r.age_ms < 60000);
	assert_string_equal(calls, "v");
}

static void test_nocache(void **state)
{
	struct fixture *f = *state;
	start(f, "fake:valid", NULL, NULL);
	verify(f, "jo");
	struct outcome o = { 0 };
	struct smtp_address a = mkaddr("jo");
	verify_start_nocache(f->v, f->base, &f->dom, &a, on_result, &o);
	event_base_dispatch(f->base);
	assert_false(o.r.cached);
	assert_string_equal(calls, "vv");
}

/* ---- a local source (like map:): answers local_verdict at once, letter 'L' ---- */

static enum rcpt_verdict local_verdict;

static struct rcpt_query *local_lookup(void *state, struct event_base *base, const struct rcpt_addr *addr,
				       rcpt_answer_cb done, void *arg)
{
	struct fake *f = state;
	struct rcpt_answer ans = { .verdict = local_verdict, .source = f->spec, .reason = "local" };
	strbuf_append(calls, sizeof calls, "L");
	done(arg, &ans);
	return NULL;
}

static const struct rcpt_source_type local_type = {
	.prefix = "local", .local = true, .open = fake_open, .lookup = local_lookup, .cancel = fake_cancel,
	.close = fake_close,
};

/* issue 9 item 8: verify = map callout. While the map could not answer, the callout's INVALID was
 * cached; once the map holds the address it is VALID at once (the map is asked before the cache),
 * and nothing a local source says is cached. */
static void test_local_source_first_and_never_cached(void **state)
{
	struct fixture *f = *state;
	rcpt_type_register_extra(&local_type);
	start(f, "local:map", "fake:invalid", NULL);
	local_verdict = RCPT_UNAVAILABLE;
	struct verify_result r = verify(f, "newbie");
	assert_int_equal(r.verdict, RCPT_INVALID);
	assert_string_equal(r.source, "fake:invalid");
	assert_string_equal(calls, "Li");
	local_verdict = RCPT_VALID; /* the map was loaded, with newbie@ */
	r = verify(f, "newbie");
	assert_int_equal(r.verdict, RCPT_VALID);
	assert_string_equal(r.source, "fake:map");
	assert_false(r.cached);
	assert_string_equal(calls, "LiL");
	local_verdict = RCPT_INVALID;
	r = verify(f, "other");
	assert_int_equal(r.verdict, RCPT_INVALID);
	assert_false(r.cached);
	r = verify(f, "other");
	assert_false(r.cached); /* asked again: never cached */
	assert_string_equal(calls, "LiLLL");
	local_verdict = RCPT_UNAVAILABLE; /* the map cannot answer: the cache does */
	r = verify(f, "newbie");
	assert_true(r.cached);
	assert_int_equal(r.verdict, RCPT_INVALID);
	assert_string_equal(calls, "LiLLLL");
}

/* A local source after a cached one: its verdict is not cached either. */
static void test_local_source_later_in_chain_not_cached(void **state)
{
	struct fixture *f = *state;
	rcpt_type_register_extra(&local_type);
	start(f, "fake:unavail", "local:map", NULL);
	local_verdict = RCPT_INVALID;
	struct verify_result r = verify(f, "x");
	assert_int_equal(r.verdict, RCPT_INVALID);
	r = verify(f, "x");
	assert_false(r.cached);
	assert_string_equal(calls, "uLuL");
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	log_open(false, LOG_LVL_ERR + 0);
	const struct CMUnitTest tests[] = {
		T(test_chain_order_first_definite_answer_wins),
		T(test_valid_and_custom_reject),
		T(test_all_unavailable_defer_not_cached),
		T(test_all_unavailable_accept),
		T(test_catchall_rules),
		T(test_no_verify_list_leaves_it_to_the_backend),
		T(test_budget_timeout_then_background_fill),
		T(test_cancel_lets_the_lookup_fill_the_cache),
		T(test_shutdown_cancels_background),
		T(test_refresh_past_half_ttl),
		T(test_local_source_first_and_never_cached),
		T(test_local_source_later_in_chain_not_cached),
		T(test_nocache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
