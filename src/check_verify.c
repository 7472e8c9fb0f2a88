/* check_verify.c - recipient verification as a check of the engine, at RCPT: the domain's
 * sources behind the verdict cache (verify.c). A recipient found to exist is neutral (the
 * backend's own RCPT reply decides next); one found not to exist is refused with the domain's
 * reject code; an unavailable verdict defers, or goes on when the domain says on_unavailable =
 * accept. */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "engine_stats.h"
#include "log.h"
#include "util.h"
#include "verify.h"

struct check_query {
	struct engine_stats *stats;
	struct verify_query *vq;
	check_cb cb;
	void *arg;
};

struct verify_check {
	struct verifier *verifier;
	struct engine_stats *stats;
};

static int verify_check_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	(void)why;
	(void)whysz;
	if (env->verifier == NULL)
		return 0;
	struct verify_check *vc = xcalloc(1, sizeof *vc);
	vc->verifier = env->verifier;
	vc->stats = env->stats;
	*state = vc;
	return 1;
}

static void verify_check_close(void *state)
{
	free(state);
}

static void verify_check_done(void *arg, const struct verify_result *res)
{
	struct check_query *q = arg;
	struct check_answer a;
	char detail[RCPT_REASON_MAX * 2];
	static const enum check_result result[] = {
		[VERIFY_ACCEPT] = CHECK_NEUTRAL, [VERIFY_REJECT] = CHECK_REJECT, [VERIFY_DEFER] = CHECK_DEFER,
	};

	check_answer_neutral(&a);
	if (res->action != VERIFY_ACCEPT)
		check_answer_set_text(&a, result[res->action], res->code, res->enhanced, res->text);
	a.rcpt_invalid = res->verdict == RCPT_INVALID && res->action != VERIFY_ACCEPT;
	log_sanitize(detail, sizeof detail, res->reason, strlen(res->reason));
	snprintf(a.log, sizeof a.log, "verdict=%s source=%s cached=%s%s%s detail=\"%s\"",
		 rcpt_verdict_name(res->verdict), res->source, res->cached ? "yes" : "no",
		 res->timed_out ? " timed_out=yes" : "", res->rate_limited ? " rate_limited=yes" : "", detail);
	engine_stats_verdict(q->stats, res->source, (unsigned)res->verdict, res->cached);
	check_cb cb = q->cb;
	void *cbarg = q->arg;
	free(q);
	cb(cbarg, &a);
}

static struct check_query *verify_check_start(void *state, struct event_base *base,
					      const struct engine_request *req, check_cb cb, void *arg)
{
	if (!req->has_rcpt || req->domain == NULL) { /* not ours: relay control's business */
		struct check_answer a;
		check_answer_neutral(&a);
		cb(arg, &a);
		return NULL;
	}
	struct verify_check *vc = state;
	struct check_query *q = xcalloc(1, sizeof *q);
	q->cb = cb;
	q->arg = arg;
	q->stats = vc->stats;
	q->vq = verify_start(vc->verifier, base, req->domain, req->rcpt, verify_check_done, q);
	return q;
}

static void verify_check_cancel(struct check_query *q)
{
	verify_cancel(q->vq);
	free(q);
}

const struct check_type check_verify_type = {
	.name = "verify",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_RCPT),
	.open = verify_check_open,
	.close = verify_check_close,
	.start = verify_check_start,
	.cancel = verify_check_cancel,
};
