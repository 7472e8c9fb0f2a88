/* vcache_redis.c - the Redis verdict store, shared by several gateways: redis://HOST:PORT/DB,
 * rediss:// (TLS), redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB. Verdicts live in Redis under
 * "backstop:[PREFIX:]v:ADDRESS" with their TTL (SET ... PX); a bounded local layer
 * (vcache_local.c) answers a hot address for cache_redis_local_ttl without a round trip, and
 * answers alone while Redis is unreachable. Each worker loop has its own connection (made on the
 * first get from that loop); purge and flush go to Redis and reach every gateway's local layer
 * through pub/sub on "backstop:[PREFIX:]purge". A miss takes a short lock
 * ("backstop:[PREFIX:]l:ADDRESS", SET NX PX) so that two gateways do not probe the same address:
 * the one that loses the race polls for the other's verdict, at most half the verify budget.
 * Value: "V" or "I", stored_ms, ':', ttl_ms, ':', source ("V1733560000000:86400000:ldap:ad"). */
#include "vcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "redis_conn.h"
#include "redis_loops.h"
#include "redis_target.h"
#include "util.h"
#include "vcache_local.h"

#define REDIS_POLL_MS 50
#define REDIS_SYNC_TIMEOUT_MS 10000 /* purge, flush: the admin's commands */
#define REDIS_SCAN_COUNT "1000"

struct redis_store {
	struct redis_target target;
	char name[300];                 /* the spec, for log lines (no password in it) */
	char prefix[96];                /* "backstop:" or "backstop:PREFIX:" */
	char channel[128];
	char owner[96];                 /* lock value: host:pid */
	struct vcache_local *local;
	uint64_t local_ttl_ms, lock_ttl_ms, lock_wait_ms;
	struct redis_loops *loops;      /* one connection per worker loop */
	pthread_t sub_thread;
	struct event_base *sub_base;
	struct redis_conn *sub;
	struct event *sub_stop;
	bool sub_was_up;
	atomic_int down;                /* unreachable was logged */
	atomic_ulong gets, hits, misses, fallbacks, timeouts, puts, puts_dropped, locks_won, locks_waited,
		lock_waits_answered, purges_heard;
};

struct vcache_query {
	struct redis_store *s;
	struct redis_conn *conn;        /* the asking loop's */
	vcache_get_cb cb;
	void *arg;
	struct redis_cmd *cmd;
	struct event *timer;
	uint64_t wait_until;            /* polling for another gateway's verdict until then; 0: not */
	char key[];
};

static int redis_check_plain(const char *arg, const char **why) { return redis_target_check(REDIS_KIND_PLAIN, arg, why); }
static int redis_check_tls(const char *arg, const char **why) { return redis_target_check(REDIS_KIND_TLS, arg, why); }
static int redis_check_sentinel(const char *arg, const char **why)
{
	return redis_target_check(REDIS_KIND_SENTINEL, arg, why);
}

/* ---- values ---- */

static size_t redis_encode(const struct vcache_entry *e, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%c%llu:%llu:%s", e->verdict == RCPT_VALID ? 'V' : 'I',
			 (unsigned long long)e->stored_ms, (unsigned long long)e->ttl_ms, e->source);
	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

static int redis_decode(const char *v, size_t len, struct vcache_entry *e)
{
	char buf[VCACHE_SOURCE_MAX + 48], *end;

	if (len < 5 || len >= sizeof buf || (v[0] != 'V' && v[0] != 'I'))
		return -1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	memset(e, 0, sizeof *e);
	e->verdict = v[0] == 'V' ? RCPT_VALID : RCPT_INVALID;
	e->stored_ms = strtoull(buf + 1, &end, 10);
	if (*end != ':')
		return -1;
	e->ttl_ms = strtoull(end + 1, &end, 10);
	if (*end != ':' || e->ttl_ms == 0 || strlen(end + 1) >= VCACHE_SOURCE_MAX)
		return -1;
	snprintf(e->source, sizeof e->source, "%s", end + 1);
	return 0;
}

static void redis_key(const struct redis_store *s, char kind, const char *addr, char *buf, size_t len)
{
	snprintf(buf, len, "%s%c:%s", s->prefix, kind, addr);
}

