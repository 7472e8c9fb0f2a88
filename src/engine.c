/* engine.c - the decision engine: per stage, the checks of the registry that run there, in
 * registry order; each answer is counted and its log fields and headers collected; the first
 * answer that is not neutral decides. One timer per query is both the stage deadline and, when
 * the decision was reached inside engine_start, the delivery from the loop. A query is small:
 * the decision's text and log point into the deciding check's answer when the callback runs
 * while that answer exists (a check answering from the loop), and are copied only otherwise. */
#include "engine.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event_struct.h>

#include "check.h"
#include "engine_stats.h"
#include "log.h"
#include "relay_control.h"
#include "util.h"

#define ENGINE_DEFAULT_TIMEOUT_MS (25ULL * 1000)

struct engine_check {
	const struct check_type *type;
	void *state;
	size_t index; /* in the registry, for the counters */
};

struct engine {
	struct engine_check checks[CHECK_TYPES_MAX];
	size_t n;
	const struct engine_check *stage[ENGINE_STAGE_COUNT][CHECK_TYPES_MAX];
	size_t nstage[ENGINE_STAGE_COUNT];
	uint64_t timeout_ms;
	struct engine_stats *stats;
};

/* Cleared up to req by engine_start, then req and d are set whole: a few hundred octets. */
struct engine_query {
	struct engine *e;
	struct event_base *base;
	engine_cb cb;
	void *arg;
	size_t next;                       /* next check of the stage's list */
	const struct engine_check *running;
	struct check_query *cq;            /* the running check's handle (asynchronous) */
	uint64_t t0, check_t0;
	struct event ev;                   /* deadline, then delivery (event_assign) */
	char *headers;                     /* the checks' header fields (ENGINE_HEADERS_MAX), or NULL */
	char *facts_in;                    /* copy of req.facts, or NULL */
	char *facts;                       /* the checks' facts (ENGINE_FACTS_MAX), or NULL */
	char *room;                        /* the decision's own text then log (ENGINE_TEXT_MAX +
					    * ENGINE_LOG_MAX), taken only when they must outlive the
					    * checks' answers; or NULL */
	bool in_start;                     /* inside engine_start: deliver through the loop */
	bool in_check;                     /* inside a check's start */
	bool answered_inline;              /* the check answered from inside its start */
	bool finished;                     /* d is complete */
	bool delivering;                   /* the callback runs: cancel is a no-op */
	struct engine_request req;
	struct engine_decision d;
};

const char *engine_stage_name(enum engine_stage stage)
{
	static const char *const names[ENGINE_STAGE_COUNT] = { "connect", "helo", "mail", "rcpt",
							       "data", "end-of-data", "banner" };
	return stage < ENGINE_STAGE_COUNT ? names[stage] : "unknown";
}

const char *check_result_name(enum check_result r)
{
	static const char *const names[CHECK_RESULT_COUNT] = { "neutral", "accept", "reject", "defer" };
	return r < CHECK_RESULT_COUNT ? names[r] : "unknown";
}

/* ---- requests ---- */

void engine_request_init_ip(struct engine_request *req, enum engine_frontend fe, const char *session_id,
			    const struct sockaddr *client, socklen_t len, const char *client_ip)
{
	memset(req, 0, offsetof(struct engine_request, client));
	req->helo = "";
	req->sender = req->rcpt = NULL;
	req->frontend = fe;
	strbuf_append(req->session_id, sizeof req->session_id, session_id ? session_id : "");
	if (client == NULL) {
		strcpy(req->client_ip, "unknown");
		memset(&req->client, 0, sizeof req->client);
		return;
	}
	memcpy(&req->client, client, len < sizeof req->client ? len : sizeof req->client);
	const void *addr = NULL;
	if (client->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)client;
		addr = &in->sin_addr;
		req->client_port = ntohs(in->sin_port);
	} else if (client->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)client;
		addr = &in6->sin6_addr;
		req->client_port = ntohs(in6->sin6_port);
	}
	if (client_ip != NULL) {
		strbuf_append(req->client_ip, sizeof req->client_ip, client_ip);
		return;
	}
	if (addr == NULL || inet_ntop(client->sa_family, addr, req->client_ip, sizeof req->client_ip) == NULL)
		strcpy(req->client_ip, "unknown");
	/* an IPv4 client on a dual-stack socket: show it as IPv4 */
	if (strncmp(req->client_ip, "::ffff:", 7) == 0 && strchr(req->client_ip + 7, '.') != NULL)
		memmove(req->client_ip, req->client_ip + 7, strlen(req->client_ip + 7) + 1);
}

