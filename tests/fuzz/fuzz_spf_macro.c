/* fuzz_spf_macro.c - libFuzzer target for the SPF macro language. The first byte picks the
 * context (domain-spec or explanation), the client's address family, whether %{p} is known and
 * the output buffer's size; the rest is the macro-string. Checks that the syntax check and the
 * expansion agree and that the output stays within its buffer, NUL-terminated. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spf_macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool exp = data[0] & 1, v6 = data[0] & 2, have_p = data[0] & 4;
	size_t outsz = (data[0] & 8) ? 16 : 600;
	const char *s = (const char *)data + 1;
	size_t len = size - 1;
	struct spf_macro_env env = {
		.sender = "strong-bad@email.example.com", .local = "strong-bad",
		.sender_domain = "email.example.com", .domain = "email.example.com", .helo = "mx.example.org",
		.ptr = have_p ? "mx.example.org" : NULL, .receiver = "rx.example.net", .now = 1700000000,
		.family = v6 ? AF_INET6 : AF_INET,
	};
	inet_pton(AF_INET, "192.0.2.3", &env.ip4);
	inet_pton(AF_INET6, "2001:db8::cb01", &env.ip6);
	char *out = malloc(outsz); /* exact size: ASan sees any overrun */
	size_t n = 0;
	bool ends;
	bool valid = spf_macro_valid(s, len, exp, &ends);
	enum spf_macro_status st = spf_macro_expand(s, len, &env, exp, out, outsz, &n);
	CHECK(n < outsz && strlen(out) < outsz);
	CHECK(st != SPF_MACRO_OK || strlen(out) == n);
	if (!valid)
		CHECK(st == SPF_MACRO_SYNTAX || st == SPF_MACRO_TOO_LONG || st == SPF_MACRO_NEED_P);
	if (valid && st != SPF_MACRO_TOO_LONG)
		CHECK(st == SPF_MACRO_OK || (st == SPF_MACRO_NEED_P && !have_p && spf_macro_uses(s, len, 'p')));
	if (st == SPF_MACRO_OK) /* printable ASCII only (%_ gives a space) */
		for (size_t i = 0; i < n; i++)
			CHECK(out[i] >= 0x20 && out[i] < 0x7f);
	free(out);
	return 0;
}
