/* dnsbl_sites.c - parsing postscreen_dnsbl_sites lists, query names and reply matching for DNS
 * blocklists (dnsbl_sites.h). A hand-written scanner over the text: each entry is
 * domain[=filter][*weight], entries separated by commas or white space. */
#include "dnsbl_sites.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void fail(char *why, size_t whysz, size_t entry, const char *start, size_t len, const char *what)
{
	snprintf(why, whysz, "entry %zu (%.*s): %s", entry, (int)(len > 60 ? 60 : len), start, what);
}

/* A decimal number of at most 6 digits at *p; advances *p. */
static int parse_num(const char **p, const char *end, long *v)
{
	const char *s = *p;
	long n = 0;

	while (*p < end && **p >= '0' && **p <= '9' && *p - s < 7)
		n = n * 10 + (*(*p)++ - '0');
	if (*p == s || *p - s > 6)
		return -1;
	*v = n;
	return 0;
}

static void set_bits(uint64_t bits[4], long lo, long hi)
{
	for (long v = lo; v <= hi; v++)
		bits[v >> 6] |= 1ULL << (v & 63);
}

/* One octet of a filter: 2, or [2..11], or [2;4;6..8]. */
static const char *parse_octet(const char *p, const char *end, uint64_t bits[4])
{
	long lo, hi;
	bool bracket = p < end && *p == '[';

	if (bracket)
		p++;
	for (;;) {
		if (parse_num(&p, end, &lo) < 0 || lo > 255)
			return NULL;
		hi = lo;
		if (bracket && end - p >= 2 && p[0] == '.' && p[1] == '.') {
			p += 2;
			if (parse_num(&p, end, &hi) < 0 || hi > 255 || hi < lo)
				return NULL;
		}
		set_bits(bits, lo, hi);
		if (!bracket)
			return p;
		if (p < end && *p == ';') {
			p++;
			continue;
		}
		return p < end && *p == ']' ? p + 1 : NULL;
	}
}

static const char *parse_filter(const char *p, const char *end, struct dnsbl_site *site)
{
	for (int i = 0; i < 4; i++) {
		if (i > 0) {
			if (p >= end || *p != '.')
				return NULL;
			p++;
		}
		if ((p = parse_octet(p, end, site->octet[i])) == NULL)
			return NULL;
	}
	site->has_filter = true;
	return p;
}

/* Letters, digits, '-' and '_' in labels of 1-63, separated by single dots; lower-cased. */
static int parse_domain(const char *s, size_t len, char *out)
{
	size_t label = 0;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > DNSBL_DOMAIN_MAX || s[0] == '.' || s[0] == '-')
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return -1;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
			label++;
		} else {
			return -1;
		}
		if (label > 63)
			return -1;
		out[i] = c;
	}
	out[len] = '\0';
	if (label == 0 || s[len - 1] == '-')
		return -1; /* an empty or bad last label ("a.test..") */
	return strchr(out, '.') ? 0 : -1; /* a list is never a top-level domain */
}

/* One entry from p (not a separator) to its end; returns the end or NULL with why. */
static const char *parse_entry(const char *p, const char *end, struct dnsbl_site *site, size_t entry, char *why,
			       size_t whysz)
{
	const char *start = p, *d;
	size_t elen = 0;
	long w;

	while (start + elen < end && !is_sep(start[elen]))
		elen++;
	for (d = p; d < end && !is_sep(*d) && *d != '=' && *d != '*'; d++)
		if (*d == '[') /* only inside a filter */
			break;
	memset(site, 0, sizeof *site);
	site->weight = 1;
	if (parse_domain(p, (size_t)(d - p), site->domain) < 0) {
		fail(why, whysz, entry, start, elen, "not a list domain name (like zen.spamhaus.org)");
		return NULL;
	}
	p = d;
	if (p < end && *p == '=') {
		p = parse_filter(p + 1, end, site);
		if (p == NULL) {
			fail(why, whysz, entry, start, elen,
			     "the filter is four octets, each a number or [ranges] like [2..11] or [2;4..6]");
			return NULL;
		}
	}
	if (p < end && *p == '*') {
		bool neg = ++p < end && *p == '-';
		if (neg || (p < end && *p == '+'))
			p++;
		if (parse_num(&p, end, &w) < 0 || w > DNSBL_WEIGHT_MAX) {
			fail(why, whysz, entry, start, elen, "the weight after '*' is a whole number (negative for allow lists)");
			return NULL;
		}
		site->weight = neg ? -(int)w : (int)w;
	}
	if (p < end && !is_sep(*p)) {
		fail(why, whysz, entry, start, elen, "unexpected text (expected domain[=filter][*weight])");
		return NULL;
	}
	return p;
}

