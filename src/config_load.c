/* config_load.c - read backstop.conf with inih and fill a struct bs_config from config_keys[].
 * A line reader in front of inih numbers the lines, bounds them, refuses NULs and parses the
 * section headers itself (so that [domain [192.0.2.1]] works and every bad line is reported);
 * inih splits key = value and strips comments. Every error is collected as "FILE:LINE: msg". */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_load.h"
#include "config_value.h"
#include "log.h"
#include "util.h"

#define CONFIG_FILE_MAX (16u << 20) /* a config larger than this is a mistake */

void config_error(struct cfg_loader *L, unsigned line, const char *fmt, ...)
{
	va_list ap;
	char msg[768];
	char *full;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(NULL, 0, "%s:%u: %s", L->path, line, msg);
	full = xmalloc((size_t)n + 1);
	snprintf(full, (size_t)n + 1, "%s:%u: %s", L->path, line, msg);
	L->errs->msgs = xrealloc(L->errs->msgs, (L->errs->n + 1) * sizeof(char *));
	L->errs->msgs[L->errs->n++] = full;
}

static const struct cfg_key *cfg_key_find(enum cfg_section sec, const char *name, size_t *idx)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].section == sec && strcmp(config_keys[i].name, name) == 0) {
			*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

unsigned config_seen_line(const unsigned *seen, enum cfg_section sec, const char *name)
{
	size_t i;

	return cfg_key_find(sec, name, &i) ? seen[i] : 0;
}

unsigned config_gateway_line(const struct bs_config *cfg, const char *name)
{
	return cfg->gateway_lines ? config_seen_line(cfg->gateway_lines, CFG_SEC_GATEWAY, name) : 0;
}

static void cfg_put_uint(void *p, size_t size, uint64_t v)
{
	if (size == 1) {
		uint8_t x = (uint8_t)v;
		memcpy(p, &x, 1);
	} else if (size == 4) {
		uint32_t x = (uint32_t)v;
		memcpy(p, &x, 4);
	} else {
		memcpy(p, &v, 8);
	}
}

/* Parse a number of key k's type and check its range. */
static int cfg_parse_number(const struct cfg_key *k, const char *value, uint64_t *v,
			    char *why, size_t whysz)
{
	const char *w = NULL;
	int rc;
	char lo[32], hi[32];

	if (k->type == CFG_T_UINT && k->enums && strcasecmp(value, k->enums[0]) == 0) {
		*v = 0;
		return 0;
	}
	rc = k->type == CFG_T_SIZE ? cfgval_size(value, v, &w)
	     : k->type == CFG_T_DURATION ? cfgval_duration(value, v, &w)
	     : cfgval_uint(value, v, &w);
	if (rc < 0) {
		snprintf(why, whysz, "%s", w);
		return -1;
	}
	if (*v < k->min || *v > k->max) {
		config_key_format(k, k->min, lo, sizeof(lo));
		config_key_format(k, k->max, hi, sizeof(hi));
		snprintf(why, whysz, "out of range (%s to %s)", lo, hi);
		return -1;
	}
	return 0;
}

/* A string value: surrounding double quotes removed ("" is the empty string), then checked. */
static int cfg_parse_string(const struct cfg_key *k, const char *value, char *out, size_t outsz,
			    char *why, size_t whysz)
{
	size_t n = strlen(value);
	const char *w = NULL;

	if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
		value++;
		n -= 2;
	}
	if (strbuf_copy(out, outsz, value, n) < 0) {
		snprintf(why, whysz, "too long (at most %zu characters)", outsz - 1);
		return -1;
	}
	if (k->check && k->check(out, &w) < 0) {
		snprintf(why, whysz, "%s", w);
		return -1;
	}
	return 0;
}

/* A list of words separated by white space, each checked. */
static int cfg_parse_strlist(const struct cfg_key *k, const char *value, struct bs_strlist *out,
			     char *why, size_t whysz)
{
	struct bs_strlist l = { NULL, 0 };
	const char *w = NULL;

	for (const char *p = value + strspn(value, " \t"); *p; p += strspn(p, " \t")) {
		size_t n = strcspn(p, " \t");
		char *item = xstrndup(p, n);
		l.items = xrealloc(l.items, (l.n + 1) * sizeof(char *));
		l.items[l.n++] = item;
		p += n;
		if (k->check && k->check(item, &w) < 0) {
			snprintf(why, whysz, "'%.100s': %s", item, w);
			config_strlist_free(&l);
			return -1;
		}
	}
	config_strlist_free(out);
	*out = l;
	return 0;
}