const char *engine_fact(const char *facts, const char *check, size_t *len)
{
	size_t cl = strlen(check);

	for (const char *p = facts; p != NULL && *p != '\0';) {
		size_t line = strcspn(p, "\n");
		if (line > cl && strncmp(p, check, cl) == 0 && p[cl] == ' ') {
			*len = line - cl - 1;
			return p + cl + 1;
		}
		p += line + (p[line] == '\n');
	}
	return NULL;
}

void engine_request_init(struct engine_request *req, enum engine_frontend fe, const char *session_id,
			 const struct sockaddr *client, socklen_t len)
{
	engine_request_init_ip(req, fe, session_id, client, len, NULL);
}

void engine_request_set_rcpt(struct engine_request *req, const struct bs_config *cfg, struct smtp_address *rcpt)
{
	req->has_rcpt = true;
	req->rcpt = rcpt;
	req->domain = relay_control_domain(cfg, rcpt);
	if (req->domain != NULL && rcpt->domain_len == 0) { /* <postmaster>: of our domain */
		rcpt->domain_len = strlen(req->domain->name);
		memcpy(rcpt->domain, req->domain->name, rcpt->domain_len + 1);
	}
}

void engine_request_set_sender(struct engine_request *req, const struct smtp_address *sender)
{
	req->has_sender = sender != NULL;
	req->sender = sender;
}

/* ---- the engine ---- */

struct engine *engine_new(const struct engine_env *env, char *why, size_t whysz)
{
	struct engine *e = xcalloc(1, sizeof *e);
	size_t ntypes;
	const struct check_type *const *types = checks_registry(&ntypes);

	e->stats = env->stats;
	e->timeout_ms = env->cfg && env->cfg->decision_timeout_ms ? env->cfg->decision_timeout_ms
								 : ENGINE_DEFAULT_TIMEOUT_MS;
	for (size_t i = 0; i < ntypes && i < CHECK_TYPES_MAX; i++) {
		void *state = NULL;
		char err[256] = "";
		int rc = types[i]->open(env, &state, err, sizeof err);
		if (rc < 0) {
			snprintf(why, whysz, "check %s: %s", types[i]->name, err);
			engine_free(e);
			return NULL;
		}
		if (rc == 0)
			continue;
		struct engine_check *c = &e->checks[e->n++];
		c->type = types[i];
		c->state = state;
		c->index = i;
		for (int s = 0; s < ENGINE_STAGE_COUNT; s++)
			if (c->type->stages & ENGINE_STAGE_BIT(s))
				e->stage[s][e->nstage[s]++] = c;
	}
	return e;
}

void engine_free(struct engine *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		if (e->checks[i].type->close)
			e->checks[i].type->close(e->checks[i].state);
	free(e);
}

bool engine_stage_has_checks(const struct engine *e, enum engine_stage stage)
{
	return e != NULL && stage < ENGINE_STAGE_COUNT && e->nstage[stage] > 0;
}

/* ---- one query ---- */

static void append(char *dst, size_t dstsz, const char *sep, const char *src)
{
	if (src[0] == '\0')
		return;
	if (dst[0] != '\0' && sep[0] != '\0')
		strbuf_append(dst, dstsz, sep);
	strbuf_append(dst, dstsz, src);
}

static void engine_query_free(struct engine_query *q)
{
	event_del(&q->ev);
	free(q->headers);
	free(q->facts_in);
	free(q->facts);
	free(q->room);
	free(q);
}

/* Every check of the stage that observes decisions is told this one. */
static void engine_observe(struct engine_query *q)
{
	const struct engine *e = q->e;
	enum engine_stage s = q->req.stage;

	for (size_t i = 0; i < e->nstage[s]; i++) {
		const struct engine_check *c = e->stage[s][i];
		if (c->type->observe)
			c->type->observe(c->state, q->base, &q->req, &q->d);
	}
}

