/* check_dnsbl.c - DNS blocklist and allowlist scores as a check of the engine, at CONNECT (issue
 * 12): the client's address is asked of every list of dnsbl_sites at once (dnsbl_lookup.c)
 * through the asking worker's resolver (engine_env.dns: dns_servers, the process-wide TTL cache,
 * so a returning client costs no query). The session does not wait before its banner; a client whose score reaches dnsbl_threshold is refused at its first RCPT
 * (550 5.7.1 naming the lists), or only logged with dnsbl_action = log. A list that times out
 * scores 0 and is logged; a reply in 127.255.255.0/24 is an error, logged loudly. */
#include "check.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "config_load.h"
#include "dns.h"
#include "dnsbl_lookup.h"
#include "dnsbl_sites.h"
#include "engine_stats.h"
#include "log.h"
#include "util.h"

#define DNSBL_WARN_EVERY_MS 60000 /* one warning per list and kind per minute, with a count */

struct dnsbl_warn {
	uint64_t last_ms;
	unsigned long suppressed;
};

struct dnsbl_check {
	struct dnsbl_sites sites;
	struct cidr_list skip;
	int threshold;
	enum dnsbl_action action;
	uint64_t timeout_ms;
	engine_dns_fn dns;             /* the asking loop's resolver */
	void *dns_arg;
	struct engine_stats *stats;   /* outcomes counted here (metrics), or NULL */
	pthread_mutex_t warn_lock;     /* the warnings' state, shared by the workers */
	struct dnsbl_warn *warn_failed, *warn_refused; /* per list */
};

struct check_query {
	struct dnsbl_check *c;
	check_cb cb;
	void *arg;
	struct dnsbl_lookup *lk;
	char ip[INET6_ADDRSTRLEN];
	enum check_result result;
	char text[ENGINE_TEXT_MAX];
	char log[ENGINE_LOG_MAX];
};

/* ---- configuration ---- */

static void dnsbl_validate(struct cfg_loader *L)
{
	const struct bs_config *cfg = L->cfg;
	struct dnsbl_sites s;
	struct cidr_list c;
	const char *err = NULL;
	char why[256];
	struct { const char *key, *value; } keys[] = {
		{ "dnsbl_sites", cfg->dnsbl_sites }, { "blcheck_sites", cfg->blcheck_sites },
	};

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (keys[i].value == NULL)
			continue;
		if (dnsbl_sites_parse(keys[i].value, &s, why, sizeof why) < 0)
			config_error(L, config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, keys[i].key), "%s: %s",
				     keys[i].key, why);
		else
			dnsbl_sites_free(&s);
	}
	if (cfg->blcheck_addresses && cidr_list_parse(cfg->blcheck_addresses, &c, &err) == 0) {
		for (size_t i = 0; i < c.n; i++)
			if (c.items[i].bits != (c.items[i].family == AF_INET ? 32u : 128u))
				config_error(L, config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "blcheck_addresses"),
					     "blcheck_addresses: addresses, not networks");
		cidr_list_free(&c);
	}
	if (cfg->dnsbl_sites && cfg->dnsbl_timeout_ms >= cfg->decision_timeout_ms)
		config_error(L, config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "dnsbl_timeout"),
			     "dnsbl_timeout must be below decision_timeout, or a slow list would defer clients");
}

/* ---- deciding ---- */

static void answer_now(check_cb cb, void *arg, const char *log)
{
	struct check_answer a;

	check_answer_neutral(&a);
	strbuf_append(a.log, sizeof a.log, log);
	cb(arg, &a);
}

/* Warn at most once a minute per list and kind, counting what was not said. */
static void warn_list(pthread_mutex_t *lock, struct dnsbl_warn *w, enum log_level level,
		      const struct dnsbl_list_result *lr, const char *ip, const char *what)
{
	uint64_t now = now_ms();
	char extra[64] = "";

	pthread_mutex_lock(lock);
	if (w->last_ms != 0 && now - w->last_ms < DNSBL_WARN_EVERY_MS) {
		w->suppressed++;
		pthread_mutex_unlock(lock);
		return;
	}
	if (w->suppressed)
		snprintf(extra, sizeof extra, " (and %lu more times in the last minute)", w->suppressed);
	w->last_ms = now;
	w->suppressed = 0;
	pthread_mutex_unlock(lock);
	log_msg(level, "dnsbl: list %s, client %s: %s%s", lr->domain, ip, what, extra);
}