/* ---- availability, logged once per change ---- */

static void redis_store_state(void *arg, bool up)
{
	struct redis_store *s = arg;

	if (!up && atomic_exchange(&s->down, 1) == 0)
		log_warn("cache %s: Redis unreachable: verdicts from this gateway's local layer until it is back "
			 "(reconnecting with backoff)", s->name);
	else if (up && atomic_exchange(&s->down, 0) == 1)
		log_notice("cache %s: Redis reachable again", s->name);
}

static void vcache_redis_forget_base(void *state, struct event_base *base)
{
	struct redis_store *s = state;
	redis_loops_forget(s->loops, base);
}

/* ---- get ---- */

static void redis_q_free(struct vcache_query *q)
{
	redis_cmd_cancel(q->cmd);
	event_free(q->timer);
	free(q);
}

/* Answer from the local layer, fresh or not (Redis could not say), or a miss. */
static void redis_q_fallback(struct vcache_query *q)
{
	struct vcache_entry e;
	bool fresh;
	vcache_get_cb cb = q->cb;
	void *arg = q->arg;
	struct redis_store *s = q->s;
	int found = vcache_local_get(s->local, q->key, vcache_now(), &e, &fresh);

	atomic_fetch_add(&s->fallbacks, 1);
	atomic_fetch_add(found ? &s->hits : &s->misses, 1);
	redis_q_free(q);
	cb(arg, found, found ? &e : NULL);
}

static void redis_q_answer(struct vcache_query *q, const struct vcache_entry *e)
{
	vcache_get_cb cb = q->cb;
	void *arg = q->arg;

	atomic_fetch_add(e ? &q->s->hits : &q->s->misses, 1);
	redis_q_free(q);
	cb(arg, e != NULL, e);
}

static void redis_q_arm(struct vcache_query *q, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(q->timer, &tv);
}

static void redis_on_get(void *arg, const redisReply *r);

static int redis_q_send_get(struct vcache_query *q)
{
	char key[RCPT_ADDR_MAX + 128];
	redis_key(q->s, 'v', q->key, key, sizeof key);
	const char *argv[2] = { "GET", key };
	q->cmd = redis_conn_commandv(q->conn, redis_on_get, q, 2, argv);
	if (q->cmd)
		redis_q_arm(q, q->s->target.timeout_ms);
	return q->cmd ? 0 : -1;
}

static void redis_on_lock(void *arg, const redisReply *r)
{
	struct vcache_query *q = arg;

	q->cmd = NULL;
	if (r && r->type == REDIS_REPLY_NIL) { /* another gateway probes: wait for its verdict */
		atomic_fetch_add(&q->s->locks_waited, 1);
		q->wait_until = now_ms() + q->s->lock_wait_ms;
		redis_q_arm(q, REDIS_POLL_MS);
		return;
	}
	if (r && r->type == REDIS_REPLY_STATUS)
		atomic_fetch_add(&q->s->locks_won, 1);
	redis_q_answer(q, NULL); /* ours (or no lock to be had): the caller probes */
}

static void redis_on_get(void *arg, const redisReply *r)
{
	struct vcache_query *q = arg;
	struct redis_store *s = q->s;
	struct vcache_entry e;

	q->cmd = NULL;
	evtimer_del(q->timer);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		redis_q_fallback(q);
		return;
	}
	if (r->type == REDIS_REPLY_STRING && redis_decode(r->str, r->len, &e) == 0 && !vcache_expired(&e, vcache_now())) {
		uint64_t now = vcache_now();
		vcache_local_put(s->local, q->key, &e, now + s->local_ttl_ms);
		if (q->wait_until)
			atomic_fetch_add(&s->lock_waits_answered, 1);
		redis_q_answer(q, &e);
		return;
	}
	vcache_local_del(s->local, q->key); /* purged or expired everywhere */
	if (q->wait_until) { /* still waiting for the other gateway */
		if (now_ms() + REDIS_POLL_MS < q->wait_until)
			redis_q_arm(q, REDIS_POLL_MS);
		else
			redis_q_answer(q, NULL);
		return;
	}
	if (s->lock_ttl_ms == 0) {
		redis_q_answer(q, NULL);
		return;
	}
	char key[RCPT_ADDR_MAX + 128], px[24];
	redis_key(s, 'l', q->key, key, sizeof key);
	snprintf(px, sizeof px, "%llu", (unsigned long long)s->lock_ttl_ms);
	const char *argv[6] = { "SET", key, s->owner, "NX", "PX", px };
	q->cmd = redis_conn_commandv(q->conn, redis_on_lock, q, 6, argv);
	if (q->cmd == NULL)
		redis_q_answer(q, NULL);
	else
		redis_q_arm(q, s->target.timeout_ms);
}

