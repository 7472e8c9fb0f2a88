/* relay.c - in-line delivery towards the backends (see relay.h): choosing a target (failover or
 * round-robin, skipping targets the circuit breaker marks as failing), holding a connection slot
 * of the target (deliver_max_connections) or waiting for one, opening the backend session,
 * building MAIL and RCPT with the parameters the backend supports, and mapping every backend
 * outcome to the reply the client gets. */
#include "relay.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define RELAY_LINE_MAX (SMTP_PARAM_LINE_MAX + 1)
/* The longest MAIL and RCPT lines relay builds from what the session's parser accepted (an
 * address is formatted into SMTP_PATH_MAX + 8 octets) fit in what the outbound client sends: a
 * recipient backstop accepted can always be passed on, ORCPT and all. */
_Static_assert(sizeof "RCPT TO:<>" - 1 + SMTP_PATH_MAX + 7 + sizeof " NOTIFY=SUCCESS,FAILURE,DELAY" - 1 +
		       sizeof " ORCPT=" - 1 + SMTP_ORCPT_MAX <= SMTP_PARAM_LINE_MAX,
	       "a RCPT line backstop accepts must be sendable to the backend");
_Static_assert(sizeof "MAIL FROM:<>" - 1 + SMTP_PATH_MAX + 7 + sizeof " SIZE=18446744073709551615" - 1 +
		       sizeof " BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=" - 1 + SMTP_ENVID_MAX <= SMTP_PARAM_LINE_MAX,
	       "a MAIL line backstop accepts must be sendable to the backend");

enum relay_state {
	RELAY_IDLE,       /* no backend session */
	RELAY_CONNECTING, /* trying targets */
	RELAY_READY,      /* backend session open, no transaction */
	RELAY_IN_TX,      /* backend accepted MAIL */
	RELAY_IN_DATA,    /* backend answered 354 */
	RELAY_BROKEN,     /* the transaction's backend session failed */
};

struct relay {
	struct relay_env env;
	enum relay_state state;
	struct smtp_client *client;
	const struct bs_domain *domain; /* whose deliver list holds the target */
	size_t target;                  /* index into domain->deliver */
	char key[SMTP_DOMAIN_MAX + 16]; /* "host:port" of the target */
	size_t tries;                   /* targets considered in this connection attempt */
	struct dns_query *dq;           /* resolving the current target */
	struct sockaddr_storage addrs[DNS_ADDRS_MAX]; /* the current target's addresses */
	socklen_t addrlens[DNS_ADDRS_MAX];
	size_t naddrs, addr_next;
	size_t first;                   /* first target of this attempt (round-robin start) */
	/* the pending operation */
	relay_cb cb;
	void *cb_arg;
	char mail_line[RELAY_LINE_MAX];
	char rcpt_line[RELAY_LINE_MAX];
	/* the envelope of the pending RCPT, kept until the backend's EHLO says what it supports */
	struct smtp_address from, to;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	struct smtp_reply mail_reply;
	bool mail_sent_now;             /* MAIL was pipelined with the pending RCPT */
	bool pooled_fresh;              /* the session came from the pool and has not answered yet */
	bool no_pool;                   /* a pooled session just failed: connect afresh */
	bool busy_seen;                 /* a target of this attempt said 421 at its greeting */
	/* the connection slot of the target (backend_slots.h), held from before connecting until
	 * the connection is closed or pooled */
	bool slot_held;
	char slot_key[SMTP_DOMAIN_MAX + 16];
	struct backend_slot_wait slot_wait;
	struct event *slot_wake, *slot_timer;
	bool slot_waiting;
	uint64_t slot_wait_since;
	struct relay_answer deferred;
	struct event *defer_ev;
};

static void relay_deliver_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	relay_cb cb = r->cb;

	(void)fd;
	(void)what;
	r->cb = NULL;
	if (cb)
		cb(r->cb_arg, &r->deferred);
}

