/* checks.c - the registry of the decision engine's checks, in the order they run at each stage
 * (backstop.conf(5), DECISIONS). A new check is one file and one row here. */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Before the banner: the harvest penalty. At CONNECT: DNS blocklist scores. At MAIL: SPF. At
 * RCPT: relay control first (is it ours at all?), then SPF's result under the recipient domain's
 * actions, then the harvest budgets (a client over its budget of unknown recipients is deferred
 * without a probe), then recipient verification: no recipient lookup is paid for before. */
const struct check_type *const check_types[] = {
	&check_relay_type,
	&check_spf_type,
	&check_harvest_type,
	&check_verify_type,
	&check_dnsbl_type,
};
const size_t check_types_count = ARRAY_SIZE(check_types);

static const struct check_type *const *override = NULL; /* checks_override_for_tests() */
static size_t override_n = 0;

void checks_override_for_tests(const struct check_type *const *types, size_t n)
{
	override = types;
	override_n = types ? n : 0;
}

const struct check_type *const *checks_registry(size_t *n)
{
	*n = override ? override_n : check_types_count;
	return override ? override : check_types;
}

void checks_validate(struct cfg_loader *L)
{
	for (size_t i = 0; i < check_types_count; i++)
		if (check_types[i]->validate)
			check_types[i]->validate(L);
}

void check_answer_neutral(struct check_answer *a)
{
	a->result = CHECK_NEUTRAL;
	a->code = 0;
	a->enhanced[0] = a->text[0] = a->log[0] = a->headers[0] = a->facts[0] = '\0';
	a->rcpt_invalid = false;
}

void check_answer_set(struct check_answer *a, enum check_result r, int code, const char *enhanced,
		      const char *fmt, ...)
{
	va_list ap;

	check_answer_neutral(a);
	a->result = r;
	a->code = code;
	snprintf(a->enhanced, sizeof a->enhanced, "%s", enhanced ? enhanced : "");
	va_start(ap, fmt);
	if (vsnprintf(a->text, sizeof a->text, fmt, ap) < 0)
		a->text[0] = '\0';
	va_end(ap);
}

void check_answer_set_text(struct check_answer *a, enum check_result r, int code, const char *enhanced,
			   const char *text)
{
	check_answer_neutral(a);
	a->result = r;
	a->code = code;
	strbuf_append(a->enhanced, sizeof a->enhanced, enhanced ? enhanced : "");
	strbuf_append(a->text, sizeof a->text, text);
}
