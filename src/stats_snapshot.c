/* stats_snapshot.c - gathers the daemon's figures into a struct stats_snapshot. Sources and
 * stores describe themselves as "key=value" text (their stats() functions, shared with the
 * CLI); that text is parsed here, so a new source type shows up without a change here. */
#include "stats_snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_slots.h"
#include "rcpt.h"
#include "runtime.h"
#include "util.h"
#include "vcache.h"
#include "verify.h"
#include "version.h"

void stats_kv_parse(const char *text, void (*fn)(void *arg, const char *key, const char *value), void *arg)
{
	char key[64], value[512];
	const char *p = text;

	while (*p) {
		while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
			p++;
		const char *eq = p;
		while (*eq && *eq != '=' && *eq != ' ' && *eq != '\n')
			eq++;
		if (*eq != '=') { /* not a key=value token: skip it */
			p = eq;
			continue;
		}
		size_t klen = (size_t)(eq - p);
		const char *v = eq + 1, *end;
		size_t vlen;
		if (*v == '"') {
			v++;
			end = strchr(v, '"');
			if (end == NULL)
				end = v + strlen(v);
			vlen = (size_t)(end - v);
			if (*end == '"')
				end++;
		} else {
			end = v;
			while (*end && *end != ' ' && *end != '\n' && *end != '\t')
				end++;
			vlen = (size_t)(end - v);
		}
		if (klen > 0 && klen < sizeof key) {
			memcpy(key, p, klen);
			key[klen] = '\0';
			if (vlen >= sizeof value)
				vlen = sizeof value - 1;
			memcpy(value, v, vlen);
			value[vlen] = '\0';
			fn(arg, key, value);
		}
		p = end;
	}
}

/* Run a stats() writer into a string (caller frees), or NULL. */
static char *stats_text(void (*write)(void *obj, FILE *out), void *obj)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return NULL;
	write(obj, f);
	fclose(f);
	return buf;
}

static uint64_t num(const char *v)
{
	return strtoull(v, NULL, 10);
}

static bool yes(const char *v)
{
	return strcmp(v, "yes") == 0;
}

/* ---- sources ---- */

struct source_parse {
	struct stats_snapshot *out;
	struct stats_source *cur;
};

static enum stats_source_kind source_kind(const char *type)
{
	if (strcmp(type, "map") == 0)
		return STATS_SOURCE_MAP;
	if (strcmp(type, "callout") == 0)
		return STATS_SOURCE_CALLOUT;
	if (strcmp(type, "ldap") == 0)
		return STATS_SOURCE_LDAP;
	return STATS_SOURCE_OTHER;
}

static void source_begin(struct source_parse *sp, const char *spec)
{
	struct stats_snapshot *out = sp->out;
	if (sp->cur != NULL && strcmp(sp->cur->spec, spec) == 0)
		return; /* the same source naming itself again */
	if (out->nsources == STATS_MAX_SOURCES) {
		sp->cur = NULL;
		return;
	}
	struct stats_source *s = &out->sources[out->nsources++];
	memset(s, 0, sizeof *s);
	snprintf(s->spec, sizeof s->spec, "%s", spec);
	size_t tl = strcspn(spec, ":");
	snprintf(s->type, sizeof s->type, "%.*s", (int)(tl < sizeof s->type ? tl : sizeof s->type - 1), spec);
	s->kind = source_kind(s->type);
	s->up = true;
	sp->cur = s;
}