/* Answer the pending operation from the loop with a reply backstop made up itself. */
static void relay_answer_later(struct relay *r, int code, const char *enhanced, const char *text)
{
	r->deferred.code = code;
	snprintf(r->deferred.enhanced, sizeof r->deferred.enhanced, "%s", enhanced);
	snprintf(r->deferred.text, sizeof r->deferred.text, "%s", text);
	r->deferred.backend = r->key[0] ? r->key : NULL;
	event_active(r->defer_ev, EV_TIMEOUT, 0);
}

/* Answer the pending operation with a backend reply (code 0 = the connection failed). */
static void relay_answer_reply(struct relay *r, const struct smtp_reply *rep, const char *what)
{
	struct relay_answer a = { .backend = r->key };
	relay_cb cb = r->cb;

	if (rep->code == 0 || rep->code == 421) {
		/* 421: the backend is closing the connection; for the client that is a failure of
		 * the backend link, not a reason to end its own session */
		log_notice("backend %s: %s%s during %s", r->key, rep->code ? "421 " : "", rep->text, what);
		a.code = 451;
		snprintf(a.enhanced, sizeof a.enhanced, "4.4.2");
		snprintf(a.text, sizeof a.text, "Backend connection failed; try again later");
		r->state = RELAY_BROKEN;
	} else {
		a.code = rep->code;
		if (rep->enhanced[0])
			snprintf(a.enhanced, sizeof a.enhanced, "%s", rep->enhanced);
		else
			snprintf(a.enhanced, sizeof a.enhanced, "%d.0.0", rep->code / 100);
		snprintf(a.text, sizeof a.text, "%s", rep->text);
	}
	r->cb = NULL;
	if (cb)
		cb(r->cb_arg, &a);
}

static void relay_slot_woken(evutil_socket_t fd, short what, void *arg);
static void relay_slot_timeout(evutil_socket_t fd, short what, void *arg);

struct relay *relay_new(const struct relay_env *env)
{
	struct relay *r = xcalloc(1, sizeof *r);
	r->env = *env;
	r->defer_ev = event_new(env->base, -1, 0, relay_deliver_deferred, r);
	r->slot_wake = event_new(env->base, -1, 0, relay_slot_woken, r);
	r->slot_timer = evtimer_new(env->base, relay_slot_timeout, r);
	return r;
}

static void relay_drop_client(struct relay *r, bool quit)
{
	if (r->client) {
		smtp_client_free(r->client, quit && smtp_client_usable(r->client));
		r->client = NULL;
	}
}

/* The connection slot goes back (the connection is closed, or was never opened). */
static void relay_slot_give(struct relay *r)
{
	if (r->slot_held) {
		backend_slots_give(r->env.slots, r->slot_key);
		r->slot_held = false;
	}
}

/* Stop waiting for a slot; a slot granted meanwhile becomes ours. */
static void relay_slot_unwait(struct relay *r)
{
	if (!r->slot_waiting)
		return;
	r->slot_waiting = false;
	evtimer_del(r->slot_timer);
	event_del(r->slot_wake);
	if (backend_slots_cancel(r->env.slots, &r->slot_wait)) {
		r->slot_held = true;
		snprintf(r->slot_key, sizeof r->slot_key, "%s", r->key);
	}
}

/* Pool key: the target and the TLS policy its session was opened under. */
static void relay_link_key(const char *target, const struct bs_domain *dom, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%d|%s", target, (int)dom->deliver_tls,
		 dom->deliver_tls_ca ? dom->deliver_tls_ca : "");
}

void relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	/* pooled only with no reply of ours outstanding (r->cb): nothing left that could call back
	 * into r, whose RSET reply is ignored by design */
	if (r->client && r->state == RELAY_READY && r->cb == NULL && r->env.pool &&
	    r->env.cfg->backend_idle_timeout_ms > 0 && smtp_client_usable(r->client)) {
		char pk[SMTP_DOMAIN_MAX + 600];
		relay_link_key(r->key, r->domain, pk, sizeof pk);
		smtp_client_set_drain_cb(r->client, 0, NULL, NULL); /* nothing may call back into r */
		relay_pool_put(r->env.pool, pk, r->client, r->env.cfg->backend_idle_timeout_ms,
			       r->slot_held ? r->env.slots : NULL, r->slot_key);
		r->client = NULL;
		r->slot_held = false;
	}
	relay_drop_client(r, r->state == RELAY_READY || r->state == RELAY_IN_TX);
	if (r->dq)
		dns_cancel(r->dq);
	relay_slot_unwait(r);
	relay_slot_give(r);
	event_free(r->slot_wake);
	event_free(r->slot_timer);
	event_free(r->defer_ev);
	free(r);
}

/* Does dom deliver to the target the current backend session is open to? */
static bool relay_routes_to_target(const struct relay *r, const struct bs_domain *dom)
{
	const struct bs_hostport *cur = &r->domain->deliver.items[r->target];
	for (size_t i = 0; i < dom->deliver.n; i++)
		if (strcmp(dom->deliver.items[i].host, cur->host) == 0 &&
		    strcmp(dom->deliver.items[i].port, cur->port) == 0)
			return true;
	return false;
}

/* May the current backend session carry a recipient of dom? Same target and same TLS policy. */
static bool relay_link_fits(const struct relay *r, const struct bs_domain *dom)
{
	const struct bs_domain *cur = r->domain;
	return cur != NULL && relay_routes_to_target(r, dom) && dom->deliver_tls == cur->deliver_tls &&
	       ((dom->deliver_tls_ca == NULL && cur->deliver_tls_ca == NULL) ||
		(dom->deliver_tls_ca && cur->deliver_tls_ca && strcmp(dom->deliver_tls_ca, cur->deliver_tls_ca) == 0));
}

static void relay_append_mail_params(const struct relay *r, const struct smtp_mail_params *mp, char *p, size_t n)
{
	const struct smtp_client *c = r->client;
	size_t used = strlen(p);
	if (mp->has_size && smtp_client_has_ext(c, "SIZE"))
		used += (size_t)snprintf(p + used, n - used, " SIZE=%llu", (unsigned long long)mp->size);
	if (mp->body == SMTP_BODY_8BITMIME)
		used += (size_t)snprintf(p + used, n - used, " BODY=8BITMIME");
	else if (mp->body == SMTP_BODY_7BIT && smtp_client_has_ext(c, "8BITMIME"))
		used += (size_t)snprintf(p + used, n - used, " BODY=7BIT");
	if (mp->smtputf8 && smtp_client_has_ext(c, "SMTPUTF8"))
		used += (size_t)snprintf(p + used, n - used, " SMTPUTF8");
	if (smtp_client_has_ext(c, "DSN")) {
		if (mp->ret != SMTP_RET_UNSPEC)
			used += (size_t)snprintf(p + used, n - used, " RET=%s", mp->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
		if (mp->envid[0])
			snprintf(p + used, n - used, " ENVID=%s", mp->envid);
	}
}

static void relay_append_rcpt_params(const struct relay *r, const struct smtp_rcpt_params *rp, char *p, size_t n)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	size_t used = strlen(p);
	if (!smtp_client_has_ext(r->client, "DSN"))
		return; /* RFC 3461 4.1: a non-DSN server gets no DSN parameters */
	if (rp->notify) {
		used += (size_t)snprintf(p + used, n - used, " NOTIFY=");
		bool first = true;
		for (unsigned i = 0; i < 4; i++) {
			if (!(rp->notify & (1u << i)))
				continue;
			used += (size_t)snprintf(p + used, n - used, "%s%s", first ? "" : ",", names[i]);
			first = false;
		}
	}
	if (rp->orcpt[0])
		snprintf(p + used, n - used, " ORCPT=%s", rp->orcpt);
}

