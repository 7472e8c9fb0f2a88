/* smtp_address.c - RFC 5321 4.1.2 / RFC 6531 paths, domains and address literals.
 * domain_normalise() decides what a domain is for the whole program; smtp_path_parse() reads a
 * "<...>" path off a command line. Pure functions: no I/O, no allocation, any input is safe. */
#include "smtp_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#define LABEL_MAX 63

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Length of the well-formed UTF-8 sequence (2-4 octets) at s, or 0: overlong forms, surrogates,
 * code points above U+10FFFF and truncated sequences are refused (RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second octet */

	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

bool smtp_utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		size_t n = u[i] < 0x80 ? 1 : utf8_seq_len(u + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* RFC 5321 IPv6-comp: "::" stands for at least two groups, so at most 6 groups (4 before an
 * IPv4 tail) may be written beside it. inet_pton() is laxer (RFC 4291), so count them here. */
static bool ipv6_comp_ok(const char *text)
{
	if (strstr(text, "::") == NULL)
		return true;
	size_t groups = 0;
	bool v4 = strchr(text, '.') != NULL;
	for (const char *p = text; *p != '\0'; p++)
		if (*p != ':' && *p != '.' && (p == text || p[-1] == ':'))
			groups++;
	if (v4)
		groups--; /* the IPv4 tail was counted as one group */
	return groups <= (v4 ? 4u : 6u);
}

/* Canonicalise an address literal "[...]" (len includes the brackets) into out. */
static size_t literal_normalise(const char *in, size_t len, char *out, size_t outsz)
{
	char text[SMTP_DOMAIN_MAX + 1];
	char canon[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *body = in + 1;
	size_t blen = len - 2;
	int af = AF_INET;
	const char *prefix = "";

	if (len < 3 || in[len - 1] != ']')
		return 0;
	if (blen > 5 && strncasecmp(body, "IPv6:", 5) == 0) {
		af = AF_INET6;
		prefix = "ipv6:";
		body += 5;
		blen -= 5;
	}
	if (blen >= sizeof(text) || memchr(body, '\0', blen) != NULL)
		return 0;
	memcpy(text, body, blen);
	text[blen] = '\0';
	/* General-address-literal (tag:content) and anything else is refused as syntax */
	if ((af == AF_INET6 && !ipv6_comp_ok(text)) || inet_pton(af, text, bin) != 1 || inet_ntop(af, bin, canon, sizeof(canon)) == NULL)
		return 0;
	size_t n = 1 + strlen(prefix) + strlen(canon) + 1;
	if (n > SMTP_DOMAIN_MAX || n + 1 > outsz)
		return 0;
	out[0] = '[';
	memcpy(out + 1, prefix, strlen(prefix));
	memcpy(out + 1 + strlen(prefix), canon, strlen(canon));
	out[n - 1] = ']';
	out[n] = '\0';
	return n;
}

/* Check one label (RFC 5321 sub-domain = Let-dig [Ldh-str]; U-labels as UTF-8 when allowed)
 * and copy it case-folded to out. Returns false if it is not a valid label. */
static bool label_copy(const unsigned char *s, size_t len, bool allow_utf8, char *out)
{
	if (len == 0 || len > LABEL_MAX || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		if (c >= 0x80) {
			size_t n = allow_utf8 ? utf8_seq_len(s + i, len - i) : 0;
			if (n == 0)
				return false;
			memcpy(out + i, s + i, n);
			i += n;
			continue;
		}
		if (!is_alpha(c) && !is_digit(c) && c != '-')
			return false;
		out[i++] = (char)ascii_lower(c);
	}
	return true;
}

size_t domain_normalise(const char *in, size_t len, bool allow_utf8, char *out, size_t outsz)
{
	if (out == NULL || outsz == 0)
		return 0;
	out[0] = '\0';
	if (in == NULL || len == 0)
		return 0;
	if (in[0] == '[')
		return literal_normalise(in, len, out, outsz);
	if (in[len - 1] == '.')
		len--; /* one trailing dot: the root */
	if (len == 0 || len > SMTP_DOMAIN_MAX || len + 1 > outsz)
		return 0;
	const unsigned char *s = (const unsigned char *)in;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (!label_copy(s + start, i - start, allow_utf8, out + start)) {
			out[0] = '\0';
			return 0;
		}
		if (i < len)
			out[i] = '.';
		start = i + 1;
	}
	out[len] = '\0';
	return len;
}


/* RFC 5322 atext, the octets of an Atom. */
static bool is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Scan a Dot-string (RFC 5321; UTF-8 atext per RFC 6531) at s. Returns its length, 0 if none. */
static size_t scan_dot_string(const unsigned char *s, size_t len, bool *utf8)
{
	size_t i = 0;
	bool atom_start = true;

	while (i < len) {
		size_t n = 1;
		if (s[i] == '.') {
			if (atom_start)
				return 0; /* leading or double dot */
			atom_start = true;
		} else if (s[i] >= 0x80) {
			if ((n = utf8_seq_len(s + i, len - i)) == 0)
				return 0;
			*utf8 = true;
			atom_start = false;
		} else if (is_atext(s[i])) {
			atom_start = false;
		} else {
			break;
		}
		i += n;
	}
	return atom_start ? 0 : i; /* empty, or a trailing dot */
}

/* Scan a Quoted-string at s (s[0] == '"'), writing its unquoted content to raw (rawsz octets;
 * stops copying when full). Returns the length including both quotes, 0 if malformed. */
static size_t scan_quoted(const unsigned char *s, size_t len, bool *utf8, char *raw, size_t rawsz,
			  size_t *rawlen)
{
	size_t i = 1, r = 0;

	while (i < len && s[i] != '"') {
		size_t n = 1;
		unsigned char c = s[i];
		if (c == '\\') {
			if (i + 1 >= len || s[i + 1] < 32 || s[i + 1] > 126)
				return 0; /* quoted-pairSMTP = %d92 %d32-126 */
			i++;
		} else if (c >= 0x80) {
			if ((n = utf8_seq_len(s + i, len - i)) == 0)
				return 0;
			*utf8 = true;
		} else if (c < 32 || c > 126) {
			return 0; /* qtextSMTP is %d32-33 / %d35-91 / %d93-126 */
		}
		for (size_t k = 0; k < n; k++, r++)
			if (r + 1 < rawsz)
				raw[r] = (char)s[i + k];
		i += n;
	}
	if (i >= len)
		return 0;
	*rawlen = r;
	return i + 1;
}

/* Scan a source route "@dom,@dom:" at s (s[0] == '@'). Returns its length with the ':', or 0. */
static size_t scan_route(const char *s, size_t len)
{
	size_t i = 0;
	char scratch[SMTP_DOMAIN_MAX + 1];

	while (i < len && s[i] == '@') {
		size_t start = ++i;
		while (i < len && s[i] != ',' && s[i] != ':' && s[i] != '>')
			i++;
		if (i >= len || s[i] == '>' || s[i - 1] == '.' ||
		    domain_normalise(s + start, i - start, true, scratch, sizeof(scratch)) == 0)
			return 0;
		if (s[i++] == ':')
			return i;
	}
	return 0;
}

/* Scan the domain of a Mailbox at s: a Domain up to '>' or an address literal "[...]".
 * Returns its length (0 if none); the syntax is checked by domain_normalise(). */
static size_t scan_domain(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		return close == NULL ? 0 : (size_t)(close - s) + 1;
	}
	while (i < len && s[i] != '>')
		i++;
	return i;
}

/* Parse "local@domain" (no brackets) at s into out; *used gets the octets read. */
static enum smtp_addr_status mailbox_parse(const char *s, size_t len, struct smtp_address *out,
					   size_t *used)
{
	const unsigned char *u = (const unsigned char *)s;
	char raw[SMTP_LOCAL_MAX + 1];
	size_t llen, rawlen = 0, dlen;
	bool too_long = false;

	if (len > 0 && s[0] == '"') {
		llen = scan_quoted(u, len, &out->utf8, raw, sizeof(raw), &rawlen);
		out->quoted_local = true;
	} else {
		llen = scan_dot_string(u, len, &out->utf8);
		rawlen = llen;
		if (llen <= SMTP_LOCAL_MAX)
			memcpy(raw, s, llen);
	}
	if (llen == 0 || llen >= len || s[llen] != '@')
		return ADDR_SYNTAX;
	too_long = llen > SMTP_LOCAL_MAX;
	dlen = scan_domain(s + llen + 1, len - llen - 1);
	if (dlen == 0 || s[llen + dlen] == '.')
		return ADDR_SYNTAX; /* no domain, or a trailing dot (not RFC 5321 syntax) */
	for (size_t i = 0; i < dlen; i++)
		if (u[llen + 1 + i] >= 0x80)
			out->utf8 = true;
	if (dlen > SMTP_DOMAIN_MAX) {
		too_long = true;
	} else {
		out->domain_len = domain_normalise(s + llen + 1, dlen, true, out->domain,
						   sizeof(out->domain));
		if (out->domain_len == 0)
			return ADDR_SYNTAX;
	}
	*used = llen + 1 + dlen;
	if (too_long)
		return ADDR_TOO_LONG;
	memcpy(out->local, s, llen);
	out->local[llen] = '\0';
	out->local_len = llen;
	memcpy(out->local_raw, raw, rawlen);
	out->local_raw[rawlen] = '\0';
	out->local_raw_len = rawlen;
	out->ip_literal = s[llen + 1] == '[';
	return ADDR_OK;
}

enum smtp_addr_status smtp_path_parse(const char *s, size_t len, bool allow_null, bool allow_utf8,
				      struct smtp_address *out, size_t *consumed)
{
	size_t i = 1, used = 0;

	memset(out, 0, sizeof(*out));
	*consumed = 0;
	if (s == NULL || len < 2 || s[0] != '<')
		return ADDR_SYNTAX;
	if (s[1] == '>') {
		if (!allow_null)
			return ADDR_SYNTAX;
		out->is_null = true;
		*consumed = 2;
		return ADDR_OK;
	}
	if (s[1] == '@') {
		size_t r = scan_route(s + 1, len - 1);
		if (r == 0)
			return ADDR_SYNTAX;
		out->had_source_route = true;
		for (size_t k = 1; k <= r; k++)
			if ((unsigned char)s[k] >= 0x80)
				out->utf8 = true;
		i += r;
	}
	enum smtp_addr_status st = mailbox_parse(s + i, len - i, out, &used);
	i += used;
	if (st == ADDR_SYNTAX || i >= len || s[i] != '>') {
		memset(out, 0, sizeof(*out));
		return ADDR_SYNTAX;
	}
	if (st == ADDR_OK && i + 1 > SMTP_PATH_MAX)
		st = ADDR_TOO_LONG;
	if (st == ADDR_OK && out->utf8 && !allow_utf8)
		st = ADDR_NEEDS_UTF8;
	if (st != ADDR_OK) {
		memset(out, 0, sizeof(*out));
		return st;
	}
	*consumed = i + 1;
	return ADDR_OK;
}

size_t smtp_address_format(const struct smtp_address *a, char *buf, size_t bufsz)
{
	if (bufsz == 0)
		return 0;
	buf[0] = '\0';
	if (a->is_null)
		return 0;
	size_t n = a->local_len + (a->domain_len > 0 ? 1 + a->domain_len : 0);
	if (n + 1 > bufsz)
		return 0;
	memcpy(buf, a->local, a->local_len);
	if (a->domain_len > 0) {
		buf[a->local_len] = '@';
		memcpy(buf + a->local_len + 1, a->domain, a->domain_len);
	}
	buf[n] = '\0';
	return n;
}
