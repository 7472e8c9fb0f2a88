/* callout_conn.c - the callout pool's connections to the validation server: resolve, connect and
 * EHLO, carry batches (MAIL, RCPT..., RSET), retire after too many rejections, fail cleanly. */
#include "callout_conn.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_health.h"
#include "callout_pool_priv.h"
#include "callout_rate.h"
#include "log.h"
#include "util.h"

#define POOL_CONN_MAX_REJECTS 8    /* then a fresh connection: Postfix's smtpd_soft_error_limit
				    * (10) would slow each further reply by a second */
#define POOL_IDLE_MS 30000         /* an unused connection is closed after this */
#define POOL_WARN_EVERY_MS 60000  /* a misconfigured validation server is reported this often */
#define POOL_TRIES 2               /* a flight whose reused connection dropped is tried again */

unsigned callout_conn_count(const struct callout_pool *p, enum conn_state only, bool any)
{
	unsigned n = 0;
	for (unsigned i = 0; i < p->o.max_conns; i++)
		if (p->conns[i] && (any || p->conns[i]->st == only))
			n++;
	return n;
}

static void conn_slot_clear(struct cconn *c)
{
	struct callout_pool *p = c->p;
	for (unsigned i = 0; i < p->o.max_conns; i++)
		if (p->conns[i] == c)
			p->conns[i] = NULL;
	atomic_fetch_sub(&p->o.counters->open_now, 1);
}

void callout_conn_close(struct cconn *c, bool quit)
{
	conn_slot_clear(c);
	if (c->dq)
		dns_cancel(c->dq);
	if (c->client)
		smtp_client_free(c->client, quit);
	if (c->idle)
		event_free(c->idle);
	free(c);
}

/* The connection failed (connect, timeout, closed, garbage). Flights of its batch without an
 * answer are tried again on another connection when this one had been reused (the server may
 * simply have closed an idle connection), otherwise they are UNAVAILABLE. */
static void conn_fail(struct cconn *c, const char *why)
{
	struct callout_pool *p = c->p;
	struct flight_list batch;
	bool retry = c->used && c->mail.code == 0; /* dropped before this batch got a reply */
	bool fresh = !c->used;
	struct flight *f;

	TAILQ_INIT(&batch);
	while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
		TAILQ_REMOVE(&c->batch, f, link);
		TAILQ_INSERT_TAIL(&batch, f, link);
	}
	callout_conn_close(c, false);
	while ((f = TAILQ_LAST(&batch, flight_list)) != NULL) {
		TAILQ_REMOVE(&batch, f, link);
		if (retry && ++f->tries < POOL_TRIES && !p->closing) {
			callout_flight_enqueue(p, f, true);
			continue;
		}
		callout_pool_answer(p, &f->ans, RCPT_UNAVAILABLE, "%s:%s: %s", p->host, p->port, why);
		callout_flight_finish(p, f);
	}
	if (fresh && callout_conn_count(p, CC_IDLE, true) == 0) { /* nobody left to take the queue */
		char reason[RCPT_REASON_MAX];
		callout_pool_reason(reason, sizeof reason, "%s:%s: %s", p->host, p->port, why);
		callout_flight_fail_queued(p, reason);
	}
	callout_pool_kick(p);
}

void callout_conn_shutdown(struct cconn *c)
{
	struct flight *f;
	while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
		TAILQ_REMOVE(&c->batch, f, link);
		callout_pool_answer(c->p, &f->ans, RCPT_UNAVAILABLE, "shutting down");
		callout_flight_finish(c->p, f);
	}
	callout_conn_close(c, c->st == CC_IDLE);
}

static void conn_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct cconn *c = arg;
	log_debug("%s: closing an idle connection", c->p->spec);
	callout_conn_close(c, true);
}

static void conn_quit_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;

	callout_conn_close(c, false);
	callout_pool_kick(p);
}

/* Warnings about a misbehaving server: the first now, then at most one a minute. true when one
 * is due; *count is how many occurred since the last one (this one included). */
static bool conn_warn_due(uint64_t *last_ms, unsigned long *count)
{
	uint64_t now = now_ms();

	++*count;
	if (*last_ms != 0 && now - *last_ms < POOL_WARN_EVERY_MS)
		return false;
	*last_ms = now;
	return true;
}

/* Loudly: the server refuses for policy, so it cannot tell who exists. */
static void conn_warn_policy(struct callout_pool *p, const char *addr, const struct smtp_reply *r)
{
	if (!conn_warn_due(&p->policy_warn_ms, &p->policy_rejects))
		return;
	log_warn("%s: validation server %s:%s refused RCPT TO:<%s> for policy (%d %s %s), not as an unknown "
		 "user: the address is UNAVAILABLE (clients get 4xx), never 550; the validation server is "
		 "misconfigured (does it relay for this gateway's address and callout_sender?); %lu such "
		 "replies since the last warning",
		 p->spec, p->host, p->port, addr, r->code, r->enhanced, r->text, p->policy_rejects);
	p->policy_rejects = 0;
}

