/* dnsbl_sites.h - DNS blocklists and allowlists as Postfix's postscreen_dnsbl_sites writes them:
 * "zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net*2, list.dnswl.org=127.0.[0..255].[1..3]*-2"
 * (a list domain, an optional filter on the reply address with [a..b;c] ranges per octet, an
 * optional weight, negative for allow lists), the query name of a client (reversed octets, IPv6
 * in nibbles) and what a reply means. Pure: no I/O, no allocation but the parsed list (owned by
 * the caller, freed with dnsbl_sites_free). CIDR lists (dnsbl_skip) are cidr.h's. */
#ifndef BACKSTOP_DNSBL_SITES_H
#define BACKSTOP_DNSBL_SITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNSBL_SITES_MAX 64        /* entries in one list */
#define DNSBL_DOMAIN_MAX 180      /* a list's domain: room left for 64 nibbles + dots (253) */
#define DNSBL_QNAME_MAX 256       /* query name, trailing dot and NUL included */
#define DNSBL_WEIGHT_MAX 100000   /* |weight| */

struct dnsbl_site {
	char domain[DNSBL_DOMAIN_MAX + 1]; /* lower case, no trailing dot */
	bool has_filter;                   /* false: any reply address counts */
	uint64_t octet[4][4];              /* filter: bit v of octet[i] set when v may be octet i */
	int weight;                        /* 1 when not written */
	unsigned domain_index;             /* index of its domain among the list's distinct ones */
};

/* Entries in the order written; a domain may appear more than once with different filters
 * (each matching entry adds its weight, as in postscreen). */
struct dnsbl_sites {
	struct dnsbl_site *items;
	size_t n;
	size_t ndomains;                   /* distinct domains: one query each */
};

/* Parse a list (separators: commas and/or white space). 0, or -1 with why (what and where). An
 * empty text is a valid empty list. */
int dnsbl_sites_parse(const char *text, struct dnsbl_sites *out, char *why, size_t whysz);
void dnsbl_sites_free(struct dnsbl_sites *s);
/* The first entry of distinct domain number i. */
const struct dnsbl_site *dnsbl_sites_domain(const struct dnsbl_sites *s, size_t i);

/* Does a reply address (4 octets) match the entry? (any address when it has no filter) */
bool dnsbl_site_matches(const struct dnsbl_site *site, const uint8_t addr[4]);
/* 127.255.255.0/24: the list refuses the query (rate limit, public resolver), never a listing. */
bool dnsbl_reply_is_error(const uint8_t addr[4]);

/* The client's address as family + bytes, IPv4-mapped IPv6 made IPv4: 0, or -1 (not IP). */
int dnsbl_client_addr(const struct sockaddr *sa, int *family, uint8_t addr[16]);

/* The query name "4.3.2.1.zen.spamhaus.org." (fully qualified: no search list) into buf. 0, or
 * -1 when it does not fit. */
int dnsbl_query_name(int family, const uint8_t addr[16], const char *domain, char *buf, size_t bufsz);

#endif
