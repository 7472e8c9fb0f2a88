/* fuzz_session.c - libFuzzer target: one whole client session (commands and message content,
 * written in chunks the input chooses) through the real session code, delivering to a fake
 * backend on 127.0.0.1 that answers from the input. All on one event loop, never waiting on a
 * clock: only a session still alive once both its peers are gone gets up to 3 s for its timers,
 * and if it is still there the target traps. Everything an input creates is freed before the
 * next.
 *
 * Oracle (smuggling): the backend never gets a sender that no client MAIL command named, nor
 * more MAIL transactions (runs of one sender, see check()), RCPT or DATA commands than the
 * client sent as commands. What is a command comes from a reference reading of the client's
 * bytes (ref_* below): lines at command position outside message content, RFC 5321 framing
 * with backstop's CRLF rules.
 *
 * Input: byte 0 flags (bit 0: bare_newline = normalise), byte 1 chunk seed (0: one write,
 * 1: one write per line, else chunks of 1-64 octets), then the client's bytes up to the first
 * FUZZ_SESSION_SEP, then the backend's script: one octet per reply it gives (see backend_reply).
 * Each chunk is written once the loop is idle, i.e. after backstop answered what came before.
 *
 * Both shapes of SMTP smuggling that issue 9 closed are in reach: bytes after a message that held
 * a bare CR or LF (item 1) and bytes pipelined behind DATA before its 354 (item 2). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "backend_health.h"
#include "backend_slots.h"
#include "connlimit.h"
#include "dns.h"
#include "log.h"
#include "rcpt.h"
#include "runtime.h"
#include "smtp_parse.h"
#include "smtp_session.h"
#include "util.h"

#define FUZZ_SESSION_SEP "@@BACKEND@@"
#define MAX_TURNS 100000        /* loop iterations before the loop must be idle */
#define MAIL_LINE_KEEP (SMTP_PATH_MAX + 64) /* of a backend MAIL line: the sender and more */
#define REF_LINE_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_session: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	__builtin_trap();
}

/* ---- recipients: an in-memory source "fuzzmap:" that answers at once ---- */

static const char *const fuzzmap_users[] = { "alice", "bob", "carol", "postmaster" };

static void *fuzzmap_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	static int state;
	(void)arg, (void)cfg, (void)why, (void)whysz;
	return &state;
}

static struct rcpt_query *fuzzmap_lookup(void *state, struct event_base *base, const struct rcpt_addr *addr,
					 rcpt_answer_cb done, void *arg)
{
	struct rcpt_answer ans = { .verdict = RCPT_INVALID, .source = "fuzzmap:" };
	(void)state, (void)base;
	for (size_t i = 0; i < ARRAY_SIZE(fuzzmap_users); i++)
		if (addr->at == strlen(fuzzmap_users[i]) && memcmp(addr->full, fuzzmap_users[i], addr->at) == 0)
			ans.verdict = RCPT_VALID;
	if (strncmp(addr->full, "down", 4) == 0)
		ans.verdict = RCPT_UNAVAILABLE;
	snprintf(ans.reason, sizeof ans.reason, "fuzzmap");
	done(arg, &ans);
	return NULL;
}

static void fuzzmap_cancel(struct rcpt_query *q) { (void)q; }
static void fuzzmap_close(void *state) { (void)state; }

static const struct rcpt_source_type fuzzmap_type = {
	.prefix = "fuzzmap", .open = fuzzmap_open, .lookup = fuzzmap_lookup, .cancel = fuzzmap_cancel,
	.close = fuzzmap_close,
};

/* ---- the reference reading of the client's bytes ---- */

enum ref_state { REF_CMD, REF_DATA_PENDING, REF_CONTENT, REF_DEAD };

struct ref {
	enum ref_state st;
	char line[REF_LINE_MAX];
	size_t linelen;
	bool line_long;
	/* content */
	unsigned char prev;
	bool bol;           /* at a line start that follows CRLF (or the start of content) */
	size_t clen;        /* octets of the current content line */
	char cfirst[2];
	bool bare;          /* this message holds a bare CR or LF */
	/* what the client commanded */
	unsigned mails, rcpts, datas;
	char (*senders)[SMTP_PATH_MAX + 16]; /* "MAIL FROM:<addr>" as the relay would write it */
	size_t nsenders, senders_cap;
};

