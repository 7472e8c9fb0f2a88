/* test_engine.c - the decision engine with test-double checks (checks_override_for_tests): order
 * per stage, the first decisive answer, log fields and headers, answers from inside a check's
 * start and later, the stage deadline (over a hanging check and over a hanging verdict cache
 * behind the real verify check), cancel, the counters; then the real relay check per front end
 * and engine_request_set_rcpt. Deadlines are short (the config's 1 s minimum is bypassed by
 * setting the field directly): every wait is bounded by a timer of the test's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine.h"
#include "engine_stats.h"
#include "log.h"
#include "rcpt.h"
#include "smtp_parse.h"
#include "util.h"
#include "vcache.h"
#include "verify.h"

#define DEADLINE_MS 100 /* decision_timeout of the tests */

/* ---- test-double checks: what each does is set by its script ---- */

enum fake_mode {
	FAKE_INLINE = 0, /* answers from inside its start */
	FAKE_LATER,      /* answers after delay_ms from the loop */
	FAKE_HANG,       /* never answers (until cancelled) */
};

struct script {
	char letter;               /* appended to `started` when the check starts */
	enum fake_mode mode;
	uint64_t delay_ms;
	struct check_answer ans;
	int starts, cancels, closes, answers;
};

#define NFAKES 5
static struct script scripts[NFAKES];
static char started[64];         /* letters of the checks started, in order */
static bool inside_engine_start; /* set by the tests around engine_start */

struct check_query {
	struct event *ev; /* FAKE_LATER: the answer; FAKE_HANG: NULL */
	struct script *s;
	check_cb cb;
	void *arg;
};

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct check_query *q = arg;
	struct check_answer a = q->s->ans;
	check_cb cb = q->cb;
	void *cbarg = q->arg;

	(void)fd;
	(void)what;
	q->s->answers++;
	event_free(q->ev);
	free(q);
	cb(cbarg, &a);
}

static struct check_query *fake_start(struct script *s, struct event_base *base, check_cb cb, void *arg)
{
	size_t n = strlen(started);
	s->starts++;
	if (n + 1 < sizeof started)
		started[n] = s->letter, started[n + 1] = '\0';
	if (s->mode == FAKE_INLINE) {
		struct check_answer a = s->ans;
		s->answers++;
		cb(arg, &a);
		return NULL;
	}
	struct check_query *q = xcalloc(1, sizeof *q);
	*q = (struct check_query){ .s = s, .cb = cb, .arg = arg };
	if (s->mode == FAKE_LATER) {
		struct timeval tv = { (time_t)(s->delay_ms / 1000), (suseconds_t)(s->delay_ms % 1000) * 1000 };
		q->ev = evtimer_new(base, fake_fire, q);
		evtimer_add(q->ev, &tv);
	}
	return q;
}

static void fake_cancel(struct check_query *q)
{
	q->s->cancels++;
	if (q->ev)
		event_free(q->ev);
	free(q);
}

static void fake_close(void *state)
{
	((struct script *)state)->closes++;
}

#define FAKE(i)                                                                                          \
	static int fake_open_##i(const struct engine_env *env, void **state, char *why, size_t whysz)    \
	{                                                                                                \
		(void)env, (void)why, (void)whysz;                                                       \
		*state = &scripts[i];                                                                    \
		return 1;                                                                                \
	}                                                                                                \
	static struct check_query *fake_start_##i(void *state, struct event_base *base,                  \
						  const struct engine_request *req, check_cb cb, void *arg) \
	{                                                                                                \
		(void)req;                                                                               \
		return fake_start(state, base, cb, arg);                                                 \
	}
FAKE(0)
FAKE(1)
FAKE(2)
FAKE(3)
FAKE(4)

#define RCPT ENGINE_STAGE_BIT(ENGINE_STAGE_RCPT)
#define MAIL ENGINE_STAGE_BIT(ENGINE_STAGE_MAIL)
#define TYPE(i, nm, st)                                                                                  \
	{ .name = nm, .stages = st, .open = fake_open_##i, .close = fake_close, .start = fake_start_##i,  \
	  .cancel = fake_cancel }

