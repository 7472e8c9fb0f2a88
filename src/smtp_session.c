/* smtp_session.c - life of one client connection: accept, banner (with pregreet detection),
 * reading command lines with bounded length, writing replies, timeouts, STARTTLS upgrade and
 * closing once the last reply is written. What each command does is in smtp_commands.c; the
 * message content in smtp_data_phase.c.
 *
 * Replies on a plain connection are written by the session itself, once per loop turn (so a
 * pipelined group still leaves in one write), straight to the socket; the bufferevent's write
 * event is enabled only while the kernel does not take everything. That spares two epoll_ctl
 * calls and a loop turn per reply, which is most of what a flood of short sessions costs. */
#include "smtp_session.h"
#include "smtp_session_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bev_write.h"
#include "connlimit.h"
#include "log.h"
#include "relay.h"
#include "util.h"

/* Input is read at most this far ahead of processing. */
#define SESSION_READ_HIGHWATER (64 * 1024)
/* Replies waiting for a client that does not read: past HIGH, input is not processed (nor read)
 * until the client has taken them down to LOW. Pipelining cannot make backstop buffer more. */
#define SESSION_OUTPUT_HIGH (64 * 1024)
#define SESSION_OUTPUT_LOW (16 * 1024)

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_flush_cb(evutil_socket_t fd, short what, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_free(struct smtp_session *s);
static void session_settle(struct smtp_session *s);
static void session_process(struct smtp_session *s);

static void session_peer_text(struct smtp_session *s)
{
	const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
	const void *addr = sa->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	if (inet_ntop(sa->sa_family, addr, s->client_ip, sizeof s->client_ip) == NULL)
		strcpy(s->client_ip, "unknown");
	/* an IPv4 client on a dual-stack socket: show it as IPv4 */
	if (strncmp(s->client_ip, "::ffff:", 7) == 0 && strchr(s->client_ip + 7, '.') != NULL)
		memmove(s->client_ip, s->client_ip + 7, strlen(s->client_ip + 7) + 1);
}

static void session_refuse_early(evutil_socket_t fd, const char *hostname,
				 const char *ip, enum connlimit_result why)
{
	char reply[512];
	const char *text = why == CONNLIMIT_TOTAL ? "Too many connections, try again later"
						  : "Too many connections from your address";
	int n = snprintf(reply, sizeof reply, "421 4.7.0 %s %s\r\n", hostname, text);
	/* a fresh socket's send buffer is empty: this cannot block, and if it fails, so be it */
	if (send(fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("client=%s send: %s", ip, strerror(errno));
	evutil_closesocket(fd);
	log_notice("client=%s code=421 status=4.7.0 reason=\"%s\"", ip, text);
}

static void session_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SMTP_STATE_CLOSING || s->state == SMTP_STATE_DATA || s->paused || s->rq_head) {
		if (s->state != SMTP_STATE_CLOSING && s->state != SMTP_STATE_DATA)
			session_arm_command_deadline(s); /* waiting on us, not on the client */
		return;
	}
	log_notice("session=%s client=%s command not complete within %llu ms after %s", s->id, s->client_ip,
		   (unsigned long long)s->cfg->command_timeout_ms, s->last_verb ? s->last_verb : "CONNECT");
	if (s->state == SMTP_STATE_TLS) { /* mid-handshake: nothing can be said in clear */
		if (s->env->stats != NULL)
			stats_add(&s->env->stats->tls_failed, 1);
		session_end_reason(s, STATS_END_TIMEOUT);
		session_free(s);
		return;
	}
	session_end_reason(s, STATS_END_TIMEOUT);
	session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
	session_close(s);
	session_settle(s);
}

void session_arm_command_deadline(struct smtp_session *s)
{
	struct timeval tv = { (time_t)(s->cfg->command_timeout_ms / 1000),
			      (suseconds_t)(s->cfg->command_timeout_ms % 1000) * 1000 };
	if (s->cmd_deadline == NULL)
		s->cmd_deadline = evtimer_new(s->env->base, session_deadline_cb, s);
	evtimer_add(s->cmd_deadline, &tv);
}

static void session_banner(struct smtp_session *s)
{
	s->state = SMTP_STATE_INIT;
	s->reply_stage = STATS_STAGE_CONNECT;
	session_arm_command_deadline(s);
	session_reply(s, 220, NULL, "%s ESMTP backstop", s->cfg->hostname);
}

static void session_greet_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(s->bev);

	(void)fd;
	(void)what;
	if (evbuffer_get_length(in) > 0 || s->pregreet) {
		s->pregreet = true;
		log_notice("session=%s client=%s pregreet: client talked before the greeting",
			   s->id, s->client_ip);
		if (s->cfg->pregreet == PREGREET_REJECT) {
			evbuffer_drain(in, evbuffer_get_length(in));
			session_end_reason(s, STATS_END_PROTOCOL);
			session_reply(s, 554, "5.5.1", "%s Protocol error: talking before the greeting",
				      s->cfg->hostname);
			session_close(s);
			return;
		}
	}
	session_banner(s);
	session_read_cb(s->bev, s);
}

