/* ldap_filter.c - LDAP search filters: presets, the admin's template, and the RFC 4515 escaping
 * of the address (libldap's ldap_bv2escaped_filter_value does the escaping itself). */
#include "ldap_filter.h"

#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define ADDR_LEN_MAX (SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX)

/* Active Directory: users, groups, contacts and mail-enabled public folders, by any SMTP proxy
 * address ("smtp:" matches "SMTP:" too: proxyAddresses matches case-insensitively) or mail.
 * Disabled accounts are filtered out client-side from userAccountControl (works on AD and on
 * servers without AD's bitwise matching rule). */
static const char preset_ad[] =
	"(&(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=publicFolder))"
	"(|(proxyAddresses=smtp:%s)(mail=%s)))";
static const char preset_openldap[] = "(|(mail=%s)(mailAlternateAddress=%s))";

const char *ldap_filter_preset(enum ldap_preset p)
{
	switch (p) {
	case LDAP_PRESET_ACTIVE_DIRECTORY:
		return preset_ad;
	case LDAP_PRESET_OPENLDAP:
		return preset_openldap;
	case LDAP_PRESET_NONE:
		break;
	}
	return NULL;
}

const char *ldap_filter_template(const struct bs_ldap *l)
{
	if (l->query != NULL && l->query[0] != '\0')
		return l->query;
	return ldap_filter_preset(l->preset);
}

static int check_fail(char *why, size_t whysz, const char *msg)
{
	snprintf(why, whysz, "%s", msg);
	return -1;
}

int ldap_filter_template_check(const char *tmpl, char *why, size_t whysz)
{
	size_t len, nsub = 0;
	long depth = 0;

	if (tmpl == NULL || tmpl[0] == '\0')
		return check_fail(why, whysz, "no query and no preset: set query = (mail=%s) or a preset");
	len = strlen(tmpl);
	if (len > LDAP_FILTER_LEN_MAX / 4)
		return check_fail(why, whysz, "query is too long");
	if (tmpl[0] != '(' || tmpl[len - 1] != ')')
		return check_fail(why, whysz, "query must be enclosed in parentheses");
	for (size_t i = 0; i < len; i++) {
		if (tmpl[i] == '%') {
			if (tmpl[i + 1] == 's')
				nsub++;
			else if (tmpl[i + 1] != '%')
				return check_fail(why, whysz, "query: only %s (the address) and %% may follow '%'");
			i++;
		} else if (tmpl[i] == '(' || tmpl[i] == ')') {
			depth += tmpl[i] == '(' ? 1 : -1;
			if (depth < 0 || (depth == 0 && i != len - 1))
				return check_fail(why, whysz, "query: unbalanced parentheses");
		}
	}
	if (depth != 0)
		return check_fail(why, whysz, "query: unbalanced parentheses");
	if (nsub == 0)
		return check_fail(why, whysz, "query has no %s where the address goes");
	return 0;
}

