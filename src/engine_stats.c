/* engine_stats.c - the engine's counters: a fixed array of atomics per (check, stage), so that
 * counting never takes a lock and never allocates; one array per thread slot (a worker counts
 * in its own: no cache line goes back and forth between cores on every RCPT), summed by the
 * reader. */
#include "engine_stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const uint64_t engine_latency_bounds_ms[ENGINE_LATENCY_BUCKETS - 1] = { 1, 5, 10, 50, 100, 500, 1000, 5000, 20000 };

struct engine_counters {
	atomic_ulong answers[CHECK_RESULT_COUNT];
	atomic_ulong timeouts;
	atomic_ulong buckets[ENGINE_LATENCY_BUCKETS];
	atomic_ulong sum_ms;
};

struct verdict_counters {
	_Atomic(char *) source;    /* set once (under the lock), never changed */
	atomic_ulong n[ENGINE_VERDICTS][2];
};

struct outcome_counters {
	_Atomic(const char *) check;  /* set once (under the lock) with outcome, never changed */
	const char *outcome;
	atomic_ulong n;
};

/* Row CHECK_TYPES_MAX of each stage holds the stage's own decisions. */
struct engine_stats_shard {
	struct engine_counters c[CHECK_TYPES_MAX + 1][ENGINE_STAGE_COUNT];
} __attribute__((aligned(64)));

/* Threads take slots in turn; more threads than slots share them (still correct: atomics). */
#define ENGINE_STATS_SHARDS 8

struct engine_stats {
	struct engine_stats_shard shard[ENGINE_STATS_SHARDS];
	/* verdicts by source (counted once per RCPT at most): the last row is "other"; rows are
	 * claimed under lock, read without it */
	struct verdict_counters v[ENGINE_VERDICT_SOURCES + 1];
	/* what checks found, by (check, outcome); the last row is "other" */
	struct outcome_counters o[ENGINE_OUTCOMES + 1];
	pthread_mutex_t vlock; /* claims rows of v and o */
};

static atomic_uint engine_stats_next_slot;
static _Thread_local int engine_stats_slot = -1;

static struct engine_stats_shard *shard(struct engine_stats *st)
{
	if (engine_stats_slot < 0)
		engine_stats_slot = (int)(atomic_fetch_add(&engine_stats_next_slot, 1) % ENGINE_STATS_SHARDS);
	return &st->shard[engine_stats_slot];
}

struct engine_stats *engine_stats_new(void)
{
	struct engine_stats *st = aligned_alloc(64, sizeof *st); /* the slots on their own cache lines */
	if (st == NULL)
		abort();
	memset(st, 0, sizeof *st);
	pthread_mutex_init(&st->vlock, NULL);
	return st;
}

void engine_stats_free(struct engine_stats *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i <= ENGINE_VERDICT_SOURCES; i++)
		free(atomic_load(&st->v[i].source));
	pthread_mutex_destroy(&st->vlock);
	free(st);
}

/* The row of source: found without a lock (rows are only ever added), claimed under it. */
static struct verdict_counters *verdict_row(struct engine_stats *st, const char *source)
{
	size_t i;
	for (i = 0; i < ENGINE_VERDICT_SOURCES; i++) {
		const char *name = atomic_load_explicit(&st->v[i].source, memory_order_acquire);
		if (name == NULL)
			break;
		if (strcmp(name, source) == 0)
			return &st->v[i];
	}
	if (i == ENGINE_VERDICT_SOURCES)
		return &st->v[ENGINE_VERDICT_SOURCES];
	pthread_mutex_lock(&st->vlock);
	for (; i < ENGINE_VERDICT_SOURCES; i++) {
		const char *name = atomic_load_explicit(&st->v[i].source, memory_order_acquire);
		if (name == NULL) {
			atomic_store_explicit(&st->v[i].source, xstrdup(source), memory_order_release);
			break;
		}
		if (strcmp(name, source) == 0)
			break;
	}
	pthread_mutex_unlock(&st->vlock);
	return &st->v[i];
}

