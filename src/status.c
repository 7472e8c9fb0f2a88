/* status.c - the text of `backstop status`, written from a stats snapshot: "name: value" lines,
 * then indented "key=value" lines under backends:, sources:, cache: and decisions:, named as the
 * metrics name them. */
#include "status.h"

#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config_value.h"
#include "connlimit.h"
#include "engine.h"
#include "stats_snapshot.h"

void status_time(uint64_t t, char *buf, size_t bufsz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *status_state(enum backend_state s)
{
	return s == BACKEND_HEALTHY ? "up" : s == BACKEND_FAILING ? "down" : "probing";
}

static void status_backends(const struct stats_snapshot *s, FILE *out)
{
	fprintf(out, "backends:\n");
	for (size_t i = 0; i < s->nbackends; i++) {
		const struct stats_backend *b = &s->backends[i];
		fprintf(out, "  backend=%s state=%s connections=%u waiting=%u trips=%lu\n", b->target,
			status_state(b->state), b->connections, b->waiting, b->trips);
	}
}

/* One line per source: its health and answers, then what its kind adds. */
static void status_sources(const struct stats_snapshot *s, FILE *out)
{
	fprintf(out, "sources:\n");
	for (size_t i = 0; i < s->nsources; i++) {
		const struct stats_source *x = &s->sources[i];
		fprintf(out, "  source=%s state=%s%s lookups=%llu valid=%llu invalid=%llu unavailable=%llu", x->spec,
			x->up ? "up" : "down", x->surrogate ? " surrogate=yes" : "", (unsigned long long)x->lookups,
			(unsigned long long)x->valid, (unsigned long long)x->invalid, (unsigned long long)x->unavailable);
		if (x->kind == STATS_SOURCE_MAP)
			fprintf(out, " loaded=%s entries=%llu loads=%llu load_failures=%llu", x->loaded ? "yes" : "no",
				(unsigned long long)x->entries, (unsigned long long)x->loads,
				(unsigned long long)x->load_failures);
		else if (x->kind == STATS_SOURCE_CALLOUT)
			fprintf(out, " probes=%llu connections=%llu connect_failures=%llu queued=%llu",
				(unsigned long long)x->probes, (unsigned long long)x->conns_open,
				(unsigned long long)x->connect_failures, (unsigned long long)x->queued);
		else if (x->kind == STATS_SOURCE_LDAP)
			fprintf(out, " connections=%llu inflight=%llu timeouts=%llu", (unsigned long long)x->pool_size,
				(unsigned long long)x->inflight, (unsigned long long)x->timeouts);
		fputc('\n', out);
	}
}

static void status_cache(const struct stats_snapshot *s, FILE *out)
{
	const struct stats_cache *c = &s->cache;
	const struct stats_verify *v = &s->verify;

	if (!c->configured) {
		fprintf(out, "cache: none (no domain verifies recipients)\n");
		return;
	}
	fprintf(out, "cache:\n  store=%s state=%s entries=%llu max_entries=%llu hits=%llu misses=%llu puts=%llu "
		"evicted=%llu write_errors=%llu\n", c->store, c->up ? "up" : "down", (unsigned long long)c->entries,
		(unsigned long long)c->max_entries, (unsigned long long)c->hits, (unsigned long long)c->misses,
		(unsigned long long)c->puts, (unsigned long long)c->evicted, (unsigned long long)c->write_errors);
	if (v->configured)
		fprintf(out, "  verify_lookups=%llu verify_cache_hits=%llu verify_cache_misses=%llu verify_timeouts=%llu "
			"verify_refreshes=%llu verify_background=%llu\n", (unsigned long long)v->lookups,
			(unsigned long long)v->cache_hits, (unsigned long long)v->cache_misses,
			(unsigned long long)v->timeouts, (unsigned long long)v->refreshes,
			(unsigned long long)v->background);
}

/* Per stage, what each check answered and what the stage decided (the decision engine). */
static void status_decisions(const struct stats_snapshot *s, FILE *out)
{
	fprintf(out, "decisions:\n");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		fprintf(out, "  %s=%s stage=%s", r->check ? "check" : "decision", r->check ? r->check : "stage",
			engine_stage_name(r->stage));
		for (int k = 0; k < CHECK_RESULT_COUNT; k++)
			fprintf(out, " %s=%llu", check_result_name((enum check_result)k),
				(unsigned long long)r->answers[k]);
		if (r->check)
			fprintf(out, " timeouts=%llu", (unsigned long long)r->timeouts);
		fputc('\n', out);
	}
}

void status_print(const struct status_view *v, FILE *out)
{
	const struct stats_snapshot *s = v->snap;
	uint64_t popen, padmitted, prefused;
	char when[32], up[32];

	cfgval_format_duration((s->now > s->start_time ? s->now - s->start_time : 0) * 1000, up, sizeof up);
	status_time(s->start_time, when, sizeof when);
	fprintf(out, "version: %s\npid: %ld\nuptime: %s (since %s)\n", s->version, (long)getpid(), up, when);
	status_time(v->loaded_at, when, sizeof when);
	fprintf(out, "config: %s\ngeneration: %llu (loaded %s, %zu domains)\nlast reload: %s\n", v->config_path,
		(unsigned long long)s->generation, when, v->ndomains, v->last_reload ? v->last_reload : "none");
	fprintf(out, "reloads: %llu applied, %llu refused\nworkers: %u\n", (unsigned long long)s->reloads_ok,
		(unsigned long long)s->reloads_failed, s->workers);
	fprintf(out, "sessions: %llu open, %llu accepted, %llu refused\n", (unsigned long long)s->smtp.open,
		(unsigned long long)s->smtp.accepted, (unsigned long long)s->smtp.refused);
	connlimit_counts(v->policy_limit, &popen, &padmitted, &prefused);
	fprintf(out, "policy connections: %llu open, %llu accepted\n", (unsigned long long)popen,
		(unsigned long long)padmitted);
	status_backends(s, out);
	status_sources(s, out);
	status_cache(s, out);
	status_decisions(s, out);
}
