/* hdr_filter.c - removing Authentication-Results fields that claim our authserv-id from the
 * header section (hdr_filter.h). States: at the start of a line; reading a field name (held
 * until its colon tells whether it is one to watch); passing a line; holding an
 * Authentication-Results field (its continuation lines too); the body. */
#include "hdr_filter.h"

#include <string.h>

#include "util.h"

enum { HF_START = 0, HF_NAME, HF_PASS, HF_HOLD, HF_HOLD_EOL, HF_BODY };

#define AR_NAME "Authentication-Results"
#define NAME_MAX_WATCH 64

void hdr_filter_init(struct hdr_filter *f, const char *authserv_id)
{
	f->authserv_id = authserv_id;
	f->state = HF_START;
	f->held = 0;
	f->removed = 0;
}

bool hdr_filter_in_body(const struct hdr_filter *f)
{
	return f->state == HF_BODY;
}

static bool wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Skip white space, line ends and (nested) comments. */
static size_t skip_cfws(const char *s, size_t i, size_t len)
{
	int depth = 0;

	for (; i < len; i++) {
		char c = s[i];
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (c == '\\' && depth > 0 && i + 1 < len)
			i++;
		else if (depth == 0 && !wsp(c) && c != '\r' && c != '\n')
			break;
	}
	return i;
}

bool hdr_ar_claims(const char *field, size_t len, const char *id)
{
	const char *colon = memchr(field, ':', len);
	char value[256];
	size_t o = 0;

	if (colon == NULL || id == NULL || id[0] == '\0')
		return false;
	size_t i = skip_cfws(field, (size_t)(colon - field) + 1, len);
	if (i < len && field[i] == '"') { /* quoted-string */
		for (i++; i < len && field[i] != '"' && o + 1 < sizeof value; i++) {
			if (field[i] == '\\' && i + 1 < len)
				i++;
			if (field[i] != '\r' && field[i] != '\n')
				value[o++] = field[i];
		}
	} else {
		for (; i < len && o + 1 < sizeof value; i++) {
			char c = field[i];
			if (wsp(c) || c == ';' || c == '(' || c == '\r' || c == '\n')
				break;
			value[o++] = c;
		}
	}
	return o > 0 && ascii_casecmp_n(value, o, id, strlen(id)) == 0;
}

static void flush(struct hdr_filter *f, hdr_write_fn w, void *arg)
{
	if (f->held > 0)
		w(arg, f->hold, f->held);
	f->held = 0;
}

/* The held field is complete: drop it if it claims our id. */
static void decide(struct hdr_filter *f, hdr_write_fn w, void *arg)
{
	if (hdr_ar_claims(f->hold, f->held, f->authserv_id)) {
		f->removed++;
		f->held = 0;
	}
	flush(f, w, arg);
}

static bool hold(struct hdr_filter *f, char c)
{
	if (f->held == HDR_HOLD_MAX)
		return false;
	f->hold[f->held++] = c;
	return true;
}

/* Is the name held (up to its colon) the one to watch? */
static bool watched(const struct hdr_filter *f)
{
	size_t n = f->held - 1; /* without the colon */
	while (n > 0 && wsp(f->hold[n - 1]))
		n--;
	return ascii_casecmp_n(f->hold, n, AR_NAME, strlen(AR_NAME)) == 0;
}

void hdr_filter_feed(struct hdr_filter *f, const char *data, size_t len, hdr_write_fn w, void *arg)
{
	size_t i = 0, run = 0; /* data[run .. i) passes through */

	while (i < len) {
		char c = data[i];
		switch (f->state) {
		case HF_START:
			if (c == '\r' || c == '\n') {
				f->state = HF_BODY; /* the empty line */
				continue;
			}
			if (wsp(c)) {
				f->state = HF_PASS;
				continue;
			}
			if (i > run)
				w(arg, data + run, i - run);
			f->state = HF_NAME;
			continue;
		case HF_NAME:
			hold(f, c);
			i++;
			run = i;
			if (c == ':') {
				if (watched(f)) {
					f->state = HF_HOLD;
				} else {
					flush(f, w, arg);
					f->state = HF_PASS;
				}
			} else if (c == '\n' || f->held >= NAME_MAX_WATCH) {
				flush(f, w, arg);
				f->state = c == '\n' ? HF_START : HF_PASS;
			}
			continue;
		case HF_PASS: {
			const char *nl = memchr(data + i, '\n', len - i);
			i = nl ? (size_t)(nl - data) + 1 : len;
			if (nl)
				f->state = HF_START;
			continue;
		}
		case HF_HOLD:
			if (!hold(f, c)) { /* too long to judge: it passes */
				flush(f, w, arg);
				f->state = HF_PASS;
				run = i;
				continue;
			}
			i++;
			run = i;
			if (c == '\n')
				f->state = HF_HOLD_EOL;
			continue;
		case HF_HOLD_EOL:
			if (wsp(c)) { /* a continuation line of the held field */
				f->state = HF_HOLD;
				continue;
			}
			decide(f, w, arg);
			run = i;
			f->state = HF_START;
			continue;
		default: /* HF_BODY */
			i = len;
			continue;
		}
	}
	if (i > run)
		w(arg, data + run, i - run);
}

void hdr_filter_end(struct hdr_filter *f, hdr_write_fn w, void *arg)
{
	if (f->state == HF_HOLD || f->state == HF_HOLD_EOL)
		decide(f, w, arg);
	else
		flush(f, w, arg);
	f->state = HF_BODY;
}
