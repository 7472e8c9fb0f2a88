/* smtp_data_phase.c - the message content of a transaction. DATA is first put to the backend;
 * on its 354 the client gets ours, then the client's bytes are decoded with the DATA framing
 * decoder (only <CRLF>.<CRLF> ends them), checked against size and line limits and streamed to
 * the backend behind one Received: header, with backpressure. The client's answer to the final
 * dot is the backend's answer to it; if backstop refuses the content itself, the backend
 * connection is dropped without a final dot so the backend discards the partial message. If the
 * backend has the final dot and never answers it, the client gets no reply (outcome unknown).
 * The decision engine is asked at end of data before the final dot leaves: a refusal drops the
 * backend connection without it. Header fields that checks add follow the Received: header.
 * After a message that held a bare CR or LF the session ends with the reply to it. */
#include "smtp_session_priv.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "hdr_filter.h"
#include "log.h"
#include "relay.h"
#include "util.h"

/* Per-session bound on content queued towards the backend before reading from the client
 * stops (the client's TCP window then holds the rest). */
#define DATA_BACKLOG_HIGH (256 * 1024)
#define DATA_BACKLOG_LOW (64 * 1024)

static void data_received_header(struct smtp_session *s)
{
	char buf[1024], date[64], rcpt[SMTP_PATH_MAX + 16] = "", raw[SMTP_PATH_MAX + 8], tls[160] = "";
	struct smtp_tx *tx = s->tx;
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (tx->nrcpts == 1) {
		size_t n = smtp_address_format(&tx->rcpts[0].addr, raw, sizeof raw);
		char clean[SMTP_PATH_MAX * 4 + 8];
		log_sanitize(clean, sizeof clean, raw, n);
		snprintf(rcpt, sizeof rcpt, "\r\n\tfor <%.*s>", (int)(sizeof rcpt - 16), clean);
	}
	if (s->tls)
		snprintf(tls, sizeof tls, "\r\n\t(using %s with cipher %s)", s->tls_version, s->tls_cipher);
	const char *proto = tx->params.smtputf8 ? (s->tls ? "UTF8SMTPS" : "UTF8SMTP")
			  : s->esmtp ? (s->tls ? "ESMTPS" : "ESMTP") : (s->tls ? "SMTPS" : "SMTP");
	int n = snprintf(buf, sizeof buf, "Received: from %s ([%s])\r\n\tby %s (backstop) with %s id %s.%u%s%s;\r\n\t%s\r\n",
			 s->helo, s->client_ip, s->cfg->hostname, proto, s->id, tx->seq, tls, rcpt, date);
	relay_data_write(s->relay, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	if (tx->headers_len > 0)
		relay_data_write(s->relay, tx->headers, tx->headers_len);
}

static void data_content_write(void *arg, const char *data, size_t len)
{
	struct smtp_session *s = arg;
	relay_data_write(s->relay, data, len);
}

/* The header section is over (or the message): what the filter holds goes, it goes. */
static void data_content_done(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (tx->hf == NULL)
		return;
	hdr_filter_end(tx->hf, data_content_write, s);
	if (tx->hf->removed > 0)
		log_info("session=%s client=%s removed %u Authentication-Results header field%s claiming "
			 "authserv-id %s (RFC 8601 5)", s->id, s->client_ip, tx->hf->removed,
			 tx->hf->removed == 1 ? "" : "s", tx->hf->authserv_id);
	free(tx->hf);
	tx->hf = NULL;
}

static void data_backend_354(void *arg, const struct relay_answer *ans)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (s->state == SMTP_STATE_CLOSING) { /* timed out meanwhile: its 421 was the last word */
		session_resume(s, SESSION_WAIT_DATA);
		return;
	}
	size_t early = session_input_pending(s); /* sent before our 354: not content */
	if (ans->code != 354) {
		session_reply(s, ans->code >= 400 ? ans->code : 451, ans->code >= 400 ? ans->enhanced : "4.4.2",
			      "%s", ans->text);
		session_log_decision(s, "data", NULL, ans->code, ans->enhanced, "backend refused DATA", NULL);
		if (early > 0)
			session_data_pipelined(s, early);
		session_resume(s, SESSION_WAIT_DATA);
		return;
	}
	if (early > 0) {
		relay_data_abort(s->relay); /* the backend discards the empty message */
		session_data_pipelined(s, early);
		session_resume(s, SESSION_WAIT_DATA);
		return;
	}
	smtp_data_init(&tx->dec, s->cfg->bare_newline_normalise ? DATA_BARE_NORMALISE : DATA_BARE_REJECT,
		       s->cfg->max_line_length);
	tx->too_big = false;
	tx->refused = false;
	tx->seq = ++s->n_tx;
	s->state = SMTP_STATE_DATA;
	session_set_read_timeout(s, s->cfg->data_timeout_ms);
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	data_received_header(s);
	free(tx->hf);
	tx->hf = xmalloc(sizeof *tx->hf);
	hdr_filter_init(tx->hf, s->cfg->authserv_id ? s->cfg->authserv_id : s->cfg->hostname);
	session_resume(s, SESSION_WAIT_DATA);
}

