/* smtp_parse.c - SMTP command lines: the verb, MAIL/RCPT arguments and their ESMTP parameters
 * (RFC 5321, 1870 SIZE, 3461 DSN, 6152 8BITMIME, 6531 SMTPUTF8, 6533 utf-8-addr-xtext).
 * Pure functions over the caller's bytes: no I/O, no allocation. */
#include "smtp_parse.h"

#include <string.h>
#include <strings.h>

#include "util.h"

static const char *const verb_names[] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN", [SMTP_VERB_HELO] = "HELO", [SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL", [SMTP_VERB_RCPT] = "RCPT", [SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET", [SMTP_VERB_NOOP] = "NOOP", [SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_HELP] = "HELP", [SMTP_VERB_VRFY] = "VRFY", [SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_BDAT] = "BDAT", [SMTP_VERB_AUTH] = "AUTH",
};

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((size_t)verb >= ARRAY_SIZE(verb_names))
		return verb_names[SMTP_VERB_UNKNOWN];
	return verb_names[verb];
}

/* Octets that never belong in a command line: NUL, CR, LF, other controls but HT, and DEL. */
static bool is_forbidden(unsigned char c)
{
	return (c < 32 && c != '\t') || c == 127;
}

int smtp_command_parse(const char *line, size_t len, struct smtp_command *out)
{
	size_t i = 0, vlen;

	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = line + len;
	out->arg_len = 0;
	for (size_t k = 0; k < len; k++)
		if (is_forbidden((unsigned char)line[k]))
			return -1;
	while (i < len && line[i] != ' ')
		i++;
	vlen = i;
	while (i < len && line[i] == ' ')
		i++;
	out->arg = line + i;
	out->arg_len = len - i;
	while (out->arg_len > 0 && out->arg[out->arg_len - 1] == ' ')
		out->arg_len--;
	for (size_t v = 1; v < ARRAY_SIZE(verb_names); v++) {
		if (ascii_casecmp_n(line, vlen, verb_names[v], strlen(verb_names[v])) == 0) {
			out->verb = (enum smtp_verb)v;
			break;
		}
	}
	return 0;
}

/* A Domain (with '_' allowed in labels) or an address literal, by domain_normalise()'s rules. */
static bool helo_is_name(const char *arg, size_t len)
{
	char tmp[SMTP_DOMAIN_MAX + 1], out[SMTP_DOMAIN_MAX + 1];

	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return false;
	if (arg[0] == '[')
		return domain_normalise(arg, len, false, out, sizeof out) != 0;
	for (size_t i = 0; i < len; i++)
		tmp[i] = arg[i] == '_' ? 'x' : arg[i];
	return domain_normalise(tmp, len, false, out, sizeof out) != 0;
}

static bool helo_name_octet(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
	       c == '-' || c == '_';
}

int smtp_helo_parse(const char *arg, size_t len, bool strict, char *name, size_t namesz)
{
	size_t n = 0;

	if (name == NULL || namesz <= SMTP_DOMAIN_MAX)
		return -1;
	name[0] = '\0';
	if (arg == NULL || len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)arg[i];
		if (c < 32 || c == 127)
			return -1;
	}
	if (helo_is_name(arg, len)) {
		memcpy(name, arg, len);
		name[len] = '\0';
		return 0;
	}
	if (strict)
		return -1;
	for (size_t i = 0; i < len && arg[i] != ' ' && n < SMTP_DOMAIN_MAX; i++)
		name[n++] = helo_name_octet((unsigned char)arg[i]) ? arg[i] : '_';
	if (n == 0)
		name[n++] = '_';
	name[n] = '\0';
	return 0;
}

/* ---- errors ---- */

static int fail(struct smtp_parse_error *err, int code, const char *enhanced, const char *text)
{
	err->code = code;
	err->enhanced = enhanced;
	err->text = text;
	return -1;
}

#define FAIL_SYNTAX(e, t) fail((e), 501, "5.5.2", (t))
#define FAIL_UNKNOWN(e) fail((e), 555, "5.5.4", "Unsupported parameter")
#define FAIL_VALUE(e, t) fail((e), 501, "5.5.4", (t))
#define FAIL_UTF8(e) fail((e), 553, "5.6.7", "UTF-8 address requires SMTPUTF8")

/* ---- ESMTP parameters ---- */

struct esmtp_param {
	const char *key;
	size_t key_len;
	const char *value; /* NULL if the parameter had no "=" */
	size_t value_len;
};