/* A (rcpt), B (mail only), C (rcpt and mail), D (rcpt), E (rcpt) */
static const struct check_type fake_types[NFAKES] = {
	TYPE(0, "A", RCPT), TYPE(1, "B", MAIL), TYPE(2, "C", RCPT | MAIL), TYPE(3, "D", RCPT), TYPE(4, "E", RCPT),
};
static const struct check_type *const fake_registry[NFAKES] = {
	&fake_types[0], &fake_types[1], &fake_types[2], &fake_types[3], &fake_types[4],
};

static struct script *script(char letter)
{
	return &scripts[letter - 'A'];
}

static void answer(char letter, enum check_result r, int code, const char *enh, const char *text)
{
	check_answer_set(&script(letter)->ans, r, code, enh, "%s", text);
}

/* ---- fixture: two domains, a loop, the counters ---- */

struct fixture {
	struct bs_config cfg;
	struct bs_domain doms[2];
	char *specs[1];
	struct event_base *base;
	struct engine_stats *stats;
	struct engine *e;
	/* the verify test's own */
	struct rcpt_registry *reg;
	struct vcache *cache;
	struct verifier *v;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	memset(scripts, 0, sizeof scripts);
	for (int i = 0; i < NFAKES; i++)
		scripts[i].letter = (char)('A' + i);
	started[0] = '\0';
	snprintf(f->doms[0].name, sizeof f->doms[0].name, "example.com"); /* sorted by name */
	snprintf(f->doms[1].name, sizeof f->doms[1].name, "example.org");
	f->doms[0].reject_code = f->doms[1].reject_code = 550;
	f->cfg.domains = f->doms;
	f->cfg.ndomains = 2;
	snprintf(f->cfg.postmaster_domain, sizeof f->cfg.postmaster_domain, "example.org");
	f->cfg.decision_timeout_ms = DEADLINE_MS;
	f->cfg.verify_timeout_ms = 10000;
	f->base = event_base_new();
	f->stats = engine_stats_new();
	checks_override_for_tests(fake_registry, NFAKES);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	engine_free(f->e);
	if (f->v) {
		verifier_shutdown_base(f->v, f->base);
		verifier_free(f->v);
	}
	if (f->reg)
		rcpt_registry_close(f->reg);
	vcache_close(f->cache);
	checks_override_for_tests(NULL, 0);
	engine_stats_free(f->stats);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void build(struct fixture *f)
{
	char why[256] = "";
	struct engine_env env = { .cfg = &f->cfg, .verifier = f->v, .stats = f->stats };
	f->e = engine_new(&env, why, sizeof why);
	assert_non_null(f->e);
}

/* The recipient as the session parses it ("<postmaster>" included). */
static struct smtp_address addr(const char *path)
{
	char arg[SMTP_PATH_MAX + 8];
	struct smtp_rcpt_cmd rc;
	struct smtp_parse_error err;
	snprintf(arg, sizeof arg, "TO:%s", path);
	assert_int_equal(smtp_rcpt_parse(arg, strlen(arg), false, &rc, &err), 0);
	return rc.to;
}

static struct engine_request request(const struct fixture *f, enum engine_frontend fe, enum engine_stage stage,
				     const char *rcpt)
{
	struct engine_request req;
	engine_request_init(&req, fe, "S1", NULL, 0);
	req.stage = stage;
	if (rcpt) { /* the request points to it: kept in a ring for the test's life */
		static struct smtp_address ring[8];
		static size_t next;
		struct smtp_address *a = &ring[next++ % 8];
		*a = addr(rcpt);
		engine_request_set_rcpt(&req, &f->cfg, a);
	}
	return req;
}

struct outcome {
	int calls;
	bool from_inside_start;
	struct engine_decision d;
	struct engine_query *cancel_in_callback; /* engine_cancel it from the callback (a no-op) */
};

static void on_decision(void *arg, const struct engine_decision *d)
{
	struct outcome *o = arg;
	o->calls++;
	o->from_inside_start |= inside_engine_start;
	/* d's strings live only during the callback: kept in a ring for the test's life */
	static char headers[4][ENGINE_HEADERS_MAX], text[4][ENGINE_TEXT_MAX], log[4][ENGINE_LOG_MAX];
	static size_t n;
	size_t i = n++ % 4;
	o->d = *d;
	snprintf(headers[i], sizeof headers[i], "%s", d->headers);
	snprintf(text[i], sizeof text[i], "%s", d->text);
	snprintf(log[i], sizeof log[i], "%s", d->log);
	o->d.headers = headers[i];
	o->d.text = text[i];
	o->d.log = log[i];
	engine_cancel(o->cancel_in_callback);
}

static struct engine_query *start(struct fixture *f, const struct engine_request *req, struct outcome *o)
{
	inside_engine_start = true;
	struct engine_query *q = engine_start(f->e, f->base, req, on_decision, o);
	inside_engine_start = false;
	assert_non_null(q);
	assert_int_equal(o->calls, 0); /* never from inside engine_start */
	return q;
}

/* Decide req and run the loop until nothing is left on it (every fake timer and the deadline
 * are bounded). */
static struct engine_decision decide(struct fixture *f, const struct engine_request *req)
{
	struct outcome o = { 0 };
	start(f, req, &o);
	event_base_dispatch(f->base);
	assert_int_equal(o.calls, 1);
	assert_false(o.from_inside_start);
	return o.d;
}

static struct engine_decision decide_rcpt(struct fixture *f, const char *rcpt)
{
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, rcpt);
	return decide(f, &req);
}

