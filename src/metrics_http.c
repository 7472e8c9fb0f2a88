/* metrics_http.c - the metrics thread: an event loop with evhttp on the metrics_listen sockets,
 * a timer that samples the decisions into the last hour's per-minute history, and the two
 * pages. Everything here runs on that one thread. */
#include "metrics_http.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "metrics.h"
#include "stats_history.h"
#include "status_page.h"
#include "util.h"

/* How often the decisions are sampled into the history. */
#define METRICS_SAMPLE_EVERY_S 5

struct metrics_http {
	struct stats_view view;
	struct event_base *base;
	struct evhttp *http;
	struct event *sample_ev;
	pthread_t thread;
	bool started;
	struct stats_snapshot *snap;   /* reused by every request (one thread) */
	struct stats_history history;
};

static void history_sample(struct metrics_http *m, const struct stats_snapshot *s)
{
	uint64_t totals[HIST_KINDS] = {
		[HIST_ACCEPTED] = stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_NEUTRAL) +
				  stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_ACCEPT),
		[HIST_REJECTED] = stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_REJECT),
		[HIST_DEFERRED] = stats_decisions(s, ENGINE_STAGE_RCPT, CHECK_DEFER),
	};
	stats_history_sample(&m->history, s->now, totals);
}

static const struct stats_snapshot *metrics_snapshot(struct metrics_http *m)
{
	stats_snapshot_fill(&m->view, m->snap);
	history_sample(m, m->snap);
	return m->snap;
}

static void metrics_sample_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	metrics_snapshot(arg);
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct mbuf *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evbuffer_new();

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* the page needs nothing from anywhere: say so to the browser */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'");
	if (out != NULL && body->len > 0)
		evbuffer_add(out, body->buf, body->len);
	evhttp_send_reply(req, code, reason, out);
	if (out != NULL)
		evbuffer_free(out);
}

static void metrics_request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_http *m = arg;
	struct mbuf body = { 0 };
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	if (path == NULL)
		path = "/";
	if (strcmp(path, "/metrics") == 0) {
		metrics_render(metrics_snapshot(m), &body);
		reply(req, HTTP_OK, "OK", METRICS_CONTENT_TYPE, &body);
	} else if (strcmp(path, "/") == 0) {
		status_page_render(metrics_snapshot(m), &m->history, &body);
		reply(req, HTTP_OK, "OK", STATUS_PAGE_CONTENT_TYPE, &body);
	} else {
		mbuf_puts(&body, "Not found: try / or /metrics\n");
		reply(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8", &body);
	}
	mbuf_free(&body);
}

static void *metrics_thread(void *arg)
{
	struct metrics_http *m = arg;
	event_base_loop(m->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void metrics_http_free(struct metrics_http *m)
{
	if (m->sample_ev)
		event_free(m->sample_ev);
	if (m->http)
		evhttp_free(m->http); /* closes the bound sockets */
	if (m->base)
		event_base_free(m->base);
	free(m->snap);
	free(m);
}

struct metrics_http *metrics_http_start(const struct stats_view *view, const int *fds, size_t nfds, char *why,
					size_t whysz)
{
	static const struct timeval every = { METRICS_SAMPLE_EVERY_S, 0 };
	struct metrics_http *m = xcalloc(1, sizeof *m);
	size_t taken = 0;

	m->view = *view;
	m->snap = xmalloc(sizeof *m->snap);
	stats_history_init(&m->history);
	m->base = event_base_new();
	m->http = m->base ? evhttp_new(m->base) : NULL;
	if (m->http == NULL) {
		snprintf(why, whysz, "cannot create the HTTP server");
		goto fail;
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_gencb(m->http, metrics_request_cb, m);
	for (; taken < nfds; taken++) {
		if (evhttp_accept_socket_with_handle(m->http, fds[taken]) == NULL) {
			snprintf(why, whysz, "cannot serve HTTP on its socket");
			goto fail;
		}
	}
	m->sample_ev = event_new(m->base, -1, EV_PERSIST, metrics_sample_cb, m);
	event_add(m->sample_ev, &every);
	metrics_snapshot(m); /* the history's baseline */
	if (pthread_create(&m->thread, NULL, metrics_thread, m) != 0) {
		snprintf(why, whysz, "cannot start the metrics thread");
		goto fail;
	}
	m->started = true;
	return m;
fail:
	for (size_t i = taken; i < nfds; i++)
		close(fds[i]);
	metrics_http_free(m);
	return NULL;
}

void metrics_http_stop(struct metrics_http *m)
{
	if (m == NULL)
		return;
	if (m->started) {
		event_base_loopexit(m->base, NULL); /* thread-safe: evthread_use_pthreads() is on */
		pthread_join(m->thread, NULL);
	}
	metrics_http_free(m);
}