/* The batch ended in step: each flight gets the verdict of its own reply. */
static void conn_answer_batch(struct cconn *c)
{
	struct callout_pool *p = c->p;
	struct flight *f;
	unsigned i = 0;

	while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
		const struct smtp_reply *r = &c->match.rcpt[i];
		TAILQ_REMOVE(&c->batch, f, link);
		f->conn = NULL;
		if (c->mail.code / 100 != 2) {
			callout_pool_answer(p, &f->ans, RCPT_UNAVAILABLE, "%s refused MAIL FROM:<%s>: %d %s%s%s", p->host,
					    p->sender, c->mail.code, c->mail.enhanced, c->mail.enhanced[0] ? " " : "",
					    c->mail.text);
		} else {
			callout_pool_answer(p, &f->ans, callout_match_verdict(&c->match, i), "%s: %d %s%s%s%s", p->host,
					    r->code, r->enhanced, r->enhanced[0] ? " " : "", r->text,
					    callout_policy_reject(r) ? " (a policy rejection, not an unknown user)" : "");
			if (callout_policy_reject(r))
				conn_warn_policy(p, f->addr, r);
			if (r->code / 100 == 5)
				c->rejects++;
		}
		i++;
		callout_flight_finish(p, f);
	}
}

/* The replies are out of step with the commands: nobody gets a verdict that may be another
 * address's, and the connection is dropped (never reused). */
static void conn_desync(struct cconn *c)
{
	struct callout_pool *p = c->p;
	struct flight *f;

	if (conn_warn_due(&p->desync_warn_ms, &p->desyncs)) {
		log_warn("%s: validation server %s:%s: replies out of step with the commands (%s): the batch of %u "
			 "address%s is UNAVAILABLE and the connection dropped; %lu such batches since the last warning",
			 p->spec, p->host, p->port, c->match.why, c->match.n, c->match.n == 1 ? "" : "es", p->desyncs);
		p->desyncs = 0;
	}
	while ((f = TAILQ_FIRST(&c->batch)) != NULL) {
		TAILQ_REMOVE(&c->batch, f, link);
		f->conn = NULL;
		callout_pool_answer(p, &f->ans, RCPT_UNAVAILABLE, "%s: replies out of step (%s)", p->host, c->match.why);
		callout_flight_finish(p, f);
	}
	callout_conn_close(c, false);
	callout_pool_kick(p);
}

/* The batch is over (RSET answered): verdicts if the replies were in step, then back to idle,
 * or a fresh connection next time. */
static void conn_rset_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	static const struct timeval idle = { POOL_IDLE_MS / 1000, 0 };

	if (r->code == 0) {
		conn_fail(c, r->text);
		return;
	}
	callout_match_reply(&c->match, r);
	if (callout_match_end(&c->match, smtp_client_input_pending(c->client)) != CM_DONE) {
		conn_desync(c);
		return;
	}
	conn_answer_batch(c);
	if (c->rejects >= POOL_CONN_MAX_REJECTS) {
		/* keep the slot until the server has answered QUIT: its replacement must not make
		 * one connection more than callout_max_connections, even for a moment */
		c->st = CC_QUITTING;
		smtp_client_command(c->client, "QUIT", conn_quit_cb, c);
		return;
	}
	c->st = CC_IDLE;
	evtimer_add(c->idle, &idle);
	callout_pool_kick(p);
}

static void conn_mail_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	if (r->code == 0) {
		conn_fail(c, r->text);
		return;
	}
	c->mail = *r;
	callout_match_reply(&c->match, r);
}

static void conn_rcpt_cb(void *arg, const struct smtp_reply *r)
{
	struct flight *f = arg;
	struct cconn *c = f->conn;

	if (r->code == 0)
		conn_fail(c, r->text);
	else
		callout_match_reply(&c->match, r); /* answered at the end of the batch, if in step */
}

