/* metrics.c - renders a stats snapshot as the Prometheus text format: one function per group
 * of families (process, SMTP, decisions, cache, backends, sources). The METRICS section of
 * backstop(8) lists the same names: keep them in step. */
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const class_names[STATS_CLASSES] = { "2xx", "3xx", "4xx", "5xx" };

static const char *state_name(enum backend_state st)
{
	return st == BACKEND_HEALTHY ? "healthy" : st == BACKEND_FAILING ? "failing" : "half_open";
}

static void render_process(const struct stats_snapshot *s, struct mbuf *b)
{
	metrics_family(b, "backstop_build_info", "gauge", "Always 1; the version backstop was built as.");
	metrics_sample(b, "backstop_build_info", (const char *[]){ "version", s->version, NULL }, 1);
	metrics_family(b, "backstop_start_time_seconds", "gauge", "When the daemon started, seconds since the epoch.");
	metrics_sample(b, "backstop_start_time_seconds", NULL, s->start_time);
	metrics_family(b, "backstop_workers", "gauge", "Worker threads serving SMTP.");
	metrics_sample(b, "backstop_workers", NULL, s->workers);
	metrics_family(b, "backstop_config_generation", "gauge",
		       "Configuration generation: 1 at start, one more per reload applied.");
	metrics_sample(b, "backstop_config_generation", NULL, s->generation);
	metrics_family(b, "backstop_config_reloads_total", "counter", "Configuration reloads by result.");
	metrics_sample(b, "backstop_config_reloads_total", (const char *[]){ "result", "success", NULL }, s->reloads_ok);
	metrics_sample(b, "backstop_config_reloads_total", (const char *[]){ "result", "failure", NULL },
		       s->reloads_failed);
	metrics_family(b, "backstop_config_last_reload_success", "gauge",
		       "1 if the last reload was applied (or none was tried), 0 if it was refused.");
	metrics_sample(b, "backstop_config_last_reload_success", NULL, s->last_reload_ok ? 1 : 0);
	metrics_family(b, "backstop_config_last_reload_timestamp_seconds", "gauge",
		       "When the last reload was tried, seconds since the epoch (0: never).");
	metrics_sample(b, "backstop_config_last_reload_timestamp_seconds", NULL, s->last_reload_time);
}

static void render_smtp(const struct stats_snapshot *s, struct mbuf *b)
{
	const struct stats_totals *t = &s->smtp;

	metrics_family(b, "backstop_sessions_open", "gauge", "SMTP sessions open now.");
	metrics_sample(b, "backstop_sessions_open", NULL, t->open);
	metrics_family(b, "backstop_sessions_total", "counter", "SMTP sessions accepted.");
	metrics_sample(b, "backstop_sessions_total", NULL, t->accepted);
	metrics_family(b, "backstop_sessions_refused_total", "counter",
		       "SMTP connections refused at once by max_connections or max_connections_per_ip.");
	metrics_sample(b, "backstop_sessions_refused_total", NULL, t->refused);
	metrics_family(b, "backstop_sessions_ended_total", "counter", "SMTP sessions ended, by reason.");
	for (int k = 0; k < STATS_END_COUNT; k++)
		metrics_sample(b, "backstop_sessions_ended_total",
			       (const char *[]){ "reason", stats_end_name((enum stats_end)k), NULL }, t->ended[k]);
	metrics_family(b, "backstop_smtp_commands_total", "counter", "SMTP commands received, by verb.");
	for (unsigned v = 0; v < STATS_VERBS; v++) {
		const char *name = stats_verb_name(v);
		if (name != NULL)
			metrics_sample(b, "backstop_smtp_commands_total", (const char *[]){ "command", name, NULL },
				       t->commands[v]);
	}
	metrics_family(b, "backstop_smtp_replies_total", "counter",
		       "SMTP replies sent to clients, by the stage they answer and reply class.");
	for (int st = 0; st < STATS_STAGE_COUNT; st++)
		for (int k = 0; k < STATS_CLASSES; k++)
			metrics_sample(b, "backstop_smtp_replies_total",
				       (const char *[]){ "stage", stats_stage_name((enum stats_stage)st), "class",
							 class_names[k], NULL },
				       t->replies[st][k]);
	metrics_family(b, "backstop_tls_handshakes_total", "counter", "STARTTLS handshakes with clients, by result.");
	metrics_sample(b, "backstop_tls_handshakes_total", (const char *[]){ "result", "success", NULL }, t->tls_ok);
	metrics_sample(b, "backstop_tls_handshakes_total", (const char *[]){ "result", "failure", NULL },
		       t->tls_failed);
	metrics_family(b, "backstop_smtp_error_delays_total", "counter",
		       "Refused RCPTs answered error_delay later (past error_delay_after errors in a session).");
	metrics_sample(b, "backstop_smtp_error_delays_total", NULL, t->error_delays);
}