static void ref_command(struct ref *r)
{
	struct smtp_command cmd;
	size_t len = r->linelen;

	if (r->line_long)
		return; /* longer than anything backstop executes */
	len--; /* the LF */
	if (len > 0 && r->line[len - 1] == '\r')
		len--;
	if (smtp_command_parse(r->line, len, &cmd) != 0)
		return;
	if (cmd.verb == SMTP_VERB_RCPT)
		r->rcpts++;
	if (cmd.verb == SMTP_VERB_DATA) {
		r->datas++;
		r->st = REF_DATA_PENDING;
	} else if (cmd.verb == SMTP_VERB_MAIL) {
		struct smtp_mail_cmd mail;
		struct smtp_parse_error err;
		char addr[SMTP_PATH_MAX + 8];
		r->mails++;
		if (smtp_mail_parse(cmd.arg, cmd.arg_len, &mail, &err) == 0) {
			if (r->nsenders == r->senders_cap) {
				r->senders_cap = r->senders_cap ? 2 * r->senders_cap : 8;
				r->senders = xrealloc(r->senders, r->senders_cap * sizeof *r->senders);
			}
			smtp_address_format(&mail.from, addr, sizeof addr);
			snprintf(r->senders[r->nsenders++], sizeof r->senders[0], "MAIL FROM:<%s>", addr);
		}
	}
}

static void ref_content_start(struct ref *r)
{
	r->st = REF_CONTENT;
	r->prev = 0;
	r->bol = true;
	r->clen = 0;
	r->bare = false;
}

/* One octet of message content. Only <CRLF>.<CRLF> (or "." CRLF first) ends it. */
static void ref_content(struct ref *r, unsigned char b)
{
	if (r->prev == '\r' && b != '\n')
		r->bare = true;
	if (b == '\n') {
		if (r->prev != '\r')
			r->bare = true;
		if (r->bol && r->clen == 2 && r->cfirst[0] == '.' && r->cfirst[1] == '\r') {
			/* issue 9 item 1: after a message with a bare CR or LF nothing is a command */
			r->st = r->bare ? REF_DEAD : REF_CMD;
			r->linelen = 0;
			r->line_long = false;
			return;
		}
		r->bol = r->prev == '\r';
		r->clen = 0;
	} else {
		if (r->clen < 2)
			r->cfirst[r->clen] = (char)b;
		r->clen++;
	}
	r->prev = b;
}

/* Read n octets of the stream the client is about to send. */
static void ref_feed(struct ref *r, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char b = p[i];
		switch (r->st) {
		case REF_DEAD:
			break;
		case REF_DATA_PENDING: /* bytes behind DATA before its reply: the client meant content */
			ref_content_start(r);
			/* fall through */
		case REF_CONTENT:
			ref_content(r, b);
			break;
		case REF_CMD:
			if (r->linelen < sizeof r->line)
				r->line[r->linelen++] = (char)b;
			else
				r->line_long = true;
			if (b == '\n') {
				ref_command(r);
				r->linelen = 0;
				r->line_long = false;
			}
			break;
		}
	}
}

/* The client MAIL command whose sender a backend MAIL line carries (the first of equal ones),
 * or -1. */
static long ref_sender_find(const struct ref *r, const char *line, size_t len)
{
	for (size_t i = 0; i < r->nsenders; i++) {
		size_t n = strlen(r->senders[i]);
		if (len >= n && memcmp(line, r->senders[i], n) == 0 && (len == n || line[n] == ' '))
			return (long)i;
	}
	return -1;
}

/* ---- the fake backend ---- */

struct backend_conn {
	struct backend_conn *next;
	evutil_socket_t fd;
	struct event *ev;
	struct evbuffer *in;
	bool in_data;
	bool in_tx;         /* a MAIL was accepted: another one is nested (503), as in a real server */
};

struct run; /* one input */

static struct {
	bool ready;
	struct event_base *base;
	struct evconnlistener *listeners[2];
	struct bs_runtime *rt[2]; /* bare_newline = reject, normalise */
	struct dns_resolver *dns;
	char *scratch;
	struct event *idle_ev;   /* lowest priority: runs only when nothing else is ready */
	struct run *run;
} G;

