/* ldap_export.c - every address of an [ldap NAME] section: a paged subtree search with the
 * section's filter (%s = '*'), entries judged like lookups (disabled accounts), addresses kept
 * when their domain is configured, then sorted and de-duplicated. */
#include "ldap_export.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ldap_conn.h"
#include "ldap_filter.h"
#include "rcpt_map_table.h"
#include "util.h"

static void export_add(struct ldap_export *ex, char *addr)
{
	if (ex->n == ex->cap) {
		ex->cap = ex->cap ? ex->cap * 2 : 1024;
		ex->addrs = xrealloc(ex->addrs, ex->cap * sizeof(char *));
	}
	ex->addrs[ex->n++] = addr;
}

/* Note a value the map cannot hold as one address (the first LDAP_EXPORT_SKIPPED_MAX are kept
 * for `backstop sync` to name). */
static void export_skip(struct ldap_export *ex, const char *v, size_t len, const char *why)
{
	ex->malformed++;
	ex->unmappable++;
	if (ex->nskipped == LDAP_EXPORT_SKIPPED_MAX)
		return;
	size_t sz = len + strlen(why) + 8;
	char *line = xmalloc(sz);
	snprintf(line, sz, "<%.*s>: %s", (int)len, v, why);
	ex->skipped[ex->nskipped++] = line;
}

/* Normalise one address value and keep it if its domain is ours and a map line can hold it. */
static void export_value(const struct bs_config *cfg, struct ldap_export *ex, const char *v, size_t len)
{
	const char *at = memrchr(v, '@', len);
	char domain[SMTP_DOMAIN_MAX + 1];
	const struct bs_domain *dom;
	size_t llen;
	char *out;

	if (!ldap_filter_addr_possible(v, len) || at == NULL) {
		ex->malformed++;
		return;
	}
	llen = (size_t)(at - v);
	if (llen > SMTP_LOCAL_MAX ||
	    domain_normalise(at + 1, len - llen - 1, true, domain, sizeof(domain)) == 0) {
		ex->malformed++;
		return;
	}
	dom = config_find_domain(cfg, domain);
	if (dom == NULL) {
		ex->foreign++;
		return;
	}
	out = xmalloc(llen + 1 + strlen(domain) + 1);
	for (size_t i = 0; i < llen; i++)
		out[i] = dom->case_sensitive_local ? v[i] : (char)tolower((unsigned char)v[i]);
	out[llen] = '@';
	strcpy(out + llen + 1, domain);
	const char *why = map_table_key_check(out, strlen(out));
	if (why != NULL) { /* ""@domain would be the domain's catch-all */
		export_skip(ex, v, len, why);
		free(out);
		return;
	}
	export_add(ex, out);
}

static void export_attr(const struct bs_config *cfg, struct ldap_export *ex, LDAP *ld,
			LDAPMessage *e, const char *attr)
{
	struct berval **vals = ldap_get_values_len(ld, e, attr);
	bool proxy = strcasecmp(attr, "proxyAddresses") == 0;

	for (size_t i = 0; vals != NULL && vals[i] != NULL; i++) {
		const char *v = vals[i]->bv_val;
		size_t len = vals[i]->bv_len;
		if (proxy) { /* "smtp:" / "SMTP:" only: X500:, SIP:, X400: ... are not addresses */
			if (len < 5 || strncasecmp(v, "smtp:", 5) != 0)
				continue;
			v += 5;
			len -= 5;
		}
		export_value(cfg, ex, v, len);
	}
	ldap_value_free_len(vals);
}

static bool entry_disabled(LDAP *ld, LDAPMessage *e)
{
	struct berval **vals = ldap_get_values_len(ld, e, "userAccountControl");
	char uac[32] = "";

	if (vals != NULL && vals[0] != NULL)
		strbuf_copy(uac, sizeof(uac), vals[0]->bv_val, vals[0]->bv_len);
	ldap_value_free_len(vals);
	return ldap_filter_uac_disabled(uac);
}

static char **export_attrs(enum ldap_preset p)
{
	static char *ad[] = { (char *)(uintptr_t)"proxyAddresses", (char *)(uintptr_t)"mail",
			      (char *)(uintptr_t)"userAccountControl", NULL };
	static char *ol[] = { (char *)(uintptr_t)"mail", (char *)(uintptr_t)"mailAlternateAddress",
			      (char *)(uintptr_t)"userAccountControl", NULL };
	static char *all[] = { (char *)(uintptr_t)"proxyAddresses", (char *)(uintptr_t)"mail",
			       (char *)(uintptr_t)"mailAlternateAddress",
			       (char *)(uintptr_t)"userAccountControl", NULL };

	return p == LDAP_PRESET_ACTIVE_DIRECTORY ? ad : p == LDAP_PRESET_OPENLDAP ? ol : all;
}

static void export_page(const struct bs_config *cfg, const struct bs_ldap *l, struct ldap_export *ex,
			LDAP *ld, LDAPMessage *res)
{
	char **attrs = export_attrs(l->preset);

	for (LDAPMessage *e = ldap_first_entry(ld, res); e != NULL; e = ldap_next_entry(ld, e)) {
		ex->entries++;
		if (!l->include_disabled && entry_disabled(ld, e)) {
			ex->disabled++;
			continue;
		}
		for (size_t i = 0; attrs[i + 1] != NULL; i++) /* all but userAccountControl */
			export_attr(cfg, ex, ld, e, attrs[i]);
	}
}