static void ms_bounds(double *out)
{
	for (size_t i = 0; i < ENGINE_LATENCY_BUCKETS - 1; i++)
		out[i] = (double)engine_latency_bounds_ms[i] / 1000.0;
}

static void render_engine(const struct stats_snapshot *s, struct mbuf *b)
{
	double bounds[ENGINE_LATENCY_BUCKETS - 1];
	ms_bounds(bounds);

	metrics_family(b, "backstop_decisions_total", "counter",
		       "Decisions of the engine per SMTP or policy stage, by result (neutral: no check objected).");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		if (r->check != NULL)
			continue;
		for (int k = 0; k < CHECK_RESULT_COUNT; k++)
			metrics_sample(b, "backstop_decisions_total",
				       (const char *[]){ "stage", engine_stage_name(r->stage), "result",
							 check_result_name((enum check_result)k), NULL },
				       r->answers[k]);
	}
	metrics_family(b, "backstop_decision_duration_seconds", "histogram", "Time the engine took to decide a stage.");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		if (r->check == NULL)
			metrics_histogram(b, "backstop_decision_duration_seconds",
					  (const char *[]){ "stage", engine_stage_name(r->stage), NULL }, bounds,
					  r->latency_buckets, ENGINE_LATENCY_BUCKETS, (double)r->latency_sum_ms / 1000.0);
	}
	metrics_family(b, "backstop_check_answers_total", "counter",
		       "Answers of each check (relay, verify, ...) per stage, by result.");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		if (r->check == NULL)
			continue;
		for (int k = 0; k < CHECK_RESULT_COUNT; k++)
			metrics_sample(b, "backstop_check_answers_total",
				       (const char *[]){ "check", r->check, "stage", engine_stage_name(r->stage), "result",
							 check_result_name((enum check_result)k), NULL },
				       r->answers[k]);
	}
	metrics_family(b, "backstop_check_outcomes_total", "counter",
		       "What checks found, beside their answers: spf and spf_helo by SPF result, dnsbl listed or "
		       "clean (and list errors), harvest budgets tripped.");
	for (size_t i = 0; i < s->noutcomes; i++)
		metrics_sample(b, "backstop_check_outcomes_total",
			       (const char *[]){ "check", s->outcomes[i].check, "outcome", s->outcomes[i].outcome, NULL },
			       s->outcomes[i].n);
	metrics_family(b, "backstop_check_timeouts_total", "counter",
		       "Checks still running when their stage's deadline passed.");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		if (r->check != NULL)
			metrics_sample(b, "backstop_check_timeouts_total",
				       (const char *[]){ "check", r->check, "stage", engine_stage_name(r->stage), NULL },
				       r->timeouts);
	}
	metrics_family(b, "backstop_check_duration_seconds", "histogram",
		       "Time each check took to answer; check=\"verify\" is the recipient verification latency.");
	for (size_t i = 0; i < s->nengine; i++) {
		const struct engine_stats_row *r = &s->engine[i];
		if (r->check != NULL)
			metrics_histogram(b, "backstop_check_duration_seconds",
					  (const char *[]){ "check", r->check, "stage", engine_stage_name(r->stage), NULL },
					  bounds, r->latency_buckets, ENGINE_LATENCY_BUCKETS,
					  (double)r->latency_sum_ms / 1000.0);
	}
}

