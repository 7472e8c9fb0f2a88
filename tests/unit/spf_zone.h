/* spf_zone.h - a DNS test double for the SPF evaluator (header only): a zone of records in the
 * RFC 7208 test suite's terms (TIMEOUT entries, CNAMEs) answering through struct spf_dns,
 * either from inside query() or later from zone_run(), in FIFO or LIFO order. */
#ifndef BACKSTOP_SPF_ZONE_H
#define BACKSTOP_SPF_ZONE_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf_eval.h"
#include "util.h"

#define ZONE_TIMEOUT 100 /* a type for TIMEOUT entries */
#define ZONE_CNAME 101
#define ZONE_SPF 102
#define ZONE_ANSWER_MAX 64

struct zone_rr {
	char *name;
	int type; /* enum spf_dns_type or ZONE_* */
	struct spf_dns_rr rr;
	char *data; /* MX/PTR/CNAME name, TXT text (owned) */
};

struct zone_pending {
	struct zone_pending *next;
	enum spf_dns_type type;
	char name[512];
	spf_dns_cb cb;
	void *arg;
	bool cancelled;
};

struct zone {
	struct zone_rr *rr;
	size_t n, cap;
	bool async, lifo;
	struct zone_pending *queue; /* pending answers (async) */
	unsigned queries, outstanding;
	unsigned max_outstanding;
};

/* Add a record; false if an A/AAAA address does not parse (the record is kept, as 0.0.0.0 / ::). */
static inline bool zone_add(struct zone *z, const char *name, int type, const char *data, size_t len)
{
	bool ok = true;
	if (z->n == z->cap) {
		z->cap = z->cap ? z->cap * 2 : 32;
		z->rr = xrealloc(z->rr, z->cap * sizeof(*z->rr));
	}
	struct zone_rr *r = &z->rr[z->n++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->type = type;
	switch (type) {
	case SPF_DNS_A:
		ok = inet_pton(AF_INET, data, &r->rr.a) == 1;
		break;
	case SPF_DNS_AAAA:
		ok = inet_pton(AF_INET6, data, &r->rr.aaaa) == 1;
		break;
	case SPF_DNS_MX: {
		char *sp = strchr(data, ' ');
		r->rr.pref = (uint16_t)atoi(data);
		data = sp ? sp + 1 : "";
		len = strlen(data);
	}
		/* fall through */
	default:
		r->data = xmalloc(len + 1);
		memcpy(r->data, data, len);
		r->data[len] = '\0';
		/* names without their final dot, as a resolver gives them */
		if (type != SPF_DNS_TXT && type != ZONE_SPF && len > 1 && r->data[len - 1] == '.')
			r->data[--len] = '\0';
		r->rr.name = r->data;
		r->rr.len = len;
		break;
	}
	return ok;
}

static inline void zone_clear(struct zone *z)
{
	for (size_t i = 0; i < z->n; i++) {
		free(z->rr[i].name);
		free(z->rr[i].data);
	}
	z->n = 0;
}

static inline void zone_free(struct zone *z)
{
	zone_clear(z);
	free(z->rr);
	z->rr = NULL;
	z->cap = 0;
}

static inline bool zone_name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 1 && a[la - 1] == '.')
		la--;
	if (lb > 1 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* Answer (name, type) from the zone: the suite's rules (a TIMEOUT entry times the query out
 * unless records of the type came before it), CNAMEs followed, a loop is a server failure. */
static inline void zone_answer(struct zone *z, enum spf_dns_type type, const char *name, spf_dns_cb cb, void *arg)
{
	struct spf_dns_rr rr[ZONE_ANSWER_MAX];
	struct spf_dns_result res = {.status = SPF_DNS_NXDOMAIN, .rr = rr};
	const char *cur = name;
	for (int hop = 0; hop < 8; hop++) {
		bool found = false, timeout = false;
		const char *cname = NULL;
		res.count = 0;
		for (size_t i = 0; i < z->n; i++) {
			struct zone_rr *r = &z->rr[i];
			if (!zone_name_eq(r->name, cur))
				continue;
			found = true;
			if (r->type == ZONE_TIMEOUT) {
				if (res.count == 0)
					timeout = true;
				break;
			}
			if (r->type == ZONE_CNAME)
				cname = r->data;
			else if (r->type == (int)type && res.count < ZONE_ANSWER_MAX)
				rr[res.count++] = r->rr;
		}
		if (timeout) {
			res.status = SPF_DNS_TEMPFAIL;
			res.count = 0;
			res.error = "timeout";
			cb(arg, &res);
			return;
		}
		if (res.count > 0) {
			res.status = SPF_DNS_OK;
			cb(arg, &res);
			return;
		}
		if (!found) {
			res.status = SPF_DNS_NXDOMAIN;
			cb(arg, &res);
			return;
		}
		if (!cname) {
			res.status = SPF_DNS_NODATA;
			cb(arg, &res);
			return;
		}
		cur = cname;
	}
	res.status = SPF_DNS_TEMPFAIL; /* CNAME loop: SERVFAIL */
	res.error = "CNAME loop";
	res.count = 0;
	cb(arg, &res);
}

static inline struct spf_dns_query *zone_query(void *ctx, enum spf_dns_type type, const char *name, spf_dns_cb cb,
					       void *arg)
{
	struct zone *z = ctx;
	z->queries++;
	if (!z->async) {
		zone_answer(z, type, name, cb, arg);
		return NULL;
	}
	struct zone_pending *p = xcalloc(1, sizeof(*p));
	p->type = type;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->cb = cb;
	p->arg = arg;
	if (z->lifo || !z->queue) {
		p->next = z->queue;
		z->queue = p;
	} else {
		struct zone_pending *t = z->queue;
		while (t->next)
			t = t->next;
		t->next = p;
	}
	if (++z->outstanding > z->max_outstanding)
		z->max_outstanding = z->outstanding;
	return (struct spf_dns_query *)p;
}

static inline void zone_cancel(void *ctx, struct spf_dns_query *q)
{
	(void)ctx;
	((struct zone_pending *)(void *)q)->cancelled = true;
}

/* Answer the pending queries (and those they cause) until none is left. */
static inline void zone_run(struct zone *z)
{
	while (z->queue) {
		struct zone_pending *p = z->queue;
		z->queue = p->next;
		z->outstanding--;
		if (!p->cancelled)
			zone_answer(z, p->type, p->name, p->cb, p->arg);
		free(p);
	}
}

static inline struct spf_dns zone_dns(struct zone *z)
{
	struct spf_dns d = {.query = zone_query, .cancel = zone_cancel, .ctx = z};
	return d;
}

#endif