static bool is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_upper_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Split one "keyword[=value]" token (no spaces inside) per RFC 5321 4.1.2 esmtp-param. */
static bool param_split(const char *s, size_t len, struct esmtp_param *p)
{
	const char *eq = memchr(s, '=', len);
	p->key = s;
	p->key_len = eq != NULL ? (size_t)(eq - s) : len;
	p->value = eq != NULL ? eq + 1 : NULL;
	p->value_len = eq != NULL ? len - p->key_len - 1 : 0;
	if (p->key_len == 0 || !is_alnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < p->key_len; i++)
		if (!is_alnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	if (eq != NULL && p->value_len == 0)
		return false; /* esmtp-value = 1*(...) */
	for (size_t i = 0; i < p->value_len; i++) {
		unsigned char c = (unsigned char)p->value[i];
		if (c < 33 || c == '=' || c == 127)
			return false;
	}
	return true;
}

static bool key_is(const struct esmtp_param *p, const char *name)
{
	return ascii_casecmp_n(p->key, p->key_len, name, strlen(name)) == 0;
}

static bool value_is(const struct esmtp_param *p, const char *name)
{
	return p->value != NULL && ascii_casecmp_n(p->value, p->value_len, name, strlen(name)) == 0;
}

/* RFC 3461 xtext: xchar (33-126 but '+' and '=') or "+" two upper-case hex digits. */
static bool xtext_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= len || !is_upper_hex((unsigned char)s[i + 1]) ||
			    !is_upper_hex((unsigned char)s[i + 2]))
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

/* RFC 6533 EmbeddedUnicodeChar "\x{HEX}" at s (s[0] == '\\'): its length, or 0. The code point
 * must be a Unicode scalar value that needs escaping (not printable ASCII other than
 * '+', '=', '\\'). */
static size_t embedded_unicode_len(const char *s, size_t len)
{
	size_t i = 3;
	unsigned long cp = 0;

	if (len < 5 || s[1] != 'x' || s[2] != '{')
		return 0;
	while (i < len && i < 9 && is_upper_hex((unsigned char)s[i])) {
		unsigned char c = (unsigned char)s[i++];
		cp = cp * 16 + (unsigned long)(c <= '9' ? c - '0' : c - 'A' + 10);
	}
	if (i == 3 || i >= len || s[i] != '}' || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	if (cp > 0x20 && cp < 0x7F && cp != '+' && cp != '=' && cp != '\\')
		return 0;
	return i + 1;
}

/* Value of an ORCPT whose addr-type is "utf-8": utf-8-addr-xtext, or utf-8-addr-unitext
 * (raw UTF-8) when the transaction is SMTPUTF8 (RFC 6533 3.). */
static bool utf8_addr_valid(const char *s, size_t len, bool utf8_ok)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			size_t n = embedded_unicode_len(s + i, len - i);
			if (n == 0)
				return false;
			i += n;
		} else if (c >= 0x80) {
			size_t n = 1;
			while (i + n < len && (unsigned char)s[i + n] >= 0x80)
				n++;
			if (!utf8_ok || !smtp_utf8_valid(s + i, n))
				return false;
			i += n;
		} else if (c < 33 || c > 126 || c == '+' || c == '=') {
			return false;
		} else {
			i++;
		}
	}
	return true;
}