/* ---- order, first decisive answer ---- */

static void test_order_per_stage(void **state)
{
	struct fixture *f = *state;
	build(f);
	assert_true(engine_stage_has_checks(f->e, ENGINE_STAGE_RCPT));
	assert_true(engine_stage_has_checks(f->e, ENGINE_STAGE_MAIL));
	assert_false(engine_stage_has_checks(f->e, ENGINE_STAGE_CONNECT));
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "ACDE"); /* B runs only at MAIL */
	assert_int_equal(d.result, CHECK_NEUTRAL);
	assert_null(d.check);
	assert_false(d.timed_out);
	assert_int_equal(d.stage, ENGINE_STAGE_RCPT);
	started[0] = '\0';
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_MAIL, NULL);
	d = decide(f, &req);
	assert_string_equal(started, "BC");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	/* a stage without checks is decided too, from the loop */
	started[0] = '\0';
	req.stage = ENGINE_STAGE_CONNECT;
	d = decide(f, &req);
	assert_string_equal(started, "");
	assert_int_equal(d.result, CHECK_NEUTRAL);
}

static void test_first_decisive_answer_wins(void **state)
{
	struct fixture *f = *state;
	answer('C', CHECK_REJECT, 550, "5.1.1", "<bob@example.com>: no");
	answer('D', CHECK_ACCEPT, 250, "2.1.5", "yes");
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "AC");
	assert_int_equal(script('D')->starts, 0);
	assert_int_equal(script('E')->starts, 0);
	assert_int_equal(d.result, CHECK_REJECT);
	assert_string_equal(d.check, "C");
	assert_int_equal(d.code, 550);
	assert_string_equal(d.enhanced, "5.1.1");
	assert_string_equal(d.text, "<bob@example.com>: no");
	assert_false(d.timed_out);
}

static void test_accept_short_circuits(void **state)
{
	struct fixture *f = *state;
	answer('A', CHECK_ACCEPT, 0, NULL, "");
	answer('C', CHECK_REJECT, 550, "5.7.1", "no");
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "A");
	assert_int_equal(d.result, CHECK_ACCEPT);
	assert_string_equal(d.check, "A");
}

static void test_defer_answer(void **state)
{
	struct fixture *f = *state;
	answer('D', CHECK_DEFER, 451, "4.4.3", "later");
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "ACD");
	assert_int_equal(d.result, CHECK_DEFER);
	assert_int_equal(d.code, 451);
	assert_false(d.timed_out);
}