static void render_verify(const struct stats_snapshot *s, struct mbuf *b)
{
	const struct stats_verify *v = &s->verify;
	const struct stats_cache *c = &s->cache;
	const char *const *store = (const char *[]){ "store", c->store, NULL };

	if (v->configured) {
		metrics_family(b, "backstop_verify_lookups_total", "counter",
			       "Recipient verifications started (this configuration generation).");
		metrics_sample(b, "backstop_verify_lookups_total", NULL, v->lookups);
		metrics_family(b, "backstop_verify_timeouts_total", "counter",
			       "Verifications that ran past verify_timeout (answered unavailable, finished in the background).");
		metrics_sample(b, "backstop_verify_timeouts_total", NULL, v->timeouts);
		metrics_family(b, "backstop_verify_background_lookups", "gauge",
			       "Verifications still running in the background.");
		metrics_sample(b, "backstop_verify_background_lookups", NULL, v->background);
	}
	metrics_family(b, "backstop_verify_verdicts_total", "counter",
		       "Verdicts of recipient verification by the source that gave them and whether the cache answered.");
	for (size_t i = 0; i < s->nverdicts; i++) {
		static const char *const names[ENGINE_VERDICTS] = { "valid", "invalid", "unavailable" };
		for (int k = 0; k < ENGINE_VERDICTS; k++)
			for (int c2 = 0; c2 < 2; c2++)
				metrics_sample(b, "backstop_verify_verdicts_total",
					       (const char *[]){ "source", s->verdicts[i].source, "verdict", names[k], "cached",
								 c2 ? "yes" : "no", NULL },
					       s->verdicts[i].n[k][c2]);
	}
	if (!c->configured)
		return;
	metrics_family(b, "backstop_verdict_cache_up", "gauge", "1 if the verdict cache is usable.");
	metrics_sample(b, "backstop_verdict_cache_up", store, c->up ? 1 : 0);
	metrics_family(b, "backstop_verdict_cache_hits_total", "counter", "Verdict cache lookups that found a verdict.");
	metrics_sample(b, "backstop_verdict_cache_hits_total", store, c->hits);
	metrics_family(b, "backstop_verdict_cache_misses_total", "counter", "Verdict cache lookups that found nothing.");
	metrics_sample(b, "backstop_verdict_cache_misses_total", store, c->misses);
	metrics_family(b, "backstop_verdict_cache_entries", "gauge", "Verdicts stored.");
	metrics_sample(b, "backstop_verdict_cache_entries", store, c->entries);
	metrics_family(b, "backstop_verdict_cache_max_entries", "gauge", "Verdicts the store keeps at most.");
	metrics_sample(b, "backstop_verdict_cache_max_entries", store, c->max_entries);
	metrics_family(b, "backstop_verdict_cache_puts_total", "counter", "Verdicts stored.");
	metrics_sample(b, "backstop_verdict_cache_puts_total", store, c->puts);
	metrics_family(b, "backstop_verdict_cache_evictions_total", "counter", "Verdicts evicted to make room.");
	metrics_sample(b, "backstop_verdict_cache_evictions_total", store, c->evicted);
	metrics_family(b, "backstop_verdict_cache_write_errors_total", "counter", "Writes the store failed.");
	metrics_sample(b, "backstop_verdict_cache_write_errors_total", store, c->write_errors);
}