/* Can the backend take this transaction as the client sent it? Converting nothing silently: a
 * backend without 8BITMIME or SMTPUTF8 gets no message that needs them. */
static bool relay_capable(struct relay *r, const struct smtp_mail_params *mp, const struct smtp_address *from,
			  const struct smtp_address *to)
{
	if (mp->body == SMTP_BODY_8BITMIME && !smtp_client_has_ext(r->client, "8BITMIME")) {
		relay_answer_later(r, 554, "5.6.3", "8-bit message but the backend lacks 8BITMIME");
		return false;
	}
	if ((from->utf8 || to->utf8) && !smtp_client_has_ext(r->client, "SMTPUTF8")) {
		relay_answer_later(r, 553, "5.6.7", "Non-ASCII address but the backend lacks SMTPUTF8");
		return false;
	}
	return true;
}

static void relay_mail_reply_cb(void *arg, const struct smtp_reply *rep)
{
	struct relay *r = arg;
	r->mail_reply = *rep;
	if (rep->code >= 200 && rep->code < 300)
		r->state = RELAY_IN_TX;
	else if (rep->code != 0)
		log_info("backend %s refused MAIL: %d %s", r->key, rep->code, rep->text);
}

static void relay_connect(struct relay *r, const struct bs_domain *dom);

static void relay_rcpt_reply_cb(void *arg, const struct smtp_reply *rep)
{
	struct relay *r = arg;
	bool link_failed = rep->code == 0 || rep->code == 421 ||
			   (r->mail_sent_now && (r->mail_reply.code == 0 || r->mail_reply.code == 421));
	if (r->pooled_fresh && link_failed) {
		/* the backend closed the idle session as we took it: once more on a new connection */
		log_info("backend %s: pooled session gone (%s); reconnecting", r->key, rep->text);
		r->pooled_fresh = false;
		r->mail_sent_now = false;
		r->no_pool = true;
		relay_connect(r, r->domain);
		return;
	}
	r->pooled_fresh = false;
	if (r->mail_sent_now && !(r->mail_reply.code >= 200 && r->mail_reply.code < 300)) {
		/* the sender was refused (or the link failed at MAIL): that is the client's answer */
		r->mail_sent_now = false;
		relay_answer_reply(r, &r->mail_reply, "MAIL");
		return;
	}
	r->mail_sent_now = false;
	relay_answer_reply(r, rep, "RCPT");
}

/* Send the pending MAIL (if any) and RCPT; pipelined when the backend allows it. */
static void relay_send_envelope(struct relay *r)
{
	if (r->mail_line[0]) {
		r->mail_sent_now = true;
		smtp_client_command(r->client, r->mail_line, relay_mail_reply_cb, r);
		r->mail_line[0] = '\0';
	}
	smtp_client_command(r->client, r->rcpt_line, relay_rcpt_reply_cb, r);
}

/* Open the backend transaction for the pending recipient: MAIL and RCPT, pipelined. */
static void relay_begin_tx(struct relay *r)
{
	char addr[SMTP_PATH_MAX + 8];

	if (!relay_capable(r, &r->mp, &r->from, &r->to))
		return;
	smtp_address_format(&r->from, addr, sizeof addr);
	snprintf(r->mail_line, sizeof r->mail_line, "MAIL FROM:<%s>", addr);
	relay_append_mail_params(r, &r->mp, r->mail_line, sizeof r->mail_line);
	smtp_address_format(&r->to, addr, sizeof addr);
	snprintf(r->rcpt_line, sizeof r->rcpt_line, "RCPT TO:<%s>", addr);
	relay_append_rcpt_params(r, &r->rp, r->rcpt_line, sizeof r->rcpt_line);
	relay_send_envelope(r);
}

static void relay_connect_next(struct relay *r);
static bool relay_connect_addr(struct relay *r);

