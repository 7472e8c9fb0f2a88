/* rcpt_callout.c - the callout:HOST:PORT recipient source: ask a validation server (Exchange's
 * recipient validation, a Postfix with relay_recipient_maps) with EHLO, MAIL FROM:<sender> and
 * RCPT TO:<addr>, never DATA. One dedicated thread with its own event loop owns the server's
 * connections (callout_pool.c); workers post lookups to it through a locked inbox and get the
 * answer back on their own loop through an event made at lookup time. Verdicts: callout_verdict()
 * (2xx VALID, 5.1.x INVALID, policy 5xx, 4xx, timeouts, refused connections UNAVAILABLE). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__ /* defined by the headers above */
#include <malloc.h>
#endif

#include <event2/event.h>

#include "callout_pool.h"
#include "config_check.h"
#include "config_value.h"
#include "log.h"
#include "rcpt.h"
#include "util.h"

#define CALLOUT_LIVE_MAX 50000     /* lookups in progress per server; more are UNAVAILABLE at once */
#define CALLOUT_TRIM_PEAK 256      /* a burst of this many lookups at once, once drained, ... */
#define CALLOUT_TRIM_EVERY_MS 2000 /* ... gives its memory back to the system within this */

struct rcpt_callout {
	char *spec;                  /* "callout:host:port" */
	struct callout_counters counters;
	struct event_base *base;     /* the callout thread's loop */
	struct event *wake;          /* inbox not empty, or stop */
	struct callout_pool *pool;   /* on the callout thread only */
	pthread_t thread;
	pthread_mutex_t lock;        /* inbox, stop, and each query's cancelled/answered */
	struct rcpt_query *inbox, *inbox_tail;
	struct rcpt_query *cancels;  /* cancelled while waiting: the callout thread frees them */
	atomic_bool stop;            /* read by the callout thread without the lock */
	atomic_bool forget;          /* a verdict was purged: drop the pool's remembered answers */
	atomic_ulong lookups;
	atomic_ulong live, live_peak; /* queries allocated and not yet freed; most since the last trim */
	struct event *trim;          /* on the callout thread: callout_trim() */
};

struct rcpt_query {
	struct rcpt_query *next;     /* inbox */
	struct rcpt_query *cnext;    /* cancels */
	struct rcpt_callout *src;
	struct event *ev;            /* on the asking worker's loop: delivers ans */
	rcpt_answer_cb done;
	void *arg;
	bool tried_base;             /* full was INVALID; now asking for the address without its tag */
	bool cancelled, answered;    /* under src->lock */
	struct callout_waiter *w;    /* callout thread only: the pending pool lookup, or NULL */
	struct rcpt_answer ans;
	struct rcpt_addr addr;
};

/* ---- on the asking worker's loop ---- */

static void query_free(struct rcpt_query *q)
{
	atomic_fetch_sub(&q->src->live, 1);
	free(q);
}

static void query_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct rcpt_query *q = arg;

	event_free(q->ev);
	q->done(q->arg, &q->ans);
	query_free(q);
}

static bool addr_sendable(const struct rcpt_addr *a)
{
	size_t len = strnlen(a->full, sizeof a->full);

	if (len <= a->at || a->full[a->at] != '@')
		return false; /* a NUL inside the local part */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)a->full[i] < 0x20 || a->full[i] == 0x7f)
			return false;
	return true;
}

static struct rcpt_query *callout_lookup(void *state, struct event_base *base, const struct rcpt_addr *addr,
					 rcpt_answer_cb done, void *arg)
{
	struct rcpt_callout *s = state;

	atomic_fetch_add(&s->lookups, 1);
	if (!addr_sendable(addr)) {
		struct rcpt_answer ans = { .verdict = RCPT_INVALID, .source = s->spec };
		snprintf(ans.reason, sizeof ans.reason, "not a possible mailbox (control characters)");
		done(arg, &ans);
		return NULL;
	}
	unsigned long live = atomic_fetch_add(&s->live, 1) + 1;
	if (live > CALLOUT_LIVE_MAX) {
		struct rcpt_answer ans = { .verdict = RCPT_UNAVAILABLE, .source = s->spec };
		atomic_fetch_sub(&s->live, 1);
		snprintf(ans.reason, sizeof ans.reason, "%lu lookups already in progress", live - 1);
		done(arg, &ans);
		return NULL;
	}
	if (live > atomic_load(&s->live_peak))
		atomic_store(&s->live_peak, live); /* approximate under races: it only times a trim */
	struct rcpt_query *q = xcalloc(1, sizeof *q);
	q->src = s;
	q->done = done;
	q->arg = arg;
	q->addr = *addr;
	q->ev = event_new(base, -1, 0, query_deliver, q);
	pthread_mutex_lock(&s->lock);
	if (s->inbox_tail)
		s->inbox_tail->next = q;
	else
		s->inbox = q;
	s->inbox_tail = q;
	pthread_mutex_unlock(&s->lock);
	event_active(s->wake, EV_READ, 0);
	return q;
}