static void test_log_and_headers_of_every_check_that_ran(void **state)
{
	struct fixture *f = *state;
	snprintf(script('A')->ans.log, ENGINE_LOG_MAX, "a=1");
	snprintf(script('A')->ans.headers, ENGINE_HEADERS_MAX, "X-A: 1\r\n");
	/* C says nothing */
	answer('D', CHECK_REJECT, 554, "5.7.1", "no");
	snprintf(script('D')->ans.log, ENGINE_LOG_MAX, "d=4 why=\"x\"");
	snprintf(script('D')->ans.headers, ENGINE_HEADERS_MAX, "X-D: 4\r\n");
	snprintf(script('E')->ans.log, ENGINE_LOG_MAX, "e=5"); /* never runs */
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(d.log, "a=1 d=4 why=\"x\"");
	assert_string_equal(d.headers, "X-A: 1\r\nX-D: 4\r\n");
	/* a neutral stage keeps them too */
	script('D')->ans.result = CHECK_NEUTRAL;
	d = decide_rcpt(f, "<bob@example.com>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	assert_string_equal(d.log, "a=1 d=4 why=\"x\" e=5");
}

/* ---- when answers come ---- */

static void test_answers_later_and_mixed(void **state)
{
	struct fixture *f = *state;
	script('A')->mode = FAKE_LATER;
	script('A')->delay_ms = 5;
	script('C')->mode = FAKE_LATER; /* neutral */
	script('C')->delay_ms = 1;
	answer('D', CHECK_REJECT, 550, "5.1.1", "no"); /* inline, from inside C's callback chain */
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "ACD");
	assert_int_equal(d.result, CHECK_REJECT);
	assert_string_equal(d.check, "D");
	assert_int_equal(script('A')->cancels + script('C')->cancels, 0);
	/* the decisive answer comes later */
	started[0] = '\0';
	script('D')->mode = FAKE_LATER;
	script('D')->delay_ms = 2;
	d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "ACD");
	assert_string_equal(d.check, "D");
	assert_int_equal(script('E')->starts, 0);
	/* all neutral, the last one later */
	started[0] = '\0';
	script('D')->ans.result = CHECK_NEUTRAL;
	script('E')->mode = FAKE_LATER;
	d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(started, "ACDE");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	assert_true(d.latency_ms >= 5); /* at least A's delay */
}

static void test_inline_decision_delivered_from_the_loop(void **state)
{
	struct fixture *f = *state;
	answer('A', CHECK_REJECT, 550, "5.7.1", "no");
	build(f);
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<bob@example.com>");
	struct outcome o = { 0 };
	start(f, &req, &o); /* asserts no callback yet */
	assert_int_equal(script('A')->answers, 1);
	event_base_loop(f->base, EVLOOP_ONCE);
	assert_int_equal(o.calls, 1);
	assert_false(o.from_inside_start);
	assert_int_equal(o.d.result, CHECK_REJECT);
	/* the deadline went with the query: nothing is left on the loop */
	assert_int_equal(event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	/* decided inside engine_start, then cancelled before the loop ran: no callback */
	struct outcome o2 = { 0 };
	engine_cancel(start(f, &req, &o2));
	event_base_dispatch(f->base);
	assert_int_equal(o2.calls, 0);
	/* the front end cancels the query it is being answered for: nothing happens twice */
	struct outcome o3 = { 0 };
	o3.cancel_in_callback = start(f, &req, &o3);
	event_base_dispatch(f->base);
	assert_int_equal(o3.calls, 1);
}

/* ---- the stage deadline ---- */

static void test_deadline_over_a_hanging_check(void **state)
{
	struct fixture *f = *state;
	snprintf(script('A')->ans.log, ENGINE_LOG_MAX, "a=1");
	script('C')->mode = FAKE_HANG;
	build(f);
	uint64_t t0 = now_ms();
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	uint64_t took = now_ms() - t0;
	assert_string_equal(started, "AC");
	assert_int_equal(d.result, CHECK_DEFER);
	assert_true(d.timed_out);
	assert_int_equal(d.code, 451);
	assert_string_equal(d.enhanced, "4.4.3");
	assert_string_equal(d.text, "<bob@example.com>: Recipient address verification unavailable, try again later");
	assert_string_equal(d.check, "C");
	assert_string_equal(d.log, "a=1 deadline=C timed_out_after_ms=100");
	assert_int_equal(script('C')->cancels, 1);
	assert_int_equal(script('D')->starts, 0);
	assert_true(took >= DEADLINE_MS - 1 && took < 5000);
	assert_true(d.latency_ms >= DEADLINE_MS - 1);
}

/* A check that would reject, but only after the deadline: the stage defers, never rejects. */
static void test_deadline_never_rejects(void **state)
{
	struct fixture *f = *state;
	script('A')->mode = FAKE_LATER;
	script('A')->delay_ms = 10 * 1000;
	answer('A', CHECK_REJECT, 550, "5.1.1", "no");
	build(f);
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_MAIL, NULL);
	req.stage = ENGINE_STAGE_RCPT; /* no recipient: the generic text */
	struct engine_decision d = decide(f, &req);
	assert_int_equal(d.result, CHECK_DEFER);
	assert_true(d.timed_out);
	assert_string_equal(d.text, "Temporary lookup failure, try again later");
	assert_int_equal(script('A')->cancels, 1);
	assert_int_equal(script('A')->answers, 0); /* its timer went with the cancel: dispatch returned */
}