static int cfg_parse_hostports(const struct cfg_key *k, const char *value,
			       struct bs_hostport_list *out, char *why, size_t whysz)
{
	struct bs_hostport_list l = { NULL, 0 };
	const char *w = NULL;

	/* a list with a default may be emptied (listen =: no SMTP listener); one without is required */
	if (k->def != NULL && value[strspn(value, ", \t")] == '\0') {
		cfgval_hostport_list_free(out);
		return 0;
	}
	if (cfgval_hostport_list(value, &l, &w) < 0 || (k->check && k->check(value, &w) < 0)) {
		snprintf(why, whysz, "%s", w);
		cfgval_hostport_list_free(&l);
		return -1;
	}
	cfgval_hostport_list_free(out);
	*out = l;
	return 0;
}

static int cfg_parse_listeners(const char *value, struct bs_listener_list *out, char *why, size_t whysz)
{
	struct bs_listener_list l = { NULL, 0 };
	const char *w = NULL;

	if (cfgval_listener_list(value, &l, &w) < 0) {
		snprintf(why, whysz, "%s", w);
		cfgval_listener_list_free(&l);
		return -1;
	}
	cfgval_listener_list_free(out);
	*out = l;
	return 0;
}

/* Parse value as key k and store it in the section object at base (replacing any default).
 * Returns 0, or -1 with why filled and the field unchanged. */
static int cfg_store(const struct cfg_key *k, void *base, const char *value, char *why,
		     size_t whysz)
{
	char *field = (char *)base + k->offset;
	char str[CFG_VALUE_MAX];
	const char *w = NULL;
	uint64_t v;
	bool b;
	int e;

	switch (k->type) {
	case CFG_T_STR:
		if (cfg_parse_string(k, value, str, sizeof(str), why, whysz) < 0)
			return -1;
		free(*(char **)(void *)field);
		*(char **)(void *)field = xstrdup(str);
		return 0;
	case CFG_T_BUF:
		return cfg_parse_string(k, value, field, k->size, why, whysz);
	case CFG_T_UINT:
	case CFG_T_SIZE:
	case CFG_T_DURATION:
		if (cfg_parse_number(k, value, &v, why, whysz) < 0)
			return -1;
		cfg_put_uint(field, k->size, v);
		return 0;
	case CFG_T_BOOL:
		if (cfgval_bool(value, &b, &w) < 0)
			break;
		cfg_put_uint(field, k->size, b);
		return 0;
	case CFG_T_ENUM:
		if (cfgval_enum(value, k->enums, &e, &w) < 0)
			break;
		cfg_put_uint(field, k->size, (uint64_t)e);
		return 0;
	case CFG_T_HOSTPORTS:
		return cfg_parse_hostports(k, value, (struct bs_hostport_list *)(void *)field, why,
					   whysz);
	case CFG_T_STRLIST:
		return cfg_parse_strlist(k, value, (struct bs_strlist *)(void *)field, why, whysz);
	case CFG_T_LISTENERS:
		return cfg_parse_listeners(value, (struct bs_listener_list *)(void *)field, why, whysz);
	}
	if (k->type == CFG_T_ENUM)
		config_key_values(k, ", ", str, sizeof(str));
	snprintf(why, whysz, "%s%s%s", w ? w : "invalid value", k->type == CFG_T_ENUM ? ": " : "",
		 k->type == CFG_T_ENUM ? str : "");
	return -1;
}

/* Fill a fresh section object with the defaults of its keys, parsed like values. */
static void cfg_defaults(struct cfg_loader *L, enum cfg_section sec, void *base)
{
	char why[256];

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		if (k->section == sec && k->def && cfg_store(k, base, k->def, why, sizeof(why)) < 0)
			config_error(L, 0, "internal error: default '%s' of %s: %s", k->def, k->name,
				     why);
	}
}

