/* smtp_rcpt.c - the asynchronous part of RCPT TO, after parsing and relay control accepted a
 * recipient: first recipient verification (verify.c: verdict cache, then the domain's sources),
 * then the backend's own live answer (relay.c). The session pauses while an answer is under
 * way, so pipelined commands are answered in order. Each outcome logs one line with verdict,
 * source, cache state and latency. */
#include "smtp_session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay.h"
#include "util.h"
#include "verify.h"
#include "worker.h"

/* The recipient being decided (one at a time per session), owned by the session. */
struct rcpt_pending {
	struct smtp_session *s;
	struct smtp_rcpt_cmd rc;
	const struct bs_domain *dom;
	struct verify_query *vq;
	uint64_t started_ms;
	char verdict[RCPT_REASON_MAX * 2 + 200]; /* key=value pairs from verification, for the log line */
};

static void rcpt_add(struct smtp_tx *tx, const struct smtp_rcpt_cmd *rc, const struct bs_domain *dom)
{
	if (tx->nrcpts == tx->rcpts_cap) {
		tx->rcpts_cap = tx->rcpts_cap ? tx->rcpts_cap * 2 : 4;
		tx->rcpts = xrealloc(tx->rcpts, tx->rcpts_cap * sizeof *tx->rcpts);
	}
	struct smtp_rcpt *r = &tx->rcpts[tx->nrcpts++];
	r->addr = rc->to;
	r->params = rc->params;
	r->domain = dom;
}

static void rcpt_finish(struct rcpt_pending *p, int code, const char *enhanced, const char *text,
			const char *backend)
{
	struct smtp_session *s = p->s;
	char extra[sizeof p->verdict + SMTP_DOMAIN_MAX + 64];

	if (code >= 200 && code < 300) {
		rcpt_add(s->tx, &p->rc, p->dom);
		s->n_rcpt_ok++;
	}
	session_reply(s, code, enhanced, "%s", text);
	snprintf(extra, sizeof extra, "%s backend=%s latency_ms=%llu", p->verdict, backend ? backend : "-",
		 (unsigned long long)(now_ms() - p->started_ms));
	session_log_decision(s, "rcpt", &p->rc.to, code, enhanced, text, extra);
	free(p);
	s->rcpt_pending = NULL;
	session_resume(s);
}

static void rcpt_backend_answer(void *arg, const struct relay_answer *ans)
{
	struct rcpt_pending *p = arg;
	rcpt_finish(p, ans->code, ans->enhanced, ans->text, ans->backend);
}

static void rcpt_verified(void *arg, const struct verify_result *res)
{
	struct rcpt_pending *p = arg;
	struct smtp_session *s = p->s;

	char detail[RCPT_REASON_MAX * 2];

	p->vq = NULL;
	log_sanitize(detail, sizeof detail, res->reason, strlen(res->reason));
	snprintf(p->verdict, sizeof p->verdict, "verdict=%s source=%s cached=%s%s detail=\"%s\"",
		 rcpt_verdict_name(res->verdict), res->source, res->cached ? "yes" : "no",
		 res->timed_out ? " timed_out=yes" : "", detail);
	if (res->action != VERIFY_ACCEPT) {
		rcpt_finish(p, res->code, res->enhanced, res->text, NULL);
		return;
	}
	relay_rcpt(session_relay(s), p->dom, &s->tx->from, &s->tx->params, &p->rc.to, &p->rc.params,
		   rcpt_backend_answer, p);
}

void session_rcpt_accept_check(struct smtp_session *s, const struct smtp_rcpt_cmd *rc,
			       const struct bs_domain *dom)
{
	struct rcpt_pending *p = xcalloc(1, sizeof *p);

	p->s = s;
	p->rc = *rc;
	p->dom = dom;
	p->started_ms = now_ms();
	s->rcpt_pending = p;
	session_pause(s);
	p->vq = verify_start(s->rt->verifier, s->worker->base, dom, &rc->to, rcpt_verified, p);
}

void session_rcpt_cancel(struct smtp_session *s)
{
	struct rcpt_pending *p = s->rcpt_pending;
	if (p == NULL)
		return;
	if (p->vq)
		verify_cancel(p->vq);
	free(p);
	s->rcpt_pending = NULL;
}
