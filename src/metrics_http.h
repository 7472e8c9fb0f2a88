/* metrics_http.h - the metrics_listen HTTP server: its own thread and event loop (libevent's
 * evhttp) serving GET /metrics (Prometheus text format) and GET / (the status page). A scrape
 * reads a stats snapshot (relaxed atomics, a few short table locks): it never waits on a
 * worker and no worker waits on it. Owned by the server. */
#ifndef BACKSTOP_METRICS_HTTP_H
#define BACKSTOP_METRICS_HTTP_H

#include <stddef.h>

#include "stats_snapshot.h"

struct metrics_http;

/* Serve on the listening sockets fds[0..nfds-1] (taken over, also on failure) from a new
 * thread; view is copied (what it points to must outlive the server). NULL on failure with
 * why set. Main thread. */
struct metrics_http *metrics_http_start(const struct stats_view *view, const int *fds, size_t nfds, char *why,
					size_t whysz);
/* Stop the thread, close the sockets, free. NULL is fine. Main thread. */
void metrics_http_stop(struct metrics_http *m);

#endif
