/* policyd_proto.h - the Postfix SMTP access policy delegation protocol, as pure functions over
 * bytes (Postfix SMTPD_POLICY_README): a request is `name=value` lines ended by an empty line;
 * it becomes an engine_request at the stage named by protocol_state, and a decision becomes one
 * `action=...` reply line. No I/O, no allocation; fuzzed by tests/fuzz/fuzz_policy.c. The
 * connections that use it are policyd.c's. */
#ifndef BACKSTOP_POLICYD_PROTO_H
#define BACKSTOP_POLICYD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"

/* Bounds of one request: Postfix sends about 30 attributes and a few hundred bytes (more with
 * client certificate and SASL attributes). Past any of them the request is malformed. */
#define POLICY_REQUEST_MAX (16 * 1024) /* octets, line ends included */
#define POLICY_ATTRS_MAX 100
#define POLICY_NAME_MAX 64
#define POLICY_VALUE_MAX 4096

/* One request being received. Its attributes point into buf (NUL-terminated name and value). */
struct policy_request {
	char buf[POLICY_REQUEST_MAX + 1];
	size_t len;        /* bytes of buf in use (the partial line included) */
	size_t line_start; /* where the partial line begins */
	size_t n;          /* attributes */
	struct { uint16_t name, value; } attrs[POLICY_ATTRS_MAX];
};

enum policy_feed {
	POLICY_FEED_MORE = 0, /* everything was taken: the request goes on */
	POLICY_FEED_DONE,     /* the empty line that ends the request was taken */
	POLICY_FEED_BAD,      /* malformed or oversized: the connection must be closed */
};

void policy_request_reset(struct policy_request *r);
/* Take bytes of data (len) into r until the request is complete. *consumed says how many were
 * taken (on DONE the rest belongs to the next request); on BAD, *why says what was wrong
 * (static text). A trailing CR on a line is ignored. */
enum policy_feed policy_request_feed(struct policy_request *r, const char *data, size_t len, size_t *consumed,
				     const char **why);
/* The value of attribute name (the last one if repeated), or NULL. */
const char *policy_request_get(const struct policy_request *r, const char *name);

/* What a complete request asks, beside the engine request itself. */
struct policy_query {
	bool ask;              /* true: ask the engine at req->stage; false: answer DUNNO now */
	const char *why;       /* !ask: why not (static, for the log) */
	bool staged;           /* protocol_state named an engine stage (req->stage) */
	char state[24];        /* protocol_state as sent (sanitised, for the log) */
	char instance[64];     /* Postfix's instance and queue_id attributes (sanitised), "" if none */
	char queue_id[64];
	char rcpt_raw[256];    /* the recipient attribute as sent (sanitised), for a DUNNO's log */
	/* what the engine request points to (keep q as long as the request) */
	char helo[SMTP_DOMAIN_MAX + 1];
	struct smtp_address sender, rcpt;
};

/* Turn a complete request into an engine request (frontend POLICY, session_id as given): the
 * client's address and port, HELO name, sender (empty = null sender), recipient with its
 * [domain] section in cfg, size, recipient count, TLS protocol and cipher. Addresses are parsed
 * with the project's path parser (SMTPUTF8 allowed). Never fails: q->ask says whether the
 * engine is to be asked (VRFY, ETRN, an unknown state, a missing or unparsable recipient at
 * RCPT: DUNNO). req points into q: q is kept unchanged as long as req is used. */
void policy_request_decode(const struct policy_request *r, const struct bs_config *cfg, const char *session_id,
			   struct engine_request *req, struct policy_query *q);

/* The reply to a decision, "action=...\n\n" (NUL-terminated; returns its length):
 *   reject  -> "NNN X.Y.Z text" (access(5)'s numeric form: Postfix answers with our code)
 *   defer   -> "DEFER_IF_PERMIT X.Y.Z text" (a later reject in Postfix's list still wins)
 *   neutral, accept -> "DUNNO", or "PREPEND header" with the decision's first header field
 *                      (one action per reply: further headers are not added)
 * The text loses the "<address>: ... rejected: " that Postfix puts in front of it itself. */
size_t policy_action_format(const struct engine_decision *d, char *out, size_t outsz);
/* "action=DUNNO\n\n". */
size_t policy_action_dunno(char *out, size_t outsz);

#endif
