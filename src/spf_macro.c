/* spf_macro.c - the SPF macro language (RFC 7208 7): one scanner serves both the syntax check
 * and the expansion, so the two cannot disagree. Every write is bounded by the output buffer;
 * a value's parts are split and joined in a fixed array. */
#include "spf_macro.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define MACRO_VALUE_MAX 1024 /* one letter's value before transformation */

struct macro_item {
	char letter;      /* lowercase letter; 0 for a literal / escape */
	bool upper;       /* URL-escape the result */
	bool reverse;
	unsigned keep;    /* rightmost parts kept, 0 = all */
	char delims[8];   /* delimiters given ("" = ".") */
};

/* Out: a bounded writer. */
struct out {
	char *buf;
	size_t size, len;
	bool overflow;
};

static void out_put(struct out *o, const char *s, size_t n)
{
	if (o->len + n >= o->size) {
		n = o->size - 1 - o->len;
		o->overflow = true;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static bool is_delim(char c)
{
	return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

static bool letter_ok(char c, bool exp)
{
	switch (c) {
	case 's': case 'l': case 'o': case 'd': case 'i': case 'p': case 'v': case 'h':
		return true;
	case 'c': case 'r': case 't':
		return exp;
	default:
		return false;
	}
}

/* Parse the macro-expand body after "%{" at s[*i]; on success *i is past the '}'. */
static bool parse_expand(const char *s, size_t len, size_t *i, bool exp, struct macro_item *m)
{
	size_t p = *i, nd = 0;
	memset(m, 0, sizeof(*m));
	if (p >= len)
		return false;
	char c = s[p];
	m->upper = c >= 'A' && c <= 'Z';
	m->letter = (char)(m->upper ? c - 'A' + 'a' : c);
	if (!letter_ok(m->letter, exp))
		return false;
	p++;
	bool digits = false;
	unsigned long v = 0;
	while (p < len && s[p] >= '0' && s[p] <= '9') {
		digits = true;
		if (v < 1000)
			v = v * 10 + (unsigned long)(s[p] - '0');
		p++;
	}
	if (digits && v == 0)
		return false; /* RFC 7208 7.3: the digit transformer must be nonzero */
	m->keep = v > 1000 ? 1000 : (unsigned)v;
	if (p < len && (s[p] == 'r' || s[p] == 'R')) {
		m->reverse = true;
		p++;
	}
	while (p < len && is_delim(s[p])) {
		if (nd + 1 < sizeof(m->delims) && !strchr(m->delims, s[p]))
			m->delims[nd++] = s[p];
		p++;
	}
	if (p >= len || s[p] != '}')
		return false;
	*i = p + 1;
	return true;
}

bool spf_macro_valid(const char *s, size_t len, bool exp, bool *ends_in_macro)
{
	bool last_macro = false;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 1 >= len)
				return false;
			char n = s[i + 1];
			if (n == '%' || n == '_' || n == '-') {
				i += 2;
			} else if (n == '{') {
				struct macro_item m;
				i += 2;
				if (!parse_expand(s, len, &i, exp, &m))
					return false;
			} else {
				return false;
			}
			last_macro = true;
			continue;
		}
		if (!((c >= 0x21 && c <= 0x7e) || (exp && c == ' ')))
			return false;
		last_macro = false;
		i++;
	}
	if (ends_in_macro)
		*ends_in_macro = last_macro;
	return true;
}

bool spf_macro_uses(const char *s, size_t len, char letter)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (s[i] != '%')
			continue;
		if (s[i + 1] == '{' && (s[i + 2] | 0x20) == letter)
			return true;
		i++; /* skip the escaped char of %% %_ %- */
	}
	return false;
}

