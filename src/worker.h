/* worker.h - a worker thread: one libevent loop that accepts on its own SO_REUSEPORT listening
 * sockets and runs every session it accepted. Workers share only read-mostly state (the current
 * runtime generation, the connection limits). */
#ifndef BACKSTOP_WORKER_H
#define BACKSTOP_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "proxy_accept.h"
#include "smtp_session.h"

struct policyd;
struct policyd_deps;
struct bs_runtime;
struct connlimit;
struct backend_health;
struct backend_slots;
struct stats_worker;

/* What the workers share, owned by their owner (the server) and passed in: the worker never
 * reaches up into it. */
struct worker_shared {
	/* The current runtime generation, with a new reference for the caller. Thread-safe. */
	struct bs_runtime *(*runtime)(void *arg);
	void *runtime_arg;
	struct connlimit *connlimit;       /* SMTP connections, all workers */
	struct backend_health *health;     /* circuit breaker per backend */
	struct backend_slots *slots;       /* connections per backend */
	uint64_t start_time;               /* for session ids */
	struct dns_cache *dns_cache;       /* typed DNS answers, all workers (NULL: none) */
	struct stats_worker *stats;        /* counters, one block per worker id (NULL: none) */
};

struct worker {
	unsigned id;
	struct worker_shared shared;
	struct event_base *base;
	pthread_t thread;
	int *fds;                    /* listening sockets of this worker (owned until listening) */
	size_t nfds;
	struct evconnlistener **listeners;
	struct event *stop_ev;       /* activated from the main thread: stop accepting */
	struct event *deadline_ev;   /* shutdown deadline: close what is left */
	bool stopping;
	struct session_list sessions; /* live sessions */
	struct proxy_waits proxy_waits; /* connections from proxy_protocol_from before their header */
	uint64_t seq;                /* sessions accepted, for session ids */
	unsigned rr_counter;         /* round-robin position for deliver_policy = round-robin */
	char *scratch;               /* SESSION_SCRATCH_SIZE bytes for synchronous decoding */
	struct dns_resolver *dns;    /* this loop's resolver (c-ares) */
	struct relay_pool *pool;     /* idle backend sessions kept between client sessions */
	struct policyd *policyd;     /* the Postfix policy service on this loop, or NULL */
	struct session_env env;      /* what this worker's sessions are given (points into the above) */
};

/* Create the worker's loop and listeners from fds (taking them over). Returns 0 or -1. */
int worker_init(struct worker *w, unsigned id, const struct worker_shared *shared, int *fds, size_t nfds);
/* Serve the Postfix policy service on this worker's loop from fds (taken over); deps without
 * base and idle, which the worker fills in. After worker_init, before worker_start. 0 or -1. */
int worker_add_policyd(struct worker *w, const struct policyd_deps *deps, int *fds, size_t nfds);
int worker_start(struct worker *w);   /* spawn the thread */
void worker_stop(struct worker *w);   /* thread-safe: stop accepting, drain, then exit the loop */
void worker_join(struct worker *w);   /* wait for the thread */
void worker_free(struct worker *w);   /* after worker_join: free the loop and all */

#endif
