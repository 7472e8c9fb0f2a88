/* server.c - the process around the workers: binds the listening sockets (one per worker and
 * address, SO_REUSEPORT, so the kernel spreads connections and no lock is taken on accept),
 * drops root, starts the workers, and handles signals on the main thread: SIGHUP reloads the
 * configuration atomically, SIGTERM/SIGINT stop accepting and let sessions finish. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend_health.h"
#include "backend_slots.h"
#include "budget_store.h"
#include "callout_rate.h"
#include "connlimit.h"
#include "control.h"
#include "engine_stats.h"
#include "log.h"
#include "metrics_http.h"
#include "policyd.h"
#include "runtime.h"
#include "stats.h"
#include "stats_snapshot.h"
#include "status.h"
#include "vcache.h"
#include "dns_cache.h"
#include "verify.h"
#include "util.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024

struct server {
	const char *config_path;
	struct engine_stats *stats;  /* decision counters, kept across reloads */
	struct budget_store *budgets; /* harvest budgets, kept across reloads */
	pthread_mutex_t rt_lock;
	struct bs_runtime *rt;
	struct connlimit *connlimit;
	struct connlimit *policy_limit;  /* policy service connections (policy_max_connections) */
	struct backend_health *health;
	struct backend_slots *slots;     /* deliver_max_connections, across workers */
	struct vcache *cache;            /* process-wide: an LMDB env is opened once per process */
	struct dns_cache *dns_cache;     /* process-wide: typed DNS answers, shared by the workers */
	struct runtime_graveyard *grave;
	struct bs_config *running;       /* the config the process started with: restart-only values */
	bool workers_freed;
	uint64_t start_time;
	struct worker *workers;
	unsigned nworkers;
	struct event_base *base; /* main thread: signals, reaping, the control socket */
	struct control *control; /* control_socket, or NULL */
	uint64_t loaded_at;      /* when srv->rt was made, s since the epoch */
	char last_reload[640];   /* "applied at ..." / "refused at ...: why"; "" before any */
	int exit_status;
	struct stats_process process;    /* generation, reloads */
	struct stats_worker *wstats;     /* one counter block per worker */
	struct stats_worker **wstats_list;
	int *metrics_fds;                /* metrics_listen sockets until the metrics thread has them */
	size_t nmetrics_fds;
	struct metrics_http *metrics;
};

/* The current generation, with a new reference for the caller (workers: any thread). */
static struct bs_runtime *server_runtime(struct server *srv)
{
	pthread_mutex_lock(&srv->rt_lock);
	struct bs_runtime *rt = runtime_ref(srv->rt);
	pthread_mutex_unlock(&srv->rt_lock);
	return rt;
}

