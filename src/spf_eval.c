/* spf_eval.c - check_host() of RFC 7208 (sections 4 to 6 and 8) as a state machine driven by
 * DNS answers: a stack of frames (the record of the checked domain, then include: targets), one
 * phase at a time, queries of a phase sent together and awaited together. A trampoline (run())
 * makes synchronous and asynchronous DNS answers take the same path. */
#include "spf_eval.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf_macro.h"
#include "spf_record.h"
#include "util.h"

#define NAME_MAX_LEN 253
#define PEND_MAX 16                         /* queries of one phase */
#define RECORD_MAX 8192                     /* longer SPF records are a permerror */
#define NAMES_MAX 16                        /* MX / PTR names kept (limits are capped to it) */
#define EXPAND_MAX 2048                     /* a domain-spec's expansion before truncation */
#define TERM_LIMIT_MAX 100                  /* configurable limits are capped to these */

enum phase {
	PH_FETCH,        /* ask for the TXT records of the top frame's domain */
	PH_RECORD,       /* they are in: select and parse the SPF record */
	PH_TERM,         /* next mechanism (or the end of the record) */
	PH_TARGET,       /* expand the mechanism's target and send its queries */
	PH_A_DONE,       /* a / exists answers in */
	PH_MX_NAMES,     /* MX answer in: look up the exchanges' addresses */
	PH_MX_DONE,      /* their addresses are in */
	PH_PTR_MATCH,    /* the client's validated names are known: match the ptr target */
	PH_REDIRECT,     /* expand redirect= and restart the frame on its target */
	PH_EXP,          /* a fail: expand exp= and fetch it */
	PH_EXP_TEXT,     /* the explanation's TXT is in */
	PH_EXP_EXPAND,   /* expand it */
	PH_EXP_DEFAULT,  /* expand the default explanation */
	PH_PTR_NAMES,    /* PTR answer in: validate the names (for ptr and %{p}) */
	PH_PTR_VALID,    /* validation answers in */
	PH_DONE,
};

enum purpose { P_TXT, P_ADDR, P_EXISTS, P_MX, P_MX_ADDR, P_PTR, P_PTR_ADDR, P_EXP };

struct pend {
	struct spf_check *c;
	struct spf_dns_query *q;
	enum purpose purpose;
	unsigned idx;
	bool active; /* sent, callback not yet called */
};

struct frame {
	char domain[NAME_MAX_LEN + 1];
	char *text;            /* the record (owned), NULL before it is fetched */
	size_t len;
	struct spf_record rec;
	size_t pos;            /* iterator in rec */
	struct spf_term term;  /* the mechanism in progress */
	bool redirected;       /* reached by redirect=: no record is a permerror */
};

struct spf_check {
	struct spf_dns dns;
	spf_check_cb cb;
	void *arg;
	struct spf_limits lim;

	/* the request */
	int family;
	struct in_addr ip4;
	struct in6_addr ip6;
	enum spf_identity identity;
	char sender[NAME_MAX_LEN + 66];
	char local[65];
	char sender_domain[NAME_MAX_LEN + 1];
	char helo[NAME_MAX_LEN + 1];
	char receiver[NAME_MAX_LEN + 1];
	char default_exp[SPF_EXP_MAX + 1];
	uint64_t now;

	/* the evaluation */
	enum phase phase;
	struct frame *frames; /* the domain's, then nested include: targets' (dns_terms + 2) */
	unsigned depth, nframes; /* frames in use, allocated */
	char target[NAME_MAX_LEN + 1];
	bool target_void; /* the expanded target is not a usable DNS name */
	unsigned dns_terms, void_lookups, dns_queries;

	/* answers of the phase in progress */
	struct pend pend[PEND_MAX];
	unsigned waiting;
	enum spf_dns_status st[PEND_MAX];
	bool match[PEND_MAX];
	char *txt;        /* the single SPF record (or explanation) of a TXT answer, owned */
	size_t txt_len;
	unsigned txt_count; /* SPF records (or TXT records for exp=) seen */
	bool txt_too_long;
	char names[NAMES_MAX][NAME_MAX_LEN + 1];
	unsigned nnames, names_total;
	char *exp_txt;    /* the explanation's TXT text, owned */
	size_t exp_len;

	/* the client's validated names (ptr and %{p}), found once per check */
	bool ptr_known;
	enum phase ptr_resume;
	char ptr_names[NAMES_MAX][NAME_MAX_LEN + 1];
	bool ptr_valid[NAMES_MAX];
	unsigned nptr;