static void index_domains(struct dnsbl_sites *s)
{
	s->ndomains = 0;
	for (size_t i = 0; i < s->n; i++) {
		size_t j;
		for (j = 0; j < i && strcmp(s->items[j].domain, s->items[i].domain) != 0; j++)
			;
		s->items[i].domain_index = j < i ? s->items[j].domain_index : (unsigned)s->ndomains++;
	}
}

int dnsbl_sites_parse(const char *text, struct dnsbl_sites *out, char *why, size_t whysz)
{
	const char *p = text ? text : "", *end = p + strlen(p);
	struct dnsbl_sites s = { NULL, 0, 0 };

	for (;;) {
		while (p < end && is_sep(*p))
			p++;
		if (p == end)
			break;
		if (s.n == DNSBL_SITES_MAX) {
			snprintf(why, whysz, "more than %d entries", DNSBL_SITES_MAX);
			dnsbl_sites_free(&s);
			return -1;
		}
		s.items = xrealloc(s.items, (s.n + 1) * sizeof *s.items);
		p = parse_entry(p, end, &s.items[s.n], s.n + 1, why, whysz);
		if (p == NULL) {
			dnsbl_sites_free(&s);
			return -1;
		}
		s.n++;
	}
	index_domains(&s);
	*out = s;
	return 0;
}

void dnsbl_sites_free(struct dnsbl_sites *s)
{
	free(s->items);
	s->items = NULL;
	s->n = s->ndomains = 0;
}

const struct dnsbl_site *dnsbl_sites_domain(const struct dnsbl_sites *s, size_t i)
{
	for (size_t j = 0; j < s->n; j++)
		if (s->items[j].domain_index == i)
			return &s->items[j];
	return NULL;
}

bool dnsbl_site_matches(const struct dnsbl_site *site, const uint8_t addr[4])
{
	if (!site->has_filter)
		return true;
	for (int i = 0; i < 4; i++)
		if (!(site->octet[i][addr[i] >> 6] & (1ULL << (addr[i] & 63))))
			return false;
	return true;
}

bool dnsbl_reply_is_error(const uint8_t addr[4])
{
	return addr[0] == 127 && addr[1] == 255 && addr[2] == 255;
}

/* ---- clients ---- */

int dnsbl_client_addr(const struct sockaddr *sa, int *family, uint8_t addr[16])
{
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		*family = AF_INET;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(addr, a6->s6_addr + 12, 4);
			*family = AF_INET;
		} else {
			memcpy(addr, a6->s6_addr, 16);
			*family = AF_INET6;
		}
		return 0;
	}
	return -1;
}

int dnsbl_query_name(int family, const uint8_t addr[16], const char *domain, char *buf, size_t bufsz)
{
	static const char hex[] = "0123456789abcdef";
	char rev[80];
	size_t o = 0;
	int n;

	if (family == AF_INET) {
		n = snprintf(rev, sizeof rev, "%u.%u.%u.%u", addr[3], addr[2], addr[1], addr[0]);
		o = n > 0 ? (size_t)n : 0;
	} else {
		for (int i = 15; i >= 0; i--) {
			rev[o++] = hex[addr[i] & 0xF];
			rev[o++] = '.';
			rev[o++] = hex[addr[i] >> 4];
			rev[o++] = i ? '.' : '\0';
		}
		o--;
	}
	n = snprintf(buf, bufsz, "%.*s.%s.", (int)o, rev, domain);
	return n > 0 && (size_t)n < bufsz && n <= 254 ? 0 : -1;
}
