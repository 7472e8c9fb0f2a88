/* spf_eval.h - the SPF evaluator (RFC 7208 check_host()) over an abstract, asynchronous DNS
 * interface that the caller supplies. Pure: no event loop, no sockets, no global state; all
 * memory is owned by one check and bounded. Works whether DNS answers arrive later (event loop)
 * or from inside the query() call itself (a test double, a cache hit). */
#ifndef BACKSTOP_SPF_EVAL_H
#define BACKSTOP_SPF_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* ---- The DNS interface the caller supplies ---------------------------------------------- */

enum spf_dns_type {
	SPF_DNS_A = 1,
	SPF_DNS_AAAA,
	SPF_DNS_MX,
	SPF_DNS_PTR,
	SPF_DNS_TXT,
};

enum spf_dns_status {
	SPF_DNS_OK = 0,      /* RCODE 0 with records of the type (count > 0) */
	SPF_DNS_NODATA,      /* RCODE 0, no record of the type: a "void lookup" (RFC 7208 4.6.4) */
	SPF_DNS_NXDOMAIN,    /* RCODE 3: a "void lookup" too */
	SPF_DNS_TEMPFAIL,    /* timeout, SERVFAIL, no server reachable, truncated and no TCP ... */
	SPF_DNS_ERROR,       /* any other RCODE (FORMERR, REFUSED, ...): temperror as well */
};

/* One record of an answer. Which fields are set depends on the query's type. */
struct spf_dns_rr {
	struct in_addr a;      /* SPF_DNS_A */
	struct in6_addr aaaa;  /* SPF_DNS_AAAA */
	uint16_t pref;         /* SPF_DNS_MX: preference */
	const char *name;      /* MX: exchange; PTR: target (both without the trailing dot);
				* TXT: the record's character-strings concatenated (may hold NULs) */
	size_t len;            /* length of name in bytes */
};

/* An answer. It and everything it points to belong to the DNS layer and are valid only during
 * the callback: the evaluator copies what it keeps. count is 0 unless status is SPF_DNS_OK; an
 * OK answer with count 0 is read as NODATA. Records of other types (a CNAME chain's CNAMEs)
 * must not be passed. */
struct spf_dns_result {
	enum spf_dns_status status;
	const char *error;             /* optional text for problems ("timeout", "SERVFAIL"); may be NULL */
	size_t count;
	const struct spf_dns_rr *rr;
};

typedef void (*spf_dns_cb)(void *arg, const struct spf_dns_result *res);

struct spf_dns_query; /* the DNS layer's handle, opaque to the evaluator */

struct spf_dns {
	/* Ask for name's records of type (name has no trailing dot, is at most 253 bytes, its labels
	 * at most 63). cb is called exactly once, unless the query is cancelled first: either from
	 * inside this call (then return NULL; also how to report a query that cannot even start,
	 * with SPF_DNS_TEMPFAIL) or later (then return a handle, valid until cb starts). The
	 * evaluator may have several queries outstanding at once and may start new queries, or
	 * finish, from inside cb. */
	struct spf_dns_query *(*query)(void *ctx, enum spf_dns_type type, const char *name, spf_dns_cb cb,
				       void *arg);
	/* Forget a query whose cb has not started: cb will not be called. */
	void (*cancel)(void *ctx, struct spf_dns_query *q);
	void *ctx;
};

/* ---- A check -------------------------------------------------------------------------------- */

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" (as in Received-SPF
 * and Authentication-Results); "?" for a value out of range. */
const char *spf_result_name(enum spf_result r);

enum spf_identity {
	SPF_ID_MAILFROM = 0, /* the MAIL FROM domain; for the null sender postmaster@HELO (RFC 7208 2.4) */
	SPF_ID_HELO,         /* the HELO/EHLO name on its own (RFC 7208 2.3) */
};

/* "mailfrom", "helo" (the identity= of Received-SPF; smtp.mailfrom / smtp.helo in A-R). */
const char *spf_identity_name(enum spf_identity id);

