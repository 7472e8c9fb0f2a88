/* rcpt_map.h - extras of the map: source beyond struct rcpt_source_type: its load counters, for
 * tests and the stats command. The state is what rcpt_map_type.open returned. */
#ifndef BACKSTOP_RCPT_MAP_H
#define BACKSTOP_RCPT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rcpt_map_status {
	unsigned attempts;  /* loads tried (start-up, watcher, reload()) */
	unsigned failures;  /* of which failed: the previous data stayed */
	size_t entries;     /* in the data being served (0 if none loaded yet) */
	bool loaded;        /* some version is being served */
	uint64_t last_load_time; /* wall clock, seconds, of the last load tried (0: none) */
	bool last_load_ok;  /* it succeeded */
};

void rcpt_map_status(void *state, struct rcpt_map_status *out);

/* Read and parse a map file the way the source does (for check-config): 0, or -1 with
 * "PATH: cannot read: ..." or "PATH:LINE: ..." in why. */
int rcpt_map_check(const char *path, char *why, size_t whysz);

/* Wait until more than `attempts` loads have been tried, at most timeout_ms. Returns true if
 * that happened. For tests: lets them wait for the watcher without sleeping blindly. */
bool rcpt_map_wait_attempts(void *state, unsigned attempts, unsigned timeout_ms);

#endif
