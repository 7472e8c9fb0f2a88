/* engine_stats.h - what the decision engine decided, counted in one place for the whole process
 * (kept across reloads): per check and stage, its answers by kind, timeouts and a latency
 * histogram; per stage, the decisions by kind. Lock-free counters: checks on every worker add to
 * them, a reader (backstop status, the metrics endpoint) takes a consistent-enough snapshot. */
#ifndef BACKSTOP_ENGINE_STATS_H
#define BACKSTOP_ENGINE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "engine.h"

/* Upper bounds of the latency buckets, in ms (the last bucket is everything above). */
#define ENGINE_LATENCY_BUCKETS 10
extern const uint64_t engine_latency_bounds_ms[ENGINE_LATENCY_BUCKETS - 1];

struct engine_stats;

struct engine_stats *engine_stats_new(void);
void engine_stats_free(struct engine_stats *st);

/* A check (index in check_types) answered at stage after latency_ms. */
void engine_stats_answer(struct engine_stats *st, size_t check, enum engine_stage stage, enum check_result r,
			 uint64_t latency_ms);
/* A check was still running when its stage's deadline passed. */
void engine_stats_timeout(struct engine_stats *st, size_t check, enum engine_stage stage);
/* A stage decided r after latency_ms. */
void engine_stats_decision(struct engine_stats *st, enum engine_stage stage, enum check_result r,
			   uint64_t latency_ms);

/* One row of the snapshot, per check (NULL name: the whole stage) and stage. */
struct engine_stats_row {
	const char *check;          /* check name, NULL for the stage's decisions */
	enum engine_stage stage;
	uint64_t answers[CHECK_RESULT_COUNT];
	uint64_t timeouts;
	uint64_t latency_buckets[ENGINE_LATENCY_BUCKETS]; /* not cumulative */
	uint64_t latency_sum_ms;
};

/* Call fn for every row that has counted something. */
void engine_stats_each(struct engine_stats *st, void (*fn)(void *arg, const struct engine_stats_row *row),
		       void *arg);
/* Recipient verification's verdicts by the source that gave them (its spec, as configured; at
 * most ENGINE_VERDICT_SOURCES distinct, the rest counted under "other"), by verdict (enum
 * rcpt_verdict: valid, invalid, unavailable) and whether the cache answered. */
#define ENGINE_VERDICT_SOURCES 32
#define ENGINE_VERDICTS 3
void engine_stats_verdict(struct engine_stats *st, const char *source, unsigned verdict, bool cached);

struct engine_verdict_row {
	const char *source;                      /* valid while st lives */
	uint64_t n[ENGINE_VERDICTS][2];          /* [verdict][cached] */
};
void engine_stats_each_verdict(struct engine_stats *st, void (*fn)(void *arg, const struct engine_verdict_row *row),
			       void *arg);

/* What a check found, beside how it answered: SPF's result word, a DNSBL listing, a harvest budget
 * tripped. check and outcome are static strings (literals, or names from a fixed table: they
 * are kept by pointer), from a small fixed vocabulary per check, never client data; at most
 * ENGINE_OUTCOMES distinct pairs, the rest counted under "other". */
#define ENGINE_OUTCOMES 64
void engine_stats_outcome(struct engine_stats *st, const char *check, const char *outcome);

struct engine_outcome_row {
	const char *check, *outcome; /* static */
	uint64_t n;
};
void engine_stats_each_outcome(struct engine_stats *st, void (*fn)(void *arg, const struct engine_outcome_row *row),
			       void *arg);

/* "key=value" lines (backstop status, tests). */
void engine_stats_print(struct engine_stats *st, FILE *out);

#endif
