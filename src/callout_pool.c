/* callout_pool.c - the callout pool itself: lookups in, scheduling of queued flights onto
 * connections (with the circuit breaker), start and shutdown. See callout_pool.h; the parts are
 * callout_flight.c (single-flight), callout_catchall.c and callout_conn.c. */
#include "callout_pool.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend_health.h"
#include "callout_catchall.h"
#include "callout_conn.h"
#include "callout_flight.h"
#include "callout_pool_priv.h"
#include "callout_rate.h"
#include "dns.h"
#include "util.h"

#define POOL_QUEUE_MAX 20000       /* flights waiting for a connection; more answer UNAVAILABLE */

/* ---- answers ---- */

void callout_pool_count(struct callout_pool *p, enum rcpt_verdict v)
{
	struct callout_counters *k = p->o.counters;
	atomic_fetch_add(v == RCPT_VALID ? &k->valid : v == RCPT_INVALID ? &k->invalid : &k->unavailable, 1);
}

void callout_pool_reason(char *buf, size_t bufsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, bufsz, fmt, ap);
	va_end(ap);
}

void callout_pool_answer(struct callout_pool *p, struct rcpt_answer *a, enum rcpt_verdict v, const char *fmt, ...)
{
	va_list ap;

	a->verdict = v;
	a->source = p->spec;
	a->catchall = false;
	a->rate_limited = false;
	va_start(ap, fmt);
	vsnprintf(a->reason, sizeof a->reason, fmt, ap);
	va_end(ap);
}

/* ---- scheduling ---- */

/* Give queued flights to idle connections; open connections while there is more work than the
 * ones being opened will take. */
static void pool_schedule(struct callout_pool *p)
{
	callout_flight_expire(p, now_ms());
	for (unsigned i = 0; i < p->o.max_conns && !TAILQ_EMPTY(&p->queue); i++) {
		struct cconn *c = p->conns[i];
		if (c && c->st == CC_IDLE && !smtp_client_usable(c->client))
			callout_conn_close(c, false); /* the server closed it while idle */
		else if (c && c->st == CC_IDLE)
			callout_conn_start_batch(c);
	}
	for (unsigned i = 0; i < p->o.max_conns && !p->closing; i++) {
		unsigned opening = callout_conn_count(p, CC_RESOLVING, false) + callout_conn_count(p, CC_CONNECTING, false);
		if (p->conns[i] || p->queued <= (size_t)opening * POOL_BATCH_MAX)
			continue;
		if (!backend_health_try(p->health, p->key, p->o.retry_after_ms)) {
			if (callout_conn_count(p, CC_IDLE, true) == 0) {
				char why[RCPT_REASON_MAX];
				callout_pool_reason(why, sizeof why,
						    "%s:%s: not answering (connections failed; next try within %llu s)",
						    p->host, p->port, (unsigned long long)(p->o.retry_after_ms / 1000));
				callout_flight_fail_queued(p, why);
			}
			break;
		}
		callout_conn_open(p, i);
	}
}

static void pool_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	callout_flight_ready_drain(arg);
	pool_schedule(arg);
}

void callout_pool_kick(struct callout_pool *p)
{
	if (!p->closing)
		event_active(p->kick, EV_TIMEOUT, 0);
}

/* ---- the interface ---- */

/* An answer for w now (from the loop): UNAVAILABLE, why. */
static void pool_refuse(struct callout_pool *p, struct callout_waiter *w, const char *why, size_t n)
{
	struct rcpt_answer a;

	callout_pool_answer(p, &a, RCPT_UNAVAILABLE, "%s:%s: %zu %s", p->host, p->port, n, why);
	callout_pool_count(p, RCPT_UNAVAILABLE);
	callout_flight_ready(p, &a, w);
}

struct callout_waiter *callout_pool_lookup(struct callout_pool *p, const char *addr, callout_answer_cb cb,
					   void *arg)
{
	struct callout_waiter *w = xcalloc(1, sizeof *w);
	struct flight *f;

	w->cb = cb;
	w->arg = arg;
	callout_flight_expire(p, now_ms());
	f = callout_flight_find(p, addr);
	if (f != NULL) {
		atomic_fetch_add(&p->o.counters->shared, 1);
		if (f->state == FL_DONE)
			callout_flight_ready(p, &f->ans, w);
		else if (!callout_flight_wait(p, f, w))
			pool_refuse(p, w, "lookups already wait for this address", f->nwaiters);
		return w;
	}
	if (p->queued >= POOL_QUEUE_MAX) {
		pool_refuse(p, w, "addresses already waiting", p->queued);
		return w;
	}
	f = xcalloc(1, sizeof *f);
	snprintf(f->addr, sizeof f->addr, "%s", addr);
	LIST_INIT(&f->waiters);
	callout_flight_wait(p, f, w);
	f->dom = callout_catchall_domain(p, addr);
	callout_flight_add(p, f);
	callout_catchall_check(p, f->dom);
	callout_flight_enqueue(p, f, false);
	callout_pool_kick(p);
	return w;
}