	/* the outcome */
	enum spf_result result;
	bool running, finished;
	char mechanism[128];
	char problem[256];
	char explanation[SPF_EXP_MAX + 1];
	struct spf_record_used used[SPF_RECORDS_MAX];
	char used_domain[SPF_RECORDS_MAX][NAME_MAX_LEN + 1];
	char used_text[SPF_RECORDS_MAX][SPF_RECORD_TEXT_MAX + 1];
	size_t nused;
};

static const char *const result_names[] = {
	[SPF_NONE] = "none", [SPF_NEUTRAL] = "neutral", [SPF_PASS] = "pass", [SPF_FAIL] = "fail",
	[SPF_SOFTFAIL] = "softfail", [SPF_TEMPERROR] = "temperror", [SPF_PERMERROR] = "permerror",
};

const char *spf_result_name(enum spf_result r)
{
	return (unsigned)r < ARRAY_SIZE(result_names) ? result_names[r] : "?";
}

const char *spf_identity_name(enum spf_identity id)
{
	return id == SPF_ID_HELO ? "helo" : "mailfrom";
}

static enum spf_result qual_result(char q)
{
	switch (q) {
	case '-': return SPF_FAIL;
	case '~': return SPF_SOFTFAIL;
	case '?': return SPF_NEUTRAL;
	default: return SPF_PASS;
	}
}

/* ---- small helpers ------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t dstsz, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

/* Printable ASCII copy: other bytes become '?'. */
static void copy_printable(char *dst, size_t dstsz, const char *src, size_t n)
{
	if (n >= dstsz)
		n = dstsz - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = ch >= 0x20 && ch <= 0x7e ? (char)ch : '?';
	}
	dst[n] = '\0';
}

static void finish(struct spf_check *c, enum spf_result r)
{
	c->result = r;
	c->finished = true;
	c->phase = PH_DONE;
}

static void error(struct spf_check *c, enum spf_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void error(struct spf_check *c, enum spf_result r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->problem, sizeof(c->problem), fmt, ap);
	va_end(ap);
	for (char *p = c->problem; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	finish(c, r);
}

/* A domain usable as a DNS name: labels 1..63 bytes, 253 in all, an optional final dot. */
static bool name_valid(const char *s, size_t n, bool multi_label)
{
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	size_t label = 0, labels = 1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
			labels++;
		} else if (++label > 63) {
			return false;
		}
	}
	return label > 0 && (!multi_label || labels > 1);
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

/* Does an A/AAAA answer hold the client's address within the prefix? */
static bool answer_matches(const struct spf_check *c, enum spf_dns_type type, const struct spf_dns_result *res,
			   unsigned cidr4, unsigned cidr6)
{
	for (size_t i = 0; i < res->count; i++) {
		if (type == SPF_DNS_A && c->family == AF_INET &&
		    prefix_match((const uint8_t *)&res->rr[i].a, (const uint8_t *)&c->ip4, cidr4))
			return true;
		if (type == SPF_DNS_AAAA && c->family == AF_INET6 &&
		    prefix_match(res->rr[i].aaaa.s6_addr, c->ip6.s6_addr, cidr6))
			return true;
	}
	return false;
}

static struct frame *top(struct spf_check *c)
{
	return &c->frames[c->depth - 1];
}

/* ---- DNS ------------------------------------------------------------------------------------ */

static bool run(struct spf_check *c);

static void on_txt(struct spf_check *c, const struct spf_dns_result *res, bool exp)
{
	for (size_t i = 0; i < res->count; i++) {
		const char *t = res->rr[i].name;
		size_t n = res->rr[i].len;
		if (!t || (!exp && !spf_record_is_spf(t, n)))
			continue;
		if (++c->txt_count > 1)
			continue;
		if (n > RECORD_MAX) {
			c->txt_too_long = true;
			continue;
		}
		c->txt = xmalloc(n + 1);
		memcpy(c->txt, t, n);
		c->txt[n] = '\0';
		c->txt_len = n;
	}
}

static void on_names(struct spf_check *c, const struct spf_dns_result *res, unsigned limit)
{
	for (size_t i = 0; i < res->count; i++) {
		const char *n = res->rr[i].name;
		size_t len = res->rr[i].len;
		c->names_total++;
		if (c->nnames >= limit || !n || len == 0 || len > NAME_MAX_LEN || memchr(n, '\0', len))
			continue;
		memcpy(c->names[c->nnames], n, len);
		c->names[c->nnames][len] = '\0';
		c->nnames++;
	}
}