static void relay_ready_cb(void *arg, const struct smtp_reply *rep)
{
	struct relay *r = arg;
	if (rep->code >= 200 && rep->code < 300) {
		backend_health_report(r->env.health, r->key, true);
		r->state = RELAY_READY;
		r->no_pool = false;
		const char *v, *c;
		smtp_client_tls_info(r->client, &v, &c);
		log_info("backend %s: session open%s%s", r->key, v ? " with " : "", v ? v : "");
		relay_begin_tx(r);
		return;
	}
	if (rep->code == 421 && !smtp_client_greeted(r->client)) {
		/* "too many connections": the backend is up but busy, which is no reason to skip it */
		r->busy_seen = true;
		log_notice("backend %s is busy: 421 at its greeting (%s); not counted as a failure",
			   r->key, rep->text);
	} else {
		log_notice("backend %s: %s%s%s", r->key, rep->code ? "refused the session: " : "",
			   rep->code ? "" : rep->text, rep->code ? rep->text : "");
		if (rep->code == 0 || rep->code == 421 || rep->code / 100 == 4)
			backend_health_report(r->env.health, r->key, false);
	}
	relay_drop_client(r, false);
	if (!relay_connect_addr(r))
		relay_connect_next(r);
}

static SSL_CTX *relay_tls_ctx(const struct relay *r)
{
	const struct bs_config *cfg = r->env.cfg;
	size_t i = (size_t)(r->domain - cfg->domains);
	if (r->domain->deliver_tls == DELIVER_TLS_NONE)
		return NULL;
	if (r->env.domain_tls && i < cfg->ndomains && r->env.domain_tls[i])
		return r->env.domain_tls[i];
	return r->env.tls_client;
}

/* Connect to the next address of the current target; false when none is left. */
static bool relay_connect_addr(struct relay *r)
{
	const struct bs_config *cfg = r->env.cfg;
	const struct bs_domain *dom = r->domain;
	const struct bs_hostport *hp = &dom->deliver.items[r->target];

	while (r->addr_next < r->naddrs) {
		size_t i = r->addr_next++;
		struct smtp_client_opts o = {
			.helo_name = cfg->hostname, .tls = dom->deliver_tls, .tls_ctx = relay_tls_ctx(r),
			.tls_server_name = hp->host, .tls_verify = dom->deliver_tls == DELIVER_TLS_MUST && dom->deliver_tls_ca,
			.connect_timeout_ms = cfg->backend_connect_timeout_ms,
			.command_timeout_ms = cfg->backend_command_timeout_ms,
			.data_timeout_ms = cfg->backend_data_timeout_ms,
		};
		r->client = smtp_client_new(r->env.base, (struct sockaddr *)&r->addrs[i], r->addrlens[i], &o,
					    relay_ready_cb, r);
		if (r->client != NULL)
			return true;
	}
	return false;
}

static void relay_resolved_cb(void *arg, const struct dns_addrs *res)
{
	struct relay *r = arg;

	r->dq = NULL;
	r->naddrs = r->addr_next = 0;
	if (res->status != DNS_OK) {
		log_notice("backend %s: cannot resolve: %s", r->key, res->error ? res->error : "no address");
	} else {
		for (size_t i = 0; i < res->count && i < DNS_ADDRS_MAX; i++) {
			r->addrs[i] = res->addr[i];
			r->addrlens[i] = res->addrlen[i];
		}
		r->naddrs = res->count < DNS_ADDRS_MAX ? res->count : DNS_ADDRS_MAX;
	}
	if (!relay_connect_addr(r))
		relay_connect_next(r);
}

/* An idle session to the current target from the worker's pool: the transaction starts at once. */
static bool relay_take_pooled(struct relay *r)
{
	char pk[SMTP_DOMAIN_MAX + 600];

	if (r->env.pool == NULL || r->no_pool)
		return false;
	relay_link_key(r->key, r->domain, pk, sizeof pk);
	r->client = relay_pool_take(r->env.pool, pk);
	if (r->client == NULL)
		return false;
	if (r->env.slots) { /* the pooled session comes with its slot */
		r->slot_held = true;
		snprintf(r->slot_key, sizeof r->slot_key, "%s", r->key);
	}
	r->state = RELAY_READY;
	r->pooled_fresh = true;
	relay_begin_tx(r);
	return true;
}

