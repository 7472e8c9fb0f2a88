/* smtp_address.h - RFC 5321 / RFC 6531 path and domain parsing. Pure functions over bytes: no
 * I/O, no allocation, safe on any input (fuzzed by tests/fuzz/fuzz_address.c).
 * domain_normalise() is THE function that decides what a domain is; every comparison of
 * domains in backstop (config sections, relay control, lookups) goes through it. */
#ifndef BACKSTOP_SMTP_ADDRESS_H
#define BACKSTOP_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1, octets as sent (quotes included) */
#define SMTP_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, including the angle brackets */

struct smtp_address {
	bool is_null;          /* the null reverse-path <> (only ever valid for MAIL) */
	bool quoted_local;     /* the local part was a quoted string */
	bool ip_literal;       /* domain is an address literal: [1.2.3.4] or [IPv6:...] */
	bool had_source_route; /* <@a,@b:user@dom>: accepted and ignored (RFC 5321 4.1.2, C.) */
	bool utf8;             /* local part or domain holds non-ASCII octets (needs SMTPUTF8) */
	/* local part exactly as received (quoted strings keep their quotes and escapes) */
	char local[SMTP_LOCAL_MAX + 1];
	size_t local_len;
	/* local part with quoting removed: what the mailbox is called. Used for routing-character
	 * checks and lookups. May contain '@', ' ' etc. if it was quoted. */
	char local_raw[SMTP_LOCAL_MAX + 1];
	size_t local_raw_len;
	/* normalised domain (see domain_normalise); address literals in canonical form,
	 * e.g. "[192.0.2.1]" or "[ipv6:2001:db8::1]" */
	char domain[SMTP_DOMAIN_MAX + 1];
	size_t domain_len;
};

enum smtp_addr_status {
	ADDR_OK = 0,
	ADDR_SYNTAX,       /* not a valid path */
	ADDR_TOO_LONG,     /* local part > 64, domain > 255 or path > 256 octets */
	ADDR_NEEDS_UTF8,   /* non-ASCII octets while UTF-8 was not allowed */
};

/* Parse a path "<...>" at the start of s (len bytes). allow_null permits "<>"; allow_utf8
 * permits UTF-8 in local part and domain (RFC 6531; UTF-8 must be well-formed).
 * On ADDR_OK fills *out and sets *consumed to the number of bytes of s used (up to and
 * including '>'). */
enum smtp_addr_status smtp_path_parse(const char *s, size_t len, bool allow_null, bool allow_utf8,
				      struct smtp_address *out, size_t *consumed);

/* Normalise a domain or address literal: ASCII case-folded, one trailing dot removed, syntax
 * checked (RFC 5321 Domain / address-literal; U-labels as UTF-8 when allow_utf8), address
 * literals canonicalised via inet_pton/inet_ntop. Returns the length written to out (NUL-
 * terminated, outsz >= SMTP_DOMAIN_MAX + 1), or 0 if in is not a valid domain. */
size_t domain_normalise(const char *in, size_t len, bool allow_utf8, char *out, size_t outsz);

/* Write "local@domain" (local part as received) into buf. Returns length, or 0 if it does not
 * fit. The null path is written as the empty string (returns 0 with buf = ""). */
size_t smtp_address_format(const struct smtp_address *a, char *buf, size_t bufsz);

/* True if s (len octets) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence). ASCII is well-formed UTF-8. */
bool smtp_utf8_valid(const char *s, size_t len);

#endif
