/* smtp_rcpt.c - RCPT TO after parsing and limits: the decision engine's RCPT stage (relay
 * control, recipient verification: engine.h) and then the backend's own live answer (relay.c).
 *
 * Pipelined RCPTs are decided in parallel: each gets an entry in the session's RCPT queue and
 * its decision starts at once; replies leave strictly in command order as the head of the queue
 * completes, and the backend is asked one recipient at a time in that order. Any other command
 * waits until the queue is empty; a reply the session produces meanwhile (500 for a line too
 * long, a 421) is queued behind them. Past error_delay_after error replies, a refusal heading the
 * queue waits error_delay on a timer before it is written. Each outcome logs one line (verdict,
 * source, cache state, backend, latency). */
#include "smtp_session_priv.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "engine.h"
#include "log.h"
#include "relay.h"
#include "util.h"

enum rcpt_step { RCPT_VERIFYING, RCPT_VERIFIED, RCPT_AT_BACKEND, RCPT_DONE };

/* One per RCPT in flight, so kept small: the reply text is copied only when it cannot be written
 * at once (an earlier RCPT is still being decided), and the decision's log fields only for a
 * recipient that goes on to the backend (a refusal logs its line when decided), the RCPT's
 * parameters only when it has some. rcpt_new() clears it up to to, which is set before it is
 * read. */
struct rcpt_pending {
	struct rcpt_pending *next;
	struct smtp_session *s;
	enum rcpt_step step;
	bool has_rcpt;                  /* false for a refusal of an unparsable RCPT: rc unset */
	bool reply_only;                /* the reply of another command, queued behind RCPTs */
	bool counted;                   /* a refusal already counted against max_errors */
	bool delayed;                   /* its error_delay has begun (rq_delay) */
	const struct bs_domain *dom;
	struct engine_query *eq;        /* the engine deciding it */
	uint64_t started_ms;
	int code;                       /* the reply, once known */
	char enhanced[16];
	char *headers;                  /* the checks' header fields for the message (owned), or NULL */
	char *verdict;                  /* the decision's key=value pairs, for the log line once the
					 * backend answered (owned), or NULL */
	const char *text;               /* the reply text once known: text_copy, or the decision's
					 * own while it is written at once */
	char *text_copy;                /* (owned) or NULL */
	struct smtp_rcpt_params *params; /* NOTIFY=, ORCPT= (owned), or NULL: none given */
	struct smtp_address to;
};

static const struct smtp_rcpt_params rcpt_no_params;

static const struct smtp_rcpt_params *rcpt_params(const struct rcpt_pending *p)
{
	return p->params ? p->params : &rcpt_no_params;
}

static struct rcpt_pending *rcpt_new(void)
{
	struct rcpt_pending *p = xmalloc(sizeof *p);
	memset(p, 0, offsetof(struct rcpt_pending, to));
	return p;
}

static void rcpt_free(struct rcpt_pending *p)
{
	free(p->headers);
	free(p->verdict);
	free(p->text_copy);
	free(p->params);
	free(p);
}

static void rcpt_add(struct smtp_tx *tx, const struct rcpt_pending *p)
{
	if (tx->nrcpts == tx->rcpts_cap) {
		tx->rcpts_cap = tx->rcpts_cap ? tx->rcpts_cap * 2 : 4;
		tx->rcpts = xrealloc(tx->rcpts, tx->rcpts_cap * sizeof *tx->rcpts);
	}
	struct smtp_rcpt *r = &tx->rcpts[tx->nrcpts++];
	r->addr = p->to;
	r->params = *rcpt_params(p);
	r->domain = p->dom;
}

/* The reply is known. Its text is pointed to when p heads the queue (the caller's rcpt_pump
 * writes it before text goes away), else copied until its turn. */
static void rcpt_set_reply(struct rcpt_pending *p, int code, const char *enhanced, const char *text)
{
	p->code = code;
	p->enhanced[0] = '\0';
	strbuf_append(p->enhanced, sizeof p->enhanced, enhanced);
	free(p->text_copy);
	p->text_copy = NULL;
	if (p == p->s->rq_head && !p->s->rq_abandoned)
		p->text = text;
	else
		p->text = p->text_copy = xstrdup(text);
	p->step = RCPT_DONE;
}

