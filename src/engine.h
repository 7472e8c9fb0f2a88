/* engine.h - the decision engine: every question a front end asks about a client, a sender or a
 * recipient (may this RCPT go on? is this sender acceptable?) goes here as a plain-data request
 * for one SMTP stage. The engine runs the checks registered for that stage (check.h, the rows of
 * checks.c) in their documented order; the first answer that is not neutral decides, under one
 * deadline per stage that covers every lookup (the verdict cache included): past it the stage
 * answers defer, never reject. Front ends: the SMTP session (smtp_*.c) and the Postfix policy
 * service (policyd.c). The engine counts what it decides in a process-wide engine_stats.
 *
 * Threads: an engine belongs to one runtime generation and is shared by all workers; engine_start
 * and engine_cancel run on the worker that owns `base`, and the callback always comes later from
 * that loop, never from inside engine_start. */
#ifndef BACKSTOP_ENGINE_H
#define BACKSTOP_ENGINE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "config.h"
#include "smtp_address.h"

enum engine_stage {
	ENGINE_STAGE_CONNECT = 0, /* the client connected (before or while the banner goes out) */
	ENGINE_STAGE_HELO,        /* HELO/EHLO with a valid name */
	ENGINE_STAGE_MAIL,        /* MAIL FROM parsed */
	ENGINE_STAGE_RCPT,        /* RCPT TO parsed and within limits */
	ENGINE_STAGE_DATA,        /* DATA, before content */
	ENGINE_STAGE_EOD,         /* end of data, before the final dot goes to the backend */
	ENGINE_STAGE_BANNER,      /* the client connected and the banner waits for this decision:
				   * for checks that answer from memory (a penalty); a refusal is
				   * the session's only reply (421 4.7.0) instead of the banner.
				   * Numbered last so that the others keep their numbers; the
				   * policy service never asks it. */
	ENGINE_STAGE_COUNT
};
#define ENGINE_STAGE_BIT(s) (1u << (s))

enum engine_frontend { ENGINE_FRONTEND_SMTP = 0, ENGINE_FRONTEND_POLICY };

/* What a check answers, and what a stage decides (the first answer that is not NEUTRAL). */
enum check_result {
	CHECK_NEUTRAL = 0, /* no objection: go on (SMTP: the next step; policy: DUNNO) */
	CHECK_ACCEPT,      /* decided yes: the stage's later checks are skipped */
	CHECK_REJECT,      /* permanent refusal: code 5xx */
	CHECK_DEFER,       /* temporary refusal: code 4xx (a lookup failed or timed out) */
};
#define CHECK_RESULT_COUNT 4

#define ENGINE_TEXT_MAX 512     /* reply text for the client */
#define ENGINE_LOG_MAX 1024     /* key=value pairs for the decision's log line */
#define ENGINE_HEADERS_MAX 2048 /* header fields to add on delivery */
#define ENGINE_FACTS_MAX 1024   /* a stage's findings for the later stages of the transaction */

/* One decision request: plain data, no pointer into a session. Fill it with
 * engine_request_init() and the setters below; a front end keeps it between stages and updates
 * what changed. It is small (a few hundred octets) because the engine copies it for every
 * query: the sender, the recipient and the HELO name are not copied but pointed to. What they
 * point to is the front end's, and stays unchanged until the decision's callback or
 * engine_cancel (the SMTP session: its transaction, its RCPT queue entry, its HELO name). */
struct engine_request {
	enum engine_stage stage;
	enum engine_frontend frontend;
	bool has_sender;                  /* MAIL and later stages: sender is set */
	bool has_rcpt;                    /* RCPT stage: rcpt is set */
	bool size_known;
	const struct bs_domain *domain;   /* the recipient's [domain] section (owned by the config the
					   * engine was built with), NULL when none */
	const char *facts;                /* what earlier stages of this transaction found, as their
					   * engine_decision.facts gave it (NULL: nothing); copied by
					   * engine_start. See "Facts" below. */
	uint64_t size;                    /* octets: declared SIZE at MAIL, measured at end of data */
	unsigned nrcpts;                  /* recipients accepted so far in the transaction */
	unsigned errors;                  /* errors so far in the session */
	uint16_t client_port;
	char session_id[24];              /* front end's id for the log line ("" if none) */
	char client_ip[INET6_ADDRSTRLEN]; /* client address as text, IPv4-mapped shown as IPv4 */
	char tls_version[16];             /* "" without TLS */
	char tls_cipher[64];
	struct sockaddr_storage client;   /* client address (for CIDR matching) */
	const char *helo;                 /* safe name (at most SMTP_DOMAIN_MAX), "" before HELO: never NULL */
	const struct smtp_address *sender; /* valid when has_sender (NULL otherwise) */
	const struct smtp_address *rcpt;   /* valid when has_rcpt (NULL otherwise) */
};

