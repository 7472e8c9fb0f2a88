/* runtime.c - building, releasing and tearing down configuration generations (runtime.h). */
#include "runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"
#include "log.h"
#include "rcpt.h"
#include "tls.h"
#include "util.h"
#include "verify.h"

struct runtime_graveyard {
	pthread_mutex_t lock;
	struct grave_entry {
		struct bs_runtime *rt;
		unsigned idle_reaps; /* consecutive reaps that found it idle */
	} *items;
	size_t n, cap;
};

static void runtime_destroy(struct bs_runtime *rt)
{
	engine_free(rt->engine);
	if (rt->verifier)
		verifier_free(rt->verifier);
	if (rt->reg)
		rcpt_registry_close(rt->reg);
	SSL_CTX_free(rt->tls_server);
	SSL_CTX_free(rt->tls_client);
	for (size_t i = 0; rt->domain_tls && i < rt->cfg->ndomains; i++)
		SSL_CTX_free(rt->domain_tls[i]);
	free(rt->domain_tls);
	config_unref(rt->cfg);
	free(rt);
}

static int runtime_tls(struct bs_runtime *rt, char *why, size_t whysz)
{
	const struct bs_config *cfg = rt->cfg;
	const char *err = NULL;

	rt->tls_server = tls_server_ctx_new(cfg, &err);
	if (rt->tls_server == NULL && err != NULL) {
		snprintf(why, whysz, "%s: tls_cert/tls_key: %s", cfg->path, err);
		return -1;
	}
	rt->tls_client = tls_client_ctx_new(NULL, &err);
	if (rt->tls_client == NULL) {
		snprintf(why, whysz, "TLS client context: %s", err);
		return -1;
	}
	rt->domain_tls = xcalloc(cfg->ndomains, sizeof *rt->domain_tls);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct bs_domain *d = &cfg->domains[i];
		if (d->deliver_tls_ca == NULL)
			continue;
		rt->domain_tls[i] = tls_client_ctx_new(d->deliver_tls_ca, &err);
		if (rt->domain_tls[i] == NULL) {
			snprintf(why, whysz, "%s: [domain %s] deliver_tls_ca %s: %s", cfg->path, d->name,
				 d->deliver_tls_ca, err);
			return -1;
		}
	}
	return 0;
}

struct bs_runtime *runtime_new(struct bs_config *cfg, const struct runtime_opts *opts, char *why, size_t whysz)
{
	struct bs_runtime *rt = xcalloc(1, sizeof *rt);

	atomic_init(&rt->refs, 1);
	rt->cfg = cfg;
	if (runtime_tls(rt, why, whysz) != 0) {
		runtime_destroy(rt);
		return NULL;
	}
	if (opts->open_sources) {
		rt->reg = rcpt_registry_open(cfg);
		rt->verifier = verifier_new(cfg, rt->reg, opts->cache);
	}
	struct engine_env env = { .cfg = cfg, .verifier = rt->verifier, .stats = opts->stats,
				  .dns = opts->dns, .dns_arg = opts->dns_arg, .budgets = opts->budgets };
	rt->engine = engine_new(&env, why, whysz);
	if (rt->engine == NULL) {
		runtime_destroy(rt);
		return NULL;
	}
	rt->grave = opts->grave;
	return rt;
}

struct bs_runtime *runtime_ref(struct bs_runtime *rt)
{
	atomic_fetch_add(&rt->refs, 1);
	return rt;
}

void runtime_unref(struct bs_runtime *rt)
{
	if (rt == NULL || atomic_fetch_sub(&rt->refs, 1) != 1)
		return;
	struct runtime_graveyard *g = rt->grave;
	if (g == NULL) {
		runtime_destroy(rt);
		return;
	}
	pthread_mutex_lock(&g->lock);
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 4;
		g->items = xrealloc(g->items, g->cap * sizeof *g->items);
	}
	g->items[g->n++] = (struct grave_entry){ rt, 0 };
	pthread_mutex_unlock(&g->lock);
}

struct runtime_graveyard *runtime_graveyard_new(void)
{
	struct runtime_graveyard *g = xcalloc(1, sizeof *g);
	pthread_mutex_init(&g->lock, NULL);
	return g;
}

void runtime_graveyard_reap(struct runtime_graveyard *g, bool all)
{
	struct bs_runtime *dead[16];
	size_t ndead = 0;

	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < g->n && ndead < ARRAY_SIZE(dead);) {
		struct grave_entry *e = &g->items[i];
		bool idle = e->rt->verifier == NULL || verifier_background(e->rt->verifier) == 0;
		e->idle_reaps = idle ? e->idle_reaps + 1 : 0;
		/* idle twice in a row: a lookup that just finished has left the verifier for good */
		if (all || e->idle_reaps >= 2) {
			dead[ndead++] = e->rt;
			g->items[i] = g->items[--g->n];
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&g->lock);
	for (size_t i = 0; i < ndead; i++)
		runtime_destroy(dead[i]);
	if (all && g->n > 0)
		runtime_graveyard_reap(g, true);
}

void runtime_graveyard_free(struct runtime_graveyard *g)
{
	if (g == NULL)
		return;
	runtime_graveyard_reap(g, true);
	pthread_mutex_destroy(&g->lock);
	free(g->items);
	free(g);
}

void runtime_graveyard_shutdown_base(struct runtime_graveyard *g, struct event_base *base)
{
	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < g->n; i++)
		if (g->items[i].rt->verifier)
			verifier_shutdown_base(g->items[i].rt->verifier, base);
	pthread_mutex_unlock(&g->lock);
}