static void on_dns(void *arg, const struct spf_dns_result *res)
{
	struct pend *p = arg;
	struct spf_check *c = p->c;
	struct frame *f = top(c);
	enum spf_dns_status st = res->status;
	if (st == SPF_DNS_OK && res->count == 0)
		st = SPF_DNS_NODATA;
	p->active = false;
	p->q = NULL;
	c->st[p->idx] = st;
	if (st == SPF_DNS_OK) {
		switch (p->purpose) {
		case P_TXT: on_txt(c, res, false); break;
		case P_EXP: on_txt(c, res, true); break;
		case P_ADDR:
		case P_MX_ADDR:
			c->match[p->idx] = answer_matches(c, c->family == AF_INET ? SPF_DNS_A : SPF_DNS_AAAA, res,
							  f->term.cidr4, f->term.cidr6);
			break;
		case P_PTR_ADDR:
			c->match[p->idx] = answer_matches(c, c->family == AF_INET ? SPF_DNS_A : SPF_DNS_AAAA, res, 32, 128);
			break;
		case P_EXISTS: c->match[p->idx] = true; break;
		case P_MX: on_names(c, res, c->lim.mx_names); break;
		case P_PTR: on_names(c, res, c->lim.ptr_names); break;
		}
	}
	c->waiting--;
	if (!c->running)
		run(c);
}

/* Send one query of the phase; its answer lands in st[idx] / match[idx] / txt / names. */
static void send_query(struct spf_check *c, enum purpose purpose, unsigned idx, enum spf_dns_type type,
		       const char *name)
{
	struct pend *p = &c->pend[idx];
	p->c = c;
	p->purpose = purpose;
	p->idx = idx;
	p->active = true;
	p->q = NULL;
	c->st[idx] = SPF_DNS_TEMPFAIL;
	c->match[idx] = false;
	c->waiting++;
	c->dns_queries++;
	struct spf_dns_query *q = c->dns.query(c->dns.ctx, type, name, on_dns, p);
	if (p->active)
		p->q = q;
}

static void reset_answers(struct spf_check *c)
{
	free(c->txt);
	c->txt = NULL;
	c->txt_len = 0;
	c->txt_count = 0;
	c->txt_too_long = false;
	c->nnames = c->names_total = 0;
}

static enum spf_dns_type addr_type(const struct spf_check *c)
{
	return c->family == AF_INET ? SPF_DNS_A : SPF_DNS_AAAA;
}

/* A void answer of a mechanism: false (and the check finished) when over the limit. */
static bool count_void(struct spf_check *c)
{
	if (++c->void_lookups > c->lim.void_lookups) {
		error(c, SPF_PERMERROR, "more than %u void DNS lookups", c->lim.void_lookups);
		return false;
	}
	return true;
}

/* ---- macros and targets --------------------------------------------------------------------- */

static const char *p_value(struct spf_check *c, const char *domain);

static void macro_env(struct spf_check *c, struct spf_macro_env *env, const char *domain)
{
	memset(env, 0, sizeof(*env));
	env->sender = c->sender;
	env->local = c->local;
	env->sender_domain = c->sender_domain;
	env->domain = domain;
	env->helo = c->helo;
	env->ptr = c->ptr_known ? p_value(c, domain) : NULL;
	env->receiver = c->receiver;
	env->now = c->now;
	env->family = c->family;
	env->ip4 = c->ip4;
	env->ip6 = c->ip6;
}

static void start_ptr(struct spf_check *c, enum phase resume);
static const char *p_value(struct spf_check *c, const char *domain);

/* Expand a domain-spec into c->target (RFC 7208 4.8: over 253 bytes, labels are cut from the
 * left). 1 done, 0 waiting for the validated names (%{p}), -1 the expansion failed. */
static int expand_target(struct spf_check *c, const char *spec, size_t len, enum phase resume)
{
	struct frame *f = top(c);
	struct spf_macro_env env;
	char buf[EXPAND_MAX];
	size_t n;
	macro_env(c, &env, f->domain);
	enum spf_macro_status st = spf_macro_expand(spec, len, &env, false, buf, sizeof(buf), &n);
	if (st == SPF_MACRO_NEED_P) {
		start_ptr(c, resume);
		return 0;
	}
	if (st != SPF_MACRO_OK)
		return -1;
	const char *s = buf;
	if (n > 0 && s[n - 1] == '.')
		n--;
	while (n > NAME_MAX_LEN) {
		const char *dot = memchr(s, '.', n);
		if (!dot) {
			break;
		}
		n -= (size_t)(dot + 1 - s);
		s = dot + 1;
	}
	c->target_void = !name_valid(s, n, false);
	if (n > NAME_MAX_LEN)
		n = NAME_MAX_LEN;
	memcpy(c->target, s, n);
	c->target[n] = '\0';
	return 1;
}

