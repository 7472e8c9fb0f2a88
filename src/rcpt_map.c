/* rcpt_map.c - the map:PATH recipient source: a Postfix relay_recipients file held in memory
 * (rcpt_map_table.c) and reloaded when it changes. A watcher thread per map waits on inotify
 * for the file's directory (so an atomic rename-replace is seen as well as an in-place rewrite),
 * and checks inode/size/mtime every second as a fallback. Parsing happens on that thread (or on
 * the main thread for reload()); the new table is swapped in under a mutex held only for the
 * pointer, and a refcount frees the old one when its last reader is done. A file that cannot be
 * read or parsed keeps the previous table and the error is logged with FILE:LINE. */
#include "rcpt.h"
#include "rcpt_map.h"
#include "rcpt_map_table.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MAP_POLL_MS 1000

struct map_version {
	atomic_uint refs;
	struct map_table *table;
};

struct rcpt_map {
	char *path;
	char *spec;             /* "map:PATH", the source name in answers */
	char *dir, *file;       /* for inotify: the directory watched, the name looked for */
	pthread_mutex_t swap_lock; /* held only to read or swap cur */
	struct map_version *cur;   /* NULL until a load succeeded */
	char error[RCPT_REASON_MAX]; /* why nothing is loaded (cur == NULL); under swap_lock */
	pthread_mutex_t load_lock; /* serialises loads (watcher vs reload()) */
	pthread_cond_t load_cond;  /* signalled after each attempt, under load_lock */
	struct stat loaded_st, tried_st, pending_st;
	unsigned attempts, failures; /* under load_lock */
	uint64_t last_load_time;     /* wall clock, seconds, of the last attempt (under load_lock) */
	bool last_load_ok;
	atomic_ulong lookups, found;
	int inotify_fd;            /* -1 if unavailable: stat polling only */
	int stop_pipe[2];
	pthread_t watcher;
};

static void map_version_release(struct map_version *v)
{
	if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
		map_table_free(v->table);
		free(v);
	}
}

static struct map_version *map_acquire(struct rcpt_map *m, char *error, size_t errsz)
{
	pthread_mutex_lock(&m->swap_lock);
	struct map_version *v = m->cur;
	if (v)
		atomic_fetch_add(&v->refs, 1);
	else
		snprintf(error, errsz, "%s", m->error);
	pthread_mutex_unlock(&m->swap_lock);
	return v;
}

/* Read the whole file; returns its bytes (caller frees) or NULL with errno set. */
static char *map_read_file(const char *path, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		int e = S_ISREG(st->st_mode) ? errno : EINVAL;
		close(fd);
		errno = e;
		return NULL;
	}
	size_t cap = (size_t)st->st_size + 1, n = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (n == cap)
			buf = xrealloc(buf, cap *= 2); /* the file grew while we read it */
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = errno;
			close(fd);
			if (r < 0) {
				free(buf);
				errno = e;
				return NULL;
			}
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
}

/* Read and parse path: the table, or NULL with "PATH: cannot read: ..." or "PATH:LINE: ..." */
static struct map_table *map_file_parse(const char *path, struct stat *st, char *why, size_t whysz)
{
	size_t len = 0;
	char *buf = map_read_file(path, &len, st);
	if (buf == NULL) {
		snprintf(why, whysz, "%s: cannot read: %s", path, strerror(errno));
		return NULL;
	}
	struct map_table *t = map_table_parse(path, buf, len, why, whysz);
	free(buf);
	return t;
}

int rcpt_map_check(const char *path, char *why, size_t whysz)
{
	struct stat st;
	struct map_table *t = map_file_parse(path, &st, why, whysz);
	map_table_free(t);
	return t ? 0 : -1;
}

static bool map_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void map_swap(struct rcpt_map *m, struct map_table *t)
{
	struct map_version *v = xcalloc(1, sizeof *v);
	atomic_init(&v->refs, 1);
	v->table = t;
	pthread_mutex_lock(&m->swap_lock);
	struct map_version *old = m->cur;
	m->cur = v;
	pthread_mutex_unlock(&m->swap_lock);
	map_version_release(old);
}