/* SIZE= (RFC 1870): 1*20DIGIT that fits in 64 bits. */
static bool size_value(const struct esmtp_param *p, uint64_t *out)
{
	uint64_t v = 0;

	if (p->value == NULL || p->value_len > 20)
		return false;
	for (size_t i = 0; i < p->value_len; i++) {
		unsigned d = (unsigned)(unsigned char)p->value[i] - '0';
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

enum mail_seen { SEEN_SIZE = 1, SEEN_BODY = 2, SEEN_UTF8 = 4, SEEN_RET = 8, SEEN_ENVID = 16 };

/* One MAIL parameter into mp. *seen guards against duplicates. */
static int mail_param(const struct esmtp_param *p, struct smtp_mail_params *mp, unsigned *seen,
		      struct smtp_parse_error *err)
{
	unsigned bit = key_is(p, "SIZE") ? SEEN_SIZE : key_is(p, "BODY") ? SEEN_BODY
		     : key_is(p, "SMTPUTF8") ? SEEN_UTF8 : key_is(p, "RET") ? SEEN_RET
		     : key_is(p, "ENVID") ? SEEN_ENVID : 0;
	if (bit == 0)
		return FAIL_UNKNOWN(err);
	if (*seen & bit)
		return FAIL_VALUE(err, "Duplicate parameter");
	*seen |= bit;
	if (bit == SEEN_SIZE) {
		mp->has_size = size_value(p, &mp->size);
		return mp->has_size ? 0 : FAIL_VALUE(err, "Bad SIZE value");
	}
	if (bit == SEEN_BODY) {
		mp->body = value_is(p, "7BIT") ? SMTP_BODY_7BIT
			 : value_is(p, "8BITMIME") ? SMTP_BODY_8BITMIME : SMTP_BODY_UNSPEC;
		if (value_is(p, "BINARYMIME"))
			return fail(err, 555, "5.5.4", "BODY=BINARYMIME requires CHUNKING");
		return mp->body != SMTP_BODY_UNSPEC ? 0 : FAIL_VALUE(err, "Bad BODY value");
	}
	if (bit == SEEN_UTF8) {
		mp->smtputf8 = p->value == NULL;
		return mp->smtputf8 ? 0 : FAIL_VALUE(err, "SMTPUTF8 takes no value");
	}
	if (bit == SEEN_RET) {
		mp->ret = value_is(p, "FULL") ? SMTP_RET_FULL
			: value_is(p, "HDRS") ? SMTP_RET_HDRS : SMTP_RET_UNSPEC;
		return mp->ret != SMTP_RET_UNSPEC ? 0 : FAIL_VALUE(err, "Bad RET value");
	}
	if (p->value == NULL || p->value_len > SMTP_ENVID_MAX || !xtext_valid(p->value, p->value_len))
		return FAIL_VALUE(err, "Bad ENVID value");
	memcpy(mp->envid, p->value, p->value_len);
	mp->envid[p->value_len] = '\0';
	return 0;
}

/* NOTIFY= (RFC 3461 4.1): "NEVER", or a comma list of SUCCESS, FAILURE, DELAY. */
static unsigned notify_value(const char *s, size_t len)
{
	unsigned mask = 0;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != ',')
			continue;
		unsigned bit = ascii_casecmp_n(s + start, i - start, "NEVER", 5) == 0 ? SMTP_NOTIFY_NEVER
			     : ascii_casecmp_n(s + start, i - start, "SUCCESS", 7) == 0 ? SMTP_NOTIFY_SUCCESS
			     : ascii_casecmp_n(s + start, i - start, "FAILURE", 7) == 0 ? SMTP_NOTIFY_FAILURE
			     : ascii_casecmp_n(s + start, i - start, "DELAY", 5) == 0 ? SMTP_NOTIFY_DELAY : 0;
		if (bit == 0 || (mask & bit))
			return 0;
		mask |= bit;
		start = i + 1;
	}
	if ((mask & SMTP_NOTIFY_NEVER) && mask != SMTP_NOTIFY_NEVER)
		return 0; /* NEVER is exclusive */
	return mask;
}

/* ORCPT= (RFC 3461 4.2): addr-type ";" xtext, at most 500 octets; utf-8 addr-type per RFC 6533. */
static bool orcpt_valid(const char *s, size_t len, bool utf8_ok)
{
	const char *semi = memchr(s, ';', len);

	if (len > SMTP_ORCPT_MAX || semi == NULL || semi == s || semi + 1 == s + len)
		return false;
	size_t tlen = (size_t)(semi - s);
	for (size_t i = 0; i < tlen; i++)
		if (!is_alnum((unsigned char)s[i]) && strchr("!#$%&'*+-/=?^_`{|}~", s[i]) == NULL)
			return false; /* addr-type = atom */
	if (ascii_casecmp_n(s, tlen, "utf-8", 5) == 0)
		return utf8_addr_valid(semi + 1, len - tlen - 1, utf8_ok);
	return xtext_valid(semi + 1, len - tlen - 1);
}

/* One RCPT parameter into rp. */
static int rcpt_param(const struct esmtp_param *p, struct smtp_rcpt_params *rp, bool utf8_ok,
		      struct smtp_parse_error *err)
{
	if (key_is(p, "NOTIFY")) {
		if (rp->notify != 0)
			return FAIL_VALUE(err, "Duplicate parameter");
		rp->notify = p->value != NULL ? notify_value(p->value, p->value_len) : 0;
		return rp->notify != 0 ? 0 : FAIL_VALUE(err, "Bad NOTIFY value");
	}
	if (key_is(p, "ORCPT")) {
		if (rp->orcpt[0] != '\0')
			return FAIL_VALUE(err, "Duplicate parameter");
		if (p->value == NULL || !orcpt_valid(p->value, p->value_len, utf8_ok))
			return FAIL_VALUE(err, "Bad ORCPT value");
		memcpy(rp->orcpt, p->value, p->value_len);
		rp->orcpt[p->value_len] = '\0';
		return 0;
	}
	return FAIL_UNKNOWN(err);
}

