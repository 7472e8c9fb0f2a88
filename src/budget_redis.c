/* budget_redis.c - the budget store shared by several gateways (budget_store.h), used when the
 * cache is Redis: a key's counters live in "backstop:[PREFIX:]b:KEY" and are counted by one Lua
 * script (EVALSHA, EVAL when Redis does not know it yet) in one round trip, and read with one MGET
 * (the state computed here, as the script would), with budget_memory.c's semantics, on the
 * gateways' wall clocks; keys expire by themselves (PX). Every add is also counted in a
 * local memory store, which answers alone when Redis is down or slower than cache_redis_timeout:
 * nothing is queued while Redis is away, and losing and finding it again are logged once. Each
 * worker loop has its own connection (made on its first call), like the verdict store. */
#include "budget_store.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "log.h"
#include "redis_conn.h"
#include "redis_loops.h"
#include "redis_target.h"
#include "util.h"

/* The value: "WIDTH:PENALTY_UNTIL:SLOT=COUNT,SLOT=COUNT" (wall-clock ms; SLOT = time / WIDTH,
 * WIDTH = window / 16); the 17 newest slots count, as in budget_memory.c (br_decode reads it the
 * same way). KEYS: the keys; ARGV[1]: "a" (add) or "g" (get), then LIMIT, WINDOW_MS, PENALTY_MS
 * per key, then NOW (the gateway's wall clock; Redis's TIME without it). Answers COUNT,
 * PENALTY_LEFT_MS, TRIPPED per key. */
static const char budget_redis_lua[] =
	"local now = tonumber(ARGV[2 + 3 * #KEYS])\n"
	"if not now then\n"
	"  if redis.replicate_commands then redis.replicate_commands() end\n"
	"  local t = redis.call('TIME')\n"
	"  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"end\n"
	"local add = ARGV[1] == 'a'\n"
	"local out = {}\n"
	"for i, key in ipairs(KEYS) do\n"
	"  local limit, window, pen = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])\n"
	"  local width = math.max(math.floor(window / 16), 1)\n"
	"  local idx = math.floor(now / width)\n"
	"  local pu, count, slots = 0, 0, {}\n"
	"  local v = redis.call('GET', key)\n"
	"  if v then\n"
	"    local w, p, rest = string.match(v, '^(%d+):(%d+):(.*)$')\n"
	"    if w then\n"
	"      pu = tonumber(p)\n"
	"      if tonumber(w) ~= width then\n" /* a reload changed the window: all in the newest slot */
	"        local total = 0\n"
	"        for _, c in string.gmatch(rest, '(%d+)=(%d+)') do total = total + tonumber(c) end\n"
	"        if total > 0 then slots[idx] = total end\n"
	"      else\n"
	"        for s, c in string.gmatch(rest, '(%d+)=(%d+)') do\n"
	"          s = tonumber(s)\n"
	"          if s > idx - 17 then slots[s] = tonumber(c) end\n"
	"        end\n"
	"      end\n"
	"      for _, c in pairs(slots) do count = count + c end\n"
	"    end\n"
	"  end\n"
	"  local tripped = 0\n"
	"  if add then\n"
	"    local before = count\n"
	"    slots[idx] = (slots[idx] or 0) + 1\n"
	"    count = count + 1\n"
	"    if limit > 0 and before < limit and count >= limit then\n"
	"      tripped = 1\n"
	"      if pen > 0 and pu <= now then pu = now + pen end\n"
	"    end\n"
	"    local parts = {}\n"
	"    for s, c in pairs(slots) do parts[#parts + 1] = string.format('%d=%d', s, c) end\n"
	"    local ttl = window + width\n"
	"    if pu - now > ttl then ttl = pu - now end\n"
	"    redis.call('SET', key, string.format('%d:%d:', width, pu) .. table.concat(parts, ','),\n"
	"               'PX', string.format('%d', ttl))\n"
	"  end\n"
	"  local left = 0\n"
	"  if pu > now then left = pu - now end\n"
	"  out[#out + 1] = count\n"
	"  out[#out + 1] = left\n"
	"  out[#out + 1] = tripped\n"
	"end\n"
	"return out\n";