static void redis_q_timer(evutil_socket_t fd, short what, void *arg)
{
	struct vcache_query *q = arg;
	(void)fd;
	(void)what;

	if (q->cmd) { /* Redis is slow: do not wait longer */
		atomic_fetch_add(&q->s->timeouts, 1);
		redis_q_fallback(q);
		return;
	}
	if (redis_q_send_get(q) != 0) /* polling for another gateway's verdict */
		redis_q_answer(q, NULL);
}

static struct vcache_query *vcache_redis_get(void *state, struct event_base *base, const char *key,
					     vcache_get_cb cb, void *arg)
{
	struct redis_store *s = state;
	struct vcache_entry e;
	bool fresh = false;

	atomic_fetch_add(&s->gets, 1);
	int found = vcache_local_get(s->local, key, vcache_now(), &e, &fresh);
	if (found && fresh) {
		atomic_fetch_add(&s->hits, 1);
		cb(arg, 1, &e);
		return NULL;
	}
	struct redis_conn *conn = redis_loops_conn(s->loops, base);
	size_t klen = strlen(key);
	struct vcache_query *q = xcalloc(1, sizeof *q + klen + 1);
	q->s = s;
	q->conn = conn;
	q->cb = cb;
	q->arg = arg;
	memcpy(q->key, key, klen + 1);
	q->timer = evtimer_new(base, redis_q_timer, q);
	if (redis_q_send_get(q) != 0) { /* not connected: the local layer alone */
		atomic_fetch_add(&s->fallbacks, 1);
		atomic_fetch_add(found ? &s->hits : &s->misses, 1);
		redis_q_free(q);
		cb(arg, found, found ? &e : NULL);
		return NULL;
	}
	return q;
}

static void vcache_redis_cancel(struct vcache_query *q)
{
	redis_q_free(q);
}

/* ---- synchronous use, off the worker loops (put from elsewhere, purge, flush) ---- */

struct redis_sync {
	struct event_base *base;
	struct redis_conn *conn;
	struct event *deadline;
	bool expired, answered;
	void (*use)(void *ctx, const redisReply *r);
	void *ctx;
};

static void redis_sync_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct redis_sync *)arg)->expired = true;
}

static int redis_sync_open(struct redis_sync *rs, struct redis_store *s, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	memset(rs, 0, sizeof *rs);
	rs->base = event_base_new();
	rs->conn = redis_conn_new(rs->base, &s->target, NULL, NULL);
	rs->deadline = evtimer_new(rs->base, redis_sync_deadline, rs);
	evtimer_add(rs->deadline, &tv);
	redis_conn_kick(rs->conn);
	while (!redis_conn_ready(rs->conn) && !redis_conn_failed(rs->conn) && !rs->expired)
		event_base_loop(rs->base, EVLOOP_ONCE);
	return redis_conn_ready(rs->conn) ? 0 : -1;
}

static void redis_sync_close(struct redis_sync *rs)
{
	redis_conn_free(rs->conn);
	event_free(rs->deadline);
	event_base_free(rs->base);
}

static void redis_sync_reply(void *arg, const redisReply *r)
{
	struct redis_sync *rs = arg;
	rs->answered = true;
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		rs->expired = true; /* an error ends the whole operation */
	else if (rs->use)
		rs->use(rs->ctx, r);
}

