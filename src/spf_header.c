/* spf_header.c - Received-SPF and Authentication-Results fields built from an SPF result:
 * values that are not plain atoms go in quoted strings, comments lose their parentheses,
 * anything outside printable ASCII becomes '?', long fields are folded between items. */
#include "spf_header.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define VALUE_MAX 600

struct out {
	char *buf;
	size_t size, len;
	bool full;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->full)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->size - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

/* snprintf that may cut (on purpose). */
static void cut(char *dst, size_t dstsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cut(char *dst, size_t dstsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(dst, dstsz, fmt, ap) < 0)
		dst[0] = '\0';
	va_end(ap);
}

/* Printable ASCII without what would break a comment: parentheses and backslashes. */
static void clean_comment(char *dst, size_t dstsz, const char *src)
{
	size_t o = 0;

	for (const char *p = src ? src : ""; *p && o + 1 < dstsz; p++) {
		unsigned char c = (unsigned char)*p;
		dst[o++] = c < 0x20 || c > 0x7e ? '?' : c == '(' ? '[' : c == ')' ? ']' : c == '\\' ? '/' : (char)c;
	}
	dst[o] = '\0';
}

static bool atom_char(unsigned char c, bool at_ok)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL || (at_ok && c == '@');
}

/* value as it is if it is a dot-atom (with '@' when at_ok), else as a quoted string. */
static void value(char *dst, size_t dstsz, const char *src, bool at_ok)
{
	bool plain = src && src[0] && src[0] != '.';
	size_t o = 0;

	for (const char *p = src ? src : ""; plain && *p; p++)
		plain = atom_char((unsigned char)*p, at_ok);
	if (plain) {
		snprintf(dst, dstsz, "%s", src);
		return;
	}
	dst[o++] = '"';
	for (const char *p = src ? src : ""; *p && o + 4 < dstsz; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\')
			dst[o++] = '\\';
		dst[o++] = c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	dst[o++] = '"';
	dst[o] = '\0';
}

static void comment(char *dst, size_t dstsz, const struct spf_header_in *in)
{
	char who[VALUE_MAX], why[VALUE_MAX], ip[64];
	const char *r = in->result;

	clean_comment(who, sizeof who, in->identity_value);
	clean_comment(why, sizeof why, in->problem ? in->problem : "");
	clean_comment(ip, sizeof ip, in->client_ip);
	const char *of = strcmp(in->identity, "helo") == 0 ? "HELO name" : "domain of";
	if (strcmp(r, "pass") == 0)
		cut(dst, dstsz, "%s %s designates %s as permitted sender", of, who, ip);
	else if (strcmp(r, "fail") == 0)
		cut(dst, dstsz, "%s %s does not designate %s as permitted sender", of, who, ip);
	else if (strcmp(r, "softfail") == 0)
		cut(dst, dstsz, "%s transitioning %s does not designate %s as permitted sender", of, who, ip);
	else if (strcmp(r, "neutral") == 0)
		cut(dst, dstsz, "%s is neither permitted nor denied by %s %s", ip, of, who);
	else if (strcmp(r, "none") == 0)
		cut(dst, dstsz, "%s %s does not publish an SPF record", of, who);
	else if (strcmp(r, "temperror") == 0)
		cut(dst, dstsz, "temporary error checking %s: %s", who, why[0] ? why : "DNS");
	else
		cut(dst, dstsz, "permanent error in the SPF record of %s: %s", who, why[0] ? why : "invalid");
}

size_t spf_received_header(const struct spf_header_in *in, char *out, size_t outsz)
{
	struct out o = { out, outsz, 0, false };
	char c[VALUE_MAX * 2], v[VALUE_MAX];

	comment(c, sizeof c, in);
	put(&o, "Received-SPF: %s (%s: %s)\r\n", in->result, in->receiver, c);
	value(v, sizeof v, in->receiver, false);
	put(&o, "\treceiver=%s;", v);
	value(v, sizeof v, in->client_ip, false);
	put(&o, " client-ip=%s;\r\n", v);
	value(v, sizeof v, in->envelope_from && in->envelope_from[0] ? in->envelope_from : "<>", true);
	put(&o, "\tenvelope-from=%s;\r\n", v);
	value(v, sizeof v, in->helo && in->helo[0] ? in->helo : "unknown", false);
	put(&o, "\thelo=%s; identity=%s", v, in->identity);
	if (in->mechanism && in->mechanism[0]) {
		value(v, sizeof v, in->mechanism, false);
		put(&o, ";\r\n\tmechanism=%s", v);
	}
	if (in->problem && in->problem[0]) {
		value(v, sizeof v, in->problem, false);
		put(&o, ";\r\n\tproblem=%s", v);
	}
	put(&o, "\r\n");
	if (o.full) {
		out[0] = '\0';
		return 0;
	}
	return o.len;
}

static void ar_item(struct out *o, const struct spf_header_in *in)
{
	char v[VALUE_MAX], ip[64];
	bool helo = strcmp(in->identity, "helo") == 0;

	clean_comment(ip, sizeof ip, in->client_ip);
	value(v, sizeof v, in->identity_value, !helo);
	put(o, "\tspf=%s (sender IP is %s) smtp.%s=%s", in->result, ip, helo ? "helo" : "mailfrom", v);
}

size_t spf_auth_results(const char *authserv_id, const struct spf_header_in *first,
			const struct spf_header_in *second, char *out, size_t outsz)
{
	struct out o = { out, outsz, 0, false };
	char id[VALUE_MAX];

	value(id, sizeof id, authserv_id, false);
	put(&o, "Authentication-Results: %s;\r\n", id);
	ar_item(&o, first);
	if (second != NULL) {
		put(&o, ";\r\n");
		ar_item(&o, second);
	}
	put(&o, "\r\n");
	if (o.full) {
		out[0] = '\0';
		return 0;
	}
	return o.len;
}
