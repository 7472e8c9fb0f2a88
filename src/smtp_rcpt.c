/* smtp_rcpt.c - the asynchronous part of RCPT TO: after parsing and relay control accepted a
 * recipient, the backend decides in-line (relay.c). The session pauses while the answer is
 * under way, so pipelined commands are answered in order. Each outcome logs one line. */
#include "smtp_session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay.h"
#include "util.h"

/* The recipient being decided (one at a time per session). */
struct rcpt_pending {
	struct smtp_session *s;
	struct smtp_rcpt_cmd rc;
	const struct bs_domain *dom;
	uint64_t started_ms;
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

static void rcpt_backend_answer(void *arg, const struct relay_answer *ans)
{
	struct rcpt_pending *p = arg;
	struct smtp_session *s = p->s;
	char extra[SMTP_DOMAIN_MAX + 96];

	if (ans->code >= 200 && ans->code < 300) {
		rcpt_add(s->tx, &p->rc, p->dom);
		s->n_rcpt_ok++;
	}
	session_reply(s, ans->code, ans->enhanced, "%s", ans->text);
	snprintf(extra, sizeof extra, "source=backend backend=%s latency_ms=%llu", ans->backend ? ans->backend : "-",
		 (unsigned long long)(now_ms() - p->started_ms));
	session_log_decision(s, "rcpt", &p->rc.to, ans->code, ans->enhanced, ans->text, extra);
	free(p);
	s->rcpt_pending = NULL;
	session_resume(s);
}

void session_rcpt_accept_check(struct smtp_session *s, const struct smtp_rcpt_cmd *rc,
			       const struct bs_domain *dom)
{
	struct rcpt_pending *p = xmalloc(sizeof *p);

	p->s = s;
	p->rc = *rc;
	p->dom = dom;
	p->started_ms = now_ms();
	s->rcpt_pending = p;
	session_pause(s);
	relay_rcpt(session_relay(s), dom, &s->tx->from, &s->tx->params, &rc->to, &rc->params,
		   rcpt_backend_answer, p);
}