static unsigned *cfg_seen_row(struct cfg_loader *L)
{
	switch (L->cur) {
	case CUR_DOMAIN: return L->dom_seen + L->cur_idx * config_nkeys;
	case CUR_LDAP: return L->ldap_seen + L->cur_idx * config_nkeys;
	default: return L->gw_seen;
	}
}

static void cfg_begin_domain(struct cfg_loader *L, const char *name, size_t len)
{
	struct bs_config *cfg = L->cfg;
	struct bs_domain *d;
	char shown[128];

	cfg->domains = xrealloc(cfg->domains, (cfg->ndomains + 1) * sizeof(*cfg->domains));
	d = memset(&cfg->domains[cfg->ndomains], 0, sizeof(*d));
	if (domain_normalise(name, len, true, d->name, sizeof(d->name)) == 0) {
		log_sanitize(shown, sizeof(shown), name, len);
		config_error(L, L->line, "[domain %s]: not a valid domain name", shown);
		L->cur = CUR_BAD;
		return;
	}
	d->line = L->line;
	L->dom_seen = xrealloc(L->dom_seen, (cfg->ndomains + 1) * config_nkeys * sizeof(unsigned));
	memset(L->dom_seen + cfg->ndomains * config_nkeys, 0, config_nkeys * sizeof(unsigned));
	L->cur = CUR_DOMAIN;
	L->cur_idx = cfg->ndomains++;
	cfg_defaults(L, CFG_SEC_DOMAIN, d);
}

static void cfg_begin_ldap(struct cfg_loader *L, const char *name, size_t len)
{
	struct bs_config *cfg = L->cfg;
	struct bs_ldap *l;
	char shown[128];
	const char *why;

	log_sanitize(shown, sizeof(shown), name, len);
	cfg->ldaps = xrealloc(cfg->ldaps, (cfg->nldaps + 1) * sizeof(*cfg->ldaps));
	l = memset(&cfg->ldaps[cfg->nldaps], 0, sizeof(*l));
	if (strbuf_copy(l->name, sizeof(l->name), name, len) < 0 ||
	    config_check_ldap_name(l->name, &why) < 0) {
		config_error(L, L->line, "[ldap %s]: %s", shown,
			     "an LDAP section name is 1-63 letters, digits, '_', '.' or '-'");
		L->cur = CUR_BAD;
		return;
	}
	for (size_t i = 0; i < cfg->nldaps; i++) {
		if (strcmp(cfg->ldaps[i].name, l->name) == 0) {
			config_error(L, L->line, "duplicate [ldap %s] (first at line %u)", shown,
				     cfg->ldaps[i].line);
			L->cur = CUR_BAD;
			return;
		}
	}
	l->line = L->line;
	L->ldap_seen = xrealloc(L->ldap_seen, (cfg->nldaps + 1) * config_nkeys * sizeof(unsigned));
	memset(L->ldap_seen + cfg->nldaps * config_nkeys, 0, config_nkeys * sizeof(unsigned));
	L->cur = CUR_LDAP;
	L->cur_idx = cfg->nldaps++;
	cfg_defaults(L, CFG_SEC_LDAP, l);
}

/* The text between the brackets of a section header: "gateway", "domain NAME", "ldap NAME". */
static void cfg_begin_section(struct cfg_loader *L, const char *s, size_t len)
{
	size_t wlen = 0, rlen;
	const char *rest;
	char shown[128];

	while (wlen < len && s[wlen] != ' ' && s[wlen] != '\t') /* s is not NUL-terminated */
		wlen++;
	rest = s + wlen;
	rlen = len - wlen;
	while (rlen && (*rest == ' ' || *rest == '\t'))
		rest++, rlen--;
	while (rlen && (rest[rlen - 1] == ' ' || rest[rlen - 1] == '\t'))
		rlen--;
	if (wlen == 7 && memcmp(s, "gateway", 7) == 0 && rlen == 0) {
		if (L->gateway_line)
			config_error(L, L->line, "duplicate [gateway] (first at line %u)",
				     L->gateway_line);
		else
			L->gateway_line = L->line;
		L->cur = CUR_GATEWAY;
	} else if (wlen == 6 && memcmp(s, "domain", 6) == 0 && rlen > 0) {
		cfg_begin_domain(L, rest, rlen);
	} else if (wlen == 4 && memcmp(s, "ldap", 4) == 0 && rlen > 0) {
		cfg_begin_ldap(L, rest, rlen);
	} else {
		log_sanitize(shown, sizeof(shown), s, len);
		config_error(L, L->line, "unknown section [%s]: expected [gateway], [domain NAME] "
			     "or [ldap NAME]", shown);
		L->cur = CUR_BAD;
	}
}

