/* worker.c - a worker thread and its event loop: accepts on its own listening sockets, owns the
 * sessions it accepted, and on stop closes its listeners, lets sessions finish, and at the
 * shutdown deadline answers 421 to the ones left, except those whose final dot the backend
 * already has: they get the backend's reply (within backend_data_timeout) or no reply. */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"
#include "policyd.h"
#include "proxy_accept.h"
#include "relay_pool.h"
#include "runtime.h"
#include "smtp_session.h"
#include "stats.h"
#include "util.h"

/* After the shutdown deadline, sessions get this long to take their 421 before the loop ends
 * (plus backend_data_timeout when one waits for a backend's reply to its final dot). */
#define WORKER_ABORT_GRACE_MS 2000

/* The PROXY header named the client: the session starts as if it had connected itself. */
static void worker_proxied_cb(void *arg, evutil_socket_t fd, const struct sockaddr *client, socklen_t len)
{
	struct worker *w = arg;
	smtp_session_accept(&w->env, w->shared.runtime(w->shared.runtime_arg), fd, client, len);
}

static void worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			     int salen, void *arg)
{
	struct worker *w = arg;
	struct bs_runtime *rt = w->shared.runtime(w->shared.runtime_arg);
	(void)l;
	if (rt->cfg->proxy_from.n == 0 || !cidr_list_match(&rt->cfg->proxy_from, sa)) {
		smtp_session_accept(&w->env, rt, fd, sa, (socklen_t)salen);
		return;
	}
	uint64_t timeout = rt->cfg->proxy_protocol_timeout_ms, max = rt->cfg->max_connections;
	runtime_unref(rt);
	if (w->proxy_waits.n >= max) { /* a balancer cannot hold more than the clients it stands for */
		log_notice("worker %u: %zu connections waiting for their PROXY header; one more closed", w->id,
			   w->proxy_waits.n);
		evutil_closesocket(fd);
		return;
	}
	proxy_accept_start(&w->proxy_waits, w->base, fd, sa, (socklen_t)salen, timeout, worker_proxied_cb, w);
}

static void worker_resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	if (!w->stopping)
		for (size_t i = 0; i < w->nfds; i++)
			if (w->listeners[i])
				evconnlistener_enable(w->listeners[i]);
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS...): pause accepting for a moment instead of
 * spinning on a socket that stays readable. */
static void worker_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct worker *w = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, 200 * 1000 };

	log_warn("worker %u: accept: %s; pausing accepts for 200 ms", w->id, evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	event_base_once(w->base, -1, EV_TIMEOUT, worker_resume_accept_cb, w, &tv);
}

static void worker_exit_if_idle(struct worker *w)
{
	if (w->stopping && w->sessions.n == 0 && policyd_connections(w->policyd) == 0)
		event_base_loopexit(w->base, NULL);
}

static void worker_policyd_idle(void *arg)
{
	worker_exit_if_idle(arg);
}

int worker_add_policyd(struct worker *w, const struct policyd_deps *deps, int *fds, size_t nfds)
{
	struct policyd_deps d = *deps;

	d.base = w->base;
	d.idle = worker_policyd_idle;
	d.idle_arg = w;
	w->policyd = policyd_new(&d, fds, nfds);
	return w->policyd ? 0 : -1;
}

/* A session ended: a stopping worker exits once empty. */
static void worker_session_ended(void *arg)
{
	worker_exit_if_idle(arg);
}

static void worker_hard_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	log_warn("worker %u: %zu sessions did not close in time; exiting anyway", w->id, w->sessions.n);
	event_base_loopexit(w->base, NULL);
}

static void worker_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t wait_ms = 0;

	(void)fd;
	(void)what;
	if (w->sessions.n > 0)
		log_notice("worker %u: shutdown deadline reached, closing %zu sessions", w->id, w->sessions.n);
	for (struct smtp_session *s = w->sessions.head, *next; s != NULL; s = next) {
		next = smtp_session_next(s);
		uint64_t ms = smtp_session_abort(s); /* > 0: waits for its backend's final reply */
		if (ms > wait_ms)
			wait_ms = ms;
	}
	policyd_abort(w->policyd);
	if (w->sessions.n > 0) {
		uint64_t ms = WORKER_ABORT_GRACE_MS + wait_ms;
		struct timeval grace = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
		event_base_once(w->base, -1, EV_TIMEOUT, worker_hard_exit_cb, w, &grace);
	}
	worker_exit_if_idle(w);
}

