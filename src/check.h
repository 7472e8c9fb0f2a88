/* check.h - what a check of the decision engine is: a row of the registry in checks.c. A check
 * names itself, says at which stages it runs, validates its own configuration keys, opens its
 * state for one configuration generation, and decides one request at a time through start /
 * cancel. Adding a check is one file (check_NAME.c, defining `const struct check_type
 * check_NAME_type`) plus one row in checks.c; the row's position is the check's place in the
 * order of every stage it runs at. */
#ifndef BACKSTOP_CHECK_H
#define BACKSTOP_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "engine.h"

struct cfg_loader;

/* A check's answer. Valid only during the callback; the engine copies what it keeps. */
struct check_answer {
	enum check_result result;
	int code;                      /* REJECT: 5xx, DEFER: 4xx (ACCEPT: optional 2xx) */
	char enhanced[8];
	char text[ENGINE_TEXT_MAX];    /* for the client, already sanitised */
	char log[ENGINE_LOG_MAX];      /* key=value pairs for the log line ("" for none) */
	char headers[ENGINE_HEADERS_MAX]; /* header fields to add on delivery, each ending in CRLF */
	char facts[ENGINE_FACTS_MAX];  /* the check's fact (one line, no newline: engine.h), or "" */
	bool rcpt_invalid;             /* the recipient does not exist (engine_decision.rcpt_invalid) */
};

typedef void (*check_cb)(void *arg, const struct check_answer *ans);

struct check_query; /* an outstanding start, defined by each check */

struct check_type {
	const char *name;     /* "relay", "verify": in logs and metrics */
	unsigned stages;      /* ENGINE_STAGE_BIT()s of the stages it runs at */
	/* Validate the check's own configuration keys once the file is loaded (called by
	 * config_validate.c): report each problem with config_error(L, line, ...), the line found
	 * with config_seen_line() (config_load.h). NULL: nothing to validate. */
	void (*validate)(struct cfg_loader *L);
	/* Open for one generation: 1 with *state set (the check runs), 0 (this configuration does
	 * not use the check), -1 with why set (cannot open). Main thread. */
	int (*open)(const struct engine_env *env, void **state, char *why, size_t whysz);
	void (*close)(void *state);
	/* Decide req (valid only during the call: copy what is kept). Answers through cb either from
	 * inside this call (returns NULL; for checks without I/O) or later from base's loop (returns
	 * a handle for cancel). Runs on base's thread; state is shared by all workers. */
	struct check_query *(*start)(void *state, struct event_base *base, const struct engine_request *req,
				     check_cb cb, void *arg);
	/* No callback after this; whatever the check still does is its own business. */
	void (*cancel)(struct check_query *q);
	/* Optional: told the final decision d of every request decided at a stage the check runs
	 * at, whichever check decided (or none), once per decision, before the front end gets it;
	 * not for a query cancelled before its decision. For checks that learn from outcomes (the
	 * harvest budgets count refused unknown recipients). Runs on the deciding worker's thread
	 * (base is its loop); must not block. NULL: not told. */
	void (*observe)(void *state, struct event_base *base, const struct engine_request *req,
			const struct engine_decision *d);
};

/* The registry, in order (checks.c). */
extern const struct check_type *const check_types[];
extern const size_t check_types_count;
#define CHECK_TYPES_MAX 16

/* Run every check's validate (config_validate.c calls it). */
void checks_validate(struct cfg_loader *L);

/* Answer helpers for checks. */
void check_answer_neutral(struct check_answer *a);
void check_answer_set(struct check_answer *a, enum check_result r, int code, const char *enhanced,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with the text as it is (no formatting: the cheap one, per RCPT). */
void check_answer_set_text(struct check_answer *a, enum check_result r, int code, const char *enhanced,
			   const char *text);

extern const struct check_type check_relay_type;
extern const struct check_type check_verify_type;
extern const struct check_type check_spf_type;
extern const struct check_type check_dnsbl_type;
extern const struct check_type check_harvest_type;

/* Test hook: put a list of check types in place of the registry for the engines built after
 * this call and for engine_stats' names (NULL restores the registry). */
void checks_override_for_tests(const struct check_type *const *types, size_t n);
/* The registry in force: check_types, or the list put in its place for a test. The index of a
 * check in it is the one engine_stats counts under. */
const struct check_type *const *checks_registry(size_t *n);

#endif