static void list_warnings(struct dnsbl_check *c, const struct check_query *q, const struct dnsbl_result *res)
{
	char what[160];

	for (size_t i = 0; i < res->nlists; i++) {
		const struct dnsbl_list_result *lr = &res->lists[i];
		if (lr->state == DNSBL_REFUSED) {
			snprintf(what, sizeof what, "answered %u.%u.%u.%u, an ERROR reply (127.255.255.0/24: the list "
				 "refuses this resolver; see dns_servers), not a listing", lr->addrs[0][0], lr->addrs[0][1],
				 lr->addrs[0][2], lr->addrs[0][3]);
			for (size_t k = 0; k < lr->naddrs; k++)
				if (dnsbl_reply_is_error(lr->addrs[k]))
					snprintf(what, sizeof what, "answered 127.255.255.%u, an ERROR reply (127.255.255.0/24: "
						 "the list refuses this resolver; see dns_servers), not a listing",
						 lr->addrs[k][3]);
			warn_list(&c->warn_lock, &c->warn_refused[i], LOG_LVL_ERR, lr, q->ip, what);
		} else if (lr->state == DNSBL_FAILED) {
			snprintf(what, sizeof what, "failed (%s after %llu ms): scored 0", lr->error ? lr->error : "error",
				 (unsigned long long)lr->ms);
			warn_list(&c->warn_lock, &c->warn_failed[i], LOG_LVL_WARN, lr, q->ip, what);
		}
	}
}

static void append(char *buf, size_t sz, const char *s)
{
	strbuf_append(buf, sz, s);
}

/* The decision's log fields: dnsbl_score=5 dnsbl_listed=a.test:127.0.0.2:+3,... */
static void build_log(struct dnsbl_check *c, struct check_query *q, const struct dnsbl_result *res, bool over)
{
	char item[96];
	const char *sep = "";
	size_t nfail = 0;

	snprintf(q->log, sizeof q->log, "dnsbl_score=%d dnsbl_threshold=%d", res->score, c->threshold);
	for (size_t i = 0; i < res->nlists; i++) {
		const struct dnsbl_list_result *lr = &res->lists[i];
		if (!lr->matched)
			continue;
		snprintf(item, sizeof item, "%s%s:%u.%u.%u.%u:%+d", sep[0] ? "," : " dnsbl_listed=", lr->domain,
			 lr->addrs[0][0], lr->addrs[0][1], lr->addrs[0][2], lr->addrs[0][3], lr->weight);
		append(q->log, sizeof q->log, item);
		sep = ",";
	}
	sep = "";
	for (size_t i = 0; i < res->nlists; i++) {
		const struct dnsbl_list_result *lr = &res->lists[i];
		if (lr->state != DNSBL_FAILED && lr->state != DNSBL_REFUSED)
			continue;
		snprintf(item, sizeof item, "%s%s:%s", sep[0] ? "," : " dnsbl_errors=", lr->domain,
			 lr->state == DNSBL_REFUSED ? "refused" : lr->error && strcmp(lr->error, "timeout") == 0 ? "timeout"
											   : "failed");
		append(q->log, sizeof q->log, item);
		sep = ",";
		nfail++;
	}
	if (over && c->action == DNSBL_ACTION_LOG)
		append(q->log, sizeof q->log, " dnsbl_action=log dnsbl_would_reject=yes");
}

/* "Service unavailable; client [192.0.2.1] blocked using a.test, b.test; TXT of the first". */
static void build_text(struct check_query *q, const struct dnsbl_result *res)
{
	const char *txt = NULL;
	bool first = true;

	snprintf(q->text, sizeof q->text, "Service unavailable; client [%s] blocked using ", q->ip);
	for (size_t i = 0; i < res->nlists; i++) {
		const struct dnsbl_list_result *lr = &res->lists[i];
		if (!lr->matched || lr->weight <= 0)
			continue;
		if (!first)
			append(q->text, sizeof q->text, ", ");
		append(q->text, sizeof q->text, lr->domain);
		first = false;
		if (txt == NULL && lr->txt[0])
			txt = lr->txt;
	}
	if (txt) {
		append(q->text, sizeof q->text, "; ");
		append(q->text, sizeof q->text, txt);
	}
	for (char *p = q->text; *p; p++) /* printable ASCII only, for the reply line */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
}