static unsigned server_worker_count(const struct bs_config *cfg)
{
	if (cfg->workers > 0)
		return cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void sockaddr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		port = ntohs(s6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		port = ntohs(s4->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	}
}

static int listen_socket(const struct sockaddr *sa, socklen_t salen, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	/* replies are small and answer requests: no Nagle delay. Accepted sockets inherit it (Linux),
	 * which spares a setsockopt per connection. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, sa, salen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "bind: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Bind nworkers sockets on one address. With port 0 the first socket's port is reused so that
 * all workers share it. Appends to fds[w][*nfds]. */
static int listen_address(struct server *srv, struct sockaddr *sa, socklen_t salen, int **fds, size_t *nfds)
{
	char err[256], text[80];
	for (unsigned w = 0; w < srv->nworkers; w++) {
		int fd = listen_socket(sa, salen, err, sizeof err);
		sockaddr_text(sa, text, sizeof text);
		if (fd < 0) {
			log_err("listen %s: %s", text, err);
			return -1;
		}
		if (w == 0) {
			struct sockaddr_storage bound;
			socklen_t blen = sizeof bound;
			getsockname(fd, (struct sockaddr *)&bound, &blen);
			memcpy(sa, &bound, salen); /* the real port when the config said 0 */
		}
		fds[w][*nfds] = fd;
	}
	(*nfds)++;
	return 0;
}

/* Make room for one more socket per worker in fds[w][*nfds]. */
static void server_fds_grow(const struct server *srv, int **fds, size_t nfds, size_t *cap)
{
	if (nfds < *cap)
		return;
	*cap = *cap ? *cap * 2 : 4;
	for (unsigned w = 0; w < srv->nworkers; w++)
		fds[w] = xrealloc(fds[w], *cap * sizeof *fds[w]);
}

/* Resolve and bind one host:port (every address it names), one socket per worker; the ready
 * line gets " LABEL=ADDRESS" for each. */
static int server_listen_hostport(struct server *srv, const struct bs_hostport *hp, int **fds, size_t *nfds,
				  size_t *cap, const char *label, char *ready, size_t readylen)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	const char *host = (hp->host[0] == '\0' || strcmp(hp->host, "*") == 0) ? NULL : hp->host;
	int rc = getaddrinfo(host, hp->port, &hints, &res);
	if (rc != 0) {
		log_err("%s %s:%s: %s", label, hp->host, hp->port, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		server_fds_grow(srv, fds, *nfds, cap);
		if (listen_address(srv, ai->ai_addr, ai->ai_addrlen, fds, nfds) != 0) {
			freeaddrinfo(res);
			return -1;
		}
		char text[80];
		sockaddr_text(ai->ai_addr, text, sizeof text);
		size_t used = strlen(ready);
		snprintf(ready + used, readylen - used, " %s=%s", label, text);
	}
	freeaddrinfo(res);
	return 0;
}

/* Resolve and bind every `listen` entry; fds[w] becomes worker w's array of sockets. */
static int server_listen(struct server *srv, const struct bs_config *cfg, int **fds, size_t *nfds,
			 char *ready, size_t readylen)
{
	size_t cap = 0;
	for (size_t i = 0; i < cfg->listen.n; i++)
		if (server_listen_hostport(srv, &cfg->listen.items[i], fds, nfds, &cap, "listen", ready, readylen) != 0)
			return -1;
	return 0;
}

/* Owner and group of the policy service's unix sockets: the keys, else the user backstop runs
 * as (user =), else unchanged. */
static int server_policy_owner(const struct bs_config *cfg, uid_t *uid, gid_t *gid)
{
	const char *owner = cfg->policy_socket_owner ? cfg->policy_socket_owner : cfg->user;
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (owner != NULL) {
		struct passwd *pw = getpwnam(owner);
		if (pw == NULL) {
			log_err("%s: policy socket owner %s does not exist", cfg->path, owner);
			return -1;
		}
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
	if (cfg->policy_socket_group != NULL) {
		struct group *gr = getgrnam(cfg->policy_socket_group);
		if (gr == NULL) {
			log_err("%s: policy socket group %s does not exist", cfg->path, cfg->policy_socket_group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

/* Bind every `policy_listen` entry: host:port as for listen (one socket per worker), a unix
 * socket once, every worker accepting on its own duplicate of it. */
static int server_listen_policy(struct server *srv, const struct bs_config *cfg, int **fds, size_t *nfds,
				char *ready, size_t readylen)
{
	size_t cap = 0;
	char err[256];
	uid_t uid;
	gid_t gid;

	for (size_t i = 0; i < cfg->policy_listen.n; i++) {
		const struct bs_listener *l = &cfg->policy_listen.items[i];
		if (!l->is_unix) {
			if (server_listen_hostport(srv, &l->inet, fds, nfds, &cap, "policy_listen", ready, readylen) != 0)
				return -1;
			continue;
		}
		if (server_policy_owner(cfg, &uid, &gid) != 0)
			return -1;
		int fd = policyd_unix_listen(l->path, (unsigned)strtoul(cfg->policy_socket_mode, NULL, 8), uid, gid,
					     err, sizeof err);
		if (fd < 0) {
			log_err("policy_listen unix:%s: %s", l->path, err);
			return -1;
		}
		server_fds_grow(srv, fds, *nfds, &cap);
		for (unsigned w = 0; w < srv->nworkers; w++)
			fds[w][*nfds] = w == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
		(*nfds)++;
		size_t used = strlen(ready);
		snprintf(ready + used, readylen - used, " policy_listen=unix:%s", l->path);
	}
	return 0;
}

static int server_drop_privileges(const struct bs_config *cfg)
{
	if (geteuid() != 0)
		return 0;
	if (cfg->user == NULL) {
		log_warn("running as root: set user = in [gateway] to drop privileges after binding");
		return 0;
	}
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL) {
		log_err("%s: user %s does not exist", cfg->path, cfg->user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		log_err("cannot switch to user %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_err("privileges could not be dropped for good");
		return -1;
	}
	log_info("running as user %s (uid %u)", cfg->user, (unsigned)pw->pw_uid);
	return 0;
}

static bool hostport_lists_equal(const struct bs_hostport_list *a, const struct bs_hostport_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->items[i].host, b->items[i].host) || strcmp(a->items[i].port, b->items[i].port))
			return false;
	return true;
}

static bool listener_lists_equal(const struct bs_listener_list *a, const struct bs_listener_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct bs_listener *x = &a->items[i], *y = &b->items[i];
		if (x->is_unix != y->is_unix || strcmp(x->path, y->path) || strcmp(x->inet.host, y->inet.host) ||
		    strcmp(x->inet.port, y->inet.port))
			return false;
	}
	return true;
}

static bool config_verifies(const struct bs_config *cfg)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		if (cfg->domains[i].verify.n > 0)
			return true;
	return false;
}

static bool str_equal(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Names (into out) the restart-only keys of cfg that differ from what the process runs with:
 * the config it started with, not the last file loaded, so that a change not yet applied is
 * reported at every reload and restoring the running value is not. Returns out[0] != 0. */
static bool server_restart_keys(const struct server *srv, const struct bs_config *cfg, char *out, size_t len)
{
	const struct bs_config *run = srv->running;
	bool cache_needed = srv->cache == NULL && config_verifies(cfg);

	out[0] = '\0';
	if (!hostport_lists_equal(&run->listen, &cfg->listen))
		strbuf_append(out, len, " listen");
	if (!listener_lists_equal(&run->policy_listen, &cfg->policy_listen) ||
	    !str_equal(run->policy_socket_mode, cfg->policy_socket_mode) ||
	    !str_equal(run->policy_socket_owner, cfg->policy_socket_owner) ||
	    !str_equal(run->policy_socket_group, cfg->policy_socket_group))
		strbuf_append(out, len, " policy_listen");
	if (srv->nworkers != server_worker_count(cfg))
		strbuf_append(out, len, " workers");
	if (!str_equal(run->cache, cfg->cache) || cache_needed)
		strbuf_append(out, len, " cache");
	if (!str_equal(run->user, cfg->user))
		strbuf_append(out, len, " user");
	if (run->harvest_max_entries != cfg->harvest_max_entries)
		strbuf_append(out, len, " harvest_max_entries");
	if (!hostport_lists_equal(&run->metrics_listen, &cfg->metrics_listen))
		strbuf_append(out, len, " metrics_listen");
	if (!str_equal(run->control_socket, cfg->control_socket) ||
	    !str_equal(run->control_socket_mode, cfg->control_socket_mode) ||
	    !str_equal(run->control_socket_group, cfg->control_socket_group))
		strbuf_append(out, len, " control_socket");
	return out[0] != '\0';
}

/* The resolver of a worker's loop, for the engine's checks (engine_dns_fn). */
static struct dns_resolver *server_dns_cb(void *arg, struct event_base *base)
{
	struct server *srv = arg;

	for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
		if (srv->workers[i].base == base)
			return srv->workers[i].dns;
	return NULL;
}

static struct bs_runtime *server_new_runtime(struct server *srv, struct bs_config *cfg, char *why, size_t whysz)
{
	struct runtime_opts o = { .open_sources = true, .cache = srv->cache, .grave = srv->grave,
				  .stats = srv->stats, .dns = server_dns_cb, .dns_arg = srv,
				  .budgets = srv->budgets };
	return runtime_new(cfg, &o, why, whysz);
}

/* 1 at start, +1 per applied reload. */
static unsigned server_generation(struct server *srv)
{
	return (unsigned)atomic_load(&srv->process.generation);
}

/* Note the outcome of a reload: the counters (metrics, status page) and the text backstop
 * status shows. */
static void server_reload_outcome(struct server *srv, bool applied, const char *why)
{
	char when[32];
	uint64_t now = (uint64_t)time(NULL);

	stats_process_reloaded(&srv->process, applied, now);
	status_time(now, when, sizeof when);
	pthread_mutex_lock(&srv->rt_lock);
	snprintf(srv->last_reload, sizeof srv->last_reload, "%s at %s%s%s", applied ? "applied" : "refused", when,
		 why ? ": " : "", why ? why : "");
	pthread_mutex_unlock(&srv->rt_lock);
}

/* SIGHUP or `backstop reload`: load the file and swap the generation in, or keep the running one.
 * report (or NULL) gets what the admin should read; the log gets it too. CONTROL_OK or
 * CONTROL_FAILED. */
static int server_reload(struct server *srv, FILE *report)
{
	struct config_errors errs = { 0 };
	char why[512];

	log_notice("reloading %s", srv->config_path);
	struct bs_config *cfg = config_load(srv->config_path, &errs);
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.n; i++) {
			log_err("reload refused: %s", errs.msgs[i]);
			if (report)
				fprintf(report, "%s\n", errs.msgs[i]);
		}
		log_err("reload refused: keeping the running configuration");
		server_reload_outcome(srv, false, errs.n ? errs.msgs[0] : "the file has errors");
		if (report)
			fprintf(report, "reload refused: %s has %zu error%s; the running configuration (generation %u) is kept\n",
				srv->config_path, errs.n, errs.n == 1 ? "" : "s", server_generation(srv));
		config_errors_free(&errs);
		return CONTROL_FAILED;
	}
	struct bs_runtime *rt = server_new_runtime(srv, cfg, why, sizeof why);
	if (rt == NULL) {
		log_err("reload refused: %s; keeping the running configuration", why);
		server_reload_outcome(srv, false, why);
		if (report)
			fprintf(report, "%s\nreload refused: the running configuration (generation %u) is kept\n", why,
				server_generation(srv));
		return CONTROL_FAILED;
	}
	pthread_mutex_lock(&srv->rt_lock);
	struct bs_runtime *old = srv->rt;
	srv->rt = rt;
	srv->loaded_at = (uint64_t)time(NULL);
	pthread_mutex_unlock(&srv->rt_lock);
	server_reload_outcome(srv, true, NULL);
	char keys[128];
	if (server_restart_keys(srv, rt->cfg, keys, sizeof keys)) {
		log_warn("reload: %s: the new value of%s differs from the running one and takes effect at the next restart",
			 srv->config_path, keys);
		if (report)
			fprintf(report, "warning: the new value of%s takes effect at the next restart\n", keys);
	}
	log_notice("configuration reloaded: %zu domains", rt->cfg->ndomains);
	if (report)
		fprintf(report, "reload applied: %s, generation %u, %zu domains\n", srv->config_path, server_generation(srv),
			rt->cfg->ndomains);
	runtime_unref(old);
	return CONTROL_OK;
}

static void server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	if (sig == SIGHUP) {
		log_notice("SIGHUP");
		server_reload(srv, NULL);
		return;
	}
	log_notice("%s: no longer accepting; letting sessions finish", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_stop(&srv->workers[i]);
	event_base_loopexit(srv->base, NULL);
}

static struct bs_runtime *server_runtime_cb(void *arg)
{
	return server_runtime(arg);
}

/* What a stats snapshot is read from (the metrics thread and backstop status). */
static void server_stats_view(struct server *srv, struct stats_view *view)
{
	*view = (struct stats_view){ .workers = srv->wstats_list, .nworkers = srv->nworkers, .process = &srv->process,
				     .engine = srv->stats, .health = srv->health, .slots = srv->slots,
				     .cache = srv->cache, .runtime = server_runtime_cb, .runtime_arg = srv };
}

/* backstop status: the snapshot the metrics render, and what only the server knows. */
static void server_status_cb(void *arg, FILE *out)
{
	struct server *srv = arg;
	struct stats_view view;
	struct stats_snapshot *snap = xmalloc(sizeof *snap);
	char last[sizeof srv->last_reload];

	server_stats_view(srv, &view);
	stats_snapshot_fill(&view, snap);
	pthread_mutex_lock(&srv->rt_lock);
	struct bs_runtime *rt = runtime_ref(srv->rt);
	uint64_t loaded_at = srv->loaded_at;
	memcpy(last, srv->last_reload, sizeof last);
	pthread_mutex_unlock(&srv->rt_lock);
	struct status_view v = { .snap = snap, .config_path = rt->cfg->path, .ndomains = rt->cfg->ndomains,
				 .loaded_at = loaded_at, .last_reload = last[0] ? last : NULL,
				 .policy_limit = srv->policy_limit };
	status_print(&v, out);
	runtime_unref(rt);
	free(snap);
}

static int server_reload_cb(void *arg, FILE *report)
{
	return server_reload(arg, report);
}

/* Owner, group and allowed group of the control socket: the socket belongs to the user backstop
 * runs as (user =, when started as root) and to control_socket_group, else to that user's group;
 * allowed (-1) means the process's group once privileges are dropped. */
static int server_control_owner(const struct bs_config *cfg, uid_t *uid, gid_t *gid, gid_t *allowed)
{
	*uid = (uid_t)-1;
	*gid = *allowed = (gid_t)-1;
	if (cfg->user != NULL && geteuid() == 0) {
		struct passwd *pw = getpwnam(cfg->user);
		if (pw == NULL)
			return -1; /* server_drop_privileges says so */
		*uid = pw->pw_uid;
		*gid = *allowed = pw->pw_gid;
	}
	if (cfg->control_socket_group != NULL) {
		struct group *gr = getgrnam(cfg->control_socket_group);
		if (gr == NULL) {
			log_warn("%s: control_socket_group %s does not exist; no control socket", cfg->path,
				 cfg->control_socket_group);
			return -1;
		}
		*gid = *allowed = gr->gr_gid;
	}
	return 0;
}

/* Make the control socket (root, before the drop). Never fatal: mail flows without it. */
static void server_control_open(struct server *srv, const struct bs_config *cfg)
{
	char err[256];
	uid_t uid;
	gid_t gid, allowed;

	if (cfg->control_socket[0] == '\0' || server_control_owner(cfg, &uid, &gid, &allowed) != 0)
		return;
	srv->control = control_open(cfg->control_socket, (unsigned)strtoul(cfg->control_socket_mode, NULL, 8), uid,
				    gid, allowed, err, sizeof err);
	if (srv->control == NULL)
		log_warn("control_socket %s: %s; backstop status, reload and cache cannot reach this daemon%s",
			 cfg->control_socket, err,
			 strstr(err, "No such file") ? " (its directory must exist: systemd's RuntimeDirectory= makes it)" : "");
}

static void server_control_start(struct server *srv)
{
	struct control_deps deps = { .base = srv->base, .cache = srv->cache, .runtime = server_runtime_cb,
				     .status = server_status_cb, .reload = server_reload_cb, .arg = srv };
	if (srv->control == NULL)
		return;
	if (control_start(srv->control, &deps) != 0) {
		log_warn("control_socket: cannot serve it");
		control_close(srv->control);
		srv->control = NULL;
		return;
	}
	log_notice("ready control=unix:%s", srv->running->control_socket);
}

static int server_start_workers(struct server *srv, int **fds, size_t nfds, int **pfds, size_t npfds)
{
	struct policyd_deps deps = { .runtime = server_runtime_cb, .runtime_arg = srv, .limit = srv->policy_limit,
				     .start_time = srv->start_time };
	struct worker_shared shared = { .runtime = server_runtime_cb, .runtime_arg = srv, .connlimit = srv->connlimit,
					.health = srv->health, .slots = srv->slots, .start_time = srv->start_time,
					.dns_cache = srv->dns_cache, .stats = srv->wstats };

	srv->workers = xcalloc(srv->nworkers, sizeof *srv->workers);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		if (worker_init(&srv->workers[i], i, &shared, fds[i], nfds) != 0) {
			log_err("worker %u: cannot create its event loop", i);
			return -1;
		}
		deps.worker_id = i;
		int *mine = pfds[i];
		pfds[i] = NULL; /* taken over, also on failure */
		if (npfds > 0 && worker_add_policyd(&srv->workers[i], &deps, mine, npfds) != 0) {
			log_err("worker %u: cannot listen for the policy service", i);
			return -1;
		}
	}
	for (unsigned i = 0; i < srv->nworkers; i++) {
		if (worker_start(&srv->workers[i]) != 0) {
			log_err("worker %u: cannot start thread", i);
			return -1;
		}
	}
	return 0;
}

static void server_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd;
	(void)what;
	runtime_graveyard_reap(srv->grave, false);
}

static int server_main_loop(struct server *srv)
{
	static const struct timeval second = { 1, 0 };
	struct event *reap = event_new(srv->base, -1, EV_PERSIST, server_reap_cb, srv);

	evtimer_add(reap, &second);
	event_base_dispatch(srv->base);
	event_free(reap);
	metrics_http_stop(srv->metrics); /* before the workers: it reads what they count */
	srv->metrics = NULL;
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_join(&srv->workers[i]);
	return 0;
}

/* Loops have stopped: cancel what generations still run on them, then free it all. */
static void server_teardown(struct server *srv)
{
	runtime_unref(srv->rt); /* into the graveyard with the others */
	srv->rt = NULL;
	for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
		runtime_graveyard_shutdown_base(srv->grave, srv->workers[i].base);
	runtime_graveyard_free(srv->grave);
	for (unsigned i = 0; srv->workers && i < srv->nworkers; i++) {
		vcache_forget_base(srv->cache, srv->workers[i].base); /* a Redis cache's connection */
		budget_store_forget_base(srv->budgets, srv->workers[i].base); /* and the budgets' */
		worker_free(&srv->workers[i]);
	}
	vcache_close(srv->cache);
	engine_stats_free(srv->stats);
	dns_cache_free(srv->dns_cache);
	callout_rate_share_store(NULL);
	budget_store_free(srv->budgets);
}

/* Bind every metrics_listen address (one socket each, served by the metrics thread). */
static int server_listen_metrics(struct server *srv, const struct bs_config *cfg, char *ready, size_t readylen)
{
	char err[256], text[80];
	for (size_t i = 0; i < cfg->metrics_listen.n; i++) {
		const struct bs_hostport *hp = &cfg->metrics_listen.items[i];
		struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
		struct addrinfo *res = NULL;
		const char *host = (hp->host[0] == '\0' || strcmp(hp->host, "*") == 0) ? NULL : hp->host;
		int rc = getaddrinfo(host, hp->port, &hints, &res);
		if (rc != 0) {
			log_err("metrics_listen %s:%s: %s", hp->host, hp->port, gai_strerror(rc));
			return -1;
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = listen_socket(ai->ai_addr, ai->ai_addrlen, err, sizeof err);
			struct sockaddr_storage bound;
			socklen_t blen = sizeof bound;
			if (fd < 0) {
				sockaddr_text(ai->ai_addr, text, sizeof text);
				log_err("metrics_listen %s: %s", text, err);
				freeaddrinfo(res);
				return -1;
			}
			getsockname(fd, (struct sockaddr *)&bound, &blen);
			sockaddr_text((struct sockaddr *)&bound, text, sizeof text);
			srv->metrics_fds = xrealloc(srv->metrics_fds, (srv->nmetrics_fds + 1) * sizeof *srv->metrics_fds);
			srv->metrics_fds[srv->nmetrics_fds++] = fd;
			size_t used = strlen(ready);
			snprintf(ready + used, readylen - used, " metrics_listen=%s", text);
		}
		freeaddrinfo(res);
	}
	return 0;
}

/* The counters the workers write, and the process's facts; before the workers start. */
static void server_stats_init(struct server *srv)
{
	stats_process_init(&srv->process, srv->start_time);
	srv->wstats = aligned_alloc(64, srv->nworkers * sizeof *srv->wstats);
	if (srv->wstats == NULL)
		abort();
	memset(srv->wstats, 0, srv->nworkers * sizeof *srv->wstats);
	srv->wstats_list = xcalloc(srv->nworkers, sizeof *srv->wstats_list);
	for (unsigned i = 0; i < srv->nworkers; i++)
		srv->wstats_list[i] = &srv->wstats[i];
}

/* Serve metrics_listen from its own thread (the sockets are taken over). */
static int server_start_metrics(struct server *srv)
{
	char why[256];
	if (srv->nmetrics_fds == 0)
		return 0;
	struct stats_view view;
	server_stats_view(srv, &view);
	srv->metrics = metrics_http_start(&view, srv->metrics_fds, srv->nmetrics_fds, why, sizeof why);
	srv->nmetrics_fds = 0; /* taken over */
	if (srv->metrics == NULL) {
		log_err("metrics_listen: %s", why);
		return -1;
	}
	return 0;
}

/* At exit: the policy service's unix sockets go (when the directory still lets us). */
static void server_unlink_policy_sockets(const struct bs_config *cfg)
{
	for (size_t i = 0; i < cfg->policy_listen.n; i++)
		if (cfg->policy_listen.items[i].is_unix && unlink(cfg->policy_listen.items[i].path) != 0 &&
		    errno != ENOENT)
			log_debug("unlink %s: %s", cfg->policy_listen.items[i].path, strerror(errno));
}

/* glibc gives a thread's free heap top back to the kernel once it exceeds 128 KB: a worker
 * whose sessions come and go then faults the same pages in again for every burst of pipelined
 * RCPTs (measured: a third of the CPU of a 50-RCPT session). Keep up to this much. */
#define SERVER_MALLOC_TRIM_THRESHOLD (16 * 1024 * 1024)

int server_run(const char *config_path, struct bs_config *cfg)
{
	struct server srv = { .config_path = config_path, .start_time = (uint64_t)time(NULL),
			      .stats = engine_stats_new() };
	char why[512], ready[2048] = "";
	int status = 1;

	mallopt(M_TRIM_THRESHOLD, SERVER_MALLOC_TRIM_THRESHOLD);

	pthread_mutex_init(&srv.rt_lock, NULL);
	srv.grave = runtime_graveyard_new();
	srv.running = config_ref(cfg);
	if (config_verifies(cfg) && (srv.cache = vcache_open(cfg->cache, cfg, why, sizeof why)) == NULL) {
		log_err("%s:%u: %s", cfg->path, config_gateway_line(cfg, "cache"), why); /* why names the cache */
		config_unref(cfg);
		config_unref(srv.running);
		runtime_graveyard_free(srv.grave);
		engine_stats_free(srv.stats);
		return 1;
	}
	if ((srv.budgets = budget_store_open(cfg, why, sizeof why)) == NULL) { /* Redis when the cache is */
		log_err("%s:%u: %s", cfg->path, config_gateway_line(cfg, "cache"), why);
		config_unref(cfg);
		config_unref(srv.running);
		vcache_close(srv.cache);
		runtime_graveyard_free(srv.grave);
		engine_stats_free(srv.stats);
		return 1;
	}
	callout_rate_share_store(srv.budgets); /* callout_max_rate too, when the budgets are shared */
	srv.rt = server_new_runtime(&srv, cfg, why, sizeof why);
	srv.loaded_at = (uint64_t)time(NULL);
	if (srv.rt == NULL) {
		log_err("%s", why);
		config_unref(srv.running);
		vcache_close(srv.cache);
		runtime_graveyard_free(srv.grave);
		engine_stats_free(srv.stats);
		callout_rate_share_store(NULL);
		budget_store_free(srv.budgets);
		return 1;
	}
	srv.connlimit = connlimit_new();
	srv.dns_cache = dns_cache_new(DNS_CACHE_DEFAULT_ENTRIES);
	srv.health = backend_health_new();
	srv.slots = backend_slots_new();
	srv.nworkers = server_worker_count(cfg);
	server_stats_init(&srv);
	srv.base = event_base_new();
	/* signal handlers before anything can connect: a TERM right after "ready" must be graceful */
	struct event *sigs[3];
	const int signums[3] = { SIGHUP, SIGTERM, SIGINT };
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(srv.base, signums[i], server_signal_cb, &srv);
		evsignal_add(sigs[i], NULL);
	}
	int **fds = xcalloc(srv.nworkers, sizeof *fds), **pfds = xcalloc(srv.nworkers, sizeof *pfds);
	size_t nfds = 0, npfds = 0;
	bool policy_bound = false; /* our unix sockets are there: remove them at exit */
	srv.policy_limit = connlimit_new();
	if (server_listen(&srv, cfg, fds, &nfds, ready, sizeof ready) != 0 ||
	    server_listen_policy(&srv, cfg, pfds, &npfds, ready, sizeof ready) != 0 ||
	    server_listen_metrics(&srv, cfg, ready, sizeof ready) != 0)
		goto out;
	policy_bound = true;
	server_control_open(&srv, cfg);
	if (server_drop_privileges(cfg) != 0)
		goto out;
	if (server_start_metrics(&srv) != 0 || server_start_workers(&srv, fds, nfds, pfds, npfds) != 0)
		goto out;
	server_control_start(&srv);
	/* one line per listener: scripts and tests wait for "ready listen=HOST:PORT" */
	for (char *tok = strtok(ready, " "); tok != NULL; tok = strtok(NULL, " "))
		log_notice("ready %s", tok);
	log_notice("started: %u workers, %zu domains", srv.nworkers, cfg->ndomains);
	status = server_main_loop(&srv);
	control_close(srv.control);
	srv.control = NULL;
	server_teardown(&srv);
	log_notice("stopped");
	srv.workers_freed = true;
out:
	metrics_http_stop(srv.metrics);
	if (srv.workers == NULL) {
		for (unsigned w = 0; w < srv.nworkers; w++) {
			for (size_t i = 0; fds[w] != NULL && i < nfds; i++)
				close(fds[w][i]);
			free(fds[w]);
		}
	}
	free(fds);
	for (unsigned w = 0; w < srv.nworkers; w++) {
		for (size_t i = 0; pfds[w] != NULL && i < npfds; i++)
			close(pfds[w][i]);
		free(pfds[w]);
	}
	free(pfds);
	if (policy_bound)
		server_unlink_policy_sockets(cfg);
	control_close(srv.control);
	if (!srv.workers_freed) {
		runtime_unref(srv.rt);
		runtime_graveyard_free(srv.grave);
		vcache_close(srv.cache);
		dns_cache_free(srv.dns_cache);
		engine_stats_free(srv.stats);
		callout_rate_share_store(NULL);
		budget_store_free(srv.budgets);
	}
	free(srv.workers);
	for (size_t i = 0; i < srv.nmetrics_fds; i++)
		close(srv.metrics_fds[i]);
	free(srv.metrics_fds);
	free(srv.wstats);
	free(srv.wstats_list);
	/* Freeing the signal events puts the default actions back: a second TERM while the process
	 * is already on its way out must not turn a clean exit into death by signal, so they are
	 * blocked across the switch to SIG_IGN (a pending one is then discarded). */
	sigset_t block, old;
	sigemptyset(&block);
	for (int i = 0; i < 3; i++)
		sigaddset(&block, signums[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (int i = 0; i < 3; i++) {
		event_free(sigs[i]);
		signal(signums[i], SIG_IGN);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	event_base_free(srv.base);
	connlimit_free(srv.connlimit);
	connlimit_free(srv.policy_limit);
	backend_health_free(srv.health);
	config_unref(srv.running);
	backend_slots_free(srv.slots);
	return status;
}
