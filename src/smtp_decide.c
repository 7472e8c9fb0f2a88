/* smtp_decide.c - the decision engine's stages other than RCPT, seen from the session. CONNECT
 * is asked at accept without holding the banner; a refusal is applied to every RCPT of the
 * session (like Postfix's smtpd_delay_reject and postscreen's "enforce"), and a RCPT that comes
 * before the decision waits for it. HELO/EHLO, MAIL, DATA and end of data are asked once the
 * session's own checks of the command passed: the session pauses, commands pipelined behind
 * wait in the input buffer, and the command's handler goes on with the decision. Stages without
 * checks are not asked; each decision that is asked logs one line. */
#include "smtp_session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct session_decision {
	struct engine_query *eq;
	session_decided_fn done;
	void *ctx; /* the handler's copy of what it goes on with (owned) */
};

bool session_asks(const struct smtp_session *s, enum engine_stage stage)
{
	return engine_stage_has_checks(s->rt->engine, stage);
}

bool session_decision_refuses(const struct engine_decision *d)
{
	return d->result == CHECK_REJECT || d->result == CHECK_DEFER;
}

/* A check's code outside its class is a bug of the check; the client still gets a proper one. */
void session_decision_code(const struct engine_decision *d, int *code, const char **enh, const char **text)
{
	bool defer = d->result == CHECK_DEFER;

	*code = d->code;
	*enh = d->enhanced[0] ? d->enhanced : NULL;
	if (defer ? *code < 400 || *code > 499 : *code < 500 || *code > 599) {
		*code = defer ? 451 : 550;
		*enh = defer ? "4.7.1" : "5.7.1";
	}
	*text = d->text[0] ? d->text : defer ? "Try again later" : "Refused";
}

void session_decision_refuse(struct smtp_session *s, const char *what, const struct smtp_address *addr,
			     const struct engine_decision *d, const char *extra)
{
	int code;
	const char *enh, *text;

	session_decision_code(d, &code, &enh, &text);
	session_reply(s, code, enh, "%s", text);
	session_log_decision(s, what, addr, code, enh, text, extra);
}

void session_decision_extra(const struct engine_decision *d, char *buf, size_t len)
{
	snprintf(buf, len, "result=%s%s%s%s decision_ms=%llu%s%s", check_result_name(d->result),
		 d->check ? " check=" : "", d->check ? d->check : "", d->timed_out ? " stage_timed_out=yes" : "",
		 (unsigned long long)d->latency_ms, d->log[0] ? " " : "", d->log);
}

static void decide_done(void *arg, const struct engine_decision *d)
{
	struct smtp_session *s = arg;
	struct session_decision *sd = s->decision;

	s->decision = NULL;
	sd->done(s, d, sd->ctx);
	free(sd->ctx);
	free(sd);
	session_resume(s, SESSION_WAIT_DECISION); /* nothing if done paused for another step */
}

void *session_decide_begin(struct smtp_session *s, session_decided_fn done, const void *ctx, size_t ctxlen)
{
	struct session_decision *sd = xcalloc(1, sizeof *sd);

	sd->done = done;
	if (ctxlen > 0) {
		sd->ctx = xmalloc(ctxlen);
		memcpy(sd->ctx, ctx, ctxlen);
	}
	s->decision = sd;
	return sd->ctx;
}

void session_decide_ask(struct smtp_session *s, const struct engine_request *req)
{
	session_pause(s, SESSION_WAIT_DECISION);
	s->decision->eq = engine_start(s->rt->engine, s->env->base, req, decide_done, s);
}

void session_decide(struct smtp_session *s, const struct engine_request *req, session_decided_fn done,
		    const void *ctx, size_t ctxlen)
{
	session_decide_begin(s, done, ctx, ctxlen);
	session_decide_ask(s, req);
}

static char *headers_dup(const char *h)
{
	return h[0] ? xstrdup(h) : NULL;
}

static void connect_decided(void *arg, const struct engine_decision *d)
{
	struct smtp_session *s = arg;
	char extra[ENGINE_LOG_MAX + 128];
	bool refused = session_decision_refuses(d);

	s->connect_q = NULL;
	if (refused) {
		struct session_refusal *r = xcalloc(1, sizeof *r);
		bool defer = d->result == CHECK_DEFER;
		bool sane = defer ? d->code >= 400 && d->code <= 499 : d->code >= 500 && d->code <= 599;
		r->code = sane ? d->code : defer ? 451 : 554;
		snprintf(r->enhanced, sizeof r->enhanced, "%s",
			 sane && d->enhanced[0] ? d->enhanced : defer ? "4.7.1" : "5.7.1");
		snprintf(r->text, sizeof r->text, "%s", d->text[0] ? d->text : "Client host rejected");
		r->check = d->check ? d->check : "-";
		s->connect_refusal = r;
	}
	s->connect_headers = headers_dup(d->headers);
	session_decision_extra(d, extra, sizeof extra);
	session_log_decision(s, "connect", NULL, refused ? s->connect_refusal->code : 0,
			     refused ? s->connect_refusal->enhanced : NULL,
			     refused ? s->connect_refusal->text : "no objection", extra);
	session_resume(s, SESSION_WAIT_CONNECT);
}

static void banner_decided(void *arg, const struct engine_decision *d)
{
	struct smtp_session *s = arg;
	char extra[ENGINE_LOG_MAX + 128];

	s->banner_q = NULL;
	if (!session_decision_refuses(d)) {
		session_greet(s);
		return;
	}
	/* RFC 5321 3.1: the only replies to a connection besides 220 are 421 and 554 */
	bool defer = d->result == CHECK_DEFER;
	int code = defer ? 421 : 554;
	const char *enh = d->enhanced[0] && (d->code == code) ? d->enhanced : defer ? "4.7.0" : "5.7.1";
	const char *text = d->text[0] ? d->text : defer ? "Service not available, try again later" : "Refused";
	session_decision_extra(d, extra, sizeof extra);
	session_reply(s, code, enh, "%s", text);
	session_log_decision(s, "banner", NULL, code, enh, text, extra);
	session_close(s);
}

void session_decide_banner(struct smtp_session *s)
{
	struct engine_request req;

	session_request(s, ENGINE_STAGE_BANNER, &req);
	s->banner_q = engine_start(s->rt->engine, s->env->base, &req, banner_decided, s);
}

void session_decide_connect(struct smtp_session *s)
{
	struct engine_request req;

	if (!session_asks(s, ENGINE_STAGE_CONNECT))
		return;
	session_request(s, ENGINE_STAGE_CONNECT, &req);
	s->connect_q = engine_start(s->rt->engine, s->env->base, &req, connect_decided, s);
}

bool session_decide_connect_refuses(struct smtp_session *s, const struct smtp_address *to)
{
	const struct session_refusal *r = s->connect_refusal;
	char extra[64];

	if (r == NULL)
		return false;
	snprintf(extra, sizeof extra, "source=connect check=%s", r->check);
	session_rcpt_refuse(s, to, r->code, r->enhanced, r->text, extra);
	return true;
}

void session_decide_cancel(struct smtp_session *s)
{
	engine_cancel(s->banner_q);
	s->banner_q = NULL;
	engine_cancel(s->connect_q);
	s->connect_q = NULL;
	if (s->decision != NULL) {
		engine_cancel(s->decision->eq);
		free(s->decision->ctx);
		free(s->decision);
		s->decision = NULL;
	}
}
