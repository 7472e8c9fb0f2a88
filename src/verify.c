/* verify.c - one recipient verification per RCPT: the chain's leading local sources (map:, never
 * cached), then the cache, then the rest of the domain's chain under the verify_timeout budget,
 * then the reply (on_unavailable applied). A job that outlives its
 * session (budget exceeded, session cancelled) or that refreshes an ageing positive verdict runs
 * "in the background": it has no callback, only fills the cache, and sits in the verifier's list
 * so that verifier_shutdown_base() can cancel it before its loop goes away. */
#include "verify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event_struct.h>

#include "log.h"
#include "util.h"

#define VERIFY_DEFAULT_POSITIVE_TTL (24ULL * 3600 * 1000)
#define VERIFY_DEFAULT_NEGATIVE_TTL (300ULL * 1000)
#define VERIFY_DEFAULT_TIMEOUT (20ULL * 1000)
#define VERIFY_MAX_BACKGROUND 1000

struct verifier {
	struct rcpt_registry *reg;
	struct vcache *cache;
	uint64_t timeout_ms, positive_ttl_ms, negative_ttl_ms;
	pthread_mutex_t lock;       /* the background list */
	struct verify_query *background;
	size_t nbackground;
	atomic_ulong lookups, hits, misses, timeouts, refreshes, cancelled;
};

/* One per RCPT in flight: not cleared whole (verify_job_new sets what is read before it is
 * written), and without the reply text, which verify_deliver makes from the verdict. */
struct verify_query {
	struct verifier *v;
	struct event_base *base;
	const struct bs_domain *dom;
	struct rcpt_chain chain;
	verify_cb cb;
	void *arg;
	uint64_t t0;
	bool read_cache, write_cache;      /* VERIFY_CACHE_READ, VERIFY_CACHE_WRITE (and a cache) */
	bool ready;                        /* the outcome is complete, delivery scheduled */
	bool background;                   /* no callback: fills the cache, then frees itself */
	struct rcpt_chain_query *cq;       /* chain lookup in progress */
	struct vcache_query *cacheq;       /* cache lookup in progress */
	struct verify_query *prev, *next;  /* background list */
	struct event ev;                   /* budget timer, then delivery */
	/* the outcome (verify_decide) */
	enum rcpt_verdict verdict;
	bool cached, timed_out;
	bool rate_limited;                 /* UNAVAILABLE because callout_max_rate refused a probe */
	uint64_t age_ms, ttl_left_ms;
	char source[VCACHE_SOURCE_MAX];
	char reason[RCPT_REASON_MAX];      /* before the outcome: why the local sources asked first
					    * were UNAVAILABLE ("" if they were not) */
	char display[RCPT_ADDR_MAX + 1];   /* the address as the client wrote it */
	struct rcpt_addr addr;             /* set when the cache or the sources are asked */
};

struct verifier *verifier_new(const struct bs_config *cfg, struct rcpt_registry *reg, struct vcache *cache)
{
	struct verifier *v = xcalloc(1, sizeof *v);

	v->reg = reg;
	v->cache = cache;
	v->timeout_ms = cfg->verify_timeout_ms ? cfg->verify_timeout_ms : VERIFY_DEFAULT_TIMEOUT;
	v->positive_ttl_ms = cfg->positive_ttl_ms ? cfg->positive_ttl_ms : VERIFY_DEFAULT_POSITIVE_TTL;
	v->negative_ttl_ms = cfg->negative_ttl_ms ? cfg->negative_ttl_ms : VERIFY_DEFAULT_NEGATIVE_TTL;
	pthread_mutex_init(&v->lock, NULL);
	return v;
}

/* ---- the background list ---- */

/* Let q go on without a session to fill the cache. false when VERIFY_MAX_BACKGROUND lookups
 * already do (a hanging source must not make the list grow with the RCPT rate). */
