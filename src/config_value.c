/* config_value.c - parsers for typed configuration values: unsigned integers, sizes, durations,
 * booleans, enums and host:port lists (see config_value.h). Pure functions, no I/O. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_value.h"
#include "util.h"

/* Read the decimal digits at *p into *out, advancing *p. */
static int cfgval_digits(const char **p, uint64_t *out, const char **why)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s)) {
		*why = "expected a number";
		return -1;
	}
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10) {
			*why = "number too large";
			return -1;
		}
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

int cfgval_uint(const char *s, uint64_t *out, const char **why)
{
	uint64_t v;

	if (cfgval_digits(&s, &v, why) < 0)
		return -1;
	if (*s) {
		*why = "expected a whole number (digits only)";
		return -1;
	}
	*out = v;
	return 0;
}

static int cfgval_mul(uint64_t v, uint64_t m, uint64_t *out, const char **why)
{
	if (m && v > UINT64_MAX / m) {
		*why = "number too large";
		return -1;
	}
	*out = v * m;
	return 0;
}

int cfgval_size(const char *s, uint64_t *out, const char **why)
{
	uint64_t v, m = 1;

	if (cfgval_digits(&s, &v, why) < 0)
		return -1;
	switch (*s) {
	case '\0': break;
	case 'K': case 'k': m = 1024; s++; break;
	case 'M': case 'm': m = 1024 * 1024; s++; break;
	case 'G': case 'g': m = 1024 * 1024 * 1024; s++; break;
	default:
		*why = "expected a size: a number with an optional K, M or G suffix";
		return -1;
	}
	if (*s) {
		*why = "expected a size: a number with an optional K, M or G suffix";
		return -1;
	}
	return cfgval_mul(v, m, out, why);
}

/* Milliseconds per unit at *p (advancing *p past it); 0 if no unit is there. */
static uint64_t cfgval_unit(const char **p)
{
	static const struct { const char *name; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		size_t n = strlen(units[i].name);
		if (strncmp(*p, units[i].name, n) == 0) {
			*p += n;
			return units[i].ms;
		}
	}
	return 0;
}

int cfgval_duration(const char *s, uint64_t *out_ms, const char **why)
{
	static const char *const bad = "expected a duration such as 30s, 5m, 1h30m or 250ms";
	uint64_t total = 0, v, ms;
	const char *p = s;

	if (cfgval_digits(&p, &v, why) < 0)
		return -1;
	if (!*p)
		return cfgval_mul(v, 1000, out_ms, why); /* bare number: seconds */
	for (;;) {
		if (!(ms = cfgval_unit(&p))) {
			*why = bad;
			return -1;
		}
		if (cfgval_mul(v, ms, &v, why) < 0 || v > UINT64_MAX - total) {
			*why = "duration too large";
			return -1;
		}
		total += v;
		if (!*p)
			break;
		if (cfgval_digits(&p, &v, why) < 0) {
			*why = bad;
			return -1;
		}
	}
	*out_ms = total;
	return 0;
}

int cfgval_bool(const char *s, bool *out, const char **why)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	*why = "expected yes or no";
	return -1;
}

