/* dns_msg.h - a DNS response read into typed records (A, AAAA, MX, PTR, TXT) with the TTL the
 * answer may be kept for, telling NXDOMAIN from NODATA from a server's failure. Pure: no I/O,
 * no global state; fuzzed through tests/fuzz/fuzz_dns_msg.c. dns.c asks, dns_cache.c keeps. */
#ifndef BACKSTOP_DNS_MSG_H
#define BACKSTOP_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
};

enum dns_result {
	DNS_RESULT_OK = 0,   /* count >= 1 records of the type asked */
	DNS_RESULT_NXDOMAIN, /* the name does not exist (RCODE 3) */
	DNS_RESULT_NODATA,   /* the name exists, without records of that type */
	DNS_RESULT_TEMPFAIL, /* timeout, SERVFAIL, REFUSED, another RCODE, a reply that makes no sense */
};

#define DNS_RR_MAX 256       /* records kept from one answer (count says how many came) */
#define DNS_TTL_MAX 86400    /* seconds: a longer TTL is kept this long */
#define DNS_NAME_MAX 255     /* a name as text, without the trailing dot */

struct dns_rr {
	unsigned char addr[16]; /* A: 4 octets, AAAA: 16 (network order) */
	uint16_t preference;    /* MX */
	const char *text;       /* MX exchange and PTR name (no trailing dot); TXT: the record's
				 * strings concatenated, NUL-terminated (may hold NULs: see len) */
	size_t len;
};

/* One answer, in one block of memory with its records and texts; shared (reference counted)
 * between the cache and the queries it answers. Immutable once built. */
struct dns_answer {
	enum dns_result result;
	enum dns_type type;
	uint32_t ttl;          /* seconds it may be kept: records: their smallest TTL (CNAMEs on the way
				* included); NXDOMAIN/NODATA: min(SOA TTL, SOA MINIMUM) (RFC 2308), 0 when
				* the reply has no SOA; TEMPFAIL: 0 */
	bool cached;           /* set on the copy a query delivers: it came from the cache */
	const char *error;     /* static text for logs ("NXDOMAIN", "timeout", "SERVFAIL"...) */
	size_t count;          /* records kept (<= DNS_RR_MAX) */
	size_t total;          /* records of the type the answer held */
	struct dns_rr *rr;
};

const char *dns_type_name(enum dns_type t); /* "A", "MX", ... */
const char *dns_result_name(enum dns_result r); /* "ok", "nxdomain", "nodata", "tempfail" */

/* Read msg (len octets, a response to a query for qname/type) into a new answer (one reference).
 * Never fails: garbage is a TEMPFAIL answer. CNAMEs from qname are followed within the answer. */
struct dns_answer *dns_msg_parse(const unsigned char *msg, size_t len, const char *qname, enum dns_type type);
/* An answer without records: NXDOMAIN, NODATA or TEMPFAIL (error static). */
struct dns_answer *dns_answer_new_empty(enum dns_type type, enum dns_result result, const char *error);
struct dns_answer *dns_answer_ref(struct dns_answer *a);
void dns_answer_unref(struct dns_answer *a); /* NULL is fine */

#endif
