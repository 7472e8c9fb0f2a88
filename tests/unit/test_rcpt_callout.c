/* test_rcpt_callout.c - the callout: source against a fake validation server running in a thread
 * of this process: verdicts of replies, RCPT quoting, VALID/INVALID/sub-address fallback,
 * single-flight, cancel before and after the answer, a refused connection and the circuit
 * breaker, catch-all detection, stats. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/thread.h>

#include "callout_match.h"
#include "callout_pool.h"
#include "log.h"
#include "rcpt.h"
#include "util.h"

/* ---- the fake validation server: known@ and user@ exist, others 550 5.1.1 (accept_all: all 250) ---- */

struct fake {
	int lfd;
	int port;
	bool accept_all;
	bool hang;               /* never answer an RCPT (a hanging validation server) */
	pthread_t thread;
	pthread_mutex_t lock;
	int rcpts;               /* RCPTs seen, catch-all checks included */
	int checks;              /* of which catch-all checks */
	int connections;
	const char *hold;        /* RCPTs naming this wait, counted, until fake_release() */
	pthread_cond_t released;
};

static void fake_reply(int fd, const char *s)
{
	size_t len = strlen(s);
	if (write(fd, s, len) != (ssize_t)len) { /* the client went away */ }
}

static void fake_rcpt(struct fake *f, int fd, const char *line)
{
	bool known = strstr(line, "<known@") || strstr(line, "<user@");
	pthread_mutex_lock(&f->lock);
	f->rcpts++;
	f->checks += strstr(line, "backstop-catchall-check-") != NULL;
	while (f->hold && strstr(line, f->hold))
		pthread_cond_wait(&f->released, &f->lock);
	pthread_mutex_unlock(&f->lock);
	if (!f->hang)
		fake_reply(fd, f->accept_all || known ? "250 2.1.5 Ok\r\n" : "550 5.1.1 User unknown\r\n");
}

static void fake_session(struct fake *f, int fd)
{
	char buf[4096], line[1024];
	size_t have = 0;

	fake_reply(fd, "220 fake ESMTP\r\n");
	for (;;) {
		char *nl;
		while ((nl = memchr(buf, '\n', have)) == NULL) {
			ssize_t n = read(fd, buf + have, sizeof buf - have);
			if (n <= 0)
				return;
			have += (size_t)n;
		}
		size_t len = (size_t)(nl - buf) + 1;
		snprintf(line, sizeof line, "%.*s", (int)len, buf);
		memmove(buf, buf + len, have - len);
		have -= len;
		if (strncmp(line, "EHLO", 4) == 0)
			fake_reply(fd, "250-fake\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
		else if (strncmp(line, "RCPT", 4) == 0)
			fake_rcpt(f, fd, line);
		else if (strncmp(line, "QUIT", 4) == 0)
			break;
		else
			fake_reply(fd, "250 2.0.0 Ok\r\n");
	}
	fake_reply(fd, "221 bye\r\n");
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd;

	while ((fd = accept(f->lfd, NULL, NULL)) >= 0) {
		pthread_mutex_lock(&f->lock);
		f->connections++;
		pthread_mutex_unlock(&f->lock);
		fake_session(f, fd); /* one session at a time: callout_max_connections = 1 below */
		close(fd);
	}
	return NULL;
}

static struct fake *fake_start(bool accept_all)
{
	struct fake *f = xcalloc(1, sizeof *f);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;

	f->accept_all = accept_all;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->released, NULL);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
	pthread_create(&f->thread, NULL, fake_main, f);
	return f;
}

static int fake_count(struct fake *f, int *field)
{
	pthread_mutex_lock(&f->lock);
	int n = *field;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	close(f->lfd);
	pthread_join(f->thread, NULL);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->released);
	free(f);
}

/* ---- the source under test ---- */

static struct bs_config *test_config(void)
{
	static const char conf[] = "[gateway]\nlisten = 127.0.0.1:0\nhostname = mx.test\n"
				   "callout_max_connections = 1\ncallout_timeout = 5s\nbackend_retry_after = 60s\n"
				   "[domain example.test]\ndeliver = 127.0.0.1:9\nrecipient_delimiter = +\n";
	struct config_errors errs = { 0 };
	struct bs_config *cfg = config_load_buffer("test.conf", conf, sizeof conf - 1, &errs);
	assert_non_null(cfg);
	return cfg;
}

struct src { const struct rcpt_source_type *t; void *state; struct bs_config *cfg; };

static struct src src_open(int port)
{
	struct src s = { .cfg = test_config() };
	char spec[64], why[256] = "";
	const char *arg;

