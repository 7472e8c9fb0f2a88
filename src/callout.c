/* callout.c - the rules of a recipient callout shared by the pool and the probe command: the
 * RCPT line (local part quoted when needed) and the verdict of an RCPT reply. See callout.h. */
#include "callout.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "smtp_address.h"

/* An enhanced code that says the recipient address is wrong: 5.1.x, except 5.1.7 and 5.1.8,
 * which are about the sender (Postfix's delayed sender restrictions answer at RCPT). */
static bool enhanced_says_unknown(const char *enh)
{
	return strncmp(enh, "5.1.", 4) == 0 && strcmp(enh, "5.1.7") != 0 && strcmp(enh, "5.1.8") != 0;
}

bool callout_policy_reject(const struct smtp_reply *r)
{
	return r->code >= 500 && r->code < 600 && r->enhanced[0] != '\0' && !enhanced_says_unknown(r->enhanced);
}

enum rcpt_verdict callout_verdict(const struct smtp_reply *r)
{
	if (r->code >= 200 && r->code < 300)
		return RCPT_VALID;
	if (r->code < 500 || r->code >= 600 || callout_policy_reject(r))
		return RCPT_UNAVAILABLE;
	if (r->enhanced[0] != '\0' || r->code == 550 || r->code == 551 || r->code == 553)
		return RCPT_INVALID; /* 5.1.x, or no enhanced code: today's rule by the basic code */
	return RCPT_UNAVAILABLE;
}

/* RCPT TO:<addr>, quoting the local part when it is not a dot-atom. -1 if it cannot be sent. */
int callout_rcpt_line(const char *addr, char *buf, size_t bufsz)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~.";
	const char *at = strrchr(addr, '@');
	bool atom = at != NULL && at != addr && addr[0] != '.' && at[-1] != '.' && strstr(addr, "..") == NULL;
	char local[2 * SMTP_LOCAL_MAX + 3];
	size_t n = 0;

	if (at == NULL || at - addr > SMTP_LOCAL_MAX) /* local[] holds at most 64 octets, quoted */
		return -1;
	for (const char *s = addr; s < at; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f)
			return -1;
		if (ch < 0x80 && !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
				   strchr(atext, ch)))
			atom = false;
	}
	if (!atom)
		local[n++] = '"';
	for (const char *s = addr; s < at; s++) {
		if (!atom && (*s == '"' || *s == '\\'))
			local[n++] = '\\';
		local[n++] = *s;
	}
	if (!atom)
		local[n++] = '"';
	local[n] = '\0';
	int len = snprintf(buf, bufsz, "RCPT TO:<%s%s>", local, at);
	return len > 0 && (size_t)len < bufsz ? 0 : -1;
}