void callout_conn_start_batch(struct cconn *c)
{
	struct callout_pool *p = c->p;
	unsigned room = POOL_CONN_MAX_REJECTS - c->rejects, n = 0;
	char line[600];

	struct flight *batch[POOL_BATCH_MAX];
	size_t nb = 0;

	if (room > POOL_BATCH_MAX)
		room = POOL_BATCH_MAX;
	while (nb < room) { /* what this batch carries: what may be probed now */
		struct flight *f = callout_flight_dequeue(p);
		if (f == NULL)
			break;
		if (callout_rcpt_line(f->addr, line, sizeof line) != 0) {
			callout_pool_answer(p, &f->ans, RCPT_INVALID, "not a possible mailbox (control characters)");
			callout_flight_finish(p, f);
			continue;
		}
		if (!f->check) { /* a token of this process's limiter, and of the gateways' when shared */
			size_t want = p->queued + 1 < room - nb ? p->queued + 1 : room - nb; /* this batch's */
			enum callout_share_answer sa = callout_share_ask(p->share, callout_rate_limit(p->rate),
									 (unsigned)want);
			if (sa == CALLOUT_SHARE_WAIT) { /* the store answers soon: back at the head until then */
				callout_flight_enqueue(p, f, true);
				break;
			}
			if (sa == CALLOUT_SHARE_NO || !callout_rate_take(p->rate, now_ms())) {
				callout_pool_answer(p, &f->ans, RCPT_UNAVAILABLE,
						    "%s:%s: not probed: callout_max_rate (%u/s) reached%s", p->host, p->port,
						    callout_rate_limit(p->rate), sa == CALLOUT_SHARE_NO ? " by the gateways" : "");
				f->ans.rate_limited = true;
				atomic_fetch_add(&p->o.counters->rate_limited, 1);
				callout_flight_finish(p, f);
				continue;
			}
			callout_share_use(p->share);
		}
		batch[nb++] = f;
	}
	if (nb == 0)
		return; /* the connection stays idle, its idle timer running */
	evtimer_del(c->idle);
	c->st = CC_BUSY;
	c->used = true;
	memset(&c->mail, 0, sizeof c->mail);
	snprintf(line, sizeof line, "MAIL FROM:<%s>", p->sender);
	smtp_client_command(c->client, line, conn_mail_cb, c);
	for (size_t i = 0; i < nb; i++) {
		struct flight *f = batch[i];
		callout_rcpt_line(f->addr, line, sizeof line);
		f->state = FL_SENT;
		f->conn = c;
		TAILQ_INSERT_TAIL(&c->batch, f, link);
		if (!f->check)
			atomic_fetch_add(&p->o.counters->probes, 1);
		smtp_client_command(c->client, line, conn_rcpt_cb, f);
		n++;
	}
	callout_match_init(&c->match, n);
	smtp_client_command(c->client, "RSET", conn_rset_cb, c);
	log_debug("%s: %u RCPT%s sent, %zu waiting", p->spec, n, n == 1 ? "" : "s", p->queued);
}

static bool conn_connect_next(struct cconn *c);

static void conn_ready_cb(void *arg, const struct smtp_reply *r)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	char why[RCPT_REASON_MAX];

	if (r->code == 250) {
		backend_health_report(p->health, p->key, true);
		callout_pool_note_health(p);
		log_debug("%s: connected%s", p->spec, smtp_client_has_ext(c->client, "PIPELINING") ? " (pipelining)" : "");
		c->st = CC_IDLE;
		callout_pool_kick(p);
		return;
	}
	if (r->code == 0 && c->st == CC_CONNECTING && c->next_addr < c->addrs.count) {
		log_info("%s: %s; trying the next address", p->spec, r->text);
		smtp_client_free(c->client, false);
		c->client = NULL;
		if (conn_connect_next(c))
			return;
	}
	atomic_fetch_add(&p->o.counters->connect_failures, 1);
	backend_health_report(p->health, p->key, false);
	callout_pool_note_health(p);
	if (r->code)
		callout_pool_reason(why, sizeof why, "refused the session: %d %s", r->code, r->text);
	else
		callout_pool_reason(why, sizeof why, "%s", r->text);
	log_warn("%s: validation server %s:%s: %s", p->spec, p->host, p->port, why);
	conn_fail(c, why);
}

/* Connect to the next address of the server; false when none is left. */
static bool conn_connect_next(struct cconn *c)
{
	struct callout_pool *p = c->p;
	struct smtp_client_opts o = {
		.helo_name = p->helo, .tls = DELIVER_TLS_NONE, .connect_timeout_ms = p->o.timeout_ms,
		.command_timeout_ms = p->o.timeout_ms, .data_timeout_ms = p->o.timeout_ms,
	};
	while (c->next_addr < c->addrs.count) {
		size_t i = c->next_addr++;
		c->client = smtp_client_new(p->base, (const struct sockaddr *)&c->addrs.addr[i],
					    c->addrs.addrlen[i], &o, conn_ready_cb, c);
		if (c->client != NULL)
			return true;
	}
	return false;
}

static void conn_resolved(void *arg, const struct dns_addrs *res)
{
	struct cconn *c = arg;
	struct callout_pool *p = c->p;
	char why[RCPT_REASON_MAX];

	c->dq = NULL;
	if (res->status != DNS_OK) {
		callout_pool_reason(why, sizeof why, "cannot resolve %s: %s", p->host,
				    res->error ? res->error : "no address");
		backend_health_report(p->health, p->key, false);
		callout_pool_note_health(p);
		log_warn("%s: %s", p->spec, why);
		conn_fail(c, why);
		return;
	}
	c->addrs = *res;
	c->next_addr = 0;
	c->st = CC_CONNECTING;
	if (!conn_connect_next(c))
		conn_fail(c, "cannot connect");
}

void callout_conn_open(struct callout_pool *p, unsigned slot)
{
	struct cconn *c = xcalloc(1, sizeof *c);

	c->p = p;
	c->st = CC_RESOLVING;
	TAILQ_INIT(&c->batch);
	c->idle = evtimer_new(p->base, conn_idle_timeout, c);
	p->conns[slot] = c;
	atomic_fetch_add(&p->o.counters->connections, 1);
	atomic_fetch_add(&p->o.counters->open_now, 1);
	log_debug("%s: opening connection %u", p->spec, slot + 1);
	c->dq = dns_resolve_host(p->dns, p->host, (uint16_t)atoi(p->port), AF_UNSPEC, conn_resolved, c);
}
