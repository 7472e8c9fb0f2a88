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

#endif
