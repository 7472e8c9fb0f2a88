/* test_smtp_client.c - smtp_client against a scripted fake SMTP server living in the same
 * libevent loop (an evconnlistener on 127.0.0.1, port 0): dialogues with and without
 * PIPELINING, HELO fallback, malformed replies, closes and stalls at every stage, 421, dot
 * stuffing checked byte for byte, a 20 MB body under backpressure, STARTTLS (may, must, refused,
 * not offered, failed verification) with a self-signed certificate made here, freeing inside
 * callbacks. Every test checks that no file descriptor is left open. */
#include <setjmp.h>
#include <signal.h>
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
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "smtp_client.h"
#include "smtp_parse.h"
#include "util.h"
#include "unit_support.h"

/* ---- the fake server ---- */

enum step_kind { S_END = 0, S_SEND, S_EXPECT, S_DATA, S_CLOSE, S_STALL, S_TLS };
struct step {
	enum step_kind kind;
	const char *text;
};

struct fake {
	struct event_base *base;
	struct evconnlistener *lis;
	struct bufferevent *bev;
	const struct step *script;
	size_t pos;
	SSL_CTX *ctx;
	struct evbuffer *data; /* DATA as received (still stuffed), without the final dot line */
	bool sink;             /* DATA: count and hash only */
	uint64_t sink_octets, sink_hash;
	char bad[512];         /* first difference from the script */
	size_t batch_max;      /* most command lines waiting in the input at one EXPECT */
	int accepted;
	bool break_at_end, break_on_close, saw_close;
	struct sockaddr_in addr;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ULL;
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static void fake_run(struct fake *f);

static void fake_close(struct fake *f)
{
	if (f->bev)
		bufferevent_free(f->bev);
	f->bev = NULL;
}

static void fake_read(struct bufferevent *bev, void *arg) { fake_run(arg); }

static void fake_flushed(struct bufferevent *bev, void *arg) { fake_close(arg); }

/* S_CLOSE: close once what the script sent has left. */
static void fake_close_flushed(struct fake *f)
{
	if (evbuffer_get_length(bufferevent_get_output(f->bev)) == 0) {
		fake_close(f);
		return;
	}
	bufferevent_setcb(f->bev, NULL, fake_flushed, NULL, f);
	bufferevent_disable(f->bev, EV_READ);
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
	struct fake *f = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		fake_run(f); /* what a TLS filter decoded along with the close */
		fake_close(f);
		f->saw_close = true;
		if (f->break_on_close)
			event_base_loopbreak(f->base);
	}
}

static void fake_tls(struct fake *f)
{
	SSL *ssl = SSL_new(f->ctx);
	struct bufferevent *t = bufferevent_openssl_filter_new(f->base, f->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
							       BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(t);
	bufferevent_openssl_set_allow_dirty_shutdown(t, 1);
	f->bev = t;
	bufferevent_setcb(t, fake_read, NULL, fake_event, f);
	bufferevent_enable(t, EV_READ | EV_WRITE);
}

static bool fake_expect(struct fake *f, const char *want)
{
	struct evbuffer *in = bufferevent_get_input(f->bev);
	size_t len = evbuffer_get_length(in), lines = 0;
	if (len > 0 && len < 65536) {
		const unsigned char *p = evbuffer_pullup(in, -1);
		for (size_t i = 0; i < len; i++)
			lines += p[i] == '\n';
	}
	char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF_STRICT);
	if (line == NULL)
		return false;
	if (lines > f->batch_max)
		f->batch_max = lines;
	if (strncasecmp(line, want, strlen(want)) != 0 && f->bad[0] == '\0')
		snprintf(f->bad, sizeof f->bad, "step %zu: expected \"%s\", got \"%s\"", f->pos, want, line);
	free(line);
	return true;
}

static bool fake_data(struct fake *f)
{
	struct evbuffer *in = bufferevent_get_input(f->bev);
	size_t n;
	char *line;
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		if (n == 1 && line[0] == '.') {
			free(line);
			return true;
		}
		if (f->sink) {
			f->sink_hash = fnv(fnv(f->sink_hash, line, n), "\r\n", 2);
			f->sink_octets += n + 2;
		} else {
			evbuffer_add(f->data, line, n);
			evbuffer_add(f->data, "\r\n", 2);
		}
		free(line);
	}
	return false;
}

static void fake_run(struct fake *f)
{
	while (f->bev) {
		const struct step *s = &f->script[f->pos];
		switch (s->kind) {
		case S_END:
			if (f->break_at_end)
				event_base_loopbreak(f->base);
			return;
		case S_STALL:
			return;
		case S_SEND:
			bufferevent_write(f->bev, s->text, strlen(s->text));
			break;
		case S_CLOSE:
			fake_close_flushed(f);
			f->pos++;
			return;
		case S_TLS:
			fake_tls(f);
			break;
		case S_EXPECT:
			if (!fake_expect(f, s->text))
				return;
			break;
		case S_DATA:
			if (!fake_data(f))
				return;
			break;
		}
		f->pos++;
	}
}

static void fake_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct fake *f = arg;
	f->accepted++;
	if (f->bev) {
		close(fd);
		return;
	}
	f->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(f->bev, fake_read, NULL, fake_event, f);
	bufferevent_enable(f->bev, EV_READ | EV_WRITE);
	fake_run(f);
}

static void fake_start(struct fake *f, struct event_base *base, const struct step *script)
{
	f->base = base;
	f->script = script;
	f->data = evbuffer_new();
	f->sink_hash = FNV_INIT;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lis = evconnlistener_new_bind(base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
					 (struct sockaddr *)&sin, sizeof sin);
	assert_non_null(f->lis);
	socklen_t len = sizeof f->addr;
	assert_int_equal(getsockname(evconnlistener_get_fd(f->lis), (struct sockaddr *)&f->addr, &len), 0);
}