static void render_backends(const struct stats_snapshot *s, struct mbuf *b)
{
	metrics_family(b, "backstop_backend_up", "gauge",
		       "1 unless the circuit breaker skips the delivery target (failing or probing).");
	for (size_t i = 0; i < s->nbackends; i++)
		metrics_sample(b, "backstop_backend_up", (const char *[]){ "target", s->backends[i].target, NULL },
			       s->backends[i].state == BACKEND_HEALTHY);
	metrics_family(b, "backstop_backend_state", "gauge", "Circuit breaker state of each delivery target (1 = current).");
	for (size_t i = 0; i < s->nbackends; i++)
		for (int st = BACKEND_HEALTHY; st <= BACKEND_HALF_OPEN; st++)
			metrics_sample(b, "backstop_backend_state",
				       (const char *[]){ "target", s->backends[i].target, "state",
							 state_name((enum backend_state)st), NULL },
				       s->backends[i].state == (enum backend_state)st);
	metrics_family(b, "backstop_backend_connections", "gauge",
		       "Connections open to each delivery target, idle pooled ones included.");
	for (size_t i = 0; i < s->nbackends; i++)
		metrics_sample(b, "backstop_backend_connections", (const char *[]){ "target", s->backends[i].target, NULL },
			       s->backends[i].connections);
	metrics_family(b, "backstop_backend_connection_waiters", "gauge",
		       "Transactions waiting for a connection slot (deliver_max_connections).");
	for (size_t i = 0; i < s->nbackends; i++)
		metrics_sample(b, "backstop_backend_connection_waiters",
			       (const char *[]){ "target", s->backends[i].target, NULL }, s->backends[i].waiting);
	metrics_family(b, "backstop_backend_breaker_trips_total", "counter",
		       "Times the circuit breaker of a delivery target opened.");
	for (size_t i = 0; i < s->nbackends; i++)
		metrics_sample(b, "backstop_backend_breaker_trips_total",
			       (const char *[]){ "target", s->backends[i].target, NULL }, s->backends[i].trips);
	metrics_family(b, "backstop_backend_pooled_connections", "gauge",
		       "Idle backend connections kept for the next session, all targets.");
	metrics_sample(b, "backstop_backend_pooled_connections", NULL, s->smtp.pooled);
	metrics_family(b, "backstop_backend_final_replies_total", "counter",
		       "Backends' replies to the end of data relayed to clients, by class.");
	for (int k = 0; k < STATS_CLASSES; k++)
		metrics_sample(b, "backstop_backend_final_replies_total", (const char *[]){ "class", class_names[k], NULL },
			       s->smtp.backend_final[k]);
}

/* Per-source figures of one kind of source: name, type, help, kind, field (uint64_t). */
struct source_metric {
	const char *name, *type, *help;
	enum stats_source_kind kind;
	size_t offset;
};

#define SF(f) offsetof(struct stats_source, f)
static const struct source_metric source_metrics[] = {
	{ "backstop_map_entries", "gauge", "Entries of each map: source being served.", STATS_SOURCE_MAP, SF(entries) },
	{ "backstop_map_last_load_timestamp_seconds", "gauge",
	  "When the map was last loaded (or tried), seconds since the epoch.", STATS_SOURCE_MAP, SF(last_load_time) },
	{ "backstop_callout_connections", "gauge", "Connections open to each validation server.", STATS_SOURCE_CALLOUT,
	  SF(conns_open) },
	{ "backstop_callout_connections_opened_total", "counter", "Connections opened to each validation server.",
	  STATS_SOURCE_CALLOUT, SF(conns_opened) },
	{ "backstop_callout_connect_failures_total", "counter",
	  "Connections to each validation server that failed (refused, timed out, 4xx banner).", STATS_SOURCE_CALLOUT,
	  SF(connect_failures) },
	{ "backstop_callout_inflight", "gauge", "Lookups waiting for a validation server's answer.", STATS_SOURCE_CALLOUT,
	  SF(waiting) },
	{ "backstop_callout_queued", "gauge", "Addresses waiting for a connection to a validation server.",
	  STATS_SOURCE_CALLOUT, SF(queued) },
	{ "backstop_callout_probes_total", "counter", "RCPT probes sent to each validation server.", STATS_SOURCE_CALLOUT,
	  SF(probes) },
	{ "backstop_ldap_pool_connections", "gauge", "Connections (threads) of each LDAP pool.", STATS_SOURCE_LDAP,
	  SF(pool_size) },
	{ "backstop_ldap_inflight", "gauge", "LDAP lookups queued or being searched.", STATS_SOURCE_LDAP, SF(inflight) },
	{ "backstop_ldap_timeouts_total", "counter",
	  "LDAP lookups that found no free connection in time or whose search timed out.", STATS_SOURCE_LDAP,
	  SF(timeouts) },
};
#undef SF

