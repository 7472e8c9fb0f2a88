/* dnsbl_lookup.c - the parallel A (then TXT) queries of one address against every list, under one
 * deadline (dnsbl_lookup.h). Each list answers once; the lookup ends when every list has, or at
 * the deadline, which marks the lists still waiting as failed. */
#include "dnsbl_lookup.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct list_q {
	struct dnsbl_lookup *l;
	size_t i;
	struct dns_query *a, *txt; /* pending queries, NULL once answered */
	char name[DNSBL_QNAME_MAX];
};

struct dnsbl_lookup {
	const struct dnsbl_sites *sites;
	struct dns_resolver *r;
	enum dnsbl_txt_mode txt;
	dnsbl_lookup_cb cb;
	void *arg;
	struct event *deadline;  /* also answers a list with no sites, from the loop */
	size_t pending;          /* queries still waiting */
	uint64_t t0;
	struct list_q *qs;
	struct dnsbl_result res;
};

const char *dnsbl_state_name(enum dnsbl_state s)
{
	static const char *const names[] = { "pending", "not-listed", "listed", "refused", "failed" };
	return (size_t)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static void lookup_free(struct dnsbl_lookup *l)
{
	for (size_t i = 0; i < l->res.nlists; i++) {
		dns_cancel(l->qs[i].a);
		dns_cancel(l->qs[i].txt);
	}
	event_free(l->deadline);
	free(l->qs);
	free(l->res.lists);
	free(l);
}

static void lookup_finish(struct dnsbl_lookup *l)
{
	l->res.score = 0;
	for (size_t i = 0; i < l->res.nlists; i++)
		if (l->res.lists[i].matched)
			l->res.score += l->res.lists[i].weight;
	l->cb(l->arg, &l->res);
	lookup_free(l);
}

static void query_done(struct dnsbl_lookup *l)
{
	if (--l->pending == 0)
		lookup_finish(l);
}

static void txt_answer(void *arg, const struct dns_answer *ans)
{
	struct list_q *q = arg;
	struct dnsbl_list_result *lr = &q->l->res.lists[q->i];

	q->txt = NULL;
	if (ans->result == DNS_RESULT_OK && ans->count > 0) { /* the first record: lists give one */
		size_t n = ans->rr[0].len < sizeof lr->txt - 1 ? ans->rr[0].len : sizeof lr->txt - 1;
		memcpy(lr->txt, ans->rr[0].text, n);
		lr->txt[n] = '\0';
		for (size_t k = 0; k < n; k++) /* NULs and controls out: it goes into replies and logs */
			if ((unsigned char)lr->txt[k] < 0x20 || lr->txt[k] == 0x7f)
				lr->txt[k] = ' ';
	}
	query_done(q->l);
}

/* Which entries of this list match its reply addresses, and their weight. */
static void list_score(struct dnsbl_lookup *l, size_t i)
{
	struct dnsbl_list_result *lr = &l->res.lists[i];

	for (size_t e = 0; e < l->sites->n; e++) {
		const struct dnsbl_site *s = &l->sites->items[e];
		if (s->domain_index != i)
			continue;
		for (size_t k = 0; k < lr->naddrs; k++) {
			if (dnsbl_site_matches(s, lr->addrs[k])) {
				lr->matched = true;
				lr->weight += s->weight;
				break;
			}
		}
	}
}

static void a_answer(void *arg, const struct dns_answer *ans)
{
	struct list_q *q = arg;
	struct dnsbl_lookup *l = q->l;
	struct dnsbl_list_result *lr = &l->res.lists[q->i];

	q->a = NULL;
	lr->ms = now_ms() - l->t0;
	lr->cached = ans->cached;
	if (ans->result != DNS_RESULT_OK) {
		bool none = ans->result == DNS_RESULT_NXDOMAIN || ans->result == DNS_RESULT_NODATA;
		lr->state = none ? DNSBL_NOT_LISTED : DNSBL_FAILED;
		lr->error = none ? NULL : ans->error ? ans->error : "lookup failed";
		query_done(l);
		return;
	}
	lr->state = DNSBL_LISTED;
	for (size_t k = 0; k < ans->count && lr->naddrs < DNSBL_REPLY_ADDRS; k++) {
		memcpy(lr->addrs[lr->naddrs], ans->rr[k].addr, 4);
		if (dnsbl_reply_is_error(lr->addrs[lr->naddrs]))
			lr->state = DNSBL_REFUSED;
		lr->naddrs++;
	}
	if (lr->state == DNSBL_REFUSED) {
		lr->error = "reply in 127.255.255.0/24: the list refuses this resolver (not a listing)";
	} else {
		list_score(l, q->i);
		bool want = l->txt == DNSBL_TXT_ALL || (l->txt == DNSBL_TXT_BLOCKING && lr->matched && lr->weight > 0);
		if (want) {
			l->pending++;
			q->txt = dns_lookup(l->r, q->name, DNS_TYPE_TXT, txt_answer, q);
		}
	}
	query_done(l);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct dnsbl_lookup *l = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < l->res.nlists; i++) {
		struct list_q *q = &l->qs[i];
		if (q->a) {
			dns_cancel(q->a);
			q->a = NULL;
			l->res.lists[i].state = DNSBL_FAILED;
			l->res.lists[i].error = "timeout";
			l->res.lists[i].ms = now_ms() - l->t0;
			l->res.timed_out = true;
		}
		if (q->txt) { /* listed all the same, without its reason */
			dns_cancel(q->txt);
			q->txt = NULL;
		}
	}
	lookup_finish(l);
}

struct dnsbl_lookup *dnsbl_lookup_start(struct dns_resolver *r, struct event_base *base,
					const struct dnsbl_sites *sites, int family, const uint8_t addr[16],
					uint64_t timeout_ms, enum dnsbl_txt_mode txt, dnsbl_lookup_cb cb, void *arg)
{
	struct dnsbl_lookup *l = xcalloc(1, sizeof *l);
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };

	l->sites = sites;
	l->r = r;
	l->txt = txt;
	l->cb = cb;
	l->arg = arg;
	l->t0 = now_ms();
	l->res.nlists = sites->ndomains;
	l->res.lists = xcalloc(sites->ndomains + 1, sizeof *l->res.lists);
	l->qs = xcalloc(sites->ndomains + 1, sizeof *l->qs);
	l->deadline = evtimer_new(base, on_deadline, l);
	for (size_t i = 0; i < sites->ndomains; i++) {
		const struct dnsbl_site *s = dnsbl_sites_domain(sites, i);
		struct dnsbl_list_result *lr = &l->res.lists[i];
		lr->domain = s->domain;
		l->qs[i].l = l;
		l->qs[i].i = i;
		if (dnsbl_query_name(family, addr, s->domain, l->qs[i].name, sizeof l->qs[i].name) < 0) {
			lr->state = DNSBL_FAILED;
			lr->error = "query name too long";
			continue;
		}
		l->pending++;
		l->qs[i].a = dns_lookup(r, l->qs[i].name, DNS_TYPE_A, a_answer, &l->qs[i]);
	}
	if (l->pending == 0) /* nothing to ask: answer from the loop at once */
		tv.tv_sec = tv.tv_usec = 0;
	evtimer_add(l->deadline, &tv);
	return l;
}

void dnsbl_lookup_cancel(struct dnsbl_lookup *l)
{
	if (l != NULL)
		lookup_free(l);
}
