/* config_validate.c - after parsing: computed defaults (hostname, postmaster_domain), TTLs that
 * domains inherit from [gateway], checks that span keys or sections, and sorting the domains
 * for config_find_domain(). Errors name the line of the key or section concerned. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config_load.h"
#include "rcpt.h"
#include "smtp_address.h"
#include "util.h"

static void cfg_fill_computed(struct cfg_loader *L)
{
	struct bs_config *cfg = L->cfg;
	char host[SMTP_DOMAIN_MAX + 1];
	char norm[SMTP_DOMAIN_MAX + 1];

	if (!cfg->hostname) {
		if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		cfg->hostname = xstrdup(host);
	}
	if (cfg->postmaster_domain[0]) {
		if (domain_normalise(cfg->postmaster_domain, strlen(cfg->postmaster_domain), true,
				     norm, sizeof(norm)))
			memcpy(cfg->postmaster_domain, norm, sizeof(norm));
	} else if (cfg->ndomains > 0) {
		memcpy(cfg->postmaster_domain, cfg->domains[0].name, sizeof(cfg->postmaster_domain));
	}
	const char *why;
	cfg->proxy_from = (struct cidr_list){ NULL, 0 }; /* a bad list was refused by the key's check */
	cidr_list_parse(cfg->proxy_protocol_from ? cfg->proxy_protocol_from : "", &cfg->proxy_from, &why);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const unsigned *seen = L->dom_seen + i * config_nkeys;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "positive_ttl"))
			cfg->domains[i].positive_ttl_ms = cfg->positive_ttl_ms;
		if (!config_seen_line(seen, CFG_SEC_DOMAIN, "negative_ttl"))
			cfg->domains[i].negative_ttl_ms = cfg->negative_ttl_ms;
	}
}

static void cfg_validate_gateway(struct cfg_loader *L)
{
	const struct bs_config *cfg = L->cfg;
	unsigned cert = config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "tls_cert");
	unsigned key = config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "tls_key");

	if (cfg->listen.n == 0 && cfg->policy_listen.n == 0)
		config_error(L, config_seen_line(L->gw_seen, CFG_SEC_GATEWAY, "listen"),
			     "no listen address and no policy_listen: nothing to serve");
	if (cfg->ndomains == 0)
		config_error(L, 0, "no [domain NAME] section: at least one accepted domain is needed");
	if (cert && !key)
		config_error(L, cert, "tls_cert is set but tls_key is not: set both or neither");
	if (key && !cert)
		config_error(L, key, "tls_key is set but tls_cert is not: set both or neither");
}

static void cfg_validate_domain(struct cfg_loader *L, size_t i)
{
	const struct bs_domain *d = &L->cfg->domains[i];
	const unsigned *seen = L->dom_seen + i * config_nkeys;
	unsigned vline = config_seen_line(seen, CFG_SEC_DOMAIN, "verify");

	if (d->deliver.n == 0)
		config_error(L, d->line, "[domain %s] has no deliver = host:port", d->name);
	for (size_t j = 0; j < d->verify.n; j++) { /* what a spec names elsewhere: its row knows */
		char why[256];
		if (rcpt_spec_check_refs(d->verify.items[j], L->cfg, why, sizeof why) < 0)
			config_error(L, vline, "verify = %s: %s", d->verify.items[j], why);
	}
}

static void cfg_validate_ldap(struct cfg_loader *L, size_t i)
{
	const struct bs_ldap *l = &L->cfg->ldaps[i];
	const unsigned *seen = L->ldap_seen + i * config_nkeys;
	unsigned pwline = config_seen_line(seen, CFG_SEC_LDAP, "bind_password_file");
	unsigned dnline = config_seen_line(seen, CFG_SEC_LDAP, "bind_dn");

	if (l->uri.n == 0)
		config_error(L, l->line, "[ldap %s] has no uri", l->name);
	if (!l->base)
		config_error(L, l->line, "[ldap %s] has no base", l->name);
	if (l->preset == LDAP_PRESET_NONE && !l->query)
		config_error(L, config_seen_line(seen, CFG_SEC_LDAP, "preset"),
			     "preset = none needs a query");
	/* by the lines that set them, not the values: a key whose value was refused has its own
	 * error already, and must not add a false "missing" one */
	if (dnline && !pwline)
		config_error(L, dnline, "bind_dn needs bind_password_file");
	if (!dnline && pwline)
		config_error(L, pwline, "bind_password_file is set but bind_dn is not");
}

static int cfg_domain_cmp(const void *a, const void *b)
{
	const struct bs_domain *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static void cfg_sort_domains(struct cfg_loader *L)
{
	struct bs_config *cfg = L->cfg;

	if (cfg->ndomains > 1)
		qsort(cfg->domains, cfg->ndomains, sizeof(*cfg->domains), cfg_domain_cmp);
	for (size_t i = 1, first = 0; i < cfg->ndomains; i++) {
		if (strcmp(cfg->domains[first].name, cfg->domains[i].name) != 0)
			first = i;
		else
			config_error(L, cfg->domains[i].line, "duplicate [domain %s] (first at line %u)",
				     cfg->domains[i].name, cfg->domains[first].line);
	}
}

void config_validate(struct cfg_loader *L)
{
	cfg_fill_computed(L);
	cfg_validate_gateway(L);
	for (size_t i = 0; i < L->cfg->ndomains; i++)
		cfg_validate_domain(L, i);
	for (size_t i = 0; i < L->cfg->nldaps; i++)
		cfg_validate_ldap(L, i);
	checks_validate(L); /* each check of the decision engine validates its own keys */
	cfg_sort_domains(L); /* last: the seen rows follow file order */
}