/* Run one command and hand its reply to use(ctx, r). 0, or -1 (error reply, lost, too late). */
static int redis_sync_cmd(struct redis_sync *rs, int argc, const char **argv, const size_t *lens,
			  void (*use)(void *ctx, const redisReply *r), void *ctx)
{
	rs->use = use;
	rs->ctx = ctx;
	rs->answered = false;
	if (rs->expired || redis_conn_command(rs->conn, redis_sync_reply, rs, argc, argv, lens) == NULL)
		return -1;
	while (!rs->answered && !rs->expired)
		event_base_loop(rs->base, EVLOOP_ONCE);
	return rs->answered && !rs->expired ? 0 : -1;
}

static int redis_sync_cmdv(struct redis_sync *rs, int argc, const char **argv,
			   void (*use)(void *ctx, const redisReply *r), void *ctx)
{
	size_t lens[8];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_sync_cmd(rs, argc, argv, lens, use, ctx);
}

/* ---- put ---- */

static void redis_put_done(void *arg, const redisReply *r)
{
	struct redis_store *s = arg;
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		atomic_fetch_add(&s->puts_dropped, 1);
}

static int redis_put_argv(struct redis_store *s, const char *key, const struct vcache_entry *e, char *k, size_t ksz,
			  char *v, size_t vsz, char *px, size_t pxsz, const char **argv)
{
	uint64_t now = vcache_now(), until = e->stored_ms + e->ttl_ms;
	if (until <= now)
		return -1;
	redis_key(s, 'v', key, k, ksz);
	redis_encode(e, v, vsz);
	snprintf(px, pxsz, "%llu", (unsigned long long)(until - now));
	argv[0] = "SET", argv[1] = k, argv[2] = v, argv[3] = "PX", argv[4] = px;
	return 0;
}

static void vcache_redis_put(void *state, const char *key, const struct vcache_entry *e)
{
	struct redis_store *s = state;
	char k[RCPT_ADDR_MAX + 128], lock[RCPT_ADDR_MAX + 128], v[VCACHE_SOURCE_MAX + 48], px[24];
	const char *argv[5];

	atomic_fetch_add(&s->puts, 1);
	vcache_local_put(s->local, key, e, vcache_now() + s->local_ttl_ms);
	if (redis_put_argv(s, key, e, k, sizeof k, v, sizeof v, px, sizeof px, argv) != 0)
		return;
	redis_key(s, 'l', key, lock, sizeof lock);
	const char *del[2] = { "DEL", lock };
	struct redis_conn *conn = redis_loops_current(s->loops);
	if (conn) { /* a worker loop: pipelined on its connection, never waited for */
		if (redis_conn_commandv(conn, redis_put_done, s, 5, argv) == NULL)
			atomic_fetch_add(&s->puts_dropped, 1);
		else
			redis_conn_commandv(conn, NULL, NULL, 2, del);
		return;
	}
	struct redis_sync rs; /* the command line (verify --store), tests: may block, bounded */
	if (redis_sync_open(&rs, s, s->target.timeout_ms * 4) != 0 || redis_sync_cmdv(&rs, 5, argv, NULL, NULL) != 0)
		atomic_fetch_add(&s->puts_dropped, 1);
	else
		redis_sync_cmdv(&rs, 2, del, NULL, NULL);
	redis_sync_close(&rs);
}

/* ---- purge, flush: SCAN + DEL, then PUBLISH so every gateway drops its local copies ---- */

struct redis_scan {
	struct redis_store *s;
	const char *pattern, *delims;   /* NULL pattern: every verdict (flush) */
	char cursor[32];
	char **found;
	size_t nfound, cap;
	long deleted;
};

static void redis_scan_use(void *ctx, const redisReply *r)
{
	struct redis_scan *sc = ctx;
	size_t plen = strlen(sc->s->prefix) + 2; /* "backstop:v:" */

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		snprintf(sc->cursor, sizeof sc->cursor, "0");
		return;
	}
	snprintf(sc->cursor, sizeof sc->cursor, "%s", r->element[0]->str);
	for (size_t i = 0; i < r->element[1]->elements; i++) {
		const redisReply *k = r->element[1]->element[i];
		if (k->type != REDIS_REPLY_STRING || k->len <= plen)
			continue;
		if (sc->pattern && !vcache_key_matches(k->str + plen, sc->pattern, sc->delims))
			continue;
		if (sc->nfound == sc->cap) {
			sc->cap = sc->cap ? sc->cap * 2 : 64;
			sc->found = xrealloc(sc->found, sc->cap * sizeof *sc->found);
		}
		sc->found[sc->nfound++] = xstrdup(k->str);
	}
}