static void session_make_id(struct smtp_session *s)
{
	const struct session_env *env = s->env;
	snprintf(s->id, sizeof s->id, "%08llX%02X%06llX", (unsigned long long)(env->id_time & 0xffffffffu),
		 env->id_owner & 0xff, (unsigned long long)(++*env->id_seq & 0xffffff));
}

static struct bufferevent *session_bev_new(struct smtp_session *s, SSL *ssl)
{
	struct bufferevent *bev;
	int opts = BEV_OPT_CLOSE_ON_FREE;
	if (ssl != NULL) {
		bev = bufferevent_openssl_socket_new(s->env->base, s->fd, ssl,
						     BUFFEREVENT_SSL_ACCEPTING, opts);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(s->env->base, s->fd, 0);
		if (bev != NULL) /* enabled by default; replies are written by session_flush_cb */
			bufferevent_disable(bev, EV_WRITE);
	}
	if (bev == NULL)
		return NULL;
	bufferevent_setcb(bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, SESSION_READ_HIGHWATER);
	bufferevent_setwatermark(bev, EV_WRITE, SESSION_OUTPUT_LOW, 0);
	return bev;
}

void smtp_session_accept(const struct session_env *env, struct bs_runtime *rt, evutil_socket_t fd,
			 const struct sockaddr *sa, socklen_t salen)
{
	const struct bs_config *cfg = rt->cfg;
	struct smtp_session *s = xcalloc(1, sizeof *s);

	s->env = env;
	s->rt = rt;
	s->cfg = cfg;
	s->fd = fd;
	memcpy(&s->peer, sa, salen < sizeof s->peer ? salen : sizeof s->peer);
	session_peer_text(s);
	enum connlimit_result lim = connlimit_acquire(env->connlimit, sa, cfg->max_connections,
						      cfg->max_connections_per_ip);
	if (lim != CONNLIMIT_OK) {
		if (env->stats != NULL)
			stats_add(&env->stats->refused, 1);
		session_refuse_early(fd, cfg->hostname, s->client_ip, lim);
		runtime_unref(rt);
		free(s);
		return;
	}
	/* non-blocking (evconnlistener) and TCP_NODELAY (inherited from the listening socket) */
	s->start_ms = now_ms();
	s->state = SMTP_STATE_GREETING;
	session_make_id(s);
	s->bev = session_bev_new(s, NULL);
	if (s->bev == NULL) {
		log_err("client=%s cannot create a bufferevent", s->client_ip);
		connlimit_release(env->connlimit, (const struct sockaddr *)&s->peer);
		evutil_closesocket(fd);
		runtime_unref(rt);
		free(s);
		return;
	}
	s->next = env->list->head;
	if (s->next)
		s->next->prev = s;
	env->list->head = s;
	env->list->n++;
	if (env->stats != NULL)
		stats_add(&env->stats->accepted, 1);
	s->flush = event_new(env->base, -1, 0, session_flush_cb, s);
	log_info("session=%s connect client=%s", s->id, s->client_ip);
	session_set_read_timeout(s, cfg->command_timeout_ms);
	bufferevent_enable(s->bev, EV_READ); /* EV_WRITE only while the kernel holds writes back */
	if (session_asks(s, ENGINE_STAGE_BANNER))
		session_decide_banner(s); /* then session_greet(), unless it refuses */
	else
		session_greet(s);
}