/* The cookie for the next page (bv_len 0 after the last page), from a page's final result. */
static int page_cookie(LDAP *ld, LDAPMessage *res, struct berval *cookie, char *err, size_t errsz)
{
	LDAPControl **ctrls = NULL, *pc;
	ber_int_t estimate = 0;
	int code = LDAP_SUCCESS;
	int rc = ldap_parse_result(ld, res, &code, NULL, NULL, NULL, &ctrls, 0);

	ber_memfree(cookie->bv_val);
	cookie->bv_val = NULL;
	cookie->bv_len = 0;
	if (rc == LDAP_SUCCESS)
		rc = code;
	pc = rc == LDAP_SUCCESS ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL) : NULL;
	if (rc == LDAP_SUCCESS && pc == NULL)
		snprintf(err, errsz, "the server did not answer the paged results control");
	else if (rc == LDAP_SUCCESS && (rc = ldap_parse_pageresponse_control(ld, pc, &estimate, cookie)) != LDAP_SUCCESS)
		snprintf(err, errsz, "bad paged results response: %s", ldap_err2string(rc));
	else if (rc != LDAP_SUCCESS)
		snprintf(err, errsz, "%s", ldap_err2string(rc));
	ldap_controls_free(ctrls);
	return (rc == LDAP_SUCCESS && pc != NULL) ? 0 : -1;
}

static int export_pages(const struct bs_config *cfg, const struct bs_ldap *l, struct ldap_conn *c,
			const char *filter, struct ldap_export *ex, ldap_export_progress progress,
			void *arg, char *err, size_t errsz)
{
	struct berval cookie = { 0, NULL };
	int ret = 0;

	do {
		LDAPControl *page = NULL, *ctrls[2] = { NULL, NULL };
		LDAPMessage *res = NULL;
		int rc;
		/* libldap wants a connected handle to make a control */
		if (ldap_conn_connect(c, err, errsz) != LDAP_SUCCESS) {
			ret = -1;
			break;
		}
		rc = ldap_create_page_control(ldap_conn_handle(c), LDAP_EXPORT_PAGE_SIZE, &cookie, 1, &page);
		if (rc != LDAP_SUCCESS) {
			snprintf(err, errsz, "cannot make a paged results control: %s", ldap_err2string(rc));
			ret = -1;
			break;
		}
		ctrls[0] = page;
		rc = ldap_conn_search(c, filter, export_attrs(l->preset), 0, ctrls, &res, err, errsz);
		ldap_control_free(page);
		if (rc == LDAP_SUCCESS) {
			export_page(cfg, l, ex, ldap_conn_handle(c), res);
			ex->pages++;
			ret = page_cookie(ldap_conn_handle(c), res, &cookie, err, errsz);
		} else {
			ret = -1;
		}
		ldap_msgfree(res);
		if (ret == 0 && progress != NULL)
			progress(arg, ex);
	} while (ret == 0 && cookie.bv_len > 0);
	ber_memfree(cookie.bv_val);
	return ret;
}

static int addr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void export_sort_unique(struct ldap_export *ex)
{
	size_t out = 0;

	if (ex->n > 1)
		qsort(ex->addrs, ex->n, sizeof(char *), addr_cmp);
	for (size_t i = 0; i < ex->n; i++) {
		if (out > 0 && strcmp(ex->addrs[out - 1], ex->addrs[i]) == 0)
			free(ex->addrs[i]);
		else
			ex->addrs[out++] = ex->addrs[i];
	}
	ex->n = out;
}

int ldap_export_run(const struct bs_config *cfg, const struct bs_ldap *l, struct ldap_export *ex,
		    ldap_export_progress progress, void *arg, char *err, size_t errsz)
{
	const char *tmpl = ldap_filter_template(l);
	char filter[LDAP_FILTER_LEN_MAX];
	struct ldap_conn_cfg *ccfg;
	struct ldap_conn *c;
	int ret;

	memset(ex, 0, sizeof(*ex));
	if (ldap_filter_template_check(tmpl, err, errsz) != 0)
		return -1;
	if (ldap_filter_build_all(tmpl, filter, sizeof(filter)) != LFILTER_OK) {
		snprintf(err, errsz, "search filter too long");
		return -1;
	}
	ccfg = ldap_conn_cfg_new(l, err, errsz);
	if (ccfg == NULL)
		return -1;
	c = ldap_conn_new(ccfg);
	ret = export_pages(cfg, l, c, filter, ex, progress, arg, err, errsz);
	ldap_conn_free(c);
	ldap_conn_cfg_free(ccfg);
	if (ret == 0)
		export_sort_unique(ex);
	return ret;
}

void ldap_export_free(struct ldap_export *ex)
{
	for (size_t i = 0; i < ex->n; i++)
		free(ex->addrs[i]);
	for (size_t i = 0; i < ex->nskipped; i++)
		free(ex->skipped[i]);
	free(ex->addrs);
	memset(ex, 0, sizeof(*ex));
}
