/* smtp_parse.h - SMTP command-line and ESMTP parameter parsing (RFC 5321, 1870, 3461, 6152,
 * 6531). Pure functions over bytes, fuzzed by tests/fuzz/fuzz_command.c. The parse results
 * point into, or copy from, the caller's line; nothing is allocated. */
#ifndef BACKSTOP_SMTP_PARSE_H
#define BACKSTOP_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_address.h"

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA,
	SMTP_VERB_RSET, SMTP_VERB_NOOP, SMTP_VERB_QUIT, SMTP_VERB_HELP, SMTP_VERB_VRFY,
	SMTP_VERB_EXPN, SMTP_VERB_STARTTLS, SMTP_VERB_BDAT, SMTP_VERB_AUTH,
};

struct smtp_command {
	enum smtp_verb verb;
	const char *arg; /* into the caller's line: text after the verb and one or more spaces */
	size_t arg_len;  /* trailing spaces removed */
};

/* line: the command without its line ending. Returns 0, or -1 if the line holds octets that
 * never belong in a command (NUL, CR, LF, other controls except HT); the verb is then UNKNOWN.
 * An unrecognised verb returns 0 with verb = SMTP_VERB_UNKNOWN. Verbs are case-insensitive. */
int smtp_command_parse(const char *line, size_t len, struct smtp_command *out);

/* Name of a verb in upper case ("MAIL"), for logs. */
const char *smtp_verb_name(enum smtp_verb verb);

/* A refusal produced by a parser: reply code, enhanced status and a fixed text. */
struct smtp_parse_error {
	int code;
	const char *enhanced; /* "5.1.3" */
	const char *text;     /* static string */
};

/* A command line without its CRLF (RFC 5321 4.5.3.1.4: 512 octets with it). */
#define SMTP_COMMAND_LINE_MAX 510
/* What service extensions may add to a MAIL or RCPT line (RFC 5321 4.5.3.1.4 allows it): RFC 3461
 * 4 gives NOTIFY and ORCPT 500 octets on RCPT and ENVID and RET 100 on MAIL; SIZE (RFC 1870), BODY
 * (RFC 6152) and SMTPUTF8 (RFC 6531) fit in what MAIL has left. One allowance for both sides: the
 * session accepts MAIL and RCPT lines this much longer than max_command_line, and the outbound
 * client sends lines up to SMTP_PARAM_LINE_MAX, so what backstop accepted can be passed on. */
#define SMTP_PARAM_ALLOWANCE 600
#define SMTP_PARAM_LINE_MAX (SMTP_COMMAND_LINE_MAX + SMTP_PARAM_ALLOWANCE)

#define SMTP_ENVID_MAX 100 /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500 /* RFC 3461 4.2 */

enum smtp_body { SMTP_BODY_UNSPEC = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_UNSPEC = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

enum smtp_notify {
	SMTP_NOTIFY_NEVER = 1,
	SMTP_NOTIFY_SUCCESS = 2,
	SMTP_NOTIFY_FAILURE = 4,
	SMTP_NOTIFY_DELAY = 8,
};

struct smtp_mail_params {
	bool has_size;
	uint64_t size;        /* SIZE= (RFC 1870) */
	enum smtp_body body;  /* BODY= (RFC 6152); BINARYMIME is refused: no CHUNKING */
	bool smtputf8;        /* SMTPUTF8 (RFC 6531) */
	enum smtp_ret ret;    /* RET= (RFC 3461) */
	char envid[SMTP_ENVID_MAX + 1]; /* ENVID= xtext as received, "" if absent */
};

struct smtp_rcpt_params {
	unsigned notify;      /* bitmask of enum smtp_notify; 0 when absent */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* ORCPT= "addr-type;xtext" as received, "" if absent */
};

struct smtp_mail_cmd {
	struct smtp_address from;
	struct smtp_mail_params params;
};

struct smtp_rcpt_cmd {
	struct smtp_address to;
	struct smtp_rcpt_params params;
};

/* Parse the argument of MAIL ("FROM:<path> [params]"). A space after the colon is tolerated.
 * Returns 0, or -1 with *err set:
 *   501 5.5.2 missing FROM: / syntax;  501 5.1.7 bad sender address;
 *   553 5.6.7 UTF-8 address without SMTPUTF8;  555 5.5.4 unknown parameter;
 *   501 5.5.4 bad parameter value or duplicate parameter. */
int smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_cmd *out,
		    struct smtp_parse_error *err);

/* Parse the argument of RCPT ("TO:<path> [params]"). utf8_ok: the transaction's MAIL had
 * SMTPUTF8. "<Postmaster>" without domain is accepted (RFC 5321 4.5.1) and returned with an
 * empty domain. Returns 0, or -1 with *err set:
 *   501 5.5.2 missing TO: / syntax;  501 5.1.3 bad recipient address;
 *   553 5.6.7 UTF-8 address without SMTPUTF8;  555 5.5.4 unknown parameter;
 *   501 5.5.4 bad parameter value or duplicate parameter. */
int smtp_rcpt_parse(const char *arg, size_t len, bool utf8_ok, struct smtp_rcpt_cmd *out,
		    struct smtp_parse_error *err);

/* A HELO/EHLO argument (RFC 5321 4.1.1.1): a Domain or an address literal ([IPv4] or
 * [IPv6:...]). As a domain are accepted: labels of letters, digits, '-' and '_' (Windows host
 * names, which Postfix accepts too), a single label ("localhost"), all-digit labels (a bare IPv4
 * address) and one trailing dot. strict: anything else is refused. Not strict: any non-empty
 * argument without control octets is accepted. Returns 0 or -1.
 * On 0, name (namesz > SMTP_DOMAIN_MAX) gets the text fit for a Received: header and the logs:
 * the argument itself when it is a domain or an address literal, else its first word with every
 * octet but letters, digits, '.', '-' and '_' replaced by '_' (never a space, parenthesis,
 * bracket or control from the client). */
int smtp_helo_parse(const char *arg, size_t len, bool strict, char *name, size_t namesz);

#endif
