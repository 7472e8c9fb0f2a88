/* check_spf.c - SPF (RFC 7208) as a check of the engine. At MAIL the sender's domain is
 * evaluated (the null sender: postmaster@HELO, RFC 7208 2.4; with spf_helo the HELO name first,
 * whose fail decides, 2.3) over the loop's resolver (spf_dns.c); the result becomes header
 * fields for delivery (Received-SPF, Authentication-Results) and a fact for the RCPT stage.
 * Its action belongs to each recipient's domain: at RCPT, the fact meets the domain's spf_*
 * keys. MAIL itself refuses only when every domain would refuse alike (README, "SPF"). A front
 * end that brings no fact (the policy service's first request of a transaction) gets the
 * evaluation at RCPT. */
#include "check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "config_load.h"
#include "dns.h"
#include "engine_stats.h"
#include "log.h"
#include "spf_dns.h"
#include "spf_header.h"
#include "util.h"

struct spf_state {
	const struct bs_config *cfg;
	engine_dns_fn dns;
	void *dns_arg;
	struct engine_stats *stats;  /* results counted here (metrics), or NULL */
	struct cidr_list gw_skip;
	struct cidr_list *dom_skip; /* per cfg->domains[i] */
};

/* What an evaluation found, kept long enough to answer. */
struct spf_found {
	enum spf_result result;
	enum spf_identity identity;
	char value[SMTP_PATH_MAX + 16];   /* the checked identity */
	char mechanism[128];
	char text[SPF_EXP_MAX + 1];       /* fail: the explanation; temperror/permerror: the problem */
	unsigned lookups;
	size_t nrecords;
};

struct check_query {
	struct spf_state *st;
	check_cb cb;
	void *arg;
	struct spf_check *sc;
	struct spf_dns dns;
	enum engine_stage stage;
	const struct bs_domain *domain;
	struct sockaddr_storage client;
	char client_ip[INET6_ADDRSTRLEN];
	char sender[SMTP_PATH_MAX + 8];   /* "local@domain", "" for <> */
	char helo[SMTP_DOMAIN_MAX + 1];
	bool helo_done;                   /* the HELO identity was evaluated (helo_found) */
	bool starting;                    /* inside spf_check_start: an answer from inside is freed by
					   * the caller, not by spf_finish */
	bool finished;
	struct spf_found helo_found, found;
};

/* ---- actions ---- */

enum spf_verdict { SPF_GO_ON = 0, SPF_REFUSE, SPF_DEFER };

struct spf_action {
	enum spf_verdict verdict;
	int code;
	const char *enhanced;
	const char *name; /* for the log: "reject", "defer", "tag", "off" */
};

static struct spf_action spf_action_of(const struct bs_spf_actions *a, enum spf_result r)
{
	struct spf_action x = { SPF_GO_ON, 0, NULL, "tag" };

	switch (r) {
	case SPF_FAIL:
		if (a->fail == SPF_FAIL_REJECT)
			x = (struct spf_action){ SPF_REFUSE, 550, "5.7.23", "reject" };
		else if (a->fail == SPF_FAIL_OFF)
			x.name = "off";
		break;
	case SPF_SOFTFAIL:
		if (a->softfail == SPF_SOFTFAIL_REJECT)
			x = (struct spf_action){ SPF_REFUSE, 550, "5.7.23", "reject" };
		break;
	case SPF_TEMPERROR:
		if (a->temperror == SPF_TEMPERROR_DEFER)
			x = (struct spf_action){ SPF_DEFER, 451, "4.7.24", "defer" };
		break;
	case SPF_PERMERROR:
		if (a->permerror == SPF_PERMERROR_REJECT)
			x = (struct spf_action){ SPF_REFUSE, 550, "5.7.24", "reject" };
		break;
	default:
		x.name = "none";
		break;
	}
	return x;
}

static const struct bs_spf_actions *spf_actions_for(const struct spf_state *st, const struct bs_domain *d)
{
	return d ? &d->spf : &st->cfg->spf_actions;
}

static const struct cidr_list *spf_skip_for(const struct spf_state *st, const struct bs_domain *d)
{
	return d ? &st->dom_skip[d - st->cfg->domains] : &st->gw_skip;
}