/* Message content to the backend: the header section through the filter (RFC 8601 5). */
static void data_content(struct smtp_session *s, const char *data, size_t len)
{
	struct smtp_tx *tx = s->tx;

	if (tx->hf == NULL) {
		relay_data_write(s->relay, data, len);
		return;
	}
	hdr_filter_feed(tx->hf, data, len, data_content_write, s);
	if (hdr_filter_in_body(tx->hf))
		data_content_done(s);
}

void session_data_command(struct smtp_session *s)
{
	s->n_data++;
	session_pause(s, SESSION_WAIT_DATA);
	if (!s->eof) /* what arrives before our 354 is read, to be noticed (data_backend_354) */
		bufferevent_enable(s->bev, EV_READ);
	relay_data_begin(session_relay(s), data_backend_354, s);
}

/* The refusal, if any, that the content itself earned. */
static bool data_refusal(const struct smtp_tx *tx, int *code, const char **enh, const char **why)
{
	if (tx->too_big) {
		*code = 552, *enh = "5.3.4", *why = "Message size exceeds fixed maximum message size";
	} else if (tx->dec.errors & (DATA_ERR_BARE_LF | DATA_ERR_BARE_CR)) {
		*code = 554, *enh = "5.6.0";
		*why = "Message contains bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)";
	} else if (tx->dec.errors & DATA_ERR_LINE_TOO_LONG) {
		*code = 554, *enh = "5.6.0", *why = "Message contains a line longer than the limit";
	} else {
		return false;
	}
	return true;
}

/* The message held a bare CR or LF: the client may have meant an end of data where backstop
 * saw none (or the reverse), so nothing more it sent on this connection can be trusted to be a
 * command (SMTP smuggling). After the reply to the message, the session ends. */
static void data_close_after_bare(struct smtp_session *s, unsigned bare)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t rest = evbuffer_get_length(in);

	log_notice("session=%s client=%s closing the connection: the message held a bare %s "
		   "(bare_newline=%s); %zu octets sent after its end discarded", s->id, s->client_ip,
		   bare == (DATA_ERR_BARE_CR | DATA_ERR_BARE_LF) ? "CR and a bare LF"
		   : bare == DATA_ERR_BARE_CR ? "CR" : "LF",
		   s->cfg->bare_newline_normalise ? "normalise" : "reject", rest);
	evbuffer_drain(in, rest);
	session_close(s);
}

static void data_finish(struct smtp_session *s, int code, const char *enh, const char *text, const char *backend,
			const char *extra)
{
	char detail[SMTP_REPLY_TEXT_MAX + 128];
	unsigned bare = s->tx->dec.bare;

	s->reply_stage = STATS_STAGE_EOD;
	session_reply(s, code, enh, "%s", text);
	snprintf(detail, sizeof detail, "%s (size=%llu backend=%s)", text,
		 (unsigned long long)s->tx->dec.octets, backend ? backend : "-");
	session_log_decision(s, "data", NULL, code, enh, detail, extra);
	if (code >= 200 && code < 300) {
		s->n_data_ok++;
		s->junk = 0;
	}
	session_tx_reset(s);
	if (bare) {
		data_close_after_bare(s, bare);
		return;
	}
	s->state = SMTP_STATE_READY;
	session_set_read_timeout(s, s->cfg->command_timeout_ms);
	session_arm_command_deadline(s);
}

/* The backend had the whole message and never answered it: it may have taken the message, so
 * the client gets no reply at all and will retry (RFC 5321 6.1 prefers a duplicate to a loss; a
 * 4xx would make the duplicate certain if the backend took it, and a 250 would be made up). */
static void data_final_unknown(struct smtp_session *s, const struct relay_answer *ans)
{
	log_notice("session=%s client=%s outcome unknown: backend %s did not answer the end of data (%s); "
		   "closing without a reply; the client will retry; a duplicate is possible (size=%llu)",
		   s->id, s->client_ip, ans->backend ? ans->backend : "-", ans->text,
		   (unsigned long long)s->tx->dec.octets);
	session_tx_reset(s);
	session_close(s);
}

static void data_backend_final(void *arg, const struct relay_answer *ans)
{
	struct smtp_session *s = arg;
	if (s->state == SMTP_STATE_CLOSING) {
		session_resume(s, SESSION_WAIT_FINAL);
		return;
	}
	if (ans->unknown) {
		data_final_unknown(s, ans);
	} else {
		stats_backend_final(s->env->stats, ans->code);
		data_finish(s, ans->code, ans->enhanced, ans->text, ans->backend, NULL);
		if (s->close_after_final) /* shutdown: the reply relayed, the session ends */
			session_close(s);
	}
	session_resume(s, SESSION_WAIT_FINAL);
}