static void fake_stop(struct fake *f)
{
	fake_close(f);
	if (f->lis)
		evconnlistener_free(f->lis);
	if (f->data)
		evbuffer_free(f->data);
	if (f->ctx)
		SSL_CTX_free(f->ctx);
	memset(f, 0, sizeof *f);
}

/* ---- a self-signed certificate for "localhost" ---- */

static EVP_PKEY *cert_key;
static X509 *cert;

static void cert_make(void)
{
	cert_key = EVP_EC_gen("P-256");
	assert_non_null(cert_key);
	cert = X509_new();
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, cert_key);
	X509_NAME *name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
	assert_non_null(ext);
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(cert, cert_key, EVP_sha256()) > 0);
}

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, cert_key), 1);
	return ctx;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert), 1);
	return ctx;
}

/* ---- the test harness ---- */

#define MAX_REPLIES 64

struct t {
	struct event_base *base;
	struct event *guard;
	struct fake srv;
	struct smtp_client *cl;
	struct smtp_client_opts opts;
	struct smtp_reply got[MAX_REPLIES];
	int n, stop_at;
	bool timed_out, free_at_mail;
	void (*on_ready)(struct t *);
	void (*on_354)(struct t *);
	int fds_before;
	int traced_out, traced_in;
	/* large body */
	const char *chunk_src;
	size_t body_len, body_off, chunk, high, max_pending;
	int drains;
};

static void guard_fired(evutil_socket_t fd, short what, void *arg)
{
	struct t *t = arg;
	t->timed_out = true;
	event_base_loopbreak(t->base);
}

static void run(struct t *t, int guard_ms)
{
	struct timeval tv = { guard_ms / 1000, (guard_ms % 1000) * 1000 };
	evtimer_add(t->guard, &tv);
	event_base_dispatch(t->base);
	event_del(t->guard);
	assert_false(t->timed_out);
}

static void rec(void *arg, const struct smtp_reply *r)
{
	struct t *t = arg;
	assert_true(t->n < MAX_REPLIES);
	t->got[t->n++] = *r;
	if (t->n == t->stop_at)
		event_base_loopbreak(t->base);
}

static void ready_cb(void *arg, const struct smtp_reply *r)
{
	struct t *t = arg;
	rec(arg, r);
	if (r->code == 250 && t->on_ready)
		t->on_ready(t);
}

static void data_cb(void *arg, const struct smtp_reply *r)
{
	struct t *t = arg;
	rec(arg, r);
	if (r->code == 354 && t->on_354)
		t->on_354(t);
}

static void mail_cb_free(void *arg, const struct smtp_reply *r)
{
	struct t *t = arg;
	rec(arg, r);
	smtp_client_free(t->cl, false);
	t->cl = NULL;
}

static void trace_cb(void *arg, char dir, const char *line, size_t len)
{
	struct t *t = arg;
	if (dir == '>')
		t->traced_out++;
	else
		t->traced_in++;
}

static void connect_client(struct t *t)
{
	t->cl = smtp_client_new(t->base, (struct sockaddr *)&t->srv.addr, sizeof t->srv.addr, &t->opts, ready_cb, t);
	assert_non_null(t->cl);
	smtp_client_set_trace(t->cl, trace_cb, t);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	t->fds_before = count_open_fds();
	t->base = event_base_new();
	t->guard = evtimer_new(t->base, guard_fired, t);
	t->opts = (struct smtp_client_opts){
		.helo_name = "client.test",
		.tls = DELIVER_TLS_NONE,
		.connect_timeout_ms = 3000,
		.command_timeout_ms = 3000,
		.data_timeout_ms = 3000,
	};
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	if (t->cl)
		smtp_client_free(t->cl, false);
	if (t->opts.tls_ctx)
		SSL_CTX_free(t->opts.tls_ctx);
	fake_stop(&t->srv);
	event_free(t->guard);
	event_base_free(t->base);
	int after = count_open_fds();
	int before = t->fds_before;
	free(t);
	assert_int_equal(after, before);
	return 0;
}

static void start(struct t *t, const struct step *script)
{
	fake_start(&t->srv, t->base, script);
	connect_client(t);
}

static void assert_script_ok(struct t *t)
{
	if (t->srv.bad[0])
		fail_msg("%s", t->srv.bad);
}

static void assert_reply(const struct smtp_reply *r, int code, const char *enhanced, const char *text)
{
	if (r->code != code)
		fail_msg("expected %d, got %d %s", code, r->code, r->text);
	if (enhanced)
		assert_string_equal(r->enhanced, enhanced);
	if (text && strstr(r->text, text) == NULL)
		fail_msg("expected text containing \"%s\", got \"%s\"", text, r->text);
}

/* ---- dialogues ---- */

#define BANNER { S_SEND, "220 fake.test ESMTP\r\n" }

static void queue_envelope(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<a@b.test>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<c@d.test>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<e@d.test>", rec, t);
	smtp_client_command(t->cl, "DATA", data_cb, t);
}

static void write_stuffed_body(struct t *t)
{
	static const char *const parts[] = { "Subject: t\r\n\r\n.leading dot\r\n", "..two dots\r", "\n.", "x\r\nlast line" };
	for (size_t i = 0; i < 4; i++)
		smtp_client_data_write(t->cl, parts[i], strlen(parts[i]));
	assert_false(smtp_client_usable(t->cl));
	smtp_client_data_end(t->cl, rec, t);
}

static const struct step dialogue_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO client.test" },
	{ S_SEND, "250-fake.test hello\r\n250-SIZE 10240000\r\n250-8bitmime\r\n250 DSN\r\n" },
	{ S_EXPECT, "MAIL FROM:<a@b.test>" },
	{ S_SEND, "250 2.1.0 Ok\r\n" },
	{ S_EXPECT, "RCPT TO:<c@d.test>" },
	{ S_SEND, "250 2.1.5 Ok\r\n" },
	{ S_EXPECT, "RCPT TO:<e@d.test>" },
	{ S_SEND, "550-5.1.1 no such\r\n550 5.1.1 user\r\n" },
	{ S_EXPECT, "DATA" },
	{ S_SEND, "354 go ahead\r\n" },
	{ S_DATA, NULL },
	{ S_SEND, "250 2.0.0 queued as X\r\n" },
	{ S_EXPECT, "QUIT" },
	{ S_END, NULL },
};