static void rcpt_log(struct rcpt_pending *p, const char *verdict, const char *backend)
{
	char extra[ENGINE_LOG_MAX + SMTP_DOMAIN_MAX + 128];
	snprintf(extra, sizeof extra, "%s%sbackend=%s latency_ms=%llu", verdict ? verdict : "",
		 verdict && verdict[0] ? " " : "", backend ? backend : "-",
		 (unsigned long long)(now_ms() - p->started_ms));
	session_log_decision(p->s, "rcpt", p->has_rcpt ? &p->to : NULL, p->code, p->enhanced, p->text, extra);
}

static void rcpt_push(struct smtp_session *s, struct rcpt_pending *p)
{
	p->s = s;
	p->started_ms = now_ms();
	if (s->rq_tail)
		s->rq_tail->next = p;
	else
		s->rq_head = p;
	s->rq_tail = p;
	s->rq_len++;
}

static void rcpt_pump(struct smtp_session *s);

/* Postfix's smtpd_error_sleep_time after smtpd_soft_error_limit: once a session has had
 * error_delay_after error replies, each further refused RCPT is answered error_delay later. It
 * slows a harvester's every session to a reply a second, on a timer that holds no worker; the
 * replies behind it wait their turn. A reply to another command queued here is not delayed, nor
 * is a refusal in a transaction with a recipient accepted: that transaction holds a backend
 * connection, and slowed sessions holding them would starve every other client of the backend. */
static bool rcpt_error_delay_due(const struct smtp_session *s, int code, const char *enhanced)
{
	return s->cfg->error_delay_ms > 0 && s->error_replies >= s->cfg->error_delay_after &&
	       session_code_is_error(code, enhanced) && (s->tx == NULL || s->tx->nrcpts == 0);
}

static void rcpt_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rcpt_pump(arg);
}

/* p heads the queue with its reply known: true if its error_delay begins now (the timer pumps
 * the queue again when it is over). */
static bool rcpt_delay_start(struct smtp_session *s, struct rcpt_pending *p)
{
	if (p->delayed || p->reply_only || !rcpt_error_delay_due(s, p->code, p->enhanced))
		return false;
	if (p->text_copy == NULL) /* the decision's own text goes away when its callback returns */
		p->text = p->text_copy = xstrdup(p->text);
	if (s->rq_delay == NULL)
		s->rq_delay = evtimer_new(s->env->base, rcpt_delay_cb, s);
	struct timeval tv = { (time_t)(s->cfg->error_delay_ms / 1000),
			      (suseconds_t)(s->cfg->error_delay_ms % 1000 * 1000) };
	evtimer_add(s->rq_delay, &tv);
	p->delayed = true;
	if (s->env->stats != NULL)
		stats_add(&s->env->stats->error_delays, 1);
	return true;
}

static void rcpt_backend_answer(void *arg, const struct relay_answer *ans)
{
	struct rcpt_pending *p = arg;
	rcpt_set_reply(p, ans->code, ans->enhanced, ans->text);
	rcpt_log(p, p->verdict, ans->backend);
	rcpt_pump(p->s);
}

/* Answer, in order, every finished entry at the head; hand the next verified one to the backend.
 * Also once the session is closing: its last reply is queued behind these (but for the 421 of
 * a shutdown, which answers them all: smtp_session_abort). */
static void rcpt_pump(struct smtp_session *s)
{
	struct rcpt_pending *p;
	bool popped = false;

	while (!s->rq_abandoned && (p = s->rq_head) != NULL) {
		if (p->step == RCPT_VERIFIED) {
			p->step = RCPT_AT_BACKEND;
			relay_rcpt(session_relay(s), p->dom, &s->tx->from, &s->tx->params, &p->to,
				   rcpt_params(p), rcpt_backend_answer, p);
			break;
		}
		if (p->step != RCPT_DONE)
			break;
		if (rcpt_delay_start(s, p) || (p->delayed && evtimer_pending(s->rq_delay, NULL)))
			break;
		if (!p->reply_only && p->code >= 200 && p->code < 300) {
			rcpt_add(s->tx, p);
			session_tx_add_headers(s, p->headers);
			s->n_rcpt_ok++;
		}
		session_reply_text(s, p->code, p->enhanced[0] ? p->enhanced : NULL, p->text);
		if (!p->reply_only)
			stats_reply(s->env->stats, STATS_STAGE_RCPT, p->code);
		if (!p->counted && session_code_is_error(p->code, p->enhanced))
			s->errors++;
		s->rq_head = p->next;
		if (s->rq_head == NULL)
			s->rq_tail = NULL;
		s->rq_len--;
		rcpt_free(p);
		popped = true;
	}
	if (popped || s->state == SMTP_STATE_CLOSING)
		session_resume(s, SESSION_WAIT_RCPT); /* a command that waited for room or order */
}