/* Load the file now; on failure keep what is served. Returns 0 or -1. Any thread but a worker. */
static int map_load(struct rcpt_map *m)
{
	char why[RCPT_REASON_MAX];
	struct stat st;
	uint64_t t0 = now_ms();
	struct map_table *t;

	memset(&st, 0, sizeof st);
	t = map_file_parse(m->path, &st, why, sizeof why);

	pthread_mutex_lock(&m->load_lock);
	m->attempts++;
	m->last_load_time = (uint64_t)time(NULL);
	m->last_load_ok = t != NULL;
	m->tried_st = st;
	if (t) {
		m->loaded_st = st;
		log_info("map %s: loaded %zu entries in %llu ms", m->path, map_table_entries(t),
			 (unsigned long long)(now_ms() - t0));
		map_swap(m, t);
	} else {
		m->failures++;
		pthread_mutex_lock(&m->swap_lock);
		bool serving = m->cur != NULL;
		if (!serving)
			snprintf(m->error, sizeof m->error, "%s", why);
		pthread_mutex_unlock(&m->swap_lock);
		log_err("%s; %s", why, serving ? "keeping the previous version" : "its lookups answer \"unavailable\"");
	}
	pthread_cond_broadcast(&m->load_cond);
	pthread_mutex_unlock(&m->load_lock);
	return t ? 0 : -1;
}

/* Fallback without inotify events: reload a file whose identity changed and then stayed the
 * same for one poll interval (a writer that is not done yet is not read half-way). */
static void map_check_stat(struct rcpt_map *m)
{
	struct stat st;

	if (stat(m->path, &st) != 0)
		return; /* gone: keep serving; it is loaded again when it comes back */
	pthread_mutex_lock(&m->load_lock);
	bool known = map_same_file(&st, &m->loaded_st) || map_same_file(&st, &m->tried_st);
	bool settled = map_same_file(&st, &m->pending_st);
	m->pending_st = st;
	pthread_mutex_unlock(&m->load_lock);
	if (!known && settled)
		map_load(m);
}

/* Drain inotify events; true if one concerns our file being written or renamed into place. */
static bool map_inotify_read(struct rcpt_map *m)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool ours = false;
	ssize_t n;

	while ((n = read(m->inotify_fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
			if (ev->len && strcmp(ev->name, m->file) == 0)
				ours = true;
			p += sizeof *ev + ev->len;
		}
	}
	return ours;
}

static void *map_watch_main(void *arg)
{
	struct rcpt_map *m = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = m->stop_pipe[0], .events = POLLIN },
				       { .fd = m->inotify_fd, .events = POLLIN } };
		int r = poll(p, m->inotify_fd >= 0 ? 2 : 1, MAP_POLL_MS);
		if (r > 0 && p[0].revents)
			return NULL;
		if (r > 0 && (p[1].revents & POLLIN) && map_inotify_read(m))
			map_load(m);
		else
			map_check_stat(m);
	}
}

static void map_split_path(struct rcpt_map *m)
{
	const char *slash = strrchr(m->path, '/');

	if (slash == NULL) {
		m->dir = xstrdup(".");
		m->file = xstrdup(m->path);
	} else {
		m->dir = slash == m->path ? xstrdup("/") : xstrndup(m->path, (size_t)(slash - m->path));
		m->file = xstrdup(slash + 1);
	}
}

static void map_watch_start(struct rcpt_map *m)
{
	m->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (m->inotify_fd >= 0 &&
	    inotify_add_watch(m->inotify_fd, m->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB) < 0) {
		log_notice("map %s: cannot watch %s (%s); checking the file every second instead",
			   m->path, m->dir, strerror(errno));
		close(m->inotify_fd);
		m->inotify_fd = -1;
	}
	pthread_create(&m->watcher, NULL, map_watch_main, m);
}

static int rcpt_map_check_spec(const char *arg, const char **why)
{
	if (arg[0] == '\0') {
		*why = "map: needs a file name (map:/etc/backstop/recipients)";
		return -1;
	}
	return 0;
}

static void *rcpt_map_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	if (arg[0] == '\0' || arg[strlen(arg) - 1] == '/') {
		snprintf(why, whysz, "map: needs a file name (map:/path/to/relay_recipients)");
		return NULL;
	}
	struct rcpt_map *m = xcalloc(1, sizeof *m);
	m->path = xstrdup(arg);
	m->spec = xmalloc(strlen(arg) + 5);
	sprintf(m->spec, "map:%s", arg);
	map_split_path(m);
	pthread_mutex_init(&m->swap_lock, NULL);
	pthread_mutex_init(&m->load_lock, NULL);
	pthread_cond_init(&m->load_cond, NULL);
	if (pipe2(m->stop_pipe, O_CLOEXEC) != 0) {
		snprintf(why, whysz, "map: pipe: %s", strerror(errno));
		free(m->path), free(m->spec), free(m->dir), free(m->file), free(m);
		return NULL;
	}
	map_load(m); /* a failure is not fatal: the watcher loads the file once it is fixed */
	map_watch_start(m);
	return m;
}

