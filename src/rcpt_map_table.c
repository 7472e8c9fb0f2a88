/* rcpt_map_table.c - parse a Postfix relay_recipients file into an open-addressing hash table.
 * Format (unchanged from Postfix): one "address [value]" per line, the value ignored ("OK" by
 * convention); "#" comment lines, blank lines, lines starting with white space continue the
 * previous line's value; "@domain" is the domain's catch-all entry. Keys are kept with their
 * local part as written and the domain normalised; hashes are over the lower-cased key, so one
 * table serves case-sensitive and case-insensitive domains. */
#include "rcpt_map_table.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_address.h"
#include "util.h"

struct map_slot {
	uint32_t hash;
	uint32_t off; /* offset of the key in arena; 0 = empty slot */
};

struct map_table {
	char *arena;       /* NUL-terminated keys; byte 0 unused so that 0 means "empty" */
	size_t arena_len;
	size_t arena_cap;
	struct map_slot *slots;
	size_t mask;       /* slots - 1, a power of two minus one */
	size_t n;
};

static inline unsigned char map_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static uint32_t map_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a 64, folded */
	for (; *s; s++) {
		h ^= map_lower((unsigned char)*s);
		h *= 1099511628211ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static bool map_key_eq(const char *a, const char *b, bool case_sensitive)
{
	if (case_sensitive)
		return strcmp(a, b) == 0;
	for (; *a && *b; a++, b++)
		if (map_lower((unsigned char)*a) != map_lower((unsigned char)*b))
			return false;
	return *a == *b;
}

bool map_table_has(const struct map_table *t, const char *key, bool case_sensitive)
{
	uint32_t h = map_hash(key);

	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct map_slot *s = &t->slots[i];
		if (s->off == 0)
			return false;
		if (s->hash == h && map_key_eq(t->arena + s->off, key, case_sensitive))
			return true;
	}
}

/* Insert the key at arena + off (exact duplicates are dropped). */
static void map_table_insert(struct map_table *t, uint32_t off)
{
	const char *key = t->arena + off;
	uint32_t h = map_hash(key);

	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct map_slot *s = &t->slots[i];
		if (s->off == 0) {
			s->hash = h;
			s->off = off;
			t->n++;
			return;
		}
		if (s->hash == h && strcmp(t->arena + s->off, key) == 0)
			return;
	}
}

/* Copy a local part into out without its quotes and backslash escapes ("a b"@x -> a b). */
static size_t map_unquote(const char *in, size_t len, char *out)
{
	size_t o = 0;

	if (len < 2 || in[0] != '"' || in[len - 1] != '"') {
		memcpy(out, in, len);
		return len;
	}
	for (size_t i = 1; i + 1 < len; i++) {
		if (in[i] == '\\' && i + 2 < len)
			i++;
		out[o++] = in[i];
	}
	return o;
}

/* Normalise a key as a map line writes it into out (local part unquoted, domain normalised,
 * NUL-terminated; out holds MAP_KEY_MAX + 1). Returns NULL, or what is wrong with it. "@domain"
 * (nothing before the '@') is the catch-all; a local part that unquotes to nothing ("") is an
 * error, never a second spelling of the catch-all. */
#define MAP_KEY_MAX (SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX)
static const char *map_key_normalise(const char *key, size_t klen, char *out, size_t *outlen)
{
	const char *at = NULL;
	char domain[SMTP_DOMAIN_MAX + 1];

	for (size_t i = klen; i-- > 0;)
		if (key[i] == '@') {
			at = key + i;
			break;
		}
	if (at == NULL)
		return "not an address (no '@')";
	size_t llen = (size_t)(at - key);
	if (llen > SMTP_LOCAL_MAX)
		return "local part longer than 64 octets";
	if (domain_normalise(at + 1, klen - llen - 1, true, domain, sizeof domain) == 0)
		return "invalid domain";
	size_t ulen = map_unquote(key, llen, out);
	if (llen > 0 && ulen == 0)
		return "empty local part (\"\"@domain is not a catch-all; the catch-all line is @domain)";
	if (memchr(out, '\0', ulen) != NULL)
		return "NUL octet in the address";
	size_t dlen = strlen(domain);
	out[ulen] = '@';
	memcpy(out + ulen + 1, domain, dlen + 1);
	*outlen = ulen + 1 + dlen;
	return NULL;
}