static bool verify_bg_add(struct verify_query *q)
{
	struct verifier *v = q->v;

	pthread_mutex_lock(&v->lock);
	if (v->nbackground >= VERIFY_MAX_BACKGROUND) {
		pthread_mutex_unlock(&v->lock);
		return false;
	}
	q->background = true;
	q->cb = NULL;
	q->prev = NULL;
	q->next = v->background;
	if (v->background)
		v->background->prev = q;
	v->background = q;
	v->nbackground++;
	pthread_mutex_unlock(&v->lock);
	return true;
}

/* Take q off the background list; v->lock held. */
static void verify_bg_unlink(struct verifier *v, struct verify_query *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		v->background = q->next;
	if (q->next)
		q->next->prev = q->prev;
	v->nbackground--;
}

static void verify_bg_remove(struct verify_query *q)
{
	struct verifier *v = q->v;

	pthread_mutex_lock(&v->lock);
	verify_bg_unlink(v, q);
	pthread_mutex_unlock(&v->lock);
}

/* Is a background lookup of key running (or are there too many to start one more)? */
static bool verify_bg_busy(struct verifier *v, const char *key)
{
	bool busy = false;

	pthread_mutex_lock(&v->lock);
	busy = v->nbackground >= VERIFY_MAX_BACKGROUND;
	for (struct verify_query *q = v->background; q && !busy; q = q->next)
		busy = strcmp(q->addr.full, key) == 0;
	pthread_mutex_unlock(&v->lock);
	return busy;
}

static void verify_free(struct verify_query *q)
{
	if (q->background)
		verify_bg_remove(q);
	event_del(&q->ev);
	free(q);
}

/* Hand q's running chain lookup to the background; when that is full, cancel it (the caller
 * then frees q). */
static bool verify_bg_continue(struct verify_query *q)
{
	if (verify_bg_add(q))
		return true;
	rcpt_chain_cancel(q->cq);
	q->cq = NULL;
	return false;
}

/* ---- results ---- */

static uint64_t verify_ttl(const struct verify_query *q, enum rcpt_verdict verdict)
{
	uint64_t dom_ttl = verdict == RCPT_VALID ? q->dom->positive_ttl_ms : q->dom->negative_ttl_ms;
	return dom_ttl ? dom_ttl : verdict == RCPT_VALID ? q->v->positive_ttl_ms : q->v->negative_ttl_ms;
}

static void verify_copy(char *dst, size_t dstsz, const char *src)
{
	dst[0] = '\0';
	strbuf_append(dst, dstsz, src ? src : "");
}

/* The outcome: the verdict, the source that gave it and why. */
static void verify_decide(struct verify_query *q, enum rcpt_verdict verdict, const char *source, const char *reason)
{
	q->verdict = verdict;
	verify_copy(q->source, sizeof q->source, source);
	if (reason != q->reason)
		verify_copy(q->reason, sizeof q->reason, reason);
}

/* The result for the callback: the outcome, and the reply it calls for in this domain. */
static void verify_result_make(const struct verify_query *q, struct verify_result *r)
{
	const struct bs_domain *d = q->dom;
	enum rcpt_verdict verdict = q->verdict;

	r->verdict = verdict;
	r->cached = q->cached;
	r->timed_out = q->timed_out;
	r->rate_limited = q->rate_limited;
	r->age_ms = q->age_ms;
	r->ttl_left_ms = q->ttl_left_ms;
	r->latency_ms = now_ms() - q->t0;
	memcpy(r->source, q->source, strlen(q->source) + 1);
	memcpy(r->reason, q->reason, strlen(q->reason) + 1);
	if (verdict == RCPT_INVALID) {
		r->action = VERIFY_REJECT;
		r->code = d->reject_code >= 400 && d->reject_code < 600 ? d->reject_code : 550;
		snprintf(r->enhanced, sizeof r->enhanced, "%d.1.1", r->code >= 500 ? 5 : 4);
		snprintf(r->text, sizeof r->text, "<%s>: %s", q->display,
			 d->reject_text ? d->reject_text : "Recipient address rejected: User unknown");
	} else if (verdict == RCPT_UNAVAILABLE && (d->on_unavailable == ON_UNAVAILABLE_DEFER || r->rate_limited)) {
		r->action = VERIFY_DEFER;
		r->code = 451;
		snprintf(r->enhanced, sizeof r->enhanced, "4.4.3");
		snprintf(r->text, sizeof r->text, "<%s>: Recipient address verification unavailable, try again later",
			 q->display);
	} else {
		r->action = VERIFY_ACCEPT;
		r->code = 250;
		snprintf(r->enhanced, sizeof r->enhanced, "2.1.5");
		snprintf(r->text, sizeof r->text, "<%s>: Recipient ok", q->display);
	}
}

