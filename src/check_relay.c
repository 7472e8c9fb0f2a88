/* check_relay.c - relay control as a check of the engine, at RCPT: a recipient that is not
 * provably a plain mailbox of one of our [domain] sections is refused (relay_control.c decides). For
 * the Postfix policy service a recipient of a domain that is not ours is none of backstop's
 * business: Postfix does relay control there (reject_unauth_destination), the answer is
 * neutral (DUNNO). */
#include "check.h"

#include <stdint.h>
#include <stdio.h>

#include "relay_control.h"

static int relay_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	(void)why;
	(void)whysz;
	*state = (void *)(uintptr_t)env->cfg; /* read only */
	return env->cfg != NULL;
}

static struct check_query *relay_start(void *state, struct event_base *base, const struct engine_request *req,
				       check_cb cb, void *arg)
{
	const struct bs_config *cfg = state;
	struct relay_decision rd;
	struct check_answer a;
	char addr[SMTP_PATH_MAX + 8];

	(void)base;
	check_answer_neutral(&a);
	if (!req->has_rcpt || (req->frontend == ENGINE_FRONTEND_POLICY && req->domain == NULL)) {
		cb(arg, &a);
		return NULL;
	}
	relay_control_check(cfg, req->rcpt, &rd);
	if (rd.verdict != RELAY_ACCEPT) {
		smtp_address_format(req->rcpt, addr, sizeof addr);
		check_answer_set(&a, CHECK_REJECT, rd.code, rd.enhanced, "<%s>: %s", addr, rd.reason);
		snprintf(a.log, sizeof a.log, "source=policy");
	}
	cb(arg, &a);
	return NULL;
}

const struct check_type check_relay_type = {
	.name = "relay",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_RCPT),
	.open = relay_open,
	.start = relay_start,
};
