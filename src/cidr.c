/* cidr.c - parsing and matching CIDR ranges (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int cidr_parse(const char *s, size_t len, struct cidr *out, const char **why)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;

	if (alen == 0 || alen >= INET6_ADDRSTRLEN) {
		*why = "expected an address or address/length";
		return -1;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->bits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		out->bits = 128;
	} else {
		*why = "not an IPv4 or IPv6 address";
		return -1;
	}
	if (slash != NULL) {
		size_t dl = len - alen - 1;
		unsigned v = 0;
		if (dl == 0 || dl > 3) {
			*why = "bad prefix length";
			return -1;
		}
		for (size_t i = 0; i < dl; i++) {
			char c = slash[1 + i];
			if (c < '0' || c > '9') {
				*why = "bad prefix length";
				return -1;
			}
			v = v * 10 + (unsigned)(c - '0');
		}
		if (v > out->bits) {
			*why = "prefix length too long for the address";
			return -1;
		}
		out->bits = v;
	}
	for (unsigned i = out->bits; i < (out->family == AF_INET ? 32u : 128u); i++)
		out->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
	return 0;
}

int cidr_list_parse(const char *value, struct cidr_list *out, const char **why)
{
	struct cidr_list l = { NULL, 0 };
	const char *p = value;

	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		size_t len = strcspn(p, ", \t");
		l.items = xrealloc(l.items, (l.n + 1) * sizeof *l.items);
		if (cidr_parse(p, len, &l.items[l.n], why) < 0) {
			free(l.items);
			return -1;
		}
		l.n++;
		p += len;
	}
	*out = l;
	return 0;
}

int cidr_list_check(const char *value, const char **why)
{
	struct cidr_list l;

	if (cidr_list_parse(value, &l, why) < 0)
		return -1;
	cidr_list_free(&l);
	return 0;
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a;
	int family = sa->sa_family;

	if (family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		a = in6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			family = AF_INET;
			a += 12;
		}
	} else {
		return false;
	}
	if (family != c->family)
		return false;
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(a, c->addr, full) != 0)
		return false;
	return rest == 0 || ((a[full] ^ c->addr[full]) & (unsigned char)(0xff00u >> rest)) == 0;
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (cidr_match(&l->items[i], sa))
			return true;
	return false;
}

void cidr_list_free(struct cidr_list *l)
{
	free(l->items);
	l->items = NULL;
	l->n = 0;
}
