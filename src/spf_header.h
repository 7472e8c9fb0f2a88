/* spf_header.h - the header fields an SPF check adds on delivery: Received-SPF (RFC 7208 9.1)
 * and Authentication-Results (RFC 8601), each ending in CRLF, folded, printable ASCII. Pure. */
#ifndef BACKSTOP_SPF_HEADER_H
#define BACKSTOP_SPF_HEADER_H

#include <stddef.h>

/* One evaluated identity. Strings may hold anything: they are cleaned and quoted here. */
struct spf_header_in {
	const char *result;         /* "pass", "fail" ... */
	const char *identity;       /* "mailfrom" or "helo" */
	const char *identity_value; /* "user@example.com" (postmaster@HELO for <>), or the HELO name */
	const char *client_ip;
	const char *helo;
	const char *envelope_from;  /* the MAIL FROM address, "" for <> */
	const char *receiver;       /* this host's name */
	const char *mechanism;      /* what decided, or NULL */
	const char *problem;        /* temperror/permerror: why, or NULL */
};

/* "Received-SPF: RESULT (comment)\r\n\tkey=value; ...\r\n": its length (0 if out is too small). */
size_t spf_received_header(const struct spf_header_in *in, char *out, size_t outsz);
/* "Authentication-Results: ID;\r\n\tspf=RESULT smtp.mailfrom=...[;\r\n\tspf=... smtp.helo=...]\r\n"
 * for one or two identities (second may be NULL): its length (0 if out is too small). */
size_t spf_auth_results(const char *authserv_id, const struct spf_header_in *first,
			const struct spf_header_in *second, char *out, size_t outsz);

#endif
