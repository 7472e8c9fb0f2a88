/* check_harvest.c - the directory-harvest defence as a check of the engine: budgets of unknown
 * recipients per client address and per client network over a sliding window (harvest_limit,
 * harvest_network_limit), kept in the process-wide budget store (budget_store.h) so that they
 * span sessions and survive reloads. It observes every RCPT decision and counts those that told
 * the client a recipient does not exist (never an unavailable verdict: a sender with a typo or
 * a backend outage is not punished). At RCPT a client over budget gets 450 4.7.1, held back by
 * harvest_tarpit on a timer (no worker waits; not in a transaction that has a recipient, which
 * holds a backend connection), before any lookup; the RCPT that reaches the
 * budget starts harvest_penalty, during which the client's new connections get 421 4.7.0 instead
 * of the banner (stage banner). */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "budget_store.h"
#include "config_load.h"
#include "config_value.h"
#include "engine_stats.h"
#include "log.h"
#include "util.h"

enum { HARVEST_ADDR = 0, HARVEST_NET, HARVEST_KEYS };

struct harvest {
	struct budget_store *store;            /* process-wide (borrowed) */
	struct engine_stats *stats;            /* trips counted here (metrics), or NULL */
	struct budget_rule rules[HARVEST_KEYS]; /* per address, per network */
	unsigned v4_prefix, v6_prefix;
	uint64_t tarpit_ms;
	char hostname[SMTP_DOMAIN_MAX + 1];
};

struct check_query {
	struct harvest *h;
	struct event_base *base;
	enum engine_stage stage;
	check_cb cb;
	void *arg;
	struct budget_query *bq;   /* the store's answer is awaited */
	struct event *tarpit;      /* the refusal is held back */
	bool in_start, done;       /* answered from inside start */
	bool holds_backend;        /* a recipient accepted: the transaction holds a backend connection */
	int over;                  /* the key found over budget, -1 none */
	size_t n;                  /* keys asked: which[i] is the rule of the store's i-th state */
	int which[HARVEST_KEYS];
	struct budget_state st[HARVEST_KEYS];
	char keys[HARVEST_KEYS][BUDGET_KEY_MAX];
	char rcpt[SMTP_PATH_MAX + 8];
};

static const char *const harvest_what[HARVEST_KEYS] = { "address", "network" };

static void harvest_validate(struct cfg_loader *L)
{
	const struct bs_config *cfg = L->cfg;

	if (cfg->harvest_tarpit_ms > 0 && cfg->decision_timeout_ms > 0 &&
	    cfg->harvest_tarpit_ms >= cfg->decision_timeout_ms)
		config_error(L, config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "harvest_tarpit"),
			     "harvest_tarpit must be shorter than decision_timeout");
}

static int harvest_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	const struct bs_config *cfg = env->cfg;
	struct budget_rule addr, net;
	const char *err = NULL;

	if (cfg == NULL || env->budgets == NULL)
		return 0;
	if (budget_rule_parse(cfg->harvest_limit ? cfg->harvest_limit : "0", &addr, &err) != 0 ||
	    budget_rule_parse(cfg->harvest_network_limit ? cfg->harvest_network_limit : "0", &net, &err) != 0) {
		snprintf(why, whysz, "harvest_limit: %s", err);
		return -1;
	}
	if (addr.limit == 0 && net.limit == 0)
		return 0;
	struct harvest *h = xcalloc(1, sizeof *h);
	h->store = env->budgets;
	h->stats = env->stats;
	h->rules[HARVEST_ADDR] = addr;
	h->rules[HARVEST_NET] = net;
	for (int i = 0; i < HARVEST_KEYS; i++)
		h->rules[i].penalty_ms = cfg->harvest_penalty_ms;
	h->v4_prefix = (unsigned)cfg->harvest_ipv4_prefix;
	h->v6_prefix = (unsigned)cfg->harvest_ipv6_prefix;
	h->tarpit_ms = cfg->harvest_tarpit_ms;
	strbuf_append(h->hostname, sizeof h->hostname, cfg->hostname ? cfg->hostname : "localhost");
	*state = h;
	return 1;
}

