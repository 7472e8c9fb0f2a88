/* spf_record.c - the SPF record parser (RFC 7208 4.6, 12): a term splitter and one term parser
 * used twice, by the whole-record syntax check and by the mechanism iterator, so what was
 * checked is what is evaluated. No allocation; terms point into the record. */
#include "spf_record.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "spf_macro.h"

struct mech_name {
	const char *name;
	enum spf_mech mech;
};

static const struct mech_name mech_names[] = {
	{"all", SPF_MECH_ALL}, {"include", SPF_MECH_INCLUDE}, {"a", SPF_MECH_A}, {"mx", SPF_MECH_MX},
	{"ptr", SPF_MECH_PTR}, {"ip4", SPF_MECH_IP4}, {"ip6", SPF_MECH_IP6}, {"exists", SPF_MECH_EXISTS},
};

enum term_kind { TERM_BAD = 0, TERM_MECH, TERM_REDIRECT, TERM_EXP, TERM_UNKNOWN_MOD };

bool spf_record_is_spf(const char *text, size_t len)
{
	return len >= 6 && strncasecmp(text, "v=spf1", 6) == 0 && (len == 6 || text[6] == ' ');
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_toplabel(const char *s, size_t n)
{
	bool alpha = false, dash = false;
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_alpha(s[i]))
			alpha = true;
		else if (s[i] == '-')
			dash = true;
		else if (!is_digit(s[i]))
			return false;
	}
	return alpha || dash;
}

bool spf_domain_spec_valid(const char *s, size_t len)
{
	bool macro_end;
	if (len == 0 || !spf_macro_valid(s, len, false, &macro_end))
		return false;
	if (macro_end)
		return true;
	size_t n = len;
	if (s[n - 1] == '.')
		n--;
	if (n > 0 && n < len && spf_macro_valid(s, n, false, &macro_end) && macro_end)
		return true; /* "%{d}." */
	size_t dot = n;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	if (dot == 0)
		return false; /* a single label: not "." toplabel */
	return is_toplabel(s + dot, n - dot);
}

/* "/" ("0" / %x31-39 0*nDIGIT) with value <= max, at s[*i]. */
static bool parse_cidr(const char *s, size_t len, size_t *i, unsigned max, uint8_t *out)
{
	size_t p = *i + 1;
	unsigned v = 0, nd = 0;
	while (p < len && is_digit(s[p]) && nd < 4) {
		v = v * 10 + (unsigned)(s[p] - '0');
		p++, nd++;
	}
	if (nd == 0 || (nd > 1 && s[*i + 1] == '0') || v > max || (p < len && is_digit(s[p])))
		return false;
	*out = (uint8_t)v;
	*i = p;
	return true;
}

/* Dual CIDR at the end of arg: sets *arglen to what precedes it. */
static bool parse_dual_cidr(const char *arg, size_t *arglen, struct spf_term *t)
{
	size_t n = *arglen, p = n;
	while (p > 0 && is_digit(arg[p - 1]))
		p--;
	if (p == n || p == 0 || arg[p - 1] != '/')
		return true; /* no cidr (a lone slash is left to the domain-spec check) */
	size_t slash = p - 1;
	if (slash > 0 && arg[slash - 1] == '/') { /* "//" ip6-cidr-length */
		size_t q = slash;
		if (!parse_cidr(arg, n, &q, 128, &t->cidr6) || q != n)
			return false;
		n = slash - 1;
		p = n;
		while (p > 0 && is_digit(arg[p - 1]))
			p--;
		if (p == n || p == 0 || arg[p - 1] != '/') {
			*arglen = n;
			return true;
		}
		slash = p - 1;
	}
	size_t q = slash;
	if (!parse_cidr(arg, n, &q, 32, &t->cidr4) || q != n)
		return false;
	*arglen = slash;
	return true;
}

static bool parse_ip(const char *arg, size_t n, int family, struct spf_term *t)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t p = n;
	while (p > 0 && arg[p - 1] != '/')
		p--;
	if (p > 0) {
		size_t q = p - 1;
		if (!parse_cidr(arg, n, &q, family == AF_INET ? 32 : 128, family == AF_INET ? &t->cidr4 : &t->cidr6) ||
		    q != n)
			return false;
		n = p - 1;
	}
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, arg, n);
	buf[n] = '\0';
	return inet_pton(family, buf, family == AF_INET ? (void *)&t->ip4 : (void *)&t->ip6) == 1;
}

