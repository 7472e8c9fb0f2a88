/* hdr_filter.h - the header section of a message on its way through, minus the
 * Authentication-Results fields that claim our authserv-id (RFC 8601 5: a border MTA removes
 * them, so that no downstream reader trusts a forged one). A streaming state machine over the
 * decoded message (CRLF lines): bytes pass through a writer as they come, except an
 * Authentication-Results field, held whole (up to HDR_HOLD_MAX; longer ones pass) until its
 * end shows whether it goes. After the header section everything passes. Pure; fuzzed. */
#ifndef BACKSTOP_HDR_FILTER_H
#define BACKSTOP_HDR_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#define HDR_HOLD_MAX 8192

typedef void (*hdr_write_fn)(void *arg, const char *data, size_t len);

struct hdr_filter {
	const char *authserv_id; /* borrowed */
	int state;
	size_t held;
	unsigned removed;        /* fields removed so far */
	char hold[HDR_HOLD_MAX];
};

void hdr_filter_init(struct hdr_filter *f, const char *authserv_id);
/* Pass len octets of the message through f to w. */
void hdr_filter_feed(struct hdr_filter *f, const char *data, size_t len, hdr_write_fn w, void *arg);
/* The message ended: a field still held is decided and written or dropped. */
void hdr_filter_end(struct hdr_filter *f, hdr_write_fn w, void *arg);
/* The header section is over: the rest passes untouched (the caller may stop feeding f). */
bool hdr_filter_in_body(const struct hdr_filter *f);

/* Does this Authentication-Results field (name, colon, value, line ends) claim id? */
bool hdr_ar_claims(const char *field, size_t len, const char *id);

#endif
