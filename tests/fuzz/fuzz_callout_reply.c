/* fuzz_callout_reply.c - libFuzzer target for the callout reply matcher (callout_match.c). The
 * first byte picks the batch size N (0..16); the rest is what a validation server sends back to
 * MAIL, N RCPTs and RSET, split into lines as smtp_client.c does and parsed by the reply parser.
 * Checks: no VALID or INVALID verdict unless exactly N+2 well-formed replies came with nothing
 * behind them; a verdict given is its own reply's; no read past the batch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "callout.h"
#include "callout_match.h"
#include "smtp_client_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct run {
	struct callout_match m;
	struct smtp_reply seen[CALLOUT_MATCH_MAX + 2]; /* the replies in arrival order, first N+2 */
	unsigned replies;
	bool ended, broken, trailing; /* trailing: bytes behind RSET's reply */
};

/* The smtp_client would fail the connection: every command still owed gets code 0. */
static void run_break(struct run *u)
{
	struct smtp_reply none = { .code = 0 };
	u->broken = true;
	if (!u->ended)
		callout_match_reply(&u->m, &none);
}

static void run_reply(struct run *u, const struct smtp_reply *r, bool more)
{
	if (u->ended) { /* nothing outstanding: the client fails the connection */
		u->broken = true;
		return;
	}
	if (u->replies < CALLOUT_MATCH_MAX + 2)
		u->seen[u->replies] = *r;
	u->replies++;
	callout_match_reply(&u->m, r);
	if (u->replies == u->m.n + 2) { /* RSET's reply: the batch ends here */
		callout_match_end(&u->m, more);
		u->ended = true;
		u->trailing = more;
	}
}

static void run_bytes(struct run *u, const char *s, const char *end)
{
	struct smtp_client_reply p;

	smtp_client_reply_init(&p);
	while (s < end && !u->broken) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			break; /* an unfinished line: more bytes were on their way */
		size_t len = (size_t)(nl - s), use = (len && s[len - 1] == '\r') ? len - 1 : len;
		s = nl + 1;
		if (use > SMTP_CLIENT_REPLY_LINE_MAX) {
			run_break(u);
			break;
		}
		int r = smtp_client_reply_line(&p, nl - len, use);
		if (r < 0) {
			run_break(u);
		} else if (r == 1) {
			struct smtp_reply reply = p.reply;
			smtp_client_reply_init(&p);
			run_reply(u, &reply, s < end);
		}
	}
	if (!u->ended && !u->broken)
		run_break(u); /* the rest never came: a timeout */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run u;

	if (size < 1)
		return 0;
	memset(&u, 0, sizeof u);
	callout_match_init(&u.m, data[0] % (CALLOUT_MATCH_MAX + 1));
	run_bytes(&u, (const char *)data + 1, (const char *)data + size);
	unsigned n = u.m.n;
	bool in_step = u.ended && !u.broken && !u.trailing && u.replies == n + 2 && u.m.state == CM_DONE;
	for (unsigned i = 0; i < n + 2; i++) {
		enum rcpt_verdict v = callout_match_verdict(&u.m, i);
		if (i >= n || !in_step || u.seen[0].code / 100 != 2) {
			CHECK(v == RCPT_UNAVAILABLE);
			continue;
		}
		CHECK(v == callout_verdict(&u.seen[i + 1]));
		CHECK(u.m.rcpt[i].code == u.seen[i + 1].code);
	}
	if (u.m.state == CM_DONE)
		CHECK(u.replies == n + 2 && u.seen[n + 1].code == 250 && strncmp(u.seen[n + 1].enhanced, "2.1.", 4) != 0);
	return 0;
}
