/* cidr.c - CIDR blocks: parsing ("ADDR/BITS" or a bare address) and matching socket addresses,
 * IPv4-mapped IPv6 peers (dual-stack sockets) compared as IPv4. */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static void cidr_clear_host_bits(struct cidr *c)
{
	size_t n = c->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < n; i++) {
		unsigned keep = c->bits > i * 8 ? c->bits - (unsigned)i * 8 : 0;
		if (keep < 8)
			c->addr[i] &= (unsigned char)(0xff00u >> keep);
	}
}

int cidr_parse(const char *text, size_t len, struct cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	unsigned long bits;
	char *end;

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(out, 0, sizeof *out);
	slash = strchr(buf, '/');
	if (slash)
		buf[slash - buf] = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -1;
	unsigned max = out->family == AF_INET ? 32 : 128;
	out->bits = max;
	if (slash) {
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > max)
			return -1;
		out->bits = (unsigned)bits;
	}
	cidr_clear_host_bits(out);
	return 0;
}

int cidr_list_parse(const char *text, struct cidr_list *out, const char **why)
{
	out->n = 0;
	for (const char *p = text; p && *p;) {
		size_t skip = strspn(p, ", \t");
		p += skip;
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		if (out->n == CIDR_LIST_MAX) {
			*why = "more than 32 address blocks";
			return -1;
		}
		if (cidr_parse(p, len, &out->items[out->n]) != 0) {
			*why = "expected address blocks such as 192.0.2.0/24, 2001:db8::/32 or 192.0.2.7";
			return -1;
		}
		out->n++;
		p += len;
	}
	return 0;
}

int cidr_list_check(const char *text, const char **why)
{
	struct cidr_list l;
	return cidr_list_parse(text, &l, why);
}

static bool cidr_match(const struct cidr *c, int family, const unsigned char *addr)
{
	if (c->family != family)
		return false;
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	return rest == 0 || (addr[full] & (unsigned char)(0xff00u >> rest)) == c->addr[full];
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *addr;
	int family = sa->sa_family;

	if (family == AF_INET) {
		addr = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		addr = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (memcmp(addr, mapped, 12) == 0)
			family = AF_INET, addr += 12;
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n; i++)
		if (cidr_match(&l->items[i], family, addr))
			return true;
	return false;
}