static void rcpt_decided(void *arg, const struct engine_decision *d)
{
	struct rcpt_pending *p = arg;
	struct smtp_session *s = p->s;
	char verdict[ENGINE_LOG_MAX + 64];

	p->eq = NULL;
	snprintf(verdict, sizeof verdict, "%s%s%s%s", d->log, d->check ? " check=" : "", d->check ? d->check : "",
		 d->timed_out ? " stage_timed_out=yes" : "");
	if (d->result == CHECK_REJECT || d->result == CHECK_DEFER) {
		rcpt_set_reply(p, d->code, d->enhanced, d->text);
		rcpt_log(p, verdict, NULL);
		p->counted = session_code_is_error(p->code, p->enhanced);
		if (p->counted)
			s->errors++; /* now: a flood of refusals behind a slow RCPT must hit max_errors */
	} else {
		p->step = RCPT_VERIFIED;
		p->verdict = xstrdup(verdict); /* for the line logged once the backend answered */
		if (d->headers[0] != '\0')
			p->headers = xstrdup(d->headers); /* for the message, if the backend takes it */
	}
	rcpt_pump(s);
}

void session_rcpt_decide(struct smtp_session *s, const struct smtp_rcpt_cmd *rc)
{
	struct rcpt_pending *p = rcpt_new();
	struct engine_request req;

	p->has_rcpt = true;
	p->to = rc->to;
	if (rc->params.notify || rc->params.orcpt[0] != '\0') {
		p->params = xmalloc(sizeof *p->params);
		*p->params = rc->params;
	}
	session_request(s, ENGINE_STAGE_RCPT, &req);
	engine_request_set_rcpt(&req, s->cfg, &p->to); /* <postmaster> now names our domain */
	p->dom = req.domain;
	p->step = RCPT_VERIFYING;
	rcpt_push(s, p);
	p->eq = engine_start(s->rt->engine, s->env->base, &req, rcpt_decided, p);
}

void session_rcpt_refuse(struct smtp_session *s, const struct smtp_address *to, int code,
			 const char *enhanced, const char *text, const char *extra)
{
	if (s->rq_head == NULL && !rcpt_error_delay_due(s, code, enhanced)) {
		session_reply_text(s, code, enhanced, text);
		stats_reply(s->env->stats, STATS_STAGE_RCPT, code);
		if (session_code_is_error(code, enhanced))
			s->errors++;
		session_log_decision(s, "rcpt", to, code, enhanced, text, extra);
		return;
	}
	/* earlier recipients are still being decided: this answer waits its turn */
	struct rcpt_pending *p = rcpt_new();
	rcpt_push(s, p);
	if (to != NULL) {
		p->has_rcpt = true;
		p->to = *to;
	}
	rcpt_set_reply(p, code, enhanced, text);
	rcpt_log(p, extra ? extra : "", NULL);
	p->counted = session_code_is_error(code, enhanced);
	if (p->counted)
		s->errors++; /* now: a flood of refusals behind a slow RCPT must hit max_errors */
	if (p == s->rq_head)
		rcpt_pump(s); /* its error_delay */
}

bool session_rcpt_defer_reply(struct smtp_session *s, int code, const char *enhanced, const char *text)
{
	if (s->rq_head == NULL || s->rq_abandoned)
		return false;
	struct rcpt_pending *p = rcpt_new();
	rcpt_push(s, p);
	p->reply_only = true;
	p->counted = true; /* session_reply() counts its own */
	rcpt_set_reply(p, code, enhanced ? enhanced : "", text);
	return true;
}

size_t session_rcpt_queued(const struct smtp_session *s)
{
	return s->rq_len;
}

size_t session_rcpt_live(const struct smtp_session *s)
{
	size_t n = 0;
	for (const struct rcpt_pending *p = s->rq_head; p != NULL; p = p->next)
		n += !p->reply_only && (p->step != RCPT_DONE || (p->code >= 200 && p->code < 300));
	return n;
}

void session_rcpt_cancel(struct smtp_session *s)
{
	struct rcpt_pending *p, *next;

	for (p = s->rq_head; p != NULL; p = next) {
		next = p->next;
		engine_cancel(p->eq);
		rcpt_free(p);
	}
	s->rq_head = s->rq_tail = NULL;
	s->rq_len = 0;
	if (s->rq_delay != NULL) {
		event_free(s->rq_delay);
		s->rq_delay = NULL;
	}
}