	snprintf(spec, sizeof spec, "callout:127.0.0.1:%d", port);
	s.t = rcpt_type_find(spec, &arg);
	assert_ptr_equal(s.t, &rcpt_callout_type);
	s.state = s.t->open(arg, s.cfg, why, sizeof why);
	assert_non_null(s.state);
	return s;
}

static void src_close(struct src *s)
{
	s->t->close(s->state);
	config_unref(s->cfg);
}

struct answer { int n; struct rcpt_answer a; };

static void on_answer(void *arg, const struct rcpt_answer *a)
{
	struct answer *w = arg;
	w->n++;
	w->a = *a;
}

static struct rcpt_query *ask(struct src *s, struct event_base *base, const char *local, struct answer *w)
{
	struct rcpt_addr addr;
	const struct bs_domain *dom = config_find_domain(s->cfg, "example.test");
	assert_int_equal(rcpt_addr_make(&addr, local, strlen(local), "example.test", dom), 0);
	return s->t->lookup(s->state, base, &addr, on_answer, w);
}

static void wait_for(struct event_base *base, struct answer *w, int n)
{
	uint64_t deadline = now_ms() + 10000;
	while (w->n < n && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(w->n, n);
}

/* ---- tests ---- */

static void test_verdicts(void **state)
{
	struct { int code; const char *enh; enum rcpt_verdict v; } cases[] = {
		{ 250, "2.1.5", RCPT_VALID }, { 251, "", RCPT_VALID }, { 550, "5.1.1", RCPT_INVALID },
		{ 551, "", RCPT_INVALID }, { 553, "5.1.3", RCPT_INVALID }, { 554, "5.1.10", RCPT_INVALID },
		{ 554, "5.7.1", RCPT_UNAVAILABLE }, { 552, "", RCPT_UNAVAILABLE }, { 450, "4.1.1", RCPT_UNAVAILABLE },
		/* policy rejections are not "user unknown" (issue 9 item 9) */
		{ 550, "5.7.1", RCPT_UNAVAILABLE }, { 553, "5.7.1", RCPT_UNAVAILABLE }, { 550, "5.5.3", RCPT_UNAVAILABLE },
		{ 551, "5.7.1", RCPT_UNAVAILABLE }, { 550, "5.1.8", RCPT_UNAVAILABLE }, { 553, "5.1.7", RCPT_UNAVAILABLE },
		{ 550, "", RCPT_INVALID }, { 553, "", RCPT_INVALID }, { 554, "", RCPT_UNAVAILABLE },
		{ 451, "", RCPT_UNAVAILABLE }, { 421, "", RCPT_UNAVAILABLE }, { 0, "", RCPT_UNAVAILABLE },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct smtp_reply r = { .code = cases[i].code };
		snprintf(r.enhanced, sizeof r.enhanced, "%s", cases[i].enh);
		assert_int_equal(callout_verdict(&r), cases[i].v);
	}
}

static struct smtp_reply reply_of(int code, const char *enh)
{
	struct smtp_reply r = { .code = code };
	snprintf(r.enhanced, sizeof r.enhanced, "%s", enh);
	return r;
}

/* Replies matched to MAIL, RCPTs and the RSET marker: verdicts only when the stream is in step. */
static void test_match(void **state)
{
	struct callout_match m;
	struct smtp_reply mail = reply_of(250, "2.1.0"), ok = reply_of(250, "2.1.5"), unknown = reply_of(550, "5.1.1"),
			  rset = reply_of(250, "2.0.0"), extra = reply_of(250, "");

	callout_match_init(&m, 2); /* in step */
	callout_match_reply(&m, &mail);
	callout_match_reply(&m, &ok);
	callout_match_reply(&m, &unknown);
	callout_match_reply(&m, &rset);
	assert_int_equal(callout_match_end(&m, false), CM_DONE);
	assert_int_equal(callout_match_verdict(&m, 0), RCPT_VALID);
	assert_int_equal(callout_match_verdict(&m, 1), RCPT_INVALID);
	callout_match_init(&m, 2); /* one line too many, early: RSET gets the second RCPT's reply */
	callout_match_reply(&m, &extra);
	callout_match_reply(&m, &mail);
	callout_match_reply(&m, &ok);
	assert_int_equal(callout_match_reply(&m, &unknown), CM_DESYNC);
	assert_int_equal(callout_match_end(&m, true), CM_DESYNC);
	assert_int_equal(callout_match_verdict(&m, 0), RCPT_UNAVAILABLE);
	assert_int_equal(callout_match_verdict(&m, 1), RCPT_UNAVAILABLE);
	callout_match_init(&m, 1); /* no enhanced codes: only the data behind RSET's reply tells */
	callout_match_reply(&m, &extra);
	callout_match_reply(&m, &extra);
	assert_int_equal(callout_match_reply(&m, &extra), CM_OPEN);
	assert_int_equal(callout_match_end(&m, true), CM_DESYNC);
	assert_int_equal(callout_match_verdict(&m, 0), RCPT_UNAVAILABLE);
	callout_match_init(&m, 1); /* a reply missing */
	callout_match_reply(&m, &mail);
	callout_match_reply(&m, &rset);
	assert_int_equal(callout_match_end(&m, false), CM_DESYNC);
	callout_match_init(&m, 0); /* nothing but MAIL and RSET, then one more */
	callout_match_reply(&m, &mail);
	callout_match_reply(&m, &rset);
	assert_int_equal(callout_match_reply(&m, &rset), CM_DESYNC);
}

static void test_rcpt_line(void **state)
{
	char buf[600];
	assert_int_equal(callout_rcpt_line("a.b+c@example.test", buf, sizeof buf), 0);
	assert_string_equal(buf, "RCPT TO:<a.b+c@example.test>");
	assert_int_equal(callout_rcpt_line("john doe@example.test", buf, sizeof buf), 0);
	assert_string_equal(buf, "RCPT TO:<\"john doe\"@example.test>");
	assert_int_equal(callout_rcpt_line("a\"b\\c@example.test", buf, sizeof buf), 0);
	assert_string_equal(buf, "RCPT TO:<\"a\\\"b\\\\c\"@example.test>");
	assert_int_equal(callout_rcpt_line(".x@example.test", buf, sizeof buf), 0);
	assert_string_equal(buf, "RCPT TO:<\".x\"@example.test>");
	assert_int_equal(callout_rcpt_line("a\r\nDATA@example.test", buf, sizeof buf), -1);
	assert_int_equal(callout_rcpt_line("no-at-sign", buf, sizeof buf), -1);
	char longlocal[400];
	memset(longlocal, 'a', 300);
	strcpy(longlocal + 300, "@example.test"); /* over 64 octets: refused, never overflows */
	assert_int_equal(callout_rcpt_line(longlocal, buf, sizeof buf), -1);
}

static void test_valid_invalid_subaddress(void **state)
{
	struct fake *f = fake_start(false);
	struct src s = src_open(f->port);
	struct event_base *base = event_base_new();
	struct answer a = { 0 }, b = { 0 }, c = { 0 };

	assert_non_null(ask(&s, base, "known", &a));
	assert_non_null(ask(&s, base, "nobody", &b));
	assert_non_null(ask(&s, base, "user+tag", &c)); /* user+tag unknown, user known */
	wait_for(base, &a, 1);
	wait_for(base, &b, 1);
	wait_for(base, &c, 1);
	assert_int_equal(a.a.verdict, RCPT_VALID);
	assert_false(a.a.catchall);
	assert_int_equal(b.a.verdict, RCPT_INVALID);
	assert_non_null(strstr(b.a.reason, "550 5.1.1"));
	assert_int_equal(c.a.verdict, RCPT_VALID);
	assert_int_equal(strncmp(a.a.source, "callout:127.0.0.1:", 18), 0);
	/* an address with a control character is never sent */
	struct answer d = { 0 };
	assert_null(ask(&s, base, "x\ry", &d));
	assert_int_equal(d.n, 1);
	assert_int_equal(d.a.verdict, RCPT_INVALID);
	src_close(&s);
	event_base_free(base);
	assert_int_equal(fake_count(f, &f->connections), 1); /* one connection carried everything */
	fake_stop(f);
}

static void test_single_flight(void **state)
{
	struct fake *f = fake_start(false);
	struct src s = src_open(f->port);
	struct event_base *base = event_base_new();
	struct answer w[50];

	memset(w, 0, sizeof w);
	for (int i = 0; i < 50; i++)
		assert_non_null(ask(&s, base, "same-address", &w[i]));
	for (int i = 0; i < 50; i++)
		wait_for(base, &w[i], 1);
	for (int i = 0; i < 50; i++)
		assert_int_equal(w[i].a.verdict, RCPT_INVALID);
	/* and a lookup just after the answer shares it too */
	struct answer late = { 0 };
	assert_non_null(ask(&s, base, "same-address", &late));
	wait_for(base, &late, 1);
	assert_int_equal(late.a.verdict, RCPT_INVALID);
	int rcpts = fake_count(f, &f->rcpts) - fake_count(f, &f->checks);
	assert_int_equal(rcpts, 1);
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	s.t->stats(s.state, out);
	fclose(out);
	assert_non_null(strstr(text, "lookups=51 probes=1 shared=50"));
	free(text);
	src_close(&s);
	event_base_free(base);
	fake_stop(f);
}

/* More rejections than one connection carries (it is replaced after 8): every answer arrives. */
static void test_many_unknowns(void **state)
{
	struct fake *f = fake_start(false);
	struct src s = src_open(f->port);
	struct event_base *base = event_base_new();
	struct answer w[40];

	memset(w, 0, sizeof w);
	for (int i = 0; i < 40; i++) {
		char local[32];
		snprintf(local, sizeof local, "unknown-%d", i);
		assert_non_null(ask(&s, base, local, &w[i]));
	}
	for (int i = 0; i < 40; i++) {
		wait_for(base, &w[i], 1);
		assert_int_equal(w[i].a.verdict, RCPT_INVALID);
	}
	assert_true(fake_count(f, &f->connections) >= 5);
	src_close(&s);
	event_base_free(base);
	fake_stop(f);
}

static void fake_release(struct fake *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold = NULL;
	pthread_cond_broadcast(&f->released);
	pthread_mutex_unlock(&f->lock);
}

/* Wait (bounded) until cond(f) holds, without running any event loop of the test. */
static void wait_until(bool (*cond)(void *), void *arg)
{
	uint64_t deadline = now_ms() + 10000;
	while (!cond(arg) && now_ms() < deadline)
		usleep(1000); /* polling a condition with a deadline: nothing to wait on */
	assert_true(cond(arg));
}

static bool fake_holding(void *arg)
{
	struct fake *f = arg;
	return fake_count(f, &f->rcpts) >= 1;
}

static bool answer_posted(void *arg)
{
	return event_base_get_num_events(arg, EVENT_BASE_COUNT_ACTIVE) == 1;
}

/* Both ways a cancel can meet the answer, each forced, and which one ran is checked: early (the
 * server is still holding the RCPT, so nothing can have been answered: the callout thread frees
 * the query when the answer comes) and late (the answer is already posted to the asking loop,
 * which has not run it: the cancel takes the posted event off that loop and frees the query). */
static void test_cancel(void **state)
{
	struct fake *f = fake_start(false);
	struct src s = src_open(f->port);
	struct event_base *base = event_base_new(), *witness_base = event_base_new();
	struct answer gone = { 0 }, late = { 0 }, witness = { 0 }, after = { 0 };

	/* early: the server holds the RCPT until released */
	f->hold = "<cancel-early@";
	struct rcpt_query *q = ask(&s, base, "cancel-early", &gone);
	assert_non_null(ask(&s, witness_base, "cancel-early", &witness)); /* same flight */
	wait_until(fake_holding, f);
	s.t->cancel(q);
	assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE), 0);
	fake_release(f);
	wait_for(witness_base, &witness, 1); /* the flight is answered... */
	assert_int_equal(witness.a.verdict, RCPT_INVALID);
	assert_non_null(ask(&s, base, "known", &after)); /* ...and what comes after it too */
	wait_for(base, &after, 1);
	assert_int_equal(gone.n, 0);

	/* late: the answer is posted to base (its event active), base has not run it */
	q = ask(&s, base, "cancel-late", &late);
	wait_until(answer_posted, base);
	s.t->cancel(q);
	assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE), 0); /* taken off */
	after = (struct answer){ 0 };
	assert_non_null(ask(&s, base, "known", &after)); /* the loop still works */
	wait_for(base, &after, 1);
	assert_int_equal(late.n, 0);
	assert_int_equal(after.a.verdict, RCPT_VALID);
	src_close(&s);
	event_base_free(base);
	event_base_free(witness_base);
	fake_stop(f);
}

