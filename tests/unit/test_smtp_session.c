/* test_smtp_session.c - a session built without a server (session_env), on a socketpair, with
 * test-double checks in place of the registry and a fake backend on this loop: a MAIL decision
 * that comes late keeps the replies of pipelined MAIL, RCPT, RCPT, DATA in order and holds the
 * RCPTs back; refusals at HELO, MAIL, DATA and end of data (no final dot for the backend); a
 * refusal at CONNECT applied to each RCPT (which waits for a late one, while EHLO and MAIL do
 * not); the checks' header fields after Received:; a client that half-closes while a decision
 * is pending still gets its replies; a shutdown while one is pending answers 421 and cancels it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "backend_health.h"
#include "backend_slots.h"
#include "check.h"
#include "connlimit.h"
#include "dns.h"
#include "log.h"
#include "runtime.h"
#include "smtp_session.h"
#include "util.h"

/* ---- the test-double checks ---- */

static struct event_base *base;
static struct dns_resolver *dns;

struct double_state {
	unsigned reject_stages;   /* ENGINE_STAGE_BIT()s where the "refuse" check rejects */
	bool late_answered;       /* the "late" check has answered its MAIL */
	bool hang;                /* the "late" check never answers (shutdown test) */
	unsigned cancelled;       /* "late" queries cancelled */
	unsigned asked[ENGINE_STAGE_COUNT];
} D;

struct check_query {
	struct event *ev;
	check_cb cb;
	void *arg;
	struct check_answer answer; /* what it says when its timer fires */
};

static int double_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	(void)env, (void)why, (void)whysz;
	*state = &D;
	return 1;
}

static struct check_query *refuse_start(void *state, struct event_base *b, const struct engine_request *req,
					check_cb cb, void *arg)
{
	struct check_answer a;
	(void)state, (void)b;
	D.asked[req->stage]++;
	check_answer_neutral(&a);
	if (D.reject_stages & ENGINE_STAGE_BIT(req->stage)) {
		check_answer_set(&a, CHECK_REJECT, 550, "5.7.1", "test says no at %s", engine_stage_name(req->stage));
		snprintf(a.log, sizeof a.log, "double=refuse");
	}
	cb(arg, &a);
	return NULL;
}

static const struct check_type refuse_type = {
	.name = "refuse",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_CONNECT) | ENGINE_STAGE_BIT(ENGINE_STAGE_HELO) |
		  ENGINE_STAGE_BIT(ENGINE_STAGE_MAIL) | ENGINE_STAGE_BIT(ENGINE_STAGE_DATA) |
		  ENGINE_STAGE_BIT(ENGINE_STAGE_EOD),
	.open = double_open,
	.start = refuse_start,
};

static void late_fire(evutil_socket_t fd, short what, void *arg)
{
	struct check_query *q = arg;
	(void)fd, (void)what;
	D.late_answered = true;
	check_cb cb = q->cb;
	void *cbarg = q->arg;
	struct check_answer a = q->answer;
	event_free(q->ev);
	free(q);
	cb(cbarg, &a);
}

/* A check that answers 50 ms later (never while D.hang). */
static struct check_query *late_query(struct event_base *b, const struct engine_request *req, check_cb cb,
				      void *arg)
{
	static const struct timeval later = { 0, 50 * 1000 };
	struct check_query *q = xcalloc(1, sizeof *q);
	D.asked[req->stage]++;
	q->cb = cb;
	q->arg = arg;
	q->ev = evtimer_new(b, late_fire, q);
	if (!D.hang)
		evtimer_add(q->ev, &later);
	return q;
}

/* MAIL answered 50 ms later, neutral, with a header field for the message. */
static struct check_query *late_start(void *state, struct event_base *b, const struct engine_request *req,
				      check_cb cb, void *arg)
{
	struct check_query *q = late_query(b, req, cb, arg);
	(void)state;
	check_answer_neutral(&q->answer);
	snprintf(q->answer.headers, sizeof q->answer.headers, "X-Test-Mail: checked\r\n");
	return q;
}

/* CONNECT answered 50 ms later: a refusal. */
static struct check_query *late_connect_start(void *state, struct event_base *b, const struct engine_request *req,
					      check_cb cb, void *arg)
{
	struct check_query *q = late_query(b, req, cb, arg);
	(void)state;
	check_answer_set(&q->answer, CHECK_REJECT, 554, "5.7.1", "Service unavailable; client listed");
	return q;
}

static void late_cancel(struct check_query *q)
{
	D.cancelled++;
	event_free(q->ev);
	free(q);
}

static const struct check_type late_type = {
	.name = "late",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_MAIL),
	.open = double_open,
	.start = late_start,
	.cancel = late_cancel,
};

static const struct check_type late_connect_type = {
	.name = "late-connect",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_CONNECT),
	.open = double_open,
	.start = late_connect_start,
	.cancel = late_cancel,
};

