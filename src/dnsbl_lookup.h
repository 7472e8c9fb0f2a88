/* dnsbl_lookup.h - one client address asked of every list of a dnsbl_sites list at once, over the
 * asynchronous DNS (dns.h, typed lookups through the resolver's TTL cache): an A query per
 * distinct list domain, then a TXT query for each list that lists the address (the reason, with
 * its removal link), all under one deadline. The result
 * says per list: not listed, listed (reply addresses, TXT), refused (127.255.255.x: the list
 * refuses this resolver, never a listing) or failed (timeout, server failure); and the score,
 * the sum of the weights of the entries that match. Used by the engine check (check_dnsbl.c) on
 * the asking worker's loop and by `backstop blcheck` (dnsbl_cli.c) on its own loop.
 *
 * Threads: everything runs on the loop of the resolver given; the callback always comes from that
 * loop, never from inside dnsbl_lookup_start. */
#ifndef BACKSTOP_DNSBL_LOOKUP_H
#define BACKSTOP_DNSBL_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "dns.h"
#include "dnsbl_sites.h"

#define DNSBL_REPLY_ADDRS 8   /* reply addresses kept per list */
#define DNSBL_TXT_MAX 256     /* TXT text kept per list (cut) */

enum dnsbl_state {
	DNSBL_PENDING = 0,
	DNSBL_NOT_LISTED,  /* NXDOMAIN / no address */
	DNSBL_LISTED,      /* addresses in 127.0.0.0/8 or elsewhere, none in 127.255.255.0/24 */
	DNSBL_REFUSED,     /* a reply in 127.255.255.0/24: an error of the list, never "listed" */
	DNSBL_FAILED,      /* timeout or server failure: scores 0 (fail open) */
};

/* Per distinct list domain (index: dnsbl_site.domain_index). */
struct dnsbl_list_result {
	const char *domain;                  /* the sites list's (borrowed) */
	enum dnsbl_state state;
	bool matched;                        /* LISTED and an entry's filter matched */
	int weight;                          /* sum of the weights of its entries that matched */
	size_t naddrs;
	uint8_t addrs[DNSBL_REPLY_ADDRS][4];
	char txt[DNSBL_TXT_MAX];             /* "" when none (or not asked) */
	const char *error;                   /* FAILED / REFUSED: why (static) */
	bool cached;                         /* the A answer came from the DNS cache */
	uint64_t ms;                         /* time to the A answer (or to the deadline) */
};

struct dnsbl_result {
	int score;                 /* sum over the matching entries */
	bool timed_out;            /* the deadline answered for at least one list */
	size_t nlists;
	struct dnsbl_list_result *lists; /* nlists entries, owned by the lookup */
};

/* Valid only during the callback. */
typedef void (*dnsbl_lookup_cb)(void *arg, const struct dnsbl_result *res);

enum dnsbl_txt_mode {
	DNSBL_TXT_NONE = 0,
	DNSBL_TXT_BLOCKING,  /* TXT of lists that matched with a positive weight (the check) */
	DNSBL_TXT_ALL,       /* TXT of every list that lists the address (blcheck) */
};

struct dnsbl_lookup;

/* Ask every list of sites (borrowed until the callback or cancel) about addr (family AF_INET or
 * AF_INET6) within timeout_ms. Returns the handle for dnsbl_lookup_cancel. */
struct dnsbl_lookup *dnsbl_lookup_start(struct dns_resolver *r, struct event_base *base,
					const struct dnsbl_sites *sites, int family, const uint8_t addr[16],
					uint64_t timeout_ms, enum dnsbl_txt_mode txt, dnsbl_lookup_cb cb, void *arg);
/* No callback after this; pending DNS queries are cancelled. */
void dnsbl_lookup_cancel(struct dnsbl_lookup *l);

/* "not-listed", "listed", "refused", "failed". */
const char *dnsbl_state_name(enum dnsbl_state s);

#endif
