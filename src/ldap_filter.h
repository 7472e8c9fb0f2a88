/* ldap_filter.h - the LDAP search filters backstop sends: the presets (active-directory,
 * openldap), the admin's `query` template, and the RFC 4515 escaping of the address that is
 * substituted for %s (done by libldap's ldap_bv2escaped_filter_value). Pure functions, no I/O:
 * the address never reaches a filter unescaped. Unit-tested by tests/unit/test_ldap_filter.c. */
#ifndef BACKSTOP_LDAP_FILTER_H
#define BACKSTOP_LDAP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define LDAP_FILTER_LEN_MAX 8192 /* a filter longer than this is refused */

enum ldap_filter_status {
	LFILTER_OK = 0,
	LFILTER_IMPOSSIBLE, /* not a mailbox any SMTP client can send: empty, no '@', empty local
			     * part or domain, control characters (NUL included), too long */
	LFILTER_TOO_LONG,   /* the filter would exceed the buffer */
	LFILTER_ERROR,      /* escaping failed (libldap out of memory) */
};

/* The filter template of a section: its query if set, else its preset's. Owned by cfg / static. */
const char *ldap_filter_template(const struct bs_ldap *l);

/* The template of a preset (static), or NULL for LDAP_PRESET_NONE. */
const char *ldap_filter_preset(enum ldap_preset p);

/* Check a template: only %s and %% may follow '%', at least one %s, parentheses balanced and
 * the whole enclosed in one pair. Returns 0, or -1 with a sentence in why. */
int ldap_filter_template_check(const char *tmpl, char *why, size_t whysz);

/* True if addr (len octets) can be a mailbox: "local@domain", both parts non-empty, at most
 * RCPT_ADDR_MAX octets, no octet below 0x20 nor 0x7f. Octets >= 0x80 are allowed (SMTPUTF8). */
bool ldap_filter_addr_possible(const char *addr, size_t len);

/* Escape value (len octets) per RFC 4515 into out (NUL-terminated): '*', '(', ')', '\\', NUL and
 * every octet >= 0x80 become \HH. */
enum ldap_filter_status ldap_filter_escape(const char *value, size_t len, char *out, size_t outsz);

/* Expand tmpl (already checked) with every %s replaced by the escaped addr. addr must pass
 * ldap_filter_addr_possible() (else LFILTER_IMPOSSIBLE). */
enum ldap_filter_status ldap_filter_build(const char *tmpl, const char *addr, size_t len, char *out,
					  size_t outsz);

/* The lookup filter for an address and, if alt is non-empty, its base form without the
 * sub-address: "(|F(addr)F(alt))". */
enum ldap_filter_status ldap_filter_build2(const char *tmpl, const char *addr, const char *alt,
					   char *out, size_t outsz);

/* The filter `backstop sync` uses to list every entry the template could match: %s replaced by
 * a bare '*' (a presence or substring assertion). */
enum ldap_filter_status ldap_filter_build_all(const char *tmpl, char *out, size_t outsz);

/* Is an entry with this userAccountControl value (text, as returned; NULL = attribute absent)
 * disabled (bit 0x2, ACCOUNTDISABLE)? Absent or unparsable values are not disabled. */
bool ldap_filter_uac_disabled(const char *uac);

/* If value is an SMTP proxy address ("SMTP:a@b" or "smtp:a@b", any case), return a pointer to
 * the address after the prefix, else NULL (X500:, SIP:, X400:, ... never match). */
const char *ldap_filter_proxy_smtp(const char *value);

#endif
