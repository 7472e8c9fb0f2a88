/* vcache_lmdb.c - the lmdb:PATH verdict store: verdicts survive restarts in an LMDB environment
 * (PATH is a directory, created if missing). Reads are short read-only transactions from any
 * thread (MDB_NOTLS). Writes never happen on a worker: put() queues the entry and one writer
 * thread stores each batch in one transaction, so a worker never waits on an fsync. The map is
 * bounded by cache_max_size: before it fills, the writer drops expired entries, then the oldest
 * (an "age" index keyed by stored time); expired entries are also swept every ten
 * minutes. Two databases: "verdicts" (address -> verdict) and "age" (be64 stored_ms + address). */
#include "vcache.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config_check.h"
#include "log.h"
#include "util.h"

#define LMDB_DEFAULT_MAPSIZE (256ULL << 20)
#define LMDB_SWEEP_EVERY_S 600
#define LMDB_BYTES_PER_ENTRY 512 /* both trees, half-full pages and copy-on-write slack */
#define LMDB_VALUE_HDR 24 /* verdict(1) srclen(1) pad(6) stored(8) ttl(8) */

enum lmdb_op_kind { OP_PUT, OP_PURGE, OP_FLUSH, OP_SYNC };

struct lmdb_op {
	struct lmdb_op *next;
	enum lmdb_op_kind kind;
	struct vcache_entry e;   /* OP_PUT */
	long result;             /* OP_PURGE / OP_FLUSH */
	bool done;               /* set by the writer for waited ops */
	char key[RCPT_ADDR_MAX + 1];
	char delims[8];          /* OP_PURGE: the domain's recipient_delimiter */
};

struct lmdb_store {
	char *path;
	MDB_env *env;
	MDB_dbi verdicts, age;
	pthread_mutex_t lock;     /* the queue */
	pthread_cond_t wake, done;
	struct lmdb_op *head, *tail;
	size_t queued;
	bool stop;
	size_t max_entries;       /* map size / LMDB_BYTES_PER_ENTRY: trimmed before the map fills */
	pthread_t writer;
	atomic_ulong hits, misses, puts, batches, evicted, write_errors, dropped;
};

/* ---- value encoding ---- */

static void lmdb_encode(const struct vcache_entry *e, unsigned char *buf, size_t *len)
{
	size_t slen = strnlen(e->source, VCACHE_SOURCE_MAX - 1);

	memset(buf, 0, LMDB_VALUE_HDR);
	buf[0] = (unsigned char)e->verdict;
	buf[1] = (unsigned char)slen;
	memcpy(buf + 8, &e->stored_ms, 8);
	memcpy(buf + 16, &e->ttl_ms, 8);
	memcpy(buf + LMDB_VALUE_HDR, e->source, slen);
	*len = LMDB_VALUE_HDR + slen;
}

static int lmdb_decode(const MDB_val *v, struct vcache_entry *e)
{
	const unsigned char *p = v->mv_data;

	if (v->mv_size < LMDB_VALUE_HDR || v->mv_size != LMDB_VALUE_HDR + (size_t)p[1] || p[1] >= VCACHE_SOURCE_MAX)
		return -1;
	memset(e, 0, sizeof *e);
	e->verdict = p[0] == RCPT_VALID ? RCPT_VALID : RCPT_INVALID;
	memcpy(&e->stored_ms, p + 8, 8);
	memcpy(&e->ttl_ms, p + 16, 8);
	memcpy(e->source, p + LMDB_VALUE_HDR, p[1]);
	return 0;
}

/* The age index key: big-endian stored time, then the address. */
static size_t lmdb_age_key(unsigned char *buf, uint64_t stored, const char *key, size_t klen)
{
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(stored >> (56 - 8 * i));
	memcpy(buf + 8, key, klen);
	return 8 + klen;
}

/* ---- write transactions (writer thread, or the caller of purge/flush through the queue) ---- */

static int lmdb_del_key(struct lmdb_store *s, MDB_txn *txn, const char *key, size_t klen)
{
	MDB_val k = { klen, (void *)(uintptr_t)key }, v;
	struct vcache_entry old;
	unsigned char ak[8 + RCPT_ADDR_MAX];

	int rc = mdb_get(txn, s->verdicts, &k, &v);
	if (rc != 0)
		return rc;
	if (lmdb_decode(&v, &old) == 0) {
		MDB_val a = { lmdb_age_key(ak, old.stored_ms, key, klen), ak };
		mdb_del(txn, s->age, &a, NULL);
	}
	return mdb_del(txn, s->verdicts, &k, NULL);
}

