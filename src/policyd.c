/* policyd.c - connections of the Postfix policy service: accept (within policy_max_connections),
 * read requests one at a time (reading pauses while the engine decides, so pipelined requests
 * are answered in order), ask the engine, write the action, log one line per decision like the
 * SMTP front end (frontend=policy). A malformed or oversized request closes its connection and
 * nothing else; so does policy_timeout of idleness. */
#include "policyd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "connlimit.h"
#include "engine.h"
#include "log.h"
#include "policyd_proto.h"
#include "unix_listen.h"
#include "runtime.h"
#include "util.h"

#define POLICY_READ_HIGHWATER (64 * 1024)
#define POLICY_OUTPUT_HIGH (64 * 1024) /* answers a client does not read: stop deciding */
#define POLICY_ACTION_MAX (ENGINE_TEXT_MAX + ENGINE_HEADERS_MAX + 64)

struct policy_conn {
	struct policy_conn *prev, *next;
	struct policyd *pd;
	struct bufferevent *bev;
	struct sockaddr_storage peer;
	char peer_text[64];
	char id[24];
	uint64_t requests;
	bool counted;                 /* holds a slot of deps.limit */
	bool closing;                 /* close once the output is written */
	/* the request being received, then decided */
	struct policy_request req;
	struct engine_request ereq;
	struct policy_query q;
	struct bs_runtime *rt;        /* held while a decision runs */
	struct engine_query *eq;
	uint64_t t0;
	/* the facts of the Postfix transaction (instance) being decided (engine.h, "Facts") */
	char instance[64];
	char *facts;
};

struct policyd {
	struct policyd_deps deps;
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct policy_conn *conns;
	size_t nconns;
	uint64_t seq;
	bool stopping;
};

static void policy_conn_process(struct policy_conn *c);

/* ---- connections ---- */

static void policy_conn_free(struct policy_conn *c)
{
	struct policyd *pd = c->pd;

	engine_cancel(c->eq);
	free(c->facts);
	runtime_unref(c->rt);
	if (c->counted)
		connlimit_release(pd->deps.limit, (const struct sockaddr *)&c->peer);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->prev)
		c->prev->next = c->next;
	else
		pd->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pd->nconns--;
	log_debug("session=%s policy disconnect peer=%s requests=%llu", c->id, c->peer_text,
		  (unsigned long long)c->requests);
	free(c);
	if (pd->stopping && pd->nconns == 0 && pd->deps.idle)
		pd->deps.idle(pd->deps.idle_arg);
}

/* No more requests: close once what was answered has been written. */
static void policy_conn_finish(struct policy_conn *c)
{
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		policy_conn_free(c);
}

