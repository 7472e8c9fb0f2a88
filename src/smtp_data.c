/* smtp_data.c - DATA-phase framing: find <CRLF>.<CRLF>, remove dot-stuffing, flag (or normalise)
 * bare CR and bare LF; and dot-stuffing for output. A byte-at-a-time state machine whose whole
 * memory is d->state and d->line_len, so any split of the input decodes identically. */
#include "smtp_data.h"

enum data_state {
	ST_START_CLEAN = 0, /* line start after CRLF (or the start of the data): a '.' may end */
	ST_START_TAINTED,   /* line start after a normalised bare CR/LF: a '.' is content */
	ST_TEXT,            /* inside a line */
	ST_CR,              /* a CR inside a line, held back */
	ST_DOT,             /* a '.' at a clean line start, held back */
	ST_DOT_CR,          /* ".\r" at a clean line start, held back */
};

void smtp_data_init(struct smtp_data_decoder *d, enum data_bare_policy bare_policy, size_t max_line)
{
	d->bare_policy = bare_policy;
	d->max_line = max_line;
	d->state = ST_START_CLEAN;
	d->line_len = 0;
	d->errors = 0;
	d->bare = 0;
	d->octets = 0;
	d->done = false;
}

/* A CR or LF that is not part of CRLF: flag it, or (NORMALISE) write CRLF and taint the next
 * line. Returns the octets written. */
static size_t bare_ending(struct smtp_data_decoder *d, char c, char *out)
{
	d->bare |= c == '\r' ? DATA_ERR_BARE_CR : DATA_ERR_BARE_LF;
	if (d->bare_policy == DATA_BARE_NORMALISE) {
		out[0] = '\r';
		out[1] = '\n';
		d->state = ST_START_TAINTED;
		d->line_len = 0;
		return 2;
	}
	d->errors |= c == '\r' ? DATA_ERR_BARE_CR : DATA_ERR_BARE_LF;
	out[0] = c;
	d->state = ST_TEXT;
	return 1;
}

/* Feed one octet c in a state that holds nothing back (line start or inside a line). */
static size_t step_plain(struct smtp_data_decoder *d, char c, char *out)
{
	if (c == '.' && d->state == ST_START_CLEAN) {
		d->state = ST_DOT;
		return 0;
	}
	if (c == '\r') {
		d->state = ST_CR;
		return 0;
	}
	if (c == '\n')
		return bare_ending(d, '\n', out);
	if (c == '\0')
		d->errors |= DATA_ERR_NUL;
	out[0] = c;
	d->state = ST_TEXT;
	return 1;
}

/* Feed one octet; returns the octets written to out (at most 4). */
static size_t step(struct smtp_data_decoder *d, char c, char *out)
{
	size_t n;

	switch (d->state) {
	case ST_CR:
		if (c == '\n') {
			out[0] = '\r';
			out[1] = '\n';
			d->state = ST_START_CLEAN;
			d->line_len = 0;
			return 2;
		}
		n = bare_ending(d, '\r', out);
		if (d->state == ST_START_TAINTED)
			d->line_len = 1; /* c begins the new line */
		return n + step_plain(d, c, out + n);
	case ST_DOT:
		if (c == '\r') {
			d->state = ST_DOT_CR;
			return 0;
		}
		d->state = ST_TEXT; /* a stuffed dot: removed */
		return step_plain(d, c, out);
	case ST_DOT_CR:
		if (c == '\n') {
			d->done = true;
			return 0;
		}
		d->state = ST_CR; /* the dot was stuffing; the CR is bare */
		return step(d, c, out);
	default:
		return step_plain(d, c, out);
	}
}

size_t smtp_data_decode(struct smtp_data_decoder *d, const char *in, size_t inlen, char *out,
			size_t outcap, size_t *outlen)
{
	size_t i = 0, o = 0;

	while (i < inlen && !d->done && o + 4 <= outcap) {
		if (++d->line_len > d->max_line && d->max_line > 0)
			d->errors |= DATA_ERR_LINE_TOO_LONG;
		o += step(d, in[i++], out + o);
	}
	d->octets += o;
	*outlen = o;
	return i;
}

size_t smtp_data_stuff(const char *in, size_t inlen, char *out, bool *at_line_start)
{
	size_t o = 0;

	for (size_t i = 0; i < inlen; i++) {
		if (*at_line_start && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		*at_line_start = in[i] == '\n';
	}
	return o;
}