void session_greet(struct smtp_session *s)
{
	const struct bs_config *cfg = s->cfg;

	if (cfg->greet_delay_ms > 0) {
		struct timeval tv = { (time_t)(cfg->greet_delay_ms / 1000),
				      (suseconds_t)(cfg->greet_delay_ms % 1000) * 1000 };
		s->greet_timer = evtimer_new(s->env->base, session_greet_timer_cb, s);
		evtimer_add(s->greet_timer, &tv);
	} else {
		bool early = s->pregreet; /* talked while the banner stage was decided */
		s->pregreet = false;      /* without greet_delay that is not judged */
		session_banner(s);
		if (early)
			session_process(s);
	}
	session_decide_connect(s); /* the banner is not held: a refusal applies at RCPT */
}

void session_set_read_timeout(struct smtp_session *s, uint64_t ms)
{
	struct timeval rd = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	struct timeval wr = { (time_t)(s->cfg->command_timeout_ms / 1000),
			      (suseconds_t)(s->cfg->command_timeout_ms % 1000) * 1000 };
	bufferevent_set_timeouts(s->bev, &rd, &wr);
}

static bool session_plain(const struct smtp_session *s)
{
	return bufferevent_openssl_get_ssl(s->bev) == NULL;
}

void session_write(struct smtp_session *s, const char *text, size_t len)
{
	bufferevent_write(s->bev, text, len);
	if (!s->flush_pending && session_plain(s)) {
		s->flush_pending = true;
		event_active(s->flush, EV_TIMEOUT, 1); /* after the callback that is running now */
	}
}

/* The replies of this loop turn, in one write. What the kernel does not take (the client is not
 * reading), or an error, is left to the bufferevent's write event. */
static void session_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	s->flush_pending = false;
	if (!session_plain(s))
		return;
	if (bev_write_now(s->bev) == BEV_WRITE_DRAINED)
		session_write_cb(s->bev, s); /* drained: what waited on that may go on (or end) */
	else
		bufferevent_enable(s->bev, EV_WRITE); /* the rest, or the error, is the bufferevent's */
}

size_t session_input_pending(struct smtp_session *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_input(s->bev));
	int kernel = 0;
	if (session_plain(s) && !s->eof && ioctl(s->fd, FIONREAD, &kernel) == 0 && kernel > 0)
		n += (size_t)kernel;
	return n;
}

/* One reply line: written now (RCPT queue), or behind the RCPT replies still owed. */
static void session_reply_emit(struct smtp_session *s, bool now, int code, const char *enhanced,
			       const char *text)
{
	char buf[1024];
	if (!now && session_rcpt_defer_reply(s, code, enhanced, text))
		return;
	int n = enhanced ? snprintf(buf, sizeof buf, "%03d %s %s", code, enhanced, text)
			 : snprintf(buf, sizeof buf, "%03d %s", code, text);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof buf - 2 ? (size_t)n : sizeof buf - 3;
	buf[len++] = '\r';
	buf[len++] = '\n';
	session_write(s, buf, len);
	if (session_code_is_error(code, enhanced))
		s->error_replies++;
}

void session_reply(struct smtp_session *s, int code, const char *enhanced, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	if (vsnprintf(text, sizeof text, fmt, ap) < 0)
		text[0] = '\0';
	va_end(ap);
	session_reply_emit(s, false, code, enhanced, text);
	stats_reply(s->env->stats, s->reply_stage, code);
	if (code >= 400)
		s->errors++;
}

void session_reply_text(struct smtp_session *s, int code, const char *enhanced, const char *text)
{
	session_reply_emit(s, true, code, enhanced, text);
}

void session_log_decision(struct smtp_session *s, const char *what, const struct smtp_address *addr,
			  int code, const char *enhanced, const char *reason, const char *extra)
{
	char from[SMTP_PATH_MAX * 4 + 8] = "", rcpt[SMTP_PATH_MAX * 4 + 16] = "", helo[sizeof s->helo * 4];
	char raw[SMTP_PATH_MAX + 8], why[512], codetext[16] = "-";
	bool is_mail = strcmp(what, "mail") == 0;
	const struct smtp_address *sender = is_mail ? addr : (s->tx ? &s->tx->from : NULL);

	if (sender != NULL) {
		size_t n = smtp_address_format(sender, raw, sizeof raw);
		log_sanitize(from, sizeof from, raw, n);
	}
	if (addr != NULL && !is_mail) {
		size_t n = smtp_address_format(addr, raw, sizeof raw);
		strcpy(rcpt, " rcpt=<");
		log_sanitize(rcpt + 7, sizeof rcpt - 9, raw, n);
		strcat(rcpt, ">");
	}
	log_sanitize(helo, sizeof helo, s->helo, strlen(s->helo));
	log_sanitize(why, sizeof why, reason, strlen(reason));
	if (code > 0) /* 0: the stage's decision is not itself a reply (yet) */
		snprintf(codetext, sizeof codetext, "%d", code);
	log_msg(code >= 400 ? LOG_LVL_NOTICE : LOG_LVL_INFO,
		"session=%s %s client=%s helo=%s from=<%s>%s code=%s status=%s reason=\"%s\"%s%s",
		s->id, what, s->client_ip, helo[0] ? helo : "-", from, rcpt, codetext,
		enhanced && enhanced[0] ? enhanced : "-", why, extra ? " " : "", extra ? extra : "");
}

