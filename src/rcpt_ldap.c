/* rcpt_ldap.c - the ldap:NAME recipient source: is there a directory entry for this address?
 * Lookups run on the section's pool of lookup threads (ldap_conn.c), never on a worker's loop;
 * the answer is posted back to the asking worker's event_base. Entry found = VALID, none =
 * INVALID, any error or timeout = UNAVAILABLE. Disabled accounts (userAccountControl bit 0x2)
 * are judged here, client-side, so it works on AD and on servers without AD's matching rules. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config_check.h"
#include "ldap_conn.h"
#include "ldap_filter.h"
#include "log.h"
#include "rcpt.h"
#include "util.h"

#define LOOKUP_SIZELIMIT 16 /* we only need one entry that counts */

struct rcpt_ldap {
	char *spec;                   /* "ldap:NAME" */
	struct ldap_conn_cfg *cfg;
	struct ldap_conn_pool *pool;
	char *tmpl;                   /* filter template, checked */
	bool include_disabled;
	atomic_ulong lookups, valid, invalid, unavailable;
	atomic_ulong inflight;  /* queued or being searched */
	atomic_ulong timeouts;  /* no connection free in time, or the directory did not answer in time */
};

struct rcpt_query {
	struct ldap_conn_job job;     /* first: the pool hands it back to lookup_run */
	struct rcpt_ldap *src;
	struct event_base *base;      /* the asking worker's loop */
	rcpt_answer_cb done;
	void *arg;
	atomic_bool cancelled;
	struct rcpt_answer ans;
	char filter[LDAP_FILTER_LEN_MAX];
};

static void answer_set(struct rcpt_answer *ans, const struct rcpt_ldap *s, enum rcpt_verdict v,
		       const char *reason)
{
	ans->verdict = v;
	ans->source = s->spec;
	ans->catchall = false;
	snprintf(ans->reason, sizeof(ans->reason), "%s", reason);
}

static void count(struct rcpt_ldap *s, enum rcpt_verdict v)
{
	atomic_fetch_add(v == RCPT_VALID ? &s->valid : v == RCPT_INVALID ? &s->invalid : &s->unavailable, 1);
}

/* ---- open / close / stats ---- */

static void ldap_src_free(struct rcpt_ldap *s)
{
	ldap_conn_pool_stop(s->pool);
	ldap_conn_cfg_free(s->cfg);
	free(s->tmpl);
	free(s->spec);
	free(s);
}

/* NAME: a valid section name here; that the [ldap NAME] section exists, in ldap_src_check_refs. */
static int ldap_src_check_spec(const char *arg, const char **why)
{
	return config_check_ldap_name(arg, why);
}

static int ldap_src_check_refs(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	if (config_find_ldap(cfg, arg) != NULL)
		return 0;
	snprintf(why, whysz, "there is no [ldap %s] section", arg);
	return -1;
}

static void *ldap_src_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	const struct bs_ldap *l = config_find_ldap(cfg, arg);
	struct rcpt_ldap *s;
	char err[256];

	if (l == NULL) {
		snprintf(why, whysz, "ldap:%s: no [ldap %s] section in %s", arg, arg, cfg->path ? cfg->path : "the config");
		return NULL;
	}
	if (ldap_filter_template_check(ldap_filter_template(l), err, sizeof(err)) != 0) {
		snprintf(why, whysz, "%s:%u: [ldap %s]: %s", cfg->path ? cfg->path : "", l->line, l->name, err);
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->spec = xcalloc(1, strlen(arg) + 6);
	sprintf(s->spec, "ldap:%s", arg);
	s->tmpl = xstrdup(ldap_filter_template(l));
	s->include_disabled = l->include_disabled;
	s->cfg = ldap_conn_cfg_new(l, err, sizeof(err));
	if (s->cfg != NULL)
		s->pool = ldap_conn_pool_start(s->cfg, err, sizeof(err));
	if (s->pool == NULL) {
		snprintf(why, whysz, "%s:%u: [ldap %s]: %s", cfg->path ? cfg->path : "", l->line, l->name, err);
		ldap_src_free(s);
		return NULL;
	}
	return s;
}