static void test_dialogue(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_envelope;
	t->on_354 = write_stuffed_body;
	t->stop_at = 6;
	start(t, dialogue_script);
	run(t, 5000);
	assert_script_ok(t);
	assert_reply(&t->got[0], 250, "", "fake.test hello; SIZE 10240000; 8bitmime; DSN");
	assert_true(smtp_client_greeted(t->cl));
	assert_true(smtp_client_has_ext(t->cl, "size"));
	assert_true(smtp_client_has_ext(t->cl, "8BITMIME"));
	assert_true(smtp_client_has_ext(t->cl, "DSN"));
	assert_false(smtp_client_has_ext(t->cl, "PIPELINING"));
	assert_int_equal(smtp_client_max_size(t->cl), 10240000);
	assert_reply(&t->got[1], 250, "2.1.0", "Ok");
	assert_reply(&t->got[2], 250, "2.1.5", "Ok");
	assert_reply(&t->got[3], 550, "5.1.1", "no such; user");
	assert_reply(&t->got[4], 354, "", "go ahead");
	assert_reply(&t->got[5], 250, "2.0.0", "queued as X");
	assert_int_equal(t->srv.batch_max, 1); /* no PIPELINING: one command at a time */
	const char *want = "Subject: t\r\n\r\n..leading dot\r\n...two dots\r\n..x\r\nlast line\r\n";
	assert_int_equal(evbuffer_get_length(t->srv.data), strlen(want));
	assert_memory_equal(evbuffer_pullup(t->srv.data, -1), want, strlen(want));
	assert_true(smtp_client_usable(t->cl));
	const char *v, *c;
	smtp_client_tls_info(t->cl, &v, &c);
	assert_null(v);
	assert_null(c);
	assert_true(t->traced_out >= 6 && t->traced_in >= 10);
	/* QUIT reaches the server */
	smtp_client_free(t->cl, true);
	t->cl = NULL;
	t->srv.break_at_end = true;
	t->srv.break_on_close = true;
	if (t->srv.script[t->srv.pos].kind != S_END)
		run(t, 5000);
	assert_int_equal(t->srv.script[t->srv.pos].kind, S_END);
	assert_script_ok(t);
}

static void write_crlf_body(struct t *t)
{
	smtp_client_data_write(t->cl, "hello\r\n", 7);
	smtp_client_data_end(t->cl, rec, t);
}

static const struct step pipelining_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO" },
	{ S_SEND, "250-fake.test\r\n250-PIPELINING\r\n250 SIZE\r\n" },
	{ S_EXPECT, "MAIL FROM:<a@b.test>" },
	{ S_EXPECT, "RCPT TO:<c@d.test>" },
	{ S_EXPECT, "RCPT TO:<e@d.test>" },
	{ S_EXPECT, "DATA" },
	{ S_SEND, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go\r\n" },
	{ S_DATA, NULL },
	{ S_SEND, "250 2.0.0 done\r\n" },
	{ S_END, NULL },
};

static void test_pipelining(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_envelope;
	t->on_354 = write_crlf_body;
	t->stop_at = 6;
	start(t, pipelining_script);
	run(t, 5000);
	assert_script_ok(t);
	assert_true(smtp_client_has_ext(t->cl, "pipelining"));
	assert_int_equal(smtp_client_max_size(t->cl), 0);
	assert_true(t->srv.batch_max >= 4); /* MAIL, RCPT, RCPT, DATA in one write */
	assert_reply(&t->got[1], 250, "2.1.0", NULL);
	assert_reply(&t->got[2], 250, "2.1.5", NULL);
	assert_reply(&t->got[3], 550, "5.1.1", "unknown");
	assert_reply(&t->got[4], 354, NULL, NULL);
	assert_reply(&t->got[5], 250, "2.0.0", "done");
	assert_int_equal(evbuffer_get_length(t->srv.data), 7); /* "hello\r\n", no CRLF added */
	assert_true(smtp_client_usable(t->cl));
}

static void empty_body(struct t *t) { smtp_client_data_end(t->cl, rec, t); }

static void queue_data_only(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<x@y.test>", rec, t);
	smtp_client_command(t->cl, "DATA", data_cb, t);
}

static const struct step helo_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO client.test" },
	{ S_SEND, "502 5.5.2 what\r\n" },
	{ S_EXPECT, "HELO client.test" },
	{ S_SEND, "250 fake.test\r\n" },
	{ S_EXPECT, "MAIL FROM:<>" },
	{ S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "RCPT TO:<x@y.test>" },
	{ S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "DATA" },
	{ S_SEND, "354 go\r\n" },
	{ S_DATA, NULL },
	{ S_SEND, "250 ok\r\n" },
	{ S_END, NULL },
};

static void test_ehlo_refused_helo(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_data_only;
	t->on_354 = empty_body;
	t->stop_at = 5;
	start(t, helo_script);
	run(t, 5000);
	assert_script_ok(t);
	assert_reply(&t->got[0], 250, "", "fake.test");
	assert_false(smtp_client_has_ext(t->cl, "SIZE"));
	assert_reply(&t->got[4], 250, NULL, NULL);
	assert_int_equal(evbuffer_get_length(t->srv.data), 0); /* empty message: just ".\r\n" */
}

/* ---- failures at the greeting ---- */

static void expect_ready(struct t *t, const struct step *script, int code, const char *text)
{
	t->stop_at = 1;
	start(t, script);
	run(t, 5000);
	assert_int_equal(t->n, 1);
	assert_reply(&t->got[0], code, NULL, text);
	assert_true(smtp_client_usable(t->cl) == (code == 250));
}