/* ---- cancel ---- */

static struct engine_stats_row row_of(struct fixture *f, const char *check, enum engine_stage stage);

static void test_cancel_while_a_check_runs(void **state)
{
	struct fixture *f = *state;
	script('A')->mode = FAKE_LATER;
	script('A')->delay_ms = 1;
	script('C')->mode = FAKE_HANG;
	build(f);
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<bob@example.com>");
	struct outcome o = { 0 };
	engine_cancel(start(f, &req, &o)); /* A running */
	assert_int_equal(script('A')->cancels, 1);
	event_base_dispatch(f->base); /* returns at once: nothing left */
	assert_int_equal(o.calls, 0);
	assert_string_equal(started, "A");
	/* cancelled while the second check (C, hanging) runs */
	struct engine_query *q = start(f, &req, &o);
	event_base_loop(f->base, EVLOOP_ONCE); /* A answers, C starts */
	assert_string_equal(started, "AAC");
	engine_cancel(q);
	assert_int_equal(script('C')->cancels, 1);
	event_base_dispatch(f->base); /* the deadline went with the query */
	assert_int_equal(o.calls, 0);
	struct engine_stats_row r = row_of(f, NULL, ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_NEUTRAL] + r.answers[CHECK_DEFER], 0); /* nothing decided */
}

/* ---- counters ---- */

struct row_find {
	const char *check; /* NULL: the stage's decisions */
	enum engine_stage stage;
	struct engine_stats_row row;
	int found;
};

static void row_find_cb(void *arg, const struct engine_stats_row *row)
{
	struct row_find *rf = arg;
	bool same = rf->check == NULL ? row->check == NULL : row->check && strcmp(row->check, rf->check) == 0;
	if (same && row->stage == rf->stage) {
		rf->row = *row;
		rf->found++;
	}
}

static struct engine_stats_row row_of(struct fixture *f, const char *check, enum engine_stage stage)
{
	struct row_find rf = { .check = check, .stage = stage };
	engine_stats_each(f->stats, row_find_cb, &rf);
	assert_true(rf.found <= 1);
	return rf.row;
}

