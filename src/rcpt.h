/* rcpt.h - recipient sources: does this mailbox exist? Every source (map:, callout:, ldap:)
 * implements struct rcpt_source_type and is one row of the registry in rcpt.c; the config names
 * a source as "prefix:argument" (verify = map:/etc/postfix/relay_recipients ldap:corp).
 * A source answers VALID, INVALID or UNAVAILABLE (with a reason), like a Postfix table's
 * found / not found / retry. A source that fails to open is replaced by a surrogate that
 * answers UNAVAILABLE with the reason it failed (rcpt_surrogate.c), never a fatal error.
 *
 * A domain's chain is its verify list, asked in order: the first VALID or INVALID wins; when
 * every source is UNAVAILABLE the chain is UNAVAILABLE (the caller applies on_unavailable).
 *
 * Threads: open/reload/stats/close run on the main thread; lookup/cancel run on any worker
 * thread (implementations are thread-safe) and answer on the caller's loop. */
#ifndef BACKSTOP_RCPT_H
#define BACKSTOP_RCPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <event2/event.h>

#include "config.h"
#include "smtp_address.h"

enum rcpt_verdict { RCPT_VALID = 0, RCPT_INVALID, RCPT_UNAVAILABLE };

#define RCPT_REASON_MAX 200
#define RCPT_ADDR_MAX (SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX) /* "local@domain", no NUL */

struct rcpt_answer {
	enum rcpt_verdict verdict;
	const char *source;     /* the spec, e.g. "map:/etc/relay_recipients"; static for the source's life */
	bool catchall;          /* VALID only because the domain accepts anything (map "@domain"
				 * entry, callout that accepted a random address): the chain
				 * applies the domain's on_catchall */
	bool local;             /* set by rcpt_chain_lookup(): the deciding source is `local` (never cache) */
	bool rate_limited;      /* UNAVAILABLE because a probe would exceed callout_max_rate: the
				 * recipient is deferred whatever on_unavailable says */
	char reason[RCPT_REASON_MAX]; /* for the log, never for the client: "no such entry",
				 * "ldap://dc1: timeout", "map: file unreadable: ..." */
};

/* The address being verified, normalised once by rcpt_addr_make() and shared by the cache (key)
 * and every source of the chain. */
struct rcpt_addr {
	/* "local@domain": domain normalised (lower case); local part lower-cased unless
	 * case_sensitive_local. This is the verdict-cache key. */
	char full[RCPT_ADDR_MAX + 1];
	/* the same without the sub-address ("user+tag@d" -> "user@d") when the domain has a
	 * recipient_delimiter and the local part holds one; "" otherwise. A source that does not
	 * find full should try base (Postfix relay_recipient_maps semantics). */
	char base[RCPT_ADDR_MAX + 1];
	size_t at;                 /* offset of the '@' in full: domain is full + at + 1 */
	bool case_sensitive_local; /* compare local parts byte for byte */
};

/* Build the normalised address from the local part (unquoted: smtp_address.local_raw) and a
 * domain already normalised with domain_normalise(), following dom's rules (case, delimiter).
 * Returns 0, or -1 if it does not fit or local/domain is empty. */
int rcpt_addr_make(struct rcpt_addr *out, const char *local, size_t local_len, const char *domain,
		   const struct bs_domain *dom);

/* The domain part of a normalised address. */
static inline const char *rcpt_addr_domain(const struct rcpt_addr *a) { return a->full + a->at + 1; }

typedef void (*rcpt_answer_cb)(void *arg, const struct rcpt_answer *ans);

struct rcpt_query; /* an outstanding lookup, defined by each source */

struct rcpt_source_type {
	const char *prefix; /* "map", "callout", "ldap" (the part before ':') */
	const char *syntax; /* how a spec is written, for messages: "map:FILE" */
	/* Check arg (the part after "prefix:") when the config is read, before the other keys and
	 * sections are known: syntax only, no I/O. 0, or -1 with *why pointing at a static
	 * sentence. NULL: any arg. */
	int (*check_spec)(const char *arg, const char **why);
	/* Check arg against the whole loaded config (a section it names exists), no I/O: 0, or -1
	 * with why filled (what is wrong, without the spec: the caller names it and its line).
	 * NULL: nothing to check. */
	int (*check_refs)(const char *arg, const struct bs_config *cfg, char *why, size_t whysz);
	/* Answers from memory, synchronously (map:): a lookup is cheaper than the verdict cache,
	 * so its verdicts are never cached, and the sources that start a chain are asked before the
	 * cache (an address just added to a map is accepted at once). */
	bool local;
	/* Open a source for arg (the part after "prefix:"). cfg is valid only during the call:
	 * copy what you need. Returns the source state, or NULL with a reason in why (an
	 * admin-readable sentence, FILE:LINE where it applies). Main thread; may block. */
	void *(*open)(const char *arg, const struct bs_config *cfg, char *why, size_t whysz);
	/* Start a lookup of addr (the caller keeps addr alive only during this call: copy it).
	 * Either answers synchronously (done is called before returning, which returns NULL), or
	 * returns a handle and calls done exactly once later from the loop of base (the calling
	 * worker's loop) unless cancelled first. ans is valid only during done. Thread-safe. */
	struct rcpt_query *(*lookup)(void *state, struct event_base *base, const struct rcpt_addr *addr,
				     rcpt_answer_cb done, void *arg);
	/* Abandon a query (same thread as its lookup, before done ran): done will not be called
	 * and the handle is freed. */
	void (*cancel)(struct rcpt_query *q);
	/* Re-read the data (SIGHUP, `backstop sync`). Returns 0, or -1 keeping the old data (the
	 * source logs why). NULL if there is nothing to reload. Main thread. */
	int (*reload)(void *state);
	/* One or more "key=value" lines about the source (entries, lookups, errors, last load). */
	void (*stats)(void *state, FILE *out);
	/* Forget answers remembered outside the verdict cache (a callout's few-second memo of fresh
	 * answers), so that the next lookup asks: a verdict was purged. NULL: nothing remembered.
	 * Main thread; takes effect before any lookup started after it returns. */
	void (*forget)(void *state);
	void (*close)(void *state); /* no lookup is outstanding when this is called */
};