static void test_banner_refused(void **state)
{
	static const struct step s[] = { { S_SEND, "554-5.7.1 go\r\n554 5.7.1 away\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	expect_ready(t, s, 554, "go; away");
	assert_string_equal(t->got[0].enhanced, "5.7.1");
}

/* "Too many connections": a 421 greeting is told apart from a refused EHLO (relay.c counts it as
 * busy, not as a failed backend). */
static void test_banner_421_not_greeted(void **state)
{
	static const struct step s[] = {
		{ S_SEND, "421 4.7.0 fake.test Error: too many connections from 127.0.0.1\r\n" }, { S_CLOSE, NULL } };
	struct t *t = *state;
	expect_ready(t, s, 421, "too many connections");
	assert_false(smtp_client_greeted(t->cl));
}

static void test_ehlo_421_was_greeted(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "421 4.3.2 going down\r\n" },
					 { S_CLOSE, NULL } };
	struct t *t = *state;
	expect_ready(t, s, 421, "going down");
	assert_true(smtp_client_greeted(t->cl));
}

/* A RCPT with every parameter RFC 3461 allows is SMTP_PARAM_LINE_MAX octets: it is sent whole
 * (issue 9 item 7: it was refused at 510 and the backend link dropped); one octet more is not. */
static char long_rcpt[SMTP_PARAM_LINE_MAX + 2];

static void long_rcpt_make(size_t len)
{
	memset(long_rcpt, 0, sizeof long_rcpt);
	snprintf(long_rcpt, sizeof long_rcpt, "RCPT TO:<c@d.test> NOTIFY=FAILURE ORCPT=rfc822;");
	size_t n = strlen(long_rcpt);
	memset(long_rcpt + n, 'x', len - n);
}

static void queue_long_rcpt(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<a@b.test>", rec, t);
	smtp_client_command(t->cl, long_rcpt, rec, t);
}

static const struct step long_rcpt_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO" },
	{ S_SEND, "250-fake.test\r\n250-PIPELINING\r\n250 DSN\r\n" },
	{ S_EXPECT, "MAIL FROM:<a@b.test>" },
	{ S_EXPECT, long_rcpt },
	{ S_SEND, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" },
	{ S_STALL, NULL },
};

static void test_longest_rcpt_line_sent(void **state)
{
	struct t *t = *state;
	long_rcpt_make(SMTP_PARAM_LINE_MAX);
	t->on_ready = queue_long_rcpt;
	t->stop_at = 3;
	start(t, long_rcpt_script);
	run(t, 5000);
	assert_script_ok(t);
	assert_reply(&t->got[1], 250, "2.1.0", NULL);
	assert_reply(&t->got[2], 250, "2.1.5", NULL);
	assert_true(smtp_client_usable(t->cl));
}

static const struct step too_long_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake.test\r\n250 DSN\r\n" }, { S_STALL, NULL },
};

static void test_rcpt_line_over_the_allowance_refused(void **state)
{
	struct t *t = *state;
	long_rcpt_make(SMTP_PARAM_LINE_MAX + 1);
	t->on_ready = queue_long_rcpt;
	t->stop_at = 3;
	start(t, too_long_script);
	run(t, 5000);
	assert_reply(&t->got[1], 0, NULL, "too long");
	assert_reply(&t->got[2], 0, NULL, "too long");
	assert_false(smtp_client_usable(t->cl));
}

/* A last EHLO line of just "250" carries no keyword: nothing may be read past the line. */
static void test_ehlo_last_line_without_keyword(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250-SIZE 9\r\n250\r\n" },
					 { S_STALL, NULL } };
	struct t *t = *state;
	expect_ready(t, s, 250, NULL);
	assert_true(smtp_client_has_ext(t->cl, "SIZE"));
	assert_false(smtp_client_has_ext(t->cl, "PIPELINING"));
}

static void test_malformed_code(void **state)
{
	static const struct step s[] = { { S_SEND, "2x0 hello\r\n" }, { S_STALL, NULL } };
	expect_ready(*state, s, 0, "malformed reply");
}

static void test_malformed_mixed_codes(void **state)
{
	static const struct step s[] = { { S_SEND, "220-a\r\n230 b\r\n" }, { S_STALL, NULL } };
	expect_ready(*state, s, 0, "malformed reply");
}

static char long_line[700];

static void test_malformed_long_line(void **state)
{
	memset(long_line, 'x', sizeof long_line - 1);
	memcpy(long_line, "220 ", 4);
	static const struct step s[] = { { S_SEND, long_line }, { S_STALL, NULL } }; /* no CRLF at all */
	expect_ready(*state, s, 0, "line too long");
}

static char many_lines[101 * 8 + 1];

static void test_malformed_many_lines(void **state)
{
	for (int i = 0; i < 101; i++)
		memcpy(many_lines + i * 8, i == 100 ? "220 xx\r\n" : "220-xx\r\n", 8);
	static const struct step s[] = { { S_SEND, many_lines }, { S_STALL, NULL } };
	expect_ready(*state, s, 0, "too many lines");
}

static void test_close_at_banner(void **state)
{
	static const struct step s[] = { { S_CLOSE, NULL } };
	expect_ready(*state, s, 0, "connection closed by server waiting for greeting");
}

static void test_close_after_ehlo(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_CLOSE, NULL } };
	expect_ready(*state, s, 0, "connection closed by server after EHLO");
}

static void test_stall_banner(void **state)
{
	static const struct step s[] = { { S_STALL, NULL } };
	struct t *t = *state;
	t->opts.connect_timeout_ms = 200;
	/* the other timeouts past the 5 s guard of expect_ready: only connect_timeout can answer */
	t->opts.command_timeout_ms = t->opts.data_timeout_ms = 60000;
	expect_ready(t, s, 0, "timeout waiting for greeting");
}

