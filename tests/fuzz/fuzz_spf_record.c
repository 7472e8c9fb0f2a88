/* fuzz_spf_record.c - libFuzzer target for the SPF record parser (spf_record_parse and the
 * mechanism iterator) and the expansion of every domain-spec it accepts. Besides not crashing,
 * checks that terms lie inside the record, prefix lengths are in range, the iterator yields as
 * many mechanisms as the syntax check counted, and expansions stay within their buffer. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spf_macro.h"
#include "spf_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_expand(const char *spec, size_t len)
{
	struct spf_macro_env env = {
		.sender = "strong-bad@email.example.com", .local = "strong-bad",
		.sender_domain = "email.example.com", .domain = "email.example.com", .helo = "mx.example.org",
		.ptr = "unknown", .receiver = "rx.example.net", .now = 1700000000, .family = AF_INET6,
	};
	char out[256];
	size_t n = 99999;
	inet_pton(AF_INET6, "2001:db8::cb01", &env.ip6);
	enum spf_macro_status st = spf_macro_expand(spec, len, &env, false, out, sizeof(out), &n);
	CHECK(st == SPF_MACRO_OK || st == SPF_MACRO_TOO_LONG); /* a valid domain-spec always expands */
	CHECK(n < sizeof(out) && strlen(out) == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct spf_record rec;
	char why[160];
	if (!spf_record_is_spf(text, size))
		return 0;
	if (spf_record_parse(text, size, &rec, why, sizeof(why)) != 0) {
		CHECK(why[0] != '\0' && strlen(why) < sizeof(why));
		return 0;
	}
	CHECK(!rec.redirect || (rec.redirect >= text && rec.redirect + rec.redirect_len <= text + size));
	CHECK(!rec.exp || (rec.exp >= text && rec.exp + rec.exp_len <= text + size));
	if (rec.redirect) {
		CHECK(spf_domain_spec_valid(rec.redirect, rec.redirect_len));
		check_expand(rec.redirect, rec.redirect_len);
	}
	size_t pos = 0, n = 0;
	struct spf_term t;
	while (spf_record_next(&rec, &pos, &t)) {
		n++;
		CHECK(pos <= size && n <= rec.nmech);
		CHECK(t.text >= text && t.text + t.text_len <= text + size);
		CHECK(t.cidr4 <= 32 && t.cidr6 <= 128);
		CHECK(t.qual == '+' || t.qual == '-' || t.qual == '~' || t.qual == '?');
		if (t.spec) {
			CHECK(t.spec >= t.text && t.spec + t.spec_len <= t.text + t.text_len);
			check_expand(t.spec, t.spec_len);
		}
	}
	CHECK(n == rec.nmech);
	return 0;
}