/* The decision's own copies of its text and log, taken on first use. */
static char *engine_room(struct engine_query *q)
{
	if (q->room == NULL) {
		q->room = xmalloc(ENGINE_TEXT_MAX + ENGINE_LOG_MAX);
		q->room[0] = q->room[ENGINE_TEXT_MAX] = '\0';
	}
	return q->room;
}

/* Add a check's log fields to the decision's. keep: the answer goes away before the callback
 * (copied then); otherwise the fields are pointed to when no other check gave any. */
static void engine_add_log(struct engine_query *q, const char *log, bool keep)
{
	if (log[0] == '\0')
		return;
	if (!keep && q->d.log[0] == '\0') {
		q->d.log = log;
		return;
	}
	char *room = engine_room(q) + ENGINE_TEXT_MAX; /* d.log is "" or room already */
	append(room, ENGINE_LOG_MAX, " ", log);
	q->d.log = room;
}

static void engine_set_text(struct engine_query *q, const char *text, bool keep)
{
	if (!keep) {
		q->d.text = text;
		return;
	}
	char *room = engine_room(q);
	room[0] = '\0';
	strbuf_append(room, ENGINE_TEXT_MAX, text);
	q->d.text = room;
}

static void engine_deliver(struct engine_query *q)
{
	q->d.latency_ms = now_ms() - q->t0;
	engine_stats_decision(q->e->stats, q->req.stage, q->d.result, q->d.latency_ms);
	engine_observe(q);
	q->delivering = true;
	q->cb(q->arg, &q->d);
	engine_query_free(q);
}

/* The stage is decided (q->d filled): deliver now from the loop, through it when still inside
 * engine_start, or once the check's start has returned (engine_run). */
static void engine_finish(struct engine_query *q)
{
	q->finished = true;
	evtimer_del(&q->ev);
	if (q->in_start)
		event_active(&q->ev, EV_TIMEOUT, 1);
	else if (!q->in_check)
		engine_deliver(q);
}

static void engine_run(struct engine_query *q);

static void engine_on_check(void *arg, const struct check_answer *ans)
{
	struct engine_query *q = arg;
	const struct engine_check *c = q->running;

	uint64_t now = now_ms();
	/* the callback runs before ans goes away when this answer ends the stage and comes from
	 * the loop: then ans's text and log are pointed to, not copied */
	bool last = ans->result != CHECK_NEUTRAL || q->next >= q->e->nstage[q->req.stage];
	bool keep = !last || q->in_start || q->in_check;
	q->cq = NULL;
	q->running = NULL;
	engine_stats_answer(q->e->stats, c->index, q->req.stage, ans->result, now - q->check_t0);
	q->check_t0 = now; /* the next check starts now */
	engine_add_log(q, ans->log, keep);
	if (ans->headers[0] != '\0') { /* rare: its room is taken only when needed */
		if (q->headers == NULL) {
			q->headers = xmalloc(ENGINE_HEADERS_MAX);
			q->headers[0] = '\0';
		}
		size_t used = strlen(q->headers), more = strlen(ans->headers);
		if (used + more < ENGINE_HEADERS_MAX) /* whole fields or none: never a cut line */
			memcpy(q->headers + used, ans->headers, more + 1);
		else
			log_warn("engine: header fields of check %s dropped: over %d octets",
				 c->type->name, ENGINE_HEADERS_MAX);
		q->d.headers = q->headers;
	}
	if (ans->facts[0] != '\0') {
		if (q->facts == NULL) {
			q->facts = xmalloc(ENGINE_FACTS_MAX);
			q->facts[0] = '\0';
		}
		size_t used = strlen(q->facts), more = strcspn(ans->facts, "\n");
		if (used + strlen(c->type->name) + more + 3 < ENGINE_FACTS_MAX) {
			snprintf(q->facts + used, ENGINE_FACTS_MAX - used, "%s %.*s\n", c->type->name, (int)more,
				 ans->facts);
			q->d.facts = q->facts;
		}
	}
	if (ans->result != CHECK_NEUTRAL) {
		q->d.result = ans->result;
		q->d.check = c->type->name;
		q->d.code = ans->code;
		q->d.rcpt_invalid = ans->rcpt_invalid;
		strbuf_append(q->d.enhanced, sizeof q->d.enhanced, ans->enhanced);
		engine_set_text(q, ans->text, keep);
		engine_finish(q);
	} else if (q->in_check) {
		q->answered_inline = true; /* engine_run goes on with the next check */
	} else {
		engine_run(q);
	}
}

