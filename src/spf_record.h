/* spf_record.h - the SPF record parser (RFC 7208 4.5, 4.6, 12): the version check, a syntax
 * check of the whole record, then its mechanisms one at a time. Pure and allocation-free: terms
 * point into the record text, which the caller keeps. */
#ifndef BACKSTOP_SPF_RECORD_H
#define BACKSTOP_SPF_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

enum spf_mech {
	SPF_MECH_ALL = 0,
	SPF_MECH_INCLUDE,
	SPF_MECH_A,
	SPF_MECH_MX,
	SPF_MECH_PTR,
	SPF_MECH_IP4,
	SPF_MECH_IP6,
	SPF_MECH_EXISTS,
};

/* One mechanism. */
struct spf_term {
	enum spf_mech mech;
	char qual;              /* '+', '-', '~' or '?' ('+' when the record gave none) */
	uint8_t cidr4, cidr6;   /* prefix lengths (32 / 128 when not given) */
	const char *spec;       /* domain-spec (include a mx ptr exists), NULL when absent */
	size_t spec_len;
	struct in_addr ip4;     /* SPF_MECH_IP4 */
	struct in6_addr ip6;    /* SPF_MECH_IP6 */
	const char *text;       /* the whole term as written, for the answer's mechanism */
	size_t text_len;
};

/* A record that passed the syntax check. */
struct spf_record {
	const char *text;
	size_t len;
	size_t nmech;           /* mechanisms */
	const char *redirect;   /* redirect= domain-spec, NULL if none */
	size_t redirect_len;
	const char *exp;        /* exp= domain-spec, NULL if none */
	size_t exp_len;
};

#define SPF_TERMS_MAX 1024 /* more terms than this in one record is a permerror */

/* Is text an SPF version 1 record: "v=spf1" (any case) alone or followed by a space? */
bool spf_record_is_spf(const char *text, size_t len);

/* Check the whole record (which must pass spf_record_is_spf()): 0 with *rec filled, or -1 with
 * a reason in why (a permerror). */
int spf_record_parse(const char *text, size_t len, struct spf_record *rec, char *why, size_t whysz);

/* The next mechanism from *pos (start at 0): 1 with *t filled, 0 when there are no more.
 * Modifiers are skipped. Only for a record spf_record_parse() accepted. */
int spf_record_next(const struct spf_record *rec, size_t *pos, struct spf_term *t);

/* Is s a valid domain-spec (RFC 7208 7.1): a macro-string ending in a macro-expand or in
 * "." toplabel ["."]? */
bool spf_domain_spec_valid(const char *s, size_t len);

#endif
