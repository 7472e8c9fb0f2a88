/* stats_history.c - the per-minute ring of decisions behind the status page's chart. */
#include "stats_history.h"

#include <string.h>

void stats_history_init(struct stats_history *h)
{
	memset(h, 0, sizeof *h);
}

void stats_history_sample(struct stats_history *h, uint64_t now, const uint64_t totals[HIST_KINDS])
{
	uint64_t m = now / 60;
	size_t slot = (size_t)(m % STATS_HISTORY_MINUTES);

	if (h->minute[slot] != m) {
		h->minute[slot] = m;
		memset(h->count[slot], 0, sizeof h->count[slot]);
	}
	for (int k = 0; k < HIST_KINDS; k++) {
		if (h->primed && totals[k] >= h->last_total[k])
			h->count[slot][k] += totals[k] - h->last_total[k];
		h->last_total[k] = totals[k];
	}
	h->primed = true;
}

uint64_t stats_history_get(const struct stats_history *h, uint64_t now, unsigned ago, enum stats_history_kind k)
{
	uint64_t m = now / 60;
	if (ago >= STATS_HISTORY_MINUTES || ago > m || (unsigned)k >= HIST_KINDS)
		return 0;
	m -= ago;
	size_t slot = (size_t)(m % STATS_HISTORY_MINUTES);
	return h->minute[slot] == m ? h->count[slot][k] : 0;
}
