/* smtp_client_reply.c - assembles the lines of a server reply ("250-..." ... "250 ...") into
 * one struct smtp_reply: code, enhanced status code, sanitised text. Every bound of
 * smtp_client_reply.h is enforced here; anything else is a malformed reply. */
#include "smtp_client_reply.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void smtp_client_reply_init(struct smtp_client_reply *p)
{
	memset(p, 0, sizeof *p);
}

static int reply_malformed(struct smtp_client_reply *p, const char *why)
{
	memset(&p->reply, 0, sizeof p->reply);
	snprintf(p->reply.text, sizeof p->reply.text, "malformed reply (%s)", why);
	return -1;
}

/* "NNN", "NNN text" or "NNN-text": code 200..599 with second digit 0..5 (RFC 5321 4.2). */
static int reply_code(const char *l, size_t len, bool *last)
{
	if (len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' || l[2] > '9')
		return -1;
	if (len == 3)
		*last = true;
	else if (l[3] == ' ' || l[3] == '-')
		*last = l[3] == ' ';
	else
		return -1;
	return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
}

static size_t digits(const char *t, size_t len, size_t at)
{
	size_t n = 0;
	while (at + n < len && n < 4 && t[at + n] >= '0' && t[at + n] <= '9')
		n++;
	return n;
}

size_t smtp_client_reply_enhanced_len(const char *t, size_t len, char cls)
{
	if (len < 5 || t[0] != cls || (cls != '2' && cls != '4' && cls != '5') || t[1] != '.')
		return 0;
	size_t at = 2;
	for (int part = 0; part < 2; part++) {
		size_t n = digits(t, len, at);
		if (n < 1 || n > 3)
			return 0;
		at += n;
		if (part == 0) {
			if (at >= len || t[at] != '.')
				return 0;
			at++;
		}
	}
	return (at == len || t[at] == ' ') ? at : 0;
}

static void reply_append(struct smtp_client_reply *p, const char *t, size_t len)
{
	if (p->lines > 1)
		for (const char *s = "; "; *s && p->text_len < SMTP_REPLY_TEXT_MAX; s++)
			p->reply.text[p->text_len++] = *s;
	for (size_t i = 0; i < len && p->text_len < SMTP_REPLY_TEXT_MAX; i++) {
		unsigned char ch = (unsigned char)t[i];
		p->reply.text[p->text_len++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	p->reply.text[p->text_len] = '\0';
}

int smtp_client_reply_line(struct smtp_client_reply *p, const char *line, size_t len)
{
	bool last = false;
	if (len > SMTP_CLIENT_REPLY_LINE_MAX)
		return reply_malformed(p, "line too long");
	if (++p->lines > SMTP_CLIENT_REPLY_LINES_MAX)
		return reply_malformed(p, "too many lines");
	p->octets += len + 2;
	if (p->octets > SMTP_CLIENT_REPLY_OCTETS_MAX)
		return reply_malformed(p, "too big");
	int code = reply_code(line, len, &last);
	if (code < 0)
		return reply_malformed(p, "bad reply code");
	if (p->lines > 1 && code != p->reply.code)
		return reply_malformed(p, "reply code changed between lines");
	p->reply.code = code;
	const char *t = len > 4 ? line + 4 : "";
	size_t tlen = len > 4 ? len - 4 : 0;
	size_t elen = smtp_client_reply_enhanced_len(t, tlen, line[0]);
	if (elen && p->lines == 1)
		memcpy(p->reply.enhanced, t, elen); /* elen <= 11 < sizeof enhanced; rest is zero */
	if (elen) {
		t += elen;
		tlen -= elen;
		if (tlen && *t == ' ') {
			t++;
			tlen--;
		}
	}
	reply_append(p, t, tlen);
	return last ? 1 : 0;
}