static void test_stats(void **state)
{
	struct fixture *f = *state;
	answer('D', CHECK_REJECT, 550, "5.1.1", "no");
	build(f);
	decide_rcpt(f, "<a@example.com>"); /* A, C neutral; D reject */
	script('D')->ans.result = CHECK_NEUTRAL;
	answer('E', CHECK_DEFER, 451, "4.3.0", "later");
	decide_rcpt(f, "<b@example.com>"); /* A, C, D neutral; E defer */
	script('C')->mode = FAKE_HANG;
	decide_rcpt(f, "<c@example.com>"); /* A neutral; C times out */
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_MAIL, NULL);
	script('C')->mode = FAKE_INLINE;
	decide(f, &req); /* B, C neutral */

	struct engine_stats_row r = row_of(f, "A", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 3);
	r = row_of(f, "C", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 2);
	assert_int_equal(r.timeouts, 1);
	r = row_of(f, "C", ENGINE_STAGE_MAIL);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 1);
	r = row_of(f, "D", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_REJECT], 1);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 1);
	assert_int_equal(r.timeouts, 0);
	r = row_of(f, "E", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_DEFER], 1);
	r = row_of(f, "B", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_NEUTRAL] + r.timeouts, 0);
	r = row_of(f, NULL, ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_REJECT], 1);
	assert_int_equal(r.answers[CHECK_DEFER], 2); /* E's, and the deadline's */
	assert_int_equal(r.answers[CHECK_NEUTRAL], 0);
	uint64_t n = 0;
	for (size_t k = 0; k < ENGINE_LATENCY_BUCKETS; k++)
		n += r.latency_buckets[k];
	assert_int_equal(n, 3);
	assert_true(r.latency_sum_ms >= DEADLINE_MS - 1);
	r = row_of(f, NULL, ENGINE_STAGE_MAIL);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 1);

	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	engine_stats_print(f->stats, out);
	fclose(out);
	assert_non_null(strstr(text, "engine_C_rcpt_timeouts=1\n"));
	assert_non_null(strstr(text, "engine_D_rcpt_reject=1\n"));
	assert_non_null(strstr(text, "engine_decision_rcpt_defer=2\n"));
	assert_non_null(strstr(text, "engine_decision_mail_neutral=1\n"));
	free(text);
}

static void test_engine_free_closes_every_check(void **state)
{
	struct fixture *f = *state;
	build(f);
	engine_free(f->e);
	f->e = NULL;
	for (int i = 0; i < NFAKES; i++)
		assert_int_equal(scripts[i].closes, 1);
}

/* ---- requests ---- */

static void test_request_set_rcpt(void **state)
{
	struct fixture *f = *state;
	struct engine_request req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<postmaster>");
	assert_true(req.has_rcpt);
	assert_ptr_equal(req.domain, &f->doms[1]); /* postmaster_domain = example.org */
	assert_string_equal(req.rcpt->domain, "example.org");
	assert_int_equal(req.rcpt->domain_len, strlen("example.org"));
	req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<Bob@Example.COM>");
	assert_ptr_equal(req.domain, &f->doms[0]);
	assert_string_equal(req.rcpt->local, "Bob");
	req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<bob@example.net>");
	assert_null(req.domain);
	req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<postmaster@example.net>");
	assert_null(req.domain);
	req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, "<bob@sub.example.com>");
	assert_null(req.domain);
	/* the client's address, as text; IPv4-mapped shown as IPv4 */
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(2525) };
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr);
	engine_request_init(&req, ENGINE_FRONTEND_POLICY, "P1", (struct sockaddr *)&sin6, sizeof sin6);
	assert_string_equal(req.client_ip, "192.0.2.7");
	assert_int_equal(req.client_port, 2525);
	assert_string_equal(req.session_id, "P1");
	engine_request_init(&req, ENGINE_FRONTEND_SMTP, NULL, NULL, 0);
	assert_string_equal(req.client_ip, "unknown");
	assert_false(req.has_rcpt);
}

/* ---- the real relay check ---- */

static const struct check_type *const relay_only[] = { &check_relay_type };

