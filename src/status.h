/* status.h - `backstop status`: the running daemon's figures as text (version, uptime,
 * configuration generation and last reload, workers, sessions, backends and sources with their
 * health, verdict cache, decisions). The server fills a status_view with what it owns and the
 * control socket sends what status_print writes. */
#ifndef BACKSTOP_STATUS_H
#define BACKSTOP_STATUS_H

#include <stdint.h>
#include <stdio.h>

struct bs_runtime;
struct connlimit;
struct backend_health;
struct vcache;
struct engine_stats;

struct status_view {
	uint64_t start_time;              /* s since the epoch */
	unsigned workers;
	unsigned generation;              /* 1 at start, +1 per applied reload */
	uint64_t loaded_at;               /* when the current generation was made, s */
	const char *last_reload;          /* "applied at ...", "refused at ...: why", or NULL */
	struct bs_runtime *rt;            /* the current generation (borrowed) */
	struct connlimit *connlimit;      /* SMTP sessions */
	struct connlimit *policy_limit;   /* policy service connections */
	struct backend_health *health;    /* delivery backends */
	struct vcache *cache;             /* or NULL */
	struct engine_stats *stats;       /* decisions */
};

void status_print(const struct status_view *v, FILE *out);

/* t (s since the epoch) as "2026-12-07T06:50:58Z" into buf (at least 24 bytes). */
void status_time(uint64_t t, char *buf, size_t bufsz);

#endif
