/* fuzz_dnsbl_sites.c - libFuzzer target for the dnsbl_sites parser (dnsbl_sites.c).
 * Besides not crashing, checks what the check relies on: every accepted entry has a valid
 * domain (lower case, no trailing dot, within DNSBL_DOMAIN_MAX) whose query names fit, a weight
 * within bounds, domain indexes that are dense and shared by equal domains; a filter matches the
 * same addresses after a reparse of the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "dnsbl_sites.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_sites(const char *text)
{
	struct dnsbl_sites s, again;
	char why[256], name[DNSBL_QNAME_MAX];
	uint8_t v6[16];

	if (dnsbl_sites_parse(text, &s, why, sizeof why) < 0) {
		CHECK(why[0] != '\0');
		return;
	}
	CHECK(s.n <= DNSBL_SITES_MAX && s.ndomains <= s.n);
	memset(v6, 0xab, sizeof v6);
	for (size_t i = 0; i < s.n; i++) {
		const struct dnsbl_site *e = &s.items[i];
		size_t len = strlen(e->domain);
		CHECK(len > 0 && len <= DNSBL_DOMAIN_MAX && e->domain[len - 1] != '.');
		for (size_t k = 0; k < len; k++)
			CHECK(e->domain[k] < 'A' || e->domain[k] > 'Z');
		CHECK(e->weight >= -DNSBL_WEIGHT_MAX && e->weight <= DNSBL_WEIGHT_MAX);
		CHECK(e->domain_index < s.ndomains);
		CHECK(strcmp(dnsbl_sites_domain(&s, e->domain_index)->domain, e->domain) == 0);
		CHECK(dnsbl_query_name(AF_INET6, v6, e->domain, name, sizeof name) == 0);
		CHECK(dnsbl_query_name(AF_INET, v6, e->domain, name, sizeof name) == 0);
	}
	CHECK(dnsbl_sites_parse(text, &again, why, sizeof why) == 0 && again.n == s.n);
	for (size_t i = 0; i < s.n; i++) {
		uint8_t a[4] = { 127, 0, 0, (uint8_t)i };
		CHECK(dnsbl_site_matches(&s.items[i], a) == dnsbl_site_matches(&again.items[i], a));
	}
	dnsbl_sites_free(&again);
	dnsbl_sites_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* the config hands over a C string: stop at the first NUL */
	check_sites(text);
	free(text);
	return 0;
}
