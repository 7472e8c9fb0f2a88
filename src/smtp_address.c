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
	if (inet_pton(af, text, bin) != 1 || inet_ntop(af, bin, canon, sizeof(canon)) == NULL)
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

enum smtp_addr_status smtp_path_parse(const char *s, size_t len, bool allow_null, bool allow_utf8,
				      struct smtp_address *out, size_t *consumed)
{
	(void)s;
	(void)len;
	(void)allow_null;
	(void)allow_utf8;
	(void)out;
	(void)consumed;
	return ADDR_SYNTAX; /* being written */
}

size_t smtp_address_format(const struct smtp_address *a, char *buf, size_t bufsz)
{
	(void)a;
	if (bufsz > 0)
		buf[0] = '\0';
	return 0;
}