static void test_connect_refused(void **state)
{
	struct t *t = *state;
	/* a port nobody listens on: bind one, note it, close it */
	static const struct step s[] = { { S_STALL, NULL } };
	fake_start(&t->srv, t->base, s);
	struct sockaddr_in addr = t->srv.addr;
	evconnlistener_free(t->srv.lis);
	t->srv.lis = NULL;
	t->stop_at = 1;
	t->cl = smtp_client_new(t->base, (struct sockaddr *)&addr, sizeof addr, &t->opts, ready_cb, t);
	assert_int_equal(t->n, 0); /* never from inside the call */
	run(t, 5000);
	assert_reply(&t->got[0], 0, NULL, "connect failed");
	/* commands after the failure: code 0, from the loop */
	smtp_client_command(t->cl, "MAIL FROM:<>", rec, t);
	smtp_client_data_end(t->cl, rec, t);
	assert_int_equal(t->n, 1);
	t->stop_at = 3;
	run(t, 5000);
	assert_reply(&t->got[1], 0, NULL, "connect failed");
	assert_reply(&t->got[2], 0, NULL, "connect failed");
}

/* ---- failures mid-session ---- */

static void queue_mail_rcpt(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<a@b.test>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<c@d.test>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<e@d.test>", rec, t);
}

static const struct step stall_mail_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_EXPECT, "MAIL" }, { S_STALL, NULL },
};

static void test_stall_after_mail(void **state)
{
	struct t *t = *state;
	t->opts.command_timeout_ms = 200;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	start(t, stall_mail_script);
	run(t, 5000);
	assert_reply(&t->got[0], 250, NULL, NULL);
	assert_reply(&t->got[1], 0, NULL, "timeout after MAIL");
	assert_reply(&t->got[2], 0, NULL, "timeout after MAIL");
	assert_reply(&t->got[3], 0, NULL, "timeout after MAIL");
	assert_false(smtp_client_usable(t->cl));
}

static const struct step reply_421_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO" },
	{ S_SEND, "250 fake\r\n" },
	{ S_EXPECT, "MAIL" },
	{ S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "RCPT" },
	{ S_SEND, "421 4.3.2 shutting down\r\n" },
	{ S_CLOSE, NULL },
};

static void test_421_mid_session(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	start(t, reply_421_script);
	run(t, 5000);
	assert_reply(&t->got[1], 250, NULL, NULL);
	assert_reply(&t->got[2], 421, "4.3.2", "shutting down");
	assert_reply(&t->got[3], 0, NULL, "421");
	assert_false(smtp_client_usable(t->cl));
}

static const struct step unsolicited_421_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n421 idle too long\r\n" }, { S_STALL, NULL },
};

static void stop_loop(struct t *t) { event_base_loopbreak(t->base); }

static void test_421_unsolicited(void **state)
{
	struct t *t = *state;
	t->on_ready = stop_loop;
	start(t, unsolicited_421_script);
	run(t, 5000);
	assert_reply(&t->got[0], 250, NULL, NULL);
	/* the 421 arrived in the same read: handled once the ready callback returned */
	assert_false(smtp_client_usable(t->cl));
	smtp_client_command(t->cl, "MAIL FROM:<>", rec, t);
	t->stop_at = 2;
	run(t, 5000);
	assert_reply(&t->got[1], 0, NULL, "421 idle too long");
}

/* ---- a server out of step: more replies than commands ---- */

static void test_out_of_step_after_banner(void **state)
{
	/* one write: the greeting and a line nobody asked for; EHLO is never sent */
	static const struct step s[] = { { S_SEND, "220 fake.test\r\n250 unsolicited\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	expect_ready(t, s, 0, "out of step: server sent \"250 unsolicited\" beyond the 1 reply owed");
	assert_int_equal(t->traced_out, 0);
}

static void test_out_of_step_after_ehlo(void **state)
{
	static const struct step s[] = {
		BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 SIZE\r\n550 5.7.1 no\r\n" }, { S_STALL, NULL },
	};
	struct t *t = *state;
	expect_ready(t, s, 0, "server sent \"550 5.7.1 no\"");
}

static const struct step extra_after_mail_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_EXPECT, "MAIL" },
	{ S_SEND, "250 2.1.0 ok\r\n" }, { S_SEND, "550 5.1.1 said to nobody\r\n" }, { S_STALL, NULL },
};

static void test_out_of_step_lockstep(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	start(t, extra_after_mail_script);
	run(t, 5000);
	/* neither the MAIL nor a RCPT gets a reply the server sent to something else */
	for (int i = 1; i < 4; i++)
		assert_reply(&t->got[i], 0, NULL, "out of step: server sent \"550 5.1.1 said to nobody\"");
	assert_false(smtp_client_usable(t->cl));
	assert_int_equal(t->traced_out, 2); /* EHLO, MAIL: no RCPT went out */
}

static const struct step extra_in_group_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 PIPELINING\r\n" },
	{ S_EXPECT, "MAIL" }, { S_EXPECT, "RCPT" }, { S_EXPECT, "RCPT" },
	{ S_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n250-one\r\n250 more\r\n" }, { S_STALL, NULL },
};

static void test_out_of_step_pipelined(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	start(t, extra_in_group_script);
	run(t, 5000);
	for (int i = 1; i < 4; i++)
		assert_reply(&t->got[i], 0, NULL, "server sent \"250-one\" beyond the 3 replies owed");
	assert_false(smtp_client_usable(t->cl));
}

static const struct step split_group_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 PIPELINING\r\n" },
	{ S_EXPECT, "MAIL" }, { S_EXPECT, "RCPT" }, { S_EXPECT, "RCPT" },
	{ S_SEND, "250-o" }, { S_STALL, NULL },
};

static void test_in_step_partial_group(void **state)
{
	/* fewer replies than owed, one cut mid-line: nothing is wrong yet */
	struct t *t = *state;
	t->opts.command_timeout_ms = 300;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	start(t, split_group_script);
	run(t, 5000);
	assert_reply(&t->got[1], 0, NULL, "timeout after MAIL");
}

static const struct step close_mid_data_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_EXPECT, "MAIL" }, { S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "RCPT" }, { S_SEND, "250 ok\r\n" }, { S_EXPECT, "DATA" }, { S_SEND, "354 go\r\n" }, { S_CLOSE, NULL },
};