void session_end_reason(struct smtp_session *s, enum stats_end why)
{
	if (!s->end_set) {
		s->end_set = true;
		s->end_reason = why;
		s->reply_stage = STATS_STAGE_OTHER; /* the 421 (or 221, 554) that ends it answers no command */
	}
}

void session_close(struct smtp_session *s)
{
	s->state = SMTP_STATE_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (s->greet_timer)
		evtimer_del(s->greet_timer);
	if (s->cmd_deadline)
		evtimer_del(s->cmd_deadline);
}

void session_request(const struct smtp_session *s, enum engine_stage stage, struct engine_request *req)
{
	engine_request_init_ip(req, ENGINE_FRONTEND_SMTP, s->id, (const struct sockaddr *)&s->peer, sizeof s->peer,
			       s->client_ip);
	req->stage = stage;
	req->helo = s->helo;
	memcpy(req->tls_version, s->tls_version, sizeof req->tls_version);
	memcpy(req->tls_cipher, s->tls_cipher, sizeof req->tls_cipher);
	if (s->tx != NULL) {
		engine_request_set_sender(req, &s->tx->from);
		req->size_known = s->tx->params.has_size;
		req->size = s->tx->params.size;
		req->nrcpts = (unsigned)s->tx->nrcpts;
		req->facts = s->tx->facts;
	}
	req->errors = s->errors;
}

void session_tx_reset(struct smtp_session *s)
{
	if (s->tx == NULL)
		return;
	if (s->relay)
		relay_tx_reset(s->relay);
	free(s->tx->rcpts);
	free(s->tx->headers);
	free(s->tx->facts);
	free(s->tx->hf);
	free(s->tx);
	s->tx = NULL;
}

void session_tx_add_headers(struct smtp_session *s, const char *headers)
{
	struct smtp_tx *tx = s->tx;
	size_t n = headers ? strlen(headers) : 0;

	if (tx == NULL || n == 0 || (tx->headers != NULL && strstr(tx->headers, headers) != NULL))
		return;
	bool crlf = n >= 2 && headers[n - 2] == '\r' && headers[n - 1] == '\n';
	if (tx->headers_len + n + 2 > SESSION_TX_HEADERS_MAX) {
		log_notice("session=%s client=%s header fields from checks over %d octets: %zu octets dropped",
			   s->id, s->client_ip, SESSION_TX_HEADERS_MAX, n);
		return;
	}
	tx->headers = xrealloc(tx->headers, tx->headers_len + n + 3);
	memcpy(tx->headers + tx->headers_len, headers, n);
	tx->headers_len += n;
	if (!crlf) {
		memcpy(tx->headers + tx->headers_len, "\r\n", 2);
		tx->headers_len += 2;
	}
	tx->headers[tx->headers_len] = '\0';
}

/* Replies still owed to a client that has half-closed: RCPTs being decided, a command waiting
 * on an asynchronous step, or complete commands held back by a client not reading. */
static bool session_owes_replies(struct smtp_session *s)
{
	return (s->rq_head != NULL && !s->rq_abandoned) || s->paused ||
	       (s->output_blocked && evbuffer_get_length(bufferevent_get_input(s->bev)) > 0);
}

/* Free the session if it is closing and everything it had to say has been written. A client
 * that half-closed is let go once nothing more is owed to it. */