/* Processing limits (RFC 7208 4.6.4). Zero in a field means the RFC's value. */
struct spf_limits {
	unsigned dns_terms;    /* DNS-querying terms: include a mx ptr exists redirect (10) */
	unsigned void_lookups; /* NXDOMAIN/NODATA answers (2) */
	unsigned mx_names;     /* MX names looked up per mx term (10) */
	unsigned ptr_names;    /* PTR names validated per ptr term / %{p} (10) */
};

#define SPF_LIMIT_DNS_TERMS 10
#define SPF_LIMIT_VOID 2
#define SPF_LIMIT_MX 10
#define SPF_LIMIT_PTR 10

/* What to check. Everything is copied by spf_check_start(): nothing needs to outlive the call. */
struct spf_request {
	const struct sockaddr *client; /* AF_INET or AF_INET6 (an IPv4-mapped IPv6 address counts as IPv4) */
	const char *sender;            /* MAIL FROM "local@domain" without <>; NULL or "" for the null sender */
	const char *helo;              /* HELO/EHLO argument as sent (NULL: "") */
	const char *receiver;          /* this host's name, %{r} (NULL: "unknown") */
	enum spf_identity identity;
	struct spf_limits limits;      /* zeros: the RFC's limits */
	time_t now;                    /* %{t}; 0: time(NULL) */
	const char *default_exp;       /* explanation when a fail has no usable exp=, macro-expanded
					* (NULL: SPF_DEFAULT_EXP) */
};

#define SPF_DEFAULT_EXP "%{d} does not designate %{i} as a permitted sender"

#define SPF_RECORDS_MAX 12   /* records kept in the answer (the first ones evaluated) */
#define SPF_RECORD_TEXT_MAX 512
#define SPF_EXP_MAX 512      /* explanation, printable ASCII, cut to this length */

/* A record the evaluation used (the top one first, then include: and redirect= targets). */
struct spf_record_used {
	const char *domain;
	const char *text; /* the record as published (printable ASCII; cut to SPF_RECORD_TEXT_MAX) */
};

/* The outcome. Valid only during the callback; copy what is kept. */
struct spf_answer {
	enum spf_result result;
	enum spf_identity identity;
	const char *identity_value;   /* the checked identity: "local@domain" ("postmaster@HELO" for the
				       * null sender) or the HELO name */
	const char *domain;           /* the domain check_host() started with ("" if none was usable) */
	const char *mechanism;        /* what decided: "ip4:192.0.2.0/24", "-all", "default" (no
				       * mechanism matched), "no record", "include:x.test" ... (never NULL) */
	const char *explanation;      /* fail only: the exp= text, else the default explanation,
				       * printable ASCII; NULL for other results */
	const char *problem;          /* temperror/permerror: what went wrong, for logs and
				       * Received-SPF problem=; NULL otherwise */
	unsigned dns_terms;           /* DNS-querying terms evaluated (counted as RFC 7208 4.6.4) */
	unsigned void_lookups;
	unsigned dns_queries;         /* DNS queries actually sent (informative) */
	size_t nrecords;
	const struct spf_record_used *records;
};

typedef void (*spf_check_cb)(void *arg, const struct spf_answer *ans);

struct spf_check;

/* Start a check. cb is called exactly once, unless the check is cancelled first: either from
 * inside this call (then NULL is returned: the answer needed no DNS, or the DNS layer answered
 * synchronously) or later from inside one of the DNS callbacks (then the returned handle is
 * valid until cb starts). Invalid input (no client address) answers permerror. The check and
 * its memory are freed when cb returns. dns must stay valid until then. */
struct spf_check *spf_check_start(const struct spf_dns *dns, const struct spf_request *req, spf_check_cb cb,
				  void *arg);

/* Stop a check whose callback has not started: its outstanding DNS queries are cancelled, its
 * memory freed, cb never called. */
void spf_check_cancel(struct spf_check *c);

#endif