struct budget_redis {
	struct redis_target target;
	char name[300];                  /* the cache spec, for log lines */
	char prefix[100];                /* "backstop:[PREFIX:]": then "b:KEY", "r:HOST:PORT:SECOND" */
	char sha[41];                    /* of budget_redis_lua */
	struct budget_store *local;      /* counts every add; answers alone when Redis cannot */
	struct redis_loops *loops;       /* one connection per worker loop */
	atomic_int down;                 /* the loss was logged */
	atomic_int script_failed;        /* an error answer was logged */
	atomic_ulong calls, answered, fallbacks, timeouts, errors, trips, takes, taken, refused;
};

struct budget_query {
	struct budget_redis *s;
	struct redis_conn *conn;         /* the asking loop's */
	bool add, evalsha, take;         /* take: a rate (INCRBY), not budgets */
	unsigned want, limit;            /* take: events asked, the rate */
	budget_take_cb tcb;
	size_t n;
	uint64_t now;                    /* the caller's clock */
	uint64_t wall;                   /* the gateways' clock (ms since the epoch) */
	budget_cb cb;
	void *arg;
	struct redis_cmd *cmd;
	struct event *timer;
	struct budget_state local[BUDGET_KEYS_MAX]; /* add: the local store's answer */
	struct budget_rule rules[BUDGET_KEYS_MAX];
	char keys[BUDGET_KEYS_MAX][BUDGET_KEY_MAX];
};

/* ---- availability, logged once per change ---- */

static void br_state(void *arg, bool up)
{
	struct budget_redis *s = arg;

	if (!up && atomic_exchange(&s->down, 1) == 0)
		log_warn("budgets %s: Redis lost: harvest budgets and callout_max_rate counted by this gateway alone "
			 "until it is back (reconnecting with backoff)", s->name);
	else if (up && atomic_exchange(&s->down, 0) == 1)
		log_notice("budgets %s: Redis found again: harvest budgets shared again", s->name);
}

static void br_forget_base(void *state, struct event_base *base)
{
	struct budget_redis *s = state;
	redis_loops_forget(s->loops, base);
}

/* ---- a call ---- */

static void br_capture(void *arg, const struct budget_state *states, size_t n)
{
	memcpy(arg, states, n * sizeof *states);
}

static void br_q_free(struct budget_query *q)
{
	redis_cmd_cancel(q->cmd);
	if (q->timer)
		event_free(q->timer);
	free(q);
}

static void br_q_answer(struct budget_query *q, const struct budget_state *st)
{
	budget_cb cb = q->cb;
	void *arg = q->arg;
	struct budget_state copy[BUDGET_KEYS_MAX];
	size_t n = q->n;

	memcpy(copy, st, n * sizeof *st);
	br_q_free(q);
	if (cb)
		cb(arg, copy, n);
}

static void br_take_answer(struct budget_query *q, unsigned granted)
{
	budget_take_cb cb = q->tcb;
	void *arg = q->arg;

	br_q_free(q);
	cb(arg, granted);
}

/* Redis could not say: the local store's answer (an add was counted there already); a rate is
 * left to this process's own limiter. */
static void br_q_fallback(struct budget_query *q)
{
	atomic_fetch_add(&q->s->fallbacks, 1);
	if (q->take) {
		br_take_answer(q, q->want);
		return;
	}
	if (!q->add) {
		const char *ptrs[BUDGET_KEYS_MAX];
		for (size_t i = 0; i < q->n; i++)
			ptrs[i] = q->keys[i];
		memset(q->local, 0, sizeof q->local);
		budget_store_get(q->s->local, NULL, ptrs, q->rules, q->n, q->now, br_capture, q->local);
	}
	br_q_answer(q, q->local);
}

static int br_q_send(struct budget_query *q);

/* A value's state at wall (the script's reading of it); penalty_until_ms on the caller's clock
 * (now). A value that does not parse counts nothing. */
static void br_decode(const char *v, const struct budget_rule *rule, uint64_t wall, uint64_t now,
		      struct budget_state *st)
{
	uint64_t width = rule->window_ms / 16 ? rule->window_ms / 16 : 1, idx = wall / width, total = 0;
	char *end;
	uint64_t w = strtoull(v, &end, 10);