static void ldap_src_close(void *state)
{
	ldap_src_free(state);
}

static void ldap_src_stats(void *state, FILE *out)
{
	struct rcpt_ldap *s = state;

	fprintf(out, "source=%s connections=%u lookups=%lu valid=%lu invalid=%lu unavailable=%lu inflight=%lu timeouts=%lu\n",
		s->spec, s->cfg->connections, atomic_load(&s->lookups), atomic_load(&s->valid),
		atomic_load(&s->invalid), atomic_load(&s->unavailable), atomic_load(&s->inflight),
		atomic_load(&s->timeouts));
}

/* ---- on a lookup thread ---- */

/* Does this entry count? Not when it is a disabled account and those are excluded. */
static bool entry_counts(LDAP *ld, LDAPMessage *e, bool include_disabled)
{
	struct berval **vals;
	char uac[32] = "";

	if (include_disabled)
		return true;
	vals = ldap_get_values_len(ld, e, "userAccountControl");
	if (vals != NULL && vals[0] != NULL)
		strbuf_copy(uac, sizeof(uac), vals[0]->bv_val, vals[0]->bv_len);
	ldap_value_free_len(vals);
	return !ldap_filter_uac_disabled(uac);
}

/* Judge a search result: the first entry that counts makes the address VALID. */
static enum rcpt_verdict judge(struct rcpt_ldap *s, LDAP *ld, LDAPMessage *res, int rc,
			       char *reason, size_t rsz)
{
	unsigned disabled = 0;

	for (LDAPMessage *e = ldap_first_entry(ld, res); e != NULL; e = ldap_next_entry(ld, e)) {
		char *dn;
		if (!entry_counts(ld, e, s->include_disabled)) {
			disabled++;
			continue;
		}
		dn = ldap_get_dn(ld, e);
		snprintf(reason, rsz, "found: %s", dn != NULL ? dn : "?");
		ldap_memfree(dn);
		return RCPT_VALID;
	}
	if (rc != LDAP_SUCCESS) { /* size limit: more entries than we saw, none counted */
		snprintf(reason, rsz, "%s: more entries than expected, none usable", ldap_err2string(rc));
		return RCPT_UNAVAILABLE;
	}
	snprintf(reason, rsz, disabled ? "only disabled accounts have this address" : "no such entry");
	return RCPT_INVALID;
}

static void lookup_search(struct rcpt_query *q, struct ldap_conn *c)
{
	struct rcpt_ldap *s = q->src;
	char *attrs[] = { (char *)(uintptr_t)"userAccountControl", NULL };
	LDAPMessage *res = NULL;
	char err[RCPT_REASON_MAX];
	int rc = ldap_conn_search(c, q->filter, attrs, LOOKUP_SIZELIMIT, NULL, &res, err, sizeof(err));

	if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) {
		q->ans.verdict = judge(s, ldap_conn_handle(c), res, rc, q->ans.reason, sizeof(q->ans.reason));
		q->ans.source = s->spec;
	} else {
		if (rc == LDAP_TIMEOUT || rc == LDAP_TIMELIMIT_EXCEEDED)
			atomic_fetch_add(&s->timeouts, 1);
		answer_set(&q->ans, s, RCPT_UNAVAILABLE, err);
		log_warn("%s: lookup failed: %s", s->spec, err);
	}
	ldap_msgfree(res);
}

static void lookup_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct rcpt_query *q = arg;

	if (!atomic_load(&q->cancelled))
		q->done(q->arg, &q->ans);
	free(q);
}