static void policy_log_decision(struct policy_conn *c, const struct engine_decision *d, const char *action)
{
	const struct engine_request *r = &c->ereq;
	char from[SMTP_PATH_MAX * 4 + 8] = "", rcpt[SMTP_PATH_MAX * 4 + 16] = "", helo[(SMTP_DOMAIN_MAX + 1) * 4];
	char raw[SMTP_PATH_MAX + 8], why[ENGINE_TEXT_MAX * 4], code[8] = "-", extra[ENGINE_LOG_MAX + 256] = "";
	/* the action's verb: DUNNO, PREPEND, DEFER_IF_PERMIT, or REJECT for the numeric form */
	bool numeric = action[7] >= '0' && action[7] <= '9';
	const char *verb = numeric ? "REJECT" : action + 7;
	int verb_len = numeric ? 6 : (int)strcspn(action + 7, " \n");

	if (r->has_sender) {
		size_t n = smtp_address_format(r->sender, raw, sizeof raw);
		log_sanitize(from, sizeof from, raw, n);
	}
	if (r->has_rcpt) {
		size_t n = smtp_address_format(r->rcpt, raw, sizeof raw);
		strcpy(rcpt, " rcpt=<");
		log_sanitize(rcpt + 7, sizeof rcpt - 9, raw, n);
		strcat(rcpt, ">");
	} else if (c->q.rcpt_raw[0] != '\0') {
		snprintf(rcpt, sizeof rcpt, " rcpt=<%s>", c->q.rcpt_raw);
	}
	log_sanitize(helo, sizeof helo, r->helo, strlen(r->helo));
	const char *reason = d ? d->text : (c->q.why ? c->q.why : "");
	log_sanitize(why, sizeof why, reason, strlen(reason));
	bool refused = d && (d->result == CHECK_REJECT || d->result == CHECK_DEFER);
	if (refused)
		snprintf(code, sizeof code, "%d", d->code);
	if (c->q.instance[0])
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " instance=%s", c->q.instance);
	if (c->q.queue_id[0])
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " queue_id=%s", c->q.queue_id);
	if (d && d->log[0])
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " %s", d->log);
	if (d && d->check)
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " check=%s", d->check);
	if (d && d->timed_out)
		strbuf_append(extra, sizeof extra, " stage_timed_out=yes");
	log_msg(refused ? LOG_LVL_NOTICE : LOG_LVL_INFO,
		"session=%s %s client=%s helo=%s from=<%s>%s code=%s status=%s reason=\"%s\" frontend=policy "
		"state=%s action=%.*s%s latency_ms=%llu",
		c->id, d || c->q.staged ? engine_stage_name(r->stage) : "request", c->ereq.client_ip, helo[0] ? helo : "-", from,
		rcpt, code, refused && d->enhanced[0] ? d->enhanced : "-", why, c->q.state, verb_len, verb,
		extra, (unsigned long long)(now_ms() - c->t0));
}

/* Write the answer of the request in c->req; the connection is ready for the next one. */
static void policy_conn_answer(struct policy_conn *c, const struct engine_decision *d)
{
	char action[POLICY_ACTION_MAX];
	size_t n = d ? policy_action_format(d, action, sizeof action) : policy_action_dunno(action, sizeof action);

	policy_log_decision(c, d, action);
	bufferevent_write(c->bev, action, n);
	runtime_unref(c->rt);
	c->rt = NULL;
	policy_request_reset(&c->req);
}

/* Facts are kept for the instance once a decision let the transaction go on: the later
 * requests of the instance pass them back (one evaluation, header fields added once). */
static void policy_conn_keep_facts(struct policy_conn *c, const struct engine_decision *d)
{
	if (c->q.instance[0] == '\0' || d->facts[0] == '\0' || d->result == CHECK_REJECT || d->result == CHECK_DEFER)
		return;
	if (strcmp(c->instance, c->q.instance) != 0) {
		free(c->facts);
		c->facts = NULL;
		snprintf(c->instance, sizeof c->instance, "%s", c->q.instance);
	}
	if (c->facts == NULL) {
		c->facts = xstrdup(d->facts);
	} else if (strstr(c->facts, d->facts) == NULL) {
		size_t a = strlen(c->facts), b = strlen(d->facts);
		if (a + b < ENGINE_FACTS_MAX) {
			c->facts = xrealloc(c->facts, a + b + 1);
			memcpy(c->facts + a, d->facts, b + 1);
		}
	}
}

static void policy_conn_decided(void *arg, const struct engine_decision *d)
{
	struct policy_conn *c = arg;

	c->eq = NULL;
	policy_conn_keep_facts(c, d);
	policy_conn_answer(c, d);
	if (c->pd->stopping)
		policy_conn_finish(c);
	else
		policy_conn_process(c); /* pipelined requests waiting in the input */
}