	if (*end != ':')
		return;
	uint64_t pu = strtoull(end + 1, &end, 10);
	if (*end != ':')
		return;
	for (const char *p = end + 1; *p; p += *p == ',') {
		uint64_t slot = strtoull(p, &end, 10);
		if (*end != '=')
			return;
		uint64_t c = strtoull(end + 1, &end, 10);
		if (w != width || slot + 17 > idx) /* a changed window: everything, as the script does */
			total += c;
		p = end;
	}
	st->count = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
	st->penalty_until_ms = pu > wall ? now + (pu - wall) : 0;
}

static void br_on_reply(void *arg, const redisReply *r)
{
	struct budget_query *q = arg;
	struct budget_redis *s = q->s;
	struct budget_state st[BUDGET_KEYS_MAX];

	q->cmd = NULL;
	if (q->take && r && r->type == REDIS_REPLY_INTEGER) { /* the second's count, ours included */
		unsigned long long c = r->integer > 0 ? (unsigned long long)r->integer : 0, before = c - q->want;
		unsigned granted = c <= q->limit ? q->want : before < q->limit ? (unsigned)(q->limit - before) : 0;
		atomic_fetch_add(&s->answered, 1);
		atomic_fetch_add(&s->taken, granted);
		atomic_fetch_add(&s->refused, q->want - granted);
		br_take_answer(q, granted);
		return;
	}
	if (!q->take && !q->add && r && r->type == REDIS_REPLY_ARRAY && r->elements == q->n) {
		memset(st, 0, sizeof st);
		for (size_t i = 0; i < q->n; i++)
			if (r->element[i]->type == REDIS_REPLY_STRING)
				br_decode(r->element[i]->str, &q->rules[i], q->wall, q->now, &st[i]);
		atomic_fetch_add(&s->answered, 1);
		br_q_answer(q, st);
		return;
	}
	if (r && r->type == REDIS_REPLY_ERROR && q->evalsha && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		q->evalsha = false; /* first use on this Redis: send the script itself */
		if (br_q_send(q) != 0)
			br_q_fallback(q);
		return;
	}
	if (r == NULL || q->take || r->type != REDIS_REPLY_ARRAY || r->elements != 3 * q->n) {
		if (r && atomic_fetch_add(&s->errors, 1) == 0)
			log_err("budgets %s: Redis answered %s: harvest budgets counted by this gateway alone",
				s->name, r->type == REDIS_REPLY_ERROR ? r->str : "something unexpected");
		br_q_fallback(q);
		return;
	}
	memset(st, 0, sizeof st);
	for (size_t i = 0; i < q->n; i++) {
		const redisReply *c = r->element[3 * i], *left = r->element[3 * i + 1], *tr = r->element[3 * i + 2];
		if (c->type != REDIS_REPLY_INTEGER || left->type != REDIS_REPLY_INTEGER || tr->type != REDIS_REPLY_INTEGER) {
			br_q_fallback(q);
			return;
		}
		st[i].count = c->integer < 0 ? 0 : c->integer > UINT32_MAX ? UINT32_MAX : (uint32_t)c->integer;
		st[i].penalty_until_ms = left->integer > 0 ? q->now + (uint64_t)left->integer : 0;
		st[i].tripped = tr->integer != 0;
		if (st[i].tripped)
			atomic_fetch_add(&s->trips, 1);
	}
	atomic_fetch_add(&s->answered, 1);
	br_q_answer(q, st);
}

static void br_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct budget_query *q = arg;
	(void)fd;
	(void)what;
	atomic_fetch_add(&q->s->timeouts, 1); /* Redis is slow: do not wait longer */
	br_q_fallback(q);
}

/* add: EVALSHA (or EVAL) sha n keys... a limit window penalty ... now; get: MGET keys... 0, or
 * -1: not connected. */