/* Hand the result to the session from the loop (never from inside verify_start). */
static void verify_schedule(struct verify_query *q)
{
	q->ready = true;
	evtimer_del(&q->ev);
	event_active(&q->ev, EV_TIMEOUT, 1);
}

static void verify_deliver(struct verify_query *q)
{
	struct verify_result res;
	verify_result_make(q, &res);
	verify_cb cb = q->cb;
	void *arg = q->arg;
	if (!q->cq || !verify_bg_continue(q)) /* budget exceeded: the lookup goes on if it may */
		verify_free(q);
	cb(arg, &res);
}

static void verify_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct verify_query *q = arg;
	char why[64];

	if (!q->ready) { /* the budget ran out */
		atomic_fetch_add(&q->v->timeouts, 1);
		if (q->cacheq) { /* still in the cache (Redis waiting for another gateway's verdict) */
			vcache_cancel(q->v->cache, q->cacheq);
			q->cacheq = NULL;
		}
		snprintf(why, sizeof why, "verification timed out after %llu ms", (unsigned long long)q->v->timeout_ms);
		verify_decide(q, RCPT_UNAVAILABLE, q->chain.n ? q->chain.sources[0]->spec : "none", why);
		q->timed_out = true;
	}
	verify_deliver(q);
}

/* ---- the chain ---- */

static void verify_on_chain(void *arg, const struct rcpt_answer *ans)
{
	struct verify_query *q = arg;

	q->cq = NULL;
	if (q->write_cache && ans->verdict != RCPT_UNAVAILABLE && !ans->local)
		vcache_put(q->v->cache, q->addr.full, ans->verdict, ans->source, verify_ttl(q, ans->verdict));
	if (q->background) {
		verify_free(q);
		return;
	}
	char reason[RCPT_REASON_MAX] = "";
	if (ans->verdict == RCPT_UNAVAILABLE && q->reason[0] != '\0') { /* local sources asked before the cache */
		strbuf_append(reason, sizeof reason, q->reason);
		strbuf_append(reason, sizeof reason, "; ");
	}
	strbuf_append(reason, sizeof reason, ans->reason);
	q->rate_limited = ans->verdict == RCPT_UNAVAILABLE && ans->rate_limited;
	verify_decide(q, ans->verdict, ans->source, reason);
	verify_schedule(q);
}

/* Start the verify_timeout budget (once: a cache that answers later, such as Redis waiting for
 * another gateway's probe, spends from the same budget as the chain). */