/* ---- the fake backend: 250 to everything, 354 to DATA, keeps the message ---- */

struct backend {
	struct evconnlistener *l;
	unsigned port;
	bool in_data;
	unsigned rcpts, datas, dots;
	bool rcpt_before_mail_decision;
	char message[8192];
	size_t message_len;
} B;

static void backend_say(struct bufferevent *bev, const char *text)
{
	bufferevent_write(bev, text, strlen(text));
}

static void backend_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;
	(void)arg;
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		if (B.in_data) {
			if (strcmp(line, ".") == 0) {
				B.in_data = false;
				B.dots++;
				backend_say(bev, "250 2.0.0 queued as FAKE\r\n");
			} else if (B.message_len + len + 2 < sizeof B.message) {
				memcpy(B.message + B.message_len, line, len);
				memcpy(B.message + B.message_len + len, "\r\n", 2);
				B.message_len += len + 2;
				B.message[B.message_len] = '\0';
			}
		} else if (strncasecmp(line, "EHLO", 4) == 0) {
			backend_say(bev, "250-fake.backend\r\n250 PIPELINING\r\n");
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			B.datas++;
			B.in_data = true;
			backend_say(bev, "354 go ahead\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			backend_say(bev, "221 bye\r\n");
		} else {
			if (strncasecmp(line, "RCPT", 4) == 0) {
				B.rcpts++;
				B.rcpt_before_mail_decision |= !D.late_answered;
			}
			backend_say(bev, "250 2.1.0 ok\r\n");
		}
		free(line);
	}
}

static void backend_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what, (void)arg;
	B.in_data = false; /* a message without its dot is dropped */
	bufferevent_free(bev);
}

static void backend_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l, (void)sa, (void)salen, (void)arg;
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, backend_read, NULL, backend_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	backend_say(bev, "220 fake.backend ESMTP\r\n");
}

/* ---- a session without a server ---- */

struct harness {
	struct bs_runtime *rt;
	struct session_list list;
	uint64_t seq;
	unsigned rr;
	char *scratch;
	struct session_env env;
	int cfd;                  /* the client's end */
	char replies[16384];
	size_t replies_len;
};

static struct bs_runtime *make_runtime(const struct check_type *const *types, size_t n)
{
	char text[1024], why[256];
	struct config_errors errs = { 0 };
	int len = snprintf(text, sizeof text,
			   "[gateway]\nlisten = 127.0.0.1:0\nhostname = gw.test.example\n"
			   "backend_idle_timeout = 0s\n"
			   "[domain example.com]\ndeliver = 127.0.0.1:%u\ndeliver_tls = none\n", B.port);
	struct bs_config *cfg = config_load_buffer("test_smtp_session.conf", text, (size_t)len, &errs);
	assert_non_null(cfg);
	checks_override_for_tests(types, n);
	struct runtime_opts o = { .open_sources = false };
	struct bs_runtime *rt = runtime_new(cfg, &o, why, sizeof why);
	checks_override_for_tests(NULL, 0);
	assert_non_null(rt);
	return rt;
}

/* reject_stages: where the "refuse" check says no (set before the CONNECT stage runs). */
static void harness_start(struct harness *h, const struct check_type *const *types, size_t n,
			  unsigned reject_stages)
{
	int sv[2];
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
				    .sin_addr.s_addr = htonl(0xC0000201) }; /* 192.0.2.1 */

	memset(h, 0, sizeof *h);
	memset(&D, 0, sizeof D);
	D.reject_stages = reject_stages;
	B.in_data = false;
	B.rcpts = B.datas = B.dots = 0;
	B.rcpt_before_mail_decision = false;
	B.message_len = 0;
	B.message[0] = '\0';
	h->rt = make_runtime(types, n);
	h->scratch = xmalloc(SESSION_SCRATCH_SIZE);
	h->env = (struct session_env){
		.base = base, .connlimit = connlimit_new(), .health = backend_health_new(),
		.slots = backend_slots_new(), .dns = dns, .rr_counter = &h->rr, .scratch = h->scratch,
		.id_time = 1, .id_seq = &h->seq, .list = &h->list,
	};
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	h->cfd = sv[1];
	smtp_session_accept(&h->env, runtime_ref(h->rt), sv[0], (struct sockaddr *)&peer, sizeof peer);
	assert_int_equal(h->list.n, 1);
}