/* Does every domain (and [gateway], for the policy service's other domains) skip the client? */
static bool spf_skipped_everywhere(const struct spf_state *st, const struct sockaddr *client)
{
	if (!cidr_list_match(&st->gw_skip, client))
		return false;
	for (size_t i = 0; i < st->cfg->ndomains; i++)
		if (!cidr_list_match(&st->dom_skip[i], client))
			return false;
	return true;
}

/* The action that every domain takes for r, when they all refuse alike and none skips the
 * client; else SPF_GO_ON (the RCPT stage decides per domain). */
static struct spf_action spf_uniform(const struct spf_state *st, enum spf_result r, const struct sockaddr *client)
{
	struct spf_action first = spf_action_of(&st->cfg->spf_actions, r), go = { SPF_GO_ON, 0, NULL, "per-domain" };

	if (first.verdict == SPF_GO_ON || cidr_list_match(&st->gw_skip, client))
		return go;
	for (size_t i = 0; i < st->cfg->ndomains; i++) {
		struct spf_action x = spf_action_of(&st->cfg->domains[i].spf, r);
		if (x.verdict != first.verdict || x.code != first.code || cidr_list_match(&st->dom_skip[i], client))
			return go;
	}
	return first;
}

/* ---- facts: "RESULT IDENTITY VALUE TEXT" (TEXT to the end of the line) ---- */

static const char *const result_words[] = { "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" };

static const char *spf_word(enum spf_result r)
{
	return (unsigned)r < ARRAY_SIZE(result_words) ? result_words[r] : "none";
}

