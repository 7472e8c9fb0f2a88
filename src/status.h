/* status.h - `backstop status`: the running daemon's figures as text (version, uptime,
 * configuration generation and last reload, workers, sessions, backends and sources with their
 * health, verdict cache, decisions). The figures come from the same stats snapshot as the metrics
 * endpoint and the status page (stats_snapshot.h), so the three always agree; the server adds
 * what only it knows (the file, the last reload's error). The control socket sends the text. */
#ifndef BACKSTOP_STATUS_H
#define BACKSTOP_STATUS_H

#include <stdint.h>
#include <stdio.h>

struct stats_snapshot;
struct connlimit;

struct status_view {
	const struct stats_snapshot *snap; /* the figures */
	const char *config_path;           /* of the running generation */
	size_t ndomains;
	uint64_t loaded_at;                /* when the running generation was made, s */
	const char *last_reload;           /* "applied at ...", "refused at ...: why", or NULL */
	struct connlimit *policy_limit;    /* policy service connections */
};

void status_print(const struct status_view *v, FILE *out);

/* t (s since the epoch) as "2026-12-07T06:50:58Z" into buf (at least 24 bytes). */
void status_time(uint64_t t, char *buf, size_t bufsz);

#endif