static void session_settle(struct smtp_session *s)
{
	if (s->eof && s->state != SMTP_STATE_CLOSING && !session_owes_replies(s)) {
		log_info("session=%s client=%s lost connection after %s", s->id, s->client_ip,
			 s->last_verb ? s->last_verb : "CONNECT");
		session_close(s);
	}
	if (s->state == SMTP_STATE_CLOSING && (s->rq_head == NULL || s->rq_abandoned) &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_free(s);
}

/* Reading is switched on only while the session wants more input from a client still sending. */
static void session_read_on(struct smtp_session *s)
{
	if (!s->eof)
		bufferevent_enable(s->bev, EV_READ);
}

static bool session_line_is_rcpt(const char *line, size_t len)
{
	struct smtp_command cmd;
	return smtp_command_parse(line, len, &cmd) == 0 && cmd.verb == SMTP_VERB_RCPT;
}

/* One command line from the input buffer. Returns false when a full line is not there yet. */
static bool session_command_input(struct smtp_session *s, struct evbuffer *in)
{
	/* MAIL and RCPT lines may be longer by what their parameters add (smtp_parse.h) */
	size_t max = s->cfg->max_command_line + SMTP_PARAM_ALLOWANCE;
	if (session_rcpt_queued(s) >= SESSION_RCPT_QUEUE_MAX) {
		session_pause(s, SESSION_WAIT_RCPT); /* bounded: read on once some queued RCPTs are answered */
		return false;
	}
	struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);

	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > max) {
			/* no end in sight: drop what we have and keep dropping until the LF */
			evbuffer_drain(in, evbuffer_get_length(in));
			s->discarding_line = true;
		}
		return false;
	}
	size_t len = (size_t)eol.pos;
	if (s->discarding_line || len + 1 > max) {
		evbuffer_drain(in, len + 1);
		s->discarding_line = false;
		session_reply(s, 500, "5.5.2", "Line too long");
		return true;
	}
	char *line = (char *)evbuffer_pullup(in, (ev_ssize_t)len + 1);
	size_t linelen = len;
	if (linelen > 0 && line[linelen - 1] == '\r')
		linelen--;
	if (session_rcpt_queued(s) > 0 && !session_line_is_rcpt(line, linelen)) {
		session_pause(s, SESSION_WAIT_RCPT); /* in order: wait until the queued RCPTs are decided */
		return false;
	}
	if (s->connect_q != NULL && session_line_is_rcpt(line, linelen)) {
		session_pause(s, SESSION_WAIT_CONNECT); /* what CONNECT decides applies to it */
		return false;
	}
	s->input_behind = evbuffer_get_length(in) - (len + 1);
	session_command(s, line, linelen);
	evbuffer_drain(in, len + 1);
	if (s->state != SMTP_STATE_DATA && s->state != SMTP_STATE_CLOSING)
		session_arm_command_deadline(s);
	return true;
}

/* Process as much buffered input as the state allows. Replies to pipelined commands collect in
 * the output buffer and leave together. */
static void session_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->paused && evbuffer_get_length(in) > 0) {
		if (s->state == SMTP_STATE_CLOSING || s->state == SMTP_STATE_TLS ||
		    s->state == SMTP_STATE_GREETING)
			break;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SESSION_OUTPUT_HIGH) {
			s->output_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
		bool progressed = s->state == SMTP_STATE_DATA ? session_data_input(s, in)
							       : session_command_input(s, in);
		if (s->state != SMTP_STATE_CLOSING && s->state != SMTP_STATE_DATA &&
		    s->errors >= s->cfg->max_errors) {
			session_end_reason(s, STATS_END_ERRORS);
			session_reply(s, 421, "4.7.0", "%s Too many errors, closing connection", s->cfg->hostname);
			log_notice("session=%s client=%s too many errors (%u)", s->id, s->client_ip, s->errors);
			session_close(s);
		} else if (s->state != SMTP_STATE_CLOSING && s->junk > s->cfg->max_junk_commands) {
			session_end_reason(s, STATS_END_JUNK);
			session_reply(s, 421, "4.7.0", "%s Too many commands without mail, closing connection",
				      s->cfg->hostname);
			log_notice("session=%s client=%s junk command limit reached", s->id, s->client_ip);
			session_close(s);
		}
		if (!progressed)
			break;
	}
}

void session_pause(struct smtp_session *s, enum session_wait why)
{
	s->paused = why;
	bufferevent_disable(s->bev, EV_READ);
}