/* The final dot goes to the backend: its reply is the client's. */
static void data_send_dot(struct smtp_session *s)
{
	/* no read timeout while the backend has the dot: backend_data_timeout bounds the wait */
	session_pause(s, SESSION_WAIT_FINAL);
	relay_data_end(s->relay, data_backend_final, s);
}

/* End of data decided. A refusal: the backend never gets the final dot, so it discards what it
 * got, and the client gets the decision (never a 250 the backend did not give, and never a 4xx
 * for a message the backend has). */
static void data_eod_decided(struct smtp_session *s, const struct engine_decision *d, const void *ctx)
{
	char extra[ENGINE_LOG_MAX + 128];

	(void)ctx;
	session_decision_extra(d, extra, sizeof extra);
	if (d->headers[0] != '\0')
		log_info("session=%s client=%s header fields from end-of-data checks come too late: not added",
			 s->id, s->client_ip);
	if (session_decision_refuses(d)) {
		int code;
		const char *enh, *text;
		session_decision_code(d, &code, &enh, &text);
		relay_data_abort(s->relay);
		data_finish(s, code, enh, text, NULL, extra);
		return;
	}
	session_log_decision(s, "end-of-data", NULL, 0, NULL, "final dot passed to the backend", extra);
	data_send_dot(s);
}

static void data_end(struct smtp_session *s)
{
	int code;
	const char *enh, *why;

	if (!s->tx->refused)
		data_content_done(s);
	if (data_refusal(s->tx, &code, &enh, &why)) {
		relay_data_abort(s->relay);
		data_finish(s, code, enh, why, NULL, NULL);
		return;
	}
	if (session_asks(s, ENGINE_STAGE_EOD)) {
		struct engine_request req;
		session_request(s, ENGINE_STAGE_EOD, &req);
		req.size_known = true;
		req.size = s->tx->dec.octets;
		session_decide(s, &req, data_eod_decided, NULL, 0);
		return;
	}
	data_send_dot(s);
}

static void data_stop_watchdog(struct smtp_session *s)
{
	if (s->watchdog)
		evtimer_del(s->watchdog);
}

/* The backlog went down (or the backend died): the drain wait ends, and with it the drain
 * callback, which must not outlive the wait it belongs to. */
static void data_drained(void *arg)
{
	struct smtp_session *s = arg;
	data_stop_watchdog(s);
	relay_set_drain_cb(s->relay, 0, NULL, NULL);
	session_resume(s, SESSION_WAIT_DRAIN);
}

/* While waiting for the backend to drain, notice a backend that died instead. */
static void data_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	if (!relay_usable(s->relay) || relay_pending(s->relay) <= DATA_BACKLOG_LOW)
		data_drained(s);
}

static void data_wait_for_backend(struct smtp_session *s)
{
	static const struct timeval second = { 1, 0 };
	if (s->watchdog == NULL)
		s->watchdog = event_new(s->env->base, -1, EV_PERSIST, data_watchdog_cb, s);
	evtimer_add(s->watchdog, &second);
	relay_set_drain_cb(s->relay, DATA_BACKLOG_LOW, data_drained, s);
	session_pause(s, SESSION_WAIT_DRAIN);
}

bool session_data_input(struct smtp_session *s, struct evbuffer *in)
{
	struct smtp_tx *tx = s->tx;
	char *out = s->env->scratch;
	const size_t chunk_max = (SESSION_SCRATCH_SIZE - 4) / 2;

	while (evbuffer_get_length(in) > 0 && !tx->dec.done) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t n = v.iov_len < chunk_max ? v.iov_len : chunk_max, outlen = 0;
		size_t used = smtp_data_decode(&tx->dec, v.iov_base, n, out, SESSION_SCRATCH_SIZE, &outlen);
		evbuffer_drain(in, used);
		if (tx->dec.octets > s->cfg->max_message_size)
			tx->too_big = true;
		int code;
		const char *enh, *why;
		if (!tx->refused && data_refusal(tx, &code, &enh, &why)) {
			tx->refused = true; /* nothing more goes out; the backend never sees a final dot */
			relay_data_abort(s->relay);
		}
		if (!tx->refused)
			data_content(s, out, outlen);
		if (!tx->dec.done && relay_usable(s->relay) && relay_pending(s->relay) > DATA_BACKLOG_HIGH) {
			data_wait_for_backend(s);
			return false;
		}
	}
	if (!tx->dec.done)
		return false;
	data_end(s);
	return true;
}