static void harvest_close(void *state)
{
	free(state);
}

/* The keys of req's client that have a budget, into keys/rules; how many. */
static size_t harvest_keys(const struct harvest *h, const struct engine_request *req,
			   char keys[HARVEST_KEYS][BUDGET_KEY_MAX], const char *ptrs[HARVEST_KEYS],
			   struct budget_rule rules[HARVEST_KEYS], int which[HARVEST_KEYS])
{
	char k[HARVEST_KEYS][BUDGET_KEY_MAX];
	size_t n = 0;

	if (budget_client_keys((const struct sockaddr *)&req->client, h->v4_prefix, h->v6_prefix, k[HARVEST_ADDR],
			       k[HARVEST_NET]) != 0)
		return 0;
	for (int i = 0; i < HARVEST_KEYS; i++) {
		if (h->rules[i].limit == 0)
			continue;
		memcpy(keys[n], k[i], BUDGET_KEY_MAX);
		ptrs[n] = keys[n];
		rules[n] = h->rules[i];
		which[n] = i;
		n++;
	}
	return n;
}

/* ---- deciding ---- */

static void harvest_finish(struct check_query *q, const struct check_answer *a)
{
	check_cb cb = q->cb;
	void *arg = q->arg;

	if (q->in_start) { /* start frees q and returns NULL */
		q->done = true;
		cb(arg, a);
		return;
	}
	if (q->tarpit)
		event_free(q->tarpit);
	free(q);
	cb(arg, a);
}

static void harvest_refuse(struct check_query *q)
{
	struct check_answer a;
	const struct budget_state *st = &q->st[q->over];
	const struct budget_rule *r = &q->h->rules[q->over];
	uint64_t now = now_ms();
	unsigned long long left = st->penalty_until_ms > now ? (st->penalty_until_ms - now + 999) / 1000 : 0;

	if (q->stage == ENGINE_STAGE_BANNER)
		check_answer_set(&a, CHECK_DEFER, 421, "4.7.0",
				 "%s Too many unknown recipients from your %s, try again later", q->h->hostname,
				 harvest_what[q->over]);
	else
		check_answer_set(&a, CHECK_DEFER, 450, "4.7.1",
				 "<%s>: Recipient address rejected: too many unknown recipients from your %s, "
				 "try again later", q->rcpt, harvest_what[q->over]);
	snprintf(a.log, sizeof a.log, "harvest=%s budget=%s unknown=%u/%u penalty_left_s=%llu tarpit_ms=%llu",
		 q->stage == ENGINE_STAGE_BANNER ? "penalty" : "over", q->keys[q->over], st->count, r->limit, left,
		 q->stage == ENGINE_STAGE_BANNER || q->holds_backend ? 0ULL : (unsigned long long)q->h->tarpit_ms);
	harvest_finish(q, &a);
}

static void harvest_tarpit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	harvest_refuse(arg);
}

static void harvest_on_state(void *arg, const struct budget_state *states, size_t n)
{
	struct check_query *q = arg;
	uint64_t now = now_ms();

	q->bq = NULL;
	q->over = -1;
	for (size_t i = 0; i < n && i < q->n && q->over < 0; i++) {
		int k = q->which[i];
		q->st[k] = states[i];
		bool over = q->stage == ENGINE_STAGE_BANNER ? states[i].penalty_until_ms > now
							    : budget_over(&states[i], &q->h->rules[k], now);
		if (over)
			q->over = k;
	}
	if (q->over < 0) {
		struct check_answer a;
		check_answer_neutral(&a);
		harvest_finish(q, &a);
		return;
	}
	/* never while the transaction holds a backend connection: tarpitted sessions holding them
	 * would starve every other client of the backend */
	if (q->stage == ENGINE_STAGE_RCPT && q->h->tarpit_ms > 0 && !q->holds_backend) {
		struct timeval tv = { (time_t)(q->h->tarpit_ms / 1000), (suseconds_t)(q->h->tarpit_ms % 1000) * 1000 };
		q->tarpit = evtimer_new(q->base, harvest_tarpit_cb, q);
		evtimer_add(q->tarpit, &tv);
		return;
	}
	harvest_refuse(q);
}

