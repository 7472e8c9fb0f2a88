/* status.c - the text of `backstop status`, written from a status_view: "name: value" lines, and
 * indented "key=value" lines under backends:, sources:, cache: and decisions:. */
#include "status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_health.h"
#include "config_value.h"
#include "connlimit.h"
#include "engine_stats.h"
#include "rcpt.h"
#include "runtime.h"
#include "vcache.h"
#include "verify.h"
#include "version.h"

void status_time(uint64_t t, char *buf, size_t bufsz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* What the circuit breaker says about one delivery target (absent: never failed). */
struct status_backend {
	const char *key;
	const struct backend_health_info *found;
	struct backend_health_info copy;
};

static void status_backend_cb(void *arg, const struct backend_health_info *v)
{
	struct status_backend *b = arg;

	if (strcmp(v->key, b->key) == 0) {
		b->copy = *v;
		b->found = &b->copy;
	}
}

static void status_backends(const struct status_view *v, FILE *out)
{
	const struct bs_config *cfg = v->rt->cfg;
	char key[300], shown[304];

	fprintf(out, "backends:\n");
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct bs_domain *d = &cfg->domains[i];
		for (size_t j = 0; j < d->deliver.n; j++) {
			snprintf(key, sizeof key, "%s:%s", d->deliver.items[j].host, d->deliver.items[j].port);
			struct status_backend b = { .key = key };
			backend_health_each(v->health, status_backend_cb, &b);
			const char *state = b.found == NULL || b.found->state == BACKEND_HEALTHY ? "up"
					    : b.found->state == BACKEND_FAILING ? "down" : "probing";
			bool v6 = strchr(d->deliver.items[j].host, ':') != NULL;
			snprintf(shown, sizeof shown, "%s%s%s:%s", v6 ? "[" : "", d->deliver.items[j].host, v6 ? "]" : "",
				 d->deliver.items[j].port);
			fprintf(out, "  backend=%s domain=%s state=%s", shown, d->name, state);
			if (b.found && b.found->state != BACKEND_HEALTHY)
				fprintf(out, " failures=%u last_failure=%llus_ago", b.found->failures,
					(unsigned long long)(b.found->since_ms / 1000));
			fputc('\n', out);
		}
	}
}

/* Lines written by fn(obj, f), each indented by two spaces. */
static void status_indented(FILE *out, void (*fn)(const struct status_view *v, FILE *f), const struct status_view *v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return;
	fn(v, f);
	fclose(f);
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		fprintf(out, "  %s\n", l);
	free(buf);
}

static void status_sources(const struct status_view *v, FILE *f)
{
	if (v->rt->reg)
		rcpt_registry_stats(v->rt->reg, f); /* "source=SPEC" (" surrogate=yes": unavailable), its figures */
}

static void status_cache(const struct status_view *v, FILE *f)
{
	vcache_stats(v->cache, f);
	if (v->rt->verifier)
		verifier_stats(v->rt->verifier, f);
}

static void status_decisions(const struct status_view *v, FILE *f)
{
	engine_stats_print(v->stats, f);
}

void status_print(const struct status_view *v, FILE *out)
{
	uint64_t now = (uint64_t)time(NULL), open, admitted, refused, popen, padmitted, prefused;
	char when[32], up[32];

	cfgval_format_duration((now - v->start_time) * 1000, up, sizeof up);
	status_time(v->start_time, when, sizeof when);
	fprintf(out, "version: %s\npid: %ld\nuptime: %s (since %s)\n", BACKSTOP_VERSION, (long)getpid(), up, when);
	status_time(v->loaded_at, when, sizeof when);
	fprintf(out, "config: %s\ngeneration: %u (loaded %s, %zu domains)\nlast reload: %s\nworkers: %u\n",
		v->rt->cfg->path, v->generation, when, v->rt->cfg->ndomains, v->last_reload ? v->last_reload : "none",
		v->workers);
	connlimit_counts(v->connlimit, &open, &admitted, &refused);
	connlimit_counts(v->policy_limit, &popen, &padmitted, &prefused);
	fprintf(out, "sessions: %llu open, %llu accepted, %llu refused by connection limits\n",
		(unsigned long long)open, (unsigned long long)admitted, (unsigned long long)refused);
	fprintf(out, "policy connections: %llu open, %llu accepted\n", (unsigned long long)popen,
		(unsigned long long)padmitted);
	status_backends(v, out);
	fprintf(out, "sources:\n");
	status_indented(out, status_sources, v);
	if (v->cache) {
		fprintf(out, "cache:\n");
		status_indented(out, status_cache, v);
	} else {
		fprintf(out, "cache: none (no domain verifies recipients)\n");
	}
	fprintf(out, "decisions:\n");
	status_indented(out, status_decisions, v);
}
