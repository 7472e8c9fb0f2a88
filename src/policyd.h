/* policyd.h - the Postfix SMTP access policy service, the decision engine's second front end:
 * Postfix's smtpd (check_policy_service) connects, sends requests and gets one action line per
 * request (policyd_proto.h). One policyd per worker loop accepts on that worker's listening
 * sockets and owns the connections it accepted; requests of one connection are decided one at a
 * time, in order. It gets what it needs passed in (loop, runtime generation, limits), never its
 * worker or the server. */
#ifndef BACKSTOP_POLICYD_H
#define BACKSTOP_POLICYD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

struct bs_runtime;
struct connlimit;
struct policyd;

struct policyd_deps {
	struct event_base *base;         /* the worker's loop: everything runs on it */
	/* The current runtime generation with a new reference (released by policyd). Thread-safe. */
	struct bs_runtime *(*runtime)(void *arg);
	void *runtime_arg;
	struct connlimit *limit;         /* policy connections of the process (shared), or NULL */
	void (*idle)(void *arg);         /* after policyd_stop: the last connection has closed */
	void *idle_arg;
	unsigned worker_id;              /* for connection ids */
	uint64_t start_time;
};

/* Accept on fds (an array of listening sockets from malloc: the array is freed, the sockets
 * closed by policyd_free). NULL on failure (the sockets are closed then too). */
struct policyd *policyd_new(const struct policyd_deps *deps, int *fds, size_t nfds);
/* Stop accepting: idle connections close now, a connection waiting for a decision closes once
 * it has answered. deps->idle is called when none is left (maybe from inside this call). */
void policyd_stop(struct policyd *pd);
/* Shutdown deadline: close every connection now, decisions in progress cancelled. */
void policyd_abort(struct policyd *pd);
size_t policyd_connections(const struct policyd *pd);
void policyd_free(struct policyd *pd);

/* A listening unix socket at path, made once (as root, before privileges are dropped): a stale
 * socket file is removed first, one that a live server answers on is not. Then mode, and owner
 * and group (-1: unchanged). Returns the fd, or -1 with err filled. */
int policyd_unix_listen(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
