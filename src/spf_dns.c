/* spf_dns.c - the adapter from dns.c's typed lookups to spf_eval.h's DNS interface: each
 * query is one dns_lookup; the answer's records are handed over as spf_dns_rr (only during
 * the callback), NXDOMAIN / NODATA / TEMPFAIL mapped one to one. */
#include "spf_dns.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct spf_dns_query {
	struct dns_query *dq;
	spf_dns_cb cb;
	void *arg;
};

static void spf_dns_answer(void *arg, const struct dns_answer *a)
{
	struct spf_dns_query *q = arg;
	struct spf_dns_result res = { .status = SPF_DNS_TEMPFAIL, .error = a->error };
	struct spf_dns_rr *rr = NULL;
	static const enum spf_dns_status status[] = {
		[DNS_RESULT_OK] = SPF_DNS_OK, [DNS_RESULT_NXDOMAIN] = SPF_DNS_NXDOMAIN,
		[DNS_RESULT_NODATA] = SPF_DNS_NODATA, [DNS_RESULT_TEMPFAIL] = SPF_DNS_TEMPFAIL,
	};

	if ((unsigned)a->result < ARRAY_SIZE(status))
		res.status = status[a->result];
	if (res.status == SPF_DNS_OK && a->count > 0) {
		rr = xcalloc(a->count, sizeof *rr);
		for (size_t i = 0; i < a->count; i++) {
			if (a->type == DNS_TYPE_A)
				memcpy(&rr[i].a, a->rr[i].addr, 4);
			else if (a->type == DNS_TYPE_AAAA)
				memcpy(&rr[i].aaaa, a->rr[i].addr, 16);
			rr[i].pref = a->rr[i].preference;
			rr[i].name = a->rr[i].text;
			rr[i].len = a->rr[i].len;
		}
		res.count = a->count;
		res.rr = rr;
	} else if (res.status == SPF_DNS_OK) {
		res.status = SPF_DNS_NODATA;
	}
	spf_dns_cb cb = q->cb;
	void *cbarg = q->arg;
	free(q); /* the handle is dead once cb starts */
	cb(cbarg, &res);
	free(rr);
}

static struct spf_dns_query *spf_dns_query(void *ctx, enum spf_dns_type type, const char *name, spf_dns_cb cb,
					   void *arg)
{
	static const enum dns_type types[] = {
		[SPF_DNS_A] = DNS_TYPE_A, [SPF_DNS_AAAA] = DNS_TYPE_AAAA, [SPF_DNS_MX] = DNS_TYPE_MX,
		[SPF_DNS_PTR] = DNS_TYPE_PTR, [SPF_DNS_TXT] = DNS_TYPE_TXT,
	};
	struct spf_dns_query *q = xcalloc(1, sizeof *q);

	q->cb = cb;
	q->arg = arg;
	q->dq = dns_lookup(ctx, name, (unsigned)type < ARRAY_SIZE(types) && types[type] ? types[type] : DNS_TYPE_TXT,
			   spf_dns_answer, q);
	return q;
}

static void spf_dns_cancel(void *ctx, struct spf_dns_query *q)
{
	(void)ctx;
	if (q == NULL)
		return;
	dns_cancel(q->dq);
	free(q);
}

void spf_dns_init(struct spf_dns *dns, struct dns_resolver *r)
{
	dns->query = spf_dns_query;
	dns->cancel = spf_dns_cancel;
	dns->ctx = r;
}
