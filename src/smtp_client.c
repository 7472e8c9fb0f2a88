/* smtp_client.c - asynchronous outbound SMTP client on a libevent loop: connect, greeting,
 * EHLO/HELO, STARTTLS, pipelined commands, streamed dot-stuffed DATA with backpressure.
 * Every failure becomes a code-0 reply delivered from the loop (a deferred event), never from
 * inside an smtp_client_* call. The client may be freed inside any of its callbacks: entry
 * points from libevent count their depth and the struct is released when the last one leaves.
 * On a plain connection, what was queued during a loop turn is written straight to the socket
 * once at its end (the flush event); the socket's write event is watched only while the kernel
 * holds writes back. Over TLS the filter drives the socket as libevent does. */
#include "smtp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "bev_write.h"
#include "smtp_client_reply.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "util.h"

#define CLIENT_EXT_MAX 32       /* EHLO keywords remembered */
#define CLIENT_EXT_LEN 32       /* longest keyword remembered, NUL included */
#define CLIENT_CMD_MAX SMTP_PARAM_LINE_MAX /* a MAIL or RCPT line with parameters, without CRLF */
#define CLIENT_DATA_CHUNK 65536 /* input octets stuffed per evbuffer reservation */

enum client_state {
	CS_CONNECTING, /* TCP connect in progress */
	CS_BANNER,     /* waiting for the greeting */
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_HANDSHAKE,  /* TLS handshake in progress */
	CS_EHLO_TLS,   /* EHLO again inside TLS */
	CS_READY,      /* caller's commands */
	CS_FAILED,     /* connection closed; everything answered with fail_cmd */
};

struct client_cmd {
	struct client_cmd *next;
	smtp_client_reply_cb cb;
	void *arg;
	char *line;        /* command with CRLF, owned, until written */
	size_t line_len;
	char verb[12];     /* first word, for error texts ("timeout after RCPT") */
	bool sent;
	bool is_data;      /* DATA: a 354 opens the message phase */
	bool is_data_end;  /* the final dot: data_timeout; ends the message phase */
};

struct smtp_client {
	struct event_base *base;
	struct smtp_client_opts opts; /* strings point to the copies below */
	char *helo_name, *server_name;
	enum client_state state;
	struct bufferevent *bev;      /* top: the socket or the TLS filter above it; NULL once closed */
	struct bufferevent *raw;      /* the socket bufferevent */
	struct evbuffer_cb_entry *raw_out_cb, *tls_out_cb;
	bool tls_active;
	struct event *timer, *defer;
	struct event *flush;          /* direct write of the socket's output, once per loop turn */
	bool flush_pending;
	struct smtp_client_reply parser;
	smtp_client_reply_cb ready_cb;
	void *ready_arg;
	bool ready_done;
	bool greeted;                 /* the banner was 2xx */
	struct smtp_reply ehlo_reply; /* the EHLO 250, given to ready_cb */
	struct smtp_reply fail_ready; /* after a failure: for ready_cb */
	struct smtp_reply fail_cmd;   /* after a failure: code 0, for every command */
	char ext[CLIENT_EXT_MAX][CLIENT_EXT_LEN];
	size_t n_ext;
	uint64_t max_size;
	bool pipelining;             /* PIPELINING advertised (read on every flush) */
	struct client_cmd *head, *tail, *unsent;
	bool in_data, data_bol;
	char data_last[2];
	uint64_t data_octets;
	size_t lowmark;
	void (*drain_cb)(void *arg);
	void *drain_arg;
	bool above_lowmark, drain_due;
	bool dot_out;                 /* the failure came after the final dot had left (see .h) */
	void (*trace)(void *arg, char dir, const char *line, size_t len);
	void *trace_arg;
	int depth;                    /* libevent entry points active on the stack */
	bool dead;                    /* smtp_client_free() called inside a callback */
};

static void client_read(struct bufferevent *bev, void *arg);
static void client_event(struct bufferevent *bev, short what, void *arg);
static void client_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* ---- small helpers ---- */

static void client_enter(struct smtp_client *c) { c->depth++; }

static void client_destroy(struct smtp_client *c)
{
	event_free(c->timer);
	event_free(c->defer);
	event_free(c->flush);
	free(c->helo_name);
	free(c->server_name);
	free(c);
}

static void client_leave(struct smtp_client *c)
{
	if (--c->depth == 0 && c->dead)
		client_destroy(c);
}