/* Safe against an answer arriving at the same time: an answered query is freed here; one still
 * waiting goes to the callout thread, which takes it off its probe and frees it at once. */
static void callout_cancel(struct rcpt_query *q)
{
	struct rcpt_callout *s = q->src;
	struct event *ev = q->ev;
	bool answered;

	pthread_mutex_lock(&s->lock);
	answered = q->answered;
	if (!answered) {
		q->cancelled = true;
		q->cnext = s->cancels;
		s->cancels = q;
	}
	pthread_mutex_unlock(&s->lock);
	event_free(ev); /* ours: if active, it is removed from our loop's queue */
	if (answered)
		query_free(q);
	else
		event_active(s->wake, EV_READ, 0);
}

/* ---- on the callout thread ---- */

static void query_post(struct rcpt_query *q, const struct rcpt_answer *ans)
{
	struct rcpt_callout *s = q->src;

	pthread_mutex_lock(&s->lock);
	if (q->cancelled) { /* on s->cancels: freed there */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	q->ans = *ans;
	q->answered = true;
	event_active(q->ev, EV_TIMEOUT, 0);
	pthread_mutex_unlock(&s->lock); /* q belongs to the worker from here */
}

static void query_on_answer(void *arg, const struct rcpt_answer *ans)
{
	struct rcpt_query *q = arg;

	q->w = NULL; /* the pool frees it after this call */
	if (ans->verdict == RCPT_INVALID && q->addr.base[0] && !q->tried_base && !q->src->stop) {
		q->tried_base = true; /* user+tag unknown: does user exist? */
		q->w = callout_pool_lookup(q->src->pool, q->addr.base, query_on_answer, q);
		return;
	}
	query_post(q, ans);
}

static void callout_wake(evutil_socket_t fd, short what, void *arg)
{
	struct rcpt_callout *s = arg;
	struct rcpt_query *q, *gone;
	bool stop;

	pthread_mutex_lock(&s->lock);
	q = s->inbox;
	s->inbox = s->inbox_tail = NULL;
	gone = s->cancels; /* each was posted before it was cancelled: in this inbox or an earlier one */
	s->cancels = NULL;
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	if (atomic_exchange(&s->forget, false) && s->pool)
		callout_pool_forget(s->pool); /* before the lookups posted after the purge */
	for (struct rcpt_query *n; q; q = n) {
		n = q->next;
		q->w = callout_pool_lookup(s->pool, q->addr.full, query_on_answer, q);
	}
	for (struct rcpt_query *n; gone; gone = n) {
		n = gone->cnext;
		if (gone->w != NULL)
			callout_pool_cancel(s->pool, gone->w);
		query_free(gone);
	}
	if (stop) {
		callout_pool_free(s->pool); /* answers what is still waiting */
		s->pool = NULL;
		event_base_loopbreak(s->base);
	}
}

/* After a burst of lookups has drained (a hanging server, a flood of abandoned RCPTs), give
 * the freed memory back to the system: glibc keeps it otherwise, in every thread's arena. */
static void callout_trim(evutil_socket_t fd, short what, void *arg)
{
	struct rcpt_callout *s = arg;
	unsigned long peak = atomic_load(&s->live_peak), live = atomic_load(&s->live);

	if (peak < CALLOUT_TRIM_PEAK || live > 0)
		return;
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	atomic_store(&s->live_peak, 0);
	log_info("%s: a burst of %lu lookups at once has drained; its memory is returned to the system", s->spec,
		 peak);
}

static void *callout_thread(void *arg)
{
	struct rcpt_callout *s = arg;
	event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* ---- open / stats / close (main thread) ---- */

static void callout_free(struct rcpt_callout *s)
{
	for (struct rcpt_query *q = s->cancels, *n; q; q = n) { /* cancelled after the pool closed */
		n = q->cnext;
		query_free(q);
	}
	if (s->trim)
		event_free(s->trim);
	if (s->wake)
		event_free(s->wake);
	callout_pool_free(s->pool);
	if (s->base)
		event_base_free(s->base);
	pthread_mutex_destroy(&s->lock);
	free(s->spec);
	free(s);
}

static void callout_opts(struct callout_pool_opts *o, const struct bs_config *cfg, const struct bs_hostport *hp,
			 struct callout_domain_ttl *ttls, struct rcpt_callout *s)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		ttls[i] = (struct callout_domain_ttl){ cfg->domains[i].name, cfg->domains[i].positive_ttl_ms };
	*o = (struct callout_pool_opts){
		.spec = s->spec, .host = hp->host, .port = hp->port[0] ? hp->port : "25",
		.sender = cfg->callout_sender ? cfg->callout_sender : "",
		.helo = cfg->hostname ? cfg->hostname : "localhost",
		.dns_servers = cfg->dns_servers,
		.timeout_ms = cfg->callout_timeout_ms ? cfg->callout_timeout_ms : 10000,
		.max_conns = (unsigned)(cfg->callout_max_connections ? cfg->callout_max_connections : 2),
		.retry_after_ms = cfg->backend_retry_after_ms ? cfg->backend_retry_after_ms : 30000,
		.ttls = ttls, .nttls = cfg->ndomains, .default_ttl_ms = cfg->positive_ttl_ms,
		.max_rate = (unsigned)cfg->callout_max_rate,
		.counters = &s->counters,
	};
}

/* One backend-like HOST:PORT: a host (not *), a port other than 0. */
static int callout_check_spec(const char *arg, const char **why)
{
	if (strchr(arg, ',') || config_check_deliver(arg, why) < 0) {
		*why = "callout: needs one HOST:PORT (callout:mx.example:25)";
		return -1;
	}
	return 0;
}

static void *callout_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	struct bs_hostport_list hl = { NULL, 0 };
	const char *err = NULL;

	if (cfgval_hostport_list(arg, &hl, &err) != 0 || hl.n != 1) {
		snprintf(why, whysz, "callout:%s: expected callout:HOST:PORT (%s)", arg, err ? err : "one server");
		cfgval_hostport_list_free(&hl);
		return NULL;
	}
	struct rcpt_callout *s = xcalloc(1, sizeof *s);
	s->spec = xcalloc(1, strlen(arg) + 9);
	sprintf(s->spec, "callout:%s", arg);
	pthread_mutex_init(&s->lock, NULL);
	s->base = event_base_new();
	struct callout_domain_ttl *ttls = xcalloc(cfg->ndomains + 1, sizeof *ttls);
	struct callout_pool_opts o;
	callout_opts(&o, cfg, &hl.items[0], ttls, s);
	if (s->base)
		s->pool = callout_pool_new(s->base, &o, why, whysz);
	free(ttls);
	cfgval_hostport_list_free(&hl);
	if (s->pool) {
		static const struct timeval every = { CALLOUT_TRIM_EVERY_MS / 1000, 0 };
		s->wake = event_new(s->base, -1, 0, callout_wake, s);
		s->trim = event_new(s->base, -1, EV_PERSIST, callout_trim, s);
		if (s->trim)
			event_add(s->trim, &every);
	}
	if (s->wake == NULL || s->trim == NULL || pthread_create(&s->thread, NULL, callout_thread, s) != 0) {
		if (why[0] == '\0')
			snprintf(why, whysz, "cannot start the callout thread");
		callout_free(s);
		return NULL;
	}
	return s;
}