void session_resume(struct smtp_session *s, enum session_wait why)
{
	if (s->paused != why || why == SESSION_WAIT_NONE)
		return; /* not paused, or paused for another step: that step resumes */
	s->paused = SESSION_WAIT_NONE;
	if (s->state == SMTP_STATE_CLOSING) {
		session_settle(s);
		return;
	}
	/* Buffered input first: a pipelined QUIT behind queued RCPTs pauses again at once, and
	 * reading is switched on only if the session still wants more (no epoll_ctl per answer). */
	session_process(s);
	if (!s->paused && !s->output_blocked && s->state != SMTP_STATE_CLOSING && s->state != SMTP_STATE_TLS)
		session_read_on(s);
	session_settle(s);
}

struct relay *session_relay(struct smtp_session *s)
{
	if (s->relay == NULL) {
		const struct session_env *se = s->env;
		struct relay_env env = {
			.base = se->base, .cfg = s->cfg, .tls_client = s->rt->tls_client,
			.domain_tls = s->rt->domain_tls, .health = se->health, .dns = se->dns,
			.pool = se->pool, .slots = se->slots, .rr_counter = se->rr_counter,
		};
		s->relay = relay_new(&env);
	}
	return s->relay;
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	(void)bev;
	if (s->state == SMTP_STATE_GREETING) {
		s->pregreet = true; /* noted; judged when the greet timer fires */
		return;
	}
	session_process(s);
	session_settle(s);
}

static void session_tls_connected(struct smtp_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	snprintf(s->tls_version, sizeof s->tls_version, "%s", SSL_get_version(ssl));
	snprintf(s->tls_cipher, sizeof s->tls_cipher, "%s", SSL_get_cipher_name(ssl));
	s->tls = true;
	if (s->env->stats != NULL)
		stats_add(&s->env->stats->tls_ok, 1);
	/* RFC 3207 4.2: forget everything learnt before the handshake */
	s->state = SMTP_STATE_INIT;
	s->esmtp = false;
	s->helo[0] = '\0';
	free(s->helo_headers);
	s->helo_headers = NULL;
	session_tx_reset(s);
	log_info("session=%s client=%s TLS established: %s %s", s->id, s->client_ip,
		 s->tls_version, s->tls_cipher);
}

/* The 220 to STARTTLS has been written: replace the plain bufferevent by a TLS one on the same
 * socket. Whatever the plain one had read (commands pipelined after STARTTLS) is dropped with
 * it: they must never be executed (CVE-2011-0411 and its kin). */