/* A complete request: decode it and ask the engine (true), or answer DUNNO at once (false). */
static bool policy_conn_ask(struct policy_conn *c)
{
	c->requests++;
	c->t0 = now_ms();
	c->rt = c->pd->deps.runtime(c->pd->deps.runtime_arg);
	policy_request_decode(&c->req, c->rt->cfg, c->id, &c->ereq, &c->q);
	if (!c->q.ask) {
		policy_conn_answer(c, NULL);
		return false;
	}
	if (c->facts != NULL && strcmp(c->instance, c->q.instance) == 0)
		c->ereq.facts = c->facts; /* the same Postfix transaction */
	bufferevent_disable(c->bev, EV_READ); /* the next request waits for this answer */
	c->eq = engine_start(c->rt->engine, c->pd->deps.base, &c->ereq, policy_conn_decided, c);
	return true;
}

/* Take requests from the input while no decision runs. */
static void policy_conn_process(struct policy_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (c->eq == NULL && !c->closing && evbuffer_get_length(in) > 0) {
		if (evbuffer_get_length(out) > POLICY_OUTPUT_HIGH) {
			bufferevent_disable(c->bev, EV_READ); /* the write callback resumes */
			return;
		}
		struct evbuffer_iovec v;
		size_t used = 0;
		const char *why = NULL;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		enum policy_feed f = policy_request_feed(&c->req, v.iov_base, v.iov_len, &used, &why);
		evbuffer_drain(in, used);
		if (f == POLICY_FEED_BAD) {
			log_notice("session=%s policy peer=%s malformed request (%s) after %llu requests; closing",
				   c->id, c->peer_text, why, (unsigned long long)c->requests);
			policy_conn_free(c);
			return;
		}
		if (f == POLICY_FEED_DONE && policy_conn_ask(c))
			return; /* policy_conn_decided goes on from here */
		if (f == POLICY_FEED_DONE && c->pd->stopping) {
			policy_conn_finish(c);
			return;
		}
	}
	if (c->eq == NULL && !c->closing)
		bufferevent_enable(c->bev, EV_READ);
}

static void policy_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	policy_conn_process(arg);
}

static void policy_write_cb(struct bufferevent *bev, void *arg)
{
	struct policy_conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (c->closing)
		policy_conn_free(c);
	else if (c->eq == NULL)
		policy_conn_process(c);
}

static void policy_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct policy_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_info("session=%s policy peer=%s idle for policy_timeout; closing", c->id, c->peer_text);
	else if ((what & BEV_EVENT_ERROR) && EVUTIL_SOCKET_ERROR() != ECONNRESET)
		log_debug("session=%s policy peer=%s %s", c->id, c->peer_text,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	policy_conn_free(c); /* EOF, error or idle: a decision in progress is cancelled */
}

static void policy_peer_text(struct policy_conn *c, evutil_socket_t fd, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		snprintf(c->peer_text, sizeof c->peer_text, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(c->peer_text, sizeof c->peer_text, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		struct ucred cred;
		socklen_t len = sizeof cred;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			snprintf(c->peer_text, sizeof c->peer_text, "unix:pid=%ld", (long)cred.pid);
		else
			snprintf(c->peer_text, sizeof c->peer_text, "unix");
	}
}

static void policy_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
			     void *arg)
{
	struct policyd *pd = arg;
	struct policy_conn *c = xcalloc(1, sizeof *c);
	struct bs_runtime *rt = pd->deps.runtime(pd->deps.runtime_arg);
	uint64_t max = rt->cfg->policy_max_connections, timeout = rt->cfg->policy_timeout_ms;

	(void)l;
	runtime_unref(rt);
	c->pd = pd;
	memcpy(&c->peer, sa, (size_t)salen < sizeof c->peer ? (size_t)salen : sizeof c->peer);
	policy_peer_text(c, fd, sa);
	if (pd->deps.limit != NULL) {
		if (connlimit_acquire(pd->deps.limit, (const struct sockaddr *)&c->peer, max, max) != CONNLIMIT_OK) {
			log_notice("policy peer=%s refused: policy_max_connections (%llu) reached", c->peer_text,
				   (unsigned long long)max);
			evutil_closesocket(fd);
			free(c);
			return;
		}
		c->counted = true;
	}
	snprintf(c->id, sizeof c->id, "%08llX%02XP%05llX", (unsigned long long)(pd->deps.start_time & 0xffffffffu),
		 pd->deps.worker_id & 0xff, (unsigned long long)(++pd->seq & 0xfffff));
	c->next = pd->conns;
	if (pd->conns)
		pd->conns->prev = c;
	pd->conns = c;
	pd->nconns++;
	c->bev = bufferevent_socket_new(pd->deps.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		log_err("policy peer=%s cannot create a bufferevent", c->peer_text);
		evutil_closesocket(fd);
		policy_conn_free(c);
		return;
	}
	struct timeval tv = { (time_t)(timeout / 1000), (suseconds_t)(timeout % 1000) * 1000 };
	bufferevent_setcb(c->bev, policy_read_cb, policy_write_cb, policy_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, POLICY_READ_HIGHWATER);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	log_debug("session=%s policy connect peer=%s", c->id, c->peer_text);
}