/* Resolve the current target (its connection slot is held); false if that cannot start. */
static bool relay_resolve(struct relay *r)
{
	const struct bs_hostport *hp = &r->domain->deliver.items[r->target];
	dns_resolver_set_servers(r->env.dns, r->env.cfg->dns_servers); /* nothing if already so */
	r->dq = dns_resolve_host(r->env.dns, hp->host, (uint16_t)atoi(hp->port), AF_UNSPEC,
				 relay_resolved_cb, r);
	return r->dq != NULL;
}

/* A connection slot of the current target, if one is free (always, without a slot table). */
static bool relay_slot_take(struct relay *r)
{
	if (r->env.slots == NULL)
		return true;
	if (!backend_slots_take(r->env.slots, r->key, (unsigned)r->env.cfg->deliver_max_connections))
		return false;
	r->slot_held = true;
	snprintf(r->slot_key, sizeof r->slot_key, "%s", r->key);
	return true;
}

/* Every connection to the current target is in use: wait in line for one, at most
 * backend_connect_timeout (relay_slot_woken or relay_slot_timeout goes on). */
static void relay_slot_wait(struct relay *r)
{
	const struct bs_config *cfg = r->env.cfg;
	struct timeval tv = { .tv_sec = (time_t)(cfg->backend_connect_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(cfg->backend_connect_timeout_ms % 1000) * 1000 };

	r->slot_waiting = true;
	r->slot_wait_since = now_ms();
	evtimer_add(r->slot_timer, &tv);
	backend_slots_wait(r->env.slots, r->key, (unsigned)cfg->deliver_max_connections, &r->slot_wait,
			   r->slot_wake);
	/* logged once in line: from here on, connections let go of anywhere come to us */
	log_info("backend %s: all %llu connections in use (deliver_max_connections); the transaction "
		 "waits up to %llu ms for one", r->key, (unsigned long long)cfg->deliver_max_connections,
		 (unsigned long long)cfg->backend_connect_timeout_ms);
}

/* Try the next target of the domain that the circuit breaker lets through. */
static void relay_connect_next(struct relay *r)
{
	const struct bs_config *cfg = r->env.cfg;
	const struct bs_domain *dom = r->domain;

	relay_slot_give(r); /* the previous target's */
	while (r->tries < dom->deliver.n) {
		size_t i = (r->first + r->tries++) % dom->deliver.n;
		const struct bs_hostport *hp = &dom->deliver.items[i];
		snprintf(r->key, sizeof r->key, "%s:%s", hp->host, hp->port);
		if (!backend_health_try(r->env.health, r->key, cfg->backend_retry_after_ms))
			continue;
		r->target = i;
		if (relay_take_pooled(r))
			return;
		if (!relay_slot_take(r)) {
			/* the backend is up but has all the connections it may get from us: wait for
			 * one rather than fail over (a busy backend is no reason to use another) */
			relay_slot_wait(r);
			return;
		}
		if (relay_resolve(r))
			return;
		relay_slot_give(r);
	}
	r->state = RELAY_IDLE;
	char text[SMTP_DOMAIN_MAX + 64];
	if (r->busy_seen) {
		/* "too many connections" at a greeting: busy, not down; key names the last one */
		relay_answer_later(r, 451, "4.4.5", "Backend busy (too many connections); try again later");
		return;
	}
	r->key[0] = '\0';
	snprintf(text, sizeof text, "No backend available for %s; try again later", dom->name);
	relay_answer_later(r, 451, "4.4.1", text);
}

/* A slot was granted (possibly by another worker): connect. */
static void relay_slot_go(struct relay *r)
{
	log_info("backend %s: a connection came free after %llu ms", r->key,
		 (unsigned long long)(now_ms() - r->slot_wait_since));
	if (!relay_resolve(r))
		relay_connect_next(r);
}

static void relay_slot_woken(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	(void)what;
	if (!r->slot_waiting)
		return;
	relay_slot_unwait(r);
	if (r->slot_held)
		relay_slot_go(r);
}

static void relay_slot_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	const struct bs_config *cfg = r->env.cfg;

	(void)fd;
	(void)what;
	relay_slot_unwait(r);
	if (r->slot_held) { /* granted as the wait ended */
		relay_slot_go(r);
		return;
	}
	log_notice("backend %s: no connection came free within %llu ms (deliver_max_connections = %llu): "
		   "the recipient gets 451 4.4.5", r->key, (unsigned long long)cfg->backend_connect_timeout_ms,
		   (unsigned long long)cfg->deliver_max_connections);
	r->state = RELAY_IDLE;
	relay_answer_later(r, 451, "4.4.5", "Too many connections to the backend; try again later");
}