static bool client_gone(const struct smtp_client *c)
{
	return c->dead || c->state == CS_FAILED || c->bev == NULL;
}

static void client_arm(struct smtp_client *c, uint64_t ms)
{
	if (ms == 0) {
		event_del(c->timer);
		return;
	}
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

static void client_trace(struct smtp_client *c, char dir, const char *line, size_t len)
{
	if (c->trace)
		c->trace(c->trace_arg, dir, line, len);
}

static bool client_awaiting(const struct smtp_client *c)
{
	return c->head != NULL && c->head->sent;
}

static void reply_set(struct smtp_reply *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_set(struct smtp_reply *r, int code, const char *fmt, ...)
{
	va_list ap;
	memset(r, 0, sizeof *r);
	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
	for (char *p = r->text; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
}

/* What the client is doing, for error texts: "timeout " + this, "connection closed " + this. */
static const char *client_doing(const struct smtp_client *c, char *buf, size_t bufsz)
{
	switch (c->state) {
	case CS_CONNECTING: return "while connecting";
	case CS_BANNER: return "waiting for greeting";
	case CS_EHLO: case CS_EHLO_TLS: return "after EHLO";
	case CS_HELO: return "after HELO";
	case CS_STARTTLS: return "after STARTTLS";
	case CS_HANDSHAKE: return "during TLS handshake";
	case CS_FAILED: return "after failure";
	case CS_READY: break;
	}
	if (client_awaiting(c) && c->head->is_data_end)
		return "after end of data";
	if (client_awaiting(c)) {
		snprintf(buf, bufsz, "after %s", c->head->verb);
		return buf;
	}
	return c->in_data ? "sending message data" : "while idle";
}

/* ---- connection teardown and failure ---- */

static void client_close_conn(struct smtp_client *c)
{
	if (c->raw_out_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->raw), c->raw_out_cb);
	if (c->tls_out_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->tls_out_cb);
	c->raw_out_cb = c->tls_out_cb = NULL;
	if (c->bev) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(c->bev); /* the TLS filter frees the socket below it (CLOSE_ON_FREE) */
	} else if (c->raw) {
		bufferevent_free(c->raw);
	}
	c->bev = c->raw = NULL;
	event_del(c->timer);
	event_del(c->flush);
}

/* Close the connection; ready_cb (if still due) gets r, every command a code-0 reply, all from
 * the deferred event. */
static void client_fail(struct smtp_client *c, const struct smtp_reply *r)
{
	if (c->state == CS_FAILED)
		return;
	/* the final dot left once nothing of ours is queued any more: the kernel has it */
	c->dot_out = client_awaiting(c) && c->head->is_data_end && smtp_client_pending(c) == 0;
	c->state = CS_FAILED;
	c->in_data = false;
	c->fail_ready = *r;
	if (r->code == 0)
		c->fail_cmd = *r;
	else
		reply_set(&c->fail_cmd, 0, "session ended by server reply: %d %s", r->code, r->text);
	client_close_conn(c);
	event_active(c->defer, EV_TIMEOUT, 1);
}

static void client_fail_text(struct smtp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_fail_text(struct smtp_client *c, const char *fmt, ...)
{
	struct smtp_reply r;
	char text[SMTP_REPLY_TEXT_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	reply_set(&r, 0, "%s", text);
	client_fail(c, &r);
}

/* ---- writing ---- */

size_t smtp_client_pending(const struct smtp_client *c)
{
	if (c->bev == NULL)
		return 0;
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (c->tls_active)
		n += evbuffer_get_length(bufferevent_get_output(c->raw));
	return n;
}

static void client_check_drain(struct smtp_client *c)
{
	if (smtp_client_pending(c) > c->lowmark) {
		c->above_lowmark = true;
	} else if (c->above_lowmark) {
		c->above_lowmark = false;
		if (c->drain_cb) {
			c->drain_due = true;
			event_active(c->defer, EV_TIMEOUT, 1);
		}
	}
}

/* Connected without TLS: the socket's output is written by client_flush_out, not by its write
 * event (over TLS the filter drives the socket). */
static bool client_direct(const struct smtp_client *c)
{
	return c->raw != NULL && c->bev == c->raw && c->state != CS_CONNECTING;
}

/* Output was queued: on a plain connection, write it at the end of this loop turn. */
static void client_schedule_flush(struct smtp_client *c)
{
	if (client_direct(c) && !c->flush_pending) {
		c->flush_pending = true;
		event_active(c->flush, EV_TIMEOUT, 1);
	}
}

static void client_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct smtp_client *c = arg;
	if (info->n_added > 0)
		client_schedule_flush(c);
	if (info->n_deleted == 0 || c->bev == NULL)
		return;
	if (c->in_data && !client_awaiting(c) && smtp_client_pending(c) > 0)
		client_arm(c, c->opts.data_timeout_ms); /* progress: the stall timer starts again */
	client_check_drain(c);
}

/* A handshake command of ours (EHLO, HELO, STARTTLS). */
static void client_send(struct smtp_client *c, enum client_state next, const char *verb, const char *param)
{
	char line[CLIENT_CMD_MAX + 3];
	int n = snprintf(line, sizeof line, "%s%s%s", verb, param ? " " : "", param ? param : "");
	if (n < 0 || n > CLIENT_CMD_MAX) {
		client_fail_text(c, "%s command too long", verb);
		return;
	}
	client_trace(c, '>', line, (size_t)n);
	memcpy(line + n, "\r\n", 2);
	bufferevent_write(c->bev, line, (size_t)n + 2);
	c->state = next;
	smtp_client_reply_init(&c->parser);
	client_arm(c, c->opts.command_timeout_ms);
}

/* Write the caller's unsent commands: all at once with PIPELINING, else one when none awaits. */
static void client_flush(struct smtp_client *c)
{
	if (c->state != CS_READY || c->in_data || c->unsent == NULL)
		return;
	bool pipelining = c->pipelining;
	bool awaiting = client_awaiting(c);
	struct evbuffer *batch = evbuffer_new();
	while (c->unsent && (pipelining || !awaiting)) {
		struct client_cmd *cmd = c->unsent;
		client_trace(c, '>', cmd->line, cmd->line_len - 2);
		evbuffer_add(batch, cmd->line, cmd->line_len);
		free(cmd->line);
		cmd->line = NULL;
		cmd->sent = true;
		c->unsent = cmd->next;
		if (!awaiting)
			client_arm(c, c->opts.command_timeout_ms);
		awaiting = true;
	}
	bufferevent_write_buffer(c->bev, batch);
	evbuffer_free(batch);
	client_check_drain(c);
}

/* ---- EHLO keywords ---- */

static void client_ext_add(struct smtp_client *c, const char *t, size_t len)
{
	size_t kw = 0;
	while (kw < len && t[kw] != ' ')
		kw++;
	if (kw == 0 || kw >= CLIENT_EXT_LEN || c->n_ext >= CLIENT_EXT_MAX)
		return;
	char *e = c->ext[c->n_ext++];
	for (size_t i = 0; i < kw; i++)
		e[i] = (t[i] >= 'a' && t[i] <= 'z') ? (char)(t[i] - 'a' + 'A') : t[i];
	e[kw] = '\0';
	if (strcmp(e, "PIPELINING") == 0)
		c->pipelining = true;
	if (strcmp(e, "SIZE") == 0) {
		uint64_t v = 0;
		for (size_t i = kw + 1; i < len && t[i] >= '0' && t[i] <= '9' && v < UINT64_MAX / 10 - 10; i++)
			v = v * 10 + (uint64_t)(t[i] - '0');
		c->max_size = v;
	}
}

static void client_ext_clear(struct smtp_client *c)
{
	c->n_ext = 0;
	c->max_size = 0;
	c->pipelining = false;
}

bool smtp_client_has_ext(const struct smtp_client *c, const char *keyword)
{
	for (size_t i = 0; i < c->n_ext; i++)
		if (ascii_casecmp_n(c->ext[i], strlen(c->ext[i]), keyword, strlen(keyword)) == 0)
			return true;
	return false;
}

uint64_t smtp_client_max_size(const struct smtp_client *c)
{
	return c->max_size;
}

/* ---- TLS ---- */

static bool is_ip_literal(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static SSL *client_ssl_new(struct smtp_client *c)
{
	SSL *ssl = SSL_new(c->opts.tls_ctx);
	if (ssl == NULL)
		return NULL;
	char *name = c->server_name; /* the OpenSSL macro casts away const */
	if (name && !is_ip_literal(name))
		SSL_set_tlsext_host_name(ssl, name);
	if (c->opts.tls_verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		if (name && (is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
						 : SSL_set1_host(ssl, name)) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	}
	return ssl;
}

/* After the 220 to STARTTLS: put a TLS filter over the socket and start the handshake. */
static void client_tls_start(struct smtp_client *c)
{
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		client_fail_text(c, "TLS handshake failed: server sent data after its STARTTLS reply");
		return;
	}
	SSL *ssl = client_ssl_new(c);
	if (ssl == NULL) {
		ERR_clear_error();
		client_fail_text(c, "TLS handshake failed: cannot create the TLS session");
		return;
	}
	bufferevent_enable(c->raw, EV_WRITE); /* the filter drives the socket from here on */
	struct bufferevent *f = bufferevent_openssl_filter_new(c->base, c->raw, ssl, BUFFEREVENT_SSL_CONNECTING,
							       BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) { /* libevent freed ssl (CLOSE_ON_FREE); the socket bufferevent is still ours */
		client_fail_text(c, "TLS handshake failed: cannot create the TLS filter");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	c->bev = f;
	c->tls_active = true;
	c->tls_out_cb = evbuffer_add_cb(bufferevent_get_output(f), client_out_cb, c);
	bufferevent_setcb(f, client_read, NULL, client_event, c);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	c->state = CS_HANDSHAKE;
	client_arm(c, c->opts.command_timeout_ms);
}

static void client_tls_error(struct smtp_client *c, char *buf, size_t bufsz)
{
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (e != 0)
		ERR_error_string_n(e, buf, bufsz);
	else
		snprintf(buf, bufsz, "%s", errno ? strerror(errno) : "connection closed");
	if (vr != X509_V_OK) {
		size_t n = strlen(buf);
		snprintf(buf + n, bufsz - n, " (%s)", X509_verify_cert_error_string(vr));
	}
	while (bufferevent_get_openssl_error(c->bev) != 0)
		;
	ERR_clear_error();
}

void smtp_client_tls_info(const struct smtp_client *c, const char **version, const char **cipher)
{
	*version = *cipher = NULL;
	if (!c->tls_active || c->bev == NULL || c->state == CS_HANDSHAKE)
		return;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	if (ssl) {
		*version = SSL_get_version(ssl);
		*cipher = SSL_get_cipher_name(ssl);
	}
}

/* ---- the dialogue ---- */

static bool client_wants_tls(const struct smtp_client *c)
{
	return c->opts.tls != DELIVER_TLS_NONE && !c->tls_active &&
	       (c->opts.tls_ctx != NULL || c->opts.tls == DELIVER_TLS_MUST);
}

static void client_ready(struct smtp_client *c, const struct smtp_reply *r)
{
	c->state = CS_READY;
	c->ready_done = true;
	event_del(c->timer);
	c->ready_cb(c->ready_arg, r);
	if (!client_gone(c))
		client_flush(c);
}

/* The EHLO (or HELO) was accepted: STARTTLS as asked, or ready. */
static void client_greeted(struct smtp_client *c, const struct smtp_reply *r)
{
	if (!client_wants_tls(c)) {
		client_ready(c, r);
	} else if (!smtp_client_has_ext(c, "STARTTLS")) {
		if (c->opts.tls == DELIVER_TLS_MUST)
			client_fail_text(c, "STARTTLS required but not offered");
		else
			client_ready(c, r);
	} else if (c->opts.tls_ctx == NULL) {
		client_fail_text(c, "STARTTLS required but no TLS client context");
	} else {
		c->ehlo_reply = *r;
		client_send(c, CS_STARTTLS, "STARTTLS", NULL);
	}
}

static void client_handshake_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	int cls = r->code / 100;
	if (r->code == 421) {
		client_fail(c, r);
		return;
	}
	switch (c->state) {
	case CS_BANNER:
		c->greeted = cls == 2;
		if (cls == 2)
			client_send(c, CS_EHLO, "EHLO", c->helo_name);
		else
			client_fail(c, r);
		break;
	case CS_EHLO:
		if (cls == 2)
			client_greeted(c, r);
		else if (cls == 5)
			client_send(c, CS_HELO, "HELO", c->helo_name);
		else
			client_fail(c, r);
		break;
	case CS_HELO:
		if (cls == 2)
			client_greeted(c, r);
		else
			client_fail(c, r);
		break;
	case CS_STARTTLS:
		if (cls == 2)
			client_tls_start(c);
		else if (c->opts.tls == DELIVER_TLS_MAY)
			client_ready(c, &c->ehlo_reply);
		else
			client_fail(c, r);
		break;
	case CS_EHLO_TLS:
		if (cls == 2)
			client_ready(c, r);
		else
			client_fail(c, r);
		break;
	default:
		client_fail_text(c, "unexpected reply from server: %d %s", r->code, r->text);
		break;
	}
}

static void client_user_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	struct client_cmd *cmd = c->head;
	if (!client_awaiting(c)) {
		if (r->code == 421)
			client_fail(c, r);
		else
			client_fail_text(c, "unexpected reply from server: %d %s", r->code, r->text);
		return;
	}
	c->head = cmd->next;
	if (c->head == NULL)
		c->tail = NULL;
	if (cmd->is_data && r->code == 354) {
		c->in_data = true;
		c->data_bol = true;
		c->data_octets = 0;
	}
	if (cmd->is_data_end)
		c->in_data = false;
	if (r->code == 421)
		client_fail(c, r); /* the rest get code 0; this one gets the 421 */
	else if (client_awaiting(c))
		client_arm(c, c->head->is_data_end ? c->opts.data_timeout_ms : c->opts.command_timeout_ms);
	else
		event_del(c->timer);
	if (cmd->cb)
		cmd->cb(cmd->arg, r);
	free(cmd->line);
	free(cmd);
	if (!client_gone(c))
		client_flush(c);
}

static void client_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	if (c->state == CS_READY)
		client_user_reply(c, r);
	else
		client_handshake_reply(c, r);
}

/* One line of a reply: to the parser, and to the keyword list when it is part of an EHLO 250. */
static void client_line(struct smtp_client *c, const char *line, size_t len)
{
	client_trace(c, '<', line, len);
	int r = smtp_client_reply_line(&c->parser, line, len);
	if (r < 0) {
		client_fail(c, &c->parser.reply);
		return;
	}
	/* a keyword follows "NNN-" / "NNN "; a last line of just "250" has none (len - 4 would wrap) */
	if ((c->state == CS_EHLO || c->state == CS_EHLO_TLS) && c->parser.lines > 1 && len > 4 && line[0] == '2')
		client_ext_add(c, line + 4, len - 4);
	if (r == 1) {
		struct smtp_reply reply = c->parser.reply;
		smtp_client_reply_init(&c->parser);
		client_reply(c, &reply);
	}
}

/* Replies the server owes: one to the handshake step, or one per caller's command sent. */
static size_t client_owed(const struct smtp_client *c)
{
	size_t n = 0;
	if (c->state != CS_READY)
		return 1;
	for (const struct client_cmd *cmd = c->head; cmd != NULL && cmd->sent; cmd = cmd->next)
		n++;
	return n;
}

/* Offset in the input of what lies beyond the replies the server owes, or -1 if nothing does.
 * Everything in the input arrived before any command that its replies will make us send, so
 * octets past the owed replies answer nothing we asked: the server is out of step, and every
 * reply after them would be matched to the wrong command. A 421 there is let through: a server
 * may say it is closing at any time (RFC 5321 3.8), and that fails the connection anyway. */
static ev_ssize_t client_excess(struct smtp_client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), owed = client_owed(c), pos = 0;
	struct evbuffer_ptr p;
	char head[4];

	evbuffer_ptr_set(in, &p, 0, EVBUFFER_PTR_SET);
	while (owed > 0 && pos < len) {
		size_t eol_len = 0;
		struct evbuffer_ptr e = evbuffer_search_eol(in, &p, &eol_len, EVBUFFER_EOL_CRLF);
		if (e.pos < 0)
			return -1;
		size_t n = (size_t)e.pos - pos;
		evbuffer_copyout_from(in, &p, head, n < 4 ? n : 4);
		if (n < 4 || head[3] != '-')
			owed--; /* a last line (or a malformed one, which the parser refuses) */
		pos = (size_t)e.pos + eol_len;
		if (pos < len)
			evbuffer_ptr_set(in, &p, pos, EVBUFFER_PTR_SET);
	}
	if (owed > 0 || pos >= len)
		return -1;
	size_t n = len - pos < 3 ? len - pos : 3;
	evbuffer_copyout_from(in, &p, head, n);
	return memcmp(head, "421", n) == 0 ? -1 : (ev_ssize_t)pos;
}

