/* smtp_data.h - the DATA-phase framing decoder (RFC 5321 4.1.1.4, 4.5.2).
 * Only <CRLF>.<CRLF> ends a message. A bare CR or bare LF is never a line end: by default it
 * marks the message as refused (DATA_ERR_BARE_*) while the decoder goes on looking for the real
 * end; with DATA_BARE_NORMALISE it is turned into CRLF for the content, but a line begun after
 * such a normalised ending can still never end the message (no SMTP smuggling either way).
 * Dot-stuffing is removed. Pure state machine: no I/O, no allocation (fuzzed). */
#ifndef BACKSTOP_SMTP_DATA_H
#define BACKSTOP_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum data_bare_policy { DATA_BARE_REJECT = 0, DATA_BARE_NORMALISE };

enum data_error {
	DATA_ERR_BARE_LF = 1,       /* an LF not preceded by CR */
	DATA_ERR_BARE_CR = 2,       /* a CR not followed by LF */
	DATA_ERR_LINE_TOO_LONG = 4, /* a line longer than max_line octets including CRLF */
	DATA_ERR_NUL = 8,           /* a NUL octet (noted; not refused by the decoder itself) */
};

struct smtp_data_decoder {
	/* configuration */
	enum data_bare_policy bare_policy;
	size_t max_line;        /* including CRLF; 1000 per RFC 5321 4.5.3.1.6; 0 = no limit */
	/* state (opaque to callers) */
	int state;
	size_t line_len;
	/* results */
	unsigned errors;        /* bitmask of enum data_error seen so far */
	unsigned bare;          /* DATA_ERR_BARE_CR / _LF met, whatever the policy: the client and
				 * backstop may disagree on where this message ended */
	uint64_t octets;        /* decoded octets produced so far (the message size) */
	bool done;              /* the terminating <CRLF>.<CRLF> has been consumed */
};

void smtp_data_init(struct smtp_data_decoder *d, enum data_bare_policy bare_policy, size_t max_line);

/* Decode up to inlen input octets into out (capacity outcap, which must be at least
 * 2 * inlen + 4). Stops right after the terminator (d->done set); octets after it are not
 * consumed and belong to the next command. Returns the number of input octets consumed and sets
 * *outlen to the number of decoded octets written. The decoded message ends with the CRLF that
 * preceded the final dot. */
size_t smtp_data_decode(struct smtp_data_decoder *d, const char *in, size_t inlen, char *out,
			size_t outcap, size_t *outlen);

/* Dot-stuffing for output: copy in to out, doubling a '.' at the start of each line.
 * *at_line_start carries the state between calls (start with true). out needs 2 * inlen. */
size_t smtp_data_stuff(const char *in, size_t inlen, char *out, bool *at_line_start);

#endif