bool ldap_filter_addr_possible(const char *addr, size_t len)
{
	const char *at;

	if (addr == NULL || len == 0 || len > ADDR_LEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)addr[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	at = memrchr(addr, '@', len);
	return at != NULL && at != addr && at != addr + len - 1;
}

enum ldap_filter_status ldap_filter_escape(const char *value, size_t len, char *out, size_t outsz)
{
	struct berval in = { .bv_len = (ber_len_t)len, .bv_val = (char *)(uintptr_t)value };
	struct berval esc = { 0, NULL };
	enum ldap_filter_status st = LFILTER_OK;

	if (outsz == 0)
		return LFILTER_TOO_LONG;
	out[0] = '\0';
	if (len == 0)
		return LFILTER_OK;
	if (ldap_bv2escaped_filter_value(&in, &esc) != 0 || esc.bv_val == NULL)
		return LFILTER_ERROR;
	if (strbuf_copy(out, outsz, esc.bv_val, esc.bv_len) != 0)
		st = LFILTER_TOO_LONG;
	ber_memfree(esc.bv_val);
	return st;
}

/* A bounded output buffer: appends fail once it is full. */
struct fbuf {
	char *p;
	size_t len, size;
	bool overflow;
};

static void fbuf_add(struct fbuf *b, const char *s, size_t n)
{
	if (b->overflow || n >= b->size - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Expand tmpl into b, each %s replaced by value (already escaped, or "*" for sync). */
static void expand(struct fbuf *b, const char *tmpl, const char *value)
{
	const char *p = tmpl;

	while (*p != '\0') {
		const char *pct = strchr(p, '%');
		if (pct == NULL) {
			fbuf_add(b, p, strlen(p));
			return;
		}
		fbuf_add(b, p, (size_t)(pct - p));
		if (pct[1] == 's')
			fbuf_add(b, value, strlen(value));
		else if (pct[1] == '%')
			fbuf_add(b, "%", 1);
		else /* unchecked template: never emit a lone '%' sequence */
			b->overflow = true;
		if (pct[1] == '\0')
			return;
		p = pct + 2;
	}
}

static enum ldap_filter_status expand_addr(struct fbuf *b, const char *tmpl, const char *addr,
					   size_t len)
{
	char esc[ADDR_LEN_MAX * 3 + 1];
	enum ldap_filter_status st;

	if (!ldap_filter_addr_possible(addr, len))
		return LFILTER_IMPOSSIBLE;
	st = ldap_filter_escape(addr, len, esc, sizeof(esc));
	if (st != LFILTER_OK)
		return st;
	expand(b, tmpl, esc);
	return b->overflow ? LFILTER_TOO_LONG : LFILTER_OK;
}

enum ldap_filter_status ldap_filter_build(const char *tmpl, const char *addr, size_t len, char *out,
					  size_t outsz)
{
	struct fbuf b = { out, 0, outsz, outsz == 0 };
	enum ldap_filter_status st;

	if (outsz > 0)
		out[0] = '\0';
	st = expand_addr(&b, tmpl, addr, len);
	if (st != LFILTER_OK && outsz > 0)
		out[0] = '\0';
	return st;
}

enum ldap_filter_status ldap_filter_build2(const char *tmpl, const char *addr, const char *alt,
					   char *out, size_t outsz)
{
	struct fbuf b = { out, 0, outsz, outsz == 0 };
	enum ldap_filter_status st;

	if (alt == NULL || alt[0] == '\0')
		return ldap_filter_build(tmpl, addr, strlen(addr), out, outsz);
	if (outsz > 0)
		out[0] = '\0';
	fbuf_add(&b, "(|", 2);
	st = expand_addr(&b, tmpl, addr, strlen(addr));
	if (st == LFILTER_OK)
		st = expand_addr(&b, tmpl, alt, strlen(alt));
	fbuf_add(&b, ")", 1);
	if (st == LFILTER_OK && b.overflow)
		st = LFILTER_TOO_LONG;
	if (st != LFILTER_OK && outsz > 0)
		out[0] = '\0';
	return st;
}

enum ldap_filter_status ldap_filter_build_all(const char *tmpl, char *out, size_t outsz)
{
	struct fbuf b = { out, 0, outsz, outsz == 0 };

	if (outsz > 0)
		out[0] = '\0';
	expand(&b, tmpl, "*");
	if (b.overflow) {
		if (outsz > 0)
			out[0] = '\0';
		return LFILTER_TOO_LONG;
	}
	return LFILTER_OK;
}

bool ldap_filter_uac_disabled(const char *uac)
{
	char *end;
	long long v;

	if (uac == NULL || uac[0] == '\0')
		return false;
	v = strtoll(uac, &end, 10);
	if (*end != '\0')
		return false;
	return (v & 0x2) != 0;
}

const char *ldap_filter_proxy_smtp(const char *value)
{
	if (value != NULL && strncasecmp(value, "smtp:", 5) == 0)
		return value + 5;
	return NULL;
}