/* The source's "waiting=N" (lookups waiting on the pool), read from its stats. */
static unsigned long waiting(struct src *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	s->t->stats(s->state, out);
	fclose(out);
	const char *w = strstr(text, " waiting=");
	assert_non_null(w);
	unsigned long n = strtoul(w + 9, NULL, 10);
	free(text);
	return n;
}

/* Wait (bounded) until the callout thread has taken what was posted to it. */
static void wait_waiting(struct src *s, unsigned long n)
{
	uint64_t deadline = now_ms() + 10000;
	while (waiting(s) != n && now_ms() < deadline)
		sched_yield();
	assert_int_equal(waiting(s), n);
}

/* Lookups abandoned while the server hangs are taken off their probe at once, not when it
 * times out (60 s here), and one probe has at most 1000 waiters: the next is UNAVAILABLE. */
static void test_cancel_frees_waiters_at_once(void **state)
{
	static const char conf[] = "[gateway]\nlisten = 127.0.0.1:0\nhostname = mx.test\n"
				   "callout_max_connections = 1\ncallout_timeout = 60s\n"
				   "[domain example.test]\ndeliver = 127.0.0.1:9\n";
	struct fake *f = fake_start(false);
	struct config_errors errs = { 0 };
	struct src s = { .cfg = config_load_buffer("test.conf", conf, sizeof conf - 1, &errs) };
	char spec[64], why[256] = "";
	const char *arg;
	struct event_base *base = event_base_new();
	enum { N = 1000 };
	static struct answer w[N + 1];
	static struct rcpt_query *q[N];

	f->hang = true;
	snprintf(spec, sizeof spec, "callout:127.0.0.1:%d", f->port);
	s.t = rcpt_type_find(spec, &arg);
	s.state = s.t->open(arg, s.cfg, why, sizeof why);
	assert_non_null(s.state);
	memset(w, 0, sizeof w);
	for (int i = 0; i < N; i++)
		assert_non_null(q[i] = ask(&s, base, "hanging", &w[i]));
	wait_waiting(&s, N);
	assert_non_null(ask(&s, base, "hanging", &w[N])); /* one too many for this probe */
	wait_for(base, &w[N], 1);
	assert_int_equal(w[N].a.verdict, RCPT_UNAVAILABLE);
	assert_non_null(strstr(w[N].a.reason, "lookups already wait for this address"));
	for (int i = 0; i < N; i++)
		s.t->cancel(q[i]);
	wait_waiting(&s, 0); /* long before the probe's 60 s timeout */
	for (int i = 0; i < N; i++)
		assert_int_equal(w[i].n, 0);
	src_close(&s);
	event_base_free(base);
	fake_stop(f);
}