void engine_request_init(struct engine_request *req, enum engine_frontend fe, const char *session_id,
			 const struct sockaddr *client, socklen_t len);
/* The same with the client's address as text already made by the caller (no inet_ntop). */
void engine_request_init_ip(struct engine_request *req, enum engine_frontend fe, const char *session_id,
			    const struct sockaddr *client, socklen_t len, const char *client_ip);
/* The recipient, and its [domain] section looked up in cfg (postmaster without a domain means
 * cfg->postmaster_domain, RFC 5321 4.5.1: rcpt's domain is then filled in, in place). req points
 * to rcpt: the caller keeps it until the decision's callback or engine_cancel. */
void engine_request_set_rcpt(struct engine_request *req, const struct bs_config *cfg, struct smtp_address *rcpt);
/* The sender (NULL: none, as before MAIL); pointed to like the recipient. */
void engine_request_set_sender(struct engine_request *req, const struct smtp_address *sender);

/* A stage's decision, as the front end gets it. Valid only during the callback, the strings it
 * points to included (they may be the deciding check's own answer: nothing is copied per query
 * that the callback does not need). */
struct engine_decision {
	enum engine_stage stage;
	enum check_result result;      /* NEUTRAL when no check decided */
	const char *check;             /* the check that decided (static), or NULL */
	int code;                      /* reply for REJECT / DEFER (and ACCEPT when a check gives one) */
	char enhanced[8];
	const char *text;              /* sanitised, for the client (at most ENGINE_TEXT_MAX - 1; "") */
	const char *log;               /* every check's key=value fields, in order (at most
					* ENGINE_LOG_MAX - 1; "") */
	const char *headers;           /* header fields to add on delivery, each ending in CRLF ("") */
	const char *facts;             /* the checks' findings for later stages ("": none) */
	bool timed_out;                /* the stage deadline answered (DEFER) */
	bool rcpt_invalid;             /* the deciding check found that the recipient does not exist
					* (a source's INVALID verdict; never UNAVAILABLE) */
	uint64_t latency_ms;
};

/* Facts: a check that finds something at one stage that decides later ones (SPF: the result at
 * MAIL, applied per recipient domain at RCPT) gives it as a fact, one line "CHECK VALUE\n" of
 * engine_decision.facts. The front end keeps the facts of its transaction and passes them back in
 * engine_request.facts of the later requests of the same transaction: the SMTP session from
 * MAIL until the transaction ends; the Postfix policy service for the requests of one Postfix
 * `instance` (a mail transaction) once a decision let it go on. A check without its fact (a
 * front end that does not keep them, a reload) finds out again. */
typedef void (*engine_cb)(void *arg, const struct engine_decision *d);

/* The value of check's fact in facts (NULL allowed): a pointer into facts and its length up to
 * the end of its line, or NULL. */
const char *engine_fact(const char *facts, const char *check, size_t *len);

struct engine;
struct engine_query;
struct engine_stats;
struct budget_store;
struct verifier;
struct dns_resolver;

/* The DNS resolver of the loop base (each worker's loop has one, kept across reloads), or NULL
 * when base has none. Called on base's thread. */
typedef struct dns_resolver *(*engine_dns_fn)(void *arg, struct event_base *base);

/* What the checks of one generation may use (borrowed: kept alive by the runtime generation). */
struct engine_env {
	const struct bs_config *cfg;
	struct verifier *verifier;   /* recipient verification; NULL: the verify check is off */
	struct engine_stats *stats;  /* process-wide counters (kept across reloads); NULL: none */
	engine_dns_fn dns;           /* the loops' resolvers; NULL: checks that need DNS are off */
	void *dns_arg;
	struct budget_store *budgets; /* process-wide budgets (kept across reloads, budget_store.h);
				       * NULL: the checks that need them are off */
};

/* Build the engine of a generation: opens every registered check that this configuration uses.
 * NULL with why set if a check cannot open. Main thread. */
struct engine *engine_new(const struct engine_env *env, char *why, size_t whysz);
void engine_free(struct engine *e);

/* Does any check run at this stage? A front end may skip asking when none does. */
bool engine_stage_has_checks(const struct engine *e, enum engine_stage stage);

/* Decide req at req->stage: req is copied, what its pointers point to is not (see above). The
 * callback comes later from base's loop; returns the handle for engine_cancel. */
struct engine_query *engine_start(struct engine *e, struct event_base *base, const struct engine_request *req,
				  engine_cb cb, void *arg);
/* The front end no longer wants the answer: the running check is cancelled, no callback. */
void engine_cancel(struct engine_query *q);

/* "connect", "helo", "mail", "rcpt", "data", "end-of-data", "banner". */
const char *engine_stage_name(enum engine_stage stage);
/* "neutral", "accept", "reject", "defer". */
const char *check_result_name(enum check_result r);

#endif