static int br_q_send(struct budget_query *q)
{
	struct budget_redis *s = q->s;
	const char *argv[4 + BUDGET_KEYS_MAX * 4 + 1];
	char nkeys[8], now[24], keys[BUDGET_KEYS_MAX][BUDGET_KEY_MAX + 100], nums[BUDGET_KEYS_MAX][3][24];
	int argc = 0;

	if (!q->add) {
		argv[argc++] = "MGET";
		for (size_t i = 0; i < q->n; i++) {
			snprintf(keys[i], sizeof keys[i], "%sb:%s", s->prefix, q->keys[i]);
			argv[argc++] = keys[i];
		}
		q->cmd = redis_conn_commandv(q->conn, br_on_reply, q, argc, argv);
		return q->cmd ? 0 : -1;
	}
	argv[argc++] = q->evalsha ? "EVALSHA" : "EVAL";
	argv[argc++] = q->evalsha ? s->sha : budget_redis_lua;
	snprintf(nkeys, sizeof nkeys, "%zu", q->n);
	argv[argc++] = nkeys;
	for (size_t i = 0; i < q->n; i++) {
		snprintf(keys[i], sizeof keys[i], "%sb:%s", s->prefix, q->keys[i]);
		argv[argc++] = keys[i];
	}
	argv[argc++] = "a";
	for (size_t i = 0; i < q->n; i++) {
		snprintf(nums[i][0], sizeof nums[i][0], "%u", q->rules[i].limit);
		snprintf(nums[i][1], sizeof nums[i][1], "%llu", (unsigned long long)q->rules[i].window_ms);
		snprintf(nums[i][2], sizeof nums[i][2], "%llu", (unsigned long long)q->rules[i].penalty_ms);
		for (int k = 0; k < 3; k++)
			argv[argc++] = nums[i][k];
	}
	snprintf(now, sizeof now, "%llu", (unsigned long long)q->wall);
	argv[argc++] = now;
	q->cmd = redis_conn_commandv(q->conn, br_on_reply, q, argc, argv);
	return q->cmd ? 0 : -1;
}

/* Bound the wait by cache_redis_timeout. */
static struct budget_query *br_q_arm(struct budget_query *q, struct event_base *base)
{
	uint64_t ms = q->s->target.timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	q->timer = evtimer_new(base, br_on_timeout, q);
	evtimer_add(q->timer, &tv);
	return q;
}

static uint64_t br_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct budget_query *br_call(struct budget_redis *s, struct event_base *base, bool add, const char *const *keys,
				    const struct budget_rule *rules, size_t n, uint64_t now, budget_cb cb, void *arg)
{
	n = n < BUDGET_KEYS_MAX ? n : BUDGET_KEYS_MAX;
	atomic_fetch_add(&s->calls, 1);
	struct budget_query *q = xcalloc(1, sizeof *q);
	q->s = s;
	q->add = add;
	q->evalsha = true;
	q->n = n;
	q->now = now;
	q->wall = br_wall_ms();
	q->cb = cb;
	q->arg = arg;
	for (size_t i = 0; i < n; i++) {
		strbuf_append(q->keys[i], sizeof q->keys[i], keys[i]);
		q->rules[i] = rules[i];
	}
	if (add) /* counted here too: this gateway's own count, should Redis go */
		budget_store_add(s->local, NULL, keys, rules, n, now, br_capture, q->local);
	if (base == NULL) { /* no loop to wait on */
		br_q_fallback(q);
		return NULL;
	}
	q->conn = redis_loops_conn(s->loops, base);
	if (br_q_send(q) != 0) { /* not connected: the local store alone, nothing queued */
		br_q_fallback(q);
		return NULL;
	}
	return br_q_arm(q, base);
}

static struct budget_query *br_get(void *state, struct event_base *base, const char *const *keys,
				   const struct budget_rule *rules, size_t n, uint64_t now, budget_cb cb, void *arg)
{
	return br_call(state, base, false, keys, rules, n, now, cb, arg);
}

static struct budget_query *br_add(void *state, struct event_base *base, const char *const *keys,
				   const struct budget_rule *rules, size_t n, uint64_t now, budget_cb cb, void *arg)
{
	return br_call(state, base, true, keys, rules, n, now, cb, arg);
}

