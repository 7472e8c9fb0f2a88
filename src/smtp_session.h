/* smtp_session.h - one client SMTP session: created by its owner (a worker, or a test) for each
 * accepted connection, freed by itself when the connection ends. What a session needs comes in
 * a session_env from the owner; the session never reaches up into the worker or the server. */
#ifndef BACKSTOP_SMTP_SESSION_H
#define BACKSTOP_SMTP_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/util.h>

struct backend_health;
struct backend_slots;
struct bs_runtime;
struct connlimit;
struct dns_resolver;
struct relay_pool;
struct smtp_session;
struct stats_worker;

/* Bytes of the owner's scratch buffer (synchronous decoding of message content). */
#define SESSION_SCRATCH_SIZE (64 * 1024)

/* The owner's live sessions: a session puts itself in at accept and takes itself out when it
 * ends (then calls env->ended). */
struct session_list {
	struct smtp_session *head;
	size_t n;
};

/* What sessions need from their owner. Borrowed: every pointer must outlive the sessions, and
 * all of it belongs to base's thread but for what says shared (thread-safe). */
struct session_env {
	struct event_base *base;
	struct connlimit *connlimit;       /* shared: max_connections, per IP */
	struct backend_health *health;     /* shared: backend circuit breaker */
	struct backend_slots *slots;       /* shared: connections per backend (NULL: no cap) */
	struct relay_pool *pool;           /* idle backend sessions of this loop (NULL: no reuse) */
	struct dns_resolver *dns;          /* this loop's resolver, for deliver targets by name */
	unsigned *rr_counter;              /* deliver_policy = round-robin position */
	char *scratch;                     /* SESSION_SCRATCH_SIZE bytes */
	uint64_t id_time;                  /* session ids: the process start time, */
	unsigned id_owner;                 /* the owner's number (worker id), */
	uint64_t *id_seq;                  /* and the owner's counter of sessions */
	struct session_list *list;
	void (*ended)(void *arg);          /* a session ended and left the list (NULL: nothing) */
	void *ended_arg;
	struct stats_worker *stats;        /* this owner's counters (NULL: not counted) */
};

/* Start a session on a freshly accepted socket (takes ownership of fd, and of the caller's
 * reference on rt, the generation the session runs with). */
void smtp_session_accept(const struct session_env *env, struct bs_runtime *rt, evutil_socket_t fd,
			 const struct sockaddr *sa, socklen_t salen);

/* Shutdown deadline reached (used by a stopping owner): answer 421 and close, and return 0;
 * or, for a session whose final dot the backend already has, return how long (ms) it may still
 * wait for the backend's reply: it then relays that reply, or closes without one if the backend
 * does not answer, never a 4xx for a message the backend may have taken. A decision still being
 * made is cancelled: the 421 answers the command that waited for it. */
uint64_t smtp_session_abort(struct smtp_session *s);

/* Next session in the owner's list (for walking it while aborting). */
struct smtp_session *smtp_session_next(struct smtp_session *s);

#endif