/* ---- the client's validated names (RFC 7208 5.5) --------------------------------------------- */

static void start_ptr(struct spf_check *c, enum phase resume)
{
	char name[80];
	size_t n = 0;
	c->ptr_resume = resume;
	if (c->family == AF_INET) {
		const uint8_t *b = (const uint8_t *)&c->ip4;
		snprintf(name, sizeof(name), "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
	} else {
		static const char hex[] = "0123456789abcdef";
		for (int i = 15; i >= 0; i--) {
			name[n++] = hex[c->ip6.s6_addr[i] & 15];
			name[n++] = '.';
			name[n++] = hex[c->ip6.s6_addr[i] >> 4];
			name[n++] = '.';
		}
		memcpy(name + n, "ip6.arpa", 9);
	}
	reset_answers(c);
	c->phase = PH_PTR_NAMES;
	send_query(c, P_PTR, 0, SPF_DNS_PTR, name);
}

static void ptr_names(struct spf_check *c)
{
	/* RFC 7208 5.5: a PTR lookup error means no match; only the first names are validated */
	c->nptr = c->st[0] == SPF_DNS_OK ? c->nnames : 0;
	for (unsigned i = 0; i < c->nptr; i++) {
		memcpy(c->ptr_names[i], c->names[i], sizeof(c->ptr_names[i]));
		c->ptr_valid[i] = false;
	}
	c->phase = PH_PTR_VALID;
	for (unsigned i = 0; i < c->nptr; i++) {
		c->st[i] = SPF_DNS_NXDOMAIN;
		c->match[i] = false;
	}
	for (unsigned i = 0; i < c->nptr; i++)
		if (name_valid(c->ptr_names[i], strlen(c->ptr_names[i]), false))
			send_query(c, P_PTR_ADDR, i, addr_type(c), c->ptr_names[i]);
}

/* Is name equal to domain or one of its subdomains (case-insensitive, final dots ignored)? */
static bool name_within(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (d > 0 && domain[d - 1] == '.')
		d--;
	if (n < d || strncasecmp(name + n - d, domain, d) != 0)
		return false;
	return n == d || name[n - d - 1] == '.';
}

static void ptr_valid(struct spf_check *c)
{
	for (unsigned i = 0; i < c->nptr; i++)
		c->ptr_valid[i] = c->st[i] == SPF_DNS_OK && c->match[i];
	c->ptr_known = true;
	c->phase = c->ptr_resume;
}

/* %{p} for domain (RFC 7208 7.3): the domain itself if validated, else one of its
 * subdomains, else any validated name, else "unknown". */
static const char *p_value(struct spf_check *c, const char *domain)
{
	for (int pass = 0; pass < 3; pass++)
		for (unsigned i = 0; i < c->nptr; i++)
			if (c->ptr_valid[i] &&
			    (pass == 2 || (pass == 0 ? strcasecmp(c->ptr_names[i], domain) == 0
						     : name_within(c->ptr_names[i], domain))))
				return c->ptr_names[i];
	return "unknown";
}

/* ---- records -------------------------------------------------------------------------------- */

static void fetch(struct spf_check *c)
{
	struct frame *f = top(c);
	reset_answers(c);
	c->phase = PH_RECORD;
	send_query(c, P_TXT, 0, SPF_DNS_TXT, f->domain);
}

static void keep_used(struct spf_check *c, const struct frame *f)
{
	if (c->nused >= SPF_RECORDS_MAX)
		return;
	size_t i = c->nused++;
	copy_str(c->used_domain[i], sizeof(c->used_domain[i]), f->domain);
	copy_printable(c->used_text[i], sizeof(c->used_text[i]), f->text, f->len);
	c->used[i].domain = c->used_domain[i];
	c->used[i].text = c->used_text[i];
}

static void record(struct spf_check *c)
{
	struct frame *f = top(c);
	enum spf_dns_status st = c->st[0];
	bool first = c->depth == 1 && !f->redirected;
	if (st == SPF_DNS_TEMPFAIL || st == SPF_DNS_ERROR) {
		error(c, SPF_TEMPERROR, "DNS failure looking up the TXT records of %s", f->domain);
		return;
	}
	if (!first && st != SPF_DNS_OK && !count_void(c))
		return;
	if (c->txt_count == 0) {
		if (first) {
			copy_str(c->mechanism, sizeof(c->mechanism), "no SPF record");
			finish(c, SPF_NONE);
		} else {
			error(c, SPF_PERMERROR, "no SPF record at %s (%s target)", f->domain,
			      f->redirected ? "redirect" : "include");
		}
		return;
	}
	if (c->txt_count > 1) {
		error(c, SPF_PERMERROR, "%u SPF records at %s", c->txt_count, f->domain);
		return;
	}
	if (c->txt_too_long) {
		error(c, SPF_PERMERROR, "SPF record of %s longer than %d bytes", f->domain, RECORD_MAX);
		return;
	}
	free(f->text);
	f->text = c->txt;
	f->len = c->txt_len;
	c->txt = NULL;
	keep_used(c, f);
	char why[160];
	if (spf_record_parse(f->text, f->len, &f->rec, why, sizeof(why)) != 0) {
		error(c, SPF_PERMERROR, "%s: %s", f->domain, why);
		return;
	}
	f->pos = 0;
	c->phase = PH_TERM;
}

/* The frame on top ended with r (no error). */
static void frame_done(struct spf_check *c, enum spf_result r)
{
	while (c->depth > 1) {
		struct frame *f = top(c);
		free(f->text);
		f->text = NULL;
		c->depth--;
		if (r == SPF_NONE) {
			error(c, SPF_PERMERROR, "include target %s has no SPF record", f->domain);
			return;
		}
		if (r != SPF_PASS) { /* fail, softfail, neutral: the include does not match */
			c->phase = PH_TERM;
			return;
		}
		r = qual_result(top(c)->term.qual); /* the include matches */
	}
	if (c->mechanism[0] == '\0')
		copy_printable(c->mechanism, sizeof(c->mechanism), top(c)->term.text, top(c)->term.text_len);
	if (r == SPF_FAIL) {
		c->result = SPF_FAIL;
		c->phase = top(c)->rec.exp ? PH_EXP : PH_EXP_DEFAULT;
		return;
	}
	finish(c, r);
}

static void matched(struct spf_check *c)
{
	frame_done(c, qual_result(top(c)->term.qual));
}

/* ---- mechanisms ----------------------------------------------------------------------------- */

static void next_term(struct spf_check *c)
{
	struct frame *f = top(c);
	if (!spf_record_next(&f->rec, &f->pos, &f->term)) {
		if (f->rec.redirect) {
			c->phase = PH_REDIRECT;
			if (++c->dns_terms > c->lim.dns_terms)
				error(c, SPF_PERMERROR, "more than %u DNS-querying terms", c->lim.dns_terms);
			return;
		}
		if (c->depth == 1)
			copy_str(c->mechanism, sizeof(c->mechanism), "default");
		frame_done(c, SPF_NEUTRAL);
		return;
	}
	const struct spf_term *t = &f->term;
	switch (t->mech) {
	case SPF_MECH_ALL:
		matched(c);
		return;
	case SPF_MECH_IP4:
		if (c->family == AF_INET && prefix_match((const uint8_t *)&t->ip4, (const uint8_t *)&c->ip4, t->cidr4))
			matched(c);
		return;
	case SPF_MECH_IP6:
		if (c->family == AF_INET6 && prefix_match(t->ip6.s6_addr, c->ip6.s6_addr, t->cidr6))
			matched(c);
		return;
	default:
		break;
	}
	if (++c->dns_terms > c->lim.dns_terms) {
		error(c, SPF_PERMERROR, "more than %u DNS-querying terms", c->lim.dns_terms);
		return;
	}
	c->phase = PH_TARGET;
}

static bool expand_or_fail(struct spf_check *c, const char *spec, size_t len, enum phase resume)
{
	int r = expand_target(c, spec, len, resume);
	if (r < 0)
		error(c, SPF_PERMERROR, "cannot expand '%.*s'", (int)(len > 64 ? 64 : len), spec);
	return r > 0;
}

static void target(struct spf_check *c)
{
	struct frame *f = top(c);
	const struct spf_term *t = &f->term;
	if (t->spec) {
		if (!expand_or_fail(c, t->spec, t->spec_len, PH_TARGET))
			return;
	} else {
		copy_str(c->target, sizeof(c->target), f->domain);
		c->target_void = false;
	}
	reset_answers(c);
	if (t->mech == SPF_MECH_PTR) {
		if (!c->ptr_known)
			start_ptr(c, PH_PTR_MATCH);
		else
			c->phase = PH_PTR_MATCH;
		return;
	}
	if (c->target_void) { /* a name that cannot exist in the DNS: a void lookup */
		if (t->mech == SPF_MECH_INCLUDE) {
			error(c, SPF_PERMERROR, "include target '%s' is not a domain name", c->target);
			return;
		}
		if (count_void(c))
			c->phase = PH_TERM;
		return;
	}
	switch (t->mech) {
	case SPF_MECH_INCLUDE: {
		if (c->depth >= c->nframes) {
			error(c, SPF_PERMERROR, "include nesting too deep");
			return;
		}
		struct frame *n = &c->frames[c->depth++];
		memset(n, 0, sizeof(*n));
		copy_str(n->domain, sizeof(n->domain), c->target);
		c->phase = PH_FETCH;
		return;
	}
	case SPF_MECH_A:
		c->phase = PH_A_DONE;
		send_query(c, P_ADDR, 0, addr_type(c), c->target);
		return;
	case SPF_MECH_EXISTS:
		c->phase = PH_A_DONE;
		send_query(c, P_EXISTS, 0, SPF_DNS_A, c->target);
		return;
	case SPF_MECH_MX:
		c->phase = PH_MX_NAMES;
		send_query(c, P_MX, 0, SPF_DNS_MX, c->target);
		return;
	default:
		return;
	}
}

static void a_done(struct spf_check *c)
{
	enum spf_dns_status st = c->st[0];
	if (st == SPF_DNS_TEMPFAIL || st == SPF_DNS_ERROR) {
		error(c, SPF_TEMPERROR, "DNS failure looking up %s", c->target);
		return;
	}
	c->phase = PH_TERM;
	if (st != SPF_DNS_OK) {
		count_void(c);
		return;
	}
	if (c->match[0])
		matched(c);
}

static void mx_names(struct spf_check *c)
{
	enum spf_dns_status st = c->st[0];
	if (st == SPF_DNS_TEMPFAIL || st == SPF_DNS_ERROR) {
		error(c, SPF_TEMPERROR, "DNS failure looking up the MX records of %s", c->target);
		return;
	}
	if (st != SPF_DNS_OK) {
		if (count_void(c))
			c->phase = PH_TERM;
		return;
	}
	if (c->names_total > c->lim.mx_names) {
		error(c, SPF_PERMERROR, "%s has more than %u MX records", c->target, c->lim.mx_names);
		return;
	}
	c->phase = PH_MX_DONE;
	unsigned n = c->nnames;
	for (unsigned i = 0; i < n; i++) {
		c->st[i] = SPF_DNS_NXDOMAIN;
		c->match[i] = false;
	}
	/* copy first: answers may arrive (and reuse names[]) while we send */
	char names[NAMES_MAX][NAME_MAX_LEN + 1];
	memcpy(names, c->names, sizeof(names[0]) * n);
	for (unsigned i = 0; i < n; i++)
		if (name_valid(names[i], strlen(names[i]), false))
			send_query(c, P_MX_ADDR, i, addr_type(c), names[i]);
	c->nnames = n;
}

static void mx_done(struct spf_check *c)
{
	c->phase = PH_TERM;
	for (unsigned i = 0; i < c->nnames; i++) {
		if (c->st[i] == SPF_DNS_TEMPFAIL || c->st[i] == SPF_DNS_ERROR) {
			error(c, SPF_TEMPERROR, "DNS failure looking up MX host %s", c->names[i]);
			return;
		}
		if (c->match[i]) {
			matched(c);
			return;
		}
	}
}

static void ptr_match(struct spf_check *c)
{
	c->phase = PH_TERM;
	for (unsigned i = 0; i < c->nptr; i++)
		if (c->ptr_valid[i] && name_within(c->ptr_names[i], c->target)) {
			matched(c);
			return;
		}
}

static void redirect(struct spf_check *c)
{
	struct frame *f = top(c);
	if (!expand_or_fail(c, f->rec.redirect, f->rec.redirect_len, PH_REDIRECT))
		return;
	if (c->target_void) {
		error(c, SPF_PERMERROR, "redirect target '%s' is not a domain name", c->target);
		return;
	}
	free(f->text);
	memset(f, 0, sizeof(*f));
	copy_str(f->domain, sizeof(f->domain), c->target);
	f->redirected = true;
	c->phase = PH_FETCH;
}

/* ---- explanation (RFC 7208 6.2) ------------------------------------------------------------- */

static void exp_fetch(struct spf_check *c)
{
	struct frame *f = top(c);
	int r = expand_target(c, f->rec.exp, f->rec.exp_len, PH_EXP);
	if (r == 0)
		return;
	if (r < 0 || c->target_void) { /* no usable exp=: the default explanation */
		c->phase = PH_EXP_DEFAULT;
		return;
	}
	reset_answers(c);
	c->phase = PH_EXP_TEXT;
	send_query(c, P_EXP, 0, SPF_DNS_TXT, c->target);
}

/* Expand an explain-string into c->explanation: 1 done, 0 waiting for %{p}, -1 unusable. */
static int exp_expand(struct spf_check *c, const char *s, size_t n, enum phase resume)
{
	struct spf_macro_env env;
	size_t len;
	if (!spf_macro_valid(s, n, true, NULL))
		return -1;
	macro_env(c, &env, top(c)->domain);
	enum spf_macro_status st = spf_macro_expand(s, n, &env, true, c->explanation, sizeof(c->explanation), &len);
	if (st == SPF_MACRO_NEED_P) {
		start_ptr(c, resume);
		return 0;
	}
	if (st == SPF_MACRO_SYNTAX)
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)c->explanation[i] < 0x20 || (unsigned char)c->explanation[i] > 0x7e)
			c->explanation[i] = '?';
	return 1;
}