/* The server sent what no command of ours asked for: fail, quoting its first octets. */
static void client_fail_excess(struct smtp_client *c, size_t at)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_ptr p;
	char raw[64], shown[64];
	size_t owed = client_owed(c), n = 0;

	if (c->state == CS_STARTTLS) { /* what the TLS layer would take as sent under TLS */
		client_fail_text(c, "TLS handshake failed: server sent data after its STARTTLS reply");
		return;
	}
	evbuffer_ptr_set(in, &p, at, EVBUFFER_PTR_SET);
	ev_ssize_t got = evbuffer_copyout_from(in, &p, raw, sizeof raw - 1);
	for (ev_ssize_t i = 0; i < got && raw[i] != '\r' && raw[i] != '\n'; i++)
		shown[n++] = (raw[i] >= 0x20 && raw[i] < 0x7f) ? raw[i] : '?';
	shown[n] = '\0';
	client_fail_text(c, "out of step: server sent \"%s\" beyond the %zu repl%s owed", shown, owed,
			 owed == 1 ? "y" : "ies");
}

static void client_read_lines(struct smtp_client *c)
{
	char line[SMTP_CLIENT_REPLY_LINE_MAX + 1];
	if (!client_gone(c) && c->state != CS_HANDSHAKE && c->state != CS_CONNECTING) {
		ev_ssize_t at = client_excess(c);
		if (at >= 0) {
			client_fail_excess(c, (size_t)at);
			return;
		}
	}
	while (!client_gone(c) && c->state != CS_HANDSHAKE && c->state != CS_CONNECTING) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		size_t eol_len = 0;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > SMTP_CLIENT_REPLY_LINE_MAX + 2)
				client_fail_text(c, "malformed reply (line too long)");
			return;
		}
		if ((size_t)p.pos > SMTP_CLIENT_REPLY_LINE_MAX) {
			client_fail_text(c, "malformed reply (line too long)");
			return;
		}
		size_t len = (size_t)p.pos;
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		client_line(c, line, len);
	}
}

