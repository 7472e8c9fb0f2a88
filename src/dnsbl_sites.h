/* dnsbl_sites.h - DNS blocklists and allowlists as Postfix's postscreen_dnsbl_sites writes them:
 * "zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net*2, list.dnswl.org=127.0.[0..255].[1..3]*-2"
 * (a list domain, an optional filter on the reply address with [a..b;c] ranges per octet, an
 * optional weight, negative for allow lists), CIDR lists ("192.0.2.0/24, 2001:db8::/32"), the
 * query name of a client (reversed octets, IPv6 in nibbles) and what a reply means. Pure: no
 * I/O, no allocation but the parsed lists (owned by the caller, freed with the _free calls). */
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

struct dnsbl_cidr {
	int family;         /* AF_INET or AF_INET6 */
	uint8_t addr[16];   /* network address (4 bytes used for AF_INET) */
	unsigned prefix;
};

struct dnsbl_cidrs {
	struct dnsbl_cidr *items;
	size_t n;
};

/* "192.0.2.0/24, 2001:db8::/32 10.0.0.1": commas and/or spaces; a bare address is a /32 or /128.
 * Host bits set under the prefix are an error (a typo more often than not). 0, or -1 with why. */
int dnsbl_cidrs_parse(const char *text, struct dnsbl_cidrs *out, char *why, size_t whysz);
void dnsbl_cidrs_free(struct dnsbl_cidrs *c);
/* Is the address in one of the networks? IPv4-mapped IPv6 addresses count as IPv4. */
bool dnsbl_cidrs_contain(const struct dnsbl_cidrs *c, const struct sockaddr *sa);

/* The client's address as family + bytes, IPv4-mapped IPv6 made IPv4: 0, or -1 (not IP). */
int dnsbl_client_addr(const struct sockaddr *sa, int *family, uint8_t addr[16]);

/* The query name "4.3.2.1.zen.spamhaus.org." (fully qualified: no search list) into buf. 0, or
 * -1 when it does not fit. */
int dnsbl_query_name(int family, const uint8_t addr[16], const char *domain, char *buf, size_t bufsz);

#endif
