/* fuzz_dns_msg.c - libFuzzer target for the DNS reply reader (dns_msg.c): any octets, read as
 * the reply to each record type asked, give a well-formed answer: a result in range, records
 * only with OK, texts NUL-terminated within their length, MX/PTR names without a trailing dot
 * and at most DNS_NAME_MAX long, a TTL within DNS_TTL_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum dns_type types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX, DNS_TYPE_PTR, DNS_TYPE_TXT };

	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		struct dns_answer *a = dns_msg_parse(data, size, "example.test", types[t]);
		CHECK(a->result <= DNS_RESULT_TEMPFAIL);
		CHECK(a->ttl <= DNS_TTL_MAX);
		CHECK(a->count <= DNS_RR_MAX && a->count <= a->total);
		CHECK(a->result == DNS_RESULT_OK ? a->count > 0 : a->count == 0);
		for (size_t i = 0; i < a->count; i++) {
			const struct dns_rr *rr = &a->rr[i];
			if (types[t] == DNS_TYPE_A || types[t] == DNS_TYPE_AAAA) {
				CHECK(rr->text == NULL);
				continue;
			}
			CHECK(rr->text != NULL && rr->text[rr->len] == '\0');
			if (types[t] != DNS_TYPE_TXT) {
				CHECK(rr->len == strlen(rr->text) && rr->len <= DNS_NAME_MAX);
				CHECK(rr->len == 0 || rr->text[rr->len - 1] != '.');
			}
		}
		dns_answer_unref(a);
	}
	return 0;
}
