/* smtp_data_phase.c - the message content of a transaction: after 354, decode the client's
 * bytes with the DATA framing decoder (only <CRLF>.<CRLF> ends it), enforce size and line
 * limits, hand the content on, and answer the end of data. */
#include "smtp_session_priv.h"

#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "util.h"
#include "worker.h"

void session_data_begin(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	smtp_data_init(&tx->dec, s->cfg->bare_newline_normalise ? DATA_BARE_NORMALISE : DATA_BARE_REJECT,
		       s->cfg->max_line_length);
	tx->too_big = false;
	s->n_data++;
	s->state = SMTP_STATE_DATA;
	session_set_read_timeout(s, s->cfg->data_timeout_ms);
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* The refusal, if any, that the content itself earned. */
static bool data_refusal(const struct smtp_tx *tx, int *code, const char **enh, const char **why)
{
	if (tx->too_big) {
		*code = 552, *enh = "5.3.4", *why = "Message size exceeds fixed maximum message size";
	} else if (tx->dec.errors & (DATA_ERR_BARE_LF | DATA_ERR_BARE_CR)) {
		*code = 554, *enh = "5.6.0";
		*why = "Message contains bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)";
	} else if (tx->dec.errors & DATA_ERR_LINE_TOO_LONG) {
		*code = 554, *enh = "5.6.0", *why = "Message contains a line longer than the limit";
	} else {
		return false;
	}
	return true;
}

static void data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	int code;
	const char *enh, *why;

	if (!data_refusal(tx, &code, &enh, &why)) {
		/* in-line delivery hands the message to the backend here; until then backstop must not
		 * take responsibility for a message nobody has accepted */
		code = 451, enh = "4.3.0", why = "Message not accepted: no delivery path configured";
	}
	session_reply(s, code, enh, "%s", why);
	char detail[128];
	snprintf(detail, sizeof detail, "%s (size=%llu)", why, (unsigned long long)tx->dec.octets);
	session_log_decision(s, "data", NULL, code, enh, detail);
	session_tx_reset(s);
	s->state = SMTP_STATE_READY;
	session_set_read_timeout(s, s->cfg->command_timeout_ms);
}

bool session_data_input(struct smtp_session *s, struct evbuffer *in)
{
	struct smtp_tx *tx = s->tx;
	char *out = s->worker->scratch;
	const size_t chunk_max = (WORKER_SCRATCH_SIZE - 4) / 2;

	while (evbuffer_get_length(in) > 0 && !tx->dec.done) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t n = v.iov_len < chunk_max ? v.iov_len : chunk_max, outlen = 0;
		size_t used = smtp_data_decode(&tx->dec, v.iov_base, n, out, WORKER_SCRATCH_SIZE, &outlen);
		evbuffer_drain(in, used);
		if (tx->dec.octets > s->cfg->max_message_size)
			tx->too_big = true;
		/* content goes to the delivery sink here once in-line delivery is wired */
	}
	if (!tx->dec.done)
		return false;
	data_end(s);
	return true;
}
