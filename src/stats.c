/* stats.c - the per-worker counters of the SMTP front end and the process-wide facts: counting
 * helpers for the session, sums for readers, and the names their labels use. */
#include "stats.h"

#include <string.h>

#include "smtp_parse.h"
#include "util.h"

_Static_assert(SMTP_VERB_AUTH < STATS_VERB_INVALID, "STATS_VERBS too small for enum smtp_verb");

static const char *const end_names[STATS_END_COUNT] = {
	[STATS_END_QUIT] = "quit", [STATS_END_LOST] = "lost", [STATS_END_TIMEOUT] = "timeout",
	[STATS_END_ERRORS] = "too_many_errors", [STATS_END_JUNK] = "too_many_junk_commands",
	[STATS_END_PROTOCOL] = "protocol_error", [STATS_END_TLS] = "tls_error",
	[STATS_END_SHUTDOWN] = "shutdown", [STATS_END_OTHER] = "other",
};

static const char *const stage_names[STATS_STAGE_COUNT] = {
	[STATS_STAGE_CONNECT] = "connect", [STATS_STAGE_HELO] = "helo", [STATS_STAGE_MAIL] = "mail",
	[STATS_STAGE_RCPT] = "rcpt", [STATS_STAGE_DATA] = "data", [STATS_STAGE_EOD] = "end_of_data",
	[STATS_STAGE_OTHER] = "other",
};

static const char *const verb_names[STATS_VERBS] = {
	[SMTP_VERB_UNKNOWN] = "unknown", [SMTP_VERB_HELO] = "helo", [SMTP_VERB_EHLO] = "ehlo",
	[SMTP_VERB_MAIL] = "mail", [SMTP_VERB_RCPT] = "rcpt", [SMTP_VERB_DATA] = "data",
	[SMTP_VERB_RSET] = "rset", [SMTP_VERB_NOOP] = "noop", [SMTP_VERB_QUIT] = "quit",
	[SMTP_VERB_HELP] = "help", [SMTP_VERB_VRFY] = "vrfy", [SMTP_VERB_EXPN] = "expn",
	[SMTP_VERB_STARTTLS] = "starttls", [SMTP_VERB_BDAT] = "bdat", [SMTP_VERB_AUTH] = "auth",
	[STATS_VERB_INVALID] = "invalid",
};

const char *stats_end_name(enum stats_end e)
{
	return (unsigned)e < STATS_END_COUNT ? end_names[e] : "other";
}

const char *stats_stage_name(enum stats_stage s)
{
	return (unsigned)s < STATS_STAGE_COUNT ? stage_names[s] : "other";
}

const char *stats_verb_name(unsigned verb)
{
	return verb < STATS_VERBS && verb_names[verb] ? verb_names[verb] : NULL;
}

enum stats_stage stats_stage_of_verb(unsigned verb)
{
	switch (verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		return STATS_STAGE_HELO;
	case SMTP_VERB_MAIL:
		return STATS_STAGE_MAIL;
	case SMTP_VERB_RCPT:
		return STATS_STAGE_RCPT;
	case SMTP_VERB_DATA:
		return STATS_STAGE_DATA;
	default:
		return STATS_STAGE_OTHER;
	}
}

static int code_class(int code)
{
	return code >= 200 && code < 600 ? code / 100 - 2 : -1;
}

void stats_reply(struct stats_worker *w, enum stats_stage stage, int code)
{
	int k = code_class(code);
	if (w != NULL && k >= 0 && (unsigned)stage < STATS_STAGE_COUNT)
		stats_add(&w->replies[stage][k], 1);
}

void stats_backend_final(struct stats_worker *w, int code)
{
	int k = code_class(code);
	if (w != NULL && k >= 0)
		stats_add(&w->backend_final[k], 1);
}

void stats_command(struct stats_worker *w, unsigned verb)
{
	if (w != NULL)
		stats_add(&w->commands[verb < STATS_VERBS ? verb : 0], 1);
}

void stats_session_end(struct stats_worker *w, enum stats_end why)
{
	if (w != NULL)
		stats_add(&w->ended[(unsigned)why < STATS_END_COUNT ? why : STATS_END_OTHER], 1);
}

static uint64_t rd(atomic_ulong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void stats_sum(struct stats_worker *const *w, size_t n, struct stats_totals *out)
{
	uint64_t ended = 0;

	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		struct stats_worker *x = w[i];
		out->accepted += rd(&x->accepted);
		out->refused += rd(&x->refused);
		for (size_t k = 0; k < STATS_END_COUNT; k++)
			out->ended[k] += rd(&x->ended[k]);
		for (size_t k = 0; k < STATS_VERBS; k++)
			out->commands[k] += rd(&x->commands[k]);
		for (size_t s = 0; s < STATS_STAGE_COUNT; s++)
			for (size_t k = 0; k < STATS_CLASSES; k++)
				out->replies[s][k] += rd(&x->replies[s][k]);
		out->tls_ok += rd(&x->tls_ok);
		out->tls_failed += rd(&x->tls_failed);
		out->error_delays += rd(&x->error_delays);
		for (size_t k = 0; k < STATS_CLASSES; k++)
			out->backend_final[k] += rd(&x->backend_final[k]);
		out->pooled += rd(&x->pooled);
	}
	for (size_t k = 0; k < STATS_END_COUNT; k++)
		ended += out->ended[k];
	/* read without a common instant: an end counted before its start reads as 0 open */
	out->open = out->accepted > ended ? out->accepted - ended : 0;
}

void stats_process_init(struct stats_process *p, uint64_t start_time)
{
	memset(p, 0, sizeof *p);
	p->start_time = start_time;
	atomic_store(&p->generation, 1);
	atomic_store(&p->last_reload_ok, true);
}

void stats_process_reloaded(struct stats_process *p, bool ok, uint64_t now)
{
	if (ok) {
		atomic_fetch_add(&p->generation, 1);
		atomic_fetch_add(&p->reloads_ok, 1);
	} else {
		atomic_fetch_add(&p->reloads_failed, 1);
	}
	atomic_store(&p->last_reload_time, now);
	atomic_store(&p->last_reload_ok, ok);
}