static void render_sources(const struct stats_snapshot *s, struct mbuf *b)
{
	static const char *const verdicts[3] = { "valid", "invalid", "unavailable" };
#define SRC(i) (const char *[]){ "source", s->sources[i].spec, "type", s->sources[i].type, NULL }
#define KIND(i, k) (s->sources[i].kind == (k))

	metrics_family(b, "backstop_source_up", "gauge",
		       "1 if a recipient source can answer (map loaded, validation server not skipped, opened).");
	for (size_t i = 0; i < s->nsources; i++)
		metrics_sample(b, "backstop_source_up", SRC(i), s->sources[i].up);
	metrics_family(b, "backstop_source_lookups_total", "counter",
		       "Lookups asked of each recipient source (this configuration generation).");
	for (size_t i = 0; i < s->nsources; i++)
		metrics_sample(b, "backstop_source_lookups_total", SRC(i), s->sources[i].lookups);
	metrics_family(b, "backstop_source_answers_total", "counter", "Answers of each recipient source, by verdict.");
	for (size_t i = 0; i < s->nsources; i++) {
		const struct stats_source *x = &s->sources[i];
		const uint64_t n[3] = { x->valid, x->invalid, x->unavailable };
		for (int k = 0; k < 3; k++)
			metrics_sample(b, "backstop_source_answers_total",
				       (const char *[]){ "source", x->spec, "type", x->type, "verdict", verdicts[k], NULL },
				       n[k]);
	}
	for (size_t m = 0; m < ARRAY_SIZE(source_metrics); m++) {
		const struct source_metric *sm = &source_metrics[m];
		metrics_family(b, sm->name, sm->type, sm->help);
		for (size_t i = 0; i < s->nsources; i++) {
			const struct stats_source *x = &s->sources[i];
			if (!KIND(i, sm->kind) || x->surrogate)
				continue;
			metrics_sample(b, sm->name, SRC(i), *(const uint64_t *)(const void *)((const char *)x + sm->offset));
		}
	}
	metrics_family(b, "backstop_map_loads_total", "counter", "Loads of each map: source, by result.");
	for (size_t i = 0; i < s->nsources; i++) {
		const struct stats_source *x = &s->sources[i];
		if (!KIND(i, STATS_SOURCE_MAP) || x->surrogate)
			continue;
		metrics_sample(b, "backstop_map_loads_total",
			       (const char *[]){ "source", x->spec, "type", x->type, "result", "success", NULL },
			       x->loads - x->load_failures);
		metrics_sample(b, "backstop_map_loads_total",
			       (const char *[]){ "source", x->spec, "type", x->type, "result", "failure", NULL },
			       x->load_failures);
	}
	metrics_family(b, "backstop_map_last_load_success", "gauge", "1 if the last load of the map succeeded.");
	for (size_t i = 0; i < s->nsources; i++)
		if (KIND(i, STATS_SOURCE_MAP) && !s->sources[i].surrogate)
			metrics_sample(b, "backstop_map_last_load_success", SRC(i), s->sources[i].last_load_ok);
#undef SRC
#undef KIND
}

void metrics_render(const struct stats_snapshot *s, struct mbuf *b)
{
	render_process(s, b);
	render_smtp(s, b);
	render_engine(s, b);
	render_verify(s, b);
	render_backends(s, b);
	render_sources(s, b);
}
