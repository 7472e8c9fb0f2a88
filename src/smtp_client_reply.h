/* smtp_client_reply.h - parser for the replies an SMTP server sends (RFC 5321 4.2, 4.5.3.1.5;
 * RFC 3463 enhanced status codes), used by smtp_client.c. Pure and bounded, fed one line at a
 * time (no I/O, no allocation; fuzzed by tests/fuzz/fuzz_smtp_client_reply.c). */
#ifndef BACKSTOP_SMTP_CLIENT_REPLY_H
#define BACKSTOP_SMTP_CLIENT_REPLY_H

#include <stddef.h>

#include "smtp_client.h"

#define SMTP_CLIENT_REPLY_LINE_MAX 510      /* octets of a line without CRLF (512 with it) */
#define SMTP_CLIENT_REPLY_LINES_MAX 100     /* lines in one multi-line reply */
#define SMTP_CLIENT_REPLY_OCTETS_MAX 65536  /* octets of one reply, line endings counted */

struct smtp_client_reply {
	struct smtp_reply reply; /* the reply so far; complete when smtp_client_reply_line() says so */
	size_t text_len;         /* octets in reply.text */
	size_t lines;            /* lines fed so far */
	size_t octets;           /* octets fed so far, two per line ending included */
};

void smtp_client_reply_init(struct smtp_client_reply *p);

/* Feed one line without its line ending. Returns 1 when the reply is complete (p->reply holds
 * it), 0 when more lines are needed, -1 when the reply is malformed (bad or inconsistent code,
 * line too long, too many lines, reply too big): p->reply is then code 0 with text
 * "malformed reply (...)". Call smtp_client_reply_init() before the next reply. */
int smtp_client_reply_line(struct smtp_client_reply *p, const char *line, size_t len);

/* Length of a leading enhanced status code of class cls ('2', '4' or '5') in t, e.g. 5 for
 * "2.1.5 Ok", or 0 if t does not start with one followed by a space or the end. */
size_t smtp_client_reply_enhanced_len(const char *t, size_t len, char cls);

#endif