static void test_relay_check_per_front_end(void **state)
{
	struct fixture *f = *state;
	checks_override_for_tests(relay_only, 1);
	build(f);
	struct engine_decision d = decide_rcpt(f, "<bob@example.net>");
	assert_int_equal(d.result, CHECK_REJECT);
	assert_string_equal(d.check, "relay");
	assert_int_equal(d.code, 554);
	assert_string_equal(d.enhanced, "5.7.1");
	assert_string_equal(d.text, "<bob@example.net>: Relay access denied");
	assert_string_equal(d.log, "source=policy");
	d = decide_rcpt(f, "<bob@example.com>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	d = decide_rcpt(f, "<postmaster>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	d = decide_rcpt(f, "<a%b@example.com>"); /* a routing local part, even in our domain */
	assert_int_equal(d.result, CHECK_REJECT);
	assert_int_equal(d.code, 550);
	/* the policy service: a domain not ours is Postfix's business */
	struct engine_request req = request(f, ENGINE_FRONTEND_POLICY, ENGINE_STAGE_RCPT, "<bob@example.net>");
	d = decide(f, &req);
	assert_int_equal(d.result, CHECK_NEUTRAL);
	assert_null(d.check);
	req = request(f, ENGINE_FRONTEND_POLICY, ENGINE_STAGE_RCPT, "<bob@example.com>");
	assert_int_equal(decide(f, &req).result, CHECK_NEUTRAL);
	/* no recipient at all: nothing to say */
	req = request(f, ENGINE_FRONTEND_SMTP, ENGINE_STAGE_RCPT, NULL);
	assert_int_equal(decide(f, &req).result, CHECK_NEUTRAL);
}

/* ---- the real verify check: a source that is not local, a verdict cache that never answers ---- */

static int src_lookups;
static enum rcpt_verdict src_verdict;

static void *src_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	(void)arg, (void)cfg, (void)why, (void)whysz;
	return xstrdup("remote:x");
}

static struct rcpt_query *src_lookup(void *state, struct event_base *base, const struct rcpt_addr *a,
				     rcpt_answer_cb done, void *arg)
{
	struct rcpt_answer ans = { .verdict = src_verdict, .source = state, .reason = "remote says so" };
	(void)base, (void)a;
	src_lookups++;
	done(arg, &ans);
	return NULL;
}

static void src_cancel(struct rcpt_query *q)
{
	(void)q;
	fail(); /* answers at once: never cancelled */
}

static const struct rcpt_source_type remote_type = {
	.prefix = "remote", .open = src_open, .lookup = src_lookup, .cancel = src_cancel, .close = free,
};

static int hang_gets, hang_cancels;

struct vcache_query {
	int dummy;
};

static void *hang_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	(void)arg, (void)cfg, (void)why, (void)whysz;
	static int state;
	return &state;
}

static struct vcache_query *hang_get(void *state, struct event_base *base, const char *key, vcache_get_cb cb,
				     void *arg)
{
	(void)state, (void)base, (void)key, (void)cb, (void)arg;
	hang_gets++;
	return xcalloc(1, sizeof(struct vcache_query));
}

static void hang_cancel(struct vcache_query *q)
{
	hang_cancels++;
	free(q);
}

static void hang_put(void *state, const char *key, const struct vcache_entry *e)
{
	(void)state, (void)key, (void)e;
}

static void hang_close(void *state)
{
	(void)state;
}

static const struct vcache_store_type hang_store = {
	.prefix = "hang", .open = hang_open, .get = hang_get, .cancel = hang_cancel, .put = hang_put,
	.close = hang_close,
};

static const struct check_type *const relay_verify[] = { &check_relay_type, &check_verify_type };

static void verify_setup(struct fixture *f, const char *cache)
{
	char why[256] = "";
	rcpt_type_register_extra(&remote_type);
	vcache_type_register_extra(&hang_store);
	src_lookups = hang_gets = hang_cancels = 0;
	src_verdict = RCPT_VALID;
	f->specs[0] = (char *)(uintptr_t) "remote:x";
	f->doms[0].verify.items = f->specs;
	f->doms[0].verify.n = 1;
	f->cache = vcache_open(cache, &f->cfg, why, sizeof why);
	assert_non_null(f->cache);
	f->reg = rcpt_registry_open(&f->cfg);
	f->v = verifier_new(&f->cfg, f->reg, f->cache);
	checks_override_for_tests(relay_verify, 2);
	build(f);
}