static int lmdb_txn_put(struct lmdb_store *s, MDB_txn *txn, const char *key, const struct vcache_entry *e)
{
	size_t klen = strlen(key), vlen;
	unsigned char vbuf[LMDB_VALUE_HDR + VCACHE_SOURCE_MAX], ak[8 + RCPT_ADDR_MAX];

	int rc = lmdb_del_key(s, txn, key, klen);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	lmdb_encode(e, vbuf, &vlen);
	MDB_val k = { klen, (void *)(uintptr_t)key }, v = { vlen, vbuf };
	MDB_val a = { lmdb_age_key(ak, e->stored_ms, key, klen), ak }, empty = { 0, NULL };
	rc = mdb_put(txn, s->verdicts, &k, &v, 0);
	return rc ? rc : mdb_put(txn, s->age, &a, &empty, 0);
}

/* Delete entries in age order: all expired ones (expired_only), or the oldest `limit`. */
static long lmdb_txn_sweep(struct lmdb_store *s, MDB_txn *txn, bool expired_only, long limit)
{
	MDB_cursor *cur;
	MDB_val a, v;
	long removed = 0;
	uint64_t now = vcache_now();

	if (mdb_cursor_open(txn, s->age, &cur) != 0)
		return 0;
	for (int rc = mdb_cursor_get(cur, &a, &v, MDB_FIRST); rc == 0 && removed < limit;
	     rc = mdb_cursor_get(cur, &a, &v, MDB_NEXT)) {
		MDB_val k = { a.mv_size - 8, (char *)a.mv_data + 8 }, val;
		struct vcache_entry e;
		bool gone = mdb_get(txn, s->verdicts, &k, &val) != 0 || lmdb_decode(&val, &e) != 0;
		if (expired_only && !gone && !vcache_expired(&e, now))
			continue;
		if (!gone)
			mdb_del(txn, s->verdicts, &k, NULL);
		mdb_cursor_del(cur, 0);
		removed++;
	}
	mdb_cursor_close(cur);
	return removed;
}

/* Delete the entry under the cursor (k, v) and its age record. */
static void lmdb_cursor_del_entry(struct lmdb_store *s, MDB_txn *txn, MDB_cursor *cur, const MDB_val *k,
				  const MDB_val *v)
{
	struct vcache_entry e;
	unsigned char ak[8 + RCPT_ADDR_MAX];

	if (lmdb_decode(v, &e) == 0) {
		MDB_val a = { lmdb_age_key(ak, e.stored_ms, k->mv_data, k->mv_size), ak };
		mdb_del(txn, s->age, &a, NULL);
	}
	mdb_cursor_del(cur, 0);
}

/* Delete the sub-addresses of key ("bob+x@d" for "bob@d"): keys are sorted, so one range
 * from "bob+" per delimiter. */
static long lmdb_txn_purge_subaddr(struct lmdb_store *s, MDB_txn *txn, const char *key, const char *delims)
{
	const char *at = strrchr(key, '@');
	size_t llen = at ? (size_t)(at - key) : 0;
	char prefix[RCPT_ADDR_MAX + 1], found[RCPT_ADDR_MAX + 1];
	MDB_cursor *cur;
	MDB_val k, v;
	long removed = 0;

	if (llen == 0 || delims[0] == '\0' || mdb_cursor_open(txn, s->verdicts, &cur) != 0)
		return 0;
	memcpy(prefix, key, llen);
	for (const char *d = delims; *d; d++) {
		prefix[llen] = *d;
		k = (MDB_val){ llen + 1, prefix };
		for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		     rc == 0 && k.mv_size > llen && memcmp(k.mv_data, prefix, llen + 1) == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (strbuf_copy(found, sizeof found, k.mv_data, k.mv_size) != 0 ||
			    !vcache_key_matches(found, key, delims))
				continue;
			lmdb_cursor_del_entry(s, txn, cur, &k, &v);
			removed++;
		}
	}
	mdb_cursor_close(cur);
	return removed;
}

