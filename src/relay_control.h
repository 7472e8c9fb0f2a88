/* relay_control.h - relay control, the decision that needs no lookup: is this recipient
 * provably in one of our domains, and is its local part free of routing characters? Pure
 * (unit-tested, fuzzed through the address fuzzer); check_relay.c makes it a check of the
 * engine. Recipient verification (maps, callouts, LDAP) comes after. */
#ifndef BACKSTOP_RELAY_CONTROL_H
#define BACKSTOP_RELAY_CONTROL_H

#include "config.h"
#include "smtp_address.h"

enum relay_verdict {
	RELAY_ACCEPT = 0,        /* in one of our domains; ->domain set */
	RELAY_DENIED,            /* not our domain (includes look-alikes and subdomains) */
	RELAY_ROUTING_LOCALPART, /* local part holds %, !, @, /, | or starts with '.' */
	RELAY_IP_LITERAL,        /* address literal not named by any [domain ...] section */
};

struct relay_decision {
	enum relay_verdict verdict;
	const struct bs_domain *domain; /* owned by the config; valid while the config is held */
	int code;                       /* SMTP reply for a refusal */
	const char *enhanced;
	const char *reason;             /* static text, for the reply and the log */
};

/* Decide for one parsed recipient. "<postmaster>" without a domain (empty domain) is taken as
 * postmaster of cfg->postmaster_domain (RFC 5321 4.5.1). */
void relay_control_check(const struct bs_config *cfg, const struct smtp_address *rcpt,
			struct relay_decision *out);

/* The same with rcpt's [domain] section already found by relay_control_domain() (NULL: none). */
void relay_control_check_in(const struct bs_config *cfg, const struct smtp_address *rcpt,
			    const struct bs_domain *dom, struct relay_decision *out);

/* The [domain] section rcpt belongs to (postmaster without a domain: cfg->postmaster_domain's),
 * or NULL. */
const struct bs_domain *relay_control_domain(const struct bs_config *cfg, const struct smtp_address *rcpt);

/* True if the unquoted local part holds a character that a downstream MTA may treat as a route
 * (%, !, @, /, |, a leading '.'). */
bool relay_control_has_routing(const char *local_raw, size_t len);

#endif
