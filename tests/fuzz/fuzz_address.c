/* fuzz_address.c - libFuzzer target for smtp_path_parse(), domain_normalise() and the relay
 * policy. Besides not crashing, checks the invariants callers rely on: results within the
 * RFC 5321 limits, normalisation idempotent, no UTF-8 unless allowed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay_control.h"
#include "smtp_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_domain(const char *in, size_t len)
{
	char out[SMTP_DOMAIN_MAX + 1], again[SMTP_DOMAIN_MAX + 1];
	size_t n = domain_normalise(in, len, true, out, sizeof(out));
	if (n == 0)
		return;
	CHECK(n <= SMTP_DOMAIN_MAX && strlen(out) == n);
	CHECK(domain_normalise(out, n, true, again, sizeof(again)) == n);
	CHECK(memcmp(out, again, n) == 0);
	for (size_t i = 0; i < n; i++)
		CHECK(out[i] < 'A' || out[i] > 'Z');
}

static void check_policy(const struct smtp_address *a)
{
	static struct bs_domain domains[2] = {{.name = "[192.0.2.1]"}, {.name = "example.test"}};
	struct bs_config cfg;
	struct relay_decision dec;
	memset(&cfg, 0, sizeof(cfg));
	cfg.domains = domains;
	cfg.ndomains = 2;
	strcpy(cfg.postmaster_domain, "example.test");
	relay_control_check(&cfg, a, &dec);
	if (dec.verdict == RELAY_ACCEPT) {
		CHECK(dec.domain != NULL);
		CHECK(a->domain_len == 0 || strcmp(a->domain, dec.domain->name) == 0);
		CHECK(!relay_control_has_routing(a->local_raw, a->local_raw_len));
	} else {
		CHECK(dec.code >= 500 && dec.reason != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool allow_null = data[0] & 1, allow_utf8 = data[0] & 2;
	const char *s = (const char *)data + 1;
	size_t len = size - 1, used = 0;
	struct smtp_address a;
	char buf[SMTP_PATH_MAX + 8];

	check_domain(s, len);
	if (smtp_path_parse(s, len, allow_null, allow_utf8, &a, &used) != ADDR_OK) {
		CHECK(used == 0);
		return 0;
	}
	CHECK(used >= 2 && used <= len && used <= SMTP_PATH_MAX && s[used - 1] == '>');
	CHECK(!a.is_null || allow_null);
	CHECK(a.local_len <= SMTP_LOCAL_MAX && a.local_raw_len <= a.local_len);
	CHECK(a.domain_len <= SMTP_DOMAIN_MAX && strlen(a.domain) == a.domain_len);
	CHECK(strlen(a.local) == a.local_len && strlen(a.local_raw) == a.local_raw_len);
	CHECK(allow_utf8 || !a.utf8);
	CHECK(smtp_utf8_valid(a.local, a.local_len) && smtp_utf8_valid(a.domain, a.domain_len));
	if (!a.is_null) {
		check_domain(a.domain, a.domain_len);
		CHECK(smtp_address_format(&a, buf, sizeof(buf)) == a.local_len + 1 + a.domain_len);
		check_policy(&a);
	}
	return 0;
}
