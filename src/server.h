/* server.h - the process: listening sockets (bound as root if needed), privilege drop, worker
 * threads, signals (HUP reload, TERM/INT graceful stop) and the current runtime generation. */
#ifndef BACKSTOP_SERVER_H
#define BACKSTOP_SERVER_H

#include "backend_health.h"
#include "backend_slots.h"
#include "config.h"
#include "connlimit.h"
#include "runtime.h"

struct server;

/* Run the daemon in the foreground with cfg (takes the reference). Returns the exit status. */
int server_run(const char *config_path, struct bs_config *cfg);

/* The current generation, with a new reference for the caller. Thread-safe. */
struct bs_runtime *server_runtime(struct server *srv);
struct connlimit *server_connlimit(struct server *srv);
uint64_t server_start_time(struct server *srv);
/* Circuit breaker and connection slots for backends, shared by all workers and kept across
 * reloads. */
struct backend_health *server_health(struct server *srv);
struct backend_slots *server_slots(struct server *srv);

/* For tests and fuzzing: a server with no listener, thread or signal, around rt (takes the
 * reference), with its own connection limits and circuit breaker, for workers the caller runs
 * on its own loop. server_free_embedded() once every session on it has ended. */
struct server *server_new_embedded(struct bs_runtime *rt);
void server_free_embedded(struct server *srv);

#endif