/* The registry: the type for a spec's prefix, with *arg set to the part after ':'; NULL if
 * no type has that prefix or spec has no ':'. Callers that treat one type apart compare the
 * row (== &rcpt_map_type), never the text. */
const struct rcpt_source_type *rcpt_type_find(const char *spec, const char **arg);

/* A spec's syntax, checked by its type's row (the `verify` key's check, config.c): 0, or -1
 * with *why static (an unknown prefix lists the known ones). */
int rcpt_spec_check(const char *spec, const char **why);
/* A spec against the whole loaded config, by its type's row (config_validate.c): 0, or -1 with
 * why filled. An unknown prefix passes (rcpt_spec_check reported it). */
int rcpt_spec_check_refs(const char *spec, const struct bs_config *cfg, char *why, size_t whysz);

/* For tests: add a type to the registry's lookup (at most 8 extra; not thread-safe: call before
 * opening sources). */
void rcpt_type_register_extra(const struct rcpt_source_type *type);

/* An opened source: its type, its state and its spec (the text answers name it by). */
struct rcpt_source {
	const struct rcpt_source_type *type;
	void *state;
	char *spec;      /* "map:/path" as configured; owned */
	bool surrogate;  /* open failed: every lookup answers UNAVAILABLE with the reason */
};

/* Every source a config names, each opened once however many domains list it, and each
 * domain's chain. Built on the main thread at start-up / reload; read-only afterwards, so
 * workers share it without locks. Owns its sources. */
struct rcpt_registry;

/* Open every source named by cfg's domains. Never fails: a source that cannot be opened is
 * logged (with the reason) and replaced by a surrogate. */
struct rcpt_registry *rcpt_registry_open(const struct bs_config *cfg);
void rcpt_registry_close(struct rcpt_registry *reg);
/* Reload every source; returns the number that failed (they keep their old data). */
int rcpt_registry_reload(struct rcpt_registry *reg);
void rcpt_registry_stats(struct rcpt_registry *reg, FILE *out);
/* Every source forgets what it remembers outside the verdict cache (after a purge). */
void rcpt_registry_forget(struct rcpt_registry *reg);

/* The chain of a domain (by normalised name): its sources in verify order. n == 0 when the
 * domain has no verify list (the session then leaves the decision to the backend). */
struct rcpt_chain {
	struct rcpt_source *const *sources;
	size_t n;
	const struct bs_domain *domain; /* on_catchall is applied by rcpt_chain_lookup() */
};
int rcpt_registry_chain(const struct rcpt_registry *reg, const char *domain, struct rcpt_chain *out);

/* How many sources at the start of chain are `local` (asked before the verdict cache). */
size_t rcpt_chain_local_prefix(const struct rcpt_chain *chain);

/* Ask the chain: sources in order, the first VALID or INVALID wins (a catch-all VALID under
 * on_catchall = unavailable counts as UNAVAILABLE and the chain goes on); all UNAVAILABLE gives
 * UNAVAILABLE with the sources' reasons joined. Same calling rules as a source's lookup (may
 * answer synchronously and return NULL). */
struct rcpt_chain_query;
struct rcpt_chain_query *rcpt_chain_lookup(const struct rcpt_chain *chain, struct event_base *base,
					   const struct rcpt_addr *addr, rcpt_answer_cb done, void *arg);
void rcpt_chain_cancel(struct rcpt_chain_query *q);

/* Open one source by spec (what rcpt_registry_open does for each); never NULL. */
struct rcpt_source *rcpt_source_open(const char *spec, const struct bs_config *cfg);
void rcpt_source_close(struct rcpt_source *src);

/* The sources in the tree. Add a source: write rcpt_NAME.c defining rcpt_NAME_type and add one
 * line here and one row to types[] in rcpt.c. */
extern const struct rcpt_source_type rcpt_map_type;
extern const struct rcpt_source_type rcpt_ldap_type;   /* rcpt_ldap.c */
extern const struct rcpt_source_type rcpt_callout_type; /* rcpt_callout.c */
/* The surrogate is not in the registry: rcpt_source_open() uses it when open fails. Its state
 * is made by rcpt_surrogate_create(spec, reason) (never fails); it answers UNAVAILABLE with
 * "SPEC: unavailable: REASON" to every lookup. */
extern const struct rcpt_source_type rcpt_surrogate_type;
void *rcpt_surrogate_create(const char *spec, const char *reason);

const char *rcpt_verdict_name(enum rcpt_verdict v); /* "valid", "invalid", "unavailable" */

#endif