static void relay_connect(struct relay *r, const struct bs_domain *dom)
{
	relay_drop_client(r, true);
	relay_slot_give(r);
	r->busy_seen = false;
	r->state = RELAY_CONNECTING;
	r->domain = dom;
	r->tries = 0;
	r->first = dom->deliver_policy == DELIVER_ROUND_ROBIN && r->env.rr_counter
		? (*r->env.rr_counter)++ % (dom->deliver.n ? dom->deliver.n : 1) : 0;
	if (dom->deliver.n == 0) {
		r->state = RELAY_IDLE;
		relay_answer_later(r, 451, "4.3.5", "No backend configured for this domain");
		return;
	}
	relay_connect_next(r);
}

void relay_rcpt(struct relay *r, const struct bs_domain *dom, const struct smtp_address *from,
		const struct smtp_mail_params *mp, const struct smtp_address *to,
		const struct smtp_rcpt_params *rp, relay_cb cb, void *arg)
{
	char addr[SMTP_PATH_MAX + 8];

	r->cb = cb;
	r->cb_arg = arg;
	if (r->state == RELAY_BROKEN) {
		relay_answer_later(r, 451, "4.4.2", "Backend connection failed; try again later");
		return;
	}
	if (r->state == RELAY_IN_TX && !relay_link_fits(r, dom)) {
		relay_answer_later(r, 452, "4.5.3", "Too many recipients for this transaction; send the rest in another");
		return;
	}
	r->from = *from;
	r->to = *to;
	r->mp = *mp;
	r->rp = *rp;
	smtp_address_format(to, addr, sizeof addr);
	snprintf(r->rcpt_line, sizeof r->rcpt_line, "RCPT TO:<%s>", addr);
	r->mail_line[0] = '\0';
	if (r->state == RELAY_IN_TX || (r->state == RELAY_READY && smtp_client_usable(r->client) &&
					 relay_link_fits(r, dom))) {
		if (r->state == RELAY_IN_TX) {
			relay_append_rcpt_params(r, rp, r->rcpt_line, sizeof r->rcpt_line);
			relay_send_envelope(r);
		} else {
			relay_begin_tx(r);
		}
		return;
	}
	relay_connect(r, dom);
}

static void relay_data_reply_cb(void *arg, const struct smtp_reply *rep)
{
	struct relay *r = arg;
	if (rep->code == 354)
		r->state = RELAY_IN_DATA;
	relay_answer_reply(r, rep, "DATA");
}

void relay_data_begin(struct relay *r, relay_cb cb, void *arg)
{
	r->cb = cb;
	r->cb_arg = arg;
	if (r->state != RELAY_IN_TX || !smtp_client_usable(r->client)) {
		r->state = RELAY_BROKEN;
		relay_answer_later(r, 451, "4.4.2", "Backend connection failed; try again later");
		return;
	}
	smtp_client_command(r->client, "DATA", relay_data_reply_cb, r);
}