static void write_big_then_end(struct t *t)
{
	static char block[1 << 20];
	memset(block, 'a', sizeof block);
	for (size_t i = 78; i < sizeof block; i += 80)
		memcpy(block + i, "\r\n", 2);
	smtp_client_data_write(t->cl, block, sizeof block);
	smtp_client_data_end(t->cl, rec, t);
}

static void test_close_mid_data(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_data_only;
	t->on_354 = write_big_then_end;
	t->stop_at = 5;
	start(t, close_mid_data_script);
	run(t, 5000);
	assert_reply(&t->got[3], 354, NULL, NULL);
	assert_reply(&t->got[4], 0, NULL, NULL);
	assert_false(smtp_client_usable(t->cl));
}

static const struct step stall_dot_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_EXPECT, "MAIL" }, { S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "RCPT" }, { S_SEND, "250 ok\r\n" }, { S_EXPECT, "DATA" }, { S_SEND, "354 go\r\n" },
	{ S_DATA, NULL }, { S_STALL, NULL },
};

static void test_stall_after_dot(void **state)
{
	struct t *t = *state;
	t->opts.data_timeout_ms = 200;
	t->opts.command_timeout_ms = 60000; /* past run()'s 5 s guard: only data_timeout can answer */
	t->on_ready = queue_data_only;
	t->on_354 = write_crlf_body;
	t->stop_at = 5;
	start(t, stall_dot_script);
	run(t, 5000);
	assert_reply(&t->got[4], 0, NULL, "timeout after end of data");
	assert_true(smtp_client_dot_sent(t->cl)); /* the server may have the message */
}

/* ---- a large body under backpressure ---- */

#define BIG_TOTAL (20u << 20)
#define BIG_LINE 78

static char *big_pattern; /* BIG_TOTAL octets of CRLF lines, some starting with '.' */

static void big_make(void)
{
	big_pattern = malloc(BIG_TOTAL);
	for (size_t off = 0, i = 0; off < BIG_TOTAL; off += BIG_LINE, i++) {
		size_t n = BIG_TOTAL - off < BIG_LINE ? BIG_TOTAL - off : BIG_LINE;
		memset(big_pattern + off, 'a' + (char)(i % 26), n);
		if (i % 7 == 0)
			big_pattern[off] = '.';
		if (n == BIG_LINE)
			memcpy(big_pattern + off + BIG_LINE - 2, "\r\n", 2);
	}
}

/* What the server must receive for the first len octets of the pattern: stuffed, CRLF added
 * when the content ends mid-line. */
static void big_expected(size_t len, uint64_t *octets, uint64_t *hash)
{
	uint64_t h = FNV_INIT, n = 0;
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && big_pattern[i] == '.') {
			h = fnv(h, ".", 1);
			n++;
		}
		h = fnv(h, big_pattern + i, 1);
		n++;
		bol = big_pattern[i] == '\n';
	}
	if (!bol) {
		h = fnv(h, "\r\n", 2);
		n += 2;
	}
	*octets = n;
	*hash = h;
}

static void big_pump(void *arg)
{
	struct t *t = arg;
	t->drains++;
	while (t->body_off < t->body_len && smtp_client_pending(t->cl) < t->high) {
		size_t n = t->body_len - t->body_off < t->chunk ? t->body_len - t->body_off : t->chunk;
		smtp_client_data_write(t->cl, big_pattern + t->body_off, n);
		t->body_off += n;
		size_t p = smtp_client_pending(t->cl);
		if (p > t->max_pending)
			t->max_pending = p;
	}
	if (t->body_off == t->body_len) {
		t->body_off++; /* once */
		smtp_client_data_end(t->cl, rec, t);
	}
}

static void big_start(struct t *t)
{
	smtp_client_set_drain_cb(t->cl, 64 * 1024, big_pump, t);
	t->drains = -1; /* the first call is not a drain */
	big_pump(t);
}

static const struct step big_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_EXPECT, "MAIL" }, { S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "RCPT" }, { S_SEND, "250 ok\r\n" }, { S_EXPECT, "DATA" }, { S_SEND, "354 go\r\n" },
	{ S_DATA, NULL }, { S_SEND, "250 2.0.0 got it\r\n" }, { S_END, NULL },
};

static void test_large_body(void **state)
{
	struct t *t = *state;
	big_make();
	t->body_len = BIG_TOTAL - 5; /* the last line without its CRLF */
	t->chunk = 65536 + 13;
	t->high = 1 << 20;
	t->on_ready = queue_data_only;
	t->on_354 = big_start;
	t->stop_at = 5;
	start(t, big_script);
	t->srv.sink = true;
	run(t, 60000);
	assert_script_ok(t);
	assert_reply(&t->got[4], 250, "2.0.0", "got it");
	uint64_t octets, hash;
	big_expected(t->body_len, &octets, &hash);
	assert_int_equal(t->srv.sink_octets, octets);
	assert_true(t->srv.sink_hash == hash);
	assert_true(t->drains > 10);
	assert_true(t->max_pending <= t->high + 2 * t->chunk);
	free(big_pattern);
	big_pattern = NULL;
}

static const struct step big_tls_script[] = {
	BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 STARTTLS\r\n" }, { S_EXPECT, "STARTTLS" },
	{ S_SEND, "220 go\r\n" }, { S_TLS, NULL }, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" },
	{ S_EXPECT, "MAIL" }, { S_SEND, "250 ok\r\n" }, { S_EXPECT, "RCPT" }, { S_SEND, "250 ok\r\n" },
	{ S_EXPECT, "DATA" }, { S_SEND, "354 go\r\n" }, { S_DATA, NULL }, { S_SEND, "250 2.0.0 got it\r\n" },
	{ S_END, NULL },
};

static SSL_CTX *server_ctx(void);
static SSL_CTX *client_ctx(void);