static void lookup_run(struct ldap_conn_job *job, struct ldap_conn *c)
{
	struct rcpt_query *q = (struct rcpt_query *)job;
	struct rcpt_ldap *s = q->src;
	static const struct timeval now = { 0, 0 };
	uint64_t waited = now_ms() - job->queued_ms;

	if (atomic_load(&q->cancelled)) {
		answer_set(&q->ans, s, RCPT_UNAVAILABLE, "cancelled");
	} else if (c == NULL) {
		answer_set(&q->ans, s, RCPT_UNAVAILABLE, "shutting down");
	} else if (waited > s->cfg->timeout_ms) {
		char why[96];
		atomic_fetch_add(&s->timeouts, 1);
		snprintf(why, sizeof(why), "all %u connections busy for %llu ms", s->cfg->connections,
			 (unsigned long long)waited);
		answer_set(&q->ans, s, RCPT_UNAVAILABLE, why);
	} else {
		lookup_search(q, c);
	}
	if (!atomic_load(&q->cancelled))
		count(s, q->ans.verdict);
	atomic_fetch_sub(&s->inflight, 1);
	/* q->src is not touched after this point: the source may be closed once the pool stops */
	if (event_base_once(q->base, -1, EV_TIMEOUT, lookup_deliver, q, &now) != 0)
		log_err("%s: cannot post an answer to its event loop (lost)", s->spec);
}

/* ---- on the asking worker's thread ---- */

static struct rcpt_query *ldap_src_lookup(void *state, struct event_base *base,
					  const struct rcpt_addr *addr, rcpt_answer_cb done, void *arg)
{
	struct rcpt_ldap *s = state;
	struct rcpt_query *q = xcalloc(1, sizeof(*q));
	size_t len = strnlen(addr->full, sizeof(addr->full));
	enum ldap_filter_status st = LFILTER_IMPOSSIBLE;

	atomic_fetch_add(&s->lookups, 1);
	/* a NUL inside the local part shows as a string that ends before the '@' */
	if (len > addr->at && addr->full[addr->at] == '@')
		st = ldap_filter_build2(s->tmpl, addr->full, addr->base, q->filter, sizeof(q->filter));
	if (st != LFILTER_OK) {
		struct rcpt_answer ans;
		enum rcpt_verdict v = st == LFILTER_IMPOSSIBLE ? RCPT_INVALID : RCPT_UNAVAILABLE;
		answer_set(&ans, s, v, st == LFILTER_IMPOSSIBLE ? "not a possible mailbox (control characters, no local part or domain)"
				       : st == LFILTER_TOO_LONG ? "search filter too long" : "cannot escape the address");
		count(s, v);
		free(q);
		done(arg, &ans);
		return NULL;
	}
	q->src = s;
	q->base = base;
	q->done = done;
	q->arg = arg;
	q->job.run = lookup_run;
	log_debug("%s: search %s", s->spec, q->filter);
	atomic_fetch_add(&s->inflight, 1);
	if (!ldap_conn_pool_submit(s->pool, &q->job)) {
		atomic_fetch_sub(&s->inflight, 1);
		struct rcpt_answer ans;
		answer_set(&ans, s, RCPT_UNAVAILABLE, "too many lookups waiting for the directory");
		count(s, RCPT_UNAVAILABLE);
		free(q);
		done(arg, &ans);
		return NULL;
	}
	return q;
}

static void ldap_src_cancel(struct rcpt_query *q)
{
	atomic_store(&q->cancelled, true); /* lookup_deliver frees it on this same thread */
}

const struct rcpt_source_type rcpt_ldap_type = {
	.prefix = "ldap",
	.syntax = "ldap:NAME",
	.check_spec = ldap_src_check_spec,
	.check_refs = ldap_src_check_refs,
	.open = ldap_src_open,
	.lookup = ldap_src_lookup,
	.cancel = ldap_src_cancel,
	.reload = NULL,
	.stats = ldap_src_stats,
	.close = ldap_src_close,
};