static void source_kv(void *arg, const char *key, const char *v)
{
	struct source_parse *sp = arg;
	if (strcmp(key, "source") == 0) {
		source_begin(sp, v);
		return;
	}
	struct stats_source *s = sp->cur;
	if (s == NULL)
		return;
	if (strcmp(key, "surrogate") == 0)
		s->surrogate = yes(v);
	else if (strcmp(key, "lookups") == 0 || strcmp(key, "map_lookups") == 0)
		s->lookups = num(v);
	else if (strcmp(key, "valid") == 0 || strcmp(key, "map_found") == 0)
		s->valid = num(v);
	else if (strcmp(key, "invalid") == 0)
		s->invalid = num(v);
	else if (strcmp(key, "unavailable") == 0)
		s->unavailable = num(v);
	else if (strcmp(key, "map_loaded") == 0)
		s->loaded = yes(v);
	else if (strcmp(key, "map_entries") == 0)
		s->entries = num(v);
	else if (strcmp(key, "map_loads") == 0)
		s->loads = num(v);
	else if (strcmp(key, "map_load_failures") == 0)
		s->load_failures = num(v);
	else if (strcmp(key, "map_last_load_time") == 0)
		s->last_load_time = num(v);
	else if (strcmp(key, "map_last_load_ok") == 0)
		s->last_load_ok = yes(v);
	else if (strcmp(key, "probes") == 0)
		s->probes = num(v);
	else if (strcmp(key, "connections_open") == 0)
		s->conns_open = num(v);
	else if (strcmp(key, "connections_opened") == 0)
		s->conns_opened = num(v);
	else if (strcmp(key, "connect_failures") == 0)
		s->connect_failures = num(v);
	else if (strcmp(key, "waiting") == 0)
		s->waiting = num(v);
	else if (strcmp(key, "queued") == 0)
		s->queued = num(v);
	else if (strcmp(key, "down") == 0)
		s->up = num(v) == 0;
	else if (strcmp(key, "connections") == 0)
		s->pool_size = num(v);
	else if (strcmp(key, "inflight") == 0)
		s->inflight = num(v);
	else if (strcmp(key, "timeouts") == 0)
		s->timeouts = num(v);
}

static void registry_write(void *obj, FILE *out)
{
	rcpt_registry_stats(obj, out);
}

static void snapshot_sources(struct stats_snapshot *out, struct rcpt_registry *reg)
{
	struct source_parse sp = { .out = out };
	char *text = reg ? stats_text(registry_write, reg) : NULL;
	if (text == NULL)
		return;
	stats_kv_parse(text, source_kv, &sp);
	free(text);
	for (size_t i = 0; i < out->nsources; i++) {
		struct stats_source *s = &out->sources[i];
		if (s->kind == STATS_SOURCE_MAP) {
			s->up = s->loaded;
			/* a map answers valid (found) or invalid; unavailable only while nothing is loaded */
			s->invalid = s->loaded && s->lookups > s->valid ? s->lookups - s->valid : 0;
			s->unavailable = s->loaded ? 0 : s->lookups - s->valid;
		}
		if (s->surrogate) {
			s->up = false;
			s->unavailable = s->lookups;
		}
	}
}

/* ---- the verifier and the cache ---- */

static void verify_kv(void *arg, const char *key, const char *v)
{
	struct stats_verify *vs = arg;
	if (strcmp(key, "verify_lookups") == 0)
		vs->lookups = num(v);
	else if (strcmp(key, "verify_cache_hits") == 0)
		vs->cache_hits = num(v);
	else if (strcmp(key, "verify_cache_misses") == 0)
		vs->cache_misses = num(v);
	else if (strcmp(key, "verify_timeouts") == 0)
		vs->timeouts = num(v);
	else if (strcmp(key, "verify_refreshes") == 0)
		vs->refreshes = num(v);
	else if (strcmp(key, "verify_background") == 0)
		vs->background = num(v);
}

static void verifier_write(void *obj, FILE *out)
{
	verifier_stats(obj, out);
}

static void cache_kv(void *arg, const char *key, const char *v)
{
	struct stats_cache *c = arg;
	if (strcmp(key, "entries") == 0)
		c->entries = num(v);
	else if (strcmp(key, "max_entries") == 0)
		c->max_entries = num(v);
	else if (strcmp(key, "hits") == 0)
		c->hits = num(v);
	else if (strcmp(key, "misses") == 0)
		c->misses = num(v);
	else if (strcmp(key, "puts") == 0)
		c->puts = num(v);
	else if (strcmp(key, "evicted") == 0)
		c->evicted = num(v);
	else if (strcmp(key, "write_errors") == 0)
		c->write_errors = num(v);
	else if (strcmp(key, "up") == 0 || strcmp(key, "redis_reachable") == 0) /* a network store: reachable? */
		c->up = yes(v) || strcmp(v, "1") == 0;
}