static struct rcpt_query *rcpt_map_lookup(void *state, struct event_base *base, const struct rcpt_addr *addr,
					  rcpt_answer_cb done, void *arg)
{
	struct rcpt_map *m = state;
	struct rcpt_answer ans = { .verdict = RCPT_INVALID, .source = m->spec };
	struct map_version *v = map_acquire(m, ans.reason, sizeof ans.reason);

	atomic_fetch_add_explicit(&m->lookups, 1, memory_order_relaxed);
	if (v == NULL) {
		ans.verdict = RCPT_UNAVAILABLE;
	} else {
		char catchall[SMTP_DOMAIN_MAX + 2];
		snprintf(catchall, sizeof catchall, "@%s", rcpt_addr_domain(addr));
		bool cs = addr->case_sensitive_local;
		if (map_table_has(v->table, addr->full, cs) || (addr->base[0] && map_table_has(v->table, addr->base, cs)))
			ans.verdict = RCPT_VALID;
		else if (map_table_has(v->table, catchall, true))
			ans.verdict = RCPT_VALID, ans.catchall = true;
		snprintf(ans.reason, sizeof ans.reason, "%s", ans.verdict == RCPT_INVALID ? "no such entry" :
			 ans.catchall ? "catch-all entry" : "entry found");
		map_version_release(v);
	}
	if (ans.verdict == RCPT_VALID)
		atomic_fetch_add_explicit(&m->found, 1, memory_order_relaxed);
	done(arg, &ans);
	return NULL;
}

static void rcpt_map_cancel(struct rcpt_query *q) { (void)q; } /* lookups answer synchronously */

static int rcpt_map_reload(void *state) { return map_load(state); }

void rcpt_map_status(void *state, struct rcpt_map_status *out)
{
	struct rcpt_map *m = state;
	char ignored[RCPT_REASON_MAX];

	pthread_mutex_lock(&m->load_lock);
	out->attempts = m->attempts;
	out->failures = m->failures;
	out->last_load_time = m->last_load_time;
	out->last_load_ok = m->last_load_ok;
	pthread_mutex_unlock(&m->load_lock);
	struct map_version *v = map_acquire(m, ignored, sizeof ignored);
	out->loaded = v != NULL;
	out->entries = v ? map_table_entries(v->table) : 0;
	map_version_release(v);
}

bool rcpt_map_wait_attempts(void *state, unsigned attempts, unsigned timeout_ms)
{
	struct rcpt_map *m = state;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&m->load_lock);
	int rc = 0;
	while (m->attempts <= attempts && rc == 0)
		rc = pthread_cond_timedwait(&m->load_cond, &m->load_lock, &until);
	bool ok = m->attempts > attempts;
	pthread_mutex_unlock(&m->load_lock);
	return ok;
}

static void rcpt_map_stats(void *state, FILE *out)
{
	struct rcpt_map *m = state;
	struct rcpt_map_status st;

	rcpt_map_status(m, &st);
	fprintf(out, "map_path=%s\nmap_loaded=%s\nmap_entries=%zu\nmap_loads=%u\nmap_load_failures=%u\n"
		"map_lookups=%lu\nmap_found=%lu\nmap_last_load_time=%llu\nmap_last_load_ok=%s\n", m->path,
		st.loaded ? "yes" : "no", st.entries, st.attempts, st.failures, atomic_load(&m->lookups),
		atomic_load(&m->found), (unsigned long long)st.last_load_time, st.last_load_ok ? "yes" : "no");
}

static void rcpt_map_close(void *state)
{
	struct rcpt_map *m = state;

	if (m == NULL)
		return;
	(void)!write(m->stop_pipe[1], "x", 1);
	pthread_join(m->watcher, NULL);
	close(m->stop_pipe[0]);
	close(m->stop_pipe[1]);
	if (m->inotify_fd >= 0)
		close(m->inotify_fd);
	map_version_release(m->cur);
	pthread_mutex_destroy(&m->swap_lock);
	pthread_mutex_destroy(&m->load_lock);
	pthread_cond_destroy(&m->load_cond);
	free(m->path), free(m->spec), free(m->dir), free(m->file), free(m);
}

const struct rcpt_source_type rcpt_map_type = {
	.prefix = "map",
	.syntax = "map:FILE",
	.check_spec = rcpt_map_check_spec,
	.local = true,
	.open = rcpt_map_open,
	.lookup = rcpt_map_lookup,
	.cancel = rcpt_map_cancel,
	.reload = rcpt_map_reload,
	.stats = rcpt_map_stats,
	.close = rcpt_map_close,
};