/* A section header line (s starts with '['): brackets may nest, as in [domain [192.0.2.1]]. */
static void cfg_header_line(struct cfg_loader *L, const char *s, size_t len)
{
	size_t i, depth = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '[')
			depth++;
		else if (s[i] == ']' && --depth == 0)
			break;
	}
	if (i == len) {
		config_error(L, L->line, "section header without its closing ']'");
		L->cur = CUR_BAD;
		return;
	}
	for (size_t j = i + 1; j < len && s[j] != ';' && s[j] != '#'; j++) {
		if (s[j] != ' ' && s[j] != '\t') {
			config_error(L, L->line, "unexpected text after the section header");
			L->cur = CUR_BAD;
			return;
		}
	}
	cfg_begin_section(L, s + 1, i - 1);
}

/* Look at one physical line; returns true if inih should see it (a key line or a comment). */
static bool cfg_line_ok(struct cfg_loader *L, const char **sp, size_t *lenp, int room)
{
	const char *s = *sp;
	size_t len = *lenp;

	if (memchr(s, '\0', len)) {
		config_error(L, L->line, "NUL byte in line");
		return false;
	}
	if (L->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3, len -= 3;
	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || *s == ';' || *s == '#')
		return false;
	if (len + 2 > (size_t)room) {
		config_error(L, L->line, "line too long (at most %d characters)", room - 2);
		return false;
	}
	if (*s == '[') {
		cfg_header_line(L, s, len);
		return false;
	}
	if (!memchr(s, '=', len) && !memchr(s, ':', len)) {
		config_error(L, L->line, "expected 'key = value'");
		return false;
	}
	*sp = s;
	*lenp = len;
	return true;
}

/* inih's reader: hands inih one physical line at a time, or an empty line for anything this
 * loader handles itself (blank, comment, section header, bad line). */
static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_loader *L = stream;
	const char *s = L->buf + L->pos, *nl;
	size_t len;

	if (L->pos >= L->len || num < 3)
		return NULL;
	nl = memchr(s, '\n', L->len - L->pos);
	len = nl ? (size_t)(nl - s) : L->len - L->pos;
	L->pos += len + (nl ? 1 : 0);
	L->line++;
	str[0] = '\0';
	if (cfg_line_ok(L, &s, &len, num)) {
		memcpy(str, s, len);
		str[len] = '\n';
		str[len + 1] = '\0';
	}
	return str;
}

/* inih's handler: one key = value of the current section (inih's own section name is unused:
 * headers never reach inih). Always returns 1: errors are collected here, not by inih. */
static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_loader *L = user;
	static const enum cfg_section secs[] = {
		[CUR_GATEWAY] = CFG_SEC_GATEWAY, [CUR_DOMAIN] = CFG_SEC_DOMAIN, [CUR_LDAP] = CFG_SEC_LDAP,
	};
	const struct cfg_key *k;
	char shown[128], why[384];
	unsigned *seen;
	size_t idx;
	void *obj;

	(void)section;
	log_sanitize(shown, sizeof(shown), name, strlen(name));
	if (L->cur == CUR_BAD)
		return 1;
	if (L->cur == CUR_NONE) {
		config_error(L, L->line, "'%s' outside any section: start with [gateway], "
			     "[domain NAME] or [ldap NAME]", shown);
		return 1;
	}
	if (!(k = cfg_key_find(secs[L->cur], name, &idx))) {
		config_error(L, L->line, name[0] ? "unknown key '%s' in [%s]"
			     : "missing key name before '='%.0s in [%s]", shown,
			     config_section_name(secs[L->cur]));
		return 1;
	}
	seen = cfg_seen_row(L) + idx;
	if (*seen) {
		config_error(L, L->line, "duplicate key '%s' (first set at line %u)", shown, *seen);
		return 1;
	}
	*seen = L->line;
	obj = L->cur == CUR_GATEWAY ? (void *)L->cfg
	      : L->cur == CUR_DOMAIN ? (void *)&L->cfg->domains[L->cur_idx]
	      : (void *)&L->cfg->ldaps[L->cur_idx];
	if (cfg_store(k, obj, value, why, sizeof(why)) < 0) {
		log_sanitize(shown, sizeof(shown), value, strlen(value));
		config_error(L, L->line, "%s = %s: %s", k->name, shown, why);
	}
	return 1;
}

