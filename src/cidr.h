/* cidr.h - address blocks written as CIDR ("192.0.2.0/24", "2001:db8::/32", a bare address is
 * one host) and matching a socket address against a list of them (IPv4-mapped IPv6 addresses
 * match IPv4 blocks). Pure functions; the list is a fixed array owned by the caller. */
#ifndef BACKSTOP_CIDR_H
#define BACKSTOP_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define CIDR_LIST_MAX 32

struct cidr {
	int family;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16];     /* network byte order, host bits cleared */
	unsigned bits;
};

struct cidr_list {
	struct cidr items[CIDR_LIST_MAX];
	size_t n;
};

/* Parse one block (len bytes of text). 0, or -1 when it is not one. */
int cidr_parse(const char *text, size_t len, struct cidr *out);
/* Parse a list separated by commas and/or spaces into out (emptied first). 0, or -1 with *why
 * static (a bad block, or more than CIDR_LIST_MAX). */
int cidr_list_parse(const char *text, struct cidr_list *out, const char **why);
/* Config check for a CIDR list key. */
int cidr_list_check(const char *text, const char **why);
/* Is sa (AF_INET or AF_INET6) inside one of the list's blocks? */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

#endif