static void redis_count_use(void *ctx, const redisReply *r)
{
	if (r->type == REDIS_REPLY_INTEGER)
		*(long *)ctx += (long)r->integer;
}

/* Glob-escape src into dst ("*?[]\\" get a backslash). */
static void redis_glob_escape(const char *src, size_t n, char *dst, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 < len; i++) {
		if (strchr("*?[]\\", src[i]))
			dst[o++] = '\\';
		dst[o++] = src[i];
	}
	dst[o] = '\0';
}

/* SCAN every key matching glob, delete those that sc's pattern takes. */
static int redis_scan_delete(struct redis_sync *rs, struct redis_scan *sc, const char *glob)
{
	snprintf(sc->cursor, sizeof sc->cursor, "0");
	do {
		const char *argv[6] = { "SCAN", sc->cursor, "MATCH", glob, "COUNT", REDIS_SCAN_COUNT };
		char cur[32];
		snprintf(cur, sizeof cur, "%s", sc->cursor);
		argv[1] = cur;
		if (redis_sync_cmdv(rs, 6, argv, redis_scan_use, sc) != 0)
			return -1;
		while (sc->nfound > 0) {
			size_t n = sc->nfound < 500 ? sc->nfound : 500;
			const char **argv2 = xcalloc(n + 1, sizeof *argv2);
			size_t *lens = xcalloc(n + 1, sizeof *lens);
			argv2[0] = "DEL", lens[0] = 3;
			for (size_t i = 0; i < n; i++)
				argv2[i + 1] = sc->found[sc->nfound - n + i], lens[i + 1] = strlen(argv2[i + 1]);
			int rc = redis_sync_cmd(rs, (int)n + 1, argv2, lens, redis_count_use, &sc->deleted);
			for (size_t i = 0; i < n; i++)
				free(sc->found[sc->nfound - n + i]);
			sc->nfound -= n;
			free(argv2);
			free(lens);
			if (rc != 0)
				return -1;
		}
	} while (strcmp(sc->cursor, "0") != 0);
	return 0;
}

static long redis_purge_run(struct redis_store *s, struct redis_sync *rs, const char *pattern, const char *delims)
{
	struct redis_scan sc = { .s = s, .pattern = pattern, .delims = delims };
	char glob[5 * RCPT_ADDR_MAX + 256], esc[2 * RCPT_ADDR_MAX + 4], esc2[2 * RCPT_ADDR_MAX + 4];
	int rc = 0;

	if (pattern == NULL) {
		snprintf(glob, sizeof glob, "%sv:*", s->prefix);
		rc = redis_scan_delete(rs, &sc, glob);
	} else if (pattern[0] == '@') {
		redis_glob_escape(pattern, strlen(pattern), esc, sizeof esc);
		snprintf(glob, sizeof glob, "%sv:*%s", s->prefix, esc);
		rc = redis_scan_delete(rs, &sc, glob);
	} else {
		char key[RCPT_ADDR_MAX + 128];
		redis_key(s, 'v', pattern, key, sizeof key);
		const char *argv[2] = { "DEL", key };
		rc = redis_sync_cmdv(rs, 2, argv, redis_count_use, &sc.deleted);
		const char *at = strrchr(pattern, '@');
		for (const char *d = delims; rc == 0 && at && *d; d++) { /* bob+anything@domain */
			redis_glob_escape(pattern, (size_t)(at - pattern), esc, sizeof esc);
			redis_glob_escape(at, strlen(at), esc2, sizeof esc2);
			char dl[3] = { 0 };
			redis_glob_escape(d, 1, dl, sizeof dl);
			snprintf(glob, sizeof glob, "%sv:%s%s*%s", s->prefix, esc, dl, esc2);
			rc = redis_scan_delete(rs, &sc, glob);
		}
	}
	for (size_t i = 0; i < sc.nfound; i++)
		free(sc.found[i]);
	free(sc.found);
	return rc == 0 ? sc.deleted : -1;
}