static void exp_text(struct spf_check *c)
{
	/* exactly one TXT record, else the default (RFC 7208 6.2) */
	if (c->st[0] == SPF_DNS_OK && c->txt_count == 1 && c->txt) {
		free(c->exp_txt);
		c->exp_txt = c->txt;
		c->exp_len = c->txt_len;
		c->txt = NULL;
		c->phase = PH_EXP_EXPAND;
		return;
	}
	c->phase = PH_EXP_DEFAULT;
}

static void exp_text_expand(struct spf_check *c)
{
	int r = exp_expand(c, c->exp_txt, c->exp_len, PH_EXP_EXPAND);
	if (r > 0)
		finish(c, SPF_FAIL);
	else if (r < 0)
		c->phase = PH_EXP_DEFAULT;
}

static void exp_default(struct spf_check *c)
{
	if (exp_expand(c, c->default_exp, strlen(c->default_exp), PH_EXP_DEFAULT) == 0)
		return;
	finish(c, SPF_FAIL);
}

/* ---- driver --------------------------------------------------------------------------------- */

static void step(struct spf_check *c)
{
	switch (c->phase) {
	case PH_FETCH: fetch(c); break;
	case PH_RECORD: record(c); break;
	case PH_TERM: next_term(c); break;
	case PH_TARGET: target(c); break;
	case PH_A_DONE: a_done(c); break;
	case PH_MX_NAMES: mx_names(c); break;
	case PH_MX_DONE: mx_done(c); break;
	case PH_PTR_MATCH: ptr_match(c); break;
	case PH_REDIRECT: redirect(c); break;
	case PH_EXP: exp_fetch(c); break;
	case PH_EXP_TEXT: exp_text(c); break;
	case PH_EXP_EXPAND: exp_text_expand(c); break;
	case PH_EXP_DEFAULT: exp_default(c); break;
	case PH_PTR_NAMES: ptr_names(c); break;
	case PH_PTR_VALID: ptr_valid(c); break;
	case PH_DONE: c->finished = true; break;
	}
}