/* Main thread (the control socket's purge): the callout thread forgets before its next lookup. */
static void callout_forget(void *state)
{
	struct rcpt_callout *s = state;

	atomic_store(&s->forget, true);
	event_active(s->wake, EV_READ, 0);
}

static void callout_stats(void *state, FILE *out)
{
	struct rcpt_callout *s = state;
	struct callout_counters *k = &s->counters;

	fprintf(out, "source=%s lookups=%lu probes=%lu shared=%lu valid=%lu invalid=%lu unavailable=%lu "
		     "connections_opened=%lu connect_failures=%lu connections_open=%lu queued=%lu "
		     "waiting=%lu catchall_checks=%lu catchall_domains=%lu rate_limited=%lu down=%lu\n",
		s->spec, atomic_load(&s->lookups), atomic_load(&k->probes), atomic_load(&k->shared),
		atomic_load(&k->valid), atomic_load(&k->invalid), atomic_load(&k->unavailable),
		atomic_load(&k->connections), atomic_load(&k->connect_failures), atomic_load(&k->open_now),
		atomic_load(&k->queued), atomic_load(&k->waiting), atomic_load(&k->catchall_checks), atomic_load(&k->catchall_domains),
		atomic_load(&k->rate_limited), atomic_load(&k->down));
}

static void callout_close(void *state)
{
	struct rcpt_callout *s = state;

	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_mutex_unlock(&s->lock);
	event_active(s->wake, EV_READ, 0);
	pthread_join(s->thread, NULL);
	callout_free(s);
}

const struct rcpt_source_type rcpt_callout_type = {
	.prefix = "callout",
	.syntax = "callout:HOST:PORT",
	.check_spec = callout_check_spec,
	.open = callout_open,
	.lookup = callout_lookup,
	.cancel = callout_cancel,
	.reload = NULL,
	.stats = callout_stats,
	.forget = callout_forget,
	.close = callout_close,
};