static void client_read(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	client_enter(c);
	client_read_lines(c);
	client_leave(c);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	char buf[256], doing[64];
	int err = errno;
	client_enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == CS_CONNECTING) {
			c->state = CS_BANNER;
			bufferevent_disable(c->raw, EV_WRITE); /* it was watched for the connect */
			if (evbuffer_get_length(bufferevent_get_output(c->raw)) > 0)
				client_schedule_flush(c);
			/* the banner may have been read before the connect event was delivered */
			client_read_lines(c);
		} else if (c->state == CS_HANDSHAKE) {
			client_ext_clear(c);
			client_send(c, CS_EHLO_TLS, "EHLO", c->helo_name);
		}
	} else if (c->state == CS_HANDSHAKE) {
		client_tls_error(c, buf, sizeof buf);
		client_fail_text(c, "TLS handshake failed: %s", buf);
	} else if (c->state == CS_CONNECTING) {
		int so = 0;
		socklen_t solen = sizeof so;
		if (getsockopt(bufferevent_getfd(c->raw), SOL_SOCKET, SO_ERROR, &so, &solen) == 0 && so != 0)
			err = so;
		client_fail_text(c, "connect failed: %s", err ? strerror(err) : "connection refused");
	} else if (what & BEV_EVENT_EOF) {
		client_fail_text(c, "connection closed by server %s", client_doing(c, doing, sizeof doing));
	} else if (c->tls_active && bufferevent_get_openssl_error(c->bev) != 0) {
		client_tls_error(c, buf, sizeof buf);
		client_fail_text(c, "TLS error %s: %s", client_doing(c, doing, sizeof doing), buf);
	} else {
		client_fail_text(c, "connection error %s: %s", client_doing(c, doing, sizeof doing),
				 err ? strerror(err) : "unknown error");
	}
	client_leave(c);
}