static void check_free(struct spf_check *c)
{
	for (unsigned i = 0; i < c->nframes; i++)
		free(c->frames[i].text);
	free(c->frames);
	free(c->txt);
	free(c->exp_txt);
	free(c);
}

static void deliver(struct spf_check *c)
{
	struct spf_answer a;
	memset(&a, 0, sizeof(a));
	a.result = c->result;
	a.identity = c->identity;
	a.identity_value = c->identity == SPF_ID_HELO ? c->helo : c->sender;
	a.domain = c->frames[0].domain;
	a.mechanism = c->mechanism[0] ? c->mechanism : spf_result_name(c->result);
	a.explanation = c->result == SPF_FAIL ? c->explanation : NULL;
	a.problem = c->result == SPF_TEMPERROR || c->result == SPF_PERMERROR ? c->problem : NULL;
	a.dns_terms = c->dns_terms;
	a.void_lookups = c->void_lookups;
	a.dns_queries = c->dns_queries;
	a.nrecords = c->nused;
	a.records = c->used;
	c->cb(c->arg, &a);
}

static void cancel_pending(struct spf_check *c)
{
	for (unsigned i = 0; i < PEND_MAX; i++) {
		if (c->pend[i].active) {
			c->pend[i].active = false;
			if (c->pend[i].q && c->dns.cancel)
				c->dns.cancel(c->dns.ctx, c->pend[i].q);
			c->pend[i].q = NULL;
		}
	}
	c->waiting = 0;
}

