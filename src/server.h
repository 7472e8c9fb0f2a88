/* server.h - the process: listening sockets (bound as root if needed), privilege drop, worker
 * threads, signals (HUP reload, TERM/INT graceful stop) and the current runtime generation, and
 * what the workers share (given to them as a struct worker_shared). */
#ifndef BACKSTOP_SERVER_H
#define BACKSTOP_SERVER_H

#include "config.h"

/* Run the daemon in the foreground with cfg (takes the reference). Returns the exit status. */
int server_run(const char *config_path, struct bs_config *cfg);

#endif