static void test_deadline_covers_a_hanging_verdict_cache(void **state)
{
	struct fixture *f = *state;
	f->doms[0].on_unavailable = ON_UNAVAILABLE_ACCEPT; /* the deadline answers before it could */
	verify_setup(f, "hang:");
	uint64_t t0 = now_ms();
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	uint64_t took = now_ms() - t0;
	assert_int_equal(hang_gets, 1);
	assert_int_equal(hang_cancels, 1); /* the cache query went with the deadline */
	assert_int_equal(src_lookups, 0);
	assert_int_equal(d.result, CHECK_DEFER);
	assert_true(d.timed_out);
	assert_int_equal(d.code, 451);
	assert_string_equal(d.enhanced, "4.4.3");
	assert_string_equal(d.check, "verify");
	assert_string_equal(d.log, "deadline=verify timed_out_after_ms=100");
	assert_true(took >= DEADLINE_MS - 1 && took < 5000); /* far below verify_timeout (10 s) */
	struct engine_stats_row r = row_of(f, "verify", ENGINE_STAGE_RCPT);
	assert_int_equal(r.timeouts, 1);
	r = row_of(f, "relay", ENGINE_STAGE_RCPT);
	assert_int_equal(r.answers[CHECK_NEUTRAL], 1);
}

static void test_verify_check_answers(void **state)
{
	struct fixture *f = *state;
	verify_setup(f, "memory:");
	src_verdict = RCPT_INVALID;
	struct engine_decision d = decide_rcpt(f, "<bob@example.com>");
	assert_int_equal(d.result, CHECK_REJECT);
	assert_string_equal(d.check, "verify");
	assert_int_equal(d.code, 550);
	assert_string_equal(d.enhanced, "5.1.1");
	assert_string_equal(d.text, "<bob@example.com>: Recipient address rejected: User unknown");
	assert_string_equal(d.log, "verdict=invalid source=remote:x cached=no detail=\"remote says so\"");
	d = decide_rcpt(f, "<bob@example.com>");
	assert_string_equal(d.log, "verdict=invalid source=remote:x cached=yes detail=\"cached\"");
	assert_int_equal(src_lookups, 1);
	/* relay control first: a domain not ours never reaches verification */
	d = decide_rcpt(f, "<bob@example.net>");
	assert_string_equal(d.check, "relay");
	assert_int_equal(src_lookups, 1);
	/* a domain without a verify list, and a valid recipient: neutral */
	d = decide_rcpt(f, "<x@example.org>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	assert_non_null(strstr(d.log, "source=none"));
	src_verdict = RCPT_VALID;
	d = decide_rcpt(f, "<carol@example.com>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	/* unavailable: defer, or neutral with on_unavailable = accept */
	src_verdict = RCPT_UNAVAILABLE;
	d = decide_rcpt(f, "<dave@example.com>");
	assert_int_equal(d.result, CHECK_DEFER);
	assert_false(d.timed_out);
	assert_int_equal(d.code, 451);
	f->doms[0].on_unavailable = ON_UNAVAILABLE_ACCEPT;
	d = decide_rcpt(f, "<dave@example.com>");
	assert_int_equal(d.result, CHECK_NEUTRAL);
	/* the policy service: a recipient not ours is neutral in both checks */
	struct engine_request req = request(f, ENGINE_FRONTEND_POLICY, ENGINE_STAGE_RCPT, "<bob@example.net>");
	assert_int_equal(decide(f, &req).result, CHECK_NEUTRAL);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	log_open(false, LOG_LVL_ERR + 0);
	const struct CMUnitTest tests[] = {
		T(test_order_per_stage),
		T(test_first_decisive_answer_wins),
		T(test_accept_short_circuits),
		T(test_defer_answer),
		T(test_log_and_headers_of_every_check_that_ran),
		T(test_answers_later_and_mixed),
		T(test_inline_decision_delivered_from_the_loop),
		T(test_deadline_over_a_hanging_check),
		T(test_deadline_never_rejects),
		T(test_cancel_while_a_check_runs),
		T(test_stats),
		T(test_engine_free_closes_every_check),
		T(test_request_set_rcpt),
		T(test_relay_check_per_front_end),
		T(test_deadline_covers_a_hanging_verdict_cache),
		T(test_verify_check_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