/* Step until a phase waits for DNS or the check is done; when done, deliver and free (true). */
static bool run(struct spf_check *c)
{
	c->running = true;
	while (!c->finished && c->waiting == 0)
		step(c);
	c->running = false;
	if (!c->finished)
		return false;
	cancel_pending(c);
	deliver(c);
	check_free(c);
	return true;
}

/* ---- start / cancel ------------------------------------------------------------------------- */

static unsigned limit(unsigned v, unsigned dflt, unsigned max)
{
	return v == 0 ? dflt : v > max ? max : v;
}

/* Client address, identity and domain from the request: false (check finished) on bad input. */
static bool setup(struct spf_check *c, const struct spf_request *req)
{
	const struct sockaddr *sa = req->client;
	if (sa && sa->sa_family == AF_INET) {
		c->family = AF_INET;
		c->ip4 = ((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			c->family = AF_INET;
			memcpy(&c->ip4, a6->s6_addr + 12, 4);
		} else {
			c->family = AF_INET6;
			c->ip6 = *a6;
		}
	} else {
		error(c, SPF_PERMERROR, "no usable client address");
		return false;
	}
	copy_str(c->helo, sizeof(c->helo), req->helo);
	copy_str(c->receiver, sizeof(c->receiver), req->receiver ? req->receiver : "unknown");
	copy_str(c->default_exp, sizeof(c->default_exp), req->default_exp ? req->default_exp : SPF_DEFAULT_EXP);
	c->now = req->now ? (uint64_t)req->now : (uint64_t)time(NULL);
	c->identity = req->identity;
	const char *s = req->identity == SPF_ID_MAILFROM && req->sender ? req->sender : "";
	const char *at = strrchr(s, '@');
	if (s[0] == '\0') { /* null sender, or the HELO identity: postmaster@HELO */
		copy_str(c->local, sizeof(c->local), "postmaster");
		copy_str(c->sender_domain, sizeof(c->sender_domain), c->helo);
	} else if (!at) {
		copy_str(c->local, sizeof(c->local), "postmaster");
		copy_str(c->sender_domain, sizeof(c->sender_domain), s);
	} else {
		size_t ln = (size_t)(at - s);
		if (ln == 0)
			copy_str(c->local, sizeof(c->local), "postmaster");
		else
			copy_printable(c->local, sizeof(c->local), s, ln);
		copy_str(c->sender_domain, sizeof(c->sender_domain), at + 1);
	}
	snprintf(c->sender, sizeof(c->sender), "%s@%s", c->local, c->sender_domain);
	struct frame *f = &c->frames[0];
	c->depth = 1;
	const char *dom = req->identity == SPF_ID_HELO ? c->helo : c->sender_domain;
	copy_str(f->domain, sizeof(f->domain), dom);
	size_t dl = strlen(dom);
	/* RFC 7208 4.3: a malformed or single-label domain (or an address literal) gives none */
	if (dl > NAME_MAX_LEN || !name_valid(dom, dl, true) || dom[0] == '[') {
		copy_str(c->mechanism, sizeof(c->mechanism), "no usable domain");
		finish(c, SPF_NONE);
		return false;
	}
	return true;
}

struct spf_check *spf_check_start(const struct spf_dns *dns, const struct spf_request *req, spf_check_cb cb,
				  void *arg)
{
	struct spf_check *c = xcalloc(1, sizeof(*c));
	c->dns = *dns;
	c->cb = cb;
	c->arg = arg;
	c->lim.dns_terms = limit(req->limits.dns_terms, SPF_LIMIT_DNS_TERMS, TERM_LIMIT_MAX);
	c->lim.void_lookups = limit(req->limits.void_lookups, SPF_LIMIT_VOID, TERM_LIMIT_MAX);
	c->lim.mx_names = limit(req->limits.mx_names, SPF_LIMIT_MX, NAMES_MAX);
	c->lim.ptr_names = limit(req->limits.ptr_names, SPF_LIMIT_PTR, NAMES_MAX);
	c->nframes = c->lim.dns_terms + 2; /* each include counts as a term */
	c->frames = xcalloc(c->nframes, sizeof(*c->frames));
	c->phase = PH_FETCH;
	setup(c, req);
	return run(c) ? NULL : c; /* run() freed c if it finished */
}

void spf_check_cancel(struct spf_check *c)
{
	if (!c)
		return;
	cancel_pending(c);
	check_free(c);
}