void relay_data_write(struct relay *r, const char *buf, size_t len)
{
	if (r->state == RELAY_IN_DATA && r->client)
		smtp_client_data_write(r->client, buf, len);
}

/* Between transactions: when a transaction (of any session, on any worker) waits for a
 * connection to this backend, let ours go; this session's next transaction connects again, or
 * waits in line. An idle client session must not keep others from delivering. */
static void relay_let_go_if_wanted(struct relay *r)
{
	if (!r->slot_held || !backend_slots_wanted(r->env.slots, r->slot_key))
		return;
	log_info("backend %s: connection closed between transactions: another transaction waits for one",
		 r->key);
	relay_drop_client(r, true);
	relay_slot_give(r);
	r->state = RELAY_IDLE;
}

/* The link failed after the final dot had left: the backend may have the message. */
static void relay_final_unknown(struct relay *r, const struct smtp_reply *rep)
{
	struct relay_answer a = { .code = 451, .backend = r->key, .unknown = true };
	relay_cb cb = r->cb;

	snprintf(a.enhanced, sizeof a.enhanced, "4.4.2");
	snprintf(a.text, sizeof a.text, "%s", rep->text);
	r->state = RELAY_BROKEN;
	relay_drop_client(r, false);
	relay_slot_give(r);
	r->cb = NULL;
	if (cb)
		cb(r->cb_arg, &a);
}

static void relay_final_reply_cb(void *arg, const struct smtp_reply *rep)
{
	struct relay *r = arg;
	if (rep->code == 0 && smtp_client_dot_sent(r->client)) {
		relay_final_unknown(r, rep);
		return;
	}
	struct smtp_reply copy = *rep; /* the client that holds rep may be let go below */
	r->state = rep->code != 0 && smtp_client_usable(r->client) ? RELAY_READY : RELAY_BROKEN;
	if (r->state == RELAY_READY)
		relay_let_go_if_wanted(r);
	relay_answer_reply(r, &copy, "end of DATA");
}

void relay_data_end(struct relay *r, relay_cb cb, void *arg)
{
	r->cb = cb;
	r->cb_arg = arg;
	if (r->state != RELAY_IN_DATA || r->client == NULL) {
		r->state = RELAY_BROKEN;
		relay_answer_later(r, 451, "4.4.2", "Backend connection failed; message not delivered");
		return;
	}
	smtp_client_data_end(r->client, relay_final_reply_cb, r);
}

void relay_data_abort(struct relay *r)
{
	relay_drop_client(r, false);
	relay_slot_give(r);
	r->state = RELAY_IDLE;
	r->key[0] = '\0';
}

static void relay_ignore_reply(void *arg, const struct smtp_reply *rep)
{
	(void)arg;
	(void)rep;
}

void relay_tx_reset(struct relay *r)
{
	if (r->state == RELAY_IN_TX && smtp_client_usable(r->client)) {
		smtp_client_command(r->client, "RSET", relay_ignore_reply, r);
		r->state = RELAY_READY;
		relay_let_go_if_wanted(r);
	} else if (r->state == RELAY_BROKEN || r->state == RELAY_IN_DATA) {
		relay_data_abort(r);
	}
}

size_t relay_pending(const struct relay *r)
{
	return r->client ? smtp_client_pending(r->client) : 0;
}

void relay_set_drain_cb(struct relay *r, size_t lowmark, void (*cb)(void *arg), void *arg)
{
	if (r->client)
		smtp_client_set_drain_cb(r->client, lowmark, cb, arg);
}

bool relay_usable(const struct relay *r)
{
	return r->client != NULL && !smtp_client_failed(r->client) && r->state != RELAY_BROKEN;
}

const char *relay_backend(const struct relay *r)
{
	return r->key[0] ? r->key : NULL;
}