static void spf_fact_format(const struct spf_found *f, char *out, size_t outsz)
{
	char value[sizeof f->value];
	size_t n = 0;

	for (const char *p = f->value; *p && n + 1 < sizeof value; p++) /* no spaces: one word */
		value[n++] = (unsigned char)*p <= ' ' ? '?' : *p;
	value[n] = '\0';
	snprintf(out, outsz, "%s %s %s %s", spf_word(f->result), f->identity == SPF_ID_HELO ? "helo" : "mailfrom",
		 value[0] ? value : "-", f->text);
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static bool spf_fact_parse(const char *fact, size_t len, struct spf_found *f)
{
	char buf[ENGINE_FACTS_MAX], *save = NULL;

	if (len >= sizeof buf)
		return false;
	memcpy(buf, fact, len);
	buf[len] = '\0';
	memset(f, 0, sizeof *f);
	char *word = strtok_r(buf, " ", &save), *id = strtok_r(NULL, " ", &save), *value = strtok_r(NULL, " ", &save);
	if (word == NULL || id == NULL || value == NULL)
		return false;
	size_t i = 0;
	while (i < ARRAY_SIZE(result_words) && strcmp(result_words[i], word) != 0)
		i++;
	if (i == ARRAY_SIZE(result_words))
		return false;
	f->result = (enum spf_result)i;
	f->identity = strcmp(id, "helo") == 0 ? SPF_ID_HELO : SPF_ID_MAILFROM;
	snprintf(f->value, sizeof f->value, "%s", value);
	snprintf(f->text, sizeof f->text, "%s", save ? save : "");
	return true;
}

/* ---- answers ---- */

static void spf_log_found(struct check_answer *a, const struct spf_found *f, const char *action)
{
	char value[sizeof f->value * 4], text[sizeof f->text * 4];
	size_t n = strlen(a->log);

	log_sanitize(value, sizeof value, f->value, strlen(f->value));
	n += (size_t)snprintf(a->log + n, sizeof a->log - n, "%sspf=%s spf_identity=%s spf_checked=\"%s\" spf_action=%s",
			      n ? " " : "", spf_word(f->result), f->identity == SPF_ID_HELO ? "helo" : "mailfrom",
			      value, action);
	if (n < sizeof a->log && (f->result == SPF_TEMPERROR || f->result == SPF_PERMERROR) && f->text[0]) {
		log_sanitize(text, sizeof text, f->text, strlen(f->text));
		strbuf_append(a->log, sizeof a->log, " spf_problem=\"");
		strbuf_append(a->log, sizeof a->log, text);
		strbuf_append(a->log, sizeof a->log, "\"");
	}
}

/* The refusal of action x for f, in a (its text for the client). */
static void spf_refuse(struct check_answer *a, const struct spf_action *x, const struct spf_found *f)
{
	enum check_result r = x->verdict == SPF_DEFER ? CHECK_DEFER : CHECK_REJECT;
	const char *what = f->identity == SPF_ID_HELO ? "HELO name" : "sender";

	if (f->result == SPF_FAIL && f->text[0])
		check_answer_set(a, r, x->code, x->enhanced, "SPF fail: %s", f->text);
	else if (f->result == SPF_TEMPERROR)
		check_answer_set(a, r, x->code, x->enhanced, "SPF temporary error for %s %s, try again later%s%s", what,
				 f->value, f->text[0] ? ": " : "", f->text);
	else if (f->result == SPF_PERMERROR)
		check_answer_set(a, r, x->code, x->enhanced, "SPF permanent error for %s %s%s%s", what, f->value,
				 f->text[0] ? ": " : "", f->text);
	else
		check_answer_set(a, r, x->code, x->enhanced, "SPF %s: %s %s is not permitted from this address",
				 spf_word(f->result), what, f->value);
	/* the text goes to the client: printable ASCII only */
	for (char *p = a->text; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
}

static void spf_header_in(const struct check_query *q, const struct spf_found *f, struct spf_header_in *h)
{
	bool problem = f->result == SPF_TEMPERROR || f->result == SPF_PERMERROR;

	*h = (struct spf_header_in){
		.result = spf_word(f->result), .identity = f->identity == SPF_ID_HELO ? "helo" : "mailfrom",
		.identity_value = f->value, .client_ip = q->client_ip, .helo = q->helo, .envelope_from = q->sender,
		.receiver = q->st->cfg->hostname, .mechanism = f->mechanism[0] ? f->mechanism : NULL,
		.problem = problem && f->text[0] ? f->text : NULL,
	};
}

/* The headers for delivery: Received-SPF for the deciding identity, A-R for both. */
static void spf_headers(const struct check_query *q, const struct spf_found *decisive, const struct spf_found *other,
			struct check_answer *a)
{
	struct spf_header_in h1, h2;
	char *out = a->headers;
	size_t room = sizeof a->headers;

	spf_header_in(q, decisive, &h1);
	if (other)
		spf_header_in(q, other, &h2);
	size_t n = spf_received_header(&h1, out, room);
	const char *id = q->st->cfg->authserv_id ? q->st->cfg->authserv_id : q->st->cfg->hostname;
	if (spf_auth_results(id, &h1, other ? &h2 : NULL, out + n, room - n) == 0)
		out[n] = '\0';
}

/* Apply the action of domain d (NULL: [gateway]) to f. */
static void spf_apply(const struct check_query *q, const struct bs_domain *d, const struct spf_found *f,
		      struct check_answer *a)
{
	const struct sockaddr *client = (const struct sockaddr *)&q->client;

	if (cidr_list_match(spf_skip_for(q->st, d), client)) {
		spf_log_found(a, f, "skip");
		return;
	}
	struct spf_action x = spf_action_of(spf_actions_for(q->st, d), f->result);
	if (x.verdict != SPF_GO_ON)
		spf_refuse(a, &x, f);
	spf_log_found(a, f, x.name);
}

static void spf_finish(struct check_query *q)
{
	struct check_answer a;
	const struct spf_found *decisive = &q->found, *other = NULL;

	check_answer_neutral(&a);
	if (q->helo_done && q->helo_found.result == SPF_FAIL)
		decisive = &q->helo_found; /* RFC 7208 2.3: a conclusive HELO result */
	else if (q->helo_done)
		other = &q->helo_found;
	if (q->stage == ENGINE_STAGE_RCPT) {
		spf_apply(q, q->domain, decisive, &a);
	} else {
		struct spf_action x = spf_uniform(q->st, decisive->result, (const struct sockaddr *)&q->client);
		if (x.verdict != SPF_GO_ON)
			spf_refuse(&a, &x, decisive);
		spf_log_found(&a, decisive, x.name);
	}
	/* after the refusal, which starts the answer afresh */
	spf_headers(q, decisive, other, &a);
	spf_fact_format(decisive, a.facts, sizeof a.facts);
	/* the evaluation's details once, at the stage that evaluated */
	size_t n = strlen(a.log);
	char mech[sizeof decisive->mechanism * 4];
	log_sanitize(mech, sizeof mech, decisive->mechanism, strlen(decisive->mechanism));
	snprintf(a.log + n, sizeof a.log - n, " spf_mechanism=\"%s\" spf_lookups=%u spf_records=%zu", mech,
		 decisive->lookups + (other ? other->lookups : 0), decisive->nrecords);
	q->finished = true;
	bool starting = q->starting;
	check_cb cb = q->cb;
	void *arg = q->arg;
	if (!starting)
		free(q);
	cb(arg, &a);
}

static void spf_start_identity(struct check_query *q, enum spf_identity id);

static void spf_evaluated(void *arg, const struct spf_answer *ans)
{
	struct check_query *q = arg;
	bool helo = ans->identity == SPF_ID_HELO && !q->helo_done && q->sender[0] != '\0';
	struct spf_found *f = helo ? &q->helo_found : &q->found;

	q->sc = NULL;
	f->result = ans->result;
	f->identity = ans->identity;
	snprintf(f->value, sizeof f->value, "%s", ans->identity_value ? ans->identity_value : "");
	snprintf(f->mechanism, sizeof f->mechanism, "%s", ans->mechanism ? ans->mechanism : "");
	const char *text = ans->result == SPF_FAIL ? ans->explanation : ans->problem;
	snprintf(f->text, sizeof f->text, "%s", text ? text : "");
	f->lookups = ans->dns_terms;
	f->nrecords = ans->nrecords;
	engine_stats_outcome(q->st->stats, helo ? "spf_helo" : "spf", spf_result_name(ans->result));
	if (helo) {
		q->helo_done = true;
		if (ans->result != SPF_FAIL) {
			spf_start_identity(q, SPF_ID_MAILFROM);
			return;
		}
	}
	spf_finish(q);
}

static void spf_start_identity(struct check_query *q, enum spf_identity id)
{
	struct spf_request r = {
		.client = (const struct sockaddr *)&q->client, .sender = q->sender, .helo = q->helo,
		.receiver = q->st->cfg->hostname, .identity = id,
	};

	/* the evaluator may answer from inside: then q is freed by whoever started the outermost
	 * call (here, unless spf_evaluate did), never touched after spf_finish */
	bool outer = q->starting;
	q->starting = true;
	struct spf_check *sc = spf_check_start(&q->dns, &r, spf_evaluated, q);
	q->starting = outer;
	if (q->finished) {
		if (!outer)
			free(q);
		return;
	}
	q->sc = sc;
}

/* ---- the check ---- */

static struct check_query *spf_evaluate(struct spf_state *st, struct event_base *base, const struct engine_request *req,
					check_cb cb, void *arg)
{
	struct dns_resolver *r = st->dns(st->dns_arg, base);
	struct check_query *q = xcalloc(1, sizeof *q);

	q->st = st;
	q->cb = cb;
	q->arg = arg;
	q->stage = req->stage;
	q->domain = req->domain;
	q->client = req->client;
	snprintf(q->client_ip, sizeof q->client_ip, "%s", req->client_ip);
	snprintf(q->helo, sizeof q->helo, "%s", req->helo);
	if (req->has_sender && !req->sender->is_null)
		snprintf(q->sender, sizeof q->sender, "%.*s@%.*s", (int)req->sender->local_len, req->sender->local,
			 (int)req->sender->domain_len, req->sender->domain);
	if (r == NULL) { /* a loop without a resolver: cannot check */
		q->found.result = SPF_TEMPERROR;
		snprintf(q->found.text, sizeof q->found.text, "no DNS resolver");
		snprintf(q->found.value, sizeof q->found.value, "%s", q->sender);
		engine_stats_outcome(st->stats, "spf", spf_result_name(SPF_TEMPERROR));
		q->starting = true;
		spf_finish(q);
		free(q);
		return NULL;
	}
	dns_resolver_set_servers(r, st->cfg->dns_servers); /* a reload's new list, else nothing */
	spf_dns_init(&q->dns, r);
	/* HELO on its own (spf_helo): a name, not an address literal; for <> it is the sender */
	bool helo_first = st->cfg->spf_helo && q->sender[0] != '\0' && q->helo[0] != '\0' && q->helo[0] != '[';
	q->starting = true; /* an answer from inside: q is freed here, not by spf_finish */
	spf_start_identity(q, helo_first ? SPF_ID_HELO : SPF_ID_MAILFROM);
	q->starting = false;
	if (q->finished) {
		free(q);
		return NULL;
	}
	return q;
}

static void spf_close_state(struct spf_state *st);

static int spf_open(const struct engine_env *env, void **state, char *why, size_t whysz)
{
	const struct bs_config *cfg = env->cfg;
	const char *w = NULL;

	if (cfg == NULL || !cfg->spf || env->dns == NULL)
		return 0;
	struct spf_state *st = xcalloc(1, sizeof *st);
	st->cfg = cfg;
	st->dns = env->dns;
	st->dns_arg = env->dns_arg;
	st->stats = env->stats;
	st->dom_skip = xcalloc(cfg->ndomains ? cfg->ndomains : 1, sizeof *st->dom_skip);
	int bad = cidr_list_parse(cfg->spf_actions.skip ? cfg->spf_actions.skip : "", &st->gw_skip, &w);
	for (size_t i = 0; !bad && i < cfg->ndomains; i++) {
		const char *skip = cfg->domains[i].spf.skip ? cfg->domains[i].spf.skip : "";
		bad = cidr_list_parse(skip, &st->dom_skip[i], &w);
	}
	if (bad) {
		snprintf(why, whysz, "spf_skip: %s", w);
		spf_close_state(st);
		return -1;
	}
	*state = st;
	return 1;
}

static void spf_close_state(struct spf_state *st)
{
	if (st == NULL)
		return;
	cidr_list_free(&st->gw_skip);
	for (size_t i = 0; i < st->cfg->ndomains; i++)
		cidr_list_free(&st->dom_skip[i]);
	free(st->dom_skip);
	free(st);
}

static void spf_close(void *state)
{
	spf_close_state(state);
}

static struct check_query *spf_start(void *state, struct event_base *base, const struct engine_request *req,
				     check_cb cb, void *arg)
{
	struct spf_state *st = state;
	struct check_answer a;
	struct spf_found f;
	size_t len = 0;
	const char *fact = engine_fact(req->facts, "spf", &len);

	check_answer_neutral(&a);
	if (!req->has_sender || (req->stage == ENGINE_STAGE_RCPT && !req->has_rcpt)) {
		cb(arg, &a);
		return NULL;
	}
	if (req->stage == ENGINE_STAGE_RCPT && fact != NULL && spf_fact_parse(fact, len, &f)) {
		struct check_query q = { .st = st, .client = req->client };
		spf_apply(&q, req->domain, &f, &a); /* found at MAIL: this domain's action */
		cb(arg, &a);
		return NULL;
	}
	/* nothing found before: the SMTP session found nothing at MAIL (skipped), the policy
	 * service asks now */
	bool nothing_yet = req->stage == ENGINE_STAGE_RCPT && req->frontend == ENGINE_FRONTEND_SMTP;
	if (nothing_yet || spf_skipped_everywhere(st, (const struct sockaddr *)&req->client)) {
		if (!nothing_yet)
			snprintf(a.log, sizeof a.log, "spf=skipped");
		cb(arg, &a);
		return NULL;
	}
	return spf_evaluate(st, base, req, cb, arg);
}

static void spf_cancel(struct check_query *q)
{
	spf_check_cancel(q->sc);
	free(q);
}

/* Domains inherit the [gateway] actions they do not set; authserv_id defaults to hostname. */
static void spf_validate(struct cfg_loader *L)
{
	struct bs_config *cfg = L->cfg;

	if (cfg->authserv_id == NULL && cfg->hostname != NULL)
		cfg->authserv_id = xstrdup(cfg->hostname);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const unsigned *seen = L->dom_seen + i * config_nkeys;
		struct bs_spf_actions *d = &cfg->domains[i].spf;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "spf_fail"))
			d->fail = cfg->spf_actions.fail;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "spf_softfail"))
			d->softfail = cfg->spf_actions.softfail;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "spf_temperror"))
			d->temperror = cfg->spf_actions.temperror;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "spf_permerror"))
			d->permerror = cfg->spf_actions.permerror;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "spf_skip")) {
			free(d->skip);
			d->skip = xstrdup(cfg->spf_actions.skip ? cfg->spf_actions.skip : "");
		}
	}
}

const struct check_type check_spf_type = {
	.name = "spf",
	.stages = ENGINE_STAGE_BIT(ENGINE_STAGE_MAIL) | ENGINE_STAGE_BIT(ENGINE_STAGE_RCPT),
	.validate = spf_validate,
	.open = spf_open,
	.close = spf_close,
	.start = spf_start,
	.cancel = spf_cancel,
};