static long lmdb_txn_purge(struct lmdb_store *s, MDB_txn *txn, const char *pattern, const char *delims)
{
	MDB_cursor *cur;
	MDB_val k, v;
	long removed = 0;
	char key[RCPT_ADDR_MAX + 1];

	if (pattern[0] != '@')
		return (lmdb_del_key(s, txn, pattern, strlen(pattern)) == 0 ? 1 : 0) +
		       lmdb_txn_purge_subaddr(s, txn, pattern, delims);
	if (mdb_cursor_open(txn, s->verdicts, &cur) != 0)
		return -1;
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (strbuf_copy(key, sizeof key, k.mv_data, k.mv_size) != 0 || !vcache_key_matches(key, pattern, ""))
			continue;
		lmdb_cursor_del_entry(s, txn, cur, &k, &v);
		removed++;
	}
	mdb_cursor_close(cur);
	return removed;
}

static int lmdb_txn_op(struct lmdb_store *s, MDB_txn *txn, struct lmdb_op *op)
{
	switch (op->kind) {
	case OP_PUT:
		return lmdb_txn_put(s, txn, op->key, &op->e);
	case OP_PURGE:
		op->result = lmdb_txn_purge(s, txn, op->key, op->delims);
		return 0;
	case OP_FLUSH: {
		int rc = mdb_drop(txn, s->verdicts, 0);
		rc = rc ? rc : mdb_drop(txn, s->age, 0);
		op->result = rc ? -1 : 0;
		return rc;
	}
	case OP_SYNC:
		return 0;
	}
	return 0;
}