struct run {
	const uint8_t *script;
	size_t script_len, script_pos;
	struct backend_conn *conns;
	unsigned backend_rcpts, backend_datas;
	char (*mails)[MAIL_LINE_KEEP];   /* every MAIL line the backends got, in order */
	size_t *mail_lens, nmails, mails_cap;
	/* client side */
	evutil_socket_t cfd;
	struct event *cev;
	char reply_line[8];      /* first octets of the last complete reply line */
	char cur_line[8];
	size_t cur_len;
	bool idle;
};

static bool trace_on;

static void trace(const char *who, const void *p, size_t len)
{
	if (trace_on)
		fprintf(stderr, "fuzz_session %s: %.*s\n", who, (int)len, (const char *)p);
}

static int script_next(struct run *run)
{
	return run->script_pos < run->script_len ? run->script[run->script_pos++] : -1;
}

static void backend_send(struct backend_conn *c, const char *text)
{
	trace("backend says", text, strlen(text));
	/* a failure means backstop went away: its side notices */
	(void)send(c->fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void backend_close(struct run *run, struct backend_conn *c)
{
	for (struct backend_conn **pp = &run->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	event_free(c->ev);
	evbuffer_free(c->in);
	close(c->fd);
	free(c);
}

/* The reply to one line (or to the connection: line NULL). Script octet s: s % 8 in 0-2 ok,
 * 3: 451, 4: 550, 5: 421 and close, 6: close without a word, 7: ok and an unsolicited extra
 * line. EHLO's ok takes its extensions from s >> 3. No script left: ok, every extension.
 * Returns false when the connection was closed. */
static bool backend_reply(struct run *run, struct backend_conn *c, const char *line, size_t len)
{
	bool dot = c->in_data; /* the end of content: whatever the answer, commands follow */
	c->in_data = false;
	c->in_tx = c->in_tx && !dot;
	int s = script_next(run);
	int kind = s < 0 ? 0 : s % 8;
	char buf[512];

	if (kind == 6) {
		backend_close(run, c);
		return false;
	}
	if (kind == 5) {
		backend_send(c, "421 4.3.2 fake backend closing\r\n");
		backend_close(run, c);
		return false;
	}
	if (kind == 3) {
		backend_send(c, "451 4.3.0 fake backend: try later\r\n");
	} else if (kind == 4) {
		backend_send(c, "550 5.7.1 fake backend: no\r\n");
	} else if (line == NULL) {
		backend_send(c, "220 fake.backend ESMTP\r\n");
	} else if (dot) {
		backend_send(c, "250 2.0.0 queued as FAKE\r\n");
	} else if (len >= 5 && strncasecmp(line, "EHLO ", 5) == 0) {
		unsigned ext = s < 0 ? 0x1f : (unsigned)s >> 3;
		snprintf(buf, sizeof buf, "250-fake.backend%s%s%s%s%s\r\n250 HELP\r\n",
			 ext & 1 ? "\r\n250-PIPELINING" : "", ext & 2 ? "\r\n250-8BITMIME" : "",
			 ext & 4 ? "\r\n250-SMTPUTF8" : "", ext & 8 ? "\r\n250-DSN" : "",
			 ext & 16 ? "\r\n250-SIZE 1000000" : "");
		backend_send(c, buf);
		c->in_tx = false;
	} else if (len == 4 && strncasecmp(line, "RSET", 4) == 0) {
		backend_send(c, "250 2.0.0 reset\r\n");
		c->in_tx = false;
	} else if (len == 4 && strncasecmp(line, "DATA", 4) == 0) {
		c->in_data = true;
		backend_send(c, "354 go ahead\r\n");
	} else if (len == 4 && strncasecmp(line, "QUIT", 4) == 0) {
		backend_send(c, "221 2.0.0 bye\r\n");
		backend_close(run, c);
		return false;
	} else if (len >= 10 && strncasecmp(line, "MAIL FROM:", 10) == 0 && c->in_tx) {
		backend_send(c, "503 5.5.1 fake backend: nested MAIL\r\n");
	} else {
		c->in_tx = c->in_tx || (len >= 10 && strncasecmp(line, "MAIL FROM:", 10) == 0);
		backend_send(c, "250 2.1.0 ok\r\n");
	}
	if (kind == 7)
		backend_send(c, "250 2.0.0 unsolicited\r\n");
	return true;
}

static void backend_note_command(struct run *run, const char *line, size_t len)
{
	if (len >= 8 && strncasecmp(line, "RCPT TO:", 8) == 0)
		run->backend_rcpts++;
	if (len == 4 && strncasecmp(line, "DATA", 4) == 0)
		run->backend_datas++;
	if (len < 10 || strncasecmp(line, "MAIL FROM:", 10) != 0)
		return;
	if (run->nmails == run->mails_cap) {
		run->mails_cap = run->mails_cap ? 2 * run->mails_cap : 8;
		run->mails = xrealloc(run->mails, run->mails_cap * sizeof *run->mails);
		run->mail_lens = xrealloc(run->mail_lens, run->mails_cap * sizeof *run->mail_lens);
	}
	size_t n = len < MAIL_LINE_KEEP ? len : MAIL_LINE_KEEP;
	memcpy(run->mails[run->nmails], line, n);
	run->mail_lens[run->nmails++] = n;
}

/* The backend reads leniently, like a server that takes a bare LF as a line end (in commands
 * and at the end of content): anything framed otherwise by backstop shows up as commands. */
static void backend_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct backend_conn *c = arg;
	struct run *run = G.run;
	(void)what;

	int n = evbuffer_read(c->in, fd, 4096);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			backend_close(run, c);
		return;
	}
	for (;;) {
		struct evbuffer_ptr eol = evbuffer_search(c->in, "\n", 1, NULL);
		if (eol.pos < 0)
			return;
		size_t len = (size_t)eol.pos;
		char *line = (char *)evbuffer_pullup(c->in, (ev_ssize_t)len + 1);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		bool reply = !c->in_data || (len == 1 && line[0] == '.');
		if (!c->in_data || reply)
			trace("backend got", line, len);
		if (!c->in_data)
			backend_note_command(run, line, len);
		bool alive = !reply || backend_reply(run, c, line, len);
		if (!alive)
			return;
		evbuffer_drain(c->in, (size_t)eol.pos + 1);
	}
}

static void backend_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
			      void *arg)
{
	struct run *run = G.run;
	(void)l, (void)sa, (void)salen, (void)arg;
	if (run == NULL) {
		close(fd);
		return;
	}
	int one = 1;
	/* every reply leaves at once: Nagle would hold the second of two behind a delayed ACK */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct backend_conn *c = xcalloc(1, sizeof *c);
	c->fd = fd;
	c->in = evbuffer_new();
	c->ev = event_new(G.base, fd, EV_READ | EV_PERSIST, backend_read_cb, c);
	event_add(c->ev, NULL);
	c->next = run->conns;
	run->conns = c;
	backend_reply(run, c, NULL, 0);
}