void engine_stats_verdict(struct engine_stats *st, const char *source, unsigned verdict, bool cached)
{
	if (st == NULL || verdict >= ENGINE_VERDICTS)
		return;
	struct verdict_counters *row = verdict_row(st, source && source[0] ? source : "none");
	atomic_fetch_add_explicit(&row->n[verdict][cached ? 1 : 0], 1, memory_order_relaxed);
}

void engine_stats_each_verdict(struct engine_stats *st, void (*fn)(void *arg, const struct engine_verdict_row *row),
			       void *arg)
{
	struct engine_verdict_row row;
	if (st == NULL)
		return;
	for (size_t i = 0; i <= ENGINE_VERDICT_SOURCES; i++) {
		const char *name = i < ENGINE_VERDICT_SOURCES ? atomic_load_explicit(&st->v[i].source, memory_order_acquire)
							      : "other";
		uint64_t total = 0;
		if (name == NULL)
			continue;
		row.source = name;
		for (size_t k = 0; k < ENGINE_VERDICTS; k++)
			for (size_t c = 0; c < 2; c++)
				total += row.n[k][c] = atomic_load_explicit(&st->v[i].n[k][c], memory_order_relaxed);
		if (total > 0)
			fn(arg, &row);
	}
}

/* The row of (check, outcome): found without a lock (rows are only ever added), claimed under
 * it; check is published last, so a reader that sees it sees outcome. */
static struct outcome_counters *outcome_row(struct engine_stats *st, const char *check, const char *outcome)
{
	size_t i;
	for (i = 0; i < ENGINE_OUTCOMES; i++) {
		const char *c = atomic_load_explicit(&st->o[i].check, memory_order_acquire);
		if (c == NULL)
			break;
		if (strcmp(c, check) == 0 && strcmp(st->o[i].outcome, outcome) == 0)
			return &st->o[i];
	}
	if (i == ENGINE_OUTCOMES)
		return &st->o[ENGINE_OUTCOMES];
	pthread_mutex_lock(&st->vlock);
	for (; i < ENGINE_OUTCOMES; i++) {
		const char *c = atomic_load_explicit(&st->o[i].check, memory_order_acquire);
		if (c == NULL) {
			st->o[i].outcome = outcome;
			atomic_store_explicit(&st->o[i].check, check, memory_order_release);
			break;
		}
		if (strcmp(c, check) == 0 && strcmp(st->o[i].outcome, outcome) == 0)
			break;
	}
	pthread_mutex_unlock(&st->vlock);
	return &st->o[i];
}

void engine_stats_outcome(struct engine_stats *st, const char *check, const char *outcome)
{
	if (st == NULL || check == NULL || outcome == NULL)
		return;
	atomic_fetch_add_explicit(&outcome_row(st, check, outcome)->n, 1, memory_order_relaxed);
}

void engine_stats_each_outcome(struct engine_stats *st, void (*fn)(void *arg, const struct engine_outcome_row *row),
			       void *arg)
{
	struct engine_outcome_row row;
	if (st == NULL)
		return;
	for (size_t i = 0; i <= ENGINE_OUTCOMES; i++) {
		const char *c = i < ENGINE_OUTCOMES ? atomic_load_explicit(&st->o[i].check, memory_order_acquire)
						    : "other";
		if (c == NULL)
			continue;
		row.check = c;
		row.outcome = i < ENGINE_OUTCOMES ? st->o[i].outcome : "other";
		row.n = atomic_load_explicit(&st->o[i].n, memory_order_relaxed);
		if (row.n > 0)
			fn(arg, &row);
	}
}

static size_t latency_bucket(uint64_t ms)
{
	size_t i = 0;
	while (i < ENGINE_LATENCY_BUCKETS - 1 && ms > engine_latency_bounds_ms[i])
		i++;
	return i;
}