/* Parse one mechanism (no qualifier) of n bytes. */
static bool parse_mech(const char *s, size_t n, struct spf_term *t)
{
	size_t name = 0;
	while (name < n && s[name] != ':' && s[name] != '/')
		name++;
	const struct mech_name *mn = NULL;
	for (size_t k = 0; k < sizeof(mech_names) / sizeof(mech_names[0]); k++)
		if (strlen(mech_names[k].name) == name && strncasecmp(mech_names[k].name, s, name) == 0)
			mn = &mech_names[k];
	if (!mn)
		return false;
	t->mech = mn->mech;
	const char *arg = s + name;
	size_t alen = n - name;
	switch (t->mech) {
	case SPF_MECH_ALL:
		return alen == 0;
	case SPF_MECH_IP4:
	case SPF_MECH_IP6:
		return alen > 1 && arg[0] == ':' && parse_ip(arg + 1, alen - 1, t->mech == SPF_MECH_IP4 ? AF_INET : AF_INET6, t);
	case SPF_MECH_A:
	case SPF_MECH_MX:
		if (!parse_dual_cidr(arg, &alen, t))
			return false;
		/* fall through */
	case SPF_MECH_PTR:
		if (alen == 0)
			return true;
		/* fall through */
	case SPF_MECH_INCLUDE:
	case SPF_MECH_EXISTS:
		if (alen < 2 || arg[0] != ':' || !spf_domain_spec_valid(arg + 1, alen - 1))
			return false;
		t->spec = arg + 1;
		t->spec_len = alen - 1;
		return true;
	}
	return false;
}

/* Classify and parse one term. For modifiers, *val and *vlen give the value. */
static enum term_kind parse_term(const char *s, size_t n, struct spf_term *t, const char **val, size_t *vlen)
{
	size_t name = 0;
	memset(t, 0, sizeof(*t));
	t->text = s;
	t->text_len = n;
	t->cidr4 = 32;
	t->cidr6 = 128;
	if (n > 0 && is_alpha(s[0])) {
		while (name < n && (is_alpha(s[name]) || is_digit(s[name]) || s[name] == '-' || s[name] == '_' ||
				    s[name] == '.'))
			name++;
		if (name < n && s[name] == '=') {
			*val = s + name + 1;
			*vlen = n - name - 1;
			if (name == 8 && strncasecmp(s, "redirect", 8) == 0)
				return spf_domain_spec_valid(*val, *vlen) ? TERM_REDIRECT : TERM_BAD;
			if (name == 3 && strncasecmp(s, "exp", 3) == 0)
				return spf_domain_spec_valid(*val, *vlen) ? TERM_EXP : TERM_BAD;
			return spf_macro_valid(*val, *vlen, true, NULL) ? TERM_UNKNOWN_MOD : TERM_BAD;
		}
	}
	t->qual = '+';
	if (n > 0 && (s[0] == '+' || s[0] == '-' || s[0] == '~' || s[0] == '?')) {
		t->qual = s[0];
		s++, n--;
	}
	return parse_mech(s, n, t) ? TERM_MECH : TERM_BAD;
}

/* The next term's bounds from *pos: false at the end. */
static bool next_token(const char *text, size_t len, size_t *pos, size_t *start, size_t *n)
{
	size_t p = *pos;
	while (p < len && text[p] == ' ')
		p++;
	if (p >= len)
		return false;
	size_t e = p;
	while (e < len && text[e] != ' ')
		e++;
	*start = p;
	*n = e - p;
	*pos = e;
	return true;
}

int spf_record_parse(const char *text, size_t len, struct spf_record *rec, char *why, size_t whysz)
{
	memset(rec, 0, sizeof(*rec));
	rec->text = text;
	rec->len = len;
	if (!spf_record_is_spf(text, len)) {
		snprintf(why, whysz, "not an SPF record");
		return -1;
	}
	size_t pos = 6, start, n, nterms = 0;
	while (next_token(text, len, &pos, &start, &n)) {
		struct spf_term t;
		const char *val = NULL;
		size_t vlen = 0;
		if (++nterms > SPF_TERMS_MAX) {
			snprintf(why, whysz, "more than %d terms", SPF_TERMS_MAX);
			return -1;
		}
		switch (parse_term(text + start, n, &t, &val, &vlen)) {
		case TERM_BAD:
			snprintf(why, whysz, "invalid term '%.*s'", n > 64 ? 64 : (int)n, text + start);
			for (char *c = why; *c; c++)
				if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
					*c = '?';
			return -1;
		case TERM_MECH:
			rec->nmech++;
			break;
		case TERM_REDIRECT:
		case TERM_EXP: {
			bool redirect = text[start] == 'r' || text[start] == 'R';
			if (redirect ? rec->redirect != NULL : rec->exp != NULL) {
				snprintf(why, whysz, "duplicate %s modifier", redirect ? "redirect" : "exp");
				return -1;
			}
			if (redirect)
				rec->redirect = val, rec->redirect_len = vlen;
			else
				rec->exp = val, rec->exp_len = vlen;
			break;
		}
		case TERM_UNKNOWN_MOD:
			break;
		}
	}
	return 0;
}

int spf_record_next(const struct spf_record *rec, size_t *pos, struct spf_term *t)
{
	size_t start, n;
	if (*pos < 6)
		*pos = 6;
	while (next_token(rec->text, rec->len, pos, &start, &n)) {
		const char *val;
		size_t vlen;
		if (parse_term(rec->text + start, n, t, &val, &vlen) == TERM_MECH)
			return 1;
	}
	return 0;
}