static long redis_purge_publish(struct redis_store *s, const char *pattern, const char *delims)
{
	struct redis_sync rs;
	char msg[RCPT_ADDR_MAX + 32];
	long n = -1;

	vcache_local_purge(s->local, pattern, delims);
	if (redis_sync_open(&rs, s, REDIS_SYNC_TIMEOUT_MS) == 0) {
		n = redis_purge_run(s, &rs, pattern, delims);
		if (pattern)
			snprintf(msg, sizeof msg, "purge\t%s\t%s", pattern, delims);
		else
			snprintf(msg, sizeof msg, "flush");
		const char *argv[3] = { "PUBLISH", s->channel, msg };
		if (n >= 0 && redis_sync_cmdv(&rs, 3, argv, NULL, NULL) != 0)
			n = -1;
	}
	if (n < 0)
		log_err("cache %s: Redis unreachable or failing: the %s was not done there", s->name,
			pattern ? "purge" : "flush");
	redis_sync_close(&rs);
	return n;
}

static long vcache_redis_purge(void *state, const char *key, const char *delims)
{
	return redis_purge_publish(state, key, delims);
}

static int vcache_redis_flush(void *state)
{
	return redis_purge_publish(state, NULL, "") < 0 ? -1 : 0;
}

/* ---- the subscriber thread: other gateways' purges ---- */

static void redis_sub_message(void *arg, const char *msg, size_t len)
{
	struct redis_store *s = arg;
	char buf[RCPT_ADDR_MAX + 32];

	if (len >= sizeof buf)
		return;
	memcpy(buf, msg, len);
	buf[len] = '\0';
	atomic_fetch_add(&s->purges_heard, 1);
	if (strcmp(buf, "flush") == 0) {
		long n = vcache_local_purge(s->local, NULL, "");
		log_info("cache %s: flush heard: %ld local entries dropped", s->name, n);
		return;
	}
	char *pattern = strchr(buf, '\t'), *delims = pattern ? strchr(pattern + 1, '\t') : NULL;
	if (strncmp(buf, "purge\t", 6) != 0 || delims == NULL)
		return;
	*delims++ = '\0';
	long n = vcache_local_purge(s->local, pattern + 1, delims);
	log_info("cache %s: purge of %s heard: %ld local entries dropped", s->name, pattern + 1, n);
}

/* The subscription came back after a gap: purges may have been missed, forget what we hold. */
static void redis_sub_state(void *arg, bool up)
{
	struct redis_store *s = arg;

	if (up && s->sub_was_up)
		vcache_local_purge(s->local, NULL, "");
	if (up) {
		s->sub_was_up = true;
		redis_loops_up(s->loops);
	}
	redis_store_state(s, up);
}

static void redis_sub_stop(evutil_socket_t fd, short what, void *arg)
{
	struct redis_store *s = arg;
	(void)fd;
	(void)what;
	redis_conn_free(s->sub);
	s->sub = NULL;
	event_base_loopbreak(s->sub_base);
}