int cfgval_enum(const char *s, const char *const *values, int *out, const char **why)
{
	for (int i = 0; values[i]; i++) {
		if (strcasecmp(s, values[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	*why = "not one of the allowed values";
	return -1;
}

static int cfgval_port(const char *s, size_t len, char *out, const char **why)
{
	uint64_t v = 0;

	if (len == 0 || len > 5) {
		*why = "expected a port number (0-65535) after ':'";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i])) {
			*why = "expected a port number (0-65535) after ':'";
			return -1;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > 65535) {
		*why = "port number out of range (0-65535)";
		return -1;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

static int cfgval_host(const char *s, size_t len, bool bracketed, char *out, const char **why)
{
	if (len > SMTP_DOMAIN_MAX) {
		*why = "host name too long";
		return -1;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	if (bracketed) {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, out, &a6) != 1) {
			*why = "expected an IPv6 address inside [ ]";
			return -1;
		}
		return 0;
	}
	if (strcmp(out, "*") == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) && !strchr("-._", s[i])) {
			*why = s[i] == ':' ? "an IPv6 address needs brackets: [::1]:25"
					   : "invalid character in host name";
			return -1;
		}
	}
	return 0;
}

/* One "host:port" or "[v6]:port" item of len bytes. */
static int cfgval_hostport(const char *s, size_t len, struct bs_hostport *hp, const char **why)
{
	const char *colon;

	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (!close || close + 1 >= s + len || close[1] != ':') {
			*why = "expected [IPv6]:port";
			return -1;
		}
		if (cfgval_host(s + 1, (size_t)(close - s - 1), true, hp->host, why) < 0)
			return -1;
		colon = close + 1;
	} else {
		colon = NULL;
		for (size_t i = 0; i < len; i++)
			if (s[i] == ':')
				colon = s + i;
		if (!colon) {
			*why = "expected host:port";
			return -1;
		}
		if (cfgval_host(s, (size_t)(colon - s), false, hp->host, why) < 0)
			return -1;
	}
	return cfgval_port(colon + 1, (size_t)(s + len - colon - 1), hp->port, why);
}

int cfgval_hostport_list(const char *s, struct bs_hostport_list *list, const char **why)
{
	struct bs_hostport_list add = { NULL, 0 };
	static const char *const sep = ", \t";

	for (const char *p = s + strspn(s, sep); *p; p += strspn(p, sep)) {
		size_t len = strcspn(p, sep);
		struct bs_hostport hp;
		if (cfgval_hostport(p, len, &hp, why) < 0) {
			free(add.items);
			return -1;
		}
		add.items = xrealloc(add.items, (add.n + 1) * sizeof(*add.items));
		add.items[add.n++] = hp;
		p += len;
	}
	if (add.n == 0) {
		*why = "expected one or more host:port";
		return -1;
	}
	list->items = xrealloc(list->items, (list->n + add.n) * sizeof(*list->items));
	memcpy(list->items + list->n, add.items, add.n * sizeof(*add.items));
	list->n += add.n;
	free(add.items);
	return 0;
}

void cfgval_hostport_list_free(struct bs_hostport_list *list)
{
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

int cfgval_listener_list(const char *s, struct bs_listener_list *list, const char **why)
{
	static const char *const sep = ", \t";

	for (const char *p = s + strspn(s, sep); *p; p += strspn(p, sep)) {
		size_t len = strcspn(p, sep);
		struct bs_listener l;
		memset(&l, 0, sizeof l);
		if (len > 5 && strncmp(p, "unix:", 5) == 0) {
			l.is_unix = true;
			if (p[5] != '/') {
				*why = "a unix socket needs an absolute path (unix:/path)";
				return -1;
			}
			if (strbuf_copy(l.path, sizeof l.path, p + 5, len - 5) < 0) {
				*why = "unix socket path too long (at most 107 characters)";
				return -1;
			}
		} else if (cfgval_hostport(p, len, &l.inet, why) < 0) {
			return -1;
		}
		list->items = xrealloc(list->items, (list->n + 1) * sizeof(*list->items));
		list->items[list->n++] = l;
		p += len;
	}
	return 0;
}

void cfgval_listener_list_free(struct bs_listener_list *list)
{
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

void cfgval_format_size(uint64_t v, char *buf, size_t bufsz)
{
	static const char units[] = "KMG";
	int u = 0;

	while (u < 3 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, bufsz, "%llu", (unsigned long long)v);
	else
		snprintf(buf, bufsz, "%llu%c", (unsigned long long)v, units[u - 1]);
}

void cfgval_format_duration(uint64_t ms, char *buf, size_t bufsz)
{
	static const struct { const char *name; uint64_t ms; } units[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
	};
	size_t o = 0;

	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, bufsz, "0s");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units) && o < bufsz; i++) {
		if (ms >= units[i].ms) {
			int n = snprintf(buf + o, bufsz - o, "%llu%s",
					 (unsigned long long)(ms / units[i].ms), units[i].name);
			o += n > 0 ? (size_t)n : 0;
			ms %= units[i].ms;
		}
	}
}