/* The socket's output, written at the end of the loop turn that queued it: one write for all of
 * a turn's commands or message data, and no epoll_ctl while the kernel takes it all. */
static void client_flush_out(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	c->flush_pending = false;
	/* the output callbacks that the write runs (client_out_cb) never close the connection */
	if (client_direct(c) && bev_write_now(c->raw) != BEV_WRITE_DRAINED)
		bufferevent_enable(c->raw, EV_WRITE); /* the rest, or the error, is the bufferevent's */
}

/* The socket bufferevent wrote what the kernel held back: back to writing from the flush event. */
static void client_raw_written(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	if (client_direct(c) && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
}

static void client_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	char doing[64];
	client_enter(c);
	client_fail_text(c, "timeout %s", client_doing(c, doing, sizeof doing));
	client_leave(c);
}

/* Deferred work, always from the loop: failure replies, pipelined flush, the drain callback. */
static void client_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	client_enter(c);
	if (c->state == CS_FAILED) {
		if (!c->ready_done) {
			c->ready_done = true;
			c->ready_cb(c->ready_arg, &c->fail_ready);
		}
		while (!c->dead && c->head) {
			struct client_cmd *cmd = c->head;
			c->head = cmd->next;
			if (c->head == NULL)
				c->tail = NULL;
			if (cmd == c->unsent)
				c->unsent = cmd->next;
			if (cmd->cb)
				cmd->cb(cmd->arg, &c->fail_cmd);
			free(cmd->line);
			free(cmd);
		}
	} else {
		client_flush(c);
	}
	if (!c->dead && c->drain_due) {
		c->drain_due = false;
		if (c->drain_cb)
			c->drain_cb(c->drain_arg);
	}
	client_leave(c);
}