/* Apply a batch in one transaction. */
static int lmdb_apply(struct lmdb_store *s, struct lmdb_op *ops)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);

	for (struct lmdb_op *op = ops; rc == 0 && op; op = op->next)
		rc = lmdb_txn_op(s, txn, op);
	if (rc != 0) {
		if (txn)
			mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

/* Keep the entry count under max_entries so the map never fills (in a full LMDB map even a
 * delete can fail): past the bound, drop expired entries, then the oldest down to 90%. */
static void lmdb_trim(struct lmdb_store *s, size_t incoming, bool force)
{
	MDB_txn *txn;
	MDB_stat st;

	if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
		return;
	long n = 0;
	if (mdb_stat(txn, s->verdicts, &st) == 0 && (force || st.ms_entries + incoming > s->max_entries)) {
		n = lmdb_txn_sweep(s, txn, true, LONG_MAX);
		size_t left = st.ms_entries - (size_t)n, goal = s->max_entries / 10 * 9;
		goal = goal > incoming ? goal - incoming : 0;
		if (left > goal)
			n += lmdb_txn_sweep(s, txn, false, (long)(left - goal));
	}
	if (mdb_txn_commit(txn) == 0)
		atomic_fetch_add(&s->evicted, (unsigned long)n);
}

static void lmdb_write_batch(struct lmdb_store *s, struct lmdb_op *ops)
{
	size_t puts = 0;

	for (struct lmdb_op *op = ops; op; op = op->next)
		puts += op->kind == OP_PUT;
	if (puts)
		lmdb_trim(s, puts, false);
	int rc = lmdb_apply(s, ops);
	if (rc == MDB_MAP_FULL) { /* the estimate was short: trim harder and retry once */
		s->max_entries = s->max_entries / 4 * 3 + 1;
		lmdb_trim(s, puts, true);
		rc = lmdb_apply(s, ops);
	}
	atomic_fetch_add(&s->batches, 1);
	if (rc != 0) {
		atomic_fetch_add(&s->write_errors, 1);
		log_err("cache lmdb:%s: write failed: %s (verdicts dropped)", s->path, mdb_strerror(rc));
		for (struct lmdb_op *op = ops; op; op = op->next)
			if (op->kind != OP_PUT)
				op->result = -1;
	}
}

/* ---- the writer thread ---- */

static void lmdb_sweep_expired(struct lmdb_store *s)
{
	MDB_txn *txn;

	if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
		return;
	long n = lmdb_txn_sweep(s, txn, true, LONG_MAX);
	if (mdb_txn_commit(txn) == 0)
		atomic_fetch_add(&s->evicted, (unsigned long)n);
}

/* Hand back a finished batch: free the puts, wake the callers waiting on the others. */
static void lmdb_finish(struct lmdb_store *s, struct lmdb_op *ops)
{
	pthread_mutex_lock(&s->lock);
	for (struct lmdb_op *op = ops, *next; op; op = next) {
		next = op->next;
		if (op->kind == OP_PUT)
			free(op);
		else
			op->done = true;
	}
	pthread_cond_broadcast(&s->done);
	pthread_mutex_unlock(&s->lock);
}

static void *lmdb_writer_main(void *arg)
{
	struct lmdb_store *s = arg;
	time_t next_sweep = time(NULL) + LMDB_SWEEP_EVERY_S;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct timespec until = { .tv_sec = next_sweep };
		while (s->head == NULL && !s->stop && time(NULL) < next_sweep)
			pthread_cond_timedwait(&s->wake, &s->lock, &until);
		if (s->head == NULL && s->stop)
			break;
		struct lmdb_op *ops = s->head;
		s->head = s->tail = NULL;
		s->queued = 0;
		pthread_mutex_unlock(&s->lock);
		if (ops) {
			lmdb_write_batch(s, ops);
			lmdb_finish(s, ops);
		}
		if (time(NULL) >= next_sweep) {
			lmdb_sweep_expired(s);
			next_sweep = time(NULL) + LMDB_SWEEP_EVERY_S;
		}
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Verdict writes waiting for the writer beyond this are dropped (a stalled disk must not make
 * memory grow with the RCPT rate; a dropped verdict is only asked again later). */
#define LMDB_QUEUE_MAX 100000

/* Queue op for the writer; false (op not queued) when it is a put beyond LMDB_QUEUE_MAX. */
static bool lmdb_enqueue(struct lmdb_store *s, struct lmdb_op *op)
{
	pthread_mutex_lock(&s->lock);
	if (op->kind == OP_PUT && s->queued >= LMDB_QUEUE_MAX) {
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	if (s->tail)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	s->queued++;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* Queue an op and wait until the writer has applied it (main thread / CLI only). */
static long lmdb_enqueue_wait(struct lmdb_store *s, enum lmdb_op_kind kind, const char *key, const char *delims)
{
	struct lmdb_op op = { .kind = kind };

	if (key && strbuf_copy(op.key, sizeof op.key, key, strlen(key)) != 0)
		return -1;
	if (delims && strbuf_copy(op.delims, sizeof op.delims, delims, strlen(delims)) != 0)
		return -1;
	lmdb_enqueue(s, &op);
	pthread_mutex_lock(&s->lock);
	while (!op.done)
		pthread_cond_wait(&s->done, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return op.result;
}

/* ---- the store interface ---- */

static int lmdb_mkdirs(const char *path)
{
	char buf[4096];

	if (strbuf_copy(buf, sizeof buf, path, strlen(path)) != 0)
		return -1;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int lmdb_env_setup(struct lmdb_store *s, uint64_t mapsize, char *why, size_t whysz)
{
	MDB_txn *txn;
	int rc = mdb_env_create(&s->env);

	rc = rc ? rc : mdb_env_set_maxdbs(s->env, 2);
	rc = rc ? rc : mdb_env_set_mapsize(s->env, (size_t)mapsize);
	rc = rc ? rc : mdb_env_open(s->env, s->path, MDB_NOTLS, 0600);
	rc = rc ? rc : mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "verdicts", MDB_CREATE, &s->verdicts);
		rc = rc ? rc : mdb_dbi_open(txn, "age", MDB_CREATE, &s->age);
		rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
	}
	if (rc != 0)
		snprintf(why, whysz, "cache lmdb:%s: %s", s->path, mdb_strerror(rc));
	return rc;
}

static int vcache_lmdb_check_spec(const char *arg, const char **why)
{
	if (arg[0] != '/' || config_check_word(arg, why) < 0) {
		*why = "lmdb: needs an absolute directory name, without spaces "
		       "(lmdb:/var/lib/backstop/verdicts)";
		return -1;
	}
	return 0;
}

static void *vcache_lmdb_open(const char *arg, const struct bs_config *cfg, char *why, size_t whysz)
{
	if (arg[0] == '\0') {
		snprintf(why, whysz, "cache lmdb: needs a directory (lmdb:/var/lib/backstop/verdicts)");
		return NULL;
	}
	if (lmdb_mkdirs(arg) != 0) {
		snprintf(why, whysz, "cache lmdb:%s: cannot create the directory: %s", arg, strerror(errno));
		return NULL;
	}
	struct lmdb_store *s = xcalloc(1, sizeof *s);
	s->path = xstrdup(arg);
	uint64_t mapsize = cfg && cfg->cache_max_size ? cfg->cache_max_size : LMDB_DEFAULT_MAPSIZE;
	s->max_entries = mapsize / LMDB_BYTES_PER_ENTRY < 64 ? 64 : (size_t)(mapsize / LMDB_BYTES_PER_ENTRY);
	if (lmdb_env_setup(s, mapsize, why, whysz) != 0) {
		if (s->env)
			mdb_env_close(s->env);
		free(s->path);
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_cond_init(&s->done, NULL);
	pthread_create(&s->writer, NULL, lmdb_writer_main, s);
	return s;
}

static struct vcache_query *vcache_lmdb_get(void *state, struct event_base *base, const char *key,
					    vcache_get_cb cb, void *arg)
{
	struct lmdb_store *s = state;
	struct vcache_entry e;
	MDB_txn *txn;
	MDB_val k = { strlen(key), (void *)(uintptr_t)key }, v;
	bool found = false;

	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
		found = mdb_get(txn, s->verdicts, &k, &v) == 0 && lmdb_decode(&v, &e) == 0 &&
			!vcache_expired(&e, vcache_now());
		mdb_txn_abort(txn);
	}
	atomic_fetch_add(found ? &s->hits : &s->misses, 1);
	cb(arg, found, found ? &e : NULL);
	return NULL;
}

static void vcache_lmdb_cancel(struct vcache_query *q) { (void)q; }

static void vcache_lmdb_put(void *state, const char *key, const struct vcache_entry *e)
{
	struct lmdb_store *s = state;
	struct lmdb_op *op = xcalloc(1, sizeof *op);

	op->kind = OP_PUT;
	op->e = *e;
	if (strbuf_copy(op->key, sizeof op->key, key, strlen(key)) != 0) {
		free(op);
		return;
	}
	atomic_fetch_add(&s->puts, 1);
	if (!lmdb_enqueue(s, op)) {
		atomic_fetch_add(&s->dropped, 1);
		free(op);
	}
}

static long vcache_lmdb_purge(void *state, const char *key, const char *delims)
{
	return lmdb_enqueue_wait(state, OP_PURGE, key, delims);
}

static int vcache_lmdb_flush(void *state) { return (int)lmdb_enqueue_wait(state, OP_FLUSH, NULL, NULL); }
static void vcache_lmdb_sync(void *state) { lmdb_enqueue_wait(state, OP_SYNC, NULL, NULL); }

static void vcache_lmdb_stats(void *state, FILE *out)
{
	struct lmdb_store *s = state;
	MDB_envinfo info;
	MDB_stat st = { 0 };
	MDB_txn *txn;

	mdb_env_info(s->env, &info);
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
		mdb_stat(txn, s->verdicts, &st);
		mdb_txn_abort(txn);
	}
	pthread_mutex_lock(&s->lock);
	size_t queued = s->queued;
	pthread_mutex_unlock(&s->lock);
	fprintf(out, "path=%s\nentries=%zu\nmax_entries=%zu\nmap_size=%zu\npages_used=%zu\nhits=%lu\nmisses=%lu\nputs=%lu\n"
		"write_batches=%lu\nqueued=%zu\nevicted=%lu\nwrite_errors=%lu\nwrites_dropped=%lu\n", s->path, st.ms_entries, s->max_entries,
		info.me_mapsize, info.me_last_pgno + 1, atomic_load(&s->hits), atomic_load(&s->misses),
		atomic_load(&s->puts), atomic_load(&s->batches), queued, atomic_load(&s->evicted),
		atomic_load(&s->write_errors), atomic_load(&s->dropped));
}

static void vcache_lmdb_close(void *state)
{
	struct lmdb_store *s = state;

	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->writer, NULL);
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->done);
	free(s->path);
	free(s);
}

const struct vcache_store_type vcache_lmdb_type = {
	.prefix = "lmdb",
	.syntax = "lmdb:/DIRECTORY",
	.check_spec = vcache_lmdb_check_spec,
	.open = vcache_lmdb_open,
	.get = vcache_lmdb_get,
	.cancel = vcache_lmdb_cancel,
	.put = vcache_lmdb_put,
	.purge = vcache_lmdb_purge,
	.flush = vcache_lmdb_flush,
	.sync = vcache_lmdb_sync,
	.stats = vcache_lmdb_stats,
	.close = vcache_lmdb_close,
};