/* The raw value of a letter into buf. */
static size_t letter_value(const struct spf_macro_env *env, char letter, char *buf, size_t bufsz)
{
	const char *v = NULL;
	char tmp[INET6_ADDRSTRLEN + 8];
	switch (letter) {
	case 's': v = env->sender; break;
	case 'l': v = env->local; break;
	case 'o': v = env->sender_domain; break;
	case 'd': v = env->domain; break;
	case 'h': v = env->helo; break;
	case 'p': v = env->ptr; break;
	case 'r': v = env->receiver; break;
	case 'v': v = env->family == AF_INET6 ? "ip6" : "in-addr"; break;
	case 't':
		snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)env->now);
		v = tmp;
		break;
	case 'c':
		if (env->family == AF_INET6)
			inet_ntop(AF_INET6, &env->ip6, tmp, sizeof(tmp));
		else
			inet_ntop(AF_INET, &env->ip4, tmp, sizeof(tmp));
		v = tmp;
		break;
	case 'i':
		if (env->family == AF_INET6) {
			/* nibbles in uppercase hex, as the RFC 7208 test suite's explanations expect
			 * (DNS names compare case-insensitively) */
			static const char hex[] = "0123456789ABCDEF";
			size_t n = 0;
			for (size_t k = 0; k < 16 && n + 4 < bufsz; k++) {
				buf[n++] = hex[env->ip6.s6_addr[k] >> 4];
				buf[n++] = '.';
				buf[n++] = hex[env->ip6.s6_addr[k] & 15];
				buf[n++] = '.';
			}
			n = n ? n - 1 : 0; /* no dot after the last nibble */
			buf[n] = '\0';
			return n;
		}
		inet_ntop(AF_INET, &env->ip4, tmp, sizeof(tmp));
		v = tmp;
		break;
	default:
		break;
	}
	if (!v)
		v = "";
	size_t n = strlen(v);
	if (n >= bufsz)
		n = bufsz - 1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return n;
}

static void put_escaped(struct out *o, const char *s, size_t n, bool escape)
{
	if (!escape) {
		out_put(o, s, n);
		return;
	}
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n && !o->overflow; i++) {
		unsigned char c = (unsigned char)s[i];
		bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				  c == '-' || c == '.' || c == '_' || c == '~';
		if (unreserved) {
			out_put(o, (const char *)&c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			out_put(o, e, 3);
		}
	}
}

/* Split value on the delimiters, reverse, keep the rightmost parts, join with '.'. */
static void put_transformed(struct out *o, const struct macro_item *m, const char *val, size_t n)
{
	const char *delims = m->delims[0] ? m->delims : ".";
	uint16_t start[MACRO_VALUE_MAX + 1], plen[MACRO_VALUE_MAX + 1]; /* n < MACRO_VALUE_MAX */
	size_t np = 0, from = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && !strchr(delims, val[i]))
			continue;
		start[np] = (uint16_t)from;
		plen[np] = (uint16_t)(i - from);
		np++;
		from = i + 1;
	}
	size_t first = m->keep && m->keep < np ? np - m->keep : 0;
	for (size_t k = first; k < np; k++) {
		size_t idx = m->reverse ? np - 1 - k : k;
		if (k > first)
			put_escaped(o, ".", 1, false);
		put_escaped(o, val + start[idx], plen[idx], m->upper);
	}
}

enum spf_macro_status spf_macro_expand(const char *s, size_t len, const struct spf_macro_env *env, bool exp,
				       char *out, size_t outsz, size_t *outlen)
{
	struct out o = {.buf = out, .size = outsz};
	char val[MACRO_VALUE_MAX];
	out[0] = '\0';
	*outlen = 0;
	for (size_t i = 0; i < len && !o.overflow;) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			if (!((c >= 0x21 && c <= 0x7e) || (exp && c == ' ')))
				return SPF_MACRO_SYNTAX;
			size_t j = i + 1;
			while (j < len && s[j] != '%' && (unsigned char)s[j] >= 0x21 && (unsigned char)s[j] <= 0x7e)
				j++;
			out_put(&o, s + i, j - i);
			i = j;
			continue;
		}
		if (i + 1 >= len)
			return SPF_MACRO_SYNTAX;
		char n = s[i + 1];
		if (n == '%' || n == '_' || n == '-') {
			out_put(&o, n == '%' ? "%" : n == '_' ? " " : "%20", n == '-' ? 3 : 1);
			i += 2;
			continue;
		}
		if (n != '{')
			return SPF_MACRO_SYNTAX;
		struct macro_item m;
		i += 2;
		if (!parse_expand(s, len, &i, exp, &m))
			return SPF_MACRO_SYNTAX;
		if (m.letter == 'p' && !env->ptr)
			return SPF_MACRO_NEED_P;
		size_t vn = letter_value(env, m.letter, val, sizeof(val));
		put_transformed(&o, &m, val, vn);
	}
	*outlen = o.len;
	return o.overflow ? SPF_MACRO_TOO_LONG : SPF_MACRO_OK;
}