/* A rate per second: INCRBY "r:KEY:SECOND" n, and PEXPIRE so that the second's key goes. */
static struct budget_query *br_take(void *state, struct event_base *base, const char *key, uint64_t second,
				    unsigned n, unsigned limit, budget_take_cb cb, void *arg)
{
	struct budget_redis *s = state;
	char k[BUDGET_KEY_MAX + 300], num[24];

	atomic_fetch_add(&s->takes, 1);
	if (base == NULL || n == 0 || limit == 0) {
		cb(arg, n);
		return NULL;
	}
	struct budget_query *q = xcalloc(1, sizeof *q);
	q->s = s;
	q->take = true;
	q->want = n;
	q->limit = limit;
	q->tcb = cb;
	q->arg = arg;
	q->conn = redis_loops_conn(s->loops, base);
	snprintf(k, sizeof k, "%sr:%s:%llu", s->prefix, key, (unsigned long long)second);
	snprintf(num, sizeof num, "%u", n);
	const char *incr[3] = { "INCRBY", k, num }, *expire[3] = { "PEXPIRE", k, "2000" };
	q->cmd = redis_conn_commandv(q->conn, br_on_reply, q, 3, incr);
	if (q->cmd == NULL) { /* not connected: this process's limiter alone */
		br_q_fallback(q);
		return NULL;
	}
	redis_conn_commandv(q->conn, NULL, NULL, 3, expire);
	return br_q_arm(q, base);
}

static void br_cancel(struct budget_query *q)
{
	br_q_free(q);
}

static void br_stats(void *state, FILE *out)
{
	struct budget_redis *s = state;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	fprintf(out, "budget_store=redis\nbudget_redis_reachable=%s\nbudget_key_prefix=%s\nbudget_redis_calls=%lu\n"
		     "budget_redis_answered=%lu\nbudget_redis_fallbacks=%lu\nbudget_redis_timeouts=%lu\n"
		     "budget_redis_errors=%lu\nbudget_trips=%lu\nbudget_rate_takes=%lu\nbudget_rate_taken=%lu\n"
		     "budget_rate_refused=%lu\n",
		atomic_load(&s->down) ? "no" : "yes", s->prefix, atomic_load(&s->calls), atomic_load(&s->answered),
		atomic_load(&s->fallbacks), atomic_load(&s->timeouts), atomic_load(&s->errors), atomic_load(&s->trips),
		atomic_load(&s->takes), atomic_load(&s->taken), atomic_load(&s->refused));
	if (mem == NULL)
		return;
	budget_store_stats(s->local, mem); /* "budget_x=..." -> "budget_local_x=..." */
	fclose(mem);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (strncmp(line, "budget_", 7) == 0 && strncmp(line, "budget_store=", 13) != 0)
			fprintf(out, "budget_local_%s\n", line + 7);
	free(buf);
}

static void br_free(void *state)
{
	struct budget_redis *s = state;

	redis_loops_free(s->loops); /* the loops' connections their owners did not forget, before
				     * the target they use */
	budget_store_free(s->local);
	redis_target_clear(&s->target);
	free(s);
}

static const struct budget_store_type budget_redis_type = {
	.name = "redis",
	.get = br_get,
	.add = br_add,
	.cancel = br_cancel,
	.take = br_take,
	.stats = br_stats,
	.free = br_free,
	.forget_base = br_forget_base,
};

static void br_sha1(const char *text, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha1(), NULL);
	for (unsigned i = 0; i < mdlen && i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct budget_store *budget_redis_new(const struct bs_config *cfg, size_t max_entries, char *why, size_t whysz)
{
	enum redis_kind kind;
	const char *arg;
	struct budget_redis *s = xcalloc(1, sizeof *s);

	s->local = budget_memory_new(max_entries);
	if (!redis_target_kind(cfg->cache, &kind, &arg)) {
		snprintf(why, whysz, "cache %s: not a Redis store", cfg->cache ? cfg->cache : "");
		br_free(s);
		return NULL;
	}
	snprintf(s->name, sizeof s->name, "%s", cfg->cache);
	if (redis_target_make(&s->target, kind, arg, s->name, cfg, why, whysz) != 0) {
		br_free(s);
		return NULL;
	}
	s->loops = redis_loops_new(&s->target, br_state, s);
	redis_key_prefix(cfg, s->prefix, sizeof s->prefix);
	br_sha1(budget_redis_lua, s->sha);
	struct budget_store *st = xcalloc(1, sizeof *st);
	st->type = &budget_redis_type;
	st->state = s;
	return st;
}
