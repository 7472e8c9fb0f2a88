/* rcpt.c - the recipient source registry (config prefix -> implementation, whose row checks
 * its own specs), the registry of opened sources with each domain's chain, the normalised
 * address key, and the chain walk: sources asked in order, the first VALID or INVALID wins. */
#include "rcpt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Adding a source type: write src/rcpt_NAME.c defining `const struct rcpt_source_type
 * rcpt_NAME_type`, declare it in rcpt.h and add one row here. */
static const struct rcpt_source_type *const types[] = { /* the order of "expected ..." */
	&rcpt_map_type,
	&rcpt_callout_type,
	&rcpt_ldap_type,
};

/* Test-only additions (rcpt_type_register_extra); written before any worker thread starts. */
static const struct rcpt_source_type *extra_types[8];

void rcpt_type_register_extra(const struct rcpt_source_type *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(extra_types); i++) {
		if (extra_types[i] == NULL || extra_types[i] == type) {
			extra_types[i] = type;
			return;
		}
	}
}

static bool rcpt_prefix_is(const struct rcpt_source_type *t, const char *spec, size_t plen)
{
	return t && strlen(t->prefix) == plen && memcmp(t->prefix, spec, plen) == 0;
}

const struct rcpt_source_type *rcpt_type_find(const char *spec, const char **arg)
{
	const char *colon = strchr(spec, ':');

	*arg = colon ? colon + 1 : spec + strlen(spec);
	if (colon == NULL)
		return NULL;
	size_t plen = (size_t)(colon - spec);
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (rcpt_prefix_is(types[i], spec, plen))
			return types[i];
	for (size_t i = 0; i < ARRAY_SIZE(extra_types); i++)
		if (rcpt_prefix_is(extra_types[i], spec, plen))
			return extra_types[i];
	return NULL;
}

/* "expected map:FILE, callout:HOST:PORT or ldap:NAME", from the rows; built once. */
static char expected[160];
static pthread_once_t expected_once = PTHREAD_ONCE_INIT;

static void rcpt_expected_build(void)
{
	strbuf_append(expected, sizeof expected, "expected ");
	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		if (i > 0)
			strbuf_append(expected, sizeof expected, i + 1 < ARRAY_SIZE(types) ? ", " : " or ");
		strbuf_append(expected, sizeof expected, types[i]->syntax);
	}
}

static const char *rcpt_expected(void)
{
	pthread_once(&expected_once, rcpt_expected_build);
	return expected;
}

int rcpt_spec_check(const char *spec, const char **why)
{
	const char *arg;
	const struct rcpt_source_type *t = rcpt_type_find(spec, &arg);

	if (t == NULL) {
		*why = rcpt_expected();
		return -1;
	}
	return t->check_spec ? t->check_spec(arg, why) : 0;
}

int rcpt_spec_check_refs(const char *spec, const struct bs_config *cfg, char *why, size_t whysz)
{
	const char *arg;
	const struct rcpt_source_type *t = rcpt_type_find(spec, &arg);

	return t && t->check_refs ? t->check_refs(arg, cfg, why, whysz) : 0;
}

const char *rcpt_verdict_name(enum rcpt_verdict v)
{
	switch (v) {
	case RCPT_VALID: return "valid";
	case RCPT_INVALID: return "invalid";
	case RCPT_UNAVAILABLE: return "unavailable";
	}
	return "?";
}

/* ---- the address key ---- */

static void ascii_lower_n(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] + 32);
}

/* Length of the local part without its sub-address, or 0 if there is none to strip. */
static size_t rcpt_local_base_len(const char *local, size_t len, const char *delims)
{
	if (delims[0] == '\0')
		return 0;
	for (size_t i = 1; i < len; i++) /* a leading delimiter is not a tag separator */
		if (strchr(delims, local[i]) != NULL)
			return i;
	return 0;
}

int rcpt_addr_make(struct rcpt_addr *out, const char *local, size_t local_len, const char *domain,
		   const struct bs_domain *dom)
{
	size_t dlen = strlen(domain);

	memset(out, 0, sizeof *out);
	if (local_len == 0 || dlen == 0 || local_len + 1 + dlen > RCPT_ADDR_MAX)
		return -1;
	memcpy(out->full, local, local_len);
	out->full[local_len] = '@';
	memcpy(out->full + local_len + 1, domain, dlen + 1);
	out->at = local_len;
	out->case_sensitive_local = dom && dom->case_sensitive_local;
	ascii_lower_n(out->full + local_len + 1, dlen);
	if (!out->case_sensitive_local)
		ascii_lower_n(out->full, local_len);
	size_t blen = dom ? rcpt_local_base_len(out->full, local_len, dom->recipient_delimiter) : 0;
	if (blen) {
		memcpy(out->base, out->full, blen);
		memcpy(out->base + blen, out->full + local_len, dlen + 2); /* "@domain" + NUL */
	}
	return 0;
}

/* ---- opened sources ---- */

struct rcpt_source *rcpt_source_open(const char *spec, const struct bs_config *cfg)
{
	struct rcpt_source *src = xcalloc(1, sizeof *src);
	const char *arg;
	char why[256] = "";

	src->spec = xstrdup(spec);
	src->type = rcpt_type_find(spec, &arg);
	if (src->type == NULL)
		snprintf(why, sizeof why, "unknown source type (%s)", rcpt_expected());
	else
		src->state = src->type->open(arg, cfg, why, sizeof why);
	if (src->state == NULL) {
		log_err("recipient source %s cannot be used: %s; its lookups answer \"unavailable\"",
			spec, why[0] ? why : "open failed");
		src->type = &rcpt_surrogate_type;
		src->state = rcpt_surrogate_create(spec, why[0] ? why : "open failed");
		src->surrogate = true;
	}
	return src;
}

void rcpt_source_close(struct rcpt_source *src)
{
	if (src == NULL)
		return;
	src->type->close(src->state);
	free(src->spec);
	free(src);
}

/* ---- the registry of a config ---- */

struct rcpt_domain_chain {
	const struct bs_domain *domain;
	struct rcpt_source **sources;
	size_t n;
};

struct rcpt_registry {
	struct rcpt_source **sources; /* distinct specs, each opened once */
	size_t nsources;
	struct rcpt_domain_chain *chains; /* sorted by domain name */
	size_t nchains;
};

static struct rcpt_source *rcpt_registry_get(struct rcpt_registry *reg, const char *spec,
					     const struct bs_config *cfg)
{
	for (size_t i = 0; i < reg->nsources; i++)
		if (strcmp(reg->sources[i]->spec, spec) == 0)
			return reg->sources[i];
	reg->sources = xrealloc(reg->sources, (reg->nsources + 1) * sizeof *reg->sources);
	reg->sources[reg->nsources] = rcpt_source_open(spec, cfg);
	return reg->sources[reg->nsources++];
}

static int rcpt_chain_cmp(const void *a, const void *b)
{
	const struct rcpt_domain_chain *x = a, *y = b;
	return strcmp(x->domain->name, y->domain->name);
}

struct rcpt_registry *rcpt_registry_open(const struct bs_config *cfg)
{
	struct rcpt_registry *reg = xcalloc(1, sizeof *reg);

	reg->nchains = cfg->ndomains;
	reg->chains = xcalloc(cfg->ndomains, sizeof *reg->chains);
	for (size_t d = 0; d < cfg->ndomains; d++) {
		const struct bs_domain *dom = &cfg->domains[d];
		struct rcpt_domain_chain *ch = &reg->chains[d];
		ch->domain = dom;
		ch->n = dom->verify.n;
		ch->sources = xcalloc(dom->verify.n, sizeof *ch->sources);
		for (size_t i = 0; i < dom->verify.n; i++)
			ch->sources[i] = rcpt_registry_get(reg, dom->verify.items[i], cfg);
	}
	qsort(reg->chains, reg->nchains, sizeof *reg->chains, rcpt_chain_cmp);
	return reg;
}

void rcpt_registry_close(struct rcpt_registry *reg)
{
	if (reg == NULL)
		return;
	for (size_t i = 0; i < reg->nchains; i++)
		free(reg->chains[i].sources);
	for (size_t i = 0; i < reg->nsources; i++)
		rcpt_source_close(reg->sources[i]);
	free(reg->chains);
	free(reg->sources);
	free(reg);
}

int rcpt_registry_reload(struct rcpt_registry *reg)
{
	int failed = 0;

	for (size_t i = 0; i < reg->nsources; i++) {
		struct rcpt_source *src = reg->sources[i];
		if (src->type->reload && src->type->reload(src->state) != 0)
			failed++;
	}
	return failed;
}

void rcpt_registry_stats(struct rcpt_registry *reg, FILE *out)
{
	for (size_t i = 0; i < reg->nsources; i++) {
		struct rcpt_source *src = reg->sources[i];
		fprintf(out, "source=%s%s\n", src->spec, src->surrogate ? " surrogate=yes" : "");
		if (src->type->stats)
			src->type->stats(src->state, out);
	}
}

void rcpt_registry_forget(struct rcpt_registry *reg)
{
	for (size_t i = 0; i < reg->nsources; i++)
		if (reg->sources[i]->type->forget)
			reg->sources[i]->type->forget(reg->sources[i]->state);
}

int rcpt_registry_chain(const struct rcpt_registry *reg, const char *domain, struct rcpt_chain *out)
{
	size_t lo = 0, hi = reg->nchains;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(domain, reg->chains[mid].domain->name);
		if (c == 0) {
			out->sources = reg->chains[mid].sources;
			out->n = reg->chains[mid].n;
			out->domain = reg->chains[mid].domain;
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	memset(out, 0, sizeof *out);
	return -1;
}

size_t rcpt_chain_local_prefix(const struct rcpt_chain *chain)
{
	size_t k = 0;

	while (k < chain->n && chain->sources[k]->type->local)
		k++;
	return k;
}

/* ---- the chain walk ---- */

struct rcpt_chain_query {
	struct rcpt_chain chain;
	struct event_base *base;
	struct rcpt_addr addr;
	rcpt_answer_cb done;
	void *arg;
	size_t idx;                 /* source being asked */
	struct rcpt_query *cur;     /* its outstanding query, or NULL */
	bool in_lookup;             /* inside a source's lookup(): an answer now is synchronous */
	bool have;                  /* an answer arrived for idx */
	struct rcpt_answer last;
	char reasons[RCPT_REASON_MAX]; /* UNAVAILABLE reasons so far, "; "-joined */
	bool rate_limited;          /* a source was UNAVAILABLE for its probe rate */
};

static void rcpt_chain_note_unavailable(struct rcpt_chain_query *q, const struct rcpt_answer *a)
{
	/* cut short where it does not fit: the log line stays bounded */
	if (q->reasons[0] != '\0')
		strbuf_append(q->reasons, sizeof q->reasons, "; ");
	strbuf_append(q->reasons, sizeof q->reasons, a->source);
	strbuf_append(q->reasons, sizeof q->reasons, ": ");
	strbuf_append(q->reasons, sizeof q->reasons, a->reason);
}

/* Is the answer for the current source final? A catch-all under on_catchall = unavailable is not. */
static bool rcpt_chain_final(struct rcpt_chain_query *q)
{
	struct rcpt_answer *a = &q->last;

	a->local = q->chain.sources[q->idx]->type->local;

	if (a->verdict == RCPT_VALID && a->catchall && q->chain.domain &&
	    q->chain.domain->on_catchall == ON_CATCHALL_UNAVAILABLE) {
		a->verdict = RCPT_UNAVAILABLE;
		snprintf(a->reason, sizeof a->reason, "catch-all domain (on_catchall = unavailable)");
	}
	if (a->verdict != RCPT_UNAVAILABLE)
		return true;
	q->rate_limited |= a->rate_limited;
	rcpt_chain_note_unavailable(q, a);
	return false;
}

/* Ask sources from idx on until one is outstanding (returns false) or the walk ends (true,
 * q->last holds the chain's answer). */
static bool rcpt_chain_step(struct rcpt_chain_query *q);

static void rcpt_chain_on_answer(void *arg, const struct rcpt_answer *ans)
{
	struct rcpt_chain_query *q = arg;

	q->last = *ans;
	q->have = true;
	if (q->in_lookup)
		return; /* rcpt_chain_step goes on */
	q->cur = NULL;
	bool finished = rcpt_chain_final(q);
	if (!finished) {
		q->idx++;
		finished = rcpt_chain_step(q);
	}
	if (finished) {
		q->done(q->arg, &q->last);
		free(q);
	}
}

static bool rcpt_chain_step(struct rcpt_chain_query *q)
{
	while (q->idx < q->chain.n) {
		struct rcpt_source *src = q->chain.sources[q->idx];
		q->have = false;
		q->in_lookup = true;
		struct rcpt_query *h = src->type->lookup(src->state, q->base, &q->addr, rcpt_chain_on_answer, q);
		q->in_lookup = false;
		if (!q->have && h != NULL) {
			q->cur = h;
			return false;
		}
		if (!q->have) { /* a source that broke its contract */
			q->last = (struct rcpt_answer){ .verdict = RCPT_UNAVAILABLE, .source = src->spec };
			snprintf(q->last.reason, sizeof q->last.reason, "source gave no answer");
		}
		if (rcpt_chain_final(q))
			return true;
		q->idx++;
	}
	q->last.verdict = RCPT_UNAVAILABLE;
	q->last.catchall = false;
	q->last.local = false;
	q->last.rate_limited = q->rate_limited;
	if (q->chain.n == 0)
		q->last.source = "none";
	snprintf(q->last.reason, sizeof q->last.reason, "%s", q->reasons[0] ? q->reasons : "no recipient source");
	return true;
}

struct rcpt_chain_query *rcpt_chain_lookup(const struct rcpt_chain *chain, struct event_base *base,
					   const struct rcpt_addr *addr, rcpt_answer_cb done, void *arg)
{
	struct rcpt_chain_query *q = xcalloc(1, sizeof *q);

	q->chain = *chain;
	q->base = base;
	q->addr = *addr;
	q->done = done;
	q->arg = arg;
	if (!rcpt_chain_step(q))
		return q;
	done(arg, &q->last);
	free(q);
	return NULL;
}

void rcpt_chain_cancel(struct rcpt_chain_query *q)
{
	if (q == NULL)
		return;
	if (q->cur) {
		struct rcpt_source *src = q->chain.sources[q->idx];
		src->type->cancel(q->cur);
	}
	free(q);
}