/* The same through TLS: pending counts what waits above and below the TLS filter. */
static void test_large_body_tls(void **state)
{
	struct t *t = *state;
	big_make();
	t->body_len = 4u << 20;
	t->chunk = 65536 - 7;
	t->high = 256 * 1024;
	t->on_ready = queue_data_only;
	t->on_354 = big_start;
	t->stop_at = 5;
	t->opts.tls = DELIVER_TLS_MUST;
	t->opts.tls_ctx = client_ctx();
	fake_start(&t->srv, t->base, big_tls_script);
	t->srv.ctx = server_ctx();
	t->srv.sink = true;
	connect_client(t);
	run(t, 60000);
	assert_script_ok(t);
	assert_reply(&t->got[4], 250, "2.0.0", "got it");
	uint64_t octets, hash;
	big_expected(t->body_len, &octets, &hash);
	assert_int_equal(t->srv.sink_octets, octets);
	assert_true(t->srv.sink_hash == hash);
	assert_true(t->drains > 3);
	assert_true(t->max_pending <= t->high + 2 * t->chunk + 4096);
	free(big_pattern);
	big_pattern = NULL;
}

/* ---- STARTTLS ---- */

static const struct step tls_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO client.test" },
	{ S_SEND, "250-fake.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n" },
	{ S_EXPECT, "STARTTLS" },
	{ S_SEND, "220 2.0.0 go ahead\r\n" },
	{ S_TLS, NULL },
	{ S_EXPECT, "EHLO client.test" },
	{ S_SEND, "250-fake.test tls\r\n250-PIPELINING\r\n250 SIZE 2000\r\n" },
	{ S_EXPECT, "MAIL FROM:<a@b.test>" },
	{ S_EXPECT, "RCPT TO:<c@d.test>" },
	{ S_EXPECT, "RCPT TO:<e@d.test>" },
	{ S_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n" },
	{ S_EXPECT, "QUIT" },
	{ S_END, NULL },
};

static void tls_session(struct t *t, enum deliver_tls_mode mode, bool verify, const char *name)
{
	t->opts.tls = mode;
	t->opts.tls_ctx = client_ctx();
	t->opts.tls_verify = verify;
	t->opts.tls_server_name = name;
	t->on_ready = queue_mail_rcpt;
	t->stop_at = 4;
	fake_start(&t->srv, t->base, tls_script);
	t->srv.ctx = server_ctx();
	connect_client(t);
	run(t, 5000);
	assert_script_ok(t);
	assert_reply(&t->got[0], 250, NULL, "fake.test tls; PIPELINING; SIZE 2000");
	assert_int_equal(smtp_client_max_size(t->cl), 2000);
	assert_false(smtp_client_has_ext(t->cl, "STARTTLS"));
	const char *v, *c;
	smtp_client_tls_info(t->cl, &v, &c);
	assert_non_null(v);
	assert_non_null(c);
	assert_true(strncmp(v, "TLSv1", 5) == 0);
	for (int i = 1; i < 4; i++)
		assert_reply(&t->got[i], 250, NULL, NULL);
	smtp_client_free(t->cl, true);
	t->cl = NULL;
	t->srv.break_at_end = true;
	t->srv.break_on_close = true;
	if (t->srv.script[t->srv.pos].kind != S_END)
		run(t, 5000);
	assert_int_equal(t->srv.script[t->srv.pos].kind, S_END);
	assert_script_ok(t);
}

static void test_starttls_may_verified(void **state) { tls_session(*state, DELIVER_TLS_MAY, true, "localhost"); }
static void test_starttls_must(void **state) { tls_session(*state, DELIVER_TLS_MUST, false, NULL); }

static void test_starttls_must_not_offered(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 SIZE 5\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MUST;
	t->opts.tls_ctx = client_ctx();
	expect_ready(t, s, 0, "STARTTLS required but not offered");
}

static void test_starttls_may_not_offered(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 SIZE 5\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MAY;
	t->opts.tls_ctx = client_ctx();
	expect_ready(t, s, 250, "fake; SIZE 5");
}

static const struct step tls_refused_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO" },
	{ S_SEND, "250-fake.test\r\n250 STARTTLS\r\n" },
	{ S_EXPECT, "STARTTLS" },
	{ S_SEND, "454 4.7.0 TLS not available\r\n" },
	{ S_EXPECT, "MAIL" },
	{ S_SEND, "250 clear ok\r\n" },
	{ S_STALL, NULL },
};

static void queue_mail(struct t *t) { smtp_client_command(t->cl, "MAIL FROM:<>", rec, t); }

static void test_starttls_may_refused(void **state)
{
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MAY;
	t->opts.tls_ctx = client_ctx();
	t->on_ready = queue_mail;
	t->stop_at = 2;
	start(t, tls_refused_script);
	run(t, 5000);
	assert_script_ok(t);
	assert_reply(&t->got[0], 250, NULL, "fake.test; STARTTLS"); /* the EHLO reply */
	assert_reply(&t->got[1], 250, NULL, "clear ok");
	const char *v, *c;
	smtp_client_tls_info(t->cl, &v, &c);
	assert_null(v);
}

static void test_starttls_must_refused(void **state)
{
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MUST;
	t->opts.tls_ctx = client_ctx();
	expect_ready(t, tls_refused_script, 454, "TLS not available");
}

static void test_starttls_verify_fails(void **state)
{
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MUST;
	t->opts.tls_ctx = client_ctx();
	t->opts.tls_verify = true;
	t->opts.tls_server_name = "wrong.example";
	t->stop_at = 1;
	fake_start(&t->srv, t->base, tls_script);
	t->srv.ctx = server_ctx();
	connect_client(t);
	run(t, 5000);
	assert_reply(&t->got[0], 0, NULL, "TLS handshake failed: ");
	assert_non_null(strstr(t->got[0].text, "certificate verify failed"));
}

static void test_starttls_garbage(void **state)
{
	static const struct step s[] = {
		BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 STARTTLS\r\n" }, { S_EXPECT, "STARTTLS" },
		{ S_SEND, "220 go\r\nthis is not TLS\r\n" }, { S_STALL, NULL },
	};
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MAY;
	t->opts.tls_ctx = client_ctx();
	expect_ready(t, s, 0, "TLS handshake failed: ");
}