/* ---- the client side ---- */

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *run = arg;
	char buf[4096];
	(void)what;

	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			event_del(run->cev); /* backstop closed: the stream is over */
		return;
	}
	trace("client got", buf, (size_t)n);
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			memcpy(run->reply_line, run->cur_line, sizeof run->reply_line);
			memset(run->cur_line, 0, sizeof run->cur_line);
			run->cur_len = 0;
		} else if (run->cur_len < sizeof run->cur_line - 1) {
			run->cur_line[run->cur_len++] = buf[i];
		}
	}
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	G.run->idle = true;
}

/* Run the loop until it has nothing left to do but wait for timers; false if it never settles. */
static bool settle(struct run *run)
{
	unsigned turns = 0;
	run->idle = false;
	event_active(G.idle_ev, EV_TIMEOUT, 1);
	while (!run->idle) {
		if (++turns > MAX_TURNS)
			return false;
		event_base_loop(G.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	return true;
}

static size_t chunk_len(unsigned *seed, const uint8_t *p, size_t left)
{
	if (*seed == 0)
		return left;
	if (*seed == 1) {
		const uint8_t *lf = memchr(p, '\n', left);
		return lf ? (size_t)(lf - p) + 1 : left;
	}
	*seed = *seed * 1103515245u + 12345u;
	size_t n = 1 + (*seed >> 16) % 64;
	return n < left ? n : left;
}

/* ---- set-up, once ---- */

static int listen_loopback(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (size_t i = 0; i < 2; i++) {
		sin.sin_port = 0;
		G.listeners[i] = evconnlistener_new_bind(G.base, backend_accept_cb, NULL,
							 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
							 (struct sockaddr *)&sin, sizeof sin);
		if (G.listeners[i] == NULL)
			return -1;
	}
	return 0;
}

static unsigned listener_port(size_t i)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	getsockname(evconnlistener_get_fd(G.listeners[i]), (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static struct bs_runtime *make_runtime(const char *bare)
{
	char text[2048], why[256];
	struct config_errors errs = { 0 };
	int n = snprintf(text, sizeof text,
			 "[gateway]\n"
			 "listen = 127.0.0.1:0\n"
			 "hostname = gw.fuzz.example\n"
			 "cache = memory:\n"
			 "bare_newline = %s\n"
			 "max_message_size = 2K\n"
			 "max_recipients = 4\n"
			 "max_errors = 8\n"
			 "error_delay = 0s\n" /* settle() runs no timers: replies must not wait on one */
			 "max_junk_commands = 8\n"
			 "backend_idle_timeout = 0s\n"
			 "[domain fuzz.example]\n"
			 "deliver = 127.0.0.1:%u\n"
			 "deliver_tls = none\n"
			 "verify = map:fuzzmap\n"
			 "[domain other.example]\n"
			 "deliver = 127.0.0.1:%u\n"
			 "deliver_tls = none\n"
			 "[domain third.example]\n"
			 "deliver = 127.0.0.1:%u\n"
			 "deliver_tls = none\n",
			 bare, listener_port(0), listener_port(0), listener_port(1));
	struct bs_config *cfg = config_load_buffer("fuzz_session.conf", text, (size_t)n, &errs);
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		config_errors_free(&errs);
		return NULL;
	}
	/* check-config knows only the sources in the tree: swap in the in-memory one */
	struct bs_domain *dom = &cfg->domains[0];
	if (strcmp(dom->name, "fuzz.example") != 0 || dom->verify.n != 1)
		fail("set-up", "domain order");
	free(dom->verify.items[0]);
	dom->verify.items[0] = xstrdup("fuzzmap:");
	struct runtime_opts o = { .open_sources = true };
	return runtime_new(cfg, &o, why, sizeof why);
}

static void setup(void)
{
	const char *why = NULL;

	signal(SIGPIPE, SIG_IGN);
	trace_on = getenv("FUZZ_SESSION_LOG") != NULL;
	log_open(false, trace_on ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	rcpt_type_register_extra(&fuzzmap_type);
	G.base = event_base_new();
	if (G.base == NULL || event_base_priority_init(G.base, 3) != 0 || listen_loopback() != 0)
		fail("set-up", "event loop or loopback listeners");
	G.idle_ev = event_new(G.base, -1, 0, idle_cb, NULL);
	event_priority_set(G.idle_ev, 2);
	G.rt[0] = make_runtime("reject");
	G.rt[1] = make_runtime("normalise");
	G.dns = dns_resolver_new_opts(G.base, 2000, 2, &why);
	G.scratch = xmalloc(SESSION_SCRATCH_SIZE);
	if (G.rt[0] == NULL || G.rt[1] == NULL || G.dns == NULL)
		fail("set-up", why ? why : "runtime");
	G.ready = true;
}

/* ---- one input ---- */

static void expire_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	*(bool *)arg = true;
}

static void end_sessions(struct session_list *list)
{
	for (struct smtp_session *s = list->head, *next; s != NULL; s = next) {
		next = smtp_session_next(s);
		smtp_session_abort(s);
	}
	settle(G.run);
	if (list->n > 0) { /* timers only (backpressure watchdog): let them run, bounded */
		struct timeval tv = { 3, 0 };
		bool expired = false;
		struct event *t = evtimer_new(G.base, expire_cb, &expired);
		evtimer_add(t, &tv);
		while (list->n > 0 && !expired)
			event_base_loop(G.base, EVLOOP_ONCE);
		event_free(t);
	}
	if (list->n > 0)
		fail("session still alive after its client and backends closed", NULL);
}

static void check(const struct run *run, const struct ref *ref)
{
	char detail[SMTP_PATH_MAX + 128];

	/* Every backend MAIL carries the sender of a client MAIL command. One client MAIL may reach
	 * the backend more than once, always in a row: again for the next RCPT when the backend
	 * refused it, again on a new connection when the first failed. So a run of equal senders
	 * is one client MAIL, and there are no more runs than client MAIL commands. */
	unsigned runs = 0;
	long prev = -1;
	for (size_t i = 0; i < run->nmails; i++) {
		long k = ref_sender_find(ref, run->mails[i], run->mail_lens[i]);
		if (k < 0) {
			snprintf(detail, sizeof detail, "backend got \"%.*s\", in no client MAIL command",
				 (int)(run->mail_lens[i] < SMTP_PATH_MAX ? run->mail_lens[i] : SMTP_PATH_MAX),
				 run->mails[i]);
			fail("smuggled sender", detail);
		}
		runs += k != prev;
		prev = k;
	}
	if (runs > ref->mails) {
		snprintf(detail, sizeof detail, "backend got %u MAIL transactions, client sent %u MAIL commands",
			 runs, ref->mails);
		fail("smuggled MAIL", detail);
	}
	/* one backend RCPT per client RCPT, one backend DATA per client DATA, at most */
	if (run->backend_rcpts > ref->rcpts || run->backend_datas > ref->datas) {
		snprintf(detail, sizeof detail, "backend got %u RCPT and %u DATA, client sent %u and %u",
			 run->backend_rcpts, run->backend_datas, ref->rcpts, ref->datas);
		fail("smuggled command", detail);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = FUZZ_SESSION_SEP;
	if (!G.ready)
		setup();
	if (size < 2)
		return 0;
	const uint8_t *stream = data + 2;
	const uint8_t *end = memmem(stream, size - 2, sep, sizeof sep - 1);
	size_t stream_len = end ? (size_t)(end - stream) : size - 2;
	unsigned seed = data[1];

	struct run *run = xcalloc(1, sizeof *run);
	struct ref *ref = xcalloc(1, sizeof *ref);
	if (end) {
		run->script = end + sizeof sep - 1;
		run->script_len = size - (size_t)(run->script - data);
	}
	G.run = run;

	/* what a worker gives its sessions; the shared parts fresh for each input */
	struct session_list list = { 0 };
	uint64_t seq = 0;
	unsigned rr_counter = 0;
	struct session_env env = {
		.base = G.base, .connlimit = connlimit_new(), .health = backend_health_new(),
		.slots = backend_slots_new(), .dns = G.dns, .rr_counter = &rr_counter, .scratch = G.scratch,
		.id_seq = &seq, .list = &list,
	};
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		fail("socketpair", strerror(errno));
	run->cfd = sv[1];
	run->cev = event_new(G.base, sv[1], EV_READ | EV_PERSIST, client_read_cb, run);
	event_add(run->cev, NULL);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
				    .sin_addr.s_addr = htonl(0xC0000201) }; /* 192.0.2.1 */
	smtp_session_accept(&env, runtime_ref(G.rt[data[0] & 1]), sv[0], (struct sockaddr *)&peer, sizeof peer);

	size_t pos = 0;
	if (!settle(run))
		fail("event loop never idle", NULL);
	while (pos < stream_len && list.n > 0) {
		if (ref->st == REF_DATA_PENDING) { /* the client waited for DATA's reply */
			if (strncmp(run->reply_line, "354", 3) == 0)
				ref_content_start(ref);
			else
				ref->st = REF_CMD;
		}
		size_t n = chunk_len(&seed, stream + pos, stream_len - pos);
		ref_feed(ref, stream + pos, n);
		trace("client sends", stream + pos, n);
		ssize_t put = send(run->cfd, stream + pos, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (put <= 0)
			break; /* backstop closed, or is not reading: the stream ends here */
		if ((size_t)put < n) /* the reference read further than what went out: stop there */
			stream_len = pos + (size_t)put;
		pos += (size_t)put;
		if (!settle(run))
			fail("event loop never idle", NULL);
	}
	/* the client goes away, then the backends; every session must end and free everything */
	event_free(run->cev);
	close(run->cfd);
	settle(run);
	while (run->conns)
		backend_close(run, run->conns);
	settle(run);
	if (list.n > 0)
		end_sessions(&list);
	settle(run); /* connections still in the listeners' backlog */
	while (run->conns)
		backend_close(run, run->conns);
	check(run, ref);

	G.run = NULL;
	connlimit_free(env.connlimit);
	backend_health_free(env.health);
	backend_slots_free(env.slots);
	free(ref->senders);
	free(run->mails);
	free(run->mail_lens);
	free(ref);
	free(run);
	return 0;
}