static void verify_arm_budget(struct verify_query *q)
{
	struct timeval tv = { .tv_sec = (time_t)(q->v->timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(q->v->timeout_ms % 1000) * 1000 };

	if (!q->background && !q->ready && !evtimer_pending(&q->ev, NULL))
		evtimer_add(&q->ev, &tv);
}

static void verify_run_chain(struct verify_query *q)
{
	struct rcpt_chain_query *cq = rcpt_chain_lookup(&q->chain, q->base, &q->addr, verify_on_chain, q);
	if (cq == NULL) /* answered (and maybe freed, in the background) already: no budget needed */
		return;
	q->cq = cq;
	verify_arm_budget(q);
}

/* ---- the cache ---- */

static struct verify_query *verify_job_new(struct verifier *v, struct event_base *base, const struct bs_domain *dom)
{
	struct verify_query *q = xmalloc(sizeof *q);

	memset(q, 0, offsetof(struct verify_query, ev));
	q->v = v;
	q->base = base;
	q->dom = dom;
	q->t0 = now_ms();
	evtimer_assign(&q->ev, base, verify_on_event, q);
	q->verdict = RCPT_UNAVAILABLE;
	q->cached = q->timed_out = q->rate_limited = false;
	q->age_ms = q->ttl_left_ms = 0;
	q->source[0] = q->reason[0] = q->display[0] = '\0';
	q->addr.full[0] = q->addr.base[0] = '\0';
	return q;
}

/* A positive verdict past half its TTL: look it up again behind the session's back. */
static void verify_refresh(struct verify_query *q)
{
	struct verifier *v = q->v;

	if (verify_bg_busy(v, q->addr.full))
		return;
	atomic_fetch_add(&v->refreshes, 1);
	struct verify_query *r = verify_job_new(v, q->base, q->dom);
	r->chain = q->chain;
	r->addr = q->addr;
	r->write_cache = true; /* no display: a background job has no reply */
	if (!verify_bg_add(r)) {
		verify_free(r);
		return;
	}
	verify_run_chain(r);
}

static void verify_on_cache(void *arg, int found, const struct vcache_entry *e)
{
	struct verify_query *q = arg;

	q->cacheq = NULL;
	if (!found) {
		atomic_fetch_add(&q->v->misses, 1);
		verify_run_chain(q);
		return;
	}
	atomic_fetch_add(&q->v->hits, 1);
	uint64_t now = vcache_now();
	verify_decide(q, e->verdict, e->source, "cached");
	q->cached = true;
	q->age_ms = now > e->stored_ms ? now - e->stored_ms : 0;
	q->ttl_left_ms = e->stored_ms + e->ttl_ms > now ? e->stored_ms + e->ttl_ms - now : 0;
	if (e->verdict == RCPT_VALID && q->age_ms > e->ttl_ms / 2 && q->write_cache)
		verify_refresh(q);
	verify_schedule(q);
}

static void verify_ask_cache(struct verify_query *q)
{
	struct vcache_query *cq = vcache_get(q->v->cache, q->base, q->addr.full, verify_on_cache, q);
	if (cq) {
		q->cacheq = cq;
		verify_arm_budget(q);
	}
}

/* The chain's local sources answered (synchronously, by their contract): a VALID or INVALID is
 * final and never cached; UNAVAILABLE goes on to the cache and the rest of the chain. */
static void verify_on_local(void *arg, const struct rcpt_answer *ans)
{
	struct verify_query *q = arg;
	size_t k = rcpt_chain_local_prefix(&q->chain);

	if (ans->verdict != RCPT_UNAVAILABLE) {
		verify_decide(q, ans->verdict, ans->source, ans->reason);
		verify_schedule(q);
		return;
	}
	verify_copy(q->reason, sizeof q->reason, ans->reason);
	q->chain.sources += k;
	q->chain.n -= k;
	verify_ask_cache(q);
}

/* Local sources first (never cached: the cache cannot hide an address just added to a map),
 * then the cache, then the rest of the chain. */
static void verify_lookup(struct verify_query *q)
{
	size_t k = rcpt_chain_local_prefix(&q->chain);

	if (!q->read_cache || k == q->chain.n) {
		verify_run_chain(q);
	} else if (k > 0) {
		struct rcpt_chain local = q->chain;
		local.n = k;
		struct rcpt_chain_query *cq = rcpt_chain_lookup(&local, q->base, &q->addr, verify_on_local, q);
		if (cq) { /* a local source that answers later breaks its contract: give up on it */
			rcpt_chain_cancel(cq);
			verify_decide(q, RCPT_UNAVAILABLE, q->chain.sources[0]->spec, "local source did not answer at once");
			verify_schedule(q);
		}
	} else {
		verify_ask_cache(q);
	}
}

static struct verify_query *verify_begin(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
					 const struct smtp_address *rcpt, verify_cb cb, void *arg, unsigned flags)
{
	struct verify_query *q = verify_job_new(v, base, dom);

	q->cb = cb;
	q->arg = arg;
	q->read_cache = (flags & VERIFY_CACHE_READ) && v->cache;
	q->write_cache = (flags & VERIFY_CACHE_WRITE) && v->cache;
	atomic_fetch_add(&v->lookups, 1);
	if (smtp_address_format(rcpt, q->display, sizeof q->display) == 0)
		snprintf(q->display, sizeof q->display, "%.*s@%s", (int)rcpt->local_raw_len, rcpt->local_raw, dom->name);
	const char *domain = rcpt->domain[0] ? rcpt->domain : dom->name;
	if (rcpt_registry_chain(v->reg, dom->name, &q->chain) != 0 || q->chain.n == 0) {
		verify_decide(q, RCPT_VALID, "none", "no verify list: the backend decides");
		verify_schedule(q);
	} else if (rcpt_addr_make(&q->addr, rcpt->local_raw, rcpt->local_raw_len, domain, dom) != 0) {
		verify_decide(q, RCPT_UNAVAILABLE, "none", "address too long to verify");
		verify_schedule(q);
	} else {
		verify_lookup(q);
	}
	return q;
}

struct verify_query *verify_start(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
				  const struct smtp_address *rcpt, verify_cb cb, void *arg)
{
	return verify_begin(v, base, dom, rcpt, cb, arg, VERIFY_CACHE_READ | VERIFY_CACHE_WRITE);
}

struct verify_query *verify_start_nocache(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
					  const struct smtp_address *rcpt, verify_cb cb, void *arg)
{
	return verify_begin(v, base, dom, rcpt, cb, arg, 0);
}

struct verify_query *verify_start_flags(struct verifier *v, struct event_base *base, const struct bs_domain *dom,
					const struct smtp_address *rcpt, unsigned flags, verify_cb cb, void *arg)
{
	return verify_begin(v, base, dom, rcpt, cb, arg, flags);
}

void verify_cancel(struct verify_query *q)
{
	if (q == NULL)
		return;
	atomic_fetch_add(&q->v->cancelled, 1);
	if (q->cacheq)
		vcache_cancel(q->v->cache, q->cacheq);
	if (q->cq) { /* let the lookup finish and fill the cache, if it may */
		evtimer_del(&q->ev);
		if (verify_bg_continue(q))
			return;
	}
	verify_free(q);
}

void verifier_shutdown_base(struct verifier *v, struct event_base *base)
{
	struct verify_query *mine = NULL;

	pthread_mutex_lock(&v->lock);
	for (struct verify_query *q = v->background, *next; q; q = next) {
		next = q->next;
		if (q->base != base)
			continue;
		verify_bg_unlink(v, q);
		q->background = false; /* off the list now */
		q->next = mine;
		mine = q;
	}
	pthread_mutex_unlock(&v->lock);
	for (struct verify_query *q = mine, *next; q; q = next) {
		next = q->next;
		rcpt_chain_cancel(q->cq);
		verify_free(q);
	}
}

void verifier_free(struct verifier *v)
{
	if (v == NULL)
		return;
	if (v->nbackground)
		log_warn("verifier: %zu background lookups still running at shutdown", v->nbackground);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

size_t verifier_background(struct verifier *v)
{
	pthread_mutex_lock(&v->lock);
	size_t n = v->nbackground;
	pthread_mutex_unlock(&v->lock);
	return n;
}

void verifier_stats(struct verifier *v, FILE *out)
{
	pthread_mutex_lock(&v->lock);
	size_t bg = v->nbackground;
	pthread_mutex_unlock(&v->lock);
	fprintf(out, "verify_lookups=%lu\nverify_cache_hits=%lu\nverify_cache_misses=%lu\nverify_timeouts=%lu\n"
		"verify_refreshes=%lu\nverify_cancelled=%lu\nverify_background=%zu\n", atomic_load(&v->lookups),
		atomic_load(&v->hits), atomic_load(&v->misses), atomic_load(&v->timeouts),
		atomic_load(&v->refreshes), atomic_load(&v->cancelled), bg);
}