static void test_starttls_handshake_timeout(void **state)
{
	static const struct step s[] = {
		BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250-fake\r\n250 STARTTLS\r\n" }, { S_EXPECT, "STARTTLS" },
		{ S_SEND, "220 go\r\n" }, { S_STALL, NULL },
	};
	struct t *t = *state;
	t->opts.tls = DELIVER_TLS_MAY;
	t->opts.tls_ctx = client_ctx();
	t->opts.command_timeout_ms = 200;
	expect_ready(t, s, 0, "timeout during TLS handshake");
}

/* ---- freeing ---- */

static void queue_free_at_mail(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<a@b.test>", mail_cb_free, t);
	smtp_client_command(t->cl, "RCPT TO:<c@d.test>", rec, t);
	smtp_client_command(t->cl, "RCPT TO:<e@d.test>", rec, t);
}

static const struct step free_script[] = {
	BANNER,
	{ S_EXPECT, "EHLO" },
	{ S_SEND, "250-fake\r\n250 PIPELINING\r\n" },
	{ S_EXPECT, "MAIL" },
	{ S_EXPECT, "RCPT" },
	{ S_EXPECT, "RCPT" },
	{ S_SEND, "250 a\r\n250 b\r\n250 c\r\n" }, /* all three replies in one read */
	{ S_STALL, NULL },
};

static void test_free_in_callback(void **state)
{
	struct t *t = *state;
	t->on_ready = queue_free_at_mail;
	t->srv.break_on_close = true;
	start(t, free_script);
	t->srv.break_on_close = true;
	run(t, 5000);
	assert_true(t->srv.saw_close);
	assert_null(t->cl);
	assert_int_equal(t->n, 2); /* ready and MAIL; nothing after the free */
	assert_reply(&t->got[1], 250, NULL, "a");
}

static void ready_free(void *arg, const struct smtp_reply *r)
{
	struct t *t = arg;
	rec(arg, r);
	smtp_client_free(t->cl, true);
	t->cl = NULL;
	event_base_loopbreak(t->base);
}

static void test_free_in_ready_failure(void **state)
{
	static const struct step s[] = { { S_SEND, "554 no\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	fake_start(&t->srv, t->base, s);
	t->cl = smtp_client_new(t->base, (struct sockaddr *)&t->srv.addr, sizeof t->srv.addr, &t->opts, ready_free, t);
	smtp_client_command(t->cl, "MAIL FROM:<>", rec, t); /* queued before ready: must never fire */
	run(t, 5000);
	assert_int_equal(t->n, 1);
	assert_reply(&t->got[0], 554, NULL, "no");
	/* let any pending deferred event run: nothing may fire */
	t->srv.break_on_close = true;
	if (!t->srv.saw_close)
		run(t, 5000);
	assert_int_equal(t->n, 1);
}

static void test_free_before_loop(void **state)
{
	static const struct step s[] = { BANNER, { S_STALL, NULL } };
	struct t *t = *state;
	start(t, s);
	smtp_client_command(t->cl, "MAIL FROM:<>", rec, t);
	smtp_client_free(t->cl, true);
	t->cl = NULL;
	t->srv.break_on_close = true;
	run(t, 5000);
	assert_true(t->srv.saw_close);
	assert_int_equal(t->n, 0);
}

static void queue_bad_command(struct t *t)
{
	smtp_client_command(t->cl, "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y>", rec, t);
	smtp_client_command(t->cl, "NOOP", rec, t);
}

static void test_invalid_command(void **state)
{
	static const struct step s[] = { BANNER, { S_EXPECT, "EHLO" }, { S_SEND, "250 fake\r\n" }, { S_STALL, NULL } };
	struct t *t = *state;
	t->on_ready = queue_bad_command;
	t->stop_at = 3;
	start(t, s);
	run(t, 5000);
	assert_reply(&t->got[1], 0, NULL, "invalid command line");
	assert_reply(&t->got[2], 0, NULL, "invalid command line");
	assert_int_equal(t->srv.pos, 3); /* nothing reached the server */
}

static int group_setup(void **state)
{
	cert_make();
	return 0;
}

static int group_teardown(void **state)
{
	X509_free(cert);
	EVP_PKEY_free(cert_key);
	return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as backstop's main() does: a closed peer is EPIPE */
	const struct CMUnitTest tests[] = {
		T(test_dialogue),
		T(test_pipelining),
		T(test_ehlo_refused_helo),
		T(test_banner_refused),
		T(test_banner_421_not_greeted),
		T(test_ehlo_421_was_greeted),
		T(test_longest_rcpt_line_sent),
		T(test_rcpt_line_over_the_allowance_refused),
		T(test_ehlo_last_line_without_keyword),
		T(test_malformed_code),
		T(test_malformed_mixed_codes),
		T(test_malformed_long_line),
		T(test_malformed_many_lines),
		T(test_close_at_banner),
		T(test_close_after_ehlo),
		T(test_stall_banner),
		T(test_connect_refused),
		T(test_stall_after_mail),
		T(test_421_mid_session),
		T(test_421_unsolicited),
		T(test_out_of_step_after_banner),
		T(test_out_of_step_after_ehlo),
		T(test_out_of_step_lockstep),
		T(test_out_of_step_pipelined),
		T(test_in_step_partial_group),
		T(test_close_mid_data),
		T(test_stall_after_dot),
		T(test_large_body),
		T(test_large_body_tls),
		T(test_starttls_may_verified),
		T(test_starttls_must),
		T(test_starttls_must_not_offered),
		T(test_starttls_may_not_offered),
		T(test_starttls_may_refused),
		T(test_starttls_must_refused),
		T(test_starttls_verify_fails),
		T(test_starttls_garbage),
		T(test_starttls_handshake_timeout),
		T(test_free_in_callback),
		T(test_free_in_ready_failure),
		T(test_free_before_loop),
		T(test_invalid_command),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
