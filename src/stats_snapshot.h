/* stats_snapshot.h - every figure the daemon exposes, gathered into one plain struct: the SMTP
 * front end's counters summed over the workers, the engine's decisions, backends and their
 * circuit breakers, recipient sources (maps, validation servers, LDAP pools), the verdict cache
 * and the configuration's generation. The metrics endpoint, the status page and `backstop
 * status` all render the same snapshot. Filling one takes no lock a worker waits on for long:
 * the counters are relaxed atomics, the tables' mutexes are held only to copy a few rows. */
#ifndef BACKSTOP_STATS_SNAPSHOT_H
#define BACKSTOP_STATS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend_health.h"
#include "check.h"
#include "engine_stats.h"
#include "stats.h"

#define STATS_MAX_BACKENDS 64
#define STATS_MAX_SOURCES 64
#define STATS_NAME_MAX 300
#define STATS_ENGINE_ROWS ((CHECK_TYPES_MAX + 1) * ENGINE_STAGE_COUNT)

struct stats_backend {
	char target[STATS_NAME_MAX];   /* "host:port" as configured */
	enum backend_state state;      /* circuit breaker */
	unsigned long trips;           /* times the breaker opened */
	unsigned connections;          /* open now, idle pooled ones included */
	unsigned waiting;              /* transactions waiting for a connection slot */
};

enum stats_source_kind { STATS_SOURCE_OTHER = 0, STATS_SOURCE_MAP, STATS_SOURCE_CALLOUT, STATS_SOURCE_LDAP };

struct stats_source {
	char spec[STATS_NAME_MAX];     /* "map:/etc/...", "callout:host:port", "ldap:NAME" */
	char type[16];                 /* the prefix */
	enum stats_source_kind kind;
	bool surrogate;                /* could not be opened: answers unavailable */
	bool up;                       /* map loaded, validation server not skipped, opened */
	uint64_t lookups, valid, invalid, unavailable;
	/* map: */
	bool loaded, last_load_ok;
	uint64_t entries, loads, load_failures, last_load_time;
	/* callout: */
	uint64_t probes, conns_open, conns_opened, connect_failures, waiting, queued;
	/* ldap: */
	uint64_t pool_size, inflight, timeouts;
};

struct stats_cache {
	bool configured;               /* a cache is open (verification is configured) */
	bool up;
	char store[16];                /* "lmdb", "memory", ... */
	uint64_t entries, max_entries, hits, misses, puts, evicted, write_errors;
};

struct stats_verify {
	bool configured;
	uint64_t lookups, cache_hits, cache_misses, timeouts, refreshes, background;
};

struct stats_verdicts {
	char source[STATS_NAME_MAX];   /* the spec that answered, "none", or "other" */
	uint64_t n[ENGINE_VERDICTS][2]; /* [valid, invalid, unavailable][from the cache] */
};

struct stats_snapshot {
	uint64_t now;                  /* wall clock, seconds */
	const char *version;
	char hostname[256];             /* the configuration's hostname */
	unsigned workers;
	uint64_t start_time, generation, reloads_ok, reloads_failed, last_reload_time;
	bool last_reload_ok;
	struct stats_totals smtp;
	struct engine_stats_row engine[STATS_ENGINE_ROWS];
	size_t nengine;
	struct stats_backend backends[STATS_MAX_BACKENDS];
	size_t nbackends;
	struct stats_source sources[STATS_MAX_SOURCES];
	size_t nsources;
	struct stats_cache cache;
	struct stats_verify verify;
	struct stats_verdicts verdicts[ENGINE_VERDICT_SOURCES + 1];
	size_t nverdicts;
	struct engine_outcome_row outcomes[ENGINE_OUTCOMES + 1]; /* what checks found (static names) */
	size_t noutcomes;
};

struct bs_runtime;
struct backend_slots;
struct vcache;

/* What a snapshot is read from: borrowed from the server, thread-safe to read. */
struct stats_view {
	struct stats_worker *const *workers;
	size_t nworkers;
	struct stats_process *process;
	struct engine_stats *engine;
	struct backend_health *health;
	struct backend_slots *slots;
	struct vcache *cache;                       /* NULL: none */
	struct bs_runtime *(*runtime)(void *arg);   /* the current generation, with a reference */
	void *runtime_arg;
};

/* Fill out (large: allocate it) from v. Any thread. */
void stats_snapshot_fill(const struct stats_view *v, struct stats_snapshot *out);

/* Parse "key=value" tokens (space or newline separated, values optionally in double quotes) as
 * the stats() functions of sources and stores write them: fn(arg, key, value) per token. */
void stats_kv_parse(const char *text, void (*fn)(void *arg, const char *key, const char *value), void *arg);

/* The main figures as "key=value" lines, one backend or source per line (backstop status). */
void stats_snapshot_print(const struct stats_snapshot *s, FILE *out);

/* Derived figures for readers. */
uint64_t stats_decisions(const struct stats_snapshot *s, enum engine_stage stage, enum check_result r);

#endif