static void test_server_down(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0); /* bound, never listening: refuses */
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	bind(fd, (struct sockaddr *)&sa, sizeof sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	struct src s = src_open(ntohs(sa.sin_port));
	struct event_base *base = event_base_new();
	struct answer a = { 0 }, b = { 0 };
	uint64_t t0 = now_ms();

	assert_non_null(ask(&s, base, "someone", &a));
	wait_for(base, &a, 1);
	assert_int_equal(a.a.verdict, RCPT_UNAVAILABLE);
	assert_true(now_ms() - t0 < 2000);
	/* after a few refused connections the breaker answers without trying */
	bool tripped = false;
	for (int i = 0; i < 5 && !tripped; i++) {
		char local[32];
		snprintf(local, sizeof local, "someone-%d", i);
		b = (struct answer){ 0 };
		assert_non_null(ask(&s, base, local, &b));
		wait_for(base, &b, 1);
		assert_int_equal(b.a.verdict, RCPT_UNAVAILABLE);
		tripped = strstr(b.a.reason, "not answering") != NULL;
	}
	assert_true(tripped);
	assert_true(now_ms() - t0 < 3000);
	src_close(&s);
	event_base_free(base);
	close(fd);
}

static void test_catchall(void **state)
{
	struct fake *f = fake_start(true);
	struct src s = src_open(f->port);
	struct event_base *base = event_base_new();
	struct answer a = { 0 }, b = { 0 };

	assert_non_null(ask(&s, base, "anyone", &a));
	wait_for(base, &a, 1);
	assert_int_equal(a.a.verdict, RCPT_VALID);
	assert_true(a.a.catchall);
	assert_non_null(strstr(a.a.reason, "catch-all"));
	assert_non_null(ask(&s, base, "anyone-else", &b));
	wait_for(base, &b, 1);
	assert_true(b.a.catchall);
	assert_int_equal(fake_count(f, &f->checks), 1); /* once per positive TTL */
	src_close(&s);
	event_base_free(base);
	fake_stop(f);
}

static void test_bad_spec(void **state)
{
	struct bs_config *cfg = test_config();
	char why[256] = "";
	assert_null(rcpt_callout_type.open("no-port-here:", cfg, why, sizeof why));
	assert_non_null(strstr(why, "callout:"));
	config_unref(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_rcpt_line),
		cmocka_unit_test(test_valid_invalid_subaddress),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_many_unknowns),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_frees_waiters_at_once),
		cmocka_unit_test(test_server_down),
		cmocka_unit_test(test_catchall),
		cmocka_unit_test(test_bad_spec),
	};
	evthread_use_pthreads();
	log_open(false, LOG_LVL_ERR);
	signal(SIGPIPE, SIG_IGN); /* as backstop's main() does: a closed peer is EPIPE */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