static void lookup_done(void *arg, const struct dnsbl_result *res)
{
	struct check_query *q = arg;
	struct dnsbl_check *c = q->c;
	bool over = res->score >= c->threshold;
	struct check_answer a;

	q->lk = NULL;
	list_warnings(c, q, res);
	engine_stats_outcome(c->stats, "dnsbl", over ? "listed" : res->score > 0 ? "under_threshold" : "clean");
	for (size_t i = 0; i < res->nlists; i++)
		if (res->lists[i].state == DNSBL_REFUSED || res->lists[i].state == DNSBL_FAILED)
			engine_stats_outcome(c->stats, "dnsbl",
					     res->lists[i].state == DNSBL_REFUSED ? "list_refused" : "list_failed");
	check_answer_neutral(&a);
	build_log(c, q, res, over);
	if (over && c->action == DNSBL_ACTION_REJECT) {
		build_text(q, res);
		check_answer_set_text(&a, CHECK_REJECT, 550, "5.7.1", q->text);
	}
	strbuf_append(a.log, sizeof a.log, q->log);
	check_cb cb = q->cb;
	void *cbarg = q->arg;
	free(q);
	cb(cbarg, &a);
}

static struct check_query *dnsbl_start(void *state, struct event_base *base, const struct engine_request *req,
				       check_cb cb, void *arg)
{
	struct dnsbl_check *c = state;
	const struct sockaddr *sa = (const struct sockaddr *)&req->client;
	struct dns_resolver *r;
	int family;
	uint8_t addr[16];

	if (dnsbl_client_addr(sa, &family, addr) < 0) {
		answer_now(cb, arg, "dnsbl=skipped");
		return NULL;
	}
	if (cidr_list_match(&c->skip, sa)) {
		answer_now(cb, arg, "dnsbl=skipped dnsbl_skip=yes");
		return NULL;
	}
	if ((r = c->dns(c->dns_arg, base)) == NULL) { /* a loop without a resolver: fail open */
		answer_now(cb, arg, "dnsbl=skipped dnsbl_errors=no-resolver");
		return NULL;
	}
	struct check_query *q = xcalloc(1, sizeof *q);
	q->c = c;
	q->cb = cb;
	q->arg = arg;
	strbuf_append(q->ip, sizeof q->ip, req->client_ip);
	q->lk = dnsbl_lookup_start(r, base, &c->sites, family, addr, c->timeout_ms, DNSBL_TXT_BLOCKING,
				   lookup_done, q);
	return q;
}

static void dnsbl_cancel(struct check_query *q)
{
	dnsbl_lookup_cancel(q->lk);
	free(q);
}

/* ---- open / close (main thread) ---- */

static void dnsbl_free(struct dnsbl_check *c)
{
	pthread_mutex_destroy(&c->warn_lock);
	dnsbl_sites_free(&c->sites);
	cidr_list_free(&c->skip);
	free(c->warn_failed);
	free(c->warn_refused);
	free(c);
}

static int dnsbl_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	const struct bs_config *cfg = env->cfg;

	if (cfg == NULL || cfg->dnsbl_sites == NULL || env->dns == NULL) /* no DNS: check-config's engine */
		return 0;
	struct dnsbl_check *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->warn_lock, NULL);
	const char *err = NULL;
	if (dnsbl_sites_parse(cfg->dnsbl_sites, &c->sites, why, whysz) < 0 ||
	    cidr_list_parse(cfg->dnsbl_skip ? cfg->dnsbl_skip : "", &c->skip, &err) < 0) { /* validated */
		if (err)
			snprintf(why, whysz, "dnsbl_skip: %s", err);
		dnsbl_free(c);
		return -1;
	}
	if (c->sites.n == 0) {
		dnsbl_free(c);
		return 0;
	}
	c->threshold = (int)cfg->dnsbl_threshold;
	c->action = cfg->dnsbl_action;
	c->timeout_ms = cfg->dnsbl_timeout_ms;
	c->dns = env->dns;
	c->dns_arg = env->dns_arg;
	c->stats = env->stats;
	c->warn_failed = xcalloc(c->sites.ndomains, sizeof *c->warn_failed);
	c->warn_refused = xcalloc(c->sites.ndomains, sizeof *c->warn_refused);
	*state = c;
	return 1;
}

static void dnsbl_close(void *state)
{
	dnsbl_free(state);
}

const struct check_type check_dnsbl_type = {
	.name = "dnsbl",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_CONNECT),
	.validate = dnsbl_validate,
	.open = dnsbl_open,
	.close = dnsbl_close,
	.start = dnsbl_start,
	.cancel = dnsbl_cancel,
};