static void harness_end(struct harness *h)
{
	close(h->cfd);
	for (int i = 0; i < 1000 && h->list.n > 0; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (h->list.n > 0)
		smtp_session_abort(h->list.head);
	for (int i = 0; i < 1000 && h->list.n > 0; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(h->list.n, 0);
	for (int i = 0; i < 100; i++) /* the backend side of the link */
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	connlimit_free(h->env.connlimit);
	backend_health_free(h->env.health);
	backend_slots_free(h->env.slots);
	free(h->scratch);
	runtime_unref(h->rt);
}

static void client_send(struct harness *h, const char *text)
{
	assert_int_equal(send(h->cfd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* How many final reply lines ("NNN text") the client has got. */
static size_t final_replies(const struct harness *h)
{
	size_t n = 0;
	for (const char *p = h->replies; (p = strstr(p, "\r\n")) != NULL; p += 2) {
		const char *start = p;
		while (start > h->replies && start[-1] != '\n')
			start--;
		n += p - start >= 4 && start[3] == ' ';
	}
	return n;
}

static void expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	*(bool *)arg = true;
}

/* Run the loop until the client has n final replies (within 5 s). */
static void client_wait(struct harness *h, size_t n)
{
	static const struct timeval limit = { 5, 0 };
	bool expired = false;
	struct event *t = evtimer_new(base, expire, &expired);
	evtimer_add(t, &limit);
	while (final_replies(h) < n && !expired) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t got = recv(h->cfd, h->replies + h->replies_len, sizeof h->replies - 1 - h->replies_len, 0);
		if (got > 0) {
			h->replies_len += (size_t)got;
			h->replies[h->replies_len] = '\0';
		} else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
			event_base_loop(base, EVLOOP_ONCE); /* wait for something rather than spin */
		} else {
			break; /* the session closed */
		}
	}
	event_free(t);
	if (final_replies(h) < n)
		fail_msg("waited for %zu replies, got:\n%s", n, h->replies);
}

/* The codes of the final replies, in order, as "220 250 250 ..." */
static const char *codes(const struct harness *h)
{
	static char out[512];
	size_t o = 0;
	out[0] = '\0';
	for (const char *line = h->replies; *line != '\0';) {
		const char *end = strstr(line, "\r\n");
		if (end == NULL)
			break;
		if (end - line >= 4 && line[3] == ' ' && o + 5 < sizeof out)
			o += (size_t)snprintf(out + o, sizeof out - o, "%s%.3s", o ? " " : "", line);
		line = end + 2;
	}
	return out;
}

/* ---- tests ---- */

static void test_late_mail_keeps_order(void **state)
{
	static const struct check_type *const types[] = { &late_type, &check_relay_type };
	struct harness h;
	(void)state;

	harness_start(&h, types, 2, 0);
	client_send(&h, "EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.com>\r\n"
			"RCPT TO:<v@example.com>\r\nDATA\r\n");
	client_wait(&h, 6);
	assert_string_equal(codes(&h), "220 250 250 250 250 354");
	assert_true(strstr(h.replies, "250 2.1.0 Sender OK\r\n") < strstr(h.replies, "250 2.1.0 ok\r\n"));
	assert_true(D.late_answered);
	assert_false(B.rcpt_before_mail_decision); /* the RCPTs waited in the input buffer */
	assert_int_equal(B.rcpts, 2);
	client_send(&h, "Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n");
	client_wait(&h, 8);
	assert_string_equal(codes(&h), "220 250 250 250 250 354 250 221");
	assert_int_equal(B.dots, 1);
	/* backstop's Received: first, then the check's field, then the message */
	assert_true(strncmp(B.message, "Received: from client.example", 29) == 0);
	const char *added = strstr(B.message, "\r\nX-Test-Mail: checked\r\nSubject: t\r\n");
	assert_non_null(added);
	assert_null(strstr(added + 2, "Received:"));
	harness_end(&h);
}

static void refuse_at(unsigned stages, const char *script, size_t nreplies, const char *want)
{
	static const struct check_type *const types[] = { &refuse_type, &check_relay_type };
	struct harness h;

	harness_start(&h, types, 2, stages);
	client_send(&h, script);
	client_wait(&h, nreplies);
	assert_string_equal(codes(&h), want);
	harness_end(&h);
}

static void test_refuse_helo(void **state)
{
	(void)state;
	refuse_at(ENGINE_STAGE_BIT(ENGINE_STAGE_HELO), "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n", 4,
		  "220 550 503 221");
	assert_int_equal(D.asked[ENGINE_STAGE_HELO], 1);
	assert_int_equal(D.asked[ENGINE_STAGE_MAIL], 0);
}

static void test_refuse_mail(void **state)
{
	(void)state;
	refuse_at(ENGINE_STAGE_BIT(ENGINE_STAGE_MAIL),
		  "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n", 5,
		  "220 250 550 503 503");
	assert_int_equal(B.rcpts, 0);
}

static void test_refuse_data(void **state)
{
	(void)state;
	refuse_at(ENGINE_STAGE_BIT(ENGINE_STAGE_DATA),
		  "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n", 5,
		  "220 250 250 250 550");
	assert_int_equal(B.datas, 0); /* the backend was never asked */
}

static void test_refuse_end_of_data(void **state)
{
	static const struct check_type *const types[] = { &refuse_type, &check_relay_type };
	struct harness h;
	(void)state;

	harness_start(&h, types, 2, ENGINE_STAGE_BIT(ENGINE_STAGE_EOD));
	client_send(&h, "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
	client_wait(&h, 5);
	client_send(&h, "Subject: t\r\n\r\nhello\r\n.\r\nNOOP\r\n");
	client_wait(&h, 7);
	assert_string_equal(codes(&h), "220 250 250 250 354 550 250");
	assert_non_null(strstr(h.replies, "550 5.7.1 test says no at end-of-data\r\n"));
	assert_int_equal(B.datas, 1);
	assert_int_equal(B.dots, 0); /* dropped without the final dot */
	assert_int_equal(D.asked[ENGINE_STAGE_EOD], 1);
	harness_end(&h);
}

static void test_refuse_connect_at_rcpt(void **state)
{
	(void)state;
	refuse_at(ENGINE_STAGE_BIT(ENGINE_STAGE_CONNECT),
		  "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\n"
		  "RCPT TO:<v@example.com>\r\nQUIT\r\n", 6, "220 250 250 550 550 221");
	assert_int_equal(B.rcpts, 0);
	assert_int_equal(D.asked[ENGINE_STAGE_CONNECT], 1);
}

/* The banner and the replies to EHLO and MAIL do not wait for CONNECT; the RCPTs do. */
static void test_connect_late_refusal_at_rcpt(void **state)
{
	static const struct check_type *const types[] = { &late_connect_type, &check_relay_type };
	struct harness h;
	(void)state;

	harness_start(&h, types, 2, 0);
	client_send(&h, "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n");
	client_wait(&h, 3);
	assert_false(D.late_answered);
	client_send(&h, "RCPT TO:<u@example.com>\r\nRCPT TO:<v@example.com>\r\nQUIT\r\n");
	client_wait(&h, 6);
	assert_true(D.late_answered);
	assert_string_equal(codes(&h), "220 250 250 554 554 221");
	assert_non_null(strstr(h.replies, "554 5.7.1 Service unavailable; client listed\r\n"));
	assert_int_equal(B.rcpts, 0);
	harness_end(&h);
}

/* A client that half-closes behind its pipelined commands still gets every reply, in order. */
static void test_half_close_while_deciding(void **state)
{
	static const struct check_type *const types[] = { &late_type, &check_relay_type };
	struct harness h;
	(void)state;

	harness_start(&h, types, 2, 0);
	client_send(&h, "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nQUIT\r\n");
	shutdown(h.cfd, SHUT_WR);
	client_wait(&h, 5);
	assert_string_equal(codes(&h), "220 250 250 250 221");
	harness_end(&h);
}

static void test_shutdown_while_deciding(void **state)
{
	static const struct check_type *const types[] = { &late_type, &check_relay_type };
	struct harness h;
	(void)state;

	harness_start(&h, types, 2, 0);
	D.hang = true;
	client_send(&h, "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\n");
	client_wait(&h, 2);
	for (int i = 0; i < 100; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(D.asked[ENGINE_STAGE_MAIL], 1);
	assert_int_equal(smtp_session_abort(h.list.head), 0);
	client_wait(&h, 3);
	assert_string_equal(codes(&h), "220 250 421");
	assert_int_equal(D.cancelled, 1);
	assert_int_equal(B.rcpts, 0);
	harness_end(&h);
}

static int group_setup(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in bound;
	socklen_t len = sizeof bound;
	(void)state;

	signal(SIGPIPE, SIG_IGN);
	log_open(false, getenv("TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	base = event_base_new();
	const char *why = NULL;
	dns = dns_resolver_new_opts(base, 2000, 2, &why);
	if (dns == NULL)
		return -1;
	B.l = evconnlistener_new_bind(base, backend_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
				      (struct sockaddr *)&sin, sizeof sin);
	if (B.l == NULL)
		return -1;
	getsockname(evconnlistener_get_fd(B.l), (struct sockaddr *)&bound, &len);
	B.port = ntohs(bound.sin_port);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	evconnlistener_free(B.l);
	dns_resolver_free(dns);
	event_base_free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_late_mail_keeps_order),
		cmocka_unit_test(test_refuse_helo),
		cmocka_unit_test(test_refuse_mail),
		cmocka_unit_test(test_refuse_data),
		cmocka_unit_test(test_refuse_end_of_data),
		cmocka_unit_test(test_refuse_connect_at_rcpt),
		cmocka_unit_test(test_connect_late_refusal_at_rcpt),
		cmocka_unit_test(test_half_close_while_deciding),
		cmocka_unit_test(test_shutdown_while_deciding),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