static void cache_write(void *obj, FILE *out)
{
	vcache_stats(obj, out);
}

static void snapshot_cache(struct stats_snapshot *out, struct vcache *cache)
{
	struct stats_cache *c = &out->cache;
	if (cache == NULL)
		return;
	c->configured = true;
	c->up = true;
	size_t tl = strcspn(cache->spec, ":");
	snprintf(c->store, sizeof c->store, "%.*s", (int)(tl < sizeof c->store ? tl : sizeof c->store - 1),
		 cache->spec);
	char *text = stats_text(cache_write, cache);
	if (text != NULL)
		stats_kv_parse(text, cache_kv, c);
	free(text);
}

/* ---- backends ---- */

static struct stats_backend *backend_find(struct stats_snapshot *out, const char *target, bool add)
{
	for (size_t i = 0; i < out->nbackends; i++)
		if (strcmp(out->backends[i].target, target) == 0)
			return &out->backends[i];
	if (!add || out->nbackends == STATS_MAX_BACKENDS)
		return NULL;
	struct stats_backend *b = &out->backends[out->nbackends++];
	memset(b, 0, sizeof *b);
	snprintf(b->target, sizeof b->target, "%s", target);
	return b;
}

static void health_row(void *arg, const struct backend_health_info *info)
{
	struct stats_backend *b = backend_find(arg, info->key, false);
	if (b != NULL) {
		b->state = info->state;
		b->trips = info->trips;
	}
}

static void slots_row(void *arg, const char *key, unsigned in_use, unsigned waiting)
{
	struct stats_backend *b = backend_find(arg, key, false);
	if (b != NULL) {
		b->connections = in_use;
		b->waiting = waiting;
	}
}

/* The configured delivery targets (every domain's deliver list), with what the breaker and the
 * slot table know of them. Targets no longer configured are not shown. */
static void snapshot_backends(struct stats_snapshot *out, const struct bs_config *cfg, const struct stats_view *v)
{
	char key[STATS_NAME_MAX + 16];
	for (size_t d = 0; cfg != NULL && d < cfg->ndomains; d++) {
		const struct bs_hostport_list *l = &cfg->domains[d].deliver;
		for (size_t i = 0; i < l->n; i++) {
			snprintf(key, sizeof key, "%s:%s", l->items[i].host, l->items[i].port);
			key[STATS_NAME_MAX - 1] = '\0';
			backend_find(out, key, true);
		}
	}
	if (v->health != NULL)
		backend_health_each(v->health, health_row, out);
	if (v->slots != NULL)
		backend_slots_each(v->slots, slots_row, out);
}

/* ---- engine ---- */

static void engine_row(void *arg, const struct engine_stats_row *row)
{
	struct stats_snapshot *out = arg;
	if (out->nengine < STATS_ENGINE_ROWS)
		out->engine[out->nengine++] = *row;
}

static void verdict_row(void *arg, const struct engine_verdict_row *row)
{
	struct stats_snapshot *out = arg;
	if (out->nverdicts > ENGINE_VERDICT_SOURCES)
		return;
	struct stats_verdicts *v = &out->verdicts[out->nverdicts++];
	snprintf(v->source, sizeof v->source, "%s", row->source);
	memcpy(v->n, row->n, sizeof v->n);
}

static void outcome_row(void *arg, const struct engine_outcome_row *row)
{
	struct stats_snapshot *out = arg;
	if (out->noutcomes <= ENGINE_OUTCOMES)
		out->outcomes[out->noutcomes++] = *row;
}

uint64_t stats_decisions(const struct stats_snapshot *s, enum engine_stage stage, enum check_result r)
{
	for (size_t i = 0; i < s->nengine; i++)
		if (s->engine[i].check == NULL && s->engine[i].stage == stage)
			return s->engine[i].answers[r];
	return 0;
}

