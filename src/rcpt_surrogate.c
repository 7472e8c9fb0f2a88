/* rcpt_surrogate.c - the stand-in for a recipient source that could not be opened (missing
 * file, unknown type, bad LDAP section): every lookup answers UNAVAILABLE with the reason the
 * open failed, so the domain's on_unavailable decides (defer by default) instead of the daemon
 * dying or mail being rejected. Postfix's dict_surrogate.c is the model. */
#include "rcpt.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct rcpt_surrogate {
	char *spec;
	char reason[RCPT_REASON_MAX];
};

void *rcpt_surrogate_create(const char *spec, const char *reason)
{
	struct rcpt_surrogate *s = xcalloc(1, sizeof *s);

	s->spec = xstrdup(spec);
	snprintf(s->reason, sizeof s->reason, "unavailable: %s", reason);
	return s;
}

static void *rcpt_surrogate_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	return rcpt_surrogate_create("surrogate", arg);
}

static struct rcpt_query *rcpt_surrogate_lookup(void *state, struct event_base *base,
						 const struct rcpt_addr *addr, rcpt_answer_cb done, void *arg)
{
	struct rcpt_surrogate *s = state;
	struct rcpt_answer ans = { .verdict = RCPT_UNAVAILABLE, .source = s->spec };

	memcpy(ans.reason, s->reason, sizeof ans.reason);
	done(arg, &ans);
	return NULL;
}

static void rcpt_surrogate_cancel(struct rcpt_query *q) { (void)q; }

static void rcpt_surrogate_stats(void *state, FILE *out)
{
	struct rcpt_surrogate *s = state;
	fprintf(out, "surrogate_reason=\"%s\"\n", s->reason);
}

static void rcpt_surrogate_close(void *state)
{
	struct rcpt_surrogate *s = state;
	if (s == NULL)
		return;
	free(s->spec);
	free(s);
}

const struct rcpt_source_type rcpt_surrogate_type = {
	.prefix = "surrogate",
	.open = rcpt_surrogate_open,
	.lookup = rcpt_surrogate_lookup,
	.cancel = rcpt_surrogate_cancel,
	.reload = NULL,
	.stats = rcpt_surrogate_stats,
	.close = rcpt_surrogate_close,
};