/* Walk the space-separated parameters after a path. Calls mail_param or rcpt_param. */
static int params_walk(const char *s, size_t len, struct smtp_mail_params *mp,
		       struct smtp_rcpt_params *rp, bool utf8_ok, struct smtp_parse_error *err)
{
	unsigned seen = 0;
	size_t i = 0;

	while (i < len) {
		size_t start = i;
		struct esmtp_param p;
		while (i < len && s[i] != ' ')
			i++;
		if (!param_split(s + start, i - start, &p))
			return FAIL_VALUE(err, "Malformed parameter");
		int r = mp != NULL ? mail_param(&p, mp, &seen, err) : rcpt_param(&p, rp, utf8_ok, err);
		if (r != 0)
			return r;
		while (i < len && s[i] == ' ')
			i++;
	}
	return 0;
}

/* Skip "FROM:" / "TO:" and spaces after it; returns the offset of the path, or 0 if absent. */
static size_t prefix_skip(const char *arg, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	if (len < n || ascii_casecmp_n(arg, n, prefix, n) != 0)
		return 0;
	while (n < len && arg[n] == ' ')
		n++;
	return n;
}

/* After the path: nothing, or one or more spaces and parameters. Returns the parameter offset
 * (len if none), or 0 if the path is followed by something else. */
static size_t params_start(const char *arg, size_t len, size_t after_path)
{
	if (after_path == len)
		return len;
	if (arg[after_path] != ' ')
		return 0;
	while (after_path < len && arg[after_path] == ' ')
		after_path++;
	return after_path;
}

int smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_cmd *out,
		    struct smtp_parse_error *err)
{
	size_t used = 0, p = prefix_skip(arg, len, "FROM:"), q;

	memset(out, 0, sizeof(*out));
	if (p == 0)
		return FAIL_SYNTAX(err, "Syntax: MAIL FROM:<address>");
	if (p >= len || arg[p] != '<')
		return FAIL_SYNTAX(err, "Syntax: MAIL FROM:<address>");
	enum smtp_addr_status st = smtp_path_parse(arg + p, len - p, true, true, &out->from, &used);
	if (st != ADDR_OK)
		return fail(err, 501, "5.1.7", "Bad sender address syntax");
	if ((q = params_start(arg, len, p + used)) == 0)
		return FAIL_SYNTAX(err, "Syntax: MAIL FROM:<address> [parameters]");
	if (params_walk(arg + q, len - q, &out->params, NULL, false, err) != 0)
		return -1;
	if (out->from.utf8 && !out->params.smtputf8)
		return FAIL_UTF8(err);
	return 0;
}

/* "<Postmaster>" without a domain (RFC 5321 4.5.1), any case: filled in with an empty domain. */
static size_t postmaster_parse(const char *s, size_t len, struct smtp_address *a)
{
	static const char pm[] = "<postmaster>";

	if (len < sizeof(pm) - 1 || ascii_casecmp_n(s, sizeof(pm) - 1, pm, sizeof(pm) - 1) != 0)
		return 0;
	memset(a, 0, sizeof(*a));
	a->local_len = a->local_raw_len = sizeof(pm) - 3;
	memcpy(a->local, s + 1, a->local_len);
	memcpy(a->local_raw, s + 1, a->local_len);
	return sizeof(pm) - 1;
}

int smtp_rcpt_parse(const char *arg, size_t len, bool utf8_ok, struct smtp_rcpt_cmd *out,
		    struct smtp_parse_error *err)
{
	size_t used = 0, p = prefix_skip(arg, len, "TO:"), q;

	memset(out, 0, sizeof(*out));
	if (p == 0 || p >= len || arg[p] != '<')
		return FAIL_SYNTAX(err, "Syntax: RCPT TO:<address>");
	enum smtp_addr_status st = smtp_path_parse(arg + p, len - p, false, true, &out->to, &used);
	if (st != ADDR_OK && (used = postmaster_parse(arg + p, len - p, &out->to)) == 0)
		return fail(err, 501, "5.1.3", "Bad recipient address syntax");
	if ((q = params_start(arg, len, p + used)) == 0)
		return FAIL_SYNTAX(err, "Syntax: RCPT TO:<address> [parameters]");
	if (params_walk(arg + q, len - q, NULL, &out->params, utf8_ok, err) != 0)
		return -1;
	if (out->to.utf8 && !utf8_ok)
		return FAIL_UTF8(err);
	return 0;
}
