/* callout_match.c - matching a callout batch's replies to its commands by count and by an end
 * marker (RSET), refusing any verdict when the stream is out of step. See callout_match.h. */
#include "callout_match.h"

#include <stdio.h>
#include <string.h>

#include "callout.h"

void callout_match_init(struct callout_match *m, unsigned n)
{
	memset(m, 0, sizeof *m);
	m->n = n <= CALLOUT_MATCH_MAX ? n : CALLOUT_MATCH_MAX;
	m->state = CM_OPEN;
}

static enum callout_match_state match_desync(struct callout_match *m, const char *why, const struct smtp_reply *r)
{
	if (m->state != CM_DESYNC) {
		if (r != NULL)
			snprintf(m->why, sizeof m->why, "%s: %d %.60s", why, r->code, r->text);
		else
			snprintf(m->why, sizeof m->why, "%s", why);
	}
	m->state = CM_DESYNC;
	return m->state;
}

/* The marker is RSET: 250, and never an enhanced code of class 2.1 (MAIL's 2.1.0, RCPT's
 * 2.1.5), which says it answers an earlier command and the replies are shifted. */
static bool match_marker_ok(const struct smtp_reply *r)
{
	return r->code == 250 && strncmp(r->enhanced, "2.1.", 4) != 0;
}

enum callout_match_state callout_match_reply(struct callout_match *m, const struct smtp_reply *r)
{
	unsigned i = m->got++;

	if (m->state == CM_DESYNC)
		return m->state;
	if (r->code == 0)
		return match_desync(m, "no reply", r);
	if (m->state == CM_DONE || i > m->n + 1)
		return match_desync(m, "a reply nothing asked for", r);
	if (i == 0)
		m->mail = *r;
	else if (i <= m->n)
		m->rcpt[i - 1] = *r;
	else if (!match_marker_ok(r))
		return match_desync(m, "the reply to RSET (end of batch) is not RSET's", r);
	return m->state;
}

enum callout_match_state callout_match_end(struct callout_match *m, bool more_input)
{
	if (m->state == CM_DESYNC)
		return m->state;
	if (m->got != m->n + 2)
		return match_desync(m, m->got < m->n + 2 ? "replies missing" : "more replies than commands", NULL);
	if (more_input)
		return match_desync(m, "more replies than commands (data behind the reply to RSET)", NULL);
	m->state = CM_DONE;
	return m->state;
}

enum rcpt_verdict callout_match_verdict(const struct callout_match *m, unsigned i)
{
	if (m->state != CM_DONE || i >= m->n || m->mail.code / 100 != 2)
		return RCPT_UNAVAILABLE;
	return callout_verdict(&m->rcpt[i]);
}