static void worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	if (w->stopping)
		return;
	w->stopping = true;
	relay_pool_close(w->pool); /* idle backend sessions: QUIT now, and when sessions end */
	policyd_stop(w->policyd);
	proxy_accept_abort_all(&w->proxy_waits);
	for (size_t i = 0; i < w->nfds; i++) {
		evconnlistener_free(w->listeners[i]);
		w->listeners[i] = NULL;
	}
	struct bs_runtime *rt = w->shared.runtime(w->shared.runtime_arg);
	uint64_t ms = rt->cfg->shutdown_timeout_ms;
	runtime_unref(rt);
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	w->deadline_ev = evtimer_new(w->base, worker_deadline_cb, w);
	evtimer_add(w->deadline_ev, &tv);
	worker_exit_if_idle(w);
}

int worker_init(struct worker *w, unsigned id, const struct worker_shared *shared, int *fds, size_t nfds)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	w->shared = *shared;
	w->base = event_base_new();
	if (w->base == NULL)
		return -1;
	w->fds = fds;
	w->nfds = nfds;
	w->listeners = xcalloc(nfds, sizeof *w->listeners);
	for (size_t i = 0; i < nfds; i++) {
		w->listeners[i] = evconnlistener_new(w->base, worker_accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1, fds[i]);
		if (w->listeners[i] == NULL)
			return -1;
		evconnlistener_set_error_cb(w->listeners[i], worker_accept_error_cb);
	}
	w->stop_ev = event_new(w->base, -1, 0, worker_stop_cb, w);
	w->scratch = xmalloc(SESSION_SCRATCH_SIZE);
	w->pool = relay_pool_new(w->base);
	const char *why = NULL;
	w->dns = dns_resolver_new_opts(w->base, 2000, 2, &why);
	if (w->dns == NULL) {
		log_err("worker %u: DNS resolver: %s", id, why ? why : "unknown error");
		return -1;
	}
	dns_resolver_set_cache(w->dns, shared->dns_cache);
	struct bs_runtime *rt = shared->runtime(shared->runtime_arg);
	int bad = dns_resolver_set_servers(w->dns, rt->cfg->dns_servers);
	runtime_unref(rt);
	if (bad) {
		log_err("worker %u: dns_servers not usable", id);
		return -1;
	}
	w->env = (struct session_env){
		.base = w->base, .connlimit = shared->connlimit, .health = shared->health,
		.slots = shared->slots, .pool = w->pool, .dns = w->dns, .rr_counter = &w->rr_counter,
		.scratch = w->scratch, .id_time = shared->start_time, .id_owner = id, .id_seq = &w->seq,
		.list = &w->sessions, .ended = worker_session_ended, .ended_arg = w,
		.stats = shared->stats ? &shared->stats[id] : NULL,
	};
	if (w->env.stats != NULL)
		relay_pool_set_gauge(w->pool, &w->env.stats->pooled);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int worker_start(struct worker *w)
{
	return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void worker_stop(struct worker *w)
{
	event_active(w->stop_ev, EV_TIMEOUT, 0); /* thread-safe: evthread_use_pthreads() is on */
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	if (w->sessions.n > 0 || policyd_connections(w->policyd) > 0)
		return; /* the process is exiting: leave the stragglers to the kernel */
	policyd_free(w->policyd);
	if (w->deadline_ev)
		event_free(w->deadline_ev);
	event_free(w->stop_ev);
	for (size_t i = 0; i < w->nfds; i++)
		if (w->listeners[i])
			evconnlistener_free(w->listeners[i]);
	free(w->listeners);
	free(w->fds);
	free(w->scratch);
	relay_pool_free(w->pool);
	dns_resolver_free(w->dns);
	event_base_free(w->base);
}
