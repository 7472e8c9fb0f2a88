/* stats_history.h - the last hour of RCPT decisions, one slot per minute (accepted, rejected,
 * deferred), for the status page's chart. Fed by periodic samples of the engine's running
 * totals; owned and used by one thread (the metrics thread): no locking. */
#ifndef BACKSTOP_STATS_HISTORY_H
#define BACKSTOP_STATS_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#define STATS_HISTORY_MINUTES 60

enum stats_history_kind { HIST_ACCEPTED = 0, HIST_REJECTED, HIST_DEFERRED, HIST_KINDS };

struct stats_history {
	uint64_t minute[STATS_HISTORY_MINUTES];          /* which minute (since the epoch) a slot holds */
	uint64_t count[STATS_HISTORY_MINUTES][HIST_KINDS];
	uint64_t last_total[HIST_KINDS];                 /* running totals at the last sample */
	bool primed;
};

void stats_history_init(struct stats_history *h);
/* The running totals at wall-clock time now (seconds): what grew since the last sample is
 * counted in now's minute. The first sample only sets the baseline. */
void stats_history_sample(struct stats_history *h, uint64_t now, const uint64_t totals[HIST_KINDS]);
/* Counts of the minute `ago` minutes before now's (0 = the current minute); 0 for a minute not
 * recorded. */
uint64_t stats_history_get(const struct stats_history *h, uint64_t now, unsigned ago, enum stats_history_kind k);

#endif
