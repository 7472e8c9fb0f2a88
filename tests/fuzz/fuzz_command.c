/* fuzz_command.c - libFuzzer target for the command-line parser and the MAIL/RCPT argument and
 * ESMTP parameter parsers. Checks that every refusal carries one of the documented replies, and
 * that the HELO name kept for headers and logs is always safe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_error(const struct smtp_parse_error *e)
{
	CHECK(e->text != NULL && e->enhanced != NULL);
	CHECK((e->code == 501 && (!strcmp(e->enhanced, "5.5.2") || !strcmp(e->enhanced, "5.1.7") ||
				  !strcmp(e->enhanced, "5.1.3") || !strcmp(e->enhanced, "5.5.4"))) ||
	      (e->code == 553 && !strcmp(e->enhanced, "5.6.7")) ||
	      (e->code == 555 && !strcmp(e->enhanced, "5.5.4")));
}

static void check_mail(const char *arg, size_t len)
{
	struct smtp_mail_cmd m;
	struct smtp_parse_error err = {0};
	if (smtp_mail_parse(arg, len, &m, &err) != 0) {
		check_error(&err);
		return;
	}
	CHECK(strlen(m.params.envid) <= SMTP_ENVID_MAX);
	CHECK(!m.from.utf8 || m.params.smtputf8);
}

static void check_rcpt(const char *arg, size_t len, bool utf8_ok)
{
	struct smtp_rcpt_cmd r;
	struct smtp_parse_error err = {0};
	if (smtp_rcpt_parse(arg, len, utf8_ok, &r, &err) != 0) {
		check_error(&err);
		return;
	}
	CHECK(!r.to.is_null && (!r.to.utf8 || utf8_ok));
	CHECK(strlen(r.params.orcpt) <= SMTP_ORCPT_MAX);
	CHECK((r.params.notify & SMTP_NOTIFY_NEVER) == 0 || r.params.notify == SMTP_NOTIFY_NEVER);
}

/* The name for headers and logs never holds a space, parenthesis, bracket (but for a valid
 * address literal) or control octet, whatever the argument. */
static void check_helo(const char *arg, size_t len, bool strict)
{
	char name[SMTP_DOMAIN_MAX + 1];
	if (smtp_helo_parse(arg, len, strict, name, sizeof name) != 0)
		return;
	size_t n = strlen(name);
	CHECK(n > 0 && n <= SMTP_DOMAIN_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		CHECK(c > 32 && c < 127 && c != '(' && c != ')');
		CHECK(name[0] == '[' || (c != '[' && c != ']' && c != ':'));
	}
	CHECK(name[0] != '[' || (name[n - 1] == ']' && memchr(name + 1, '[', n - 1) == NULL &&
				 memchr(name, ']', n - 1) == NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_command c;

	if (smtp_command_parse(line, size, &c) != 0) {
		CHECK(c.verb == SMTP_VERB_UNKNOWN);
		for (size_t i = 0; i < size; i++)
			if ((data[i] < 32 && data[i] != '\t') || data[i] == 127)
				goto arguments;
		abort(); /* refused a line without a forbidden octet */
	}
	CHECK(c.arg >= line && c.arg + c.arg_len <= line + size);
	CHECK(smtp_verb_name(c.verb) != NULL);
arguments:
	/* the argument parsers are also reached directly, controls and all */
	check_mail(line, size);
	check_rcpt(line, size, size > 0 && (data[0] & 1));
	check_helo(line, size, size > 0 && (data[0] & 2));
	if (c.verb == SMTP_VERB_MAIL)
		check_mail(c.arg, c.arg_len);
	else if (c.verb == SMTP_VERB_RCPT)
		check_rcpt(c.arg, c.arg_len, true);
	return 0;
}