static void session_tls_switch(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t junk = evbuffer_get_length(in);
	if (junk > 0)
		log_notice("session=%s client=%s discarded %zu octets pipelined after STARTTLS",
			   s->id, s->client_ip, junk);
	SSL *ssl = SSL_new(s->rt->tls_server);
	bufferevent_free(s->bev); /* plain bev does not own the fd */
	s->bev = ssl ? session_bev_new(s, ssl) : NULL;
	if (s->bev == NULL) { /* on failure libevent has already released ssl */
		log_err("session=%s client=%s cannot start TLS", s->id, s->client_ip);
		session_free(s);
		return;
	}
	session_set_read_timeout(s, s->cfg->command_timeout_ms);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void session_start_tls(struct smtp_session *s)
{
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	s->state = SMTP_STATE_TLS;
	bufferevent_disable(s->bev, EV_READ); /* the ClientHello stays in the kernel for SSL */
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	(void)bev;
	size_t pending = evbuffer_get_length(bufferevent_get_output(s->bev));
	if (pending == 0 && session_plain(s))
		bufferevent_disable(s->bev, EV_WRITE); /* back to writing from session_flush_cb */
	if (s->state == SMTP_STATE_TLS && !s->tls && session_plain(s)) {
		if (pending == 0)
			session_tls_switch(s);
		return;
	}
	if (s->output_blocked && pending <= SESSION_OUTPUT_LOW && s->state != SMTP_STATE_CLOSING) {
		s->output_blocked = false;
		if (!s->paused) {
			session_read_on(s);
			session_process(s);
		}
	}
	session_settle(s);
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		session_tls_connected(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && s->state != SMTP_STATE_CLOSING) {
		log_notice("session=%s client=%s timeout after %s", s->id, s->client_ip,
			   s->last_verb ? s->last_verb : "CONNECT");
		session_end_reason(s, STATS_END_TIMEOUT);
		session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
		session_close(s);
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		struct timeval wr = { 10, 0 };
		bufferevent_set_timeouts(s->bev, NULL, &wr);
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && s->state != SMTP_STATE_TLS &&
	    s->state != SMTP_STATE_GREETING && session_owes_replies(s)) {
		/* half-closed: the commands it sent still get their replies, then the session ends */
		s->eof = true;
		bufferevent_disable(s->bev, EV_READ);
		log_info("session=%s client=%s half-closed after %s; finishing the replies owed", s->id,
			 s->client_ip, s->last_verb ? s->last_verb : "CONNECT");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long e = bufferevent_get_openssl_error(s->bev);
		if (e != 0) {
			char buf[256];
			ERR_error_string_n(e, buf, sizeof buf);
			log_notice("session=%s client=%s TLS error: %s", s->id, s->client_ip, buf);
			session_end_reason(s, STATS_END_TLS);
		}
	}
	if (s->state == SMTP_STATE_TLS && !s->tls && !session_plain(s)) {
		session_end_reason(s, STATS_END_TLS); /* the handshake did not complete */
		if (s->env->stats != NULL)
			stats_add(&s->env->stats->tls_failed, 1);
	}
	if (s->state != SMTP_STATE_CLOSING)
		log_info("session=%s client=%s lost connection after %s", s->id, s->client_ip,
			 s->last_verb ? s->last_verb : "CONNECT");
	session_free(s);
}

static void session_free(struct smtp_session *s)
{
	const struct session_env *env = s->env;

	/* released before the log line, so that a client that saw it may connect again at once */
	connlimit_release(env->connlimit, (const struct sockaddr *)&s->peer);
	session_end_reason(s, s->state == SMTP_STATE_CLOSING ? STATS_END_OTHER : STATS_END_LOST);
	stats_session_end(env->stats, s->end_reason);
	log_info("session=%s disconnect client=%s helo=%s mail=%u rcpt=%u/%u data=%u/%u duration_ms=%llu",
		 s->id, s->client_ip, s->helo[0] ? s->helo : "-", s->n_mail, s->n_rcpt_ok, s->n_rcpt,
		 s->n_data_ok, s->n_data, (unsigned long long)(now_ms() - s->start_ms));
	if (s->greet_timer)
		event_free(s->greet_timer);
	if (s->cmd_deadline)
		event_free(s->cmd_deadline);
	if (s->watchdog)
		event_free(s->watchdog);
	if (s->flush)
		event_free(s->flush);
	session_decide_cancel(s);
	session_rcpt_cancel(s);
	session_tx_reset(s);
	relay_free(s->relay);
	free(s->connect_refusal);
	free(s->connect_headers);
	free(s->helo_headers);
	if (s->bev) {
		bool bev_owns_fd = bufferevent_openssl_get_ssl(s->bev) != NULL;
		bufferevent_free(s->bev);
		if (!bev_owns_fd)
			evutil_closesocket(s->fd);
	} else if (s->fd >= 0) {
		evutil_closesocket(s->fd);
	}
	if (s->prev)
		s->prev->next = s->next;
	else
		env->list->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	env->list->n--;
	runtime_unref(s->rt);
	free(s);
	if (env->ended)
		env->ended(env->ended_arg);
}

uint64_t smtp_session_abort(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSING)
		return 0;
	if (s->paused == SESSION_WAIT_FINAL) { /* a 421 now could follow the backend's 250 */
		s->close_after_final = true;
		log_notice("session=%s client=%s shutdown deadline: the backend has the message; "
			   "waiting for its reply (at most %llu ms) before closing", s->id, s->client_ip,
			   (unsigned long long)s->cfg->backend_data_timeout_ms);
		session_end_reason(s, STATS_END_SHUTDOWN);
		return s->cfg->backend_data_timeout_ms;
	}
	session_end_reason(s, STATS_END_SHUTDOWN);
	session_decide_cancel(s); /* the 421 answers the command that waited for its decision */
	s->rq_abandoned = true; /* the 421 answers a RCPT still being decided, and ends the session */
	session_reply(s, 421, "4.3.2", "%s Service shutting down, closing connection", s->cfg->hostname);
	session_close(s);
	session_settle(s);
	return 0;
}

struct smtp_session *smtp_session_next(struct smtp_session *s)
{
	return s->next;
}