static void count(struct engine_counters *c, enum check_result r, uint64_t ms)
{
	atomic_fetch_add_explicit(&c->answers[r], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->buckets[latency_bucket(ms)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->sum_ms, ms, memory_order_relaxed);
}

void engine_stats_answer(struct engine_stats *st, size_t check, enum engine_stage stage, enum check_result r,
			 uint64_t latency_ms)
{
	if (st != NULL && check < CHECK_TYPES_MAX && stage < ENGINE_STAGE_COUNT && r < CHECK_RESULT_COUNT)
		count(&shard(st)->c[check][stage], r, latency_ms);
}

void engine_stats_timeout(struct engine_stats *st, size_t check, enum engine_stage stage)
{
	if (st != NULL && check < CHECK_TYPES_MAX && stage < ENGINE_STAGE_COUNT)
		atomic_fetch_add_explicit(&shard(st)->c[check][stage].timeouts, 1, memory_order_relaxed);
}

void engine_stats_decision(struct engine_stats *st, enum engine_stage stage, enum check_result r,
			   uint64_t latency_ms)
{
	if (st != NULL && stage < ENGINE_STAGE_COUNT && r < CHECK_RESULT_COUNT)
		count(&shard(st)->c[CHECK_TYPES_MAX][stage], r, latency_ms);
}

/* The row of (check i, stage s), summed over the slots. */
static bool row_read(struct engine_stats *st, size_t i, int s, struct engine_stats_row *row)
{
	uint64_t total = 0;

	memset(row->answers, 0, sizeof row->answers);
	memset(row->latency_buckets, 0, sizeof row->latency_buckets);
	row->timeouts = row->latency_sum_ms = 0;
	for (size_t n = 0; n < ENGINE_STATS_SHARDS; n++) {
		const struct engine_counters *c = &st->shard[n].c[i][s];
		for (size_t k = 0; k < CHECK_RESULT_COUNT; k++)
			row->answers[k] += atomic_load_explicit(&c->answers[k], memory_order_relaxed);
		row->timeouts += atomic_load_explicit(&c->timeouts, memory_order_relaxed);
		for (size_t k = 0; k < ENGINE_LATENCY_BUCKETS; k++)
			row->latency_buckets[k] += atomic_load_explicit(&c->buckets[k], memory_order_relaxed);
		row->latency_sum_ms += atomic_load_explicit(&c->sum_ms, memory_order_relaxed);
	}
	for (size_t k = 0; k < CHECK_RESULT_COUNT; k++)
		total += row->answers[k];
	return total > 0 || row->timeouts > 0;
}

void engine_stats_each(struct engine_stats *st, void (*fn)(void *arg, const struct engine_stats_row *row),
		       void *arg)
{
	struct engine_stats_row row;
	size_t ntypes;
	const struct check_type *const *types = checks_registry(&ntypes);

	if (st == NULL)
		return;
	for (size_t i = 0; i <= CHECK_TYPES_MAX; i++) {
		if (i < CHECK_TYPES_MAX && i >= ntypes)
			continue;
		for (int s = 0; s < ENGINE_STAGE_COUNT; s++) {
			row.check = i < CHECK_TYPES_MAX ? types[i]->name : NULL;
			row.stage = (enum engine_stage)s;
			if (row_read(st, i, s, &row))
				fn(arg, &row);
		}
	}
}

static void print_row(void *arg, const struct engine_stats_row *row)
{
	FILE *out = arg;
	const char *who = row->check ? row->check : "decision";
	for (size_t k = 0; k < CHECK_RESULT_COUNT; k++)
		fprintf(out, "engine_%s_%s_%s=%llu\n", who, engine_stage_name(row->stage),
			check_result_name((enum check_result)k), (unsigned long long)row->answers[k]);
	if (row->check)
		fprintf(out, "engine_%s_%s_timeouts=%llu\n", who, engine_stage_name(row->stage),
			(unsigned long long)row->timeouts);
}

void engine_stats_print(struct engine_stats *st, FILE *out)
{
	engine_stats_each(st, print_row, out);
}