/* ---- public interface ---- */

static int client_connect(struct smtp_client *c, const struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->raw = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->raw == NULL) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	c->bev = c->raw;
	bufferevent_setcb(c->raw, client_read, client_raw_written, client_event, c);
	c->raw_out_cb = evbuffer_add_cb(bufferevent_get_output(c->raw), client_out_cb, c);
	if (bufferevent_socket_connect(c->raw, sa, (int)salen) < 0)
		return -1;
	bufferevent_enable(c->raw, EV_READ | EV_WRITE);
	return 0;
}

struct smtp_client *smtp_client_new(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
				    const struct smtp_client_opts *opts, smtp_client_reply_cb ready_cb, void *arg)
{
	struct smtp_client *c = xcalloc(1, sizeof *c);
	c->base = base;
	c->opts = *opts;
	c->helo_name = xstrdup(opts->helo_name ? opts->helo_name : "localhost");
	c->server_name = opts->tls_server_name ? xstrdup(opts->tls_server_name) : NULL;
	c->opts.helo_name = c->helo_name;
	c->opts.tls_server_name = c->server_name;
	c->ready_cb = ready_cb;
	c->ready_arg = arg;
	c->timer = evtimer_new(base, client_timeout, c);
	c->defer = event_new(base, -1, 0, client_deferred, c);
	c->flush = event_new(base, -1, 0, client_flush_out, c);
	c->state = CS_CONNECTING;
	smtp_client_reply_init(&c->parser);
	client_arm(c, opts->connect_timeout_ms);
	if (client_connect(c, sa, salen) < 0)
		client_fail_text(c, "connect failed: %s", strerror(errno));
	return c;
}

