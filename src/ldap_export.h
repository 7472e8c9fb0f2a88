/* ldap_export.h - read every recipient address of an [ldap NAME] section out of the directory,
 * page by page (RFC 2696 paged results: AD hands out at most 1,000 entries per page), keeping
 * only addresses in configured domains. Blocking: for `backstop sync`, never for a worker. */
#ifndef BACKSTOP_LDAP_EXPORT_H
#define BACKSTOP_LDAP_EXPORT_H

#include <stddef.h>

#include "config.h"

#define LDAP_EXPORT_PAGE_SIZE 500
#define LDAP_EXPORT_SKIPPED_MAX 20

struct ldap_export {
	char **addrs;           /* "local@domain", owned; sorted and unique after a successful run */
	size_t n, cap;
	size_t entries;         /* entries read */
	size_t disabled;        /* entries skipped as disabled accounts */
	size_t foreign;         /* addresses skipped: domain not configured */
	size_t malformed;       /* values skipped: not an address, or not one a map line can hold
				 * (""@domain: a map would read the domain's catch-all) */
	size_t unmappable;      /* of which addresses a map line cannot hold */
	char *skipped[LDAP_EXPORT_SKIPPED_MAX]; /* the first of those: "<VALUE>: why", owned */
	size_t nskipped;
	unsigned pages;
};

/* Called after each page (for a progress display). */
typedef void (*ldap_export_progress)(void *arg, const struct ldap_export *ex);

/* Export the addresses l's preset (or query) finds, applying include_disabled like a lookup.
 * Addresses: the domain normalised; the local part lower-cased unless the domain is
 * case_sensitive_local. Attributes read: active-directory: proxyAddresses (smtp: values only)
 * and mail; openldap: mail and mailAlternateAddress; none: all three. Returns 0, or -1 with err
 * (then ex holds a partial export that must not be used). */
int ldap_export_run(const struct bs_config *cfg, const struct bs_ldap *l, struct ldap_export *ex,
		    ldap_export_progress progress, void *arg, char *err, size_t errsz);
void ldap_export_free(struct ldap_export *ex);

#endif