static void *redis_sub_main(void *arg)
{
	struct redis_store *s = arg;

	s->sub = redis_conn_new(s->sub_base, &s->target, redis_sub_state, s);
	redis_conn_subscribe(s->sub, s->channel, redis_sub_message, s);
	event_base_loop(s->sub_base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* ---- open, close ---- */

static void redis_store_free(struct redis_store *s)
{
	redis_loops_free(s->loops); /* before the target they use */
	redis_target_clear(&s->target);
	vcache_local_free(s->local);
	free(s);
}

static void *redis_open(enum redis_kind kind, const char *prefix, const char *arg, const struct bs_config *cfg,
			char *why, size_t whysz)
{
	struct redis_store *s = xcalloc(1, sizeof *s);
	char host[64] = "localhost";

	snprintf(s->name, sizeof s->name, "%s:%s", prefix, arg);
	if (redis_target_make(&s->target, kind, arg, s->name, cfg, why, whysz) != 0) {
		redis_store_free(s);
		return NULL;
	}
	s->loops = redis_loops_new(&s->target, redis_store_state, s);
	redis_key_prefix(cfg, s->prefix, sizeof s->prefix);
	snprintf(s->channel, sizeof s->channel, "%spurge", s->prefix);
	gethostname(host, sizeof host - 1);
	snprintf(s->owner, sizeof s->owner, "%s:%ld", host, (long)getpid());
	s->local_ttl_ms = cfg ? cfg->cache_redis_local_ttl_ms : 10000;
	s->local = vcache_local_new(cfg && cfg->cache_redis_local_size ? (size_t)cfg->cache_redis_local_size : 100000);
	uint64_t budget = cfg && cfg->verify_timeout_ms ? cfg->verify_timeout_ms : 20000;
	s->lock_ttl_ms = budget < 30000 ? budget : 30000;   /* one probe's time */
	s->lock_wait_ms = budget / 2;                        /* then probe ourselves, within budget */
	s->sub_base = event_base_new();
	s->sub_stop = event_new(s->sub_base, -1, 0, redis_sub_stop, s);
	pthread_create(&s->sub_thread, NULL, redis_sub_main, s);
	return s;
}

static void *vcache_redis_open_plain(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	return redis_open(REDIS_KIND_PLAIN, "redis", arg, cfg, why, whysz);
}
static void *vcache_redis_open_tls(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	return redis_open(REDIS_KIND_TLS, "rediss", arg, cfg, why, whysz);
}
static void *vcache_redis_open_sentinel(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	return redis_open(REDIS_KIND_SENTINEL, "redis+sentinel", arg, cfg, why, whysz);
}

static void vcache_redis_stats(void *state, FILE *out)
{
	struct redis_store *s = state;

	fprintf(out, "redis_reachable=%s\nkey_prefix=%s\ngets=%lu\nhits=%lu\nmisses=%lu\nfallbacks=%lu\ntimeouts=%lu\n"
		"puts=%lu\nputs_dropped=%lu\nlocks_won=%lu\nlocks_waited=%lu\nlock_waits_answered=%lu\npurges_heard=%lu\n",
		atomic_load(&s->down) ? "no" : "yes", s->prefix, atomic_load(&s->gets), atomic_load(&s->hits),
		atomic_load(&s->misses), atomic_load(&s->fallbacks), atomic_load(&s->timeouts), atomic_load(&s->puts),
		atomic_load(&s->puts_dropped), atomic_load(&s->locks_won), atomic_load(&s->locks_waited),
		atomic_load(&s->lock_waits_answered), atomic_load(&s->purges_heard));
	vcache_local_stats(s->local, out);
}

static void vcache_redis_close(void *state)
{
	struct redis_store *s = state;

	event_active(s->sub_stop, EV_TIMEOUT, 0);
	pthread_join(s->sub_thread, NULL);
	event_free(s->sub_stop);
	event_base_free(s->sub_base);
	redis_store_free(s); /* and the loops' connections their owners did not forget */
}

#define REDIS_ROW(PREFIX, SYNTAX, CHECK, OPEN)                                                              \
	{ .prefix = PREFIX, .syntax = SYNTAX, .check_spec = CHECK, .open = OPEN, .get = vcache_redis_get,  \
	  .cancel = vcache_redis_cancel, .put = vcache_redis_put, .purge = vcache_redis_purge,              \
	  .flush = vcache_redis_flush, .sync = NULL, .stats = vcache_redis_stats, .close = vcache_redis_close, \
	  .forget_base = vcache_redis_forget_base }

const struct vcache_store_type vcache_redis_type =
	REDIS_ROW("redis", "redis://HOST:PORT/DB", redis_check_plain, vcache_redis_open_plain);
const struct vcache_store_type vcache_rediss_type =
	REDIS_ROW("rediss", "rediss://HOST:PORT/DB", redis_check_tls, vcache_redis_open_tls);
const struct vcache_store_type vcache_redis_sentinel_type =
	REDIS_ROW("redis+sentinel", "redis+sentinel://HOST:PORT,.../MASTER/DB", redis_check_sentinel,
		  vcache_redis_open_sentinel);
