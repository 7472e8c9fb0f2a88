/* relay_control.c - relay control: a recipient is accepted only when it is provably a plain mailbox of
 * one of our [domain] sections; everything else (other domains, look-alikes, subdomains,
 * unnamed address literals, local parts with routing characters) is refused. Pure: no I/O. */
#include "relay_control.h"

#include <string.h>

#include "util.h"

static const char relay_denied[] = "Relay access denied";

bool relay_control_has_routing(const char *local_raw, size_t len)
{
	if (len > 0 && local_raw[0] == '.')
		return true;
	for (size_t i = 0; i < len; i++)
		if (strchr("%!@/|", local_raw[i]) != NULL && local_raw[i] != '\0')
			return true;
	return false;
}

static void decide(struct relay_decision *out, enum relay_verdict v, int code,
		   const char *enhanced, const char *reason)
{
	out->verdict = v;
	out->code = code;
	out->enhanced = enhanced;
	out->reason = reason;
}

/* The domain the recipient belongs to, normalised into buf; false if there is none. An empty
 * domain is only ever "<postmaster>" and means cfg->postmaster_domain. */
static bool rcpt_domain(const struct bs_config *cfg, const struct smtp_address *rcpt, char *buf,
			size_t bufsz)
{
	const char *d = rcpt->domain;
	size_t dlen = rcpt->domain_len;

	if (rcpt->is_null)
		return false;
	if (dlen == 0) {
		if (ascii_casecmp_n(rcpt->local_raw, rcpt->local_raw_len, "postmaster", 10) != 0)
			return false;
		d = cfg->postmaster_domain;
		dlen = strnlen(d, sizeof(cfg->postmaster_domain));
	}
	return domain_normalise(d, dlen, true, buf, bufsz) > 0;
}

const struct bs_domain *relay_control_domain(const struct bs_config *cfg, const struct smtp_address *rcpt)
{
	char domain[SMTP_DOMAIN_MAX + 1];
	return rcpt_domain(cfg, rcpt, domain, sizeof(domain)) ? config_find_domain(cfg, domain) : NULL;
}

void relay_control_check(const struct bs_config *cfg, const struct smtp_address *rcpt,
			struct relay_decision *out)
{
	relay_control_check_in(cfg, rcpt, relay_control_domain(cfg, rcpt), out);
}

void relay_control_check_in(const struct bs_config *cfg, const struct smtp_address *rcpt,
			    const struct bs_domain *dom, struct relay_decision *out)
{
	memset(out, 0, sizeof(*out));
	if ((out->domain = dom) == NULL) {
		if (rcpt->ip_literal)
			decide(out, RELAY_IP_LITERAL, 554, "5.7.1", relay_denied);
		else
			decide(out, RELAY_DENIED, 554, "5.7.1", relay_denied);
		return;
	}
	if (!cfg->allow_routing_localparts &&
	    relay_control_has_routing(rcpt->local_raw, rcpt->local_raw_len)) {
		decide(out, RELAY_ROUTING_LOCALPART, 550, "5.7.1", "Local part holds routing characters");
		out->domain = NULL;
		return;
	}
	decide(out, RELAY_ACCEPT, 250, "2.1.5", "OK");
}