void stats_snapshot_fill(const struct stats_view *v, struct stats_snapshot *out)
{
	memset(out, 0, sizeof *out);
	out->now = (uint64_t)time(NULL);
	out->version = BACKSTOP_VERSION;
	out->workers = (unsigned)v->nworkers;
	if (v->process != NULL) {
		struct stats_process *p = v->process;
		out->start_time = p->start_time;
		out->generation = atomic_load(&p->generation);
		out->reloads_ok = atomic_load(&p->reloads_ok);
		out->reloads_failed = atomic_load(&p->reloads_failed);
		out->last_reload_time = atomic_load(&p->last_reload_time);
		out->last_reload_ok = atomic_load(&p->last_reload_ok);
	}
	stats_sum(v->workers, v->nworkers, &out->smtp);
	engine_stats_each(v->engine, engine_row, out);
	engine_stats_each_verdict(v->engine, verdict_row, out);
	engine_stats_each_outcome(v->engine, outcome_row, out);
	snapshot_cache(out, v->cache);
	struct bs_runtime *rt = v->runtime ? v->runtime(v->runtime_arg) : NULL;
	if (rt == NULL) {
		snapshot_backends(out, NULL, v);
		return;
	}
	snapshot_backends(out, rt->cfg, v);
	snprintf(out->hostname, sizeof out->hostname, "%s", rt->cfg->hostname ? rt->cfg->hostname : "");
	snapshot_sources(out, rt->reg);
	if (rt->verifier != NULL) {
		out->verify.configured = true;
		char *text = stats_text(verifier_write, rt->verifier);
		if (text != NULL)
			stats_kv_parse(text, verify_kv, &out->verify);
		free(text);
	}
	runtime_unref(rt);
}

void stats_snapshot_print(const struct stats_snapshot *s, FILE *out)
{
	static const char *const states[] = { "up", "down", "probing" };
	fprintf(out, "version=%s\nuptime_s=%llu\ngeneration=%llu\nlast_reload=%s\nlast_reload_time=%llu\nworkers=%u\n",
		s->version, (unsigned long long)(s->now > s->start_time ? s->now - s->start_time : 0),
		(unsigned long long)s->generation, s->last_reload_time == 0 ? "none" : s->last_reload_ok ? "applied" : "refused",
		(unsigned long long)s->last_reload_time, s->workers);
	fprintf(out, "sessions_open=%llu\nsessions_total=%llu\nsessions_refused=%llu\n", (unsigned long long)s->smtp.open,
		(unsigned long long)s->smtp.accepted, (unsigned long long)s->smtp.refused);
	fprintf(out, "rcpt_passed=%llu\nrcpt_rejected=%llu\nrcpt_deferred=%llu\n",
		(unsigned long long)(stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_NEUTRAL) +
				     stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_ACCEPT)),
		(unsigned long long)stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_REJECT),
		(unsigned long long)stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_DEFER));
	for (size_t i = 0; i < s->nbackends; i++)
		fprintf(out, "backend=%s state=%s connections=%u waiting=%u trips=%lu\n", s->backends[i].target,
			states[s->backends[i].state <= BACKEND_HALF_OPEN ? s->backends[i].state : 1], s->backends[i].connections,
			s->backends[i].waiting, s->backends[i].trips);
	for (size_t i = 0; i < s->nsources; i++)
		fprintf(out, "source=%s state=%s lookups=%llu valid=%llu invalid=%llu unavailable=%llu\n", s->sources[i].spec,
			s->sources[i].up ? "up" : "down", (unsigned long long)s->sources[i].lookups,
			(unsigned long long)s->sources[i].valid, (unsigned long long)s->sources[i].invalid,
			(unsigned long long)s->sources[i].unavailable);
	if (s->cache.configured)
		fprintf(out, "cache=%s state=%s entries=%llu hits=%llu misses=%llu\n", s->cache.store,
			s->cache.up ? "up" : "down", (unsigned long long)s->cache.entries, (unsigned long long)s->cache.hits,
			(unsigned long long)s->cache.misses);
}