/* ---- listeners ---- */

static void policy_resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct policyd *pd = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; !pd->stopping && i < pd->nlisteners; i++)
		evconnlistener_enable(pd->listeners[i]);
}

/* accept() failed (EMFILE...): pause for a moment rather than spin on a readable socket. */
static void policy_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct policyd *pd = arg;
	struct timeval tv = { 0, 200 * 1000 };

	log_warn("policy: accept: %s; pausing accepts for 200 ms", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(l);
	event_base_once(pd->deps.base, -1, EV_TIMEOUT, policy_resume_accept_cb, pd, &tv);
}

struct policyd *policyd_new(const struct policyd_deps *deps, int *fds, size_t nfds)
{
	struct policyd *pd = xcalloc(1, sizeof *pd);

	pd->deps = *deps;
	pd->listeners = xcalloc(nfds, sizeof *pd->listeners);
	for (size_t i = 0; i < nfds; i++) {
		struct evconnlistener *l = evconnlistener_new(deps->base, policy_accept_cb, pd, LEV_OPT_CLOSE_ON_FREE,
							      -1, fds[i]);
		if (l == NULL) {
			for (size_t j = i; j < nfds; j++)
				close(fds[j]);
			free(fds);
			policyd_free(pd);
			return NULL;
		}
		evconnlistener_set_error_cb(l, policy_accept_error_cb);
		pd->listeners[pd->nlisteners++] = l;
	}
	free(fds);
	return pd;
}

static void policyd_close_listeners(struct policyd *pd)
{
	for (size_t i = 0; i < pd->nlisteners; i++)
		evconnlistener_free(pd->listeners[i]);
	pd->nlisteners = 0;
}

void policyd_stop(struct policyd *pd)
{
	if (pd == NULL || pd->stopping)
		return;
	pd->stopping = true;
	policyd_close_listeners(pd);
	for (struct policy_conn *c = pd->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->eq == NULL && !c->closing)
			policy_conn_finish(c); /* idle (or between requests): no answer is owed */
	}
	if (pd->nconns == 0 && pd->deps.idle)
		pd->deps.idle(pd->deps.idle_arg);
}

void policyd_abort(struct policyd *pd)
{
	if (pd == NULL)
		return;
	if (pd->nconns > 0)
		log_notice("policy: closing %zu connections at the shutdown deadline", pd->nconns);
	pd->stopping = true;
	policyd_close_listeners(pd);
	while (pd->conns != NULL)
		policy_conn_free(pd->conns);
}

size_t policyd_connections(const struct policyd *pd)
{
	return pd ? pd->nconns : 0;
}

void policyd_free(struct policyd *pd)
{
	if (pd == NULL)
		return;
	pd->deps.idle = NULL;
	policyd_close_listeners(pd);
	while (pd->conns != NULL)
		policy_conn_free(pd->conns);
	free(pd->listeners);
	free(pd);
}

/* ---- the unix socket ---- */

/* Is a server answering on path? (Then it is not ours to remove.) */
int policyd_unix_listen(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	return unix_listen(path, mode, uid, gid, err, errlen);
}
