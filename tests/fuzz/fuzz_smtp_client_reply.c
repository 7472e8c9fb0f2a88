/* fuzz_smtp_client_reply.c - libFuzzer target for the server reply parser. The input is split
 * into lines at LF (a CR before it dropped), as smtp_client.c does. Besides not crashing, checks
 * what callers rely on: a complete reply has a code 200..599 and a sanitised, bounded text; a
 * malformed one has code 0; the enhanced code, when set, is of the reply's class. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_reply(const struct smtp_reply *r, int result)
{
	size_t len = strlen(r->text);
	CHECK(len <= SMTP_REPLY_TEXT_MAX);
	for (size_t i = 0; i < len; i++)
		CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f);
	if (result < 0) {
		CHECK(r->code == 0);
		return;
	}
	CHECK(r->code >= 200 && r->code <= 599);
	if (r->enhanced[0]) {
		CHECK(r->enhanced[0] == '0' + r->code / 100);
		CHECK(smtp_client_reply_enhanced_len(r->enhanced, strlen(r->enhanced), r->enhanced[0]) ==
		      strlen(r->enhanced));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_reply p;
	const char *s = (const char *)data, *end = s + size;
	smtp_client_reply_init(&p);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		size_t use = (len && s[len - 1] == '\r') ? len - 1 : len;
		int r = smtp_client_reply_line(&p, s, use);
		if (r != 0) {
			check_reply(&p.reply, r);
			smtp_client_reply_init(&p);
		}
		s += len + (nl ? 1 : 0);
	}
	return 0;
}