/* Start the stage's checks one after the other until one has to be waited for. */
static void engine_run(struct engine_query *q)
{
	const struct engine *e = q->e;
	enum engine_stage s = q->req.stage;

	while (q->next < e->nstage[s]) {
		const struct engine_check *c = e->stage[s][q->next++];
		q->running = c;
		q->answered_inline = false;
		q->in_check = true;
		struct check_query *cq = c->type->start(c->state, q->base, &q->req, engine_on_check, q);
		q->in_check = false;
		if (q->finished) { /* decided from inside the check's start */
			if (!q->in_start)
				engine_deliver(q);
			return;
		}
		if (!q->answered_inline) {
			q->cq = cq;
			return;
		}
	}
	q->d.result = CHECK_NEUTRAL; /* nobody objected */
	engine_finish(q);
}

static void engine_deadline_text(struct engine_query *q)
{
	char addr[SMTP_PATH_MAX + 8];

	q->d.result = CHECK_DEFER;
	q->d.timed_out = true;
	q->d.code = 451;
	snprintf(q->d.enhanced, sizeof q->d.enhanced, "4.4.3");
	char *text = engine_room(q);
	if (q->req.stage == ENGINE_STAGE_RCPT && q->req.has_rcpt &&
	    smtp_address_format(q->req.rcpt, addr, sizeof addr) > 0)
		snprintf(text, ENGINE_TEXT_MAX, "<%s>: Recipient address verification unavailable, try again later",
			 addr);
	else
		snprintf(text, ENGINE_TEXT_MAX, "Temporary lookup failure, try again later");
	q->d.text = text;
}

static void engine_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct engine_query *q = arg;
	char note[96];

	(void)fd;
	(void)what;
	if (!q->finished) { /* the stage deadline: whatever still runs is given up */
		const struct engine_check *c = q->running;
		if (c != NULL) {
			engine_stats_timeout(q->e->stats, c->index, q->req.stage);
			if (q->cq != NULL && c->type->cancel)
				c->type->cancel(q->cq);
			q->cq = NULL;
			q->running = NULL;
		}
		q->d.check = c ? c->type->name : NULL;
		snprintf(note, sizeof note, "deadline=%s timed_out_after_ms=%llu", c ? c->type->name : "-",
			 (unsigned long long)q->e->timeout_ms);
		engine_add_log(q, note, true);
		engine_deadline_text(q);
		q->finished = true;
	}
	engine_deliver(q);
}

struct engine_query *engine_start(struct engine *e, struct event_base *base, const struct engine_request *req,
				  engine_cb cb, void *arg)
{
	struct engine_query *q = xmalloc(sizeof *q);
	struct timeval tv = { (time_t)(e->timeout_ms / 1000), (suseconds_t)(e->timeout_ms % 1000) * 1000 };

	memset(q, 0, offsetof(struct engine_query, req));
	q->e = e;
	q->base = base;
	q->req = *req;
	q->cb = cb;
	q->arg = arg;
	q->t0 = q->check_t0 = now_ms();
	q->d = (struct engine_decision){ .stage = req->stage, .result = CHECK_NEUTRAL, .text = "", .log = "",
					 .headers = "", .facts = "" };
	if (req->facts != NULL && req->facts[0] != '\0') {
		q->facts_in = xstrdup(req->facts);
		q->req.facts = q->facts_in;
	} else {
		q->req.facts = NULL;
	}
	evtimer_assign(&q->ev, base, engine_on_event, q);
	/* every query of the loop has the same deadline: a common timeout is a queue, not a heap */
	const struct timeval *common = event_base_init_common_timeout(base, &tv);
	evtimer_add(&q->ev, common ? common : &tv);
	q->in_start = true;
	engine_run(q);
	q->in_start = false;
	return q;
}

void engine_cancel(struct engine_query *q)
{
	if (q == NULL || q->delivering)
		return;
	if (q->cq != NULL && q->running != NULL && q->running->type->cancel)
		q->running->type->cancel(q->cq);
	engine_query_free(q);
}