/* Read the whole file (bounded). Returns a heap buffer, or NULL with an error recorded. */
static char *cfg_read_file(struct cfg_loader *L, size_t *len)
{
	FILE *f = fopen(L->path, "rb");
	size_t cap = 0, n = 0;
	char *buf = NULL;

	if (!f) {
		config_error(L, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			buf = xrealloc(buf, cap);
		}
		n += fread(buf + n, 1, cap - n, f);
	} while (n == cap && n <= CONFIG_FILE_MAX);
	if (ferror(f) || n > CONFIG_FILE_MAX) {
		config_error(L, 0, ferror(f) ? "cannot read: %s" : "file too large%.0s",
			     strerror(errno));
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* Parse and validate buf; L holds the path and the errors. */
static struct bs_config *cfg_load(struct cfg_loader *L, const char *buf, size_t len)
{
	L->cfg = xcalloc(1, sizeof(*L->cfg));
	atomic_init(&L->cfg->refs, 1);
	L->cfg->path = xstrdup(L->path);
	L->gw_seen = xcalloc(config_nkeys, sizeof(unsigned));
	cfg_defaults(L, CFG_SEC_GATEWAY, L->cfg);
	if (buf) {
		L->buf = buf;
		L->len = len;
		if (ini_parse_stream(cfg_reader, L, cfg_handler, L) == -2)
			config_error(L, 0, "out of memory");
		config_validate(L);
	}
	L->cfg->gateway_lines = L->gw_seen;
	free(L->dom_seen);
	free(L->ldap_seen);
	if (L->errs->n) {
		config_free(L->cfg);
		return NULL;
	}
	return L->cfg;
}

struct bs_config *config_load_buffer(const char *name, const char *buf, size_t len,
				     struct config_errors *errs)
{
	struct cfg_loader L = { .path = name, .errs = errs };

	errs->msgs = NULL;
	errs->n = 0;
	return cfg_load(&L, buf, len);
}

struct bs_config *config_load(const char *path, struct config_errors *errs)
{
	struct cfg_loader L = { .path = path, .errs = errs };
	struct bs_config *cfg;
	size_t len = 0;
	char *buf;

	errs->msgs = NULL;
	errs->n = 0;
	buf = cfg_read_file(&L, &len);
	cfg = cfg_load(&L, buf, len);
	free(buf);
	return cfg;
}

struct cfg_peek {
	const char *name;
	char *out;
	size_t outsz;
	int found;
};

static int cfg_peek_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_peek *p = user;
	size_t n = strlen(value);

	if (strcmp(section, "gateway") != 0 || strcmp(name, p->name) != 0)
		return 1;
	if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
		value++;
		n -= 2;
	}
	p->found = strbuf_copy(p->out, p->outsz, value, n) == 0 ? 1 : 0;
	return 1;
}

int config_peek_gateway(const char *path, const char *name, char *out, size_t outsz)
{
	struct cfg_peek p = { .name = name, .out = out, .outsz = outsz };
	size_t idx;
	const struct cfg_key *k = cfg_key_find(CFG_SEC_GATEWAY, name, &idx);

	if (ini_parse(path, cfg_peek_handler, &p) < 0)
		return -1;
	if (!p.found && k != NULL && k->def != NULL)
		snprintf(out, outsz, "%s", k->def);
	return p.found;
}

void config_section_defaults(enum cfg_section sec, void *obj)
{
	struct config_errors errs = { 0 };
	struct cfg_loader L = { .path = "(defaults)", .errs = &errs };

	cfg_defaults(&L, sec, obj);
	config_errors_free(&errs); /* an error here is a bug of the table: the unit tests load it */
}