static void cmd_verb(struct client_cmd *cmd, const char *line, size_t len)
{
	size_t n = 0;
	while (n < len && n < sizeof cmd->verb - 1 && line[n] != ' ' && line[n] != ':') {
		char ch = line[n];
		cmd->verb[n++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : (ch > ' ' && ch < 0x7f ? ch : '?');
	}
	cmd->verb[n] = '\0';
}

static struct client_cmd *client_enqueue(struct smtp_client *c, smtp_client_reply_cb cb, void *arg)
{
	struct client_cmd *cmd = xcalloc(1, sizeof *cmd);
	cmd->cb = cb;
	cmd->arg = arg;
	if (c->tail)
		c->tail->next = cmd;
	else
		c->head = cmd;
	c->tail = cmd;
	return cmd;
}

void smtp_client_command(struct smtp_client *c, const char *line, smtp_client_reply_cb cb, void *arg)
{
	if (c->dead)
		return;
	size_t len = strlen(line);
	struct client_cmd *cmd = client_enqueue(c, cb, arg);
	cmd_verb(cmd, line, len);
	cmd->is_data = ascii_casecmp_n(line, len, "DATA", 4) == 0;
	if (c->state != CS_FAILED && (len > CLIENT_CMD_MAX || strpbrk(line, "\r\n") != NULL)) {
		client_fail_text(c, "invalid command line (too long or containing CR/LF)");
	} else if (c->state != CS_FAILED) {
		cmd->line = xmalloc(len + 2);
		memcpy(cmd->line, line, len);
		memcpy(cmd->line + len, "\r\n", 2);
		cmd->line_len = len + 2;
		if (c->unsent == NULL)
			c->unsent = cmd;
	}
	event_active(c->defer, EV_TIMEOUT, 1);
}

void smtp_client_data_write(struct smtp_client *c, const void *buf, size_t len)
{
	if (c->dead || c->state != CS_READY || len == 0)
		return; /* after a failure the data is dropped; data_end gets the code 0 */
	if (!c->in_data || client_awaiting(c)) {
		client_fail_text(c, "message data written outside DATA");
		return;
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const char *p = buf;
	for (size_t left = len; left > 0;) {
		size_t n = left < CLIENT_DATA_CHUNK ? left : CLIENT_DATA_CHUNK;
		struct evbuffer_iovec v;
		if (evbuffer_reserve_space(out, (ev_ssize_t)(2 * n), &v, 1) < 1) {
			client_fail_text(c, "cannot buffer message data");
			return;
		}
		v.iov_len = smtp_data_stuff(p, n, v.iov_base, &c->data_bol);
		evbuffer_commit_space(out, &v, 1);
		p += n;
		left -= n;
	}
	if (len >= 2)
		memcpy(c->data_last, (const char *)buf + len - 2, 2);
	else {
		c->data_last[0] = c->data_last[1];
		c->data_last[1] = *(const char *)buf;
	}
	c->data_octets += len;
	if (!client_gone(c) && !evtimer_pending(c->timer, NULL))
		client_arm(c, c->opts.data_timeout_ms);
	if (!client_gone(c))
		client_check_drain(c);
}

void smtp_client_data_end(struct smtp_client *c, smtp_client_reply_cb cb, void *arg)
{
	if (c->dead)
		return;
	if (c->state != CS_FAILED && (c->state != CS_READY || !c->in_data || client_awaiting(c)))
		client_fail_text(c, "end of data outside DATA");
	struct client_cmd *cmd = client_enqueue(c, cb, arg);
	cmd->is_data_end = true;
	snprintf(cmd->verb, sizeof cmd->verb, "DATA");
	if (c->state != CS_READY) {
		event_active(c->defer, EV_TIMEOUT, 1);
		return;
	}
	bool crlf = c->data_octets == 0 || memcmp(c->data_last, "\r\n", 2) == 0;
	const char *end = crlf ? ".\r\n" : "\r\n.\r\n";
	bufferevent_write(c->bev, end, strlen(end));
	client_trace(c, '>', ".", 1);
	cmd->sent = true;
	client_arm(c, c->opts.data_timeout_ms);
	client_check_drain(c);
}

void smtp_client_set_drain_cb(struct smtp_client *c, size_t lowmark, void (*drain_cb)(void *arg), void *arg)
{
	c->lowmark = lowmark;
	c->drain_cb = drain_cb;
	c->drain_arg = arg;
	c->above_lowmark = smtp_client_pending(c) > lowmark;
}

bool smtp_client_usable(const struct smtp_client *c)
{
	return !client_gone(c) && c->state == CS_READY && !c->in_data;
}

bool smtp_client_failed(const struct smtp_client *c)
{
	return client_gone(c);
}

bool smtp_client_input_pending(const struct smtp_client *c)
{
	char b;
	if (client_gone(c))
		return false;
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 || c->parser.lines > 0)
		return true;
	/* what the kernel holds and libevent has not read yet (plain connections only) */
	return !c->tls_active && recv(bufferevent_getfd(c->raw), &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

bool smtp_client_greeted(const struct smtp_client *c)
{
	return c->greeted;
}

bool smtp_client_dot_sent(const struct smtp_client *c)
{
	return c->state == CS_FAILED && c->dot_out;
}

void smtp_client_set_trace(struct smtp_client *c, void (*trace)(void *arg, char dir, const char *line, size_t len),
			   void *arg)
{
	c->trace = trace;
	c->trace_arg = arg;
}

/* Best effort, never blocking: QUIT goes out with one non-blocking write, or not at all. */
static void client_quit_now(struct smtp_client *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
		return;
	client_trace(c, '>', "QUIT", 4);
	if (c->tls_active) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl == NULL || SSL_write(ssl, "QUIT\r\n", 6) != 6)
			return;
		(void)SSL_shutdown(ssl);
		ERR_clear_error();
	} else {
		bufferevent_write(c->bev, "QUIT\r\n", 6);
	}
	(void)bev_write_now(c->raw);
}

void smtp_client_free(struct smtp_client *c, bool send_quit)
{
	if (c == NULL || c->dead)
		return;
	if (send_quit && smtp_client_usable(c))
		client_quit_now(c);
	client_close_conn(c);
	while (c->head) {
		struct client_cmd *cmd = c->head;
		c->head = cmd->next;
		free(cmd->line);
		free(cmd);
	}
	c->tail = c->unsent = NULL;
	event_del(c->defer);
	c->dead = true;
	if (c->depth == 0)
		client_destroy(c);
}
