/* callout_match.h - which reply belongs to which command in a callout batch (MAIL, N RCPTs, then
 * RSET as the end marker), and whether the reply stream stayed in step. Pure: fed the replies in
 * the order they arrived, no I/O (fuzzed by tests/fuzz/fuzz_callout_reply.c). A batch that got an
 * extra, missing or misplaced reply is desynchronised and gives no VALID or INVALID verdict. */
#ifndef BACKSTOP_CALLOUT_MATCH_H
#define BACKSTOP_CALLOUT_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "rcpt.h"
#include "smtp_client.h"

#define CALLOUT_MATCH_MAX 16 /* RCPTs in one batch */

enum callout_match_state {
	CM_OPEN,   /* replies still owed */
	CM_DONE,   /* every reply came, in step: verdicts can be given */
	CM_DESYNC, /* the stream is out of step (why says how): every address UNAVAILABLE */
};

struct callout_match {
	unsigned n;                 /* RCPTs in the batch */
	unsigned got;               /* replies fed: MAIL, RCPTs, marker */
	enum callout_match_state state;
	char why[128];
	struct smtp_reply mail;
	struct smtp_reply rcpt[CALLOUT_MATCH_MAX];
};

/* A batch of n RCPTs (at most CALLOUT_MATCH_MAX). */
void callout_match_init(struct callout_match *m, unsigned n);

/* The next reply (code 0: no reply, the connection failed). Returns the state. */
enum callout_match_state callout_match_reply(struct callout_match *m, const struct smtp_reply *r);

/* The marker's reply was fed; more_input: bytes had arrived behind it, which nothing asked for.
 * Returns the final state (CM_DONE only for a batch that ended exactly in step). */
enum callout_match_state callout_match_end(struct callout_match *m, bool more_input);

/* Verdict for RCPT i: callout_verdict() of its reply when the batch is CM_DONE and MAIL was
 * accepted, else UNAVAILABLE. */
enum rcpt_verdict callout_match_verdict(const struct callout_match *m, unsigned i);

#endif