void callout_pool_cancel(struct callout_pool *p, struct callout_waiter *w)
{
	callout_flight_unwait(p, w);
}

/* The gateways' shared rate answered: schedule again. */
static void pool_share_wake(void *arg)
{
	callout_pool_kick(arg);
}

struct callout_pool *callout_pool_new(struct event_base *base, const struct callout_pool_opts *opts,
				      char *why, size_t whysz)
{
	struct callout_pool *p = xcalloc(1, sizeof *p);
	const char *err = NULL;

	p->dns = dns_resolver_new_opts(base, (unsigned)(opts->timeout_ms < 5000 ? opts->timeout_ms : 5000), 2, &err);
	if (p->dns == NULL) {
		snprintf(why, whysz, "cannot start the resolver: %s", err ? err : "?");
		free(p);
		return NULL;
	}
	if (dns_resolver_set_servers(p->dns, opts->dns_servers) < 0) {
		snprintf(why, whysz, "dns_servers = %s: not usable", opts->dns_servers);
		dns_resolver_free(p->dns);
		free(p);
		return NULL;
	}
	p->base = base;
	p->o = *opts;
	p->o.max_conns = opts->max_conns ? opts->max_conns : 1;
	p->spec = xstrdup(opts->spec);
	p->host = xstrdup(opts->host);
	p->port = xstrdup(opts->port);
	p->sender = xstrdup(opts->sender ? opts->sender : "");
	p->helo = xstrdup(opts->helo ? opts->helo : "localhost");
	p->key = xcalloc(1, strlen(p->host) + strlen(p->port) + 2);
	sprintf(p->key, "%s:%s", p->host, p->port);
	p->ttls = xcalloc(opts->nttls + 1, sizeof *p->ttls);
	for (size_t i = 0; i < opts->nttls; i++)
		p->ttls[i] = (struct callout_domain_ttl){ xstrdup(opts->ttls[i].name), opts->ttls[i].positive_ttl_ms };
	p->o.ttls = p->ttls;
	p->health = backend_health_new();
	p->rate = callout_rate_get(p->key, opts->max_rate);
	p->share = callout_share_new(base, p->key, pool_share_wake, p);
	p->conns = xcalloc(p->o.max_conns, sizeof *p->conns);
	p->tsize = 256;
	p->table = xcalloc(p->tsize, sizeof *p->table);
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->memo);
	TAILQ_INIT(&p->ready);
	p->kick = event_new(base, -1, 0, pool_kick_cb, p);
	return p;
}

/* Answer everything still waiting ("shutting down") and free every flight and domain. */
static void pool_drain_all(struct callout_pool *p)
{
	for (unsigned i = 0; i < p->o.max_conns; i++)
		if (p->conns[i] != NULL)
			callout_conn_shutdown(p->conns[i]);
	callout_flight_fail_queued(p, "shutting down");
	callout_catchall_free(p);
	callout_flight_ready_drain(p);
	callout_flight_free_memo(p);
}

void callout_pool_free(struct callout_pool *p)
{
	if (p == NULL)
		return;
	p->closing = true;
	pool_drain_all(p);
	dns_resolver_free(p->dns);
	backend_health_free(p->health);
	callout_share_free(p->share);
	callout_rate_put(p->rate);
	event_free(p->kick);
	for (size_t i = 0; i < p->o.nttls; i++)
		free((char *)(uintptr_t)p->ttls[i].name);
	free(p->ttls);
	free(p->conns);
	free(p->table);
	free(p->spec);
	free(p->host);
	free(p->port);
	free(p->sender);
	free(p->helo);
	free(p->key);
	free(p);
}

void callout_pool_note_health(struct callout_pool *p)
{
	if (p->o.counters != NULL)
		atomic_store_explicit(&p->o.counters->down, backend_health_state(p->health, p->key) != BACKEND_HEALTHY,
				      memory_order_relaxed);
}

void callout_pool_forget(struct callout_pool *p)
{
	callout_flight_forget(p);
}