static struct check_query *harvest_start(void *state, struct event_base *base, const struct engine_request *req,
					 check_cb cb, void *arg)
{
	struct harvest *h = state;
	char keys[HARVEST_KEYS][BUDGET_KEY_MAX];
	const char *ptrs[HARVEST_KEYS];
	struct budget_rule rules[HARVEST_KEYS];
	int which[HARVEST_KEYS];
	size_t n = harvest_keys(h, req, keys, ptrs, rules, which);

	if (n == 0) {
		struct check_answer a;
		check_answer_neutral(&a);
		cb(arg, &a);
		return NULL;
	}
	struct check_query *q = xcalloc(1, sizeof *q);
	q->h = h;
	q->base = base;
	q->stage = req->stage;
	q->holds_backend = req->nrcpts > 0;
	q->cb = cb;
	q->arg = arg;
	q->n = n;
	for (size_t i = 0; i < n; i++) { /* q->keys[rule]: "" for a key without a budget */
		memcpy(q->keys[which[i]], keys[i], BUDGET_KEY_MAX);
		q->which[i] = which[i];
	}
	if (req->has_rcpt && smtp_address_format(req->rcpt, q->rcpt, sizeof q->rcpt) == 0)
		q->rcpt[0] = '\0';
	q->in_start = true;
	struct budget_query *bq = budget_store_get(h->store, base, ptrs, rules, n, now_ms(), harvest_on_state, q);
	q->in_start = false;
	if (q->done) {
		free(q);
		return NULL;
	}
	if (q->tarpit == NULL)
		q->bq = bq;
	return q;
}

static void harvest_cancel(struct check_query *q)
{
	if (q->bq)
		budget_store_cancel(q->h->store, q->bq);
	if (q->tarpit)
		event_free(q->tarpit);
	free(q);
}

/* ---- counting ---- */

struct harvest_added {
	struct engine_stats *stats;
	char client[INET6_ADDRSTRLEN];
	char keys[HARVEST_KEYS][BUDGET_KEY_MAX];
	struct budget_rule rules[HARVEST_KEYS];
};

static void harvest_on_added(void *arg, const struct budget_state *states, size_t n)
{
	struct harvest_added *ad = arg;
	char window[32], penalty[32];

	for (size_t i = 0; i < n; i++) {
		if (!states[i].tripped)
			continue;
		engine_stats_outcome(ad->stats, "harvest", ad->keys[i][0] == 'n' ? "network_tripped" : "address_tripped");
		cfgval_format_duration(ad->rules[i].window_ms, window, sizeof window);
		cfgval_format_duration(ad->rules[i].penalty_ms, penalty, sizeof penalty);
		log_notice("harvest: client=%s budget=%s reached: %u unknown recipients within %s; "
			   "over budget, penalty %s", ad->client, ad->keys[i], states[i].count, window, penalty);
	}
	free(ad);
}

static void harvest_observe(void *state, struct event_base *base, const struct engine_request *req,
			    const struct engine_decision *d)
{
	struct harvest *h = state;
	const char *ptrs[HARVEST_KEYS];
	int which[HARVEST_KEYS];

	if (req->stage != ENGINE_STAGE_RCPT || !d->rcpt_invalid)
		return;
	struct harvest_added *ad = xmalloc(sizeof *ad);
	size_t n = harvest_keys(h, req, ad->keys, ptrs, ad->rules, which);
	if (n == 0) {
		free(ad);
		return;
	}
	memcpy(ad->client, req->client_ip, sizeof ad->client);
	ad->stats = h->stats;
	budget_store_add(h->store, base, ptrs, ad->rules, n, now_ms(), harvest_on_added, ad);
}

const struct check_type check_harvest_type = {
	.name = "harvest",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_RCPT) | ENGINE_STAGE_BIT(ENGINE_STAGE_BANNER),
	.validate = harvest_validate,
	.open = harvest_open,
	.close = harvest_close,
	.start = harvest_start,
	.cancel = harvest_cancel,
	.observe = harvest_observe,
};
