/* cidr.h - address ranges written as CIDR ("192.0.2.0/24", "2001:db8::/32", a single address)
 * and lists of them ("spf_skip = 192.0.2.0/24, 2001:db8::/32"). An IPv4-mapped IPv6 client
 * (::ffff:192.0.2.1) matches IPv4 ranges. Pure. */
#ifndef BACKSTOP_CIDR_H
#define BACKSTOP_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];  /* network order, host bits cleared */
	unsigned bits;
};

struct cidr_list {
	struct cidr *items;
	size_t n;
};

/* One range; 0 or -1 with *why. */
int cidr_parse(const char *s, size_t len, struct cidr *out, const char **why);
/* Ranges separated by commas and/or spaces (empty: none); 0 or -1 with *why (out untouched). */
int cidr_list_parse(const char *value, struct cidr_list *out, const char **why);
/* The config table's check of such a list. */
int cidr_list_check(const char *value, const char **why);
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
void cidr_list_free(struct cidr_list *l);

#endif