/* Append the key (local part unquoted, domain normalised) to the arena. Returns NULL, or what
 * is wrong with it. */
static const char *map_key_store(struct map_table *t, const char *key, size_t klen)
{
	char norm[MAP_KEY_MAX + 1];
	size_t nlen;
	const char *err = map_key_normalise(key, klen, norm, &nlen);

	if (err)
		return err;
	if (t->arena_len + nlen + 1 > t->arena_cap)
		return "address too long"; /* cannot happen: keys only shrink, but stay safe */
	memcpy(t->arena + t->arena_len, norm, nlen + 1);
	map_table_insert(t, (uint32_t)t->arena_len);
	t->arena_len += nlen + 1;
	return NULL;
}

/* Length of the key at the start of line (a quoted local part may hold white space). */
static size_t map_key_len(const char *line, size_t len)
{
	size_t i = 0;
	bool quoted = false;

	for (; i < len; i++) {
		char c = line[i];
		if (quoted && c == '\\' && i + 1 < len)
			i++;
		else if (c == '"')
			quoted = !quoted;
		else if (!quoted && (c == ' ' || c == '\t'))
			break;
	}
	return i;
}

/* One physical line (without its newline). Returns NULL if fine, else what is wrong. */
static const char *map_parse_line(struct map_table *t, const char *line, size_t len)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (len == 0 || line[0] == '#' || line[0] == ' ' || line[0] == '\t')
		return NULL; /* blank, comment, or continuation of the previous value */
	size_t klen = map_key_len(line, len);
	if (klen > SMTP_LOCAL_MAX + 3 + SMTP_DOMAIN_MAX)
		return "address too long";
	return map_key_store(t, line, klen);
}

static struct map_table *map_table_alloc(const char *buf, size_t len)
{
	struct map_table *t = xcalloc(1, sizeof *t);
	size_t lines = 1, slots = 16;

	for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL; p++)
		lines++;
	while (slots < lines * 2)
		slots <<= 1;
	t->slots = xcalloc(slots, sizeof *t->slots);
	t->mask = slots - 1;
	/* keys never grow (unquoting and normalising shrink them): +1 NUL each, +1 unused byte,
	 * a little slack for an address literal that canonicalises longer */
	t->arena_cap = len + lines + 2 + 64;
	t->arena = xmalloc(t->arena_cap);
	t->arena_len = 1;
	return t;
}

struct map_table *map_table_parse(const char *name, const char *buf, size_t len, char *why, size_t whysz)
{
	if (len >= UINT32_MAX / 2) {
		snprintf(why, whysz, "%s: file too large (%zu octets)", name, len);
		return NULL;
	}
	struct map_table *t = map_table_alloc(buf, len);
	const char *p = buf, *end = buf + len;
	for (unsigned lineno = 1; p < end; lineno++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *err = map_parse_line(t, p, llen);
		if (err) {
			snprintf(why, whysz, "%s:%u: %s", name, lineno, err);
			map_table_free(t);
			return NULL;
		}
		p += llen + 1;
	}
	return t;
}

void map_table_free(struct map_table *t)
{
	if (t == NULL)
		return;
	free(t->arena);
	free(t->slots);
	free(t);
}

size_t map_table_entries(const struct map_table *t) { return t ? t->n : 0; }

const char *map_table_key_check(const char *key, size_t len)
{
	char norm[MAP_KEY_MAX + 1];
	size_t nlen;

	if (len == 0 || key[0] == '#' || key[0] == ' ' || key[0] == '\t' || map_key_len(key, len) != len)
		return "not one word as a map line's key";
	if (len > MAP_KEY_MAX + 2)
		return "address too long";
	if (key[0] == '@')
		return "empty local part (a map would read it as the domain's catch-all)";
	return map_key_normalise(key, len, norm, &nlen);
}
