/* runtime.h - one generation of everything built from a configuration: the config itself, the
 * TLS contexts, the recipient sources, the verifier over them and the decision engine. Sessions
 * hold a reference to the generation they started with; SIGHUP builds a new generation and swaps
 * it in. A released
 * generation goes to the graveyard and is torn down on the main thread once its background
 * lookups have finished, so that no worker ever blocks on closing sources. */
#ifndef BACKSTOP_RUNTIME_H
#define BACKSTOP_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "engine.h" /* engine_dns_fn */

struct rcpt_registry;
struct vcache;
struct verifier;
struct engine;
struct engine_stats;
struct budget_store;
struct runtime_graveyard;

struct bs_runtime {
	atomic_int refs;
	struct bs_config *cfg;  /* owned (one reference) */
	SSL_CTX *tls_server;    /* STARTTLS towards clients; NULL when not configured */
	SSL_CTX *tls_client;    /* towards backends without a CA (opportunistic) */
	SSL_CTX **domain_tls;   /* per cfg->domains[i]: verifying context (deliver_tls_ca), or NULL */
	struct rcpt_registry *reg;   /* recipient sources (NULL when not opened) */
	struct verifier *verifier;   /* over reg and the process-wide cache */
	struct engine *engine;       /* the decision engine's checks over all of the above */
	struct runtime_graveyard *grave; /* where the last unref sends it; NULL: freed at once */
};

struct runtime_opts {
	bool open_sources;               /* open the recipient sources and build the verifier */
	struct vcache *cache;            /* process-wide verdict cache (borrowed), or NULL */
	struct engine_stats *stats;      /* process-wide decision counters (borrowed), or NULL */
	struct budget_store *budgets;    /* process-wide harvest budgets (borrowed), or NULL */
	struct runtime_graveyard *grave;
	engine_dns_fn dns;               /* the loops' resolvers (engine.h), or NULL */
	void *dns_arg;
};

/* Build a generation from a loaded config (takes over the caller's config reference, also on
 * failure). On failure returns NULL and writes why (e.g. the certificate does not load). */
struct bs_runtime *runtime_new(struct bs_config *cfg, const struct runtime_opts *opts, char *why, size_t whysz);
struct bs_runtime *runtime_ref(struct bs_runtime *rt);
void runtime_unref(struct bs_runtime *rt);

struct runtime_graveyard *runtime_graveyard_new(void);
/* Main thread: tear down released generations that are idle (all = at exit, loops stopped). */
void runtime_graveyard_reap(struct runtime_graveyard *g, bool all);
void runtime_graveyard_free(struct runtime_graveyard *g);
/* At exit, loops stopped: cancel the background lookups of every released generation on base. */
void runtime_graveyard_shutdown_base(struct runtime_graveyard *g, struct event_base *base);

#endif
